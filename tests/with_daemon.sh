#!/usr/bin/env bash
# Runs a command against a real daemon: a fresh WORK_DIR holding models/tiny
# (the demo's tiny GPT-2), models/tiny-wp (the same with a context of 192:
# the demo's stage 7) and state/, `alignd serve` on a free loopback port,
# and the command run in WORK_DIR with $A and $ALIGND_URL (the base URL),
# $MODELS_DIR and alignd on PATH. The daemon is stopped (SIGTERM) afterwards; the command's
# status is the script's, and a failure prints the daemon log's tail.
# Usage: with_daemon.sh ALIGND_BINARY WORK_DIR COMMAND [ARGS...]
set -euo pipefail
bin=$1 work=$2
shift 2
rm -rf "$work"
mkdir -p "$work/bin" "$work/models" "$work/state"
ln -s "$bin" "$work/bin/alignd"
export PATH="$work/bin:$PATH"
cd "$work"
alignd init-model --arch gpt2 --layers 2 --hidden 64 --heads 4 --vocab 260 --context 64 \
    --seed 1 --out models/tiny >/dev/null
alignd init-model --arch gpt2 --layers 2 --hidden 64 --heads 4 --vocab 260 --context 192 \
    --seed 1 --out models/tiny-wp >/dev/null
alignd serve --listen 127.0.0.1:0 --models-dir models --state-dir state --workers 2 2>daemon.log &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null' EXIT
for _ in $(seq 400); do
    [ -s state/alignd.addr ] && break
    kill -0 $daemon 2>/dev/null || { cat daemon.log; exit 1; }
    sleep 0.05
done
[ -s state/alignd.addr ] || { echo "alignd did not start"; tail -n 20 daemon.log; exit 1; }
export A="http://$(cat state/alignd.addr)" MODELS_DIR="$work/models"
export ALIGND_URL="$A"
status=0
"$@" || status=$?
if [ $status -ne 0 ]; then
    echo "---- failed with status $status; daemon.log (tail):"
    tail -n 30 daemon.log
fi
exit $status

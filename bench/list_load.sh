#!/usr/bin/env bash
# GET /v1/fine_tuning/jobs under fixed-rate load (bench/http_load.py), with
# /healthz at the same rates as the in-run comparator:
#   1. 20 jobs in the list (18 finished, 2 queued behind a paused worker),
#      no training: each rate in RATES for both endpoints;
#   2. two jobs training (2 workers), 500 req/s for both endpoints.
# Usage: bench/list_load.sh BUILD_DIR [SECONDS] [RATES...]
#   e.g. bench/list_load.sh build/rel 10 500 1000 1500 2000
# Prints one JSON line per run (http_load.py --json) plus the load average.
set -euo pipefail
build=${1:?build dir}
secs=${2:-10}
shift 2 || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(500 1000 1500)
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "$build" && pwd)/alignd
tmp=$(mktemp -d /tmp/alignd-listload.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$bin" init-model --arch gpt2 --layers 1 --hidden 32 --heads 2 --context 64 --out "$tmp/models/tiny" >/dev/null
"$bin" serve --listen 127.0.0.1:0 --state-dir "$tmp/state" --models-dir "$tmp/models" --workers 2 \
    --max-connections-per-ip 256 --log-level warn >"$tmp/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/state/alignd.addr" ] && break; sleep 0.1; done
A=http://$(cat "$tmp/state/alignd.addr")
post() { curl -sf "$A$1" -H 'Content-Type: application/json' -d "$2" >/dev/null; }
short='{"method":"sft","model":"tiny","task":{"name":"addition","rows":50},"hyperparameters":{"max_steps":5,"batch_size":2,"max_length":24}}'
long='{"method":"sft","model":"tiny","task":{"name":"addition","rows":400},"hyperparameters":{"max_steps":100000000,"batch_size":4,"max_length":24,"logging_steps":1,"save_steps":1000}}'
for _ in $(seq 18); do post /v1/fine_tuning/jobs "$short"; done
until [ "$(curl -s "$A/v1/fine_tuning/jobs?status=succeeded&limit=100" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')" = 18 ]; do sleep 0.5; done
# two more, paused while queued: 20 in the list, nothing training
post /v1/fine_tuning/jobs "$long"; post /v1/fine_tuning/jobs/ftjob-19/pause '{}' || true
post /v1/fine_tuning/jobs "$long"; post /v1/fine_tuning/jobs/ftjob-20/pause '{}' || true
sleep 1
echo "{\"phase\":\"idle, 20 jobs\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
for r in "${rates[@]}"; do
    python3 "$here/http_load.py" --url "$A/healthz" --rate "$r" --seconds "$secs" --json || true
    python3 "$here/http_load.py" --url "$A/v1/fine_tuning/jobs" --rate "$r" --seconds "$secs" --json || true
done
# the two long jobs train (cancel the paused ones, start two that run)
post /v1/fine_tuning/jobs/ftjob-19/cancel '{}' || true
post /v1/fine_tuning/jobs/ftjob-20/cancel '{}' || true
post /v1/fine_tuning/jobs "$long"; post /v1/fine_tuning/jobs "$long"
sleep 3
echo "{\"phase\":\"two jobs training, 22 jobs\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
python3 "$here/http_load.py" --url "$A/healthz" --rate 500 --seconds "$secs" --json || true
python3 "$here/http_load.py" --url "$A/v1/fine_tuning/jobs" --rate 500 --seconds "$secs" --json || true
curl -s "$A/v1/fine_tuning/jobs?status=running" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(json.dumps({"running": [(j["id"], j["progress"]["step"]) for j in d]}))'

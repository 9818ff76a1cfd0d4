#!/usr/bin/env bash
# A state directory restored somewhere else works there: the daemon runs
# jobs, is stopped (SIGTERM) with one job half done, and its state and models
# folders are moved (the old paths gone); started from the new paths it
#   - logs that it followed them (event=relocated),
#   - finishes the interrupted job from its checkpoint, whose description
#     named the old model, file and checkpoint paths,
#   - serves a LoRA model whose base is another job's output (an adapter
#     folder that named its base by the old path),
#   - starts a new job from a checkpoint recorded before the move.
# Usage: check_relocate.sh ALIGND_BINARY WORK_DIR
set -euo pipefail
bin=$1 work=$2
rm -rf "$work"
mkdir -p "$work/old/models" "$work/new"
cd "$work"
"$bin" init-model --arch gpt2 --layers 1 --hidden 32 --heads 2 --vocab 260 --context 48 \
    --seed 1 --out old/models/tiny >/dev/null

daemon=
start() { # STATE MODELS
    rm -f "$1/alignd.addr"
    "$bin" serve --listen 127.0.0.1:0 --state-dir "$1" --models-dir "$2" --workers 1 2>>daemon.log &
    daemon=$!
    for _ in $(seq 400); do
        [ -s "$1/alignd.addr" ] && break
        kill -0 $daemon 2>/dev/null || { tail -n 20 daemon.log; exit 1; }
        sleep 0.05
    done
    [ -s "$1/alignd.addr" ] || { echo "alignd did not start"; tail -n 20 daemon.log; exit 1; }
    A="http://$(cat "$1/alignd.addr")"
}
stop() {
    kill -TERM $daemon
    wait $daemon || { echo "alignd exited with $?"; tail -n 20 daemon.log; exit 1; }
    daemon=
}
trap '[ -n "$daemon" ] && kill -KILL $daemon 2>/dev/null; true' EXIT
fail() { echo "FAIL: $*"; tail -n 30 daemon.log; exit 1; }
post() {
    curl -s --fail-with-body "$A$1" -H 'Content-Type: application/json' -d "$2" || fail "POST $1: $2"
}
job() { curl -s "$A/v1/fine_tuning/jobs/$1"; }
wait_job() {
    for _ in $(seq 1200); do
        s=$(job "$1" | jq -r .status)
        case $s in succeeded) return 0 ;; failed | cancelled) fail "$1 $s: $(job "$1" | jq -c .error)" ;; esac
        sleep 0.1
    done
    fail "$1 did not finish"
}

start old/state old/models
post /v1/fine_tuning/jobs '{"method": "sft", "model": "tiny", "task": {"name": "addition2", "rows": 500},
  "hyperparameters": {"max_steps": 20, "max_length": 24}}' >/dev/null
wait_job ftjob-1
m1=$(job ftjob-1 | jq -r .fine_tuned_model)
# a LoRA job on ftjob-1's output: its adapter names that folder as its base
post /v1/fine_tuning/jobs "{\"method\": \"sft\", \"model\": \"$m1\", \"lora\": {\"r\": 4, \"alpha\": 8},
  \"task\": {\"name\": \"addition2\", \"rows\": 500}, \"hyperparameters\": {\"max_steps\": 10, \"max_length\": 24,
  \"save_steps\": 5}}" >/dev/null
wait_job ftjob-2
m2=$(job ftjob-2 | jq -r .fine_tuned_model)
grep -q "\"$work/old/state/jobs/ftjob-1" old/state/jobs/ftjob-2/adapter_config.json ||
    fail "ftjob-2's adapter does not name its base by the old path"
# a job on an uploaded file, stopped half way
for i in $(seq 40); do
    printf '{"messages":[{"role":"user","content":"%d+%d"},{"role":"assistant","content":"%d"}]}\n' \
        $i $((i % 7)) $((i + i % 7))
done >chat.jsonl
curl -s --fail-with-body "$A/v1/files" -F purpose=fine-tune -F file=@chat.jsonl >/dev/null || fail "upload"
post /v1/fine_tuning/jobs "{\"method\": \"sft\", \"model\": \"$m1\", \"training_file\": \"file-1\",
  \"lora\": {\"r\": 4, \"alpha\": 8}, \"hyperparameters\": {\"max_steps\": 3000, \"batch_size\": 2}}" >/dev/null
for _ in $(seq 600); do
    [ "$(job ftjob-3 | jq -r '.progress.step // 0')" -ge 5 ] && break
    sleep 0.05
done
[ "$(job ftjob-3 | jq -r '.progress.step // 0')" -ge 5 ] || fail "ftjob-3 did not start"
stop

mv old/state new/state
mv old/models new/models
rmdir old
start new/state new/models
grep -q "event=relocated what=state_dir from=$work/old/state to=$work/new/state" daemon.log ||
    fail "no relocation logged"
grep -q "event=relocated what=models_dir" daemon.log || fail "the models folder was not followed"
grep -q "\"$work/new/state/jobs/ftjob-1" new/state/jobs/ftjob-2/adapter_config.json ||
    fail "ftjob-2's adapter still names the old path"
step=$(job ftjob-3 | jq -r .progress.step)
wait_job ftjob-3
job ftjob-3 | jq -e '.progress.step == 3000' >/dev/null || fail "ftjob-3 did not finish its steps"
curl -s "$A/v1/fine_tuning/jobs/ftjob-3/events?limit=100" |
    jq -e --arg p "Resuming from $work/new/state/jobs/ftjob-3/" \
        'any(.data[]; .message | startswith($p))' >/dev/null ||
    fail "ftjob-3 did not resume from its checkpoint (step $step) under the new path"
out=$(post /v1/chat/completions "{\"model\": \"$m2\", \"messages\": [{\"role\": \"user\", \"content\": \"1+2\"}],
  \"max_tokens\": 4}")
echo "$out" | jq -e '.choices[0].message.role == "assistant"' >/dev/null || fail "chat with $m2: $out"
post /v1/fine_tuning/jobs '{"method": "sft", "model": "tiny", "from_checkpoint": "ftjob-2:5",
  "task": {"name": "addition2", "rows": 500}, "hyperparameters": {"max_steps": 5, "max_length": 24}}' >/dev/null
wait_job ftjob-4
[ -z "$(grep -rl "$work/old" new/state/jobs 2>/dev/null)" ] || fail "files under jobs/ still name the old path"
stop
echo "relocated: state and models folders moved; 4 jobs, the interrupted one resumed"

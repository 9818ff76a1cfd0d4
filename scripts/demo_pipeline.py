#!/usr/bin/python3
"""The demo pipeline, driven through alignd's REST API as a user would with curl.

On the built-in task `addition2` (sums of 1-2 digit numbers), starting from a
tiny randomly initialised model registered under --model:
  1. SFT from scratch until the model is partly right (about half the sums);
  2. a reward model on the task's (right, wrong) pairs;
  3. PPO from the SFT model against that reward model, and GRPO against the
     task's verifiable reward, side by side;
  4. generate_preferences: the SFT model answers each prompt several times, the
     verifiable reward ranks the answers, best vs worst become pairs; DPO from
     the SFT model on those pairs;
  5. evaluate jobs: each stage's output against its start on 200 held-out
     sums (greedy exact match, and the win rate the reward model judges), and
     a before/after table.
Each stage is a job the dashboard shows live. Exits 1 when a job failed or a
stage did not improve. --quick: the shortened pipeline of the end-to-end test
(ctest demo_pipeline). Only the standard library: Debian's python3 is enough."""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

TASK = "addition2"
EVAL_ROWS, EVAL_SEED = 200, 4242

# PPO's settings (tests/test_rl_learning.c measures the same on this task).
PPO_HP = dict(learning_rate=5e-5, kl_coef=0.05, batch_size=32, num_mini_batches=2, temperature=1.0)


class Api:
    def __init__(self, url, key):
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.key:
            req.add_header("Authorization", "Bearer " + self.key)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            err = json.loads(e.read() or b"{}").get("error", {})
            raise SystemExit(f"{method} {path}: HTTP {e.code}: {err.get('message')} "
                             f"(param {err.get('param')!r})")


def wait(api, job, label):
    """Polls the job until it ends; prints one progress line per change."""
    last = None
    while True:
        j = api.call("GET", f"/v1/fine_tuning/jobs/{job['id']}")
        p = j.get("progress") or {}
        m = j.get("latest_metrics") or {}
        key = next((k for k in ("loss", "objective/rlhf_reward", "reward") if k in m), None)
        line = (f"  {label:<22} {j['status']:<10} step {p.get('step', 0)}/{p.get('total_steps', '?')}"
                + (f"  {key} {m[key]:.4f}" if key else ""))
        if line != last:
            print(line, flush=True)
            last = line
        if j["status"] in ("succeeded", "failed", "cancelled"):
            if j["status"] != "succeeded":
                err = (j.get("error") or {}).get("message")
                raise SystemExit(f"{label}: job {j['id']} {j['status']}: {err}")
            return j
        time.sleep(1.0)


def first_last(api, job_id, key):
    """The first and the last logged value of a job's metric."""
    r = api.call("GET", f"/v1/fine_tuning/jobs/{job_id}/metrics?keys={key}")
    s = [row["metrics"][key] for row in r["data"] if key in row["metrics"]]
    if len(s) < 2:
        raise SystemExit(f"job {job_id}: metric {key} logged {len(s)} times, need a before and an after")
    return s[0], s[-1]


def submit(api, label, body):
    j = api.call("POST", "/v1/fine_tuning/jobs", body)
    print(f"submitted {label}: {j['id']} ({body['method']} from {body['model']})", flush=True)
    return j


def job(api, label, body):
    return wait(api, submit(api, label, body), label)


def evaluate(api, label, model, start, judge):
    """Exact match of model and of the stage's start on the held-out sums,
    and model's win rate against its start judged by the reward model."""
    j = job(api, f"   eval {label}", {
        "method": "evaluate", "model": model, "model_b": start, "seed": 1,
        "task": {"name": TASK, "rows": EVAL_ROWS, "seed": EVAL_SEED},
        "reward": {"reward_model": judge} if judge else {"verifiable": 1.0},
        "hyperparameters": {"max_completion_length": 6}})
    m = api.call("GET", f"/v1/fine_tuning/jobs/{j['id']}/metrics")["data"]
    last = {}
    for row in m:
        last.update(row["metrics"])
    return last["exact_match_b"], last["exact_match_a"], last.get("win_rate")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("ALIGND_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--key", default="")
    ap.add_argument("--model", default="tiny", help="registered base model (random init)")
    ap.add_argument("--quick", action="store_true", help="the shortened pipeline of the end-to-end test")
    a = ap.parse_args()
    api = Api(a.url, a.key)
    q = a.quick
    t0 = time.time()

    # 1. SFT from scratch, a constant learning rate: RL from a model left in a
    # cosine schedule's sharp minimum loses accuracy at any step size.
    sft = job(api, "1. SFT", {
        "method": "sft", "model": a.model, "suffix": "sft", "seed": 1,
        "task": {"name": TASK, "rows": 8000, "seed": 1},
        "hyperparameters": {"max_steps": 500, "learning_rate": 1e-3, "batch_size": 32,
                            "lr_scheduler_type": "constant", "warmup_ratio": 0.05, "max_length": 24,
                            "logging_steps": 10, "eval_steps": 50},
        "eval_tasks": [{"name": TASK, "rows": 100}]})
    m_sft = sft["fine_tuned_model"]

    # 2. a reward model on the task's (right, wrong) pairs, its scores centred
    # (center_rewards_coefficient) so that PPO's critic need not learn a
    # per-prompt offset first (tests/test_rl_learning.c measures why)
    rm = job(api, "2. reward model", {
        "method": "reward_model", "model": m_sft, "suffix": "rm", "seed": 1,
        "task": {"name": TASK, "rows": 80000, "seed": 5},
        "hyperparameters": {"max_steps": 4000, "learning_rate": 1e-3, "batch_size": 64,
                            "center_rewards_coefficient": 0.01, "lr_scheduler_type": "cosine",
                            "warmup_ratio": 0.05, "max_length": 24, "logging_steps": 50,
                            "eval_steps": 500}})
    m_rm = rm["fine_tuned_model"]

    # 3. PPO against the reward model and GRPO against the verifiable reward,
    # side by side (two workers share the compute core)
    rl = dict(lr_scheduler_type="constant", logging_steps=1, max_completion_length=6, save_steps=0)
    ppo = submit(api, "3a. PPO (reward model)", {
        "method": "ppo", "model": m_sft, "suffix": "ppo", "seed": 1,
        "task": {"name": TASK, "rows": 4000, "seed": 3},
        "reward": {"reward_model": m_rm},
        "hyperparameters": dict(rl, **PPO_HP, max_steps=200 if q else 400)})
    grpo = submit(api, "3b. GRPO (verifiable)", {
        "method": "grpo", "model": m_sft, "suffix": "grpo", "seed": 1,
        "task": {"name": TASK, "rows": 4000, "seed": 3},
        "reward": {"verifiable": 1.0},
        "hyperparameters": dict(rl, learning_rate=3e-4, batch_size=64, num_generations=8, beta=0.04,
                                max_steps=200 if q else 400)})
    ppo = wait(api, ppo, "3a. PPO (reward model)")
    grpo = wait(api, grpo, "3b. GRPO (verifiable)")

    # 4. the SFT model answers each prompt several times, the verifiable
    # reward ranks the answers; DPO on best vs worst
    gen = job(api, "4a. generate_preferences", {
        "method": "generate_preferences", "model": m_sft, "seed": 1,
        "task": {"name": TASK, "rows": 400 if q else 1000, "seed": 9},
        "reward": {"verifiable": 1.0},
        "hyperparameters": {"num_generations": 4, "temperature": 1.0, "max_completion_length": 6}})
    dpo = job(api, "4b. DPO (generated pairs)", {
        "method": "dpo", "model": m_sft, "suffix": "dpo", "seed": 1, "training_file": gen["result_files"][0],
        "hyperparameters": {"max_steps": 100 if q else 200, "learning_rate": 5e-4, "batch_size": 32,
                            "beta": 0.1, "rpo_alpha": 1.0, "lr_scheduler_type": "cosine",
                            "warmup_ratio": 0.05, "max_length": 24, "logging_steps": 10}})

    # 5. every stage's output against its start on the same held-out sums
    rows = [("1. SFT from scratch",) + evaluate(api, "SFT", m_sft, a.model, m_rm),
            ("3a. PPO vs reward model",) + evaluate(api, "PPO", ppo["fine_tuned_model"], m_sft, m_rm),
            ("3b. GRPO vs verifiable",) + evaluate(api, "GRPO", grpo["fine_tuned_model"], m_sft, m_rm),
            ("4. DPO on generated pairs",) + evaluate(api, "DPO", dpo["fine_tuned_model"], m_sft, m_rm)]
    rm_before, rm_after = first_last(api, rm["id"], "eval_accuracy")

    print()
    print(f"exact match on {EVAL_ROWS} held-out sums ({TASK}); win rate against the stage's start, "
          "judged by the reward model")
    print(f"{'stage':<28} {'before':>7} {'after':>7} {'win rate':>9}")
    bad = []
    for stage, before, after, win in rows:
        gain = after > before
        print(f"{stage:<28} {before:7.3f} {after:7.3f} {win if win is not None else float('nan'):9.3f}"
              + ("" if gain else "   <- no gain"))
        if not gain:
            bad.append(stage)
    print(f"{'2. reward model':<28} {rm_before:7.3f} {rm_after:7.3f}   (held-out pair accuracy)")
    if not rm_after > rm_before:
        bad.append("2. reward model")
    print(f"pipeline time: {time.time() - t0:.0f} s")
    if bad:
        print("did not improve: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

#!/usr/bin/python3
"""The demo pipeline, driven through alignd's REST API as a user would with curl.

On the built-in task `addition2` (sums of 1-2 digit numbers), starting from a
tiny randomly initialised model registered under --model:
  1. SFT from scratch until the model is partly right: a checkpoint every 50
     steps, and the start is the first whose exact match on rows of the
     training split reaches 0.5 (about 0.4 held out; tests/t_learn.h's
     t_learn_start: the tiny model learns addition in a sharp transition
     whose step differs by seed and machine, so a fixed step count left the
     start anywhere in 0.14-0.45);
  2. two reward models on the task's (right, wrong) pairs: a weak one (300
     steps of pairs whose wrong answer is always the right sum with one
     digit changed — narrow data, the task's "mistakes": "one_digit" —:
     about 0.73 pair accuracy on held-out pairs of every kind) and one
     trained on every kind of mistake and 8x the pairs (4000 steps: above
     0.9);
  3. PPO against each, side by side: against the weak one it is reward
     hacking live (the reward model's score of the samples climbs, their
     true exact match does not, and held-out accuracy falls; the dashboard's
     Reward chart plots both, objective/scores and rewards/verifiable/mean);
     the mitigation that holds on every seed measured is the better reward
     model (a stronger KL or an ensemble of weak models scored by their
     minimum did not: tests/test_rl_learning.c's header has the figures);
  4. GRPO against the task's verifiable reward;
  5. generate_preferences: the SFT model answers each prompt 4 times, the
     verifiable reward ranks the answers, best vs worst become pairs; DPO on
     them both ways: plain DPO (likelihood displacement: the chosen answers'
     log-probs fall with the rejected ones', and accuracy with them) and DPO
     with RPO's NLL term on the chosen answers (TRL's rpo_alpha), which gains;
  6. evaluate jobs: every output against the SFT start on 2000 held-out sums
     (the task's test split, never drawn by a training job), greedy exact
     match, and a table of the gains;
  7. the graders on a reasoning task: SFT of a second tiny model (a longer
     context) on the built-in `word_problems` (two-step arithmetic word
     problems whose worked solutions end in "#### n"), then GRPO on it with
     two reward sources: the verifiable reward with the hash grader (the
     number after "####", compared as a number) and a format reward (the
     worked solution's shape, weight 0.2); their means by source, first and
     last fifth of the steps, and held-out exact match of both models on 500
     problems of the test split. No claim: one seed, not measured over three.
RL takes the task's recipe for what the jobs leave out (lib/train/job.c).
Each stage is a job the dashboard shows live. One seed: tests/test_learning.c
and tests/test_rl_learning.c make the same claims over three seeds, on the
worst seed; the thresholds below are theirs. Exits 1 when a job failed or a
claim does not hold. `--stage word_problems` runs stage 7 alone (its model
registered as --wp-model). Only the standard library: Debian's python3 is
enough.

--smoke (ctest's demo_pipeline) runs every stage through the same API calls
at a 25th of its steps: it checks the daemon's side of the pipeline (jobs
chained by their outputs, metric series, evaluate jobs, the table) in about
a minute, and asserts no learning claim: the claims are the learning tests',
on the same recipes over three seeds."""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

TASK = "addition2"
EVAL_ROWS, EVAL_SEED = 2000, 4242
SEED = 1
SMOKE = False  # --smoke


def steps(n):
    """A stage's steps (rows): as given, or a 25th of them in a smoke run."""
    return max(4, n // 25) if SMOKE else n

# The SFT start (tests/t_learn.h's t_learn_start, the same numbers)
START_MAX_STEPS, START_EVERY, START_ROWS, START_EVAL_SEED, START_TRAIN_EM = 3000, 50, 1000, 777, 0.5

# The claims, checked on this run's held-out exact match (gains over the SFT
# start): the learning tests' bounds (tests/test_rl_learning.c and
# tests/test_learning.c), which hold on the worst of sixteen runs (seeds 1-8
# on two builds). One seed on another machine is another draw from those
# runs, so the demo asserts no more than they do.
GRPO_MIN = 0.08        # GRPO on the verifiable reward
MITIGATED_MIN = 0.05   # PPO against the better reward model
HACK_SCORE_MIN = 0.1   # hacked PPO: the reward model's score of its samples rises by this
HACK_EM_MAX = 0.0      # ... while held-out exact match does not rise
PLAIN_DPO_MAX = 0.0    # plain DPO loses accuracy
RPO_MIN = 0.02         # DPO + RPO gains

# Stage 7: the word problems (lib/tasks/tasks.c), graded by the number after
# "####" and a format reward for the worked solution's shape.
WP_TASK, WP_EVAL_ROWS = "word_problems", 500
WP_FORMAT = r"^\d+[*+-]\d+=\d+\. \d+[*+-]\d+=\d+\.\n#### \d+$"
WP_FORMAT_WEIGHT = 0.2
WP_SFT_STEPS, WP_GRPO_STEPS = 600, 40

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


def submit(api, label, body):
    j = api.call("POST", "/v1/fine_tuning/jobs", body)
    print(f"submitted {label}: {j['id']} ({body['method']} from {body['model']})", flush=True)
    return j


def job(api, label, body):
    return wait(api, submit(api, label, body), label)


def series(api, job_id, key):
    """A job's logged values of one metric, in step order."""
    r = api.call("GET", f"/v1/fine_tuning/jobs/{job_id}/metrics?keys={key}&max_points=0")
    return [row["metrics"][key] for row in r["data"] if key in row["metrics"]]


def fifths(xs):
    """The means of the first and of the last fifth of a series."""
    w = max(1, len(xs) // 5)
    return sum(xs[:w]) / w, sum(xs[-w:]) / w


def last_metrics(api, job_id):
    """A job's metrics, each at its last logged value."""
    last = {}
    for row in api.call("GET", f"/v1/fine_tuning/jobs/{job_id}/metrics")["data"]:
        last.update(row["metrics"])
    return last


def word_problems(api, model):
    """Stage 7: SFT then GRPO with the graders on the word problems; returns
    the table's rows and the rewards by source."""
    sft = job(api, "7a. SFT (word problems)", {
        "method": "sft", "model": model, "suffix": "wp-sft", "seed": SEED,
        "task": {"name": WP_TASK, "rows": 20000, "seed": SEED},
        "hyperparameters": {"max_steps": steps(WP_SFT_STEPS), "learning_rate": 2e-3, "batch_size": 32,
                            "lr_scheduler_type": "constant", "warmup_ratio": 0.02, "max_length": 160,
                            "logging_steps": 20}})
    grpo = job(api, "7b. GRPO (graders)", {
        "method": "grpo", "model": sft["fine_tuned_model"], "suffix": "wp-grpo", "seed": SEED,
        "task": {"name": WP_TASK, "rows": 8000, "seed": 3 + SEED},
        "reward": {"verifiable": {"weight": 1.0, "grader": "hash"},
                   "format": {"regex": WP_FORMAT, "weight": WP_FORMAT_WEIGHT, "match": "full"}},
        "hyperparameters": {"max_steps": steps(WP_GRPO_STEPS), "batch_size": 64, "num_generations": 8,
                            "max_completion_length": 32, "logging_steps": 1, "save_steps": 0}})
    evals = {label: submit(api, f"   eval {label}", {
        "method": "evaluate", "model": m, "seed": 1,
        "task": {"name": WP_TASK, "rows": steps(WP_EVAL_ROWS), "seed": EVAL_SEED, "split": "test"},
        "hyperparameters": {"max_completion_length": 32}})
        for label, m in (("wp base", model), ("wp SFT", sft["fine_tuned_model"]),
                         ("wp GRPO", grpo["fine_tuned_model"]))}
    em = {label: last_metrics(api, wait(api, j, f"   eval {label}")["id"])["exact_match_a"]
          for label, j in evals.items()}
    sources = {name: fifths(series(api, grpo["id"], key)) for name, key in (
        ("verifiable (#### n, numeric)", "rewards/verifiable/mean"),
        (f"format (worked solution, weight {WP_FORMAT_WEIGHT})", "rewards/format/mean"),
        ("an answer line found", "rewards/verifiable/extracted"),
        ("reward (their weighted sum)", "reward"))}
    return em, sources


def print_word_problems(em, sources):
    print(f"{'7a. SFT, word problems':<30} {em['wp base']:7.3f} {em['wp SFT']:7.3f} "
          f"{em['wp SFT'] - em['wp base']:+7.3f}   (no claim: one seed)")
    print(f"{'7b. GRPO, word problems':<30} {em['wp SFT']:7.3f} {em['wp GRPO']:7.3f} "
          f"{em['wp GRPO'] - em['wp SFT']:+7.3f}   (no claim: one seed)")
    print(f"  (7: greedy exact match of the final answer on {steps(WP_EVAL_ROWS)} held-out word problems)")
    print(f"{'7b. GRPO rewards by source':<40} first -> last fifth of steps")
    for name, (a, b) in sources.items():
        print(f"    {name:<36} {a:6.3f} -> {b:6.3f}")


def checkpoints(api, job_id):
    """A job's checkpoints in step order (the list pages newest first)."""
    out, after = [], None
    while True:
        r = api.call("GET", f"/v1/fine_tuning/jobs/{job_id}/checkpoints?limit=100"
                     + (f"&after={after}" if after else ""))
        out += r["data"]
        if not r.get("has_more") or not r["data"]:
            return sorted(out, key=lambda c: c["step_number"])
        after = r["data"][-1]["id"]


def pick_start(api, sft):
    """The SFT start: the first checkpoint whose greedy exact match on rows of
    the task's training split reaches START_TRAIN_EM (the held-out rows take
    no part in the choice), as tests/t_learn.h's t_learn_start picks it. A
    smoke run takes the first checkpoint: its model is not trained enough."""
    for c in checkpoints(api, sft["id"]):
        name = c["fine_tuned_model_checkpoint"]
        j = job(api, f"   train-split EM, step {c['step_number']}", {
            "method": "evaluate", "model": name, "seed": 1,
            "task": {"name": TASK, "rows": steps(START_ROWS), "seed": START_EVAL_SEED, "split": "train"},
            "hyperparameters": {"max_completion_length": 6}})
        em = last_metrics(api, j["id"])["exact_match_a"]
        if em >= START_TRAIN_EM or SMOKE:
            print(f"the SFT start: {name} (step {c['step_number']}, training-split exact match {em:.3f})")
            return name
    raise SystemExit(f"1. SFT: no checkpoint reached training-split exact match {START_TRAIN_EM}")


def heldout(api, models):
    """Greedy exact match of each model on the held-out sums (an evaluate job
    each, on the task alone: no second model, no judge), submitted together
    so that the daemon's workers share them."""
    jobs = {label: submit(api, f"   eval {label}", {
        "method": "evaluate", "model": model, "seed": 1,
        "task": {"name": TASK, "rows": EVAL_ROWS, "seed": EVAL_SEED, "split": "test"},
        "hyperparameters": {"max_completion_length": 6}}) for label, model in models.items()}
    em = {}
    for label, j in jobs.items():
        em[label] = last_metrics(api, wait(api, j, f"   eval {label}")["id"])["exact_match_a"]
    return em


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("ALIGND_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--key", default="")
    ap.add_argument("--model", default="tiny", help="registered base model (random init)")
    ap.add_argument("--wp-model", default="tiny-wp",
                    help="registered base model for stage 7 (random init, a context of 160 or more)")
    ap.add_argument("--stage", choices=("all", "word_problems"), default="all",
                    help="word_problems: stage 7 alone")
    ap.add_argument("--quick", action="store_true",
                    help="accepted for older command lines: the pipeline has one length (a few minutes)")
    ap.add_argument("--smoke", action="store_true",
                    help="every stage at a 25th of its steps, no claim asserted (the test suite's check "
                         "of the daemon's side; the learning tests assert the claims)")
    a = ap.parse_args()
    global SMOKE, EVAL_ROWS
    SMOKE = a.smoke
    EVAL_ROWS = steps(EVAL_ROWS)
    api = Api(a.url, a.key)
    t0 = time.time()
    if a.stage == "word_problems":
        em, sources = word_problems(api, a.wp_model)
        print()
        print_word_problems(em, sources)
        print(f"stage time: {time.time() - t0:.0f} s")
        return 0

    # 1. SFT from scratch, a constant learning rate (RL from a model left in a
    # cosine schedule's sharp minimum loses accuracy at any step size), and
    # the start chosen among its checkpoints by training-split accuracy
    sft = job(api, "1. SFT", {
        "method": "sft", "model": a.model, "suffix": "sft", "seed": SEED,
        "task": {"name": TASK, "rows": 8000, "seed": SEED},
        "hyperparameters": {"max_steps": steps(START_MAX_STEPS), "learning_rate": 1e-3, "batch_size": 32,
                            "lr_scheduler_type": "constant", "warmup_ratio": 0.05, "max_length": 24,
                            "logging_steps": 10, "eval_steps": steps(500), "save_steps": steps(START_EVERY)},
        "eval_tasks": [{"name": TASK, "rows": 200}]})
    m_sft = pick_start(api, sft)

    # 2. a weak and a strong reward model, scores centred
    # (center_rewards_coefficient: PPO's critic need not learn a per-prompt
    # offset first)
    def rm_job(label, n, mistakes):
        return submit(api, label, {
            "method": "reward_model", "model": m_sft, "suffix": label.split()[1], "seed": SEED,
            "task": {"name": TASK, "rows": 80000, "seed": 100 + SEED, "mistakes": mistakes},
            "hyperparameters": {"max_steps": steps(n), "learning_rate": 1e-3, "batch_size": 64,
                                "center_rewards_coefficient": 0.01, "lr_scheduler_type": "cosine",
                                "warmup_ratio": 0.05, "max_length": 24, "logging_steps": 50,
                                "eval_steps": steps(n) // 4}})
    weak = rm_job("2a. rm-weak (300 steps)", 300, "one_digit")
    strong = rm_job("2b. rm-strong (4000 steps)", 4000, "any")
    weak = wait(api, weak, "2a. rm-weak (300 steps)")

    # 3. PPO against each reward model, side by side; 4. GRPO on the
    # verifiable reward (the task's recipe gives the rest)
    def rl_job(label, method, reward):
        return submit(api, label, {
            "method": method, "model": m_sft, "suffix": label.split()[1].lower(), "seed": SEED,
            "task": {"name": TASK, "rows": 32000, "seed": 3 + SEED}, "reward": reward,
            "hyperparameters": dict(max_steps=steps(400), logging_steps=1, max_completion_length=6,
                                    save_steps=0)})
    hacked = rl_job("3a. PPO (rm-weak)", "ppo", {"reward_model": weak["fine_tuned_model"]})
    strong = wait(api, strong, "2b. rm-strong (4000 steps)")
    mitig = rl_job("3b. PPO (rm-strong)", "ppo", {"reward_model": strong["fine_tuned_model"]})
    grpo = rl_job("4. GRPO (verifiable)", "grpo", {"verifiable": 1.0})
    hacked = wait(api, hacked, "3a. PPO (rm-weak)")
    mitig = wait(api, mitig, "3b. PPO (rm-strong)")
    grpo = wait(api, grpo, "4. GRPO (verifiable)")

    # 5. DPO both ways on pairs the SFT model generated. A smoke run's SFT
    # model (20 steps) rarely gets a sum right, so every group of verifiable
    # rewards may tie and leave no pair at all: there the strong reward
    # model's score (never a tie) is added, only so that the stages after run.
    reward = {"verifiable": 1.0}
    if SMOKE:
        reward["reward_model"] = strong["fine_tuned_model"]
    gen = job(api, "5a. generate_preferences", {
        "method": "generate_preferences", "model": m_sft, "seed": SEED,
        "task": {"name": TASK, "rows": steps(1000), "seed": 200 + SEED},
        "reward": reward,
        "hyperparameters": {"num_generations": 4, "temperature": 1.0, "max_completion_length": 6}})
    def dpo_job(label, rpo):
        return submit(api, label, {
            "method": "dpo", "model": m_sft, "suffix": "rpo" if rpo else "dpo", "seed": SEED,
            "training_file": gen["result_files"][0],
            "hyperparameters": {"max_steps": steps(200), "learning_rate": 5e-4, "batch_size": 32, "beta": 0.1,
                                "rpo_alpha": rpo, "lr_scheduler_type": "cosine", "warmup_ratio": 0.05,
                                "max_length": 24, "logging_steps": min(10, steps(200) // 4)}})
    plain = dpo_job("5b. DPO (plain)", 0.0)
    rpo = dpo_job("5c. DPO + RPO", 1.0)
    plain = wait(api, plain, "5b. DPO (plain)")
    rpo = wait(api, rpo, "5c. DPO + RPO")

    # 7. the graders on a reasoning task (its own model: a longer context)
    t7 = time.time()
    wp_em, wp_sources = word_problems(api, a.wp_model)
    t7 = time.time() - t7

    # 6. every output against the SFT start on the same held-out sums
    stages = [("3a. PPO, weak reward model", hacked, None, HACK_EM_MAX),
              ("3b. PPO, strong reward model", mitig, MITIGATED_MIN, None),
              ("4.  GRPO, verifiable", grpo, GRPO_MIN, None),
              ("5b. DPO, plain", plain, None, PLAIN_DPO_MAX),
              ("5c. DPO + RPO", rpo, RPO_MIN, None)]
    em = heldout(api, {"base": a.model, "SFT": m_sft,
                       **{label: j["fine_tuned_model"] for label, j, _, _ in stages}})
    base_em, sft_em = em["base"], em["SFT"]
    bad = []
    print()
    print(f"greedy exact match on {EVAL_ROWS} held-out sums ({TASK}, test split), seed {SEED}")
    print(f"{'stage':<30} {'start':>7} {'after':>7} {'gain':>7}   claim")
    print(f"{'1.  SFT from scratch':<30} {base_em:7.3f} {sft_em:7.3f} {sft_em - base_em:+7.3f}")
    for label, j, lo, hi in stages:
        after = em[label]
        gain = after - sft_em
        claim = f">= {lo:+.2f}" if lo is not None else f"<= {hi:+.2f}"
        ok = gain >= lo if lo is not None else gain <= hi
        print(f"{label:<30} {sft_em:7.3f} {after:7.3f} {gain:+7.3f}   {claim}{'' if ok or SMOKE else '  <- FAILS'}")
        if not ok:
            bad.append(label)
    print_word_problems(wp_em, wp_sources)
    print()
    print("the reward models' held-out pair accuracy: "
          + ", ".join(f"{n} {series(api, j['id'], 'eval_accuracy')[-1]:.3f}"
                      for n, j in (("rm-weak", weak), ("rm-strong", strong))))
    print(f"{'PPO, first -> last fifth of steps':<36} {'reward-model score':>20} {'samples right':>15}")
    for label, j in (("3a. PPO, weak reward model", hacked), ("3b. PPO, strong reward model", mitig)):
        s0, s1 = fifths(series(api, j["id"], "objective/scores"))
        v0, v1 = fifths(series(api, j["id"], "rewards/verifiable/mean"))
        print(f"{label:<36} {s0:+8.3f} -> {s1:+7.3f} {v0:7.3f} -> {v1:.3f}")
        if j is hacked and s1 - s0 < HACK_SCORE_MIN:
            bad.append(f"3a. the reward-model score rose {s1 - s0:+.3f}, not {HACK_SCORE_MIN:+.2f}")
    c = series(api, plain["id"], "logps/chosen")
    c0, c1 = c[0], sum(c[len(c) // 2:]) / max(1, len(c) - len(c) // 2)
    print(f"plain DPO: the chosen answers' log-probs {c0:.3f} -> {c1:.3f} (mean of the second half)")
    print(f"one seed; tests/test_learning.c and tests/test_rl_learning.c assert the same over three")
    print(f"pipeline time: {time.time() - t0:.0f} s (stage 7: {t7:.0f} s)")
    if SMOKE:
        print("smoke run (a 25th of the steps): the claims above are not asserted")
        return 0
    if bad:
        print("claims that do not hold: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

#!/usr/bin/python3
"""Learning sweeps on the built-in addition2 task, over seeds, measured on
held-out sums: the figures of tests/test_learning.c, tests/test_rl_learning.c
and BENCHMARKS.md ("Learning") come from these commands.

Every run is `alignd train JOB.json` (no daemon); every claim is greedy exact
match on 2000 rows of the task's test split (prompts no training job draws),
by an evaluate job. Runs of several seeds go in parallel, one compute thread
each (THREADS=N for another floating-point path).

  learn_sweep.py sft SEEDS [STEPS]                     the tests' SFT start (tests/t_learn.h), or
                                                       SFT for STEPS (constant lr 1e-3)
  learn_sweep.py rm TAG SEEDS STEPS [HP_JSON]          reward models from the SFT start
  learn_sweep.py rl TAG METHOD HP_JSON SEEDS [REWARD_JSON] [ROWS]
                                                       RL from the SFT start; prints the
                                                       held-out gain per seed
  e.g. learn_sweep.py rl grpo_b256 grpo '{"learning_rate":1e-4,"batch_size":256}' 1,2,3

REWARD_JSON may name "{seed}" (a reward model per seed: "{WORK}/rm500_s{seed}").
ALIGND: the binary (default build/release/alignd); WORK: the folder (default
/tmp/alignd-learn); PAR: runs at once (default 3)."""
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
B = os.environ.get("ALIGND", os.path.join(HERE, "..", "build", "release", "alignd"))
W = os.environ.get("WORK", "/tmp/alignd-learn")
PAR = int(os.environ.get("PAR", "3"))


def run(job, out):
    """alignd train on job, written to out.json; returns its JSON log lines."""
    os.makedirs(out, exist_ok=True)
    job = dict(job, output_dir=out)
    with open(out + ".json", "w") as f:
        json.dump(job, f)
    env = dict(os.environ, ALIGND_THREADS=os.environ.get("THREADS", "1"))
    p = subprocess.run([B, "train", out + ".json"], capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"{out}: {p.stderr[-2000:]}")
    with open(out + ".log", "w") as f:
        f.write(p.stdout)
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def heldout(model, split="test", rows=2000, seed=4242):
    r = run({"method": "evaluate", "model": model, "seed": 1,
             "task": {"name": "addition2", "rows": rows, "seed": seed, "split": split},
             "hyperparameters": {"max_completion_length": 6, "logging_steps": 100000}},
            model.rstrip("/") + f"_ev_{split}{rows}_{seed}")
    return [x for x in r if "exact_match_a" in x][-1]["exact_match_a"]


def base(seed):
    """The tiny GPT-2 of scripts/demo and tests/t_learn.h, random weights."""
    b = f"{W}/base{seed}"
    if not os.path.exists(b + "/config.json"):
        subprocess.run([B, "init-model", "--arch", "gpt2", "--layers", "2", "--hidden", "64", "--heads", "4",
                        "--vocab", "260", "--context", "64", "--seed", str(seed), "--out", b],
                       check=True, capture_output=True)
    return b


def sft(seed, steps, save_steps=0):
    """SFT of the base for steps at a constant lr (checkpoints every save_steps)."""
    out = f"{W}/sft{steps}_s{seed}" + (f"_every{save_steps}" if save_steps else "")
    if not os.path.exists(out + "/config.json"):
        run({"method": "sft", "model": base(seed), "seed": seed, "task": {"name": "addition2", "rows": 8000, "seed": seed},
             "hyperparameters": {"max_steps": steps, "learning_rate": 1e-3, "batch_size": 32,
                                 "lr_scheduler_type": "constant", "warmup_ratio": 0.05, "max_length": 24,
                                 "logging_steps": 100, "save_steps": save_steps}}, out)
    return out


# tests/t_learn.h's t_learn_start, the same numbers
START_MAX_STEPS, START_EVERY, START_ROWS, START_EVAL_SEED, START_TRAIN_EM = 3000, 50, 1000, 777, 0.5


def start(seed):
    """The partly trained SFT start of the tests: the first checkpoint (one
    every 50 steps of a constant-lr SFT) whose exact match on training-split
    rows reaches 0.5."""
    out = sft(seed, START_MAX_STEPS, START_EVERY)
    for s in range(START_EVERY, START_MAX_STEPS, START_EVERY):
        ck = f"{out}/checkpoint-{s}"
        if heldout(ck, "train", START_ROWS, START_EVAL_SEED) >= START_TRAIN_EM:
            return ck
    raise RuntimeError(f"seed {seed}: no checkpoint reached training-split exact match {START_TRAIN_EM}")


def fifths(rows, key):
    xs = [x[key] for x in rows if key in x and x.get("step", 0) > 0]
    w = max(1, len(xs) // 5)
    return (sum(xs[:w]) / w, sum(xs[-w:]) / w) if xs else (float("nan"), float("nan"))


def over_seeds(fn, seeds):
    with cf.ThreadPoolExecutor(PAR) as ex:
        return list(ex.map(fn, seeds))


def cmd_sft(seeds, steps=""):
    """Held-out and training-split exact match of the tests' start, or of
    SFT for a fixed number of steps."""
    def one(s):
        m = sft(s, int(steps)) if steps else start(s)
        return s, m, heldout(m), heldout(m, "train")
    for s, m, em, tr in over_seeds(one, seeds):
        print(f"{os.path.relpath(m, W)}: held-out EM {em:.3f}  train-split EM {tr:.3f}", flush=True)


def cmd_rm(tag, seeds, steps, hp="{}"):
    def one(s):
        h = {"max_steps": int(steps), "learning_rate": 1e-3, "batch_size": 64, "center_rewards_coefficient": 0.01,
             "lr_scheduler_type": "cosine", "warmup_ratio": 0.05, "max_length": 24, "logging_steps": int(steps),
             "save_steps": 0}
        h.update(json.loads(hp))
        r = run({"method": "reward_model", "model": start(s), "seed": s,
                 "task": {"name": "addition2", "rows": 80000, "seed": 100 + s}, "hyperparameters": h},
                f"{W}/{tag}_s{s}")
        return s, [x["eval_accuracy"] for x in r if "eval_accuracy" in x][-1]
    for s, acc in over_seeds(one, seeds):
        print(f"{tag} seed {s}: held-out pair accuracy {acc:.3f}", flush=True)


def cmd_rl(tag, method, hp, seeds, reward='{"verifiable": 1.0}', rows="16000"):
    def one(s):
        h = dict(logging_steps=1, max_completion_length=6, save_steps=0, max_steps=400)
        h.update(json.loads(hp))
        rw = json.loads(reward.replace("{seed}", str(s)).replace("{WORK}", W))
        m, out = start(s), f"{W}/{tag}_s{s}"
        t = time.time()
        r = run({"method": method, "model": m, "seed": s, "task": {"name": "addition2", "rows": int(rows),
                                                                 "seed": 3 + s},
                 "reward": rw, "hyperparameters": h}, out)
        dt = time.time() - t
        gn = sorted(x["grad_norm"] for x in r if "grad_norm" in x and x.get("step", 0) > 0)
        return s, heldout(m), heldout(out), dt, gn[len(gn) // 2] if gn else 0, r
    gains = []
    for s, em0, em1, dt, gn, r in over_seeds(one, seeds):
        gains.append(em1 - em0)
        sc, vf = fifths(r, "objective/scores"), fifths(r, "rewards/verifiable/mean")
        print(f"{tag} seed {s}: held-out EM {em0:.3f} -> {em1:.3f} ({em1 - em0:+.3f}), median grad_norm {gn:.2f}, "
              f"samples right {vf[0]:.3f} -> {vf[1]:.3f}"
              + (f", reward-model score {sc[0]:+.3f} -> {sc[1]:+.3f}" if sc[0] == sc[0] else "")
              + f"  ({dt:.0f} s)", flush=True)
    print(f"{tag}: gains {' '.join(f'{g:+.3f}' for g in gains)}  worst {min(gains):+.3f}", flush=True)


def main(argv):
    cmds = {"sft": cmd_sft, "rm": cmd_rm, "rl": cmd_rl}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    args = argv[2:]
    seeds_at = {"sft": 0, "rm": 1, "rl": 3}[argv[1]]
    if len(args) <= seeds_at:
        print(__doc__, file=sys.stderr)
        return 2
    args[seeds_at] = [int(x) for x in args[seeds_at].split(",")]
    os.makedirs(W, exist_ok=True)
    cmds[argv[1]](*args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/python3
"""Peak memory of PPO jobs next to SFT and to the weights (see BENCHMARKS.md).

Each configuration is one fresh `alignd train JOB.json` process (or, for the
"logprobs" row, one `alignd logprobs`), run in the work directory with
relative paths, on one GPT-2 made by `alignd init-model`. Measured per
process:

  peak_rss_mib   ru_maxrss of the child from wait4() (the kernel's VmHWM:
                 anonymous memory plus mapped file pages, at their peak);
  peak_anon_mib  the largest RssAnon seen in /proc/PID/status, polled every
                 --interval s (heap, arenas, activations; sampling can miss a
                 peak shorter than the interval);
  peak_file_mib  the largest RssFile seen (mapped files: libraries and the
                 safetensors files while they are mapped for loading).

One JSON line per configuration on stdout ({"bench":"rl_memory",...}), and
with --table FILE... the markdown table of such lines. Every job trains the
same number of rows of the same length per micro-batch: SFT completions are
response_length - 1 bytes plus EOS, PPO samples up to response_length
tokens. A benchmark, not a test: nothing here compares a figure with a bound.

Usage:
  bench/rl_memory.py --alignd BIN --work DIR [--configs LIST] [--threads N]
      [--layers N --hidden N --heads N --vocab N --context N]
      [--batch-size N] [--response-length N] [--steps N] [--lora-r N]
      [--interval S] [--keep-outputs]
  bench/rl_memory.py --table FILE [FILE...]

In the work directory: model/ and rm/ (made once per shape, reused), the data files,
<config>.json (the job), <config>.log (its output) and <config>.rss.tsv (a
timeline of RssAnon and RssFile). The jobs' output folders are removed after
each run unless --keep-outputs.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

# name: what the row is. The order is the table's.
CONFIGS = {
    "logprobs": "load + one forward, no training (`alignd logprobs`)",
    "sft-lora": "SFT, LoRA",
    "sft-lora-ckpt": "SFT, LoRA, gradient checkpointing",
    "sft-full": "SFT, full fine-tuning",
    "ppo-lora-shared": "PPO, LoRA, critic shared_base, verifiable reward",
    "ppo-lora-shared-ckpt": "PPO, LoRA, critic shared_base, verifiable reward, gradient checkpointing",
    "ppo-lora-separate": "PPO, LoRA, critic separate, verifiable reward",
    "ppo-lora-shared-rm": "PPO, LoRA, critic shared_base, reward model",
    "ppo-full-separate": "PPO, full fine-tuning, critic separate, verifiable reward",
}
DEFAULT = ("logprobs,sft-lora,sft-lora-ckpt,sft-full,ppo-lora-shared,ppo-lora-shared-ckpt,ppo-lora-separate,"
           "ppo-lora-shared-rm,ppo-full-separate")
MIB = 1024.0 * 1024.0


def log(msg):
    print("rl_memory: " + msg, file=sys.stderr, flush=True)


def weight_bytes(path):
    """Bytes of tensor data in a safetensors file (the file minus its header)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    return os.path.getsize(path) - 8 - n


def make_model(a, name, score_head):
    d = os.path.join(a.work, name)
    want = {"n_layer": a.layers, "n_embd": a.hidden, "n_head": a.heads, "vocab_size": a.vocab,
            "n_positions": a.context}
    try:
        with open(os.path.join(d, "config.json")) as f:
            have = json.load(f)
        if all(have.get(k) == v for k, v in want.items()) and os.path.exists(os.path.join(d, "model.safetensors")):
            return                      # made by an earlier run with this shape
    except (OSError, ValueError):
        pass
    shutil.rmtree(d, ignore_errors=True)
    cmd = [a.alignd, "init-model", "--arch", "gpt2", "--layers", str(a.layers), "--hidden", str(a.hidden),
           "--heads", str(a.heads), "--vocab", str(a.vocab), "--context", str(a.context), "--seed", "1",
           "--out", name] + (["--score-head"] if score_head else [])
    log("creating %s: %s" % (name, " ".join(cmd[1:])))
    subprocess.run(cmd, cwd=a.work, check=True, stdout=subprocess.DEVNULL, env=child_env(a))


def make_data(a):
    """Addition prompts with answers (PPO, verifiable reward) and the same
    prompts with completions of response_length - 1 bytes (SFT)."""
    rng = random.Random(7)
    rows = []
    for _ in range(64):
        x, y = rng.randrange(1000), rng.randrange(1000)
        rows.append(("%d+%d=" % (x, y), str(x + y)))
    with open(os.path.join(a.work, "prompts.jsonl"), "w") as f:
        for p, ans in rows:
            f.write(json.dumps({"prompt": p, "answer": ans}) + "\n")
    n = a.response_length - 1
    with open(os.path.join(a.work, "sft.jsonl"), "w") as f:
        for p, ans in rows:
            c = ((ans + " ") * (n // (len(ans) + 1) + 1))[:n]
            f.write(json.dumps({"prompt": p, "completion": c}) + "\n")


def job_for(a, name):
    hp = {"batch_size": a.batch_size, "max_steps": a.steps, "logging_steps": 1}
    lora = {"r": a.lora_r, "alpha": 2 * a.lora_r}
    j = {"method": None, "model": "model"}
    if name.startswith("sft-"):
        j.update(method="sft", training_file="sft.jsonl")
    else:
        j.update(method="ppo", training_file="prompts.jsonl", reward={"verifiable": 1})
        hp.update(response_length=a.response_length, num_ppo_epochs=1, num_mini_batches=1)
        j["critic"] = "shared_base" if "-shared" in name else "separate"
        if "-rm" in name:
            j["reward"] = {"reward_model": "rm"}
    if "-lora" in name:
        j["lora"] = lora
    if name.endswith("-ckpt"):
        hp["gradient_checkpointing"] = True
    j.update(hyperparameters=hp, output_dir="out/" + name, seed=1)
    return j


def child_env(a):
    env = dict(os.environ)
    env["ALIGND_THREADS"] = str(a.threads)
    return env


def status_kib(pid):
    """RssAnon and RssFile of pid in KiB, or None once it has gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            txt = f.read()
    except OSError:
        return None
    v = {}
    for line in txt.splitlines():
        k, _, rest = line.partition(":")
        if k in ("RssAnon", "RssFile"):
            v[k] = int(rest.split()[0])
    return v if len(v) == 2 else None


def run_one(a, name, wbytes):
    if name == "logprobs":
        argv = ["logprobs", "--model", "model", "--ids", ",".join(str(i) for i in range(1, 17))]
        job = None
    else:
        job = job_for(a, name)
        with open(os.path.join(a.work, name + ".json"), "w") as f:
            json.dump(job, f)
        argv = ["train", name + ".json"]
    log("%s: alignd %s" % (name, " ".join(argv)))
    with open(os.path.join(a.work, name + ".log"), "w") as out, \
            open(os.path.join(a.work, name + ".rss.tsv"), "w") as tl:
        # the timeline: a line whenever RssAnon or RssFile moved by 1 MiB or more
        tl.write("t_s\tanon_kib\tfile_kib\n")
        t0 = time.monotonic()
        p = subprocess.Popen([a.alignd] + argv, cwd=a.work, stdout=out, stderr=out, env=child_env(a))
        anon = filep = 0
        prev = (-1 << 20, -1 << 20)
        while True:
            s = status_kib(p.pid)
            if s:
                anon = max(anon, s["RssAnon"])
                filep = max(filep, s["RssFile"])
                if abs(s["RssAnon"] - prev[0]) >= 1024 or abs(s["RssFile"] - prev[1]) >= 1024:
                    prev = (s["RssAnon"], s["RssFile"])
                    tl.write("%.3f\t%d\t%d\n" % (time.monotonic() - t0, prev[0], prev[1]))
            pid, st, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(a.interval)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(st)
    r = {"bench": "rl_memory", "config": name, "what": CONFIGS[name],
         "cmd": "alignd " + " ".join(argv), "job": job, "exit": p.returncode,
         "peak_rss_mib": round(ru.ru_maxrss / 1024.0, 1), "peak_anon_mib": round(anon / 1024.0, 1),
         "peak_file_mib": round(filep / 1024.0, 1), "weights_mib": round(wbytes / MIB, 1),
         "wall_s": round(wall, 1), "threads": a.threads,
         "shape": {"arch": "gpt2", "layers": a.layers, "hidden": a.hidden, "heads": a.heads,
                   "vocab": a.vocab, "context": a.context}}
    if p.returncode != 0:
        log("%s failed (exit %d), see %s.log in the work directory" % (name, p.returncode, name))
    if job and not a.keep_outputs:
        shutil.rmtree(os.path.join(a.work, job["output_dir"]), ignore_errors=True)
    return r


def table(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [r for r in map(json.loads, (l for l in f if l.startswith("{")))
                     if r.get("bench") == "rl_memory"]
    last = {}
    for r in rows:                      # of several runs of a configuration, the last
        last[r["config"]] = r
    if not last:
        return
    w = next(iter(last.values()))["weights_mib"]
    sft = last.get("sft-lora")
    base = sft["peak_rss_mib"] if sft and sft["exit"] == 0 else None
    base_anon = sft["peak_anon_mib"] if base else None
    print("| configuration | peak RSS MiB | / SFT-LoRA | / weights | peak anon MiB | anon / SFT-LoRA "
          "| command |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print("| (a) weights alone (fp32 tensor bytes of model.safetensors) | %.0f | %s | 1.00 | | | |"
          % (w, "%.2f" % (w / base) if base else "–"))
    for name in CONFIGS:
        r = last.get(name)
        if not r:
            continue
        if r["exit"] != 0:
            print("| %s | failed (exit %d) | | | | | `%s` |" % (r["what"], r["exit"], r["cmd"]))
            continue
        print("| %s | %.0f | %s | %.2f | %.0f | %s | `%s` |" % (
            r["what"], r["peak_rss_mib"], "%.2f" % (r["peak_rss_mib"] / base) if base else "–",
            r["peak_rss_mib"] / w, r["peak_anon_mib"],
            "%.2f" % (r["peak_anon_mib"] / base_anon) if base_anon else "–", r["cmd"]))
    s = next(iter(last.values()))["shape"]
    print("\nGPT-2, %d layers, hidden %d, %d heads, vocabulary %d, context %d; %.0f MiB of weights. "
          "peak RSS = ru_maxrss of the process (wait4); peak anon = the largest RssAnon polled from "
          "/proc/PID/status. Job files: the `job` field of each JSON line."
          % (s["layers"], s["hidden"], s["heads"], s["vocab"], s["context"], w))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alignd")
    ap.add_argument("--work")
    ap.add_argument("--configs", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=260)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--response-length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--interval", type=float, default=0.002)
    ap.add_argument("--keep-outputs", action="store_true", help="keep the jobs' output folders")
    ap.add_argument("--table", nargs="+", metavar="FILE")
    a = ap.parse_args()
    if a.table:
        table(a.table)
        return 0
    if not a.alignd or not a.work:
        ap.error("--alignd BIN and --work DIR are required (or --table FILE)")
    names = [n for n in a.configs.split(",") if n]
    bad = [n for n in names if n not in CONFIGS]
    if bad:
        ap.error("unknown configuration(s) %s; known: %s" % (", ".join(bad), ", ".join(CONFIGS)))
    a.alignd = os.path.abspath(a.alignd)
    os.makedirs(a.work, exist_ok=True)
    make_model(a, "model", False)
    if any("-rm" in n for n in names):
        make_model(a, "rm", True)
    make_data(a)
    wbytes = weight_bytes(os.path.join(a.work, "model", "model.safetensors"))
    rc = 0
    for name in names:
        r = run_one(a, name, wbytes)
        print(json.dumps(r), flush=True)
        rc |= r["exit"] != 0
    return rc


if __name__ == "__main__":
    sys.exit(main())

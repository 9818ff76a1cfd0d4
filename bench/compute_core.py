#!/usr/bin/python3
"""The compute core's benchmark table (BENCHMARKS.md, "The compute core: oneDNN,
bf16, flash attention"): every row of issue 17's table, measured in one run,
each figure a ratio against a comparator measured in the same run.

Runs, one after the other (never two at once), with the 1-minute load average
(`uptime`) recorded before each:

  sgemm          the matrix-product rates at 1024^3, 2 threads: OpenBLAS and
                 oneDNN fp32 panels, oneDNN bf16 panels (bench/sgemm), torch's
                 torch.mm fp32 and bf16 (bench/torch_bench.py --mode sgemm)
  train          per shape: this core today (--base: bench_train built from the
                 commit before oneDNN, bf16 and flash attention), the OpenBLAS
                 path of this build, oneDNN fp32, oneDNN bf16; torch fp32 and
                 torch.autocast bf16 (OMP_WAIT_POLICY=PASSIVE)
  lora, dpo      LoRA r16 and a DPO step: alignd bf16 against torch autocast bf16
                 (and alignd fp32, today's core for LoRA)
  gen            GPT-2 batch-1 greedy decoding: today, fp32, bf16 weights
  memory         peak RSS of SFT-LoRA on a bf16 base against today's; attention
                 at T = 2048, 4096, 8192 on the SmolLM shape (peak RSS of a LoRA
                 step, bf16, B = 1)
  load           bench/bench_load on a 500 MB GPT-2 checkpoint in the page cache
                 (this build fp32 and bf16; today's)
  estimate       bench_train's est_step_s (the job estimator) against the step

Usage: bench/compute_core.py --bin BUILD/bench [--base BASE/bench] [--alignd BUILD/alignd]
                             [--shapes tiny,gpt2,smollm] [--skip gen,memory,...]
                             [--steps N] [--out DIR]
A benchmark, never a test: nothing here compares a time with a bound.
"""
import argparse
import json
import os
import subprocess
import sys
import time

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))


def load1():
    return float(open("/proc/loadavg").read().split()[0])


class Run:
    def __init__(self, out):
        self.out = out
        self.rows = []
        self.f = open(os.path.join(out, "results.jsonl"), "a")

    def run(self, tag, cmd, env=None):
        """Runs cmd, returns its JSON lines (each tagged with the load and command)."""
        la = load1()
        e = dict(os.environ)
        e.update(env or {})
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, env=e)
        recs = []
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                d.update({"_tag": tag, "_load": la, "_cmd": " ".join(
                    ([f"{k}={v}" for k, v in (env or {}).items()]) + [os.path.relpath(c) if os.path.exists(c) else c for c in cmd]),
                    "_wall": time.time() - t0})
                recs.append(d)
                self.f.write(json.dumps(d) + "\n")
        self.f.flush()
        if r.returncode != 0:
            print(f"compute_core: {tag} failed ({r.returncode}): {r.stderr[-400:]}", file=sys.stderr)
        print(f"compute_core: {tag}: load {la:.2f}, {len(recs)} lines, {time.time() - t0:.0f}s",
              file=sys.stderr)
        self.rows += recs
        return recs


def first(recs, **kw):
    for r in recs:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="this build's bench/ directory")
    ap.add_argument("--base", help="bench/ of today's core (the commit before issue 17)")
    ap.add_argument("--shapes", default="tiny,gpt2,smollm")
    ap.add_argument("--skip", default="")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default 20 tiny, 4 others)")
    ap.add_argument("--out", default="")
    ap.add_argument("--model500", default="", help="a 500 MB GPT-2 folder (made with alignd init-model when absent)")
    ap.add_argument("--alignd", default="", help="alignd binary for init-model")
    a = ap.parse_args()
    skip = set(a.skip.split(",")) if a.skip else set()
    out = a.out or os.path.join(os.getcwd(), "build-bench", "core-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    R = Run(out)
    B, BASE = a.bin, a.base
    tb = [PY, os.path.join(HERE, "torch_bench.py")]
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    table = []  # (measure, figure, ratio/goal text, command(s), load)

    def row(measure, figure, note, recs):
        loads = "/".join(f"{r['_load']:.1f}" for r in recs if r)
        cmds = "; ".join(sorted({r["_cmd"] for r in recs if r}))
        table.append((measure, figure, note, cmds, loads))

    if "sgemm" not in skip:
        s = R.run("sgemm", [f"{B}/sgemm", "--threads", "2", "--quick", "--only", "square"])
        tf = R.run("torch sgemm fp32", tb + ["--mode", "sgemm"], passive)
        tb16 = R.run("torch sgemm bf16", tb + ["--mode", "sgemm", "--dtype", "bf16"], passive)
        g = {r["impl"]: r.get("gflops_best") for r in s if r.get("shape") == "square1024"}
        row("GEMM 1024^3 GFLOP/s, 2 threads", "OpenBLAS %.0f, oneDNN fp32 %.0f, oneDNN bf16 %.0f; torch fp32 %.0f, bf16 %.0f" % (
            g.get("al_gemm_pool_openblas", 0), g.get("al_gemm_pool_onednn", 0), g.get("al_gemm_bf16_pool_onednn", 0),
            tf[0]["gflops"] if tf else 0, tb16[0]["gflops"] if tb16 else 0),
            "oneDNN/OpenBLAS fp32 %.2fx, bf16 %.2fx" % (
                g.get("al_gemm_pool_onednn", 0) / max(g.get("al_gemm_pool_openblas", 1), 1e-9),
                g.get("al_gemm_bf16_pool_onednn", 0) / max(g.get("al_gemm_pool_openblas", 1), 1e-9)),
            s[:1] + tf + tb16)

    for shape in a.shapes.split(","):
        n = a.steps or (20 if shape == "tiny" else 4)
        w = 2
        common = ["--shape", shape, "--steps", str(n), "--warmup", str(w), "--threads", "2"]
        if "train" not in skip:
            base = R.run(f"today {shape} train", [f"{BASE}/bench_train", "--mode", "train"] + common) if BASE else []
            ob = R.run(f"openblas {shape} train", [f"{B}/bench_train", "--mode", "train", "--matmul", "openblas"] + common)
            f32 = R.run(f"fp32 {shape} train", [f"{B}/bench_train", "--mode", "train", "--dtype", "fp32"] + common)
            b16 = R.run(f"bf16 {shape} train", [f"{B}/bench_train", "--mode", "train", "--dtype", "bf16"] + common)
            t32 = R.run(f"torch fp32 {shape} train", tb + ["--mode", "train"] + common, passive)
            t16 = R.run(f"torch bf16 {shape} train", tb + ["--mode", "train", "--dtype", "bf16"] + common, passive)
            ref = (base or ob)
            refname = "today" if base else "OpenBLAS path"
            def tps(x):
                return x[0]["tokens_per_s"] if x else 0
            row(f"{shape}: training tok/s, fp32 (oneDNN)", "%.1f" % tps(f32),
                "%.2fx %s (%.1f); torch fp32 %.1f (%.2fx)" % (tps(f32) / max(tps(ref), 1e-9), refname, tps(ref), tps(t32),
                                                            tps(f32) / max(tps(t32), 1e-9)), [f32[0] if f32 else None, ref[0] if ref else None, t32[0] if t32 else None])
            row(f"{shape}: training tok/s, bf16", "%.1f" % tps(b16),
                "%.2fx %s; %.2fx torch autocast bf16 (%.1f)" % (tps(b16) / max(tps(ref), 1e-9), refname,
                                                               tps(b16) / max(tps(t16), 1e-9), tps(t16)),
                [b16[0] if b16 else None, t16[0] if t16 else None])
            for name, x in (("fp32", f32), ("bf16", b16)):
                if x:
                    r0 = x[0]
                    row(f"{shape}: MFU {name}", "%.0f%%" % (100 * r0["mfu"]),
                        "of the in-run %s rate %.0f GFLOP/s" % (name, r0["sgemm_gflops"]), [r0])
                    if r0.get("est_step_s"):
                        row(f"{shape}: estimator, train {name}", "%.3f s predicted" % r0["est_step_s"],
                            "step %.3f s (fastest %.3f): %+.0f%%" % (r0["step_s"], r0["step_s_min"],
                                                                  100 * (r0["est_step_s"] / r0["step_s_min"] - 1)), [r0])
        if "lora" not in skip:
            base = R.run(f"today {shape} lora", [f"{BASE}/bench_train", "--mode", "lora"] + common) if BASE else []
            f32 = R.run(f"fp32 {shape} lora", [f"{B}/bench_train", "--mode", "lora", "--dtype", "fp32"] + common)
            b16 = R.run(f"bf16 {shape} lora", [f"{B}/bench_train", "--mode", "lora", "--dtype", "bf16"] + common)
            t16 = R.run(f"torch bf16 {shape} lora", tb + ["--mode", "lora", "--dtype", "bf16"] + common, passive)
            d16 = R.run(f"bf16 {shape} dpo", [f"{B}/bench_train", "--mode", "dpo", "--dtype", "bf16"] + common)
            td16 = R.run(f"torch bf16 {shape} dpo", tb + ["--mode", "dpo", "--dtype", "bf16"] + common, passive)
            def tps(x):
                return x[0]["tokens_per_s"] if x else 0
            row(f"{shape}: LoRA r16 tok/s, bf16", "%.1f" % tps(b16),
                "%.2fx torch autocast bf16 (%.1f); fp32 %.1f" % (tps(b16) / max(tps(t16), 1e-9), tps(t16), tps(f32)),
                [b16[0] if b16 else None, t16[0] if t16 else None])
            row(f"{shape}: DPO step tok/s, bf16", "%.1f" % tps(d16),
                "%.2fx torch autocast bf16 (%.1f)" % (tps(d16) / max(tps(td16), 1e-9), tps(td16)),
                [d16[0] if d16 else None, td16[0] if td16 else None])
            if b16 and (base or f32):
                ref = (base or f32)[0]
                row(f"{shape}: peak RSS, SFT-LoRA, base held in bf16", "%.0f MB" % b16[0]["peak_rss_mb"],
                    "%.2fx %s (%.0f MB)" % (b16[0]["peak_rss_mb"] / ref["peak_rss_mb"], "today" if base else "fp32 base",
                                         ref["peak_rss_mb"]), [b16[0], ref])
            for name, x in (("lora bf16", b16), ("dpo bf16", d16)):
                if x and x[0].get("est_step_s"):
                    r0 = x[0]
                    row(f"{shape}: estimator, {name}", "%.3f s predicted" % r0["est_step_s"],
                        "step %.3f s (fastest %.3f): %+.0f%%" % (r0["step_s"], r0["step_s_min"],
                                                              100 * (r0["est_step_s"] / r0["step_s_min"] - 1)), [r0])

    if "gen" not in skip:
        common = ["--shape", "gpt2", "--mode", "gen", "--steps", "2", "--warmup", "1", "--threads", "2"]
        base = R.run("today gpt2 gen", [f"{BASE}/bench_train"] + common) if BASE else []
        f32 = R.run("fp32 gpt2 gen", [f"{B}/bench_train", "--dtype", "fp32"] + common)
        b16 = R.run("bf16 gpt2 gen", [f"{B}/bench_train", "--dtype", "bf16"] + common)
        def g1(x):
            r = first(x, mode="gen_b1")
            return r["tokens_per_s"] if r else 0
        row("GPT-2 batch-1 greedy decode tok/s, bf16 weights", "%.1f" % g1(b16),
            "fp32 %.1f, today %.1f" % (g1(f32), g1(base)), [first(b16, mode="gen_b1"), first(f32, mode="gen_b1")])

    if "memory" not in skip:
        for T in (2048, 4096, 8192):
            m = R.run(f"smollm T{T}", [f"{B}/bench_train", "--shape", "smollm", "--mode", "lora", "--dtype", "bf16",
                                        "--B", "1", "--T", str(T), "--steps", "1", "--warmup", "0", "--threads", "2"])
            if m:
                NH, L = 9, 30
                row(f"SmolLM, T = {T}, B = 1, LoRA bf16: peak RSS", "%.0f MB" % m[0]["peak_rss_mb"],
                    "attention keeps %.3f MiB per layer (log-sum-exp, (B, NH, T) floats); the (B, NH, T, T) "
                    "probabilities would be %.0f MiB per layer" % (NH * T * 4 / 2**20, NH * T * T * 4 / 2**20), [m[0]])

    if "load" not in skip:
        model = a.model500 or os.path.join(out, "gpt2-500mb")
        if not os.path.exists(os.path.join(model, "model.safetensors")):
            subprocess.run([a.alignd or os.path.join(os.path.dirname(B), "alignd"), "init-model", "--arch", "gpt2",
                            "--layers", "12", "--hidden", "768", "--heads", "12", "--vocab", "50257",
                            "--context", "1024", "--out", model], check=True, capture_output=True)
        recs = []
        for dt in ("fp32", "bf16"):
            recs += R.run(f"load {dt}", [f"{B}/bench_load", "--model", model, "--dtype", dt, "--reps", "5"])
        base = R.run("today load", [f"{BASE}/bench_load", "--model", model, "--reps", "5"]) if BASE and os.path.exists(f"{BASE}/bench_load") else []
        for r in recs:
            row(f"load a 500 MB checkpoint, {r['dtype']}", "%.2f GB/s" % r["gb_per_s_best"],
                "median %.2f GB/s; %.3f s" % (r["gb_per_s_median"], r["open_s_best"]) +
                ("; today %.2f GB/s" % base[0]["gb_per_s_best"] if base else ""), [r] + base)

    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("| measure | figure | against | load (1 min) | command |\n|---|---|---|---|---|\n")
        for m_, fig, note, cmd, la in table:
            f.write(f"| {m_} | {fig} | {note} | {la} | `{cmd}` |\n")
    print(open(os.path.join(out, "table.md")).read())


if __name__ == "__main__":
    main()

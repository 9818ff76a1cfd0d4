#!/usr/bin/python3
"""The paper plan (BENCHMARKS.md, "Data parallelism: on paper"): tokens/s and
scaling efficiency of data-parallel training on 4, 16 and 64 nodes, from a
step time and gradient size measured here (bench/dist_bench.py's
results.jsonl) and a model of the network. Nothing here is measured: it is
arithmetic on what was.

Model. A node is the measured machine (its 1-process, 2-thread step time
t_c for the shape's per-node batch). A step on N nodes costs t_c plus the
communication the step cannot hide:

  allreduce (ring): 2 (N-1)/N x G / B + 2 (N-1) a     G gradient bytes,
                                                       B bandwidth, a latency
  no overlap:  all of it after backward
  overlap:     buckets start as backward completes layers; hidden up to the
               backward's time (2/3 of t_c), except the last bucket (the
               embeddings, complete only at the end): exposed =
               max(allreduce - 2/3 t_c, allreduce x E/G), E the embeddings' bytes
  ZeRO-1:      reduce-scatter during backward (half an allreduce, overlapped
               the same way) and an all-gather of the weights after the AdamW
               step that nothing hides: (N-1)/N x G / B + (N-1) a

Efficiency = t_c / (t_c + exposed); tokens/s = N x tokens per node per step /
(t_c + exposed). The 1.5B model (GPT-2 XL's shape: 48 layers, 1600 wide,
1.56 B parameters) is the GPT-2 124M measurement scaled by the parameter
count (6 P FLOPs a token at the same achieved rate) with the same per-node
batch.

usage: dist_plan.py RESULTS.jsonl [--bw 25,100] [--latency-us 25] [--eff 0.8]
                                   [--speedup 1,16]
  --eff: the share of the line rate an allreduce achieves over TCP
  --speedup: nodes this many times faster than the measured machine (more
             cores): where it stops scaling
"""
import argparse
import json

MODELS = {  # parameters, embedding parameters (wte + wpe), from the shapes' config
    "gpt2 124M": (124_439_808, 50257 * 768 + 1024 * 768),
    "gpt2-xl 1.5B": (1_557_611_200, 50257 * 1600 + 1024 * 1600),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--bw", default="25,100")
    ap.add_argument("--latency-us", type=float, default=25.0)
    ap.add_argument("--eff", type=float, default=0.8)
    ap.add_argument("--speedup", default="1,16")
    ap.add_argument("--nodes", default="4,16,64")
    a = ap.parse_args()
    rows = [json.loads(x) for x in open(a.results) if x.strip()]
    base = [r for r in rows if r["shape"] == "gpt2" and r["config"] == "1p2t" and r["ok"]]
    dist = [r for r in rows if r["shape"] == "gpt2" and r.get("grad_mb")]
    if not base:
        raise SystemExit("no gpt2 1p2t row in " + a.results)
    t_meas = min(r["s_per_step"] for r in base)           # the quietest run
    tokens = 4 * 256                                        # the gpt2 shape's batch per node
    g_meas = dist[0]["grad_mb"] * 1e6 if dist else 4 * MODELS["gpt2 124M"][0]
    print(f"measured: gpt2 124M, {tokens} tokens a step on one node in {t_meas:.2f} s "
          f"({tokens / t_meas:.1f} tokens/s); gradients {g_meas / 1e6:.1f} MB a step")
    print(f"network: {a.eff:.0%} of the line rate, {a.latency_us:g} us a hop\n")
    print("| model | node speed | network | nodes | t_compute s | allreduce s | no overlap | overlap | ZeRO-1 | "
          "tokens/s (overlap) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (P, E) in MODELS.items():
        scale = P / MODELS["gpt2 124M"][0]
        G = g_meas * scale
        Eb = 4 * E
        for sp in [float(x) for x in a.speedup.split(",")]:
            t_c = t_meas * scale / sp
            for bw in [float(x) for x in a.bw.split(",")]:
                B = bw * 1e9 / 8 * a.eff
                lat = a.latency_us * 1e-6
                for n in [int(x) for x in a.nodes.split(",")]:
                    ar = 2 * (n - 1) / n * G / B + 2 * (n - 1) * lat
                    hide = 2 / 3 * t_c
                    over = max(ar - hide, ar * Eb / G)
                    rs = ar / 2
                    ag = (n - 1) / n * G / B + (n - 1) * lat
                    zero = max(rs - hide, rs * Eb / G) + ag
                    eff = [t_c / (t_c + x) for x in (ar, over, zero)]
                    tps = n * tokens / (t_c + over)
                    print(f"| {name} | {sp:g}x | {bw:g} GbE | {n} | {t_c:.2f} | {ar:.3f} | {eff[0]:.0%} | "
                          f"{eff[1]:.0%} | {eff[2]:.0%} | {tps:.0f} |")


if __name__ == "__main__":
    main()

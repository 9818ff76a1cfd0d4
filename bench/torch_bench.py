#!/usr/bin/python3
"""PyTorch comparator for alignd's benchmarks (see BENCHMARKS.md).

Plain torch.nn implementations (no transformers) of the two model families
alignd trains, in fp32 on the CPU:

  gpt2   learned positions, LayerNorm, gelu (tanh approximation), fused c_attn
         (q, k, v in one Linear), tied LM head, biases everywhere;
  llama  RMSNorm, RoPE (rotate-half, as Hugging Face), SwiGLU MLP, grouped-query
         attention, tied LM head (SmolLM), no biases; q/k/v and gate/up are
         separate Linears as in Hugging Face's LlamaForCausalLM.

Causal attention is an explicit matmul + masked softmax + matmul by default
(--attn matmul). torch 1.13 has no public F.scaled_dot_product_attention;
--attn sdpa uses its private 1.13 predecessor where present (it measured no
faster here, see BENCHMARKS.md).

Modes (one JSON line per measurement on stdout):
  train  forward, token-level cross entropy over all B*T positions (mean),
         backward, torch.optim.AdamW step, zero_grad(set_to_none=True);
  lora   the same with the base frozen and LoRA r=16, alpha=32 adapters on
         c_attn and attn.c_proj (gpt2) or q/k/v/o_proj (llama);
  dpo    LoRA as above on B pairs of (chosen, rejected) rows: the reference's
         log-probs with the adapters switched off under no_grad, the policy's,
         DPO's sigmoid loss (beta 0.1) on the sequence sums, backward, AdamW;
  gen    greedy generation with a preallocated KV cache, 128 new tokens from a
         16-token prompt, batch 1 and batch 8 (prefill included in the time);
  sgemm  torch.mm at 1024^3 (what torch's own BLAS call reaches here).

--dtype bf16 runs every forward (and generation) under
torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's CPU mixed precision:
fp32 master weights, bf16 products; sgemm then multiplies bf16 matrices.

Benchmarks only: nothing here asserts a time.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {
    # name: architecture and batch. T is the training sequence length.
    "tiny": dict(arch="gpt2", L=4, C=128, NH=4, NKV=4, FF=512, V=4096,
                 ctx=128, T=128, B=8, eps=1e-5),
    "gpt2": dict(arch="gpt2", L=12, C=768, NH=12, NKV=12, FF=3072, V=50257,
                 ctx=1024, T=256, B=4, eps=1e-5),
    # HuggingFaceTB/SmolLM-135M config.json: hidden 576, 30 layers, 9 heads,
    # 3 kv heads, intermediate 1536, vocab 49152, tied, rope_theta 10000,
    # rms_norm_eps 1e-5, max_position_embeddings 2048.
    "smollm": dict(arch="llama", L=30, C=576, NH=9, NKV=3, FF=1536, V=49152,
                   ctx=2048, T=256, B=4, eps=1e-5, theta=10000.0),
    # Qwen/Qwen2.5-0.5B-Instruct config.json: hidden 896, 24 layers, 14 heads,
    # 2 kv heads, intermediate 4864, vocab 151936, tied, q/k/v biases,
    # rope_theta 1e6, rms_norm_eps 1e-6 (context 32768; 2048 here: the
    # benchmark's sequences are 256 long).
    "qwen05": dict(arch="llama", L=24, C=896, NH=14, NKV=2, FF=4864, V=151936,
                   ctx=2048, T=256, B=4, eps=1e-6, theta=1000000.0, qkv_bias=True),
}

ATTN = "matmul"


def causal_attention(q, k, v, past):
    """q (B, NH, Tq, HD); k, v (B, NH, Tk, HD) with the Tq queries being the
    last Tq of the Tk keys (past = Tk - Tq earlier positions)."""
    Tq, Tk, HD = q.shape[2], k.shape[2], q.shape[3]
    if ATTN == "sdpa":
        if Tq == Tk:
            out, _ = F._scaled_dot_product_attention(q, k, v, need_attn_weights=False,
                                                     is_causal=True)
            return out
        mask = None
        if Tq > 1:  # True = takes part in attention
            mask = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=past)
        out, _ = F._scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 need_attn_weights=False)
        return out
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HD))
    if Tq > 1:
        mask = torch.ones(Tq, Tk, dtype=torch.bool).triu(diagonal=past + 1)
        att = att.masked_fill(mask, float("-inf"))
    att = F.softmax(att, dim=-1)
    return att @ v


class LoRALinear(nn.Module):
    """y = base(x) + (x A^T B^T) * alpha / r, as PEFT's LoRA Linear."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.scale = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    enabled = True  # class-wide switch: the DPO reference runs with adapters off

    def forward(self, x):
        if not LoRALinear.enabled:
            return self.base(x)
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale


# ---------------------------------------------------------------- GPT-2

class GPT2Block(nn.Module):
    def __init__(self, s):
        super().__init__()
        C = s["C"]
        self.NH = s["NH"]
        self.ln_1 = nn.LayerNorm(C, eps=s["eps"])
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)        # attn.c_proj
        self.ln_2 = nn.LayerNorm(C, eps=s["eps"])
        self.c_fc = nn.Linear(C, s["FF"])
        self.mlp_c_proj = nn.Linear(s["FF"], C)

    def forward(self, x, cache=None, past=0):
        B, T, C = x.shape
        NH, HD = self.NH, C // self.NH
        qkv = self.c_attn(self.ln_1(x))
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, NH, HD).transpose(1, 2)
        k = k.view(B, T, NH, HD).transpose(1, 2)
        v = v.view(B, T, NH, HD).transpose(1, 2)
        if cache is not None:
            kc, vc = cache
            kc[:, :, past:past + T] = k
            vc[:, :, past:past + T] = v
            k, v = kc[:, :, :past + T], vc[:, :, :past + T]
        y = causal_attention(q, k, v, past)
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        x = x + self.mlp_c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT2(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        self.wte = nn.Embedding(s["V"], s["C"])
        self.wpe = nn.Embedding(s["ctx"], s["C"])
        self.h = nn.ModuleList([GPT2Block(s) for _ in range(s["L"])])
        self.ln_f = nn.LayerNorm(s["C"], eps=s["eps"])
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * s["L"]) if n.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif n.endswith("bias"):
                nn.init.zeros_(p)

    def hidden(self, ids, cache=None, past=0):
        T = ids.shape[1]
        pos = torch.arange(past, past + T)
        x = self.wte(ids) + self.wpe(pos)
        for i, blk in enumerate(self.h):
            x = blk(x, None if cache is None else cache[i], past)
        return self.ln_f(x)

    def logits(self, h):
        return h @ self.wte.weight.t()      # tied head

    def lora(self, r, alpha):
        for blk in self.h:
            blk.c_attn = LoRALinear(blk.c_attn, r, alpha)
            blk.c_proj = LoRALinear(blk.c_proj, r, alpha)

    def new_cache(self, B, maxT):
        s = self.s
        HD = s["C"] // s["NH"]
        return [(torch.zeros(B, s["NH"], maxT, HD), torch.zeros(B, s["NH"], maxT, HD))
                for _ in range(s["L"])]


# ---------------------------------------------------------------- Llama

class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, s):
        super().__init__()
        C, NH, NKV = s["C"], s["NH"], s["NKV"]
        HD = C // NH
        self.NH, self.NKV, self.HD = NH, NKV, HD
        self.input_layernorm = RMSNorm(C, s["eps"])
        qb = s.get("qkv_bias", False)
        self.q_proj = nn.Linear(C, NH * HD, bias=qb)
        self.k_proj = nn.Linear(C, NKV * HD, bias=qb)
        self.v_proj = nn.Linear(C, NKV * HD, bias=qb)
        self.o_proj = nn.Linear(NH * HD, C, bias=False)
        self.post_attention_layernorm = RMSNorm(C, s["eps"])
        self.gate_proj = nn.Linear(C, s["FF"], bias=False)
        self.up_proj = nn.Linear(C, s["FF"], bias=False)
        self.down_proj = nn.Linear(s["FF"], C, bias=False)

    def forward(self, x, cos, sin, cache=None, past=0):
        B, T, C = x.shape
        NH, NKV, HD = self.NH, self.NKV, self.HD
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, NH, HD).transpose(1, 2)
        k = self.k_proj(h).view(B, T, NKV, HD).transpose(1, 2)
        v = self.v_proj(h).view(B, T, NKV, HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            kc, vc = cache
            kc[:, :, past:past + T] = k
            vc[:, :, past:past + T] = v
            k, v = kc[:, :, :past + T], vc[:, :, :past + T]
        rep = NH // NKV                      # query head i reads kv head i // rep
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        y = causal_attention(q, k, v, past)
        x = x + self.o_proj(y.transpose(1, 2).reshape(B, T, NH * HD))
        h = self.post_attention_layernorm(x)
        x = x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return x


class Llama(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s
        self.embed_tokens = nn.Embedding(s["V"], s["C"])
        self.layers = nn.ModuleList([LlamaBlock(s) for _ in range(s["L"])])
        self.norm = RMSNorm(s["C"], s["eps"])
        HD = s["C"] // s["NH"]
        inv_freq = 1.0 / (s["theta"] ** (torch.arange(0, HD, 2, dtype=torch.float32) / HD))
        ang = torch.outer(torch.arange(s["ctx"], dtype=torch.float32), inv_freq)
        emb = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos_t", emb.cos(), persistent=False)
        self.register_buffer("sin_t", emb.sin(), persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)

    def hidden(self, ids, cache=None, past=0):
        T = ids.shape[1]
        cos = self.cos_t[past:past + T]
        sin = self.sin_t[past:past + T]
        x = self.embed_tokens(ids)
        for i, blk in enumerate(self.layers):
            x = blk(x, cos, sin, None if cache is None else cache[i], past)
        return self.norm(x)

    def logits(self, h):
        return h @ self.embed_tokens.weight.t()     # tied head (SmolLM)

    def lora(self, r, alpha):
        for blk in self.layers:
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(blk, name, LoRALinear(getattr(blk, name), r, alpha))

    def new_cache(self, B, maxT):
        s = self.s
        HD = s["C"] // s["NH"]
        return [(torch.zeros(B, s["NKV"], maxT, HD), torch.zeros(B, s["NKV"], maxT, HD))
                for _ in range(s["L"])]


# ---------------------------------------------------------------- measurement

def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def count_params(model, trainable_only=False):
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        n += p.numel()
    return n


def matmul_params(model, s):
    """Parameters that take part in matrix products (the tied head once), i.e.
    all of them except learned position embeddings. The same count as the C
    bench uses for model FLOPs."""
    n = count_params(model)
    if s["arch"] == "gpt2":
        n -= s["ctx"] * s["C"]
    return n


def emit(rec):
    print(json.dumps(rec), flush=True)


def autocast(args):
    if args.dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def base_record(args, s, mode):
    return {"impl": "torch", "shape": args.shape, "mode": mode, "B": s["B"], "T": s["T"],
            "threads": torch.get_num_threads(), "attn": ATTN, "dtype": args.dtype,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "torch": torch.__version__}


def seq_logp(model, x, y):
    """(rows,) sums of log p(y_t | x_<=t): log-softmax in fp32 as autocast does."""
    logits = model.logits(model.hidden(x)).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(-1)


def run_train(args, s, model, lora, dpo=False):
    B, T, V = s["B"] * (2 if dpo else 1), s["T"], s["V"]
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, V, (B, T + 1), generator=g)
    x, y = ids[:, :T].contiguous(), ids[:, 1:].contiguous()
    if lora:
        for p in model.parameters():
            p.requires_grad_(False)
        model.lora(16, 32.0)
    params = [p for p in model.parameters() if p.requires_grad]
    # Weight decay on matrices only (as Hugging Face's Trainer): costs the same.
    decay = [p for p in params if p.dim() == 2]
    no_decay = [p for p in params if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            foreach=args.foreach)

    def step():
        if dpo:
            P = B // 2
            with torch.no_grad(), autocast(args):
                LoRALinear.enabled = False
                ref = seq_logp(model, x, y)
                LoRALinear.enabled = True
            with autocast(args):
                pol = seq_logp(model, x, y)
            z = 0.1 * ((pol[:P] - ref[:P]) - (pol[P:] - ref[P:]))
            loss = -F.logsigmoid(z).mean()
        else:
            with autocast(args):
                h = model.hidden(x)
                logits = model.logits(h)
                loss = F.cross_entropy(logits.view(-1, V), y.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    loss = 0.0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    total = sum(times)
    N = matmul_params(model, s)
    L, C = s["L"], s["C"]
    # Model FLOPs per token: 6N + 12 L C T for training; with LoRA the frozen
    # base computes no weight gradients, so 4N + 12 L C T.
    fpt = (6 if dpo else 4 if lora else 6) * N + (18 if dpo else 12) * L * C * T
    rec = base_record(args, s, "dpo" if dpo else "lora" if lora else "train")
    rec.update({"B": B, "tokens_per_s": B * T * args.steps / total, "step_s": total / args.steps,
                "step_s_min": min(times), "tokens_per_s_best": B * T / min(times), "steps": args.steps, "warmup": args.warmup,
                "peak_rss_mb": peak_rss_mb(), "params": count_params(model),
                "trainable_params": count_params(model, True),
                "flops_per_token": fpt, "loss": loss})
    emit(rec)


@torch.inference_mode()
def generate(model, prompt, new, args):
    with autocast(args):
        return generate_(model, prompt, new)


def generate_(model, prompt, new):
    B, P = prompt.shape
    cache = model.new_cache(B, P + new)
    h = model.hidden(prompt, cache, 0)
    tok = model.logits(h[:, -1:]).argmax(-1)        # (B, 1)
    out = [tok]
    for i in range(new - 1):
        h = model.hidden(tok, cache, P + i)
        tok = model.logits(h).argmax(-1)
        out.append(tok)
    return torch.cat(out, dim=1)


def run_gen(args, s, model):
    # 128 new tokens from a 16-token prompt; tiny's context (128) holds 112.
    P = 16
    NEW = min(128, s["ctx"] - P)
    model.eval()
    for B in (1, 8):
        g = torch.Generator().manual_seed(99)
        prompt = torch.randint(0, s["V"], (B, P), generator=g)
        for _ in range(args.warmup):
            generate(model, prompt, NEW, args)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            generate(model, prompt, NEW, args)
            times.append(time.perf_counter() - t0)
        total = sum(times)
        rec = base_record(args, s, "gen_b%d" % B)
        rec.update({"B": B, "T": P + NEW, "prompt": P, "new_tokens": NEW,
                    "tokens_per_s": B * NEW * args.steps / total,
                    "step_s": total / args.steps, "step_s_min": min(times),
                    "tokens_per_s_best": B * NEW / min(times),
                    "steps": args.steps, "warmup": args.warmup,
                    "peak_rss_mb": peak_rss_mb(), "params": count_params(model)})
        emit(rec)


def run_sgemm(args):
    n = 1024
    ty = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(ty), torch.randn(n, n).to(ty)
    for _ in range(3):
        torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while reps < 5 or time.perf_counter() - t0 < 1.0:
        torch.mm(a, b)
        reps += 1
    dt = (time.perf_counter() - t0) / reps
    emit({"impl": "torch", "bench": "sgemm", "M": n, "N": n, "K": n, "dtype": args.dtype,
          "threads": torch.get_num_threads(),
          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
          "gflops": 2.0 * n * n * n / dt / 1e9})


def main():
    global ATTN
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--mode", choices=["train", "lora", "dpo", "gen", "sgemm"], default="train")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (gen: timed runs)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", choices=["matmul", "sdpa"], default="matmul")
    ap.add_argument("--foreach", action="store_true",
                    help="AdamW(foreach=True); default is torch's per-parameter loop")
    args = ap.parse_args()
    if args.attn == "sdpa" and not hasattr(F, "_scaled_dot_product_attention"):
        sys.exit("torch_bench: this torch has no scaled_dot_product_attention")
    ATTN = args.attn
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    if args.mode == "sgemm":
        run_sgemm(args)
        return
    s = SHAPES[args.shape]
    model = GPT2(s) if s["arch"] == "gpt2" else Llama(s)
    if args.mode == "gen":
        run_gen(args, s, model)
    else:
        run_train(args, s, model, args.mode in ("lora", "dpo"), args.mode == "dpo")


if __name__ == "__main__":
    main()

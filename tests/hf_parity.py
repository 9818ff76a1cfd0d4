#!/usr/bin/python3
"""Cross-implementation parity: alignd against Hugging Face transformers' modeling code.

transformers itself is not installed, so this file re-implements, in plain
torch, the forward pass of the classes alignd claims to match, following the
upstream sources operation by operation:

  GPT-2  (models/gpt2/modeling_gpt2.py): wte + learned wpe; per block
         ln_1 -> GPT2Attention (Conv1D c_attn, y = x @ W + b with W stored
         [in, out], split into q, k, v; scores / sqrt(head_dim); causal mask
         by torch.where with finfo.min; softmax; c_proj) -> residual;
         ln_2 -> GPT2MLP (c_fc, gelu_new = NewGELUActivation, c_proj) ->
         residual; ln_f; lm_head tied to wte.
  Llama  (models/llama/modeling_llama.py, and Qwen2/Mistral, which differ
         only in biases): embed_tokens; per layer LlamaRMSNorm (float32:
         x * rsqrt(mean(x^2) + eps), then weight * x) -> q/k/v projections
         (Qwen2: q/k/v biases; llama attention_bias: q/k/v/o biases) ->
         RoPE (inv_freq = 1 / base^(arange(0, dim, 2) / dim), cos/sin of
         cat(freqs, freqs), rotate_half) -> repeat_kv for GQA -> eager
         attention (scores * head_dim^-0.5 + causal mask of finfo.min,
         softmax in float32) -> o_proj -> residual; RMSNorm -> MLP
         down(silu(gate(x)) * up(x)) -> residual; final norm; lm_head
         (or embed_tokens when tie_word_embeddings).

config.json is read with the field names and defaults of GPT2Config,
LlamaConfig, Qwen2Config and MistralConfig. Weights are read with a small
safetensors reader written here (F32, F16, BF16; single file or shards with
model.safetensors.index.json), and the writer below builds folders that
alignd has never seen, in the layouts transformers saves.

Scenarios (each prints "ok <name> ..." or "FAIL <name>: <detail>"):
  safetensors_roundtrip      the reader/writer here, F32/F16/BF16
  gpt2_init_logprobs         alignd init-model gpt2, logprobs of 40 ids
  gpt2_init_prompt_len       the same with --prompt-len
  llama_gqa_init_logprobs    alignd init-model llama, 4 heads over 2 KV heads
  llama_gqa_init_prompt_len  the same with --prompt-len
  qwen2_bf16_sharded         Python-written Qwen2 (q/k/v biases, untied head,
                             norm weights != 1, rope_theta 1e6), BF16, two
                             shards + index
  gpt2_f16_tied              Python-written GPT-2, F16, "transformer." prefix,
                             no lm_head.weight (tied)
  llama_f32_headdim_bias     Python-written llama: head_dim != hidden/heads,
                             one KV head, attention_bias + mlp_bias, tied,
                             rms_norm_eps 1e-2 and small activations, so a
                             misread eps shows
  *_greedy                   alignd generate (KV cache) vs torch's argmax loop
                             recomputing the full forward each step; the
                             per-step log-probs are compared too

Log-probs must agree within 2e-4 (max abs) with the float32 torch forward, as
transformers runs it in float32; the distance to a float64 evaluation of the
same graph is printed alongside to show how much of the gap is float32 noise.

Usage: hf_parity.py [ALIGND_BIN]   (else $ALIGND_BIN); scratch space in
$AL_TEST_TMP (a subfolder hf_parity is recreated) or a fresh temp dir.
Exit status 0 when every scenario passes, 1 otherwise, 2 on setup errors.
"""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the C wrapper checks this first, but be explicit
    print(f"FAIL setup: cannot import torch ({e}); install python3-torch", flush=True)
    sys.exit(2)

TOL = 2e-4          # max abs difference allowed on log-probs
TOL_FAM = 1e-5      # the families' checkpoints (hf_families.py): against torch fp32 and fp64
TIE_EPS = 1e-5      # greedy: top-2 logits closer than this are a tie

# ---------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length N, N bytes of JSON
# {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"},
# then the data buffer (offsets relative to its start).

ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
ST_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2}


def st_read(path):
    """Returns {name: tensor in its stored dtype} for one .safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in ST_DTYPES:
            raise ValueError(f"{path}: {name}: dtype {dt} is not F32/F16/BF16")
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        numel = math.prod(shape)
        if end - begin != numel * ST_ITEMSIZE[dt] or base + end > len(data):
            raise ValueError(f"{path}: {name}: data_offsets {begin}..{end} do not fit "
                             f"shape {shape} of {dt}")
        raw = bytearray(data[base + begin:base + end])
        if numel == 0:
            t = torch.empty(shape, dtype=ST_DTYPES[dt])
        elif dt == "BF16":  # no numpy bfloat16: reinterpret the 16-bit words
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=ST_DTYPES[dt])
        out[name] = t.reshape(shape).clone()
    return out


def _st_bytes(t, dtype_name):
    t = t.detach().to(ST_DTYPES[dtype_name]).contiguous().cpu()
    if dtype_name == "BF16":
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def st_write(path, tensors, dtype_name):
    """Writes {name: tensor} converted to dtype_name ("F32", "F16", "BF16"),
    names sorted, header padded with spaces to 8 bytes, as safetensors does.
    Returns the size of the data buffer (the index file's total_size share)."""
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        b = _st_bytes(tensors[name], dtype_name)
        header[name] = {"dtype": dtype_name, "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return off


def st_write_sharded(folder, tensors, dtype_name, n_shards):
    """model-0000i-of-0000n.safetensors + model.safetensors.index.json
    {"metadata": {"total_size": N}, "weight_map": {name: shard}}."""
    names = sorted(tensors)
    per = -(-len(names) // n_shards)
    weight_map, total = {}, 0
    for i in range(n_shards):
        chunk = names[i * per:(i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        total += st_write(os.path.join(folder, fname), {k: tensors[k] for k in chunk}, dtype_name)
        for k in chunk:
            weight_map[k] = fname
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)


def st_read_folder(folder):
    """A model folder's tensors: model.safetensors, or every shard its index names."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index):
        return st_read(os.path.join(folder, "model.safetensors"))
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
        got = st_read(os.path.join(folder, shard))
        for name, where in weight_map.items():
            if where == shard:
                if name not in got:
                    raise ValueError(f"{shard}: index names {name} but the shard lacks it")
                out[name] = got[name]
    return out


# ---------------------------------------------------------------------------
# config.json as transformers reads it (absent or null -> the class default).

class Cfg:
    pass


def _get(c, key, default):
    v = c.get(key)
    return default if v is None else v


def hf_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    cfg = Cfg()
    cfg.model_type = c["model_type"]
    cfg.vocab_size = c["vocab_size"]
    eos = c.get("eos_token_id")
    cfg.eos = eos if isinstance(eos, list) else ([] if eos is None else [eos])
    if cfg.model_type == "gpt2":  # GPT2Config
        cfg.n_embd = _get(c, "n_embd", 768)
        cfg.n_layer = _get(c, "n_layer", 12)
        cfg.n_head = _get(c, "n_head", 12)
        cfg.n_positions = _get(c, "n_positions", 1024)
        cfg.n_inner = c.get("n_inner")  # None -> 4 * n_embd (GPT2Block)
        cfg.layer_norm_epsilon = _get(c, "layer_norm_epsilon", 1e-5)
        cfg.activation_function = _get(c, "activation_function", "gelu_new")
        cfg.tie_word_embeddings = _get(c, "tie_word_embeddings", True)
        assert cfg.activation_function in ("gelu_new", "gelu_pytorch_tanh")
        assert _get(c, "scale_attn_weights", True) and not _get(c, "scale_attn_by_inverse_layer_idx", False)
    elif cfg.model_type in ("llama", "qwen2", "mistral"):  # LlamaConfig / Qwen2Config / MistralConfig
        cfg.hidden_size = c["hidden_size"]
        cfg.intermediate_size = c["intermediate_size"]
        cfg.num_hidden_layers = c["num_hidden_layers"]
        cfg.num_attention_heads = c["num_attention_heads"]
        cfg.num_key_value_heads = _get(c, "num_key_value_heads", cfg.num_attention_heads)
        cfg.head_dim = _get(c, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
        cfg.rms_norm_eps = _get(c, "rms_norm_eps", 1e-6)
        cfg.rope_theta = _get(c, "rope_theta", 10000.0)
        cfg.tie_word_embeddings = _get(c, "tie_word_embeddings", False)
        assert _get(c, "hidden_act", "silu") == "silu"
        assert c.get("rope_scaling") is None, "RoPE scaling is not re-implemented here"
        if cfg.model_type == "qwen2":  # Qwen2Attention: q/k/v bias=True, o_proj bias=False
            cfg.qkv_bias, cfg.o_bias, cfg.mlp_bias = True, False, False
        elif cfg.model_type == "mistral":
            cfg.qkv_bias = cfg.o_bias = cfg.mlp_bias = False
        else:  # LlamaAttention: attention_bias covers q, k, v and o_proj
            cfg.qkv_bias = cfg.o_bias = bool(_get(c, "attention_bias", False))
            cfg.mlp_bias = bool(_get(c, "mlp_bias", False))
    else:
        raise ValueError(f"model_type {cfg.model_type} is not re-implemented here")
    return cfg


# ---------------------------------------------------------------------------
# The forward passes. Each returns logits (T, V) for one sequence, computed in
# `dtype` (float32 as transformers loads a float32 checkpoint; float64 for the
# information line).

def conv1d(x, w, b):
    """pytorch_utils.Conv1D: weight (nx, nf), y = b + x @ w."""
    size_out = x.size()[:-1] + (w.size(1),)
    return torch.addmm(b, x.view(-1, x.size(-1)), w).view(size_out)


def gelu_new(x):
    """activations.NewGELUActivation (the tanh approximation)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gpt2_logits(cfg, weights, ids, dtype=torch.float32):
    # GPT2LMHeadModel keeps the body under "transformer."; GPT2Model has no prefix.
    W = {}
    for k, v in weights.items():
        W[k[len("transformer."):] if k.startswith("transformer.") else k] = v.to(dtype)
    C, NH = cfg.n_embd, cfg.n_head
    HD = C // NH
    T = len(ids)
    input_ids = torch.tensor([ids], dtype=torch.long)
    position_ids = torch.arange(T, dtype=torch.long).unsqueeze(0)
    h = F.embedding(input_ids, W["wte.weight"]) + F.embedding(position_ids, W["wpe.weight"])
    causal = torch.tril(torch.ones((T, T), dtype=torch.bool)).view(1, 1, T, T)

    def split_heads(t):  # (1, T, C) -> (1, NH, T, HD)
        return t.view(t.size()[:-1] + (NH, HD)).permute(0, 2, 1, 3)

    for l in range(cfg.n_layer):
        p = f"h.{l}."
        residual = h
        x = F.layer_norm(h, (C,), W[p + "ln_1.weight"], W[p + "ln_1.bias"], cfg.layer_norm_epsilon)
        q, k, v = conv1d(x, W[p + "attn.c_attn.weight"], W[p + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        att = torch.matmul(q, k.transpose(-1, -2))
        att = att / torch.full([], v.size(-1) ** 0.5, dtype=att.dtype)
        mask_value = torch.full([], torch.finfo(att.dtype).min, dtype=att.dtype)
        att = torch.where(causal, att, mask_value)
        att = F.softmax(att, dim=-1).type(v.dtype)
        o = torch.matmul(att, v)
        o = o.permute(0, 2, 1, 3).contiguous().view(1, T, C)
        o = conv1d(o, W[p + "attn.c_proj.weight"], W[p + "attn.c_proj.bias"])
        h = o + residual
        residual = h
        x = F.layer_norm(h, (C,), W[p + "ln_2.weight"], W[p + "ln_2.bias"], cfg.layer_norm_epsilon)
        x = conv1d(x, W[p + "mlp.c_fc.weight"], W[p + "mlp.c_fc.bias"])
        x = gelu_new(x)
        x = conv1d(x, W[p + "mlp.c_proj.weight"], W[p + "mlp.c_proj.bias"])
        h = residual + x
    h = F.layer_norm(h, (C,), W["ln_f.weight"], W["ln_f.bias"], cfg.layer_norm_epsilon)
    head = W["wte.weight"] if cfg.tie_word_embeddings else weights["lm_head.weight"].to(dtype)
    return F.linear(h, head)[0]


def rms_norm(h, weight, eps):
    """LlamaRMSNorm: statistics in float32 (float64 stays float64 here)."""
    input_dtype = h.dtype
    hs = h.to(torch.float64 if input_dtype == torch.float64 else torch.float32)
    variance = hs.pow(2).mean(-1, keepdim=True)
    hs = hs * torch.rsqrt(variance + eps)
    return weight * hs.to(input_dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(hs, n_rep):
    """(B, NKV, T, HD) -> (B, NKV * n_rep, T, HD), each KV head repeated n_rep times in place."""
    b, nkv, t, hd = hs.shape
    if n_rep == 1:
        return hs
    return hs[:, :, None, :, :].expand(b, nkv, n_rep, t, hd).reshape(b, nkv * n_rep, t, hd)


def llama_logits(cfg, weights, ids, dtype=torch.float32):
    W = {k: v.to(dtype) for k, v in weights.items()}
    C, NH, NKV, HD = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    T = len(ids)
    input_ids = torch.tensor([ids], dtype=torch.long)
    position_ids = torch.arange(T, dtype=torch.long).unsqueeze(0)
    h = F.embedding(input_ids, W["model.embed_tokens.weight"])

    # LlamaRotaryEmbedding (default rope type): float32 throughout in transformers.
    fdt = torch.float64 if dtype == torch.float64 else torch.float32
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, HD, 2, dtype=torch.int64).to(fdt) / HD))
    inv_freq_expanded = inv_freq[None, :, None].expand(position_ids.shape[0], -1, 1)
    freqs = (inv_freq_expanded @ position_ids[:, None, :].to(fdt)).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # apply_rotary_pos_emb, unsqueeze_dim=1

    # The 4-D causal mask transformers builds: 0 on and below the diagonal, min above.
    mask = torch.triu(torch.full((T, T), torch.finfo(dtype).min, dtype=dtype), diagonal=1)[None, None]

    def lin(x, name, bias):
        return F.linear(x, W[name + ".weight"], W[name + ".bias"] if bias else None)

    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        residual = h
        x = rms_norm(h, W[p + "input_layernorm.weight"], cfg.rms_norm_eps)
        q = lin(x, p + "self_attn.q_proj", cfg.qkv_bias).view(1, T, NH, HD).transpose(1, 2)
        k = lin(x, p + "self_attn.k_proj", cfg.qkv_bias).view(1, T, NKV, HD).transpose(1, 2)
        v = lin(x, p + "self_attn.v_proj", cfg.qkv_bias).view(1, T, NKV, HD).transpose(1, 2)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        k = repeat_kv(k, NH // NKV)
        v = repeat_kv(v, NH // NKV)
        att = torch.matmul(q, k.transpose(2, 3)) * (HD ** -0.5)
        att = att + mask
        att = F.softmax(att, dim=-1, dtype=fdt).to(q.dtype)
        o = torch.matmul(att, v)
        o = o.transpose(1, 2).contiguous().reshape(1, T, NH * HD)
        o = lin(o, p + "self_attn.o_proj", cfg.o_bias)
        h = residual + o
        residual = h
        x = rms_norm(h, W[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps)
        x = lin(F.silu(lin(x, p + "mlp.gate_proj", cfg.mlp_bias)) * lin(x, p + "mlp.up_proj", cfg.mlp_bias),
                p + "mlp.down_proj", cfg.mlp_bias)
        h = residual + x
    h = rms_norm(h, W["model.norm.weight"], cfg.rms_norm_eps)
    head = W["model.embed_tokens.weight"] if cfg.tie_word_embeddings else W["lm_head.weight"]
    return F.linear(h, head)[0]


def logits_of(cfg, weights, ids, dtype=torch.float32):
    with torch.no_grad():
        if cfg.model_type == "gpt2":
            return gpt2_logits(cfg, weights, ids, dtype)
        return llama_logits(cfg, weights, ids, dtype)


def ref_logprobs(cfg, weights, ids, dtype=torch.float32):
    """logp[t] = log p(ids[t] | ids[:t]) for t = 1 .. n-1 (index t-1 of the list)."""
    lsm = torch.log_softmax(logits_of(cfg, weights, ids, dtype).double(), dim=-1)
    return [lsm[t - 1, ids[t]].item() for t in range(1, len(ids))]


def ref_greedy(cfg, weights, prompt, max_new, stops):
    """transformers' greedy search without a KV cache: full forward each step.
    Returns (ids, logprobs, tie_step or None)."""
    ids, out, lps = list(prompt), [], []
    for step in range(max_new):
        logits = logits_of(cfg, weights, ids)[-1]
        top = torch.topk(logits, 2).values
        if (top[0] - top[1]).item() < TIE_EPS:
            return out, lps, step
        nxt = int(torch.argmax(logits).item())
        out.append(nxt)
        lps.append(torch.log_softmax(logits.double(), dim=-1)[nxt].item())
        ids.append(nxt)
        if nxt in stops:
            break
    return out, lps, None


def autocast_logits(cfg, weights, ids):
    """The float32 reference run under torch.autocast("cpu", dtype=torch.bfloat16):
    PyTorch's CPU mixed precision, which alignd's bf16 mode follows."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return logits_of(cfg, weights, ids).float()


# ---------------------------------------------------------------------------
# Driving alignd.

class Fail(Exception):
    pass


def alignd(binary, *args):
    args = [str(a) for a in args]
    # logprobs and generate run in fp32 unless a check asks for bf16 (their
    # default is mixed_precision "auto": bf16 on a CPU with AVX512_BF16)
    if args and args[0] in ("logprobs", "generate") and "--dtype" not in args:
        args += ["--dtype", "fp32"]
    r = subprocess.run([binary] + args, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise Fail(f"alignd {args[0]} exited {r.returncode}: {r.stderr.strip()[:400]}")
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise Fail(f"alignd {args[0]} printed no JSON: {r.stdout[:200]!r}")


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


def max_abs(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) if a else 0.0


def check_logprobs(binary, folder, ids, prompt_len=None):
    """Compares alignd logprobs with the float32 reference; returns a detail string."""
    cfg = hf_config(folder)
    weights = {k: v.float() for k, v in st_read_folder(folder).items()}
    args = ["logprobs", "--model", folder, "--ids", ids_arg(ids)]
    if prompt_len is not None:
        args += ["--prompt-len", prompt_len]
    got = alignd(binary, *args)
    k = 1 if prompt_len is None else prompt_len
    if got.get("tokens") != ids[k:]:
        raise Fail(f"tokens {got.get('tokens')} != ids[{k}:] {ids[k:]}")
    lp = got["logprobs"]
    if len(lp) != len(ids) - k:
        raise Fail(f"{len(lp)} log-probs for {len(ids) - k} tokens")
    ref32 = ref_logprobs(cfg, weights, ids)[k - 1:]
    ref64 = ref_logprobs(cfg, weights, ids, torch.float64)[k - 1:]
    d32, d64 = max_abs(lp, ref32), max_abs(lp, ref64)
    detail = (f"{len(lp)} tokens, max|alignd - torch fp32| = {d32:.3g}, vs fp64 = {d64:.3g}, "
              f"torch fp32 vs fp64 = {max_abs(ref32, ref64):.3g}, "
              f"logp in [{min(ref32):.2f}, {max(ref32):.2f}]")
    if not d32 <= TOL:
        worst = max(range(len(lp)), key=lambda i: abs(lp[i] - ref32[i]))
        raise Fail(f"{detail}; worst at token index {worst + k}: alignd {lp[worst]:.7f}, "
                   f"torch {ref32[worst]:.7f}")
    return detail


def check_greedy(binary, folder, prompt, max_new=12):
    cfg = hf_config(folder)
    weights = {k: v.float() for k, v in st_read_folder(folder).items()}
    got = alignd(binary, "generate", "--model", folder, "--ids", ids_arg(prompt),
                 "--max-new-tokens", max_new)
    # alignd's CLI stops at the config's EOS, as transformers' generate does.
    ref, ref_lp, tie = ref_greedy(cfg, weights, prompt, max_new, set(cfg.eos[:1]))
    ids, lps = got["ids"], got["logprobs"]
    n = len(ref)
    if tie is not None:
        if ids[:n] != ref:
            raise Fail(f"first {n} ids (before a tie) differ: alignd {ids[:n]}, torch {ref}")
        note = f"near-tie (< {TIE_EPS:g}) at step {tie}: compared the first {n} tokens only"
    else:
        if ids != ref:
            raise Fail(f"ids differ: alignd {ids}, torch {ref}")
        note = f"{n} tokens equal ({got.get('finish_reason')})"
    d = max_abs(lps[:n], ref_lp)
    if not d <= TOL:
        raise Fail(f"{note}, but step log-probs differ by {d:.3g}")
    return f"{note}: {ids}; max|logp diff| = {d:.3g}"


BF16_MEAN_TOL = 2e-2  # bf16: mean |alignd - torch autocast| of the per-token log-probs (nats)
BF16_TIE_EPS = 5e-2   # bf16 greedy: top-2 logits closer than this are a tie (bf16 rounding moves them)


def bf16_verdict(lp, ref, ref32):
    """alignd's bf16 log-probs lp against torch autocast's (ref) and torch fp32's
    (ref32) of the same tokens: the detail line, or Fail."""
    mean = sum(abs(a - b) for a, b in zip(lp, ref)) / len(lp)
    ours32 = sum(abs(a - b) for a, b in zip(lp, ref32)) / len(lp)
    torch32 = sum(abs(a - b) for a, b in zip(ref, ref32)) / len(lp)
    detail = (f"{len(lp)} tokens, mean|alignd bf16 - torch autocast| = {mean:.3g}, "
              f"max {max_abs(lp, ref):.3g}; from fp32: alignd bf16 {ours32:.3g}, torch autocast {torch32:.3g}")
    # The bar, 2e-2 nats from torch's autocast, holds where torch's own
    # bf16 stays well inside it (models at the scale of real checkpoints, e.g.
    # alignd init-model's). The folders written above with peaked logits
    # (spanning 15 nats) move under torch's autocast by 0.02-0.05 nats
    # themselves; two bf16 implementations that round at different points
    # cannot agree better than that, so there alignd's bf16 must stay as close
    # to fp32 as torch's autocast does (25 % margin).
    if torch32 <= BF16_MEAN_TOL / 2:
        if not mean <= BF16_MEAN_TOL:
            raise Fail(detail)
    elif not ours32 <= 1.25 * torch32 + 1e-3:
        raise Fail(detail + " (alignd's bf16 further from fp32 than torch's autocast)")
    return detail


def check_logprobs_bf16(binary, folder, ids):
    """alignd --dtype bf16 against the same model under torch's CPU autocast."""
    cfg = hf_config(folder)
    weights = {k: v.float() for k, v in st_read_folder(folder).items()}
    got = alignd(binary, "logprobs", "--model", folder, "--ids", ids_arg(ids), "--dtype", "bf16")
    lsm = torch.log_softmax(autocast_logits(cfg, weights, ids).double(), dim=-1)
    ref = [lsm[t - 1, ids[t]].item() for t in range(1, len(ids))]
    return bf16_verdict(got["logprobs"], ref, ref_logprobs(cfg, weights, ids))


def bf16_follow(ids, steps):
    """alignd's bf16 greedy ids against torch autocast's logits of the same
    steps (teacher-forced: steps[i] = (logit of ids[i], top logit, argmax)):
    each token autocast's argmax, or within BF16_TIE_EPS of it (a near-tie that
    bf16 rounding may break either way). The detail line, or Fail."""
    ties = 0
    for i, (mine, top, arg) in enumerate(steps):
        if ids[i] != arg:
            if mine < top - BF16_TIE_EPS:
                raise Fail(f"step {i}: alignd {ids[i]} (autocast logit {mine:.4f}), torch autocast {arg} "
                           f"({top:.4f}); alignd {ids}")
            ties += 1
    return (f"{len(ids)} tokens, each autocast's argmax"
            + (f" or within {BF16_TIE_EPS} of it ({ties})" if ties else "") + f": {ids}")


def check_greedy_bf16(binary, folder, prompt, max_new=12):
    cfg = hf_config(folder)
    weights = {k: v.float() for k, v in st_read_folder(folder).items()}
    got = alignd(binary, "generate", "--model", folder, "--ids", ids_arg(prompt),
                 "--max-new-tokens", max_new, "--dtype", "bf16")
    ids = got["ids"]
    if len(ids) != max_new and not (ids and ids[-1] in cfg.eos[:1]):
        raise Fail(f"{len(ids)} tokens without an EOS: {ids}")
    # one causal forward over prompt + ids gives every step's logits
    logits = autocast_logits(cfg, weights, list(prompt) + ids[:-1])[len(prompt) - 1:]
    steps = [(lg[t].item(), lg.max().item(), int(torch.argmax(lg).item())) for lg, t in zip(logits, ids)]
    return bf16_follow(ids, steps)


# ---------------------------------------------------------------------------
# Folders written here, never by alignd.

def rand_llama_folder(folder, gen, model_type, dtype_name, n_shards, *, C=64, L=2, NH=4, NKV=2,
                      HD=None, FF=176, V=300, ctx=64, theta=10000.0, tie=False, attention_bias=False,
                      mlp_bias=False, eps=1e-6, eos=None):
    """Random weights at a scale that keeps the next-token distribution peaked
    (matrices std ~ gain / sqrt(fan_in), norm weights around 1, biases 0.1)."""
    HD = HD or C // NH
    qkv_bias = model_type == "qwen2" or attention_bias
    o_bias = model_type != "qwen2" and attention_bias
    mb = model_type == "llama" and mlp_bias

    def mat(out, inp, gain=1.0):
        return torch.randn(out, inp, generator=gen) * (gain / math.sqrt(inp))

    def vec(n, scale=0.1, center=0.0):
        return center + scale * torch.randn(n, generator=gen)

    t = {"model.embed_tokens.weight": torch.randn(V, C, generator=gen)}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = vec(C, 0.2, 1.0)
        t[p + "post_attention_layernorm.weight"] = vec(C, 0.2, 1.0)
        for name, out in (("q_proj", NH * HD), ("k_proj", NKV * HD), ("v_proj", NKV * HD)):
            t[p + f"self_attn.{name}.weight"] = mat(out, C, 1.5 if name != "v_proj" else 1.0)
            if qkv_bias:
                t[p + f"self_attn.{name}.bias"] = vec(out)
        t[p + "self_attn.o_proj.weight"] = mat(C, NH * HD)
        if o_bias:
            t[p + "self_attn.o_proj.bias"] = vec(C)
        for name, out, inp in (("gate_proj", FF, C), ("up_proj", FF, C), ("down_proj", C, FF)):
            t[p + f"mlp.{name}.weight"] = mat(out, inp)
            if mb:
                t[p + f"mlp.{name}.bias"] = vec(out)
    t["model.norm.weight"] = vec(C, 0.2, 1.0)
    if tie:  # the tied matrix doubles as the head: scale it for peaked logits
        t["model.embed_tokens.weight"] *= 3.0 / math.sqrt(C)
    else:
        t["lm_head.weight"] = mat(V, C, 3.0)
    cls = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}
    cfg = {"architectures": [cls[model_type]], "model_type": model_type, "hidden_size": C,
           "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": NH,
           "num_key_value_heads": NKV, "max_position_embeddings": ctx, "rms_norm_eps": eps,
           "rope_theta": theta, "rope_scaling": None, "hidden_act": "silu",
           "tie_word_embeddings": tie, "vocab_size": V, "initializer_range": 0.02,
           "bos_token_id": None, "eos_token_id": eos,
           "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype_name]}
    if HD != C // NH:
        cfg["head_dim"] = HD
    if model_type == "llama":
        cfg["attention_bias"] = attention_bias
        cfg["mlp_bias"] = mlp_bias
    if model_type == "qwen2":
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = None
    write_folder(folder, cfg, t, dtype_name, n_shards)


def rand_gpt2_folder(folder, gen, dtype_name, *, C=64, L=2, NH=4, V=300, ctx=64, eos=None):
    """GPT2LMHeadModel as transformers saves it: "transformer." prefix,
    Conv1D weights (in, out), no lm_head.weight (tied to wte)."""
    def conv(inp, out, gain=1.0):
        return torch.randn(inp, out, generator=gen) * (gain / math.sqrt(inp))

    def vec(n, scale=0.1, center=0.0):
        return center + scale * torch.randn(n, generator=gen)

    t = {"transformer.wte.weight": torch.randn(V, C, generator=gen) * (3.0 / math.sqrt(C)),
         "transformer.wpe.weight": 0.3 * torch.randn(ctx, C, generator=gen)}
    for l in range(L):
        p = f"transformer.h.{l}."
        t[p + "ln_1.weight"], t[p + "ln_1.bias"] = vec(C, 0.2, 1.0), vec(C)
        t[p + "ln_2.weight"], t[p + "ln_2.bias"] = vec(C, 0.2, 1.0), vec(C)
        t[p + "attn.c_attn.weight"], t[p + "attn.c_attn.bias"] = conv(C, 3 * C, 1.5), vec(3 * C)
        t[p + "attn.c_proj.weight"], t[p + "attn.c_proj.bias"] = conv(C, C), vec(C)
        t[p + "mlp.c_fc.weight"], t[p + "mlp.c_fc.bias"] = conv(C, 4 * C), vec(4 * C)
        t[p + "mlp.c_proj.weight"], t[p + "mlp.c_proj.bias"] = conv(4 * C, C), vec(C)
    t["transformer.ln_f.weight"], t["transformer.ln_f.bias"] = vec(C, 0.2, 1.0), vec(C)
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
           "n_embd": C, "n_layer": L, "n_head": NH, "n_positions": ctx, "n_ctx": ctx, "n_inner": None,
           "layer_norm_epsilon": 1e-5, "vocab_size": V, "initializer_range": 0.02,
           "bos_token_id": eos, "eos_token_id": eos,
           "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype_name]}
    write_folder(folder, cfg, t, dtype_name, 1)


def write_folder(folder, cfg, tensors, dtype_name, n_shards):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    if n_shards > 1:
        st_write_sharded(folder, tensors, dtype_name, n_shards)
    else:
        st_write(os.path.join(folder, "model.safetensors"), tensors, dtype_name)


# ---------------------------------------------------------------------------

def test_roundtrip(work):
    gen = torch.Generator().manual_seed(11)
    src = {"a": torch.randn(3, 5, generator=gen) * 100, "b": torch.randn(7, generator=gen),
           "c.weight": torch.tensor([1.0, -2.5, 65504.0, 1e-3, float("inf")])}
    for dt in ("F32", "F16", "BF16"):
        path = os.path.join(work, f"rt_{dt}.safetensors")
        st_write(path, src, dt)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
        if n % 8:
            raise Fail(f"{dt}: header length {n} is not a multiple of 8")
        got = st_read(path)
        for k, v in src.items():
            want = v.to(ST_DTYPES[dt])
            if got[k].dtype != want.dtype or got[k].shape != want.shape or not torch.equal(got[k], want):
                raise Fail(f"{dt}: tensor {k} did not round-trip")
    sh = os.path.join(work, "rt_sharded")
    os.makedirs(sh)
    st_write_sharded(sh, src, "BF16", 2)
    got = st_read_folder(sh)
    if sorted(got) != sorted(src) or not all(torch.equal(got[k], src[k].bfloat16()) for k in src):
        raise Fail("sharded BF16 folder did not round-trip")
    return "F32/F16/BF16 single files and a 2-shard folder"


# ---------------------------------------------------------------------------
# The scenario runner (tests/trl_parity.py uses it too).

def setup_run(name):
    """The alignd binary (argv[1], else $ALIGND_BIN) and an emptied scratch
    folder $AL_TEST_TMP/<name> (else under a fresh temporary directory):
    (binary, work, own_root or None), or None after printing why not."""
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ALIGND_BIN", "")
    if not binary or not os.access(binary, os.X_OK):
        print(f"FAIL setup: alignd binary not found (argv[1] or $ALIGND_BIN): {binary!r}", flush=True)
        return None
    own_tmp = not os.environ.get("AL_TEST_TMP")
    root = tempfile.mkdtemp(prefix=f"al_{name}_") if own_tmp else os.environ["AL_TEST_TMP"]
    work = os.path.join(root, name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    torch.manual_seed(0)
    return os.path.abspath(binary), work, root if own_tmp else None


def run_scenarios(steps, work, own_root):
    """Runs (name, fn) steps, printing "ok name (detail)" or "FAIL name:
    reason" for each and the tally; returns the exit status (0: all passed).
    Scratch files stay for a failure and in $AL_TEST_TMP."""
    failed = 0
    for name, fn in steps:
        try:
            detail = fn()
            print(f"ok {name}" + (f" ({detail})" if detail else ""), flush=True)
        except Fail as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # a broken scenario is a failure, not a crash of the rest
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    print(f"{len(steps) - failed} passed, {failed} failed", flush=True)
    if own_root and not failed:
        shutil.rmtree(own_root, ignore_errors=True)
    elif failed:
        print(f"scratch files kept in {work}", flush=True)
    return 1 if failed else 0


def main():
    run = setup_run("hf_parity")
    if not run:
        return 2
    binary, work, own_root = run

    gen = torch.Generator().manual_seed(1234)
    seq = torch.randint(0, 300, (40,), generator=gen).tolist()
    prompt = torch.randint(0, 300, (8,), generator=gen).tolist()
    d_gpt2 = os.path.join(work, "gpt2_init")
    d_llama = os.path.join(work, "llama_gqa_init")
    d_qwen = os.path.join(work, "qwen2_bf16")
    d_gf16 = os.path.join(work, "gpt2_f16")
    d_lhd = os.path.join(work, "llama_f32_hd")

    def init_gpt2():
        alignd(binary, "init-model", "--arch", "gpt2", "--layers", 2, "--hidden", 64, "--heads", 4,
               "--vocab", 300, "--context", 64, "--seed", 3, "--out", d_gpt2)

    def init_llama():
        alignd(binary, "init-model", "--arch", "llama", "--layers", 2, "--hidden", 64, "--heads", 4,
               "--kv-heads", 2, "--vocab", 300, "--context", 64, "--seed", 3, "--out", d_llama)

    def make_python_folders():
        g = torch.Generator().manual_seed(77)
        rand_llama_folder(d_qwen, g, "qwen2", "BF16", 2, theta=1000000.0, eos=299)
        rand_gpt2_folder(d_gf16, g, "F16", eos=299)
        rand_llama_folder(d_lhd, g, "llama", "F32", 1, NKV=1, HD=24, FF=96, tie=True,
                          attention_bias=True, mlp_bias=True, eps=1e-2, theta=500000.0, eos=299)

    steps = [
        ("safetensors_roundtrip", lambda: test_roundtrip(work)),
        ("gpt2_init_logprobs", lambda: (init_gpt2(), check_logprobs(binary, d_gpt2, seq))[1]),
        ("gpt2_init_prompt_len", lambda: check_logprobs(binary, d_gpt2, seq, 17)),
        ("llama_gqa_init_logprobs", lambda: (init_llama(), check_logprobs(binary, d_llama, seq))[1]),
        ("llama_gqa_init_prompt_len", lambda: check_logprobs(binary, d_llama, seq, 17)),
        ("qwen2_bf16_sharded", lambda: (make_python_folders(), check_logprobs(binary, d_qwen, seq))[1]),
        ("qwen2_bf16_sharded_prompt_len", lambda: check_logprobs(binary, d_qwen, seq, 25)),
        ("gpt2_f16_tied", lambda: check_logprobs(binary, d_gf16, seq)),
        ("llama_f32_headdim_bias", lambda: check_logprobs(binary, d_lhd, seq)),
        ("qwen2_bf16_greedy", lambda: check_greedy(binary, d_qwen, prompt)),
        ("gpt2_f16_greedy", lambda: check_greedy(binary, d_gf16, prompt)),
        ("llama_f32_headdim_bias_greedy", lambda: check_greedy(binary, d_lhd, prompt)),
        ("llama_gqa_init_greedy", lambda: check_greedy(binary, d_llama, prompt)),
        # bf16 mixed precision against torch.autocast("cpu", dtype=torch.bfloat16)
        ("gpt2_init_bf16", lambda: check_logprobs_bf16(binary, d_gpt2, seq)),
        ("llama_gqa_init_bf16", lambda: check_logprobs_bf16(binary, d_llama, seq)),
        ("qwen2_bf16_sharded_bf16", lambda: check_logprobs_bf16(binary, d_qwen, seq)),
        ("gpt2_f16_tied_bf16", lambda: check_logprobs_bf16(binary, d_gf16, seq)),
        ("llama_f32_headdim_bias_bf16", lambda: check_logprobs_bf16(binary, d_lhd, seq)),
        ("qwen2_bf16_greedy_bf16", lambda: check_greedy_bf16(binary, d_qwen, prompt)),
        ("gpt2_f16_greedy_bf16", lambda: check_greedy_bf16(binary, d_gf16, prompt)),
        ("llama_f32_headdim_bias_greedy_bf16", lambda: check_greedy_bf16(binary, d_lhd, prompt)),
        ("llama_gqa_init_greedy_bf16", lambda: check_greedy_bf16(binary, d_llama, prompt)),
    ]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import hf_families
    steps += hf_families.steps(binary, work, sys.modules[__name__], seq, prompt)
    return run_scenarios(steps, work, own_root)


if __name__ == "__main__":
    sys.exit(main())

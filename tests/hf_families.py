"""Parity of the model families beyond Llama/Qwen2/GPT-2 (issue 15), driven by hf_parity.py.

A torch re-implementation of transformers' decoder families, written from
their modeling_*.py and configuration_*.py (transformers itself is not
installed here), operation by operation:

  llama   (LlamaRotaryEmbedding with every rope_type of modeling_rope_utils:
          default, linear, dynamic, yarn, longrope, llama3)
  mistral sliding_window on every layer (masking_utils: key j visible to
          query i iff i - j < sliding_window)
  qwen2/qwen3  use_sliding_window + max_window_layers / layer_types; Qwen3's
          q_norm/k_norm (Qwen2RMSNorm over head_dim) before RoPE
  gemma2  embeddings * tensor(hidden ** 0.5), Gemma2RMSNorm (x_hat * (1 + w)
          in float32), four norms a layer, gelu_pytorch_tanh GeGLU,
          scaling = query_pre_attn_scalar ** -0.5, attention soft-cap
          (s / cap, tanh, * cap before the mask), even layers sliding,
          final logit soft-cap
  gemma3_text  as gemma2 with q/k norms (1 + w), layer_types from
          sliding_window_pattern, local layers on a default RoPE of
          rope_local_base_freq, global ones on rope_theta + rope_scaling,
          no attention soft-cap
  phi3    fused qkv_proj and gate_up_proj (gate first), sliding window,
          LongRoPE with original_max_position_embeddings from the config
  olmo2   no pre-norms; q_norm/k_norm over all heads' projections;
          post_attention_ and post_feedforward_layernorm on the branches
  smollm3 no_rope_layers (0: that layer has no RoPE)
  granite embedding_multiplier, attention_multiplier (the score scale),
          residual_multiplier on both branches, logits / logits_scaling

Generation is compared with a KV-cache greedy loop, as transformers'
generate runs it: each call's RoPE sees seq_len = max(position_ids) + 1, so a
dynamic-NTK model rotates each new key with the frequencies of its own step.

bf16 mixed precision (alignd --dtype bf16) is compared with the same code run
under torch.autocast("cpu", dtype=torch.bfloat16), as hf_parity.py does for
GPT-2 and Llama: log-probs within its bound (bf16_verdict), and every greedy
token autocast's argmax along alignd's own tokens (bf16_follow).
"""

import math

import torch
import torch.nn.functional as F

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "olmo2",
            "smollm3", "granite")

# configuration_*.py class defaults that differ by family (None: from other fields)
DEFAULTS = {
    "llama": dict(max_pos=2048, nkv=None, head_dim=None, tie=False, eps=1e-6, theta=1e4),
    "mistral": dict(max_pos=4096 * 32, nkv=8, head_dim=None, tie=False, eps=1e-6, theta=1e4),
    "qwen2": dict(max_pos=32768, nkv=32, head_dim=None, tie=False, eps=1e-6, theta=1e4),
    "qwen3": dict(max_pos=32768, nkv=32, head_dim=128, tie=False, eps=1e-6, theta=1e4),
    "gemma2": dict(max_pos=8192, nkv=4, head_dim=256, tie=True, eps=1e-6, theta=1e4),
    "gemma3_text": dict(max_pos=131072, nkv=4, head_dim=256, tie=True, eps=1e-6, theta=1e6),
    "phi3": dict(max_pos=4096, nkv=None, head_dim=None, tie=False, eps=1e-5, theta=1e4),
    "olmo2": dict(max_pos=2048, nkv=None, head_dim=None, tie=False, eps=1e-5, theta=1e4),
    "smollm3": dict(max_pos=32768, nkv=4, head_dim=None, tie=True, eps=1e-6, theta=2e6),
    "granite": dict(max_pos=2048, nkv=None, head_dim=None, tie=False, eps=1e-6, theta=1e4),
}


class Cfg:
    pass


def _g(c, k, d):
    v = c.get(k)
    return d if v is None else v


def family_config(c):
    """The fields of config.json the re-implementation reads, with the class defaults."""
    mt = c["model_type"]
    D = DEFAULTS[mt]
    f = Cfg()
    f.mt = mt
    f.C, f.L, f.NH = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
    f.FF, f.V = c["intermediate_size"], c["vocab_size"]
    f.NKV = _g(c, "num_key_value_heads", D["nkv"] or f.NH)
    f.HD = c.get("head_dim") or D["head_dim"] or f.C // f.NH
    f.max_pos = _g(c, "max_position_embeddings", D["max_pos"])
    f.eps = _g(c, "rms_norm_eps", D["eps"])
    f.theta = _g(c, "rope_theta", D["theta"])
    f.tie = _g(c, "tie_word_embeddings", D["tie"])
    eos = c.get("eos_token_id")
    f.eos = eos if isinstance(eos, list) else ([] if eos is None else [eos])
    f.rope_scaling = c.get("rope_scaling")
    if f.rope_scaling is not None and "type" in f.rope_scaling and "rope_type" not in f.rope_scaling:
        f.rope_scaling = dict(f.rope_scaling, rope_type=f.rope_scaling["type"])
    if mt == "phi3" and f.rope_scaling and f.rope_scaling["rope_type"] in ("su", "yarn"):
        f.rope_scaling = dict(f.rope_scaling, rope_type="longrope")
    f.orig_max = c.get("original_max_position_embeddings", 4096) if mt == "phi3" else None
    ab = bool(_g(c, "attention_bias", False))
    f.qkv_bias = mt == "qwen2" or (ab and mt not in ("mistral", "phi3"))
    f.o_bias = ab and mt not in ("qwen2", "mistral", "phi3")
    f.mlp_bias = bool(_g(c, "mlp_bias", False)) and mt in ("llama", "granite")
    gemma = mt in ("gemma2", "gemma3_text")
    f.act = _g(c, "hidden_activation", "gelu_pytorch_tanh") if gemma else _g(c, "hidden_act", "silu")
    f.L_sliding = [False] * f.L
    f.L_nope = [False] * f.L
    f.window = None
    if mt == "mistral":
        f.window = c.get("sliding_window", 4096)
        f.L_sliding = [f.window is not None] * f.L
    elif mt == "phi3":
        f.window = c.get("sliding_window")
        f.L_sliding = [f.window is not None] * f.L
    elif mt in ("qwen2", "qwen3"):
        use = _g(c, "use_sliding_window", False)
        f.window = _g(c, "sliding_window", 4096) if use else None
        mwl = _g(c, "max_window_layers", 28)
        types = c.get("layer_types") or [
            "sliding_attention" if f.window is not None and i >= mwl else "full_attention"
            for i in range(f.L)]
        f.L_sliding = [t == "sliding_attention" for t in types]
    elif mt == "smollm3":
        use = _g(c, "use_sliding_window", False)
        interval = _g(c, "no_rope_layer_interval", 4)
        nr = c.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(f.L)]
        f.L_nope = [not nr[i] for i in range(f.L)]
        f.window = c.get("sliding_window")
        types = c.get("layer_types") or [
            "sliding_attention" if use and f.window is not None and not nr[i] else "full_attention"
            for i in range(f.L)]
        f.L_sliding = [use and t == "sliding_attention" for t in types]
    elif gemma:
        f.window = _g(c, "sliding_window", 4096)
        if mt == "gemma2":
            types = c.get("layer_types") or [
                "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(f.L)]
        else:
            p = _g(c, "sliding_window_pattern", 6)
            types = c.get("layer_types") or [
                "sliding_attention" if (i + 1) % p else "full_attention" for i in range(f.L)]
        f.L_sliding = [t == "sliding_attention" for t in types]
        f.qpas = _g(c, "query_pre_attn_scalar", 256)
        f.final_cap = c.get("final_logit_softcapping", 30.0 if mt == "gemma2" else None)
        f.attn_cap = c.get("attn_logit_softcapping", 50.0 if mt == "gemma2" else None)
        f.local_theta = _g(c, "rope_local_base_freq", 10000.0)
    if mt == "granite":
        f.emb_mult = _g(c, "embedding_multiplier", 1.0)
        f.res_mult = _g(c, "residual_multiplier", 1.0)
        f.att_mult = _g(c, "attention_multiplier", 1.0)
        f.logit_scale = _g(c, "logits_scaling", 1.0)
    return f


# ---------------------------------------------------------------------------
# modeling_rope_utils.py: (inv_freq, attention_scaling) for a call with seq_len.

def rope_params(f, rs, theta, seq_len):
    dim = f.HD
    arange = torch.arange(0, dim, 2, dtype=torch.int64).float()

    def default(base):
        return 1.0 / (base ** (arange / dim))

    t = rs["rope_type"] if rs else "default"
    if t == "default":
        return default(theta), 1.0
    if t == "linear":
        inv = default(theta)
        inv /= rs["factor"]
        return inv, 1.0
    if t == "dynamic":
        factor = rs["factor"]
        # dynamic_rope_update: seq_len = max(position_ids) + 1, a tensor
        if seq_len > f.max_pos:
            sl = torch.tensor(seq_len)
            base = theta * ((factor * sl / f.max_pos) - (factor - 1)) ** (dim / (dim - 2))
        else:
            base = theta * ((factor * f.max_pos / f.max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (base ** (arange / dim)), 1.0
    if t == "yarn":
        factor = rs["factor"]
        af = rs.get("attention_factor")
        ms, msad = rs.get("mscale"), rs.get("mscale_all_dim")
        om = rs.get("original_max_position_embeddings") or f.max_pos

        def get_mscale(scale, m=1):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        if af is None:
            af = get_mscale(factor, ms) / get_mscale(factor, msad) if ms and msad else get_mscale(factor)
        bf, bs = rs.get("beta_fast") or 32, rs.get("beta_slow") or 1

        def corr_dim(rot):
            return (dim * math.log(om / (rot * 2 * math.pi))) / (2 * math.log(theta))

        lo, hi = corr_dim(bf), corr_dim(bs)
        if rs.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, dim - 1)
        if lo == hi:
            hi += 0.001
        pos_freqs = theta ** (torch.arange(0, dim, 2).float() / dim)
        extrap, interp = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
        ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - lo) / (hi - lo), 0, 1)
        ef = 1 - ramp
        return interp * (1 - ef) + extrap * ef, af
    if t == "longrope":
        om = f.orig_max if f.orig_max is not None else f.max_pos
        factor = f.max_pos / om
        af = rs.get("attention_factor")
        if af is None:
            af = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(om))
        ext = torch.tensor(rs["long_factor"] if seq_len > om else rs["short_factor"], dtype=torch.float32)
        return 1.0 / (ext * theta ** arange.div(dim)), af
    if t == "llama3":
        inv = default(theta)
        factor, lf, hf = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lw, hw = old / lf, old / hf
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > lw, inv / factor, inv)
        smooth = (old / wavelen - lf) / (hf - lf)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < hw) * ~(wavelen > lw)
        return torch.where(medium, smoothed, inv_l), 1.0
    raise ValueError(f"rope type {t}")


def cos_sin(f, local, positions, dtype):
    """cos/sin (T, HD) for the given absolute positions of one call."""
    seq_len = max(positions) + 1
    if local:
        inv, af = rope_params(f, None, f.local_theta, seq_len)
    else:
        inv, af = rope_params(f, f.rope_scaling, f.theta, seq_len)
    pos = torch.tensor(positions, dtype=torch.float32)
    freqs = (inv[None, :, None].float() @ pos[None, None, :]).transpose(1, 2)[0]
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * af).to(dtype), (emb.sin() * af).to(dtype)


# ---------------------------------------------------------------------------

def rms(x, w, eps, gemma):
    fdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    h = x.to(fdt)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    if gemma:  # Gemma2RMSNorm: (x_hat * (1 + w)) in float32, then back
        return (h * (1.0 + w.to(fdt))).type_as(x)
    return w * h.to(x.dtype)  # LlamaRMSNorm (OLMo-2's is the same product in float32)


def rotate_half(x):
    return torch.cat((-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]), dim=-1)


def act_fn(name, x):
    if name == "silu":
        return F.silu(x)
    if name == "gelu_pytorch_tanh":
        return F.gelu(x, approximate="tanh")
    raise ValueError(name)


def forward(f, W, ids, positions, cache, dtype=torch.float32):
    """Logits (len(ids), V) of new tokens at `positions`, attending to the
    cache (a list per layer of (K, V) of earlier positions, extended here)."""
    mt = f.mt
    gemma = mt in ("gemma2", "gemma3_text")
    T = len(ids)
    NH, NKV, HD = f.NH, f.NKV, f.HD
    x = F.embedding(torch.tensor([ids]), W["model.embed_tokens.weight"])
    if gemma:
        x = x * torch.tensor(f.C ** 0.5, dtype=x.dtype)
    if mt == "granite":
        x = x * f.emb_mult
    cs_g = cos_sin(f, False, positions, dtype)
    cs_l = cos_sin(f, True, positions, dtype) if mt == "gemma3_text" else None
    rm = f.res_mult if mt == "granite" else None

    def lin(h, name, bias):
        return F.linear(h, W[name + ".weight"], W.get(name + ".bias") if bias else None)

    for l in range(f.L):
        p = f"model.layers.{l}."
        r = x
        h = x if mt == "olmo2" else rms(x, W[p + "input_layernorm.weight"], f.eps, gemma)
        if mt == "phi3":
            qkv = lin(h, p + "self_attn.qkv_proj", False)
            q, k, v = qkv.split([NH * HD, NKV * HD, NKV * HD], dim=-1)
        else:
            q = lin(h, p + "self_attn.q_proj", f.qkv_bias)
            k = lin(h, p + "self_attn.k_proj", f.qkv_bias)
            v = lin(h, p + "self_attn.v_proj", f.qkv_bias)
        if mt == "olmo2":
            q = rms(q, W[p + "self_attn.q_norm.weight"], f.eps, False)
            k = rms(k, W[p + "self_attn.k_norm.weight"], f.eps, False)
        q = q.view(1, T, NH, HD)
        k = k.view(1, T, NKV, HD)
        if mt in ("qwen3", "gemma3_text"):
            q = rms(q, W[p + "self_attn.q_norm.weight"], f.eps, gemma)
            k = rms(k, W[p + "self_attn.k_norm.weight"], f.eps, gemma)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.view(1, T, NKV, HD).transpose(1, 2)
        if not f.L_nope[l]:
            cos, sin = cs_l if (cs_l is not None and f.L_sliding[l]) else cs_g
            cos, sin = cos[None, None], sin[None, None]
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        if cache[l] is not None:
            k = torch.cat([cache[l][0], k], dim=2)
            v = torch.cat([cache[l][1], v], dim=2)
        cache[l] = (k, v)
        S = k.shape[2]
        rep = NH // NKV
        kk = k[:, :, None].expand(1, NKV, rep, S, HD).reshape(1, NH, S, HD)
        vv = v[:, :, None].expand(1, NKV, rep, S, HD).reshape(1, NH, S, HD)
        scaling = f.qpas ** -0.5 if gemma else f.att_mult if mt == "granite" else HD ** -0.5
        att = torch.matmul(q, kk.transpose(2, 3)) * scaling
        if gemma and f.attn_cap is not None and mt == "gemma2":
            att = att / f.attn_cap
            att = torch.tanh(att)
            att = att * f.attn_cap
        qi = torch.tensor(positions)[:, None]
        kj = torch.arange(S)[None, :]
        vis = kj <= qi
        if f.L_sliding[l] and f.window is not None:
            vis = vis & (kj > qi - f.window)
        minv = torch.full(vis.shape, torch.finfo(dtype).min, dtype=dtype)
        att = att + torch.where(vis, torch.zeros((), dtype=dtype), minv)[None, None]
        fdt = torch.float64 if dtype == torch.float64 else torch.float32
        att = F.softmax(att, dim=-1, dtype=fdt).to(dtype)
        o = torch.matmul(att, vv).transpose(1, 2).reshape(1, T, NH * HD)
        o = lin(o, p + "self_attn.o_proj", f.o_bias)
        if gemma or mt == "olmo2":
            o = rms(o, W[p + "post_attention_layernorm.weight"], f.eps, gemma)
        x = r + (o * rm if rm is not None else o)
        r = x
        if gemma:
            h = rms(x, W[p + "pre_feedforward_layernorm.weight"], f.eps, True)
        elif mt == "olmo2":
            h = x
        else:
            h = rms(x, W[p + "post_attention_layernorm.weight"], f.eps, False)
        if mt == "phi3":
            gate, up = lin(h, p + "mlp.gate_up_proj", False).chunk(2, dim=-1)
            m = lin(up * act_fn(f.act, gate), p + "mlp.down_proj", False)
        else:
            m = lin(act_fn(f.act, lin(h, p + "mlp.gate_proj", f.mlp_bias)) * lin(h, p + "mlp.up_proj", f.mlp_bias),
                    p + "mlp.down_proj", f.mlp_bias)
        if gemma or mt == "olmo2":
            m = rms(m, W[p + "post_feedforward_layernorm.weight"], f.eps, gemma)
        x = r + (m * rm if rm is not None else m)
    x = rms(x, W["model.norm.weight"], f.eps, gemma)
    head = W["model.embed_tokens.weight"] if f.tie else W["lm_head.weight"]
    logits = F.linear(x, head)[0]
    if gemma and f.final_cap is not None:
        logits = logits / f.final_cap
        logits = torch.tanh(logits)
        logits = logits * f.final_cap
    if mt == "granite":
        logits = logits / f.logit_scale
    return logits


def ref_logprobs(f, weights, ids, dtype=torch.float32):
    W = {k: v.to(dtype) for k, v in weights.items()}
    with torch.no_grad():
        logits = forward(f, W, ids, list(range(len(ids))), [None] * f.L, dtype)
    lsm = torch.log_softmax(logits.double(), dim=-1)
    return [lsm[t - 1, ids[t]].item() for t in range(1, len(ids))]


def autocast_logits(f, weights, ids):
    """Logits of the whole sequence under torch.autocast("cpu", dtype=torch.bfloat16):
    PyTorch's CPU mixed precision, which alignd's bf16 mode follows."""
    W = {k: v.float() for k, v in weights.items()}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return forward(f, W, ids, list(range(len(ids))), [None] * f.L).float()


def follow(f, weights, prompt, ids, autocast=False):
    """Teacher-forces ids after prompt through the cached loop of ref_greedy;
    per step (logit of ids[i], the top logit, its token)."""
    W = {k: v.float() for k, v in weights.items()}
    cache = [None] * f.L
    out = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = forward(f, W, list(prompt), list(range(len(prompt))), cache)[-1].float()
        for i, t in enumerate(ids):
            out.append((logits[t].item(), logits.max().item(), int(torch.argmax(logits).item())))
            if i + 1 < len(ids):
                logits = forward(f, W, [t], [len(prompt) + i], cache)[-1].float()
    return out


def ref_greedy(f, weights, prompt, max_new, stops, tie_eps):
    """transformers' greedy generate with a DynamicCache: prefill, then one
    token a call. Returns (ids, logprobs, tie_step or None)."""
    W = {k: v.float() for k, v in weights.items()}
    cache = [None] * f.L
    out, lps = [], []
    with torch.no_grad():
        logits = forward(f, W, list(prompt), list(range(len(prompt))), cache)[-1]
        pos = len(prompt)
        for step in range(max_new):
            top = torch.topk(logits, 2).values
            if (top[0] - top[1]).item() < tie_eps:
                return out, lps, step
            nxt = int(torch.argmax(logits).item())
            out.append(nxt)
            lps.append(torch.log_softmax(logits.double(), dim=-1)[nxt].item())
            if nxt in stops or step + 1 == max_new:
                break
            logits = forward(f, W, [nxt], [pos], cache)[-1]
            pos += 1
    return out, lps, None


# ---------------------------------------------------------------------------
# Random checkpoints with each family's real config shape, written in the
# layout transformers saves (never by alignd).

CLS = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
       "qwen3": "Qwen3ForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
       "phi3": "Phi3ForCausalLM", "olmo2": "Olmo2ForCausalLM", "smollm3": "SmolLM3ForCausalLM",
       "granite": "GraniteForCausalLM"}


def rand_family(gen, mt, cfg_extra, *, C=64, L=2, NH=4, NKV=2, HD=16, FF=96, V=300, ctx=64,
                tie=False, attention_bias=False, eos=299):
    """config dict and tensors; norms around 1 (or around 0 for Gemma's 1 + w)."""
    gemma = mt in ("gemma2", "gemma3_text")

    def mat(out, inp, gain=1.0):
        return torch.randn(out, inp, generator=gen) * (gain / math.sqrt(inp))

    def vec(n, scale=0.1, center=0.0):
        return center + scale * torch.randn(n, generator=gen)

    ncenter = 0.0 if gemma else 1.0
    t = {"model.embed_tokens.weight": torch.randn(V, C, generator=gen) * (0.3 if gemma else 1.0)}
    q, kv = NH * HD, NKV * HD
    qkv_bias = mt == "qwen2" or (attention_bias and mt not in ("mistral", "phi3"))
    o_bias = attention_bias and mt not in ("qwen2", "mistral", "phi3")
    for l in range(L):
        p = f"model.layers.{l}."
        if mt != "olmo2":
            t[p + "input_layernorm.weight"] = vec(C, 0.2, ncenter)
        t[p + "post_attention_layernorm.weight"] = vec(C, 0.2, ncenter)
        if gemma:
            t[p + "pre_feedforward_layernorm.weight"] = vec(C, 0.2, ncenter)
        if gemma or mt == "olmo2":
            t[p + "post_feedforward_layernorm.weight"] = vec(C, 0.2, ncenter)
        if mt == "phi3":
            t[p + "self_attn.qkv_proj.weight"] = torch.cat([mat(q, C, 1.5), mat(kv, C, 1.5), mat(kv, C)])
        else:
            for name, out in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
                t[p + f"self_attn.{name}.weight"] = mat(out, C, 1.5 if name != "v_proj" else 1.0)
                if qkv_bias:
                    t[p + f"self_attn.{name}.bias"] = vec(out)
        if mt in ("qwen3", "gemma3_text"):
            t[p + "self_attn.q_norm.weight"] = vec(HD, 0.2, ncenter)
            t[p + "self_attn.k_norm.weight"] = vec(HD, 0.2, ncenter)
        if mt == "olmo2":
            t[p + "self_attn.q_norm.weight"] = vec(q, 0.2, 1.0)
            t[p + "self_attn.k_norm.weight"] = vec(kv, 0.2, 1.0)
        t[p + "self_attn.o_proj.weight"] = mat(C, q)
        if o_bias:
            t[p + "self_attn.o_proj.bias"] = vec(C)
        if mt == "phi3":
            t[p + "mlp.gate_up_proj.weight"] = torch.cat([mat(FF, C), mat(FF, C)])
        else:
            t[p + "mlp.gate_proj.weight"] = mat(FF, C)
            t[p + "mlp.up_proj.weight"] = mat(FF, C)
        t[p + "mlp.down_proj.weight"] = mat(C, FF)
    t["model.norm.weight"] = vec(C, 0.2, ncenter)
    # logits of a few units: peaked enough for unambiguous greedy steps, small
    # enough that float32 log-softmax noise stays well under the 1e-5 tolerance
    if tie:
        t["model.embed_tokens.weight"] *= 1.5 / math.sqrt(C) / (0.3 if gemma else 1.0)
    else:
        t["lm_head.weight"] = mat(V, C, 1.5)
    cfg = {"architectures": [CLS[mt]], "model_type": mt, "hidden_size": C, "intermediate_size": FF,
           "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
           "head_dim": HD, "max_position_embeddings": ctx, "tie_word_embeddings": tie,
           "vocab_size": V, "initializer_range": 0.02, "bos_token_id": None, "eos_token_id": eos,
           "attention_dropout": 0.0, "torch_dtype": "float32"}
    if mt not in ("qwen2", "mistral", "phi3"):
        cfg["attention_bias"] = attention_bias
    cfg.update(cfg_extra)
    return cfg, t


def scenarios():
    """(name, model_type, config extras, shape kwargs) of each checkpoint."""
    return [
        ("llama31_rope_llama3", "llama",
         {"rope_theta": 500000.0, "rms_norm_eps": 1e-5,
          "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 64, "rope_type": "llama3"}},
         dict(ctx=256)),
        ("llama_rope_linear_legacy_type", "llama",
         {"rope_scaling": {"type": "linear", "factor": 2.5}}, {}),
        ("llama_rope_dynamic", "llama",
         {"max_position_embeddings": 16, "rope_scaling": {"rope_type": "dynamic", "factor": 3.0}},
         dict(ctx=16)),
        ("qwen25_rope_yarn", "qwen2",
         {"rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": 32768,
          "max_window_layers": 21,
          "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}},
         dict(ctx=64)),
        ("qwen2_sliding_layers", "qwen2",
         {"use_sliding_window": True, "sliding_window": 7, "max_window_layers": 1}, dict(L=3)),
        ("qwen3", "qwen3", {"rope_theta": 1000000.0, "tie_word_embeddings": True},
         dict(C=64, NH=4, NKV=2, HD=24, tie=True)),
        ("mistral_sliding_window", "mistral", {"sliding_window": 9, "rms_norm_eps": 1e-5}, {}),
        ("gemma2", "gemma2",
         {"query_pre_attn_scalar": 24, "sliding_window": 8, "final_logit_softcapping": 3.0,
          "attn_logit_softcapping": 2.0, "hidden_activation": "gelu_pytorch_tanh",
          "hidden_act": "gelu_pytorch_tanh", "cache_implementation": "hybrid", "pad_token_id": 0},
         dict(C=64, NH=4, NKV=2, HD=32, L=3, tie=True)),
        ("gemma3_text", "gemma3_text",
         {"query_pre_attn_scalar": 32, "sliding_window": 6, "sliding_window_pattern": 3,
          "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0,
          "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
          "final_logit_softcapping": None, "attn_logit_softcapping": None},
         dict(C=64, NH=4, NKV=1, HD=32, L=3, tie=True)),
        ("phi3_longrope_window", "phi3",
         {"sliding_window": 10, "original_max_position_embeddings": 32, "resid_pdrop": 0.0,
          "embd_pdrop": 0.0, "rms_norm_eps": 1e-5, "pad_token_id": 298,
          "rope_scaling": {"type": "longrope",
                           "short_factor": [1.0, 1.05, 1.1, 1.2, 1.4, 1.8, 2.5, 3.0],
                           "long_factor": [1.0, 1.3, 1.9, 2.8, 4.0, 6.5, 9.0, 12.0]}},
         dict(ctx=128, NKV=4)),
        ("olmo2", "olmo2", {"rms_norm_eps": 1e-6, "pad_token_id": 1}, {}),
        ("smollm3_nope", "smollm3",
         {"no_rope_layers": [1, 1, 0], "rope_theta": 2000000.0, "use_sliding_window": False},
         dict(L=3, tie=True)),
        ("granite_multipliers", "granite",
         {"embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.0625,
          "logits_scaling": 4.0, "mlp_bias": False}, {}),
    ]


def steps(binary, work, H, seq, prompt):
    """The (name, fn) steps hf_parity.py runs: per family, log-probs of the
    whole sequence and from a prompt length, and greedy generation."""
    import json
    import os

    out = []
    g = torch.Generator().manual_seed(4242)
    made = {}

    def make(name, mt, extra, shape):
        folder = os.path.join(work, name)
        cfg, t = rand_family(g, mt, extra, **shape)
        H.write_folder(folder, cfg, t, "F32", 1)
        made[name] = folder
        return folder

    def load(folder):
        with open(os.path.join(folder, "config.json")) as fh:
            f = family_config(json.load(fh))
        return f, {k: v.float() for k, v in H.st_read_folder(folder).items()}

    def check_lp(name, k=None):
        f, w = load(made[name])
        args = ["logprobs", "--model", made[name], "--ids", H.ids_arg(seq)]
        if k is not None:
            args += ["--prompt-len", k]
        got = H.alignd(binary, *args)
        k = 1 if k is None else k
        lp = got["logprobs"]
        if got.get("tokens") != seq[k:] or len(lp) != len(seq) - k:
            raise H.Fail(f"tokens {got.get('tokens')} != ids[{k}:]")
        r32 = ref_logprobs(f, w, seq)[k - 1:]
        r64 = ref_logprobs(f, w, seq, torch.float64)[k - 1:]
        d32, d64, n = H.max_abs(lp, r32), H.max_abs(lp, r64), H.max_abs(r32, r64)
        detail = (f"{len(lp)} tokens, max|alignd - torch fp32| = {d32:.3g}, vs fp64 = {d64:.3g}, "
                  f"torch fp32 vs fp64 = {n:.3g}, logp in [{min(r32):.2f}, {max(r32):.2f}]")
        if not (d32 <= H.TOL_FAM and d64 <= H.TOL_FAM):
            worst = max(range(len(lp)), key=lambda i: abs(lp[i] - r32[i]))
            raise H.Fail(f"{detail}; worst at {worst + k}: alignd {lp[worst]:.7f}, torch {r32[worst]:.7f}")
        return detail

    def check_gen(name):
        f, w = load(made[name])
        got = H.alignd(binary, "generate", "--model", made[name], "--ids", H.ids_arg(prompt),
                       "--max-new-tokens", 12)
        ref, ref_lp, tie = ref_greedy(f, w, prompt, 12, set(f.eos[:1]), H.TIE_EPS)
        ids, lps = got["ids"], got["logprobs"]
        n = len(ref)
        if ids[:n] != ref or (tie is None and ids != ref):
            raise H.Fail(f"ids differ: alignd {ids}, torch {ref} (tie at {tie})")
        d = H.max_abs(lps[:n], ref_lp)
        if not d <= H.TOL_FAM:
            raise H.Fail(f"step log-probs differ by {d:.3g}")
        return f"{n} tokens equal{' before a near-tie' if tie is not None else ''}: {ids}; max|logp diff| = {d:.3g}"

    def check_lp_bf16(name):
        f, w = load(made[name])
        got = H.alignd(binary, "logprobs", "--model", made[name], "--ids", H.ids_arg(seq), "--dtype", "bf16")
        lsm = torch.log_softmax(autocast_logits(f, w, seq).double(), dim=-1)
        ref = [lsm[t - 1, seq[t]].item() for t in range(1, len(seq))]
        return H.bf16_verdict(got["logprobs"], ref, ref_logprobs(f, w, seq))

    def check_gen_bf16(name):
        # alignd's bf16 greedy tokens followed step by step (KV cache) under
        # torch's autocast (hf_parity.bf16_follow)
        f, w = load(made[name])
        got = H.alignd(binary, "generate", "--model", made[name], "--ids", H.ids_arg(prompt),
                       "--max-new-tokens", 12, "--dtype", "bf16")
        ids = got["ids"]
        if len(ids) != 12 and not (ids and ids[-1] in f.eos[:1]):
            raise H.Fail(f"{len(ids)} tokens without an EOS: {ids}")
        return H.bf16_follow(ids, follow(f, w, prompt, ids, autocast=True))

    # alignd's own folders (init-model --arch MODEL_TYPE: the class defaults,
    # written by alignd): the reader here, with transformers' defaults, must
    # see the same model in the config alignd saved
    for mt in ("gemma2", "gemma3_text", "qwen3", "phi3", "olmo2", "smollm3", "granite", "mistral"):
        name = f"init_{mt}"

        def init(mt=mt, name=name):
            folder = os.path.join(work, name)
            H.alignd(binary, "init-model", "--arch", mt, "--layers", 3, "--hidden", 64, "--heads", 4,
                     "--kv-heads", 2, "--vocab", 300, "--context", 64, "--seed", 9, "--out", folder)
            made[name] = folder
            return check_lp(name)
        out.append((name, init))
    for name, mt, extra, shape in scenarios():
        out.append((name, (lambda name=name, mt=mt, extra=extra, shape=shape:
                           (make(name, mt, extra, shape), check_lp(name))[1])))
        out.append((name + "_prompt_len", lambda name=name: check_lp(name, 17)))
        out.append((name + "_greedy", lambda name=name: check_gen(name)))
        # bf16 mixed precision against torch.autocast("cpu", dtype=torch.bfloat16)
        out.append((name + "_bf16", lambda name=name: check_lp_bf16(name)))
        out.append((name + "_greedy_bf16", lambda name=name: check_gen_bf16(name)))
    return out

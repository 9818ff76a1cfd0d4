/* The transformer: GPT-2 and the Llama-block families (config.h) in fp32,
 * with an optional scalar head (reward model / critic) and LoRA adapters.
 *
 * Parameters live in one arena (one allocation for weights, one for
 * gradients); every tensor is a view with its Hugging Face name. Internally
 * every linear weight is (OC, C) as nn.Linear; GPT-2's Conv1D tensors are
 * transposed on load and save. q/k/v (and gate/up) projections are laid out
 * adjacently so one matrix product computes them all.
 *
 * Training exposes exactly two calls (DESIGN.md, "The one idea"):
 * al_model_forward returns per-token log-probs of given targets, entropy and
 * head values for a right-padded batch; al_model_backward takes d loss /
 * d logp (and d entropy, d value) and accumulates parameter gradients.
 * Activations are sized once by al_model_reserve; no allocation happens
 * inside a step. Not thread-safe: one model is used by one thread at a time
 * (its kernels use the shared pool). */
#ifndef AL_MODEL_H
#define AL_MODEL_H

#include "../al.h"
#include "config.h"
#include "safetensors.h"

/* One named tensor. */
typedef struct al_param {
    char name[112];   /* Hugging Face name for the CausalLM layout */
    float *w;         /* values; NULL for a frozen matrix held in bf16 alone */
    uint16_t *h;      /* bf16 values (models in bf16, matrices only): the only
                         copy of a frozen matrix, else a copy of w that every
                         forward and generation refreshes; NULL in fp32 */
    float *g;         /* gradient, NULL when frozen */
    int ndim;
    int shape[2];     /* internal (nn.Linear) shape */
    size_t n;
    int decay;        /* AdamW weight decay applies (matrices; not norms, biases) */
    int conv1d;       /* stored transposed on disk (GPT-2 Conv1D) */
    int wt;           /* w / h hold the (in, out) layout of the file (shape
                         [1] x shape[0]), not nn.Linear's: a frozen Conv1D
                         weight served from its file's mapping or converted
                         without the transpose; the products take it
                         transposed. Never set on a tensor that trains. */
    int lora;         /* a LoRA adapter tensor (lora_A / lora_B) */
    int layer;        /* the transformer layer it belongs to (adapters too), -1 for none */
} al_param;

/* p's values in fp32 and nn.Linear's layout (shape[0], shape[1]) into dst
 * (p->n floats), whatever p holds: w or h, (in, out) (wt) or not. */
void al_param_rows(float *dst, const al_param *p);

/* LoRA settings, as PEFT's LoraConfig. */
typedef struct al_lora_cfg {
    int r;                    /* rank; 0 = no LoRA */
    float alpha;              /* scale = alpha / r */
    char targets[256];        /* "q_proj,k_proj,v_proj,o_proj", "all-linear" (GPT-2: c_attn,c_proj,c_fc) */
} al_lora_cfg;

typedef struct al_model al_model;

/* A right-padded batch. ids (B, T). seg (B, T): 0 for padding, equal
 * positive values for tokens of one example (packing), NULL = all 1. pos
 * (B, T): positions, NULL = t. targets (B, T): the token whose log-prob to
 * return at position t (usually ids[t+1]), -1 for none (prompt, padding:
 * these rows skip the LM head entirely). targets NULL: no log-probs. */
typedef struct al_tokens {
    int B, T;
    const int32_t *ids;
    const int32_t *seg;
    const int32_t *pos;
    const int32_t *targets;
} al_tokens;

/* Forward outputs, (B, T) each, caller-owned; NULL members are not computed. */
typedef struct al_fwd {
    float *logp;      /* log p(targets[t] | ids[<=t]) (0 where target < 0) */
    float *entropy;   /* entropy of the next-token distribution (rows with target >= 0) */
    float *values;    /* scalar head value at every position (needs has_score) */
    uint8_t *hit;     /* 1 where the target is the greedy argmax (mean_token_accuracy) */
    /* Input, may be NULL: the loss's gradient w.r.t. logp when known before
     * the forward (it does not depend on logp: the LM objectives' -w /
     * norm_tokens, 0 where target < 0), the dlogp the caller will pass to
     * al_model_backward. With it (and logp asked for), a frozen LM head (no
     * gradient; no final soft-cap) runs its backward inside the forward,
     * chunk by chunk after each chunk's log-probs, instead of computing every
     * chunk's logits again in the backward; the next al_model_backward then
     * skips the head if it gets equal dlogp values, no dent, the same
     * targets, and no pass of this model or of another in its activations
     * ran in between; otherwise it computes the head as it would have
     * without. Either way the gradients have the same bits. Any other head
     * ignores it. */
    const float *dlogp;
} al_fwd;

/* Creates a model with the config's shapes (weights zero; call
 * al_model_init or al_model_load). lora may be NULL. NULL on ENOMEM or bad
 * config (reason in err). */
al_model *al_model_new(const al_model_config *cfg, const al_lora_cfg *lora, char err[AL_ERRLEN]);
/* The same with the error as data: AL_OK and *out, or al_config_validate's
 * code for a bad config (e->field ""), AL_EINVAL for bad LoRA settings
 * (e->field "lora": r or alpha; "lora.target_modules": no module of the
 * model matches), AL_ENOMEM; the reason in e->msg. */
int al_model_create(al_model **out, const al_model_config *cfg, const al_lora_cfg *lora, al_error *e);
void al_model_free(al_model *m);
const al_model_config *al_model_config_of(const al_model *m);

/* Initialises weights as Hugging Face does for a fresh model: normal(0,
 * init_range) matrices and embeddings (GPT-2's c_proj scaled by
 * 1/sqrt(2 n_layers)), norms 1, biases 0; LoRA A kaiming-uniform, B zero. */
void al_model_init(al_model *m, uint64_t seed);

/* Mixed precision (PyTorch's CPU autocast, DESIGN.md): with bf16 on, every
 * matrix product takes bf16 operands and accumulates in fp32; norms,
 * softmax, log-probs, losses and values stay fp32; trained tensors keep fp32
 * weights, gradients and optimiser moments. Frozen matrices (all of a
 * frozen model's, a LoRA model's base) are held in bf16 alone: half the
 * memory, and the same bits as a bf16 checkpoint. Switching rebuilds the
 * weight storage (a frozen matrix leaving bf16 is widened exactly); call it
 * before al_model_reserve and before creating shared-base models on m.
 * AL_OK, AL_ENOMEM, AL_EINVAL (a shared-base model follows its base). */
int al_model_set_bf16(al_model *m, int on, char err[AL_ERRLEN]);
int al_model_is_bf16(const al_model *m);

/* Opens a Hugging Face folder: config.json + model.safetensors (or shards).
 * If the folder is a PEFT adapter folder (adapter_config.json), loads the
 * base it names (base_model_name_or_path: absolute, else relative to the
 * adapter folder when that exists, else as given) and then the adapters.
 * `lora` (may be NULL) adds fresh adapters to a plain model. AL_ENOENT, AL_EFORMAT, AL_ESHAPE, AL_EUNSUP. */
int al_model_open(al_model **out, const char *dir, const al_lora_cfg *lora, char err[AL_ERRLEN]);
/* As al_model_open, with flags: AL_OPEN_SCORE_HEAD makes a reward-model
 * shape (scalar head score.weight, no LM head) from any folder, keeping a
 * head the folder has and initialising it normal(0, init_range) otherwise;
 * AL_OPEN_FROZEN gives no parameter a gradient and never allocates one
 * (inference, generation, references, reward models, judges): open every
 * model that is not trained this way, not with al_model_drop_grads after,
 * which would hold a zero-filled gradient arena as large as the weights
 * while the model loads. */
#define AL_OPEN_SCORE_HEAD 1
#define AL_OPEN_FROZEN 2
/* Compute in bf16 (al_model_set_bf16) from the start: frozen matrices are
 * read straight into bf16, never held in fp32. */
#define AL_OPEN_BF16 4
/* Copy every tensor into the model's own memory. Without it, frozen
 * tensors whose dtype and layout the model keeps as they are on disk
 * (every fp32 tensor of an fp32 file in fp32 mode but GPT-2's Conv1D
 * weights; frozen matrices of a BF16 file in bf16 mode; norms and biases)
 * are served from a private mapping of the file, held until
 * al_model_free: no copy, no fresh pages, and models opened on one file
 * share its page cache. Values are the same bits either way. A served
 * tensor is aligned to its element size only (kernels load unaligned). A
 * file is served only under a read lease (lib/model/lease.c): if another
 * process truncates or rewrites it in place, the mapping is first copied
 * to anonymous memory, so the model keeps its values (and no SIGBUS);
 * a file that cannot be leased is copied. alignd's own writers write a
 * temporary file and rename it over the old one. */
#define AL_OPEN_COPY 8
int al_model_open_ex(al_model **out, const char *dir, const al_lora_cfg *lora, int flags,
                     uint64_t seed, char err[AL_ERRLEN]);
/* The same with the field at fault as data: "lora.target_modules" when
 * the fresh adapters `lora` match no module of the model ("lora" for a bad
 * r or alpha), else "" (the folder is at fault, or nothing the caller set). */
int al_model_open_at(al_model **out, const char *dir, const al_lora_cfg *lora, int flags, uint64_t seed,
                     al_error *e);
/* Loads weights from a folder into m (shapes must match). On error m's
 * weights may be partially overwritten but its shapes are unchanged. */
int al_model_load_weights(al_model *m, const char *dir, char err[AL_ERRLEN]);
/* Writes config.json + model.safetensors (LoRA merged into the weights when
 * the model has adapters) in the model's save dtype, which config.json's
 * torch_dtype names. */
int al_model_save(const al_model *m, const char *dir, char err[AL_ERRLEN]);
/* The dtype al_model_save writes: the one the weights were loaded from (a
 * BF16 checkpoint saves BF16), F32 for a fresh model, or what was set
 * (AL_DT_F32, AL_DT_BF16, AL_DT_F16; 0 = back to the loaded one). */
void al_model_set_save_dtype(al_model *m, al_dtype dt);
al_dtype al_model_save_dtype(const al_model *m);
/* "float32", "bfloat16", "float16" (torch's names) for a dtype. */
const char *al_dtype_torch_name(al_dtype dt);
/* Reads the adapters of m (and the scalar head, when the folder saved one)
 * from an adapter folder's adapter_model.safetensors, leaving the base
 * weights alone: resuming a LoRA run without opening its base a second
 * time. The folder's adapters must have m's names and shapes (AL_EFORMAT
 * naming the tensor otherwise). */
int al_model_load_adapters(al_model *m, const char *dir, char err[AL_ERRLEN]);

/* The base folder an adapter folder names, resolved as al_model_open does
 * (out, n bytes). AL_ENOENT when dir has no adapter_config.json; AL_EFORMAT
 * and the field in err when it is malformed. */
int al_model_adapter_base(const char *dir, char *out, size_t n, char err[AL_ERRLEN]);

/* Writes a PEFT adapter folder: adapter_config.json + adapter_model.safetensors
 * with PEFT's names (base_model.model.<module>.lora_A.weight). */
int al_model_save_adapter(const al_model *m, const char *dir, const char *base_path,
                          char err[AL_ERRLEN]);

/* Parameter table (trainable ones have g != NULL). The caller may write
 * the weights through it (w; al_param_set keeps a bf16 copy too): the next
 * forward of a bf16 model rounds every trained weight into its copy
 * afresh. */
al_param *al_model_params(al_model *m, int *n);
/* The same table for code that writes no weight (w), or that writes each
 * weight's bf16 copy (h, al_bf16_round1) with it: gradient clipping,
 * checkpoints, the optimizer. */
const al_param *al_model_params_ro(al_model *m, int *n);
/* The optimizer has just updated the trainable weights and written each
 * bf16 copy with its weight: unless something else writes weights before
 * it, the next forward keeps the copies as they are instead of rounding
 * every trained weight again (bit-identical, one pass over them fewer). */
void al_model_bf16_stepped(al_model *m);
size_t al_model_num_params(const al_model *m, int trainable_only);
/* Freezes all non-LoRA weights (done automatically when lora.r > 0); the
 * adapters and a scalar head keep their gradients. */
void al_model_freeze_base(al_model *m);
/* Frees every gradient, e.g. of a model that has finished training and is
 * now only run forward. (To open a model for inference, AL_OPEN_FROZEN.) */
void al_model_drop_grads(al_model *m);
/* Adapters on/off: off gives the base (reference) model at no memory cost. */
void al_model_set_adapters(al_model *m, int on);
/* The linear maps of a layer (bit 0: q|k|v, 1: the attention's output, 2:
 * the MLP's up (gate|up), 3: its down) that LoRA with these settings adapts
 * in some layer: what the job estimator needs to size the activations. */
int al_lora_maps(const al_model_config *cfg, const al_lora_cfg *lora);
/* The adapters' parameters (r x (in + out) per targeted map) a model of cfg
 * with these LoRA settings holds: al_model_num_params(m, 1) without a head. */
size_t al_lora_num_params(const al_model_config *cfg, const al_lora_cfg *lora);
/* Log-probs, entropy and their gradients from logits / temperature (TRL's
 * RL trainers score samples at the sampling temperature); 0 or 1 = plain. */
void al_model_set_temperature(al_model *m, float temperature);
/* A model on base's weights: the same shapes plus a scalar head and its own
 * LoRA adapters (lora->r > 0), the only tensors it owns and trains; every
 * other tensor aliases base's (which must outlive it and should be frozen,
 * e.g. itself a LoRA model). The head is normal(0, init_range), the adapters
 * as al_model_init. PPO's critic: a value head with its own LoRA on the
 * policy's frozen base. Saves only as an adapter folder. NULL on error. */
al_model *al_model_new_shared(al_model *base, const al_lora_cfg *lora, uint64_t seed, char err[AL_ERRLEN]);
/* Adds a scalar head score.weight (num_labels x C) initialised normal(0, init_range). */
int al_model_add_score_head(al_model *m, uint64_t seed);

#define AL_MODEL_GRAD_CKPT 1
/* Forward only (references, reward models, judges, scoring): one set of
 * layer buffers and two of the residual stream, reused layer after layer,
 * and no backward buffers; al_model_backward then returns AL_EINVAL. The
 * forward's arithmetic is the same, so are its results. */
#define AL_MODEL_FORWARD_ONLY 2
/* Sizes activations for batches up to B x T (T <= max_T). flags:
 * AL_MODEL_GRAD_CKPT or AL_MODEL_FORWARD_ONLY. Must be called before
 * forward; re-calling with larger sizes or other flags reallocates. */
int al_model_reserve(al_model *m, int B, int T, int flags, char err[AL_ERRLEN]);
/* Makes m run in owner's activations instead of its own (freed): for two
 * models of one shape (the same config apart from the heads; m's adapters,
 * if any, of owner's rank and no more of them per layer) whose passes never
 * overlap: each model's backward follows its own forward with no forward of
 * the other between them (PPO's shared-base critic and its policy, the one
 * run to completion before the other). m sees owner's reservation, present
 * and future (its own al_model_reserve then only checks that the batch
 * fits); owner must outlive m. AL_EINVAL when the shapes differ. */
int al_model_share_activations(al_model *m, al_model *owner, char err[AL_ERRLEN]);
/* Bytes of activations, parameters, gradients held now (a model in another's
 * activations holds none). */
size_t al_model_memory(const al_model *m);

int al_model_forward(al_model *m, const al_tokens *in, al_fwd *out);
/* Must follow the forward of the same batch. dlogp/dent/dvalue (B, T), any
 * may be NULL. Accumulates into the gradients of trainable parameters. */
int al_model_backward(al_model *m, const al_tokens *in, const float *dlogp,
                      const float *dent, const float *dvalue);
/* Backwards, of every model in the process since it started, that skipped
 * the LM head because their forward had run it fused (al_fwd.dlogp): what a
 * test reads to see that a trainer takes that path. */
long al_model_fused_head_backwards(void);
/* Gradients to zero. The layer maps' weight gradients are zeroed lazily:
 * the next backward writes them rather than adds to them, and
 * al_model_params (_ro) and al_model_grad_norm zero them first when read
 * before it; so read gradients through those, not through pointers kept
 * from before. */
void al_model_zero_grad(al_model *m);
/* Gradient stages of a backward pass, in the order al_model_backward
 * completes them: 0 the heads and the final norm, 1 .. n_layers the layers
 * from the last to the first, n_layers + 1 the embeddings (with a head tied
 * to them). The hook (NULL: none) is called with each stage as it completes,
 * so that a data-parallel run can start reducing those gradients while
 * backward goes on (lib/dist/ddp.c); it must not touch the model. */
typedef void (*al_grad_hook)(void *ud, int stage);
void al_model_set_grad_hook(al_model *m, al_grad_hook fn, void *ud);
int al_model_grad_stages(const al_model *m);
/* The stage after which parameter i's gradient is complete for the pass. */
int al_model_param_stage(const al_model *m, int i);
/* Global L2 norm of all trainable gradients (double accumulation). */
double al_model_grad_norm(al_model *m);

/* Generation with a KV cache. */
typedef struct al_gen_cfg {
    int max_new;              /* max new tokens */
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    const int32_t *stop;      /* stop token ids (EOS), n_stop of them */
    int n_stop;
} al_gen_cfg;
/* Continues B prompts (prompt b is prompts[b][0..plen[b])). Writes up to
 * max_new ids per sequence into out_ids (B, max_new), the sampling log-prob
 * of each (under the temperature-scaled distribution; may be NULL) into
 * out_logp (B, max_new), and the count into out_len[b] (a stop token is
 * included and ends the sequence). Deterministic for a given rng state. */
int al_generate(al_model *m, const int32_t *const *prompts, const int *plen, int B,
                const al_gen_cfg *g, al_rng *rng, int32_t *out_ids, float *out_logp,
                int *out_len, char err[AL_ERRLEN]);

/* Serving: a decoder that batches sequences arriving and leaving at any
 * time (continuous batching; lib/model/decode.c). Up to max_seqs sequences
 * at once; a step runs at most max_rows rows (one per decoding sequence,
 * the rest prompt chunks). Each sequence samples with its own settings and
 * an RNG seeded from `seed`. Not thread-safe: one thread drives a decoder
 * and its model. NULL on ENOMEM or a model without an LM head (err). */
typedef struct al_decoder al_decoder;
typedef struct al_dec_out {
    int slot;                 /* the sequence */
    int32_t token;            /* sampled (-1 when max_new was 0) */
    float logp;               /* its sampling log-prob */
    int done;                 /* a stop token or max_new: the slot is free again */
} al_dec_out;
al_decoder *al_decoder_new(al_model *m, int max_seqs, int max_rows, char err[AL_ERRLEN]);
void al_decoder_free(al_decoder *d);
/* Adds a sequence (the prompt and g's stop list are copied; its KV cache
 * holds prompt + max_new). Returns its slot (>= 0), or AL_ENOSPC when every
 * slot is busy, AL_ERANGE (ids, context), AL_EINVAL, AL_ENOMEM. */
int al_decoder_add(al_decoder *d, const int32_t *prompt, int plen, const al_gen_cfg *g, uint64_t seed,
                   char err[AL_ERRLEN]);
/* One forward over every live sequence; out (room for max_out >= the live
 * count) gets one entry per sequence that sampled a token. Returns the
 * count (0: nothing live) or an error. */
int al_decoder_step(al_decoder *d, al_dec_out *out, int max_out, char err[AL_ERRLEN]);
/* Drops a sequence before it is done (a client went away). */
void al_decoder_remove(al_decoder *d, int slot);
int al_decoder_live(const al_decoder *d);
/* Rows the last step ran (decoding sequences + prompt tokens). */
int al_decoder_last_rows(const al_decoder *d);

#endif

/* Private layout of al_model, shared by model.c (training forward/backward),
 * model_io.c (Hugging Face folders) and generate.c (KV-cache inference). */
#ifndef AL_MODEL_IMPL_H
#define AL_MODEL_IMPL_H

#include "model.h"
#include "../compute/ops.h"

/* Fused linear maps of a layer. Each is one matrix product; its weight is a
 * run of adjacent named tensors (q|k|v, gate|up). */
enum { LIN_QKV, LIN_O, LIN_UP, LIN_DOWN, LIN_COUNT };

/* A LoRA adapter on one named module, writing columns [off, off+out) of a
 * fused linear map's output. */
typedef struct al_lora_mod {
    int layer, lin;           /* which fused map */
    int off, out, in;         /* output column range and input size */
    int pA, pB;               /* indices of lora_A (r, in) and lora_B (out, r) in params */
    char module[96];          /* PEFT module path, e.g. model.layers.0.self_attn.q_proj */
} al_lora_mod;

typedef struct al_linear {
    int w, b;                 /* param index of the first tensor of the run, -1 if none */
    int in, out;              /* fused sizes */
    int first_lora, n_lora;   /* adapters on this map: lora[first_lora ..] */
} al_linear;

typedef struct al_layer {
    int ln1_w, ln1_b, ln2_w, ln2_b;   /* param indices (-1: none): norms before attention / MLP */
    int pa_w, pf_w;                   /* norms after attention / MLP (Gemma 2/3, OLMo-2) */
    int qn_w, kn_w;                   /* q/k norms (Qwen3, Gemma 3, OLMo-2) */
    al_linear lin[LIN_COUNT];
} al_layer;

/* Saved activations of one layer (views into the activation arena). The
 * inputs of the products that are nothing else's input (ln1, ln2, h2) are
 * kept only when the backward needs them (al_model_reserve's keep mask): in
 * fp32 in ln1 / ln2 / h2, or in bf16 mode as the rounded copies the products
 * read (h2_h, in the bf16 arena; ln1_h / ln2_h only with keep_norms16: the
 * backward computes the norms again from x / mid); otherwise those pointers
 * are NULL and the forward writes the value into the model's x_tmp (into
 * d_ln / d_h2 in bf16 mode when it trains). The activation's input h1 is a
 * product's output: in bf16 mode the forward rounds it to bf16 before the
 * activation reads it (torch.autocast's linear returns bf16), so a training
 * reservation keeps only those rounded values (h1_h; h1 NULL, the product
 * writing into d_h1), the exact input of the function the forward computed. */
typedef struct al_acts {
    float *ln1, *ln1_mean, *ln1_rstd;
    uint16_t *ln1_h, *ln2_h, *h2_h, *h1_h;
    uint16_t *atty_h;    /* bf16 training: the attention output as the output
                          * projection read it (atty NULL; the forward writes
                          * atty into d_atty, free until the backward) */
    uint16_t *qkv_h;     /* bf16 training: q|k|v as attention's tile products
                          * read them (qkv NULL; the forward's qkv is d_qkv) */
    float *qkv;          /* (N, QKV) after bias and RoPE */
    float *lse;          /* (B, NH, T) attention's log-sum-exp (flash attention) */
    float *atty;         /* (N, NH*HD) */
    float *mid;          /* (N, C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *h1;           /* (N, FF) gelu input or (N, 2FF) gate|up */
    float *h2;           /* (N, FF) activation output */
    float *lora_t;       /* (N, r) per adapter of this layer, in adapter order */
    uint16_t *lora_t16;  /* bf16 training: their rounded copies instead (lora_t NULL) */
    float *qk_raw;       /* (N, (NH+NKV)*HD) q and k before their norms (qk_norm) */
    float *qk_rstd;      /* (N * (NH+NKV)) or (N * 2) */
    float *att_o, *pa_rstd;  /* (N, C) attention output before its post-norm, (N) */
    float *mlp_o, *pf_rstd;  /* (N, C) MLP output before its post-norm, (N) */
} al_acts;

struct al_model {
    al_model_config cfg;
    al_lora_cfg lora_cfg;
    float lora_scale;
    int adapters_on;
    float inv_temp;           /* 1 / sampling temperature for the LM head's log-probs */
    int shared_base;          /* base weights alias another model's (al_model_new_shared) */

    al_param *params;
    int n_params, cap_params;
    float *data;              /* weights arena */
    float *grad;              /* gradients arena (trainable params only) */
    size_t n_data, n_grad;
    int bf16;                 /* products in bf16 (al_model_set_bf16) */
    /* The bf16 copies of the trained matrices (al_model_bf16_sync): h_stepped
     * when the optimizer wrote its updates into them too since the last
     * sync (al_model_bf16_stepped), h_dirty when anything else may have
     * written a weight since then (al_model_params handed the table out, a
     * load, an init): the sync has nothing to do when stepped and clean. */
    int h_stepped, h_dirty;
    al_dtype load_dt;         /* dtype of the checkpoint loaded (0: none) */
    al_dtype save_dt;         /* al_model_set_save_dtype (0: load_dt, else F32) */
    uint16_t *data16;         /* bf16 weights arena (matrices, bf16 only) */
    size_t n_data16;
    /* Mappings of the files that serve frozen tensors in place (AL_OPEN_COPY
     * unset): those tensors point into them, and their slots in the arenas
     * are never touched (no pages). Unmapped by al_model_free. */
    void **maps;
    size_t *map_sizes;
    int n_maps;

    int wte, wpe, lnf_w, lnf_b, head, score;   /* param indices (-1: none) */
    al_layer *layers;
    al_lora_mod *lora;
    int n_lora;
    int QKV;                  /* (NH + 2 NKV) * HD */
    int UPW;                  /* FF (gpt2) or 2 FF (llama) */

    /* activations, sized by al_model_reserve; with act_owner the fields
     * below are views of act_owner's, copied before each pass (act NULL) */
    al_model *act_owner;
    int resB, resT, flags;
    float *act;               /* arena */
    size_t n_act;
    float *res;               /* (L+1, N, C) residual stream at each layer input */
    al_acts *acts;            /* per layer (all alias one set when checkpointing) */
    float *lnf, *lnf_mean, *lnf_rstd, *lse, *ent;
    float *d_res, *d_ln, *d_qkv, *d_atty, *d_h1, *d_h2, *d_lora;
    float *head_scratch;
    int head_chunk;           /* rows of the LM head's chunk (head_chunk_rows) */
    uint64_t head_gen;        /* owner of the arena: passes that wrote head_scratch */
    uint64_t head_kept;       /* head_gen after this model's forward left all its
                               * logits in head_scratch for its backward (0: not) */
    float head_kept_temp;     /* the inverse temperature of those logits */
    uint64_t head_fused;      /* head_gen after this model's forward ran its frozen
                               * head's backward into d_ln (al_fwd.dlogp; 0: not) */
    float head_fused_temp;    /* the inverse temperature it ran at */
    int head_fused_B, head_fused_T;
    float *head_dlogp;        /* (N) the dlogp it ran with, and (N) the targets, */
    int32_t *head_tgt;        /* for al_model_backward to compare (training reservations) */
    uint16_t *act16;          /* bf16 mode: rounded operands of the products */
    size_t n_act16;
    int keep;                 /* reserved: bit j set when the sets keep map j's input (lin_need) */
    int keep_more;            /* maps whose input models sharing these activations need */
    int keep_norms16;         /* bf16: keep the norms' rounded outputs rather than compute them
                               * again in the backward (tests compare the two; set before
                               * al_model_reserve) */
    float *x_tmp;             /* (N, max(C, FF)): a product input that is not kept */
    uint16_t *s16;            /* view of act16 (or of the owner's) */
    size_t s16_len;           /* values of the products' scratch at s16 */
    float *rope_cos, *rope_sin;   /* (max_T, HD/2) */
    float *rope_lcos, *rope_lsin; /* local RoPE (Gemma 3's sliding layers), or NULL */
    int rope_key;                 /* al_rope_key of the global table now held */
    float *d_post, *d_qk;         /* backward: (N, C) a branch's gradient; (N, (NH+NKV)*HD) */
    int32_t *pos_buf;             /* (N) default positions */
    int build_layer;              /* while building: the layer add_param tags (-1 none) */
    al_grad_hook grad_hook;       /* al_model_set_grad_hook */
    void *grad_hook_ud;
    /* al_model_zero_grad left the layer maps' weight gradients as they were
     * (most of the arena): the next backward's products write them (beta
     * 0) instead of adding to them; anything else reading gradients first
     * zeroes them (grads_settle). */
    int grad_defer;
};

/* RoPE (rope.c): the key selecting the global table a pass of length
 * seq_len needs (0 unless dynamic or longrope), and the inverse frequencies
 * (HD/2) and cos/sin factor of the global (local = 0) or local RoPE. */
int al_rope_key(const al_model_config *c, int seq_len);
void al_rope_freqs(const al_model_config *c, int seq_len, int local, float *inv, float *attn);

static inline al_param *P(al_model *m, int i) { return i >= 0 ? &m->params[i] : NULL; }
static inline float *PW(al_model *m, int i) { return i >= 0 ? m->params[i].w : NULL; }
static inline float *PG(al_model *m, int i) { return i >= 0 ? m->params[i].g : NULL; }
static inline uint16_t *PH(al_model *m, int i) { return i >= 0 ? m->params[i].h : NULL; }

/* Full (non-LoRA) forward of one fused linear map on N rows of x, adding the
 * enabled adapters; saves each adapter's x @ A^T in lora_t when non-NULL.
 * bf16 models need s16, N * (input width + LoRA rank) bf16 values. */
void al_linear_forward(al_model *m, int layer, int lin, float *out, const float *x,
                       float *lora_t, uint16_t *s16, int N);
/* Refreshes the bf16 copies of the trained matrices (bf16 models): before
 * every forward and generation, since the optimiser (or a test) changed w.
 * Skipped when only the optimizer wrote weights since the last sync (it
 * rounds each update into the copy itself); Debug and sanitizer builds
 * then check that every copy is indeed current. */
void al_model_bf16_sync(al_model *m);
/* Something wrote weights other than through al_model_params' table (a
 * load, an init): the next sync rounds every copy afresh. */
static inline void al_model_w_written(al_model *m) { m->h_dirty = 1; }
/* bf16 scratch of al_linear_forward / backward for N rows: N * (the widest
 * map's input + output, + LoRA rank) values. */
size_t al_model_lin_scratch16(const al_model *m, size_t N);
/* Writes p->n fp32 values into a tensor, whichever storage it has (in
 * nn.Linear's layout: never a tensor held (in, out)). */
void al_param_set(al_param *p, const float *v);

/* The pieces of a layer shared by training (model.c) and generation
 * (generate.c), on N rows. */
/* RMSNorm / LayerNorm of the model's kind (Gemma's (1 + w) included). */
void al_model_norm(al_model *m, float *out, float *mean, float *rstd, const float *x, int w,
                   int b, int N);
/* Scaled token (+ position) embeddings of N rows, from fp32 tables or
 * those a frozen bf16 model holds. */
void al_model_embed(al_model *m, float *out, const int32_t *ids, const int32_t *pos, int N);
/* Makes the global RoPE table right for a pass of length seq_len (the
 * largest position + 1): dynamic and longrope tables depend on it. */
void al_model_rope_prepare(al_model *m, int seq_len);
/* q/k norms (saving the raw q|k in qk_raw and rstd when non-NULL) and RoPE
 * of layer l, in place on the fused qkv rows (stride m->QKV). */
void al_layer_qk_forward(al_model *m, int l, float *qkv, float *qk_raw, float *qk_rstd,
                         const int32_t *pos, int N);
/* The attention variant of layer l. */
void al_layer_attn_opts(const al_model *m, int l, al_attn_opts *o);
/* y = res + residual_scale * post_norm(branch) (which 0: after attention, 1:
 * after the MLP; the norm only with post_norm, rstd saved when non-NULL). y
 * may alias branch when there is no post-norm. */
void al_layer_residual(al_model *m, int l, int which, float *y, const float *res,
                       const float *branch, float *rstd, int N);
/* The gated MLP's activation: h2 (N, FF) from h1 (N, 2FF), or GPT-2's gelu.
 * In bf16 mode h1 is first rounded to bf16 in place (and into keep16 when
 * not NULL): the activation of autocast's bf16 product output. */
void al_layer_act(const al_model *m, float *h2, float *h1, uint16_t *keep16, int N);

/* al_model_new; frozen != 0 gives no parameter a gradient and never
 * allocates the gradient arena (al_model_open_ex's AL_OPEN_FROZEN: an
 * inference model would otherwise hold, zero-filled, a second copy of its
 * weights' size for the length of its load). */
al_model *al_model_new_ex(const al_model_config *cfg, const al_lora_cfg *lora, int frozen,
                          char err[AL_ERRLEN]);
/* The same, the weights laid out for bf16 (al_model_set_bf16) at once. */
al_model *al_model_new_dt(const al_model_config *cfg, const al_lora_cfg *lora, int frozen,
                          int bf16, char err[AL_ERRLEN]);
/* The same with the error as data (al_model_create's codes and fields). */
int al_model_new_at(al_model **out, const al_model_config *cfg, const al_lora_cfg *lora, int frozen, int bf16,
                    al_error *e);

/* Initialises only the LoRA tensors (A kaiming-uniform, B zero). */
void al_model_init_lora(al_model *m, uint64_t seed);

#endif

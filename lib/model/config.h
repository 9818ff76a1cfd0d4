/* Model configuration: Hugging Face config.json for GPT-2 and the decoder
 * families built on the Llama block (Llama 2/3.x, Mistral, Qwen2/2.5, Qwen3,
 * Gemma 2, Gemma 3 text, Phi-3/3.5, OLMo-2, SmolLM 1/2/3, Granite), parsed
 * into one struct whose fields say how a family departs from Llama, and
 * written back in the same dialect. */
#ifndef AL_CONFIG_H
#define AL_CONFIG_H

#include "../al.h"

typedef enum { AL_ARCH_GPT2 = 1, AL_ARCH_LLAMA = 2 } al_arch;

/* RoPE variants of transformers' modeling_rope_utils.py (rope_type). */
typedef enum {
    AL_ROPE_DEFAULT = 0,
    AL_ROPE_LINEAR,
    AL_ROPE_DYNAMIC,   /* NTK scaling that grows with the pass's length */
    AL_ROPE_YARN,
    AL_ROPE_LONGROPE,  /* short/long factors switched at the original context */
    AL_ROPE_LLAMA3
} al_rope_type;

#define AL_ROPE_MAX_FACTORS 256 /* LongRoPE factor lists: head_dim / 2 entries */

typedef struct al_rope_cfg {
    int type;                  /* al_rope_type */
    double factor;             /* linear, dynamic, yarn, llama3 (longrope: derived) */
    int orig_max;              /* original_max_position_embeddings, 0 when absent */
    double low_freq_factor, high_freq_factor;   /* llama3 */
    double beta_fast, beta_slow;                /* yarn (0: the defaults 32 and 1) */
    double mscale, mscale_all_dim;              /* yarn (0: absent) */
    double attention_factor;                    /* yarn, longrope (0: derived) */
    int truncate;                               /* yarn (default true) */
    int n_factors;                              /* longrope */
    float short_factor[AL_ROPE_MAX_FACTORS], long_factor[AL_ROPE_MAX_FACTORS];
} al_rope_cfg;

/* Per-layer kinds (layer_flags). */
#define AL_LAYER_SLIDING 1     /* sliding-window attention (window = cfg->window) */
#define AL_LAYER_NOPE 2        /* no RoPE (SmolLM3's no_rope_layers) */
#define AL_LAYER_LOCAL_ROPE 4  /* the local RoPE base (Gemma 3's rope_local_base_freq) */
#define AL_MAX_LAYERS 512

/* q/k normalisation (qk_norm). */
#define AL_QK_NONE 0
#define AL_QK_HEAD 1           /* per head over head_dim: Qwen3, Gemma 3 */
#define AL_QK_ALL 2            /* over all heads' projection: OLMo-2 */

#define AL_ACT_SILU 0
#define AL_ACT_GELU_TANH 1     /* gelu_pytorch_tanh: Gemma */

typedef struct al_model_config {
    al_arch arch;
    char model_type[32];   /* "gpt2", "llama", "mistral", "qwen2", "gemma2" ... as read */
    int n_layers;
    int C;                 /* hidden size (n_embd / hidden_size) */
    int NH;                /* attention heads */
    int NKV;               /* key/value heads (== NH unless GQA) */
    int HD;                /* head dim (config head_dim, else C / NH) */
    int FF;                /* MLP inner size (n_inner or 4C; intermediate_size) */
    int V;                 /* vocab size */
    int max_T;             /* n_positions / max_position_embeddings */
    float norm_eps;        /* layer_norm_epsilon / rms_norm_eps */
    float rope_theta;      /* llama family; default 10000 */
    float init_range;      /* initializer_range, default 0.02 */
    int tie_word_embeddings;
    int attn_bias;         /* q/k/v (and GPT-2: all) linear biases: Qwen2, attention_bias */
    int o_bias;            /* o_proj bias (llama attention_bias applies to o_proj too) */
    int mlp_bias;          /* llama mlp_bias */
    int has_lm_head;       /* *ForCausalLM (else *ForSequenceClassification) */
    int num_labels;        /* scalar head rows when has_score; 1 for reward models */
    int has_score;         /* score.weight present (reward model / critic) */
    int bos_id, eos_id, pad_id;   /* -1 when absent; first of a list for eos */
    char torch_dtype[16];  /* written as config.json's torch_dtype ("float32"
                              when empty: the dtype of the weights saved with
                              it, al_model_save); not read */

    /* The families' variations on the Llama block (all 0 for Llama itself). */
    al_rope_cfg rope;      /* rope_scaling / rope_parameters of the (global) RoPE */
    float rope_local_theta;/* Gemma 3: the base of AL_LAYER_LOCAL_ROPE layers (default RoPE) */
    int qk_norm;           /* AL_QK_* */
    int norm_offset;       /* Gemma: RMSNorm weights act as (1 + w) */
    int no_pre_norm;       /* OLMo-2: no input_layernorm before attention / MLP */
    int post_norm;         /* Gemma 2/3, OLMo-2: a norm on each branch's output before the residual */
    int act;               /* AL_ACT_* of the gated MLP */
    int fused_proj;        /* Phi-3: qkv_proj and gate_up_proj tensors */
    int window;            /* sliding_window of AL_LAYER_SLIDING layers */
    float attn_scale;      /* 0: head_dim^-0.5; Gemma query_pre_attn_scalar^-0.5; Granite attention_multiplier */
    float query_pre_attn_scalar; /* Gemma: as read (attn_scale derives from it) */
    float attn_softcap;    /* Gemma 2 attn_logit_softcapping (0: none) */
    float final_softcap;   /* Gemma 2/3 final_logit_softcapping (0: none) */
    float embed_scale;     /* embeddings times this: Gemma sqrt(hidden) in float, Granite embedding_multiplier; 0 = 1 */
    float residual_scale;  /* Granite residual_multiplier (0 = 1) */
    float logits_scaling;  /* Granite: logits / logits_scaling (0 = 1) */
    uint8_t layer_flags[AL_MAX_LAYERS];  /* AL_LAYER_* of each layer */
} al_model_config;

/* Fills cfg with defaults for arch (GPT-2 small-like or a tiny Llama); the
 * caller then overrides sizes. */
void al_config_default(al_model_config *cfg, al_arch arch);
/* Checks sizes are positive and consistent (NH % NKV == 0, HD even for
 * RoPE, C == NH*HD for GPT-2 ...). AL_EINVAL with the field named in err. */
int al_config_validate(const al_model_config *cfg, char err[AL_ERRLEN]);
/* Parses config.json text. Unknown model_type, unsupported rope_scaling or
 * activation -> AL_EUNSUP naming the field; bad types/values -> AL_EFORMAT
 * naming the field. cfg written only on success. */
int al_config_parse(al_model_config *cfg, const char *json, size_t len, char err[AL_ERRLEN]);
/* Reads <dir>/config.json. */
int al_config_load(al_model_config *cfg, const char *dir, char err[AL_ERRLEN]);
/* Writes <dir>/config.json atomically in Hugging Face's dialect for the arch
 * (architectures, model_type, sizes, torch_dtype, token ids). */
int al_config_save(const al_model_config *cfg, const char *dir, char err[AL_ERRLEN]);

#endif

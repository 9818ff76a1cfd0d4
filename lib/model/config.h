/* Model configuration: Hugging Face config.json for the GPT-2 and Llama
 * families (Llama, Mistral, Qwen2, SmolLM, TinyLlama configs), parsed into one
 * struct, and written back in the same dialect. */
#ifndef AL_CONFIG_H
#define AL_CONFIG_H

#include "../al.h"

typedef enum { AL_ARCH_GPT2 = 1, AL_ARCH_LLAMA = 2 } al_arch;

typedef struct al_model_config {
    al_arch arch;
    char model_type[32];   /* "gpt2", "llama", "mistral", "qwen2" ... as read */
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

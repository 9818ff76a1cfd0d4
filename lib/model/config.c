/* Hugging Face config.json for the GPT-2 and Llama families.
 *
 * Parsing follows transformers' GPT2Config and LlamaConfig / MistralConfig /
 * Qwen2Config: the size fields (hidden size, layers, heads, vocabulary and,
 * for Llama, the MLP size) are required because every real config carries
 * them and a silent 7B default would be a surprise; the other fields take
 * transformers' defaults when absent or null. Anything the model code does
 * not implement (RoPE scaling, other activations, cross attention) is
 * refused with AL_EUNSUP naming the field rather than trained wrongly.
 *
 * Saving writes the same dialect back (architectures, model_type, sizes,
 * torch_dtype: the dtype of the weights saved beside it), keys sorted like transformers' own to_json_string,
 * floats in their shortest form, so that parse(save(cfg)) == cfg.
 *
 * A family of the Llama dialect is a row of k_fams (its class names and
 * defaults), its extra keys (family_keys), and, when it departs from Llama's
 * block, one function in each of two tables: k_fam_layers reads its windows,
 * per-layer kinds and own fields, k_fam_save writes them back. */
#include "config.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io.h"

#define CFG_MAX_FILE ((size_t)16 << 20) /* id2label maps can be large */
#define CFG_MAX_DIM (1 << 20)           /* C, FF, V, max_T */
#define CFG_MAX_COUNT 4096              /* layers, heads, head dim */
#define CFG_MAX_PARAMS ((uint64_t)1 << 36) /* 64 G parameters: bounds allocations */

void al_config_default(al_model_config *cfg, al_arch arch) {
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = arch;
    cfg->init_range = 0.02f;
    cfg->rope_theta = 10000.0f;
    cfg->has_lm_head = 1;
    cfg->has_score = 0;
    cfg->num_labels = 1;
    cfg->bos_id = cfg->eos_id = cfg->pad_id = -1;
    if (arch == AL_ARCH_GPT2) {
        snprintf(cfg->model_type, sizeof cfg->model_type, "gpt2");
        cfg->n_layers = 12;
        cfg->C = 768;
        cfg->NH = cfg->NKV = 12;
        cfg->HD = 64;
        cfg->FF = 4 * 768;
        cfg->V = 50257;
        cfg->max_T = 1024;
        cfg->norm_eps = 1e-5f;
        cfg->tie_word_embeddings = 1;
        cfg->attn_bias = cfg->o_bias = cfg->mlp_bias = 1; /* GPT-2 has every bias */
    } else {
        snprintf(cfg->model_type, sizeof cfg->model_type, "llama");
        cfg->n_layers = 2;
        cfg->C = 64;
        cfg->NH = 4;
        cfg->NKV = 2;
        cfg->HD = 16;
        cfg->FF = 172;
        cfg->V = 260;
        cfg->max_T = 256;
        cfg->norm_eps = 1e-6f;
        cfg->tie_word_embeddings = 0;
    }
}

int al_config_validate(const al_model_config *c, char err[AL_ERRLEN]) {
    if (c->arch != AL_ARCH_GPT2 && c->arch != AL_ARCH_LLAMA)
        return al_err(err, AL_EINVAL, "config: arch: unknown architecture %d", (int)c->arch);
#define CHECK_RANGE(field, name, lo, hi)                                                   \
    if ((field) < (lo) || (field) > (hi))                                                 \
        return al_err(err, AL_EINVAL, "config: %s: %d is outside [%d, %d]", name, (field), \
                      (lo), (hi))
    /* Fields are named as the arch's config.json spells them. */
    int g = c->arch == AL_ARCH_GPT2;
    /* the Llama family's per-layer kinds are a fixed array */
    CHECK_RANGE(c->n_layers, g ? "n_layer" : "num_hidden_layers", 1, g ? CFG_MAX_COUNT : AL_MAX_LAYERS);
    CHECK_RANGE(c->C, g ? "n_embd" : "hidden_size", 1, CFG_MAX_DIM);
    CHECK_RANGE(c->NH, g ? "n_head" : "num_attention_heads", 1, CFG_MAX_COUNT);
    CHECK_RANGE(c->NKV, "num_key_value_heads", 1, c->NH);
    /* 256: the widest head flash attention's tiles take (ops.h) */
    CHECK_RANGE(c->HD, "head_dim", 1, 256);
    CHECK_RANGE(c->FF, g ? "n_inner" : "intermediate_size", 1, CFG_MAX_DIM);
    CHECK_RANGE(c->V, "vocab_size", 1, CFG_MAX_DIM);
    CHECK_RANGE(c->max_T, g ? "n_positions" : "max_position_embeddings", 1, CFG_MAX_DIM);
    if (c->NH % c->NKV != 0)
        return al_err(err, AL_EINVAL,
                      "config: num_key_value_heads: %d does not divide num_attention_heads %d",
                      c->NKV, c->NH);
    if (c->arch == AL_ARCH_GPT2) {
        if (c->NKV != c->NH)
            return al_err(err, AL_EINVAL, "config: num_key_value_heads: GPT-2 has no GQA (%d != %d)",
                          c->NKV, c->NH);
        if ((int64_t)c->NH * c->HD != c->C)
            return al_err(err, AL_EINVAL, "config: n_head: %d heads of %d != n_embd %d", c->NH,
                          c->HD, c->C);
    } else {
        if (c->HD % 2 != 0)
            return al_err(err, AL_EINVAL, "config: head_dim: %d must be even for RoPE", c->HD);
        if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
            return al_err(err, AL_EINVAL, "config: rope_theta: must be positive and finite");
        if (!(c->rope_local_theta >= 0.0f) || !isfinite(c->rope_local_theta))
            return al_err(err, AL_EINVAL, "config: rope_local_base_freq: must be positive and finite");
        if (c->window < 0)
            return al_err(err, AL_EINVAL, "config: sliding_window: must be positive or null");
        if (!(c->attn_softcap >= 0.0f) || !(c->final_softcap >= 0.0f) || !(c->attn_scale >= 0.0f) ||
            !(c->embed_scale >= 0.0f) || !(c->residual_scale >= 0.0f) || !(c->logits_scaling >= 0.0f) ||
            !isfinite(c->attn_softcap + c->final_softcap + c->attn_scale + c->embed_scale +
                      c->residual_scale + c->logits_scaling))
            return al_err(err, AL_EINVAL, "config: soft-caps and multipliers must be finite and >= 0");
        if (c->qk_norm < AL_QK_NONE || c->qk_norm > AL_QK_ALL || c->act < AL_ACT_SILU ||
            c->act > AL_ACT_GELU_TANH || c->rope.type < AL_ROPE_DEFAULT || c->rope.type > AL_ROPE_LLAMA3)
            return al_err(err, AL_EINVAL, "config: qk_norm, act or rope type out of range");
        if (c->rope.type == AL_ROPE_LONGROPE && c->rope.n_factors != c->HD / 2)
            return al_err(err, AL_EINVAL, "config: rope_scaling: longrope needs head_dim / 2 factors");
        if (c->rope.type != AL_ROPE_DEFAULT && c->rope.type != AL_ROPE_LONGROPE && !(c->rope.factor > 0))
            return al_err(err, AL_EINVAL, "config: rope_scaling.factor: must be positive");
    }
    if (!(c->norm_eps > 0.0f) || !(c->norm_eps < 1.0f))
        return al_err(err, AL_EINVAL, "config: %s: %g must be in (0, 1)",
                      g ? "layer_norm_epsilon" : "rms_norm_eps", (double)c->norm_eps);
    if (!(c->init_range >= 0.0f) || !isfinite(c->init_range))
        return al_err(err, AL_EINVAL, "config: initializer_range: must be finite and >= 0");
    if (!c->has_lm_head && !c->has_score)
        return al_err(err, AL_EINVAL, "config: architectures: neither an LM head nor a score head");
    if (c->has_score) CHECK_RANGE(c->num_labels, "num_labels", 1, CFG_MAX_DIM);
    /* Token ids index the embedding: they must be inside the vocabulary. */
    CHECK_RANGE(c->bos_id, "bos_token_id", -1, c->V - 1);
    CHECK_RANGE(c->eos_id, "eos_token_id", -1, c->V - 1);
    CHECK_RANGE(c->pad_id, "pad_token_id", -1, c->V - 1);
#undef CHECK_RANGE
    /* Each field below its cap still multiplies into terabytes: bound the
     * parameter count (computed in 64 bits, no overflow at these caps). */
    uint64_t C = (uint64_t)c->C, q = (uint64_t)c->NH * (uint64_t)c->HD,
             kv = (uint64_t)c->NKV * (uint64_t)c->HD, FF = (uint64_t)c->FF;
    uint64_t per_layer = C * q + 2 * C * kv + q * C + (c->arch == AL_ARCH_GPT2 ? 2 : 3) * C * FF;
    uint64_t total = (uint64_t)c->n_layers * per_layer + 2 * (uint64_t)c->V * C +
                     (uint64_t)c->max_T * C + (uint64_t)(c->has_score ? c->num_labels : 0) * C;
    if (total > CFG_MAX_PARAMS)
        return al_err(err, AL_EINVAL, "config: %.3g parameters exceed the limit of %.3g",
                      (double)total, (double)CFG_MAX_PARAMS);
    return AL_OK;
}

/* ---------- parsing ---------- */

/* Field readers: absent or null leaves *out alone and returns 0 ("use the
 * default"); a present value of the wrong type is AL_EFORMAT naming key. */
static int get_int(const json_t *o, const char *key, int min, int *out, int *present,
                   char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(o, key);
    if (present) *present = 0;
    if (!v || json_is_null(v)) return AL_OK;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > INT32_MAX) {
        if (min > 0)
            return al_err(err, AL_EFORMAT, "config.json: %s: must be a positive integer", key);
        return al_err(err, AL_EFORMAT, "config.json: %s: must be an integer >= %d", key, min);
    }
    *out = (int)json_integer_value(v);
    if (present) *present = 1;
    return AL_OK;
}

static int req_int(const json_t *o, const char *key, int *out, char err[AL_ERRLEN]) {
    int present = 0;
    int rc = get_int(o, key, 1, out, &present, err);
    if (rc == AL_OK && !present)
        return al_err(err, AL_EFORMAT, "config.json: %s: missing (a positive integer is required)",
                      key);
    return rc;
}

/* Whether v is a number that a float holds without becoming infinite
 * (1e39 is a finite double but an infinite float, which the model would
 * compute with and al_config_save could not write back). */
static int fits_float(const json_t *v) {
    return json_is_number(v) && isfinite(json_number_value(v)) && fabs(json_number_value(v)) <= FLT_MAX;
}

static int get_float(const json_t *o, const char *key, float *out, char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return AL_OK;
    if (!fits_float(v))
        return al_err(err, AL_EFORMAT, "config.json: %s: must be a number (of float range)", key);
    *out = (float)json_number_value(v);
    return AL_OK;
}

static int get_bool(const json_t *o, const char *key, int *out, char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return AL_OK;
    if (!json_is_boolean(v))
        return al_err(err, AL_EFORMAT, "config.json: %s: must be true or false", key);
    *out = json_is_true(v);
    return AL_OK;
}

/* A token id: an integer, null, or (eos_token_id) a list whose first entry counts. */
static int get_token(const json_t *o, const char *key, int *out, char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(o, key);
    if (json_is_array(v)) v = json_array_size(v) ? json_array_get(v, 0) : NULL;
    if (!v || json_is_null(v)) return AL_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return al_err(err, AL_EFORMAT, "config.json: %s: must be a non-negative integer", key);
    *out = (int)json_integer_value(v);
    return AL_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* architectures[0] decides which head the checkpoint carries. */
static int parse_heads(const json_t *o, al_model_config *c, char err[AL_ERRLEN]) {
    const json_t *a = json_object_get(o, "architectures");
    c->has_lm_head = 1;
    c->has_score = 0;
    if (a && !json_is_null(a)) {
        if (!json_is_array(a) || json_array_size(a) == 0 ||
            !json_is_string(json_array_get(a, 0)))
            return al_err(err, AL_EFORMAT, "config.json: architectures: must be a list of names");
        const char *name = json_string_value(json_array_get(a, 0));
        if (ends_with(name, "ForCausalLM") || ends_with(name, "LMHeadModel")) {
            c->has_lm_head = 1;
        } else if (ends_with(name, "ForSequenceClassification")) {
            c->has_lm_head = 0;
            c->has_score = 1;
        } else {
            return al_err(err, AL_EUNSUP,
                          "config.json: architectures: %.60s is not supported (*ForCausalLM or "
                          "*ForSequenceClassification)",
                          name);
        }
    }
    /* num_labels, else len(id2label), else 1 (one scalar: a reward model). */
    c->num_labels = 1;
    int present = 0, rc;
    if ((rc = get_int(o, "num_labels", 1, &c->num_labels, &present, err)) != AL_OK) return rc;
    if (!present) {
        const json_t *id2 = json_object_get(o, "id2label");
        if (id2 && !json_is_null(id2)) {
            if (!json_is_object(id2) || json_object_size(id2) == 0)
                return al_err(err, AL_EFORMAT, "config.json: id2label: must be a non-empty object");
            if (json_object_size(id2) > CFG_MAX_DIM)
                return al_err(err, AL_EFORMAT, "config.json: id2label: too many labels");
            c->num_labels = (int)json_object_size(id2);
        }
    }
    return AL_OK;
}

/* ---- the families ------------------------------------------------------ */

typedef enum {
    F_LLAMA, F_MISTRAL, F_QWEN2, F_QWEN3, F_GEMMA2, F_GEMMA3, F_PHI3, F_OLMO2, F_SMOLLM3,
    F_GRANITE, F_COUNT
} family;

/* model_type, the transformers class prefix, and the class defaults that
 * differ between them (from each configuration_*.py). */
static const struct fam {
    const char *mt, *cls, *seqcls;
    int max_pos, nkv, head_dim, tie;  /* nkv/head_dim 0: num_attention_heads / hidden/heads */
    float eps, theta;
} k_fams[F_COUNT] = {
    [F_LLAMA] = {"llama", "Llama", "LlamaForSequenceClassification", 2048, 0, 0, 0, 1e-6f, 1e4f},
    [F_MISTRAL] = {"mistral", "Mistral", "MistralForSequenceClassification", 4096 * 32, 8, 0, 0, 1e-6f, 1e4f},
    [F_QWEN2] = {"qwen2", "Qwen2", "Qwen2ForSequenceClassification", 32768, 32, 0, 0, 1e-6f, 1e4f},
    [F_QWEN3] = {"qwen3", "Qwen3", "Qwen3ForSequenceClassification", 32768, 32, 128, 0, 1e-6f, 1e4f},
    [F_GEMMA2] = {"gemma2", "Gemma2", "Gemma2ForSequenceClassification", 8192, 4, 256, 1, 1e-6f, 1e4f},
    [F_GEMMA3] = {"gemma3_text", "Gemma3", "Gemma3TextForSequenceClassification", 131072, 4, 256, 1, 1e-6f, 1e6f},
    [F_PHI3] = {"phi3", "Phi3", "Phi3ForSequenceClassification", 4096, 0, 0, 0, 1e-5f, 1e4f},
    /* transformers has no Olmo2ForSequenceClassification: alignd's reward
     * models of OLMo-2 load here and as a PEFT adapter only */
    [F_OLMO2] = {"olmo2", "Olmo2", "Olmo2ForSequenceClassification", 2048, 0, 0, 0, 1e-5f, 1e4f},
    [F_SMOLLM3] = {"smollm3", "SmolLM3", "SmolLM3ForSequenceClassification", 32768, 4, 0, 1, 1e-6f, 2e6f},
    [F_GRANITE] = {"granite", "Granite", "GraniteForSequenceClassification", 2048, 0, 0, 0, 1e-6f, 1e4f},
};

static int family_of(const char *mt) {
    for (int f = 0; f < F_COUNT; f++)
        if (!strcmp(k_fams[f].mt, mt)) return f;
    return -1;
}

/* Keys every config may carry that do not change the numerics
 * (PretrainedConfig's attributes, generation defaults, hub metadata). */
static const char *const k_common_keys[] = {
    "_name_or_path", "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
    "use_cache", "return_dict", "output_hidden_states", "output_attentions", "torchscript",
    "pruned_heads", "tie_encoder_decoder", "is_encoder_decoder", "is_decoder",
    "chunk_size_feed_forward", "finetuning_task", "id2label", "label2id", "num_labels",
    "tokenizer_class", "prefix", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
    "decoder_start_token_id", "task_specific_params", "problem_type", "max_length", "min_length",
    "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
    "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens", "tf_legacy_loss", "use_bfloat16",
    "initializer_range", "tie_word_embeddings", "auto_map", "cache_implementation",
    "_attn_implementation", "_attn_implementation_autoset", "attn_implementation",
    "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "intermediate_size", "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_scaling", "rope_parameters", "head_dim", "hidden_act", "attention_dropout",
    "pretraining_tp", "add_cross_attention", "cross_attention_hidden_size", "keys_to_ignore_at_inference",
    "layer_types", "sliding_window", "use_sliding_window", "max_window_layers", NULL};

/* Keys a family adds (its configuration_*.py arguments). */
static const char *const k_llama_keys[] = {"attention_bias", "mlp_bias",
    /* SmolLM / SmolLM2 configs written by nanotron */
    "is_llama_config", "rope_interleaved", NULL};
static const char *const k_qwen3_keys[] = {"attention_bias", NULL};
static const char *const k_gemma_keys[] = {"attention_bias", "hidden_activation",
    "query_pre_attn_scalar", "final_logit_softcapping", "attn_logit_softcapping",
    "rope_local_base_freq", "sliding_window_pattern", "_sliding_window_pattern",
    "use_bidirectional_attention",
    /* early Gemma 2 files: a copy of sliding_window that transformers never read */
    "sliding_window_size", NULL};
static const char *const k_phi3_keys[] = {"resid_pdrop", "embd_pdrop",
    "original_max_position_embeddings", "partial_rotary_factor", NULL};
static const char *const k_olmo2_keys[] = {"attention_bias", NULL};
static const char *const k_smollm3_keys[] = {"attention_bias", "no_rope_layers",
    "no_rope_layer_interval", "mlp_bias", NULL};
static const char *const k_granite_keys[] = {"attention_bias", "mlp_bias",
    "embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling", NULL};
static const char *const k_none[] = {NULL};

static const char *const *family_keys(int f) {
    switch (f) {
    case F_LLAMA: return k_llama_keys;
    case F_QWEN3: return k_qwen3_keys;
    case F_GEMMA2: case F_GEMMA3: return k_gemma_keys;
    case F_PHI3: return k_phi3_keys;
    case F_OLMO2: return k_olmo2_keys;
    case F_SMOLLM3: return k_smollm3_keys;
    case F_GRANITE: return k_granite_keys;
    default: return k_none;
    }
}

static int in_list(const char *const *l, const char *k) {
    for (; *l; l++)
        if (!strcmp(*l, k)) return 1;
    return 0;
}

/* An unknown key with a value other than an "off" one (null, false, 0, "",
 * [], {}) may change the numerics in a way alignd does not know: refused,
 * named, rather than silently mis-computed. */
static int check_unknown_keys(const json_t *o, int f, char err[AL_ERRLEN]) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        if (in_list(k_common_keys, key) || in_list(family_keys(f), key)) continue;
        int off = json_is_null(v) || json_is_false(v) ||
                  (json_is_number(v) && json_number_value(v) == 0) ||
                  (json_is_string(v) && json_string_length(v) == 0) ||
                  (json_is_array(v) && json_array_size(v) == 0) ||
                  (json_is_object(v) && json_object_size(v) == 0);
        if (!off)
            return al_err(err, AL_EUNSUP,
                          "config.json: %.60s: a field %s models do not have; it may change the "
                          "numerics, so alignd refuses the model rather than guess",
                          key, k_fams[f].mt);
    }
    return AL_OK;
}

/* Reads a number (an integer is fine) from r[key]; absent/null leaves *out. */
static int rope_num(const json_t *r, const char *path, const char *key, double *out,
                    int *present, char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(r, key);
    if (present) *present = 0;
    if (!v || json_is_null(v)) return AL_OK;
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return al_err(err, AL_EFORMAT, "config.json: %s.%s: must be a number", path, key);
    *out = json_number_value(v);
    if (present) *present = 1;
    return AL_OK;
}

static int rope_factors(const json_t *r, const char *path, const char *key, int half, float *out,
                        char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(r, key);
    if (!json_is_array(v))
        return al_err(err, AL_EFORMAT, "config.json: %s.%s: missing (a list of numbers)", path, key);
    if ((int)json_array_size(v) != half)
        return al_err(err, AL_EFORMAT, "config.json: %s.%s: %d entries, head_dim / 2 is %d", path,
                      key, (int)json_array_size(v), half);
    for (int i = 0; i < half; i++) {
        const json_t *e = json_array_get(v, (size_t)i);
        if (!fits_float(e) || !(json_number_value(e) > 0))
            return al_err(err, AL_EFORMAT, "config.json: %s.%s[%d]: must be a positive number "
                          "(of float range)", path, key, i);
        out[i] = (float)json_number_value(e);
    }
    return AL_OK;
}

/* One RoPE parameter object (rope_scaling, or transformers v5's
 * rope_parameters, possibly one per layer type) into rc. theta receives
 * its rope_theta when it has one. Every key is one the type reads;
 * anything else is refused by name. */
static int parse_rope_obj(const json_t *r, const char *path, int f, const al_model_config *c,
                          al_rope_cfg *rc, float *theta, char err[AL_ERRLEN]) {
    if (!json_is_object(r))
        return al_err(err, AL_EUNSUP, "config.json: %s: must be null or an object", path);
    const json_t *ty = json_object_get(r, "rope_type");
    if (!ty || json_is_null(ty)) ty = json_object_get(r, "type"); /* the legacy key */
    const char *t = json_is_string(ty) ? json_string_value(ty) : NULL;
    if (!t) return al_err(err, AL_EFORMAT, "config.json: %s: rope_type (or type) missing", path);
    /* Phi3Config renames su and yarn to longrope (_rope_scaling_adjustment) */
    if (f == F_PHI3 && (!strcmp(t, "su") || !strcmp(t, "yarn"))) t = "longrope";
    static const char *const names[] = {"default", "linear", "dynamic", "yarn", "longrope", "llama3"};
    int type = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(t, names[i])) type = i;
    if (type < 0)
        return al_err(err, AL_EUNSUP,
                      "config.json: %s: RoPE type %.40s is not supported (default, linear, "
                      "dynamic, yarn, longrope, llama3)", path, t);
    memset(rc, 0, sizeof *rc);
    rc->type = type;
    rc->truncate = 1;
    static const char *const allowed[6][10] = {
        {NULL},
        {"factor", NULL},
        {"factor", "original_max_position_embeddings", NULL}, /* the latter unused, as in transformers */
        {"factor", "attention_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim",
         "original_max_position_embeddings", "truncate", NULL},
        {"short_factor", "long_factor", "factor", "attention_factor",
         "original_max_position_embeddings", NULL},
        {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings", NULL}};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)r, key, v) {
        if (!strcmp(key, "rope_type") || !strcmp(key, "type") || !strcmp(key, "rope_theta")) continue;
        if (!in_list(allowed[type], key))
            return al_err(err, AL_EUNSUP, "config.json: %s.%s: not a parameter of %s RoPE", path,
                          key, names[type]);
    }
    const json_t *th = json_object_get(r, "rope_theta");
    if (th && !json_is_null(th)) {
        if (!fits_float(th) || !(json_number_value(th) > 0))
            return al_err(err, AL_EFORMAT, "config.json: %s.rope_theta: must be a positive number "
                          "(of float range)", path);
        *theta = (float)json_number_value(th);
    }
    int rc_ = AL_OK, has;
    double om = 0;
    if ((rc_ = rope_num(r, path, "original_max_position_embeddings", &om, &has, err))) return rc_;
    if (has && !(om >= 1 && om <= (1 << 24)))
        return al_err(err, AL_EFORMAT, "config.json: %s.original_max_position_embeddings: must be "
                      "a positive integer", path);
    rc->orig_max = has ? (int)om : 0;
    if (type != AL_ROPE_DEFAULT && type != AL_ROPE_LONGROPE) {
        if ((rc_ = rope_num(r, path, "factor", &rc->factor, &has, err))) return rc_;
        if (!has) return al_err(err, AL_EFORMAT, "config.json: %s.factor: missing", path);
        if (!(rc->factor >= 1.0) && type != AL_ROPE_LINEAR)
            return al_err(err, AL_EFORMAT, "config.json: %s.factor: must be >= 1", path);
        if (!(rc->factor > 0))
            return al_err(err, AL_EFORMAT, "config.json: %s.factor: must be positive", path);
    }
    if (type == AL_ROPE_LLAMA3) {
        if ((rc_ = rope_num(r, path, "low_freq_factor", &rc->low_freq_factor, &has, err))) return rc_;
        if (!has) return al_err(err, AL_EFORMAT, "config.json: %s.low_freq_factor: missing", path);
        if ((rc_ = rope_num(r, path, "high_freq_factor", &rc->high_freq_factor, &has, err))) return rc_;
        if (!has) return al_err(err, AL_EFORMAT, "config.json: %s.high_freq_factor: missing", path);
        if (!rc->orig_max)
            return al_err(err, AL_EFORMAT, "config.json: %s.original_max_position_embeddings: missing", path);
        if (!(rc->high_freq_factor > rc->low_freq_factor) || !(rc->low_freq_factor > 0))
            return al_err(err, AL_EFORMAT, "config.json: %s: high_freq_factor must exceed "
                          "low_freq_factor > 0", path);
    }
    if (type == AL_ROPE_YARN) {
        if ((rc_ = rope_num(r, path, "attention_factor", &rc->attention_factor, NULL, err))) return rc_;
        if ((rc_ = rope_num(r, path, "beta_fast", &rc->beta_fast, NULL, err))) return rc_;
        if ((rc_ = rope_num(r, path, "beta_slow", &rc->beta_slow, NULL, err))) return rc_;
        if ((rc_ = rope_num(r, path, "mscale", &rc->mscale, NULL, err))) return rc_;
        if ((rc_ = rope_num(r, path, "mscale_all_dim", &rc->mscale_all_dim, NULL, err))) return rc_;
        const json_t *tr = json_object_get(r, "truncate");
        if (tr && !json_is_null(tr)) {
            if (!json_is_boolean(tr))
                return al_err(err, AL_EFORMAT, "config.json: %s.truncate: must be true or false", path);
            rc->truncate = json_is_true(tr);
        }
    }
    if (type == AL_ROPE_LONGROPE) {
        int half = c->HD / 2;
        if (half > AL_ROPE_MAX_FACTORS)
            return al_err(err, AL_EUNSUP, "config.json: %s: longrope with head_dim %d (at most %d)",
                          path, c->HD, 2 * AL_ROPE_MAX_FACTORS);
        if ((rc_ = rope_factors(r, path, "short_factor", half, rc->short_factor, err))) return rc_;
        if ((rc_ = rope_factors(r, path, "long_factor", half, rc->long_factor, err))) return rc_;
        rc->n_factors = half;
        if ((rc_ = rope_num(r, path, "attention_factor", &rc->attention_factor, NULL, err))) return rc_;
        if ((rc_ = rope_num(r, path, "factor", &rc->factor, NULL, err))) return rc_;
    }
    return AL_OK;
}

/* rope_scaling (with rope_theta beside it) or transformers v5's
 * rope_parameters: one object, or (Gemma 3) one per layer type. */
static int parse_rope(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    const json_t *rs = json_object_get(o, "rope_scaling");
    const json_t *rp = json_object_get(o, "rope_parameters");
    memset(&c->rope, 0, sizeof c->rope);
    c->rope.truncate = 1;
    int rc;
    if (rs && !json_is_null(rs)) {
        if ((rc = parse_rope_obj(rs, "rope_scaling", f, c, &c->rope, &c->rope_theta, err))) return rc;
    }
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp))
            return al_err(err, AL_EUNSUP, "config.json: rope_parameters: must be null or an object");
        const json_t *full = json_object_get(rp, "full_attention");
        const json_t *slid = json_object_get(rp, "sliding_attention");
        if (full || slid) {
            const char *key;
            json_t *v;
            json_object_foreach((json_t *)rp, key, v)
                if (strcmp(key, "full_attention") && strcmp(key, "sliding_attention"))
                    return al_err(err, AL_EUNSUP, "config.json: rope_parameters.%s: not a layer type", key);
            if (full && (rc = parse_rope_obj(full, "rope_parameters.full_attention", f, c, &c->rope,
                                             &c->rope_theta, err)))
                return rc;
            if (slid) {
                al_rope_cfg loc;
                if ((rc = parse_rope_obj(slid, "rope_parameters.sliding_attention", f, c, &loc,
                                         f == F_GEMMA3 ? &c->rope_local_theta : &c->rope_theta, err)))
                    return rc;
                if (loc.type != AL_ROPE_DEFAULT || (f != F_GEMMA3 && full))
                    return al_err(err, AL_EUNSUP, "config.json: rope_parameters.sliding_attention: "
                                  "only Gemma 3's default local RoPE is supported");
            }
        } else if ((rc = parse_rope_obj(rp, "rope_parameters", f, c, &c->rope, &c->rope_theta, err))) {
            return rc;
        }
    }
    return AL_OK;
}

static int parse_gpt2(const json_t *o, al_model_config *c, char err[AL_ERRLEN]) {
    int rc, present;
    if ((rc = req_int(o, "n_embd", &c->C, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "n_layer", &c->n_layers, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "n_head", &c->NH, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "vocab_size", &c->V, err)) != AL_OK) return rc;
    c->max_T = 1024; /* GPT2Config default; n_ctx is the legacy spelling */
    if ((rc = get_int(o, "n_ctx", 1, &c->max_T, NULL, err)) != AL_OK) return rc;
    if ((rc = get_int(o, "n_positions", 1, &c->max_T, NULL, err)) != AL_OK) return rc;
    if ((rc = get_int(o, "n_inner", 1, &c->FF, &present, err)) != AL_OK) return rc;
    if (!present) {
        if (c->C > CFG_MAX_DIM / 4)
            return al_err(err, AL_EFORMAT, "config.json: n_embd: %d is too large", c->C);
        c->FF = 4 * c->C; /* n_inner null -> 4 * n_embd */
    }
    if (c->C % c->NH != 0)
        return al_err(err, AL_EFORMAT, "config.json: n_head: %d does not divide n_embd %d", c->NH,
                      c->C);
    c->NKV = c->NH;
    c->HD = c->C / c->NH;
    c->norm_eps = 1e-5f;
    if ((rc = get_float(o, "layer_norm_epsilon", &c->norm_eps, err)) != AL_OK) return rc;
    c->tie_word_embeddings = 1;
    if ((rc = get_bool(o, "tie_word_embeddings", &c->tie_word_embeddings, err)) != AL_OK) return rc;
    c->attn_bias = c->o_bias = c->mlp_bias = 1;

    const json_t *act = json_object_get(o, "activation_function");
    if (act && !json_is_null(act)) {
        if (!json_is_string(act))
            return al_err(err, AL_EFORMAT, "config.json: activation_function: must be a string");
        const char *s = json_string_value(act);
        /* gelu_new and gelu_pytorch_tanh are the same tanh approximation. */
        if (strcmp(s, "gelu_new") != 0 && strcmp(s, "gelu_pytorch_tanh") != 0)
            return al_err(err, AL_EUNSUP,
                          "config.json: activation_function: %.40s is not supported (gelu_new)", s);
    }
    /* Variants of the attention we do not implement. */
    int flag = 1;
    if ((rc = get_bool(o, "scale_attn_weights", &flag, err)) != AL_OK) return rc;
    if (!flag)
        return al_err(err, AL_EUNSUP, "config.json: scale_attn_weights: false is not supported");
    flag = 0;
    if ((rc = get_bool(o, "scale_attn_by_inverse_layer_idx", &flag, err)) != AL_OK) return rc;
    if (flag)
        return al_err(err, AL_EUNSUP,
                      "config.json: scale_attn_by_inverse_layer_idx: true is not supported");
    flag = 0;
    if ((rc = get_bool(o, "add_cross_attention", &flag, err)) != AL_OK) return rc;
    if (flag) return al_err(err, AL_EUNSUP, "config.json: add_cross_attention: not supported");
    return AL_OK;
}

/* A "layer_types" list of full_attention / sliding_attention into the
 * AL_LAYER_SLIDING flags (present: whether the config had one). */
static int parse_layer_types(const json_t *o, al_model_config *c, int *present, char err[AL_ERRLEN]) {
    const json_t *lt = json_object_get(o, "layer_types");
    *present = 0;
    if (!lt || json_is_null(lt)) return AL_OK;
    if (!json_is_array(lt) || (int)json_array_size(lt) < c->n_layers)
        return al_err(err, AL_EFORMAT, "config.json: layer_types: must list num_hidden_layers (%d) "
                      "types", c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        const char *t = json_string_value(json_array_get(lt, (size_t)l));
        if (t && !strcmp(t, "sliding_attention")) c->layer_flags[l] |= AL_LAYER_SLIDING;
        else if (t && !strcmp(t, "full_attention")) c->layer_flags[l] &= (uint8_t)~AL_LAYER_SLIDING;
        else
            return al_err(err, AL_EUNSUP, "config.json: layer_types[%d]: %.40s is not supported "
                          "(full_attention, sliding_attention)", l, t ? t : "not a string");
    }
    *present = 1;
    return AL_OK;
}

static int get_window(const json_t *o, int *out, char err[AL_ERRLEN]) {
    int rc = get_int(o, "sliding_window", 1, out, NULL, err);
    if (rc) return rc;
    const json_t *v = json_object_get(o, "sliding_window");
    if (v && json_is_null(v)) *out = 0;
    return AL_OK;
}

/* A softcap field: null (or absent, taking def) means none. */
static int get_cap(const json_t *o, const char *key, float def, float *out, char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(o, key);
    *out = def;
    if (!v) return AL_OK;
    if (json_is_null(v)) {
        *out = 0.0f;
        return AL_OK;
    }
    if (!fits_float(v) || !(json_number_value(v) > 0))
        return al_err(err, AL_EFORMAT, "config.json: %s: must be a positive number (of float "
                      "range) or null", key);
    *out = (float)json_number_value(v);
    return AL_OK;
}

static int require_zero(const json_t *o, const char *key, char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return AL_OK;
    if (!json_is_number(v))
        return al_err(err, AL_EFORMAT, "config.json: %s: must be a number", key);
    if (json_number_value(v) != 0)
        return al_err(err, AL_EUNSUP, "config.json: %s: %g: dropout is not implemented (0 only)",
                      key, json_number_value(v));
    return AL_OK;
}

/* The sizes and the scalars every family has, with its class's defaults. */
static int parse_llama_sizes(const json_t *o, const struct fam *F, al_model_config *c, char err[AL_ERRLEN]) {
    int rc, present;
    if ((rc = req_int(o, "hidden_size", &c->C, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "num_hidden_layers", &c->n_layers, err)) != AL_OK) return rc;
    /* al_config_validate's bound, checked now: the families' layer
     * readers fill the fixed layer_flags array before it runs */
    if (c->n_layers > AL_MAX_LAYERS)
        return al_err(err, AL_EFORMAT, "config.json: num_hidden_layers: %d is outside [1, %d]",
                      c->n_layers, AL_MAX_LAYERS);
    if ((rc = req_int(o, "num_attention_heads", &c->NH, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "intermediate_size", &c->FF, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "vocab_size", &c->V, err)) != AL_OK) return rc;
    c->NKV = F->nkv ? F->nkv : c->NH;
    if ((rc = get_int(o, "num_key_value_heads", 1, &c->NKV, NULL, err)) != AL_OK) return rc;
    if ((rc = get_int(o, "head_dim", 1, &c->HD, &present, err)) != AL_OK) return rc;
    if (!present && F->head_dim) {
        c->HD = F->head_dim;
    } else if (!present) {
        if (c->C % c->NH != 0)
            return al_err(err, AL_EFORMAT,
                          "config.json: num_attention_heads: %d does not divide hidden_size %d "
                          "(and head_dim is not given)",
                          c->NH, c->C);
        c->HD = c->C / c->NH;
    }
    c->max_T = F->max_pos;
    if ((rc = get_int(o, "max_position_embeddings", 1, &c->max_T, NULL, err)) != AL_OK) return rc;
    c->norm_eps = F->eps;
    if ((rc = get_float(o, "rms_norm_eps", &c->norm_eps, err)) != AL_OK) return rc;
    c->rope_theta = F->theta;
    if ((rc = get_float(o, "rope_theta", &c->rope_theta, err)) != AL_OK) return rc;
    c->tie_word_embeddings = F->tie;
    if ((rc = get_bool(o, "tie_word_embeddings", &c->tie_word_embeddings, err)) != AL_OK) return rc;
    return require_zero(o, "attention_dropout", err);
}

/* The activation: hidden_act, or Gemma's hidden_activation. */
static int parse_act(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    const char *act_key = f == F_GEMMA2 || f == F_GEMMA3 ? "hidden_activation" : "hidden_act";
    const json_t *act = json_object_get(o, act_key);
    c->act = f == F_GEMMA2 || f == F_GEMMA3 ? AL_ACT_GELU_TANH : AL_ACT_SILU;
    if (!act || json_is_null(act)) return AL_OK;
    if (!json_is_string(act))
        return al_err(err, AL_EFORMAT, "config.json: %s: must be a string", act_key);
    const char *s = json_string_value(act);
    if (!strcmp(s, "silu")) c->act = AL_ACT_SILU;
    else if (!strcmp(s, "gelu_pytorch_tanh")) c->act = AL_ACT_GELU_TANH;
    else
        return al_err(err, AL_EUNSUP,
                      "config.json: %s: %.40s is not supported (silu, gelu_pytorch_tanh)",
                      act_key, s);
    return AL_OK;
}

/* Biases as each transformers class hard-codes or configures them. */
static int parse_biases(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    int rc, ab = 0, mb = 0;
    if ((rc = get_bool(o, "attention_bias", &ab, err)) != AL_OK) return rc;
    if ((rc = get_bool(o, "mlp_bias", &mb, err)) != AL_OK) return rc;
    if (f == F_QWEN2) {
        c->attn_bias = 1; /* Qwen2: q/k/v always biased, o_proj and MLP never */
        c->o_bias = c->mlp_bias = 0;
    } else if (f == F_MISTRAL || f == F_PHI3) {
        c->attn_bias = c->o_bias = c->mlp_bias = 0; /* bias=False in the modules */
    } else {
        c->attn_bias = c->o_bias = ab; /* attention_bias covers q, k, v and o_proj */
        /* only LlamaMLP and GraniteMLP read mlp_bias; the others are bias-free */
        c->mlp_bias = (f == F_LLAMA || f == F_GRANITE) ? mb : 0;
        if (mb && !c->mlp_bias)
            return al_err(err, AL_EUNSUP, "config.json: mlp_bias: %s has no MLP biases", k_fams[f].mt);
    }
    return AL_OK;
}

/* RoPE: the global one (and Gemma 3's local base), then the positions its
 * scaling implies. */
static int parse_llama_rope(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    int rc;
    if (f == F_LLAMA) {
        int ri = 0;
        if ((rc = get_bool(o, "rope_interleaved", &ri, err)) != AL_OK) return rc;
        if (ri) return al_err(err, AL_EUNSUP, "config.json: rope_interleaved: true is not supported");
    }
    c->rope_local_theta = 10000.0f;
    if (f == F_GEMMA3 && (rc = get_float(o, "rope_local_base_freq", &c->rope_local_theta, err))) return rc;
    if ((rc = parse_rope(o, f, c, err)) != AL_OK) return rc;
    if (c->rope.type == AL_ROPE_DYNAMIC) {
        /* dynamic NTK keeps max_position_embeddings as the length past
         * which it grows the base; alignd holds tables up to factor times it */
        double ext = (double)c->max_T * c->rope.factor;
        c->rope.orig_max = c->max_T;
        c->max_T = ext > CFG_MAX_DIM ? CFG_MAX_DIM : (int)ext;
    }
    if (c->rope.type == AL_ROPE_LONGROPE) {
        /* transformers reads original_max_position_embeddings from the config
         * itself (Phi3Config has one; others use max_position_embeddings) */
        int om = f == F_PHI3 ? 4096 : c->max_T;
        if (f == F_PHI3 && (rc = get_int(o, "original_max_position_embeddings", 1, &om, NULL, err))) return rc;
        c->rope.orig_max = om;
    }
    return AL_OK;
}

/* ---- each family's layers: windows, per-layer kinds, its own fields ------
 * (called with layer_flags and window zeroed; Llama has none: no window, and a
 * sliding_window it does not read is harmless) */

/* One sliding_window (dflt when absent, null: none) over every layer. */
static int window_all_layers(const json_t *o, int dflt, al_model_config *c, char err[AL_ERRLEN]) {
    int w = dflt, rc;
    if ((rc = get_window(o, &w, err))) return rc;
    c->window = w;
    for (int l = 0; l < c->n_layers && w; l++) c->layer_flags[l] = AL_LAYER_SLIDING;
    return AL_OK;
}

static int layers_mistral(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    (void)f;
    return window_all_layers(o, 4096, c, err); /* MistralConfig's default; null turns it off */
}

static int layers_phi3(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    (void)f;
    int rc;
    if ((rc = window_all_layers(o, 0, c, err))) return rc;
    if ((rc = require_zero(o, "resid_pdrop", err)) || (rc = require_zero(o, "embd_pdrop", err))) return rc;
    double prf = 1.0;
    if ((rc = rope_num(o, "config", "partial_rotary_factor", &prf, NULL, err))) return rc;
    if (prf != 1.0)
        return al_err(err, AL_EUNSUP, "config.json: partial_rotary_factor: %g is not supported "
                      "(1 only)", prf);
    c->fused_proj = 1;
    return AL_OK;
}

/* SmolLM3's NoPE layers (no_rope_layers, else every interval-th layer);
 * a NoPE layer slides when use_sliding_window and a window are set. */
static int smollm3_nope_layers(const json_t *o, int use, int w, al_model_config *c, char err[AL_ERRLEN]) {
    int interval = 4, rc;
    if ((rc = get_int(o, "no_rope_layer_interval", 1, &interval, NULL, err))) return rc;
    const json_t *nr = json_object_get(o, "no_rope_layers");
    for (int l = 0; l < c->n_layers; l++) {
        int use_rope = (l + 1) % interval != 0;
        if (nr && !json_is_null(nr)) {
            const json_t *e = json_is_array(nr) ? json_array_get(nr, (size_t)l) : NULL;
            if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 1)
                return al_err(err, AL_EFORMAT, "config.json: no_rope_layers: must list 0 or "
                              "1 for each of the %d layers", c->n_layers);
            use_rope = (int)json_integer_value(e);
        }
        if (!use_rope) c->layer_flags[l] |= AL_LAYER_NOPE;
        /* SmolLM3Config: sliding iff use_sliding_window, a window and NoPE */
        if (use && w && !use_rope) c->layer_flags[l] |= AL_LAYER_SLIDING;
    }
    return AL_OK;
}

/* Qwen2, Qwen3 and SmolLM3: use_sliding_window, max_window_layers, layer_types. */
static int layers_qwen(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    int rc, has_types, use = 0, w = f == F_SMOLLM3 ? 0 : 4096, mwl = 28;
    if ((rc = get_bool(o, "use_sliding_window", &use, err))) return rc;
    if ((rc = get_window(o, &w, err))) return rc;
    if ((rc = get_int(o, "max_window_layers", 0, &mwl, NULL, err))) return rc;
    c->window = use ? w : 0;
    if (f == F_SMOLLM3) {
        if ((rc = smollm3_nope_layers(o, use, w, c, err))) return rc;
    } else {
        for (int l = 0; l < c->n_layers; l++)
            if (c->window && l >= mwl) c->layer_flags[l] |= AL_LAYER_SLIDING;
    }
    if ((rc = parse_layer_types(o, c, &has_types, err))) return rc;
    /* SmolLM3Attention keeps a window only when use_sliding_window */
    if (f == F_SMOLLM3 && !use)
        for (int l = 0; l < c->n_layers; l++) c->layer_flags[l] &= (uint8_t)~AL_LAYER_SLIDING;
    if (f == F_QWEN3) c->qk_norm = AL_QK_HEAD;
    return AL_OK;
}

/* Gemma 2's and 3's attention scale and soft-caps, and its refusals. */
static int gemma_attention(const json_t *o, int g3, al_model_config *c, char err[AL_ERRLEN]) {
    int rc, bidi = 0;
    float qpas = 256.0f;
    if ((rc = get_float(o, "query_pre_attn_scalar", &qpas, err))) return rc;
    if (!(qpas > 0)) return al_err(err, AL_EFORMAT, "config.json: query_pre_attn_scalar: must be positive");
    c->query_pre_attn_scalar = qpas;
    c->attn_scale = (float)pow((double)qpas, -0.5);
    if ((rc = get_cap(o, "final_logit_softcapping", g3 ? 0.0f : 30.0f, &c->final_softcap, err))) return rc;
    if ((rc = get_cap(o, "attn_logit_softcapping", g3 ? 0.0f : 50.0f, &c->attn_softcap, err))) return rc;
    if (g3 && c->attn_softcap > 0)
        return al_err(err, AL_EUNSUP, "config.json: attn_logit_softcapping: Gemma 3's attention "
                      "does not apply it in transformers; set it to null");
    if ((rc = get_bool(o, "use_bidirectional_attention", &bidi, err))) return rc;
    if (bidi)
        return al_err(err, AL_EUNSUP, "config.json: use_bidirectional_attention: true (an "
                      "embedding model) is not supported");
    return AL_OK;
}

/* Gemma 2 (every other layer slides) and 3 (all but every pattern-th). */
static int layers_gemma(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    int g3 = f == F_GEMMA3, w = 4096, pattern = 6, rc, has_types;
    if ((rc = get_window(o, &w, err))) return rc;
    c->window = w;
    if ((rc = gemma_attention(o, g3, c, err))) return rc;
    if (g3 && ((rc = get_int(o, "_sliding_window_pattern", 1, &pattern, NULL, err)) ||
               (rc = get_int(o, "sliding_window_pattern", 1, &pattern, NULL, err))))
        return rc;
    for (int l = 0; l < c->n_layers; l++) {
        int sl = g3 ? (l + 1) % pattern != 0 : l % 2 == 0;
        if (sl) c->layer_flags[l] |= AL_LAYER_SLIDING;
    }
    if ((rc = parse_layer_types(o, c, &has_types, err))) return rc;
    if (!w)
        for (int l = 0; l < c->n_layers; l++) c->layer_flags[l] &= (uint8_t)~AL_LAYER_SLIDING;
    if (g3)
        for (int l = 0; l < c->n_layers; l++)
            if (c->layer_flags[l] & AL_LAYER_SLIDING) c->layer_flags[l] |= AL_LAYER_LOCAL_ROPE;
    c->norm_offset = 1;
    c->post_norm = 1;
    c->qk_norm = g3 ? AL_QK_HEAD : AL_QK_NONE;
    /* torch.tensor(hidden_size ** 0.5) in the embedding's dtype (float32 here) */
    c->embed_scale = (float)sqrt((double)c->C);
    return AL_OK;
}

static int layers_olmo2(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    (void)o, (void)f, (void)err;
    c->qk_norm = AL_QK_ALL;
    c->no_pre_norm = 1;
    c->post_norm = 1;
    return AL_OK;
}

static int layers_granite(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]) {
    (void)f;
    int rc;
    float em = 1.0f, rm = 1.0f, am = 1.0f, ls = 1.0f;
    if ((rc = get_float(o, "embedding_multiplier", &em, err)) ||
        (rc = get_float(o, "residual_multiplier", &rm, err)) ||
        (rc = get_float(o, "attention_multiplier", &am, err)) ||
        (rc = get_float(o, "logits_scaling", &ls, err)))
        return rc;
    if (!(am > 0) || !(ls > 0))
        return al_err(err, AL_EFORMAT, "config.json: attention_multiplier and logits_scaling "
                      "must be positive");
    c->embed_scale = em;
    c->residual_scale = rm;
    c->attn_scale = am;
    c->logits_scaling = ls;
    return AL_OK;
}

typedef int (*fam_layers_fn)(const json_t *o, int f, al_model_config *c, char err[AL_ERRLEN]);
static const fam_layers_fn k_fam_layers[F_COUNT] = {
    [F_MISTRAL] = layers_mistral, [F_PHI3] = layers_phi3,
    [F_QWEN2] = layers_qwen,      [F_QWEN3] = layers_qwen,   [F_SMOLLM3] = layers_qwen,
    [F_GEMMA2] = layers_gemma,    [F_GEMMA3] = layers_gemma,
    [F_OLMO2] = layers_olmo2,     [F_GRANITE] = layers_granite,
};

static int parse_llama(const json_t *o, al_model_config *c, char err[AL_ERRLEN]) {
    const int f = family_of(c->model_type);
    int rc;
    if ((rc = check_unknown_keys(o, f, err)) || (rc = parse_llama_sizes(o, &k_fams[f], c, err)) ||
        (rc = parse_act(o, f, c, err)) || (rc = parse_biases(o, f, c, err)) ||
        (rc = parse_llama_rope(o, f, c, err)))
        return rc;
    memset(c->layer_flags, 0, sizeof c->layer_flags);
    c->window = 0;
    if (k_fam_layers[f] && (rc = k_fam_layers[f](o, f, c, err))) return rc;
    if (c->window < 0) c->window = 0;
    return AL_OK;
}

int al_config_parse(al_model_config *cfg, const char *json, size_t len, char err[AL_ERRLEN]) {
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return al_err(err, AL_EFORMAT, "config.json: invalid JSON: %s (line %d)", je.text, je.line);
    int rc = AL_OK;
    al_model_config c;
    al_config_default(&c, AL_ARCH_LLAMA);
    if (!json_is_object(o)) {
        rc = al_err(err, AL_EFORMAT, "config.json: not a JSON object");
        goto done;
    }
    const json_t *mt = json_object_get(o, "model_type");
    if (!json_is_string(mt)) {
        rc = al_err(err, AL_EFORMAT, "config.json: model_type: missing or not a string");
        goto done;
    }
    const char *t = json_string_value(mt);
    if (strcmp(t, "gpt2") == 0) {
        c.arch = AL_ARCH_GPT2;
    } else if (family_of(t) >= 0) {
        c.arch = AL_ARCH_LLAMA;
    } else {
        rc = al_err(err, AL_EUNSUP,
                    "config.json: model_type: %.40s is not supported (gpt2, llama, mistral, qwen2, "
                    "qwen3, gemma2, gemma3_text, phi3, olmo2, smollm3, granite)",
                    t);
        goto done;
    }
    snprintf(c.model_type, sizeof c.model_type, "%s", t);
    if ((rc = parse_heads(o, &c, err)) != AL_OK) goto done;
    rc = c.arch == AL_ARCH_GPT2 ? parse_gpt2(o, &c, err) : parse_llama(o, &c, err);
    if (rc != AL_OK) goto done;
    c.init_range = 0.02f;
    if ((rc = get_float(o, "initializer_range", &c.init_range, err)) != AL_OK) goto done;
    c.bos_id = c.eos_id = c.pad_id = -1;
    if ((rc = get_token(o, "bos_token_id", &c.bos_id, err)) != AL_OK) goto done;
    if ((rc = get_token(o, "eos_token_id", &c.eos_id, err)) != AL_OK) goto done;
    if ((rc = get_token(o, "pad_token_id", &c.pad_id, err)) != AL_OK) goto done;
    /* Consistency and size caps; a bad file is AL_EFORMAT, not a bad argument. */
    char verr[AL_ERRLEN];
    if (al_config_validate(&c, verr) != AL_OK) {
        rc = al_err(err, AL_EFORMAT, "config.json: %s",
                    strncmp(verr, "config: ", 8) == 0 ? verr + 8 : verr);
        goto done;
    }
    *cfg = c;
done:
    json_decref(o);
    return rc;
}

int al_config_load(al_model_config *cfg, const char *dir, char err[AL_ERRLEN]) {
    char path[4096];
    if (al_path_join(path, sizeof path, dir, "config.json") != AL_OK)
        return al_err(err, AL_ERANGE, "%.200s: path too long", dir);
    char *text = NULL;
    size_t len = 0;
    int rc = al_file_read(path, CFG_MAX_FILE, &text, &len, err);
    if (rc != AL_OK) return rc;
    rc = al_config_parse(cfg, text, len, err);
    free(text);
    return rc;
}

/* ---------- saving ---------- */

/* The shortest decimal that reads back as the same float, as a JSON real:
 * 1e-5f is written "1e-05", not 9.9999997473787516e-06. */
static json_t *json_float(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

static json_t *json_token(int id) { return id >= 0 ? json_integer(id) : json_null(); }

/* "llama" -> "Llama", "qwen2" -> "Qwen2", "gemma3_text" -> "Gemma3". */
static const char *class_prefix(const char *mt) {
    if (strcmp(mt, "gpt2") == 0) return "GPT2";
    int f = family_of(mt);
    return f >= 0 ? k_fams[f].cls : NULL;
}

static json_t *json_cap(float v) { return v > 0 ? json_float(v) : json_null(); }

/* o[k] = v, *bad set on failure (v NULL included). The _new setters take
 * the reference even when they fail, so v never leaks. */
static void put(json_t *o, const char *k, json_t *v, int *bad) {
    if (json_object_set_new(o, k, v)) *bad = 1;
}

static void append(json_t *a, json_t *v, int *bad) {
    if (json_array_append_new(a, v)) *bad = 1;
}

static json_t *json_layer_types(const al_model_config *c) {
    json_t *a = json_array();
    for (int l = 0; a && l < c->n_layers; l++)
        if (json_array_append_new(a, json_string(c->layer_flags[l] & AL_LAYER_SLIDING
                                                      ? "sliding_attention"
                                                      : "full_attention"))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *json_rope(const al_rope_cfg *r) {
    static const char *const names[] = {"default", "linear", "dynamic", "yarn", "longrope", "llama3"};
    if (r->type == AL_ROPE_DEFAULT) return json_null();
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = 0;
    put(o, "rope_type", json_string(names[r->type]), &bad);
    if (r->type != AL_ROPE_LONGROPE) put(o, "factor", json_real(r->factor), &bad);
    if (r->type == AL_ROPE_LLAMA3) {
        put(o, "low_freq_factor", json_real(r->low_freq_factor), &bad);
        put(o, "high_freq_factor", json_real(r->high_freq_factor), &bad);
    }
    if (r->orig_max && r->type != AL_ROPE_LONGROPE && r->type != AL_ROPE_DYNAMIC)
        put(o, "original_max_position_embeddings", json_integer(r->orig_max), &bad);
    if (r->type == AL_ROPE_YARN) {
        if (r->attention_factor) put(o, "attention_factor", json_real(r->attention_factor), &bad);
        if (r->beta_fast) put(o, "beta_fast", json_real(r->beta_fast), &bad);
        if (r->beta_slow) put(o, "beta_slow", json_real(r->beta_slow), &bad);
        if (r->mscale) put(o, "mscale", json_real(r->mscale), &bad);
        if (r->mscale_all_dim) put(o, "mscale_all_dim", json_real(r->mscale_all_dim), &bad);
        if (!r->truncate) put(o, "truncate", json_false(), &bad);
    }
    if (r->type == AL_ROPE_LONGROPE) {
        json_t *sf = json_array(), *lf = json_array();
        for (int i = 0; sf && lf && i < r->n_factors; i++) {
            append(sf, json_float(r->short_factor[i]), &bad);
            append(lf, json_float(r->long_factor[i]), &bad);
        }
        put(o, "short_factor", sf, &bad);
        put(o, "long_factor", lf, &bad);
        if (r->attention_factor) put(o, "attention_factor", json_real(r->attention_factor), &bad);
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Refuses what the model_type's transformers class cannot express
 * (f: the Llama family, -1 for GPT-2). */
static int check_expressible(const al_model_config *cfg, const char *mt, int f, char err[AL_ERRLEN]) {
    int gpt2 = f < 0;
    if (gpt2 && !(cfg->attn_bias && cfg->o_bias && cfg->mlp_bias))
        return al_err(err, AL_EINVAL, "config: GPT-2 always has biases (attn_bias/o_bias/mlp_bias)");
    if (gpt2 && (cfg->NKV != cfg->NH || cfg->HD * cfg->NH != cfg->C))
        return al_err(err, AL_EINVAL, "config: GPT-2 heads must split n_embd evenly, without GQA");
    if (f >= 0 && f != F_QWEN2 && cfg->attn_bias != cfg->o_bias)
        return al_err(err, AL_EINVAL, "config: %s's attention_bias covers o_proj too "
                                      "(attn_bias != o_bias)", mt);
    if ((f == F_PHI3) && (cfg->attn_bias || cfg->mlp_bias))
        return al_err(err, AL_EINVAL, "config: %s has no biases", mt);
    if (f >= 0 && f != F_LLAMA && f != F_GRANITE && cfg->mlp_bias)
        return al_err(err, AL_EINVAL, "config: %s has no MLP biases", mt);
    if (!strcmp(mt, "qwen2") && !(cfg->attn_bias && !cfg->o_bias && !cfg->mlp_bias))
        return al_err(err, AL_EINVAL, "config: qwen2 has q/k/v biases only");
    if (!strcmp(mt, "mistral") && (cfg->attn_bias || cfg->o_bias || cfg->mlp_bias))
        return al_err(err, AL_EINVAL, "config: mistral has no biases");
    return AL_OK;
}

static void put_gpt2(json_t *o, const al_model_config *cfg, int *bad) {
    put(o, "n_embd", json_integer(cfg->C), bad);
    put(o, "n_layer", json_integer(cfg->n_layers), bad);
    put(o, "n_head", json_integer(cfg->NH), bad);
    put(o, "n_positions", json_integer(cfg->max_T), bad);
    put(o, "n_inner", json_integer(cfg->FF), bad);
    put(o, "layer_norm_epsilon", json_float(cfg->norm_eps), bad);
    put(o, "activation_function", json_string("gelu_new"), bad);
}

/* What every family of the Llama dialect writes. */
static void put_llama(json_t *o, const al_model_config *cfg, int f, int *bad) {
    put(o, "hidden_size", json_integer(cfg->C), bad);
    put(o, "num_hidden_layers", json_integer(cfg->n_layers), bad);
    put(o, "num_attention_heads", json_integer(cfg->NH), bad);
    put(o, "num_key_value_heads", json_integer(cfg->NKV), bad);
    put(o, "head_dim", json_integer(cfg->HD), bad);
    put(o, "intermediate_size", json_integer(cfg->FF), bad);
    put(o, "max_position_embeddings",
        json_integer(cfg->rope.type == AL_ROPE_DYNAMIC && cfg->rope.orig_max ? cfg->rope.orig_max : cfg->max_T),
        bad);
    put(o, "rms_norm_eps", json_float(cfg->norm_eps), bad);
    put(o, "rope_theta", json_float(cfg->rope_theta), bad);
    put(o, "rope_scaling", json_rope(&cfg->rope), bad);
    const char *act = cfg->act == AL_ACT_GELU_TANH ? "gelu_pytorch_tanh" : "silu";
    int gemma = f == F_GEMMA2 || f == F_GEMMA3;
    put(o, gemma ? "hidden_activation" : "hidden_act", json_string(act), bad);
    if (f != F_QWEN2 && f != F_MISTRAL && f != F_PHI3)
        put(o, "attention_bias", json_boolean(cfg->attn_bias), bad);
    if (f == F_LLAMA || f == F_GRANITE) put(o, "mlp_bias", json_boolean(cfg->mlp_bias), bad);
    put(o, "attention_dropout", json_real(0.0), bad);
}

/* ---- each family's own fields (Llama and OLMo 2 have none) -------------- */

/* The first sliding layer's index, n_layers when none slides. */
static int first_sliding(const al_model_config *cfg) {
    int first = cfg->n_layers;
    for (int l = cfg->n_layers - 1; l >= 0; l--)
        if (cfg->layer_flags[l] & AL_LAYER_SLIDING) first = l;
    return first;
}

static json_t *json_window(const al_model_config *cfg) {
    return cfg->window > 0 ? json_integer(cfg->window) : json_null();
}

/* Mistral: one window over every layer, or null. */
static void save_mistral(json_t *o, const al_model_config *cfg, int f, int *bad) {
    (void)f;
    put(o, "sliding_window", first_sliding(cfg) < cfg->n_layers ? json_window(cfg) : json_null(), bad);
}

static void save_phi3(json_t *o, const al_model_config *cfg, int f, int *bad) {
    save_mistral(o, cfg, f, bad);
    put(o, "original_max_position_embeddings",
        json_integer(cfg->rope.orig_max ? cfg->rope.orig_max : cfg->max_T), bad);
    put(o, "resid_pdrop", json_real(0.0), bad);
    put(o, "embd_pdrop", json_real(0.0), bad);
}

static void save_qwen(json_t *o, const al_model_config *cfg, int f, int *bad) {
    int first = first_sliding(cfg);
    put(o, "use_sliding_window", json_boolean(first < cfg->n_layers), bad);
    put(o, "sliding_window", json_window(cfg), bad);
    if (f != F_SMOLLM3) put(o, "max_window_layers", json_integer(first), bad);
    put(o, "layer_types", json_layer_types(cfg), bad);
    if (f == F_SMOLLM3) {
        json_t *nr = json_array();
        for (int l = 0; nr && l < cfg->n_layers; l++)
            append(nr, json_integer(!(cfg->layer_flags[l] & AL_LAYER_NOPE)), bad);
        put(o, "no_rope_layers", nr, bad);
    }
}

/* Gemma 3's sliding_window_pattern: the period of its layer kinds (all but
 * every p-th layer slide), for transformers before layer_types; 0 if none. */
static int gemma3_pattern(const al_model_config *cfg) {
    for (int cand = 1; cand <= cfg->n_layers + 1; cand++) {
        int ok = 1;
        for (int l = 0; l < cfg->n_layers && ok; l++)
            ok = !!(cfg->layer_flags[l] & AL_LAYER_SLIDING) == ((l + 1) % cand != 0);
        if (ok) return cand;
    }
    return 0;
}

static void save_gemma(json_t *o, const al_model_config *cfg, int f, int *bad) {
    put(o, "sliding_window", json_window(cfg), bad);
    put(o, "layer_types", json_layer_types(cfg), bad);
    put(o, "query_pre_attn_scalar", json_float(cfg->query_pre_attn_scalar), bad);
    put(o, "final_logit_softcapping", json_cap(cfg->final_softcap), bad);
    put(o, "attn_logit_softcapping", json_cap(cfg->attn_softcap), bad);
    if (f == F_GEMMA3) {
        put(o, "rope_local_base_freq", json_float(cfg->rope_local_theta), bad);
        int p = gemma3_pattern(cfg);
        if (p) put(o, "sliding_window_pattern", json_integer(p), bad);
    }
}

static void save_granite(json_t *o, const al_model_config *cfg, int f, int *bad) {
    (void)f;
    put(o, "embedding_multiplier", json_float(cfg->embed_scale > 0 ? cfg->embed_scale : 1.0f), bad);
    put(o, "residual_multiplier", json_float(cfg->residual_scale > 0 ? cfg->residual_scale : 1.0f), bad);
    put(o, "attention_multiplier", json_float(cfg->attn_scale > 0 ? cfg->attn_scale : 1.0f), bad);
    put(o, "logits_scaling", json_float(cfg->logits_scaling > 0 ? cfg->logits_scaling : 1.0f), bad);
}

typedef void (*fam_save_fn)(json_t *o, const al_model_config *cfg, int f, int *bad);
static const fam_save_fn k_fam_save[F_COUNT] = {
    [F_MISTRAL] = save_mistral, [F_PHI3] = save_phi3,
    [F_QWEN2] = save_qwen,      [F_QWEN3] = save_qwen,   [F_SMOLLM3] = save_qwen,
    [F_GEMMA2] = save_gemma,    [F_GEMMA3] = save_gemma,
    [F_GRANITE] = save_granite,
};

/* A classifier's labels: transformers derives num_labels from id2label;
 * write both (and label2id). */
static void put_labels(json_t *o, int num_labels, int *bad) {
    json_t *id2 = json_object(), *l2i = json_object();
    int fail = !id2 || !l2i;
    for (int i = 0; !fail && i < num_labels; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "%d", i);
        snprintf(v, sizeof v, "LABEL_%d", i);
        fail = json_object_set_new(id2, k, json_string(v)) || json_object_set_new(l2i, v, json_integer(i));
    }
    if (fail) {
        json_decref(id2);
        json_decref(l2i);
        *bad = 1;
    } else {
        put(o, "id2label", id2, bad);
        put(o, "label2id", l2i, bad);
    }
    put(o, "num_labels", json_integer(num_labels), bad);
}

/* o as transformers' to_json_string writes it (indent 2, sorted keys), one
 * trailing newline, to dir/config.json atomically. */
static int write_json(const json_t *o, const char *dir, char err[AL_ERRLEN]) {
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    if (!text) return al_err(err, AL_ENOMEM, "config.json: out of memory");
    char path[4096];
    if (al_path_join(path, sizeof path, dir, "config.json") != AL_OK) {
        free(text);
        return al_err(err, AL_ERANGE, "%.200s: path too long", dir);
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the NUL: write n + 1 bytes, no terminator needed */
    int rc = al_file_write_atomic(path, text, n + 1, err);
    free(text);
    return rc;
}

int al_config_save(const al_model_config *cfg, const char *dir, char err[AL_ERRLEN]) {
    int rc = al_config_validate(cfg, err);
    if (rc != AL_OK) return rc;
    /* An unset model_type (a struct built by hand) takes the arch's own. */
    const char *mt = cfg->model_type[0] && memchr(cfg->model_type, '\0', sizeof cfg->model_type)
                         ? cfg->model_type
                         : cfg->arch == AL_ARCH_GPT2 ? "gpt2" : "llama";
    const char *prefix = class_prefix(mt);
    int gpt2 = cfg->arch == AL_ARCH_GPT2;
    if (!prefix || gpt2 != (strcmp(mt, "gpt2") == 0))
        return al_err(err, AL_EINVAL, "config: model_type: %s does not match the architecture", mt);
    const int f = gpt2 ? -1 : family_of(mt);
    if ((rc = check_expressible(cfg, mt, f, err)) != AL_OK) return rc;

    char arch[96];
    int cls = cfg->has_score && !cfg->has_lm_head;
    if (cls && f >= 0) snprintf(arch, sizeof arch, "%s", k_fams[f].seqcls);
    else
        snprintf(arch, sizeof arch, "%s%s", prefix,
                 cls ? "ForSequenceClassification" : gpt2 ? "LMHeadModel" : "ForCausalLM");
    json_t *o = json_object();
    json_t *archs = json_array();
    if (!o || !archs) {
        json_decref(o);
        json_decref(archs);
        return al_err(err, AL_ENOMEM, "config.json: out of memory");
    }
    int bad = json_array_append_new(archs, json_string(arch));
    put(o, "architectures", archs, &bad);
    put(o, "model_type", json_string(mt), &bad);
    put(o, "vocab_size", json_integer(cfg->V), &bad);
    put(o, "initializer_range", json_float(cfg->init_range), &bad);
    put(o, "tie_word_embeddings", json_boolean(cfg->tie_word_embeddings), &bad);
    put(o, "bos_token_id", json_token(cfg->bos_id), &bad);
    put(o, "eos_token_id", json_token(cfg->eos_id), &bad);
    if (cfg->pad_id >= 0) put(o, "pad_token_id", json_integer(cfg->pad_id), &bad);
    put(o, "torch_dtype", json_string(cfg->torch_dtype[0] ? cfg->torch_dtype : "float32"), &bad);
    if (gpt2) {
        put_gpt2(o, cfg, &bad);
    } else {
        put_llama(o, cfg, f, &bad);
        if (k_fam_save[f]) k_fam_save[f](o, cfg, f, &bad);
    }
    if (cls) put_labels(o, cfg->num_labels, &bad);
    rc = bad ? al_err(err, AL_ENOMEM, "config.json: out of memory") : write_json(o, dir, err);
    json_decref(o);
    return rc;
}

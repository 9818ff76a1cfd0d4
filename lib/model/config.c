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
 * floats in their shortest form, so that parse(save(cfg)) == cfg. */
#include "config.h"

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
    CHECK_RANGE(c->n_layers, g ? "n_layer" : "num_hidden_layers", 1, CFG_MAX_COUNT);
    CHECK_RANGE(c->C, g ? "n_embd" : "hidden_size", 1, CFG_MAX_DIM);
    CHECK_RANGE(c->NH, g ? "n_head" : "num_attention_heads", 1, CFG_MAX_COUNT);
    CHECK_RANGE(c->NKV, "num_key_value_heads", 1, c->NH);
    CHECK_RANGE(c->HD, "head_dim", 1, CFG_MAX_COUNT);
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

static int get_float(const json_t *o, const char *key, float *out, char err[AL_ERRLEN]) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return AL_OK;
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return al_err(err, AL_EFORMAT, "config.json: %s: must be a number", key);
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

/* RoPE must be the plain kind: rope_scaling null/absent (or an explicit
 * "default" type), and transformers v5's rope_parameters likewise. */
static int check_rope(const json_t *o, al_model_config *c, char err[AL_ERRLEN]) {
    static const char *keys[2] = {"rope_scaling", "rope_parameters"};
    for (int i = 0; i < 2; i++) {
        const json_t *r = json_object_get(o, keys[i]);
        if (!r || json_is_null(r)) continue;
        if (!json_is_object(r))
            return al_err(err, AL_EUNSUP, "config.json: %s: only null is supported", keys[i]);
        const json_t *ty = json_object_get(r, "rope_type");
        if (!ty) ty = json_object_get(r, "type");
        if (!json_is_string(ty) || strcmp(json_string_value(ty), "default") != 0)
            return al_err(err, AL_EUNSUP,
                          "config.json: %s: RoPE scaling (%.40s) is not supported, only null",
                          keys[i], json_is_string(ty) ? json_string_value(ty) : "no rope_type");
        const json_t *th = json_object_get(r, "rope_theta");
        if (th) {
            if (!json_is_number(th) || !isfinite(json_number_value(th)))
                return al_err(err, AL_EFORMAT, "config.json: %s.rope_theta: must be a number",
                              keys[i]);
            c->rope_theta = (float)json_number_value(th);
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

static int parse_llama(const json_t *o, al_model_config *c, char err[AL_ERRLEN]) {
    int rc, present;
    const char *mt = c->model_type;
    if ((rc = req_int(o, "hidden_size", &c->C, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "num_hidden_layers", &c->n_layers, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "num_attention_heads", &c->NH, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "intermediate_size", &c->FF, err)) != AL_OK) return rc;
    if ((rc = req_int(o, "vocab_size", &c->V, err)) != AL_OK) return rc;
    c->NKV = c->NH;
    if ((rc = get_int(o, "num_key_value_heads", 1, &c->NKV, NULL, err)) != AL_OK) return rc;
    if ((rc = get_int(o, "head_dim", 1, &c->HD, &present, err)) != AL_OK) return rc;
    if (!present) {
        if (c->C % c->NH != 0)
            return al_err(err, AL_EFORMAT,
                          "config.json: num_attention_heads: %d does not divide hidden_size %d "
                          "(and head_dim is not given)",
                          c->NH, c->C);
        c->HD = c->C / c->NH;
    }
    /* transformers' class defaults for max_position_embeddings */
    c->max_T = strcmp(mt, "mistral") == 0 ? 4096 * 32 : strcmp(mt, "qwen2") == 0 ? 32768 : 2048;
    if ((rc = get_int(o, "max_position_embeddings", 1, &c->max_T, NULL, err)) != AL_OK) return rc;
    c->norm_eps = 1e-6f;
    if ((rc = get_float(o, "rms_norm_eps", &c->norm_eps, err)) != AL_OK) return rc;
    c->rope_theta = 10000.0f;
    if ((rc = get_float(o, "rope_theta", &c->rope_theta, err)) != AL_OK) return rc;
    if ((rc = check_rope(o, c, err)) != AL_OK) return rc;
    c->tie_word_embeddings = 0;
    if ((rc = get_bool(o, "tie_word_embeddings", &c->tie_word_embeddings, err)) != AL_OK) return rc;

    const json_t *act = json_object_get(o, "hidden_act");
    if (act && !json_is_null(act)) {
        if (!json_is_string(act))
            return al_err(err, AL_EFORMAT, "config.json: hidden_act: must be a string");
        const char *s = json_string_value(act);
        if (strcmp(s, "silu") != 0)
            return al_err(err, AL_EUNSUP, "config.json: hidden_act: %.40s is not supported (silu)",
                          s);
    }
    /* Biases as each transformers class hard-codes or configures them. */
    int ab = 0, mb = 0;
    if (strcmp(mt, "qwen2") == 0) {
        c->attn_bias = 1; /* Qwen2: q/k/v always biased, o_proj and MLP never */
        c->o_bias = 0;
        c->mlp_bias = 0;
    } else if (strcmp(mt, "mistral") == 0) {
        c->attn_bias = c->o_bias = c->mlp_bias = 0; /* MistralAttention/MLP: bias=False */
    } else {
        if ((rc = get_bool(o, "attention_bias", &ab, err)) != AL_OK) return rc;
        if ((rc = get_bool(o, "mlp_bias", &mb, err)) != AL_OK) return rc;
        c->attn_bias = c->o_bias = ab; /* Llama's attention_bias covers q, k, v and o_proj */
        c->mlp_bias = mb;
    }
    /* Mistral's sliding_window (and Qwen2's use_sliding_window) are accepted
     * whatever their value: we always attend over the full context, which is
     * exact because the contexts we train on are far below the window (4096
     * for Mistral-7B; Qwen2 ships with the window disabled). */
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
    } else if (strcmp(t, "llama") == 0 || strcmp(t, "mistral") == 0 || strcmp(t, "qwen2") == 0) {
        c.arch = AL_ARCH_LLAMA;
    } else {
        rc = al_err(err, AL_EUNSUP,
                    "config.json: model_type: %.40s is not supported (gpt2, llama, mistral, qwen2)",
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

/* "llama" -> "Llama", "qwen2" -> "Qwen2", "mistral" -> "Mistral". */
static const char *class_prefix(const char *mt) {
    if (strcmp(mt, "gpt2") == 0) return "GPT2";
    if (strcmp(mt, "mistral") == 0) return "Mistral";
    if (strcmp(mt, "qwen2") == 0) return "Qwen2";
    if (strcmp(mt, "llama") == 0) return "Llama";
    return NULL;
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
    /* Only what the model_type's transformers class can express. */
    if (gpt2 && !(cfg->attn_bias && cfg->o_bias && cfg->mlp_bias))
        return al_err(err, AL_EINVAL, "config: GPT-2 always has biases (attn_bias/o_bias/mlp_bias)");
    if (gpt2 && (cfg->NKV != cfg->NH || cfg->HD * cfg->NH != cfg->C))
        return al_err(err, AL_EINVAL, "config: GPT-2 heads must split n_embd evenly, without GQA");
    if (!strcmp(mt, "llama") && cfg->attn_bias != cfg->o_bias)
        return al_err(err, AL_EINVAL, "config: llama's attention_bias covers o_proj too "
                                      "(attn_bias != o_bias)");
    if (!strcmp(mt, "qwen2") && !(cfg->attn_bias && !cfg->o_bias && !cfg->mlp_bias))
        return al_err(err, AL_EINVAL, "config: qwen2 has q/k/v biases only");
    if (!strcmp(mt, "mistral") && (cfg->attn_bias || cfg->o_bias || cfg->mlp_bias))
        return al_err(err, AL_EINVAL, "config: mistral has no biases");

    char arch[96];
    int cls = cfg->has_score && !cfg->has_lm_head;
    snprintf(arch, sizeof arch, "%s%s", prefix,
             cls ? "ForSequenceClassification" : gpt2 ? "LMHeadModel" : "ForCausalLM");
    json_t *o = json_object();
    json_t *archs = json_array();
    if (!o || !archs) {
        json_decref(o);
        json_decref(archs);
        return al_err(err, AL_ENOMEM, "config.json: out of memory");
    }
    /* The _new setters take the reference even when they fail. */
    int bad = json_array_append_new(archs, json_string(arch));
    bad = json_object_set_new(o, "architectures", archs) || bad;
#define SET(k, v) bad = bad || json_object_set_new(o, k, v)
    SET("model_type", json_string(mt));
    SET("vocab_size", json_integer(cfg->V));
    SET("initializer_range", json_float(cfg->init_range));
    SET("tie_word_embeddings", json_boolean(cfg->tie_word_embeddings));
    SET("bos_token_id", json_token(cfg->bos_id));
    SET("eos_token_id", json_token(cfg->eos_id));
    if (cfg->pad_id >= 0) SET("pad_token_id", json_integer(cfg->pad_id));
    SET("torch_dtype", json_string(cfg->torch_dtype[0] ? cfg->torch_dtype : "float32"));
    if (gpt2) {
        SET("n_embd", json_integer(cfg->C));
        SET("n_layer", json_integer(cfg->n_layers));
        SET("n_head", json_integer(cfg->NH));
        SET("n_positions", json_integer(cfg->max_T));
        SET("n_inner", json_integer(cfg->FF));
        SET("layer_norm_epsilon", json_float(cfg->norm_eps));
        SET("activation_function", json_string("gelu_new"));
    } else {
        SET("hidden_size", json_integer(cfg->C));
        SET("num_hidden_layers", json_integer(cfg->n_layers));
        SET("num_attention_heads", json_integer(cfg->NH));
        SET("num_key_value_heads", json_integer(cfg->NKV));
        SET("head_dim", json_integer(cfg->HD));
        SET("intermediate_size", json_integer(cfg->FF));
        SET("max_position_embeddings", json_integer(cfg->max_T));
        SET("rms_norm_eps", json_float(cfg->norm_eps));
        SET("rope_theta", json_float(cfg->rope_theta));
        SET("rope_scaling", json_null());
        SET("hidden_act", json_string("silu"));
        if (!strcmp(mt, "llama")) {
            SET("attention_bias", json_boolean(cfg->attn_bias));
            SET("mlp_bias", json_boolean(cfg->mlp_bias));
        }
        if (!strcmp(mt, "qwen2")) SET("use_sliding_window", json_false());
    }
    if (cls) {
        /* transformers derives num_labels from id2label; write both. */
        json_t *id2 = json_object(), *l2i = json_object();
        for (int i = 0; id2 && l2i && !bad && i < cfg->num_labels; i++) {
            char k[32], v[32];
            snprintf(k, sizeof k, "%d", i);
            snprintf(v, sizeof v, "LABEL_%d", i);
            bad = json_object_set_new(id2, k, json_string(v)) ||
                  json_object_set_new(l2i, v, json_integer(i));
        }
        if (!id2 || !l2i || bad) {
            json_decref(id2);
            json_decref(l2i);
            bad = 1;
        } else {
            SET("id2label", id2);
            bad = json_object_set_new(o, "label2id", l2i) || bad;
        }
        SET("num_labels", json_integer(cfg->num_labels));
    }
#undef SET
    char *text = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) return al_err(err, AL_ENOMEM, "config.json: out of memory");
    char path[4096];
    if (al_path_join(path, sizeof path, dir, "config.json") != AL_OK) {
        free(text);
        return al_err(err, AL_ERANGE, "%.200s: path too long", dir);
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the NUL: write n + 1 bytes, no terminator needed */
    rc = al_file_write_atomic(path, text, n + 1, err);
    free(text);
    return rc;
}

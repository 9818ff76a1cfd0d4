/* The model families beyond Llama (issue 15): Qwen3, Gemma 2, Gemma 3 text,
 * Phi-3, OLMo-2, SmolLM3, Granite, Mistral's window and every RoPE type,
 * each on a tiny config parsed from config.json text with the family's
 * fields (window shorter than the batch, soft-caps small enough to bend):
 *   - gradients of the whole model (LM head with entropy; the scalar head;
 *     LoRA on Phi-3's fused qkv_proj / gate_up_proj) against central
 *     differences;
 *   - save and open give the same config and the same log-probs;
 *   - KV-cache generation picks each full forward's argmax and its
 *     log-prob;
 *   - config.json: the classes' defaults, and refusals naming the field.
 * Numerics against transformers are tests/hf_families.py's (via
 * test_hf_parity). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "model/config.h"
#include "model/model.h"
#include "model/model_impl.h"
#include "t.h"
#include "t_model.h"
#include "t_model_grad.h"

/* A tiny config.json of a family: C 8, 2 heads over 1 KV head of 4, FF 12,
 * V 11, context 24, plus the family's extras (JSON members, may be ""). */
static int family(al_model_config *c, const char *mt, int layers, const char *extras,
                  char err[AL_ERRLEN]) {
    char j[4096];
    snprintf(j, sizeof j,
             "{\"model_type\": \"%s\", \"hidden_size\": 8, \"num_hidden_layers\": %d,"
             " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 4,"
             " \"intermediate_size\": 12, \"vocab_size\": 11%s%s%s%s}",
             mt, layers,
             strstr(extras, "max_position_embeddings") ? "" : ", \"max_position_embeddings\": 24",
             strstr(extras, "initializer_range") ? "" : ", \"initializer_range\": 0.3",
             extras[0] ? ", " : "", extras);
    err[0] = 0;
    return al_config_parse(c, j, strlen(j), err);
}

typedef struct fam_case {
    const char *name, *mt;
    int layers;
    const char *extras;
} fam_case;

static const fam_case k_cases[] = {
    {"llama3_rope", "llama", 2,
     "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 4.0, \"low_freq_factor\": 1.0,"
     " \"high_freq_factor\": 2.0, \"original_max_position_embeddings\": 4}"},
    {"yarn", "qwen2", 2, "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2.0, "
                         "\"original_max_position_embeddings\": 4}"},
    {"dynamic", "llama", 2,
     "\"max_position_embeddings\": 3, \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 8.0}"},
    {"qwen3", "qwen3", 2, "\"use_sliding_window\": true, \"sliding_window\": 2, \"max_window_layers\": 1"},
    {"mistral_window", "mistral", 2, "\"sliding_window\": 2"},
    {"gemma2", "gemma2", 2,
     "\"query_pre_attn_scalar\": 6, \"sliding_window\": 2, \"final_logit_softcapping\": 1.5,"
     " \"attn_logit_softcapping\": 0.8"},
    {"gemma3_text", "gemma3_text", 3,
     "\"query_pre_attn_scalar\": 4, \"sliding_window\": 2, \"sliding_window_pattern\": 2,"
     " \"rope_local_base_freq\": 100.0, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2}"},
    {"phi3", "phi3", 2,
     "\"sliding_window\": 3, \"original_max_position_embeddings\": 4, \"rope_scaling\": {\"type\":"
     " \"longrope\", \"short_factor\": [1.0, 1.5], \"long_factor\": [2.0, 4.0]}"},
    /* OLMo-2 norms each branch output: a small output (init 0.3) curves too much for h = 5e-3 */
    {"olmo2", "olmo2", 2, "\"attention_bias\": true, \"initializer_range\": 0.8"},
    {"smollm3", "smollm3", 3, "\"no_rope_layers\": [1, 0, 1]"},
    {"granite", "granite", 2,
     "\"embedding_multiplier\": 3.0, \"residual_multiplier\": 0.5, \"attention_multiplier\": 0.3,"
     " \"logits_scaling\": 2.5, \"mlp_bias\": true"},
};
enum { N_CASES = sizeof k_cases / sizeof k_cases[0] };

/* Random norm weights around their centre (0 for Gemma's 1 + w) so that a
 * norm that ignored its weight, or its offset, would show. */
static void perturb_norms(al_model *m, uint64_t seed) {
    int np;
    al_param *ps = al_model_params(m, &np);
    for (int i = 0; i < np; i++)
        if (ps[i].ndim == 1 && strstr(ps[i].name, "norm")) {
            float base = ps[i].w[0];
            gc_fill(ps[i].w, ps[i].n, seed + (uint64_t)i, 0.3f);
            for (size_t k = 0; k < ps[i].n; k++) ps[i].w[k] += base;
        }
}

static void test_config_defaults(void) {
    char err[AL_ERRLEN];
    al_model_config c;
    /* Gemma 2: its class defaults */
    T_OK(family(&c, "gemma2", 4, "", err));
    T_TRUE(c.final_softcap == 30.0f && c.attn_softcap == 50.0f && c.window == 4096);
    T_TRUE(c.query_pre_attn_scalar == 256.0f && c.tie_word_embeddings == 1);
    T_TRUE(c.norm_offset && c.post_norm && c.act == AL_ACT_GELU_TANH);
    T_TRUE((c.layer_flags[0] & AL_LAYER_SLIDING) && !(c.layer_flags[1] & AL_LAYER_SLIDING));
    T_TRUE(c.embed_scale == (float)sqrt(8.0));
    /* Gemma 3: pattern 6 by default, local RoPE on the sliding layers */
    T_OK(family(&c, "gemma3_text", 7, "\"sliding_window\": 512", err));
    for (int l = 0; l < 7; l++)
        T_EQ_INT(!!(c.layer_flags[l] & AL_LAYER_SLIDING), (l + 1) % 6 != 0);
    T_TRUE(c.layer_flags[0] & AL_LAYER_LOCAL_ROPE);
    T_TRUE(c.rope_theta == 1e6f && c.rope_local_theta == 1e4f && c.final_softcap == 0.0f);
    /* transformers v5's per-layer-type rope_parameters */
    T_OK(family(&c, "gemma3_text", 2,
                "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", \"factor\": 8.0,"
                " \"rope_theta\": 1000000.0}, \"sliding_attention\": {\"rope_type\": \"default\","
                " \"rope_theta\": 10000.0}}", err));
    T_TRUE(c.rope.type == AL_ROPE_LINEAR && c.rope.factor == 8.0 && c.rope_local_theta == 1e4f);
    /* Qwen3: head_dim 128 and 32 KV heads unless given */
    const char *q3 = "{\"model_type\":\"qwen3\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                     "\"num_attention_heads\":32,\"intermediate_size\":64,\"vocab_size\":10}";
    T_OK(al_config_parse(&c, q3, strlen(q3), err));
    T_TRUE(c.HD == 128 && c.NKV == 32 && c.qk_norm == AL_QK_HEAD && c.window == 0);
    /* SmolLM3: every fourth layer without RoPE, tied */
    T_OK(family(&c, "smollm3", 8, "", err));
    for (int l = 0; l < 8; l++) T_EQ_INT(!!(c.layer_flags[l] & AL_LAYER_NOPE), (l + 1) % 4 == 0);
    T_TRUE(c.tie_word_embeddings == 1);
    /* Phi-3's legacy su/yarn names are longrope; Mistral's window defaults to 4096 */
    T_OK(family(&c, "phi3", 2, "\"rope_scaling\": {\"type\": \"su\", \"short_factor\": [1, 1],"
                               " \"long_factor\": [2, 3]}", err));
    T_TRUE(c.rope.type == AL_ROPE_LONGROPE && c.rope.orig_max == 4096 && c.fused_proj);
    T_OK(family(&c, "mistral", 2, "", err));
    T_TRUE(c.window == 4096 && (c.layer_flags[1] & AL_LAYER_SLIDING));
    /* dynamic NTK: tables up to factor times max_position_embeddings */
    T_OK(family(&c, "llama", 2, "\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}", err));
    T_TRUE(c.max_T == 48 && c.rope.orig_max == 24);
}

/* config.json files of released models, as published */
static const char *k_real[] = {
    /* google/gemma-3-1b-it */
    "{\"architectures\": [\"Gemma3ForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
    " \"attn_logit_softcapping\": null, \"bos_token_id\": 2, \"cache_implementation\": \"hybrid\","
    " \"eos_token_id\": [1, 106], \"final_logit_softcapping\": null, \"head_dim\": 256,"
    " \"hidden_activation\": \"gelu_pytorch_tanh\", \"hidden_size\": 1152, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 6912, \"max_position_embeddings\": 32768, \"model_type\": \"gemma3_text\","
    " \"num_attention_heads\": 4, \"num_hidden_layers\": 26, \"num_key_value_heads\": 1,"
    " \"pad_token_id\": 0, \"query_pre_attn_scalar\": 256, \"rms_norm_eps\": 1e-06,"
    " \"rope_local_base_freq\": 10000, \"rope_scaling\": null, \"rope_theta\": 1000000,"
    " \"sliding_window\": 512, \"sliding_window_pattern\": 6, \"torch_dtype\": \"bfloat16\","
    " \"transformers_version\": \"4.50.0.dev0\", \"use_cache\": true, \"vocab_size\": 262144}",
    /* Qwen/Qwen2.5-0.5B-Instruct with the YaRN block Qwen documents for long context */
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0, \"bos_token_id\": 151643,"
    " \"eos_token_id\": 151645, \"hidden_act\": \"silu\", \"hidden_size\": 896, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 4864, \"max_position_embeddings\": 32768, \"max_window_layers\": 21,"
    " \"model_type\": \"qwen2\", \"num_attention_heads\": 14, \"num_hidden_layers\": 24,"
    " \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0,"
    " \"sliding_window\": 32768, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
    " \"transformers_version\": \"4.43.1\", \"use_cache\": true, \"use_sliding_window\": false,"
    " \"vocab_size\": 151936, \"rope_scaling\": {\"factor\": 4.0, \"original_max_position_embeddings\":"
    " 32768, \"type\": \"yarn\"}}",
    /* microsoft/Phi-3-mini-4k-instruct */
    "{\"_name_or_path\": \"Phi-3-mini-4k-instruct\", \"architectures\": [\"Phi3ForCausalLM\"],"
    " \"attention_dropout\": 0.0, \"auto_map\": {\"AutoConfig\": \"configuration_phi3.Phi3Config\"},"
    " \"bos_token_id\": 1, \"embd_pdrop\": 0.0, \"eos_token_id\": 32000, \"hidden_act\": \"silu\","
    " \"hidden_size\": 3072, \"initializer_range\": 0.02, \"intermediate_size\": 8192,"
    " \"max_position_embeddings\": 4096, \"model_type\": \"phi3\", \"num_attention_heads\": 32,"
    " \"num_hidden_layers\": 32, \"num_key_value_heads\": 32, \"original_max_position_embeddings\": 4096,"
    " \"pad_token_id\": 32000, \"resid_pdrop\": 0.0, \"rms_norm_eps\": 1e-05, \"rope_scaling\": null,"
    " \"rope_theta\": 10000.0, \"sliding_window\": 2047, \"tie_word_embeddings\": false,"
    " \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.40.2\", \"use_cache\": true,"
    " \"attention_bias\": false, \"vocab_size\": 32064}",
};

static void test_real_configs(void) {
    char err[AL_ERRLEN];
    al_model_config c;
    T_OK(al_config_parse(&c, k_real[0], strlen(k_real[0]), err));
    T_TRUE(c.HD == 256 && c.NKV == 1 && c.window == 512 && c.eos_id == 1 && c.final_softcap == 0);
    T_TRUE((c.layer_flags[4] & AL_LAYER_SLIDING) && !(c.layer_flags[5] & AL_LAYER_SLIDING));
    T_OK(al_config_parse(&c, k_real[1], strlen(k_real[1]), err));
    T_TRUE(c.rope.type == AL_ROPE_YARN && c.rope.factor == 4.0 && c.rope.orig_max == 32768);
    T_TRUE(c.window == 0 && c.attn_bias && !c.o_bias);
    T_OK(al_config_parse(&c, k_real[2], strlen(k_real[2]), err));
    T_TRUE(c.fused_proj && c.window == 2047 && (c.layer_flags[31] & AL_LAYER_SLIDING) && c.pad_id == 32000);
}

static void bad(const char *mt, const char *extras, int rc, const char *want) {
    char err[AL_ERRLEN];
    al_model_config c;
    int got = family(&c, mt, 2, extras, err);
    T_EQ_INT(got, rc);
    if (!strstr(err, want)) fprintf(stderr, "  err = \"%s\", wanted \"%s\"\n", err, want);
    T_TRUE(strstr(err, want) != NULL);
}

static void test_config_refusals(void) {
    bad("gemma", "", AL_EUNSUP, "model_type: gemma is not supported");
    bad("gemma3", "", AL_EUNSUP, "model_type: gemma3 is not supported");
    bad("llama", "\"quantization_config\": {\"bits\": 4}", AL_EUNSUP, "quantization_config");
    bad("qwen2", "\"use_mrope\": true", AL_EUNSUP, "use_mrope");
    bad("llama", "\"rope_interleaved\": true", AL_EUNSUP, "rope_interleaved");
    bad("llama", "\"rope_scaling\": {\"rope_type\": \"mrope\", \"mrope_section\": [1]}", AL_EUNSUP,
        "RoPE type mrope");
    bad("llama", "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2, \"extra\": 1}",
        AL_EUNSUP, "rope_scaling.extra");
    bad("llama", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}", AL_EFORMAT,
        "low_freq_factor");
    bad("phi3", "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1], \"long_factor\": [1]}",
        AL_EFORMAT, "short_factor: 1 entries, head_dim / 2 is 2");
    bad("phi3", "\"partial_rotary_factor\": 0.75", AL_EUNSUP, "partial_rotary_factor");
    bad("phi3", "\"resid_pdrop\": 0.1", AL_EUNSUP, "resid_pdrop");
    bad("gemma3_text", "\"attn_logit_softcapping\": 50.0", AL_EUNSUP, "attn_logit_softcapping");
    bad("gemma3_text", "\"use_bidirectional_attention\": true", AL_EUNSUP, "use_bidirectional_attention");
    bad("gemma2", "\"hidden_activation\": \"gelu\"", AL_EUNSUP, "hidden_activation");
    bad("gemma2", "\"final_logit_softcapping\": -1", AL_EFORMAT, "final_logit_softcapping");
    bad("qwen2", "\"layer_types\": [\"full_attention\", \"chunked_attention\"]", AL_EUNSUP,
        "layer_types[1]");
    bad("smollm3", "\"no_rope_layers\": [1]", AL_EFORMAT, "no_rope_layers");
    bad("qwen3", "\"mlp_bias\": true", AL_EUNSUP, "mlp_bias");
    /* off values of unknown keys are harmless */
    char err[AL_ERRLEN];
    al_model_config c;
    T_OK(family(&c, "llama", 2, "\"use_mrope\": false, \"foo\": null, \"bar\": 0", err));
}

/* Gradients of each family: the LM head (log-prob and entropy terms), and
 * with a scalar head (reward model / critic). */
static void test_family_gradients(void) {
    char err[AL_ERRLEN];
    for (int i = 0; i < N_CASES; i++) {
        al_model_config c;
        T_OK(family(&c, k_cases[i].mt, k_cases[i].layers, k_cases[i].extras, err));
        if (err[0]) fprintf(stderr, "%s: %s\n", k_cases[i].name, err);
        al_model *m = al_model_new(&c, NULL, err);
        T_TRUE(m != NULL);
        if (!m) continue;
        al_model_init(m, 70 + (uint64_t)i);
        perturb_norms(m, 170 + (uint64_t)i);
        check_grads(k_cases[i].name, m, 1, 0, 0);
        al_model_free(m);
        c.has_score = 1;
        c.num_labels = 1;
        c.has_lm_head = 0;
        m = al_model_new(&c, NULL, err);
        al_model_init(m, 90 + (uint64_t)i);
        perturb_norms(m, 190 + (uint64_t)i);
        char what[64];
        snprintf(what, sizeof what, "%s+head", k_cases[i].name);
        check_grads(what, m, 0, 1, 0);
        al_model_free(m);
    }
}

/* LoRA on Phi-3's fused modules, under PEFT's names. */
static void test_phi3_lora(void) {
    char err[AL_ERRLEN];
    al_model_config c;
    T_OK(family(&c, "phi3", 2, "\"sliding_window\": 3", err));
    al_lora_cfg lc = {.r = 2, .alpha = 4.0f};
    snprintf(lc.targets, sizeof lc.targets, "qkv_proj,gate_up_proj");
    al_model *m = al_model_new(&c, &lc, err);
    T_TRUE(m != NULL);
    if (!m) return;
    al_model_init(m, 31);
    int np, n_lora = 0;
    al_param *ps = al_model_params(m, &np);
    for (int i = 0; i < np; i++)
        if (ps[i].lora) {
            n_lora++;
            gc_fill(ps[i].w, ps[i].n, 300 + (uint64_t)i, 0.5f);
            T_TRUE(strstr(ps[i].name, "qkv_proj.lora_") || strstr(ps[i].name, "gate_up_proj.lora_"));
        }
    T_EQ_INT(n_lora, 2 * 2 * 2);
    T_TRUE(al_model_params(m, &np)[1].name[0] != 0);
    check_grads("phi3 lora", m, 1, 0, 0);
    al_model_free(m);
}

static void logprobs_of(al_model *m, const int32_t *ids, int T, float *lp) {
    char err[AL_ERRLEN];
    int32_t tgt[24];
    for (int t = 0; t < T; t++) tgt[t] = t + 1 < T ? ids[t + 1] : -1;
    T_OK(al_model_reserve(m, 1, T, 0, err));
    al_tokens in = {.B = 1, .T = T, .ids = ids, .targets = tgt};
    al_fwd f = {.logp = lp};
    T_OK(al_model_forward(m, &in, &f));
}

/* Save and open: the same config bits, the same tensors, the same log-probs. */
static void test_family_save_load(void) {
    char err[AL_ERRLEN], dir[1200];
    const int32_t ids[12] = {1, 4, 7, 2, 9, 3, 10, 5, 6, 8, 0, 4};
    for (int i = 0; i < N_CASES; i++) {
        al_model_config c;
        T_OK(family(&c, k_cases[i].mt, k_cases[i].layers, k_cases[i].extras, err));
        al_model *m = al_model_new(&c, NULL, err);
        al_model_init(m, 5 + (uint64_t)i);
        perturb_norms(m, 55 + (uint64_t)i);
        snprintf(dir, sizeof dir, "%s/%s", t_tmpdir(), k_cases[i].name);
        T_OK(al_model_save(m, dir, err));
        al_model *r = NULL;
        int rc = al_model_open(&r, dir, NULL, err);
        T_OK(rc);
        if (rc) {
            fprintf(stderr, "%s: %s\n", k_cases[i].name, err);
            al_model_free(m);
            continue;
        }
        const al_model_config *rc_ = al_model_config_of(r);
        T_TRUE(memcmp(rc_, al_model_config_of(m), sizeof c) == 0);
        float a[12], b[12];
        logprobs_of(m, ids, 12, a);
        logprobs_of(r, ids, 12, b);
        T_TRUE(memcmp(a, b, sizeof a) == 0);
        al_model_free(m);
        al_model_free(r);
    }
}

/* Every tensor's storage (w, h) of two models, the same bits; a tensor
 * held (in, out) (al_param.wt) compared in nn.Linear's layout. *n_wt: the
 * tensors a holds (in, out). */
static int same_weights(al_model *a, al_model *b, int *n_wt) {
    int na, nb, same = 1;
    al_param *x = al_model_params(a, &na), *y = al_model_params(b, &nb);
    if (na != nb) return 0;
    *n_wt = 0;
    for (int i = 0; i < na; i++) {
        same &= !x[i].w == !y[i].w && !x[i].h == !y[i].h;
        *n_wt += x[i].wt;
        if (same && (x[i].wt || y[i].wt)) {
            same &= t_param_same_rows(&x[i], &y[i]);
            continue;
        }
        if (same && x[i].w) same &= memcmp(x[i].w, y[i].w, x[i].n * sizeof(float)) == 0;
        if (same && x[i].h) same &= memcmp(x[i].h, y[i].h, x[i].n * sizeof(uint16_t)) == 0;
    }
    return same;
}

/* 1 when two files hold the same bytes. */
static int same_file(const char *p, const char *q) {
    FILE *a = fopen(p, "rb"), *b = fopen(q, "rb");
    int same = a && b, x = 0, y = 0;
    while (same && (x = fgetc(a), y = fgetc(b), x == y) && x != EOF) {
    }
    same = same && x == y;
    if (a) fclose(a);
    if (b) fclose(b);
    return same;
}

/* Frozen tensors served from the file's mapping (AL_OPEN_COPY unset) are
 * the bits the copying loader gives, for each family (Llama's q|k|v are
 * copied, gate|up served: a fused run must be back to back in the file),
 * from F32 and BF16 files in fp32 and bf16 modes; forwards, a LoRA
 * backward and generation write none of the file's pages; a model saved
 * (merged) into the folder its base is served from leaves the live model
 * intact and reloads. GPT-2's Conv1D weights keep the file's (in, out)
 * layout there (served, or rounded to bf16 without the transpose): the
 * same values, log-probs within fp32 (bf16) rounding of the copying
 * loader's, and saved back as the file had them, byte for byte. */
static void test_family_served(void) {
    char err[AL_ERRLEN], dir[2][1200];
    const int32_t ids[12] = {1, 4, 7, 2, 9, 3, 10, 5, 6, 8, 0, 4};
    static const char *gpt2 = "{\"model_type\": \"gpt2\", \"n_embd\": 8, \"n_layer\": 2, \"n_head\": 2,"
                              " \"vocab_size\": 11, \"n_positions\": 24}";
    for (int i = 0; i <= N_CASES; i++) {
        al_model_config c;
        const char *name = i < N_CASES ? k_cases[i].name : "gpt2";
        if (i < N_CASES) T_OK(family(&c, k_cases[i].mt, k_cases[i].layers, k_cases[i].extras, err));
        else T_OK(al_config_parse(&c, gpt2, strlen(gpt2), err));
        al_model *m = al_model_new(&c, NULL, err);
        al_model_init(m, 7 + (uint64_t)i);
        perturb_norms(m, 77 + (uint64_t)i);
        for (int f = 0; f < 2; f++) {
            snprintf(dir[f], sizeof dir[f], "%s/served_%s_%d", t_tmpdir(), name, f);
            al_model_set_save_dtype(m, f ? AL_DT_BF16 : AL_DT_F32);
            T_OK(al_model_save(m, dir[f], err));
        }
        for (int f = 0; f < 2; f++)
            for (int bf = 0; bf < 2; bf++) {
                int fl = AL_OPEN_FROZEN | (bf ? AL_OPEN_BF16 : 0);
                al_model *s = NULL, *k = NULL;
                T_OK(al_model_open_ex(&s, dir[f], NULL, fl, 0, err));
                T_OK(al_model_open_ex(&k, dir[f], NULL, fl | AL_OPEN_COPY, 0, err));
                if (!s || !k) {
                    fprintf(stderr, "%s: %s\n", name, err);
                    al_model_free(s);
                    al_model_free(k);
                    continue;
                }
                /* F32 serves fp32 tensors in either mode; BF16 serves bf16 matrices */
                T_EQ_INT(s->n_maps, !f || bf);
                T_EQ_INT(k->n_maps, 0);
                int n_wt = -1, k_wt = -1;
                T_TRUE(same_weights(s, k, &n_wt));
                T_TRUE(same_weights(k, s, &k_wt));
                T_EQ_INT(n_wt, i < N_CASES ? 0 : 4 * c.n_layers);
                T_EQ_INT(k_wt, 0);
                float a[12], b[12];
                logprobs_of(s, ids, 12, a);
                logprobs_of(k, ids, 12, b);
                if (!n_wt) T_TRUE(memcmp(a, b, sizeof a) == 0);
                for (int t = 0; n_wt && t < 11; t++) T_NEAR(a[t], b[t], bf ? 2e-3 : 1e-5);
                if (n_wt && (bf == f)) { /* held as the file has them: saved back byte for byte */
                    char sdir[1300], p0[1300], p1[1400];
                    snprintf(sdir, sizeof sdir, "%.1000s/resaved_%.100s_%d", t_tmpdir(), name, f);
                    T_OK(al_model_save(s, sdir, err));
                    snprintf(p0, sizeof p0, "%.1199s/model.safetensors", dir[f]);
                    snprintf(p1, sizeof p1, "%.1299s/model.safetensors", sdir);
                    T_TRUE(same_file(p0, p1));
                }
                int32_t out[4];
                int plen = 5, len;
                const int32_t *pr = ids;
                al_gen_cfg g = {.max_new = 4, .temperature = 0.0f};
                al_rng rng;
                al_rng_seed(&rng, 3);
                T_OK(al_generate(s, &pr, &plen, 1, &g, &rng, out, NULL, &len, err));
                if (s->n_maps) T_EQ_INT(t_anon_kb(s->maps[0]), 0);
                al_model_free(s);
                al_model_free(k);
            }
        /* LoRA on a served base: train a step's backward, save merged into
         * the very folder the base is served from, reload */
        al_lora_cfg lc = {.r = 2, .alpha = 4.0f};
        snprintf(lc.targets, sizeof lc.targets, "all-linear");
        al_model *lm = NULL;
        T_OK(al_model_open(&lm, dir[0], &lc, err));
        if (lm) {
            int np;
            al_param *lp = al_model_params(lm, &np);
            for (int q = 0; q < np; q++)
                if (lp[q].lora) gc_fill(lp[q].w, lp[q].n, 900 + (uint64_t)q, 0.3f);
            float a[12], b[12], d[12], dl[12];
            for (int t = 0; t < 12; t++) dl[t] = 1.0f;
            logprobs_of(lm, ids, 12, a);
            int32_t tgt[12];
            for (int t = 0; t < 12; t++) tgt[t] = t + 1 < 12 ? ids[t + 1] : -1;
            al_tokens in = {.B = 1, .T = 12, .ids = ids, .targets = tgt};
            T_OK(al_model_backward(lm, &in, dl, NULL, NULL));
            T_TRUE(lm->n_maps == 1 && t_anon_kb(lm->maps[0]) == 0);
            T_OK(al_model_save(lm, dir[0], err));
            logprobs_of(lm, ids, 12, b);
            T_TRUE(memcmp(a, b, sizeof a) == 0);
            al_model *r = NULL;
            T_OK(al_model_open_ex(&r, dir[0], NULL, AL_OPEN_FROZEN, 0, err));
            if (r) {
                logprobs_of(r, ids, 12, d);
                for (int t = 0; t < 11; t++) T_NEAR(a[t], d[t], 1e-5);
            }
            al_model_free(r);
        }
        al_model_free(lm);
        al_model_free(m);
    }
}

/* KV-cache generation (window, soft-caps, local/NoPE layers, LongRoPE
 * crossing its original context) picks what full forwards pick. Dynamic
 * NTK is left out: there transformers' cache keeps each key rotated with the
 * frequencies of its own step, which a full forward does not reproduce
 * (hf_families.py compares it with transformers' cached loop). */
static void test_family_generation(void) {
    char err[AL_ERRLEN];
    for (int i = 0; i < N_CASES; i++) {
        al_model_config c;
        T_OK(family(&c, k_cases[i].mt, k_cases[i].layers, k_cases[i].extras, err));
        if (c.rope.type == AL_ROPE_DYNAMIC) continue;
        al_model *m = al_model_new(&c, NULL, err);
        al_model_init(m, 77 + (uint64_t)i);
        perturb_norms(m, 177 + (uint64_t)i);
        int32_t prompt[3] = {1, 2, 3};
        const int32_t *pr[1] = {prompt};
        int plen[1] = {3}, len[1];
        enum { NEW = 9 };
        int32_t out[NEW];
        float lps[NEW];
        al_gen_cfg g = {.max_new = NEW, .temperature = 0, .top_p = 1};
        al_rng rng;
        al_rng_seed(&rng, 1);
        T_OK(al_generate(m, pr, plen, 1, &g, &rng, out, lps, len, err));
        int32_t seq[24];
        memcpy(seq, prompt, sizeof prompt);
        int n = 3, agree = 1;
        double maxdiff = 0;
        for (int s = 0; s < len[0]; s++) {
            /* the log-prob of every candidate after the prefix (a forward
             * of the prefix alone, as the pass that picked it) */
            float best = -1e30f, lp_of_out = 0;
            int arg = -1;
            T_OK(al_model_reserve(m, 1, n, 0, err));
            for (int v = 0; v < c.V; v++) {
                int32_t tgt[24];
                for (int t = 0; t < n; t++) tgt[t] = -1;
                tgt[n - 1] = v;
                float lp[24];
                al_tokens in = {.B = 1, .T = n, .ids = seq, .targets = tgt};
                al_fwd f = {.logp = lp};
                T_OK(al_model_forward(m, &in, &f));
                if (lp[n - 1] > best) best = lp[n - 1], arg = v;
                if (v == out[s]) lp_of_out = lp[n - 1];
            }
            agree &= arg == out[s];
            if (fabs(lp_of_out - lps[s]) > maxdiff) maxdiff = fabs(lp_of_out - lps[s]);
            seq[n++] = out[s];
        }
        if (!agree || maxdiff > 1e-5)
            fprintf(stderr, "%s: generation agree %d, max logp diff %g\n", k_cases[i].name, agree,
                    maxdiff);
        T_TRUE(agree);
        T_TRUE(maxdiff <= 1e-5);
        al_model_free(m);
    }
}

int main(void) {
    al_pool_init(2);
    test_config_defaults();
    test_real_configs();
    test_config_refusals();
    test_family_gradients();
    test_phi3_lora();
    test_family_save_load();
    test_family_served();
    test_family_generation();
    al_pool_shutdown();
    return t_done();
}

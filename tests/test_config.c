/* config.json: real-world configs (GPT-2, TinyLlama, SmolLM, Qwen2, Mistral)
 * parse to the right shapes; every refusal names its field; save -> load
 * gives back the same struct; validate catches inconsistent structs. */
#include <jansson.h>

#include "io.h"
#include "model/config.h"
#include "t.h"

static int contains(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }
static int fbits_eq(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* openai-community/gpt2 config.json */
static const char *k_gpt2 =
    "{\n"
    "  \"activation_function\": \"gelu_new\",\n"
    "  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n"
    "  \"attn_pdrop\": 0.1,\n  \"bos_token_id\": 50256,\n  \"embd_pdrop\": 0.1,\n"
    "  \"eos_token_id\": 50256,\n  \"initializer_range\": 0.02,\n"
    "  \"layer_norm_epsilon\": 1e-05,\n  \"model_type\": \"gpt2\",\n  \"n_ctx\": 1024,\n"
    "  \"n_embd\": 768,\n  \"n_head\": 12,\n  \"n_layer\": 12,\n  \"n_positions\": 1024,\n"
    "  \"resid_pdrop\": 0.1,\n  \"summary_activation\": null,\n"
    "  \"summary_first_dropout\": 0.1,\n  \"summary_proj_to_labels\": true,\n"
    "  \"summary_type\": \"cls_index\",\n  \"summary_use_proj\": true,\n"
    "  \"task_specific_params\": {\n    \"text-generation\": {\n      \"do_sample\": true,\n"
    "      \"max_length\": 50\n    }\n  },\n"
    "  \"vocab_size\": 50257\n}\n";

/* TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json */
static const char *k_tinyllama =
    "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
    "  \"hidden_act\": \"silu\",\n  \"hidden_size\": 2048,\n  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 5632,\n  \"max_position_embeddings\": 2048,\n"
    "  \"model_type\": \"llama\",\n  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 22,\n  \"num_key_value_heads\": 4,\n  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n  \"rope_scaling\": null,\n  \"rope_theta\": 10000.0,\n"
    "  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.35.0\",\n  \"use_cache\": true,\n"
    "  \"vocab_size\": 32000\n}\n";

/* HuggingFaceTB/SmolLM-135M config.json (tied embeddings, 9 heads over 3 KV heads) */
static const char *k_smollm =
    "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 0,\n  \"eos_token_id\": 0,\n"
    "  \"hidden_act\": \"silu\",\n  \"hidden_size\": 576,\n  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 1536,\n  \"max_position_embeddings\": 2048,\n"
    "  \"model_type\": \"llama\",\n  \"num_attention_heads\": 9,\n  \"num_hidden_layers\": 30,\n"
    "  \"num_key_value_heads\": 3,\n  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": null,\n  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"float32\",\n  \"transformers_version\": \"4.40.1\",\n"
    "  \"use_cache\": true,\n  \"vocab_size\": 49152\n}\n";

/* HuggingFaceTB/SmolLM2-135M: explicit head_dim, integer rope_theta, mlp_bias */
static const char *k_smollm2 =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
    " \"attention_dropout\": 0.0, \"bos_token_id\": 0, \"eos_token_id\": 0, \"head_dim\": 64,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 576, \"initializer_range\": 0.041666666666666664,"
    " \"intermediate_size\": 1536, \"is_llama_config\": true, \"max_position_embeddings\": 8192,"
    " \"mlp_bias\": false, \"model_type\": \"llama\", \"num_attention_heads\": 9,"
    " \"num_hidden_layers\": 30, \"num_key_value_heads\": 3, \"pretraining_tp\": 1,"
    " \"rms_norm_eps\": 1e-05, \"rope_interleaved\": false, \"rope_scaling\": null,"
    " \"rope_theta\": 100000, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
    " \"transformers_version\": \"4.40.1\", \"use_cache\": true, \"vocab_size\": 49152}";

/* Qwen/Qwen2-0.5B config.json */
static const char *k_qwen2 =
    "{\n  \"architectures\": [\"Qwen2ForCausalLM\"],\n  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 151643,\n  \"eos_token_id\": 151643,\n  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 896,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": 4864,\n"
    "  \"max_position_embeddings\": 131072,\n  \"max_window_layers\": 24,\n"
    "  \"model_type\": \"qwen2\",\n  \"num_attention_heads\": 14,\n  \"num_hidden_layers\": 24,\n"
    "  \"num_key_value_heads\": 2,\n  \"rms_norm_eps\": 1e-06,\n  \"rope_theta\": 1000000.0,\n"
    "  \"sliding_window\": 131072,\n  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n  \"transformers_version\": \"4.40.1\",\n"
    "  \"use_cache\": true,\n  \"use_sliding_window\": false,\n  \"vocab_size\": 151936\n}\n";

/* mistralai/Mistral-7B-v0.1 config.json */
static const char *k_mistral =
    "{\n  \"architectures\": [\"MistralForCausalLM\"],\n  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": 4096,\n"
    "  \"initializer_range\": 0.02,\n  \"intermediate_size\": 14336,\n"
    "  \"max_position_embeddings\": 32768,\n  \"model_type\": \"mistral\",\n"
    "  \"num_attention_heads\": 32,\n  \"num_hidden_layers\": 32,\n"
    "  \"num_key_value_heads\": 8,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n"
    "  \"sliding_window\": 4096,\n  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n  \"transformers_version\": \"4.34.0.dev0\",\n"
    "  \"use_cache\": true,\n  \"vocab_size\": 32000\n}\n";

/* meta-llama/Llama-3.2-1B: llama3 RoPE scaling and a list of eos ids */
static const char *k_llama32 =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
    " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009], \"head_dim\": 64,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 2048, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 8192, \"max_position_embeddings\": 131072, \"mlp_bias\": false,"
    " \"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 16,"
    " \"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-05,"
    " \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
    " \"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"vocab_size\": 128256}";

static int parse(al_model_config *c, const char *json, char err[AL_ERRLEN]) {
    err[0] = '\0';
    return al_config_parse(c, json, strlen(json), err);
}

/* Replaces the first `from` in src with `to` (for error variants). */
static char *subst(const char *src, const char *from, const char *to) {
    static char bufs[2][8192]; /* two, so that subst(subst(..)) does not overlap */
    static int k;
    char *buf = bufs[k ^= 1];
    const char *p = strstr(src, from);
    if (!p) {
        fprintf(stderr, "subst: '%s' not found\n", from);
        exit(2);
    }
    snprintf(buf, sizeof bufs[0], "%.*s%s%s", (int)(p - src), src, to, p + strlen(from));
    return buf;
}

static void test_real_configs(void) {
    char err[AL_ERRLEN];
    al_model_config c;

    T_OK(parse(&c, k_gpt2, err));
    T_EQ_INT(c.arch, AL_ARCH_GPT2);
    T_STR_EQ(c.model_type, "gpt2");
    T_EQ_INT(c.C, 768);
    T_EQ_INT(c.n_layers, 12);
    T_EQ_INT(c.NH, 12);
    T_EQ_INT(c.NKV, 12);
    T_EQ_INT(c.HD, 64);
    T_EQ_INT(c.FF, 3072); /* n_inner absent -> 4 * n_embd */
    T_EQ_INT(c.V, 50257);
    T_EQ_INT(c.max_T, 1024);
    T_EQ_INT(fbits_eq(c.norm_eps, 1e-5f), 1);
    T_NEAR(c.init_range, 0.02, 1e-9);
    T_EQ_INT(c.tie_word_embeddings, 1);
    T_EQ_INT(c.attn_bias && c.o_bias && c.mlp_bias, 1);
    T_EQ_INT(c.has_lm_head, 1);
    T_EQ_INT(c.has_score, 0);
    T_EQ_INT(c.bos_id, 50256);
    T_EQ_INT(c.eos_id, 50256);
    T_EQ_INT(c.pad_id, -1);
    T_OK(al_config_validate(&c, err));

    T_OK(parse(&c, k_tinyllama, err));
    T_EQ_INT(c.arch, AL_ARCH_LLAMA);
    T_STR_EQ(c.model_type, "llama");
    T_EQ_INT(c.C, 2048);
    T_EQ_INT(c.n_layers, 22);
    T_EQ_INT(c.NH, 32);
    T_EQ_INT(c.NKV, 4);
    T_EQ_INT(c.HD, 64);
    T_EQ_INT(c.FF, 5632);
    T_EQ_INT(c.V, 32000);
    T_EQ_INT(c.max_T, 2048);
    T_EQ_INT(fbits_eq(c.norm_eps, 1e-5f), 1);
    T_EQ_INT(fbits_eq(c.rope_theta, 10000.0f), 1);
    T_EQ_INT(c.tie_word_embeddings, 0);
    T_EQ_INT(c.attn_bias + c.o_bias + c.mlp_bias, 0);
    T_EQ_INT(c.bos_id, 1);
    T_EQ_INT(c.eos_id, 2);
    T_EQ_INT(c.pad_id, -1);
    T_EQ_INT(c.has_lm_head, 1);
    /* the chat model's config also carries pad_token_id 0 */
    T_OK(parse(&c, subst(k_tinyllama, "\"pretraining_tp\"", "\"pad_token_id\": 0, \"pretraining_tp\""),
               err));
    T_EQ_INT(c.pad_id, 0);

    T_OK(parse(&c, k_smollm, err));
    T_EQ_INT(c.C, 576);
    T_EQ_INT(c.n_layers, 30);
    T_EQ_INT(c.NH, 9);
    T_EQ_INT(c.NKV, 3);
    T_EQ_INT(c.HD, 64);
    T_EQ_INT(c.FF, 1536);
    T_EQ_INT(c.V, 49152);
    T_EQ_INT(c.tie_word_embeddings, 1);
    T_EQ_INT(c.bos_id, 0);
    T_EQ_INT(c.eos_id, 0);

    T_OK(parse(&c, k_smollm2, err));
    T_EQ_INT(c.HD, 64);
    T_EQ_INT(c.max_T, 8192);
    T_EQ_INT(fbits_eq(c.rope_theta, 100000.0f), 1);
    T_EQ_INT(fbits_eq(c.init_range, (float)0.041666666666666664), 1);
    T_EQ_INT(c.tie_word_embeddings, 1);

    T_OK(parse(&c, k_qwen2, err));
    T_STR_EQ(c.model_type, "qwen2");
    T_EQ_INT(c.arch, AL_ARCH_LLAMA);
    T_EQ_INT(c.C, 896);
    T_EQ_INT(c.n_layers, 24);
    T_EQ_INT(c.NH, 14);
    T_EQ_INT(c.NKV, 2);
    T_EQ_INT(c.HD, 64);
    T_EQ_INT(c.FF, 4864);
    T_EQ_INT(c.V, 151936);
    T_EQ_INT(c.max_T, 131072);
    T_EQ_INT(fbits_eq(c.norm_eps, 1e-6f), 1);
    T_EQ_INT(fbits_eq(c.rope_theta, 1e6f), 1);
    T_EQ_INT(c.tie_word_embeddings, 1);
    T_EQ_INT(c.attn_bias, 1); /* q/k/v biased */
    T_EQ_INT(c.o_bias, 0);
    T_EQ_INT(c.mlp_bias, 0);
    T_EQ_INT(c.bos_id, 151643);
    T_EQ_INT(c.eos_id, 151643);

    T_OK(parse(&c, k_mistral, err));
    T_STR_EQ(c.model_type, "mistral");
    T_EQ_INT(c.C, 4096);
    T_EQ_INT(c.n_layers, 32);
    T_EQ_INT(c.NH, 32);
    T_EQ_INT(c.NKV, 8);
    T_EQ_INT(c.HD, 128);
    T_EQ_INT(c.FF, 14336);
    T_EQ_INT(c.V, 32000);
    T_EQ_INT(c.max_T, 32768);
    T_EQ_INT(c.tie_word_embeddings, 0);
    T_EQ_INT(c.attn_bias + c.o_bias + c.mlp_bias, 0);
    /* sliding_window null is accepted too */
    T_OK(parse(&c, subst(k_mistral, "\"sliding_window\": 4096", "\"sliding_window\": null"), err));

    /* Llama 3.2: llama3 RoPE scaling, and the eos list gives its first id */
    T_OK(parse(&c, k_llama32, err));
    T_EQ_INT(c.rope.type, AL_ROPE_LLAMA3);
    T_TRUE(c.rope.factor == 32.0 && c.rope.low_freq_factor == 1.0 && c.rope.high_freq_factor == 4.0);
    T_EQ_INT(c.rope.orig_max, 8192);
    const char *rs = strstr(k_llama32, "\"rope_scaling\"");
    const char *re = strstr(rs, "}, ") + 3;
    char noscale[4096];
    snprintf(noscale, sizeof noscale, "%.*s%s", (int)(rs - k_llama32), k_llama32, re);
    T_OK(parse(&c, noscale, err));
    T_EQ_INT(c.eos_id, 128001);
    T_EQ_INT(c.bos_id, 128000);
    T_EQ_INT(c.HD, 64);
    T_EQ_INT(c.tie_word_embeddings, 1);
    T_EQ_INT(fbits_eq(c.rope_theta, 500000.0f), 1);
}

static void test_defaults_and_heads(void) {
    char err[AL_ERRLEN];
    al_model_config c;
    /* Minimal configs: transformers' defaults fill in the rest. */
    T_OK(parse(&c, "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                   "\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":100}",
               err));
    T_EQ_INT(c.NKV, 4); /* num_key_value_heads defaults to num_attention_heads */
    T_EQ_INT(c.HD, 16);
    T_EQ_INT(c.max_T, 2048);
    T_EQ_INT(fbits_eq(c.norm_eps, 1e-6f), 1);
    T_EQ_INT(fbits_eq(c.rope_theta, 10000.0f), 1);
    T_EQ_INT(c.tie_word_embeddings, 0);
    T_EQ_INT(c.has_lm_head, 1);
    T_EQ_INT(c.bos_id, -1);
    T_EQ_INT(c.eos_id, -1);
    T_NEAR(c.init_range, 0.02, 1e-9);
    /* head_dim overrides hidden/heads (Mistral-Nemo style) */
    T_EQ_INT(parse(&c, "{\"model_type\":\"mistral\",\"hidden_size\":80,\"num_hidden_layers\":1,"
                       "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,"
                       "\"intermediate_size\":128,\"vocab_size\":100,\"head_dim\":16}",
                   err),
             AL_EFORMAT); /* duplicate key: refused */
    T_TRUE(contains(err, "duplicate"));
    T_OK(parse(&c, "{\"model_type\":\"mistral\",\"hidden_size\":80,\"num_hidden_layers\":1,"
                   "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,"
                   "\"intermediate_size\":128,\"vocab_size\":100}",
               err));
    T_EQ_INT(c.HD, 16);
    T_EQ_INT(c.C, 80);
    /* Llama attention_bias covers o_proj; mlp_bias separately */
    T_OK(parse(&c, "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                   "\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":100,"
                   "\"attention_bias\":true,\"mlp_bias\":true}",
               err));
    T_EQ_INT(c.attn_bias, 1);
    T_EQ_INT(c.o_bias, 1);
    T_EQ_INT(c.mlp_bias, 1);
    /* GPT-2: n_inner given, gelu_pytorch_tanh accepted, untied */
    T_OK(parse(&c, subst(k_gpt2, "\"activation_function\": \"gelu_new\"",
                         "\"activation_function\": \"gelu_pytorch_tanh\", \"n_inner\": 1000,"
                         " \"tie_word_embeddings\": false"),
               err));
    T_EQ_INT(c.FF, 1000);
    T_EQ_INT(c.tie_word_embeddings, 0);
    T_OK(parse(&c, subst(k_gpt2, "\"activation_function\": \"gelu_new\"", "\"n_inner\": null"),
               err));
    T_EQ_INT(c.FF, 3072);

    /* Sequence classification heads. */
    T_OK(parse(&c, subst(k_tinyllama, "LlamaForCausalLM", "LlamaForSequenceClassification"), err));
    T_EQ_INT(c.has_lm_head, 0);
    T_EQ_INT(c.has_score, 1);
    T_EQ_INT(c.num_labels, 1);
    T_OK(parse(&c, subst(k_tinyllama, "\"architectures\": [\"LlamaForCausalLM\"]",
                         "\"architectures\": [\"LlamaForSequenceClassification\"],"
                         " \"id2label\": {\"0\": \"bad\", \"1\": \"good\"},"
                         " \"label2id\": {\"bad\": 0, \"good\": 1}"),
               err));
    T_EQ_INT(c.num_labels, 2);
    T_EQ_INT(parse(&c, subst(k_gpt2, "GPT2LMHeadModel", "GPT2ForSequenceClassification\"], "
                                                        "\"num_labels\": [\"x"),
                   err),
             AL_EFORMAT);
    T_TRUE(contains(err, "num_labels"));
    T_OK(parse(&c, subst(k_gpt2, "\"architectures\": [\n    \"GPT2LMHeadModel\"\n  ]",
                         "\"architectures\": [\"GPT2ForSequenceClassification\"], \"num_labels\": 3,"
                         " \"pad_token_id\": 50256"),
               err));
    T_EQ_INT(c.has_score, 1);
    T_EQ_INT(c.has_lm_head, 0);
    T_EQ_INT(c.num_labels, 3);
    T_EQ_INT(c.pad_id, 50256);
    T_EQ_INT(c.arch, AL_ARCH_GPT2);
    /* No architectures at all: a causal LM. */
    T_OK(parse(&c, "{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":2,\"n_head\":4,"
                   "\"vocab_size\":100}",
               err));
    T_EQ_INT(c.has_lm_head, 1);
    T_EQ_INT(c.FF, 256);
    T_EQ_INT(c.max_T, 1024);
}

/* Each refusal: the code and the field named in err; cfg untouched. */
static void bad(const char *json, int rc, const char *want) {
    char err[AL_ERRLEN];
    al_model_config c;
    memset(&c, 0x5A, sizeof c);
    int got = parse(&c, json, err);
    T_EQ_INT(got, rc);
    if (!contains(err, want)) fprintf(stderr, "  err = \"%s\", wanted \"%s\"\n", err, want);
    T_TRUE(contains(err, want));
    uint8_t pat[sizeof c];
    memset(pat, 0x5A, sizeof pat);
    T_TRUE(memcmp(&c, pat, sizeof c) == 0);
}

static void test_errors(void) {
    const char *L = "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                    "\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":100";
    char buf[2048];
#define WITH(extra) (snprintf(buf, sizeof buf, "%s%s}", L, extra), buf)
    bad(subst(k_gpt2, "\"gpt2\"", "\"bert\""), AL_EUNSUP, "model_type");
    bad("{\"model_type\":\"gemma\"}", AL_EUNSUP, "model_type: gemma");
    bad("{\"n_embd\":64}", AL_EFORMAT, "model_type");
    bad(subst(k_tinyllama, "\"rope_scaling\": null",
              "\"rope_scaling\": {\"type\": \"mrope\", \"factor\": 2.0}"),
        AL_EUNSUP, "rope_scaling: RoPE type mrope");
    bad(WITH(",\"rope_scaling\":\"yes\""), AL_EUNSUP, "rope_scaling");
    bad(WITH(",\"rope_parameters\":{\"rope_type\":\"ntk\",\"factor\":4}"), AL_EUNSUP,
        "rope_parameters");
    bad(subst(k_gpt2, "gelu_new", "relu"), AL_EUNSUP, "activation_function");
    bad(subst(k_tinyllama, "\"silu\"", "\"gelu\""), AL_EUNSUP, "hidden_act");
    bad(subst(k_tinyllama, "\"num_attention_heads\": 32", "\"num_attention_heads\": \"32\""),
        AL_EFORMAT, "config.json: num_attention_heads: must be a positive integer");
    bad(subst(k_gpt2, "\"n_embd\": 768", "\"n_embd\": 768.0"), AL_EFORMAT, "n_embd");
    bad(subst(k_gpt2, "\"n_layer\": 12", "\"n_layer\": true"), AL_EFORMAT, "n_layer");
    bad(subst(k_gpt2, "\"vocab_size\": 50257", "\"vocab_size\": -5"), AL_EFORMAT, "vocab_size");
    bad(subst(k_gpt2, "\"n_head\": 12", "\"n_head\": 0"), AL_EFORMAT, "n_head");
    bad(subst(k_gpt2, "\"n_head\": 12", "\"n_head\": 7"), AL_EFORMAT, "n_head");
    bad(subst(k_tinyllama, "\"num_attention_heads\": 32", "\"num_attention_heads\": 30"),
        AL_EFORMAT, "num_attention_heads");
    bad(subst(k_tinyllama, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5"), AL_EFORMAT,
        "num_key_value_heads");
    bad(subst(k_tinyllama, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 64"), AL_EFORMAT,
        "num_key_value_heads");
    bad(subst(k_tinyllama, "\"hidden_size\": 2048,", ""), AL_EFORMAT, "hidden_size: missing");
    bad(subst(k_tinyllama, "\"intermediate_size\": 5632,", ""), AL_EFORMAT, "intermediate_size");
    bad(WITH(",\"head_dim\":15"), AL_EFORMAT, "head_dim");
    bad(WITH(",\"head_dim\":-2"), AL_EFORMAT, "head_dim");
    bad(WITH(",\"head_dim\":512"), AL_EFORMAT, "head_dim"); /* wider than attention's tiles */
    bad(WITH(",\"tie_word_embeddings\":\"yes\""), AL_EFORMAT, "tie_word_embeddings");
    bad(WITH(",\"attention_bias\":1"), AL_EFORMAT, "attention_bias");
    bad(WITH(",\"rms_norm_eps\":\"1e-6\""), AL_EFORMAT, "rms_norm_eps");
    bad(WITH(",\"rms_norm_eps\":0"), AL_EFORMAT, "rms_norm_eps");
    bad(subst(k_gpt2, "\"layer_norm_epsilon\": 1e-05", "\"layer_norm_epsilon\": 2"), AL_EFORMAT,
        "layer_norm_epsilon");
    bad(subst(k_gpt2, "\"n_embd\": 768", "\"n_embd\": 2097152, \"n_inner\": 8"), AL_EFORMAT,
        "n_embd");
    bad(subst(k_gpt2, "\"gelu_new\"", "7"), AL_EFORMAT, "activation_function");
    bad(WITH(",\"rope_theta\":-1"), AL_EFORMAT, "rope_theta");
    bad(WITH(",\"eos_token_id\":100"), AL_EFORMAT, "eos_token_id"); /* outside vocab */
    bad(WITH(",\"eos_token_id\":\"</s>\""), AL_EFORMAT, "eos_token_id");
    bad(WITH(",\"bos_token_id\":-3"), AL_EFORMAT, "bos_token_id");
    bad(WITH(",\"architectures\":[\"BertModel\"]"), AL_EUNSUP, "architectures");
    bad(WITH(",\"architectures\":\"LlamaForCausalLM\""), AL_EFORMAT, "architectures");
    bad(WITH(",\"architectures\":[\"LlamaForSequenceClassification\"],\"num_labels\":0"),
        AL_EFORMAT, "num_labels");
    bad(WITH(",\"architectures\":[\"LlamaForSequenceClassification\"],\"id2label\":[]"),
        AL_EFORMAT, "id2label");
    /* Hostile sizes: each below int range but absurd, or multiplying out. */
    bad(subst(k_tinyllama, "\"hidden_size\": 2048", "\"hidden_size\": 4294967296"), AL_EFORMAT,
        "hidden_size");
    bad(subst(k_tinyllama, "\"vocab_size\": 32000", "\"vocab_size\": 2000000000"), AL_EFORMAT,
        "vocab_size");
    bad(subst(k_tinyllama, "\"num_hidden_layers\": 22", "\"num_hidden_layers\": 100000"), AL_EFORMAT,
        "num_hidden_layers");
    bad(subst(k_tinyllama, "\"max_position_embeddings\": 2048",
              "\"max_position_embeddings\": 100000000"),
        AL_EFORMAT, "max_position_embeddings");
    bad(subst(subst(k_tinyllama, "\"intermediate_size\": 5632", "\"intermediate_size\": 1000000"),
              "\"num_hidden_layers\": 22", "\"num_hidden_layers\": 500"),
        AL_EFORMAT, "parameters");
    bad(subst(k_gpt2, "\"n_embd\": 768", "\"n_embd\": 1048560"), AL_EFORMAT, "n_embd");
    bad(subst(k_gpt2, "\"vocab_size\": 50257",
              "\"vocab_size\": 50257, \"scale_attn_by_inverse_layer_idx\": true"),
        AL_EUNSUP,
        "scale_attn_by_inverse_layer_idx");
    bad("{\"model_type\":\"llama\",", AL_EFORMAT, "invalid JSON");
    bad("[1]", AL_EFORMAT, "not a JSON object");
    bad(WITH(",\"vocab_size\":100"), AL_EFORMAT, "duplicate");
#undef WITH
    char err[AL_ERRLEN];
    al_model_config c;
    err[0] = '\0';
    T_EQ_INT(al_config_load(&c, "/nonexistent/dir", err), AL_ENOENT);
    T_TRUE(contains(err, "/nonexistent/dir/config.json"));
}

static int same_config(const al_model_config *a, const al_model_config *b) {
    int ok = a->arch == b->arch && strcmp(a->model_type, b->model_type) == 0 &&
             a->n_layers == b->n_layers && a->C == b->C && a->NH == b->NH && a->NKV == b->NKV &&
             a->HD == b->HD && a->FF == b->FF && a->V == b->V && a->max_T == b->max_T &&
             fbits_eq(a->norm_eps, b->norm_eps) && fbits_eq(a->init_range, b->init_range) &&
             a->tie_word_embeddings == b->tie_word_embeddings && a->attn_bias == b->attn_bias &&
             a->o_bias == b->o_bias && a->mlp_bias == b->mlp_bias &&
             a->has_lm_head == b->has_lm_head && a->has_score == b->has_score &&
             a->bos_id == b->bos_id && a->eos_id == b->eos_id && a->pad_id == b->pad_id;
    if (a->arch == AL_ARCH_LLAMA) ok = ok && fbits_eq(a->rope_theta, b->rope_theta);
    if (a->has_score) ok = ok && a->num_labels == b->num_labels;
    return ok;
}

static void roundtrip(const al_model_config *c, const char *name, const char *want_arch) {
    char err[AL_ERRLEN], dir[1024];
    snprintf(dir, sizeof dir, "%.900s/%.100s", t_tmpdir(), name);
    T_OK(al_mkdir_p(dir, err));
    int rc = al_config_save(c, dir, err);
    T_OK(rc);
    if (rc) fprintf(stderr, "  save %s: %s\n", name, err);
    al_model_config back;
    memset(&back, 0, sizeof back);
    rc = al_config_load(&back, dir, err);
    T_OK(rc);
    if (rc) fprintf(stderr, "  load %s: %s\n", name, err);
    T_TRUE(same_config(c, &back));
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *j = json_load_file(path, 0, NULL);
    T_TRUE(j != NULL);
    T_STR_EQ(json_string_value(json_array_get(json_object_get(j, "architectures"), 0)), want_arch);
    T_STR_EQ(json_string_value(json_object_get(j, "torch_dtype")), "float32");
    T_STR_EQ(json_string_value(json_object_get(j, "model_type")), c->model_type);
    if (c->arch == AL_ARCH_GPT2) {
        T_STR_EQ(json_string_value(json_object_get(j, "activation_function")), "gelu_new");
        T_EQ_INT(json_integer_value(json_object_get(j, "n_inner")), c->FF);
    } else {
        T_STR_EQ(json_string_value(json_object_get(j, "hidden_act")), "silu");
        T_EQ_INT(json_integer_value(json_object_get(j, "num_key_value_heads")), c->NKV);
        T_EQ_INT(json_integer_value(json_object_get(j, "head_dim")), c->HD);
    }
    if (c->pad_id < 0) T_TRUE(json_object_get(j, "pad_token_id") == NULL);
    if (c->has_score && !c->has_lm_head) {
        T_EQ_INT(json_integer_value(json_object_get(j, "num_labels")), c->num_labels);
        T_EQ_INT(json_object_size(json_object_get(j, "id2label")), c->num_labels);
    }
    json_decref(j);
}

static void test_roundtrip(void) {
    char err[AL_ERRLEN];
    al_model_config c;
    al_config_default(&c, AL_ARCH_GPT2);
    roundtrip(&c, "gpt2_default", "GPT2LMHeadModel");
    c.bos_id = c.eos_id = 50256;
    c.pad_id = 50256;
    c.has_lm_head = 0;
    c.has_score = 1;
    c.num_labels = 1;
    c.tie_word_embeddings = 0;
    roundtrip(&c, "gpt2_rm", "GPT2ForSequenceClassification");

    al_config_default(&c, AL_ARCH_LLAMA);
    roundtrip(&c, "llama_default", "LlamaForCausalLM");
    c.bos_id = 1;
    c.eos_id = 2;
    c.pad_id = 0;
    c.attn_bias = c.o_bias = c.mlp_bias = 1;
    c.norm_eps = 1e-5f;
    c.init_range = 0.041666668f;
    c.rope_theta = 500000.0f;
    c.tie_word_embeddings = 1;
    roundtrip(&c, "llama_bias", "LlamaForCausalLM");
    c.has_lm_head = 0;
    c.has_score = 1;
    c.num_labels = 3;
    roundtrip(&c, "llama_cls", "LlamaForSequenceClassification");

    const char *real[] = {k_gpt2, k_tinyllama, k_smollm, k_smollm2, k_qwen2, k_mistral};
    const char *arch[] = {"GPT2LMHeadModel", "LlamaForCausalLM", "LlamaForCausalLM",
                          "LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"};
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "real%d", i);
        T_OK(parse(&c, real[i], err));
        roundtrip(&c, name, arch[i]);
    }
    T_OK(parse(&c, subst(k_qwen2, "Qwen2ForCausalLM", "Qwen2ForSequenceClassification"), err));
    roundtrip(&c, "qwen_rm", "Qwen2ForSequenceClassification");

    /* Floats are written in their shortest form. */
    T_OK(parse(&c, k_qwen2, err));
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%.1000s/real4", t_tmpdir());
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    T_OK(al_file_read(path, 1 << 20, &text, &len, err));
    T_TRUE(contains(text, "\"rms_norm_eps\": 1e-6,") || contains(text, "\"rms_norm_eps\": 1e-06,"));
    T_TRUE(contains(text, "\"rope_theta\": 1000000.0"));
    T_TRUE(contains(text, "\"initializer_range\": 0.02,"));
    free(text);

    /* Structs the dialect cannot express are refused, not silently changed. */
    T_OK(parse(&c, k_qwen2, err));
    c.o_bias = 1;
    err[0] = '\0';
    T_EQ_INT(al_config_save(&c, dir, err), AL_EINVAL);
    T_TRUE(contains(err, "qwen2"));
    al_config_default(&c, AL_ARCH_LLAMA);
    c.attn_bias = 1;
    T_EQ_INT(al_config_save(&c, dir, err), AL_EINVAL);
    T_TRUE(contains(err, "o_proj"));
    al_config_default(&c, AL_ARCH_LLAMA);
    c.NKV = 3;
    T_EQ_INT(al_config_save(&c, dir, err), AL_EINVAL);
    T_TRUE(contains(err, "num_key_value_heads"));
    al_config_default(&c, AL_ARCH_LLAMA);
    err[0] = '\0';
    T_EQ_INT(al_config_save(&c, "/nonexistent/dir", err), AL_EIO);
    T_TRUE(contains(err, "config.json"));
}

static void test_validate(void) {
    char err[AL_ERRLEN];
    al_model_config c;
    al_config_default(&c, AL_ARCH_GPT2);
    T_OK(al_config_validate(&c, err));
    T_EQ_INT(c.C, 768);
    T_EQ_INT(c.n_layers, 12);
    T_EQ_INT(c.NH, 12);
    T_EQ_INT(c.max_T, 1024);
    T_EQ_INT(c.V, 50257);
    T_EQ_INT(c.FF, 3072);
    T_EQ_INT(fbits_eq(c.norm_eps, 1e-5f), 1);
    T_EQ_INT(c.bos_id + c.eos_id + c.pad_id, -3);
    T_EQ_INT(c.has_lm_head, 1);
    T_NEAR(c.init_range, 0.02, 1e-9);
    al_config_default(&c, AL_ARCH_LLAMA);
    T_OK(al_config_validate(&c, err));
    T_EQ_INT(c.C, 64);
    T_EQ_INT(c.n_layers, 2);
    T_EQ_INT(c.NH, 4);
    T_EQ_INT(c.NKV, 2);
    T_EQ_INT(c.HD, 16);
    T_EQ_INT(c.FF, 172);
    T_EQ_INT(c.V, 260);
    T_EQ_INT(c.max_T, 256);
    T_EQ_INT(fbits_eq(c.norm_eps, 1e-6f), 1);
    T_EQ_INT(fbits_eq(c.rope_theta, 10000.0f), 1);
    T_STR_EQ(c.model_type, "llama");

    struct {
        al_arch arch;
        int field; /* which mutation */
        const char *want;
    } cases[] = {
        {AL_ARCH_LLAMA, 0, "num_key_value_heads"}, {AL_ARCH_LLAMA, 1, "head_dim"},
        {AL_ARCH_GPT2, 2, "n_head"},               {AL_ARCH_LLAMA, 3, "vocab_size"},
        {AL_ARCH_LLAMA, 4, "num_hidden_layers"},            {AL_ARCH_LLAMA, 5, "parameters"},
        {AL_ARCH_LLAMA, 6, "num_labels"},          {AL_ARCH_LLAMA, 7, "architectures"},
        {AL_ARCH_LLAMA, 8, "pad_token_id"},        {AL_ARCH_GPT2, 9, "num_key_value_heads"},
        {AL_ARCH_LLAMA, 10, "norm_eps"},           {AL_ARCH_LLAMA, 11, "hidden_size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        al_config_default(&c, cases[i].arch);
        switch (cases[i].field) {
        case 0: c.NKV = 3; break;
        case 1: c.HD = 15; break;
        case 2: c.HD = 32; break;
        case 3: c.V = 0; break;
        case 4: c.n_layers = -1; break;
        case 5: c.C = 1 << 20; c.V = 1 << 20; break;
        case 6: c.has_score = 1; c.num_labels = 0; break;
        case 7: c.has_lm_head = 0; break;
        case 8: c.pad_id = c.V; break;
        case 9: c.NKV = 4; break;
        case 10: c.norm_eps = NAN; break;
        case 11: c.C = (1 << 20) + 1; break;
        }
        err[0] = '\0';
        T_EQ_INT(al_config_validate(&c, err), AL_EINVAL);
        if (!contains(err, cases[i].want))
            fprintf(stderr, "  case %zu: err = \"%s\", wanted \"%s\"\n", i, err, cases[i].want);
        T_TRUE(contains(err, cases[i].want));
    }
    /* PPO critic: both heads */
    al_config_default(&c, AL_ARCH_LLAMA);
    c.has_score = 1;
    T_OK(al_config_validate(&c, err));
}

/* Inputs tests/fuzz/fuzz_config found, refused at parse with this exact
 * message. A LongRoPE factor of 1e39 (a finite double, an infinite float)
 * parsed and validated into a config that al_config_save could not write
 * back (the other float fields were caught later, by the checks of
 * al_config_validate); more layers than layer_flags holds overflowed it. */
static void refused(const char *json, int rc, const char *want) {
    char err[AL_ERRLEN];
    al_model_config c;
    memset(&c, 0x5A, sizeof c);
    T_EQ_INT(parse(&c, json, err), rc);
    T_STR_EQ(err, want);
}

static void test_fuzz_found(void) {
    refused("{\"model_type\":\"phi3\",\"hidden_size\":64,\"num_hidden_layers\":2,"
            "\"num_attention_heads\":4,\"intermediate_size\":96,\"vocab_size\":300,"
            "\"original_max_position_embeddings\":64,\"rope_scaling\":{\"type\":\"longrope\","
            "\"long_factor\":[1,1,1,1,1,1,1,1],\"short_factor\":[1,1,1,1,1,1,1,1e39]}}",
            AL_EFORMAT, "config.json: rope_scaling.short_factor[7]: must be a positive number (of float range)");
    refused("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
            "\"num_attention_heads\":4,\"intermediate_size\":128,\"vocab_size\":100,\"rope_theta\":-1e39}",
            AL_EFORMAT, "config.json: rope_theta: must be a number (of float range)");
    /* the layer readers wrote layer_flags[512] and on, past the struct */
    refused("{\"model_type\":\"gemma3_text\",\"hidden_size\":64,\"num_hidden_layers\":928,"
            "\"num_attention_heads\":4,\"intermediate_size\":96,\"vocab_size\":300}",
            AL_EFORMAT, "config.json: num_hidden_layers: 928 is outside [1, 512]");
}

int main(void) {
    test_real_configs();
    test_defaults_and_heads();
    test_errors();
    test_roundtrip();
    test_validate();
    test_fuzz_found();
    return t_done();
}

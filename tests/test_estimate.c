/* The job estimator (lib/train/estimate.h): its activation memory with and
 * without gradient checkpointing against what the model reserves, the LoRA
 * parameter count against the model's, the model's own error (not "out of
 * memory") for LoRA settings that match nothing, and how a step's
 * prediction is put together from its measured rates. No time is asserted. */
#include <stdio.h>
#include <string.h>

#include "compute/pool.h"
#include "model/config.h"
#include "model/model.h"
#include "t.h"
#include "t_model.h"
#include "train/estimate.h"
#include "train/job.h"

static char g_dir[1200], g_err[AL_ERRLEN];

static int estimate(const char *extra, al_estimate *est, al_error *e) {
    char js[2048];
    snprintf(js, sizeof js,
             "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":8},"
             "\"hyperparameters\":{\"batch_size\":4,\"max_steps\":2%s}}",
             g_dir, extra);
    al_job j;
    T_OK(al_job_parse(&j, js, strlen(js), g_err));
    int rc = al_job_estimate(&j, est, e);
    al_job_deinit(&j);
    return rc;
}

/* What a model of the folder's config holds after reserving rows x T. */
static size_t reserved(int rows, int T, int flags, int bf16) {
    al_model_config c;
    T_OK(al_config_load(&c, g_dir, g_err));
    al_model *m = al_model_new(&c, NULL, g_err);
    T_TRUE(m != NULL);
    if (!m) return 0;
    if (bf16) T_OK(al_model_set_bf16(m, 1, g_err));
    T_OK(al_model_reserve(m, rows, T, flags, g_err));
    size_t n = al_model_memory(m);
    al_model_free(m);
    return n;
}

/* Checkpointing keeps one layer's activations instead of L: the estimate
 * drops by exactly what the model's reservation drops by (L - 1 sets). */
static void test_ckpt_memory(void) {
    for (int bf16 = 0; bf16 < 2; bf16++) {
        char off[128], on[192];
        snprintf(off, sizeof off, ",\"mixed_precision\":\"%s\"", bf16 ? "bf16" : "fp32");
        snprintf(on, sizeof on, "%s,\"gradient_checkpointing\":true", off);
        al_estimate a, b;
        T_OK(estimate(off, &a, NULL));
        T_OK(estimate(on, &b, NULL));
        T_TRUE(a.max_seq > 8 && a.max_seq == b.max_seq);
        size_t full = reserved(4, a.max_seq, 0, bf16), ckpt = reserved(4, a.max_seq, AL_MODEL_GRAD_CKPT, bf16);
        T_TRUE(ckpt < full);
        T_EQ_INT((long long)(a.memory_bytes - b.memory_bytes), (long long)(full - ckpt));
        T_TRUE(a.seconds_per_step > 0 && b.seconds_per_step > 0);
    }
}

/* The adapters the estimate counts are the model's own, suffix matches included. */
static void test_lora_params(void) {
    static const struct { al_arch arch; const char *targets; } cases[] = {
        {AL_ARCH_GPT2, "c_attn,attn.c_proj"}, {AL_ARCH_GPT2, "c_proj"},
        {AL_ARCH_LLAMA, "q_proj,v_proj"},     {AL_ARCH_LLAMA, "all-linear"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        al_model_config c = t_byte_config((t_shape){cases[i].arch, .layers = 2, .C = 16, .heads = 4, .kv_heads = 2,
                                                    .FF = 24, .max_T = 16});
        if (cases[i].arch == AL_ARCH_GPT2) c.NKV = c.NH;
        al_lora_cfg l = {.r = 3, .alpha = 6};
        snprintf(l.targets, sizeof l.targets, "%s", cases[i].targets);
        al_model *m = al_model_new(&c, &l, g_err);
        T_TRUE(m != NULL);
        if (!m) continue;
        T_EQ_INT((long long)al_lora_num_params(&c, &l), (long long)al_model_num_params(m, 1));
        al_model_free(m);
    }
}

/* LoRA targets that match no module: the model's error and field, not ENOMEM. */
static void test_lora_no_match(void) {
    al_estimate est;
    al_error e;
    char js[2048];
    snprintf(js, sizeof js,
             "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":8},"
             "\"lora\":{\"r\":4,\"alpha\":8,\"target_modules\":[\"qproj\"]},"
             "\"hyperparameters\":{\"batch_size\":4,\"max_steps\":2}}",
             g_dir);
    al_job j;
    T_OK(al_job_parse(&j, js, strlen(js), g_err));
    T_EQ_INT(al_job_estimate(&j, &est, &e), AL_EINVAL);
    al_job_deinit(&j);
    T_STR_EQ(e.field, "lora.target_modules");
    T_STR_EQ(e.msg, "lora.target_modules: \"qproj\" match no module of the model (c_attn, c_proj, c_fc, c_proj, "
                    "or \"all-linear\")");
    /* and the function itself */
    al_model_config c;
    T_OK(al_config_load(&c, g_dir, g_err));
    al_lora_cfg l = {.r = 4, .alpha = 8, .targets = "qproj"};
    al_model *m = NULL;
    T_EQ_INT(al_model_create(&m, &c, &l, &e), AL_EINVAL);
    T_TRUE(m == NULL);
    T_STR_EQ(e.field, "lora.target_modules");
    l.alpha = 0;
    T_EQ_INT(al_model_create(&m, &c, &l, &e), AL_EINVAL);
    T_STR_EQ(e.field, "lora");
    T_STR_EQ(e.msg, "lora: r must be in 1..4096 and alpha > 0");
}

/* A step's prediction from the rates measured once for its shape (cached,
 * so the identities below hold exactly whatever the machine's speed): each
 * micro-batch costs the same, the per-step part (AdamW) is counted once,
 * and a reference's rows add their forward alone. */
static void test_step_structure(void) {
    al_model_config c;
    T_OK(al_config_load(&c, g_dir, g_err));
    double s[4], ref, both;
    for (int rows = 1; rows <= 3; rows++) {
        al_step_plan p = {.rows = rows, .micro_rows = 1, .T = 24};
        T_OK(al_estimate_step(&c, NULL, 0, &p, &s[rows], NULL));
    }
    al_step_plan r = {.rows = 0, .micro_rows = 1, .T = 24, .ref_rows = 1};
    al_step_plan rb = {.rows = 1, .micro_rows = 1, .T = 24, .ref_rows = 1};
    T_OK(al_estimate_step(&c, NULL, 0, &r, &ref, NULL));
    T_OK(al_estimate_step(&c, NULL, 0, &rb, &both, NULL));
    T_TRUE(s[1] > 0 && ref > 0);
    T_NEAR(s[3] - s[2], s[2] - s[1], 1e-9 * s[3]);
    T_NEAR(both, s[1] + ref, 1e-9 * both);
    /* an error comes back with its field whether or not err is given */
    al_lora_cfg bad = {.r = 2, .alpha = 4, .targets = "nothing"};
    al_error e;
    T_EQ_INT(al_estimate_step(&c, &bad, 0, &rb, &both, NULL), AL_EINVAL);
    T_EQ_INT(al_estimate_step(&c, &bad, 0, &rb, &both, &e), AL_EINVAL);
    T_STR_EQ(e.field, "lora.target_modules");
}

int main(void) {
    al_pool_init(2);
    snprintf(g_dir, sizeof g_dir, "%s/base", t_tmpdir());
    T_OK(t_save_byte_model((t_shape){AL_ARCH_GPT2, .layers = 3, .C = 32, .heads = 4, .FF = 64, .max_T = 64}, 1, g_dir,
                           g_err));
    test_ckpt_memory();
    test_lora_params();
    test_lora_no_match();
    test_step_structure();
    al_pool_shutdown();
    return t_done();
}

/* The trainer loop on tiny models and built-in tasks: exact resume, micro-
 * batch accumulation, the divergence watchdog, cancel and pause, every
 * method end to end, and precomputed against live reference log-probs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "model/model.h"
#include "t.h"
#include "t_model.h"
#include "t_train.h"
#include "io.h"
#include "text/chat.h"
#include "text/mix.h"
#include "text/tokenizer.h"
#include "train/estimate.h"
#include "train/job.h"
#include "train/trainer.h"

enum { MAXS = 64 };

typedef struct rec {
    double loss[MAXS + 1];
    int logged[MAXS + 1];
    char names[2048];
    int stop_after, pause_after, steps_seen, checkpoints;
    char events[4096];
} rec;

static void on_event(void *ud, al_log_level lvl, const char *msg) {
    (void)lvl;
    rec *r = ud;
    size_t k = strlen(r->events);
    snprintf(r->events + k, sizeof r->events - k, "%s\n", msg);
}

static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    (void)epoch;
    rec *r = ud;
    if (step > MAXS) return;
    r->steps_seen = (int)step;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].name, "loss")) {
            r->loss[step] = m[i].value;
            r->logged[step] = 1;
        }
        if (!strstr(r->names, m[i].name) && strlen(r->names) + strlen(m[i].name) + 2 < sizeof r->names) {
            strcat(r->names, m[i].name);
            strcat(r->names, " ");
        }
    }
}
static int on_stop(void *ud) {
    rec *r = ud;
    return r->stop_after > 0 && r->steps_seen >= r->stop_after;
}
static int on_pause(void *ud) {
    rec *r = ud;
    return r->pause_after > 0 && r->steps_seen >= r->pause_after;
}
static void on_ckpt(void *ud, long step, const char *dir) {
    (void)step;
    (void)dir;
    ((rec *)ud)->checkpoints++;
}

static char g_base[1200], g_err[AL_ERRLEN];

/* Runs a job given as JSON (with %s for the model and for the output dir). */
static int run(const char *fmt, const char *out, const char *resume, rec *r, al_train_result *res) {
    char json[4096], dir[1400];
    snprintf(dir, sizeof dir, "%s/%s", t_tmpdir(), out);
    snprintf(json, sizeof json, fmt, g_base, dir);
    g_err[0] = 0;
    int stop = r->stop_after, pause = r->pause_after;
    memset(r, 0, sizeof *r);
    r->stop_after = stop;
    r->pause_after = pause;
    al_train_cb cb = {.log = on_log, .should_stop = on_stop, .should_pause = on_pause,
                      .checkpoint = on_ckpt, .event = on_event, .ud = r};
    char rdir[1500];
    if (resume) snprintf(rdir, sizeof rdir, "%s/%s", t_tmpdir(), resume);
    return t_train_json(json, resume ? rdir : NULL, &cb, res, g_err);
}

static const char *SFT =
    "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":64,\"seed\":3},"
    "\"hyperparameters\":{\"learning_rate\":0.003,\"batch_size\":8,\"max_steps\":12,\"save_steps\":6,"
    "\"logging_steps\":1,\"max_length\":24,\"lr_scheduler_type\":\"cosine\",\"warmup_ratio\":0.1},"
    "\"output_dir\":\"%s\",\"seed\":5}";

static int read_all(const char *path, char **buf, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)*n + 1);
    size_t got = fread(*buf, 1, (size_t)*n, f);
    fclose(f);
    return got == (size_t)*n ? 0 : -1;
}

static int same_file(const char *a, const char *b) {
    char pa[1500], pb[1500], *x = NULL, *y = NULL;
    long na, nb;
    snprintf(pa, sizeof pa, "%s/%s", t_tmpdir(), a);
    snprintf(pb, sizeof pb, "%s/%s", t_tmpdir(), b);
    int ok = read_all(pa, &x, &na) == 0 && read_all(pb, &y, &nb) == 0 && na == nb && memcmp(x, y, (size_t)na) == 0;
    free(x);
    free(y);
    return ok;
}

static void test_resume(void) {
    static rec a, b;
    al_train_result res;
    T_OK(run(SFT, "full", NULL, &a, &res));
    T_EQ_INT(res.steps, 12);
    T_EQ_INT(a.checkpoints, 2); /* checkpoint-6 and the final folder */
    for (int s = 0; s <= 12; s++) T_TRUE(a.logged[s]);
    T_TRUE(a.loss[12] < a.loss[0]);
    T_OK(run(SFT, "resumed", "full/checkpoint-6", &b, &res));
    T_EQ_INT(res.steps, 12);
    double worst = 0;
    for (int s = 7; s <= 12; s++) {
        T_TRUE(b.logged[s]);
        worst = fmax(worst, fabs(a.loss[s] - b.loss[s]));
    }
    T_NEAR(worst, 0, 1e-6);
    T_TRUE(same_file("full/model.safetensors", "resumed/model.safetensors"));

    /* pause writes a checkpoint; resuming from it finishes identically */
    static rec p, q;
    p.pause_after = 4;
    T_EQ_INT(run(SFT, "paused", NULL, &p, &res), AL_EPAUSED);
    T_EQ_INT(res.steps, 4);
    T_OK(run(SFT, "unpaused", "paused/checkpoint-4", &q, &res));
    T_NEAR(q.loss[12], a.loss[12], 1e-6);
    T_TRUE(same_file("full/model.safetensors", "unpaused/model.safetensors"));

    /* cancel stops between steps */
    static rec c;
    c.stop_after = 3;
    T_EQ_INT(run(SFT, "cancelled", NULL, &c, &res), AL_ECANCELED);
    T_EQ_INT(res.steps, 3);
}

/* LoRA + DPO with precomputed reference log-probs resumes exactly too. */
static void test_resume_lora_dpo(void) {
    const char *DPO =
        "{\"method\":\"dpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":48,\"seed\":4},"
        "\"hyperparameters\":{\"learning_rate\":0.01,\"batch_size\":8,\"max_steps\":8,\"save_steps\":4,"
        "\"logging_steps\":1,\"max_length\":24},\"lora\":{\"r\":4,\"alpha\":8},"
        "\"output_dir\":\"%s\",\"seed\":5}";
    static rec a, b;
    al_train_result res;
    T_OK(run(DPO, "dpo_full", NULL, &a, &res));
    T_OK(run(DPO, "dpo_resumed", "dpo_full/checkpoint-4", &b, &res));
    for (int s = 5; s <= 8; s++) T_NEAR(a.loss[s], b.loss[s], 1e-6);
    T_TRUE(same_file("dpo_full/adapter_model.safetensors", "dpo_resumed/adapter_model.safetensors"));
    /* at step 0 policy == reference: the DPO loss is log 2 */
    T_NEAR(a.loss[0], log(2.0), 1e-5);
    /* the adapter folder stands on its own: its tokenizer is the base's */
    char dir[1300];
    snprintf(dir, sizeof dir, "%s/dpo_full", t_tmpdir());
    al_tok *tok = NULL;
    T_OK(al_tok_load(&tok, dir, g_err));
    if (tok) T_EQ_INT(al_tok_vocab_size(tok), 260);
    al_tok_free(tok);
}

/* The LM head runs fused into the forward in every micro-batch of a LoRA
 * SFT job (a frozen head, dlogp known before the forward), in none of a
 * full SFT job (the head trains) or of a DPO job (dlogp needs the
 * log-probs). */
static void test_fused_head_path(void) {
    const char *J = "{\"method\":\"%s\",\"model\":\"%%s\",\"task\":{\"name\":\"addition\",\"rows\":32,\"seed\":4},"
                    "\"hyperparameters\":{\"learning_rate\":0.003,\"batch_size\":8,\"gradient_accumulation_steps\":2,"
                    "\"max_steps\":3,\"logging_steps\":1,\"max_length\":24}%s,\"output_dir\":\"%%s\"}";
    const char *lora = ",\"lora\":{\"r\":4,\"alpha\":8}";
    static const struct {
        const char *method, *out;
        int lora;
        long fused;
    } c[] = {{"sft", "fh_lora", 1, 3 * 2}, {"sft", "fh_full", 0, 0}, {"dpo", "fh_dpo", 1, 0}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char j[1024];
        snprintf(j, sizeof j, J, c[i].method, c[i].lora ? lora : "");
        static rec r;
        al_train_result res;
        long before = al_model_fused_head_backwards();
        T_OK(run(j, c[i].out, NULL, &r, &res));
        T_EQ_INT(res.steps, 3);
        T_EQ_INT(al_model_fused_head_backwards() - before, c[i].fused);
    }
}

/* One batch of 8 in one micro-batch or in four: the same losses and weights. */
static void test_accumulation(void) {
    const char *J =
        "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"sorting\",\"rows\":32,\"seed\":2},"
        "\"hyperparameters\":{\"learning_rate\":0.003,\"batch_size\":8,\"gradient_accumulation_steps\":%d,"
        "\"max_steps\":5,\"logging_steps\":1,\"max_length\":32},\"output_dir\":\"%%s\"}";
    char j1[1024], j4[1024];
    snprintf(j1, sizeof j1, J, "%s", 1);
    snprintf(j4, sizeof j4, J, "%s", 4);
    static rec a, b;
    al_train_result res;
    T_OK(run(j1, "acc1", NULL, &a, &res));
    T_OK(run(j4, "acc4", NULL, &b, &res));
    for (int s = 0; s <= 5; s++) T_NEAR(a.loss[s], b.loss[s], 1e-5);
    al_model *m1 = NULL, *m4 = NULL;
    char p1[1300], p4[1300];
    snprintf(p1, sizeof p1, "%s/acc1", t_tmpdir());
    snprintf(p4, sizeof p4, "%s/acc4", t_tmpdir());
    T_OK(al_model_open(&m1, p1, NULL, g_err));
    T_OK(al_model_open(&m4, p4, NULL, g_err));
    if (m1 && m4) {
        int n1, n4;
        al_param *x = al_model_params(m1, &n1), *y = al_model_params(m4, &n4);
        double worst = 0;
        for (int i = 0; i < n1 && i < n4; i++)
            for (size_t k = 0; k < x[i].n; k++) worst = fmax(worst, fabs(x[i].w[k] - y[i].w[k]));
        T_NEAR(worst, 0, 1e-5);
    }
    al_model_free(m1);
    al_model_free(m4);
}

/* Every method runs end to end and reports TRL's metric names. */
static void test_methods(void) {
    static const struct { const char *method, *extra, *metrics; } cases[] = {
        {"pretrain", "", "loss learning_rate grad_norm num_tokens tokens_per_second"},
        {"sft", "", "entropy mean_token_accuracy"},
        {"reward_model", "", "accuracy margin"},
        {"dpo", "", "rewards/chosen rewards/rejected rewards/margins rewards/accuracies logps/chosen logps/rejected"},
        {"dpo", ",\"precompute_ref_log_probs\":false,\"loss_type\":[\"sigmoid\",\"ipo\"],\"loss_weights\":[1,0.5]",
         "rewards/margins"},
        {"dpo", ",\"loss_type\":\"robust\",\"label_smoothing\":0.1", "rewards/accuracies"},
        {"kto", "", "kl rewards/chosen"},
        {"sft", ",\"group_by_length\":true", "mean_token_accuracy"},
        {"orpo", "", "log_odds_ratio"},
        {"simpo", "", "rewards/margins"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char fmt[1024], out[64];
        snprintf(fmt, sizeof fmt,
                 "{\"method\":\"%s\",\"model\":\"%%s\",\"task\":{\"name\":\"reversal\",\"rows\":24},"
                 "\"hyperparameters\":{\"learning_rate\":0.001,\"batch_size\":4,\"max_steps\":3,"
                 "\"logging_steps\":1,\"max_length\":32%s},\"output_dir\":\"%%s\"}",
                 cases[i].method, cases[i].extra);
        snprintf(out, sizeof out, "method%zu", i);
        static rec r;
        al_train_result res;
        int rc = run(fmt, out, NULL, &r, &res);
        T_REPORT_(rc == AL_OK, "%s%s: %s", cases[i].method, cases[i].extra, g_err);
        T_REPORT_(isfinite(r.loss[3]), "%s: final loss %g", cases[i].method, r.loss[3]);
        char want[256];
        snprintf(want, sizeof want, "%s", cases[i].metrics);
        for (char *tok = strtok(want, " "); tok; tok = strtok(NULL, " "))
            T_REPORT_(strstr(r.names, tok) != NULL, "%s logs %s (has: %s)", cases[i].method, tok, r.names);
    }
    /* the reward model's output is a sequence classifier */
    char p[1300];
    snprintf(p, sizeof p, "%s/method2", t_tmpdir()); /* cases[2]: reward_model */
    al_model *m = NULL;
    T_OK(al_model_open(&m, p, NULL, g_err));
    if (m) {
        T_TRUE(al_model_config_of(m)->has_score);
        T_TRUE(!al_model_config_of(m)->has_lm_head);
    }
    al_model_free(m);
}

/* A NaN in the weights stops the job with a clear error, writing nothing. */
static void test_watchdog(void) {
    char nan_dir[1300];
    snprintf(nan_dir, sizeof nan_dir, "%s/nanmodel", t_tmpdir());
    al_model *m = NULL;
    T_OK(al_model_open(&m, g_base, NULL, g_err));
    int np;
    al_param *ps = al_model_params(m, &np);
    ps[3].w[0] = NAN;
    T_OK(al_model_save(m, nan_dir, g_err));
    al_model_free(m);
    char json[4096], out[1300];
    snprintf(out, sizeof out, "%s/nanout", t_tmpdir());
    snprintf(json, sizeof json,
             "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":16},"
             "\"hyperparameters\":{\"max_steps\":3,\"batch_size\":4,\"max_length\":24},\"output_dir\":\"%s\"}",
             nan_dir, out);
    al_job job;
    T_OK(al_job_parse(&job, json, strlen(json), g_err));
    al_train_result res;
    al_error fail;
    int rc = al_train_run(&job, NULL, NULL, &res, &fail);
    al_job_deinit(&job);
    T_EQ_INT(rc, AL_ENAN);
    T_REPORT_(strstr(fail.msg, "divergence") != NULL, "message: %s", fail.msg);
    T_STR_EQ(fail.field, ""); /* no field of the job is at fault */
    char model[1400];
    snprintf(model, sizeof model, "%s/model.safetensors", out);
    FILE *f = fopen(model, "r");
    T_TRUE(f == NULL);
    if (f) fclose(f);
}

/* LoRA adapters that match no module of the model fail the job before a
 * step, the field at fault as data (the API's param), as job.c names it. */
static void test_lora_no_match(void) {
    char json[4096], out[1300];
    snprintf(out, sizeof out, "%s/lora_nomatch", t_tmpdir());
    snprintf(json, sizeof json,
             "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":8},"
             "\"lora\":{\"r\":4,\"alpha\":8,\"target_modules\":[\"c_attn\",\"qproj\"]},"
             "\"hyperparameters\":{\"max_steps\":1,\"batch_size\":4},\"output_dir\":\"%s\"}", g_base, out);
    al_job job;
    T_OK(al_job_parse(&job, json, strlen(json), g_err));
    al_train_result res;
    al_error fail;
    T_EQ_INT(al_train_run(&job, NULL, NULL, &res, &fail), AL_EINVAL);
    al_job_deinit(&job);
    T_STR_EQ(fail.field, "lora.target_modules");
    T_STR_EQ(fail.msg, "lora.target_modules: \"c_attn,qproj\" match no module of the model (q_proj, k_proj, "
                       "v_proj, o_proj, gate_proj, up_proj, down_proj, or \"all-linear\")");
}

/* Packing is invisible to the loss: with every example in one step, packed
 * rows (block-diagonal attention, positions restarting per example) give the
 * loss that one example per row gives. */
static void test_packing(void) {
    const char *J = "{\"method\":\"sft\",\"model\":\"%%s\",\"task\":{\"name\":\"addition\",\"rows\":16,"
                    "\"seed\":7},\"hyperparameters\":{\"learning_rate\":0.003,\"batch_size\":16,"
                    "\"max_steps\":2,\"logging_steps\":1,\"max_length\":48,\"packing\":%s},"
                    "\"output_dir\":\"%%s\"}";
    char jp[1024], ju[1024];
    snprintf(jp, sizeof jp, J, "true");
    snprintf(ju, sizeof ju, J, "false");
    static rec a, b;
    al_train_result res;
    T_OK(run(jp, "packed", NULL, &a, &res));
    T_OK(run(ju, "unpacked", NULL, &b, &res));
    T_NEAR(a.loss[0], b.loss[0], 1e-5);
    T_NEAR(a.loss[1], b.loss[1], 1e-4);
    T_TRUE(a.loss[0] > 0);
}

/* KTO: the KL rows are fixed when the data is read and the examples are
 * visited in dataset order (TRL's KTOTrainer), so a run resumed across an
 * epoch boundary reproduces the uninterrupted one, and precomputed
 * reference log-probs (the KL rows' included) equal a live reference. */
static void test_kto(void) {
    const char *J =
        "{\"method\":\"kto\",\"model\":\"%%s\",\"task\":{\"name\":\"addition\",\"rows\":40,\"seed\":6},"
        "\"hyperparameters\":{\"learning_rate\":0.01,\"batch_size\":8,\"gradient_accumulation_steps\":2,"
        "\"max_steps\":8,\"save_steps\":4,\"logging_steps\":1,\"max_length\":24,\"beta\":0.5%s},"
        "\"output_dir\":\"%%s\",\"seed\":5}";
    char jp[1024], jl[1024];
    snprintf(jp, sizeof jp, J, "");
    snprintf(jl, sizeof jl, J, ",\"precompute_ref_log_probs\":false");
    static rec a, b, c;
    al_train_result res;
    T_OK(run(jp, "kto_full", NULL, &a, &res));
    T_OK(run(jp, "kto_resumed", "kto_full/checkpoint-4", &b, &res));
    T_OK(run(jl, "kto_live", NULL, &c, &res));
    for (int s = 0; s <= 8; s++) T_NEAR(c.loss[s], a.loss[s], 1e-5);
    for (int s = 5; s <= 8; s++) T_NEAR(b.loss[s], a.loss[s], 1e-6);
    T_TRUE(a.loss[8] != a.loss[1]);
    T_TRUE(same_file("kto_full/model.safetensors", "kto_resumed/model.safetensors"));
    /* TRL refuses a micro-batch of one (no other completions for the KL
     * term) and any order but the dataset's */
    const char *bad[] = {"\"batch_size\":2,\"gradient_accumulation_steps\":2", "\"group_by_length\":true"};
    const char *want[] = {"hyperparameters.batch_size", "hyperparameters.group_by_length"};
    for (int i = 0; i < 2; i++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"method\":\"kto\",\"model\":\"m\",\"task\":{\"name\":\"addition\",\"rows\":8},"
                 "\"hyperparameters\":{%s}}", bad[i]);
        al_job job;
        char err[AL_ERRLEN] = "";
        int rc = al_job_parse(&job, json, strlen(json), err);
        T_EQ_INT(rc, AL_EINVAL);
        T_REPORT_(strstr(err, want[i]) != NULL, "kto %s: %s", bad[i], err);
        if (rc == AL_OK) al_job_deinit(&job);
    }
}

/* max_steps 0 evaluates only. */
static void test_eval_only(void) {
    const char *J = "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":16},"
                    "\"hyperparameters\":{\"max_steps\":0,\"max_length\":24},\"output_dir\":\"%s\","
                    "\"eval_tasks\":[{\"name\":\"sorting\",\"rows\":8}]}";
    static rec r;
    al_train_result res;
    T_OK(run(J, "evalonly", NULL, &r, &res));
    T_EQ_INT(res.steps, 0);
    T_TRUE(strstr(r.names, "eval_loss") != NULL);
    T_TRUE(strstr(r.names, "eval/sorting/accuracy") != NULL);
    T_TRUE(strstr(r.names, "eval/sorting/loss") != NULL);
}

/* "chat_template" renders the training data and travels with the output
 * (tokenizer_config.json), so the fine-tune serves with it. */
static void test_chat_template(void) {
    char data[1200], json[4096], out[1200];
    snprintf(data, sizeof data, "%s/chat.jsonl", t_tmpdir());
    snprintf(out, sizeof out, "%s/zephyr", t_tmpdir());
    const char *rows = "{\"messages\":[{\"role\":\"user\",\"content\":\"2+2\"},{\"role\":\"assistant\",\"content\":\"4\"}]}\n"
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"3+5\"},{\"role\":\"assistant\",\"content\":\"8\"}]}\n";
    T_OK(al_file_write_atomic(data, rows, strlen(rows), g_err));
    snprintf(json, sizeof json,
             "{\"method\":\"sft\",\"model\":\"%s\",\"training_file\":\"%s\",\"chat_template\":\"zephyr\","
             "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":2,\"max_length\":64},\"output_dir\":\"%s\"}",
             g_base, data, out);
    al_train_result res;
    T_OK(t_train_json(json, NULL, NULL, &res, g_err));
    char p[1300];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", out);
    json_t *cfg = json_load_file(p, 0, NULL);
    T_STR_EQ(json_string_value(json_object_get(cfg, "chat_template")), al_chat_builtin("zephyr"));
    json_decref(cfg);
    al_tok *tok = NULL;
    T_OK(al_tok_load(&tok, out, g_err));
    if (tok) T_STR_EQ(al_tok_chat_template(tok), al_chat_builtin("zephyr"));
    al_tok_free(tok);
}

/* training_files mixed by weight: a run stopped after step 6 and resumed
 * from checkpoint-4 logs the uninterrupted run's losses (the checkpoint
 * keeps the sampler's state), and the sampler's draws are in the state. */
static void test_mixture_resume(void) {
    char a[1200], b[1200], fmt[4096];
    snprintf(a, sizeof a, "%s/mix_a.jsonl", t_tmpdir());
    snprintf(b, sizeof b, "%s/mix_b.csv", t_tmpdir());
    char rows[4096];
    size_t k = 0;
    for (int i = 0; i < 20; i++)
        k += (size_t)snprintf(rows + k, sizeof rows - k, "{\"prompt\":\"%d+%d=\",\"completion\":\"%d\"}\n", i, i, 2 * i);
    T_OK(al_file_write_atomic(a, rows, k, g_err));
    k = (size_t)snprintf(rows, sizeof rows, "prompt,completion\n");
    for (int i = 0; i < 6; i++) k += (size_t)snprintf(rows + k, sizeof rows - k, "rev %d%d,%d%d\n", i, i + 1, i + 1, i);
    T_OK(al_file_write_atomic(b, rows, k, g_err));
    snprintf(fmt, sizeof fmt,
             "{\"method\":\"sft\",\"model\":\"%%s\",\"training_files\":[{\"file\":\"%s\",\"weight\":0.7},"
             "{\"file\":\"%s\",\"weight\":0.3}],\"hyperparameters\":{\"learning_rate\":0.003,\"batch_size\":4,"
             "\"max_steps\":8,\"save_steps\":4,\"logging_steps\":1,\"max_length\":32},\"output_dir\":\"%%s\","
             "\"seed\":9}",
             a, b);
    static rec full, stopped, resumed;
    al_train_result res;
    T_OK(run(fmt, "mix_full", NULL, &full, &res));
    T_EQ_INT(res.steps, 8);
    stopped.stop_after = 6;
    T_EQ_INT(run(fmt, "mix_resumed", NULL, &stopped, &res), AL_ECANCELED);
    T_OK(run(fmt, "mix_resumed", "mix_resumed/checkpoint-4", &resumed, &res));
    T_EQ_INT(res.steps, 8);
    for (int s = 5; s <= 8; s++) {
        T_TRUE(resumed.logged[s] && full.logged[s]);
        T_TRUE(resumed.loss[s] == full.loss[s]);
    }
    T_TRUE(same_file("mix_full/model.safetensors", "mix_resumed/model.safetensors"));
    char p[1400];
    snprintf(p, sizeof p, "%s/mix_full/checkpoint-4/trainer_state.json", t_tmpdir());
    json_t *st = json_load_file(p, 0, NULL);
    json_t *mx = json_object_get(st, "mixer");
    T_EQ_INT(json_integer_value(json_object_get(mx, "draws")), 16);
    T_EQ_INT(json_integer_value(json_array_get(json_object_get(mx, "sizes"), 1)), 6);
    json_decref(st);
    /* another seed draws another stream */
    static rec other;
    char fmt2[4200];
    snprintf(fmt2, sizeof fmt2, "%.*s\"seed\":10}", (int)(strstr(fmt, "\"seed\":9}") - fmt), fmt);
    T_OK(run(fmt2, "mix_other", NULL, &other, &res));
    T_TRUE(other.loss[8] != full.loss[8]);
    /* packing plans over the mixture's first epoch of draws (20 + 6 of
     * them, counted here with the sampler itself), the same plan on resume */
    al_mix m;
    int32_t sz[2] = {20, 6};
    double w[2] = {0.7, 0.3};
    int from[2] = {0, 0};
    T_OK(al_mix_init(&m, 2, sz, w, 9, g_err));
    for (int i = 0; i < 26; i++) from[al_mix_source(&m, al_mix_next(&m))]++;
    al_mix_deinit(&m);
    char want[160];
    snprintf(want, sizeof want, "training_files[1]: %d of the 26 examples of the mixture fixed for packing", from[1]);
    snprintf(fmt2, sizeof fmt2, "%.*s\"packing\":true,%s", (int)(strstr(fmt, "\"max_length\"") - fmt), fmt,
             strstr(fmt, "\"max_length\""));
    static rec pk, pk_stopped, pk_resumed;
    T_OK(run(fmt2, "mix_packed", NULL, &pk, &res));
    T_EQ_INT(res.steps, 8);
    T_TRUE(strstr(pk.events, want) != NULL);
    if (!strstr(pk.events, want)) fprintf(stderr, "want %s in:\n%s", want, pk.events);
    T_TRUE(strstr(pk.events, "packing: 26 examples into") != NULL);
    pk_stopped.stop_after = 6;
    T_EQ_INT(run(fmt2, "mix_packed_resumed", NULL, &pk_stopped, &res), AL_ECANCELED);
    T_OK(run(fmt2, "mix_packed_resumed", "mix_packed_resumed/checkpoint-4", &pk_resumed, &res));
    for (int s = 5; s <= 8; s++) T_TRUE(pk_resumed.logged[s] && pk_resumed.loss[s] == pk.loss[s]);
    T_TRUE(pk.loss[8] != full.loss[8]); /* packed rows train on other batches */
    /* group_by_length groups it likewise */
    snprintf(fmt2, sizeof fmt2, "%.*s\"group_by_length\":true,%s", (int)(strstr(fmt, "\"max_length\"") - fmt), fmt,
             strstr(fmt, "\"max_length\""));
    T_OK(run(fmt2, "mix_grouped", NULL, &other, &res));
    snprintf(want, sizeof want, "training_files[0]: %d of the 26 examples of the mixture fixed for group_by_length",
             from[0]);
    T_TRUE(strstr(other.events, want) != NULL);
    /* the estimate counts every file's examples, and tokens per example
     * by the files' weights */
    char js[4096], files[2600];
    al_estimate est[3];
    for (int q = 0; q < 3; q++) {
        if (q < 2) snprintf(files, sizeof files, "{\"file\":\"%s\"}", q ? b : a);
        else snprintf(files, sizeof files, "{\"file\":\"%s\",\"weight\":3},{\"file\":\"%s\"}", a, b);
        snprintf(js, sizeof js, "{\"method\":\"sft\",\"model\":\"%s\",\"training_files\":[%s],"
                 "\"hyperparameters\":{\"batch_size\":4,\"n_epochs\":2,\"max_length\":32}}", g_base, files);
        al_job j;
        T_OK(al_job_parse(&j, js, strlen(js), g_err));
        T_OK(al_job_estimate(&j, &est[q], NULL));
        al_job_deinit(&j);
    }
    T_EQ_INT(est[0].examples, 20);
    T_EQ_INT(est[1].examples, 6);
    T_EQ_INT(est[2].examples, 26);
    T_EQ_INT(est[2].steps, 2 * 7);
    double per[3];
    for (int q = 0; q < 3; q++) per[q] = est[q].tokens / (est[q].steps * 4.0);
    T_NEAR(per[2], 0.75 * per[0] + 0.25 * per[1], 1e-9 * per[2]);
    T_TRUE(per[0] != per[1]);
}

int main(void) {
    al_pool_init(2);
    snprintf(g_base, sizeof g_base, "%s/base", t_tmpdir());
    t_shape s = {AL_ARCH_LLAMA, .layers = 1, .C = 32, .heads = 4, .kv_heads = 2, .FF = 64, .max_T = 64};
    T_OK(t_save_byte_model(s, 1, g_base, g_err));
    test_resume();
    test_resume_lora_dpo();
    test_kto();
    test_accumulation();
    test_fused_head_path();
    test_methods();
    test_watchdog();
    test_lora_no_match();
    test_eval_only();
    test_packing();
    test_chat_template();
    test_mixture_resume();
    return t_done();
}

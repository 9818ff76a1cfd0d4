/* Job cost estimates (see estimate.h). */
#include "estimate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../compute/ops.h"
#include "../io.h"
#include "../model/model.h"
#include "../tasks/tasks.h"
#include "../text/chat.h"
#include "../text/dataset.h"
#include "../text/tokenizer.h"
#include "objective.h"
#include "optim.h"

#include <pthread.h>

size_t al_config_num_params(const al_model_config *c, int score_head) {
    size_t C = (size_t)c->C, L = (size_t)c->n_layers, V = (size_t)c->V, FF = (size_t)c->FF;
    size_t q = C * (size_t)c->NH * (size_t)c->HD, kv = C * (size_t)c->NKV * (size_t)c->HD;
    size_t n = V * C, per;
    if (c->arch == AL_ARCH_GPT2) {
        n += (size_t)c->max_T * C;
        per = 4 * C + (q + 2 * kv + 3 * C) + (q + C) + (2 * C * FF + FF + C);
        n += 2 * C;
    } else {
        /* norms: 2 (Llama), 4 (Gemma), 2 after the branches only (OLMo-2) */
        size_t norms = (size_t)((c->no_pre_norm ? 0 : 2) + (c->post_norm ? 2 : 0));
        per = norms * C + q + 2 * kv + q + 3 * C * FF;
        if (c->qk_norm == AL_QK_HEAD) per += 2 * (size_t)c->HD;
        if (c->qk_norm == AL_QK_ALL) per += (size_t)(c->NH + c->NKV) * (size_t)c->HD;
        if (c->attn_bias) per += (size_t)(c->NH + 2 * c->NKV) * (size_t)c->HD;
        if (c->o_bias) per += C;
        if (c->mlp_bias) per += 2 * FF + C;
        n += C;
    }
    n += L * per;
    if (c->has_lm_head && !c->tie_word_embeddings) n += V * C;
    if (c->has_score || score_head) n += (size_t)(c->num_labels > 0 ? c->num_labels : 1) * C;
    return n;
}

/* ---- measured rates ---------------------------------------------------- */

/* What a probe model takes (seconds) on its batch: forward + backward (with
 * the job's gradient checkpointing), forward alone, and the per-step part
 * (zeroing the gradients, AdamW). */
typedef struct probe_time {
    double fb, f, opt;
} probe_time;

/* One measured shape. A model no bigger than the two probes is timed
 * itself (direct: `one` is the model); else `one` and `two` are one and two
 * of its layers under a vocabulary of Vs, the layer costing their
 * difference and the rest (embedding, LM head, per-call overheads) what the
 * one-layer probe takes beyond it. */
typedef struct rate_ent {
    al_model_config cfg;
    al_lora_cfg lora;          /* r 0: none */
    int bf16, ckpt, T0, B0;    /* B0 rows of T0 tokens: the micro-batch, up to a token budget */
    int fused;                 /* the probes' forward gets dlogp (al_step_plan.fused_head) */
    int direct, Vs;
    probe_time one, two;
} rate_ent;

enum { RATE_SLOTS = 16, PROBE_V = 4096, PROBE_TOKENS = 1024, DIRECT_TOKENS = 2048 };
static struct {
    pthread_mutex_t mu;
    rate_ent e[RATE_SLOTS];
    int n, next;
} g_rates = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int same_shape(const al_model_config *a, const al_model_config *b) {
    return a->arch == b->arch && a->C == b->C && a->NH == b->NH && a->NKV == b->NKV &&
           a->HD == b->HD && a->FF == b->FF && a->attn_bias == b->attn_bias &&
           a->mlp_bias == b->mlp_bias && a->qk_norm == b->qk_norm && a->post_norm == b->post_norm &&
           a->fused_proj == b->fused_proj && a->act == b->act && a->n_layers == b->n_layers && a->V == b->V &&
           a->tie_word_embeddings == b->tie_word_embeddings;
}

static int same_key(const rate_ent *a, const rate_ent *b) {
    return same_shape(&a->cfg, &b->cfg) && a->lora.r == b->lora.r && !strcmp(a->lora.targets, b->lora.targets) &&
           a->bf16 == b->bf16 && a->ckpt == b->ckpt && a->B0 == b->B0 && a->T0 == b->T0 && a->fused == b->fused;
}

/* Linear FLOPs per token of one layer (forward) and attention FLOPs per
 * token at length T (forward, causal: each query sees (T+1)/2 keys). */
static double layer_lin_flops(const al_model_config *c) {
    double C = c->C, q = (double)c->NH * c->HD, kv = (double)c->NKV * c->HD, FF = c->FF;
    double mlp = c->arch == AL_ARCH_GPT2 ? 2 * C * FF : 3 * C * FF;
    return 2.0 * (C * (q + 2 * kv) + q * C + mlp);
}
static double layer_att_flops(const al_model_config *c, double T) {
    return 2.0 * 2.0 * (double)c->NH * c->HD * (T + 1) / 2;
}

static double best_of(double a, double b) { return a < b ? a : b; }

/* A probe's config: cfg's layers cut to n_layers (each of layer 0's kind)
 * and its vocabulary to V, with an LM head and no score head. */
static al_model_config probe_config(const al_model_config *cfg, int n_layers, int V, int T0) {
    al_model_config c = *cfg;
    c.n_layers = n_layers;
    c.V = V;
    c.has_lm_head = 1;
    c.has_score = 0;
    if (c.max_T < T0) c.max_T = T0;
    for (int l = 0; l < AL_MAX_LAYERS; l++) c.layer_flags[l] = cfg->layer_flags[0];
    return c;
}

/* A probe model with its batch and optimiser, run as the trainer runs a
 * step: forward, backward, AdamW, zeroing the gradients. */
typedef struct probe {
    al_model *m;
    int fused; /* forwards get dlogp (rate_ent.fused) */
    al_adamw opt;
    int32_t *ids, *tgt;
    float *lp, *dl;
    al_tokens in;
    probe_time best;
} probe;

static void probe_close(probe *p) {
    al_adamw_deinit(&p->opt);
    free(p->ids); free(p->tgt); free(p->lp); free(p->dl);
    al_model_free(p->m);
    memset(p, 0, sizeof *p);
}

/* Builds model c for k's batch. The model's own errors (a LoRA
 * target_modules matching nothing, ...) come back as they are. */
static int probe_open(probe *p, const al_model_config *c, const rate_ent *k, al_error *err) {
    memset(p, 0, sizeof *p);
    int rc = al_model_create(&p->m, c, k->lora.r > 0 ? &k->lora : NULL, err);
    if (rc) return rc;
    char e2[AL_ERRLEN] = "out of memory";
    al_model_init(p->m, 1);
    if (k->bf16) rc = al_model_set_bf16(p->m, 1, e2);
    const int N = k->B0 * k->T0;
    if (!rc) rc = al_model_reserve(p->m, k->B0, k->T0, k->ckpt ? AL_MODEL_GRAD_CKPT : 0, e2);
    p->ids = calloc((size_t)N, sizeof *p->ids);
    p->tgt = calloc((size_t)N, sizeof *p->tgt);
    p->lp = calloc((size_t)N, sizeof *p->lp);
    p->dl = calloc((size_t)N, sizeof *p->dl);
    al_adamw_cfg oc;
    al_adamw_defaults(&oc);
    if (!rc && (!p->ids || !p->tgt || !p->lp || !p->dl)) rc = al_err(e2, AL_ENOMEM, "out of memory");
    if (!rc) rc = al_adamw_init(&p->opt, &oc, p->m);
    for (int t = 0; !rc && t < N; t++) {
        p->ids[t] = (int32_t)((t * 131u + 7u) % (unsigned)c->V);
        p->tgt[t] = (int32_t)((t * 197u + 3u) % (unsigned)c->V);
        p->dl[t] = -1.0f / (float)N;
    }
    p->in = (al_tokens){.B = k->B0, .T = k->T0, .ids = p->ids, .targets = p->tgt};
    p->fused = k->fused;
    p->best = (probe_time){1e30, 1e30, 1e30};
    if (rc) {
        probe_close(p);
        return al_fail_as(err, rc, "model", e2);
    }
    return AL_OK;
}

/* One step; its times count into p->best unless it is a warm-up. Returns
 * the step's seconds (>= 0) or an error (< 0). */
static double probe_step(probe *p, int warm_up, int *rc) {
    al_fwd f = {.logp = p->lp, .dlogp = p->fused ? p->dl : NULL};
    double t0 = al_now();
    *rc = al_model_forward(p->m, &p->in, &f);
    double t1 = al_now();
    if (!*rc) *rc = al_model_backward(p->m, &p->in, p->dl, NULL, NULL);
    double t2 = al_now();
    al_adamw_step(&p->opt, p->m, 0.0f, 1.0f);
    al_model_zero_grad(p->m);
    double t3 = al_now();
    if (!warm_up) {
        p->best.fb = best_of(p->best.fb, t2 - t0);
        p->best.f = best_of(p->best.f, t1 - t0);
        p->best.opt = best_of(p->best.opt, t3 - t2);
    }
    return t3 - t0;
}

/* Times the models of cs (one or two) on k's batch: after a warm-up each (the
 * products' primitives, the activations' first touch), steps taken in turn,
 * so that a load on the machine falls on both alike, the best of each kept
 * (at least two, up to eight within about 0.3 s). */
static int probes_run(const al_model_config *cs, int n, const rate_ent *k, probe_time *out, al_error *err) {
    probe p[2];
    int rc = AL_OK, opened = 0;
    while (opened < n && !(rc = probe_open(&p[opened], &cs[opened], k, err))) opened++;
    double spent = 0;
    for (int rep = 0; !rc && (rep < 3 || (rep < 9 && spent < 0.3)); rep++)
        for (int i = 0; i < n && !rc; i++) {
            double dt = probe_step(&p[i], rep == 0, &rc);
            if (rep > 0) spent += dt;
            if (rc) al_failf(err, rc, "timing the model: %s", al_strerror(rc));
        }
    for (int i = 0; i < opened; i++) {
        if (!rc) out[i] = p[i].best;
        probe_close(&p[i]);
    }
    return rc;
}

/* Whether a model is timed as it is: when it is no bigger than the two
 * probes that would stand for it. */
static int timed_whole(const al_model_config *cfg, int T0) {
    int Vs = cfg->V < PROBE_V ? cfg->V : PROBE_V;
    al_model_config c1 = probe_config(cfg, 1, Vs, T0), c2 = probe_config(cfg, 2, Vs, T0);
    return cfg->n_layers <= 2 || al_config_num_params(cfg, 0) <= al_config_num_params(&c1, 0) + al_config_num_params(&c2, 0);
}

/* Measures k's shape (see rate_ent). */
static int measure(rate_ent *k, al_error *err) {
    const al_model_config *cfg = &k->cfg;
    k->Vs = cfg->V < PROBE_V ? cfg->V : PROBE_V;
    probe_time t[2];
    al_model_config cs[2];
    if (k->direct) {
        cs[0] = probe_config(cfg, cfg->n_layers, cfg->V, k->T0);
        memcpy(cs[0].layer_flags, cfg->layer_flags, sizeof cs[0].layer_flags);
    } else {
        cs[0] = probe_config(cfg, 1, k->Vs, k->T0);
        cs[1] = probe_config(cfg, 2, k->Vs, k->T0);
    }
    int rc = probes_run(cs, k->direct ? 1 : 2, k, t, err);
    if (rc) return rc;
    k->one = t[0];
    if (!k->direct) k->two = t[1];
    return AL_OK;
}

/* Seconds of the whole model from a measured shape, per token at length T:
 * forward + backward (what 0) or forward alone (1); or the per-step part (2). */
static double rate_part(const rate_ent *r, int what, int T) {
    const al_model_config *c = &r->cfg;
    double x1 = what == 0 ? r->one.fb : what == 1 ? r->one.f : r->one.opt;
    double n0 = what == 2 ? 1 : (double)r->B0 * r->T0;
    if (r->direct) return x1 / n0; /* timed at the step's own T */
    double x2 = what == 0 ? r->two.fb : what == 1 ? r->two.f : r->two.opt;
    double d = x2 > x1 ? x2 - x1 : 0;
    /* with checkpointing the two-layer probe's backward recomputes its first
     * layer's forward (the one-layer probe's none): that much of d is the
     * recomputation, which L layers do L - 1 times */
    double redo = what == 0 && r->ckpt ? r->two.f - r->one.f : 0;
    if (redo < 0) redo = 0;
    if (redo > d) redo = d;
    double layer = d - redo, rest = x1 > layer ? x1 - layer : 0, L = c->n_layers;
    /* a layer's time per token grows with T through attention */
    double lin = layer_lin_flops(c);
    double scale_T = what == 2 ? 1 : (lin + layer_att_flops(c, T)) / (lin + layer_att_flops(c, r->T0));
    return ((L * layer + (L - 1) * redo) * scale_T + rest * (double)c->V / r->Vs) / n0;
}

int al_estimate_step(const al_model_config *cfg, const al_lora_cfg *lora, int bf16, const al_step_plan *p,
                     double *seconds, al_error *err) {
    al_error e = {"", ""};
    int all = p->rows > p->ref_rows ? p->rows : p->ref_rows;
    int micro = p->micro_rows > 0 && p->micro_rows < all ? p->micro_rows : all;
    int T = p->T < cfg->max_T ? p->T : cfg->max_T;
    if (T < 1) T = 1;
    rate_ent key = {.cfg = *cfg, .bf16 = bf16 != 0, .ckpt = p->grad_ckpt != 0, .fused = p->rows > 0 && p->fused_head};
    if (lora && lora->r > 0) key.lora = *lora;
    /* timed at the step's own micro-batch and row length (a large model's
     * probes at up to 256 tokens a row, scaled by attention's share beyond):
     * small products run below the large ones' rate, and per-call costs weigh
     * more in a small step */
    key.direct = timed_whole(cfg, T);
    key.T0 = key.direct ? T : T < 16 && cfg->max_T >= 16 ? 16 : T < 256 ? T : 256;
    int cap = (key.direct ? DIRECT_TOKENS : PROBE_TOKENS) / key.T0;
    key.B0 = micro < cap ? micro : cap;
    if (key.B0 < 1) key.B0 = 1;
    rate_ent r;
    int found = 0;
    pthread_mutex_lock(&g_rates.mu);
    for (int i = 0; i < g_rates.n && !found; i++)
        if (same_key(&g_rates.e[i], &key)) {
            r = g_rates.e[i];
            found = 1;
        }
    pthread_mutex_unlock(&g_rates.mu);
    if (!found) {
        r = key;
        int rc = measure(&r, &e);
        if (rc) return al_fail_as(err, rc, e.field[0] ? e.field : "model", e.msg);
        pthread_mutex_lock(&g_rates.mu);
        g_rates.e[g_rates.next] = r;
        g_rates.next = (g_rates.next + 1) % RATE_SLOTS;
        if (g_rates.n < RATE_SLOTS) g_rates.n++;
        pthread_mutex_unlock(&g_rates.mu);
    }
    double s = (double)p->rows * T * rate_part(&r, 0, T) + (double)p->ref_rows * T * rate_part(&r, 1, T);
    if (p->rows > 0) s += rate_part(&r, 2, T);
    *seconds = s;
    return AL_OK;
}

/* The config of a model folder, or of the base an adapter folder names. */
static int model_config(const char *dir, al_model_config *cfg, char err[AL_ERRLEN]) {
    char p[AL_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (al_file_exists(p)) return al_config_load(cfg, dir, err);
    char base[AL_PATH_MAX];
    int rc = al_model_adapter_base(dir, base, sizeof base, err);
    if (rc == AL_ENOENT) return al_err(err, rc, "%s: no config.json or adapter_config.json", dir);
    return rc ? rc : al_config_load(cfg, base, err);
}

static void clean_estimate(const char *path, al_estimate *e) {
    struct stat st;
    if (stat(path, &st) == 0) e->memory_bytes = (size_t)st.st_size * 4 + ((size_t)16 << 20);
    e->steps = 1;
}

static const char *data_method(const char *m) {
    if (!strcmp(m, "ppo") || !strcmp(m, "grpo") || !strcmp(m, "rloo")) return "rl";
    return m;
}

/* What an estimate derives from a job before it counts. */
typedef struct est_job {
    const al_objective_ops *ops; /* NULL for the sampling jobs */
    int data_job, rl, pair;
    int gens;          /* completions per prompt (1 outside RL and sampling) */
    int gen_len;       /* new tokens per completion (0 outside RL and sampling) */
    int ref_forward;   /* a reference model scores the rows */
    int fused_head;    /* the objective's dlogp is known before the forward (al_step_plan) */
    double tok_per_ex; /* tokens per example */
    int max_seq;       /* the longest row */
} est_job;

/* The examples of the job's task or files (e->examples), their tokens per
 * example and longest row (x->tok_per_ex, x->max_seq). */
static int count_data(const al_job *job, est_job *x, al_estimate *e, al_error *err) {
    char e2[AL_ERRLEN] = "";
    char tdir[AL_PATH_MAX];
    snprintf(tdir, sizeof tdir, "%s", job->model);
    al_tok *tok = NULL;
    al_chat *chat = NULL;
    int rc;
    if ((rc = al_tok_load(&tok, tdir, e2))) return al_fail_as(err, rc, "model", e2);
    if ((rc = al_chat_new(&chat, tok, job->chat_template, e2))) {
        al_tok_free(tok);
        return al_fail_as(err, rc, job->chat_template ? "chat_template" : "model", e2);
    }
    /* the field whose data failed: the model's chat template on a task's rows, else the file */
    char field[AL_FIELDLEN] = "model";
    double tok_per_ex = 0;
    int max_seq = 0;
    int pair = x->pair, gens = x->gens, gen_len = x->gen_len;
    if (job->task[0]) {
        long n = job->task_rows < 256 ? job->task_rows : 256;
        double sum = 0;
        for (long i = 0; i < n && !rc; i++) {
            al_task_row r;
            al_seq s = {0};
            if ((rc = al_task_row_get(job->task, job->task_split, job->task_seed, (uint64_t)i, &r))) break;
            rc = al_chat_encode_text(chat, r.prompt, strlen(r.prompt), r.answer, strlen(r.answer), &s, e2);
            if (!rc) {
                int len = s.n + gen_len;
                sum += (double)len * (pair ? 2 : gens);
                if (len + 2 > max_seq) max_seq = len + 2;
            }
            al_seq_deinit(&s);
        }
        e->examples = job->task_rows;
        tok_per_ex = n ? sum / (double)n : 0;
    } else {
        /* training_file, or each of training_files: an epoch is all their
         * examples, drawn from each file in proportion to its weight */
        al_data_opts o = {.method = data_method(job->method), .max_length = job->hp.max_length,
                          .dedupe = job->hp.dedupe};
        int nf = job->n_train_files ? job->n_train_files : job->training_file[0] ? 1 : 0;
        double wsum = 0;
        for (int f = 0; f < job->n_train_files; f++) wsum += job->train_files[f].weight;
        for (int f = 0; f < nf && !rc; f++) {
            al_dataset *ds = NULL;
            const char *path = job->n_train_files ? job->train_files[f].file : job->training_file;
            o.dataset_info = al_job_file_dataset_info(job, path);
            if (job->n_train_files) snprintf(field, sizeof field, "training_files[%d].file", f);
            else snprintf(field, sizeof field, "training_file");
            if ((rc = al_dataset_read_file(path, chat, &o, &ds, e2))) break;
            double sum = 0;
            for (int i = 0; i < ds->n_ex; i++)
                for (int k = 0; k < (pair ? 2 : 1); k++) {
                    int len = ds->ex[i].seq[k].n + gen_len;
                    sum += (double)len * (pair ? 1 : gens);
                    if (len > max_seq) max_seq = len;
                }
            e->examples += ds->n_ex;
            double share = job->n_train_files ? job->train_files[f].weight / wsum : 1;
            if (ds->n_ex) tok_per_ex += share * sum / ds->n_ex;
            al_dataset_free(ds);
        }
    }
    al_chat_free(chat);
    al_tok_free(tok);
    if (rc) return al_fail_as(err, rc, field, e2);
    x->tok_per_ex = tok_per_ex;
    x->max_seq = max_seq;
    return AL_OK;
}

/* Peak bytes: weights, gradients and moments, activations, the models
 * scoring beside the policy. */
static size_t memory_need(const al_job *job, const al_model_config *cfg, const est_job *x, const al_estimate *e) {
    int pair = x->pair, gens = x->gens, data_job = x->data_job, rl = x->rl;
    size_t P = e->parameters, Tr = e->trainable_parameters;
    int bf16 = job->hp.mixed_precision == AL_MP_BF16;
    /* bf16: frozen matrices held in bf16 alone, trained ones keep an fp32
     * master beside their bf16 copy */
    size_t weights = bf16 ? (job->use_lora || data_job ? 2 * P : 6 * P) : 4 * P;
    size_t frozen_w = bf16 ? 2 * P : 4 * P;
    size_t train = 4 * 3 * Tr;                        /* grads + AdamW m, v */
    size_t rows = (size_t)job->hp.micro_batch_size * (size_t)(pair ? 2 : gens);
    size_t T = (size_t)x->max_seq, C = (size_t)cfg->C, L = (size_t)cfg->n_layers;
    /* + the families' extra saved tensors: branch outputs before their
     * post-norms, q|k before their norms; attention keeps one log-sum-exp
     * per row and head (flash attention) */
    size_t extra = (cfg->post_norm ? 2 * C : 0) +
                   (cfg->qk_norm ? (size_t)(cfg->NH + cfg->NKV) * (size_t)cfg->HD : 0);
    /* per token and layer (model.c's al_model_reserve): the residual after
     * attention, q|k|v, the attention output, the MLP's first product; the
     * normed inputs of q|k|v and the MLP and the activation's output only
     * where the backward reads them (a trained map: all of them, or with
     * LoRA the adapted maps), in bf16 mode as their rounded bf16 copies
     * (but the normed inputs, which a bf16 backward computes again) */
    size_t FF = (size_t)cfg->FF, AH = (size_t)cfg->NH * (size_t)cfg->HD;
    size_t QKV = AH + 2 * (size_t)cfg->NKV * (size_t)cfg->HD;
    size_t UPW = cfg->arch == AL_ARCH_GPT2 ? FF : 2 * FF;
    int kept = job->use_lora ? al_lora_maps(cfg, &job->lora) : 15;
    size_t normed = bf16 ? 0 : C;
    size_t kept_f = ((kept & 1) ? normed : 0) + ((kept & 4) ? normed : 0) + ((kept & 8) ? FF : 0);
    if (data_job) kept_f = 0; /* forward only */
    /* q|k|v, the attention's output and the MLP's first product: bf16
     * training keeps them as the bf16 values attention, o_proj and the
     * activation read */
    size_t h1_f = bf16 && !data_job ? 0 : QKV + AH + UPW;
    if (!h1_f) kept_f += QKV + AH + UPW;
    size_t act_layer = rows * T * (C + h1_f + extra + 4) + rows * (size_t)cfg->NH * T;
    /* gradient checkpointing keeps one layer's set (the backward recomputes
     * each layer into it from the residual stream at its input, kept below) */
    size_t sets = job->hp.gradient_checkpointing && !data_job ? 1 : L;
    size_t kept_b = sets * rows * T * kept_f * (bf16 ? 2 : 4);
    /* + the residual stream at each layer's input and the backward's buffers
     * (d_h1 | d_h2, one buffer under GPT-2's gelu, sharing a region with
     * d_qkv | d_atty: model.c's bwd_wide) */
    size_t mlp_w = UPW + (cfg->arch == AL_ARCH_GPT2 ? 0 : FF), att_w = QKV + AH;
    size_t bwd_w = mlp_w > att_w ? mlp_w : att_w;
    size_t other = rows * T * ((L + 1) * C + (data_job ? 0 : 2 * C + bwd_w));
    size_t act = 4 * (sets * act_layer + other + rows * T * (size_t)cfg->V * 2) + kept_b;
    size_t ref = 0;
    if (x->ref_forward && !job->use_lora) ref = frozen_w;  /* a frozen copy while it scores */
    /* reward models, a judge, a separate critic: one more model each (the
     * policy's size is the estimate when their configs are not read) */
    size_t others = (size_t)job->reward.n_reward_models + (job->reward.judge_model[0] ? 1 : 0) +
                    (job->model_b[0] ? 1 : 0);
    size_t other_w = job->reward.bf16 ? 2 * P : 4 * P;
    size_t critic = rl && job->critic == AL_CRITIC_SEPARATE ? 3 * 4 * P + weights : 0;
    return weights + train + act + ref + others * other_w + critic + ((size_t)64 << 20);
}

/* Seconds per step and in all (e->seconds_per_step, e->seconds), from this
 * machine's measured rates. */
static int time_need(const al_job *job, const al_model_config *cfg, const est_job *x, al_estimate *e,
                     al_error *err) {
    int rc, pair = x->pair, gens = x->gens, gen_len = x->gen_len, rl = x->rl, max_seq = x->max_seq;
    int ref_forward = x->ref_forward;
    double tok_per_ex = x->tok_per_ex;
    int bf16 = job->hp.mixed_precision == AL_MP_BF16;
    const al_lora_cfg *lora = job->use_lora ? &job->lora : NULL;
    if (!x->data_job && e->steps > 0) {
        int per_step = job->hp.batch_size * (pair ? 2 : 1);
        double tok_ex = tok_per_ex / (pair ? 2 : gens);
        int Tavg = (int)ceil(tok_ex > 2 ? tok_ex : 2);
        if (Tavg > max_seq) Tavg = max_seq;
        al_step_plan p = {.rows = per_step, .micro_rows = job->hp.micro_batch_size * (pair ? 2 : 1), .T = Tavg,
                          .ref_rows = ref_forward && !job->hp.precompute_ref_log_probs ? per_step : 0,
                          .grad_ckpt = job->hp.gradient_checkpointing, .fused_head = x->fused_head};
        double step = 0;
        if ((rc = al_estimate_step(cfg, lora, bf16, &p, &step, err))) return rc;
        /* one row of a forward alone (generation, the reference's scoring once) */
        al_step_plan one = {.rows = 0, .micro_rows = 1, .T = Tavg, .ref_rows = 1};
        if (rl && gen_len > 0) {
            /* generation: a forward per new token of every completion (decoding
             * re-reads the weights per token: counted three times a training
             * forward's per-token cost, a rough figure) */
            double fwd1 = 0;
            if ((rc = al_estimate_step(cfg, lora, bf16, &one, &fwd1, err))) return rc;
            step += 3.0 * fwd1 / Tavg * (double)gen_len * job->hp.batch_size;
        }
        e->seconds_per_step = step;
        e->seconds = step * (double)e->steps;
        if (ref_forward && job->hp.precompute_ref_log_probs && !rl) {
            double once = 0; /* scoring the data once with the reference */
            if ((rc = al_estimate_step(cfg, NULL, bf16, &one, &once, err))) return rc;
            e->seconds += once * (double)e->examples * (pair ? 2 : 1);
        }
    } else if (x->data_job) {
        double fwd1 = 0;
        int Tavg = (int)ceil(tok_per_ex > 2 ? tok_per_ex / gens : 2);
        if (Tavg > max_seq) Tavg = max_seq;
        al_step_plan one = {.rows = 0, .micro_rows = 1, .T = Tavg, .ref_rows = 1};
        if ((rc = al_estimate_step(cfg, NULL, bf16, &one, &fwd1, err))) return rc;
        e->seconds = 3.0 * fwd1 / Tavg * (double)(gen_len > 0 ? gen_len : 1) * (double)e->examples * gens;
    }
    return AL_OK;
}

int al_job_estimate(const al_job *job, al_estimate *out, al_error *err) {
    if (!strcmp(job->method, "clean_data")) {
        /* no model: the file's bytes a few times over (rows, report, output) */
        memset(out, 0, sizeof *out);
        clean_estimate(job->training_file, out);
        return AL_OK;
    }
    al_model_config cfg;
    char e2[AL_ERRLEN] = "";
    int rc = model_config(job->model, &cfg, e2);
    if (rc) return al_fail_as(err, rc, "model", e2);
    /* sampling jobs (generate_preferences, evaluate, critique_revise) train
     * nothing; RL methods generate completions and score them */
    est_job x = {.ops = al_objective_find(job->method), .data_job = al_method_is_data(job->method),
                 .rl = al_method_is_rl(job->method)};
    const al_objective_ops *ops = x.ops;
    int data_job = x.data_job, rl = x.rl;
    if (!ops && !data_job) return AL_FAIL(err, AL_EINVAL, "method", "unknown '%s'", job->method);
    int score = !strcmp(job->method, "reward_model");
    al_estimate e;
    memset(&e, 0, sizeof e);
    e.parameters = al_config_num_params(&cfg, score);
    e.trainable_parameters = data_job ? 0
                             : job->use_lora ? al_lora_num_params(&cfg, &job->lora) + (score ? (size_t)cfg.C : 0)
                                             : e.parameters;

    /* data: examples and tokens */
    x.pair = ops && ops->batch == AL_BATCH_PAIR;
    x.gens = (rl || data_job) && job->hp.num_generations > 0 ? job->hp.num_generations : 1;
    /* RL and sampling: each prompt is continued gens times, up to max_completion_length new tokens */
    x.gen_len = rl || data_job ? (job->hp.max_completion_length > 0 ? job->hp.max_completion_length : 0) : 0;
    if ((rc = count_data(job, &x, &e, err))) return rc;
    int max_seq = x.max_seq;
    if (!x.gen_len && max_seq > job->hp.max_length) max_seq = job->hp.max_length;
    if (max_seq < 2) max_seq = 2;
    if (cfg.max_T > 0 && max_seq > cfg.max_T) max_seq = cfg.max_T;
    x.max_seq = max_seq;
    long per_epoch = (e.examples + job->hp.batch_size - 1) / job->hp.batch_size;
    e.steps = data_job ? 0 : job->hp.max_steps >= 0 ? job->hp.max_steps : per_epoch * job->hp.n_epochs;
    double ex_seen = data_job ? (double)e.examples : (double)e.steps * job->hp.batch_size;
    e.tokens = ex_seen * x.tok_per_ex;
    e.max_seq = max_seq;

    x.ref_forward = ops && ops->needs_ref && (!job->hp.precompute_ref_log_probs || job->ref_model[0] || rl);
    x.fused_head = ops && ops->needs_lm && ops->dlogp_prior && !rl; /* as the trainer's micro_batch */
    e.memory_bytes = memory_need(job, &cfg, &x, &e);
    if ((rc = time_need(job, &cfg, &x, &e, err))) return rc;
    *out = e;
    return AL_OK;
}

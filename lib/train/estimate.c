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

static size_t lora_params(const al_model_config *c, const al_lora_cfg *l);

/* ---- measured rates ---------------------------------------------------- */

/* One shape's figures: seconds per token of one layer's forward + backward
 * (and forward alone) at T0, of the LM head per vocabulary entry, of AdamW
 * per trained parameter, and the attention's share of a layer's FLOPs at T0. */
typedef struct rate_ent {
    al_model_config cfg;       /* the shape (n_layers, V ignored) */
    int lora_r, bf16, T0, B0;
    char targets[256];
    double layer_tok, layer_fwd_tok, head_tok_v, head_fwd_tok_v, opt_param, lora_frac;
} rate_ent;

enum { RATE_SLOTS = 16 };
static struct {
    pthread_mutex_t mu;
    rate_ent e[RATE_SLOTS];
    int n, next;
} g_rates = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int same_shape(const al_model_config *a, const al_model_config *b) {
    return a->arch == b->arch && a->C == b->C && a->NH == b->NH && a->NKV == b->NKV &&
           a->HD == b->HD && a->FF == b->FF && a->attn_bias == b->attn_bias &&
           a->mlp_bias == b->mlp_bias && a->qk_norm == b->qk_norm && a->post_norm == b->post_norm &&
           a->fused_proj == b->fused_proj && a->act == b->act;
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

/* Times the pieces on the pool (see al_estimate_step). */
static int measure(rate_ent *r, char err[AL_ERRLEN]) {
    al_model_config c = r->cfg;
    c.n_layers = 1;
    c.V = r->cfg.V < 4096 ? r->cfg.V : 4096;
    c.has_lm_head = 1;
    c.has_score = 0;
    c.tie_word_embeddings = 1;
    if (c.max_T < r->T0) c.max_T = r->T0;
    for (int l = 0; l < AL_MAX_LAYERS; l++) c.layer_flags[l] = r->cfg.layer_flags[0];
    al_lora_cfg lc = {.r = r->lora_r, .alpha = 2.0f * (float)(r->lora_r > 0 ? r->lora_r : 1)};
    snprintf(lc.targets, sizeof lc.targets, "%s", r->targets);
    al_model *m = al_model_new(&c, r->lora_r > 0 ? &lc : NULL, err);
    if (!m) return AL_ENOMEM;
    al_model_init(m, 1);
    int rc = r->bf16 ? al_model_set_bf16(m, 1, err) : AL_OK;
    const int T = r->T0 * r->B0; /* B0 rows of T0, as one long row of the same products */
    if (!rc) rc = al_model_reserve(m, r->B0, r->T0, 0, err);
    int32_t *ids = calloc((size_t)T, sizeof *ids), *tgt = calloc((size_t)T, sizeof *tgt);
    float *lp = calloc((size_t)T, sizeof *lp), *dl = calloc((size_t)T, sizeof *dl);
    al_adamw opt = {0};
    al_adamw_cfg oc;
    al_adamw_defaults(&oc);
    if (!rc && (!ids || !tgt || !lp || !dl)) rc = al_err(err, AL_ENOMEM, "out of memory");
    if (!rc) rc = al_adamw_init(&opt, &oc, m);
    for (int t = 0; !rc && t < T; t++) {
        ids[t] = (int32_t)((t * 131u + 7u) % (unsigned)c.V);
        tgt[t] = (int32_t)((t * 197u + 3u) % (unsigned)c.V);
        dl[t] = -1.0f / (float)T;
    }
    al_tokens in = {.B = r->B0, .T = r->T0, .ids = ids, .targets = tgt};
    al_fwd f = {.logp = lp};
    double step = 1e30, fwd = 1e30, optt = 1e30;
    for (int k = 0; !rc && k < 4; k++) { /* the first warms caches and primitives up */
        double t0 = al_now();
        al_model_zero_grad(m);
        rc = al_model_forward(m, &in, &f);
        double t1 = al_now();
        if (!rc) rc = al_model_backward(m, &in, dl, NULL, NULL);
        double t2 = al_now();
        al_adamw_step(&opt, m, 0.0f);
        double t3 = al_now();
        if (k > 0) {
            step = best_of(step, t2 - t0);
            fwd = best_of(fwd, t1 - t0);
            optt = best_of(optt, t3 - t2);
        }
    }
    /* the LM head alone: the same vocabulary slice with no layer to speak of */
    double head = 0, headf = 0;
    if (!rc) {
        size_t C = (size_t)c.C, V = (size_t)c.V;
        int chunk = T < 128 ? T : 128;
        float *h = calloc((size_t)T * C, sizeof(float)), *w = calloc(V * C, sizeof(float));
        float *sc = calloc((size_t)chunk * (C + V) * 2, sizeof(float));
        float *lse = calloc((size_t)T, sizeof(float)), *dh = calloc((size_t)T * C, sizeof(float));
        float *dw = calloc(V * C, sizeof(float));
        uint16_t *w16 = calloc(V * C, sizeof(uint16_t)), *s16 = calloc((size_t)chunk * (C + V), sizeof(uint16_t));
        if (!h || !w || !sc || !lse || !dh || !dw || !w16 || !s16) rc = al_err(err, AL_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < V * C; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-4f - 0.05f;
        for (size_t i = 0; !rc && i < (size_t)T * C; i++) h[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
        if (!rc) al_bf16_round(w16, w, V * C);
        double hb = 1e30, hf = 1e30;
        for (int k = 0; !rc && k < 4; k++) {
            double t0 = al_now();
            if (r->bf16) al_lmhead_forward_bf16(lp, NULL, lse, NULL, h, w16, tgt, T, c.C, c.V, 1.0f, 0.0f, sc, s16, chunk);
            else al_lmhead_forward(lp, NULL, lse, NULL, h, w, tgt, T, c.C, c.V, 1.0f, 0.0f, sc, chunk);
            double t1 = al_now();
            if (r->bf16)
                al_lmhead_backward_bf16(dh, dw, dl, NULL, h, w16, tgt, lse, NULL, T, c.C, c.V, 1.0f, 0.0f, sc, s16, chunk);
            else al_lmhead_backward(dh, dw, dl, NULL, h, w, tgt, lse, NULL, T, c.C, c.V, 1.0f, 0.0f, sc, chunk);
            double t2 = al_now();
            if (k > 0) {
                hb = best_of(hb, t2 - t0);
                hf = best_of(hf, t1 - t0);
            }
        }
        head = hb;
        headf = hf;
        free(h); free(w); free(sc); free(lse); free(dh); free(dw); free(w16); free(s16);
    }
    if (!rc) {
        /* the model's step minus its own head: one layer (embedding included) */
        r->layer_tok = (step > head ? step - head : step * 0.5) / T;
        r->layer_fwd_tok = (fwd > headf ? fwd - headf : fwd * 0.5) / T;
        r->head_tok_v = head / T / c.V;
        r->head_fwd_tok_v = headf / T / c.V;
        size_t ntr = al_model_num_params(m, 1);
        r->opt_param = ntr ? optt / (double)ntr : 0;
    }
    al_adamw_deinit(&opt);
    free(ids); free(tgt); free(lp); free(dl);
    al_model_free(m);
    return rc;
}

int al_estimate_step(const al_model_config *cfg, const al_lora_cfg *lora, int bf16, int rows,
                     int T, int ref_rows, double *seconds, char err[AL_ERRLEN]) {
    int lora_r = lora && lora->r > 0 ? lora->r : 0;
    /* measured at the step's own row length (up to 256) and row count (up
     * to 1024 tokens): small products run at a lower rate than large ones */
    int T0 = T < 256 ? T : 256;
    if (T0 > cfg->max_T) T0 = cfg->max_T;
    if (T0 < 16) T0 = cfg->max_T < 16 ? cfg->max_T : 16;
    int all = rows + ref_rows, B0 = 1024 / T0;
    if (B0 > all) B0 = all;
    if (B0 < 1) B0 = 1;
    rate_ent key = {.cfg = *cfg, .lora_r = lora_r, .bf16 = bf16 != 0, .T0 = T0, .B0 = B0};
    if (lora_r) snprintf(key.targets, sizeof key.targets, "%s", lora->targets);
    rate_ent r;
    int found = 0, rc = AL_OK;
    pthread_mutex_lock(&g_rates.mu);
    for (int i = 0; i < g_rates.n && !found; i++) {
        const rate_ent *e = &g_rates.e[i];
        if (same_shape(&e->cfg, cfg) && e->lora_r == lora_r && e->bf16 == key.bf16 && e->T0 == T0 && e->B0 == B0 &&
            !strcmp(e->targets, key.targets)) {
            r = *e;
            found = 1;
        }
    }
    pthread_mutex_unlock(&g_rates.mu);
    if (!found) {
        r = key;
        if ((rc = measure(&r, err))) return rc;
        pthread_mutex_lock(&g_rates.mu);
        g_rates.e[g_rates.next] = r;
        g_rates.next = (g_rates.next + 1) % RATE_SLOTS;
        if (g_rates.n < RATE_SLOTS) g_rates.n++;
        pthread_mutex_unlock(&g_rates.mu);
    }
    /* a layer's time per token: its linear part, and attention growing with T */
    double lin = layer_lin_flops(cfg), a0 = layer_att_flops(cfg, T0), a1 = layer_att_flops(cfg, T);
    double scale_T = (lin + a1) / (lin + a0);
    double L = cfg->n_layers, V = cfg->V, tok = (double)rows * T, rtok = (double)ref_rows * T;
    double s = tok * (L * r.layer_tok * scale_T + V * r.head_tok_v) +
               rtok * (L * r.layer_fwd_tok * scale_T + V * r.head_fwd_tok_v);
    size_t trained = lora_r ? 0 : al_config_num_params(cfg, 0);
    if (lora_r) trained = lora_params(cfg, lora); /* the adapters */
    s += (double)trained * r.opt_param;
    *seconds = s;
    return AL_OK;
}

static int targeted(const char *targets, const char *name) {
    if (!strcmp(targets, "all-linear")) return 1;
    size_t n = strlen(name);
    for (const char *p = targets; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* LoRA parameters: r * (in + out) per targeted linear per layer. */
static size_t lora_params(const al_model_config *c, const al_lora_cfg *l) {
    size_t C = (size_t)c->C, FF = (size_t)c->FF, r = (size_t)l->r;
    size_t qo = (size_t)c->NH * (size_t)c->HD, kv = (size_t)c->NKV * (size_t)c->HD, per = 0;
    if (c->arch == AL_ARCH_GPT2) {
        if (targeted(l->targets, "c_attn")) per += r * (C + qo + 2 * kv);
        if (targeted(l->targets, "c_proj")) per += r * (qo + C) + r * (FF + C);
        if (targeted(l->targets, "c_fc")) per += r * (C + FF);
    } else if (c->fused_proj) { /* Phi-3 */
        if (targeted(l->targets, "qkv_proj")) per += r * (C + qo + 2 * kv);
        if (targeted(l->targets, "o_proj")) per += r * (qo + C);
        if (targeted(l->targets, "gate_up_proj")) per += r * (C + 2 * FF);
        if (targeted(l->targets, "down_proj")) per += r * (FF + C);
    } else {
        if (targeted(l->targets, "q_proj")) per += r * (C + qo);
        if (targeted(l->targets, "k_proj")) per += r * (C + kv);
        if (targeted(l->targets, "v_proj")) per += r * (C + kv);
        if (targeted(l->targets, "o_proj")) per += r * (qo + C);
        if (targeted(l->targets, "gate_proj")) per += r * (C + FF);
        if (targeted(l->targets, "up_proj")) per += r * (C + FF);
        if (targeted(l->targets, "down_proj")) per += r * (FF + C);
    }
    return per * (size_t)c->n_layers;
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
     * LoRA the adapted maps), in bf16 mode as their rounded bf16 copies */
    size_t FF = (size_t)cfg->FF, AH = (size_t)cfg->NH * (size_t)cfg->HD;
    size_t QKV = AH + 2 * (size_t)cfg->NKV * (size_t)cfg->HD;
    size_t UPW = cfg->arch == AL_ARCH_GPT2 ? FF : 2 * FF;
    int kept = job->use_lora ? al_lora_maps(cfg, &job->lora) : 15;
    size_t kept_f = ((kept & 1) ? C : 0) + ((kept & 4) ? C : 0) + ((kept & 8) ? FF : 0);
    if (data_job) kept_f = 0; /* forward only */
    /* q|k|v, the attention's output and the MLP's first product: bf16
     * training keeps them as the bf16 values attention, o_proj and the
     * activation read */
    size_t h1_f = bf16 && !data_job ? 0 : QKV + AH + UPW;
    if (!h1_f) kept_f += QKV + AH + UPW;
    size_t act_layer = rows * T * (C + h1_f + extra + 4) + rows * (size_t)cfg->NH * T;
    size_t kept_b = L * rows * T * kept_f * (bf16 ? 2 : 4);
    /* + the residual stream at each layer's input and the backward's buffers */
    size_t other = rows * T * ((L + 1) * C + (data_job ? 0 : 2 * C + QKV + AH + UPW + FF));
    size_t act = 4 * (L * act_layer + other + rows * T * (size_t)cfg->V * 2) + kept_b;
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
    char e2[AL_ERRLEN] = "";
    int rc, pair = x->pair, gens = x->gens, gen_len = x->gen_len, rl = x->rl, max_seq = x->max_seq;
    int ref_forward = x->ref_forward;
    double tok_per_ex = x->tok_per_ex;
    int bf16 = job->hp.mixed_precision == AL_MP_BF16;
    if (!x->data_job && e->steps > 0) {
        int per_step = job->hp.batch_size * (pair ? 2 : 1);
        double tok_ex = tok_per_ex / (pair ? 2 : gens);
        int Tavg = (int)ceil(tok_ex > 2 ? tok_ex : 2);
        if (Tavg > max_seq) Tavg = max_seq;
        double step = 0;
        if ((rc = al_estimate_step(cfg, job->use_lora ? &job->lora : NULL, bf16, per_step, Tavg,
                                   ref_forward && !job->hp.precompute_ref_log_probs ? per_step : 0, &step,
                                   e2)))
            return al_fail_as(err, rc, "model", e2);
        if (rl && gen_len > 0) {
            /* generation: a forward per new token of every completion (decoding
             * re-reads the weights per token: counted three times a training
             * forward's per-token cost, a rough figure) */
            double fwd1 = 0;
            if ((rc = al_estimate_step(cfg, job->use_lora ? &job->lora : NULL, bf16, 0, Tavg, 1, &fwd1,
                                       e2)))
                return al_fail_as(err, rc, "model", e2);
            step += 3.0 * fwd1 / Tavg * (double)gen_len * job->hp.batch_size;
        }
        e->seconds_per_step = step;
        e->seconds = step * (double)e->steps;
        if (ref_forward && job->hp.precompute_ref_log_probs && !rl) {
            double once = 0; /* scoring the data once with the reference */
            if ((rc = al_estimate_step(cfg, NULL, bf16, 0, Tavg, 1, &once, e2))) return al_fail_as(err, rc, "model", e2);
            e->seconds += once * (double)e->examples * (pair ? 2 : 1);
        }
    } else if (x->data_job) {
        double fwd1 = 0;
        int Tavg = (int)ceil(tok_per_ex > 2 ? tok_per_ex / gens : 2);
        if (Tavg > max_seq) Tavg = max_seq;
        if ((rc = al_estimate_step(cfg, NULL, bf16, 0, Tavg, 1, &fwd1, e2))) return al_fail_as(err, rc, "model", e2);
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
                             : job->use_lora ? lora_params(&cfg, &job->lora) + (score ? (size_t)cfg.C : 0)
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
    e.memory_bytes = memory_need(job, &cfg, &x, &e);
    if ((rc = time_need(job, &cfg, &x, &e, err))) return rc;
    *out = e;
    return AL_OK;
}

/* Job cost estimates (see estimate.h). */
#include "estimate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io.h"
#include "../model/model.h"
#include "../tasks/tasks.h"
#include "../text/chat.h"
#include "../text/dataset.h"
#include "../text/tokenizer.h"
#include "objective.h"

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
    const al_objective_ops *ops = al_objective_find(job->method);
    int data_job = al_method_is_data(job->method), rl = al_method_is_rl(job->method);
    if (!ops && !data_job) return AL_FAIL(err, AL_EINVAL, "method", "unknown '%s'", job->method);
    int score = !strcmp(job->method, "reward_model");
    al_estimate e;
    memset(&e, 0, sizeof e);
    e.parameters = al_config_num_params(&cfg, score);
    e.trainable_parameters = data_job ? 0
                             : job->use_lora ? lora_params(&cfg, &job->lora) + (score ? (size_t)cfg.C : 0)
                                             : e.parameters;

    /* data: examples and tokens */
    char tdir[AL_PATH_MAX];
    snprintf(tdir, sizeof tdir, "%s", job->model);
    al_tok *tok = NULL;
    al_chat *chat = NULL;
    if ((rc = al_tok_load(&tok, tdir, e2))) return al_fail_as(err, rc, "model", e2);
    if ((rc = al_chat_new(&chat, tok, job->chat_template, e2))) {
        al_tok_free(tok);
        return al_fail_as(err, rc, job->chat_template ? "chat_template" : "model", e2);
    }
    /* the field whose data failed: the model's chat template on a task's rows, else the file */
    char field[AL_FIELDLEN] = "model";
    double tok_per_ex = 0;
    int max_seq = 0;
    int pair = ops && ops->batch == AL_BATCH_PAIR;
    int gens = (rl || data_job) && job->hp.num_generations > 0 ? job->hp.num_generations : 1;
    /* RL and sampling: each prompt is continued gens times, up to max_completion_length new tokens */
    int gen_len = rl || data_job ? (job->hp.max_completion_length > 0 ? job->hp.max_completion_length : 0) : 0;
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
        e.examples = job->task_rows;
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
            o.sharegpt = al_job_file_sharegpt(job, path);
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
            e.examples += ds->n_ex;
            double share = job->n_train_files ? job->train_files[f].weight / wsum : 1;
            if (ds->n_ex) tok_per_ex += share * sum / ds->n_ex;
            al_dataset_free(ds);
        }
    }
    al_chat_free(chat);
    al_tok_free(tok);
    if (rc) return al_fail_as(err, rc, field, e2);
    if (!gen_len && max_seq > job->hp.max_length) max_seq = job->hp.max_length;
    if (max_seq < 2) max_seq = 2;
    if (cfg.max_T > 0 && max_seq > cfg.max_T) max_seq = cfg.max_T;
    long per_epoch = (e.examples + job->hp.batch_size - 1) / job->hp.batch_size;
    e.steps = data_job ? 0 : job->hp.max_steps >= 0 ? job->hp.max_steps : per_epoch * job->hp.n_epochs;
    double ex_seen = data_job ? (double)e.examples : (double)e.steps * job->hp.batch_size;
    e.tokens = ex_seen * tok_per_ex;
    e.max_seq = max_seq;

    /* memory */
    size_t P = e.parameters, Tr = e.trainable_parameters;
    size_t weights = 4 * P, train = 4 * 3 * Tr;       /* grads + AdamW m, v */
    size_t rows = (size_t)job->hp.micro_batch_size * (size_t)(pair ? 2 : gens);
    size_t T = (size_t)max_seq, C = (size_t)cfg.C, L = (size_t)cfg.n_layers;
    /* + the families' extra saved tensors: branch outputs before their
     * post-norms, q|k before their norms */
    size_t extra = (cfg.post_norm ? 2 * C : 0) +
                   (cfg.qk_norm ? (size_t)(cfg.NH + cfg.NKV) * (size_t)cfg.HD : 0);
    size_t act_layer = rows * T * (12 * C + 2 * (size_t)cfg.FF + extra) + rows * (size_t)cfg.NH * T * T;
    size_t act = 4 * (L * act_layer + rows * T * (size_t)cfg.V * 2);
    size_t ref = 0;
    if (ops && ops->needs_ref && (!job->hp.precompute_ref_log_probs || job->ref_model[0] || rl) && !job->use_lora)
        ref = weights;  /* a frozen copy while it scores */
    /* reward models, a judge, a separate critic: one more model each (the
     * policy's size is the estimate when their configs are not read) */
    size_t others = (size_t)job->reward.n_reward_models + (job->reward.judge_model[0] ? 1 : 0) +
                    (job->model_b[0] ? 1 : 0);
    if (rl && job->critic == AL_CRITIC_SEPARATE) others += 3; /* weights, gradients, AdamW moments */
    e.memory_bytes = weights + train + act + ref + others * weights + ((size_t)64 << 20);
    /* 6 FLOPs per parameter per token (forward + backward), 2 GFLOP/s per core */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    e.seconds = 6.0 * (double)P * e.tokens / (2e9 * (double)(cores > 0 ? cores : 1));
    *out = e;
    return AL_OK;
}

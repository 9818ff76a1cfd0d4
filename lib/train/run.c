/* The run skeleton (see run.h): the step loop with its hooks, the world of
 * a data-parallel run, checkpoint folders, and the pieces the data jobs
 * share. The loop keeps what TRL's Trainer keeps in its training loop: step
 * 0 measured before any update (alignd's addition: a run's starting point
 * on its charts), logging every logging_steps (and the last step),
 * evaluation every eval_steps (and the last), checkpoints every save_steps
 * (but the last, which is the output folder). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "run.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io.h"
#include "../text/chat.h"

void al_mlist_put(al_mlist *l, const char *name, double v) {
    if (l->n >= 2 * AL_MAX_METRICS) return;
    snprintf(l->m[l->n].name, sizeof l->m[l->n].name, "%s", name);
    l->m[l->n++].value = v;
}

void al_run_event(const al_train_cb *cb, al_log_level lvl, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (cb && cb->event) cb->event(cb->ud, lvl, buf);
}

void al_run_event_line(void *ud, const char *line) { al_run_event(ud, AL_LOG_INFO, "%s", line); }

int al_run_copy_tokenizer(const al_job *job, const char *dir, char err[AL_ERRLEN]) {
    return al_chat_copy_files(job->model, dir, job->chat_template, err);
}

/* ---- the world ------------------------------------------------------------------- */

void al_ckpt_world(const char *dir, int *global_batch, int *world) {
    *global_batch = *world = 0;
    char path[AL_PATH_MAX + 64], *txt, e2[AL_ERRLEN];
    size_t len;
    if (!dir) return;
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    if (al_file_read(path, 1 << 20, &txt, &len, e2) != AL_OK) return; /* the resume hook reports it */
    json_t *st = json_loadb(txt, len, 0, NULL);
    free(txt);
    json_t *gb = json_object_get(st, "global_batch_size"), *ws = json_object_get(st, "world_size");
    if (json_is_integer(gb) && json_integer_value(gb) > 0 && json_integer_value(gb) <= (1 << 30) &&
        json_is_integer(ws) && json_integer_value(ws) > 0 && json_integer_value(ws) <= 65536) {
        *global_batch = (int)json_integer_value(gb);
        *world = (int)json_integer_value(ws);
    }
    json_decref(st);
}

int al_run_world(al_run *run, const char *resume_dir, int *global) {
    run->rank = al_dist_rank();
    run->world = run->world0 = al_dist_size();
    if ((long)run->hp->batch_size * run->world > (1L << 30))
        return al_err(run->err.msg, AL_EINVAL, "hyperparameters.batch_size: %d on %d ranks is too large a global batch",
                      run->hp->batch_size, run->world);
    int gb, ws;
    al_ckpt_world(resume_dir, &gb, &ws);
    if (gb > 0) run->world0 = ws;
    *global = gb > 0 ? gb : run->hp->batch_size * run->world;
    return AL_OK;
}

int al_run_dist_start(al_run *run, int n, al_model *const *m, al_ddp **ddp, al_adamw *const *opt) {
    const al_hparams *hp = run->hp;
    al_adamw_cfg oc = {.lr = hp->learning_rate, .beta1 = hp->adam_beta1, .beta2 = hp->adam_beta2,
                       .eps = hp->adam_epsilon, .weight_decay = hp->weight_decay};
    char e2[AL_ERRLEN];
    int rc = AL_OK;
    for (int i = 0; i < n && !rc; i++) rc = al_ddp_new(&ddp[i], m[i], &run->job->dist, e2);
    if (rc) return al_err(run->err.msg, rc, "%s", e2);
    for (int i = 0; i < n; i++)
        if ((rc = al_ddp_adamw_init(ddp[i], opt[i], &oc, m[i]))) return al_err(run->err.msg, rc, "out of memory for AdamW");
    return AL_OK;
}

float al_run_lr(const al_run *run) {
    const al_hparams *hp = run->hp;
    long warmup = (long)ceil(hp->warmup_ratio * (double)run->total_steps);
    return al_sched_lr(hp->lr_scheduler_type, hp->learning_rate, run->step, warmup, run->total_steps);
}

/* ---- checkpoints ------------------------------------------------------------------- */

int al_run_write_dir(al_run *run, const char *dir, int rc, int (*fill)(void *u, const char *tmp), void *u) {
    if (rc || run->rank != 0) return rc;
    char tmp[AL_PATH_MAX + 32], e2[AL_ERRLEN];
    int in_place = al_file_exists(dir);
    if (snprintf(tmp, sizeof tmp, "%s%s", dir, in_place ? "" : ".tmp") >= (int)sizeof tmp)
        return al_err(run->err.msg, AL_EINVAL, "%s: the path is too long", dir);
    if (!(rc = al_mkdir_p(tmp, run->err.msg)) && !(rc = fill(u, tmp)) && !in_place && rename(tmp, dir) != 0)
        rc = al_err(run->err.msg, AL_EIO, "%s: %s", dir, strerror(errno));
    if (rc && !in_place) al_rmtree(tmp, e2);
    return rc;
}

int al_run_save_weights(al_run *run, al_model *m, const char *dir, const char *base, int adapter) {
    if (adapter) {
        char real[PATH_MAX];
        const char *b = realpath(base, real) ? real : base;
        return al_model_save_adapter(m, dir, b, run->err.msg);
    }
    return al_model_save(m, dir, run->err.msg);
}

int al_run_save_opt(al_run *run, const char *dir, const float *m, const float *v, size_t n, al_model *model) {
    char path[AL_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    return al_adamw_save_file(path, m, v, n, model, run->err.msg);
}

int al_run_load_opt(al_run *run, al_adamw *o, al_model *m, const char *dir) {
    char path[AL_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    return al_adamw_load_file(o, m, path, al_model_num_params(m, 1), run->err.msg);
}

int al_run_save_state(al_run *run, const char *dir, json_t *st) {
    char path[AL_PATH_MAX + 64];
    char *txt = st ? json_dumps(st, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(st);
    if (!txt) return al_err(run->err.msg, AL_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    int rc = al_file_write_atomic(path, txt, strlen(txt), run->err.msg);
    free(txt);
    return rc;
}

int al_run_load_state(al_run *run, const char *dir, json_t **st, char path[AL_PATH_MAX + 64]) {
    char *txt;
    size_t len;
    snprintf(path, AL_PATH_MAX + 64, "%s/trainer_state.json", dir);
    int rc = al_file_read(path, 1 << 20, &txt, &len, run->err.msg);
    if (rc) return rc;
    json_error_t je;
    *st = json_loadb(txt, len, 0, &je);
    free(txt);
    return AL_OK;
}

/* ---- the loop ------------------------------------------------------------------------ */

static void emit(const al_run *run, long step, const al_mlist *l) {
    if (run->cb && run->cb->log) {
        double epoch = run->steps_per_epoch ? (double)step / (double)run->steps_per_epoch : 0;
        run->cb->log(run->cb->ud, step, epoch, l->m, l->n);
    }
}

static void put_at(al_mlist *l, int at, const char *name, double v) {
    if (l->n >= 2 * AL_MAX_METRICS) return;
    if (at > l->n) at = l->n;
    memmove(l->m + at + 1, l->m + at, (size_t)(l->n - at) * sizeof *l->m);
    l->n++;
    snprintf(l->m[at].name, sizeof l->m[at].name, "%s", name);
    l->m[at].value = v;
}

/* After backward: the gradients of this rank are complete. Summed over the
 * ranks here — the one place — by every rank, one whose backward failed
 * too (the others wait in the collective), and the outcome agreed. */
static int after_backward(al_run *run, int rc) {
    char e2[AL_ERRLEN];
    for (int i = 0; i < 2; i++) {
        int ri = al_ddp_reduce(run->ddp[i], e2);
        if (!rc && ri) rc = al_err(run->err.msg, ri, "%s", e2);
    }
    return al_dist_agree_err(rc, &run->err);
}

static int one_step(al_run *run, const al_run_ops *ops, void *u, al_mlist *l) {
    float lr = al_run_lr(run);
    int n_updates = ops->backward ? 1 : 0; /* a data job: no update */
    int rc = ops->before_step(u, run->step, &n_updates);
    for (int k = 0; !rc && ops->backward && k < n_updates; k++) {
        rc = after_backward(run, ops->backward(u, k));
        if (!rc) rc = ops->optimizer(u, k, lr);
    }
    return rc ? rc : ops->after_step(u, lr, l);
}

/* A checkpoint of the step into dir (collective). */
static int checkpoint(al_run *run, const al_run_ops *ops, void *u, const char *dir, al_train_result *res) {
    int rc = ops->save(u, dir);
    if (rc) return rc;
    snprintf(res->last_checkpoint, sizeof res->last_checkpoint, "%s", dir);
    if (run->cb && run->cb->checkpoint) run->cb->checkpoint(run->cb->ud, run->step, dir);
    return AL_OK;
}

/* Stop or pause, agreed by every rank so that all stop at the same step:
 * AL_ECANCELED, AL_EPAUSED after a checkpoint, or AL_OK to go on. */
static int stop_or_pause(al_run *run, const al_run_ops *ops, void *u, al_train_result *res) {
    const al_train_cb *cb = run->cb;
    int stop = cb && cb->should_stop && cb->should_stop(cb->ud);
    int pause = !stop && cb && cb->should_pause && cb->should_pause(cb->ud);
    int agreed = al_dist_any(stop | pause << 1);
    if (agreed & 1) return al_err(run->err.msg, AL_ECANCELED, "cancelled at step %ld", run->step);
    if (!(agreed & 2)) return AL_OK;
    char dir[AL_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/checkpoint-%ld", run->job->output_dir[0] ? run->job->output_dir : ".", run->step);
    int rc = checkpoint(run, ops, u, dir, res);
    return rc ? rc : al_err(run->err.msg, AL_EPAUSED, "paused at step %ld", run->step);
}

/* The output folder, and its merged copy under LoRA when asked for. */
static int finish(al_run *run, const al_run_ops *ops, void *u, al_train_result *res) {
    const al_job *job = run->job;
    char dir[AL_PATH_MAX + 64];
    int rc = ops->save(u, job->output_dir);
    if (rc) return rc;
    snprintf(res->output_dir, sizeof res->output_dir, "%s", job->output_dir);
    if (run->cb && run->cb->checkpoint) run->cb->checkpoint(run->cb->ud, run->step, job->output_dir);
    if (!job->use_lora || !job->lora_merge) return AL_OK;
    snprintf(dir, sizeof dir, "%s/merged", job->output_dir);
    if (run->rank == 0 && !(rc = al_mkdir_p(dir, run->err.msg)) && !(rc = al_model_save(run->m, dir, run->err.msg)))
        rc = al_run_copy_tokenizer(job, dir, run->err.msg);
    return al_dist_agree_err(rc, &run->err);
}

/* Step 0 of a fresh run: the starting point, measured and evaluated (none
 * for a data job, which has neither). */
static int step_zero(al_run *run, const al_run_ops *ops, void *u) {
    al_mlist l = {.n = 0};
    int rc = AL_OK;
    if (!ops->measure && !ops->evaluate) return AL_OK;
    if (run->total_steps > 0 && (rc = ops->measure(u, &l))) return rc;
    if (run->rank == 0 && ops->evaluate) rc = ops->evaluate(u, 0, &l); /* rank 0's duty */
    if ((rc = al_dist_agree_err(rc, &run->err))) return rc;
    emit(run, 0, &l);
    if (ops->samples) ops->samples(u, 0);
    return AL_OK;
}

int al_run_loop(al_run *run, const al_run_ops *ops, void *u, const char *resume_dir, al_train_result *res) {
    const al_hparams *hp = run->hp;
    const al_train_cb *cb = run->cb;
    int rc;
    if (resume_dir) {
        char note[AL_ERRLEN] = "";
        if ((rc = al_dist_agree_err(ops->resume(u, resume_dir, note), &run->err))) return rc;
        al_run_event(cb, AL_LOG_INFO, "resumed from %s at step %ld", resume_dir, run->step);
        if (note[0]) al_run_event(cb, AL_LOG_INFO, "%s", note);
    }
    if (cb && cb->begin) cb->begin(cb->ud, run->total_steps, run->step);
    double t0 = al_now(), tok0 = run->trained_tokens;
    if (run->step == 0 && (rc = step_zero(run, ops, u))) return rc;
    while (run->step < run->total_steps) {
        if ((rc = stop_or_pause(run, ops, u, res))) return rc;
        al_mlist l = {.n = 0};
        if ((rc = one_step(run, ops, u, &l))) return rc;
        long s = ++run->step;
        int log_now = l.log || s % hp->logging_steps == 0 || s == run->total_steps || (ops->log_first && s == 1);
        int eval_now = ops->evaluate && ((hp->eval_steps > 0 && s % hp->eval_steps == 0) || s == run->total_steps);
        if (log_now || eval_now) {
            double dt = al_now() - t0;
            if (l.tps_at >= 0)
                put_at(&l, l.tps_at, "tokens_per_second", dt > 0 ? (run->trained_tokens - tok0) / dt : 0);
            if (eval_now && run->rank == 0) rc = ops->evaluate(u, s, &l);
            if (eval_now && (rc = al_dist_agree_err(rc, &run->err))) return rc;
            emit(run, s, &l);
            if (ops->samples) ops->samples(u, s);
        }
        res->final_loss = l.n ? l.m[0].value : 0;
        if (run->job->output_dir[0] && hp->save_steps > 0 && s % hp->save_steps == 0 && s < run->total_steps) {
            char dir[AL_PATH_MAX + 64];
            snprintf(dir, sizeof dir, "%s/checkpoint-%ld", run->job->output_dir, s);
            if ((rc = checkpoint(run, ops, u, dir, res))) return rc;
        }
    }
    if (ops->finish) return ops->finish(u);
    return run->job->output_dir[0] ? finish(run, ops, u, res) : AL_OK;
}

/* Scheduler and worker threads (see sched.h).
 *
 * Locks: s->mu guards the worker table, the flags and the budget; the turn
 * lock (turn_mu) is separate and only ever taken without s->mu held. The
 * store has its own mutex; no store call is made with s->mu held except the
 * queue read in claim(), which takes the store's lock inside ours (never the
 * other way round). */
#define _XOPEN_SOURCE 700
#include "sched.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/ids.h"
#include "io.h"
#include "launch.h"
#include "log.h"
#include "models.h"
#include "reward_http.h"
#include "text/dataset.h"
#include "train/trainer.h"

typedef struct worker {
    sched *s;
    int index;
    pthread_t th;
    int64_t job;               /* 0 when idle */
    int64_t mem;
    atomic_int cancel, pause;
    int holding_turn;
    unsigned long ticket;
    /* progress of the current run (worker thread only) */
    long total, start_step, step;
    double t0, elapsed0, t_first;
    double tokens, tps, epoch;
    char name[48];
    int keep;                  /* save_total_limit of the current job, 0: all */
} worker;

struct sched {
    store *st;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, draining;
    int n;
    worker *w;
    int64_t budget;
    int64_t (*held)(void *);  /* memory held outside the jobs (s->mu) */
    void *held_ud;
    int bf16;                 /* sched_cfg.bf16 */
    /* fair turns */
    pthread_mutex_t turn_mu;
    pthread_cond_t turn_cv;
    unsigned long next_ticket, serving;
    /* launched jobs */
    char launcher[2048];
    char exe[4096];           /* this binary, which the ranks run */
    int retries;
    struct { int64_t id; int n; } lost[64]; /* attempts lost per job (s->mu) */
};

int64_t sched_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return (int64_t)kb * 1024;
}

/* ---- turns ---------------------------------------------------------------------- */

static void turn_acquire(worker *w) {
    sched *s = w->s;
    if (w->holding_turn) return;
    pthread_mutex_lock(&s->turn_mu);
    unsigned long t = s->next_ticket++;
    while (s->serving != t) pthread_cond_wait(&s->turn_cv, &s->turn_mu);
    pthread_mutex_unlock(&s->turn_mu);
    w->holding_turn = 1;
}

static void turn_release(worker *w) {
    sched *s = w->s;
    if (!w->holding_turn) return;
    pthread_mutex_lock(&s->turn_mu);
    s->serving++;
    pthread_cond_broadcast(&s->turn_cv);
    pthread_mutex_unlock(&s->turn_mu);
    w->holding_turn = 0;
}

/* ---- trainer callbacks ---------------------------------------------------------- */

static void on_begin(void *ud, long total, long start) {
    worker *w = ud;
    pthread_mutex_lock(&w->s->mu);
    w->total = total;
    w->start_step = start;
    w->step = start;
    pthread_mutex_unlock(&w->s->mu);
    w->t_first = al_now();
    store_job_progress(w->s->st, w->job, start, total, 0, w->tokens, NAN, w->elapsed0, NAN);
}

static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    worker *w = ud;
    const char *names[2 * AL_MAX_METRICS];
    double vals[2 * AL_MAX_METRICS];
    int k = 0;
    double tps = NAN;
    for (int i = 0; i < n && k < 2 * AL_MAX_METRICS; i++) {
        names[k] = m[i].name;
        vals[k++] = m[i].value;
        if (!strcmp(m[i].name, "num_tokens")) w->tokens = m[i].value;
        if (!strcmp(m[i].name, "tokens_per_second")) tps = m[i].value;
    }
    store_job_metrics_add(w->s->st, w->job, step, epoch, names, vals, k);
    pthread_mutex_lock(&w->s->mu);
    w->step = step;
    pthread_mutex_unlock(&w->s->mu);
    w->epoch = epoch;
    double now = al_now(), run = now - w->t0;
    double remaining = NAN;
    if (step > w->start_step && w->total > step)
        remaining = (now - w->t_first) / (double)(step - w->start_step) * (double)(w->total - step);
    else if (step >= w->total)
        remaining = 0;
    store_job_progress(w->s->st, w->job, step, w->total, epoch, w->tokens, tps, w->elapsed0 + run, remaining);
    if (log_level >= LOG_LVL_DEBUG) {
        char line[1024];
        size_t len = 0;
        for (int i = 0; i < n && len < sizeof line - 64; i++)
            len += (size_t)snprintf(line + len, sizeof line - len, " %s=%.6g", m[i].name, m[i].value);
        log_debug("job=%s step=%ld%s", w->name, step, line);
    }
}

static void on_sample(void *ud, long step, const char *prompt, const char *completion, double reward) {
    worker *w = ud;
    store_job_sample_add(w->s->st, w->job, step, prompt, completion, reward);
}

static void on_eval_result(void *ud, long step, const json_t *result) {
    worker *w = ud;
    store_job_eval_result_add(w->s->st, w->job, step, result);
}

static void on_event(void *ud, al_log_level lvl, const char *msg) {
    worker *w = ud;
    store_job_event(w->s->st, w->job, lvl <= AL_LOG_ERROR ? "error" : lvl <= AL_LOG_WARN ? "warn" : "info",
                    "message", NULL, "%s", msg);
}

static void on_checkpoint(void *ud, long step, const char *dir) {
    worker *w = ud;
    store_job_checkpoint_add(w->s->st, w->job, step, dir);
    log_info("event=checkpoint job=%s step=%ld", w->name, step);
    if (w->keep <= 0) return;
    /* save_total_limit: the newest checkpoints stay (the resume point is
     * the newest), older folders go with their rows */
    json_t *gone = store_job_checkpoints_prune(w->s->st, w->job, w->keep);
    size_t i;
    json_t *p;
    json_array_foreach(gone, i, p) {
        char err[AL_ERRLEN], q[600];
        if (al_rmtree(json_string_value(p), err))
            log_warn("event=checkpoint_remove_failed job=%s reason=%s", w->name, log_quote(q, sizeof q, err));
        else
            log_info("event=checkpoint_removed job=%s path=%s", w->name, log_quote(q, sizeof q, json_string_value(p)));
    }
    json_decref(gone);
}

/* Polled before each step: the end of the previous step's turn. */
static int on_should_stop(void *ud) {
    worker *w = ud;
    turn_release(w);
    return atomic_load(&w->cancel);
}

/* Polled just before a step runs: pause, drain, or take our turn. */
static int on_should_pause(void *ud) {
    worker *w = ud;
    sched *s = w->s;
    pthread_mutex_lock(&s->mu);
    int draining = s->draining;
    pthread_mutex_unlock(&s->mu);
    if (atomic_load(&w->pause) || draining) return 1;
    turn_acquire(w);
    return 0;
}

/* ---- running one job -------------------------------------------------------------- */

/* A job's final status write (succeeded, failed, cancelled, paused, back to
 * queued): retried until it lands. On a full disk SQLite refuses every
 * write until space is freed; a job left "running" with no worker could be
 * neither cancelled nor resumed. The worker stays with the job meanwhile
 * (backing off up to 5 s between tries) and gives up only when the daemon
 * stops: the next start then recovers the job from its last checkpoint.
 * Returns the last store code. */
static int settle(worker *w, int64_t id, const char *from, const char *to, const char *level,
                  const store_upd *u, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static int settle(worker *w, int64_t id, const char *from, const char *to, const char *level,
                  const store_upd *u, const char *fmt, ...) {
    va_list ap0;
    va_start(ap0, fmt);
    int ms = 100, tries = 0, rc;
    for (;;) {
        va_list ap;
        va_copy(ap, ap0);
        rc = store_job_transitionv(w->s->st, id, from, to, level, u, fmt, ap);
        va_end(ap);
        tries++;
        if (rc != STORE_EIO) break;
        pthread_mutex_lock(&w->s->mu);
        int stop = w->s->stop;
        pthread_mutex_unlock(&w->s->mu);
        if (stop) break;
        if (tries == 1) log_warn("event=status_retry job=%s status=%s note=\"the database refused the write; retrying\"",
                                 w->name, to);
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (ms < 5000) ms *= 2;
    }
    va_end(ap0);
    if (tries > 1 && rc == STORE_OK)
        log_info("event=status_landed job=%s status=%s tries=%d", w->name, to, tries);
    return rc;
}

/* Machine code of a failure. */
static const char *fail_code(int rc) {
    switch (rc) {
    case AL_ENOSPC: return "disk_full";
    case AL_EIO: return "io_error";
    case AL_ENAN: return "diverged";
    case AL_ENOMEM: return "out_of_memory";
    case AL_EINVAL: return "invalid_job";
    case AL_ENOENT: return "not_found";
    case AL_EFORMAT: case AL_ESHAPE: case AL_EUNSUP: return "invalid_model_or_data";
    default: return "job_failed";
    }
}

/* ---- launched jobs ------------------------------------------------------------------ */

static int flag_draining(void *ud) {
    worker *w = ud;
    pthread_mutex_lock(&w->s->mu);
    int d = w->s->draining;
    pthread_mutex_unlock(&w->s->mu);
    return d;
}

/* Attempts of job id lost so far; add: count one more; clear: forget it. */
static int lost_attempts(sched *s, int64_t id, int add, int clear) {
    pthread_mutex_lock(&s->mu);
    int slot = -1, free_slot = -1, n = 0;
    for (int i = 0; i < 64; i++) {
        if (s->lost[i].id == id) slot = i;
        if (!s->lost[i].id && free_slot < 0) free_slot = i;
    }
    if (slot < 0 && add) slot = free_slot >= 0 ? free_slot : (int)(id % 64);
    if (slot >= 0) {
        if (s->lost[slot].id != id) s->lost[slot].id = id, s->lost[slot].n = 0;
        s->lost[slot].n += add;
        n = s->lost[slot].n;
        if (clear) s->lost[slot].id = 0, s->lost[slot].n = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* The job as ranks started by the launcher (daemon/launch.h), its output in
 * r->output_dir (under shared_dir). */
static int run_launched(worker *w, const store_run *r, const al_job *job, const char *resume,
                        al_train_result *res, al_error *err) {
    sched *s = w->s;
    if (!s->launcher[0])
        return AL_FAIL(err, AL_EINVAL, "resources.processes", "this daemon has no launcher (set launcher in "
                       "alignd.conf)");
    al_train_cb cb = {.begin = on_begin, .log = on_log, .sample = on_sample, .event = on_event,
                      .checkpoint = on_checkpoint, .eval_result = on_eval_result, .ud = w};
    launch_flags fl = {.cancel = &w->cancel, .pause = &w->pause, .draining = flag_draining, .ud = w};
    launch_cfg lc = {.line = s->launcher, .exe = s->exe, .grace_s = 30, .bf16 = s->bf16};
    int attempt = lost_attempts(s, w->job, 0, 0) + 1;
    store_job_event(s->st, w->job, "info", "message", NULL, "Starting %d processes through the launcher (attempt %d)",
                    job->processes, attempt);
    return launch_run(&lc, job, r->spec, r->output_dir, w->name, attempt, resume, &cb, &fl, res, err);
}

static void register_output(worker *w, const store_run *r, const al_job *job, const al_train_result *res,
                            char name[256]) {
    store_model m;
    memset(&m, 0, sizeof m);
    char err[AL_ERRLEN];
    name[0] = 0;
    if (!res->output_dir[0] || models_describe(res->output_dir, &m, err)) {
        if (res->output_dir[0]) log_warn("event=output_unregistered job=%s reason=\"%s\"", w->name, err);
        return;
    }
    /* as OpenAI names a fine-tune of a fine-tune: after the root base model */
    const char *root = r->model;
    int rl = (int)strlen(root);
    if (!strncmp(root, "ft:", 3) && strchr(root + 3, ':')) {
        root += 3;
        rl = (int)(strchr(root, ':') - root);
    }
    if (rl > 120) rl = 120;
    if (r->suffix[0]) snprintf(m.name, sizeof m.name, "ft:%.*s:%.64s:%.30s", rl, root, r->suffix, w->name);
    else snprintf(m.name, sizeof m.name, "ft:%.*s:%.30s", rl, root, w->name);
    snprintf(m.kind, sizeof m.kind, "%s", job->use_lora ? "adapter" : "fine_tuned");
    if (job->use_lora) snprintf(m.base, sizeof m.base, "%s", r->model);
    snprintf(m.owned_by, sizeof m.owned_by, "%.31s", w->name);
    m.job_id = w->job;
    json_t *src = json_pack("{s:s,s:s,s:s}", "type", "fine_tune", "job", w->name, "base_model", r->model);
    char *st = src ? json_dumps(src, JSON_COMPACT) : NULL;
    if (st && strlen(st) < sizeof m.source) memcpy(m.source, st, strlen(st) + 1);
    free(st);
    json_decref(src);
    if (store_model_put(w->s->st, &m) == STORE_OK) snprintf(name, 256, "%s", m.name);
}

/* Files a sampling job wrote (preferences, evaluations): validated like
 * uploads and registered as files of the job. */
static void register_files(worker *w, const al_train_result *res) {
    for (int i = 0; i < res->n_output_files && i < 4; i++) {
        const char *path = res->output_files[i].path;
        char *data = NULL, err[AL_ERRLEN];
        size_t len = 0;
        if (al_file_read(path, (size_t)1 << 32, &data, &len, err)) {
            log_warn("event=result_file_unreadable job=%s path=%s", w->name, path);
            continue;
        }
        al_dataset *ds = NULL;
        const json_t *rep = NULL;
        const char *status = "processed";
        char details[AL_ERRLEN] = "";
        if (len && al_dataset_read_mem(data, len, NULL, NULL, &ds, err) == AL_OK) {
            rep = al_dataset_report(ds);
            if (ds->n_errors || ds->valid_rows == 0) {
                status = "error";
                snprintf(details, sizeof details, "%d of %d lines are invalid", ds->n_errors, ds->rows);
            }
        } else {
            status = "error";
            snprintf(details, sizeof details, "%s", len ? err : "the file is empty");
        }
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        const char *purpose = res->output_files[i].purpose[0] ? res->output_files[i].purpose : "fine-tune-results";
        int64_t fid = 0;
        char serr[AL_ERRLEN];
        if (store_file_add(w->s->st, base, purpose, data, len, status, details[0] ? details : NULL, rep, w->job, &fid,
                           serr) == STORE_OK)
            store_job_event(w->s->st, w->job, "info", "message", NULL, "Result file %s: %s (%s, %zu bytes)",
                            api_id(API_ID_FILE, fid).s, base, purpose, len);
        else
            log_warn("event=result_file_failed job=%s reason=\"%s\"", w->name, serr);
        al_dataset_free(ds);
        free(data);
    }
}

static void run_job(worker *w, int64_t id) {
    sched *s = w->s;
    store *st = s->st;
    store_run r;
    snprintf(w->name, sizeof w->name, "%s", api_id(API_ID_JOB, id).s);
    store_upd u = STORE_UPD_INIT;
    u.started = 1;
    if (store_job_transition(st, id, "queued", "running", "info", &u, "Fine-tuning job started") != STORE_OK)
        return; /* cancelled or paused meanwhile */
    log_info("event=job_started job=%s worker=%d", w->name, w->index);
    if (store_job_run_info(st, id, &r) != STORE_OK) {
        store_upd f = STORE_UPD_INIT;
        f.error_code = "job_failed";
        f.error_message = "the job's record could not be read";
        f.finished = 1;
        settle(w, id, "running|cancelling", "failed", "error", &f, "Job failed: %s", f.error_message);
        return;
    }
    /* why the job failed: the reason, and the job's field at fault as data
     * (the description's or the run's), which the API answers as param */
    al_error fail = {"", ""};
    char *err = fail.msg;
    al_job job;
    memset(&job, 0, sizeof job);
    json_t *spec = json_loads(r.spec, 0, NULL);
    int rc = spec ? AL_OK : al_err(err, AL_EFORMAT, "the stored job description is not JSON");
    if (!rc) {
        json_object_set_new(spec, "output_dir", json_string(r.output_dir));
        rc = al_job_from_json(&job, spec, &fail);
        job.reward.bf16 = s->bf16;
    }
    json_decref(spec);
    al_train_result res;
    memset(&res, 0, sizeof res);
    w->t0 = al_now();
    w->elapsed0 = r.elapsed_s;
    w->tokens = 0;
    pthread_mutex_lock(&s->mu);
    w->total = 0;
    w->step = r.step;
    pthread_mutex_unlock(&s->mu);
    w->keep = rc ? 0 : job.hp.save_total_limit;
    if (!rc) {
        al_train_cb cb = {.begin = on_begin, .log = on_log, .sample = on_sample, .event = on_event,
                          .checkpoint = on_checkpoint, .should_stop = on_should_stop,
                          .should_pause = on_should_pause, .external_reward = reward_http_score,
                          .eval_result = on_eval_result, .ud = w};
        const char *resume = r.resume_dir[0] ? r.resume_dir : NULL;
        if (resume) store_job_event(st, id, "info", "message", NULL, "Resuming from %s", resume);
        if (job.processes > 1) {
            rc = run_launched(w, &r, &job, resume, &res, &fail);
        } else {
            rc = al_train_run(&job, resume, &cb, &res, &fail);
            turn_release(w);
        }
    }
    double elapsed = w->elapsed0 + (al_now() - w->t0);
    store_job_progress(st, id, res.steps, res.total_steps ? res.total_steps : w->total, w->epoch,
                       res.trained_tokens, NAN, elapsed, NAN);
    pthread_mutex_lock(&s->mu);
    int draining = s->draining, cancel = atomic_load(&w->cancel);
    pthread_mutex_unlock(&s->mu);
    store_upd f = STORE_UPD_INIT;
    if (rc == LAUNCH_ELOST) {
        /* a rank died: like a local crash, the job resumes from its last
         * checkpoint, a few times; then it fails */
        int n = lost_attempts(s, id, 1, 0);
        if (n <= s->retries || draining) {
            char why[AL_ERRLEN + 64];
            long from = 0;
            snprintf(why, sizeof why, "Attempt %d was lost (%s)", n, err);
            store_job_requeue(st, id, "running", why, &from);
            log_warn("event=attempt_lost job=%s attempt=%d resume_step=%ld", w->name, n, from);
            al_job_deinit(&job);
            store_run_deinit(&r);
            return;
        }
        char msg[AL_ERRLEN + 64];
        snprintf(msg, sizeof msg, "%s (after %d attempts)", err, n);
        memcpy(err, msg, AL_ERRLEN - 1);
        err[AL_ERRLEN - 1] = 0;
        rc = AL_EIO;
    }
    if (job.processes > 1) lost_attempts(s, id, 0, 1);
    if (rc == AL_OK) {
        char name[256] = "";
        if (res.output_is_model) register_output(w, &r, &job, &res, name);
        register_files(w, &res);
        f.fine_tuned_model = name[0] ? name : NULL;
        f.finished = 1;
        settle(w, id, "running|cancelling", "succeeded", "info", &f,
                             "The job has successfully completed: %ld steps%s%s", res.steps,
                             name[0] ? ", model " : "", name);
        log_info("event=job_succeeded job=%s steps=%ld model=%s", w->name, res.steps, name[0] ? name : "-");
    } else if (rc == AL_ECANCELED && cancel) {
        f.finished = 1;
        settle(w, id, "running|cancelling", "cancelled", "info", &f, "Job cancelled at step %ld",
                             res.steps);
    } else if (rc == AL_EPAUSED) {
        if (cancel) {
            f.finished = 1;
            settle(w, id, "running|cancelling", "cancelled", "info", &f,
                                 "Job cancelled at step %ld", res.steps);
        } else if (draining && !atomic_load(&w->pause)) {
            settle(w, id, "running", "queued", "info", &f,
                                 "The daemon is stopping: checkpointed at step %ld, the job resumes from it "
                                 "on the next start", res.steps);
        } else {
            settle(w, id, "running", "paused", "info", &f, "Job paused at step %ld", res.steps);
        }
    } else {
        f.error_code = fail_code(rc);
        f.error_message = err[0] ? err : al_strerror(rc);
        f.error_param = fail.field;
        f.finished = 1;
        settle(w, id, "running|cancelling", "failed", "error", &f, "Job failed: %s", f.error_message);
        char q[600];
        log_warn("event=job_failed job=%s code=%s reason=%s", w->name, f.error_code,
                 log_quote(q, sizeof q, f.error_message));
    }
    al_job_deinit(&job);
    store_run_deinit(&r);
}

/* Picks the next job that fits (s->mu held). 0 when none. */
static int64_t claim(sched *s, int64_t *mem) {
    int64_t ids[64], mems[64];
    int n = store_queue(s->st, ids, mems, 64);
    int64_t used = s->held ? s->held(s->held_ud) : 0;
    int running = 0;
    for (int i = 0; i < s->n; i++)
        if (s->w[i].job) {
            used += s->w[i].mem;
            running++;
        }
    for (int i = 0; i < n; i++) {
        int taken = 0;
        for (int k = 0; k < s->n; k++) taken |= s->w[k].job == ids[i];
        if (taken) continue;
        if (running == 0 || used + mems[i] <= s->budget) {
            *mem = mems[i];
            return ids[i];
        }
    }
    return 0;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    sched *s = w->s;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        int64_t mem = 0, id = s->draining ? 0 : claim(s, &mem);
        if (!id) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 2; /* also re-checks the queue now and then */
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            continue;
        }
        w->job = id;
        w->mem = mem;
        atomic_store(&w->cancel, 0);
        atomic_store(&w->pause, 0);
        pthread_mutex_unlock(&s->mu);
        run_job(w, id);
        pthread_mutex_lock(&s->mu);
        w->job = 0;
        w->mem = 0;
        /* memory freed: others may fit now */
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

sched *sched_new(store *st, const sched_cfg *cfg) {
    sched *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->st = st;
    s->n = cfg->workers > 0 ? cfg->workers : 1;
    s->w = calloc((size_t)s->n, sizeof *s->w);
    if (!s->w) {
        free(s);
        return NULL;
    }
    s->budget = cfg->memory_limit > 0 ? cfg->memory_limit : sched_mem_available();
    snprintf(s->launcher, sizeof s->launcher, "%s", cfg->launcher ? cfg->launcher : "");
    s->retries = cfg->launcher_retries;
    ssize_t el = readlink("/proc/self/exe", s->exe, sizeof s->exe - 1);
    s->exe[el > 0 ? el : 0] = 0;
    if (el <= 0) snprintf(s->exe, sizeof s->exe, "alignd");
    s->bf16 = cfg->bf16;
    if (s->budget <= 0) s->budget = INT64_MAX;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->turn_mu, NULL);
    pthread_cond_init(&s->turn_cv, NULL);
    /* the trainer keeps job descriptions and results on the stack: 16 MiB,
     * whatever RLIMIT_STACK says */
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, (size_t)16 << 20);
    for (int i = 0; i < s->n; i++) {
        s->w[i].s = s;
        s->w[i].index = i;
        if (pthread_create(&s->w[i].th, &at, worker_main, &s->w[i])) {
            log_error("event=worker_start_failed index=%d", i);
            pthread_mutex_lock(&s->mu);
            s->stop = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            for (int k = 0; k < i; k++) pthread_join(s->w[k].th, NULL);
            pthread_attr_destroy(&at);
            free(s->w);
            free(s);
            return NULL;
        }
    }
    pthread_attr_destroy(&at);
    return s;
}

void sched_wake(sched *s) {
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int flag_job(sched *s, int64_t id, int cancel) {
    int found = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++)
        if (s->w[i].job == id) {
            atomic_store(cancel ? &s->w[i].cancel : &s->w[i].pause, 1);
            found = 1;
        }
    pthread_mutex_unlock(&s->mu);
    return found;
}

int sched_cancel(sched *s, int64_t id) { return flag_job(s, id, 1); }
int sched_pause(sched *s, int64_t id) { return flag_job(s, id, 0); }

void sched_drain(sched *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int sched_busy(sched *s) {
    int b = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++) b += s->w[i].job != 0;
    pthread_mutex_unlock(&s->mu);
    return b;
}

int sched_wait_idle(sched *s, double timeout_s) {
    double end = al_now() + timeout_s;
    while (sched_busy(s)) {
        if (al_now() >= end) return -1;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

void sched_free(sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    s->draining = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n; i++) pthread_join(s->w[i].th, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->turn_cv);
    pthread_mutex_destroy(&s->turn_mu);
    free(s->w);
    free(s);
}

int sched_workers(const sched *s) { return s->n; }
int64_t sched_memory_budget(const sched *s) { return s->budget; }

void sched_set_held_memory(sched *s, int64_t (*fn)(void *ud), void *ud) {
    pthread_mutex_lock(&s->mu);
    s->held = fn;
    s->held_ud = ud;
    pthread_mutex_unlock(&s->mu);
    sched_wake(s); /* less held: a waiting job may fit now */
}

void sched_status(sched *s, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n && len + 64 < n; i++)
        if (s->w[i].job)
            len += (size_t)snprintf(buf + len, n - len, "%s%s step %ld/%ld", len ? ", " : "",
                                    api_id(API_ID_JOB, s->w[i].job).s, s->w[i].step, s->w[i].total);
    pthread_mutex_unlock(&s->mu);
    if (!len) snprintf(buf, n, "idle");
}

/* train and eval subcommands: the trainer on the command line.
 *
 *   alignd train JOB.json [--resume CHECKPOINT_DIR] [--threads N] [--events json]
 *     every method, the RL ones (ppo, grpo, rloo) and the sampling jobs
 *     (generate_preferences, evaluate, critique_revise) included; the
 *     files a sampling job writes are named on stderr.
 *     stdout: one JSON object per logged step {"step":N,"epoch":E,"loss":..,...};
 *     stderr: events, samples and benchmark results ("eval_result: {...}"),
 *     one line each, and a progress bar when stderr is a terminal;
 *     save_total_limit keeps the newest checkpoint folders, as the daemon.
 *     --events json: everything on stdout as JSON lines, the step lines as
 *     above and the rest with an "event" key, as the daemon reads a job it
 *     launched (daemon/launch.c): {"event":"begin","total_steps","start_step",
 *     "ranks"}, {"event":"message","level","message"}, {"event":"sample",
 *     "step","prompt","completion","reward"}, {"event":"eval_result","step",
 *     "result"}, {"event":"checkpoint","step","path"}, and last
 *     {"event":"result","status":"succeeded"|"failed"|"cancelled"|"paused",
 *     "code","message","param","steps","total_steps","trained_tokens",
 *     "output_dir","output_is_model","files":[{"path","purpose"}]}, "param"
 *     the job's field at fault ("" when none is: a file that is not JSON,
 *     a full disk), also when the job file does not parse.
 *     Started by mpirun or srun as N ranks (lib/dist), it trains one job
 *     data-parallel; rank 0 alone writes to stdout and stderr. SIGUSR1 asks
 *     for a pause (a checkpoint, then status "paused", exit 3), SIGUSR2 for a
 *     cancel at the next step (exit 4); mpirun and srun forward both to every
 *     rank, and the ranks agree on the step. With --events json the reader
 *     keeps the checkpoints' account: the daemon rotates them
 *     (save_total_limit) through its store, so this process does not.
 *   alignd eval --model DIR --task NAME [--n N]
 *     stdout: {"task":..,"n":..,"exact_match":..} */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "compute/ops.h"
#include "compute/pool.h"
#include "dist/dist.h"
#include "io.h"
#include "reward_http.h"
#include "train/trainer.h"

typedef struct cli_run {
    int tty;
    int json;                /* --events json */
    long total;
    int keep; /* save_total_limit, 0: every checkpoint stays */
} cli_run;

static volatile sig_atomic_t g_pause, g_cancel;
static void on_signal(int sig) {
    if (sig == SIGUSR1) g_pause = 1;
    else g_cancel = 1;
}
static int on_should_stop(void *ud) {
    (void)ud;
    return g_cancel;
}
static int on_should_pause(void *ud) {
    (void)ud;
    return g_pause;
}

/* One JSON line on stdout (takes o). */
static void put_line(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8)) : NULL;
    json_decref(o);
    if (s) {
        puts(s);
        fflush(stdout);
        free(s);
    }
}

static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    cli_run *r = ud;
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(step));
    json_object_set_new(o, "epoch", json_real(round(epoch * 1e4) / 1e4));
    for (int i = 0; i < n; i++)
        json_object_set_new(o, m[i].name, isfinite(m[i].value) ? json_real(m[i].value) : json_null());
    put_line(o);
    if (r->tty && !r->json && r->total > 0) {
        int w = 30, done = (int)(w * step / r->total);
        fprintf(stderr, "\r[%.*s%*s] %ld/%ld", done, "==============================", w - done, "", step,
                r->total);
        if (step == r->total) fputc('\n', stderr);
    }
}

static void on_begin(void *ud, long total, long start) {
    cli_run *r = ud;
    r->total = total;
    if (r->json)
        put_line(json_pack("{s:s, s:I, s:I, s:i}", "event", "begin", "total_steps", (json_int_t)total,
                           "start_step", (json_int_t)start, "ranks", al_dist_size()));
}

/* A benchmark's result: one line on stderr, "eval_result: {...}". */
static void on_eval_result(void *ud, long step, const json_t *result) {
    cli_run *r = ud;
    if (r->json) {
        put_line(json_pack("{s:s, s:I, s:O}", "event", "eval_result", "step", (json_int_t)step, "result", result));
        return;
    }
    json_t *o = json_deep_copy(result);
    if (o) json_object_set_new(o, "step", json_integer(step));
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8)) : NULL;
    if (s) fprintf(stderr, "eval_result: %s\n", s);
    free(s);
    json_decref(o);
}

static void on_event(void *ud, al_log_level lvl, const char *msg) {
    cli_run *r = ud;
    const char *level = lvl <= AL_LOG_ERROR ? "error" : lvl <= AL_LOG_WARN ? "warn" : "info";
    if (r->json) put_line(json_pack("{s:s, s:s, s:s}", "event", "message", "level", level, "message", msg));
    else fprintf(stderr, "%s %s\n", lvl <= AL_LOG_WARN ? "warning:" : "info:", msg);
}

static void on_sample(void *ud, long step, const char *prompt, const char *completion, double reward) {
    cli_run *r = ud;
    json_t *o = json_pack("{s:I, s:s, s:s}", "step", (json_int_t)step, "prompt", prompt, "completion",
                          completion);
    if (o && isfinite(reward)) json_object_set_new(o, "reward", json_real(reward));
    if (r->json) {
        if (o) json_object_set_new(o, "event", json_string("sample"));
        put_line(o);
        return;
    }
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (s) fprintf(stderr, "sample: %s\n", s);
    free(s);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* save_total_limit on the command line, as transformers' _rotate_checkpoints:
 * after each checkpoint, the checkpoint-N folders of the output folder beyond
 * the newest `keep` go, oldest first (those of an earlier run resumed here
 * too). The daemon does the same through its store (sched.c), which also
 * drops the checkpoints' rows. Only real folders named checkpoint-<digits>
 * are touched: no symlink, no checkpoint-N.tmp being written. */
static void rotate_checkpoints(const char *dir, int keep) {
    char parent[AL_PATH_MAX + 64];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = 0;
    else snprintf(parent, sizeof parent, ".");
    DIR *d = opendir(parent);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < (int)(sizeof steps / sizeof *steps)) {
        const char *p = e->d_name;
        if (strncmp(p, "checkpoint-", 11) || !p[11] || strspn(p + 11, "0123456789") != strlen(p + 11) ||
            strlen(p + 11) > 18)
            continue;
        char path[sizeof parent + sizeof e->d_name + 2];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", parent, p);
        if (lstat(path, &st) || !S_ISDIR(st.st_mode)) continue;
        steps[n++] = strtol(p + 11, NULL, 10);
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_long);
    for (int i = 0; i < n - keep; i++) {
        char path[sizeof parent + 32], err[AL_ERRLEN];
        snprintf(path, sizeof path, "%s/checkpoint-%ld", parent, steps[i]);
        if (al_rmtree(path, err)) fprintf(stderr, "warning: save_total_limit: %s\n", err);
        else fprintf(stderr, "info: checkpoint removed (save_total_limit %d): %s\n", keep, path);
    }
}

static void on_checkpoint(void *ud, long step, const char *dir) {
    cli_run *r = ud;
    if (r->json)
        put_line(json_pack("{s:s, s:I, s:s}", "event", "checkpoint", "step", (json_int_t)step, "path", dir));
    else if (r->keep > 0)
        rotate_checkpoints(dir, r->keep);
}

/* The last line of --events json: how the run ended; "param" is the job's
 * field at fault ("" when none is), which the daemon answers as the job
 * error's param. */
static void put_result(int rc, const al_train_result *res, const al_error *err) {
    const char *status = rc == AL_OK ? "succeeded" : rc == AL_EPAUSED ? "paused"
                         : rc == AL_ECANCELED ? "cancelled" : "failed";
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:s, s:b}", "event", "result", "status", status,
                          "code", rc == AL_OK ? "" : al_strerror(rc), "message", rc == AL_OK ? "" : err->msg, "param",
                          rc == AL_OK ? "" : err->field, "steps", (json_int_t)res->steps, "total_steps",
                          (json_int_t)res->total_steps, "trained_tokens", res->trained_tokens, "output_dir",
                          res->output_dir, "output_is_model", res->output_is_model);
    json_t *files = json_array();
    for (int i = 0; i < res->n_output_files && i < 4; i++)
        json_array_append_new(files, json_pack("{s:s, s:s}", "path", res->output_files[i].path, "purpose",
                                               res->output_files[i].purpose));
    if (o) json_object_set_new(o, "files", files);
    else json_decref(files);
    put_line(o);
}

static void pool_start(long threads) {
    const char *e = getenv("ALIGND_THREADS");
    int n = threads > 0 ? (int)threads : e ? atoi(e) : 0;
    al_pool_init(n > 0 && n <= AL_POOL_MAX ? n : 0);
}

/* The run on this rank, after MPI started (when distributed). */
static int train_rank(const char *file, const char *resume, long threads, int json, const char *dtype) {
    al_error fail = {"", ""};
    char *err = fail.msg, *text;
    size_t len;
    int rank0 = al_dist_rank() == 0;
    al_train_result res;
    memset(&res, 0, sizeof res);
    int rc = al_file_read(file, 16 << 20, &text, &len, err);
    al_job job;
    memset(&job, 0, sizeof job);
    if (!rc) {
        /* the field at fault stays data: the result line's param */
        rc = al_job_parse_at(&job, text, len, &fail);
        free(text);
        if (rc) {
            char e2[AL_ERRLEN];
            snprintf(e2, sizeof e2, "%.100s: %.150s", file, err);
            memcpy(err, e2, sizeof e2);
        }
    }
    if (rc) {
        if (json && rank0) put_result(rc, &res, &fail);
        else if (rank0) fprintf(stderr, "alignd: %s\n", err);
        return 2;
    }
    /* reward models and judges: the daemon's dtype setting, from the
     * --dtype or the environment here (ALIGND_DTYPE=auto|bf16|fp32; the
     * daemon passes --dtype to the ranks it launches) */
    const char *dt = dtype ? dtype : getenv("ALIGND_DTYPE");
    job.reward.bf16 = dt && !strcmp(dt, "bf16") ? 1 : dt && !strcmp(dt, "fp32") ? 0 : al_bf16_auto();
    pool_start(threads);
    cli_run run = {.tty = isatty(2), .json = json, .keep = job.hp.save_total_limit};
    /* rank 0 speaks for the job; every rank hears the signals */
    al_train_cb cb = {.should_stop = on_should_stop, .should_pause = on_should_pause,
                      .external_reward = reward_http_score, .ud = &run};
    if (rank0) {
        cb.begin = on_begin;
        cb.log = on_log;
        cb.event = on_event;
        cb.sample = on_sample;
        cb.checkpoint = on_checkpoint;
        cb.eval_result = on_eval_result;
    }
    rc = al_train_run(&job, resume, &cb, &res, &fail);
    al_job_deinit(&job);
    if (json && rank0) put_result(rc, &res, &fail);
    if (rc == AL_EPAUSED) return 3;
    if (rc == AL_ECANCELED) return 4;
    if (rc) {
        if (!json && rank0) fprintf(stderr, "alignd: train: %s\n", err);
        return rc == AL_EINVAL ? 2 : 1;
    }
    if (!json && rank0) {
        if (res.output_is_model && res.output_dir[0]) fprintf(stderr, "info: model written to %s\n", res.output_dir);
        for (int i = 0; i < res.n_output_files; i++)
            fprintf(stderr, "info: %s file written to %s\n", res.output_files[i].purpose, res.output_files[i].path);
    }
    return 0;
}

int cli_train(int argc, char **argv) {
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: alignd train JOB.json [--resume CHECKPOINT_DIR] [--threads N] [--events json]\n"
                        "                   [--dtype auto|bf16|fp32]\n");
        return 2;
    }
    cli_flag f[] = {{"--resume", 0, 0}, {"--threads", 0, 0}, {"--events", 0, 0}, {"--dtype", 0, 0}};
    if (cli_parse(argc - 1, argv + 1, f, 4)) return 2;
    long threads = 0;
    if (f[1].value && cli_int(&f[1], 1, AL_POOL_MAX, &threads)) return 2;
    if (f[2].value && strcmp(f[2].value, "json")) {
        fprintf(stderr, "alignd: train: --events: 'json' is the one format\n");
        return 2;
    }
    if (f[3].value && strcmp(f[3].value, "auto") && strcmp(f[3].value, "bf16") && strcmp(f[3].value, "fp32")) {
        fprintf(stderr, "alignd: train: --dtype: must be auto, bf16 or fp32\n");
        return 2;
    }
    /* pause and cancel from the start: a launcher may forward them any time */
    cli_signal(SIGUSR1, on_signal);
    cli_signal(SIGUSR2, on_signal);
    char err[AL_ERRLEN] = "";
    if (al_dist_init(err)) {
        fprintf(stderr, "alignd: train: %s\n", err);
        return 2;
    }
    int rc = train_rank(argv[0], f[0].value, threads, f[2].value != NULL, f[3].value);
    al_dist_finalize();
    return rc;
}

int cli_eval(int argc, char **argv) {
    cli_flag f[] = {{"--model", 0, 0}, {"--task", 0, 0}, {"--n", 0, 0}};
    if (cli_parse(argc, argv, f, 3)) return 2;
    if (!f[0].value || !f[1].value) {
        fprintf(stderr, "alignd: eval: --model DIR and --task NAME are required\n");
        return 2;
    }
    long n = 200;
    if (f[2].value && cli_int(&f[2], 1, 100000, &n)) return 2;
    pool_start(0);
    char err[AL_ERRLEN] = "";
    double acc;
    int rc = al_eval_task_accuracy(f[0].value, f[1].value, (int)n, &acc, err);
    if (rc) {
        fprintf(stderr, "alignd: eval: %s\n", err);
        return rc == AL_EINVAL ? 2 : 1;
    }
    printf("{\"task\":\"%s\",\"n\":%ld,\"exact_match\":%.4f}\n", f[1].value, n, acc);
    return 0;
}

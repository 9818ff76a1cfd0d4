/* train and eval subcommands: the trainer on the command line.
 *
 *   alignd train JOB.json [--resume CHECKPOINT_DIR]
 *     every method, the RL ones (ppo, grpo, rloo) and the sampling jobs
 *     (generate_preferences, evaluate, critique_revise) included; the
 *     files a sampling job writes are named on stderr.
 *     stdout: one JSON object per logged step {"step":N,"epoch":E,"loss":..,...};
 *     stderr: events, samples and benchmark results ("eval_result: {...}"),
 *     one line each, and a progress bar when stderr is a terminal;
 *     save_total_limit keeps the newest checkpoint folders, as the daemon.
 *   alignd eval --model DIR --task NAME [--n N]
 *     stdout: {"task":..,"n":..,"exact_match":..} */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "compute/ops.h"
#include "compute/pool.h"
#include "io.h"
#include "reward_http.h"
#include "train/trainer.h"

typedef struct cli_run {
    int tty;
    long total;
    int keep; /* save_total_limit, 0: every checkpoint stays */
} cli_run;

static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    cli_run *r = ud;
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(step));
    json_object_set_new(o, "epoch", json_real(round(epoch * 1e4) / 1e4));
    for (int i = 0; i < n; i++)
        json_object_set_new(o, m[i].name, isfinite(m[i].value) ? json_real(m[i].value) : json_null());
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    json_decref(o);
    if (s) {
        puts(s);
        fflush(stdout);
        free(s);
    }
    if (r->tty && r->total > 0) {
        int w = 30, done = (int)(w * step / r->total);
        fprintf(stderr, "\r[%.*s%*s] %ld/%ld", done, "==============================", w - done, "", step,
                r->total);
        if (step == r->total) fputc('\n', stderr);
    }
}

static void on_begin(void *ud, long total, long start) {
    (void)start;
    ((cli_run *)ud)->total = total;
}

/* A benchmark's result: one line on stderr, "eval_result: {...}". */
static void on_eval_result(void *ud, long step, const json_t *result) {
    (void)ud;
    json_t *o = json_deep_copy(result);
    if (o) json_object_set_new(o, "step", json_integer(step));
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8)) : NULL;
    if (s) fprintf(stderr, "eval_result: %s\n", s);
    free(s);
    json_decref(o);
}

static void on_event(void *ud, al_log_level lvl, const char *msg) {
    (void)ud;
    fprintf(stderr, "%s %s\n", lvl <= AL_LOG_WARN ? "warning:" : "info:", msg);
}

static void on_sample(void *ud, long step, const char *prompt, const char *completion, double reward) {
    (void)ud;
    json_t *o = json_pack("{s:I, s:s, s:s}", "step", (json_int_t)step, "prompt", prompt, "completion",
                          completion);
    if (o && isfinite(reward)) json_object_set_new(o, "reward", json_real(reward));
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
    (void)step;
    cli_run *r = ud;
    if (r->keep > 0) rotate_checkpoints(dir, r->keep);
}

static void pool_start(void) {
    const char *e = getenv("ALIGND_THREADS");
    int n = e ? atoi(e) : 0;
    al_pool_init(n > 0 && n <= AL_POOL_MAX ? n : 0);
}

int cli_train(int argc, char **argv) {
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: alignd train JOB.json [--resume CHECKPOINT_DIR]\n");
        return 2;
    }
    cli_flag f[] = {{"--resume", 0, 0}};
    if (cli_parse(argc - 1, argv + 1, f, 1)) return 2;
    char err[AL_ERRLEN] = "", *text;
    size_t len;
    if (al_file_read(argv[0], 16 << 20, &text, &len, err)) {
        fprintf(stderr, "alignd: %s\n", err);
        return 2;
    }
    al_job job;
    int rc = al_job_parse(&job, text, len, err);
    free(text);
    if (rc) {
        fprintf(stderr, "alignd: %s: %s\n", argv[0], err);
        return 2;
    }
    /* reward models and judges: the daemon's dtype setting, from the
     * environment here (ALIGND_DTYPE=auto|bf16|fp32) */
    const char *dt = getenv("ALIGND_DTYPE");
    job.reward.bf16 = dt && !strcmp(dt, "bf16") ? 1 : dt && !strcmp(dt, "fp32") ? 0 : al_bf16_auto();
    pool_start();
    cli_run run = {.tty = isatty(2), .keep = job.hp.save_total_limit};
    al_train_cb cb = {.begin = on_begin, .log = on_log, .event = on_event, .sample = on_sample,
                      .checkpoint = on_checkpoint,
                      .external_reward = reward_http_score, .eval_result = on_eval_result, .ud = &run};
    al_train_result res;
    rc = al_train_run(&job, f[0].value, &cb, &res, err);
    al_job_deinit(&job);
    if (rc) {
        fprintf(stderr, "alignd: train: %s\n", err);
        return rc == AL_EINVAL ? 2 : 1;
    }
    if (res.output_is_model && res.output_dir[0]) fprintf(stderr, "info: model written to %s\n", res.output_dir);
    for (int i = 0; i < res.n_output_files; i++)
        fprintf(stderr, "info: %s file written to %s\n", res.output_files[i].purpose, res.output_files[i].path);
    return 0;
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
    pool_start();
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

/* The scheduler and workers in-process, on tiny models: two concurrent jobs
 * both progress (and take turns fairly), cancel, pause and resume with the
 * final weights equal to an uninterrupted run's, draining returns a running
 * job to queued with a checkpoint, a failing job records its cause (the
 * job's field at fault as the error's param) and the next job still runs,
 * and the memory budget makes a job wait (also while the chat endpoints'
 * models hold it). Run under ThreadSanitizer in CI. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "api/ids.h"
#include "daemon/backend.h"
#include "daemon/config.h"
#include "daemon/log.h"
#include "daemon/models.h"
#include "daemon/sched.h"
#include "daemon/store.h"
#include "daemon_util.h"
#include "t.h"

static backend_ctx g_ctx;
static api_backend g_be;
static char g_dir[2048];

static void setup(int workers, int64_t memory_limit) {
    char err[AL_ERRLEN], models[2100];
    static int round;
    snprintf(g_dir, sizeof g_dir, "%s/r%d", t_tmpdir(), ++round);
    snprintf(models, sizeof models, "%s/models", g_dir);
    T_OK(dd_sh("mkdir -p '%s' && '%s' init-model --arch gpt2 --layers 2 --hidden 32 --heads 2 --context 64 --seed 3 "
               "--out '%s/tiny' > /dev/null", models, dd_bin(), models));
    daemon_cfg c;
    int chk;
    T_OK(config_load(&c, 0, NULL, &chk, err));
    memset(&g_ctx, 0, sizeof g_ctx);
    T_OK(store_open(&g_ctx.st, g_dir, c.migrations_dir, err));
    snprintf(g_ctx.jobs_dir, sizeof g_ctx.jobs_dir, "%s/jobs", g_dir);
    models_scan(g_ctx.st, models);
    sched_cfg sc = {.workers = workers, .memory_limit = memory_limit};
    g_ctx.sc = sched_new(g_ctx.st, &sc);
    T_TRUE(g_ctx.sc != NULL);
    backend_init(&g_be, &g_ctx);
}

static void teardown(void) {
    sched_drain(g_ctx.sc);
    T_OK(sched_wait_idle(g_ctx.sc, 60));
    sched_free(g_ctx.sc);
    backend_deinit(&g_ctx);
    store_close(g_ctx.st);
}

/* Submits a job; returns its id ("ftjob-N" in id). */
static int submit(const char *body, char id[32]) {
    json_t *b = json_loads(body, 0, NULL), *out = NULL;
    api_error e;
    int rc = g_be.job_create(g_be.ud, b, &out, &e);
    if (rc) fprintf(stderr, "job_create: %d %s (%s)\n", e.status, e.message, e.param);
    snprintf(id, 32, "%s", dd_str(out, "id"));
    json_decref(b);
    json_decref(out);
    return rc;
}

static json_t *job(const char *id) {
    json_t *o = NULL;
    api_error e;
    g_be.job_get(g_be.ud, id, &o, &e);
    return o;
}

static long job_step(const char *id) {
    json_t *o = job(id);
    long s = (long)json_integer_value(json_object_get(json_object_get(o, "progress"), "step"));
    json_decref(o);
    return s;
}

static int wait_status(const char *id, const char *want, double timeout) {
    double end = dd_now() + timeout;
    char last[32] = "";
    while (dd_now() < end) {
        json_t *o = job(id);
        snprintf(last, sizeof last, "%s", dd_str(o, "status"));
        if (!strcmp(last, want)) {
            json_decref(o);
            return 0;
        }
        if (!strcmp(last, "failed") && strcmp(want, "failed"))
            fprintf(stderr, "%s failed: %s\n", id, dd_str(json_object_get(o, "error"), "message"));
        json_decref(o);
        if (!strcmp(last, "failed") || !strcmp(last, "succeeded") || !strcmp(last, "cancelled")) break;
        dd_sleep_ms(10);
    }
    fprintf(stderr, "%s: wanted %s, status %s\n", id, want, last);
    return -1;
}

static int wait_step(const char *id, long step, double timeout) {
    double end = dd_now() + timeout;
    while (dd_now() < end) {
        if (job_step(id) >= step) return 0;
        dd_sleep_ms(5);
    }
    return -1;
}

static int action(const char *id, const char *what) {
    json_t *o = NULL;
    api_error e;
    int rc = g_be.job_action(g_be.ud, id, what, &o, &e);
    if (rc) fprintf(stderr, "%s %s: %s\n", what, id, e.message);
    json_decref(o);
    return rc;
}

static char *weights(const char *id, size_t *len) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/%s/model.safetensors", g_ctx.jobs_dir, id);
    return dd_read_file(path, len);
}

#define JOB(steps, seed)                                                                                    \
    "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":200,\"seed\":2},"       \
    "\"hyperparameters\":{\"max_steps\":" #steps ",\"batch_size\":4,\"logging_steps\":1,\"save_steps\":1000," \
    "\"max_length\":24,\"learning_rate\":0.003},\"seed\":" #seed "}"

static void test_concurrent(void) {
    setup(2, 0); /* jobs cancelled below: long enough for any build */
    char a[32], b[32];
    T_OK(submit(JOB(100000, 1), a));
    T_OK(submit(JOB(100000, 2), b));
    T_OK(wait_step(a, 5, 60));
    T_OK(wait_step(b, 5, 60));
    /* both progress while both run, taking turns step by step */
    long a0 = job_step(a), b0 = job_step(b);
    dd_sleep_ms(700);
    long a1 = job_step(a), b1 = job_step(b);
    fprintf(stderr, "concurrent: %s %ld->%ld, %s %ld->%ld\n", a, a0, a1, b, b0, b1);
    T_TRUE(a1 > a0);
    T_TRUE(b1 > b0);
    T_TRUE(sched_busy(g_ctx.sc) == 2 || a1 >= 100000 || b1 >= 100000);
    /* fair: neither got more than three times the other's steps */
    long da = a1 - a0, db = b1 - b0;
    T_TRUE(da <= 3 * db + 3 && db <= 3 * da + 3);
    T_OK(action(a, "cancel"));
    T_OK(wait_status(a, "cancelled", 30));
    T_OK(action(b, "cancel"));
    T_OK(wait_status(b, "cancelled", 30));
    json_t *o = job(a);
    T_TRUE(json_integer_value(json_object_get(json_object_get(o, "progress"), "step")) < 100000);
    T_TRUE(json_is_null(json_object_get(o, "fine_tuned_model")));
    json_decref(o);
    teardown();
}

static void test_pause_resume_exact(void) {
    setup(1, 0);
    char ref[32], pj[32];
    T_OK(submit(JOB(60, 9), ref));
    T_OK(wait_status(ref, "succeeded", 120));
    T_OK(submit(JOB(60, 9), pj));
    T_OK(wait_step(pj, 10, 60));
    T_OK(action(pj, "pause"));
    T_OK(wait_status(pj, "paused", 60));
    long at = job_step(pj);
    T_TRUE(at >= 10 && at < 60);
    /* the pause wrote a checkpoint at that step */
    json_t *ck = NULL;
    api_error e;
    api_page pg = {NULL, 20};
    T_OK(g_be.job_checkpoints(g_be.ud, pj, &pg, &ck, &e));
    json_t *d = json_object_get(ck, "data");
    T_EQ_INT(json_array_size(d), 1);
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(d, 0), "step_number")), at);
    json_decref(ck);
    T_EQ_INT(action(pj, "pause"), -1); /* already paused */
    T_OK(action(pj, "resume"));
    T_OK(wait_status(pj, "succeeded", 120));
    size_t la = 0, lb = 0;
    char *wa = weights(ref, &la), *wb = weights(pj, &lb);
    T_TRUE(wa && wb && la == lb && la > 1000);
    T_TRUE(wa && wb && la == lb && memcmp(wa, wb, la) == 0);
    free(wa);
    free(wb);
    /* the output is registered and usable as the next job's model */
    json_t *o = job(pj);
    char name[256];
    snprintf(name, sizeof name, "%s", dd_str(o, "fine_tuned_model"));
    T_STR_EQ(name, "ft:tiny:ftjob-2");
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(o, "progress"), "step")), 60);
    T_TRUE(json_object_size(json_object_get(o, "latest_metrics")) > 3);
    json_decref(o);
    char next[32], body[1024];
    snprintf(body, sizeof body,
             "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":20},"
             "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":2,\"max_length\":24},\"suffix\":\"two\"}", name);
    T_OK(submit(body, next));
    T_OK(wait_status(next, "succeeded", 60));
    o = job(next);
    T_STR_EQ(dd_str(o, "fine_tuned_model"), "ft:tiny:two:ftjob-3"); /* the root base, as OpenAI */
    json_decref(o);
    /* a checkpoint name works as a model too */
    snprintf(body, sizeof body,
             "{\"method\":\"sft\",\"model\":\"%s:%ld\",\"task\":{\"name\":\"addition\",\"rows\":20},"
             "\"hyperparameters\":{\"max_steps\":1,\"batch_size\":2,\"max_length\":24}}", pj, at);
    T_OK(submit(body, next));
    T_OK(wait_status(next, "succeeded", 60));
    teardown();
}

static void test_lora_and_from_checkpoint(void) {
    setup(1, 0);
    /* a LoRA job's output is an adapter on its base, usable as a model */
    char l[32], n[32];
    T_OK(submit("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":40},"
                "\"lora\":{\"r\":4,\"alpha\":8},\"suffix\":\"lora\","
                "\"hyperparameters\":{\"max_steps\":4,\"batch_size\":2,\"max_length\":24}}", l));
    T_OK(wait_status(l, "succeeded", 60));
    json_t *m = NULL;
    api_error e;
    T_OK(g_be.model_get(g_be.ud, "ft:tiny:lora:ftjob-1", &m, &e));
    T_STR_EQ(dd_str(m, "kind"), "adapter");
    T_STR_EQ(dd_str(m, "base_model"), "tiny");
    json_decref(m);
    char dir[4096];
    T_OK(g_be.model_path(g_be.ud, "ftjob-1", dir, &e));
    T_TRUE(strstr(dir, "/jobs/ftjob-1") != NULL);
    T_OK(submit("{\"method\":\"sft\",\"model\":\"ft:tiny:lora:ftjob-1\",\"task\":{\"name\":\"addition\","
                "\"rows\":20},\"hyperparameters\":{\"max_steps\":2,\"batch_size\":2,\"max_length\":24}}", n));
    T_OK(wait_status(n, "succeeded", 60));
    /* from_checkpoint with the optimiser continues the run exactly */
    char a[32], b[32], w[32];
#define FC(extra)                                                                                            \
    "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":100,\"seed\":2},"       \
    "\"hyperparameters\":{\"max_steps\":30,\"batch_size\":4,\"save_steps\":10,\"max_length\":24,"              \
    "\"learning_rate\":0.003},\"seed\":4" extra "}"
    T_OK(submit(FC(""), a));
    T_OK(wait_status(a, "succeeded", 60));
    T_OK(submit(FC(",\"from_checkpoint\":\"ftjob-3:10\",\"from_checkpoint_optimizer\":true"), b));
    T_OK(wait_status(b, "succeeded", 60));
    json_t *jb = job(b);
    T_STR_EQ(dd_str(jb, "from_checkpoint"), "ftjob-3:10");
    json_decref(jb);
    size_t la = 0, lb = 0;
    char *wa = weights(a, &la), *wb = weights(b, &lb);
    T_TRUE(wa && wb && la == lb && la > 1000 && memcmp(wa, wb, la) == 0);
    free(wa);
    free(wb);
    /* weights only: a fresh schedule from those weights, a different result */
    T_OK(submit(FC(",\"from_checkpoint\":\"ftjob-3\""), w));
    T_OK(wait_status(w, "succeeded", 60));
    wa = weights(a, &la);
    wb = weights(w, &lb);
    T_TRUE(wa && wb && la == lb && memcmp(wa, wb, la) != 0);
    free(wa);
    free(wb);
#undef FC
    teardown();
}

static void test_drain_and_failures(void) {
    setup(1, 0);
    char a[32], bad[32], after[32];
    T_OK(submit(JOB(2000, 4), a));
    T_OK(wait_step(a, 3, 60));
    sched_drain(g_ctx.sc);
    T_OK(sched_wait_idle(g_ctx.sc, 30));
    json_t *o = job(a);
    T_STR_EQ(dd_str(o, "status"), "queued");
    long at = (long)json_integer_value(json_object_get(json_object_get(o, "progress"), "step"));
    json_decref(o);
    store_run r;
    T_OK(store_job_run_info(g_ctx.st, api_id_parse(API_ID_JOB, a), &r));
    char want[4200];
    snprintf(want, sizeof want, "%.4000s/%s/checkpoint-%ld", g_ctx.jobs_dir, a, at);
    T_STR_EQ(r.resume_dir, want);
    store_run_deinit(&r);
    sched_free(g_ctx.sc);
    /* new workers: the drained job resumes; a broken model folder fails with its cause */
    sched_cfg sc = {.workers = 1};
    g_ctx.sc = sched_new(g_ctx.st, &sc);
    T_OK(action(a, "cancel"));
    T_OK(wait_status(a, "cancelled", 60));
    char broken[2300];
    snprintf(broken, sizeof broken, "%s/models/broken", g_dir);
    T_OK(dd_sh("cp -r '%s/models/tiny' '%s' && printf 'not safetensors' > '%s/model.safetensors'", g_dir, broken,
               broken));
    T_EQ_INT(models_scan(g_ctx.st, strcat(strcpy(want, g_dir), "/models")), 2);
    T_OK(submit("{\"method\":\"sft\",\"model\":\"broken\",\"task\":{\"name\":\"addition\",\"rows\":20},"
                "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":2,\"max_length\":24}}", bad));
    T_OK(wait_status(bad, "failed", 60));
    o = job(bad);
    json_t *err = json_object_get(o, "error");
    T_STR_EQ(dd_str(err, "code"), "invalid_model_or_data");
    T_TRUE(strstr(dd_str(err, "message"), "model.safetensors") != NULL);
    fprintf(stderr, "failed job's error: %s\n", dd_str(err, "message"));
    json_decref(o);
    /* the job's field a run fails on arrives as data, as the error's param */
    T_OK(submit("{\"method\":\"evaluate\",\"model\":\"tiny\",\"model_b\":\"broken\",\"task\":{\"name\":\"addition\","
                "\"rows\":4},\"reward\":{\"judge\":{\"model\":\"tiny\"}}}", bad));
    T_OK(wait_status(bad, "failed", 60));
    o = job(bad);
    err = json_object_get(o, "error");
    T_STR_EQ(dd_str(err, "code"), "invalid_model_or_data");
    T_STR_EQ(dd_str(err, "param"), "model_b");
    T_TRUE(!strncmp(dd_str(err, "message"), "model_b: ", 9));
    json_decref(o);
    T_OK(submit(JOB(3, 5), after));
    T_OK(wait_status(after, "succeeded", 60));
    teardown();
}

static void test_memory_budget(void) {
    /* room for one job at a time: the second waits for the first */
    setup(2, 80LL << 20);
    char a[32], b[32];
    T_OK(submit(JOB(100000, 1), a)); /* cancelled below: long enough for any build */
    T_OK(submit(JOB(5, 2), b));
    T_OK(wait_step(a, 3, 60));
    dd_sleep_ms(300);
    json_t *o = job(b);
    T_STR_EQ(dd_str(o, "status"), "queued");
    T_EQ_INT(json_integer_value(json_object_get(o, "queue_position")), 1);
    json_decref(o);
    T_EQ_INT(sched_busy(g_ctx.sc), 1);
    T_OK(action(a, "cancel"));
    T_OK(wait_status(b, "succeeded", 60));
    /* a job larger than the configured limit is refused at admission */
    g_ctx.memory_limit = 1 << 20;
    json_t *body = json_loads(JOB(5, 2), 0, NULL), *out = NULL;
    api_error e;
    T_EQ_INT(g_be.job_create(g_be.ud, body, &out, &e), -1);
    T_EQ_INT(e.status, 422);
    T_STR_EQ(e.code, "insufficient_memory");
    json_decref(body);
    teardown();
}

/* What the chat endpoints' models hold (test_held_memory's stand-in). */
static _Atomic int64_t g_held;
static int64_t held_memory(void *ud) {
    (void)ud;
    return g_held;
}

static void test_held_memory(void) {
    /* two workers, room for both jobs; while the served models hold the
     * whole budget the second job waits for the first (which starts: none
     * runs), and starts as soon as they let go */
    setup(2, 0);
    g_held = sched_memory_budget(g_ctx.sc);
    sched_set_held_memory(g_ctx.sc, held_memory, NULL);
    char a[32], b[32];
    T_OK(submit(JOB(100000, 1), a)); /* cancelled below */
    T_OK(wait_step(a, 3, 60));
    T_OK(submit(JOB(5, 2), b));
    dd_sleep_ms(500);
    json_t *o = job(b);
    T_STR_EQ(dd_str(o, "status"), "queued");
    json_decref(o);
    T_EQ_INT(sched_busy(g_ctx.sc), 1);
    g_held = 0;
    sched_set_held_memory(g_ctx.sc, held_memory, NULL); /* wakes a worker */
    T_OK(wait_status(b, "succeeded", 60));
    o = job(a);
    T_STR_EQ(dd_str(o, "status"), "running"); /* b ran beside it */
    json_decref(o);
    T_OK(action(a, "cancel"));
    sched_set_held_memory(g_ctx.sc, NULL, NULL);
    teardown();
}

int main(void) {
    log_init(LOG_LVL_WARN);
    al_pool_init(2);
    double t0 = dd_now();
    test_concurrent();
    fprintf(stderr, "concurrent: %.1fs\n", dd_now() - t0);
    test_pause_resume_exact();
    fprintf(stderr, "pause/resume: %.1fs\n", dd_now() - t0);
    test_lora_and_from_checkpoint();
    fprintf(stderr, "lora/from_checkpoint: %.1fs\n", dd_now() - t0);
    test_drain_and_failures();
    fprintf(stderr, "drain/failures: %.1fs\n", dd_now() - t0);
    test_memory_budget();
    fprintf(stderr, "memory: %.1fs\n", dd_now() - t0);
    test_held_memory();
    fprintf(stderr, "held memory: %.1fs\n", dd_now() - t0);
    al_pool_shutdown();
    return t_done();
}

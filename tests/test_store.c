/* The store and the backend without HTTP: migrations (from an empty database,
 * a newer database refused), files by content hash, job records and their
 * transitions, the live feed and its wake-up, metrics down-sampling, keys,
 * recovery of jobs a killed daemon left running, and the backend's
 * validation of job bodies (every bad field named in param). */
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/backend.h"
#include "daemon/config.h"
#include "daemon/hub.h"
#include "daemon/log.h"
#include "daemon/models.h"
#include "daemon/objects.h"
#include "daemon/store.h"
#include "daemon_util.h"
#include "t.h"

static char g_mig[4096];

static void migrations_dir(void) {
    daemon_cfg c;
    int chk;
    char err[AL_ERRLEN];
    T_OK(config_load(&c, 0, NULL, &chk, err));
    snprintf(g_mig, sizeof g_mig, "%s", c.migrations_dir);
}

static store *open_fresh(const char *name) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/%s", t_tmpdir(), name);
    char err[AL_ERRLEN] = "";
    store *s = NULL;
    int rc = store_open(&s, dir, g_mig, err);
    if (rc) fprintf(stderr, "store_open: %s\n", err);
    T_OK(rc);
    return s;
}

/* The API's objects of the store's reads (objects.h), as the backend makes them. */
static json_t *file_list(store *s, int64_t after, int limit) {
    store_rows r;
    T_OK(store_file_page(s, after, limit, NULL, &r));
    json_t *l = objects_file_list(&r);
    store_rows_free(&r);
    return l;
}

static json_t *job_list(store *s, int limit) {
    store_rows r;
    T_OK(store_job_page(s, 0, limit, NULL, NULL, NULL, &r));
    json_t *l = objects_job_list(&r);
    store_rows_free(&r);
    return l;
}

static json_t *job_metrics(store *s, int64_t id, const char *keys, long after_step, long max_points) {
    store_rows r;
    T_OK(store_job_metric_rows(s, id, keys, after_step, &r));
    json_t *l = objects_metrics_list(&r, max_points);
    store_rows_free(&r);
    return l;
}

static json_t *job_feed(store *s, int64_t id, int64_t after, int max, int64_t *last, int *final) {
    store_rows r;
    const store_job_row *job;
    T_OK(store_job_feed(s, id, after, max, &r, last, final, &job));
    json_t *items = objects_feed(&r, job);
    store_rows_free(&r);
    return items;
}

/* The daemon's codes stay in their own ranges of lib/al.h's error space:
 * never an errno value, never a lib/ code, never each other's. */
static void test_error_codes(void) {
    const int store_codes[] = {STORE_ENOTFOUND, STORE_ESTATE, STORE_EIO, STORE_EINUSE};
    const int hub_codes[] = {HUB_EINVAL, HUB_ENOTFOUND, HUB_EGATED, HUB_EOFFLINE, HUB_ENET,
                             HUB_EPROTO, HUB_ECHECKSUM, HUB_EIO, HUB_ECANCELED, HUB_ENOWEIGHTS};
    for (size_t i = 0; i < sizeof store_codes / sizeof *store_codes; i++)
        T_TRUE(store_codes[i] <= -2000 && store_codes[i] > -2100);
    for (size_t i = 0; i < sizeof hub_codes / sizeof *hub_codes; i++) {
        T_TRUE(hub_codes[i] <= -2100 && hub_codes[i] > -2200);
        T_TRUE(strcmp(hub_strerror(hub_codes[i]), "error"));
        for (size_t j = 0; j < i; j++) T_TRUE(strcmp(hub_strerror(hub_codes[i]), hub_strerror(hub_codes[j])));
    }
}

static void test_migrations(void) {
    int latest = store_migrations_latest(g_mig);
    T_TRUE(latest >= 1);
    store *s = open_fresh("mig");
    T_EQ_INT(store_version(s), latest);
    store_close(s);
    /* the database holds keys' hashes and users' data: owner only, whatever
     * the umask (systemd's UMask= is not there outside it) */
    char dbp[2048];
    snprintf(dbp, sizeof dbp, "%s/mig/alignd.db", t_tmpdir());
    struct stat sb;
    T_OK(stat(dbp, &sb));
    T_EQ_INT(sb.st_mode & 0777, 0600);
    /* reopening is a no-op */
    s = open_fresh("mig");
    T_EQ_INT(store_version(s), latest);
    store_close(s);
    /* a database from a newer alignd is refused with a clear message */
    char path[2048];
    snprintf(path, sizeof path, "%s/mig/alignd.db", t_tmpdir());
    sqlite3 *db;
    T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", latest + 5);
    T_EQ_INT(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[AL_ERRLEN] = "", dir[2048];
    snprintf(dir, sizeof dir, "%s/mig", t_tmpdir());
    store *s2 = NULL;
    T_EQ_INT(store_open(&s2, dir, g_mig, err), STORE_ESTATE);
    T_TRUE(s2 == NULL);
    char want[128];
    snprintf(want, sizeof want, "database schema version %d is newer than this alignd supports (%d)", latest + 5,
             latest);
    T_TRUE(strstr(err, want) != NULL);
    /* a broken migration rolls back and leaves the version alone */
    char mdir[2048];
    snprintf(mdir, sizeof mdir, "%s/badmig", t_tmpdir());
    T_OK(dd_sh("mkdir -p '%s' && cp '%s'/0001_*.sql '%s'/ && printf 'CREATE TABLE x(a);\\nBOGUS;\\n' > '%s'/0002_bad.sql",
               mdir, g_mig, mdir, mdir));
    snprintf(dir, sizeof dir, "%s/mig2", t_tmpdir());
    T_EQ_INT(store_open(&s2, dir, mdir, err), STORE_EIO);
    T_TRUE(strstr(err, "0002_bad.sql") != NULL);
    snprintf(path, sizeof path, "%s/mig2/alignd.db", t_tmpdir());
    T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    sqlite3_step(st);
    T_EQ_INT(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'x'", -1, &st, NULL);
    sqlite3_step(st);
    T_EQ_INT(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_files(void) {
    store *s = open_fresh("files");
    const char *a = "{\"text\":\"hello\"}\n";
    int64_t id1, id2, id3;
    char err[AL_ERRLEN];
    T_OK(store_file_add(s, "a.jsonl", "fine-tune", a, strlen(a), "processed", NULL, NULL, 0, &id1, err));
    T_OK(store_file_add(s, "b.jsonl", "fine-tune", a, strlen(a), "processed", NULL, NULL, 0, &id2, err));
    T_OK(store_file_add(s, "c.jsonl", "fine-tune", "x", 1, "error", "bad", NULL, 0, &id3, err));
    json_t *f1 = objects_file_get(s, id1), *f2 = objects_file_get(s, id2);
    T_STR_EQ(dd_str(f1, "sha256"), dd_str(f2, "sha256"));
    T_STR_EQ(dd_str(f1, "id"), "file-1");
    T_EQ_INT(json_integer_value(json_object_get(f1, "bytes")), (long)strlen(a));
    char st[32], p1[STORE_PATH], p2[STORE_PATH];
    T_OK(store_file_info(s, id1, st, p1));
    T_OK(store_file_info(s, id2, st, p2));
    T_STR_EQ(p1, p2); /* stored once */
    /* newest first, paged */
    json_t *l = file_list(s, 0, 2);
    T_EQ_INT(json_array_size(json_object_get(l, "data")), 2);
    T_TRUE(json_is_true(json_object_get(l, "has_more")));
    T_STR_EQ(dd_str(l, "first_id"), "file-3");
    T_STR_EQ(dd_str(l, "last_id"), "file-2");
    json_t *l2 = file_list(s, id2, 2);
    T_EQ_INT(json_array_size(json_object_get(l2, "data")), 1);
    T_TRUE(json_is_false(json_object_get(l2, "has_more")));
    int64_t user;
    T_OK(store_file_delete(s, id1, &user));
    T_TRUE(access(p1, F_OK) == 0); /* file-2 still holds the bytes */
    T_OK(store_file_delete(s, id2, &user));
    T_TRUE(access(p1, F_OK) != 0);
    T_EQ_INT(store_file_delete(s, id2, &user), STORE_ENOTFOUND);
    T_TRUE(objects_file_get(s, id1) == NULL);
    json_decref(f1);
    json_decref(f2);
    json_decref(l);
    json_decref(l2);
    store_close(s);
}

static int64_t add_job(store *s, int prio) {
    json_t *req = json_pack("{s:s}", "method", "sft"), *spec = json_pack("{s:s}", "method", "sft");
    store_job_new j = {.method = "sft", .model = "tiny", .request = req, .spec = spec, .priority = prio,
                       .seed = 42, .memory_bytes = 1000, .jobs_dir = "/nonexistent"};
    int64_t id = 0;
    T_OK(store_job_create(s, &j, &id));
    T_OK(store_job_transition(s, id, "validating_files", "queued", "info", NULL, "queued"));
    json_decref(req);
    json_decref(spec);
    return id;
}

typedef struct waiter {
    store *s;
    uint64_t seen;
    double waited;
} waiter;

static void *wait_thread(void *arg) {
    waiter *w = arg;
    double t0 = dd_now();
    store_feed_wait(w->s, w->seen, 5000);
    w->waited = dd_now() - t0;
    return NULL;
}

static void test_jobs(void) {
    store *s = open_fresh("jobs");
    int64_t a = add_job(s, 0), b = add_job(s, 0), c = add_job(s, 5);
    int64_t ids[8], mem[8];
    T_EQ_INT(store_queue(s, ids, mem, 8), 3);
    T_EQ_INT(ids[0], c); /* priority, then FIFO */
    T_EQ_INT(ids[1], a);
    T_EQ_INT(ids[2], b);
    json_t *jb = objects_job_get(s, b);
    T_EQ_INT(json_integer_value(json_object_get(jb, "queue_position")), 3);
    T_STR_EQ(dd_str(jb, "status"), "queued");
    T_STR_EQ(dd_str(jb, "id"), "ftjob-2");
    json_decref(jb);
    /* transitions only from the allowed statuses */
    T_EQ_INT(store_job_transition(s, a, "running", "succeeded", "info", NULL, "x"), STORE_ESTATE);
    T_EQ_INT(store_job_transition(s, 99, "queued", "running", "info", NULL, "x"), STORE_ENOTFOUND);
    store_upd u = STORE_UPD_INIT;
    u.started = 1;
    T_OK(store_job_transition(s, a, "queued", "running", "info", &u, "started"));
    /* the feed: events with status items, metrics rows, samples, one seq each */
    const char *names[2] = {"loss", "learning_rate"};
    for (long step = 0; step <= 9; step++) {
        double v[2] = {10.0 - (double)step, 0.001};
        T_OK(store_job_metrics_add(s, a, step, (double)step / 10, names, v, 2));
    }
    T_OK(store_job_sample_add(s, a, 9, "1+1=", "2", 1.0));
    int64_t last;
    int final;
    json_t *items = job_feed(s, a, 0, 100, &last, &final);
    /* created (event+status), queued (2), running (2), 10 metrics rows, 1 sample */
    T_EQ_INT(json_array_size(items), 17);
    T_EQ_INT(last, 17);
    T_EQ_INT(final, 0);
    int64_t prev = 0;
    int ok = 1;
    for (size_t i = 0; i < json_array_size(items); i++) {
        int64_t sq = json_integer_value(json_object_get(json_array_get(items, i), "seq"));
        ok &= sq == prev + 1;
        prev = sq;
    }
    T_TRUE(ok);
    json_t *st1 = json_array_get(items, 1);
    T_STR_EQ(dd_str(st1, "event"), "status");
    T_STR_EQ(dd_str(json_object_get(st1, "data"), "status"), "validating_files");
    T_STR_EQ(dd_str(json_object_get(st1, "data"), "object"), "fine_tuning.job");
    T_STR_EQ(dd_str(json_array_get(items, 16), "event"), "sample");
    json_decref(items);
    items = job_feed(s, a, 15, 100, &last, &final);
    T_EQ_INT(json_array_size(items), 2);
    json_decref(items);
    items = job_feed(s, a, 0, 3, &last, &final);
    T_EQ_INT(json_array_size(items), 3);
    json_decref(items);
    /* a waiter wakes as soon as something is written */
    waiter w = {.s = s, .seen = store_feed_version(s)};
    pthread_t th;
    pthread_create(&th, NULL, wait_thread, &w);
    dd_sleep_ms(100);
    T_OK(store_job_event(s, a, "info", "message", NULL, "hello %d", 1));
    pthread_join(th, NULL);
    T_TRUE(w.waited < 1.0);
    T_TRUE(w.waited >= 0.05);
    /* metrics: down-sampled evenly with the last row, keys filtered */
    json_t *m = job_metrics(s, a, "loss", -1, 4);
    json_t *d = json_object_get(m, "data");
    T_EQ_INT(json_integer_value(json_object_get(m, "total_points")), 10);
    T_EQ_INT(json_array_size(d), 4);
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(d, 0), "step")), 0);
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(d, 1), "step")), 3);
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(d, 3), "step")), 9);
    T_EQ_INT(json_object_size(json_object_get(json_array_get(d, 0), "metrics")), 1);
    T_NEAR(json_number_value(json_object_get(json_object_get(json_array_get(d, 3), "metrics"), "loss")), 1.0, 1e-12);
    json_decref(m);
    m = job_metrics(s, a, NULL, 7, 0);
    T_EQ_INT(json_array_size(json_object_get(m, "data")), 2);
    T_EQ_INT(json_object_size(json_object_get(json_array_get(json_object_get(m, "data"), 0), "metrics")), 2);
    json_decref(m);
    /* recovery: a running job returns to queued at its last checkpoint on disk */
    char ck[2048], probe[2100];
    snprintf(ck, sizeof ck, "%s/jobs/ck5", t_tmpdir());
    mkdir(ck, 0755);
    snprintf(probe, sizeof probe, "%s/trainer_state.json", ck);
    FILE *f = fopen(probe, "w");
    fputs("{}", f);
    fclose(f);
    T_OK(store_job_checkpoint_add(s, a, 5, ck));
    T_OK(store_job_checkpoint_add(s, a, 8, "/nonexistent/checkpoint-8"));
    T_EQ_INT(store_recover(s), 1);
    json_t *ja = objects_job_get(s, a);
    T_STR_EQ(dd_str(ja, "status"), "queued");
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(ja, "progress"), "step")), 5);
    json_decref(ja);
    store_run r;
    T_OK(store_job_run_info(s, a, &r));
    T_STR_EQ(r.resume_dir, ck);
    store_run_deinit(&r);
    m = job_metrics(s, a, NULL, -1, 0);
    T_EQ_INT(json_integer_value(json_object_get(m, "total_points")), 6); /* steps 0..5 */
    json_decref(m);
    store_rows rows;
    T_OK(store_job_checkpoint_page(s, a, 0, 10, &rows));
    json_t *cks = objects_checkpoint_list(&rows);
    store_rows_free(&rows);
    T_EQ_INT(json_array_size(json_object_get(cks, "data")), 1);
    T_STR_EQ(dd_str(json_array_get(json_object_get(cks, "data"), 0), "fine_tuned_model_checkpoint"), "ftjob-1:5");
    json_decref(cks);
    /* events, newest first, paged by id */
    T_OK(store_job_event_page(s, a, 0, 2, &rows));
    json_t *ev = objects_event_list(&rows);
    store_rows_free(&rows);
    T_EQ_INT(json_array_size(json_object_get(ev, "data")), 2);
    T_TRUE(json_is_true(json_object_get(ev, "has_more")));
    T_STR_EQ(dd_str(json_array_get(json_object_get(ev, "data"), 0), "type"), "status");
    json_decref(ev);
    store_stats sts;
    T_OK(store_stats_read(s, &sts));
    json_t *stats = objects_stats(&sts);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(stats, "jobs_by_status"), "queued")), 3);
    T_EQ_INT(json_integer_value(json_object_get(stats, "queue_depth")), 3);
    json_decref(stats);
    store_close(s);
}

/* A Hub download's progress (a model's "download", the data of its
 * "progress" events): made in objects.c like every API object, the bytes
 * hubmodels.c sent before. */
static void test_hub_progress(void) {
    hub_progress p = {.file = "model.safetensors", .file_done = 10, .file_total = 40, .done = 30, .total = 120,
                      .files_done = 1, .files_total = 3};
    const char *want[] = {
        "{\"bytes\":30,\"total_bytes\":120,\"files\":1,\"files_total\":3,\"file\":\"model.safetensors\","
        "\"percentage\":25.0}",
        /* between files, and before the sizes are known */
        "{\"bytes\":0,\"total_bytes\":0,\"files\":0,\"files_total\":0,\"file\":null,\"percentage\":0.0}"};
    for (int i = 0; i < 2; i++) {
        json_t *o = objects_hub_progress(&p);
        char *got = json_dumps(o, OBJECTS_DUMP_FLAGS);
        T_STR_EQ(got, want[i]);
        free(got);
        json_decref(o);
        p = (hub_progress){.file = ""};
    }
}

/* Deleting a finished job takes its benchmark results with it (their rows
 * reference the job: the delete failed on the foreign key). */
static void test_job_delete(void) {
    store *s = open_fresh("jobdel");
    int64_t a = add_job(s, 0);
    json_t *res = json_pack("{s:s, s:s, s:i}", "task", "mc", "model", "model", "n", 2);
    T_OK(store_job_eval_result_add(s, a, 0, res));
    json_decref(res);
    char dir[STORE_PATH];
    int64_t users[STORE_USERS_MAX];
    int n_users;
    T_EQ_INT(store_job_delete(s, a, dir, users, &n_users), STORE_ESTATE);
    store_upd u = STORE_UPD_INIT;
    u.finished = 1;
    T_OK(store_job_transition(s, a, "queued", "cancelled", "info", &u, "cancelled"));
    T_OK(store_job_delete(s, a, dir, users, &n_users));
    store_rows r;
    T_EQ_INT(store_job_read(s, a, &r), STORE_ENOTFOUND);
    T_EQ_INT(store_job_eval_rows(s, a, &r), STORE_OK);
    T_EQ_INT(r.n, 0);
    store_rows_free(&r);
    store_close(s);
}

/* store_relocate: every path recorded under the old folder (and only
 * those: a sibling whose name merely starts the same keeps its path) moves
 * to the new one, in the models, checkpoints and jobs tables and in the
 * strings of a trainer description, nested ones included; the location is
 * recorded either way. */
static void test_locations(void) {
    store *s = open_fresh("locations");
    char err[AL_ERRLEN], path[STORE_PATH];
    int moved = -1;
    T_EQ_INT(store_location(s, "state_dir", path), STORE_ENOTFOUND);
    T_OK(store_relocate(s, "state_dir", NULL, "/x/state", &moved, err));
    T_EQ_INT(moved, 0);
    T_OK(store_location(s, "state_dir", path));
    T_STR_EQ(path, "/x/state");

    json_t *req = json_pack("{s:s}", "method", "sft");
    json_t *spec = json_pack("{s:s, s:s, s:[s,s], s:{s:s}, s:i, s:s, s:s}", "model", "/x/state/jobs/ftjob-0/model",
                             "training_file", "/x/state2/files/ab/abc", "reward_models", "/x/state",
                             "/x/state/jobs/ftjob-1/checkpoint-5", "reward", "judge", "/x/state/jobs/j",
                             "max_steps", 7, "note", "/y/x/state/q", "quoted", "/x/state/a \"b\"");
    store_job_new j = {.method = "sft", .model = "tiny", .request = req, .spec = spec, .seed = 1,
                       .memory_bytes = 1, .jobs_dir = "/x/state/jobs", .resume_dir = "/x/state/jobs/ftjob-9/c"};
    int64_t id = 0;
    T_OK(store_job_create(s, &j, &id));
    json_decref(req);
    json_decref(spec);
    store_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.kind, sizeof m.kind, "fine_tuned");
    snprintf(m.owned_by, sizeof m.owned_by, "alignd");
    snprintf(m.name, sizeof m.name, "inside");
    snprintf(m.path, sizeof m.path, "/x/state/jobs/ftjob-1");
    T_OK(store_model_put(s, &m));
    snprintf(m.name, sizeof m.name, "sibling");
    snprintf(m.path, sizeof m.path, "/x/state2/m");
    T_OK(store_model_put(s, &m));
    T_OK(store_job_checkpoint_add(s, id, 5, "/x/state/jobs/ftjob-1/checkpoint-5"));

    T_OK(store_relocate(s, "state_dir", "/x/state", "/new/st", &moved, err));
    T_EQ_INT(moved, 5); /* a model, a checkpoint, the job's output and resume folders, its spec */
    T_OK(store_location(s, "state_dir", path));
    T_STR_EQ(path, "/new/st");
    T_OK(store_model_get(s, "inside", &m));
    T_STR_EQ(m.path, "/new/st/jobs/ftjob-1");
    T_OK(store_model_get(s, "sibling", &m));
    T_STR_EQ(m.path, "/x/state2/m");
    long step = 0;
    T_OK(store_job_checkpoint_path(s, id, 5, path, &step));
    T_STR_EQ(path, "/new/st/jobs/ftjob-1/checkpoint-5");
    store_run r;
    T_OK(store_job_run_info(s, id, &r));
    T_TRUE(!strncmp(r.output_dir, "/new/st/jobs/ftjob-", 19));
    T_STR_EQ(r.resume_dir, "/new/st/jobs/ftjob-1/checkpoint-5"); /* the latest checkpoint */
    json_t *sp = json_loads(r.spec ? r.spec : "", 0, NULL);
    T_STR_EQ(dd_str(sp, "model"), "/new/st/jobs/ftjob-0/model");
    T_STR_EQ(dd_str(sp, "training_file"), "/x/state2/files/ab/abc");
    T_STR_EQ(json_string_value(json_array_get(json_object_get(sp, "reward_models"), 0)), "/new/st");
    T_STR_EQ(json_string_value(json_array_get(json_object_get(sp, "reward_models"), 1)),
             "/new/st/jobs/ftjob-1/checkpoint-5");
    T_STR_EQ(dd_str(json_object_get(sp, "reward"), "judge"), "/new/st/jobs/j");
    T_STR_EQ(dd_str(sp, "note"), "/y/x/state/q");
    T_STR_EQ(dd_str(sp, "quoted"), "/new/st/a \"b\"");
    T_EQ_INT(json_integer_value(json_object_get(sp, "max_steps")), 7);
    json_decref(sp);
    free(r.spec);
    /* the same place again: nothing moves */
    T_OK(store_relocate(s, "state_dir", "/new/st", "/new/st", &moved, err));
    T_EQ_INT(moved, 0);
    store_close(s);
}

static void test_keys(void) {
    store *s = open_fresh("keys");
    unsigned char h1[32], h2[32], h3[32];
    store_sha256("ak-one", 6, h1);
    store_sha256("ak-two", 6, h2);
    store_sha256("ak-three", 8, h3);
    T_EQ_INT(store_key_count(s), 0);
    T_OK(store_key_add(s, "rw", h1, 0, NULL));
    T_OK(store_key_add(s, "ro", h2, 1, NULL));
    T_EQ_INT(store_key_count(s), 2);
    int ro = -1;
    T_EQ_INT(store_key_check(s, h1, &ro), 1);
    T_EQ_INT(ro, 0);
    T_EQ_INT(store_key_check(s, h2, &ro), 1);
    T_EQ_INT(ro, 1);
    T_EQ_INT(store_key_check(s, h3, &ro), 0);
    store_close(s);
    /* the sha256 of "abc" */
    char hex[65];
    store_sha256("abc", 3, h1);
    store_hex(h1, 32, hex);
    T_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* ---- the backend, without HTTP --------------------------------------------------- */

static backend_ctx g_ctx;
static api_backend g_be;

static json_t *create_job(const char *body, api_error *e, int *rc) {
    json_t *b = json_loads(body, 0, NULL);
    T_TRUE(b != NULL);
    json_t *out = NULL;
    memset(e, 0, sizeof *e);
    *rc = g_be.job_create(g_be.ud, b, &out, e);
    json_decref(b);
    return out;
}

/* Expects job_create to fail with status, code and param. */
static void bad_job(const char *body, int status, const char *code, const char *param) {
    api_error e;
    int rc;
    json_t *o = create_job(body, &e, &rc);
    T_EQ_INT(rc, -1);
    T_EQ_INT(e.status, status);
    T_STR_EQ(e.code, code);
    T_STR_EQ(e.param, param);
    if (rc == 0) fprintf(stderr, "unexpectedly accepted: %s\n", body);
    json_decref(o);
}

static void test_backend(void) {
    char dir[2048], models[2100];
    snprintf(dir, sizeof dir, "%s/be", t_tmpdir());
    snprintf(models, sizeof models, "%s/models", dir);
    T_OK(dd_sh("mkdir -p '%s' && '%s' init-model --arch gpt2 --layers 1 --hidden 16 --heads 2 --context 64 "
               "--out '%s/tiny' > /dev/null", models, dd_bin(), models));
    char err[AL_ERRLEN];
    memset(&g_ctx, 0, sizeof g_ctx);
    T_OK(store_open(&g_ctx.st, dir, g_mig, err));
    snprintf(g_ctx.jobs_dir, sizeof g_ctx.jobs_dir, "%s/jobs", dir);
    backend_init(&g_be, &g_ctx);
    T_EQ_INT(models_scan(g_ctx.st, models), 1);
    char why[AL_ERRLEN];
    T_EQ_INT(g_be.ready(g_be.ud, why), 0); /* no workers in this test */
    T_EQ_INT(g_be.auth_required(g_be.ud), 0);

    /* files */
    api_error e;
    json_t *f = NULL;
    const char *good = "{\"prompt\":\"1+1=\",\"completion\":\"2\"}\n{\"prompt\":\"2+2=\",\"completion\":\"4\"}\n";
    T_OK(g_be.file_create(g_be.ud, "good.jsonl", "fine-tune", NULL, good, strlen(good), &f, &e));
    T_STR_EQ(dd_str(f, "status"), "processed");
    T_STR_EQ(dd_str(f, "id"), "file-1");
    T_STR_EQ(dd_str(json_object_get(f, "validation"), "format"), "prompt_completion");
    json_decref(f);
    const char *partly = "{\"prompt\":\"1+1=\",\"completion\":\"2\"}\n{\"prompt\":\"x\"\n";
    T_OK(g_be.file_create(g_be.ud, "partly.jsonl", "fine-tune", NULL, partly, strlen(partly), &f, &e));
    T_STR_EQ(dd_str(f, "status"), "error");
    T_TRUE(strstr(dd_str(f, "status_details"), "1 of 2 lines are invalid") != NULL);
    json_decref(f);
    const char *junk = "this is not json\nnor this\n";
    T_EQ_INT(g_be.file_create(g_be.ud, "junk.txt", "fine-tune", NULL, junk, strlen(junk), &f, &e), -1);
    T_EQ_INT(e.status, 400);
    T_STR_EQ(e.code, "file_invalid");
    T_TRUE(strstr(e.message, "line 1") != NULL);
    T_EQ_INT(g_be.file_get(g_be.ud, "file-77", &f, &e), -1);
    T_EQ_INT(e.status, 404);

    /* bad job bodies: each names its field */
    bad_job("{\"method\":\"sft\",\"task\":{\"name\":\"addition\"}}", 400, "missing_field", "model");
    bad_job("{\"method\":\"sft\",\"model\":\"nope\",\"task\":{\"name\":\"addition\"}}", 400, "model_not_found", "model");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\"},"
            "\"hyperparameters\":{\"learning_rate\":\"fast\"}}", 400, "invalid_value", "hyperparameters.learning_rate");
    bad_job("{\"method\":\"nope\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\"}}", 400, "invalid_value", "method");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"training_file\":\"file-2\"}", 422, "file_invalid", "training_file");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"training_file\":\"file-9\"}", 400, "file_not_found", "training_file");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"training_file\":\"abc\"}", 400, "invalid_value", "training_file");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\"},\"suffix\":\"a b\"}", 400,
            "invalid_value", "suffix");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\"},\"metadata\":{\"k\":1}}", 400,
            "invalid_type", "metadata.k");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\"},\"metadata\":{\"a\":\"1\",\"b\":\"1\","
            "\"c\":\"1\",\"d\":\"1\",\"e\":\"1\",\"f\":\"1\",\"g\":\"1\",\"h\":\"1\",\"i\":\"1\",\"j\":\"1\",\"k\":\"1\","
            "\"l\":\"1\",\"m\":\"1\",\"n\":\"1\",\"o\":\"1\",\"p\":\"1\",\"q\":\"1\"}}", 400, "invalid_value", "metadata");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\"},\"priority\":1000}", 400,
            "invalid_value", "priority");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\"},\"output_dir\":\"/tmp/x\"}", 400,
            "invalid_value", "output_dir");
    bad_job("{\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"beta\":-1}}},"
            "\"model\":\"tiny\",\"task\":{\"name\":\"addition\"}}", 400, "invalid_value", "hyperparameters.beta");
    bad_job("{\"method\":\"sft\",\"model\":\"ftjob-9\",\"task\":{\"name\":\"addition\"}}", 400, "model_not_found", "model");
    bad_job("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\"},\"from_checkpoint\":\"ftjob-1\"}",
            422, "checkpoint_not_found", "from_checkpoint");

    /* a good job, OpenAI's method object, extras kept */
    int rc;
    json_t *j = create_job("{\"method\":{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":"
                           "{\"max_steps\":3,\"batch_size\":2}}},\"model\":\"tiny\",\"training_file\":\"file-1\","
                           "\"suffix\":\"first\",\"metadata\":{\"team\":\"a\"},\"seed\":7}", &e, &rc);
    T_OK(rc);
    T_STR_EQ(dd_str(j, "id"), "ftjob-1");
    T_STR_EQ(dd_str(j, "object"), "fine_tuning.job");
    T_STR_EQ(dd_str(j, "status"), "queued");
    T_STR_EQ(dd_str(j, "method"), "sft");
    T_STR_EQ(dd_str(j, "model"), "tiny");
    T_STR_EQ(dd_str(j, "suffix"), "first");
    T_STR_EQ(dd_str(j, "training_file"), "file-1");
    T_STR_EQ(dd_str(json_object_get(j, "metadata"), "team"), "a");
    T_EQ_INT(json_integer_value(json_object_get(j, "seed")), 7);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "hyperparameters"), "max_steps")), 3);
    T_EQ_INT(json_integer_value(json_object_get(j, "queue_position")), 1);
    json_decref(j);
    /* the model and the file are in use now */
    int64_t users[STORE_USERS_MAX];
    int n_users = 0;
    T_EQ_INT(store_model_delete(g_ctx.st, "tiny", users, &n_users), STORE_EINUSE);
    T_EQ_INT(n_users, 1);
    T_EQ_INT(users[0], 1);
    T_EQ_INT(g_be.model_delete(g_be.ud, "tiny", &f, &e), -1);
    T_STR_EQ(e.message, "Model 'tiny' is used by ftjob-1");
    T_EQ_INT(g_be.file_delete(g_be.ud, "file-1", &f, &e), -1);
    T_EQ_INT(e.status, 409);
    /* actions */
    T_OK(g_be.job_action(g_be.ud, "ftjob-1", "pause", &j, &e));
    T_STR_EQ(dd_str(j, "status"), "paused");
    json_decref(j);
    T_EQ_INT(g_be.job_action(g_be.ud, "ftjob-1", "pause", &j, &e), -1);
    T_EQ_INT(e.status, 409);
    T_STR_EQ(e.code, "invalid_state");
    T_OK(g_be.job_action(g_be.ud, "ftjob-1", "resume", &j, &e));
    T_STR_EQ(dd_str(j, "status"), "queued");
    json_decref(j);
    T_OK(g_be.job_action(g_be.ud, "ftjob-1", "cancel", &j, &e));
    T_STR_EQ(dd_str(j, "status"), "cancelled");
    T_TRUE(json_integer_value(json_object_get(j, "finished_at")) > 0);
    json_decref(j);
    T_EQ_INT(g_be.job_action(g_be.ud, "ftjob-1", "resume", &j, &e), -1);
    T_EQ_INT(e.status, 409);
    T_EQ_INT(g_be.job_get(g_be.ud, "ftjob-12", &j, &e), -1);
    T_EQ_INT(e.status, 404);
    /* the feed of a final job: everything, then finished */
    json_t *items;
    int fin = 0;
    T_OK(g_be.job_feed(g_be.ud, "ftjob-1", 0, 100, 10, &items, &fin, &e));
    T_TRUE(json_array_size(items) >= 8);
    T_EQ_INT(fin, 1);
    json_decref(items);
    /* estimate */
    json_t *b = json_loads("{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":40},"
                           "\"hyperparameters\":{\"batch_size\":4,\"n_epochs\":2}}", 0, NULL);
    json_t *est = NULL;
    T_OK(g_be.job_estimate(g_be.ud, b, &est, &e));
    T_EQ_INT(json_integer_value(json_object_get(est, "steps")), 20);
    T_EQ_INT(json_integer_value(json_object_get(est, "examples")), 40);
    T_TRUE(json_integer_value(json_object_get(est, "tokens")) > 40 * 8);
    T_TRUE(json_integer_value(json_object_get(est, "memory_bytes")) > 4 * 1000);
    T_EQ_INT(json_integer_value(json_object_get(est, "trainable_parameters")),
             json_integer_value(json_object_get(est, "parameters")));
    store_model m;
    T_OK(store_model_get(g_ctx.st, "tiny", &m));
    T_EQ_INT(json_integer_value(json_object_get(est, "parameters")), m.params);
    json_decref(est);
    json_decref(b);
    /* the serialized list (final jobs from a cache) says what the JSON tree says, twice */
    for (int pass = 0; pass < 2; pass++) {
        json_t *tree = job_list(g_ctx.st, 20);
        char *want = json_dumps(tree, JSON_COMPACT | JSON_REAL_PRECISION(10)), *got = NULL;
        size_t glen = 0;
        api_page pg = {.limit = 20};
        T_OK(g_be.job_list_text(g_be.ud, &pg, NULL, &got, &glen, &e));
        T_TRUE(got && want && glen == strlen(want) + 1 && !strncmp(got, want, strlen(want)) && got[glen - 1] == '\n');
        free(want);
        free(got);
        json_decref(tree);
    }
    /* the model is free again */
    T_OK(g_be.model_delete(g_be.ud, "tiny", &j, &e));
    json_decref(j);
    T_EQ_INT(g_be.model_get(g_be.ud, "tiny", &j, &e), -1);
    T_EQ_INT(e.status, 404);
    backend_deinit(&g_ctx);
    store_close(g_ctx.st);
}

/* The start-up scan registers folders by the rules of POST /v1/models: a
 * directory inside the models folder (a symlink may not lead out), holding
 * a regular config.json, under a valid name that no registered model or job
 * output already has. A FIFO named config.json neither blocks nor loads. */
static void test_models_scan(void) {
    char dir[2048], models[2100], outside[2100];
    snprintf(dir, sizeof dir, "%s/scan", t_tmpdir());
    snprintf(models, sizeof models, "%s/models", dir);
    snprintf(outside, sizeof outside, "%s/outside", dir);
    T_OK(dd_sh("rm -rf '%s' && mkdir -p '%s' '%s' && '%s' init-model --arch gpt2 --layers 1 --hidden 16 "
               "--heads 2 --context 64 --out '%s/tiny' > /dev/null", dir, models, outside, dd_bin(), models));
    T_OK(dd_sh("cd '%s' && for n in ftjob-7 'a b' \"$(printf 'x\\377y')\" 'ft:tiny:ftjob-1' taken '-dash' "
               "\"$(printf '%%0200d' 0)\"; do cp -r -- tiny \"$n\"; done && mkdir fifo && mkfifo fifo/config.json "
               "&& cp -r tiny '%s/far' && ln -s '%s/far' escape && ln -s tiny inside",
               models, outside, outside));
    char err[AL_ERRLEN];
    store *st = NULL;
    T_OK(store_open(&st, dir, g_mig, err));
    /* "taken" is registered elsewhere; a job's output owns "ft:tiny:ftjob-1" */
    store_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "taken");
    snprintf(m.path, sizeof m.path, "%s/far", outside);
    snprintf(m.kind, sizeof m.kind, "base");
    snprintf(m.owned_by, sizeof m.owned_by, "alignd");
    T_OK(store_model_put(st, &m));
    snprintf(m.name, sizeof m.name, "ft:tiny:ftjob-1");
    snprintf(m.path, sizeof m.path, "%s/jobs/ftjob-1", dir);
    snprintf(m.kind, sizeof m.kind, "fine_tuned");
    snprintf(m.owned_by, sizeof m.owned_by, "ftjob-1");
    m.job_id = 1;
    T_OK(store_model_put(st, &m));
    alarm(60); /* a FIFO opened for reading would block start-up for ever */
    T_EQ_INT(models_scan(st, models), 2); /* tiny and inside */
    alarm(0);
    T_OK(store_model_get(st, "tiny", &m));
    T_OK(store_model_get(st, "inside", &m));
    T_TRUE(strstr(m.path, "/models/tiny") != NULL);
    T_OK(store_model_get(st, "taken", &m));
    T_TRUE(strstr(m.path, "/outside/far") != NULL);
    T_OK(store_model_get(st, "ft:tiny:ftjob-1", &m));
    T_TRUE(strstr(m.path, "/jobs/ftjob-1") != NULL);
    T_EQ_INT(m.job_id, 1);
    const char *refused[] = {"ftjob-7", "a b", "x\377y", "-dash", "escape", "fifo", NULL};
    for (int i = 0; refused[i]; i++) T_EQ_INT(store_model_get(st, refused[i], &m), STORE_ENOTFOUND);
    char longname[256];
    snprintf(longname, sizeof longname, "%0200d", 0);
    T_EQ_INT(store_model_get(st, longname, &m), STORE_ENOTFOUND);
    /* every listed model has an id that is a string */
    store_rows mr;
    T_OK(store_model_page(st, NULL, 100, &mr));
    json_t *l = objects_model_list(&mr);
    store_rows_free(&mr);
    T_EQ_INT(json_array_size(json_object_get(l, "data")), 4);
    for (size_t i = 0; i < json_array_size(json_object_get(l, "data")); i++)
        T_TRUE(json_is_string(json_object_get(json_array_get(json_object_get(l, "data"), i), "id")));
    json_decref(l);
    /* a second scan (a restart) changes nothing */
    T_EQ_INT(models_scan(st, models), 2);
    T_OK(store_model_get(st, "taken", &m));
    T_TRUE(strstr(m.path, "/outside/far") != NULL);
    store_close(st);
}

/* Admission: with no memory_limit configured the budget is the scheduler's
 * (the memory available at start); a job its estimate says cannot fit is
 * refused at creation, naming the estimate, instead of being queued (a job
 * alone is always claimed) to fail at run time. */
static void test_admission(void) {
    char dir[2048], models[2100];
    snprintf(dir, sizeof dir, "%s/adm", t_tmpdir());
    snprintf(models, sizeof models, "%s/models", dir);
    T_OK(dd_sh("rm -rf '%s' && mkdir -p '%s' && '%s' init-model --arch gpt2 --layers 1 --hidden 16 --heads 2 "
               "--context 64 --out '%s/tiny' > /dev/null", dir, models, dd_bin(), models));
    char err[AL_ERRLEN];
    backend_ctx ctx;
    api_backend be;
    memset(&ctx, 0, sizeof ctx);
    T_OK(store_open(&ctx.st, dir, g_mig, err));
    snprintf(ctx.jobs_dir, sizeof ctx.jobs_dir, "%s/jobs", dir);
    T_EQ_INT(models_scan(ctx.st, models), 1);
    sched_cfg sc = {.workers = 1, .memory_limit = 64 * 1024}; /* the budget; ctx.memory_limit stays 0 */
    ctx.sc = sched_new(ctx.st, &sc);
    backend_init(&be, &ctx);
    const char *body = "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":40},"
                       "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":4}}";
    json_t *b = json_loads(body, 0, NULL), *out = NULL;
    api_error e;
    memset(&e, 0, sizeof e);
    T_OK(be.job_estimate(be.ud, b, &out, &e));
    T_TRUE(json_is_false(json_object_get(out, "fits")));
    T_EQ_INT(json_integer_value(json_object_get(out, "memory_budget_bytes")), 64 * 1024);
    json_decref(out);
    out = NULL;
    T_EQ_INT(be.job_create(be.ud, b, &out, &e), -1);
    T_EQ_INT(e.status, 422);
    T_STR_EQ(e.code, "insufficient_memory");
    T_TRUE(strstr(e.message, "estimate") != NULL);
    json_decref(out);
    json_decref(b);
    json_t *l = job_list(ctx.st, 10);
    T_EQ_INT(json_array_size(json_object_get(l, "data")), 0);
    json_decref(l);
    sched_drain(ctx.sc);
    sched_free(ctx.sc);
    backend_deinit(&ctx);
    store_close(ctx.st);
}

static void test_config(void) {
    char path[2048], err[AL_ERRLEN];
    snprintf(path, sizeof path, "%s/alignd.conf", t_tmpdir());
    FILE *f = fopen(path, "w");
    fputs("# a comment\nworkers = 3\nlisten = \"0.0.0.0:9000\"\nmemory_limit = 2G\nmax_upload=64M\n", f);
    fclose(f);
    daemon_cfg c;
    int chk;
    char *argv[] = {"--config", path, "--workers", "2", "--check-config"};
    setenv("ALIGND_MAX_STREAMS", "7", 1);
    T_OK(config_load(&c, 5, argv, &chk, err));
    unsetenv("ALIGND_MAX_STREAMS");
    T_EQ_INT(chk, 1);
    T_EQ_INT(c.workers, 2);            /* flag over file */
    T_STR_EQ(c.host, "0.0.0.0");
    T_EQ_INT(c.port, 9000);
    T_EQ_INT(c.memory_limit, 2LL << 30);
    T_EQ_INT(c.max_upload, 64LL << 20);
    T_EQ_INT(c.max_streams, 7);        /* environment over default */
    f = fopen(path, "w");
    fputs("workers = 3\nworkerz = 1\n", f);
    fclose(f);
    char *argv2[] = {"--config", path};
    T_EQ_INT(config_load(&c, 2, argv2, &chk, err), 2);
    T_TRUE(strstr(err, "alignd.conf:2: unknown key 'workerz'") != NULL);
    char *argv3[] = {"--workers", "zero"};
    T_EQ_INT(config_load(&c, 2, argv3, &chk, err), 2);
    T_STR_EQ(err, "--workers: workers: 'zero' is not an integer");
    char *argv4[] = {"--listen", "localhost"};
    T_EQ_INT(config_load(&c, 2, argv4, &chk, err), 2);
    T_TRUE(strstr(err, "is not HOST:PORT") != NULL);
}

int main(void) {
    log_init(LOG_LVL_WARN);
    migrations_dir();
    test_error_codes();
    test_migrations();
    test_files();
    test_jobs();
    test_job_delete();
    test_locations();
    test_keys();
    test_backend();
    test_hub_progress();
    test_models_scan();
    test_admission();
    test_config();
    return t_done();
}

/* Hostile cases against real daemons (issue 14's outside test, kept):
 *
 * - a full disk under the database and the jobs: the jobs fail, and their
 *   last status write waits for space instead of being lost (they used to
 *   stay "running" for ever, cancel leaving them "cancelling"); no
 *   "cannot rollback" errors, no half-written checkpoint-N.tmp left, and
 *   cancel and new jobs work once space is back; the database intact;
 * - temporaries a killed daemon left are swept at start-up, nothing else;
 * - 200,000 invalid lines and 100,000 duplicates: the file object carries a
 *   capped report and the file list stays small;
 * - framing and slow clients against the daemon's own listener.
 *
 * The full-disk case mounts a tmpfs and so needs root; without it the test
 * says so and checks the rest. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "daemon_util.h"
#include "t.h"

static char g_models[1200];

static void fresh(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", t_tmpdir(), name);
    dd_sh("umount '%s' 2>/dev/null; rm -rf '%s'", out, out);
}

static int submit(dd_daemon *d, const char *body, char id[32]) {
    long code;
    json_t *j = dd_post(d, "/v1/fine_tuning/jobs", body, &code);
    snprintf(id, 32, "%s", dd_str(j, "id"));
    if (code != 200) fprintf(stderr, "submit: %ld\n", code);
    json_decref(j);
    return code == 200 ? 0 : -1;
}

static int integrity_ok(const char *state) {
    char path[1300];
    snprintf(path, sizeof path, "%s/alignd.db", state);
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return 0;
    sqlite3_stmt *st;
    int ok = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
        ok = sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return ok;
}

/* Whether the daemon's log holds text. */
static int log_has(const dd_daemon *d, const char *text) {
    char *b = dd_read_file(d->log, NULL);
    int yes = b && strstr(b, text);
    free(b);
    return yes;
}

#define LONG_JOB(seed)                                                                                       \
    "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":200,\"seed\":" #seed "}," \
    "\"hyperparameters\":{\"max_steps\":1000000,\"batch_size\":2,\"max_length\":24,\"logging_steps\":1,"     \
    "\"save_steps\":300}}"

static void test_full_disk(void) {
    char state[1200];
    fresh(state, sizeof state, "disk");
    dd_sh("mkdir -p '%s'", state);
    if (mount("tmpfs", state, "tmpfs", 0, "size=6m")) {
        printf("full disk: skipped, no tmpfs here (%s): run as root\n", strerror(errno));
        return;
    }
    const char *args[] = {"--workers", "2", NULL};
    dd_opts o = {.state_dir = state, .models_dir = g_models, .args = args};
    dd_daemon d;
    if (dd_start(&d, &o)) {
        T_TRUE(0);
        umount(state);
        return;
    }
    char a[32], b[32];
    T_OK(submit(&d, LONG_JOB(1), a));
    T_OK(submit(&d, LONG_JOB(2), b));
    T_OK(dd_wait_step(&d, a, 6, 120));
    T_OK(dd_wait_step(&d, b, 6, 120));
    /* fill what is left: the checkpoints at step 300 cannot be written, and
     * by then the metrics of every step have used up the room the
     * database's write-ahead log had, so SQLite refuses writes too */
    T_TRUE(dd_sh("dd if=/dev/zero of='%s/filler' bs=64k 2>/dev/null", state) != 0); /* dd fails: full */
    char path[1400];
    long code;
    /* both fail (their next checkpoint cannot be written) while the disk is full */
    double end = dd_now() + 60;
    int failing = 0;
    while (dd_now() < end && !failing) {
        dd_sleep_ms(200);
        failing = log_has(&d, "event=status_retry") || log_has(&d, "event=job_failed");
    }
    json_t *h = dd_get(&d, "/healthz", &code);
    T_EQ_INT(code, 200);
    json_decref(h);
    dd_sleep_ms(1500);
    snprintf(path, sizeof path, "%s/filler", state);
    unlink(path);
    /* their status lands once there is room */
    json_t *j = NULL;
    T_OK(dd_wait_job(&d, a, "failed", 60, &j));
    fprintf(stderr, "full disk: %s %s: %s\n", a, dd_str(json_object_get(j, "error"), "code"),
            dd_str(json_object_get(j, "error"), "message"));
    T_STR_EQ(dd_str(json_object_get(j, "error"), "code"), "disk_full");
    json_decref(j);
    T_OK(dd_wait_job(&d, b, "failed", 60, NULL));
    T_TRUE(!log_has(&d, "cannot rollback"));
    /* no half-written checkpoint folder stays behind */
    T_TRUE(dd_sh("test -z \"$(find '%s/jobs' -name '*.tmp*')\"", state) == 0);
    /* and the daemon works: a job is cancelled, another runs */
    char c[32];
    T_OK(submit(&d, LONG_JOB(3), c));
    T_OK(dd_wait_step(&d, c, 2, 60));
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", c);
    json_decref(dd_post(&d, path, NULL, &code));
    T_EQ_INT(code, 200);
    T_OK(dd_wait_job(&d, c, "cancelled", 60, NULL));
    T_EQ_INT(dd_stop(&d, SIGTERM, 60), 0);
    T_TRUE(integrity_ok(state));
    umount(state);
}

/* Temporaries in files/ and the jobs folder go at start-up; a user's file
 * that only looks alike elsewhere, and real files, stay. */
static void test_sweep(void) {
    char state[1200];
    fresh(state, sizeof state, "sweep");
    T_OK(dd_sh("mkdir -p '%s/files/ab' '%s/jobs/ftjob-9/checkpoint-5.tmp/critic' '%s/jobs/ftjob-9/checkpoint-4' && "
               "head -c 4096 /dev/zero > '%s/files/ab/abcd.tmp.123.4' && touch '%s/files/ab/abcd' && "
               "touch '%s/jobs/ftjob-9/checkpoint-5.tmp/critic/model.safetensors' && "
               "touch '%s/jobs/ftjob-9/checkpoint-4/model.safetensors.tmp.77.1' && "
               "touch '%s/jobs/ftjob-9/checkpoint-4/model.safetensors' && touch '%s/jobs/ftjob-9/notes.tmp.txt'",
               state, state, state, state, state, state, state, state, state));
    dd_opts o = {.state_dir = state, .models_dir = g_models};
    dd_daemon d;
    if (dd_start(&d, &o)) {
        T_TRUE(0);
        return;
    }
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
    char p[1400];
    const char *gone[] = {"files/ab/abcd.tmp.123.4", "jobs/ftjob-9/checkpoint-5.tmp",
                          "jobs/ftjob-9/checkpoint-4/model.safetensors.tmp.77.1", NULL};
    const char *kept[] = {"files/ab/abcd", "jobs/ftjob-9/checkpoint-4/model.safetensors", "jobs/ftjob-9/notes.tmp.txt",
                          NULL};
    for (int i = 0; gone[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", state, gone[i]);
        T_REPORT_(access(p, F_OK) != 0, "%s is still there", gone[i]);
    }
    for (int i = 0; kept[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", state, kept[i]);
        T_REPORT_(access(p, F_OK) == 0, "%s was removed", kept[i]);
    }
}

/* A file of 200,000 bad lines and 100,000 duplicates: a report of the first
 * 100 of each with counts, and a file list that stays small. */
static void test_big_bad_upload(dd_daemon *d) {
    size_t n = 200000 * 2 + 100001 * 13, k = 0;
    char *buf = malloc(n + 1);
    for (int i = 0; i < 200000; i++) buf[k++] = 'x', buf[k++] = '\n';
    for (int i = 0; i <= 100000; i++) {
        memcpy(buf + k, "{\"text\":\"a\"}\n", 13);
        k += 13;
    }
    long code;
    json_t *f = dd_upload(d, "bad.jsonl", buf, k, &code);
    free(buf);
    T_EQ_INT(code, 200);
    const json_t *v = json_object_get(f, "validation");
    T_EQ_INT(json_array_size(json_object_get(v, "errors")), 100);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(v, "error_counts"), "invalid_json")), 200000);
    T_EQ_INT(json_integer_value(json_object_get(v, "errors_omitted")), 199900);
    T_EQ_INT(json_array_size(json_object_get(v, "warnings")), 100);
    T_EQ_INT(json_integer_value(json_object_get(v, "warnings_omitted")), 99900);
    T_STR_EQ(dd_str(f, "status"), "error");
    json_decref(f);
    dd_resp r;
    T_OK(dd_request(d, "GET", "/v1/files", NULL, 0, NULL, NULL, 0, &r));
    T_EQ_INT(r.status, 200);
    T_TRUE(r.len < 64 * 1024);
    fprintf(stderr, "big bad upload: the file list is %zu bytes\n", r.len);
    dd_resp_free(&r);
}

/* Framing and slow clients, against the daemon's listener. */
static void test_wire(dd_daemon *d) {
    char code[64];
    static const char two_lengths[] = "POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      "Content-Length: 15\r\nContent-Length: 5\r\n\r\n{\"model\":\"t\"}\r\n";
    T_EQ_INT(dd_raw_request(d->port, two_lengths, sizeof two_lengths - 1, code), 400);
    T_STR_EQ(code, "invalid_framing");
    static const char gzip[] = "POST /v1/files HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n";
    T_EQ_INT(dd_raw_request(d->port, gzip, sizeof gzip - 1, code), 501);
    static const char ctl[] = "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: \001\r\n\r\n";
    T_EQ_INT(dd_raw_request(d->port, ctl, sizeof ctl - 1, code), 400);
    T_STR_EQ(code, "invalid_header");
    /* 8 clients trickling header lines from another address (this daemon:
     * 4 per address, header deadline 2 s): /healthz answers, and they are cut */
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = dd_raw_connect(d->port, "127.0.0.3");
        if (fds[i] >= 0) send(fds[i], "GET /healthz HTTP/1.1\r\n", 23, MSG_NOSIGNAL);
    }
    for (int round = 0; round < 8; round++) {
        dd_sleep_ms(500);
        for (int i = 0; i < 8; i++)
            if (fds[i] >= 0) send(fds[i], "X: 1\r\n", 6, MSG_NOSIGNAL);
        long st;
        json_decref(dd_get(d, "/healthz", &st));
        T_EQ_INT(st, 200);
    }
    for (int i = 0; i < 8; i++) {
        if (fds[i] < 0) continue;
        int closed;
        free(dd_raw_read(fds[i], 10, &closed));
        T_TRUE(closed);
        close(fds[i]);
    }
}

/* save_total_limit keeps the newest checkpoints (their rows and folders
 * alike); DELETE removes a finished job with what it made, and is refused
 * while the job runs. */
static void test_retention_and_delete(dd_daemon *d) {
    char id[32], path[512], dir[1400];
    T_OK(submit(d, "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":50},\"hyperparameters\":"
                   "{\"max_steps\":40,\"batch_size\":2,\"max_length\":24,\"save_steps\":5,\"save_total_limit\":2}}",
                id));
    json_t *j = NULL;
    T_OK(dd_wait_job(d, id, "succeeded", 120, &j));
    char model[256];
    snprintf(model, sizeof model, "%s", dd_str(j, "fine_tuned_model"));
    json_decref(j);
    long code;
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/checkpoints", id);
    j = dd_get(d, path, &code);
    json_t *data = json_object_get(j, "data");
    T_EQ_INT(json_array_size(data), 3); /* 30, 35 and the final 40 */
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(data, 0), "step_number")), 30);
    json_decref(j);
    snprintf(dir, sizeof dir, "%s/jobs/%s", d->state, id);
    T_OK(dd_sh("test \"$(ls '%s' | grep -c '^checkpoint-')\" = 2 && test -d '%s/checkpoint-35'", dir, dir));
    /* a running job cannot be deleted */
    char run[32];
    T_OK(submit(d, "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":50},"
                   "\"hyperparameters\":{\"max_steps\":1000000,\"batch_size\":2,\"max_length\":24}}", run));
    T_OK(dd_wait_step(d, run, 1, 60));
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", run);
    j = dd_delete(d, path, &code);
    T_EQ_INT(code, 409);
    T_STR_EQ(dd_str(json_object_get(j, "error"), "code"), "invalid_state");
    json_decref(j);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", run);
    json_decref(dd_post(d, path, NULL, &code));
    T_OK(dd_wait_job(d, run, "cancelled", 60, NULL));
    /* a finished one is, with its folder and model */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", id);
    j = dd_delete(d, path, &code);
    T_EQ_INT(code, 200);
    T_TRUE(json_is_true(json_object_get(j, "deleted")));
    json_decref(j);
    json_decref(dd_get(d, path, &code));
    T_EQ_INT(code, 404);
    T_TRUE(access(dir, F_OK) != 0);
    snprintf(path, sizeof path, "/v1/models/%s", model);
    json_decref(dd_get(d, path, &code));
    T_EQ_INT(code, 404);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(g_models, sizeof g_models, "%s/models", t_tmpdir());
    if (dd_sh("mkdir -p '%s' && '%s' init-model --arch gpt2 --layers 1 --hidden 16 --heads 2 --context 64 "
              "--out '%s/tiny' > /dev/null", g_models, dd_bin(), g_models)) {
        fprintf(stderr, "cannot make the tiny model\n");
        return 1;
    }
    test_sweep();
    char state[1200];
    fresh(state, sizeof state, "wire");
    const char *args[] = {"--max-connections-per-ip", "4", "--header-timeout", "2", NULL};
    dd_opts o = {.state_dir = state, .models_dir = g_models, .args = args};
    dd_daemon d;
    if (dd_start(&d, &o) == 0) {
        test_wire(&d);
        test_big_bad_upload(&d);
        test_retention_and_delete(&d);
        T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
    } else {
        T_TRUE(0);
    }
    test_full_disk();
    curl_global_cleanup();
    return t_done();
}

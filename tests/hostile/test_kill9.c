/* 20 kill -9s of a daemon with two jobs training and an upload in flight
 * (label slow). After every kill the database passes integrity_check, and
 * on the next start every job and every file the daemon had accepted (a
 * 200 came back) is there; in the end both jobs succeed and every loss they
 * logged equals, bit for bit, the loss an uninterrupted daemon logged for
 * the same jobs. The kill times are drawn from a fixed seed. */
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_util.h"
#include "t.h"

#define TRIALS 20

static char g_models[1200];

static const char *const JOBS[2] = {
    "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":200,\"seed\":1},"
    "\"hyperparameters\":{\"max_steps\":1500,\"batch_size\":4,\"max_length\":24,\"logging_steps\":10,"
    "\"save_steps\":50,\"learning_rate\":0.003},\"seed\":11}",
    "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":200,\"seed\":2},"
    "\"hyperparameters\":{\"max_steps\":1500,\"batch_size\":4,\"max_length\":24,\"logging_steps\":10,"
    "\"save_steps\":50,\"learning_rate\":0.003},\"seed\":12}",
};

static int start(dd_daemon *d, const char *state) {
    const char *args[] = {"--workers", "2", NULL};
    dd_opts o = {.state_dir = state, .models_dir = g_models, .args = args};
    return dd_start(d, &o);
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

/* The logged losses of a job: {"<step>": loss} */
static json_t *losses(dd_daemon *d, const char *id) {
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/metrics?keys=loss", id);
    long code;
    json_t *m = dd_get(d, path, &code), *out = json_object();
    json_t *data = json_object_get(m, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *row = json_array_get(data, i);
        char k[32];
        snprintf(k, sizeof k, "%lld", (long long)json_integer_value(json_object_get(row, "step")));
        json_object_set(out, k, json_object_get(json_object_get(row, "metrics"), "loss"));
    }
    json_decref(m);
    return out;
}

typedef struct upload {
    dd_daemon *d;
    const char *data;
    size_t len;
    char id[32];
} upload;

static void *upload_thread(void *arg) {
    upload *u = arg;
    long code = 0;
    json_t *f = dd_upload(u->d, "inflight.jsonl", u->data, u->len, &code);
    if (code == 200) snprintf(u->id, sizeof u->id, "%s", dd_str(f, "id"));
    json_decref(f);
    return NULL;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(g_models, sizeof g_models, "%s/models", t_tmpdir());
    if (dd_sh("mkdir -p '%s' && '%s' init-model --arch gpt2 --layers 1 --hidden 16 --heads 2 --context 64 "
              "--out '%s/tiny' > /dev/null", g_models, dd_bin(), g_models)) {
        fprintf(stderr, "cannot make the tiny model\n");
        return 1;
    }
    double t0 = dd_now();
    /* the uninterrupted run */
    char ref[1200], st[1200];
    snprintf(ref, sizeof ref, "%s/ref", t_tmpdir());
    snprintf(st, sizeof st, "%s/kill", t_tmpdir());
    dd_daemon d;
    char ids[2][32], rids[2][32];
    json_t *want[2] = {NULL, NULL};
    if (start(&d, ref)) {
        T_TRUE(0);
        return t_done();
    }
    for (int k = 0; k < 2; k++) {
        long code;
        json_t *j = dd_post(&d, "/v1/fine_tuning/jobs", JOBS[k], &code);
        snprintf(rids[k], 32, "%s", dd_str(j, "id"));
        json_decref(j);
        T_EQ_INT(code, 200);
    }
    for (int k = 0; k < 2; k++) {
        T_OK(dd_wait_job(&d, rids[k], "succeeded", 600, NULL));
        want[k] = losses(&d, rids[k]);
    }
    T_EQ_INT(dd_stop(&d, SIGTERM, 60), 0);
    fprintf(stderr, "reference run: %.1f s, %zu losses each\n", dd_now() - t0, json_object_size(want[0]));

    /* an upload: 40,000 valid rows, about 1.3 MB */
    size_t cap = 40000 * 64, len = 0;
    char *data = malloc(cap);
    for (int i = 0; i < 40000; i++)
        len += (size_t)snprintf(data + len, cap - len, "{\"prompt\":\"%d+%d=\",\"completion\":\"%d\"}\n", i, i, 2 * i);
    char accepted[TRIALS][32];
    int n_acc = 0, lost = 0, bad_db = 0;
    unsigned seed = 12345;
    for (int trial = 0; trial < TRIALS; trial++) {
        if (start(&d, st)) {
            T_TRUE(0);
            break;
        }
        long code;
        if (trial == 0) {
            for (int k = 0; k < 2; k++) {
                json_t *j = dd_post(&d, "/v1/fine_tuning/jobs", JOBS[k], &code);
                snprintf(ids[k], 32, "%s", dd_str(j, "id"));
                json_decref(j);
                T_EQ_INT(code, 200);
            }
        }
        /* nothing accepted before this start is missing */
        char path[1024];
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", ids[k]);
            json_decref(dd_get(&d, path, &code));
            lost += code != 200;
        }
        for (int i = 0; i < n_acc; i++) {
            snprintf(path, sizeof path, "/v1/files/%s", accepted[i]);
            json_t *f = dd_get(&d, path, &code);
            lost += code != 200 || strcmp(dd_str(f, "status"), "processed");
            json_decref(f);
        }
        upload u = {&d, data, len, ""};
        pthread_t th;
        pthread_create(&th, NULL, upload_thread, &u);
        seed = seed * 1103515245u + 12345u;
        dd_sleep_ms(150 + (int)((seed >> 8) % 900));
        dd_kill9(&d);
        pthread_join(th, NULL);
        if (u.id[0]) snprintf(accepted[n_acc++], 32, "%s", u.id);
        bad_db += !integrity_ok(st);
    }
    fprintf(stderr, "%d kills: %d uploads accepted, %d lost, %d failed integrity checks (%.1f s so far)\n", TRIALS,
            n_acc, lost, bad_db, dd_now() - t0);
    T_EQ_INT(lost, 0);
    T_EQ_INT(bad_db, 0);
    /* the jobs finish, with the uninterrupted run's losses */
    if (start(&d, st) == 0) {
        for (int k = 0; k < 2; k++) {
            T_OK(dd_wait_job(&d, ids[k], "succeeded", 600, NULL));
            json_t *got = losses(&d, ids[k]);
            T_EQ_INT(json_object_size(got), json_object_size(want[k]));
            const char *key;
            json_t *v;
            int differ = 0;
            json_object_foreach(want[k], key, v) {
                json_t *g = json_object_get(got, key);
                if (!g || json_real_value(g) != json_real_value(v)) differ++;
            }
            T_REPORT_(differ == 0, "%s: %d of %zu losses differ from the uninterrupted run's", ids[k], differ,
                      json_object_size(want[k]));
            json_decref(got);
        }
        T_EQ_INT(dd_stop(&d, SIGTERM, 60), 0);
        T_TRUE(integrity_ok(st));
        /* the kills' half-written uploads are gone */
        T_TRUE(dd_sh("test -z \"$(find '%s/files' -name '*.tmp.*')\"", st) == 0);
    } else {
        T_TRUE(0);
    }
    fprintf(stderr, "kill -9 test: %.1f s\n", dd_now() - t0);
    json_decref(want[0]);
    json_decref(want[1]);
    free(data);
    curl_global_cleanup();
    return t_done();
}

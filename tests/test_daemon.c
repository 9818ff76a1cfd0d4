/* Real daemons over HTTP, each on a free port with its own state directory:
 * submit -> succeed end to end; kill -9 in the middle of training, restart,
 * and the final weights equal an uninterrupted run's; SIGTERM checkpoints and
 * requeues the running job and exits 0 (and the job then finishes with the
 * same weights); a fake NOTIFY_SOCKET receives READY=1, STATUS=, WATCHDOG=1
 * and STOPPING=1; two concurrent jobs both progress; cancel, pause and
 * resume; a fresh state directory is migrated and a newer database refused;
 * a full disk fails the job cleanly with the database and the earlier
 * checkpoint intact; keys create and --check-config; a data job
 * (generate_preferences) paused in the middle of a step and resumed writes
 * the bytes of an uninterrupted run. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "daemon_util.h"
#include "t.h"

static char g_models[1200];

#define LONG_JOB                                                                                              \
    "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":400,\"seed\":2},"         \
    "\"hyperparameters\":{\"max_steps\":1200,\"batch_size\":4,\"logging_steps\":10,\"save_steps\":100,"        \
    "\"max_length\":24,\"learning_rate\":0.003},\"seed\":11}"

static void state_dir(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", t_tmpdir(), name);
    dd_sh("rm -rf '%s'", out);
}

static int start(dd_daemon *d, const char *state, const char *const *args, const char *const *env) {
    dd_opts o = {.state_dir = state, .models_dir = g_models, .args = args, .env = env};
    return dd_start(d, &o);
}

/* POSTs a job; its id into id. */
static int submit(dd_daemon *d, const char *body, char id[32]) {
    long code;
    json_t *j = dd_post(d, "/v1/fine_tuning/jobs", body, &code);
    snprintf(id, 32, "%s", dd_str(j, "id"));
    if (code != 200) fprintf(stderr, "submit: %ld %s\n", code, j ? json_dumps(j, 0) : "(no body)");
    json_decref(j);
    return code == 200 ? 0 : -1;
}

static json_t *get(dd_daemon *d, const char *fmt, const char *id, long *code) {
    char path[512];
    snprintf(path, sizeof path, fmt, id);
    return dd_get(d, path, code);
}

static int post_action(dd_daemon *d, const char *id, const char *what, long *code) {
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/%s", id, what);
    json_t *j = dd_post(d, path, NULL, code);
    json_decref(j);
    return *code == 200 ? 0 : -1;
}

static char *weights(const char *state, const char *id, size_t *len) {
    char path[2048];
    snprintf(path, sizeof path, "%s/jobs/%s/model.safetensors", state, id);
    return dd_read_file(path, len);
}

static int same_weights(const char *sa, const char *ida, const char *sb, const char *idb) {
    size_t la = 0, lb = 0;
    char *a = weights(sa, ida, &la), *b = weights(sb, idb, &lb);
    int ok = a && b && la == lb && la > 1000 && memcmp(a, b, la) == 0;
    if (!ok) fprintf(stderr, "weights differ: %s/%s (%zu bytes) vs %s/%s (%zu bytes)\n", sa, ida, la, sb, idb, lb);
    free(a);
    free(b);
    return ok;
}

/* One column of one job row, read straight from the database. */
static void db_job(const char *state, const char *id, const char *col, char *out, size_t n) {
    char path[2048], sql[256];
    snprintf(path, sizeof path, "%s/alignd.db", state);
    snprintf(sql, sizeof sql, "SELECT %s FROM jobs WHERE id = %s", col, id + 6);
    sqlite3 *db;
    out[0] = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) return;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static int events_contain(dd_daemon *d, const char *id, const char *text) {
    long code;
    json_t *ev = get(d, "/v1/fine_tuning/jobs/%s/events?limit=100", id, &code);
    int found = 0;
    json_t *data = json_object_get(ev, "data");
    for (size_t i = 0; i < json_array_size(data); i++)
        found |= strstr(dd_str(json_array_get(data, i), "message"), text) != NULL;
    json_decref(ev);
    return found;
}

/* ---- end to end, reference run, pause/resume, cancel ---------------------------------- */

static char g_ref_state[1200], g_ref_id[32];

static void test_end_to_end(void) {
    dd_daemon d;
    state_dir(g_ref_state, sizeof g_ref_state, "e2e");
    if (start(&d, g_ref_state, NULL, NULL)) {
        T_TRUE(0);
        return;
    }
    long code;
    /* a fresh state directory was migrated */
    char path[2048];
    snprintf(path, sizeof path, "%s/alignd.db", g_ref_state);
    sqlite3 *db;
    T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    sqlite3_step(st);
    T_TRUE(sqlite3_column_int(st, 0) >= 1);
    sqlite3_finalize(st);
    sqlite3_close(db);

    const char *data = "{\"prompt\":\"1+1=\",\"completion\":\"2\"}\n{\"prompt\":\"2+3=\",\"completion\":\"5\"}\n"
                       "{\"prompt\":\"4+4=\",\"completion\":\"8\"}\n{\"prompt\":\"9+1=\",\"completion\":\"10\"}\n";
    json_t *f = dd_upload(&d, "add.jsonl", data, strlen(data), &code);
    T_EQ_INT(code, 200);
    T_STR_EQ(dd_str(f, "status"), "processed");
    char fid[32];
    snprintf(fid, sizeof fid, "%s", dd_str(f, "id"));
    json_decref(f);
    char body[1024], id[32];
    snprintf(body, sizeof body,
             "{\"method\":\"sft\",\"model\":\"tiny\",\"training_file\":\"%s\",\"suffix\":\"e2e\","
             "\"hyperparameters\":{\"max_steps\":20,\"batch_size\":2,\"logging_steps\":5,\"save_steps\":10,"
             "\"max_length\":24}}", fid);
    T_OK(submit(&d, body, id));
    json_t *j = NULL;
    T_OK(dd_wait_job(&d, id, "succeeded", 60, &j));
    T_STR_EQ(dd_str(j, "fine_tuned_model"), "ft:tiny:e2e:ftjob-1");
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "progress"), "step")), 20);
    T_TRUE(json_integer_value(json_object_get(j, "trained_tokens")) > 0);
    T_TRUE(json_integer_value(json_object_get(j, "finished_at")) >= json_integer_value(json_object_get(j, "started_at")));
    json_decref(j);
    json_t *m = get(&d, "/v1/fine_tuning/jobs/%s/metrics", id, &code);
    T_EQ_INT(code, 200);
    T_EQ_INT(json_integer_value(json_object_get(m, "total_points")), 5); /* steps 0, 5, 10, 15, 20 */
    json_decref(m);
    json_t *ck = get(&d, "/v1/fine_tuning/jobs/%s/checkpoints", id, &code);
    T_EQ_INT(json_array_size(json_object_get(ck, "data")), 2);
    json_decref(ck);
    json_t *model = dd_get(&d, "/v1/models/ft:tiny:e2e:ftjob-1", &code);
    T_EQ_INT(code, 200);
    T_STR_EQ(dd_str(model, "kind"), "fine_tuned");
    T_STR_EQ(dd_str(model, "owned_by"), "ftjob-1");
    json_decref(model);
    T_TRUE(events_contain(&d, id, "successfully completed"));

    /* the reference run for the durability tests */
    T_OK(submit(&d, LONG_JOB, g_ref_id));

    /* pause and resume, cancel: while the reference runs, these queue behind it */
    char p[32];
    T_OK(submit(&d, "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":50},"
                    "\"hyperparameters\":{\"max_steps\":600,\"batch_size\":2,\"max_length\":24,\"save_steps\":1000}}",
                p));
    T_OK(dd_wait_job(&d, g_ref_id, "succeeded", 120, NULL));
    T_OK(dd_wait_step(&d, p, 20, 60));
    T_OK(post_action(&d, p, "pause", &code));
    T_OK(dd_wait_job(&d, p, "paused", 30, NULL));
    T_EQ_INT(post_action(&d, p, "pause", &code), -1);
    T_EQ_INT(code, 409);
    json_t *pj = get(&d, "/v1/fine_tuning/jobs/%s", p, &code);
    long at = (long)json_integer_value(json_object_get(json_object_get(pj, "progress"), "step"));
    json_decref(pj);
    T_TRUE(at >= 20 && at < 600);
    T_OK(post_action(&d, p, "resume", &code));
    T_OK(dd_wait_step(&d, p, at + 10, 60));
    T_OK(post_action(&d, p, "cancel", &code));
    T_OK(dd_wait_job(&d, p, "cancelled", 30, &pj));
    long end = (long)json_integer_value(json_object_get(json_object_get(pj, "progress"), "step"));
    T_TRUE(end > at && end < 600);
    json_decref(pj);
    T_EQ_INT(post_action(&d, p, "cancel", &code), -1);
    T_EQ_INT(code, 409);
    T_TRUE(events_contain(&d, p, "Job paused at step"));
    T_TRUE(events_contain(&d, p, "Resuming from"));
    T_TRUE(events_contain(&d, p, "Job cancelled at step"));

    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);

    /* a database from a newer alignd is refused with a clear message */
    char cp[1400];
    snprintf(cp, sizeof cp, "%s/../newer", g_ref_state);
    dd_sh("rm -rf '%s' && mkdir -p '%s' && cp '%s/alignd.db' '%s/'", cp, cp, g_ref_state, cp);
    snprintf(path, sizeof path, "%s/alignd.db", cp);
    T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    T_EQ_INT(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    dd_opts o = {.state_dir = cp, .models_dir = g_models, .timeout_s = 10};
    dd_daemon d2;
    T_EQ_INT(dd_start(&d2, &o), -1);
    char logp[1500];
    snprintf(logp, sizeof logp, "%s/daemon.log", cp);
    char *log = dd_read_file(logp, NULL);
    T_TRUE(log && strstr(log, "database schema version 999 is newer than this alignd supports"));
    free(log);
}

/* ---- a data job paused and resumed ------------------------------------------------------- */

/* reward.http's verifier, in a thread of the test: a completion's reward is a
 * function of its bytes. The request numbered `gate` first asks the daemon
 * to pause `job`, then answers: the pause lands inside that step (a data job
 * scores its completions in the step), whatever the machine's speed, and
 * the job stops after it. */
typedef struct verifier {
    int fd, port;
    pthread_t th;
    pthread_mutex_t mu;
    int requests, gate;     /* under mu */
    char job[32];           /* under mu */
    long pause_code;        /* under mu */
    const dd_daemon *d;
    atomic_int stop;
} verifier;

/* One request: headers, then Content-Length bytes of body (NULL on error). */
static char *read_request(int c) {
    size_t cap = 1 << 16, n = 0, need = 0;
    char *buf = malloc(cap + 1), *body = NULL;
    while (buf) {
        if (n == cap && !(cap *= 2, buf = realloc(buf, cap + 1))) break;
        ssize_t k = read(c, buf + n, cap - n);
        if (k <= 0) break;
        n += (size_t)k;
        buf[n] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        if (!need) {
            size_t len = 0;
            for (const char *h = strstr(buf, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n"))
                if (!strncasecmp(h + 2, "content-length:", 15)) len = strtoul(h + 17, NULL, 10);
            need = (size_t)(end + 4 - buf) + len;
        }
        if (n >= need) {
            body = strdup(end + 4);
            break;
        }
    }
    free(buf);
    return body;
}

static void *verifier_main(void *ud) {
    verifier *v = ud;
    for (;;) {
        int c = accept(v->fd, NULL, NULL);
        if (atomic_load(&v->stop)) {
            if (c >= 0) close(c);
            return NULL;
        }
        if (c < 0) continue;
        char *body = read_request(c);
        json_t *req = body ? json_loads(body, 0, NULL) : NULL, *rewards = json_array();
        const json_t *comps = json_object_get(req, "completions");
        for (size_t i = 0; i < json_array_size(comps); i++) {
            unsigned sum = 0;
            for (const char *p = json_string_value(json_array_get(comps, i)); p && *p; p++) sum += (unsigned char)*p;
            json_array_append_new(rewards, json_real((sum % 101) / 101.0));
        }
        pthread_mutex_lock(&v->mu);
        int pause = ++v->requests == v->gate;
        char job[32];
        snprintf(job, sizeof job, "%s", v->job);
        pthread_mutex_unlock(&v->mu);
        if (pause) {
            long code = 0;
            char path[128];
            snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/pause", job);
            json_decref(dd_post(v->d, path, NULL, &code));
            pthread_mutex_lock(&v->mu);
            v->pause_code = code;
            pthread_mutex_unlock(&v->mu);
        }
        json_t *ans = json_pack("{s:o}", "rewards", rewards);
        char *txt = json_dumps(ans, JSON_COMPACT), head[256];
        int hn = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n", txt ? strlen(txt) : 0);
        if (write(c, head, (size_t)hn) != hn || (txt && write(c, txt, strlen(txt)) < 0)) perror("verifier");
        free(txt);
        json_decref(ans);
        json_decref(req);
        free(body);
        close(c);
    }
}

static int verifier_start(verifier *v, const dd_daemon *d) {
    memset(v, 0, sizeof *v);
    v->d = d;
    pthread_mutex_init(&v->mu, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    v->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (v->fd < 0 || bind(v->fd, (struct sockaddr *)&sa, sizeof sa) || listen(v->fd, 16) ||
        getsockname(v->fd, (struct sockaddr *)&sa, &sl))
        return -1;
    v->port = ntohs(sa.sin_port);
    return pthread_create(&v->th, NULL, verifier_main, v) ? -1 : 0;
}

static void verifier_stop(verifier *v) {
    atomic_store(&v->stop, 1);
    int c = dd_raw_connect(v->port, "127.0.0.1"); /* wakes accept() */
    pthread_join(v->th, NULL);
    if (c >= 0) close(c);
    close(v->fd);
    pthread_mutex_destroy(&v->mu);
}

/* The bytes of a finished job's first result file (GET /v1/files/{id}/content). */
static char *result_bytes(dd_daemon *d, const char *id, size_t *len) {
    long code;
    json_t *j = get(d, "/v1/fine_tuning/jobs/%s", id, &code);
    const char *fid = json_string_value(json_array_get(json_object_get(j, "result_files"), 0));
    char path[256];
    snprintf(path, sizeof path, "/v1/files/%s/content", fid ? fid : "none");
    json_decref(j);
    dd_resp r;
    if (dd_request(d, "GET", path, NULL, 0, NULL, NULL, 0, &r) || r.status != 200) {
        dd_resp_free(&r);
        return NULL;
    }
    *len = r.len;
    return r.body;
}

static void test_data_pause(void) {
    char state[1200];
    state_dir(state, sizeof state, "datapause");
    dd_daemon d;
    if (start(&d, state, NULL, NULL)) {
        T_TRUE(0);
        return;
    }
    verifier v;
    if (verifier_start(&v, &d)) {
        T_TRUE(0);
        dd_stop(&d, SIGTERM, 30);
        return;
    }
    char body[1024], ref[32], id[32];
    snprintf(body, sizeof body,
             "{\"method\":\"generate_preferences\",\"model\":\"tiny\",\"task\":{\"name\":\"addition2\","
             "\"rows\":24},\"reward\":{\"http\":{\"url\":\"http://127.0.0.1:%d/score\",\"timeout_ms\":600000,"
             "\"retries\":0}},\"hyperparameters\":"
             "{\"num_generations\":4,\"max_completion_length\":5,\"temperature\":1.0,\"logging_steps\":1},"
             "\"seed\":6}", v.port);
    /* the uninterrupted run: 6 steps of 4 prompts, one verifier request each
     * (never retried: a slow machine cannot add one) */
    T_OK(submit(&d, body, ref));
    T_OK(dd_wait_job(&d, ref, "succeeded", 120, NULL));
    pthread_mutex_lock(&v.mu);
    T_EQ_INT(v.requests, 6);
    v.gate = v.requests + 2; /* the second step of the next job */
    snprintf(v.job, sizeof v.job, "ftjob-2");
    pthread_mutex_unlock(&v.mu);
    T_OK(submit(&d, body, id));
    T_STR_EQ(id, "ftjob-2");
    json_t *j = NULL;
    T_OK(dd_wait_job(&d, id, "paused", 120, &j));
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "progress"), "step")), 2);
    json_decref(j);
    pthread_mutex_lock(&v.mu);
    T_EQ_INT(v.pause_code, 200);
    pthread_mutex_unlock(&v.mu);
    long code;
    T_OK(post_action(&d, id, "resume", &code));
    T_OK(dd_wait_job(&d, id, "succeeded", 120, NULL));
    T_TRUE(events_contain(&d, id, "Job paused at step 2"));
    T_TRUE(events_contain(&d, id, "Resuming from"));
    size_t la = 0, lb = 0;
    char *a = result_bytes(&d, ref, &la), *b = result_bytes(&d, id, &lb);
    T_REPORT_(a && b && la > 100 && la == lb && !memcmp(a, b, la), "preferences differ: %zu bytes vs %zu", la, lb);
    free(a);
    free(b);
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
    verifier_stop(&v);
}

/* ---- kill -9, SIGTERM, sd_notify ------------------------------------------------------ */

static int notify_socket(const char *path) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa)) return -1;
    return fd;
}

/* A thread drains the notify socket into g_acc, as the service manager would. */
static char g_acc[1 << 16];
static pthread_mutex_t g_acc_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int g_acc_stop;

static void *notify_thread(void *arg) {
    int fd = *(int *)arg;
    while (!atomic_load(&g_acc_stop)) {
        char buf[512];
        ssize_t k = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (k > 0) {
            buf[k] = 0;
            pthread_mutex_lock(&g_acc_mu);
            size_t len = strlen(g_acc);
            if (len + (size_t)k + 2 < sizeof g_acc) snprintf(g_acc + len, sizeof g_acc - len, "%s\n", buf);
            pthread_mutex_unlock(&g_acc_mu);
        } else {
            dd_sleep_ms(2);
        }
    }
    return NULL;
}

/* Waits up to ms for `text` among the datagrams received. */
static int notify_seen(const char *text, int ms) {
    double end = dd_now() + ms / 1000.0;
    for (;;) {
        pthread_mutex_lock(&g_acc_mu);
        int found = strstr(g_acc, text) != NULL;
        pthread_mutex_unlock(&g_acc_mu);
        if (found) return 1;
        if (dd_now() > end) return 0;
        dd_sleep_ms(5);
    }
}

static void notify_clear(void) {
    pthread_mutex_lock(&g_acc_mu);
    g_acc[0] = 0;
    pthread_mutex_unlock(&g_acc_mu);
}

static void test_durability(void) {
    char state[1200], sock[1300];
    state_dir(state, sizeof state, "dur");
    mkdir(state, 0755);
    /* sun_path is short: the socket lives in /tmp */
    snprintf(sock, sizeof sock, "/tmp/alignd-test-notify-%ld.sock", (long)getpid());
    int nfd = notify_socket(sock);
    T_TRUE(nfd >= 0);
    char env_sock[1400];
    snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", sock);
    const char *env[] = {env_sock, "WATCHDOG_USEC=200000", NULL};
    pthread_t th;
    pthread_create(&th, NULL, notify_thread, &nfd);
    dd_daemon d;
    if (start(&d, state, NULL, env)) {
        T_TRUE(0);
        return;
    }
    T_TRUE(notify_seen("READY=1\n", 2000));
    T_TRUE(notify_seen("WATCHDOG=1\n", 2000));

    /* kill -9 in the middle of training */
    char k[32];
    T_OK(submit(&d, LONG_JOB, k));
    /* STATUS= names the running job; then the kill follows step 250 at once
     * (an optimised build runs the rest of the job in about a second) */
    T_TRUE(notify_seen("STATUS=ftjob-1 step", 3000));
    T_OK(dd_wait_step(&d, k, 250, 60));
    dd_kill9(&d);
    char st[64];
    db_job(state, k, "status", st, sizeof st);
    T_STR_EQ(st, "running");
    if (start(&d, state, NULL, env)) {
        T_TRUE(0);
        return;
    }
    T_OK(dd_wait_job(&d, k, "succeeded", 120, NULL));
    T_TRUE(events_contain(&d, k, "it resumes from the checkpoint at step"));
    T_TRUE(same_weights(g_ref_state, g_ref_id, state, k));
    long code;
    json_t *m = get(&d, "/v1/fine_tuning/jobs/%s/metrics", k, &code);
    /* every logged step once: 0, 10, ..., 1200 */
    T_EQ_INT(json_integer_value(json_object_get(m, "total_points")), 121);
    json_decref(m);

    /* SIGTERM: checkpoint, back to queued, exit 0 */
    char t[32];
    T_OK(submit(&d, LONG_JOB, t));
    T_OK(dd_wait_step(&d, t, 150, 60));
    notify_clear();
    double t0 = dd_now();
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
    fprintf(stderr, "SIGTERM to exit: %.2fs\n", dd_now() - t0);
    T_TRUE(notify_seen("STOPPING=1\n", 100));
    db_job(state, t, "status", st, sizeof st);
    T_STR_EQ(st, "queued");
    char resume[1024];
    db_job(state, t, "resume_dir", resume, sizeof resume);
    T_TRUE(strstr(resume, "/jobs/ftjob-2/checkpoint-") != NULL);
    if (start(&d, state, NULL, env)) {
        T_TRUE(0);
        return;
    }
    T_TRUE(events_contain(&d, t, "The daemon is stopping: checkpointed at step"));
    T_OK(dd_wait_job(&d, t, "succeeded", 120, NULL));
    T_TRUE(same_weights(g_ref_state, g_ref_id, state, t));
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
    atomic_store(&g_acc_stop, 1);
    pthread_join(th, NULL);
    close(nfd);
    unlink(sock);
}

/* ---- two concurrent jobs ------------------------------------------------------------- */

static void test_concurrent(void) {
    char state[1200];
    state_dir(state, sizeof state, "conc");
    const char *args[] = {"--workers", "2", NULL};
    dd_daemon d;
    if (start(&d, state, args, NULL)) {
        T_TRUE(0);
        return;
    }
    const char *job = "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":100},"
                      "\"hyperparameters\":{\"max_steps\":100000,\"batch_size\":4,\"max_length\":24,"
                      "\"logging_steps\":1,\"save_steps\":100000}}";
    char a[32], b[32];
    T_OK(submit(&d, job, a));
    T_OK(submit(&d, job, b));
    T_OK(dd_wait_step(&d, a, 3, 60));
    T_OK(dd_wait_step(&d, b, 3, 60));
    long code;
    json_t *ja = get(&d, "/v1/fine_tuning/jobs/%s", a, &code), *jb = get(&d, "/v1/fine_tuning/jobs/%s", b, &code);
    long a0 = (long)json_integer_value(json_object_get(json_object_get(ja, "progress"), "step"));
    long b0 = (long)json_integer_value(json_object_get(json_object_get(jb, "progress"), "step"));
    T_STR_EQ(dd_str(ja, "status"), "running");
    T_STR_EQ(dd_str(jb, "status"), "running");
    json_decref(ja);
    json_decref(jb);
    /* watch until 40 steps happened between them (1 s here; longer under sanitizers) */
    long a1 = a0, b1 = b0;
    double t1 = dd_now(), end = t1 + 60;
    while ((a1 - a0) + (b1 - b0) < 40 && dd_now() < end) {
        dd_sleep_ms(50);
        ja = get(&d, "/v1/fine_tuning/jobs/%s", a, &code);
        jb = get(&d, "/v1/fine_tuning/jobs/%s", b, &code);
        a1 = (long)json_integer_value(json_object_get(json_object_get(ja, "progress"), "step"));
        b1 = (long)json_integer_value(json_object_get(json_object_get(jb, "progress"), "step"));
        json_decref(ja);
        json_decref(jb);
    }
    fprintf(stderr, "concurrent over HTTP: %s +%ld steps, %s +%ld steps in %.1f s\n", a, a1 - a0, b, b1 - b0,
            dd_now() - t1);
    /* both progress, taking turns: neither more than 3x the other */
    T_TRUE(a1 - a0 >= 8);
    T_TRUE(b1 - b0 >= 8);
    T_TRUE(a1 - a0 <= 3 * (b1 - b0) + 5 && b1 - b0 <= 3 * (a1 - a0) + 5);
    T_OK(post_action(&d, a, "cancel", &code));
    T_OK(post_action(&d, b, "cancel", &code));
    T_OK(dd_wait_job(&d, a, "cancelled", 30, NULL));
    T_OK(dd_wait_job(&d, b, "cancelled", 30, NULL));
    T_EQ_INT(dd_stop(&d, SIGINT, 30), 0);
}

/* ---- a full disk ------------------------------------------------------------------------ */

static void test_full_disk(void) {
    char state[1200], small[1300];
    state_dir(state, sizeof state, "disk");
    snprintf(small, sizeof small, "%s/small", t_tmpdir());
    dd_sh("umount '%s' 2>/dev/null; rm -rf '%s'; mkdir -p '%s'", small, small, small);
    /* a 1 MiB tmpfs holds one checkpoint of the tiny model (~0.6 MB) but not two */
    int tmpfs = mount("tmpfs", small, "tmpfs", 0, "size=1m") == 0;
    dd_opts o = {.state_dir = state, .models_dir = g_models};
    const char *args[] = {"--jobs-dir", small, NULL};
    if (tmpfs) {
        o.args = args;
    } else {
        /* not root: no file of the daemon may grow past 400 kB, so the first
         * checkpoint's weights already fail (the database stays far smaller) */
        fprintf(stderr, "full disk: no tmpfs (%s); using RLIMIT_FSIZE\n", strerror(errno));
        o.fsize_limit = 400 * 1024;
    }
    dd_daemon d;
    if (dd_start(&d, &o)) {
        T_TRUE(0);
        if (tmpfs) umount(small);
        return;
    }
    char id[32];
    T_OK(submit(&d, "{\"method\":\"sft\",\"model\":\"tiny\",\"task\":{\"name\":\"addition\",\"rows\":50},"
                    "\"hyperparameters\":{\"max_steps\":40,\"batch_size\":2,\"max_length\":24,\"save_steps\":10}}",
                id));
    json_t *j = NULL;
    T_OK(dd_wait_job(&d, id, "failed", 60, &j));
    json_t *err = json_object_get(j, "error");
    fprintf(stderr, "full disk: %s: %s\n", dd_str(err, "code"), dd_str(err, "message"));
    T_TRUE(!strcmp(dd_str(err, "code"), "disk_full") || !strcmp(dd_str(err, "code"), "io_error"));
    T_TRUE(strstr(dd_str(err, "message"), "checkpoint-") != NULL || strstr(dd_str(err, "message"), "safetensors"));
    json_decref(j);
    long code;
    /* the daemon still serves, the database is consistent */
    json_t *l = dd_get(&d, "/v1/fine_tuning/jobs", &code);
    T_EQ_INT(code, 200);
    T_EQ_INT(json_array_size(json_object_get(l, "data")), 1);
    json_decref(l);
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
    char path[2048];
    snprintf(path, sizeof path, "%s/alignd.db", state);
    sqlite3 *db;
    T_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
    sqlite3_step(st);
    T_STR_EQ((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (tmpfs) {
        /* the earlier checkpoint is complete and loads */
        char ck[1400], cmd[3000];
        snprintf(ck, sizeof ck, "%s/%s/checkpoint-10", small, id);
        snprintf(path, sizeof path, "%s/trainer_state.json", ck);
        char *ts = dd_read_file(path, NULL);
        T_TRUE(ts && strstr(ts, "\"global_step\": 10"));
        free(ts);
        snprintf(cmd, sizeof cmd, "'%s' logprobs --model '%s' --ids 1,2,3 > /dev/null", dd_bin(), ck);
        T_OK(dd_sh("%s", cmd));
        umount(small);
    }
}

/* ---- keys and --check-config ------------------------------------------------------------ */

static void test_cli(void) {
    char state[1200], out[1300];
    state_dir(state, sizeof state, "keys");
    snprintf(out, sizeof out, "%s/keys.out", t_tmpdir());
    T_OK(dd_sh("'%s' keys create --name ci --read-only --state-dir '%s' > '%s'", dd_bin(), state, out));
    char *txt = dd_read_file(out, NULL);
    T_TRUE(txt != NULL);
    if (txt) {
        size_t n = strlen(txt);
        while (n && txt[n - 1] == '\n') txt[--n] = 0;
        const char *key = strrchr(txt, '\n') ? strrchr(txt, '\n') + 1 : txt;
        T_TRUE(!strncmp(key, "ak-", 3) && strlen(key) == 67);
        /* only its hash is stored */
        T_TRUE(dd_sh("cat '%s'/alignd.db* | grep -a -q '%s'", state, key + 3) != 0);
        dd_daemon d;
        if (!start(&d, state, NULL, NULL)) {
            long code;
            json_t *j = dd_get(&d, "/v1/fine_tuning/jobs", &code);
            T_EQ_INT(code, 401);
            json_decref(j);
            snprintf(d.key, sizeof d.key, "%s", key);
            j = dd_get(&d, "/v1/fine_tuning/jobs", &code);
            T_EQ_INT(code, 200);
            json_decref(j);
            T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
        }
    }
    free(txt);
    /* alignd train honours save_total_limit as the daemon does: the newest
     * checkpoints stay (7 steps, one every 2: 4 and 6 of 2, 4, 6), a
     * folder that is not a checkpoint's is left alone */
    char job[1400], dir[1300];
    snprintf(dir, sizeof dir, "%s/cli_rotate", t_tmpdir());
    snprintf(job, sizeof job, "%s/cli_rotate.json", t_tmpdir());
    T_OK(dd_sh("mkdir -p '%s/checkpoint-1x' && printf '%%s' '{\"method\":\"sft\",\"model\":\"%s/tiny\",\"task\":"
               "{\"name\":\"addition\",\"rows\":50},\"hyperparameters\":{\"max_steps\":7,\"batch_size\":2,"
               "\"max_length\":24,\"save_steps\":2,\"save_total_limit\":2},\"output_dir\":\"%s\"}' > '%s'",
               dir, g_models, dir, job));
    T_OK(dd_sh("'%s' train '%s' > /dev/null 2> '%s.err'", dd_bin(), job, dir));
    T_OK(dd_sh("test ! -e '%s/checkpoint-2' && test -d '%s/checkpoint-4' && test -d '%s/checkpoint-6' && "
               "test -d '%s/checkpoint-1x' && grep -q 'checkpoint removed (save_total_limit 2): .*checkpoint-2$' '%s.err'",
               dir, dir, dir, dir, dir));
    T_OK(dd_sh("'%s' serve --check-config --workers 3 --state-dir '%s' | grep -q '^workers = 3$'", dd_bin(), state));
    T_TRUE(dd_sh("'%s' serve --check-config --workers x 2>/dev/null", dd_bin()) != 0);
    /* dtype (the chat endpoints', reward models' and judges' precision) */
    T_OK(dd_sh("'%s' serve --check-config --dtype bf16 --state-dir '%s' | grep -q '^dtype = \"bf16\"$'", dd_bin(),
               state));
    T_OK(dd_sh("'%s' serve --check-config --dtype fp16 --state-dir '%s' 2>&1 >/dev/null | grep -q "
               "\"^alignd: --dtype: dtype: 'fp16' is not auto, bf16 or fp32$\"", dd_bin(), state));
    T_TRUE(dd_sh("'%s' serve --check-config --config /nonexistent/alignd.conf 2>/dev/null", dd_bin()) != 0);
}

/* Journald level prefixes, and systemd socket activation ($LISTEN_FDS). */
static void test_systemd(void) {
    char state[1200], out[1300];
    state_dir(state, sizeof state, "journal");
    snprintf(out, sizeof out, "%s/journal.out", t_tmpdir());
    /* a listen address that cannot bind: the failure is logged at <3> */
    dd_sh("JOURNAL_STREAM=8:9 '%s' serve --state-dir '%s' --models-dir '%s' --listen 203.0.113.7:1 > '%s' 2>&1",
          dd_bin(), state, g_models, out);
    char *txt = dd_read_file(out, NULL);
    T_TRUE(txt && strstr(txt, "<6>event=starting"));
    T_TRUE(txt && strstr(txt, "<3>event=listen_failed addr=203.0.113.7:1"));
    T_TRUE(txt && !strstr(txt, "ts="));
    free(txt);

    if (access("/usr/bin/systemd-socket-activate", X_OK)) {
        fprintf(stderr, "socket activation: systemd-socket-activate not installed; not tested\n");
        return;
    }
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    bind(probe, (struct sockaddr *)&sa, sizeof sa);
    getsockname(probe, (struct sockaddr *)&sa, &sl);
    int port = ntohs(sa.sin_port);
    close(probe);
    state_dir(state, sizeof state, "activated");
    mkdir(state, 0755);
    char logp[1090], listen[64];
    snprintf(logp, sizeof logp, "%.1070s/daemon.log", state);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("/usr/bin/systemd-socket-activate", "systemd-socket-activate", "-l", listen, dd_bin(), "serve",
              "--state-dir", state, "--models-dir", g_models, (char *)NULL);
        _exit(127);
    }
    dd_daemon d;
    memset(&d, 0, sizeof d);
    d.pid = pid;
    snprintf(d.base, sizeof d.base, "http://127.0.0.1:%d", port);
    snprintf(d.log, sizeof d.log, "%s", logp);
    long code = 0;
    double end = dd_now() + 30;
    while (code != 200 && dd_now() < end) {
        json_t *j = dd_get(&d, "/healthz", &code);
        json_decref(j);
        if (code != 200) dd_sleep_ms(50);
    }
    T_EQ_INT(code, 200);
    /* the line is written just after the server starts answering */
    char *log = NULL;
    for (end = dd_now() + 10; dd_now() < end; dd_sleep_ms(20)) {
        free(log);
        log = dd_read_file(logp, NULL);
        if (log && strstr(log, "socket_activated=1")) break;
    }
    T_TRUE(log && strstr(log, "socket_activated=1"));
    if (!log || !strstr(log, "socket_activated=1")) dd_log_tail(&d, 2000);
    free(log);
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(g_models, sizeof g_models, "%s/models", t_tmpdir());
    if (dd_sh("'%s' init-model --arch gpt2 --layers 2 --hidden 32 --heads 2 --context 64 --seed 3 --out '%s/tiny' "
              "> /dev/null", dd_bin(), g_models)) {
        fprintf(stderr, "init-model failed\n");
        return 1;
    }
    double t0 = dd_now();
    test_end_to_end();
    fprintf(stderr, "end to end: %.1fs\n", dd_now() - t0);
    test_durability();
    fprintf(stderr, "durability: %.1fs\n", dd_now() - t0);
    test_concurrent();
    fprintf(stderr, "concurrent: %.1fs\n", dd_now() - t0);
    test_full_disk();
    fprintf(stderr, "full disk: %.1fs\n", dd_now() - t0);
    test_cli();
    fprintf(stderr, "cli: %.1fs\n", dd_now() - t0);
    test_data_pause();
    fprintf(stderr, "data job paused: %.1fs\n", dd_now() - t0);
    test_systemd();
    fprintf(stderr, "systemd: %.1fs\n", dd_now() - t0);
    curl_global_cleanup();
    return t_done();
}

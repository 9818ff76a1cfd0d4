/* The external reward verifier's client (daemon/reward_http.c) against a
 * test server (tests/reward_server.py, python3's http.server): it answers;
 * it times out; its answer is not JSON, has the wrong count, a null, no
 * "rewards"; it refuses the request (400: no retry); it keeps failing (500:
 * retried, then the error); it fails once, then answers (retried to
 * success); nobody listens. Then the two runners: `alignd train JOB.json`
 * (a GRPO run scored by the verifier, and one whose verifier refuses:
 * non-zero exit with the verifier's answer), and the daemon (the job fails
 * with the verifier's answer in its error). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/reward_http.h"
#include "daemon_util.h"
#include "t.h"
#include "t_model.h"

static char g_err[AL_ERRLEN];
static int g_port;
static pid_t g_server;

static void start_server(void) {
    int fd[2];
    if (pipe(fd)) return;
    const char *src = getenv("AL_TEST_SRC");
    char script[1200];
    snprintf(script, sizeof script, "%s/reward_server.py", src && *src ? src : "tests");
    g_server = fork();
    if (g_server == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        execl("/usr/bin/python3", "python3", script, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    if (f && fscanf(f, "%d", &g_port) != 1) g_port = 0;
    if (f) fclose(f);
}

static al_reward_cfg cfg_for(const char *path, int timeout_ms, int retries, int batch) {
    al_reward_cfg c;
    memset(&c, 0, sizeof c);
    snprintf(c.http_url, sizeof c.http_url, "http://127.0.0.1:%d%s", g_port, path);
    c.http_timeout_ms = timeout_ms;
    c.http_retries = retries;
    c.http_batch = batch;
    c.http_weight = 1;
    return c;
}

static const char *P[3] = {"1+1=", "2+2=", "3+3="};
static const char *C[3] = {"2", "so 4", "5"};

static int call(const char *path, int timeout_ms, int retries, float *out) {
    al_reward_cfg c = cfg_for(path, timeout_ms, retries, 8);
    json_t *rows[3] = {json_pack("{s:s}", "answer", "2"), json_pack("{s:s}", "answer", "4"),
                       json_pack("{s:s}", "answer", "6")};
    g_err[0] = 0;
    int rc = reward_http_score(NULL, &c, 3, P, C, (const json_t *const *)rows, out, g_err);
    for (int i = 0; i < 3; i++) json_decref(rows[i]);
    return rc;
}

/* POST requests the server has seen so far. */
static long seen(json_t **last) {
    dd_daemon d = {0};
    snprintf(d.base, sizeof d.base, "http://127.0.0.1:%d", g_port);
    long code;
    json_t *o = dd_get(&d, "/seen", &code);
    long n = (long)json_integer_value(json_object_get(o, "requests"));
    if (last) *last = json_incref(json_object_get(o, "last"));
    json_decref(o);
    return n;
}

static int starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static void test_client(void) {
    float r[3] = {0};
    char want[AL_ERRLEN];
    T_OK(call("/ok", 2000, 0, r));
    T_NEAR(r[0], 1, 0);
    T_NEAR(r[1], 1, 0);
    T_NEAR(r[2], 0, 0);
    json_t *last = NULL;
    long n0 = seen(&last);
    char *body = json_dumps(last, JSON_COMPACT | JSON_SORT_KEYS);
    T_STR_EQ(body, "{\"completions\":[\"2\",\"so 4\",\"5\"],\"prompts\":[\"1+1=\",\"2+2=\",\"3+3=\"],"
                   "\"rows\":[{\"answer\":\"2\"},{\"answer\":\"4\"},{\"answer\":\"6\"}]}");
    free(body);
    json_decref(last);

    /* a timeout, retried once */
    T_EQ_INT(call("/slow", 300, 1, r), AL_EIO);
    snprintf(want, sizeof want, "http://127.0.0.1:%d/slow: ", g_port);
    T_TRUE(starts(g_err, want));
    T_TRUE(strstr(g_err, "imed out") && strstr(g_err, "(after 2 attempts)"));
    fprintf(stderr, "timeout: %s\n", g_err);

    /* malformed answers fail at once, with the answer in the message */
    long n1 = seen(NULL);
    T_EQ_INT(call("/malformed", 2000, 3, r), AL_EFORMAT);
    snprintf(want, sizeof want, "http://127.0.0.1:%d/malformed: the verifier's answer is not JSON (", g_port);
    T_TRUE(starts(g_err, want) && strstr(g_err, "): {rewards: oops"));
    if (!strstr(g_err, "): {rewards: oops")) fprintf(stderr, "malformed: %s\n", g_err);
    T_EQ_INT(seen(NULL) - n1, 1); /* one attempt */
    T_EQ_INT(call("/count", 2000, 3, r), AL_EFORMAT);
    T_TRUE(strstr(g_err, "/count: the verifier returned 2 rewards for 3 completions: {\"rewards\": [0.0, 0.0]}") != NULL);
    T_EQ_INT(call("/null", 2000, 3, r), AL_EFORMAT);
    T_TRUE(strstr(g_err, "/null: the verifier's rewards[2] is null, not a finite number") != NULL);
    T_EQ_INT(call("/norewards", 2000, 3, r), AL_EFORMAT);
    T_TRUE(strstr(g_err, "/norewards: the verifier's answer has no \"rewards\" list: {\"scores\"") != NULL);

    /* a refusal is not retried; a crash is, then reported */
    n1 = seen(NULL);
    T_EQ_INT(call("/e400", 2000, 3, r), AL_EIO);
    T_TRUE(strstr(g_err, "/e400: HTTP 400: {\"error\": \"bad request shape\"}") != NULL);
    T_TRUE(strstr(g_err, "attempts") == NULL);
    T_EQ_INT(seen(NULL) - n1, 1);
    n1 = seen(NULL);
    T_EQ_INT(call("/e500", 2000, 2, r), AL_EIO);
    T_TRUE(strstr(g_err, "/e500: HTTP 500: {\"error\": \"verifier crashed\"} (after 3 attempts)") != NULL);
    T_EQ_INT(seen(NULL) - n1, 3);

    /* 500 once, then an answer: retried to success */
    T_OK(call("/flaky/a", 2000, 1, r));
    T_NEAR(r[1], 4, 0);
    T_EQ_INT(call("/flaky/b", 2000, 0, r), AL_EIO); /* no retries allowed */

    /* nobody listening */
    al_reward_cfg c = cfg_for("/ok", 500, 1, 8);
    snprintf(c.http_url, sizeof c.http_url, "http://127.0.0.1:1/ok");
    T_EQ_INT(reward_http_score(NULL, &c, 3, P, C, NULL, r, g_err), AL_EIO);
    T_TRUE(starts(g_err, "http://127.0.0.1:1/ok: ") && strstr(g_err, "(after 2 attempts)"));
    fprintf(stderr, "refused: %s\n", g_err);

    /* a completion that is not UTF-8 goes with U+FFFD; rows may be absent */
    const char *bad[1] = {"4\xff"};
    c = cfg_for("/len", 2000, 0, 8);
    T_OK(reward_http_score(NULL, &c, 1, P, bad, NULL, r, g_err));
    T_NEAR(r[0], 2, 0); /* "4" + U+FFFD: two characters */
    (void)n0;
}

/* A free TCP port on 127.0.0.1 (bound, read, released). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* The 20-line verifier of api/API.md, as printed there, scores as it says. */
static void test_documented_verifier(const char *tmp) {
    const char *src = getenv("AL_TEST_SRC");
    char path[1200];
    snprintf(path, sizeof path, "%s/../api/API.md", src && *src ? src : "tests");
    char *md = dd_read_file(path, NULL);
    T_TRUE(md != NULL);
    if (!md) return;
    char *a = strstr(md, "<!-- verifier:begin -->\n```python\n"), *b = strstr(md, "```\n<!-- verifier:end -->");
    T_TRUE(a && b && b > a);
    if (!a || !b || b <= a) {
        free(md);
        return;
    }
    a += strlen("<!-- verifier:begin -->\n```python\n");
    int lines = 0;
    for (char *q = a; q < b; q++) lines += *q == '\n';
    T_TRUE(lines <= 20);
    snprintf(path, sizeof path, "%s/verifier.py", tmp);
    FILE *f = fopen(path, "w");
    if (f) {
        fwrite(a, 1, (size_t)(b - a), f);
        fclose(f);
    }
    free(md);
    int port = free_port();
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/usr/bin/python3", "python3", path, ps, (char *)NULL);
        _exit(127);
    }
    al_reward_cfg c = cfg_for("/", 500, 10, 8);
    snprintf(c.http_url, sizeof c.http_url, "http://127.0.0.1:%d/", port);
    json_t *rows[3] = {json_pack("{s:i}", "answer", 2), json_pack("{s:s}", "answer", "4"),
                       json_pack("{s:s}", "answer", "6")};
    float r[3] = {-1, -1, -1};
    /* retries ride out the verifier's start-up */
    T_OK(reward_http_score(NULL, &c, 3, P, C, (const json_t *const *)rows, r, g_err));
    T_NEAR(r[0], 1, 0);
    T_NEAR(r[1], 1, 0);
    T_NEAR(r[2], 0, 0);
    for (int i = 0; i < 3; i++) json_decref(rows[i]);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* alignd train with a verifier: a short GRPO run scored by it, and one
 * whose verifier refuses every request. */
static void test_cli(const char *tmp, const char *model) {
    char job[4096], path[1200];
    for (int pass = 0; pass < 2; pass++) {
        snprintf(job, sizeof job,
                 "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":16},"
                 "\"reward\":{\"http\":{\"url\":\"http://127.0.0.1:%d%s\",\"batch\":4,\"retries\":0}},"
                 "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":8,\"num_generations\":4,"
                 "\"max_completion_length\":4,\"logging_steps\":1}}",
                 model, g_port, pass ? "/e400" : "/ok");
        snprintf(path, sizeof path, "%s/job%d.json", tmp, pass);
        FILE *f = fopen(path, "w");
        if (!f) return;
        fputs(job, f);
        fclose(f);
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "'%s' train '%s' >'%s/out%d' 2>'%s/err%d'", dd_bin(), path, tmp, pass, tmp, pass);
        int st = system(cmd);
        snprintf(path, sizeof path, "%s/out%d", tmp, pass);
        char *out = dd_read_file(path, NULL);
        snprintf(path, sizeof path, "%s/err%d", tmp, pass);
        char *err = dd_read_file(path, NULL);
        if (!pass) {
            T_EQ_INT(st, 0);
            T_TRUE(out && strstr(out, "\"rewards/http/mean\""));
        } else {
            T_TRUE(st != 0);
            char want[256];
            snprintf(want, sizeof want, "reward.http: http://127.0.0.1:%d/e400: HTTP 400: {\"error\": \"bad request shape\"}",
                     g_port);
            T_TRUE(err && strstr(err, want));
            if (err && !strstr(err, want)) fprintf(stderr, "stderr: %s\n", err);
        }
        free(out);
        free(err);
    }
}

/* The daemon: the job fails with the verifier's answer in its error. */
static void test_daemon(const char *tmp, const char *models) {
    char state[900];
    snprintf(state, sizeof state, "%.800s/state", tmp);
    dd_daemon d;
    dd_opts o = {.state_dir = state, .models_dir = models};
    if (dd_start(&d, &o)) {
        T_TRUE(0);
        return;
    }
    char job[2048];
    snprintf(job, sizeof job,
             "{\"method\":\"grpo\",\"model\":\"tiny\",\"task\":{\"name\":\"addition2\",\"rows\":16},"
             "\"reward\":{\"http\":{\"url\":\"http://127.0.0.1:%d/e500\",\"retries\":1}},"
             "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":8,\"num_generations\":4,\"max_completion_length\":4}}",
             g_port);
    long code;
    json_t *j = dd_post(&d, "/v1/fine_tuning/jobs", job, &code);
    T_EQ_INT(code, 200);
    json_decref(j);
    json_t *got = NULL;
    T_OK(dd_wait_job(&d, "ftjob-1", "failed", 120, &got));
    const char *msg = dd_str(json_object_get(got, "error"), "message");
    char want[256];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/e500: HTTP 500: {\"error\": \"verifier crashed\"} (after 2 attempts)",
             g_port);
    T_TRUE(strstr(msg, want) != NULL);
    if (!strstr(msg, want)) fprintf(stderr, "job error: %s\n", msg);
    json_decref(got);
    got = dd_get(&d, "/healthz", &code);
    T_EQ_INT(code, 200); /* a failed job never takes the daemon down */
    json_decref(got);
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    reward_http_set_backoff_scale(0.1);
    start_server();
    T_TRUE(g_port > 0);
    if (g_port <= 0) return t_done();
    const char *tmp = t_tmpdir();
    char models[900], model[1000];
    snprintf(models, sizeof models, "%.800s/models", tmp);
    snprintf(model, sizeof model, "%s/tiny", models);
    T_OK(t_save_byte_model((t_shape){AL_ARCH_GPT2, .layers = 1, .C = 16, .heads = 2, .FF = 32, .max_T = 32}, 1, model,
                           g_err));
    test_client();
    test_documented_verifier(tmp);
    test_cli(tmp, model);
    test_daemon(tmp, models);
    kill(g_server, SIGTERM);
    waitpid(g_server, NULL, 0);
    return t_done();
}

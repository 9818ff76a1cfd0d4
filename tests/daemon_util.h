/* Test helpers for real daemons: start `alignd serve` as a child process on
 * 127.0.0.1 with port 0 and its own state directory, read the bound port
 * back from <state>/alignd.addr, wait for /healthz, speak HTTP with libcurl,
 * and stop or kill it.
 *
 *   dd_daemon d;
 *   dd_opts o = {.state_dir = dir, .models_dir = models};
 *   if (dd_start(&d, &o)) ...                      // d.base = "http://127.0.0.1:PORT"
 *   long code;
 *   json_t *job = dd_post(&d, "/v1/fine_tuning/jobs", "{...}", &code);
 *   json_t *got = dd_get(&d, "/v1/fine_tuning/jobs/ftjob-1", &code);
 *   dd_wait_job(&d, "ftjob-1", "succeeded", 60);  // polls until the status (or a final one)
 *   int st = dd_stop(&d, SIGTERM, 30);            // exit status, -1 on timeout (then SIGKILL)
 *
 * The binary is $ALIGND_BIN (ctest sets it). The child's stdout and stderr
 * are appended to <state>/daemon.log; dd_log_tail prints its end on failure.
 * Everything is static inline so each test includes what it uses. */
#ifndef DAEMON_UTIL_H
#define DAEMON_UTIL_H

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct dd_daemon {
    pid_t pid;
    int port;
    char base[64];          /* "http://127.0.0.1:PORT" */
    char state[1024];
    char log[1100];
    char key[128];          /* Bearer key sent with every request when set */
} dd_daemon;

typedef struct dd_opts {
    const char *state_dir;          /* required; created when missing */
    const char *models_dir;         /* NULL: <state_dir>/models */
    const char *const *args;        /* extra serve arguments, NULL-terminated, or NULL */
    const char *const *env;         /* extra "NAME=value" entries, NULL-terminated, or NULL */
    long fsize_limit;               /* > 0: RLIMIT_FSIZE of the child (SIGXFSZ ignored) */
    double timeout_s;               /* start-up timeout; 0: 60 s */
} dd_opts;

static inline double dd_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void dd_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

static inline const char *dd_bin(void) {
    const char *b = getenv("ALIGND_BIN");
    return b && *b ? b : "alignd";
}

/* Prints the last `bytes` of the daemon's log to stderr. */
static inline void dd_log_tail(const dd_daemon *d, long bytes) {
    FILE *f = fopen(d->log, "r");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n > bytes ? n - bytes : 0, SEEK_SET);
    char buf[4096];
    size_t k;
    fprintf(stderr, "---- %s (tail) ----\n", d->log);
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, k, stderr);
    fprintf(stderr, "----\n");
    fclose(f);
}

/* ---- HTTP ---------------------------------------------------------------------- */

typedef struct dd_resp {
    long status;            /* HTTP status, 0 when the request failed */
    char *body;             /* NUL-terminated, malloc'd */
    size_t len;
    char ctype[128];
} dd_resp;

static inline size_t dd_write_cb_(char *p, size_t sz, size_t nm, void *ud) {
    dd_resp *r = ud;
    size_t n = sz * nm;
    char *nb = realloc(r->body, r->len + n + 1);
    if (!nb) return 0;
    memcpy(nb + r->len, p, n);
    r->body = nb;
    r->len += n;
    r->body[r->len] = 0;
    return n;
}

static inline void dd_resp_free(dd_resp *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* One request. body may be NULL; ctype defaults to application/json when a
 * body is given; headers (may be NULL) are extra "Name: value" lines,
 * NULL-terminated. timeout_s 0: 60 s. Returns 0 when a response came. */
static inline int dd_request(const dd_daemon *d, const char *method, const char *path, const char *body,
                             size_t body_len, const char *ctype, const char *const *headers, double timeout_s,
                             dd_resp *r) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) return -1;
    char url[2048], h[512];
    snprintf(url, sizeof url, "%s%s", d->base, path);
    struct curl_slist *hl = NULL;
    if (body) {
        snprintf(h, sizeof h, "Content-Type: %s", ctype ? ctype : "application/json");
        hl = curl_slist_append(hl, h);
    }
    if (d->key[0]) {
        snprintf(h, sizeof h, "Authorization: Bearer %s", d->key);
        hl = curl_slist_append(hl, h);
    }
    for (int i = 0; headers && headers[i]; i++) hl = curl_slist_append(hl, headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dd_write_cb_);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)((timeout_s > 0 ? timeout_s : 60) * 1000));
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ct) snprintf(r->ctype, sizeof r->ctype, "%s", ct);
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (!r->body) r->body = calloc(1, 1);
    return rc == CURLE_OK ? 0 : -1;
}

/* JSON helpers: the parsed body (NULL when not JSON), *status the HTTP code. */
static inline json_t *dd_json_(dd_resp *r, long *status) {
    if (status) *status = r->status;
    json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
    dd_resp_free(r);
    return j;
}

static inline json_t *dd_get(const dd_daemon *d, const char *path, long *status) {
    dd_resp r;
    dd_request(d, "GET", path, NULL, 0, NULL, NULL, 0, &r);
    return dd_json_(&r, status);
}

static inline json_t *dd_post(const dd_daemon *d, const char *path, const char *json, long *status) {
    dd_resp r;
    dd_request(d, "POST", path, json ? json : "", json ? strlen(json) : 0, "application/json", NULL, 0, &r);
    return dd_json_(&r, status);
}

static inline json_t *dd_delete(const dd_daemon *d, const char *path, long *status) {
    dd_resp r;
    dd_request(d, "DELETE", path, NULL, 0, NULL, NULL, 0, &r);
    return dd_json_(&r, status);
}

/* Uploads bytes as a raw-body file (POST /v1/files?purpose=...&filename=...). */
static inline json_t *dd_upload(const dd_daemon *d, const char *filename, const char *data, size_t len,
                                long *status) {
    char path[512];
    snprintf(path, sizeof path, "/v1/files?purpose=fine-tune&filename=%s", filename);
    dd_resp r;
    dd_request(d, "POST", path, data, len, "application/jsonl", NULL, 0, &r);
    return dd_json_(&r, status);
}

/* String member of a JSON object, "" when absent. */
static inline const char *dd_str(const json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static inline int dd_final_(const char *st) {
    return !strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled");
}

/* Polls GET /v1/fine_tuning/jobs/{id} every 50 ms until its status is
 * `status` (returns 0 and the job in *out if out != NULL) or a different
 * final status / the timeout (returns -1, *out the last job seen). */
static inline int dd_wait_job(const dd_daemon *d, const char *id, const char *status, double timeout_s,
                              json_t **out) {
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", id);
    double end = dd_now() + timeout_s;
    json_t *j = NULL;
    int rc = -1;
    for (;;) {
        json_decref(j);
        long code;
        j = dd_get(d, path, &code);
        const char *st = dd_str(j, "status");
        if (!strcmp(st, status)) {
            rc = 0;
            break;
        }
        if ((dd_final_(st) && !dd_final_(status)) || (dd_final_(st) && strcmp(st, status))) break;
        if (dd_now() > end) break;
        dd_sleep_ms(50);
    }
    if (rc) fprintf(stderr, "dd_wait_job %s: wanted %s, got %s\n", id, status, dd_str(j, "status"));
    if (out) *out = j;
    else json_decref(j);
    return rc;
}

/* Polls until the job's progress.step >= step (0) or the timeout (-1). */
static inline int dd_wait_step(const dd_daemon *d, const char *id, long step, double timeout_s) {
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", id);
    double end = dd_now() + timeout_s;
    while (dd_now() < end) {
        long code;
        json_t *j = dd_get(d, path, &code);
        long s = (long)json_integer_value(json_object_get(json_object_get(j, "progress"), "step"));
        const char *st = dd_str(j, "status");
        int fin = dd_final_(st);
        json_decref(j);
        if (s >= step) return 0;
        if (fin) return -1;
        dd_sleep_ms(20);
    }
    return -1;
}

/* ---- the process ------------------------------------------------------------------- */

/* Starts the daemon; 0 once /healthz answers 200, -1 (log tail printed) on
 * failure. */
static inline int dd_start(dd_daemon *d, const dd_opts *o) {
    memset(d, 0, sizeof *d); /* the key too: a stack struct's garbage went out as a header */
    snprintf(d->state, sizeof d->state, "%s", o->state_dir);
    snprintf(d->log, sizeof d->log, "%s/daemon.log", o->state_dir);
    mkdir(o->state_dir, 0755);
    char addr[1100];
    snprintf(addr, sizeof addr, "%s/alignd.addr", o->state_dir);
    unlink(addr);
    char models[1100];
    if (o->models_dir) snprintf(models, sizeof models, "%s", o->models_dir);
    else snprintf(models, sizeof models, "%s/models", o->state_dir);
    const char *argv[64];
    int n = 0;
    argv[n++] = dd_bin();
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--state-dir";
    argv[n++] = o->state_dir;
    argv[n++] = "--models-dir";
    argv[n++] = models;
    for (int i = 0; o->args && o->args[i] && n < 62; i++) argv[n++] = o->args[i];
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        for (int i = 0; o->env && o->env[i]; i++) {
            char kv[4096];
            snprintf(kv, sizeof kv, "%s", o->env[i]);
            char *eq = strchr(kv, '=');
            if (!eq) continue;
            *eq = 0;
            setenv(kv, eq + 1, 1);
        }
        if (o->fsize_limit > 0) {
            signal(SIGXFSZ, SIG_IGN); /* stays ignored across exec: writes fail with EFBIG */
            struct rlimit rl = {(rlim_t)o->fsize_limit, (rlim_t)o->fsize_limit};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    double end = dd_now() + (o->timeout_s > 0 ? o->timeout_s : 60);
    while (dd_now() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "dd_start: the daemon exited (status %d) before listening\n",
                    WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
            d->pid = 0;
            dd_log_tail(d, 3000);
            return -1;
        }
        FILE *f = fopen(addr, "r");
        if (f) {
            char line[256] = "";
            char *ok = fgets(line, sizeof line, f);
            fclose(f);
            char *colon = ok ? strrchr(line, ':') : NULL;
            if (colon && atoi(colon + 1) > 0) {
                d->port = atoi(colon + 1);
                snprintf(d->base, sizeof d->base, "http://127.0.0.1:%d", d->port);
                dd_resp r;
                if (dd_request(d, "GET", "/healthz", NULL, 0, NULL, NULL, 2, &r) == 0 && r.status == 200) {
                    dd_resp_free(&r);
                    return 0;
                }
                dd_resp_free(&r);
            }
        }
        dd_sleep_ms(20);
    }
    fprintf(stderr, "dd_start: no /healthz within the timeout\n");
    dd_log_tail(d, 3000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    d->pid = 0;
    return -1;
}

/* Sends sig and waits up to timeout_s for the exit. Returns the exit status
 * (0..255), 128+N when killed by signal N, or -1 on timeout (the daemon is
 * then SIGKILLed). */
static inline int dd_stop(dd_daemon *d, int sig, double timeout_s) {
    if (d->pid <= 0) return -1;
    kill(d->pid, sig);
    double end = dd_now() + timeout_s;
    int st = 0, rc = -1;
    for (;;) {
        pid_t w = waitpid(d->pid, &st, WNOHANG);
        if (w == d->pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (dd_now() > end) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &st, 0);
            break;
        }
        dd_sleep_ms(10);
    }
    d->pid = 0;
    return rc;
}

/* kill -9 and reap. */
static inline void dd_kill9(dd_daemon *d) { dd_stop(d, SIGKILL, 10); }

/* Runs a shell command; 0 when it exits 0. */
static inline int dd_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int dd_sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- raw sockets (what curl will not send) ------------------------------------ */

/* A TCP connection to 127.0.0.1:port from source address src (any 127/8
 * address, so that per-address limits see separate clients; NULL: any).
 * -1 on failure. */
static inline int dd_raw_connect(int port, const char *src) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    if (src) {
        inet_pton(AF_INET, src, &a.sin_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof a)) {
            close(fd);
            return -1;
        }
    }
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads what the server sends until it closes the connection (*closed = 1)
 * or wait_s pass without a byte (*closed = 0). Returns the bytes read,
 * malloc'd and NUL-terminated. */
static inline char *dd_raw_read(int fd, int wait_s, int *closed) {
    struct timeval tv = {wait_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t n = 0, cap = 4096;
    char *b = malloc(cap);
    *closed = 0;
    for (;;) {
        if (n + 1024 > cap) b = realloc(b, cap *= 2);
        ssize_t k = read(fd, b + n, cap - n - 1);
        if (k > 0) {
            n += (size_t)k;
            continue;
        }
        *closed = k == 0 || (k < 0 && errno == ECONNRESET);
        break;
    }
    b[n] = 0;
    return b;
}

/* Sends len raw bytes on a new connection and reads the answer until the
 * server closes (10 s at most). Returns the status code (0: none) and the
 * answer's error code in code (64 bytes, "" when none). */
static inline int dd_raw_request(int port, const char *bytes, size_t len, char *code) {
    int fd = dd_raw_connect(port, NULL), closed;
    code[0] = 0;
    if (fd < 0) return 0;
    if (send(fd, bytes, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return 0;
    }
    char *b = dd_raw_read(fd, 10, &closed);
    close(fd);
    int st = 0;
    sscanf(b, "HTTP/1.1 %d", &st);
    const char *body = strstr(b, "\r\n\r\n");
    json_t *j = body ? json_loads(body + 4, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    snprintf(code, 64, "%s", c ? c : "");
    json_decref(j);
    free(b);
    return st;
}

/* Reads a whole file into a malloc'd buffer; NULL when unreadable. */
static inline char *dd_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = b ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!b || got != (size_t)n) {
        free(b);
        return NULL;
    }
    b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

#endif

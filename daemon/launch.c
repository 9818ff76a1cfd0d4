/* Jobs run through a launcher (see launch.h).
 *
 * The launcher runs in a session of its own (posix_spawn's SETSID), so the
 * processes it starts on this machine — mpirun forks the local ranks in that
 * session, each in a process group of its own — can all be found and ended
 * afterwards by their session id, whatever the launcher did. Only this
 * worker's thread touches the launcher: it polls the pipe of the launcher's
 * standard output a few times a second and checks the cancel and pause flags
 * in between. */
#define _GNU_SOURCE /* posix_spawn's SETSID and closefrom, pipe2 */
#include "launch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "log.h"

extern char **environ;

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the launcher line ------------------------------------------------------------- */

void launch_argv_free(char **argv) {
    if (!argv) return;
    for (char **a = argv; *a; a++) free(*a);
    free(argv);
}

/* Appends s[0..n) to the growing word w (len, cap). */
static int word_add(char **w, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = (*cap ? *cap * 2 : 64) + n;
        char *x = realloc(*w, c);
        if (!x) return -1;
        *w = x;
        *cap = c;
    }
    memcpy(*w + *len, s, n);
    *len += n;
    (*w)[*len] = 0;
    return 0;
}

int launch_argv(const char *line, int processes, int threads, const char *name, char ***argv, int *argc,
                char err[AL_ERRLEN]) {
    char **v = NULL, *w = NULL;
    int n = 0, rc = AL_OK, in_word = 0;
    size_t len = 0, cap = 0;
    char quote = 0;
    char np[24], nt[24];
    snprintf(np, sizeof np, "%d", processes);
    snprintf(nt, sizeof nt, "%d", threads);
    for (const char *p = line;; p++) {
        char c = *p;
        if (!quote && (c == 0 || c == ' ' || c == '\t' || c == '\n')) {
            if (in_word) {
                char **nv = realloc(v, (size_t)(n + 2) * sizeof *v);
                if (!nv) {
                    rc = AL_ENOMEM;
                    break;
                }
                v = nv;
                v[n++] = w ? w : strdup("");
                v[n] = NULL;
                w = NULL;
                len = cap = 0;
                in_word = 0;
                if (!v[n - 1]) {
                    rc = AL_ENOMEM;
                    break;
                }
            }
            if (c == 0) break;
            continue;
        }
        in_word = 1;
        if (c == 0) {
            rc = al_err(err, AL_EINVAL, "launcher: a %c quote does not close", quote);
            break;
        }
        if (!quote && (c == '\'' || c == '"')) {
            quote = c;
            continue;
        }
        if (quote && c == quote) {
            quote = 0;
            continue;
        }
        if (c == '{') {
            const char *rep = NULL;
            size_t skip = 0;
            if (!strncmp(p, "{processes}", 11)) rep = np, skip = 11;
            else if (!strncmp(p, "{threads}", 9)) rep = nt, skip = 9;
            else if (!strncmp(p, "{job}", 5)) rep = name, skip = 5;
            if (!rep) {
                rc = al_err(err, AL_EINVAL, "launcher: unknown placeholder at '%.40s' ({processes}, {threads}, {job})",
                            p);
                break;
            }
            if (word_add(&w, &len, &cap, rep, strlen(rep))) {
                rc = AL_ENOMEM;
                break;
            }
            p += skip - 1;
            continue;
        }
        if (word_add(&w, &len, &cap, p, 1)) {
            rc = AL_ENOMEM;
            break;
        }
    }
    free(w);
    if (!rc && n == 0) rc = al_err(err, AL_EINVAL, "launcher: the line is empty");
    if (rc) {
        if (rc == AL_ENOMEM) al_err(err, rc, "out of memory");
        launch_argv_free(v);
        return rc;
    }
    *argv = v;
    *argc = n;
    return AL_OK;
}

/* ---- staging ------------------------------------------------------------------------- */

/* Copies src to dst (through dst.tmp, renamed) unless dst has src's size. */
static int copy_file(const char *src, const char *dst, char err[AL_ERRLEN]) {
    struct stat a, b;
    if (stat(src, &a)) return al_err(err, AL_ENOENT, "%s: %s", src, strerror(errno));
    if (!stat(dst, &b) && b.st_size == a.st_size) return AL_OK;
    char tmp[AL_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    FILE *in = fopen(src, "rb"), *out = in ? fopen(tmp, "wb") : NULL;
    int rc = AL_OK;
    if (!in || !out) rc = al_err(err, AL_EIO, "%s: %s", in ? tmp : src, strerror(errno));
    char buf[1 << 16];
    size_t k;
    while (!rc && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) rc = al_err(err, errno == ENOSPC ? AL_ENOSPC : AL_EIO, "%s: %s", tmp, strerror(errno));
    if (!rc && ferror(in)) rc = al_err(err, AL_EIO, "%s: read error", src);
    if (out && (fflush(out) || fsync(fileno(out))) && !rc) rc = al_err(err, AL_EIO, "%s: %s", tmp, strerror(errno));
    if (in) fclose(in);
    if (out && fclose(out) && !rc) rc = al_err(err, AL_EIO, "%s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, dst)) rc = al_err(err, AL_EIO, "%s: %s", dst, strerror(errno));
    if (rc) remove(tmp);
    return rc;
}

typedef struct stage_ctx {
    const char *dir;
    int n;
    char err[AL_ERRLEN];
} stage_ctx;

/* al_job_refs callback: a data file outside the job's folder is copied
 * into <dir>/inputs/ (ranks on other nodes may not see the daemon's state
 * folder) and the description names the copy. Models are used in place:
 * models_dir must be on storage every node mounts (README). */
static int stage_ref(void *ud, al_ref_kind kind, const char *path, const char *value, char *repl, size_t cap,
                     char *msg, size_t msgcap) {
    stage_ctx *c = ud;
    (void)path;
    if (kind != AL_REF_FILE) return 0;
    size_t dl = strlen(c->dir);
    if (!strncmp(value, c->dir, dl) && value[dl] == '/') return 0;
    const char *base = strrchr(value, '/') ? strrchr(value, '/') + 1 : value;
    char in[AL_PATH_MAX + 16], dst[AL_PATH_MAX + 128];
    snprintf(in, sizeof in, "%s/inputs", c->dir);
    snprintf(dst, sizeof dst, "%s/%d-%.100s", in, c->n++, base);
    if (strlen(dst) >= cap) return snprintf(msg, msgcap, "the job's folder path is too long"), 1;
    int rc = al_mkdir_p(in, c->err);
    if (!rc) rc = copy_file(value, dst, c->err);
    if (rc) return snprintf(msg, msgcap, "%s", c->err), 1;
    snprintf(repl, cap, "%s", dst);
    return 0;
}

/* Writes <dir>/job.json: the description with output_dir = dir and its data
 * files copied next to it. Its path into file. */
static int stage(const char *spec, const char *dir, char *file, size_t fn, al_error *fail) {
    char *err = fail->msg;
    json_error_t je;
    json_t *o = json_loads(spec, 0, &je);
    if (!o) return al_err(err, AL_EFORMAT, "the stored job description is not JSON");
    int rc = al_mkdir_p(dir, err);
    stage_ctx c = {.dir = dir};
    al_error re = {"", ""};
    if (!rc && (rc = al_job_refs(o, stage_ref, &c, &re))) al_fail_as(fail, rc, re.field, re.msg);
    if (!rc) rc = json_object_set_new(o, "output_dir", json_string(dir)) ? AL_ENOMEM : AL_OK;
    char *txt = rc ? NULL : json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(o);
    if (!rc && !txt) rc = al_err(err, AL_ENOMEM, "out of memory");
    snprintf(file, fn, "%s/job.json", dir);
    if (!rc) rc = al_file_write_atomic(file, txt, strlen(txt), err);
    free(txt);
    return rc;
}

/* ---- the session ---------------------------------------------------------------------- */

/* The session id of process pid (from /proc/PID/stat), or -1 (also for a
 * zombie: it runs nothing, and waits only for its parent to reap it). */
static long session_of(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* pid (comm) state ppid pgrp session ...: comm may hold anything, so
     * count from its closing parenthesis */
    char *p = strrchr(buf, ')');
    long ppid, pgrp, sid;
    char state;
    if (!p || sscanf(p + 1, " %c %ld %ld %ld", &state, &ppid, &pgrp, &sid) != 4 || state == 'Z') return -1;
    return sid;
}

/* Sends sig to every process of session sid but us; returns how many. */
static int kill_session(long sid, int sig) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    long self = (long)getpid();
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1 || pid == self) continue;
        if (session_of(pid) == sid && kill((pid_t)pid, sig) == 0) n++;
    }
    closedir(d);
    return n;
}

/* ---- rank 0's lines ------------------------------------------------------------------- */

typedef struct reader {
    const al_train_cb *cb;
    json_t *result;          /* the result line, once seen */
    int began;               /* rank 0 said begin: every rank handles SIGUSR1/SIGUSR2 by then */
    long lines;
} reader;

static void on_line(reader *r, const char *line, size_t n) {
    json_error_t je;
    json_t *o = json_loadb(line, n, 0, &je);
    if (!json_is_object(o)) { /* a launcher's own words on stdout: not ours */
        json_decref(o);
        return;
    }
    r->lines++;
    const al_train_cb *cb = r->cb;
    const char *ev = json_string_value(json_object_get(o, "event"));
    if (!ev) {
        /* a logged step: {"step", "epoch", metrics...} */
        al_metric m[2 * AL_MAX_METRICS];
        int k = 0;
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v) {
            if (!strcmp(key, "step") || !strcmp(key, "epoch") || k >= 2 * AL_MAX_METRICS) continue;
            if (strlen(key) >= sizeof m[0].name || !(json_is_number(v) || json_is_null(v))) continue;
            snprintf(m[k].name, sizeof m[k].name, "%s", key);
            m[k++].value = json_is_number(v) ? json_number_value(v) : NAN;
        }
        if (cb->log)
            cb->log(cb->ud, (long)json_integer_value(json_object_get(o, "step")),
                    json_number_value(json_object_get(o, "epoch")), m, k);
    } else if (!strcmp(ev, "begin")) {
        r->began = 1;
        if (cb->begin)
            cb->begin(cb->ud, (long)json_integer_value(json_object_get(o, "total_steps")),
                      (long)json_integer_value(json_object_get(o, "start_step")));
    } else if (!strcmp(ev, "message")) {
        const char *lv = json_string_value(json_object_get(o, "level")), *msg = json_string_value(json_object_get(o, "message"));
        al_log_level l = lv && !strcmp(lv, "error") ? AL_LOG_ERROR : lv && !strcmp(lv, "warn") ? AL_LOG_WARN : AL_LOG_INFO;
        if (cb->event && msg) cb->event(cb->ud, l, msg);
    } else if (!strcmp(ev, "sample")) {
        const char *p = json_string_value(json_object_get(o, "prompt")), *c = json_string_value(json_object_get(o, "completion"));
        json_t *rw = json_object_get(o, "reward");
        if (cb->sample && p && c)
            cb->sample(cb->ud, (long)json_integer_value(json_object_get(o, "step")), p, c,
                       json_is_number(rw) ? json_number_value(rw) : NAN);
    } else if (!strcmp(ev, "eval_result")) {
        const json_t *res = json_object_get(o, "result");
        if (cb->eval_result && json_is_object(res))
            cb->eval_result(cb->ud, (long)json_integer_value(json_object_get(o, "step")), res);
    } else if (!strcmp(ev, "checkpoint")) {
        const char *p = json_string_value(json_object_get(o, "path"));
        if (cb->checkpoint && p) cb->checkpoint(cb->ud, (long)json_integer_value(json_object_get(o, "step")), p);
    } else if (!strcmp(ev, "result")) {
        json_decref(r->result);
        r->result = json_incref(o);
    }
    json_decref(o);
}

/* The code an "AL_..." or errno name stands for (al_strerror's names). */
static int code_of(const char *name) {
    static const int codes[] = {AL_ENOMEM, AL_EIO,    AL_EINVAL, AL_ENOSPC, AL_ENOENT, AL_ECANCELED,
                                AL_EFORMAT, AL_ESHAPE, AL_ENAN,  AL_EUNSUP, AL_ERANGE};
    for (size_t i = 0; name && i < sizeof codes / sizeof codes[0]; i++)
        if (!strcmp(al_strerror(codes[i]), name)) return codes[i];
    return AL_EIO;
}

/* The outcome the result line reports, res filled from it; its "param" (the
 * job's field at fault) into err->field. */
static int from_result(const json_t *o, al_train_result *res, al_error *fail) {
    char *err = fail->msg;
    res->steps = (long)json_integer_value(json_object_get(o, "steps"));
    res->total_steps = (long)json_integer_value(json_object_get(o, "total_steps"));
    res->trained_tokens = json_number_value(json_object_get(o, "trained_tokens"));
    res->output_is_model = json_is_true(json_object_get(o, "output_is_model"));
    const char *od = json_string_value(json_object_get(o, "output_dir"));
    snprintf(res->output_dir, sizeof res->output_dir, "%s", od ? od : "");
    const json_t *files = json_object_get(o, "files");
    res->n_output_files = 0;
    for (size_t i = 0; i < json_array_size(files) && res->n_output_files < 4; i++) {
        const char *p = json_string_value(json_object_get(json_array_get(files, i), "path"));
        const char *pu = json_string_value(json_object_get(json_array_get(files, i), "purpose"));
        if (!p) continue;
        snprintf(res->output_files[res->n_output_files].path, sizeof res->output_files[0].path, "%s", p);
        snprintf(res->output_files[res->n_output_files].purpose, sizeof res->output_files[0].purpose, "%s",
                 pu ? pu : "");
        res->n_output_files++;
    }
    const char *st = json_string_value(json_object_get(o, "status"));
    const char *msg = json_string_value(json_object_get(o, "message"));
    if (st && !strcmp(st, "succeeded")) return AL_OK;
    if (st && !strcmp(st, "paused")) return al_err(err, AL_EPAUSED, "paused at step %ld", res->steps);
    if (st && !strcmp(st, "cancelled")) return al_err(err, AL_ECANCELED, "cancelled at step %ld", res->steps);
    const char *param = json_string_value(json_object_get(o, "param"));
    return al_fail_as(fail, code_of(json_string_value(json_object_get(o, "code"))), param ? param : "",
                      msg && *msg ? msg : "the job failed");
}

/* The last non-empty line of a log file (what mpirun or the rank said on
 * the way out), into out. */
static void log_tail(const char *path, char *out, size_t n) {
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, sz > (long)sizeof buf - 1 ? sz - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[k] = 0;
    char *line = NULL;
    for (char *p = strtok(buf, "\n"); p; p = strtok(NULL, "\n")) {
        while (*p == ' ' || *p == '-') p++;
        if (*p) line = p;
    }
    if (line) snprintf(out, n, "%s", line);
}

/* ---- the run -------------------------------------------------------------------------- */

int launch_run(const launch_cfg *lc, const al_job *job, const char *spec, const char *dir, const char *name,
               int attempt, const char *resume, const al_train_cb *cb, const launch_flags *fl, al_train_result *res,
               al_error *fail) {
    memset(res, 0, sizeof *res);
    fail->field[0] = 0; /* the launch's own failures name no field of the job */
    char *err = fail->msg;
    char file[AL_PATH_MAX + 16], logp[AL_PATH_MAX + 48];
    int rc = stage(spec, dir, file, sizeof file, fail);
    if (rc) return rc;
    char **argv = NULL;
    int argc = 0;
    if ((rc = launch_argv(lc->line, job->processes, job->threads_per_process, name, &argv, &argc, err))) return rc;
    /* the command the ranks run */
    char threads[24];
    snprintf(threads, sizeof threads, "%d", job->threads_per_process);
    /* (--dtype: the daemon's dtype setting for reward models and judges) */
    const char *tail[] = {lc->exe, "train", file, "--events", "json", "--dtype", lc->bf16 ? "bf16" : "fp32",
                          NULL, NULL, NULL, NULL, NULL};
    int t = 7;
    if (resume) tail[t++] = "--resume", tail[t++] = resume;
    if (job->threads_per_process > 0) tail[t++] = "--threads", tail[t++] = threads;
    char **full = calloc((size_t)(argc + t + 1), sizeof *full);
    if (!full) {
        launch_argv_free(argv);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    for (int i = 0; i < argc; i++) full[i] = argv[i];
    for (int i = 0; i < t; i++) full[argc + i] = (char *)tail[i];
    snprintf(logp, sizeof logp, "%s/launch-%d.log", dir, attempt);
    int fds[2] = {-1, -1};
    pid_t pid = -1;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    if (pipe2(fds, O_CLOEXEC)) {
        rc = al_err(err, AL_EIO, "pipe: %s", strerror(errno));
    } else {
        /* stdin from /dev/null, stdout to us, stderr to the log; nothing else
         * of the daemon's (sockets, the database) leaks into the launcher */
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        sigset_t none, dfl;
        sigemptyset(&none);
        sigemptyset(&dfl);
        sigaddset(&dfl, SIGTERM);
        sigaddset(&dfl, SIGINT);
        sigaddset(&dfl, SIGPIPE);
        sigaddset(&dfl, SIGUSR1);
        sigaddset(&dfl, SIGUSR2);
        posix_spawnattr_setsigmask(&at, &none); /* the workers block signals; the launcher must not */
        posix_spawnattr_setsigdefault(&at, &dfl);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        int e = posix_spawnp(&pid, full[0], &fa, &at, full, environ);
        if (e) rc = al_err(err, e == ENOENT ? AL_ENOENT : AL_EIO, "launcher: cannot start %s: %s", full[0], strerror(e));
        close(fds[1]);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (!rc) {
        char q[300];
        log_info("event=job_launched job=%s pid=%ld processes=%d attempt=%d launcher=%s", name, (long)pid,
                 job->processes, attempt, log_quote(q, sizeof q, full[0]));
    }
    free(full);
    launch_argv_free(argv);
    if (rc) {
        if (fds[0] >= 0) close(fds[0]);
        return rc;
    }

    /* rank 0's lines, the flags in between */
    reader rd = {.cb = cb};
    size_t cap = (size_t)1 << 16, len = 0, max_line = (size_t)16 << 20;
    char *buf = malloc(cap);
    int status = 0, exited = 0, eof = 0, skipping = 0, sent_pause = 0, sent_cancel = 0, sent_term = 0, sent_kill = 0;
    double t_cancel = 0, t_exit = 0;
    if (!buf) eof = 1; /* out of memory: wait for the launcher, report it lost */
    while (!(eof && exited)) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (!eof && poll(&p, 1, 200) > 0) {
            if (cap - len < 4096) {
                char *nb = cap < max_line ? realloc(buf, cap * 2) : NULL;
                if (nb) {
                    buf = nb;
                    cap *= 2;
                } else { /* a runaway line: dropped up to its newline */
                    len = 0;
                    skipping = 1;
                }
            }
            ssize_t got = read(fds[0], buf + len, cap - len);
            if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) eof = 1;
            if (got > 0) {
                size_t s = 0, from = len;
                len += (size_t)got;
                for (size_t i = from; i < len; i++)
                    if (buf[i] == '\n') {
                        if (!skipping) on_line(&rd, buf + s, i - s);
                        skipping = 0;
                        s = i + 1;
                    }
                memmove(buf, buf + s, len - s);
                len -= s;
            }
        } else if (eof) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (!exited) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) {
                exited = 1;
                t_exit = now_mono();
            }
        } else if (!eof && now_mono() - t_exit > 5) {
            /* the launcher is gone but something of its session holds the
             * pipe: stop listening */
            eof = 1;
        }
        if (exited) continue;
        int cancel = atomic_load(fl->cancel);
        int pause = atomic_load(fl->pause) || (fl->draining && fl->draining(fl->ud));
        double now = now_mono();
        /* the signals only once the ranks handle them (until then SIGUSR1
         * would end them); a cancel before that needs no step boundary */
        if (cancel && !sent_cancel) {
            kill(pid, rd.began ? SIGUSR2 : SIGTERM);
            sent_cancel = 1;
            sent_term = !rd.began;
            t_cancel = now;
        } else if (pause && !sent_pause && !sent_cancel && rd.began) {
            kill(pid, SIGUSR1);
            sent_pause = 1;
        }
        if (sent_cancel && !sent_term && now - t_cancel > lc->grace_s) {
            kill(pid, SIGTERM);
            sent_term = 1;
        }
        if (sent_term && !sent_kill && now - t_cancel > 2 * lc->grace_s) {
            kill_session((long)pid, SIGKILL);
            sent_kill = 1;
        }
    }
    if (len > 0 && !skipping) on_line(&rd, buf, len); /* a last line without its newline */
    free(buf);
    close(fds[0]);
    /* nothing of the job stays running on this machine */
    int left = kill_session((long)pid, SIGKILL);
    if (left) log_warn("event=launcher_leftovers job=%s killed=%d", name, left);

    char tail_line[200];
    log_tail(logp, tail_line, sizeof tail_line);
    if (rd.result) {
        rc = from_result(rd.result, res, fail);
        json_decref(rd.result);
        return rc;
    }
    if (sent_cancel) return al_err(err, AL_ECANCELED, "cancelled");
    if (WIFSIGNALED(status))
        al_err(err, LAUNCH_ELOST, "the launcher was killed by signal %d%s%s", WTERMSIG(status),
               tail_line[0] ? ": " : "", tail_line);
    else
        al_err(err, LAUNCH_ELOST, "a rank or the launcher ended without a result (exit status %d)%s%s",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1, tail_line[0] ? ": " : "", tail_line);
    return LAUNCH_ELOST;
}

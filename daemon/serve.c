/* alignd serve: the daemon's main thread. And alignd keys create.
 *
 * Start-up: configuration, logging, signals blocked (every thread created
 * after inherits the mask; only the main thread unblocks them), the compute
 * pool, the store (migrations), model folders, recovery of jobs a killed
 * daemon left running, the workers, the HTTP server (or the socket systemd
 * passed), <state_dir>/alignd.addr, READY=1.
 *
 * The main loop sleeps in short slices: it sends WATCHDOG=1 at half the
 * watchdog period and STATUS= when the running jobs change, and watches the
 * flag the signal handler sets. SIGTERM/SIGINT: STOPPING=1, the server
 * drains (503 for new jobs and uploads), running jobs checkpoint and return
 * to queued, the workers finish within stop_timeout (a second signal stops
 * waiting), exit 0. A worker still
 * busy after stop_timeout is abandoned: its job stays "running" in the
 * database and resumes from its last checkpoint on the next start. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/server.h"
#include "backend.h"
#include "hubmodels.h"
#include "cli.h"
#include "compute/blas.h"
#include "compute/pool.h"
#include "config.h"
#include "io.h"
#include "log.h"
#include "models.h"
#include "notify.h"
#include "sched.h"
#include "store.h"

static volatile sig_atomic_t g_stop, g_signals;

/* Only flags: the main loop acts on them. A second signal while draining
 * stops waiting for checkpoints. */
static void on_signal(int sig) {
    g_stop = sig;
    if (g_signals < 100) g_signals++;
}

/* systemd socket activation: the first passed descriptor, or -1. */
static int listen_fd_from_env(void) {
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || atol(pid) != (long)getpid() || atoi(fds) < 1) return -1;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return 3; /* SD_LISTEN_FDS_START */
}

static void absolute(char *path, size_t n) {
    char real[PATH_MAX];
    if (realpath(path, real) && strlen(real) < n) memcpy(path, real, strlen(real) + 1);
}

/* The database records absolute paths under the state, jobs and models
 * folders. Started with one of them somewhere else (a backup restored to
 * another path, a moved disk), the daemon makes its records follow: the
 * adapter folders' base paths first, then the database in one transaction
 * (both idempotent, so a start cut short between them is finished by the
 * next). The models folder is followed only when the old one is gone: a
 * daemon pointed at another models folder beside the old one keeps the
 * folders it registered from there. */
static int relocate(store *st, const daemon_cfg *cfg) {
    const struct {
        const char *key, *cur;
        int only_if_gone;
    } locs[] = {
        {"state_dir", cfg->state_dir, 0},
        {"jobs_dir", cfg->jobs_dir, 0},
        {"models_dir", cfg->models_dir, 1},
    };
    for (size_t i = 0; i < sizeof locs / sizeof *locs; i++) {
        char old[STORE_PATH], err[AL_ERRLEN], q[600];
        int moved = 0, files = 0, found = store_location(st, locs[i].key, old) == STORE_OK;
        int move = found && strcmp(old, locs[i].cur) != 0;
        if (move && locs[i].only_if_gone) move = access(old, F_OK) != 0;
        if (move && (files = models_relocate(cfg->jobs_dir, old, locs[i].cur, err)) < 0) {
            log_error("event=relocate_failed what=%s reason=%s", locs[i].key, log_quote(q, sizeof q, err));
            fprintf(stderr, "alignd: %s moved from %s to %s, and its adapters could not follow: %s\n",
                    locs[i].key, old, locs[i].cur, err);
            return -1;
        }
        if (store_relocate(st, locs[i].key, move ? old : NULL, locs[i].cur, &moved, err)) {
            log_error("event=relocate_failed what=%s reason=%s", locs[i].key, log_quote(q, sizeof q, err));
            fprintf(stderr, "alignd: %s\n", err);
            return -1;
        }
        if (move) log_info("event=relocated what=%s from=%s to=%s rows=%d adapter_files=%d", locs[i].key, old,
                           locs[i].cur, moved, files);
    }
    return 0;
}

/* Whether two sched_status() texts name the same jobs ("ftjob-1 step 5/9,
 * ftjob-2 step ..."): the words after each separator up to " step". */
static int same_jobs(const char *a, const char *b) {
    for (;;) {
        size_t la = strcspn(a, " "), lb = strcspn(b, " ");
        if (la != lb || strncmp(a, b, la)) return 0;
        a = strstr(a, ", ");
        b = strstr(b, ", ");
        if (!a || !b) return !a && !b;
        a += 2;
        b += 2;
    }
}

/* Whether a name is one of our temporaries: a folder being filled
 * ("checkpoint-200.tmp") or an atomic file's temp ("x.tmp.<pid>.<n>"). */
static int temp_name(const char *n, int is_dir) {
    size_t l = strlen(n);
    if (is_dir) return l > 4 && !strcmp(n + l - 4, ".tmp");
    const char *t = strstr(n, ".tmp.");
    if (!t) return 0;
    const char *p = t + 5;
    int dots = 0, digits = 0;
    for (; *p; p++) {
        if (*p == '.') dots++;
        else if (*p >= '0' && *p <= '9') digits++;
        else return 0;
    }
    return dots == 1 && digits >= 2;
}

/* Start-up sweep: temporaries a killed daemon (or a full disk) left in the
 * folders only the daemon writes, files/ and the jobs folder, down to a
 * checkpoint's critic folder. Nothing else runs yet, so none is in use. */
static int sweep(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[CFG_PATH + 512], err[AL_ERRLEN], q[600];
        if (al_path_join(p, sizeof p, dir, e->d_name)) continue;
        struct stat sb;
        if (lstat(p, &sb)) continue;
        int is_dir = S_ISDIR(sb.st_mode);
        if (temp_name(e->d_name, is_dir) && (is_dir || S_ISREG(sb.st_mode))) {
            if (al_rmtree(p, err) == AL_OK) {
                n++;
                log_info("event=temp_removed path=%s", log_quote(q, sizeof q, p));
            } else {
                log_warn("event=temp_remove_failed reason=%s", log_quote(q, sizeof q, err));
            }
        } else if (is_dir && depth < 3) {
            n += sweep(p, depth + 1);
        }
    }
    closedir(d);
    return n;
}

/* sched_set_held_memory's view of the chat endpoints' model cache */
static int64_t served_memory(void *srv) { return api_server_models_memory(srv); }

static int write_addr(const char *state_dir, const char *host, int port) {
    char path[CFG_PATH + 32], buf[320], err[AL_ERRLEN];
    snprintf(path, sizeof path, "%.4000s/alignd.addr", state_dir);
    int n = strchr(host, ':') ? snprintf(buf, sizeof buf, "[%s]:%d\n", host, port)
                              : snprintf(buf, sizeof buf, "%s:%d\n", host, port);
    return al_file_write_atomic(path, buf, (size_t)n, err);
}

/* `alignd serve --check`: the configuration and the schema it would migrate to. */
static int serve_check(const daemon_cfg *cfg) {
    int latest = store_migrations_latest(cfg->migrations_dir);
    if (latest < 0) {
        fprintf(stderr, "alignd: migrations_dir %s: %s\n", cfg->migrations_dir, strerror(errno));
        return 2;
    }
    config_print(cfg, stdout);
    printf("# configuration ok (schema version %d)\n", latest);
    return 0;
}

/* Opens the state: the database, the folders (made absolute: the database
 * records them, and the next start may have another working directory),
 * leftover temporaries swept, the models scanned, interrupted jobs
 * recovered. On failure closes what it opened and returns NULL. */
static store *serve_open_state(daemon_cfg *cfg, hubmodels **hm_out) {
    char err[AL_ERRLEN];
    store *st = NULL;
    if (store_open(&st, cfg->state_dir, cfg->migrations_dir, err)) {
        char q[600];
        log_error("event=store_failed reason=%s", log_quote(q, sizeof q, err));
        fprintf(stderr, "alignd: %s\n", err);
        return NULL;
    }
    if (al_mkdir_p(cfg->models_dir, err) || al_mkdir_p(cfg->jobs_dir, err) ||
        (cfg->shared_dir[0] && al_mkdir_p(cfg->shared_dir, err)))
        log_warn("event=mkdir_failed reason=\"%s\"", err);
    absolute(cfg->models_dir, sizeof cfg->models_dir);
    absolute(cfg->jobs_dir, sizeof cfg->jobs_dir);
    if (cfg->shared_dir[0]) absolute(cfg->shared_dir, sizeof cfg->shared_dir);
    if (relocate(st, cfg)) {
        store_close(st);
        return NULL;
    }
    char files[CFG_PATH + 16];
    snprintf(files, sizeof files, "%.4000s/files", cfg->state_dir);
    int swept = sweep(files, 1) + sweep(cfg->jobs_dir, 0);
    if (swept) log_info("event=temps_swept count=%d", swept);
    int nm = models_scan(st, cfg->models_dir);
    hubmodels *hm = hubmodels_new(st, cfg->models_dir, cfg->hub_cache, (int)cfg->allow_downloads);
    if (!hm) {
        log_error("event=out_of_memory");
        store_close(st);
        return NULL;
    }
    nm += hubmodels_scan(hm);
    int nr = store_recover(st);
    log_info("event=store_ready schema=%d models=%d recovered_jobs=%d hub_cache=%s allow_downloads=%d",
             store_version(st), nm, nr, hubmodels_cache(hm), (int)cfg->allow_downloads);
    *hm_out = hm;
    return st;
}

/* The systemd watchdog, fed every half period. */
static void serve_watchdog(long long wd, double now, double *next_wd) {
    if (wd > 0 && now >= *next_wd) {
        notify_send("WATCHDOG=1");
        *next_wd = now + (double)wd / 2e6;
    }
}

/* Runs until a signal: the watchdog, and STATUS= at once when a job starts
 * or ends, else its steps once a second. */
static void serve_run(sched *sc, long long wd, double *next_wd, double *next_status) {
    char status[512] = "", prev[512] = "";
    while (!g_stop) {
        double now = al_now();
        serve_watchdog(wd, now, next_wd);
        sched_status(sc, status, sizeof status);
        if (strcmp(status, prev) && (now >= *next_status || !same_jobs(status, prev))) {
            notify_sendf("STATUS=%s", status);
            snprintf(prev, sizeof prev, "%s", status);
            *next_status = now + 1.0;
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL); /* a signal cuts it short */
    }
}

/* Waits for the running jobs' checkpoints, still feeding the watchdog, until
 * they end, stop_timeout passes or a second signal comes. 1 when idle. */
static int serve_drain(sched *sc, double stop_timeout, double t0, long long wd, double *next_wd,
                       double *next_status) {
    int idle = 0;
    while (!(idle = sched_busy(sc) == 0) && al_now() - t0 < stop_timeout && g_signals < 2) {
        double now = al_now();
        serve_watchdog(wd, now, next_wd);
        if (now >= *next_status) {
            notify_sendf("STATUS=stopping: checkpointing %d running job(s)", sched_busy(sc));
            *next_status = now + 1.0;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (!idle && g_signals >= 2) log_warn("event=stop_forced reason=\"second signal\"");
    return idle;
}

int cli_serve(int argc, char **argv) {
    daemon_cfg cfg;
    int check = 0;
    char err[AL_ERRLEN];
    if (config_load(&cfg, argc, argv, &check, err)) {
        fprintf(stderr, "alignd: %s\n", err);
        return 2;
    }
    if (check) return serve_check(&cfg);
    log_init(cfg.log_level);

    /* signals: blocked here so every thread started below inherits the mask */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    cli_signal(SIGTERM, on_signal);
    cli_signal(SIGINT, on_signal);
    cli_signal(SIGHUP, SIG_IGN);
    cli_signal(SIGPIPE, SIG_IGN);

    if (al_mkdir_p(cfg.state_dir, err) == AL_OK) absolute(cfg.state_dir, sizeof cfg.state_dir);
    log_info("event=starting pid=%ld state_dir=%s config=%s", (long)getpid(), cfg.state_dir,
             cfg.config_file[0] ? cfg.config_file : "-");
    /* the fp32 products that are not oneDNN's need OpenBLAS, opened at the
     * first: without it that job or chat request would end the daemon */
    if (al_blas_probe(NULL, err)) {
        char q[600];
        log_error("event=openblas_missing reason=%s", log_quote(q, sizeof q, err));
        fprintf(stderr, "alignd: %s\n", err);
        return 1;
    }
    al_pool_init((int)cfg.threads);
    hubmodels *hm = NULL;
    store *st = serve_open_state(&cfg, &hm);
    if (!st) return 1;

    sched_cfg sc = {.workers = (int)cfg.workers, .memory_limit = cfg.memory_limit, .bf16 = config_bf16(&cfg),
                    .launcher = cfg.launcher, .launcher_retries = (int)cfg.launcher_retries};
    backend_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.st = st;
    snprintf(ctx.jobs_dir, sizeof ctx.jobs_dir, "%s", cfg.jobs_dir);
    snprintf(ctx.shared_dir, sizeof ctx.shared_dir, "%s", cfg.shared_dir);
    ctx.has_launcher = cfg.launcher[0] != 0;
    ctx.memory_limit = cfg.memory_limit;
    ctx.hub = hm;
    ctx.sc = sched_new(st, &sc);
    if (!ctx.sc) {
        log_error("event=workers_failed");
        hubmodels_free(hm);
        store_close(st);
        return 1;
    }
    api_backend be;
    backend_init(&be, &ctx);
    /* jobs that wait for a download: admitted when it ends, and now for
     * the downloads that ended (or failed at the scan) while stopped */
    hubmodels_on_done(hm, backend_on_download_done, &ctx);
    backend_admit_waiting(&ctx);
    api_server_cfg scfg;
    config_server(&cfg, &scfg);
    scfg.listen_fd = listen_fd_from_env();
    char serr[AL_ERRLEN] = "";
    api_server *srv = api_server_start(&scfg, &be, serr);
    if (!srv) {
        char q[300];
        log_error("event=listen_failed addr=%s reason=%s", cfg.listen, log_quote(q, sizeof q, serr));
        fprintf(stderr, "alignd: cannot listen on %s: %s\n", cfg.listen, serr);
        hubmodels_on_done(hm, NULL, NULL);
        sched_drain(ctx.sc);
        sched_free(ctx.sc);
        backend_deinit(&ctx);
        hubmodels_free(hm);
        store_close(st);
        return 1;
    }
    /* the chat endpoints' loaded models count against the jobs' budget */
    sched_set_held_memory(ctx.sc, served_memory, srv);
    int port = api_server_port(srv);
    write_addr(cfg.state_dir, cfg.host, port);
    log_info("event=listening addr=%s%s%s:%d workers=%ld memory_budget_mib=%lld socket_activated=%d",
             strchr(cfg.host, ':') ? "[" : "", cfg.host, strchr(cfg.host, ':') ? "]" : "", port, cfg.workers,
             (long long)(sched_memory_budget(ctx.sc) >> 20), scfg.listen_fd >= 0);
    notify_send("READY=1");

    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sigset_t unb;
    sigemptyset(&unb);
    sigaddset(&unb, SIGTERM);
    sigaddset(&unb, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &unb, NULL);

    long long wd = notify_watchdog_usec();
    double next_wd = 0, next_status = 0;
    serve_run(ctx.sc, wd, &next_wd, &next_status);

    log_info("event=stopping signal=%d busy_workers=%d", (int)g_stop, sched_busy(ctx.sc));
    notify_send("STOPPING=1");
    api_server_set_draining(srv, 1);
    atomic_store(&ctx.draining, 1);
    sched_drain(ctx.sc);
    store_feed_kick(st);
    double t0 = al_now();
    int idle = serve_drain(ctx.sc, cfg.stop_timeout, t0, wd, &next_wd, &next_status);
    sched_set_held_memory(ctx.sc, NULL, NULL);
    api_server_stop(srv);
    if (!idle) {
        log_warn("event=stop_timeout seconds=%.1f busy_workers=%d note=\"running jobs resume from their last "
                 "checkpoint on the next start\"", al_now() - t0, sched_busy(ctx.sc));
        _exit(0);
    }
    hubmodels_on_done(hm, NULL, NULL);
    sched_free(ctx.sc);
    backend_deinit(&ctx);
    hubmodels_free(hm);
    store_close(st);
    al_pool_shutdown();
    log_info("event=stopped seconds=%.2f", al_now() - t0);
    return 0;
}

/* alignd keys create [--name N] [--read-only] [--state-dir DIR] [--config FILE] */
int cli_keys(int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "create")) {
        fprintf(stderr, "usage: alignd keys create [--name N] [--read-only] [--state-dir DIR] [--config FILE]\n");
        return 2;
    }
    cli_flag f[] = {{"--name", 0, 0}, {"--read-only", 0, 1}, {"--state-dir", 0, 0}, {"--config", 0, 0}};
    if (cli_parse(argc - 1, argv + 1, f, 4)) return 2;
    const char *name = f[0].value ? f[0].value : "default";
    if (!*name || strlen(name) > 128) {
        fprintf(stderr, "alignd: --name: 1 to 128 characters\n");
        return 2;
    }
    daemon_cfg cfg;
    int check;
    char err[AL_ERRLEN];
    char *cargv[2] = {"--config", (char *)f[3].value};
    if (config_load(&cfg, f[3].value ? 2 : 0, cargv, &check, err)) {
        fprintf(stderr, "alignd: %s\n", err);
        return 2;
    }
    if (f[2].value) snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", f[2].value);
    log_init(LOG_LVL_WARN);
    store *st;
    if (store_open(&st, cfg.state_dir, cfg.migrations_dir, err)) {
        fprintf(stderr, "alignd: %s\n", err);
        return 1;
    }
    unsigned char raw[32], h[32];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        fprintf(stderr, "alignd: no randomness for the key\n");
        store_close(st);
        return 1;
    }
    /* "ak-" + 64 hex digits: 256 random bits */
    char key[3 + 65];
    memcpy(key, "ak-", 3);
    store_hex(raw, sizeof raw, key + 3);
    store_sha256(key, strlen(key), h);
    int64_t id = 0;
    int ro = f[1].value != NULL;
    int rc = store_key_add(st, name, h, ro, &id);
    store_close(st);
    if (rc) {
        fprintf(stderr, "alignd: storing the key failed\n");
        return 1;
    }
    printf("Created API key %lld (name \"%s\", %s) in %s. Only its SHA-256 is stored: copy it now.\n",
           (long long)id, name, ro ? "read-only" : "read-write", cfg.state_dir);
    printf("%s\n", key);
    return 0;
}

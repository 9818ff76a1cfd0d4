/* Daemon configuration (see config.h). Table-driven: each key names its
 * type, its member and its range; the file, the environment and the flags
 * all go through set_key, so every source validates alike. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compute/ops.h"
#include "log.h"

#ifndef ALIGND_MIGRATIONS_DIR
#define ALIGND_MIGRATIONS_DIR "/usr/share/alignd/migrations"
#endif
#ifndef ALIGND_WEB_DIR
#define ALIGND_WEB_DIR "/usr/share/alignd/web"
#endif

enum { K_STR, K_LONG, K_SIZE, K_DOUBLE, K_LEVEL, K_LISTEN, K_BOOL, K_DTYPE };

typedef struct key {
    const char *name;
    int type;
    size_t off, size;
    double lo, hi;
} key;

#define S(n) {#n, K_STR, offsetof(daemon_cfg, n), sizeof(((daemon_cfg *)0)->n), 0, 0}
#define L(n, lo, hi) {#n, K_LONG, offsetof(daemon_cfg, n), 0, lo, hi}
#define Z(n, lo, hi) {#n, K_SIZE, offsetof(daemon_cfg, n), 0, lo, hi}
static const key keys[] = {
    {"listen", K_LISTEN, offsetof(daemon_cfg, listen), sizeof(((daemon_cfg *)0)->listen), 0, 0},
    S(state_dir),
    S(models_dir),
    S(jobs_dir),
    S(migrations_dir),
    S(web_dir),
    L(workers, 1, 256),
    L(threads, 0, 256),
    {"dtype", K_DTYPE, offsetof(daemon_cfg, dtype), sizeof(((daemon_cfg *)0)->dtype), 0, 0},
    Z(memory_limit, 0, 1e15),
    {"log_level", K_LEVEL, offsetof(daemon_cfg, log_level_name), 16, 0, 0},
    {"stop_timeout", K_DOUBLE, offsetof(daemon_cfg, stop_timeout), 0, 1, 86400},
    Z(max_body, 1024, 1e12),
    Z(max_upload, 1024, 1e13),
    L(max_json_depth, 2, 1024),
    Z(max_string, 64, 1e12),
    L(max_tokens, 1, 1 << 20),
    L(max_connections, 1, 1 << 20),
    L(max_connections_per_ip, 1, 1 << 20),
    L(max_streams, 1, 1 << 20),
    L(timeout, 1, 86400),
    L(header_timeout, 1, 3600),
    L(heartbeat, 1, 3600),
    {"allow_downloads", K_BOOL, offsetof(daemon_cfg, allow_downloads), 0, 0, 1},
    S(hub_cache),
    S(launcher),
    S(shared_dir),
    L(launcher_retries, 0, 1000),
};
#undef S
#undef L
#undef Z
#define N_KEYS (int)(sizeof keys / sizeof keys[0])

/* "512M" -> bytes (K, M, G, T: powers of 1024; optional trailing B/iB). */
static int parse_size(const char *v, int64_t *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || !(x >= 0) || !isfinite(x)) return -1;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1048576.0; end++; break;
    case 'G': mul = 1073741824.0; end++; break;
    case 'T': mul = 1099511627776.0; end++; break;
    default: break;
    }
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    *out = (int64_t)(x * mul);
    return 0;
}

static int parse_listen(const char *v, char *host, size_t hn, int *port) {
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v) return -1;
    size_t len = (size_t)(colon - v);
    const char *h = v;
    if (v[0] == '[') {
        if (len < 2 || v[len - 1] != ']') return -1;
        h = v + 1;
        len -= 2;
    }
    if (len == 0 || len >= hn) return -1;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535) return -1;
    memcpy(host, h, len);
    host[len] = 0;
    *port = (int)p;
    return 0;
}

/* where: "alignd.conf:7", "ALIGND_WORKERS" or "--workers". */
static int set_key(daemon_cfg *c, const key *k, const char *v, const char *where, char err[AL_ERRLEN]) {
    char *base = (char *)c + k->off;
    switch (k->type) {
    case K_STR:
        if (strlen(v) >= k->size) return snprintf(err, AL_ERRLEN, "%s: %s: too long", where, k->name), 2;
        snprintf(base, k->size, "%s", v);
        return 0;
    case K_LISTEN:
        if (strlen(v) >= k->size || parse_listen(v, c->host, sizeof c->host, &c->port))
            return snprintf(err, AL_ERRLEN, "%s: listen: '%.200s' is not HOST:PORT", where, v), 2;
        snprintf(base, k->size, "%s", v);
        return 0;
    case K_LEVEL: {
        int l = log_level_parse(v);
        if (l < 0)
            return snprintf(err, AL_ERRLEN, "%s: log_level: '%.100s' is not error, warn, notice, info or debug", where, v), 2;
        snprintf(base, 16, "%s", v);
        c->log_level = l;
        return 0;
    }
    case K_DTYPE:
        if (strcmp(v, "auto") && strcmp(v, "bf16") && strcmp(v, "fp32"))
            return snprintf(err, 512, "%s: dtype: '%.100s' is not auto, bf16 or fp32", where, v), 2;
        snprintf(base, k->size, "%s", v);
        return 0;
    case K_LONG: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end) return snprintf(err, AL_ERRLEN, "%s: %s: '%.100s' is not an integer", where, k->name, v), 2;
        if (x < k->lo || x > k->hi)
            return snprintf(err, AL_ERRLEN, "%s: %s: %ld is outside [%.0f, %.0f]", where, k->name, x, k->lo, k->hi), 2;
        *(long *)base = x;
        return 0;
    }
    case K_SIZE: {
        int64_t x;
        if (parse_size(v, &x))
            return snprintf(err, AL_ERRLEN, "%s: %s: '%.100s' is not a size (bytes, or with K, M, G, T)", where, k->name, v), 2;
        if ((double)x < k->lo || (double)x > k->hi)
            return snprintf(err, AL_ERRLEN, "%s: %s: %lld is outside [%.0f, %.0f]", where, k->name, (long long)x, k->lo,
                            k->hi), 2;
        *(int64_t *)base = x;
        return 0;
    }
    case K_BOOL: {
        static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};
        for (int i = 0; i < 4; i++) {
            if (!strcasecmp(v, yes[i])) return *(long *)base = 1, 0;
            if (!strcasecmp(v, no[i])) return *(long *)base = 0, 0;
        }
        return snprintf(err, AL_ERRLEN, "%s: %s: '%.100s' is not true or false", where, k->name, v), 2;
    }
    case K_DOUBLE: {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return snprintf(err, AL_ERRLEN, "%s: %s: '%.100s' is not a number", where, k->name, v), 2;
        if (x < k->lo || x > k->hi)
            return snprintf(err, AL_ERRLEN, "%s: %s: %g is outside [%g, %g]", where, k->name, x, k->lo, k->hi), 2;
        *(double *)base = x;
        return 0;
    }
    }
    return 2;
}

static const key *find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].name, name)) return &keys[i];
    return NULL;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

static int load_file(daemon_cfg *c, const char *path, int required, char err[AL_ERRLEN]) {
    FILE *f = fopen(path, "r");
    if (!f) {
        if (!required && errno == ENOENT) return 0;
        return snprintf(err, AL_ERRLEN, "%.400s: %s", path, strerror(errno)), 2;
    }
    snprintf(c->config_file, sizeof c->config_file, "%s", path);
    char line[8192], where[440];
    int ln = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        ln++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        snprintf(where, sizeof where, "%.400s:%d", path, ln);
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, AL_ERRLEN, "%.400s: expected key = value", where);
            rc = 2;
            break;
        }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = 0;
            v++;
        }
        const key *kk = find_key(k);
        if (!kk) {
            snprintf(err, AL_ERRLEN, "%.360s: unknown key '%.60s'", where, k);
            rc = 2;
            break;
        }
        rc = set_key(c, kk, v, where, err);
    }
    fclose(f);
    return rc;
}

/* <prefix>/share/alignd/<what> when the binary runs from <prefix>/bin (an
 * installed alignd), else the build's own location. */
static void share_dir(char *out, size_t n, const char *what, const char *built) {
    char exe[CFG_PATH];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char cand[CFG_PATH + 64];
            snprintf(cand, sizeof cand, "%.3900s/../share/alignd/%s", exe, what);
            struct stat sb;
            if (stat(cand, &sb) == 0 && S_ISDIR(sb.st_mode) && strlen(cand) < n) {
                snprintf(out, n, "%s", cand);
                return;
            }
        }
    }
    snprintf(out, n, "%s", built);
}

static void defaults(daemon_cfg *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "127.0.0.1:8080");
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8080;
    const char *sd = getenv("STATE_DIRECTORY");
    if (sd && *sd) {
        /* systemd may list several, colon-separated: the first is ours */
        size_t n = strcspn(sd, ":");
        snprintf(c->state_dir, sizeof c->state_dir, "%.*s", (int)(n < CFG_PATH - 1 ? n : CFG_PATH - 1), sd);
    } else {
        snprintf(c->state_dir, sizeof c->state_dir, "alignd-state");
    }
    share_dir(c->migrations_dir, sizeof c->migrations_dir, "migrations", ALIGND_MIGRATIONS_DIR);
    share_dir(c->web_dir, sizeof c->web_dir, "web", ALIGND_WEB_DIR);
    c->workers = 1;
    c->threads = 0;
    snprintf(c->dtype, sizeof c->dtype, "auto");
    snprintf(c->log_level_name, sizeof c->log_level_name, "info");
    c->log_level = LOG_LVL_INFO;
    c->stop_timeout = 120;
    c->max_body = 1 << 20;
    c->max_upload = (int64_t)512 << 20;
    c->max_json_depth = 32;
    c->max_string = 1 << 20;
    c->max_tokens = 2048;
    c->max_connections = 256;
    c->max_connections_per_ip = 64;
    c->max_streams = 64;
    c->timeout = 30;
    c->header_timeout = 10;
    c->heartbeat = 15;
    c->launcher_retries = 2;
}

int config_load(daemon_cfg *c, int argc, char **argv, int *check_config, char err[AL_ERRLEN]) {
    defaults(c);
    *check_config = 0;
    const char *file = NULL;
    /* flags first pass: --config and --check-config, and syntax */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--check-config")) {
            *check_config = 1;
            continue;
        }
        if (strncmp(a, "--", 2)) return snprintf(err, AL_ERRLEN, "unexpected argument '%.200s'", a), 2;
        if (i + 1 >= argc) return snprintf(err, AL_ERRLEN, "%.200s needs a value", a), 2;
        if (!strcmp(a, "--config")) file = argv[i + 1];
        i++;
    }
    int rc;
    if (file) {
        rc = load_file(c, file, 1, err);
    } else {
        const char *cd = getenv("CONFIGURATION_DIRECTORY");
        char path[CFG_PATH + 32];
        if (cd && *cd) snprintf(path, sizeof path, "%.*s/alignd.conf", (int)strcspn(cd, ":"), cd);
        else snprintf(path, sizeof path, "/etc/alignd/alignd.conf");
        rc = load_file(c, path, 0, err);
    }
    if (rc) return rc;
    int have_models = 0, have_jobs = 0;
    for (int i = 0; i < N_KEYS; i++) {
        char env[64];
        snprintf(env, sizeof env, "ALIGND_");
        for (size_t k = 0; keys[i].name[k] && k < 50; k++) env[7 + k] = (char)toupper((unsigned char)keys[i].name[k]);
        env[7 + strlen(keys[i].name)] = 0;
        const char *v = getenv(env);
        if (v && (rc = set_key(c, &keys[i], v, env, err))) return rc;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--check-config")) continue;
        i++;
        if (!strcmp(a, "--config")) continue;
        char name[64];
        snprintf(name, sizeof name, "%.60s", a + 2);
        for (char *p = name; *p; p++)
            if (*p == '-') *p = '_';
        const key *k = find_key(name);
        if (!k) return snprintf(err, AL_ERRLEN, "unknown option '%.200s'", a), 2;
        if ((rc = set_key(c, k, argv[i], a, err))) return rc;
    }
    have_models = c->models_dir[0] != 0;
    have_jobs = c->jobs_dir[0] != 0;
    if (!have_models) snprintf(c->models_dir, sizeof c->models_dir, "%.4000s/models", c->state_dir);
    if (!have_jobs) snprintf(c->jobs_dir, sizeof c->jobs_dir, "%.4000s/jobs", c->state_dir);
    if (!c->state_dir[0]) return snprintf(err, AL_ERRLEN, "state_dir: must not be empty"), 2;
    return 0;
}

void config_print(const daemon_cfg *c, FILE *f) {
    fprintf(f, "# %s\n", c->config_file[0] ? c->config_file : "no configuration file");
    for (int i = 0; i < N_KEYS; i++) {
        const key *k = &keys[i];
        const char *base = (const char *)c + k->off;
        switch (k->type) {
        case K_STR: case K_LISTEN: case K_LEVEL: case K_DTYPE: fprintf(f, "%s = \"%s\"\n", k->name, base); break;
        case K_LONG: fprintf(f, "%s = %ld\n", k->name, *(const long *)base); break;
        case K_BOOL: fprintf(f, "%s = %s\n", k->name, *(const long *)base ? "true" : "false"); break;
        case K_SIZE: fprintf(f, "%s = %lld\n", k->name, (long long)*(const int64_t *)base); break;
        case K_DOUBLE: fprintf(f, "%s = %g\n", k->name, *(const double *)base); break;
        }
    }
}

void config_server(const daemon_cfg *c, api_server_cfg *s) {
    api_server_cfg_init(s);
    s->host = c->host;
    s->port = c->port;
    s->listen_fd = -1;
    s->models_dir = c->models_dir;
    s->web_dir = c->web_dir[0] ? c->web_dir : NULL;
    s->max_body = (size_t)c->max_body;
    s->max_upload = (size_t)c->max_upload;
    s->max_json_depth = (int)c->max_json_depth;
    s->max_string = (size_t)c->max_string;
    s->max_tokens = (int)c->max_tokens;
    s->max_connections = (int)c->max_connections;
    s->max_connections_per_ip = (int)c->max_connections_per_ip;
    s->max_streams = (int)c->max_streams;
    s->timeout_s = (int)c->timeout;
    s->header_timeout_s = (int)c->header_timeout;
    s->heartbeat_s = (int)c->heartbeat;
    s->bf16 = config_bf16(c);
}

int config_bf16(const daemon_cfg *c) {
    if (!strcmp(c->dtype, "bf16")) return 1;
    if (!strcmp(c->dtype, "fp32")) return 0;
    return al_bf16_auto();
}

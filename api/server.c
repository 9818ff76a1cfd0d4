/* The HTTP server: libmicrohttpd setup, the route table, the life of one
 * request (headers -> limits and auth -> body -> handler -> completion),
 * response helpers and the counters behind /metrics.
 *
 * libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION)
 * so handlers may block their own connection: inference holds it for the
 * generation, and server-sent-events streams wait on the job feed. The
 * number of connections is capped by us, not by MHD, so that the one over
 * the cap gets a 429 instead of a reset. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"

const double api_lat_bounds[API_LAT_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1,   0.25,   0.5,   1,    2.5,   10};

#define J API_R_JSON
#define M API_R_MUTATES
#define D API_R_DRAIN
static const api_route routes[] = {
    {"GET", "/healthz", api_h_healthz, API_R_PUBLIC | API_R_HEALTH},
    {"GET", "/readyz", api_h_readyz, API_R_HEALTH},
    {"GET", "/metrics", api_h_prometheus, 0},
    {"POST", "/v1/files", api_h_files_post, API_R_UPLOAD | M | D},
    {"GET", "/v1/files", api_h_files_list, 0},
    {"GET", "/v1/files/{id}", api_h_files_get, 0},
    {"GET", "/v1/files/{id}/content", api_h_files_content, 0},
    {"DELETE", "/v1/files/{id}", api_h_files_delete, M},
    {"POST", "/v1/fine_tuning/jobs", api_h_jobs_post, J | M | D},
    {"GET", "/v1/fine_tuning/jobs", api_h_jobs_list, 0},
    {"POST", "/v1/fine_tuning/jobs/estimate", api_h_jobs_estimate, J},
    {"GET", "/v1/fine_tuning/jobs/{id}", api_h_jobs_get, 0},
    {"DELETE", "/v1/fine_tuning/jobs/{id}", api_h_jobs_delete, M},
    {"POST", "/v1/fine_tuning/jobs/{id}/cancel", api_h_jobs_cancel, M},
    {"POST", "/v1/fine_tuning/jobs/{id}/pause", api_h_jobs_pause, M},
    {"POST", "/v1/fine_tuning/jobs/{id}/resume", api_h_jobs_resume, M | D},
    {"GET", "/v1/fine_tuning/jobs/{id}/events", api_h_jobs_events, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/metrics", api_h_jobs_metrics, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/samples", api_h_jobs_samples, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/checkpoints", api_h_jobs_checkpoints, 0},
    {"GET", "/v1/fine_tuning/jobs/{id}/eval_results", api_h_jobs_eval_results, 0},
    {"GET", "/v1/models", api_h_models_list, 0},
    {"POST", "/v1/models", api_h_models_post, J | M},
    {"GET", "/v1/models/{model}/events", api_h_models_events, 0},
    {"GET", "/v1/models/{model}", api_h_models_get, 0},
    {"DELETE", "/v1/models/{model}", api_h_models_delete, M},
    {"POST", "/v1/chat/completions", api_h_chat, J},
    {"POST", "/v1/completions", api_h_completions, J},
    {"GET", "/v1/methods", api_h_methods, 0},
};
#undef J
#undef M
#undef D
#define N_ROUTES ((int)(sizeof routes / sizeof routes[0]))
#define IDX_STATIC N_ROUTES
#define IDX_OTHER (N_ROUTES + 1)

int api_route_count(void) { return N_ROUTES; }
const api_route *api_route_at(int i) { return i >= 0 && i < N_ROUTES ? &routes[i] : NULL; }

void api_server_cfg_init(api_server_cfg *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->listen_fd = -1;
    cfg->max_body = (size_t)1 << 20;
    cfg->max_upload = (size_t)512 << 20;
    cfg->max_json_depth = 32;
    cfg->max_string = (size_t)1 << 20;
    cfg->max_tokens = 2048;
    cfg->max_connections = 256;
    cfg->max_connections_per_ip = 64;
    cfg->header_timeout_s = 10;
    cfg->max_streams = 64;
    cfg->timeout_s = 30;
    cfg->heartbeat_s = 15;
}

/* ---- responses ----------------------------------------------------------- */

void api_common_headers(struct MHD_Response *resp) {
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}

enum MHD_Result api_queue(api_req *r, int status, struct MHD_Response *resp) {
    if (!resp) return MHD_NO;
    api_common_headers(resp);
    if (r->close_after) MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->answered = 1;
    return ok;
}

enum MHD_Result api_reply_text(api_req *r, int status, const char *ctype, const char *text,
                               size_t len) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    return api_queue(r, status, resp);
}

enum MHD_Result api_reply_json_text(api_req *r, int status, char *text, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return api_queue(r, status, resp);
}

enum MHD_Result api_reply_json(api_req *r, int status, json_t *obj) {
    if (!obj)
        return api_reply_error(r, 500, "server_error", "internal_error", "",
                               "the server could not build the response");
    char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(obj);
    if (!s) return MHD_NO;
    size_t n = strlen(s);
    /* a trailing newline keeps curl output tidy */
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return MHD_NO;
    }
    t[n] = '\n';
    t[n + 1] = 0;
    return api_reply_json_text(r, status, t, n + 1);
}

void api_utf8_fix(char *s) {
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++)
            if ((p[i] & 0xC0) != 0x80) ok = 0;
        if (ok && n > 1) { /* overlong forms and surrogates: jansson knows them */
            json_t *t = json_stringn((const char *)p, (size_t)n);
            if (!t) ok = 0;
            json_decref(t);
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

enum MHD_Result api_reply_err(api_req *r, const api_error *e_in) {
    api_error fixed = *e_in;
    const api_error *e = &fixed;
    api_utf8_fix(fixed.message);
    api_utf8_fix(fixed.param);
    api_utf8_fix(fixed.code);
    json_t *err = json_pack("{s:s,s:s,s:o,s:o}", "message", e->message, "type",
                            e->type[0] ? e->type : "server_error", "param",
                            e->param[0] ? json_string(e->param) : json_null(), "code",
                            e->code[0] ? json_string(e->code) : json_null());
    int status = e->status >= 400 && e->status <= 599 ? e->status : 500;
    if (status == 401) {
        /* RFC 6750 */
        json_t *body = json_pack("{s:o}", "error", err);
        char *s = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!s) return MHD_NO;
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(s);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "application/json");
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"alignd\"");
        return api_queue(r, status, resp);
    }
    return api_reply_json(r, status, json_pack("{s:o}", "error", err));
}

enum MHD_Result api_reply_error(api_req *r, int status, const char *type, const char *code,
                                const char *param, const char *fmt, ...) {
    api_error e;
    memset(&e, 0, sizeof e);
    e.status = status;
    snprintf(e.type, sizeof e.type, "%s", type);
    snprintf(e.code, sizeof e.code, "%s", code ? code : "");
    snprintf(e.param, sizeof e.param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return api_reply_err(r, &e);
}

enum MHD_Result api_reply_be(api_req *r, int rc, json_t *out, const api_error *e) {
    if (rc == 0) return api_reply_json(r, 200, out);
    return api_reply_err(r, e);
}

/* ---- request helpers ------------------------------------------------------ */

const char *api_header(api_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *api_query(api_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

int api_query_long(api_req *r, const char *name, long lo, long hi, long dflt, long *out,
                   api_error *e) {
    const char *v = api_query(r, name);
    if (!v) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno)
        return api_error_set(e, 400, "invalid_request_error", "invalid_value", name,
                             "%s: must be an integer", name);
    if (x < lo || x > hi)
        return api_error_set(e, 400, "invalid_request_error", "invalid_value", name,
                             "%s: must be between %ld and %ld", name, lo, hi);
    *out = x;
    return 0;
}

int api_id_ok(const char *s) {
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
        if (n >= 128) return 0;
    }
    return n > 0;
}

int api_model_id_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 200 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//")) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.' || c == ':' || c == '/' || c == '@'))
            return 0;
    }
    return 1;
}

int api_query_page(api_req *r, api_page *pg, api_error *e) {
    long limit;
    if (api_query_long(r, "limit", 1, 100, 20, &limit, e)) return -1;
    const char *after = api_query(r, "after");
    if (after && !api_id_ok(after))
        return api_error_set(e, 400, "invalid_request_error", "invalid_value", "after",
                             "after: must be the id of an object of the list");
    pg->after = after;
    pg->limit = (int)limit;
    return 0;
}

int api_body_object(api_req *r, json_t **out, api_error *e) {
    return api_json_parse(r->body ? r->body : "", r->len, r->srv->cfg.max_json_depth,
                          r->srv->cfg.max_string, out, e);
}

/* ---- routing -------------------------------------------------------------- */

/* Request bodies held in memory at once are bounded (body_budget): an
 * upload that would pass it is refused with 429 instead of exhausting
 * memory. 0, or -1 when over budget. */
static int body_reserve(api_req *r, size_t n) {
    api_server *s = r->srv;
    size_t before = atomic_fetch_add(&s->body_bytes, n);
    if (before + n > s->body_budget) {
        atomic_fetch_sub(&s->body_bytes, n);
        return -1;
    }
    r->reserved += n;
    return 0;
}

/* Matches path against pattern; {id} captures one segment, {model} one or
 * two (a Hugging Face "ORG/NAME[@REV]" id), the shortest that matches. */
static int match(const char *pattern, const char *path, char id[256]) {
    const char *p = pattern, *u = path;
    while (*p && *u) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            int segs = !strncmp(p, "{model}", 7) ? 2 : 1;
            const char *ue = u;
            for (int k = 1; k <= segs; k++) {
                ue = strchr(ue, '/');
                size_t n = ue ? (size_t)(ue - u) : strlen(u);
                if (n == 0 || n >= 256 || (ue && ue[1] == '/')) return 0;
                if (match(pe + 1, u + n, id)) { /* the rest matches: keep this length */
                    memcpy(id, u, n);
                    id[n] = 0;
                    return 1;
                }
                if (!ue) return 0;
                ue++;
            }
            return 0;
        }
        if (*p != *u) return 0;
        p++, u++;
    }
    return *p == 0 && *u == 0;
}

/* Finds the route; *path_known is set when the path exists under another
 * method (405). */
static const api_route *route_find(const char *method, const char *path, char id[256],
                                   int *idx, int *path_known, char allow[64]) {
    const api_route *found = NULL;
    allow[0] = 0;
    *path_known = 0;
    /* Literal segments win over {id} ("/jobs/estimate" over "/jobs/{id}"). */
    for (int pass = 0; pass < 2 && !found; pass++) {
        for (int i = 0; i < N_ROUTES; i++) {
            int has_id = strchr(routes[i].pattern, '{') != NULL;
            if (has_id != pass) continue;
            char tmp[256];
            if (!match(routes[i].pattern, path, tmp)) continue;
            *path_known = 1;
            size_t al = strlen(allow);
            if (!strstr(allow, routes[i].method))
                snprintf(allow + al, 64 - al, "%s%s", al ? ", " : "", routes[i].method);
            const char *m = method;
            if (!strcmp(m, "HEAD")) m = "GET";
            if (!found && !strcmp(routes[i].method, m)) {
                found = &routes[i];
                *idx = i;
                memcpy(id, tmp, sizeof tmp);
            }
        }
        if (*path_known) break;
    }
    return found;
}

/* ---- statistics ------------------------------------------------------------ */

static void stats_record(api_server *s, api_req *r) {
    int st = r->status;
    if (st < 100 || st > 599) return;
    double dt = al_now() - r->t0;
    /* one line per request (debug), server errors always */
    al_log(st >= 500 && st != 503 ? AL_LOG_WARN : AL_LOG_DEBUG,
           "event=http_request method=%s route=%s status=%d ms=%.1f", r->method,
           r->route_idx < N_ROUTES   ? routes[r->route_idx].pattern
           : r->route_idx == IDX_STATIC ? "static"
                                        : "other",
           st, dt * 1e3);
    pthread_mutex_lock(&s->stats_mu);
    api_route_stats *rs = &s->stats[r->route_idx];
    rs->by_code[st - 100]++;
    if (!r->is_stream) {
        int b = 0;
        while (b < API_LAT_BUCKETS && dt > api_lat_bounds[b]) b++;
        rs->lat_bucket[b]++;
        rs->lat_sum += dt;
        rs->lat_count++;
    }
    pthread_mutex_unlock(&s->stats_mu);
}

static const char *route_label(int idx) {
    if (idx == IDX_STATIC) return "static";
    if (idx == IDX_OTHER) return "other";
    return routes[idx].pattern;
}

static const char *route_method(int idx) {
    if (idx >= N_ROUTES) return "GET";
    return routes[idx].method;
}

void api_stats_write(api_server *s, al_buf *out) {
    pthread_mutex_lock(&s->stats_mu);
    al_buf_printf(out,
           "# HELP alignd_http_requests_total HTTP requests by route and status code.\n"
           "# TYPE alignd_http_requests_total counter\n");
    for (int i = 0; i < N_ROUTES + 2; i++)
        for (int c = 0; c < 500; c++)
            if (s->stats[i].by_code[c])
                al_buf_printf(out,
                       "alignd_http_requests_total{method=\"%s\",route=\"%s\",code=\"%d\"} %ld\n",
                       route_method(i), route_label(i), c + 100, s->stats[i].by_code[c]);
    al_buf_printf(out,
           "# HELP alignd_http_request_duration_seconds Time from request headers to the "
           "end of the response (event streams excluded).\n"
           "# TYPE alignd_http_request_duration_seconds histogram\n");
    for (int i = 0; i < N_ROUTES + 2; i++) {
        const api_route_stats *rs = &s->stats[i];
        if (!rs->lat_count) continue;
        long cum = 0;
        for (int b = 0; b <= API_LAT_BUCKETS; b++) {
            cum += rs->lat_bucket[b];
            if (b < API_LAT_BUCKETS)
                al_buf_printf(out,
                       "alignd_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                       "le=\"%g\"} %ld\n",
                       route_method(i), route_label(i), api_lat_bounds[b], cum);
            else
                al_buf_printf(out,
                       "alignd_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                       "le=\"+Inf\"} %ld\n",
                       route_method(i), route_label(i), cum);
        }
        al_buf_printf(out,
               "alignd_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n"
               "alignd_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %ld\n",
               route_method(i), route_label(i), rs->lat_sum, route_method(i), route_label(i),
               rs->lat_count);
    }
    pthread_mutex_unlock(&s->stats_mu);
    al_buf_printf(out,
           "# HELP alignd_http_connections Open HTTP connections.\n"
           "# TYPE alignd_http_connections gauge\n"
           "alignd_http_connections %d\n"
           "# HELP alignd_sse_streams Open server-sent-event streams.\n"
           "# TYPE alignd_sse_streams gauge\n"
           "alignd_sse_streams %d\n"
           "# HELP alignd_http_request_body_bytes Bytes of request bodies held in memory now.\n"
           "# TYPE alignd_http_request_body_bytes gauge\n"
           "alignd_http_request_body_bytes %zu\n"
           "# HELP alignd_http_request_body_budget_bytes Request bodies held at once beyond this are refused (429).\n"
           "# TYPE alignd_http_request_body_budget_bytes gauge\n"
           "alignd_http_request_body_budget_bytes %zu\n",
           atomic_load(&s->connections), atomic_load(&s->streams), atomic_load(&s->body_bytes),
           s->body_budget);
}

/* ---- the request's life ------------------------------------------------------ */

/* Authentication: 0 when the request may go on (r->read_only set), else -1
 * with e (401 missing/invalid key, 403 read-only key on a mutating route). */
static int authenticate(api_req *r, int flags, api_error *e) {
    api_server *s = r->srv;
    if (flags & API_R_PUBLIC) return 0;
    if (!s->be.auth_required || !s->be.auth_required(s->be.ud)) return 0;
    const char *h = api_header(r, "Authorization");
    const char *key = NULL;
    if (h) {
        while (*h == ' ') h++;
        if (strncasecmp(h, "Bearer ", 7) == 0) {
            key = h + 7;
            while (*key == ' ') key++;
        }
    } else if (!strcmp(r->method, "GET")) {
        /* EventSource cannot set headers: the dashboard's streams pass the
         * key as ?access_token= (read routes only). */
        key = api_query(r, "access_token");
    }
    if (!key || !*key)
        return api_error_set(e, 401, "authentication_error", "missing_api_key", "",
                             "no API key provided: send \"Authorization: Bearer <key>\"");
    int ro = 0;
    if (strlen(key) > 512 || !s->be.auth_check || s->be.auth_check(s->be.ud, key, &ro) != 1)
        return api_error_set(e, 401, "authentication_error", "invalid_api_key", "",
                             "incorrect API key provided");
    r->read_only = ro;
    if (ro && (flags & API_R_MUTATES))
        return api_error_set(e, 403, "permission_error", "read_only_key", "",
                             "this API key is read-only; %s %s needs a read-write key",
                             r->method, r->path);
    return 0;
}

static int ctype_is(const char *ct, const char *want) {
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    size_t n = strlen(want);
    return strncasecmp(ct, want, n) == 0 && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* Content types a raw upload may carry. */
static int upload_ctype_ok(const char *ct) {
    static const char *ok[] = {"application/jsonl", "application/x-jsonlines",
                               "application/jsonlines", "application/x-ndjson",
                               "application/json", "application/octet-stream", "text/plain",
                               "multipart/form-data", "text/jsonl", "text/csv",
                               "text/tab-separated-values"};
    if (!ct || !*ct) return 1;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (ctype_is(ct, ok[i])) return 1;
    return 0;
}

/* An error known from the headers alone, with a body still on its way.
 * Answering at once lets the server close the connection while the client
 * is still sending: the kernel then resets it and the client may never read
 * the answer. So unless the client waits for "100 Continue" or the body is
 * large (over 16 MiB: not worth reading), the body is read and dropped and
 * the error goes out after it. */
#define API_DRAIN_MAX ((unsigned long long)16 << 20)
static enum MHD_Result refuse(api_req *r, const api_error *e) {
    const char *ex = api_header(r, "Expect");
    int waits = ex && !strcasecmp(ex, "100-continue");
    int body = r->declared > 0 || r->chunked;
    if (!body || waits || r->declared > API_DRAIN_MAX) return api_reply_err(r, e);
    r->deferred = *e;
    r->has_deferred = 1;
    return MHD_YES;
}

/* Checks made once the headers are in, before any body is read. 0 to go
 * on, else -1 with e. */
static int precheck(api_req *r, api_error *e) {
    api_server *s = r->srv;
    int flags = r->rt ? r->rt->flags : API_R_PUBLIC;
    if (!(flags & API_R_HEALTH) && atomic_load(&s->connections) > s->cfg.max_connections)
        return api_error_set(e, 429, "rate_limit_error", "too_many_connections", "",
                             "too many open connections (limit %d); retry later",
                             s->cfg.max_connections);
    if (authenticate(r, flags, e)) return -1;
    if ((flags & API_R_DRAIN) && atomic_load(&s->draining))
        return api_error_set(e, 503, "server_error", "shutting_down", "",
                             "the server is shutting down and accepts no new work");
    const char *ct = api_header(r, "Content-Type");
    int has_body = r->declared > 0 || r->chunked;
    r->limit = (flags & API_R_UPLOAD) ? s->cfg.max_upload : s->cfg.max_body;
    if (r->declared > r->limit)
        return api_error_set(e, 413, "invalid_request_error", "request_too_large", "",
                             "the request body (%llu bytes) exceeds the limit of %zu bytes",
                             r->declared, r->limit);
    if (has_body && (flags & API_R_JSON) && !ctype_is(ct, "application/json"))
        return api_error_set(e, 415, "invalid_request_error", "unsupported_media_type", "",
                             "Content-Type must be application/json (got %s)",
                             ct ? ct : "none");
    if (has_body && (flags & API_R_UPLOAD) && !upload_ctype_ok(ct))
        return api_error_set(e, 415, "invalid_request_error", "unsupported_media_type", "",
                             "upload a file as multipart/form-data or as a raw JSONL body "
                             "(got Content-Type %s)",
                             ct);
    return 0;
}

/* ---- framing and deadlines ---------------------------------------------------- */

typedef struct hdr_scan {
    int n_cl, cl_differ, n_te, bad;
    char cl[32], te[64];
} hdr_scan;

static int ctl_in(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return 1;
    }
    return 0;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                   const char *value, size_t value_size) {
    (void)kind;
    hdr_scan *h = cls;
    if (ctl_in(key, key_size) || (value && ctl_in(value, value_size))) h->bad = 1;
    if (!value) return MHD_YES;
    if (key_size == 14 && !strncasecmp(key, "Content-Length", 14)) {
        char v[32];
        snprintf(v, sizeof v, "%.*s", (int)(value_size < 31 ? value_size : 31), value);
        if (h->n_cl++ && strcmp(v, h->cl)) h->cl_differ = 1;
        memcpy(h->cl, v, sizeof v);
    } else if (key_size == 17 && !strncasecmp(key, "Transfer-Encoding", 17)) {
        h->n_te++;
        snprintf(h->te, sizeof h->te, "%.*s", (int)(value_size < 63 ? value_size : 63), value);
    }
    return MHD_YES;
}

/* How the body is framed, checked before anything else: a request a proxy
 * in front could read differently from us (two different Content-Lengths,
 * Content-Length with Transfer-Encoding), a header with NUL or control
 * characters, or a transfer coding other than chunked (which we cannot
 * decode, and whose body would otherwise hold the connection until the
 * idle timeout) is answered at once and the connection closed. 0 to go on. */
static int check_framing(api_req *r, api_error *e) {
    hdr_scan h;
    memset(&h, 0, sizeof h);
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_header, &h);
    if (h.bad)
        return api_error_set(e, 400, "invalid_request_error", "invalid_header", "",
                             "a request header holds a NUL or control character");
    if (h.cl_differ || (h.n_cl && h.n_te) || h.n_te > 1)
        return api_error_set(e, 400, "invalid_request_error", "invalid_framing", "",
                             "the body's length is given more than once, differently (Content-Length %s "
                             "and Transfer-Encoding)",
                             h.cl_differ ? "twice" : "together with");
    if (h.n_te && strcasecmp(h.te, "chunked"))
        return api_error_set(e, 501, "invalid_request_error", "unsupported_transfer_encoding", "",
                             "Transfer-Encoding: only chunked is supported");
    return 0;
}

static api_conn *conn_of(api_req *r) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Moves the connection's clock to a new phase (NULL-safe). */
static void conn_phase(api_server *s, api_conn *c, int phase) {
    if (!c) return;
    pthread_mutex_lock(&s->conn_mu);
    c->phase = phase;
    c->since = al_now();
    pthread_mutex_unlock(&s->conn_mu);
}

/* The reaper: a connection still waiting for a request's headers
 * header_timeout_s after it opened (or after its previous request ended),
 * or whose body made no progress that long, is shut down; its own thread
 * then sees the socket closed and MHD releases it. A client that trickles
 * a header line every few seconds is never idle, so MHD's idle timeout
 * alone would let it hold a slot for ever. The socket stays valid while
 * conn_mu is held: MHD calls the connection's CLOSED notification (which
 * takes conn_mu) before it closes the socket. */
static void *reaper_main(void *arg) {
    api_server *s = arg;
    while (!atomic_load(&s->stopping)) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        double now = al_now(), limit = (double)s->cfg.header_timeout_s;
        pthread_mutex_lock(&s->conn_mu);
        for (api_conn *c = s->conns; c; c = c->next)
            if (!c->cut && c->phase != API_CONN_BUSY && now - c->since > limit) {
                shutdown(c->fd, SHUT_RDWR);
                c->cut = 1;
                atomic_fetch_add(&s->conns_cut, 1);
            }
        pthread_mutex_unlock(&s->conn_mu);
    }
    return NULL;
}

/* A chunked body past the limit, answered while it is still coming:
 * libmicrohttpd 0.9.75 queues a response only before the body or after
 * all of it, and a chunked body may be endless. So the 413 is written to
 * the socket here, on the connection's own thread (nothing else writes to
 * it until we return), the sending side is shut, what the client still
 * sends is drained for up to 2 s (so that closing does not reset the
 * connection before the client read the answer), and MHD_NO closes it. */
static enum MHD_Result answer_413_now(api_req *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return MHD_NO;
    int fd = ci->connect_fd;
    char body[256], head[512];
    int bl = snprintf(body, sizeof body,
                      "{\"error\":{\"message\":\"the request body exceeds the limit of %zu bytes\","
                      "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"request_too_large\"}}\n",
                      r->limit);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
                      "Content-Length: %d\r\n\r\n",
                      bl);
    if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl && send(fd, body, (size_t)bl, MSG_NOSIGNAL) == bl) {
        shutdown(fd, SHUT_WR);
        double end = al_now() + 2;
        size_t drained = 0;
        char sink[16384];
        while (al_now() < end && drained < ((size_t)8 << 20)) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 100) < 0) break;
            if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t k = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            if (k <= 0) break;
            drained += (size_t)k;
        }
    }
    r->status = 413;
    r->answered = 1;
    return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->srv = s;
        r->conn = conn;
        r->method = method;
        r->t0 = al_now();
        r->route_idx = IDX_OTHER;
        if (!strncmp(url, "/v1/jobs", 8) && (url[8] == 0 || url[8] == '/'))
            snprintf(r->path, sizeof r->path, "/v1/fine_tuning/jobs%s", url + 8);
        else
            snprintf(r->path, sizeof r->path, "%s", url);
        /* trailing slash is the same resource */
        size_t pl = strlen(r->path);
        if (pl > 1 && r->path[pl - 1] == '/') r->path[pl - 1] = 0;
        const char *cl = api_header(r, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            r->declared = strtoull(cl, &end, 10);
            if (errno || *end) r->declared = 0;
        }
        r->chunked = api_header(r, "Transfer-Encoding") != NULL;
        conn_phase(s, conn_of(r), API_CONN_BODY);
        int known = 0, idx = IDX_OTHER;
        char allow[64];
        r->rt = route_find(method, r->path, r->id, &idx, &known, allow);
        api_error e;
        memset(&e, 0, sizeof e);
        if (check_framing(r, &e)) {
            r->close_after = 1;
            return api_reply_err(r, &e);
        }
        if (!r->rt) {
            int api_path = !strncmp(r->path, "/v1/", 4) || !strcmp(r->path, "/v1") ||
                           !strcmp(r->path, "/metrics") || !strcmp(r->path, "/healthz") ||
                           !strcmp(r->path, "/readyz");
            if (known) {
                r->route_idx = IDX_OTHER;
                char msg[160];
                snprintf(msg, sizeof msg, "%.16s is not allowed on this URL (allowed: %s)", method,
                         allow);
                api_utf8_fix(msg);
                json_t *body = json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", msg, "type",
                                         "invalid_request_error", "param", "code",
                                         "method_not_allowed");
                char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
                json_decref(body);
                if (!js) return MHD_NO;
                struct MHD_Response *resp =
                    MHD_create_response_from_buffer(strlen(js), js, MHD_RESPMEM_MUST_FREE);
                if (!resp) {
                    free(js);
                    return MHD_NO;
                }
                MHD_add_response_header(resp, "Content-Type", "application/json");
                MHD_add_response_header(resp, "Allow", allow);
                return api_queue(r, 405, resp);
            }
            if (api_path || !s->web_dir[0] ||
                (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
                char safe[200];
                snprintf(safe, sizeof safe, "%.190s", r->path);
                return api_reply_error(r, 404, "invalid_request_error", "unknown_url", "",
                                       "invalid URL (%s %s)", method, safe);
            }
            r->route_idx = IDX_STATIC;
            if (precheck(r, &e)) return refuse(r, &e);
            return MHD_YES; /* answered once the (empty) body is in */
        }
        r->route_idx = idx;
        if (precheck(r, &e)) return refuse(r, &e);
        r->expect = (size_t)r->declared;
        if (r->expect) { /* one allocation of the announced size (uploads are large) */
            if (body_reserve(r, r->expect + 1)) {
                api_error_set(&e, 429, "rate_limit_error", "too_many_uploads", "",
                              "the server holds too many request bodies at once; retry later");
                return refuse(r, &e);
            }
            r->body = malloc(r->expect + 1);
            if (!r->body)
                return api_reply_error(r, 503, "server_error", "out_of_memory", "",
                                       "not enough memory for a %zu-byte body", r->expect);
            r->cap = r->expect + 1;
        }
        return MHD_YES;
    }
    if (*upload_data_size) conn_phase(s, conn_of(r), API_CONN_BODY); /* progress */
    if (r->answered) {
        /* A response went out with the headers; drop what the client still sends. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->busy || r->has_deferred) { /* dropped; the error goes out at the end */
            r->discarded += n;
            return r->discarded > ((size_t)64 << 20) ? MHD_NO : MHD_YES;
        }
        if (r->overflow || r->len + n > r->limit) {
            r->overflow = 1;
            r->discarded += n;
            /* A body of unknown length (chunked) is answered as soon as it
             * passes the limit, and the connection closed: reading on to its
             * end could take anything up to 2^64 bytes. */
            if (r->chunked && !r->answered) return answer_413_now(r);
            /* A client that keeps streaming far past the limit is cut off. */
            return r->discarded > ((size_t)64 << 20) ? MHD_NO : MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t nc = r->cap ? r->cap : 4096;
            while (nc < r->len + n + 1) nc *= 2;
            if (nc > r->limit + 1) nc = r->limit + 1;
            if (body_reserve(r, nc - r->cap)) {
                r->busy = 1;
                return MHD_YES;
            }
            char *nb = realloc(r->body, nc);
            if (!nb) return MHD_NO;
            r->body = nb;
            r->cap = nc;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = 0;
        return MHD_YES;
    }
    /* The whole request is in. */
    conn_phase(s, conn_of(r), API_CONN_BUSY);
    if (r->has_deferred) return api_reply_err(r, &r->deferred);
    if (r->busy)
        return api_reply_error(r, 429, "rate_limit_error", "too_many_uploads", "",
                               "the server holds too many request bodies at once; retry later");
    if (r->overflow)
        return api_reply_error(r, 413, "invalid_request_error", "request_too_large", "",
                               "the request body exceeds the limit of %zu bytes", r->limit);
    if (!r->rt) return api_h_static(r);
    return r->rt->fn(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    (void)toe;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r) return;
    /* a kept-alive connection waits for its next request's headers */
    conn_phase(s, conn_of(r), API_CONN_WAIT);
    stats_record(s, r);
    atomic_fetch_sub(&s->body_bytes, r->reserved);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    api_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&s->connections, 1);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        api_conn *c = ci ? calloc(1, sizeof *c) : NULL;
        if (!c) return; /* no deadline for this one, nothing else lost */
        c->fd = ci->connect_fd;
        c->phase = API_CONN_WAIT;
        c->since = al_now();
        pthread_mutex_lock(&s->conn_mu);
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        pthread_mutex_unlock(&s->conn_mu);
        *socket_context = c;
        return;
    }
    atomic_fetch_sub(&s->connections, 1);
    api_conn *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&s->conn_mu);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&s->conn_mu);
    free(c);
    *socket_context = NULL;
}

/* ---- listening -------------------------------------------------------------- */

static int addr_is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return 1;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return in6->sin6_addr.s6_addr[12] == 127;
        return 0;
    }
    return sa->sa_family == AF_UNIX;
}

static int open_listener(const char *host, int port, int *loopback, char err[AL_ERRLEN]) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc) {
        snprintf(err, AL_ERRLEN, "cannot resolve listen address %.100s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    *loopback = 1;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (!addr_is_loopback(a->ai_addr)) *loopback = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 512)) {
            snprintf(err, AL_ERRLEN, "cannot listen on %.100s:%d: %s", host, port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0 && !err[0]) snprintf(err, AL_ERRLEN, "cannot listen on %.100s:%d", host, port);
    return fd;
}

static int fd_port(int fd, int *loopback) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl)) return -1;
    *loopback = addr_is_loopback((struct sockaddr *)&ss);
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

api_server *api_server_start(const api_server_cfg *cfg_in, const api_backend *be,
                             char err[AL_ERRLEN]) {
    char dummy[256];
    if (!err) err = dummy;
    err[0] = 0;
    api_server_cfg dflt;
    api_server_cfg_init(&dflt);
    if (!cfg_in) cfg_in = &dflt;
    api_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, AL_ERRLEN, "out of memory");
        return NULL;
    }
    s->cfg = *cfg_in;
    api_server_cfg *c = &s->cfg;
    /* zero means "default" for every limit */
    if (!c->max_body) c->max_body = dflt.max_body;
    if (!c->max_upload) c->max_upload = dflt.max_upload;
    if (c->max_json_depth <= 0) c->max_json_depth = dflt.max_json_depth;
    if (!c->max_string) c->max_string = dflt.max_string;
    if (c->max_tokens <= 0) c->max_tokens = dflt.max_tokens;
    if (c->max_connections <= 0) c->max_connections = dflt.max_connections;
    if (c->max_connections_per_ip <= 0) c->max_connections_per_ip = dflt.max_connections_per_ip;
    if (c->header_timeout_s <= 0) c->header_timeout_s = dflt.header_timeout_s;
    if (c->max_streams <= 0) c->max_streams = dflt.max_streams;
    if (c->timeout_s <= 0) c->timeout_s = dflt.timeout_s;
    if (c->heartbeat_s <= 0) c->heartbeat_s = dflt.heartbeat_s;
    /* streams must speak well within the idle timeout */
    if (c->heartbeat_s > c->timeout_s / 2) c->heartbeat_s = c->timeout_s / 2 > 0 ? c->timeout_s / 2 : 1;
    s->body_budget = c->max_upload < SIZE_MAX / 4 && c->max_body < SIZE_MAX / 64
                         ? 2 * c->max_upload + 16 * c->max_body
                         : SIZE_MAX;
    snprintf(s->host, sizeof s->host, "%s", c->host && *c->host ? c->host : "127.0.0.1");
    c->host = s->host;
    s->be = *be;
    if (c->models_dir && *c->models_dir) {
        if (!realpath(c->models_dir, s->models_dir)) {
            snprintf(err, AL_ERRLEN, "models directory %.200s: %s", c->models_dir, strerror(errno));
            free(s);
            return NULL;
        }
    }
    c->models_dir = s->models_dir[0] ? s->models_dir : NULL;
    if (c->web_dir && *c->web_dir) {
        if (!realpath(c->web_dir, s->web_dir)) s->web_dir[0] = 0; /* no dashboard */
    }
    c->web_dir = s->web_dir[0] ? s->web_dir : NULL;
    int keys = be->auth_required && be->auth_required(be->ud);
    int fd, loopback = 1;
    int own_fd = 0;
    if (c->listen_fd >= 0) {
        fd = c->listen_fd;
        if (fd_port(fd, &loopback) < 0) {
            snprintf(err, AL_ERRLEN, "listen_fd %d is not a socket: %s", fd, strerror(errno));
            free(s);
            return NULL;
        }
    } else {
        /* Check before binding so a refused address never listens. */
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        if (getaddrinfo(s->host, NULL, &hints, &res) == 0) {
            for (struct addrinfo *a = res; a; a = a->ai_next)
                if (!addr_is_loopback(a->ai_addr)) loopback = 0;
            freeaddrinfo(res);
        }
        if (!loopback && !keys) {
            snprintf(err, AL_ERRLEN,
                     "refusing to listen on %.100s without API keys: create one with "
                     "`alignd keys create` or listen on 127.0.0.1",
                     s->host);
            free(s);
            return NULL;
        }
        fd = open_listener(s->host, c->port, &loopback, err);
        if (fd < 0) {
            free(s);
            return NULL;
        }
        own_fd = 1;
    }
    if (!loopback && !keys) {
        snprintf(err, AL_ERRLEN,
                 "refusing to listen on a non-loopback address without API keys: create "
                 "one with `alignd keys create`");
        if (own_fd) close(fd);
        free(s);
        return NULL;
    }
    s->stats = calloc((size_t)N_ROUTES + 2, sizeof *s->stats);
    s->models = api_model_cache_new(2);
    if (!s->stats || !s->models) {
        snprintf(err, AL_ERRLEN, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&s->stats_mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    s->started = al_now();
    /* Handlers run the backend (dataset validation, estimates) and inference
     * on the connection's thread: give it a full-size stack (8 MiB, only
     * what is touched is committed). MHD's own cap sits above ours so the connection over our cap reaches
     * the handler and gets a 429 rather than a reset. */
    unsigned int mhd_limit = (unsigned)c->max_connections + 64;
    s->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0, NULL,
        NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_LIMIT, mhd_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)c->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)c->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)8 << 20, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, AL_ERRLEN, "libmicrohttpd could not start on %.100s:%d", s->host, c->port);
        pthread_mutex_destroy(&s->stats_mu);
        pthread_mutex_destroy(&s->conn_mu);
        goto fail;
    }
    if (pthread_create(&s->reaper, NULL, reaper_main, s)) {
        snprintf(err, AL_ERRLEN, "cannot start the connection reaper thread");
        MHD_stop_daemon(s->mhd);
        pthread_mutex_destroy(&s->stats_mu);
        pthread_mutex_destroy(&s->conn_mu);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : 0;
    if (!s->port) {
        int lb;
        s->port = fd_port(fd, &lb);
    }
    return s;
fail:
    if (own_fd) close(fd);
    api_model_cache_free(s->models);
    free(s->stats);
    free(s);
    return NULL;
}

int api_server_port(const api_server *s) { return s ? s->port : 0; }

void api_server_set_draining(api_server *s, int on) {
    if (s) atomic_store(&s->draining, on ? 1 : 0);
}

int64_t api_server_models_memory(api_server *s) { return (int64_t)api_model_cache_memory(s->models, NULL); }

void api_server_stop(api_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    pthread_join(s->reaper, NULL);
    /* Let open streams send what they hold and end on their own (each
     * notices `stopping` within one feed slice) before the daemon shuts
     * their sockets; a stream that does not end within a second is cut. */
    double until = al_now() + 1.0;
    while (atomic_load(&s->streams) > 0 && al_now() < until) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(s->mhd);
    api_model_cache_free(s->models);
    pthread_mutex_destroy(&s->stats_mu);
    pthread_mutex_destroy(&s->conn_mu);
    free(s->stats);
    free(s);
}

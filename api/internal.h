/* Internals of the REST layer shared by the api/ sources: the server, one request's
 * state, the route table, response helpers and the pieces the handlers use.
 *
 * Threads: libmicrohttpd runs one thread per connection (so a handler, an
 * inference request or a server-sent-events stream may block its own
 * connection without stalling others) plus one accept thread. Everything
 * in api_server that handlers touch is either immutable after start,
 * atomic, or under a mutex named next to it. */
#ifndef API_INTERNAL_H
#define API_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "backend.h"
#include "buf.h"
#include "json_body.h"
#include "server.h"

/* Route flags. */
enum {
    API_R_MUTATES = 1,   /* read-only keys get 403 */
    API_R_JSON = 2,      /* takes a JSON body (415 for another Content-Type) */
    API_R_UPLOAD = 4,    /* takes a file upload (max_upload, raw or multipart) */
    API_R_PUBLIC = 8,    /* no key needed (/healthz, dashboard files) */
    API_R_DRAIN = 16,    /* refused with 503 while draining */
    API_R_HEALTH = 32,   /* answered beyond max_connections (from the reserve) */
};

/* One open TCP connection, for the header and body-stall deadlines (the
 * reaper thread in server.c shuts down what overstays). Set as MHD's
 * socket context; under api_server.conn_mu. */
typedef struct api_conn {
    int fd;
    int phase;                       /* API_CONN_WAIT, _BODY, _BUSY */
    int cut;                         /* shut down by the reaper */
    double since;                    /* when the phase's clock started */
    struct api_conn *prev, *next;
} api_conn;
enum { API_CONN_WAIT, API_CONN_BODY, API_CONN_BUSY };

struct api_req;
typedef enum MHD_Result (*api_handler)(struct api_req *r);

typedef struct api_route {
    const char *method;   /* "GET", "POST", "DELETE" */
    const char *pattern;  /* "/v1/fine_tuning/jobs/{id}/events"; {id} is one segment */
    api_handler fn;
    int flags;
} api_route;

/* Latency histogram bounds (seconds) for /metrics. */
#define API_LAT_BUCKETS 12
extern const double api_lat_bounds[API_LAT_BUCKETS];

/* Per-route counters for /metrics; index n_routes is "static", n_routes + 1
 * "other" (unknown URL). Status codes 100..599. */
typedef struct api_route_stats {
    long by_code[500];
    long lat_bucket[API_LAT_BUCKETS + 1];   /* last: +Inf */
    double lat_sum;
    long lat_count;
} api_route_stats;

typedef struct api_model_cache api_model_cache;

struct api_server {
    api_server_cfg cfg;
    char host[256];
    char models_dir[API_PATH_MAX];   /* realpath of cfg.models_dir, "" when none */
    char web_dir[API_PATH_MAX];      /* realpath of cfg.web_dir, "" when none */
    api_backend be;
    struct MHD_Daemon *mhd;
    int port;
    atomic_int draining;
    atomic_int stopping;
    atomic_int connections;          /* open TCP connections */
    atomic_int streams;              /* open SSE streams */
    atomic_long stream_seq;          /* ids of completions */
    atomic_size_t body_bytes;        /* request bodies held now ... */
    size_t body_budget;              /* ... and at most (2 uploads + 16 bodies) */
    pthread_mutex_t stats_mu;        /* guards stats */
    api_route_stats *stats;          /* n_routes + 2 */
    api_model_cache *models;
    double started;
    pthread_mutex_t conn_mu;         /* guards conns and every api_conn */
    api_conn *conns;                 /* open connections */
    pthread_t reaper;                /* enforces header_timeout_s */
    atomic_long conns_cut;           /* connections shut down by the deadline */
};

/* One HTTP request, from its headers to its completion. */
typedef struct api_req {
    api_server *srv;
    struct MHD_Connection *conn;
    const char *method;              /* MHD's string, valid for the request */
    char path[1024];                 /* URL with /v1/jobs rewritten to /v1/fine_tuning/jobs */
    const api_route *rt;             /* NULL: static or unknown */
    int route_idx;                   /* stats index */
    char id[256];                    /* the {id} segment */
    double t0;
    char *body;                      /* request body (NUL-terminated), len bytes */
    size_t len, cap, limit;
    size_t expect;                   /* Content-Length, 0 when unknown */
    unsigned long long declared;     /* Content-Length as sent (0: none) */
    int chunked;                     /* Transfer-Encoding: the length is unknown */
    int has_deferred;                /* an error to send once the body is read */
    api_error deferred;
    int overflow;                    /* body beyond limit (413 at the end) */
    int busy;                        /* body budget exhausted (429 at the end) */
    size_t reserved;                 /* bytes counted in srv->body_bytes */
    size_t discarded;
    int read_only;                   /* authenticated with a read-only key */
    int status;                      /* status queued (for /metrics) */
    int is_stream;                   /* long-lived: excluded from the latency histogram */
    int answered;                    /* a response is queued */
    int close_after;                 /* "Connection: close" on the response */
} api_req;

/* ---- responses (server.c) ---------------------------------------------- */

/* Adds the headers every response carries (nosniff, no-referrer). */
void api_common_headers(struct MHD_Response *resp);
/* Queues resp with status, records it, releases resp. */
enum MHD_Result api_queue(api_req *r, int status, struct MHD_Response *resp);
/* JSON body (obj is stolen; NULL gives 500). */
enum MHD_Result api_reply_json(api_req *r, int status, json_t *obj);
/* {"error":{message,type,param,code}} with e->status. */
enum MHD_Result api_reply_err(api_req *r, const api_error *e);
enum MHD_Result api_reply_error(api_req *r, int status, const char *type, const char *code,
                                const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A body of serialized JSON (text is taken and freed). */
enum MHD_Result api_reply_json_text(api_req *r, int status, char *text, size_t len);
/* Text body with a content type (copied). */
enum MHD_Result api_reply_text(api_req *r, int status, const char *ctype, const char *text,
                               size_t len);
/* Backend result: rc 0 -> 200 with out, else the error. */
enum MHD_Result api_reply_be(api_req *r, int rc, json_t *out, const api_error *e);

/* ---- request helpers (server.c) ---------------------------------------- */

const char *api_header(api_req *r, const char *name);
const char *api_query(api_req *r, const char *name);
/* Query integer in [lo, hi] (dflt when absent). -1 and e filled (400, param
 * = name) when malformed or out of range. */
int api_query_long(api_req *r, const char *name, long lo, long hi, long dflt, long *out,
                   api_error *e);
/* after/limit of a list. */
int api_query_page(api_req *r, api_page *pg, api_error *e);
/* Parses the request body as a JSON object under the configured limits. */
int api_body_object(api_req *r, json_t **out, api_error *e);
/* Replaces what is not UTF-8 (a cut character, bytes from a URL) by '?',
 * in place, so that client text quoted in JSON always makes valid JSON. */
void api_utf8_fix(char *s);
/* Whether an id from the URL or a query is well-formed (1..128 bytes of
 * [A-Za-z0-9._:-]). */
int api_id_ok(const char *s);
/* A model id from the URL: api_id_ok's characters plus '/' and '@' (a
 * Hugging Face "ORG/NAME[@REV]"), at most 200 bytes. */
int api_model_id_ok(const char *s);

/* ---- handlers ----------------------------------------------------------- */

enum MHD_Result api_h_files_post(api_req *r);
enum MHD_Result api_h_files_list(api_req *r);
enum MHD_Result api_h_files_get(api_req *r);
enum MHD_Result api_h_files_content(api_req *r);
enum MHD_Result api_h_files_delete(api_req *r);

enum MHD_Result api_h_jobs_post(api_req *r);
enum MHD_Result api_h_jobs_estimate(api_req *r);
enum MHD_Result api_h_jobs_list(api_req *r);
enum MHD_Result api_h_jobs_get(api_req *r);
enum MHD_Result api_h_jobs_delete(api_req *r);
enum MHD_Result api_h_jobs_cancel(api_req *r);
enum MHD_Result api_h_jobs_pause(api_req *r);
enum MHD_Result api_h_jobs_resume(api_req *r);
enum MHD_Result api_h_jobs_events(api_req *r);
enum MHD_Result api_h_jobs_metrics(api_req *r);
enum MHD_Result api_h_jobs_samples(api_req *r);
enum MHD_Result api_h_jobs_checkpoints(api_req *r);
enum MHD_Result api_h_jobs_eval_results(api_req *r);

enum MHD_Result api_h_models_list(api_req *r);
enum MHD_Result api_h_models_get(api_req *r);
enum MHD_Result api_h_models_post(api_req *r);
enum MHD_Result api_h_models_delete(api_req *r);
enum MHD_Result api_h_models_events(api_req *r);

enum MHD_Result api_h_chat(api_req *r);
enum MHD_Result api_h_completions(api_req *r);

enum MHD_Result api_h_healthz(api_req *r);
enum MHD_Result api_h_readyz(api_req *r);
enum MHD_Result api_h_prometheus(api_req *r);
/* The method registry (h_methods.c). */
enum MHD_Result api_h_methods(api_req *r);

/* Dashboard files under web_dir (h_static.c). */
enum MHD_Result api_h_static(api_req *r);

/* SSE stream of a job's feed, or of a model's (its download) (sse.c). */
enum MHD_Result api_sse_job(api_req *r);
enum MHD_Result api_sse_model(api_req *r);
/* Accept: text/event-stream or ?stream=true (h_jobs.c). */
int api_wants_stream(api_req *r);
/* A stream's reader callback, the part every stream shares (sse.c): the
 * bytes of out from *off on, at most max, into dst, *last_write stamped;
 * their count, or 0 when all was sent (out then emptied and *off 0, for the
 * stream to fill again). */
size_t api_stream_drain(al_buf *out, size_t *off, char *dst, size_t max, double *last_write);
/* Answers r with a text/event-stream read by read from st (freed by fr,
 * also when the answer cannot be made: then MHD_NO). */
enum MHD_Result api_stream_reply(api_req *r, MHD_ContentReaderCallback read, void *st,
                                 MHD_ContentReaderFreeCallback fr);

/* ---- inference model cache (infer.c) ------------------------------------ */

api_model_cache *api_model_cache_new(int capacity);
void api_model_cache_free(api_model_cache *c);
/* Bytes of the models held (for /metrics), and how many. */
size_t api_model_cache_memory(api_model_cache *c, int *n_models);
/* Decode steps run and the rows they carried (rows / steps: the batch), and
 * the sequences decoding now, over the loaded models. */
void api_model_cache_decode_stats(api_model_cache *c, unsigned long *steps, unsigned long *rows, int *live);

/* ---- paths (h_models.c) -------------------------------------------------- */

/* Resolves `path` (relative to root, or absolute) to a real path that lies
 * inside root (itself a real path): no ".." component, no symlink leading
 * out. 0 and out filled, or -1 with e (400 invalid_path / path_outside_root,
 * 404 not_found) naming param. */
int api_path_inside(const char *root, const char *path, const char *param,
                    char out[API_PATH_MAX], api_error *e);

/* ---- statistics (server.c) ---------------------------------------------- */

int api_route_count(void);
/* Appends the HTTP counters and histogram in Prometheus text format to out
 * (out->oom tells when memory ran out). */
void api_stats_write(api_server *s, al_buf *out);
const api_route *api_route_at(int i);

#endif

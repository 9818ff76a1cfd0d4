/* Server-sent events of one job: GET …/jobs/{id}/events with
 * Accept: text/event-stream; and of one model's download, GET
 * /v1/models/{model}/events, in the same shape (its items are "progress"
 * and "status").
 *
 * Each feed item (api/backend.h) becomes
 *     id: <seq>\nevent: <event|metrics|sample|status>\ndata: <JSON>\n\n
 * A client that reconnects with Last-Event-ID (or ?last_event_id=N, for
 * the first connection of an EventSource) gets every item after it; a new
 * stream starts with the last ?replay=N items (default 100; the history is
 * what the REST lists are for), so a crowd of new clients on a long job
 * does not each pull its whole history. A
 * comment line ": ping" goes out every heartbeat_s of silence, so proxies
 * keep the stream and dead clients are noticed. When the job is final and
 * every item was sent the stream ends with "event: end" and closes.
 *
 * The content-reader callback runs on the connection's own thread and
 * blocks in job_feed for at most 250 ms at a time, so api_server_stop ends
 * every stream within that: a stream that sees the server stopping takes
 * what the feed holds without waiting, sends it and ends, and the server
 * waits for its streams to end before it shuts their sockets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define SSE_SLICE_MS 250
#define SSE_REPLAY 100 /* items a new stream replays */

typedef struct sse_stream {
    api_server *srv;
    int model;                       /* a model's feed, not a job's */
    char id[256];
    int64_t last_seq;
    double last_write;
    al_buf out;   /* events not yet sent, from byte off on */
    size_t off;
    int ended;
    int flushed;  /* the server is stopping and the feed's last items were taken */
} sse_stream;

static int put_str(sse_stream *st, const char *s) { return al_buf_puts(&st->out, s); }

static int put_item(sse_stream *st, const json_t *item) {
    json_int_t seq = json_integer_value(json_object_get(item, "seq"));
    const char *ev = json_string_value(json_object_get(item, "event"));
    const json_t *data = json_object_get(item, "data");
    char *js = data ? json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(10) |
                                           JSON_ENCODE_ANY)
                    : NULL;
    char head[160];
    snprintf(head, sizeof head, "id: %lld\nevent: %s\ndata: ", (long long)seq,
             ev && *ev && !strpbrk(ev, "\r\n") ? ev : "message");
    int rc = put_str(st, head) || put_str(st, js ? js : "null") || put_str(st, "\n\n");
    free(js);
    if (seq > st->last_seq) st->last_seq = seq;
    return rc;
}

size_t api_stream_drain(al_buf *out, size_t *off, char *dst, size_t max, double *last_write) {
    if (*off < out->n) {
        size_t n = out->n - *off;
        if (n > max) n = max;
        memcpy(dst, out->p + *off, n);
        *off += n;
        *last_write = al_now();
        return n;
    }
    *off = 0;
    al_buf_clear(out);
    return 0;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    sse_stream *st = cls;
    api_server *s = st->srv;
    for (;;) {
        size_t sent = api_stream_drain(&st->out, &st->off, out, max, &st->last_write);
        if (sent) return (ssize_t)sent;
        if (st->ended || st->flushed) return MHD_CONTENT_READER_END_OF_STREAM;
        /* Stopping: one last look at the feed without waiting, so a stream
         * cut by shutdown still carries every item the feed already held
         * (a client that connected just before sees the job's status). */
        int stopping = atomic_load(&s->stopping);
        double idle = al_now() - st->last_write;
        double left = (double)s->cfg.heartbeat_s - idle;
        if (!stopping && left <= 0) {
            if (put_str(st, ": ping\n\n")) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        int wait_ms = (int)(left * 1000.0);
        if (wait_ms > SSE_SLICE_MS) wait_ms = SSE_SLICE_MS;
        if (wait_ms < 1) wait_ms = 1;
        if (stopping) {
            wait_ms = 0;
            st->flushed = 1;
        }
        json_t *items = NULL;
        int finished = 0;
        api_error e;
        memset(&e, 0, sizeof e);
        int (*feed)(void *, const char *, int64_t, int, int, json_t **, int *, api_error *) =
            st->model ? s->be.model_feed : s->be.job_feed;
        if (feed(s->be.ud, st->id, st->last_seq, 64, wait_ms, &items, &finished, &e)) {
            json_t *err = json_pack("{s:s,s:s}", "message", e.message, "code", e.code);
            char *js = err ? json_dumps(err, JSON_COMPACT) : NULL;
            json_decref(err);
            int rc = put_str(st, "event: error\ndata: ") || put_str(st, js ? js : "{}") ||
                     put_str(st, "\n\n");
            free(js);
            if (rc) return MHD_CONTENT_READER_END_WITH_ERROR;
            st->ended = 1;
            continue;
        }
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            if (put_item(st, it)) {
                json_decref(items);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        json_decref(items);
        if (finished) {
            char end[96];
            snprintf(end, sizeof end, "event: end\ndata: {\"last_event_id\":%lld}\n\n",
                     (long long)st->last_seq);
            if (put_str(st, end)) return MHD_CONTENT_READER_END_WITH_ERROR;
            st->ended = 1;
        }
    }
}

static void sse_free(void *cls) {
    sse_stream *st = cls;
    atomic_fetch_sub(&st->srv->streams, 1);
    al_buf_deinit(&st->out);
    free(st);
}

static enum MHD_Result sse_start(api_req *r, int model);

enum MHD_Result api_sse_job(api_req *r) { return sse_start(r, 0); }
enum MHD_Result api_sse_model(api_req *r) { return sse_start(r, 1); }

static enum MHD_Result sse_start(api_req *r, int model) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    /* Where to resume: Last-Event-ID (EventSource's reconnect), else the
     * query (its first connection cannot set headers). */
    const char *param = "Last-Event-ID";
    const char *from = api_header(r, "Last-Event-ID");
    if (!from) {
        param = "last_event_id";
        from = api_query(r, "last_event_id");
    }
    int64_t after = -1;
    if (from && *from) {
        char *end;
        long long v = strtoll(from, &end, 10);
        if (*end || v < 0)
            return api_reply_error(r, 400, "invalid_request_error", "invalid_value", param,
                                   "%s: must be the id (a non-negative integer) of the last "
                                   "event received",
                                   param);
        after = v;
    }
    long replay = SSE_REPLAY;
    if (api_query_long(r, "replay", 0, 100000, SSE_REPLAY, &replay, &e)) return api_reply_err(r, &e);
    json_t *obj = NULL;
    if (model && !s->be.model_feed)
        return api_reply_error(r, 404, "invalid_request_error", "unknown_url", "", "this server has no model events");
    if ((model ? s->be.model_get : s->be.job_get)(s->be.ud, r->id, &obj, &e)) return api_reply_err(r, &e);
    json_decref(obj);
    int64_t last = 0;
    if (!model && after < 0 && s->be.job_feed_last) {
        if (s->be.job_feed_last(s->be.ud, r->id, &last, &e)) return api_reply_err(r, &e);
        if (last > replay) after = last - replay; /* seqs are dense: the last `replay` items */
    }
    if (atomic_fetch_add(&s->streams, 1) >= s->cfg.max_streams) {
        atomic_fetch_sub(&s->streams, 1);
        return api_reply_error(r, 429, "rate_limit_error", "too_many_streams", "",
                               "too many open event streams (limit %d); retry later",
                               s->cfg.max_streams);
    }
    sse_stream *st = calloc(1, sizeof *st);
    if (!st) {
        atomic_fetch_sub(&s->streams, 1);
        return MHD_NO;
    }
    st->srv = s;
    st->model = model;
    snprintf(st->id, sizeof st->id, "%s", r->id);
    st->last_seq = after;
    st->last_write = al_now();
    put_str(st, "retry: 3000\n\n");
    return api_stream_reply(r, sse_read, st, sse_free);
}

enum MHD_Result api_stream_reply(api_req *r, MHD_ContentReaderCallback read, void *st,
                                 MHD_ContentReaderFreeCallback fr) {
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, read, st, fr);
    if (!resp) {
        fr(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    r->is_stream = 1;
    return api_queue(r, 200, resp);
}

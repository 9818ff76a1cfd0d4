/* A fake api_backend kept in memory, for tests of api/ without the daemon:
 * files (written under fake.tmp), jobs with a feed each (status changes
 * wake feed readers), models, two API keys ("sk-rw" read-write, "sk-ro"
 * read-only, required when F.keys is set), canned metrics, samples,
 * checkpoints and stats. Its errors are OpenAI-shaped like the daemon's
 * (status, code, param), so a test can assert what api/ makes of them.
 *
 *   fake_init(tmpdir);                 // F's lists, lock, F.ready = 1
 *   api_backend b = fake_backend();
 *   ... api_server_start(&cfg, &b) ...
 *   fake_deinit();
 *
 * F is this file's one state (a test binary has one fake); F.tiny_dir is the
 * folder f_model_path answers for the models "tiny" and "ftjob-1:10".
 * Everything is static inline, as in daemon_util.h, so each test takes what
 * it uses. Threads: every function takes F.mu; the server calls them from
 * its threads. */
#ifndef FAKE_BACKEND_H
#define FAKE_BACKEND_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/backend.h"


typedef struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    json_t *files;      /* newest last */
    json_t *jobs;       /* newest last */
    json_t *feeds;      /* job id -> array of feed items */
    json_t *models;     /* newest last */
    int next_file, next_job;
    int keys;           /* auth_required */
    int ready;
    char tmp[1024];
    char tiny_dir[1100];
    atomic_int feed_calls;
    char dinfo[256];    /* the last upload's dataset_info, compact JSON */
} fake;

static fake F;

static inline int fake_err(api_error *e, int status, const char *code, const char *param,
                           const char *msg) {
    const char *type = status == 404   ? "invalid_request_error"
                       : status == 409 ? "conflict_error"
                                       : "invalid_request_error";
    return api_error_set(e, status, type, code, param, "%s", msg);
}

static inline json_t *find_id(json_t *arr, const char *id, size_t *at) {
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o) {
        if (!strcmp(json_string_value(json_object_get(o, "id")), id)) {
            if (at) *at = i;
            return o;
        }
    }
    return NULL;
}

/* A list page, newest first, over an array kept oldest first. */
static inline int page_newest_first(json_t *arr, const api_page *pg, json_t **out, api_error *e) {
    long start = (long)json_array_size(arr) - 1;
    if (pg->after) {
        size_t at;
        if (!find_id(arr, pg->after, &at)) return fake_err(e, 400, "invalid_value", "after", "no such id");
        start = (long)at - 1;
    }
    json_t *data = json_array();
    long i = start;
    for (; i >= 0 && (int)json_array_size(data) < pg->limit; i--)
        json_array_append_new(data, json_deep_copy(json_array_get(arr, (size_t)i)));
    size_t n = json_array_size(data);
    *out = json_pack("{s:s,s:o,s:b,s:o,s:o}", "object", "list", "data", data, "has_more", i >= 0,
                     "first_id", n ? json_deep_copy(json_object_get(json_array_get(data, 0), "id")) : json_null(),
                     "last_id", n ? json_deep_copy(json_object_get(json_array_get(data, n - 1), "id")) : json_null());
    return 0;
}

static inline int f_ready(void *ud, char why[AL_ERRLEN]) {
    (void)ud;
    if (!F.ready) snprintf(why, 256, "database not migrated");
    return F.ready;
}
static inline int f_auth_required(void *ud) { (void)ud; return F.keys; }
static inline int f_auth_check(void *ud, const char *key, int *ro) {
    (void)ud;
    if (!strcmp(key, "sk-rw")) { *ro = 0; return 1; }
    if (!strcmp(key, "sk-ro")) { *ro = 1; return 1; }
    return 0;
}

static inline int f_file_create(void *ud, const char *filename, const char *purpose, const json_t *dinfo,
                                const void *data, size_t len, json_t **out, api_error *e) {
    (void)ud;
    if (((const char *)data)[0] != '{')
        return fake_err(e, 400, "file_invalid", "file", "line 1: invalid_json");
    pthread_mutex_lock(&F.mu);
    char *dj = dinfo ? json_dumps(dinfo, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    snprintf(F.dinfo, sizeof F.dinfo, "%s", dj ? dj : "");
    free(dj);
    int n = ++F.next_file;
    char id[32], path[1100];
    snprintf(id, sizeof id, "file-%d", n);
    snprintf(path, sizeof path, "%s/%s", F.tmp, id);
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, len, f); fclose(f); }
    json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:n}", "object", "file", "id", id,
                          "bytes", (json_int_t)len, "created_at", (json_int_t)time(NULL),
                          "filename", filename, "purpose", purpose, "status", "processed",
                          "status_details");
    json_array_append_new(F.files, o);
    *out = json_deep_copy(o); /* never share a reference between threads */
    pthread_mutex_unlock(&F.mu);
    return 0;
}
static inline int f_file_list(void *ud, const api_page *pg, const char *purpose, json_t **out,
                              api_error *e) {
    (void)ud; (void)purpose;
    pthread_mutex_lock(&F.mu);
    int rc = page_newest_first(F.files, pg, out, e);
    pthread_mutex_unlock(&F.mu);
    return rc;
}
static inline int f_file_get(void *ud, const char *id, json_t **out, api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    json_t *o = find_id(F.files, id, NULL);
    if (o) *out = json_deep_copy(o);
    pthread_mutex_unlock(&F.mu);
    return o ? 0 : fake_err(e, 404, "not_found", "file_id", "no such file");
}
static inline int f_file_path(void *ud, const char *id, char path[API_PATH_MAX], api_error *e) {
    json_t *o = NULL;
    if (f_file_get(ud, id, &o, e)) return -1;
    json_decref(o);
    snprintf(path, API_PATH_MAX, "%s/%s", F.tmp, id);
    return 0;
}
static inline int f_file_delete(void *ud, const char *id, json_t **out, api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    size_t at;
    json_t *o = find_id(F.files, id, &at);
    if (o) json_array_remove(F.files, at);
    pthread_mutex_unlock(&F.mu);
    if (!o) return fake_err(e, 404, "not_found", "file_id", "no such file");
    *out = json_pack("{s:s,s:s,s:b}", "id", id, "object", "file", "deleted", 1);
    return 0;
}

static inline void feed_push(const char *job, const char *event, json_t *data) {
    json_t *feed = json_object_get(F.feeds, job);
    if (!feed) {
        feed = json_array();
        json_object_set_new(F.feeds, job, feed);
    }
    json_array_append_new(feed, json_pack("{s:I,s:s,s:o}", "seq",
                                          (json_int_t)json_array_size(feed) + 1, "event", event,
                                          "data", data));
    pthread_cond_broadcast(&F.cv);
}

static inline int f_job_create(void *ud, const json_t *body, json_t **out, api_error *e) {
    (void)ud;
    const json_t *model = json_object_get(body, "model");
    if (!model) return fake_err(e, 400, "missing_field", "model", "model: missing");
    if (!json_is_string(model)) return fake_err(e, 400, "invalid_type", "model", "model: must be a string");
    const json_t *hp = json_object_get(body, "hyperparameters");
    const json_t *beta = hp ? json_object_get(hp, "beta") : NULL;
    if (beta && !json_is_number(beta))
        return fake_err(e, 400, "invalid_type", "hyperparameters.beta", "must be a number");
    const json_t *tf = json_object_get(body, "training_file");
    pthread_mutex_lock(&F.mu);
    if (tf && (!json_is_string(tf) || !find_id(F.files, json_string_value(tf), NULL))) {
        pthread_mutex_unlock(&F.mu);
        return fake_err(e, 400, "invalid_value", "training_file", "no such file");
    }
    char id[32];
    snprintf(id, sizeof id, "ftjob-%d", ++F.next_job);
    json_t *md = json_object_get(body, "metadata");
    json_t *o = json_pack("{s:s,s:s,s:I,s:o,s:s,s:s,s:o}", "object", "fine_tuning.job", "id", id,
                          "created_at", (json_int_t)time(NULL), "model", json_deep_copy(model),
                          "method", "sft", "status", "queued",
                          "metadata", md ? json_deep_copy(md) : json_null());
    json_array_append_new(F.jobs, o);
    feed_push(id, "status", json_pack("{s:s,s:s}", "id", id, "status", "queued"));
    *out = json_deep_copy(o);
    pthread_mutex_unlock(&F.mu);
    return 0;
}
static inline int f_job_estimate(void *ud, const json_t *body, json_t **out, api_error *e) {
    (void)ud;
    if (!json_object_get(body, "model")) return fake_err(e, 400, "missing_field", "model", "model: missing");
    *out = json_pack("{s:i,s:i,s:i,s:I,s:f,s:b}", "tokens", 1000, "steps", 10, "examples", 100,
                     "memory_bytes", (json_int_t)123456, "seconds", 2.5, "fits", 1);
    return 0;
}
static inline int f_job_list(void *ud, const api_page *pg, const char *status, json_t **out,
                             api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    json_t *arr = F.jobs;
    json_t *filtered = NULL;
    if (status) {
        filtered = json_array();
        size_t i;
        json_t *o;
        json_array_foreach(F.jobs, i, o)
            if (!strcmp(json_string_value(json_object_get(o, "status")), status))
                json_array_append(filtered, o);
        arr = filtered;
    }
    int rc = page_newest_first(arr, pg, out, e);
    json_decref(filtered);
    pthread_mutex_unlock(&F.mu);
    return rc;
}
static inline int f_job_get(void *ud, const char *id, json_t **out, api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    json_t *o = find_id(F.jobs, id, NULL);
    if (o) *out = json_deep_copy(o);
    pthread_mutex_unlock(&F.mu);
    return o ? 0 : fake_err(e, 404, "not_found", "fine_tuning_job_id", "no such job");
}
static inline void set_status(const char *id, const char *st) {
    pthread_mutex_lock(&F.mu);
    json_t *o = find_id(F.jobs, id, NULL);
    if (o) {
        json_object_set_new(o, "status", json_string(st));
        feed_push(id, "status", json_pack("{s:s,s:s}", "id", id, "status", st));
    }
    pthread_mutex_unlock(&F.mu);
}
static inline int final_status(const char *s) {
    return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}
static inline int f_job_action(void *ud, const char *id, const char *action, json_t **out,
                               api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    json_t *o = find_id(F.jobs, id, NULL);
    if (!o) {
        pthread_mutex_unlock(&F.mu);
        return fake_err(e, 404, "not_found", "fine_tuning_job_id", "no such job");
    }
    const char *st = json_string_value(json_object_get(o, "status"));
    const char *to = NULL;
    if (!strcmp(action, "cancel") && !final_status(st)) to = "cancelled";
    else if (!strcmp(action, "pause") && (!strcmp(st, "running") || !strcmp(st, "queued"))) to = "paused";
    else if (!strcmp(action, "resume") && !strcmp(st, "paused")) to = "queued";
    if (!to) {
        pthread_mutex_unlock(&F.mu);
        return api_error_set(e, 409, "conflict_error", "invalid_state", "",
                             "cannot %s a job that is %s", action, st);
    }
    json_object_set_new(o, "status", json_string(to));
    feed_push(id, "status", json_pack("{s:s,s:s}", "id", id, "status", to));
    *out = json_deep_copy(o);
    pthread_mutex_unlock(&F.mu);
    return 0;
}
static inline int f_job_events(void *ud, const char *id, const api_page *pg, json_t **out,
                               api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    if (!find_id(F.jobs, id, NULL)) {
        pthread_mutex_unlock(&F.mu);
        return fake_err(e, 404, "not_found", "fine_tuning_job_id", "no such job");
    }
    json_t *ev = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(F.feeds, id), i, it) {
        char eid[32];
        snprintf(eid, sizeof eid, "ftevent-%zu", i + 1);
        json_array_append_new(ev, json_pack("{s:s,s:s,s:s,s:s}", "object",
                                            "fine_tuning.job.event", "id", eid, "level", "info",
                                            "message", json_string_value(json_object_get(
                                                           json_object_get(it, "data"), "status"))
                                                           ? json_string_value(json_object_get(json_object_get(it, "data"), "status"))
                                                           : "event"));
    }
    int rc = page_newest_first(ev, pg, out, e);
    json_decref(ev);
    pthread_mutex_unlock(&F.mu);
    return rc;
}
static inline int f_job_metrics(void *ud, const char *id, const char *keys, long after_step,
                                long max_points, json_t **out, api_error *e) {
    (void)ud;
    json_t *j = NULL;
    if (f_job_get(ud, id, &j, e)) return -1;
    json_decref(j);
    json_t *data = json_array();
    for (int s = 1; s <= 10; s++) {
        if (s <= after_step) continue;
        json_t *m = json_pack("{s:f}", "loss", 2.0 / s);
        if (!keys || strstr(keys, "lr")) json_object_set_new(m, "lr", json_real(1e-3));
        json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "fine_tuning.job.metrics",
                                              "step", s, "metrics", m));
    }
    size_t total = json_array_size(data);
    if (max_points > 0 && total > (size_t)max_points) {
        json_t *d = json_array();
        for (long k = 0; k < max_points; k++)
            json_array_append(d, json_array_get(data, (size_t)(k * (long)(total - 1) / (max_points - 1))));
        json_decref(data);
        data = d;
    }
    *out = json_pack("{s:s,s:o,s:b,s:I}", "object", "list", "data", data, "has_more", 0,
                     "total_points", (json_int_t)total);
    return 0;
}
static inline int f_job_samples(void *ud, const char *id, long after_step, int limit, json_t **out,
                                api_error *e) {
    json_t *j = NULL;
    if (f_job_get(ud, id, &j, e)) return -1;
    json_decref(j);
    json_t *data = json_array();
    for (int s = 5; s <= 20 && (int)json_array_size(data) < limit; s += 5)
        if (s > after_step)
            json_array_append_new(data, json_pack("{s:s,s:i,s:s,s:s,s:f}", "object",
                                                  "fine_tuning.job.sample", "step", s, "prompt",
                                                  "1+1=", "completion", "2", "reward", 1.0));
    *out = json_pack("{s:s,s:o,s:b}", "object", "list", "data", data, "has_more", 0);
    return 0;
}
static inline int f_job_checkpoints(void *ud, const char *id, const api_page *pg, json_t **out,
                                    api_error *e) {
    (void)pg;
    json_t *j = NULL;
    if (f_job_get(ud, id, &j, e)) return -1;
    json_decref(j);
    char name[64];
    snprintf(name, sizeof name, "%s:10", id);
    *out = json_pack("{s:s,s:[{s:s,s:s,s:s,s:i}],s:b}", "object", "list", "data", "object",
                     "fine_tuning.job.checkpoint", "id", "ckpt-1", "fine_tuned_model_checkpoint",
                     name, "step_number", 10, "has_more", 0);
    return 0;
}
static inline int f_job_feed(void *ud, const char *id, int64_t after_seq, int max, int timeout_ms,
                             json_t **items, int *finished, api_error *e) {
    (void)ud;
    atomic_fetch_add(&F.feed_calls, 1);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&F.mu);
    for (;;) {
        json_t *job = find_id(F.jobs, id, NULL);
        if (!job) {
            pthread_mutex_unlock(&F.mu);
            return fake_err(e, 404, "not_found", "fine_tuning_job_id", "no such job");
        }
        json_t *feed = json_object_get(F.feeds, id);
        json_t *arr = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(feed, i, it)
            if (json_integer_value(json_object_get(it, "seq")) > after_seq &&
                (int)json_array_size(arr) < max)
                json_array_append_new(arr, json_deep_copy(it));
        json_int_t last = json_array_size(feed)
                              ? json_integer_value(json_object_get(json_array_get(feed, json_array_size(feed) - 1), "seq"))
                              : 0;
        json_int_t got = json_array_size(arr)
                             ? json_integer_value(json_object_get(json_array_get(arr, json_array_size(arr) - 1), "seq"))
                             : after_seq;
        int fin = final_status(json_string_value(json_object_get(job, "status"))) && got >= last;
        if (json_array_size(arr) || fin ||
            pthread_cond_timedwait(&F.cv, &F.mu, &dl) != 0) {
            *items = arr;
            *finished = fin;
            pthread_mutex_unlock(&F.mu);
            return 0;
        }
        json_decref(arr);
    }
}
static inline int f_model_list(void *ud, const api_page *pg, json_t **out, api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    int rc = page_newest_first(F.models, pg, out, e);
    pthread_mutex_unlock(&F.mu);
    return rc;
}
static inline int f_model_get(void *ud, const char *id, json_t **out, api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    json_t *o = find_id(F.models, id, NULL);
    if (o) *out = json_deep_copy(o);
    pthread_mutex_unlock(&F.mu);
    return o ? 0 : fake_err(e, 404, "model_not_found", "model", "no such model");
}
static inline int f_job_feed_last(void *ud, const char *id, int64_t *last, api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    json_t *job = find_id(F.jobs, id, NULL);
    json_t *feed = json_object_get(F.feeds, id);
    *last = (int64_t)json_array_size(feed); /* the fake's seqs are 1..n */
    pthread_mutex_unlock(&F.mu);
    return job ? 0 : fake_err(e, 404, "not_found", "fine_tuning_job_id", "no such job");
}
static inline int f_model_register(void *ud, const char *name, const char *real, json_t **out,
                                   api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    if (find_id(F.models, name, NULL)) {
        pthread_mutex_unlock(&F.mu);
        return api_error_set(e, 409, "conflict_error", "model_exists", "name", "name: taken");
    }
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:[]}", "object", "model", "id", name,
                          "created", (json_int_t)time(NULL), "owned_by", "alignd", "kind", "base",
                          "path", real, "in_use_by");
    json_array_append_new(F.models, o);
    *out = json_deep_copy(o);
    pthread_mutex_unlock(&F.mu);
    return 0;
}
static inline int f_model_delete(void *ud, const char *id, json_t **out, api_error *e) {
    (void)ud;
    pthread_mutex_lock(&F.mu);
    size_t at;
    json_t *o = find_id(F.models, id, &at);
    int rc = 0;
    if (!o) rc = fake_err(e, 404, "model_not_found", "model", "no such model");
    else if (json_array_size(json_object_get(o, "in_use_by")))
        rc = api_error_set(e, 409, "conflict_error", "model_in_use", "model", "in use by a job");
    else {
        json_array_remove(F.models, at);
        *out = json_pack("{s:s,s:s,s:b}", "id", id, "object", "model", "deleted", 1);
    }
    pthread_mutex_unlock(&F.mu);
    return rc;
}
static inline int f_model_path(void *ud, const char *id, char dir[API_PATH_MAX], api_error *e) {
    (void)ud;
    if (!strcmp(id, "tiny") || !strcmp(id, "ftjob-1:10")) {
        snprintf(dir, API_PATH_MAX, "%s", F.tiny_dir);
        return 0;
    }
    return fake_err(e, 404, "model_not_found", "model", "model: no such model");
}
static inline int f_stats(void *ud, json_t **out) {
    (void)ud;
    *out = json_pack("{s:{s:i,s:i},s:i,s:I,s:I,s:I,s:i,s:i}", "jobs_by_status", "queued", 2,
                     "running", 1, "queue_depth", 2, "steps_total", (json_int_t)1234,
                     "tokens_total", (json_int_t)567890, "model_memory_bytes", (json_int_t)4096,
                     "workers", 2, "workers_busy", 1);
    return 0;
}

static inline api_backend fake_backend(void) {
    api_backend b = {0};
    b.ready = f_ready;
    b.auth_required = f_auth_required;
    b.auth_check = f_auth_check;
    b.file_create = f_file_create;
    b.file_list = f_file_list;
    b.file_get = f_file_get;
    b.file_path = f_file_path;
    b.file_delete = f_file_delete;
    b.job_create = f_job_create;
    b.job_estimate = f_job_estimate;
    b.job_list = f_job_list;
    b.job_get = f_job_get;
    b.job_action = f_job_action;
    b.job_events = f_job_events;
    b.job_metrics = f_job_metrics;
    b.job_samples = f_job_samples;
    b.job_checkpoints = f_job_checkpoints;
    b.job_feed = f_job_feed;
    b.job_feed_last = f_job_feed_last;
    b.model_list = f_model_list;
    b.model_get = f_model_get;
    b.model_register = f_model_register;
    b.model_delete = f_model_delete;
    b.model_path = f_model_path;
    b.stats = f_stats;
    return b;
}

/* Empty lists and a ready backend, files kept under tmp. */
static inline void fake_init(const char *tmp) {
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
    F.files = json_array();
    F.jobs = json_array();
    F.feeds = json_object();
    F.models = json_array();
    F.ready = 1;
    snprintf(F.tmp, sizeof F.tmp, "%s", tmp);
}

static inline void fake_deinit(void) {
    json_decref(F.files);
    json_decref(F.jobs);
    json_decref(F.feeds);
    json_decref(F.models);
    pthread_cond_destroy(&F.cv);
    pthread_mutex_destroy(&F.mu);
}

#endif

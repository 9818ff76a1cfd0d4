/* The API's objects made of the store's rows (see objects.h). */
#define _XOPEN_SOURCE 700
#include "objects.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/ids.h"

/* ---- values ------------------------------------------------------------------------ */

static json_t *str_or_null(const char *t) { return t ? json_string(t) : json_null(); }

/* A JSON column's value; null where it is NULL or not an object or array. */
static json_t *json_col(const char *t) {
    json_t *v = t ? json_loads(t, 0, NULL) : NULL;
    return v ? v : json_null();
}

/* A number that may be missing (NAN); json_real refuses the infinities,
 * so a key given one is left out, as jansson always did here. */
static json_t *real_or_null(double x) { return isnan(x) ? json_null() : json_real(x); }

/* ---- files, events, samples, checkpoints ------------------------------------------ */

json_t *objects_file(const store_file_row *f) {
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("file"));
    json_object_set_new(o, "id", json_string(api_id(API_ID_FILE, f->id).s));
    json_object_set_new(o, "bytes", json_integer(f->bytes));
    json_object_set_new(o, "created_at", json_integer(f->created_at));
    json_object_set_new(o, "filename", str_or_null(f->filename));
    json_object_set_new(o, "purpose", str_or_null(f->purpose));
    json_object_set_new(o, "status", str_or_null(f->status));
    json_object_set_new(o, "status_details", str_or_null(f->status_details));
    json_object_set_new(o, "sha256", str_or_null(f->sha256));
    json_object_set_new(o, "validation", json_col(f->validation));
    if (f->job_id > 0) json_object_set_new(o, "fine_tuning_job_id", json_string(api_id(API_ID_JOB, f->job_id).s));
    return o;
}

json_t *objects_event(const store_event_row *e) {
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("fine_tuning.job.event"));
    json_object_set_new(o, "id", json_string(api_id(API_ID_EVENT, e->id).s));
    json_object_set_new(o, "created_at", json_integer(e->created_at));
    json_object_set_new(o, "level", str_or_null(e->level));
    json_object_set_new(o, "message", str_or_null(e->message));
    json_object_set_new(o, "type", str_or_null(e->type));
    json_object_set_new(o, "data", json_col(e->data));
    return o;
}

/* {name: value} of a step's metrics. */
static json_t *metric_map(const store_metric *m, int n) {
    json_t *o = json_object();
    for (int i = 0; i < n; i++)
        if (m[i].name) json_object_set_new(o, m[i].name, real_or_null(m[i].value));
    return o;
}

json_t *objects_metrics(const store_metrics_row *m) {
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("fine_tuning.job.metrics"));
    json_object_set_new(o, "step", json_integer(m->step));
    json_object_set_new(o, "epoch", json_real(m->epoch));
    json_object_set_new(o, "created_at", json_integer(m->created_at));
    json_object_set_new(o, "metrics", metric_map(m->m, m->n));
    return o;
}

json_t *objects_sample(const store_sample_row *s) {
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("fine_tuning.job.sample"));
    json_object_set_new(o, "step", json_integer(s->step));
    json_object_set_new(o, "created_at", json_integer(s->created_at));
    json_object_set_new(o, "prompt", str_or_null(s->prompt));
    json_object_set_new(o, "completion", str_or_null(s->completion));
    json_object_set_new(o, "reward", real_or_null(s->reward));
    return o;
}

json_t *objects_checkpoint(const store_checkpoint_row *c) {
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("fine_tuning.job.checkpoint"));
    json_object_set_new(o, "id", json_string(api_id(API_ID_CHECKPOINT, c->id).s));
    json_object_set_new(o, "created_at", json_integer(c->created_at));
    json_object_set_new(o, "fine_tuning_job_id", json_string(api_id(API_ID_JOB, c->job_id).s));
    json_object_set_new(o, "fine_tuned_model_checkpoint", json_string(api_checkpoint_name(c->job_id, c->step).s));
    json_object_set_new(o, "step_number", json_integer(c->step));
    json_t *m = json_col(c->metrics);
    json_object_set_new(o, "metrics", json_is_object(m) ? m : (json_decref(m), json_object()));
    return o;
}

static int is(const char *a, const char *b) { return a && !strcmp(a, b); }

/* The model a result measures: model_b's name; the job's model at step 0
 * and in evaluate jobs; the fine-tune at the final step of a job that
 * succeeded; a checkpoint name otherwise. */
json_t *objects_eval_result(const store_eval_row *r) {
    json_t *o = json_col(r->result);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    const char *name;
    if (is(r->role, "model_b")) name = r->job_model_b;
    else if (r->step == 0 || is(r->job_method, "evaluate")) name = r->job_model;
    else if (r->job_fine_tuned_model && is(r->job_status, "succeeded") && r->step == r->job_step)
        name = r->job_fine_tuned_model;
    else name = api_checkpoint_name(r->job_id, r->step).s;
    json_object_set_new(o, "object", json_string("fine_tuning.job.eval_result"));
    json_object_set_new(o, "step", json_integer(r->step));
    json_object_set_new(o, "role", json_string(r->role ? r->role : "model"));
    json_object_set_new(o, "model", json_string(name ? name : ""));
    json_object_set_new(o, "created_at", json_integer(r->created_at));
    return o;
}

/* ---- jobs ----------------------------------------------------------------------------- */

static json_t *time_or_null(int64_t t) { return t ? json_integer(t) : json_null(); }

static json_t *job_progress(const store_job_row *j) {
    json_t *p = json_object();
    json_object_set_new(p, "step", json_integer(j->step));
    json_object_set_new(p, "total_steps", json_integer(j->total_steps));
    json_object_set_new(p, "epoch", json_real(j->epoch));
    json_object_set_new(p, "percentage", json_real(j->total_steps > 0 ? round(1000.0 * (double)j->step /
                                                                              (double)j->total_steps) / 10.0
                                                                      : 0));
    json_object_set_new(p, "elapsed_s", json_real(round(j->elapsed_s * 10) / 10));
    json_object_set_new(p, "remaining_s", isnan(j->remaining_s) ? json_null() : json_real(round(j->remaining_s * 10) / 10));
    json_object_set_new(p, "tokens_per_second", json_real(j->tokens_per_second));
    return p;
}

json_t *objects_job(const store_job_row *j) {
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("fine_tuning.job"));
    json_object_set_new(o, "id", json_string(api_id(API_ID_JOB, j->id).s));
    json_object_set_new(o, "created_at", time_or_null(j->created_at));
    json_object_set_new(o, "started_at", time_or_null(j->started_at));
    json_object_set_new(o, "finished_at", time_or_null(j->finished_at));
    json_object_set_new(o, "model", str_or_null(j->model));
    json_object_set_new(o, "fine_tuned_model", str_or_null(j->fine_tuned_model));
    json_object_set_new(o, "suffix", str_or_null(j->suffix));
    json_object_set_new(o, "method", str_or_null(j->method));
    json_object_set_new(o, "status", json_string(j->status));
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "training_file", str_or_null(j->training_file));
    json_object_set_new(o, "validation_file", str_or_null(j->validation_file));
    json_object_set_new(o, "task", json_col(j->task));
    json_object_set_new(o, "hyperparameters", json_col(j->hyperparameters));
    json_object_set_new(o, "seed", json_integer(j->seed));
    json_object_set_new(o, "metadata", json_col(j->metadata));
    json_object_set_new(o, "progress", job_progress(j));
    json_object_set_new(o, "trained_tokens", json_integer((json_int_t)j->trained_tokens));
    json_object_set_new(o, "estimated_finish", !isnan(j->remaining_s) && !strcmp(j->status, "running")
                                                   ? json_integer((int64_t)time(NULL) + (int64_t)j->remaining_s)
                                                   : json_null());
    if (j->error_code) {
        json_t *e = json_object();
        json_object_set_new(e, "code", json_string(j->error_code));
        json_object_set_new(e, "message", str_or_null(j->error_message));
        json_object_set_new(e, "param", str_or_null(j->error_param));
        json_object_set_new(o, "error", e);
    } else {
        json_object_set_new(o, "error", json_null());
    }
    json_object_set_new(o, "from_checkpoint", str_or_null(j->from_checkpoint));
    if (j->training_files) json_object_set_new(o, "training_files", json_col(j->training_files));
    if (j->chat_template) json_object_set_new(o, "chat_template", json_string(j->chat_template));
    /* the ranks it runs as (1: in the daemon) */
    json_t *res = json_object();
    json_object_set_new(res, "processes", json_integer(j->processes > 0 ? j->processes : 1));
    if (j->threads_per_process >= 0) json_object_set_new(res, "threads_per_process", json_integer(j->threads_per_process));
    json_object_set_new(o, "resources", res);
    if (j->distributed) json_object_set_new(o, "distributed", json_col(j->distributed));
    json_object_set_new(o, "queue_position", j->queue_position ? json_integer(j->queue_position) : json_null());
    json_t *rf = json_array();
    for (int i = 0; i < j->n_result_files; i++)
        json_array_append_new(rf, json_string(api_id(API_ID_FILE, j->result_files[i]).s));
    json_object_set_new(o, "result_files", rf);
    json_object_set_new(o, "latest_metrics",
                        j->has_latest_metrics ? metric_map(j->latest_metrics, j->n_latest_metrics) : json_null());
    json_t *ev = json_array();
    for (int i = 0; i < j->n_evals; i++) {
        json_t *r = objects_eval_result(&j->evals[i]);
        if (r) json_array_append_new(ev, r);
    }
    json_object_set_new(o, "eval_results", ev);
    return o;
}

/* ---- models -------------------------------------------------------------------------- */

json_t *objects_model(const store_model_row *row) {
    const store_model *m = &row->m;
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("model"));
    json_object_set_new(o, "id", json_string(m->name));
    json_object_set_new(o, "created", json_integer(m->created_at));
    json_object_set_new(o, "owned_by", json_string(m->owned_by));
    json_object_set_new(o, "kind", json_string(m->kind));
    json_object_set_new(o, "base_model", m->base[0] ? json_string(m->base) : json_null());
    json_object_set_new(o, "architecture", json_string(m->arch));
    json_object_set_new(o, "parameters", json_integer(m->params));
    json_object_set_new(o, "has_score_head", json_boolean(m->has_score));
    /* family, dtype, context_length, chat_template; then where it came from */
    json_t *info = m->info[0] ? json_loads(m->info, 0, NULL) : NULL;
    const char *keys[] = {"family", "dtype", "context_length", "chat_template"};
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(info, keys[i]);
        /* v is borrowed from info (a new reference for o); the fallbacks are new */
        json_object_set_new(o, keys[i], v ? json_incref(v) : i == 0 ? json_string(m->arch) : json_null());
    }
    json_decref(info);
    json_t *src = m->source[0] ? json_loads(m->source, 0, NULL) : NULL;
    if (!src) src = m->job_id ? json_pack("{s:s,s:s}", "type", "fine_tune", "job", m->owned_by)
                              : json_pack("{s:s}", "type", "folder");
    json_object_set_new(o, "source", src);
    json_object_set_new(o, "status", json_string(m->status[0] ? m->status : "ready"));
    json_t *err = m->error[0] ? json_loads(m->error, 0, NULL) : NULL;
    json_object_set_new(o, "error", err ? err : json_null());
    json_t *users = json_array();
    for (int i = 0; i < row->n_users; i++) json_array_append_new(users, json_string(api_id(API_ID_JOB, row->users[i]).s));
    json_object_set_new(o, "in_use_by", users);
    return o;
}

/* ---- lists, feed, stats ---------------------------------------------------------------- */

json_t *objects_list(json_t *data, int has_more) {
    json_t *o = json_object();
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : NULL;
    json_object_set_new(o, "object", json_string("list"));
    json_object_set(o, "first_id", first ? first : json_null());
    json_object_set(o, "last_id", last ? last : json_null());
    json_object_set_new(o, "data", data);
    json_object_set_new(o, "has_more", json_boolean(has_more));
    return o;
}

/* One list of rows, each made by make (NULL: left out). */
static json_t *rows_list(const store_rows *r, size_t row_size, json_t *(*make)(const void *row)) {
    json_t *data = json_array();
    for (int i = 0; i < r->n; i++) {
        json_t *o = make((const char *)r->v + (size_t)i * row_size);
        if (o) json_array_append_new(data, o);
    }
    return objects_list(data, r->more);
}

static json_t *file_of(const void *row) { return objects_file(row); }
static json_t *job_of(const void *row) { return objects_job(row); }
static json_t *event_of(const void *row) { return objects_event(row); }
static json_t *sample_of(const void *row) { return objects_sample(row); }
static json_t *checkpoint_of(const void *row) { return objects_checkpoint(row); }
static json_t *model_of(const void *row) { return objects_model(row); }

json_t *objects_file_list(const store_rows *r) { return rows_list(r, sizeof(store_file_row), file_of); }
json_t *objects_job_list(const store_rows *r) { return rows_list(r, sizeof(store_job_row), job_of); }
json_t *objects_event_list(const store_rows *r) { return rows_list(r, sizeof(store_event_row), event_of); }
json_t *objects_sample_list(const store_rows *r) { return rows_list(r, sizeof(store_sample_row), sample_of); }
json_t *objects_checkpoint_list(const store_rows *r) {
    return rows_list(r, sizeof(store_checkpoint_row), checkpoint_of);
}
json_t *objects_model_list(const store_rows *r) { return rows_list(r, sizeof(store_model_row), model_of); }

json_t *objects_eval_list(const store_rows *r) {
    json_t *data = json_array();
    const store_eval_row *rows = r->v;
    for (int i = 0; i < r->n; i++) {
        json_t *o = objects_eval_result(&rows[i]);
        if (o) json_array_append_new(data, o);
    }
    return json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", 0);
}

json_t *objects_deleted(const char *id, const char *object) {
    return json_pack("{s:s, s:s, s:b}", "id", id, "object", object, "deleted", 1);
}

json_t *objects_metrics_list(const store_rows *r, long max_points) {
    const store_metrics_row *rows = r->v;
    size_t total = (size_t)r->n;
    json_t *data = json_array();
    if (max_points > 0 && total > (size_t)max_points) {
        for (long i = 0; i < max_points; i++) {
            size_t k = max_points == 1 ? total - 1
                                       : (size_t)llround((double)i * (double)(total - 1) / (double)(max_points - 1));
            json_array_append_new(data, objects_metrics(&rows[k]));
        }
    } else {
        for (size_t i = 0; i < total; i++) json_array_append_new(data, objects_metrics(&rows[i]));
    }
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    json_object_set_new(o, "has_more", json_false());
    json_object_set_new(o, "first_id", json_null());
    json_object_set_new(o, "last_id", json_null());
    json_object_set_new(o, "total_points", json_integer((json_int_t)total));
    return o;
}

json_t *objects_feed(const store_rows *items, const store_job_row *job) {
    static const char *const kinds[] = {[STORE_FEED_EVENT] = "event", [STORE_FEED_METRICS] = "metrics",
                                        [STORE_FEED_SAMPLE] = "sample", [STORE_FEED_STATUS] = "status"};
    json_t *out = json_array();
    const store_feed_item *it = items->v;
    for (int i = 0; i < items->n; i++) {
        json_t *data;
        switch (it[i].kind) {
        case STORE_FEED_EVENT: data = objects_event(it[i].event); break;
        case STORE_FEED_METRICS: data = objects_metrics(it[i].metrics); break;
        case STORE_FEED_SAMPLE: data = objects_sample(it[i].sample); break;
        default:
            /* the job as it is now, with the status of this change */
            data = job ? objects_job(job) : NULL;
            if (data) json_object_set_new(data, "status", str_or_null(it[i].status));
            else data = str_or_null(it[i].status);
        }
        json_t *item = json_object();
        json_object_set_new(item, "seq", json_integer(it[i].seq));
        json_object_set_new(item, "event", json_string(kinds[it[i].kind]));
        json_object_set_new(item, "data", data);
        json_array_append_new(out, item);
    }
    return out;
}

json_t *objects_stats(const store_stats *s) {
    json_t *o = json_object(), *by = json_object();
    for (int i = 0; i < STORE_N_STATUSES; i++) json_object_set_new(by, store_statuses[i], json_integer(s->jobs[i]));
    json_object_set_new(o, "jobs_by_status", by);
    json_object_set(o, "queue_depth", json_object_get(by, "queued"));
    json_object_set_new(o, "steps_total", json_integer(s->steps_total));
    json_object_set_new(o, "tokens_total", json_integer(s->tokens_total));
    return o;
}

json_t *objects_estimate(const al_estimate *est, int64_t budget) {
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("fine_tuning.job.estimate"));
    json_object_set_new(o, "examples", json_integer(est->examples));
    json_object_set_new(o, "tokens", json_integer((json_int_t)est->tokens));
    json_object_set_new(o, "steps", json_integer(est->steps));
    json_object_set_new(o, "parameters", json_integer((json_int_t)est->parameters));
    json_object_set_new(o, "trainable_parameters", json_integer((json_int_t)est->trainable_parameters));
    json_object_set_new(o, "memory_bytes", json_integer((json_int_t)est->memory_bytes));
    json_object_set_new(o, "memory_budget_bytes", json_integer(budget));
    json_object_set_new(o, "seconds", json_real(est->seconds));
    json_object_set_new(o, "seconds_per_step", json_real(est->seconds_per_step));
    json_object_set_new(o, "max_sequence_tokens", json_integer(est->max_seq));
    json_object_set_new(o, "fits", json_boolean((int64_t)est->memory_bytes <= budget));
    return o;
}

json_t *objects_model_event(int64_t seq, const json_t *created_at, const char *type, const json_t *data) {
    return json_pack("{s:s,s:s,s:O,s:s,s:O}", "object", "model.event", "id", api_id(API_ID_MODEL_EVENT, seq).s,
                     "created_at", created_at, "type", type, "data", data);
}

json_t *objects_model_event_list(json_t *data, int has_more) {
    size_t n = json_array_size(data);
    return json_pack("{s:s,s:o,s:b,s:o,s:o}", "object", "list", "data", data, "has_more", has_more, "first_id",
                     n ? json_incref(json_object_get(json_array_get(data, 0), "id")) : json_null(), "last_id",
                     n ? json_incref(json_object_get(json_array_get(data, n - 1), "id")) : json_null());
}

json_t *objects_hub_progress(const hub_progress *p) {
    double pct = p->total > 0 ? 100.0 * (double)p->done / (double)p->total : 0;
    return json_pack("{s:I,s:I,s:i,s:i,s:o,s:f}", "bytes", (json_int_t)p->done, "total_bytes", (json_int_t)p->total,
                     "files", p->files_done, "files_total", p->files_total, "file",
                     p->file && p->file[0] ? json_string(p->file) : json_null(), "percentage", pct);
}

/* ---- one row ---------------------------------------------------------------------- */

json_t *objects_file_get(store *s, int64_t id) {
    store_rows r;
    if (store_file_read(s, id, &r)) return NULL;
    json_t *o = objects_file(r.v);
    store_rows_free(&r);
    return o;
}

json_t *objects_job_get(store *s, int64_t id) {
    store_rows r;
    if (store_job_read(s, id, &r)) return NULL;
    json_t *o = objects_job(r.v);
    store_rows_free(&r);
    return o;
}

json_t *objects_model_get(store *s, const char *name) {
    store_rows r;
    if (store_model_read(s, name, &r)) return NULL;
    json_t *o = objects_model(r.v);
    store_rows_free(&r);
    return o;
}

/* ---- the serialized job list ------------------------------------------------------------ */

/* The serialized objects of final jobs, which no longer change (a job list
 * is mostly them, and building a job object and its JSON costs far more
 * than reading its row): slot id % CACHE_SLOTS, each valid while the
 * store's objects epoch is the one it was built in. */
#define CACHE_SLOTS 1024
typedef struct cache_slot {
    int64_t id;
    uint64_t epoch;
    char *text;
} cache_slot;

struct objects_cache {
    pthread_mutex_t mu;
    const store *st;          /* the store the texts came from */
    cache_slot slot[CACHE_SLOTS];
};

objects_cache *objects_cache_new(void) {
    objects_cache *c = calloc(1, sizeof *c);
    if (c) pthread_mutex_init(&c->mu, NULL);
    return c;
}

void objects_cache_free(objects_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SLOTS; i++) free(c->slot[i].text);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* A copy of job id's cached text (NULL when none is current); locked. */
static char *cache_get(objects_cache *c, store *s, int64_t id, uint64_t epoch) {
    if (!c) return NULL;
    cache_slot *e = &c->slot[(uint64_t)id % CACHE_SLOTS];
    pthread_mutex_lock(&c->mu);
    char *t = c->st == s && e->text && e->id == id && e->epoch == epoch ? strdup(e->text) : NULL;
    pthread_mutex_unlock(&c->mu);
    return t;
}

static void cache_put(objects_cache *c, store *s, int64_t id, uint64_t epoch, const char *text) {
    char *t = c ? strdup(text) : NULL;
    if (!t) return;
    cache_slot *e = &c->slot[(uint64_t)id % CACHE_SLOTS];
    pthread_mutex_lock(&c->mu);
    if (c->st != s) {
        /* another store (tests open several): its ids are other jobs */
        for (int i = 0; i < CACHE_SLOTS; i++) {
            free(c->slot[i].text);
            c->slot[i].text = NULL;
        }
        c->st = s;
    }
    free(e->text);
    e->id = id;
    e->epoch = epoch;
    e->text = t;
    pthread_mutex_unlock(&c->mu);
}

typedef struct page_ctx {
    objects_cache *c;
    store *s;
    uint64_t epoch;
    int64_t *ids;   /* the ids asked about, in order, */
    char **texts;   /* and their cached texts (NULL: none) */
    int n, cap;
} page_ctx;

/* store_job_page's question: read this job's row? Not when its text is cached. */
static int want_row(void *ud, int64_t id) {
    page_ctx *p = ud;
    if (p->n == p->cap) return 1;
    char *t = cache_get(p->c, p->s, id, p->epoch);
    p->ids[p->n] = id;
    p->texts[p->n++] = t;
    return t == NULL;
}

/* The cached text of job id that want_row took (handed over), or NULL. */
static char *page_take(page_ctx *p, int64_t id) {
    for (int k = 0; k < p->n; k++)
        if (p->ids[k] == id && p->texts[k]) {
            char *t = p->texts[k];
            p->texts[k] = NULL;
            return t;
        }
    return NULL;
}

int objects_jobs_text(objects_cache *c, store *s, int64_t after, int limit, const char *status, char **out,
                      size_t *len) {
    page_ctx p = {.c = c, .s = s, .epoch = store_objects_epoch(s), .cap = limit + 1};
    p.ids = calloc((size_t)p.cap, sizeof *p.ids);
    p.texts = calloc((size_t)p.cap, sizeof *p.texts);
    store_rows r;
    memset(&r, 0, sizeof r);
    int rc = p.ids && p.texts ? store_job_page(s, after, limit, status, want_row, &p, &r) : STORE_EIO;
    const store_job_row *rows = r.v;
    char **texts = rc ? NULL : calloc((size_t)(r.n ? r.n : 1), sizeof *texts);
    size_t total = 160;
    int ok = texts != NULL;
    for (int i = 0; ok && i < r.n; i++) {
        if (!rows[i].loaded) {
            texts[i] = page_take(&p, rows[i].id);
        } else {
            json_t *o = objects_job(&rows[i]);
            texts[i] = o ? json_dumps(o, OBJECTS_DUMP_FLAGS) : NULL;
            if (texts[i] && store_status_final(rows[i].status)) cache_put(c, s, rows[i].id, p.epoch, texts[i]);
            json_decref(o);
        }
        if (!texts[i]) ok = 0;
        else total += strlen(texts[i]) + 1;
    }
    char *b = ok ? malloc(total) : NULL;
    size_t o = 0;
    if (b) {
        char first[64] = "null", last[64] = "null";
        if (r.n) {
            snprintf(first, sizeof first, "\"%s\"", api_id(API_ID_JOB, rows[0].id).s);
            snprintf(last, sizeof last, "\"%s\"", api_id(API_ID_JOB, rows[r.n - 1].id).s);
        }
        /* the order objects_list gives, so both paths answer the same bytes */
        o += (size_t)snprintf(b, total, "{\"object\":\"list\",\"first_id\":%s,\"last_id\":%s,\"data\":[", first, last);
        for (int i = 0; i < r.n; i++) {
            size_t l = strlen(texts[i]);
            if (i) b[o++] = ',';
            memcpy(b + o, texts[i], l);
            o += l;
        }
        o += (size_t)snprintf(b + o, total - o, "],\"has_more\":%s}\n", r.more ? "true" : "false");
    }
    for (int i = 0; texts && i < r.n; i++) free(texts[i]);
    free(texts);
    for (int i = 0; p.texts && i < p.n; i++) free(p.texts[i]);
    free(p.texts);
    free(p.ids);
    store_rows_free(&r);
    if (rc) return rc;
    if (!b) return STORE_EIO;
    *out = b;
    *len = o;
    return STORE_OK;
}

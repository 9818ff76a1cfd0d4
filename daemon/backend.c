/* The daemon's api_backend (see backend.h and api/backend.h). */
#define _XOPEN_SOURCE 700
#include "backend.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/ids.h"
#include "io.h"
#include "log.h"
#include "model/hfcache.h"
#include "models.h"
#include "objects.h"
#include "tasks/tasks.h"
#include "text/dataset.h"
#include "train/bench.h"
#include "train/estimate.h"
#include "train/job.h"

#define INVALID "invalid_request_error"

static int not_found(api_error *e, const char *what, const char *id) {
    return api_error_set(e, 404, "not_found_error", "not_found", "", "No %s found with id '%s'", what, id);
}

static int server_error(api_error *e, const char *what) {
    return api_error_set(e, 500, "server_error", "internal_error", "", "%s failed; see the daemon's log", what);
}

/* "ftjob-1, ftjob-2": the jobs in a refusal's message, as many as fit in
 * about 200 characters. Returns out. */
static const char *job_ids_text(const int64_t *ids, int n, char out[256]) {
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n && len < 200; i++)
        len += (size_t)snprintf(out + len, 256 - len, "%s%s", i ? ", " : "", api_id(API_ID_JOB, ids[i]).s);
    return out;
}

static int64_t page_after(const api_page *pg, api_id_kind kind) {
    return pg && pg->after ? api_id_parse(kind, pg->after) : 0;
}

static int page_limit(const api_page *pg) { return pg && pg->limit > 0 ? pg->limit : 20; }

/* ---- readiness and keys -------------------------------------------------------- */

static int be_ready(void *ud, char why[AL_ERRLEN]) {
    backend_ctx *c = ud;
    if (!c->st) {
        snprintf(why, AL_ERRLEN, "database not open");
        return 0;
    }
    if (!c->sc) {
        snprintf(why, AL_ERRLEN, "workers not started");
        return 0;
    }
    if (atomic_load(&c->draining)) {
        snprintf(why, AL_ERRLEN, "shutting down");
        return 0;
    }
    why[0] = 0;
    return 1;
}

static int be_auth_required(void *ud) { return store_key_count(((backend_ctx *)ud)->st) > 0; }

static int be_auth_check(void *ud, const char *key, int *read_only) {
    unsigned char h[32];
    if (!key || store_sha256(key, strlen(key), h)) return 0;
    return store_key_check(((backend_ctx *)ud)->st, h, read_only);
}

/* ---- files ---------------------------------------------------------------------- */

/* A benchmark file (purpose "evals", lib/train/bench.h): validated as
 * multiple-choice or generative rows, each bad row reported by line. */
static int file_create_evals(backend_ctx *c, const char *filename, const void *data, size_t len, json_t **out,
                             api_error *e) {
    json_t *rep = NULL;
    char err[AL_ERRLEN];
    if (al_bench_check_mem(data, len, &rep, err))
        return api_error_set(e, 400, INVALID, "file_invalid", "file", "The file is not a benchmark file: %s", err);
    long bad = (long)json_integer_value(json_object_get(rep, "n_errors"));
    long rows = (long)json_integer_value(json_object_get(rep, "rows"));
    const char *first = json_string_value(json_object_get(json_array_get(json_object_get(rep, "errors"), 0), "message"));
    if (bad == rows) {
        api_error_set(e, 400, INVALID, "file_invalid", "file", "The file is not a benchmark file: %s",
                      first ? first : "no rows");
        json_decref(rep);
        return -1;
    }
    char details[600] = "";
    if (bad) snprintf(details, sizeof details, "%ld of %ld rows are invalid; first: %s", bad, rows, first ? first : "");
    int64_t id;
    char serr[AL_ERRLEN];
    const char *status = bad ? "error" : "processed";
    int rc = store_file_add(c->st, filename, "evals", data, len, status, details[0] ? details : NULL, rep, 0, &id, serr);
    json_decref(rep);
    if (rc) return api_error_set(e, 500, "server_error", "storage_error", "", "Storing the file failed: %s", serr);
    log_info("event=file_created id=%s bytes=%zu status=%s purpose=evals", api_id(API_ID_FILE, id).s, len, status);
    *out = objects_file_get(c->st, id);
    return *out ? 0 : server_error(e, "Reading the file back");
}

static int be_file_create(void *ud, const char *filename, const char *purpose, const json_t *dataset_info,
                          const void *data, size_t len, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    if (!filename || !*filename) filename = "upload.jsonl";
    if (!purpose || !*purpose) return api_error_set(e, 400, INVALID, "missing_field", "purpose", "purpose is required");
    if (strlen(purpose) > 64 || strlen(filename) > 255)
        return api_error_set(e, 400, INVALID, "invalid_value", strlen(purpose) > 64 ? "purpose" : "filename",
                             "%s is too long", strlen(purpose) > 64 ? "purpose" : "filename");
    if (len == 0) return api_error_set(e, 400, INVALID, "file_invalid", "file", "The file is empty");
    al_dataset_info di;
    char err[AL_ERRLEN];
    if (dataset_info) {
        if (strcmp(purpose, "fine-tune"))
            return api_error_set(e, 400, INVALID, "invalid_value", "dataset_info",
                                 "dataset_info: describes a fine-tune file's rows, not an %s file", purpose);
        al_error ae;
        if (al_dataset_info_parse(dataset_info, "dataset_info", &di, &ae))
            return api_error_set(e, 400, INVALID, "invalid_value", ae.field, "%s", ae.msg);
    }
    if (!strcmp(purpose, "evals")) return file_create_evals(c, filename, data, len, out, e);
    al_dataset *ds = NULL;
    al_data_opts o = {.dataset_info = dataset_info ? &di : NULL};
    int rc = al_dataset_read_mem(data, len, NULL, &o, &ds, err);
    if (rc) return api_error_set(e, 400, INVALID, "file_invalid", "file", "The file could not be read: %s", err);
    const json_t *rep = al_dataset_report(ds);
    const json_t *errs = json_object_get(rep, "errors");
    if (ds->valid_rows == 0) {
        /* not a dataset at all: refuse, naming the first bad line */
        const char *m = json_string_value(json_object_get(json_array_get(errs, 0), "message"));
        api_error_set(e, 400, INVALID, "file_invalid", "file",
                      "The file is not a valid dataset (JSONL, a JSON array, CSV or TSV): %s",
                      m ? m : (ds->fatal[0] ? ds->fatal : "no rows"));
        al_dataset_free(ds);
        return -1;
    }
    char details[600] = "";
    const char *status = "processed";
    if (ds->n_errors > 0) {
        const json_t *first = json_array_get(errs, 0);
        snprintf(details, sizeof details, "%d of %d lines are invalid; first: %s (%s)", ds->n_errors, ds->rows,
                 json_string_value(json_object_get(first, "message")),
                 json_string_value(json_object_get(first, "code")));
        status = "error";
    } else if (ds->fatal[0]) {
        snprintf(details, sizeof details, "%s", ds->fatal);
        status = "error";
    }
    int64_t id;
    char serr[AL_ERRLEN];
    rc = store_file_add(c->st, filename, purpose, data, len, status, details[0] ? details : NULL, rep, 0, &id, serr);
    al_dataset_free(ds);
    if (rc) return api_error_set(e, 500, "server_error", "storage_error", "", "Storing the file failed: %s", serr);
    log_info("event=file_created id=%s bytes=%zu status=%s", api_id(API_ID_FILE, id).s, len, status);
    *out = objects_file_get(c->st, id);
    return *out ? 0 : server_error(e, "Reading the file back");
}

static int be_file_list(void *ud, const api_page *pg, const char *purpose, json_t **out, api_error *e) {
    store_rows r;
    if (store_file_page(((backend_ctx *)ud)->st, page_after(pg, API_ID_FILE), page_limit(pg), purpose, &r))
        return server_error(e, "Listing the files");
    *out = objects_file_list(&r);
    store_rows_free(&r);
    return 0;
}

static int be_file_get(void *ud, const char *id, json_t **out, api_error *e) {
    int64_t n = api_id_parse(API_ID_FILE, id);
    json_t *o = n ? objects_file_get(((backend_ctx *)ud)->st, n) : NULL;
    if (!o) return not_found(e, "file", id);
    *out = o;
    return 0;
}

static int be_file_path(void *ud, const char *id, char path[API_PATH_MAX], api_error *e) {
    int64_t n = api_id_parse(API_ID_FILE, id);
    char st[32];
    if (!n || store_file_info(((backend_ctx *)ud)->st, n, st, path)) return not_found(e, "file", id);
    return 0;
}

static int be_file_delete(void *ud, const char *id, json_t **out, api_error *e) {
    int64_t n = api_id_parse(API_ID_FILE, id), user = 0;
    int rc = n ? store_file_delete(((backend_ctx *)ud)->st, n, &user) : STORE_ENOTFOUND;
    if (rc == STORE_ENOTFOUND) return not_found(e, "file", id);
    if (rc == STORE_EINUSE)
        return api_error_set(e, 409, "conflict_error", "file_in_use", "", "File %s is used by %s", id,
                             api_id(API_ID_JOB, user).s);
    if (rc) return server_error(e, "Deleting the file");
    *out = objects_deleted(id, "file");
    return 0;
}

/* ---- resolving names ------------------------------------------------------------ */

/* A model reference (name, ftjob-<n>, ftjob-<n>:<step>) to a folder. */
static int resolve_model(backend_ctx *c, const char *ref, const char *param, char path[STORE_PATH],
                         api_error *e) {
    store_model m;
    if (store_model_get(c->st, ref, &m) == STORE_OK) {
        if (!strcmp(m.status, "downloading") || !strcmp(m.status, "failed")) {
            if (c->hub && !strcmp(m.status, "downloading")) return hubmodels_resolve(c->hub, ref, param, path, e);
            json_t *err = json_loads(m.error, 0, NULL);
            api_error_set(e, 422, INVALID, "model_unusable", param, "%s: %s: the download failed: %s", param, ref,
                          json_string_value(json_object_get(err, "message")) ? json_string_value(json_object_get(err, "message")) : "?");
            json_decref(err);
            return -1;
        }
        snprintf(path, STORE_PATH, "%s", m.path);
        return 0;
    }
    if (c->hub && al_hf_looks_like_ref(ref)) return hubmodels_resolve(c->hub, ref, param, path, e);
    int64_t n;
    long step;
    int ref_kind = api_job_ref_parse(ref, &n, &step);
    if (ref_kind == -1)
        return api_error_set(e, 400, INVALID, "invalid_value", param, "%s: '%s' is not ftjob-<n>:<step>", param, ref);
    if (ref_kind == -2)
        return api_error_set(e, 400, INVALID, "invalid_value", param, "%s: '%s' is not a job id", param, ref);
    if (ref_kind == 1) {
        /* the job as the reference spells it */
        char jid[64];
        snprintf(jid, sizeof jid, "%.*s", (int)strcspn(ref, ":"), ref);
        if (step >= 0) {
            if (store_job_checkpoint_path(c->st, n, step, path, NULL))
                return api_error_set(e, 400, INVALID, "model_not_found", param, "%s: %s has no checkpoint at step %ld",
                                     param, jid, step);
            return 0;
        }
        store_rows j;
        if (store_job_read(c->st, n, &j))
            return api_error_set(e, 400, INVALID, "model_not_found", param, "%s: no job %s", param, jid);
        const char *ft = ((const store_job_row *)j.v)->fine_tuned_model;
        int ok = ft && store_model_get(c->st, ft, &m) == STORE_OK;
        store_rows_free(&j);
        if (!ok)
            return api_error_set(e, 422, INVALID, "model_not_ready", param, "%s: %s has no output model yet",
                                 param, jid);
        snprintf(path, STORE_PATH, "%s", m.path);
        return 0;
    }
    return api_error_set(e, 400, INVALID, "model_not_found", param,
                         "%s: '%s' is not a registered model (GET /v1/models lists them)", param, ref);
}

static int resolve_file(backend_ctx *c, const char *ref, const char *param, char path[STORE_PATH], api_error *e) {
    int64_t n = api_id_parse(API_ID_FILE, ref);
    char st[32];
    if (!n) return api_error_set(e, 400, INVALID, "invalid_value", param, "%s: '%s' is not a file id (file-<n>)", param, ref);
    if (store_file_info(c->st, n, st, path))
        return api_error_set(e, 400, INVALID, "file_not_found", param, "%s: no file %s", param, ref);
    if (strcmp(st, "processed"))
        return api_error_set(e, 422, INVALID, "file_invalid", param,
                             "%s: %s failed validation (GET /v1/files/%s shows why)", param, ref, ref);
    return 0;
}

/* ---- job submission -------------------------------------------------------------- */

typedef struct prepared {
    json_t *req, *spec, *used;
    json_t *waiting;     /* models named that are still downloading (when the job may wait), or NULL */
    json_t *unresolved;  /* the spec before names became paths (kept when the job may wait) */
    al_job job;
    int parsed;
    const char *suffix;
    json_t *metadata;
    int priority;
    char from_checkpoint[64];
    char resume_dir[STORE_PATH];
} prepared;

static void prepared_free(prepared *p) {
    if (p->parsed) al_job_deinit(&p->job);
    json_decref(p->waiting);
    json_decref(p->unresolved);
    json_decref(p->req);
    json_decref(p->spec);
    json_decref(p->used);
}

static int str_field(const json_t *o, const char *key, const char **out, api_error *e) {
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v) || !json_string_length(v))
        return api_error_set(e, 400, INVALID, "invalid_type", key, "%s: must be a non-empty string", key);
    *out = json_string_value(v);
    return 0;
}

/* OpenAI's method object onto ours. */
static int map_method(json_t *spec, api_error *e) {
    json_t *m = json_object_get(spec, "method");
    if (!m || json_is_string(m)) return 0;
    if (!json_is_object(m))
        return api_error_set(e, 400, INVALID, "invalid_type", "method", "method: must be a string or an object");
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type) return api_error_set(e, 400, INVALID, "missing_field", "method.type", "method.type: is required");
    const char *ours = !strcmp(type, "supervised") ? "sft" : type;
    json_t *inner = json_object_get(m, type);
    json_t *hp = inner ? json_object_get(inner, "hyperparameters") : NULL;
    if (inner && !json_is_object(inner))
        return api_error_set(e, 400, INVALID, "invalid_type", "method", "method.%s: must be an object", type);
    if (hp && !json_is_object(hp))
        return api_error_set(e, 400, INVALID, "invalid_type", "method", "method.%s.hyperparameters: must be an object",
                             type);
    if (hp) {
        json_t *top = json_object_get(spec, "hyperparameters");
        if (!json_is_object(top)) {
            json_object_set_new(spec, "hyperparameters", json_object());
            top = json_object_get(spec, "hyperparameters");
        }
        json_object_update(top, hp);
    }
    json_object_set_new(spec, "method", json_string(ours));
    return 0;
}

/* Reads the extras from the request copy, which keeps them (the spec loses
 * them), so the pointers stay valid. */
static int check_extras(prepared *p, api_error *e) {
    json_t *b = p->req;
    const json_t *v;
    if (str_field(b, "suffix", &p->suffix, e)) return -1;
    if (p->suffix) {
        if (strlen(p->suffix) > 64)
            return api_error_set(e, 400, INVALID, "invalid_value", "suffix", "suffix: at most 64 characters");
        for (const char *q = p->suffix; *q; q++)
            if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_' && *q != '.')
                return api_error_set(e, 400, INVALID, "invalid_value", "suffix",
                                     "suffix: only letters, digits, '-', '_' and '.'");
    }
    v = json_object_get(b, "metadata");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v))
            return api_error_set(e, 400, INVALID, "invalid_type", "metadata", "metadata: must be an object of strings");
        if (json_object_size(v) > 16)
            return api_error_set(e, 400, INVALID, "invalid_value", "metadata", "metadata: at most 16 pairs");
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            char param[128];
            snprintf(param, sizeof param, "metadata.%.64s", k);
            if (strlen(k) > 64 || !*k)
                return api_error_set(e, 400, INVALID, "invalid_value", param, "%s: keys are 1 to 64 characters", param);
            if (!json_is_string(x))
                return api_error_set(e, 400, INVALID, "invalid_type", param, "%s: must be a string", param);
            if (json_string_length(x) > 512)
                return api_error_set(e, 400, INVALID, "invalid_value", param, "%s: at most 512 characters", param);
        }
        p->metadata = (json_t *)v;
    }
    v = json_object_get(b, "priority");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < -100 || json_integer_value(v) > 100)
            return api_error_set(e, 400, INVALID, "invalid_value", "priority", "priority: must be an integer in [-100, 100]");
        p->priority = (int)json_integer_value(v);
    }
    if (json_object_get(b, "output_dir"))
        return api_error_set(e, 400, INVALID, "invalid_value", "output_dir",
                             "output_dir: the daemon chooses where a job's output goes");
    return 0;
}

typedef struct refs_ctx {
    backend_ctx *c;
    api_error *e;
    int failed;
    const char *model_override;  /* from_checkpoint's folder for "model" */
    json_t *used;                /* model names the job uses */
    json_t *waiting;             /* non-NULL: a model still downloading is listed here, not refused */
    json_t *dinfo;               /* reference path -> the dataset_info its file was uploaded with */
} refs_ctx;

/* al_job_refs callback: model names and file ids to paths. */
static int on_ref(void *ud, al_ref_kind kind, const char *path, const char *value, char *repl, size_t cap,
                  char *msg, size_t msgcap) {
    refs_ctx *r = ud;
    char dir[STORE_PATH];
    if (kind == AL_REF_MODEL) {
        if (!strcmp(path, "model") && r->model_override) {
            snprintf(dir, sizeof dir, "%s", r->model_override);
        } else if (resolve_model(r->c, value, path, dir, r->e)) {
            if (r->waiting && r->e->status == 409 && !strcmp(r->e->code, "model_downloading")) {
                /* the job waits for it: the name stays until the download ends */
                memset(r->e, 0, sizeof *r->e);
                int seen = 0;
                for (size_t i = 0; i < json_array_size(r->waiting); i++)
                    seen |= !strcmp(json_string_value(json_array_get(r->waiting, i)), value);
                if (!seen) json_array_append_new(r->waiting, json_string(value));
                json_array_append_new(r->used, json_string(value));
                repl[0] = 0;
                return 0;
            }
            r->failed = 1;
            snprintf(msg, msgcap, "%s", r->e->message);
            return -1;
        }
        json_array_append_new(r->used, json_string(value));
    } else if (resolve_file(r->c, value, path, dir, r->e)) {
        r->failed = 1;
        snprintf(msg, msgcap, "%s", r->e->message);
        return -1;
    } else {
        json_t *di = store_file_dataset_info(r->c->st, api_id_parse(API_ID_FILE, value));
        if (di) json_object_set_new(r->dinfo, path, di);
    }
    if (strlen(dir) >= cap) {
        r->failed = 1;
        api_error_set(r->e, 400, INVALID, "invalid_value", path, "%s: the resolved path is too long", path);
        snprintf(msg, msgcap, "path too long");
        return -1;
    }
    memcpy(repl, dir, strlen(dir) + 1);
    return 0;
}

/* The same format and names, whatever defaults either spells out. */
static int same_dataset_info(const json_t *a, const json_t *b) {
    al_dataset_info x, y;
    al_error err;
    if (al_dataset_info_parse(a, "dataset_info", &x, &err) || al_dataset_info_parse(b, "dataset_info", &y, &err))
        return 1; /* the job's own is reported by the job parser */
    json_t *jx = al_dataset_info_json(&x), *jy = al_dataset_info_json(&y);
    int same = json_equal(jx, jy);
    json_decref(jx);
    json_decref(jy);
    return same;
}

/* Files uploaded with a dataset_info (rows under their own names)
 * are read with it: the job takes it for the file unless it gives its own,
 * which must then say the same. */
static int apply_dataset_info(json_t *spec, const json_t *dinfo, api_error *e) {
    static const char *const top[] = {"training_file", "validation_file"};
    char key[64];
    json_t *tfs = json_object_get(spec, "training_files");
    for (size_t k = 0; k < json_array_size(tfs); k++) {
        json_t *ent = json_array_get(tfs, k), *v;
        snprintf(key, sizeof key, "training_files[%zu].file", k);
        if (!(v = json_object_get(dinfo, key)) || !json_is_object(ent)) continue;
        const json_t *own = json_object_get(ent, "dataset_info");
        if (!own || json_is_null(own)) json_object_set(ent, "dataset_info", v);
        else if (!same_dataset_info(own, v))
            return api_error_set(e, 400, INVALID, "invalid_value", key,
                                 "training_files[%zu].dataset_info: the file was uploaded with another dataset_info "
                                 "(its validation.dataset_info)", k);
    }
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(dinfo, top[i]), *own = json_object_get(spec, "dataset_info");
        if (!v) continue;
        if (!own || json_is_null(own)) json_object_set(spec, "dataset_info", (json_t *)v);
        else if (!same_dataset_info(own, v))
            return api_error_set(e, 400, INVALID, "invalid_value", top[i],
                                 "%s: the file was uploaded with another dataset_info than the job's (its "
                                 "validation.dataset_info)", top[i]);
    }
    return 0;
}

static int resolve_spec(backend_ctx *c, prepared *p, const char *model_override, int may_wait, api_error *e);

/* Turns an API job body into the trainer's description: names and ids to
 * paths, extras off (may_wait: see resolve_spec). */
static int prepare(backend_ctx *c, const json_t *body, prepared *p, int may_wait, api_error *e) {
    memset(p, 0, sizeof *p);
    if (!json_is_object(body)) return api_error_set(e, 400, INVALID, "invalid_type", "", "The body must be a JSON object");
    p->req = json_deep_copy(body);
    p->spec = json_deep_copy(body);
    p->used = json_array();
    if (!p->req || !p->spec || !p->used) return server_error(e, "Copying the body");
    json_t *s = p->spec;
    if (map_method(s, e)) return -1;
    json_object_set(p->req, "method", json_object_get(s, "method"));
    if (check_extras(p, e)) return -1;
    const char *fc;
    if (str_field(s, "from_checkpoint", &fc, e)) return -1;
    const json_t *fco = json_object_get(s, "from_checkpoint_optimizer");
    if (fco && !json_is_boolean(fco))
        return api_error_set(e, 400, INVALID, "invalid_type", "from_checkpoint_optimizer",
                             "from_checkpoint_optimizer: must be true or false");
    int with_opt = fco && json_is_true(fco);
    char path[STORE_PATH];
    if (fc) {
        char ref[80];
        snprintf(p->from_checkpoint, sizeof p->from_checkpoint, "%.63s", fc);
        if (!strchr(fc, ':')) {
            /* the job's latest checkpoint */
            int64_t n = api_id_parse(API_ID_JOB, fc);
            long step;
            if (!n) return api_error_set(e, 400, INVALID, "invalid_value", "from_checkpoint",
                                         "from_checkpoint: '%s' is not ftjob-<n>[:<step>]", fc);
            if (store_job_checkpoint_path(c->st, n, -1, path, &step))
                return api_error_set(e, 422, INVALID, "checkpoint_not_found", "from_checkpoint",
                                     "from_checkpoint: %s has no checkpoint", fc);
        } else {
            snprintf(ref, sizeof ref, "%.70s", fc);
            if (strncmp(ref, API_JOB_PREFIX, strlen(API_JOB_PREFIX)))
                return api_error_set(e, 400, INVALID, "invalid_value", "from_checkpoint",
                                     "from_checkpoint: '%s' is not ftjob-<n>[:<step>]", fc);
            if (resolve_model(c, ref, "from_checkpoint", path, e)) return -1;
        }
        if (with_opt) snprintf(p->resume_dir, sizeof p->resume_dir, "%s", path);
    }
    static const char *const extras[] = {"suffix", "metadata", "priority", "from_checkpoint",
                                         "from_checkpoint_optimizer", NULL};
    for (int i = 0; extras[i]; i++) json_object_del(s, extras[i]);
    const char *model, *method = json_string_value(json_object_get(s, "method"));
    if (str_field(p->req, "model", &model, e)) return -1;
    /* clean_data filters a file: no model */
    if (!model && !(method && !strcmp(method, "clean_data")))
        return api_error_set(e, 400, INVALID, "missing_field", "model", "model: is required");
    return resolve_spec(c, p, fc && !with_opt ? path : NULL, may_wait, e);
}

/* p->spec's names and ids to paths, then the whole job validated (p->job).
 * may_wait (and no model_override): a model still downloading from the Hub
 * is listed in p->waiting instead of refused, and p->unresolved keeps the
 * spec as it was for when the download ends. */
static int resolve_spec(backend_ctx *c, prepared *p, const char *model_override, int may_wait, api_error *e) {
    json_t *s = p->spec;
    if (may_wait && !model_override) {
        p->waiting = json_array();
        p->unresolved = json_deep_copy(s);
        if (!p->waiting || !p->unresolved) return server_error(e, "Copying the body");
    }
    /* every model and file reference (lib/train's walker knows them all) */
    refs_ctx rc0 = {.c = c, .e = e, .model_override = model_override, .used = p->used, .waiting = p->waiting,
                    .dinfo = json_object()};
    al_error rerr;
    if (!rc0.dinfo) return server_error(e, "Copying the body");
    if (al_job_refs(s, on_ref, &rc0, &rerr)) {
        json_decref(rc0.dinfo);
        if (rc0.failed) return -1;
        return api_error_set(e, 400, INVALID, "invalid_value", rerr.field, "%s", rerr.msg);
    }
    int drc = apply_dataset_info(s, rc0.dinfo, e);
    json_decref(rc0.dinfo);
    if (drc) return -1;
    al_error err;
    /* output_dir is set per job when it runs (<jobs_dir>/ftjob-<n>); the
     * jobs directory stands in while the description is validated */
    json_object_set_new(s, "output_dir", json_string(c->jobs_dir));
    int rc = al_job_from_json(&p->job, s, &err);
    json_object_del(s, "output_dir");
    if (rc)
        return api_error_set(e, 400, INVALID, rc == AL_EINVAL ? "invalid_value" : "invalid_job", err.field, "%s",
                             err.msg);
    p->parsed = 1;
    return 0;
}

/* The memory jobs are admitted by: memory_limit when configured, else the
 * scheduler's budget (the memory available at start). */
static int64_t memory_budget(const backend_ctx *c) {
    if (c->memory_limit > 0) return c->memory_limit;
    return c->sc ? sched_memory_budget(c->sc) : INT64_MAX;
}

static int estimate(backend_ctx *c, prepared *p, al_estimate *est, api_error *e) {
    al_error err = {"", ""};
    int rc = al_job_estimate(&p->job, est, &err);
    if (rc)
        return api_error_set(e, 422, INVALID, "invalid_model_or_data",
                             err.field[0] ? err.field : p->job.task[0] ? "model" : "training_file", "%s", err.msg);
    (void)c;
    return 0;
}

static int be_job_estimate(void *ud, const json_t *body, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    prepared *pp = calloc(1, sizeof *pp); /* ~100 kB: never on an HTTP thread's stack */
    if (!pp) return server_error(e, "Allocating");
    al_estimate est;
    int rc = prepare(c, body, pp, 0, e);
    if (!rc) rc = estimate(c, pp, &est, e);
    if (!rc) *out = objects_estimate(&est, memory_budget(c));
    prepared_free(pp);
    free(pp);
    return rc;
}

/* The estimate of a prepared job and what admission checks of it. */
static int admit_checks(backend_ctx *c, prepared *pp, al_estimate *est, api_error *e) {
    int rc = estimate(c, pp, est, e);
    int launched = !rc && pp->job.processes > 1;
    if (launched && !c->has_launcher)
        rc = api_error_set(e, 422, INVALID, "no_launcher", "resources.processes",
                           "resources.processes: this daemon has no launcher to start %d processes (set launcher "
                           "in alignd.conf, e.g. mpirun --hostfile /etc/alignd/hosts -np {processes})",
                           pp->job.processes);
    /* admission: what the estimate says cannot fit the budget the scheduler
     * admits by is refused now (a job alone would be claimed anyway and
     * fail at run time, out of memory); a launched job's ranks run where the
     * launcher places them, each with this estimate */
    int64_t budget = memory_budget(c);
    if (!rc && !launched && (int64_t)est->memory_bytes > budget)
        rc = api_error_set(e, 422, INVALID, "insufficient_memory", "",
                           "The job's estimate is %.1f MiB, more than the memory budget of %.1f MiB (%s); "
                           "POST /v1/fine_tuning/jobs/estimate shows the estimate: lower batch_size or "
                           "max_length, raise gradient_accumulation_steps, or use LoRA",
                           (double)est->memory_bytes / 1048576.0, (double)budget / 1048576.0,
                           c->memory_limit > 0 ? "memory_limit" : "the memory available at start");
    return rc;
}

static int be_job_create(void *ud, const json_t *body, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    prepared *pp = calloc(1, sizeof *pp); /* ~100 kB: never on an HTTP thread's stack */
    if (!pp) return server_error(e, "Allocating");
    al_estimate est;
    memset(&est, 0, sizeof est);
    int rc = prepare(c, body, pp, 1, e);
    /* a job naming a model still downloading waits for it (validating_files):
     * estimated and admitted when the download ends (admit_waiting) */
    int waits = !rc && json_array_size(pp->waiting) > 0;
    if (!rc && !waits) rc = admit_checks(c, pp, &est, e);
    int launched = !rc && pp->job.processes > 1;
    if (rc) {
        prepared_free(pp);
        free(pp);
        return rc;
    }
    const json_t *s = pp->spec;
    store_job_new j;
    memset(&j, 0, sizeof j);
    j.method = pp->job.method;
    j.model = json_string_value(json_object_get(pp->req, "model"));
    if (!j.model) j.model = ""; /* clean_data */
    j.ref_model = json_string_value(json_object_get(pp->req, "ref_model"));
    j.training_file = json_string_value(json_object_get(pp->req, "training_file"));
    j.validation_file = json_string_value(json_object_get(pp->req, "validation_file"));
    json_t *task = json_object_get(s, "task");
    json_t *task_out = NULL;
    if (task && !json_is_null(task))
        task_out = json_pack("{s:s, s:I, s:I, s:s}", "name", pp->job.task, "rows", (json_int_t)pp->job.task_rows,
                             "seed", (json_int_t)pp->job.task_seed, "split", al_task_split_name(pp->job.task_split));
    j.task = task_out;
    j.request = pp->req;
    j.spec = s;
    if (waits) {
        /* kept with its names, and the models it waits for */
        json_object_set(pp->unresolved, "awaiting_models", pp->waiting);
        j.spec = pp->unresolved;
    }
    j.hyperparameters = json_object_get(pp->job.resolved, "hyperparameters");
    j.metadata = pp->metadata;
    j.suffix = pp->suffix;
    j.from_checkpoint = pp->from_checkpoint[0] ? pp->from_checkpoint : NULL;
    j.resume_dir = pp->resume_dir[0] ? pp->resume_dir : NULL;
    j.priority = pp->priority;
    j.seed = (int64_t)pp->job.hp.seed;
    j.memory_bytes = launched ? 0 : (int64_t)est.memory_bytes;
    j.models_used = pp->used;
    /* a launched job writes where every node sees it */
    j.jobs_dir = launched && c->shared_dir[0] ? c->shared_dir : c->jobs_dir;
    int64_t id;
    rc = store_job_create(c->st, &j, &id);
    json_decref(task_out);
    char method[32], names[512] = "", first[256] = "";
    snprintf(method, sizeof method, "%s", pp->job.method);
    for (size_t i = 0; waits && i < json_array_size(pp->waiting); i++) {
        size_t len = strlen(names);
        snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "", json_string_value(json_array_get(pp->waiting, i)));
    }
    if (waits) snprintf(first, sizeof first, "%s", json_string_value(json_array_get(pp->waiting, 0)));
    prepared_free(pp);
    free(pp);
    if (rc) return server_error(e, "Creating the job");
    if (waits) {
        store_job_event(c->st, id, "info", "message", NULL,
                        "Waiting for %s to download from the Hugging Face Hub (GET /v1/models/%s/events follows "
                        "it); the job is queued when it is ready and fails if the download fails",
                        names, first);
        log_info("event=job_created job=%s method=%s waiting_for=\"%s\"", api_id(API_ID_JOB, id).s, method, names);
        /* the download may have ended while the job was being written */
        backend_admit_waiting(c);
    } else {
        /* the files were validated at upload and resolved above */
        store_job_transition(c->st, id, "validating_files", "queued", "info", NULL,
                             "Files validated; job queued (estimated %.1f MiB, %ld steps)",
                             (double)est.memory_bytes / 1048576.0, est.steps);
        log_info("event=job_created job=%s method=%s steps=%ld memory_mib=%.1f", api_id(API_ID_JOB, id).s, method,
                 est.steps, (double)est.memory_bytes / 1048576.0);
        if (c->sc) sched_wake(c->sc);
    }
    *out = objects_job_get(c->st, id);
    return *out ? 0 : server_error(e, "Reading the job back");
}

/* ---- jobs that wait for a model ---------------------------------------------------- */

/* A waiting job (validating_files, its spec with "awaiting_models") whose
 * models have all ended their downloads: resolved, estimated and admitted
 * as at submission (queued, its spec replaced by the resolved one), or
 * failed with the reason (a download that failed names the model). One
 * that still waits stays as it is. */
static void admit_one(backend_ctx *c, int64_t id) {
    store_run r;
    if (store_job_run_info(c->st, id, &r)) return;
    json_t *spec = json_loads(r.spec, 0, NULL);
    store_run_deinit(&r);
    if (!spec || !json_object_get(spec, "awaiting_models")) {
        json_decref(spec);
        return; /* not a job that waits */
    }
    json_object_del(spec, "awaiting_models");
    prepared *pp = calloc(1, sizeof *pp);
    api_error e;
    memset(&e, 0, sizeof e);
    if (!pp) {
        json_decref(spec);
        return;
    }
    pp->spec = spec;
    pp->used = json_array();
    al_estimate est;
    memset(&est, 0, sizeof est);
    int rc = pp->used ? resolve_spec(c, pp, NULL, 1, &e) : server_error(&e, "Allocating");
    if (!rc && json_array_size(pp->waiting)) goto out; /* another download runs */
    if (!rc) rc = admit_checks(c, pp, &est, &e);
    store_upd u = STORE_UPD_INIT;
    if (rc) {
        u.finished = 1;
        u.error_code = e.code;
        u.error_message = e.message;
        u.error_param = e.param;
        if (!store_job_transition(c->st, id, "validating_files", "failed", "error", &u, "%s", e.message))
            log_warn("event=job_failed job=%s code=%s reason=\"%s\"", api_id(API_ID_JOB, id).s, e.code, e.message);
        goto out;
    }
    u.spec = pp->spec;
    u.hyperparameters = json_object_get(pp->job.resolved, "hyperparameters");
    u.memory_bytes = pp->job.processes > 1 ? 0 : (int64_t)est.memory_bytes;
    if (!store_job_transition(c->st, id, "validating_files", "queued", "info", &u,
                              "Models ready; job queued (estimated %.1f MiB, %ld steps)",
                              (double)est.memory_bytes / 1048576.0, est.steps)) {
        log_info("event=job_admitted job=%s steps=%ld memory_mib=%.1f", api_id(API_ID_JOB, id).s, est.steps,
                 (double)est.memory_bytes / 1048576.0);
        if (c->sc) sched_wake(c->sc);
    }
out:
    prepared_free(pp);
    free(pp);
}

static int no_rows(void *ud, int64_t id) {
    (void)ud;
    (void)id;
    return 0;
}

void backend_admit_waiting(backend_ctx *c) {
    pthread_mutex_lock(&c->admit_mu);
    int64_t after = 0;
    for (;;) {
        store_rows r;
        if (store_job_page(c->st, after, 100, "validating_files", no_rows, NULL, &r)) break;
        int64_t ids[100];
        int n = r.n < 100 ? r.n : 100, more = r.more;
        for (int i = 0; i < n; i++) ids[i] = ((const store_job_row *)r.v)[i].id;
        store_rows_free(&r);
        for (int i = 0; i < n; i++) admit_one(c, ids[i]);
        if (!more || !n) break;
        after = ids[n - 1];
    }
    pthread_mutex_unlock(&c->admit_mu);
}

void backend_on_download_done(void *ud, const char *name) {
    (void)name;
    backend_admit_waiting(ud);
}

static int be_job_list(void *ud, const api_page *pg, const char *status, json_t **out, api_error *e) {
    store_rows r;
    if (store_job_page(((backend_ctx *)ud)->st, page_after(pg, API_ID_JOB), page_limit(pg), status, NULL, NULL, &r))
        return server_error(e, "Listing the jobs");
    *out = objects_job_list(&r);
    store_rows_free(&r);
    return 0;
}

static int be_job_list_text(void *ud, const api_page *pg, const char *status, char **text, size_t *len,
                            api_error *e) {
    backend_ctx *c = ud;
    if (objects_jobs_text(c->jobs_cache, c->st, page_after(pg, API_ID_JOB), page_limit(pg), status, text, len))
        return server_error(e, "Listing the jobs");
    return 0;
}

static int job_id(backend_ctx *c, const char *id, int64_t *n, api_error *e) {
    char st[32];
    *n = api_id_parse(API_ID_JOB, id);
    if (!*n || store_job_status(c->st, *n, st)) return not_found(e, "job", id);
    return 0;
}

static int be_job_get(void *ud, const char *id, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    if (job_id(c, id, &n, e)) return -1;
    *out = objects_job_get(c->st, n);
    return *out ? 0 : not_found(e, "job", id);
}

static int be_job_action(void *ud, const char *id, const char *action, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    char st[32];
    if (job_id(c, id, &n, e)) return -1;
    int rc = STORE_ESTATE;
    for (int attempt = 0; attempt < 3 && rc == STORE_ESTATE; attempt++) {
        if (store_job_status(c->st, n, st)) return not_found(e, "job", id);
        store_upd u = STORE_UPD_INIT;
        if (!strcmp(action, "cancel")) {
            if (!strcmp(st, "running")) {
                rc = store_job_transition(c->st, n, "running", "cancelling", "info", NULL, "Cancellation requested");
                if (!rc && c->sc) sched_cancel(c->sc, n);
            } else if (!strcmp(st, "validating_files") || !strcmp(st, "queued") || !strcmp(st, "paused")) {
                u.finished = 1;
                rc = store_job_transition(c->st, n, "validating_files|queued|paused", "cancelled", "info", &u,
                                          "Job cancelled");
            } else {
                break;
            }
        } else if (!strcmp(action, "pause")) {
            if (!strcmp(st, "running")) {
                /* takes effect at the next step boundary, with a checkpoint */
                rc = c->sc && sched_pause(c->sc, n) ? STORE_OK : STORE_ESTATE;
                if (!rc) store_job_event(c->st, n, "info", "message", NULL, "Pause requested");
            } else if (!strcmp(st, "queued")) {
                rc = store_job_transition(c->st, n, "queued", "paused", "info", NULL, "Job paused");
            } else {
                break;
            }
        } else if (!strcmp(action, "resume")) {
            if (!strcmp(st, "paused")) {
                rc = store_job_transition(c->st, n, "paused", "queued", "info", NULL, "Job resumed; queued");
                if (!rc && c->sc) sched_wake(c->sc);
            } else {
                break;
            }
        } else {
            return api_error_set(e, 400, INVALID, "invalid_value", "action", "Unknown action '%s'", action);
        }
    }
    if (rc == STORE_ESTATE)
        return api_error_set(e, 409, "conflict_error", "invalid_state", "", "Job %s is %s; it cannot %s", id, st,
                             action);
    if (rc) return server_error(e, "Updating the job");
    *out = objects_job_get(c->st, n);
    return *out ? 0 : not_found(e, "job", id);
}

static int be_job_delete(void *ud, const char *id, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    if (job_id(c, id, &n, e)) return -1;
    char dir[STORE_PATH] = "", users[256] = "", err[AL_ERRLEN], q[600];
    int64_t uid[STORE_USERS_MAX];
    int nu = 0;
    int rc = store_job_delete(c->st, n, dir, uid, &nu);
    if (rc == STORE_ENOTFOUND) return not_found(e, "job", id);
    if (rc == STORE_ESTATE)
        return api_error_set(e, 409, "conflict_error", "invalid_state", "",
                             "Job %s has not finished; cancel it first", id);
    if (rc == STORE_EINUSE)
        return api_error_set(e, 409, "conflict_error", "model_in_use", "",
                             "Job %s's model or checkpoints are used by %s", id, job_ids_text(uid, nu, users));
    if (rc) return server_error(e, "Deleting the job");
    /* its folder is below the jobs folder: nothing else is removed */
    size_t jl = strlen(c->jobs_dir);
    if (dir[0] && !strncmp(dir, c->jobs_dir, jl) && dir[jl] == '/' && al_rmtree(dir, err))
        log_warn("event=job_files_remove_failed job=%s reason=%s", id, log_quote(q, sizeof q, err));
    log_info("event=job_deleted job=%s", id);
    *out = objects_deleted(id, "fine_tuning.job");
    return 0;
}

static int be_job_events(void *ud, const char *id, const api_page *pg, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    if (job_id(c, id, &n, e)) return -1;
    store_rows r;
    if (store_job_event_page(c->st, n, page_after(pg, API_ID_EVENT), page_limit(pg), &r))
        return server_error(e, "Reading the events");
    *out = objects_event_list(&r);
    store_rows_free(&r);
    return 0;
}

static int be_job_metrics(void *ud, const char *id, const char *keys, long after_step, long max_points,
                          json_t **out, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    if (job_id(c, id, &n, e)) return -1;
    store_rows r;
    if (store_job_metric_rows(c->st, n, keys, after_step, &r)) return server_error(e, "Reading the metrics");
    *out = objects_metrics_list(&r, max_points);
    store_rows_free(&r);
    return 0;
}

static int be_job_samples(void *ud, const char *id, long after_step, int limit, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    if (job_id(c, id, &n, e)) return -1;
    store_rows r;
    if (store_job_sample_page(c->st, n, after_step, limit > 0 ? limit : 20, &r))
        return server_error(e, "Reading the samples");
    *out = objects_sample_list(&r);
    store_rows_free(&r);
    return 0;
}

static int be_job_checkpoints(void *ud, const char *id, const api_page *pg, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    if (job_id(c, id, &n, e)) return -1;
    store_rows r;
    if (store_job_checkpoint_page(c->st, n, page_after(pg, API_ID_CHECKPOINT), page_limit(pg), &r))
        return server_error(e, "Reading the checkpoints");
    *out = objects_checkpoint_list(&r);
    store_rows_free(&r);
    return 0;
}

static int be_job_eval_results(void *ud, const char *id, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    if (job_id(c, id, &n, e)) return -1;
    store_rows r;
    if (store_job_eval_rows(c->st, n, &r)) return server_error(e, "Reading the eval results");
    *out = objects_eval_list(&r);
    store_rows_free(&r);
    return 0;
}

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int be_job_feed(void *ud, const char *id, int64_t after_seq, int max, int timeout_ms, json_t **items,
                       int *finished, api_error *e) {
    backend_ctx *c = ud;
    int64_t n;
    if (job_id(c, id, &n, e)) return -1;
    if (max <= 0) max = 100;
    double end = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        uint64_t ver = store_feed_version(c->st);
        store_rows got;
        const store_job_row *job;
        int64_t last;
        int final;
        int rc = store_job_feed(c->st, n, after_seq, max, &got, &last, &final, &job);
        if (rc == STORE_ENOTFOUND) return not_found(e, "job", id);
        if (rc) return server_error(e, "Reading the feed");
        int k = got.n;
        int64_t upto = k ? ((const store_feed_item *)got.v)[k - 1].seq : after_seq;
        *finished = final && upto >= last;
        double left = end - mono_ms();
        if (k || *finished || left <= 0 || atomic_load(&c->draining)) {
            *items = objects_feed(&got, job);
            store_rows_free(&got);
            return 0;
        }
        store_rows_free(&got);
        store_feed_wait(c->st, ver, (int)(left < 1000 ? left + 1 : 1000));
    }
}

static int be_job_feed_last(void *ud, const char *id, int64_t *last_seq, api_error *e) {
    backend_ctx *c = ud;
    int64_t n, last = 0;
    if (job_id(c, id, &n, e)) return -1;
    store_rows none;
    const store_job_row *job;
    int final;
    /* after INT64_MAX: no items, only the job's latest seq */
    if (store_job_feed(c->st, n, INT64_MAX, 1, &none, &last, &final, &job)) return not_found(e, "job", id);
    store_rows_free(&none);
    *last_seq = last;
    return 0;
}

/* ---- models ------------------------------------------------------------------------ */

static void with_download(backend_ctx *c, json_t *m);

static int be_model_list(void *ud, const api_page *pg, json_t **out, api_error *e) {
    store_rows r;
    if (store_model_page(((backend_ctx *)ud)->st, pg ? pg->after : NULL, page_limit(pg), &r))
        return server_error(e, "Listing the models");
    *out = objects_model_list(&r);
    store_rows_free(&r);
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(*out, "data"), i, m) with_download(ud, m);
    return 0;
}

/* A model being downloaded shows its progress as "download". */
static void with_download(backend_ctx *c, json_t *m) {
    if (!c->hub || !json_is_object(m)) return;
    json_t *p = hubmodels_progress(c->hub, json_string_value(json_object_get(m, "id")));
    if (p || !strcmp(json_string_value(json_object_get(m, "status")) ? json_string_value(json_object_get(m, "status")) : "", "downloading"))
        json_object_set_new(m, "download", p ? p : json_null());
}

static int be_model_get(void *ud, const char *id, json_t **out, api_error *e) {
    json_t *o = objects_model_get(((backend_ctx *)ud)->st, id);
    if (!o) return not_found(e, "model", id);
    with_download(ud, o);
    *out = o;
    return 0;
}

static int be_model_register_hub(void *ud, const char *repo, const char *revision, const char *name,
                                 json_t **out, int *accepted, api_error *e) {
    backend_ctx *c = ud;
    if (!c->hub) return api_error_set(e, 403, "permission_error", "downloads_disabled", "hf", "hf: no Hub access");
    if (name && (!*name || strlen(name) > 128 || !strncmp(name, API_JOB_PREFIX, strlen(API_JOB_PREFIX)) || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_./@") != strlen(name)))
        return api_error_set(e, 400, INVALID, "invalid_value", "name",
                             "name: 1 to 128 of letters, digits, '-', '_', '.', '/' and '@', not 'ftjob-...'");
    return hubmodels_register(c->hub, repo, revision, name, out, accepted, e);
}

static int be_model_events(void *ud, const char *id, const api_page *pg, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    store_model m;
    if (store_model_get(c->st, id, &m)) return not_found(e, "model", id);
    if (!c->hub) {
        *out = objects_model_event_list(json_array(), 0);
        return 0;
    }
    return hubmodels_events(c->hub, id, pg, out, e);
}

static int be_model_feed(void *ud, const char *id, int64_t after_seq, int max, int timeout_ms, json_t **items,
                         int *finished, api_error *e) {
    backend_ctx *c = ud;
    store_model m;
    if (store_model_get(c->st, id, &m)) return not_found(e, "model", id);
    if (!c->hub || atomic_load(&c->draining)) {
        *items = json_array();
        *finished = 1;
        return 0;
    }
    return hubmodels_feed(c->hub, id, after_seq, max, timeout_ms, items, finished, e);
}

static int be_model_register(void *ud, const char *name, const char *real_path, json_t **out, api_error *e) {
    backend_ctx *c = ud;
    if (!name || !api_model_name_ok(name))
        return api_error_set(e, 400, INVALID, "invalid_value", "name",
                             "name: 1 to 64 letters, digits, '.', '_' and '-', not starting with '.', '-' or "
                             "\"ftjob-\"");
    store_model m;
    if (store_model_get(c->st, name, &m) == STORE_OK)
        return api_error_set(e, 409, "conflict_error", "model_exists", "name", "A model named '%s' exists", name);
    memset(&m, 0, sizeof m);
    char err[AL_ERRLEN];
    if (models_describe(real_path, &m, err))
        return api_error_set(e, 422, INVALID, "invalid_model", "path", "path: not a usable model folder: %s", err);
    snprintf(m.name, sizeof m.name, "%s", name);
    snprintf(m.owned_by, sizeof m.owned_by, "alignd");
    if (store_model_put(c->st, &m)) return server_error(e, "Registering the model");
    *out = objects_model_get(c->st, name);
    return *out ? 0 : server_error(e, "Reading the model back");
}

static int be_model_delete(void *ud, const char *id, json_t **out, api_error *e) {
    char users[256];
    int64_t uid[STORE_USERS_MAX];
    int nu = 0;
    int rc = store_model_delete(((backend_ctx *)ud)->st, id, uid, &nu);
    if (rc == STORE_ENOTFOUND) return not_found(e, "model", id);
    if (rc == STORE_EINUSE)
        return api_error_set(e, 409, "conflict_error", "model_in_use", "", "Model '%s' is used by %s", id,
                             job_ids_text(uid, nu, users));
    if (rc) return server_error(e, "Deleting the model");
    *out = objects_deleted(id, "model");
    return 0;
}

static int be_model_path(void *ud, const char *id, char dir[API_PATH_MAX], api_error *e) {
    char path[STORE_PATH];
    api_error tmp;
    if (resolve_model(ud, id, "model", path, &tmp)) {
        if (tmp.status == 400) return not_found(e, "model", id);
        *e = tmp;
        return -1;
    }
    snprintf(dir, API_PATH_MAX, "%s", path);
    return 0;
}

static int be_stats(void *ud, json_t **out) {
    backend_ctx *c = ud;
    store_stats st;
    if (store_stats_read(c->st, &st)) memset(&st, 0, sizeof st);
    json_t *o = objects_stats(&st);
    json_object_set_new(o, "model_memory_bytes", json_integer(0));
    json_object_set_new(o, "workers", json_integer(c->sc ? sched_workers(c->sc) : 0));
    json_object_set_new(o, "workers_busy", json_integer(c->sc ? sched_busy(c->sc) : 0));
    *out = o;
    return 0;
}

void backend_init(api_backend *be, backend_ctx *ctx) {
    memset(be, 0, sizeof *be);
    be->ud = ctx;
    ctx->jobs_cache = objects_cache_new(); /* NULL: lists are built without it */
    pthread_mutex_init(&ctx->admit_mu, NULL);
    be->ready = be_ready;
    be->auth_required = be_auth_required;
    be->auth_check = be_auth_check;
    be->file_create = be_file_create;
    be->file_list = be_file_list;
    be->file_get = be_file_get;
    be->file_path = be_file_path;
    be->file_delete = be_file_delete;
    be->job_create = be_job_create;
    be->job_estimate = be_job_estimate;
    be->job_list = be_job_list;
    be->job_list_text = be_job_list_text;
    be->job_get = be_job_get;
    be->job_action = be_job_action;
    be->job_delete = be_job_delete;
    be->job_events = be_job_events;
    be->job_metrics = be_job_metrics;
    be->job_samples = be_job_samples;
    be->job_checkpoints = be_job_checkpoints;
    be->job_eval_results = be_job_eval_results;
    be->job_feed = be_job_feed;
    be->job_feed_last = be_job_feed_last;
    be->model_list = be_model_list;
    be->model_get = be_model_get;
    be->model_register = be_model_register;
    be->model_delete = be_model_delete;
    be->model_path = be_model_path;
    be->model_register_hub = be_model_register_hub;
    be->model_events = be_model_events;
    be->model_feed = be_model_feed;
    be->stats = be_stats;
}

void backend_deinit(backend_ctx *ctx) {
    pthread_mutex_destroy(&ctx->admit_mu);
    objects_cache_free(ctx->jobs_cache);
    ctx->jobs_cache = NULL;
}

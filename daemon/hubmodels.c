/* Models by name from the Hugging Face Hub (see hubmodels.h). */
#define _XOPEN_SOURCE 700
#include "hubmodels.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/ids.h"
#include "hub.h"
#include "log.h"
#include "models.h"
#include "objects.h"

#define INVALID "invalid_request_error"
#define MAX_ITEMS 256 /* events kept per download (progress items are thinned) */

typedef struct dl {
    struct dl *next;
    hubmodels *h;
    char name[256];
    char repo[AL_HF_REPO_MAX];
    char rev[AL_HF_REV_MAX];
    pthread_t th;
    int started;              /* th to join */
    atomic_int cancel;
    /* under h->mu */
    json_t *items;            /* [{seq, event, data, created_at}] oldest first */
    int64_t seq;
    int finished;
    hub_progress pr;
    char file[1024];
    double last_item;
    int last_pct;
} dl;

struct hubmodels {
    store *st;
    char models_dir[STORE_PATH];
    char cache[STORE_PATH];
    int allow;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dl *dls;
    pthread_mutex_t hook_mu;   /* held while on_done runs, and to change it */
    void (*on_done)(void *ud, const char *name);
    void *on_done_ud;
};

hubmodels *hubmodels_new(store *st, const char *models_dir, const char *hub_cache, int allow_downloads) {
    hubmodels *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->st = st;
    h->allow = allow_downloads;
    snprintf(h->models_dir, sizeof h->models_dir, "%s", models_dir ? models_dir : "");
    /* under systemd (ProtectHome, DynamicUser) the state directory is the
     * one writable place, unless the unit names a cache */
    const char *hh = getenv("HF_HOME"), *hc = getenv("HF_HUB_CACHE"), *sd = getenv("STATE_DIRECTORY");
    int systemd = sd && *sd && !(hh && *hh) && !(hc && *hc);
    if (hub_cache && *hub_cache) snprintf(h->cache, sizeof h->cache, "%s", hub_cache);
    else if (systemd || al_hf_cache_dir(h->cache, sizeof h->cache))
        snprintf(h->cache, sizeof h->cache, "%s/huggingface/hub", store_state_dir(st));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    pthread_mutex_init(&h->hook_mu, NULL);
    return h;
}

const char *hubmodels_cache(const hubmodels *h) { return h->cache; }

void hubmodels_on_done(hubmodels *h, void (*fn)(void *ud, const char *name), void *ud) {
    pthread_mutex_lock(&h->hook_mu);
    h->on_done = fn;
    h->on_done_ud = ud;
    pthread_mutex_unlock(&h->hook_mu);
}

void hubmodels_free(hubmodels *h) {
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    for (dl *d = h->dls; d; d = d->next) atomic_store(&d->cancel, 1);
    pthread_mutex_unlock(&h->mu);
    /* joined without the lock: a finishing download takes it */
    for (dl *d = h->dls; d; d = d->next)
        if (d->started) pthread_join(d->th, NULL);
    dl *d = h->dls;
    while (d) {
        dl *n = d->next;
        json_decref(d->items);
        free(d);
        d = n;
    }
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->hook_mu);
    free(h);
}

static dl *find_dl(hubmodels *h, const char *name) {
    for (dl *d = h->dls; d; d = d->next)
        if (!strcmp(d->name, name)) return d;
    return NULL;
}

/* Appends a feed item (locked). */
static void push_item(dl *d, const char *event, json_t *data) {
    json_t *it = json_pack("{s:I,s:s,s:o,s:I}", "seq", (json_int_t)++d->seq, "event", event, "data", data,
                           "created_at", (json_int_t)time(NULL));
    if (!it) return;
    /* keep the feed bounded: drop the oldest progress item */
    if (json_array_size(d->items) >= MAX_ITEMS)
        for (size_t i = 0; i < json_array_size(d->items); i++)
            if (!strcmp(json_string_value(json_object_get(json_array_get(d->items, i), "event")), "progress")) {
                json_array_remove(d->items, i);
                break;
            }
    json_array_append_new(d->items, it);
    pthread_cond_broadcast(&d->h->cv);
}

/* The download's progress object (locked): d->pr with the file name kept in d. */
static json_t *progress_json(const dl *d) {
    hub_progress p = d->pr;
    p.file = d->file;
    return objects_hub_progress(&p);
}

static void on_progress(void *ud, const hub_progress *p) {
    dl *d = ud;
    hubmodels *h = d->h;
    pthread_mutex_lock(&h->mu);
    d->pr = *p;
    snprintf(d->file, sizeof d->file, "%s", p->file ? p->file : "");
    int pct = p->total > 0 ? (int)(100 * p->done / p->total) : 0;
    double t = al_now();
    /* an item per started file, per 5 %, or per second */
    if (pct >= d->last_pct + 5 || t - d->last_item >= 1.0 || p->file_done == 0) {
        d->last_pct = pct;
        d->last_item = t;
        push_item(d, "progress", progress_json(d));
    }
    pthread_mutex_unlock(&h->mu);
}

static void to_json_text(json_t *o, char *out, size_t n) {
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    out[0] = 0;
    if (t && strlen(t) < n) memcpy(out, t, strlen(t) + 1);
    free(t);
    json_decref(o);
}

/* The store row of a Hub snapshot. */
static int describe(const char *name, const char *repo, const char *rev, const char *commit, const char *dir,
                    store_model *m, char err[AL_ERRLEN]) {
    memset(m, 0, sizeof *m);
    to_json_text(json_pack("{s:s,s:s,s:s,s:s}", "type", "hub", "repo", repo, "revision", rev, "commit", commit),
                 m->source, sizeof m->source);
    if (models_describe(dir, m, err)) return -1;
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->owned_by, sizeof m->owned_by, "%.*s", (int)(strchr(repo, '/') - repo) > 31 ? 31 : (int)(strchr(repo, '/') - repo), repo);
    return 0;
}

static void *download_main(void *arg) {
    dl *d = arg;
    hubmodels *h = d->h;
    hub_opts o = HUB_OPTS_INIT;
    o.cache_dir = h->cache;
    o.progress = on_progress;
    o.ud = d;
    o.cancel = &d->cancel;
    hub_result res;
    char err[AL_ERRLEN];
    int rc = hub_pull(d->repo, d->rev, &o, &res, err);
    store_model m;
    char e2[AL_ERRLEN] = "";
    if (!rc && describe(d->name, d->repo, d->rev, res.commit, res.dir, &m, e2)) {
        rc = HUB_EPROTO;
        snprintf(err, sizeof err, "%.100s@%.100s: the downloaded snapshot is not a usable model: %.250s", d->repo, d->rev, e2);
    }
    if (rc == HUB_ECANCELED) {
        /* a stop: the row stays "downloading" and the next start resumes it */
        log_info("event=hub_download_interrupted model=%s", d->name);
    } else if (rc) {
        store_model old;
        if (store_model_get(h->st, d->name, &old) == STORE_OK) {
            snprintf(old.status, sizeof old.status, "failed");
            to_json_text(json_pack("{s:s,s:s}", "code", hub_strerror(rc), "message", err), old.error,
                         sizeof old.error);
            store_model_put(h->st, &old);
        }
        log_warn("event=hub_download_failed model=%s code=%s reason=\"%s\"", d->name, hub_strerror(rc), err);
    } else {
        store_model old;
        if (store_model_get(h->st, d->name, &old) == STORE_OK) m.created_at = old.created_at;
        store_model_put(h->st, &m);
        log_info("event=hub_download_done model=%s commit=%s bytes=%lld", d->name, res.commit,
                 (long long)res.downloaded);
    }
    /* the jobs that waited are admitted before the model's feed says it
     * ended (a client that saw "ready" finds them queued), and while the
     * download still counts as running (nothing joins this thread then) */
    if (rc != HUB_ECANCELED) {
        pthread_mutex_lock(&h->hook_mu);
        if (h->on_done) h->on_done(h->on_done_ud, d->name);
        pthread_mutex_unlock(&h->hook_mu);
    }
    json_t *model = objects_model_get(h->st, d->name);
    pthread_mutex_lock(&h->mu);
    if (rc != HUB_ECANCELED) push_item(d, "status", model ? model : json_null());
    else json_decref(model);
    d->finished = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* Starts the download of name (locked by the caller: h->mu). */
static int start_download(hubmodels *h, const char *name, const char *repo, const char *rev) {
    dl *d = find_dl(h, name);
    if (d && !d->finished) return 0;
    if (!d) {
        d = calloc(1, sizeof *d);
        if (!d) return -1;
        d->h = h;
        snprintf(d->name, sizeof d->name, "%s", name);
        d->items = json_array();
        d->next = h->dls;
        h->dls = d;
    } else if (d->started) {
        pthread_join(d->th, NULL); /* finished: its thread has returned */
        d->started = 0;
    }
    snprintf(d->repo, sizeof d->repo, "%s", repo);
    snprintf(d->rev, sizeof d->rev, "%s", rev);
    d->finished = 0;
    memset(&d->pr, 0, sizeof d->pr);
    d->last_pct = -5;
    atomic_store(&d->cancel, 0);
    if (pthread_create(&d->th, NULL, download_main, d)) {
        d->finished = 1;
        return -1;
    }
    d->started = 1;
    log_info("event=hub_download_started model=%s repo=%s rev=%s cache=%s", name, repo, rev, h->cache);
    return 0;
}

/* A cached snapshot of repo@rev: models_dir's cache first, then the hub cache. */
static int find_cached(hubmodels *h, const char *repo, const char *rev, char dir[STORE_PATH], char commit[41]) {
    char e2[AL_ERRLEN];
    if (h->models_dir[0] && !al_hf_snapshot(h->models_dir, repo, rev, dir, STORE_PATH, commit, e2)) return 0;
    return al_hf_snapshot(h->cache, repo, rev, dir, STORE_PATH, commit, e2) ? -1 : 0;
}

static int register_cached(hubmodels *h, const char *name, const char *repo, const char *rev, const char *dir,
                           const char *commit, api_error *e) {
    store_model m, old;
    char err[AL_ERRLEN];
    if (describe(name, repo, rev, commit, dir, &m, err))
        return api_error_set(e, 422, INVALID, "invalid_model", "model", "%s: the cached snapshot is not usable: %s",
                             name, err);
    if (store_model_get(h->st, name, &old) == STORE_OK) m.created_at = old.created_at;
    if (store_model_put(h->st, &m))
        return api_error_set(e, 500, "server_error", "internal_error", "", "registering %s failed", name);
    log_info("event=model_registered name=%s source=hub commit=%s path=%s", name, commit, dir);
    return 0;
}

/* The name a Hub reference registers under: ORG/NAME, or ORG/NAME@REV. */
static void ref_name(const char *repo, const char *rev, char out[256]) {
    if (!strcmp(rev, "main")) snprintf(out, 256, "%s", repo);
    else snprintf(out, 256, "%.120s@%.120s", repo, rev);
}

static int downloading_error(hubmodels *h, const char *name, const char *param, api_error *e) {
    json_t *p = hubmodels_progress(h, name);
    double pct = json_real_value(json_object_get(p, "percentage"));
    json_decref(p);
    return api_error_set(e, 409, "conflict_error", "model_downloading", param,
                         "%s: %s is downloading from the Hugging Face Hub (%.0f%%); GET /v1/models/%s/events "
                         "follows it; submit again once its status is ready",
                         param, name, pct, name);
}

int hubmodels_resolve(hubmodels *h, const char *ref, const char *param, char path[STORE_PATH], api_error *e) {
    char repo[AL_HF_REPO_MAX], rev[AL_HF_REV_MAX], err[AL_ERRLEN], name[256], dir[STORE_PATH], commit[41];
    store_model m;
    /* a download under way, by the name it registered under (which may be a user's own) */
    if (store_model_get(h->st, ref, &m) == STORE_OK && !strcmp(m.status, "downloading"))
        return downloading_error(h, ref, param, e);
    if (al_hf_parse_ref(ref, repo, rev, err))
        return api_error_set(e, 400, INVALID, "model_not_found", param,
                             "%s: '%s' is not a registered model, nor a Hugging Face model: %s", param, ref, err);
    ref_name(repo, rev, name);
    if (store_model_get(h->st, name, &m) == STORE_OK) {
        /* "org/name@main" while "org/name" downloads */
        if (!strcmp(m.status, "downloading")) return downloading_error(h, name, param, e);
        /* "org/name@main" names the model registered as "org/name" */
        if (strcmp(name, ref) && (!strcmp(m.status, "ready") || !m.status[0])) {
            snprintf(path, STORE_PATH, "%s", m.path);
            return 0;
        }
    }
    if (!find_cached(h, repo, rev, dir, commit)) {
        if (register_cached(h, name, repo, rev, dir, commit, e)) return -1;
        snprintf(path, STORE_PATH, "%s", dir);
        return 0;
    }
    if (!h->allow)
        return api_error_set(e, 400, INVALID, "model_not_found", param,
                             "%s: %s@%s is not in the Hugging Face cache (%s) and this daemon does not download "
                             "(allow_downloads = false): run `alignd pull %s` or set allow_downloads",
                             param, repo, rev, h->cache, ref);
    json_t *out = NULL;
    int accepted = 0;
    if (hubmodels_register(h, repo, rev, name, &out, &accepted, e)) return -1;
    json_decref(out);
    return downloading_error(h, name, param, e);
}

int hubmodels_register(hubmodels *h, const char *repo, const char *rev, const char *name, json_t **out,
                       int *accepted, api_error *e) {
    char nm[256], dir[STORE_PATH], commit[41];
    if (!rev || !*rev) rev = "main";
    if (!al_hf_repo_ok(repo))
        return api_error_set(e, 400, INVALID, "invalid_value", "hf",
                             "hf: '%.100s' is not a Hugging Face repository id (ORG/NAME)", repo);
    if (!al_hf_rev_ok(rev))
        return api_error_set(e, 400, INVALID, "invalid_value", "revision",
                             "revision: '%.100s' is not a branch, tag or commit", rev);
    if (name) snprintf(nm, sizeof nm, "%s", name);
    else ref_name(repo, rev, nm);
    *accepted = 0;
    store_model m;
    int have = store_model_get(h->st, nm, &m) == STORE_OK;
    if (have) {
        json_t *src = json_loads(m.source, 0, NULL);
        int same = !strcmp(json_string_value(json_object_get(src, "type")) ? json_string_value(json_object_get(src, "type")) : "", "hub") &&
                   json_string_value(json_object_get(src, "repo")) &&
                   !strcmp(json_string_value(json_object_get(src, "repo")), repo) &&
                   json_string_value(json_object_get(src, "revision")) &&
                   !strcmp(json_string_value(json_object_get(src, "revision")), rev);
        json_decref(src);
        if (!same || strcmp(m.status, "failed"))
            return api_error_set(e, 409, "conflict_error", "model_exists", "name", "A model named '%s' exists", nm);
        /* a failed download may be tried again */
    }
    if (!find_cached(h, repo, rev, dir, commit)) {
        if (register_cached(h, nm, repo, rev, dir, commit, e)) return -1;
    } else {
        if (hub_env_offline())
            return api_error_set(e, 422, INVALID, "model_not_cached", "hf",
                                 "hf: %s@%s is not in the Hugging Face cache (%s) and HF_HUB_OFFLINE is set", repo,
                                 rev, h->cache);
        if (!h->allow)
            return api_error_set(e, 403, "permission_error", "downloads_disabled", "hf",
                                 "hf: %s@%s is not in the Hugging Face cache (%s) and this daemon does not download "
                                 "(allow_downloads = false): run `alignd pull %s@%s` on this machine",
                                 repo, rev, h->cache, repo, rev);
        memset(&m, 0, sizeof m);
        snprintf(m.name, sizeof m.name, "%s", nm);
        snprintf(m.kind, sizeof m.kind, "base");
        snprintf(m.owned_by, sizeof m.owned_by, "%.*s", (int)(strchr(repo, '/') - repo) > 31 ? 31 : (int)(strchr(repo, '/') - repo), repo);
        snprintf(m.status, sizeof m.status, "downloading");
        to_json_text(json_pack("{s:s,s:s,s:s,s:n}", "type", "hub", "repo", repo, "revision", rev, "commit"),
                     m.source, sizeof m.source);
        if (store_model_put(h->st, &m))
            return api_error_set(e, 500, "server_error", "internal_error", "", "registering %s failed", nm);
        pthread_mutex_lock(&h->mu);
        int rc = start_download(h, nm, repo, rev);
        pthread_mutex_unlock(&h->mu);
        if (rc) return api_error_set(e, 500, "server_error", "internal_error", "", "cannot start a download thread");
        *accepted = 1;
    }
    *out = objects_model_get(h->st, nm);
    if (*out && *accepted) {
        json_t *p = hubmodels_progress(h, nm);
        json_object_set_new(*out, "download", p ? p : json_null());
    }
    return *out ? 0 : api_error_set(e, 500, "server_error", "internal_error", "", "reading %s back failed", nm);
}

json_t *hubmodels_progress(hubmodels *h, const char *name) {
    pthread_mutex_lock(&h->mu);
    dl *d = find_dl(h, name);
    json_t *o = d && !d->finished ? progress_json(d) : NULL;
    pthread_mutex_unlock(&h->mu);
    return o;
}

int hubmodels_events(hubmodels *h, const char *name, const api_page *pg, json_t **out, api_error *e) {
    (void)e;
    int limit = pg && pg->limit > 0 ? pg->limit : 20;
    int64_t after = pg && pg->after ? api_id_parse(API_ID_MODEL_EVENT, pg->after) : 0;
    if (!after) after = INT64_MAX; /* the first page */
    json_t *data = json_array();
    pthread_mutex_lock(&h->mu);
    dl *d = find_dl(h, name);
    int more = 0;
    for (size_t i = d ? json_array_size(d->items) : 0; i-- > 0;) {
        json_t *it = json_array_get(d->items, i);
        int64_t seq = json_integer_value(json_object_get(it, "seq"));
        if (seq >= after) continue;
        if ((int)json_array_size(data) == limit) {
            more = 1;
            break;
        }
        json_array_append_new(data, objects_model_event(seq, json_object_get(it, "created_at"),
                                                        json_string_value(json_object_get(it, "event")),
                                                        json_object_get(it, "data")));
    }
    pthread_mutex_unlock(&h->mu);
    *out = objects_model_event_list(data, more);
    return 0;
}

int hubmodels_feed(hubmodels *h, const char *name, int64_t after_seq, int max, int timeout_ms, json_t **items,
                   int *finished, api_error *e) {
    (void)e;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    json_t *out = json_array();
    pthread_mutex_lock(&h->mu);
    for (;;) {
        dl *d = find_dl(h, name);
        size_t n = d ? json_array_size(d->items) : 0;
        for (size_t i = 0; i < n && (int)json_array_size(out) < max; i++) {
            json_t *it = json_array_get(d->items, i);
            if (json_integer_value(json_object_get(it, "seq")) > after_seq)
                json_array_append_new(out, json_pack("{s:O,s:O,s:O}", "seq", json_object_get(it, "seq"), "event",
                                                     json_object_get(it, "event"), "data", json_object_get(it, "data")));
        }
        int done = !d || d->finished;
        int64_t last = n ? json_integer_value(json_object_get(json_array_get(d->items, n - 1), "seq")) : 0;
        int64_t upto = json_array_size(out)
                           ? json_integer_value(json_object_get(json_array_get(out, json_array_size(out) - 1), "seq"))
                           : after_seq;
        *finished = done && upto >= last;
        if (json_array_size(out) || done) break;
        if (pthread_cond_timedwait(&h->cv, &h->mu, &until)) break;
    }
    pthread_mutex_unlock(&h->mu);
    *items = out;
    return 0;
}

/* ---- start-up ------------------------------------------------------------------------- */

/* Every ref of models--ORG--NAME under the models folder. */
static int scan_repo(hubmodels *h, const char *base, const char *folder) {
    /* models--org--name -> org/name (ids have no "--") */
    const char *p = folder + 8, *sep = strstr(p, "--");
    if (!sep) return 0;
    char repo[AL_HF_REPO_MAX];
    snprintf(repo, sizeof repo, "%.*s/%s", (int)(sep - p), p, sep + 2);
    if (!al_hf_repo_ok(repo)) return 0;
    char refs[STORE_PATH + 300];
    snprintf(refs, sizeof refs, "%s/%s/refs", base, folder);
    DIR *d = opendir(refs);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* branches with '/' (refs/pr/N) are found by name only */
        char dir[STORE_PATH], commit[41], name[256], e2[AL_ERRLEN];
        if (al_hf_snapshot(base, repo, e->d_name, dir, sizeof dir, commit, e2)) {
            log_warn("event=model_skipped repo=%s rev=%s reason=\"%s\"", repo, e->d_name, e2);
            continue;
        }
        ref_name(repo, e->d_name, name);
        store_model m;
        if (store_model_get(h->st, name, &m) == STORE_OK && !strcmp(m.path, dir)) {
            n++;
            continue;
        }
        api_error ae;
        if (!register_cached(h, name, repo, e->d_name, dir, commit, &ae)) n++;
        else log_warn("event=model_skipped model=%s reason=\"%s\"", name, ae.message);
    }
    closedir(d);
    return n;
}

int hubmodels_scan(hubmodels *h) {
    int n = 0;
    DIR *d = h->models_dir[0] ? opendir(h->models_dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "models--", 8)) n += scan_repo(h, h->models_dir, e->d_name);
    if (d) closedir(d);
    /* downloads a stop cut short */
    const char *after = NULL;
    char last[256];
    for (;;) {
        store_rows page;
        if (store_model_page(h->st, after, 100, &page)) break;
        const store_model_row *rows = page.v;
        for (int i = 0; i < page.n; i++) {
            store_model row = rows[i].m;
            if (strcmp(row.status, "downloading")) continue;
            json_t *src = row.source[0] ? json_loads(row.source, 0, NULL) : NULL;
            const char *repo = json_string_value(json_object_get(src, "repo"));
            const char *rev = json_string_value(json_object_get(src, "revision"));
            if (h->allow && repo && rev) {
                pthread_mutex_lock(&h->mu);
                start_download(h, row.name, repo, rev);
                pthread_mutex_unlock(&h->mu);
            } else {
                snprintf(row.status, sizeof row.status, "failed");
                to_json_text(json_pack("{s:s,s:s}", "code", "interrupted", "message",
                                       "the daemon stopped during the download and downloads are now off"),
                             row.error, sizeof row.error);
                store_model_put(h->st, &row);
            }
            json_decref(src);
        }
        int more = page.more && page.n;
        if (page.n) snprintf(last, sizeof last, "%s", rows[page.n - 1].m.name);
        store_rows_free(&page);
        if (!more) break;
        after = last;
    }
    return n;
}

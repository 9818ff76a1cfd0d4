/* OpenAI-compatible inference: POST /v1/chat/completions and
 * POST /v1/completions, served from any registered model, fine-tuned output
 * or checkpoint (the backend's model_path gives the folder) through the
 * shared compute core.
 *
 * Loaded models live in a small cache (least recently used out first, never
 * one in use). Each loaded model has one decode thread that owns its
 * al_decoder (lib/model/decode.c, continuous batching): requests queue
 * their sequences (n of them for n choices), the thread admits them between
 * steps, and every step runs one forward over all live sequences, so
 * concurrent requests to one model share the matrix products instead of
 * taking turns. The HTTP thread of a request waits on the entry's condition
 * variable for its tokens: the whole answer, or with "stream": true one
 * server-sent chunk per token as it is generated (OpenAI's
 * chat.completion.chunk / text_completion shapes, "data: [DONE]" last).
 * Streamed text never splits a UTF-8 character (an incomplete one waits
 * for its next token; bytes that can never form one become U+FFFD), and
 * text that may be the start of a stop string waits until it is known not
 * to be. A client that goes away cancels its sequences at the next step.
 *
 * Locks: the cache's mu (entries, refs) and each entry's mu (its task
 * queue, tokens, the decode thread's state); never the cache's inside an
 * entry's. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"
#include "model/model.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/lm.h"

#define CACHE_SLOTS 8

#define MAX_SEQS 16      /* sequences decoded at once per model */
#define MAX_ROWS 256     /* rows per step: decoding sequences + prompt chunks */
#define MAX_N 16         /* choices per request */

struct task;

typedef struct cache_ent {
    char dir[API_PATH_MAX];
    struct timespec mtime;   /* of config.json/adapter_config.json when loaded */
    al_lm lm;                /* the model, its tokenizer and chat template */
    int32_t stops[AL_LM_MAX_STOPS]; /* the ids that end an answer (al_lm_stop_ids) */
    int n_stops;
    int refs;                /* under the cache's mu */
    unsigned long last_used;
    size_t mem;
    /* the decode thread and its queue, under mu */
    pthread_mutex_t mu;
    pthread_cond_t work;     /* the decode thread waits for requests */
    pthread_cond_t tokens;   /* requests wait for tokens */
    pthread_t th;
    int started, stop;
    al_decoder *dec;         /* the decode thread's only */
    struct task *pending, *active;
    struct { struct task *t; int c; } owner[MAX_SEQS];
    unsigned long steps, rows; /* decode steps run, rows they carried */
} cache_ent;

struct api_model_cache {
    pthread_mutex_t mu;
    int capacity;
    cache_ent *e[CACHE_SLOTS];
    unsigned long tick;
};

api_model_cache *api_model_cache_new(int capacity) {
    api_model_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->capacity = capacity < 1 ? 1 : capacity > CACHE_SLOTS ? CACHE_SLOTS : capacity;
    return c;
}

static void *decode_main(void *arg);

static void ent_free(cache_ent *e) {
    if (!e) return;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = 1;
        pthread_cond_broadcast(&e->work);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->th, NULL);
    }
    al_decoder_free(e->dec);
    al_lm_close(&e->lm);
    pthread_cond_destroy(&e->work);
    pthread_cond_destroy(&e->tokens);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

void api_model_cache_free(api_model_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SLOTS; i++) ent_free(c->e[i]);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

size_t api_model_cache_memory(api_model_cache *c, int *n_models) {
    size_t mem = 0;
    int n = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (c->e[i]) {
            mem += c->e[i]->mem;
            n++;
        }
    pthread_mutex_unlock(&c->mu);
    if (n_models) *n_models = n;
    return mem;
}

/* The newest modification time of the folder's config files: a folder
 * rewritten in place (a re-registered name) is loaded again. */
static struct timespec dir_mtime(const char *dir) {
    struct timespec best = {0, 0};
    const char *files[] = {"config.json", "adapter_config.json", "model.safetensors",
                           "adapter_model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[API_PATH_MAX + 40];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        struct stat st;
        if (stat(p, &st) == 0 &&
            (st.st_mtim.tv_sec > best.tv_sec ||
             (st.st_mtim.tv_sec == best.tv_sec && st.st_mtim.tv_nsec > best.tv_nsec)))
            best = st.st_mtim;
    }
    return best;
}

static cache_ent *ent_load(const char *dir, int bf16, char err[AL_ERRLEN]) {
    cache_ent *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, AL_ERRLEN, "out of memory");
        return NULL;
    }
    snprintf(e->dir, sizeof e->dir, "%s", dir);
    e->mtime = dir_mtime(dir);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_cond_init(&e->tokens, NULL);
    /* the daemon's dtype: in bf16 the weights are held in bf16 too */
    al_lm_cfg lc = {.open_flags = AL_OPEN_FROZEN | (bf16 ? AL_OPEN_BF16 : 0)};
    if (al_lm_open(&e->lm, dir, &lc, err)) {
        ent_free(e);
        return NULL;
    }
    if (!al_model_config_of(e->lm.m)->has_lm_head) {
        snprintf(err, AL_ERRLEN, "the model has a scalar head and no language-model head");
        ent_free(e);
        return NULL;
    }
    /* the folder's files, and the model's own eos (an adapter's is its base's) */
    int n = al_lm_stop_ids(&e->lm, e->stops, (int)(sizeof e->stops / sizeof e->stops[0]), err);
    if (n < 0) {
        ent_free(e);
        return NULL;
    }
    e->n_stops = n;
    if (!(e->dec = al_decoder_new(e->lm.m, MAX_SEQS, MAX_ROWS, err))) {
        ent_free(e);
        return NULL;
    }
    if (pthread_create(&e->th, NULL, decode_main, e)) {
        snprintf(err, AL_ERRLEN, "cannot start a decode thread");
        ent_free(e);
        return NULL;
    }
    e->started = 1;
    e->mem = al_model_memory(e->lm.m);
    return e;
}

/* A loaded model for dir (refs taken); NULL with err when it cannot load. */
static cache_ent *cache_get(api_model_cache *c, const char *dir, int bf16, char err[AL_ERRLEN]) {
    struct timespec mt = dir_mtime(dir);
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        cache_ent *e = c->e[i];
        if (e && !strcmp(e->dir, dir)) {
            if (e->mtime.tv_sec == mt.tv_sec && e->mtime.tv_nsec == mt.tv_nsec) {
                e->refs++;
                e->last_used = ++c->tick;
                pthread_mutex_unlock(&c->mu);
                return e;
            }
            if (e->refs == 0) { /* stale and idle: drop it */
                ent_free(e);
                c->e[i] = NULL;
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
    cache_ent *fresh = ent_load(dir, bf16, err);
    if (!fresh) return NULL;
    pthread_mutex_lock(&c->mu);
    /* Someone may have loaded it meanwhile. */
    for (int i = 0; i < CACHE_SLOTS; i++) {
        cache_ent *e = c->e[i];
        if (e && !strcmp(e->dir, dir) && e->mtime.tv_sec == fresh->mtime.tv_sec &&
            e->mtime.tv_nsec == fresh->mtime.tv_nsec) {
            e->refs++;
            e->last_used = ++c->tick;
            pthread_mutex_unlock(&c->mu);
            ent_free(fresh);
            return e;
        }
    }
    /* Evict idle models beyond the capacity, least recently used first. */
    for (;;) {
        int n = 0, victim = -1;
        for (int i = 0; i < CACHE_SLOTS; i++) {
            if (!c->e[i]) continue;
            n++;
            if (c->e[i]->refs == 0 &&
                (victim < 0 || c->e[i]->last_used < c->e[victim]->last_used))
                victim = i;
        }
        if (n < c->capacity || victim < 0) break;
        ent_free(c->e[victim]);
        c->e[victim] = NULL;
    }
    int slot = -1;
    for (int i = 0; i < CACHE_SLOTS && slot < 0; i++)
        if (!c->e[i]) slot = i;
    if (slot < 0) {
        pthread_mutex_unlock(&c->mu);
        ent_free(fresh);
        snprintf(err, AL_ERRLEN, "busy");
        return NULL;
    }
    fresh->refs = 1;
    fresh->last_used = ++c->tick;
    c->e[slot] = fresh;
    pthread_mutex_unlock(&c->mu);
    return fresh;
}

static void cache_put(api_model_cache *c, cache_ent *e) {
    pthread_mutex_lock(&c->mu);
    e->refs--;
    pthread_mutex_unlock(&c->mu);
}

/* ---- request validation ------------------------------------------------------ */

typedef struct gen_req {
    int chat;                 /* chat.completions or completions */
    const char *model;
    json_t *messages;         /* normalised: [{role, content: string}] (owned) */
    const char *prompt;
    size_t prompt_len;
    int echo;
    int max_tokens;           /* 0: up to the cap / context */
    double temperature, top_p;
    int top_k;
    int has_seed;
    uint64_t seed;
    const char *stop[4];
    int n_stop;
    int stream, include_usage;
    int n;                    /* choices */
} gen_req;

static int bad(api_error *e, const char *code, const char *param, const char *msg) {
    return api_error_set(e, 400, "invalid_request_error", code, param, "%s: %s", param, msg);
}

static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};

static int parse_messages(const json_t *msgs, json_t **out, api_error *e) {
    if (!msgs) return bad(e, "missing_field", "messages", "missing");
    if (!json_is_array(msgs)) return bad(e, "invalid_type", "messages", "must be an array");
    if (json_array_size(msgs) == 0)
        return bad(e, "invalid_value", "messages", "must hold at least one message");
    if (json_array_size(msgs) > 4096)
        return bad(e, "invalid_value", "messages", "at most 4096 messages");
    json_t *norm = json_array();
    size_t i;
    json_t *m;
    char param[64];
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            snprintf(param, sizeof param, "messages[%zu]", i);
            json_decref(norm);
            return bad(e, "invalid_type", param, "must be an object");
        }
        const json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!role) {
            json_decref(norm);
            return bad(e, "missing_field", param, "missing");
        }
        int ok = 0;
        if (json_is_string(role))
            for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
                if (!strcmp(json_string_value(role), roles[k])) ok = 1;
        if (!ok) {
            json_decref(norm);
            return bad(e, "invalid_value", param,
                       "must be one of system, user, assistant, tool, developer");
        }
        const char *r = json_string_value(role);
        if (!strcmp(r, "developer")) r = "system";
        const json_t *content = json_object_get(m, "content");
        snprintf(param, sizeof param, "messages[%zu].content", i);
        json_t *text = NULL;
        if (json_is_string(content)) {
            text = json_stringn(json_string_value(content), json_string_length(content));
        } else if (json_is_array(content)) {
            /* content parts: only text parts are understood */
            size_t total = 0, k;
            json_t *part;
            json_array_foreach(content, k, part) {
                const json_t *ty = json_object_get(part, "type");
                const json_t *tx = json_object_get(part, "text");
                if (!json_is_object(part) || !json_is_string(ty) ||
                    strcmp(json_string_value(ty), "text") || !json_is_string(tx)) {
                    json_decref(norm);
                    return bad(e, "invalid_value", param,
                               "only text parts ({\"type\":\"text\",\"text\":...}) are "
                               "supported");
                }
                total += json_string_length(tx);
            }
            char *buf = malloc(total + 1);
            if (!buf) {
                json_decref(norm);
                return api_error_set(e, 500, "server_error", "internal_error", "",
                                     "out of memory");
            }
            size_t at = 0;
            json_array_foreach(content, k, part) {
                const json_t *tx = json_object_get(part, "text");
                memcpy(buf + at, json_string_value(tx), json_string_length(tx));
                at += json_string_length(tx);
            }
            text = json_stringn(buf, at);
            free(buf);
        } else if ((!content || json_is_null(content)) && !strcmp(r, "assistant")) {
            text = json_string("");
        } else {
            json_decref(norm);
            return bad(e, content ? "invalid_type" : "missing_field", param,
                       content ? "must be a string or an array of text parts" : "missing");
        }
        if (!text) {
            json_decref(norm);
            return bad(e, "invalid_value", param, "must be valid UTF-8");
        }
        json_array_append_new(norm, json_pack("{s:s,s:o}", "role", r, "content", text));
    }
    *out = norm;
    return 0;
}

static int get_number(const json_t *body, const char *k, double lo, double hi, double *out,
                      api_error *e) {
    const json_t *v = json_object_get(body, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(e, "invalid_type", k, "must be a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        char msg[96];
        snprintf(msg, sizeof msg, "must be between %g and %g", lo, hi);
        return bad(e, "invalid_value", k, msg);
    }
    *out = x;
    return 0;
}

static int get_bool(const json_t *body, const char *k, int *out, api_error *e) {
    const json_t *v = json_object_get(body, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad(e, "invalid_type", k, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int parse_req(api_server *s, const json_t *body, int chat, gen_req *g, api_error *e) {
    memset(g, 0, sizeof *g);
    g->chat = chat;
    g->temperature = 1.0;
    g->top_p = 1.0;
    const json_t *model = json_object_get(body, "model");
    if (!model) return bad(e, "missing_field", "model", "missing");
    if (!json_is_string(model) || !json_string_length(model))
        return bad(e, "invalid_type", "model", "must be a model name");
    g->model = json_string_value(model);
    if (chat) {
        if (parse_messages(json_object_get(body, "messages"), &g->messages, e)) return -1;
    } else {
        const json_t *p = json_object_get(body, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
            p = json_array_get(p, 0);
        if (!p) return bad(e, "missing_field", "prompt", "missing");
        if (!json_is_string(p)) return bad(e, "invalid_type", "prompt", "must be a string");
        g->prompt = json_string_value(p);
        g->prompt_len = json_string_length(p);
        if (get_bool(body, "echo", &g->echo, e)) return -1;
    }
    const char *mt_name = "max_tokens";
    const json_t *mt = json_object_get(body, "max_tokens");
    if (chat && json_object_get(body, "max_completion_tokens")) {
        mt_name = "max_completion_tokens";
        mt = json_object_get(body, mt_name);
    }
    if (mt && !json_is_null(mt)) {
        if (!json_is_integer(mt)) return bad(e, "invalid_type", mt_name, "must be an integer");
        json_int_t v = json_integer_value(mt);
        if (v < 1 || v > s->cfg.max_tokens) {
            char msg[96];
            snprintf(msg, sizeof msg, "must be between 1 and %d", s->cfg.max_tokens);
            return bad(e, "invalid_value", mt_name, msg);
        }
        g->max_tokens = (int)v;
    }
    if (get_number(body, "temperature", 0, 2, &g->temperature, e) ||
        get_number(body, "top_p", 0, 1, &g->top_p, e))
        return -1;
    const json_t *tk = json_object_get(body, "top_k");
    if (tk && !json_is_null(tk)) {
        if (!json_is_integer(tk) || json_integer_value(tk) < 0 ||
            json_integer_value(tk) > (1 << 24))
            return bad(e, "invalid_value", "top_k", "must be a non-negative integer");
        g->top_k = (int)json_integer_value(tk);
    }
    const json_t *seed = json_object_get(body, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) return bad(e, "invalid_type", "seed", "must be an integer");
        g->has_seed = 1;
        g->seed = (uint64_t)json_integer_value(seed);
    }
    const json_t *n = json_object_get(body, "n");
    g->n = 1;
    if (n && !json_is_null(n)) {
        if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > MAX_N)
            return bad(e, "invalid_value", "n", "must be an integer between 1 and 16");
        g->n = (int)json_integer_value(n);
    }
    const json_t *lp = json_object_get(body, "logprobs");
    if (lp && !json_is_null(lp) && !json_is_false(lp))
        return bad(e, "unsupported_value", "logprobs", "log-probabilities are not returned");
    const json_t *stop = json_object_get(body, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_string(stop)) {
            if (!json_string_length(stop)) return bad(e, "invalid_value", "stop", "is empty");
            g->stop[g->n_stop++] = json_string_value(stop);
        } else if (json_is_array(stop)) {
            if (json_array_size(stop) > 4)
                return bad(e, "invalid_value", "stop", "at most 4 sequences");
            size_t i;
            json_t *x;
            json_array_foreach(stop, i, x) {
                char param[32];
                snprintf(param, sizeof param, "stop[%zu]", i);
                if (!json_is_string(x) || !json_string_length(x))
                    return bad(e, "invalid_value", param, "must be a non-empty string");
                g->stop[g->n_stop++] = json_string_value(x);
            }
        } else {
            return bad(e, "invalid_type", "stop", "must be a string or an array of strings");
        }
    }
    if (get_bool(body, "stream", &g->stream, e)) return -1;
    const json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad(e, "invalid_type", "stream_options", "must be an object");
        const json_t *iu = json_object_get(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return bad(e, "invalid_type", "stream_options.include_usage", "must be true or false");
        g->include_usage = iu && json_is_true(iu);
    }
    return 0;
}

/* ---- tasks and the decode thread ------------------------------------------------ */

typedef struct gchoice {
    int slot;                 /* the decoder's, while decoding; -1 otherwise */
    int32_t *ids;             /* sampled tokens (a stop token excluded) */
    int n, cap;
    int finished;             /* no more tokens will come */
    int stopped;              /* by a stop token (else by length) */
    int cancel;               /* drop it at the next step */
} gchoice;

/* One request's sequences. Linked in its entry's pending or active list
 * while the decode thread may touch it; the request frees it once it is
 * unlinked, or marks it abandoned for the decode thread to free. */
typedef struct task {
    struct task *next;
    int32_t *prompt;
    int plen;
    al_gen_cfg gc;
    int32_t stops[AL_LM_MAX_STOPS];
    uint64_t seed;
    int n;
    gchoice ch[MAX_N];
    int linked, abandoned, failed;
    char err[AL_ERRLEN];
} task;

static void task_free(task *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) free(t->ch[i].ids);
    free(t->prompt);
    free(t);
}

/* Locked. Ends every choice of t still decoding. */
static void task_end(cache_ent *e, task *t) {
    for (int i = 0; i < t->n; i++) {
        gchoice *c = &t->ch[i];
        if (c->slot >= 0) {
            al_decoder_remove(e->dec, c->slot);
            e->owner[c->slot].t = NULL;
            c->slot = -1;
        }
        c->finished = 1;
    }
}

/* Locked. Unlinks the active tasks that are over; frees the abandoned. */
static void reap(cache_ent *e) {
    task **pp = &e->active;
    while (*pp) {
        task *t = *pp;
        int over = 1;
        for (int i = 0; i < t->n; i++) {
            gchoice *c = &t->ch[i];
            if (c->cancel && !c->finished) {
                al_decoder_remove(e->dec, c->slot);
                e->owner[c->slot].t = NULL;
                c->slot = -1;
                c->finished = 1;
            }
            over &= c->finished;
        }
        if (!over) {
            pp = &t->next;
            continue;
        }
        *pp = t->next;
        t->linked = 0;
        if (t->abandoned) task_free(t);
    }
}

/* Locked. Starts the pending tasks that fit, oldest first. */
static void admit(cache_ent *e) {
    char err[AL_ERRLEN];
    while (e->pending) {
        task *t = e->pending;
        if (t->abandoned) {
            e->pending = t->next;
            task_free(t);
            continue;
        }
        if (t->n > MAX_SEQS - al_decoder_live(e->dec)) return;
        e->pending = t->next;
        t->next = e->active;
        e->active = t;
        for (int i = 0; i < t->n; i++) {
            int slot = al_decoder_add(e->dec, t->prompt, t->plen, &t->gc,
                                      t->seed + (uint64_t)i * 0x9E3779B97F4A7C15ull, err);
            if (slot < 0) {
                t->failed = 1;
                snprintf(t->err, sizeof t->err, "%s", err);
                task_end(e, t);
                break;
            }
            t->ch[i].slot = slot;
            e->owner[slot].t = t;
            e->owner[slot].c = i;
        }
    }
}

static void add_token(gchoice *c, int32_t tok) {
    if (c->n == c->cap) {
        int nc = c->cap ? 2 * c->cap : 64;
        int32_t *ni = realloc(c->ids, (size_t)nc * sizeof *ni);
        if (!ni) return; /* the text stops growing; the choice still ends */
        c->ids = ni;
        c->cap = nc;
    }
    c->ids[c->n++] = tok;
}

static void *decode_main(void *arg) {
    cache_ent *e = arg;
    al_dec_out out[MAX_SEQS];
    char err[AL_ERRLEN];
    pthread_mutex_lock(&e->mu);
    for (;;) {
        admit(e);
        reap(e);
        pthread_cond_broadcast(&e->tokens);
        if (e->stop) break;
        if (!al_decoder_live(e->dec)) {
            pthread_cond_wait(&e->work, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        int k = al_decoder_step(e->dec, out, MAX_SEQS, err);
        pthread_mutex_lock(&e->mu);
        if (k < 0) {
            for (task *t = e->active; t; t = t->next) {
                t->failed = 1;
                snprintf(t->err, sizeof t->err, "%s", err);
                task_end(e, t);
            }
            continue;
        }
        e->steps++;
        e->rows += (unsigned long)al_decoder_last_rows(e->dec);
        for (int j = 0; j < k; j++) {
            task *t = e->owner[out[j].slot].t;
            if (!t) continue;
            gchoice *c = &t->ch[e->owner[out[j].slot].c];
            int is_stop = 0;
            for (int q = 0; q < t->gc.n_stop; q++) is_stop |= out[j].token == t->gc.stop[q];
            if (is_stop) c->stopped = 1;
            else if (out[j].token >= 0) add_token(c, out[j].token);
            if (out[j].done) {
                e->owner[out[j].slot].t = NULL;
                c->slot = -1;
                c->finished = 1;
            }
        }
    }
    /* stopping: only abandoned tasks can be left (no request holds the entry) */
    task *lists[2] = {e->pending, e->active};
    e->pending = e->active = NULL;
    for (int l = 0; l < 2; l++)
        while (lists[l]) {
            task *t = lists[l];
            lists[l] = t->next;
            task_end(e, t);
            t->linked = 0;
            if (t->abandoned) task_free(t);
        }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void task_submit(cache_ent *e, task *t) {
    pthread_mutex_lock(&e->mu);
    t->linked = 1;
    task **pp = &e->pending;
    while (*pp) pp = &(*pp)->next;
    *pp = t;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
}

/* The request is done with t: it is freed now or by the decode thread. */
static void task_leave(cache_ent *e, task *t) {
    pthread_mutex_lock(&e->mu);
    t->abandoned = 1;
    for (int i = 0; i < t->n; i++) t->ch[i].cancel = 1;
    int now = !t->linked;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    if (now) task_free(t);
}

void api_model_cache_decode_stats(api_model_cache *c, unsigned long *steps, unsigned long *rows, int *live) {
    *steps = *rows = 0;
    *live = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        cache_ent *e = c->e[i];
        if (!e) continue;
        pthread_mutex_lock(&e->mu);
        *steps += e->steps;
        *rows += e->rows;
        *live += al_decoder_live(e->dec);
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- text of the choices --------------------------------------------------------- */

/* What a request shows of one choice: the decoded text so far, made valid
 * UTF-8, cut at a stop string. */
typedef struct cview {
    char *text;
    size_t len;
    size_t safe;              /* bytes that may go out now (held back: a possible stop string) */
    size_t sent;              /* bytes streamed */
    int n_ids;                /* tokens decoded into text */
    int done;                 /* the text is final */
    const char *finish;       /* "stop" | "length" once done */
    int tokens;               /* completion tokens counted */
    int finish_sent, role_sent;
} cview;

typedef struct gen_ctx {
    api_server *s;
    cache_ent *ce;
    gen_req g;
    json_t *body;             /* owns g's strings */
    task *t;
    cview v[MAX_N];
    int prompt_tokens;
    char id[64];
    json_int_t created;
    int failed;
    char err[AL_ERRLEN];
} gen_ctx;

/* in (n bytes) as valid UTF-8: a sequence that can never be a character
 * becomes U+FFFD; an incomplete one at the end is kept out (*held set)
 * unless final, when it also becomes U+FFFD. */
static char *utf8_clean(const char *in, size_t n, int final, size_t *out_len) {
    al_buf o = {0};
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)in[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (k == 1) {
            al_buf_put(&o, in + i, 1);
            i++;
            continue;
        }
        size_t have = 1;
        while (k && have < k && i + have < n && ((unsigned char)in[i + have] & 0xC0) == 0x80) have++;
        if (k && have == k) {
            json_t *probe = json_stringn(in + i, k); /* overlong forms, surrogates */
            if (probe) {
                json_decref(probe);
                al_buf_put(&o, in + i, k);
                i += k;
                continue;
            }
        } else if (k && i + have == n && !final) {
            break; /* may complete with the next token */
        }
        al_buf_put(&o, "\xEF\xBF\xBD", 3);
        i += k && have > 1 ? have : 1;
    }
    return al_buf_take(&o, out_len);
}

/* Bytes at the end of text that could start one of the stop strings. */
static size_t stop_holdback(const gen_req *g, const char *text, size_t len) {
    size_t hold = 0;
    for (int i = 0; i < g->n_stop; i++) {
        size_t sl = strlen(g->stop[i]);
        for (size_t k = sl - 1; k > hold && k > 0; k--)
            if (k <= len && !memcmp(text + len - k, g->stop[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* Brings every view up to date with its choice's tokens. Returns 1 when
 * every choice is done. */
static int views_update(gen_ctx *x) {
    cache_ent *e = x->ce;
    task *t = x->t;
    int all = 1;
    for (int i = 0; i < t->n; i++) {
        cview *v = &x->v[i];
        if (v->done) continue;
        pthread_mutex_lock(&e->mu);
        gchoice *c = &t->ch[i];
        int n = c->n, fin = c->finished, stopped = c->stopped;
        int32_t *ids = n > v->n_ids ? malloc((size_t)n * sizeof *ids) : NULL;
        if (ids) memcpy(ids, c->ids, (size_t)n * sizeof *ids);
        if (t->failed && !x->failed) {
            x->failed = 1;
            snprintf(x->err, sizeof x->err, "%s", t->err);
        }
        pthread_mutex_unlock(&e->mu);
        if (ids || (fin && !v->done)) {
            char *raw = NULL;
            size_t rl = 0;
            if (!ids || al_tok_decode(e->lm.tok, ids, n, 1, &raw, &rl) == AL_OK) {
                if (ids) {
                    size_t cl;
                    char *clean = utf8_clean(raw ? raw : "", rl, fin, &cl);
                    /* a tokenizer may decode an unfinished character as U+FFFD
                     * itself: until the choice ends, that is held back too */
                    while (clean && !fin && cl >= 3 && !memcmp(clean + cl - 3, "\xEF\xBF\xBD", 3)) clean[cl -= 3] = 0;
                    if (clean && v->sent <= cl && (!v->text || !memcmp(clean, v->text, v->sent))) {
                        free(v->text);
                        v->text = clean;
                        v->len = cl;
                        v->n_ids = n;
                    } else if (clean) {
                        /* the new text does not extend what went out: keep the
                         * old until it does (or the choice ends) */
                        free(clean);
                        if (fin) v->n_ids = n;
                    }
                }
                v->tokens = v->n_ids;
                /* the earliest stop string ends the text */
                size_t cut = v->len;
                for (int k = 0; k < x->g.n_stop && v->text; k++) {
                    const char *m = strstr(v->text, x->g.stop[k]);
                    if (m && (size_t)(m - v->text) < cut) cut = (size_t)(m - v->text);
                }
                if (cut < v->len) {
                    v->len = cut;
                    v->text[cut] = 0;
                    v->done = 1;
                    v->finish = "stop";
                    /* tokens up to the one where the stop string began */
                    for (int k = 1; k <= v->n_ids && ids; k++) {
                        char *t2 = NULL;
                        size_t l2 = 0;
                        if (al_tok_decode(e->lm.tok, ids, k, 1, &t2, &l2) == AL_OK && l2 > cut) {
                            free(t2);
                            v->tokens = k;
                            break;
                        }
                        free(t2);
                    }
                    pthread_mutex_lock(&e->mu);
                    c->cancel = 1;
                    pthread_cond_signal(&e->work);
                    pthread_mutex_unlock(&e->mu);
                } else if (fin && n == v->n_ids) {
                    v->done = 1;
                    v->finish = stopped ? "stop" : "length";
                }
            }
            free(raw);
            free(ids);
        }
        if (!v->text) {
            v->text = calloc(1, 1);
            v->len = 0;
        }
        v->safe = v->done ? v->len : v->len - stop_holdback(&x->g, v->text, v->len);
        all &= v->done;
    }
    return all;
}

/* Waits up to ms for tokens. */
static void wait_tokens(gen_ctx *x, int ms) {
    cache_ent *e = x->ce;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)ms * 1000000L;
    while (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&e->mu);
    int news = 0;
    for (int i = 0; i < x->t->n; i++)
        news |= x->t->ch[i].n > x->v[i].n_ids || (x->t->ch[i].finished && !x->v[i].done);
    if (!news) pthread_cond_timedwait(&e->tokens, &e->mu, &until);
    pthread_mutex_unlock(&e->mu);
}

/* ---- preparing a request ------------------------------------------------------------ */

static atomic_ulong seed_counter;

/* The request's prompt and settings into a task. */
static int make_task(gen_ctx *x, api_error *e) {
    const gen_req *g = &x->g;
    cache_ent *ce = x->ce;
    char err[AL_ERRLEN] = "";
    al_seq seq;
    memset(&seq, 0, sizeof seq);
    int rc = g->chat ? al_chat_encode_prompt_messages(ce->lm.chat, g->messages, NULL, &seq, err)
                     : al_chat_encode_prompt(ce->lm.chat, g->prompt, g->prompt_len, &seq, err);
    if (rc) {
        if (rc == AL_EUNSUP && g->chat)
            return api_error_set(e, 400, "invalid_request_error", "no_chat_template", "model",
                                 "model: %s has no chat template; use /v1/completions", g->model);
        return api_error_set(e, 400, "invalid_request_error", "invalid_value",
                             g->chat ? "messages" : "prompt", "%s: %s",
                             g->chat ? "messages" : "prompt", err);
    }
    const al_model_config *mc = al_model_config_of(ce->lm.m);
    if (seq.n == 0) {
        al_seq_deinit(&seq);
        return bad(e, "invalid_value", g->chat ? "messages" : "prompt", "encodes to no tokens");
    }
    if (seq.n >= mc->max_T) {
        int n = seq.n;
        al_seq_deinit(&seq);
        return api_error_set(e, 400, "invalid_request_error", "context_length_exceeded",
                             g->chat ? "messages" : "prompt",
                             "%s: %d tokens, the model's context is %d tokens",
                             g->chat ? "messages" : "prompt", n, mc->max_T);
    }
    task *t = calloc(1, sizeof *t);
    if (!t || !(t->prompt = malloc((size_t)seq.n * sizeof *t->prompt))) {
        free(t);
        al_seq_deinit(&seq);
        return api_error_set(e, 500, "server_error", "internal_error", "", "out of memory");
    }
    memcpy(t->prompt, seq.ids, (size_t)seq.n * sizeof *t->prompt);
    t->plen = seq.n;
    al_seq_deinit(&seq);
    int max_new = g->max_tokens ? g->max_tokens : x->s->cfg.max_tokens;
    if (max_new > mc->max_T - t->plen) max_new = mc->max_T - t->plen;
    int n_stops = ce->n_stops;
    memcpy(t->stops, ce->stops, (size_t)n_stops * sizeof *t->stops);
    t->gc = (al_gen_cfg){.max_new = max_new,
                         .temperature = g->top_p == 0 ? 0.0f : (float)g->temperature,
                         .top_k = g->top_k,
                         .top_p = g->top_p == 0 ? 1.0f : (float)g->top_p,
                         .stop = t->stops,
                         .n_stop = n_stops};
    t->seed = g->has_seed ? g->seed
                          : (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^
                                (uint64_t)atomic_fetch_add(&seed_counter, 1);
    t->n = g->n;
    for (int i = 0; i < t->n; i++) t->ch[i].slot = -1;
    x->t = t;
    x->prompt_tokens = t->plen;
    return 0;
}

/* ---- responses ------------------------------------------------------------------ */

static void make_id(api_server *s, const char *prefix, char out[64]) {
    unsigned long n = (unsigned long)atomic_fetch_add(&s->stream_seq, 1);
    uint64_t x = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ (n * 0xBF58476D1CE4E5B9ull) ^
                 (uint64_t)(uintptr_t)s;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    snprintf(out, 64, "%s%016llx%08lx", prefix, (unsigned long long)x, n & 0xffffffffUL);
}

static json_t *usage_obj(const gen_ctx *x) {
    int comp = 0;
    for (int i = 0; i < x->g.n; i++) comp += x->v[i].tokens;
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", x->prompt_tokens, "completion_tokens", comp,
                     "total_tokens", x->prompt_tokens + comp);
}

static json_t *full_response(const gen_ctx *x) {
    const gen_req *g = &x->g;
    json_t *choices = json_array();
    for (int i = 0; i < g->n; i++) {
        const cview *v = &x->v[i];
        json_t *c;
        if (g->chat) {
            c = json_pack("{s:i,s:{s:s,s:s%},s:n,s:s}", "index", i, "message", "role", "assistant", "content",
                          v->text, v->len, "logprobs", "finish_reason", v->finish);
        } else {
            json_t *text = json_stringn(g->echo ? g->prompt : "", g->echo ? g->prompt_len : 0);
            char *all = malloc(g->prompt_len + v->len + 1);
            json_decref(text);
            if (all) {
                size_t at = 0;
                if (g->echo) memcpy(all, g->prompt, g->prompt_len), at = g->prompt_len;
                memcpy(all + at, v->text, v->len);
                text = json_stringn(all, at + v->len);
                free(all);
            } else {
                text = NULL;
            }
            c = json_pack("{s:o,s:i,s:n,s:s}", "text", text ? text : json_string(""), "index", i, "logprobs",
                          "finish_reason", v->finish);
        }
        json_array_append_new(choices, c);
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:n,s:o,s:o}", "id", x->id, "object",
                     g->chat ? "chat.completion" : "text_completion", "created", x->created, "model", g->model,
                     "system_fingerprint", "choices", choices, "usage", usage_obj(x));
}

static json_t *chunk(const gen_ctx *x, int index, const char *piece, size_t plen, int first, const char *finish) {
    const gen_req *g = &x->g;
    json_t *choice;
    if (g->chat) {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (piece) json_object_set_new(delta, "content", json_stringn(piece, plen));
        choice = json_pack("{s:i,s:o,s:n,s:o}", "index", index, "delta", delta, "logprobs", "finish_reason",
                           finish ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:s%,s:i,s:n,s:o}", "text", piece ? piece : "", piece ? plen : 0, "index", index,
                           "logprobs", "finish_reason", finish ? json_string(finish) : json_null());
    }
    json_t *c = json_pack("{s:s,s:s,s:I,s:s,s:n,s:[o]}", "id", x->id, "object",
                          g->chat ? "chat.completion.chunk" : "text_completion", "created", x->created, "model",
                          g->model, "system_fingerprint", "choices", choice);
    if (g->include_usage && c) json_object_set_new(c, "usage", json_null());
    return c;
}

/* ---- streaming ------------------------------------------------------------------ */

typedef struct stream {
    gen_ctx *x;
    al_buf out;   /* events not yet sent, from byte off on */
    size_t off;
    int ended, oom;
    double last_write;
} stream;

static void put_event(stream *st, json_t *obj) {
    char *js = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!js || al_buf_printf(&st->out, "data: %s\n\n", js)) st->oom = 1;
    free(js);
}

/* The chunks that are due: new text of each choice, finish chunks, and at
 * the end usage and [DONE]. */
static void stream_fill(stream *st) {
    gen_ctx *x = st->x;
    int all = views_update(x);
    for (int i = 0; i < x->g.n; i++) {
        cview *v = &x->v[i];
        if (!v->role_sent) {
            v->role_sent = 1;
            if (x->g.chat) put_event(st, chunk(x, i, "", 0, 1, NULL));
            if (!x->g.chat && x->g.echo && x->g.prompt_len)
                put_event(st, chunk(x, i, x->g.prompt, x->g.prompt_len, 0, NULL));
        }
        if (v->safe > v->sent) {
            put_event(st, chunk(x, i, v->text + v->sent, v->safe - v->sent, 0, NULL));
            v->sent = v->safe;
        }
        if (v->done && !v->finish_sent) {
            v->finish_sent = 1;
            put_event(st, chunk(x, i, NULL, 0, 0, v->finish));
        }
    }
    if (x->failed) {
        json_t *err = json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", x->err, "type", "server_error",
                                "param", "code", "generation_failed");
        put_event(st, err);
        all = 1;
    }
    if (all) {
        if (x->g.include_usage)
            put_event(st, json_pack("{s:s,s:s,s:I,s:s,s:n,s:[],s:o}", "id", x->id, "object",
                                    x->g.chat ? "chat.completion.chunk" : "text_completion", "created",
                                    x->created, "model", x->g.model, "system_fingerprint", "choices", "usage",
                                    usage_obj(x)));
        if (al_buf_puts(&st->out, "data: [DONE]\n\n")) st->oom = 1;
        st->ended = 1;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    stream *st = cls;
    api_server *s = st->x->s;
    for (;;) {
        size_t sent = api_stream_drain(&st->out, &st->off, out, max, &st->last_write);
        if (sent) return (ssize_t)sent;
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (st->oom || atomic_load(&s->stopping)) return MHD_CONTENT_READER_END_WITH_ERROR;
        stream_fill(st);
        if (st->out.n) continue;
        if (al_now() - st->last_write >= (double)s->cfg.heartbeat_s) {
            if (al_buf_puts(&st->out, ": ping\n\n")) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        wait_tokens(st->x, 250);
    }
}

static void ctx_free(gen_ctx *x) {
    if (!x) return;
    if (x->t) task_leave(x->ce, x->t);
    if (x->ce) cache_put(x->s->models, x->ce);
    for (int i = 0; i < MAX_N; i++) free(x->v[i].text);
    json_decref(x->g.messages);
    json_decref(x->body);
    free(x);
}

static void stream_free(void *cls) {
    stream *st = cls;
    atomic_fetch_sub(&st->x->s->streams, 1);
    ctx_free(st->x);
    al_buf_deinit(&st->out);
    free(st);
}

/* ---- the handlers ------------------------------------------------------------------ */

static enum MHD_Result serve(api_req *r, int chat) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    gen_ctx *x = calloc(1, sizeof *x);
    if (!x) return MHD_NO;
    x->s = s;
    enum MHD_Result res;
    if (api_body_object(r, &x->body, &e) || parse_req(s, x->body, chat, &x->g, &e)) {
        res = api_reply_err(r, &e);
        goto out;
    }
    char dir[API_PATH_MAX];
    if (s->be.model_path(s->be.ud, x->g.model, dir, &e)) {
        /* the only field model_path can be about */
        if (!e.param[0]) snprintf(e.param, sizeof e.param, "model");
        res = api_reply_err(r, &e);
        goto out;
    }
    char err[AL_ERRLEN] = "";
    x->ce = cache_get(s->models, dir, s->cfg.bf16, err);
    if (!x->ce) {
        if (!strcmp(err, "busy"))
            res = api_reply_error(r, 429, "rate_limit_error", "models_busy", "model",
                                  "every loaded model is in use; retry later");
        else
            res = api_reply_error(r, 422, "invalid_request_error", "model_unusable", "model",
                                  "model: %.200s cannot be loaded: %s", x->g.model, err);
        goto out;
    }
    if (make_task(x, &e)) {
        res = api_reply_err(r, &e);
        goto out;
    }
    make_id(s, chat ? "chatcmpl-" : "cmpl-", x->id);
    x->created = (json_int_t)time(NULL);
    task_submit(x->ce, x->t);
    if (x->g.stream) {
        if (atomic_fetch_add(&s->streams, 1) >= s->cfg.max_streams) {
            atomic_fetch_sub(&s->streams, 1);
            res = api_reply_error(r, 429, "rate_limit_error", "too_many_streams", "",
                                  "too many open event streams (limit %d); retry later", s->cfg.max_streams);
            goto out;
        }
        stream *st = calloc(1, sizeof *st);
        if (!st) {
            atomic_fetch_sub(&s->streams, 1);
            res = MHD_NO;
            goto out;
        }
        st->x = x;
        st->last_write = al_now();
        return api_stream_reply(r, stream_read, st, stream_free);
    }
    while (!views_update(x) && !x->failed) {
        if (atomic_load(&s->stopping)) {
            res = api_reply_error(r, 503, "server_error", "shutting_down", "", "the server is shutting down");
            goto out;
        }
        wait_tokens(x, 250);
    }
    if (x->failed)
        res = api_reply_error(r, 500, "server_error", "generation_failed", "", "generation failed: %s", x->err);
    else
        res = api_reply_json(r, 200, full_response(x));
out:
    ctx_free(x);
    return res;
}

enum MHD_Result api_h_chat(api_req *r) { return serve(r, 1); }
enum MHD_Result api_h_completions(api_req *r) { return serve(r, 0); }

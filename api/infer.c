/* OpenAI-compatible inference: POST /v1/chat/completions and
 * POST /v1/completions, served from any registered model, fine-tuned output
 * or checkpoint (the backend's model_path gives the folder) through the
 * shared compute core (al_generate runs its products on the pool, taking
 * turns with training steps).
 *
 * Loaded models live in a small cache (least recently used out first, never
 * one in use); each holds a mutex so one generation at a time runs on it
 * (al_model is not thread-safe). Generation runs to the end before the
 * answer goes out; with "stream": true the answer is then cut into one
 * chunk per token as OpenAI's stream sends them, ending with
 * "data: [DONE]". Stop strings are applied to the decoded text. */
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

#define CACHE_SLOTS 8

typedef struct cache_ent {
    char dir[API_PATH_MAX];
    struct timespec mtime;   /* of config.json/adapter_config.json when loaded */
    al_model *m;
    al_tok *tok;
    al_chat *chat;
    pthread_mutex_t run;     /* one generation at a time on m */
    int refs;                /* under the cache's mu */
    unsigned long last_used;
    size_t mem;
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

static void ent_free(cache_ent *e) {
    if (!e) return;
    al_chat_free(e->chat);
    al_tok_free(e->tok);
    al_model_free(e->m);
    pthread_mutex_destroy(&e->run);
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
    pthread_mutex_init(&e->run, NULL);
    /* the daemon's dtype: in bf16 the weights are held in bf16 too */
    if (al_model_open_ex(&e->m, dir, NULL, AL_OPEN_FROZEN | (bf16 ? AL_OPEN_BF16 : 0), 0, err) ||
        al_tok_load(&e->tok, dir, err) || al_chat_new(&e->chat, e->tok, NULL, err)) {
        ent_free(e);
        return NULL;
    }
    if (!al_model_config_of(e->m)->has_lm_head) {
        snprintf(err, AL_ERRLEN, "the model has a scalar head and no language-model head");
        ent_free(e);
        return NULL;
    }
    e->mem = al_model_memory(e->m);
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
    if (n && !json_is_null(n) && (!json_is_integer(n) || json_integer_value(n) != 1))
        return bad(e, "invalid_value", "n", "only n = 1 is supported");
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

/* ---- generation ---------------------------------------------------------------- */

typedef struct gen_out {
    char *text;               /* the completion (stop string cut), NUL-terminated */
    size_t len;
    int32_t *ids;             /* generated ids (stop token excluded) */
    int n_ids;
    int prompt_tokens, completion_tokens;
    const char *finish;       /* "stop" | "length" */
} gen_out;

static void gen_out_free(gen_out *o) {
    free(o->text);
    free(o->ids);
}

static void add_stop_id(int32_t *stops, int *n, int32_t id) {
    if (id < 0 || *n >= 16) return;
    for (int i = 0; i < *n; i++)
        if (stops[i] == id) return;
    stops[(*n)++] = id;
}

static atomic_ulong seed_counter;

static int run_generation(api_server *s, cache_ent *ce, const gen_req *g, gen_out *o,
                          api_error *e) {
    memset(o, 0, sizeof *o);
    char err[AL_ERRLEN] = "";
    al_seq seq;
    memset(&seq, 0, sizeof seq);
    int rc = g->chat ? al_chat_encode_prompt_messages(ce->chat, g->messages, NULL, &seq, err)
                     : al_chat_encode_prompt(ce->chat, g->prompt, g->prompt_len, &seq, err);
    if (rc) {
        if (rc == AL_EUNSUP && g->chat)
            return api_error_set(e, 400, "invalid_request_error", "no_chat_template", "model",
                                 "model: %s has no chat template; use /v1/completions", g->model);
        return api_error_set(e, 400, "invalid_request_error", "invalid_value",
                             g->chat ? "messages" : "prompt", "%s: %s",
                             g->chat ? "messages" : "prompt", err);
    }
    const al_model_config *mc = al_model_config_of(ce->m);
    if (seq.n == 0) {
        al_seq_deinit(&seq);
        return bad(e, "invalid_value", g->chat ? "messages" : "prompt",
                   "encodes to no tokens");
    }
    if (seq.n >= mc->max_T) {
        int n = seq.n;
        al_seq_deinit(&seq);
        return api_error_set(e, 400, "invalid_request_error", "context_length_exceeded",
                             g->chat ? "messages" : "prompt",
                             "%s: %d tokens, the model's context is %d tokens",
                             g->chat ? "messages" : "prompt", n, mc->max_T);
    }
    int max_new = g->max_tokens ? g->max_tokens : s->cfg.max_tokens;
    if (max_new > mc->max_T - seq.n) max_new = mc->max_T - seq.n;
    int32_t stops[16];
    int n_stops = 0;
    add_stop_id(stops, &n_stops, mc->eos_id);
    add_stop_id(stops, &n_stops, al_tok_eos(ce->tok));
    static const char *const eot[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>",
                                      "<|endoftext|>"};
    for (size_t i = 0; i < sizeof eot / sizeof eot[0]; i++) {
        int32_t id = al_tok_id(ce->tok, eot[i]);
        if (id >= 0 && al_tok_is_special(ce->tok, id)) add_stop_id(stops, &n_stops, id);
    }
    al_gen_cfg gc = {.max_new = max_new,
                     .temperature = g->top_p == 0 ? 0.0f : (float)g->temperature,
                     .top_k = g->top_k,
                     .top_p = g->top_p == 0 ? 1.0f : (float)g->top_p,
                     .stop = stops,
                     .n_stop = n_stops};
    al_rng rng;
    uint64_t seed = g->has_seed ? g->seed
                                : (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^
                                      (uint64_t)atomic_fetch_add(&seed_counter, 1);
    al_rng_seed(&rng, seed);
    int32_t *ids = calloc((size_t)max_new + 1, sizeof *ids);
    if (!ids) {
        al_seq_deinit(&seq);
        return api_error_set(e, 500, "server_error", "internal_error", "", "out of memory");
    }
    int len = 0;
    const int32_t *pp = seq.ids;
    int plen = seq.n;
    pthread_mutex_lock(&ce->run);
    rc = al_generate(ce->m, &pp, &plen, 1, &gc, &rng, ids, NULL, &len, err);
    pthread_mutex_unlock(&ce->run);
    al_seq_deinit(&seq);
    if (rc) {
        free(ids);
        return api_error_set(e, 500, "server_error", "generation_failed", "",
                             "generation failed: %s", err);
    }
    o->prompt_tokens = plen;
    o->completion_tokens = len;
    int stopped = 0;
    if (len > 0)
        for (int i = 0; i < n_stops; i++)
            if (ids[len - 1] == stops[i]) stopped = 1;
    o->ids = ids;
    o->n_ids = stopped ? len - 1 : len;
    o->finish = stopped ? "stop" : "length";
    char *text = NULL;
    size_t tl = 0;
    if (al_tok_decode(ce->tok, ids, o->n_ids, 1, &text, &tl)) {
        gen_out_free(o);
        return api_error_set(e, 500, "server_error", "generation_failed", "",
                             "the generated tokens cannot be decoded");
    }
    /* Stop strings: the earliest match ends the text. */
    size_t cut = tl;
    for (int i = 0; i < g->n_stop; i++) {
        const char *m = strstr(text, g->stop[i]);
        if (m && (size_t)(m - text) < cut) cut = (size_t)(m - text);
    }
    if (cut < tl) {
        text[cut] = 0;
        tl = cut;
        o->finish = "stop";
        /* tokens up to the one where the stop string began */
        for (int k = 1; k <= o->n_ids; k++) {
            char *t2 = NULL;
            size_t l2 = 0;
            if (al_tok_decode(ce->tok, ids, k, 1, &t2, &l2) == AL_OK && l2 > cut) {
                free(t2);
                o->completion_tokens = k;
                o->n_ids = k;
                break;
            }
            free(t2);
        }
    }
    /* The text must be valid UTF-8 to go into JSON: a generation cut in the
     * middle of a character loses the partial character. */
    for (;;) {
        json_t *probe = json_stringn(text, tl);
        if (probe || tl == 0) {
            json_decref(probe);
            break;
        }
        tl--;
    }
    text[tl] = 0;
    o->text = text;
    o->len = tl;
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

static json_t *usage_obj(const gen_out *o) {
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", o->prompt_tokens, "completion_tokens",
                     o->completion_tokens, "total_tokens",
                     o->prompt_tokens + o->completion_tokens);
}

static json_t *full_response(const gen_req *g, const gen_out *o, const char *id) {
    json_t *choice;
    if (g->chat) {
        choice = json_pack("{s:i,s:{s:s,s:s%},s:n,s:s}", "index", 0, "message", "role",
                           "assistant", "content", o->text, o->len, "logprobs", "finish_reason",
                           o->finish);
    } else {
        choice = json_pack("{s:s%,s:i,s:n,s:s}", "text", o->text, o->len, "index", 0, "logprobs",
                           "finish_reason", o->finish);
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:n,s:[o],s:o}", "id", id, "object",
                     g->chat ? "chat.completion" : "text_completion", "created",
                     (json_int_t)time(NULL), "model", g->model, "system_fingerprint", "choices",
                     choice, "usage", usage_obj(o));
}

typedef struct sbuf {
    char *b;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *s, const char *p, size_t n) {
    if (s->oom) return;
    if (s->len + n + 1 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 4096;
        while (nc < s->len + n + 1) nc *= 2;
        char *nb = realloc(s->b, nc);
        if (!nb) {
            s->oom = 1;
            return;
        }
        s->b = nb;
        s->cap = nc;
    }
    memcpy(s->b + s->len, p, n);
    s->len += n;
    s->b[s->len] = 0;
}

static void sb_event(sbuf *s, json_t *obj) {
    char *js = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!js) {
        s->oom = 1;
        return;
    }
    sb_put(s, "data: ", 6);
    sb_put(s, js, strlen(js));
    sb_put(s, "\n\n", 2);
    free(js);
}

static json_t *chunk(const gen_req *g, const char *id, json_int_t created, const char *piece,
                     size_t plen, int first, const char *finish) {
    json_t *choice;
    if (g->chat) {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (piece) json_object_set_new(delta, "content", json_stringn(piece, plen));
        choice = json_pack("{s:i,s:o,s:n,s:o}", "index", 0, "delta", delta, "logprobs",
                           "finish_reason", finish ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:s%,s:i,s:n,s:o}", "text", piece ? piece : "", piece ? plen : 0,
                           "index", 0, "logprobs", "finish_reason",
                           finish ? json_string(finish) : json_null());
    }
    json_t *c = json_pack("{s:s,s:s,s:I,s:s,s:n,s:[o]}", "id", id, "object",
                          g->chat ? "chat.completion.chunk" : "text_completion", "created",
                          created, "model", g->model, "system_fingerprint", "choices", choice);
    if (g->include_usage && c) json_object_set_new(c, "usage", json_null());
    return c;
}

/* Longest prefix of a that b starts with, backed off to a UTF-8 boundary. */
static size_t common_prefix(const char *a, size_t al, const char *b, size_t bl) {
    size_t n = 0, m = al < bl ? al : bl;
    while (n < m && a[n] == b[n]) n++;
    while (n > 0 && n < al && ((unsigned char)a[n] & 0xC0) == 0x80) n--;
    return n;
}

/* The SSE body: one chunk per generated token (the text it adds), then the
 * finish chunk, the usage chunk when asked, and [DONE]. */
static int stream_body(cache_ent *ce, const gen_req *g, const gen_out *o, const char *id,
                       sbuf *sb) {
    json_int_t created = (json_int_t)time(NULL);
    size_t sent = 0;
    if (g->chat) sb_event(sb, chunk(g, id, created, "", 0, 1, NULL));
    if (!g->chat && g->echo && g->prompt_len)
        sb_event(sb, chunk(g, id, created, g->prompt, g->prompt_len, 0, NULL));
    for (int k = 1; k <= o->n_ids && sent < o->len; k++) {
        char *t = NULL;
        size_t tl = 0;
        if (al_tok_decode(ce->tok, o->ids, k, 1, &t, &tl)) return -1;
        size_t upto = common_prefix(o->text, o->len, t, tl);
        free(t);
        if (upto > sent) {
            sb_event(sb, chunk(g, id, created, o->text + sent, upto - sent, 0, NULL));
            sent = upto;
        }
    }
    if (sent < o->len) sb_event(sb, chunk(g, id, created, o->text + sent, o->len - sent, 0, NULL));
    sb_event(sb, chunk(g, id, created, NULL, 0, 0, o->finish));
    if (g->include_usage) {
        json_t *u = json_pack("{s:s,s:s,s:I,s:s,s:n,s:[],s:o}", "id", id, "object",
                              g->chat ? "chat.completion.chunk" : "text_completion", "created",
                              created, "model", g->model, "system_fingerprint", "choices",
                              "usage", usage_obj(o));
        sb_event(sb, u);
    }
    sb_put(sb, "data: [DONE]\n\n", 14);
    return sb->oom ? -1 : 0;
}

static enum MHD_Result serve(api_req *r, int chat) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *body = NULL;
    if (api_body_object(r, &body, &e)) return api_reply_err(r, &e);
    gen_req g;
    enum MHD_Result res;
    cache_ent *ce = NULL;
    gen_out o;
    memset(&o, 0, sizeof o);
    if (parse_req(s, body, chat, &g, &e)) {
        res = api_reply_err(r, &e);
        goto out;
    }
    char dir[API_PATH_MAX];
    if (s->be.model_path(s->be.ud, g.model, dir, &e)) {
        /* the only field model_path can be about */
        if (!e.param[0]) snprintf(e.param, sizeof e.param, "model");
        res = api_reply_err(r, &e);
        goto out;
    }
    char err[AL_ERRLEN] = "";
    ce = cache_get(s->models, dir, s->cfg.bf16, err);
    if (!ce) {
        if (!strcmp(err, "busy"))
            res = api_reply_error(r, 429, "rate_limit_error", "models_busy", "model",
                                  "every loaded model is in use; retry later");
        else
            res = api_reply_error(r, 422, "invalid_request_error", "model_unusable", "model",
                                  "model: %.200s cannot be loaded: %s", g.model, err);
        goto out;
    }
    if (run_generation(s, ce, &g, &o, &e)) {
        res = api_reply_err(r, &e);
        goto out;
    }
    char id[64];
    make_id(s, chat ? "chatcmpl-" : "cmpl-", id);
    if (!chat && g.echo) {
        size_t nl = g.prompt_len + o.len;
        char *t = malloc(nl + 1);
        if (t) {
            memcpy(t, g.prompt, g.prompt_len);
            memcpy(t + g.prompt_len, o.text, o.len);
            t[nl] = 0;
            if (!g.stream) {
                free(o.text);
                o.text = t;
                o.len = nl;
            } else {
                free(t);
            }
        }
    }
    if (!g.stream) {
        res = api_reply_json(r, 200, full_response(&g, &o, id));
        goto out;
    }
    sbuf sb = {0};
    if (stream_body(ce, &g, &o, id, &sb)) {
        free(sb.b);
        res = api_reply_error(r, 500, "server_error", "internal_error", "", "out of memory");
        goto out;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(sb.len, sb.b, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(sb.b);
        res = MHD_NO;
        goto out;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    res = api_queue(r, 200, resp);
out:
    if (ce) cache_put(s->models, ce);
    gen_out_free(&o);
    json_decref(g.messages);
    json_decref(body);
    return res;
}

enum MHD_Result api_h_chat(api_req *r) { return serve(r, 1); }
enum MHD_Result api_h_completions(api_req *r) { return serve(r, 0); }

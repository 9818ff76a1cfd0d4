/* Serving: /v1/chat/completions and /v1/completions with "stream": true
 * send each token as it is generated, n > 1 choices, and concurrent
 * requests to one model share its decode steps (api/infer.c over
 * lib/model/decode.c). Driven over HTTP with a raw SSE client (libcurl
 * reading the event stream as it arrives) against an api server whose
 * backend knows one model folder.
 *
 * The model is built so that its greedy text is known: its layers add
 * nothing (o_proj and down_proj zero), so the logits of a position depend
 * on its token alone, and its head maps byte 0xA9 to 0xC3 and 0xC3 to 0xA9:
 * after "é" (C3 A9) it writes "éééé...", each character split over two
 * tokens, and never stops on its own. Streams must carry whole characters
 * only. Order of events is what is checked, never wall-clock time: a short
 * request sent while a long stream runs finishes before that stream does
 * (it shared the steps instead of queueing), and the stream's first chunks
 * arrive before its generation ends. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/server.h"
#include "compute/pool.h"
#include "model/model.h"
#include "t.h"

static char g_dir[1100];
static int g_port;

static int be_model_path(void *ud, const char *id, char dir[API_PATH_MAX], api_error *e) {
    (void)ud;
    if (strcmp(id, "eacute"))
        return api_error_set(e, 404, "invalid_request_error", "model_not_found", "model", "no model %s", id);
    snprintf(dir, API_PATH_MAX, "%s", g_dir);
    return 0;
}

static int be_stats(void *ud, json_t **out) {
    (void)ud;
    *out = json_object();
    return 0;
}

/* The é-model (above): llama, 1 layer, byte vocabulary, untied head. */
static void make_model(const char *dir) {
    al_model_config c;
    al_config_default(&c, AL_ARCH_LLAMA);
    c.n_layers = 1;
    c.C = 64;
    c.NH = 4;
    c.NKV = 2;
    c.HD = 16;
    c.FF = 128;
    c.V = 260;
    c.max_T = 16384;
    c.bos_id = c.eos_id = 256;
    c.pad_id = 257;
    c.tie_word_embeddings = 0;
    char err[AL_ERRLEN];
    al_model *m = al_model_new(&c, NULL, err);
    T_TRUE(m != NULL);
    if (!m) exit(1);
    al_model_init(m, 11);
    int n;
    al_param *p = al_model_params(m, &n);
    float *emb = NULL, *head = NULL;
    for (int i = 0; i < n; i++) {
        if (strstr(p[i].name, "o_proj") || strstr(p[i].name, "down_proj")) memset(p[i].w, 0, p[i].n * sizeof(float));
        if (!strcmp(p[i].name, "model.embed_tokens.weight")) emb = p[i].w;
        if (!strcmp(p[i].name, "lm_head.weight")) head = p[i].w;
    }
    T_TRUE(emb && head);
    memset(head, 0, (size_t)c.V * c.C * sizeof(float));
    for (int k = 0; k < c.C; k++) {
        head[0xA9 * c.C + k] = 10 * emb[0xC3 * c.C + k];
        head[0xC3 * c.C + k] = 10 * emb[0xA9 * c.C + k];
    }
    T_OK(al_model_save(m, dir, err));
    al_model_free(m);
}

/* ---- HTTP ---------------------------------------------------------------------- */

typedef struct xfer {
    char *body;
    size_t len;
    long status;
    atomic_int chunks;       /* "data: " events seen so far */
    atomic_int abort_now;    /* the write callback ends the transfer */
    atomic_int done_seen;    /* "data: [DONE]" arrived */
    pthread_mutex_t mu;
} xfer;

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
    xfer *x = ud;
    size_t n = sz * nm;
    if (atomic_load(&x->abort_now)) return 0;
    pthread_mutex_lock(&x->mu);
    char *nb = realloc(x->body, x->len + n + 1);
    if (nb) {
        memcpy(nb + x->len, p, n);
        x->body = nb;
        x->len += n;
        x->body[x->len] = 0;
        int c = 0;
        for (const char *q = x->body; (q = strstr(q, "data: ")); q += 6) c++;
        atomic_store(&x->chunks, c);
        if (strstr(x->body, "data: [DONE]")) atomic_store(&x->done_seen, 1);
    }
    pthread_mutex_unlock(&x->mu);
    return nb ? n : 0;
}

static void post(const char *path, const char *body, xfer *x) {
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g_port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static json_t *post_json(const char *path, const char *body, long *status) {
    xfer x = {0};
    pthread_mutex_init(&x.mu, NULL);
    post(path, body, &x);
    *status = x.status;
    json_t *j = x.body ? json_loads(x.body, 0, NULL) : NULL;
    free(x.body);
    pthread_mutex_destroy(&x.mu);
    return j;
}

static long metric(const char *name) {
    xfer x = {0};
    pthread_mutex_init(&x.mu, NULL);
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", g_port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    long v = -1;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = x.body ? strstr(x.body, key) : NULL;
    if (p) v = atol(p + strlen(key));
    free(x.body);
    pthread_mutex_destroy(&x.mu);
    return v;
}

/* The events of an SSE body: each "data: " payload parsed (NULL for [DONE]
 * or what does not parse; *bad counts the latter). */
typedef struct events {
    json_t *chunks;          /* array of parsed chunks */
    int done, bad;
} events;

static events parse_events(const char *body) {
    events ev = {json_array(), 0, 0};
    for (const char *p = body; p && (p = strstr(p, "data: "));) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        if (!e) break;
        if (!strncmp(p, "[DONE]", 6)) ev.done++;
        else {
            json_t *j = json_loadb(p, (size_t)(e - p), 0, NULL);
            if (j) json_array_append_new(ev.chunks, j);
            else ev.bad++;
        }
        p = e;
    }
    return ev;
}

/* Text of choice `index` over the chunks, and its finish reason. */
static void gather(const events *ev, int index, int chat, char *text, size_t n, const char **finish,
                   int *pieces, int *roles) {
    text[0] = 0;
    *finish = NULL;
    *pieces = *roles = 0;
    size_t i;
    json_t *c;
    json_array_foreach(ev->chunks, i, c) {
        json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
        if (!ch || json_integer_value(json_object_get(ch, "index")) != index) continue;
        const char *t = chat ? json_string_value(json_object_get(json_object_get(ch, "delta"), "content"))
                             : json_string_value(json_object_get(ch, "text"));
        if (chat && json_object_get(json_object_get(ch, "delta"), "role")) (*roles)++;
        if (t && *t) {
            strncat(text, t, n - strlen(text) - 1);
            (*pieces)++;
        }
        if (json_is_string(json_object_get(ch, "finish_reason")))
            *finish = json_string_value(json_object_get(ch, "finish_reason"));
    }
}

/* ---- cases ---------------------------------------------------------------------- */

typedef struct bg {
    const char *path, *body;
    xfer x;
} bg;

static void *bg_main(void *arg) {
    bg *b = arg;
    post(b->path, b->body, &b->x);
    return NULL;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A long stream; a short request with n = 3 while it runs. */
static void test_stream_shares_steps(void) {
    bg a = {"/v1/completions",
            "{\"model\":\"eacute\",\"prompt\":\"\xc3\xa9\",\"max_tokens\":16000,\"temperature\":0,\"stream\":true}",
            {0}};
    pthread_mutex_init(&a.x.mu, NULL);
    pthread_t th;
    pthread_create(&th, NULL, bg_main, &a);
    /* its first tokens arrive while it generates */
    for (int i = 0; i < 6000 && atomic_load(&a.x.chunks) < 3 && !atomic_load(&a.x.done_seen); i++) sleep_ms(5);
    T_TRUE(atomic_load(&a.x.chunks) >= 3);
    long status;
    json_t *b = post_json("/v1/completions",
                          "{\"model\":\"eacute\",\"prompt\":\"\xc3\xa9\",\"max_tokens\":4,\"temperature\":0.7,"
                          "\"seed\":5,\"n\":3}",
                          &status);
    /* b finished while a still streams: it did not wait for a's 16000 tokens */
    int a_done_when_b_done = atomic_load(&a.x.done_seen);
    T_EQ_INT(status, 200);
    T_EQ_INT(a_done_when_b_done, 0);
    const json_t *ch = json_object_get(b, "choices");
    T_EQ_INT(json_array_size(ch), 3);
    for (size_t i = 0; i < json_array_size(ch); i++) {
        const json_t *c = json_array_get(ch, i);
        T_EQ_INT(json_integer_value(json_object_get(c, "index")), (long long)i);
        T_STR_EQ(json_string_value(json_object_get(c, "text")), "\xc3\xa9\xc3\xa9");
        T_STR_EQ(json_string_value(json_object_get(c, "finish_reason")), "length");
    }
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(b, "usage"), "completion_tokens")), 12);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(b, "usage"), "prompt_tokens")), 2);
    json_decref(b);
    /* the client of a goes away: its sequence leaves the decoder */
    atomic_store(&a.x.abort_now, 1);
    pthread_join(th, NULL);
    long live = -1;
    for (int i = 0; i < 2000 && (live = metric("alignd_inference_sequences")) != 0; i++) sleep_ms(10);
    T_EQ_INT(live, 0);
    /* every chunk that came is whole characters: "é" pieces only */
    pthread_mutex_lock(&a.x.mu);
    events ev = parse_events(a.x.body);
    pthread_mutex_unlock(&a.x.mu);
    T_EQ_INT(ev.bad, 0);
    size_t i;
    json_t *c;
    int pieces = 0, whole = 1;
    json_array_foreach(ev.chunks, i, c) {
        const char *t = json_string_value(json_object_get(json_array_get(json_object_get(c, "choices"), 0), "text"));
        if (!t || !*t) continue;
        pieces++;
        for (const char *q = t; *q; q += 2) whole &= !strncmp(q, "\xc3\xa9", 2);
        T_STR_EQ(json_string_value(json_object_get(c, "object")), "text_completion");
    }
    T_TRUE(whole);
    T_TRUE(pieces >= 3);
    json_decref(ev.chunks);
    free(a.x.body);
    pthread_mutex_destroy(&a.x.mu);
    T_TRUE(metric("alignd_inference_decode_rows_total") > metric("alignd_inference_decode_steps_total"));
}

/* n = 2 streamed: each choice's chunks add up to the same text as
 * unstreamed with the same seed; one finish chunk each; [DONE] last. */
static void test_stream_n(int chat) {
    const char *path = chat ? "/v1/chat/completions" : "/v1/completions";
    char body[512];
    const char *input = chat ? "\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\xa9\"}]" : "\"prompt\":\"\xc3\xa9\"";
    snprintf(body, sizeof body,
             "{\"model\":\"eacute\",%s,\"max_tokens\":9,\"temperature\":1.5,\"seed\":3,\"n\":2,"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             input);
    xfer x = {0};
    pthread_mutex_init(&x.mu, NULL);
    post(path, body, &x);
    T_EQ_INT(x.status, 200);
    T_TRUE(x.body && x.len > 14 && !strcmp(x.body + x.len - 14, "data: [DONE]\n\n"));
    events ev = parse_events(x.body);
    T_EQ_INT(ev.bad, 0);
    T_EQ_INT(ev.done, 1);
    snprintf(body, sizeof body, "{\"model\":\"eacute\",%s,\"max_tokens\":9,\"temperature\":1.5,\"seed\":3,\"n\":2}",
             input);
    long status;
    json_t *full = post_json(path, body, &status);
    T_EQ_INT(status, 200);
    for (int i = 0; i < 2; i++) {
        char text[256];
        const char *finish;
        int pieces, roles;
        gather(&ev, i, chat, text, sizeof text, &finish, &pieces, &roles);
        const json_t *fc = json_array_get(json_object_get(full, "choices"), (size_t)i);
        const char *want = chat ? json_string_value(json_object_get(json_object_get(fc, "message"), "content"))
                                : json_string_value(json_object_get(fc, "text"));
        T_STR_EQ(text, want);
        T_STR_EQ(finish, json_string_value(json_object_get(fc, "finish_reason")));
        T_TRUE(pieces >= 1); /* how many: as the tokens came, not asserted */
        T_EQ_INT(roles, chat ? 1 : 0);
    }
    /* the usage chunk: no choices, the completion tokens of both */
    json_t *last = json_array_get(ev.chunks, json_array_size(ev.chunks) - 1);
    T_EQ_INT(json_array_size(json_object_get(last, "choices")), 0);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(last, "usage"), "completion_tokens")),
             json_integer_value(json_object_get(json_object_get(full, "usage"), "completion_tokens")));
    const char *obj = json_string_value(json_object_get(json_array_get(ev.chunks, 0), "object"));
    T_STR_EQ(obj, chat ? "chat.completion.chunk" : "text_completion");
    json_decref(full);
    json_decref(ev.chunks);
    free(x.body);
    pthread_mutex_destroy(&x.mu);
}

/* A stop string streamed: the text ends before it, nothing of it leaks. */
static void test_stream_stop(void) {
    xfer x = {0};
    pthread_mutex_init(&x.mu, NULL);
    /* "éé" then the stop: the third é's first byte may not go out alone */
    post("/v1/completions",
         "{\"model\":\"eacute\",\"prompt\":\"\xc3\xa9\",\"max_tokens\":40,\"temperature\":0,\"stream\":true,"
         "\"stop\":\"\xc3\xa9\xc3\xa9\xc3\xa9\"}",
         &x);
    events ev = parse_events(x.body);
    char text[256];
    const char *finish;
    int pieces, roles;
    gather(&ev, 0, 0, text, sizeof text, &finish, &pieces, &roles);
    T_STR_EQ(text, "");
    T_STR_EQ(finish, "stop");
    json_decref(ev.chunks);
    free(x.body);
    pthread_mutex_destroy(&x.mu);
    long status;
    json_t *j = post_json("/v1/completions",
                          "{\"model\":\"eacute\",\"prompt\":\"\xc3\xa9\",\"max_tokens\":40,\"temperature\":0,"
                          "\"stop\":[\"\xc3\xa9\xc3\xa9\xc3\xa9x\",\"e\"]}",
                          &status);
    /* stop strings that never match: the whole text */
    T_EQ_INT(status, 200);
    const json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    T_EQ_INT(strlen(json_string_value(json_object_get(c, "text"))), 40);
    T_STR_EQ(json_string_value(json_object_get(c, "finish_reason")), "length");
    json_decref(j);
}

/* The decoder gives al_generate's tokens and log-probs (greedy), with
 * sequences joining at different steps and prompts longer than a step's
 * rows (prefilled in chunks), on a random model. */
static void test_decoder_matches_generate(void) {
    al_model_config c;
    al_config_default(&c, AL_ARCH_LLAMA);
    c.n_layers = 2;
    c.C = 32;
    c.NH = 4;
    c.NKV = 2;
    c.HD = 8;
    c.FF = 64;
    c.V = 97;
    c.max_T = 64;
    char err[AL_ERRLEN];
    al_model *m = al_model_new(&c, NULL, err);
    al_model_init(m, 3);
    enum { B = 3, NEW = 9 };
    int32_t p0[] = {5, 17, 3}, p1[] = {9, 1, 44, 2, 8, 60, 7, 11, 3, 90, 33}, p2[] = {70};
    const int32_t *prompts[B] = {p0, p1, p2};
    int plen[B] = {3, 11, 1};
    al_gen_cfg g = {.max_new = NEW, .temperature = 0, .top_p = 1};
    int32_t want_ids[B * NEW];
    float want_lp[B * NEW];
    int want_len[B];
    al_rng rng;
    al_rng_seed(&rng, 1);
    T_OK(al_generate(m, prompts, plen, B, &g, &rng, want_ids, want_lp, want_len, err));
    al_decoder *d = al_decoder_new(m, 4, 4, err); /* 4 rows a step: p1 takes three */
    T_TRUE(d != NULL);
    int slot_of[B] = {-1, -1, -1}, got_n[B] = {0};
    int32_t got[B][NEW];
    float got_lp[B][NEW];
    int join_at[B] = {0, 2, 5};
    al_dec_out out[4];
    for (int step = 0; step < 40; step++) {
        for (int b = 0; b < B; b++)
            if (step == join_at[b]) slot_of[b] = al_decoder_add(d, prompts[b], plen[b], &g, 7, err);
        int k = al_decoder_step(d, out, 4, err);
        T_TRUE(k >= 0);
        T_TRUE(al_decoder_last_rows(d) <= 4);
        for (int j = 0; j < k; j++)
            for (int b = 0; b < B; b++)
                if (slot_of[b] == out[j].slot && got_n[b] < NEW) {
                    got[b][got_n[b]] = out[j].token;
                    got_lp[b][got_n[b]++] = out[j].logp;
                    if (out[j].done) slot_of[b] = -2;
                }
        if (step > 5 && !al_decoder_live(d)) break;
    }
    for (int b = 0; b < B; b++) {
        T_EQ_INT(got_n[b], want_len[b]);
        for (int t = 0; t < want_len[b] && t < got_n[b]; t++) {
            T_EQ_INT(got[b][t], want_ids[b * NEW + t]);
            T_NEAR(got_lp[b][t], want_lp[b * NEW + t], 1e-4);
        }
    }
    /* every slot taken: the next waits */
    for (int i = 0; i < 4; i++) T_TRUE(al_decoder_add(d, p0, 3, &g, 1, err) >= 0);
    T_EQ_INT(al_decoder_add(d, p0, 3, &g, 1, err), AL_ENOSPC);
    int32_t badp[] = {97};
    al_decoder_remove(d, 0);
    T_EQ_INT(al_decoder_add(d, badp, 1, &g, 1, err), AL_ERANGE);
    g.max_new = 64;
    T_EQ_INT(al_decoder_add(d, p0, 3, &g, 1, err), AL_ERANGE);
    al_decoder_free(d);
    al_model_free(m);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    al_pool_init(2);
    snprintf(g_dir, sizeof g_dir, "%s/eacute", t_tmpdir());
    make_model(g_dir);
    api_server_cfg cfg;
    api_server_cfg_init(&cfg);
    cfg.port = 0;
    cfg.max_tokens = 16000;
    api_backend be;
    memset(&be, 0, sizeof be);
    be.model_path = be_model_path;
    be.stats = be_stats;
    char err[AL_ERRLEN];
    api_server *s = api_server_start(&cfg, &be, err);
    if (!s) {
        fprintf(stderr, "api_server_start: %s\n", err);
        return 1;
    }
    g_port = api_server_port(s);
    test_decoder_matches_generate();
    test_stream_shares_steps();
    test_stream_n(0);
    test_stream_n(1);
    test_stream_stop();
    api_server_stop(s);
    al_pool_shutdown();
    curl_global_cleanup();
    return t_done();
}

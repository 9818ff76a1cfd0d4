/* The external reward verifier's client (see reward_http.h). */
#include "reward_http.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"

enum { MAX_ANSWER = 16 << 20, EXCERPT = 200 };

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_rc;
static double g_scale = 1.0;

static void global_init(void) { g_init_rc = (int)curl_global_init(CURL_GLOBAL_DEFAULT); }

void reward_http_set_backoff_scale(double scale) { g_scale = scale; }

long reward_http_backoff_ms(int k) {
    long ms = 250L << (k < 6 ? k : 6);
    if (ms > 8000) ms = 8000;
    return (long)(ms * g_scale);
}

typedef struct answer {
    al_buf b;
    int too_big;
} answer;

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
    answer *a = ud;
    size_t k = sz * nm;
    if (a->b.n + k > MAX_ANSWER) {
        a->too_big = 1;
        return 0;
    }
    return al_buf_put(&a->b, p, k) ? 0 : k;
}

/* The first EXCERPT bytes of the answer, control characters as spaces. */
static void excerpt(const answer *a, char *out, size_t cap) {
    size_t n = a->b.n < EXCERPT ? a->b.n : EXCERPT, k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)a->b.p[i];
        out[k++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    out[k] = 0;
    if (a->b.n > n && k + 4 < cap) strcpy(out + k, "...");
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Reads {"rewards": [n numbers]} into rewards; AL_OK or AL_EFORMAT with why. */
static int parse_answer(const answer *a, int n, float *rewards, char err[AL_ERRLEN]) {
    char ex[EXCERPT + 8];
    excerpt(a, ex, sizeof ex);
    json_error_t je;
    json_t *o = a->b.n ? json_loadb(a->b.p, a->b.n, 0, &je) : NULL;
    if (!o)
        return al_err(err, AL_EFORMAT, "the verifier's answer is not JSON (%s): %s", a->b.n ? je.text : "empty body",
                      ex);
    const json_t *r = json_object_get(o, "rewards");
    int rc = AL_OK;
    if (!json_is_array(r)) {
        rc = al_err(err, AL_EFORMAT, "the verifier's answer has no \"rewards\" list: %s", ex);
    } else if (json_array_size(r) != (size_t)n) {
        rc = al_err(err, AL_EFORMAT, "the verifier returned %zu rewards for %d completions: %s", json_array_size(r),
                    n, ex);
    } else {
        for (int i = 0; i < n && !rc; i++) {
            const json_t *v = json_array_get(r, (size_t)i);
            if (!json_is_number(v) || !isfinite(json_number_value(v)) || fabs(json_number_value(v)) > 3.0e38)
                rc = al_err(err, AL_EFORMAT, "the verifier's rewards[%d] is %s, not a finite number: %s", i,
                            json_is_null(v) ? "null" : json_is_string(v) ? "a string" : "out of range", ex);
            else rewards[i] = (float)json_number_value(v);
        }
    }
    json_decref(o);
    return rc;
}

/* A JSON string of s; text that is not valid UTF-8 (a byte-level model's
 * completion may not be) goes with each byte above 0x7f as U+FFFD. */
static json_t *text_json(const char *s) {
    json_t *v = json_string(s);
    if (v) return v;
    size_t len = strlen(s);
    char *fix = malloc(3 * len + 1), *o = fix;
    if (!fix) return NULL;
    for (size_t j = 0; j < len; j++) {
        unsigned char ch = (unsigned char)s[j];
        if (ch < 0x80) {
            *o++ = (char)ch;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
        }
    }
    *o = 0;
    v = json_string(fix);
    free(fix);
    return v;
}

static char *request_body(int n, const char *const *prompts, const char *const *completions,
                          const json_t *const *rows) {
    json_t *p = json_array(), *c = json_array(), *r = json_array();
    int ok = p && c && r;
    for (int i = 0; ok && i < n; i++)
        ok = !json_array_append_new(p, text_json(prompts[i])) && !json_array_append_new(c, text_json(completions[i])) &&
             !json_array_append(r, rows && rows[i] ? (json_t *)rows[i] : json_null());
    json_t *o = ok ? json_pack("{s:O, s:O, s:O}", "prompts", p, "completions", c, "rows", r) : NULL;
    json_decref(p);
    json_decref(c);
    json_decref(r);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

int reward_http_score(void *ud, const al_reward_cfg *cfg, int n, const char *const *prompts,
                      const char *const *completions, const json_t *const *rows, float *rewards,
                      char err[AL_ERRLEN]) {
    (void)ud;
    pthread_once(&g_once, global_init);
    if (g_init_rc) return al_err(err, AL_EIO, "libcurl failed to initialise (%d)", g_init_rc);
    char *body = request_body(n, prompts, completions, rows);
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Accept: application/json");
    hdr = curl_slist_append(hdr, "Expect:");
    if (!body || !h || !hdr) {
        free(body);
        curl_easy_cleanup(h);
        curl_slist_free_all(hdr);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    char cerr[CURL_ERROR_SIZE];
    answer a = {0};
    int rc = AL_EIO, attempts = 1 + (cfg->http_retries > 0 ? cfg->http_retries : 0), tried = 0;
    char last[AL_ERRLEN] = "";
    for (int k = 0; k < attempts; k++) {
        tried = k + 1;
        if (k) sleep_ms(reward_http_backoff_ms(k - 1));
        al_buf_deinit(&a.b);
        memset(&a, 0, sizeof a);
        cerr[0] = 0;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, cfg->http_url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)cfg->http_timeout_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(cfg->http_timeout_ms < 10000 ? cfg->http_timeout_ms : 10000));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "alignd");
        CURLcode cc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK) {
            if (a.too_big) {
                rc = al_err(last, AL_EFORMAT, "the verifier's answer is larger than %d MiB", MAX_ANSWER >> 20);
                break;
            }
            rc = al_err(last, AL_EIO, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
            continue; /* unreachable, refused, timed out: try again */
        }
        if (status != 200) {
            char ex[EXCERPT + 8];
            excerpt(&a, ex, sizeof ex);
            rc = al_err(last, AL_EIO, "HTTP %ld: %s", status, ex[0] ? ex : "(empty body)");
            if (status == 408 || status == 429 || status >= 500) continue;
            break; /* the verifier refused the request itself: no retry helps */
        }
        rc = parse_answer(&a, n, rewards, last);
        break;
    }
    if (rc) {
        if (tried > 1) al_err(err, rc, "%s: %s (after %d attempts)", cfg->http_url, last, tried);
        else al_err(err, rc, "%s: %s", cfg->http_url, last);
    }
    al_buf_deinit(&a.b);
    free(body);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return rc;
}

/* Data hygiene (see hygiene.h): words, shingles, MinHash with LSH bands,
 * the evaluation set's n-grams, and libexttextcat for the language.
 *
 * No library does MinHash or n-gram contamination in C (datasketch and
 * datatrove are Python), so they are written here: a hash per word, a hash
 * per n-gram from its words' hashes, universal hashing modulo the Mersenne
 * prime 2^61 - 1 for the permutations, and an open-addressing set of the
 * evaluation n-grams. */
#include "hygiene.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <textcat.h>

#include "../buf.h"

#ifndef AL_TEXTCAT_DIR
#define AL_TEXTCAT_DIR "/usr/share/libexttextcat"
#endif

#define MERSENNE61 ((1ull << 61) - 1)
#define LANG_BYTES 1000
#define LANG_MIN 25

struct al_hygiene {
    al_hygiene_cfg c;
    uint64_t *a, *b;          /* num_perm hash functions */
    uint64_t *set;            /* evaluation n-grams, open addressing, 0 = empty */
    size_t set_cap;
    long set_n;
    int eval_rows, eval_short, n;
    void *tc;                 /* libexttextcat handle */
    uint64_t *words;          /* scratch */
    size_t words_cap;
};

static uint64_t mix64(uint64_t x) {   /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int al_hygiene_any(const al_hygiene_cfg *c) {
    return c && (c->near_dedupe || c->decon_file[0] || c->min_words || c->max_words || c->n_languages);
}

/* ---- the job's "hygiene" object ------------------------------------------- */

static int num(const json_t *o, const char *key, const char *path, double lo, double hi, int integer,
               double *out, al_error *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return AL_OK;
    double x = json_number_value(v);
    if (!json_is_number(v) || (integer && !json_is_integer(v)) || !(x >= lo && x <= hi))
        return AL_FAIL(err, AL_EINVAL, "%s.%s",
                       "must be %s in [%g, %g]", path, key, integer ? "an integer" : "a number",
                       lo, hi);
    *out = x;
    return AL_OK;
}

static int keys_ok(const json_t *o, const char *path, const char *const *allowed, al_error *err) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(k, allowed[i]);
        if (!ok) return AL_FAIL(err, AL_EINVAL, "%s.%s", "unknown field", path, k);
    }
    return AL_OK;
}

int al_hygiene_parse(const json_t *v, al_hygiene_cfg *out, al_error *err) {
    static const char *const top[] = {"near_duplicates", "decontaminate", "min_words", "max_words", "languages", NULL};
    static const char *const nd[] = {"threshold", "ngram", "num_perm", "bands", NULL};
    static const char *const dc[] = {"file", "ngram", "coverage", NULL};
    al_hygiene_cfg c;
    memset(&c, 0, sizeof c);
    c.near_threshold = 0.8;
    c.near_ngram = 5;
    c.num_perm = 128;
    c.bands = 16;
    if (!json_is_object(v)) return AL_FAIL(err, AL_EINVAL, "hygiene", "must be an object");
    int rc = keys_ok(v, "hygiene", top, err);
    if (rc) return rc;
    const json_t *n = json_object_get(v, "near_duplicates");
    if (json_is_true(n)) c.near_dedupe = 1;
    else if (json_is_object(n)) {
        double t = c.near_threshold, g = c.near_ngram, p = c.num_perm, b = c.bands;
        if ((rc = keys_ok(n, "hygiene.near_duplicates", nd, err)) ||
            (rc = num(n, "threshold", "hygiene.near_duplicates", 0.05, 1, 0, &t, err)) ||
            (rc = num(n, "ngram", "hygiene.near_duplicates", 1, 64, 1, &g, err)) ||
            (rc = num(n, "num_perm", "hygiene.near_duplicates", 1, 1024, 1, &p, err)) ||
            (rc = num(n, "bands", "hygiene.near_duplicates", 1, 1024, 1, &b, err)))
            return rc;
        if ((int)p % (int)b)
            return AL_FAIL(err, AL_EINVAL, "hygiene.near_duplicates.bands", "%d does not divide num_perm %d", (int)b,
                           (int)p);
        c.near_dedupe = 1;
        c.near_threshold = t;
        c.near_ngram = (int)g;
        c.num_perm = (int)p;
        c.bands = (int)b;
    } else if (n && !json_is_false(n) && !json_is_null(n)) {
        return AL_FAIL(err, AL_EINVAL, "hygiene.near_duplicates", "must be true, false or an object");
    }
    const json_t *d = json_object_get(v, "decontaminate");
    if (d && !json_is_null(d)) {
        if (!json_is_object(d)) return AL_FAIL(err, AL_EINVAL, "hygiene.decontaminate",
                                               "must be an object with a file");
        if ((rc = keys_ok(d, "hygiene.decontaminate", dc, err))) return rc;
        const json_t *f = json_object_get(d, "file");
        if (!json_is_string(f) || !json_string_length(f) || json_string_length(f) >= sizeof c.decon_file)
            return AL_FAIL(err, AL_EINVAL, "hygiene.decontaminate.file", "must name the evaluation file");
        memcpy(c.decon_file, json_string_value(f), json_string_length(f) + 1);
        const json_t *g = json_object_get(d, "ngram");
        if (!(json_is_string(g) && !strcmp(json_string_value(g), "auto"))) {
            double x = 0;
            if ((rc = num(d, "ngram", "hygiene.decontaminate", 1, 64, 1, &x, err))) return rc;
            c.decon_ngram = (int)x;
        }
        double cov = 0;
        if ((rc = num(d, "coverage", "hygiene.decontaminate", 0, 1, 0, &cov, err))) return rc;
        c.decon_coverage = cov;
    }
    double lo = 0, hi = 0;
    if ((rc = num(v, "min_words", "hygiene", 0, 1e9, 1, &lo, err)) || (rc = num(v, "max_words", "hygiene", 0, 1e9, 1, &hi, err)))
        return rc;
    c.min_words = (int)lo;
    c.max_words = (int)hi;
    if (c.max_words && c.min_words > c.max_words)
        return AL_FAIL(err, AL_EINVAL, "hygiene.max_words", "%d is below min_words %d", c.max_words, c.min_words);
    const json_t *l = json_object_get(v, "languages");
    if (l && !json_is_null(l)) {
        if (!json_is_array(l) || json_array_size(l) == 0 || json_array_size(l) > AL_HYG_MAX_LANGS)
            return AL_FAIL(err, AL_EINVAL, "hygiene.languages",
                           "must be a list of 1 to %d language codes", AL_HYG_MAX_LANGS);
        for (size_t i = 0; i < json_array_size(l); i++) {
            const char *s = json_string_value(json_array_get(l, i));
            size_t k = s ? strlen(s) : 0;
            int ok = k >= 2 && k < sizeof c.languages[0];
            for (size_t j = 0; ok && j < k; j++) ok = (s[j] >= 'a' && s[j] <= 'z') || s[j] == '-' || (s[j] >= 'A' && s[j] <= 'Z');
            if (!ok) return AL_FAIL(err, AL_EINVAL, "hygiene.languages[%zu]",
                                    "must be a language code such as \"en\"", i);
            memcpy(c.languages[i], s, k + 1);
        }
        c.n_languages = (int)json_array_size(l);
    }
    *out = c;
    return AL_OK;
}

json_t *al_hygiene_json(const al_hygiene_cfg *c) {
    json_t *o = json_object();
    if (c->near_dedupe)
        json_object_set_new(o, "near_duplicates", json_pack("{s:f,s:i,s:i,s:i}", "threshold", c->near_threshold,
                                                            "ngram", c->near_ngram, "num_perm", c->num_perm,
                                                            "bands", c->bands));
    if (c->decon_file[0])
        json_object_set_new(o, "decontaminate",
                            json_pack("{s:s,s:o,s:f}", "file", c->decon_file, "ngram",
                                      c->decon_ngram ? json_integer(c->decon_ngram) : json_string("auto"),
                                      "coverage", c->decon_coverage));
    if (c->min_words) json_object_set_new(o, "min_words", json_integer(c->min_words));
    if (c->max_words) json_object_set_new(o, "max_words", json_integer(c->max_words));
    if (c->n_languages) {
        json_t *a = json_array();
        for (int i = 0; i < c->n_languages; i++) json_array_append_new(a, json_string(c->languages[i]));
        json_object_set_new(o, "languages", a);
    }
    return o;
}

/* ---- text and words --------------------------------------------------------- */

/* Keys whose strings say what a row is, not what it says. */
static const char *const SKIP_KEYS[] = {"role", "from", "type", "id", "_id", "uuid", "tool_call_id", "name",
                                        "task", "category", "source", "dataset", "metadata", "label", NULL};

static int skip_key(const char *k) {
    for (int i = 0; SKIP_KEYS[i]; i++)
        if (!strcmp(k, SKIP_KEYS[i])) return 1;
    return 0;
}

static void gather(al_buf *b, const json_t *v, int depth) {
    if (depth > 64) return;
    if (json_is_string(v)) {
        if (b->n) al_buf_putc(b, '\n');
        al_buf_put(b, json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) gather(b, x, depth + 1);
    } else if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (!skip_key(k)) gather(b, x, depth + 1);
        }
    }
}

char *al_hygiene_text(const json_t *row, size_t *len) {
    al_buf b = {0};
    gather(&b, row, 0);
    return al_buf_take(&b, len);
}

static int word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* The hashes of the text's words into h->words; returns their count, -1 on
 * ENOMEM. */
static long words_of(al_hygiene *h, const char *s, size_t n) {
    long k = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && !word_byte((unsigned char)s[i])) i++;
        if (i >= n) break;
        uint64_t x = 1469598103934665603ull;
        while (i < n && word_byte((unsigned char)s[i])) {
            unsigned char c = (unsigned char)s[i++];
            if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
            x = (x ^ c) * 1099511628211ull;
        }
        if ((size_t)k == h->words_cap) {
            size_t cap = h->words_cap ? h->words_cap * 2 : 1024;
            uint64_t *w = realloc(h->words, cap * sizeof *w);
            if (!w) return -1;
            h->words = w;
            h->words_cap = cap;
        }
        h->words[k++] = mix64(x);
    }
    return k;
}

/* The hash of words w[i..i+n). Never 0 (0 marks an empty slot). */
static uint64_t gram(const uint64_t *w, long i, int n) {
    uint64_t g = 0x2545F4914F6CDD1Dull ^ (uint64_t)n;
    for (int k = 0; k < n; k++) g = mix64(g ^ w[i + k]) + (uint64_t)k;
    return g ? g : 1;
}

/* ---- the evaluation set ------------------------------------------------------- */

static int set_add(al_hygiene *h, uint64_t g) {
    if ((size_t)(h->set_n + 1) * 2 > h->set_cap) {
        size_t cap = h->set_cap ? h->set_cap * 2 : 1024;
        uint64_t *s = calloc(cap, sizeof *s);
        if (!s) return AL_ENOMEM;
        for (size_t i = 0; i < h->set_cap; i++) {
            uint64_t x = h->set[i];
            if (!x) continue;
            size_t j = x & (cap - 1);
            while (s[j]) j = (j + 1) & (cap - 1);
            s[j] = x;
        }
        free(h->set);
        h->set = s;
        h->set_cap = cap;
    }
    size_t j = g & (h->set_cap - 1);
    while (h->set[j] && h->set[j] != g) j = (j + 1) & (h->set_cap - 1);
    if (!h->set[j]) {
        h->set[j] = g;
        h->set_n++;
    }
    return AL_OK;
}

static int set_has(const al_hygiene *h, uint64_t g) {
    if (!h->set_cap) return 0;
    size_t j = g & (h->set_cap - 1);
    while (h->set[j]) {
        if (h->set[j] == g) return 1;
        j = (j + 1) & (h->set_cap - 1);
    }
    return 0;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int load_eval(al_hygiene *h, const json_t *texts, char err[AL_ERRLEN]) {
    size_t rows = json_array_size(texts);
    h->eval_rows = (int)rows;
    h->n = h->c.decon_ngram;
    if (!h->n) {
        /* GPT-3: the 5th percentile of the evaluation rows' lengths in words, in [8, 13] */
        long *lens = malloc((rows + 1) * sizeof *lens);
        if (!lens) return al_err(err, AL_ENOMEM, "out of memory");
        for (size_t i = 0; i < rows; i++) {
            const json_t *t = json_array_get(texts, i);
            long k = words_of(h, json_string_value(t), json_string_length(t));
            if (k < 0) {
                free(lens);
                return al_err(err, AL_ENOMEM, "out of memory");
            }
            lens[i] = k;
        }
        long p5 = 13;
        if (rows) {
            qsort(lens, rows, sizeof *lens, cmp_long);
            p5 = lens[(size_t)floor(0.05 * (double)(rows - 1))];
        }
        free(lens);
        h->n = (int)(p5 < 8 ? 8 : p5 > 13 ? 13 : p5);
    }
    for (size_t i = 0; i < rows; i++) {
        const json_t *t = json_array_get(texts, i);
        long k = words_of(h, json_string_value(t), json_string_length(t));
        if (k < 0) return al_err(err, AL_ENOMEM, "out of memory");
        if (k < h->n) h->eval_short++;
        for (long j = 0; j + h->n <= k; j++)
            if (set_add(h, gram(h->words, j, h->n))) return al_err(err, AL_ENOMEM, "out of memory");
    }
    return AL_OK;
}

/* ---- set-up --------------------------------------------------------------------- */

int al_hygiene_new(al_hygiene **out, const al_hygiene_cfg *c, const json_t *eval_texts, char err[AL_ERRLEN]) {
    al_hygiene *h = calloc(1, sizeof *h);
    if (!h) return al_err(err, AL_ENOMEM, "out of memory");
    h->c = *c;
    int rc = AL_OK;
    if (c->near_dedupe) {
        if (c->num_perm < 1 || c->bands < 1 || c->num_perm % c->bands) {
            al_hygiene_free(h);
            return al_err(err, AL_EINVAL, "hygiene: bands must divide num_perm");
        }
        h->a = malloc((size_t)c->num_perm * sizeof *h->a);
        h->b = malloc((size_t)c->num_perm * sizeof *h->b);
        if (!h->a || !h->b) rc = al_err(err, AL_ENOMEM, "out of memory");
        al_rng r;
        al_rng_seed(&r, 0x4D696E48617368ull); /* fixed: the same rows, the same verdicts */
        for (int i = 0; !rc && i < c->num_perm; i++) {
            h->a[i] = 1 + al_rng_u64(&r) % (MERSENNE61 - 1);
            h->b[i] = al_rng_u64(&r) % MERSENNE61;
        }
    }
    if (!rc && c->decon_file[0]) rc = load_eval(h, eval_texts, err);
    if (!rc && c->n_languages) {
        h->tc = special_textcat_Init(AL_TEXTCAT_DIR "/fpdb.conf", AL_TEXTCAT_DIR "/");
        if (!h->tc)
            rc = al_err(err, AL_EIO, "hygiene.languages: the language fingerprints in %s cannot be read "
                        "(apt-get install libexttextcat-data)", AL_TEXTCAT_DIR);
    }
    if (rc) {
        al_hygiene_free(h);
        return rc;
    }
    *out = h;
    return AL_OK;
}

void al_hygiene_free(al_hygiene *h) {
    if (!h) return;
    if (h->tc) textcat_Done(h->tc);
    free(h->a);
    free(h->b);
    free(h->set);
    free(h->words);
    free(h);
}

const al_hygiene_cfg *al_hygiene_cfg_of(const al_hygiene *h) { return &h->c; }
int al_hygiene_bands(const al_hygiene *h) { return h->c.near_dedupe ? h->c.bands : 0; }

void al_hygiene_eval_stats(const al_hygiene *h, int *rows, int *short_rows, int *n, long *ngrams) {
    *rows = h->eval_rows;
    *short_rows = h->eval_short;
    *n = h->n;
    *ngrams = h->set_n;
}

/* ---- one row ---------------------------------------------------------------------- */

/* The shingle hashes of h->words[0..k) (k words) into out (k - g + 1, or 1
 * for a short row); returns their count. */
static long shingles(const al_hygiene *h, long k, uint64_t *out) {
    int g = h->c.near_ngram;
    if (k == 0) return 0;
    if (k < g) {
        out[0] = gram(h->words, 0, (int)k);
        return 1;
    }
    for (long i = 0; i + g <= k; i++) out[i] = gram(h->words, i, g);
    return k - g + 1;
}

static uint64_t perm(uint64_t a, uint64_t b, uint64_t x) {
    unsigned __int128 y = (unsigned __int128)a * (x % MERSENNE61) + b;
    return (uint64_t)(y % MERSENNE61);
}

int al_hygiene_row(al_hygiene *h, const char *text, size_t len, al_hyg_row *out, uint64_t *band) {
    memset(out, 0, sizeof *out);
    long k = words_of(h, text, len);
    if (k < 0) return AL_ENOMEM;
    out->words = (int)k;
    if (h->c.decon_file[0] && h->set_n && k >= h->n) {
        long covered = 0, hit = 0, end = 0;   /* words inside shared n-grams */
        for (long i = 0; i + h->n <= k; i++)
            if (set_has(h, gram(h->words, i, h->n))) {
                hit++;
                long from = i > end ? i : end;
                covered += i + h->n - from;
                end = i + h->n;
            }
        out->coverage = k ? (float)covered / (float)k : 0;
        out->contaminated = hit && (h->c.decon_coverage <= 0 || out->coverage >= h->c.decon_coverage);
    }
    if (band) {
        int P = h->c.num_perm, R = P / h->c.bands;
        uint64_t *sig = malloc((size_t)P * sizeof *sig);
        uint64_t *sh = malloc((size_t)(k > 0 ? k : 1) * sizeof *sh);
        if (!sig || !sh) {
            free(sig);
            free(sh);
            return AL_ENOMEM;
        }
        long ns = shingles(h, k, sh);
        for (int p = 0; p < P; p++) {
            uint64_t m = ns ? UINT64_MAX : 0;
            for (long i = 0; i < ns; i++) {
                uint64_t v = perm(h->a[p], h->b[p], sh[i]);
                if (v < m) m = v;
            }
            sig[p] = m;
        }
        for (int bi = 0; bi < h->c.bands; bi++) {
            uint64_t x = mix64(0x62616E64ull + (uint64_t)bi);
            for (int j = 0; j < R; j++) x = mix64(x ^ sig[bi * R + j]);
            band[bi] = x;
        }
        free(sig);
        free(sh);
    }
    if (h->tc) {
        /* under 25 bytes nothing is told apart reliably (textcat guesses anyway) */
        char *r = len >= LANG_MIN ? textcat_Classify(h->tc, text, len < LANG_BYTES ? len : LANG_BYTES) : NULL;
        out->lang_ok = -1;
        if (r && r[0] == '[') {
            out->lang_ok = 0;
            /* "[sco--utf8][en--utf8]": kept when any candidate is wanted */
            for (const char *p = r; p && *p == '['; p = strchr(p, ']') ? strchr(p, ']') + 1 : NULL) {
                char code[16];
                size_t n = strcspn(p + 1, "-]");
                if (n >= sizeof code) continue;
                memcpy(code, p + 1, n);
                code[n] = 0;
                if (!out->lang[0]) snprintf(out->lang, sizeof out->lang, "%s", code);
                for (int i = 0; i < h->c.n_languages; i++)
                    if (!strcmp(code, h->c.languages[i])) out->lang_ok = 1;
            }
        }
    }
    return AL_OK;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static long sorted_shingles(al_hygiene *h, const char *s, size_t n, uint64_t **out) {
    long k = words_of(h, s, n);
    if (k < 0) return -1;
    uint64_t *sh = malloc((size_t)(k > 0 ? k : 1) * sizeof *sh);
    if (!sh) return -1;
    long m = shingles(h, k, sh);
    qsort(sh, (size_t)m, sizeof *sh, cmp_u64);
    long u = 0;
    for (long i = 0; i < m; i++)
        if (!u || sh[u - 1] != sh[i]) sh[u++] = sh[i];
    *out = sh;
    return u;
}

double al_hygiene_jaccard(const al_hygiene *h, const char *a, size_t la, const char *b, size_t lb) {
    al_hygiene *m = (al_hygiene *)h;   /* the scratch words only */
    uint64_t *x = NULL, *y = NULL;
    long nx = sorted_shingles(m, a, la, &x), ny = nx < 0 ? -1 : sorted_shingles(m, b, lb, &y);
    if (nx < 0 || ny < 0) {
        free(x);
        free(y);
        return -1;
    }
    long i = 0, j = 0, both = 0;
    while (i < nx && j < ny) {
        if (x[i] == y[j]) both++, i++, j++;
        else if (x[i] < y[j]) i++;
        else j++;
    }
    free(x);
    free(y);
    long uni = nx + ny - both;
    return uni ? (double)both / (double)uni : 1.0;
}

void al_hygiene_describe(const json_t *report, const char *what, int max, void (*fn)(void *ud, const char *line),
                         void *ud) {
    const json_t *hy = json_object_get(report, "hygiene");
    if (!hy) return;
    char line[512];
    int k = snprintf(line, sizeof line, "%s: hygiene kept %lld of %lld rows", what,
                     (long long)json_integer_value(json_object_get(hy, "rows_out")),
                     (long long)json_integer_value(json_object_get(hy, "rows_in")));
    static const char *const parts[][2] = {{"near_duplicates", "near-duplicates"}, {"decontamination", "contaminated"},
                                           {"language", "other languages"}};
    for (int i = 0; i < 3; i++) {
        const json_t *p = json_object_get(hy, parts[i][0]);
        if (p && k < (int)sizeof line)
            k += snprintf(line + k, sizeof line - (size_t)k, ", %lld %s",
                          (long long)json_integer_value(json_object_get(p, "dropped")), parts[i][1]);
    }
    const json_t *len = json_object_get(hy, "length");
    if (len && k < (int)sizeof line)
        snprintf(line + k, sizeof line - (size_t)k, ", %lld too short, %lld too long",
                 (long long)json_integer_value(json_object_get(len, "too_short")),
                 (long long)json_integer_value(json_object_get(len, "too_long")));
    fn(ud, line);
    /* the reasons: the filters' own warning codes */
    static const char *const codes[] = {"too_short", "too_long", "language", "contaminated", "near_duplicate", NULL};
    const json_t *ws = json_object_get(report, "warnings");
    int shown = 0;
    for (size_t i = 0; i < json_array_size(ws) && shown < max; i++) {
        const char *code = json_string_value(json_object_get(json_array_get(ws, i), "code"));
        int hit = 0;
        for (int c = 0; code && codes[c] && !hit; c++) hit = !strcmp(code, codes[c]);
        if (!hit) continue;
        snprintf(line, sizeof line, "%s: %s (%s)", what,
                 json_string_value(json_object_get(json_array_get(ws, i), "message")), code);
        fn(ud, line);
        shown++;
    }
}

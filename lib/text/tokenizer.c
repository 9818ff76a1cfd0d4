/* Tokenizers: Hugging Face tokenizer.json with a BPE model (byte-level as
 * GPT-2, Llama 3, Qwen2, SmolLM; SentencePiece-style with the ▁ metaspace and
 * <0xNN> byte fallback as Llama 2, TinyLlama, Mistral) and the byte
 * tokenizer of the built-in tiny models, which is the same machinery with a
 * 256-entry vocabulary and no merges.
 *
 * Loading (tokenizer_load.c) flattens tokenizer.json into step lists:
 * normalizer steps, pre-tokenizer steps, the BPE model (vocabulary hash,
 * merge hash keyed by the id pair), decoder steps and the post-processor's
 * prefix/suffix ids (tok_int.h).
 * Encoding runs the stages of the tokenizers library in its order:
 *   1. added tokens with normalized=false are split out of the raw text,
 *      leftmost-longest like its Aho-Corasick matcher (special ones only
 *      when parse_special; lstrip/rstrip/single_word as it does);
 *   2. every remaining piece is normalized separately, then the added tokens
 *      with normalized=true are split out of it;
 *   3. the pre-tokenizer steps split (and rewrite) the pieces; split regexes
 *      run on PCRE2 with Unicode properties and the iteration rule of the
 *      regex engines tokenizers uses (an empty match right after the
 *      previous match is skipped);
 *   4. BPE runs on each piece: a linked list of symbols and a heap of
 *      candidate merges ordered by (rank, position), exactly the order of
 *      tokenizers' Word::merge_all, so O(n log n) per piece;
 *   5. the post-processor template adds BOS/EOS.
 * Text lives in a per-call arena in which every byte carries the byte range
 * of the original text it came from, so each id gets its source span.
 *
 * Checked id for id against tokenizers 0.23 (its Node binding) on GPT-2,
 * Llama 2/3, Mistral, Qwen2 and SmolLM pipelines and every split behavior.
 * Deliberate differences: the post-processor never doubles BOS or EOS
 * (tokenizers does: "<s>hi" with parse_special and add_special gives
 * [1, 1, ...], the double BOS TRL warns about); unknown ids make decode
 * fail instead of being dropped; offsets are byte offsets (tokenizers
 * reports characters), so byte-level and byte-fallback tokens that cover
 * part of a character get the bytes they cover; a Strip decoder asked to
 * strip more than a token holds strips what there is (tokenizers panics).
 *
 * Threads: a loaded al_tok is immutable apart from the word cache, which is
 * sharded behind mutexes; encode/decode allocate their scratch per call
 * (PCRE2 match data included), so any number of threads may share one. */
#include "tok_int.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../buf.h"

#define CACHE_SHARDS 64
#define CACHE_SHARD_CAP 4096 /* entries per shard; a full shard stops inserting */
#define CACHE_MAX_KEY 48     /* longer pieces are not cached */

/* ---------------------------------------------------------------- utilities */

/* Decodes the UTF-8 character at s (n > 0 bytes left). Returns its length
 * and sets *cp, or returns -k when the bytes are not a character, k being
 * the maximal invalid prefix (what from_utf8_lossy replaces by one U+FFFD). */
int tok_utf8_dec(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        unsigned d = s[i];
        if (d < lo || d > hi) return -i;
        lo = 0x80;
        hi = 0xBF;
        v = (v << 6) | (d & 0x3F);
    }
    *cp = v;
    return need + 1;
}

/* Length of the unit starting at s: a character, or one invalid byte. */
static int utf8_unit(const char *s, size_t n) {
    uint32_t cp;
    int k = tok_utf8_dec((const unsigned char *)s, n, &cp);
    return k > 0 ? k : 1;
}

int tok_utf8_enc(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Appends s to b, replacing every invalid sequence by U+FFFD the way Rust's
 * String::from_utf8_lossy does (one per maximal invalid prefix). */
static int sb_put_lossy(al_buf *b, const char *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t cp;
        int k = tok_utf8_dec((const unsigned char *)s + i, n - i, &cp);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if (al_buf_put(b, s + run, i - run) != AL_OK) return AL_ENOMEM;
        if (al_buf_put(b, "\xEF\xBF\xBD", 3) != AL_OK) return AL_ENOMEM;
        i += (size_t)-k;
        run = i;
    }
    return al_buf_put(b, s + run, n - run);
}

/* Rust's char::is_whitespace (the White_Space property). */
static int uc_is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ (n * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* ------------------------------------------------------------ vocabulary */

void tok_map_put(int32_t *slot, uint32_t mask, const al_tok *t, int32_t id) {
    uint64_t h = hash_bytes(t->id_str[id], t->id_len[id]);
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        if (slot[i] < 0) {
            slot[i] = id;
            return;
        }
        if (t->id_len[slot[i]] == t->id_len[id] &&
            memcmp(t->id_str[slot[i]], t->id_str[id], t->id_len[id]) == 0)
            return; /* keep the first id of a duplicated string */
    }
}

int32_t tok_map_get(const int32_t *slot, uint32_t mask, const al_tok *t, const char *s,
                       size_t n) {
    if (!slot) return -1;
    uint64_t h = hash_bytes(s, n);
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        int32_t id = slot[i];
        if (id < 0) return -1;
        if (t->id_len[id] == n && memcmp(t->id_str[id], s, n) == 0) return id;
    }
}

int32_t tok_vocab_get(const al_tok *t, const char *s, size_t n) {
    return tok_map_get(t->vocab_slot, t->vocab_mask, t, s, n);
}

static const merge_slot *merge_get(const al_tok *t, int32_t a, int32_t b) {
    if (!t->merges) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
    for (uint32_t i = (uint32_t)mix64(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        const merge_slot *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == 0) return NULL;
    }
}

/* Later duplicates overwrite earlier ones, as a HashMap built from the list. */
void tok_merge_put(al_tok *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
    for (uint32_t i = (uint32_t)mix64(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        merge_slot *m = &t->merges[i];
        if (m->key == 0 || m->key == key) {
            m->key = key;
            m->rank = rank;
            m->id = id;
            return;
        }
    }
}

/* ------------------------------------------------------------ word cache */

typedef struct cache_entry {
    uint64_t h;
    uint16_t key_n, n;
    /* followed by key bytes, then n ids and n (start, end) byte pairs */
} cache_entry;

typedef struct cache_shard {
    pthread_mutex_t mu;
    cache_entry **slot; /* CACHE_SHARD_CAP * 2 open-addressing slots */
    int count;
} cache_shard;


cache_shard *tok_cache_new(void) {
    cache_shard *c = calloc(CACHE_SHARDS, sizeof *c);
    if (!c) return NULL;
    for (int i = 0; i < CACHE_SHARDS; i++) pthread_mutex_init(&c[i].mu, NULL);
    return c;
}

void tok_cache_free(cache_shard *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        if (c[i].slot)
            for (int j = 0; j < CACHE_SHARD_CAP * 2; j++) free(c[i].slot[j]);
        free(c[i].slot);
        pthread_mutex_destroy(&c[i].mu);
    }
    free(c);
}

static int32_t *ce_ids(cache_entry *e) {
    return (int32_t *)((char *)e + sizeof *e + ((e->key_n + 3u) & ~3u));
}

/* ------------------------------------------------------------ encoding */

typedef struct arena {
    char *b;
    int32_t *lo, *hi; /* original byte range of each byte */
    size_t n, cap;
} arena;

/* A text piece [off, off+n) of the arena (id < 0), or a token (id >= 0)
 * whose source span is [s0, e0). */
typedef struct item {
    size_t off, n;
    int32_t id, s0, e0;
} item;

typedef struct items { item *v; size_t n, cap; } items;

typedef struct sym {
    int32_t id, start, end, prev, next;
    int dead;
} sym;

typedef struct hent { uint32_t rank; int32_t pos, id; } hent;

typedef struct seg { size_t s, e; int match; } seg;

typedef struct ucp { uint32_t cp; int32_t lo, hi; uint8_t ccc, raw; } ucp;

typedef struct enc {
    const al_tok *t;
    arena ar;
    items cur, nxt;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *js;
    int32_t *ids, *st, *en;
    size_t n, cap;
    sym *syms;
    size_t syms_cap;
    hent *heap;
    size_t heap_cap;
    seg *segs;
    size_t segs_n, segs_cap;
    ucp *ucs, *ucs_tmp;
    size_t ucs_cap;
    char *err;
} enc;

/* Reallocates the array whose pointer is at pp (any object pointer type)
 * to n elements of size bytes. On failure *pp is unchanged and still owned
 * by the caller. The pointer goes through memcpy, so no object is read
 * through a void ** of another type. */
static int tok_realloc(void *pp, size_t n, size_t size) {
    void *old;
    memcpy(&old, pp, sizeof old);
    void *p = realloc(old, n * size);
    if (!p) return AL_ENOMEM;
    memcpy(pp, &p, sizeof p);
    return AL_OK;
}

static int ar_reserve(arena *a, size_t extra) {
    if (a->n + extra <= a->cap) return AL_OK;
    size_t cap = a->cap ? a->cap : 256;
    while (cap < a->n + extra) cap *= 2;
    if (tok_realloc(&a->b, cap, 1) || tok_realloc(&a->lo, cap, sizeof *a->lo) ||
        tok_realloc(&a->hi, cap, sizeof *a->hi))
        return AL_ENOMEM;
    a->cap = cap;
    return AL_OK;
}

/* Appends n bytes that all come from the original range [lo, hi). */
static int ar_push(arena *a, const char *s, size_t n, int32_t lo, int32_t hi) {
    if (ar_reserve(a, n) != AL_OK) return AL_ENOMEM;
    memcpy(a->b + a->n, s, n);
    for (size_t i = 0; i < n; i++) {
        a->lo[a->n + i] = lo;
        a->hi[a->n + i] = hi;
    }
    a->n += n;
    return AL_OK;
}

/* Appends a copy of arena bytes [off, off+n) with their ranges. */
static int ar_copy(arena *a, size_t off, size_t n) {
    if (ar_reserve(a, n) != AL_OK) return AL_ENOMEM;
    memcpy(a->b + a->n, a->b + off, n);
    memcpy(a->lo + a->n, a->lo + off, n * sizeof *a->lo);
    memcpy(a->hi + a->n, a->hi + off, n * sizeof *a->hi);
    a->n += n;
    return AL_OK;
}

static int items_push(items *v, item it) {
    if (it.id < 0 && it.n == 0) return AL_OK; /* empty pieces vanish */
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        if (tok_realloc(&v->v, cap, sizeof *v->v)) return AL_ENOMEM;
        v->cap = cap;
    }
    v->v[v->n++] = it;
    return AL_OK;
}

static int text_item(items *v, size_t off, size_t n) {
    item it = {off, n, -1, 0, 0};
    return items_push(v, it);
}

static void items_swap(enc *E) {
    items tmp = E->cur;
    E->cur = E->nxt;
    E->nxt = tmp;
    E->nxt.n = 0;
}

static int out_push(enc *E, int32_t id, int32_t s, int32_t e) {
    if (E->n == E->cap) {
        size_t cap = E->cap ? E->cap * 2 : 64;
        if (tok_realloc(&E->ids, cap, sizeof *E->ids) || tok_realloc(&E->st, cap, sizeof *E->st) ||
            tok_realloc(&E->en, cap, sizeof *E->en))
            return AL_ENOMEM;
        E->cap = cap;
    }
    E->ids[E->n] = id;
    E->st[E->n] = s;
    E->en[E->n] = e;
    E->n++;
    return AL_OK;
}

static int segs_push(enc *E, size_t s, size_t e, int match) {
    if (E->segs_n == E->segs_cap) {
        size_t cap = E->segs_cap ? E->segs_cap * 2 : 64;
        if (tok_realloc(&E->segs, cap, sizeof *E->segs)) return AL_ENOMEM;
        E->segs_cap = cap;
    }
    E->segs[E->segs_n].s = s;
    E->segs[E->segs_n].e = e;
    E->segs[E->segs_n].match = match;
    E->segs_n++;
    return AL_OK;
}

/* One regex match at or after pos; 1 found, 0 none, <0 error. */
static int re_find(enc *E, const pcre2_code *re, const char *s, size_t n, size_t pos,
                   size_t *ms, size_t *me) {
    for (;;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, E->md, E->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !E->js) {
            /* The default 32 KiB machine stack was not enough: retry once
             * with a heap stack. */
            E->mctx = pcre2_match_context_create(NULL);
            E->js = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
            if (!E->mctx || !E->js) return AL_ENOMEM;
            pcre2_jit_stack_assign(E->mctx, NULL, E->js);
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return al_err(E->err, AL_ERANGE, "tokenizer regex failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(E->md);
        *ms = ov[0];
        *me = ov[1];
        return 1;
    }
}

/* Fills E->segs with the pattern's matches in s as tokenizers' find_matches
 * does: alternating non-match/match segments covering all of s. */
static int find_segments(enc *E, const tpattern *p, const char *s, size_t n, int invert) {
    E->segs_n = 0;
    size_t prev = 0;
    int rc;
    if (p->re) {
        size_t pos = 0;
        size_t last_end = (size_t)-1;
        while (pos <= n) {
            size_t ms = 0, me = 0;
            rc = re_find(E, p->re, s, n, pos, &ms, &me);
            if (rc < 0) return rc;
            if (rc == 0) break;
            if (ms == me && me == last_end) {
                if (pos >= n) break;
                pos += (size_t)utf8_unit(s + pos, n - pos);
                continue;
            }
            if (prev != ms && (rc = segs_push(E, prev, ms, 0)) != AL_OK) return rc;
            if ((rc = segs_push(E, ms, me, 1)) != AL_OK) return rc;
            prev = me;
            last_end = me;
            pos = me;
        }
    } else if (p->lit_n > 0) {
        size_t i = 0;
        while (i + p->lit_n <= n) {
            if (memcmp(s + i, p->lit, p->lit_n) == 0) {
                if (prev != i && (rc = segs_push(E, prev, i, 0)) != AL_OK) return rc;
                if ((rc = segs_push(E, i, i + p->lit_n, 1)) != AL_OK) return rc;
                i += p->lit_n;
                prev = i;
            } else {
                i++;
            }
        }
    }
    if (prev != n && (rc = segs_push(E, prev, n, 0)) != AL_OK) return rc;
    if (invert)
        for (size_t i = 0; i < E->segs_n; i++) E->segs[i].match = !E->segs[i].match;
    return AL_OK;
}

/* Applies a split behavior to E->segs in place: afterwards segs[i].match
 * means "remove". Mirrors NormalizedString::split. */
static void apply_behavior(enc *E, int behavior) {
    seg *v = E->segs;
    size_t n = E->segs_n, k = 0;
    int prev_match = 0;
    switch (behavior) {
    case BEH_REMOVED:
        return;
    case BEH_ISOLATED:
        for (size_t i = 0; i < n; i++) v[i].match = 0;
        return;
    case BEH_CONTIGUOUS: /* a run of matches (or of non-matches) becomes one piece */
    case BEH_MERGED_PREV: /* a match joins the piece before it */
        for (size_t i = 0; i < n; i++) {
            int m = v[i].match;
            int join = behavior == BEH_CONTIGUOUS ? m == prev_match : m && !prev_match;
            if (join && k > 0) {
                v[k - 1].e = v[i].e;
            } else {
                v[k] = v[i];
                v[k].match = 0;
                k++;
            }
            prev_match = m;
        }
        break;
    case BEH_MERGED_NEXT: {
        /* Walk backwards, merging a match into the segment after it. */
        size_t w = n;
        for (size_t i = n; i-- > 0;) {
            int m = v[i].match;
            if (m && !prev_match && w < n) {
                v[w].s = v[i].s;
            } else {
                w--;
                v[w] = v[i];
                v[w].match = 0;
            }
            prev_match = m;
        }
        memmove(v, v + w, (n - w) * sizeof *v);
        k = n - w;
        break;
    }
    }
    E->segs_n = k;
}

/* Splits piece `it` by pattern with behavior into E->nxt (zero-copy). */
static int split_piece(enc *E, const item *it, const tpattern *p, int behavior, int invert) {
    int rc = find_segments(E, p, E->ar.b + it->off, it->n, invert);
    if (rc != AL_OK) return rc;
    apply_behavior(E, behavior);
    for (size_t i = 0; i < E->segs_n; i++) {
        if (E->segs[i].match) continue;
        if ((rc = text_item(&E->nxt, it->off + E->segs[i].s, E->segs[i].e - E->segs[i].s)) != AL_OK)
            return rc;
    }
    return AL_OK;
}

/* --- added tokens */

static int is_word_at(enc *E, const char *s, size_t n) {
    if (!E->t->re_word || n == 0) return 0;
    int rc = pcre2_match(E->t->re_word, (PCRE2_SPTR)s, n, 0, PCRE2_ANCHORED, E->md, NULL);
    return rc >= 0;
}

/* Start of the last character of s[0..n). */
static size_t last_char_start(const char *s, size_t n) {
    size_t i = n - 1;
    size_t lim = n >= 4 ? n - 4 : 0;
    while (i > lim && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    if (i + (size_t)utf8_unit(s + i, n - i) != n) return n - 1;
    return i;
}

/* Splits the text piece `it` around the added tokens of set into E->nxt,
 * following AddedVocabulary::find_matches. */
static int split_added(enc *E, const item *it, const match_set *set, int parse_special) {
    const al_tok *t = E->t;
    const char *s = E->ar.b + it->off;
    size_t n = it->n, start_offset = 0, p = 0;
    int rc;
    while (p < n) {
        unsigned char c = (unsigned char)s[p];
        int best = -1;
        for (int k = set->first[c]; k < set->first[c + 1]; k++) {
            const added_tok *a = &t->added[set->idx[k]];
            if (a->norm_n <= n - p && memcmp(s + p, a->norm, a->norm_n) == 0) {
                best = set->idx[k];
                break; /* sorted longest first */
            }
        }
        if (best < 0) {
            p++;
            continue;
        }
        const added_tok *a = &t->added[best];
        size_t start = p, stop = p + a->norm_n;
        /* The search resumes after the match itself, not after what rstrip
         * takes, so (as in tokenizers) the next token may overlap it. */
        p = stop;
        if (a->special && !parse_special) continue;
        if (a->single_word) {
            int start_space = start == 0 || !is_word_at(E, s + last_char_start(s, start),
                                                        start - last_char_start(s, start));
            int stop_space = stop == n || !is_word_at(E, s + stop, (size_t)utf8_unit(s + stop, n - stop));
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t cs = last_char_start(s, ns);
                uint32_t cp;
                if (tok_utf8_dec((const unsigned char *)s + cs, ns - cs, &cp) <= 0 || !uc_is_space(cp))
                    break;
                ns = cs;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int k = tok_utf8_dec((const unsigned char *)s + stop, n - stop, &cp);
                if (k <= 0 || !uc_is_space(cp)) break;
                stop += (size_t)k;
            }
        }
        if (start_offset < start &&
            (rc = text_item(&E->nxt, it->off + start_offset, start - start_offset)) != AL_OK)
            return rc;
        item tok = {0, 0, a->id, E->ar.lo[it->off + start], E->ar.hi[it->off + stop - 1]};
        if ((rc = items_push(&E->nxt, tok)) != AL_OK) return rc;
        start_offset = stop;
    }
    if (start_offset < n && (rc = text_item(&E->nxt, it->off + start_offset, n - start_offset)) != AL_OK)
        return rc;
    return AL_OK;
}

/* --- normalizers */

static int ucs_reserve(enc *E, size_t n) {
    if (n <= E->ucs_cap) return AL_OK;
    size_t cap = E->ucs_cap ? E->ucs_cap : 64;
    while (cap < n) cap *= 2;
    ucp *a = realloc(E->ucs, cap * sizeof *a);
    if (!a) return AL_ENOMEM;
    E->ucs = a;
    a = realloc(E->ucs_tmp, cap * sizeof *a);
    if (!a) return AL_ENOMEM;
    E->ucs_tmp = a;
    E->ucs_cap = cap;
    return AL_OK;
}

/* Stable sort of u[0..n) by combining class (canonical ordering). */
static void ccc_sort(ucp *u, size_t n, ucp *tmp) {
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            ucp x = u[i];
            size_t j = i;
            while (j > 0 && u[j - 1].ccc > x.ccc) {
                u[j] = u[j - 1];
                j--;
            }
            u[j] = x;
        }
        return;
    }
    size_t h = n / 2;
    ccc_sort(u, h, tmp);
    ccc_sort(u + h, n - h, tmp);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = u[j].ccc < u[i].ccc ? u[j++] : u[i++];
    while (i < h) tmp[k++] = u[i++];
    while (j < n) tmp[k++] = u[j++];
    memcpy(u, tmp, n * sizeof *u);
}

/* The characters of piece *it into E->ucs, each replaced by its canonical
 * (MAP_NFD) or compatibility (MAP_NFKD) decomposition or its full lowercase
 * (MAP_LOWER) and carrying its source range; *m_out entries. Invalid bytes
 * pass as raw units that never combine. */
enum { MAP_NFD, MAP_NFKD, MAP_LOWER };
static int map_chars(enc *E, const item *it, int how, size_t *m_out) {
    const char *s = E->ar.b + it->off;
    size_t n = it->n, m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = tok_utf8_dec((const unsigned char *)s + i, n - i, &cp);
        if (ucs_reserve(E, m + AL_UC_MAX_DECOMP) != AL_OK) return AL_ENOMEM;
        int32_t lo = E->ar.lo[it->off + i];
        if (k <= 0) {
            ucp u = {(unsigned char)s[i], lo, E->ar.hi[it->off + i], 0, 1};
            E->ucs[m++] = u;
            i++;
            continue;
        }
        int32_t hi = E->ar.hi[it->off + i + (size_t)k - 1];
        uint32_t d[AL_UC_MAX_DECOMP];
        int nd = how == MAP_LOWER ? al_uc_lower(cp, d) : al_uc_decompose(cp, how == MAP_NFKD, d);
        if (nd == 0) {
            d[0] = cp;
            nd = 1;
        }
        for (int j = 0; j < nd; j++) {
            ucp u = {d[j], lo, hi, how == MAP_LOWER ? 0 : (uint8_t)al_uc_ccc(d[j]), 0};
            E->ucs[m++] = u;
        }
        i += (size_t)k;
    }
    *m_out = m;
    return AL_OK;
}

/* The decomposition of piece *it (canonical or compatibility) into E->ucs,
 * in canonical order; *m_out characters. */
static int decompose_piece(enc *E, const item *it, int compat, size_t *m_out) {
    size_t m = 0, i;
    int rc = map_chars(E, it, compat ? MAP_NFKD : MAP_NFD, &m);
    if (rc != AL_OK) return rc;
    for (i = 0; i < m;) {
        if (E->ucs[i].ccc == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < m && E->ucs[j].ccc != 0) j++;
        ccc_sort(E->ucs + i, j - i, E->ucs_tmp);
        i = j;
    }
    *m_out = m;
    return AL_OK;
}

/* Canonical composition of E->ucs[0..m) in place; returns the new count.
 * Each composite carries the union of its parts' source ranges. */
static size_t compose_ucs(enc *E, size_t m) {
    if (m == 0) return 0;
    ucp *u = E->ucs;
    size_t starter = 0, out = 1;
    int last_ccc = u[0].ccc ? 256 : 0;
    int have_starter = u[0].ccc == 0 && !u[0].raw;
    for (size_t i = 1; i < m; i++) {
        ucp c = u[i];
        uint32_t comp = 0;
        if (have_starter && !c.raw && (last_ccc < c.ccc || last_ccc == 0))
            comp = al_uc_compose(u[starter].cp, c.cp);
        if (comp) {
            u[starter].cp = comp;
            if (c.lo < u[starter].lo) u[starter].lo = c.lo;
            if (c.hi > u[starter].hi) u[starter].hi = c.hi;
            continue;
        }
        if (c.ccc == 0) {
            starter = out;
            have_starter = !c.raw;
        }
        last_ccc = c.raw ? 256 : c.ccc;
        u[out++] = c;
    }
    return out;
}

/* Writes E->ucs[0..m) as the new arena text of piece *it. */
static int ucs_to_piece(enc *E, item *it, size_t m) {
    size_t off = E->ar.n;
    for (size_t i = 0; i < m; i++) {
        char buf[4];
        int k = E->ucs[i].raw ? 1 : tok_utf8_enc(E->ucs[i].cp, buf);
        if (E->ucs[i].raw) buf[0] = (char)E->ucs[i].cp;
        if (ar_push(&E->ar, buf, (size_t)k, E->ucs[i].lo, E->ucs[i].hi) != AL_OK) return AL_ENOMEM;
    }
    it->off = off;
    it->n = E->ar.n - off;
    return AL_OK;
}

/* NFC, NFD, NFKC or NFKD of piece *it, written as a new arena piece. */
static int norm_unicode(enc *E, item *it, int compose, int compat) {
    const char *s = E->ar.b + it->off;
    size_t n = it->n, i, m = 0;
    /* Fast path. Nothing below U+00A0 (lead byte 0xC2) has a compatibility
     * decomposition; nothing below U+00C0 (0xC3) a canonical one; and
     * nothing below U+0300 (0xCC) changes in NFC or combines with what
     * precedes it. */
    unsigned char lim = compat ? 0xC2 : compose ? 0xCC : 0xC3;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] >= lim) break;
    if (i == n) return AL_OK;
    int rc = decompose_piece(E, it, compat, &m);
    if (rc != AL_OK) return rc;
    if (compose) m = compose_ucs(E, m);
    return ucs_to_piece(E, it, m);
}

/* Lowercase (NormalizedString::lowercase): each character's full lowercase
 * mapping, without context (Rust's char::to_lowercase: a capital sigma is
 * always U+03C3), every output character aligned with its source. */
static int norm_lowercase(enc *E, item *it) {
    size_t m = 0;
    int rc = map_chars(E, it, MAP_LOWER, &m);
    return rc != AL_OK ? rc : ucs_to_piece(E, it, m);
}

/* Replaces every match of p in piece *it by text (NormalizedString::replace). */
static int norm_replace(enc *E, item *it, const tpattern *p, const char *text, size_t text_n) {
    int rc = find_segments(E, p, E->ar.b + it->off, it->n, 0);
    if (rc != AL_OK) return rc;
    int any = 0;
    for (size_t i = 0; i < E->segs_n; i++) any |= E->segs[i].match && E->segs[i].e > E->segs[i].s;
    if (!any) return AL_OK;
    size_t off = E->ar.n, base = it->off;
    for (size_t i = 0; i < E->segs_n; i++) {
        seg g = E->segs[i];
        if (g.e == g.s) continue;
        if (!g.match) {
            rc = ar_copy(&E->ar, base + g.s, g.e - g.s);
        } else {
            int32_t lo = E->ar.lo[base + g.s], hi = E->ar.hi[base + g.e - 1];
            rc = ar_push(&E->ar, text, text_n, lo, hi);
        }
        if (rc != AL_OK) return rc;
    }
    it->off = off;
    it->n = E->ar.n - off;
    return AL_OK;
}

/* Prepends text to piece *it, aligned with its first byte. */
static int piece_prepend(enc *E, item *it, const char *text, size_t text_n) {
    size_t off = E->ar.n;
    int32_t lo = E->ar.lo[it->off], hi = E->ar.hi[it->off];
    if (ar_push(&E->ar, text, text_n, lo, hi) != AL_OK) return AL_ENOMEM;
    if (ar_copy(&E->ar, it->off, it->n) != AL_OK) return AL_ENOMEM;
    it->off = off;
    it->n = E->ar.n - off;
    return AL_OK;
}

static int normalize_piece(enc *E, item *it) {
    const al_tok *t = E->t;
    int rc;
    for (int k = 0; k < t->n_norm && it->n > 0; k++) {
        const norm_step *st = &t->norm[k];
        switch (st->kind) {
        case N_NFC:
        case N_NFD:
        case N_NFKC:
        case N_NFKD:
            rc = norm_unicode(E, it, st->kind == N_NFC || st->kind == N_NFKC,
                              st->kind == N_NFKC || st->kind == N_NFKD);
            break;
        case N_LOWERCASE:
            rc = norm_lowercase(E, it);
            break;
        case N_PREPEND:
            rc = piece_prepend(E, it, st->text, st->text_n);
            break;
        case N_REPLACE:
            rc = norm_replace(E, it, &st->pat, st->text, st->text_n);
            break;
        default: { /* N_STRIP */
            const char *s = E->ar.b + it->off;
            size_t a = 0, b = it->n;
            uint32_t cp;
            int n;
            if (st->left)
                while (a < b && (n = tok_utf8_dec((const unsigned char *)s + a, b - a, &cp)) > 0 &&
                       uc_is_space(cp))
                    a += (size_t)n;
            if (st->right)
                while (b > a) {
                    size_t cs = last_char_start(s, b);
                    if (tok_utf8_dec((const unsigned char *)s + cs, b - cs, &cp) <= 0 || !uc_is_space(cp))
                        break;
                    b = cs;
                }
            it->off += a;
            it->n = b - a;
            rc = AL_OK;
        }
        }
        if (rc != AL_OK) return rc;
    }
    return AL_OK;
}

/* --- pre-tokenizers */

static int bytelevel_map(enc *E, const item *it) {
    const al_tok *t = E->t;
    size_t off = E->ar.n;
    if (ar_reserve(&E->ar, it->n * 2) != AL_OK) return AL_ENOMEM;
    for (size_t i = 0; i < it->n; i++) {
        int b = (unsigned char)E->ar.b[it->off + i];
        for (int j = 0; j < t->byte_utf8_n[b]; j++) {
            E->ar.b[E->ar.n] = t->byte_utf8[b][j];
            E->ar.lo[E->ar.n] = E->ar.lo[it->off + i];
            E->ar.hi[E->ar.n] = E->ar.hi[it->off + i];
            E->ar.n++;
        }
    }
    return text_item(&E->nxt, off, E->ar.n - off);
}

static int pre_step_run(enc *E, const pre_step *st) {
    int rc = AL_OK;
    for (size_t i = 0; i < E->cur.n && rc == AL_OK; i++) {
        item it = E->cur.v[i];
        if (it.id >= 0) {
            rc = items_push(&E->nxt, it);
            continue;
        }
        if (st->kind == P_SPLIT) {
            rc = split_piece(E, &it, &st->pat, st->behavior, st->invert);
        } else if (st->kind == P_BYTELEVEL) {
            if (st->add_prefix_space && E->ar.b[it.off] != ' ' &&
                (rc = piece_prepend(E, &it, " ", 1)) != AL_OK)
                break;
            if (st->pat.re) {
                /* Split with the GPT-2 regex, then map each piece's bytes. */
                size_t mark = E->nxt.n;
                if ((rc = split_piece(E, &it, &st->pat, BEH_ISOLATED, 0)) != AL_OK) break;
                size_t end = E->nxt.n;
                for (size_t j = mark; j < end && rc == AL_OK; j++) {
                    item sub = E->nxt.v[j];
                    rc = bytelevel_map(E, &sub);
                }
                if (rc != AL_OK) break;
                /* Drop the unmapped pieces, keep the mapped ones. */
                memmove(E->nxt.v + mark, E->nxt.v + end, (E->nxt.n - end) * sizeof *E->nxt.v);
                E->nxt.n -= end - mark;
            } else {
                rc = bytelevel_map(E, &it);
            }
        } else { /* P_METASPACE */
            tpattern space = {" ", 1, NULL};
            int32_t orig0 = E->ar.lo[it.off];
            if ((rc = norm_replace(E, &it, &space, st->rep, (size_t)st->rep_n)) != AL_OK) break;
            int starts = it.n >= (size_t)st->rep_n && memcmp(E->ar.b + it.off, st->rep, (size_t)st->rep_n) == 0;
            if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && orig0 == 0)) &&
                (rc = piece_prepend(E, &it, st->rep, (size_t)st->rep_n)) != AL_OK)
                break;
            if (st->split) {
                tpattern rep = {(char *)st->rep, (size_t)st->rep_n, NULL};
                rc = split_piece(E, &it, &rep, BEH_MERGED_NEXT, 0);
            } else {
                rc = items_push(&E->nxt, it);
            }
        }
    }
    if (rc == AL_OK) items_swap(E);
    return rc;
}

/* --- BPE model */

static int heap_push(enc *E, size_t *hn, uint32_t rank, int32_t pos, int32_t id) {
    if (*hn == E->heap_cap) {
        size_t cap = E->heap_cap ? E->heap_cap * 2 : 64;
        hent *h = realloc(E->heap, cap * sizeof *h);
        if (!h) return AL_ENOMEM;
        E->heap = h;
        E->heap_cap = cap;
    }
    hent *h = E->heap;
    size_t i = (*hn)++;
    hent x = {rank, pos, id};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].rank < x.rank || (h[p].rank == x.rank && h[p].pos <= x.pos)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
    return AL_OK;
}

static hent heap_pop(enc *E, size_t *hn) {
    hent *h = E->heap;
    hent top = h[0];
    hent x = h[--(*hn)];
    size_t n = *hn, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos)))
            c++;
        if (x.rank < h[c].rank || (x.rank == h[c].rank && x.pos <= h[c].pos)) break;
        h[i] = h[c];
        i = c;
    }
    if (n > 0) h[i] = x;
    return top;
}

static int sym_push(enc *E, size_t *ns, int32_t id, size_t s, size_t e) {
    if (*ns == E->syms_cap) {
        size_t cap = E->syms_cap ? E->syms_cap * 2 : 64;
        sym *p = realloc(E->syms, cap * sizeof *p);
        if (!p) return AL_ENOMEM;
        E->syms = p;
        E->syms_cap = cap;
    }
    sym x = {id, (int32_t)s, (int32_t)e, (int32_t)*ns - 1, (int32_t)*ns + 1, 0};
    E->syms[(*ns)++] = x;
    return AL_OK;
}

/* Model id of the character s[0..k) at position (first/last) of a word. */
static int32_t char_id(const al_tok *t, const char *s, size_t k, int first, int last) {
    if ((first || !t->sw_prefix) && (!last || !t->eow_suffix)) {
        uint32_t cp;
        if (k <= 2 && tok_utf8_dec((const unsigned char *)s, k, &cp) == (int)k && cp < 0x800)
            return t->char_id[cp];
        return tok_vocab_get(t, s, k);
    }
    char buf[256];
    size_t n = 0, pn = first ? 0 : t->sw_prefix_n, sn = last ? t->eow_suffix_n : 0;
    if (pn + k + sn > sizeof buf) return -1;
    if (pn) memcpy(buf, t->sw_prefix, pn);
    n = pn;
    memcpy(buf + n, s, k);
    n += k;
    if (sn) memcpy(buf + n, t->eow_suffix, sn);
    n += sn;
    return tok_vocab_get(t, buf, n);
}

/* Emits a token of piece it covering piece bytes [s, e). */
static int emit(enc *E, const item *it, int32_t id, size_t s, size_t e) {
    int32_t lo = INT32_MAX, hi = 0;
    for (size_t i = it->off + s; i < it->off + e; i++) {
        if (E->ar.lo[i] < lo) lo = E->ar.lo[i];
        if (E->ar.hi[i] > hi) hi = E->ar.hi[i];
    }
    if (s == e) lo = hi = E->ar.lo[it->off + (s < it->n ? s : it->n - 1)];
    return out_push(E, id, lo, hi);
}

/* The slot of shard sh (its slots allocated, its mutex held) that holds
 * the entry for piece s[0..n) of hash h, or the empty slot where it goes. */
static uint32_t cache_probe(const cache_shard *sh, uint64_t h, const char *s, size_t n) {
    uint32_t mask = CACHE_SHARD_CAP * 2 - 1, i = (uint32_t)(h >> 8) & mask;
    for (;; i = (i + 1) & mask) {
        const cache_entry *ce = sh->slot[i];
        if (!ce || (ce->h == h && ce->key_n == n && memcmp(ce + 1, s, n) == 0)) return i;
    }
}

/* The word cache's entry for piece s[0..n) of hash h, looked up in shard
 * sh: on a hit its tokens are emitted and *hit_out set. */
static int cache_lookup(enc *E, const item *it, cache_shard *sh, uint64_t h, const char *s, size_t n,
                        int *hit_out) {
    int rc;
    *hit_out = 0;
    pthread_mutex_lock(&sh->mu);
    cache_entry *hit = sh->slot ? sh->slot[cache_probe(sh, h, s, n)] : NULL;
    if (hit) {
        int32_t *ids = ce_ids(hit);
        uint16_t cnt = hit->n;
        int32_t *se = ids + cnt;
        int32_t tmp_ids[CACHE_MAX_KEY], tmp_se[2 * CACHE_MAX_KEY];
        memcpy(tmp_ids, ids, cnt * sizeof *ids);
        memcpy(tmp_se, se, 2 * cnt * sizeof *se);
        pthread_mutex_unlock(&sh->mu);
        *hit_out = 1;
        for (int i = 0; i < cnt; i++)
            if ((rc = emit(E, it, tmp_ids[i], (size_t)tmp_se[2 * i], (size_t)tmp_se[2 * i + 1])) != AL_OK)
                return rc;
        return AL_OK;
    }
    pthread_mutex_unlock(&sh->mu);
    return AL_OK;
}

/* Remembers the surviving symbols y[0..ns) of piece s[0..n) (ids and
 * piece-relative spans) for the next occurrence. The cache is an
 * optimisation only: a failed allocation or a full shard stores nothing. */
static void cache_store(cache_shard *sh, uint64_t h, const char *s, size_t n, const sym *y, size_t ns) {
    size_t cnt = 0;
    for (size_t i = 0; i < ns; i++) cnt += !y[i].dead;
    size_t key_sz = (n + 3u) & ~(size_t)3u;
    cache_entry *ce = malloc(sizeof *ce + key_sz + cnt * 3 * sizeof(int32_t));
    if (!ce) return;
    ce->h = h;
    ce->key_n = (uint16_t)n;
    ce->n = (uint16_t)cnt;
    memcpy(ce + 1, s, n);
    int32_t *ids = ce_ids(ce), *se = ids + cnt;
    size_t j = 0;
    for (size_t i = 0; i < ns; i++) {
        if (y[i].dead) continue;
        ids[j] = y[i].id;
        se[2 * j] = y[i].start;
        se[2 * j + 1] = y[i].end;
        j++;
    }
    pthread_mutex_lock(&sh->mu);
    int stored = 0;
    if (!sh->slot) sh->slot = calloc(CACHE_SHARD_CAP * 2, sizeof *sh->slot);
    if (sh->slot && sh->count < CACHE_SHARD_CAP) {
        uint32_t i = cache_probe(sh, h, s, n);
        if (!sh->slot[i]) {
            sh->slot[i] = ce;
            sh->count++;
            stored = 1;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    if (!stored) free(ce);
}

/* One symbol per character (BPE::merge_word), with byte fallback and the
 * unknown token (fused when fuse_unk); *ns_out symbols in E->syms. */
static int word_symbols(enc *E, const char *s, size_t n, size_t *ns_out) {
    const al_tok *t = E->t;
    int rc;
    size_t ns = 0;
    int32_t unk_s = -1, unk_e = -1;
    for (size_t i = 0; i < n;) {
        size_t k = (size_t)utf8_unit(s + i, n - i);
        int32_t id = char_id(t, s + i, k, i == 0, i + k == n);
        if (id >= 0) {
            if (unk_s >= 0) {
                if ((rc = sym_push(E, &ns, t->unk_id, (size_t)unk_s, (size_t)unk_e)) != AL_OK) return rc;
                unk_s = -1;
            }
            if ((rc = sym_push(E, &ns, id, i, i + k)) != AL_OK) return rc;
        } else {
            int fell_back = 0;
            if (t->byte_fallback) {
                size_t j;
                for (j = 0; j < k && t->bf_id[(unsigned char)s[i + j]] >= 0; j++) {}
                if (j == k) {
                    for (j = 0; j < k; j++)
                        if ((rc = sym_push(E, &ns, t->bf_id[(unsigned char)s[i + j]], i + j, i + j + 1)) != AL_OK)
                            return rc;
                    fell_back = 1;
                }
            }
            if (!fell_back && t->unk_id >= 0) {
                if (unk_s >= 0 && t->fuse_unk) {
                    unk_e = (int32_t)(i + k);
                } else {
                    if (unk_s >= 0 && (rc = sym_push(E, &ns, t->unk_id, (size_t)unk_s, (size_t)unk_e)) != AL_OK)
                        return rc;
                    unk_s = (int32_t)i;
                    unk_e = (int32_t)(i + k);
                }
            }
        }
        i += k;
    }
    if (unk_s >= 0 && (rc = sym_push(E, &ns, t->unk_id, (size_t)unk_s, (size_t)unk_e)) != AL_OK) return rc;
    *ns_out = ns;
    return AL_OK;
}

/* Word::merge_all: merges by rank, then position, until none applies. */
static int merge_all(enc *E, size_t ns) {
    const al_tok *t = E->t;
    sym *y = E->syms;
    int rc;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const merge_slot *m = merge_get(t, y[i].id, y[i + 1].id);
        if (m && (rc = heap_push(E, &hn, m->rank, (int32_t)i, m->id)) != AL_OK) return rc;
    }
    while (hn > 0) {
        hent top = heap_pop(E, &hn);
        y = E->syms;
        sym *cur = &y[top.pos];
        if (cur->dead || cur->next < 0) continue;
        int32_t nx = cur->next;
        const merge_slot *m = merge_get(t, cur->id, y[nx].id);
        if (!m || m->id != top.id) continue; /* stale entry */
        cur->id = top.id;
        cur->end = y[nx].end;
        cur->next = y[nx].next;
        y[nx].dead = 1;
        if (cur->next >= 0) y[cur->next].prev = top.pos;
        if (cur->prev >= 0) {
            m = merge_get(t, y[cur->prev].id, cur->id);
            if (m && (rc = heap_push(E, &hn, m->rank, cur->prev, m->id)) != AL_OK) return rc;
            y = E->syms;
            cur = &y[top.pos];
        }
        if (cur->next >= 0) {
            m = merge_get(t, cur->id, y[cur->next].id);
            if (m && (rc = heap_push(E, &hn, m->rank, top.pos, m->id)) != AL_OK) return rc;
        }
    }
    return AL_OK;
}

static int bpe_piece(enc *E, const item *it) {
    const al_tok *t = E->t;
    const char *s = E->ar.b + it->off;
    size_t n = it->n;
    int rc;
    if (t->ignore_merges) {
        int32_t id = tok_vocab_get(t, s, n);
        if (id >= 0) return emit(E, it, id, 0, n);
    }
    uint64_t h = 0;
    cache_shard *sh = NULL;
    if (t->cache && n <= CACHE_MAX_KEY) {
        h = hash_bytes(s, n);
        sh = &t->cache[h % CACHE_SHARDS];
        int hit;
        if ((rc = cache_lookup(E, it, sh, h, s, n, &hit)) != AL_OK || hit) return rc;
    }
    size_t ns = 0;
    if ((rc = word_symbols(E, s, n, &ns)) != AL_OK) return rc;
    if (ns == 0) return AL_OK;
    E->syms[ns - 1].next = -1;
    if ((rc = merge_all(E, ns)) != AL_OK) return rc;
    const sym *y = E->syms;
    for (size_t i = 0; i < ns; i++) {
        if (y[i].dead) continue;
        if ((rc = emit(E, it, y[i].id, (size_t)y[i].start, (size_t)y[i].end)) != AL_OK) return rc;
    }
    if (sh) cache_store(sh, h, s, n, y, ns);
    return AL_OK;
}

static void enc_deinit(enc *E) {
    free(E->ar.b);
    free(E->ar.lo);
    free(E->ar.hi);
    free(E->cur.v);
    free(E->nxt.v);
    free(E->ids);
    free(E->st);
    free(E->en);
    free(E->syms);
    free(E->heap);
    free(E->segs);
    free(E->ucs);
    free(E->ucs_tmp);
    if (E->md) pcre2_match_data_free(E->md);
    if (E->mctx) pcre2_match_context_free(E->mctx);
    if (E->js) pcre2_jit_stack_free(E->js);
}

static int enc_init(enc *E, const al_tok *t, char *err) {
    memset(E, 0, sizeof *E);
    E->t = t;
    E->err = err;
    E->md = pcre2_match_data_create(1, NULL);
    return E->md ? AL_OK : AL_ENOMEM;
}

/* Runs the normalizer over s and returns the result in out (for added
 * tokens' normalized content at load time). */
int tok_normalize_string(const al_tok *t, const char *s, size_t n, al_buf *out) {
    enc E;
    int rc = enc_init(&E, t, NULL);
    if (rc == AL_OK) rc = ar_push(&E.ar, s, n, 0, 1);
    item it = {0, n, -1, 0, 0};
    if (rc == AL_OK && n > 0) rc = normalize_piece(&E, &it);
    if (rc == AL_OK) rc = al_buf_put(out, E.ar.b + it.off, it.n);
    enc_deinit(&E);
    return rc;
}

int al_tok_encode(const al_tok *t, const char *text, size_t len, int add_special,
                  int parse_special, int32_t **ids, int *n, int32_t **starts, int32_t **ends,
                  char err[AL_ERRLEN]) {
    AL_ASSERT(t && ids && n && (text || len == 0));
    if (len > (size_t)INT32_MAX / 2)
        return al_err(err, AL_ERANGE, "text of %zu bytes is too long to tokenize", len);
    enc E;
    int rc = enc_init(&E, t, err);
    if (rc != AL_OK) goto done;
    if ((rc = ar_reserve(&E.ar, len + 1)) != AL_OK) goto done;
    if (len) memcpy(E.ar.b, text, len);
    for (size_t i = 0; i < len; i++) {
        E.ar.lo[i] = (int32_t)i;
        E.ar.hi[i] = (int32_t)i + 1;
    }
    E.ar.n = len;
    if ((rc = text_item(&E.cur, 0, len)) != AL_OK) goto done;

    /* 1. added tokens matched on the raw text */
    if (t->raw_set.first[256] > 0) {
        for (size_t i = 0; i < E.cur.n && rc == AL_OK; i++)
            rc = split_added(&E, &E.cur.v[i], &t->raw_set, parse_special);
        if (rc != AL_OK) goto done;
        items_swap(&E);
    }
    /* 2. normalizer, then added tokens matched on the normalized pieces */
    for (size_t i = 0; i < E.cur.n && rc == AL_OK; i++) {
        item it = E.cur.v[i];
        if (it.id < 0) rc = normalize_piece(&E, &it);
        if (rc != AL_OK) break;
        if (it.id < 0 && t->norm_set.first[256] > 0) rc = split_added(&E, &it, &t->norm_set, parse_special);
        else rc = items_push(&E.nxt, it);
    }
    if (rc != AL_OK) goto done;
    items_swap(&E);
    /* 3. pre-tokenizers */
    for (int k = 0; k < t->n_pre && rc == AL_OK; k++) rc = pre_step_run(&E, &t->pre[k]);
    if (rc != AL_OK) goto done;
    /* 4. model; 5. post-processor */
    if (add_special && t->n_prefix > 0) {
        /* Never a second BOS: skip the prefix when the text starts with it. */
        int have = E.cur.n >= (size_t)t->n_prefix;
        for (int k = 0; k < t->n_prefix && have; k++) have = E.cur.v[k].id == t->prefix[k];
        for (int k = 0; k < t->n_prefix && !have && rc == AL_OK; k++) rc = out_push(&E, t->prefix[k], 0, 0);
    }
    for (size_t i = 0; i < E.cur.n && rc == AL_OK; i++) {
        item *it = &E.cur.v[i];
        if (it->id >= 0) rc = out_push(&E, it->id, it->s0, it->e0);
        else rc = bpe_piece(&E, it);
    }
    if (rc != AL_OK) goto done;
    if (add_special && t->n_suffix > 0) {
        int have = E.cur.n >= (size_t)t->n_suffix;
        for (int k = 0; k < t->n_suffix && have; k++)
            have = E.cur.v[E.cur.n - (size_t)t->n_suffix + (size_t)k].id == t->suffix[k];
        for (int k = 0; k < t->n_suffix && !have && rc == AL_OK; k++)
            rc = out_push(&E, t->suffix[k], (int32_t)len, (int32_t)len);
    }
    if (rc != AL_OK) goto done;
    if (E.n == 0 && (rc = out_push(&E, 0, 0, 0)) == AL_OK) E.n = 0; /* non-NULL arrays */
    if (rc != AL_OK) goto done;
    *ids = E.ids;
    E.ids = NULL;
    *n = (int)E.n;
    if (starts) {
        *starts = E.st;
        E.st = NULL;
    }
    if (ends) {
        *ends = E.en;
        E.en = NULL;
    }
done:
    if (rc == AL_ENOMEM) al_err(err, rc, "out of memory while tokenizing");
    enc_deinit(&E);
    return rc;
}

/* ------------------------------------------------------------ decoding */

typedef struct dtoks {
    al_buf buf;
    size_t *off, *len;
    size_t n, cap;
} dtoks;

static int dt_add(dtoks *d, const char *s, size_t n) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        if (tok_realloc(&d->off, cap, sizeof *d->off) || tok_realloc(&d->len, cap, sizeof *d->len))
            return AL_ENOMEM;
        d->cap = cap;
    }
    d->off[d->n] = d->buf.n;
    d->len[d->n] = n;
    d->n++;
    return al_buf_put(&d->buf, s, n);
}

/* Opens a new token whose bytes the caller appends to d->buf. */
static int dt_open(dtoks *d) {
    int rc = dt_add(d, "", 0);
    return rc;
}

static void dt_close(dtoks *d) { d->len[d->n - 1] = d->buf.n - d->off[d->n - 1]; }

static void dt_free(dtoks *d) {
    free(d->buf.p);
    free(d->off);
    free(d->len);
    memset(d, 0, sizeof *d);
}

/* ByteLevel: the bytes of each token's characters (GPT-2's byte map
 * undone; a token with other characters goes as it is), all as one token,
 * invalid UTF-8 replaced as from_utf8_lossy does. */
static int dec_bytelevel(const al_tok *t, const dec_step *st, const dtoks *in, dtoks *out,
                         pcre2_match_data *md) {
    (void)st, (void)md;
    int rc = AL_OK;
    al_buf raw = {0};
    for (size_t i = 0; i < in->n && rc == AL_OK; i++) {
        const char *s = in->buf.p + in->off[i];
        size_t n = in->len[i], j, m = 0;
        char tmp[64];
        int all = 1;
        /* All characters map back to bytes, or the token goes as is. */
        for (j = 0; j < n;) {
            uint32_t cp;
            int k = tok_utf8_dec((const unsigned char *)s + j, n - j, &cp);
            if (k <= 0 || cp >= 0x144 || t->byte_of_char[cp] < 0) {
                all = 0;
                break;
            }
            j += (size_t)k;
        }
        if (!all) {
            rc = al_buf_put(&raw, s, n);
            continue;
        }
        for (j = 0; j < n && rc == AL_OK;) {
            uint32_t cp;
            int k = tok_utf8_dec((const unsigned char *)s + j, n - j, &cp);
            tmp[m++] = (char)t->byte_of_char[cp];
            j += (size_t)k;
            if (m == sizeof tmp) {
                rc = al_buf_put(&raw, tmp, m);
                m = 0;
            }
        }
        if (rc == AL_OK) rc = al_buf_put(&raw, tmp, m);
    }
    if (rc == AL_OK && (rc = dt_open(out)) == AL_OK) {
        rc = sb_put_lossy(&out->buf, raw.p ? raw.p : "", raw.n);
        dt_close(out);
    }
    free(raw.p);
    return rc;
}

/* Metaspace: the replacement character back to a space (but the first
 * token's leading one when a prefix space was prepended). */
static int dec_metaspace(const al_tok *t, const dec_step *st, const dtoks *in, dtoks *out,
                         pcre2_match_data *md) {
    (void)t, (void)md;
    int rc = AL_OK;
    for (size_t i = 0; i < in->n && rc == AL_OK; i++) {
        const char *s = in->buf.p + in->off[i];
        size_t n = in->len[i];
        if ((rc = dt_open(out)) != AL_OK) return rc;
        for (size_t j = 0; j < n && rc == AL_OK;) {
            uint32_t cp = 0;
            int k = tok_utf8_dec((const unsigned char *)s + j, n - j, &cp);
            if (k <= 0) k = 1, cp = 0xFFFFFFFFu;
            if (cp == st->rep) {
                if (!(i == 0 && st->prepend != PREPEND_NEVER)) rc = al_buf_put(&out->buf, " ", 1);
            } else {
                rc = al_buf_put(&out->buf, s + j, (size_t)k);
            }
            j += (size_t)k;
        }
        dt_close(out);
    }
    return rc;
}

/* Replace: every match of the pattern by the content, in each token. */
static int dec_replace(const al_tok *t, const dec_step *st, const dtoks *in, dtoks *out,
                       pcre2_match_data *md) {
    (void)t;
    int rc = AL_OK;
    for (size_t i = 0; i < in->n && rc == AL_OK; i++) {
        const char *s = in->buf.p + in->off[i];
        size_t n = in->len[i];
        if ((rc = dt_open(out)) != AL_OK) return rc;
        size_t p = 0;
        if (st->pat.re) {
            size_t pos = 0, last_end = (size_t)-1;
            while (pos <= n && rc == AL_OK) {
                int m = pcre2_match(st->pat.re, (PCRE2_SPTR)s, n, pos, 0, md, NULL);
                if (m < 0) break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (ms == me && me == last_end) {
                    if (pos >= n) break;
                    pos += (size_t)utf8_unit(s + pos, n - pos);
                    continue;
                }
                rc = al_buf_put(&out->buf, s + p, ms - p);
                if (rc == AL_OK) rc = al_buf_put(&out->buf, st->text, st->text_n);
                p = me;
                pos = me;
                last_end = me;
            }
        } else if (st->pat.lit_n > 0) {
            for (size_t j = 0; j + st->pat.lit_n <= n && rc == AL_OK;) {
                if (memcmp(s + j, st->pat.lit, st->pat.lit_n) == 0) {
                    rc = al_buf_put(&out->buf, s + p, j - p);
                    if (rc == AL_OK) rc = al_buf_put(&out->buf, st->text, st->text_n);
                    j += st->pat.lit_n;
                    p = j;
                } else {
                    j++;
                }
            }
        }
        if (rc == AL_OK) rc = al_buf_put(&out->buf, s + p, n - p);
        dt_close(out);
    }
    return rc;
}

/* ByteFallback: runs of <0xNN> tokens as their bytes, one U+FFFD per
 * byte when they are not valid UTF-8. */
static int dec_bytefallback(const al_tok *t, const dec_step *st, const dtoks *in, dtoks *out,
                            pcre2_match_data *md) {
    (void)t, (void)st, (void)md;
    int rc = AL_OK;
    char bytes[256];
    size_t nb = 0;
    al_buf pend = {0};
    for (size_t i = 0; i <= in->n && rc == AL_OK; i++) {
        const char *s = i < in->n ? in->buf.p + in->off[i] : "";
        size_t n = i < in->n ? in->len[i] : 0;
        int byte = -1;
        if (i < in->n && n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') {
            /* u8::from_str_radix(&token[3..5], 16), which takes a '+' */
            char hx[3] = {s[3], s[4], 0};
            const char *q = hx[0] == '+' ? hx + 1 : hx;
            int ok = *q != 0;
            for (const char *c = q; *c; c++)
                if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F')))
                    ok = 0;
            if (ok) byte = (int)strtol(q, NULL, 16);
        }
        if (byte >= 0) {
            if (nb == sizeof bytes) {
                rc = al_buf_put(&pend, bytes, nb);
                nb = 0;
            }
            bytes[nb++] = (char)byte;
            continue;
        }
        if (nb > 0 || pend.n > 0) {
            if ((rc = al_buf_put(&pend, bytes, nb)) != AL_OK) break;
            nb = 0;
            size_t j = 0;
            uint32_t cp;
            int k = 1;
            while (j < pend.n && (k = tok_utf8_dec((const unsigned char *)pend.p + j, pend.n - j, &cp)) > 0)
                j += (size_t)k;
            if (j == pend.n) {
                rc = dt_add(out, pend.p, pend.n);
            } else {
                for (j = 0; j < pend.n && rc == AL_OK; j++) rc = dt_add(out, "\xEF\xBF\xBD", 3);
            }
            pend.n = 0;
        }
        if (i < in->n && rc == AL_OK) rc = dt_add(out, s, n);
    }
    free(pend.p);
    return rc;
}

/* Fuse: all tokens as one. */
static int dec_fuse(const al_tok *t, const dec_step *st, const dtoks *in, dtoks *out,
                    pcre2_match_data *md) {
    (void)t, (void)st, (void)md;
    int rc = AL_OK;
    if ((rc = dt_open(out)) != AL_OK) return rc;
    for (size_t i = 0; i < in->n && rc == AL_OK; i++) rc = al_buf_put(&out->buf, in->buf.p + in->off[i], in->len[i]);
    dt_close(out);
    return rc;
}

/* Strip: up to start leading and stop trailing content characters. */
static int dec_strip(const al_tok *t, const dec_step *st, const dtoks *in, dtoks *out,
                     pcre2_match_data *md) {
    (void)t, (void)md;
    int rc = AL_OK;
    for (size_t i = 0; i < in->n && rc == AL_OK; i++) {
        const char *s = in->buf.p + in->off[i];
        size_t n = in->len[i], a = 0, b = n;
        uint32_t cp;
        int k;
        for (int c = 0; c < st->start && a < n; c++) {
            if ((k = tok_utf8_dec((const unsigned char *)s + a, n - a, &cp)) <= 0 || cp != st->rep) break;
            a += (size_t)k;
        }
        for (int c = 0; c < st->stop && b > a; c++) {
            size_t cs = last_char_start(s, b);
            if (tok_utf8_dec((const unsigned char *)s + cs, b - cs, &cp) <= 0 || cp != st->rep) break;
            b = cs;
        }
        rc = dt_add(out, s + a, b - a);
    }
    return rc;
}

/* The decoder steps by kind (D_*): each maps the tokens in to out. */
typedef int (*dec_fn)(const al_tok *t, const dec_step *st, const dtoks *in, dtoks *out, pcre2_match_data *md);
static const dec_fn DECODERS[] = {
    [D_BYTELEVEL] = dec_bytelevel, [D_METASPACE] = dec_metaspace, [D_REPLACE] = dec_replace,
    [D_BYTEFALLBACK] = dec_bytefallback, [D_FUSE] = dec_fuse, [D_STRIP] = dec_strip,
};

int al_tok_decode(const al_tok *t, const int32_t *ids, int n, int skip_special, char **text,
                  size_t *len) {
    AL_ASSERT(t && text && len && (ids || n == 0));
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->id_str[ids[i]]) return AL_ERANGE;
    dtoks a = {0}, b = {0};
    int rc = AL_OK;
    for (int i = 0; i < n && rc == AL_OK; i++) {
        if (skip_special && (t->id_flags[ids[i]] & F_SPECIAL)) continue;
        rc = dt_add(&a, t->id_str[ids[i]], t->id_len[ids[i]]);
    }
    pcre2_match_data *md = NULL;
    if (rc == AL_OK && t->has_decoder) {
        md = pcre2_match_data_create(1, NULL);
        if (!md) rc = AL_ENOMEM;
        for (int k = 0; k < t->n_dec && rc == AL_OK; k++) {
            b.n = 0;
            b.buf.n = 0;
            rc = DECODERS[t->dec[k].kind](t, &t->dec[k], &a, &b, md);
            dtoks tmp = a;
            a = b;
            b = tmp;
        }
    }
    al_buf out = {0};
    for (size_t i = 0; i < a.n && rc == AL_OK; i++) {
        if (!t->has_decoder && i > 0) rc = al_buf_put(&out, " ", 1);
        if (rc == AL_OK) rc = al_buf_put(&out, a.buf.p + a.off[i], a.len[i]);
    }
    if (rc == AL_OK) rc = al_buf_put(&out, "", 0);
    if (md) pcre2_match_data_free(md);
    dt_free(&a);
    dt_free(&b);
    if (rc != AL_OK) {
        free(out.p);
        return rc;
    }
    *text = out.p;
    *len = out.n;
    return AL_OK;
}

/* ------------------------------------------------------------ accessors */

int al_tok_vocab_size(const al_tok *t) { return t->n_ids; }

int32_t al_tok_id(const al_tok *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = tok_map_get(t->added_slot, t->added_mask, t, token, n);
    return id >= 0 ? id : tok_vocab_get(t, token, n);
}

const char *al_tok_str(const al_tok *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->id_str[id] : NULL;
}

int al_tok_is_special(const al_tok *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->id_flags[id] & F_SPECIAL) != 0;
}

int32_t al_tok_bos(const al_tok *t) { return t->bos; }
int32_t al_tok_eos(const al_tok *t) { return t->eos; }
int32_t al_tok_pad(const al_tok *t) { return t->pad; }

int al_tok_adds_bos(const al_tok *t) {
    for (int i = 0; i < t->n_prefix; i++)
        if (t->prefix[i] == t->bos && t->bos >= 0) return 1;
    return 0;
}

int al_tok_adds_eos(const al_tok *t) {
    for (int i = 0; i < t->n_suffix; i++)
        if (t->suffix[i] == t->eos && t->eos >= 0) return 1;
    return 0;
}

const char *al_tok_bos_str(const al_tok *t) { return t->bos_str ? t->bos_str : ""; }
const char *al_tok_eos_str(const al_tok *t) { return t->eos_str ? t->eos_str : ""; }
const char *al_tok_chat_template(const al_tok *t) { return t->chat_template; }


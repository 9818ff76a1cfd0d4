/* Tokenizers: Hugging Face tokenizer.json with a BPE model (byte-level as
 * GPT-2, Llama 3, Qwen2, SmolLM; SentencePiece-style with the ▁ metaspace and
 * <0xNN> byte fallback as Llama 2, TinyLlama, Mistral) and the byte
 * tokenizer of the built-in tiny models, which is the same machinery with a
 * 256-entry vocabulary and no merges.
 *
 * Loading flattens tokenizer.json into step lists: normalizer steps,
 * pre-tokenizer steps, the BPE model (vocabulary hash, merge hash keyed by
 * the id pair), decoder steps and the post-processor's prefix/suffix ids.
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
 * tokenizer_config.json is applied as transformers does: bos/eos/pad
 * tokens, chat_template (string or the "default" of a list, overridden by
 * chat_template.jinja), and for the Llama/CodeLlama/Gemma classes a
 * template rebuilt from add_bos_token (default true) and add_eos_token.
 *
 * Threads: a loaded al_tok is immutable apart from the word cache, which is
 * sharded behind mutexes; encode/decode allocate their scratch per call
 * (PCRE2 match data included), so any number of threads may share one. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <jansson.h>
#include <limits.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../buf.h"
#include "../io.h"

#define TOK_MAX_FILE ((size_t)1 << 30) /* tokenizer.json read cap */
#define TOK_MAX_ID (1 << 22)           /* ids above this are rejected */
#define TOK_MAX_DEPTH 16               /* nesting of Sequence steps */
#define CACHE_SHARDS 64
#define CACHE_SHARD_CAP 4096 /* entries per shard; a full shard stops inserting */
#define CACHE_MAX_KEY 48     /* longer pieces are not cached */

/* ---------------------------------------------------------------- utilities */

static char *xstrndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* Decodes the UTF-8 character at s (n > 0 bytes left). Returns its length
 * and sets *cp, or returns -k when the bytes are not a character, k being
 * the maximal invalid prefix (what from_utf8_lossy replaces by one U+FFFD). */
static int utf8_dec(const unsigned char *s, size_t n, uint32_t *cp) {
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
    int k = utf8_dec((const unsigned char *)s, n, &cp);
    return k > 0 ? k : 1;
}

static int utf8_enc(uint32_t cp, char *out) {
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
        int k = utf8_dec((const unsigned char *)s + i, n - i, &cp);
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

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * rest to U+0100 onwards in byte order. */
static uint32_t byte_char(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF)))
            n++;
    return 256u + (uint32_t)n;
}

/* ------------------------------------------------------------ step tables */

enum { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
enum { N_NFC, N_NFD, N_PREPEND, N_REPLACE, N_STRIP };
enum { P_SPLIT, P_BYTELEVEL, P_METASPACE };
enum { D_BYTELEVEL, D_METASPACE, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP };
enum { PREPEND_NEVER, PREPEND_ALWAYS, PREPEND_FIRST };
enum { F_MODEL = 1, F_ADDED = 2, F_SPECIAL = 4 };

/* A literal or regex pattern (Split, Replace). */
typedef struct tpattern {
    char *lit;
    size_t lit_n;
    pcre2_code *re;
} tpattern;

typedef struct norm_step {
    int kind;
    tpattern pat;     /* Replace */
    char *text;       /* Replace content, Prepend text */
    size_t text_n;
    int left, right;  /* Strip */
} norm_step;

typedef struct pre_step {
    int kind;
    tpattern pat;       /* Split; ByteLevel with use_regex: the GPT-2 regex */
    int behavior, invert;
    int add_prefix_space;
    char rep[8];        /* Metaspace replacement (UTF-8) */
    int rep_n, prepend, split;
} pre_step;

typedef struct dec_step {
    int kind;
    tpattern pat;       /* Replace */
    char *text;
    size_t text_n;
    uint32_t rep;       /* Metaspace replacement; Strip content */
    int prepend;
    int start, stop;    /* Strip */
} dec_step;

typedef struct added_tok {
    char *norm;         /* content as matched (normalized when normalized) */
    size_t norm_n;
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} added_tok;

/* Added tokens of one kind indexed by first byte, longest first. */
typedef struct match_set {
    int *idx;
    int first[257];
} match_set;

typedef struct merge_slot {
    uint64_t key; /* 0: empty */
    uint32_t rank;
    int32_t id;
} merge_slot;

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

struct al_tok {
    int n_ids;
    char **id_str;
    uint32_t *id_len;
    uint8_t *id_flags;
    int32_t *vocab_slot, *added_slot; /* open addressing, id or -1 */
    uint32_t vocab_mask, added_mask;

    merge_slot *merges;
    uint32_t merges_mask;
    int32_t char_id[0x800]; /* model id of each single character < U+0800 */
    int32_t bf_id[256];     /* <0xNN> ids, -1 when absent */
    int byte_fallback, ignore_merges, fuse_unk;
    int32_t unk_id;
    char *sw_prefix, *eow_suffix; /* continuing_subword_prefix, end_of_word_suffix */
    size_t sw_prefix_n, eow_suffix_n;

    added_tok *added;
    int n_added;
    match_set raw_set, norm_set;

    norm_step *norm;
    int n_norm;
    pre_step *pre;
    int n_pre;
    dec_step *dec;
    int n_dec, has_decoder;
    int16_t byte_of_char[0x144]; /* ByteLevel decoder: char -> byte or -1 */
    char byte_utf8[256][2];      /* ByteLevel: UTF-8 of each byte's character */
    uint8_t byte_utf8_n[256];

    int32_t *prefix, *suffix;
    int n_prefix, n_suffix;

    int32_t bos, eos, pad;
    char *bos_str, *eos_str, *chat_template;
    pcre2_code *re_word; /* Rust regex's \w, for single_word */

    cache_shard *cache;
};

/* ------------------------------------------------------------ vocabulary */

static void map_put(int32_t *slot, uint32_t mask, const al_tok *t, int32_t id) {
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

static int32_t map_get(const int32_t *slot, uint32_t mask, const al_tok *t, const char *s,
                       size_t n) {
    if (!slot) return -1;
    uint64_t h = hash_bytes(s, n);
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        int32_t id = slot[i];
        if (id < 0) return -1;
        if (t->id_len[id] == n && memcmp(t->id_str[id], s, n) == 0) return id;
    }
}

static int32_t vocab_get(const al_tok *t, const char *s, size_t n) {
    return map_get(t->vocab_slot, t->vocab_mask, t, s, n);
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
static void merge_put(al_tok *t, int32_t a, int32_t b, uint32_t rank, int32_t id) {
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

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* ------------------------------------------------------------ word cache */

static cache_shard *cache_new(void) {
    cache_shard *c = calloc(CACHE_SHARDS, sizeof *c);
    if (!c) return NULL;
    for (int i = 0; i < CACHE_SHARDS; i++) pthread_mutex_init(&c[i].mu, NULL);
    return c;
}

static void cache_free(cache_shard *c) {
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

static int ar_reserve(arena *a, size_t extra) {
    if (a->n + extra <= a->cap) return AL_OK;
    size_t cap = a->cap ? a->cap : 256;
    while (cap < a->n + extra) cap *= 2;
    char *b = realloc(a->b, cap);
    if (!b) return AL_ENOMEM;
    a->b = b;
    int32_t *lo = realloc(a->lo, cap * sizeof *lo);
    if (!lo) return AL_ENOMEM;
    a->lo = lo;
    int32_t *hi = realloc(a->hi, cap * sizeof *hi);
    if (!hi) return AL_ENOMEM;
    a->hi = hi;
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
        item *p = realloc(v->v, cap * sizeof *p);
        if (!p) return AL_ENOMEM;
        v->v = p;
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
        int32_t *a = realloc(E->ids, cap * sizeof *a);
        if (!a) return AL_ENOMEM;
        E->ids = a;
        a = realloc(E->st, cap * sizeof *a);
        if (!a) return AL_ENOMEM;
        E->st = a;
        a = realloc(E->en, cap * sizeof *a);
        if (!a) return AL_ENOMEM;
        E->en = a;
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
        seg *p = realloc(E->segs, cap * sizeof *p);
        if (!p) return AL_ENOMEM;
        E->segs = p;
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
    case BEH_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            int m = v[i].match;
            if (m == prev_match && k > 0) {
                v[k - 1].e = v[i].e;
            } else {
                v[k] = v[i];
                v[k].match = 0;
                k++;
            }
            prev_match = m;
        }
        break;
    case BEH_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            int m = v[i].match;
            if (m && !prev_match && k > 0) {
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
                if (utf8_dec((const unsigned char *)s + cs, ns - cs, &cp) <= 0 || !uc_is_space(cp))
                    break;
                ns = cs;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                uint32_t cp;
                int k = utf8_dec((const unsigned char *)s + stop, n - stop, &cp);
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

/* NFD or NFC of piece *it, written as a new arena piece. Each output
 * character carries the union of the source ranges composed into it. */
static int norm_unicode(enc *E, item *it, int compose) {
    const char *s = E->ar.b + it->off;
    size_t n = it->n, i;
    /* Fast path. NFD: nothing below U+00C0 (lead byte 0xC3) decomposes.
     * NFC: nothing below U+0300 (lead byte 0xCC) changes or combines with
     * what precedes it. */
    unsigned char lim = compose ? 0xCC : 0xC3;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] >= lim) break;
    if (i == n) return AL_OK;
    if (ucs_reserve(E, n * AL_UC_MAX_DECOMP) != AL_OK) return AL_ENOMEM;
    s = E->ar.b + it->off;
    size_t m = 0;
    for (i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_dec((const unsigned char *)s + i, n - i, &cp);
        int32_t lo = E->ar.lo[it->off + i];
        if (k <= 0) {
            ucp u = {(unsigned char)s[i], lo, E->ar.hi[it->off + i], 0, 1};
            E->ucs[m++] = u;
            i++;
            continue;
        }
        int32_t hi = E->ar.hi[it->off + i + (size_t)k - 1];
        uint32_t d[AL_UC_MAX_DECOMP];
        int nd = al_uc_decompose(cp, d);
        if (nd == 0) {
            d[0] = cp;
            nd = 1;
        }
        for (int j = 0; j < nd; j++) {
            ucp u = {d[j], lo, hi, (uint8_t)al_uc_ccc(d[j]), 0};
            E->ucs[m++] = u;
        }
        i += (size_t)k;
    }
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
    if (compose && m > 0) {
        ucp *u = E->ucs;
        size_t starter = 0, out = 1;
        int last_ccc = u[0].ccc ? 256 : 0;
        int have_starter = u[0].ccc == 0 && !u[0].raw;
        for (i = 1; i < m; i++) {
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
        m = out;
    }
    size_t off = E->ar.n;
    for (i = 0; i < m; i++) {
        char buf[4];
        int k = E->ucs[i].raw ? 1 : utf8_enc(E->ucs[i].cp, buf);
        if (E->ucs[i].raw) buf[0] = (char)E->ucs[i].cp;
        if (ar_push(&E->ar, buf, (size_t)k, E->ucs[i].lo, E->ucs[i].hi) != AL_OK) return AL_ENOMEM;
    }
    it->off = off;
    it->n = E->ar.n - off;
    return AL_OK;
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
            rc = norm_unicode(E, it, st->kind == N_NFC);
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
                while (a < b && (n = utf8_dec((const unsigned char *)s + a, b - a, &cp)) > 0 &&
                       uc_is_space(cp))
                    a += (size_t)n;
            if (st->right)
                while (b > a) {
                    size_t cs = last_char_start(s, b);
                    if (utf8_dec((const unsigned char *)s + cs, b - cs, &cp) <= 0 || !uc_is_space(cp))
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
        if (k <= 2 && utf8_dec((const unsigned char *)s, k, &cp) == (int)k && cp < 0x800)
            return t->char_id[cp];
        return vocab_get(t, s, k);
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
    return vocab_get(t, buf, n);
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

static int bpe_piece(enc *E, const item *it) {
    const al_tok *t = E->t;
    const char *s = E->ar.b + it->off;
    size_t n = it->n;
    int rc;
    if (t->ignore_merges) {
        int32_t id = vocab_get(t, s, n);
        if (id >= 0) return emit(E, it, id, 0, n);
    }
    uint64_t h = 0;
    cache_shard *sh = NULL;
    if (t->cache && n <= CACHE_MAX_KEY) {
        h = hash_bytes(s, n);
        sh = &t->cache[h % CACHE_SHARDS];
        pthread_mutex_lock(&sh->mu);
        cache_entry *hit = NULL;
        if (sh->slot) {
            uint32_t mask = CACHE_SHARD_CAP * 2 - 1;
            for (uint32_t i = (uint32_t)(h >> 8) & mask;; i = (i + 1) & mask) {
                cache_entry *ce = sh->slot[i];
                if (!ce) break;
                if (ce->h == h && ce->key_n == n && memcmp(ce + 1, s, n) == 0) {
                    hit = ce;
                    break;
                }
            }
        }
        if (hit) {
            int32_t *ids = ce_ids(hit);
            uint16_t cnt = hit->n;
            int32_t *se = ids + cnt;
            int32_t tmp_ids[CACHE_MAX_KEY], tmp_se[2 * CACHE_MAX_KEY];
            memcpy(tmp_ids, ids, cnt * sizeof *ids);
            memcpy(tmp_se, se, 2 * cnt * sizeof *se);
            pthread_mutex_unlock(&sh->mu);
            for (int i = 0; i < cnt; i++)
                if ((rc = emit(E, it, tmp_ids[i], (size_t)tmp_se[2 * i], (size_t)tmp_se[2 * i + 1])) != AL_OK)
                    return rc;
            return AL_OK;
        }
        pthread_mutex_unlock(&sh->mu);
    }

    /* Symbols: one per character (BPE::merge_word). */
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
    if (ns == 0) return AL_OK;
    sym *y = E->syms;
    y[ns - 1].next = -1;

    /* Merge loop (Word::merge_all). */
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

    y = E->syms;
    for (size_t i = 0; i < ns; i++) {
        if (y[i].dead) continue;
        if ((rc = emit(E, it, y[i].id, (size_t)y[i].start, (size_t)y[i].end)) != AL_OK) return rc;
    }

    if (sh) {
        /* Store ids and piece-relative spans for the next occurrence. */
        size_t cnt = 0;
        for (size_t i = 0; i < ns; i++) cnt += !y[i].dead;
        size_t key_sz = (n + 3u) & ~(size_t)3u;
        cache_entry *ce = malloc(sizeof *ce + key_sz + cnt * 3 * sizeof(int32_t));
        if (!ce) return AL_OK; /* the cache is an optimisation only */
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
            uint32_t mask = CACHE_SHARD_CAP * 2 - 1;
            uint32_t i = (uint32_t)(h >> 8) & mask;
            for (;; i = (i + 1) & mask) {
                cache_entry *o = sh->slot[i];
                if (!o) break;
                if (o->h == h && o->key_n == n && memcmp(o + 1, s, n) == 0) break;
            }
            if (!sh->slot[i]) {
                sh->slot[i] = ce;
                sh->count++;
                stored = 1;
            }
        }
        pthread_mutex_unlock(&sh->mu);
        if (!stored) free(ce);
    }
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
static int normalize_string(const al_tok *t, const char *s, size_t n, al_buf *out) {
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
        size_t *o = realloc(d->off, cap * sizeof *o);
        if (!o) return AL_ENOMEM;
        d->off = o;
        o = realloc(d->len, cap * sizeof *o);
        if (!o) return AL_ENOMEM;
        d->len = o;
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

static int dec_step_run(const al_tok *t, const dec_step *st, const dtoks *in, dtoks *out,
                        pcre2_match_data *md) {
    int rc = AL_OK;
    switch (st->kind) {
    case D_BYTELEVEL: {
        al_buf raw = {0};
        for (size_t i = 0; i < in->n && rc == AL_OK; i++) {
            const char *s = in->buf.p + in->off[i];
            size_t n = in->len[i], j, m = 0;
            char tmp[64];
            int all = 1;
            /* All characters map back to bytes, or the token goes as is. */
            for (j = 0; j < n;) {
                uint32_t cp;
                int k = utf8_dec((const unsigned char *)s + j, n - j, &cp);
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
                int k = utf8_dec((const unsigned char *)s + j, n - j, &cp);
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
    case D_METASPACE:
        for (size_t i = 0; i < in->n && rc == AL_OK; i++) {
            const char *s = in->buf.p + in->off[i];
            size_t n = in->len[i];
            if ((rc = dt_open(out)) != AL_OK) return rc;
            for (size_t j = 0; j < n && rc == AL_OK;) {
                uint32_t cp = 0;
                int k = utf8_dec((const unsigned char *)s + j, n - j, &cp);
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
    case D_REPLACE:
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
    case D_BYTEFALLBACK: {
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
                while (j < pend.n && (k = utf8_dec((const unsigned char *)pend.p + j, pend.n - j, &cp)) > 0)
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
    case D_FUSE:
        if ((rc = dt_open(out)) != AL_OK) return rc;
        for (size_t i = 0; i < in->n && rc == AL_OK; i++) rc = al_buf_put(&out->buf, in->buf.p + in->off[i], in->len[i]);
        dt_close(out);
        return rc;
    default: /* D_STRIP */
        for (size_t i = 0; i < in->n && rc == AL_OK; i++) {
            const char *s = in->buf.p + in->off[i];
            size_t n = in->len[i], a = 0, b = n;
            uint32_t cp;
            int k;
            for (int c = 0; c < st->start && a < n; c++) {
                if ((k = utf8_dec((const unsigned char *)s + a, n - a, &cp)) <= 0 || cp != st->rep) break;
                a += (size_t)k;
            }
            for (int c = 0; c < st->stop && b > a; c++) {
                size_t cs = last_char_start(s, b);
                if (utf8_dec((const unsigned char *)s + cs, b - cs, &cp) <= 0 || cp != st->rep) break;
                b = cs;
            }
            rc = dt_add(out, s + a, b - a);
        }
        return rc;
    }
}

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
            rc = dec_step_run(t, &t->dec[k], &a, &b, md);
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
    int32_t id = map_get(t->added_slot, t->added_mask, t, token, n);
    return id >= 0 ? id : vocab_get(t, token, n);
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

/* ------------------------------------------------------------ lifetime */

static void pattern_free(tpattern *p) {
    free(p->lit);
    if (p->re) pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}

void al_tok_free(al_tok *t) {
    if (!t) return;
    if (t->id_str)
        for (int i = 0; i < t->n_ids; i++) free(t->id_str[i]);
    free(t->id_str);
    free(t->id_len);
    free(t->id_flags);
    free(t->vocab_slot);
    free(t->added_slot);
    free(t->merges);
    free(t->sw_prefix);
    free(t->eow_suffix);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].norm);
    free(t->added);
    free(t->raw_set.idx);
    free(t->norm_set.idx);
    for (int i = 0; i < t->n_norm; i++) {
        pattern_free(&t->norm[i].pat);
        free(t->norm[i].text);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++) pattern_free(&t->pre[i].pat);
    free(t->pre);
    for (int i = 0; i < t->n_dec; i++) {
        pattern_free(&t->dec[i].pat);
        free(t->dec[i].text);
    }
    free(t->dec);
    free(t->prefix);
    free(t->suffix);
    free(t->bos_str);
    free(t->eos_str);
    free(t->chat_template);
    if (t->re_word) pcre2_code_free(t->re_word);
    cache_free(t->cache);
    free(t);
}

static al_tok *tok_alloc(void) {
    al_tok *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk_id = t->bos = t->eos = t->pad = -1;
    for (int i = 0; i < 0x800; i++) t->char_id[i] = -1;
    for (int i = 0; i < 256; i++) t->bf_id[i] = -1;
    for (int i = 0; i < 0x144; i++) t->byte_of_char[i] = -1;
    for (int b = 0; b < 256; b++) {
        char buf[4];
        uint32_t c = byte_char(b);
        t->byte_of_char[c] = (int16_t)b;
        t->byte_utf8_n[b] = (uint8_t)utf8_enc(c, buf);
        memcpy(t->byte_utf8[b], buf, t->byte_utf8_n[b]);
    }
    t->cache = cache_new();
    if (!t->cache) {
        free(t);
        return NULL;
    }
    return t;
}

/* Sizes the id tables for n ids. */
static int ids_alloc(al_tok *t, int n) {
    t->n_ids = n;
    t->id_str = calloc((size_t)n + 1, sizeof *t->id_str);
    t->id_len = calloc((size_t)n + 1, sizeof *t->id_len);
    t->id_flags = calloc((size_t)n + 1, 1);
    return t->id_str && t->id_len && t->id_flags ? AL_OK : AL_ENOMEM;
}

static int set_id(al_tok *t, int32_t id, const char *s, size_t n, uint8_t flags) {
    if (!t->id_str[id]) {
        t->id_str[id] = xstrndup(s, n);
        if (!t->id_str[id]) return AL_ENOMEM;
        t->id_len[id] = (uint32_t)n;
    }
    t->id_flags[id] |= flags;
    return AL_OK;
}

/* Builds the hash of model tokens, the single-character table and the
 * byte-fallback table. */
static int index_vocab(al_tok *t) {
    size_t cnt = 0;
    for (int i = 0; i < t->n_ids; i++) cnt += (t->id_flags[i] & F_MODEL) != 0;
    uint32_t cap = pow2_at_least(cnt * 2 + 1);
    t->vocab_slot = malloc(cap * sizeof *t->vocab_slot);
    if (!t->vocab_slot) return AL_ENOMEM;
    memset(t->vocab_slot, 0xFF, cap * sizeof *t->vocab_slot);
    t->vocab_mask = cap - 1;
    for (int i = 0; i < t->n_ids; i++)
        if (t->id_flags[i] & F_MODEL) map_put(t->vocab_slot, t->vocab_mask, t, i);
    for (uint32_t cp = 0; cp < 0x800; cp++) {
        char buf[4];
        int k = utf8_enc(cp, buf);
        t->char_id[cp] = vocab_get(t, buf, (size_t)k);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->bf_id[b] = vocab_get(t, name, 6);
    }
    return AL_OK;
}

static int index_added(al_tok *t) {
    if (!t->added_slot) {
        uint32_t cap = pow2_at_least((size_t)t->n_added * 2 + 1);
        t->added_slot = malloc(cap * sizeof *t->added_slot);
        if (!t->added_slot) return AL_ENOMEM;
        memset(t->added_slot, 0xFF, cap * sizeof *t->added_slot);
        t->added_mask = cap - 1;
        for (int i = 0; i < t->n_added; i++) map_put(t->added_slot, t->added_mask, t, t->added[i].id);
    }
    /* Match sets: by first byte, longest first (leftmost-longest). */
    for (int which = 0; which < 2; which++) {
        match_set *ms = which ? &t->norm_set : &t->raw_set;
        int cnt[257] = {0};
        int total = 0;
        for (int i = 0; i < t->n_added; i++) {
            const added_tok *a = &t->added[i];
            if (a->normalized != which || a->norm_n == 0) continue;
            cnt[(unsigned char)a->norm[0]]++;
            total++;
        }
        ms->idx = malloc(((size_t)total + 1) * sizeof *ms->idx);
        if (!ms->idx) return AL_ENOMEM;
        ms->first[0] = 0;
        for (int c = 0; c < 256; c++) ms->first[c + 1] = ms->first[c] + cnt[c];
        int fill[256];
        for (int c = 0; c < 256; c++) fill[c] = ms->first[c];
        for (int i = 0; i < t->n_added; i++) {
            const added_tok *a = &t->added[i];
            if (a->normalized != which || a->norm_n == 0) continue;
            ms->idx[fill[(unsigned char)a->norm[0]]++] = i;
        }
        for (int c = 0; c < 256; c++) /* insertion sort by length, descending */
            for (int i = ms->first[c] + 1; i < ms->first[c + 1]; i++) {
                int x = ms->idx[i], j = i;
                while (j > ms->first[c] && t->added[ms->idx[j - 1]].norm_n < t->added[x].norm_n) {
                    ms->idx[j] = ms->idx[j - 1];
                    j--;
                }
                ms->idx[j] = x;
            }
    }
    return AL_OK;
}

static int compile_re(pcre2_code **out, const char *pat, size_t n, const char *file,
                      const char *field, char err[AL_ERRLEN]) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, n, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                   &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[200];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return al_err(err, AL_EFORMAT, "%s: %s: bad regex: %s at offset %zu", file, field,
                      (char *)msg, (size_t)eo);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    *out = re;
    return AL_OK;
}

/* ------------------------------------------------------------ byte tokenizer */

static const char *const BYTE_SPECIALS[4] = {"<|endoftext|>", "<|pad|>", "<|im_start|>",
                                             "<|im_end|>"};

static const char BYTE_CHAT_TEMPLATE[] =
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{'<|im_start|>assistant\\n'}}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{'\\n'}}"
    "{% else %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}";

al_tok *al_tok_byte_new(void) {
    al_tok *t = tok_alloc();
    if (!t) return NULL;
    if (ids_alloc(t, 260) != AL_OK) goto fail;
    for (int b = 0; b < 256; b++) {
        char buf[4];
        int k = utf8_enc(byte_char(b), buf);
        if (set_id(t, b, buf, (size_t)k, F_MODEL) != AL_OK) goto fail;
    }
    t->added = calloc(4, sizeof *t->added);
    if (!t->added) goto fail;
    for (int i = 0; i < 4; i++) {
        const char *s = BYTE_SPECIALS[i];
        if (set_id(t, 256 + i, s, strlen(s), F_ADDED | F_SPECIAL) != AL_OK) goto fail;
        added_tok *a = &t->added[t->n_added++];
        a->id = 256 + i;
        a->special = 1;
        a->norm = xstrndup(s, strlen(s));
        if (!a->norm) goto fail;
        a->norm_n = strlen(s);
    }
    if (index_vocab(t) != AL_OK || index_added(t) != AL_OK) goto fail;
    t->pre = calloc(1, sizeof *t->pre);
    if (!t->pre) goto fail;
    t->pre[0].kind = P_BYTELEVEL;
    t->n_pre = 1;
    t->dec = calloc(1, sizeof *t->dec);
    if (!t->dec) goto fail;
    t->dec[0].kind = D_BYTELEVEL;
    t->n_dec = 1;
    t->has_decoder = 1;
    t->bos = t->eos = 256;
    t->pad = 257;
    t->bos_str = xstrndup(BYTE_SPECIALS[0], strlen(BYTE_SPECIALS[0]));
    t->eos_str = xstrndup(BYTE_SPECIALS[0], strlen(BYTE_SPECIALS[0]));
    t->chat_template = xstrndup(BYTE_CHAT_TEMPLATE, sizeof BYTE_CHAT_TEMPLATE - 1);
    if (!t->bos_str || !t->eos_str || !t->chat_template) goto fail;
    return t;
fail:
    al_tok_free(t);
    return NULL;
}

/* ------------------------------------------------------------ tokenizer.json */

typedef struct ld {
    al_tok *t;
    const char *file; /* path, for messages */
    char *err;
} ld;

static int ld_err(ld *L, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ld_err(ld *L, int rc, const char *fmt, ...) {
    if (L->err) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        /* Deeply nested field paths are long: keep the reason at the end. */
        size_t room = AL_ERRLEN - 1, fl = strlen(L->file), ml = strlen(msg);
        if (fl + 2 + ml > room && fl + 6 < room)
            al_err(L->err, rc, "%s: ...%s", L->file, msg + ml - (room - fl - 5));
        else
            al_err(L->err, rc, "%s: %s", L->file, msg);
    }
    return rc;
}

/* Optional boolean member: absent or null -> def. */
static int get_bool(ld *L, json_t *o, const char *key, const char *path, int def, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return AL_OK;
    }
    if (!json_is_boolean(v)) return ld_err(L, AL_EFORMAT, "%s.%s: expected true or false", path, key);
    *out = json_is_true(v);
    return AL_OK;
}

/* Optional string member: absent or null -> NULL. */
static int get_str(ld *L, json_t *o, const char *key, const char *path, const char **out,
                   size_t *n) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (n) *n = 0;
    if (!v || json_is_null(v)) return AL_OK;
    if (!json_is_string(v)) return ld_err(L, AL_EFORMAT, "%s.%s: expected a string", path, key);
    *out = json_string_value(v);
    if (n) *n = json_string_length(v);
    return AL_OK;
}

static int get_type(ld *L, json_t *o, const char *path, const char **type) {
    if (!json_is_object(o)) return ld_err(L, AL_EFORMAT, "%s: expected an object", path);
    json_t *v = json_object_get(o, "type");
    if (!json_is_string(v)) return ld_err(L, AL_EFORMAT, "%s.type: missing or not a string", path);
    *type = json_string_value(v);
    return AL_OK;
}

/* {"String": s} or {"Regex": r} */
static int get_pattern(ld *L, json_t *o, const char *path, tpattern *p) {
    json_t *v = json_object_get(o, "pattern");
    char field[200];
    if (json_is_string(v)) { /* tolerate a bare string: a literal */
        p->lit = xstrndup(json_string_value(v), json_string_length(v));
        p->lit_n = json_string_length(v);
        return p->lit ? AL_OK : AL_ENOMEM;
    }
    if (!json_is_object(v)) return ld_err(L, AL_EFORMAT, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", path);
    json_t *s = json_object_get(v, "String"), *r = json_object_get(v, "Regex");
    if (json_is_string(s)) {
        p->lit = xstrndup(json_string_value(s), json_string_length(s));
        p->lit_n = json_string_length(s);
        return p->lit ? AL_OK : AL_ENOMEM;
    }
    if (json_is_string(r)) {
        snprintf(field, sizeof field, "%s.pattern.Regex", path);
        return compile_re(&p->re, json_string_value(r), json_string_length(r), L->file, field, L->err);
    }
    return ld_err(L, AL_EFORMAT, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", path);
}

static int get_char(ld *L, json_t *o, const char *key, const char *path, uint32_t def,
                    uint32_t *cp) {
    const char *s;
    size_t n;
    int rc = get_str(L, o, key, path, &s, &n);
    if (rc != AL_OK) return rc;
    if (!s) {
        *cp = def;
        return AL_OK;
    }
    if (n == 0 || utf8_dec((const unsigned char *)s, n, cp) != (int)n)
        return ld_err(L, AL_EFORMAT, "%s.%s: expected a single character", path, key);
    return AL_OK;
}

static int get_prepend_scheme(ld *L, json_t *o, const char *path, int *out) {
    const char *s;
    int rc = get_str(L, o, "prepend_scheme", path, &s, NULL);
    if (rc != AL_OK) return rc;
    *out = PREPEND_ALWAYS;
    if (s) {
        if (!strcmp(s, "always")) *out = PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = PREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = PREPEND_NEVER;
        else return ld_err(L, AL_EFORMAT, "%s.prepend_scheme: \"%s\" is not always, first or never", path, s);
    }
    json_t *aps = json_object_get(o, "add_prefix_space"); /* older files */
    if (json_is_false(aps) && (!s || *out == PREPEND_ALWAYS)) *out = PREPEND_NEVER;
    return AL_OK;
}

#define GROW(arr, n)                                                          \
    do {                                                                         \
        void *p_ = realloc((arr), ((size_t)(n) + 1) * sizeof *(arr));            \
        if (!p_) return AL_ENOMEM;                                               \
        (arr) = p_;                                                              \
        memset(&(arr)[(n)], 0, sizeof *(arr));                                   \
    } while (0)

static int parse_normalizer(ld *L, json_t *o, const char *path, int depth) {
    al_tok *t = L->t;
    if (!o || json_is_null(o)) return AL_OK;
    if (depth > TOK_MAX_DEPTH) return ld_err(L, AL_EFORMAT, "%s: nested too deeply", path);
    const char *type = NULL;
    int rc = get_type(L, o, path, &type);
    if (rc != AL_OK) return rc;
    char sub[200];
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "normalizers");
        if (!json_is_array(arr)) return ld_err(L, AL_EFORMAT, "%s.normalizers: expected an array", path);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
            if ((rc = parse_normalizer(L, json_array_get(arr, i), sub, depth + 1)) != AL_OK) return rc;
        }
        return AL_OK;
    }
    GROW(t->norm, t->n_norm);
    norm_step *st = &t->norm[t->n_norm++];
    if (!strcmp(type, "NFC")) {
        st->kind = N_NFC;
    } else if (!strcmp(type, "NFD")) {
        st->kind = N_NFD;
    } else if (!strcmp(type, "Prepend") || !strcmp(type, "Replace")) {
        const char *s;
        size_t n;
        int is_rep = type[0] == 'R';
        st->kind = is_rep ? N_REPLACE : N_PREPEND;
        if ((rc = get_str(L, o, is_rep ? "content" : "prepend", path, &s, &n)) != AL_OK) return rc;
        if (!s) return ld_err(L, AL_EFORMAT, "%s.%s: missing", path, is_rep ? "content" : "prepend");
        if (!(st->text = xstrndup(s, n))) return AL_ENOMEM;
        st->text_n = n;
        if (is_rep && (rc = get_pattern(L, o, path, &st->pat)) != AL_OK) return rc;
    } else if (!strcmp(type, "Strip")) {
        st->kind = N_STRIP;
        if ((rc = get_bool(L, o, "strip_left", path, 1, &st->left)) != AL_OK) return rc;
        if ((rc = get_bool(L, o, "strip_right", path, 1, &st->right)) != AL_OK) return rc;
    } else {
        return ld_err(L, AL_EUNSUP, "%s.type: normalizer \"%s\" is not supported", path, type);
    }
    return AL_OK;
}

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int parse_behavior(ld *L, json_t *o, const char *path, int def, int *out) {
    const char *s;
    int rc = get_str(L, o, "behavior", path, &s, NULL);
    if (rc != AL_OK) return rc;
    *out = def;
    if (!s) return AL_OK;
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                        "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return AL_OK;
        }
    return ld_err(L, AL_EFORMAT, "%s.behavior: unknown split behavior \"%s\"", path, s);
}

static int parse_pre(ld *L, json_t *o, const char *path, int depth) {
    al_tok *t = L->t;
    if (!o || json_is_null(o)) return AL_OK;
    if (depth > TOK_MAX_DEPTH) return ld_err(L, AL_EFORMAT, "%s: nested too deeply", path);
    const char *type = NULL;
    int rc = get_type(L, o, path, &type);
    if (rc != AL_OK) return rc;
    char sub[200];
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "pretokenizers");
        if (!json_is_array(arr)) return ld_err(L, AL_EFORMAT, "%s.pretokenizers: expected an array", path);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
            if ((rc = parse_pre(L, json_array_get(arr, i), sub, depth + 1)) != AL_OK) return rc;
        }
        return AL_OK;
    }
    GROW(t->pre, t->n_pre);
    pre_step *st = &t->pre[t->n_pre++];
    snprintf(sub, sizeof sub, "%s.pattern", path);
    if (!strcmp(type, "ByteLevel")) {
        int use_regex = 1;
        st->kind = P_BYTELEVEL;
        if ((rc = get_bool(L, o, "add_prefix_space", path, 1, &st->add_prefix_space)) != AL_OK) return rc;
        if ((rc = get_bool(L, o, "use_regex", path, 1, &use_regex)) != AL_OK) return rc;
        if (use_regex)
            return compile_re(&st->pat.re, GPT2_REGEX, sizeof GPT2_REGEX - 1, L->file, sub, L->err);
    } else if (!strcmp(type, "Split")) {
        st->kind = P_SPLIT;
        if ((rc = get_pattern(L, o, path, &st->pat)) != AL_OK) return rc;
        if ((rc = parse_behavior(L, o, path, -1, &st->behavior)) != AL_OK) return rc;
        if (st->behavior < 0) return ld_err(L, AL_EFORMAT, "%s.behavior: missing", path);
        if ((rc = get_bool(L, o, "invert", path, 0, &st->invert)) != AL_OK) return rc;
    } else if (!strcmp(type, "Metaspace")) {
        uint32_t cp;
        st->kind = P_METASPACE;
        if ((rc = get_char(L, o, "replacement", path, 0x2581, &cp)) != AL_OK) return rc;
        st->rep_n = utf8_enc(cp, st->rep);
        if ((rc = get_prepend_scheme(L, o, path, &st->prepend)) != AL_OK) return rc;
        if ((rc = get_bool(L, o, "split", path, 1, &st->split)) != AL_OK) return rc;
    } else if (!strcmp(type, "Digits")) {
        int individual = 0;
        st->kind = P_SPLIT;
        if ((rc = get_bool(L, o, "individual_digits", path, 0, &individual)) != AL_OK) return rc;
        st->behavior = individual ? BEH_ISOLATED : BEH_CONTIGUOUS;
        return compile_re(&st->pat.re, "\\p{N}", PCRE2_ZERO_TERMINATED, L->file, sub, L->err);
    } else if (!strcmp(type, "Punctuation")) {
        st->kind = P_SPLIT;
        if ((rc = parse_behavior(L, o, path, BEH_ISOLATED, &st->behavior)) != AL_OK) return rc;
        return compile_re(&st->pat.re, "[\\p{P}!-/:-@\\[-`{-~]", PCRE2_ZERO_TERMINATED, L->file, sub, L->err);
    } else if (!strcmp(type, "Whitespace")) {
        st->kind = P_SPLIT;
        st->behavior = BEH_REMOVED;
        st->invert = 1;
        return compile_re(&st->pat.re, "\\w+|[^\\w\\s]+", PCRE2_ZERO_TERMINATED, L->file, sub, L->err);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        st->kind = P_SPLIT;
        st->behavior = BEH_REMOVED;
        return compile_re(&st->pat.re, "[\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
                                       "\\x{202F}\\x{205F}\\x{3000}]",
                          PCRE2_ZERO_TERMINATED, L->file, sub, L->err);
    } else {
        return ld_err(L, AL_EUNSUP, "%s.type: pre-tokenizer \"%s\" is not supported", path, type);
    }
    return AL_OK;
}

static int parse_decoder(ld *L, json_t *o, const char *path, int depth) {
    al_tok *t = L->t;
    if (!o || json_is_null(o)) return AL_OK;
    if (depth > TOK_MAX_DEPTH) return ld_err(L, AL_EFORMAT, "%s: nested too deeply", path);
    const char *type = NULL;
    int rc = get_type(L, o, path, &type);
    if (rc != AL_OK) return rc;
    t->has_decoder = 1;
    char sub[200];
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "decoders");
        if (!json_is_array(arr)) return ld_err(L, AL_EFORMAT, "%s.decoders: expected an array", path);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
            if ((rc = parse_decoder(L, json_array_get(arr, i), sub, depth + 1)) != AL_OK) return rc;
        }
        return AL_OK;
    }
    GROW(t->dec, t->n_dec);
    dec_step *st = &t->dec[t->n_dec++];
    if (!strcmp(type, "ByteLevel")) {
        st->kind = D_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        st->kind = D_METASPACE;
        if ((rc = get_char(L, o, "replacement", path, 0x2581, &st->rep)) != AL_OK) return rc;
        if ((rc = get_prepend_scheme(L, o, path, &st->prepend)) != AL_OK) return rc;
    } else if (!strcmp(type, "Replace")) {
        const char *s;
        size_t n;
        st->kind = D_REPLACE;
        if ((rc = get_str(L, o, "content", path, &s, &n)) != AL_OK) return rc;
        if (!s) return ld_err(L, AL_EFORMAT, "%s.content: missing", path);
        if (!(st->text = xstrndup(s, n))) return AL_ENOMEM;
        st->text_n = n;
        if ((rc = get_pattern(L, o, path, &st->pat)) != AL_OK) return rc;
    } else if (!strcmp(type, "ByteFallback")) {
        st->kind = D_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        st->kind = D_FUSE;
    } else if (!strcmp(type, "Strip")) {
        st->kind = D_STRIP;
        if ((rc = get_char(L, o, "content", path, ' ', &st->rep)) != AL_OK) return rc;
        json_t *a = json_object_get(o, "start"), *b = json_object_get(o, "stop");
        if ((a && !json_is_integer(a)) || (b && !json_is_integer(b)))
            return ld_err(L, AL_EFORMAT, "%s: start and stop must be integers", path);
        json_int_t sa = a ? json_integer_value(a) : 0, sb = b ? json_integer_value(b) : 0;
        if (sa < 0 || sb < 0 || sa > 1000000 || sb > 1000000)
            return ld_err(L, AL_EFORMAT, "%s: start/stop out of range", path);
        st->start = (int)sa;
        st->stop = (int)sb;
    } else {
        return ld_err(L, AL_EUNSUP, "%s.type: decoder \"%s\" is not supported", path, type);
    }
    return AL_OK;
}

static int push_ids(int32_t **arr, int *n, const int32_t *ids, int k, int front) {
    int32_t *p = realloc(*arr, ((size_t)*n + (size_t)k + 1) * sizeof *p);
    if (!p) return AL_ENOMEM;
    if (front) {
        memmove(p + k, p, (size_t)*n * sizeof *p);
        memcpy(p, ids, (size_t)k * sizeof *p);
    } else {
        memcpy(p + *n, ids, (size_t)k * sizeof *p);
    }
    *arr = p;
    *n += k;
    return AL_OK;
}

static int check_id(ld *L, json_t *v, const char *path, int32_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= L->t->n_ids ||
        !L->t->id_str[json_integer_value(v)])
        return ld_err(L, AL_EFORMAT, "%s: not a token id of this vocabulary", path);
    *out = (int32_t)json_integer_value(v);
    return AL_OK;
}

static int parse_post(ld *L, json_t *o, const char *path, int depth) {
    al_tok *t = L->t;
    if (!o || json_is_null(o)) return AL_OK;
    if (depth > TOK_MAX_DEPTH) return ld_err(L, AL_EFORMAT, "%s: nested too deeply", path);
    const char *type = NULL;
    int rc = get_type(L, o, path, &type);
    if (rc != AL_OK) return rc;
    char sub[240];
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "processors");
        if (!json_is_array(arr)) return ld_err(L, AL_EFORMAT, "%s.processors: expected an array", path);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
            if ((rc = parse_post(L, json_array_get(arr, i), sub, depth + 1)) != AL_OK) return rc;
        }
        return AL_OK;
    }
    if (!strcmp(type, "ByteLevel")) return AL_OK; /* offsets only */
    int32_t *pre = NULL, *suf = NULL;
    int npre = 0, nsuf = 0;
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
        if (!json_is_array(single)) return ld_err(L, AL_EFORMAT, "%s.single: expected an array", path);
        if (specials && !json_is_object(specials))
            return ld_err(L, AL_EFORMAT, "%s.special_tokens: expected an object", path);
        int seen_a = 0;
        for (size_t i = 0; i < json_array_size(single) && rc == AL_OK; i++) {
            json_t *p = json_array_get(single, i);
            json_t *sp = json_object_get(p, "SpecialToken"), *sq = json_object_get(p, "Sequence");
            if (json_is_object(sq)) {
                json_t *id = json_object_get(sq, "id");
                if (!json_is_string(id) || strcmp(json_string_value(id), "A") != 0 || seen_a)
                    rc = ld_err(L, AL_EFORMAT, "%s.single[%zu]: a single template holds one Sequence \"A\"", path, i);
                seen_a = 1;
                continue;
            }
            json_t *name = json_object_get(sp, "id");
            if (!json_is_object(sp) || !json_is_string(name)) {
                rc = ld_err(L, AL_EFORMAT, "%s.single[%zu]: expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}", path, i);
                break;
            }
            json_t *def = json_object_get(specials, json_string_value(name));
            json_t *ids = json_object_get(def, "ids");
            if (!json_is_array(ids)) {
                rc = ld_err(L, AL_EFORMAT, "%s.special_tokens: \"%s\" missing or without ids", path,
                            json_string_value(name));
                break;
            }
            for (size_t j = 0; j < json_array_size(ids) && rc == AL_OK; j++) {
                int32_t id = -1;
                snprintf(sub, sizeof sub, "%s.special_tokens[\"%.60s\"].ids[%zu]", path, json_string_value(name), j);
                if ((rc = check_id(L, json_array_get(ids, j), sub, &id)) == AL_OK)
                    rc = seen_a ? push_ids(&suf, &nsuf, &id, 1, 0) : push_ids(&pre, &npre, &id, 1, 0);
            }
        }
        if (rc == AL_OK && !seen_a) rc = ld_err(L, AL_EFORMAT, "%s.single: no Sequence \"A\"", path);
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(o, "cls"), *sep = json_object_get(o, "sep");
        int32_t c = -1, s = -1;
        snprintf(sub, sizeof sub, "%s.cls[1]", path);
        if (!json_is_array(cls) || !json_is_array(sep))
            return ld_err(L, AL_EFORMAT, "%s: cls and sep must be [token, id]", path);
        if ((rc = check_id(L, json_array_get(cls, 1), sub, &c)) != AL_OK) return rc;
        snprintf(sub, sizeof sub, "%s.sep[1]", path);
        if ((rc = check_id(L, json_array_get(sep, 1), sub, &s)) != AL_OK) return rc;
        if ((rc = push_ids(&pre, &npre, &c, 1, 0)) == AL_OK) rc = push_ids(&suf, &nsuf, &s, 1, 0);
    } else {
        return ld_err(L, AL_EUNSUP, "%s.type: post-processor \"%s\" is not supported", path, type);
    }
    /* A later processor wraps what the earlier ones produced. */
    if (rc == AL_OK && npre) rc = push_ids(&t->prefix, &t->n_prefix, pre, npre, 1);
    if (rc == AL_OK && nsuf) rc = push_ids(&t->suffix, &t->n_suffix, suf, nsuf, 0);
    free(pre);
    free(suf);
    return rc;
}

/* Splits a merge entry into its two tokens. */
static int merge_parts(ld *L, json_t *m, size_t i, const char **a, size_t *an, const char **b,
                       size_t *bn) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = memchr(s, ' ', json_string_length(m));
        size_t n = json_string_length(m);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
            return ld_err(L, AL_EFORMAT, "model.merges[%zu]: \"%.60s\" is not two tokens separated by one space", i, s);
        *a = s;
        *an = (size_t)(sp - s);
        *b = sp + 1;
        *bn = n - *an - 1;
        return AL_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *an = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *bn = json_string_length(json_array_get(m, 1));
        return AL_OK;
    }
    return ld_err(L, AL_EFORMAT, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
}

static int parse_tokenizer_json(ld *L, json_t *root) {
    al_tok *t = L->t;
    int rc;
    if (!json_is_object(root)) return ld_err(L, AL_EFORMAT, "expected a JSON object");
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return ld_err(L, AL_EFORMAT, "model: missing or not an object");
    json_t *type = json_object_get(model, "type");
    if (type && !json_is_string(type)) return ld_err(L, AL_EFORMAT, "model.type: expected a string");
    if (type && strcmp(json_string_value(type), "BPE") != 0)
        return ld_err(L, AL_EUNSUP, "model.type: \"%s\" models are not supported (only BPE)",
                      json_string_value(type));
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return ld_err(L, AL_EFORMAT, "model.vocab: missing or not an object");
    json_t *merges = json_object_get(model, "merges");
    if (merges && !json_is_null(merges) && !json_is_array(merges))
        return ld_err(L, AL_EFORMAT, "model.merges: expected an array");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return ld_err(L, AL_EFORMAT, "added_tokens: expected an array");
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return ld_err(L, AL_EUNSUP, "model.dropout: BPE dropout is not supported");

    /* Ids: the vocabulary, then the added tokens, which get ids as
     * tokenizers' AddedVocabulary::add_tokens assigns them (the file's "id"
     * agrees in files tokenizers wrote; where it does not, tokenizers only
     * warns and uses its own). Size the tables for the worst case first. */
    json_int_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= TOK_MAX_ID)
            return ld_err(L, AL_EFORMAT, "model.vocab[\"%.60s\"]: id must be an integer in [0, %d)", key, TOK_MAX_ID);
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    size_t n_added = json_array_size(added);
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id"),
               *content = json_object_get(a, "content");
        if (!json_is_object(a) || !json_is_string(content) || json_string_length(content) == 0)
            return ld_err(L, AL_EFORMAT, "added_tokens[%zu]: expected an object with a non-empty content", i);
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= TOK_MAX_ID)
            return ld_err(L, AL_EFORMAT, "added_tokens[%zu].id: must be an integer in [0, %d)", i, TOK_MAX_ID);
    }
    size_t vocab_count = json_object_size(vocab);
    size_t cap = (size_t)(max_id + 1) > vocab_count + n_added + 1 ? (size_t)(max_id + 1) : vocab_count + n_added + 1;
    if ((rc = ids_alloc(t, (int)cap)) != AL_OK) return rc;
    json_object_foreach(vocab, key, val) {
        if ((rc = set_id(t, (int32_t)json_integer_value(val), key, strlen(key), F_MODEL)) != AL_OK) return rc;
    }
    if ((rc = index_vocab(t)) != AL_OK) return rc;

    /* Model options */
    const char *s;
    size_t n;
    if ((rc = get_bool(L, model, "byte_fallback", "model", 0, &t->byte_fallback)) != AL_OK) return rc;
    if ((rc = get_bool(L, model, "ignore_merges", "model", 0, &t->ignore_merges)) != AL_OK) return rc;
    if ((rc = get_bool(L, model, "fuse_unk", "model", 0, &t->fuse_unk)) != AL_OK) return rc;
    if ((rc = get_str(L, model, "unk_token", "model", &s, &n)) != AL_OK) return rc;
    if (s) t->unk_id = vocab_get(t, s, n);
    if ((rc = get_str(L, model, "continuing_subword_prefix", "model", &s, &n)) != AL_OK) return rc;
    if (s && n) {
        if (!(t->sw_prefix = xstrndup(s, n))) return AL_ENOMEM;
        t->sw_prefix_n = n;
    }
    if ((rc = get_str(L, model, "end_of_word_suffix", "model", &s, &n)) != AL_OK) return rc;
    if (s && n) {
        if (!(t->eow_suffix = xstrndup(s, n))) return AL_ENOMEM;
        t->eow_suffix_n = n;
    }

    /* Merges: rank = position; the merged token must be in the vocabulary. */
    size_t nm = json_array_size(merges);
    t->merges_mask = pow2_at_least(nm * 2 + 1) - 1;
    t->merges = calloc((size_t)t->merges_mask + 1, sizeof *t->merges);
    if (!t->merges) return AL_ENOMEM;
    al_buf cat = {0};
    for (size_t i = 0; i < nm; i++) {
        const char *a = NULL, *b = NULL;
        size_t an = 0, bn = 0;
        if ((rc = merge_parts(L, json_array_get(merges, i), i, &a, &an, &b, &bn)) != AL_OK) break;
        int32_t ia = vocab_get(t, a, an), ib = vocab_get(t, b, bn);
        if (ia < 0 || ib < 0) {
            rc = ld_err(L, AL_EFORMAT, "model.merges[%zu]: token \"%.*s\" is not in model.vocab", i,
                        (int)(ia < 0 ? (an > 60 ? 60 : an) : (bn > 60 ? 60 : bn)), ia < 0 ? a : b);
            break;
        }
        if (t->sw_prefix && bn >= t->sw_prefix_n && memcmp(b, t->sw_prefix, t->sw_prefix_n) == 0) {
            b += t->sw_prefix_n;
            bn -= t->sw_prefix_n;
        }
        cat.n = 0;
        if ((rc = al_buf_put(&cat, a, an)) != AL_OK || (rc = al_buf_put(&cat, b, bn)) != AL_OK) break;
        int32_t id = vocab_get(t, cat.p, cat.n);
        if (id < 0) {
            rc = ld_err(L, AL_EFORMAT, "model.merges[%zu]: merged token \"%.60s\" is not in model.vocab", i, cat.p);
            break;
        }
        merge_put(t, ia, ib, (uint32_t)i, id);
    }
    free(cat.p);
    if (rc != AL_OK) return rc;

    /* Normalizer before added tokens: normalized ones match their
     * normalized content. */
    if ((rc = parse_normalizer(L, json_object_get(root, "normalizer"), "normalizer", 0)) != AL_OK) return rc;
    if (n_added > 0) {
        t->added = calloc(n_added, sizeof *t->added);
        if (!t->added) return AL_ENOMEM;
    }
    uint32_t acap = pow2_at_least(n_added * 2 + 1);
    t->added_slot = malloc(acap * sizeof *t->added_slot);
    if (!t->added_slot) return AL_ENOMEM;
    memset(t->added_slot, 0xFF, acap * sizeof *t->added_slot);
    t->added_mask = acap - 1;
    int32_t max_added = -1;
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        json_t *content = json_object_get(a, "content");
        const char *c = json_string_value(content);
        size_t cn = json_string_length(content);
        char path[64];
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        int special = 0, normalized = 0, lstrip = 0, rstrip = 0, single_word = 0;
        if ((rc = get_bool(L, a, "special", path, 0, &special)) != AL_OK) return rc;
        if ((rc = get_bool(L, a, "normalized", path, !special, &normalized)) != AL_OK) return rc;
        if ((rc = get_bool(L, a, "lstrip", path, 0, &lstrip)) != AL_OK) return rc;
        if ((rc = get_bool(L, a, "rstrip", path, 0, &rstrip)) != AL_OK) return rc;
        if ((rc = get_bool(L, a, "single_word", path, 0, &single_word)) != AL_OK) return rc;
        /* tokenizers: the id of an earlier added token or of the model's
         * token with this content, else one past the added ids, else the
         * model's vocabulary size (its entry count). */
        int32_t id = map_get(t->added_slot, t->added_mask, t, c, cn);
        if (id < 0) id = vocab_get(t, c, cn);
        if (id < 0) {
            if (max_added < 0) id = (int32_t)vocab_count;
            else id = max_added >= (int32_t)vocab_count || vocab_count == 0 ? max_added + 1 : (int32_t)vocab_count;
        }
        if (id > max_added) max_added = id;
        if ((rc = set_id(t, id, c, cn, (uint8_t)(F_ADDED | (special ? F_SPECIAL : 0)))) != AL_OK) return rc;
        map_put(t->added_slot, t->added_mask, t, id);
        /* The same content again: the later entry's options win. */
        added_tok *at = NULL;
        for (int j = 0; j < t->n_added && !at; j++)
            if (t->added[j].id == id) at = &t->added[j];
        if (at) {
            free(at->norm);
            at->norm = NULL;
        } else {
            at = &t->added[t->n_added++];
        }
        at->id = id;
        at->special = (uint8_t)special;
        at->normalized = (uint8_t)normalized;
        at->lstrip = (uint8_t)lstrip;
        at->rstrip = (uint8_t)rstrip;
        at->single_word = (uint8_t)single_word;
        if (single_word && !t->re_word &&
            (rc = compile_re(&t->re_word, "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]",
                             PCRE2_ZERO_TERMINATED, L->file, path, L->err)) != AL_OK)
            return rc;
        al_buf nb = {0};
        if (normalized) rc = normalize_string(t, c, cn, &nb);
        else rc = al_buf_put(&nb, c, cn);
        if (rc != AL_OK) {
            free(nb.p);
            return rc;
        }
        at->norm = nb.p;
        at->norm_n = nb.n;
    }
    if ((rc = index_added(t)) != AL_OK) return rc;
    t->n_ids = (int)(max_id > max_added ? max_id : max_added) + 1;

    if ((rc = parse_pre(L, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", 0)) != AL_OK) return rc;
    if ((rc = parse_post(L, json_object_get(root, "post_processor"), "post_processor", 0)) != AL_OK) return rc;
    if ((rc = parse_decoder(L, json_object_get(root, "decoder"), "decoder", 0)) != AL_OK) return rc;
    return AL_OK;
}

/* ------------------------------------------------------------ tokenizer_config.json */

/* A special-token entry: "text", {"content": "text", ...} or null. */
static int cfg_token(ld *L, json_t *cfg, const char *key, char **out) {
    json_t *v = json_object_get(cfg, key);
    *out = NULL;
    if (!v || json_is_null(v)) return AL_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v))
        return ld_err(L, AL_EFORMAT, "%s: expected a string, {\"content\": ...} or null", key);
    *out = xstrndup(json_string_value(v), json_string_length(v));
    return *out ? AL_OK : AL_ENOMEM;
}

static int parse_tokenizer_config(ld *L, json_t *cfg) {
    al_tok *t = L->t;
    int rc;
    if (!json_is_object(cfg)) return ld_err(L, AL_EFORMAT, "expected a JSON object");
    char *pad = NULL;
    if ((rc = cfg_token(L, cfg, "bos_token", &t->bos_str)) != AL_OK) return rc;
    if ((rc = cfg_token(L, cfg, "eos_token", &t->eos_str)) != AL_OK) return rc;
    if ((rc = cfg_token(L, cfg, "pad_token", &pad)) != AL_OK) return rc;
    if (t->bos_str) t->bos = al_tok_id(t, t->bos_str);
    if (t->eos_str) t->eos = al_tok_id(t, t->eos_str);
    if (pad) t->pad = al_tok_id(t, pad);
    free(pad);

    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct)) {
        t->chat_template = xstrndup(json_string_value(ct), json_string_length(ct));
        if (!t->chat_template) return AL_ENOMEM;
    } else if (json_is_array(ct)) {
        for (size_t i = 0; i < json_array_size(ct); i++) {
            json_t *e = json_array_get(ct, i), *name = json_object_get(e, "name"),
                   *tmpl = json_object_get(e, "template");
            if (!json_is_string(name) || !json_is_string(tmpl))
                return ld_err(L, AL_EFORMAT, "chat_template[%zu]: expected {\"name\": ..., \"template\": ...}", i);
            if (strcmp(json_string_value(name), "default") == 0) {
                t->chat_template = xstrndup(json_string_value(tmpl), json_string_length(tmpl));
                if (!t->chat_template) return AL_ENOMEM;
            }
        }
    } else if (ct && !json_is_null(ct)) {
        return ld_err(L, AL_EFORMAT, "chat_template: expected a string or a list of {name, template}");
    }

    /* transformers' Llama and Gemma fast tokenizers rebuild the template
     * from add_bos_token (default true) and add_eos_token (default false);
     * other classes use tokenizer.json's post-processor as it is. */
    const char *cls = json_string_value(json_object_get(cfg, "tokenizer_class"));
    if (cls && (!strncmp(cls, "Llama", 5) || !strncmp(cls, "CodeLlama", 9) || !strncmp(cls, "Gemma", 5))) {
        int add_bos = 1, add_eos = 0;
        if ((rc = get_bool(L, cfg, "add_bos_token", "tokenizer_config", 1, &add_bos)) != AL_OK) return rc;
        if ((rc = get_bool(L, cfg, "add_eos_token", "tokenizer_config", 0, &add_eos)) != AL_OK) return rc;
        t->n_prefix = t->n_suffix = 0;
        if (add_bos && t->bos >= 0 && (rc = push_ids(&t->prefix, &t->n_prefix, &t->bos, 1, 0)) != AL_OK) return rc;
        if (add_eos && t->eos >= 0 && (rc = push_ids(&t->suffix, &t->n_suffix, &t->eos, 1, 0)) != AL_OK) return rc;
    }
    return AL_OK;
}

/* Reads and parses one JSON file; AL_ENOENT passes through untouched.
 * flags: extra jansson decoding flags. */
static int load_json_ex(const char *path, int flags, json_t **out, char err[AL_ERRLEN]) {
    char *buf = NULL;
    size_t n = 0;
    int rc = al_file_read(path, TOK_MAX_FILE, &buf, &n, err);
    if (rc != AL_OK) return rc;
    json_error_t je;
    json_t *root = json_loadb(buf, n, JSON_DECODE_ANY | (size_t)flags, &je);
    free(buf);
    if (!root)
        return al_err(err, AL_EFORMAT, "%s: not valid JSON: line %d column %d: %s", path, je.line,
                      je.column, je.text);
    *out = root;
    return AL_OK;
}

static int load_json(const char *path, json_t **out, char err[AL_ERRLEN]) {
    return load_json_ex(path, 0, out, err);
}

/* Whether <dir>/config.json declares the byte tokenizer's vocab_size. */
/* vocab_size of <dir>/config.json, 0 when there is none. */
static int config_vocab_size(const char *dir) {
    char path[4096];
    if (al_path_join(path, sizeof path, dir, "config.json") != AL_OK || !al_file_exists(path)) return 0;
    json_t *root = NULL;
    if (load_json(path, &root, NULL) != AL_OK) return 0;
    json_t *v = json_object_get(root, "vocab_size");
    int n = json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < INT32_MAX
                ? (int)json_integer_value(v)
                : 0;
    json_decref(root);
    return n;
}

static int config_wants_bytes(const char *dir) { return config_vocab_size(dir) == 260; }

/* base_model_name_or_path of <dir>/adapter_config.json, resolved as the model
 * loader does (absolute, else relative to the adapter folder when that
 * exists, else as given). AL_ENOENT when dir is not an adapter folder. */
static int adapter_base(const char *dir, char *out, size_t n) {
    char path[4096];
    if (al_path_join(path, sizeof path, dir, "adapter_config.json") != AL_OK || !al_file_exists(path))
        return AL_ENOENT;
    json_t *root = NULL;
    char err[AL_ERRLEN];
    if (load_json(path, &root, err) != AL_OK) return AL_ENOENT;
    const char *b = json_string_value(json_object_get(root, "base_model_name_or_path"));
    int rc = AL_ENOENT;
    if (b && *b && strlen(b) < n) {
        if (b[0] == '/' || al_path_join(out, n, dir, b) != AL_OK || !al_file_exists(out))
            snprintf(out, n, "%s", b);
        rc = AL_OK;
    }
    json_decref(root);
    return rc;
}

/* The byte tokenizer's template, replaced by the folder's own when it has
 * one (chat_template.jinja, else tokenizer_config.json's chat_template):
 * what al_chat_copy_files writes for a job with a chat_template. */
static int byte_template(al_tok *t, const char *dir, char err[AL_ERRLEN]) {
    char p[4096];
    char *tmpl = NULL;
    size_t n = 0;
    int rc;
    if (al_path_join(p, sizeof p, dir, "chat_template.jinja") == AL_OK && al_file_exists(p)) {
        if ((rc = al_file_read(p, 16u << 20, &tmpl, &n, err)) != AL_OK) return rc;
    } else if (al_path_join(p, sizeof p, dir, "tokenizer_config.json") == AL_OK && al_file_exists(p)) {
        json_t *cfg = NULL;
        if ((rc = load_json(p, &cfg, err)) != AL_OK) return rc;
        json_t *ct = json_object_get(cfg, "chat_template");
        if (json_is_string(ct) && !(tmpl = xstrndup(json_string_value(ct), json_string_length(ct)))) {
            json_decref(cfg);
            return al_err(err, AL_ENOMEM, "out of memory");
        }
        json_decref(cfg);
    }
    if (tmpl) {
        free(t->chat_template);
        t->chat_template = tmpl;
    }
    return AL_OK;
}

int al_tok_load(al_tok **out, const char *dir, char err[AL_ERRLEN]) {
    char path[4096];
    int rc;
    if (al_path_join(path, sizeof path, dir, "tokenizer.json") != AL_OK)
        return al_err(err, AL_ERANGE, "%s: path too long", dir);
    if (!al_file_exists(path)) {
        if (config_wants_bytes(dir)) {
            al_tok *t = al_tok_byte_new();
            if (!t) return al_err(err, AL_ENOMEM, "out of memory");
            /* a fine-tune saved with another template carries it */
            if ((rc = byte_template(t, dir, err)) != AL_OK) {
                al_tok_free(t);
                return rc;
            }
            *out = t;
            return AL_OK;
        }
        /* A PEFT adapter folder without tokenizer files uses its base's. */
        char base[4096], next[4096];
        if (adapter_base(dir, base, sizeof base) == AL_OK &&
            adapter_base(base, next, sizeof next) != AL_OK) /* one level: no cycles */
            return al_tok_load(out, base, err);
        return al_err(err, AL_ENOENT, "%s: no tokenizer.json (and config.json vocab_size is not 260)", dir);
    }
    json_t *root = NULL;
    if ((rc = load_json(path, &root, err)) != AL_OK) return rc;
    al_tok *t = tok_alloc();
    if (!t) {
        json_decref(root);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    ld L = {t, path, err};
    rc = parse_tokenizer_json(&L, root);
    json_decref(root);
    if (rc != AL_OK) goto fail;

    char cpath[4096];
    if (al_path_join(cpath, sizeof cpath, dir, "tokenizer_config.json") != AL_OK) {
        rc = al_err(err, AL_ERANGE, "%s: path too long", dir);
        goto fail;
    }
    int have_cfg = al_file_exists(cpath);
    if (have_cfg) {
        json_t *cfg = NULL;
        /* integers there are only lengths, some beyond 64 bits (Llama 3.1's
         * model_max_length is 1e30): read them as reals */
        if ((rc = load_json_ex(cpath, JSON_DECODE_INT_AS_REAL, &cfg, err)) != AL_OK) goto fail;
        ld C = {t, cpath, err};
        rc = parse_tokenizer_config(&C, cfg);
        json_decref(cfg);
        if (rc != AL_OK) goto fail;
    }
    /* transformers >= 4.43 saves the template next to the config. */
    if (al_path_join(cpath, sizeof cpath, dir, "chat_template.jinja") == AL_OK && al_file_exists(cpath)) {
        char *tmpl = NULL;
        size_t n = 0;
        if ((rc = al_file_read(cpath, 16u << 20, &tmpl, &n, err)) != AL_OK) goto fail;
        free(t->chat_template);
        t->chat_template = tmpl;
    }
    /* Without tokenizer_config.json, BOS/EOS come from the template and
     * from the conventional names. */
    if (!have_cfg) {
        if (t->n_prefix == 1) t->bos = t->prefix[0];
        if (t->n_suffix == 1) t->eos = t->suffix[0];
        static const char *const eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>"};
        for (int i = 0; i < 3 && t->eos < 0; i++) t->eos = al_tok_id(t, eos_names[i]);
        if (t->bos < 0) t->bos = al_tok_id(t, "<s>");
        if (t->bos >= 0 && !(t->bos_str = xstrndup(t->id_str[t->bos], t->id_len[t->bos]))) rc = AL_ENOMEM;
        if (t->eos >= 0 && !(t->eos_str = xstrndup(t->id_str[t->eos], t->id_len[t->eos]))) rc = AL_ENOMEM;
        if (rc != AL_OK) goto fail;
    }
    /* The model beside it needs a row for every id: an id past its
     * vocab_size would only fail later, inside a forward pass. */
    int vocab = config_vocab_size(dir);
    if (vocab > 0 && al_tok_vocab_size(t) > vocab) {
        int32_t top = al_tok_vocab_size(t) - 1;
        const char *ts = al_tok_str(t, top);
        rc = al_err(err, AL_EFORMAT,
                    "%s: token id %d (\"%.40s\") is outside the model's vocabulary (config.json vocab_size %d)",
                    path, top, ts ? ts : "", vocab);
        goto fail;
    }
    *out = t;
    return AL_OK;
fail:
    if (rc == AL_ENOMEM) al_err(err, rc, "%s: out of memory", path);
    al_tok_free(t);
    return rc;
}

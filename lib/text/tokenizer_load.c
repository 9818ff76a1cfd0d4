/* Building tokenizers (see tokenizer.c for what they do): the byte
 * tokenizer of the built-in tiny models, and an al_tok from a folder's
 * tokenizer.json (its model, normalizer, pre-tokenizer, post-processor and
 * decoder flattened into the step lists of tok_int.h; malformed fields are
 * named in the error, unsupported types refused with AL_EUNSUP) and
 * tokenizer_config.json, and freeing one.
 *
 * tokenizer_config.json is applied as transformers does: bos/eos/pad
 * tokens, chat_template (string or the "default" of a list, overridden by
 * chat_template.jinja), and for the Llama/CodeLlama/Gemma classes a
 * template rebuilt from add_bos_token (default true) and add_eos_token. */
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io.h"
#include "tok_int.h"

#define TOK_MAX_FILE ((size_t)1 << 30) /* tokenizer.json read cap */
#define TOK_MAX_ID (1 << 22)           /* ids above this are rejected */
#define TOK_MAX_DEPTH 16               /* nesting of Sequence steps */

static char *xstrndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
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

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c *= 2;
    return c;
}

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
    tok_cache_free(t->cache);
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
        t->byte_utf8_n[b] = (uint8_t)tok_utf8_enc(c, buf);
        memcpy(t->byte_utf8[b], buf, t->byte_utf8_n[b]);
    }
    t->cache = tok_cache_new();
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
        if (t->id_flags[i] & F_MODEL) tok_map_put(t->vocab_slot, t->vocab_mask, t, i);
    for (uint32_t cp = 0; cp < 0x800; cp++) {
        char buf[4];
        int k = tok_utf8_enc(cp, buf);
        t->char_id[cp] = tok_vocab_get(t, buf, (size_t)k);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->bf_id[b] = tok_vocab_get(t, name, 6);
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
        for (int i = 0; i < t->n_added; i++) tok_map_put(t->added_slot, t->added_mask, t, t->added[i].id);
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
        int k = tok_utf8_enc(byte_char(b), buf);
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
    if (n == 0 || tok_utf8_dec((const unsigned char *)s, n, cp) != (int)n)
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

/* What the four kinds of step (normalizer, pre_tokenizer, decoder,
 * post_processor) share: null is none (*type stays NULL), nesting is
 * bounded, the object names its type, and a "Sequence" is its array o[key]
 * parsed element by element with fn one level deeper (on return *type is
 * "Sequence" and nothing is left to do). */
typedef int (*step_parser)(ld *L, json_t *o, const char *path, int depth);
static int step_head(ld *L, json_t *o, const char *path, int depth, const char *key, step_parser fn,
                     const char **type) {
    *type = NULL;
    if (!o || json_is_null(o)) return AL_OK;
    if (depth > TOK_MAX_DEPTH) return ld_err(L, AL_EFORMAT, "%s: nested too deeply", path);
    int rc = get_type(L, o, path, type);
    if (rc != AL_OK || strcmp(*type, "Sequence") != 0) return rc;
    json_t *arr = json_object_get(o, key);
    if (!json_is_array(arr)) return ld_err(L, AL_EFORMAT, "%s.%s: expected an array", path, key);
    char sub[240];
    for (size_t i = 0; i < json_array_size(arr); i++) {
        snprintf(sub, sizeof sub, "%s.%s[%zu]", path, key, i);
        if ((rc = fn(L, json_array_get(arr, i), sub, depth + 1)) != AL_OK) return rc;
    }
    return AL_OK;
}

static int parse_normalizer(ld *L, json_t *o, const char *path, int depth) {
    al_tok *t = L->t;
    const char *type;
    int rc = step_head(L, o, path, depth, "normalizers", parse_normalizer, &type);
    if (rc != AL_OK || !type || !strcmp(type, "Sequence")) return rc;
    GROW(t->norm, t->n_norm);
    norm_step *st = &t->norm[t->n_norm++];
    static const char *const plain[] = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase"}; /* no options */
    static const int plain_kind[] = {N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWERCASE};
    int k = 0;
    while (k < 5 && strcmp(type, plain[k]) != 0) k++;
    if (k < 5) {
        st->kind = plain_kind[k];
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
    const char *type;
    int rc = step_head(L, o, path, depth, "pretokenizers", parse_pre, &type);
    if (rc != AL_OK || !type || !strcmp(type, "Sequence")) return rc;
    char sub[200];
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
        st->rep_n = tok_utf8_enc(cp, st->rep);
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
    const char *type;
    int rc = step_head(L, o, path, depth, "decoders", parse_decoder, &type);
    if (rc != AL_OK || !type) return rc;
    t->has_decoder = 1;
    if (!strcmp(type, "Sequence")) return AL_OK;
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
    const char *type;
    int rc = step_head(L, o, path, depth, "processors", parse_post, &type);
    if (rc != AL_OK || !type || !strcmp(type, "Sequence")) return rc;
    char sub[240];
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

/* The top level's shape, before anything is built. */
static int check_top(ld *L, json_t *root) {
    if (!json_is_object(root)) return ld_err(L, AL_EFORMAT, "expected a JSON object");
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return ld_err(L, AL_EFORMAT, "model: missing or not an object");
    json_t *type = json_object_get(model, "type");
    if (type && !json_is_string(type)) return ld_err(L, AL_EFORMAT, "model.type: expected a string");
    if (type && strcmp(json_string_value(type), "BPE") != 0)
        return ld_err(L, AL_EUNSUP, "model.type: \"%s\" models are not supported (only BPE)",
                      json_string_value(type));
    if (!json_is_object(json_object_get(model, "vocab")))
        return ld_err(L, AL_EFORMAT, "model.vocab: missing or not an object");
    json_t *merges = json_object_get(model, "merges");
    if (merges && !json_is_null(merges) && !json_is_array(merges))
        return ld_err(L, AL_EFORMAT, "model.merges: expected an array");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return ld_err(L, AL_EFORMAT, "added_tokens: expected an array");
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return ld_err(L, AL_EUNSUP, "model.dropout: BPE dropout is not supported");
    return AL_OK;
}

/* Ids: the vocabulary, then the added tokens, which get ids as tokenizers'
 * AddedVocabulary::add_tokens assigns them (the file's "id" agrees in files
 * tokenizers wrote; where it does not, tokenizers only warns and uses its
 * own). Sizes the tables for the worst case, fills in the vocabulary and
 * indexes it; *max_id is its highest id. */
static int parse_vocab(ld *L, json_t *vocab, json_t *added, json_int_t *max_id) {
    al_tok *t = L->t;
    int rc;
    const char *key;
    json_t *val;
    *max_id = -1;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= TOK_MAX_ID)
            return ld_err(L, AL_EFORMAT, "model.vocab[\"%.60s\"]: id must be an integer in [0, %d)", key, TOK_MAX_ID);
        if (json_integer_value(val) > *max_id) *max_id = json_integer_value(val);
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
    size_t cap = (size_t)(*max_id + 1) > vocab_count + n_added + 1 ? (size_t)(*max_id + 1) : vocab_count + n_added + 1;
    if ((rc = ids_alloc(t, (int)cap)) != AL_OK) return rc;
    json_object_foreach(vocab, key, val) {
        if ((rc = set_id(t, (int32_t)json_integer_value(val), key, strlen(key), F_MODEL)) != AL_OK) return rc;
    }
    return index_vocab(t);
}

/* An optional non-empty string option of the model, copied. */
static int model_affix(ld *L, json_t *model, const char *key, char **out, size_t *out_n) {
    const char *s;
    size_t n;
    int rc = get_str(L, model, key, "model", &s, &n);
    if (rc != AL_OK || !s || !n) return rc;
    if (!(*out = xstrndup(s, n))) return AL_ENOMEM;
    *out_n = n;
    return AL_OK;
}

static int parse_model_options(ld *L, json_t *model) {
    al_tok *t = L->t;
    const char *s;
    size_t n;
    int rc;
    if ((rc = get_bool(L, model, "byte_fallback", "model", 0, &t->byte_fallback)) != AL_OK) return rc;
    if ((rc = get_bool(L, model, "ignore_merges", "model", 0, &t->ignore_merges)) != AL_OK) return rc;
    if ((rc = get_bool(L, model, "fuse_unk", "model", 0, &t->fuse_unk)) != AL_OK) return rc;
    if ((rc = get_str(L, model, "unk_token", "model", &s, &n)) != AL_OK) return rc;
    if (s) t->unk_id = tok_vocab_get(t, s, n);
    if ((rc = model_affix(L, model, "continuing_subword_prefix", &t->sw_prefix, &t->sw_prefix_n)) != AL_OK) return rc;
    return model_affix(L, model, "end_of_word_suffix", &t->eow_suffix, &t->eow_suffix_n);
}

/* Merges: rank = position; the merged token must be in the vocabulary. */
static int parse_merges(ld *L, json_t *merges) {
    al_tok *t = L->t;
    int rc = AL_OK;
    size_t nm = json_array_size(merges);
    t->merges_mask = pow2_at_least(nm * 2 + 1) - 1;
    t->merges = calloc((size_t)t->merges_mask + 1, sizeof *t->merges);
    if (!t->merges) return AL_ENOMEM;
    al_buf cat = {0};
    for (size_t i = 0; i < nm; i++) {
        const char *a = NULL, *b = NULL;
        size_t an = 0, bn = 0;
        if ((rc = merge_parts(L, json_array_get(merges, i), i, &a, &an, &b, &bn)) != AL_OK) break;
        int32_t ia = tok_vocab_get(t, a, an), ib = tok_vocab_get(t, b, bn);
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
        int32_t id = tok_vocab_get(t, cat.p, cat.n);
        if (id < 0) {
            rc = ld_err(L, AL_EFORMAT, "model.merges[%zu]: merged token \"%.60s\" is not in model.vocab", i, cat.p);
            break;
        }
        tok_merge_put(t, ia, ib, (uint32_t)i, id);
    }
    free(cat.p);
    return rc;
}

/* One entry of added_tokens (validated by parse_vocab): its id, as
 * tokenizers assigns it, and its options; *max_added is the highest id
 * given to an added token so far. */
static int parse_added_token(ld *L, json_t *a, size_t i, size_t vocab_count, int32_t *max_added) {
    al_tok *t = L->t;
    int rc;
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
    int32_t id = tok_map_get(t->added_slot, t->added_mask, t, c, cn);
    if (id < 0) id = tok_vocab_get(t, c, cn);
    if (id < 0) {
        if (*max_added < 0) id = (int32_t)vocab_count;
        else id = *max_added >= (int32_t)vocab_count || vocab_count == 0 ? *max_added + 1 : (int32_t)vocab_count;
    }
    if (id > *max_added) *max_added = id;
    if ((rc = set_id(t, id, c, cn, (uint8_t)(F_ADDED | (special ? F_SPECIAL : 0)))) != AL_OK) return rc;
    tok_map_put(t->added_slot, t->added_mask, t, id);
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
    if (normalized) rc = tok_normalize_string(t, c, cn, &nb);
    else rc = al_buf_put(&nb, c, cn);
    if (rc != AL_OK) {
        free(nb.p);
        return rc;
    }
    at->norm = nb.p;
    at->norm_n = nb.n;
    return AL_OK;
}

static int parse_added_tokens(ld *L, json_t *added, size_t vocab_count, int32_t *max_added) {
    al_tok *t = L->t;
    size_t n_added = json_array_size(added);
    if (n_added > 0) {
        t->added = calloc(n_added, sizeof *t->added);
        if (!t->added) return AL_ENOMEM;
    }
    uint32_t acap = pow2_at_least(n_added * 2 + 1);
    t->added_slot = malloc(acap * sizeof *t->added_slot);
    if (!t->added_slot) return AL_ENOMEM;
    memset(t->added_slot, 0xFF, acap * sizeof *t->added_slot);
    t->added_mask = acap - 1;
    *max_added = -1;
    for (size_t i = 0; i < n_added; i++) {
        int rc = parse_added_token(L, json_array_get(added, i), i, vocab_count, max_added);
        if (rc != AL_OK) return rc;
    }
    return index_added(t);
}

static int parse_tokenizer_json(ld *L, json_t *root) {
    al_tok *t = L->t;
    int rc;
    if ((rc = check_top(L, root)) != AL_OK) return rc;
    json_t *model = json_object_get(root, "model"), *added = json_object_get(root, "added_tokens");
    json_int_t max_id;
    int32_t max_added;
    if ((rc = parse_vocab(L, json_object_get(model, "vocab"), added, &max_id)) != AL_OK) return rc;
    if ((rc = parse_model_options(L, model)) != AL_OK) return rc;
    if ((rc = parse_merges(L, json_object_get(model, "merges"))) != AL_OK) return rc;
    /* Normalizer before added tokens: normalized ones match their
     * normalized content. */
    if ((rc = parse_normalizer(L, json_object_get(root, "normalizer"), "normalizer", 0)) != AL_OK) return rc;
    size_t vocab_count = json_object_size(json_object_get(model, "vocab"));
    if ((rc = parse_added_tokens(L, added, vocab_count, &max_added)) != AL_OK) return rc;
    t->n_ids = (int)(max_id > max_added ? max_id : max_added) + 1;

    if ((rc = parse_pre(L, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", 0)) != AL_OK) return rc;
    if ((rc = parse_post(L, json_object_get(root, "post_processor"), "post_processor", 0)) != AL_OK) return rc;
    return parse_decoder(L, json_object_get(root, "decoder"), "decoder", 0);
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

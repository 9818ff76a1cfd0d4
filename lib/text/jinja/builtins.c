/* Jinja interpreter: builtins. jinja2's filters and tests (3.1 names; the
 * ones chat templates do not use, such as urlize or groupby, are known by
 * name but fail with AL_EUNSUP when run), the globals transformers installs
 * (range, dict, namespace, raise_exception, strftime_now, ...), and the
 * Python methods of str, dict, list and tuple that the immutable sandbox
 * allows. Attribute and item access follow jinja2.sandbox: attribute first
 * then item for ".x", item first then attribute for "[x]", names starting
 * with "_" and mutating methods are undefined. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja_int.h"

/* ---------------------------------------------------------------- tables */
static const char *const FILTERS[] = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
    "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "items", "join",
    "last", "length", "list", "lower", "map", "max", "min", "pprint", "random", "reject", "rejectattr",
    "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
    "sum", "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount",
    "wordwrap", "xmlattr"};
enum {
    F_ABS, F_ATTR, F_BATCH, F_CAPITALIZE, F_CENTER, F_COUNT, F_D, F_DEFAULT, F_DICTSORT, F_E, F_ESCAPE,
    F_FILESIZEFORMAT, F_FIRST, F_FLOAT, F_FORCEESCAPE, F_FORMAT, F_GROUPBY, F_INDENT, F_INT, F_ITEMS, F_JOIN,
    F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN, F_PPRINT, F_RANDOM, F_REJECT, F_REJECTATTR,
    F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR, F_SLICE, F_SORT, F_STRING, F_STRIPTAGS,
    F_SUM, F_TITLE, F_TOJSON, F_TRIM, F_TRUNCATE, F_UNIQUE, F_UPPER, F_URLENCODE, F_URLIZE, F_WORDCOUNT,
    F_WORDWRAP, F_XMLATTR, F__N
};

static const char *const TESTS[] = {
    "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false",
    "true", "integer", "float", "lower", "upper", "string", "mapping", "number", "sequence", "iterable",
    "callable", "sameas", "escaped", "in", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan",
    ">=", "ge", "<", "lt", "lessthan", "<=", "le"};
enum {
    T_ODD, T_EVEN, T_DIVISIBLEBY, T_DEFINED, T_UNDEFINED, T_FILTER, T_TEST, T_NONE, T_BOOLEAN, T_FALSE,
    T_TRUE, T_INTEGER, T_FLOAT, T_LOWER, T_UPPER, T_STRING, T_MAPPING, T_NUMBER, T_SEQUENCE, T_ITERABLE,
    T_CALLABLE, T_SAMEAS, T_ESCAPED, T_IN, T_EQ1, T_EQ2, T_EQ3, T_NE1, T_NE2, T_GT1, T_GT2, T_GT3,
    T_GE1, T_GE2, T_LT1, T_LT2, T_LT3, T_LE1, T_LE2, T__N
};

static const char *const GLOBALS[] = {"range", "dict", "lipsum", "cycler", "joiner", "namespace",
                                      "raise_exception", "strftime_now"};
enum { G_RANGE, G_DICT, G_LIPSUM, G_CYCLER, G_JOINER, G_NAMESPACE, G_RAISE, G_STRFTIME, G__N };

static const char *const STR_ATTRS[] = {
    "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
    "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier",
    "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower",
    "lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
    "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
    "title", "translate", "upper", "zfill"};
enum {
    S_CAPITALIZE, S_CASEFOLD, S_CENTER, S_COUNT, S_ENCODE, S_ENDSWITH, S_EXPANDTABS, S_FIND, S_FORMAT,
    S_FORMAT_MAP, S_INDEX, S_ISALNUM, S_ISALPHA, S_ISASCII, S_ISDECIMAL, S_ISDIGIT, S_ISIDENTIFIER,
    S_ISLOWER, S_ISNUMERIC, S_ISPRINTABLE, S_ISSPACE, S_ISTITLE, S_ISUPPER, S_JOIN, S_LJUST, S_LOWER,
    S_LSTRIP, S_MAKETRANS, S_PARTITION, S_REMOVEPREFIX, S_REMOVESUFFIX, S_REPLACE, S_RFIND, S_RINDEX,
    S_RJUST, S_RPARTITION, S_RSPLIT, S_RSTRIP, S_SPLIT, S_SPLITLINES, S_STARTSWITH, S_STRIP, S_SWAPCASE,
    S_TITLE, S_TRANSLATE, S_UPPER, S_ZFILL, S__N
};
/* dict / list attributes; 'U' = mutating (undefined in the immutable sandbox) */
static const char *const DICT_ATTRS[] = {"clear", "copy", "fromkeys", "get", "items", "keys", "pop",
                                         "popitem", "setdefault", "update", "values"};
static const char DICT_UNSAFE[] = "U  .  UUUU ";
enum { D_CLEAR, D_COPY, D_FROMKEYS, D_GET, D_ITEMS, D_KEYS, D_POP, D_POPITEM, D_SETDEFAULT, D_UPDATE, D_VALUES };
static const char *const LIST_ATTRS[] = {"append", "clear", "copy", "count", "extend", "index", "insert",
                                         "pop", "remove", "reverse", "sort"};
static const char LIST_UNSAFE[] = "UU  U UUUUU";
enum { L_APPEND, L_CLEAR, L_COPY, L_COUNT, L_EXTEND, L_INDEX, L_INSERT, L_POP, L_REMOVE, L_REVERSE, L_SORT };
static const char *const LOOP_METHODS[] = {"cycle", "changed"};

enum { ID_GLOBAL = 0, ID_STR = 100, ID_DICT = 200, ID_LIST = 300, ID_LOOP = 400 };

static int find_name(const char *const *tab, int n, const char *s, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(tab[i]) == len && memcmp(tab[i], s, len) == 0) return i;
    return -1;
}
#define NTAB(t) ((int)(sizeof(t) / sizeof((t)[0])))

int jj_filter_id(const char *name, size_t n) { return find_name(FILTERS, NTAB(FILTERS), name, n); }
int jj_filter_foldable(int id) { /* not @pass_context */
    return id >= 0 && id != F_MAP && id != F_SELECT && id != F_REJECT && id != F_SELECTATTR && id != F_REJECTATTR &&
           id != F_RANDOM;
}
int jj_test_id(const char *name, size_t n) { return find_name(TESTS, NTAB(TESTS), name, n); }
int jj_global_id(const char *name, size_t n) { return find_name(GLOBALS, NTAB(GLOBALS), name, n); }

/* ---------------------------------------------------------------- argument binding */
#define JV_MISSING (-1)
static int missing(jv v) { return v.k == JV_MISSING; }

static int bind(jctx *c, const char *fn, jargs *a, const char *const *names, int n, jv *slots) {
    for (int i = 0; i < n; i++) slots[i].k = JV_MISSING;
    if (a->npos > n) return jj_fail(c, AL_EFORMAT, "%s() takes at most %d argument(s) (%d given)", fn, n, a->npos);
    for (int i = 0; i < a->npos; i++) slots[i] = a->pos[i];
    for (int k = 0; k < a->nkw; k++) {
        int idx = find_name(names, n, a->kn[k]->s, a->kn[k]->len);
        if (idx < 0) return jj_fail(c, AL_EFORMAT, "%s() got an unexpected keyword argument '%s'", fn, a->kn[k]->s);
        if (!missing(slots[idx])) return jj_fail(c, AL_EFORMAT, "%s() got multiple values for argument '%s'", fn, a->kn[k]->s);
        slots[idx] = a->kv[k];
    }
    return AL_OK;
}

static int no_kwargs(jctx *c, const char *fn, jargs *a) {
    if (a->nkw) return jj_fail(c, AL_EFORMAT, "%s() takes no keyword arguments", fn);
    return AL_OK;
}

static int truthy(jctx *c, jv v) {
    int t = 0;
    jj_truthy(c, v, &t);
    return t;
}

static int want_int(jctx *c, jv v, int64_t *out) {
    if (v.k == JV_INT || v.k == JV_BOOL) {
        *out = v.u.i;
        return AL_OK;
    }
    if (v.k == JV_UNDEF) return jj_undef_error(c, v);
    return jj_fail(c, AL_EFORMAT, "'%s' object cannot be interpreted as an integer", jj_type_name(v));
}

static int want_str(jctx *c, jv v, const char *what) {
    if (v.k == JV_STR) return AL_OK;
    if (v.k == JV_UNDEF) return jj_undef_error(c, v);
    return jj_fail(c, AL_EFORMAT, "%s must be str, not %s", what, jj_type_name(v));
}

static int new_str(jctx *c, jbuf *b, jv *out) {
    int rc = jj_str_new(c, b->p ? b->p : "", b->n, out);
    c->mem -= b->cap < c->mem ? b->cap : c->mem;
    jj_buf_free(b);
    return rc;
}

static int push_copy(jctx *c, jv list, jv item) {
    jj_incref(item);
    return jj_seq_push(c, jv_seq(list), item);
}

/* ---------------------------------------------------------------- string helpers */
static size_t *cp_offsets(jctx *c, const jstr *s) {
    size_t *off = malloc((s->ncp + 1) * sizeof *off);
    if (!off) {
        jj_fail(c, AL_ENOMEM, "out of memory");
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->len; i++)
        if (((unsigned char)s->s[i] & 0xc0) != 0x80) off[k++] = i;
    off[k] = s->len;
    return off;
}

static int put_cp(jctx *c, jbuf *b, uint32_t cp) {
    char e[4];
    return jj_buf_put(c, b, e, jj_u8_enc(e, cp));
}

static int put_upper(jctx *c, jbuf *b, uint32_t cp) {
    uint32_t sp[3];
    int k = jj_uupper_special(cp, sp);
    if (k) {
        int rc = AL_OK;
        for (int i = 0; i < k && !rc; i++) rc = put_cp(c, b, sp[i]);
        return rc;
    }
    return put_cp(c, b, jj_uupper(cp));
}

static int put_title(jctx *c, jbuf *b, uint32_t cp) {
    if (cp == 0xdf) return jj_buf_put(c, b, "Ss", 2);
    return put_upper(c, b, cp);
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_SWAP };
static int map_case(jctx *c, const char *s, size_t n, int mode, jv *out) {
    jbuf b = {0};
    int rc = AL_OK, prev_cased = 0, first = 1;
    for (size_t i = 0; i < n && !rc;) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(s + i, n - i, &cp);
        switch (mode) {
        case CASE_UPPER: rc = put_upper(c, &b, cp); break;
        case CASE_LOWER: rc = put_cp(c, &b, jj_ulower(cp)); break;
        case CASE_CAPITALIZE: rc = first ? put_title(c, &b, cp) : put_cp(c, &b, jj_ulower(cp)); break;
        case CASE_SWAP:
            rc = jj_uisupper(cp) ? put_cp(c, &b, jj_ulower(cp)) : jj_uislower(cp) ? put_upper(c, &b, cp) : put_cp(c, &b, cp);
            break;
        case CASE_TITLE:
            rc = prev_cased ? put_cp(c, &b, jj_ulower(cp)) : put_title(c, &b, cp);
            prev_cased = jj_ucased(cp);
            break;
        }
        first = 0;
        i += k;
    }
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

static int cp_in(uint32_t cp, const char *set, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t x = 0;
        i += jj_u8_dec(set + i, n - i, &x);
        if (x == cp) return 1;
    }
    return 0;
}

/* Python str.strip/lstrip/rstrip; chars NULL = whitespace */
static void strip_range(const char *s, size_t n, const char *chars, size_t cn, int left, int right, size_t *from, size_t *to) {
    size_t a = 0, b = n;
    if (left) {
        while (a < b) {
            uint32_t cp = 0;
            size_t k = jj_u8_dec(s + a, b - a, &cp);
            if (chars ? !cp_in(cp, chars, cn) : !jj_uspace(cp)) break;
            a += k;
        }
    }
    if (right) {
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
            uint32_t cp = 0;
            jj_u8_dec(s + st, b - st, &cp);
            if (chars ? !cp_in(cp, chars, cn) : !jj_uspace(cp)) break;
            b = st;
        }
    }
    *from = a;
    *to = b;
}

static int strip_value(jctx *c, const jstr *s, jv chars, int left, int right, jv *out) {
    const char *cs = NULL;
    size_t cn = 0;
    if (!missing(chars) && chars.k != JV_NONE) {
        if (chars.k != JV_STR) return jj_fail(c, AL_EFORMAT, "strip arg must be None or str");
        cs = jv_str(chars)->s;
        cn = jv_str(chars)->len;
    }
    size_t a = 0, b = 0;
    strip_range(s->s, s->len, cs, cn, left, right, &a, &b);
    return jj_str_new(c, s->s + a, b - a, out);
}

static ptrdiff_t find_sub(const char *h, size_t from, size_t to, const char *n, size_t nn, int rev) {
    if (to < from || to - from < nn) return -1;
    if (!rev) {
        for (size_t i = from; i + nn <= to; i++)
            if (memcmp(h + i, n, nn) == 0) return (ptrdiff_t)i;
    } else {
        for (size_t i = to - nn + 1; i-- > from;)
            if (memcmp(h + i, n, nn) == 0) return (ptrdiff_t)i;
    }
    return -1;
}

static size_t cp_index_of(const char *s, size_t byte) { return jj_u8_count(s, byte); }

/* optional start/end (codepoint, slice semantics) -> byte range */
static int sub_range(jctx *c, const jstr *s, jv start, jv end, size_t *from, size_t *to) {
    int64_t len = (int64_t)s->ncp, a = 0, b = len;
    if (!missing(start) && start.k != JV_NONE) {
        int rc = want_int(c, start, &a);
        if (rc) return rc;
        if (a < 0) a += len;
        if (a < 0) a = 0;
    }
    if (!missing(end) && end.k != JV_NONE) {
        int rc = want_int(c, end, &b);
        if (rc) return rc;
        if (b < 0) b += len;
        if (b < 0) b = 0;
    }
    if (a > len) {
        *from = s->len + 1; /* empty and past the end: nothing matches, not even "" */
        *to = s->len;
        return AL_OK;
    }
    if (b > len) b = len;
    size_t *off = cp_offsets(c, s);
    if (!off) return AL_ENOMEM;
    *from = off[a];
    *to = b >= a ? off[b] : off[a];
    free(off);
    return AL_OK;
}

static int split_impl(jctx *c, const jstr *s, jv sepv, int64_t maxsplit, int rev, jv *out) {
    int rc = jj_seq_new(c, JV_LIST, 0, out);
    if (rc) return rc;
    const char *p = s->s;
    size_t n = s->len;
    if (missing(sepv) || sepv.k == JV_NONE) {
        if (!rev) {
            size_t i = 0;
            int64_t splits = 0;
            for (;;) {
                while (i < n) { /* skip whitespace */
                    uint32_t cp = 0;
                    size_t k = jj_u8_dec(p + i, n - i, &cp);
                    if (!jj_uspace(cp)) break;
                    i += k;
                }
                if (i >= n) break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    jv w = {0};
                    if ((rc = jj_str_new(c, p + i, n - i, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
                    break;
                }
                size_t st = i;
                while (i < n) {
                    uint32_t cp = 0;
                    size_t k = jj_u8_dec(p + i, n - i, &cp);
                    if (jj_uspace(cp)) break;
                    i += k;
                }
                jv w = {0};
                if ((rc = jj_str_new(c, p + st, i - st, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
                splits++;
            }
            return AL_OK;
        }
        /* rsplit on whitespace: collect from the right, then reverse */
        size_t i = n;
        int64_t splits = 0;
        for (;;) {
            while (i > 0) {
                size_t st = i - 1;
                while (st > 0 && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
                uint32_t cp = 0;
                jj_u8_dec(p + st, i - st, &cp);
                if (!jj_uspace(cp)) break;
                i = st;
            }
            if (i == 0) break;
            if (maxsplit >= 0 && splits >= maxsplit) {
                jv w = {0};
                if ((rc = jj_str_new(c, p, i, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
                break;
            }
            size_t end = i;
            while (i > 0) {
                size_t st = i - 1;
                while (st > 0 && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
                uint32_t cp = 0;
                jj_u8_dec(p + st, i - st, &cp);
                if (jj_uspace(cp)) break;
                i = st;
            }
            jv w = {0};
            if ((rc = jj_str_new(c, p + i, end - i, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
            splits++;
        }
    } else {
        if (sepv.k != JV_STR) {
            rc = jj_fail(c, AL_EFORMAT, "must be str or None, not %s", jj_type_name(sepv));
            goto fail;
        }
        const jstr *sep = jv_str(sepv);
        if (sep->len == 0) {
            rc = jj_fail(c, AL_EFORMAT, "empty separator");
            goto fail;
        }
        int64_t splits = 0;
        if (!rev) {
            size_t i = 0;
            for (;;) {
                ptrdiff_t f = (maxsplit >= 0 && splits >= maxsplit) ? -1 : find_sub(p, i, n, sep->s, sep->len, 0);
                size_t e = f < 0 ? n : (size_t)f;
                jv w = {0};
                if ((rc = jj_str_new(c, p + i, e - i, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
                if (f < 0) break;
                i = e + sep->len;
                splits++;
            }
            return AL_OK;
        }
        size_t j = n;
        for (;;) {
            ptrdiff_t f = (maxsplit >= 0 && splits >= maxsplit) ? -1 : find_sub(p, 0, j, sep->s, sep->len, 1);
            size_t st = f < 0 ? 0 : (size_t)f + sep->len;
            jv w = {0};
            if ((rc = jj_str_new(c, p + st, j - st, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) goto fail;
            if (f < 0) break;
            j = (size_t)f;
            splits++;
        }
    }
    if (rev) { /* reverse in place */
        jseq *q = jv_seq(*out);
        for (size_t i = 0; i < q->n / 2; i++) {
            jv t = q->v[i];
            q->v[i] = q->v[q->n - 1 - i];
            q->v[q->n - 1 - i] = t;
        }
    }
    return AL_OK;
fail:
    jj_decref(c, *out);
    return rc;
}

static int splitlines_impl(jctx *c, const jstr *s, int keepends, jv *out) {
    int rc = jj_seq_new(c, JV_LIST, 0, out);
    if (rc) return rc;
    const char *p = s->s;
    size_t n = s->len, i = 0, st = 0;
    while (i < n) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(p + i, n - i, &cp);
        if (jj_ulinebreak(cp)) {
            size_t eol = i + k;
            if (cp == '\r' && eol < n && p[eol] == '\n') eol++;
            jv w = {0};
            if ((rc = jj_str_new(c, p + st, (keepends ? eol : i) - st, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) {
                jj_decref(c, *out);
                return rc;
            }
            i = st = eol;
            continue;
        }
        i += k;
    }
    if (st < n) {
        jv w = {0};
        if ((rc = jj_str_new(c, p + st, n - st, &w)) || (rc = jj_seq_push(c, jv_seq(*out), w))) {
            jj_decref(c, *out);
            return rc;
        }
    }
    return AL_OK;
}

static int replace_impl(jctx *c, const jstr *s, const jstr *old, const jstr *rep, int64_t count, jv *out) {
    jbuf b = {0};
    int rc = AL_OK;
    int64_t done = 0;
    if (old->len == 0) {
        size_t i = 0;
        while (!rc) {
            if (count < 0 || done < count) {
                rc = jj_buf_put(c, &b, rep->s, rep->len);
                done++;
            }
            if (i >= s->len || rc) break;
            uint32_t cp = 0;
            size_t k = jj_u8_dec(s->s + i, s->len - i, &cp);
            rc = jj_buf_put(c, &b, s->s + i, k);
            i += k;
        }
    } else {
        size_t i = 0;
        while (!rc) {
            ptrdiff_t f = (count >= 0 && done >= count) ? -1 : find_sub(s->s, i, s->len, old->s, old->len, 0);
            if (f < 0) {
                rc = jj_buf_put(c, &b, s->s + i, s->len - i);
                break;
            }
            if (!(rc = jj_buf_put(c, &b, s->s + i, (size_t)f - i))) rc = jj_buf_put(c, &b, rep->s, rep->len);
            i = (size_t)f + old->len;
            done++;
        }
    }
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

static int pad_impl(jctx *c, const jstr *s, int64_t width, jv fillv, int mode /* 0 center 1 ljust 2 rjust */, jv *out) {
    const char *fill = " ";
    size_t fl = 1;
    if (!missing(fillv)) {
        if (fillv.k != JV_STR || jv_str(fillv)->ncp != 1)
            return jj_fail(c, AL_EFORMAT, "The fill character must be exactly one character long");
        fill = jv_str(fillv)->s;
        fl = jv_str(fillv)->len;
    }
    if (width <= (int64_t)s->ncp) {
        jj_incref((jv){.k = JV_STR, .u.o = (jo *)&s->h});
        out->k = JV_STR;
        out->u.o = (jo *)&s->h;
        return AL_OK;
    }
    if (width > (int64_t)JJ_OUT_MAX) return jj_fail(c, AL_ERANGE, "string too long");
    int64_t marg = width - (int64_t)s->ncp, left;
    if (mode == 0) left = marg / 2 + (marg & width & 1);
    else if (mode == 1) left = 0;
    else left = marg;
    jbuf b = {0};
    int rc = AL_OK;
    for (int64_t i = 0; i < left && !rc; i++) rc = jj_buf_put(c, &b, fill, fl);
    if (!rc) rc = jj_buf_put(c, &b, s->s, s->len);
    for (int64_t i = 0; i < marg - left && !rc; i++) rc = jj_buf_put(c, &b, fill, fl);
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

/* ---------------------------------------------------------------- attribute access */
static int loop_attr(jctx *c, jv obj, const char *name, size_t n, jv *out) {
    jloop *l = (jloop *)obj.u.o;
    size_t len = l->items ? l->items->n : 0, i = l->idx;
#define IS(s) (n == strlen(s) && memcmp(name, s, n) == 0)
    if (IS("index")) *out = jv_int((int64_t)i + 1);
    else if (IS("index0")) *out = jv_int((int64_t)i);
    else if (IS("revindex")) *out = jv_int((int64_t)(len - i));
    else if (IS("revindex0")) *out = jv_int((int64_t)(len - i - 1));
    else if (IS("first")) *out = jv_bool(i == 0);
    else if (IS("last")) *out = jv_bool(i + 1 == len);
    else if (IS("length")) *out = jv_int((int64_t)len);
    else if (IS("depth")) *out = jv_int(1);
    else if (IS("depth0")) *out = jv_int(0);
    else if (IS("previtem")) {
        if (i == 0) return jj_undef_hint(c, out, "there is no previous item");
        *out = l->items->v[i - 1];
        jj_incref(*out);
    } else if (IS("nextitem")) {
        if (i + 1 >= len) return jj_undef_hint(c, out, "there is no next item");
        *out = l->items->v[i + 1];
        jj_incref(*out);
    } else {
        int m = find_name(LOOP_METHODS, NTAB(LOOP_METHODS), name, n);
        if (m >= 0) return jj_func_new(c, ID_LOOP + m, obj, out);
        return jj_undef_hint(c, out, "'jinja2.runtime.LoopContext object' has no attribute '%.*s'", (int)n, name);
    }
#undef IS
    return AL_OK;
}

static const char *obj_repr_name(jv v, char buf[64]) {
    switch (v.k) {
    case JV_NONE: return "None";
    case JV_NS: return "jinja2.utils.Namespace object";
    case JV_LOOP: return "jinja2.runtime.LoopContext object";
    case JV_MACRO: return "jinja2.runtime.Macro object";
    default: snprintf(buf, 64, "%s object", jj_type_name(v)); return buf;
    }
}

static int no_attr(jctx *c, jv obj, const char *name, size_t n, jv *out) {
    char b[64];
    return jj_undef_hint(c, out, "'%s' has no attribute '%.*s'", obj_repr_name(obj, b), (int)n, name);
}

/* Python getattr(obj, name) as the sandbox sees it; *found = 0 when the
 * object has no such attribute (so getitem can fall back) */
static int py_getattr(jctx *c, jv obj, const char *name, size_t n, jv *out, int *found) {
    *found = 1;
    if (n >= 2 && name[0] == '_' && name[1] == '_') return jj_undef_hint(c, out, "access to attribute '%.*s' of '%s' object is unsafe.", (int)n, name, jj_type_name(obj));
    int i;
    switch (obj.k) {
    case JV_STR:
        if ((i = find_name(STR_ATTRS, NTAB(STR_ATTRS), name, n)) >= 0) return jj_func_new(c, ID_STR + i, obj, out);
        break;
    case JV_DICT:
        if ((i = find_name(DICT_ATTRS, NTAB(DICT_ATTRS), name, n)) >= 0) {
            if (DICT_UNSAFE[i] == 'U') return jj_undef_hint(c, out, "access to attribute '%.*s' of 'dict' object is unsafe.", (int)n, name);
            return jj_func_new(c, ID_DICT + i, obj, out);
        }
        break;
    case JV_LIST: case JV_TUPLE:
        if ((i = find_name(LIST_ATTRS, NTAB(LIST_ATTRS), name, n)) >= 0) {
            if (obj.k == JV_TUPLE && i != L_COUNT && i != L_INDEX) break;
            if (LIST_UNSAFE[i] == 'U') return jj_undef_hint(c, out, "access to attribute '%.*s' of 'list' object is unsafe.", (int)n, name);
            return jj_func_new(c, ID_LIST + i, obj, out);
        }
        break;
    case JV_NS:
        if (jj_map_get_name(jv_map(obj), name, n, out)) {
            jj_incref(*out);
            return AL_OK;
        }
        break;
    case JV_LOOP: return loop_attr(c, obj, name, n, out);
    default: break;
    }
    *found = 0;
    return AL_OK;
}

int jj_getattr(jctx *c, jv obj, const char *name, size_t n, jv *out) {
    if (obj.k == JV_UNDEF) return jj_undef_error(c, obj);
    int found, rc = py_getattr(c, obj, name, n, out, &found);
    if (rc || found) return rc;
    if (obj.k == JV_DICT && jj_map_get_name(jv_map(obj), name, n, out)) {
        jj_incref(*out);
        return AL_OK;
    }
    return no_attr(c, obj, name, n, out);
}

int jj_getitem(jctx *c, jv obj, jv key, jv *out) {
    if (obj.k == JV_UNDEF) return jj_undef_error(c, obj);
    switch (obj.k) {
    case JV_DICT:
        if (jj_hashable(key) && jj_map_get(jv_map(obj), key, out)) {
            jj_incref(*out);
            return AL_OK;
        }
        break;
    case JV_LIST: case JV_TUPLE: case JV_STR:
        if (key.k == JV_INT || key.k == JV_BOOL) {
            int64_t len = obj.k == JV_STR ? (int64_t)jv_str(obj)->ncp : (int64_t)jv_seq(obj)->n, i = key.u.i;
            if (i < 0) i += len;
            if (i >= 0 && i < len) {
                if (obj.k != JV_STR) {
                    *out = jv_seq(obj)->v[i];
                    jj_incref(*out);
                    return AL_OK;
                }
                const jstr *s = jv_str(obj);
                size_t b = 0;
                for (int64_t k = 0; k < i; k++) {
                    uint32_t cp = 0;
                    b += jj_u8_dec(s->s + b, s->len - b, &cp);
                }
                uint32_t cp = 0;
                size_t k = jj_u8_dec(s->s + b, s->len - b, &cp);
                return jj_str_new(c, s->s + b, k, out);
            }
        }
        break;
    default: break;
    }
    if (key.k == JV_STR) {
        int found, rc = py_getattr(c, obj, jv_str(key)->s, jv_str(key)->len, out, &found);
        if (rc || found) return rc;
        return no_attr(c, obj, jv_str(key)->s, jv_str(key)->len, out);
    }
    char b[64];
    jbuf r = {0};
    int rc = jj_repr(c, &r, key);
    if (rc) {
        jj_buf_free(&r);
        return rc;
    }
    rc = jj_undef_hint(c, out, "%s has no element %s", obj_repr_name(obj, b), r.p ? r.p : "");
    c->mem -= r.cap < c->mem ? r.cap : c->mem;
    jj_buf_free(&r);
    return rc;
}

/* make_attrgetter: "a.b.0" -> getitem chain */
static int attr_get(jctx *c, jv item, jv attr, jv *out) {
    jj_incref(item);
    jv cur = item;
    if (attr.k != JV_STR) {
        int rc = jj_getitem(c, cur, attr, out);
        jj_decref(c, cur);
        return rc;
    }
    const jstr *a = jv_str(attr);
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < a->len && a->s[j] != '.') j++;
        jv key = {0};
        int rc, digits = j > i;
        for (size_t k = i; k < j; k++)
            if (a->s[k] < '0' || a->s[k] > '9') digits = 0;
        if (digits) {
            int64_t v = 0;
            for (size_t k = i; k < j; k++) v = v * 10 + (a->s[k] - '0');
            key = jv_int(v);
            rc = AL_OK;
        } else {
            rc = jj_str_new(c, a->s + i, j - i, &key);
        }
        jv nxt = {0};
        if (!rc) rc = jj_getitem(c, cur, key, &nxt);
        jj_decref(c, key);
        jj_decref(c, cur);
        if (rc) return rc;
        cur = nxt;
        if (j >= a->len) break;
        i = j + 1;
    }
    *out = cur;
    return AL_OK;
}

static int ignore_case(jctx *c, jv v, jv *out) {
    if (v.k == JV_STR) return map_case(c, jv_str(v)->s, jv_str(v)->len, CASE_LOWER, out);
    jj_incref(v);
    *out = v;
    return AL_OK;
}

/* ---------------------------------------------------------------- sorting (stable, errors propagate) */
static int less(jctx *c, jv a, jv b, int *out) {
    int r, rc = jj_cmp(c, a, b, &r);
    if (rc) return rc;
    *out = r == -1;
    return AL_OK;
}

static int merge_sort(jctx *c, size_t *idx, size_t *tmp, const jv *keys, size_t n, int reverse) {
    if (n < 2) return AL_OK;
    size_t h = n / 2;
    int rc;
    if ((rc = merge_sort(c, idx, tmp, keys, h, reverse)) || (rc = merge_sort(c, idx + h, tmp, keys, n - h, reverse)))
        return rc;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int lt;
        /* take right first only if strictly before left */
        if (reverse) rc = less(c, keys[idx[i]], keys[idx[j]], &lt);
        else rc = less(c, keys[idx[j]], keys[idx[i]], &lt);
        if (rc) return rc;
        tmp[k++] = lt ? idx[j++] : idx[i++];
    }
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    return AL_OK;
}

/* sorted(items, key=..., reverse=...) -> new list */
static int sort_items(jctx *c, jv items, jv *keys, int reverse, jv *out) {
    jseq *s = jv_seq(items);
    size_t *idx = malloc((s->n + 1) * sizeof *idx), *tmp = malloc((s->n + 1) * sizeof *tmp);
    int rc = AL_OK;
    if (!idx || !tmp) rc = jj_fail(c, AL_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n && !rc; i++) idx[i] = i;
    if (!rc) rc = merge_sort(c, idx, tmp, keys, s->n, reverse);
    if (!rc) rc = jj_seq_new(c, JV_LIST, s->n, out);
    for (size_t i = 0; i < s->n && !rc; i++) rc = push_copy(c, *out, s->v[idx[i]]);
    free(idx);
    free(tmp);
    return rc;
}

static void free_keys(jctx *c, jv *keys, size_t n) {
    if (!keys) return;
    for (size_t i = 0; i < n; i++) jj_decref(c, keys[i]);
    free(keys);
}

/* make_attrgetter(attribute, postprocess=ignore_case unless case_sensitive) */
static int key_of(jctx *c, jv item, jv attribute, int case_sensitive, jv *out) {
    jv k = {0};
    int rc = AL_OK;
    if (!missing(attribute) && attribute.k != JV_NONE) rc = attr_get(c, item, attribute, &k);
    else {
        k = item;
        jj_incref(k);
    }
    if (rc) return rc;
    if (case_sensitive) {
        *out = k;
        return AL_OK;
    }
    rc = ignore_case(c, k, out);
    jj_decref(c, k);
    return rc;
}

/* keys[i] = key_of(items[i]) */
static int make_keys(jctx *c, jv items, jv attribute, int case_sensitive, jv **keys_out) {
    jseq *s = jv_seq(items);
    jv *keys = calloc(s->n + 1, sizeof *keys);
    if (!keys) return jj_fail(c, AL_ENOMEM, "out of memory");
    int rc = AL_OK;
    size_t i = 0;
    for (i = 0; i < s->n && !rc; i++) rc = key_of(c, s->v[i], attribute, case_sensitive, &keys[i]);
    if (rc) {
        free_keys(c, keys, i);
        return rc;
    }
    *keys_out = keys;
    return AL_OK;
}

/* ---------------------------------------------------------------- numbers from strings */
static int parse_py_int(const char *s, size_t n, int base, int64_t *out) {
    size_t i = 0;
    while (i < n && jj_uspace((unsigned char)s[i])) i++;
    while (n > i && jj_uspace((unsigned char)s[n - 1])) n--;
    int neg = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (base == 16 && i + 1 < n && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) i += 2;
    if (base == 8 && i + 1 < n && s[i] == '0' && (s[i + 1] == 'o' || s[i + 1] == 'O')) i += 2;
    if (base == 2 && i + 1 < n && s[i] == '0' && (s[i + 1] == 'b' || s[i + 1] == 'B')) i += 2;
    if (i >= n) return -1;
    uint64_t v = 0;
    int prev_digit = 0;
    for (; i < n; i++) {
        char ch = s[i];
        if (ch == '_') {
            if (!prev_digit) return -1;
            prev_digit = 0;
            continue;
        }
        int d = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'z') ? ch - 'a' + 10
                : (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 10 : 99;
        if (d >= base) return -1;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return -2;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_digit = 1;
    }
    if (!prev_digit) return -1;
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return -2;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int parse_py_float(const char *s, size_t n, double *out) {
    size_t i = 0;
    while (i < n && jj_uspace((unsigned char)s[i])) i++;
    while (n > i && jj_uspace((unsigned char)s[n - 1])) n--;
    if (i >= n || n - i > 300) return -1;
    char buf[320];
    size_t k = 0;
    int prev_digit = 0;
    for (size_t j = i; j < n; j++) {
        char ch = s[j];
        if (ch == '_') {
            if (!prev_digit || j + 1 >= n || s[j + 1] < '0' || s[j + 1] > '9') return -1;
            continue;
        }
        if (!((ch >= '0' && ch <= '9') || ch == '.' || ch == 'e' || ch == 'E' || ch == '+' || ch == '-' ||
              (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
            return -1;
        prev_digit = ch >= '0' && ch <= '9';
        buf[k++] = ch;
    }
    buf[k] = 0;
    const char *w = buf + ((buf[0] == '+' || buf[0] == '-') ? 1 : 0);
    if (strchr(w, 'x') || strchr(w, 'X')) return -1;
    int alpha = (w[0] >= 'a' && w[0] <= 'z') || (w[0] >= 'A' && w[0] <= 'Z');
    if (alpha) {
        char low[16];
        size_t l = strlen(w);
        if (l >= sizeof low) return -1;
        for (size_t j = 0; j <= l; j++) low[j] = (char)((w[j] >= 'A' && w[j] <= 'Z') ? w[j] + 32 : w[j]);
        double v = 0;
        if (!strcmp(low, "inf") || !strcmp(low, "infinity")) v = INFINITY;
        else if (!strcmp(low, "nan")) v = NAN;
        else return -1;
        *out = buf[0] == '-' ? -v : v;
        return 0;
    }
    char *end;
    double v = strtod(buf, &end);
    if (*end || end == buf) return -1;
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- printf-style formatting */
static int fmt_pad(jctx *c, jbuf *b, const char *s, size_t n, size_t ncp, int64_t width, int left, char fill) {
    int rc = AL_OK;
    int64_t pad = width > (int64_t)ncp ? width - (int64_t)ncp : 0;
    if (pad > (int64_t)JJ_OUT_MAX) return jj_fail(c, AL_ERANGE, "string too long");
    if (!left)
        for (int64_t i = 0; i < pad && !rc; i++) rc = jj_buf_putc(c, b, fill);
    if (!rc) rc = jj_buf_put(c, b, s, n);
    if (left)
        for (int64_t i = 0; i < pad && !rc; i++) rc = jj_buf_putc(c, b, ' ');
    return rc;
}

static int num_of(jctx *c, jv v, int want_int, double *f, int64_t *i) {
    if (v.k == JV_INT || v.k == JV_BOOL) {
        *i = v.u.i;
        *f = (double)v.u.i;
        return AL_OK;
    }
    if (v.k == JV_FLOAT) {
        *f = v.u.f;
        if (want_int) {
            if (!isfinite(v.u.f)) return jj_fail(c, AL_EFORMAT, "cannot convert float to integer");
            if (v.u.f >= 9.2233720368547758e18 || v.u.f < -9.2233720368547758e18) return jj_fail(c, AL_ERANGE, "integer too large");
            *i = (int64_t)v.u.f;
        }
        return AL_OK;
    }
    return jj_fail(c, AL_EFORMAT, "%%%c format: a real number is required, not %s", want_int ? 'd' : 'f', jj_type_name(v));
}

int jj_str_mod(jctx *c, jv fmt, jv args, jv *out) {
    const jstr *f = jv_str(fmt);
    jv *items = &args;
    size_t nitems = 1, used = 0;
    int is_map = args.k == JV_DICT;
    /* Python treats any non-tuple, non-str object with __getitem__ as a mapping */
    int maplike = is_map || args.k == JV_LIST || args.k == JV_UNDEF;
    if (args.k == JV_TUPLE) {
        items = jv_seq(args)->v;
        nitems = jv_seq(args)->n;
    }
    jbuf b = {0};
    int rc = AL_OK;
    for (size_t i = 0; i < f->len && !rc;) {
        if (f->s[i] != '%') {
            size_t j = i;
            while (j < f->len && f->s[j] != '%') j++;
            rc = jj_buf_put(c, &b, f->s + i, j - i);
            i = j;
            continue;
        }
        i++;
        if (i >= f->len) { rc = jj_fail(c, AL_EFORMAT, "incomplete format"); break; }
        jv val = {0};
        int have_val = 0;
        if (f->s[i] == '(') {
            size_t j = i + 1;
            while (j < f->len && f->s[j] != ')') j++;
            if (j >= f->len) { rc = jj_fail(c, AL_EFORMAT, "incomplete format key"); break; }
            if (!is_map) { rc = jj_fail(c, AL_EFORMAT, "format requires a mapping"); break; }
            if (!jj_map_get_name(jv_map(args), f->s + i + 1, j - i - 1, &val)) {
                rc = jj_fail(c, AL_EFORMAT, "'%.*s'", (int)(j - i - 1), f->s + i + 1);
                break;
            }
            have_val = 1;
            i = j + 1;
        }
        int left = 0, zero = 0, plus = 0, space = 0, alt = 0;
        while (i < f->len && strchr("-0+ #", f->s[i])) {
            char ch = f->s[i++];
            if (ch == '-') left = 1;
            else if (ch == '0') zero = 1;
            else if (ch == '+') plus = 1;
            else if (ch == ' ') space = 1;
            else alt = 1;
        }
        int64_t width = 0, prec = -1;
        while (i < f->len && f->s[i] >= '0' && f->s[i] <= '9') width = width * 10 + (f->s[i++] - '0');
        if (i < f->len && f->s[i] == '.') {
            i++;
            prec = 0;
            while (i < f->len && f->s[i] >= '0' && f->s[i] <= '9') prec = prec * 10 + (f->s[i++] - '0');
        }
        if (width > 100000 || prec > 1000) { rc = jj_fail(c, AL_ERANGE, "format width too large"); break; }
        if (i >= f->len) { rc = jj_fail(c, AL_EFORMAT, "incomplete format"); break; }
        char type = f->s[i++];
        if (type == '%') {
            rc = jj_buf_putc(c, &b, '%');
            continue;
        }
        if (!have_val) {
            if (is_map) val = args;
            else {
                if (used >= nitems) { rc = jj_fail(c, AL_EFORMAT, "not enough arguments for format string"); break; }
                val = items[used++];
            }
        }
        char spec[32], tmp[512];
        switch (type) {
        case 's': case 'r': case 'a': {
            jbuf sb = {0};
            rc = type == 's' ? jj_to_str(c, &sb, val) : type == 'a' ? jj_ascii_repr(c, &sb, val) : jj_repr(c, &sb, val);
            if (!rc) {
                size_t n = sb.n, ncp = jj_u8_count(sb.p ? sb.p : "", sb.n);
                if (prec >= 0 && (size_t)prec < ncp) { /* truncate to prec codepoints */
                    size_t k = 0, cnt = 0;
                    while (k < n && cnt < (size_t)prec) {
                        uint32_t cp = 0;
                        k += jj_u8_dec(sb.p + k, n - k, &cp);
                        cnt++;
                    }
                    n = k;
                    ncp = cnt;
                }
                rc = fmt_pad(c, &b, sb.p ? sb.p : "", n, ncp, width, left, ' ');
            }
            c->mem -= sb.cap < c->mem ? sb.cap : c->mem;
            jj_buf_free(&sb);
            break;
        }
        case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': case 'c':
        case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
            double fv = 0;
            int64_t iv = 0;
            int want_i = strchr("diuxXoc", type) != NULL;
            if (type == 'c' && val.k == JV_STR) {
                rc = jj_buf_put(c, &b, jv_str(val)->s, jv_str(val)->len);
                break;
            }
            if ((rc = num_of(c, val, want_i, &fv, &iv))) break;
            int k = 0;
            spec[k++] = '%';
            if (left) spec[k++] = '-';
            if (zero) spec[k++] = '0';
            if (plus) spec[k++] = '+';
            if (space) spec[k++] = ' ';
            if (alt && type != 'o' && type != 'x' && type != 'X') spec[k++] = '#';
            spec[k++] = '*';
            if (prec >= 0 && !want_i) {
                spec[k++] = '.';
                spec[k++] = '*';
            }
            int n;
            if (type == 'c') {
                char e[4];
                size_t l = jj_u8_enc(e, (uint32_t)iv);
                rc = fmt_pad(c, &b, e, l, 1, width, left, ' ');
                break;
            } else if (want_i) {
                const char *conv = (type == 'x') ? "llx" : (type == 'X') ? "llX" : (type == 'o') ? "llo" : "lld";
                memcpy(spec + k, conv, 4);
                int64_t mag = iv < 0 ? -iv : iv;
                if (type == 'x' || type == 'X' || type == 'o') {
                    char digits[64];
                    snprintf(digits, sizeof digits, type == 'x' ? "%llx" : type == 'X' ? "%llX" : "%llo", (unsigned long long)mag);
                    char body[80];
                    snprintf(body, sizeof body, "%s%s%s", iv < 0 ? "-" : plus ? "+" : space ? " " : "",
                             alt ? (type == 'x' ? "0x" : type == 'X' ? "0X" : "0o") : "", digits);
                    n = snprintf(tmp, sizeof tmp, "%s", body);
                    rc = fmt_pad(c, &b, tmp, (size_t)n, (size_t)n, width, left, zero && !left ? '0' : ' ');
                    break;
                }
                n = snprintf(tmp, sizeof tmp, spec, (int)width, (long long)iv);
            } else {
                spec[k++] = type;
                spec[k] = 0;
                if (prec >= 0) n = snprintf(tmp, sizeof tmp, spec, (int)width, (int)prec, fv);
                else n = snprintf(tmp, sizeof tmp, spec, (int)width, fv);
            }
            if (n < 0 || (size_t)n >= sizeof tmp) { rc = jj_fail(c, AL_ERANGE, "formatted number too long"); break; }
            rc = jj_buf_put(c, &b, tmp, (size_t)n);
            break;
        }
        default:
            rc = jj_fail(c, AL_EFORMAT, "unsupported format character '%c' (0x%x)", type, (unsigned)(unsigned char)type);
        }
    }
    if (!rc && !is_map && used < nitems && args.k == JV_TUPLE)
        rc = jj_fail(c, AL_EFORMAT, "not all arguments converted during string formatting");
    if (!rc && !maplike && args.k != JV_TUPLE && used == 0)
        rc = jj_fail(c, AL_EFORMAT, "not all arguments converted during string formatting");
    if (rc) {
        c->mem -= b.cap < c->mem ? b.cap : c->mem;
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

/* str.format with {}, {0}, {name}, .attr / [key] chains, !r / !s and an
 * optional spec limited to [[fill]align][width][.precision][type] */
static int str_format(jctx *c, const jstr *f, jargs *a, jv *out) {
    jbuf b = {0};
    int rc = AL_OK, autoidx = 0;
    for (size_t i = 0; i < f->len && !rc;) {
        char ch = f->s[i];
        if (ch == '}' ) {
            if (i + 1 < f->len && f->s[i + 1] == '}') { rc = jj_buf_putc(c, &b, '}'); i += 2; continue; }
            rc = jj_fail(c, AL_EFORMAT, "Single '}' encountered in format string");
            break;
        }
        if (ch != '{') {
            rc = jj_buf_putc(c, &b, ch);
            i++;
            continue;
        }
        if (i + 1 < f->len && f->s[i + 1] == '{') { rc = jj_buf_putc(c, &b, '{'); i += 2; continue; }
        size_t j = i + 1;
        while (j < f->len && f->s[j] != '}') j++;
        if (j >= f->len) { rc = jj_fail(c, AL_EFORMAT, "Single '{' encountered in format string"); break; }
        const char *fld = f->s + i + 1;
        size_t fl = j - i - 1, k = 0;
        while (k < fl && fld[k] != '.' && fld[k] != '[' && fld[k] != '!' && fld[k] != ':') k++;
        jv val = {0};
        if (k == 0) {
            if (autoidx >= a->npos) { rc = jj_fail(c, AL_EFORMAT, "Replacement index %d out of range for positional args tuple", autoidx); break; }
            val = a->pos[autoidx++];
            jj_incref(val);
        } else if (fld[0] >= '0' && fld[0] <= '9') {
            int idx = atoi(fld);
            if (idx >= a->npos) { rc = jj_fail(c, AL_EFORMAT, "Replacement index %d out of range for positional args tuple", idx); break; }
            val = a->pos[idx];
            jj_incref(val);
        } else {
            int found = 0;
            for (int q = 0; q < a->nkw; q++)
                if (a->kn[q]->len == k && memcmp(a->kn[q]->s, fld, k) == 0) {
                    val = a->kv[q];
                    found = 1;
                }
            if (!found) { rc = jj_fail(c, AL_EFORMAT, "'%.*s'", (int)k, fld); break; }
            jj_incref(val);
        }
        while (k < fl && (fld[k] == '.' || fld[k] == '[') && !rc) {
            jv nv = {0};
            if (fld[k] == '.') {
                size_t e = k + 1;
                while (e < fl && fld[e] != '.' && fld[e] != '[' && fld[e] != '!' && fld[e] != ':') e++;
                rc = jj_getattr(c, val, fld + k + 1, e - k - 1, &nv);
                k = e;
            } else {
                size_t e = k + 1;
                while (e < fl && fld[e] != ']') e++;
                jv key = {0};
                int dig = e > k + 1;
                for (size_t q = k + 1; q < e; q++)
                    if (fld[q] < '0' || fld[q] > '9') dig = 0;
                if (dig) { key = jv_int(atoll(fld + k + 1)); rc = AL_OK; }
                else rc = jj_str_new(c, fld + k + 1, e - k - 1, &key);
                if (!rc) rc = jj_getitem(c, val, key, &nv);
                jj_decref(c, key);
                k = e + 1;
            }
            jj_decref(c, val);
            val = rc ? jv_undef() : nv;
        }
        if (rc) break;
        char conv = 0;
        if (k < fl && fld[k] == '!') {
            conv = k + 1 < fl ? fld[k + 1] : 0;
            k += 2;
        }
        const char *spec = "";
        size_t sl = 0;
        if (k < fl && fld[k] == ':') {
            spec = fld + k + 1;
            sl = fl - k - 1;
        }
        jbuf vb = {0};
        if (conv == 'r') rc = jj_repr(c, &vb, val);
        else if (conv == 'a') rc = jj_ascii_repr(c, &vb, val);
        else if (sl && jv_isnum(val) && !conv) {
            /* numeric spec: [width][.prec][type] */
            char cspec[32], tmp[512];
            size_t q = 0;
            char align = 0;
            if (q < sl && (spec[q] == '<' || spec[q] == '>' || spec[q] == '^')) align = spec[q++];
            int zero = q < sl && spec[q] == '0';
            int width = 0, prec = -1;
            while (q < sl && spec[q] >= '0' && spec[q] <= '9') width = width * 10 + (spec[q++] - '0');
            if (q < sl && spec[q] == '.') {
                prec = 0;
                q++;
                while (q < sl && spec[q] >= '0' && spec[q] <= '9') prec = prec * 10 + (spec[q++] - '0');
            }
            char type = q < sl ? spec[q++] : 0;
            if (q != sl || width > 100000 || prec > 1000 || align == '^') rc = jj_fail(c, AL_EUNSUP, "format spec '%.*s' is not supported", (int)sl, spec);
            else if (type == 'd' || (!type && val.k != JV_FLOAT)) {
                if (val.k == JV_FLOAT) rc = jj_fail(c, AL_EFORMAT, "Unknown format code 'd' for object of type 'float'");
                else {
                    snprintf(cspec, sizeof cspec, "%%%s%s*lld", align == '<' ? "-" : "", zero ? "0" : "");
                    int n = snprintf(tmp, sizeof tmp, cspec, width, (long long)val.u.i);
                    rc = jj_buf_put(c, &vb, tmp, (size_t)n);
                }
            } else if (type == 'f' || type == 'e' || type == 'g' || type == 'F' || type == 'E' || type == 'G') {
                double fv = val.k == JV_FLOAT ? val.u.f : (double)val.u.i;
                snprintf(cspec, sizeof cspec, "%%%s%s*.*%c", align == '<' ? "-" : "", zero ? "0" : "", type);
                int n = snprintf(tmp, sizeof tmp, cspec, width, prec < 0 ? 6 : prec, fv);
                rc = jj_buf_put(c, &vb, tmp, (size_t)n);
            } else {
                rc = jj_fail(c, AL_EUNSUP, "format spec '%.*s' is not supported", (int)sl, spec);
            }
        } else {
            rc = jj_to_str(c, &vb, val);
            if (!rc && sl) {
                size_t q = 0;
                char fill = ' ', align = '<';
                if (sl >= 2 && (spec[1] == '<' || spec[1] == '>' || spec[1] == '^')) { fill = spec[0]; align = spec[1]; q = 2; }
                else if (spec[0] == '<' || spec[0] == '>' || spec[0] == '^') { align = spec[0]; q = 1; }
                int64_t width = 0;
                while (q < sl && spec[q] >= '0' && spec[q] <= '9') width = width * 10 + (spec[q++] - '0');
                if (q < sl && spec[q] == 's') q++;
                if (q != sl || width > 100000) rc = jj_fail(c, AL_EUNSUP, "format spec '%.*s' is not supported", (int)sl, spec);
                else {
                    size_t ncp = jj_u8_count(vb.p ? vb.p : "", vb.n);
                    int64_t marg = width > (int64_t)ncp ? width - (int64_t)ncp : 0, lpad = align == '<' ? 0 : align == '>' ? marg : marg / 2;
                    for (int64_t z = 0; z < lpad && !rc; z++) rc = jj_buf_putc(c, &b, fill);
                    if (!rc) rc = jj_buf_put(c, &b, vb.p ? vb.p : "", vb.n);
                    for (int64_t z = 0; z < marg - lpad && !rc; z++) rc = jj_buf_putc(c, &b, fill);
                    vb.n = 0;
                }
            }
        }
        if (!rc) rc = jj_buf_put(c, &b, vb.p ? vb.p : "", vb.n);
        c->mem -= vb.cap < c->mem ? vb.cap : c->mem;
        jj_buf_free(&vb);
        jj_decref(c, val);
        i = j + 1;
    }
    if (rc) {
        c->mem -= b.cap < c->mem ? b.cap : c->mem;
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

/* ---------------------------------------------------------------- methods */
static int views(jctx *c, jmap *m, int sub, jv *out) {
    int rc = jj_seq_new(c, JV_ITER, m->n, out);
    if (rc) return rc;
    jv_seq(*out)->sub = sub;
    for (size_t i = 0; i < m->n && !rc; i++) {
        if (sub == JI_KEYS) rc = push_copy(c, *out, m->key[i]);
        else if (sub == JI_VALUES) rc = push_copy(c, *out, m->val[i]);
        else {
            jv t = {0};
            if (!(rc = jj_seq_new(c, JV_TUPLE, 2, &t))) {
                if (!(rc = push_copy(c, t, m->key[i])) && !(rc = push_copy(c, t, m->val[i])))
                    rc = jj_seq_push(c, jv_seq(*out), t);
                else jj_decref(c, t);
            }
        }
    }
    if (rc) jj_decref(c, *out);
    return rc;
}

static int str_method(jctx *c, int m, const jstr *s, jargs *a, jv *out) {
    jv sv = {0};
    sv.k = JV_STR;
    sv.u.o = (jo *)&s->h;
    const char *fn = STR_ATTRS[m];
    jv p[4];
    int rc;
    switch (m) {
    case S_STRIP: case S_LSTRIP: case S_RSTRIP:
        if ((rc = no_kwargs(c, fn, a))) return rc;
        if (a->npos > 1) return jj_fail(c, AL_EFORMAT, "%s expected at most 1 argument, got %d", fn, a->npos);
        return strip_value(c, s, a->npos ? a->pos[0] : (jv){.k = JV_MISSING}, m != S_RSTRIP, m != S_LSTRIP, out);
    case S_SPLIT: case S_RSPLIT: {
        static const char *const names[] = {"sep", "maxsplit"};
        if ((rc = bind(c, fn, a, names, 2, p))) return rc;
        int64_t maxs = -1;
        if (!missing(p[1]) && (rc = want_int(c, p[1], &maxs))) return rc;
        return split_impl(c, s, p[0], maxs, m == S_RSPLIT, out);
    }
    case S_SPLITLINES: {
        static const char *const names[] = {"keepends"};
        if ((rc = bind(c, fn, a, names, 1, p))) return rc;
        return splitlines_impl(c, s, !missing(p[0]) && truthy(c, p[0]), out);
    }
    case S_STARTSWITH: case S_ENDSWITH: {
        if ((rc = no_kwargs(c, fn, a))) return rc;
        if (a->npos < 1 || a->npos > 3) return jj_fail(c, AL_EFORMAT, "%s takes 1 to 3 arguments", fn);
        size_t from = 0, to = 0;
        if ((rc = sub_range(c, s, a->npos > 1 ? a->pos[1] : (jv){.k = JV_MISSING}, a->npos > 2 ? a->pos[2] : (jv){.k = JV_MISSING}, &from, &to)))
            return rc;
        jv pre = a->pos[0];
        jv *cands = &pre;
        size_t nc = 1;
        if (pre.k == JV_TUPLE) {
            cands = jv_seq(pre)->v;
            nc = jv_seq(pre)->n;
        }
        int hit = 0;
        for (size_t i = 0; i < nc && !hit; i++) {
            if (cands[i].k != JV_STR)
                return jj_fail(c, AL_EFORMAT, "%s first arg must be str or a tuple of str, not %s", fn, jj_type_name(cands[i]));
            const jstr *x = jv_str(cands[i]);
            if (from > s->len || to < from || to - from < x->len) continue;
            hit = m == S_STARTSWITH ? memcmp(s->s + from, x->s, x->len) == 0 : memcmp(s->s + to - x->len, x->s, x->len) == 0;
        }
        *out = jv_bool(hit);
        return AL_OK;
    }
    case S_UPPER: case S_LOWER: case S_TITLE: case S_CAPITALIZE: case S_SWAPCASE: case S_CASEFOLD:
        if (a->npos || a->nkw) return jj_fail(c, AL_EFORMAT, "%s() takes no arguments", fn);
        return map_case(c, s->s, s->len,
                        m == S_UPPER ? CASE_UPPER : (m == S_LOWER || m == S_CASEFOLD) ? CASE_LOWER : m == S_TITLE ? CASE_TITLE
                        : m == S_CAPITALIZE ? CASE_CAPITALIZE : CASE_SWAP, out);
    case S_REPLACE: {
        static const char *const names[] = {"old", "new", "count"};
        if ((rc = bind(c, fn, a, names, 3, p))) return rc;
        if (missing(p[0]) || missing(p[1])) return jj_fail(c, AL_EFORMAT, "replace expected at least 2 arguments");
        if ((rc = want_str(c, p[0], "replace() argument 1")) || (rc = want_str(c, p[1], "replace() argument 2"))) return rc;
        int64_t cnt = -1;
        if (!missing(p[2]) && (rc = want_int(c, p[2], &cnt))) return rc;
        return replace_impl(c, s, jv_str(p[0]), jv_str(p[1]), cnt, out);
    }
    case S_FIND: case S_RFIND: case S_INDEX: case S_RINDEX: case S_COUNT: {
        if ((rc = no_kwargs(c, fn, a))) return rc;
        if (a->npos < 1 || a->npos > 3) return jj_fail(c, AL_EFORMAT, "%s takes 1 to 3 arguments", fn);
        if ((rc = want_str(c, a->pos[0], "must be str,"))) return rc;
        size_t from = 0, to = 0;
        if ((rc = sub_range(c, s, a->npos > 1 ? a->pos[1] : (jv){.k = JV_MISSING}, a->npos > 2 ? a->pos[2] : (jv){.k = JV_MISSING}, &from, &to)))
            return rc;
        const jstr *x = jv_str(a->pos[0]);
        if (m == S_COUNT) {
            int64_t cnt = 0;
            if (from > s->len) { *out = jv_int(0); return AL_OK; }
            if (x->len == 0) {
                cnt = (int64_t)jj_u8_count(s->s + from, to - from) + 1;
            } else {
                size_t i = from;
                ptrdiff_t f;
                while ((f = find_sub(s->s, i, to, x->s, x->len, 0)) >= 0) {
                    cnt++;
                    i = (size_t)f + x->len;
                }
            }
            *out = jv_int(cnt);
            return AL_OK;
        }
        ptrdiff_t f = from > s->len ? -1 : find_sub(s->s, from, to, x->s, x->len, m == S_RFIND || m == S_RINDEX);
        if (f < 0 && (m == S_INDEX || m == S_RINDEX)) return jj_fail(c, AL_EFORMAT, "substring not found");
        *out = jv_int(f < 0 ? -1 : (int64_t)cp_index_of(s->s, (size_t)f));
        return AL_OK;
    }
    case S_JOIN: {
        if ((rc = no_kwargs(c, fn, a))) return rc;
        if (a->npos != 1) return jj_fail(c, AL_EFORMAT, "str.join() takes exactly one argument (%d given)", a->npos);
        jv items = {0};
        if ((rc = jj_iter_list(c, a->pos[0], &items))) return rc;
        jbuf b = {0};
        jseq *q = jv_seq(items);
        for (size_t i = 0; i < q->n && !rc; i++) {
            if (q->v[i].k != JV_STR) {
                rc = jj_fail(c, AL_EFORMAT, "sequence item %zu: expected str instance, %s found", i, jj_type_name(q->v[i]));
                break;
            }
            if (i) rc = jj_buf_put(c, &b, s->s, s->len);
            if (!rc) rc = jj_buf_put(c, &b, jv_str(q->v[i])->s, jv_str(q->v[i])->len);
        }
        jj_decref(c, items);
        if (rc) {
            jj_buf_free(&b);
            return rc;
        }
        return new_str(c, &b, out);
    }
    case S_FORMAT: return str_format(c, s, a, out);
    case S_ISALNUM: case S_ISALPHA: case S_ISASCII: case S_ISDECIMAL: case S_ISDIGIT: case S_ISNUMERIC:
    case S_ISSPACE: case S_ISUPPER: case S_ISLOWER: case S_ISTITLE: case S_ISIDENTIFIER: case S_ISPRINTABLE: {
        if (a->npos || a->nkw) return jj_fail(c, AL_EFORMAT, "%s() takes no arguments", fn);
        int ok = s->len > 0 || m == S_ISASCII || m == S_ISPRINTABLE, cased = 0, prev_cased = 0, title_ok = 1;
        for (size_t i = 0; i < s->len && ok;) {
            uint32_t cp = 0;
            size_t k = jj_u8_dec(s->s + i, s->len - i, &cp);
            switch (m) {
            case S_ISALNUM: ok = jj_ualpha(cp) || jj_udigit(cp); break;
            case S_ISALPHA: ok = jj_ualpha(cp); break;
            case S_ISASCII: ok = cp < 0x80; break;
            case S_ISDECIMAL: case S_ISDIGIT: case S_ISNUMERIC: ok = jj_udigit(cp); break;
            case S_ISSPACE: ok = jj_uspace(cp); break;
            case S_ISPRINTABLE: ok = jj_uprintable(cp) || cp == ' '; break;
            case S_ISIDENTIFIER: ok = jj_ualpha(cp) || cp == '_' || (i > 0 && jj_udigit(cp)); break;
            case S_ISUPPER: if (jj_uislower(cp) && !jj_uisupper(cp)) ok = 0; if (jj_uisupper(cp)) cased = 1; break;
            case S_ISLOWER: if (jj_uisupper(cp)) ok = 0; if (jj_uislower(cp)) cased = 1; break;
            case S_ISTITLE:
                if (jj_uisupper(cp)) { if (prev_cased) title_ok = 0; prev_cased = 1; cased = 1; }
                else if (jj_uislower(cp)) { if (!prev_cased) title_ok = 0; prev_cased = 1; cased = 1; }
                else prev_cased = 0;
                break;
            }
            i += k;
        }
        if (m == S_ISUPPER || m == S_ISLOWER) ok = ok && cased;
        if (m == S_ISTITLE) ok = ok && cased && title_ok;
        *out = jv_bool(ok);
        return AL_OK;
    }
    case S_CENTER: case S_LJUST: case S_RJUST: case S_ZFILL: {
        if ((rc = no_kwargs(c, fn, a))) return rc;
        if (a->npos < 1 || a->npos > (m == S_ZFILL ? 1 : 2)) return jj_fail(c, AL_EFORMAT, "%s() takes 1 or 2 arguments", fn);
        int64_t w = 0;
        if ((rc = want_int(c, a->pos[0], &w))) return rc;
        if (m == S_ZFILL) {
            if (w <= (int64_t)s->ncp) {
                jj_incref(sv);
                *out = sv;
                return AL_OK;
            }
            if (w > (int64_t)JJ_OUT_MAX) return jj_fail(c, AL_ERANGE, "string too long");
            jbuf b = {0};
            size_t sign = (s->len && (s->s[0] == '+' || s->s[0] == '-')) ? 1 : 0;
            rc = jj_buf_put(c, &b, s->s, sign);
            for (int64_t i = 0; i < w - (int64_t)s->ncp && !rc; i++) rc = jj_buf_putc(c, &b, '0');
            if (!rc) rc = jj_buf_put(c, &b, s->s + sign, s->len - sign);
            if (rc) {
                jj_buf_free(&b);
                return rc;
            }
            return new_str(c, &b, out);
        }
        return pad_impl(c, s, w, a->npos > 1 ? a->pos[1] : (jv){.k = JV_MISSING}, m == S_CENTER ? 0 : m == S_LJUST ? 1 : 2, out);
    }
    case S_REMOVEPREFIX: case S_REMOVESUFFIX: {
        if ((rc = no_kwargs(c, fn, a))) return rc;
        if (a->npos != 1) return jj_fail(c, AL_EFORMAT, "%s() takes exactly one argument", fn);
        if ((rc = want_str(c, a->pos[0], fn))) return rc;
        const jstr *x = jv_str(a->pos[0]);
        if (x->len <= s->len) {
            if (m == S_REMOVEPREFIX && memcmp(s->s, x->s, x->len) == 0) return jj_str_new(c, s->s + x->len, s->len - x->len, out);
            if (m == S_REMOVESUFFIX && x->len && memcmp(s->s + s->len - x->len, x->s, x->len) == 0)
                return jj_str_new(c, s->s, s->len - x->len, out);
        }
        jj_incref(sv);
        *out = sv;
        return AL_OK;
    }
    case S_PARTITION: case S_RPARTITION: {
        if ((rc = no_kwargs(c, fn, a))) return rc;
        if (a->npos != 1) return jj_fail(c, AL_EFORMAT, "%s() takes exactly one argument", fn);
        if ((rc = want_str(c, a->pos[0], fn))) return rc;
        const jstr *x = jv_str(a->pos[0]);
        if (!x->len) return jj_fail(c, AL_EFORMAT, "empty separator");
        ptrdiff_t f = find_sub(s->s, 0, s->len, x->s, x->len, m == S_RPARTITION);
        jv parts[3];
        if (f < 0) {
            if (m == S_PARTITION) {
                jj_incref(sv);
                parts[0] = sv;
                rc = jj_str_new(c, "", 0, &parts[1]);
                if (!rc) rc = jj_str_new(c, "", 0, &parts[2]);
            } else {
                rc = jj_str_new(c, "", 0, &parts[0]);
                if (!rc) rc = jj_str_new(c, "", 0, &parts[1]);
                jj_incref(sv);
                parts[2] = sv;
            }
        } else {
            rc = jj_str_new(c, s->s, (size_t)f, &parts[0]);
            if (!rc) {
                jj_incref(a->pos[0]);
                parts[1] = a->pos[0];
                rc = jj_str_new(c, s->s + f + x->len, s->len - (size_t)f - x->len, &parts[2]);
            }
        }
        if (rc) return rc;
        if ((rc = jj_seq_new(c, JV_TUPLE, 3, out))) return rc;
        for (int i = 0; i < 3; i++) jj_seq_push(c, jv_seq(*out), parts[i]);
        return AL_OK;
    }
    default:
        return jj_fail(c, AL_EUNSUP, "str.%s() is not supported", fn);
    }
}

static int dict_method(jctx *c, int m, jv self, jargs *a, jv *out) {
    jmap *d = jv_map(self);
    int rc;
    switch (m) {
    case D_GET: {
        if ((rc = no_kwargs(c, "get", a))) return rc;
        if (a->npos < 1 || a->npos > 2) return jj_fail(c, AL_EFORMAT, "get expected 1 to 2 arguments, got %d", a->npos);
        if (!jj_hashable(a->pos[0])) return jj_fail(c, AL_EFORMAT, "unhashable type: '%s'", jj_type_name(a->pos[0]));
        if (jj_map_get(d, a->pos[0], out)) {
            jj_incref(*out);
            return AL_OK;
        }
        *out = a->npos > 1 ? a->pos[1] : jv_none();
        jj_incref(*out);
        return AL_OK;
    }
    case D_ITEMS: case D_KEYS: case D_VALUES:
        if (a->npos || a->nkw) return jj_fail(c, AL_EFORMAT, "%s() takes no arguments", DICT_ATTRS[m]);
        return views(c, d, m == D_ITEMS ? JI_ITEMS : m == D_KEYS ? JI_KEYS : JI_VALUES, out);
    case D_COPY: {
        if ((rc = jj_map_new(c, JV_DICT, out))) return rc;
        for (size_t i = 0; i < d->n && !rc; i++) {
            jj_incref(d->key[i]);
            jj_incref(d->val[i]);
            rc = jj_map_set(c, jv_map(*out), d->key[i], d->val[i]);
        }
        if (rc) jj_decref(c, *out);
        return rc;
    }
    default: return jj_fail(c, AL_EUNSUP, "dict.%s() is not supported", DICT_ATTRS[m]);
    }
}

static int list_method(jctx *c, int m, jv self, jargs *a, jv *out) {
    jseq *s = jv_seq(self);
    int rc;
    if ((rc = no_kwargs(c, LIST_ATTRS[m], a))) return rc;
    switch (m) {
    case L_COUNT: {
        if (a->npos != 1) return jj_fail(c, AL_EFORMAT, "count() takes exactly one argument (%d given)", a->npos);
        int64_t n = 0;
        for (size_t i = 0; i < s->n; i++) n += jj_eq(s->v[i], a->pos[0]);
        *out = jv_int(n);
        return AL_OK;
    }
    case L_INDEX: {
        if (a->npos < 1) return jj_fail(c, AL_EFORMAT, "index expected at least 1 argument, got 0");
        for (size_t i = 0; i < s->n; i++)
            if (jj_eq(s->v[i], a->pos[0])) {
                *out = jv_int((int64_t)i);
                return AL_OK;
            }
        return jj_fail(c, AL_EFORMAT, "%s.index(x): x not in %s", jj_type_name(self), jj_type_name(self));
    }
    case L_COPY: return jj_iter_list(c, self, out);
    default: return jj_fail(c, AL_EUNSUP, "list.%s() is not supported", LIST_ATTRS[m]);
    }
}

static int loop_method(jctx *c, int m, jv self, jargs *a, jv *out) {
    jloop *l = (jloop *)self.u.o;
    if (m == 0) { /* cycle */
        if (a->nkw) return jj_fail(c, AL_EFORMAT, "cycle() takes no keyword arguments");
        if (a->npos == 0) return jj_fail(c, AL_EFORMAT, "no items for cycling given");
        *out = a->pos[l->idx % (size_t)a->npos];
        jj_incref(*out);
        return AL_OK;
    }
    /* changed(*value): compares the argument tuple with the previous call's */
    jv t = {0};
    int rc = jj_seq_new(c, JV_TUPLE, (size_t)a->npos, &t);
    for (int i = 0; i < a->npos && !rc; i++) rc = push_copy(c, t, a->pos[i]);
    if (rc) return rc;
    if (l->have_changed && jj_eq(l->last_changed, t)) {
        jj_decref(c, t);
        *out = jv_bool(0);
        return AL_OK;
    }
    jj_decref(c, l->last_changed);
    l->last_changed = t;
    l->have_changed = 1;
    *out = jv_bool(1);
    return AL_OK;
}

/* ---------------------------------------------------------------- globals */
static int g_range(jctx *c, jargs *a, jv *out) {
    int rc;
    if ((rc = no_kwargs(c, "range", a))) return rc;
    if (a->npos < 1 || a->npos > 3) return jj_fail(c, AL_EFORMAT, "range expected 1 to 3 arguments, got %d", a->npos);
    int64_t v[3] = {0, 0, 1};
    for (int i = 0; i < a->npos; i++)
        if ((rc = want_int(c, a->pos[i], &v[i]))) return rc;
    int64_t start = 0, stop, stp = 1;
    if (a->npos == 1) stop = v[0];
    else {
        start = v[0];
        stop = v[1];
        if (a->npos == 3) stp = v[2];
    }
    if (stp == 0) return jj_fail(c, AL_EFORMAT, "range() arg 3 must not be zero");
    long double len = 0;
    if (stp > 0 && stop > start) len = ((long double)stop - start + stp - 1) / stp;
    if (stp < 0 && stop < start) len = ((long double)start - stop - stp - 1) / -stp;
    if (len > JJ_RANGE_MAX)
        return jj_fail(c, AL_ERANGE, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", JJ_RANGE_MAX);
    size_t n = (size_t)len;
    if ((rc = jj_seq_new(c, JV_LIST, n, out))) return rc;
    for (size_t i = 0; i < n; i++) jj_seq_push(c, jv_seq(*out), jv_int(start + (int64_t)i * stp));
    jseq *r = jv_seq(*out);
    r->is_range = 1;
    r->r_start = start;
    r->r_stop = stop;
    r->r_step = stp;
    return AL_OK;
}

static int dict_from(jctx *c, jargs *a, int kind, jv *out) {
    int rc = jj_map_new(c, kind, out);
    if (rc) return rc;
    if (a->npos > 1) rc = jj_fail(c, AL_EFORMAT, "dict expected at most 1 argument, got %d", a->npos);
    if (!rc && a->npos == 1) {
        jv src = a->pos[0];
        if (src.k == JV_DICT || src.k == JV_NS) {
            jmap *m = jv_map(src);
            for (size_t i = 0; i < m->n && !rc; i++) {
                jj_incref(m->key[i]);
                jj_incref(m->val[i]);
                rc = jj_map_set(c, jv_map(*out), m->key[i], m->val[i]);
            }
        } else {
            jv items = {0};
            if (!(rc = jj_iter_list(c, src, &items))) {
                jseq *s = jv_seq(items);
                for (size_t i = 0; i < s->n && !rc; i++) {
                    jv pair = {0};
                    if ((rc = jj_iter_list(c, s->v[i], &pair))) break;
                    if (jv_seq(pair)->n != 2) {
                        rc = jj_fail(c, AL_EFORMAT, "dictionary update sequence element #%zu has length %zu; 2 is required", i, jv_seq(pair)->n);
                    } else if (!jj_hashable(jv_seq(pair)->v[0])) {
                        rc = jj_fail(c, AL_EFORMAT, "unhashable type: '%s'", jj_type_name(jv_seq(pair)->v[0]));
                    } else {
                        jj_incref(jv_seq(pair)->v[0]);
                        jj_incref(jv_seq(pair)->v[1]);
                        rc = jj_map_set(c, jv_map(*out), jv_seq(pair)->v[0], jv_seq(pair)->v[1]);
                    }
                    jj_decref(c, pair);
                }
                jj_decref(c, items);
            }
        }
    }
    for (int k = 0; k < a->nkw && !rc; k++) {
        jv key = {0};
        if ((rc = jj_str_new(c, a->kn[k]->s, a->kn[k]->len, &key))) break;
        jj_incref(a->kv[k]);
        rc = jj_map_set(c, jv_map(*out), key, a->kv[k]);
    }
    if (rc) jj_decref(c, *out);
    return rc;
}

int jj_call_func(jctx *c, jfunc *f, jargs *a, jv *out) {
    int id = f->id, rc;
    if (id >= ID_LOOP) return loop_method(c, id - ID_LOOP, f->self, a, out);
    if (id >= ID_LIST) return list_method(c, id - ID_LIST, f->self, a, out);
    if (id >= ID_DICT) return dict_method(c, id - ID_DICT, f->self, a, out);
    if (id >= ID_STR) return str_method(c, id - ID_STR, jv_str(f->self), a, out);
    switch (id) {
    case G_RANGE: return g_range(c, a, out);
    case G_DICT: return dict_from(c, a, JV_DICT, out);
    case G_NAMESPACE: return dict_from(c, a, JV_NS, out);
    case G_RAISE: {
        if (a->npos < 1) return jj_fail(c, AL_EFORMAT, "raise_exception() missing 1 required positional argument: 'message'");
        jbuf b = {0};
        if ((rc = jj_to_str(c, &b, a->pos[0]))) {
            jj_buf_free(&b);
            return rc;
        }
        snprintf(c->err, AL_ERRLEN, "%s", b.p ? b.p : "");
        c->mem -= b.cap < c->mem ? b.cap : c->mem;
        jj_buf_free(&b);
        return AL_EINVAL;
    }
    case G_STRFTIME: {
        if (a->npos != 1 || a->pos[0].k != JV_STR) return jj_fail(c, AL_EFORMAT, "strftime_now() takes one string argument");
        time_t now = time(NULL);
        struct tm tmv;
        if (!localtime_r(&now, &tmv)) return jj_fail(c, AL_EINVAL, "localtime failed");
        char buf[512];
        size_t n = jv_str(a->pos[0])->len ? strftime(buf, sizeof buf, jv_str(a->pos[0])->s, &tmv) : 0;
        return jj_str_new(c, buf, n, out);
    }
    default: return jj_fail(c, AL_EUNSUP, "%s() is not supported", GLOBALS[id]);
    }
}

/* ---------------------------------------------------------------- tests */
static int run_test(jctx *c, int id, jv v, jargs *a, int *out) {
    jv arg = a->npos ? a->pos[0] : (a->nkw ? a->kv[0] : jv_undef());
    int r, rc;
    switch (id) {
    case T_DEFINED: *out = v.k != JV_UNDEF; return AL_OK;
    case T_UNDEFINED: *out = v.k == JV_UNDEF; return AL_OK;
    case T_NONE: *out = v.k == JV_NONE; return AL_OK;
    case T_BOOLEAN: *out = v.k == JV_BOOL; return AL_OK;
    case T_FALSE: *out = v.k == JV_BOOL && !v.u.i; return AL_OK;
    case T_TRUE: *out = v.k == JV_BOOL && v.u.i; return AL_OK;
    case T_INTEGER: *out = v.k == JV_INT; return AL_OK;
    case T_FLOAT: *out = v.k == JV_FLOAT; return AL_OK;
    case T_NUMBER: *out = jv_isnum(v); return AL_OK;
    case T_STRING: *out = v.k == JV_STR; return AL_OK;
    case T_MAPPING: *out = v.k == JV_DICT; return AL_OK;
    case T_ITERABLE:
        *out = v.k == JV_STR || v.k == JV_LIST || v.k == JV_TUPLE || v.k == JV_DICT || v.k == JV_ITER ||
               v.k == JV_UNDEF || v.k == JV_LOOP;
        return AL_OK;
    case T_SEQUENCE:
        *out = v.k == JV_STR || v.k == JV_LIST || v.k == JV_TUPLE || v.k == JV_DICT || v.k == JV_UNDEF;
        return AL_OK;
    case T_CALLABLE: *out = v.k == JV_FUNC || v.k == JV_MACRO || v.k == JV_UNDEF || v.k == JV_LOOP; return AL_OK;
    case T_ESCAPED: *out = 0; return AL_OK;
    case T_FILTER: *out = v.k == JV_STR && jj_filter_id(jv_str(v)->s, jv_str(v)->len) >= 0; return AL_OK;
    case T_TEST: *out = v.k == JV_STR && jj_test_id(jv_str(v)->s, jv_str(v)->len) >= 0; return AL_OK;
    case T_SAMEAS:
        /* Python identity: singletons and small ints are shared, every Undefined is new */
        if (v.k != arg.k || v.k == JV_UNDEF) *out = 0;
        else if (v.k == JV_NONE) *out = 1;
        else if (v.k == JV_BOOL) *out = v.u.i == arg.u.i;
        else if (v.k == JV_INT) *out = v.u.i == arg.u.i && v.u.i >= -5 && v.u.i <= 256;
        else if (v.k == JV_FLOAT) *out = 0;
        else *out = v.u.o == arg.u.o;
        return AL_OK;
    case T_LOWER: case T_UPPER: {
        jv s = {0};
        if ((rc = jj_stringify(c, v, &s))) return rc;
        jargs none = {0};
        jv res = {0};
        rc = str_method(c, id == T_LOWER ? S_ISLOWER : S_ISUPPER, jv_str(s), &none, &res);
        jj_decref(c, s);
        if (!rc) *out = (int)res.u.i;
        return rc;
    }
    case T_ODD: case T_EVEN: case T_DIVISIBLEBY: {
        jv m, zero = jv_int(0);
        jv d = id == T_DIVISIBLEBY ? arg : jv_int(2);
        if (v.k == JV_UNDEF) return jj_undef_error(c, v);
        if (!jv_isnum(v) || !jv_isnum(d)) return jj_fail(c, AL_EFORMAT, "unsupported operand type(s) for %%: '%s' and '%s'", jj_type_name(v), jj_type_name(d));
        if ((d.k == JV_FLOAT ? d.u.f == 0 : d.u.i == 0)) return jj_fail(c, AL_EFORMAT, "integer division or modulo by zero");
        if (v.k == JV_FLOAT || d.k == JV_FLOAT) {
            double x = v.k == JV_FLOAT ? v.u.f : (double)v.u.i, y = d.k == JV_FLOAT ? d.u.f : (double)d.u.i;
            double r2 = fmod(x, y);
            if (r2 != 0 && ((y < 0) != (r2 < 0))) r2 += y;
            m = jv_float(r2);
        } else {
            int64_t r2 = d.u.i == -1 ? 0 : v.u.i % d.u.i;
            if (r2 != 0 && ((r2 < 0) != (d.u.i < 0))) r2 += d.u.i;
            m = jv_int(r2);
        }
        if (id == T_ODD) *out = jj_eq(m, jv_int(1));
        else *out = jj_eq(m, zero);
        return AL_OK;
    }
    case T_IN: return jj_fail(c, AL_EUNSUP, "the 'in' test is not supported; use the 'in' operator");
    case T_EQ1: case T_EQ2: case T_EQ3: *out = jj_eq(v, arg); return AL_OK;
    case T_NE1: case T_NE2: *out = !jj_eq(v, arg); return AL_OK;
    default: /* ordering tests */
        if ((rc = jj_cmp(c, v, arg, &r))) return rc;
        if (r == 2) *out = 0;
        else if (id == T_GT1 || id == T_GT2 || id == T_GT3) *out = r > 0;
        else if (id == T_GE1 || id == T_GE2) *out = r >= 0;
        else if (id == T_LT1 || id == T_LT2 || id == T_LT3) *out = r < 0;
        else *out = r <= 0;
        return AL_OK;
    }
}

int jj_call_test(jctx *c, int id, const char *name, jv in, jargs *a, int *out) {
    (void)name;
    if (id == T_IN) {
        if (a->npos < 1) return jj_fail(c, AL_EFORMAT, "test 'in' needs an argument");
        jv seq = a->pos[0];
        /* value in seq */
        if (seq.k == JV_STR) {
            if (in.k != JV_STR) return jj_fail(c, AL_EFORMAT, "'in <string>' requires string as left operand, not %s", jj_type_name(in));
            *out = find_sub(jv_str(seq)->s, 0, jv_str(seq)->len, jv_str(in)->s, jv_str(in)->len, 0) >= 0;
            return AL_OK;
        }
        if (seq.k == JV_DICT) {
            jv d = {0};
            *out = jj_hashable(in) && jj_map_get(jv_map(seq), in, &d);
            return AL_OK;
        }
        jv items = {0};
        int rc = jj_iter_list(c, seq, &items);
        if (rc) return rc;
        *out = 0;
        for (size_t i = 0; i < jv_seq(items)->n && !*out; i++) *out = jj_eq(jv_seq(items)->v[i], in);
        jj_decref(c, items);
        return AL_OK;
    }
    return run_test(c, id, in, a, out);
}

/* ---------------------------------------------------------------- filters */
static int gen_from_list(jctx *c, jv list, jv *out) {
    (void)c;
    list.k = JV_ITER;
    jv_seq(list)->sub = JI_GEN;
    *out = list;
    return AL_OK;
}

static int length_of(jctx *c, jv v, int64_t *n) {
    switch (v.k) {
    case JV_UNDEF: *n = 0; return AL_OK;
    case JV_STR: *n = (int64_t)jv_str(v)->ncp; return AL_OK;
    case JV_LIST: case JV_TUPLE: *n = (int64_t)jv_seq(v)->n; return AL_OK;
    case JV_DICT: *n = (int64_t)jv_map(v)->n; return AL_OK;
    case JV_ITER:
        if (jv_seq(v)->sub != JI_GEN) {
            *n = (int64_t)jv_seq(v)->n;
            return AL_OK;
        }
        break;
    default: break;
    }
    return jj_fail(c, AL_EFORMAT, "object of type '%s' has no len()", jj_type_name(v));
}

/* select / reject / selectattr / rejectattr */
static int select_impl(jctx *c, jv in, jargs *a, int lookup_attr, int keep, jv *out) {
    int rc;
    int off = 0;
    jv attr = jv_undef();
    if (!truthy(c, in)) { /* jinja2: "if value:" before preparing the test */
        jv empty = {0};
        if ((rc = jj_seq_new(c, JV_LIST, 0, &empty))) return rc;
        return gen_from_list(c, empty, out);
    }
    if (lookup_attr) {
        if (a->npos < 1) return jj_fail(c, AL_EFORMAT, "Missing parameter for attribute name");
        attr = a->pos[0];
        off = 1;
    }
    int tid = -1;
    if (a->npos > off) {
        jv tn = a->pos[off];
        if (tn.k != JV_STR || (tid = jj_test_id(jv_str(tn)->s, jv_str(tn)->len)) < 0) {
            jv s = {0};
            if ((rc = jj_stringify(c, tn, &s))) return rc;
            rc = jj_fail(c, AL_EFORMAT, "No test named '%s'.", jv_str(s)->s);
            jj_decref(c, s);
            return rc;
        }
    }
    jargs ta = {a->pos + off + 1, a->npos > off + 1 ? a->npos - off - 1 : 0, a->kn, a->kv, a->nkw};
    jv items = {0}, res = {0};
    if ((rc = jj_seq_new(c, JV_LIST, 0, &res))) return rc;
    if ((rc = jj_iter_list(c, in, &items))) {
        jj_decref(c, res);
        return rc;
    }
    jseq *s = jv_seq(items);
    for (size_t i = 0; i < s->n && !rc; i++) {
        if (++c->steps > JJ_STEPS_MAX) { rc = jj_fail(c, AL_ERANGE, "template runs for too many steps"); break; }
        jv x = {0};
        if (lookup_attr) rc = attr_get(c, s->v[i], attr, &x);
        else {
            x = s->v[i];
            jj_incref(x);
        }
        if (rc) break;
        int t;
        if (tid >= 0) rc = jj_call_test(c, tid, TESTS[tid], x, &ta, &t);
        else t = truthy(c, x);
        jj_decref(c, x);
        if (!rc && (t != 0) == keep) rc = push_copy(c, res, s->v[i]);
    }
    jj_decref(c, items);
    if (rc) {
        jj_decref(c, res);
        return rc;
    }
    return gen_from_list(c, res, out);
}

static int map_impl(jctx *c, jv in, jargs *a, jv *out) {
    int rc;
    jv attr = jv_undef(), def = jv_none();
    int fid = -1, use_attr = 0;
    jargs fa = {0};
    if (!truthy(c, in)) { /* jinja2: "if value:" before preparing the function */
        jv empty = {0};
        if ((rc = jj_seq_new(c, JV_LIST, 0, &empty))) return rc;
        return gen_from_list(c, empty, out);
    }
    if (a->npos == 0) {
        for (int k = 0; k < a->nkw; k++) {
            const jstr *n = a->kn[k];
            if (n->len == 9 && !memcmp(n->s, "attribute", 9)) { attr = a->kv[k]; use_attr = 1; }
            else if (n->len == 7 && !memcmp(n->s, "default", 7)) def = a->kv[k];
            else return jj_fail(c, AL_EFORMAT, "Unexpected keyword argument '%s'", n->s);
        }
        if (!use_attr) return jj_fail(c, AL_EFORMAT, "map requires a filter argument");
    } else {
        jv fn = a->pos[0];
        if (fn.k != JV_STR || (fid = jj_filter_id(jv_str(fn)->s, jv_str(fn)->len)) < 0) {
            jv s = {0};
            if ((rc = jj_stringify(c, fn, &s))) return rc;
            rc = jj_fail(c, AL_EFORMAT, "No filter named '%s'.", jv_str(s)->s);
            jj_decref(c, s);
            return rc;
        }
        fa.pos = a->pos + 1;
        fa.npos = a->npos - 1;
        fa.kn = a->kn;
        fa.kv = a->kv;
        fa.nkw = a->nkw;
    }
    jv items = {0}, res = {0};
    if ((rc = jj_seq_new(c, JV_LIST, 0, &res))) return rc;
    if ((rc = jj_iter_list(c, in, &items))) {
        jj_decref(c, res);
        return rc;
    }
    jseq *s = jv_seq(items);
    for (size_t i = 0; i < s->n && !rc; i++) {
        if (++c->steps > JJ_STEPS_MAX) { rc = jj_fail(c, AL_ERANGE, "template runs for too many steps"); break; }
        jv x = {0};
        if (use_attr) {
            rc = attr_get(c, s->v[i], attr, &x);
            if (!rc && x.k == JV_UNDEF && def.k != JV_NONE) {
                jj_decref(c, x);
                x = def;
                jj_incref(x);
            }
        } else {
            rc = jj_call_filter(c, fid, FILTERS[fid], s->v[i], &fa, &x);
        }
        if (!rc) rc = jj_seq_push(c, jv_seq(res), x);
    }
    jj_decref(c, items);
    if (rc) {
        jj_decref(c, res);
        return rc;
    }
    return gen_from_list(c, res, out);
}

static int minmax_impl(jctx *c, jv in, jargs *a, int want_max, const char *fn, jv *out) {
    static const char *const names[] = {"case_sensitive", "attribute"};
    jv p[2];
    int rc;
    if ((rc = bind(c, fn, a, names, 2, p))) return rc;
    jv items = {0};
    if ((rc = jj_iter_list(c, in, &items))) return rc;
    jseq *s = jv_seq(items);
    if (s->n == 0) {
        jj_decref(c, items);
        return jj_undef_hint(c, out, "No aggregated item, sequence was empty.");
    }
    jv *keys;
    if ((rc = make_keys(c, items, p[1], !missing(p[0]) && truthy(c, p[0]), &keys))) {
        jj_decref(c, items);
        return rc;
    }
    size_t best = 0;
    for (size_t i = 1; i < s->n && !rc; i++) {
        int lt;
        rc = want_max ? less(c, keys[best], keys[i], &lt) : less(c, keys[i], keys[best], &lt);
        if (!rc && lt) best = i;
    }
    if (!rc) {
        *out = s->v[best];
        jj_incref(*out);
    }
    free_keys(c, keys, s->n);
    jj_decref(c, items);
    return rc;
}

static int tojson_filter(jctx *c, jv in, jargs *a, jv *out) {
    static const char *const names[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
    jv p[4];
    int rc;
    if ((rc = bind(c, "tojson", a, names, 4, p))) return rc;
    jj_json_opts o = {0};
    o.ensure_ascii = !missing(p[0]) && truthy(c, p[0]);
    o.sort_keys = !missing(p[3]) && truthy(c, p[3]);
    char ind[64];
    if (!missing(p[1]) && p[1].k != JV_NONE) {
        o.has_indent = 1;
        if (p[1].k == JV_STR) {
            o.indent = jv_str(p[1])->s;
            o.indent_len = jv_str(p[1])->len;
        } else if (p[1].k == JV_INT || p[1].k == JV_BOOL) {
            int64_t n = p[1].u.i < 0 ? 0 : p[1].u.i;
            if (n > (int64_t)sizeof ind) return jj_fail(c, AL_ERANGE, "indent too large");
            memset(ind, ' ', (size_t)n);
            o.indent = ind;
            o.indent_len = (size_t)n;
        } else {
            return jj_fail(c, AL_EFORMAT, "can't multiply sequence by non-int of type '%s'", jj_type_name(p[1]));
        }
    }
    o.item_sep = o.has_indent ? "," : ", ";
    o.item_sep_len = o.has_indent ? 1 : 2;
    o.key_sep = ": ";
    o.key_sep_len = 2;
    if (!missing(p[2]) && p[2].k != JV_NONE) {
        jv sp = p[2];
        if ((sp.k != JV_TUPLE && sp.k != JV_LIST) || jv_seq(sp)->n != 2 || jv_seq(sp)->v[0].k != JV_STR ||
            jv_seq(sp)->v[1].k != JV_STR)
            return jj_fail(c, AL_EFORMAT, "separators must be a pair of strings");
        o.item_sep = jv_str(jv_seq(sp)->v[0])->s;
        o.item_sep_len = jv_str(jv_seq(sp)->v[0])->len;
        o.key_sep = jv_str(jv_seq(sp)->v[1])->s;
        o.key_sep_len = jv_str(jv_seq(sp)->v[1])->len;
    }
    jbuf b = {0};
    if ((rc = jj_tojson(c, &b, in, &o, 0))) {
        c->mem -= b.cap < c->mem ? b.cap : c->mem;
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

static int indent_filter(jctx *c, jv in, jargs *a, jv *out) {
    static const char *const names[] = {"width", "first", "blank"};
    jv p[3];
    int rc;
    if ((rc = bind(c, "indent", a, names, 3, p))) return rc;
    char sp[256];
    const char *ind = "    ";
    size_t il = 4;
    if (!missing(p[0])) {
        if (p[0].k == JV_STR) {
            ind = jv_str(p[0])->s;
            il = jv_str(p[0])->len;
        } else {
            int64_t w = 0;
            if ((rc = want_int(c, p[0], &w))) return rc;
            if (w < 0) w = 0;
            if (w > (int64_t)sizeof sp) return jj_fail(c, AL_ERANGE, "indent too large");
            memset(sp, ' ', (size_t)w);
            ind = sp;
            il = (size_t)w;
        }
    }
    int first = !missing(p[1]) && truthy(c, p[1]), blank = !missing(p[2]) && truthy(c, p[2]);
    /* jinja2 does `s += "\n"` on the raw value: only strings survive */
    if (in.k == JV_UNDEF) return jj_undef_error(c, in);
    if (in.k != JV_STR) return jj_fail(c, AL_EFORMAT, "unsupported operand type(s) for +=: '%s' and 'str'", jj_type_name(in));
    jv s = in;
    jj_incref(s);
    jv withnl = {0}, lines = {0};
    rc = jj_str_cat(c, jv_str(s)->s, jv_str(s)->len, "\n", 1, &withnl);
    jj_decref(c, s);
    if (rc) return rc;
    rc = splitlines_impl(c, jv_str(withnl), 0, &lines);
    jj_decref(c, withnl);
    if (rc) return rc;
    jseq *l = jv_seq(lines);
    jbuf b = {0};
    if (first) rc = jj_buf_put(c, &b, ind, il);
    for (size_t i = 0; i < l->n && !rc; i++) {
        const jstr *x = jv_str(l->v[i]);
        if (i) {
            rc = jj_buf_putc(c, &b, '\n');
            if (!rc && (blank || x->len)) rc = jj_buf_put(c, &b, ind, il);
        }
        if (!rc) rc = jj_buf_put(c, &b, x->s, x->len);
    }
    jj_decref(c, lines);
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

static int jinja_title(jctx *c, const jstr *s, jv *out) {
    /* re.split(r"([-\s({\[<]+)") then item[0].upper() + item[1:].lower() */
    jbuf b = {0};
    int rc = AL_OK, at_start = 1;
    for (size_t i = 0; i < s->len && !rc;) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(s->s + i, s->len - i, &cp);
        int sep = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || jj_uspace(cp);
        if (sep) {
            rc = put_cp(c, &b, cp);
            at_start = 1;
        } else {
            rc = at_start ? put_upper(c, &b, cp) : put_cp(c, &b, jj_ulower(cp));
            at_start = 0;
        }
        i += k;
    }
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

static int escape_filter(jctx *c, jv in, jv *out) {
    jv s = {0};
    int rc = jj_stringify(c, in, &s);
    if (rc) return rc;
    jbuf b = {0};
    const jstr *x = jv_str(s);
    for (size_t i = 0; i < x->len && !rc; i++) {
        switch (x->s[i]) {
        case '&': rc = jj_buf_put(c, &b, "&amp;", 5); break;
        case '<': rc = jj_buf_put(c, &b, "&lt;", 4); break;
        case '>': rc = jj_buf_put(c, &b, "&gt;", 4); break;
        case '"': rc = jj_buf_put(c, &b, "&#34;", 5); break;
        case '\'': rc = jj_buf_put(c, &b, "&#39;", 5); break;
        default: rc = jj_buf_putc(c, &b, x->s[i]);
        }
    }
    jj_decref(c, s);
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return new_str(c, &b, out);
}

static int round_filter(jctx *c, jv in, jargs *a, jv *out) {
    static const char *const names[] = {"precision", "method"};
    jv p[2];
    int rc;
    if ((rc = bind(c, "round", a, names, 2, p))) return rc;
    int64_t prec = 0;
    if (!missing(p[0]) && (rc = want_int(c, p[0], &prec))) return rc;
    const char *method = "common";
    if (!missing(p[1])) {
        if (p[1].k != JV_STR) return jj_fail(c, AL_EFORMAT, "method must be common, ceil or floor");
        method = jv_str(p[1])->s;
    }
    if (strcmp(method, "common") && strcmp(method, "ceil") && strcmp(method, "floor"))
        return jj_fail(c, AL_EFORMAT, "method must be common, ceil or floor");
    if (!jv_isnum(in)) {
        if (in.k == JV_UNDEF) return jj_undef_error(c, in);
        return jj_fail(c, AL_EFORMAT, "type %s doesn't define __round__ method", jj_type_name(in));
    }
    if (prec < -300 || prec > 300) return jj_fail(c, AL_EUNSUP, "round precision out of range");
    if (!strcmp(method, "common")) {
        if (in.k != JV_FLOAT) {
            if (prec >= 0) {
                *out = jv_int(in.u.i);
                return AL_OK;
            }
            return jj_fail(c, AL_EUNSUP, "negative precision on integers is not supported");
        }
        double x = in.u.f;
        if (!isfinite(x)) {
            *out = in;
            return AL_OK;
        }
        if (prec < 0) return jj_fail(c, AL_EUNSUP, "negative round precision is not supported");
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
        *out = jv_float(strtod(buf, NULL));
        return AL_OK;
    }
    double x = in.k == JV_FLOAT ? in.u.f : (double)in.u.i;
    double m = pow(10.0, (double)prec);
    double r = !strcmp(method, "ceil") ? ceil(x * m) : floor(x * m);
    *out = jv_float(r / m);
    return AL_OK;
}

int jj_call_filter(jctx *c, int id, const char *name, jv in, jargs *a, jv *out) {
    jv p[5];
    int rc;
    if (++c->steps > JJ_STEPS_MAX) return jj_fail(c, AL_ERANGE, "template runs for too many steps");
    switch (id) {
    case F_ABS:
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        if (in.k == JV_INT || in.k == JV_BOOL) {
            if (in.u.i == INT64_MIN) return jj_fail(c, AL_ERANGE, "integer overflow");
            *out = jv_int(in.u.i < 0 ? -in.u.i : in.u.i);
            return AL_OK;
        }
        if (in.k == JV_FLOAT) {
            *out = jv_float(fabs(in.u.f));
            return AL_OK;
        }
        if (in.k == JV_UNDEF) return jj_undef_error(c, in);
        return jj_fail(c, AL_EFORMAT, "bad operand type for abs(): '%s'", jj_type_name(in));
    case F_ATTR: {
        static const char *const names[] = {"name"};
        if ((rc = bind(c, name, a, names, 1, p))) return rc;
        if (missing(p[0])) return jj_fail(c, AL_EFORMAT, "attr() missing required argument 'name'");
        if (p[0].k != JV_STR) return jj_undef_hint(c, out, "attribute name must be a string");
        if (in.k == JV_UNDEF) return jj_undef_error(c, in);
        int found;
        if ((rc = py_getattr(c, in, jv_str(p[0])->s, jv_str(p[0])->len, out, &found))) return rc;
        if (found) return AL_OK;
        return no_attr(c, in, jv_str(p[0])->s, jv_str(p[0])->len, out);
    }
    case F_BATCH: { /* lists of linecount items, the last one padded with fill_with */
        static const char *const names[] = {"linecount", "fill_with"};
        if ((rc = bind(c, name, a, names, 2, p))) return rc;
        int64_t per = 0;
        if (missing(p[0])) return jj_fail(c, AL_EFORMAT, "batch() missing required argument 'linecount'");
        if ((rc = want_int(c, p[0], &per))) return rc;
        jv items, res, cur = jv_undef();
        if ((rc = jj_iter_list(c, in, &items))) return rc;
        jseq *s = jv_seq(items);
        if (per <= 0 && s->n) {
            jj_decref(c, items);
            return jj_fail(c, AL_EFORMAT, "batch() linecount must be positive");
        }
        rc = jj_seq_new(c, JV_LIST, 0, &res);
        for (size_t i = 0; i < s->n && !rc; i++) {
            if (cur.k == JV_UNDEF && (rc = jj_seq_new(c, JV_LIST, (size_t)per, &cur))) break;
            if ((rc = push_copy(c, cur, s->v[i]))) break;
            if ((int64_t)jv_seq(cur)->n == per) {
                rc = jj_seq_push(c, jv_seq(res), cur);
                cur = jv_undef();
            }
        }
        if (!rc && cur.k != JV_UNDEF) {
            while (!rc && !missing(p[1]) && (int64_t)jv_seq(cur)->n < per) rc = push_copy(c, cur, p[1]);
            if (!rc) rc = jj_seq_push(c, jv_seq(res), cur);
            else jj_decref(c, cur);
            cur = jv_undef();
        }
        jj_decref(c, cur);
        jj_decref(c, items);
        if (rc) {
            jj_decref(c, res);
            return rc;
        }
        return gen_from_list(c, res, out);
    }
    case F_CAPITALIZE: case F_LOWER: case F_UPPER: case F_TITLE: {
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        jv s = {0};
        if ((rc = jj_stringify(c, in, &s))) return rc;
        if (id == F_TITLE) rc = jinja_title(c, jv_str(s), out);
        else rc = map_case(c, jv_str(s)->s, jv_str(s)->len, id == F_CAPITALIZE ? CASE_CAPITALIZE : id == F_LOWER ? CASE_LOWER : CASE_UPPER, out);
        jj_decref(c, s);
        return rc;
    }
    case F_CENTER: {
        static const char *const names[] = {"width"};
        if ((rc = bind(c, name, a, names, 1, p))) return rc;
        int64_t w = 80;
        if (!missing(p[0]) && (rc = want_int(c, p[0], &w))) return rc;
        jv s = {0};
        if ((rc = jj_stringify(c, in, &s))) return rc;
        rc = pad_impl(c, jv_str(s), w, (jv){.k = JV_MISSING}, 0, out);
        jj_decref(c, s);
        return rc;
    }
    case F_COUNT: case F_LENGTH: {
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        int64_t n = 0;
        if ((rc = length_of(c, in, &n))) return rc;
        *out = jv_int(n);
        return AL_OK;
    }
    case F_D: case F_DEFAULT: {
        static const char *const names[] = {"default_value", "boolean"};
        if ((rc = bind(c, name, a, names, 2, p))) return rc;
        int use = in.k == JV_UNDEF || (!missing(p[1]) && truthy(c, p[1]) && !truthy(c, in));
        if (use) {
            if (missing(p[0])) return jj_str_new(c, "", 0, out);
            *out = p[0];
        } else {
            *out = in;
        }
        jj_incref(*out);
        return AL_OK;
    }
    case F_DICTSORT: {
        static const char *const names[] = {"case_sensitive", "by", "reverse"};
        if ((rc = bind(c, name, a, names, 3, p))) return rc;
        int by_value = 0;
        if (!missing(p[1])) {
            if (p[1].k == JV_STR && !strcmp(jv_str(p[1])->s, "value")) by_value = 1;
            else if (!(p[1].k == JV_STR && !strcmp(jv_str(p[1])->s, "key")))
                return jj_fail(c, AL_EFORMAT, "You can only sort by either \"key\" or \"value\"");
        }
        if (in.k != JV_DICT) {
            if (in.k == JV_UNDEF) return jj_undef_error(c, in);
            return jj_fail(c, AL_EFORMAT, "'%s' object has no attribute 'items'", jj_type_name(in));
        }
        jv view = {0}, items = {0};
        if ((rc = views(c, jv_map(in), JI_ITEMS, &view))) return rc;
        rc = jj_iter_list(c, view, &items);
        jj_decref(c, view);
        if (rc) return rc;
        jv attr = jv_int(by_value);
        jv *keys;
        if ((rc = make_keys(c, items, attr, !missing(p[0]) && truthy(c, p[0]), &keys))) {
            jj_decref(c, items);
            return rc;
        }
        rc = sort_items(c, items, keys, !missing(p[2]) && truthy(c, p[2]), out);
        free_keys(c, keys, jv_seq(items)->n);
        jj_decref(c, items);
        return rc;
    }
    case F_E: case F_ESCAPE: case F_FORCEESCAPE:
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        return escape_filter(c, in, out);
    case F_FIRST: {
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        if (in.k == JV_ITER && jv_seq(in)->sub == JI_GEN) {
            jseq *s = jv_seq(in);
            if (s->lazy_err) return jj_fail(c, AL_EFORMAT, "%s", s->lazy_err);
            if (s->pos >= s->n) return jj_undef_hint(c, out, "No first item, sequence was empty.");
            *out = s->v[s->pos++];
            jj_incref(*out);
            return AL_OK;
        }
        jv items = {0};
        if ((rc = jj_iter_list(c, in, &items))) return rc;
        if (jv_seq(items)->n == 0) rc = jj_undef_hint(c, out, "No first item, sequence was empty.");
        else {
            *out = jv_seq(items)->v[0];
            jj_incref(*out);
        }
        jj_decref(c, items);
        return rc;
    }
    case F_LAST: {
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        if (in.k == JV_ITER && jv_seq(in)->sub == JI_GEN)
            return jj_fail(c, AL_EFORMAT, "'generator' object is not reversible");
        if (in.k == JV_NS || (in.k != JV_UNDEF && in.k < JV_STR))
            return jj_fail(c, AL_EFORMAT, "'%s' object is not reversible", jj_type_name(in));
        jv items = {0};
        if ((rc = jj_iter_list(c, in, &items))) return rc;
        size_t n = jv_seq(items)->n;
        if (n == 0) rc = jj_undef_hint(c, out, "No last item, sequence was empty.");
        else {
            *out = jv_seq(items)->v[n - 1];
            jj_incref(*out);
        }
        jj_decref(c, items);
        return rc;
    }
    case F_FLOAT: {
        static const char *const names[] = {"default"};
        if ((rc = bind(c, name, a, names, 1, p))) return rc;
        double d = 0;
        if (in.k == JV_UNDEF) return jj_undef_error(c, in); /* Undefined.__float__ raises */
        if (in.k == JV_FLOAT) *out = in;
        else if (in.k == JV_INT || in.k == JV_BOOL) *out = jv_float((double)in.u.i);
        else if (in.k == JV_STR && parse_py_float(jv_str(in)->s, jv_str(in)->len, &d) == 0) *out = jv_float(d);
        else {
            *out = missing(p[0]) ? jv_float(0.0) : p[0];
            jj_incref(*out);
        }
        return AL_OK;
    }
    case F_INT: {
        static const char *const names[] = {"default", "base"};
        if ((rc = bind(c, name, a, names, 2, p))) return rc;
        int64_t base = 10, iv;
        if (!missing(p[1]) && (rc = want_int(c, p[1], &base))) return rc;
        if (base < 2 || base > 36) return jj_fail(c, AL_EUNSUP, "int() base must be >= 2 and <= 36");
        if (in.k == JV_UNDEF) return jj_undef_error(c, in); /* Undefined.__int__ raises */
        if (in.k == JV_INT || in.k == JV_BOOL) {
            *out = jv_int(in.u.i);
            return AL_OK;
        }
        double d = 0;
        int ok = 0;
        if (in.k == JV_FLOAT) { d = in.u.f; ok = 2; }
        else if (in.k == JV_STR) {
            int r = parse_py_int(jv_str(in)->s, jv_str(in)->len, (int)base, &iv);
            if (r == 0) {
                *out = jv_int(iv);
                return AL_OK;
            }
            if (r == -2) return jj_fail(c, AL_ERANGE, "integer too large");
            if (parse_py_float(jv_str(in)->s, jv_str(in)->len, &d) == 0) ok = 2;
        }
        if (ok == 2) {
            if (isnan(d)) ok = 0;
            else if (isinf(d)) return jj_fail(c, AL_EFORMAT, "cannot convert float infinity to integer");
            else if (d >= 9.2233720368547758e18 || d < -9.2233720368547758e18) return jj_fail(c, AL_ERANGE, "integer too large");
            else {
                *out = jv_int((int64_t)d);
                return AL_OK;
            }
        }
        *out = missing(p[0]) ? jv_int(0) : p[0];
        jj_incref(*out);
        return AL_OK;
    }
    case F_FORMAT: {
        if (a->npos && a->nkw) return jj_fail(c, AL_EFORMAT, "can't handle positional and keyword arguments at the same time");
        jv s = {0}, args = {0};
        if ((rc = jj_stringify(c, in, &s))) return rc;
        if (a->nkw) {
            jargs da = {NULL, 0, a->kn, a->kv, a->nkw};
            rc = dict_from(c, &da, JV_DICT, &args);
        } else {
            rc = jj_seq_new(c, JV_TUPLE, (size_t)a->npos, &args);
            for (int i = 0; i < a->npos && !rc; i++) rc = push_copy(c, args, a->pos[i]);
        }
        if (!rc) {
            rc = jj_str_mod(c, s, args, out);
            jj_decref(c, args);
        }
        jj_decref(c, s);
        return rc;
    }
    case F_INDENT: return indent_filter(c, in, a, out);
    case F_ITEMS: {
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        if (in.k == JV_UNDEF) {
            jv l = {0};
            if ((rc = jj_seq_new(c, JV_LIST, 0, &l))) return rc;
            return gen_from_list(c, l, out);
        }
        if (in.k != JV_DICT) { /* a generator: jinja2 raises only when it is consumed */
            jv l = {0};
            if ((rc = jj_seq_new(c, JV_LIST, 0, &l))) return rc;
            jv_seq(l)->lazy_err = "Can only get item pairs from a mapping.";
            return gen_from_list(c, l, out);
        }
        if ((rc = views(c, jv_map(in), JI_ITEMS, out))) return rc;
        jv_seq(*out)->sub = JI_GEN;
        return AL_OK;
    }
    case F_JOIN: {
        static const char *const names[] = {"d", "attribute"};
        if ((rc = bind(c, name, a, names, 2, p))) return rc;
        jv items = {0};
        if ((rc = jj_iter_list(c, in, &items))) return rc;
        jbuf sep = {0}, b = {0};
        if (!missing(p[0])) rc = jj_to_str(c, &sep, p[0]);
        jseq *s = jv_seq(items);
        for (size_t i = 0; i < s->n && !rc; i++) {
            if (i) rc = jj_buf_put(c, &b, sep.p ? sep.p : "", sep.n);
            if (rc) break;
            if (!missing(p[1]) && p[1].k != JV_NONE) {
                jv x = {0};
                if ((rc = attr_get(c, s->v[i], p[1], &x))) break;
                rc = jj_to_str(c, &b, x);
                jj_decref(c, x);
            } else {
                rc = jj_to_str(c, &b, s->v[i]);
            }
        }
        jj_decref(c, items);
        c->mem -= sep.cap < c->mem ? sep.cap : c->mem;
        jj_buf_free(&sep);
        if (rc) {
            c->mem -= b.cap < c->mem ? b.cap : c->mem;
            jj_buf_free(&b);
            return rc;
        }
        return new_str(c, &b, out);
    }
    case F_LIST:
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        return jj_iter_list(c, in, out);
    case F_MAP: return map_impl(c, in, a, out);
    case F_MAX: case F_MIN: return minmax_impl(c, in, a, id == F_MAX, name, out);
    case F_REJECT: case F_SELECT: return select_impl(c, in, a, 0, id == F_SELECT, out);
    case F_REJECTATTR: case F_SELECTATTR: return select_impl(c, in, a, 1, id == F_SELECTATTR, out);
    case F_REPLACE: {
        static const char *const names[] = {"old", "new", "count"};
        if ((rc = bind(c, name, a, names, 3, p))) return rc;
        if (missing(p[0]) || missing(p[1])) return jj_fail(c, AL_EFORMAT, "replace() missing required arguments");
        jv s = {0}, o = {0}, n = {0};
        int64_t cnt = -1;
        if (!missing(p[2]) && p[2].k != JV_NONE && (rc = want_int(c, p[2], &cnt))) return rc;
        if ((rc = jj_stringify(c, in, &s))) return rc;
        if ((rc = jj_stringify(c, p[0], &o))) {
            jj_decref(c, s);
            return rc;
        }
        if (!(rc = jj_stringify(c, p[1], &n))) {
            rc = replace_impl(c, jv_str(s), jv_str(o), jv_str(n), cnt, out);
            jj_decref(c, n);
        }
        jj_decref(c, o);
        jj_decref(c, s);
        return rc;
    }
    case F_REVERSE: {
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        if (in.k == JV_STR) {
            const jstr *s = jv_str(in);
            char *buf = malloc(s->len + 1);
            if (!buf) return jj_fail(c, AL_ENOMEM, "out of memory");
            size_t o = s->len;
            for (size_t i = 0; i < s->len;) {
                uint32_t cp = 0;
                size_t k = jj_u8_dec(s->s + i, s->len - i, &cp);
                o -= k;
                memcpy(buf + o, s->s + i, k);
                i += k;
            }
            rc = jj_str_new(c, buf, s->len, out);
            free(buf);
            return rc;
        }
        jv items = {0};
        if ((rc = jj_iter_list(c, in, &items))) return rc;
        jseq *s = jv_seq(items);
        for (size_t i = 0; i < s->n / 2; i++) {
            jv t = s->v[i];
            s->v[i] = s->v[s->n - 1 - i];
            s->v[s->n - 1 - i] = t;
        }
        if (in.k == JV_ITER && jv_seq(in)->sub == JI_GEN) {
            *out = items; /* reversed() fails on generators; jinja2 falls back to a list */
            return AL_OK;
        }
        return gen_from_list(c, items, out);
    }
    case F_ROUND: return round_filter(c, in, a, out);
    case F_SAFE: case F_STRING:
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        return jj_stringify(c, in, out);
    case F_SORT: {
        static const char *const names[] = {"reverse", "case_sensitive", "attribute"};
        if ((rc = bind(c, name, a, names, 3, p))) return rc;
        jv items = {0};
        if ((rc = jj_iter_list(c, in, &items))) return rc;
        /* make_multi_attrgetter: "a,b" -> key [item.a, item.b]; keys compare as lists */
        jv parts = {0};
        if ((rc = jj_seq_new(c, JV_LIST, 1, &parts))) {
            jj_decref(c, items);
            return rc;
        }
        if (!missing(p[2]) && p[2].k == JV_STR) {
            const jstr *at = jv_str(p[2]);
            for (size_t i = 0, st = 0; i <= at->len && !rc; i++) {
                if (i < at->len && at->s[i] != ',') continue;
                jv part = {0};
                if (!(rc = jj_str_new(c, at->s + st, i - st, &part))) rc = jj_seq_push(c, jv_seq(parts), part);
                st = i + 1;
            }
        } else {
            jv part = missing(p[2]) ? jv_none() : p[2];
            jj_incref(part);
            rc = jj_seq_push(c, jv_seq(parts), part);
        }
        jseq *ps = jv_seq(parts), *is = jv_seq(items);
        jv *keys = rc ? NULL : calloc(is->n + 1, sizeof *keys);
        if (!rc && !keys) rc = jj_fail(c, AL_ENOMEM, "out of memory");
        size_t nk = 0;
        for (size_t i = 0; i < is->n && !rc; i++) {
            jv key = {0};
            if ((rc = jj_seq_new(c, JV_LIST, ps->n, &key))) break;
            keys[nk++] = key;
            for (size_t k = 0; k < ps->n && !rc; k++) {
                jv one = {0};
                if (!(rc = key_of(c, is->v[i], ps->v[k], !missing(p[1]) && truthy(c, p[1]), &one)))
                    rc = jj_seq_push(c, jv_seq(key), one);
            }
        }
        if (!rc) rc = sort_items(c, items, keys, !missing(p[0]) && truthy(c, p[0]), out);
        free_keys(c, keys, nk);
        jj_decref(c, parts);
        jj_decref(c, items);
        return rc;
    }
    case F_SUM: {
        static const char *const names[] = {"attribute", "start"};
        if ((rc = bind(c, name, a, names, 2, p))) return rc;
        jv items = {0};
        if ((rc = jj_iter_list(c, in, &items))) return rc;
        jv acc = missing(p[1]) ? jv_int(0) : p[1];
        if (acc.k == JV_STR) {
            jj_decref(c, items);
            return jj_fail(c, AL_EFORMAT, "sum() can't sum strings [use ''.join(seq) instead]");
        }
        jj_incref(acc);
        jseq *s = jv_seq(items);
        for (size_t i = 0; i < s->n && !rc; i++) {
            jv x = {0}, r = {0};
            if (!missing(p[0]) && p[0].k != JV_NONE) rc = attr_get(c, s->v[i], p[0], &x);
            else {
                x = s->v[i];
                jj_incref(x);
            }
            if (rc) break;
            rc = jj_binop(c, OP_ADD, acc, x, &r);
            jj_decref(c, x);
            if (!rc) {
                jj_decref(c, acc);
                acc = r;
            }
        }
        jj_decref(c, items);
        if (rc) {
            jj_decref(c, acc);
            return rc;
        }
        *out = acc;
        return AL_OK;
    }
    case F_TOJSON: return tojson_filter(c, in, a, out);
    case F_TRIM: {
        static const char *const names[] = {"chars"};
        if ((rc = bind(c, name, a, names, 1, p))) return rc;
        jv s = {0};
        if ((rc = jj_stringify(c, in, &s))) return rc;
        rc = strip_value(c, jv_str(s), p[0], 1, 1, out);
        jj_decref(c, s);
        return rc;
    }
    case F_TRUNCATE: {
        static const char *const names[] = {"length", "killwords", "end", "leeway"};
        if ((rc = bind(c, name, a, names, 4, p))) return rc;
        int64_t length = 255, leeway = 5;
        if (!missing(p[0]) && (rc = want_int(c, p[0], &length))) return rc;
        if (!missing(p[3]) && p[3].k != JV_NONE && (rc = want_int(c, p[3], &leeway))) return rc;
        const char *end = "...";
        size_t el = 3, ecp = 3;
        if (!missing(p[2])) {
            if (p[2].k != JV_STR) return jj_fail(c, AL_EFORMAT, "end must be a string");
            end = jv_str(p[2])->s;
            el = jv_str(p[2])->len;
            ecp = jv_str(p[2])->ncp;
        }
        if (length < (int64_t)ecp) return jj_fail(c, AL_EFORMAT, "expected length >= %zu, got %lld", ecp, (long long)length);
        if (leeway < 0) return jj_fail(c, AL_EFORMAT, "expected leeway >= 0, got %lld", (long long)leeway);
        if (in.k != JV_STR) { /* jinja2 keeps the raw value: len() and slicing decide */
            int64_t n = 0;
            if ((rc = length_of(c, in, &n))) return rc;
            if (n <= length + leeway) {
                *out = in;
                jj_incref(*out);
                return AL_OK;
            }
            return jj_fail(c, AL_EFORMAT, "can only concatenate %s (not \"str\") to %s", jj_type_name(in), jj_type_name(in));
        }
        jv s = in;
        jj_incref(s);
        const jstr *x = jv_str(s);
        if ((int64_t)x->ncp <= length + leeway) {
            *out = s;
            return AL_OK;
        }
        size_t *off = cp_offsets(c, x);
        if (!off) {
            jj_decref(c, s);
            return AL_ENOMEM;
        }
        size_t cut = off[length - (int64_t)ecp];
        free(off);
        if (!(!missing(p[1]) && truthy(c, p[1]))) {
            /* s[:n].rsplit(" ", 1)[0] */
            for (size_t i = cut; i > 0; i--)
                if (x->s[i - 1] == ' ') {
                    cut = i - 1;
                    break;
                }
        }
        rc = jj_str_cat(c, x->s, cut, end, el, out);
        jj_decref(c, s);
        return rc;
    }
    case F_UNIQUE: {
        static const char *const names[] = {"case_sensitive", "attribute"};
        if ((rc = bind(c, name, a, names, 2, p))) return rc;
        jv items = {0}, res = {0};
        if ((rc = jj_iter_list(c, in, &items))) return rc;
        jv *keys;
        if ((rc = make_keys(c, items, p[1], !missing(p[0]) && truthy(c, p[0]), &keys))) {
            jj_decref(c, items);
            return rc;
        }
        jseq *s = jv_seq(items);
        rc = jj_seq_new(c, JV_LIST, 0, &res);
        size_t nkept = 0;
        size_t *kept = malloc((s->n + 1) * sizeof *kept);
        if (!kept && !rc) rc = jj_fail(c, AL_ENOMEM, "out of memory");
        for (size_t i = 0; i < s->n && !rc; i++) {
            if (!jj_hashable(keys[i])) {
                rc = jj_fail(c, AL_EFORMAT, "unhashable type: '%s'", jj_type_name(keys[i]));
                break;
            }
            int seen = 0;
            for (size_t k = 0; k < nkept && !seen; k++) seen = jj_eq(keys[kept[k]], keys[i]);
            if (seen) continue;
            kept[nkept++] = i;
            rc = push_copy(c, res, s->v[i]);
        }
        free(kept);
        free_keys(c, keys, s->n);
        jj_decref(c, items);
        if (rc) {
            jj_decref(c, res);
            return rc;
        }
        return gen_from_list(c, res, out);
    }
    case F_WORDCOUNT: {
        if ((rc = bind(c, name, a, NULL, 0, p))) return rc;
        jv s = {0};
        if ((rc = jj_stringify(c, in, &s))) return rc;
        int64_t n = 0;
        int inword = 0;
        const jstr *x = jv_str(s);
        for (size_t i = 0; i < x->len;) {
            uint32_t cp = 0;
            size_t k = jj_u8_dec(x->s + i, x->len - i, &cp);
            int w = cp == '_' || jj_ualpha(cp) || jj_udigit(cp);
            if (w && !inword) n++;
            inword = w;
            i += k;
        }
        jj_decref(c, s);
        *out = jv_int(n);
        return AL_OK;
    }
    default:
        return jj_fail(c, AL_EUNSUP, "filter '%s' is not supported", name);
    }
}

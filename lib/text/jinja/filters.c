/* Jinja interpreter: jinja2's filters, one small function each, found by
 * name in the table at the end of this file (the ones chat templates do
 * not use are known by name but fail with AL_EUNSUP when run), and the
 * stable, error-propagating sort behind sort, dictsort, unique, min and max. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

enum { SEL_ATTR = 1, SEL_KEEP = 2 }; /* f_select's arg */

/* A call of a filter: its name as written (errors say "e()" for e, not
 * "escape()"), its table row's arg, the raw arguments, and those bound to
 * the row's parameter names (JV_MISSING where none was given). */
#define FILTER_MAX_PARAMS 4
typedef struct fcall {
    const char *name;
    int arg;
    jargs *a;
    jv p[FILTER_MAX_PARAMS];
} fcall;
typedef int (*filter_fn)(jctx *c, const fcall *f, jv in, jv *out);
typedef struct jfilter jfilter;
enum { FF_CONTEXT = 1, FF_ARGS = 2 };

static const char *filter_name(int id);

static int ignore_case(jctx *c, jv v, jv *out) {
    if (v.k == JV_STR) return jj_map_case(c, jv_str(v)->s, jv_str(v)->len, JJ_CASE_LOWER, out);
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
    for (size_t i = 0; i < s->n && !rc; i++) rc = jj_push_copy(c, *out, s->v[idx[i]]);
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
    if (!jj_missing(attribute) && attribute.k != JV_NONE) rc = jj_attr_get(c, item, attribute, &k);
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
    while (i < n && al_uc_is_space((unsigned char)s[i])) i++;
    while (n > i && al_uc_is_space((unsigned char)s[n - 1])) n--;
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
    while (i < n && al_uc_is_space((unsigned char)s[i])) i++;
    while (n > i && al_uc_is_space((unsigned char)s[n - 1])) n--;
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

/* The generators select and map return (jinja2 runs them lazily; alignd
 * builds the list): fn yields into res for each item of in, each item a
 * template step. A false in gives an empty one before anything else is
 * checked, as jinja2's "if value:" does. */
typedef int (*item_fn)(jctx *c, const void *ctx, jv item, jv res);
static int gen_each(jctx *c, jv in, item_fn fn, const void *ctx, jv *out) {
    jv items = {0}, res = {0};
    int rc;
    if ((rc = jj_seq_new(c, JV_LIST, 0, &res))) return rc;
    if ((rc = jj_iter_list(c, in, &items))) {
        jj_decref(c, res);
        return rc;
    }
    jseq *s = jv_seq(items);
    for (size_t i = 0; i < s->n && !rc; i++) {
        if (++c->steps > JJ_STEPS_MAX) rc = jj_fail(c, AL_ERANGE, "template runs for too many steps");
        else rc = fn(c, ctx, s->v[i], res);
    }
    jj_decref(c, items);
    if (rc) {
        jj_decref(c, res);
        return rc;
    }
    return gen_from_list(c, res, out);
}

static int empty_gen(jctx *c, jv *out) {
    jv empty = {0};
    int rc = jj_seq_new(c, JV_LIST, 0, &empty);
    return rc ? rc : gen_from_list(c, empty, out);
}

/* "No test named ..." / "No filter named ..." for a name that is not one */
static int no_such(jctx *c, const char *what, jv name) {
    jv s = {0};
    int rc = jj_stringify(c, name, &s);
    if (rc) return rc;
    rc = jj_fail(c, AL_EFORMAT, "No %s named '%s'.", what, jv_str(s)->s);
    jj_decref(c, s);
    return rc;
}

typedef struct select_ctx {
    int lookup_attr, keep, tid;
    jv attr;
    const char *test;
    jargs ta;
} select_ctx;

static int select_item(jctx *c, const void *ctx, jv item, jv res) {
    const select_ctx *k = ctx;
    jv x = {0};
    int rc = AL_OK, t;
    if (k->lookup_attr) rc = jj_attr_get(c, item, k->attr, &x);
    else {
        x = item;
        jj_incref(x);
    }
    if (rc) return rc;
    jargs ta = k->ta;
    if (k->tid >= 0) rc = jj_call_test(c, k->tid, k->test, x, &ta, &t);
    else t = jj_truth(c, x);
    jj_decref(c, x);
    if (!rc && (t != 0) == k->keep) rc = jj_push_copy(c, res, item);
    return rc;
}

/* select, reject, selectattr, rejectattr: arg holds SEL_ATTR and SEL_KEEP */
static int f_select(jctx *c, const fcall *f, jv in, jv *out) {
    const jargs *a = f->a;
    select_ctx k = {(f->arg & SEL_ATTR) != 0, (f->arg & SEL_KEEP) != 0, -1, jv_undef(), NULL, {0}};
    int off = 0;
    if (!jj_truth(c, in)) return empty_gen(c, out);
    if (k.lookup_attr) {
        if (a->npos < 1) return jj_fail(c, AL_EFORMAT, "Missing parameter for attribute name");
        k.attr = a->pos[0];
        off = 1;
    }
    if (a->npos > off) {
        jv tn = a->pos[off];
        if (tn.k != JV_STR || (k.tid = jj_test_id(jv_str(tn)->s, jv_str(tn)->len)) < 0) return no_such(c, "test", tn);
        k.test = jv_str(tn)->s;
    }
    k.ta = (jargs){a->pos + off + 1, a->npos > off + 1 ? a->npos - off - 1 : 0, a->kn, a->kv, a->nkw};
    return gen_each(c, in, select_item, &k, out);
}

typedef struct map_ctx {
    int use_attr, fid;
    jv attr, def;
    jargs fa;
} map_ctx;

static int map_item(jctx *c, const void *ctx, jv item, jv res) {
    const map_ctx *k = ctx;
    jv x = {0};
    int rc;
    if (k->use_attr) {
        rc = jj_attr_get(c, item, k->attr, &x);
        if (!rc && x.k == JV_UNDEF && k->def.k != JV_NONE) {
            jj_decref(c, x);
            x = k->def;
            jj_incref(x);
        }
    } else {
        jargs fa = k->fa;
        rc = jj_call_filter(c, k->fid, filter_name(k->fid), item, &fa, &x);
    }
    return rc ? rc : jj_seq_push(c, jv_seq(res), x);
}

static int f_map(jctx *c, const fcall *f, jv in, jv *out) {
    const jargs *a = f->a;
    map_ctx k = {0, -1, jv_undef(), jv_none(), {0}};
    if (!jj_truth(c, in)) return empty_gen(c, out); /* before the function is prepared */
    if (a->npos == 0) {
        for (int i = 0; i < a->nkw; i++) {
            const jstr *n = a->kn[i];
            if (n->len == 9 && !memcmp(n->s, "attribute", 9)) {
                k.attr = a->kv[i];
                k.use_attr = 1;
            } else if (n->len == 7 && !memcmp(n->s, "default", 7)) {
                k.def = a->kv[i];
            } else {
                return jj_fail(c, AL_EFORMAT, "Unexpected keyword argument '%s'", n->s);
            }
        }
        if (!k.use_attr) return jj_fail(c, AL_EFORMAT, "map requires a filter argument");
    } else {
        jv fn = a->pos[0];
        if (fn.k != JV_STR || (k.fid = jj_filter_id(jv_str(fn)->s, jv_str(fn)->len)) < 0) return no_such(c, "filter", fn);
        k.fa = (jargs){a->pos + 1, a->npos - 1, a->kn, a->kv, a->nkw};
    }
    return gen_each(c, in, map_item, &k, out);
}

/* max (arg 1) and min (arg 0) */
static int f_minmax(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    jv items = {0};
    if ((rc = jj_iter_list(c, in, &items))) return rc;
    jseq *s = jv_seq(items);
    if (s->n == 0) {
        jj_decref(c, items);
        return jj_undef_hint(c, out, "No aggregated item, sequence was empty.");
    }
    jv *keys;
    if ((rc = make_keys(c, items, p[1], !jj_missing(p[0]) && jj_truth(c, p[0]), &keys))) {
        jj_decref(c, items);
        return rc;
    }
    size_t best = 0;
    for (size_t i = 1; i < s->n && !rc; i++) {
        int lt;
        rc = f->arg ? less(c, keys[best], keys[i], &lt) : less(c, keys[i], keys[best], &lt);
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

static int f_tojson(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    jj_json_opts o = {0};
    o.ensure_ascii = !jj_missing(p[0]) && jj_truth(c, p[0]);
    o.sort_keys = !jj_missing(p[3]) && jj_truth(c, p[3]);
    char ind[64];
    if (!jj_missing(p[1]) && p[1].k != JV_NONE) {
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
    if (!jj_missing(p[2]) && p[2].k != JV_NONE) {
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
    return jj_str_from_buf(c, &b, out);
}

static int f_indent(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    char sp[256];
    const char *ind = "    ";
    size_t il = 4;
    if (!jj_missing(p[0])) {
        if (p[0].k == JV_STR) {
            ind = jv_str(p[0])->s;
            il = jv_str(p[0])->len;
        } else {
            int64_t w = 0;
            if ((rc = jj_want_int(c, p[0], &w))) return rc;
            if (w < 0) w = 0;
            if (w > (int64_t)sizeof sp) return jj_fail(c, AL_ERANGE, "indent too large");
            memset(sp, ' ', (size_t)w);
            ind = sp;
            il = (size_t)w;
        }
    }
    int first = !jj_missing(p[1]) && jj_truth(c, p[1]), blank = !jj_missing(p[2]) && jj_truth(c, p[2]);
    /* jinja2 does `s += "\n"` on the raw value: only strings survive */
    if (in.k == JV_UNDEF) return jj_undef_error(c, in);
    if (in.k != JV_STR) return jj_fail(c, AL_EFORMAT, "unsupported operand type(s) for +=: '%s' and 'str'", jj_type_name(in));
    jv s = in;
    jj_incref(s);
    jv withnl = {0}, lines = {0};
    rc = jj_str_cat(c, jv_str(s)->s, jv_str(s)->len, "\n", 1, &withnl);
    jj_decref(c, s);
    if (rc) return rc;
    rc = jj_splitlines(c, jv_str(withnl), 0, &lines);
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
    return jj_str_from_buf(c, &b, out);
}

/* jinja2's do_title: re.split(r"([-\s({\[<]+)", s), then each item's
 * item[0].upper() + item[1:].lower() (the lowering sees item[1:] alone,
 * which decides a final sigma). Separators are their own uppercase. */
static int is_title_sep(uint32_t cp) {
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || al_uc_is_space(cp);
}

static int jinja_title(jctx *c, const jstr *s, jv *out) {
    jbuf b = {0};
    int rc = AL_OK;
    for (size_t i = 0; i < s->len && !rc;) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(s->s + i, s->len - i, &cp);
        if (is_title_sep(cp)) {
            rc = jj_buf_put(c, &b, s->s + i, k);
            i += k;
            continue;
        }
        size_t e = i + k; /* the word item s[i..e) */
        while (e < s->len) {
            size_t k2 = jj_u8_dec(s->s + e, s->len - e, &cp);
            if (is_title_sep(cp)) break;
            e += k2;
        }
        rc = jj_case_into(c, &b, s->s + i, k, JJ_CASE_UPPER);
        if (!rc) rc = jj_case_into(c, &b, s->s + i + k, e - i - k, JJ_CASE_LOWER);
        i = e;
    }
    if (rc) {
        jj_buf_free(&b);
        return rc;
    }
    return jj_str_from_buf(c, &b, out);
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
    return jj_str_from_buf(c, &b, out);
}

static int f_round(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    int64_t prec = 0;
    if (!jj_missing(p[0]) && (rc = jj_want_int(c, p[0], &prec))) return rc;
    const char *method = "common";
    if (!jj_missing(p[1])) {
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

/* ---------------------------------------------------------------- one function a filter */
static int f_abs(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
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
}

static int f_attr(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    if (jj_missing(p[0])) return jj_fail(c, AL_EFORMAT, "attr() missing required argument 'name'");
    if (p[0].k != JV_STR) return jj_undef_hint(c, out, "attribute name must be a string");
    if (in.k == JV_UNDEF) return jj_undef_error(c, in);
    int found;
    if ((rc = jj_py_getattr(c, in, jv_str(p[0])->s, jv_str(p[0])->len, out, &found))) return rc;
    if (found) return AL_OK;
    return jj_no_attr(c, in, jv_str(p[0])->s, jv_str(p[0])->len, out);
}

/* lists of linecount items, the last one padded with fill_with */
static int f_batch(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    int64_t per = 0;
    if (jj_missing(p[0])) return jj_fail(c, AL_EFORMAT, "batch() missing required argument 'linecount'");
    if ((rc = jj_want_int(c, p[0], &per))) return rc;
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
        if ((rc = jj_push_copy(c, cur, s->v[i]))) break;
        if ((int64_t)jv_seq(cur)->n == per) {
            rc = jj_seq_push(c, jv_seq(res), cur);
            cur = jv_undef();
        }
    }
    if (!rc && cur.k != JV_UNDEF) {
        while (!rc && !jj_missing(p[1]) && (int64_t)jv_seq(cur)->n < per) rc = jj_push_copy(c, cur, p[1]);
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

static int f_case(jctx *c, const fcall *f, jv in, jv *out) {
    int rc;
    jv s = {0};
    if ((rc = jj_stringify(c, in, &s))) return rc;
    if (f->arg == JJ_CASE_TITLE) rc = jinja_title(c, jv_str(s), out);
    else rc = jj_map_case(c, jv_str(s)->s, jv_str(s)->len, f->arg, out);
    jj_decref(c, s);
    return rc;
}

static int f_center(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    int64_t w = 80;
    if (!jj_missing(p[0]) && (rc = jj_want_int(c, p[0], &w))) return rc;
    jv s = {0};
    if ((rc = jj_stringify(c, in, &s))) return rc;
    rc = jj_pad(c, jv_str(s), w, (jv){.k = JV_MISSING}, 0, out);
    jj_decref(c, s);
    return rc;
}

static int f_length(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    int rc;
    int64_t n = 0;
    if ((rc = length_of(c, in, &n))) return rc;
    *out = jv_int(n);
    return AL_OK;
}

static int f_default(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int use = in.k == JV_UNDEF || (!jj_missing(p[1]) && jj_truth(c, p[1]) && !jj_truth(c, in));
    if (use) {
        if (jj_missing(p[0])) return jj_str_new(c, "", 0, out);
        *out = p[0];
    } else {
        *out = in;
    }
    jj_incref(*out);
    return AL_OK;
}

static int f_dictsort(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    int by_value = 0;
    if (!jj_missing(p[1])) {
        if (p[1].k == JV_STR && !strcmp(jv_str(p[1])->s, "value")) by_value = 1;
        else if (!(p[1].k == JV_STR && !strcmp(jv_str(p[1])->s, "key")))
            return jj_fail(c, AL_EFORMAT, "You can only sort by either \"key\" or \"value\"");
    }
    if (in.k != JV_DICT) {
        if (in.k == JV_UNDEF) return jj_undef_error(c, in);
        return jj_fail(c, AL_EFORMAT, "'%s' object has no attribute 'items'", jj_type_name(in));
    }
    jv view = {0}, items = {0};
    if ((rc = jj_views(c, jv_map(in), JI_ITEMS, &view))) return rc;
    rc = jj_iter_list(c, view, &items);
    jj_decref(c, view);
    if (rc) return rc;
    jv attr = jv_int(by_value);
    jv *keys;
    if ((rc = make_keys(c, items, attr, !jj_missing(p[0]) && jj_truth(c, p[0]), &keys))) {
        jj_decref(c, items);
        return rc;
    }
    rc = sort_items(c, items, keys, !jj_missing(p[2]) && jj_truth(c, p[2]), out);
    free_keys(c, keys, jv_seq(items)->n);
    jj_decref(c, items);
    return rc;
}

static int f_escape(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    return escape_filter(c, in, out);
}

static int f_first(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    int rc;
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

static int f_last(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    int rc;
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

static int f_float(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    double d = 0;
    if (in.k == JV_UNDEF) return jj_undef_error(c, in); /* Undefined.__float__ raises */
    if (in.k == JV_FLOAT) *out = in;
    else if (in.k == JV_INT || in.k == JV_BOOL) *out = jv_float((double)in.u.i);
    else if (in.k == JV_STR && parse_py_float(jv_str(in)->s, jv_str(in)->len, &d) == 0) *out = jv_float(d);
    else {
        *out = jj_missing(p[0]) ? jv_float(0.0) : p[0];
        jj_incref(*out);
    }
    return AL_OK;
}

static int f_int(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    int64_t base = 10, iv;
    if (!jj_missing(p[1]) && (rc = jj_want_int(c, p[1], &base))) return rc;
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
    *out = jj_missing(p[0]) ? jv_int(0) : p[0];
    jj_incref(*out);
    return AL_OK;
}

static int f_format(jctx *c, const fcall *f, jv in, jv *out) {
    const jargs *a = f->a;
    int rc;
    if (a->npos && a->nkw) return jj_fail(c, AL_EFORMAT, "can't handle positional and keyword arguments at the same time");
    jv s = {0}, args = {0};
    if ((rc = jj_stringify(c, in, &s))) return rc;
    if (a->nkw) {
        jargs da = {NULL, 0, a->kn, a->kv, a->nkw};
        rc = jj_dict_from(c, &da, JV_DICT, &args);
    } else {
        rc = jj_seq_new(c, JV_TUPLE, (size_t)a->npos, &args);
        for (int i = 0; i < a->npos && !rc; i++) rc = jj_push_copy(c, args, a->pos[i]);
    }
    if (!rc) {
        rc = jj_str_mod(c, s, args, out);
        jj_decref(c, args);
    }
    jj_decref(c, s);
    return rc;
}

static int f_items(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    int rc;
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
    if ((rc = jj_views(c, jv_map(in), JI_ITEMS, out))) return rc;
    jv_seq(*out)->sub = JI_GEN;
    return AL_OK;
}

static int f_join(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    jv items = {0};
    if ((rc = jj_iter_list(c, in, &items))) return rc;
    jbuf sep = {0}, b = {0};
    if (!jj_missing(p[0])) rc = jj_to_str(c, &sep, p[0]);
    jseq *s = jv_seq(items);
    for (size_t i = 0; i < s->n && !rc; i++) {
        if (i) rc = jj_buf_put(c, &b, sep.p ? sep.p : "", sep.n);
        if (rc) break;
        if (!jj_missing(p[1]) && p[1].k != JV_NONE) {
            jv x = {0};
            if ((rc = jj_attr_get(c, s->v[i], p[1], &x))) break;
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
    return jj_str_from_buf(c, &b, out);
}

static int f_list(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    return jj_iter_list(c, in, out);
}

static int f_replace(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    if (jj_missing(p[0]) || jj_missing(p[1])) return jj_fail(c, AL_EFORMAT, "replace() missing required arguments");
    jv s = {0}, o = {0}, n = {0};
    int64_t cnt = -1;
    if (!jj_missing(p[2]) && p[2].k != JV_NONE && (rc = jj_want_int(c, p[2], &cnt))) return rc;
    if ((rc = jj_stringify(c, in, &s))) return rc;
    if ((rc = jj_stringify(c, p[0], &o))) {
        jj_decref(c, s);
        return rc;
    }
    if (!(rc = jj_stringify(c, p[1], &n))) {
        rc = jj_replace(c, jv_str(s), jv_str(o), jv_str(n), cnt, out);
        jj_decref(c, n);
    }
    jj_decref(c, o);
    jj_decref(c, s);
    return rc;
}

static int f_reverse(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    int rc;
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

static int f_string(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    return jj_stringify(c, in, out);
}

static int f_sort(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    jv items = {0};
    if ((rc = jj_iter_list(c, in, &items))) return rc;
    /* make_multi_attrgetter: "a,b" -> key [item.a, item.b]; keys compare as lists */
    jv parts = {0};
    if ((rc = jj_seq_new(c, JV_LIST, 1, &parts))) {
        jj_decref(c, items);
        return rc;
    }
    if (!jj_missing(p[2]) && p[2].k == JV_STR) {
        const jstr *at = jv_str(p[2]);
        for (size_t i = 0, st = 0; i <= at->len && !rc; i++) {
            if (i < at->len && at->s[i] != ',') continue;
            jv part = {0};
            if (!(rc = jj_str_new(c, at->s + st, i - st, &part))) rc = jj_seq_push(c, jv_seq(parts), part);
            st = i + 1;
        }
    } else {
        jv part = jj_missing(p[2]) ? jv_none() : p[2];
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
            if (!(rc = key_of(c, is->v[i], ps->v[k], !jj_missing(p[1]) && jj_truth(c, p[1]), &one)))
                rc = jj_seq_push(c, jv_seq(key), one);
        }
    }
    if (!rc) rc = sort_items(c, items, keys, !jj_missing(p[0]) && jj_truth(c, p[0]), out);
    free_keys(c, keys, nk);
    jj_decref(c, parts);
    jj_decref(c, items);
    return rc;
}

static int f_sum(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    jv items = {0};
    if ((rc = jj_iter_list(c, in, &items))) return rc;
    jv acc = jj_missing(p[1]) ? jv_int(0) : p[1];
    if (acc.k == JV_STR) {
        jj_decref(c, items);
        return jj_fail(c, AL_EFORMAT, "sum() can't sum strings [use ''.join(seq) instead]");
    }
    jj_incref(acc);
    jseq *s = jv_seq(items);
    for (size_t i = 0; i < s->n && !rc; i++) {
        jv x = {0}, r = {0};
        if (!jj_missing(p[0]) && p[0].k != JV_NONE) rc = jj_attr_get(c, s->v[i], p[0], &x);
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

static int f_trim(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    jv s = {0};
    if ((rc = jj_stringify(c, in, &s))) return rc;
    rc = jj_strip(c, jv_str(s), p[0], 1, 1, out);
    jj_decref(c, s);
    return rc;
}

static int f_truncate(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    int64_t length = 255, leeway = 5;
    if (!jj_missing(p[0]) && (rc = jj_want_int(c, p[0], &length))) return rc;
    if (!jj_missing(p[3]) && p[3].k != JV_NONE && (rc = jj_want_int(c, p[3], &leeway))) return rc;
    const char *end = "...";
    size_t el = 3, ecp = 3;
    if (!jj_missing(p[2])) {
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
    size_t *off = jj_cp_offsets(c, x);
    if (!off) {
        jj_decref(c, s);
        return AL_ENOMEM;
    }
    size_t cut = off[length - (int64_t)ecp];
    free(off);
    if (!(!jj_missing(p[1]) && jj_truth(c, p[1]))) {
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

static int f_unique(jctx *c, const fcall *f, jv in, jv *out) {
    const jv *p = f->p;
    int rc;
    jv items = {0}, res = {0};
    if ((rc = jj_iter_list(c, in, &items))) return rc;
    jv *keys;
    if ((rc = make_keys(c, items, p[1], !jj_missing(p[0]) && jj_truth(c, p[0]), &keys))) {
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
        rc = jj_push_copy(c, res, s->v[i]);
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

static int f_wordcount(jctx *c, const fcall *f, jv in, jv *out) {
    (void)f;
    int rc;
    jv s = {0};
    if ((rc = jj_stringify(c, in, &s))) return rc;
    int64_t n = 0;
    int inword = 0;
    const jstr *x = jv_str(s);
    for (size_t i = 0; i < x->len;) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(x->s + i, x->len - i, &cp);
        int w = cp == '_' || al_uc_is_alpha(cp) || al_uc_is_numeric(cp); /* Python re's \w */
        if (w && !inword) n++;
        inword = w;
        i += k;
    }
    jj_decref(c, s);
    *out = jv_int(n);
    return AL_OK;
}

/* ---------------------------------------------------------------- the table */
/* jinja2 3.1's filters by name, with the names of their parameters after
 * the value (the dispatcher binds the call's arguments to them as Python
 * would, so a filter finds them in f->p). A NULL function is a filter chat
 * templates do not use (urlize, groupby, ...): known by name, AL_EUNSUP
 * when run. FF_CONTEXT marks the @pass_context ones, which jinja2 never
 * folds at compile time; FF_ARGS the ones that take any positional and
 * keyword arguments (select, map, format) and read f->a themselves. */
struct jfilter {
    const char *name;
    filter_fn fn;
    int arg, flags;
    const char *params[FILTER_MAX_PARAMS];
};

static const jfilter FILTERS[] = {
    {"abs", f_abs, 0, 0, {NULL}},
    {"attr", f_attr, 0, 0, {"name"}},
    {"batch", f_batch, 0, 0, {"linecount", "fill_with"}},
    {"capitalize", f_case, JJ_CASE_CAPITALIZE, 0, {NULL}},
    {"center", f_center, 0, 0, {"width"}},
    {"count", f_length, 0, 0, {NULL}},
    {"d", f_default, 0, 0, {"default_value", "boolean"}},
    {"default", f_default, 0, 0, {"default_value", "boolean"}},
    {"dictsort", f_dictsort, 0, 0, {"case_sensitive", "by", "reverse"}},
    {"e", f_escape, 0, 0, {NULL}},
    {"escape", f_escape, 0, 0, {NULL}},
    {"filesizeformat", NULL, 0, 0, {NULL}},
    {"first", f_first, 0, 0, {NULL}},
    {"float", f_float, 0, 0, {"default"}},
    {"forceescape", f_escape, 0, 0, {NULL}},
    {"format", f_format, 0, FF_ARGS, {NULL}},
    {"groupby", NULL, 0, 0, {NULL}},
    {"indent", f_indent, 0, 0, {"width", "first", "blank"}},
    {"int", f_int, 0, 0, {"default", "base"}},
    {"items", f_items, 0, 0, {NULL}},
    {"join", f_join, 0, 0, {"d", "attribute"}},
    {"last", f_last, 0, 0, {NULL}},
    {"length", f_length, 0, 0, {NULL}},
    {"list", f_list, 0, 0, {NULL}},
    {"lower", f_case, JJ_CASE_LOWER, 0, {NULL}},
    {"map", f_map, 0, FF_CONTEXT | FF_ARGS, {NULL}},
    {"max", f_minmax, 1, 0, {"case_sensitive", "attribute"}},
    {"min", f_minmax, 0, 0, {"case_sensitive", "attribute"}},
    {"pprint", NULL, 0, 0, {NULL}},
    {"random", NULL, 0, FF_CONTEXT, {NULL}},
    {"reject", f_select, 0, FF_CONTEXT | FF_ARGS, {NULL}},
    {"rejectattr", f_select, SEL_ATTR, FF_CONTEXT | FF_ARGS, {NULL}},
    {"replace", f_replace, 0, 0, {"old", "new", "count"}},
    {"reverse", f_reverse, 0, 0, {NULL}},
    {"round", f_round, 0, 0, {"precision", "method"}},
    {"safe", f_string, 0, 0, {NULL}},
    {"select", f_select, SEL_KEEP, FF_CONTEXT | FF_ARGS, {NULL}},
    {"selectattr", f_select, SEL_ATTR | SEL_KEEP, FF_CONTEXT | FF_ARGS, {NULL}},
    {"slice", NULL, 0, 0, {NULL}},
    {"sort", f_sort, 0, 0, {"reverse", "case_sensitive", "attribute"}},
    {"string", f_string, 0, 0, {NULL}},
    {"striptags", NULL, 0, 0, {NULL}},
    {"sum", f_sum, 0, 0, {"attribute", "start"}},
    {"title", f_case, JJ_CASE_TITLE, 0, {NULL}},
    {"tojson", f_tojson, 0, 0, {"ensure_ascii", "indent", "separators", "sort_keys"}},
    {"trim", f_trim, 0, 0, {"chars"}},
    {"truncate", f_truncate, 0, 0, {"length", "killwords", "end", "leeway"}},
    {"unique", f_unique, 0, 0, {"case_sensitive", "attribute"}},
    {"upper", f_case, JJ_CASE_UPPER, 0, {NULL}},
    {"urlencode", NULL, 0, 0, {NULL}},
    {"urlize", NULL, 0, 0, {NULL}},
    {"wordcount", f_wordcount, 0, 0, {NULL}},
    {"wordwrap", NULL, 0, 0, {NULL}},
    {"xmlattr", NULL, 0, 0, {NULL}},
};
#define N_FILTERS ((int)(sizeof FILTERS / sizeof FILTERS[0]))

int jj_filter_id(const char *name, size_t n) {
    for (int i = 0; i < N_FILTERS; i++)
        if (strlen(FILTERS[i].name) == n && memcmp(FILTERS[i].name, name, n) == 0) return i;
    return -1;
}

static const char *filter_name(int id) { return FILTERS[id].name; }

int jj_filter_foldable(int id) { return id >= 0 && id < N_FILTERS && !(FILTERS[id].flags & FF_CONTEXT); }

int jj_call_filter(jctx *c, int id, const char *name, jv in, jargs *a, jv *out) {
    if (++c->steps > JJ_STEPS_MAX) return jj_fail(c, AL_ERANGE, "template runs for too many steps");
    if (id < 0 || id >= N_FILTERS || !FILTERS[id].fn) return jj_fail(c, AL_EUNSUP, "filter '%s' is not supported", name);
    const jfilter *row = &FILTERS[id];
    fcall f = {name, row->arg, a, {{0}}};
    if (!(row->flags & FF_ARGS)) {
        int n = 0;
        while (n < FILTER_MAX_PARAMS && row->params[n]) n++;
        int rc = jj_bind(c, name, a, row->params, n, f.p);
        if (rc) return rc;
    }
    return row->fn(c, &f, in, out);
}

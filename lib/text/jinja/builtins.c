/* Jinja interpreter: builtins. jinja2's tests (3.1 names), the globals
 * transformers installs (range, dict, namespace, raise_exception,
 * strftime_now, ...), the Python methods of dict, list and tuple that the
 * immutable sandbox allows, the argument binding every builtin uses, and
 * attribute and item access, which follow jinja2.sandbox: attribute first
 * then item for ".x", item first then attribute for "[x]", names starting
 * with "_" and mutating methods are undefined. Filters live in filters.c,
 * str methods and formatting in strings.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja_int.h"

/* ---------------------------------------------------------------- tables */
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

int jj_test_id(const char *name, size_t n) { return find_name(TESTS, NTAB(TESTS), name, n); }
int jj_global_id(const char *name, size_t n) { return find_name(GLOBALS, NTAB(GLOBALS), name, n); }

/* ---------------------------------------------------------------- argument binding */
int jj_bind(jctx *c, const char *fn, jargs *a, const char *const *names, int n, jv *slots) {
    for (int i = 0; i < n; i++) slots[i].k = JV_MISSING;
    if (a->npos > n) return jj_fail(c, AL_EFORMAT, "%s() takes at most %d argument(s) (%d given)", fn, n, a->npos);
    for (int i = 0; i < a->npos; i++) slots[i] = a->pos[i];
    for (int k = 0; k < a->nkw; k++) {
        int idx = find_name(names, n, a->kn[k]->s, a->kn[k]->len);
        if (idx < 0) return jj_fail(c, AL_EFORMAT, "%s() got an unexpected keyword argument '%s'", fn, a->kn[k]->s);
        if (!jj_missing(slots[idx])) return jj_fail(c, AL_EFORMAT, "%s() got multiple values for argument '%s'", fn, a->kn[k]->s);
        slots[idx] = a->kv[k];
    }
    return AL_OK;
}

int jj_no_kwargs(jctx *c, const char *fn, jargs *a) {
    if (a->nkw) return jj_fail(c, AL_EFORMAT, "%s() takes no keyword arguments", fn);
    return AL_OK;
}

int jj_truth(jctx *c, jv v) {
    int t = 0;
    jj_truthy(c, v, &t);
    return t;
}

int jj_want_int(jctx *c, jv v, int64_t *out) {
    if (v.k == JV_INT || v.k == JV_BOOL) {
        *out = v.u.i;
        return AL_OK;
    }
    if (v.k == JV_UNDEF) return jj_undef_error(c, v);
    return jj_fail(c, AL_EFORMAT, "'%s' object cannot be interpreted as an integer", jj_type_name(v));
}

int jj_want_str(jctx *c, jv v, const char *what) {
    if (v.k == JV_STR) return AL_OK;
    if (v.k == JV_UNDEF) return jj_undef_error(c, v);
    return jj_fail(c, AL_EFORMAT, "%s must be str, not %s", what, jj_type_name(v));
}

int jj_str_from_buf(jctx *c, jbuf *b, jv *out) {
    int rc = jj_str_new(c, b->p ? b->p : "", b->n, out);
    c->mem -= b->cap < c->mem ? b->cap : c->mem;
    jj_buf_free(b);
    return rc;
}

int jj_push_copy(jctx *c, jv list, jv item) {
    jj_incref(item);
    return jj_seq_push(c, jv_seq(list), item);
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

int jj_no_attr(jctx *c, jv obj, const char *name, size_t n, jv *out) {
    char b[64];
    return jj_undef_hint(c, out, "'%s' has no attribute '%.*s'", obj_repr_name(obj, b), (int)n, name);
}

/* Python getattr(obj, name) as the sandbox sees it; *found = 0 when the
 * object has no such attribute (so getitem can fall back) */
int jj_py_getattr(jctx *c, jv obj, const char *name, size_t n, jv *out, int *found) {
    *found = 1;
    if (n >= 2 && name[0] == '_' && name[1] == '_') return jj_undef_hint(c, out, "access to attribute '%.*s' of '%s' object is unsafe.", (int)n, name, jj_type_name(obj));
    int i;
    switch (obj.k) {
    case JV_STR:
        if ((i = jj_str_method_id(name, n)) >= 0) return jj_func_new(c, ID_STR + i, obj, out);
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
    int found, rc = jj_py_getattr(c, obj, name, n, out, &found);
    if (rc || found) return rc;
    if (obj.k == JV_DICT && jj_map_get_name(jv_map(obj), name, n, out)) {
        jj_incref(*out);
        return AL_OK;
    }
    return jj_no_attr(c, obj, name, n, out);
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
        int found, rc = jj_py_getattr(c, obj, jv_str(key)->s, jv_str(key)->len, out, &found);
        if (rc || found) return rc;
        return jj_no_attr(c, obj, jv_str(key)->s, jv_str(key)->len, out);
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
int jj_attr_get(jctx *c, jv item, jv attr, jv *out) {
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

/* ---------------------------------------------------------------- methods */
int jj_views(jctx *c, jmap *m, int sub, jv *out) {
    int rc = jj_seq_new(c, JV_ITER, m->n, out);
    if (rc) return rc;
    jv_seq(*out)->sub = sub;
    for (size_t i = 0; i < m->n && !rc; i++) {
        if (sub == JI_KEYS) rc = jj_push_copy(c, *out, m->key[i]);
        else if (sub == JI_VALUES) rc = jj_push_copy(c, *out, m->val[i]);
        else {
            jv t = {0};
            if (!(rc = jj_seq_new(c, JV_TUPLE, 2, &t))) {
                if (!(rc = jj_push_copy(c, t, m->key[i])) && !(rc = jj_push_copy(c, t, m->val[i])))
                    rc = jj_seq_push(c, jv_seq(*out), t);
                else jj_decref(c, t);
            }
        }
    }
    if (rc) jj_decref(c, *out);
    return rc;
}

static int dict_method(jctx *c, int m, jv self, jargs *a, jv *out) {
    jmap *d = jv_map(self);
    int rc;
    switch (m) {
    case D_GET: {
        if ((rc = jj_no_kwargs(c, "get", a))) return rc;
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
        return jj_views(c, d, m == D_ITEMS ? JI_ITEMS : m == D_KEYS ? JI_KEYS : JI_VALUES, out);
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
    if ((rc = jj_no_kwargs(c, LIST_ATTRS[m], a))) return rc;
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
    for (int i = 0; i < a->npos && !rc; i++) rc = jj_push_copy(c, t, a->pos[i]);
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
    if ((rc = jj_no_kwargs(c, "range", a))) return rc;
    if (a->npos < 1 || a->npos > 3) return jj_fail(c, AL_EFORMAT, "range expected 1 to 3 arguments, got %d", a->npos);
    int64_t v[3] = {0, 0, 1};
    for (int i = 0; i < a->npos; i++)
        if ((rc = jj_want_int(c, a->pos[i], &v[i]))) return rc;
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

int jj_dict_from(jctx *c, jargs *a, int kind, jv *out) {
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
    if (id >= ID_STR) return jj_str_method_call(c, id - ID_STR, jv_str(f->self), a, out);
    switch (id) {
    case G_RANGE: return g_range(c, a, out);
    case G_DICT: return jj_dict_from(c, a, JV_DICT, out);
    case G_NAMESPACE: return jj_dict_from(c, a, JV_NS, out);
    case G_RAISE: {
        if (a->npos < 1) return jj_fail(c, AL_EFORMAT, "raise_exception() missing 1 required positional argument: 'message'");
        jbuf b = {0};
        if ((rc = jj_to_str(c, &b, a->pos[0]))) {
            jj_buf_free(&b);
            return rc;
        }
        /* err is the job's reason: an empty message (or one that starts
         * with a NUL) would leave it blank, so that one names the line */
        int blank = !b.p || !b.p[0];
        if (!blank) snprintf(c->err, AL_ERRLEN, "%s", b.p);
        c->mem -= b.cap < c->mem ? b.cap : c->mem;
        jj_buf_free(&b);
        if (blank) return jj_fail(c, AL_EINVAL, "raise_exception() with an empty message");
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
        jv res = {0};
        rc = jj_str_is(c, jv_str(s), id == T_LOWER ? JJ_IS_LOWER : JJ_IS_UPPER, &res);
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
            *out = jj_find_sub(jv_str(seq)->s, 0, jv_str(seq)->len, jv_str(in)->s, jv_str(in)->len, 0) >= 0;
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


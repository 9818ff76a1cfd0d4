/* Jinja interpreter: the value model. Objects are refcounted; freeing goes
 * through a worklist (c->dead) so deep structures never recurse. str(),
 * repr(), ==, < and json.dumps follow CPython's rules for the types that a
 * chat template can see (None, bool, int, float, str, list, tuple, dict,
 * jinja2's Namespace, dict views, generators, macros, loop contexts). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

/* ---------------------------------------------------------------- alloc */
void *jj_obj_alloc(jctx *c, size_t sz, int t, int *rc) {
    if (c->mem + sz > JJ_MEM_MAX) {
        *rc = jj_fail(c, AL_ERANGE, "render uses more than %zu bytes", JJ_MEM_MAX);
        return NULL;
    }
    jo *o = calloc(1, sz);
    if (!o) {
        *rc = jj_fail(c, AL_ENOMEM, "out of memory");
        return NULL;
    }
    c->mem += sz;
    o->rc = 1;
    o->t = (uint8_t)t;
    return o;
}

static size_t obj_size(jo *o) {
    switch (o->t) {
    case JO_STR: return sizeof(jstr) + ((jstr *)o)->len + 1;
    case JO_SEQ: return sizeof(jseq) + ((jseq *)o)->cap * sizeof(jv);
    case JO_MAP: return sizeof(jmap) + ((jmap *)o)->cap * 2 * sizeof(jv);
    case JO_FUNC: return sizeof(jfunc);
    case JO_MACRO: return sizeof(jmacro);
    case JO_LOOP: return sizeof(jloop);
    }
    return 0;
}

void jj_incref(jv v) {
    if (jv_isobj(v) && v.u.o->rc >= 0) v.u.o->rc++;
}

static void put_dead(jctx *c, jo *o) {
    o->dead = c->dead;
    c->dead = o;
}

static void drop(jctx *c, jv v) {
    if (!jv_isobj(v)) return;
    jo *o = v.u.o;
    if (o->rc < 0) return;
    if (--o->rc == 0) put_dead(c, o);
}

static void free_obj(jctx *c, jo *o) {
    size_t sz = obj_size(o);
    switch (o->t) {
    case JO_SEQ: {
        jseq *s = (jseq *)o;
        for (size_t i = 0; i < s->n; i++) drop(c, s->v[i]);
        free(s->v);
        break;
    }
    case JO_MAP: {
        jmap *m = (jmap *)o;
        for (size_t i = 0; i < m->n; i++) {
            drop(c, m->key[i]);
            drop(c, m->val[i]);
        }
        free(m->key);
        free(m->val);
        if (m->parent) {
            jv p = {0};
            p.k = JV_DICT;
            p.u.o = &m->parent->h;
            drop(c, p);
        }
        if (m->tnext) {
            m->tnext->tprev = m->tprev;
            m->tprev->tnext = m->tnext;
        }
        break;
    }
    case JO_FUNC: drop(c, ((jfunc *)o)->self); break;
    case JO_MACRO: {
        jmacro *mc = (jmacro *)o;
        if (mc->closure) {
            jv p = {0};
            p.k = JV_DICT;
            p.u.o = &mc->closure->h;
            drop(c, p);
        }
        break;
    }
    case JO_LOOP: {
        jloop *l = (jloop *)o;
        if (l->items) {
            jv p = {0};
            p.k = JV_LIST;
            p.u.o = &l->items->h;
            drop(c, p);
        }
        drop(c, l->last_changed);
        break;
    }
    default: break;
    }
    c->mem -= sz < c->mem ? sz : c->mem;
    free(o);
}

void jj_decref(jctx *c, jv v) {
    drop(c, v);
    if (c->freeing) return;
    c->freeing = 1;
    while (c->dead) {
        jo *o = c->dead;
        c->dead = o->dead;
        free_obj(c, o);
    }
    c->freeing = 0;
}

static inline int vdepth(jv v) {
    if ((v.k == JV_LIST || v.k == JV_TUPLE || v.k == JV_ITER || v.k == JV_DICT || v.k == JV_NS) && v.u.o)
        return v.u.o->depth;
    return 0;
}

/* ---------------------------------------------------------------- strings */
int jj_str_new(jctx *c, const char *s, size_t n, jv *out) {
    if (n > JJ_OUT_MAX) return jj_fail(c, AL_ERANGE, "string exceeds %zu bytes", JJ_OUT_MAX);
    int rc = AL_OK;
    jstr *st = jj_obj_alloc(c, sizeof(jstr) + n + 1, JO_STR, &rc);
    if (!st) return rc;
    st->len = n;
    if (n) memcpy(st->s, s, n);
    st->s[n] = 0;
    st->ncp = jj_u8_count(s, n);
    out->k = JV_STR;
    out->u.o = &st->h;
    return AL_OK;
}

int jj_str_cat(jctx *c, const char *a, size_t an, const char *b, size_t bn, jv *out) {
    if (an > JJ_OUT_MAX || bn > JJ_OUT_MAX - an)
        return jj_fail(c, AL_ERANGE, "string exceeds %zu bytes", JJ_OUT_MAX);
    int rc = AL_OK;
    jstr *st = jj_obj_alloc(c, sizeof(jstr) + an + bn + 1, JO_STR, &rc);
    if (!st) return rc;
    st->len = an + bn;
    if (an) memcpy(st->s, a, an);
    if (bn) memcpy(st->s + an, b, bn);
    st->s[an + bn] = 0;
    st->ncp = jj_u8_count(st->s, st->len);
    out->k = JV_STR;
    out->u.o = &st->h;
    return AL_OK;
}

jstr *jj_str_immortal(jarena *a, const char *s, size_t n) {
    jstr *st = jj_arena_alloc(a, sizeof(jstr) + n + 1);
    if (!st) return NULL;
    st->h.rc = -1;
    st->h.t = JO_STR;
    st->len = n;
    if (n) memcpy(st->s, s, n);
    st->s[n] = 0;
    st->ncp = jj_u8_count(s, n);
    return st;
}

int jj_undef_hint(jctx *c, jv *out, const char *fmt, ...) {
    char msg[AL_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jv s = {0};
    int rc = jj_str_new(c, msg, strlen(msg), &s);
    if (rc) return rc;
    out->k = JV_UNDEF;
    out->u.o = s.u.o;
    return AL_OK;
}

/* ---------------------------------------------------------------- sequences and maps */
int jj_seq_new(jctx *c, int kind, size_t cap, jv *out) {
    if (cap > JJ_SEQ_MAX) return jj_fail(c, AL_ERANGE, "sequence longer than %zu", JJ_SEQ_MAX);
    int rc = AL_OK;
    jseq *s = jj_obj_alloc(c, sizeof(jseq), JO_SEQ, &rc);
    if (!s) return rc;
    if (cap) {
        if (c->mem + cap * sizeof(jv) > JJ_MEM_MAX) {
            free(s);
            c->mem -= sizeof(jseq);
            return jj_fail(c, AL_ERANGE, "render uses more than %zu bytes", JJ_MEM_MAX);
        }
        s->v = malloc(cap * sizeof(jv));
        if (!s->v) {
            free(s);
            c->mem -= sizeof(jseq);
            return jj_fail(c, AL_ENOMEM, "out of memory");
        }
        s->cap = cap;
        c->mem += cap * sizeof(jv);
    }
    s->sub = JI_GEN;
    out->k = kind;
    out->u.o = &s->h;
    return AL_OK;
}

int jj_seq_push(jctx *c, jseq *s, jv item) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        if (cap > JJ_SEQ_MAX) {
            jj_decref(c, item);
            return jj_fail(c, AL_ERANGE, "sequence longer than %zu", JJ_SEQ_MAX);
        }
        if (c->mem + (cap - s->cap) * sizeof(jv) > JJ_MEM_MAX) {
            jj_decref(c, item);
            return jj_fail(c, AL_ERANGE, "render uses more than %zu bytes", JJ_MEM_MAX);
        }
        jv *nv = realloc(s->v, cap * sizeof(jv));
        if (!nv) {
            jj_decref(c, item);
            return jj_fail(c, AL_ENOMEM, "out of memory");
        }
        c->mem += (cap - s->cap) * sizeof(jv);
        s->v = nv;
        s->cap = cap;
    }
    int d = vdepth(item) + 1;
    if (d > JJ_NEST_MAX) {
        jj_decref(c, item);
        return jj_fail(c, AL_ERANGE, "values nested deeper than %d", JJ_NEST_MAX);
    }
    if (d > s->h.depth) s->h.depth = (uint16_t)d;
    s->v[s->n++] = item;
    return AL_OK;
}

int jj_map_new(jctx *c, int kind, jv *out) {
    int rc = AL_OK;
    jmap *m = jj_obj_alloc(c, sizeof(jmap), JO_MAP, &rc);
    if (!m) return rc;
    if (kind == JV_NS) {
        m->tnext = c->tracked.tnext;
        m->tprev = &c->tracked;
        c->tracked.tnext->tprev = m;
        c->tracked.tnext = m;
    }
    out->k = kind;
    out->u.o = &m->h;
    return AL_OK;
}

jmap *jj_scope_new(jctx *c, jmap *parent) {
    jv v = {0};
    if (jj_map_new(c, JV_NS, &v)) return NULL;
    jmap *m = jv_map(v);
    if (parent) {
        m->parent = parent;
        if (parent->h.rc >= 0) parent->h.rc++;
    }
    return m;
}

void jj_scope_release(jctx *c, jmap *s) {
    if (!s) return;
    jv v = {0};
    v.k = JV_NS;
    v.u.o = &s->h;
    jj_decref(c, v);
}

void jj_map_clear(jctx *c, jmap *m) {
    size_t n = m->n;
    m->n = 0;
    for (size_t i = 0; i < n; i++) {
        jj_decref(c, m->key[i]);
        jj_decref(c, m->val[i]);
    }
}

static ptrdiff_t map_find(const jmap *m, jv key) {
    if (key.k == JV_STR) {
        const jstr *ks = jv_str(key);
        for (size_t i = 0; i < m->n; i++) {
            if (m->key[i].k != JV_STR) continue;
            const jstr *s = jv_str(m->key[i]);
            if (s->len == ks->len && memcmp(s->s, ks->s, ks->len) == 0) return (ptrdiff_t)i;
        }
        return -1;
    }
    for (size_t i = 0; i < m->n; i++)
        if (jj_eq(m->key[i], key)) return (ptrdiff_t)i;
    return -1;
}

int jj_map_set(jctx *c, jmap *m, jv key, jv val) {
    ptrdiff_t i = map_find(m, key);
    int d = vdepth(val) + 1;
    if (d > JJ_NEST_MAX) {
        jj_decref(c, key);
        jj_decref(c, val);
        return jj_fail(c, AL_ERANGE, "values nested deeper than %d", JJ_NEST_MAX);
    }
    if (d > m->h.depth) m->h.depth = (uint16_t)d;
    if (i >= 0) {
        jv old = m->val[i];
        m->val[i] = val;
        jj_decref(c, key);
        jj_decref(c, old);
        return AL_OK;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        if (cap > JJ_SEQ_MAX || c->mem + (cap - m->cap) * 2 * sizeof(jv) > JJ_MEM_MAX) {
            jj_decref(c, key);
            jj_decref(c, val);
            return jj_fail(c, AL_ERANGE, "mapping too large");
        }
        jv *nk = realloc(m->key, cap * sizeof(jv));
        if (!nk) goto oom;
        m->key = nk;
        jv *nv = realloc(m->val, cap * sizeof(jv));
        if (!nv) goto oom;
        m->val = nv;
        c->mem += (cap - m->cap) * 2 * sizeof(jv);
        m->cap = cap;
    }
    m->key[m->n] = key;
    m->val[m->n] = val;
    m->n++;
    return AL_OK;
oom:
    jj_decref(c, key);
    jj_decref(c, val);
    return jj_fail(c, AL_ENOMEM, "out of memory");
}

int jj_map_get(const jmap *m, jv key, jv *out) {
    ptrdiff_t i = map_find(m, key);
    if (i < 0) return 0;
    *out = m->val[i];
    return 1;
}

int jj_map_get_name(const jmap *m, const char *s, size_t n, jv *out) {
    for (size_t i = 0; i < m->n; i++) {
        if (m->key[i].k != JV_STR) continue;
        const jstr *k = jv_str(m->key[i]);
        if (k->len == n && memcmp(k->s, s, n) == 0) {
            *out = m->val[i];
            return 1;
        }
    }
    return 0;
}

int jj_func_new(jctx *c, int id, jv self, jv *out) {
    int rc = AL_OK;
    jfunc *f = jj_obj_alloc(c, sizeof(jfunc), JO_FUNC, &rc);
    if (!f) return rc;
    f->id = id;
    f->self = self;
    jj_incref(self);
    out->k = JV_FUNC;
    out->u.o = &f->h;
    return AL_OK;
}

void jj_track_teardown(jctx *c) {
    jmap *s = &c->tracked;
    for (jmap *m = s->tnext; m != s; m = m->tnext) m->h.rc++;
    for (jmap *m = s->tnext; m != s; m = m->tnext) {
        jmap tmp = *m;
        m->n = 0;
        jmap *par = m->parent;
        m->parent = NULL;
        for (size_t i = 0; i < tmp.n; i++) {
            drop(c, tmp.key[i]);
            drop(c, tmp.val[i]);
        }
        if (par) {
            jv p = {0};
            p.k = JV_NS;
            p.u.o = &par->h;
            drop(c, p);
        }
    }
    /* free what the clearing released (never a pinned tracked object) */
    jj_decref(c, jv_none());
    while (s->tnext != s) {
        jmap *m = s->tnext;
        jv v = {0};
        v.k = JV_NS;
        v.u.o = &m->h;
        if (m->h.rc > 1) { /* still referenced: cannot happen; leak rather than corrupt */
            m->tnext->tprev = m->tprev;
            m->tprev->tnext = m->tnext;
            m->tnext = m->tprev = NULL;
            continue;
        }
        jj_decref(c, v);
    }
}

/* ---------------------------------------------------------------- JSON in */
int jj_from_json(jctx *c, const json_t *j, jv *out, int depth) {
    if (depth > JJ_NEST_MAX - 2) return jj_fail(c, AL_ERANGE, "context nested too deeply");
    int rc;
    switch (json_typeof(j)) {
    case JSON_NULL: *out = jv_none(); return AL_OK;
    case JSON_TRUE: *out = jv_bool(1); return AL_OK;
    case JSON_FALSE: *out = jv_bool(0); return AL_OK;
    case JSON_INTEGER: *out = jv_int((int64_t)json_integer_value(j)); return AL_OK;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return AL_OK;
    case JSON_STRING: return jj_str_new(c, json_string_value(j), json_string_length(j), out);
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        if ((rc = jj_seq_new(c, JV_LIST, n, out))) return rc;
        for (size_t i = 0; i < n; i++) {
            jv item = {0};
            if ((rc = jj_from_json(c, json_array_get(j, i), &item, depth + 1)) ||
                (rc = jj_seq_push(c, jv_seq(*out), item))) {
                jj_decref(c, *out);
                return rc;
            }
        }
        return AL_OK;
    }
    case JSON_OBJECT: {
        if ((rc = jj_map_new(c, JV_DICT, out))) return rc;
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)j, k, val) {
            jv kv = {0}, vv = {0};
            if ((rc = jj_str_new(c, k, strlen(k), &kv))) goto objfail;
            if ((rc = jj_from_json(c, val, &vv, depth + 1))) {
                jj_decref(c, kv);
                goto objfail;
            }
            if ((rc = jj_map_set(c, jv_map(*out), kv, vv))) goto objfail;
        }
        return AL_OK;
    objfail:
        jj_decref(c, *out);
        return rc;
    }
    }
    return jj_fail(c, AL_EINVAL, "unsupported JSON value");
}

/* ---------------------------------------------------------------- basics */
const char *jj_type_name(jv v) {
    switch (v.k) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return jv_seq(v)->is_range ? "range" : "list";
    case JV_TUPLE: return "tuple";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_ITER:
        switch (jv_seq(v)->sub) {
        case JI_ITEMS: return "dict_items";
        case JI_KEYS: return "dict_keys";
        case JI_VALUES: return "dict_values";
        default: return "generator";
        }
    case JV_FUNC: return "builtin_function_or_method";
    case JV_MACRO: return "Macro";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

int jj_truthy(jctx *c, jv v, int *out) {
    (void)c;
    switch (v.k) {
    case JV_UNDEF: case JV_NONE: *out = 0; break;
    case JV_BOOL: case JV_INT: *out = v.u.i != 0; break;
    case JV_FLOAT: *out = v.u.f != 0.0; break;
    case JV_STR: *out = jv_str(v)->len > 0; break;
    case JV_LIST: case JV_TUPLE: *out = jv_seq(v)->n > 0; break;
    case JV_DICT: *out = jv_map(v)->n > 0; break;
    case JV_ITER: *out = jv_seq(v)->sub == JI_GEN ? 1 : jv_seq(v)->n > 0; break;
    default: *out = 1; break;
    }
    return AL_OK;
}

int jj_hashable(jv v) {
    if (v.k == JV_LIST) return jv_seq(v)->is_range;
    if (v.k == JV_DICT) return 0;
    if (v.k == JV_ITER) return jv_seq(v)->sub == JI_GEN;
    if (v.k == JV_TUPLE) {
        jseq *s = jv_seq(v);
        for (size_t i = 0; i < s->n; i++)
            if (!jj_hashable(s->v[i])) return 0;
    }
    return 1;
}

/* numeric comparison with Python's exact int/float semantics; 2 = unordered */
static int num_cmp(jv a, jv b) {
    if (a.k != JV_FLOAT && b.k != JV_FLOAT) return a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
    if ((a.k == JV_FLOAT && isnan(a.u.f)) || (b.k == JV_FLOAT && isnan(b.u.f))) return 2;
    long double x = a.k == JV_FLOAT ? (long double)a.u.f : (long double)a.u.i;
    long double y = b.k == JV_FLOAT ? (long double)b.u.f : (long double)b.u.i;
    return x < y ? -1 : x > y;
}

int jj_eq(jv a, jv b) {
    if (jv_isnum(a) && jv_isnum(b)) return num_cmp(a, b) == 0;
    if (a.k != b.k) return 0;
    switch (a.k) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR: {
        jstr *x = jv_str(a), *y = jv_str(b);
        return x->len == y->len && memcmp(x->s, y->s, x->len) == 0;
    }
    case JV_LIST: case JV_TUPLE: {
        jseq *x = jv_seq(a), *y = jv_seq(b);
        if (x->n != y->n || x->is_range != y->is_range) return 0;
        for (size_t i = 0; i < x->n; i++)
            if (!jj_eq(x->v[i], y->v[i])) return 0;
        return 1;
    }
    case JV_ITER: { /* dict_items / dict_keys compare as sets; values and generators by identity */
        jseq *x = jv_seq(a), *y = jv_seq(b);
        if (a.u.o == b.u.o) return 1;
        if (x->sub != y->sub || (x->sub != JI_ITEMS && x->sub != JI_KEYS) || x->n != y->n) return 0;
        for (size_t i = 0; i < x->n; i++) {
            int found = 0;
            for (size_t j = 0; j < y->n && !found; j++) found = jj_eq(x->v[i], y->v[j]);
            if (!found) return 0;
        }
        return 1;
    }
    case JV_DICT: {
        jmap *x = jv_map(a), *y = jv_map(b);
        if (x->n != y->n) return 0;
        for (size_t i = 0; i < x->n; i++) {
            jv o = {0};
            if (!jj_map_get(y, x->key[i], &o) || !jj_eq(x->val[i], o)) return 0;
        }
        return 1;
    }
    default: return a.u.o == b.u.o;
    }
}

int jj_cmp(jctx *c, jv a, jv b, int *out) {
    if (jv_isnum(a) && jv_isnum(b)) {
        *out = num_cmp(a, b);
        return AL_OK;
    }
    if (a.k == JV_STR && b.k == JV_STR) {
        jstr *x = jv_str(a), *y = jv_str(b);
        size_t n = x->len < y->len ? x->len : y->len;
        int r = memcmp(x->s, y->s, n);
        *out = r < 0 ? -1 : r > 0 ? 1 : (x->len < y->len ? -1 : x->len > y->len);
        return AL_OK;
    }
    if (((a.k == JV_LIST && b.k == JV_LIST) || (a.k == JV_TUPLE && b.k == JV_TUPLE)) && !jv_seq(a)->is_range &&
        !jv_seq(b)->is_range) {
        jseq *x = jv_seq(a), *y = jv_seq(b);
        size_t n = x->n < y->n ? x->n : y->n;
        for (size_t i = 0; i < n; i++) {
            if (jj_eq(x->v[i], y->v[i])) continue;
            return jj_cmp(c, x->v[i], y->v[i], out);
        }
        *out = x->n < y->n ? -1 : x->n > y->n;
        return AL_OK;
    }
    if (a.k == JV_UNDEF) return jj_undef_error(c, a);
    if (b.k == JV_UNDEF) return jj_undef_error(c, b);
    return jj_fail(c, AL_EFORMAT, "'<' not supported between instances of '%s' and '%s'",
                   jj_type_name(a), jj_type_name(b));
}

/* ---------------------------------------------------------------- float repr */
void jj_fmt_float(double d, char out[40]) {
    if (isnan(d)) { strcpy(out, "nan"); return; }
    if (isinf(d)) { strcpy(out, d < 0 ? "-inf" : "inf"); return; }
    char tmp[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    if (p > 17) p = 17;
    /* tmp = [-]d[.ddd]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *q = tmp;
    int neg = 0;
    if (*q == '-') { neg = 1; q++; }
    while (*q && *q != 'e') {
        if (*q >= '0' && *q <= '9') digits[nd++] = *q;
        q++;
    }
    digits[nd] = 0;
    int e = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
    int decpt = e + 1;
    char *o = out;
    if (neg) *o++ = '-';
    if (decpt <= -4 || decpt > 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, nd - 1);
            o += nd - 1;
        }
        snprintf(o, 16, "e%c%02d", e < 0 ? '-' : '+', (e < 0 ? -e : e) % 1000);
        return;
    }
    if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -decpt; i++) *o++ = '0';
        memcpy(o, digits, nd);
        o += nd;
    } else if ((size_t)decpt >= nd) {
        memcpy(o, digits, nd);
        o += nd;
        for (size_t i = nd; i < (size_t)decpt; i++) *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    } else {
        memcpy(o, digits, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, digits + decpt, nd - (size_t)decpt);
        o += nd - (size_t)decpt;
    }
    *o = 0;
}

/* ---------------------------------------------------------------- str / repr */
static int repr_str_ex(jctx *c, jbuf *b, const char *s, size_t n, int ascii) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    int rc;
    if ((rc = jj_buf_putc(c, b, q))) return rc;
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(s + i, n - i, &cp);
        char esc[16];
        const char *e = NULL;
        size_t el = 0;
        if (cp == (uint32_t)q || cp == '\\') { esc[0] = '\\'; esc[1] = (char)cp; e = esc; el = 2; }
        else if (cp == '\t') { e = "\\t"; el = 2; }
        else if (cp == '\n') { e = "\\n"; el = 2; }
        else if (cp == '\r') { e = "\\r"; el = 2; }
        else if (cp < 0x20 || cp == 0x7f) { el = (size_t)snprintf(esc, sizeof esc, "\\x%02x", cp); e = esc; }
        else if (cp >= 0x80 && (ascii || !al_uc_is_printable(cp))) {
            if (cp <= 0xff) el = (size_t)snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp <= 0xffff) el = (size_t)snprintf(esc, sizeof esc, "\\u%04x", cp);
            else el = (size_t)snprintf(esc, sizeof esc, "\\U%08x", cp);
            e = esc;
        }
        if (e) {
            if (run && (rc = jj_buf_put(c, b, s + i - run, run))) return rc;
            run = 0;
            if ((rc = jj_buf_put(c, b, e, el))) return rc;
        } else {
            run += k;
        }
        i += k;
    }
    if (run && (rc = jj_buf_put(c, b, s + n - run, run))) return rc;
    return jj_buf_putc(c, b, q);
}

static int repr_str(jctx *c, jbuf *b, const char *s, size_t n) { return repr_str_ex(c, b, s, n, 0); }

int jj_ascii_repr(jctx *c, jbuf *b, jv v) {
    if (v.k == JV_STR) return repr_str_ex(c, b, jv_str(v)->s, jv_str(v)->len, 1);
    return jj_repr(c, b, v);
}

static int repr_items(jctx *c, jbuf *b, jseq *s, const char *open, const char *close, int tuple1) {
    int rc;
    if ((rc = jj_buf_put(c, b, open, strlen(open)))) return rc;
    for (size_t i = 0; i < s->n; i++) {
        if (i && (rc = jj_buf_put(c, b, ", ", 2))) return rc;
        if ((rc = jj_repr(c, b, s->v[i]))) return rc;
    }
    if (tuple1 && s->n == 1 && (rc = jj_buf_putc(c, b, ','))) return rc;
    return jj_buf_put(c, b, close, strlen(close));
}

static int repr_map(jctx *c, jbuf *b, jmap *m) {
    int rc;
    if ((rc = jj_buf_putc(c, b, '{'))) return rc;
    for (size_t i = 0; i < m->n; i++) {
        if (i && (rc = jj_buf_put(c, b, ", ", 2))) return rc;
        if ((rc = jj_repr(c, b, m->key[i])) || (rc = jj_buf_put(c, b, ": ", 2)) ||
            (rc = jj_repr(c, b, m->val[i])))
            return rc;
    }
    return jj_buf_putc(c, b, '}');
}

static int loop_repr(jctx *c, jbuf *b, jv v) {
    jloop *l = (jloop *)v.u.o;
    return jj_buf_printf(c, b, "<LoopContext %zu/%zu>", l->idx + 1, l->items ? l->items->n : 0);
}

int jj_repr(jctx *c, jbuf *b, jv v) {
    char tmp[48];
    switch (v.k) {
    case JV_UNDEF: return jj_buf_put(c, b, "Undefined", 9);
    case JV_STR: return repr_str(c, b, jv_str(v)->s, jv_str(v)->len);
    case JV_LIST: {
        jseq *s = jv_seq(v);
        if (!s->is_range) return repr_items(c, b, s, "[", "]", 0);
        if (s->r_step == 1) return jj_buf_printf(c, b, "range(%lld, %lld)", (long long)s->r_start, (long long)s->r_stop);
        return jj_buf_printf(c, b, "range(%lld, %lld, %lld)", (long long)s->r_start, (long long)s->r_stop, (long long)s->r_step);
    }
    case JV_TUPLE: return repr_items(c, b, jv_seq(v), "(", ")", 1);
    case JV_DICT: return repr_map(c, b, jv_map(v));
    case JV_NS: {
        int rc;
        if ((rc = jj_buf_put(c, b, "<Namespace ", 11)) || (rc = repr_map(c, b, jv_map(v)))) return rc;
        return jj_buf_putc(c, b, '>');
    }
    case JV_ITER: {
        jseq *s = jv_seq(v);
        const char *name = s->sub == JI_ITEMS ? "dict_items(" : s->sub == JI_KEYS ? "dict_keys(" :
                           s->sub == JI_VALUES ? "dict_values(" : NULL;
        if (!name) return jj_fail(c, AL_EUNSUP, "cannot print a generator (use |list)");
        int rc;
        if ((rc = jj_buf_put(c, b, name, strlen(name))) || (rc = repr_items(c, b, s, "[", "]", 0))) return rc;
        return jj_buf_putc(c, b, ')');
    }
    case JV_MACRO: {
        const struct jnode *d = ((jmacro *)v.u.o)->def;
        int rc;
        if ((rc = jj_buf_put(c, b, "<Macro ", 7)) || (rc = repr_str(c, b, d->name->s, d->name->len))) return rc;
        return jj_buf_putc(c, b, '>');
    }
    case JV_LOOP: return loop_repr(c, b, v);
    case JV_FUNC: return jj_fail(c, AL_EUNSUP, "cannot print a function");
    default: break;
    }
    if (v.k == JV_NONE) return jj_buf_put(c, b, "None", 4);
    if (v.k == JV_BOOL) return v.u.i ? jj_buf_put(c, b, "True", 4) : jj_buf_put(c, b, "False", 5);
    if (v.k == JV_INT) {
        int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
        return jj_buf_put(c, b, tmp, (size_t)n);
    }
    jj_fmt_float(v.u.f, tmp);
    return jj_buf_put(c, b, tmp, strlen(tmp));
}

int jj_to_str(jctx *c, jbuf *b, jv v) {
    if (v.k == JV_UNDEF) return AL_OK;
    if (v.k == JV_STR) return jj_buf_put(c, b, jv_str(v)->s, jv_str(v)->len);
    return jj_repr(c, b, v);
}

int jj_stringify(jctx *c, jv v, jv *out) {
    if (v.k == JV_STR) {
        jj_incref(v);
        *out = v;
        return AL_OK;
    }
    jbuf b = {0};
    int rc = jj_to_str(c, &b, v);
    if (!rc) rc = jj_str_new(c, b.p ? b.p : "", b.n, out);
    c->mem -= b.cap < c->mem ? b.cap : c->mem;
    jj_buf_free(&b);
    return rc;
}

/* ---------------------------------------------------------------- json.dumps */
static int json_str(jctx *c, jbuf *b, const char *s, size_t n, int ascii) {
    int rc;
    if ((rc = jj_buf_putc(c, b, '"'))) return rc;
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(s + i, n - i, &cp);
        char esc[16];
        size_t el = 0;
        switch (cp) {
        case '"': memcpy(esc, "\\\"", 2); el = 2; break;
        case '\\': memcpy(esc, "\\\\", 2); el = 2; break;
        case '\n': memcpy(esc, "\\n", 2); el = 2; break;
        case '\r': memcpy(esc, "\\r", 2); el = 2; break;
        case '\t': memcpy(esc, "\\t", 2); el = 2; break;
        case '\b': memcpy(esc, "\\b", 2); el = 2; break;
        case '\f': memcpy(esc, "\\f", 2); el = 2; break;
        default:
            if (cp < 0x20 || (ascii && cp >= 0x7f)) {
                if (cp >= 0x10000) {
                    uint32_t v = cp - 0x10000;
                    el = (size_t)snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
                } else {
                    el = (size_t)snprintf(esc, sizeof esc, "\\u%04x", cp);
                }
            }
        }
        if (el) {
            if (run && (rc = jj_buf_put(c, b, s + i - run, run))) return rc;
            run = 0;
            if ((rc = jj_buf_put(c, b, esc, el))) return rc;
        } else {
            run += k;
        }
        i += k;
    }
    if (run && (rc = jj_buf_put(c, b, s + n - run, run))) return rc;
    return jj_buf_putc(c, b, '"');
}

static int json_float(jctx *c, jbuf *b, double d) {
    if (isnan(d)) return jj_buf_put(c, b, "NaN", 3);
    if (isinf(d)) return d < 0 ? jj_buf_put(c, b, "-Infinity", 9) : jj_buf_put(c, b, "Infinity", 8);
    char tmp[40];
    jj_fmt_float(d, tmp);
    return jj_buf_put(c, b, tmp, strlen(tmp));
}

static int json_newline(jctx *c, jbuf *b, const jj_json_opts *o, int level) {
    int rc = jj_buf_putc(c, b, '\n');
    for (int i = 0; !rc && i < level; i++) rc = jj_buf_put(c, b, o->indent, o->indent_len);
    return rc;
}

static int json_key(jctx *c, jbuf *b, jv k, const jj_json_opts *o) {
    char tmp[48];
    switch (k.k) {
    case JV_STR: return json_str(c, b, jv_str(k)->s, jv_str(k)->len, o->ensure_ascii);
    case JV_NONE: return jj_buf_put(c, b, "\"null\"", 6);
    case JV_BOOL: return k.u.i ? jj_buf_put(c, b, "\"true\"", 6) : jj_buf_put(c, b, "\"false\"", 7);
    case JV_INT: {
        int n = snprintf(tmp, sizeof tmp, "\"%lld\"", (long long)k.u.i);
        return jj_buf_put(c, b, tmp, (size_t)n);
    }
    case JV_FLOAT: {
        int rc;
        if ((rc = jj_buf_putc(c, b, '"')) || (rc = json_float(c, b, k.u.f))) return rc;
        return jj_buf_putc(c, b, '"');
    }
    default:
        return jj_fail(c, AL_EFORMAT, "keys must be str, int, float, bool or None, not %s", jj_type_name(k));
    }
}

int jj_tojson(jctx *c, jbuf *b, jv v, const jj_json_opts *o, int level) {
    char tmp[48];
    int rc;
    switch (v.k) {
    case JV_NONE: return jj_buf_put(c, b, "null", 4);
    case JV_BOOL: return v.u.i ? jj_buf_put(c, b, "true", 4) : jj_buf_put(c, b, "false", 5);
    case JV_INT: {
        int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
        return jj_buf_put(c, b, tmp, (size_t)n);
    }
    case JV_FLOAT: return json_float(c, b, v.u.f);
    case JV_STR: return json_str(c, b, jv_str(v)->s, jv_str(v)->len, o->ensure_ascii);
    case JV_LIST: case JV_TUPLE: {
        jseq *s = jv_seq(v);
        if (s->is_range) return jj_fail(c, AL_EFORMAT, "Object of type range is not JSON serializable");
        if (s->n == 0) return jj_buf_put(c, b, "[]", 2);
        if ((rc = jj_buf_putc(c, b, '['))) return rc;
        if (o->has_indent && (rc = json_newline(c, b, o, level + 1))) return rc;
        for (size_t i = 0; i < s->n; i++) {
            if (i) {
                if ((rc = jj_buf_put(c, b, o->item_sep, o->item_sep_len))) return rc;
                if (o->has_indent && (rc = json_newline(c, b, o, level + 1))) return rc;
            }
            if ((rc = jj_tojson(c, b, s->v[i], o, level + 1))) return rc;
        }
        if (o->has_indent && (rc = json_newline(c, b, o, level))) return rc;
        return jj_buf_putc(c, b, ']');
    }
    case JV_DICT: {
        jmap *m = jv_map(v);
        if (m->n == 0) return jj_buf_put(c, b, "{}", 2);
        size_t *ord = malloc(m->n * sizeof *ord);
        if (!ord) return jj_fail(c, AL_ENOMEM, "out of memory");
        for (size_t i = 0; i < m->n; i++) ord[i] = i;
        rc = AL_OK;
        if (o->sort_keys) { /* insertion sort: stable, and keys are few */
            for (size_t i = 1; i < m->n && !rc; i++) {
                size_t x = ord[i], j = i;
                while (j > 0) {
                    int r;
                    if ((rc = jj_cmp(c, m->key[ord[j - 1]], m->key[x], &r))) break;
                    if (r <= 0) break;
                    ord[j] = ord[j - 1];
                    j--;
                }
                ord[j] = x;
            }
        }
        if (!rc) rc = jj_buf_putc(c, b, '{');
        if (!rc && o->has_indent) rc = json_newline(c, b, o, level + 1);
        for (size_t i = 0; i < m->n && !rc; i++) {
            if (i) {
                rc = jj_buf_put(c, b, o->item_sep, o->item_sep_len);
                if (!rc && o->has_indent) rc = json_newline(c, b, o, level + 1);
                if (rc) break;
            }
            if ((rc = json_key(c, b, m->key[ord[i]], o))) break;
            if ((rc = jj_buf_put(c, b, o->key_sep, o->key_sep_len))) break;
            rc = jj_tojson(c, b, m->val[ord[i]], o, level + 1);
        }
        free(ord);
        if (!rc && o->has_indent) rc = json_newline(c, b, o, level);
        if (!rc) rc = jj_buf_putc(c, b, '}');
        return rc;
    }
    default:
        return jj_fail(c, AL_EFORMAT, "Object of type %s is not JSON serializable", jj_type_name(v));
    }
}

/* ---------------------------------------------------------------- iteration */
int jj_iter_list(jctx *c, jv v, jv *out) {
    int rc;
    switch (v.k) {
    case JV_UNDEF: return jj_seq_new(c, JV_LIST, 0, out);
    case JV_LIST: case JV_TUPLE: case JV_ITER: {
        jseq *s = jv_seq(v);
        if (s->lazy_err) return jj_fail(c, AL_EFORMAT, "%s", s->lazy_err);
        size_t from = (v.k == JV_ITER && s->sub == JI_GEN) ? s->pos : 0;
        if ((rc = jj_seq_new(c, JV_LIST, s->n - from, out))) return rc;
        for (size_t i = from; i < s->n; i++) {
            jj_incref(s->v[i]);
            if ((rc = jj_seq_push(c, jv_seq(*out), s->v[i]))) {
                jj_decref(c, *out);
                return rc;
            }
        }
        if (v.k == JV_ITER && s->sub == JI_GEN) s->pos = s->n;
        return AL_OK;
    }
    case JV_STR: {
        jstr *s = jv_str(v);
        if ((rc = jj_seq_new(c, JV_LIST, s->ncp, out))) return rc;
        for (size_t i = 0; i < s->len;) {
            uint32_t cp = 0;
            size_t k = jj_u8_dec(s->s + i, s->len - i, &cp);
            jv ch = {0};
            if ((rc = jj_str_new(c, s->s + i, k, &ch)) || (rc = jj_seq_push(c, jv_seq(*out), ch))) {
                jj_decref(c, *out);
                return rc;
            }
            i += k;
        }
        return AL_OK;
    }
    case JV_DICT: {
        jmap *m = jv_map(v);
        if ((rc = jj_seq_new(c, JV_LIST, m->n, out))) return rc;
        for (size_t i = 0; i < m->n; i++) {
            jj_incref(m->key[i]);
            if ((rc = jj_seq_push(c, jv_seq(*out), m->key[i]))) {
                jj_decref(c, *out);
                return rc;
            }
        }
        return AL_OK;
    }
    default:
        return jj_fail(c, AL_EFORMAT, "'%s' object is not iterable", jj_type_name(v));
    }
}

/* Jinja interpreter: the evaluator. Walks the AST with Python semantics.
 *
 * Scoping follows what jinja2's compiler generates: the template body has
 * one scope; every for-loop iteration, macro call, with-block, set-block,
 * filter-block and generation-block gets a fresh child scope, so a {% set %}
 * inside a loop body is gone at the next iteration and after the loop, while
 * {% if %} bodies share their enclosing scope. Names resolve through the
 * scope chain, then the caller's context, then the globals; names a frame
 * assigns before reading start out Undefined in that frame (computed by
 * parse.c), as jinja2's statically allocated locals do. Namespace
 * objects are shared by reference, which is how templates carry state out of
 * loops. break/continue travel up as JR_BREAK / JR_CONTINUE.
 *
 * Constant folding: jinja2 evaluates constant subexpressions at compile
 * time, where slicing a non-sequence yields Undefined instead of raising;
 * eval() tracks constness (c->cf) to reproduce that (see jinja_int.h).
 *
 * Generation spans mirror transformers' AssistantTracker: the span starts at
 * the length of the output already emitted at the top level (not inside a
 * macro or capture) and is recorded only once something has been emitted or
 * a span exists. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

static int eval(jctx *c, jmap *sc, const jnode *n, jv *out);
static int eval_root(jctx *c, jmap *sc, const jnode *n, jv *out, int is_output);
static int exec_body(jctx *c, jmap *sc, jnode *const *v, int n);

static int enter(jctx *c, const jnode *n) {
    if (++c->depth > JJ_DEPTH_MAX) return jj_fail(c, AL_ERANGE, "template recursion too deep");
    c->line = n->line;
    return AL_OK;
}

static int step(jctx *c) {
    if (++c->steps > JJ_STEPS_MAX) return jj_fail(c, AL_ERANGE, "template runs for more than %llu steps", (unsigned long long)JJ_STEPS_MAX);
    return AL_OK;
}

int jj_undef_error(jctx *c, jv u) {
    if (u.k == JV_UNDEF && u.u.o) return jj_fail(c, AL_EFORMAT, "%s", jv_str(u)->s);
    return jj_fail(c, AL_EFORMAT, "value is undefined");
}

/* ---------------------------------------------------------------- names */
static int lookup(jctx *c, jmap *sc, const jstr *name, jv *out) {
    for (jmap *s = sc; s; s = s->parent) {
        if (jj_map_get_name(s, name->s, name->len, out)) {
            jj_incref(*out);
            return AL_OK;
        }
    }
    if (c->vars && jj_map_get_name(c->vars, name->s, name->len, out)) {
        jj_incref(*out);
        return AL_OK;
    }
    int g = jj_global_id(name->s, name->len);
    if (g >= 0) return jj_func_new(c, g, jv_none(), out);
    return jj_undef_hint(c, out, "'%s' is undefined", name->s);
}

static jv name_key(const jstr *name);
static int frame_undefs(jctx *c, jmap *s, const jnode *f, int k) {
    for (int i = 0; i < f->nund[k]; i++) {
        jv u;
        int rc = jj_undef_hint(c, &u, "'%s' is undefined", f->und[k][i]->s);
        if (rc || (rc = jj_map_set(c, s, name_key(f->und[k][i]), u))) return rc;
    }
    return AL_OK;
}

static jv name_key(const jstr *name) {
    jv k = {0};
    k.k = JV_STR;
    k.u.o = (jo *)&name->h;
    return k;
}

static int set_name(jctx *c, jmap *sc, const jstr *name, jv val) {
    return jj_map_set(c, sc, name_key(name), val);
}

static int assign(jctx *c, jmap *sc, const jnode *t, jv val) {
    int rc;
    if (t->type == T_NAME) return set_name(c, sc, t->name, val);
    if (t->type == T_NSREF) {
        jv ns = {0};
        if ((rc = lookup(c, sc, t->name, &ns))) {
            jj_decref(c, val);
            return rc;
        }
        if (ns.k != JV_NS) {
            jj_decref(c, ns);
            jj_decref(c, val);
            return jj_fail(c, AL_EFORMAT, "cannot assign attribute on non-namespace object");
        }
        rc = jj_map_set(c, jv_map(ns), t->val, val);
        jj_decref(c, ns);
        return rc;
    }
    /* T_TUPLE: unpack */
    jv items = {0};
    if ((rc = jj_iter_list(c, val, &items))) {
        jj_decref(c, val);
        return rc;
    }
    jj_decref(c, val);
    jseq *s = jv_seq(items);
    if (s->n != (size_t)t->n) {
        rc = s->n < (size_t)t->n
                 ? jj_fail(c, AL_EFORMAT, "not enough values to unpack (expected %d, got %zu)", t->n, s->n)
                 : jj_fail(c, AL_EFORMAT, "too many values to unpack (expected %d)", t->n);
        jj_decref(c, items);
        return rc;
    }
    for (int i = 0; i < t->n && !rc; i++) {
        jj_incref(s->v[i]);
        rc = assign(c, sc, t->v[i], s->v[i]);
    }
    jj_decref(c, items);
    return rc;
}

/* ---------------------------------------------------------------- output */
static int emit_value(jctx *c, jv v) {
    int rc = jj_to_str(c, c->out, v);
    if (!rc && c->out == &c->root) c->root_emits++;
    return rc;
}

static void buf_release(jctx *c, jbuf *b) {
    c->mem -= b->cap < c->mem ? b->cap : c->mem;
    jj_buf_free(b);
}

/* a new scope for frame `f` (slot `k` of jnode.und): names the frame
 * assigns before reading start out undefined, as jinja2's compiler makes
 * them (VAR_LOAD_UNDEFINED), instead of showing an outer or context value */
static jmap *frame_scope(jctx *c, jmap *parent, const jnode *f, int k) {
    jmap *s = jj_scope_new(c, parent);
    if (!s) {
        jj_fail(c, AL_ENOMEM, "out of memory");
        return NULL;
    }
    if (frame_undefs(c, s, f, k)) {
        jj_scope_release(c, s);
        return NULL;
    }
    return s;
}

/* run frame f's body into a fresh buffer; returns the string. break and
 * continue propagate (set and filter blocks run inline in jinja2's code) */
static int capture(jctx *c, jmap *sc, const jnode *f, jv *out) {
    jmap *child = frame_scope(c, sc, f, 0);
    if (!child) return AL_ENOMEM;
    jbuf b = {0}, *saved = c->out;
    c->out = &b;
    int rc = exec_body(c, child, f->v, f->n);
    c->out = saved;
    jj_scope_release(c, child);
    if (!rc) rc = jj_str_new(c, b.p ? b.p : "", b.n, out);
    buf_release(c, &b);
    return rc;
}

/* ---------------------------------------------------------------- arguments */
typedef struct argbuf {
    jargs a;
    jv pos[16], kv[16];
    const jstr *kn[16];
    jv *hpos, *hkv;
    const jstr **hkn;
    jv hold; /* the ** mapping, whose key strings kn borrows */
    int cf;  /* every argument was a compile-time constant */
} argbuf;

static void args_free(jctx *c, argbuf *ab) {
    for (int i = 0; i < ab->a.npos; i++) jj_decref(c, ab->a.pos[i]);
    for (int i = 0; i < ab->a.nkw; i++) jj_decref(c, ab->a.kv[i]);
    free(ab->hpos);
    free(ab->hkv);
    free(ab->hkn);
    jj_decref(c, ab->hold);
}

static int args_eval(jctx *c, jmap *sc, const jnode *n, argbuf *ab) {
    int rc;
    memset(ab, 0, sizeof *ab);
    ab->hold = jv_undef();
    ab->cf = 1;
    size_t npos = (size_t)n->n, nkw = (size_t)n->m;
    jv dyn = jv_undef(), dynkw = jv_undef();
    if (n->c) {
        jv x = {0};
        if ((rc = eval(c, sc, n->c, &x))) return rc;
        ab->cf = ab->cf && c->cf;
        rc = jj_iter_list(c, x, &dyn);
        jj_decref(c, x);
        if (rc) return rc;
        npos += jv_seq(dyn)->n;
    }
    if (n->d) {
        if ((rc = eval(c, sc, n->d, &dynkw))) goto fail;
        ab->cf = ab->cf && c->cf;
        if (dynkw.k != JV_DICT) {
            rc = jj_fail(c, AL_EFORMAT, "argument after ** must be a mapping, not %s", jj_type_name(dynkw));
            goto fail;
        }
        nkw += jv_map(dynkw)->n;
    }
    ab->a.pos = ab->pos;
    ab->a.kv = ab->kv;
    ab->a.kn = ab->kn;
    if (npos > 16) {
        if (!(ab->hpos = malloc(npos * sizeof(jv)))) { rc = jj_fail(c, AL_ENOMEM, "out of memory"); goto fail; }
        ab->a.pos = ab->hpos;
    }
    if (nkw > 16) {
        ab->hkv = malloc(nkw * sizeof(jv));
        ab->hkn = malloc(nkw * sizeof(jstr *));
        if (!ab->hkv || !ab->hkn) { rc = jj_fail(c, AL_ENOMEM, "out of memory"); goto fail; }
        ab->a.kv = ab->hkv;
        ab->a.kn = ab->hkn;
    }
    for (int i = 0; i < n->n; i++) {
        if ((rc = eval(c, sc, n->v[i], &ab->a.pos[ab->a.npos]))) goto fail;
        ab->cf = ab->cf && c->cf;
        ab->a.npos++;
    }
    if (n->c) {
        jseq *s = jv_seq(dyn);
        for (size_t i = 0; i < s->n; i++) {
            jj_incref(s->v[i]);
            ab->a.pos[ab->a.npos++] = s->v[i];
        }
    }
    for (int i = 0; i < n->m; i++) {
        if ((rc = eval(c, sc, n->w[i], &ab->a.kv[ab->a.nkw]))) goto fail;
        ab->cf = ab->cf && c->cf;
        ab->a.kn[ab->a.nkw++] = n->kn[i];
    }
    if (n->d) {
        jmap *m = jv_map(dynkw);
        for (size_t i = 0; i < m->n; i++) {
            if (m->key[i].k != JV_STR) {
                rc = jj_fail(c, AL_EFORMAT, "keywords must be strings");
                goto fail;
            }
            jj_incref(m->val[i]);
            ab->a.kv[ab->a.nkw] = m->val[i];
            ab->a.kn[ab->a.nkw++] = jv_str(m->key[i]);
        }
    }
    ab->hold = dynkw; /* keep the ** mapping alive: kn borrows its keys */
    jj_decref(c, dyn);
    return AL_OK;
fail:
    jj_decref(c, dyn);
    jj_decref(c, dynkw);
    args_free(c, ab);
    return rc;
}

/* ---------------------------------------------------------------- macros */
static int call_macro(jctx *c, jmacro *mc, jargs *a, jv *out) {
    const jnode *d = mc->def;
    int rc;
    if ((rc = step(c))) return rc;
    if (c->macro_depth >= JJ_MACRO_DEPTH_MAX)
        return jj_fail(c, AL_ERANGE, "macro calls nested deeper than %d", JJ_MACRO_DEPTH_MAX);
    int nparams = d->m;
    jmap *sc = frame_scope(c, mc->closure, d, 0);
    if (!sc) return AL_ENOMEM;
    unsigned char bound[256];
    if (nparams > 256) {
        jj_scope_release(c, sc);
        return jj_fail(c, AL_EUNSUP, "too many macro parameters");
    }
    memset(bound, 0, sizeof bound);
    int npos = a->npos < nparams ? a->npos : nparams;
    for (int i = 0; i < npos && !rc; i++) {
        jj_incref(a->pos[i]);
        rc = set_name(c, sc, d->kn[i], a->pos[i]);
        bound[i] = 1;
    }
    jv kwdict = jv_undef();
    if (!rc && (d->flags & JF_KWARGS)) rc = jj_map_new(c, JV_DICT, &kwdict);
    for (int k = 0; k < a->nkw && !rc; k++) {
        int idx = -1;
        for (int i = npos; i < nparams; i++)
            if (d->kn[i]->len == a->kn[k]->len && memcmp(d->kn[i]->s, a->kn[k]->s, a->kn[k]->len) == 0) idx = i;
        if (idx >= 0 && !bound[idx]) {
            jj_incref(a->kv[k]);
            rc = set_name(c, sc, d->kn[idx], a->kv[k]);
            bound[idx] = 1;
        } else if (d->flags & JF_KWARGS) {
            jv key = {0};
            if (!(rc = jj_str_new(c, a->kn[k]->s, a->kn[k]->len, &key))) {
                jj_incref(a->kv[k]);
                rc = jj_map_set(c, jv_map(kwdict), key, a->kv[k]);
            }
        } else {
            rc = jj_fail(c, AL_EFORMAT, "macro '%s' takes no keyword argument '%s'", d->name->s, a->kn[k]->s);
        }
    }
    if (!rc && !(d->flags & JF_VARARGS) && a->npos > nparams)
        rc = jj_fail(c, AL_EFORMAT, "macro '%s' takes not more than %d argument(s)", d->name->s, nparams);
    for (int i = 0; i < nparams && !rc; i++) {
        if (bound[i]) continue;
        jv v = {0};
        if (d->w[i]) rc = eval_root(c, sc, d->w[i], &v, 0);
        else rc = jj_undef_hint(c, &v, "parameter '%s' was not provided", d->kn[i]->s);
        if (!rc) rc = set_name(c, sc, d->kn[i], v);
    }
    if (!rc && (d->flags & JF_VARARGS)) {
        jv va = {0};
        int extra = a->npos > nparams ? a->npos - nparams : 0;
        if (!(rc = jj_seq_new(c, JV_TUPLE, (size_t)extra, &va))) {
            for (int i = nparams; i < a->npos && !rc; i++) {
                jj_incref(a->pos[i]);
                rc = jj_seq_push(c, jv_seq(va), a->pos[i]);
            }
            if (!rc) rc = set_name(c, sc, c->t->k_varargs, va);
            else jj_decref(c, va);
        }
    }
    if (!rc && (d->flags & JF_KWARGS)) {
        rc = set_name(c, sc, c->t->k_kwargs, kwdict);
        kwdict = jv_undef();
    }
    jj_decref(c, kwdict);
    if (!rc) {
        c->macro_depth++;
        jbuf b = {0}, *saved = c->out;
        c->out = &b;
        rc = exec_body(c, sc, d->v, d->n);
        c->out = saved;
        c->macro_depth--;
        if (!rc) rc = jj_str_new(c, b.p ? b.p : "", b.n, out);
        buf_release(c, &b);
    }
    jj_scope_release(c, sc);
    return rc;
}

int jj_call_value(jctx *c, jv f, jargs *a, jv *out) {
    switch (f.k) {
    case JV_FUNC: return jj_call_func(c, (jfunc *)f.u.o, a, out);
    case JV_MACRO: return call_macro(c, (jmacro *)f.u.o, a, out);
    case JV_UNDEF: return jj_undef_error(c, f);
    default: return jj_fail(c, AL_EFORMAT, "'%s' object is not callable", jj_type_name(f));
    }
}

/* ---------------------------------------------------------------- arithmetic */
static int type_error2(jctx *c, const char *op, jv a, jv b) {
    return jj_fail(c, AL_EFORMAT, "unsupported operand type(s) for %s: '%s' and '%s'", op, jj_type_name(a),
                   jj_type_name(b));
}

static int seq_concat(jctx *c, jv a, jv b, jv *out) {
    jseq *x = jv_seq(a), *y = jv_seq(b);
    int rc = jj_seq_new(c, a.k, x->n + y->n, out);
    for (size_t i = 0; i < x->n && !rc; i++) {
        jj_incref(x->v[i]);
        rc = jj_seq_push(c, jv_seq(*out), x->v[i]);
    }
    for (size_t i = 0; i < y->n && !rc; i++) {
        jj_incref(y->v[i]);
        rc = jj_seq_push(c, jv_seq(*out), y->v[i]);
    }
    if (rc && out->u.o) jj_decref(c, *out);
    return rc;
}

static int repeat(jctx *c, jv s, int64_t times, jv *out) {
    if (times < 0) times = 0;
    int rc;
    if (s.k == JV_STR) {
        jstr *x = jv_str(s);
        if (x->len && (uint64_t)times > JJ_OUT_MAX / x->len) return jj_fail(c, AL_ERANGE, "string exceeds %zu bytes", JJ_OUT_MAX);
        jbuf b = {0};
        rc = AL_OK;
        for (int64_t i = 0; i < times && !rc; i++) rc = jj_buf_put(c, &b, x->s, x->len);
        if (!rc) rc = jj_str_new(c, b.p ? b.p : "", b.n, out);
        buf_release(c, &b);
        return rc;
    }
    jseq *x = jv_seq(s);
    if (x->n && (uint64_t)times > JJ_SEQ_MAX / x->n) return jj_fail(c, AL_ERANGE, "sequence longer than %zu", JJ_SEQ_MAX);
    if ((rc = jj_seq_new(c, s.k, x->n * (size_t)times, out))) return rc;
    for (int64_t t = 0; t < times && !rc; t++)
        for (size_t i = 0; i < x->n && !rc; i++) {
            jj_incref(x->v[i]);
            rc = jj_seq_push(c, jv_seq(*out), x->v[i]);
        }
    if (rc) jj_decref(c, *out);
    return rc;
}

static double py_fmod(double x, double y) {
    double mod = fmod(x, y);
    if (mod != 0.0) {
        if ((y < 0) != (mod < 0)) mod += y;
    } else {
        mod = copysign(0.0, y);
    }
    return mod;
}

static double py_floordiv(double x, double y) {
    double mod = fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0.0 && ((y < 0) != (mod < 0))) div -= 1.0;
    double fl = 0;
    if (div != 0.0) {
        fl = floor(div);
        if (div - fl > 0.5) fl += 1.0;
    } else {
        fl = copysign(0.0, x / y);
    }
    return fl;
}

int jj_binop(jctx *c, int op, jv a, jv b, jv *out) {
    static const char *names[] = {[OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
                                  [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "** or pow()"};
    if (a.k == JV_UNDEF) return jj_undef_error(c, a);
    if (op == OP_MOD && a.k == JV_STR) return jj_str_mod(c, a, b, out);
    if (b.k == JV_UNDEF) return jj_undef_error(c, b);
    if (jv_isnum(a) && jv_isnum(b)) {
        int isf = a.k == JV_FLOAT || b.k == JV_FLOAT;
        int64_t x = a.u.i, y = b.u.i, r;
        double fx = a.k == JV_FLOAT ? a.u.f : (double)a.u.i, fy = b.k == JV_FLOAT ? b.u.f : (double)b.u.i;
        switch (op) {
        case OP_ADD:
            if (isf) { *out = jv_float(fx + fy); return AL_OK; }
            if (__builtin_add_overflow(x, y, &r)) break;
            *out = jv_int(r);
            return AL_OK;
        case OP_SUB:
            if (isf) { *out = jv_float(fx - fy); return AL_OK; }
            if (__builtin_sub_overflow(x, y, &r)) break;
            *out = jv_int(r);
            return AL_OK;
        case OP_MUL:
            if (isf) { *out = jv_float(fx * fy); return AL_OK; }
            if (__builtin_mul_overflow(x, y, &r)) break;
            *out = jv_int(r);
            return AL_OK;
        case OP_DIV:
            if (fy == 0.0) return jj_fail(c, AL_EFORMAT, isf ? "float division by zero" : "division by zero");
            *out = jv_float(fx / fy);
            return AL_OK;
        case OP_FLOORDIV:
            if (isf) {
                if (fy == 0.0) return jj_fail(c, AL_EFORMAT, "float floor division by zero");
                *out = jv_float(py_floordiv(fx, fy));
                return AL_OK;
            }
            if (y == 0) return jj_fail(c, AL_EFORMAT, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) break;
            r = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) r--;
            *out = jv_int(r);
            return AL_OK;
        case OP_MOD:
            if (isf) {
                if (fy == 0.0) return jj_fail(c, AL_EFORMAT, "float modulo");
                *out = jv_float(py_fmod(fx, fy));
                return AL_OK;
            }
            if (y == 0) return jj_fail(c, AL_EFORMAT, "integer division or modulo by zero");
            if (y == -1) { *out = jv_int(0); return AL_OK; }
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
            *out = jv_int(r);
            return AL_OK;
        case OP_POW:
            if (!isf && y >= 0) {
                int64_t acc = 1, base = x, e = y;
                while (e) {
                    if (e & 1) {
                        if (__builtin_mul_overflow(acc, base, &acc)) goto overflow;
                    }
                    e >>= 1;
                    if (e && __builtin_mul_overflow(base, base, &base)) goto overflow;
                }
                *out = jv_int(acc);
                return AL_OK;
            }
            if (fx == 0.0 && fy < 0) return jj_fail(c, AL_EFORMAT, "0.0 cannot be raised to a negative power");
            if (fx < 0 && fy != floor(fy)) return jj_fail(c, AL_EUNSUP, "complex results are not supported");
            *out = jv_float(pow(fx, fy));
            if (isinf(out->u.f) && !isinf(fx) && !isinf(fy)) return jj_fail(c, AL_ERANGE, "(34, 'Numerical result out of range')");
            return AL_OK;
        }
    overflow:
        return jj_fail(c, AL_ERANGE, "integer overflow");
    }
    if (op == OP_ADD) {
        if (a.k == JV_STR && b.k == JV_STR)
            return jj_str_cat(c, jv_str(a)->s, jv_str(a)->len, jv_str(b)->s, jv_str(b)->len, out);
        if (((a.k == JV_LIST && b.k == JV_LIST) || (a.k == JV_TUPLE && b.k == JV_TUPLE)) && !jv_seq(a)->is_range &&
            !jv_seq(b)->is_range)
            return seq_concat(c, a, b, out);
        if (a.k == JV_STR)
            return jj_fail(c, AL_EFORMAT, "can only concatenate str (not \"%s\") to str", jj_type_name(b));
        if (a.k == JV_LIST && !jv_seq(a)->is_range)
            return jj_fail(c, AL_EFORMAT, "can only concatenate list (not \"%s\") to list", jj_type_name(b));
    }
    if (op == OP_MUL) {
        int ra = a.k == JV_LIST && jv_seq(a)->is_range, rb = b.k == JV_LIST && jv_seq(b)->is_range;
        if ((a.k == JV_STR || a.k == JV_LIST || a.k == JV_TUPLE) && !ra && (b.k == JV_INT || b.k == JV_BOOL))
            return repeat(c, a, b.u.i, out);
        if ((b.k == JV_STR || b.k == JV_LIST || b.k == JV_TUPLE) && !rb && (a.k == JV_INT || a.k == JV_BOOL))
            return repeat(c, b, a.u.i, out);
    }
    return type_error2(c, names[op], a, b);
}

/* ---------------------------------------------------------------- containment */
static int find_bytes(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn == 0) return 1;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == n[0] && memcmp(h + i, n, nn) == 0) return 1;
    return 0;
}

static int contains(jctx *c, jv container, jv item, int *out) {
    switch (container.k) {
    case JV_STR:
        if (item.k != JV_STR) {
            if (item.k == JV_UNDEF) return jj_undef_error(c, item);
            return jj_fail(c, AL_EFORMAT, "'in <string>' requires string as left operand, not %s", jj_type_name(item));
        }
        *out = find_bytes(jv_str(container)->s, jv_str(container)->len, jv_str(item)->s, jv_str(item)->len);
        return AL_OK;
    case JV_LIST: case JV_TUPLE: case JV_ITER: {
        jseq *s = jv_seq(container);
        if (s->lazy_err) return jj_fail(c, AL_EFORMAT, "%s", s->lazy_err);
        size_t from = (container.k == JV_ITER && s->sub == JI_GEN) ? s->pos : 0;
        *out = 0;
        for (size_t i = from; i < s->n; i++) {
            if (jj_eq(s->v[i], item)) {
                *out = 1;
                if (container.k == JV_ITER && s->sub == JI_GEN) s->pos = i + 1;
                return AL_OK;
            }
        }
        if (container.k == JV_ITER && s->sub == JI_GEN) s->pos = s->n;
        return AL_OK;
    }
    case JV_DICT: {
        if (!jj_hashable(item)) return jj_fail(c, AL_EFORMAT, "unhashable type: '%s'", jj_type_name(item));
        jv dummy = {0};
        *out = jj_map_get(jv_map(container), item, &dummy);
        return AL_OK;
    }
    case JV_UNDEF: *out = 0; return AL_OK;
    default:
        return jj_fail(c, AL_EFORMAT, "argument of type '%s' is not iterable", jj_type_name(container));
    }
}

/* ---------------------------------------------------------------- slices */
static int slice_index(jctx *c, const jnode *n, jmap *sc, int have, int64_t *out, int *present, int *cf) {
    *present = 0;
    if (!have) return AL_OK;
    jv v = {0};
    int rc = eval(c, sc, n, &v);
    if (rc) return rc;
    *cf = *cf && c->cf;
    if (v.k == JV_NONE) return AL_OK;
    if (v.k != JV_INT && v.k != JV_BOOL) {
        jj_decref(c, v);
        return jj_fail(c, AL_EFORMAT, "slice indices must be integers or None or have an __index__ method");
    }
    *out = v.u.i;
    *present = 1;
    return AL_OK;
}

static int do_slice(jctx *c, jmap *sc, jv obj, int *cf, const jnode *sl, jv *out) {
    int64_t start = 0, stop = 0, stp = 1;
    int hs, he, hp, rc, pc = 1;
    if ((rc = slice_index(c, sl->a, sc, sl->a != NULL, &start, &hs, &pc)) ||
        (rc = slice_index(c, sl->b, sc, sl->b != NULL, &stop, &he, &pc)) ||
        (rc = slice_index(c, sl->c, sc, sl->c != NULL, &stp, &hp, &pc)))
        return rc;
    *cf = *cf && pc;
    int obj_const = *cf;
    if (!hp) stp = 1;
    /* slices bypass environment.getitem in jinja2: Python's own errors surface,
     * except when the optimizer folds a constant slice (then: Undefined) */
    if (obj.k != JV_STR && obj.k != JV_LIST && obj.k != JV_TUPLE) {
        char msg[96];
        if (obj.k == JV_UNDEF) return jj_undef_error(c, obj); /* Undefined[...] raises, folded or not */
        if (obj.k == JV_DICT) snprintf(msg, sizeof msg, "unhashable type: 'slice'");
        else snprintf(msg, sizeof msg, "'%s' object is not subscriptable", jj_type_name(obj));
        if (!obj_const) return jj_fail(c, AL_EFORMAT, "%s", msg);
        if (!c->poison) snprintf(c->poison_msg, sizeof c->poison_msg, "%s", msg);
        c->poison = 1;
        return jj_undef_hint(c, out, "%s", msg);
    }
    if (stp == 0) return jj_fail(c, AL_EFORMAT, "slice step cannot be zero");
    int64_t len = obj.k == JV_STR ? (int64_t)jv_str(obj)->ncp : (int64_t)jv_seq(obj)->n;
    int64_t lower = stp > 0 ? 0 : -1, upper = stp > 0 ? len : len - 1;
    if (!hs) start = stp < 0 ? upper : lower;
    else {
        if (start < 0) start += len;
        if (start < lower) start = lower;
        else if (start > upper) start = upper;
    }
    if (!he) stop = stp < 0 ? lower : upper;
    else {
        if (stop < 0) stop += len;
        if (stop < lower) stop = lower;
        else if (stop > upper) stop = upper;
    }
    if (obj.k == JV_STR) {
        jstr *s = jv_str(obj);
        /* codepoint offsets */
        size_t *off = malloc(((size_t)len + 1) * sizeof *off);
        if (!off) return jj_fail(c, AL_ENOMEM, "out of memory");
        size_t k = 0;
        for (size_t i = 0; i < s->len; i++)
            if (((unsigned char)s->s[i] & 0xc0) != 0x80) off[k++] = i;
        off[k] = s->len;
        jbuf b = {0};
        rc = AL_OK;
        for (int64_t i = start; (stp > 0 ? i < stop : i > stop) && !rc; i += stp)
            rc = jj_buf_put(c, &b, s->s + off[i], off[i + 1] - off[i]);
        free(off);
        if (!rc) rc = jj_str_new(c, b.p ? b.p : "", b.n, out);
        buf_release(c, &b);
        return rc;
    }
    jseq *s = jv_seq(obj);
    if ((rc = jj_seq_new(c, obj.k, 0, out))) return rc;
    for (int64_t i = start; (stp > 0 ? i < stop : i > stop) && !rc; i += stp) {
        jj_incref(s->v[i]);
        rc = jj_seq_push(c, jv_seq(*out), s->v[i]);
    }
    if (rc) {
        jj_decref(c, *out);
        return rc;
    }
    if (s->is_range) { /* a slice of a range is a range */
        jseq *r = jv_seq(*out);
        r->is_range = 1;
        r->r_start = s->r_start + start * s->r_step;
        r->r_stop = s->r_start + stop * s->r_step;
        r->r_step = s->r_step * stp;
    }
    return AL_OK;
}

/* ---------------------------------------------------------------- expressions */
static int eval_filter(jctx *c, jmap *sc, const jnode *n, jv in, int in_cf, jv *out, int *cf) {
    if (n->fid < 0) return jj_fail(c, AL_EFORMAT, "No filter named '%s' found.", n->name->s);
    argbuf ab;
    int rc = args_eval(c, sc, n, &ab);
    if (rc) return rc;
    c->line = n->line;
    rc = jj_call_filter(c, n->fid, n->name->s, in, &ab.a, out);
    *cf = in_cf && ab.cf && jj_filter_foldable(n->fid);
    args_free(c, &ab);
    return rc;
}

/* a filter chain whose innermost input is `in` (filter blocks, set blocks):
 * never folded, so a pending constant slice in its arguments raises */
static int apply_chain(jctx *c, jmap *sc, const jnode *f, jv in, jv *out) {
    if (!f) {
        jj_incref(in);
        *out = in;
        return AL_OK;
    }
    jv x = {0};
    int cf, rc = apply_chain(c, sc, f->a, in, &x);
    if (rc) return rc;
    rc = eval_filter(c, sc, f, x, 0, out, &cf);
    jj_decref(c, x);
    if (!rc && c->poison) {
        c->poison = 0;
        jj_decref(c, *out);
        *out = jv_undef();
        rc = jj_fail(c, AL_EFORMAT, "%s", c->poison_msg);
    }
    return rc;
}

static int eval_cmp(jctx *c, jmap *sc, const jnode *n, jv *out, int *cf) {
    jv left = {0};
    int rc = eval(c, sc, n->a, &left);
    if (rc) return rc;
    *cf = c->cf;
    int result = 1;
    for (int i = 0; i < n->n && result; i++) {
        jv right = {0};
        if ((rc = eval(c, sc, n->v[i], &right))) break;
        *cf = *cf && c->cf;
        int r = 0, op = n->ops[i];
        switch (op) {
        case OP_EQ: result = jj_eq(left, right); break;
        case OP_NE: result = !jj_eq(left, right); break;
        case OP_IN: case OP_NOTIN:
            rc = contains(c, right, left, &r);
            result = op == OP_IN ? r : !r;
            break;
        default:
            rc = jj_cmp(c, left, right, &r);
            if (!rc && r == 2) result = 0;
            else if (!rc) result = op == OP_LT ? r < 0 : op == OP_LTEQ ? r <= 0 : op == OP_GT ? r > 0 : r >= 0;
            if (rc && strstr(c->err, "'<' not supported")) {
                static const char *sym[] = {[OP_LT] = "<", [OP_LTEQ] = "<=", [OP_GT] = ">", [OP_GTEQ] = ">="};
                jj_fail(c, AL_EFORMAT, "'%s' not supported between instances of '%s' and '%s'", sym[op],
                        jj_type_name(left), jj_type_name(right));
            }
        }
        jj_decref(c, left);
        left = right;
        if (rc) break;
    }
    jj_decref(c, left);
    if (rc) return rc;
    *out = jv_bool(result);
    return AL_OK;
}

/* what jinja2.nodes.Const.from_untrusted accepts (has_safe_repr) */
static int safe_repr(jv v) {
    switch (v.k) {
    case JV_NONE: case JV_BOOL: case JV_INT: case JV_FLOAT: case JV_STR: return 1;
    case JV_LIST: case JV_TUPLE: {
        jseq *s = jv_seq(v);
        for (size_t i = 0; i < s->n; i++)
            if (!safe_repr(s->v[i])) return 0;
        return 1;
    }
    case JV_DICT: {
        jmap *m = jv_map(v);
        for (size_t i = 0; i < m->n; i++)
            if (!safe_repr(m->key[i]) || !safe_repr(m->val[i])) return 0;
        return 1;
    }
    default: return 0;
    }
}

/* [a, b] and (a, b) literals; *cf: every item folds */
static int eval_seq(jctx *c, jmap *sc, const jnode *n, jv *out, int *cf) {
    int rc = jj_seq_new(c, n->type == E_LIST ? JV_LIST : JV_TUPLE, (size_t)n->n, out);
    if (rc) return rc;
    *cf = 1;
    for (int i = 0; i < n->n && !rc; i++) {
        jv x = {0};
        if (!(rc = eval(c, sc, n->v[i], &x))) {
            *cf = *cf && c->cf;
            rc = jj_seq_push(c, jv_seq(*out), x);
        }
    }
    if (rc) jj_decref(c, *out);
    return rc;
}

/* {k: v, ...} literals */
static int eval_dict(jctx *c, jmap *sc, const jnode *n, jv *out, int *cf) {
    int rc = jj_map_new(c, JV_DICT, out);
    if (rc) return rc;
    *cf = 1;
    for (int i = 0; i < n->n && !rc; i++) {
        jv k = {0}, v = {0};
        if ((rc = eval(c, sc, n->v[i], &k))) break;
        *cf = *cf && c->cf;
        if (!jj_hashable(k)) {
            rc = jj_fail(c, AL_EFORMAT, "unhashable type: '%s'", jj_type_name(k));
            jj_decref(c, k);
            break;
        }
        if ((rc = eval(c, sc, n->w[i], &v))) {
            jj_decref(c, k);
            break;
        }
        *cf = *cf && c->cf;
        rc = jj_map_set(c, jv_map(*out), k, v);
    }
    if (rc) jj_decref(c, *out);
    return rc;
}

/* x is test(args) */
static int eval_test(jctx *c, jmap *sc, const jnode *n, jv *out, int *cf) {
    if (n->fid < 0) return jj_fail(c, AL_EFORMAT, "No test named '%s' found.", n->name->s);
    jv a = jv_undef();
    int rc = eval(c, sc, n->a, &a);
    if (rc) return rc;
    *cf = c->cf;
    argbuf ab;
    if (!(rc = args_eval(c, sc, n, &ab))) {
        *cf = *cf && ab.cf;
        int r = 0;
        c->line = n->line;
        rc = jj_call_test(c, n->fid, n->name->s, a, &ab.a, &r);
        args_free(c, &ab);
        if (!rc) *out = jv_bool(r);
    }
    jj_decref(c, a);
    return rc;
}

/* a ~ b ~ ...: the str() of each, joined */
static int eval_concat(jctx *c, jmap *sc, const jnode *n, jv *out, int *cf) {
    jbuf buf = {0};
    int rc = AL_OK;
    *cf = 1;
    for (int i = 0; i < n->n && !rc; i++) {
        jv x = {0};
        if ((rc = eval(c, sc, n->v[i], &x))) break;
        *cf = *cf && c->cf;
        rc = jj_to_str(c, &buf, x);
        jj_decref(c, x);
    }
    if (!rc) rc = jj_str_new(c, buf.p ? buf.p : "", buf.n, out);
    buf_release(c, &buf);
    return rc;
}

static int eval(jctx *c, jmap *sc, const jnode *n, jv *out) {
    int rc;
    if ((rc = enter(c, n))) return rc;
    jv a = jv_undef(), b = jv_undef();
    int cf = 0; /* would jinja2's optimizer fold this node? */
    int outer_poison = c->poison; /* belongs to an earlier sibling, not to this subtree */
    c->poison = 0;
    switch (n->type) {
    case E_CONST:
        *out = n->val;
        jj_incref(*out);
        cf = 1;
        break;
    case E_NAME: rc = lookup(c, sc, n->name, out); break;
    case E_LIST: case E_TUPLE: rc = eval_seq(c, sc, n, out, &cf); break;
    case E_DICT: rc = eval_dict(c, sc, n, out, &cf); break;
    case E_GETATTR:
        if ((rc = eval(c, sc, n->a, &a))) break;
        cf = c->cf;
        c->line = n->line;
        rc = jj_getattr(c, a, n->name->s, n->name->len, out);
        break;
    case E_GETITEM:
        if ((rc = eval(c, sc, n->a, &a))) break;
        cf = c->cf;
        if (n->b->type == E_SLICE) {
            rc = do_slice(c, sc, a, &cf, n->b, out);
            break;
        }
        if ((rc = eval(c, sc, n->b, &b))) break;
        cf = cf && c->cf;
        c->line = n->line;
        rc = jj_getitem(c, a, b, out);
        break;
    case E_CALL: {
        if ((rc = eval(c, sc, n->a, &a))) break;
        argbuf ab;
        if ((rc = args_eval(c, sc, n, &ab))) break;
        c->line = n->line;
        rc = jj_call_value(c, a, &ab.a, out);
        args_free(c, &ab);
        break;
    }
    case E_FILTER:
        if ((rc = eval(c, sc, n->a, &a))) break;
        rc = eval_filter(c, sc, n, a, c->cf, out, &cf);
        break;
    case E_TEST: rc = eval_test(c, sc, n, out, &cf); break;
    case E_NEG: case E_POS:
        if ((rc = eval(c, sc, n->a, &a))) break;
        cf = c->cf;
        if (a.k == JV_UNDEF) rc = jj_undef_error(c, a);
        else if (a.k == JV_INT || a.k == JV_BOOL) {
            if (n->type == E_NEG && a.u.i == INT64_MIN) rc = jj_fail(c, AL_ERANGE, "integer overflow");
            else *out = jv_int(n->type == E_NEG ? -a.u.i : a.u.i);
        } else if (a.k == JV_FLOAT) *out = jv_float(n->type == E_NEG ? -a.u.f : a.u.f);
        else rc = jj_fail(c, AL_EFORMAT, "bad operand type for unary %s: '%s'", n->type == E_NEG ? "-" : "+", jj_type_name(a));
        break;
    case E_NOT: {
        if ((rc = eval(c, sc, n->a, &a))) break;
        cf = c->cf;
        int t;
        jj_truthy(c, a, &t);
        *out = jv_bool(!t);
        break;
    }
    case E_BIN:
        if ((rc = eval(c, sc, n->a, &a))) break;
        cf = c->cf;
        if ((rc = eval(c, sc, n->b, &b))) break;
        cf = cf && c->cf;
        c->line = n->line;
        rc = jj_binop(c, n->op, a, b, out);
        break;
    case E_CONCAT: rc = eval_concat(c, sc, n, out, &cf); break;
    case E_AND: case E_OR: {
        if ((rc = eval(c, sc, n->a, &a))) break;
        cf = c->cf;
        int t;
        jj_truthy(c, a, &t);
        if ((n->type == E_AND) != (t != 0)) {
            *out = a;
            a = jv_undef();
        } else {
            rc = eval(c, sc, n->b, out);
            cf = cf && c->cf;
        }
        break;
    }
    case E_CMP: rc = eval_cmp(c, sc, n, out, &cf); break;
    case E_COND: {
        if ((rc = eval(c, sc, n->a, &a))) break;
        cf = c->cf;
        int t;
        jj_truthy(c, a, &t);
        if (t) {
            rc = eval(c, sc, n->b, out);
            cf = cf && c->cf;
        } else if (n->c) {
            rc = eval(c, sc, n->c, out);
            cf = cf && c->cf;
        } else {
            rc = jj_undef_hint(c, out, "the inline if-expression on line %d evaluated to false and no else section was defined.", n->line);
            cf = 0;
        }
        break;
    }
    default:
        rc = jj_fail(c, AL_EINVAL, "internal: bad expression node %d", n->type);
    }
    jj_decref(c, a);
    jj_decref(c, b);
    c->depth--;
    if (!rc && c->poison) {
        /* a folded constant slice is only invisible while the optimizer can
         * fold it into a constant; a non-constant parent evaluates it at run
         * time, where Python raises */
        if (!cf) {
            c->poison = 0;
            jj_decref(c, *out);
            rc = jj_fail(c, AL_EFORMAT, "%s", c->poison_msg);
        } else if (safe_repr(*out)) {
            c->poison = 0;
        }
    }
    c->poison = c->poison || outer_poison;
    if (rc) *out = jv_undef(); /* callers may release *out unconditionally */
    c->cf = cf;
    return rc;
}

/* an expression at statement level; output expressions are folded even
 * when their value has no safe repr (CodeGenerator._output_child_to_const) */
static int eval_root(jctx *c, jmap *sc, const jnode *n, jv *out, int is_output) {
    int rc = eval(c, sc, n, out);
    if (!rc && c->poison) {
        c->poison = 0;
        if (!(is_output && c->cf)) {
            jj_decref(c, *out);
            *out = jv_undef();
            rc = jj_fail(c, AL_EFORMAT, "%s", c->poison_msg);
        }
    }
    return rc;
}

/* ---------------------------------------------------------------- statements */
/* jinja2 clears its "no iteration" flag at the end of the loop body, so the
 * else block also runs when every iteration ended in break or continue */
static int run_for_else(jctx *c, jmap *sc, const jnode *n) {
    if (!n->m) return AL_OK;
    jmap *es = frame_scope(c, sc, n, 1);
    if (!es) return AL_ENOMEM;
    int rc = exec_body(c, es, n->w, n->m);
    jj_scope_release(c, es);
    return rc;
}

static int exec_for(jctx *c, jmap *sc, const jnode *n) {
    jv it = {0}, items = {0};
    int rc = eval_root(c, sc, n->b, &it, 0);
    if (rc) return rc;
    rc = jj_iter_list(c, it, &items);
    jj_decref(c, it);
    if (rc) return rc;
    if (n->c) { /* loop filter: a scope with the target, without `loop` */
        jv kept = {0};
        if ((rc = jj_seq_new(c, JV_LIST, 0, &kept))) {
            jj_decref(c, items);
            return rc;
        }
        jseq *s = jv_seq(items);
        for (size_t i = 0; i < s->n && !rc; i++) {
            if ((rc = step(c))) break;
            jmap *ts = frame_scope(c, sc, n, 2);
            if (!ts) { rc = AL_ENOMEM; break; }
            jj_incref(s->v[i]);
            jv t = {0};
            if (!(rc = assign(c, ts, n->a, s->v[i])) && !(rc = eval_root(c, ts, n->c, &t, 0))) {
                int keep;
                jj_truthy(c, t, &keep);
                jj_decref(c, t);
                if (keep) {
                    jj_incref(s->v[i]);
                    rc = jj_seq_push(c, jv_seq(kept), s->v[i]);
                }
            }
            jj_scope_release(c, ts);
        }
        jj_decref(c, items);
        if (rc) {
            jj_decref(c, kept);
            return rc;
        }
        items = kept;
    }
    jseq *s = jv_seq(items);
    if (s->n == 0) {
        jj_decref(c, items);
        return run_for_else(c, sc, n);
    }
    jloop *l = jj_obj_alloc(c, sizeof(jloop), JO_LOOP, &rc);
    if (!l) {
        jj_decref(c, items);
        return rc;
    }
    l->items = s; /* takes the reference */
    l->last_changed = jv_undef();
    jv lv = {0};
    lv.k = JV_LOOP;
    lv.u.o = &l->h;
    jmap *is = NULL;
    int completed = 0;
    for (size_t i = 0; i < s->n; i++) {
        if ((rc = step(c))) break;
        l->idx = i;
        if (is && is->h.rc == 1) { /* nobody kept the last iteration's scope: reuse it */
            jj_map_clear(c, is);
            if ((rc = frame_undefs(c, is, n, 0))) break;
        } else {
            jj_scope_release(c, is);
            if (!(is = frame_scope(c, sc, n, 0))) { rc = AL_ENOMEM; break; }
        }
        jj_incref(s->v[i]);
        if (!(rc = assign(c, is, n->a, s->v[i]))) {
            jj_incref(lv);
            if (!(rc = set_name(c, is, c->t->k_loop, lv))) rc = exec_body(c, is, n->v, n->n);
        }
        if (rc == AL_OK) completed = 1;
        if (rc == JR_CONTINUE) rc = AL_OK;
        if (rc) break;
    }
    jj_scope_release(c, is);
    if (rc == JR_BREAK) rc = AL_OK;
    if (!rc && !completed) rc = run_for_else(c, sc, n);
    jj_decref(c, lv);
    return rc;
}

static int exec_stmt(jctx *c, jmap *sc, const jnode *n) {
    int rc;
    if ((rc = enter(c, n))) return rc;
    jv v = jv_undef();
    switch (n->type) {
    case S_BODY: rc = exec_body(c, sc, n->v, n->n); break;
    case S_DATA: rc = emit_value(c, n->val); break;
    case S_OUTPUT:
        if (!(rc = eval_root(c, sc, n->a, &v, 1))) rc = emit_value(c, v);
        break;
    case S_IF: {
        if ((rc = eval_root(c, sc, n->a, &v, 0))) break;
        int t;
        jj_truthy(c, v, &t);
        rc = t ? exec_body(c, sc, n->v, n->n) : exec_body(c, sc, n->w, n->m);
        break;
    }
    case S_FOR: rc = exec_for(c, sc, n); break;
    case S_SET:
        if (!(rc = eval_root(c, sc, n->b, &v, 0))) {
            rc = assign(c, sc, n->a, v);
            v = jv_undef();
        }
        break;
    case S_SETBLOCK: {
        jv s = {0};
        if ((rc = capture(c, sc, n, &s))) break;
        rc = apply_chain(c, sc, n->b, s, &v);
        jj_decref(c, s);
        if (!rc) {
            rc = assign(c, sc, n->a, v);
            v = jv_undef();
        }
        break;
    }
    case S_FILTERBLOCK: {
        jv s = {0};
        if ((rc = capture(c, sc, n, &s))) break;
        rc = apply_chain(c, sc, n->b, s, &v);
        jj_decref(c, s);
        if (!rc) rc = emit_value(c, v);
        break;
    }
    case S_MACRO: {
        jmacro *m = jj_obj_alloc(c, sizeof(jmacro), JO_MACRO, &rc);
        if (!m) break;
        m->def = n;
        m->closure = sc;
        if (sc->h.rc >= 0) sc->h.rc++;
        jv mv = {0};
        mv.k = JV_MACRO;
        mv.u.o = &m->h;
        rc = set_name(c, sc, n->name, mv);
        break;
    }
    case S_WITH: {
        jmap *ws = frame_scope(c, sc, n, 0);
        if (!ws) { rc = AL_ENOMEM; break; }
        jv *vals = calloc((size_t)n->nx + 1, sizeof(jv));
        if (!vals) rc = jj_fail(c, AL_ENOMEM, "out of memory");
        int got = 0;
        for (int i = 0; i < n->nx && !rc; i++) {
            if (!(rc = eval_root(c, sc, n->x[i], &vals[i], 0))) got++;
        }
        for (int i = 0; i < got; i++) {
            if (!rc) rc = assign(c, ws, n->w[i], vals[i]);
            else jj_decref(c, vals[i]);
        }
        free(vals);
        if (!rc) rc = exec_body(c, ws, n->v, n->n);
        jj_scope_release(c, ws);
        break;
    }
    case S_BREAK: rc = JR_BREAK; break;
    case S_CONTINUE: rc = JR_CONTINUE; break;
    case S_GEN: {
        if ((rc = capture(c, sc, n, &v))) break;
        if (c->root_emits > 0 || c->nspans > 0) {
            if (c->nspans == c->capspans) {
                int cap = c->capspans ? c->capspans * 2 : 8;
                al_span *ns = realloc(c->spans, (size_t)cap * sizeof *ns);
                if (!ns) { rc = jj_fail(c, AL_ENOMEM, "out of memory"); break; }
                c->spans = ns;
                c->capspans = cap;
            }
            c->spans[c->nspans].start = c->root.n;
            c->spans[c->nspans].end = c->root.n + jv_str(v)->len;
            c->nspans++;
        }
        rc = emit_value(c, v);
        break;
    }
    default: rc = jj_fail(c, AL_EINVAL, "internal: bad statement node %d", n->type);
    }
    jj_decref(c, v);
    c->depth--;
    return rc;
}

static int exec_body(jctx *c, jmap *sc, jnode *const *v, int n) {
    for (int i = 0; i < n; i++) {
        int rc = exec_stmt(c, sc, v[i]);
        if (rc) return rc;
    }
    return AL_OK;
}

int jj_render_root(jctx *c, const al_jinja *t, jmap *root) {
    int rc = frame_undefs(c, root, t->root, 0);
    if (!rc) rc = exec_stmt(c, root, t->root);
    if (rc == JR_BREAK || rc == JR_CONTINUE) rc = jj_fail(c, AL_EFORMAT, "loop control outside loop");
    return rc;
}

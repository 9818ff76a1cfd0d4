/* Jinja interpreter: the parser. Follows jinja2.parser (3.1) production by
 * production, so precedence and the odd corners match: filters bind tighter
 * than unary minus's operand ("-x|abs" is abs(-x)), "~" sits between "+" and
 * "*", "is" tests take one bare argument, "if" tests are tuples without
 * condexprs, and "for" iterables are parsed without condexprs so that a
 * trailing "if" filters the loop.
 *
 * jinja2 reports unknown filters and tests when it compiles the template,
 * except inside if-statements and conditional expressions ("soft" frames)
 * where it waits until the filter runs; a pass after parsing reproduces
 * that. Supported tags: if/elif/else, for/else (with loop filter), set
 * (incl. tuple targets, namespace attributes and block capture), macro,
 * filter, with, print, raw, break/continue (jinja2.ext.loopcontrols) and
 * generation (transformers' AssistantTracker). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

typedef struct parser {
    al_jinja *t;
    jarena *a;
    const jtok *tk;
    size_t n, i;
    char *err;
    int depth, loops;
} parser;

static int pfail(parser *P, int line, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int pfail(parser *P, int line, int rc, const char *fmt, ...) {
    char msg[AL_ERRLEN - 24];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(P->err, AL_ERRLEN, "line %d: %s", line, msg);
    return rc;
}

static const jtok *cur(parser *P) { return &P->tk[P->i]; }
static const jtok *look(parser *P) { return &P->tk[P->i + 1 < P->n ? P->i + 1 : P->i]; }
static void next(parser *P) {
    if (P->i + 1 < P->n) P->i++;
}

static int tok_is_name(const jtok *t, const char *s) {
    return t->type == TK_NAME && t->len == strlen(s) && memcmp(t->s, s, t->len) == 0;
}
static int tok_is_op(const jtok *t, int op) { return t->type == TK_OP && t->op == op; }

static const char *describe(const jtok *t, char buf[64]) {
    switch (t->type) {
    case TK_EOF: return "end of template";
    case TK_DATA: return "template data";
    case TK_VBEGIN: return "begin of print statement";
    case TK_VEND: return "end of print statement";
    case TK_BBEGIN: return "begin of statement block";
    case TK_BEND: return "end of statement block";
    case TK_STRING: return "string";
    case TK_INT: return "integer";
    case TK_FLOAT: return "float";
    case TK_NAME:
        snprintf(buf, 64, "%.*s", (int)(t->len > 60 ? 60 : t->len), t->s);
        return buf;
    default:
        return "operator";
    }
}

static int unexpected(parser *P) {
    char b[64];
    const jtok *t = cur(P);
    if (t->type == TK_EOF) return pfail(P, t->line, AL_EFORMAT, "unexpected end of template");
    return pfail(P, t->line, AL_EFORMAT, "unexpected '%s'", describe(t, b));
}

/* The current token is not the `what` expected. */
static int expected(parser *P, const char *what) {
    char b[64];
    const jtok *t = cur(P);
    if (t->type == TK_EOF) return pfail(P, t->line, AL_EFORMAT, "unexpected end of template, expected '%s'", what);
    return pfail(P, t->line, AL_EFORMAT, "expected token '%s', got '%s'", what, describe(t, b));
}

static int expect_op(parser *P, int op, const char *what) {
    if (!tok_is_op(cur(P), op)) return expected(P, what);
    next(P);
    return AL_OK;
}

static int expect_type(parser *P, int type, const char *what) {
    if (cur(P)->type != type) return expected(P, what);
    next(P);
    return AL_OK;
}

static jnode *mk(parser *P, int type, int line) {
    jnode *n = jj_arena_alloc(P->a, sizeof *n);
    if (!n) return NULL;
    n->type = type;
    n->line = line;
    n->fid = -1;
    return n;
}

static const jstr *mkname(parser *P, const jtok *t) { return jj_str_immortal(P->a, t->s, t->len); }

/* growable arena array */
typedef struct nvec { jnode **v; int n, cap; } nvec;
static int npush(parser *P, nvec *v, jnode *x) {
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 4;
        jnode **nv = jj_arena_alloc(P->a, (size_t)cap * sizeof *nv);
        if (!nv) return AL_ENOMEM;
        if (v->n) memcpy(nv, v->v, (size_t)v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return AL_OK;
}

#define NEW(var, type, line)                                                 \
    jnode *var = mk(P, type, line);                                          \
    if (!var) return AL_ENOMEM

static int parse_expression(parser *P, int with_condexpr, jnode **out);
static int parse_tuple(parser *P, int simplified, int with_condexpr, const char *extra_end,
                       int explicit_parens, jnode **out);
static int parse_unary(parser *P, int with_filter, jnode **out);
static int parse_primary(parser *P, jnode **out);
static int parse_postfix(parser *P, jnode *node, jnode **out);
static int parse_filter(parser *P, jnode *node, int start_inline, jnode **out);

static int parse_or(parser *P, jnode **out);

static int enter(parser *P) {
    if (++P->depth > JJ_PARSE_DEPTH_MAX) return pfail(P, cur(P)->line, AL_EFORMAT, "template nested too deeply");
    return AL_OK;
}

/* ---------------------------------------------------------------- expressions */
static int parse_condexpr(parser *P, jnode **out) {
    int rc;
    if ((rc = enter(P))) return rc;
    jnode *e1 = NULL;
    int line = cur(P)->line;
    if ((rc = parse_or(P, &e1))) return rc;
    while (tok_is_name(cur(P), "if")) {
        next(P);
        jnode *e2, *e3 = NULL;
        if ((rc = parse_or(P, &e2))) return rc;
        if (tok_is_name(cur(P), "else")) {
            next(P);
            if ((rc = parse_condexpr(P, &e3))) return rc;
        }
        NEW(c, E_COND, line);
        c->a = e2;
        c->b = e1;
        c->c = e3;
        e1 = c;
        line = cur(P)->line;
    }
    P->depth--;
    *out = e1;
    return AL_OK;
}

typedef int (*parse_fn)(parser *P, jnode **out);

/* operand (word operand)*, left-associative: `and`, `or` (kind E_AND, E_OR). */
static int parse_word_chain(parser *P, const char *word, int kind, parse_fn operand,
                            jnode **out) {
    int rc;
    jnode *l = NULL;
    if ((rc = operand(P, &l))) return rc;
    while (tok_is_name(cur(P), word)) {
        int line = cur(P)->line;
        next(P);
        jnode *r = NULL;
        if ((rc = operand(P, &r))) return rc;
        NEW(n, kind, line);
        n->a = l;
        n->b = r;
        l = n;
    }
    *out = l;
    return AL_OK;
}

static int parse_not(parser *P, jnode **out);
static int parse_and(parser *P, jnode **out) { return parse_word_chain(P, "and", E_AND, parse_not, out); }
static int parse_or(parser *P, jnode **out) { return parse_word_chain(P, "or", E_OR, parse_and, out); }

static int parse_math1(parser *P, jnode **out);
static int parse_compare(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    jnode *e = NULL;
    if ((rc = parse_math1(P, &e))) return rc;
    nvec vals = {0};
    int ops[64], nops = 0;
    for (;;) {
        const jtok *t = cur(P);
        int op = 0;
        if (t->type == TK_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == OP_LT || t->op == OP_LTEQ ||
                                 t->op == OP_GT || t->op == OP_GTEQ)) {
            op = t->op;
            next(P);
        } else if (tok_is_name(t, "in")) {
            op = OP_IN;
            next(P);
        } else if (tok_is_name(t, "not") && tok_is_name(look(P), "in")) {
            op = OP_NOTIN;
            next(P);
            next(P);
        } else {
            break;
        }
        if (nops >= 64) return pfail(P, t->line, AL_EFORMAT, "too many chained comparisons");
        jnode *r = NULL;
        if ((rc = parse_math1(P, &r)) || (rc = npush(P, &vals, r))) return rc;
        ops[nops++] = op;
    }
    if (!nops) {
        *out = e;
        return AL_OK;
    }
    NEW(n, E_CMP, line);
    n->a = e;
    n->v = vals.v;
    n->n = vals.n;
    n->ops = jj_arena_alloc(P->a, (size_t)nops * sizeof(int));
    if (!n->ops) return AL_ENOMEM;
    memcpy(n->ops, ops, (size_t)nops * sizeof(int));
    *out = n;
    return AL_OK;
}

static int parse_not(parser *P, jnode **out) {
    if (tok_is_name(cur(P), "not")) {
        int rc, line = cur(P)->line;
        if ((rc = enter(P))) return rc;
        next(P);
        jnode *x = NULL;
        if ((rc = parse_not(P, &x))) return rc;
        P->depth--;
        NEW(n, E_NOT, line);
        n->a = x;
        *out = n;
        return AL_OK;
    }
    return parse_compare(P, out);
}

/* operand (op operand)*, left-associative E_BIN nodes, op one of ops (0-ended). */
static int parse_bin_chain(parser *P, const int *ops, parse_fn operand, jnode **out) {
    int rc, line = cur(P)->line;
    jnode *l = NULL;
    if ((rc = operand(P, &l))) return rc;
    for (;;) {
        int op = 0;
        for (const int *o = ops; *o && !op; o++)
            if (tok_is_op(cur(P), *o)) op = *o;
        if (!op) break;
        next(P);
        jnode *r = NULL;
        if ((rc = operand(P, &r))) return rc;
        NEW(n, E_BIN, line);
        n->op = op;
        n->a = l;
        n->b = r;
        l = n;
        line = cur(P)->line;
    }
    *out = l;
    return AL_OK;
}

static int parse_unary_filtered(parser *P, jnode **out) { return parse_unary(P, 1, out); }

static int parse_pow(parser *P, jnode **out) {
    static const int ops[] = {OP_POW, 0};
    return parse_bin_chain(P, ops, parse_unary_filtered, out);
}

static int parse_math2(parser *P, jnode **out) {
    static const int ops[] = {OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, 0};
    return parse_bin_chain(P, ops, parse_pow, out);
}

static int parse_concat(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    jnode *first = NULL;
    if ((rc = parse_math2(P, &first))) return rc;
    if (!tok_is_op(cur(P), OP_TILDE)) {
        *out = first;
        return AL_OK;
    }
    nvec v = {0};
    if ((rc = npush(P, &v, first))) return rc;
    while (tok_is_op(cur(P), OP_TILDE)) {
        next(P);
        jnode *x = NULL;
        if ((rc = parse_math2(P, &x)) || (rc = npush(P, &v, x))) return rc;
    }
    NEW(n, E_CONCAT, line);
    n->v = v.v;
    n->n = v.n;
    *out = n;
    return AL_OK;
}

static int parse_math1(parser *P, jnode **out) {
    static const int ops[] = {OP_ADD, OP_SUB, 0};
    return parse_bin_chain(P, ops, parse_concat, out);
}

/* (args, kwargs, *dyn, **dyn) after '(' */
static int parse_call_args(parser *P, jnode *n) {
    int rc, line = cur(P)->line;
    if ((rc = expect_op(P, OP_LPAREN, "("))) return rc;
    nvec args = {0}, kwv = {0};
    const jstr **kn = NULL;
    int nk = 0, capk = 0, require_comma = 0;
    while (!tok_is_op(cur(P), OP_RPAREN)) {
        if (require_comma) {
            if ((rc = expect_op(P, OP_COMMA, ","))) return rc;
            if (tok_is_op(cur(P), OP_RPAREN)) break;
        }
        if (tok_is_op(cur(P), OP_MUL)) {
            if (n->c || n->d) return pfail(P, line, AL_EFORMAT, "invalid syntax for function call expression");
            next(P);
            if ((rc = parse_expression(P, 1, &n->c))) return rc;
        } else if (tok_is_op(cur(P), OP_POW)) {
            if (n->d) return pfail(P, line, AL_EFORMAT, "invalid syntax for function call expression");
            next(P);
            if ((rc = parse_expression(P, 1, &n->d))) return rc;
        } else if (cur(P)->type == TK_NAME && tok_is_op(look(P), OP_ASSIGN)) {
            if (n->d) return pfail(P, line, AL_EFORMAT, "invalid syntax for function call expression");
            const jstr *key = mkname(P, cur(P));
            if (!key) return AL_ENOMEM;
            next(P);
            next(P);
            jnode *val = NULL;
            if ((rc = parse_expression(P, 1, &val)) || (rc = npush(P, &kwv, val))) return rc;
            if (nk == capk) {
                int cap = capk ? capk * 2 : 4;
                const jstr **nn = jj_arena_alloc(P->a, (size_t)cap * sizeof *nn);
                if (!nn) return AL_ENOMEM;
                if (nk) memcpy(nn, kn, (size_t)nk * sizeof *nn);
                kn = nn;
                capk = cap;
            }
            kn[nk++] = key;
        } else {
            if (n->c || n->d || nk) return pfail(P, line, AL_EFORMAT, "invalid syntax for function call expression");
            jnode *x = NULL;
            if ((rc = parse_expression(P, 1, &x)) || (rc = npush(P, &args, x))) return rc;
        }
        require_comma = 1;
    }
    if ((rc = expect_op(P, OP_RPAREN, ")"))) return rc;
    n->v = args.v;
    n->n = args.n;
    n->w = kwv.v;
    n->m = kwv.n;
    n->kn = kn;
    return AL_OK;
}

static int parse_subscribed(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    jnode *parts[3] = {NULL, NULL, NULL};
    if (tok_is_op(cur(P), OP_COLON)) {
        next(P);
    } else {
        jnode *e = NULL;
        if ((rc = parse_expression(P, 1, &e))) return rc;
        if (!tok_is_op(cur(P), OP_COLON)) {
            *out = e;
            return AL_OK;
        }
        next(P);
        parts[0] = e;
    }
    if (!tok_is_op(cur(P), OP_COLON) && !tok_is_op(cur(P), OP_RBRACKET) && !tok_is_op(cur(P), OP_COMMA)) {
        if ((rc = parse_expression(P, 1, &parts[1]))) return rc;
    }
    if (tok_is_op(cur(P), OP_COLON)) {
        next(P);
        if (!tok_is_op(cur(P), OP_RBRACKET) && !tok_is_op(cur(P), OP_COMMA)) {
            if ((rc = parse_expression(P, 1, &parts[2]))) return rc;
        }
    }
    NEW(s, E_SLICE, line);
    s->a = parts[0];
    s->b = parts[1];
    s->c = parts[2];
    *out = s;
    return AL_OK;
}

static int parse_subscript(parser *P, jnode *node, jnode **out) {
    int rc;
    const jtok *t = cur(P);
    int line = t->line;
    next(P);
    if (t->op == OP_DOT) {
        const jtok *at = cur(P);
        next(P);
        if (at->type == TK_NAME) {
            NEW(n, E_GETATTR, line);
            n->a = node;
            if (!(n->name = mkname(P, at))) return AL_ENOMEM;
            *out = n;
            return AL_OK;
        }
        if (at->type != TK_INT) return pfail(P, at->line, AL_EFORMAT, "expected name or number");
        NEW(k, E_CONST, at->line);
        k->val = jv_int(at->i);
        NEW(n, E_GETITEM, line);
        n->a = node;
        n->b = k;
        *out = n;
        return AL_OK;
    }
    /* '[' */
    nvec args = {0};
    while (!tok_is_op(cur(P), OP_RBRACKET)) {
        if (args.n && (rc = expect_op(P, OP_COMMA, ","))) return rc;
        jnode *x = NULL;
        if ((rc = parse_subscribed(P, &x)) || (rc = npush(P, &args, x))) return rc;
    }
    if ((rc = expect_op(P, OP_RBRACKET, "]"))) return rc;
    jnode *arg = NULL;
    if (args.n == 1) {
        arg = args.v[0];
    } else {
        arg = mk(P, E_TUPLE, line);
        if (!arg) return AL_ENOMEM;
        arg->v = args.v;
        arg->n = args.n;
    }
    NEW(n, E_GETITEM, line);
    n->a = node;
    n->b = arg;
    *out = n;
    return AL_OK;
}

/* *node(args...): *node becomes the call. */
static int parse_call(parser *P, jnode **node) {
    NEW(c, E_CALL, cur(P)->line);
    c->a = *node;
    int rc = parse_call_args(P, c);
    if (rc) return rc;
    *node = c;
    return AL_OK;
}

static int parse_postfix(parser *P, jnode *node, jnode **out) {
    int rc;
    for (;;) {
        const jtok *t = cur(P);
        if (tok_is_op(t, OP_DOT) || tok_is_op(t, OP_LBRACKET)) {
            if ((rc = parse_subscript(P, node, &node))) return rc;
        } else if (tok_is_op(t, OP_LPAREN)) {
            if ((rc = parse_call(P, &node))) return rc;
        } else {
            break;
        }
    }
    *out = node;
    return AL_OK;
}

static int dotted_name(parser *P, const jstr **out) {
    const jtok *t = cur(P);
    if (t->type != TK_NAME) return expect_type(P, TK_NAME, "name");
    char buf[256];
    size_t n = 0;
    for (;;) {
        t = cur(P);
        if (t->type != TK_NAME) return expect_type(P, TK_NAME, "name");
        if (n + t->len + 1 >= sizeof buf) return pfail(P, t->line, AL_EFORMAT, "name too long");
        memcpy(buf + n, t->s, t->len);
        n += t->len;
        next(P);
        if (!tok_is_op(cur(P), OP_DOT)) break;
        next(P);
        buf[n++] = '.';
    }
    *out = jj_str_immortal(P->a, buf, n);
    return *out ? AL_OK : AL_ENOMEM;
}

static int parse_filter(parser *P, jnode *node, int start_inline, jnode **out) {
    int rc;
    while (tok_is_op(cur(P), OP_PIPE) || start_inline) {
        if (!start_inline) next(P);
        start_inline = 0;
        int line = cur(P)->line;
        NEW(f, E_FILTER, line);
        if ((rc = dotted_name(P, &f->name))) return rc;
        f->fid = jj_filter_id(f->name->s, f->name->len);
        f->a = node;
        if (tok_is_op(cur(P), OP_LPAREN) && (rc = parse_call_args(P, f))) return rc;
        node = f;
    }
    *out = node;
    return AL_OK;
}

static int parse_test(parser *P, jnode *node, jnode **out) {
    int rc, line = cur(P)->line;
    next(P); /* 'is' */
    int negated = 0;
    if (tok_is_name(cur(P), "not")) {
        next(P);
        negated = 1;
    }
    NEW(t, E_TEST, line);
    t->a = node;
    if ((rc = dotted_name(P, &t->name))) return rc;
    t->fid = jj_test_id(t->name->s, t->name->len);
    const jtok *c = cur(P);
    if (tok_is_op(c, OP_LPAREN)) {
        if ((rc = parse_call_args(P, t))) return rc;
    } else if ((c->type == TK_NAME || c->type == TK_STRING || c->type == TK_INT || c->type == TK_FLOAT ||
                tok_is_op(c, OP_LPAREN) || tok_is_op(c, OP_LBRACKET) || tok_is_op(c, OP_LBRACE)) &&
               !tok_is_name(c, "else") && !tok_is_name(c, "or") && !tok_is_name(c, "and")) {
        if (tok_is_name(c, "is")) return pfail(P, c->line, AL_EFORMAT, "You cannot chain multiple tests with is");
        jnode *arg = NULL;
        if ((rc = parse_primary(P, &arg)) || (rc = parse_postfix(P, arg, &arg))) return rc;
        t->v = jj_arena_alloc(P->a, sizeof(jnode *));
        if (!t->v) return AL_ENOMEM;
        t->v[0] = arg;
        t->n = 1;
    }
    if (negated) {
        NEW(n, E_NOT, line);
        n->a = t;
        *out = n;
        return AL_OK;
    }
    *out = t;
    return AL_OK;
}

static int parse_filter_expr(parser *P, jnode *node, jnode **out) {
    int rc;
    for (;;) {
        const jtok *t = cur(P);
        if (tok_is_op(t, OP_PIPE)) {
            if ((rc = parse_filter(P, node, 0, &node))) return rc;
        } else if (tok_is_name(t, "is")) {
            if ((rc = parse_test(P, node, &node))) return rc;
        } else if (tok_is_op(t, OP_LPAREN)) {
            if ((rc = parse_call(P, &node))) return rc;
        } else {
            break;
        }
    }
    *out = node;
    return AL_OK;
}

static int parse_unary(parser *P, int with_filter, jnode **out) {
    int rc;
    if ((rc = enter(P))) return rc;
    const jtok *t = cur(P);
    jnode *node = NULL;
    if (tok_is_op(t, OP_SUB) || tok_is_op(t, OP_ADD)) {
        int type = t->op == OP_SUB ? E_NEG : E_POS, line = t->line;
        next(P);
        jnode *x = NULL;
        if ((rc = parse_unary(P, 0, &x))) return rc;
        node = mk(P, type, line);
        if (!node) return AL_ENOMEM;
        node->a = x;
    } else {
        if ((rc = parse_primary(P, &node))) return rc;
    }
    if ((rc = parse_postfix(P, node, &node))) return rc;
    if (with_filter && (rc = parse_filter_expr(P, node, &node))) return rc;
    P->depth--;
    *out = node;
    return AL_OK;
}

static int parse_list(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    next(P);
    nvec v = {0};
    while (!tok_is_op(cur(P), OP_RBRACKET)) {
        if (v.n && (rc = expect_op(P, OP_COMMA, ","))) return rc;
        if (tok_is_op(cur(P), OP_RBRACKET)) break;
        jnode *x = NULL;
        if ((rc = parse_expression(P, 1, &x)) || (rc = npush(P, &v, x))) return rc;
    }
    if ((rc = expect_op(P, OP_RBRACKET, "]"))) return rc;
    NEW(n, E_LIST, line);
    n->v = v.v;
    n->n = v.n;
    *out = n;
    return AL_OK;
}

static int parse_dict(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    next(P);
    nvec k = {0}, v = {0};
    while (!tok_is_op(cur(P), OP_RBRACE)) {
        if (k.n && (rc = expect_op(P, OP_COMMA, ","))) return rc;
        if (tok_is_op(cur(P), OP_RBRACE)) break;
        jnode *key, *val;
        if ((rc = parse_expression(P, 1, &key))) return rc;
        if ((rc = expect_op(P, OP_COLON, ":"))) return rc;
        if ((rc = parse_expression(P, 1, &val))) return rc;
        if ((rc = npush(P, &k, key)) || (rc = npush(P, &v, val))) return rc;
    }
    if ((rc = expect_op(P, OP_RBRACE, "}"))) return rc;
    NEW(n, E_DICT, line);
    n->v = k.v;
    n->n = k.n;
    n->w = v.v;
    n->m = v.n;
    *out = n;
    return AL_OK;
}

static int parse_primary(parser *P, jnode **out) {
    int rc;
    const jtok *t = cur(P);
    switch (t->type) {
    case TK_NAME: {
        NEW(n, E_CONST, t->line);
        if (tok_is_name(t, "true") || tok_is_name(t, "True")) n->val = jv_bool(1);
        else if (tok_is_name(t, "false") || tok_is_name(t, "False")) n->val = jv_bool(0);
        else if (tok_is_name(t, "none") || tok_is_name(t, "None")) n->val = jv_none();
        else {
            n->type = E_NAME;
            if (!(n->name = mkname(P, t))) return AL_ENOMEM;
        }
        next(P);
        *out = n;
        return AL_OK;
    }
    case TK_STRING: {
        int line = t->line;
        size_t total = 0, j;
        for (j = P->i; P->tk[j].type == TK_STRING; j++) total += P->tk[j].len;
        char *buf = jj_arena_alloc(P->a, total + 1);
        if (!buf) return AL_ENOMEM;
        size_t o = 0;
        while (cur(P)->type == TK_STRING) {
            memcpy(buf + o, cur(P)->s, cur(P)->len);
            o += cur(P)->len;
            next(P);
        }
        NEW(n, E_CONST, line);
        jstr *s = jj_str_immortal(P->a, buf, o);
        if (!s) return AL_ENOMEM;
        n->val.k = JV_STR;
        n->val.u.o = &s->h;
        *out = n;
        return AL_OK;
    }
    case TK_INT: case TK_FLOAT: {
        NEW(n, E_CONST, t->line);
        n->val = t->type == TK_INT ? jv_int(t->i) : jv_float(t->f);
        next(P);
        *out = n;
        return AL_OK;
    }
    case TK_OP:
        if (t->op == OP_LPAREN) {
            next(P);
            if ((rc = parse_tuple(P, 0, 1, NULL, 1, out))) return rc;
            return expect_op(P, OP_RPAREN, ")");
        }
        if (t->op == OP_LBRACKET) return parse_list(P, out);
        if (t->op == OP_LBRACE) return parse_dict(P, out);
        break;
    default: break;
    }
    return unexpected(P);
}

static int parse_expression(parser *P, int with_condexpr, jnode **out) {
    int rc;
    if ((rc = enter(P))) return rc;
    rc = with_condexpr ? parse_condexpr(P, out) : parse_or(P, out);
    P->depth--;
    return rc;
}

static int is_tuple_end(parser *P, const char *extra_end) {
    const jtok *t = cur(P);
    if (t->type == TK_VEND || t->type == TK_BEND || tok_is_op(t, OP_RPAREN)) return 1;
    return extra_end && tok_is_name(t, extra_end);
}

static int parse_tuple(parser *P, int simplified, int with_condexpr, const char *extra_end,
                       int explicit_parens, jnode **out) {
    int rc, line = cur(P)->line;
    nvec v = {0};
    int is_tuple = 0;
    for (;;) {
        if (v.n && (rc = expect_op(P, OP_COMMA, ","))) return rc;
        if (is_tuple_end(P, extra_end)) break;
        jnode *x = NULL;
        if (simplified) rc = parse_primary(P, &x);
        else rc = parse_expression(P, with_condexpr, &x);
        if (rc || (rc = npush(P, &v, x))) return rc;
        if (tok_is_op(cur(P), OP_COMMA)) is_tuple = 1;
        else break;
        line = cur(P)->line;
    }
    if (!is_tuple) {
        if (v.n) {
            *out = v.v[0];
            return AL_OK;
        }
        if (!explicit_parens) {
            char b[64];
            return pfail(P, cur(P)->line, AL_EFORMAT, "Expected an expression, got '%s'", describe(cur(P), b));
        }
    }
    NEW(n, E_TUPLE, line);
    n->v = v.v;
    n->n = v.n;
    *out = n;
    return AL_OK;
}

/* ---------------------------------------------------------------- targets */
static int to_target(parser *P, jnode *e) {
    if (e->type == E_NAME) {
        e->type = T_NAME;
        return AL_OK;
    }
    if (e->type == E_TUPLE) {
        for (int i = 0; i < e->n; i++) {
            int rc = to_target(P, e->v[i]);
            if (rc) return rc;
        }
        e->type = T_TUPLE;
        return AL_OK;
    }
    return pfail(P, e->line, AL_EFORMAT, "can't assign to '%s'", e->type == E_CONST ? "const" : "expression");
}

static int parse_assign_target(parser *P, int with_tuple, int name_only, const char *extra_end,
                               int with_namespace, jnode **out) {
    int rc;
    const jtok *t = cur(P);
    if (with_namespace && tok_is_op(look(P), OP_DOT)) {
        if (t->type != TK_NAME) return expect_type(P, TK_NAME, "name");
        NEW(n, T_NSREF, t->line);
        if (!(n->name = mkname(P, t))) return AL_ENOMEM;
        next(P);
        next(P);
        const jtok *at = cur(P);
        if ((rc = expect_type(P, TK_NAME, "name"))) return rc;
        jstr *an = jj_str_immortal(P->a, at->s, at->len);
        if (!an) return AL_ENOMEM;
        n->val.k = JV_STR;
        n->val.u.o = &an->h;
        *out = n;
        return AL_OK;
    }
    if (name_only) {
        if (t->type != TK_NAME) return expect_type(P, TK_NAME, "name");
        NEW(n, T_NAME, t->line);
        if (!(n->name = mkname(P, t))) return AL_ENOMEM;
        next(P);
        *out = n;
        return AL_OK;
    }
    jnode *e = NULL;
    if (with_tuple) rc = parse_tuple(P, 1, 1, extra_end, 0, &e);
    else rc = parse_primary(P, &e);
    if (rc) return rc;
    if ((rc = to_target(P, e))) return rc;
    *out = e;
    return AL_OK;
}

/* ---------------------------------------------------------------- statements */
static int subparse(parser *P, const char *const *ends, int nends, nvec *body);

static int at_end_tag(parser *P, const char *const *ends, int nends) {
    for (int k = 0; k < nends; k++)
        if (tok_is_name(cur(P), ends[k])) return 1;
    return 0;
}

static int fail_eof(parser *P, const char *const *ends, int nends) {
    char want[160] = "";
    for (int k = 0; k < nends; k++) {
        size_t l = strlen(want);
        snprintf(want + l, sizeof want - l, "%s'%s'", k ? " or " : "", ends[k]);
    }
    return pfail(P, cur(P)->line, AL_EFORMAT,
                 "Unexpected end of template. Jinja was looking for the following tags: %s.", want);
}

/* ':'? block_end body <end tag name> */
static int parse_statements(parser *P, const char *const *ends, int nends, int drop_needle, jnode ***v, int *n) {
    int rc;
    if (tok_is_op(cur(P), OP_COLON)) next(P);
    if ((rc = expect_type(P, TK_BEND, "end of statement block"))) return rc;
    nvec body = {0};
    if ((rc = subparse(P, ends, nends, &body))) return rc;
    if (cur(P)->type == TK_EOF) return fail_eof(P, ends, nends);
    if (drop_needle) next(P);
    *v = body.v;
    *n = body.n;
    return AL_OK;
}

static int parse_statement(parser *P, jnode **out);

static int parse_for(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    next(P);
    NEW(n, S_FOR, line);
    if ((rc = parse_assign_target(P, 1, 0, "in", 0, &n->a))) return rc;
    if (!tok_is_name(cur(P), "in")) return expect_type(P, -1, "in");
    next(P);
    if ((rc = parse_tuple(P, 0, 0, "recursive", 0, &n->b))) return rc;
    if (tok_is_name(cur(P), "if")) {
        next(P);
        if ((rc = parse_expression(P, 1, &n->c))) return rc;
    }
    if (tok_is_name(cur(P), "recursive"))
        return pfail(P, cur(P)->line, AL_EUNSUP, "recursive for-loops are not supported");
    static const char *const ends1[] = {"endfor", "else"};
    P->loops++;
    rc = parse_statements(P, ends1, 2, 0, &n->v, &n->n);
    P->loops--;
    if (rc) return rc;
    int is_end = tok_is_name(cur(P), "endfor");
    next(P);
    if (!is_end) {
        static const char *const ends2[] = {"endfor"};
        if ((rc = parse_statements(P, ends2, 1, 1, &n->w, &n->m))) return rc;
    }
    *out = n;
    return AL_OK;
}

static int parse_if(parser *P, jnode **out) {
    int rc;
    static const char *const ends1[] = {"elif", "else", "endif"};
    static const char *const ends2[] = {"endif"};
    NEW(top, S_IF, cur(P)->line);
    next(P);
    jnode *node = top;
    for (;;) {
        if ((rc = parse_tuple(P, 0, 0, NULL, 0, &node->a))) return rc;
        if ((rc = parse_statements(P, ends1, 3, 0, &node->v, &node->n))) return rc;
        const jtok *t = cur(P);
        next(P);
        if (tok_is_name(t, "elif")) {
            jnode *e = mk(P, S_IF, cur(P)->line);
            if (!e) return AL_ENOMEM;
            e->flags |= JF_ELIF;
            node->w = jj_arena_alloc(P->a, sizeof(jnode *));
            if (!node->w) return AL_ENOMEM;
            node->w[0] = e;
            node->m = 1;
            node = e;
            continue;
        }
        if (tok_is_name(t, "else")) {
            if ((rc = parse_statements(P, ends2, 1, 1, &node->w, &node->m))) return rc;
        }
        break;
    }
    *out = top;
    return AL_OK;
}

static int parse_set(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    next(P);
    jnode *target = NULL;
    if ((rc = parse_assign_target(P, 1, 0, NULL, 1, &target))) return rc;
    if (tok_is_op(cur(P), OP_ASSIGN)) {
        next(P);
        NEW(n, S_SET, line);
        n->a = target;
        if ((rc = parse_tuple(P, 0, 1, NULL, 0, &n->b))) return rc;
        *out = n;
        return AL_OK;
    }
    NEW(n, S_SETBLOCK, line);
    n->a = target;
    if ((rc = parse_filter(P, NULL, 0, &n->b))) return rc;
    static const char *const ends[] = {"endset"};
    if ((rc = parse_statements(P, ends, 1, 1, &n->v, &n->n))) return rc;
    *out = n;
    return AL_OK;
}

static void find_names(const jnode *n, int *flags) {
    if (!n) return;
    if (n->type == E_NAME && n->name) {
        if (n->name->len == 7 && memcmp(n->name->s, "varargs", 7) == 0) *flags |= JF_VARARGS;
        if (n->name->len == 6 && memcmp(n->name->s, "kwargs", 6) == 0) *flags |= JF_KWARGS;
    }
    find_names(n->a, flags);
    find_names(n->b, flags);
    find_names(n->c, flags);
    find_names(n->d, flags);
    for (int i = 0; i < n->n; i++) find_names(n->v[i], flags);
    for (int i = 0; i < n->m; i++) find_names(n->w[i], flags);
    for (int i = 0; i < n->nx; i++) find_names(n->x[i], flags);
}

static int parse_macro(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    next(P);
    NEW(n, S_MACRO, line);
    jnode *name = NULL;
    if ((rc = parse_assign_target(P, 1, 1, NULL, 0, &name))) return rc;
    n->name = name->name;
    if ((rc = expect_op(P, OP_LPAREN, "("))) return rc;
    nvec defs = {0};
    const jstr **kn = NULL;
    int cap = 0, have_default = 0;
    while (!tok_is_op(cur(P), OP_RPAREN)) {
        if (defs.n && (rc = expect_op(P, OP_COMMA, ","))) return rc;
        jnode *arg = NULL;
        if ((rc = parse_assign_target(P, 1, 1, NULL, 0, &arg))) return rc;
        jnode *def = NULL;
        if (tok_is_op(cur(P), OP_ASSIGN)) {
            next(P);
            if ((rc = parse_expression(P, 1, &def))) return rc;
            have_default = 1;
        } else if (have_default) {
            return pfail(P, arg->line, AL_EFORMAT, "non-default argument follows default argument");
        }
        if (defs.n == cap) {
            int nc = cap ? cap * 2 : 4;
            const jstr **nn = jj_arena_alloc(P->a, (size_t)nc * sizeof *nn);
            if (!nn) return AL_ENOMEM;
            if (defs.n) memcpy(nn, kn, (size_t)defs.n * sizeof *nn);
            kn = nn;
            cap = nc;
        }
        kn[defs.n] = arg->name;
        if ((rc = npush(P, &defs, def))) return rc;
    }
    next(P);
    n->kn = kn;
    n->w = defs.v;
    n->m = defs.n;
    static const char *const ends[] = {"endmacro"};
    int saved = P->loops;
    P->loops = 0;
    rc = parse_statements(P, ends, 1, 1, &n->v, &n->n);
    P->loops = saved;
    if (rc) return rc;
    for (int i = 0; i < n->n; i++) find_names(n->v[i], &n->flags);
    *out = n;
    return AL_OK;
}

static int parse_with(parser *P, jnode **out) {
    int rc, line = cur(P)->line;
    next(P);
    NEW(n, S_WITH, line);
    nvec targets = {0}, values = {0};
    while (cur(P)->type != TK_BEND) {
        if (targets.n && (rc = expect_op(P, OP_COMMA, ","))) return rc;
        jnode *t, *v;
        if ((rc = parse_assign_target(P, 1, 0, NULL, 0, &t))) return rc;
        if ((rc = expect_op(P, OP_ASSIGN, "="))) return rc;
        if ((rc = parse_expression(P, 1, &v))) return rc;
        if ((rc = npush(P, &targets, t)) || (rc = npush(P, &values, v))) return rc;
    }
    n->w = targets.v;
    n->m = targets.n;
    n->x = values.v;
    n->nx = values.n;
    static const char *const ends[] = {"endwith"};
    if ((rc = parse_statements(P, ends, 1, 1, &n->v, &n->n))) return rc;
    *out = n;
    return AL_OK;
}

static int parse_statement(parser *P, jnode **out) {
    int rc;
    const jtok *t = cur(P);
    if (t->type != TK_NAME) return pfail(P, t->line, AL_EFORMAT, "tag name expected");
    if ((rc = enter(P))) return rc;
    if (tok_is_name(t, "for")) rc = parse_for(P, out);
    else if (tok_is_name(t, "if")) rc = parse_if(P, out);
    else if (tok_is_name(t, "set")) rc = parse_set(P, out);
    else if (tok_is_name(t, "macro")) rc = parse_macro(P, out);
    else if (tok_is_name(t, "with")) rc = parse_with(P, out);
    else if (tok_is_name(t, "print")) {
        next(P);
        nvec v = {0};
        while (cur(P)->type != TK_BEND && !rc) {
            if (v.n && (rc = expect_op(P, OP_COMMA, ","))) break;
            jnode *e = NULL;
            if (!(rc = parse_expression(P, 1, &e))) rc = npush(P, &v, e);
        }
        if (!rc) {
            jnode *b = mk(P, S_BODY, t->line);
            if (!b) return AL_ENOMEM;
            for (int i = 0; i < v.n; i++) {
                jnode *o = mk(P, S_OUTPUT, t->line);
                if (!o) return AL_ENOMEM;
                o->a = v.v[i];
                v.v[i] = o;
            }
            b->v = v.v;
            b->n = v.n;
            *out = b;
        }
    } else if (tok_is_name(t, "filter")) {
        next(P);
        NEW(n, S_FILTERBLOCK, t->line);
        static const char *const ends[] = {"endfilter"};
        if (!(rc = parse_filter(P, NULL, 1, &n->b))) rc = parse_statements(P, ends, 1, 1, &n->v, &n->n);
        *out = n;
    } else if (tok_is_name(t, "break") || tok_is_name(t, "continue")) {
        int is_break = tok_is_name(t, "break");
        if (!P->loops) return pfail(P, t->line, AL_EFORMAT, "'%s' outside loop", is_break ? "break" : "continue");
        next(P);
        NEW(n, is_break ? S_BREAK : S_CONTINUE, t->line);
        *out = n;
    } else if (tok_is_name(t, "generation")) {
        next(P);
        NEW(n, S_GEN, t->line);
        static const char *const ends[] = {"endgeneration"};
        int saved = P->loops;
        P->loops = 0;
        rc = parse_statements(P, ends, 1, 1, &n->v, &n->n);
        P->loops = saved;
        *out = n;
    } else if (tok_is_name(t, "block") || tok_is_name(t, "extends") || tok_is_name(t, "include") ||
               tok_is_name(t, "import") || tok_is_name(t, "from") || tok_is_name(t, "call") ||
               tok_is_name(t, "autoescape")) {
        return pfail(P, t->line, AL_EUNSUP, "tag '%.*s' is not supported", (int)t->len, t->s);
    } else {
        return pfail(P, t->line, AL_EFORMAT, "Encountered unknown tag '%.*s'.", (int)(t->len > 60 ? 60 : t->len), t->s);
    }
    P->depth--;
    return rc;
}

static int subparse(parser *P, const char *const *ends, int nends, nvec *body) {
    int rc;
    for (;;) {
        const jtok *t = cur(P);
        if (t->type == TK_EOF) return AL_OK;
        if (t->type == TK_DATA) {
            NEW(d, S_DATA, t->line);
            jstr *s = jj_str_immortal(P->a, t->s, t->len);
            if (!s) return AL_ENOMEM;
            d->val.k = JV_STR;
            d->val.u.o = &s->h;
            if ((rc = npush(P, body, d))) return rc;
            next(P);
        } else if (t->type == TK_VBEGIN) {
            next(P);
            NEW(o, S_OUTPUT, t->line);
            if ((rc = parse_tuple(P, 0, 1, NULL, 0, &o->a))) return rc;
            if ((rc = expect_type(P, TK_VEND, "end of print statement"))) return rc;
            if ((rc = npush(P, body, o))) return rc;
        } else if (t->type == TK_BBEGIN) {
            next(P);
            if (nends && at_end_tag(P, ends, nends)) return AL_OK;
            jnode *s = NULL;
            if ((rc = parse_statement(P, &s))) return rc;
            if ((rc = npush(P, body, s))) return rc;
            if ((rc = expect_type(P, TK_BEND, "end of statement block"))) return rc;
        } else {
            return unexpected(P);
        }
    }
}

/* ---------------------------------------------------------------- validation */
static int check(parser *P, const jnode *n, int soft) {
    if (!n) return AL_OK;
    int rc;
    if ((n->type == E_FILTER || n->type == E_TEST) && n->fid < 0 && !soft)
        return pfail(P, n->line, AL_EFORMAT, "No %s named '%s'.", n->type == E_FILTER ? "filter" : "test", n->name->s);
    int sa = soft, sb = soft, sc = soft, sv = soft, sw = soft, sx = soft;
    switch (n->type) {
    case E_COND: sa = sb = sc = 1; break;
    case S_IF: sa = sv = sw = 1; break;
    case S_FOR: sc = sv = sw = 0; break;
    case S_SETBLOCK: case S_FILTERBLOCK: sb = sv = 0; break;
    case S_WITH: sv = sw = 0; break;
    case S_MACRO: sv = sw = 0; break;
    case S_GEN: sv = 0; break;
    default: break;
    }
    if ((rc = check(P, n->a, sa)) || (rc = check(P, n->b, sb)) || (rc = check(P, n->c, sc)) ||
        (rc = check(P, n->d, soft)))
        return rc;
    for (int i = 0; i < n->n; i++)
        if ((rc = check(P, n->v[i], sv))) return rc;
    for (int i = 0; i < n->m; i++)
        if ((rc = check(P, n->w[i], sw))) return rc;
    for (int i = 0; i < n->nx; i++)
        if ((rc = check(P, n->x[i], sx))) return rc;
    return AL_OK;
}

/* ---------------------------------------------------------------- symbol analysis
 * jinja2 compiles every frame (the template, a for-loop body, its else and
 * filter parts, a macro, with/set/filter blocks, call blocks) to Python
 * locals whose initial value is decided statically (idtracking.py): a name
 * first read resolves from the context, a name first assigned aliases the
 * enclosing frame's variable if that frame knows the name, and otherwise
 * starts undefined, even when the context has a value under that name. The
 * evaluator looks names up dynamically through the scope chain, so here we
 * only need the last kind: each frame gets the list of names to pre-set to
 * Undefined (jnode.und). Branches of an if count as in jinja2: a name set in
 * only some branches resolves/aliases instead. */
enum { A_RESOLVE = 1, A_ALIAS, A_UNDEF, A_PARAM };

typedef struct symtab {
    struct symtab *parent;
    const jstr **name;
    int *action;
    int n, cap;
    const jstr **store;
    int ns, caps;
} symtab;

static int same(const jstr *a, const jstr *b) { return a->len == b->len && memcmp(a->s, b->s, a->len) == 0; }

static int sym_own(const symtab *t, const jstr *nm) {
    for (int i = 0; i < t->n; i++)
        if (same(t->name[i], nm)) return i;
    return -1;
}

static int sym_has_ref(const symtab *t, const jstr *nm) {
    for (; t; t = t->parent)
        if (sym_own(t, nm) >= 0) return 1;
    return 0;
}

static int sym_stored(const symtab *t, const jstr *nm) {
    for (int i = 0; i < t->ns; i++)
        if (same(t->store[i], nm)) return 1;
    return 0;
}

static int sym_define(symtab *t, const jstr *nm, int action) {
    int i = sym_own(t, nm);
    if (i >= 0) {
        t->action[i] = action;
        return AL_OK;
    }
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 8;
        const jstr **nn = realloc(t->name, (size_t)cap * sizeof *nn);
        if (!nn) return AL_ENOMEM;
        t->name = nn;
        int *na = realloc(t->action, (size_t)cap * sizeof *na);
        if (!na) return AL_ENOMEM;
        t->action = na;
        t->cap = cap;
    }
    t->name[t->n] = nm;
    t->action[t->n++] = action;
    return AL_OK;
}

static int sym_add_store(symtab *t, const jstr *nm) {
    if (sym_stored(t, nm)) return AL_OK;
    if (t->ns == t->caps) {
        int cap = t->caps ? t->caps * 2 : 8;
        const jstr **ns = realloc(t->store, (size_t)cap * sizeof *ns);
        if (!ns) return AL_ENOMEM;
        t->store = ns;
        t->caps = cap;
    }
    t->store[t->ns++] = nm;
    return AL_OK;
}

static int sym_load(symtab *t, const jstr *nm) { return sym_has_ref(t, nm) ? AL_OK : sym_define(t, nm, A_RESOLVE); }

static int sym_store(symtab *t, const jstr *nm) {
    int rc = sym_add_store(t, nm);
    if (rc || sym_own(t, nm) >= 0) return rc;
    return sym_define(t, nm, t->parent && sym_has_ref(t->parent, nm) ? A_ALIAS : A_UNDEF);
}

static int sym_param(symtab *t, const jstr *nm) {
    int rc = sym_add_store(t, nm);
    return rc ? rc : sym_define(t, nm, A_PARAM);
}

static void sym_free(symtab *t) {
    free(t->name);
    free(t->action);
    free(t->store);
}

static int sym_copy(const symtab *t, symtab *out) {
    memset(out, 0, sizeof *out);
    out->parent = t->parent;
    int rc = AL_OK;
    for (int i = 0; i < t->n && !rc; i++) rc = sym_define(out, t->name[i], t->action[i]);
    for (int i = 0; i < t->ns && !rc; i++) rc = sym_add_store(out, t->store[i]);
    return rc;
}

/* Symbols.branch_update */
static int sym_branch_update(symtab *t, symtab *br, int nb) {
    int rc = AL_OK;
    const jstr **cand = NULL;
    int *count = NULL, nc = 0, cap = 0;
    for (int b = 0; b < nb && !rc; b++)
        for (int i = 0; i < br[b].ns && !rc; i++) {
            const jstr *nm = br[b].store[i];
            if (sym_stored(t, nm)) continue;
            int k;
            for (k = 0; k < nc && !same(cand[k], nm); k++) {}
            if (k == nc) {
                if (nc == cap) {
                    cap = cap ? cap * 2 : 8;
                    const jstr **c2 = realloc(cand, (size_t)cap * sizeof *c2);
                    int *n2 = c2 ? realloc(count, (size_t)cap * sizeof *n2) : NULL;
                    if (c2) cand = c2;
                    if (!c2 || !n2) { rc = AL_ENOMEM; break; }
                    count = n2;
                }
                cand[nc] = nm;
                count[nc++] = 0;
            }
            count[k]++;
        }
    for (int b = 0; b < nb && !rc; b++) {
        for (int i = 0; i < br[b].n && !rc; i++) rc = sym_define(t, br[b].name[i], br[b].action[i]);
        for (int i = 0; i < br[b].ns && !rc; i++) rc = sym_add_store(t, br[b].store[i]);
    }
    for (int k = 0; k < nc && !rc; k++) {
        if (count[k] == nb) continue;
        rc = sym_define(t, cand[k], t->parent && sym_has_ref(t->parent, cand[k]) ? A_ALIAS : A_RESOLVE);
    }
    free(cand);
    free(count);
    return rc;
}

/* FrameSymbolVisitor over expressions and assignment targets */
static int fsv_expr(symtab *t, const jnode *e) {
    if (!e) return AL_OK;
    switch (e->type) {
    case E_NAME: return sym_load(t, e->name);
    case T_NAME: return sym_store(t, e->name);
    case T_NSREF: return sym_load(t, e->name);
    default: break;
    }
    int rc;
    if ((rc = fsv_expr(t, e->a)) || (rc = fsv_expr(t, e->b)) || (rc = fsv_expr(t, e->c)) || (rc = fsv_expr(t, e->d)))
        return rc;
    for (int i = 0; i < e->n; i++)
        if ((rc = fsv_expr(t, e->v[i]))) return rc;
    for (int i = 0; i < e->m; i++)
        if ((rc = fsv_expr(t, e->w[i]))) return rc;
    return AL_OK;
}

static int fsv_params(symtab *t, const jnode *target) {
    if (target->type == T_NAME) return sym_param(t, target->name);
    for (int i = 0; i < target->n; i++) {
        int rc = fsv_params(t, target->v[i]);
        if (rc) return rc;
    }
    return AL_OK;
}

static int fsv_stmts(symtab *t, jnode *const *v, int n);

/* visit_If over jinja2's node shape: test, body, elif_ (a list of If nodes
 * without elif/else of their own), else_ */
static int fsv_if(symtab *t, const jnode *test, jnode *const *body, int nbody, const jnode *const *elifs, int nelif,
                  jnode *const *els, int nels) {
    int rc = fsv_expr(t, test);
    if (rc) return rc;
    symtab br[3];
    memset(br, 0, sizeof br);
    if (!(rc = sym_copy(t, &br[0]))) rc = fsv_stmts(&br[0], body, nbody);
    if (!rc && !(rc = sym_copy(t, &br[1])))
        for (int i = 0; i < nelif && !rc; i++) rc = fsv_if(&br[1], elifs[i]->a, elifs[i]->v, elifs[i]->n, NULL, 0, NULL, 0);
    if (!rc && !(rc = sym_copy(t, &br[2]))) rc = fsv_stmts(&br[2], els, nels);
    if (!rc) rc = sym_branch_update(t, br, 3);
    for (int i = 0; i < 3; i++) sym_free(&br[i]);
    return rc;
}

static int fsv_stmt(symtab *t, const jnode *s) {
    int rc;
    switch (s->type) {
    case S_BODY: return fsv_stmts(t, s->v, s->n);
    case S_OUTPUT: return fsv_expr(t, s->a);
    case S_SET: return (rc = fsv_expr(t, s->b)) ? rc : fsv_expr(t, s->a);
    case S_SETBLOCK: return fsv_expr(t, s->a);
    case S_FOR: return fsv_expr(t, s->b);
    case S_MACRO: return sym_store(t, s->name);
    case S_FILTERBLOCK: return fsv_expr(t, s->b);
    case S_WITH:
        for (int i = 0; i < s->nx; i++)
            if ((rc = fsv_expr(t, s->x[i]))) return rc;
        return AL_OK;
    case S_IF: {
        int nelif = 0;
        const jnode *last = s;
        while (last->m == 1 && (last->w[0]->flags & JF_ELIF)) {
            last = last->w[0];
            nelif++;
        }
        const jnode **elifs = malloc(((size_t)nelif + 1) * sizeof *elifs);
        if (!elifs) return AL_ENOMEM;
        last = s;
        for (int i = 0; i < nelif; i++) elifs[i] = last = last->w[0];
        rc = fsv_if(t, s->a, s->v, s->n, elifs, nelif, last->w, last->m);
        free(elifs);
        return rc;
    }
    default: return AL_OK;
    }
}

static int fsv_stmts(symtab *t, jnode *const *v, int n) {
    for (int i = 0; i < n; i++) {
        int rc = fsv_stmt(t, v[i]);
        if (rc) return rc;
    }
    return AL_OK;
}

static int analyze_frame(parser *P, jnode *f, int slot, symtab *parent);

static int find_frames(parser *P, jnode *const *v, int n, symtab *t) {
    int rc = AL_OK;
    for (int i = 0; i < n && !rc; i++) {
        jnode *s = v[i];
        switch (s->type) {
        case S_IF:
            if (!(rc = find_frames(P, s->v, s->n, t))) rc = find_frames(P, s->w, s->m, t);
            break;
        case S_FOR:
            if (!(rc = analyze_frame(P, s, 0, t)) && s->m) rc = analyze_frame(P, s, 1, t);
            if (!rc && s->c) rc = analyze_frame(P, s, 2, t);
            break;
        case S_MACRO: case S_WITH: case S_SETBLOCK: case S_FILTERBLOCK: case S_GEN:
            rc = analyze_frame(P, s, 0, t);
            break;
        default: break;
        }
    }
    return rc;
}

static int analyze_frame(parser *P, jnode *f, int slot, symtab *parent) {
    symtab t;
    memset(&t, 0, sizeof t);
    t.parent = parent;
    jnode *const *body = f->v;
    int nbody = f->n, rc = AL_OK;
    switch (f->type) {
    case S_FOR:
        if (slot == 0) {
            rc = fsv_params(&t, f->a);
            if (!rc && P->t->k_loop) rc = sym_param(&t, P->t->k_loop);
            if (!rc) rc = fsv_stmts(&t, body, nbody);
        } else if (slot == 1) {
            body = f->w;
            nbody = f->m;
            rc = fsv_stmts(&t, body, nbody);
        } else {
            body = NULL;
            nbody = 0;
            if (!(rc = fsv_params(&t, f->a))) rc = fsv_expr(&t, f->c);
        }
        break;
    case S_MACRO:
        for (int i = 0; i < f->m && !rc; i++) rc = sym_param(&t, f->kn[i]);
        for (int i = 0; i < f->m && !rc; i++) rc = fsv_expr(&t, f->w[i]);
        if (!rc) rc = fsv_stmts(&t, body, nbody);
        if (!rc && (f->flags & JF_KWARGS)) rc = sym_param(&t, P->t->k_kwargs);
        if (!rc && (f->flags & JF_VARARGS)) rc = sym_param(&t, P->t->k_varargs);
        break;
    case S_WITH:
        for (int i = 0; i < f->m && !rc; i++) rc = fsv_params(&t, f->w[i]);
        if (!rc) rc = fsv_stmts(&t, body, nbody);
        break;
    case S_FILTERBLOCK:
        if (!(rc = fsv_stmts(&t, body, nbody))) rc = fsv_expr(&t, f->b);
        break;
    default: /* root, set blocks, generation */
        rc = fsv_stmts(&t, body, nbody);
        break;
    }
    int nu = 0;
    for (int i = 0; i < t.n && !rc; i++) nu += t.action[i] == A_UNDEF;
    if (!rc && nu) {
        f->und[slot] = jj_arena_alloc(P->a, (size_t)nu * sizeof(jstr *));
        if (!f->und[slot]) rc = AL_ENOMEM;
        for (int i = 0; i < t.n && !rc; i++)
            if (t.action[i] == A_UNDEF) f->und[slot][f->nund[slot]++] = t.name[i];
    }
    if (!rc) rc = find_frames(P, body, nbody, &t);
    sym_free(&t);
    return rc;
}

int jj_parse(al_jinja *t, const jtok *toks, size_t ntok, char err[AL_ERRLEN]) {
    parser P = {0};
    P.t = t;
    P.a = &t->arena;
    P.tk = toks;
    P.n = ntok;
    P.err = err;
    nvec body = {0};
    int rc = subparse(&P, NULL, 0, &body);
    if (!rc && cur(&P)->type != TK_EOF) rc = unexpected(&P);
    if (rc) {
        if (rc == AL_ENOMEM) snprintf(err, AL_ERRLEN, "out of memory");
        return rc;
    }
    jnode *root = mk(&P, S_BODY, 1);
    if (!root) return AL_ENOMEM;
    root->v = body.v;
    root->n = body.n;
    if ((rc = check(&P, root, 0))) return rc;
    t->k_loop = jj_str_immortal(P.a, "loop", 4);
    t->k_varargs = jj_str_immortal(P.a, "varargs", 7);
    t->k_kwargs = jj_str_immortal(P.a, "kwargs", 6);
    if (!t->k_loop || !t->k_varargs || !t->k_kwargs) return AL_ENOMEM;
    if ((rc = analyze_frame(&P, root, 0, NULL))) {
        if (rc == AL_ENOMEM) snprintf(err, AL_ERRLEN, "out of memory");
        return rc;
    }
    t->root = root;
    return AL_OK;
}

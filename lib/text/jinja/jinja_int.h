/* Internals of the Jinja interpreter (lib/text/jinja_*.c); not a public API.
 *
 * Pipeline: lex.c turns the source into tokens exactly as jinja2's
 * lexer does with trim_blocks=True, lstrip_blocks=True; parse.c builds
 * an AST (arena-allocated, immutable after parsing); eval.c walks it
 * with Python value semantics; value.c holds the value model (refcounted
 * objects, str()/repr(), comparisons, tojson); builtins.c the filters,
 * tests, globals and the str/dict/list methods.
 *
 * Values: a jv is a small tagged union. Strings, sequences, mappings, bound
 * functions, macros and loop contexts are refcounted heap objects (jo). AST
 * constants are immortal (rc < 0) so that concurrent renders of one parsed
 * template never write to shared memory. Reference cycles can only pass
 * through mutable objects (namespaces and scopes); these are tracked per
 * render and torn down at its end. */
#ifndef AL_JINJA_INT_H
#define AL_JINJA_INT_H

#include <stdint.h>
#include <stddef.h>

#include "../../buf.h"
#include "../unicode.h"
#include "jinja.h"

/* ---------------------------------------------------------------- limits */
/* The budget of one render. The output, memory, step and list limits can
 * be lowered at compile time (-DJJ_STEPS_MAX=...): tests/fuzz builds
 * fuzz_jinja so, and a hostile template that spends its budget then takes
 * milliseconds, not seconds, under the sanitizers; the checks are the same. */
#ifndef JJ_OUT_MAX
#define JJ_OUT_MAX ((size_t)64 << 20)    /* one output or string buffer */
#endif
#ifndef JJ_MEM_MAX
#define JJ_MEM_MAX ((size_t)512 << 20)   /* live bytes during one render */
#endif
#ifndef JJ_STEPS_MAX
#define JJ_STEPS_MAX 5000000ull          /* loop iterations + calls per render */
#endif
#define JJ_DEPTH_MAX 1500                /* C recursion of the evaluator */
#define JJ_MACRO_DEPTH_MAX 200           /* nested macro calls */
#define JJ_PARSE_DEPTH_MAX 120           /* expression / block nesting */
#define JJ_RANGE_MAX 100000              /* jinja2 sandbox MAX_RANGE */
#ifndef JJ_SEQ_MAX
#define JJ_SEQ_MAX ((size_t)16 << 20)    /* elements in one list */
#endif
#define JJ_NEST_MAX 500                  /* nesting of lists/dicts/namespaces */

/* ---------------------------------------------------------------- values */
enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_TUPLE,
    JV_DICT, JV_NS, JV_ITER, JV_FUNC, JV_MACRO, JV_LOOP
};
enum { JO_STR = 1, JO_SEQ, JO_MAP, JO_FUNC, JO_MACRO, JO_LOOP };
/* JV_ITER flavours: generators are consumed by iteration; views are not. */
enum { JI_GEN, JI_ITEMS, JI_KEYS, JI_VALUES };

/* rc < 0: immortal. depth bounds nesting of sequences and mappings so that
 * the recursive algorithms (repr, ==, tojson) stay shallow; dead links
 * objects whose count reached zero, so that freeing never recurses. */
typedef struct jo { int32_t rc; uint8_t t; uint16_t depth; struct jo *dead; } jo;

typedef struct jv {
    int k;
    union { int64_t i; double f; jo *o; } u;
} jv;

typedef struct jstr { jo h; size_t len, ncp; char s[]; } jstr;
typedef struct jseq {
    jo h;
    int sub;                      /* JV_ITER flavour */
    size_t n, cap, pos;           /* pos: next item of a generator */
    jv *v;
    int is_range;                 /* JV_LIST made by range(): prints and compares as one */
    int64_t r_start, r_stop, r_step;
    const char *lazy_err;         /* generator that raises this when consumed */
} jseq;
/* dict, namespace and scope. Scopes chain through parent; namespaces and
 * scopes are linked into the render's tracking list (tprev/tnext). */
typedef struct jmap {
    jo h;
    size_t n, cap;
    jv *key, *val;
    struct jmap *parent;
    struct jmap *tprev, *tnext;
} jmap;
typedef struct jfunc { jo h; int id; jv self; } jfunc;
typedef struct jmacro { jo h; const struct jnode *def; jmap *closure; } jmacro;
typedef struct jloop { jo h; jseq *items; size_t idx; jv last_changed; int have_changed; } jloop;

/* ---------------------------------------------------------------- buffers */
/* Output and string buffers are al_buf; jj_buf_put bounds them and counts
 * their memory in the render's budget. */
typedef al_buf jbuf;

/* ---------------------------------------------------------------- AST */
enum {
    /* expressions */
    E_CONST = 1, E_NAME, E_LIST, E_TUPLE, E_DICT, E_GETATTR, E_GETITEM, E_SLICE,
    E_CALL, E_FILTER, E_TEST, E_NEG, E_POS, E_NOT, E_BIN, E_CONCAT, E_AND, E_OR,
    E_CMP, E_COND,
    /* assignment targets */
    T_NAME, T_TUPLE, T_NSREF,
    /* statements */
    S_BODY, S_DATA, S_OUTPUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO,
    S_FILTERBLOCK, S_WITH, S_BREAK, S_CONTINUE, S_GEN
};

/* operators (token ops double as E_BIN / E_CMP ops) */
enum {
    OP_NONE, OP_ADD, OP_SUB, OP_DIV, OP_FLOORDIV, OP_MUL, OP_MOD, OP_POW,
    OP_TILDE, OP_LBRACKET, OP_RBRACKET, OP_LPAREN, OP_RPAREN, OP_LBRACE,
    OP_RBRACE, OP_EQ, OP_NE, OP_GT, OP_GTEQ, OP_LT, OP_LTEQ, OP_ASSIGN, OP_DOT,
    OP_COLON, OP_PIPE, OP_COMMA, OP_SEMICOLON, OP_IN, OP_NOTIN
};

typedef struct jnode {
    int type, op, line, flags;
    jv val;                 /* E_CONST, S_DATA; T_NSREF: attribute name */
    const jstr *name;       /* names: E_NAME, E_GETATTR, E_FILTER, E_TEST, T_*, S_MACRO */
    int fid;                /* E_FILTER / E_TEST: builtin id, or -1 if unknown */
    struct jnode *a, *b, *c, *d;
    struct jnode **v; int n;        /* args, items, body, operands */
    struct jnode **w; int m;        /* kwarg values, dict values, else body, defaults */
    struct jnode **x; int nx;       /* S_WITH values */
    /* frames (root, for body/else/test, macro, with, set/filter blocks,
     * generation): names that start out undefined, see parse.c */
    const jstr **und[3]; int nund[3];
    const jstr **kn;                /* kwarg names / macro parameter names (m of them) */
    int *ops;                       /* E_CMP operators (n of them) */
} jnode;
/* S_MACRO flags */
#define JF_VARARGS 1
#define JF_KWARGS 2
/* S_FOR flags */
#define JF_RECURSIVE 4
/* S_IF made by {% elif %} */
#define JF_ELIF 8

/* ---------------------------------------------------------------- arena */
typedef struct jarena { struct jchunk *head; } jarena;
void *jj_arena_alloc(jarena *a, size_t n);
void jj_arena_free(jarena *a);

struct al_jinja {
    jarena arena;
    jnode *root; /* S_BODY */
    const jstr *k_loop, *k_varargs, *k_kwargs; /* immortal names the evaluator binds */
};

/* ---------------------------------------------------------------- render */
typedef struct jctx {
    char *err;              /* AL_ERRLEN bytes, never NULL inside */
    const al_jinja *t;
    size_t mem;             /* live bytes */
    uint64_t steps;
    int depth, macro_depth;
    int line;               /* line of the node being evaluated */
    jmap tracked;           /* sentinel of the tracked-object ring */
    jmap *vars;             /* the caller's context (JSON object) */
    jbuf *out;              /* current output target */
    jbuf root;              /* final output */
    size_t root_emits;      /* outputs written to root (AssistantTracker) */
    jo *dead;               /* objects waiting to be freed */
    int freeing;
    /* jinja2 folds constant expressions at compile time, where a slice of a
     * non-sequence yields Undefined instead of raising. cf: the value just
     * evaluated is a compile-time constant; poison: such a slice happened and
     * raises unless a constant ancestor absorbs it (see eval.c). */
    int cf, poison;
    char poison_msg[96];
    al_span *spans;
    int nspans, capspans;
} jctx;

/* statement results besides AL_OK / errors */
#define JR_BREAK 1
#define JR_CONTINUE 2

/* error helper: formats "line N: ..." into c->err and returns rc */
int jj_fail(jctx *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- utf-8 and unicode (util.c) */
size_t jj_u8_dec(const char *s, size_t n, uint32_t *cp);   /* bytes used (>=1) */
size_t jj_u8_enc(char out[4], uint32_t cp);
int jj_u8_valid(const char *s, size_t n);
size_t jj_u8_count(const char *s, size_t n);
int jj_ulinebreak(uint32_t cp);            /* str.splitlines() separators */

/* ---------------------------------------------------------------- buffers */
int jj_buf_put(jctx *c, jbuf *b, const char *s, size_t n); /* c may be NULL */
int jj_buf_putc(jctx *c, jbuf *b, char ch);
int jj_buf_printf(jctx *c, jbuf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void jj_buf_free(jbuf *b);

/* ---------------------------------------------------------------- values (value.c) */
static inline jv jv_undef(void) { jv v; v.k = JV_UNDEF; v.u.o = NULL; return v; }
static inline jv jv_none(void) { jv v; v.k = JV_NONE; v.u.i = 0; return v; }
static inline jv jv_bool(int b) { jv v; v.k = JV_BOOL; v.u.i = b ? 1 : 0; return v; }
static inline jv jv_int(int64_t i) { jv v; v.k = JV_INT; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v; v.k = JV_FLOAT; v.u.f = f; return v; }
static inline int jv_isobj(jv v) { return v.k >= JV_STR || (v.k == JV_UNDEF && v.u.o); }
static inline jstr *jv_str(jv v) { return (jstr *)v.u.o; }
static inline jseq *jv_seq(jv v) { return (jseq *)v.u.o; }
static inline jmap *jv_map(jv v) { return (jmap *)v.u.o; }
static inline int jv_isnum(jv v) { return v.k == JV_INT || v.k == JV_FLOAT || v.k == JV_BOOL; }

void *jj_obj_alloc(jctx *c, size_t sz, int t, int *rc); /* rc=1, zeroed */
void jj_incref(jv v);
void jj_decref(jctx *c, jv v);
int jj_str_new(jctx *c, const char *s, size_t n, jv *out);
int jj_str_cat(jctx *c, const char *a, size_t an, const char *b, size_t bn, jv *out);
jstr *jj_str_immortal(jarena *a, const char *s, size_t n);
int jj_undef_hint(jctx *c, jv *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int jj_seq_new(jctx *c, int kind, size_t cap, jv *out);  /* JV_LIST/JV_TUPLE/JV_ITER */
int jj_seq_push(jctx *c, jseq *s, jv item);              /* takes the reference */
int jj_map_new(jctx *c, int kind, jv *out);              /* JV_DICT or JV_NS */
jmap *jj_scope_new(jctx *c, jmap *parent);               /* tracked; NULL on ENOMEM */
void jj_scope_release(jctx *c, jmap *s);
void jj_map_clear(jctx *c, jmap *m);
int jj_map_set(jctx *c, jmap *m, jv key, jv val);        /* takes both references */
int jj_map_get(const jmap *m, jv key, jv *out);          /* borrowed; 1 found */
int jj_map_get_name(const jmap *m, const char *s, size_t n, jv *out);
int jj_func_new(jctx *c, int id, jv self, jv *out);      /* self borrowed */
void jj_track_teardown(jctx *c);

int jj_from_json(jctx *c, const json_t *j, jv *out, int depth);
int jj_truthy(jctx *c, jv v, int *out);
const char *jj_type_name(jv v);
int jj_hashable(jv v);
int jj_eq(jv a, jv b);
int jj_cmp(jctx *c, jv a, jv b, int *out); /* -1/0/1, TypeError otherwise */
int jj_to_str(jctx *c, jbuf *b, jv v);     /* Python str() */
int jj_repr(jctx *c, jbuf *b, jv v);       /* Python repr() */
int jj_ascii_repr(jctx *c, jbuf *b, jv v); /* Python ascii() (strings only; else repr) */
int jj_stringify(jctx *c, jv v, jv *out);  /* str() as a new string value */
void jj_fmt_float(double d, char out[40]); /* Python float repr */
typedef struct jj_json_opts {
    int ensure_ascii, sort_keys;
    const char *indent; size_t indent_len; int has_indent;
    const char *item_sep; size_t item_sep_len;
    const char *key_sep; size_t key_sep_len;
} jj_json_opts;
int jj_tojson(jctx *c, jbuf *b, jv v, const jj_json_opts *o, int level);
/* items of any iterable as a fresh list (consumes generators) */
int jj_iter_list(jctx *c, jv v, jv *out);

/* ---------------------------------------------------------------- lexer/parser */
enum { TK_EOF, TK_DATA, TK_VBEGIN, TK_VEND, TK_BBEGIN, TK_BEND, TK_NAME, TK_STRING, TK_INT, TK_FLOAT, TK_OP };
typedef struct jtok {
    int type, op, line;
    const char *s; size_t len; /* DATA, NAME, STRING (unescaped, arena) */
    int64_t i; double f;
} jtok;
int jj_lex(jarena *a, const char *src, size_t len, jtok **toks, size_t *ntok, char err[AL_ERRLEN]);
int jj_parse(al_jinja *t, const jtok *toks, size_t ntok, char err[AL_ERRLEN]);

/* ---------------------------------------------------------------- builtins */
int jj_filter_id(const char *name, size_t n);   /* -1 unknown */
int jj_filter_foldable(int id);                 /* jinja2 may fold it at compile time */
int jj_test_id(const char *name, size_t n);
int jj_global_id(const char *name, size_t n);
typedef struct jargs {
    jv *pos; int npos;
    const jstr **kn; jv *kv; int nkw;
} jargs;
int jj_call_filter(jctx *c, int id, const char *name, jv in, jargs *a, jv *out);
int jj_call_test(jctx *c, int id, const char *name, jv in, jargs *a, int *out);
int jj_call_func(jctx *c, jfunc *f, jargs *a, jv *out);
int jj_getattr(jctx *c, jv obj, const char *name, size_t n, jv *out);
int jj_getitem(jctx *c, jv obj, jv key, jv *out);
int jj_undef_error(jctx *c, jv u);
/* evaluator entry points used by builtins */
int jj_call_value(jctx *c, jv f, jargs *a, jv *out);
int jj_str_mod(jctx *c, jv fmt, jv args, jv *out);       /* Python "fmt % args" */
int jj_binop(jctx *c, int op, jv a, jv b, jv *out);      /* + - * / // % ** (OP_*) */
int jj_render_root(jctx *c, const al_jinja *t, jmap *root);

/* ---------------------------------------------------------------- shared by builtins.c, filters.c, strings.c */
/* Argument binding: a slot no argument filled holds JV_MISSING. */
#define JV_MISSING (-1)
static inline int jj_missing(jv v) { return v.k == JV_MISSING; }
/* Python's binding of a->pos and a->kn/kv to the parameters names[0..n) of
 * fn (errors as Python words them); slots[n] receives the values. */
int jj_bind(jctx *c, const char *fn, jargs *a, const char *const *names, int n, jv *slots);
int jj_no_kwargs(jctx *c, const char *fn, jargs *a);
int jj_truth(jctx *c, jv v);                        /* bool(v), errors ignored */
int jj_want_int(jctx *c, jv v, int64_t *out);       /* int or bool, else TypeError */
int jj_want_str(jctx *c, jv v, const char *what);
int jj_str_from_buf(jctx *c, jbuf *b, jv *out);     /* frees b */
int jj_push_copy(jctx *c, jv list, jv item);        /* appends a new reference */
/* Attribute access as the sandbox sees it; *found = 0 when obj has none. */
int jj_py_getattr(jctx *c, jv obj, const char *name, size_t n, jv *out, int *found);
int jj_no_attr(jctx *c, jv obj, const char *name, size_t n, jv *out); /* the Undefined for it */
int jj_attr_get(jctx *c, jv item, jv attr, jv *out); /* make_attrgetter: "a.b.0" */
int jj_views(jctx *c, jmap *m, int sub, jv *out);   /* dict.keys/values/items (JI_*) */
int jj_dict_from(jctx *c, jargs *a, int kind, jv *out); /* dict(...) or namespace(...) */
/* Strings (strings.c). */
enum { JJ_CASE_UPPER, JJ_CASE_LOWER, JJ_CASE_TITLE, JJ_CASE_CAPITALIZE, JJ_CASE_SWAP, JJ_CASE_FOLD };
int jj_map_case(jctx *c, const char *s, size_t n, int mode, jv *out); /* str.upper() ... */
int jj_put_cp(jctx *c, jbuf *b, uint32_t cp);
/* Appends s[0..n) in that case mode, as the str method does over that string. */
int jj_case_into(jctx *c, jbuf *b, const char *s, size_t n, int mode);
size_t *jj_cp_offsets(jctx *c, const jstr *s);       /* byte offset of each character, and len */
ptrdiff_t jj_find_sub(const char *h, size_t from, size_t to, const char *n, size_t nn, int rev);
int jj_strip(jctx *c, const jstr *s, jv chars, int left, int right, jv *out);
int jj_splitlines(jctx *c, const jstr *s, int keepends, jv *out);
int jj_replace(jctx *c, const jstr *s, const jstr *old, const jstr *rep, int64_t count, jv *out);
int jj_pad(jctx *c, const jstr *s, int64_t width, jv fillv, int mode /* 0 center 1 ljust 2 rjust */, jv *out);
enum { JJ_IS_ALNUM, JJ_IS_ALPHA, JJ_IS_ASCII, JJ_IS_DECIMAL, JJ_IS_DIGIT, JJ_IS_NUMERIC, JJ_IS_SPACE,
       JJ_IS_PRINTABLE, JJ_IS_IDENTIFIER, JJ_IS_UPPER, JJ_IS_LOWER, JJ_IS_TITLE };
int jj_str_is(jctx *c, const jstr *s, int what, jv *out); /* str.isupper() ... as a bool */
int jj_str_method_id(const char *name, size_t n);   /* -1 when str has no such method */
int jj_str_method_call(jctx *c, int id, const jstr *s, jargs *a, jv *out);

#endif

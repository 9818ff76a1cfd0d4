/* Jinja interpreter: the lexer. A transcription of jinja2.lexer (3.1) for an
 * environment with the default delimiters, trim_blocks=True,
 * lstrip_blocks=True, keep_trailing_newline=False:
 *
 *  - newlines (\r\n, \r, \n) are normalised to \n and one trailing newline
 *    of the source is dropped;
 *  - "{%-" / "{#-" / "{{-" strip all whitespace before the tag, "-%}" /
 *    "-#}" / "-}}" all whitespace after it;
 *  - lstrip_blocks: spaces and tabs between the start of a line and a block
 *    or comment tag are removed unless the tag starts with "{%+";
 *  - trim_blocks: one newline right after "%}" or "#}" is removed unless the
 *    tag ends with "+%}";
 *  - inside tags, "%}" / "}}" only close the tag when brackets balance;
 *  - string literals are unescaped like Python's unicode-escape codec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

typedef struct lexer {
    jarena *a;
    const char *s;
    size_t n, pos;
    int line, line_starting;
    jtok *toks;
    size_t ntok, cap;
    char *err;
    char bal[256];
    int nbal;
} lexer;

static int lfail(lexer *L, int rc, const char *fmt, const char *arg) {
    char msg[200];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    snprintf(L->err, AL_ERRLEN, "line %d: %s", L->line, msg);
    return rc;
}

static jtok *push(lexer *L, int type) {
    if (L->ntok == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *t = realloc(L->toks, cap * sizeof *t);
        if (!t) return NULL;
        L->toks = t;
        L->cap = cap;
    }
    jtok *t = &L->toks[L->ntok++];
    memset(t, 0, sizeof *t);
    t->type = type;
    t->line = L->line;
    return t;
}

/* move to newpos, counting lines; the last consumed char decides line_starting */
static void adv(lexer *L, size_t newpos) {
    for (size_t i = L->pos; i < newpos; i++)
        if (L->s[i] == '\n') L->line++;
    if (newpos > L->pos) L->line_starting = L->s[newpos - 1] == '\n';
    L->pos = newpos;
}

static size_t space_at(const char *s, size_t n, size_t i) { /* bytes of a whitespace cp, or 0 */
    if (i >= n) return 0;
    uint32_t cp = 0;
    size_t k = jj_u8_dec(s + i, n - i, &cp);
    return al_uc_is_space(cp) ? k : 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
    size_t k = 0;
    while ((k = space_at(s, n, i))) i += k;
    return i;
}

/* end of text after Python's str.rstrip() */
static size_t rstrip_end(const char *s, size_t from, size_t to) {
    while (to > from) {
        size_t st = to - 1;
        while (st > from && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
        uint32_t cp = 0;
        jj_u8_dec(s + st, to - st, &cp);
        if (!al_uc_is_space(cp)) break;
        to = st;
    }
    return to;
}

/* OptionalLStrip: returns the end of the data before a tag */
static size_t strip_before(lexer *L, size_t from, size_t to, char sign, int is_var) {
    if (sign == '-') return rstrip_end(L->s, from, to);
    if (sign == '+' || is_var) return to;
    size_t l_pos = from;
    for (size_t i = to; i > from; i--)
        if (L->s[i - 1] == '\n') { l_pos = i; break; }
    if (l_pos > from || L->line_starting) {
        if (l_pos == to) return to; /* \s+ needs at least one char */
        if (skip_ws(L->s, to, l_pos) == to) return l_pos;
    }
    return to;
}

static int emit_data(lexer *L, size_t from, size_t to) {
    if (to <= from) return AL_OK;
    jtok *t = push(L, TK_DATA);
    if (!t) return AL_ENOMEM;
    t->s = L->s + from;
    t->len = to - from;
    return AL_OK;
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* (\d+_)*\d+ */
static size_t digits_us(const char *s, size_t n, size_t i) {
    if (i >= n || !is_digit(s[i])) return 0;
    for (;;) {
        while (i < n && is_digit(s[i])) i++;
        if (i + 1 < n && s[i] == '_' && is_digit(s[i + 1])) { i++; continue; }
        return i;
    }
}

static size_t match_float(const char *s, size_t n, size_t i) {
    if (i > 0 && s[i - 1] == '.') return 0;
    size_t e = digits_us(s, n, i);
    if (!e) return 0;
    /* alternative 1: (\.digits)? [eE] [+-]? digits */
    size_t cands[2] = {0, e};
    if (e < n && s[e] == '.') {
        size_t f = digits_us(s, n, e + 1);
        cands[0] = f ? f : 0;
    }
    for (int k = 0; k < 2; k++) {
        size_t p = cands[k];
        if (!p || p >= n || (s[p] != 'e' && s[p] != 'E')) continue;
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-')) p++;
        size_t x = digits_us(s, n, p);
        if (x) return x;
    }
    /* alternative 2: \.digits */
    if (e < n && s[e] == '.') return digits_us(s, n, e + 1);
    return 0;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static size_t match_int(const char *s, size_t n, size_t i, int *base) {
    if (i >= n || !is_digit(s[i])) return 0;
    if (s[i] == '0' && i + 1 < n) {
        char x = s[i + 1];
        int b = (x == 'b' || x == 'B') ? 2 : (x == 'o' || x == 'O') ? 8 : (x == 'x' || x == 'X') ? 16 : 0;
        if (b) {
            size_t p = i + 2, cnt = 0;
            for (;;) {
                size_t q = p;
                if (q < n && s[q] == '_') q++;
                int v = q < n ? hexval(s[q]) : -1;
                if (v < 0 || v >= b) break;
                p = q + 1;
                cnt++;
            }
            if (cnt) { *base = b; return p; }
        }
    }
    *base = 10;
    if (s[i] != '0') {
        size_t p = i + 1;
        for (;;) {
            size_t q = p;
            if (q < n && s[q] == '_') q++;
            if (q < n && is_digit(s[q])) p = q + 1;
            else break;
        }
        return p;
    }
    size_t p = i + 1;
    for (;;) {
        size_t q = p;
        if (q < n && s[q] == '_') q++;
        if (q < n && s[q] == '0') p = q + 1;
        else break;
    }
    return p;
}

/* jinja2's name_re: Python re's \w (letters, numbers, "_") and the marks
 * identifiers may continue with */
static int word_cp(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '_';
    return al_uc_is_alpha(cp) || al_uc_is_numeric(cp) || al_uc_is_id_continue(cp);
}

static size_t match_name(const char *s, size_t n, size_t i) {
    size_t p = i;
    while (p < n) {
        uint32_t cp = 0;
        size_t k = jj_u8_dec(s + p, n - p, &cp);
        if (!word_cp(cp)) break;
        p += k;
    }
    return p;
}

static size_t match_string(const char *s, size_t n, size_t i) {
    char q = s[i];
    size_t p = i + 1;
    while (p < n) {
        if (s[p] == q) return p + 1;
        if (s[p] == '\\') {
            if (p + 1 >= n) return 0;
            p += 2;
        } else {
            p++;
        }
    }
    return 0;
}

static int put_cp(char *out, size_t *o, uint32_t cp) {
    if (cp > 0x10ffff) return -1;
    if (cp >= 0xd800 && cp <= 0xdfff) return -2;
    *o += jj_u8_enc(out + *o, cp);
    return 0;
}

/* Python: raw.encode("ascii", "backslashreplace").decode("unicode-escape") */
static int unescape(lexer *L, const char *s, size_t n, jtok *t) {
    char *out = jj_arena_alloc(L->a, n * 4 + 1);
    if (!out) return AL_ENOMEM;
    size_t o = 0, i = 0;
    while (i < n) {
        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        i++;
        if (i >= n) return lfail(L, AL_EFORMAT, "\\ at end of string", NULL);
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x80) { /* backslashreplace turned it into \xNN, \uNNNN or \UNNNNNNNN */
            uint32_t cp = 0;
            size_t k = jj_u8_dec(s + i, n - i, &cp);
            char esc[16];
            int m = cp <= 0xff ? snprintf(esc, sizeof esc, "\\x%02x", cp)
                    : cp <= 0xffff ? snprintf(esc, sizeof esc, "\\u%04x", cp)
                                   : snprintf(esc, sizeof esc, "\\U%08x", cp);
            out[o++] = '\\';
            memcpy(out + o, esc + 1, (size_t)m - 1);
            o += (size_t)m - 1;
            i += k;
            continue;
        }
        i++;
        switch (ch) {
        case '\n': break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'a': out[o++] = 7; break;
        case 'b': out[o++] = 8; break;
        case 'f': out[o++] = 12; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'v': out[o++] = 11; break;
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
            uint32_t v = ch - '0';
            for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++) v = v * 8 + (uint32_t)(s[i++] - '0');
            if (put_cp(out, &o, v)) return lfail(L, AL_EUNSUP, "unsupported escape in string", NULL);
            break;
        }
        case 'x': case 'u': case 'U': {
            int digits = ch == 'x' ? 2 : ch == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = i < n ? hexval(s[i]) : -1;
                if (h < 0) {
                    const char *what = ch == 'x' ? "truncated \\xXX escape" : ch == 'u' ? "truncated \\uXXXX escape"
                                                                              : "truncated \\UXXXXXXXX escape";
                    return lfail(L, AL_EFORMAT, "%s", what);
                }
                v = v * 16 + (uint32_t)h;
                i++;
            }
            int r = put_cp(out, &o, v);
            if (r == -1) return lfail(L, AL_EFORMAT, "illegal Unicode character", NULL);
            if (r == -2) return lfail(L, AL_EUNSUP, "surrogate code points in strings are not supported", NULL);
            break;
        }
        case 'N': return lfail(L, AL_EUNSUP, "\\N{...} escapes are not supported", NULL);
        default:
            out[o++] = '\\';
            out[o++] = (char)ch;
        }
    }
    out[o] = 0;
    t->s = out;
    t->len = o;
    return AL_OK;
}

static const struct { const char *s; int op; } OPS[] = {
    {"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE}, {">=", OP_GTEQ}, {"<=", OP_LTEQ},
    {"+", OP_ADD}, {"-", OP_SUB}, {"/", OP_DIV}, {"*", OP_MUL}, {"%", OP_MOD}, {"~", OP_TILDE},
    {"[", OP_LBRACKET}, {"]", OP_RBRACKET}, {"(", OP_LPAREN}, {")", OP_RPAREN}, {"{", OP_LBRACE},
    {"}", OP_RBRACE}, {">", OP_GT}, {"<", OP_LT}, {"=", OP_ASSIGN}, {".", OP_DOT}, {":", OP_COLON},
    {"|", OP_PIPE}, {",", OP_COMMA}, {";", OP_SEMICOLON},
};

/* one token inside {% %} or {{ }}; returns 1 when the tag closed */
static int lex_tag_token(lexer *L, int is_block, int *closed) {
    const char *s = L->s;
    size_t n = L->n, p = L->pos;
    *closed = 0;
    if (L->nbal == 0) {
        size_t end = 0;
        if (is_block) {
            if (p + 3 <= n && memcmp(s + p, "+%}", 3) == 0) end = p + 3;
            else if (p + 3 <= n && memcmp(s + p, "-%}", 3) == 0) end = skip_ws(s, n, p + 3);
            else if (p + 2 <= n && memcmp(s + p, "%}", 2) == 0) end = (p + 2 < n && s[p + 2] == '\n') ? p + 3 : p + 2;
        } else {
            if (p + 3 <= n && memcmp(s + p, "-}}", 3) == 0) end = skip_ws(s, n, p + 3);
            else if (p + 2 <= n && memcmp(s + p, "}}", 2) == 0) end = p + 2;
        }
        if (end) {
            if (!push(L, is_block ? TK_BEND : TK_VEND)) return AL_ENOMEM;
            adv(L, end);
            *closed = 1;
            return AL_OK;
        }
    }
    size_t e = 0;
    if ((e = skip_ws(s, n, p)) > p) {
        adv(L, e);
        return AL_OK;
    }
    if ((e = match_float(s, n, p))) {
        jtok *t = push(L, TK_FLOAT);
        if (!t) return AL_ENOMEM;
        char buf[128];
        size_t k = 0;
        for (size_t i = p; i < e && k + 1 < sizeof buf; i++)
            if (s[i] != '_') buf[k++] = s[i];
        buf[k] = 0;
        t->f = strtod(buf, NULL);
        adv(L, e);
        return AL_OK;
    }
    int base;
    if ((e = match_int(s, n, p, &base))) {
        jtok *t = push(L, TK_INT);
        if (!t) return AL_ENOMEM;
        size_t i = p + (base == 10 ? 0 : 2);
        uint64_t v = 0;
        for (; i < e; i++) {
            if (s[i] == '_') continue;
            uint64_t d = (uint64_t)hexval(s[i]);
            if (v > (UINT64_MAX - d) / (uint64_t)base || v * (uint64_t)base + d > (uint64_t)INT64_MAX)
                return lfail(L, AL_EUNSUP, "integer literal too large", NULL);
            v = v * (uint64_t)base + d;
        }
        t->i = (int64_t)v;
        adv(L, e);
        return AL_OK;
    }
    if ((e = match_name(s, n, p)) > p) {
        jtok *t = push(L, TK_NAME);
        if (!t) return AL_ENOMEM;
        t->s = s + p;
        t->len = e - p;
        adv(L, e);
        return AL_OK;
    }
    if ((s[p] == '\'' || s[p] == '"') && (e = match_string(s, n, p))) {
        jtok *t = push(L, TK_STRING);
        if (!t) return AL_ENOMEM;
        int rc = unescape(L, s + p + 1, e - p - 2, t);
        if (rc) return rc;
        adv(L, e);
        return AL_OK;
    }
    for (size_t k = 0; k < sizeof OPS / sizeof OPS[0]; k++) {
        size_t l = strlen(OPS[k].s);
        if (p + l > n || memcmp(s + p, OPS[k].s, l) != 0) continue;
        int op = OPS[k].op;
        char ch = OPS[k].s[0];
        if (l == 1 && (ch == '{' || ch == '(' || ch == '[')) {
            if (L->nbal >= (int)sizeof L->bal) return lfail(L, AL_EFORMAT, "brackets nested too deeply", NULL);
            L->bal[L->nbal++] = ch == '{' ? '}' : ch == '(' ? ')' : ']';
        } else if (l == 1 && (ch == '}' || ch == ')' || ch == ']')) {
            char tmp[2] = {ch, 0};
            if (L->nbal == 0) return lfail(L, AL_EFORMAT, "unexpected '%s'", tmp);
            char want = L->bal[--L->nbal];
            if (want != ch) {
                char msg[64];
                snprintf(msg, sizeof msg, "unexpected '%c', expected '%c'", ch, want);
                return lfail(L, AL_EFORMAT, "%s", msg);
            }
        }
        jtok *t = push(L, TK_OP);
        if (!t) return AL_ENOMEM;
        t->op = op;
        adv(L, p + l);
        return AL_OK;
    }
    char tmp[8];
    uint32_t cp = 0;
    size_t k = jj_u8_dec(s + p, n - p, &cp);
    memcpy(tmp, s + p, k);
    tmp[k] = 0;
    return lfail(L, AL_EFORMAT, "unexpected char '%s'", tmp);
}

/* {%(-|+|)\s*raw\s*(-%}\s*|%}) at p; returns end or 0, *sign set */
static size_t match_raw_begin(const char *s, size_t n, size_t p, char *sign) {
    size_t i = p + 2;
    *sign = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) *sign = s[i++];
    i = skip_ws(s, n, i);
    if (i + 3 > n || memcmp(s + i, "raw", 3) != 0) return 0;
    i = skip_ws(s, n, i + 3);
    if (i + 3 <= n && memcmp(s + i, "-%}", 3) == 0) return skip_ws(s, n, i + 3);
    if (i + 2 <= n && memcmp(s + i, "%}", 2) == 0) return i + 2;
    return 0;
}

static int lex_raw(lexer *L) {
    const char *s = L->s;
    size_t n = L->n;
    for (size_t p = L->pos; p + 1 < n; p++) {
        if (s[p] != '{' || s[p + 1] != '%') continue;
        size_t i = p + 2;
        char sign = 0;
        if (i < n && (s[i] == '-' || s[i] == '+')) sign = s[i++];
        i = skip_ws(s, n, i);
        if (i + 6 > n || memcmp(s + i, "endraw", 6) != 0) continue;
        i = skip_ws(s, n, i + 6);
        size_t end = 0;
        if (i + 3 <= n && memcmp(s + i, "+%}", 3) == 0) end = i + 3;
        else if (i + 3 <= n && memcmp(s + i, "-%}", 3) == 0) end = skip_ws(s, n, i + 3);
        else if (i + 2 <= n && memcmp(s + i, "%}", 2) == 0) end = (i + 2 < n && s[i + 2] == '\n') ? i + 3 : i + 2;
        if (!end) continue;
        size_t dend = strip_before(L, L->pos, p, sign, 0);
        int rc = emit_data(L, L->pos, dend);
        if (rc) return rc;
        adv(L, end);
        return AL_OK;
    }
    return lfail(L, AL_EFORMAT, "Missing end of raw directive", NULL);
}

int jj_lex(jarena *a, const char *src, size_t len, jtok **toks, size_t *ntok, char err[AL_ERRLEN]) {
    if (!jj_u8_valid(src, len)) {
        snprintf(err, AL_ERRLEN, "template is not valid UTF-8");
        return AL_EFORMAT;
    }
    char *s = jj_arena_alloc(a, len + 1);
    if (!s) return AL_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;

    lexer L = {0};
    L.a = a;
    L.s = s;
    L.n = n;
    L.line = 1;
    L.line_starting = 1;
    L.err = err;
    int rc = AL_OK;
    while (L.pos < n && !rc) {
        size_t p = L.pos;
        int kind = 0; /* '%', '#', '{' */
        while (p + 1 < n) {
            if (s[p] == '{' && (s[p + 1] == '%' || s[p + 1] == '#' || s[p + 1] == '{')) {
                kind = s[p + 1];
                break;
            }
            p++;
        }
        if (!kind) {
            rc = emit_data(&L, L.pos, n);
            adv(&L, n);
            break;
        }
        char sign = 0;
        size_t tag_end = 0;
        int raw = 0;
        if (kind == '%' && (tag_end = match_raw_begin(s, n, p, &sign))) {
            raw = 1;
        } else {
            tag_end = p + 2;
            if (tag_end < n && (s[tag_end] == '-' || s[tag_end] == '+')) sign = s[tag_end++];
        }
        size_t dend = strip_before(&L, L.pos, p, sign, kind == '{');
        if ((rc = emit_data(&L, L.pos, dend))) break;
        adv(&L, p);
        if (raw) {
            adv(&L, tag_end);
            rc = lex_raw(&L);
            continue;
        }
        if (kind == '#') {
            size_t end = 0, i;
            for (i = tag_end; i + 1 < n && !end; i++) {
                if (s[i] == '+' && i + 2 < n && s[i + 1] == '#' && s[i + 2] == '}') end = i + 3;
                else if (s[i] == '-' && i + 2 < n && s[i + 1] == '#' && s[i + 2] == '}') end = skip_ws(s, n, i + 3);
                else if (s[i] == '#' && s[i + 1] == '}') end = (i + 2 < n && s[i + 2] == '\n') ? i + 3 : i + 2;
            }
            if (!end) {
                rc = lfail(&L, AL_EFORMAT, "Missing end of comment tag", NULL);
                break;
            }
            adv(&L, end);
            continue;
        }
        int is_block = kind == '%';
        if (!push(&L, is_block ? TK_BBEGIN : TK_VBEGIN)) { rc = AL_ENOMEM; break; }
        adv(&L, tag_end);
        L.line_starting = 0;
        L.nbal = 0;
        int closed = 0;
        while (!rc && !closed && L.pos < n) rc = lex_tag_token(&L, is_block, &closed);
    }
    if (!rc) {
        jtok *t = push(&L, TK_EOF);
        if (!t) rc = AL_ENOMEM;
    }
    if (rc) {
        if (rc == AL_ENOMEM) snprintf(err, AL_ERRLEN, "out of memory");
        free(L.toks);
        return rc;
    }
    *toks = L.toks;
    *ntok = L.ntok;
    return AL_OK;
}

/* Jinja interpreter: arena, output buffers, UTF-8 and the small part of the
 * Unicode database the str methods need (whitespace, line breaks, case
 * mapping for Latin, Greek and Cyrillic, printability for repr()). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

/* ---------------------------------------------------------------- arena */
struct jchunk { struct jchunk *next; size_t used, cap; _Alignas(16) unsigned char mem[]; };

void *jj_arena_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    struct jchunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->mem + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void jj_arena_free(jarena *a) {
    struct jchunk *c = a->head;
    while (c) {
        struct jchunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
}

/* ---------------------------------------------------------------- errors */
int jj_fail(jctx *c, int rc, const char *fmt, ...) {
    char msg[AL_ERRLEN - 24];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->line > 0) snprintf(c->err, AL_ERRLEN, "line %d: %s", c->line, msg);
    else snprintf(c->err, AL_ERRLEN, "%s", msg);
    return rc;
}

/* ---------------------------------------------------------------- buffers */
/* Counts the growth of b from old_cap bytes in the render's budget. */
static int account(jctx *c, const jbuf *b, size_t old_cap) {
    if (!c) return AL_OK;
    c->mem += b->cap - old_cap;
    if (c->mem > JJ_MEM_MAX) return jj_fail(c, AL_ERANGE, "render uses more than %zu bytes", JJ_MEM_MAX);
    return AL_OK;
}

int jj_buf_put(jctx *c, jbuf *b, const char *s, size_t n) {
    if (n > JJ_OUT_MAX || b->n > JJ_OUT_MAX - n) {
        if (c) return jj_fail(c, AL_ERANGE, "output exceeds %zu bytes", JJ_OUT_MAX);
        return AL_ERANGE;
    }
    size_t old_cap = b->cap;
    if (al_buf_reserve(b, n)) return c ? jj_fail(c, AL_ENOMEM, "out of memory") : AL_ENOMEM;
    int rc = account(c, b, old_cap);
    return rc ? rc : al_buf_put(b, s, n);
}

int jj_buf_putc(jctx *c, jbuf *b, char ch) { return jj_buf_put(c, b, &ch, 1); }

int jj_buf_printf(jctx *c, jbuf *b, const char *fmt, ...) {
    size_t old_cap = b->cap, old_n = b->n;
    va_list ap;
    va_start(ap, fmt);
    int rc = al_buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (rc == AL_EINVAL) return jj_fail(c, AL_EINVAL, "format error");
    if (rc) return jj_fail(c, AL_ENOMEM, "out of memory");
    if (b->n > JJ_OUT_MAX) {
        b->n = old_n;
        b->p[old_n] = 0;
        return jj_fail(c, AL_ERANGE, "output exceeds %zu bytes", JJ_OUT_MAX);
    }
    return account(c, b, old_cap);
}

void jj_buf_free(jbuf *b) { al_buf_deinit(b); }

/* ---------------------------------------------------------------- UTF-8 */
size_t jj_u8_dec(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) { *cp = 0; return 1; }
    if (u[0] < 0x80) { *cp = u[0]; return 1; }
    if ((u[0] & 0xe0) == 0xc0 && n >= 2) { *cp = ((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f); return 2; }
    if ((u[0] & 0xf0) == 0xe0 && n >= 3) {
        *cp = ((uint32_t)(u[0] & 0x0f) << 12) | ((uint32_t)(u[1] & 0x3f) << 6) | (u[2] & 0x3f);
        return 3;
    }
    if ((u[0] & 0xf8) == 0xf0 && n >= 4) {
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3f) << 12) |
              ((uint32_t)(u[2] & 0x3f) << 6) | (u[3] & 0x3f);
        return 4;
    }
    *cp = 0xfffd;
    return 1;
}

size_t jj_u8_enc(char out[4], uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xc0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int jj_u8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char b = u[i];
        if (b < 0x80) { i++; continue; }
        size_t k = 0;
        uint32_t cp = 0, min = 0;
        if ((b & 0xe0) == 0xc0) { k = 2; cp = b & 0x1f; min = 0x80; }
        else if ((b & 0xf0) == 0xe0) { k = 3; cp = b & 0x0f; min = 0x800; }
        else if ((b & 0xf8) == 0xf0) { k = 4; cp = b & 0x07; min = 0x10000; }
        else return 0;
        if (i + k > n) return 0;
        for (size_t j = 1; j < k; j++) {
            if ((u[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (u[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += k;
    }
    return 1;
}

size_t jj_u8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) c++;
    return c;
}

/* ---------------------------------------------------------------- Unicode */
int jj_uspace(uint32_t cp) {
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f)) return 1;
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

int jj_ulinebreak(uint32_t cp) {
    return cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c || cp == 0x1d ||
           cp == 0x1e || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

/* Case pairs: ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic. Outside
 * these ranges characters are treated as uncased (documented limitation). */
static int latin_ext_a_upper(uint32_t cp) {
    /* U+0100..U+017F: pairs (upper even, lower odd) except 0x0138-0x0148 and
     * 0x0179-0x017E where the upper is odd. */
    if (cp >= 0x0139 && cp <= 0x0148) return cp & 1;
    if (cp >= 0x0179 && cp <= 0x017e) return cp & 1;
    return !(cp & 1);
}

uint32_t jj_ulower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7) return cp + 32;
    if (cp >= 0x100 && cp <= 0x17f) {
        if (cp == 0x130) return 'i';
        if (cp == 0x138 || cp == 0x149 || cp == 0x17f) return cp;
        if (cp == 0x178) return 0xff;
        return latin_ext_a_upper(cp) ? cp + 1 : cp;
    }
    if (cp >= 0x391 && cp <= 0x3a9 && cp != 0x3a2) return cp + 32;
    if (cp == 0x386) return 0x3ac;
    if (cp >= 0x388 && cp <= 0x38a) return cp + 37;
    if (cp == 0x38c) return 0x3cc;
    if (cp == 0x38e || cp == 0x38f) return cp + 63;
    if (cp >= 0x410 && cp <= 0x42f) return cp + 32;
    if (cp >= 0x400 && cp <= 0x40f) return cp + 80;
    return cp;
}

uint32_t jj_uupper(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') ? cp - 32 : cp;
    if (cp == 0xb5) return 0x39c;
    if (cp >= 0xe0 && cp <= 0xfe && cp != 0xf7) return cp - 32;
    if (cp == 0xff) return 0x178;
    if (cp >= 0x100 && cp <= 0x17f) {
        if (cp == 0x131) return 'I';
        if (cp == 0x17f) return 'S';
        if (cp == 0x138 || cp == 0x149 || cp == 0x130 || cp == 0x178) return cp;
        return latin_ext_a_upper(cp) ? cp : cp - 1;
    }
    if (cp >= 0x3b1 && cp <= 0x3c9 && cp != 0x3c2) return cp - 32;
    if (cp == 0x3c2) return 0x3a3;
    if (cp == 0x3ac) return 0x386;
    if (cp >= 0x3ad && cp <= 0x3af) return cp - 37;
    if (cp == 0x3cc) return 0x38c;
    if (cp == 0x3cd || cp == 0x3ce) return cp - 63;
    if (cp >= 0x430 && cp <= 0x44f) return cp - 32;
    if (cp >= 0x450 && cp <= 0x45f) return cp - 80;
    return cp;
}

int jj_uupper_special(uint32_t cp, uint32_t out[3]) {
    if (cp == 0xdf) { out[0] = 'S'; out[1] = 'S'; return 2; }
    if (cp == 0x149) { out[0] = 0x2bc; out[1] = 'N'; return 2; }
    return 0;
}

int jj_uisupper(uint32_t cp) { return jj_ulower(cp) != cp || cp == 0x130; }
int jj_uislower(uint32_t cp) {
    return jj_uupper(cp) != cp || cp == 0xdf || cp == 0x138 || cp == 0x149 || cp == 0xaa || cp == 0xba;
}
int jj_ucased(uint32_t cp) { return jj_uisupper(cp) || jj_uislower(cp); }

int jj_udigit(uint32_t cp) { /* decimal digits of the common scripts (Unicode Nd) */
    static const uint32_t zero[] = {0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66,
                                    0xce6, 0xd66, 0xe50, 0xed0, 0xf20, 0x1040, 0x17e0, 0x1810, 0xff10};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++)
        if (cp >= zero[i] && cp <= zero[i] + 9) return 1;
    return 0;
}

int jj_ualpha(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    if (jj_ucased(cp)) return 1;
    if (cp == 0xaa || cp == 0xba) return 1;
    /* CJK, kana, hangul, Arabic, Hebrew, Devanagari and friends are letters */
    return (cp >= 0x5d0 && cp <= 0x5ea) || (cp >= 0x620 && cp <= 0x64a) ||
           (cp >= 0x904 && cp <= 0x939) || (cp >= 0x3041 && cp <= 0x3096) ||
           (cp >= 0x30a1 && cp <= 0x30fa) || (cp >= 0x4e00 && cp <= 0x9fff) ||
           (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0x3400 && cp <= 0x4dbf);
}

int jj_uprintable(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0xa0) || cp == 0xad) return 0;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
        (cp >= 0x205f && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206f) || cp == 0x3000 ||
        cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb) || (cp >= 0xd800 && cp <= 0xf8ff) ||
        (cp >= 0x600 && cp <= 0x605) || cp == 0x61c || cp == 0x6dd || cp == 0x70f || cp == 0x180e ||
        cp == 0xfffe || cp == 0xffff || (cp >= 0xe0000 && cp <= 0xe0fff) || cp >= 0xf0000)
        return 0;
    return 1;
}

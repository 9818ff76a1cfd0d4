/* Jinja interpreter: arena, output buffers, UTF-8, and str.splitlines()'s
 * line boundaries (the character data the str methods need otherwise comes
 * from ../unicode.h, on utf8proc). */
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

/* ---------------------------------------------------------------- line boundaries */
/* The ten characters str.splitlines() splits at (Python's docs list them):
 * Line_Break BK, CR, LF and NL, and bidi class B. */
int jj_ulinebreak(uint32_t cp) {
    return cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c || cp == 0x1d ||
           cp == 0x1e || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

/* A growable NUL-terminated byte buffer for lib/text's readers: appends
 * never fail loudly; oom is set once memory runs out and later appends are
 * ignored, so a caller checks once at the end. The bytes are malloc'd (the
 * caller frees p). */
#ifndef AL_SBUF_H
#define AL_SBUF_H

#include <stdlib.h>
#include <string.h>

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;

static inline void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

#endif

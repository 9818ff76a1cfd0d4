/* al_buf: growable NUL-terminated byte strings (see buf.h). */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void al_buf_init(al_buf *b) { memset(b, 0, sizeof *b); }

void al_buf_deinit(al_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

int al_buf_reserve(al_buf *b, size_t extra) {
    if (b->oom) return AL_ENOMEM;
    if (extra > SIZE_MAX - 1 - b->n) {
        b->oom = 1;
        return AL_ENOMEM;
    }
    size_t need = b->n + extra + 1;
    if (need <= b->cap) return AL_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return AL_ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return AL_OK;
}

int al_buf_put(al_buf *b, const void *s, size_t n) {
    int rc = al_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return AL_OK;
}

int al_buf_puts(al_buf *b, const char *s) { return al_buf_put(b, s, strlen(s)); }

int al_buf_putc(al_buf *b, char ch) { return al_buf_put(b, &ch, 1); }

int al_buf_vprintf(al_buf *b, const char *fmt, va_list ap) {
    if (b->oom) return AL_ENOMEM;
    va_list again;
    va_copy(again, ap);
    size_t room = b->cap > b->n ? b->cap - b->n : 0;
    int n = vsnprintf(room ? b->p + b->n : NULL, room, fmt, ap);
    int rc = AL_OK;
    if (n < 0) {
        rc = AL_EINVAL;
    } else if ((size_t)n >= room) { /* did not fit: grow and format again */
        if (!(rc = al_buf_reserve(b, (size_t)n))) vsnprintf(b->p + b->n, (size_t)n + 1, fmt, again);
    }
    va_end(again);
    if (rc) {
        if (b->p) b->p[b->n] = 0; /* undo a partial write */
        return rc;
    }
    b->n += (size_t)n;
    return AL_OK;
}

int al_buf_printf(al_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = al_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

const char *al_buf_str(const al_buf *b) { return b->p ? b->p : ""; }

char *al_buf_take(al_buf *b, size_t *n) {
    if (b->oom || (!b->p && al_buf_put(b, "", 0))) {
        al_buf_deinit(b);
        return NULL;
    }
    char *p = b->p;
    if (n) *n = b->n;
    memset(b, 0, sizeof *b);
    return p;
}

void al_buf_clear(al_buf *b) {
    b->n = 0;
    b->oom = 0;
    if (b->p) b->p[0] = 0;
}

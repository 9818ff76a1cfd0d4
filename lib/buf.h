/* al_buf: a growable, NUL-terminated byte string with printf, for every
 * place in lib/ that builds text of unknown length (template output, JSON
 * canonical forms, rows written back out).
 *
 * Caller-owned: zero-initialise it (`al_buf b = {0};` or al_buf_init), append,
 * then either read b.p (malloc'd, NUL-terminated, b.n bytes long) and call
 * al_buf_deinit, or take the bytes with al_buf_take. Growth doubles from 64
 * bytes, so appending n bytes one at a time costs O(n) copies in all.
 *
 * Running out of memory is sticky: the failing append and every later one
 * return AL_ENOMEM and leave the contents as they were before the failure,
 * with b.oom set, so a builder may append freely and check once at the end.
 * Not thread-safe; one buffer belongs to one thread at a time. */
#ifndef AL_BUF_H
#define AL_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "al.h"

typedef struct al_buf {
    char *p;       /* NULL until the first append; then always NUL-terminated */
    size_t n, cap; /* bytes held (without the NUL) and bytes allocated */
    int oom;       /* an append ran out of memory (sticky) */
} al_buf;

void al_buf_init(al_buf *b);
/* Frees the bytes; b is empty (and usable) again. */
void al_buf_deinit(al_buf *b);

/* Makes room for `extra` more bytes (and the NUL) without appending, so
 * that the next appends of that many bytes cannot fail; b->cap then says
 * what is allocated (callers that account for memory read it). AL_OK or
 * AL_ENOMEM (sticky, as for the appends). */
int al_buf_reserve(al_buf *b, size_t extra);
/* Appends n bytes of s (s may be NULL when n is 0). AL_OK or AL_ENOMEM. */
int al_buf_put(al_buf *b, const void *s, size_t n);
int al_buf_puts(al_buf *b, const char *s);
int al_buf_putc(al_buf *b, char ch);
/* Appends formatted text, of any length. AL_OK, AL_ENOMEM, or AL_EINVAL
 * when vsnprintf reports an encoding error (nothing is appended then). */
int al_buf_printf(al_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int al_buf_vprintf(al_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* The text so far: never NULL ("" while nothing was appended). Borrowed. */
const char *al_buf_str(const al_buf *b);
/* Hands the bytes to the caller (free() them; never NULL: an empty buffer
 * gives a malloc'd ""), writes their length to *n when n is not NULL, and
 * leaves b empty. NULL only when memory runs out or b.oom is set (then b is
 * emptied as by al_buf_deinit). */
char *al_buf_take(al_buf *b, size_t *n);
/* Drops the contents, keeps the memory (and clears oom). */
void al_buf_clear(al_buf *b);

#endif

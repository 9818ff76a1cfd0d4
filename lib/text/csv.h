/* CSV and TSV records with their line numbers, on Debian's libcsv.
 *
 * RFC 4180 quoting: a field may be enclosed in double quotes, and then holds
 * delimiters, line breaks and doubled quotes ("" for "). Quoting is strict:
 * a quote inside an unquoted field, text after a closing quote, or a quote
 * that never closes is a malformed record, reported with the line it starts
 * on. Spaces around fields are kept (RFC 4180: they are part of the field).
 * TSV is the same grammar with a tab as the delimiter, as pandas and
 * Python's csv module write it (fields holding tabs or newlines quoted).
 * Blank lines between records are skipped. */
#ifndef AL_CSV_H
#define AL_CSV_H

#include <stddef.h>

#include "../al.h"

/* One record. Fields are borrowed until the callback returns; each is
 * NUL-terminated (len excludes the NUL). */
typedef struct al_csv_rec {
    int line;              /* physical line the record starts on (1-based) */
    size_t off, len;       /* its bytes in the buffer, line breaks included */
    int n;                 /* fields */
    const char *const *f;
    const size_t *fl;
    const char *error;     /* NULL, or why the record is malformed (then n = 0) */
} al_csv_rec;

/* Returns 0 to go on, non-zero to stop (al_csv_each then returns it). */
typedef int (*al_csv_fn)(void *ud, const al_csv_rec *r);

/* Calls fn for every record of buf[0..len) from byte `start`, whose line
 * number is `line0`. A malformed record is passed with `error` set and
 * parsing resumes on the next line. Returns AL_OK, AL_ENOMEM, or what fn
 * returned. */
int al_csv_each(const char *buf, size_t len, size_t start, int line0, char delim, al_csv_fn fn,
                void *ud);

#endif

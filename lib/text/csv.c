/* CSV/TSV records with line numbers (see csv.h), on Debian's libcsv
 * (libcsv3: RFC 4180, strict quoting, streaming callbacks).
 *
 * libcsv does not say where in its input a record ends, so the buffer is
 * fed one physical line at a time: a record that completes while line L is
 * fed ends on L, and started on the first non-blank line fed since the
 * previous record ended. libcsv trims spaces around unquoted fields by
 * default; a space function that knows no spaces keeps them, as RFC 4180
 * has it. */
#include "csv.h"

#include <csv.h>
#include <stdlib.h>
#include <string.h>

typedef struct state {
    char **f;
    size_t *fl;
    int n, cap;
    int oom;
    int stop;                 /* what fn returned, once non-zero */
    int start_line;           /* -1: no record in progress */
    size_t start_off, line_end;
    al_csv_fn fn;
    void *ud;
} state;

static int no_space(unsigned char c) {
    (void)c;
    return 0;
}

static void clear_fields(state *s) {
    for (int i = 0; i < s->n; i++) free(s->f[i]);
    s->n = 0;
}

static void on_field(void *p, size_t len, void *ud) {
    state *s = ud;
    if (s->oom || s->stop) return;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        char **f = realloc(s->f, (size_t)cap * sizeof *f);
        if (f) s->f = f;
        size_t *fl = f ? realloc(s->fl, (size_t)cap * sizeof *fl) : NULL;
        if (fl) s->fl = fl;
        if (!f || !fl) {
            s->oom = 1;
            return;
        }
        s->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) {
        s->oom = 1;
        return;
    }
    if (len) memcpy(c, p, len);
    c[len] = 0;
    s->f[s->n] = c;
    s->fl[s->n++] = len;
}

static void deliver(state *s, const char *error) {
    al_csv_rec r = {.line = s->start_line, .off = s->start_off, .len = s->line_end - s->start_off,
                    .n = error ? 0 : s->n, .f = (const char *const *)s->f, .fl = s->fl,
                    .error = error};
    if (!s->stop && !s->oom) s->stop = s->fn(s->ud, &r);
    clear_fields(s);
    s->start_line = -1;
}

static void on_record(int c, void *ud) {
    (void)c;
    state *s = ud;
    if (s->start_line < 0) {   /* a lone record break (the \n of \r\n) */
        clear_fields(s);
        return;
    }
    deliver(s, NULL);
}

static int blank_line(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') return 0;
    return 1;
}

static int parser_init(struct csv_parser *p, char delim) {
    if (csv_init(p, CSV_STRICT | CSV_STRICT_FINI) != 0) return AL_ENOMEM;
    csv_set_delim(p, (unsigned char)delim);
    csv_set_space_func(p, no_space);
    return AL_OK;
}

int al_csv_each(const char *buf, size_t len, size_t start, int line0, char delim, al_csv_fn fn,
                void *ud) {
    static const char *const BAD_QUOTES =
        "malformed quoting: a quote inside an unquoted field, or text after a closing quote "
        "(RFC 4180: quote the whole field and double the quotes inside it)";
    struct csv_parser p;
    if (parser_init(&p, delim) != AL_OK) return AL_ENOMEM;
    state s = {.start_line = -1, .fn = fn, .ud = ud};
    size_t pos = start;
    int line = line0;
    while (pos < len && !s.stop && !s.oom) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) + 1 : len;
        if (s.start_line < 0) {
            if (blank_line(buf + pos, end - pos)) {
                pos = end;
                line++;
                continue;
            }
            s.start_line = line;
            s.start_off = pos;
        }
        s.line_end = end;
        size_t used = csv_parse(&p, buf + pos, end - pos, on_field, on_record, &s);
        if (used < end - pos && !s.oom && !s.stop) {
            if (csv_error(&p) == CSV_ENOMEM) {
                s.oom = 1;
                break;
            }
            /* a malformed record: report it, start afresh on the next line */
            deliver(&s, BAD_QUOTES);
            csv_free(&p);
            if (parser_init(&p, delim) != AL_OK) {
                s.oom = 1;
                break;
            }
        }
        pos = end;
        line++;
    }
    if (!s.stop && !s.oom) {
        if (csv_fini(&p, on_field, on_record, &s) != 0 && s.start_line >= 0 && !s.stop) {
            if (csv_error(&p) == CSV_ENOMEM) s.oom = 1;
            else deliver(&s, "a quoted field opened here never closes");
        }
    }
    clear_fields(&s);
    free(s.f);
    free(s.fl);
    csv_free(&p);
    if (s.oom) return AL_ENOMEM;
    return s.stop;
}

/* Flag parsing shared by the subcommands. Every malformed value is named. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse(int argc, char **argv, cli_flag *flags, int n) {
    for (int i = 0; i < argc; i++) {
        int found = 0;
        for (int k = 0; k < n && !found; k++) {
            if (strcmp(argv[i], flags[k].name) != 0) continue;
            found = 1;
            if (flags[k].is_switch) {
                flags[k].value = "1";
            } else if (i + 1 >= argc) {
                fprintf(stderr, "alignd: %s needs a value\n", argv[i]);
                return 2;
            } else {
                flags[k].value = argv[++i];
            }
        }
        if (!found) {
            fprintf(stderr, "alignd: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    return 0;
}

int cli_int(const cli_flag *f, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(f->value, &end, 10);
    if (errno || end == f->value || *end) {
        fprintf(stderr, "alignd: %s: '%s' is not an integer\n", f->name, f->value);
        return 2;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "alignd: %s: %ld is outside [%ld, %ld]\n", f->name, v, lo, hi);
        return 2;
    }
    *out = v;
    return 0;
}

int cli_float(const cli_flag *f, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(f->value, &end);
    if (errno || end == f->value || *end || !isfinite(v)) {
        fprintf(stderr, "alignd: %s: '%s' is not a number\n", f->name, f->value);
        return 2;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "alignd: %s: %g is outside [%g, %g]\n", f->name, v, lo, hi);
        return 2;
    }
    *out = v;
    return 0;
}

int cli_ids(const char *flag, const char *s, int **ids, int *n) {
    int cap = 16, k = 0;
    int *a = malloc((size_t)cap * sizeof *a);
    if (!a) return 1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > 0x7fffffff || (*end && *end != ',')) {
            fprintf(stderr, "alignd: %s: bad token id list at '%s' (want 1,2,3)\n", flag, p);
            free(a);
            return 2;
        }
        if (k == cap) {
            cap *= 2;
            int *na = realloc(a, (size_t)cap * sizeof *na);
            if (!na) {
                free(a);
                return 1;
            }
            a = na;
        }
        a[k++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) {
            fprintf(stderr, "alignd: %s: trailing comma\n", flag);
            free(a);
            return 2;
        }
    }
    if (k == 0) {
        fprintf(stderr, "alignd: %s: empty token id list\n", flag);
        free(a);
        return 2;
    }
    *ids = a;
    *n = k;
    return 0;
}

void cli_signal(int sig, void (*fn)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

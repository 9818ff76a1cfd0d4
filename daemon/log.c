/* Daemon logging (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "al.h"

int log_level = LOG_LVL_INFO;
static int journal;

static void from_lib(void *ud, al_log_level lvl, const char *msg) {
    (void)ud;
    char q[1024];
    if ((int)lvl <= log_level) log_write((int)lvl, "event=lib msg=%s", log_quote(q, sizeof q, msg));
}

void log_init(int level) {
    log_level = level;
    const char *j = getenv("JOURNAL_STREAM");
    journal = j && *j;
    al_log_set(from_lib, NULL);
}

int log_level_parse(const char *s) {
    static const char *const names[] = {"error", "warn", "notice", "info", "debug"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) return LOG_LVL_ERROR + i;
    if (!strcmp(s, "warning")) return LOG_LVL_WARN;
    return -1;
}

void log_write(int level, const char *fmt, ...) {
    static const char *const names[] = {"error", "warn", "notice", "info", "debug"};
    char line[4096];
    int n;
    if (level < LOG_LVL_ERROR) level = LOG_LVL_ERROR;
    if (level > LOG_LVL_DEBUG) level = LOG_LVL_DEBUG;
    if (journal) {
        n = snprintf(line, sizeof line, "<%d>", level);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     names[level - LOG_LVL_ERROR]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n') line[i] = ' ';
    line[len++] = '\n';
    ssize_t w = write(2, line, len);
    (void)w;
}

char *log_quote(char *out, unsigned n, const char *s) {
    if (!n) return out;
    if (!s) s = "";
    int bare = *s != 0;
    for (const char *p = s; *p && bare; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || *p == '\n' || *p == '\\' || *p == '\t') bare = 0;
    if (bare) {
        snprintf(out, n, "%s", s);
        return out;
    }
    unsigned k = 0;
    out[k++] = '"';
    for (const char *p = s; *p && k + 4 < n; p++) {
        if (*p == '"' || *p == '\\') {
            out[k++] = '\\';
            out[k++] = *p;
        } else if (*p == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else {
            out[k++] = *p;
        }
    }
    out[k++] = '"';
    out[k] = 0;
    return out;
}

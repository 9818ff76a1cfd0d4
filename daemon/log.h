/* Daemon logging: one line per event, key=value (STYLE.md §6).
 *
 *   event=listening addr=127.0.0.1:8080
 *   job=ftjob-17 step=200 loss=1.8342
 *
 * Lines go to stderr. When $JOURNAL_STREAM is set (stderr is journald's), each
 * line starts with <3>..<7> (sd-daemon(3) levels) and no timestamp; else with
 * ts=<ISO-8601 UTC> level=<name>. The level macros test the threshold before
 * formatting. lib/'s al_log messages are routed here. Thread-safe: each line
 * is one write(2). */
#ifndef DAEMON_LOG_H
#define DAEMON_LOG_H

enum { LOG_LVL_ERROR = 3, LOG_LVL_WARN = 4, LOG_LVL_NOTICE = 5, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

extern int log_level;

/* Reads $JOURNAL_STREAM, installs the al_log hook. */
void log_init(int level);
/* "error", "warn", "notice", "info", "debug" -> level; -1 if unknown. */
int log_level_parse(const char *s);
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) do { if (log_level >= LOG_LVL_ERROR) log_write(LOG_LVL_ERROR, __VA_ARGS__); } while (0)
#define log_warn(...) do { if (log_level >= LOG_LVL_WARN) log_write(LOG_LVL_WARN, __VA_ARGS__); } while (0)
#define log_notice(...) do { if (log_level >= LOG_LVL_NOTICE) log_write(LOG_LVL_NOTICE, __VA_ARGS__); } while (0)
#define log_info(...) do { if (log_level >= LOG_LVL_INFO) log_write(LOG_LVL_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_level >= LOG_LVL_DEBUG) log_write(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

/* Writes s into out as a log value: bare when it has no space, quote or '=',
 * else double-quoted with \" \\ \n escaped. Returns out. */
char *log_quote(char *out, unsigned n, const char *s);

#endif

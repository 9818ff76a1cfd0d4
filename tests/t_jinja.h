/* Renders chat templates with python3-jinja2 through tests/jinja_ref.py (the
 * environment transformers' apply_chat_template builds), for tests that
 * compare what alignd renders or tokenizes with the reference.
 *
 * Usage: t_jinja_add(id, template, context) for each case, then
 * t_jinja_run() once; t_jinja_output(id) is the reference text (NULL when
 * jinja2 raised, or the case is unknown). Include after t.h. */
#ifndef T_JINJA_H
#define T_JINJA_H

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

static json_t *t_jinja_cases_, *t_jinja_results_;

static inline void t_jinja_add(const char *id, const char *tmpl, json_t *ctx /* stolen */) {
    if (!t_jinja_cases_) t_jinja_cases_ = json_array();
    json_array_append_new(t_jinja_cases_, json_pack("{s:s,s:s,s:o}", "id", id, "template", tmpl, "context", ctx));
}

/* Runs every case added; 0 when the reference ran. */
static inline int t_jinja_run(void) {
    char dir[1024], cases[1200], out[1200], cmd[4096];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    snprintf(cases, sizeof cases, "%s/jinja_cases_%d.jsonl", t_tmpdir(), (int)getpid());
    snprintf(out, sizeof out, "%s/jinja_out_%d.jsonl", t_tmpdir(), (int)getpid());
    FILE *f = fopen(cases, "w");
    T_TRUE(f != NULL);
    if (!f) return -1;
    size_t i;
    json_t *c;
    json_array_foreach(t_jinja_cases_, i, c) {
        char *line = json_dumps(c, JSON_COMPACT);
        fprintf(f, "%s\n", line);
        free(line);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/jinja_ref.py' '%s' '%s'", dir, cases, out);
    int st = system(cmd);
    int code = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    T_REPORT_(code == 0, "tests/jinja_ref.py failed (exit %d; apt-get install python3-jinja2)", code);
    if (code) return -1;
    json_decref(t_jinja_results_);
    t_jinja_results_ = json_array();
    FILE *r = fopen(out, "r");
    char *line = NULL;
    size_t cap = 0;
    while (r && getline(&line, &cap, r) > 0) json_array_append_new(t_jinja_results_, json_loads(line, 0, NULL));
    free(line);
    if (r) fclose(r);
    return 0;
}

static inline const char *t_jinja_output(const char *id) {
    size_t i;
    json_t *x;
    json_array_foreach(t_jinja_results_, i, x) {
        if (!strcmp(json_string_value(json_object_get(x, "id")), id))
            return json_is_true(json_object_get(x, "ok")) ? json_string_value(json_object_get(x, "output")) : NULL;
    }
    return NULL;
}

static inline void t_jinja_done(void) {
    json_decref(t_jinja_cases_);
    json_decref(t_jinja_results_);
    t_jinja_cases_ = t_jinja_results_ = NULL;
}

#endif

/* The method registry (lib/train/methods.c) as GET /v1/methods serves it
 * (api_methods_json, the handler's own body) against the job parser
 * (lib/train/job.c). For every method and every field served:
 *  - the default served is what a job that leaves the field out gets, and on
 *    a built-in task the recipe's (given way to a job's own batch_size
 *    where the registry says so);
 *  - the default given explicitly, each end of the range, every choice (for
 *    loss_type: the objective's own list) and every alias round-trip into the
 *    resolved description;
 *  - a value beyond the range or of the wrong type is refused with the
 *    field's path and the range or choices served.
 * And the registry agrees with the objectives, al_method_is_rl/_data, the
 * built-in tasks and the parser's own table (the resolved description). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/server.h"
#include "t.h"
#include "tasks/tasks.h"
#include "train/job.h"

static al_error g_err; /* the last refusal: the field as data, and the message */

/* The smallest valid description of method m: on a built-in task or a file. */
static json_t *base_job(const json_t *m, int on_task) {
    const char *id = json_string_value(json_object_get(m, "id"));
    const char *kind = json_string_value(json_object_get(m, "kind"));
    json_t *j = json_pack("{s:s}", "method", id);
    if (json_is_true(json_object_get(m, "requires_model"))) json_object_set_new(j, "model", json_string("m"));
    if (on_task) json_object_set_new(j, "task", json_pack("{s:s}", "name", "addition2"));
    else json_object_set_new(j, "training_file", json_string("f"));
    if (json_is_true(json_object_get(m, "takes_reward")))
        json_object_set_new(j, "reward", json_pack("{s:i}", "verifiable", 1));
    if (!strcmp(kind, "data")) json_object_set_new(j, "output_dir", json_string("o"));
    if (!strcmp(id, "critique_revise")) json_object_set_new(j, "principles", json_pack("[s]", "Be brief."));
    if (!strcmp(id, "clean_data")) json_object_set_new(j, "hygiene", json_pack("{s:i}", "min_words", 1));
    return j;
}

/* Parses j (stolen); on success returns the resolved hyperparameters (new
 * reference), else NULL with g_err set. */
static json_t *resolve(json_t *j) {
    al_job job;
    g_err = (al_error){"", ""};
    int rc = al_job_from_json(&job, j, &g_err);
    json_decref(j);
    if (rc) return NULL;
    json_t *h = json_incref(json_object_get(job.resolved, "hyperparameters"));
    al_job_deinit(&job);
    return h;
}

/* base_job(m, on_task) with hyperparameters.name = v (stolen; NULL: none). */
static json_t *with(const json_t *m, int on_task, const char *name, json_t *v) {
    json_t *j = base_job(m, on_task);
    json_t *h = json_object();
    if (v) json_object_set_new(h, name, v);
    /* the DPO losses that need label smoothing get it */
    if (!strcmp(json_string_value(json_object_get(m, "id")), "dpo") && !strcmp(name, "loss_type"))
        json_object_set_new(h, "label_smoothing", json_real(0.1));
    json_object_set_new(j, "hyperparameters", h);
    return j;
}

/* A served value against a resolved one: numbers through float, as held. */
static int same(const json_t *served, const json_t *got) {
    if (json_is_array(served)) {
        if (!json_is_array(got) || json_array_size(got) != json_array_size(served)) return 0;
        for (size_t i = 0; i < json_array_size(served); i++)
            if (!same(json_array_get(served, i), json_array_get(got, i))) return 0;
        return 1;
    }
    if (json_is_real(served) || json_is_real(got))
        return json_is_number(got) && (float)json_number_value(served) == (float)json_number_value(got);
    return json_equal(served, got);
}

static void expect_value(const char *what, const json_t *m, const char *name, json_t *h, const json_t *want) {
    const char *id = json_string_value(json_object_get(m, "id"));
    char *w = json_dumps(want, JSON_ENCODE_ANY), *g = h ? json_dumps(json_object_get(h, name), JSON_ENCODE_ANY) : NULL;
    T_REPORT_(h && same(want, json_object_get(h, name)), "%s %s.%s: want %s, got %s (%s)", what, id, name, w,
              g ? g : "an error", h ? "" : g_err.msg);
    free(w);
    free(g);
    json_decref(h);
}

static void expect_refused(const json_t *m, const char *name, json_t *v, const char *msg) {
    json_t *h = resolve(with(m, 0, name, v));
    T_REPORT_(!h && !strcmp(g_err.msg, msg), "%s.%s: want \"%s\", got \"%s\"",
              json_string_value(json_object_get(m, "id")), name, msg, h ? "accepted" : g_err.msg);
    /* the field at fault as data: the message's path */
    size_t n = strcspn(msg, ":");
    T_REPORT_(!h && strlen(g_err.field) == n && !strncmp(g_err.field, msg, n), "%s.%s: field \"%s\" for \"%s\"",
              json_string_value(json_object_get(m, "id")), name, g_err.field, msg);
    json_decref(h);
}

/* An end of a range: accepted as given, or refused by a rule other than the
 * field's range (batch_size 65536 is more than a micro-batch holds). */
static void expect_end(const json_t *m, const json_t *f, const char *end) {
    const char *name = json_string_value(json_object_get(f, "name"));
    const json_t *v = json_object_get(f, end);
    if (!v) return;
    json_t *h = resolve(with(m, 0, name, json_deep_copy(v)));
    char path[96];
    snprintf(path, sizeof path, "hyperparameters.%s: ", name);
    if (h) expect_value(end, m, name, h, v);
    else T_REPORT_(strstr(g_err.msg, "is outside") == NULL && !strncmp(g_err.msg, "hyperparameters.", 16),
                   "%s.%s = %s: %s", json_string_value(json_object_get(m, "id")), name, end, g_err.msg);
}

static void check_range(const json_t *m, const json_t *f) {
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *type = json_string_value(json_object_get(f, "type"));
    double lo = json_number_value(json_object_get(f, "minimum")), hi = json_number_value(json_object_get(f, "maximum"));
    char msg[AL_ERRLEN];
    expect_end(m, f, "minimum");
    expect_end(m, f, "maximum");
    if (!strcmp(type, "integer")) {
        snprintf(msg, sizeof msg, "hyperparameters.%s: %lld is outside [%.0f, %.0f]", name, (long long)lo - 1, lo, hi);
        expect_refused(m, name, json_integer((json_int_t)lo - 1), msg);
        snprintf(msg, sizeof msg, "hyperparameters.%s: %lld is outside [%.0f, %.0f]", name, (long long)hi + 1, lo, hi);
        expect_refused(m, name, json_integer((json_int_t)hi + 1), msg);
        snprintf(msg, sizeof msg, "hyperparameters.%s: must be an integer", name);
        expect_refused(m, name, json_real(lo + 0.5), msg);
    } else if (!strcmp(type, "number")) {
        double below = lo - 1, above = hi * 2 + 1;
        snprintf(msg, sizeof msg, "hyperparameters.%s: %g is outside [%g, %g]", name, below, lo, hi);
        expect_refused(m, name, json_real(below), msg);
        snprintf(msg, sizeof msg, "hyperparameters.%s: %g is outside [%g, %g]", name, above, lo, hi);
        expect_refused(m, name, json_real(above), msg);
        snprintf(msg, sizeof msg, "hyperparameters.%s: must be a number", name);
        expect_refused(m, name, json_string("x"), msg);
    }
}

static void check_choices(const json_t *m, const json_t *f) {
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *type = json_string_value(json_object_get(f, "type"));
    const json_t *ch = json_object_get(f, "choices");
    size_t i, n = json_array_size(ch);
    const json_t *c;
    T_REPORT_(n > 0, "%s: choices served", name);
    json_array_foreach(ch, i, c) {
        /* "auto" is the default for every field (mixed_precision's resolved by the CPU) */
        json_t *want = !strcmp(json_string_value(c), "auto") ? json_incref(json_object_get(f, "default"))
                       : !strcmp(type, "enum_list")       ? json_pack("[O]", c)
                                                          : json_incref((json_t *)c);
        expect_value("choice", m, name, resolve(with(m, 0, name, json_deep_copy(c))), want);
        json_decref(want);
    }
    if (!strcmp(type, "enum_list")) {
        char msg[AL_ERRLEN];
        snprintf(msg, sizeof msg, "hyperparameters.%s: must be a name or a list of 1 to %d names", name,
                 AL_MAX_LOSS_TYPES);
        expect_refused(m, name, json_integer(1), msg);
    }
    if (!strcmp(type, "enum")) { /* the message lists the choices served */
        char msg[AL_ERRLEN];
        size_t len = (size_t)snprintf(msg, sizeof msg, "hyperparameters.%s: must be ", name);
        json_array_foreach(ch, i, c)
            len += (size_t)snprintf(msg + len, sizeof msg - len, "%s\"%s\"", !i ? "" : i + 1 < n ? ", " : " or ",
                                    json_string_value(c));
        expect_refused(m, name, json_string("no-such-choice"), msg);
    }
}

/* Every field the method takes, served against what a job of it gets. */
static void check_method(const json_t *m, json_t *resolved_keys) {
    const char *kind = json_string_value(json_object_get(m, "kind"));
    json_t *plain = resolve(base_job(m, 0));
    T_REPORT_(plain != NULL, "%s: the smallest job parses (%s)", json_string_value(json_object_get(m, "id")), g_err.msg);
    json_t *task = !strcmp(kind, "rl") ? resolve(base_job(m, 1)) : NULL;
    json_t *own = !strcmp(kind, "rl") ? resolve(with(m, 1, "batch_size", json_integer(16))) : NULL;
    size_t i;
    const json_t *f;
    const char *prev = NULL;
    json_array_foreach(json_object_get(m, "hyperparameters"), i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        const json_t *dflt = json_object_get(f, "default");
        json_object_set_new(resolved_keys, name, json_true());
        /* in the resolved description's order */
        if (prev && plain) {
            const char *k;
            json_t *v;
            int seen_prev = 0, ok = 0;
            json_object_foreach(plain, k, v) {
                if (!strcmp(k, prev)) seen_prev = 1;
                if (!strcmp(k, name)) { ok = seen_prev; break; }
            }
            T_REPORT_(ok, "%s after %s", name, prev);
        }
        prev = name;
        expect_value("default", m, name, json_incref(plain), dflt);
        if (task) {
            const json_t *td = json_object_get(f, "task_default");
            expect_value("task default", m, name, json_incref(task), td ? td : dflt);
            int unless = json_object_get(f, "task_default_unless_set") != NULL;
            json_t *want = !strcmp(name, "batch_size") ? json_integer(16) : json_incref((json_t *)(td && !unless ? td : dflt));
            expect_value("own batch_size", m, name, json_incref(own), want);
            json_decref(want);
        }
        expect_value("explicit default", m, name, resolve(with(m, 0, name, json_deep_copy(dflt))), dflt);
        const json_t *a;
        size_t k;
        json_array_foreach(json_object_get(f, "aliases"), k, a)
            expect_value(json_string_value(a), m, name,
                         resolve(with(m, 0, json_string_value(a), json_deep_copy(dflt))), dflt);
        const char *type = json_string_value(json_object_get(f, "type"));
        if (!strcmp(type, "integer") || !strcmp(type, "number")) check_range(m, f);
        else if (!strcmp(type, "enum") || !strcmp(type, "enum_list")) check_choices(m, f);
        else if (!strcmp(type, "number_list")) {
            char msg[AL_ERRLEN];
            double lo = json_number_value(json_object_get(f, "minimum"));
            snprintf(msg, sizeof msg, "hyperparameters.%s[0]: must be a number >= %g", name, lo);
            expect_refused(m, name, json_pack("[f]", lo - 1), msg);
            snprintf(msg, sizeof msg, "hyperparameters.%s: must be a list of numbers, one per loss_type", name);
            expect_refused(m, name, json_real(lo), msg);
        }
        else if (!strcmp(type, "boolean")) {
            char msg[AL_ERRLEN];
            snprintf(msg, sizeof msg, "hyperparameters.%s: must be true or false", name);
            expect_refused(m, name, json_integer(1), msg);
            expect_value("true", m, name, resolve(with(m, 0, name, json_true())), json_true());
            expect_value("false", m, name, resolve(with(m, 0, name, json_false())), json_false());
        }
    }
    json_decref(plain);
    json_decref(task);
    json_decref(own);
}

/* The methods in the objectives' order, then the data jobs; each training
 * method's objective and loss types; the kinds as al_method_is_* say. */
/* The job fields method m takes beyond its hyper-parameters (takes_*, what
 * the form shows) against the parser: the field it refuses by name is the one
 * the method does not take. Only the methods that sample are checked for
 * critic, critic_model and model_b, as only they are refused them. */
static void check_takes(const json_t *m) {
    const char *id = json_string_value(json_object_get(m, "id"));
    const char *kind = json_string_value(json_object_get(m, "kind"));
    const al_method *meth = al_method_find(id);
#define TAKES(k) json_is_true(json_object_get(m, k))
    T_REPORT_(TAKES("takes_ref_model") == (meth->objective && meth->objective->needs_ref),
              "%s: takes_ref_model is its objective's needs_ref", id);
    /* requires_reward: refused without one */
    json_t *j = base_job(m, 1);
    json_object_del(j, "reward");
    json_t *h = resolve(j);
    T_REPORT_(TAKES("requires_reward") == !strcmp(g_err.field, "reward"), "%s: requires_reward (%s)", id, g_err.msg);
    json_decref(h);
    if (!TAKES("takes_reward")) return;
    /* the judge: refused by name where not taken */
    j = base_job(m, 1);
    json_object_set_new(j, "reward", json_pack("{s:i, s:{s:s}}", "verifiable", 1, "judge", "model", "j"));
    if (TAKES("takes_model_b")) json_object_set_new(j, "model_b", json_string("b")); /* whom to judge against */
    h = resolve(j);
    T_REPORT_(TAKES("takes_judge") == !!strcmp(g_err.field, "reward.judge"), "%s: takes_judge (%s)", id, g_err.msg);
    json_decref(h);
    if (strcmp(kind, "rl") && strcmp(kind, "data")) return;
    static const char *const fields[][2] = {{"critic_model", "takes_critic"}, {"model_b", "takes_model_b"}};
    for (int f = 0; f < 2; f++) {
        j = base_job(m, 1);
        json_object_set_new(j, fields[f][0], json_string("x"));
        h = resolve(j);
        T_REPORT_(TAKES(fields[f][1]) == !!strcmp(g_err.field, fields[f][0]), "%s: %s (%s)", id, fields[f][1],
                  g_err.msg);
        json_decref(h);
    }
#undef TAKES
}

static void check_methods(const json_t *data) {
    const al_objective_ops *const *ob = al_objectives();
    size_t i;
    const json_t *m;
    json_array_foreach(data, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        const char *kind = json_string_value(json_object_get(m, "kind"));
        T_STR_EQ(json_string_value(json_object_get(m, "object")), "method");
        if (*ob) {
            T_STR_EQ(id, (*ob)->name);
            T_TRUE(!strcmp(kind, (*ob)->batch == AL_BATCH_PROMPT ? "rl" : "training"));
            const json_t *lt = NULL, *f;
            size_t k;
            json_array_foreach(json_object_get(m, "hyperparameters"), k, f)
                if (!strcmp(json_string_value(json_object_get(f, "name")), "loss_type")) lt = json_object_get(f, "choices");
            size_t n = 0;
            for (const char *const *l = (*ob)->loss_types; l && *l; l++, n++)
                T_STR_EQ(json_string_value(json_array_get(lt, n)), *l);
            T_REPORT_(json_array_size(lt) == n, "%s: loss_type's choices are its objective's %zu", id, n);
            ob++;
        } else {
            T_STR_EQ(kind, "data");
        }
        T_EQ_INT(al_method_is_rl(id), !strcmp(kind, "rl"));
        T_EQ_INT(al_method_is_data(id), !strcmp(kind, "data"));
        json_t *j = base_job(m, 0);
        json_object_del(j, "model");
        json_t *h = resolve(j);
        if (json_is_true(json_object_get(m, "requires_model"))) T_STR_EQ(g_err.msg, "model: is required");
        else T_TRUE(h != NULL);
        json_decref(h);
        check_takes(m);
    }
    T_TRUE(*ob == NULL);
    T_EQ_INT(al_method_is_rl("nope"), 0);
    T_EQ_INT(al_method_is_data(NULL), 0);
    /* an unknown method's error lists the methods served */
    char msg[AL_ERRLEN];
    size_t len = (size_t)snprintf(msg, sizeof msg, "method: 'dpx' is not one of ");
    json_array_foreach(data, i, m)
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s", i ? ", " : "", json_string_value(json_object_get(m, "id")));
    T_TRUE(resolve(json_pack("{s:s, s:s, s:s}", "method", "dpx", "model", "m", "training_file", "f")) == NULL);
    T_STR_EQ(g_err.msg, msg);
}

static void check_tasks(const json_t *tasks) {
    size_t i;
    const json_t *t;
    const al_task_info *ti = al_tasks();
    json_array_foreach(tasks, i, t) {
        const char *id = json_string_value(json_object_get(t, "id"));
        T_TRUE(ti->name != NULL && !strcmp(id, ti->name));
        const char *g = json_string_value(json_object_get(t, "grader"));
        T_TRUE(g == al_task_grader(id) || (g && al_task_grader(id) && !strcmp(g, al_task_grader(id))));
        json_t *h = resolve(json_pack("{s:s, s:s, s:{s:s}}", "method", "sft", "model", "m", "task", "name", id));
        T_REPORT_(h != NULL, "task %s: %s", id, g_err.msg);
        json_decref(h);
        if (ti->name) ti++;
    }
    T_TRUE(ti->name == NULL);
}

int main(void) {
    json_t *reg = api_methods_json();
    T_TRUE(reg != NULL);
    T_STR_EQ(json_string_value(json_object_get(reg, "object")), "list");
    const json_t *data = json_object_get(reg, "data");
    check_methods(data);
    check_tasks(json_object_get(reg, "tasks"));
    json_t *keys = json_object();
    size_t i;
    const json_t *m;
    json_array_foreach(data, i, m) check_method(m, keys);
    /* every field of the parser's table is served for some method, and no other */
    json_t *h = resolve(json_pack("{s:s, s:s, s:s}", "method", "sft", "model", "m", "training_file", "f"));
    T_EQ_INT((long)json_object_size(keys), (long)json_object_size(h));
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v) T_REPORT_(json_object_get(keys, k) != NULL, "%s is served", k);
    json_decref(h);
    json_decref(keys);
    json_decref(reg);
    return t_done();
}

/* GET /v1/methods: the method registry of lib/train/methods.h as an
 * OpenAI-style list object, for clients that build job descriptions (the
 * dashboard's new-job form renders it):
 *
 *   {"object": "list", "data": [METHOD, ...], "tasks": [TASK, ...]}
 *   METHOD = {"id", "object": "method", "kind": "training"|"rl"|"data",
 *             "group", "title", "description", "input_data", "requires_model",
 *             the job fields it takes beyond its hyper-parameters as booleans
 *             (AL_TAKES_* of methods.h): "takes_ref_model", "takes_reward",
 *             "requires_reward", "takes_judge", "takes_reward_shaping",
 *             "takes_critic", "takes_model_b";
 *             "hyperparameters": [FIELD, ...]}   (the fields it takes, in the
 *                                                 resolved description's order)
 *   FIELD  = {"name", "type": "integer"|"number"|"boolean"|"enum"|"enum_list"
 *             |"number_list", "default", "minimum", "maximum" (numbers),
 *             "choices" (enum, enum_list: for loss_type the objective's own
 *             list), "aliases", "basic", "help", and on the RL methods
 *             "task_default" (the recipe a job on a built-in task gets) with
 *             "task_default_unless_set": "batch_size" where a job's own
 *             batch_size sets it aside}
 *   TASK   = {"id", "object": "task", "description", "grader"}
 *
 * Defaults are the method's (TRL's), as a job that leaves the field out
 * gets them. Constant data: no backend call, no lock. */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "tasks/tasks.h"
#include "train/methods.h"

/* A value of field f for the JSON (d: a number, boolean or enum value). */
static json_t *value_json(const al_hp_spec *f, double d) {
    switch (f->type) {
    case AL_HP_INT:
    case AL_HP_LONG: return json_integer((json_int_t)d);
    case AL_HP_REAL: return json_real(d);
    case AL_HP_BOOL: return json_boolean(d != 0);
    case AL_HP_ENUM: {
        const char *name = al_hp_choice_name(f, (int)d);
        return name ? json_string(name) : json_null();
    }
    case AL_HP_NAMES: return NULL;
    case AL_HP_REALS: return json_pack("[f]", d); /* one per loss type */
    }
    return NULL;
}

static json_t *names_json(const char *const *names) {
    json_t *a = json_array();
    for (; a && names && *names; names++)
        if (json_array_append_new(a, json_string(*names))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static const char *type_name(al_hp_type t) {
    static const char *const names[] = {[AL_HP_INT] = "integer",   [AL_HP_LONG] = "integer",
                                        [AL_HP_REAL] = "number",   [AL_HP_BOOL] = "boolean",
                                        [AL_HP_ENUM] = "enum",     [AL_HP_NAMES] = "enum_list",
                                        [AL_HP_REALS] = "number_list"};
    return names[t];
}

/* Sets o[k] = v (stolen); a NULL v (memory ran out) fails the whole build. */
static int put(json_t *o, const char *k, json_t *v) { return json_object_set_new(o, k, v) ? -1 : 0; }

static json_t *field_json(const al_hp_spec *f, const al_method *m) {
    json_t *o = json_object();
    if (!o) return NULL;
    int bad = put(o, "name", json_string(f->name)) | put(o, "type", json_string(type_name(f->type)));
    if (f->type == AL_HP_NAMES)
        bad |= put(o, "default", json_pack("[s]", al_hp_default_name(f, m)));
    else
        bad |= put(o, "default", value_json(f, al_hp_default(f, m, 0, 0)));
    if (f->type == AL_HP_INT || f->type == AL_HP_LONG) {
        bad |= put(o, "minimum", json_integer((json_int_t)f->lo)) | put(o, "maximum", json_integer((json_int_t)f->hi));
    } else if (f->type == AL_HP_REAL || f->type == AL_HP_REALS) {
        bad |= put(o, "minimum", json_real(f->lo));
        if (isfinite(f->hi)) bad |= put(o, "maximum", json_real(f->hi));
    }
    if (f->type == AL_HP_ENUM) {
        const char *names[32];
        int n = 0;
        for (const al_hp_choice *c = f->choices; c->name && n < 31; c++)
            if (!c->hidden) names[n++] = c->name;
        names[n] = NULL;
        bad |= put(o, "choices", names_json(names));
    } else if (f->type == AL_HP_NAMES) {
        bad |= put(o, "choices", names_json(al_hp_names(f, m)));
    }
    if (f->aliases) bad |= put(o, "aliases", names_json(f->aliases));
    bad |= put(o, "basic", json_boolean(f->flags & AL_HP_BASIC)) | put(o, "help", json_string(f->help));
    const al_hp_override *t = al_hp_task_default(f, m);
    if (t) {
        bad |= put(o, "task_default", value_json(f, t->v));
        if (t->unless_batch) bad |= put(o, "task_default_unless_set", json_string("batch_size"));
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *method_json(const al_method *m) {
    static const char *const kinds[] = {[AL_METHOD_TRAIN] = "training", [AL_METHOD_RL] = "rl",
                                        [AL_METHOD_DATA] = "data"};
    json_t *hps = json_array();
    int n, bad = !hps;
    const al_hp_spec *specs = al_hp_specs(&n);
    for (int i = 0; i < n && !bad; i++)
        if (al_hp_takes(&specs[i], m)) bad = json_array_append_new(hps, field_json(&specs[i], m));
    if (bad) {
        json_decref(hps);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:o}", "id",
                     m->name, "object", "method", "kind", kinds[m->kind], "group", m->group, "title", m->title,
                     "description", m->about, "input_data", m->data, "requires_model", m->needs_model,
                     "takes_ref_model", !!(m->takes & AL_TAKES_REF_MODEL), "takes_reward",
                     !!(m->takes & AL_TAKES_REWARD), "requires_reward", !!(m->takes & AL_NEEDS_REWARD),
                     "takes_judge", !!(m->takes & AL_TAKES_JUDGE), "takes_reward_shaping",
                     !!(m->takes & AL_TAKES_SHAPING), "takes_critic", !!(m->takes & AL_TAKES_CRITIC),
                     "takes_model_b", !!(m->takes & AL_TAKES_MODEL_B), "hyperparameters", hps);
}

json_t *api_methods_json(void) {
    json_t *data = json_array(), *tasks = json_array();
    int bad = !data || !tasks;
    for (const al_method *m = al_methods(); m->name && !bad; m++) bad = json_array_append_new(data, method_json(m));
    for (const al_task_info *t = al_tasks(); t->name && !bad; t++)
        bad = json_array_append_new(tasks, json_pack("{s:s, s:s, s:s, s:s?}", "id", t->name, "object", "task",
                                                     "description", t->about, "grader", t->grader));
    if (bad) {
        json_decref(data);
        json_decref(tasks);
        return NULL;
    }
    return json_pack("{s:s, s:o, s:o}", "object", "list", "data", data, "tasks", tasks);
}

enum MHD_Result api_h_methods(api_req *r) {
    json_t *o = api_methods_json();
    if (!o) return api_reply_error(r, 500, "server_error", "internal_error", "", "out of memory");
    return api_reply_json(r, 200, o);
}

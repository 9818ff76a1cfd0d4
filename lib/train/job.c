/* Job description parsing (see job.h). Hyper-parameters are read by the
 * method registry's table (methods.h: each field's type, range and default,
 * and the defaults TRL gives each method); the rest of the description by
 * the functions below, one per object. */
#include "job.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../tasks/tasks.h"
#include "../text/chat.h"
#include "../text/jinja/jinja.h"
#include "methods.h"
#include "objective.h"

/* ---- hyper-parameters, read by the registry's table (methods.h) ---------------- */

/* Where a field's value lives while the job is parsed: its member of
 * al_hparams, or, for a field no code reads (AL_HP_UNSTORED), a slot of its
 * own that only the resolved description keeps. */
typedef union hp_slot {
    int i;
    long l;
    float f;
} hp_slot;
_Static_assert(sizeof(al_sched_kind) == sizeof(int), "enum fields are held in an int");

static void *field_at(al_hparams *hp, hp_slot *own, const al_hp_spec *f) {
    return f->off == AL_HP_UNSTORED ? (void *)own : (void *)((char *)hp + f->off);
}

/* on_task: the job names a built-in task; own_batch: and sets batch_size */
static void set_default(al_hparams *hp, void *p, const al_hp_spec *f, const al_method *m, int on_task,
                        int own_batch) {
    double d = al_hp_default(f, m, on_task, own_batch);
    switch (f->type) {
    case AL_HP_INT: case AL_HP_BOOL: case AL_HP_ENUM: *(int *)p = (int)d; break;
    case AL_HP_LONG: *(long *)p = (long)d; break;
    case AL_HP_REAL: *(float *)p = (float)d; break;
    case AL_HP_NAMES:
        snprintf(hp->loss_type[0], sizeof hp->loss_type[0], "%s", al_hp_default_name(f, m));
        hp->n_loss_types = 1;
        break;
    case AL_HP_REALS:
        for (int i = 0; i < AL_MAX_LOSS_TYPES; i++) hp->loss_weights[i] = (float)d;
        break;
    }
}

/* An enum's value from v (a string, or a boolean for AL_HP_BOOL_ALIAS). */
static int read_choice(void *p, const al_hp_spec *f, const json_t *v, al_error *err) {
    const char *names[32];
    int values[32], n = 0;
    for (const al_hp_choice *c = f->choices; c->name; c++) {
        if (json_is_string(v) && !strcmp(json_string_value(v), c->name)) {
            *(int *)p = c->value;
            return AL_OK;
        }
        if (!c->hidden && n < 31) {
            values[n] = c->value;
            names[n++] = c->name;
        }
    }
    names[n] = NULL;
    /* TRL's old booleans: true is the first choice, false the last */
    if (json_is_boolean(v) && (f->flags & AL_HP_BOOL_ALIAS) && n) {
        *(int *)p = values[json_is_true(v) ? 0 : n - 1];
        return AL_OK;
    }
    char list[AL_ERRLEN];
    return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be %s", f->name,
                   al_names_join(list, sizeof list, names, "\"", " or "));
}

/* Reads one field from v (not NULL, not "auto") into p (field_at). */
static int read_field(al_hparams *hp, void *p, const al_hp_spec *f, const json_t *v, al_error *err) {
    const char *n = f->name;
    switch (f->type) {
    case AL_HP_INT:
    case AL_HP_LONG: {
        if (!json_is_integer(v))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be an integer", n);
        json_int_t x = json_integer_value(v);
        if ((double)x < f->lo || (double)x > f->hi)
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "%lld is outside [%.0f, %.0f]", n,
                           (long long)x, f->lo, f->hi);
        if (f->type == AL_HP_INT) *(int *)p = (int)x;
        else *(long *)p = (long)x;
        return AL_OK;
    }
    case AL_HP_REAL: {
        if (!json_is_number(v))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be a number", n);
        double x = json_number_value(v);
        if (!isfinite(x) || x < f->lo || x > f->hi)
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "%g is outside [%g, %g]", n, x, f->lo, f->hi);
        *(float *)p = (float)x;
        return AL_OK;
    }
    case AL_HP_BOOL:
        if (!json_is_boolean(v))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be true or false", n);
        *(int *)p = json_is_true(v);
        return AL_OK;
    case AL_HP_ENUM:
        return read_choice(p, f, v, err);
    case AL_HP_NAMES: {
        size_t cnt = json_is_array(v) ? json_array_size(v) : 1;
        if (!(json_is_string(v) || json_is_array(v)) || cnt == 0 || cnt > AL_MAX_LOSS_TYPES)
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be a name or a list of 1 to %d names",
                           n, AL_MAX_LOSS_TYPES);
        for (size_t i = 0; i < cnt; i++) {
            const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
            const char *s = json_string_value(e);
            if (!s || !*s || strlen(s) >= sizeof hp->loss_type[0])
                return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s[%zu]", "must be a loss name", n, i);
            snprintf(hp->loss_type[i], sizeof hp->loss_type[i], "%s", s);
        }
        hp->n_loss_types = (int)cnt;
        return AL_OK;
    }
    case AL_HP_REALS: {
        if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > AL_MAX_LOSS_TYPES)
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be a list of numbers, one per loss_type", n);
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_number(e) || !(json_number_value(e) >= f->lo) || !isfinite(json_number_value(e)))
                return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s[%zu]", "must be a number >= %g", n, i, f->lo);
            hp->loss_weights[i] = (float)json_number_value(e);
        }
        return AL_OK;
    }
    }
    return AL_EINVAL;
}

/* The field's value for the resolved description. */
static json_t *field_json(const al_hparams *hp, const void *p, const al_hp_spec *f) {
    switch (f->type) {
    case AL_HP_INT: return json_integer(*(const int *)p);
    case AL_HP_LONG: return json_integer(*(const long *)p);
    case AL_HP_REAL: return json_real(*(const float *)p);
    case AL_HP_BOOL: return json_boolean(*(const int *)p);
    case AL_HP_ENUM: {
        const char *name = al_hp_choice_name(f, *(const int *)p);
        return name ? json_string(name) : json_null();
    }
    case AL_HP_NAMES: {
        json_t *a = json_array();
        for (int i = 0; i < hp->n_loss_types; i++) json_array_append_new(a, json_string(hp->loss_type[i]));
        return a;
    }
    case AL_HP_REALS: {
        json_t *a = json_array();
        for (int i = 0; i < hp->n_loss_types; i++) json_array_append_new(a, json_real(hp->loss_weights[i]));
        return a;
    }
    }
    return json_null();
}

/* The "hyperparameters" object (hps: NULL when absent) over the method's
 * defaults. own holds the AL_HP_UNSTORED fields' values (one slot per field
 * of the registry). */
static int parse_hparams(al_job *j, const al_method *m, const json_t *hps, hp_slot *own, al_error *err) {
    int n;
    const al_hp_spec *specs = al_hp_specs(&n);
    int own_batch = json_is_object(hps) && json_object_get(hps, "batch_size");
    for (int i = 0; i < n; i++)
        set_default(&j->hp, field_at(&j->hp, &own[i], &specs[i]), &specs[i], m, j->task[0] != 0, own_batch);
    if (!hps || json_is_null(hps)) return AL_OK;
    if (!json_is_object(hps)) return AL_FAIL(err, AL_EINVAL, "hyperparameters", "must be an object");
    const char *k;
    json_t *v;
    int rc;
    json_object_foreach((json_t *)hps, k, v) {
        const al_hp_spec *f = al_hp_find(k);
        /* TRL's other names (max_new_tokens, response_length for max_completion_length) */
        if (f && strcmp(f->name, k) && json_object_get(hps, f->name))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "give it or %s, not both", k, f->name);
        if (!f) return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "unknown field", k);
        if (json_is_null(v) || (json_is_string(v) && !strcmp(json_string_value(v), "auto")))
            continue;
        if ((rc = read_field(&j->hp, field_at(&j->hp, &own[f - specs], f), f, v, err))) return rc;
    }
    const json_t *lw = json_object_get(hps, "loss_weights");
    if (lw && json_is_array(lw) && (int)json_array_size(lw) != j->hp.n_loss_types)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.loss_weights", "has %zu entries for %d loss types",
                       json_array_size(lw), j->hp.n_loss_types);
    return AL_OK;
}

/* Copies a string field into dst; "" when absent. */
static int get_str(const json_t *o, const char *key, const char *path, char *dst, size_t n,
                   int required, al_error *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return AL_FAIL(err, AL_EINVAL, "%s", "is required", path);
        dst[0] = 0;
        return AL_OK;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return AL_FAIL(err, AL_EINVAL, "%s", "must be a non-empty string", path);
    if (json_string_length(v) >= n) return AL_FAIL(err, AL_EINVAL, "%s", "is too long", path);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return AL_FAIL(err, AL_EINVAL, "%s", "must not contain NUL", path);
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return AL_OK;
}

static int check_keys(const json_t *o, const char *path, const char *const *allowed, al_error *err) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(k, allowed[i]);
        if (!ok) return AL_FAIL(err, AL_EINVAL, "%s%s%s", "unknown field", path, *path ? "." : "", k);
    }
    return AL_OK;
}

/* {"name", "rows", "seed", "split"} and, where mistakes is not NULL (the
 * job's task, not an eval task), "mistakes"; *split is -1 when not given
 * (the method's default applies: see job.h). */
static int parse_task(const json_t *v, const char *path, char *name, size_t name_n, long *rows,
                      uint64_t *seed, int *split, int *mistakes, al_error *err) {
    static const char *const keys[] = {"name", "rows", "seed", "split", "mistakes", NULL};
    char p[96];
    if (!json_is_object(v)) return AL_FAIL(err, AL_EINVAL, "%s", "must be an object", path);
    if (!mistakes && json_object_get(v, "mistakes"))
        return AL_FAIL(err, AL_EINVAL, "%s.mistakes", "is for the job's task (its training pairs), not %s", path,
                       path);
    int rc = check_keys(v, path, keys, err);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s.name", path);
    if ((rc = get_str(v, "name", p, name, name_n, 1, err))) return rc;
    al_task_row row;
    if (al_task_row_get(name, AL_SPLIT_ALL, 0, 0, &row) != AL_OK) {
        char list[128] = "";
        size_t len = 0;
        for (const al_task_info *t = al_tasks(); t->name; t++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", t->name);
        return AL_FAIL(err, AL_EINVAL, "%s.name", "'%s' is not a built-in task (%s)", path, name, list);
    }
    const json_t *r = json_object_get(v, "rows"), *s = json_object_get(v, "seed");
    *rows = 1000;
    *seed = 1;
    if (r && (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > 10000000))
        return AL_FAIL(err, AL_EINVAL, "%s.rows", "must be an integer in [1, 10000000]", path);
    if (s && (!json_is_integer(s) || json_integer_value(s) < 0))
        return AL_FAIL(err, AL_EINVAL, "%s.seed", "must be a non-negative integer", path);
    if (r) *rows = (long)json_integer_value(r);
    if (s) *seed = (uint64_t)json_integer_value(s);
    const json_t *sp = json_object_get(v, "split");
    *split = -1;
    if (sp && (!json_is_string(sp) || (*split = al_task_split_parse(json_string_value(sp))) < 0))
        return AL_FAIL(err, AL_EINVAL, "%s.split", "must be \"train\", \"test\" or \"all\"", path);
    const json_t *mi = mistakes ? json_object_get(v, "mistakes") : NULL;
    if (mistakes) *mistakes = AL_MISTAKES_ANY;
    if (mi && (!json_is_string(mi) || (*mistakes = al_task_mistakes_parse(json_string_value(mi))) < 0))
        return AL_FAIL(err, AL_EINVAL, "%s.mistakes", "must be \"any\" or \"one_digit\"", path);
    if (mistakes && !al_task_has_mistakes(name, (al_task_mistakes)*mistakes))
        return AL_FAIL(err, AL_EINVAL, "%s.mistakes", "\"%s\" is for the additions (addition, addition2), not %s",
                       path, al_task_mistakes_name((al_task_mistakes)*mistakes), name);
    return AL_OK;
}

/* "resources" (what the daemon launches) and "distributed" (how the ranks
 * share the work). */
static int parse_resources(al_job *job, const json_t *o, al_error *err) {
    static const char *const rk[] = {"processes", "threads_per_process", NULL};
    static const char *const dk[] = {"shard_optimizer", "bucket_cap_mb", "overlap", NULL};
    job->processes = 1;
    job->dist = (al_ddp_cfg){.shard_optimizer = 0, .bucket_mb = 25, .overlap = 1};
    const json_t *r = json_object_get(o, "resources"), *d = json_object_get(o, "distributed"), *x;
    int rc;
    if (r && !json_is_null(r)) {
        if (!json_is_object(r)) return AL_FAIL(err, AL_EINVAL, "resources", "must be an object");
        if ((rc = check_keys(r, "resources", rk, err))) return rc;
        if ((x = json_object_get(r, "processes"))) {
            if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 65536)
                return AL_FAIL(err, AL_EINVAL, "resources.processes", "must be an integer in [1, 65536]");
            job->processes = (int)json_integer_value(x);
        }
        if ((x = json_object_get(r, "threads_per_process"))) {
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 1024)
                return AL_FAIL(err, AL_EINVAL, "resources.threads_per_process", "must be an integer in [0, 1024]");
            job->threads_per_process = (int)json_integer_value(x);
        }
    }
    if (d && !json_is_null(d)) {
        if (!json_is_object(d)) return AL_FAIL(err, AL_EINVAL, "distributed", "must be an object");
        if ((rc = check_keys(d, "distributed", dk, err))) return rc;
        if ((x = json_object_get(d, "shard_optimizer"))) {
            if (!json_is_boolean(x)) return AL_FAIL(err, AL_EINVAL, "distributed.shard_optimizer", "must be true or false");
            job->dist.shard_optimizer = json_is_true(x);
        }
        if ((x = json_object_get(d, "overlap"))) {
            if (!json_is_boolean(x)) return AL_FAIL(err, AL_EINVAL, "distributed.overlap", "must be true or false");
            job->dist.overlap = json_is_true(x);
        }
        if ((x = json_object_get(d, "bucket_cap_mb"))) {
            if (!json_is_number(x) || !(json_number_value(x) > 0) || json_number_value(x) > 4096)
                return AL_FAIL(err, AL_EINVAL, "distributed.bucket_cap_mb", "must be a number in (0, 4096]");
            job->dist.bucket_mb = json_number_value(x);
        }
    }
    if (al_method_is_data(job->method) && job->processes > 1)
        return AL_FAIL(err, AL_EINVAL, "resources.processes", "%s runs in one process (only training jobs are "
                       "distributed)", job->method);
    return AL_OK;
}

static int parse_lora(al_job *job, const json_t *v, al_error *err) {
    static const char *const keys[] = {"r", "alpha", "lora_alpha", "dropout", "lora_dropout",
                                       "target_modules", "merge", NULL};
    int rc = check_keys(v, "lora", keys, err);
    if (rc) return rc;
    al_lora_cfg *l = &job->lora;
    l->r = 8; /* PEFT's LoraConfig defaults: r 8, lora_alpha 8 */
    l->alpha = 8;
    snprintf(l->targets, sizeof l->targets, "all-linear");
    const json_t *x;
    if ((x = json_object_get(v, "r"))) {
        if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 4096)
            return AL_FAIL(err, AL_EINVAL, "lora.r", "must be an integer in [1, 4096]");
        l->r = (int)json_integer_value(x);
    }
    if (!(x = json_object_get(v, "alpha"))) x = json_object_get(v, "lora_alpha");
    if (x) {
        if (!json_is_number(x) || !(json_number_value(x) > 0))
            return AL_FAIL(err, AL_EINVAL, "lora.alpha", "must be a number > 0");
        l->alpha = (float)json_number_value(x);
    }
    if (!(x = json_object_get(v, "dropout"))) x = json_object_get(v, "lora_dropout");
    if (x && (!json_is_number(x) || json_number_value(x) != 0))
        return AL_FAIL(err, AL_EINVAL, "lora.dropout", "only 0 is supported");
    if ((x = json_object_get(v, "target_modules"))) {
        if (json_is_string(x)) {
            if (json_string_length(x) == 0 || json_string_length(x) >= sizeof l->targets)
                return AL_FAIL(err, AL_EINVAL, "lora.target_modules", "must be a module list or \"all-linear\"");
            snprintf(l->targets, sizeof l->targets, "%s", json_string_value(x));
        } else if (json_is_array(x) && json_array_size(x) > 0) {
            size_t len = 0;
            for (size_t i = 0; i < json_array_size(x); i++) {
                const char *s = json_string_value(json_array_get(x, i));
                if (!s || !*s || strchr(s, ','))
                    return AL_FAIL(err, AL_EINVAL, "lora.target_modules[%zu]", "must be a module name", i);
                len += (size_t)snprintf(l->targets + len, sizeof l->targets - len, "%s%s", i ? "," : "", s);
                if (len >= sizeof l->targets)
                    return AL_FAIL(err, AL_EINVAL, "lora.target_modules", "too long");
            }
        } else {
            return AL_FAIL(err, AL_EINVAL, "lora.target_modules", "must be a module list or \"all-linear\"");
        }
    }
    if ((x = json_object_get(v, "merge"))) {
        if (!json_is_boolean(x)) return AL_FAIL(err, AL_EINVAL, "lora.merge", "must be true or false");
        job->lora_merge = json_is_true(x);
    }
    job->use_lora = 1;
    return AL_OK;
}

/* "training_files": [{"file", "weight"}, ...]; one entry is training_file. */
static int parse_train_files(al_job *job, const json_t *v, al_error *err) {
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > AL_MAX_TRAIN_FILES)
        return AL_FAIL(err, AL_EINVAL, "training_files", "must be a list of 1 to %d {\"file\", \"weight\"} objects",
                       AL_MAX_TRAIN_FILES);
    static const char *const keys[] = {"file", "weight", "dataset_info", NULL};
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        char path[64], p[96];
        snprintf(path, sizeof path, "training_files[%zu]", i);
        if (!json_is_object(e)) return AL_FAIL(err, AL_EINVAL, "%s", "must be an object {\"file\", \"weight\"}", path);
        int rc = check_keys(e, path, keys, err);
        if (rc) return rc;
        snprintf(p, sizeof p, "%s.file", path);
        if ((rc = get_str(e, "file", p, job->train_files[i].file, sizeof job->train_files[i].file, 1, err)))
            return rc;
        const json_t *w = json_object_get(e, "weight");
        double x = w && !json_is_null(w) ? json_number_value(w) : 1.0;
        if (w && !json_is_null(w) && (!json_is_number(w) || !(x > 0) || !isfinite(x) || x > 1e9))
            return AL_FAIL(err, AL_EINVAL, "%s.weight", "must be a number > 0", path);
        job->train_files[i].weight = x;
        const json_t *di = json_object_get(e, "dataset_info");
        snprintf(p, sizeof p, "%s.dataset_info", path);
        if (di && !json_is_null(di)) {
            if ((rc = al_dataset_info_parse(di, p, &job->train_files[i].dataset_info, err))) return rc;
            job->train_files[i].has_dataset_info = 1;
        }
    }
    if (n == 1) {
        memcpy(job->training_file, job->train_files[0].file, sizeof job->training_file);
        job->n_train_files = 0;
        if (job->train_files[0].has_dataset_info) {
            if (job->has_dataset_info)
                return AL_FAIL(err, AL_EINVAL, "training_files[0].dataset_info", "give it or dataset_info, not both");
            job->dataset_info = job->train_files[0].dataset_info;
            job->has_dataset_info = 1;
        }
    } else {
        job->n_train_files = (int)n;
    }
    return AL_OK;
}

/* A short string field (delimiters, stop strings): under n bytes, no NUL. */
static int short_str(const json_t *x, char *out, size_t n) {
    if (!json_is_string(x) || json_string_length(x) >= n || strlen(json_string_value(x)) != json_string_length(x))
        return -1;
    memcpy(out, json_string_value(x), json_string_length(x) + 1);
    return 0;
}

/* A benchmark's few-shot settings and stop strings (lm-evaluation-harness's
 * num_fewshot, fewshot_config.sampler, fewshot_delimiter,
 * fewshot_as_multiturn, generation_kwargs.until). */
static int parse_fewshot(al_eval_task *t, const json_t *e, const char *path, al_error *err) {
    const json_t *x;
    char p[96];
    int rc;
    if ((x = json_object_get(e, "num_fewshot")) && !json_is_null(x)) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 64)
            return AL_FAIL(err, AL_EINVAL, "%s.num_fewshot", "must be an integer in [0, 64]", path);
        t->num_fewshot = (int)json_integer_value(x);
    }
    snprintf(p, sizeof p, "%s.fewshot_file", path);
    if ((rc = get_str(e, "fewshot_file", p, t->fewshot_file, sizeof t->fewshot_file, 0, err))) return rc;
    if ((x = json_object_get(e, "fewshot_sampler")) && !json_is_null(x)) {
        const char *s = json_string_value(x);
        if (!s || (strcmp(s, "default") && strcmp(s, "first_n")))
            return AL_FAIL(err, AL_EINVAL, "%s.fewshot_sampler",
                           "must be \"default\" (seeded random) or \"first_n\"", path);
        t->fewshot_first_n = !strcmp(s, "first_n");
    }
    if ((x = json_object_get(e, "fewshot_seed")) && !json_is_null(x)) {
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return AL_FAIL(err, AL_EINVAL, "%s.fewshot_seed", "must be a non-negative integer", path);
        t->fewshot_seed = (uint64_t)json_integer_value(x);
    }
    if ((x = json_object_get(e, "fewshot_delimiter")) && short_str(x, t->fewshot_delimiter, sizeof t->fewshot_delimiter))
        return AL_FAIL(err, AL_EINVAL, "%s.fewshot_delimiter", "must be a string under %zu bytes", path,
                       sizeof t->fewshot_delimiter);
    if ((x = json_object_get(e, "fewshot_as_multiturn"))) {
        if (!json_is_boolean(x)) return AL_FAIL(err, AL_EINVAL, "%s.fewshot_as_multiturn",
                                                "must be true or false", path);
        t->fewshot_multiturn = json_is_true(x);
        if (t->fewshot_multiturn && !t->chat_template)
            return AL_FAIL(err, AL_EINVAL, "%s.fewshot_as_multiturn",
                           "needs chat_template (the shots become turns)", path);
    }
    if ((t->fewshot_file[0] || json_object_get(e, "fewshot_sampler")) && !t->num_fewshot)
        return AL_FAIL(err, AL_EINVAL, "%s.num_fewshot", "is 0, so the few-shot settings have no use", path);
    if ((x = json_object_get(e, "until")) && !json_is_null(x)) {
        size_t n = json_array_size(x);
        if (!json_is_array(x) || n > 4)
            return AL_FAIL(err, AL_EINVAL, "%s.until", "must be a list of at most 4 stop strings", path);
        for (size_t k = 0; k < n; k++)
            if (short_str(json_array_get(x, k), t->until[k], sizeof t->until[k]) || !t->until[k][0])
                return AL_FAIL(err, AL_EINVAL, "%s.until[%zu]", "must be a non-empty string under %zu bytes", path, k,
                               sizeof t->until[k]);
        t->n_until = (int)n;
    }
    return AL_OK;
}

static int parse_eval_tasks(al_job *job, const json_t *v, al_error *err) {
    if (!json_is_array(v) || json_array_size(v) > AL_MAX_EVAL_TASKS)
        return AL_FAIL(err, AL_EINVAL, "eval_tasks", "must be a list of at most %d entries", AL_MAX_EVAL_TASKS);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        al_eval_task *t = &job->eval_tasks[i];
        char path[64];
        snprintf(path, sizeof path, "eval_tasks[%zu]", i);
        int rc;
        if (!json_is_object(e)) return AL_FAIL(err, AL_EINVAL, "%s", "must be an object", path);
        t->grader = job->reward.grader;
        snprintf(t->delimiter, sizeof t->delimiter, " ");
        snprintf(t->fewshot_delimiter, sizeof t->fewshot_delimiter, "\n\n");
        t->fewshot_seed = 1234;
        t->n_until = -1;
        if (json_object_get(e, "file")) {
            static const char *const keys[] = {"file", "name", "type", "grader", "max_new_tokens",
                                               "target_delimiter", "limit", "chat_template", "num_fewshot",
                                               "fewshot_file", "fewshot_sampler", "fewshot_seed",
                                               "fewshot_delimiter", "fewshot_as_multiturn", "until", NULL};
            char p[96];
            if ((rc = check_keys(e, path, keys, err))) return rc;
            snprintf(p, sizeof p, "%s.file", path);
            if ((rc = get_str(e, "file", p, t->file, sizeof t->file, 1, err))) return rc;
            snprintf(p, sizeof p, "%s.name", path);
            if ((rc = get_str(e, "name", p, t->name, sizeof t->name, 1, err))) return rc;
            const json_t *x;
            if ((x = json_object_get(e, "type")) && !json_is_null(x)) {
                const char *ty = json_string_value(x);
                if (!ty || (strcmp(ty, "loss") && strcmp(ty, "multiple_choice") && strcmp(ty, "generative")))
                    return AL_FAIL(err, AL_EINVAL, "%s.type",
                                   "must be \"loss\", \"multiple_choice\" or \"generative\"", path);
                snprintf(t->type, sizeof t->type, "%s", ty);
            }
            if ((x = json_object_get(e, "grader")) && !json_is_null(x)) {
                snprintf(p, sizeof p, "%s.grader", path);
                if ((rc = al_grader_cfg_parse(&t->grader, x, p, err))) return rc;
                al_grader *g = NULL;
                if ((rc = al_grader_new(&g, &t->grader, p, err))) return rc;
                al_grader_free(g);
            }
            if ((x = json_object_get(e, "max_new_tokens"))) {
                if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 4096)
                    return AL_FAIL(err, AL_EINVAL, "%s.max_new_tokens", "must be an integer in [1, 4096]", path);
                t->max_new_tokens = (int)json_integer_value(x);
            }
            if ((x = json_object_get(e, "target_delimiter"))) {
                if (!json_is_string(x) || json_string_length(x) >= sizeof t->delimiter ||
                    strlen(json_string_value(x)) != json_string_length(x))
                    return AL_FAIL(err, AL_EINVAL, "%s.target_delimiter", "must be a string under %zu bytes", path,
                                   sizeof t->delimiter);
                memcpy(t->delimiter, json_string_value(x), json_string_length(x) + 1);
            }
            if ((x = json_object_get(e, "limit"))) {
                if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 10000000)
                    return AL_FAIL(err, AL_EINVAL, "%s.limit", "must be an integer in [1, 10000000]", path);
                t->limit = (long)json_integer_value(x);
            }
            if ((x = json_object_get(e, "chat_template"))) {
                if (!json_is_boolean(x)) return AL_FAIL(err, AL_EINVAL, "%s.chat_template",
                                                        "must be true or false", path);
                t->chat_template = json_is_true(x);
            }
            if ((rc = parse_fewshot(t, e, path, err))) return rc;
        } else {
            uint64_t seed;
            int split;
            if ((rc = parse_task(e, path, t->task, sizeof t->task, &t->rows, &seed, &split, NULL, err))) return rc;
            t->split = split < 0 ? AL_SPLIT_TEST : split;
            memcpy(t->name, t->task, sizeof t->task); /* task (32) fits name (64) */
        }
        job->n_eval_tasks = (int)i + 1;
    }
    return AL_OK;
}

const al_dataset_info *al_job_file_dataset_info(const al_job *job, const char *file) {
    if (file == job->training_file || file == job->validation_file)
        return job->has_dataset_info ? &job->dataset_info : NULL;
    for (int k = 0; k < job->n_train_files; k++)
        if (file == job->train_files[k].file)
            return job->train_files[k].has_dataset_info ? &job->train_files[k].dataset_info
                   : job->has_dataset_info              ? &job->dataset_info
                                                        : NULL;
    return NULL;
}

/* A penalty or bound: [0, 1e6]. */
static int parse_weight(const json_t *v, const char *path, float *out, al_error *err) {
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0 ||
        json_number_value(v) > 1e6)
        return AL_FAIL(err, AL_EINVAL, "%s", "must be a number in [0, 1e6]", path);
    *out = (float)json_number_value(v);
    return AL_OK;
}

/* A source's weight: [-1e6, 1e6]; a negative weight penalises what the
 * source rewards. */
static int parse_signed(const json_t *v, const char *path, float *out, al_error *err) {
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || fabs(json_number_value(v)) > 1e6)
        return AL_FAIL(err, AL_EINVAL, "%s", "must be a number in [-1e6, 1e6]", path);
    *out = (float)json_number_value(v);
    return AL_OK;
}

static int parse_principles(const json_t *v, const char *path, char (*dst)[AL_PRINCIPLE_LEN], int *n,
                            al_error *err) {
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > AL_MAX_PRINCIPLES)
        return AL_FAIL(err, AL_EINVAL, "%s", "must be a list of 1 to %d strings", path, AL_MAX_PRINCIPLES);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) >= AL_PRINCIPLE_LEN ||
            strlen(json_string_value(e)) != json_string_length(e))
            return AL_FAIL(err, AL_EINVAL, "%s[%zu]", "must be a non-empty string under %d bytes", path, i,
                           AL_PRINCIPLE_LEN);
        memcpy(dst[i], json_string_value(e), json_string_length(e) + 1);
    }
    *n = (int)json_array_size(v);
    return AL_OK;
}

/* "format": {"regex", "weight", "match"}. */
static int parse_format(al_reward_cfg *r, const json_t *v, al_error *err) {
    static const char *const keys[] = {"regex", "weight", "match", NULL};
    static const char *const modes[] = {"start", "full", "search"};
    int rc;
    if (!json_is_object(v)) return AL_FAIL(err, AL_EINVAL, "reward.format", "must be an object with a regex");
    if ((rc = check_keys(v, "reward.format", keys, err))) return rc;
    if ((rc = get_str(v, "regex", "reward.format.regex", r->format_regex, sizeof r->format_regex, 1, err)))
        return rc;
    const json_t *w = json_object_get(v, "weight"), *m = json_object_get(v, "match");
    r->format_weight = 1;
    if (w && (rc = parse_signed(w, "reward.format.weight", &r->format_weight, err))) return rc;
    r->format_mode = AL_FORMAT_START;
    if (m) {
        int found = -1;
        for (int i = 0; i < 3 && json_is_string(m); i++)
            if (!strcmp(json_string_value(m), modes[i])) found = i;
        if (found < 0) return AL_FAIL(err, AL_EINVAL, "reward.format.match",
                                      "must be \"start\", \"full\" or \"search\"");
        r->format_mode = found;
    }
    al_format_rule *f = NULL;
    if ((rc = al_format_new(&f, r->format_regex, (al_format_mode)r->format_mode, "reward.format.regex", err)))
        return rc;
    al_format_free(f);
    return AL_OK;
}

static int parse_int_in(const json_t *v, const char *path, long lo, long hi, int *out, al_error *err) {
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return AL_FAIL(err, AL_EINVAL, "%s", "must be an integer in [%ld, %ld]", path, lo, hi);
    *out = (int)json_integer_value(v);
    return AL_OK;
}

/* "http": {"url", "weight", "timeout_ms", "batch", "retries"}. */
static int parse_http(al_reward_cfg *r, const json_t *v, al_error *err) {
    static const char *const keys[] = {"url", "weight", "timeout_ms", "batch", "retries", NULL};
    int rc;
    if (!json_is_object(v)) return AL_FAIL(err, AL_EINVAL, "reward.http", "must be an object with a url");
    if ((rc = check_keys(v, "reward.http", keys, err))) return rc;
    if ((rc = get_str(v, "url", "reward.http.url", r->http_url, sizeof r->http_url, 1, err))) return rc;
    int scheme = !strncmp(r->http_url, "http://", 7) ? 7 : !strncmp(r->http_url, "https://", 8) ? 8 : 0;
    int ok = scheme && r->http_url[scheme] && r->http_url[scheme] != '/';
    for (const char *p = r->http_url; ok && *p; p++) ok = (unsigned char)*p > 0x20 && *p != 0x7f;
    if (!ok) {
        r->http_url[0] = 0;
        return AL_FAIL(err, AL_EINVAL, "reward.http.url", "must be an http:// or https:// URL with a host, "
                       "without spaces");
    }
    const json_t *x;
    r->http_weight = 1;
    r->http_timeout_ms = 30000;
    r->http_batch = 64;
    r->http_retries = 3;
    if ((x = json_object_get(v, "weight")) && (rc = parse_signed(x, "reward.http.weight", &r->http_weight, err)))
        return rc;
    if ((x = json_object_get(v, "timeout_ms")) &&
        (rc = parse_int_in(x, "reward.http.timeout_ms", 1, 600000, &r->http_timeout_ms, err)))
        return rc;
    if ((x = json_object_get(v, "batch")) && (rc = parse_int_in(x, "reward.http.batch", 1, 4096, &r->http_batch, err)))
        return rc;
    if ((x = json_object_get(v, "retries")) &&
        (rc = parse_int_in(x, "reward.http.retries", 0, 10, &r->http_retries, err)))
        return rc;
    return AL_OK;
}

static int parse_reward(al_job *j, const json_t *v, al_error *err) {
    static const char *const keys[] = {"verifiable", "reward_model", "reward_model_weight", "judge",
                                       "length_penalty", "missing_eos_penalty", "clip",
                                       "length_normalize", "format", "http", NULL};
    al_reward_cfg *r = &j->reward;
    int rc;
    if (!json_is_object(v)) return AL_FAIL(err, AL_EINVAL, "reward", "must be an object");
    if ((rc = check_keys(v, "reward", keys, err))) return rc;
    r->reward_model_weight = 1;
    r->judge_weight = 1;
    r->missing_eos_penalty = -1;
    al_grader_cfg_default(&r->grader);
    const json_t *x;
    if ((x = json_object_get(v, "verifiable")) && !json_is_null(x)) {
        if (json_is_object(x)) {
            static const char *const vk[] = {"weight", "partial", "grader", NULL};
            if ((rc = check_keys(x, "reward.verifiable", vk, err))) return rc;
            const json_t *w = json_object_get(x, "weight"), *pa = json_object_get(x, "partial"),
                         *gr = json_object_get(x, "grader");
            r->verifiable = 1;
            if (w && (rc = parse_signed(w, "reward.verifiable.weight", &r->verifiable, err))) return rc;
            if (pa && !json_is_boolean(pa))
                return AL_FAIL(err, AL_EINVAL, "reward.verifiable.partial", "must be true or false");
            r->partial = json_is_true(pa);
            if (gr && !json_is_null(gr) &&
                (rc = al_grader_cfg_parse(&r->grader, gr, "reward.verifiable.grader", err)))
                return rc;
            r->grader_given = gr && !json_is_null(gr);
            al_grader *g = NULL; /* the pattern compiles, its group exists */
            if ((rc = al_grader_new(&g, &r->grader, "reward.verifiable.grader", err))) return rc;
            al_grader_free(g);
        } else if (json_is_boolean(x)) {
            r->verifiable = json_is_true(x) ? 1.0f : 0.0f;
        } else if ((rc = parse_signed(x, "reward.verifiable", &r->verifiable, err))) {
            return rc;
        }
    }
    if ((x = json_object_get(v, "reward_model")) && !json_is_null(x)) {
        if (json_is_string(x)) {
            if ((rc = get_str(v, "reward_model", "reward.reward_model", r->reward_model[0],
                              sizeof r->reward_model[0], 1, err)))
                return rc;
            r->n_reward_models = 1;
        } else if (json_is_array(x) && json_array_size(x) >= 1 && json_array_size(x) <= AL_MAX_REWARD_MODELS) {
            for (size_t i = 0; i < json_array_size(x); i++) {
                char p[64];
                snprintf(p, sizeof p, "reward.reward_model[%zu]", i);
                const json_t *e = json_array_get(x, i);
                if (!json_is_string(e) || json_string_length(e) == 0 ||
                    json_string_length(e) >= AL_PATH_MAX || strlen(json_string_value(e)) != json_string_length(e))
                    return AL_FAIL(err, AL_EINVAL, "%s", "must be a non-empty string", p);
                memcpy(r->reward_model[i], json_string_value(e), json_string_length(e) + 1);
            }
            r->n_reward_models = (int)json_array_size(x);
        } else {
            return AL_FAIL(err, AL_EINVAL, "reward.reward_model", "must be a model or a list of 1 to %d models",
                           AL_MAX_REWARD_MODELS);
        }
    }
    if ((x = json_object_get(v, "reward_model_weight")) &&
        (rc = parse_signed(x, "reward.reward_model_weight", &r->reward_model_weight, err)))
        return rc;
    if ((x = json_object_get(v, "judge")) && !json_is_null(x)) {
        static const char *const jk[] = {"model", "principles", "weight", NULL};
        if (!json_is_object(x)) return AL_FAIL(err, AL_EINVAL, "reward.judge", "must be an object");
        if ((rc = check_keys(x, "reward.judge", jk, err))) return rc;
        if ((rc = get_str(x, "model", "reward.judge.model", r->judge_model, sizeof r->judge_model, 1, err)))
            return rc;
        const json_t *pr = json_object_get(x, "principles"), *w = json_object_get(x, "weight");
        if (pr && (rc = parse_principles(pr, "reward.judge.principles", r->principles, &r->n_principles, err)))
            return rc;
        if (w && (rc = parse_signed(w, "reward.judge.weight", &r->judge_weight, err))) return rc;
    }
    if ((x = json_object_get(v, "length_penalty")) &&
        (rc = parse_weight(x, "reward.length_penalty", &r->length_penalty, err)))
        return rc;
    if ((x = json_object_get(v, "missing_eos_penalty")) &&
        (rc = parse_weight(x, "reward.missing_eos_penalty", &r->missing_eos_penalty, err)))
        return rc;
    if ((x = json_object_get(v, "clip")) && (rc = parse_weight(x, "reward.clip", &r->clip, err))) return rc;
    if ((x = json_object_get(v, "length_normalize"))) {
        if (!json_is_boolean(x)) return AL_FAIL(err, AL_EINVAL, "reward.length_normalize", "must be true or false");
        r->length_normalize = json_is_true(x);
    }
    if ((x = json_object_get(v, "format")) && !json_is_null(x) && (rc = parse_format(r, x, err))) return rc;
    if ((x = json_object_get(v, "http")) && !json_is_null(x) && (rc = parse_http(r, x, err))) return rc;
    if (r->verifiable == 0 && !r->n_reward_models && !r->judge_model[0] && !r->format_regex[0] && !r->http_url[0])
        return AL_FAIL(err, AL_EINVAL, "reward", "names no source (verifiable, format, http, reward_model or judge)");
    j->has_reward = 1;
    return AL_OK;
}

/* Cross-field checks of the RL and sampling methods. */
static int check_rl(al_job *j, const json_t *o, al_error *err) {
    al_hparams *hp = &j->hp;
    const char *m = j->method;
    unsigned takes = al_method_find(m)->takes;
    if ((takes & AL_NEEDS_REWARD) && !j->has_reward)
        return AL_FAIL(err, AL_EINVAL, "reward", "is required for %s (e.g. {\"verifiable\": 1.0})", m);
    if ((!strcmp(m, "grpo") || !strcmp(m, "rloo") || !strcmp(m, "generate_preferences")) &&
        hp->num_generations < 2)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.num_generations", "must be >= 2 for %s (got %d)", m,
                       hp->num_generations);
    if (!strcmp(m, "ppo") && hp->num_generations != 1)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.num_generations", "ppo samples one completion per prompt");
    if ((!strcmp(m, "grpo") || !strcmp(m, "rloo")) && hp->batch_size % hp->num_generations)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.batch_size", "%d is not a multiple of num_generations %d "
                       "(batch_size counts completions)", hp->batch_size, hp->num_generations);
    if ((!strcmp(m, "grpo") || !strcmp(m, "rloo")) && hp->micro_batch_size % hp->num_generations)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.gradient_accumulation_steps", "micro-batches of %d "
                       "completions split groups of %d", hp->micro_batch_size, hp->num_generations);
    if (!strcmp(m, "ppo") && hp->batch_size % hp->num_mini_batches)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.num_mini_batches", "%d does not divide batch_size %d",
                       hp->num_mini_batches, hp->batch_size);
    if (j->reward.judge_model[0] && !strcmp(m, "ppo"))
        return AL_FAIL(err, AL_EINVAL, "reward.judge", "compares completions of one prompt; use grpo, rloo "
                       "or generate_preferences (ppo samples one per prompt)");
    const json_t *c = json_object_get(o, "critic");
    j->critic = j->use_lora ? AL_CRITIC_SHARED_BASE : AL_CRITIC_SEPARATE;
    if (c && !json_is_null(c)) {
        const char *cs = json_string_value(c);
        if (!cs || (strcmp(cs, "shared_base") && strcmp(cs, "separate")))
            return AL_FAIL(err, AL_EINVAL, "critic", "must be \"shared_base\" or \"separate\"");
        if (!(takes & AL_TAKES_CRITIC)) return AL_FAIL(err, AL_EINVAL, "critic", "only ppo has a critic");
        j->critic = !strcmp(cs, "shared_base") ? AL_CRITIC_SHARED_BASE : AL_CRITIC_SEPARATE;
        if (j->critic == AL_CRITIC_SHARED_BASE && !j->use_lora)
            return AL_FAIL(err, AL_EINVAL, "critic", "\"shared_base\" needs lora (the base is shared frozen)");
    }
    if (j->critic_model[0] && !(takes & AL_TAKES_CRITIC))
        return AL_FAIL(err, AL_EINVAL, "critic_model", "only ppo has a critic");
    if (!strcmp(m, "evaluate")) {
        if (j->reward.format_regex[0] || j->reward.http_url[0])
            return AL_FAIL(err, AL_EINVAL, "reward.%s", "evaluate judges by a reward model, a judge or the grader "
                           "(reward.verifiable.grader)", j->reward.format_regex[0] ? "format" : "http");
        int prompts = j->task[0] || j->training_file[0];
        if (!j->model_b[0] && (j->reward.n_reward_models || j->reward.judge_model[0]))
            return AL_FAIL(err, AL_EINVAL, "model_b", "is required to judge model against it");
        if (j->model_b[0] && prompts && !j->reward.n_reward_models && !j->reward.judge_model[0])
            return AL_FAIL(err, AL_EINVAL, "reward", "evaluate needs a reward_model or a judge to compare models");
        if (!j->model_b[0] && !prompts && !j->n_eval_tasks)
            return AL_FAIL(err, AL_EINVAL, "model_b", "is required (or prompts with answers for exact match only, or "
                           "eval_tasks)");
    } else if (j->model_b[0]) { /* AL_TAKES_MODEL_B: evaluate's alone */
        return AL_FAIL(err, AL_EINVAL, "model_b", "only evaluate compares two models");
    }
    if (!strcmp(m, "critique_revise") && !j->n_principles) {
        if (!j->reward.n_principles)
            return AL_FAIL(err, AL_EINVAL, "principles", "critique_revise needs a list of principles");
        memcpy(j->principles, j->reward.principles, sizeof j->principles);
        j->n_principles = j->reward.n_principles;
    }
    if (al_method_is_data(m) && !j->output_dir[0])
        return AL_FAIL(err, AL_EINVAL, "output_dir", "is required (the job writes its JSONL files there)");
    return AL_OK;
}

/* "chat_template": a built-in's name, or Jinja text that parses. */
static int parse_chat_template(const json_t *v, al_error *err) {
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) != json_string_length(v))
        return AL_FAIL(err, AL_EINVAL, "chat_template", "must be a built-in's name or Jinja text");
    if (al_chat_builtin(s)) return AL_OK;
    if (!strstr(s, "{{") && !strstr(s, "{%")) {
        char list[200] = "";
        size_t len = 0;
        for (int i = 0; al_chat_builtin_name(i); i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", al_chat_builtin_name(i));
        return AL_FAIL(err, AL_EINVAL, "chat_template", "'%.40s' is neither a built-in (%s) nor Jinja text", s, list);
    }
    al_jinja *t = NULL;
    char e2[AL_ERRLEN] = "";
    int rc = al_jinja_parse(&t, s, strlen(s), e2);
    al_jinja_free(t);
    if (rc) return AL_FAIL(err, AL_EINVAL, "chat_template", "%s", e2);
    return AL_OK;
}

/* ---- references to models and files ---------------------------------------- */

typedef struct refs_ctx {
    al_ref_fn fn;
    void *ud;
    al_error *err;
} refs_ctx;

static int ref_one(refs_ctx *c, json_t *parent, const char *key, size_t idx, al_ref_kind kind,
                   const char *path) {
    json_t *v = key ? json_object_get(parent, key) : json_array_get(parent, idx);
    if (!json_is_string(v)) return AL_OK; /* absent or the wrong type: al_job_from_json reports it */
    char repl[AL_PATH_MAX], msg[AL_ERRLEN];
    repl[0] = 0;
    msg[0] = 0;
    if (c->fn(c->ud, kind, path, json_string_value(v), repl, sizeof repl, msg, sizeof msg))
        return AL_FAIL(c->err, AL_EINVAL, "%s", "%s", path, msg[0] ? msg : "rejected");
    if (repl[0]) {
        repl[sizeof repl - 1] = 0;
        if (json_string_set(v, repl)) return AL_FAIL(c->err, AL_ENOMEM, "%s", "out of memory", path);
    }
    return AL_OK;
}

int al_job_refs(json_t *desc, al_ref_fn fn, void *ud, al_error *err) {
    if (!json_is_object(desc)) return AL_FAIL(err, AL_EINVAL, "job", "must be a JSON object");
    refs_ctx c = {fn, ud, err};
    static const struct { const char *key; al_ref_kind kind; } top[] = {
        {"model", AL_REF_MODEL},          {"ref_model", AL_REF_MODEL},
        {"critic_model", AL_REF_MODEL},   {"model_b", AL_REF_MODEL},
        {"training_file", AL_REF_FILE},   {"validation_file", AL_REF_FILE},
    };
    int rc;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if ((rc = ref_one(&c, desc, top[i].key, 0, top[i].kind, top[i].key))) return rc;
    json_t *dc = json_object_get(json_object_get(desc, "hygiene"), "decontaminate");
    if (json_is_object(dc) && (rc = ref_one(&c, dc, "file", 0, AL_REF_FILE, "hygiene.decontaminate.file")))
        return rc;
    static const char *const lists[] = {"training_files", "eval_tasks"};
    for (int k = 0; k < 2; k++) {
        json_t *l = json_object_get(desc, lists[k]);
        for (size_t i = 0; json_is_array(l) && i < json_array_size(l); i++) {
            char p[64];
            snprintf(p, sizeof p, "%s[%zu].file", lists[k], i);
            json_t *e = json_array_get(l, i);
            if (json_is_object(e) && (rc = ref_one(&c, e, "file", 0, AL_REF_FILE, p))) return rc;
            snprintf(p, sizeof p, "%s[%zu].fewshot_file", lists[k], i);
            if (k == 1 && json_is_object(e) && (rc = ref_one(&c, e, "fewshot_file", 0, AL_REF_FILE, p))) return rc;
        }
    }
    json_t *rw = json_object_get(desc, "reward");
    if (json_is_object(rw)) {
        json_t *rm = json_object_get(rw, "reward_model");
        if (json_is_string(rm) && (rc = ref_one(&c, rw, "reward_model", 0, AL_REF_MODEL, "reward.reward_model")))
            return rc;
        for (size_t i = 0; json_is_array(rm) && i < json_array_size(rm); i++) {
            char p[64];
            snprintf(p, sizeof p, "reward.reward_model[%zu]", i);
            if ((rc = ref_one(&c, rm, NULL, i, AL_REF_MODEL, p))) return rc;
        }
        json_t *jd = json_object_get(rw, "judge");
        if (json_is_object(jd) && (rc = ref_one(&c, jd, "model", 0, AL_REF_MODEL, "reward.judge.model")))
            return rc;
    }
    return AL_OK;
}

/* The job's method, found in the registry (*meth). */
static int parse_method(al_job *j, const json_t *o, const al_method **meth, al_error *err) {
    int rc = get_str(o, "method", "method", j->method, sizeof j->method, 1, err);
    if (rc) return rc;
    *meth = al_method_find(j->method);
    if (!*meth) {
        const char *names[32];
        int n = 0;
        for (const al_method *m = al_methods(); m->name && n < 31; m++) names[n++] = m->name;
        names[n] = NULL;
        char list[400];
        return AL_FAIL(err, AL_EINVAL, "method", "'%s' is not one of %s", j->method,
                       al_names_join(list, sizeof list, names, "", ", "));
    }
    return AL_OK;
}

/* The job's names of models, files and folders. */
static int parse_names(al_job *j, const json_t *o, const al_method *meth, al_error *err) {
    int rc;
    if ((rc = get_str(o, "model", "model", j->model, sizeof j->model, meth->needs_model, err))) return rc;
    if ((rc = get_str(o, "training_file", "training_file", j->training_file, sizeof j->training_file, 0, err)))
        return rc;
    if ((rc = get_str(o, "validation_file", "validation_file", j->validation_file,
                      sizeof j->validation_file, 0, err)))
        return rc;
    if ((rc = get_str(o, "ref_model", "ref_model", j->ref_model, sizeof j->ref_model, 0, err))) return rc;
    if ((rc = get_str(o, "output_dir", "output_dir", j->output_dir, sizeof j->output_dir, 0, err))) return rc;
    if ((rc = get_str(o, "critic_model", "critic_model", j->critic_model, sizeof j->critic_model, 0, err)))
        return rc;
    return get_str(o, "model_b", "model_b", j->model_b, sizeof j->model_b, 0, err);
}

/* What the job learns from or samples with: rewards, principles, the
 * dataset's columns, its files or built-in task. */
static int parse_data(al_job *j, const json_t *o, al_error *err) {
    int rc;
    const json_t *rwd = json_object_get(o, "reward");
    if (rwd && !json_is_null(rwd)) {
        if (!al_method_is_rl(j->method) && !al_method_is_data(j->method))
            return AL_FAIL(err, AL_EINVAL, "reward", "only ppo, grpo, rloo and the sampling jobs take rewards");
        if ((rc = parse_reward(j, rwd, err))) return rc;
    }
    const json_t *prn = json_object_get(o, "principles");
    if (prn && !json_is_null(prn) &&
        (rc = parse_principles(prn, "principles", j->principles, &j->n_principles, err)))
        return rc;
    const json_t *dinfo = json_object_get(o, "dataset_info");
    if (dinfo && !json_is_null(dinfo)) {
        if ((rc = al_dataset_info_parse(dinfo, "dataset_info", &j->dataset_info, err))) return rc;
        j->has_dataset_info = 1;
    }
    const json_t *tfs = json_object_get(o, "training_files");
    if (tfs && !json_is_null(tfs)) {
        if (j->training_file[0])
            return AL_FAIL(err, AL_EINVAL, "training_files", "give either training_file or training_files, not both");
        if ((rc = parse_train_files(j, tfs, err))) return rc;
        /* a sampling job goes through its prompts once: no mixture to draw */
        if (j->n_train_files && al_method_is_data(j->method))
            return AL_FAIL(err, AL_EINVAL, "training_files", "mixing several files is for the training methods "
                           "(sft, pretrain, reward_model, dpo, kto, orpo, simpo, ppo, grpo, rloo), not %s", j->method);
    }
    const json_t *task = json_object_get(o, "task");
    if (task && !json_is_null(task)) {
        if (j->training_file[0] || j->n_train_files)
            return AL_FAIL(err, AL_EINVAL, "task", "give either %s or task, not both",
                           j->n_train_files || tfs ? "training_files" : "training_file");
        int split;
        if ((rc = parse_task(task, "task", j->task, sizeof j->task, &j->task_rows, &j->task_seed, &split,
                             &j->task_mistakes, err)))
            return rc;
        /* training draws from the train split, evaluation from the held-out one */
        j->task_split = split >= 0 ? split : !strcmp(j->method, "evaluate") ? AL_SPLIT_TEST : AL_SPLIT_TRAIN;
    } else if (!j->training_file[0] && !j->n_train_files &&
               !(!strcmp(j->method, "evaluate") && json_array_size(json_object_get(o, "eval_tasks")))) {
        return AL_FAIL(err, AL_EINVAL, "training_file", "is required (or training_files, or a built-in task)");
    }
    return AL_OK;
}

/* The seed and the hyper-parameters (own: their values when the registry
 * row's field lives outside al_hparams), and what they must agree on. */
static int parse_training(al_job *j, const json_t *o, const al_method *meth, hp_slot *own, al_error *err) {
    const json_t *seed = json_object_get(o, "seed");
    j->hp.seed = 42;
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed) || json_integer_value(seed) < 0)
            return AL_FAIL(err, AL_EINVAL, "seed", "must be a non-negative integer");
        j->hp.seed = (uint64_t)json_integer_value(seed);
    }
    int rc = parse_hparams(j, meth, json_object_get(o, "hyperparameters"), own, err);
    if (rc) return rc;
    al_hparams *hp = &j->hp;
    if (hp->batch_size % hp->gradient_accumulation_steps)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.gradient_accumulation_steps", "%d does not divide "
                       "batch_size %d", hp->gradient_accumulation_steps, hp->batch_size);
    hp->micro_batch_size = hp->batch_size / hp->gradient_accumulation_steps;
    if (hp->micro_batch_size > AL_MAX_MICRO_BATCH)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.batch_size", "%d rows per micro-batch (batch_size / "
                       "gradient_accumulation_steps) is more than a micro-batch holds (%d): raise "
                       "gradient_accumulation_steps to at least %d", hp->micro_batch_size, AL_MAX_MICRO_BATCH,
                       (hp->batch_size + AL_MAX_MICRO_BATCH - 1) / AL_MAX_MICRO_BATCH);
    if (hp->packing && strcmp(j->method, "sft") && strcmp(j->method, "pretrain"))
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.packing", "only sft and pretrain pack sequences");
    /* TRL's KTOTrainer refuses both: its KL term comes from the other rows of
     * a micro-batch, and its precomputed KL pairs need the dataset order */
    if (!strcmp(j->method, "kto") && hp->micro_batch_size < 2)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.batch_size", "kto estimates its KL term from the other "
                       "examples of a micro-batch, so batch_size / gradient_accumulation_steps must be at "
                       "least 2 (got %d)", hp->micro_batch_size);
    if (!strcmp(j->method, "kto") && hp->group_by_length)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.group_by_length", "kto trains in dataset order, "
                       "which its KL pairs depend on");
    return AL_OK;
}

/* The objective validates what it uses (beta > 0, loss types ...). */
static int check_objective(al_job *j, const al_method *meth, al_error *err) {
    const al_objective_ops *ops = meth->objective;
    void *state = NULL;
    int rc;
    if (ops && (rc = ops->create(&j->hp, &state, err))) {
        /* the objective names its fields without the object they are in */
        if (err && err->field[0] && strncmp(err->field, "hyperparameters.", 16)) {
            char f[AL_FIELDLEN + 16], m[AL_ERRLEN + 16];
            snprintf(f, sizeof f, "hyperparameters.%s", err->field);
            snprintf(m, sizeof m, "hyperparameters.%s", err->msg);
            al_fail_as(err, rc, f, m);
        }
        return rc;
    }
    if (ops) ops->destroy(state);
    return AL_OK;
}

/* The chat template and the data filters (hygiene), which clean_data needs. */
static int parse_text_options(al_job *j, const json_t *o, al_error *err) {
    int rc;
    const json_t *ct = json_object_get(o, "chat_template");
    if (ct && !json_is_null(ct) && (rc = parse_chat_template(ct, err))) return rc;
    if (ct && !json_is_null(ct) && al_method_is_data(j->method))
        return AL_FAIL(err, AL_EINVAL, "chat_template", "%s uses each model's own template (the one it was "
                       "trained with)", j->method);
    const json_t *hy = json_object_get(o, "hygiene");
    if (hy && !json_is_null(hy)) {
        /* an evaluation measures its file as given */
        if (!strcmp(j->method, "evaluate"))
            return AL_FAIL(err, AL_EINVAL, "hygiene", "filters what a job trains on or generates from; evaluate "
                           "measures its file as given (clean it with a clean_data job first)");
        if ((rc = al_hygiene_parse(hy, &j->hygiene, err))) return rc;
    }
    if (!strcmp(j->method, "clean_data")) { /* filters a file */
        if (!al_hygiene_any(&j->hygiene))
            return AL_FAIL(err, AL_EINVAL, "hygiene", "clean_data needs at least one filter (near_duplicates, "
                           "decontaminate, min_words, max_words, languages)");
        if (!j->training_file[0])
            return AL_FAIL(err, AL_EINVAL, "training_file", "clean_data filters one file (training_file)");
    }
    return AL_OK;
}

/* The resolved description (j->resolved): o with every hyper-parameter, the
 * seed, the tasks' splits and LoRA's settings as the job runs them. */
static int resolve_json(al_job *j, const json_t *o, hp_slot *own, al_error *err) {
    json_t *res = json_deep_copy(o);
    json_t *h = json_object();
    if (!res || !h) {
        json_decref(res);
        json_decref(h);
        return al_failf(err, AL_ENOMEM, "out of memory");
    }
    al_hparams *hp = &j->hp;
    int n_specs;
    const al_hp_spec *specs = al_hp_specs(&n_specs);
    for (int i = 0; i < n_specs; i++)
        json_object_set_new(h, specs[i].name, field_json(hp, field_at(hp, &own[i], &specs[i]), &specs[i]));
    json_object_set_new(res, "hyperparameters", h);
    json_object_set_new(res, "seed", json_integer((json_int_t)hp->seed));
    /* the splits the built-in tasks resolved to */
    json_t *rt = json_object_get(res, "task");
    if (j->task[0] && json_is_object(rt))
        json_object_set_new(rt, "split", json_string(al_task_split_name(j->task_split)));
    json_t *ret = json_object_get(res, "eval_tasks");
    for (int i = 0; i < j->n_eval_tasks; i++)
        if (j->eval_tasks[i].task[0] && json_is_object(json_array_get(ret, (size_t)i)))
            json_object_set_new(json_array_get(ret, (size_t)i), "split",
                                json_string(al_task_split_name(j->eval_tasks[i].split)));
    if (j->use_lora) {
        json_t *l = json_pack("{s:i, s:f, s:f, s:s, s:b}", "r", j->lora.r, "alpha", (double)j->lora.alpha,
                              "dropout", 0.0, "target_modules", j->lora.targets, "merge", j->lora_merge);
        json_object_set_new(res, "lora", l);
    }
    j->resolved = res;
    const json_t *ct = json_object_get(o, "chat_template");
    if (ct && !json_is_null(ct)) {
        const char *v = json_string_value(json_object_get(res, "chat_template"));
        j->chat_template = al_chat_builtin(v) ? al_chat_builtin(v) : v;
    }
    return AL_OK;
}

int al_job_from_json(al_job *job, const json_t *o, al_error *err) {
    static const char *const keys[] = {"method", "model", "training_file", "validation_file", "task",
                                       "ref_model", "hyperparameters", "lora", "seed", "output_dir",
                                       "eval_tasks", "suffix", "metadata", "reward", "critic",
                                       "critic_model", "model_b", "principles", "chat_template",
                                       "training_files", "hygiene", "dataset_info", "resources",
                                       "distributed", NULL};
    al_job j;
    memset(&j, 0, sizeof j);
    al_grader_cfg_default(&j.reward.grader);
    if (!json_is_object(o)) return AL_FAIL(err, AL_EINVAL, "job", "must be a JSON object");
    int rc = check_keys(o, "", keys, err);
    if (rc) return rc;
    const al_method *meth;
    if ((rc = parse_method(&j, o, &meth, err))) return rc;
    if ((rc = parse_names(&j, o, meth, err))) return rc;
    if ((rc = parse_data(&j, o, err))) return rc;
    hp_slot own[AL_HP_MAX];
    if ((rc = parse_training(&j, o, meth, own, err))) return rc;
    const json_t *lora = json_object_get(o, "lora");
    if (lora && !json_is_null(lora)) {
        if (!json_is_object(lora)) return AL_FAIL(err, AL_EINVAL, "lora", "must be an object or null");
        if ((rc = parse_lora(&j, lora, err))) return rc;
    }
    const json_t *et = json_object_get(o, "eval_tasks");
    if (et && !json_is_null(et) && (rc = parse_eval_tasks(&j, et, err))) return rc;
    if ((rc = parse_resources(&j, o, err))) return rc;
    if ((al_method_is_rl(j.method) || al_method_is_data(j.method)) && (rc = check_rl(&j, o, err))) return rc;
    if ((rc = check_objective(&j, meth, err))) return rc;
    if ((rc = parse_text_options(&j, o, err))) return rc;
    if ((rc = resolve_json(&j, o, own, err))) return rc;
    *job = j;
    return AL_OK;
}

int al_job_parse(al_job *job, const char *json, size_t len, char err[AL_ERRLEN]) {
    al_error e;
    int rc = al_job_parse_at(job, json, len, &e);
    if (rc && err) snprintf(err, AL_ERRLEN, "%s", e.msg);
    return rc;
}

int al_job_parse_at(al_job *job, const char *json, size_t len, al_error *err) {
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return al_failf(err, AL_EINVAL, "job: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    int rc = al_job_from_json(job, o, err);
    json_decref(o);
    return rc;
}

void al_job_deinit(al_job *job) {
    json_decref(job->resolved);
    job->resolved = NULL;
}

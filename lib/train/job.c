/* Job description parsing (see job.h). Hyper-parameters are table-driven:
 * each row names the field, its type, its range and its default; methods
 * override the defaults TRL gives them. Defaults follow TRL's main branch
 * (2025): SFTConfig lr 2e-5, DPOConfig/KTOConfig/ORPOConfig/CPOConfig lr
 * 1e-6, RewardConfig lr 1e-4, TrainingArguments (pretrain) lr 5e-5; batch 8,
 * 3 epochs, linear schedule, max_grad_norm 1, max_length 1024, logging every
 * 10 steps, saving every 500, seed 42. Where we differ on purpose:
 * precompute_ref_log_probs defaults on (the reference is then never held in
 * memory) and gradient_checkpointing defaults off (CPU memory is plentiful;
 * recomputation costs a third more time). */
#include "job.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../compute/ops.h"
#include "../tasks/tasks.h"
#include "../text/chat.h"
#include "../text/jinja/jinja.h"
#include "objective.h"

enum { HP_INT, HP_LONG, HP_FLOAT, HP_BOOL, HP_SCHED, HP_LOSSES, HP_WEIGHTS, HP_SCALE, HP_KLEST,
       HP_MP, HP_DTYPE };

typedef struct hp_field {
    const char *name;
    int type;
    size_t off;
    double lo, hi;       /* inclusive range for numbers */
    double def;          /* default (bools 0/1) */
} hp_field;

#define F(name, type, lo, hi, def) {#name, type, offsetof(al_hparams, name), lo, hi, def}
static const hp_field fields[] = {
    F(n_epochs, HP_INT, 1, 100000, 3),
    F(batch_size, HP_INT, 1, 65536, 8),
    F(gradient_accumulation_steps, HP_INT, 1, 65536, 1),
    F(max_steps, HP_LONG, -1, 1e12, -1),
    F(learning_rate, HP_FLOAT, 0, 10, 2e-5),
    F(lr_scheduler_type, HP_SCHED, 0, 0, AL_SCHED_LINEAR),
    F(warmup_ratio, HP_FLOAT, 0, 1, 0),
    F(weight_decay, HP_FLOAT, 0, 10, 0),
    F(max_grad_norm, HP_FLOAT, 0, 1e6, 1.0),
    F(adam_beta1, HP_FLOAT, 0, 0.999999, 0.9),
    F(adam_beta2, HP_FLOAT, 0, 0.999999999, 0.999),
    F(adam_epsilon, HP_FLOAT, 0, 1, 1e-8),
    F(max_length, HP_INT, 2, 1 << 20, 1024),
    F(gradient_checkpointing, HP_BOOL, 0, 1, 0),
    F(packing, HP_BOOL, 0, 1, 0),
    F(dedupe, HP_BOOL, 0, 1, 0),
    F(group_by_length, HP_BOOL, 0, 1, 0),
    F(completion_only_loss, HP_BOOL, 0, 1, 1),
    F(assistant_only_loss, HP_BOOL, 0, 1, 0),
    F(beta, HP_FLOAT, 0, 1e6, 0.1),
    F(loss_type, HP_LOSSES, 0, 0, 0),
    F(loss_weights, HP_WEIGHTS, 0, 1e6, 1),
    F(label_smoothing, HP_FLOAT, 0, 0.5, 0),
    F(rpo_alpha, HP_FLOAT, 0, 1e6, 0),
    F(simpo_gamma, HP_FLOAT, -1e6, 1e6, 0.5),
    F(desirable_weight, HP_FLOAT, 0, 1e6, 1.0),
    F(undesirable_weight, HP_FLOAT, 0, 1e6, 1.0),
    F(center_rewards_coefficient, HP_FLOAT, 0, 1e6, 0),
    F(precompute_ref_log_probs, HP_BOOL, 0, 1, 1),
    /* RL (TRL's GRPOConfig, RLOOConfig and experimental PPOConfig) */
    F(num_generations, HP_INT, 1, 1024, 1),
    F(max_completion_length, HP_INT, 1, 1 << 20, 256),
    F(max_prompt_length, HP_INT, 1, 1 << 20, 512),
    F(temperature, HP_FLOAT, 0, 100, 1.0),
    F(top_p, HP_FLOAT, 0, 1, 1.0),
    F(top_k, HP_INT, 0, 1 << 20, 0),
    F(epsilon, HP_FLOAT, 0, 100, 0.2),
    F(epsilon_high, HP_FLOAT, -1, 100, -1),
    F(scale_rewards, HP_SCALE, 0, 0, AL_SCALE_GROUP),
    F(kl_coef, HP_FLOAT, 0, 1e6, 0.05),
    F(kl_estimator, HP_KLEST, 0, 0, AL_KL_K1),
    F(adaptive_kl, HP_BOOL, 0, 1, 0),
    F(target_kl, HP_FLOAT, 0, 1e6, 6.0),
    F(kl_horizon, HP_FLOAT, 1, 1e12, 10000),
    F(gamma, HP_FLOAT, 0, 1, 1.0),
    F(lam, HP_FLOAT, 0, 1, 0.95),
    F(whiten_rewards, HP_BOOL, 0, 1, 0),
    F(cliprange, HP_FLOAT, 0, 100, 0.2),
    F(cliprange_value, HP_FLOAT, 0, 1e6, 0.2),
    F(vf_coef, HP_FLOAT, 0, 1e6, 0.1),
    F(num_ppo_epochs, HP_INT, 1, 1000, 4),
    F(num_mini_batches, HP_INT, 1, 65536, 1),
    F(num_iterations, HP_INT, 1, 1000, 1),
    F(missing_eos_penalty, HP_FLOAT, 0, 1e6, 0),
    F(sft_mix_ratio, HP_FLOAT, 0, 1e6, 0),
    F(entropy_coef, HP_FLOAT, 0, 1e6, 0),
    F(normalize_advantages, HP_BOOL, 0, 1, 0),
    F(mask_truncated_completions, HP_BOOL, 0, 1, 0),
    F(kl_warn, HP_FLOAT, 0, 1e12, 10),
    F(mixed_precision, HP_MP, 0, 0, AL_MP_AUTO),
    F(save_dtype, HP_DTYPE, 0, 0, 0),
    F(eval_steps, HP_INT, 0, 1 << 30, 0),
    F(save_steps, HP_INT, 0, 1 << 30, 500),
    F(save_total_limit, HP_INT, 0, 1 << 20, 0),
    F(logging_steps, HP_INT, 1, 1 << 30, 10),
};
#undef F
#define N_FIELDS (int)(sizeof fields / sizeof fields[0])

/* TRL's per-method learning-rate defaults. */
static double method_lr(const char *method) {
    if (!strcmp(method, "sft")) return 2e-5;
    if (!strcmp(method, "pretrain")) return 5e-5;
    if (!strcmp(method, "reward_model")) return 1e-4;
    if (!strcmp(method, "ppo")) return 3e-6; /* experimental PPOConfig */
    return 1e-6; /* dpo, kto, orpo, simpo; GRPOConfig, RLOOConfig */
}

/* Other per-method defaults (TRL main unless said): GRPO's beta 0 (main;
 * 0.04 before 0.19), RLOO's beta 0.05, PPO's temperature 0.7 and
 * response_length 53 (OnPolicyConfig), num_generations 8 (GRPO) and 2
 * (RLOO, v0.11's rloo_k). The sampling jobs draw 4 completions per prompt
 * and evaluate and critique_revise decode greedily. */
static int method_default(const char *method, const char *field, double *d) {
    static const struct { const char *method, *field; double v; } tab[] = {
        {"grpo", "beta", 0.0},           {"rloo", "beta", 0.05},
        {"grpo", "num_generations", 8},  {"rloo", "num_generations", 2},
        {"generate_preferences", "num_generations", 4},
        {"ppo", "temperature", 0.7},     {"ppo", "max_completion_length", 53},
        {"evaluate", "temperature", 0},  {"critique_revise", "temperature", 0},
        {"evaluate", "max_completion_length", 64},
        {"critique_revise", "max_completion_length", 128},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(tab[i].method, method) && !strcmp(tab[i].field, field)) {
            *d = tab[i].v;
            return 1;
        }
    return 0;
}

/* RL on a built-in task: the settings a job leaves out come from this
 * recipe before the method's TRL default. TRL's defaults are made for
 * billion-parameter models (learning rates of 1e-6, a handful of completions
 * per step); on the built-in tasks' small models they learn nothing, and the
 * few-completion batches give updates that are mostly noise: on addition2,
 * GRPO with 64 completions per step (8 prompts x 8) and lr 3e-4 moved held-out
 * exact match by +0.17 / +0.01 / +0.15 over three seeds, while 256 (32 x 8) at
 * lr 1e-4 gave +0.34 / +0.21 / +0.33 (bench/learn_sweep.py; BENCHMARKS.md,
 * "Learning"); PPO against a good reward model at 128 prompts per step
 * gave +0.06 / +0.20 / +0.34, at 256 +0.17 / +0.24 / +0.40. The gradient norm of those steps is 1-3 (PPO's 3-6), so TRL's
 * max_grad_norm of 1 rescales every update; the recipe's 10 only guards
 * against spikes, and clipping at 1 was no better (the recipe: +0.36 / +0.19
 * / +0.34). */
static int task_recipe(const char *method, const char *field, int own_batch, double *d) {
    /* a job that sets its own batch_size gets TRL's group and mini-batch
     * counts, which divide any batch it is likely to give */
    if (own_batch && (!strcmp(field, "num_generations") || !strcmp(field, "num_mini_batches"))) return 0;
    static const struct { const char *method, *field; double v; } tab[] = {
        {"grpo", "learning_rate", 1e-4}, {"grpo", "batch_size", 256}, {"grpo", "num_generations", 8},
        {"grpo", "beta", 0.04},          {"grpo", "max_grad_norm", 10},
        {"grpo", "lr_scheduler_type", AL_SCHED_CONSTANT},
        {"rloo", "learning_rate", 1e-4}, {"rloo", "batch_size", 256}, {"rloo", "num_generations", 8},
        {"rloo", "max_grad_norm", 10},   {"rloo", "lr_scheduler_type", AL_SCHED_CONSTANT},
        {"ppo", "learning_rate", 5e-5},  {"ppo", "batch_size", 256},  {"ppo", "num_mini_batches", 8},
        {"ppo", "temperature", 1.0},     {"ppo", "max_grad_norm", 10},
        {"ppo", "lr_scheduler_type", AL_SCHED_CONSTANT},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(tab[i].method, method) && !strcmp(tab[i].field, field)) {
            *d = tab[i].v;
            return 1;
        }
    return 0;
}

static const char *const scale_names[] = {"group", "batch", "none"};
static const char *const mp_names[] = {"auto", "fp32", "bf16"};

/* save_dtype: torch's names, and the short ones */
static int dtype_parse(const char *s, int *dt) {
    static const struct { const char *name; int dt; } tab[] = {
        {"float32", AL_DT_F32}, {"fp32", AL_DT_F32}, {"bfloat16", AL_DT_BF16},
        {"bf16", AL_DT_BF16},   {"float16", AL_DT_F16}, {"fp16", AL_DT_F16},
    };
    for (size_t i = 0; s && i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].name)) {
            *dt = tab[i].dt;
            return 0;
        }
    return -1;
}

/* on_task: the job names a built-in task; own_batch: and sets batch_size */
static void set_default(al_hparams *hp, const hp_field *f, const char *method, int on_task, int own_batch) {
    char *base = (char *)hp + f->off;
    double d = f->def;
    if (!strcmp(f->name, "learning_rate")) d = method_lr(method);
    method_default(method, f->name, &d);
    if (on_task) task_recipe(method, f->name, own_batch, &d);
    switch (f->type) {
    case HP_INT: case HP_BOOL: *(int *)base = (int)d; break;
    case HP_LONG: *(long *)base = (long)d; break;
    case HP_FLOAT: *(float *)base = (float)d; break;
    case HP_SCHED: *(al_sched_kind *)base = (al_sched_kind)d; break;
    case HP_SCALE: case HP_KLEST: case HP_DTYPE: *(int *)base = (int)d; break;
    case HP_MP: *(int *)base = al_bf16_auto() ? AL_MP_BF16 : AL_MP_FP32; break;
    case HP_LOSSES:
        /* GRPO: "dapo" since TRL 0.22 ("bnpo" before, "grpo" originally);
         * RLOO and PPO: the token mean over the batch as well */
        snprintf(hp->loss_type[0], sizeof hp->loss_type[0], "%s",
                 !strcmp(method, "simpo") ? "simpo"
                 : al_method_is_rl(method) ? "dapo" : "sigmoid");
        hp->n_loss_types = 1;
        break;
    case HP_WEIGHTS:
        for (int i = 0; i < AL_MAX_LOSS_TYPES; i++) hp->loss_weights[i] = 1.0f;
        break;
    }
}

static const char *sched_name(al_sched_kind k) {
    return k == AL_SCHED_CONSTANT ? "constant" : k == AL_SCHED_LINEAR ? "linear" : "cosine";
}

/* Reads one field from v (not NULL, not "auto"). */
static int read_field(al_hparams *hp, const hp_field *f, const json_t *v, al_error *err) {
    char *base = (char *)hp + f->off;
    const char *n = f->name;
    switch (f->type) {
    case HP_INT:
    case HP_LONG: {
        if (!json_is_integer(v))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be an integer", n);
        json_int_t x = json_integer_value(v);
        if ((double)x < f->lo || (double)x > f->hi)
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "%lld is outside [%.0f, %.0f]", n,
                           (long long)x, f->lo, f->hi);
        if (f->type == HP_INT) *(int *)base = (int)x;
        else *(long *)base = (long)x;
        return AL_OK;
    }
    case HP_FLOAT: {
        if (!json_is_number(v))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be a number", n);
        double x = json_number_value(v);
        if (!isfinite(x) || x < f->lo || x > f->hi)
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "%g is outside [%g, %g]", n, x, f->lo, f->hi);
        *(float *)base = (float)x;
        return AL_OK;
    }
    case HP_BOOL:
        if (!json_is_boolean(v))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be true or false", n);
        *(int *)base = json_is_true(v);
        return AL_OK;
    case HP_SCHED: {
        al_sched_kind k;
        if (!json_is_string(v) || al_sched_parse(json_string_value(v), &k))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be \"constant\", \"linear\" or \"cosine\"", n);
        *(al_sched_kind *)base = k;
        return AL_OK;
    }
    case HP_LOSSES: {
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
    case HP_SCALE: {
        /* TRL accepts the old booleans: true = "group", false = "none" */
        if (json_is_boolean(v)) {
            *(int *)base = json_is_true(v) ? AL_SCALE_GROUP : AL_SCALE_NONE;
            return AL_OK;
        }
        for (int i = 0; i < 3 && json_is_string(v); i++)
            if (!strcmp(json_string_value(v), scale_names[i])) {
                *(int *)base = i;
                return AL_OK;
            }
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be \"group\", \"batch\" or \"none\"", n);
    }
    case HP_KLEST: {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, "k1")) *(int *)base = AL_KL_K1;
        else if (s && !strcmp(s, "k3")) *(int *)base = AL_KL_K3;
        else return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be \"k1\" or \"k3\"", n);
        return AL_OK;
    }
    case HP_MP: {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, "fp32")) *(int *)base = AL_MP_FP32;
        else if (s && !strcmp(s, "bf16")) *(int *)base = AL_MP_BF16;
        else return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be \"bf16\", \"fp32\" or \"auto\"", n);
        return AL_OK;
    }
    case HP_DTYPE:
        if (dtype_parse(json_string_value(v), (int *)base))
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s",
                           "must be \"float32\", \"bfloat16\", \"float16\" or \"auto\"", n);
        return AL_OK;
    case HP_WEIGHTS: {
        if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > AL_MAX_LOSS_TYPES)
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "must be a list of numbers, one per loss_type", n);
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_number(e) || !(json_number_value(e) >= 0) || !isfinite(json_number_value(e)))
                return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s[%zu]", "must be a number >= 0", n, i);
            hp->loss_weights[i] = (float)json_number_value(e);
        }
        return AL_OK;
    }
    }
    return AL_EINVAL;
}

static json_t *field_json(const al_hparams *hp, const hp_field *f) {
    const char *base = (const char *)hp + f->off;
    switch (f->type) {
    case HP_INT: return json_integer(*(const int *)base);
    case HP_LONG: return json_integer(*(const long *)base);
    case HP_FLOAT: return json_real(*(const float *)base);
    case HP_BOOL: return json_boolean(*(const int *)base);
    case HP_SCHED: return json_string(sched_name(*(const al_sched_kind *)base));
    case HP_SCALE: return json_string(scale_names[*(const int *)base]);
    case HP_KLEST: return json_string(*(const int *)base == AL_KL_K3 ? "k3" : "k1");
    case HP_MP: return json_string(mp_names[*(const int *)base]);
    case HP_DTYPE: {
        int dt = *(const int *)base;
        return json_string(dt ? al_dtype_torch_name((al_dtype)dt) : "auto");
    }
    case HP_LOSSES: {
        json_t *a = json_array();
        for (int i = 0; i < hp->n_loss_types; i++) json_array_append_new(a, json_string(hp->loss_type[i]));
        return a;
    }
    case HP_WEIGHTS: {
        json_t *a = json_array();
        for (int i = 0; i < hp->n_loss_types; i++) json_array_append_new(a, json_real(hp->loss_weights[i]));
        return a;
    }
    }
    return json_null();
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

/* {"name", "rows", "seed", "split"}; *split is -1 when not given (the
 * method's default applies: see job.h). */
static int parse_task(const json_t *v, const char *path, char *name, size_t name_n, long *rows,
                      uint64_t *seed, int *split, al_error *err) {
    static const char *const keys[] = {"name", "rows", "seed", "split", NULL};
    char p[96];
    if (!json_is_object(v)) return AL_FAIL(err, AL_EINVAL, "%s", "must be an object", path);
    int rc = check_keys(v, path, keys, err);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s.name", path);
    if ((rc = get_str(v, "name", p, name, name_n, 1, err))) return rc;
    al_task_row row;
    if (al_task_row_get(name, AL_SPLIT_ALL, 0, 0, &row) != AL_OK) {
        char list[128] = "";
        size_t len = 0;
        for (const char *const *t = al_task_names(); *t; t++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", *t);
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
            if ((rc = al_sharegpt_parse(di, p, &job->train_files[i].sharegpt, err))) return rc;
            job->train_files[i].has_sharegpt = 1;
        }
    }
    if (n == 1) {
        memcpy(job->training_file, job->train_files[0].file, sizeof job->training_file);
        job->n_train_files = 0;
        if (job->train_files[0].has_sharegpt) {
            if (job->has_sharegpt)
                return AL_FAIL(err, AL_EINVAL, "training_files[0].dataset_info", "give it or dataset_info, not both");
            job->sharegpt = job->train_files[0].sharegpt;
            job->has_sharegpt = 1;
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
            if ((rc = parse_task(e, path, t->task, sizeof t->task, &t->rows, &seed, &split, err))) return rc;
            t->split = split < 0 ? AL_SPLIT_TEST : split;
            memcpy(t->name, t->task, sizeof t->task); /* task (32) fits name (64) */
        }
        job->n_eval_tasks = (int)i + 1;
    }
    return AL_OK;
}

static const char *const g_data_methods[] = {"generate_preferences", "evaluate", "critique_revise", "clean_data",
                                             NULL};

int al_method_is_rl(const char *m) {
    return m && (!strcmp(m, "ppo") || !strcmp(m, "grpo") || !strcmp(m, "rloo"));
}

const al_sharegpt_cfg *al_job_file_sharegpt(const al_job *job, const char *file) {
    if (file == job->training_file || file == job->validation_file) return job->has_sharegpt ? &job->sharegpt : NULL;
    for (int k = 0; k < job->n_train_files; k++)
        if (file == job->train_files[k].file)
            return job->train_files[k].has_sharegpt ? &job->train_files[k].sharegpt
                   : job->has_sharegpt              ? &job->sharegpt
                                                    : NULL;
    return NULL;
}

int al_method_is_data(const char *m) {
    for (int i = 0; m && g_data_methods[i]; i++)
        if (!strcmp(m, g_data_methods[i])) return 1;
    return 0;
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
    int needs_reward = al_method_is_rl(m) || !strcmp(m, "generate_preferences");
    if (needs_reward && !j->has_reward)
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
        if (strcmp(m, "ppo")) return AL_FAIL(err, AL_EINVAL, "critic", "only ppo has a critic");
        j->critic = !strcmp(cs, "shared_base") ? AL_CRITIC_SHARED_BASE : AL_CRITIC_SEPARATE;
        if (j->critic == AL_CRITIC_SHARED_BASE && !j->use_lora)
            return AL_FAIL(err, AL_EINVAL, "critic", "\"shared_base\" needs lora (the base is shared frozen)");
    }
    if (j->critic_model[0] && strcmp(m, "ppo")) return AL_FAIL(err, AL_EINVAL, "critic_model", "only ppo has a critic");
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
    } else if (j->model_b[0]) {
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
    if ((rc = get_str(o, "method", "method", j.method, sizeof j.method, 1, err))) return rc;
    if (!al_objective_find(j.method) && !al_method_is_data(j.method)) {
        char list[400] = "";
        size_t len = 0;
        for (const al_objective_ops *const *ob = al_objectives(); *ob; ob++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", (*ob)->name);
        for (int i = 0; g_data_methods[i]; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, ", %s", g_data_methods[i]);
        return AL_FAIL(err, AL_EINVAL, "method", "'%s' is not one of %s", j.method, list);
    }
    int clean = !strcmp(j.method, "clean_data");   /* filters a file: no model */
    if ((rc = get_str(o, "model", "model", j.model, sizeof j.model, !clean, err))) return rc;
    if ((rc = get_str(o, "training_file", "training_file", j.training_file, sizeof j.training_file, 0, err)))
        return rc;
    if ((rc = get_str(o, "validation_file", "validation_file", j.validation_file,
                      sizeof j.validation_file, 0, err)))
        return rc;
    if ((rc = get_str(o, "ref_model", "ref_model", j.ref_model, sizeof j.ref_model, 0, err))) return rc;
    if ((rc = get_str(o, "output_dir", "output_dir", j.output_dir, sizeof j.output_dir, 0, err))) return rc;
    if ((rc = get_str(o, "critic_model", "critic_model", j.critic_model, sizeof j.critic_model, 0, err)))
        return rc;
    if ((rc = get_str(o, "model_b", "model_b", j.model_b, sizeof j.model_b, 0, err))) return rc;
    const json_t *rwd = json_object_get(o, "reward");
    if (rwd && !json_is_null(rwd)) {
        if (!al_method_is_rl(j.method) && !al_method_is_data(j.method))
            return AL_FAIL(err, AL_EINVAL, "reward", "only ppo, grpo, rloo and the sampling jobs take rewards");
        if ((rc = parse_reward(&j, rwd, err))) return rc;
    }
    const json_t *prn = json_object_get(o, "principles");
    if (prn && !json_is_null(prn) &&
        (rc = parse_principles(prn, "principles", j.principles, &j.n_principles, err)))
        return rc;
    const json_t *dinfo = json_object_get(o, "dataset_info");
    if (dinfo && !json_is_null(dinfo)) {
        if ((rc = al_sharegpt_parse(dinfo, "dataset_info", &j.sharegpt, err))) return rc;
        j.has_sharegpt = 1;
    }
    const json_t *tfs = json_object_get(o, "training_files");
    if (tfs && !json_is_null(tfs)) {
        if (j.training_file[0])
            return AL_FAIL(err, AL_EINVAL, "training_files", "give either training_file or training_files, not both");
        if ((rc = parse_train_files(&j, tfs, err))) return rc;
        /* a sampling job goes through its prompts once: no mixture to draw */
        if (j.n_train_files && al_method_is_data(j.method))
            return AL_FAIL(err, AL_EINVAL, "training_files", "mixing several files is for the training methods "
                           "(sft, pretrain, reward_model, dpo, kto, orpo, simpo, ppo, grpo, rloo), not %s", j.method);
    }
    const json_t *task = json_object_get(o, "task");
    if (task && !json_is_null(task)) {
        if (j.training_file[0] || j.n_train_files)
            return AL_FAIL(err, AL_EINVAL, "task", "give either %s or task, not both",
                           j.n_train_files || tfs ? "training_files" : "training_file");
        int split;
        if ((rc = parse_task(task, "task", j.task, sizeof j.task, &j.task_rows, &j.task_seed, &split, err)))
            return rc;
        /* training draws from the train split, evaluation from the held-out one */
        j.task_split = split >= 0 ? split : !strcmp(j.method, "evaluate") ? AL_SPLIT_TEST : AL_SPLIT_TRAIN;
    } else if (!j.training_file[0] && !j.n_train_files &&
               !(!strcmp(j.method, "evaluate") && json_array_size(json_object_get(o, "eval_tasks")))) {
        return AL_FAIL(err, AL_EINVAL, "training_file", "is required (or training_files, or a built-in task)");
    }
    const json_t *seed = json_object_get(o, "seed");
    j.hp.seed = 42;
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed) || json_integer_value(seed) < 0)
            return AL_FAIL(err, AL_EINVAL, "seed", "must be a non-negative integer");
        j.hp.seed = (uint64_t)json_integer_value(seed);
    }
    const json_t *hps = json_object_get(o, "hyperparameters");
    int own_batch = json_is_object(hps) && json_object_get(hps, "batch_size");
    for (int i = 0; i < N_FIELDS; i++) set_default(&j.hp, &fields[i], j.method, j.task[0] != 0, own_batch);
    if (hps && !json_is_null(hps)) {
        if (!json_is_object(hps)) return AL_FAIL(err, AL_EINVAL, "hyperparameters", "must be an object");
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)hps, k, v) {
            int found = -1;
            const char *name = k;
            /* TRL's other names for the completion budget */
            if (!strcmp(k, "max_new_tokens") || !strcmp(k, "response_length")) {
                if (json_object_get(hps, "max_completion_length"))
                    return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "give it or max_completion_length, "
                                   "not both", k);
                name = "max_completion_length";
            }
            for (int i = 0; i < N_FIELDS && found < 0; i++)
                if (!strcmp(fields[i].name, name)) found = i;
            if (found < 0) return AL_FAIL(err, AL_EINVAL, "hyperparameters.%s", "unknown field", k);
            if (json_is_null(v) || (json_is_string(v) && !strcmp(json_string_value(v), "auto")))
                continue;
            if ((rc = read_field(&j.hp, &fields[found], v, err))) return rc;
        }
        const json_t *lw = json_object_get(hps, "loss_weights");
        if (lw && json_is_array(lw) && (int)json_array_size(lw) != j.hp.n_loss_types)
            return AL_FAIL(err, AL_EINVAL, "hyperparameters.loss_weights", "has %zu entries for %d loss types",
                           json_array_size(lw), j.hp.n_loss_types);
    }
    al_hparams *hp = &j.hp;
    if (hp->batch_size % hp->gradient_accumulation_steps)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.gradient_accumulation_steps", "%d does not divide "
                       "batch_size %d", hp->gradient_accumulation_steps, hp->batch_size);
    hp->micro_batch_size = hp->batch_size / hp->gradient_accumulation_steps;
    if (hp->micro_batch_size > AL_MAX_MICRO_BATCH)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.batch_size", "%d rows per micro-batch (batch_size / "
                       "gradient_accumulation_steps) is more than a micro-batch holds (%d): raise "
                       "gradient_accumulation_steps to at least %d", hp->micro_batch_size, AL_MAX_MICRO_BATCH,
                       (hp->batch_size + AL_MAX_MICRO_BATCH - 1) / AL_MAX_MICRO_BATCH);
    if (hp->packing && strcmp(j.method, "sft") && strcmp(j.method, "pretrain"))
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.packing", "only sft and pretrain pack sequences");
    /* TRL's KTOTrainer refuses both: its KL term comes from the other rows of
     * a micro-batch, and its precomputed KL pairs need the dataset order */
    if (!strcmp(j.method, "kto") && hp->micro_batch_size < 2)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.batch_size", "kto estimates its KL term from the other "
                       "examples of a micro-batch, so batch_size / gradient_accumulation_steps must be at "
                       "least 2 (got %d)", hp->micro_batch_size);
    if (!strcmp(j.method, "kto") && hp->group_by_length)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.group_by_length", "kto trains in dataset order, "
                       "which its KL pairs depend on");
    const json_t *lora = json_object_get(o, "lora");
    if (lora && !json_is_null(lora)) {
        if (!json_is_object(lora)) return AL_FAIL(err, AL_EINVAL, "lora", "must be an object or null");
        if ((rc = parse_lora(&j, lora, err))) return rc;
    }
    const json_t *et = json_object_get(o, "eval_tasks");
    if (et && !json_is_null(et) && (rc = parse_eval_tasks(&j, et, err))) return rc;
    if ((rc = parse_resources(&j, o, err))) return rc;
    if ((al_method_is_rl(j.method) || al_method_is_data(j.method)) && (rc = check_rl(&j, o, err))) return rc;
    /* The objective validates what it uses (beta > 0, loss types ...). */
    const al_objective_ops *ops = al_method_is_data(j.method) ? NULL : al_objective_find(j.method);
    void *state = NULL;
    if (ops && (rc = ops->create(&j.hp, &state, err))) {
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

    const json_t *ct = json_object_get(o, "chat_template");
    if (ct && !json_is_null(ct) && (rc = parse_chat_template(ct, err))) return rc;
    if (ct && !json_is_null(ct) && al_method_is_data(j.method))
        return AL_FAIL(err, AL_EINVAL, "chat_template", "%s uses each model's own template (the one it was "
                       "trained with)", j.method);
    const json_t *hy = json_object_get(o, "hygiene");
    if (hy && !json_is_null(hy)) {
        /* an evaluation measures its file as given */
        if (!strcmp(j.method, "evaluate"))
            return AL_FAIL(err, AL_EINVAL, "hygiene", "filters what a job trains on or generates from; evaluate "
                           "measures its file as given (clean it with a clean_data job first)");
        if ((rc = al_hygiene_parse(hy, &j.hygiene, err))) return rc;
    }
    if (clean) {
        if (!al_hygiene_any(&j.hygiene))
            return AL_FAIL(err, AL_EINVAL, "hygiene", "clean_data needs at least one filter (near_duplicates, "
                           "decontaminate, min_words, max_words, languages)");
        if (!j.training_file[0])
            return AL_FAIL(err, AL_EINVAL, "training_file", "clean_data filters one file (training_file)");
    }

    /* the resolved description */
    json_t *res = json_deep_copy(o);
    json_t *h = json_object();
    if (!res || !h) {
        json_decref(res);
        json_decref(h);
        return al_failf(err, AL_ENOMEM, "out of memory");
    }
    for (int i = 0; i < N_FIELDS; i++) json_object_set_new(h, fields[i].name, field_json(hp, &fields[i]));
    json_object_set_new(res, "hyperparameters", h);
    json_object_set_new(res, "seed", json_integer((json_int_t)hp->seed));
    /* the splits the built-in tasks resolved to */
    json_t *rt = json_object_get(res, "task");
    if (j.task[0] && json_is_object(rt))
        json_object_set_new(rt, "split", json_string(al_task_split_name(j.task_split)));
    json_t *ret = json_object_get(res, "eval_tasks");
    for (int i = 0; i < j.n_eval_tasks; i++)
        if (j.eval_tasks[i].task[0] && json_is_object(json_array_get(ret, (size_t)i)))
            json_object_set_new(json_array_get(ret, (size_t)i), "split",
                                json_string(al_task_split_name(j.eval_tasks[i].split)));
    if (j.use_lora) {
        json_t *l = json_pack("{s:i, s:f, s:f, s:s, s:b}", "r", j.lora.r, "alpha", (double)j.lora.alpha,
                              "dropout", 0.0, "target_modules", j.lora.targets, "merge", j.lora_merge);
        json_object_set_new(res, "lora", l);
    }
    j.resolved = res;
    if (ct && !json_is_null(ct)) {
        const char *v = json_string_value(json_object_get(res, "chat_template"));
        j.chat_template = al_chat_builtin(v) ? al_chat_builtin(v) : v;
    }
    *job = j;
    return AL_OK;
}

int al_job_parse(al_job *job, const char *json, size_t len, char err[AL_ERRLEN]) {
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) return al_err(err, AL_EINVAL, "job: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    al_error e;
    int rc = al_job_from_json(job, o, &e);
    json_decref(o);
    if (rc && err) snprintf(err, AL_ERRLEN, "%s", e.msg);
    return rc;
}

void al_job_deinit(al_job *job) {
    json_decref(job->resolved);
    job->resolved = NULL;
}

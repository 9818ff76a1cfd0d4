/* The method registry: every method a job can name and every
 * hyper-parameter it takes, declared once. Each field has a name, a type, a
 * default (per method where TRL's configs differ, and for RL on a built-in
 * task the recipe of lib/train/methods.c), a range or its choices, one line
 * of help, and the methods that take it.
 *
 * Everything else reads these tables: the job parser (lib/train/job.c) fills
 * al_hparams from them and names fields from them in its errors, the REST
 * API serves them as GET /v1/methods (api/h_methods.c), and the dashboard's
 * new-job form renders that answer. The choices of loss_type come from the
 * objectives' own tables (al_objective_ops.loss_types) and the built-in
 * tasks from lib/tasks (al_tasks), so those lists too live in one place.
 *
 * Constant tables: safe from any thread. */
#ifndef AL_METHODS_H
#define AL_METHODS_H

#include <stddef.h>

#include "objective.h"

typedef enum al_method_kind {
    AL_METHOD_TRAIN, /* SFT-like steps on a dataset: pretrain, sft, reward_model, the preference family */
    AL_METHOD_RL,    /* rollouts and policy updates: ppo, grpo, rloo */
    AL_METHOD_DATA,  /* the product is data: generate_preferences, evaluate, critique_revise, clean_data */
} al_method_kind;

/* A default that differs from the field's: v for numbers, booleans and
 * enums (the choice's value), s for a list of names (loss_type). */
typedef struct al_hp_override {
    const char *field;
    double v;
    const char *s;
    int unless_batch;  /* task recipe only: not when the job sets batch_size itself */
} al_hp_override;

/* The job fields a method takes beyond its hyper-parameters (al_method.takes;
 * GET /v1/methods serves each as a boolean, named in quotes, which the
 * new-job form shows or hides fields by). */
enum {
    AL_TAKES_REF_MODEL = 1u << 6, /* "takes_ref_model": ref_model (its objective's needs_ref) */
    AL_TAKES_REWARD = 1u << 0,  /* "takes_reward": reward.verifiable and reward.reward_model score its samples */
    AL_NEEDS_REWARD = 1u << 1,  /* "requires_reward": refused without a reward source */
    AL_TAKES_JUDGE = 1u << 2,   /* "takes_judge": reward.judge, which compares completions of one prompt */
    AL_TAKES_SHAPING = 1u << 3, /* "takes_reward_shaping": reward.length_penalty, missing_eos_penalty, clip,
                                 * length_normalize */
    AL_TAKES_CRITIC = 1u << 4,  /* "takes_critic": critic and critic_model */
    AL_TAKES_MODEL_B = 1u << 5, /* "takes_model_b": the model compared against */
};

typedef struct al_method {
    const char *name;      /* the job's "method" */
    al_method_kind kind;
    int needs_model;       /* 0: clean_data filters a file */
    const char *group;     /* "Preference", ...: how a list of methods is grouped */
    const char *title;     /* one line: "DPO — direct preference optimisation" */
    const char *about;     /* what it does, a few sentences */
    const char *data;      /* the rows it takes */
    const al_objective_ops *objective; /* the training methods' loss; NULL for the data jobs */
    const al_hp_override *defaults;      /* TRL's defaults for it; NULL-field-terminated, may be NULL */
    const al_hp_override *task_defaults; /* RL on a built-in task: before `defaults` (see methods.c) */
    unsigned takes;        /* AL_TAKES_*, AL_NEEDS_REWARD */
} al_method;

typedef enum al_hp_type {
    AL_HP_INT,   /* an integer in [lo, hi], held in an int */
    AL_HP_LONG,  /* an integer in [lo, hi], held in a long */
    AL_HP_REAL,  /* a number in [lo, hi], held in a float */
    AL_HP_BOOL,  /* true or false, held in an int (0/1) */
    AL_HP_ENUM,  /* one of choices, held in an int (the choice's value) */
    AL_HP_NAMES, /* loss_type: a name or a list of 1..AL_MAX_LOSS_TYPES names */
    AL_HP_REALS, /* loss_weights: numbers >= 0, one per name of loss_type */
} al_hp_type;

typedef struct al_hp_choice {
    const char *name;
    int value;
    int hidden;  /* another name for a listed choice: accepted, never listed */
} al_hp_choice;

enum {
    AL_HP_BASIC = 1,     /* among the first a user tunes (the form shows it outside "More") */
    AL_HP_BOOL_ALIAS = 2 /* ENUM that also takes TRL's old booleans: true = the first choice,
                          * false = the last */
};

/* The most fields the registry may hold (a parse keeps a slot for each). */
#define AL_HP_MAX 128

/* offset of a field that no code reads: the parser validates it and the
 * resolved description records it (the registry test build's probe field) */
#define AL_HP_UNSTORED ((size_t)-1)

typedef struct al_hp_spec {
    const char *name;
    al_hp_type type;
    size_t off;                       /* offsetof(al_hparams, ...), or AL_HP_UNSTORED */
    double dflt, lo, hi;              /* numbers, booleans (0/1) and enums (a choice's value) */
    const char *dflt_name;            /* AL_HP_NAMES: the default name */
    const al_hp_choice *choices;      /* AL_HP_ENUM: NULL-name-terminated */
    const char *const *aliases;       /* TRL's other names for it, NULL-terminated, or NULL */
    unsigned methods;                 /* which methods take it: al_hp_takes */
    unsigned flags;                   /* AL_HP_BASIC, AL_HP_BOOL_ALIAS */
    const char *help;                 /* one line */
    double (*dflt_fn)(void);          /* the default found when a job is parsed (mixed_precision's
                                       * by the CPU), in place of dflt; NULL: dflt */
} al_hp_spec;

/* Every method, terminated by an entry whose name is NULL; in the order of
 * al_objectives() and then the data jobs. */
const al_method *al_methods(void);
/* NULL when no method has that name. */
const al_method *al_method_find(const char *name);

/* Every hyper-parameter in the order of the resolved description; *n is
 * their number. */
const al_hp_spec *al_hp_specs(int *n);
/* By name or by one of its aliases; NULL when unknown. */
const al_hp_spec *al_hp_find(const char *name);
/* Whether method m takes field f (the form shows it; the parser accepts
 * every field for every method, as TRL's configs do). */
int al_hp_takes(const al_hp_spec *f, const al_method *m);

/* The default a job of method m gets for a number, boolean or enum field:
 * the field's, over it the method's, and over that, for a job on a built-in
 * task (on_task), the task recipe's unless the entry gives way to a
 * batch_size the job sets itself (own_batch). */
double al_hp_default(const al_hp_spec *f, const al_method *m, int on_task, int own_batch);
/* The same for an AL_HP_NAMES field: the default name. */
const char *al_hp_default_name(const al_hp_spec *f, const al_method *m);
/* The recipe's entry for f on a built-in task, or NULL. */
const al_hp_override *al_hp_task_default(const al_hp_spec *f, const al_method *m);
/* The names an AL_HP_NAMES field takes for method m (its objective's
 * loss_types), or NULL when m takes none. */
const char *const *al_hp_names(const al_hp_spec *f, const al_method *m);
/* The name of an enum's value (its first listed choice), or NULL. */
const char *al_hp_choice_name(const al_hp_spec *f, int value);

/* Whether a method trains weights with the RL loop (ppo, grpo, rloo), or is
 * a job whose product is data (generate_preferences, evaluate,
 * critique_revise sample a model; clean_data filters a file). 0 for an
 * unknown name. */
int al_method_is_rl(const char *method);
int al_method_is_data(const char *method);

#endif

/* Objectives: each maps token log-probs (and head values) to a loss and the
 * loss's gradient with respect to those same quantities (DESIGN.md, "The one
 * idea"). One file per objective exports one al_objective_ops; the trainer
 * finds them by name with al_objective_find. An objective never runs a matrix
 * product and never touches parameters.
 *
 * Gradient accumulation: an optimiser step may span several micro-batches.
 * The trainer passes the whole step's denominators (norm_tokens, norm_rows);
 * objectives divide their sums by them, so the gradients (and the loss and
 * metrics, which the trainer sums over micro-batches) equal those of one big
 * batch. */
#ifndef AL_OBJECTIVE_H
#define AL_OBJECTIVE_H

#include "../al.h"
#include "hparams.h"

typedef enum {
    AL_BATCH_LM = 1,     /* rows of text with a per-token loss mask (pretrain, sft) */
    AL_BATCH_PAIRS,      /* chosen rows [0, n_pairs), rejected rows [n_pairs, 2 n_pairs) */
    AL_BATCH_UNPAIRED,   /* KTO: rows with a desirable/undesirable label (+ KL rows) */
} al_batch_kind;

/* What an objective sees of one micro-batch: R rows of T tokens. */
typedef struct al_obj_in {
    int R, T;
    const int32_t *targets;   /* (R, T): token scored at t, -1 where not trained */
    const float *weight;      /* (R, T): per-token loss weight (OpenAI message weight), NULL = 1 */
    const int32_t *last;      /* (R): position of the last real token (scalar-head pooling) */
    int n_pairs;              /* PAIRS */
    const float *margin;      /* PAIRS, reward model: (n_pairs) margins or NULL */
    const int8_t *label;      /* UNPAIRED: (R) 1 desirable, 0 undesirable */
    int n_main;               /* UNPAIRED: rows [n_main, R) are mismatched KL rows */
    const float *logp;        /* (R, T) policy log-probs of targets (0 where target < 0) */
    const float *entropy;     /* (R, T) or NULL */
    const float *values;      /* (R, T) scalar-head values or NULL */
    const float *ref_logp;    /* (R, T) reference log-probs, NULL without a reference */
    double norm_tokens;       /* scored tokens in the whole optimiser step */
    double norm_rows;         /* examples (pairs for PAIRS, main rows for UNPAIRED) in the step */
} al_obj_in;

/* Gradients, (R, T) each, zeroed by the trainer; NULL when not needed. */
typedef struct al_obj_out {
    float *dlogp;
    float *dent;
    float *dvalue;
} al_obj_out;

#define AL_MAX_METRICS 40
typedef struct al_metric {
    char name[48];
    double value;
} al_metric;

/* Loss and metrics of a micro-batch, each already divided by the step's
 * denominators so the trainer's sum over micro-batches is the step's value. */
typedef struct al_step_stats {
    double loss;
    double num_tokens;                /* scored tokens in this micro-batch */
    int n;
    al_metric m[AL_MAX_METRICS];
} al_step_stats;

/* Adds value to metric `name` (creating it); ignored beyond AL_MAX_METRICS. */
void al_stats_add(al_step_stats *st, const char *name, double value);
/* Value of a metric, or NaN when absent. */
double al_stats_get(const al_step_stats *st, const char *name);

typedef struct al_objective_ops {
    const char *name;         /* "sft", "dpo", ... as the job's "method" */
    al_batch_kind batch;
    int needs_ref;            /* reference log-probs required */
    int needs_values;         /* scalar head required (reward model) */
    int needs_lm;             /* token log-probs required */
    /* Validates the hyper-parameters it uses (AL_EINVAL naming the field). */
    int (*create)(const al_hparams *hp, void **state, char err[AL_ERRLEN]);
    /* Pure: reads in, writes out's gradients and st. AL_ENAN on non-finite. */
    int (*loss)(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st);
    void (*destroy)(void *state);
} al_objective_ops;

/* NULL when no objective has that name. */
const al_objective_ops *al_objective_find(const char *name);
/* NULL-terminated table of every objective. */
const al_objective_ops *const *al_objectives(void);

#endif

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
#include "../text/batch.h"
#include "hparams.h"

/* Batch layouts come from the text layer: AL_BATCH_LM (rows of text with a
 * per-token loss mask: pretrain, sft), AL_BATCH_PAIR (chosen rows [0,
 * n_pairs), rejected rows [n_pairs, 2 n_pairs)), AL_BATCH_UNPAIRED (KTO rows
 * with a desirable/undesirable label, plus KL rows). */

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
    const float *logp;        /* (R, T) policy log-probs of targets (0 where target < 0);
                               * ppo: NULL asks for dvalue alone (no loss, no metrics) */
    const float *entropy;     /* (R, T) or NULL */
    const float *values;      /* (R, T) scalar-head values or NULL */
    const float *ref_logp;    /* (R, T) reference log-probs, NULL without a reference */
    const uint8_t *completion;/* (R, T) or NULL: 1 where a scored position predicts a
                               * completion token. Set for objectives with scores_prompt,
                               * whose chosen rows score their prompt too; the per-row
                               * helpers below then count completion positions only */
    double norm_tokens;       /* scored tokens in the whole optimiser step */
    double norm_rows;         /* examples (pairs for PAIRS, main rows for UNPAIRED) in the step */
    /* RL (ppo, grpo, rloo), (R, T) at the scored positions; the scored
     * position t of a completion predicts its token (targets[t]) */
    const float *old_logp;    /* log-probs when sampled; NULL: logp itself, detached (ratio 1) */
    const float *adv;         /* advantages */
    const float *returns;     /* PPO: value targets (advantages + old values) */
    const float *old_values;  /* PPO: the critic's values when sampled */
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
/* Sums a step's statistics over the ranks of a data-parallel run (each
 * rank's already divided by the global denominators, so the sum is the
 * global batch's value): loss, num_tokens and every metric any rank has, in
 * the order they first appear from rank 0 up. No-op with one rank.
 * Collective. */
void al_stats_dist_sum(al_step_stats *st);
/* Value of a metric, or NaN when absent. */
double al_stats_get(const al_step_stats *st, const char *name);

typedef struct al_objective_ops {
    const char *name;         /* "sft", "dpo", ... as the job's "method" */
    al_batch_kind batch;
    int needs_ref;            /* reference log-probs required */
    int needs_values;         /* scalar head required (reward model) */
    int needs_lm;             /* token log-probs required */
    int scores_prompt;        /* PAIRS: the chosen rows score every token after the first,
                               * prompt included (ORPO's NLL); in->completion marks the rest */
    /* The names hyperparameters.loss_type takes, NULL-terminated (the
     * method registry, lib/train/methods.h, serves them); NULL when the
     * objective offers no choice of loss. */
    const char *const *loss_types;
    /* Validates the hyper-parameters it uses (AL_EINVAL naming the field in
     * err->field, without "hyperparameters."). */
    int (*create)(const al_hparams *hp, void **state, al_error *err);
    /* Pure: reads in, writes out's gradients and st. AL_ENAN on non-finite. */
    int (*loss)(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st);
    /* Optional (NULL: none), for an objective whose d loss / d logp does
     * not depend on the forward's outputs: adds (+=, the caller zeroes) into
     * dlogp (R, T) the values loss will give out->dlogp, bit for bit, from
     * in's shape, targets, weight and denominators alone (in->logp and the
     * other forward outputs are NULL: it runs before the forward). The
     * trainer hands them to the forward (al_fwd.dlogp), which can then run
     * a frozen LM head's backward at once. AL_OK, or an error (then nothing
     * is used). */
    int (*dlogp_prior)(void *state, const al_obj_in *in, float *dlogp);
    void (*destroy)(void *state);
} al_objective_ops;

/* NULL when no objective has that name. */
const al_objective_ops *al_objective_find(const char *name);
/* NULL-terminated table of every objective. */
const al_objective_ops *const *al_objectives(void);

/* ---- Shared by the objective files (lib/train/objectives.c) ----------------
 *
 * How an objective fills its outputs: it adds its gradients into out (+=;
 * the trainer zeroes them) and adds its loss, token count and metrics into st
 * (+=, never resetting it), so one st zeroed at the start of a step and passed
 * to every micro-batch ends up holding the step's values. On any error,
 * including AL_ENAN, neither out nor st has been touched. Missing or
 * inconsistent tensors (a wiring bug in the caller) return AL_ESHAPE; a
 * micro-batch with scored rows but a non-positive step denominator returns
 * AL_EINVAL. */

/* The objectives in the registry, one per file. */
extern const al_objective_ops al_obj_pretrain;      /* obj_lm.c */
extern const al_objective_ops al_obj_sft;           /* obj_lm.c */
extern const al_objective_ops al_obj_reward_model;  /* obj_rm.c */
extern const al_objective_ops al_obj_dpo;           /* obj_dpo.c: the whole loss_type family */
extern const al_objective_ops al_obj_kto;           /* obj_kto.c */
extern const al_objective_ops al_obj_orpo;          /* obj_orpo.c */
extern const al_objective_ops al_obj_simpo;         /* obj_simpo.c */
extern const al_objective_ops al_obj_ppo;           /* obj_rl.c */
extern const al_objective_ops al_obj_grpo;          /* obj_rl.c */
extern const al_objective_ops al_obj_rloo;          /* obj_rl.c */

/* log(sigmoid(x)) without overflow for any x: min(x, 0) - log1p(exp(-|x|)).
 * Its derivative is sigmoid(-x). NaN in, NaN out. */
double al_logsigmoid(double x);
/* sigmoid(x) = 1 / (1 + exp(-x)), computed without overflow for any x. */
double al_sigmoid(double x);
/* log(1 - exp(x)) for x <= 0, accurate both near 0 and far below it
 * (Maechler's log1mexp); -inf at 0, NaN above 0. */
double al_log1mexp(double x);

/* Row r's sum over its scored tokens (targets[r,t] >= 0, and in->completion
 * where given) of w[r,t] * x[r,t], w = in->weight or 1: the per-row
 * sequence log-prob when x is in->logp or in->ref_logp. */
double al_seq_logprob_sum(const al_obj_in *in, const float *x, int r);
/* Row r's plain (unweighted) sum of x over its scored tokens (entropy). */
double al_seq_masked_sum(const al_obj_in *in, const float *x, int r);
/* Row r's completion length: the number of its scored tokens. */
int al_seq_len(const al_obj_in *in, int r);
/* Backward of al_seq_logprob_sum scaled by g: d[r,t] += g * w[r,t] over row
 * r's scored tokens. d may be NULL (no-op). */
void al_seq_logprob_backward(float *d, const al_obj_in *in, int r, double g);

/* TRL's NLL term of the preference trainers (DPO's rpo_alpha and "sft",
 * CPO's cpo_alpha, ORPO): nn.CrossEntropyLoss's mean, one mean over every
 * scored token of the chosen rows [0, n_pairs) of the micro-batch, not a
 * mean of per-row means. full: every scored position (ORPO, prompt
 * included), else the completion positions only. Returns the mean (0 without
 * tokens); *ntok gets the token count. */
double al_chosen_nll(const al_obj_in *in, int full, int *ntok);
/* Backward of al_chosen_nll scaled by g: d[r,t] += -g w[r,t] / ntok over
 * those tokens. d may be NULL (no-op). */
void al_chosen_nll_backward(float *d, const al_obj_in *in, int full, double g);

/* Validation helpers for create(): AL_OK, or AL_EINVAL with err naming the
 * field (err->field "beta", err->msg "beta: must be > 0 (got 0)"). */
int al_hp_check_positive(double v, const char *field, al_error *err);
int al_hp_check_nonneg(double v, const char *field, al_error *err);
int al_hp_check_finite(double v, const char *field, al_error *err);

/* The metrics every pairwise objective reports, under TRL's names
 * (rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
 * logps/chosen, logps/rejected) plus the mean completion lengths
 * (lengths/chosen, lengths/rejected, so length exploitation shows): sums over
 * a micro-batch's pairs, added to st scaled by inv = 1 / norm_rows. */
typedef struct al_pair_stats {
    double rw_c, rw_r;      /* implicit rewards */
    double accu;            /* pairs with rw_c > rw_r */
    double lp_c, lp_r;      /* log-probs as the objective reports them */
    double len_c, len_r;    /* scored tokens */
} al_pair_stats;
void al_stats_add_pairs(al_step_stats *st, const al_pair_stats *ps, double inv);
/* Adds pair p's metrics to ps: implicit rewards b ac and b ar, the log-probs
 * ac and ar as given, and the pair's scored lengths. */
void al_pair_stats_add(al_pair_stats *ps, const al_obj_in *in, int p, double b, double ac,
                       double ar);

/* The checks a pairwise objective makes of its input: n_pairs pairs, the
 * chosen rows then the rejected ones (R = 2 n_pairs); with pairs, T > 0, the
 * targets and log-probs (and the reference's when needs_ref), norm_rows > 0.
 * Returns AL_OK, AL_ESHAPE or AL_EINVAL (norm_rows). */
int al_pairs_check(const al_obj_in *in, int needs_ref);

/* Pair p's length-normalised log-probs (SimPO's and ORPO's average
 * log-probs): each sequence's sum over its scored tokens divided by its
 * scored length, taken as 1 when below; *nc and *nr get those lengths. */
void al_pair_avg_logps(const al_obj_in *in, int p, double *ac, double *ar, int *nc, int *nr);

#endif

/* Reward model: "reward_model", a Bradley–Terry pairwise loss on a scalar head.
 *
 * For pair p (chosen row p, rejected row n_pairs + p) the reward of a row is
 * the head's value at its last real token, r = values[row, last[row]], and
 *
 *   loss_p = -log sigmoid(r_c - r_r - margin_p)
 *            + center_rewards_coefficient * (r_c + r_r)^2
 *   loss   = sum_p loss_p / norm_rows
 *
 * as TRL's RewardTrainer.compute_loss (trl/trainer/reward_trainer.py, current
 * main): -logsigmoid(chosen - rejected - margin).mean() plus
 * center_rewards_coefficient * mean((chosen + rejected)^2) (Eisenstein et al.
 * 2023); margin is 0 without a margin column, the coefficient 0 turns the
 * centring term off (TRL: None).
 *
 *   d loss / d r_c = (-sigmoid(-(r_c - r_r - m)) + 2 c (r_c + r_r)) / norm_rows
 *   d loss / d r_r = ( sigmoid(-(r_c - r_r - m)) + 2 c (r_c + r_r)) / norm_rows
 *
 * written into dvalue at [row, last[row]] only; dlogp is not touched.
 *
 * Metrics (each a sum over this micro-batch's pairs / norm_rows): "accuracy"
 * (r_c > r_r) and "margin" (r_c - r_r) as TRL names them, "mean_reward"
 * (mean over chosen and rejected rewards), and "rewards/chosen",
 * "rewards/rejected". TRL's "min_reward"/"max_reward" are not additive over
 * micro-batches and are left to the trainer. st->num_tokens counts the tokens
 * the head read, last[row] + 1 per row (TRL counts attention-mask tokens). */
#include "objective.h"

#include <math.h>
#include <stdlib.h>

typedef struct rm_state {
    double center; /* center_rewards_coefficient */
} rm_state;

static int rm_create(const al_hparams *hp, void **state, al_error *err) {
    int rc = al_hp_check_nonneg(hp->center_rewards_coefficient, "center_rewards_coefficient", err);
    if (rc != AL_OK) return rc;
    rm_state *s = calloc(1, sizeof *s);
    if (!s) return al_failf(err, AL_ENOMEM, "out of memory");
    s->center = hp->center_rewards_coefficient;
    *state = s;
    return AL_OK;
}

static void rm_destroy(void *state) { free(state); }

static int rm_loss(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st) {
    const rm_state *s = state;
    if (!s || !in || !st) return AL_ESHAPE;
    const int P = in->n_pairs;
    if (P < 0 || in->R != 2 * P || (P > 0 && in->T <= 0)) return AL_ESHAPE;
    if (P == 0) return AL_OK;
    if (!in->values || !in->last) return AL_ESHAPE;
    for (int r = 0; r < in->R; r++)
        if (in->last[r] < 0 || in->last[r] >= in->T) return AL_ESHAPE;
    if (!(in->norm_rows > 0)) return AL_EINVAL;
    const double inv = 1.0 / in->norm_rows;

#define RM_VALUE(row) ((double)in->values[(size_t)(row) * (size_t)in->T + (size_t)in->last[row]])

    double loss = 0.0, acc = 0.0, margin = 0.0, sum_c = 0.0, sum_r = 0.0;
    for (int p = 0; p < P; p++) {
        double rc = RM_VALUE(p), rr = RM_VALUE(P + p);
        double m = in->margin ? (double)in->margin[p] : 0.0;
        double d = rc - rr - m;
        loss += -al_logsigmoid(d) + s->center * (rc + rr) * (rc + rr);
        acc += rc > rr ? 1.0 : 0.0;
        margin += rc - rr;
        sum_c += rc;
        sum_r += rr;
    }
    loss *= inv;
    if (!isfinite(loss)) return AL_ENAN;

    if (out && out->dvalue) {
        for (int p = 0; p < P; p++) {
            double rc = RM_VALUE(p), rr = RM_VALUE(P + p);
            double m = in->margin ? (double)in->margin[p] : 0.0;
            double g = al_sigmoid(-(rc - rr - m));
            double cen = 2.0 * s->center * (rc + rr);
            out->dvalue[(size_t)p * (size_t)in->T + (size_t)in->last[p]] += (float)((-g + cen) * inv);
            out->dvalue[(size_t)(P + p) * (size_t)in->T + (size_t)in->last[P + p]] +=
                (float)((g + cen) * inv);
        }
    }
#undef RM_VALUE

    double ntok = 0.0;
    for (int r = 0; r < in->R; r++) ntok += (double)in->last[r] + 1.0;
    st->loss += loss;
    st->num_tokens += ntok;
    al_stats_add(st, "accuracy", acc * inv);
    al_stats_add(st, "margin", margin * inv);
    al_stats_add(st, "mean_reward", 0.5 * (sum_c + sum_r) * inv);
    al_stats_add(st, "rewards/chosen", sum_c * inv);
    al_stats_add(st, "rewards/rejected", sum_r * inv);
    return AL_OK;
}

const al_objective_ops al_obj_reward_model = {
    .name = "reward_model",
    .batch = AL_BATCH_PAIR,
    .needs_ref = 0,
    .needs_values = 1,
    .needs_lm = 0,
    .create = rm_create,
    .loss = rm_loss,
    .destroy = rm_destroy,
};

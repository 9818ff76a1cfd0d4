/* Simple preference optimisation: "simpo" (no reference model).
 *
 * Pairs: chosen rows [0, P), rejected rows [P, 2P). Per row, the average
 * log-prob over its scored tokens, a = sum w logp / n (n = completion length,
 * at least 1). With ls = label_smoothing:
 *
 *   logits = (a_c - a_r) - simpo_gamma / beta
 *   loss_p = -(1 - ls) log sigmoid(beta logits) - ls log sigmoid(-beta logits)
 *   nll    = mean of -logp over the chosen rows' completion tokens (one
 *            mean over the micro-batch's tokens)
 *   loss   = mean_p loss_p + rpo_alpha * nll
 *
 * as TRL's CPOTrainer with loss_type="simpo" (trl/experimental/cpo/
 * cpo_trainer.py, current main; it was trl/trainer/cpo_trainer.py before
 * moving to experimental, with the same formula): average log-probs
 * (average_log_prob for "simpo"), gamma_logratios = simpo_gamma / beta,
 * logits = pi_logratios - gamma_logratios, and the label-smoothed sigmoid
 * above; loss = losses.mean() + cpo_alpha * policy_nll_loss, the NLL being
 * nn.CrossEntropyLoss over the chosen rows' completion labels
 * (concatenated_forward). Pure SimPO is cpo_alpha = 0 (TRL's documented
 * setting for SimPO); al_hparams has no cpo_alpha, so rpo_alpha (default 0)
 * plays its part and turns this into CPO-SimPO when > 0. Rows are tokenized
 * as CPOTrainer's tokenize_row does (build_tokenized_answer, BOS first, EOS
 * last: AL_SPLIT_ANSWER in lib/text/chat.h).
 *
 * Gradient accumulation: TRL divides each micro-batch's loss by the number
 * of micro-batches; here the NLL term is weighted by the micro-batch's share
 * of the step's pairs, P / norm_rows, the same for equal micro-batches:
 *
 *   loss_mb = (sum_p loss_p + P rpo_alpha nll) / norm_rows
 *   z = beta * logits,  g = -(1 - ls) sigmoid(-z) + ls sigmoid(z)
 *   d loss_p / d a_c = beta g,   d loss_p / d a_r = -beta g
 *   d loss / d logp[row, t] = w[row, t] / n_row * d loss_p / d a_row / norm_rows
 *                             - rpo_alpha P / (ntok norm_rows)   (chosen completion tokens)
 *
 * Metrics (sums over pairs / norm_rows), TRL's names: rewards/chosen
 * (beta a_c), rewards/rejected, rewards/accuracies, rewards/margins,
 * logps/chosen (a_c), logps/rejected (a_r), nll_loss (the micro-batch's nll;
 * 0 when rpo_alpha is 0, as CPOTrainer skips it when cpo_alpha is 0). */
#include "objective.h"

#include <math.h>
#include <stdlib.h>

typedef struct simpo_state {
    double beta, gamma, ls, alpha;
} simpo_state;

static int simpo_create(const al_hparams *hp, void **state, al_error *err) {
    int rc;
    if ((rc = al_hp_check_positive(hp->beta, "beta", err)) != AL_OK) return rc;
    if ((rc = al_hp_check_finite(hp->simpo_gamma, "simpo_gamma", err)) != AL_OK) return rc;
    if ((rc = al_hp_check_nonneg(hp->rpo_alpha, "rpo_alpha", err)) != AL_OK) return rc;
    double ls = hp->label_smoothing;
    if (!isfinite(ls) || ls < 0 || ls > 0.5)
        return AL_FAIL(err, AL_EINVAL, "label_smoothing", "must be in [0, 0.5] (got %g)", ls);
    simpo_state *s = calloc(1, sizeof *s);
    if (!s) return al_failf(err, AL_ENOMEM, "out of memory");
    s->beta = hp->beta;
    s->gamma = hp->simpo_gamma;
    s->ls = ls;
    s->alpha = hp->rpo_alpha;
    *state = s;
    return AL_OK;
}

static void simpo_destroy(void *state) { free(state); }

typedef struct simpo_pair {
    double ac, ar, loss, dac, dar;
    int nc, nr;
} simpo_pair;

static simpo_pair simpo_terms(const simpo_state *s, const al_obj_in *in, int p) {
    simpo_pair q;
    al_pair_avg_logps(in, p, &q.ac, &q.ar, &q.nc, &q.nr);
    const double b = s->beta, ls = s->ls;
    double z = b * ((q.ac - q.ar) - s->gamma / b);
    q.loss = -(1 - ls) * al_logsigmoid(z) - ls * al_logsigmoid(-z);
    double g = -(1 - ls) * al_sigmoid(-z) + ls * al_sigmoid(z);
    q.dac = b * g;
    q.dar = -b * g;
    return q;
}

static int simpo_loss(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st) {
    const simpo_state *s = state;
    if (!s || !in || !st) return AL_ESHAPE;
    const int P = in->n_pairs;
    int rc = al_pairs_check(in, 0);
    if (rc != AL_OK || P == 0) return rc;
    const double inv = 1.0 / in->norm_rows, b = s->beta;

    int ntok;
    const double nll = s->alpha > 0 ? al_chosen_nll(in, 0, &ntok) : 0.0;
    double loss = P * s->alpha * nll;
    al_pair_stats ps = {0};
    for (int p = 0; p < P; p++) {
        simpo_pair q = simpo_terms(s, in, p);
        if (!isfinite(q.ac) || !isfinite(q.ar) || !isfinite(q.loss) || !isfinite(q.dac) ||
            !isfinite(q.dar))
            return AL_ENAN;
        loss += q.loss;
        al_pair_stats_add(&ps, in, p, b, q.ac, q.ar);
    }
    loss *= inv;
    if (!isfinite(loss)) return AL_ENAN;

    if (out && out->dlogp) {
        for (int p = 0; p < P; p++) {
            simpo_pair q = simpo_terms(s, in, p);
            al_seq_logprob_backward(out->dlogp, in, p, q.dac / q.nc * inv);
            al_seq_logprob_backward(out->dlogp, in, P + p, q.dar / q.nr * inv);
        }
        if (s->alpha > 0) al_chosen_nll_backward(out->dlogp, in, 0, P * s->alpha * inv);
    }

    st->loss += loss;
    st->num_tokens += ps.len_c + ps.len_r;
    al_stats_add_pairs(st, &ps, inv);
    al_stats_add(st, "nll_loss", P * nll * inv);
    return AL_OK;
}

const al_objective_ops al_obj_simpo = {
    .name = "simpo",
    .batch = AL_BATCH_PAIR,
    .needs_ref = 0,
    .needs_values = 0,
    .needs_lm = 1,
    .create = simpo_create,
    .loss = simpo_loss,
    .destroy = simpo_destroy,
};

/* Odds-ratio preference optimisation: "orpo" (no reference model).
 *
 * Pairs: chosen rows [0, P), rejected rows [P, 2P). Per row, the average
 * log-prob over its completion tokens, a = sum w logp / n (n = completion
 * length, at least 1). With L(a) = log(1 - exp(a)) (computed as log1mexp):
 *
 *   log_odds = (a_c - a_r) - (L(a_c) - L(a_r))
 *   ratio    = log sigmoid(log_odds)
 *   nll      = mean of -logp over every token of the chosen rows after
 *              their first, prompt included (one mean over the micro-batch)
 *   loss     = nll - beta * mean_p ratio_p
 *
 * as TRL's ORPOTrainer (trl/experimental/orpo/orpo_trainer.py, current main,
 * where it moved from trl/trainer/ with the same code): odds_ratio_loss
 * computes log_odds from the length-averaged log-probs
 * (get_batch_logps(average_log_prob=True) over the completion labels),
 * ratio = F.logsigmoid(log_odds), losses = beta * ratio; concatenated_forward
 * takes policy_nll_loss as nn.CrossEntropyLoss over the chosen rows with the
 * input ids as labels where the attention mask is 1 ("orpo chosen nll loss
 * is computed over the full prompt and response"); loss = policy_nll_loss -
 * losses.mean(). Every TRL release with ORPO (0.8.2 on) and main agree
 * on that scope (a completion-only NLL was on main for three weeks in
 * December 2024, #2502, reverted by #2527). beta is the paper's lambda.
 * The trainer scores the chosen rows' prompts for this (scores_prompt);
 * in->completion keeps the odds ratio on the completions. Rows are tokenized as ORPOTrainer's
 * tokenize_row does (build_tokenized_answer, BOS first, EOS last:
 * AL_SPLIT_ANSWER in lib/text/chat.h).
 *
 * Gradient accumulation: TRL divides each micro-batch's loss by the number
 * of micro-batches; here the micro-batch's terms are weighted by its share
 * of the step's pairs, P / norm_rows, which is the same for equal
 * micro-batches:
 *
 *   loss_mb = (P nll - beta sum_p ratio_p) / norm_rows
 *   d / d a_c = -beta * sigmoid(-log_odds) / (1 - exp(a_c)) / norm_rows
 *   d / d a_r =  beta * sigmoid(-log_odds) / (1 - exp(a_r)) / norm_rows
 *   d / d logp[row, t] = w[row, t] / n_row * d / d a_row   (completion tokens)
 *                      - P / (ntok norm_rows)              (every NLL token of the chosen rows)
 *
 * A row whose average log-prob is 0 (probability 1) has infinite odds: the
 * loss or its gradient is then not finite and loss() returns AL_ENAN.
 *
 * Metrics (sums over pairs / norm_rows), TRL's names: rewards/chosen
 * (beta a_c), rewards/rejected, rewards/accuracies, rewards/margins,
 * logps/chosen (a_c), logps/rejected (a_r), nll_loss (the micro-batch's
 * nll), log_odds_ratio (mean of ratio) and log_odds_chosen (mean of
 * log_odds) — TRL logs the log-sigmoid under log_odds_ratio and the raw
 * log-odds under log_odds_chosen. */
#include "objective.h"

#include <math.h>
#include <stdlib.h>

typedef struct orpo_state {
    double beta;
} orpo_state;

static int orpo_create(const al_hparams *hp, void **state, al_error *err) {
    int rc = al_hp_check_positive(hp->beta, "beta", err);
    if (rc != AL_OK) return rc;
    orpo_state *s = calloc(1, sizeof *s);
    if (!s) return al_failf(err, AL_ENOMEM, "out of memory");
    s->beta = hp->beta;
    *state = s;
    return AL_OK;
}

static void orpo_destroy(void *state) { free(state); }

typedef struct orpo_pair {
    double ac, ar, lo, ratio, dac, dar;
    int nc, nr;
} orpo_pair;

/* The odds-ratio term of pair p: -beta ratio and its derivatives. */
static orpo_pair orpo_terms(const orpo_state *s, const al_obj_in *in, int p) {
    orpo_pair q;
    al_pair_avg_logps(in, p, &q.ac, &q.ar, &q.nc, &q.nr);
    q.lo = (q.ac - q.ar) - (al_log1mexp(q.ac) - al_log1mexp(q.ar));
    q.ratio = al_logsigmoid(q.lo);
    double sg = al_sigmoid(-q.lo);
    /* 1 / (1 - e^a) = -1 / expm1(a) */
    q.dac = -s->beta * sg * (-1.0 / expm1(q.ac));
    q.dar = s->beta * sg * (-1.0 / expm1(q.ar));
    return q;
}

static int orpo_loss(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st) {
    const orpo_state *s = state;
    if (!s || !in || !st) return AL_ESHAPE;
    const int P = in->n_pairs;
    int rc = al_pairs_check(in, 0);
    if (rc != AL_OK || P == 0) return rc;
    const double inv = 1.0 / in->norm_rows, b = s->beta;

    int ntok;
    const double nll = al_chosen_nll(in, 1, &ntok);
    double loss = P * nll, ratio = 0, lo = 0;
    al_pair_stats ps = {0};
    for (int p = 0; p < P; p++) {
        orpo_pair q = orpo_terms(s, in, p);
        if (!isfinite(q.ratio) || !isfinite(q.dac) || !isfinite(q.dar) || !isfinite(q.lo)) return AL_ENAN;
        loss -= b * q.ratio;
        al_pair_stats_add(&ps, in, p, b, q.ac, q.ar);
        ratio += q.ratio;
        lo += q.lo;
    }
    loss *= inv;
    if (!isfinite(loss)) return AL_ENAN;

    if (out && out->dlogp) {
        for (int p = 0; p < P; p++) {
            orpo_pair q = orpo_terms(s, in, p);
            al_seq_logprob_backward(out->dlogp, in, p, q.dac / q.nc * inv);
            al_seq_logprob_backward(out->dlogp, in, P + p, q.dar / q.nr * inv);
        }
        al_chosen_nll_backward(out->dlogp, in, 1, P * inv);
    }

    st->loss += loss;
    st->num_tokens += ps.len_c + ps.len_r;
    al_stats_add_pairs(st, &ps, inv);
    al_stats_add(st, "nll_loss", P * nll * inv);
    al_stats_add(st, "log_odds_ratio", ratio * inv);
    al_stats_add(st, "log_odds_chosen", lo * inv);
    return AL_OK;
}

const al_objective_ops al_obj_orpo = {
    .name = "orpo",
    .batch = AL_BATCH_PAIR,
    .needs_ref = 0,
    .needs_values = 0,
    .needs_lm = 1,
    .scores_prompt = 1,
    .create = orpo_create,
    .loss = orpo_loss,
    .destroy = orpo_destroy,
};

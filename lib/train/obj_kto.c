/* Kahneman–Tversky optimisation: "kto", on unpaired rows.
 *
 * Rows [0, n_main) are examples labelled desirable (label 1) or undesirable
 * (label 0); rows [n_main, R) are the mismatched KL rows (TRL's
 * KL_completion_ids: each example's prompt with the completion of the
 * example before it in its run of micro_batch_size examples, fixed when the
 * data is prepared and trained in dataset order; lib/train/trainer.c builds
 * them as KTOTrainer._prepare_dataset's add_kl_completion_ids does). Rows
 * are tokenized as KTOTrainer's tokenize_fn (AL_SPLIT_PROMPT_IDS in
 * lib/text/chat.h). Per row, over
 * its scored tokens with token weight w: logps = sum w logp, ref = sum w
 * ref_logp, r = logps - ref. Then
 *
 *   KL = max(0, mean over KL rows of (logps - ref))       detached; 0 without KL rows
 *   desirable:    loss_i = desirable_weight   * (1 - sigmoid(beta (r_i - KL)))
 *   undesirable:  loss_i = undesirable_weight * (1 - sigmoid(beta (KL - r_i)))
 *   loss = sum over main rows of loss_i / norm_rows
 *
 * as TRL's KTOTrainer (trl/trainer/kto_trainer.py; 0.2x's kto_loss and
 * current main's _compute_loss agree): kl = (KL_logps - ref_KL_logps).mean().detach(),
 * gathered and clamp(min=0); losses = cat(desirable_weight * chosen_losses,
 * undesirable_weight * rejected_losses) and loss = losses.nanmean() over the
 * main rows. loss_type must be "kto" (or "sigmoid", the resolved default of
 * the shared loss_type field). TRL KTO's other loss_type, "apo_zero_unpaired",
 * is not offered: its name does not fit al_hparams.loss_type (16 bytes).
 *
 * Like TRL, which estimates KL per device per micro-batch, KL is estimated
 * from this micro-batch's KL rows, so gradient accumulation equals one big
 * batch only when the micro-batches' KL estimates agree.
 *
 *   d loss / d logp[i, t] = w[i, t] * d loss_i / d r_i / norm_rows   (main rows; KL rows get 0)
 *   desirable:   d loss_i / d r_i = -desirable_weight   * beta * s(z) s(-z),  z = beta (r_i - KL)
 *   undesirable: d loss_i / d r_i = +undesirable_weight * beta * s(z) s(-z),  z = beta (KL - r_i)
 *
 * Metrics, TRL's names: "kl", "rewards/chosen" (mean beta r over desirable
 * rows), "rewards/rejected", "logps/chosen" (mean logps over desirable rows),
 * "logps/rejected", "rewards/margins" (rewards/chosen - rewards/rejected).
 * TRL derives these in log() from per-class sums and counts; here each
 * micro-batch contributes its own class means weighted by its share of the
 * step's rows, n_main / norm_rows, so the sum over micro-batches is exact for
 * one micro-batch or micro-batches with the same class mix, and a
 * row-weighted average of micro-batch means otherwise. st->num_tokens counts
 * the main rows' scored tokens. */
#include "objective.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct kto_state {
    double beta, wd, wu;
} kto_state;

static int kto_create(const al_hparams *hp, void **state, al_error *err) {
    int rc;
    if ((rc = al_hp_check_positive(hp->beta, "beta", err)) != AL_OK) return rc;
    if ((rc = al_hp_check_positive(hp->desirable_weight, "desirable_weight", err)) != AL_OK) return rc;
    if ((rc = al_hp_check_positive(hp->undesirable_weight, "undesirable_weight", err)) != AL_OK) return rc;
    if (hp->n_loss_types > 1)
        return AL_FAIL(err, AL_EINVAL, "loss_type", "kto takes one loss type, kto");
    if (hp->n_loss_types == 1) {
        const char *name = hp->loss_type[0];
        int len = (int)strnlen(name, sizeof hp->loss_type[0]);
        if (!((size_t)len == strlen("kto") && strncmp(name, "kto", (size_t)len) == 0) &&
            !((size_t)len == strlen("sigmoid") && strncmp(name, "sigmoid", (size_t)len) == 0))
            return AL_FAIL(err, AL_EINVAL,
                           "loss_type", "'%.*s' is not one of kto (apo_zero_unpaired is not supported)",
                           len, name);
    }
    kto_state *s = calloc(1, sizeof *s);
    if (!s) return al_failf(err, AL_ENOMEM, "out of memory");
    s->beta = hp->beta;
    s->wd = hp->desirable_weight;
    s->wu = hp->undesirable_weight;
    *state = s;
    return AL_OK;
}

static void kto_destroy(void *state) { free(state); }

/* Loss of main row i given its logratio r and the KL estimate; *g = d loss / d r. */
static double row_loss(const kto_state *s, int desirable, double r, double kl, double *g) {
    const double b = s->beta;
    if (desirable) {
        double z = b * (r - kl), sz = al_sigmoid(z), sm = al_sigmoid(-z);
        *g = -s->wd * b * sz * sm;
        return s->wd * (1 - sz);
    }
    double z = b * (kl - r), sz = al_sigmoid(z), sm = al_sigmoid(-z);
    *g = s->wu * b * sz * sm;
    return s->wu * (1 - sz);
}

static int kto_loss(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st) {
    const kto_state *s = state;
    if (!s || !in || !st) return AL_ESHAPE;
    const int R = in->R, M = in->n_main;
    if (R < 0 || M < 0 || M > R) return AL_ESHAPE;
    if (R == 0) return AL_OK;
    if (in->T <= 0 || !in->targets || !in->logp || !in->ref_logp || (M > 0 && !in->label))
        return AL_ESHAPE;
    if (M > 0 && !(in->norm_rows > 0)) return AL_EINVAL;

    double kl = 0.0;
    if (R > M) {
        double sum = 0.0;
        for (int r = M; r < R; r++)
            sum += al_seq_logprob_sum(in, in->logp, r) - al_seq_logprob_sum(in, in->ref_logp, r);
        kl = sum / (R - M);
        if (!isfinite(kl)) return AL_ENAN;
        if (kl < 0) kl = 0; /* clamp(min=0) */
    }
    if (M == 0) return AL_OK;
    const double inv = 1.0 / in->norm_rows;

    double loss = 0.0, rw_d = 0, rw_u = 0, lp_d = 0, lp_u = 0, ntok = 0;
    int n_d = 0, n_u = 0;
    for (int i = 0; i < M; i++) {
        double lp = al_seq_logprob_sum(in, in->logp, i), rf = al_seq_logprob_sum(in, in->ref_logp, i);
        if (!isfinite(lp) || !isfinite(rf)) return AL_ENAN;
        double g, l = row_loss(s, in->label[i] != 0, lp - rf, kl, &g);
        if (!isfinite(l) || !isfinite(g)) return AL_ENAN;
        loss += l;
        ntok += al_seq_len(in, i);
        if (in->label[i]) {
            n_d++;
            rw_d += s->beta * (lp - rf);
            lp_d += lp;
        } else {
            n_u++;
            rw_u += s->beta * (lp - rf);
            lp_u += lp;
        }
    }
    loss *= inv;
    if (!isfinite(loss)) return AL_ENAN;

    if (out && out->dlogp) {
        for (int i = 0; i < M; i++) {
            double lp = al_seq_logprob_sum(in, in->logp, i), rf = al_seq_logprob_sum(in, in->ref_logp, i);
            double g;
            (void)row_loss(s, in->label[i] != 0, lp - rf, kl, &g);
            al_seq_logprob_backward(out->dlogp, in, i, g * inv);
        }
    }

    const double share = (double)M * inv;
    st->loss += loss;
    st->num_tokens += ntok;
    al_stats_add(st, "kl", kl * share);
    if (n_d > 0) {
        al_stats_add(st, "rewards/chosen", share * rw_d / n_d);
        al_stats_add(st, "logps/chosen", share * lp_d / n_d);
    }
    if (n_u > 0) {
        al_stats_add(st, "rewards/rejected", share * rw_u / n_u);
        al_stats_add(st, "logps/rejected", share * lp_u / n_u);
    }
    if (n_d > 0 && n_u > 0) al_stats_add(st, "rewards/margins", share * (rw_d / n_d - rw_u / n_u));
    return AL_OK;
}

const al_objective_ops al_obj_kto = {
    .name = "kto",
    .batch = AL_BATCH_UNPAIRED,
    .needs_ref = 1,
    .needs_values = 0,
    .needs_lm = 1,
    .create = kto_create,
    .loss = kto_loss,
    .destroy = kto_destroy,
};

/* Policy-gradient objectives: "ppo", "grpo" and "rloo".
 *
 * Each sees a micro-batch of sampled completions laid out as every other
 * objective's rows: position t of row r is scored when targets[r,t] >= 0 and
 * then predicts completion token targets[r,t]. The rollout (lib/train/rl.c)
 * has already computed the per-token advantages (and for PPO the returns and
 * old values), so these stay pure maps from log-probs and values to a loss
 * and its gradient.
 *
 * With ratio rho = exp(logp - old_logp) (old_logp NULL: the log-probs
 * themselves, detached, so rho = 1 with gradient rho; TRL main's GRPO with
 * num_iterations 1), advantage A:
 *
 * GRPO (TRL main, trl/trainer/grpo_trainer.py, GRPOTrainer._compute_loss):
 *   l_t   = -min(rho A, clip(rho, 1 - epsilon, 1 + epsilon_high) A)
 *           + beta * (exp(ref - logp) - (ref - logp) - 1)      (k3; beta > 0)
 *           - entropy_coef * H_t                               (our entropy bonus)
 *   loss  = grpo:    mean over sequences of (sum_t l_t / |o_i|)
 *           dapo:    sum_{i,t} l_t / (scored tokens of the optimiser step)
 *                    (TRL's num_items_in_batch: the global token count)
 *           dr_grpo: sum_{i,t} l_t / (sequences * max_completion_length)
 *           bnpo:    as dapo here: the local and the global token count are
 *                    the same thing when the step's denominators are exact
 * RLOO: the same clipped surrogate on advantages that already carry the KL
 *   penalty in the sequence reward (TRL main RLOOTrainer; v0.11's
 *   RLOOTrainer also put beta * KL into the reward), so beta never enters the
 *   loss; the aggregation follows loss_type as GRPO (default dapo).
 * PPO (trl/experimental/ppo/ppo_trainer.py; the same loss as v0.11's PPOv2):
 *   pg_t  = max(-A rho, -A clip(rho, 1 - cliprange, 1 + cliprange))
 *   vc_t  = clip(v, old_v - cliprange_value, old_v + cliprange_value)
 *   vf_t  = 0.5 * max((v - R)^2, (vc_t - R)^2)
 *   loss  = sum_t (pg_t + vf_coef vf_t - entropy_coef H_t) / (scored tokens of the minibatch)
 *   TRL masks the value loss one position past the end (padding_mask_p1);
 *   here the value loss covers exactly the scored positions.
 *
 * Gradients: d pg_t / d logp = -A rho where the unclipped term is the one
 * taken (else 0); d k3 / d logp = 1 - exp(ref - logp); d vf_t / d v =
 * (v - R) when the unclipped value term is taken or the clip is inactive,
 * else 0; d (-c H) / d H = -c into dent.
 *
 * PPO with logp NULL writes d loss / d value alone (no loss, no metrics): the
 * value term needs only the critic's outputs, so the critic can run its
 * forward and backward before the policy's forward (sharing its activations),
 * and the full call that follows, with dvalue NULL, gives the rest.
 *
 * Metrics (TRL's names, as sums over this micro-batch / the step's
 * denominators so the trainer's sum is the step's mean):
 *   grpo/rloo: kl (mean k3 per token, when a reference is given),
 *   clip_ratio/low_mean, clip_ratio/high_mean, clip_ratio/region_mean,
 *   entropy; ppo: policy/approxkl_avg (0.5 (logp - old)^2),
 *   policy/clipfrac_avg, loss/policy_avg, loss/value_avg, val/clipfrac_avg,
 *   val/ratio, policy/entropy_avg. */
#include "objective.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { L_GRPO, L_DAPO, L_DR_GRPO, L_BNPO };
/* GRPO's and RLOO's loss types, by their enum value */
static const char *const l_names[] = {"grpo", "dapo", "dr_grpo", "bnpo", NULL};

typedef struct rl_state {
    int ppo, rloo;
    int loss;
    double eps_lo, eps_hi, beta, ent_coef;
    double cliprange, cliprange_value, vf_coef;
    int max_completion_length;
} rl_state;

static void rl_destroy(void *state) { free(state); }

static int rl_create_common(const al_hparams *hp, void **state, int ppo, int rloo, al_error *err) {
    int rc;
    rl_state s;
    memset(&s, 0, sizeof s);
    s.ppo = ppo;
    s.rloo = rloo;
    if ((rc = al_hp_check_nonneg(hp->entropy_coef, "entropy_coef", err))) return rc;
    s.ent_coef = hp->entropy_coef;
    if (ppo) {
        if ((rc = al_hp_check_positive(hp->cliprange, "cliprange", err))) return rc;
        if ((rc = al_hp_check_positive(hp->cliprange_value, "cliprange_value", err))) return rc;
        if ((rc = al_hp_check_nonneg(hp->vf_coef, "vf_coef", err))) return rc;
        if ((rc = al_hp_check_nonneg(hp->kl_coef, "kl_coef", err))) return rc;
        if ((rc = al_hp_check_nonneg(hp->gamma, "gamma", err))) return rc;
        if ((rc = al_hp_check_nonneg(hp->lam, "lam", err))) return rc;
        s.cliprange = hp->cliprange;
        s.cliprange_value = hp->cliprange_value;
        s.vf_coef = hp->vf_coef;
    } else {
        if ((rc = al_hp_check_positive(hp->epsilon, "epsilon", err))) return rc;
        s.eps_lo = hp->epsilon;
        s.eps_hi = hp->epsilon_high < 0 ? hp->epsilon : hp->epsilon_high;
        if ((rc = al_hp_check_positive(s.eps_hi, "epsilon_high", err))) return rc;
        if ((rc = al_hp_check_nonneg(hp->beta, "beta", err))) return rc;
        s.beta = rloo ? 0.0 : hp->beta;
        if (hp->n_loss_types != 1)
            return AL_FAIL(err, AL_EINVAL, "loss_type", "%s takes one loss type", rloo ? "rloo" : "grpo");
        const char *lt = hp->loss_type[0];
        s.loss = -1;
        for (int k = 0; l_names[k]; k++)
            if (!strcmp(lt, l_names[k])) s.loss = k;
        if (s.loss < 0) {
            char list[64];
            return AL_FAIL(err, AL_EINVAL, "loss_type", "'%s' is not one of %s", lt,
                           al_names_join(list, sizeof list, l_names, "", ", "));
        }
        if (hp->max_completion_length < 1)
            return AL_FAIL(err, AL_EINVAL, "max_completion_length", "must be >= 1");
        s.max_completion_length = hp->max_completion_length;
    }
    rl_state *p = malloc(sizeof *p);
    if (!p) return al_failf(err, AL_ENOMEM, "out of memory");
    *p = s;
    *state = p;
    return AL_OK;
}

static int ppo_create(const al_hparams *hp, void **state, al_error *err) {
    return rl_create_common(hp, state, 1, 0, err);
}
static int grpo_create(const al_hparams *hp, void **state, al_error *err) {
    return rl_create_common(hp, state, 0, 0, err);
}
static int rloo_create(const al_hparams *hp, void **state, al_error *err) {
    return rl_create_common(hp, state, 0, 1, err);
}

static int check_in(const rl_state *s, const al_obj_in *in) {
    if (!in || in->R < 0 || in->T < 0) return AL_ESHAPE;
    if (in->R == 0 || in->T == 0) return AL_OK;
    if (!in->targets || !in->adv || (!in->logp && !s->ppo)) return AL_ESHAPE;
    if (s->ppo && (!in->values || !in->returns || !in->old_values)) return AL_ESHAPE;
    if (!s->ppo && s->beta > 0 && !in->ref_logp) return AL_ESHAPE;
    if (s->ent_coef > 0 && !in->entropy) return AL_ESHAPE;
    return AL_OK;
}

/* The clipped surrogate at one token: loss, d loss / d logp, and whether the
 * clip was binding below / above. */
static double surrogate(double lp, double old, double A, double lo, double hi, double *dlp, int *clip_lo,
                        int *clip_hi) {
    double rho = exp(lp - old);
    double rc = rho < 1 - lo ? 1 - lo : rho > 1 + hi ? 1 + hi : rho;
    double l1 = rho * A, l2 = rc * A;
    *clip_lo = rho < 1 - lo && A < 0;
    *clip_hi = rho > 1 + hi && A > 0;
    if (l1 <= l2) {
        *dlp = -A * rho;
        return -l1;
    }
    *dlp = 0; /* the clipped term is constant in logp */
    return -l2;
}

/* PPO's value term alone (logp NULL): vf_coef vf_t / norm_tokens summed
 * into out->dvalue exactly as rl_loss writes it, with no loss and no
 * metrics, so that the critic's backward can run before the policy's
 * forward; AL_ENAN when the value loss is not finite. */
static int ppo_value_grad(const rl_state *s, const al_obj_in *in, al_obj_out *out) {
    const int R = in->R, T = in->T;
    double w = 1.0 / in->norm_tokens, vloss = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && (!out || !out->dvalue)) break;
        for (int r = 0; r < R; r++) {
            if (al_seq_len(in, r) == 0) continue;
            for (int t = 0; t < T; t++) {
                size_t i = (size_t)r * T + (size_t)t;
                if (in->targets[i] < 0) continue;
                double v = in->values[i], ov = in->old_values[i], Rt = in->returns[i];
                double c = s->cliprange_value;
                double vc = v < ov - c ? ov - c : v > ov + c ? ov + c : v;
                double e1 = (v - Rt) * (v - Rt), e2 = (vc - Rt) * (vc - Rt);
                double dv = (e1 >= e2 || vc == v) ? (v - Rt) : 0;
                dv *= s->vf_coef;
                if (pass == 0) vloss += s->vf_coef * 0.5 * (e1 >= e2 ? e1 : e2) * w;
                else out->dvalue[i] += (float)(dv * w);
            }
        }
        if (pass == 0 && !isfinite(vloss)) return AL_ENAN;
    }
    return AL_OK;
}

static int rl_loss(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st) {
    const rl_state *s = state;
    if (!s || !st) return AL_ESHAPE;
    int rc = check_in(s, in);
    if (rc) return rc;
    const int R = in->R, T = in->T;
    long ntok = 0;
    for (int r = 0; r < R && T > 0; r++) ntok += al_seq_len(in, r);
    if (ntok == 0) return AL_OK;
    if (!(in->norm_tokens > 0) || !(in->norm_rows > 0)) return AL_EINVAL;
    if (!in->logp) return ppo_value_grad(s, in, out);
    const double lo = s->ppo ? s->cliprange : s->eps_lo, hi = s->ppo ? s->cliprange : s->eps_hi;

    /* pass 1: the loss and the metrics; pass 2 writes the gradients, so an
     * error (non-finite loss) leaves out untouched */
    double loss = 0, kl = 0, clo = 0, chi = 0, ent = 0;
    double pg_sum = 0, vf_sum = 0, approx = 0, vclip = 0, ratio = 0, pgclip = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && !out) break;
        for (int r = 0; r < R; r++) {
            size_t o = (size_t)r * T;
            int n = al_seq_len(in, r);
            if (n == 0) continue;
            /* the aggregation's weight of one token of this row */
            double w;
            if (s->ppo) w = 1.0 / in->norm_tokens;
            else if (s->loss == L_GRPO) w = 1.0 / ((double)n * in->norm_rows);
            else if (s->loss == L_DR_GRPO) w = 1.0 / (in->norm_rows * s->max_completion_length);
            else w = 1.0 / in->norm_tokens;
            for (int t = 0; t < T; t++) {
                size_t i = o + (size_t)t;
                if (in->targets[i] < 0) continue;
                double lp = in->logp[i], old = in->old_logp ? in->old_logp[i] : lp, A = in->adv[i];
                double dlp, dv = 0;
                int cl, ch;
                double lt = surrogate(lp, old, A, lo, hi, &dlp, &cl, &ch);
                if (pass == 0) {
                    pg_sum += lt * w;
                    clo += cl / in->norm_tokens;
                    chi += ch / in->norm_tokens;
                    ratio += exp(lp - old) / in->norm_tokens;
                    approx += 0.5 * (lp - old) * (lp - old) / in->norm_tokens;
                    pgclip += (cl || ch) / in->norm_tokens;
                }
                if (!s->ppo && s->beta > 0) {
                    double d = (double)in->ref_logp[i] - lp;
                    double k3 = exp(d) - d - 1;
                    lt += s->beta * k3;
                    dlp += s->beta * (1 - exp(d));
                    if (pass == 0) kl += k3 / in->norm_tokens;
                }
                if (s->ppo) {
                    double v = in->values[i], ov = in->old_values[i], Rt = in->returns[i];
                    double c = s->cliprange_value;
                    double vc = v < ov - c ? ov - c : v > ov + c ? ov + c : v;
                    double e1 = (v - Rt) * (v - Rt), e2 = (vc - Rt) * (vc - Rt);
                    double vf = 0.5 * (e1 >= e2 ? e1 : e2);
                    /* the clipped term moves with v only while the clip is inactive */
                    dv = (e1 >= e2 || vc == v) ? (v - Rt) : 0;
                    lt += s->vf_coef * vf;
                    dv *= s->vf_coef;
                    if (pass == 0) {
                        vf_sum += vf * w;
                        vclip += (e2 > e1) / in->norm_tokens;
                    }
                }
                if (s->ent_coef > 0) {
                    lt -= s->ent_coef * in->entropy[i];
                    if (pass == 1 && out->dent) out->dent[i] += (float)(-s->ent_coef * w);
                }
                if (in->entropy && pass == 0) ent += in->entropy[i] / in->norm_tokens;
                if (pass == 0) {
                    loss += lt * w;
                } else {
                    if (out->dlogp) out->dlogp[i] += (float)(dlp * w);
                    if (s->ppo && out->dvalue) out->dvalue[i] += (float)(dv * w);
                }
            }
        }
        if (pass == 0 && !isfinite(loss)) return AL_ENAN;
    }
    st->loss += loss;
    st->num_tokens += (double)ntok;
    if (s->ppo) {
        al_stats_add(st, "policy/approxkl_avg", approx);
        al_stats_add(st, "policy/clipfrac_avg", pgclip);
        al_stats_add(st, "loss/policy_avg", pg_sum);
        al_stats_add(st, "loss/value_avg", vf_sum);
        al_stats_add(st, "val/clipfrac_avg", vclip);
        al_stats_add(st, "val/ratio", ratio);
        if (in->entropy) al_stats_add(st, "policy/entropy_avg", ent);
    } else {
        if (s->beta > 0) al_stats_add(st, "kl", kl);
        al_stats_add(st, "clip_ratio/low_mean", clo);
        al_stats_add(st, "clip_ratio/high_mean", chi);
        al_stats_add(st, "clip_ratio/region_mean", clo + chi);
        if (in->entropy) al_stats_add(st, "entropy", ent);
    }
    return AL_OK;
}

const al_objective_ops al_obj_ppo = {
    .name = "ppo",
    .batch = AL_BATCH_PROMPT,
    .needs_ref = 1,
    .needs_values = 1,
    .needs_lm = 1,
    .create = ppo_create,
    .loss = rl_loss,
    .destroy = rl_destroy,
};

/* GRPO and RLOO: the same critic-free loss, their advantages made apart. */
#define CRITIC_FREE_OBJECTIVE(nm, make)                                                            \
    {                                                                                              \
        .name = nm, .batch = AL_BATCH_PROMPT, .needs_ref = 1, .needs_values = 0, .needs_lm = 1,  \
        .loss_types = l_names, .create = make, .loss = rl_loss, .destroy = rl_destroy,           \
    }

const al_objective_ops al_obj_grpo = CRITIC_FREE_OBJECTIVE("grpo", grpo_create);
const al_objective_ops al_obj_rloo = CRITIC_FREE_OBJECTIVE("rloo", rloo_create);

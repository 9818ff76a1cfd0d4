/* Language-model objectives: "pretrain" and "sft".
 *
 *   loss = -sum_{r,t: targets[r,t] >= 0} w[r,t] * logp[r,t] / norm_tokens
 *
 * the token-mean cross-entropy of TRL's SFTTrainer.compute_loss
 * (trl/trainer/sft_trainer.py, current main), where the mean runs over every
 * scored token of the optimiser step (TRL passes num_items_in_batch for the
 * same reason: gradient accumulation then equals one big batch). w is the
 * per-token weight (OpenAI's per-message "weight"), 1 when absent. Which
 * tokens are scored (completion only, assistant only, all) is decided by the
 * data layer through targets; the two names differ only in that.
 *
 *   d loss / d logp[r,t] = -w[r,t] / norm_tokens   (scored tokens; 0 elsewhere)
 *
 * known before the forward (dlogp_prior): the trainer gives it to the
 * forward, which then runs a frozen LM head's backward at once (Liger
 * Kernel's fused linear cross-entropy does the same for this loss).
 *
 * Metrics: st->loss, st->num_tokens (plain count of scored tokens), and
 * "entropy" (mean token entropy over the scored tokens, TRL's "entropy") when
 * the forward supplied it. TRL's "mean_token_accuracy" needs the argmax of
 * the logits, which an objective never sees: it is not reported here; the
 * trainer computes it from the model when wanted. */
#include "objective.h"

#include <math.h>

static int lm_create(const al_hparams *hp, void **state, al_error *err) {
    (void)hp;
    (void)err;
    *state = NULL; /* no hyper-parameters of its own */
    return AL_OK;
}

static void lm_destroy(void *state) { (void)state; }

/* d loss / d logp += -w / norm_tokens over the scored tokens. */
static void lm_dlogp(const al_obj_in *in, float *dlogp) {
    for (int r = 0; r < in->R; r++) al_seq_logprob_backward(dlogp, in, r, -1.0 / in->norm_tokens);
}

/* The same before the forward: it depends on targets and weights alone
 * (loss adds it only when the micro-batch has scored tokens; with none it
 * adds nothing here either). */
static int lm_dlogp_prior(void *state, const al_obj_in *in, float *dlogp) {
    (void)state;
    if (!in || !dlogp || in->R < 0 || in->T < 0) return AL_ESHAPE;
    if (in->R == 0 || in->T == 0) return AL_OK;
    if (!in->targets) return AL_ESHAPE;
    long n = 0;
    for (int r = 0; r < in->R; r++) n += al_seq_len(in, r);
    if (n > 0 && !(in->norm_tokens > 0)) return AL_EINVAL;
    if (n > 0) lm_dlogp(in, dlogp);
    return AL_OK;
}

static int lm_loss(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st) {
    (void)state;
    if (!in || !st || in->R < 0 || in->T < 0) return AL_ESHAPE;
    if (in->R > 0 && in->T > 0 && (!in->targets || !in->logp)) return AL_ESHAPE;

    double sum = 0.0, ent = 0.0;
    long n = 0;
    for (int r = 0; r < in->R && in->T > 0; r++) {
        sum += al_seq_logprob_sum(in, in->logp, r);
        n += al_seq_len(in, r);
        if (in->entropy) ent += al_seq_masked_sum(in, in->entropy, r);
    }
    if (n > 0 && !(in->norm_tokens > 0)) return AL_EINVAL;
    double loss = n > 0 ? -sum / in->norm_tokens : 0.0;
    if (!isfinite(loss)) return AL_ENAN;

    if (n > 0 && out && out->dlogp) lm_dlogp(in, out->dlogp);

    st->loss += loss;
    st->num_tokens += (double)n;
    if (in->entropy) al_stats_add(st, "entropy", n > 0 ? ent / in->norm_tokens : 0.0);
    return AL_OK;
}

/* Pretraining and SFT are one objective under two names (the data and its
 * loss mask make the difference). */
#define LM_OBJECTIVE(nm)                                                                           \
    {                                                                                              \
        .name = nm, .batch = AL_BATCH_LM, .needs_ref = 0, .needs_values = 0, .needs_lm = 1,      \
        .create = lm_create, .loss = lm_loss, .dlogp_prior = lm_dlogp_prior,                     \
        .destroy = lm_destroy,                                                                   \
    }

const al_objective_ops al_obj_pretrain = LM_OBJECTIVE("pretrain");
const al_objective_ops al_obj_sft = LM_OBJECTIVE("sft");

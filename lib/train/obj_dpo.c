/* Direct preference optimisation: "dpo", the whole TRL loss_type family.
 *
 * Batch: pairs, chosen rows [0, P), rejected rows [P, 2P). Per row, over its
 * scored tokens (targets >= 0), with w the token weight (1 when absent):
 *   pc, pr = sum w * logp      (policy, chosen / rejected)
 *   rc, rr = sum w * ref_logp  (reference)
 *   nc, nr = completion lengths (scored-token counts)
 *   cl = pc - rc, rl = pr - rr, delta = cl - rl, z = beta * delta,
 *   ls = label_smoothing, ls(x) = log sigmoid(x), s(x) = sigmoid(x).
 *
 *   sigmoid    -(1-ls) ls(z) - ls * ls(-z)                 (cDPO when ls > 0)
 *   hinge      relu(1 - z)
 *   ipo        (cl/max(nc,1) - rl/max(nr,1) - 1/(2 beta))^2 (length-normalised)
 *   exo_pair   s(z) (ls(z) - log(1-ls)) + s(-z) (ls(-z) - log ls),  ls > 0
 *   nca_pair   -ls(beta cl) - ls(-beta cl)/2 - ls(-beta rl)/2
 *   robust     (-(1-ls) ls(z) + ls * ls(-z)) / (1 - 2 ls),  ls < 0.5
 *   bco_pair   -ls(beta cl) - ls(-beta rl)
 *   sppo_hard  (cl - 1/(2 beta))^2 + (rl + 1/(2 beta))^2
 *   aot        sigmoid form (with ls) on sort(pc - pr) - sort(rc - rr)
 *   aot_unpaired (alias aot_pair)  the same on sort(cl) - sort(rl)
 *   apo_zero   1 - s(beta cl) + s(beta rl)
 *   apo_down   s(beta cl) + 1 - s(z)
 *   discopop   -ls(z) (1 - m) + exp(-z) m,  m = s(z / tau), tau = 0.05
 *   sft        nll = mean of -logp over the micro-batch's chosen completion tokens
 *
 *   loss = sum_p [ sum_i loss_weights[i] * loss_{type_i}(p) + rpo_alpha * nll ] / norm_rows
 *
 * Source: TRL, trl/trainer/dpo_trainer.py. Current main's rewritten
 * DPOTrainer._compute_loss is followed for the structure: loss_type is a
 * list, loss += per_sequence_loss.mean() * loss_weight for each, the formulas
 * above, IPO alone normalising by completion length (its scores divided by
 * completion_mask.sum().clamp(min=1); the other types and the metrics use the
 * summed log-probs), bco_pair without a running reward mean, exo_pair
 * requiring label_smoothing > 0, and the metrics' rewards unweighted:
 * rewards/chosen = beta * cl (detached). Where the versions differ:
 *  - sigmoid: the 0.x DPOTrainer.dpo_loss (the last before the rewrite,
 *    already taking loss_type lists) applies label smoothing as above
 *    (conservative DPO); current main's sigmoid ignores label_smoothing. We
 *    follow 0.x; with the default ls = 0 the two agree.
 *  - rpo_alpha: 0.x adds rpo_alpha * nll_loss to every pair; current main
 *    has no rpo_alpha (its "sft" loss_type, weighted by loss_weights, plays
 *    that part). Both are offered.
 *  - nll (rpo_alpha, sft): both take one cross-entropy mean over all chosen
 *    completion tokens of the micro-batch (al_chosen_nll), as here; each
 *    micro-batch's NLL is weighted by its share of the step's pairs, which
 *    is TRL's division by the number of micro-batches when they are equal.
 *  - 0.x divided every log-prob (and the metrics) by length when "ipo" was
 *    anywhere in the list; current main, followed here, only the IPO term.
 *  - bco_pair: 0.x subtracted a running mean of rewards across steps
 *    (stateful); current main, followed here, does not.
 *  - aot/aot_unpaired sort within the micro-batch, as TRL sorts within its
 *    per-device batch: these two are not invariant to gradient accumulation.
 * Not supported: TRL's f_divergence_type other than reverse KL, ld_alpha,
 * use_weighting (WPO), a configurable discopop_tau (TRL's default 0.05 is
 * used; al_hparams has no field), and the long-removed kto_pair (use method
 * "kto").
 *
 * Gradients: d loss / d logp[row, t] = w[row, t] * (d loss / d pc or pr) /
 * norm_rows on scored tokens (the NLL's d / d pc: -P / ntok, ntok the
 * micro-batch's chosen completion tokens); the reference gets none.
 *
 * Rows are tokenized as current main's DPOTrainer._prepare_dataset does:
 * the prompt's own ids, then the ids of prompt + completion after as many
 * tokens (AL_SPLIT_PROMPT_IDS in lib/text/chat.h). Before the rewrite
 * (0.x's tokenize_row) prompt and completion were tokenized separately
 * and concatenated; the two differ only where a merge crosses the
 * boundary.
 *
 * Metrics (sums over this micro-batch's pairs / norm_rows, TRL's names):
 * rewards/chosen (beta cl), rewards/rejected (beta rl), rewards/accuracies
 * (beta cl > beta rl), rewards/margins, logps/chosen (pc), logps/rejected
 * (pr), lengths/chosen (nc), lengths/rejected (nr), nll_loss (when rpo_alpha
 * > 0 or sft is used), and entropy (sum over scored tokens / norm_tokens)
 * when the forward supplied it. */
#include "objective.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DISCOPOP_TAU 0.05 /* TRL DPOConfig.discopop_tau default */

typedef enum {
    K_SIGMOID,
    K_HINGE,
    K_IPO,
    K_EXO_PAIR,
    K_NCA_PAIR,
    K_ROBUST,
    K_BCO_PAIR,
    K_SPPO_HARD,
    K_AOT,
    K_AOT_UNPAIRED,
    K_APO_ZERO,
    K_APO_DOWN,
    K_DISCOPOP,
    K_SFT,
} dpo_kind;

/* The loss types by dpo_kind; "aot_pair" is TRL's other name for aot_unpaired. */
static const char *const k_names[] = {
    "sigmoid",  "hinge",        "ipo",      "exo_pair", "nca_pair", "robust",   "bco_pair", "sppo_hard",
    "aot",      "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft",      NULL,
};
_Static_assert(sizeof k_names / sizeof k_names[0] == K_SFT + 2, "a name for every dpo_kind");

typedef struct dpo_state {
    double beta, ls, rpo_alpha;
    int n;                              /* loss types in use */
    dpo_kind kind[AL_MAX_LOSS_TYPES];
    double weight[AL_MAX_LOSS_TYPES];
    int has_aot, has_nll;
    int cap;                            /* pairs the aot scratch holds */
    double *scratch;                    /* aot: x, y, dpc, dpr (cap each) */
    int *order;                         /* aot: sort orders of x and y (cap each) */
} dpo_state;

static void dpo_destroy(void *state) {
    dpo_state *s = state;
    if (!s) return;
    free(s->scratch);
    free(s->order);
    free(s);
}

static int dpo_create(const al_hparams *hp, void **state, al_error *err) {
    int rc;
    if ((rc = al_hp_check_positive(hp->beta, "beta", err)) != AL_OK) return rc;
    if ((rc = al_hp_check_nonneg(hp->rpo_alpha, "rpo_alpha", err)) != AL_OK) return rc;
    double ls = hp->label_smoothing;
    if (!isfinite(ls) || ls < 0 || ls > 0.5)
        return AL_FAIL(err, AL_EINVAL, "label_smoothing", "must be in [0, 0.5] (got %g)", ls);
    if (hp->n_loss_types < 0 || hp->n_loss_types > AL_MAX_LOSS_TYPES)
        return AL_FAIL(err, AL_EINVAL, "loss_type", "%d types given, at most %d", hp->n_loss_types,
                       AL_MAX_LOSS_TYPES);

    dpo_state tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.beta = hp->beta;
    tmp.ls = ls;
    tmp.rpo_alpha = hp->rpo_alpha;
    if (hp->n_loss_types == 0) { /* TRL's default */
        tmp.n = 1;
        tmp.kind[0] = K_SIGMOID;
        tmp.weight[0] = 1.0;
    }
    for (int i = 0; i < hp->n_loss_types; i++) {
        const char *name = hp->loss_type[i];
        int len = (int)strnlen(name, sizeof hp->loss_type[i]);
        int found = (size_t)len == strlen("aot_pair") && !strncmp(name, "aot_pair", (size_t)len) ? K_AOT_UNPAIRED : -1;
        for (int k = 0; k_names[k]; k++)
            if ((int)strlen(k_names[k]) == len && strncmp(k_names[k], name, (size_t)len) == 0) found = k;
        if (found < 0) {
            char list[256];
            return AL_FAIL(err, AL_EINVAL, "loss_type", "'%.*s' is not one of %s (kto_pair is not supported: use "
                           "method \"kto\")", len, name, al_names_join(list, sizeof list, k_names, "", ", "));
        }
        char field[32];
        snprintf(field, sizeof field, "loss_weights[%d]", i);
        if ((rc = al_hp_check_nonneg(hp->loss_weights[i], field, err)) != AL_OK) return rc;
        dpo_kind k = (dpo_kind)found;
        if (k == K_ROBUST && !(ls < 0.5))
            return AL_FAIL(err, AL_EINVAL,
                           "label_smoothing", "must be in [0, 0.5) for loss_type 'robust' (got %g)", ls);
        if (k == K_EXO_PAIR && !(ls > 0))
            return AL_FAIL(err, AL_EINVAL,
                           "label_smoothing", "must be > 0 for loss_type 'exo_pair' (the EXO paper "
                           "recommends 1e-3)");
        if (k == K_AOT || k == K_AOT_UNPAIRED) tmp.has_aot = 1;
        if (k == K_SFT) tmp.has_nll = 1;
        tmp.kind[i] = k;
        tmp.weight[i] = hp->loss_weights[i];
        tmp.n = i + 1;
    }
    if (tmp.rpo_alpha > 0) tmp.has_nll = 1;

    dpo_state *s = calloc(1, sizeof *s);
    if (!s) return al_failf(err, AL_ENOMEM, "out of memory");
    *s = tmp;
    if (s->has_aot) {
        /* Sized at admission: a micro-batch never holds more pairs than the step. */
        int cap = hp->batch_size > hp->micro_batch_size ? hp->batch_size : hp->micro_batch_size;
        s->cap = cap > 64 ? cap : 64;
        s->scratch = calloc((size_t)s->cap * 4, sizeof *s->scratch);
        s->order = calloc((size_t)s->cap * 2, sizeof *s->order);
        if (!s->scratch || !s->order) {
            dpo_destroy(s);
            return al_failf(err, AL_ENOMEM, "out of memory");
        }
    }
    *state = s;
    return AL_OK;
}

typedef struct pair_in {
    double pc, pr, rc, rr;
    int nc, nr;
} pair_in;

static pair_in pair_sums(const al_obj_in *in, int p) {
    const int P = in->n_pairs;
    pair_in q;
    q.pc = al_seq_logprob_sum(in, in->logp, p);
    q.pr = al_seq_logprob_sum(in, in->logp, P + p);
    q.rc = al_seq_logprob_sum(in, in->ref_logp, p);
    q.rr = al_seq_logprob_sum(in, in->ref_logp, P + p);
    q.nc = al_seq_len(in, p);
    q.nr = al_seq_len(in, P + p);
    return q;
}

/* The pair's loss over every per-pair loss type (aot types excluded) plus the
 * RPO term, and its derivatives with respect to pc and pr. nl is the
 * micro-batch's chosen NLL and dnl the derivative of the pairs' summed NLL
 * terms with respect to this pair's pc. */
static double pair_loss(const dpo_state *s, const pair_in *q, double nl, double dnl, double *dpc,
                        double *dpr, double *nll) {
    const double b = s->beta, ls = s->ls;
    const double cl = q->pc - q->rc, rl = q->pr - q->rr, z = b * (cl - rl);
    double L = 0.0, gc = 0.0, gr = 0.0;
    for (int i = 0; i < s->n; i++) {
        double l = 0.0, c = 0.0, r = 0.0; /* c = dl/dpc, r = dl/dpr */
        switch (s->kind[i]) {
        case K_SIGMOID: {
            l = -(1 - ls) * al_logsigmoid(z) - ls * al_logsigmoid(-z);
            double g = -(1 - ls) * al_sigmoid(-z) + ls * al_sigmoid(z);
            c = b * g;
            r = -b * g;
            break;
        }
        case K_HINGE:
            l = 1 - z > 0 ? 1 - z : 0.0;
            c = 1 - z > 0 ? -b : 0.0; /* relu'(0) = 0, as torch */
            r = -c;
            break;
        case K_IPO: {
            double nc = q->nc > 1 ? q->nc : 1, nr = q->nr > 1 ? q->nr : 1;
            double d = cl / nc - rl / nr - 1.0 / (2.0 * b);
            l = d * d;
            c = 2.0 * d / nc;
            r = -2.0 * d / nr;
            break;
        }
        case K_EXO_PAIR: {
            double qw = al_sigmoid(z), ql = al_sigmoid(-z);
            double lpw = log1p(-ls), lpl = log(ls);
            l = qw * (al_logsigmoid(z) - lpw) + ql * (al_logsigmoid(-z) - lpl);
            /* d/dz: qw ql (ls(z) - ls(-z) - lpw + lpl) = qw ql (z - lpw + lpl) */
            double g = qw * ql * (z - lpw + lpl);
            c = b * g;
            r = -b * g;
            break;
        }
        case K_NCA_PAIR: {
            double a = b * cl, d = b * rl;
            l = -al_logsigmoid(a) - 0.5 * al_logsigmoid(-a) - 0.5 * al_logsigmoid(-d);
            c = b * (-al_sigmoid(-a) + 0.5 * al_sigmoid(a));
            r = b * 0.5 * al_sigmoid(d);
            break;
        }
        case K_ROBUST: {
            l = (-(1 - ls) * al_logsigmoid(z) + ls * al_logsigmoid(-z)) / (1 - 2 * ls);
            double g = (-(1 - ls) * al_sigmoid(-z) - ls * al_sigmoid(z)) / (1 - 2 * ls);
            c = b * g;
            r = -b * g;
            break;
        }
        case K_BCO_PAIR: {
            double a = b * cl, d = b * rl;
            l = -al_logsigmoid(a) - al_logsigmoid(-d);
            c = -b * al_sigmoid(-a);
            r = b * al_sigmoid(d);
            break;
        }
        case K_SPPO_HARD: {
            double u = cl - 0.5 / b, v = rl + 0.5 / b;
            l = u * u + v * v;
            c = 2.0 * u;
            r = 2.0 * v;
            break;
        }
        case K_APO_ZERO: {
            double a = b * cl, d = b * rl;
            l = 1 - al_sigmoid(a) + al_sigmoid(d);
            c = -b * al_sigmoid(a) * al_sigmoid(-a);
            r = b * al_sigmoid(d) * al_sigmoid(-d);
            break;
        }
        case K_APO_DOWN: {
            double a = b * cl;
            l = al_sigmoid(a) + 1 - al_sigmoid(z);
            double ga = b * al_sigmoid(a) * al_sigmoid(-a), gz = b * al_sigmoid(z) * al_sigmoid(-z);
            c = ga - gz;
            r = gz;
            break;
        }
        case K_DISCOPOP: {
            double m = al_sigmoid(z / DISCOPOP_TAU), m1 = al_sigmoid(-z / DISCOPOP_TAU);
            double dm = m * m1 / DISCOPOP_TAU, e = exp(-z), lz = al_logsigmoid(z);
            l = -lz * m1 + e * m;
            double g = -al_sigmoid(-z) * m1 + lz * dm - e * m + e * dm;
            c = b * g;
            r = -b * g;
            break;
        }
        case K_SFT:
            l = nl;
            c = dnl;
            break;
        case K_AOT:
        case K_AOT_UNPAIRED:
            continue; /* batch-level: aot_terms */
        }
        L += s->weight[i] * l;
        gc += s->weight[i] * c;
        gr += s->weight[i] * r;
    }
    if (s->rpo_alpha > 0) {
        L += s->rpo_alpha * nl;
        gc += s->rpo_alpha * dnl;
    }
    *dpc = gc;
    *dpr = gr;
    *nll = nl;
    return L;
}

/* Stable insertion sort of the indices 0..n-1 by v ascending (n is small). */
static void sort_order(int *ord, const double *v, int n) {
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 1; i < n; i++) {
        int k = ord[i], j = i - 1;
        while (j >= 0 && v[ord[j]] > v[k]) {
            ord[j + 1] = ord[j];
            j--;
        }
        ord[j + 1] = k;
    }
}

/* Sum of the aot-type terms over the micro-batch; their derivatives with
 * respect to each pair's pc and pr go to s->scratch's dpc, dpr (P each). */
static double aot_terms(dpo_state *s, const al_obj_in *in) {
    const int P = in->n_pairs;
    double *x = s->scratch, *y = x + s->cap, *dpc = y + s->cap, *dpr = dpc + s->cap;
    int *ox = s->order, *oy = ox + s->cap;
    const double b = s->beta, ls = s->ls;
    for (int p = 0; p < P; p++) dpc[p] = dpr[p] = 0.0;
    double L = 0.0;
    for (int i = 0; i < s->n; i++) {
        if (s->kind[i] != K_AOT && s->kind[i] != K_AOT_UNPAIRED) continue;
        const int paired = s->kind[i] == K_AOT;
        for (int p = 0; p < P; p++) {
            pair_in q = pair_sums(in, p);
            x[p] = paired ? q.pc - q.pr : q.pc - q.rc; /* policy logratio | chosen logratio */
            y[p] = paired ? q.rc - q.rr : q.pr - q.rr; /* reference logratio | rejected logratio */
        }
        sort_order(ox, x, P);
        sort_order(oy, y, P);
        const double w = s->weight[i];
        for (int k = 0; k < P; k++) {
            double z = b * (x[ox[k]] - y[oy[k]]);
            L += w * (-(1 - ls) * al_logsigmoid(z) - ls * al_logsigmoid(-z));
            double g = b * (-(1 - ls) * al_sigmoid(-z) + ls * al_sigmoid(z)); /* dl/dx_(k) */
            if (paired) {                 /* x = pc - pr; y is the reference's */
                dpc[ox[k]] += w * g;
                dpr[ox[k]] -= w * g;
            } else {                      /* x = pc - rc, y = pr - rr */
                dpc[ox[k]] += w * g;
                dpr[oy[k]] -= w * g;
            }
        }
    }
    return L;
}

static int dpo_loss(void *state, const al_obj_in *in, al_obj_out *out, al_step_stats *st) {
    dpo_state *s = state;
    if (!s || !in || !st) return AL_ESHAPE;
    const int P = in->n_pairs;
    int rc = al_pairs_check(in, 1);
    if (rc != AL_OK || P == 0) return rc;
    if (s->has_aot && P > s->cap) return AL_ESHAPE;
    const double inv = 1.0 / in->norm_rows, b = s->beta;

    double aot = s->has_aot ? aot_terms(s, in) : 0.0;
    const double *adpc = s->has_aot ? s->scratch + 2 * s->cap : NULL;
    const double *adpr = s->has_aot ? s->scratch + 3 * s->cap : NULL;

    /* TRL's NLL: one mean over the micro-batch's chosen completion tokens */
    int nll_tok = 0;
    const double nl = s->has_nll ? al_chosen_nll(in, 0, &nll_tok) : 0.0;
    const double dnl = nll_tok > 0 ? -(double)P / nll_tok : 0.0;

    /* Pass 1: loss and metrics; nothing is written until all is finite. */
    double loss = aot, rw_c = 0, rw_r = 0, accu = 0, lp_c = 0, lp_r = 0, len_c = 0, len_r = 0, nll = 0;
    for (int p = 0; p < P; p++) {
        pair_in q = pair_sums(in, p);
        if (!isfinite(q.pc) || !isfinite(q.pr) || !isfinite(q.rc) || !isfinite(q.rr)) return AL_ENAN;
        double gc, gr, nll_p;
        double l = pair_loss(s, &q, nl, dnl, &gc, &gr, &nll_p);
        if (adpc) {
            gc += adpc[p];
            gr += adpr[p];
        }
        if (!isfinite(l) || !isfinite(gc) || !isfinite(gr)) return AL_ENAN;
        loss += l;
        double c = b * (q.pc - q.rc), r = b * (q.pr - q.rr);
        rw_c += c;
        rw_r += r;
        accu += c > r ? 1.0 : 0.0;
        lp_c += q.pc;
        lp_r += q.pr;
        len_c += q.nc;
        len_r += q.nr;
        nll += nll_p;
    }
    loss *= inv;
    if (!isfinite(loss)) return AL_ENAN;

    double ntok = len_c + len_r, ent = 0.0;
    if (in->entropy) {
        if (!(in->norm_tokens > 0) && ntok > 0) return AL_EINVAL;
        for (int r = 0; r < in->R; r++) ent += al_seq_masked_sum(in, in->entropy, r);
    }

    /* Pass 2: gradients (the same deterministic arithmetic as pass 1). */
    if (out && out->dlogp) {
        for (int p = 0; p < P; p++) {
            pair_in q = pair_sums(in, p);
            double gc, gr, nll_p;
            (void)pair_loss(s, &q, nl, dnl, &gc, &gr, &nll_p);
            if (adpc) {
                gc += adpc[p];
                gr += adpr[p];
            }
            al_seq_logprob_backward(out->dlogp, in, p, gc * inv);
            al_seq_logprob_backward(out->dlogp, in, P + p, gr * inv);
        }
    }

    st->loss += loss;
    st->num_tokens += ntok;
    al_pair_stats ps = {rw_c, rw_r, accu, lp_c, lp_r, len_c, len_r};
    al_stats_add_pairs(st, &ps, inv);
    if (s->has_nll) al_stats_add(st, "nll_loss", nll * inv);
    if (in->entropy) al_stats_add(st, "entropy", ntok > 0 ? ent / in->norm_tokens : 0.0);
    return AL_OK;
}

const al_objective_ops al_obj_dpo = {
    .name = "dpo",
    .batch = AL_BATCH_PAIR,
    .needs_ref = 1,
    .needs_values = 0,
    .needs_lm = 1,
    .loss_types = k_names,
    .create = dpo_create,
    .loss = dpo_loss,
    .destroy = dpo_destroy,
};

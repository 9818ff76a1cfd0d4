/* Step statistics and the helpers every objective file shares: masked
 * per-row sums of token log-probs over the target tokens (and their
 * backward), and log-sigmoid, sigmoid and log(1 - e^x) computed without
 * overflow. The registry that finds the objective files is objectives.c,
 * apart so that the objectives and the registry do not call each other.
 * Pure functions; no allocation, no globals; safe to call from any thread. */
#include "objective.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../dist/dist.h"

void al_stats_add(al_step_stats *st, const char *name, double value) {
    char key[sizeof st->m[0].name] = {0}; /* whole name zero-filled: st stays memcmp-able */
    snprintf(key, sizeof key, "%s", name);
    for (int i = 0; i < st->n; i++) {
        if (strcmp(st->m[i].name, key) == 0) {
            st->m[i].value += value;
            return;
        }
    }
    if (st->n >= AL_MAX_METRICS) return;
    memcpy(st->m[st->n].name, key, sizeof key);
    st->m[st->n].value = value;
    st->n++;
}

void al_stats_add_pairs(al_step_stats *st, const al_pair_stats *ps, double inv) {
    al_stats_add(st, "rewards/chosen", ps->rw_c * inv);
    al_stats_add(st, "rewards/rejected", ps->rw_r * inv);
    al_stats_add(st, "rewards/accuracies", ps->accu * inv);
    al_stats_add(st, "rewards/margins", (ps->rw_c - ps->rw_r) * inv);
    al_stats_add(st, "logps/chosen", ps->lp_c * inv);
    al_stats_add(st, "logps/rejected", ps->lp_r * inv);
    al_stats_add(st, "lengths/chosen", ps->len_c * inv);
    al_stats_add(st, "lengths/rejected", ps->len_r * inv);
}

void al_pair_stats_add(al_pair_stats *ps, const al_obj_in *in, int p, double b, double ac,
                       double ar) {
    ps->rw_c += b * ac;
    ps->rw_r += b * ar;
    ps->accu += b * ac > b * ar ? 1.0 : 0.0;
    ps->lp_c += ac;
    ps->lp_r += ar;
    ps->len_c += al_seq_len(in, p);
    ps->len_r += al_seq_len(in, in->n_pairs + p);
}

int al_pairs_check(const al_obj_in *in, int needs_ref) {
    const int P = in->n_pairs;
    if (P < 0 || in->R != 2 * P) return AL_ESHAPE;
    if (P == 0) return AL_OK;
    if (in->T <= 0 || !in->targets || !in->logp || (needs_ref && !in->ref_logp)) return AL_ESHAPE;
    if (!(in->norm_rows > 0)) return AL_EINVAL;
    return AL_OK;
}

void al_pair_avg_logps(const al_obj_in *in, int p, double *ac, double *ar, int *nc, int *nr) {
    const int P = in->n_pairs;
    int c = al_seq_len(in, p), r = al_seq_len(in, P + p);
    *nc = c > 1 ? c : 1;
    *nr = r > 1 ? r : 1;
    *ac = al_seq_logprob_sum(in, in->logp, p) / *nc;
    *ar = al_seq_logprob_sum(in, in->logp, P + p) / *nr;
}

double al_stats_get(const al_step_stats *st, const char *name) {
    char key[sizeof st->m[0].name];
    snprintf(key, sizeof key, "%s", name);
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->m[i].name, key) == 0) return st->m[i].value;
    return NAN;
}

/* ---- scalar functions ---------------------------------------------------- */

double al_logsigmoid(double x) {
    /* x >= 0: -log(1 + e^-x); x < 0: x - log(1 + e^x). Neither exp overflows.
     * NaN fails the comparison and propagates through the second branch. */
    if (x >= 0) return -log1p(exp(-x));
    return x - log1p(exp(x));
}

double al_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

double al_log1mexp(double x) {
    /* Maechler (2012): log(-expm1(x)) near 0, log1p(-exp(x)) far below. */
    if (x > -0.693147180559945309417) return log(-expm1(x));
    return log1p(-exp(x));
}

/* ---- masked per-row sums ------------------------------------------------- */

/* Whether position i is scored for the per-row helpers. */
static int scored(const al_obj_in *in, size_t i) {
    return in->targets[i] >= 0 && (!in->completion || in->completion[i]);
}

double al_seq_logprob_sum(const al_obj_in *in, const float *x, int r) {
    const size_t off = (size_t)r * (size_t)in->T;
    double s = 0.0;
    for (int t = 0; t < in->T; t++) {
        size_t i = off + (size_t)t;
        if (scored(in, i)) s += (in->weight ? (double)in->weight[i] : 1.0) * (double)x[i];
    }
    return s;
}

double al_seq_masked_sum(const al_obj_in *in, const float *x, int r) {
    const size_t off = (size_t)r * (size_t)in->T;
    double s = 0.0;
    for (int t = 0; t < in->T; t++)
        if (scored(in, off + (size_t)t)) s += (double)x[off + (size_t)t];
    return s;
}

int al_seq_len(const al_obj_in *in, int r) {
    const size_t off = (size_t)r * (size_t)in->T;
    int n = 0;
    for (int t = 0; t < in->T; t++) n += scored(in, off + (size_t)t);
    return n;
}

void al_seq_logprob_backward(float *d, const al_obj_in *in, int r, double g) {
    if (!d) return;
    const size_t off = (size_t)r * (size_t)in->T;
    for (int t = 0; t < in->T; t++) {
        size_t i = off + (size_t)t;
        if (!scored(in, i)) continue;
        double w = in->weight ? (double)in->weight[i] : 1.0;
        d[i] += (float)(g * w);
    }
}

/* Position i of a chosen row counts for the NLL. */
static int nll_token(const al_obj_in *in, int full, size_t i) {
    return full ? in->targets[i] >= 0 : scored(in, i);
}

double al_chosen_nll(const al_obj_in *in, int full, int *ntok) {
    double s = 0.0;
    int n = 0;
    for (size_t i = 0; i < (size_t)in->n_pairs * (size_t)in->T; i++)
        if (nll_token(in, full, i)) {
            s -= (in->weight ? (double)in->weight[i] : 1.0) * (double)in->logp[i];
            n++;
        }
    *ntok = n;
    return n > 0 ? s / n : 0.0;
}

void al_chosen_nll_backward(float *d, const al_obj_in *in, int full, double g) {
    if (!d) return;
    int n = 0;
    for (size_t i = 0; i < (size_t)in->n_pairs * (size_t)in->T; i++) n += nll_token(in, full, i);
    if (n == 0) return;
    for (size_t i = 0; i < (size_t)in->n_pairs * (size_t)in->T; i++)
        if (nll_token(in, full, i)) d[i] += (float)(-g * (in->weight ? (double)in->weight[i] : 1.0) / n);
}

/* ---- hyper-parameter checks ---------------------------------------------- */

int al_hp_check_finite(double v, const char *field, al_error *err) {
    if (!isfinite(v)) return AL_FAIL(err, AL_EINVAL, "%s", "must be a finite number (got %g)", field, v);
    return AL_OK;
}

int al_hp_check_positive(double v, const char *field, al_error *err) {
    if (!isfinite(v) || !(v > 0))
        return AL_FAIL(err, AL_EINVAL, "%s", "must be a finite number > 0 (got %g)", field, v);
    return AL_OK;
}

int al_hp_check_nonneg(double v, const char *field, al_error *err) {
    if (!isfinite(v) || !(v >= 0))
        return AL_FAIL(err, AL_EINVAL, "%s", "must be a finite number >= 0 (got %g)", field, v);
    return AL_OK;
}

void al_stats_dist_sum(al_step_stats *st) {
    int size = al_dist_size();
    if (size <= 1) return;
    al_step_stats *all = malloc((size_t)size * sizeof *all);
    AL_ASSERT(all);
    al_dist_allgather(st, sizeof *st, all);
    al_step_stats u;
    memset(&u, 0, sizeof u);
    for (int r = 0; r < size; r++)
        for (int i = 0; i < all[r].n && i < AL_MAX_METRICS; i++) al_stats_add(&u, all[r].m[i].name, 0);
    free(all);
    double v[AL_MAX_METRICS + 2] = {st->loss, st->num_tokens};
    for (int i = 0; i < u.n; i++) /* 0 where this rank has none of it */
        for (int k = 0; k < st->n; k++)
            if (!strcmp(st->m[k].name, u.m[i].name)) v[i + 2] = st->m[k].value;
    al_dist_sum(v, u.n + 2);
    st->loss = v[0];
    st->num_tokens = v[1];
    for (int i = 0; i < u.n; i++) u.m[i].value = v[i + 2];
    st->n = u.n;
    memcpy(st->m, u.m, sizeof u.m);
}

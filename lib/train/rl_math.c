/* The per-token arithmetic of RL from feedback (see rl.h): KL estimators,
 * whitening, PPO's token rewards and GAE, GRPO's group advantages, RLOO's
 * leave-one-out baseline, the adaptive KL controller and distinct-2. Pure
 * functions, double accumulation, no allocation. Sources: TRL's
 * trl/experimental/ppo/ppo_trainer.py (= v0.11's PPOv2Trainer) for the
 * rewards, GAE and whitening; trl/trainer/grpo_trainer.py (main) for the
 * group advantages; rloo_trainer.py for the baseline; TRL 0.x's
 * AdaptiveKLController (Ziegler et al. 2019) for the controller. */
#include "rl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../dist/dist.h"

double al_rl_kl(double logp, double ref, int estimator) {
    double logr = ref - logp;
    if (estimator == AL_KL_K3) return exp(logr) - 1 - logr;
    return -logr;
}

/* global: the mean and variance over every rank's positions (lib/dist). */
static void whiten(float *x, const int32_t *targets, int R, int T, int shift_mean, int global) {
    size_t N = (size_t)R * (size_t)T;
    double sn[2] = {0, 0};
    for (size_t i = 0; i < N; i++)
        if (targets[i] >= 0) {
            sn[0] += x[i];
            sn[1]++;
        }
    if (global) al_dist_sum(sn, 2);
    double n = sn[1];
    if (n < 2) return;
    double mean = sn[0] / n, var = 0;
    for (size_t i = 0; i < N; i++)
        if (targets[i] >= 0) var += ((double)x[i] - mean) * ((double)x[i] - mean);
    if (global) al_dist_sum(&var, 1);
    var = var / n * (n / (n - 1)); /* TRL's masked_var(unbiased=True) */
    double inv = 1.0 / sqrt(var + 1e-8);
    for (size_t i = 0; i < N; i++)
        if (targets[i] >= 0) {
            double w = ((double)x[i] - mean) * inv;
            x[i] = (float)(shift_mean ? w : w + mean);
        }
}

void al_rl_whiten(float *x, const int32_t *targets, int R, int T, int shift_mean) {
    whiten(x, targets, R, T, shift_mean, 0);
}

void al_rl_whiten_global(float *x, const int32_t *targets, int R, int T, int shift_mean) {
    whiten(x, targets, R, T, shift_mean, 1);
}

void al_rl_token_rewards(float *rewards, float *kl_out, const float *logp, const float *ref,
                         const int32_t *targets, const float *scores, int R, int T, double kl_coef,
                         int estimator) {
    for (int r = 0; r < R; r++) {
        int last = -1;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + (size_t)t;
            if (targets[i] < 0) {
                rewards[i] = 0;
                if (kl_out) kl_out[i] = 0;
                continue;
            }
            double kl = ref ? al_rl_kl(logp[i], ref[i], estimator) : 0.0;
            if (kl_out) kl_out[i] = (float)kl;
            rewards[i] = (float)(-kl_coef * kl);
            last = t;
        }
        if (last >= 0) rewards[(size_t)r * T + (size_t)last] += scores[r];
    }
}

void al_rl_gae(float *adv, float *ret, const float *rewards, const float *values, const int32_t *targets,
               int R, int T, double gamma, double lam) {
    for (int r = 0; r < R; r++) {
        double last = 0, next_v = 0;
        for (int t = T - 1; t >= 0; t--) {
            size_t i = (size_t)r * T + (size_t)t;
            if (targets[i] < 0) {
                adv[i] = 0;
                ret[i] = 0;
                continue;
            }
            double v = values[i];
            double delta = rewards[i] + gamma * next_v - v;
            last = delta + gamma * lam * last;
            adv[i] = (float)last;
            ret[i] = (float)(last + v);
            next_v = v;
        }
    }
}

static int group_adv(float *adv, const float *rewards, int n_groups, int G, int scale, int global) {
    int n = n_groups * G, zero = 0;
    double bstd = 0;
    if (scale == AL_SCALE_BATCH) {
        double sn[2] = {0, (double)n}, ss = 0;
        for (int i = 0; i < n; i++) sn[0] += rewards[i];
        if (global) al_dist_sum(sn, 2);
        double m = sn[1] > 0 ? sn[0] / sn[1] : 0;
        for (int i = 0; i < n; i++) ss += (rewards[i] - m) * (rewards[i] - m);
        if (global) al_dist_sum(&ss, 1);
        if (sn[1] > 1) bstd = sqrt(ss / (sn[1] - 1));
    }
    for (int g = 0; g < n_groups; g++) {
        const float *r = rewards + (size_t)g * G;
        double s = 0, ss = 0;
        for (int k = 0; k < G; k++) s += r[k];
        double m = s / G;
        for (int k = 0; k < G; k++) ss += (r[k] - m) * (r[k] - m);
        double std = G > 1 ? sqrt(ss / (G - 1)) : 0; /* torch.std: unbiased */
        if (std < 1e-6) zero++;
        double div = scale == AL_SCALE_GROUP ? std + 1e-4 : scale == AL_SCALE_BATCH ? bstd + 1e-4 : 1.0;
        for (int k = 0; k < G; k++) adv[(size_t)g * G + k] = (float)((r[k] - m) / div);
    }
    return zero;
}

int al_rl_group_adv(float *adv, const float *rewards, int n_groups, int G, int scale) {
    return group_adv(adv, rewards, n_groups, G, scale, 0);
}

int al_rl_group_adv_global(float *adv, const float *rewards, int n_groups, int G, int scale) {
    return group_adv(adv, rewards, n_groups, G, scale, 1);
}

void al_rl_rloo_adv(float *adv, const float *rewards, int n_groups, int G) {
    for (int g = 0; g < n_groups; g++) {
        const float *r = rewards + (size_t)g * G;
        double s = 0;
        for (int k = 0; k < G; k++) s += r[k];
        for (int k = 0; k < G; k++) adv[(size_t)g * G + k] = (float)(r[k] - (s - r[k]) / (G - 1));
    }
}

double al_rl_adaptive_kl(double coef, double kl, double target, double horizon, long n_steps) {
    double e = kl / target - 1;
    if (e < -0.2) e = -0.2;
    if (e > 0.2) e = 0.2;
    return coef * (1 + e * (double)n_steps / horizon);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

double al_rl_distinct2(const int32_t *ids, int n, uint64_t *scratch) {
    if (n < 2) return 1.0;
    int m = n - 1;
    for (int i = 0; i < m; i++) scratch[i] = ((uint64_t)(uint32_t)ids[i] << 32) | (uint32_t)ids[i + 1];
    qsort(scratch, (size_t)m, sizeof *scratch, cmp_u64);
    int d = 1;
    for (int i = 1; i < m; i++) d += scratch[i] != scratch[i - 1];
    return (double)d / m;
}

/* RL learning on the built-in addition2 task, over T_SEEDS seeds, measured
 * on 2000 held-out sums (tests/t_learn.h). Every run starts from the
 * partly trained SFT model of t_learn_start (tests/t_learn.h: constant
 * learning rate, the first checkpoint whose training-split exact match
 * reaches 0.5; held-out 0.36-0.48 over sixteen runs) and takes the task's
 * RL recipe for what it leaves out (lib/train/job.c: the defaults a user
 * gets on a built-in task, so this file certifies them):
 *
 *   1. GRPO on the verifiable reward gains held-out exact match;
 *   2. the same with the reward's sign flipped (which flips every
 *      advantage) loses it: a broken advantage sign fails this file;
 *   3. reward hacking: PPO against a weak reward model — 300 steps of
 *      pairs whose wrong answer is always the right sum with one digit
 *      changed, so it never saw a wrong length, a carry slip or another
 *      sum (about 0.78 pair accuracy on held-out pairs of every kind) —
 *      raises the reward model's score of its samples while held-out
 *      exact match falls;
 *   4. the mitigation: the same PPO against a reward model trained on the
 *      task's pairs (every kind of mistake) and 8x as many (4000 steps)
 *      gains held-out exact match on every seed.
 *
 * The figures the bounds rest on: seeds 1-8 on two floating-point paths,
 * one thread each, bf16 mixed precision (the default on this CPU), the
 * 2-core AVX-512 machine, 2026-12-07 (`ALIGND_THREADS=1
 * ./tests/test_rl_learning SEED`, 17 passed on each of the sixteen runs):
 * the -march=native Release build (N) and the portable RelWithDebInfo
 * build the suite runs (P):
 *                          seed   1      2      3      4      5      6      7      8
 *   the start: steps        N    550    650    450    700   1350   1550    550    750
 *              held-out EM  N   0.449  0.412  0.431  0.414  0.396  0.398  0.416  0.429
 *              steps        P    450    750    550    650   1350   1500    600    700
 *              held-out EM  P   0.359  0.476  0.455  0.473  0.376  0.408  0.420  0.401
 *   GRPO                    N  +0.210 +0.275 +0.149 +0.173 +0.144 +0.211 +0.119 +0.169
 *                           P  +0.159 +0.244 +0.176 +0.186 +0.248 +0.148 +0.129 +0.199
 *   its sign flipped        N  -0.424 -0.405 -0.421 -0.384 -0.346 -0.368 -0.397 -0.424
 *                           P  -0.337 -0.465 -0.441 -0.456 -0.353 -0.328 -0.369 -0.368
 *   weak RM, pair accuracy  N   0.765  0.695  0.685  0.755  0.720  0.830  0.760  0.825
 *                           P   0.700  0.865  0.645  0.830  0.830  0.850  0.805  0.845
 *   PPO against it: score   N  +0.504 +0.384 +0.584 +0.377 +0.312 +0.210 +0.290 +0.380
 *                           P  +0.387 +0.427 +0.357 +0.429 +0.222 +0.326 +0.386 +0.273
 *     held-out change       N  -0.244 -0.254 -0.321 -0.202 -0.214 -0.088 -0.256 -0.129
 *                           P  -0.280 -0.201 -0.354 -0.290 -0.143 -0.106 -0.153 -0.172
 *   strong RM, pair acc.    N   1.000  0.960  0.970  0.985  0.975  0.980  0.945  0.960
 *                           P   0.970  0.925  0.945  0.965  0.960  0.975  0.975  0.940
 *   PPO against it          N  +0.233 +0.268 +0.153 +0.287 +0.306 +0.243 +0.146 +0.194
 *                           P  +0.359 +0.188 +0.226 +0.163 +0.364 +0.290 +0.221 +0.272
 * Over the sixteen (mean, standard deviation, worst): GRPO +0.184, 0.045,
 * +0.119; sign flipped -0.393, 0.043, -0.328; weak pair accuracy 0.775,
 * 0.069, 0.645; hacked score +0.365, 0.097, +0.210; hacked held-out
 * -0.213, 0.078, -0.088; strong pair accuracy 0.964, 0.019, 0.925; its PPO
 * +0.245, 0.067, +0.146. Each bound sits below (above) the worst run by
 * 0.7-1.4 deviations, 2.3-2.9 from the mean: GRPO >= +0.08,
 * weak pair accuracy >= 0.60, hacked score change >= +0.10 (it was +0.20,
 * set from three seeds: two of these sixteen came within 0.02 of it),
 * hacked held-out change <= 0, strong PPO >= +0.05; the strong reward
 * model's accuracy >= 0.85.
 * Why the start is chosen by training accuracy: with a fixed 500 SFT steps
 * (until 2026-12-07) the start's held-out exact match ranged 0.14-0.45
 * over these seeds (bench/learn_sweep.py sft 1,...,8 500: 0.355 0.450
 * 0.406 0.182 0.223 0.141 0.454 0.214 on the native build), because the
 * tiny model learns addition in a sharp transition whose step differs by
 * seed and path; from the weak starts GRPO gained +0.01 to +0.06 (seeds
 * 4-6, on both builds), below its bound, and the strong model's PPO and
 * the hacked run's held-out change failed on some of them too.
 *
 * How the recipe was reached (the 500-step starts of seeds 1-3, so the
 * figures are older than the table above; bench/learn_sweep.py and
 * BENCHMARKS.md "Learning"):
 *   GRPO, the recipe (lr 1e-4, 256 completions, clip 10)  +0.358 +0.194 +0.339
 *     (clip 1: +0.34 +0.21 +0.33; 64 completions at lr 3e-4: +0.17 +0.01 +0.15)
 *   RLOO, the recipe                                       +0.340 +0.205 +0.336
 *   PPO, strong reward model, 128 prompts a step           +0.058 +0.199 +0.337
 *                             256 prompts (the recipe)     +0.171 +0.237 +0.396
 * Mitigations of the reward hacking measured against a weak model and not
 * holding on every seed: kl_coef 0.5: +0.049 +0.073 +0.000; kl_coef 0.2:
 * +0.013 -0.033 -0.047; the minimum of three weak models (each its own data
 * and seed): -0.088 -0.037 -0.094, with kl_coef 0.2: +0.010 +0.014 -0.018.
 * The weak model: trained on the task's own pairs (every kind of mistake,
 * 500 steps) its hacking margin was thinner than the spread over seeds and
 * paths (held-out change +0.007 on one run), so it is weak by construction
 * (the task's "mistakes": "one_digit", lib/tasks/tasks.h) and trains 300
 * steps: with 500 it reached 0.815-0.890 pair accuracy and PPO against it
 * lost only -0.037; with 200 its accuracy fell to 0.665-0.790 (too near
 * 0.6); 800 PPO steps against the 500-step model did not help.
 * ctest runs each seed as its own test with one thread (`test_rl_learning
 * SEED`: test_rl_learning_seed1..3), so that ctest -j2 spreads them over
 * the cores; a seed takes 2-3 minutes of CPU (PPO is most of it: four
 * epochs of policy and critic updates a step).
 * Labelled slow. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compute/pool.h"
#include "t_learn.h"
#include "train/trainer.h"

enum { MAXS = 2048 };

typedef struct series {
    double reward[MAXS], kl[MAXS], verifiable[MAXS], scores[MAXS];
    int n;
    double eval_accuracy;
} series;

static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    (void)epoch;
    series *s = ud;
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].name, "eval_accuracy")) s->eval_accuracy = m[i].value;
    if (step < 1 || step > MAXS) return; /* step 0 is the start: kept apart */
    int k = (int)step - 1;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].name, "reward")) s->reward[k] = m[i].value;
        if (!strcmp(m[i].name, "objective/kl")) s->kl[k] = m[i].value;
        if (!strcmp(m[i].name, "objective/scores")) s->scores[k] = m[i].value;
        if (!strcmp(m[i].name, "rewards/verifiable/mean")) s->verifiable[k] = m[i].value;
    }
    if (k + 1 > s->n) s->n = k + 1;
}

static char g_err[AL_ERRLEN];

static int train(const char *json, series *s) {
    memset(s, 0, sizeof *s);
    al_train_cb cb = {.log = on_log, .ud = s};
    return t_train_json(json, NULL, &cb, NULL, g_err);
}

/* mean of x over the first (late = 0) or the last (late = 1) fifth */
static double fifth(const double *x, int n, int late) {
    int w = n / 5 > 0 ? n / 5 : 1, a = late ? n - w : 0;
    double s = 0;
    for (int i = a; i < a + w; i++) s += x[i];
    return s / w;
}

enum { GRPO_STEPS = 400, FLIP_STEPS = 100, PPO_STEPS = 400, RM_WEAK_STEPS = 300, RM_STRONG_STEPS = 4000,
       GRPO_ROWS = 16000, PPO_ROWS = 32000 };
/* the bounds, from the figures in the header */
#define GRPO_MIN 0.08
#define RM_WEAK_MIN 0.6
#define HACK_SCORE_MIN 0.1
#define HACK_EM_MAX 0.0
#define RM_STRONG_MIN 0.85
#define MITIG_MIN 0.05

static const char *RL = "{\"method\":\"%s\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":%d,\"seed\":%d},"
                        "\"reward\":%s,\"hyperparameters\":{\"max_steps\":%d,\"logging_steps\":1,"
                        "\"max_completion_length\":6,\"save_steps\":0},\"output_dir\":\"%s\",\"seed\":%d}";

/* A reward model on the task's (right, wrong) pairs, the wrong answers of
 * the kind given ("mistakes"), its scores centred
 * (center_rewards_coefficient: PPO's critic need not learn a per-prompt
 * offset first); eval_accuracy is on pairs of the held-out split, of every
 * kind. */
static const char *RM =
    "{\"method\":\"reward_model\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":80000,"
    "\"seed\":%d,\"mistakes\":\"%s\"},\"hyperparameters\":{\"learning_rate\":0.001,\"batch_size\":64,\"max_steps\":%d,"
    "\"center_rewards_coefficient\":0.01,\"lr_scheduler_type\":\"cosine\",\"warmup_ratio\":0.05,"
    "\"logging_steps\":%d,\"max_length\":24,\"save_steps\":0},\"output_dir\":\"%s\",\"seed\":%d}";

static double g_t0;
static void phase(int seed, const char *what) {
    double t = al_now();
    printf("seed %d: %-28s %6.1f s\n", seed, what, t - g_t0);
    fflush(stdout);
    g_t0 = t;
}

int main(int argc, char **argv) {
    al_pool_init(t_learn_threads());
    const char *tmp = t_tmpdir();
    int seeds[T_SEEDS], nseeds = t_learn_seeds(argc, argv, seeds);
    double grpo[T_SEEDS], flipped[T_SEEDS], flipped_v[T_SEEDS], rm_weak[T_SEEDS], hack_score[T_SEEDS],
        hack_em[T_SEEDS], rm_strong[T_SEEDS], mitig[T_SEEDS];
    char base[1200], sft[1200], start[1300], rm[1200], out[1200], rw[1400], json[8192];
    series s;
    g_t0 = al_now();
    for (int k = 0; k < nseeds; k++) {
        int seed = seeds[k];
        snprintf(base, sizeof base, "%s/base%d", tmp, seed);
        snprintf(out, sizeof out, "%s/out%d", tmp, seed);
        T_OK(t_learn_base(base, (uint64_t)seed, g_err));
        snprintf(sft, sizeof sft, "%s/sft%d", tmp, seed);
        long start_steps = 0;
        T_OK(t_learn_start(base, seed, sft, tmp, start, sizeof start, &start_steps, g_err));
        phase(seed, "SFT start");
        double em0 = t_heldout_em(start, "addition2", tmp);
        phase(seed, "held-out eval");
        printf("seed %d: the SFT start (%ld steps): held-out exact match %.3f\n", seed, start_steps, em0);

        /* 1. GRPO, verifiable reward, the recipe's defaults */
        snprintf(json, sizeof json, RL, "grpo", start, GRPO_ROWS, 3 + seed, "{\"verifiable\":1.0}", GRPO_STEPS, out,
                 seed);
        T_OK(train(json, &s));
        phase(seed, "GRPO");
        T_EQ_INT(s.n, GRPO_STEPS);
        grpo[k] = t_heldout_em(out, "addition2", tmp) - em0;
        phase(seed, "held-out eval");
        printf("seed %d: grpo reward %.3f -> %.3f, kl %.3f at the end\n", seed, fifth(s.reward, s.n, 0),
               fifth(s.reward, s.n, 1), fifth(s.kl, s.n, 1));

        /* 2. the sign flipped */
        snprintf(json, sizeof json, RL, "grpo", start, GRPO_ROWS, 3 + seed, "{\"verifiable\":-1.0}", FLIP_STEPS, out,
                 seed);
        T_OK(train(json, &s));
        phase(seed, "GRPO, sign flipped");
        flipped[k] = t_heldout_em(out, "addition2", tmp) - em0;
        phase(seed, "held-out eval");
        flipped_v[k] = fifth(s.verifiable, s.n, 1) - fifth(s.verifiable, s.n, 0);

        /* 3. PPO against a weak reward model (300 steps of one-digit-change
         * pairs, measured on held-out pairs of every kind): its score of the
         * samples against their true exact match */
        snprintf(rm, sizeof rm, "%s/rm%d_weak", tmp, seed);
        snprintf(json, sizeof json, RM, start, 100 + seed, "one_digit", RM_WEAK_STEPS, RM_WEAK_STEPS, rm, seed);
        T_OK(train(json, &s));
        phase(seed, "weak RM");
        rm_weak[k] = s.eval_accuracy;
        snprintf(rw, sizeof rw, "{\"reward_model\":\"%s\"}", rm);
        snprintf(json, sizeof json, RL, "ppo", start, PPO_ROWS, 3 + seed, rw, PPO_STEPS, out, seed);
        T_OK(train(json, &s));
        phase(seed, "PPO, weak RM");
        hack_em[k] = t_heldout_em(out, "addition2", tmp) - em0;
        phase(seed, "held-out eval");
        hack_score[k] = fifth(s.scores, s.n, 1) - fifth(s.scores, s.n, 0);
        printf("seed %d: ppo, weak reward model (pair accuracy %.3f): its score %+.3f -> %+.3f, samples right "
               "%.3f -> %.3f\n", seed, rm_weak[k], fifth(s.scores, s.n, 0), fifth(s.scores, s.n, 1),
               fifth(s.verifiable, s.n, 0), fifth(s.verifiable, s.n, 1));

        /* 4. the mitigation: the reward model trained on the task's pairs
         * (every kind of mistake), 8x as many */
        snprintf(rm, sizeof rm, "%s/rm%d_strong", tmp, seed);
        snprintf(json, sizeof json, RM, start, 100 + seed, "any", RM_STRONG_STEPS, RM_STRONG_STEPS, rm, seed);
        T_OK(train(json, &s));
        phase(seed, "strong RM");
        rm_strong[k] = s.eval_accuracy;
        snprintf(rw, sizeof rw, "{\"reward_model\":\"%s\"}", rm);
        snprintf(json, sizeof json, RL, "ppo", start, PPO_ROWS, 3 + seed, rw, PPO_STEPS, out, seed);
        T_OK(train(json, &s));
        phase(seed, "PPO, strong RM");
        mitig[k] = t_heldout_em(out, "addition2", tmp) - em0;
        phase(seed, "held-out eval");
        printf("seed %d: ppo, strong reward model (pair accuracy %.3f): its score %+.3f -> %+.3f, samples right "
               "%.3f -> %.3f\n", seed, rm_strong[k], fifth(s.scores, s.n, 0), fifth(s.scores, s.n, 1),
               fifth(s.verifiable, s.n, 0), fifth(s.verifiable, s.n, 1));
    }
    t_claim_min("GRPO: held-out exact match change", grpo, GRPO_MIN);
    t_claim_max("GRPO, sign flipped: exact match change", flipped, 0.0);
    t_claim_max("GRPO, sign flipped: samples' exact match", flipped_v, 0.0);
    t_claim_min("weak reward model: held-out pair accuracy", rm_weak, RM_WEAK_MIN);
    t_claim_min("hacked PPO: reward-model score change", hack_score, HACK_SCORE_MIN);
    t_claim_max("hacked PPO: held-out exact match change", hack_em, HACK_EM_MAX);
    t_claim_min("strong reward model: held-out pair accuracy", rm_strong, RM_STRONG_MIN);
    t_claim_min("PPO, strong reward model: held-out EM change", mitig, MITIG_MIN);
    return t_done();
}

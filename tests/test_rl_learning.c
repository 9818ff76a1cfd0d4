/* RL learning on the built-in addition2 task, over T_SEEDS seeds, measured
 * on 2000 held-out sums (tests/t_learn.h). Every run starts from the demo's
 * partly trained SFT model (500 steps, constant learning rate: a model left
 * in a cosine schedule's sharp minimum loses accuracy at any RL step size)
 * and takes the task's RL recipe for what it leaves out (lib/train/job.c:
 * the defaults a user gets on a built-in task, so this file certifies them):
 *
 *   1. GRPO on the verifiable reward gains held-out exact match;
 *   2. the same with the reward's sign flipped (which flips every
 *      advantage) loses it: a broken advantage sign fails this file;
 *   3. reward hacking: PPO against a weak reward model — 300 steps of
 *      pairs whose wrong answer is always the right sum with one digit
 *      changed, so it never saw a wrong length, a carry slip or another
 *      sum (about 0.73 pair accuracy on held-out pairs of every kind) —
 *      raises the reward model's score of its samples while held-out
 *      exact match falls;
 *   4. the mitigation: the same PPO against a reward model trained on the
 *      task's pairs (every kind of mistake) and 8x as many (4000 steps)
 *      gains held-out exact match on every seed.
 *
 * Measured with these settings, seeds 1 2 3, held-out gains over the start
 * (bench/learn_sweep.py, alignd train with 1 thread, the -march=native build,
 * 2-core AVX-512 machine, 2026-12-06):
 *   GRPO, the recipe (lr 1e-4, 256 completions, clip 10)  +0.358 +0.194 +0.339
 *     (clip 1: +0.34 +0.21 +0.33; 64 completions at lr 3e-4: +0.17 +0.01 +0.15)
 *   RLOO, the recipe                                       +0.340 +0.205 +0.336
 *   PPO, weak reward model (128 prompts a step, clip 10)   -0.147 -0.059 -0.216
 *     its score of the samples +0.7 -> +1.2 while their exact match stays
 *     0.30 -> 0.28 / 0.32 -> 0.45 / 0.30 -> 0.27
 *   PPO, weak reward model, 256 prompts (the recipe)       -0.149 -0.142 -0.232
 *     its score +0.92 -> +1.33 / +0.74 -> +1.95 / +0.83 -> +1.20, the
 *     samples right 0.32 -> 0.38 / 0.36 -> 0.36 / 0.30 -> 0.30
 *   PPO, strong reward model (0.94-0.99 pair accuracy),
 *     128 prompts a step                                   +0.058 +0.199 +0.337
 *     256 prompts a step (the recipe)                      +0.171 +0.237 +0.396
 * Mitigations of the seed document measured against the weak model and not
 * holding on every seed: kl_coef 0.5: +0.049 +0.073 +0.000; kl_coef 0.2:
 * +0.013 -0.033 -0.047; the minimum of three weak models (each its own data
 * and seed): -0.088 -0.037 -0.094, with kl_coef 0.2: +0.010 +0.014 -0.018.
 * This test on its own path (2 threads, the portable release build, a
 * quiet 2-core AVX-512 machine, 2026-12-06; 35 passed in 15 min 36 s wall,
 * 1519 s of user CPU: `/usr/bin/time -v ./tests/test_rl_learning`),
 * seeds 1 2 3 from starts at 0.378 0.450 0.361:
 *   GRPO                                   +0.338 +0.170 +0.335
 *   its sign flipped (100 steps)           -0.368 -0.432 -0.323
 *   weak reward model, pair accuracy        0.840  0.830  0.735
 *   PPO against it: score change           +0.335 +0.507 +0.379
 *                   held-out change        -0.122 -0.170 -0.098
 *   strong reward model, pair accuracy      0.980  0.965  0.980
 *   PPO against it: held-out change        +0.262 +0.217 +0.351
 * The same in bf16 mixed precision (ALIGND_MIXED_PRECISION unset: auto, bf16
 * on this CPU; 34 passed, 1 failed, 67 min wall and 2168 s of user CPU on
 * the machine shared at load 12-18), starts 0.427 0.377 0.434:
 *   GRPO                                   +0.254 +0.228 +0.282
 *   its sign flipped (100 steps)           -0.379 -0.371 -0.401
 *   weak reward model, pair accuracy        0.775  0.870  0.730
 *   PPO against it: score change           +0.373 +0.701 +0.345
 *                   held-out change        -0.144 +0.007 -0.230  (seed 2 fails)
 *   strong reward model, pair accuracy      1.000  0.980  0.980
 *   PPO against it: held-out change        +0.361 +0.314 +0.303
 * That weak model was trained on the task's own pairs (every kind of
 * mistake, 500 steps), and its hacking margin was thinner than the spread
 * over seeds and paths, so the weak model is now weak by construction
 * (check 3 above: the task's "mistakes": "one_digit", lib/tasks/tasks.h).
 * Check 3's figures with it, 1 thread, the portable release build, seeds
 * 1 2 3 (2026-12-07, main 1e02368 + this change, the other checks skipped
 * in a local copy; `ALIGND_THREADS=1 ALIGND_MIXED_PRECISION=fp32|bf16
 * ./tests/test_rl_learning SEED`):            fp32                  bf16
 *   weak reward model, pair accuracy   0.785 0.785 0.760     0.785 0.750 0.785
 *   PPO against it: score change      +0.666 +0.358 +0.688  +1.337 +0.326 +0.633
 *                   held-out change   -0.094 -0.091 -0.233  -0.324 -0.129 -0.155
 * and with another draw of the one-digit changes (pairs written to a file
 * by the test, the same rows; 2000 held-out pairs):
 *   weak reward model, pair accuracy   0.770 0.755 0.794     0.774 0.840 0.763
 *   PPO against it: score change      +0.688 +0.492 +0.730  +0.445 +0.656 +0.906
 *                   held-out change   -0.203 -0.171 -0.211  -0.184 -0.163 -0.321
 * The twelve held-out changes: mean -0.190, standard deviation 0.075, the
 * largest -0.091: the bound (<= 0) sits 2.5 deviations above the mean.
 * Then rollouts learnt to stop at the template's end of turn and flash
 * attention's bf16 tiles to round as the products do (2026-12-07, main
 * f37f023 + the bf16 tiles): with 500 steps the weak model reached 0.815
 * 0.890 0.865 pair accuracy (bf16, 1 thread) and PPO against the 0.890 one
 * lost only -0.037 (-0.039 in the whole file): thirteen held-out changes
 * over four paths had mean -0.15, sd 0.09. A stronger "weak" model is less
 * hackable, so it now trains 300 steps. Check 3 with 300, seeds 1 2 3,
 * the other checks cut short in a local copy (`ALIGND_THREADS=1
 * [ALIGND_MIXED_PRECISION=fp32] ./tests/test_rl_learning SEED`, portable
 * release build):                          bf16                  fp32
 *   weak reward model, pair accuracy   0.795 0.685 0.730     0.745 0.685 0.715
 *   PPO against it: score change      +0.616 +0.798 +0.276  +0.663 +0.539 +0.436
 *                   held-out change   -0.348 -0.242 -0.239  -0.273 -0.275 -0.238
 * Six held-out changes: mean -0.269, sd 0.043 (bound 0: 6 sd away); pair
 * accuracy mean 0.726, sd 0.042 (bound 0.6: 3 sd); score change mean
 * +0.555, sd 0.18 (bound +0.2: 2 sd). With 200 steps the accuracy fell to
 * 0.665 0.790 0.670 (too near 0.6); 800 PPO steps against the 500-step
 * model did not help (-0.196 -0.037).
 * so the file runs in the default precision (bf16 on this CPU, fp32 where
 * the CPU has no bf16 products), as every other learning test does.
 * ctest runs each seed as its own test with one thread (`test_rl_learning
 * SEED`: test_rl_learning_seed1..3), so that ctest -j2 spreads them over
 * the cores. Seed 1 that way (main d43a89b, `ALIGND_THREADS=1
 * ALIGND_MIXED_PRECISION=fp32|bf16 /usr/bin/time -v ./tests/test_rl_learning
 * 1`, the two side by side, load 8-10), from starts at 0.370 (fp32) and 0.427
 * (bf16):                                   fp32     bf16
 *   GRPO                                   +0.318   +0.260
 *   its sign flipped                       -0.350   -0.358
 *   weak reward model, pair accuracy        0.880    0.770
 *   PPO against it: score change           +0.417   +0.334
 *                   held-out change        -0.134   -0.161
 *   strong reward model, pair accuracy      0.980    0.980
 *   PPO against it: held-out change        +0.353   +0.276
 *   user CPU                                333 s    460 s
 * (PPO is 80 % of it: four epochs of policy and critic updates a step.)
 * Each bound sits below the worst seed by about the spread between seeds
 * (GRPO >= +0.08; the strong model's PPO >= +0.05), the hacked run's bounds
 * on the side of hacking (score up by 0.2 or more, held-out change <= 0).
 * Not every seed holds: seeds 4 and 5 (2026-12-07, the -march=native
 * Release build, bf16, 1 thread; main 1e512a2 and the earlier 6eb2709)
 * start from SFT models at 0.17-0.22 held-out exact match, not the
 * 0.37-0.45 of seeds 1-3, and GRPO then gains +0.011 to +0.062 (below
 * +0.08); 6eb2709's seed 5 also left the hacked run's held-out change at
 * +0.011. Seed 6 on the portable build (main 78eaad6, bf16, 1 thread):
 * start 0.214, GRPO +0.043, the strong model's PPO +0.047 (below +0.05).
 * The claims are measured from starts near 0.4: the SFT start's
 * spread over seeds is the open problem, not the bounds.
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
#define HACK_SCORE_MIN 0.2
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

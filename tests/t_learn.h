/* Learning claims that hold on any machine (tests/test_learning.c,
 * tests/test_rl_learning.c).
 *
 * A different CPU, BLAS kernel, compiler flag or thread count changes the
 * last bits of every product, and after a few hundred steps a run is
 * another seed. So every claim here is measured
 *   - on held-out rows: T_HELDOUT rows of the task's test split, whose
 *     prompts no training job ever draws (lib/tasks/tasks.h), greedy exact
 *     match by an evaluate job;
 *   - over T_SEEDS seeds (model initialisation, data order, sampling), and
 *     asserted on the worst seed, with thresholds set below the worst seed
 *     measured by more than the spread between seeds (each test file's
 *     header gives the figures).
 * ALIGND_THREADS picks the compute pool's size (default 2): 1 is another
 * floating-point path on the same machine (ctest runs the learning tests
 * that way too). */
#ifndef T_LEARN_H
#define T_LEARN_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "t_model.h"
#include "t_train.h"

enum { T_SEEDS = 3, T_HELDOUT = 2000 };

/* The seeds a run takes: 1..T_SEEDS, or those named on its command line (a
 * long test runs each seed as its own ctest test, one thread each, so that
 * ctest -j spreads them over the cores); the claims are then asserted on the
 * seeds run. */
static int t_learn_nseeds = T_SEEDS;
static inline int t_learn_seeds(int argc, char **argv, int seeds[T_SEEDS]) {
    int n = 0;
    for (int i = 1; i < argc && n < T_SEEDS; i++) {
        int v = atoi(argv[i]);
        if (v < 1) {
            fprintf(stderr, "%s: seed %s: want a positive integer\n", argv[0], argv[i]);
            exit(2);
        }
        seeds[n++] = v;
    }
    if (n == 0)
        for (; n < T_SEEDS; n++) seeds[n] = n + 1;
    t_learn_nseeds = n;
    return n;
}

static inline int t_learn_threads(void) {
    const char *e = getenv("ALIGND_THREADS");
    int n = e ? atoi(e) : 2;
    return n >= 1 && n <= 64 ? n : 2;
}

/* The tiny byte-vocabulary GPT-2 every learning test starts from. */
static inline int t_learn_base(const char *dir, uint64_t seed, char err[AL_ERRLEN]) {
    return t_save_byte_model((t_shape){AL_ARCH_GPT2, .layers = 2, .C = 64, .heads = 4, .FF = 256, .max_T = 64}, seed,
                             dir, err);
}

static inline void t_learn_log_em(void *ud, long step, double epoch, const al_metric *m, int n) {
    (void)step;
    (void)epoch;
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].name, "exact_match_a")) *(double *)ud = m[i].value;
}

/* Greedy exact match of the model in dir on rows of the task's split
 * ("train" or "test"), drawn with seed (an evaluate job writing under tmp);
 * -1 on error. */
static inline double t_split_em(const char *dir, const char *task, const char *split, int rows, int seed,
                                const char *tmp) {
    char json[4096], err[AL_ERRLEN];
    snprintf(json, sizeof json,
             "{\"method\":\"evaluate\",\"model\":\"%s\",\"task\":{\"name\":\"%s\",\"rows\":%d,\"seed\":%d,"
             "\"split\":\"%s\"},\"hyperparameters\":{\"max_completion_length\":6,\"logging_steps\":100000},"
             "\"output_dir\":\"%s/%s_eval\"}",
             dir, task, rows, seed, split, tmp, split);
    double em = -1;
    al_train_cb cb = {.log = t_learn_log_em, .ud = &em};
    if (t_train_json(json, NULL, &cb, NULL, err)) return -1;
    return em;
}

/* Greedy exact match on T_HELDOUT rows of the task's held-out split: the
 * measure of every claim. */
static inline double t_heldout_em(const char *dir, const char *task, const char *tmp) {
    return t_split_em(dir, task, "test", T_HELDOUT, 4242, tmp);
}

/* The partly trained SFT model the RL and DPO claims start from: SFT of the
 * tiny base on addition2 at a constant learning rate (a model left in a
 * cosine schedule's sharp minimum loses accuracy at any RL step size),
 * stopped at the first checkpoint (one every T_START_EVERY steps) whose
 * exact match on rows of the *training* split reaches T_START_TRAIN_EM.
 * Why not a fixed number of steps: the tiny model learns addition in a
 * sharp transition whose step differs by seed and floating-point path, and
 * a fixed 500 steps left held-out exact match anywhere in 0.14-0.45 over
 * seeds 1-8 (0.18 and 0.22 on seeds 4 and 5, from which GRPO gains almost
 * nothing); stopped by training accuracy, the same eight seeds start at
 * 0.36-0.48 held out on two builds (tests/test_rl_learning.c's header),
 * after 450-1550 steps. The held-out rows take no part in the choice. Writes the run under dir; start receives the
 * chosen checkpoint's folder, *steps its step; AL_ERANGE when no checkpoint
 * reaches the level. */
enum { T_START_MAX_STEPS = 3000, T_START_EVERY = 50, T_START_ROWS = 1000, T_START_EVAL_SEED = 777 };
#define T_START_TRAIN_EM 0.5
static inline int t_learn_start(const char *base, int seed, const char *dir, const char *tmp, char *start,
                                size_t start_size, long *steps, char err[AL_ERRLEN]) {
    char json[4096];
    snprintf(json, sizeof json,
             "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":8000,\"seed\":%d},"
             "\"hyperparameters\":{\"learning_rate\":0.001,\"batch_size\":32,\"max_steps\":%d,"
             "\"lr_scheduler_type\":\"constant\",\"warmup_ratio\":0.05,\"logging_steps\":%d,\"max_length\":24,"
             "\"save_steps\":%d},\"output_dir\":\"%s\",\"seed\":%d}",
             base, seed, T_START_MAX_STEPS, T_START_MAX_STEPS, T_START_EVERY, dir, seed);
    int rc = t_train_json(json, NULL, NULL, NULL, err);
    if (rc) return rc;
    for (long s = T_START_EVERY; s < T_START_MAX_STEPS; s += T_START_EVERY) {
        snprintf(start, start_size, "%s/checkpoint-%ld", dir, s);
        double em = t_split_em(start, "addition2", "train", T_START_ROWS, T_START_EVAL_SEED, tmp);
        if (em < 0) return al_err(err, AL_EIO, "evaluating %s failed", start);
        if (em >= T_START_TRAIN_EM) {
            *steps = s;
            return AL_OK;
        }
    }
    return al_err(err, AL_ERANGE, "no checkpoint of %s reached training-split exact match %.2f", dir,
                  T_START_TRAIN_EM);
}

/* Prints a claim's per-seed values and asserts that the worst seed is at
 * least lo (t_claim_min) or at most hi (t_claim_max). */
static inline void t_claim_(const char *what, const double *v, double bound, int at_least) {
    double worst = v[0];
    printf("%-46s", what);
    for (int s = 0; s < t_learn_nseeds; s++) {
        printf(" %+.3f", v[s]);
        worst = at_least ? fmin(worst, v[s]) : fmax(worst, v[s]);
    }
    printf("   worst %+.3f, bound %+.3f\n", worst, bound);
    T_REPORT_(at_least ? worst >= bound : worst <= bound, "%s: worst seed %+.3f %s %+.3f", what, worst,
              at_least ? "below" : "above", bound);
}
static inline void t_claim_min(const char *what, const double *v, double lo) { t_claim_(what, v, lo, 1); }
static inline void t_claim_max(const char *what, const double *v, double hi) { t_claim_(what, v, hi, 0); }

#endif

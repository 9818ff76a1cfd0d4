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

/* Greedy exact match of the model in dir on T_HELDOUT rows of the task's
 * held-out split (an evaluate job writing under tmp); -1 on error. */
static inline double t_heldout_em(const char *dir, const char *task, const char *tmp) {
    char json[4096], err[AL_ERRLEN];
    snprintf(json, sizeof json,
             "{\"method\":\"evaluate\",\"model\":\"%s\",\"task\":{\"name\":\"%s\",\"rows\":%d,\"seed\":4242,"
             "\"split\":\"test\"},\"hyperparameters\":{\"max_completion_length\":6,\"logging_steps\":100000},"
             "\"output_dir\":\"%s/heldout_eval\"}",
             dir, task, T_HELDOUT, tmp);
    double em = -1;
    al_train_cb cb = {.log = t_learn_log_em, .ud = &em};
    if (t_train_json(json, NULL, &cb, NULL, err)) return -1;
    return em;
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

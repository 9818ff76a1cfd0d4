/* Learning of the offline methods on the built-in addition2 task, over
 * T_SEEDS seeds and measured on 2000 held-out sums (tests/t_learn.h):
 *
 *   1. SFT of the tiny model from scratch (1500 steps) gets most held-out
 *      sums exactly right;
 *   2. a reward model trained on (right, plausible-wrong) pairs separates
 *      held-out pairs;
 *   3. DPO both ways, from the demo's partly trained SFT model (500 steps,
 *      constant learning rate) on pairs it generated itself
 *      (generate_preferences: 4 samples per prompt, the verifiable reward
 *      ranks them, best against worst), as scripts/demo_pipeline.py runs it:
 *      plain sigmoid DPO shows likelihood displacement (the chosen answers'
 *      log-probs fall along with the rejected ones', and held-out exact
 *      match falls), and RPO's NLL term on the chosen answers (TRL's
 *      rpo_alpha) turns the same pairs into a gain.
 *
 * Measured with this file's settings, seeds 1 2 3, on the 2-core AVX-512
 * machine (2026-12-06), on two floating-point paths of the portable release
 * build: test_learning (2 threads, bf16 products on oneDNN:
 * mixed_precision auto there; ctest now runs each seed as its own test with
 * one thread, test_learning_seed1..3, the same path: oneDNN never splits K
 * over threads) and test_learning_1thread (1 thread, fp32 products on
 * OpenBLAS), after merging main at ca478f3 (29 passed on
 * each; `/usr/bin/time -v ./tests/test_learning`, 316 s wall and 146 s of
 * CPU at load 15, and with ALIGND_THREADS=1 ALIGND_MATMUL=openblas, 142 s
 * wall and 72 s of CPU):
 *                                          bf16, oneDNN          fp32, OpenBLAS, 1 thread
 *   SFT from scratch, held-out EM      0.931 0.885 0.861     0.950 0.803 0.924
 *   reward model, held-out pair acc.   0.825 0.660 0.710     0.790 0.815 0.775
 *   plain DPO: EM change              -0.235 -0.113 -0.204  -0.178 -0.179 -0.261
 *   plain DPO: logps/chosen change     -2.3  -0.5  -1.2      -1.0  -1.2  -1.7
 *   DPO + RPO (rpo_alpha 1): EM change +0.251 +0.186 +0.240  +0.257 +0.172 +0.252
 * (before TRL's preference tokenization the OpenBLAS path's RPO was +0.256
 * +0.168 +0.226, every other figure the same).
 * SFT ran 900 steps until the bf16 path put seed 2 at 0.281: over 21 runs of
 * that recipe (seeds 1-9 of the task's data and order on the three bases,
 * alignd train, 2 threads; fp32 and bf16 on oneDNN, fp32 on OpenBLAS) six
 * ended between 0.27 and 0.41 (two of them on OpenBLAS, the path the bound
 * was set on), the rest 0.67-0.89: models that had not yet learned to
 * align operands of different lengths. At 1500 steps the same 27 runs
 * (nine per path) ended at 0.605-0.966, no path below 0.60.
 * The reward model's bound is the thinnest: from nine of those SFT models
 * per path, its held-out pair accuracy was 0.685-0.830 in bf16 (mean 0.764)
 * and 0.755-0.850 on OpenBLAS in fp32 (mean 0.798), and 0.660 on this
 * file's seed 2 in bf16, 0.01 above the bound (left where it was).
 * The other bounds sit beyond the worst of the six runs by the spread
 * between them (SFT >= 0.55, plain DPO's change <= -0.03, RPO's >= +0.02;
 * pair accuracy >= 0.65), except the chosen log-probs', asserted only to
 * fall: per batch they are noisier than the fall. Labelled slow. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "compute/pool.h"
#include "t_learn.h"
#include "train/trainer.h"

typedef struct last {
    char name[64][48];
    double value[64];
    int n;
    double chosen[64]; /* logps/chosen, in logging order */
    int n_chosen;
    char pref_file[1200];
} last;

static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    (void)step;
    (void)epoch;
    last *l = ud;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].name, "logps/chosen") && l->n_chosen < 64) l->chosen[l->n_chosen++] = m[i].value;
        int k = 0;
        while (k < l->n && strcmp(l->name[k], m[i].name)) k++;
        if (k == l->n && l->n < 64) snprintf(l->name[l->n++], 48, "%s", m[i].name);
        if (k < 64) l->value[k] = m[i].value;
    }
}

static double get(const last *l, const char *name) {
    for (int k = 0; k < l->n; k++)
        if (!strcmp(l->name[k], name)) return l->value[k];
    return NAN;
}

static char g_err[AL_ERRLEN];

static int train(const char *json, last *l, al_train_result *res) {
    memset(l, 0, sizeof *l);
    al_train_cb cb = {.log = on_log, .ud = l};
    return t_train_json(json, NULL, &cb, res, g_err);
}

static const char *SFT = "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":8000,\"seed\":%d},"
                         "\"hyperparameters\":{\"learning_rate\":%g,\"batch_size\":32,\"max_steps\":%d,"
                         "\"lr_scheduler_type\":\"%s\",\"warmup_ratio\":0.05,\"logging_steps\":100,"
                         "\"max_length\":24,\"save_steps\":0},\"output_dir\":\"%s\",\"seed\":%d}";

int main(int argc, char **argv) {
    al_pool_init(t_learn_threads());
    const char *tmp = t_tmpdir();
    int seeds[T_SEEDS], nseeds = t_learn_seeds(argc, argv, seeds);
    double sft_em[T_SEEDS], rm_acc[T_SEEDS], plain[T_SEEDS], plain_fall[T_SEEDS], rpo[T_SEEDS];
    char base[1200], sft[1200], part[1200], start[1300], rm[1200], gen[1200], dpo[1200], json[8192];
    last l;
    al_train_result res;
    for (int s = 0; s < nseeds; s++) {
        int seed = seeds[s];
        snprintf(base, sizeof base, "%s/base%d", tmp, seed);
        snprintf(sft, sizeof sft, "%s/sft%d", tmp, seed);
        snprintf(rm, sizeof rm, "%s/rm%d", tmp, seed);
        snprintf(gen, sizeof gen, "%s/gen%d", tmp, seed);
        snprintf(dpo, sizeof dpo, "%s/dpo%d", tmp, seed);
        T_OK(t_learn_base(base, (uint64_t)seed, g_err));

        /* 1. SFT from scratch */
        snprintf(json, sizeof json, SFT, base, seed, 3e-3, 1500, "cosine", sft, seed);
        T_OK(train(json, &l, NULL));
        sft_em[s] = t_heldout_em(sft, "addition2", tmp);

        /* 2. a reward model on (right, wrong) pairs; eval_accuracy is on
         * pairs of the held-out split */
        snprintf(json, sizeof json,
                 "{\"method\":\"reward_model\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":4000,"
                 "\"seed\":%d},\"hyperparameters\":{\"learning_rate\":0.001,\"batch_size\":32,\"max_steps\":1000,"
                 "\"lr_scheduler_type\":\"cosine\",\"warmup_ratio\":0.05,\"logging_steps\":1000,\"max_length\":24,"
                 "\"save_steps\":0},\"output_dir\":\"%s\",\"seed\":%d}",
                 sft, 100 + seed, rm, seed);
        T_OK(train(json, &l, NULL));
        rm_acc[s] = get(&l, "eval_accuracy");

        /* 3. DPO both ways on pairs the demo's SFT start generated */
        snprintf(part, sizeof part, "%s/part%d", tmp, seed);
        long start_steps = 0;
        T_OK(t_learn_start(base, seed, part, tmp, start, sizeof start, &start_steps, g_err));
        double em0 = t_heldout_em(start, "addition2", tmp);
        printf("seed %d: the SFT start (%ld steps): held-out exact match %.3f\n", seed, start_steps, em0);
        snprintf(json, sizeof json,
                 "{\"method\":\"generate_preferences\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":1000,"
                 "\"seed\":%d},\"reward\":{\"verifiable\":1.0},\"hyperparameters\":{\"num_generations\":4,"
                 "\"temperature\":1.0,\"max_completion_length\":6},\"output_dir\":\"%s\",\"seed\":%d}",
                 start, 200 + seed, gen, seed);
        T_OK(train(json, &l, &res));
        T_EQ_INT(res.n_output_files, 1);
        const char *DPO = "{\"method\":\"dpo\",\"model\":\"%s\",\"training_file\":\"%s\",\"hyperparameters\":{"
                          "\"learning_rate\":5e-4,\"batch_size\":32,\"max_steps\":200,\"beta\":0.1,\"rpo_alpha\":%g,"
                          "\"lr_scheduler_type\":\"cosine\",\"warmup_ratio\":0.05,\"logging_steps\":10,"
                          "\"max_length\":24,\"save_steps\":0},\"output_dir\":\"%s\",\"seed\":%d}";
        snprintf(json, sizeof json, DPO, start, res.output_files[0].path, 0.0, dpo, seed);
        T_OK(train(json, &l, NULL));
        plain[s] = t_heldout_em(dpo, "addition2", tmp) - em0;
        /* the chosen answers' log-probs late in training against the start */
        double late = 0;
        int k0 = l.n_chosen / 2;
        for (int k = k0; k < l.n_chosen; k++) late += l.chosen[k] / (l.n_chosen - k0);
        plain_fall[s] = l.n_chosen > 4 ? late - l.chosen[0] : NAN;
        printf("seed %d: plain DPO logps/chosen %.3f -> %.3f (mean of the second half), preference accuracy %.3f\n",
               seed, l.chosen[0], late, get(&l, "rewards/accuracies"));
        snprintf(json, sizeof json, DPO, start, res.output_files[0].path, 1.0, dpo, seed);
        T_OK(train(json, &l, NULL));
        rpo[s] = t_heldout_em(dpo, "addition2", tmp) - em0;
    }
    t_claim_min("SFT from scratch: held-out exact match", sft_em, 0.55);
    t_claim_min("reward model: held-out pair accuracy", rm_acc, 0.65);
    t_claim_max("plain DPO: exact match change", plain, -0.03);
    t_claim_max("plain DPO: logps/chosen change", plain_fall, 0.0);
    t_claim_min("DPO + RPO: exact match change", rpo, 0.02);
    return t_done();
}

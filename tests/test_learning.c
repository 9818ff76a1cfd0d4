/* Learning of the offline methods on the built-in addition2 task, over
 * T_SEEDS seeds and measured on 2000 held-out sums (tests/t_learn.h):
 *
 *   1. SFT of the tiny model from scratch (3000 steps) gets most held-out
 *      sums exactly right;
 *   2. a reward model trained on (right, plausible-wrong) pairs separates
 *      held-out pairs;
 *   3. DPO both ways, from the demo's partly trained SFT model
 *      (t_learn_start: a constant learning rate, stopped at the first
 *      checkpoint at 0.5 training-split exact match) on pairs it generated
 *      itself
 *      (generate_preferences: 4 samples per prompt, the verifiable reward
 *      ranks them, best against worst), as scripts/demo_pipeline.py runs it:
 *      plain sigmoid DPO shows likelihood displacement (the chosen answers'
 *      log-probs fall along with the rejected ones', and held-out exact
 *      match falls), and RPO's NLL term on the chosen answers (TRL's
 *      rpo_alpha) turns the same pairs into a gain.
 *
 * Measured with this file's settings, seeds 1-8, one thread each, on three
 * floating-point paths (2026-12-07, the 2-core AVX-512 machine; 13 passed
 * on each of the 24 runs; `ALIGND_THREADS=1 [ALIGND_MATMUL=openblas]
 * ./tests/test_learning SEED`): the -march=native Release build in bf16
 * (N), the portable RelWithDebInfo build the suite runs, in bf16 (P) and
 * with the products on OpenBLAS in fp32 (O, test_learning_1thread's path):
 *                           seed   1      2      3      4      5      6      7      8
 *   SFT from scratch         N   0.969  0.919  0.912  0.972  0.948  0.988  0.964  0.936
 *                            P   0.939  0.894  0.954  0.938  0.939  0.987  0.929  0.950
 *                            O   0.977  0.904  0.969  0.999  1.000  0.977  0.904  0.943
 *   reward model, pair acc.  N   0.780  0.800  0.880  0.865  0.820  0.845  0.845  0.830
 *                            P   0.800  0.810  0.720  0.835  0.835  0.860  0.880  0.890
 *                            O   0.755  0.795  0.775  0.850  0.830  0.905  0.875  0.840
 *   the DPO start (t_learn_start), held-out EM
 *                            N   0.449  0.412  0.431  0.414  0.396  0.398  0.416  0.429
 *                            P   0.359  0.476  0.455  0.473  0.376  0.408  0.420  0.401
 *                            O   0.395  0.483  0.384  0.438  0.459  0.416  0.383  0.322
 *   plain DPO: EM change     N  -0.192 -0.131 -0.243 -0.198 -0.212 -0.155 -0.174 -0.181
 *                            P  -0.174 -0.226 -0.247 -0.180 -0.078 -0.198 -0.279 -0.184
 *                            O  -0.196 -0.197 -0.236 -0.242 -0.232 -0.119 -0.205 -0.063
 *   plain DPO: logps/chosen  N   -1.25  -1.57  -1.20  -1.36  -1.52  -1.28  -1.73  -1.27
 *                            P   -0.79  -1.70  -1.30  -1.02  -1.46  -1.22  -2.48  -0.95
 *                            O   -1.33  -0.76  -1.44  -1.07  -2.30  -1.17  -1.49  -1.33
 *   DPO + RPO: EM change     N  +0.189 +0.205 +0.109 +0.127 +0.140 +0.134 +0.049 +0.096
 *                            P  +0.154 +0.169 +0.164 +0.151 +0.233 +0.081 +0.088 +0.111
 *                            O  +0.180 +0.132 +0.108 +0.099 +0.113 +0.066 +0.093 +0.222
 * Over the 24 (mean, deviation, worst): SFT 0.950, 0.031, 0.894; pair
 * accuracy 0.830, 0.045, 0.720; plain DPO -0.189, 0.052, -0.063; RPO
 * +0.134, 0.048, +0.049. The bounds: SFT >= 0.80, pair accuracy >= 0.65,
 * plain DPO's change <= -0.03, RPO's >= +0.02 (2.4-4.8 deviations from the
 * mean); the chosen log-probs are asserted only to fall: per batch they
 * are noisier than the fall.
 * SFT from scratch ran 1500 steps until 2026-12-07: the tiny model learns
 * addition in a sharp transition whose step differs by seed and path, and
 * at 1500 steps seeds 4 and 6 ended at 0.374 and 0.446 on the native build
 * (0.646 and 0.525 on the portable one), below the bound of 0.55 it had
 * then; at 2000 steps the sixteen runs ended at 0.716-0.993, at 3000 at
 * 0.894-0.988. Earlier (900 steps, then 1500) the same had shown on other
 * seeds and paths. Labelled slow. */
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
        snprintf(json, sizeof json, SFT, base, seed, 3e-3, 3000, "cosine", sft, seed);
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
    t_claim_min("SFT from scratch: held-out exact match", sft_em, 0.80);
    t_claim_min("reward model: held-out pair accuracy", rm_acc, 0.65);
    t_claim_max("plain DPO: exact match change", plain, -0.03);
    t_claim_max("plain DPO: logps/chosen change", plain_fall, 0.0);
    t_claim_min("DPO + RPO: exact match change", rpo, 0.02);
    return t_done();
}

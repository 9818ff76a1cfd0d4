/* train-demo: trains a byte-level model (from init-model) on the built-in
 * addition task with completion-only cross-entropy and AdamW, printing one
 * JSON line per logged step and the exact-match accuracy before and after.
 * It is the compute core's end-to-end smoke run; `alignd train` (the full
 * trainer with every objective) supersedes it. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compute/pool.h"
#include "model/model.h"
#include "tasks/tasks.h"
#include "train/optim.h"

enum { DEMO_B = 16, DEMO_T = 24, TOK_EOS = 256, TOK_PAD = 257 };

/* One row as bytes: <eos> prompt answer <eos>; targets on answer + eos. */
static int encode_row(const al_task_row *r, int32_t *ids, int32_t *tgt, int32_t *seg, int T) {
    int n = 0, plen = (int)strlen(r->prompt), alen = (int)strlen(r->answer);
    if (2 + plen + alen > T) return -1;
    ids[n++] = TOK_EOS;
    for (int i = 0; i < plen; i++) ids[n++] = (unsigned char)r->prompt[i];
    for (int i = 0; i < alen; i++) ids[n++] = (unsigned char)r->answer[i];
    ids[n++] = TOK_EOS;
    for (int t = 0; t < T; t++) {
        seg[t] = t < n ? 1 : 0;
        if (t >= n) ids[t] = TOK_PAD;
        /* position t predicts t+1: score only the answer and the final EOS */
        tgt[t] = (t + 1 < n && t + 1 > plen) ? ids[t + 1] : -1;
    }
    return n;
}

/* Greedy exact-match accuracy on n held-out rows. */
static double accuracy(al_model *m, int n) {
    int ok = 0;
    for (int i = 0; i < n; i += 8) {
        int B = n - i < 8 ? n - i : 8, plen[8];
        int32_t buf[8][DEMO_T], out[8 * 8];
        const int32_t *pr[8];
        al_task_row rows[8];
        for (int b = 0; b < B; b++) {
            al_task_row_get("addition", 999, (uint64_t)(i + b), &rows[b]);
            int k = 0;
            buf[b][k++] = TOK_EOS;
            for (const char *c = rows[b].prompt; *c; c++) buf[b][k++] = (unsigned char)*c;
            plen[b] = k;
            pr[b] = buf[b];
        }
        int32_t stop = TOK_EOS;
        al_gen_cfg g = {.max_new = 8, .temperature = 0, .top_p = 1, .stop = &stop, .n_stop = 1};
        al_rng rng;
        al_rng_seed(&rng, 1);
        int len[8];
        char err[AL_ERRLEN];
        if (al_generate(m, pr, plen, B, &g, &rng, out, NULL, len, err)) return -1;
        for (int b = 0; b < B; b++) {
            char s[16] = "";
            int k = 0;
            for (int t = 0; t < len[b] && k < 15 && out[b * 8 + t] < 256; t++) s[k++] = (char)out[b * 8 + t];
            s[k] = 0;
            ok += al_task_correct(&rows[b], s);
        }
    }
    return (double)ok / n;
}

int cli_train_demo(int argc, char **argv) {
    cli_flag f[] = {{"--model", 0, 0}, {"--steps", 0, 0}, {"--seed", 0, 0}, {"--lr", 0, 0}};
    if (cli_parse(argc, argv, f, 4)) return 2;
    if (!f[0].value) {
        fprintf(stderr, "alignd: train-demo: --model DIR is required (make one with init-model)\n");
        return 2;
    }
    long steps = 300, seed = 1;
    double lr = 2e-3;
    if ((f[1].value && cli_int(&f[1], 1, 1000000, &steps)) ||
        (f[2].value && cli_int(&f[2], 0, 0x7fffffffL, &seed)) ||
        (f[3].value && cli_float(&f[3], 0, 1, &lr)))
        return 2;
    const char *e = getenv("ALIGND_THREADS");
    al_pool_init(e ? atoi(e) : 0);
    char err[AL_ERRLEN] = "";
    al_model *m = NULL;
    if (al_model_open(&m, f[0].value, NULL, err)) {
        fprintf(stderr, "alignd: %s\n", err);
        return 1;
    }
    if (al_model_config_of(m)->V < 258) {
        fprintf(stderr, "alignd: train-demo needs a byte-vocabulary model (--vocab >= 260)\n");
        al_model_free(m);
        return 2;
    }
    int rc = 1;
    al_adamw opt = {0};
    al_adamw_cfg oc;
    al_adamw_defaults(&oc);
    oc.lr = (float)lr;
    oc.weight_decay = 0.0f;
    static int32_t ids[DEMO_B * DEMO_T], tgt[DEMO_B * DEMO_T], seg[DEMO_B * DEMO_T];
    static float logp[DEMO_B * DEMO_T], dlogp[DEMO_B * DEMO_T];
    if (al_model_reserve(m, DEMO_B, DEMO_T, 0, err) || al_adamw_init(&opt, &oc, m)) {
        fprintf(stderr, "alignd: %s\n", err[0] ? err : "out of memory");
        goto out;
    }
    double acc0 = accuracy(m, 64);
    printf("{\"step\":0,\"exact_match\":%.4f}\n", acc0);
    fflush(stdout);
    uint64_t row = 0;
    double t0 = al_now();
    for (long step = 0; step < steps; step++) {
        int ntok = 0;
        for (int b = 0; b < DEMO_B; b++) {
            al_task_row r;
            al_task_row_get("addition", (uint64_t)seed, row++, &r);
            encode_row(&r, ids + b * DEMO_T, tgt + b * DEMO_T, seg + b * DEMO_T, DEMO_T);
        }
        for (int i = 0; i < DEMO_B * DEMO_T; i++) ntok += tgt[i] >= 0;
        al_tokens in = {.B = DEMO_B, .T = DEMO_T, .ids = ids, .seg = seg, .targets = tgt};
        al_fwd fo = {.logp = logp};
        al_model_zero_grad(m);
        if (al_model_forward(m, &in, &fo)) goto out;
        double loss = 0;
        for (int i = 0; i < DEMO_B * DEMO_T; i++) {
            loss -= tgt[i] >= 0 ? logp[i] : 0;
            dlogp[i] = tgt[i] >= 0 ? -1.0f / (float)ntok : 0.0f;
        }
        loss /= ntok;
        if (!isfinite(loss)) {
            fprintf(stderr, "alignd: train-demo: loss is not finite at step %ld\n", step);
            goto out;
        }
        if (al_model_backward(m, &in, dlogp, NULL, NULL)) goto out;
        double gn = al_clip_grad_norm(m, 1.0);
        float cur = al_sched_lr(AL_SCHED_COSINE, (float)lr, step, steps / 20, steps);
        al_adamw_step(&opt, m, cur);
        if ((step + 1) % 25 == 0 || step == 0) {
            printf("{\"step\":%ld,\"loss\":%.4f,\"grad_norm\":%.3f,\"learning_rate\":%.2e,"
                   "\"tokens_per_second\":%.0f}\n",
                   step + 1, loss, gn, cur, (double)(step + 1) * DEMO_B * DEMO_T / (al_now() - t0));
            fflush(stdout);
        }
    }
    double acc1 = accuracy(m, 64);
    printf("{\"step\":%ld,\"exact_match\":%.4f,\"exact_match_before\":%.4f}\n", steps, acc1, acc0);
    rc = 0;
out:
    al_adamw_deinit(&opt);
    al_model_free(m);
    return rc;
}

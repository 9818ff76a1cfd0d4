/* RL from feedback (lib/train/rl_math.c, obj_rl.c, reward.c, job.c's RL
 * fields, rl.c end to end on a tiny model): GAE, whitening, the KL
 * estimators, PPO's token rewards with the score on the last (EOS) token,
 * clipped policy and value losses (and PPO's value term alone, as the RL
 * loop asks for it before the policy's forward), GRPO's group advantages for each
 * scale_rewards, the grpo/dapo/dr_grpo normalisations and RLOO's baseline
 * against values worked out by hand; the objectives' gradients against
 * central differences; the verifiable reward and the rules; job fields,
 * defaults and field-named errors; al_job_refs; the shared-base critic; and
 * short PPO/GRPO/RLOO runs with exact resume and the sampling jobs' files. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "gradcheck.h"
#include "io.h"
#include "model/model.h"
#include "t.h"
#include "t_model.h"
#include "t_train.h"
#include "text/mix.h"
#include "train/lm.h"
#include "train/rl.h"
#include "train/trainer.h"

static char g_err[AL_ERRLEN];
static al_error g_e; /* what the parsers and objectives refuse, naming the field */

/* ---- per-token arithmetic -------------------------------------------------- */

static void test_kl(void) {
    T_NEAR(al_rl_kl(-1.0, -1.5, AL_KL_K1), 0.5, 1e-12);
    T_NEAR(al_rl_kl(-1.0, -1.5, AL_KL_K3), exp(-0.5) - 1 + 0.5, 1e-12);
    T_NEAR(al_rl_kl(-1.0, -1.5, AL_KL_K3), 0.10653066, 1e-8);
    T_NEAR(al_rl_kl(-2.0, -1.0, AL_KL_K1), -1.0, 1e-12);  /* k1 can be negative */
    T_NEAR(al_rl_kl(-2.0, -1.0, AL_KL_K3), 0.71828183, 1e-8); /* k3 never is */
    T_NEAR(al_rl_kl(-0.7, -0.7, AL_KL_K3), 0.0, 1e-12);
}

static void test_whiten(void) {
    /* one row of 6 positions: scored 1..4 hold 1,2,3,4; the others must not count */
    float x[6] = {100, 1, 2, 3, 4, -50};
    int32_t tg[6] = {-1, 7, 7, 7, 7, -1};
    al_rl_whiten(x, tg, 1, 6, 1);
    /* mean 2.5, unbiased var 5/3 */
    double sd = sqrt(5.0 / 3.0 + 1e-8);
    T_NEAR(x[1], -1.5 / sd, 1e-6);
    T_NEAR(x[2], -0.5 / sd, 1e-6);
    T_NEAR(x[4], 1.5 / sd, 1e-6);
    T_NEAR(x[1], -1.161895, 1e-5);
    T_NEAR(x[0], 100, 0);
    T_NEAR(x[5], -50, 0);
    float y[6] = {100, 1, 2, 3, 4, -50};
    al_rl_whiten(y, tg, 1, 6, 0); /* the mean is kept (reward whitening) */
    T_NEAR(y[1], 2.5 - 1.161895, 1e-5);
    T_NEAR(y[4], 2.5 + 1.161895, 1e-5);
}

static void test_token_rewards_gae(void) {
    /* row 0 ends in EOS: scored positions 1,2,3 (position 3 predicts EOS);
     * row 1 was truncated: scored 2,3,4. The score lands on the last one. */
    enum { R = 2, T = 5 };
    int32_t tg[R * T] = {-1, 5, 6, 256, -1, /**/ -1, -1, 4, 9, 9};
    float lp[R * T] = {0, -1.0f, -2.0f, -0.5f, 0, /**/ 0, 0, -1.0f, -1.0f, -3.0f};
    float rf[R * T] = {0, -1.5f, -1.0f, -0.5f, 0, /**/ 0, 0, -2.0f, -1.0f, -1.0f};
    float score[R] = {2.0f, -1.0f};
    float rew[R * T], kl[R * T];
    al_rl_token_rewards(rew, kl, lp, rf, tg, score, R, T, 0.1, AL_KL_K1);
    T_NEAR(kl[1], 0.5, 1e-6);
    T_NEAR(rew[1], -0.05, 1e-6);
    T_NEAR(rew[2], 0.1, 1e-6);      /* kl = -1: a negative k1 */
    T_NEAR(rew[3], 2.0, 1e-6);      /* the EOS position: score, kl 0 */
    T_NEAR(rew[4], 0.0, 0);
    T_NEAR(rew[0], 0.0, 0);
    T_NEAR(rew[7], -0.1, 1e-6);
    T_NEAR(rew[9], -1.0 + 0.2, 1e-6); /* truncated: the last generated token */
    T_NEAR(rew[6], 0.0, 0);
    al_rl_token_rewards(rew, kl, lp, rf, tg, score, R, T, 0.1, AL_KL_K3);
    T_NEAR(kl[1], exp(-0.5) - 1 + 0.5, 1e-6);
    T_NEAR(rew[9], -1.0 - 0.1 * (exp(2.0) - 1 - 2.0), 1e-5);

    /* GAE on row 0 with rewards (0, 0, 1), values (0.5, 0.4, 0.2) */
    float r2[T] = {0, 0, 0, 1, 0}, v2[T] = {9, 0.5f, 0.4f, 0.2f, 9}, adv[T], ret[T];
    int32_t t2[T] = {-1, 5, 6, 256, -1};
    al_rl_gae(adv, ret, r2, v2, t2, 1, T, 1.0, 0.95);
    T_NEAR(adv[3], 0.8, 1e-6);
    T_NEAR(adv[2], 0.56, 1e-6);
    T_NEAR(adv[1], 0.432, 1e-6);
    T_NEAR(ret[1], 0.932, 1e-6);
    T_NEAR(ret[3], 1.0, 1e-6);
    T_NEAR(adv[0], 0, 0);
    T_NEAR(adv[4], 0, 0);
    al_rl_gae(adv, ret, r2, v2, t2, 1, T, 0.9, 0.8);
    T_NEAR(adv[3], 0.8, 1e-6);
    T_NEAR(adv[2], 0.356, 1e-6);
    T_NEAR(adv[1], 0.11632, 1e-6);
}

static void test_group_adv(void) {
    float r[8] = {1, 0, 0, 1, 1, 1, 1, 1}, a[8];
    T_EQ_INT(al_rl_group_adv(a, r, 2, 4, AL_SCALE_GROUP), 1);
    T_NEAR(a[0], 0.5 / (sqrt(1.0 / 3.0) + 1e-4), 1e-5);
    T_NEAR(a[0], 0.865876, 1e-5);
    T_NEAR(a[1], -0.865876, 1e-5);
    T_NEAR(a[5], 0, 1e-7);
    T_EQ_INT(al_rl_group_adv(a, r, 2, 4, AL_SCALE_BATCH), 1);
    T_NEAR(a[0], 0.5 / (sqrt(1.5 / 7.0) + 1e-4), 1e-5);
    T_NEAR(a[3], 1.079897, 1e-4);
    T_NEAR(a[6], 0, 1e-7);
    al_rl_group_adv(a, r, 2, 4, AL_SCALE_NONE);
    T_NEAR(a[0], 0.5, 1e-7);
    T_NEAR(a[2], -0.5, 1e-7);

    float q[6] = {1, 0, 0, 3, 3, 0}, b[6];
    al_rl_rloo_adv(b, q, 2, 3);
    T_NEAR(b[0], 1.0, 1e-7);
    T_NEAR(b[1], -0.5, 1e-7);
    T_NEAR(b[3], 3 - 1.5, 1e-7);
    T_NEAR(b[5], -3.0, 1e-7);

    T_NEAR(al_rl_adaptive_kl(0.2, 9, 6, 10000, 256), 0.2 * (1 + 0.2 * 256 / 10000.0), 1e-12);
    T_NEAR(al_rl_adaptive_kl(0.2, 5.4, 6, 10000, 100), 0.2 * (1 - 0.1 * 100 / 10000.0), 1e-12);

    int32_t ids[5] = {1, 2, 1, 2, 1};
    uint64_t sc[10];
    T_NEAR(al_rl_distinct2(ids, 5, sc), 0.5, 1e-12);
    int32_t ids2[4] = {1, 2, 3, 4};
    T_NEAR(al_rl_distinct2(ids2, 4, sc), 1.0, 1e-12);
}

/* ---- objectives ------------------------------------------------------------- */

static al_hparams rl_hp(const char *loss) {
    al_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.epsilon = 0.2f;
    hp.epsilon_high = -1;
    hp.beta = 0.1f;
    snprintf(hp.loss_type[0], sizeof hp.loss_type[0], "%s", loss);
    hp.n_loss_types = 1;
    hp.max_completion_length = 4;
    hp.cliprange = 0.2f;
    hp.cliprange_value = 0.1f;
    hp.vf_coef = 0.1f;
    hp.gamma = 1;
    hp.lam = 0.95f;
    return hp;
}

typedef struct ofx {
    const al_objective_ops *ops;
    void *st;
    al_obj_in in;
} ofx;

static double ofx_loss(void *ctx) {
    ofx *f = ctx;
    al_step_stats s;
    memset(&s, 0, sizeof s);
    int rc = f->ops->loss(f->st, &f->in, NULL, &s);
    return rc ? NAN : s.loss;
}

static void test_ppo_loss(void) {
    al_hparams hp = rl_hp("dapo");
    void *st;
    T_OK(al_obj_ppo.create(&hp, &st, &g_e));
    enum { T = 3 };
    int32_t tg[T] = {-1, 4, 5};
    float lp[T] = {0, -1.0f, -2.0f}, old[T] = {0, -1.1f, -1.5f}, adv[T] = {0, 1.0f, -1.0f};
    float v[T] = {0, 0.5f, 0.45f}, ov[T] = {0, 0.3f, 0.5f}, ret[T] = {0, 1.0f, 0.0f};
    al_obj_in in = {.R = 1, .T = T, .targets = tg, .logp = lp, .values = v, .old_logp = old, .adv = adv,
                    .returns = ret, .old_values = ov, .norm_tokens = 2, .norm_rows = 1};
    float dlp[T] = {0}, dv[T] = {0};
    al_obj_out out = {.dlogp = dlp, .dvalue = dv};
    al_step_stats s;
    memset(&s, 0, sizeof s);
    T_OK(al_obj_ppo.loss(st, &in, &out, &s));
    /* token 1: ratio e^0.1 inside the clip; token 2: ratio e^-0.5 < 0.8 with
     * A < 0, the clipped term (0.8) is the max. Value: token 1 clipped to 0.4
     * (0.36 > 0.25), token 2 inside the clip (0.45). */
    double pg = (-exp(0.1) + 0.8) / 2, vf = (0.5 * 0.36 + 0.5 * 0.2025) / 2;
    T_NEAR(al_stats_get(&s, "loss/policy_avg"), pg, 1e-6);
    T_NEAR(al_stats_get(&s, "loss/value_avg"), vf, 1e-6);
    T_NEAR(s.loss, pg + 0.1 * vf, 1e-6);
    T_NEAR(s.loss, -0.138523, 1e-5);
    T_NEAR(dlp[1], -exp(0.1) / 2, 1e-6);
    T_NEAR(dlp[2], 0.0, 0);
    T_NEAR(dv[1], 0.0, 0);             /* the clipped value term is flat */
    T_NEAR(dv[2], 0.1 * 0.45 / 2, 1e-7);
    T_NEAR(al_stats_get(&s, "policy/clipfrac_avg"), 0.5, 1e-9);
    T_NEAR(al_stats_get(&s, "val/clipfrac_avg"), 0.5, 1e-9);
    T_NEAR(al_stats_get(&s, "policy/approxkl_avg"), 0.5 * (0.01 + 0.25) / 2, 1e-6);
    T_NEAR(al_stats_get(&s, "val/ratio"), (exp(0.1) + exp(-0.5)) / 2, 1e-6);
    /* gradients against central differences, away from the clip edges */
    float lp2[T] = {0, -1.05f, -1.45f}, v3[T] = {0, 0.35f, 0.47f}, ent[T] = {0, 1.5f, 0.7f};
    float dent[T] = {0};
    in.logp = lp2;
    in.values = v3;
    in.entropy = ent;
    hp.entropy_coef = 0.05f;
    al_obj_ppo.destroy(st);
    T_OK(al_obj_ppo.create(&hp, &st, &g_e));
    memset(dlp, 0, sizeof dlp);
    memset(dv, 0, sizeof dv);
    out.dent = dent;
    memset(&s, 0, sizeof s);
    T_OK(al_obj_ppo.loss(st, &in, &out, &s));
    ofx f = {&al_obj_ppo, st, in};
    gc_check("ppo dlogp", lp2, dlp, T, ofx_loss, &f, 1e-3f);
    gc_check("ppo dvalue", v3, dv, T, ofx_loss, &f, 1e-3f);
    gc_check("ppo dentropy", ent, dent, T, ofx_loss, &f, 1e-3f);
    T_NEAR(dent[1], -0.05 / 2, 1e-7);
    al_obj_ppo.destroy(st);
}

/* PPO with logp NULL: the same dvalue as the full call, bit for bit, and no
 * loss or metrics (the critic's backward runs before the policy's forward). */
static void test_ppo_value_only(void) {
    al_hparams hp = rl_hp("dapo");
    hp.entropy_coef = 0.05f;
    void *st;
    T_OK(al_obj_ppo.create(&hp, &st, &g_e));
    enum { R = 2, T = 4 };
    int32_t tg[R * T] = {-1, 4, 5, 6, /**/ -1, -1, -1, -1};
    float lp[R * T] = {0, -1.0f, -2.0f, -0.3f}, old[R * T] = {0, -1.1f, -1.5f, -0.2f};
    float adv[R * T] = {0, 1.0f, -1.0f, 0.4f}, ent[R * T] = {0, 1.5f, 0.7f, 0.2f};
    float v[R * T] = {0, 0.5f, 0.45f, -0.3f, /**/ 9, 9, 9, 9}, ov[R * T] = {0, 0.3f, 0.5f, -0.25f};
    float ret[R * T] = {0, 1.0f, 0.0f, 0.1f};
    al_obj_in in = {.R = R, .T = T, .targets = tg, .logp = lp, .entropy = ent, .values = v, .old_logp = old,
                    .adv = adv, .returns = ret, .old_values = ov, .norm_tokens = 7, .norm_rows = 3};
    float dlp[R * T] = {0}, dv[R * T] = {0}, dent[R * T] = {0}, dv2[R * T] = {0};
    al_obj_out out = {.dlogp = dlp, .dent = dent, .dvalue = dv};
    al_step_stats s, s2;
    memset(&s, 0, sizeof s);
    memset(&s2, 0, sizeof s2);
    T_OK(al_obj_ppo.loss(st, &in, &out, &s));
    in.logp = NULL;
    al_obj_out vo = {.dvalue = dv2};
    T_OK(al_obj_ppo.loss(st, &in, &vo, &s2));
    T_TRUE(memcmp(dv, dv2, sizeof dv) == 0);
    T_TRUE(dv2[1] == 0 && dv2[2] != 0 && dv2[3] != 0); /* token 1's value is clipped */
    T_TRUE(s2.loss == 0 && s2.num_tokens == 0 && s2.n == 0);
    /* a non-finite value loss stops here, dvalue untouched */
    v[2] = NAN;
    memset(dv2, 0, sizeof dv2);
    T_EQ_INT(al_obj_ppo.loss(st, &in, &vo, &s2), AL_ENAN);
    T_TRUE(dv2[3] == 0);
    al_obj_ppo.destroy(st);
    /* only PPO has a value term to ask for alone */
    hp = rl_hp("dapo");
    T_OK(al_obj_grpo.create(&hp, &st, &g_e));
    in.values = NULL;
    in.ref_logp = old;
    T_EQ_INT(al_obj_grpo.loss(st, &in, &vo, &s2), AL_ESHAPE);
    al_obj_grpo.destroy(st);
}

static void test_grpo_loss(void) {
    /* row 0: 3 tokens, A = 0.5; row 1: 1 token, A = -1; ratio 1 (old NULL);
     * beta 0.1 with the k3 estimator */
    enum { R = 2, T = 4 };
    int32_t tg[R * T] = {-1, 3, 4, 5, /**/ -1, -1, -1, 8};
    float lp[R * T] = {0, -1, -2, -0.5f, /**/ 0, 0, 0, -3};
    float rf[R * T] = {0, -1.2f, -1.5f, -0.5f, /**/ 0, 0, 0, -2};
    float adv[R * T] = {0, 0.5f, 0.5f, 0.5f, /**/ 0, 0, 0, -1};
    double k3[4] = {exp(-0.2) + 0.2 - 1, exp(0.5) - 0.5 - 1, 0, exp(1.0) - 2};
    double l0 = 3 * -0.5 + 0.1 * (k3[0] + k3[1] + k3[2]), l1 = 1 + 0.1 * k3[3];
    struct { const char *type; double want; } cases[] = {
        {"grpo", (l0 / 3 + l1) / 2},   /* mean of per-sequence means */
        {"dapo", (l0 + l1) / 4},       /* the step's tokens */
        {"bnpo", (l0 + l1) / 4},
        {"dr_grpo", (l0 + l1) / (2 * 4)}, /* sequences x max_completion_length */
    };
    T_NEAR(cases[0].want, 0.288705, 1e-5);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        al_hparams hp = rl_hp(cases[c].type);
        void *st;
        T_OK(al_obj_grpo.create(&hp, &st, &g_e));
        al_obj_in in = {.R = R, .T = T, .targets = tg, .logp = lp, .ref_logp = rf, .adv = adv,
                        .norm_tokens = 4, .norm_rows = 2};
        float dlp[R * T] = {0};
        al_obj_out out = {.dlogp = dlp};
        al_step_stats s;
        memset(&s, 0, sizeof s);
        T_OK(al_obj_grpo.loss(st, &in, &out, &s));
        T_REPORT_(fabs(s.loss - cases[c].want) < 1e-5, "%s loss %.7f, want %.7f", cases[c].type, s.loss,
                  cases[c].want);
        T_NEAR(al_stats_get(&s, "kl"), (k3[0] + k3[1] + k3[2] + k3[3]) / 4, 1e-6);
        /* gradient with an explicit old (so the ratio moves in the differences) */
        float old[R * T];
        memcpy(old, lp, sizeof old);
        float lp2[R * T];
        memcpy(lp2, lp, sizeof lp2);
        in.old_logp = old;
        in.logp = lp2;
        memset(dlp, 0, sizeof dlp);
        memset(&s, 0, sizeof s);
        T_OK(al_obj_grpo.loss(st, &in, &out, &s));
        T_REPORT_(fabs(s.loss - cases[c].want) < 1e-5, "%s loss with old = logp", cases[c].type);
        ofx f = {&al_obj_grpo, st, in};
        /* the ratio sits at 1, the edge of nothing: a one-sided clip cannot bind */
        gc_check(cases[c].type, lp2, dlp, R * T, ofx_loss, &f, 1e-3f);
        al_obj_grpo.destroy(st);
    }
    /* clipping: ratio e^0.5 with A > 0 is clipped at 1 + epsilon_high */
    al_hparams hp = rl_hp("dapo");
    hp.beta = 0;
    hp.epsilon_high = 0.28f;
    void *st;
    T_OK(al_obj_grpo.create(&hp, &st, &g_e));
    int32_t tg1[2] = {5, 6};
    float lp1[2] = {-1.0f, -1.0f}, old1[2] = {-1.5f, -0.5f}, adv1[2] = {1.0f, 1.0f}, d1[2] = {0};
    al_obj_in in = {.R = 1, .T = 2, .targets = tg1, .logp = lp1, .old_logp = old1, .adv = adv1,
                    .norm_tokens = 2, .norm_rows = 1};
    al_obj_out out = {.dlogp = d1};
    al_step_stats s;
    memset(&s, 0, sizeof s);
    T_OK(al_obj_grpo.loss(st, &in, &out, &s));
    T_NEAR(s.loss, (-1.28 - exp(-0.5)) / 2, 1e-6);
    T_NEAR(d1[0], 0, 0);
    T_NEAR(d1[1], -exp(-0.5) / 2, 1e-6);
    T_NEAR(al_stats_get(&s, "clip_ratio/high_mean"), 0.5, 1e-9);
    T_NEAR(al_stats_get(&s, "clip_ratio/low_mean"), 0.0, 1e-9);
    al_obj_grpo.destroy(st);
    /* a flipped advantage flips the gradient */
    adv1[0] = adv1[1] = -1;
    hp.epsilon_high = -1;
    T_OK(al_obj_grpo.create(&hp, &st, &g_e));
    float d2[2] = {0};
    out.dlogp = d2;
    old1[0] = old1[1] = -1.0f;
    memset(&s, 0, sizeof s);
    T_OK(al_obj_grpo.loss(st, &in, &out, &s));
    T_NEAR(d2[0], 0.5, 1e-6);
    al_obj_grpo.destroy(st);
    /* rloo keeps beta out of the loss (it is in the reward) */
    hp = rl_hp("dapo");
    T_OK(al_obj_rloo.create(&hp, &st, &g_e));
    al_obj_in in2 = {.R = R, .T = T, .targets = tg, .logp = lp, .adv = adv, .norm_tokens = 4, .norm_rows = 2};
    memset(&s, 0, sizeof s);
    T_OK(al_obj_rloo.loss(st, &in2, NULL, &s));
    T_NEAR(s.loss, (3 * -0.5 + 1) / 4, 1e-6);
    T_TRUE(isnan(al_stats_get(&s, "kl")));
    al_obj_rloo.destroy(st);
    /* bad hyper-parameters are refused with the field's name */
    hp = rl_hp("xyz");
    T_EQ_INT(al_obj_grpo.create(&hp, &st, &g_e), AL_EINVAL);
    T_TRUE(strstr(g_e.msg, "loss_type") != NULL);
    T_STR_EQ(g_e.field, "loss_type");
    hp = rl_hp("grpo");
    hp.epsilon = 0;
    T_EQ_INT(al_obj_grpo.create(&hp, &st, &g_e), AL_EINVAL);
    T_TRUE(strncmp(g_e.msg, "epsilon:", 8) == 0);
    T_STR_EQ(g_e.field, "epsilon");
}

/* ---- rewards -------------------------------------------------------------------- */

static void test_rewards(void) {
    T_NEAR(al_reward_verifiable("123", "123", 0), 1, 0);
    T_NEAR(al_reward_verifiable("123", " 123\n", 0), 1, 0);
    T_NEAR(al_reward_verifiable("123", "124", 0), 0, 0);
    T_NEAR(al_reward_verifiable("123", "124", 1), 0.5 * 2 / 3, 1e-12);
    T_NEAR(al_reward_verifiable("12", "1234", 1), 0.5 * 2 / 4, 1e-12);
    T_NEAR(al_reward_verifiable("12", "", 1), 0, 0);
    al_reward_cfg c;
    memset(&c, 0, sizeof c);
    c.length_penalty = 0.01f;
    c.clip = 1.5f;
    T_NEAR(al_reward_rules(&c, 1.0, 10, 1, 2.0), 0.9, 1e-6);
    T_NEAR(al_reward_rules(&c, 1.0, 10, 0, 2.0), -1.1, 1e-6);   /* missing EOS */
    T_NEAR(al_reward_rules(&c, 5.0, 0, 1, 2.0), 1.5, 1e-6);     /* clipped */
    T_NEAR(al_reward_rules(&c, -5.0, 0, 0, 2.0), -1.5, 1e-6);
}

/* ---- job fields ------------------------------------------------------------------- */

static int parse(const char *json, al_job *j) {
    g_err[0] = 0;
    return al_job_parse(j, json, strlen(json), g_err);
}

#define T_REJECTS(json, msg)                                                                         \
    do {                                                                                             \
        al_job j_;                                                                                   \
        int rc_ = parse(json, &j_);                                                                  \
        if (!rc_) al_job_deinit(&j_);                                                                \
        T_EQ_INT(rc_, AL_EINVAL);                                                                    \
        T_REPORT_(strncmp(g_err, msg, strlen(msg)) == 0, "error \"%s\" starts with \"%s\"", g_err, msg); \
    } while (0)

typedef struct refs_seen {
    char paths[16][64];
    int kinds[16];
    int n;
} refs_seen;

static int on_ref(void *ud, al_ref_kind kind, const char *path, const char *value, char *repl, size_t cap,
                  char *msg, size_t msgcap) {
    refs_seen *s = ud;
    if (s->n < 16) {
        snprintf(s->paths[s->n], sizeof s->paths[0], "%s", path);
        s->kinds[s->n++] = kind;
    }
    if (!strcmp(value, "rm-name")) snprintf(repl, cap, "/models/rm-7");
    if (!strcmp(value, "missing")) {
        snprintf(msg, msgcap, "no model named 'missing'");
        return 1;
    }
    return 0;
}

static void test_job(void) {
    al_job j;
    /* TRL's defaults on a file; a built-in task's recipe (lib/train/job.c)
     * fills what the job leaves out before them */
    T_OK(parse("{\"method\":\"grpo\",\"model\":\"m\",\"training_file\":\"p.jsonl\","
               "\"reward\":{\"verifiable\":1.0},\"hyperparameters\":{\"batch_size\":16}}", &j));
    T_NEAR(j.hp.beta, 0.0, 0);
    T_NEAR(j.hp.max_grad_norm, 1.0, 0);
    T_EQ_INT(j.hp.num_generations, 8);
    T_STR_EQ(j.hp.loss_type[0], "dapo");
    T_EQ_INT(j.hp.scale_rewards, AL_SCALE_GROUP);
    T_NEAR(j.hp.epsilon, 0.2, 1e-7);
    T_NEAR(j.hp.learning_rate, 1e-6, 1e-12);
    T_EQ_INT(j.hp.max_completion_length, 256);
    T_NEAR(j.reward.verifiable, 1.0, 0);
    json_t *h = json_object_get(j.resolved, "hyperparameters");
    T_STR_EQ(json_string_value(json_object_get(h, "scale_rewards")), "group");
    T_STR_EQ(json_string_value(json_object_get(h, "kl_estimator")), "k1");
    al_job_deinit(&j);
    T_OK(parse("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},"
               "\"reward\":{\"verifiable\":1.0},\"hyperparameters\":{\"beta\":0.1}}", &j));
    T_NEAR(j.hp.learning_rate, 1e-4, 1e-11);
    T_EQ_INT(j.hp.batch_size, 256);
    T_EQ_INT(j.hp.num_generations, 8);
    T_NEAR(j.hp.beta, 0.1, 1e-7); /* the job's own value wins */
    T_NEAR(j.hp.max_grad_norm, 10.0, 0);
    T_EQ_INT(j.hp.lr_scheduler_type, AL_SCHED_CONSTANT);
    h = json_object_get(j.resolved, "hyperparameters");
    T_NEAR(json_real_value(json_object_get(h, "max_grad_norm")), 10.0, 0);
    al_job_deinit(&j);
    T_OK(parse("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},"
               "\"reward\":{\"reward_model\":\"a\"}}", &j));
    T_NEAR(j.hp.learning_rate, 5e-5, 1e-11);
    T_EQ_INT(j.hp.batch_size, 256);
    T_EQ_INT(j.hp.num_mini_batches, 8);
    T_NEAR(j.hp.temperature, 1.0, 0);
    T_NEAR(j.hp.max_grad_norm, 10.0, 0);
    al_job_deinit(&j);
    /* a batch of the job's own: TRL's mini-batch count, which divides it */
    T_OK(parse("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},"
               "\"reward\":{\"reward_model\":\"a\"},\"hyperparameters\":{\"batch_size\":4}}", &j));
    T_EQ_INT(j.hp.num_mini_batches, 1);
    T_NEAR(j.hp.learning_rate, 5e-5, 1e-11);
    al_job_deinit(&j);
    T_OK(parse("{\"method\":\"ppo\",\"model\":\"m\",\"training_file\":\"p.jsonl\",\"lora\":{\"r\":4},"
               "\"reward\":{\"reward_model\":[\"a\",\"b\"],\"missing_eos_penalty\":1,\"clip\":5},"
               "\"hyperparameters\":{\"response_length\":20,\"kl_estimator\":\"k3\",\"scale_rewards\":false}}", &j));
    T_NEAR(j.hp.temperature, 0.7, 1e-7);
    T_NEAR(j.hp.kl_coef, 0.05, 1e-7);
    T_EQ_INT(j.hp.num_ppo_epochs, 4);
    T_EQ_INT(j.hp.max_completion_length, 20);
    T_EQ_INT(j.hp.kl_estimator, AL_KL_K3);
    T_EQ_INT(j.hp.scale_rewards, AL_SCALE_NONE);
    T_EQ_INT(j.reward.n_reward_models, 2);
    T_STR_EQ(j.reward.reward_model[1], "b");
    T_EQ_INT(j.critic, AL_CRITIC_SHARED_BASE);
    T_NEAR(j.hp.learning_rate, 3e-6, 1e-12);
    al_job_deinit(&j);
    T_OK(parse("{\"method\":\"rloo\",\"model\":\"m\",\"training_file\":\"p.jsonl\",\"reward\":{\"judge\":"
               "{\"model\":\"j\",\"principles\":[\"be right\"]}}}", &j));
    T_NEAR(j.hp.beta, 0.05, 1e-7);
    T_EQ_INT(j.hp.num_generations, 2);
    T_NEAR(j.hp.learning_rate, 1e-6, 1e-12);
    T_EQ_INT(j.reward.n_principles, 1);
    al_job_deinit(&j);

    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"}}", "reward: is required");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{}}",
              "reward: names no source");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"hyperparameters\":{\"epsilon\":0}}", "hyperparameters.epsilon: must be");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"hyperparameters\":{\"batch_size\":12}}", "hyperparameters.batch_size: 12 is not a multiple");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"hyperparameters\":{\"scale_rewards\":\"std\"}}", "hyperparameters.scale_rewards: must be");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"hyperparameters\":{\"loss_type\":\"sigmoid\"}}", "hyperparameters.loss_type: 'sigmoid'");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"hyperparameters\":{\"num_generations\":1}}", "hyperparameters.num_generations: must be >= 2");
    T_REJECTS("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"hyperparameters\":{\"kl_estimator\":\"k2\"}}", "hyperparameters.kl_estimator: must be");
    T_REJECTS("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"critic\":\"shared_base\"}", "critic: \"shared_base\" needs lora");
    T_REJECTS("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"critic\":\"twin\"}", "critic: must be");
    T_REJECTS("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"hyperparameters\":{\"cliprange\":0}}", "hyperparameters.cliprange: must be");
    T_REJECTS("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":\"yes\"}}",
              "reward.verifiable: must be a number");
    T_REJECTS("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1,"
              "\"length_penalty\":-1}}", "reward.length_penalty: must be a number in [0, 1e6]");
    T_REJECTS("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"reward_model\":3}}",
              "reward.reward_model: must be a model");
    T_REJECTS("{\"method\":\"ppo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"reward_model\":[\"a\",2]}}",
              "reward.reward_model[1]: must be");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"judge\":{}}}",
              "reward.judge.model: is required");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"judge\":"
              "{\"model\":\"j\",\"principles\":[1]}}}", "reward.judge.principles[0]");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1,"
              "\"bogus\":1}}", "reward.bogus: unknown field");
    T_REJECTS("{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1},"
              "\"hyperparameters\":{\"max_new_tokens\":5,\"max_completion_length\":6}}",
              "hyperparameters.max_new_tokens: give it or max_completion_length");
    T_REJECTS("{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"reward\":{\"verifiable\":1}}",
              "reward: only ppo");
    T_REJECTS("{\"method\":\"evaluate\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"output_dir\":\"o\","
              "\"reward\":{\"reward_model\":\"r\"}}", "model_b: is required");
    T_REJECTS("{\"method\":\"generate_preferences\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},"
              "\"reward\":{\"verifiable\":1}}", "output_dir: is required");
    T_REJECTS("{\"method\":\"critique_revise\",\"model\":\"m\",\"task\":{\"name\":\"addition2\"},\"output_dir\":\"o\"}",
              "principles: critique_revise needs");

    /* every model and file reference, with replacements and refusals */
    json_t *d = json_loads("{\"method\":\"ppo\",\"model\":\"base\",\"ref_model\":\"ref\",\"training_file\":\"f1\","
                           "\"validation_file\":\"f2\",\"eval_tasks\":[{\"name\":\"x\",\"file\":\"f3\"}],"
                           "\"reward\":{\"reward_model\":[\"rm-name\",\"rm2\"],\"judge\":{\"model\":\"jm\"}},"
                           "\"critic_model\":\"cm\",\"model_b\":\"mb\"}", 0, NULL);
    refs_seen seen = {0};
    T_OK(al_job_refs(d, on_ref, &seen, &g_e));
    T_EQ_INT(seen.n, 10);
    const char *want[] = {"model", "ref_model", "critic_model", "model_b", "training_file", "validation_file",
                          "eval_tasks[0].file", "reward.reward_model[0]", "reward.reward_model[1]",
                          "reward.judge.model"};
    for (int i = 0; i < 10 && i < seen.n; i++) T_STR_EQ(seen.paths[i], want[i]);
    T_EQ_INT(seen.kinds[4], AL_REF_FILE);
    T_EQ_INT(seen.kinds[7], AL_REF_MODEL);
    T_STR_EQ(json_string_value(json_array_get(json_object_get(json_object_get(d, "reward"), "reward_model"), 0)),
             "/models/rm-7");
    json_object_set_new(json_object_get(d, "reward"), "reward_model", json_string("missing"));
    memset(&seen, 0, sizeof seen);
    T_EQ_INT(al_job_refs(d, on_ref, &seen, &g_e), AL_EINVAL);
    T_STR_EQ(g_e.msg, "reward.reward_model: no model named 'missing'");
    T_STR_EQ(g_e.field, "reward.reward_model");
    json_decref(d);
}

/* ---- a tiny model ------------------------------------------------------------------ */

static void tiny_model(const char *dir, uint64_t seed, int score_head) {
    t_shape s = {AL_ARCH_GPT2, .layers = 1, .C = 32, .heads = 2, .FF = 64, .max_T = 32, .score_head = score_head};
    T_OK(t_save_byte_model(s, seed, dir, g_err));
}

static void test_shared_critic(const char *base) {
    al_lora_cfg l = {.r = 4, .alpha = 8};
    snprintf(l.targets, sizeof l.targets, "all-linear");
    al_model *p = NULL;
    T_OK(al_model_open(&p, base, &l, g_err));
    al_model *c = al_model_new_shared(p, &l, 7, g_err);
    T_TRUE(c != NULL);
    if (!c) return;
    /* it owns (and trains) only its adapters and head */
    int n;
    al_param *ps = al_model_params(c, &n);
    size_t own = 0;
    for (int i = 0; i < n; i++)
        if (ps[i].g) own += ps[i].n;
    T_EQ_INT(own, al_model_num_params(c, 1));
    T_TRUE(al_model_memory(c) < al_model_memory(p) / 2);
    /* the base is shared: a change to the policy's base shows in the critic */
    T_OK(al_model_reserve(c, 1, 4, 0, g_err));
    int32_t ids[4] = {1, 2, 3, 4};
    float v1[4], v2[4];
    al_tokens in = {.B = 1, .T = 4, .ids = ids};
    al_fwd f = {.values = v1};
    T_OK(al_model_forward(c, &in, &f));
    al_param *pp = al_model_params(p, &n);
    pp[0].w[1 * pp[0].shape[1]] += 1.0f; /* token 1's embedding */
    f.values = v2;
    T_OK(al_model_forward(c, &in, &f));
    T_TRUE(v1[3] != v2[3]);
    al_model_free(c);
    al_model_free(p);
}

/* ---- where a completion ends ---------------------------------------------------------- */

typedef struct stoplog {
    double mean_len, clipped;
    int steps;
} stoplog;

static void stop_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    (void)epoch;
    stoplog *l = ud;
    for (int i = 0; i < n && step == 1; i++) {
        if (!strcmp(m[i].name, "completions/mean_length")) l->mean_len = m[i].value, l->steps++;
        if (!strcmp(m[i].name, "completions/clipped_ratio")) l->clipped = m[i].value;
    }
}

static void copy_file(const char *from_dir, const char *to_dir, const char *name) {
    char a[1200], b[1200], *data = NULL;
    size_t n = 0;
    snprintf(a, sizeof a, "%s/%s", from_dir, name);
    snprintf(b, sizeof b, "%s/%s", to_dir, name);
    T_OK(al_file_read(a, 1u << 20, &data, &n, g_err));
    T_OK(al_file_write_atomic(b, data, n, g_err));
    free(data);
}

/* A rollout ends at the chat template's end of turn, which is not EOS: the
 * ChatML-like template of tests/data/tok_tiny closes an assistant turn with
 * <|im_end|> (269) before </s> (266, EOS). The model is made to say 269 at
 * every position (the final norm's output a constant that only 269's
 * embedding row points along), so each completion is that one token: length
 * 1, none cut off. Stopping at EOS alone, each ran to its 8 tokens. */
static void test_turn_end_stop(const char *tmp) {
    char dir[1100], data[1100], json[4096];
    snprintf(dir, sizeof dir, "%s/turn_end", tmp);
    const char *src = getenv("AL_TEST_SRC");
    snprintf(data, sizeof data, "%s/data/tok_tiny", src ? src : "tests");
    al_model_config c = t_byte_config((t_shape){AL_ARCH_GPT2, .layers = 1, .C = 32, .heads = 2, .FF = 64, .max_T = 64});
    c.V = 270;
    c.bos_id = 265;
    c.eos_id = 266;
    c.pad_id = 267;
    al_model *m = al_model_new(&c, NULL, g_err);
    T_TRUE(m != NULL);
    if (!m) return;
    al_model_init(m, 11);
    int np;
    al_param *ps = al_model_params(m, &np);
    for (int i = 0; i < np; i++) {
        if (!strcmp(ps[i].name, "transformer.ln_f.weight")) memset(ps[i].w, 0, ps[i].n * sizeof *ps[i].w);
        if (!strcmp(ps[i].name, "transformer.ln_f.bias")) ps[i].w[0] = 30.0f;
        if (!strcmp(ps[i].name, "transformer.wte.weight")) ps[i].w[(size_t)269 * ps[i].shape[1]] = 1.0f;
    }
    T_OK(al_model_save(m, dir, g_err));
    al_model_free(m);
    copy_file(data, dir, "tokenizer.json");
    copy_file(data, dir, "tokenizer_config.json");
    /* the stop ids: config.json's EOS, then the template's end of turn */
    al_lm lm;
    al_lm_cfg lc = {.open_flags = AL_OPEN_FROZEN};
    T_OK(al_lm_open(&lm, dir, &lc, g_err));
    int32_t stops[16];
    T_EQ_INT(al_lm_stop_ids(&lm, stops, 16, g_err), 2);
    T_EQ_INT(stops[0], 266);
    T_EQ_INT(stops[1], 269);
    al_lm_close(&lm);
    snprintf(json, sizeof json,
             "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":16},"
             "\"reward\":{\"verifiable\":1},\"hyperparameters\":{\"batch_size\":8,\"num_generations\":4,"
             "\"max_steps\":1,\"max_completion_length\":8,\"logging_steps\":1,\"mixed_precision\":\"fp32\"},"
             "\"output_dir\":\"%s/turn_end_grpo\",\"seed\":1}",
             dir, tmp);
    stoplog l = {0};
    al_train_cb cb = {.log = stop_log, .ud = &l};
    al_train_result res;
    T_OK(t_train_json(json, NULL, &cb, &res, g_err));
    T_EQ_INT(l.steps, 1);
    T_NEAR(l.mean_len, 1.0, 0);
    T_NEAR(l.clipped, 0.0, 0);
    /* the data jobs' sampling too (with EOS alone: 8 tokens each) */
    snprintf(json, sizeof json,
             "{\"method\":\"generate_preferences\",\"model\":\"%s\",\"task\":{\"name\":\"addition\",\"rows\":4},"
             "\"reward\":{\"verifiable\":1},\"hyperparameters\":{\"num_generations\":2,"
             "\"max_completion_length\":8,\"mixed_precision\":\"fp32\"},"
             "\"output_dir\":\"%s/turn_end_prefs\",\"seed\":1}",
             dir, tmp);
    stoplog g = {0};
    cb.ud = &g;
    T_OK(t_train_json(json, NULL, &cb, &res, g_err));
    T_EQ_INT(g.steps, 1);
    T_NEAR(g.mean_len, 1.0, 0);
}

/* ---- end to end ----------------------------------------------------------------------- */

typedef struct runlog {
    double loss[16];
    int n_loss;
    double judge[16]; /* rewards/judge/mean per step (from step 1) */
    int n_judge;
    int has[8];
    int warns, samples;
    int clip_warns;           /* warnings that every update was clipped */
    int has_verifiable;       /* steps logging rewards/verifiable/mean */
    double blank; /* generate_preferences' last blank_completions */
} runlog;

static const char *const want_ppo[] = {"objective/kl", "objective/entropy", "objective/non_score_reward",
                                       "objective/rlhf_reward", "objective/scores", "policy/approxkl_avg",
                                       "policy/clipfrac_avg", "loss/value_avg"};
static const char *const want_grpo[] = {"reward", "reward_std", "frac_reward_zero_std", "completions/mean_length",
                                        "completions/clipped_ratio", "clip_ratio/region_mean", "kl",
                                        "completions/distinct_2"};
static const char *const *g_want;

static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    (void)epoch;
    runlog *l = ud;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].name, "loss") && step > 0 && l->n_loss < 16) l->loss[l->n_loss++] = m[i].value;
        if (!strcmp(m[i].name, "blank_completions")) l->blank = m[i].value;
        if (!strcmp(m[i].name, "rewards/verifiable/mean") && step > 0) l->has_verifiable++;
        if (!strcmp(m[i].name, "rewards/judge/mean") && step > 0 && l->n_judge < 16)
            l->judge[l->n_judge++] = m[i].value;
        for (int k = 0; k < 8 && g_want; k++)
            if (!strcmp(m[i].name, g_want[k])) l->has[k]++;
    }
}

static void on_event(void *ud, al_log_level lvl, const char *msg) {
    if (lvl <= AL_LOG_WARN) ((runlog *)ud)->warns++;
    if (lvl <= AL_LOG_WARN && strstr(msg, "exceeded max_grad_norm")) ((runlog *)ud)->clip_warns++;
}

static void on_sample(void *ud, long step, const char *p, const char *c, double r) {
    (void)step;
    (void)p;
    (void)c;
    (void)r;
    ((runlog *)ud)->samples++;
}

static int run_job(const char *json, const char *resume, runlog *l, al_train_result *res) {
    al_train_cb cb = {.log = on_log, .event = on_event, .sample = on_sample, .ud = l};
    return t_train_json(json, resume, &cb, res, g_err);
}

static void test_runs(const char *tmp, const char *base, const char *rm) {
    char json[8192], out[1200], ck[1300];
    al_train_result res;
    /* GRPO, 4 steps, straight and resumed from step 2: the same losses */
    const char *GRPO = "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":64},"
                       "\"reward\":{\"verifiable\":{\"weight\":1,\"partial\":true},\"length_penalty\":0.01},"
                       "\"hyperparameters\":{\"batch_size\":8,\"num_generations\":4,\"max_steps\":4,"
                       "\"learning_rate\":0.001,\"max_completion_length\":6,\"beta\":0.05,\"logging_steps\":1,"
                       "\"save_steps\":2,\"temperature\":1.0},\"output_dir\":\"%s\",\"seed\":3}";
    snprintf(out, sizeof out, "%s/grpo", tmp);
    snprintf(json, sizeof json, GRPO, base, out);
    runlog a = {0}, b = {0};
    g_want = want_grpo;
    T_OK(run_job(json, NULL, &a, &res));
    T_EQ_INT(res.steps, 4);
    T_EQ_INT(res.output_is_model, 1);
    T_EQ_INT(a.n_loss, 4);
    for (int k = 0; k < 8; k++) T_REPORT_(a.has[k] > 0, "grpo metric %s missing", want_grpo[k]);
    T_TRUE(a.samples > 0);
    snprintf(ck, sizeof ck, "%s/checkpoint-2", out);
    T_TRUE(al_file_exists(ck));
    snprintf(out, sizeof out, "%s/grpo_resumed", tmp);
    snprintf(json, sizeof json, GRPO, base, out);
    T_OK(run_job(json, ck, &b, &res));
    T_EQ_INT(b.n_loss, 2);
    for (int k = 0; k < 2 && b.n_loss == 2; k++)
        T_REPORT_(a.loss[2 + k] == b.loss[k], "resumed grpo loss at step %d: %.9g vs %.9g", 3 + k, b.loss[k],
                  a.loss[2 + k]);

    /* PPO with LoRA and the shared-base critic, resumed likewise */
    const char *PPO = "{\"method\":\"ppo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":64},"
                      "\"lora\":{\"r\":4,\"alpha\":8},\"critic\":\"shared_base\","
                      "\"reward\":{\"verifiable\":1,\"reward_model\":\"%s\",\"missing_eos_penalty\":0.5,\"clip\":3},"
                      "\"hyperparameters\":{\"batch_size\":4,\"num_mini_batches\":2,\"num_ppo_epochs\":2,"
                      "\"max_steps\":4,\"learning_rate\":0.001,\"response_length\":6,\"logging_steps\":1,"
                      "\"save_steps\":2,\"adaptive_kl\":true,\"kl_estimator\":\"k3\",\"entropy_coef\":0.01,"
                      "\"sft_mix_ratio\":0.1,\"gradient_accumulation_steps\":2},\"output_dir\":\"%s\",\"seed\":5}";
    snprintf(out, sizeof out, "%s/ppo", tmp);
    snprintf(json, sizeof json, PPO, base, rm, out);
    runlog c = {0}, d = {0};
    g_want = want_ppo;
    T_OK(run_job(json, NULL, &c, &res));
    T_EQ_INT(c.n_loss, 4);
    for (int k = 0; k < 8; k++) T_REPORT_(c.has[k] > 0, "ppo metric %s missing", want_ppo[k]);
    snprintf(ck, sizeof ck, "%s/checkpoint-2/critic/adapter_model.safetensors", out);
    T_TRUE(al_file_exists(ck));
    snprintf(ck, sizeof ck, "%s/checkpoint-2", out);
    snprintf(out, sizeof out, "%s/ppo_resumed", tmp);
    snprintf(json, sizeof json, PPO, base, rm, out);
    T_OK(run_job(json, ck, &d, &res));
    T_EQ_INT(d.n_loss, 2);
    for (int k = 0; k < 2 && d.n_loss == 2; k++)
        T_REPORT_(c.loss[2 + k] == d.loss[k], "resumed ppo loss at step %d: %.9g vs %.9g", 3 + k, d.loss[k],
                  c.loss[2 + k]);

    /* PPO without LoRA: a separate critic initialised from the reward model */
    snprintf(out, sizeof out, "%s/ppo_sep", tmp);
    snprintf(json, sizeof json,
             "{\"method\":\"ppo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":16},"
             "\"reward\":{\"reward_model\":\"%s\"},\"critic\":\"separate\",\"hyperparameters\":{\"batch_size\":4,"
             "\"max_steps\":2,\"response_length\":4,\"whiten_rewards\":true},\"output_dir\":\"%s\"}", base, rm, out);
    runlog e = {0};
    T_OK(run_job(json, NULL, &e, &res));
    snprintf(ck, sizeof ck, "%s/critic/model.safetensors", out);
    T_TRUE(al_file_exists(ck));

    /* RLOO */
    snprintf(out, sizeof out, "%s/rloo", tmp);
    snprintf(json, sizeof json,
             "{\"method\":\"rloo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":16},"
             "\"reward\":{\"verifiable\":1,\"reward_model\":\"%s\"},\"hyperparameters\":{\"batch_size\":4,"
             "\"num_generations\":2,\"max_steps\":2,\"max_completion_length\":4,\"normalize_advantages\":true},\"output_dir\":\"%s\"}",
             base, rm, out);
    runlog f = {0};
    T_OK(run_job(json, NULL, &f, &res));
    T_EQ_INT(f.n_loss, 2);

    /* GRPO with an AI judge (the base model, through its chat template):
     * each completion's judge reward is its mean win probability against
     * the others of its group, and the two orders of every pair sum to 1,
     * so a group's mean is 1/2 exactly, at every step */
    snprintf(out, sizeof out, "%s/grpo_judge", tmp);
    snprintf(json, sizeof json,
             "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":16},"
             "\"reward\":{\"judge\":{\"model\":\"%s\",\"principles\":[\"The sum is right.\"]}},"
             "\"hyperparameters\":{\"batch_size\":4,\"num_generations\":4,\"max_steps\":2,\"logging_steps\":1,"
             "\"max_completion_length\":4,\"temperature\":1.0},\"output_dir\":\"%s\",\"seed\":2}",
             base, base, out);
    runlog jl = {0};
    T_OK(run_job(json, NULL, &jl, &res));
    T_EQ_INT(jl.n_loss, 2);
    T_EQ_INT(jl.n_judge, 2);
    for (int k = 0; k < jl.n_judge; k++) T_NEAR(jl.judge[k], 0.5, 1e-5);

    /* a judge whose template refuses fails the job naming the judge's field
     * as data: at the start when it refuses the bare instructions (GRPO),
     * in the step when it refuses a prompt's digits (GRPO, through
     * al_rewarder_score_rows; evaluate, its own comparison) */
    char judge[1300], jt[1400];
    snprintf(judge, sizeof judge, "%s/refusing_judge", tmp);
    tiny_model(judge, 1, 0);
    snprintf(jt, sizeof jt, "%s/chat_template.jinja", judge);
    const char *refuse[2] = {"{{ raise_exception('this judge refuses') }}",
                             "{% for m in messages %}{% for d in ['0','1','2','3','4','5','6','7','8','9'] %}"
                             "{% if d in m['content'] %}{{ raise_exception('this judge cannot read numbers') }}"
                             "{% endif %}{% endfor %}{{ m['content'] }}{% endfor %}"};
    const char *want_msg[3] = {"reward.judge.model: this judge refuses", "reward: this judge cannot read numbers",
                               "judge: this judge cannot read numbers"};
    al_error fe;
    for (int k = 0; k < 3; k++) {
        T_OK(al_file_write_atomic(jt, refuse[k > 0], strlen(refuse[k > 0]), g_err));
        snprintf(out, sizeof out, "%s/judge_refused%d", tmp, k);
        if (k < 2)
            snprintf(json, sizeof json,
                     "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":8},"
                     "\"reward\":{\"judge\":{\"model\":\"%s\"}},\"hyperparameters\":{\"batch_size\":2,"
                     "\"num_generations\":2,\"max_steps\":1,\"max_completion_length\":2},\"output_dir\":\"%s\"}",
                     base, judge, out);
        else
            snprintf(json, sizeof json,
                     "{\"method\":\"evaluate\",\"model\":\"%s\",\"model_b\":\"%s\",\"task\":{\"name\":"
                     "\"addition\",\"rows\":2},\"reward\":{\"judge\":{\"model\":\"%s\"}},\"hyperparameters\":"
                     "{\"max_completion_length\":2},\"output_dir\":\"%s\"}", base, base, judge, out);
        T_EQ_INT(t_train_json_at(json, NULL, NULL, &res, &fe), AL_EINVAL);
        T_STR_EQ(fe.field, "reward.judge.model");
        T_STR_EQ(fe.msg, want_msg[k]);
    }

    /* generate_preferences writes pairs a DPO job reads */
    snprintf(out, sizeof out, "%s/prefs", tmp);
    snprintf(json, sizeof json,
             "{\"method\":\"generate_preferences\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":12},"
             "\"reward\":{\"reward_model\":\"%s\"},\"hyperparameters\":{\"max_completion_length\":5},"
             "\"output_dir\":\"%s\"}", base, rm, out);
    runlog g = {0};
    T_OK(run_job(json, NULL, &g, &res));
    T_EQ_INT(res.output_is_model, 0);
    T_EQ_INT(res.n_output_files, 1);
    T_STR_EQ(res.output_files[0].purpose, "preferences");
    char *txt = NULL;
    size_t len = 0;
    T_OK(al_file_read(res.output_files[0].path, 1 << 20, &txt, &len, g_err));
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += txt[i] == '\n';
    T_TRUE(lines >= 8); /* 12 prompts; random completions rarely tie */
    json_t *row = txt ? json_loadb(txt, strchr(txt, '\n') ? (size_t)(strchr(txt, '\n') - txt) : len, 0, NULL) : NULL;
    T_TRUE(row && json_number_value(json_object_get(row, "score_chosen")) >
                      json_number_value(json_object_get(row, "score_rejected")));
    json_decref(row);
    free(txt);
    char dpo_out[1300];
    snprintf(dpo_out, sizeof dpo_out, "%s/dpo_from_prefs", tmp);
    snprintf(json, sizeof json,
             "{\"method\":\"dpo\",\"model\":\"%s\",\"training_file\":\"%s\",\"hyperparameters\":{\"max_steps\":1,"
             "\"batch_size\":4,\"max_length\":32},\"output_dir\":\"%s\"}", base, res.output_files[0].path, dpo_out);
    runlog h = {0};
    g_want = NULL;
    T_OK(run_job(json, NULL, &h, &res));

    /* blank completions (EOS first) score, but a pair never holds one: the
     * file must pass the dataset reader. 512 completions from the random
     * model, seed 2, include some (asserted, so the check below is real). */
    snprintf(out, sizeof out, "%s/prefs_blank", tmp);
    snprintf(json, sizeof json,
             "{\"method\":\"generate_preferences\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":32},"
             "\"reward\":{\"reward_model\":\"%s\"},\"hyperparameters\":{\"max_completion_length\":3,"
             "\"num_generations\":16},\"output_dir\":\"%s\",\"seed\":2}", base, rm, out);
    runlog gb = {0};
    T_OK(run_job(json, NULL, &gb, &res));
    T_REPORT_(gb.blank >= 1, "no blank completion among 512 (%g): the premise of this check", gb.blank);
    T_OK(al_file_read(res.output_files[0].path, 1 << 20, &txt, &len, g_err));
    int blank_pairs = 0, rows = 0;
    for (char *line = txt; line && *line;) {
        char *nl = strchr(line, '\n');
        json_t *o = json_loadb(line, nl ? (size_t)(nl - line) : strlen(line), 0, NULL);
        const char *ch = json_string_value(json_object_get(o, "chosen")),
                   *rj = json_string_value(json_object_get(o, "rejected"));
        blank_pairs += !ch || !rj || strspn(ch, " \n") == strlen(ch) || strspn(rj, " \n") == strlen(rj);
        rows++;
        json_decref(o);
        line = nl ? nl + 1 : NULL;
    }
    free(txt);
    printf("generate_preferences: %d pairs, %g blank completions left out\n", rows, gb.blank);
    T_TRUE(rows > 0);
    T_EQ_INT(blank_pairs, 0);

    /* evaluate: model against itself by a reward model: every comparison ties */
    snprintf(out, sizeof out, "%s/eval", tmp);
    snprintf(json, sizeof json,
             "{\"method\":\"evaluate\",\"model\":\"%s\",\"model_b\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":6},"
             "\"reward\":{\"reward_model\":\"%s\"},\"hyperparameters\":{\"max_completion_length\":4},"
             "\"output_dir\":\"%s\"}", base, base, rm, out);
    runlog k = {0};
    T_OK(run_job(json, NULL, &k, &res));
    T_STR_EQ(res.output_files[0].purpose, "evaluation");

    /* critique_revise with the model as its own critic */
    snprintf(out, sizeof out, "%s/cr", tmp);
    snprintf(json, sizeof json,
             "{\"method\":\"critique_revise\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":4},"
             "\"principles\":[\"Be correct.\",\"Be brief.\"],\"hyperparameters\":{\"max_completion_length\":4},"
             "\"output_dir\":\"%s\"}", base, out);
    runlog q = {0};
    T_OK(run_job(json, NULL, &q, &res));
    T_EQ_INT(res.n_output_files, 2);
    T_STR_EQ(res.output_files[0].purpose, "sft");
    T_STR_EQ(res.output_files[1].purpose, "pairs");

    /* Clipping at every update for HEALTH_WINDOW (10) steps is worth a
     * warning, once; a norm that is never clipped is not. The reward model
     * alone scores here, yet the samples' exact match is logged (weight 0:
     * the true accuracy beside the learned reward). */
    const char *CLIP = "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":64},"
                       "\"reward\":{\"reward_model\":\"%s\"},\"hyperparameters\":{\"batch_size\":8,\"num_generations\":4,"
                       "\"max_steps\":%d,\"learning_rate\":0.0001,\"max_completion_length\":4,\"logging_steps\":1,"
                       "\"max_grad_norm\":%g,\"save_steps\":0},\"output_dir\":\"%s/clip\",\"seed\":4}";
    runlog cw = {0};
    snprintf(json, sizeof json, CLIP, base, rm, 12, 1e-9, tmp);
    T_OK(run_job(json, NULL, &cw, &res));
    T_EQ_INT(cw.clip_warns, 1);
    T_EQ_INT(cw.has_verifiable, 12);
    runlog cw2 = {0};
    snprintf(json, sizeof json, CLIP, base, rm, 9, 1e-9, tmp);
    T_OK(run_job(json, NULL, &cw2, &res));
    T_EQ_INT(cw2.clip_warns, 0); /* 9 steps: not yet a pattern */
    runlog cw3 = {0};
    snprintf(json, sizeof json, CLIP, base, rm, 12, 1e6, tmp);
    T_OK(run_job(json, NULL, &cw3, &res));
    T_EQ_INT(cw3.clip_warns, 0);

    /* a missing reward model is an error naming the field */
    snprintf(json, sizeof json,
             "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":8},"
             "\"reward\":{\"reward_model\":\"%s/nope\"},\"hyperparameters\":{\"batch_size\":8,\"max_steps\":1}}",
             base, tmp);
    al_job job;
    T_OK(al_job_parse(&job, json, strlen(json), g_err));
    al_error fail;
    T_TRUE(al_train_run(&job, NULL, NULL, NULL, &fail) != AL_OK);
    T_REPORT_(strncmp(fail.msg, "reward.reward_model:", 20) == 0, "error \"%s\"", fail.msg);
    T_STR_EQ(fail.field, "reward.reward_model"); /* a field the message alone did not give the API */
    al_job_deinit(&job);
}

/* ---- training_files and hygiene in RL ------------------------------------------ */

/* What a run asked its verifier: each rollout's prompts (by the rows' own
 * "prompt"), one call per step, and the events. */
typedef struct mixlog {
    char prompts[16][8][48];
    int calls, per_call[16];
    long stop_after;
    char events[8192];
    double loss[16];
} mixlog;

static int mix_reward(void *ud, const al_reward_cfg *cfg, int n, const char *const *prompts,
                      const char *const *completions, const json_t *const *rows, float *rewards, char err[AL_ERRLEN]) {
    (void)cfg;
    (void)prompts;
    (void)completions;
    (void)err;
    mixlog *l = ud;
    for (int i = 0; i < n; i++) {
        rewards[i] = (float)(strlen(completions[i]) % 3);
        if (l->calls < 16 && i < 8)
            snprintf(l->prompts[l->calls][i], sizeof l->prompts[0][0], "%s",
                     json_string_value(json_object_get(rows[i], "prompt")));
    }
    if (l->calls < 16) l->per_call[l->calls] = n;
    l->calls++;
    return AL_OK;
}

static void mix_event(void *ud, al_log_level lvl, const char *msg) {
    (void)lvl;
    mixlog *l = ud;
    size_t k = strlen(l->events);
    snprintf(l->events + k, sizeof l->events - k, "%s\n", msg);
}

static void mix_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    (void)epoch;
    mixlog *l = ud;
    for (int i = 0; i < n; i++)
        if (!strcmp(m[i].name, "loss") && step < 16) l->loss[step] = m[i].value;
}

static int mix_stop(void *ud) {
    mixlog *l = ud;
    return l->stop_after && l->calls > l->stop_after;
}

/* GRPO over two prompt files mixed 1:3 and cleaned by the hygiene filters:
 * each step's prompts are the mixer's draws (lib/text/mix.h from the job's
 * seed, over the rows the filters kept), a short row never reaches a
 * rollout, and a run resumed from checkpoint-2 draws and logs what the
 * uninterrupted one did. */
static void test_mixture(const char *tmp, const char *base) {
    char a[1200], b[1200], rows[4096], json[4096], out[1200], ck[1300];
    snprintf(a, sizeof a, "%s/mix_a.jsonl", tmp);
    snprintf(b, sizeof b, "%s/mix_b.jsonl", tmp);
    size_t k = 0;
    for (int i = 0; i < 10; i++) {
        k += (size_t)snprintf(rows + k, sizeof rows - k, "{\"prompt\":\"alpha words %d\",\"answer\":\"%d\"}\n", i, i);
        if (i == 4) k += (size_t)snprintf(rows + k, sizeof rows - k, "{\"prompt\":\"short\",\"answer\":\"4\"}\n");
    }
    T_OK(al_file_write_atomic(a, rows, k, g_err));
    k = 0;
    for (int i = 0; i < 3; i++)
        k += (size_t)snprintf(rows + k, sizeof rows - k, "{\"prompt\":\"beta words %d\",\"answer\":\"%d\"}\n", i, i);
    T_OK(al_file_write_atomic(b, rows, k, g_err));
    const char *J = "{\"method\":\"grpo\",\"model\":\"%s\",\"training_files\":[{\"file\":\"%s\",\"weight\":1},"
                    "{\"file\":\"%s\",\"weight\":3}],\"hygiene\":{\"min_words\":3},"
                    "\"reward\":{\"http\":{\"url\":\"http://verifier.invalid/\"}},"
                    "\"hyperparameters\":{\"batch_size\":4,\"num_generations\":2,\"max_steps\":6,\"save_steps\":2,"
                    "\"logging_steps\":1,\"learning_rate\":0.001,\"max_completion_length\":4,\"temperature\":1.0},"
                    "\"output_dir\":\"%s\",\"seed\":11}";
    static mixlog full, stopped, resumed;
    al_train_cb cb = {.external_reward = mix_reward, .event = mix_event, .log = mix_log, .should_stop = mix_stop,
                      .ud = &full};
    al_train_result res;
    snprintf(out, sizeof out, "%s/grpo_mix", tmp);
    snprintf(json, sizeof json, J, base, a, b, out);
    T_OK(t_train_json(json, NULL, &cb, &res, g_err));
    T_EQ_INT(res.steps, 6);
    T_TRUE(strstr(full.events, "training_files[0]: hygiene kept 10 of 11 rows, 1 too short, 0 too long") != NULL);
    T_TRUE(strstr(full.events, "training_files[0]: 10 prompts, weight 1: 25.0% of the prompts drawn") != NULL);
    T_TRUE(strstr(full.events, "training_files[1]: 3 prompts, weight 3: 75.0% of the prompts drawn") != NULL);
    if (!strstr(full.events, "25.0% of the prompts")) fprintf(stderr, "%s", full.events);
    /* the draws, worked out with the mixer itself: rollout s (step 0's
     * measurement first) takes draws 2s and 2s+1, each num_generations times */
    char want[13][48];
    for (int i = 0; i < 10; i++) snprintf(want[i], sizeof want[i], "alpha words %d", i);
    for (int i = 0; i < 3; i++) snprintf(want[10 + i], sizeof want[i], "beta words %d", i);
    al_mix m;
    int32_t n[2] = {10, 3};
    double w[2] = {1, 3};
    char e2[AL_ERRLEN];
    T_OK(al_mix_init(&m, 2, n, w, 11, e2));
    T_EQ_INT(full.calls, 7);
    int from_b = 0;
    for (int s = 0; s < 7 && s < full.calls; s++) {
        if (s == 1) al_mix_rewind(&m); /* step 1 trains on the prompts step 0 measured */
        T_EQ_INT(full.per_call[s], 4);
        for (int q = 0; q < 2; q++) {
            int32_t d = al_mix_next(&m);
            from_b += s > 0 && d >= 10;
            for (int g = 0; g < 2; g++) T_STR_EQ(full.prompts[s][2 * q + g], want[d]);
        }
    }
    al_mix_deinit(&m);
    T_TRUE(from_b > 0 && from_b < 12);
    /* resumed from checkpoint-2: the same prompts and losses at steps 3..6 */
    stopped.stop_after = 4;
    cb.ud = &stopped;
    snprintf(out, sizeof out, "%s/grpo_mix_resumed", tmp);
    snprintf(json, sizeof json, J, base, a, b, out);
    T_EQ_INT(t_train_json(json, NULL, &cb, &res, g_err), AL_ECANCELED);
    snprintf(ck, sizeof ck, "%s/checkpoint-2/trainer_state.json", out);
    json_t *st = json_load_file(ck, 0, NULL);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(st, "mixer"), "draws")), 4);
    json_decref(st);
    snprintf(ck, sizeof ck, "%s/checkpoint-2", out);
    cb.ud = &resumed;
    T_OK(t_train_json(json, ck, &cb, &res, g_err));
    T_EQ_INT(resumed.calls, 4);
    for (int s = 0; s < 4 && s < resumed.calls; s++)
        for (int i = 0; i < 4; i++) T_STR_EQ(resumed.prompts[s][i], full.prompts[3 + s][i]);
    for (int s = 3; s <= 6; s++)
        T_REPORT_(resumed.loss[s] == full.loss[s], "resumed mixture loss at step %d: %.9g vs %.9g", s,
                  resumed.loss[s], full.loss[s]);
    /* evaluate measures its file as given; sampling jobs take one file */
    al_job j;
    snprintf(json, sizeof json, "{\"method\":\"evaluate\",\"model\":\"%s\",\"training_file\":\"%s\",\"output_dir\":"
             "\"%s\",\"hygiene\":{\"min_words\":2}}", base, a, out);
    T_EQ_INT(al_job_parse(&j, json, strlen(json), g_err), AL_EINVAL);
    T_TRUE(strstr(g_err, "hygiene: filters what a job trains on or generates from; evaluate") == g_err);
    snprintf(json, sizeof json, "{\"method\":\"generate_preferences\",\"model\":\"%s\",\"training_files\":"
             "[{\"file\":\"%s\"},{\"file\":\"%s\"}],\"output_dir\":\"%s\"}", base, a, b, out);
    T_EQ_INT(al_job_parse(&j, json, strlen(json), g_err), AL_EINVAL);
    T_TRUE(strstr(g_err, "training_files: mixing several files is for the training methods") == g_err);
}

/* ---- a data job paused and resumed ------------------------------------------------ */

/* Every logged line of a run as text, and the polls that pause it. */
typedef struct datalog {
    char lines[16][512];
    long steps[16];
    int n;
    int polls, pause_at; /* should_pause answers 1 at poll pause_at (0: never) */
} datalog;

static void data_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    datalog *l = ud;
    if (l->n >= 16) return;
    int k = snprintf(l->lines[l->n], sizeof l->lines[0], "%.17g", epoch);
    for (int i = 0; i < n && k < (int)sizeof l->lines[0]; i++)
        k += snprintf(l->lines[l->n] + k, sizeof l->lines[0] - (size_t)k, " %s=%.17g", m[i].name, m[i].value);
    l->steps[l->n++] = step;
}

static int data_pause(void *ud) {
    datalog *l = ud;
    return ++l->polls == l->pause_at;
}

/* generate_preferences paused after 2 of its 6 steps (a checkpoint of the
 * pairs so far, the cursor and the RNG), then resumed: the same file, byte
 * for byte, and the same metric lines as the run that never stopped. */
static void test_data_resume(const char *tmp, const char *base) {
    const char *J = "{\"method\":\"generate_preferences\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":%d},"
                    "\"reward\":{\"verifiable\":{\"weight\":1,\"partial\":true},\"length_penalty\":0.01},"
                    "\"hyperparameters\":{\"num_generations\":4,\"max_completion_length\":5,\"temperature\":1.0,"
                    "\"logging_steps\":1},\"output_dir\":\"%s\",\"seed\":6}";
    char json[2048], out[1200], path[1300], ck[1300];
    static datalog full, part;
    al_train_cb cb = {.log = data_log, .should_pause = data_pause, .ud = &full};
    al_train_result res;
    snprintf(out, sizeof out, "%s/prefs_full", tmp);
    snprintf(json, sizeof json, J, base, 24, out);
    T_OK(t_train_json(json, NULL, &cb, &res, g_err));
    T_EQ_INT(res.steps, 6);
    T_EQ_INT(full.n, 6);
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    snprintf(path, sizeof path, "%s/preferences.jsonl", out);
    T_OK(al_file_read(path, 1 << 20, &a, &na, g_err));
    T_TRUE(na > 0);
    snprintf(out, sizeof out, "%s/prefs_paused", tmp);
    snprintf(json, sizeof json, J, base, 24, out);
    part.pause_at = 3; /* before step 3 */
    cb.ud = &part;
    T_EQ_INT(t_train_json(json, NULL, &cb, &res, g_err), AL_EPAUSED);
    T_EQ_INT(res.steps, 2);
    snprintf(ck, sizeof ck, "%s/checkpoint-2", out);
    T_STR_EQ(res.last_checkpoint, ck);
    snprintf(path, sizeof path, "%s/preferences.jsonl", out);
    T_TRUE(!al_file_exists(path)); /* the job's file only when it ends */
    T_OK(t_train_json(json, ck, &cb, &res, g_err));
    T_EQ_INT(res.steps, 6);
    T_OK(al_file_read(path, 1 << 20, &b, &nb, g_err));
    T_TRUE(na == nb && a && b && !memcmp(a, b, na));
    T_EQ_INT(part.n, 6);
    for (int i = 0; i < part.n && i < full.n; i++) {
        T_EQ_INT(part.steps[i], full.steps[i]);
        T_STR_EQ(part.lines[i], full.lines[i]);
    }
    free(a);
    free(b);
    /* a checkpoint of another job is refused, naming both */
    snprintf(json, sizeof json, J, base, 20, out);
    T_EQ_INT(t_train_json(json, ck, NULL, &res, g_err), AL_EINVAL);
    T_REPORT_(strstr(g_err, "/checkpoint-2/trainer_state.json: written by another job (generate_preferences, 24 "
                            "prompts, 4 per step, step 2), not this generate_preferences of 20 prompts, 4 per step, "
                            "5 steps") != NULL, "error \"%s\"", g_err);
}

int main(void) {
    al_pool_init(2);
    test_kl();
    test_whiten();
    test_token_rewards_gae();
    test_group_adv();
    test_ppo_loss();
    test_ppo_value_only();
    test_grpo_loss();
    test_rewards();
    test_job();
    const char *tmp = t_tmpdir();
    char base[1100], rm[1100];
    snprintf(base, sizeof base, "%s/base", tmp);
    snprintf(rm, sizeof rm, "%s/rm", tmp);
    tiny_model(base, 1, 0);
    tiny_model(rm, 2, 1);
    test_shared_critic(base);
    test_turn_end_stop(tmp);
    test_runs(tmp, base, rm);
    test_mixture(tmp, base);
    test_data_resume(tmp, base);
    return t_done();
}

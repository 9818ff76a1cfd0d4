/* Reward models' activations (lib/train/reward.c): a rewarder sized for the
 * job's texts (al_reward_len) scores exactly as one sized for the model's
 * whole context, for texts within the bound, beyond it (the reservation
 * grows) and beyond the context (the last tokens kept); and the bound on a
 * completion's text (rl_completion_max_bytes) on the byte tokenizer, whose
 * lone bytes above 0x7f decode to U+FFFD, three bytes each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "model/model.h"
#include "t.h"
#include "t_model.h"
#include "text/tokenizer.h"
#include "train/rl.h"
#include "train/rl_int.h"

static char g_err[AL_ERRLEN];

static void tiny_rm(const char *dir) {
    t_shape s = {AL_ARCH_GPT2, .layers = 2, .C = 16, .heads = 2, .FF = 32, .max_T = 48, .score_head = 1};
    T_OK(t_save_byte_model(s, 3, dir, g_err));
}

/* Rewards from the one reward model rm, weight 1, nothing else. */
static al_reward_cfg rm_only(const char *rm) {
    al_reward_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.reward_model[0], sizeof cfg.reward_model[0], "%s", rm);
    cfg.n_reward_models = 1;
    cfg.reward_model_weight = 1;
    return cfg;
}

static void test_sized_scores(const char *rm) {
    al_reward_cfg cfg = rm_only(rm);
    cfg.missing_eos_penalty = -1;
    /* prompts of up to 4 bytes, completions of up to 3: 4 + 3 + slack tokens */
    al_reward_len small = {4, 3};
    al_rewarder *full = NULL, *sized = NULL;
    T_OK(al_rewarder_new(&full, &cfg, 0, 3, NULL, g_err));
    T_OK(al_rewarder_new(&sized, &cfg, 0, 3, &small, g_err));
    if (!full || !sized) goto out;
    /* within the bound, past it, past the context of 48 */
    const char *prompts[] = {"1+2=", "3+4=", "12+34=", "0+0=", "5+5=5+5=5+5=5+5=", "99+1=",
                             "a long prompt, longer than the model's context of forty-eight tokens: ", "7+8="};
    const char *comps[] = {"3", "", "46", "0", "10 and then some", "100",
                           "the reward model keeps the last tokens", "15"};
    int n = (int)(sizeof prompts / sizeof *prompts);
    float a[8], b[8], c[8];
    T_OK(al_rewarder_rm(full, n, prompts, comps, NULL, a, g_err));
    T_OK(al_rewarder_rm(sized, 3, prompts, comps, NULL, b, g_err)); /* first within the bound */
    T_OK(al_rewarder_rm(sized, n - 3, prompts + 3, comps + 3, NULL, b + 3, g_err));
    T_OK(al_rewarder_rm(sized, n, prompts, comps, NULL, c, g_err)); /* and again after growing */
    T_TRUE(memcmp(a, b, sizeof a) == 0);
    T_TRUE(memcmp(a, c, sizeof a) == 0);
    T_TRUE(a[0] != a[2]);
out:
    al_rewarder_free(full);
    al_rewarder_free(sized);
}

/* A completion that ended is scored at its EOS, one cut off at its last
 * token (TRL's get_reward on the truncated response): the values of one
 * forward of the model itself over the prompt, the completion and EOS. */
static void test_cut_off_scores(const char *rm) {
    al_reward_cfg cfg = rm_only(rm);
    al_rewarder *rw = NULL;
    T_OK(al_rewarder_new(&rw, &cfg, 0, 2, NULL, g_err));
    al_model *m = NULL;
    T_OK(al_model_open_ex(&m, rm, NULL, AL_OPEN_SCORE_HEAD | AL_OPEN_FROZEN, 0, g_err));
    if (!rw || !m) goto out;
    T_OK(al_model_reserve(m, 1, 8, AL_MODEL_FORWARD_ONLY, g_err));
    /* the byte vocabulary: one id per byte, 256 EOS; the template adds nothing */
    int32_t ids[6] = {'1', '+', '2', '=', '3', 256};
    float v[6];
    al_tokens in = {.B = 1, .T = 6, .ids = ids};
    al_fwd f = {.values = v};
    T_OK(al_model_forward(m, &in, &f));
    const char *prompts[] = {"1+2=", "1+2="}, *comps[] = {"3", "3"};
    int ended[] = {1, 0};
    float got[2];
    T_OK(al_rewarder_rm(rw, 2, prompts, comps, ended, got, g_err));
    T_NEAR(got[0], v[5], 1e-6);
    T_NEAR(got[1], v[4], 1e-6);
    T_TRUE(got[0] != got[1]);
out:
    al_model_free(m);
    al_rewarder_free(rw);
}

static void test_completion_bound(void) {
    al_tok *tok = al_tok_byte_new();
    T_TRUE(tok != NULL);
    if (!tok) return;
    T_EQ_INT((int)rl_completion_max_bytes(tok, 5), 15);
    /* five lone continuation bytes: the text the bound is for */
    int32_t ids[5] = {0x80, 0x81, 0xbf, 0xfe, 0xff};
    char *txt = NULL;
    size_t len = 0;
    T_OK(al_tok_decode(tok, ids, 5, 1, &txt, &len));
    T_EQ_INT((int)len, 15);
    free(txt);
    al_tok_free(tok);
}

int main(void) {
    al_pool_init(2);
    char rm[1100];
    snprintf(rm, sizeof rm, "%s/rm", t_tmpdir());
    tiny_rm(rm);
    test_sized_scores(rm);
    test_cut_off_scores(rm);
    test_completion_bound();
    return t_done();
}

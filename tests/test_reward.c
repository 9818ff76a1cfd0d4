/* The reward sources (lib/train/reward.c). Graded sources: the verifiable
 * reward with the job's grader and rows' own graders and answer lists, the
 * format reward, an external verifier through the runner's callback (its
 * failure fails the call), prompts read from a file with their errors by
 * line. Reward models' activations: a rewarder sized for the
 * job's texts (al_reward_len) scores exactly as one sized for the model's
 * whole context, for texts within the bound, beyond it (the reservation
 * grows) and beyond the context (the last tokens kept); and the bound on a
 * completion's text (al_completion_max_bytes) on the byte tokenizer, whose
 * lone bytes above 0x7f decode to U+FFFD, three bytes each. And a GRPO run
 * on the built-in word problems with the graders (test_word_problems_grpo). */
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "model/model.h"
#include "t.h"
#include "t_model.h"
#include "tasks/tasks.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/rl.h"
#include "train/trainer.h"
#include "train/rollout.h"

static char g_err[AL_ERRLEN];
static al_error g_fe; /* al_rewarder_score_rows's: the source's field beside the reason */
static al_error g_fail; /* the field at fault beside the reason */

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
    T_OK(al_rewarder_new(&full, &cfg, 0, 3, NULL, &g_fail));
    T_OK(al_rewarder_new(&sized, &cfg, 0, 3, &small, &g_fail));
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
    T_OK(al_rewarder_new(&rw, &cfg, 0, 2, NULL, &g_fail));
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

/* ---- the AI judge ---- */

static al_reward_cfg judge_only(const char *jm) {
    al_reward_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.judge_model, sizeof cfg.judge_model, "%s", jm);
    snprintf(cfg.principles[0], sizeof cfg.principles[0], "Be correct.");
    snprintf(cfg.principles[1], sizeof cfg.principles[1], "Be brief.");
    cfg.n_principles = 2;
    cfg.judge_weight = 1;
    cfg.missing_eos_penalty = -1;
    return cfg;
}

/* P(the judge answers A) for (prompt, x, y) worked out by hand: the judge's
 * instructions as the issue describes them (a system turn with the
 * principles, a user turn with the prompt and both responses) through the
 * model's chat template, one forward, and sigmoid(logp("A") - logp("B"))
 * at the last position; "A" and "B" are bytes 65 and 66. */
static double hand_p_a(al_model *m, const al_chat *chat, const char *prompt, const char *x, const char *y) {
    char user[1024];
    snprintf(user, sizeof user,
             "Prompt:\n%s\n\nResponse A:\n%s\n\nResponse B:\n%s\n\nWhich response is better? "
             "Answer with the single letter A or B.",
             prompt, x, y);
    json_t *msgs = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content",
                             "You compare two responses to a prompt and say which is better. Judge them by "
                             "these principles:\n- Be correct.\n- Be brief.",
                             "role", "user", "content", user);
    al_seq q;
    T_OK(al_chat_encode_prompt_messages(chat, msgs, NULL, &q, g_err));
    json_decref(msgs);
    int T = q.n;
    int32_t *ids = malloc((size_t)T * sizeof *ids), *tgt = malloc((size_t)T * sizeof *tgt);
    float *lp = malloc((size_t)T * sizeof *lp);
    double l[2] = {0, 0};
    for (int t = 0; t < T; t++) ids[t] = q.ids[t];
    T_OK(al_model_reserve(m, 1, T, AL_MODEL_FORWARD_ONLY, g_err));
    for (int k = 0; k < 2; k++) {
        for (int t = 0; t < T; t++) tgt[t] = t == T - 1 ? 65 + k : -1;
        al_tokens in = {.B = 1, .T = T, .ids = ids, .targets = tgt};
        al_fwd f = {.logp = lp};
        T_OK(al_model_forward(m, &in, &f));
        l[k] = lp[T - 1];
    }
    al_seq_deinit(&q);
    free(ids);
    free(tgt);
    free(lp);
    return 1.0 / (1.0 + exp(l[1] - l[0]));
}

/* The judge's verdict is the hand-worked one averaged over both orders, so
 * position bias cancels: p(a, b) + p(b, a) = 1 and p(a, a) = 1/2; a group's
 * judge rewards are each completion's mean win probability against the
 * others (summing to G/2); a judge sized for the job's texts (len) answers
 * as one reserved for its whole context, within the bound and past it. */
static void test_judge(const char *jm) {
    al_reward_cfg cfg = judge_only(jm);
    al_reward_len small = {4, 3};
    al_rewarder *full = NULL, *sized = NULL;
    al_model *m = NULL;
    al_tok *tok = NULL;
    al_chat *chat = NULL;
    T_OK(al_rewarder_new(&full, &cfg, 0, 3, NULL, &g_fail));
    T_OK(al_rewarder_new(&sized, &cfg, 0, 3, &small, &g_fail));
    T_OK(al_model_open_ex(&m, jm, NULL, AL_OPEN_FROZEN, 0, g_err));
    T_OK(al_tok_load(&tok, jm, g_err));
    if (tok) T_OK(al_chat_new(&chat, tok, NULL, g_err));
    if (!full || !sized || !m || !chat) goto out;
    const char *prompt = "1+2=", *comps[] = {"3", "4", "three, or so I am told"};
    double p_ab = 0, p_ba = 0, p_aa = 0, s_ab = 0, s_long = 0, f_long = 0;
    T_OK(al_rewarder_judge(full, prompt, comps[0], comps[1], &p_ab, g_err));
    T_OK(al_rewarder_judge(full, prompt, comps[1], comps[0], &p_ba, g_err));
    T_OK(al_rewarder_judge(full, prompt, comps[0], comps[0], &p_aa, g_err));
    double want = 0.5 * (hand_p_a(m, chat, prompt, comps[0], comps[1]) +
                         1.0 - hand_p_a(m, chat, prompt, comps[1], comps[0]));
    T_NEAR(p_ab, want, 1e-6);
    T_TRUE(p_ab > 0 && p_ab < 1 && fabs(p_ab - 0.5) > 1e-6);
    T_NEAR(p_ab + p_ba, 1.0, 1e-9);
    T_NEAR(p_aa, 0.5, 1e-9);
    T_OK(al_rewarder_judge(sized, prompt, comps[0], comps[1], &s_ab, g_err));
    T_NEAR(s_ab, p_ab, 1e-9);
    T_OK(al_rewarder_judge(sized, prompt, comps[2], comps[1], &s_long, g_err)); /* past the bound */
    T_OK(al_rewarder_judge(full, prompt, comps[2], comps[1], &f_long, g_err));
    T_NEAR(s_long, f_long, 1e-9);
    /* one group of three */
    const char *prompts[] = {prompt, prompt, prompt}, *answers[] = {NULL, NULL, NULL};
    int lens[] = {1, 1, 22}, eos[] = {1, 1, 1};
    float sc[3];
    T_OK(al_rewarder_score(full, 3, 3, prompts, comps, answers, lens, eos, sc, NULL, g_err));
    double sum = 0;
    for (int i = 0; i < 3; i++) {
        double mean = 0, p;
        for (int j = 0; j < 3; j++) {
            if (j == i) continue;
            T_OK(al_rewarder_judge(full, prompt, comps[i], comps[j], &p, g_err));
            mean += p / 2;
        }
        T_NEAR(sc[i], mean, 1e-5);
        sum += sc[i];
    }
    T_NEAR(sum, 1.5, 1e-5);
out:
    al_chat_free(chat);
    al_tok_free(tok);
    al_model_free(m);
    al_rewarder_free(full);
    al_rewarder_free(sized);
}

static void test_completion_bound(void) {
    al_tok *tok = al_tok_byte_new();
    T_TRUE(tok != NULL);
    if (!tok) return;
    T_EQ_INT((int)al_completion_max_bytes(tok, 5), 15);
    /* five lone continuation bytes: the text the bound is for */
    int32_t ids[5] = {0x80, 0x81, 0xbf, 0xfe, 0xff};
    char *txt = NULL;
    size_t len = 0;
    T_OK(al_tok_decode(tok, ids, 5, 1, &txt, &len));
    T_EQ_INT((int)len, 15);
    free(txt);
    al_tok_free(tok);
}

/* ---- graded sources: verifiable with graders, format, an external verifier ---- */

/* A fake external verifier: the reward is the completion's length, or an
 * error when a completion says "fail"; it records how it was called. */
typedef struct fake_ext {
    int calls, max_n;
    char last_row[256];
} fake_ext;

static int fake_reward(void *ud, const al_reward_cfg *cfg, int n, const char *const *prompts,
                       const char *const *completions, const json_t *const *rows, float *rewards,
                       char err[AL_ERRLEN]) {
    fake_ext *f = ud;
    (void)prompts;
    f->calls++;
    if (n > f->max_n) f->max_n = n;
    if (n > cfg->http_batch) return al_err(err, AL_EINVAL, "batch too large");
    char *d = json_dumps(rows[n - 1], JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(f->last_row, sizeof f->last_row, "%s", d ? d : "");
    free(d);
    for (int i = 0; i < n; i++) {
        if (strstr(completions[i], "fail")) return al_err(err, AL_EINVAL, "HTTP 500: {\"detail\": \"boom\"}");
        rewards[i] = (float)strlen(completions[i]);
    }
    return AL_OK;
}

static void test_graded_sources(void) {
    al_reward_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    al_grader_cfg_default(&cfg.grader);
    cfg.grader.extract = AL_EXTRACT_HASH;
    cfg.grader.compare = AL_COMPARE_NUMERIC;
    cfg.verifiable = 1;
    snprintf(cfg.format_regex, sizeof cfg.format_regex, "^.*\\n#### ");
    cfg.format_weight = 0.25f;
    snprintf(cfg.http_url, sizeof cfg.http_url, "http://127.0.0.1:1/");
    cfg.http_weight = 0.5f;
    cfg.http_batch = 2;
    al_rewarder *rw = NULL;
    T_OK(al_rewarder_new(&rw, &cfg, 0, 4, NULL, &g_fail));
    /* no runner callback: refused at set-up, never a silent 0 */
    T_EQ_INT(al_rewarder_attach(rw, NULL, &g_fail), AL_EINVAL);
    T_STR_EQ(g_fail.msg, "reward.http: this runner cannot call external verifiers");
    T_STR_EQ(g_fail.field, "reward.http");
    fake_ext fx = {0};
    al_train_cb cb = {.external_reward = fake_reward, .ud = &fx};
    T_OK(al_rewarder_attach(rw, &cb, &g_fail));
    /* per-row answers: a list, and a row of its own grader (casefold) */
    const char *a0[] = {"1000"}, *a1[] = {"forty-two", "42"}, *a2[] = {"Paris"};
    al_grader_cfg cf;
    al_grader_cfg_default(&cf);
    cf.compare = AL_COMPARE_CASEFOLD;
    al_grader *own = NULL;
    T_OK(al_grader_new(&own, &cf, "grader", NULL));
    json_t *row2 = json_pack("{s:s, s:s}", "prompt", "capital?", "answer", "Paris");
    al_reward_row r0 = {a0, 1, NULL, NULL}, r1 = {a1, 2, NULL, NULL}, r2 = {a2, 1, own, row2};
    const al_reward_row *rows[5] = {&r0, &r0, &r1, &r2, NULL};
    const char *prompts[5] = {"p0", "p0", "p1", "capital?", "p4"};
    const char *comps[5] = {"so 1,000\n#### 1,000", "#### 999", "x\n#### 42.", "  PARIS ", "nothing"};
    int lens[5] = {3, 3, 3, 3, 3}, eos[5] = {1, 1, 1, 1, 1};
    float sc[5], v[5], fm[5], hv[5], ex[5];
    al_reward_parts parts = {.verifiable = v, .format = fm, .http = hv, .extracted = ex};
    T_OK(al_rewarder_score_rows(rw, 5, 1, prompts, comps, rows, lens, eos, sc, &parts, &g_fe));
    float want_v[5] = {1, 0, 1, 1, 0}, want_f[5] = {1, 0, 1, 0, 0};
    for (int i = 0; i < 5; i++) {
        T_NEAR(v[i], want_v[i], 0);
        T_NEAR(fm[i], want_f[i], 0);
        T_NEAR(hv[i], strlen(comps[i]), 0);
        T_NEAR(sc[i], want_v[i] + 0.25 * want_f[i] + 0.5 * strlen(comps[i]), 1e-5);
    }
    T_NEAR(ex[1], 1, 0);   /* "#### 999": found, wrong */
    T_NEAR(ex[3], 1, 0);   /* casefold extracts the whole text */
    T_TRUE(isnan(ex[4]));  /* no answers */
    T_EQ_INT(fx.calls, 3); /* 5 completions, 2 a request */
    T_EQ_INT(fx.max_n, 2);
    /* the last request's last row: a built-in task's row is {prompt, answer} */
    T_STR_EQ(fx.last_row, "{\"answer\":null,\"prompt\":\"p4\"}");
    /* a row with its data row goes as it is */
    const al_reward_row *one[1] = {&r2};
    const char *p1[1] = {"capital?"}, *c1[1] = {"Paris"};
    T_OK(al_rewarder_score_rows(rw, 1, 1, p1, c1, one, lens, eos, sc, NULL, &g_fe));
    T_STR_EQ(fx.last_row, "{\"answer\":\"Paris\",\"prompt\":\"capital?\"}");
    /* the verifier's failure fails the call with its answer in the error */
    const char *cf2[5] = {"ok", "ok", "ok", "fail", "ok"};
    T_EQ_INT(al_rewarder_score_rows(rw, 5, 1, prompts, cf2, rows, lens, eos, sc, NULL, &g_fe), AL_EINVAL);
    T_STR_EQ(g_fe.msg, "reward.http: HTTP 500: {\"detail\": \"boom\"}");
    T_STR_EQ(g_fe.field, "reward.http");
    int correct = -1;
    T_OK(al_rewarder_correct(rw, "#### 1000", &r0, &correct, g_err));
    T_EQ_INT(correct, 1);
    T_OK(al_rewarder_correct(rw, "#### 1000", NULL, &correct, g_err));
    T_EQ_INT(correct, 0);
    al_rewarder_free(rw);
    al_grader_free(own);
    json_decref(row2);
}

/* Prompts from a data file: a list of accepted answers, a row's own grader,
 * and the errors naming the line of a bad grader or an answer the grader
 * can never match. */
static void test_file_rows(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/rows.jsonl", t_tmpdir());
    FILE *f = fopen(path, "w");
    T_TRUE(f != NULL);
    if (!f) return;
    fputs("{\"prompt\":\"a\",\"answer\":[\"#### 42\",\"#### 41\"]}\n"
          "{\"prompt\":\"b\",\"answer\":\"Oslo\",\"grader\":{\"extract\":\"none\",\"compare\":\"casefold\"}}\n"
          "{\"prompt\":\"c\",\"answer\":\"Rome\",\"grader\":{\"extract\":\"none\",\"compare\":\"casefold\"}}\n", f);
    fclose(f);
    al_tok *tok = al_tok_byte_new();
    al_chat *chat = NULL;
    T_OK(al_chat_new(&chat, tok, NULL, g_err));
    char js[1500];
    snprintf(js, sizeof js, "{\"method\":\"grpo\",\"model\":\"m\",\"training_file\":\"%s\","
             "\"reward\":{\"verifiable\":{\"grader\":\"hash\"}}}", path);
    al_job job;
    T_OK(al_job_parse(&job, js, strlen(js), g_err));
    al_prompts p = {0};
    T_OK(al_prompts_load(&p, &job, chat, 0, 0, 0, 0, path, "training_file", 0, &g_fail));
    T_EQ_INT(p.n, 3);
    if (p.n == 3) {
        T_EQ_INT(p.ref[0].n_answers, 2);
        T_STR_EQ(p.ref[0].answers[1], "#### 41");
        T_TRUE(p.ref[0].grader == NULL);
        T_TRUE(p.ref[1].grader != NULL && p.ref[1].grader == p.ref[2].grader); /* equal rows share one */
        T_EQ_INT(p.graders.n, 1);
        T_TRUE(json_is_object(p.ref[1].row));
        al_rewarder *rw = NULL;
        T_OK(al_rewarder_new(&rw, &job.reward, 0, 4, NULL, &g_fail));
        const al_reward_row *rows[3] = {&p.ref[0], &p.ref[1], &p.ref[2]};
        const char *prompts[3] = {"a", "b", "c"}, *comps[3] = {"#### 41", " oslo", "Roma"};
        int lens[3] = {1, 1, 1}, eos[3] = {1, 1, 1};
        float sc[3];
        T_OK(al_rewarder_score_rows(rw, 3, 1, prompts, comps, rows, lens, eos, sc, NULL, &g_fe));
        T_NEAR(sc[0], 1, 0);
        T_NEAR(sc[1], 1, 0);
        T_NEAR(sc[2], 0, 0);
        al_rewarder_free(rw);
    }
    al_prompts_free(&p);
    /* a bad grader column, and an answer the hash grader cannot read as a number */
    f = fopen(path, "w");
    fputs("{\"prompt\":\"a\",\"answer\":\"1\"}\n{\"prompt\":\"b\",\"answer\":\"2\",\"grader\":{\"compare\":\"near\"}}\n", f);
    fclose(f);
    T_EQ_INT(al_prompts_load(&p, &job, chat, 0, 0, 0, 0, path, "training_file", 0, &g_fail), AL_EINVAL);
    T_STR_EQ(g_fail.msg, "training_file: line 2: grader.compare: must be \"exact\", \"casefold\", \"numeric\" or \"auto\"");
    T_STR_EQ(g_fail.field, "training_file"); /* the job's field: the file the line is in */
    al_prompts_free(&p);
    f = fopen(path, "w");
    fputs("{\"prompt\":\"a\",\"answer\":\"1\"}\n{\"prompt\":\"b\",\"answer\":\"two\"}\n", f);
    fclose(f);
    T_EQ_INT(al_prompts_load(&p, &job, chat, 0, 0, 0, 0, path, "training_file", 0, &g_fail), AL_EINVAL);
    T_STR_EQ(g_fail.msg, "training_file: line 2: the answer 'two' is not a number (the grader compares numbers)");
    T_STR_EQ(g_fail.field, "training_file");
    al_prompts_free(&p);
    /* word_problems grades its worked solutions by the answer line unless the job chose */
    al_job_deinit(&job);
    const char *wp = "{\"method\":\"grpo\",\"model\":\"m\",\"task\":{\"name\":\"word_problems\"},"
                     "\"reward\":{\"verifiable\":1}}";
    T_OK(al_job_parse(&job, wp, strlen(wp), g_err));
    T_OK(al_prompts_load(&p, &job, chat, 1, 4, 7, AL_SPLIT_TRAIN, NULL, "task", 0, &g_fail));
    if (p.n == 4) {
        T_TRUE(p.ref[0].grader != NULL && p.ref[3].grader == p.ref[0].grader);
        T_EQ_INT(al_grader_config(p.ref[0].grader)->extract, AL_EXTRACT_HASH);
        al_rewarder *rw = NULL;
        T_OK(al_rewarder_new(&rw, &job.reward, 0, 4, NULL, &g_fail));
        char good[64];
        size_t a;
        const char *hs = strstr(p.answer[0], "####");
        a = hs ? strlen(hs) : 0;
        snprintf(good, sizeof good, "I think... %.*s", (int)a, hs ? hs : "");
        int correct = 0;
        T_OK(al_rewarder_correct(rw, good, &p.ref[0], &correct, g_err));
        T_EQ_INT(correct, 1);
        T_OK(al_rewarder_correct(rw, "#### -1", &p.ref[0], &correct, g_err));
        T_EQ_INT(correct, 0);
        al_rewarder_free(rw);
    }
    al_prompts_free(&p);
    al_job_deinit(&job);
    al_chat_free(chat);
    al_tok_free(tok);
}

/* ---- the graders on sampled completions ---------------------------------------------- */

/* A model that samples the same distribution at every position (a GPT-2
 * whose final norm has weight 0 and bias e_0, so logits = wte[:, 0]): '#'
 * and '1' (0.39 each), ' ' and EOS (0.14 each); every other byte never. */
static void sampler_model(const char *dir) {
    t_shape sh = {AL_ARCH_GPT2, .layers = 1, .C = 16, .heads = 2, .FF = 32, .max_T = 48};
    al_model_config c = t_byte_config(sh);
    al_model *m = al_model_new(&c, NULL, g_err);
    if (!m) return;
    al_model_init(m, 11);
    int n;
    al_param *p = al_model_params(m, &n);
    for (int i = 0; i < n; i++) {
        if (!strcmp(p[i].name, "transformer.wte.weight"))
            for (int v = 0; v < 260; v++)
                p[i].w[(size_t)v * 16] = v == '#' || v == '1' ? 2.0f : v == 256 || v == ' ' ? 1.0f : -30.0f;
        if (!strcmp(p[i].name, "transformer.ln_f.weight")) memset(p[i].w, 0, p[i].n * sizeof(float));
        if (!strcmp(p[i].name, "transformer.ln_f.bias")) {
            memset(p[i].w, 0, p[i].n * sizeof(float));
            p[i].w[0] = 1;
        }
    }
    T_OK(al_model_save(m, dir, g_err));
    al_model_free(m);
}

/* The verdicts worked out without lib/train/grader.c: "last_number" is the
 * last run of digits (this alphabet has no signs, commas or points); "hash"
 * the rest of the line after the last "####" (and any more '#'), trimmed.
 * Rows "p?1..." answer "1", rows "p?2..." "11"; rows "ph..." grade by hash. */
static int expected(const char *completion, const char *answer, int hash) {
    char got[64] = "";
    if (hash) {
        const char *p = NULL, *q = completion;
        while ((q = strstr(q, "####"))) p = q++;
        if (!p) return 0;
        p += 4;
        while (*p == '#') p++;
        while (*p == ' ') p++;
        size_t k = strcspn(p, "\n");
        while (k && p[k - 1] == ' ') k--;
        snprintf(got, sizeof got, "%.*s", (int)k, p);
    } else {
        size_t n = strlen(completion), e = n;
        while (e && !(completion[e - 1] >= '0' && completion[e - 1] <= '9')) e--;
        size_t b = e;
        while (b && completion[b - 1] >= '0' && completion[b - 1] <= '9') b--;
        snprintf(got, sizeof got, "%.*s", (int)(e - b), completion + b);
    }
    return got[0] && !strcmp(got, answer);
}

typedef struct sampled {
    int n, agree, ones;
} sampled;

static void on_grpo_sample(void *ud, long step, const char *prompt, const char *completion, double reward) {
    sampled *s = ud;
    (void)step;
    int hash = prompt[1] == 'h';              /* rows "ph..." carry the hash grader */
    const char *answer = prompt[2] == '1' ? "1" : "11";
    s->n++;
    s->agree += reward == expected(completion, answer, hash);
    s->ones += reward == 1;
}

/* Sampled completions graded in two runners: an evaluate job at temperature
 * 1 writes each completion with the grader's verdict (evaluation.jsonl), and
 * a GRPO run logs its samples with their rewards; every verdict must match
 * the rule above, rows of the file with their own grader (hash) included,
 * and both verdicts must occur. */
static void test_sampled_completions(void) {
    const char *tmp = t_tmpdir();
    char model[1100], data[1100], out[1100], json[4096];
    snprintf(model, sizeof model, "%s/sampler", tmp);
    snprintf(data, sizeof data, "%s/graded.jsonl", tmp);
    snprintf(out, sizeof out, "%s/graded_eval", tmp);
    sampler_model(model);
    FILE *f = fopen(data, "w");
    T_TRUE(f != NULL);
    if (!f) return;
    for (int i = 0; i < 64; i++)
        fprintf(f, "{\"prompt\": \"p%c%c%d\", \"answer\": \"%s\"%s}\n", i % 4 < 2 ? 'h' : 'n', i % 2 ? '1' : '2', i,
                i % 2 ? "1" : "11", i % 4 < 2 ? ", \"grader\": {\"extract\": \"hash\"}" : "");
    fclose(f);
    snprintf(json, sizeof json,
             "{\"method\":\"evaluate\",\"model\":\"%s\",\"training_file\":\"%s\",\"output_dir\":\"%s\","
             "\"reward\":{\"verifiable\":{\"grader\":\"last_number\"}},\"seed\":3,"
             "\"hyperparameters\":{\"temperature\":1,\"max_completion_length\":10}}",
             model, data, out);
    al_job job;
    T_OK(al_job_parse(&job, json, strlen(json), g_err));
    al_train_result res;
    T_OK(al_train_run(&job, NULL, NULL, &res, &g_fail));
    al_job_deinit(&job);
    char path[1200];
    snprintf(path, sizeof path, "%s/evaluation.jsonl", out);
    f = fopen(path, "r");
    T_TRUE(f != NULL);
    int rows = 0, agree = 0, ones = 0;
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *pr = json_string_value(json_object_get(o, "prompt")), *c = json_string_value(json_object_get(o, "completion_a"));
        int verdict = json_is_true(json_object_get(o, "correct_a"));
        if (pr && c) {
            rows++;
            agree += verdict == expected(c, pr[2] == '1' ? "1" : "11", pr[1] == 'h');
            ones += verdict;
        }
        json_decref(o);
    }
    if (f) fclose(f);
    T_EQ_INT(rows, 64);
    T_EQ_INT(agree, rows);
    T_TRUE(ones > 0 && ones < rows);
    fprintf(stderr, "evaluate: %d of %d sampled completions graded right\n", ones, rows);
    /* GRPO's own rewards on its samples (learning rate 0: the sampler stays as it is) */
    snprintf(json, sizeof json,
             "{\"method\":\"grpo\",\"model\":\"%s\",\"training_file\":\"%s\","
             "\"reward\":{\"verifiable\":{\"grader\":\"last_number\"}},\"seed\":5,"
             "\"hyperparameters\":{\"max_steps\":32,\"batch_size\":4,\"num_generations\":2,\"learning_rate\":0,"
             "\"max_completion_length\":10,\"logging_steps\":1}}",
             model, data);
    sampled sm = {0};
    al_train_cb cb = {.sample = on_grpo_sample, .ud = &sm};
    T_OK(al_job_parse(&job, json, strlen(json), g_err));
    T_OK(al_train_run(&job, NULL, &cb, &res, &g_fail));
    al_job_deinit(&job);
    T_TRUE(sm.n >= 64);
    T_EQ_INT(sm.agree, sm.n);
    T_TRUE(sm.ones > 0 && sm.ones < sm.n);
    fprintf(stderr, "grpo: %d of %d samples rewarded\n", sm.ones, sm.n);
}

/* ---- GRPO on the built-in word problems ---------------------------------------------- */

enum { WP_ROWS = 4, WP_SEED = 7, WP_STEPS = 6, WP_BATCH = 8 };

typedef struct wp_run {
    al_task_row rows[WP_ROWS];
    regex_t fmt;
    int steps, sources_ok, sums_ok, fractions_ok;
    int samples, checked, agree, unknown_prompt, both; /* both: right and well formed (reward 1.5) */
} wp_run;

/* The verifiable verdict worked out without lib/train/grader.c: the rest
 * of the line after the last "####", trimmed; a run of digits compares as
 * a number with the row's final answer, nothing there scores 0, anything
 * else (which the numeric grader might still read, "12." or "12 pens") is
 * not checked: -1. */
static int wp_verdict(const char *completion, const char *answer) {
    const char *p = NULL, *q = completion;
    while ((q = strstr(q, "####"))) p = q++;
    if (!p) return 0;
    p += 4;
    while (*p == ' ' || *p == '\t') p++;
    size_t k = strcspn(p, "\n");
    while (k && (p[k - 1] == ' ' || p[k - 1] == '\t' || p[k - 1] == '\r')) k--;
    if (k == 0) return 0;
    for (size_t i = 0; i < k; i++)
        if (p[i] < '0' || p[i] > '9') return -1;
    const char *a = strstr(answer, "#### ");
    return a && strtol(p, NULL, 10) == strtol(a + 5, NULL, 10);
}

static void wp_on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    wp_run *w = ud;
    (void)step;
    (void)epoch;
    double rw = NAN, v = NAN, f = NAN, x = NAN;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].name, "reward")) rw = m[i].value;
        if (!strcmp(m[i].name, "rewards/verifiable/mean")) v = m[i].value;
        if (!strcmp(m[i].name, "rewards/format/mean")) f = m[i].value;
        if (!strcmp(m[i].name, "rewards/verifiable/extracted")) x = m[i].value;
    }
    if (isnan(rw)) return; /* not a training step's row */
    w->steps++;
    w->sources_ok += !isnan(v) && !isnan(f) && !isnan(x);
    /* the reward is the sources' weighted sum: verifiable 1, format 0.5 */
    w->sums_ok += fabs(rw - (v + 0.5 * f)) < 1e-5;
    /* each source's mean is a count of the batch's 8 completions */
    w->fractions_ok += fabs(v * WP_BATCH - round(v * WP_BATCH)) < 1e-5 && fabs(f * WP_BATCH - round(f * WP_BATCH)) < 1e-5;
}

static void wp_on_sample(void *ud, long step, const char *prompt, const char *completion, double reward) {
    wp_run *w = ud;
    (void)step;
    w->samples++;
    const al_task_row *row = NULL;
    for (int i = 0; i < WP_ROWS; i++)
        if (!strcmp(w->rows[i].prompt, prompt)) row = &w->rows[i];
    if (!row) {
        w->unknown_prompt++;
        return;
    }
    int v = wp_verdict(completion, row->answer);
    int f = regexec(&w->fmt, completion, 0, NULL, 0) == 0;
    if (v < 0) return;
    w->checked++;
    w->agree += fabs(reward - (v + 0.5 * f)) < 1e-6;
    w->both += v == 1 && f;
}

/* A GRPO job on the built-in word problems with the graders: the answer
 * line ("#### n", the hash grader, numeric equality) and a format reward (the
 * worked solution's shape) as a second source of weight 0.5, from a model
 * SFT'd on the job's 4 problems until it mostly writes their solutions. A
 * mechanism test, no learning claim: every step logs each source's mean, the
 * reward is their weighted sum, every sample's reward is what the rules
 * above give it, and some samples are right and well formed; then the
 * job's own reward configuration on written completions: right 1.5, a wrong
 * answer in the right shape 0.5 (the format alone), the answer line alone
 * 1, garbled or without an answer line 0. */
static void test_word_problems_grpo(void) {
    const char *tmp = t_tmpdir();
    char base[1100], sft[1100], out[1100], json[4096];
    snprintf(base, sizeof base, "%s/wp_base", tmp);
    snprintf(sft, sizeof sft, "%s/wp_sft", tmp);
    snprintf(out, sizeof out, "%s/wp_grpo", tmp);
    /* a context for the problems (about 100 bytes) and their solutions */
    T_OK(t_save_byte_model((t_shape){AL_ARCH_GPT2, .layers = 2, .C = 64, .heads = 4, .FF = 256, .max_T = 160}, 1,
                           base, g_err));
    snprintf(json, sizeof json,
             "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"word_problems\",\"rows\":%d,\"seed\":%d},"
             "\"output_dir\":\"%s\",\"seed\":1,\"hyperparameters\":{\"max_steps\":150,\"learning_rate\":0.003,"
             "\"batch_size\":4,\"lr_scheduler_type\":\"constant\",\"max_length\":160,\"logging_steps\":1000}}",
             base, WP_ROWS, WP_SEED, sft);
    al_job job;
    al_train_result res;
    T_OK(al_job_parse(&job, json, strlen(json), g_err));
    T_OK(al_train_run(&job, NULL, NULL, &res, &g_fail));
    al_job_deinit(&job);
    wp_run *w = calloc(1, sizeof *w);
    T_TRUE(w != NULL);
    if (!w) return;
    for (int i = 0; i < WP_ROWS; i++)
        T_OK(al_task_row_get("word_problems", AL_SPLIT_TRAIN, WP_SEED, (uint64_t)i, &w->rows[i]));
    T_EQ_INT(regcomp(&w->fmt, "^[0-9]+[*+-][0-9]+=[0-9]+\\. [0-9]+[*+-][0-9]+=[0-9]+\\.\n#### [0-9]+$",
                     REG_EXTENDED | REG_NOSUB),
             0);
    snprintf(json, sizeof json,
             "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"word_problems\",\"rows\":%d,\"seed\":%d},"
             "\"output_dir\":\"%s\",\"seed\":2,"
             "\"reward\":{\"verifiable\":{\"weight\":1,\"grader\":\"hash\"},"
             "\"format\":{\"regex\":\"%s\",\"weight\":0.5,\"match\":\"full\"}},"
             "\"hyperparameters\":{\"max_steps\":%d,\"batch_size\":%d,\"num_generations\":4,\"learning_rate\":1e-5,"
             "\"max_completion_length\":32,\"logging_steps\":1,\"save_steps\":0}}",
             sft, WP_ROWS, WP_SEED, out, "^[0-9]+[*+-][0-9]+=[0-9]+\\\\. [0-9]+[*+-][0-9]+=[0-9]+\\\\.\\\\n#### [0-9]+$",
             WP_STEPS, WP_BATCH);
    al_train_cb cb = {.log = wp_on_log, .sample = wp_on_sample, .ud = w};
    T_OK(al_job_parse(&job, json, strlen(json), g_err));
    T_OK(al_train_run(&job, NULL, &cb, &res, &g_fail));
    T_EQ_INT(w->steps, WP_STEPS + 1); /* and step 0's rollout, the starting point */
    T_EQ_INT(w->sources_ok, w->steps);
    T_EQ_INT(w->sums_ok, w->steps);
    T_EQ_INT(w->fractions_ok, w->steps);
    T_TRUE(w->samples >= WP_STEPS);
    T_EQ_INT(w->unknown_prompt, 0);
    T_EQ_INT(w->agree, w->checked);
    T_TRUE(w->both >= 1);
    fprintf(stderr, "word_problems grpo: %d samples, %d checked, %d right and well formed\n", w->samples, w->checked,
            w->both);
    /* the job's reward configuration on written completions of row 0 */
    al_tok *tok = al_tok_byte_new();
    al_chat *chat = NULL;
    T_OK(al_chat_new(&chat, tok, NULL, g_err));
    al_prompts p = {0};
    T_OK(al_prompts_load(&p, &job, chat, 1, WP_ROWS, WP_SEED, AL_SPLIT_TRAIN, NULL, "task", 0, &g_fail));
    al_rewarder *rw = NULL;
    T_OK(al_rewarder_new(&rw, &job.reward, 0, 4, NULL, &g_fail));
    if (p.n == WP_ROWS && rw) {
        T_STR_EQ(p.answer[0], w->rows[0].answer);
        enum { K = 6 };
        char c[K][AL_TASK_TEXT + 8];
        const char *a = w->rows[0].answer, *line = strstr(a, "\n#### ");
        long n = line ? strtol(line + 6, NULL, 10) : -1;
        snprintf(c[0], sizeof c[0], "%s", a);                                    /* right */
        snprintf(c[1], sizeof c[1], "%.*s\n#### %ld", (int)(line - a), a, n + 1); /* wrong, well formed */
        snprintf(c[2], sizeof c[2], "#### %ld", n);                               /* the answer line alone */
        snprintf(c[3], sizeof c[3], "%.*s", (int)(line - a), a);                  /* no answer line */
        snprintf(c[4], sizeof c[4], "%.*s\n#### x%ldq", (int)(line - a), a, n);   /* garbled answer */
        snprintf(c[5], sizeof c[5], "####");                                       /* nothing after it */
        const double want[K] = {1.5, 0.5, 1.0, 0, 0, 0};
        const char *comps[K], *prompts[K];
        const al_reward_row *rows[K];
        int lens[K], eos[K];
        float sc[K], v[K], fm[K], ex[K];
        for (int i = 0; i < K; i++) {
            comps[i] = c[i];
            prompts[i] = p.text[0];
            rows[i] = &p.ref[0];
            lens[i] = (int)strlen(c[i]);
            eos[i] = 1;
        }
        al_reward_parts parts = {.verifiable = v, .format = fm, .extracted = ex};
        T_OK(al_rewarder_score_rows(rw, K, 1, prompts, comps, rows, lens, eos, sc, &parts, &g_fe));
        for (int i = 0; i < K; i++) T_NEAR(sc[i], want[i], 1e-6);
        T_NEAR(ex[3], 0, 0); /* no "####": nothing extracted */
    }
    al_rewarder_free(rw);
    al_prompts_free(&p);
    al_chat_free(chat);
    al_tok_free(tok);
    al_job_deinit(&job);
    regfree(&w->fmt);
    free(w);
}

int main(void) {
    al_pool_init(2);
    test_word_problems_grpo();
    test_sampled_completions();
    test_graded_sources();
    test_file_rows();
    char rm[1100];
    snprintf(rm, sizeof rm, "%s/rm", t_tmpdir());
    tiny_rm(rm);
    test_sized_scores(rm);
    test_cut_off_scores(rm);
    char jm[1100];
    snprintf(jm, sizeof jm, "%s/judge", t_tmpdir());
    t_shape js = {AL_ARCH_GPT2, .layers = 1, .C = 16, .heads = 2, .FF = 32, .max_T = 512};
    T_OK(t_save_byte_model(js, 5, jm, g_err));
    test_judge(jm);
    test_completion_bound();
    return t_done();
}

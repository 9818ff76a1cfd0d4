/* Reinforcement learning from feedback: the RL step of ppo, grpo and rloo
 * (rl.c, in the run skeleton of run.h), the reward sources, and the pure per-token arithmetic
 * they share (GAE, whitening, KL estimators, group and leave-one-out
 * advantages, the adaptive KL controller), exposed for tests.
 *
 * Layout: a batch of completions is (R, T) rows as every objective sees
 * them; position t of row r is scored when targets[r,t] >= 0 and then
 * predicts completion token targets[r,t]. Everything here runs on the
 * calling thread (numeric work uses the shared pool) and keeps no globals. */
#ifndef AL_RL_H
#define AL_RL_H

#include "grader.h"
#include "trainer.h"

/* Runs an RL job (al_train_run dispatches here for methods for which
 * al_method_is_rl holds). Same contract as al_train_run. */
int al_rl_run(const al_job *job, const char *resume_dir, const al_train_cb *cb, al_train_result *res,
              al_error *err);

/* ---- per-token arithmetic (lib/train/rl_math.c) ---------------------------- */

/* KL estimator of one token between the policy (logp) and the reference
 * (ref), as TRL writes them with logr = ref - logp:
 * k1 = -logr, k3 = exp(logr) - 1 - logr. */
double al_rl_kl(double logp, double ref, int estimator);

/* TRL's masked_whiten over the scored positions of (R, T): (x - mean) /
 * sqrt(var + 1e-8) with the unbiased variance (n / (n - 1)), the mean added
 * back when shift_mean is 0. Fewer than two scored positions: unchanged. */
void al_rl_whiten(float *x, const int32_t *targets, int R, int T, int shift_mean);
/* The same with the mean and variance over the positions of every rank of a
 * data-parallel run (collective; al_rl_whiten with one rank). */
void al_rl_whiten_global(float *x, const int32_t *targets, int R, int T, int shift_mean);

/* PPO's per-token rewards: rewards[t] = -kl_coef * KL_t at every scored
 * position (KL from logp/ref with the estimator; kl_out receives KL_t, may be
 * NULL) and the sequence's score added at its last scored position (the one
 * predicting EOS when the completion has one). Rows without scored positions
 * get nothing. */
void al_rl_token_rewards(float *rewards, float *kl_out, const float *logp, const float *ref,
                         const int32_t *targets, const float *scores, int R, int T, double kl_coef,
                         int estimator);

/* Generalised advantage estimation per row over its scored positions in
 * order: delta_t = r_t + gamma V_{t+1} - V_t (V after the last = 0, the
 * episode ends there), A_t = delta_t + gamma lam A_{t+1}, returns = A + V.
 * Positions that are not scored get 0. */
void al_rl_gae(float *adv, float *ret, const float *rewards, const float *values, const int32_t *targets,
               int R, int T, double gamma, double lam);

/* GRPO's advantages of n_groups groups of G consecutive rewards: r - group
 * mean, divided by (std + 1e-4) where std is the group's (AL_SCALE_GROUP) or
 * the whole batch's (AL_SCALE_BATCH) unbiased standard deviation, not at all
 * for AL_SCALE_NONE. Returns how many groups have zero spread (std < 1e-6). */
int al_rl_group_adv(float *adv, const float *rewards, int n_groups, int G, int scale);
/* The same where AL_SCALE_BATCH's batch is every rank's rewards (groups
 * never straddle ranks; collective; al_rl_group_adv with one rank). */
int al_rl_group_adv_global(float *adv, const float *rewards, int n_groups, int G, int scale);

/* RLOO's leave-one-out advantages: r_i - mean of the other G - 1 rewards of
 * its group (G >= 2). */
void al_rl_rloo_adv(float *adv, const float *rewards, int n_groups, int G);

/* Ziegler et al.'s adaptive KL controller (TRL 0.x AdaptiveKLController):
 * e = clip(kl / target - 1, -0.2, 0.2); coef * (1 + e * n_steps / horizon). */
double al_rl_adaptive_kl(double coef, double kl, double target, double horizon, long n_steps);

/* Distinct-2 of a token sequence: distinct bigrams / bigrams (1 when it has
 * fewer than two tokens). scratch holds at least 2 n entries. */
double al_rl_distinct2(const int32_t *ids, int n, uint64_t *scratch);

/* ---- reward sources (lib/train/reward.c) -------------------------------------- */

/* The default grader's verifiable reward of output against answer (both
 * trimmed of surrounding whitespace): 1 on an exact match; otherwise with
 * partial, 0.5 x (characters equal at the same position) / (the longer
 * length), else 0. Jobs grade with their grader (al_rewarder_score_rows). */
double al_reward_verifiable(const char *answer, const char *output, int partial);

/* The rule-based shaping of one completion's reward (reward.c's order):
 * r - length_penalty * len - missing_eos_penalty * !has_eos (eos_pen is the
 * resolved penalty), then clipped to [-clip, clip] when clip > 0. */
double al_reward_rules(const al_reward_cfg *c, double r, int len, int has_eos, double eos_pen);

/* The reward sources of a job, loaded once: reward models (frozen, scalar
 * head, each with its own tokenizer: completions are re-tokenized as text,
 * so any tokenizer works), the AI judge (a frozen language model asked
 * through its chat template), and the rules. */
typedef struct al_rewarder al_rewarder;

/* The longest texts a rewarder will be given, in bytes (0: unknown). */
typedef struct al_reward_len {
    size_t prompt_bytes, completion_bytes;
} al_reward_len;

/* rows: how many sequences one forward may hold. hp_eos_penalty: the
 * hyper-parameter missing_eos_penalty used when the reward object gives
 * none. The models run forward only (AL_MODEL_FORWARD_ONLY: one layer's
 * activations). len (may be NULL: unknown) sizes a reward model's for one
 * token per byte of the longest prompt + completion rather than for its
 * whole context (a tokenizer whose tokens each cover at least a byte never
 * needs more; a longer sequence, from one that does, grows the reservation
 * when it comes); the judge's for its instructions (their tokens counted
 * once, at start) plus one token per byte of the prompt and two
 * completions. Sequences are cut to the model's context (at
 * most 1024 tokens, the last ones kept) either way, so scores do not depend
 * on len. AL_ENOENT/AL_EFORMAT from the model folders, AL_ENOMEM; err->field
 * names the job's field at fault ("reward.reward_model[1]",
 * "reward.judge.model", "reward.verifiable.grader.regex"; "" when none is). */
int al_rewarder_new(al_rewarder **out, const al_reward_cfg *cfg, double hp_eos_penalty, int rows,
                    const al_reward_len *len, al_error *err);
void al_rewarder_free(al_rewarder *rw);
int al_rewarder_has_rm(const al_rewarder *rw);
int al_rewarder_has_judge(const al_rewarder *rw);

/* Each source of a scored batch, for metrics: (n) arrays, NaN where unused
 * (extracted: 1 when the grader found an answer in the completion, 0 when
 * not, NaN without answers). Any member may be NULL. */
typedef struct al_reward_parts {
    float *verifiable, *reward_model, *judge, *format, *http, *extracted;
} al_reward_parts;

/* What a prompt's completions are graded against: its accepted answers,
 * the row's own grader (NULL: the job's), and the data row an external
 * verifier receives (NULL: {"prompt", "answer"} is sent). Borrowed. */
typedef struct al_reward_row {
    const char *const *answers;
    int n_answers;
    const al_grader *grader;
    const json_t *row;
} al_reward_row;

/* Connects the job's external verifier (reward.http) to the runner's
 * callback (cb->external_reward, cb->ud). AL_EINVAL when the job names one
 * and the runner has none (err->field "reward.http"). */
int al_rewarder_attach(al_rewarder *rw, const al_train_cb *cb, al_error *err);

/* Scores n completions (prompts[i], completions[i] without EOS, answers[i]
 * NULL when none, lens[i] completion tokens, has_eos[i]). Consecutive groups
 * of G completions share a prompt: the judge's reward of a completion is its
 * mean win probability against the others of its group (0.5 when G == 1).
 * scores (n) receive the combined, shaped reward; parts may be NULL. */
int al_rewarder_score(al_rewarder *rw, int n, int G, const char *const *prompts,
                      const char *const *completions, const char *const *answers, const int *lens,
                      const int *has_eos, float *scores, al_reward_parts *parts, char err[AL_ERRLEN]);

/* The same with each completion's reference as an al_reward_row (rows[i]
 * NULL: none): the verifiable source grades with rows[i]->grader or the
 * job's; the format source matches the job's pattern; the http source
 * asks the runner's verifier in batches of reward.http.batch. Any source's
 * failure (a verifier's error, a pattern's match limit, the judge's
 * template) fails the call with its reason in err->msg and the source's
 * field in err->field ("reward.reward_model", "reward.http",
 * "reward.judge.model", "reward.verifiable.grader", "reward.format.regex";
 * "" when memory ran out): no completion silently scores 0. */
int al_rewarder_score_rows(al_rewarder *rw, int n, int G, const char *const *prompts,
                           const char *const *completions, const al_reward_row *const *rows, const int *lens,
                           const int *has_eos, float *scores, al_reward_parts *parts, al_error *err);

/* The grader's verdict on one completion (the job's grader unless the row
 * has its own; no row or no answers: 0): evaluation's exact match. */
int al_rewarder_correct(const al_rewarder *rw, const char *completion, const al_reward_row *row, int *correct,
                        char err[AL_ERRLEN]);

/* Reward-model scores (the ensemble's minimum) of n prompt/completion texts.
 * A completion that ended with EOS is scored with it, as the reward model
 * was trained; one cut off (has_eos[i] == 0) is scored at its last token,
 * as TRL's get_reward does, and missing_eos_penalty is the rules' business.
 * has_eos NULL: every completion ended. */
int al_rewarder_rm(al_rewarder *rw, int n, const char *const *prompts, const char *const *completions,
                   const int *has_eos, float *out, char err[AL_ERRLEN]);

/* The judge's probability that response a is better than b for prompt, both
 * orders asked and averaged so that position bias cancels:
 * 0.5 (P(A | a, b) + 1 - P(A | b, a)), P(A) = sigmoid(logp("A") - logp("B")). */
int al_rewarder_judge(al_rewarder *rw, const char *prompt, const char *a, const char *b, double *p_a,
                      char err[AL_ERRLEN]);

#endif

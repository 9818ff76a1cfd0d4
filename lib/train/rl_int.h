/* Internal to lib/train/rl.c and lib/train/sampling.c: prompt sets,
 * batched sampling and the sampling jobs' entry point. */
#ifndef AL_RL_INT_H
#define AL_RL_INT_H

#include "../text/chat.h"
#include "rl.h"

/* Prompts of a job: token ids (the last max_prompt_length tokens), the
 * prompt as text, the reference answer (the first accepted one; NULL when
 * none), what completions are graded against (ref: every accepted answer,
 * the row's own grader, the data row) and, when asked for, prompt + answer
 * as an SFT example (seq[0].n == 0 when none). */
typedef struct rl_prompts {
    int n;
    al_seq *seq;
    char **text;
    char **answer;
    al_example *sft;
    al_reward_row *ref;
    char ***answers;           /* per prompt, NULL-terminated (owned) */
    json_t **row;              /* per prompt, the data row or NULL (owned references) */
    al_grader_set graders;     /* the rows' own graders (owned) */
    json_t *report;            /* a file's dataset report (owned; NULL for a task) */
} rl_prompts;

/* From the job's built-in task (rows rows of job->task's split with seed)
 * when from_task, else from the JSONL file (prompt-only or prompt/completion
 * rows; what names the field in errors). A row's "grader" is read over
 * job->reward.grader; with reward.verifiable on, an answer the grader can
 * never match (not a number for a numeric compare) is an error naming its
 * line. The job's hygiene filters clean its training files (file ==
 * job->training_file or a job->train_files[k].file), never a validation
 * file: what they dropped is in p->report (al_hygiene_describe). */
int rl_prompts_load(rl_prompts *p, const al_job *job, const al_chat *chat, int from_task, long rows,
                    uint64_t seed, int split, const char *file, const char *what, int want_sft, char err[AL_ERRLEN]);
void rl_prompts_free(rl_prompts *p);
/* Moves src's prompts to the end of dst (src is left empty). AL_ENOMEM
 * leaves both as they were. */
int rl_prompts_append(rl_prompts *dst, rl_prompts *src, char err[AL_ERRLEN]);

/* Samples completions of n prompts in chunks (al_generate): ids (n,
 * g->max_new), logp (n, g->max_new) or NULL, len (n). */
int rl_generate(al_model *m, const al_seq *const *prompts, int n, const al_gen_cfg *g, al_rng *rng,
                int32_t *ids, float *logp, int *len, char err[AL_ERRLEN]);
/* A completion's text without its final EOS (malloc'd; "" when it does not
 * decode, NULL only without memory); *has_eos (may be NULL) says whether it
 * ended in EOS. */
char *rl_decode_completion(const al_tok *tok, const int32_t *ids, int n, int32_t eos, int *has_eos);

/* Bounds for al_reward_len: the longest prompt text of p, and the longest
 * text max_new tokens of tok can decode to (max_new times its longest
 * token's text), in bytes. */
size_t rl_prompts_max_bytes(const rl_prompts *p);
size_t rl_completion_max_bytes(const al_tok *tok, int max_new);

void rl_event(const al_train_cb *cb, al_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int rl_copy_tokenizer(const al_job *job, const char *dir, char err[AL_ERRLEN]);

/* generate_preferences, evaluate, critique_revise (lib/train/sampling.c). */
int rl_data_job(const al_job *job, const al_train_cb *cb, al_train_result *res, char err[AL_ERRLEN]);

#endif

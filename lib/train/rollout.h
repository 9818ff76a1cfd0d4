/* Rollouts: the prompting, generation and decoding that the RL methods
 * (rl.c) and the sampling jobs (sampling.c) share. A job's prompts are read
 * once (a built-in task or a prompt-only JSONL file, with each row's
 * answers and grader), their completions sampled in chunks with the KV cache
 * (al_generate) and decoded to text for the reward sources. Runs on the
 * calling thread; numeric work uses the shared compute pool. */
#ifndef AL_ROLLOUT_H
#define AL_ROLLOUT_H

#include "../text/chat.h"
#include "rl.h"

/* Prompts of a job: token ids (the last max_prompt_length tokens), the
 * prompt as text, the reference answer (the first accepted one; NULL when
 * none), what completions are graded against (ref: every accepted answer,
 * the row's own grader, the data row) and, when asked for, prompt + answer
 * as an SFT example (seq[0].n == 0 when none). */
typedef struct al_prompts {
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
} al_prompts;

/* From the job's built-in task (rows rows of job->task's split with seed)
 * when from_task, else from the JSONL file (prompt-only or prompt/completion
 * rows; what names the field in errors). A row's "grader" is read over
 * job->reward.grader; with reward.verifiable on, an answer the grader can
 * never match (not a number for a numeric compare) is an error naming its
 * line. The job's hygiene filters clean its training files (file ==
 * job->training_file or a job->train_files[k].file), never a validation
 * file: what they dropped is in p->report (al_hygiene_describe). On error
 * err->field is the job's field at fault: what for the file and its lines,
 * "task", "reward.verifiable.grader"; "" when none is (out of memory). */
int al_prompts_load(al_prompts *p, const al_job *job, const al_chat *chat, int from_task, long rows,
                    uint64_t seed, int split, const char *file, const char *what, int want_sft, al_error *err);
void al_prompts_free(al_prompts *p);
/* Moves src's prompts to the end of dst (src is left empty). AL_ENOMEM
 * leaves both as they were. */
int al_prompts_append(al_prompts *dst, al_prompts *src, char err[AL_ERRLEN]);

/* Samples completions of n prompts in chunks (al_generate): ids (n,
 * g->max_new), logp (n, g->max_new) or NULL, len (n). */
int al_rollout_generate(al_model *m, const al_seq *const *prompts, int n, const al_gen_cfg *g, al_rng *rng,
                        int32_t *ids, float *logp, int *len, char err[AL_ERRLEN]);
/* Whether a completion of n ids ended at one of the stop ids (the
 * n_stops of al_lm_stop_ids: EOS, the template's end of turn), not cut off
 * by the length limit. */
int al_rollout_ended(const int32_t *ids, int n, const int32_t *stops, int n_stops);
/* A completion's text without its final stop id (malloc'd; "" when it does
 * not decode, NULL only without memory); *has_eos (may be NULL) says
 * whether it ended at a stop id (al_rollout_ended). */
char *al_rollout_decode_stops(const al_tok *tok, const int32_t *ids, int n, const int32_t *stops, int n_stops,
                              int *has_eos);

/* Bounds for al_reward_len: the longest prompt text of p, and the longest
 * text max_new tokens of tok can decode to (max_new times its longest
 * token's text), in bytes. */
size_t al_prompts_max_bytes(const al_prompts *p);
size_t al_completion_max_bytes(const al_tok *tok, int max_new);

#endif

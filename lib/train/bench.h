/* Benchmarks: evaluation files scored as lm-evaluation-harness scores them
 * (eval_tasks entries with a "file", and evaluate jobs).
 *
 *   multiple_choice  rows {"question"|"query"|"prompt"|"context": text,
 *                    "choices": [text, ...] (2 or more), "answer"|"label"|
 *                    "gold": the right choice's index or its text}. Each
 *                    choice is scored by its log-likelihood after the
 *                    context, the continuation being target_delimiter (" ")
 *                    + choice, tokenized as the harness does (_encode_pair:
 *                    the context's trailing whitespace moves to the
 *                    continuation; the continuation's tokens are those of
 *                    context + continuation past the context's own). acc:
 *                    the highest log-likelihood is the right choice; acc_norm:
 *                    the highest log-likelihood per character of the choice
 *                    (the harness's len(choice): Unicode characters, the
 *                    delimiter not counted); acc_bytes: per UTF-8 byte (the
 *                    harness's byte-normalised variant). Ties go to the
 *                    first choice, as numpy's argmax.
 *   generative       rows {"prompt"|"question": text, "answer": text or
 *                    [texts], "grader"?}: a greedy completion of up to
 *                    max_new_tokens, graded (lib/train/grader.h) by the
 *                    row's grader over the task's over the job's. Metrics:
 *                    exact_match (the grader's verdict), extracted (the
 *                    share of completions with an answer found).
 *
 * Every metric comes with <name>_stderr, the standard error of the mean as
 * the harness reports it (sample standard deviation / sqrt(n)). A task's
 * result is one JSON object:
 *
 *   {"task": NAME, "type": "multiple_choice"|"generative", "n": N,
 *    "metrics": {"acc": x, "acc_stderr": s, "acc_norm": x, ...}}
 *
 * Few-shot (num_fewshot > 0), as the harness's ContextSampler and
 * fewshot_context: num_fewshot other rows of the file (or of fewshot_file)
 * stand before each row, each as its text + target_delimiter + target
 * (the right choice, or the first accepted answer) + fewshot_delimiter
 * ("\n\n"); "first_n" takes the first rows, "default" draws them without
 * replacement from a generator seeded by fewshot_seed and the row (not
 * Python's random: the harness's exact draws are not reproduced). With a
 * chat template the whole context is one user turn, or with
 * fewshot_as_multiturn the shots are user/assistant turns. Generative
 * completions end before the first of the task's "until" strings (default:
 * the few-shot delimiter when there are shots, as the harness defaults
 * generation_kwargs.until to it; else only EOS).
 *
 * Row shapes the harness's popular datasets have are read as they are:
 * ARC/OpenBookQA ("choices": {"text": [...], "label": [...]}, "answerKey":
 * a label, "question_stem"), HellaSwag ("ctx", "endings", "label": "2"),
 * MMLU ("question", "choices", "answer": index).
 *
 * Context and prompt are raw text, encoded with the tokenizer's own special
 * tokens (BOS when it adds one, never EOS); with "chat_template": true
 * the context becomes a user message rendered by the model's template with
 * the generation prompt, and the delimiter is "" (the harness's rule with
 * a chat template). A sequence longer than the model's context keeps its
 * last tokens (the harness truncates from the left). Not thread-safe per
 * benchmark. */
#ifndef AL_BENCH_H
#define AL_BENCH_H

#include <jansson.h>

#include "../text/chat.h"
#include "grader.h"
#include "job.h"
#include "trainer.h"

typedef struct al_bench al_bench;

/* The type a benchmark file's rows call for ("multiple_choice",
 * "generative") from its first row, or "loss" (an SFT file whose loss is
 * measured). AL_OK, AL_ENOENT, AL_EFORMAT (not JSON rows). */
int al_bench_detect(const char *path, char type[32], char err[AL_ERRLEN]);

/* Validates a benchmark file's bytes (an upload with purpose "evals")
 * without a tokenizer: *report = {"format": "multiple_choice" |
 * "generative", "rows", "valid_rows", "n_errors", "errors": [{"line",
 * "message"}] (the first 100)}. AL_EFORMAT (not JSON rows, or a first row
 * of neither kind) with the reason in err, AL_ENOMEM. */
int al_bench_check_mem(const char *buf, size_t len, json_t **report, char err[AL_ERRLEN]);

/* Reads and tokenizes task t's file (t->type set). job_grader: the job's
 * (reward.verifiable.grader), under the task's own. max_T: the model's
 * context. Errors name the task and the line ("eval_tasks[0]: line 3:
 * choices must be a list of 2 or more strings"). AL_EINVAL, AL_EFORMAT,
 * AL_ENOENT, AL_ENOMEM. */
int al_bench_load(al_bench **out, const al_eval_task *t, const al_chat *chat, const al_grader_cfg *job_grader,
                  int max_T, const char *what, char err[AL_ERRLEN]);
void al_bench_free(al_bench *b);
/* Tokens of the longest sequence a run puts through the model (multiple
 * choice: context + continuation; generative: prompt + max_new_tokens). */
int al_bench_longest(const al_bench *b);
int al_bench_items(const al_bench *b);
/* The tokens item i puts through the model: multiple choice, choice c's
 * context + continuation (*ctx: the context's length); generative, the
 * prompt (c ignored, *ctx = *n). Borrowed. AL_OK, or AL_ERANGE for an
 * item or choice that is not there. */
int al_bench_item_tokens(const al_bench *b, int i, int c, const int32_t **ids, int *n, int *ctx);

/* Scores model m (reserved for at least rows x T activations; forward
 * only is enough) on every item; *result a new object (shape above).
 * Per-item log-likelihoods go to lls (may be NULL; multiple choice:
 * items x choices, row-major by item, in file order). */
int al_bench_run(al_bench *b, al_model *m, int rows, int T, json_t **result, double *lls, char err[AL_ERRLEN]);

/* Runs b on m (al_bench_run), appends its metrics as eval/<task>/<metric>
 * (stderr left out) to m_out (n_out of cap) and hands the result, with
 * "model": role, to cb->eval_result (when set). */
int al_bench_report(al_bench *b, al_model *m, int rows, int T, const char *role, long step, const al_train_cb *cb,
                    al_metric *m_out, int *n_out, int cap, char err[AL_ERRLEN]);

#endif
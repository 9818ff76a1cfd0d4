/* Built-in synthetic tasks with verifiable answers (the embedded default).
 * Each row is a prompt and its one correct answer, deterministic in (task,
 * seed, index): "addition" ("417+86=" -> "503", operands of 1-3 digits),
 * "addition2" (operands of 1-2 digits), "reversal" ("rev abc=" ->
 * "cba"), "sorting" ("sort 3,1,2=" -> "1,2,3"), "word_problems" (two-step
 * arithmetic word problems whose answer is a worked solution ending in
 * GSM8K's answer line: "Ann has 7 pens. She buys 5 more, then gives away 3.
 * How many pens now?" -> "7+5=12. 12-3=9.\n#### 9"). A plausible wrong answer
 * makes preference pairs: for the additions one of several kinds (a digit
 * changed, off by one or ten, a digit dropped or doubled, another sum),
 * elsewhere one character changed (word_problems: the last step off by one
 * to three, its answer line to match).
 *
 * Held-out rows. Every task's prompts are split once and for all by a hash
 * of the prompt's text: AL_TASK_TEST_PERMILLE of them (one in five) form
 * the "test" split, the rest the "train" split. A row of a split is a row
 * of the task's distribution conditioned on its split, so no prompt of the
 * test split is ever a training row, whatever the seeds. Training jobs
 * draw from "train", evaluation (evaluate jobs, eval_tasks, validation
 * rows, `alignd eval`) from "test"; "all" is the whole distribution. */
#ifndef AL_TASKS_H
#define AL_TASKS_H

#include "../al.h"

#define AL_TASK_TEXT 160

typedef struct al_task_row {
    char prompt[AL_TASK_TEXT];
    char answer[AL_TASK_TEXT];
    char wrong[AL_TASK_TEXT];   /* a plausible incorrect answer, != answer */
} al_task_row;

typedef enum al_task_split { AL_SPLIT_ALL = 0, AL_SPLIT_TRAIN = 1, AL_SPLIT_TEST = 2 } al_task_split;

#define AL_TASK_TEST_PERMILLE 200

/* Row `index` of a split, deterministic in (task, split, seed, index).
 * Returns AL_OK, or AL_ENOENT for an unknown task name. */
int al_task_row_get(const char *task, al_task_split split, uint64_t seed, uint64_t index, al_task_row *out);
/* Which wrong answers a task's preference pairs take (a job's
 * "task": {"mistakes": ...}): every kind the task makes (AL_MISTAKES_ANY), or
 * for the additions only the right sum with one digit changed
 * (AL_MISTAKES_ONE_DIGIT) — narrow preference data, the one contrast a
 * reward model learns cheaply, which says nothing of wrong lengths, carry
 * slips or other sums: what a reward model hacked by PPO is made of
 * (tests/test_rl_learning.c). */
typedef enum al_task_mistakes { AL_MISTAKES_ANY = 0, AL_MISTAKES_ONE_DIGIT = 1 } al_task_mistakes;
/* "any", "one_digit"; al_task_mistakes_parse returns -1 for another name. */
const char *al_task_mistakes_name(al_task_mistakes m);
int al_task_mistakes_parse(const char *name);
/* Whether a task's rows can take these mistakes (one_digit: the additions). */
int al_task_has_mistakes(const char *task, al_task_mistakes m);
/* Row `index` as al_task_row_get gives it, its wrong answer of the kind m
 * (deterministic in task, split, seed, index). AL_OK, AL_ENOENT, or
 * AL_EINVAL when the task cannot take m. */
int al_task_row_get_with(const char *task, al_task_split split, uint64_t seed, uint64_t index, al_task_mistakes m,
                         al_task_row *out);
/* The split a prompt belongs to (AL_SPLIT_TRAIN or AL_SPLIT_TEST). */
al_task_split al_task_prompt_split(const char *prompt);
/* "all", "train", "test"; al_task_split_parse returns -1 for another name. */
const char *al_task_split_name(al_task_split split);
int al_task_split_parse(const char *name);
/* The built-in tasks, terminated by an entry whose name is NULL. */
typedef struct al_task_info {
    const char *name;
    const char *about;    /* one line: what a row asks */
    const char *grader;   /* the grader preset (lib/train/grader.h) its answers call for, or NULL: exact match */
} al_task_info;
const al_task_info *al_tasks(void);
/* Exact match after trimming trailing whitespace from `output`; for a task
 * whose answers are worked solutions, the final answer (after the last
 * "####", trimmed) against the row's. */
int al_task_correct(const al_task_row *row, const char *output);
/* The grader preset (lib/train/grader.h) a task's answers call for when the
 * job names none ("hash" for word_problems), or NULL: exact match (and for
 * an unknown task). */
const char *al_task_grader(const char *task);

#endif

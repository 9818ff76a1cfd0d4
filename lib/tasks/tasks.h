/* Built-in synthetic tasks with verifiable answers (the embedded default).
 * Each row is a prompt and its one correct answer, deterministic in (task,
 * seed, index): "addition" ("417+86=" -> "503", operands of 1-3 digits),
 * "addition2" (operands of 1-2 digits), "reversal" ("rev abc=" ->
 * "cba"), "sorting" ("sort 3,1,2=" -> "1,2,3"). A plausible wrong answer
 * makes preference pairs: for the additions one of several kinds (a digit
 * changed, off by one or ten, a digit dropped or doubled, another sum),
 * elsewhere one character changed. */
#ifndef AL_TASKS_H
#define AL_TASKS_H

#include "../al.h"

#define AL_TASK_TEXT 64

typedef struct al_task_row {
    char prompt[AL_TASK_TEXT];
    char answer[AL_TASK_TEXT];
    char wrong[AL_TASK_TEXT];   /* a plausible incorrect answer, != answer */
} al_task_row;

/* Returns AL_OK, or AL_ENOENT for an unknown task name. */
int al_task_row_get(const char *task, uint64_t seed, uint64_t index, al_task_row *out);
/* NULL-terminated list of task names. */
const char *const *al_task_names(void);
/* Exact match after trimming trailing whitespace from `output`. */
int al_task_correct(const al_task_row *row, const char *output);

#endif

/* The job description: one JSON object, the same that `alignd train` reads
 * and the REST API accepts.
 *
 *   {"method": "sft"|"pretrain"|"reward_model"|"dpo"|"kto"|"orpo"|"simpo",
 *    "model": DIR, "training_file": FILE | "task": {"name","rows","seed"},
 *    "validation_file": FILE, "ref_model": DIR, "hyperparameters": {...},
 *    "lora": {...}|null, "seed": N, "output_dir": DIR,
 *    "eval_tasks": [{"name": TASK, "rows": N} | {"file": FILE, "name": NAME}]}
 *
 * Every hyper-parameter left out (or given as "auto") takes TRL's default
 * for the method; every bad value is an AL_EINVAL whose message starts with
 * the field's path ("hyperparameters.beta: must be > 0"). The resolved
 * description (defaults filled in) is kept as JSON for the job record. */
#ifndef AL_JOB_H
#define AL_JOB_H

#include <jansson.h>

#include "../model/model.h"
#include "hparams.h"

#define AL_PATH_MAX 4096
#define AL_MAX_EVAL_TASKS 8

typedef struct al_eval_task {
    char name[64];             /* metric prefix: eval/<name>/... */
    char task[32];             /* built-in task, or "" for a file */
    char file[AL_PATH_MAX];
    long rows;
} al_eval_task;

typedef struct al_job {
    char method[32];
    char model[AL_PATH_MAX];
    char ref_model[AL_PATH_MAX];       /* "" = adapters off / precomputed / the start model */
    char training_file[AL_PATH_MAX];   /* "" when a task is named */
    char validation_file[AL_PATH_MAX];
    char task[32];                     /* built-in task name or "" */
    long task_rows;
    uint64_t task_seed;
    char output_dir[AL_PATH_MAX];
    al_hparams hp;
    int use_lora;
    al_lora_cfg lora;
    int lora_merge;                    /* also write a merged full checkpoint at the end */
    al_eval_task eval_tasks[AL_MAX_EVAL_TASKS];
    int n_eval_tasks;
    json_t *resolved;                  /* owned: the description with defaults filled in */
} al_job;

/* Parses and validates a description. On error job is untouched apart from
 * being safe to pass to al_job_deinit. */
int al_job_parse(al_job *job, const char *json, size_t len, char err[AL_ERRLEN]);
/* Same, from an already parsed object (borrowed). */
int al_job_from_json(al_job *job, const json_t *obj, char err[AL_ERRLEN]);
void al_job_deinit(al_job *job);

#endif

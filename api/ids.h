/* Public ids: the one place where the ids the API hands out are spelled,
 * formatted and parsed.
 *
 *   file-<n>        a file             ftjob-<n>         a fine-tuning job
 *   ftevent-<n>     a job's event      ckpt-<n>          a job's checkpoint
 *   mdlevent-<n>    a model's event    ftjob-<n>:<step>  a checkpoint as a model name
 *
 * <n> is the row's positive integer key, written in decimal without sign or
 * leading zeros (parsing accepts leading zeros); a job's output folder is named as the job (<jobs_dir>/ftjob-<n>).
 * Model names are chosen by users (api_model_name_ok) and may never look like
 * a job's id.
 *
 * Formatting returns the id by value, so it can be used inside an argument
 * list: log_info("job=%s", api_id(API_ID_JOB, n).s) (C11 gives the returned
 * struct's array a lifetime up to the end of the full expression). */
#ifndef API_IDS_H
#define API_IDS_H

#include <stdint.h>

typedef enum api_id_kind {
    API_ID_FILE,
    API_ID_JOB,
    API_ID_EVENT,
    API_ID_CHECKPOINT,
    API_ID_MODEL_EVENT,
} api_id_kind;

/* The prefix of the job ids, for the checks that refuse names looking like one. */
#define API_JOB_PREFIX "ftjob-"

/* Large enough for any id and for "ftjob-<n>:<step>" with 64-bit numbers. */
typedef struct api_idbuf {
    char s[48];
} api_idbuf;

/* "ftjob-12" for (API_ID_JOB, 12). */
api_idbuf api_id(api_id_kind kind, int64_t n);
/* The row key of an id of that kind: n > 0, or 0 when s is NULL or not
 * exactly the kind's prefix and a decimal number that fits. */
int64_t api_id_parse(api_id_kind kind, const char *s);

/* "ftjob-<job>:<step>": the name of a job's checkpoint. */
api_idbuf api_checkpoint_name(int64_t job, long step);
/* A reference to a job's model: "ftjob-<n>" (*step = -1, its output) or
 * "ftjob-<n>:<step>" (a checkpoint). Returns 1 and sets *job and *step; 0
 * when ref does not start with "ftjob-" (it is some other name); when it
 * does, -1 for a step that is not a number >= 0, else -2 for a job number
 * that is not one. */
int api_job_ref_parse(const char *ref, int64_t *job, long *step);

/* A model name a user may give (POST /v1/models, the models folder's
 * subfolders): 1 to 64 letters, digits, '.', '_' and '-', not starting with
 * '.', '-' or "ftjob-". */
int api_model_name_ok(const char *name);

#endif

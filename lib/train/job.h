/* The job description: one JSON object, the same that `alignd train` reads
 * and the REST API accepts.
 *
 *   {"method": "sft"|"pretrain"|"reward_model"|"dpo"|"kto"|"orpo"|"simpo"
 *              |"ppo"|"grpo"|"rloo"|"generate_preferences"|"evaluate"|"critique_revise",
 *    "model": DIR, "training_file": FILE | "task": {"name","rows","seed","split"}
 *                | "training_files": [{"file": FILE, "weight": W}, ...],
 *                  (mixed by weighted sampling, lib/text/mix.h; weight > 0,
 *                   default 1, normalised; one entry = training_file; not for
 *                   the sampling jobs; fixed at its first epoch of draws
 *                   for packing and group_by_length)
 *    "dataset_info": {"formatting": "alpaca"|"sharegpt", "columns": {...}, "tags": {...}},
 *                     (LLaMA-Factory's entry for a file with its own format,
 *                      column and tag names, lib/text/dataset.h: training_file's
 *                      and validation_file's, and the training_files entries'
 *                      that carry none of their own)
 *    "chat_template": NAME | JINJA,              (a built-in of lib/text/chat.h by
 *                     name, or template text: replaces or supplies the model's)
 *    "hygiene": {...},                           (lib/text/hygiene.h: filters applied
 *                     to training_file(s) as they load, RL prompts included,
 *                     not in evaluate; the method clean_data writes the
 *                     filtered file instead, and needs no model)
 *    "validation_file": FILE, "ref_model": DIR, "hyperparameters": {...},
 *    "lora": {...}|null, "seed": N, "output_dir": DIR,
 *    "eval_tasks": [{"name": TASK, "rows": N} | {"file": FILE, "name": NAME, "type": "loss"|
 *                   "multiple_choice"|"generative", "grader": GRADER, "max_new_tokens": N,
 *                   "target_delimiter": " ", "limit": N, "chat_template": BOOL,
 *                   "num_fewshot": N, "fewshot_file": FILE, "fewshot_sampler": "default"|
 *                   "first_n", "fewshot_seed": 1234, "fewshot_delimiter": "\n\n",
 *                   "fewshot_as_multiturn": BOOL, "until": [STR, ...]}],
 *    -- RL and the sampling jobs --
 *    "reward": {"verifiable": W | {"weight": W, "partial": BOOL, "grader": GRADER},
 *               "format": {"regex": PCRE2, "weight": W, "match": "start"|"full"|"search"},
 *               "http": {"url": "http://...", "weight": W, "timeout_ms": N, "batch": N,
 *                        "retries": N},
 *               "reward_model": DIR | [DIR, ...] (an ensemble: the minimum),
 *               "reward_model_weight": W,
 *               "judge": {"model": DIR, "principles": ["..."], "weight": W},
 *               "length_penalty": X, "missing_eos_penalty": X, "clip": X,
 *               "length_normalize": BOOL},
 *    "critic": "shared_base" | "separate",      (ppo; default shared_base with LoRA)
 *    "critic_model": DIR,                       (ppo: the separate critic's start)
 *    "model_b": DIR,                            (evaluate: the model A is compared with)
 *    "principles": ["..."],                     (critique_revise; default: the judge's)
 *    -- data parallelism (lib/dist) --
 *    "resources": {"processes": N,              (ranks the daemon starts through its
 *                  "threads_per_process": N},   launcher; default 1: in-process)
 *    "distributed": {"shard_optimizer": BOOL,   (ZeRO-1: AdamW moments sharded; false)
 *                    "bucket_cap_mb": X,        (gradient buckets, PyTorch DDP's; 25)
 *                    "overlap": BOOL}}          (reduce while backward runs; true)
 *
 * GRADER (lib/train/grader.h) is a preset name ("exact", the default,
 * "casefold", "numeric", "last_number", "hash"/"gsm8k", "boxed"/"math") or
 * {"preset", "extract": "none"|"last_number"|"hash"|"boxed"|{"regex": R,
 * "group": 1, "occurrence": "last"|"first"}, "compare": "exact"|"casefold"|
 * "numeric"|"auto", "tolerance": 1e-6, "after": "</think>"}. A data row may
 * carry its own "grader" (over the job's, field by field) and a list of
 * accepted answers ("answer": ["42", "forty-two"]). "format" rewards weight
 * x [the completion matches R] (open-r1's format_reward: DOTALL, MULTILINE,
 * matched from the start). "http" asks an outside verifier (the runner's
 * al_train_cb.external_reward: the daemon's libcurl client POSTs
 * {"prompts","completions","rows"} and reads {"rewards"}); defaults weight 1,
 * timeout_ms 30000, batch 64, retries 3.
 *
 * A built-in task's "split" (lib/tasks/tasks.h) defaults to "test" for
 * evaluate jobs and eval_tasks and to "train" for every other method, so
 * that what a job is measured on was never trained on.
 *
 * Every hyper-parameter left out (or given as "auto") takes TRL's default
 * for the method (the registry's, lib/train/methods.h); every bad value is an AL_EINVAL whose message starts with
 * the field's path ("hyperparameters.beta: must be > 0"). The resolved
 * description (defaults filled in) is kept as JSON for the job record. */
#ifndef AL_JOB_H
#define AL_JOB_H

#include <jansson.h>

#include "../dist/ddp.h"
#include "../model/model.h"
#include "../text/dataset.h"
#include "../text/hygiene.h"
#include "grader.h"
#include "hparams.h"
#include "methods.h"

#define AL_PATH_MAX 4096
#define AL_MAX_EVAL_TASKS 8
#define AL_MAX_REWARD_MODELS 4
#define AL_MAX_PRINCIPLES 16
#define AL_PRINCIPLE_LEN 512
#define AL_MAX_TRAIN_FILES 8

typedef struct al_eval_task {
    char name[64];             /* metric prefix: eval/<name>/... */
    char task[32];             /* built-in task, or "" for a file */
    char file[AL_PATH_MAX];
    long rows;
    int split;                 /* al_task_split: "test" unless the job says otherwise */
    /* a file: "loss" (an SFT file's loss), "multiple_choice" or "generative"
     * (benchmarks, lib/train/bench.h); "" = told by the file's first row */
    char type[32];
    al_grader_cfg grader;      /* generative: over the job's reward.verifiable.grader */
    int max_new_tokens;        /* generative: 0 = the job's max_completion_length (at most 256) */
    char delimiter[16];        /* multiple choice: between context and choice, " " */
    long limit;                /* the first rows only; 0 = all */
    int chat_template;         /* render the context with the model's chat template */
    /* few-shot contexts, as lm-evaluation-harness builds them (bench.h) */
    int num_fewshot;           /* 0 = none */
    char fewshot_file[AL_PATH_MAX]; /* "" = the task's own file, the row itself left out */
    int fewshot_first_n;       /* 1: the first rows ("first_n"), 0: seeded random ("default") */
    uint64_t fewshot_seed;     /* 1234, the harness's */
    char fewshot_delimiter[16];/* "\n\n" */
    int fewshot_multiturn;     /* with chat_template: the shots as user/assistant turns */
    char until[4][32];         /* generative: stop strings; none = EOS only */
    int n_until;               /* -1: the default (fewshot_delimiter with shots, else none) */
} al_eval_task;

#define AL_URL_MAX 1024

/* Reward sources of an RL or sampling job, combined as
 *   r = verifiable * v + format_weight * f + http_weight * h
 *       + reward_model_weight * min_k RM_k + judge_weight * j
 *       - length_penalty * len - missing_eos_penalty * [no EOS],
 * divided by the completion length when length_normalize, then clipped to
 * [-clip, clip] when clip > 0 (see lib/train/reward.c). */
typedef struct al_reward_cfg {
    float verifiable;                  /* weight of the grader's verdict against the answers; 0 = off */
    int partial;                       /* partial credit (character overlap) below a match */
    al_grader_cfg grader;              /* how completions are graded (default: exact match) */
    int grader_given;                  /* the job chose it (else a task may grade its own way) */
    char format_regex[AL_GRADER_RE_MAX]; /* "" = no format reward */
    float format_weight;               /* 1 */
    int format_mode;                   /* al_format_mode */
    char http_url[AL_URL_MAX];         /* "" = no external verifier */
    float http_weight;                 /* 1 */
    int http_timeout_ms;               /* per request: 30000 */
    int http_batch;                    /* completions per request: 64 */
    int http_retries;                  /* after the first attempt: 3 */
    char reward_model[AL_MAX_REWARD_MODELS][AL_PATH_MAX];
    int n_reward_models;               /* > 1: an ensemble scored by its minimum */
    float reward_model_weight;         /* 1 */
    char judge_model[AL_PATH_MAX];     /* "" = no AI judge */
    char principles[AL_MAX_PRINCIPLES][AL_PRINCIPLE_LEN];
    int n_principles;
    float judge_weight;                /* 1 */
    float length_penalty;              /* per completion token */
    float missing_eos_penalty;         /* < 0: hyperparameters.missing_eos_penalty */
    float clip;                        /* 0 = no clipping */
    int length_normalize;
    int bf16;                          /* reward models and the judge compute in bf16: the
                                          daemon's dtype setting (not part of the JSON) */
} al_reward_cfg;

enum { AL_CRITIC_SHARED_BASE = 0, AL_CRITIC_SEPARATE = 1 };

typedef struct al_job {
    char method[32];
    char model[AL_PATH_MAX];
    char ref_model[AL_PATH_MAX];       /* "" = adapters off / precomputed / the start model */
    char training_file[AL_PATH_MAX];   /* "" when a task or training_files is named */
    struct {
        char file[AL_PATH_MAX];
        double weight;
        al_dataset_info dataset_info;  /* its "dataset_info" */
        int has_dataset_info;
    } train_files[AL_MAX_TRAIN_FILES]; /* training_files of two or more entries */
    al_dataset_info dataset_info;      /* "dataset_info": training_file's and validation_file's */
    int has_dataset_info;
    int n_train_files;                 /* 0: training_file or task */
    char validation_file[AL_PATH_MAX];
    char task[32];                     /* built-in task name or "" */
    long task_rows;
    uint64_t task_seed;
    int task_split;                    /* al_task_split: test for evaluate, else train */
    int task_mistakes;                 /* al_task_mistakes of its training pairs */
    char output_dir[AL_PATH_MAX];
    al_hparams hp;
    int use_lora;
    al_lora_cfg lora;
    int lora_merge;                    /* also write a merged full checkpoint at the end */
    al_eval_task eval_tasks[AL_MAX_EVAL_TASKS];
    int n_eval_tasks;
    al_reward_cfg reward;              /* RL and sampling jobs */
    int has_reward;                    /* a "reward" object was given */
    int critic;                        /* AL_CRITIC_* (ppo) */
    char critic_model[AL_PATH_MAX];    /* "" = the reward model (or the policy's start) */
    char model_b[AL_PATH_MAX];         /* evaluate: model B */
    char principles[AL_MAX_PRINCIPLES][AL_PRINCIPLE_LEN]; /* critique_revise */
    int n_principles;
    al_hygiene_cfg hygiene;            /* filters (al_hygiene_any: some are on) */
    int processes;                     /* resources.processes: ranks the daemon launches (1: in-process) */
    int threads_per_process;           /* resources.threads_per_process: 0 = every core the rank sees */
    al_ddp_cfg dist;                   /* "distributed": shard_optimizer, bucket_cap_mb, overlap */
    const char *chat_template;         /* NULL: the model's own; else the template text
                                        * (a built-in's, or held by resolved) */
    json_t *resolved;                  /* owned: the description with defaults filled in */
} al_job;

/* Parses and validates a description. On error job is untouched apart from
 * being safe to pass to al_job_deinit, and err says why. */
int al_job_parse(al_job *job, const char *json, size_t len, char err[AL_ERRLEN]);
/* The same with the field at fault as data (al_job_from_json's); text that
 * is not JSON names no field, its message jansson's line and column. */
int al_job_parse_at(al_job *job, const char *json, size_t len, al_error *err);
/* Same, from an already parsed object (borrowed); err names the field at
 * fault as data (err->field: "hyperparameters.beta", "training_files[1].weight",
 * "" when the description as a whole is). */
int al_job_from_json(al_job *job, const json_t *obj, al_error *err);
void al_job_deinit(al_job *job);

/* al_model_open_ex flags for the job's own models (policy, reference,
 * critic, sampled models): AL_OPEN_BF16 under mixed_precision bf16. */
static inline int al_job_open_flags(const al_job *job) {
    return job->hp.mixed_precision == AL_MP_BF16 ? AL_OPEN_BF16 : 0;
}

/* The "dataset_info" entry the job gives for one of its data
 * files, by identity: file is job->training_file, job->validation_file or a
 * job->train_files[k].file (its own, else the job's); NULL when none was
 * given for it. */
const al_dataset_info *al_job_file_dataset_info(const al_job *job, const char *file);

typedef enum al_ref_kind { AL_REF_MODEL, AL_REF_FILE } al_ref_kind;
/* Called for each string field of an unparsed job description that names a
 * model folder or a data file. path is the field's path ("model",
 * "ref_model", "training_file", "training_files[1].file", "validation_file", "eval_tasks[0].file",
 * "eval_tasks[0].fewshot_file",
 * "hygiene.decontaminate.file",
 * "reward.reward_model", "reward.reward_model[1]", "reward.judge.model",
 * "critic_model", "model_b"). Return 0 to continue, optionally writing a
 * replacement value into repl (cap bytes; leave repl[0] == 0 to keep the
 * value); return non-zero with a reason in msg (msgcap bytes) to stop. */
typedef int (*al_ref_fn)(void *ud, al_ref_kind kind, const char *path, const char *value,
                         char *repl, size_t cap, char *msg, size_t msgcap);
/* Walks every model and file reference of desc (modified in place when fn
 * replaces a value). Fields of the wrong type are left for al_job_from_json
 * to report. Returns AL_OK or AL_EINVAL with err->field the path and
 * err->msg "<path>: <msg>" (AL_ENOMEM when a replacement cannot be stored). */
int al_job_refs(json_t *desc, al_ref_fn fn, void *ud, al_error *err);

#endif

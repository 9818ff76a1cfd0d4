/* Training: the entry point of every job (al_train_run) and the callbacks
 * progress leaves through. Every method that trains runs in the one run
 * skeleton (run.h: the step loop and its hooks, checkpoints and resume),
 * the SFT-like methods as trainer.c's step kind, PPO/GRPO/RLOO as rl.c's,
 * the sampling jobs as sampling.c's (steps without updates); clean_data is
 * clean.c's single pass.
 *
 * For the SFT-like methods al_train_run loads the model (full or LoRA) and tokenizer, reads and
 * tokenizes the data (a JSONL file or a built-in task), computes reference
 * log-probs once when the objective needs them and precompute_ref_log_probs
 * is on, then runs optimiser steps: zero gradients, forward each
 * micro-batch, hand the log-probs to the objective, backward its gradients,
 * clip, schedule, AdamW, and between steps log, evaluate, checkpoint and ask
 * whether to stop or pause. Progress leaves only through callbacks, so the
 * daemon can persist and stream it and the command line can print it.
 *
 * Checkpoints are Hugging Face folders (full model, or PEFT adapter) plus
 * trainer_state.json and optimizer.safetensors (AdamW moments), written to a
 * temporary folder and renamed into place; resuming from one continues
 * exactly: the same per-step losses as an uninterrupted run. Runs on the
 * calling thread; numeric work uses the shared compute pool. */
#ifndef AL_TRAINER_H
#define AL_TRAINER_H

#include "job.h"
#include "objective.h"

typedef struct al_train_cb {
    /* Once, before step 0 is logged: the steps the run will take and the step
     * it starts from (non-zero when resuming). */
    void (*begin)(void *ud, long total_steps, long start_step);
    /* One logged step: every metric of the step (loss, learning_rate,
     * grad_norm, tokens_per_second, the objective's own, eval_* at
     * evaluation steps), in order. */
    void (*log)(void *ud, long step, double epoch, const al_metric *m, int n);
    /* A benchmark's result at an evaluation (eval_tasks with a benchmark
     * file or, in evaluate jobs, a built-in task): the object of
     * lib/train/bench.h plus "model": "model" or "model_b" (which of the
     * job's models it measures). Borrowed for the call. */
    void (*eval_result)(void *ud, long step, const json_t *result);
    /* A generated sample at an evaluation (reward NaN when none). */
    void (*sample)(void *ud, long step, const char *prompt, const char *completion, double reward);
    /* A human-readable event: data reports, truncation counts, checkpoints. */
    void (*event)(void *ud, al_log_level level, const char *msg);
    /* A checkpoint folder was written (after the rename, so it is complete). */
    void (*checkpoint)(void *ud, long step, const char *dir);
    /* Polled between steps: non-zero stops (cancel) or pauses (checkpoint
     * then return AL_ECANCELED / AL_EAGAIN-style codes below). */
    int (*should_stop)(void *ud);
    int (*should_pause)(void *ud);
    /* The job's external verifier (reward.http; lib/ speaks no HTTP, the
     * runner does): scores n <= cfg->http_batch completions of prompts,
     * with their data rows, into rewards (n). AL_OK, or an error with the
     * reason (the verifier's answer) in err, which fails the step. NULL:
     * jobs naming reward.http are refused at set-up. */
    int (*external_reward)(void *ud, const al_reward_cfg *cfg, int n, const char *const *prompts,
                           const char *const *completions, const json_t *const *rows, float *rewards,
                           char err[AL_ERRLEN]);
    void *ud;
} al_train_cb;

/* The outcome of a run. */
typedef struct al_train_result {
    long steps;              /* optimiser steps completed (including resumed ones) */
    long total_steps;
    double final_loss;
    double trained_tokens;
    char output_dir[AL_PATH_MAX + 64];      /* where the final model was written */
    char last_checkpoint[AL_PATH_MAX + 64];
    int output_is_model;     /* 1: output_dir holds weights; 0: the job's product is data */
    int n_output_files;      /* JSONL files the job wrote, for the daemon to register */
    struct {
        char path[AL_PATH_MAX + 64];
        char purpose[32];    /* "preferences", "sft", "pairs", "evaluation" */
    } output_files[4];
} al_train_result;

/* Runs the job. resume_dir (may be NULL) is a checkpoint folder written by an
 * earlier run of the same job. Returns AL_OK, AL_ECANCELED (should_stop),
 * AL_EPAUSED (should_pause: a checkpoint was written), AL_ENAN (divergence
 * watchdog), or the error of the failing stage: err->msg its reason, and
 * err->field the job's field at fault as data when one is ("model",
 * "training_files[1]", "hyperparameters.batch_size", "reward.http"; "" when
 * none is, as for a full disk). res (may be NULL) is filled in all cases. */
int al_train_run(const al_job *job, const char *resume_dir, const al_train_cb *cb,
                 al_train_result *res, al_error *err);

/* The global batch (examples, or completions for RL) and the number of ranks
 * recorded in a checkpoint folder's trainer_state.json; both 0 when it
 * records none (dir NULL, unreadable, or written before lib/dist). */
void al_ckpt_world(const char *dir, int *global_batch, int *world);

/* The clean_data job (al_train_run runs it): the job's hygiene filters over
 * training_file, the rows that stay written to output_dir/<name>.clean.jsonl
 * (res->output_files[0], purpose "fine-tune") and the reading's report to
 * output_dir/report.json; events say what each filter dropped, and one
 * metrics row at step 1 counts it (rows, rows_kept, errors, duplicates,
 * hygiene/near_duplicates, hygiene/contaminated, hygiene/too_short,
 * hygiene/too_long, hygiene/language). */
int al_clean_run(const al_job *job, const al_train_cb *cb, al_train_result *res, al_error *err);

/* The sampling jobs generate_preferences, evaluate and critique_revise
 * (lib/train/sampling.c; al_train_run runs them): their product is data,
 * JSONL files in output_dir listed in res->output_files. resume_dir (may be
 * NULL): a checkpoint folder of an earlier run of the same job (its files
 * so far and its cursor), from which the run goes on to the files an
 * uninterrupted one writes. Errors as al_train_run's (AL_EPAUSED: a
 * checkpoint was written). */
int al_sampling_run(const al_job *job, const char *resume_dir, const al_train_cb *cb, al_train_result *res,
                    al_error *err);

/* Exact-match accuracy of greedy generation on n rows of a built-in task
 * (validation seed), with the model's chat template if it has one, else the
 * raw prompt. *acc in [0, 1]. */
int al_eval_task_accuracy(const char *model_dir, const char *task, int n, double *acc,
                          char err[AL_ERRLEN]);

#endif

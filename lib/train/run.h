/* The run skeleton (DESIGN.md "One run skeleton"): what every job that
 * trains shares — the set-up of the ranks and the optimiser, the step loop
 * with its hooks, logging, evaluation and samples, checkpoints and exact
 * resume, pause and cancel — and the pieces the data jobs share with it
 * (events, the tokenizer copy).
 *
 * A method plugs in through al_run_ops; al_run_loop runs
 *
 *     resume (ops->resume) ............ a checkpoint's state read back
 *     begin
 *     step 0 of a fresh run: ops->measure, ops->evaluate (rank 0), log,
 *            ops->samples
 *     while step < total_steps:
 *         stop / pause, agreed by every rank (pause: a checkpoint)
 *         ops->before_step ............ the step's data: its examples, or
 *                                       the rollout, rewards, advantages
 *         per optimiser update k:
 *             ops->backward ........... forward and backward of this rank's
 *                                       share: gradients accumulated
 *             after backward .......... the gradients are final: summed
 *                                       over the ranks here (al_ddp_reduce
 *                                       of each of run->ddp), once, and the
 *                                       outcome agreed by all
 *             ops->optimizer .......... clipping and AdamW
 *         ops->after_step ............. the step's metrics
 *         log, evaluate (rank 0), samples, checkpoint at their steps
 *     the output folder (and its merged copy under LoRA)
 *
 * trainer.c (SFT, pretraining, reward modelling, the preference methods) and
 * rl.c (PPO, GRPO, RLOO) are its step kinds that train; sampling.c's data
 * jobs (generate_preferences, evaluate, critique_revise) the one that does
 * not: a step is a chunk of prompts (or the benchmarks) in before_step, its
 * metrics from after_step, no backward and no optimiser (those hooks NULL:
 * no update, no reduction, no AdamW), no step 0 (measure and evaluate
 * NULL), save writing the partial output files and the cursor (with the
 * RNG) so that a paused or crashed data job resumes where it stopped, and
 * finish writing the job's files instead of a model folder. Runs on the
 * calling thread; every rank of a data-parallel run calls the same
 * collectives in the same order, and rank 0 alone evaluates, samples and
 * writes. */
#ifndef AL_RUN_H
#define AL_RUN_H

#include "../dist/ddp.h"
#include "lm.h"
#include "trainer.h"

/* The metrics of one logged step, in order. tokens_per_second goes in at
 * tps_at when the step is logged (none when tps_at < 0). */
typedef struct al_mlist {
    al_metric m[2 * AL_MAX_METRICS];
    int n;
    int tps_at;
    int log;                    /* non-zero: logged whatever logging_steps says */
} al_mlist;

/* Appends name = v (ignored when full). */
void al_mlist_put(al_mlist *l, const char *name, double v);

/* What the skeleton and a step kind share: set by the step kind's set-up,
 * advanced by the loop. */
typedef struct al_run {
    const al_job *job;
    const al_hparams *hp;
    const al_train_cb *cb;
    al_model *m;                /* the policy: the merged copy under LoRA is of it */
    al_ddp *ddp[2];             /* reduced after backward, in this order (NULL: none) */
    int rank, world;
    int world0;                 /* ranks of the run a resumed checkpoint came from */
    long step, total_steps, steps_per_epoch;
    double trained_tokens;
    al_error err;               /* why the run failed: err.msg the reason, err.field
                                 * the job's field at fault as data ("" when none) */
} al_run;

typedef struct al_run_ops {
    int log_first;              /* step 1 is always logged */
    /* reads a checkpoint's state (collective); note (AL_ERRLEN, "" for none)
     * is an event to add after the resume's */
    int (*resume)(void *u, const char *dir, char *note);
    /* step 0's metrics: the starting point, without an update (measure and
     * evaluate both NULL: no step 0) */
    int (*measure)(void *u, al_mlist *l);
    /* the step's data; *n_updates: the optimiser updates it makes (>= 1) */
    int (*before_step)(void *u, long step, int *n_updates);
    /* update k's forward and backward passes on this rank (NULL, and then
     * optimizer too: a step without updates) */
    int (*backward)(void *u, int k);
    /* update k's clipping and AdamW step, the gradients final */
    int (*optimizer)(void *u, int k, float lr);
    /* the step's metrics (loss first), before the step counter moves */
    int (*after_step)(void *u, float lr, al_mlist *l);
    /* rank 0, at evaluation steps: appends eval metrics (may be NULL) */
    int (*evaluate)(void *u, long step, al_mlist *l);
    /* at logged steps (may be NULL) */
    void (*samples)(void *u, long step);
    /* writes the model and the whole state into dir (collective) */
    int (*save)(void *u, const char *dir);
    /* after the last step, instead of saving into the output folder (may be
     * NULL): a data job's files */
    int (*finish)(void *u);
} al_run_ops;

/* The loop above; res->last_checkpoint, output_dir and final_loss are set
 * here, the rest by the caller. AL_OK, AL_ECANCELED, AL_EPAUSED or the
 * failing hook's error, its reason in run->err. */
int al_run_loop(al_run *run, const al_run_ops *ops, void *u, const char *resume_dir, al_train_result *res);

/* ---- set-up: the policy and its reference (run_setup.c) ------------------------ */

/* The policy of run->job into *lm: job->model with its tokenizer and chat
 * template (job->chat_template over the folder's own), fresh LoRA adapters
 * when use_lora (initialised from hp.seed), in the job's precision
 * (al_job_open_flags) with extra_flags (AL_OPEN_SCORE_HEAD: a value head);
 * run->m is set and the save dtype is the job's. name_field: the weights'
 * errors start "model: " (RL's messages; the SFT-like step kinds give the
 * loader's alone). The reason in run->err; the caller closes *lm. */
int al_run_open_policy(al_run *run, al_lm *lm, int extra_flags, int name_field);
/* The frozen reference of a KL or preference term, in the job's precision:
 * job->ref_model when it names one; else, under LoRA, none (*adapters_off =
 * 1: the policy with its adapters switched off is the reference); else a
 * frozen copy of the start model when copy_start (0: the caller does without,
 * e.g. with reference log-probs computed once). *ref NULL when none. Errors
 * name ref_model or model when name_field, in run->err. */
int al_run_open_ref(al_run *run, int copy_start, int name_field, al_model **ref, int *adapters_off);

/* The world of a run: run->rank, world, world0; *global: batch_size x world,
 * or the global batch a resumed checkpoint (resume_dir, may be NULL) was
 * trained with. AL_EINVAL when batch_size x world is too large. */
int al_run_world(al_run *run, const char *resume_dir, int *global);

/* The reductions across ranks of the n models m[i] and their AdamW
 * optimisers opt[i] (their slices under ZeRO-1) into ddp[i]: after every
 * rank's set-up succeeded (collective). */
int al_run_dist_start(al_run *run, int n, al_model *const *m, al_ddp **ddp, al_adamw *const *opt);

/* The learning rate of run->step: the job's schedule, warmup_ratio of the
 * total steps warming up. */
float al_run_lr(const al_run *run);

/* ---- checkpoints ---------------------------------------------------------------- */

/* Rank 0 writes the folder dir through fill(u, tmp): a new folder under
 * dir.tmp, renamed into place when complete (removed when fill fails), an
 * existing one (the output_dir) file by file. Other ranks return rc as
 * given; rank 0 the outcome (rc unchanged when not AL_OK on entry). */
int al_run_write_dir(al_run *run, const char *dir, int rc, int (*fill)(void *u, const char *tmp), void *u);
/* m's weights into dir: a PEFT adapter folder on base when adapter, else the
 * whole model. */
int al_run_save_weights(al_run *run, al_model *m, const char *dir, const char *base, int adapter);
/* dir/optimizer.safetensors: AdamW moments m, v (n) of model. */
int al_run_save_opt(al_run *run, const char *dir, const float *m, const float *v, size_t n, al_model *model);
int al_run_load_opt(al_run *run, al_adamw *o, al_model *m, const char *dir);
/* dir/trainer_state.json from st (whose reference it takes; NULL: out of memory). */
int al_run_save_state(al_run *run, const char *dir, json_t *st);
/* dir/trainer_state.json parsed into *st (NULL when it is not JSON); *path
 * names the file for messages. */
int al_run_load_state(al_run *run, const char *dir, json_t **st, char path[AL_PATH_MAX + 64]);

/* ---- shared with the data jobs ---------------------------------------------------- */

/* One human-readable event through cb (may be NULL). */
void al_run_event(const al_train_cb *cb, al_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* al_run_event at AL_LOG_INFO of one line, ud the al_train_cb (for
 * al_hygiene_describe). */
void al_run_event_line(void *ud, const char *line);
/* The starting model's tokenizer files (and the job's chat_template when it
 * names one) into dir, so every folder a run writes serves on its own. */
int al_run_copy_tokenizer(const al_job *job, const char *dir, char err[AL_ERRLEN]);

#endif

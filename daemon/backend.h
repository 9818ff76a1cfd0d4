/* The daemon's api_backend (api/backend.h): files, jobs, models, keys and the
 * live feed over the store and the scheduler.
 *
 * Job submission accepts the `alignd train` description with API names and:
 *   - OpenAI's "method" object: {"type":"supervised"|"dpo"|<our method>,
 *     "supervised"|"dpo"|<type>: {"hyperparameters": {...}}}; "supervised"
 *     means sft; the inner hyperparameters win over top-level ones;
 *   - "suffix" (<= 64 of [A-Za-z0-9._-]), "metadata" (<= 16 pairs, keys <= 64
 *     and values <= 512 characters, strings), "priority" (-100..100, higher
 *     runs first);
 *   - "from_checkpoint": "ftjob-<n>[:<step>]" (latest when no step): the new
 *     job starts from that checkpoint's weights; with
 *     "from_checkpoint_optimizer": true it also restores the AdamW moments and
 *     step counter, continuing the schedule where that run stopped.
 * "model"/"ref_model" are registered model names, "ftjob-<n>" (a job's
 * output), "ftjob-<n>:<step>" (a checkpoint) or a Hugging Face model
 * "ORG/NAME[@REV]" (daemon/hubmodels.h); "training_file",
 * "validation_file" and eval_tasks[].file are "file-<n>" ids; "output_dir" is
 * the daemon's to choose. A job naming a Hub model that is still
 * downloading is accepted and waits for it (backend_admit_waiting). */
#ifndef DAEMON_BACKEND_H
#define DAEMON_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>

#include "api/backend.h"
#include "hubmodels.h"
#include "sched.h"
#include "store.h"

typedef struct backend_ctx {
    store *st;
    sched *sc;
    char jobs_dir[STORE_PATH];
    char shared_dir[STORE_PATH]; /* where launched jobs' folders go ("" = jobs_dir) */
    int has_launcher;           /* jobs with resources.processes > 1 can run */
    int64_t memory_limit;       /* 0: none configured */
    hubmodels *hub;             /* models by name from the Hugging Face Hub (may be NULL) */
    atomic_int draining;        /* shutting down: not ready, feeds return at once */
    struct objects_cache *jobs_cache; /* final jobs' serialized objects (objects.h) */
    pthread_mutex_t admit_mu;   /* one pass over the jobs that wait for a model at a time */
} backend_ctx;

/* Fills be with the daemon's functions and ctx as ud (and gives ctx its
 * cache: backend_deinit releases it once the server has stopped). */
void backend_init(api_backend *be, backend_ctx *ctx);
void backend_deinit(backend_ctx *ctx);

/* A job naming a model that is still downloading from the Hub is accepted
 * and waits (validating_files). One pass over the waiting jobs: each whose
 * downloads have all ended is admitted (queued) or failed (the download's
 * error, naming the model). Run at start-up and, through
 * backend_on_download_done (hubmodels_on_done's fn, ud the ctx), when a
 * download ends. Safe from any thread. */
void backend_admit_waiting(backend_ctx *ctx);
void backend_on_download_done(void *ud, const char *name);

#endif

/* The scheduler and its workers.
 *
 * N worker threads, each running one job at a time on the calling thread of
 * al_train_run (its numeric work goes to the shared compute pool). A worker
 * claims the queued job with the highest priority, oldest first, whose
 * memory estimate (made at admission, jobs.memory_bytes) fits in the budget
 * next to the jobs already running; a job that does not fit waits (a job
 * alone is always admitted). Workers sleep on a condition variable that
 * sched_wake signals.
 *
 * Running jobs take turns at step granularity: a ticket lock held from the
 * trainer's should_pause poll (just before a step) to its next should_stop
 * poll (just after), so two jobs alternate steps instead of racing for the
 * pool's mutex, and HTTP threads' pool calls interleave with both.
 *
 * Cancel and pause are flags the trainer polls between steps; pause writes
 * a checkpoint. Draining (shutdown) pauses every running job the same way
 * and returns it to queued, resuming from that checkpoint on the next start.
 * A job's failure is recorded with its cause and never ends the daemon.
 *
 * A job asking for resources.processes > 1 runs through the launcher
 * instead (daemon/launch.h): the worker starts it, reads rank 0's progress
 * into the same callbacks, and signals pause and cancel; such a job takes no
 * turns and no memory here (the launcher places its ranks). When a rank dies
 * the attempt is lost and the job goes back to the queue, resuming from its
 * last checkpoint, up to launcher_retries times; then it fails. */
#ifndef DAEMON_SCHED_H
#define DAEMON_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct sched_cfg {
    int workers;              /* >= 1 */
    int64_t memory_limit;     /* bytes; 0: MemAvailable at start */
    const char *launcher;     /* the launcher line; NULL or "": launched jobs fail */
    int launcher_retries;     /* attempts requeued after a rank died */
    int bf16;                 /* reward models and judges in bf16 (the dtype setting) */
} sched_cfg;

typedef struct sched sched;

/* Creates the scheduler and starts its worker threads (call with the
 * process's signals blocked). NULL on failure. */
sched *sched_new(store *st, const sched_cfg *cfg);
/* A job was queued or resumed: wake a worker. */
void sched_wake(sched *s);
/* The running job `id` stops (cancel) or checkpoints and pauses at its next
 * step boundary. Returns 1 when the job was running here, 0 otherwise. */
int sched_cancel(sched *s, int64_t id);
int sched_pause(sched *s, int64_t id);
/* Stop claiming jobs; running jobs checkpoint and return to queued. */
void sched_drain(sched *s);
/* Waits up to timeout_s for every worker to be idle; 0 when they are, -1 on
 * timeout. */
int sched_wait_idle(sched *s, double timeout_s);
/* Joins the workers (after sched_drain and sched_wait_idle) and frees. */
void sched_free(sched *s);
int sched_workers(const sched *s);
int sched_busy(sched *s);
int64_t sched_memory_budget(const sched *s);
/* Memory held outside the jobs (the chat endpoints' loaded models): fn(ud)
 * is added to the running jobs' estimates whenever a job is claimed, so a
 * job waits while served models take its room (a job still starts when
 * none runs). fn is called with the scheduler's lock held and must not
 * call into the scheduler. NULL clears it (before ud goes away). */
void sched_set_held_memory(sched *s, int64_t (*fn)(void *ud), void *ud);
/* "ftjob-3 step 40/100, ftjob-4 step 2/50" or "idle" into buf. */
void sched_status(sched *s, char *buf, size_t n);

/* MemAvailable from /proc/meminfo in bytes, 0 when unknown. */
int64_t sched_mem_available(void);

#endif

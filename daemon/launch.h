/* Jobs run through a launcher: `alignd train` as N ranks of one
 * data-parallel job (lib/dist), started by the configured launcher line
 * (mpirun, srun) instead of on a worker's own thread.
 *
 * The worker that claimed the job calls launch_run, which writes the job's
 * description (and a copy of its data files) into the job's folder under
 * shared_dir, starts
 *
 *   <launcher line, {processes} {threads} {job} filled in>
 *       <this alignd> train <folder>/job.json --events json [--resume DIR] [--threads T]
 *
 * in a session of its own, and reads rank 0's JSON lines from the launcher's
 * standard output as a local job's callbacks arrive: begin, step metrics,
 * samples, events, checkpoints, then the result. The launcher's standard
 * error goes to <folder>/launch-<attempt>.log. Pause and cancel are signals
 * to the launcher (SIGUSR1, SIGUSR2), which mpirun and srun forward to every
 * rank; the ranks agree on the step. A cancel that goes unheard is followed
 * by SIGTERM and then SIGKILL. When the launcher has exited, whatever is left
 * of its session (a rank it orphaned on this machine) is killed: nothing
 * stays running.
 *
 * The launcher line is split into words here (spaces; '...' and "..."
 * quote), not given to a shell: a job's values never reach one. */
#ifndef DAEMON_LAUNCH_H
#define DAEMON_LAUNCH_H

#include <stdatomic.h>

#include "train/trainer.h"

typedef struct launch_cfg {
    const char *line;        /* the launcher line */
    const char *exe;         /* the alignd binary the ranks run */
    double grace_s;          /* after a cancel: seconds before SIGTERM (then as many before SIGKILL) */
    int bf16;                /* reward models and judges in bf16 (the daemon's dtype setting) */
} launch_cfg;

/* The launcher ended without rank 0's result (a rank died, the launcher
 * failed to start the job or was killed): the attempt is lost; the job may
 * be requeued from its last checkpoint. err says what happened. */
#define LAUNCH_ELOST (-1200)

/* Flags the worker raises (cancel, pause/drain), read between lines. */
typedef struct launch_flags {
    atomic_int *cancel;
    atomic_int *pause;
    int (*draining)(void *ud); /* the daemon stops: pause too (may be NULL) */
    void *ud;
} launch_flags;

/* Runs job (spec: its stored JSON description; dir: its output folder,
 * shared by every node; name: "ftjob-N"; attempt: 1, 2, ... for the log's
 * name) through the launcher, resuming from resume (may be NULL). cb's
 * begin/log/sample/event/checkpoint receive rank 0's lines (should_stop and
 * should_pause are not used: flags are). Returns what al_train_run returns
 * (AL_OK, AL_ECANCELED, AL_EPAUSED, an error with the ranks' reason in
 * err->msg and the job's field at fault in err->field, as al_train_run
 * gives them), or LAUNCH_ELOST; res is filled from the result line. */
int launch_run(const launch_cfg *lc, const al_job *job, const char *spec, const char *dir, const char *name,
               int attempt, const char *resume, const al_train_cb *cb, const launch_flags *fl, al_train_result *res,
               al_error *err);

/* The launcher line's words for a job of `processes` ranks (threads per
 * rank 0: unset), job name: argv (NULL-terminated, malloc'd, free with
 * launch_argv_free) and its count. AL_EINVAL with the reason in err when the
 * line is empty or its quotes do not close. Exposed for tests. */
int launch_argv(const char *line, int processes, int threads, const char *name, char ***argv, int *argc,
                char err[AL_ERRLEN]);
void launch_argv_free(char **argv);

#endif

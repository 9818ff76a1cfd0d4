/* The store: every file, model, job, event, metric, sample, checkpoint and
 * API key of the daemon, in SQLite (WAL, synchronous=FULL), plus uploaded
 * files on disk by content hash.
 *
 * Layout of the state directory:
 *   alignd.db (+ -wal, -shm)      the database
 *   files/<h[0:2]>/<sha256>       uploaded and result files, stored once
 *   jobs/ftjob-<n>/               a job's output: checkpoint-<step>/ folders
 *                                 and the final model (config jobs_dir moves it)
 *   alignd.addr                   the bound address, host:port (serve.c)
 *
 * Schema: migrations/NNNN_name.sql applied in order at open, each in one
 * transaction, PRAGMA user_version = NNNN after it; a database newer than the
 * binary's migrations is refused. Every statement is prepared once and
 * cached. One connection guarded by one mutex: every function is safe from
 * any thread. Writes that add to a job's live feed (events, metrics rows,
 * samples, status changes) take the next per-job `seq` in the same
 * transaction and wake store_feed_wait's waiters.
 *
 * Reads return rows as structs (store_rows, below); the API's objects are
 * made of them by daemon/objects.h: the store knows the schema, not the API.
 *
 * Return codes: STORE_OK, STORE_ENOTFOUND, STORE_ESTATE (a status transition
 * not allowed from the current status), STORE_EIO (SQLite or disk; reason in
 * err / the log), STORE_EINUSE (below). */
#ifndef DAEMON_STORE_H
#define DAEMON_STORE_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "al.h"

#define STORE_PATH 4096
/* The store's error space (lib/al.h lists every layer's): never an errno value. */
enum {
    STORE_OK = 0,
    STORE_ENOTFOUND = -2000, /* no such row */
    STORE_ESTATE = -2001,    /* the row's status does not allow the change */
    STORE_EIO = -2002,       /* SQLite or the disk failed (reason in err or the log) */
    STORE_EINUSE = -2003,    /* a live job uses what was to be deleted */
};

typedef struct store store;

/* Opens (creating) <state_dir>/alignd.db and migrates it with the .sql files
 * of migrations_dir. err: "database schema version 7 is newer than this
 * alignd supports (3): ..." and the like. */
int store_open(store **out, const char *state_dir, const char *migrations_dir, char err[AL_ERRLEN]);
void store_close(store *s);
int store_version(store *s);
/* Highest NNNN among migrations_dir's files, or -1 when unreadable. */
int store_migrations_latest(const char *migrations_dir);
const char *store_state_dir(const store *s);

/* The live feed's clock: bumps on every feed write of any job. */
uint64_t store_feed_version(store *s);
/* Waits until the clock differs from `seen` or timeout_ms passes. */
void store_feed_wait(store *s, uint64_t seen, int timeout_ms);
/* Wakes all feed waiters (shutdown). */
void store_feed_kick(store *s);

/* ---- reading ----
 * A read fills a store_rows: its rows and all their text live in it until
 * store_rows_free. Text fields are NULL where the column is NULL; JSON
 * columns come as their text; a number that may be missing says how. */
typedef struct store_rows {
    void *v;                  /* n rows of the type the read names */
    int n;
    int more;                 /* paged reads: rows follow the last one */
    int cap, oom;             /* the store's: v's room, memory ran out */
    struct store_blk *mem;    /* the rows' text and small arrays */
} store_rows;
void store_rows_free(store_rows *r);

/* A metric's value; NAN where none was finite (stored as NULL). */
typedef struct store_metric {
    const char *name;
    double value;
} store_metric;

/* ---- files ---- */
/* Stores data under its SHA-256 (once) and adds a file row. validation is
 * the report (borrowed, may be NULL); job_id 0 for uploads. */
int store_file_add(store *s, const char *filename, const char *purpose, const void *data, size_t len,
                   const char *status, const char *details, const json_t *validation, int64_t job_id,
                   int64_t *id, char err[AL_ERRLEN]);
typedef struct store_file_row {
    int64_t id, bytes, created_at;
    int64_t job_id;           /* the job that wrote it; 0 for an upload */
    const char *filename, *purpose, *status, *status_details, *sha256;
    const char *validation;   /* the dataset report (JSON) */
} store_file_row;
/* One store_file_row; STORE_ENOTFOUND when there is no such (undeleted) file. */
int store_file_read(store *s, int64_t id, store_rows *out);
/* Files newest first with an id below after (0: from the newest), of that
 * purpose (NULL: any), at most limit. */
int store_file_page(store *s, int64_t after, int limit, const char *purpose, store_rows *out);
/* status ("processed"/"error") and the blob's path. */
int store_file_info(store *s, int64_t id, char status[32], char path[STORE_PATH]);
/* The dataset_info entry a file was uploaded with (its report's dataset_info):
 * a new reference, or NULL when none (or no such file). */
json_t *store_file_dataset_info(store *s, int64_t id);
/* STORE_EINUSE (job id in *user) while a queued/running/paused job uses it. */
int store_file_delete(store *s, int64_t id, int64_t *user);

/* ---- models ---- */
typedef struct store_model {
    char name[256];
    char path[STORE_PATH];
    char kind[16];        /* base | fine_tuned | adapter */
    char base[256];       /* adapters: base model name */
    char owned_by[32];
    int64_t job_id;
    char arch[32];
    int64_t params;
    int has_score;
    int64_t created_at;
    char status[16];      /* ready (""), downloading, failed */
    char error[640];      /* JSON {"code","message"} of a failed download, "" */
    char source[1200];    /* JSON: {"type":"folder"|"hub"|"fine_tune", ...}, "" */
    char info[512];       /* JSON: {"family","dtype","context_length","chat_template"}, "" */
} store_model;
/* Inserts or replaces by name. */
int store_model_put(store *s, const store_model *m);
int store_model_get(store *s, const char *name, store_model *out);
typedef struct store_model_row {
    store_model m;
    const int64_t *users;     /* the queued, running or paused jobs using it, by id */
    int n_users;
} store_model_row;
/* One store_model_row. */
int store_model_read(store *s, const char *name, store_rows *out);
/* Models newest first after the one named after (NULL: from the newest). */
int store_model_page(store *s, const char *after, int limit, store_rows *out);
/* The most users a refusal to delete lists (more than its message shows). */
#define STORE_USERS_MAX 32
/* STORE_EINUSE with the first users' job ids in users (*n_users of them). */
int store_model_delete(store *s, const char *name, int64_t users[STORE_USERS_MAX], int *n_users);

/* ---- jobs ---- */
typedef struct store_job_new {
    const char *method, *model, *ref_model, *training_file, *validation_file;
    const json_t *task, *request, *spec, *hyperparameters, *metadata;
    const char *suffix, *from_checkpoint, *resume_dir;
    int priority;
    int64_t seed;
    int64_t memory_bytes;
    const char *jobs_dir;  /* output_dir becomes <jobs_dir>/ftjob-<n> */
    const json_t *models_used; /* names of every model the job reads (array), or NULL */
} store_job_new;
/* Inserts the job as validating_files with its creation event. */
int store_job_create(store *s, const store_job_new *j, int64_t *id);

/* Optional column updates that ride along with a transition. NULL leaves a
 * column alone; "" sets it NULL. */
typedef struct store_upd {
    const char *error_code, *error_message, *error_param;
    const char *fine_tuned_model;
    const char *resume_dir;
    int started, finished;   /* set started_at (if unset) / finished_at to now */
    long step;               /* >= 0: set step (and drop metrics/samples after it) */
    /* non-NULL: the job's description (and its hyperparameters and memory
     * estimate) replaced, as when a job that waited for a model is admitted */
    const json_t *spec, *hyperparameters;
    int64_t memory_bytes;
} store_upd;
#define STORE_UPD_INIT {NULL, NULL, NULL, NULL, NULL, 0, 0, -1, NULL, NULL, 0}
/* One transaction: status from one of `from` ("queued|paused") to `to`, the
 * columns of upd, and one status event (level "info"/"warn"/"error"). */
int store_job_transition(store *s, int64_t id, const char *from, const char *to, const char *level,
                         const store_upd *upd, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* The same with the event's arguments as a va_list (left for the caller to end). */
int store_job_transitionv(store *s, int64_t id, const char *from, const char *to, const char *level,
                          const store_upd *upd, const char *fmt, va_list ap) __attribute__((format(printf, 7, 0)));
/* The current status into st (size 32). */
int store_job_status(store *s, int64_t id, char st[32]);

typedef struct store_run {
    int64_t id;
    char *spec;             /* malloc'd JSON */
    char resume_dir[STORE_PATH];
    char output_dir[STORE_PATH];
    char method[32];
    char suffix[64];
    char model[256];
    long step;
    double elapsed_s;
    int64_t memory_bytes;
    int priority;
} store_run;
int store_job_run_info(store *s, int64_t id, store_run *r);
void store_run_deinit(store_run *r);
/* Queued jobs in scheduling order (priority desc, id asc): ids and memory
 * estimates, up to n. Returns the count. */
int store_queue(store *s, int64_t *ids, int64_t *mem, int n);

int store_job_progress(store *s, int64_t id, long step, long total, double epoch, double tokens,
                       double tps, double elapsed_s, double remaining_s);
int store_job_event(store *s, int64_t id, const char *level, const char *type, const json_t *data,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
int store_job_metrics_add(store *s, int64_t id, long step, double epoch, const char *const *names,
                          const double *values, int n);
int store_job_sample_add(store *s, int64_t id, long step, const char *prompt, const char *completion,
                         double reward);
int store_job_checkpoint_add(store *s, int64_t id, long step, const char *path);
/* A benchmark's result (lib/train/bench.h's object; role "model" or
 * "model_b"), replacing one of the same step, task and role. */
int store_job_eval_result_add(store *s, int64_t id, long step, const json_t *result);
/* Retention (transformers' save_total_limit): the rows of the job's
 * checkpoint-N folders beyond the newest `keep` are deleted (the output
 * folder's row never is); their paths come back as a JSON array for the
 * caller to remove. NULL on a database error. */
json_t *store_job_checkpoints_prune(store *s, int64_t id, int keep);
/* Deletes a finished job and what it made: its rows (events, metrics,
 * samples, checkpoints, benchmark results), its output model's registration
 * and the job; the folder to remove (its output_dir) into dir. STORE_ESTATE
 * while it is not final, STORE_EINUSE (the first users' job ids in users)
 * while a queued, running or paused job uses its output or a checkpoint,
 * STORE_ENOTFOUND. */
int store_job_delete(store *s, int64_t id, char dir[STORE_PATH], int64_t users[STORE_USERS_MAX], int *n_users);
/* Path of the job's checkpoint at `step` (-1: the latest). */
int store_job_checkpoint_path(store *s, int64_t id, long step, char path[STORE_PATH], long *step_out);

/* A benchmark result, with what the object needs of its job to name the
 * model it measured. */
typedef struct store_eval_row {
    int64_t job_id, created_at;
    long step;
    const char *role;         /* "model" or "model_b" */
    const char *result;       /* lib/train/bench.h's object (JSON) */
    const char *job_model, *job_fine_tuned_model, *job_method, *job_status, *job_model_b;
    long job_step;
} store_eval_row;

typedef struct store_job_row {
    int64_t id;
    int loaded;               /* 0: store_job_page's want() skipped it, only id is set */
    int64_t created_at, started_at, finished_at;   /* 0: not yet */
    const char *model, *fine_tuned_model, *suffix, *method, *status;
    int priority;
    const char *training_file, *validation_file, *from_checkpoint;
    const char *task, *hyperparameters, *metadata;  /* JSON */
    const char *training_files;                     /* JSON, from the request; NULL when not given */
    const char *chat_template;                      /* from the request; NULL when not given */
    int processes;                                  /* resources.processes (1: in the daemon) */
    int threads_per_process;                        /* resources.threads_per_process; -1 when not given */
    const char *distributed;                        /* JSON, from the request; NULL when not given */
    int64_t seed;
    long step, total_steps;
    double epoch, elapsed_s, tokens_per_second, trained_tokens;
    double remaining_s;       /* NAN: unknown */
    const char *error_code, *error_message, *error_param;  /* error_code NULL: no error */
    int64_t queue_position;   /* queued jobs: 1 = next; else 0 */
    const int64_t *result_files;
    int n_result_files;
    const store_metric *latest_metrics;             /* the last logged step's */
    int n_latest_metrics, has_latest_metrics;
    const store_eval_row *evals;                    /* each task and role's latest */
    int n_evals;
} store_job_row;
/* One store_job_row. */
int store_job_read(store *s, int64_t id, store_rows *out);
/* Jobs newest first with an id below after (0: from the newest) and that
 * status (NULL: any), at most limit, in one read transaction. want (may be
 * NULL) is asked of each id before its row is read: 0 leaves the row at its
 * id, loaded 0 (a caller that holds the job's object already). */
int store_job_page(store *s, int64_t after, int limit, const char *status, int (*want)(void *ud, int64_t id),
                   void *ud, store_rows *out);

typedef struct store_event_row {
    int64_t id, created_at;
    const char *level, *message, *type;
    const char *data;         /* JSON */
} store_event_row;
/* A job's events newest first with an id below after (0: from the newest). */
int store_job_event_page(store *s, int64_t id, int64_t after, int limit, store_rows *out);

typedef struct store_metrics_row {
    long step;
    double epoch;
    int64_t created_at;
    const store_metric *m;    /* by name */
    int n;
} store_metrics_row;
/* Every logged step after after_step, ascending, with the metrics named in
 * keys (comma-separated; NULL or "": all); steps with none of them left out. */
int store_job_metric_rows(store *s, int64_t id, const char *keys, long after_step, store_rows *out);

typedef struct store_sample_row {
    long step;
    int64_t created_at;
    const char *prompt, *completion;
    double reward;            /* NAN: none */
} store_sample_row;
/* Samples of steps after after_step, by step, at most limit. */
int store_job_sample_page(store *s, int64_t id, long after_step, int limit, store_rows *out);

typedef struct store_checkpoint_row {
    int64_t id, job_id, created_at;
    long step;
    const char *metrics;      /* JSON: the step's metrics when it was written */
} store_checkpoint_row;
/* Checkpoints by step with an id above after, at most limit. */
int store_job_checkpoint_page(store *s, int64_t id, int64_t after, int limit, store_rows *out);
/* Every benchmark result of a job by step, task and role (store_eval_row). */
int store_job_eval_rows(store *s, int64_t id, store_rows *out);

/* The live feed: what a job's seq numbers point at. A status item is the
 * status a transition set; the job's row as it is now comes beside. */
typedef enum { STORE_FEED_EVENT, STORE_FEED_METRICS, STORE_FEED_SAMPLE, STORE_FEED_STATUS } store_feed_kind;
typedef struct store_feed_item {
    int64_t seq;
    store_feed_kind kind;
    const store_event_row *event;
    const store_metrics_row *metrics;
    const store_sample_row *sample;
    const char *status;
} store_feed_item;
/* Feed items with seq > after by seq (at most max, store_feed_item);
 * *last_seq the job's latest seq; *final whether its status is final and
 * nothing was cut; *job the job's row when a status item is among them
 * (else NULL), in out's memory. */
int store_job_feed(store *s, int64_t id, int64_t after, int max, store_rows *out, int64_t *last_seq, int *final,
                   const store_job_row **job);
/* The clock of what a job's object shows besides its row: bumps whenever a
 * final job's object could change without a feed write (a result file
 * deleted, a job deleted, paths relocated), for caches of final jobs. */
uint64_t store_objects_epoch(store *s);
/* Jobs left running/cancelling by a killed daemon: running -> queued (resume
 * from the latest checkpoint), cancelling -> cancelled. Returns the count. */
int store_recover(store *s);
/* One job from a status of `from` ("running") back to queued, to resume from
 * its latest checkpoint still on disk (rows of newer ones that are gone are
 * dropped) or from step 0 without one; the warning event says why (a
 * sentence) and where it resumes. The step it resumes from into *step (may
 * be NULL). */
int store_job_requeue(store *s, int64_t id, const char *from, const char *why, long *step);

/* The statuses of jobs, in lifecycle order, NULL-terminated. */
#define STORE_N_STATUSES 8
extern const char *const store_statuses[STORE_N_STATUSES + 1];
typedef struct store_stats {
    int64_t jobs[STORE_N_STATUSES];  /* by store_statuses */
    int64_t steps_total, tokens_total;
} store_stats;
int store_stats_read(store *s, store_stats *out);

/* ---- locations ---- */
/* Where the folder `key` (state_dir, jobs_dir, models_dir) was when the
 * daemon last ran: STORE_OK and its absolute path, or STORE_ENOTFOUND. */
int store_location(store *s, const char *key, char path[STORE_PATH]);
/* Records that `key` is at cur. When old (may be NULL) is another path, first
 * rewrites every path the database records under old to the same path under
 * cur: models, checkpoints, jobs' output and resume folders and the paths in
 * their trainer descriptions. One transaction; moved receives the rows
 * changed. */
int store_relocate(store *s, const char *key, const char *old, const char *cur, int *moved, char err[AL_ERRLEN]);

/* ---- API keys ---- */
int store_key_add(store *s, const char *name, const unsigned char hash[32], int read_only, int64_t *id);
int store_key_count(store *s);
/* 1 when hash matches a stored key (every stored hash is compared in
 * constant time), *read_only set; 0 otherwise. */
int store_key_check(store *s, const unsigned char hash[32], int *read_only);

/* SHA-256 via libcrypto's EVP; hex is 65 bytes. */
int store_sha256(const void *data, size_t len, unsigned char out[32]);
void store_hex(const unsigned char *in, size_t n, char *hex);

/* Final statuses: succeeded, failed, cancelled. */
int store_status_final(const char *st);

#endif

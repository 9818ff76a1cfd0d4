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
 * Return codes: 0 ok, STORE_ENOTFOUND, STORE_ESTATE (a status transition not
 * allowed from the current status), STORE_EIO (SQLite or disk; reason in
 * err / the log). JSON getters return a new reference or NULL when absent. */
#ifndef DAEMON_STORE_H
#define DAEMON_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_PATH 4096
enum { STORE_OK = 0, STORE_ENOTFOUND = -1, STORE_ESTATE = -2, STORE_EIO = -3, STORE_EINUSE = -4 };

typedef struct store store;

/* Opens (creating) <state_dir>/alignd.db and migrates it with the .sql files
 * of migrations_dir. err: "database schema version 7 is newer than this
 * alignd supports (3): ..." and the like. */
int store_open(store **out, const char *state_dir, const char *migrations_dir, char err[512]);
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

/* ---- files ---- */
/* Stores data under its SHA-256 (once) and adds a file row. validation is
 * the report (borrowed, may be NULL); job_id 0 for uploads. */
int store_file_add(store *s, const char *filename, const char *purpose, const void *data, size_t len,
                   const char *status, const char *details, const json_t *validation, int64_t job_id,
                   int64_t *id, char err[256]);
json_t *store_file_json(store *s, int64_t id);
json_t *store_file_list(store *s, int64_t after, int limit, const char *purpose);
/* status ("processed"/"error") and the blob's path. */
int store_file_info(store *s, int64_t id, char status[32], char path[STORE_PATH]);
/* The sharegpt names a file was uploaded with (its report's dataset_info):
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
json_t *store_model_json(store *s, const char *name);
/* after: a model name (newest first) or NULL. */
json_t *store_model_list(store *s, const char *after, int limit);
/* STORE_EINUSE with the users' ids in in_use ("ftjob-1,ftjob-2"). */
int store_model_delete(store *s, const char *name, char in_use[256]);

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
} store_upd;
#define STORE_UPD_INIT {NULL, NULL, NULL, NULL, NULL, 0, 0, -1}
/* One transaction: status from one of `from` ("queued|paused") to `to`, the
 * columns of upd, and one status event (level "info"/"warn"/"error"). */
int store_job_transition(store *s, int64_t id, const char *from, const char *to, const char *level,
                         const store_upd *upd, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
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
 * samples, checkpoints), its output model's registration and the job; the
 * folder to remove (its output_dir) into dir. STORE_ESTATE while it is not
 * final, STORE_EINUSE (users as "ftjob-1, ftjob-2") while a queued, running
 * or paused job uses its output or a checkpoint, STORE_ENOTFOUND. */
int store_job_delete(store *s, int64_t id, char dir[STORE_PATH], char users[256]);
/* Path of the job's checkpoint at `step` (-1: the latest). */
int store_job_checkpoint_path(store *s, int64_t id, long step, char path[STORE_PATH], long *step_out);

json_t *store_job_json(store *s, int64_t id);
json_t *store_job_list(store *s, int64_t after, int limit, const char *status);
/* The same list serialized as the API sends it (compact, reals to 10
 * digits, a trailing newline), final jobs' objects from a cache: *out
 * malloc'd. STORE_EIO when memory runs out. */
int store_job_list_text(store *s, int64_t after, int limit, const char *status, char **out, size_t *len);
json_t *store_job_events(store *s, int64_t id, int64_t after, int limit);
json_t *store_job_metrics(store *s, int64_t id, const char *keys, long after_step, long max_points);
json_t *store_job_samples(store *s, int64_t id, long after_step, int limit);
json_t *store_job_checkpoints(store *s, int64_t id, int64_t after, int limit);
/* Every benchmark result of a job by step, task and role as a list object
 * (api/backend.h's Eval result shape). */
json_t *store_job_eval_results(store *s, int64_t id);
/* Feed items with seq > after (at most max), as a JSON array; *last_seq the
 * job's latest seq; *final whether its status is final. */
int store_job_feed(store *s, int64_t id, int64_t after, int max, json_t **items, int64_t *last_seq,
                   int *final);
/* Jobs left running/cancelling by a killed daemon: running -> queued (resume
 * from the latest checkpoint), cancelling -> cancelled. Returns the count. */
int store_recover(store *s);
/* One job from a status of `from` ("running") back to queued, to resume from
 * its latest checkpoint still on disk (rows of newer ones that are gone are
 * dropped) or from step 0 without one; the warning event says why (a
 * sentence) and where it resumes. The step it resumes from into *step (may
 * be NULL). */
int store_job_requeue(store *s, int64_t id, const char *from, const char *why, long *step);
json_t *store_stats(store *s);

/* ---- locations ---- */
/* Where the folder `key` (state_dir, jobs_dir, models_dir) was when the
 * daemon last ran: STORE_OK and its absolute path, or STORE_ENOTFOUND. */
int store_location(store *s, const char *key, char path[STORE_PATH]);
/* Records that `key` is at cur. When old (may be NULL) is another path, first
 * rewrites every path the database records under old to the same path under
 * cur: models, checkpoints, jobs' output and resume folders and the paths in
 * their trainer descriptions. One transaction; moved receives the rows
 * changed. */
int store_relocate(store *s, const char *key, const char *old, const char *cur, int *moved, char err[512]);

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

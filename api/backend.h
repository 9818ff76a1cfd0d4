/* What the REST layer needs from whoever keeps the state (STYLE.md §1).
 *
 * api/ has no SQL: it reaches files, jobs, models, keys and the live feed
 * only through this table, which daemon/ fills in (daemon/backend.c) and
 * tests fake (tests/fake_backend.h). The backend speaks JSON objects
 * already in the shapes the API returns (below; the daemon makes them of
 * its store's rows in one module, daemon/objects.c), so api/ routes,
 * authenticates, validates transport-level input (sizes, nesting, query
 * parameters, paths) and frames responses.
 *
 * Threads: every function may be called from many HTTP threads at once and
 * must be safe for that. None of them trains; job_feed_wait may block for at
 * most its timeout.
 *
 * Results: each function returns 0 and sets *out (a new reference the caller
 * releases) or returns -1 and fills *e. Errors carry the HTTP status and
 * OpenAI's error fields; `param` names the offending field with its path
 * ("hyperparameters.beta", "training_file", "model").
 *
 * ---------------------------------------------------------------------------
 * Object shapes (the contract with web/ and outside clients)
 *
 * Lists: {"object":"list","data":[...],"has_more":bool,
 *         "first_id":ID|null,"last_id":ID|null}
 *   `after` is the id of the last object of the previous page; `limit`
 *   defaults to 20, 1..100 (api/ validates, the backend trusts it).
 *   Jobs, files and models are listed newest first (OpenAI); events newest
 *   first; metrics, samples and checkpoints by step ascending.
 *
 * File:  {"object":"file","id":"file-<n>","bytes":N,"created_at":UNIX,
 *         "filename":S,"purpose":"fine-tune"|..., "status":"processed"|"error",
 *         "status_details":S|null,"sha256":HEX,
 *         "validation": the dataset report of lib/text/dataset.h (format,
 *                       counts, token statistics, bad lines with line number
 *                       and code)}
 *
 * Job:   {"object":"fine_tuning.job","id":"ftjob-<n>","created_at":UNIX,
 *         "started_at":UNIX|null,"finished_at":UNIX|null,
 *         "model":NAME,"fine_tuned_model":NAME|null,"suffix":S|null,
 *         "method":"sft"|"dpo"|...,"status":STATUS,"priority":N,
 *         "training_file":"file-..."|null,"validation_file":...|null,
 *         "task":{"name","rows","seed"}|null,
 *         "hyperparameters":{resolved, defaults filled in},
 *         "seed":N,"metadata":{string pairs, <= 16}|null,
 *         "progress":{"step","total_steps","epoch","percentage",
 *                     "elapsed_s","remaining_s"|null,"tokens_per_second"},
 *         "queue_position":N|null (queued only, 1 = next),
 *         "trained_tokens":N,"estimated_finish":UNIX|null,
 *         "error":{"code","message","param"}|null,
 *         "result_files":["file-..."],"latest_metrics":{name: value}|null,
 *         "from_checkpoint":S|null,
 *         "eval_results":[the last Eval result of each task and role]}
 *   STATUS: validating_files, queued, running, paused, cancelling,
 *           succeeded, failed, cancelled.
 *
 * Event: {"object":"fine_tuning.job.event","id":"ftevent-<n>",
 *         "created_at":UNIX,"level":"info"|"warn"|"error",
 *         "message":S,"type":"message"|"status"|"metrics"|"checkpoint",
 *         "data":{...}|null}
 *
 * Metrics row (one per logged step):
 *        {"object":"fine_tuning.job.metrics","step":N,"epoch":X,
 *         "created_at":UNIX,"metrics":{"loss":X,"learning_rate":X,...}}
 *   TRL's names (loss, grad_norm, learning_rate, tokens_per_second,
 *   rewards/chosen, rewards/margins, objective/kl, eval_loss, ...).
 *
 * Sample: {"object":"fine_tuning.job.sample","step":N,"created_at":UNIX,
 *          "prompt":S,"completion":S,"reward":X|null}
 *
 * Checkpoint: {"object":"fine_tuning.job.checkpoint","id":"ckpt-<n>",
 *          "created_at":UNIX,"fine_tuning_job_id":"ftjob-<n>",
 *          "fine_tuned_model_checkpoint":"ftjob-<n>:<step>",
 *          "step_number":N,"metrics":{...}}
 *   "ftjob-<n>:<step>" is usable wherever a model name is (inference, a
 *   new job's model, from_checkpoint).
 *
 * Eval result (a benchmark of eval_tasks, lib/train/bench.h):
 *        {"object":"fine_tuning.job.eval_result","task":NAME,
 *         "type":"multiple_choice"|"generative","n":N,"step":N,
 *         "role":"model"|"model_b","model":NAME (what was measured: the
 *         job's model at step 0 and in evaluate jobs, model_b's name, the
 *         fine-tuned model at a succeeded job's last step, else
 *         "ftjob-<n>:<step>"),"created_at":UNIX,
 *         "metrics":{"acc","acc_stderr","acc_norm","acc_norm_stderr",
 *                    "acc_bytes","acc_bytes_stderr" | "exact_match",
 *                    "exact_match_stderr","extracted","extracted_stderr"}}
 *
 * Model: {"object":"model","id":NAME,"created":UNIX,"owned_by":"alignd"|
 *         "ftjob-<n>"|"ORG/NAME","kind":"base"|"fine_tuned"|"adapter"|"checkpoint",
 *         "base_model":NAME|null,"architecture":S,"parameters":N,
 *         "has_score_head":bool,"family":S (config.json's model_type),
 *         "dtype":"bfloat16"|"float32"|...|null,"context_length":N,
 *         "chat_template":bool,
 *         "source":{"type":"folder","path"} | {"type":"hub","repo",
 *                   "revision","commit"} | {"type":"fine_tune","job",
 *                   "base_model"},
 *         "status":"ready"|"downloading"|"failed","error":{"code","message"}|null,
 *         "download":{"bytes","total_bytes","files","files_total","file",
 *                     "percentage"} (while downloading),
 *         "in_use_by":["ftjob-..."]}
 *   NAME of a Hub model: "ORG/NAME" or "ORG/NAME@REV".
 *
 * Feed item (server-sent events; `seq` is the SSE id, increasing per job):
 *        {"seq":N,"event":"event"|"metrics"|"sample"|"status",
 *         "data": an Event / Metrics row / Sample / Job object}
 *
 * Stats (for /metrics):
 *        {"jobs_by_status":{STATUS: N},"queue_depth":N,
 *         "steps_total":N,"tokens_total":N,"model_memory_bytes":N,
 *         "workers":N,"workers_busy":N}
 * --------------------------------------------------------------------------- */
#ifndef API_BACKEND_H
#define API_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "al.h"

#define API_PATH_MAX 4096

typedef struct api_error {
    int status;         /* HTTP status: 400, 401, 403, 404, 409, 413, 415, 422, 429, 500 */
    char type[40];      /* "invalid_request_error", "authentication_error",
                         * "permission_error", "not_found_error", "conflict_error",
                         * "rate_limit_error", "server_error" */
    char code[48];      /* machine code: "invalid_value", "missing_field", "not_found",
                         * "invalid_state", "model_in_use", "file_invalid", ... */
    char param[AL_FIELDLEN]; /* offending field path, "" when none */
    char message[AL_ERRLEN];
} api_error;

/* Fills *e; returns -1 so handlers can `return api_error_set(...)`. */
int api_error_set(api_error *e, int status, const char *type, const char *code,
                  const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

typedef struct api_page {
    const char *after;  /* id, or NULL for the first page */
    int limit;          /* 1..100 */
} api_page;

typedef struct api_backend {
    void *ud;

    /* Readiness for /readyz: 1 when the database is open and migrated and the
     * workers run; else 0 and a reason in why. */
    int (*ready)(void *ud, char why[AL_ERRLEN]);

    /* API keys. auth_required: 1 when any key exists. auth_check: 1 when
     * `key` matches a stored key (constant-time compare of hashes), with
     * *read_only set; 0 otherwise. */
    int (*auth_required)(void *ud);
    int (*auth_check)(void *ud, const char *key, int *read_only);

    /* Files. file_create validates the JSONL (lib/text/dataset.h) and stores
     * it by content hash; a file that fails validation is still created with
     * status "error" and its report unless it is not JSONL at all (400,
     * code file_invalid, the report's first bad line in the message).
     * dataset_info (borrowed, may be NULL): an alpaca or sharegpt file's own
     * column (and tag) names (LLaMA-Factory's dataset_info entry), kept in the report for
     * the jobs that read the file. */
    int (*file_create)(void *ud, const char *filename, const char *purpose, const json_t *dataset_info,
                       const void *data, size_t len, json_t **out, api_error *e);
    int (*file_list)(void *ud, const api_page *pg, const char *purpose,
                     json_t **out, api_error *e);
    int (*file_get)(void *ud, const char *id, json_t **out, api_error *e);
    /* Path of the stored bytes (for GET /v1/files/{id}/content). */
    int (*file_path)(void *ud, const char *id, char path[API_PATH_MAX], api_error *e);
    int (*file_delete)(void *ud, const char *id, json_t **out, api_error *e);

    /* Jobs. body is the `alignd train` job description (lib/train/job.h)
     * with API names: model is a registered model name or
     * "ftjob-<n>[:<step>]", files are "file-..." ids; plus "suffix",
     * "metadata", "priority", "from_checkpoint". Bad fields are 400 with
     * param set (422 when the field is well-formed but refers to something
     * unusable, e.g. a file whose validation failed). */
    int (*job_create)(void *ud, const json_t *body, json_t **out, api_error *e);
    /* {"tokens","steps","examples","memory_bytes","seconds","parameters",
     *  "trainable_parameters","fits":bool} without running anything. */
    int (*job_estimate)(void *ud, const json_t *body, json_t **out, api_error *e);
    int (*job_list)(void *ud, const api_page *pg, const char *status,
                    json_t **out, api_error *e);
    /* The same list already serialized (compact JSON and a newline; *text
     * malloc'd, the caller frees): the busiest read, built without a JSON
     * tree where the backend can. May be NULL (job_list is used). */
    int (*job_list_text)(void *ud, const api_page *pg, const char *status,
                         char **text, size_t *len, api_error *e);
    int (*job_get)(void *ud, const char *id, json_t **out, api_error *e);
    /* action: "cancel", "pause" or "resume"; returns the job. 409
     * (invalid_state) when the job's status does not allow it. */
    int (*job_action)(void *ud, const char *id, const char *action,
                      json_t **out, api_error *e);
    /* Deletes a finished job with its checkpoints, output model and
     * records: {"id","object":"fine_tuning.job","deleted":true}. 409
     * invalid_state while it is not final, 409 model_in_use while a live
     * job uses its output or a checkpoint. May be NULL (405). */
    int (*job_delete)(void *ud, const char *id, json_t **out, api_error *e);
    int (*job_events)(void *ud, const char *id, const api_page *pg,
                      json_t **out, api_error *e);
    /* keys: comma-separated metric names or NULL for all; rows with
     * step > after_step; when more than max_points (> 0) rows match, evenly
     * spaced rows are returned, always including the last. A list object
     * with "total_points". */
    int (*job_metrics)(void *ud, const char *id, const char *keys, long after_step,
                       long max_points, json_t **out, api_error *e);
    int (*job_samples)(void *ud, const char *id, long after_step, int limit,
                       json_t **out, api_error *e);
    int (*job_checkpoints)(void *ud, const char *id, const api_page *pg,
                           json_t **out, api_error *e);
    /* Every benchmark result of the job (Eval result shape), by step, task
     * and role; NULL: the route answers 404. */
    int (*job_eval_results)(void *ud, const char *id, json_t **out, api_error *e);

    /* Live feed of a job for server-sent events: a JSON array of feed items
     * with seq > after_seq (at most max). When none is ready, waits up to
     * timeout_ms for one. *finished is set when the job is in a final status
     * and every item was delivered. */
    int (*job_feed)(void *ud, const char *id, int64_t after_seq, int max, int timeout_ms,
                    json_t **items, int *finished, api_error *e);
    /* The job's latest feed seq (0 when it has none), so that a new stream
     * can start with the last few items instead of the whole history. May
     * be NULL: such a backend's streams replay everything. */
    int (*job_feed_last)(void *ud, const char *id, int64_t *last_seq, api_error *e);

    /* Models. model_register takes a folder already resolved by api/ to a
     * real path inside the allowed models directory. model_delete is 409
     * (model_in_use) while a queued or running job uses it. */
    int (*model_list)(void *ud, const api_page *pg, json_t **out, api_error *e);
    int (*model_get)(void *ud, const char *id, json_t **out, api_error *e);
    int (*model_register)(void *ud, const char *name, const char *real_path,
                          json_t **out, api_error *e);
    int (*model_delete)(void *ud, const char *id, json_t **out, api_error *e);
    /* Folder to load for inference: a model name, "ftjob-<n>" (its output),
     * "ftjob-<n>:<step>" (a checkpoint) or "ORG/NAME[@REV]" from the Hugging
     * Face cache (409 model_downloading while it downloads). */
    int (*model_path)(void *ud, const char *id, char dir[API_PATH_MAX], api_error *e);
    /* A model from the Hugging Face Hub (POST /v1/models {"hf"}): repo
     * "ORG/NAME", revision NULL = "main", name NULL = the repo (+ "@rev").
     * Ready at once from the cache (*accepted 0), or "downloading" with a
     * "download" progress object (*accepted 1: 202). May be NULL (403). */
    int (*model_register_hub)(void *ud, const char *repo, const char *revision, const char *name,
                              json_t **out, int *accepted, api_error *e);
    /* A model's events (its download: "progress" and "status" items) as a
     * list, and as a live feed shaped as job_feed's. May be NULL. */
    int (*model_events)(void *ud, const char *id, const api_page *pg, json_t **out, api_error *e);
    int (*model_feed)(void *ud, const char *id, int64_t after_seq, int max, int timeout_ms,
                      json_t **items, int *finished, api_error *e);

    /* Counters for /metrics (shape above). */
    int (*stats)(void *ud, json_t **out);
} api_backend;

#endif

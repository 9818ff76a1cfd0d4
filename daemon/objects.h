/* The API's objects (the shapes of api/backend.h) made of the store's rows:
 * the one place where a file, job, event, metrics row, sample, checkpoint,
 * eval result, model, list, feed item, stats, estimate, model download
 * event or download progress is put together. The store (store.h) reads
 * rows and knows the schema; this module knows the API; daemon/backend.c
 * and daemon/hubmodels.c hand its objects to api/ (which builds only its
 * own answers: errors, inference, health).
 *
 * It lives in daemon/, beside backend.c, because api/ sits below daemon/:
 * api/ reaches the daemon only through the api_backend table (a test fakes
 * it), so it cannot see the store's row types.
 *
 * Every function returns a new reference (NULL only when memory runs out,
 * or where it says). Public ids are spelled by api/ids.h.
 *
 * Threads: the functions are pure but objects_jobs_text, whose cache of
 * final jobs' serialized objects is guarded by its own mutex. */
#ifndef DAEMON_OBJECTS_H
#define DAEMON_OBJECTS_H

#include <jansson.h>

#include "hub.h"
#include "store.h"
#include "train/estimate.h"

/* How the API serializes a response body (api/server.c does the same). */
#define OBJECTS_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(10))

json_t *objects_file(const store_file_row *f);
/* The job's object; its "estimated_finish" counts from now. */
json_t *objects_job(const store_job_row *j);
json_t *objects_event(const store_event_row *e);
json_t *objects_metrics(const store_metrics_row *m);
json_t *objects_sample(const store_sample_row *s);
json_t *objects_checkpoint(const store_checkpoint_row *c);
/* NULL when the stored result is not an object (it is left out). */
json_t *objects_eval_result(const store_eval_row *r);
json_t *objects_model(const store_model_row *m);

/* The object of one row as the store has it now: NULL when there is no
 * such row (or memory ran out). */
json_t *objects_file_get(store *s, int64_t id);
json_t *objects_job_get(store *s, int64_t id);
json_t *objects_model_get(store *s, const char *name);

/* {"object":"list","first_id","last_id","data","has_more"}: the ids of
 * data's first and last objects (null when empty); takes data. */
json_t *objects_list(json_t *data, int has_more);
/* The list of a read's rows (store_rows of that type), has_more from it. */
json_t *objects_file_list(const store_rows *r);
json_t *objects_job_list(const store_rows *r);
json_t *objects_event_list(const store_rows *r);
json_t *objects_sample_list(const store_rows *r);
json_t *objects_checkpoint_list(const store_rows *r);
json_t *objects_model_list(const store_rows *r);
/* A job's eval results: {"object":"list","data","has_more":false}. */
json_t *objects_eval_list(const store_rows *r);
/* {"id","object","deleted":true}, the answer to a DELETE. */
json_t *objects_deleted(const char *id, const char *object);

/* The metrics rows of a job's chart: evenly spaced down to max_points (> 0;
 * the last row always included), with "total_points" beside the list. */
json_t *objects_metrics_list(const store_rows *r, long max_points);

/* The feed items of store_job_feed as {"seq","event","data"} objects; a
 * status item's data is the job's object with that status (the status
 * alone when the job's row could not be read). */
json_t *objects_feed(const store_rows *items, const store_job_row *job);

/* {"jobs_by_status","queue_depth","steps_total","tokens_total"}. */
json_t *objects_stats(const store_stats *s);

/* A job's estimate (POST /v1/fine_tuning/jobs/estimate) against the memory
 * budget jobs are admitted by. */
json_t *objects_estimate(const al_estimate *est, int64_t budget);

/* A Hub download's event (daemon/hubmodels.h keeps them; created_at and data
 * borrowed) and their list, {"object","data","has_more","first_id","last_id"}
 * (takes data). */
json_t *objects_model_event(int64_t seq, const json_t *created_at, const char *type, const json_t *data);
json_t *objects_model_event_list(json_t *data, int has_more);
/* A Hub download's progress (a model's "download" and the data of its
 * "progress" events): {"bytes","total_bytes","files","files_total","file"
 * (null between files),"percentage"}. */
json_t *objects_hub_progress(const hub_progress *p);

/* A job list serialized as objects_list would be with OBJECTS_DUMP_FLAGS
 * and a newline, with final jobs' objects (which no longer change) from a
 * cache that store_objects_epoch invalidates. */
typedef struct objects_cache objects_cache;
objects_cache *objects_cache_new(void);
void objects_cache_free(objects_cache *c);
/* STORE_OK with *out (malloc'd) and *len, or the store's code; c may be
 * NULL (nothing cached). */
int objects_jobs_text(objects_cache *c, store *s, int64_t after, int limit, const char *status, char **out,
                      size_t *len);

#endif

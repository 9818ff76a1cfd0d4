/* Models by name from the Hugging Face Hub, for the daemon.
 *
 * Wherever a model is named (a job's model, ref_model, reward models, the
 * judge, critic_model, model_b, the completions' model), "ORG/NAME[@REV]"
 * that is not a registered name resolves through the Hugging Face cache:
 * first the models folder (an HF cache layout there: what `alignd pull
 * --models-dir` writes), then the hub cache (hub_cache in the
 * configuration, by default the one huggingface-cli uses: HF_HUB_CACHE,
 * HF_HOME, ~/.cache/huggingface/hub). A snapshot found there is used in
 * place, never copied, and registered under that name (source {"type":"hub",
 * "repo","revision","commit"}). When it is in neither and allow_downloads
 * is on, a download into the hub cache starts (daemon/hub.c) and the model
 * is registered with status "downloading"; its progress and end are events
 * of the model (GET /v1/models/{id}/events, also as a server-sent stream),
 * shaped as a job's feed: "progress" items carry the download object
 * {"bytes","total_bytes","files","files_total","file","percentage"},
 * "status" items the whole model once it is "ready" or "failed" (with
 * "error": {"code","message"}).
 *
 * Threads: one thread per download; every function is safe from any
 * thread. hubmodels_free cancels running downloads (their partial blobs stay
 * for a resume) and joins them; a download cut short by a stop is resumed at
 * the next start (status "downloading" in the store) when downloads are
 * still allowed, else marked failed. */
#ifndef DAEMON_HUBMODELS_H
#define DAEMON_HUBMODELS_H

#include "api/backend.h"
#include "store.h"

typedef struct hubmodels hubmodels;

/* hub_cache NULL or "": the environment's (al_hf_cache_dir), except under
 * systemd ($STATE_DIRECTORY without HF_HOME or HF_HUB_CACHE) and without a
 * home: <state_dir>/huggingface/hub. NULL on ENOMEM. */
hubmodels *hubmodels_new(store *st, const char *models_dir, const char *hub_cache, int allow_downloads);
void hubmodels_free(hubmodels *h);
/* The cache downloads go to. */
const char *hubmodels_cache(const hubmodels *h);

/* Registers the complete snapshots under models_dir's cache layout
 * (models--ORG--NAME, one model per ref: ORG/NAME for main, ORG/NAME@REF
 * otherwise), and resumes or fails downloads a stop cut short. Returns how
 * many were registered. */
int hubmodels_scan(hubmodels *h);

/* A Hub reference (al_hf_looks_like_ref) not registered by that name into
 * its snapshot folder: 0 and path; else -1 with e: 400 model_not_found
 * (named in param) when it is not cached and downloads are off, 409
 * model_downloading when a download started or runs (the message says
 * where to follow it; ref may then be any name a download registered
 * under), 400 invalid_value for a malformed reference. */
int hubmodels_resolve(hubmodels *h, const char *ref, const char *param, char path[STORE_PATH], api_error *e);

/* POST /v1/models {"hf": repo, "revision": rev, "name": name}: rev NULL
 * means main; name NULL means repo (plus "@rev" unless main). From a cache
 * at once (*accepted 0, the model "ready"); else a download starts when
 * allowed (*accepted 1, the model "downloading"). 403
 * downloads_disabled, 409 model_exists, 400 invalid_value. */
int hubmodels_register(hubmodels *h, const char *repo, const char *rev, const char *name, json_t **out,
                       int *accepted, api_error *e);

/* fn(ud, name) is called when a download ends, the model ready or failed
 * (not when a stop cuts it short), from the download's thread and outside
 * the registry's lock: the backend admits the jobs that waited for it.
 * fn NULL unsets it; either returns once a call in progress has returned. */
void hubmodels_on_done(hubmodels *h, void (*fn)(void *ud, const char *name), void *ud);

/* The live download object of a model being downloaded, or NULL. */
json_t *hubmodels_progress(hubmodels *h, const char *name);

/* A model's events, newest first (a list object), and its live feed (as
 * api_backend's job_feed). A model with no download has none and its feed
 * is finished at once. */
int hubmodels_events(hubmodels *h, const char *name, const api_page *pg, json_t **out, api_error *e);
int hubmodels_feed(hubmodels *h, const char *name, int64_t after_seq, int max, int timeout_ms, json_t **items,
                   int *finished, api_error *e);

#endif

/* The external reward verifier's client (reward.http): lib/ asks through
 * al_train_cb.external_reward and speaks no HTTP; this file does, with
 * libcurl, for both runners (the daemon's workers and `alignd train`).
 *
 * One call is one batch: POST cfg->http_url with
 *   {"prompts": [...], "completions": [...], "rows": [...]}
 * (Content-Type: application/json) and read {"rewards": [n numbers]}.
 * A connection failure, a timeout (timeout_ms per attempt), HTTP 408, 429
 * or 5xx is retried up to cfg->http_retries times after 0.25 s, 0.5 s,
 * 1 s, ... (at most 8 s apart); any other status, an answer that is not
 * JSON, lacks "rewards", has the wrong count or a non-number fails at once.
 * The error names what went wrong with the verifier's answer (its status
 * and the first 200 bytes of its body), so the job's error shows it.
 *
 * Threads: any thread may call it; each call has its own handle. */
#ifndef REWARD_HTTP_H
#define REWARD_HTTP_H

#include "train/trainer.h"

/* al_train_cb.external_reward (ud is unused). AL_OK; AL_EIO (the verifier
 * could not be reached or kept failing), AL_EPROTO-like AL_EFORMAT (its
 * answer is malformed), AL_ENOMEM. */
int reward_http_score(void *ud, const al_reward_cfg *cfg, int n, const char *const *prompts,
                      const char *const *completions, const json_t *const *rows, float *rewards,
                      char err[AL_ERRLEN]);

/* The back-off before retry k (0-based) in milliseconds: 250 * 2^k, at most
 * 8000; scale (1 normally) multiplies it (tests shorten the waits). */
long reward_http_backoff_ms(int k);
void reward_http_set_backoff_scale(double scale);

#endif

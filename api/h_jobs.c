/* /v1/fine_tuning/jobs (alias /v1/jobs): create, estimate, list, get,
 * cancel/pause/resume, and a job's events (JSON or a live stream), metrics,
 * samples and checkpoints. The job description itself is validated by the
 * backend (it knows models, files and the trainer's hyper-parameters); here
 * only what OpenAI's API fixes at the transport level: metadata. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const char *const statuses[] = {"validating_files", "queued",    "running",
                                       "paused",           "cancelling", "succeeded",
                                       "failed",           "cancelled"};

static enum MHD_Result no_such_job(api_req *r) {
    return api_reply_error(r, 404, "invalid_request_error", "not_found", "fine_tuning_job_id",
                           "no such fine-tuning job: %.200s", r->id);
}

/* OpenAI's metadata: at most 16 pairs, keys <= 64 characters, string values
 * <= 512 characters. */
static int check_metadata(const json_t *body, api_error *e) {
    const json_t *md = json_object_get(body, "metadata");
    if (!md || json_is_null(md)) return 0;
    if (!json_is_object(md))
        return api_error_set(e, 400, "invalid_request_error", "invalid_type", "metadata",
                             "metadata: must be an object of string pairs");
    if (json_object_size(md) > 16)
        return api_error_set(e, 400, "invalid_request_error", "invalid_value", "metadata",
                             "metadata: at most 16 pairs (got %zu)", json_object_size(md));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)md, k, v) {
        char param[AL_FIELDLEN];
        snprintf(param, sizeof param, "metadata.%.140s", k);
        if (strlen(k) > 64 || !*k)
            return api_error_set(e, 400, "invalid_request_error", "invalid_value", param,
                                 "%s: keys are 1 to 64 characters", param);
        if (!json_is_string(v))
            return api_error_set(e, 400, "invalid_request_error", "invalid_type", param,
                                 "%s: must be a string", param);
        if (json_string_length(v) > 512)
            return api_error_set(e, 400, "invalid_request_error", "invalid_value", param,
                                 "%s: at most 512 characters", param);
    }
    return 0;
}

static enum MHD_Result create_or_estimate(api_req *r, int estimate) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *body = NULL;
    if (api_body_object(r, &body, &e)) return api_reply_err(r, &e);
    if (check_metadata(body, &e)) {
        json_decref(body);
        return api_reply_err(r, &e);
    }
    json_t *out = NULL;
    int rc = estimate ? s->be.job_estimate(s->be.ud, body, &out, &e)
                      : s->be.job_create(s->be.ud, body, &out, &e);
    json_decref(body);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_jobs_post(api_req *r) { return create_or_estimate(r, 0); }
enum MHD_Result api_h_jobs_estimate(api_req *r) { return create_or_estimate(r, 1); }

enum MHD_Result api_h_jobs_list(api_req *r) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    api_page pg;
    if (api_query_page(r, &pg, &e)) return api_reply_err(r, &e);
    const char *status = api_query(r, "status");
    if (status) {
        int ok = 0;
        for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
            if (!strcmp(status, statuses[i])) ok = 1;
        if (!ok)
            return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "status",
                                   "status: must be one of validating_files, queued, running, "
                                   "paused, cancelling, succeeded, failed, cancelled");
    }
    if (s->be.job_list_text) {
        char *text = NULL;
        size_t len = 0;
        if (s->be.job_list_text(s->be.ud, &pg, status, &text, &len, &e)) return api_reply_err(r, &e);
        return api_reply_json_text(r, 200, text, len);
    }
    json_t *out = NULL;
    int rc = s->be.job_list(s->be.ud, &pg, status, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_jobs_get(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_job(r);
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *out = NULL;
    int rc = s->be.job_get(s->be.ud, r->id, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

static enum MHD_Result action(api_req *r, const char *what) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_job(r);
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *out = NULL;
    int rc = s->be.job_action(s->be.ud, r->id, what, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_jobs_delete(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_job(r);
    if (!s->be.job_delete)
        return api_reply_error(r, 405, "invalid_request_error", "method_not_allowed", "",
                               "jobs cannot be deleted on this server");
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *out = NULL;
    int rc = s->be.job_delete(s->be.ud, r->id, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_jobs_cancel(api_req *r) { return action(r, "cancel"); }
enum MHD_Result api_h_jobs_pause(api_req *r) { return action(r, "pause"); }
enum MHD_Result api_h_jobs_resume(api_req *r) { return action(r, "resume"); }

int api_wants_stream(api_req *r) {
    const char *acc = api_header(r, "Accept");
    if (acc && strstr(acc, "text/event-stream")) return 1;
    const char *q = api_query(r, "stream");
    return q && (!strcmp(q, "true") || !strcmp(q, "1"));
}

enum MHD_Result api_h_jobs_events(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_job(r);
    if (api_wants_stream(r)) return api_sse_job(r);
    api_error e;
    memset(&e, 0, sizeof e);
    api_page pg;
    if (api_query_page(r, &pg, &e)) return api_reply_err(r, &e);
    json_t *out = NULL;
    int rc = s->be.job_events(s->be.ud, r->id, &pg, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

/* keys=loss,rewards/margins: names of [A-Za-z0-9_./-], comma-separated. */
static int keys_ok(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 2048) return 0;
    int seg = 0;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (c == ',') {
            if (!seg) return 0;
            seg = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '/' || c == '-'))
            return 0;
        seg++;
    }
    return seg > 0;
}

enum MHD_Result api_h_jobs_metrics(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_job(r);
    api_error e;
    memset(&e, 0, sizeof e);
    const char *keys = api_query(r, "keys");
    if (keys && !keys_ok(keys))
        return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "keys",
                               "keys: comma-separated metric names such as "
                               "loss,rewards/margins");
    long after_step, max_points;
    if (api_query_long(r, "after_step", -1, 1L << 40, -1, &after_step, &e) ||
        api_query_long(r, "max_points", 0, 1000000, 0, &max_points, &e))
        return api_reply_err(r, &e);
    if (max_points == 1)
        return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "max_points",
                               "max_points: must be 0 (all) or at least 2");
    json_t *out = NULL;
    int rc = s->be.job_metrics(s->be.ud, r->id, keys, after_step, max_points, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_jobs_samples(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_job(r);
    api_error e;
    memset(&e, 0, sizeof e);
    long after_step, limit;
    if (api_query_long(r, "after_step", -1, 1L << 40, -1, &after_step, &e) ||
        api_query_long(r, "limit", 1, 1000, 100, &limit, &e))
        return api_reply_err(r, &e);
    json_t *out = NULL;
    int rc = s->be.job_samples(s->be.ud, r->id, after_step, (int)limit, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_jobs_checkpoints(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_job(r);
    api_error e;
    memset(&e, 0, sizeof e);
    api_page pg;
    if (api_query_page(r, &pg, &e)) return api_reply_err(r, &e);
    json_t *out = NULL;
    int rc = s->be.job_checkpoints(s->be.ud, r->id, &pg, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_jobs_eval_results(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id) || !s->be.job_eval_results) return no_such_job(r);
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *out = NULL;
    int rc = s->be.job_eval_results(s->be.ud, r->id, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

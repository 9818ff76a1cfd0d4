/* /healthz (liveness, no key), /readyz (database and workers) and /metrics
 * (Prometheus text format 0.0.4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum MHD_Result api_h_healthz(api_req *r) {
    return api_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

enum MHD_Result api_h_readyz(api_req *r) {
    api_server *s = r->srv;
    char why[AL_ERRLEN] = "";
    if (atomic_load(&s->draining))
        return api_reply_json(r, 503, json_pack("{s:s,s:s}", "status", "not_ready", "reason",
                                                "shutting down"));
    int ok = s->be.ready ? s->be.ready(s->be.ud, why) : 1;
    if (!ok)
        return api_reply_json(r, 503, json_pack("{s:s,s:s}", "status", "not_ready", "reason",
                                                why[0] ? why : "not ready"));
    return api_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
}

static double num(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return v && json_is_number(v) ? json_number_value(v) : 0;
}

/* Label values are escaped as the text format asks (\\, \", \n). */
static void label(char *out, size_t cap, const char *v) {
    size_t o = 0;
    for (; *v && o + 3 < cap; v++) {
        if (*v == '\\' || *v == '"') out[o++] = '\\', out[o++] = *v;
        else if (*v == '\n') out[o++] = '\\', out[o++] = 'n';
        else out[o++] = *v;
    }
    out[o] = 0;
}

enum MHD_Result api_h_prometheus(api_req *r) {
    api_server *s = r->srv;
    al_buf b = {0};
    json_t *st = NULL;
    if (s->be.stats && s->be.stats(s->be.ud, &st) == 0 && json_is_object(st)) {
        al_buf_printf(&b,
            "# HELP alignd_jobs Jobs by status.\n"
            "# TYPE alignd_jobs gauge\n");
        static const char *const statuses[] = {"validating_files", "queued",    "running",
                                               "paused",           "cancelling", "succeeded",
                                               "failed",           "cancelled"};
        const json_t *by = json_object_get(st, "jobs_by_status");
        for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
            al_buf_printf(&b, "alignd_jobs{status=\"%s\"} %.0f\n", statuses[i],
                num(by, statuses[i]));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)by, k, v) {
            int known = 0;
            for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
                if (!strcmp(k, statuses[i])) known = 1;
            if (!known && json_is_number(v)) {
                char l[128];
                label(l, sizeof l, k);
                al_buf_printf(&b, "alignd_jobs{status=\"%s\"} %.0f\n", l,
                    json_number_value(v));
            }
        }
        al_buf_printf(&b,
            "# HELP alignd_queue_depth Jobs waiting for a worker.\n"
            "# TYPE alignd_queue_depth gauge\n"
            "alignd_queue_depth %.0f\n"
            "# HELP alignd_steps_trained_total Optimiser steps taken by all jobs.\n"
            "# TYPE alignd_steps_trained_total counter\n"
            "alignd_steps_trained_total %.0f\n"
            "# HELP alignd_tokens_trained_total Tokens trained on by all jobs.\n"
            "# TYPE alignd_tokens_trained_total counter\n"
            "alignd_tokens_trained_total %.0f\n"
            "# HELP alignd_workers Worker threads.\n"
            "# TYPE alignd_workers gauge\n"
            "alignd_workers %.0f\n"
            "# HELP alignd_workers_busy Worker threads running a job.\n"
            "# TYPE alignd_workers_busy gauge\n"
            "alignd_workers_busy %.0f\n"
            "# HELP alignd_training_model_memory_bytes Memory held by the models of running "
            "jobs.\n"
            "# TYPE alignd_training_model_memory_bytes gauge\n"
            "alignd_training_model_memory_bytes %.0f\n",
            num(st, "queue_depth"), num(st, "steps_total"), num(st, "tokens_total"),
            num(st, "workers"), num(st, "workers_busy"), num(st, "model_memory_bytes"));
    }
    json_decref(st);
    int n_models = 0;
    size_t mem = api_model_cache_memory(s->models, &n_models);
    al_buf_printf(&b,
        "# HELP alignd_inference_model_memory_bytes Memory held by the models loaded for "
        "inference.\n"
        "# TYPE alignd_inference_model_memory_bytes gauge\n"
        "alignd_inference_model_memory_bytes %zu\n"
        "# HELP alignd_inference_models_loaded Models loaded for inference.\n"
        "# TYPE alignd_inference_models_loaded gauge\n"
        "alignd_inference_models_loaded %d\n",
        mem, n_models);
    unsigned long steps, rows;
    int live;
    api_model_cache_decode_stats(s->models, &steps, &rows, &live);
    al_buf_printf(&b,
        "# HELP alignd_inference_decode_steps_total Forward steps of the decoders of the loaded models.\n"
        "# TYPE alignd_inference_decode_steps_total counter\n"
        "alignd_inference_decode_steps_total %lu\n"
        "# HELP alignd_inference_decode_rows_total Rows those steps carried (a token of a sequence each: "
        "rows per step is the batch).\n"
        "# TYPE alignd_inference_decode_rows_total counter\n"
        "alignd_inference_decode_rows_total %lu\n"
        "# HELP alignd_inference_sequences Sequences being decoded now.\n"
        "# TYPE alignd_inference_sequences gauge\n"
        "alignd_inference_sequences %d\n",
        steps, rows, live);
    api_stats_write(s, &b);
    size_t len = 0;
    char *text = al_buf_take(&b, &len);
    if (!text)
        return api_reply_error(r, 500, "server_error", "internal_error", "", "out of memory");
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return api_queue(r, 200, resp);
}

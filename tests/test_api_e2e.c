/* The REST API end to end: a real `alignd serve` (tests/daemon_util.h) on a
 * free port with its own state and models directories, driven over HTTP.
 *
 * Every endpoint's happy path against the real store and workers (files raw
 * and multipart, a training job from submission to its events, metrics,
 * samples, checkpoints and model; cancel, pause, resume; estimate; models
 * registered by path and deleted; chat and text completions, deterministic
 * with a seed and temperature 0, from a base model, a fine-tuned model and a
 * checkpoint), the live event stream with Last-Event-ID resumption, error
 * codes with their param, limits, path traversal, keys made with
 * `alignd keys create` (none, wrong, read-only), the refusal to listen on a
 * public address without keys, /metrics, and 200 concurrent clients. */
#define _XOPEN_SOURCE 700
#include <pthread.h>
#include <stdatomic.h>

#include "daemon_util.h"
#include "t.h"

static dd_daemon D;
static char g_tmp[1024], g_models[1100];

/* An OpenAI error: status, code and param ("" = null). */
static void check_err(json_t *j, long status, long want_status, const char *code,
                      const char *param, int line) {
    const json_t *e = json_object_get(j, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    const json_t *p = json_object_get(e, "param");
    int ok = status == want_status && c && !strcmp(c, code) &&
             (*param ? (json_is_string(p) && !strcmp(json_string_value(p), param))
                     : json_is_null(p)) &&
             json_is_string(json_object_get(e, "message"));
    T_REPORT_(ok, "line %d: want %ld %s param=%s, got %ld %s", line, want_status, code, param,
              status, j ? json_dumps(j, JSON_COMPACT) : "(no JSON)");
}
#define CHECK_ERR(j, st, want, code, param) check_err(j, st, want, code, param, __LINE__)

static const char *choice_text(const json_t *j) {
    const json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    const json_t *m = json_object_get(c, "message");
    return m ? json_string_value(json_object_get(m, "content"))
             : json_string_value(json_object_get(c, "text"));
}

/* ---- an SSE client ------------------------------------------------------------- */

typedef struct sse_ev {
    long id;
    char event[32];
} sse_ev;

/* Reads a job's stream to its end (or timeout); returns the events in
 * order; *ended when "event: end" came. */
static int read_stream(const char *job, const char *last_id, sse_ev *out, int max, int *ended,
                       double timeout_s, char **raw) {
    char path[256], h1[64];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events", job);
    const char *hdrs[3] = {"Accept: text/event-stream", NULL, NULL};
    if (last_id) {
        snprintf(h1, sizeof h1, "Last-Event-ID: %s", last_id);
        hdrs[1] = h1;
    }
    dd_resp r;
    dd_request(&D, "GET", path, NULL, 0, NULL, hdrs, timeout_s, &r);
    int n = 0;
    *ended = 0;
    const char *p = r.body;
    long id = -1;
    char ev[32] = "message";
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l == 0) {
            if (!strcmp(ev, "end")) *ended = 1;
            else if (id >= 0 && n < max) {
                out[n].id = id;
                snprintf(out[n].event, sizeof out[n].event, "%s", ev);
                n++;
            }
            id = -1;
            snprintf(ev, sizeof ev, "message");
        } else if (!strncmp(p, "id: ", 4)) {
            id = atol(p + 4);
        } else if (!strncmp(p, "event: ", 7)) {
            snprintf(ev, sizeof ev, "%.*s", (int)(l - 7), p + 7);
        }
        if (!nl) break;
        p = nl + 1;
    }
    if (r.status != 200) n = -(int)r.status;
    if (raw) *raw = r.body;
    else dd_resp_free(&r);
    return n;
}

/* ---- the tests --------------------------------------------------------------------- */

static void test_health_and_dashboard(void) {
    long st;
    json_t *j = dd_get(&D, "/healthz", &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(j, "status"), "ok");
    json_decref(j);
    j = dd_get(&D, "/readyz", &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(j, "status"), "ready");
    json_decref(j);
    dd_resp r;
    dd_request(&D, "GET", "/", NULL, 0, NULL, NULL, 10, &r);
    T_EQ_INT(r.status, 200);
    T_TRUE(!strncmp(r.ctype, "text/html", 9));
    T_TRUE(strstr(r.body, "<title>alignd</title>") != NULL);
    dd_resp_free(&r);
    dd_request(&D, "GET", "/../../etc/passwd", NULL, 0, NULL, NULL, 10, &r);
    T_TRUE(r.status == 404 || r.status == 200); /* curl folds "..": "/etc/passwd" -> not a file */
    T_TRUE(strstr(r.body, "root:") == NULL);
    dd_resp_free(&r);
}

static char g_file[64];

static void test_files(void) {
    const char *rows =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"1+1=\"},{\"role\":\"assistant\",\"content\":\"2\"}]}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"2+2=\"},{\"role\":\"assistant\",\"content\":\"4\"}]}\n"
        "{\"messages\":[{\"role\":\"user\",\"content\":\"3+1=\"},{\"role\":\"assistant\",\"content\":\"4\"}]}\n";
    long st;
    json_t *f = dd_upload(&D, "sums.jsonl", rows, strlen(rows), &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(f, "object"), "file");
    T_TRUE(!strncmp(dd_str(f, "id"), "file-", 5));
    T_STR_EQ(dd_str(f, "filename"), "sums.jsonl");
    T_STR_EQ(dd_str(f, "status"), "processed");
    snprintf(g_file, sizeof g_file, "%s", dd_str(f, "id"));
    json_decref(f);

    /* multipart, as curl -F and OpenAI's client send it */
    const char *mp =
        "--b0undary\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
        "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"more.jsonl\"\r\n"
        "Content-Type: application/jsonl\r\n\r\n"
        "{\"prompt\":\"5+5=\",\"completion\":\"10\"}\n{\"prompt\":\"1+2=\",\"completion\":\"3\"}\n"
        "\r\n--b0undary--\r\n";
    dd_resp r;
    dd_request(&D, "POST", "/v1/files", mp, strlen(mp), "multipart/form-data; boundary=b0undary",
               NULL, 30, &r);
    f = dd_json_(&r, &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(f, "filename"), "more.jsonl");
    char second[64];
    snprintf(second, sizeof second, "%s", dd_str(f, "id"));
    json_decref(f);

    /* the list, newest first, paged */
    json_t *l = dd_get(&D, "/v1/files?limit=1", &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(l, "object"), "list");
    T_EQ_INT(json_array_size(json_object_get(l, "data")), 1);
    T_STR_EQ(dd_str(json_array_get(json_object_get(l, "data"), 0), "id"), second);
    T_TRUE(json_is_true(json_object_get(l, "has_more")));
    json_decref(l);
    char path[256];
    snprintf(path, sizeof path, "/v1/files?limit=1&after=%s", second);
    l = dd_get(&D, path, &st);
    T_STR_EQ(dd_str(json_array_get(json_object_get(l, "data"), 0), "id"), g_file);
    T_TRUE(json_is_false(json_object_get(l, "has_more")));
    json_decref(l);

    snprintf(path, sizeof path, "/v1/files/%s", g_file);
    f = dd_get(&D, path, &st);
    T_EQ_INT(st, 200);
    T_EQ_INT(json_integer_value(json_object_get(f, "bytes")), strlen(rows));
    json_decref(f);
    snprintf(path, sizeof path, "/v1/files/%s/content", g_file);
    dd_request(&D, "GET", path, NULL, 0, NULL, NULL, 10, &r);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(r.body, rows);
    dd_resp_free(&r);

    /* errors */
    f = dd_upload(&D, "x.jsonl", "this is not jsonl\n", 18, &st);
    CHECK_ERR(f, st, 400, "file_invalid", "file");
    json_decref(f);
    dd_request(&D, "POST", "/v1/files?purpose=assistants", rows, strlen(rows), "application/jsonl",
               NULL, 10, &r);
    f = dd_json_(&r, &st);
    CHECK_ERR(f, st, 400, "invalid_value", "purpose");
    json_decref(f);
    dd_request(&D, "POST", "/v1/files", "x", 1, "image/png", NULL, 10, &r);
    f = dd_json_(&r, &st);
    CHECK_ERR(f, st, 415, "unsupported_media_type", "");
    json_decref(f);
    f = dd_get(&D, "/v1/files/file-424242", &st);
    T_EQ_INT(st, 404);
    json_decref(f);
    f = dd_get(&D, "/v1/files?limit=1000", &st);
    CHECK_ERR(f, st, 400, "invalid_value", "limit");
    json_decref(f);
}

static char g_job[64], g_ft_model[128], g_ckpt[128];

static void test_job_lifecycle(void) {
    long st;
    char body[1024];
    snprintf(body, sizeof body,
             "{\"model\":\"tiny\",\"method\":\"sft\",\"training_file\":\"%s\","
             "\"hyperparameters\":{\"max_steps\":12,\"batch_size\":2,\"logging_steps\":1,"
             "\"save_steps\":6},\"seed\":3,\"suffix\":\"sums\",\"metadata\":{\"team\":\"api\"}}",
             g_file);
    json_t *j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(j, "object"), "fine_tuning.job");
    T_STR_EQ(dd_str(j, "model"), "tiny");
    T_STR_EQ(dd_str(json_object_get(j, "metadata"), "team"), "api");
    T_TRUE(json_is_object(json_object_get(j, "hyperparameters")));
    T_TRUE(json_is_object(json_object_get(j, "progress")));
    snprintf(g_job, sizeof g_job, "%s", dd_str(j, "id"));
    json_decref(j);

    /* the live stream to its end */
    sse_ev ev[512];
    int ended = 0;
    char *raw = NULL;
    int n = read_stream(g_job, NULL, ev, 512, &ended, 120, &raw);
    T_TRUE(n > 3);
    T_TRUE(ended);
    int consecutive = 1, metrics = 0, status = 0;
    for (int i = 0; i < n; i++) {
        if (i && ev[i].id != ev[i - 1].id + 1) consecutive = 0;
        if (!strcmp(ev[i].event, "metrics")) metrics++;
        if (!strcmp(ev[i].event, "status")) status++;
    }
    T_TRUE(consecutive);
    T_TRUE(metrics >= 12);
    T_TRUE(status >= 2);
    T_TRUE(raw && strstr(raw, "\"status\":\"succeeded\""));
    free(raw);

    /* resumption: everything after the given id, and only that */
    if (n > 4) {
        char mid[32];
        snprintf(mid, sizeof mid, "%ld", ev[n / 2].id);
        sse_ev ev2[512];
        int n2 = read_stream(g_job, mid, ev2, 512, &ended, 60, NULL);
        T_EQ_INT(n2, n - n / 2 - 1);
        T_EQ_INT(n2 > 0 ? ev2[0].id : -1, ev[n / 2].id + 1);
        T_EQ_INT(n2 > 0 ? ev2[n2 - 1].id : -1, ev[n - 1].id);
        T_TRUE(ended);
    }
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", g_job);
    j = dd_get(&D, path, &st);
    T_STR_EQ(dd_str(j, "status"), "succeeded");
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "progress"), "step")), 12);
    T_TRUE(json_integer_value(json_object_get(j, "trained_tokens")) > 0);
    snprintf(g_ft_model, sizeof g_ft_model, "%s", dd_str(j, "fine_tuned_model"));
    T_TRUE(g_ft_model[0] != 0);
    json_decref(j);

    /* the alias and the list */
    snprintf(path, sizeof path, "/v1/jobs/%s", g_job);
    j = dd_get(&D, path, &st);
    T_EQ_INT(st, 200);
    json_decref(j);
    j = dd_get(&D, "/v1/fine_tuning/jobs?status=succeeded", &st);
    T_EQ_INT(st, 200);
    T_TRUE(json_array_size(json_object_get(j, "data")) >= 1);
    json_decref(j);

    /* events, newest first, paged */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?limit=2", g_job);
    j = dd_get(&D, path, &st);
    T_EQ_INT(st, 200);
    T_EQ_INT(json_array_size(json_object_get(j, "data")), 2);
    T_TRUE(json_is_true(json_object_get(j, "has_more")));
    T_STR_EQ(dd_str(json_array_get(json_object_get(j, "data"), 0), "object"), "fine_tuning.job.event");
    json_decref(j);

    /* metrics: all, by key, down-sampled with the last kept */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/metrics", g_job);
    j = dd_get(&D, path, &st);
    T_EQ_INT(st, 200);
    size_t all = json_array_size(json_object_get(j, "data"));
    T_TRUE(all >= 12);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/metrics?keys=loss&after_step=2&max_points=4",
             g_job);
    j = dd_get(&D, path, &st);
    T_EQ_INT(st, 200);
    json_t *d = json_object_get(j, "data");
    T_EQ_INT(json_array_size(d), 4);
    T_TRUE(json_integer_value(json_object_get(json_array_get(d, 0), "step")) > 2);
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(d, 3), "step")), 12);
    json_t *m0 = json_object_get(json_array_get(d, 0), "metrics");
    T_TRUE(json_is_number(json_object_get(m0, "loss")));
    T_TRUE(json_object_get(m0, "learning_rate") == NULL);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/metrics?max_points=1", g_job);
    j = dd_get(&D, path, &st);
    CHECK_ERR(j, st, 400, "invalid_value", "max_points");
    json_decref(j);

    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/samples", g_job);
    j = dd_get(&D, path, &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(j, "object"), "list");
    json_decref(j);

    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/checkpoints", g_job);
    j = dd_get(&D, path, &st);
    T_EQ_INT(st, 200);
    d = json_object_get(j, "data");
    T_TRUE(json_array_size(d) >= 1);
    const json_t *c0 = json_array_get(d, 0);
    T_STR_EQ(dd_str(c0, "object"), "fine_tuning.job.checkpoint");
    T_TRUE(json_integer_value(json_object_get(c0, "step_number")) > 0);
    snprintf(g_ckpt, sizeof g_ckpt, "%s", dd_str(c0, "fine_tuned_model_checkpoint"));
    T_TRUE(!strncmp(g_ckpt, g_job, strlen(g_job)) && g_ckpt[strlen(g_job)] == ':');
    json_decref(j);

    /* a new job may start from a checkpoint; a missing one is named */
    snprintf(body, sizeof body,
             "{\"model\":\"tiny\",\"method\":\"sft\",\"training_file\":\"%s\","
             "\"from_checkpoint\":\"%s\",\"hyperparameters\":{\"max_steps\":2}}",
             g_file, g_ckpt);
    j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(j, "from_checkpoint"), g_ckpt);
    json_decref(j);
    snprintf(body, sizeof body,
             "{\"model\":\"tiny\",\"method\":\"sft\",\"training_file\":\"%s\","
             "\"from_checkpoint\":\"%s:99999\"}",
             g_file, g_job);
    j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_TRUE(st == 400 || st == 422);
    T_STR_EQ(dd_str(json_object_get(j, "error"), "param"), "from_checkpoint");
    json_decref(j);
}

/* Benchmarks through the API: a file uploaded with purpose "evals" is
 * validated as one; an evaluate job scores two models on it and an SFT
 * job's eval_tasks measure its start and its end; the results are stored
 * with the jobs and served, each naming the model it measured. */
static void test_evals(void) {
    long st;
    const char *mc = "{\"question\": \"1+1=\", \"choices\": [\"2\", \"3\"], \"answer\": 0}\n"
                     "{\"question\": \"2+2=\", \"choices\": [\"5\", \"4\"], \"answer\": \"4\"}\n";
    dd_resp r;
    dd_request(&D, "POST", "/v1/files?purpose=evals&filename=mc.jsonl", mc, strlen(mc), "application/jsonl", NULL, 0, &r);
    json_t *f = dd_json_(&r, &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(f, "status"), "processed");
    T_STR_EQ(dd_str(f, "purpose"), "evals");
    T_STR_EQ(dd_str(json_object_get(f, "validation"), "format"), "multiple_choice");
    char fid[64];
    snprintf(fid, sizeof fid, "%s", dd_str(f, "id"));
    json_decref(f);
    const char *bad = "{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}\n";
    dd_request(&D, "POST", "/v1/files?purpose=evals&filename=bad.jsonl", bad, strlen(bad), "application/jsonl", NULL, 0, &r);
    f = dd_json_(&r, &st);
    T_EQ_INT(st, 400);
    T_STR_EQ(dd_str(json_object_get(f, "error"), "message"),
             "The file is not a benchmark file: line 1: choices must be a list of 2 to 1000 strings");
    json_decref(f);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"model\":\"tiny\",\"model_b\":\"%s\",\"method\":\"evaluate\","
             "\"eval_tasks\":[{\"file\":\"%s\",\"name\":\"sums_mc\"}]}", g_ft_model, fid);
    json_t *j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_EQ_INT(st, 200);
    char ev[64], sft[64];
    snprintf(ev, sizeof ev, "%s", dd_str(j, "id"));
    json_decref(j);
    snprintf(body, sizeof body,
             "{\"model\":\"tiny\",\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":64},"
             "\"hyperparameters\":{\"max_steps\":3,\"batch_size\":4,\"max_length\":16},"
             "\"eval_tasks\":[{\"file\":\"%s\",\"name\":\"sums_mc\"}]}", fid);
    j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_EQ_INT(st, 200);
    snprintf(sft, sizeof sft, "%s", dd_str(j, "id"));
    json_decref(j);
    T_OK(dd_wait_job(&D, ev, "succeeded", 120, NULL));
    json_t *done = NULL;
    T_OK(dd_wait_job(&D, sft, "succeeded", 120, &done));
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/eval_results", ev);
    j = dd_get(&D, path, &st);
    T_EQ_INT(st, 200);
    json_t *data = json_object_get(j, "data");
    T_EQ_INT(json_array_size(data), 2);
    json_t *a = json_array_get(data, 0), *b = json_array_get(data, 1);
    T_STR_EQ(dd_str(a, "object"), "fine_tuning.job.eval_result");
    T_STR_EQ(dd_str(a, "task"), "sums_mc");
    T_STR_EQ(dd_str(a, "type"), "multiple_choice");
    T_STR_EQ(dd_str(a, "role"), "model");
    T_STR_EQ(dd_str(a, "model"), "tiny");
    T_STR_EQ(dd_str(b, "model"), g_ft_model);
    T_EQ_INT(json_integer_value(json_object_get(a, "n")), 2);
    json_t *acc = json_object_get(json_object_get(a, "metrics"), "acc");
    T_TRUE(json_is_number(acc) && json_number_value(acc) >= 0 && json_number_value(acc) <= 1);
    T_TRUE(json_object_get(json_object_get(a, "metrics"), "acc_norm_stderr") != NULL);
    json_decref(j);
    /* the SFT job: its start at step 0, the fine-tune at its last step */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/eval_results", sft);
    j = dd_get(&D, path, &st);
    data = json_object_get(j, "data");
    T_EQ_INT(json_array_size(data), 2);
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(data, 0), "step")), 0);
    T_STR_EQ(dd_str(json_array_get(data, 0), "model"), "tiny");
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(data, 1), "step")), 3);
    T_STR_EQ(dd_str(json_array_get(data, 1), "model"), dd_str(done, "fine_tuned_model"));
    json_decref(j);
    /* the job object carries each task's last result */
    json_t *er = json_object_get(done, "eval_results");
    T_EQ_INT(json_array_size(er), 1);
    T_EQ_INT(json_integer_value(json_object_get(json_array_get(er, 0), "step")), 3);
    json_decref(done);
    /* its metrics too */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/metrics?keys=eval/sums_mc/acc", sft);
    j = dd_get(&D, path, &st);
    T_EQ_INT(json_array_size(json_object_get(j, "data")), 2);
    json_decref(j);
    j = dd_get(&D, "/v1/fine_tuning/jobs/ftjob-999/eval_results", &st);
    T_EQ_INT(st, 404);
    json_decref(j);
    /* few-shot from an uploaded file, named by its id like the task's own */
    snprintf(body, sizeof body, "{\"model\":\"tiny\",\"method\":\"evaluate\",\"eval_tasks\":[{\"file\":\"%s\","
             "\"name\":\"fs\",\"num_fewshot\":1,\"fewshot_file\":\"%s\"}]}", fid, fid);
    j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_EQ_INT(st, 200);
    snprintf(ev, sizeof ev, "%s", dd_str(j, "id"));
    json_decref(j);
    T_OK(dd_wait_job(&D, ev, "succeeded", 120, NULL));
    snprintf(body, sizeof body, "{\"model\":\"tiny\",\"method\":\"evaluate\",\"eval_tasks\":[{\"file\":\"%s\","
             "\"name\":\"fs\",\"num_fewshot\":1,\"fewshot_file\":\"file-999\"}]}", fid);
    j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    CHECK_ERR(j, st, 400, "file_not_found", "eval_tasks[0].fewshot_file");
    json_decref(j);
}

static void test_job_errors(void) {
    long st;
    struct {
        const char *body;
        long status;
        const char *code, *param;
    } bad[] = {
        {"{\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":20}}", 400, "missing_field", "model"},
        {"{\"model\":\"nope\",\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":20}}", 400, "model_not_found", "model"},
        {"{\"model\":\"tiny\",\"method\":\"sft\",\"training_file\":\"file-999\"}", 400, "file_not_found", "training_file"},
        {"{\"model\":\"tiny\",\"method\":\"sft\",\"task\":{\"name\":\"addition\"},\"metadata\":{\"k\":1}}", 400, "invalid_type", "metadata.k"},
        {"{\"model\":\"tiny\",", 400, "invalid_json", ""},
        {"[]", 400, "invalid_type", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = dd_post(&D, "/v1/fine_tuning/jobs", bad[i].body, &st);
        CHECK_ERR(j, st, bad[i].status, bad[i].code, bad[i].param);
        json_decref(j);
    }
    json_t *j = dd_post(&D, "/v1/fine_tuning/jobs",
                        "{\"model\":\"tiny\",\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":20},"
                        "\"hyperparameters\":{\"learning_rate\":\"fast\"}}",
                        &st);
    T_EQ_INT(st, 400);
    T_STR_EQ(dd_str(json_object_get(j, "error"), "param"), "hyperparameters.learning_rate");
    json_decref(j);
    j = dd_get(&D, "/v1/fine_tuning/jobs/ftjob-999999", &st);
    T_EQ_INT(st, 404);
    json_decref(j);
    j = dd_get(&D, "/v1/fine_tuning/jobs?status=nope", &st);
    CHECK_ERR(j, st, 400, "invalid_value", "status");
    json_decref(j);
    /* limits: 2 MiB > the 1 MiB default, 40 levels > 32 */
    size_t big = 2u << 20;
    char *b = malloc(big);
    memset(b, ' ', big);
    b[0] = '{';
    b[big - 1] = '}';
    dd_resp r;
    dd_request(&D, "POST", "/v1/fine_tuning/jobs", b, big, "application/json", NULL, 30, &r);
    j = dd_json_(&r, &st);
    CHECK_ERR(j, st, 413, "request_too_large", "");
    json_decref(j);
    free(b);
    char deep[256] = "{\"model\":\"tiny\",\"x\":";
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    for (int i = 0; i < 40; i++) strcat(deep, "]");
    strcat(deep, "}");
    j = dd_post(&D, "/v1/fine_tuning/jobs", deep, &st);
    CHECK_ERR(j, st, 400, "json_too_deep", "");
    json_decref(j);
    dd_request(&D, "POST", "/v1/fine_tuning/jobs", "model=tiny", 10,
               "application/x-www-form-urlencoded", NULL, 10, &r);
    j = dd_json_(&r, &st);
    CHECK_ERR(j, st, 415, "unsupported_media_type", "");
    json_decref(j);
}

/* The data features through the API: CSV and JSON-array uploads, a job
 * mixing two files with a built-in chat template (echoed by the job
 * object), their errors by path, and clean_data (no model) writing a new
 * file. */
static void test_data_jobs(void) {
    long st;
    const char *csv = "instruction,input,output\nAdd,2 and 2,4\nAdd,3 and 5,8\nDouble,7,14\n";
    json_t *f = dd_upload(&D, "alpaca.csv", csv, strlen(csv), &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(f, "status"), "processed");
    const json_t *v = json_object_get(f, "validation");
    T_STR_EQ(dd_str(v, "file_format"), "csv");
    T_STR_EQ(dd_str(v, "format"), "alpaca");
    char a[64], b[64], body[1024], path[256];
    snprintf(a, sizeof a, "%s", dd_str(f, "id"));
    json_decref(f);
    const char *arr = "[{\"conversations\":[{\"from\":\"human\",\"value\":\"1+1\"},{\"from\":\"gpt\",\"value\":\"2\"}]},\n"
                      " {\"conversations\":[{\"from\":\"human\",\"value\":\"2+3\"},{\"from\":\"gpt\",\"value\":\"5\"}]}]";
    f = dd_upload(&D, "chats.json", arr, strlen(arr), &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(json_object_get(f, "validation"), "format"), "sharegpt");
    snprintf(b, sizeof b, "%s", dd_str(f, "id"));
    json_decref(f);
    snprintf(body, sizeof body,
             "{\"model\":\"tiny\",\"method\":\"sft\",\"training_files\":[{\"file\":\"%s\",\"weight\":0.7},"
             "{\"file\":\"%s\",\"weight\":0.3}],\"chat_template\":\"chatml\",\"hyperparameters\":{\"max_steps\":2,"
             "\"batch_size\":2,\"max_length\":64}}", a, b);
    json_t *j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_EQ_INT(st, 200);
    T_EQ_INT(json_array_size(json_object_get(j, "training_files")), 2);
    T_STR_EQ(dd_str(j, "chat_template"), "chatml");
    char id[64];
    snprintf(id, sizeof id, "%s", dd_str(j, "id"));
    json_decref(j);
    T_OK(dd_wait_job(&D, id, "succeeded", 120, NULL));
    /* a sharegpt file under its own names: uploaded with its dataset_info
     * (refused without it), which the jobs naming it then read it with */
    const char *mine = "{\"dialog\":[{\"speaker\":\"USER\",\"text\":\"1+1\"},{\"speaker\":\"BOT\",\"text\":\"2\"}]}\n"
                       "{\"dialog\":[{\"speaker\":\"USER\",\"text\":\"2+3\"},{\"speaker\":\"BOT\",\"text\":\"5\"}]}\n";
    const char *info = "{\"formatting\":\"sharegpt\",\"columns\":{\"messages\":\"dialog\"},\"tags\":{\"role_tag\":"
                       "\"speaker\",\"content_tag\":\"text\",\"user_tag\":\"USER\",\"assistant_tag\":\"BOT\"}}";
    f = dd_upload(&D, "mine.jsonl", mine, strlen(mine), &st);
    CHECK_ERR(f, st, 400, "file_invalid", "file");
    json_decref(f);
    char *esc = curl_easy_escape(NULL, info, 0);
    char upath[1024];
    snprintf(upath, sizeof upath, "/v1/files?purpose=fine-tune&filename=mine.jsonl&dataset_info=%s", esc);
    dd_resp rr;
    dd_request(&D, "POST", upath, mine, strlen(mine), "application/jsonl", NULL, 0, &rr);
    f = dd_json_(&rr, &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(f, "status"), "processed");
    v = json_object_get(f, "validation");
    T_STR_EQ(dd_str(v, "format"), "sharegpt");
    T_EQ_INT(json_integer_value(json_object_get(v, "valid_rows")), 2);
    T_STR_EQ(dd_str(json_object_get(json_object_get(v, "dataset_info"), "columns"), "messages"), "dialog");
    snprintf(b, sizeof b, "%s", dd_str(f, "id"));
    json_decref(f);
    snprintf(upath, sizeof upath, "/v1/files?purpose=evals&filename=mine.jsonl&dataset_info=%s", esc);
    dd_request(&D, "POST", upath, mine, strlen(mine), "application/jsonl", NULL, 0, &rr);
    f = dd_json_(&rr, &st);
    CHECK_ERR(f, st, 400, "invalid_value", "dataset_info");
    json_decref(f);
    curl_free(esc);
    snprintf(body, sizeof body, "{\"model\":\"tiny\",\"method\":\"sft\",\"training_file\":\"%s\",\"chat_template\":"
             "\"chatml\",\"hyperparameters\":{\"max_steps\":1,\"batch_size\":2,\"max_length\":64}}", b);
    j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_EQ_INT(st, 200);
    snprintf(id, sizeof id, "%s", dd_str(j, "id"));
    json_decref(j);
    T_OK(dd_wait_job(&D, id, "succeeded", 120, NULL));
    snprintf(body, sizeof body, "{\"model\":\"tiny\",\"method\":\"sft\",\"training_file\":\"%s\",\"dataset_info\":"
             "{\"formatting\":\"sharegpt\",\"columns\":{\"messages\":\"chat\"}}}", b);
    j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    CHECK_ERR(j, st, 400, "invalid_value", "training_file");
    json_decref(j);
    /* errors by path */
    struct { const char *fmt, *code, *param; } bad[] = {
        {"{\"model\":\"tiny\",\"method\":\"sft\",\"training_files\":[{\"file\":\"%s\"},{\"file\":\"%s\",\"weight\":-1}]}",
         "invalid_value", "training_files[1].weight"},
        {"{\"model\":\"tiny\",\"method\":\"sft\",\"training_files\":[{\"file\":\"%s\"},{\"file\":\"file-999%s\"}]}",
         "file_not_found", "training_files[1].file"},
        {"{\"model\":\"tiny\",\"method\":\"sft\",\"training_file\":\"%s\",\"chat_template\":\"vicuna%s\"}",
         "invalid_value", "chat_template"},
        {"{\"method\":\"clean_data\",\"training_file\":\"%s\",\"hygiene\":{\"near_duplicates\":{\"bands\":%s}}}",
         "invalid_value", "hygiene.near_duplicates.bands"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, bad[i].fmt, a, i == 3 ? "7" : i == 0 ? b : "");
        j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
        CHECK_ERR(j, st, 400, bad[i].code, bad[i].param);
        json_decref(j);
    }
    /* clean_data: a file job without a model */
    const char *dup = "{\"text\":\"The quick brown fox jumps over the lazy dog near the quiet river bank today\"}\n"
                      "{\"text\":\"the quick brown fox jumps over the lazy dog near the quiet river bank today!\"}\n"
                      "{\"text\":\"An entirely different sentence about mountains, valleys and long winding roads\"}\n";
    f = dd_upload(&D, "dups.jsonl", dup, strlen(dup), &st);
    snprintf(a, sizeof a, "%s", dd_str(f, "id"));
    json_decref(f);
    snprintf(body, sizeof body, "{\"method\":\"clean_data\",\"training_file\":\"%s\",\"hygiene\":{\"near_duplicates\":true}}", a);
    j = dd_post(&D, "/v1/fine_tuning/jobs", body, &st);
    T_EQ_INT(st, 200);
    snprintf(id, sizeof id, "%s", dd_str(j, "id"));
    json_decref(j);
    T_OK(dd_wait_job(&D, id, "succeeded", 60, NULL));
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s", id);
    j = dd_get(&D, path, &st);
    const char *out = json_string_value(json_array_get(json_object_get(j, "result_files"), 0));
    T_TRUE(out != NULL);
    if (out) {
        snprintf(path, sizeof path, "/v1/files/%s", out);
        f = dd_get(&D, path, &st);
        T_STR_EQ(dd_str(f, "status"), "processed");
        T_EQ_INT(json_integer_value(json_object_get(json_object_get(f, "validation"), "rows")), 2);
        json_decref(f);
    }
    json_decref(j);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/metrics?keys=rows_kept,hygiene/near_duplicates", id);
    j = dd_get(&D, path, &st);
    const json_t *m = json_object_get(json_array_get(json_object_get(j, "data"), 0), "metrics");
    T_NEAR(json_number_value(json_object_get(m, "rows_kept")), 2, 0);
    T_NEAR(json_number_value(json_object_get(m, "hygiene/near_duplicates")), 1, 0);
    json_decref(j);
}

static void test_estimate(void) {
    long st;
    json_t *j = dd_post(&D, "/v1/jobs/estimate",
                        "{\"model\":\"tiny\",\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":100},"
                        "\"hyperparameters\":{\"max_steps\":10}}",
                        &st);
    T_EQ_INT(st, 200);
    T_TRUE(json_integer_value(json_object_get(j, "steps")) == 10);
    T_TRUE(json_is_integer(json_object_get(j, "memory_bytes")));
    T_TRUE(json_is_boolean(json_object_get(j, "fits")));
    json_decref(j);
    j = dd_post(&D, "/v1/jobs/estimate", "{\"method\":\"sft\"}", &st);
    CHECK_ERR(j, st, 400, "missing_field", "model");
    json_decref(j);
    /* a batch no micro-batch can hold is refused when validated, not at run time */
    j = dd_post(&D, "/v1/fine_tuning/jobs",
                "{\"model\":\"tiny\",\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":100},"
                "\"hyperparameters\":{\"max_steps\":1,\"batch_size\":65536}}",
                &st);
    CHECK_ERR(j, st, 400, "invalid_value", "hyperparameters.batch_size");
    json_decref(j);
}

/* Waits until a job is in `status` (no final-state shortcut). */
static int wait_status(const char *id, const char *status, double timeout_s) {
    return dd_wait_job(&D, id, status, timeout_s, NULL);
}

typedef struct watcher {
    const char *job;
    int n, ended;
    long first, last;
} watcher;

static void *watch(void *arg) {
    watcher *w = arg;
    static __thread sse_ev ev[4096];
    w->n = read_stream(w->job, NULL, ev, 4096, &w->ended, 120, NULL);
    w->first = w->n > 0 ? ev[0].id : -1;
    w->last = w->n > 0 ? ev[w->n - 1].id : -1;
    return NULL;
}

static void test_cancel_pause_resume(void) {
    long st;
    json_t *j = dd_post(&D, "/v1/fine_tuning/jobs",
                        "{\"model\":\"tiny\",\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":4000},"
                        "\"hyperparameters\":{\"max_steps\":100000,\"batch_size\":2,\"logging_steps\":50}}",
                        &st);
    T_EQ_INT(st, 200);
    char id[64], path[256];
    snprintf(id, sizeof id, "%s", dd_str(j, "id"));
    json_decref(j);
    T_OK(dd_wait_step(&D, id, 2, 60));
    /* many clients follow the job live */
    enum { NW = 30 };
    watcher w[NW];
    pthread_t wt[NW];
    for (int i = 0; i < NW; i++) {
        w[i] = (watcher){.job = id};
        pthread_create(&wt[i], NULL, watch, &w[i]);
    }
    /* the model is in use: it cannot be deleted */
    j = dd_delete(&D, "/v1/models/tiny", &st);
    CHECK_ERR(j, st, 409, "model_in_use", "");
    json_decref(j);

    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/pause", id);
    j = dd_post(&D, path, NULL, &st);
    T_EQ_INT(st, 200);
    json_decref(j);
    T_OK(wait_status(id, "paused", 60));
    j = dd_post(&D, path, NULL, &st);
    CHECK_ERR(j, st, 409, "invalid_state", "");
    json_decref(j);
    snprintf(path, sizeof path, "/v1/jobs/%s/resume", id);
    j = dd_post(&D, path, NULL, &st);
    T_EQ_INT(st, 200);
    json_decref(j);
    T_OK(wait_status(id, "running", 60));
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", id);
    j = dd_post(&D, path, NULL, &st);
    T_EQ_INT(st, 200);
    json_decref(j);
    T_OK(wait_status(id, "cancelled", 60));
    long last = -2;
    int same = 1;
    for (int i = 0; i < NW; i++) {
        pthread_join(wt[i], NULL);
        T_TRUE(w[i].n > 0 && w[i].ended);
        T_EQ_INT(w[i].first, 1);
        if (last != -2 && w[i].last != last) same = 0;
        last = w[i].last;
    }
    T_TRUE(same); /* everyone saw the whole feed, up to the same last id */
    j = dd_post(&D, path, NULL, &st);
    CHECK_ERR(j, st, 409, "invalid_state", "");
    json_decref(j);
    j = dd_post(&D, "/v1/fine_tuning/jobs/ftjob-999999/cancel", NULL, &st);
    T_EQ_INT(st, 404);
    json_decref(j);
}

static void test_models(void) {
    long st;
    json_t *j = dd_get(&D, "/v1/models", &st);
    T_EQ_INT(st, 200);
    int seen_tiny = 0, seen_ft = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(j, "data"), i, m) {
        if (!strcmp(dd_str(m, "id"), "tiny")) seen_tiny = 1;
        if (!strcmp(dd_str(m, "id"), g_ft_model)) seen_ft = 1;
    }
    T_TRUE(seen_tiny);
    T_TRUE(seen_ft);
    json_decref(j);
    j = dd_get(&D, "/v1/models/tiny", &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(j, "object"), "model");
    json_decref(j);
    j = dd_get(&D, "/v1/models/not-a-model", &st);
    T_EQ_INT(st, 404);
    json_decref(j);

    /* registration by path, inside the models directory only */
    T_OK(dd_sh("cp -r '%s/tiny' '%s/later' && mkdir -p '%s/outside' && cp -r '%s/tiny' '%s/outside/m' && "
               "ln -s '%s/outside/m' '%s/escape' && mkdir -p '%s/nomodel'",
               g_models, g_models, g_tmp, g_models, g_tmp, g_tmp, g_models, g_models));
    j = dd_post(&D, "/v1/models", "{\"path\":\"later\",\"name\":\"later-model\"}", &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(j, "id"), "later-model");
    json_decref(j);
    j = dd_post(&D, "/v1/models", "{\"path\":\"../outside/m\"}", &st);
    CHECK_ERR(j, st, 400, "invalid_path", "path");
    json_decref(j);
    j = dd_post(&D, "/v1/models", "{\"path\":\"escape\"}", &st);
    CHECK_ERR(j, st, 400, "path_outside_models_dir", "path");
    json_decref(j);
    char body[2400];
    snprintf(body, sizeof body, "{\"path\":\"%s/outside/m\"}", g_tmp);
    j = dd_post(&D, "/v1/models", body, &st);
    CHECK_ERR(j, st, 400, "path_outside_models_dir", "path");
    json_decref(j);
    j = dd_post(&D, "/v1/models", "{\"path\":\"missing\"}", &st);
    CHECK_ERR(j, st, 404, "not_found", "path");
    json_decref(j);
    j = dd_post(&D, "/v1/models", "{\"path\":\"nomodel\"}", &st);
    CHECK_ERR(j, st, 422, "invalid_model", "path");
    json_decref(j);
    /* a tokenizer with ids past the model's vocab_size (260 here, up to 270
     * in tok_tiny) is refused at registration, not at the first generation */
    const char *src = __FILE__;
    T_OK(dd_sh("cp -r '%s/tiny' '%s/badtok' && cp '%.*s/data/tok_tiny/tokenizer.json' '%s/badtok/'", g_models,
               g_models, (int)(strrchr(src, '/') - src), src, g_models));
    j = dd_post(&D, "/v1/models", "{\"path\":\"badtok\"}", &st);
    CHECK_ERR(j, st, 422, "invalid_model", "path");
    T_TRUE(strstr(dd_str(json_object_get(j, "error"), "message"), "vocab_size 260") != NULL);
    json_decref(j);
    /* served right away */
    j = dd_post(&D, "/v1/completions",
                "{\"model\":\"later-model\",\"prompt\":\"1+1=\",\"max_tokens\":4,\"temperature\":0}", &st);
    T_EQ_INT(st, 200);
    json_decref(j);
    j = dd_delete(&D, "/v1/models/later-model", &st);
    T_EQ_INT(st, 200);
    T_TRUE(json_is_true(json_object_get(j, "deleted")));
    json_decref(j);
    j = dd_get(&D, "/v1/models/later-model", &st);
    T_EQ_INT(st, 404);
    json_decref(j);
}

static void test_inference(void) {
    long st;
    const char *models[] = {"tiny", g_ft_model, g_ckpt};
    for (int k = 0; k < 3; k++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"1+1=\"}],"
                 "\"max_tokens\":10,\"temperature\":0,\"seed\":11}",
                 models[k]);
        json_t *a = dd_post(&D, "/v1/chat/completions", body, &st);
        T_EQ_INT(st, 200);
        json_t *b = dd_post(&D, "/v1/chat/completions", body, &st);
        T_EQ_INT(st, 200);
        T_STR_EQ(dd_str(a, "object"), "chat.completion");
        T_STR_EQ(dd_str(a, "model"), models[k]);
        T_TRUE(choice_text(a) != NULL);
        T_STR_EQ(choice_text(a), choice_text(b));
        const json_t *u = json_object_get(a, "usage");
        T_TRUE(json_integer_value(json_object_get(u, "completion_tokens")) >= 1);
        json_decref(a);
        json_decref(b);
    }
    /* sampled, yet reproducible from the seed */
    const char *samp = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"max_tokens\":12,\"temperature\":1.2,\"top_p\":0.9,\"seed\":5}";
    json_t *a = dd_post(&D, "/v1/chat/completions", samp, &st);
    json_t *b = dd_post(&D, "/v1/chat/completions", samp, &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(choice_text(a), choice_text(b));
    json_decref(b);
    /* the stream carries the same text */
    char sb[512];
    snprintf(sb, sizeof sb, "%.*s,\"stream\":true}", (int)strlen(samp) - 1, samp);
    dd_resp r;
    dd_request(&D, "POST", "/v1/chat/completions", sb, strlen(sb), "application/json", NULL, 60, &r);
    T_EQ_INT(r.status, 200);
    T_TRUE(!strncmp(r.ctype, "text/event-stream", 17));
    char acc[2048] = "";
    for (const char *p = r.body; (p = strstr(p, "data: {")); p += 6) {
        const char *e = strstr(p, "\n\n");
        json_t *c = json_loadb(p + 6, (size_t)(e - p - 6), 0, NULL);
        const char *t = json_string_value(json_object_get(
            json_object_get(json_array_get(json_object_get(c, "choices"), 0), "delta"), "content"));
        if (t) strncat(acc, t, sizeof acc - strlen(acc) - 1);
        json_decref(c);
    }
    T_STR_EQ(acc, choice_text(a));
    T_TRUE(strstr(r.body, "data: [DONE]\n\n") != NULL);
    dd_resp_free(&r);
    json_decref(a);

    json_t *t = dd_post(&D, "/v1/completions",
                        "{\"model\":\"tiny\",\"prompt\":\"1+1=\",\"max_tokens\":6,\"temperature\":0,\"seed\":1}", &st);
    T_EQ_INT(st, 200);
    T_STR_EQ(dd_str(t, "object"), "text_completion");
    json_decref(t);
    t = dd_post(&D, "/v1/chat/completions", "{\"model\":\"ghost\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                &st);
    T_EQ_INT(st, 404);
    T_STR_EQ(dd_str(json_object_get(t, "error"), "param"), "model");
    json_decref(t);
    t = dd_post(&D, "/v1/chat/completions",
                "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":999999}", &st);
    CHECK_ERR(t, st, 400, "invalid_value", "max_tokens");
    json_decref(t);
    t = dd_post(&D, "/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"x\",\"content\":\"x\"}]}",
                &st);
    CHECK_ERR(t, st, 400, "invalid_value", "messages[0].role");
    json_decref(t);
}

static void test_prometheus(void) {
    dd_resp r;
    dd_request(&D, "GET", "/metrics", NULL, 0, NULL, NULL, 10, &r);
    T_EQ_INT(r.status, 200);
    T_TRUE(!strncmp(r.ctype, "text/plain; version=0.0.4", 25));
    T_TRUE(strstr(r.body, "alignd_jobs{status=\"succeeded\"} ") != NULL);
    T_TRUE(strstr(r.body, "alignd_jobs{status=\"succeeded\"} 0\n") == NULL);
    T_TRUE(strstr(r.body, "alignd_jobs{status=\"cancelled\"} 1\n") != NULL);
    T_TRUE(strstr(r.body, "alignd_steps_trained_total ") != NULL);
    T_TRUE(strstr(r.body, "alignd_steps_trained_total 0\n") == NULL);
    T_TRUE(strstr(r.body, "alignd_tokens_trained_total 0\n") == NULL);
    T_TRUE(strstr(r.body, "alignd_queue_depth ") != NULL);
    T_TRUE(strstr(r.body, "alignd_inference_models_loaded ") != NULL);
    T_TRUE(strstr(r.body, "alignd_inference_model_memory_bytes 0\n") == NULL);
    T_TRUE(strstr(r.body, "alignd_http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",code=\"200\"} ") != NULL);
    T_TRUE(strstr(r.body, "alignd_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/chat/completions\",le=\"+Inf\"} ") != NULL);
    dd_resp_free(&r);
}

static atomic_int g_fail;

static void *client(void *arg) {
    long i = (long)arg;
    for (int k = 0; k < 2; k++) {
        dd_resp r;
        const char *path = (i + k) % 2 ? "/v1/fine_tuning/jobs?limit=3" : "/v1/models";
        if (dd_request(&D, "GET", path, NULL, 0, NULL, NULL, 60, &r) || r.status != 200) {
            atomic_fetch_add(&g_fail, 1);
            fprintf(stderr, "client %ld: %ld\n", i, r.status);
        }
        dd_resp_free(&r);
    }
    return NULL;
}

static void test_concurrent(void) {
    enum { N = 200 };
    pthread_t th[N];
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    for (long i = 0; i < N; i++) pthread_create(&th[i], &at, client, (void *)i);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    pthread_attr_destroy(&at);
    T_EQ_INT(atomic_load(&g_fail), 0);
}

/* `alignd keys create` prints the key alone on its last line. */
static int make_key(const char *state, int read_only, char key[128]) {
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "'%s' keys create --state-dir '%s'%s", dd_bin(), state,
             read_only ? " --read-only" : "");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[512], last[512] = "";
    while (fgets(line, sizeof line, p))
        if (line[0] && line[0] != '\n') snprintf(last, sizeof last, "%s", line);
    int rc = pclose(p);
    last[strcspn(last, "\r\n")] = 0;
    snprintf(key, 128, "%.127s", last);
    return rc == 0 && key[0] ? 0 : -1;
}

static void test_auth(void) {
    char rw[128], ro[128];
    T_OK(make_key(D.state, 0, rw));
    T_OK(make_key(D.state, 1, ro));
    long st;
    json_t *j = dd_get(&D, "/v1/models", &st);
    CHECK_ERR(j, st, 401, "missing_api_key", "");
    json_decref(j);
    j = dd_get(&D, "/healthz", &st);
    T_EQ_INT(st, 200);
    json_decref(j);
    snprintf(D.key, sizeof D.key, "ak-wrong");
    j = dd_get(&D, "/v1/models", &st);
    CHECK_ERR(j, st, 401, "invalid_api_key", "");
    json_decref(j);
    snprintf(D.key, sizeof D.key, "%s", ro);
    j = dd_get(&D, "/v1/fine_tuning/jobs", &st);
    T_EQ_INT(st, 200);
    json_decref(j);
    j = dd_post(&D, "/v1/fine_tuning/jobs",
                "{\"model\":\"tiny\",\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":20}}", &st);
    CHECK_ERR(j, st, 403, "read_only_key", "");
    json_decref(j);
    j = dd_delete(&D, "/v1/models/tiny", &st);
    CHECK_ERR(j, st, 403, "read_only_key", "");
    json_decref(j);
    snprintf(D.key, sizeof D.key, "%s", rw);
    j = dd_post(&D, "/v1/fine_tuning/jobs",
                "{\"model\":\"tiny\",\"method\":\"sft\",\"task\":{\"name\":\"addition\",\"rows\":20},"
                "\"hyperparameters\":{\"max_steps\":2}}",
                &st);
    T_EQ_INT(st, 200);
    json_decref(j);
}

/* Without keys, a public address is refused; with a key it is served. */
static void test_public_listen(void) {
    char state[1200], cmd[4000];
    snprintf(state, sizeof state, "%s/public", g_tmp);
    snprintf(cmd, sizeof cmd,
             "timeout 20 '%s' serve --listen 0.0.0.0:0 --state-dir '%s' --models-dir '%s' "
             "> '%s.log' 2>&1",
             dd_bin(), state, g_models, state);
    int rc = system(cmd);
    T_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) != 0 && WEXITSTATUS(rc) != 124);
    char logp[1300];
    snprintf(logp, sizeof logp, "%s.log", state);
    char *log = dd_read_file(logp, NULL);
    T_TRUE(log && strstr(log, "without API keys"));
    free(log);
    char key[128];
    T_OK(make_key(state, 0, key));
    dd_daemon p;
    const char *args[] = {"--listen", "0.0.0.0:0", NULL};
    dd_opts o = {.state_dir = state, .models_dir = g_models, .args = args};
    /* dd_start passes --listen 127.0.0.1:0 first; the later flag wins */
    if (dd_start(&p, &o) == 0) {
        long st;
        json_t *j = dd_get(&p, "/v1/models", &st);
        T_EQ_INT(st, 401);
        json_decref(j);
        snprintf(p.key, sizeof p.key, "%s", key);
        j = dd_get(&p, "/v1/models", &st);
        T_EQ_INT(st, 200);
        json_decref(j);
        T_EQ_INT(dd_stop(&p, SIGTERM, 30), 0);
    } else {
        T_TRUE(!"the daemon with a key did not start on 0.0.0.0");
    }
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    snprintf(g_tmp, sizeof g_tmp, "%s", t_tmpdir());
    snprintf(g_models, sizeof g_models, "%s/models", g_tmp);
    if (dd_sh("mkdir -p '%s' && '%s' init-model --arch gpt2 --layers 1 --hidden 32 --heads 2 "
              "--context 128 --seed 1 --out '%s/tiny' > /dev/null",
              g_models, dd_bin(), g_models)) {
        fprintf(stderr, "cannot make the tiny model\n");
        return 1;
    }
    char state[1200];
    snprintf(state, sizeof state, "%s/state", g_tmp);
    /* test_concurrent's 200 clients all come from 127.0.0.1. Its 400 client
     * and connection threads share the machine's cores (under ASan, beside
     * other tests): a client may get its request out, or the daemon get to
     * read it, only seconds after the connection opened, and the 10 s
     * header deadline would cut it. The deadline is test_api's and
     * hostile/test_hostile's subject, not this one's: give it the client's 60 s. */
    const char *args[] = {"--max-connections-per-ip", "256", "--header-timeout", "60", NULL};
    dd_opts o = {.state_dir = state, .models_dir = g_models, .args = args};
    if (dd_start(&D, &o)) return 1;

    test_health_and_dashboard();
    test_files();
    test_job_lifecycle();
    test_evals();
    test_job_errors();
    test_data_jobs();
    test_estimate();
    test_inference();
    test_cancel_pause_resume();
    test_models();
    test_prometheus();
    test_concurrent();
    test_auth();

    int rc = dd_stop(&D, SIGTERM, 60);
    T_EQ_INT(rc, 0);
    test_public_listen();
    if (t_fail_) dd_log_tail(&D, 4000);
    curl_global_cleanup();
    return t_done();
}

/* The REST layer in process: api_server on 127.0.0.1 port 0 over the fake
 * backend of fake_backend.h (files, jobs, a feed per job, models, keys), driven
 * with libcurl. Checks exact status codes, error `param`/`code` values and
 * bodies; SSE with Last-Event-ID, heartbeats and caps; auth; limits; path
 * traversal; static files; Prometheus text; 200 concurrent clients; and
 * chat/text completions from a tiny model written by the test. */
#define _XOPEN_SOURCE 700
#include <arpa/inet.h>
#include <errno.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "api/server.h"
#include "daemon_util.h"
#include "fake_backend.h"
#include "model/config.h"
#include "model/model.h"
#include "t.h"

/* ======================================================================== */
/* HTTP client                                                              */
/* ======================================================================== */

static int g_port;

typedef struct resp {
    long status;
    char *body;
    size_t len;
    char *headers;
    size_t hlen;
    json_t *json;
} resp;

typedef struct sink {
    char *b;
    size_t len;
} sink;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
    sink *s = ud;
    size_t add = sz * n;
    char *nb = realloc(s->b, s->len + add + 1);
    if (!nb) return 0;
    memcpy(nb + s->len, p, add);
    s->len += add;
    nb[s->len] = 0;
    s->b = nb;
    return add;
}

static void resp_free(resp *r) {
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* One request. hdrs: NULL-terminated "Name: value" strings. body may be
 * NULL (no body); blen < 0 means strlen. */
static resp req_full(const char *method, const char *path, const char *const *hdrs,
                     const char *body, long blen, int path_as_is, long timeout_ms) {
    resp r = {0};
    CURL *c = curl_easy_init();
    char url[2048];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g_port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD")) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    sink sb = {0}, sh = {0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sb);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &sh);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (path_as_is) curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    struct curl_slist *hl = NULL;
    int own_expect = 0;
    for (int i = 0; hdrs && hdrs[i]; i++) own_expect |= !strncasecmp(hdrs[i], "Expect:", 7);
    if (!own_expect) hl = curl_slist_append(hl, "Expect:");
    for (int i = 0; hdrs && hdrs[i]; i++) hl = curl_slist_append(hl, hdrs[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(blen < 0 ? (long)strlen(body) : blen));
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    else r.status = -(long)rc;
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    r.body = sb.b;
    r.len = sb.len;
    r.headers = sh.b;
    r.hlen = sh.len;
    if (r.body && r.len) r.json = json_loadb(r.body, r.len, 0, NULL);
    return r;
}

static const char *g_auth; /* "Authorization: Bearer ..." added to requests, or NULL */

static resp req(const char *method, const char *path, const char *body) {
    const char *h[3] = {0};
    int n = 0;
    if (body) h[n++] = "Content-Type: application/json";
    if (g_auth) h[n++] = g_auth;
    return req_full(method, path, h, body, -1, 0, 0);
}

static const char *jstr(const json_t *j, const char *path) {
    /* "error.param" style lookup */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *cur = j;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
        cur = json_object_get(cur, tok);
    return cur ? json_string_value(cur) : NULL;
}

static long long jint(const json_t *j, const char *key) {
    return json_integer_value(json_object_get(j, key));
}

static int has_header(const resp *r, const char *needle) {
    if (!r->headers) return 0;
    /* case-insensitive search */
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= r->hlen; i++)
        if (!strncasecmp(r->headers + i, needle, n)) return 1;
    return 0;
}

/* Asserts an OpenAI error: status, code, param ("" for null). */
#define T_ERR(r, st, cd, pm)                                                           \
    do {                                                                               \
        T_EQ_INT((r).status, st);                                                      \
        T_STR_EQ(jstr((r).json, "error.code"), cd);                                    \
        if (*(pm)) T_STR_EQ(jstr((r).json, "error.param"), pm);                        \
        else T_TRUE(json_is_null(json_object_get(json_object_get((r).json, "error"), "param"))); \
        T_TRUE(jstr((r).json, "error.message") != NULL);                               \
        T_TRUE(jstr((r).json, "error.type") != NULL);                                  \
    } while (0)

static api_server *start(api_server_cfg *cfg) {
    api_backend b = fake_backend();
    char err[AL_ERRLEN] = "";
    api_server *s = api_server_start(cfg, &b, err);
    if (!s) {
        fprintf(stderr, "api_server_start: %s\n", err);
        exit(1);
    }
    g_port = api_server_port(s);
    return s;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fputs(text, f);
    fclose(f);
}

/* ======================================================================== */
/* Tests                                                                    */
/* ======================================================================== */

static void test_basics(void) {
    resp r = req("GET", "/healthz", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "status"), "ok");
    T_TRUE(has_header(&r, "Content-Type: application/json"));
    T_TRUE(has_header(&r, "X-Content-Type-Options: nosniff"));
    resp_free(&r);

    F.ready = 1;
    r = req("GET", "/readyz", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "status"), "ready");
    resp_free(&r);
    F.ready = 0;
    r = req("GET", "/readyz", NULL);
    T_EQ_INT(r.status, 503);
    T_STR_EQ(jstr(r.json, "reason"), "database not migrated");
    resp_free(&r);
    F.ready = 1;

    r = req("GET", "/v1/nothing", NULL);
    T_ERR(r, 404, "unknown_url", "");
    resp_free(&r);
    r = req("DELETE", "/v1/fine_tuning/jobs", NULL);
    T_ERR(r, 405, "method_not_allowed", "");
    T_TRUE(has_header(&r, "Allow: POST, GET") || has_header(&r, "Allow: GET, POST"));
    resp_free(&r);
    r = req("PUT", "/healthz", NULL);
    T_EQ_INT(r.status, 405);
    resp_free(&r);
}

/* GET /v1/methods: the registry as api_methods_json builds it (test_methods
 * checks that against the job parser), DPO's loss types and the tasks in it. */
static void test_methods(void) {
    resp r = req("GET", "/v1/methods", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(has_header(&r, "Content-Type: application/json"));
    json_t *want = api_methods_json();
    T_TRUE(want && json_equal(r.json, want));
    json_decref(want);
    T_STR_EQ(jstr(r.json, "object"), "list");
    const json_t *m, *f, *dpo_losses = NULL;
    size_t i, k;
    json_array_foreach(json_object_get(r.json, "data"), i, m)
        json_array_foreach(json_object_get(m, "hyperparameters"), k, f)
            if (!strcmp(jstr(m, "id"), "dpo") && !strcmp(jstr(f, "name"), "loss_type"))
                dpo_losses = json_object_get(f, "choices");
    T_STR_EQ(json_string_value(json_array_get(dpo_losses, 0)), "sigmoid");
    T_TRUE(json_array_size(dpo_losses) >= 14);
    T_STR_EQ(jstr(json_array_get(json_object_get(r.json, "tasks"), 1), "id"), "addition2");
    resp_free(&r);
    r = req("POST", "/v1/methods", "{}");
    T_ERR(r, 405, "method_not_allowed", "");
    T_TRUE(has_header(&r, "Allow: GET"));
    resp_free(&r);
}

static void test_files(void) {
    /* raw body */
    const char *jsonl = "{\"text\":\"hello\"}\n{\"text\":\"world\"}\n";
    const char *h[] = {"Content-Type: application/jsonl", NULL};
    resp r = req_full("POST", "/v1/files?purpose=fine-tune&filename=a.jsonl", h, jsonl, -1, 0, 0);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "id"), "file-1");
    T_STR_EQ(jstr(r.json, "filename"), "a.jsonl");
    T_STR_EQ(jstr(r.json, "purpose"), "fine-tune");
    T_EQ_INT(jint(r.json, "bytes"), strlen(jsonl));
    resp_free(&r);

    /* multipart, as curl -F sends it */
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/files", g_port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_mime *mime = curl_mime_init(c);
    curl_mimepart *p = curl_mime_addpart(mime);
    curl_mime_name(p, "purpose");
    curl_mime_data(p, "fine-tune", CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(mime);
    curl_mime_name(p, "file");
    curl_mime_filename(p, "dir/train.jsonl");
    curl_mime_type(p, "application/jsonl");
    curl_mime_data(p, jsonl, CURL_ZERO_TERMINATED);
    p = curl_mime_addpart(mime);
    curl_mime_name(p, "dataset_info");
    curl_mime_data(p, "{\"formatting\": \"sharegpt\", \"tags\": {\"role_tag\": \"speaker\"}}", CURL_ZERO_TERMINATED);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    sink sb = {0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sb);
    T_EQ_INT(curl_easy_perform(c), CURLE_OK);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    T_EQ_INT(st, 200);
    json_t *j = json_loads(sb.b ? sb.b : "", 0, NULL);
    T_STR_EQ(jstr(j, "id"), "file-2");
    T_STR_EQ(jstr(j, "filename"), "train.jsonl");
    T_EQ_INT(jint(j, "bytes"), strlen(jsonl));
    T_STR_EQ(F.dinfo, "{\"formatting\":\"sharegpt\",\"tags\":{\"role_tag\":\"speaker\"}}"); /* handed to the backend */
    json_decref(j);
    free(sb.b);
    curl_mime_free(mime);
    curl_easy_cleanup(c);

    /* multipart by hand: missing purpose, missing file */
    const char *mh[] = {"Content-Type: multipart/form-data; boundary=XyZ", NULL};
    const char *nopurpose = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n"
                            "Content-Type: application/jsonl\r\n\r\n{\"text\":\"a\"}\n\r\n--XyZ--\r\n";
    r = req_full("POST", "/v1/files", mh, nopurpose, -1, 0, 0);
    T_ERR(r, 400, "missing_field", "purpose");
    resp_free(&r);
    const char *nofile = "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--XyZ--\r\n";
    r = req_full("POST", "/v1/files", mh, nofile, -1, 0, 0);
    T_ERR(r, 400, "missing_field", "file");
    resp_free(&r);
    const char *badpurpose = "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
                             "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n\r\n"
                             "{\"text\":\"a\"}\n\r\n--XyZ--\r\n";
    r = req_full("POST", "/v1/files", mh, badpurpose, -1, 0, 0);
    T_ERR(r, 400, "invalid_value", "purpose");
    resp_free(&r);
    r = req_full("POST", "/v1/files", mh, "garbage", -1, 0, 0);
    T_ERR(r, 400, "invalid_multipart", "");
    resp_free(&r);
    const char *nb[] = {"Content-Type: multipart/form-data", NULL};
    r = req_full("POST", "/v1/files", nb, nofile, -1, 0, 0);
    T_ERR(r, 400, "invalid_multipart", "");
    resp_free(&r);
    /* empty, not JSONL (backend's 400), wrong type */
    r = req_full("POST", "/v1/files", h, "", 0, 0, 0);
    T_ERR(r, 400, "empty_file", "file");
    resp_free(&r);
    r = req_full("POST", "/v1/files", h, "not json", -1, 0, 0);
    T_ERR(r, 400, "file_invalid", "file");
    resp_free(&r);
    const char *png[] = {"Content-Type: image/png", NULL};
    r = req_full("POST", "/v1/files", png, "\x89PNG", -1, 0, 0);
    T_ERR(r, 415, "unsupported_media_type", "");
    resp_free(&r);
    r = req_full("POST", "/v1/files?purpose=batch", h, jsonl, -1, 0, 0);
    T_ERR(r, 400, "invalid_value", "purpose");
    resp_free(&r);
    r = req_full("POST", "/v1/files?purpose=fine-tune&dataset_info=%5Bsharegpt%5D", h, jsonl, -1, 0, 0);
    T_ERR(r, 400, "invalid_value", "dataset_info");
    resp_free(&r);

    /* one more, then pagination: newest first */
    r = req_full("POST", "/v1/files", h, jsonl, -1, 0, 0);
    T_STR_EQ(jstr(r.json, "id"), "file-3");
    T_STR_EQ(jstr(r.json, "filename"), "upload.jsonl");
    resp_free(&r);
    r = req("GET", "/v1/files?limit=2", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "object"), "list");
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 2);
    T_TRUE(json_is_true(json_object_get(r.json, "has_more")));
    T_STR_EQ(jstr(r.json, "first_id"), "file-3");
    T_STR_EQ(jstr(r.json, "last_id"), "file-2");
    resp_free(&r);
    r = req("GET", "/v1/files?limit=2&after=file-2", NULL);
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 1);
    T_TRUE(json_is_false(json_object_get(r.json, "has_more")));
    T_STR_EQ(jstr(r.json, "first_id"), "file-1");
    resp_free(&r);
    r = req("GET", "/v1/files?after=file-1", NULL);
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 0);
    T_TRUE(json_is_null(json_object_get(r.json, "first_id")));
    resp_free(&r);
    r = req("GET", "/v1/files?limit=100", NULL);
    T_EQ_INT(r.status, 200);
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 3);
    resp_free(&r);
    r = req("GET", "/v1/files?limit=0", NULL);
    T_ERR(r, 400, "invalid_value", "limit");
    resp_free(&r);
    r = req("GET", "/v1/files?limit=101", NULL);
    T_ERR(r, 400, "invalid_value", "limit");
    resp_free(&r);
    r = req("GET", "/v1/files?limit=2x", NULL);
    T_ERR(r, 400, "invalid_value", "limit");
    resp_free(&r);
    r = req("GET", "/v1/files?after=a%20b", NULL);
    T_ERR(r, 400, "invalid_value", "after");
    resp_free(&r);

    r = req("GET", "/v1/files/file-1", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "id"), "file-1");
    resp_free(&r);
    r = req("GET", "/v1/files/file-1/content", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(r.body && !strcmp(r.body, jsonl));
    resp_free(&r);
    r = req("GET", "/v1/files/file-99", NULL);
    T_ERR(r, 404, "not_found", "file_id");
    resp_free(&r);
    r = req("DELETE", "/v1/files/file-3", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(json_is_true(json_object_get(r.json, "deleted")));
    resp_free(&r);
    /* a file name that is not UTF-8 is kept, its bad bytes replaced by '?' */
    r = req_full("POST", "/v1/files?purpose=fine-tune&filename=%FF%FEdata%C3.jsonl", h, jsonl, -1, 0, 0);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "filename"), "??data?.jsonl");
    if (jstr(r.json, "id")) {
        char del[96];
        snprintf(del, sizeof del, "/v1/files/%s", jstr(r.json, "id"));
        resp d = req("DELETE", del, NULL);
        resp_free(&d);
    }
    resp_free(&r);
}

static void test_jobs(void) {
    resp r = req("POST", "/v1/fine_tuning/jobs",
                 "{\"model\":\"tiny\",\"training_file\":\"file-1\",\"metadata\":{\"team\":\"a\"}}");
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "id"), "ftjob-1");
    T_STR_EQ(jstr(r.json, "object"), "fine_tuning.job");
    T_STR_EQ(jstr(r.json, "metadata.team"), "a");
    resp_free(&r);
    /* the alias */
    r = req("POST", "/v1/jobs", "{\"model\":\"tiny\"}");
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "id"), "ftjob-2");
    resp_free(&r);
    r = req("GET", "/v1/jobs/ftjob-2", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "status"), "queued");
    resp_free(&r);

    /* the backend's field errors pass through with their param */
    r = req("POST", "/v1/fine_tuning/jobs", "{\"training_file\":\"file-1\"}");
    T_ERR(r, 400, "missing_field", "model");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\",\"hyperparameters\":{\"beta\":\"x\"}}");
    T_ERR(r, 400, "invalid_type", "hyperparameters.beta");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\",\"training_file\":\"file-9\"}");
    T_ERR(r, 400, "invalid_value", "training_file");
    resp_free(&r);
    /* metadata */
    char md[2048] = "{\"model\":\"tiny\",\"metadata\":{";
    for (int i = 0; i < 17; i++)
        snprintf(md + strlen(md), sizeof md - strlen(md), "%s\"k%d\":\"v\"", i ? "," : "", i);
    strcat(md, "}}");
    r = req("POST", "/v1/fine_tuning/jobs", md);
    T_ERR(r, 400, "invalid_value", "metadata");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\",\"metadata\":{\"n\":3}}");
    T_ERR(r, 400, "invalid_type", "metadata.n");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\",\"metadata\":[1]}");
    T_ERR(r, 400, "invalid_type", "metadata");
    resp_free(&r);
    /* bodies */
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":");
    T_ERR(r, 400, "invalid_json", "");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs", "[1,2]");
    T_ERR(r, 400, "invalid_type", "");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"a\",\"model\":\"b\"}");
    T_ERR(r, 400, "invalid_json", "");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs", NULL);
    T_ERR(r, 400, "invalid_json", "");
    resp_free(&r);
    const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    r = req_full("POST", "/v1/fine_tuning/jobs", form, "model=tiny", -1, 0, 0);
    T_ERR(r, 415, "unsupported_media_type", "");
    resp_free(&r);
    const char *utf[] = {"Content-Type: application/json; charset=utf-8", NULL};
    r = req_full("POST", "/v1/fine_tuning/jobs", utf, "{\"model\":\"tiny\"}", -1, 0, 0);
    T_EQ_INT(r.status, 200);
    resp_free(&r);

    /* list and its filter */
    r = req("GET", "/v1/fine_tuning/jobs?limit=1", NULL);
    T_EQ_INT(r.status, 200);
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 1);
    T_TRUE(json_is_true(json_object_get(r.json, "has_more")));
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs?status=queued", NULL);
    T_EQ_INT(r.status, 200);
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 3);
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs?status=bogus", NULL);
    T_ERR(r, 400, "invalid_value", "status");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-77", NULL);
    T_ERR(r, 404, "not_found", "fine_tuning_job_id");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/bad%20id", NULL);
    T_ERR(r, 404, "not_found", "fine_tuning_job_id");
    resp_free(&r);

    /* actions */
    r = req("POST", "/v1/fine_tuning/jobs/ftjob-2/pause", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "status"), "paused");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs/ftjob-2/pause", NULL);
    T_ERR(r, 409, "invalid_state", "");
    resp_free(&r);
    r = req("POST", "/v1/jobs/ftjob-2/resume", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "status"), "queued");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs/ftjob-2/cancel", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "status"), "cancelled");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs/ftjob-2/cancel", NULL);
    T_ERR(r, 409, "invalid_state", "");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs/ftjob-99/cancel", NULL);
    T_ERR(r, 404, "not_found", "fine_tuning_job_id");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-2/cancel", NULL);
    T_EQ_INT(r.status, 405);
    resp_free(&r);

    /* events (JSON), metrics, samples, checkpoints, estimate */
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-2/events?limit=2", NULL);
    T_EQ_INT(r.status, 200);
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 2);
    T_TRUE(json_is_true(json_object_get(r.json, "has_more")));
    T_STR_EQ(jstr(json_array_get(json_object_get(r.json, "data"), 0), "message"), "cancelled");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/metrics", NULL);
    T_EQ_INT(r.status, 200);
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 10);
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/metrics?keys=loss,rewards/margins&after_step=4&max_points=3", NULL);
    T_EQ_INT(r.status, 200);
    json_t *d = json_object_get(r.json, "data");
    T_EQ_INT(json_array_size(d), 3);
    T_EQ_INT(jint(json_array_get(d, 0), "step"), 5);
    T_EQ_INT(jint(json_array_get(d, 2), "step"), 10);
    T_EQ_INT(jint(r.json, "total_points"), 6);
    T_TRUE(json_object_get(json_object_get(json_array_get(d, 0), "metrics"), "lr") == NULL);
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/metrics?after_step=x", NULL);
    T_ERR(r, 400, "invalid_value", "after_step");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/metrics?max_points=1", NULL);
    T_ERR(r, 400, "invalid_value", "max_points");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/metrics?max_points=-3", NULL);
    T_ERR(r, 400, "invalid_value", "max_points");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/metrics?keys=loss,,x", NULL);
    T_ERR(r, 400, "invalid_value", "keys");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/metrics?keys=a%22b", NULL);
    T_ERR(r, 400, "invalid_value", "keys");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-9/metrics", NULL);
    T_ERR(r, 404, "not_found", "fine_tuning_job_id");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/samples?after_step=5", NULL);
    T_EQ_INT(r.status, 200);
    d = json_object_get(r.json, "data");
    T_EQ_INT(json_array_size(d), 3);
    T_EQ_INT(jint(json_array_get(d, 0), "step"), 10);
    T_STR_EQ(jstr(json_array_get(d, 0), "prompt"), "1+1=");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/samples?limit=0", NULL);
    T_ERR(r, 400, "invalid_value", "limit");
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs/ftjob-1/checkpoints", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(json_array_get(json_object_get(r.json, "data"), 0), "fine_tuned_model_checkpoint"),
             "ftjob-1:10");
    resp_free(&r);
    r = req("POST", "/v1/jobs/estimate", "{\"model\":\"tiny\"}");
    T_EQ_INT(r.status, 200);
    T_EQ_INT(jint(r.json, "steps"), 10);
    T_TRUE(json_is_true(json_object_get(r.json, "fits")));
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs/estimate", "{}");
    T_ERR(r, 400, "missing_field", "model");
    resp_free(&r);
}

/* ---- limits ---------------------------------------------------------------- */

static void test_limits(void) {
    /* body over max_body (64 KiB in this server) */
    size_t big = 100 * 1024;
    char *b = malloc(big + 1);
    memset(b, ' ', big);
    b[0] = '{';
    b[big - 1] = '}';
    b[big] = 0;
    resp r = req("POST", "/v1/fine_tuning/jobs", b);
    T_ERR(r, 413, "request_too_large", "");
    resp_free(&r);
    /* a client that waits for "100 Continue" gets the 413 instead */
    const char *expect[] = {"Content-Type: application/json", "Expect: 100-continue", NULL};
    r = req_full("POST", "/v1/fine_tuning/jobs", expect, b, (long)big, 0, 0);
    T_ERR(r, 413, "request_too_large", "");
    resp_free(&r);
    /* errors known from the headers wait for the body: 401 with a body */
    F.keys = 1;
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\"}");
    T_ERR(r, 401, "missing_api_key", "");
    resp_free(&r);
    F.keys = 0;
    /* chunked (no Content-Length): detected while reading */
    const char *chunked[] = {"Content-Type: application/json", "Transfer-Encoding: chunked", NULL};
    r = req_full("POST", "/v1/fine_tuning/jobs", chunked, b, (long)big, 0, 0);
    T_ERR(r, 413, "request_too_large", "");
    resp_free(&r);
    free(b);
    /* nesting: 40 levels > 32 */
    char deep[256] = "{\"model\":\"tiny\",\"x\":";
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    for (int i = 0; i < 40; i++) strcat(deep, "]");
    strcat(deep, "}");
    r = req("POST", "/v1/fine_tuning/jobs", deep);
    T_ERR(r, 400, "json_too_deep", "");
    resp_free(&r);
    /* 30 levels are fine (the fake accepts unknown fields) */
    char ok[256] = "{\"model\":\"tiny\",\"x\":";
    for (int i = 0; i < 30; i++) strcat(ok, "[");
    for (int i = 0; i < 30; i++) strcat(ok, "]");
    strcat(ok, "}");
    r = req("POST", "/v1/fine_tuning/jobs", ok);
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    /* a string over max_string (4 KiB here), named by its path */
    char *ls = malloc(6000);
    strcpy(ls, "{\"model\":\"tiny\",\"metadata\":{\"k\":\"v\"},\"hyperparameters\":{\"x\":[1,\"");
    size_t at = strlen(ls);
    memset(ls + at, 'a', 5000);
    strcpy(ls + at + 5000, "\"]}}");
    r = req("POST", "/v1/fine_tuning/jobs", ls);
    T_ERR(r, 400, "string_too_long", "hyperparameters.x[1]");
    resp_free(&r);
    free(ls);
}

/* ---- auth --------------------------------------------------------------------- */

static void test_auth(void) {
    F.keys = 1;
    g_auth = NULL;
    resp r = req("GET", "/v1/fine_tuning/jobs", NULL);
    T_ERR(r, 401, "missing_api_key", "");
    T_TRUE(has_header(&r, "WWW-Authenticate: Bearer"));
    resp_free(&r);
    r = req("GET", "/healthz", NULL);
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    r = req("GET", "/metrics", NULL);
    T_EQ_INT(r.status, 401);
    resp_free(&r);
    r = req("GET", "/readyz", NULL);
    T_EQ_INT(r.status, 401);
    resp_free(&r);
    g_auth = "Authorization: Bearer sk-wrong";
    r = req("GET", "/v1/fine_tuning/jobs", NULL);
    T_ERR(r, 401, "invalid_api_key", "");
    resp_free(&r);
    g_auth = "Authorization: Basic c2stcnc6";
    r = req("GET", "/v1/fine_tuning/jobs", NULL);
    T_ERR(r, 401, "missing_api_key", "");
    resp_free(&r);
    g_auth = "Authorization: Bearer sk-ro";
    r = req("GET", "/v1/fine_tuning/jobs", NULL);
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\"}");
    T_ERR(r, 403, "read_only_key", "");
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs/ftjob-1/cancel", NULL);
    T_ERR(r, 403, "read_only_key", "");
    resp_free(&r);
    r = req("DELETE", "/v1/models/x", NULL);
    T_ERR(r, 403, "read_only_key", "");
    resp_free(&r);
    const char *h[] = {"Content-Type: application/jsonl", g_auth, NULL};
    r = req_full("POST", "/v1/files", h, "{\"text\":\"a\"}\n", -1, 0, 0);
    T_ERR(r, 403, "read_only_key", "");
    resp_free(&r);
    /* estimating runs nothing: read-only keys may */
    r = req("POST", "/v1/jobs/estimate", "{\"model\":\"tiny\"}");
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    g_auth = "Authorization: bearer   sk-rw";
    r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\"}");
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    /* the dashboard's EventSource passes the key in the query (GET only) */
    g_auth = NULL;
    r = req("GET", "/v1/fine_tuning/jobs?access_token=sk-ro", NULL);
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    r = req("POST", "/v1/fine_tuning/jobs?access_token=sk-rw", "{\"model\":\"tiny\"}");
    T_ERR(r, 401, "missing_api_key", "");
    resp_free(&r);
    F.keys = 0;
}

static void test_listen_refusal(void) {
    api_server_cfg cfg;
    api_server_cfg_init(&cfg);
    cfg.host = "0.0.0.0";
    cfg.port = 0;
    api_backend b = fake_backend();
    char err[AL_ERRLEN] = "";
    F.keys = 0;
    api_server *s = api_server_start(&cfg, &b, err);
    T_TRUE(s == NULL);
    T_TRUE(strstr(err, "without API keys") != NULL);
    api_server_stop(s);
    F.keys = 1;
    s = api_server_start(&cfg, &b, err);
    T_TRUE(s != NULL);
    T_TRUE(api_server_port(s) > 0);
    api_server_stop(s);
    F.keys = 0;
    cfg.host = "localhost";
    s = api_server_start(&cfg, &b, err);
    T_TRUE(s != NULL);
    api_server_stop(s);
}

/* ---- models and paths ------------------------------------------------------------ */

static char g_models[1100], g_outside[1100];

static void test_models(void) {
    resp r = req("POST", "/v1/models", "{\"path\":\"m1\"}");
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "id"), "m1");
    char real_m1[2200];
    snprintf(real_m1, sizeof real_m1, "%s/m1", g_models);
    char want[4096];
    T_TRUE(realpath(real_m1, want) != NULL);
    T_STR_EQ(jstr(r.json, "path"), want);
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"m1\",\"name\":\"other-name_1.0\"}");
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"m1\"}");
    T_ERR(r, 409, "model_exists", "name");
    resp_free(&r);
    /* an absolute path inside is fine */
    char body[4500];
    snprintf(body, sizeof body, "{\"path\":\"%s/m1\",\"name\":\"abs\"}", g_models);
    r = req("POST", "/v1/models", body);
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    /* traversal */
    r = req("POST", "/v1/models", "{\"path\":\"../outside/m\"}");
    T_ERR(r, 400, "invalid_path", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"m1/../m1\"}");
    T_ERR(r, 400, "invalid_path", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"escape\"}"); /* symlink to outside */
    T_ERR(r, 400, "path_outside_models_dir", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"m1/inner-escape\"}"); /* nested symlink */
    T_ERR(r, 400, "path_outside_models_dir", "path");
    resp_free(&r);
    snprintf(body, sizeof body, "{\"path\":\"%s/m\"}", g_outside);
    r = req("POST", "/v1/models", body);
    T_ERR(r, 400, "path_outside_models_dir", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"/etc\"}");
    T_ERR(r, 400, "path_outside_models_dir", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\".\"}"); /* the directory itself */
    T_ERR(r, 400, "path_outside_models_dir", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"nope\"}");
    T_ERR(r, 404, "not_found", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"empty\"}");
    T_ERR(r, 422, "invalid_model", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"m1\",\"name\":\"bad name\"}");
    T_ERR(r, 400, "invalid_value", "name");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":\"m1\",\"name\":\"ftjob-3\"}");
    T_ERR(r, 400, "invalid_value", "name");
    resp_free(&r);
    r = req("POST", "/v1/models", "{\"path\":7}");
    T_ERR(r, 400, "invalid_type", "path");
    resp_free(&r);
    r = req("POST", "/v1/models", "{}");
    T_ERR(r, 400, "missing_field", "path");
    resp_free(&r);

    r = req("GET", "/v1/models", NULL);
    T_EQ_INT(r.status, 200);
    T_EQ_INT(json_array_size(json_object_get(r.json, "data")), 3);
    resp_free(&r);
    r = req("GET", "/v1/models/m1", NULL);
    T_EQ_INT(r.status, 200);
    T_STR_EQ(jstr(r.json, "object"), "model");
    resp_free(&r);
    r = req("GET", "/v1/models/zzz", NULL);
    T_ERR(r, 404, "model_not_found", "model");
    resp_free(&r);
    /* in use: 409 */
    pthread_mutex_lock(&F.mu);
    json_array_append_new(json_object_get(find_id(F.models, "abs", NULL), "in_use_by"),
                          json_string("ftjob-1"));
    pthread_mutex_unlock(&F.mu);
    r = req("DELETE", "/v1/models/abs", NULL);
    T_ERR(r, 409, "model_in_use", "model");
    resp_free(&r);
    r = req("DELETE", "/v1/models/m1", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(json_is_true(json_object_get(r.json, "deleted")));
    resp_free(&r);
}

/* ---- static files ------------------------------------------------------------------ */

static void test_static(void) {
    resp r = req("GET", "/", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(r.body && strstr(r.body, "<title>alignd</title>"));
    T_TRUE(has_header(&r, "Content-Type: text/html; charset=utf-8"));
    T_TRUE(has_header(&r, "Content-Security-Policy: default-src 'self'; script-src 'self'"));
    T_TRUE(has_header(&r, "frame-ancestors 'none'"));
    T_TRUE(has_header(&r, "Cache-Control: no-cache"));
    T_TRUE(has_header(&r, "ETag: \""));
    /* revalidation */
    char inm[160] = "If-None-Match: ";
    const char *et = strstr(r.headers, "ETag: ");
    if (!et) et = strstr(r.headers, "Etag: ");
    T_TRUE(et != NULL);
    if (et) {
        const char *e = strchr(et, '\r');
        strncat(inm, et + 6, (size_t)(e - et - 6));
    }
    resp_free(&r);
    const char *h[] = {inm, NULL};
    r = req_full("GET", "/index.html", h, NULL, 0, 0, 0);
    T_EQ_INT(r.status, 304);
    resp_free(&r);
    r = req("GET", "/app.js", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(has_header(&r, "Content-Type: text/javascript"));
    resp_free(&r);
    r = req("GET", "/css/style.css", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(has_header(&r, "Content-Type: text/css"));
    resp_free(&r);
    /* client-side route: index.html; missing asset: 404 */
    r = req("GET", "/jobs/ftjob-1", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(r.body && strstr(r.body, "<title>alignd</title>"));
    resp_free(&r);
    r = req("GET", "/missing.js", NULL);
    T_EQ_INT(r.status, 404);
    resp_free(&r);
    /* traversal */
    r = req_full("GET", "/../secret.txt", NULL, NULL, 0, 1, 0);
    T_EQ_INT(r.status, 404);
    T_TRUE(!r.body || !strstr(r.body, "TOPSECRET"));
    resp_free(&r);
    r = req_full("GET", "/css/../../secret.txt", NULL, NULL, 0, 1, 0);
    T_EQ_INT(r.status, 404);
    resp_free(&r);
    r = req_full("GET", "/%2e%2e/secret.txt", NULL, NULL, 0, 1, 0);
    T_EQ_INT(r.status, 404);
    T_TRUE(!r.body || !strstr(r.body, "TOPSECRET"));
    resp_free(&r);
    r = req_full("GET", "/..%2fsecret.txt", NULL, NULL, 0, 1, 0);
    T_EQ_INT(r.status, 404);
    resp_free(&r);
    r = req("GET", "/leak.txt", NULL); /* symlink to outside */
    T_EQ_INT(r.status, 404);
    T_TRUE(!r.body || !strstr(r.body, "TOPSECRET"));
    resp_free(&r);
    r = req("GET", "/.hidden", NULL);
    T_EQ_INT(r.status, 404);
    resp_free(&r);
    /* HEAD */
    r = req_full("HEAD", "/app.js", NULL, NULL, 0, 0, 0);
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    /* static files need no key */
    F.keys = 1;
    r = req("GET", "/app.js", NULL);
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    F.keys = 0;
}

/* ---- SSE ------------------------------------------------------------------------- */

typedef struct stream_ctx {
    const char *path;
    const char *last_id;     /* Last-Event-ID or NULL */
    long timeout_ms;
    resp r;
} stream_ctx;

static void *stream_thread(void *arg) {
    stream_ctx *c = arg;
    char h2[64];
    const char *h[4] = {"Accept: text/event-stream", NULL, NULL, NULL};
    if (c->last_id) {
        snprintf(h2, sizeof h2, "Last-Event-ID: %s", c->last_id);
        h[1] = h2;
    }
    c->r = req_full("GET", c->path, h, NULL, 0, 0, c->timeout_ms);
    return NULL;
}

static int count_str(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void quiet_log(void *ud, al_log_level lvl, const char *msg) {
    (void)ud;
    if (lvl <= AL_LOG_WARN) fprintf(stderr, "log: %s\n", msg);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls /metrics every 50 ms, for up to 10 s, until it holds text. */
static int metrics_until(const char *text) {
    for (int tries = 0; tries < 200; tries++) {
        resp m = req("GET", "/metrics", NULL);
        int found = m.body && strstr(m.body, text);
        resp_free(&m);
        if (found) return 1;
        sleep_ms(50);
    }
    return 0;
}

static void test_sse(void) {
    /* ftjob-1 holds seq 1 (queued). Add metrics and a sample, then finish. */
    pthread_mutex_lock(&F.mu);
    feed_push("ftjob-1", "metrics", json_pack("{s:i,s:{s:f}}", "step", 1, "metrics", "loss", 2.5));
    feed_push("ftjob-1", "sample", json_pack("{s:i,s:s,s:s}", "step", 1, "prompt", "p", "completion", "c"));
    pthread_mutex_unlock(&F.mu);

    /* live: the stream is open before the job finishes */
    stream_ctx live = {"/v1/fine_tuning/jobs/ftjob-1/events", NULL, 15000, {0}};
    pthread_t th;
    pthread_create(&th, NULL, stream_thread, &live);
    sleep_ms(1600); /* > heartbeat_s = 1: a ping goes out */
    set_status("ftjob-1", "running");
    pthread_mutex_lock(&F.mu);
    feed_push("ftjob-1", "metrics", json_pack("{s:i,s:{s:f}}", "step", 2, "metrics", "loss", 2.0));
    pthread_mutex_unlock(&F.mu);
    sleep_ms(200);
    set_status("ftjob-1", "succeeded");
    pthread_join(th, NULL);
    T_EQ_INT(live.r.status, 200);
    T_TRUE(has_header(&live.r, "Content-Type: text/event-stream"));
    const char *b = live.r.body ? live.r.body : "";
    T_TRUE(strstr(b, "id: 1\nevent: status\ndata: {\"id\":\"ftjob-1\",\"status\":\"queued\"}\n\n") != NULL);
    T_TRUE(strstr(b, "id: 2\nevent: metrics\ndata: {\"step\":1,\"metrics\":{\"loss\":2.5}}\n\n") != NULL);
    T_TRUE(strstr(b, "id: 3\nevent: sample\n") != NULL);
    T_TRUE(strstr(b, "id: 4\nevent: status\n") != NULL);
    T_TRUE(strstr(b, "id: 5\nevent: metrics\n") != NULL);
    T_TRUE(strstr(b, "id: 6\nevent: status\ndata: {\"id\":\"ftjob-1\",\"status\":\"succeeded\"}") != NULL);
    T_TRUE(strstr(b, ": ping\n\n") != NULL);
    T_TRUE(strstr(b, "event: end\ndata: {\"last_event_id\":6}\n\n") != NULL);
    resp_free(&live.r);

    /* resumption: only what follows Last-Event-ID */
    stream_ctx res = {"/v1/fine_tuning/jobs/ftjob-1/events", "4", 10000, {0}};
    stream_thread(&res);
    T_EQ_INT(res.r.status, 200);
    b = res.r.body ? res.r.body : "";
    T_TRUE(strstr(b, "id: 4\n") == NULL);
    T_TRUE(strstr(b, "id: 3\n") == NULL);
    T_TRUE(strstr(b, "id: 5\nevent: metrics\n") != NULL);
    T_TRUE(strstr(b, "id: 6\n") != NULL);
    T_EQ_INT(count_str(b, "\nid: ") + (strncmp(b, "id: ", 4) == 0), 2);
    resp_free(&res.r);
    /* the same through the query */
    stream_ctx q = {"/v1/fine_tuning/jobs/ftjob-1/events?last_event_id=5", NULL, 10000, {0}};
    stream_thread(&q);
    b = q.r.body ? q.r.body : "";
    T_TRUE(strstr(b, "id: 5\n") == NULL);
    T_TRUE(strstr(b, "id: 6\n") != NULL);
    resp_free(&q.r);
    /* up to date: only the end */
    stream_ctx upd = {"/v1/fine_tuning/jobs/ftjob-1/events", "6", 10000, {0}};
    stream_thread(&upd);
    b = upd.r.body ? upd.r.body : "";
    T_TRUE(strstr(b, "id: ") == NULL);
    T_TRUE(strstr(b, "event: end") != NULL);
    resp_free(&upd.r);

    /* errors */
    stream_ctx bad = {"/v1/fine_tuning/jobs/ftjob-1/events", "x1", 5000, {0}};
    stream_thread(&bad);
    T_ERR(bad.r, 400, "invalid_value", "Last-Event-ID");
    resp_free(&bad.r);
    stream_ctx none = {"/v1/fine_tuning/jobs/ftjob-404/events", NULL, 5000, {0}};
    stream_thread(&none);
    T_ERR(none.r, 404, "not_found", "fine_tuning_job_id");
    resp_free(&none.r);

    /* many clients on one live job, then the cap (max_streams = 8) */
    resp jr = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\"}");
    char jid[32];
    snprintf(jid, sizeof jid, "%s", jstr(jr.json, "id"));
    resp_free(&jr);
    char path[96];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events", jid);
    stream_ctx many[8];
    pthread_t ths[8];
    for (int i = 0; i < 8; i++) {
        many[i] = (stream_ctx){path, NULL, 15000, {0}};
        pthread_create(&ths[i], NULL, stream_thread, &many[i]);
    }
    T_TRUE(metrics_until("alignd_sse_streams 8\n"));
    stream_ctx over = {path, NULL, 5000, {0}};
    stream_thread(&over);
    T_ERR(over.r, 429, "too_many_streams", "");
    resp_free(&over.r);
    pthread_mutex_lock(&F.mu);
    feed_push(jid, "event", json_pack("{s:s}", "message", "hello all"));
    pthread_mutex_unlock(&F.mu);
    sleep_ms(100);
    set_status(jid, "failed");
    for (int i = 0; i < 8; i++) {
        pthread_join(ths[i], NULL);
        T_EQ_INT(many[i].r.status, 200);
        T_TRUE(many[i].r.body && strstr(many[i].r.body, "\"message\":\"hello all\""));
        T_TRUE(many[i].r.body && strstr(many[i].r.body, "event: end"));
        resp_free(&many[i].r);
    }
    T_TRUE(metrics_until("alignd_sse_streams 0\n"));

    /* a long history: a new stream replays the last 100 items (or ?replay=N),
     * one that resumes with Last-Event-ID gets everything after it */
    jr = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\"}");
    snprintf(jid, sizeof jid, "%s", jstr(jr.json, "id"));
    resp_free(&jr);
    pthread_mutex_lock(&F.mu);
    for (int i = 0; i < 248; i++) feed_push(jid, "event", json_pack("{s:i}", "n", i));
    pthread_mutex_unlock(&F.mu);
    set_status(jid, "succeeded"); /* seq 250 */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events", jid);
    stream_ctx tail = {path, NULL, 10000, {0}};
    stream_thread(&tail);
    b = tail.r.body ? tail.r.body : "";
    T_EQ_INT(count_str(b, "\nid: ") + (strncmp(b, "id: ", 4) == 0), 100);
    T_TRUE(strstr(b, "id: 151\n") != NULL && strstr(b, "id: 150\n") == NULL);
    T_TRUE(strstr(b, "event: end\ndata: {\"last_event_id\":250}") != NULL);
    resp_free(&tail.r);
    char p2[160];
    snprintf(p2, sizeof p2, "%s?replay=10", path);
    stream_ctx ten = {p2, NULL, 10000, {0}};
    stream_thread(&ten);
    b = ten.r.body ? ten.r.body : "";
    T_EQ_INT(count_str(b, "\nid: ") + (strncmp(b, "id: ", 4) == 0), 10);
    T_TRUE(strstr(b, "id: 241\n") != NULL);
    resp_free(&ten.r);
    stream_ctx all = {path, "0", 10000, {0}};
    stream_thread(&all);
    b = all.r.body ? all.r.body : "";
    T_EQ_INT(count_str(b, "\nid: ") + (strncmp(b, "id: ", 4) == 0), 250);
    resp_free(&all.r);
    snprintf(p2, sizeof p2, "%s?replay=100001", path);
    stream_ctx badr = {p2, NULL, 5000, {0}};
    stream_thread(&badr);
    T_ERR(badr.r, 400, "invalid_value", "replay");
    resp_free(&badr.r);
}

/* ---- Prometheus ------------------------------------------------------------------ */

static void test_prometheus(void) {
    resp r = req("GET", "/metrics", NULL);
    T_EQ_INT(r.status, 200);
    T_TRUE(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    const char *b = r.body ? r.body : "";
    T_TRUE(strstr(b, "# TYPE alignd_jobs gauge\n") != NULL);
    T_TRUE(strstr(b, "alignd_jobs{status=\"queued\"} 2\n") != NULL);
    T_TRUE(strstr(b, "alignd_jobs{status=\"failed\"} 0\n") != NULL);
    T_TRUE(strstr(b, "alignd_queue_depth 2\n") != NULL);
    T_TRUE(strstr(b, "alignd_steps_trained_total 1234\n") != NULL);
    T_TRUE(strstr(b, "alignd_tokens_trained_total 567890\n") != NULL);
    T_TRUE(strstr(b, "alignd_training_model_memory_bytes 4096\n") != NULL);
    T_TRUE(strstr(b, "alignd_inference_model_memory_bytes ") != NULL);
    T_TRUE(strstr(b, "alignd_http_requests_total{method=\"GET\",route=\"/healthz\",code=\"200\"} ") != NULL);
    T_TRUE(strstr(b, "alignd_http_requests_total{method=\"POST\",route=\"/v1/fine_tuning/jobs\",code=\"400\"} ") != NULL);
    T_TRUE(strstr(b, "alignd_http_requests_total{method=\"GET\",route=\"/v1/fine_tuning/jobs/{id}\",code=\"404\"} ") != NULL);
    T_TRUE(strstr(b, "# TYPE alignd_http_request_duration_seconds histogram\n") != NULL);
    T_TRUE(strstr(b, "alignd_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"+Inf\"} ") != NULL);
    T_TRUE(strstr(b, "alignd_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} ") != NULL);
    resp_free(&r);
}

/* ---- draining ------------------------------------------------------------------------ */

static void test_draining(api_server *s) {
    api_server_set_draining(s, 1);
    resp r = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\"}");
    T_ERR(r, 503, "shutting_down", "");
    resp_free(&r);
    const char *h[] = {"Content-Type: application/jsonl", NULL};
    r = req_full("POST", "/v1/files", h, "{\"text\":\"a\"}\n", -1, 0, 0);
    T_EQ_INT(r.status, 503);
    resp_free(&r);
    r = req("GET", "/v1/fine_tuning/jobs", NULL);
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    r = req("GET", "/readyz", NULL);
    T_EQ_INT(r.status, 503);
    resp_free(&r);
    api_server_set_draining(s, 0);
}

/* ---- concurrency ------------------------------------------------------------------------- */

static atomic_int g_failed, g_done;

static void *client_thread(void *arg) {
    long i = (long)arg;
    for (int k = 0; k < 3; k++) {
        resp r;
        if ((i + k) % 3 == 0) r = req("GET", "/v1/fine_tuning/jobs?limit=5", NULL);
        else if ((i + k) % 3 == 1) r = req("GET", "/v1/files/file-1", NULL);
        else r = req("POST", "/v1/jobs/estimate", "{\"model\":\"tiny\"}");
        if (r.status != 200) {
            atomic_fetch_add(&g_failed, 1);
            fprintf(stderr, "client %ld: status %ld\n", i, r.status);
        }
        atomic_fetch_add(&g_done, 1);
        resp_free(&r);
    }
    return NULL;
}

static void test_concurrent(void) {
    enum { N = 200 };
    pthread_t th[N];
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    double t0 = (double)time(NULL);
    for (long i = 0; i < N; i++) pthread_create(&th[i], &at, client_thread, (void *)i);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    pthread_attr_destroy(&at);
    T_EQ_INT(atomic_load(&g_failed), 0);
    T_EQ_INT(atomic_load(&g_done), 3 * N);
    T_TRUE((double)time(NULL) - t0 < 60);
}

/* GET path every 100 ms, for up to 10 s, until the answer has status want;
 * returns the last answer. */
static resp get_until(long want, const char *path) {
    resp r = {0};
    for (int tries = 0; tries < 100; tries++) {
        sleep_ms(100);
        r = req("GET", path, NULL);
        if (r.status == want) break;
        resp_free(&r);
    }
    return r;
}

/* Uploads have their own size cap, and the request bodies held at once are
 * bounded. The server releases a body when it has finished with the request,
 * which can be after the client has its answer: alignd_http_request_body_bytes
 * says when the bodies are held and when they are gone (a stalled upload that
 * arrived before the last one's body was released was itself refused). */
static void test_upload_budget(void) {
    api_server_cfg cfg;
    api_server_cfg_init(&cfg);
    cfg.port = 0;
    cfg.timeout_s = 60; /* the stalled uploads are closed by the test, not timed out */
    cfg.max_upload = 2000;
    cfg.max_body = 100;
    int saved = g_port;
    api_server *s = start(&cfg);
    T_TRUE(metrics_until("alignd_http_request_body_budget_bytes 5600\n")); /* 2 x 2000 + 16 x 100 */
    /* uploads have their own cap: 1900 bytes fit, 2100 do not */
    char up[2200];
    memset(up, ' ', sizeof up);
    memcpy(up, "{\"text\":\"a\"}\n", 13);
    up[sizeof up - 1] = 0;
    const char *uh[] = {"Content-Type: application/jsonl", NULL};
    resp u = req_full("POST", "/v1/files", uh, up, 1900, 0, 0);
    T_EQ_INT(u.status, 200);
    resp_free(&u);
    u = req_full("POST", "/v1/files", uh, up, 2100, 0, 0);
    T_ERR(u, 413, "request_too_large", "");
    resp_free(&u);
    T_TRUE(metrics_until("alignd_http_request_body_bytes 0\n"));
    /* two stalled 2000-byte uploads hold 2 x 2001 bytes, leaving no room for
     * a third */
    int hold[2];
    for (int i = 0; i < 2; i++) {
        hold[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)g_port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        T_OK(connect(hold[i], (struct sockaddr *)&a, sizeof a));
        const char *h = "POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: application/jsonl\r\n"
                        "Content-Length: 2000\r\n\r\n{\"text\":";
        T_TRUE(write(hold[i], h, strlen(h)) > 0);
    }
    T_TRUE(metrics_until("alignd_http_request_body_bytes 4002\n"));
    u = req_full("POST", "/v1/files", uh, up, 1900, 0, 0);
    T_ERR(u, 429, "too_many_uploads", "");
    resp_free(&u);
    for (int i = 0; i < 2; i++) close(hold[i]);
    T_TRUE(metrics_until("alignd_http_request_body_bytes 0\n"));
    u = req_full("POST", "/v1/files", uh, up, 1900, 0, 0);
    T_EQ_INT(u.status, 200);
    resp_free(&u);
    api_server_stop(s);
    g_port = saved;
}

/* Over the connection cap: idle sockets hold connections, the next request
 * gets 429. */
static void test_connection_cap(void) {
    api_server_cfg cfg;
    api_server_cfg_init(&cfg);
    cfg.port = 0;
    cfg.max_connections = 3;
    cfg.timeout_s = 5;
    int saved = g_port;
    api_server *s = start(&cfg);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)g_port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        T_OK(connect(fds[i], (struct sockaddr *)&a, sizeof a));
    }
    /* the server accepts the idle sockets, and later sees them closed, in
     * its own time: ask again until it has */
    resp r = get_until(429, "/v1/fine_tuning/jobs");
    T_ERR(r, 429, "too_many_connections", "");
    resp_free(&r);
    for (int i = 0; i < 3; i++) close(fds[i]);
    r = get_until(200, "/v1/fine_tuning/jobs");
    T_EQ_INT(r.status, 200);
    resp_free(&r);
    /* a slow client that never finishes its request is dropped after timeout_s */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)g_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    T_OK(connect(fd, (struct sockaddr *)&a, sizeof a));
    const char *partial = "POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    T_TRUE(write(fd, partial, strlen(partial)) > 0);
    struct timeval tv = {12, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    time_t t0 = time(NULL);
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    time_t dt = time(NULL) - t0;
    T_TRUE(n <= 0);      /* closed without an answer */
    T_TRUE(dt >= 3 && dt <= 10);
    close(fd);
    api_server_stop(s);
    g_port = saved;
}

/* ---- hostile clients ------------------------------------------------------------------ */

static int raw_connect(const char *src) { return dd_raw_connect(g_port, src); }
static char *raw_read(int fd, int wait_s, int *closed) { return dd_raw_read(fd, wait_s, closed); }

#define RAW(s) dd_raw_request(g_port, s, sizeof(s) - 1, code)

/* Framing a proxy and the server could read differently is refused at the
 * headers, and so is a body the server cannot decode. */
static void test_framing(void) {
    char code[64];
    /* two different lengths: a proxy may take one, the server the other */
    T_EQ_INT(RAW("POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: 15\r\nContent-Length: 5\r\n\r\n{\"model\":\"t\"}\r\n"), 400);
    T_STR_EQ(code, "invalid_framing");
    T_EQ_INT(RAW("POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), 400);
    T_STR_EQ(code, "invalid_framing");
    /* control characters in a header (libmicrohttpd 0.9.75 itself ends a
     * header value at a NUL byte: what follows a NUL never reaches us) */
    T_EQ_INT(RAW("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Note: a\001b\r\n\r\n"), 400);
    T_STR_EQ(code, "invalid_header");
    /* a transfer coding other than chunked: answered at once, not after the idle timeout */
    T_EQ_INT(RAW("POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: gzip\r\n\r\n"), 501);
    T_STR_EQ(code, "unsupported_transfer_encoding");
    T_EQ_INT(RAW("POST /v1/files HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    /* a well-formed request on the same server still works */
    T_EQ_INT(RAW("GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 200);
}

/* A chunked body over the limit is answered 413 as soon as it passes the
 * limit, and a chunk that never comes does not hold the connection until
 * the idle timeout. (This server: max_body 64 KiB, timeout 60 s, header
 * and body-stall deadline 2 s.) */
static void test_chunked_limits(void) {
    int fd = raw_connect(NULL);
    const char *h = "POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n";
    T_TRUE(write(fd, h, strlen(h)) > 0);
    char chunk[8200];
    memset(chunk, ' ', sizeof chunk);
    memcpy(chunk, "2000\r\n", 6);
    memcpy(chunk + 6 + 8192, "\r\n", 2);
    int got = 0;
    size_t sent = 0;
    char buf[4096] = "";
    for (int i = 0; i < 1024 && !got; i++) { /* up to 8 MiB */
        if (write(fd, chunk, 6 + 8192 + 2) <= 0) break;
        sent += 8192;
        ssize_t k = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (k > 0) {
            buf[k] = 0;
            got = 1;
        }
    }
    if (!got) { /* the answer may follow the last write */
        int closed;
        char *b = raw_read(fd, 5, &closed);
        snprintf(buf, sizeof buf, "%s", b);
        free(b);
        got = buf[0] != 0;
    }
    fprintf(stderr, "chunked over the limit: answered after %zu bytes: %.40s\n", sent, buf);
    T_TRUE(got);
    T_TRUE(!strncmp(buf, "HTTP/1.1 413", 12));
    close(fd);
    /* a chunk of 2^64-1 bytes that stalls after 3 */
    fd = raw_connect(NULL);
    const char *huge = "POST /v1/files HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "ffffffffffffffff\r\nabc";
    T_TRUE(write(fd, huge, strlen(huge)) > 0);
    int closed;
    char *b = raw_read(fd, 30, &closed); /* the idle timeout is 60 s */
    T_TRUE(closed);
    free(b);
    close(fd);
}

/* Slow clients: one that trickles header lines is cut at the header
 * deadline even though it is never idle; one address holds at most
 * max_connections_per_ip connections; /healthz answers throughout. */
static void test_slow_clients(void) {
    enum { N = 16 };
    int fds[N], n = 0;
    for (int i = 0; i < N; i++) {
        int fd = raw_connect("127.0.0.2");
        if (fd < 0) continue;
        fds[n++] = fd;
        const char *start = "GET /v1/models HTTP/1.1\r\nHost: x\r\n";
        if (write(fd, start, strlen(start)) < 0) {}
    }
    T_TRUE(n >= 4);
    /* while they trickle, others are served (this server: max_connections 8,
     * 4 per address) */
    int ok_health = 0, ok_models = 0, alive = 0;
    for (int round = 0; round < 6; round++) {
        sleep_ms(500);
        alive = 0;
        for (int i = 0; i < n; i++) {
            if (fds[i] < 0) continue;
            if (send(fds[i], "X-Slow: 1\r\n", 11, MSG_NOSIGNAL) < 0) {
                close(fds[i]);
                fds[i] = -1;
                continue;
            }
            char c;
            ssize_t k = recv(fds[i], &c, 1, MSG_DONTWAIT);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                close(fds[i]);
                fds[i] = -1;
                continue;
            }
            alive++;
        }
        resp r = req("GET", "/healthz", NULL);
        ok_health += r.status == 200;
        resp_free(&r);
        r = req("GET", "/v1/models", NULL);
        ok_models += r.status == 200;
        resp_free(&r);
    }
    T_EQ_INT(ok_health, 6);
    T_EQ_INT(ok_models, 6);
    /* after the deadline (2 s here; 6 rounds of 0.5 s) none is left */
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0) continue;
        int closed;
        char *b = raw_read(fds[i], 10, &closed);
        T_TRUE(closed);
        free(b);
        close(fds[i]);
    }
}

static void test_hostile(void) {
    api_server_cfg cfg;
    api_server_cfg_init(&cfg);
    cfg.port = 0;
    cfg.max_body = 64 * 1024;
    cfg.max_connections = 8;
    cfg.max_connections_per_ip = 4;
    cfg.header_timeout_s = 2;
    cfg.timeout_s = 60;
    int saved = g_port;
    api_server *s = start(&cfg);
    test_framing();
    test_chunked_limits();
    test_slow_clients();
    api_server_stop(s);
    g_port = saved;
}

/* ---- inference ------------------------------------------------------------------------- */

static void make_tiny_model(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd)) exit(1);
    const char *cj = "{\"architectures\":[\"GPT2LMHeadModel\"],\"model_type\":\"gpt2\",\"n_layer\":1,"
                     "\"n_embd\":16,\"n_head\":2,\"vocab_size\":260,\"n_positions\":64,"
                     "\"bos_token_id\":256,\"eos_token_id\":256}";
    al_model_config mc;
    char err[AL_ERRLEN];
    if (al_config_parse(&mc, cj, strlen(cj), err)) { fprintf(stderr, "%s\n", err); exit(1); }
    al_model *m = al_model_new(&mc, NULL, err);
    if (!m) { fprintf(stderr, "%s\n", err); exit(1); }
    al_model_init(m, 7);
    /* make the logits peaked so sampling and greedy both produce text */
    if (al_model_save(m, dir, err)) { fprintf(stderr, "%s\n", err); exit(1); }
    al_model_free(m);
}

static const char *choice_text(const json_t *j, int chat) {
    const json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    return chat ? json_string_value(json_object_get(json_object_get(c, "message"), "content"))
                : json_string_value(json_object_get(c, "text"));
}

static void test_inference(void) {
    const char *body = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":12,\"temperature\":0,\"seed\":1}";
    resp a = req("POST", "/v1/chat/completions", body);
    T_EQ_INT(a.status, 200);
    T_STR_EQ(jstr(a.json, "object"), "chat.completion");
    T_STR_EQ(jstr(a.json, "model"), "tiny");
    T_TRUE(jstr(a.json, "id") && !strncmp(jstr(a.json, "id"), "chatcmpl-", 9));
    const json_t *ch = json_array_get(json_object_get(a.json, "choices"), 0);
    T_STR_EQ(json_string_value(json_object_get(json_object_get(ch, "message"), "role")), "assistant");
    const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
    T_TRUE(fr && (!strcmp(fr, "stop") || !strcmp(fr, "length")));
    const json_t *u = json_object_get(a.json, "usage");
    T_TRUE(jint(u, "prompt_tokens") > 0);
    T_TRUE(jint(u, "completion_tokens") >= 1 && jint(u, "completion_tokens") <= 12);
    T_EQ_INT(jint(u, "total_tokens"), jint(u, "prompt_tokens") + jint(u, "completion_tokens"));
    resp b = req("POST", "/v1/chat/completions", body);
    T_EQ_INT(b.status, 200);
    T_STR_EQ(choice_text(a.json, 1), choice_text(b.json, 1));
    T_TRUE(strcmp(jstr(a.json, "id"), jstr(b.json, "id")) != 0);
    resp_free(&b);

    /* sampling is reproducible from the seed */
    const char *samp = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"max_tokens\":16,\"temperature\":1.5,\"seed\":42}";
    resp s1 = req("POST", "/v1/chat/completions", samp);
    resp s2 = req("POST", "/v1/chat/completions", samp);
    T_EQ_INT(s1.status, 200);
    T_STR_EQ(choice_text(s1.json, 1), choice_text(s2.json, 1));
    resp_free(&s1);
    resp_free(&s2);

    /* streaming: chunks that add up to the same text, then [DONE] */
    char sbody[600];
    snprintf(sbody, sizeof sbody, "%.*s,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             (int)strlen(body) - 1, body);
    resp st = req("POST", "/v1/chat/completions", sbody);
    T_EQ_INT(st.status, 200);
    T_TRUE(has_header(&st, "Content-Type: text/event-stream"));
    const char *sb = st.body ? st.body : "";
    size_t sbl = strlen(sb);
    T_TRUE(sbl > 14 && !strcmp(sb + sbl - 14, "data: [DONE]\n\n"));
    char acc[4096] = "";
    int chunks = 0, role_seen = 0, finish_seen = 0, usage_seen = 0;
    for (const char *p = sb; (p = strstr(p, "data: ")); ) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        if (!e) break;
        if (!strncmp(p, "[DONE]", 6)) break;
        json_t *c = json_loadb(p, (size_t)(e - p), 0, NULL);
        T_TRUE(c != NULL);
        T_STR_EQ(jstr(c, "object"), "chat.completion.chunk");
        json_t *cc = json_array_get(json_object_get(c, "choices"), 0);
        if (cc) {
            json_t *d = json_object_get(cc, "delta");
            if (json_object_get(d, "role")) role_seen++;
            const char *t = json_string_value(json_object_get(d, "content"));
            if (t) strncat(acc, t, sizeof acc - strlen(acc) - 1);
            if (json_is_string(json_object_get(cc, "finish_reason"))) {
                finish_seen++;
                T_STR_EQ(json_string_value(json_object_get(cc, "finish_reason")), fr);
            }
        } else if (json_object_get(c, "usage") && !json_is_null(json_object_get(c, "usage"))) {
            usage_seen++;
            T_EQ_INT(jint(json_object_get(c, "usage"), "completion_tokens"), jint(u, "completion_tokens"));
        }
        chunks++;
        json_decref(c);
        p = e;
    }
    T_STR_EQ(acc, choice_text(a.json, 1));
    T_EQ_INT(role_seen, 1);
    T_EQ_INT(finish_seen, 1);
    T_EQ_INT(usage_seen, 1);
    T_TRUE(chunks >= 3);
    resp_free(&st);

    /* stop strings cut the text */
    const char *full = choice_text(a.json, 1);
    if (full && strlen(full) >= 3) {
        /* the second and third characters (UTF-8 aware) */
        const char *c0 = full + 1;
        while ((*c0 & 0xC0) == 0x80) c0++;
        const char *c1 = c0;
        for (int k = 0; k < 2 && *c1; k++) {
            c1++;
            while ((*c1 & 0xC0) == 0x80) c1++;
        }
        char stop[16];
        snprintf(stop, sizeof stop, "%.*s", (int)(c1 - c0), c0);
        char *cut = strstr(full, stop);
        char sb2[800];
        json_t *sj = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:i,s:i,s:i,s:[s]}", "model", "tiny",
                               "messages", "role", "system", "content", "be brief", "role", "user",
                               "content", "hi", "max_tokens", 12, "temperature", 0, "seed", 1,
                               "stop", stop);
        char *sjs = json_dumps(sj, JSON_COMPACT);
        snprintf(sb2, sizeof sb2, "%s", sjs);
        free(sjs);
        json_decref(sj);
        resp c = req("POST", "/v1/chat/completions", sb2);
        T_EQ_INT(c.status, 200);
        const char *ct = choice_text(c.json, 1);
        T_TRUE(ct && cut && strlen(ct) == (size_t)(cut - full) && !strncmp(ct, full, strlen(ct)));
        T_STR_EQ(json_string_value(json_object_get(json_array_get(json_object_get(c.json, "choices"), 0),
                                                   "finish_reason")), "stop");
        resp_free(&c);
    }
    resp_free(&a);

    /* text completions; a checkpoint name serves too */
    resp t = req("POST", "/v1/completions",
                 "{\"model\":\"ftjob-1:10\",\"prompt\":\"1+1=\",\"max_tokens\":5,\"temperature\":0}");
    T_EQ_INT(t.status, 200);
    T_STR_EQ(jstr(t.json, "object"), "text_completion");
    T_TRUE(choice_text(t.json, 0) != NULL);
    T_TRUE(jint(json_object_get(t.json, "usage"), "prompt_tokens") >= 4);
    resp te = req("POST", "/v1/completions",
                  "{\"model\":\"tiny\",\"prompt\":[\"1+1=\"],\"max_tokens\":5,\"temperature\":0,\"echo\":true}");
    T_EQ_INT(te.status, 200);
    char want[256];
    snprintf(want, sizeof want, "1+1=%s", choice_text(t.json, 0) ? choice_text(t.json, 0) : "");
    T_STR_EQ(choice_text(te.json, 0), want);
    resp_free(&te);
    resp ts = req("POST", "/v1/completions",
                  "{\"model\":\"tiny\",\"prompt\":\"1+1=\",\"max_tokens\":5,\"temperature\":0,\"stream\":true}");
    T_EQ_INT(ts.status, 200);
    T_TRUE(ts.body && strstr(ts.body, "\"object\":\"text_completion\""));
    T_TRUE(ts.body && strstr(ts.body, "data: [DONE]\n\n"));
    resp_free(&ts);
    resp_free(&t);

    /* the context bounds max_tokens: 64 positions */
    resp l = req("POST", "/v1/completions",
                 "{\"model\":\"tiny\",\"prompt\":\"abc\",\"max_tokens\":200,\"temperature\":0}");
    T_EQ_INT(l.status, 200);
    T_TRUE(jint(json_object_get(l.json, "usage"), "total_tokens") <= 64);
    resp_free(&l);
    char longp[200];
    memset(longp, 'x', 100);
    longp[100] = 0;
    char lb[400];
    snprintf(lb, sizeof lb, "{\"model\":\"tiny\",\"prompt\":\"%s\"}", longp);
    l = req("POST", "/v1/completions", lb);
    T_ERR(l, 400, "context_length_exceeded", "prompt");
    resp_free(&l);

    /* errors */
    struct { const char *path, *body; int status; const char *code, *param; } bad[] = {
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "missing_field", "model"},
        {"/v1/chat/completions", "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 404, "model_not_found", "model"},
        {"/v1/chat/completions", "{\"model\":\"tiny\"}", 400, "missing_field", "messages"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[]}", 400, "invalid_value", "messages"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":\"hi\"}", 400, "invalid_type", "messages"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 400, "invalid_value", "messages[0].role"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"content\":\"y\"}]}", 400, "missing_field", "messages[1].role"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "invalid_type", "messages[0].content"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400, "invalid_value", "messages[0].content"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", 400, "invalid_value", "max_tokens"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":100000}", 400, "invalid_value", "max_tokens"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":\"5\"}", 400, "invalid_type", "max_completion_tokens"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}", 400, "invalid_value", "temperature"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":1.5}", 400, "invalid_value", "top_p"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1.5}", 400, "invalid_type", "seed"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":17}", 400, "invalid_value", "n"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "invalid_value", "stop"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",3]}", 400, "invalid_value", "stop[1]"},
        {"/v1/chat/completions", "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", 400, "invalid_type", "stream"},
        {"/v1/completions", "{\"model\":\"tiny\"}", 400, "missing_field", "prompt"},
        {"/v1/completions", "{\"model\":\"tiny\",\"prompt\":[\"a\",\"b\"]}", 400, "invalid_type", "prompt"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp r = req("POST", bad[i].path, bad[i].body);
        T_ERR(r, bad[i].status, bad[i].code, bad[i].param);
        if (r.status != bad[i].status) fprintf(stderr, "  case %zu: %s\n", i, r.body ? r.body : "");
        resp_free(&r);
    }
    /* a loaded model's memory shows in /metrics */
    resp m = req("GET", "/metrics", NULL);
    T_TRUE(m.body && strstr(m.body, "alignd_inference_models_loaded 1\n"));
    T_TRUE(m.body && !strstr(m.body, "alignd_inference_model_memory_bytes 0\n"));
    resp_free(&m);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    al_log_set(quiet_log, NULL);
    const char *tmp = t_tmpdir();
    signal(SIGPIPE, SIG_IGN); /* the hostile tests write to sockets the server closed */
    fake_init(tmp);
    snprintf(F.tiny_dir, sizeof F.tiny_dir, "%s/tiny", tmp);
    make_tiny_model(F.tiny_dir);

    /* models dir: m1 (a model), empty (no config), escape -> outside,
     * m1/inner-escape -> outside; web dir with a symlink leaking a file */
    snprintf(g_models, sizeof g_models, "%s/models", tmp);
    snprintf(g_outside, sizeof g_outside, "%s/outside", tmp);
    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/m1' '%s/empty' '%s/m' '%s/web/css' && echo '{}' > '%s/m1/config.json' && "
             "echo '{}' > '%s/m/config.json' && ln -s '%s/m' '%s/escape' && "
             "ln -s '%s/m' '%s/m1/inner-escape' && echo TOPSECRET > '%s/secret.txt' && "
             "ln -s '%s/secret.txt' '%s/web/leak.txt' && echo TOPSECRET > '%s/web/.hidden'",
             g_models, g_models, g_outside, tmp, g_models, g_outside, g_outside, g_models,
             g_outside, g_models, tmp, tmp, tmp, tmp);
    if (system(cmd)) return 2;
    char p[1200];
    snprintf(p, sizeof p, "%s/web/index.html", tmp);
    write_file(p, "<!doctype html><html><head><title>alignd</title></head><body></body></html>\n");
    snprintf(p, sizeof p, "%s/web/app.js", tmp);
    write_file(p, "console.log('alignd');\n");
    snprintf(p, sizeof p, "%s/web/css/style.css", tmp);
    write_file(p, "body{margin:0}\n");

    api_server_cfg cfg;
    api_server_cfg_init(&cfg);
    cfg.port = 0;
    cfg.max_body = 64 * 1024;
    cfg.max_string = 4096;
    cfg.max_streams = 8;
    cfg.heartbeat_s = 1;
    cfg.max_tokens = 256;
    cfg.max_connections_per_ip = 1024; /* test_concurrent's 200 clients share 127.0.0.1 */
    cfg.models_dir = g_models;
    char web[1100];
    snprintf(web, sizeof web, "%s/web", tmp);
    cfg.web_dir = web;
    api_server *s = start(&cfg);

    test_basics();
    test_methods();
    test_files();
    test_jobs();
    test_limits();
    test_auth();
    test_listen_refusal();
    test_models();
    test_static();
    test_sse();
    test_prometheus();
    test_draining(s);
    test_inference();
    test_concurrent();
    test_upload_budget();
    test_connection_cap();
    test_hostile();

    /* stopping ends open streams promptly */
    resp jr = req("POST", "/v1/fine_tuning/jobs", "{\"model\":\"tiny\"}");
    char open_path[96];
    snprintf(open_path, sizeof open_path, "/v1/fine_tuning/jobs/%s/events", jstr(jr.json, "id"));
    resp_free(&jr);
    stream_ctx open_stream = {open_path, NULL, 20000, {0}};
    pthread_t th;
    pthread_create(&th, NULL, stream_thread, &open_stream);
    T_TRUE(metrics_until("alignd_sse_streams 1\n"));
    double t0 = now_mono();
    api_server_stop(s);
    pthread_join(th, NULL);
    T_TRUE(now_mono() - t0 < 3);
    /* 200, or cut mid-stream (CURLE_PARTIAL_FILE): the client resumes elsewhere */
    T_TRUE(open_stream.r.status == 200 || open_stream.r.status == -CURLE_PARTIAL_FILE);
    T_TRUE(open_stream.r.body && strstr(open_stream.r.body, "event: status"));
    resp_free(&open_stream.r);
    fake_deinit();
    curl_global_cleanup();
    return t_done();
}

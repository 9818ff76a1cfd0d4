/* /v1/models: list, get, register a Hugging Face folder by path (resolved
 * inside the allowed models directory: no "..", no symlink leading out) or a
 * model of the Hugging Face Hub by name ({"hf": "ORG/NAME", "revision"}:
 * 202 while it downloads), its events (the download), delete. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ids.h"
#include "internal.h"
#include "io.h"

int api_path_inside(const char *root, const char *path, const char *param,
                    char out[API_PATH_MAX], api_error *e) {
    size_t n = strlen(path);
    if (n == 0 || n >= 1024)
        return api_error_set(e, 400, "invalid_request_error", "invalid_value", param,
                             "%s: must be a folder path of 1 to 1023 bytes", param);
    /* No ".." component anywhere, even one that would stay inside. */
    const char *p = path;
    while (*p) {
        const char *q = strchr(p, '/');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        if (l == 2 && p[0] == '.' && p[1] == '.')
            return api_error_set(e, 400, "invalid_request_error", "invalid_path", param,
                                 "%s: \"..\" is not allowed in a model path", param);
        if (!q) break;
        p = q + 1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] < 0x20)
            return api_error_set(e, 400, "invalid_request_error", "invalid_path", param,
                                 "%s: control characters are not allowed", param);
    char full[API_PATH_MAX];
    if (path[0] == '/') snprintf(full, sizeof full, "%s", path);
    else snprintf(full, sizeof full, "%s/%s", root, path);
    char real[PATH_MAX];
    int rc = al_path_resolve_below(root, full, real);
    if (rc == AL_ENOENT || rc == -ENOTDIR)
        return api_error_set(e, 404, "invalid_request_error", "not_found", param,
                             "%s: no such folder in the models directory", param);
    if (rc == AL_ERANGE)
        return api_error_set(e, 400, "invalid_request_error", "path_outside_models_dir", param,
                             "%s: resolves outside the models directory", param);
    if (rc)
        return api_error_set(e, 400, "invalid_request_error", "invalid_path", param,
                             "%s: cannot be resolved (%s)", param, strerror(-rc));
    if (strlen(real) >= API_PATH_MAX)
        return api_error_set(e, 400, "invalid_request_error", "invalid_path", param,
                             "%s: too long", param);
    snprintf(out, API_PATH_MAX, "%s", real);
    return 0;
}

static int file_exists(const char *dir, const char *name) {
    char p[API_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return al_file_is_regular(p);
}

/* {"hf": "ORG/NAME", "revision": "main", "name": optional}. */
static enum MHD_Result post_hub(api_req *r, const json_t *body) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    const json_t *hf = json_object_get(body, "hf"), *rev = json_object_get(body, "revision"),
                 *name = json_object_get(body, "name");
    if (json_object_get(body, "path"))
        return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "path",
                               "path: give either path (a folder) or hf (a Hub model), not both");
    if (!json_is_string(hf) || !json_string_length(hf))
        return api_reply_error(r, 400, "invalid_request_error", "invalid_type", "hf",
                               "hf: must be a Hugging Face model id, ORG/NAME");
    if (rev && !json_is_null(rev) && (!json_is_string(rev) || !json_string_length(rev)))
        return api_reply_error(r, 400, "invalid_request_error", "invalid_type", "revision",
                               "revision: must be a branch, tag or commit");
    if (name && !json_is_null(name) && (!json_is_string(name) || !json_string_length(name)))
        return api_reply_error(r, 400, "invalid_request_error", "invalid_type", "name", "name: must be a string");
    if (!s->be.model_register_hub)
        return api_reply_error(r, 403, "permission_error", "downloads_disabled", "hf",
                               "hf: this server does not register Hub models");
    json_t *out = NULL;
    int accepted = 0;
    int rc = s->be.model_register_hub(s->be.ud, json_string_value(hf), json_string_value(rev),
                                      json_string_value(name), &out, &accepted, &e);
    if (rc) return api_reply_err(r, &e);
    return api_reply_json(r, accepted ? 202 : 200, out);
}

enum MHD_Result api_h_models_post(api_req *r) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    if (r->len && strstr(r->body, "\"hf\"")) {
        json_t *body = NULL;
        if (api_body_object(r, &body, &e)) return api_reply_err(r, &e);
        enum MHD_Result res = json_object_get(body, "hf") ? post_hub(r, body) : MHD_NO;
        if (res != MHD_NO || json_object_get(body, "hf")) {
            json_decref(body);
            return res;
        }
        json_decref(body);
    }
    if (!s->cfg.models_dir)
        return api_reply_error(r, 403, "permission_error", "registration_disabled", "path",
                               "path: this server has no models directory, so models cannot "
                               "be registered by path");
    json_t *body = NULL;
    if (api_body_object(r, &body, &e)) return api_reply_err(r, &e);
    const json_t *jp = json_object_get(body, "path");
    const json_t *jn = json_object_get(body, "name");
    enum MHD_Result res;
    if (!jp) {
        res = api_reply_error(r, 400, "invalid_request_error", "missing_field", "path",
                              "path: missing; give the model folder, relative to the models "
                              "directory");
        goto out;
    }
    if (!json_is_string(jp)) {
        res = api_reply_error(r, 400, "invalid_request_error", "invalid_type", "path",
                              "path: must be a string");
        goto out;
    }
    if (jn && !json_is_null(jn) && !json_is_string(jn)) {
        res = api_reply_error(r, 400, "invalid_request_error", "invalid_type", "name",
                              "name: must be a string");
        goto out;
    }
    char real[API_PATH_MAX];
    if (api_path_inside(s->cfg.models_dir, json_string_value(jp), "path", real, &e)) {
        res = api_reply_err(r, &e);
        goto out;
    }
    struct stat st;
    if (stat(real, &st) || !S_ISDIR(st.st_mode) ||
        (!file_exists(real, "config.json") && !file_exists(real, "adapter_config.json"))) {
        res = api_reply_error(r, 422, "invalid_request_error", "invalid_model", "path",
                              "path: not a Hugging Face model folder (no config.json or "
                              "adapter_config.json)");
        goto out;
    }
    char name[API_PATH_MAX];
    if (jn && json_is_string(jn)) {
        snprintf(name, sizeof name, "%s", json_string_value(jn));
        if (!api_model_name_ok(json_string_value(jn))) {
            res = api_reply_error(r, 400, "invalid_request_error", "invalid_value", "name",
                                  "name: 1 to 64 characters of letters, digits, '.', '_' and "
                                  "'-', not starting with '.', '-' or \"ftjob-\"");
            goto out;
        }
    } else {
        const char *b = strrchr(real, '/');
        snprintf(name, sizeof name, "%s", b ? b + 1 : real);
        if (!api_model_name_ok(name)) {
            res = api_reply_error(r, 400, "invalid_request_error", "invalid_value", "name",
                                  "name: the folder name cannot be a model name; give one");
            goto out;
        }
    }
    json_t *o = NULL;
    int rc = s->be.model_register(s->be.ud, name, real, &o, &e);
    res = api_reply_be(r, rc, o, &e);
out:
    json_decref(body);
    return res;
}

static enum MHD_Result no_such_model(api_req *r) {
    return api_reply_error(r, 404, "invalid_request_error", "model_not_found", "model",
                           "the model %.200s does not exist", r->id);
}

enum MHD_Result api_h_models_list(api_req *r) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    api_page pg;
    if (api_query_page(r, &pg, &e)) return api_reply_err(r, &e);
    json_t *out = NULL;
    int rc = s->be.model_list(s->be.ud, &pg, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_models_get(api_req *r) {
    api_server *s = r->srv;
    if (!api_model_id_ok(r->id)) return no_such_model(r);
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *out = NULL;
    int rc = s->be.model_get(s->be.ud, r->id, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_models_delete(api_req *r) {
    api_server *s = r->srv;
    if (!api_model_id_ok(r->id)) return no_such_model(r);
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *out = NULL;
    int rc = s->be.model_delete(s->be.ud, r->id, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_models_events(api_req *r) {
    api_server *s = r->srv;
    if (!api_model_id_ok(r->id)) return no_such_model(r);
    if (!s->be.model_events) return no_such_model(r);
    if (api_wants_stream(r)) return api_sse_model(r);
    api_error e;
    memset(&e, 0, sizeof e);
    api_page pg;
    const char *after = api_query(r, "after");
    long limit;
    if (api_query_long(r, "limit", 1, 100, 20, &limit, &e)) return api_reply_err(r, &e);
    pg.after = after && api_id_ok(after) ? after : NULL;
    pg.limit = (int)limit;
    json_t *out = NULL;
    int rc = s->be.model_events(s->be.ud, r->id, &pg, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

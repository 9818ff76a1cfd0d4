/* /v1/files: uploads (multipart/form-data as OpenAI's client sends them, or
 * a raw JSONL body), listing, one file, its content, deletion. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"

static const char *const purposes[] = {"fine-tune", "evals"};

static int purpose_ok(const char *p) {
    for (size_t i = 0; i < sizeof purposes / sizeof purposes[0]; i++)
        if (!strcmp(p, purposes[i])) return 1;
    return 0;
}

/* The last path component of a client-supplied name, bytes that are not
 * UTF-8 replaced by '?' (the file object keeps a readable name); 0 when it
 * is unusable. */
static int clean_filename(const char *in, size_t n, char out[256]) {
    const char *b = in;
    for (size_t i = 0; i < n; i++)
        if (in[i] == '/' || in[i] == '\\') b = in + i + 1;
    size_t bl = n - (size_t)(b - in);
    if (bl == 0 || bl > 255) return 0;
    for (size_t i = 0; i < bl; i++)
        if ((unsigned char)b[i] < 0x20 || b[i] == 0x7f) return 0;
    if ((bl == 1 && b[0] == '.') || (bl == 2 && b[0] == '.' && b[1] == '.')) return 0;
    memcpy(out, b, bl);
    out[bl] = 0;
    api_utf8_fix(out);
    return 1;
}

enum MHD_Result api_h_files_post(api_req *r) {
    api_server *s = r->srv;
    api_error e;
    const char *ct = api_header(r, "Content-Type");
    const char *data = r->body;
    size_t len = r->len;
    char filename[256] = "upload.jsonl";
    char purpose[64] = "fine-tune";
    const char *dinfo = NULL; /* dataset_info: JSON text */
    size_t dinfo_len = 0;
    if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0) {
        api_part parts[8];
        int n = 0;
        if (api_multipart_parse(ct, r->body ? r->body : "", r->len, parts, 8, &n, &e))
            return api_reply_err(r, &e);
        const api_part *file = NULL, *purp = NULL;
        for (int i = 0; i < n; i++) {
            if (!strcmp(parts[i].name, "file") && !file) file = &parts[i];
            else if (!strcmp(parts[i].name, "purpose") && !purp) purp = &parts[i];
            else if (!strcmp(parts[i].name, "dataset_info") && !dinfo) {
                dinfo = parts[i].data;
                dinfo_len = parts[i].len;
            }
        }
        if (!file)
            return api_reply_error(r, 400, "invalid_request_error", "missing_field", "file",
                                   "file: missing; send the JSONL as the form field \"file\"");
        if (!purp)
            return api_reply_error(r, 400, "invalid_request_error", "missing_field", "purpose",
                                   "purpose: missing; use \"fine-tune\" (or \"evals\": a benchmark file)");
        if (purp->len >= sizeof purpose)
            return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "purpose",
                                   "purpose: must be \"fine-tune\" or \"evals\"");
        memcpy(purpose, purp->data, purp->len);
        purpose[purp->len] = 0;
        if (file->filename[0] &&
            !clean_filename(file->filename, strlen(file->filename), filename))
            return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "file",
                                   "file: the file name is empty, too long or has control "
                                   "characters");
        data = file->data;
        len = file->len;
    } else {
        const char *q = api_query(r, "purpose");
        if (q) {
            if (strlen(q) >= sizeof purpose)
                return api_reply_error(r, 400, "invalid_request_error", "invalid_value",
                                       "purpose", "purpose: must be \"fine-tune\" or \"evals\"");
            snprintf(purpose, sizeof purpose, "%s", q);
        }
        const char *fn = api_query(r, "filename");
        if (fn && !clean_filename(fn, strlen(fn), filename))
            return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "filename",
                                   "filename: empty, too long or has control characters");
        if ((dinfo = api_query(r, "dataset_info"))) dinfo_len = strlen(dinfo);
    }
    json_t *di = NULL;
    if (dinfo) {
        json_error_t je;
        di = json_loadb(dinfo, dinfo_len, 0, &je);
        if (!json_is_object(di)) {
            json_decref(di);
            return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "dataset_info",
                                   "dataset_info: must be a JSON object {\"formatting\": \"sharegpt\", \"columns\", "
                                   "\"tags\"} (LLaMA-Factory's dataset_info entry)");
        }
    }
    if (!purpose_ok(purpose)) {
        json_decref(di);
        return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "purpose",
                               "purpose: must be \"fine-tune\" or \"evals\"");
    }
    if (!data || len == 0) {
        json_decref(di);
        return api_reply_error(r, 400, "invalid_request_error", "empty_file", "file",
                               "file: the upload is empty");
    }
    json_t *out = NULL;
    memset(&e, 0, sizeof e);
    int rc = s->be.file_create(s->be.ud, filename, purpose, di, data, len, &out, &e);
    json_decref(di);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_files_list(api_req *r) {
    api_server *s = r->srv;
    api_error e;
    memset(&e, 0, sizeof e);
    api_page pg;
    if (api_query_page(r, &pg, &e)) return api_reply_err(r, &e);
    const char *purpose = api_query(r, "purpose");
    if (purpose && !purpose_ok(purpose))
        return api_reply_error(r, 400, "invalid_request_error", "invalid_value", "purpose",
                               "purpose: must be \"fine-tune\" or \"evals\"");
    json_t *out = NULL;
    int rc = s->be.file_list(s->be.ud, &pg, purpose, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

static enum MHD_Result no_such_file(api_req *r) {
    return api_reply_error(r, 404, "invalid_request_error", "not_found", "file_id",
                           "no such file: %.200s", r->id);
}

enum MHD_Result api_h_files_get(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_file(r);
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *out = NULL;
    int rc = s->be.file_get(s->be.ud, r->id, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_files_delete(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_file(r);
    if (!s->be.file_delete)
        return api_reply_error(r, 405, "invalid_request_error", "method_not_allowed", "",
                               "files cannot be deleted on this server");
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *out = NULL;
    int rc = s->be.file_delete(s->be.ud, r->id, &out, &e);
    return api_reply_be(r, rc, out, &e);
}

enum MHD_Result api_h_files_content(api_req *r) {
    api_server *s = r->srv;
    if (!api_id_ok(r->id)) return no_such_file(r);
    api_error e;
    memset(&e, 0, sizeof e);
    char path[API_PATH_MAX];
    if (!s->be.file_path || s->be.file_path(s->be.ud, r->id, path, &e))
        return s->be.file_path ? api_reply_err(r, &e) : no_such_file(r);
    int fd;
    struct stat st;
    if (al_file_open_regular(path, &fd, &st, NULL)) {
        return api_reply_error(r, 500, "server_error", "file_missing", "",
                               "the stored bytes of %.200s cannot be read", r->id);
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/jsonl");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return api_queue(r, 200, resp);
}

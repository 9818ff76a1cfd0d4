/* The dashboard's static files from web_dir: "/" is index.html, a path
 * without an extension that names no file is index.html too (client-side
 * routes), every file is revalidated by ETag (Cache-Control: no-cache) and
 * HTML goes out with a strict Content-Security-Policy: no inline script or
 * style, no other origins, no framing.
 *
 * Paths are resolved inside web_dir: no "." or ".." segments, no hidden
 * files, no symlink leading out. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"

#define API_CSP                                                                     \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "     \
    "form-action 'self'; frame-ancestors 'none'"

static const struct {
    const char *ext, *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
};

static const char *content_type(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (!strcasecmp(dot + 1, types[i].ext)) return types[i].type;
    return "application/octet-stream";
}

static enum MHD_Result not_found(api_req *r) {
    return api_reply_error(r, 404, "invalid_request_error", "not_found", "",
                           "no such page");
}

/* Whether the URL path is acceptable: segments that are not empty, ".",
 * ".." or hidden, and no backslash. */
static int path_ok(const char *p) {
    if (p[0] != '/') return 0;
    if (strchr(p, '\\')) return 0;
    const char *s = p + 1;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if (l == 0 || s[0] == '.') return 0;
        for (size_t i = 0; i < l; i++)
            if ((unsigned char)s[i] < 0x20) return 0;
        if (!e) break;
        s = e + 1;
    }
    return 1;
}

/* Opens web_dir/rel as a regular file inside web_dir (a folder: its
 * index.html); -1 when there is none. */
static int open_inside(const char *root, const char *rel, char real[PATH_MAX],
                       struct stat *st) {
    char full[API_PATH_MAX + 1100];
    snprintf(full, sizeof full, "%s/%s", root, rel);
    if (al_path_resolve_below(root, full, real) || stat(real, st)) return -1;
    if (S_ISDIR(st->st_mode)) {
        char idx[PATH_MAX + 16];
        snprintf(idx, sizeof idx, "%s/index.html", real);
        if (al_path_resolve_below(root, idx, real)) return -1;
    }
    int fd;
    return al_file_open_regular(real, &fd, st, NULL) ? -1 : fd;
}

enum MHD_Result api_h_static(api_req *r) {
    api_server *s = r->srv;
    const char *path = r->path;
    if (!s->cfg.web_dir || !path_ok(path)) return not_found(r);
    char real[PATH_MAX];
    struct stat st;
    const char *rel = path[1] ? path + 1 : "index.html";
    int fd = open_inside(s->cfg.web_dir, rel, real, &st);
    if (fd < 0) {
        const char *last = strrchr(path, '/');
        if (strchr(last ? last : path, '.')) return not_found(r);
        fd = open_inside(s->cfg.web_dir, "index.html", real, &st);
        if (fd < 0) return not_found(r);
    }
    char etag[96];
    snprintf(etag, sizeof etag, "\"%llx-%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec, (unsigned long long)st.st_mtim.tv_nsec);
    const char *inm = api_header(r, "If-None-Match");
    const char *ctype = content_type(real);
    int html = !strncmp(ctype, "text/html", 9);
    struct MHD_Response *resp;
    int status = 200;
    if (inm && strstr(inm, etag)) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = 304;
    } else {
        resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
        if (!resp) close(fd);
    }
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "Content-Security-Policy", API_CSP);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
    if (html) MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
    return api_queue(r, status, resp);
}

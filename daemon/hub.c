/* The Hugging Face Hub client (see hub.h for the protocol it speaks).
 *
 * libcurl does the HTTP (one easy handle per request; redirects are never
 * followed blindly: a relative one is the Hub's own rename and is followed
 * with the token, an absolute one is the CDN and is fetched without it when
 * its host differs). libcrypto hashes the blobs. Everything the server says
 * is checked before it names a path: file names are relative paths without
 * "..", ETags and commits are plain hex-like tokens. */
#define _GNU_SOURCE /* strcasestr */
#include "hub.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "io.h"

#define API_MAX_BODY ((size_t)64 << 20)
#define URL_MAX 4608 /* endpoint (1024) + repo + commit + an encoded path (3200) */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

const char *hub_strerror(int rc) {
    switch (rc) {
    case HUB_OK: return "ok";
    case HUB_EINVAL: return "invalid_value";
    case HUB_ENOTFOUND: return "not_found";
    case HUB_EGATED: return "gated";
    case HUB_EOFFLINE: return "offline";
    case HUB_ENET: return "network_error";
    case HUB_EPROTO: return "bad_response";
    case HUB_ECHECKSUM: return "checksum_mismatch";
    case HUB_EIO: return "cache_error";
    case HUB_ECANCELED: return "cancelled";
    case HUB_ENOWEIGHTS: return "no_safetensors";
    default: return "error";
    }
}

static int env_true(const char *name) {
    const char *v = getenv(name);
    if (!v) return 0;
    return !strcasecmp(v, "1") || !strcasecmp(v, "ON") || !strcasecmp(v, "YES") || !strcasecmp(v, "TRUE");
}

int hub_env_offline(void) { return env_true("HF_HUB_OFFLINE") || env_true("TRANSFORMERS_OFFLINE"); }

/* ---- one pull's state ----------------------------------------------------------- */

typedef struct pull {
    const hub_opts *o;
    char endpoint[1024];
    char auth[1100];            /* "Authorization: Bearer ..." or "" */
    char repo[AL_HF_REPO_MAX];
    char rev[AL_HF_REV_MAX];
    char cache[2048];
    char base[2400];            /* <cache>/models--org--name */
    char commit[41];
    hub_progress pr;
    double last_report;
    int64_t downloaded;
    char *err;                  /* AL_ERRLEN bytes */
} pull;

static int fail(pull *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(pull *p, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, AL_ERRLEN, fmt, ap);
    va_end(ap);
    return rc;
}

static int canceled(const pull *p) { return p->o->cancel && atomic_load(p->o->cancel); }

static void report(pull *p, int force) {
    if (!p->o->progress) return;
    double t = al_now();
    if (!force && t - p->last_report < 0.1) return;
    p->last_report = t;
    p->o->progress(p->o->ud, &p->pr);
}

/* ---- HTTP ------------------------------------------------------------------------- */

typedef struct http_resp {
    long status;
    char commit[64];            /* X-Repo-Commit */
    char linked_etag[160];      /* X-Linked-Etag */
    char etag[160];             /* ETag */
    int64_t linked_size;        /* X-Linked-Size, -1 */
    int64_t content_length;     /* -1 */
    char location[URL_MAX - 600];
    char content_range[128];
    char error_code[64];        /* X-Error-Code */
    char error_message[256];    /* X-Error-Message */
    al_buf body;
    size_t cap_limit;
    int too_big;
} http_resp;

static void resp_reset_headers(http_resp *r) {
    r->commit[0] = r->linked_etag[0] = r->etag[0] = r->location[0] = r->content_range[0] = 0;
    r->error_code[0] = r->error_message[0] = 0;
    r->linked_size = r->content_length = -1;
}

static void hval(char *dst, size_t n, const char *v, size_t vl) {
    while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    if (vl >= n) vl = n - 1;
    memcpy(dst, v, vl);
    dst[vl] = 0;
}

static int64_t parse_i64(const char *s) {
    if (!*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) return -1;
    return (int64_t)v;
}

static size_t on_header(char *b, size_t sz, size_t nm, void *ud) {
    http_resp *r = ud;
    size_t n = sz * nm;
    if (n >= 5 && !strncmp(b, "HTTP/", 5)) { /* a new response (after 100 Continue, a proxy) */
        resp_reset_headers(r);
        const char *sp = memchr(b, ' ', n);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    const char *colon = memchr(b, ':', n);
    if (!colon) return n;
    size_t kl = (size_t)(colon - b);
    const char *v = colon + 1;
    while (v < b + n && (*v == ' ' || *v == '\t')) v++;
    size_t vl = (size_t)(b + n - v);
    char tmp[64];
#define IS(name) (kl == strlen(name) && !strncasecmp(b, name, kl))
    if (IS("X-Repo-Commit")) hval(r->commit, sizeof r->commit, v, vl);
    else if (IS("X-Linked-Etag")) hval(r->linked_etag, sizeof r->linked_etag, v, vl);
    else if (IS("ETag")) hval(r->etag, sizeof r->etag, v, vl);
    else if (IS("Location")) hval(r->location, sizeof r->location, v, vl);
    else if (IS("Content-Range")) hval(r->content_range, sizeof r->content_range, v, vl);
    else if (IS("X-Error-Code")) hval(r->error_code, sizeof r->error_code, v, vl);
    else if (IS("X-Error-Message")) hval(r->error_message, sizeof r->error_message, v, vl);
    else if (IS("X-Linked-Size")) {
        hval(tmp, sizeof tmp, v, vl);
        r->linked_size = parse_i64(tmp);
    } else if (IS("Content-Length")) {
        hval(tmp, sizeof tmp, v, vl);
        r->content_length = parse_i64(tmp);
    }
#undef IS
    return n;
}

static size_t on_body(char *b, size_t sz, size_t nm, void *ud) {
    http_resp *r = ud;
    size_t n = sz * nm;
    if (r->body.n + n > r->cap_limit) {
        r->too_big = 1;
        return 0;
    }
    return al_buf_put(&r->body, b, n) ? 0 : n;
}

static CURL *easy(const char *url, struct curl_slist *hl) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    /* a stalled transfer (under 1 byte/s for 60 s) is a broken connection */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "alignd/1 (huggingface_hub protocol; libcurl)");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    return c;
}

static struct curl_slist *headers(const char *auth, const char *extra) {
    struct curl_slist *hl = NULL;
    if (auth && *auth) hl = curl_slist_append(hl, auth);
    if (extra) hl = curl_slist_append(hl, extra);
    return curl_slist_append(hl, "Accept-Encoding: identity");
}

static int transient(CURLcode rc) {
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_GOT_NOTHING || rc == CURLE_COULDNT_CONNECT ||
           rc == CURLE_HTTP2_STREAM || rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_COULDNT_RESOLVE_HOST;
}

/* One request's set-up, as every call to the Hub makes it: the handle on
 * url with the headers (auth when given, extra) in *hl, its response headers
 * reset and read into hr, curl's own error text into ebuf. HUB_EIO when
 * memory runs out (nothing left to free). */
static int request(pull *p, const char *url, const char *auth, const char *extra, http_resp *hr,
                   char ebuf[CURL_ERROR_SIZE], CURL **c, struct curl_slist **hl) {
    resp_reset_headers(hr);
    *hl = headers(auth, extra);
    if (!(*c = easy(url, *hl))) {
        curl_slist_free_all(*hl);
        return fail(p, HUB_EIO, "out of memory");
    }
    ebuf[0] = 0;
    curl_easy_setopt(*c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(*c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(*c, CURLOPT_HEADERDATA, hr);
    return HUB_OK;
}

/* Runs the request, then frees it. */
static CURLcode perform(CURL *c, struct curl_slist *hl) {
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    return rc;
}

/* An HTTP error status as the Hub means it (hf_raise_for_status). */
static int status_error(pull *p, const http_resp *r, const char *what) {
    const char *code = r->error_code, *msg = r->error_message;
    char srv[300] = "";
    if (*msg) snprintf(srv, sizeof srv, " (the Hub says: %.240s)", msg);
    if (!strcmp(code, "GatedRepo") || ((r->status == 401 || r->status == 403) && strcasestr(msg, "gated")))
        return fail(p, HUB_EGATED,
                    "%s is a gated model: accept its terms at %s/%s while logged in, then set HF_TOKEN to an "
                    "access token of that account (%s: HTTP %ld)%s",
                    p->repo, p->endpoint, p->repo, what, r->status, srv);
    if (!strcmp(code, "RevisionNotFound"))
        return fail(p, HUB_ENOTFOUND, "%s has no revision '%s' (a branch, tag or commit)%s", p->repo, p->rev, srv);
    if (!strcmp(code, "EntryNotFound"))
        return fail(p, HUB_ENOTFOUND, "%s: %s is not in the repository%s", p->repo, what, srv);
    if (r->status == 401 || r->status == 403 || !strcmp(code, "RepoNotFound") || r->status == 404)
        return fail(p, r->status == 404 || !strcmp(code, "RepoNotFound") ? HUB_ENOTFOUND : HUB_EGATED,
                    "%s: repository not found, or private or gated and %s (%s: HTTP %ld)%s", p->repo,
                    p->auth[0] ? "the token in HF_TOKEN has no access to it" : "no token was given (set HF_TOKEN)",
                    what, r->status, srv);
    return fail(p, HUB_ENET, "%s: %s: the Hub answered HTTP %ld%s", p->repo, what, r->status, srv);
}

static int curl_error(pull *p, CURLcode rc, const char *url, const char *ebuf) {
    return fail(p, HUB_ENET, "%s: cannot reach %.300s: %s%s%.200s", p->repo, url, curl_easy_strerror(rc),
                *ebuf ? ": " : "", ebuf);
}

/* GET url into r (body capped). */
static int http_get_json(pull *p, const char *url, http_resp *r) {
    memset(r, 0, sizeof *r);
    r->cap_limit = API_MAX_BODY;
    CURL *c;
    struct curl_slist *hl;
    char ebuf[CURL_ERROR_SIZE];
    int out = request(p, url, p->auth, "Accept: application/json", r, ebuf, &c, &hl);
    if (out) return out;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    CURLcode rc = perform(c, hl);
    if (r->too_big) return fail(p, HUB_EPROTO, "%s: the Hub's answer to %.300s exceeds %zu bytes", p->repo, url,
                                API_MAX_BODY);
    return rc != CURLE_OK ? curl_error(p, rc, url, ebuf) : HUB_OK;
}

/* HEAD url; relative redirects (a renamed repository) are followed with the
 * token, up to 5. On return *final_url is where the last HEAD went. */
static int http_head(pull *p, const char *url, http_resp *r, char final_url[URL_MAX], const char *what) {
    snprintf(final_url, URL_MAX, "%s", url);
    for (int hop = 0; hop <= 5; hop++) {
        memset(r, 0, sizeof *r);
        CURL *c;
        struct curl_slist *hl;
        char ebuf[CURL_ERROR_SIZE];
        int out = request(p, final_url, p->auth, NULL, r, ebuf, &c, &hl);
        if (out) return out;
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
        CURLcode rc = perform(c, hl);
        if (rc != CURLE_OK) return curl_error(p, rc, final_url, ebuf);
        if (r->status >= 300 && r->status < 400 && r->location[0] == '/' && r->location[1] != '/') {
            /* relative: same origin */
            CURLU *u = curl_url();
            char *next = NULL;
            if (!u || curl_url_set(u, CURLUPART_URL, final_url, 0) ||
                curl_url_set(u, CURLUPART_URL, r->location, 0) || curl_url_get(u, CURLUPART_URL, &next, 0)) {
                curl_url_cleanup(u);
                return fail(p, HUB_EPROTO, "%s: %s: unusable redirect '%.200s'", p->repo, what, r->location);
            }
            snprintf(final_url, URL_MAX, "%s", next);
            curl_free(next);
            curl_url_cleanup(u);
            continue;
        }
        if (r->status >= 400) return status_error(p, r, what);
        return HUB_OK;
    }
    return fail(p, HUB_EPROTO, "%s: %s: too many redirects", p->repo, what);
}

/* scheme://host:port of url into out; -1 when it is not an http(s) URL. */
static int origin(const char *url, char out[600]) {
    CURLU *u = curl_url();
    char *sch = NULL, *host = NULL, *port = NULL;
    int rc = -1;
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) && !curl_url_get(u, CURLUPART_SCHEME, &sch, 0) &&
        !curl_url_get(u, CURLUPART_HOST, &host, 0) &&
        !curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) &&
        (!strcmp(sch, "http") || !strcmp(sch, "https"))) {
        snprintf(out, 600, "%s://%s:%s", sch, host, port);
        rc = 0;
    }
    curl_free(sch);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

/* ---- names from the server ---------------------------------------------------------- */

/* A sibling's path: relative, no empty, "." or ".." component, no
 * backslash or control character, at most 1000 bytes. */
static int rfilename_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 1000 || s[0] == '/') return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '\\' || s[i] == 0x7f) return 0;
    return al_path_rel_ok(s);
}

/* huggingface_hub's _normalize_etag: W/"x" or "x" -> x; then it must be a
 * plain token usable as a file name. */
static int etag_norm(const char *in, char out[160]) {
    const char *s = in;
    if (s[0] == 'W' && s[1] == '/') s += 2;
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    if (n == 0 || n > 128 || s[0] == '.') return -1;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') return -1;
    memcpy(out, s, n);
    out[n] = 0;
    return 0;
}

static int hex_ok(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

/* ---- files ------------------------------------------------------------------------------ */

typedef struct sel_file {
    char name[1024];
    int64_t size;               /* -1 unknown */
    char sha256[65];            /* LFS, "" */
    char blob_id[41];           /* git blob sha1, "" */
} sel_file;

/* Hashes path: SHA-256 (git = 0) or the git blob SHA-1 ("blob <n>\0" + bytes). */
static int hash_file(const char *path, int git, char hex[65]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = -1;
    if (ctx && !fstat(fd, &st) && EVP_DigestInit_ex(ctx, git ? EVP_sha1() : EVP_sha256(), NULL)) {
        int ok = 1;
        if (git) {
            char h[48];
            int hl = snprintf(h, sizeof h, "blob %lld", (long long)st.st_size);
            ok = EVP_DigestUpdate(ctx, h, (size_t)hl + 1);
        }
        unsigned char *buf = malloc(1 << 16);
        ssize_t k = -1;
        while (ok && buf && (k = read(fd, buf, 1 << 16)) > 0) ok = EVP_DigestUpdate(ctx, buf, (size_t)k);
        free(buf);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        if (ok && k == 0 && EVP_DigestFinal_ex(ctx, md, &ml)) {
            for (unsigned i = 0; i < ml; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
            rc = 0;
        }
    }
    EVP_MD_CTX_free(ctx);
    close(fd);
    return rc;
}

static int fsync_dir(const char *path) {
    char d[HUB_PATH + 512];
    snprintf(d, sizeof d, "%s", path);
    char *s = strrchr(d, '/');
    if (s) *s = 0;
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int mkdirs_for(pull *p, const char *file) {
    char d[HUB_PATH + 512], e2[AL_ERRLEN];
    snprintf(d, sizeof d, "%s", file);
    char *s = strrchr(d, '/');
    if (!s) return HUB_OK;
    *s = 0;
    if (al_mkdir_p(d, e2)) return fail(p, HUB_EIO, "cannot create %.300s: %.150s", d, e2);
    return HUB_OK;
}

/* The blob download: GET url into fd from *have bytes on. */
typedef struct dl {
    pull *p;
    http_resp hr;
    int fd;
    int64_t have, expected, start;
    int decided, bad;           /* headers judged; bad: abort reason set */
    int rc;
} dl;

/* Called by libcurl about once a second, also while no byte arrives: a
 * stop cancels a stalled transfer at once, not when its low-speed limit
 * ends it. */
static int dl_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    dl *d = ud;
    (void)dt, (void)dn, (void)ut, (void)un;
    if (d->rc || !canceled(d->p)) return 0;
    d->rc = fail(d->p, HUB_ECANCELED, "%s: the download was cancelled", d->p->repo);
    return 1;
}

static size_t dl_write(char *b, size_t sz, size_t nm, void *ud) {
    dl *d = ud;
    size_t n = sz * nm;
    if (!d->decided) {
        d->decided = 1;
        if (d->hr.status == 200 && d->have > 0) {
            /* the server ignored Range: start over */
            if (ftruncate(d->fd, 0) || lseek(d->fd, 0, SEEK_SET) < 0) {
                d->rc = fail(d->p, HUB_EIO, "cannot truncate a partial download: %s", strerror(errno));
                return 0;
            }
            d->have = 0;
        } else if (d->hr.status == 206) {
            long long a = -1;
            if (sscanf(d->hr.content_range, "bytes %lld-", &a) != 1 || a != d->have) {
                d->rc = fail(d->p, HUB_EPROTO, "%s: the server resumed at '%s', not at byte %lld", d->p->repo,
                             d->hr.content_range, (long long)d->have);
                return 0;
            }
        } else if (d->hr.status != 200) {
            d->bad = 1;
            return 0;
        }
    }
    if (d->have + (int64_t)n > d->expected) {
        d->rc = fail(d->p, HUB_ECHECKSUM, "%s: %s: the server sent more than the announced %lld bytes", d->p->repo,
                     d->p->pr.file, (long long)d->expected);
        return 0;
    }
    if (canceled(d->p)) {
        d->rc = fail(d->p, HUB_ECANCELED, "%s: the download was cancelled", d->p->repo);
        return 0;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(d->fd, b + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            d->rc = fail(d->p, HUB_EIO, "cannot write to the cache: %s", strerror(errno));
            return 0;
        }
        off += (size_t)w;
    }
    d->have += (int64_t)n;
    d->p->downloaded += (int64_t)n;
    d->p->pr.file_done = d->have;
    d->p->pr.done = d->start + d->have;
    report(d->p, 0);
    return n;
}

/* Fetches url into incomplete (fd, already holding *have bytes) until it
 * holds `expected` bytes; resumes after broken connections. */
static int fetch_blob(pull *p, const char *url, int send_auth, int fd, int64_t expected, const char *name) {
    int retries = p->o->retries < 0 ? 5 : p->o->retries;
    struct stat st;
    if (fstat(fd, &st)) return fail(p, HUB_EIO, "cannot stat a partial download: %s", strerror(errno));
    int64_t have = st.st_size;
    if (have > expected) {
        if (ftruncate(fd, 0)) return fail(p, HUB_EIO, "cannot truncate: %s", strerror(errno));
        have = 0;
    }
    if (lseek(fd, 0, SEEK_END) < 0) return fail(p, HUB_EIO, "cannot seek: %s", strerror(errno));
    int64_t start = p->pr.done;
    p->pr.file_done = have;
    p->pr.done = start + have;
    int left = retries;
    while (have < expected) {
        dl d;
        memset(&d, 0, sizeof d);
        d.p = p;
        d.fd = fd;
        d.have = have;
        d.expected = expected;
        d.start = start;
        char range[64];
        snprintf(range, sizeof range, "Range: bytes=%lld-", (long long)have);
        CURL *c;
        struct curl_slist *hl;
        char ebuf[CURL_ERROR_SIZE];
        int out = request(p, url, send_auth ? p->auth : NULL, have > 0 ? range : NULL, &d.hr, ebuf, &c, &hl);
        if (out) return out;
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        CURLcode rc = perform(c, hl);
        int64_t before = have;
        have = d.have;
        if (d.rc) return d.rc;
        if (d.bad || (rc == CURLE_OK && d.hr.status != 200 && d.hr.status != 206)) {
            if (d.hr.status == 416 && have == expected) break;
            return status_error(p, &d.hr, name);
        }
        if (rc == CURLE_OK && have == expected) break;
        /* broken, or ended early: resume while attempts last (each one that
         * brought data restores them, as huggingface_hub's http_get) */
        if (rc != CURLE_OK && !transient(rc) && rc != CURLE_WRITE_ERROR) return curl_error(p, rc, url, ebuf);
        if (have > before) left = retries;
        if (left-- <= 0) {
            if (rc != CURLE_OK) return curl_error(p, rc, url, ebuf);
            return fail(p, HUB_ENET, "%s: %s: the connection ended after %lld of %lld bytes", p->repo, name,
                        (long long)have, (long long)expected);
        }
        al_log(AL_LOG_WARN, "event=hub_resume repo=%s file=%s have=%lld of=%lld reason=\"%s\"", p->repo, name,
               (long long)have, (long long)expected, rc != CURLE_OK ? curl_easy_strerror(rc) : "short body");
        struct timespec ts = {0, 300 * 1000000L};
        nanosleep(&ts, NULL);
        if (canceled(p)) return fail(p, HUB_ECANCELED, "%s: the download was cancelled", p->repo);
    }
    if (fsync(fd)) return fail(p, HUB_EIO, "cannot fsync a download: %s", strerror(errno));
    return HUB_OK;
}

/* snapshots/<commit>/<name> -> ../../blobs/<etag> (one more "../" per
 * folder in name), replacing any link there atomically. */
static int link_pointer(pull *p, const char *name, const char *etag) {
    char ptr[HUB_PATH], tmp[HUB_PATH + 32], target[HUB_PATH];
    snprintf(ptr, sizeof ptr, "%s/snapshots/%s/%s", p->base, p->commit, name);
    int rc = mkdirs_for(p, ptr);
    if (rc) return rc;
    size_t at = 0;
    target[0] = 0;
    for (const char *s = name; (s = strchr(s, '/')); s++) at += (size_t)snprintf(target + at, sizeof target - at, "../");
    snprintf(target + at, sizeof target - at, "../../blobs/%s", etag);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", ptr, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) || rename(tmp, ptr)) {
        int e = errno;
        unlink(tmp);
        return fail(p, HUB_EIO, "cannot link %.300s: %s", ptr, strerror(e));
    }
    fsync_dir(ptr);
    return HUB_OK;
}

/* One selected file into the cache. */
static int fetch_file(pull *p, const sel_file *f) {
    char ptr[HUB_PATH];
    snprintf(ptr, sizeof ptr, "%s/snapshots/%s/%s", p->base, p->commit, f->name);
    struct stat st;
    p->pr.file = f->name;
    p->pr.file_done = 0;
    p->pr.file_total = f->size;
    if (stat(ptr, &st) == 0 && S_ISREG(st.st_mode) && (f->size < 0 || st.st_size == f->size)) {
        p->pr.done += st.st_size;
        return HUB_OK; /* already in the snapshot */
    }
    /* metadata */
    char *enc = NULL, url[URL_MAX], final_url[URL_MAX];
    {
        /* each path component percent-encoded, the revision as one component */
        char path[3200] = "";
        size_t at = 0;
        const char *s = f->name;
        while (*s) {
            const char *q = strchr(s, '/');
            size_t l = q ? (size_t)(q - s) : strlen(s);
            char *e = curl_easy_escape(NULL, s, (int)l);
            if (!e) return fail(p, HUB_EIO, "out of memory");
            at += (size_t)snprintf(path + at, sizeof path - at, "%s%s", at ? "/" : "", e);
            curl_free(e);
            s += l;
            if (*s == '/') s++;
        }
        enc = curl_easy_escape(NULL, p->commit, 0);
        snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", p->endpoint, p->repo, enc ? enc : p->commit, path);
        curl_free(enc);
    }
    http_resp hr;
    int rc = http_head(p, url, &hr, final_url, f->name);
    if (rc) return rc;
    if (!hr.commit[0])
        return fail(p, HUB_EPROTO,
                    "%s: %s: the server sent no X-Repo-Commit; HF_ENDPOINT (%s) does not seem to be a Hugging "
                    "Face Hub",
                    p->repo, f->name, p->endpoint);
    char etag[160];
    if (etag_norm(hr.linked_etag[0] ? hr.linked_etag : hr.etag, etag))
        return fail(p, HUB_EPROTO, "%s: %s: the server sent no usable ETag ('%.100s')", p->repo, f->name,
                    hr.linked_etag[0] ? hr.linked_etag : hr.etag);
    int redirect = hr.status >= 300 && hr.status < 400;
    int64_t size = hr.linked_size >= 0 ? hr.linked_size : redirect ? -1 : hr.content_length;
    if (size < 0) return fail(p, HUB_EPROTO, "%s: %s: the server announced no size", p->repo, f->name);
    if (f->size >= 0 && size != f->size)
        return fail(p, HUB_ECHECKSUM, "%s: %s: the file list says %lld bytes, the file %lld", p->repo, f->name,
                    (long long)f->size, (long long)size);
    p->pr.file_total = size;
    char get_url[URL_MAX];
    int send_auth = 1;
    if (redirect) {
        char o1[600], o2[600];
        if (!hr.location[0] || origin(hr.location, o2))
            return fail(p, HUB_EPROTO, "%s: %s: unusable redirect '%.200s'", p->repo, f->name, hr.location);
        /* the CDN's signed URL: no token for another host */
        send_auth = origin(final_url, o1) == 0 && !strcmp(o1, o2);
        snprintf(get_url, sizeof get_url, "%s", hr.location);
    } else {
        snprintf(get_url, sizeof get_url, "%s", final_url);
    }
    /* the blob */
    char blob[HUB_PATH], inc[HUB_PATH + 16], lock[HUB_PATH];
    snprintf(blob, sizeof blob, "%s/blobs/%s", p->base, etag);
    snprintf(inc, sizeof inc, "%s.incomplete", blob);
    snprintf(lock, sizeof lock, "%s/.locks/models--%.*s--%s/%s.lock", p->cache,
             (int)(strchr(p->repo, '/') - p->repo), p->repo, strchr(p->repo, '/') + 1, etag);
    if ((rc = mkdirs_for(p, blob)) || (rc = mkdirs_for(p, lock))) return rc;
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) return fail(p, HUB_EIO, "cannot open %.300s: %s", lock, strerror(errno));
    while (flock(lfd, LOCK_EX) && errno == EINTR) {
    }
    if (!(stat(blob, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == size)) {
        int fd = open(inc, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            rc = fail(p, HUB_EIO, "cannot open %.300s: %s", inc, strerror(errno));
        } else {
            rc = fetch_blob(p, get_url, send_auth, fd, size, f->name);
            close(fd);
        }
        if (!rc) {
            /* the checksum the file list announced, else the ETag when it is one */
            const char *want = f->sha256[0] ? f->sha256 : f->blob_id[0] ? f->blob_id : NULL;
            int git = !f->sha256[0] && f->blob_id[0];
            if (!want && hex_ok(etag, 64)) want = etag;
            else if (!want && hex_ok(etag, 40)) want = etag, git = 1;
            char got[65] = "";
            if (want && hash_file(inc, git, got)) rc = fail(p, HUB_EIO, "cannot read %.300s back", inc);
            else if (want && strcasecmp(got, want)) {
                unlink(inc); /* useless for a resume: its bytes are wrong */
                rc = fail(p, HUB_ECHECKSUM,
                          "%s: %s: %s mismatch: expected %s, the downloaded file has %s (removed; pull again)",
                          p->repo, f->name, git ? "git blob SHA-1" : "SHA-256", want, got);
            }
        }
        if (!rc && rename(inc, blob)) rc = fail(p, HUB_EIO, "cannot move %.300s into place: %s", inc, strerror(errno));
        if (!rc) fsync_dir(blob);
    } else {
        p->pr.done += size;
    }
    flock(lfd, LOCK_UN);
    close(lfd);
    if (rc) return rc;
    p->pr.file_done = size;
    return link_pointer(p, f->name, etag);
}

/* ---- selection ---------------------------------------------------------------------------- */

/* What alignd reads from a model folder (lib/model, lib/text). */
static const char *const wanted[] = {"config.json",
                                     "generation_config.json",
                                     "model.safetensors",
                                     "model.safetensors.index.json",
                                     "adapter_config.json",
                                     "adapter_model.safetensors",
                                     "tokenizer.json",
                                     "tokenizer_config.json",
                                     "special_tokens_map.json",
                                     "chat_template.jinja",
                                     "chat_template.json",
                                     NULL};

static int find_sib(const sel_file *all, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(all[i].name, name)) return i;
    return -1;
}

/* The shards model.safetensors.index.json (already in the snapshot) names. */
static int add_shards(pull *p, sel_file *all, int n, int *pick, int *n_pick) {
    char path[HUB_PATH];
    snprintf(path, sizeof path, "%s/snapshots/%s/model.safetensors.index.json", p->base, p->commit);
    json_error_t je;
    json_t *idx = json_load_file(path, 0, &je);
    const json_t *map = json_object_get(idx, "weight_map");
    if (!json_is_object(map)) {
        json_decref(idx);
        return fail(p, HUB_EPROTO, "%s: model.safetensors.index.json has no weight_map object", p->repo);
    }
    const char *k;
    json_t *v;
    int rc = HUB_OK;
    json_object_foreach((json_t *)map, k, v) {
        const char *s = json_string_value(v);
        int i = s ? find_sib(all, n, s) : -1;
        if (i < 0) {
            rc = fail(p, HUB_EPROTO, "%s: model.safetensors.index.json names '%.200s' (for %.100s), which the repository does not hold",
                      p->repo, s ? s : "(not a string)", k);
            break;
        }
        int have = 0;
        for (int j = 0; j < *n_pick; j++) have |= pick[j] == i;
        if (!have) pick[(*n_pick)++] = i;
    }
    json_decref(idx);
    return rc;
}

/* ---- the pull ---------------------------------------------------------------------------------- */

static void read_token(pull *p) {
    const char *t = p->o->token;
    char buf[1024] = "";
    if (!t) {
        t = getenv("HF_TOKEN");
        if (!t || !*t) {
            char path[HUB_PATH];
            const char *tp = getenv("HF_TOKEN_PATH"), *home = getenv("HF_HOME"), *h = getenv("HOME");
            const char *xdg = getenv("XDG_CACHE_HOME");
            if (tp && *tp) snprintf(path, sizeof path, "%s", tp);
            else if (home && *home) snprintf(path, sizeof path, "%s/token", home);
            else if (xdg && *xdg) snprintf(path, sizeof path, "%s/huggingface/token", xdg);
            else if (h && *h) snprintf(path, sizeof path, "%s/.cache/huggingface/token", h);
            else path[0] = 0;
            FILE *f = path[0] ? fopen(path, "r") : NULL;
            if (f) {
                if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
                fclose(f);
            }
            t = buf;
        }
    }
    /* a token is one printable word */
    char tok[1024];
    size_t n = 0;
    while (*t == ' ' || *t == '\t') t++;
    while (*t && n + 1 < sizeof tok && (unsigned char)*t > 0x20 && *t != 0x7f) tok[n++] = *t++;
    tok[n] = 0;
    if (n) snprintf(p->auth, sizeof p->auth, "Authorization: Bearer %s", tok);
}

static int parse_siblings(pull *p, const json_t *info, sel_file **out, int *n_out) {
    const json_t *sib = json_object_get(info, "siblings");
    if (!json_is_array(sib)) return fail(p, HUB_EPROTO, "%s: the Hub's answer has no siblings list", p->repo);
    size_t n = json_array_size(sib);
    if (n > 100000) return fail(p, HUB_EPROTO, "%s: %zu files is more than alignd will list", p->repo, n);
    sel_file *all = calloc(n ? n : 1, sizeof *all);
    if (!all) return fail(p, HUB_EIO, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(sib, i);
        const char *name = json_string_value(json_object_get(s, "rfilename"));
        if (!name || !rfilename_ok(name)) {
            free(all);
            return fail(p, HUB_EPROTO, "%s: the Hub lists a file named '%.200s', which is not a safe relative path",
                        p->repo, name ? name : "(not a string)");
        }
        snprintf(all[i].name, sizeof all[i].name, "%s", name);
        const json_t *sz = json_object_get(s, "size");
        all[i].size = json_is_integer(sz) && json_integer_value(sz) >= 0 ? (int64_t)json_integer_value(sz) : -1;
        const char *bid = json_string_value(json_object_get(s, "blobId"));
        if (bid && hex_ok(bid, 40)) snprintf(all[i].blob_id, sizeof all[i].blob_id, "%s", bid);
        const json_t *lfs = json_object_get(s, "lfs");
        if (json_is_object(lfs)) {
            const char *sha = json_string_value(json_object_get(lfs, "sha256"));
            const json_t *ls = json_object_get(lfs, "size");
            if (!sha || !hex_ok(sha, 64) || !json_is_integer(ls) || json_integer_value(ls) < 0) {
                free(all);
                return fail(p, HUB_EPROTO, "%s: %s: malformed lfs entry (sha256, size)", p->repo, name);
            }
            snprintf(all[i].sha256, sizeof all[i].sha256, "%s", sha);
            for (char *c = all[i].sha256; *c; c++) *c = (char)tolower((unsigned char)*c);
            all[i].size = (int64_t)json_integer_value(ls);
        }
    }
    *out = all;
    *n_out = (int)n;
    return HUB_OK;
}

static int write_ref(pull *p) {
    if (!strcmp(p->rev, p->commit)) return HUB_OK;
    char path[HUB_PATH + 300], e2[AL_ERRLEN];
    snprintf(path, sizeof path, "%s/refs/%s", p->base, p->rev);
    int rc = mkdirs_for(p, path);
    if (rc) return rc;
    char *old = NULL;
    size_t ol = 0;
    if (!al_file_read(path, 256, &old, &ol, NULL) && ol == 40 && !memcmp(old, p->commit, 40)) {
        free(old);
        return HUB_OK;
    }
    free(old);
    if (al_file_write_atomic(path, p->commit, 40, e2)) return fail(p, HUB_EIO, "cannot write %.300s: %.150s", path, e2);
    return HUB_OK;
}

static int from_cache(pull *p, hub_result *out, int rc_if_missing, const char *why) {
    char e2[AL_ERRLEN];
    if (al_hf_snapshot(p->cache, p->repo, p->rev, out->dir, sizeof out->dir, out->commit, e2)) {
        if (rc_if_missing == HUB_EOFFLINE)
            return fail(p, HUB_EOFFLINE, "%s@%s is not in the cache %s and %s: %s", p->repo, p->rev, p->cache, why, e2);
        return rc_if_missing;
    }
    out->from_cache = 1;
    return HUB_OK;
}

/* Which files of the list to fetch: those matching --include, or the
 * weights (the shard index first: it names the shards), the config and the
 * tokenizer files, refusing a repository without safetensors or config. */
static int pick_files(pull *p, const sel_file *all, int n, int *pick, int *n_pick) {
    if (p->o->include) {
        for (int i = 0; i < n; i++)
            for (int k = 0; p->o->include[k]; k++)
                if (!fnmatch(p->o->include[k], all[i].name, 0)) {
                    pick[(*n_pick)++] = i;
                    break;
                }
        if (!*n_pick) return fail(p, HUB_ENOTFOUND, "%s@%s: no file matches --include", p->repo, p->rev);
    } else {
        /* the index first: it names the shards */
        int ix = find_sib(all, n, "model.safetensors.index.json");
        if (ix >= 0) pick[(*n_pick)++] = ix;
        for (int k = 0; wanted[k]; k++) {
            int i = find_sib(all, n, wanted[k]);
            if (i >= 0 && i != ix) pick[(*n_pick)++] = i;
        }
        if (ix < 0 && find_sib(all, n, "model.safetensors") < 0 && find_sib(all, n, "adapter_model.safetensors") < 0) {
            char list[300] = "";
            size_t at = 0;
            for (int i = 0; i < n && at < sizeof list - 40; i++)
                at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "", all[i].name);
            return fail(p, HUB_ENOWEIGHTS,
                        "%s@%s has no safetensors weights (alignd reads model.safetensors or its shards); the "
                        "repository holds: %s",
                        p->repo, p->rev, list[0] ? list : "nothing");
        }
        if (find_sib(all, n, "config.json") < 0 && find_sib(all, n, "adapter_config.json") < 0)
            return fail(p, HUB_ENOWEIGHTS, "%s@%s has no config.json: not a transformers model", p->repo, p->rev);
    }
    return HUB_OK;
}

int hub_pull(const char *repo, const char *rev, const hub_opts *o, hub_result *out, char err[AL_ERRLEN]) {
    static const hub_opts dflt = HUB_OPTS_INIT;
    if (!o) o = &dflt;
    pull *p = calloc(1, sizeof *p);
    if (!p) return snprintf(err, AL_ERRLEN, "out of memory"), HUB_EIO;
    p->o = o;
    p->err = err;
    err[0] = 0;
    memset(out, 0, sizeof *out);
    int rc = HUB_OK;
    sel_file *all = NULL;
    int *pick = NULL;
    json_t *info = NULL;
    if (!al_hf_repo_ok(repo)) {
        rc = fail(p, HUB_EINVAL, "'%.100s' is not a Hugging Face repository id (ORG/NAME)", repo);
        goto done;
    }
    if (!rev || !*rev) rev = "main";
    if (!al_hf_rev_ok(rev)) {
        rc = fail(p, HUB_EINVAL, "'%.100s' is not a revision (a branch, tag or commit)", rev);
        goto done;
    }
    snprintf(p->repo, sizeof p->repo, "%s", repo);
    snprintf(p->rev, sizeof p->rev, "%s", rev);
    if (o->cache_dir) snprintf(p->cache, sizeof p->cache, "%s", o->cache_dir);
    else if (al_hf_cache_dir(p->cache, sizeof p->cache)) {
        rc = fail(p, HUB_EINVAL, "no Hugging Face cache folder: set HF_HOME or HF_HUB_CACHE");
        goto done;
    }
    if (al_hf_repo_dir(p->cache, p->repo, p->base, sizeof p->base)) {
        rc = fail(p, HUB_EINVAL, "the cache path is too long");
        goto done;
    }
    int offline = o->offline >= 0 ? o->offline : hub_env_offline();
    if (offline) {
        rc = from_cache(p, out, HUB_EOFFLINE, "HF_HUB_OFFLINE is set");
        goto done;
    }
    /* a commit already complete in the cache needs no network */
    if (!o->include && al_hf_is_commit(p->rev) && from_cache(p, out, HUB_ENOTFOUND, NULL) == HUB_OK) goto done;
    const char *ep = o->endpoint ? o->endpoint : getenv("HF_ENDPOINT");
    if (!ep || !*ep) ep = "https://huggingface.co";
    snprintf(p->endpoint, sizeof p->endpoint, "%s", ep);
    for (size_t l = strlen(p->endpoint); l > 0 && p->endpoint[l - 1] == '/'; l--) p->endpoint[l - 1] = 0;
    char o1[600];
    if (origin(p->endpoint, o1)) {
        rc = fail(p, HUB_EINVAL, "HF_ENDPOINT '%.200s' is not an http(s) URL", p->endpoint);
        goto done;
    }
    read_token(p);
    pthread_once(&curl_once, curl_init);
    /* 1. the file list */
    char url[2048];
    char *erev = curl_easy_escape(NULL, p->rev, 0);
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", p->endpoint, p->repo, erev ? erev : p->rev);
    curl_free(erev);
    http_resp hr;
    rc = http_get_json(p, url, &hr);
    if (rc == HUB_OK && hr.status != 200) rc = status_error(p, &hr, "the file list");
    if (rc == HUB_ENET) {
        /* no connection: what the cache has for rev (huggingface_hub does the same) */
        char keep[512];
        snprintf(keep, sizeof keep, "%s", err);
        if (from_cache(p, out, HUB_ENET, NULL) == HUB_OK) {
            al_log(AL_LOG_WARN, "event=hub_offline_fallback repo=%s rev=%s reason=\"%s\"", p->repo, p->rev, keep);
            rc = HUB_OK;
            al_buf_deinit(&hr.body);
            goto done;
        }
        snprintf(err, AL_ERRLEN, "%s", keep);
    }
    if (rc) {
        al_buf_deinit(&hr.body);
        goto done;
    }
    json_error_t je;
    info = json_loadb(al_buf_str(&hr.body), hr.body.n, 0, &je);
    al_buf_deinit(&hr.body);
    const char *sha = json_string_value(json_object_get(info, "sha"));
    if (!json_is_object(info) || !sha || !al_hf_is_commit(sha)) {
        rc = fail(p, HUB_EPROTO, "%s: the Hub's file list is not a model info object with a commit \"sha\"", p->repo);
        goto done;
    }
    snprintf(p->commit, sizeof p->commit, "%s", sha);
    int n = 0;
    if ((rc = parse_siblings(p, info, &all, &n))) goto done;
    pick = calloc((size_t)n + 1, sizeof *pick);
    if (!pick) {
        rc = fail(p, HUB_EIO, "out of memory");
        goto done;
    }
    int n_pick = 0;
    if ((rc = pick_files(p, all, n, pick, &n_pick))) goto done;
    p->pr.files_total = n_pick;
    for (int i = 0; i < n_pick; i++) p->pr.total += all[pick[i]].size > 0 ? all[pick[i]].size : 0;
    report(p, 1);
    /* 2.-3. each file */
    for (int i = 0; i < n_pick; i++) {
        const sel_file *f = &all[pick[i]];
        if ((rc = fetch_file(p, f))) goto done;
        p->pr.files_done++;
        if (!o->include && !strcmp(f->name, "model.safetensors.index.json")) {
            int before = n_pick;
            if ((rc = add_shards(p, all, n, pick, &n_pick))) goto done;
            p->pr.files_total = n_pick;
            for (int j = before; j < n_pick; j++) p->pr.total += all[pick[j]].size > 0 ? all[pick[j]].size : 0;
        }
        report(p, 1);
    }
    p->pr.file = NULL;
    report(p, 1);
    /* 4. the ref, last */
    if ((rc = write_ref(p))) goto done;
    snprintf(out->dir, sizeof out->dir, "%s/snapshots/%s", p->base, p->commit);
    memcpy(out->commit, p->commit, 41);
    out->files = n_pick;
    out->bytes = p->pr.total;
    out->downloaded = p->downloaded;
    out->from_cache = p->downloaded == 0;
done:
    json_decref(info);
    free(all);
    free(pick);
    free(p);
    return rc;
}

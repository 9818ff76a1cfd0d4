/* Request bodies under limits (json_body.h). */
#include "json_body.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int api_json_depth(const char *buf, size_t len, int max_depth) {
    int depth = 0, maxd = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > maxd) maxd = depth;
            if (maxd > max_depth) return max_depth + 1;
        } else if (c == ']' || c == '}') {
            if (depth > 0) depth--;
        }
    }
    return maxd;
}

/* Appends ".key" or "[i]" to a path being built in buf. */
static void path_push_key(char *buf, size_t cap, size_t at, const char *key) {
    if (at >= cap) return;
    snprintf(buf + at, cap - at, "%s%s", at ? "." : "", key);
}

static void path_push_index(char *buf, size_t cap, size_t at, size_t i) {
    if (at >= cap) return;
    snprintf(buf + at, cap - at, "[%zu]", i);
}

/* Finds the first string or key longer than max; writes its path. */
static int long_string(const json_t *v, size_t max, char *path, size_t cap) {
    size_t at = strnlen(path, cap);
    if (json_is_string(v)) return json_string_length(v) > max;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            path_push_key(path, cap, at, k);
            if (strlen(k) > max) return 1;
            if (long_string(x, max, path, cap)) return 1;
            path[at] = 0;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            path_push_index(path, cap, at, i);
            if (long_string(x, max, path, cap)) return 1;
            path[at] = 0;
        }
    }
    return 0;
}

int api_json_parse(const char *buf, size_t len, int max_depth, size_t max_string,
                   json_t **out, api_error *e) {
    if (len == 0)
        return api_error_set(e, 400, "invalid_request_error", "invalid_json", "",
                             "the request body is empty; a JSON object is expected");
    if (api_json_depth(buf, len, max_depth) > max_depth)
        return api_error_set(e, 400, "invalid_request_error", "json_too_deep", "",
                             "the request body nests deeper than %d levels", max_depth);
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return api_error_set(e, 400, "invalid_request_error", "invalid_json", "",
                             "the request body is not valid JSON: %s (line %d, column %d)",
                             je.text, je.line, je.column);
    if (!json_is_object(j)) {
        json_decref(j);
        return api_error_set(e, 400, "invalid_request_error", "invalid_type", "",
                             "the request body must be a JSON object");
    }
    char path[AL_FIELDLEN] = ""; /* the field at fault, as param */
    if (long_string(j, max_string, path, sizeof path)) {
        json_decref(j);
        return api_error_set(e, 400, "invalid_request_error", "string_too_long", path,
                             "%s: longer than %zu bytes", path, max_string);
    }
    *out = j;
    return 0;
}

/* ---- multipart/form-data (RFC 7578) ------------------------------------ */

static const char *memfind(const char *h, size_t hlen, const char *n, size_t nlen) {
    if (nlen == 0 || hlen < nlen) return NULL;
    const char *end = h + hlen - nlen;
    for (const char *p = h; p <= end; p++) {
        p = memchr(p, n[0], (size_t)(end - p) + 1);
        if (!p) return NULL;
        if (memcmp(p, n, nlen) == 0) return p;
    }
    return NULL;
}

/* Value of a parameter (boundary=..., name="...") in a header value; quoted
 * or bare. Returns 1 when found. */
static int header_param(const char *v, size_t vlen, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < vlen) {
        /* find the next ';' separated parameter */
        while (i < vlen && v[i] != ';') {
            if (v[i] == '"') { /* skip quoted text */
                i++;
                while (i < vlen && v[i] != '"') {
                    if (v[i] == '\\') i++;
                    i++;
                }
            }
            i++;
        }
        if (i >= vlen) break;
        i++;
        while (i < vlen && (v[i] == ' ' || v[i] == '\t')) i++;
        if (i + klen < vlen && strncasecmp(v + i, key, klen) == 0 && v[i + klen] == '=') {
            i += klen + 1;
            size_t o = 0;
            if (i < vlen && v[i] == '"') {
                i++;
                while (i < vlen && v[i] != '"') {
                    if (v[i] == '\\' && i + 1 < vlen) i++;
                    if (o + 1 < cap) out[o++] = v[i];
                    else return 0;
                    i++;
                }
                if (i >= vlen) return 0;
            } else {
                while (i < vlen && v[i] != ';' && v[i] != ' ' && v[i] != '\t') {
                    if (o + 1 < cap) out[o++] = v[i];
                    else return 0;
                    i++;
                }
            }
            out[o] = 0;
            return 1;
        }
    }
    return 0;
}

static int bad(api_error *e, const char *why) {
    return api_error_set(e, 400, "invalid_request_error", "invalid_multipart", "",
                         "malformed multipart/form-data body: %s", why);
}

int api_multipart_parse(const char *content_type, const char *body, size_t len,
                        api_part *parts, int max, int *n, api_error *e) {
    char boundary[80];
    if (!content_type ||
        !header_param(content_type, strlen(content_type), "boundary", boundary,
                      sizeof boundary) ||
        !boundary[0])
        return bad(e, "no boundary in Content-Type");
    char delim[86];
    int dlen = snprintf(delim, sizeof delim, "--%s", boundary);
    /* The first delimiter may open the body or follow a preamble line. */
    const char *p = memfind(body, len, delim, (size_t)dlen);
    if (!p || (p != body && (p < body + 2 || p[-1] != '\n'))) return bad(e, "no opening boundary");
    const char *end = body + len;
    int count = 0;
    for (;;) {
        p += dlen;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break; /* closing delimiter */
        /* transport padding then CRLF */
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') p += 2;
        else if (p < end && p[0] == '\n') p += 1;
        else return bad(e, "boundary not followed by a line break");
        if (count >= max) return bad(e, "too many parts");
        api_part *pt = &parts[count];
        memset(pt, 0, sizeof *pt);
        int have_disp = 0;
        /* headers, up to an empty line */
        for (;;) {
            const char *eol = memchr(p, '\n', (size_t)(end - p));
            if (!eol) return bad(e, "unterminated part headers");
            size_t ll = (size_t)(eol - p);
            if (ll && p[ll - 1] == '\r') ll--;
            if (ll == 0) {
                p = eol + 1;
                break;
            }
            const char *colon = memchr(p, ':', ll);
            if (!colon) return bad(e, "part header without a colon");
            size_t kl = (size_t)(colon - p);
            const char *v = colon + 1;
            size_t vl = ll - kl - 1;
            while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
            if (kl == 19 && strncasecmp(p, "Content-Disposition", 19) == 0) {
                if (vl < 9 || strncasecmp(v, "form-data", 9) != 0)
                    return bad(e, "Content-Disposition is not form-data");
                if (!header_param(v, vl, "name", pt->name, sizeof pt->name))
                    return bad(e, "a part has no name");
                header_param(v, vl, "filename", pt->filename, sizeof pt->filename);
                have_disp = 1;
            } else if (kl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
                size_t cl = vl < sizeof pt->ctype - 1 ? vl : sizeof pt->ctype - 1;
                memcpy(pt->ctype, v, cl);
                pt->ctype[cl] = 0;
            }
            p = eol + 1;
        }
        if (!have_disp) return bad(e, "a part has no Content-Disposition");
        /* data up to CRLF + delimiter */
        const char *q = p;
        const char *next = NULL;
        for (;;) {
            const char *d = memfind(q, (size_t)(end - q), delim, (size_t)dlen);
            if (!d) return bad(e, "no closing boundary");
            if (d - p >= 1 && d[-1] == '\n') {
                next = d;
                break;
            }
            if (d == p) { /* empty data directly followed by the delimiter: needs CRLF */
                q = d + 1;
                continue;
            }
            q = d + 1;
        }
        size_t dl = (size_t)(next - p) - 1;
        if (dl && p[dl - 1] == '\r') dl--;
        pt->data = p;
        pt->len = dl;
        count++;
        p = next;
    }
    *n = count;
    return 0;
}

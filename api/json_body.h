/* Request-body parsing under limits: JSON objects (nesting depth and string
 * lengths checked before and after jansson sees them) and multipart/form-data
 * uploads. Pure functions of their input (no HTTP, no globals), so the fuzz
 * targets in tests/fuzz/ drive them directly. */
#ifndef API_JSON_BODY_H
#define API_JSON_BODY_H

#include <stddef.h>

#include <jansson.h>

#include "backend.h"

/* Parses len bytes as one JSON object. Refuses (400, invalid_request_error):
 * a body that is not JSON (code invalid_json, line and column in the
 * message), nesting deeper than max_depth (code json_too_deep), a string or
 * key longer than max_string bytes (code string_too_long, param = the
 * field's path, "messages[2].content"), and a JSON value that is not an
 * object (code invalid_type). On success *out is a new reference. */
int api_json_parse(const char *buf, size_t len, int max_depth, size_t max_string,
                   json_t **out, api_error *e);

/* Nesting depth of a JSON text (arrays and objects; strings skipped), or
 * max_depth + 1 as soon as it is exceeded. Used before jansson recurses. */
int api_json_depth(const char *buf, size_t len, int max_depth);

/* One part of a multipart/form-data body (pointers into the body). */
typedef struct api_part {
    char name[64];          /* form field name */
    char filename[256];     /* "" when the part is not a file */
    char ctype[128];        /* the part's Content-Type, "" when absent */
    const char *data;
    size_t len;
} api_part;

/* Parses a multipart/form-data body given the request's Content-Type (with
 * its boundary). At most max parts are returned in parts[0..*n); more is an
 * error. 400 (code invalid_multipart) when the boundary is missing or the
 * body is malformed. */
int api_multipart_parse(const char *content_type, const char *body, size_t len,
                        api_part *parts, int max, int *n, api_error *e);

#endif

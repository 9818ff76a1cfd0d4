/* libFuzzer target: the request-body parsers of api/json_body.h.
 *
 * The first byte picks the parser: odd -> api_json_parse (depth 32,
 * strings up to 4 KiB), even -> api_multipart_parse with the first line as
 * the request's Content-Type and the rest as the body. Every input must
 * either parse or fail with an error; ASan/UBSan catch the rest. Parts must
 * point inside the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/json_body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    api_error e;
    memset(&e, 0, sizeof e);
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, n);
    if (data[0] & 1) {
        json_t *j = NULL;
        int rc = api_json_parse(buf, n, 32, 4096, &j, &e);
        if (rc == 0) {
            if (!json_is_object(j)) abort();
            json_decref(j);
        } else if (e.status != 400 || !e.message[0]) {
            abort();
        }
        (void)api_json_depth(buf, n, 8);
    } else {
        const char *nl = memchr(buf, '\n', n);
        if (nl) {
            size_t cl = (size_t)(nl - buf);
            char ct[256];
            if (cl >= sizeof ct) cl = sizeof ct - 1;
            memcpy(ct, buf, cl);
            ct[cl] = 0;
            const char *body = nl + 1;
            size_t blen = n - (size_t)(body - buf);
            api_part parts[8];
            int np = 0;
            if (api_multipart_parse(ct, body, blen, parts, 8, &np, &e) == 0) {
                if (np < 0 || np > 8) abort();
                for (int i = 0; i < np; i++) {
                    if (parts[i].data < body || parts[i].data + parts[i].len > body + blen) abort();
                    if (strnlen(parts[i].name, sizeof parts[i].name) >= sizeof parts[i].name) abort();
                    volatile char sink = 0;
                    for (size_t k = 0; k < parts[i].len; k++) sink ^= parts[i].data[k];
                    (void)sink;
                }
            } else if (e.status != 400) {
                abort();
            }
        }
    }
    free(buf);
    return 0;
}

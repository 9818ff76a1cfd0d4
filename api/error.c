/* api_error: OpenAI's error fields plus the HTTP status (api/backend.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"

int api_error_set(api_error *e, int status, const char *type, const char *code,
                  const char *param, const char *fmt, ...) {
    if (!e) return -1;
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type ? type : "server_error");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Public ids (see ids.h). */
#include "ids.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_prefix[] = {
    [API_ID_FILE] = "file-",
    [API_ID_JOB] = API_JOB_PREFIX,
    [API_ID_EVENT] = "ftevent-",
    [API_ID_CHECKPOINT] = "ckpt-",
    [API_ID_MODEL_EVENT] = "mdlevent-",
};

api_idbuf api_id(api_id_kind kind, int64_t n) {
    api_idbuf b;
    snprintf(b.s, sizeof b.s, "%s%lld", g_prefix[kind], (long long)n);
    return b;
}

/* A positive decimal number filling all of s (leading zeros allowed), else 0. */
static int64_t positive(const char *s) {
    if (s[0] < '0' || s[0] > '9') return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return errno || *end || v <= 0 ? 0 : (int64_t)v;
}

int64_t api_id_parse(api_id_kind kind, const char *s) {
    size_t n = strlen(g_prefix[kind]);
    if (!s || strncmp(s, g_prefix[kind], n)) return 0;
    return positive(s + n);
}

api_idbuf api_checkpoint_name(int64_t job, long step) {
    api_idbuf b;
    snprintf(b.s, sizeof b.s, "%s%lld:%ld", API_JOB_PREFIX, (long long)job, step);
    return b;
}

int api_job_ref_parse(const char *ref, int64_t *job, long *step) {
    size_t n = strlen(API_JOB_PREFIX);
    if (!ref || strncmp(ref, API_JOB_PREFIX, n)) return 0;
    char id[64];
    snprintf(id, sizeof id, "%s", ref + n);
    char *colon = strchr(id, ':');
    long st = -1;
    if (colon) {
        char *end;
        *colon = 0;
        errno = 0;
        st = strtol(colon + 1, &end, 10);
        if (errno || *end || st < 0 || end == colon + 1) return -1;
    }
    int64_t j = positive(id);
    if (!j) return -2;
    *job = j;
    *step = st;
    return 1;
}

int api_model_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-' || !strncmp(name, API_JOB_PREFIX, strlen(API_JOB_PREFIX)))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return 0;
    }
    return 1;
}

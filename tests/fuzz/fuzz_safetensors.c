/* libFuzzer target: the safetensors reader (lib/model/safetensors.h) on
 * files a user downloads from the Hub.
 *
 * The input is the whole file: 8-byte header length, JSON header, data.
 * al_st_open maps a path, so each input is written to one scratch file in
 * the working directory (removed at exit). An open must succeed or fail
 * with a message; on success every listed tensor must be found by name and
 * read (f32, bf16, transposed when 2-D) or refused with a code, and served
 * in place or not; the reads are bounded by the file, which max_len keeps
 * small.
 *
 * An input that starts with '{' (a header length no real file has: its low
 * byte 0x7b) is instead a sharded checkpoint's model.safetensors.index.json,
 * opened by al_st_dir_open in a scratch folder beside two fixed shards,
 * shard-a.safetensors (tensors "a.w", "a.b") and shard-b.safetensors ("b.w").
 *
 * The reader converts half precision with lib/compute's kernels, which
 * would bring oneDNN and the rest of lib/compute along; this target links
 * their one-value forms from compute/ops.h instead (the same bits). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute/ops.h"
#include "fuzz_util.h"
#include "io.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

void al_bf16_round(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = al_bf16_round1(src[i]);
}
void al_bf16_widen(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = al_bf16_widen1(src[i]);
}

static char g_path[64], g_dir[64];

static void dir_path(char *p, size_t n, const char *name) { snprintf(p, n, "%s/%s", g_dir, name); }

static void cleanup(void) {
    static const char *const names[] = {"model.safetensors.index.json", "shard-a.safetensors",
                                        "shard-b.safetensors"};
    char p[128];
    if (g_path[0]) unlink(g_path);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        dir_path(p, sizeof p, names[i]);
        unlink(p);
    }
    rmdir(g_dir);
}

/* A valid shard holding the F32 tensors names[0..n) of 2 elements each. */
static void put_shard(const char *file, const char *const *names, int n) {
    char header[256], p[128];
    int hl = 1;
    header[0] = '{';
    for (int i = 0; i < n; i++)
        hl += snprintf(header + hl, sizeof header - (size_t)hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[%d,%d]}", i ? "," : "", names[i], 8 * i, 8 * i + 8);
    header[hl++] = '}';
    uint8_t buf[512];
    memset(buf, 0, sizeof buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, (size_t)hl);
    dir_path(p, sizeof p, file);
    fuzz_write_file(p, buf, 8 + (size_t)hl + 8 * (size_t)n);
}

static void index_case(const uint8_t *data, size_t size) {
    char err[AL_ERRLEN], p[128];
    dir_path(p, sizeof p, "model.safetensors.index.json");
    fuzz_write_file(p, data, size);
    al_st_dir d = {0};
    err[0] = 0;
    int rc = al_st_dir_open(&d, g_dir, "model", err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "index rc %d: %s\n", rc, rc ? err : "");
    if (rc != AL_OK) {
        if (!err[0] || d.files) abort();
        return;
    }
    static const char *const names[] = {"a.w", "a.b", "b.w", "c.w", ""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const al_st_file *f = NULL;
        const al_st_tensor *t = al_st_dir_find(&d, names[i], &f);
        if (t && (!f || al_st_find(f, names[i]) != t)) abort();
    }
    al_st_dir_close(&d);
}

static void read_tensor(const al_st_file *f, const al_st_tensor *t) {
    char err[AL_ERRLEN];
    if (al_st_find(f, t->name) != t) abort();
    if (t->dtype != AL_DT_F32 && t->dtype != AL_DT_F16 && t->dtype != AL_DT_BF16) {
        /* listed, unchecked size: reading it is refused */
        if (al_st_read_f32(f, t, NULL, 0, err) != AL_EUNSUP || al_st_serve(f, t)) abort();
        return;
    }
    size_t n = al_st_numel(t);
    if (n > ((size_t)1 << 20)) abort(); /* a checked span lies inside the file */
    float *d32 = malloc((n ? n : 1) * sizeof *d32);
    uint16_t *d16 = malloc((n ? n : 1) * sizeof *d16);
    if (!d32 || !d16) abort();
    (void)al_st_read_f32(f, t, d32, n, err);
    (void)al_st_read_f32(f, t, d32, n + 1, err); /* wrong size: AL_ESHAPE */
    (void)al_st_read_f32_t(f, t, d32, n, err);
    (void)al_st_read_bf16(f, t, d16, n, 0, err);
    (void)al_st_read_bf16(f, t, d16, n, 1, err);
    free(d32);
    free(d16);
    const uint8_t *p = al_st_serve(f, t);
    if (p && n) {
        volatile uint8_t sink = p[0];
        sink = p[t->end - t->begin - 1];
        (void)sink;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_path[0]) {
        char err[AL_ERRLEN];
        snprintf(g_path, sizeof g_path, "fuzz_safetensors_%d.safetensors", (int)getpid());
        snprintf(g_dir, sizeof g_dir, "fuzz_safetensors_%d", (int)getpid());
        if (al_mkdir_p(g_dir, err) != AL_OK) abort();
        atexit(cleanup);
        static const char *const a[] = {"a.b", "a.w"}, *const b[] = {"b.w"};
        put_shard("shard-a.safetensors", a, 2);
        put_shard("shard-b.safetensors", b, 1);
    }
    if (size && data[0] == '{') {
        index_case(data, size);
        return 0;
    }
    fuzz_write_file(g_path, data, size);
    al_st_file f;
    char err[AL_ERRLEN];
    err[0] = 0;
    int rc = al_st_open(&f, g_path, err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "rc %d: %s\n", rc, rc ? err : "");
    if (rc != AL_OK) {
        if (!err[0]) abort(); /* every refusal names its reason */
        return 0;
    }
    for (int i = 0; i < f.n; i++) read_tensor(&f, &f.t[i]);
    if (al_st_find(&f, "no such tensor \x01")) abort();
    al_st_close(&f);
    return 0;
}

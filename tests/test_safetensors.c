/* safetensors: half-precision conversions, write/read round trips (with
 * transposed entries), files with F16/BF16/I64 tensors built by hand,
 * sharded folders, hostile files that must be refused with the problem
 * named in err, and the release of a read tensor's mapped pages. */
#include <jansson.h>

#include "compute/pool.h"
#include "io.h"
#include "model/safetensors.h"
#include "t.h"

static const char *g_root;

static int contains(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static const char *tpath(const char *name) {
    static char buf[4][1024];
    static int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_root, name);
    return buf[k];
}

/* Writes <len LE u64><header><data> exactly as given (hostile files). */
static void write_raw(const char *path, uint64_t hlen, const char *header, size_t header_n,
                      const void *data, size_t data_n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hlen >> (8 * i));
    fwrite(b, 1, 8, f);
    if (header_n) fwrite(header, 1, header_n, f);
    if (data_n) fwrite(data, 1, data_n, f);
    fclose(f);
}

static void write_st(const char *path, const char *header, const void *data, size_t data_n) {
    write_raw(path, strlen(header), header, strlen(header), data, data_n);
}

/* ---------- half precision ---------- */

static void test_half_known(void) {
    /* widening */
    T_EQ_INT(fbits(al_f16_to_f32(0x3C00)), fbits(1.0f));
    T_EQ_INT(fbits(al_f16_to_f32(0xC000)), fbits(-2.0f));
    T_EQ_INT(fbits(al_f16_to_f32(0x7BFF)), fbits(65504.0f));
    T_EQ_INT(fbits(al_f16_to_f32(0x0001)), fbits(0x1p-24f)); /* smallest subnormal */
    T_EQ_INT(fbits(al_f16_to_f32(0x03FF)), fbits(1023 * 0x1p-24f)); /* largest subnormal */
    T_EQ_INT(fbits(al_f16_to_f32(0x0400)), fbits(0x1p-14f)); /* smallest normal */
    T_EQ_INT(fbits(al_f16_to_f32(0x8001)), fbits(-0x1p-24f));
    T_EQ_INT(fbits(al_f16_to_f32(0x8000)), fbits(-0.0f));
    T_EQ_INT(fbits(al_f16_to_f32(0x3555)), fbits(0.333251953125f));
    T_TRUE(isinf(al_f16_to_f32(0x7C00)) && al_f16_to_f32(0x7C00) > 0);
    T_TRUE(isinf(al_f16_to_f32(0xFC00)) && al_f16_to_f32(0xFC00) < 0);
    T_TRUE(isnan(al_f16_to_f32(0x7E00)));
    T_TRUE(isnan(al_f16_to_f32(0x7C01))); /* signalling payload stays NaN */
    T_EQ_INT(fbits(al_bf16_to_f32(0x3F80)), fbits(1.0f));
    T_EQ_INT(fbits(al_bf16_to_f32(0xC000)), fbits(-2.0f));
    T_EQ_INT(fbits(al_bf16_to_f32(0x0001)), fbits(0x1p-133f)); /* smallest subnormal */
    T_EQ_INT(fbits(al_bf16_to_f32(0x477F)), fbits(65280.0f));
    T_TRUE(isinf(al_bf16_to_f32(0x7F80)));
    T_TRUE(isinf(al_bf16_to_f32(0xFF80)) && al_bf16_to_f32(0xFF80) < 0);
    T_TRUE(isnan(al_bf16_to_f32(0x7FC0)));

    /* narrowing, round to nearest even */
    T_EQ_INT(al_f32_to_f16(1.0f), 0x3C00);
    T_EQ_INT(al_f32_to_f16(-2.0f), 0xC000);
    T_EQ_INT(al_f32_to_f16(65504.0f), 0x7BFF);
    T_EQ_INT(al_f32_to_f16(65519.0f), 0x7BFF);
    T_EQ_INT(al_f32_to_f16(65520.0f), 0x7C00); /* tie goes to even = inf */
    T_EQ_INT(al_f32_to_f16(1e10f), 0x7C00);
    T_EQ_INT(al_f32_to_f16(-1e10f), 0xFC00);
    T_EQ_INT(al_f32_to_f16(0x1p-24f), 0x0001);
    T_EQ_INT(al_f32_to_f16(0x1p-25f), 0x0000); /* tie between 0 and 2^-24 */
    T_EQ_INT(al_f32_to_f16(bitsf(fbits(0x1p-25f) + 1)), 0x0001);
    T_EQ_INT(al_f32_to_f16(3 * 0x1p-25f), 0x0002);  /* tie 1.5 ulp -> 2 */
    T_EQ_INT(al_f32_to_f16(5 * 0x1p-25f), 0x0002);  /* tie 2.5 ulp -> 2 */
    T_EQ_INT(al_f32_to_f16(1023.5f * 0x1p-24f), 0x0400); /* rounds into the normals */
    T_EQ_INT(al_f32_to_f16(1e-8f), 0x0000);
    T_EQ_INT(al_f32_to_f16(-1e-8f), 0x8000);
    T_EQ_INT(al_f32_to_f16(1.0f + 0x1p-11f), 0x3C00); /* tie -> even */
    T_EQ_INT(al_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);
    T_EQ_INT(al_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
    T_EQ_INT(al_f32_to_f16(INFINITY), 0x7C00);
    T_EQ_INT(al_f32_to_f16(-INFINITY), 0xFC00);
    T_TRUE(isnan(al_f16_to_f32(al_f32_to_f16(NAN))));
    T_TRUE(isnan(al_f16_to_f32(al_f32_to_f16(bitsf(0x7F800001))))); /* payload in low bits only */
    T_EQ_INT(al_f32_to_bf16(1.0f), 0x3F80);
    T_EQ_INT(al_f32_to_bf16(-2.0f), 0xC000);
    T_EQ_INT(al_f32_to_bf16(65504.0f), 0x4780); /* 65536 */
    T_EQ_INT(al_f32_to_bf16(1.0f + 0x1p-8f), 0x3F80); /* tie -> even */
    T_EQ_INT(al_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);
    T_EQ_INT(al_f32_to_bf16(3.4028235e38f), 0x7F80); /* FLT_MAX rounds to inf */
    T_EQ_INT(al_f32_to_bf16(INFINITY), 0x7F80);
    T_TRUE(isnan(al_bf16_to_f32(al_f32_to_bf16(NAN))));
    T_TRUE(isnan(al_bf16_to_f32(al_f32_to_bf16(bitsf(0x7F800001)))));
    T_EQ_INT(al_f32_to_bf16(0x1p-133f), 0x0001);
}

static void test_half_exhaustive(void) {
    /* Every half and bfloat16 widens and narrows back to itself. */
    int bad16 = 0, badb = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = al_f16_to_f32((uint16_t)h);
        if (isnan(f)) bad16 += !isnan(al_f16_to_f32(al_f32_to_f16(f)));
        else bad16 += al_f32_to_f16(f) != h;
        float g = al_bf16_to_f32((uint16_t)h);
        if (isnan(g)) badb += !isnan(al_bf16_to_f32(al_f32_to_bf16(g)));
        else badb += al_f32_to_bf16(g) != h;
    }
    T_EQ_INT(bad16, 0);
    T_EQ_INT(badb, 0);
#ifdef __FLT16_MAX__
    /* Against the compiler's own conversions where it has _Float16. */
    int bad_w = 0, bad_n = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t hv = (uint16_t)h;
        _Float16 x;
        memcpy(&x, &hv, 2);
        float want = (float)x, got = al_f16_to_f32(hv);
        if (isnan(want)) bad_w += !isnan(got);
        else bad_w += fbits(want) != fbits(got);
    }
    al_rng r;
    al_rng_seed(&r, 7);
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)al_rng_u64(&r);
        if (i & 1) u = (u & 0x80000000u) | (0x30000000u + (u & 0x1FFFFFFFu)); /* near half range */
        float f = bitsf(u);
        if (isnan(f)) continue;
        _Float16 y = (_Float16)f;
        uint16_t want;
        memcpy(&want, &y, 2);
        bad_n += al_f32_to_f16(f) != want;
    }
    T_EQ_INT(bad_w, 0);
    T_EQ_INT(bad_n, 0);
#endif
}

/* ---------- write / read ---------- */

static void test_roundtrip(void) {
    char err[AL_ERRLEN];
    float w[12], bias[5], tr[6], scalar = 3.5f;
    al_rng r;
    al_rng_seed(&r, 1);
    for (int i = 0; i < 12; i++) w[i] = al_rng_normal(&r);
    for (int i = 0; i < 5; i++) bias[i] = al_rng_normal(&r);
    w[3] = -0.0f;
    w[4] = 1e-40f; /* subnormal survives bit-exactly */
    w[5] = INFINITY;
    /* Conv1D layout in memory: (rows, cols) = (shape[1], shape[0]) = (3, 2). */
    for (int i = 0; i < 6; i++) tr[i] = (float)(i + 1); /* [[1,2],[3,4],[5,6]] */
    al_st_entry e[5] = {
        {.name = "z.weight", .data = w, .ndim = 2, .shape = {3, 4}},
        {.name = "a.bias", .data = bias, .ndim = 1, .shape = {5}},
        {.name = "m.c_attn.weight", .data = tr, .ndim = 2, .shape = {2, 3}, .transpose = 1},
        {.name = "s.scalar", .data = &scalar, .ndim = 0},
        {.name = "e.empty", .data = NULL, .ndim = 2, .shape = {0, 4}},
    };
    const char *p = tpath("rt.safetensors");
    T_OK(al_st_write(p, e, 5, err));

    /* Raw layout: header padded with spaces, data 8-aligned, sorted names,
     * __metadata__ {"format": "pt"}. */
    char *raw = NULL;
    size_t len = 0;
    T_OK(al_file_read(p, 1 << 20, &raw, &len, err));
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)raw[i];
    T_EQ_INT((8 + hl) % 8, 0);
    T_EQ_INT(len, 8 + hl + 4 * (12 + 5 + 6 + 1));
    T_TRUE(raw[8] == '{');
    size_t last = 8 + hl - 1;
    while (raw[last] == ' ') last--;
    T_TRUE(raw[last] == '}');
    json_t *h = json_loadb(raw + 8, hl, 0, NULL);
    T_TRUE(h != NULL);
    const char *keys[6];
    int nk = 0;
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v) if (nk < 6) keys[nk++] = k;
    T_EQ_INT(nk, 6);
    T_STR_EQ(keys[0], "__metadata__");
    T_STR_EQ(keys[1], "a.bias");
    T_STR_EQ(keys[2], "e.empty");
    T_STR_EQ(keys[3], "m.c_attn.weight");
    T_STR_EQ(keys[4], "s.scalar");
    T_STR_EQ(keys[5], "z.weight");
    T_STR_EQ(json_string_value(json_object_get(json_object_get(h, "__metadata__"), "format")), "pt");
    T_STR_EQ(json_string_value(json_object_get(json_object_get(h, "z.weight"), "dtype")), "F32");
    json_decref(h);
    free(raw);

    al_st_file f;
    T_OK(al_st_open(&f, p, err));
    T_EQ_INT(f.n, 5);
    T_EQ_INT(f.data_off % 8, 0);
    T_STR_EQ(f.t[0].name, "a.bias"); /* listed sorted */
    T_STR_EQ(f.t[4].name, "z.weight");
    const al_st_tensor *t = al_st_find(&f, "z.weight");
    T_TRUE(t != NULL);
    if (t) {
        T_EQ_INT(t->dtype, AL_DT_F32);
        T_EQ_INT(t->ndim, 2);
        T_EQ_INT(t->shape[0], 3);
        T_EQ_INT(t->shape[1], 4);
        T_EQ_INT(al_st_numel(t), 12);
        float out[12];
        T_OK(al_st_read_f32(&f, t, out, 12, err));
        T_TRUE(memcmp(out, w, sizeof w) == 0);
        err[0] = '\0';
        T_EQ_INT(al_st_read_f32(&f, t, out, 11, err), AL_ESHAPE);
        T_TRUE(contains(err, "z.weight"));
    }
    t = al_st_find(&f, "a.bias");
    float ob[5];
    T_TRUE(t && al_st_read_f32(&f, t, ob, 5, err) == AL_OK && memcmp(ob, bias, sizeof bias) == 0);
    t = al_st_find(&f, "m.c_attn.weight");
    T_TRUE(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    float ot[6];
    T_TRUE(t && al_st_read_f32(&f, t, ot, 6, err) == AL_OK);
    /* file (2, 3) = transpose of memory (3, 2): [[1,3,5],[2,4,6]] */
    const float want_t[6] = {1, 3, 5, 2, 4, 6};
    T_TRUE(memcmp(ot, want_t, sizeof ot) == 0);
    t = al_st_find(&f, "s.scalar");
    float os = 0;
    T_TRUE(t && t->ndim == 0 && al_st_numel(t) == 1);
    T_TRUE(t && al_st_read_f32(&f, t, &os, 1, err) == AL_OK && os == 3.5f);
    t = al_st_find(&f, "e.empty");
    T_TRUE(t && al_st_numel(t) == 0 && t->begin == t->end);
    T_TRUE(t && al_st_read_f32(&f, t, NULL, 0, err) == AL_OK);
    T_TRUE(al_st_find(&f, "missing") == NULL);
    T_TRUE(al_st_find(&f, "__metadata__") == NULL);
    al_st_close(&f);
    al_st_close(&f); /* closing twice is harmless */

    /* Larger transposed matrix through the writer's chunked buffer. */
    int R = 300, Cc = 70; /* memory (R, Cc) -> file (Cc, R) */
    float *m = malloc(sizeof(float) * (size_t)(R * Cc));
    for (int i = 0; i < R * Cc; i++) m[i] = (float)i;
    al_st_entry big = {.name = "big", .data = m, .ndim = 2, .shape = {Cc, R}, .transpose = 1};
    T_OK(al_st_write(tpath("big.safetensors"), &big, 1, err));
    T_OK(al_st_open(&f, tpath("big.safetensors"), err));
    float *o = malloc(sizeof(float) * (size_t)(R * Cc));
    T_OK(al_st_read_f32(&f, al_st_find(&f, "big"), o, (size_t)(R * Cc), err));
    int bad = 0;
    for (int i = 0; i < Cc; i++)
        for (int j = 0; j < R; j++) bad += o[i * R + j] != m[j * Cc + i];
    T_EQ_INT(bad, 0);
    al_st_close(&f);
    free(m);
    free(o);

    /* Zero tensors is a valid file. */
    T_OK(al_st_write(tpath("none.safetensors"), NULL, 0, err));
    T_OK(al_st_open(&f, tpath("none.safetensors"), err));
    T_EQ_INT(f.n, 0);
    al_st_close(&f);

    /* Writer refusals. */
    al_st_entry dup[2] = {{.name = "x", .data = w, .ndim = 1, .shape = {2}},
                          {.name = "x", .data = w, .ndim = 1, .shape = {2}}};
    err[0] = '\0';
    T_EQ_INT(al_st_write(tpath("dup.safetensors"), dup, 2, err), AL_EINVAL);
    T_TRUE(contains(err, "duplicate") && contains(err, "'x'"));
    T_TRUE(!al_file_exists(tpath("dup.safetensors")));
    al_st_entry badt = {.name = "x", .data = w, .ndim = 1, .shape = {2}, .transpose = 1};
    T_EQ_INT(al_st_write(tpath("bt.safetensors"), &badt, 1, err), AL_EINVAL);
    al_st_entry meta = {.name = "__metadata__", .data = w, .ndim = 1, .shape = {2}};
    T_EQ_INT(al_st_write(tpath("meta.safetensors"), &meta, 1, err), AL_EINVAL);
    err[0] = '\0';
    T_EQ_INT(al_st_write(tpath("no/dir/x.safetensors"), e, 2, err), AL_EIO);
    T_TRUE(contains(err, "x.safetensors"));

    /* Rewriting replaces atomically. */
    al_st_entry one = {.name = "only", .data = w, .ndim = 1, .shape = {2}};
    T_OK(al_st_write(p, &one, 1, err));
    T_OK(al_st_open(&f, p, err));
    T_EQ_INT(f.n, 1);
    al_st_close(&f);
}

/* F16, BF16 and I64 tensors written by hand, as PyTorch would. */
static void test_handmade(void) {
    char err[AL_ERRLEN];
    const uint16_t h16[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x7E00};
    const uint16_t hb[6] = {0x3F80, 0xC000, 0x477F, 0x0001, 0x7F80, 0x7FC0};
    uint8_t data[12 + 12 + 16];
    for (int i = 0; i < 6; i++) {
        data[2 * i] = (uint8_t)(h16[i] & 0xff);
        data[2 * i + 1] = (uint8_t)(h16[i] >> 8);
        data[12 + 2 * i] = (uint8_t)(hb[i] & 0xff);
        data[12 + 2 * i + 1] = (uint8_t)(hb[i] >> 8);
    }
    memset(data + 24, 0, 16);
    data[24] = 7;
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"half\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
        "\"bf\":{\"dtype\":\"BF16\",\"shape\":[6],\"data_offsets\":[12,24]},"
        "\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[24,40]}}   ";
    const char *p = tpath("hand.safetensors");
    write_st(p, hdr, data, sizeof data);
    al_st_file f;
    T_OK(al_st_open(&f, p, err));
    T_EQ_INT(f.n, 3);
    const al_st_tensor *t = al_st_find(&f, "half");
    float out[6];
    T_TRUE(t && t->dtype == AL_DT_F16);
    T_TRUE(t && al_st_read_f32(&f, t, out, 6, err) == AL_OK);
    T_EQ_INT(fbits(out[0]), fbits(1.0f));
    T_EQ_INT(fbits(out[1]), fbits(-2.0f));
    T_EQ_INT(fbits(out[2]), fbits(65504.0f));
    T_EQ_INT(fbits(out[3]), fbits(0x1p-24f));
    T_TRUE(isinf(out[4]) && out[4] > 0);
    T_TRUE(isnan(out[5]));
    t = al_st_find(&f, "bf");
    T_TRUE(t && t->dtype == AL_DT_BF16);
    T_TRUE(t && al_st_read_f32(&f, t, out, 6, err) == AL_OK);
    T_EQ_INT(fbits(out[0]), fbits(1.0f));
    T_EQ_INT(fbits(out[1]), fbits(-2.0f));
    T_EQ_INT(fbits(out[2]), fbits(65280.0f));
    T_EQ_INT(fbits(out[3]), fbits(0x1p-133f));
    T_TRUE(isinf(out[4]));
    T_TRUE(isnan(out[5]));
    /* Listed with dtype 0, refused only when read. */
    t = al_st_find(&f, "ids");
    T_TRUE(t && t->dtype == 0 && t->ndim == 1 && t->shape[0] == 2);
    err[0] = '\0';
    T_EQ_INT(t ? al_st_read_f32(&f, t, out, 2, err) : 0, AL_EUNSUP);
    T_TRUE(contains(err, "ids") && contains(err, "I64") && contains(err, "hand.safetensors"));
    al_st_close(&f);

    /* Header with leading whitespace inside, trailing data, exotic dtypes. */
    const char *hdr2 = "{ \"b\" : {\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]},"
                       "\"f\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[3,11]},"
                       "\"x\":{\"dtype\":\"NEWTYPE\",\"shape\":[1],\"data_offsets\":[11,12]}}";
    uint8_t d2[12] = {0};
    write_st(tpath("exotic.safetensors"), hdr2, d2, sizeof d2);
    T_OK(al_st_open(&f, tpath("exotic.safetensors"), err));
    T_EQ_INT(f.n, 3);
    err[0] = '\0';
    t = al_st_find(&f, "x");
    T_EQ_INT(t ? al_st_read_f32(&f, t, out, 1, err) : 0, AL_EUNSUP);
    T_TRUE(contains(err, "NEWTYPE"));
    al_st_close(&f);
}

/* ---------- hostile files ---------- */

/* Opens a file that must be refused with rc, err naming `want` (and the file). */
static void expect_reject(const char *name, int rc, const char *want) {
    char err[AL_ERRLEN] = "";
    al_st_file f;
    memset(&f, 0xAB, sizeof f);
    int got = al_st_open(&f, tpath(name), err);
    T_EQ_INT(got, rc);
    if (!contains(err, want)) fprintf(stderr, "  %s: err = \"%s\", wanted \"%s\"\n", name, err, want);
    T_TRUE(contains(err, want));
    T_TRUE(contains(err, name));
    /* out-parameter untouched on failure */
    uint8_t pat[sizeof f];
    memset(pat, 0xAB, sizeof pat);
    T_TRUE(memcmp(&f, pat, sizeof f) == 0);
    if (got == AL_OK) al_st_close(&f);
}

static void hostile(const char *name, const char *hdr, size_t data_n, int rc, const char *want) {
    uint8_t *d = calloc(data_n ? data_n : 1, 1);
    write_st(tpath(name), hdr, d, data_n);
    free(d);
    expect_reject(name, rc, want);
}

static void test_hostile(void) {
    char err[AL_ERRLEN];
    /* Truncated: a valid file cut short. */
    float w[16] = {0};
    al_st_entry e = {.name = "layer.w", .data = w, .ndim = 2, .shape = {4, 4}};
    T_OK(al_st_write(tpath("trunc.safetensors"), &e, 1, err));
    char *raw = NULL;
    size_t len = 0;
    T_OK(al_file_read(tpath("trunc.safetensors"), 1 << 20, &raw, &len, err));
    T_OK(al_file_write_atomic(tpath("trunc.safetensors"), raw, len - 4, err));
    expect_reject("trunc.safetensors", AL_EFORMAT, "layer.w");
    /* Cut inside the header. */
    T_OK(al_file_write_atomic(tpath("trunc2.safetensors"), raw, 20, err));
    expect_reject("trunc2.safetensors", AL_EFORMAT, "exceeds the file");
    free(raw);
    T_OK(al_file_write_atomic(tpath("tiny.safetensors"), "abc", 3, err));
    expect_reject("tiny.safetensors", AL_EFORMAT, "too short");

    /* Header length larger than the file, and 2^63. */
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    write_raw(tpath("hlen.safetensors"), 1000, h, strlen(h), "abcd", 4);
    expect_reject("hlen.safetensors", AL_EFORMAT, "exceeds the file");
    write_raw(tpath("h63.safetensors"), (uint64_t)1 << 63, h, strlen(h), "abcd", 4);
    expect_reject("h63.safetensors", AL_EFORMAT, "100 MB");
    write_raw(tpath("hmax.safetensors"), UINT64_MAX, h, strlen(h), "abcd", 4);
    expect_reject("hmax.safetensors", AL_EFORMAT, "100 MB");
    write_raw(tpath("h0.safetensors"), 0, "", 0, NULL, 0);
    expect_reject("h0.safetensors", AL_EFORMAT, "JSON object");

    /* Not JSON / not an object / bad entries. */
    hostile("json.safetensors", "{\"a\":{\"dtype\":\"F32\",", 0, AL_EFORMAT, "invalid JSON");
    hostile("arr.safetensors", "[1,2]", 0, AL_EFORMAT, "JSON object");
    hostile("junk.safetensors", "{}xyz", 0, AL_EFORMAT, "invalid JSON");
    hostile("nonobj.safetensors", "{\"w\":[1,2,3]}", 0, AL_EFORMAT, "'w': entry is not an object");
    hostile("nodtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, AL_EFORMAT,
            "'w': missing or non-string dtype");
    hostile("numdtype.safetensors", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
            AL_EFORMAT, "dtype");
    hostile("noshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
            AL_EFORMAT, "'w': missing or non-array shape");
    hostile("nooffs.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, AL_EFORMAT,
            "'w': data_offsets");
    hostile("offs3.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
            8, AL_EFORMAT, "data_offsets");
    hostile("meta.safetensors",
            "{\"__metadata__\":{\"k\":1},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
            4, AL_EFORMAT, "__metadata__");

    /* Offsets out of range, reversed, negative, overlapping, wrong size. */
    hostile("range.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
            8, AL_EFORMAT, "'w': data_offsets [0, 16] outside the 8-byte buffer");
    hostile("rev.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
            AL_EFORMAT, "'w': data_offsets [8, 4]");
    hostile("negoff.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
            8, AL_EFORMAT, "'w': data_offsets");
    hostile("bigoff.safetensors",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551620]}}", 8,
            AL_EFORMAT, "invalid JSON");
    hostile("overlap.safetensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
            12, AL_EFORMAT, "overlap");
    hostile("same.safetensors",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
            8, AL_EFORMAT, "'a' and 'b' overlap");
    hostile("size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}",
            24, AL_EFORMAT, "'w': data_offsets span 20 bytes but the F32 shape needs 24");
    hostile("size16.safetensors", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}",
            8, AL_EFORMAT, "'w': data_offsets span 4");
    hostile("sizei64.safetensors", "{\"w\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,8]}}",
            24, AL_EFORMAT, "'w': data_offsets span 8");

    /* Shapes: negative, non-integer, overflowing, too many dimensions. */
    hostile("negshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,4]}}",
            4, AL_EFORMAT, "'w': shape[0] is not a non-negative integer");
    hostile("fshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
            4, AL_EFORMAT, "'w': shape[0]");
    hostile("huge.safetensors",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
            "\"data_offsets\":[0,0]}}",
            4, AL_EFORMAT, "'w': shape is too large (overflow)");
    /* 2^62 elements * 4 bytes wraps 64 bits to 0: must not match the empty span. */
    hostile("wrap.safetensors",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 4,
            AL_EFORMAT, "'w'");
    hostile("wrap2.safetensors",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,0]}}", 4,
            AL_EFORMAT, "'w'");
    hostile("ndim.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}",
            4, AL_EUNSUP, "'w': 5 dimensions");

    /* Duplicate names. */
    hostile("dup.safetensors",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            8, AL_EFORMAT, "duplicate");

    /* A zero dimension makes huge others harmless. */
    write_st(tpath("zero.safetensors"),
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775807],\"data_offsets\":[0,0]}}",
             NULL, 0);
    al_st_file f;
    T_OK(al_st_open(&f, tpath("zero.safetensors"), err));
    al_st_close(&f);

    /* Missing file and directories. */
    err[0] = '\0';
    T_EQ_INT(al_st_open(&f, tpath("absent.safetensors"), err), AL_ENOENT);
    T_TRUE(contains(err, "absent.safetensors"));
    T_EQ_INT(al_st_open(&f, g_root, err), AL_EIO);
}

/* ---------- sharded folders ---------- */

static void write_text(const char *path, const char *text) {
    T_OK(al_file_write_atomic(path, text, strlen(text), NULL));
}

static void test_dir(void) {
    char err[AL_ERRLEN], d[1024];
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, c[3] = {7, 8, 9};
    snprintf(d, sizeof d, "%s/sharded", g_root);
    T_OK(al_mkdir_p(d, err));
    al_st_entry s1[2] = {{.name = "a", .data = a, .ndim = 2, .shape = {2, 2}},
                         {.name = "b", .data = b, .ndim = 1, .shape = {2}}};
    al_st_entry s2[1] = {{.name = "c", .data = c, .ndim = 1, .shape = {3}}};
    char p[1200];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", d);
    T_OK(al_st_write(p, s1, 2, err));
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
    T_OK(al_st_write(p, s2, 1, err));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    write_text(p, "{\"metadata\": {\"total_size\": 36},\n \"weight_map\": {\n"
                  "  \"a\": \"model-00001-of-00002.safetensors\",\n"
                  "  \"b\": \"model-00001-of-00002.safetensors\",\n"
                  "  \"c\": \"model-00002-of-00002.safetensors\"}}\n");
    al_st_dir dir;
    T_OK(al_st_dir_open(&dir, d, "model", err));
    T_EQ_INT(dir.n_files, 2); /* each shard opened once */
    const al_st_file *sf = NULL;
    const al_st_tensor *t = al_st_dir_find(&dir, "c", &sf);
    T_TRUE(t && sf && contains(sf->path, "model-00002-of-00002"));
    float out[4];
    T_TRUE(t && al_st_read_f32(sf, t, out, 3, err) == AL_OK && out[0] == 7 && out[2] == 9);
    t = al_st_dir_find(&dir, "a", &sf);
    T_TRUE(t && sf && contains(sf->path, "model-00001-of-00002"));
    T_TRUE(t && al_st_read_f32(sf, t, out, 4, err) == AL_OK && out[3] == 4);
    T_TRUE(al_st_dir_find(&dir, "zz", &sf) == NULL);
    al_st_dir_close(&dir);
    al_st_dir_close(&dir);

    /* model.safetensors is preferred over the index. */
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    T_OK(al_st_write(p, s2, 1, err));
    T_OK(al_st_dir_open(&dir, d, "model", err));
    T_EQ_INT(dir.n_files, 1);
    T_TRUE(al_st_dir_find(&dir, "a", NULL) == NULL && al_st_dir_find(&dir, "c", NULL) != NULL);
    al_st_dir_close(&dir);
    unlink(p);

    /* Neither form: AL_ENOENT. */
    err[0] = '\0';
    T_EQ_INT(al_st_dir_open(&dir, d, "adapter_model", err), AL_ENOENT);
    T_TRUE(contains(err, "adapter_model.safetensors"));

    struct {
        const char *index;
        int rc;
        const char *want;
    } bad[] = {
        {"{\"weight_map\": {\"a\": \"../x.safetensors\"}}", AL_EFORMAT, "../x.safetensors"},
        {"{\"weight_map\": {\"a\": \"sub/x.safetensors\"}}", AL_EFORMAT, "not a plain file name"},
        {"{\"weight_map\": {\"a\": \"/etc/passwd\"}}", AL_EFORMAT, "/etc/passwd"},
        {"{\"weight_map\": {\"a\": \"..\"}}", AL_EFORMAT, "not a plain file name"},
        {"{\"weight_map\": {\"a\": \"\"}}", AL_EFORMAT, "not a plain file name"},
        {"{\"weight_map\": {\"a\": 3}}", AL_EFORMAT, "'a'"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
         " \"c\": \"model-00001-of-00002.safetensors\"}}",
         AL_EFORMAT, "tensor 'c' is mapped to model-00001-of-00002.safetensors"},
        {"{\"weight_map\": {\"a\": \"model-00009-of-00009.safetensors\"}}", AL_ENOENT,
         "model-00009-of-00009.safetensors"},
        {"{\"metadata\": {}}", AL_EFORMAT, "weight_map"},
        {"{\"weight_map\": []}", AL_EFORMAT, "weight_map"},
        {"{\"weight_map\": {}}", AL_EFORMAT, "empty"},
        {"{\"weight_map\": {\"a\": \"x\", \"a\": \"y\"}}", AL_EFORMAT, "duplicate"},
        {"not json", AL_EFORMAT, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char ip[1200];
        snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", d);
        write_text(ip, bad[i].index);
        err[0] = '\0';
        memset(&dir, 0xCD, sizeof dir);
        int rc = al_st_dir_open(&dir, d, "model", err);
        T_EQ_INT(rc, bad[i].rc);
        if (!contains(err, bad[i].want))
            fprintf(stderr, "  index %zu: err = \"%s\", wanted \"%s\"\n", i, err, bad[i].want);
        T_TRUE(contains(err, bad[i].want));
        T_TRUE(rc != AL_OK || (al_st_dir_close(&dir), 0));
    }

    /* The same tensor in two shards is ambiguous. */
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
    al_st_entry s2b[2] = {{.name = "b", .data = b, .ndim = 1, .shape = {2}},
                          {.name = "c", .data = c, .ndim = 1, .shape = {3}}};
    T_OK(al_st_write(p, s2b, 2, err));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    write_text(p, "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                  " \"b\": \"model-00001-of-00002.safetensors\","
                  " \"c\": \"model-00002-of-00002.safetensors\"}}");
    err[0] = '\0';
    T_EQ_INT(al_st_dir_open(&dir, d, "model", err), AL_EFORMAT);
    T_TRUE(contains(err, "'b'") && contains(err, "both"));

    /* A broken shard is reported as itself. */
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
    write_text(p, "garbage!garbage!");
    err[0] = '\0';
    T_EQ_INT(al_st_dir_open(&dir, d, "model", err), AL_EFORMAT);
    T_TRUE(contains(err, "model-00002-of-00002.safetensors"));
}

/* ---------- pages released after reading ---------- */

/* Resident kB of the mapping that starts at addr (/proc/self/smaps), -1 if
 * the kernel does not say. */
static long mapping_rss_kb(const void *addr) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        /* a mapping's first line, "lo-hi perms offset dev inode path"; the
         * field lines ("Rss:   12 kB") never match it */
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3) {
            in = lo == (unsigned long)(uintptr_t)addr;
            continue;
        }
        if (in && sscanf(line, "Rss: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

/* Reading a tensor leaves none of its pages in the process (a model load
 * would otherwise hold its weights twice, the copy and the mapped file),
 * read with pread(2) or through the mapping (which drops them): after
 * every tensor of a 24 MiB file is read, the mapping's resident set is at
 * most the header and the pages the kernel maps around a fault (16 pages
 * each side; with huge pages, two of them), not the file. The values stay
 * readable: a second read re-reads the file. A page count, not a timing. */
static void test_pages_released(void) {
    char err[AL_ERRLEN];
    const size_t n32 = (size_t)4 << 20, n16 = (size_t)4 << 20; /* 16 MiB F32, 8 MiB F16 */
    float *a = malloc(n32 * sizeof *a), *out = malloc(n32 * sizeof *out);
    uint16_t *h = malloc(n16 * sizeof *h);
    T_TRUE(a && out && h);
    if (!a || !out || !h) return;
    for (size_t i = 0; i < n32; i++) a[i] = (float)i * 0.5f;
    for (size_t i = 0; i < n16; i++) h[i] = al_f32_to_f16((float)(i % 2048));
    /* a: 16 MiB F32 at [0, 16M); b: 8 MiB F16 after it */
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
             "\"b\":{\"dtype\":\"F16\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}}",
             n32, n32 * 4, n16, n32 * 4, n32 * 4 + n16 * 2);
    const char *p = tpath("release.safetensors");
    uint8_t *data = malloc(n32 * 4 + n16 * 2);
    T_TRUE(data != NULL);
    if (!data) return;
    memcpy(data, a, n32 * 4);
    memcpy(data + n32 * 4, h, n16 * 2);
    write_st(p, hdr, data, n32 * 4 + n16 * 2);
    free(data);

    al_st_file f;
    T_OK(al_st_open(&f, p, err));
    long before = mapping_rss_kb(f.map);
    if (before < 0) {
        printf("skipped: no Rss for the mapping in /proc/self/smaps\n");
    } else {
        const al_st_tensor *ta = al_st_find(&f, "a"), *tb = al_st_find(&f, "b");
        T_TRUE(ta && tb);
        T_TRUE(ta && al_st_read_f32(&f, ta, out, n32, err) == AL_OK &&
               memcmp(out, a, n32 * 4) == 0);
        long after_a = mapping_rss_kb(f.map);
        T_TRUE(tb && al_st_read_f32(&f, tb, out, n16, err) == AL_OK);
        int bad = 0;
        for (size_t i = 0; i < n16; i++) bad += out[i] != (float)(i % 2048);
        T_EQ_INT(bad, 0);
        long after_b = mapping_rss_kb(f.map);
        printf("mapping resident: %ld kB open, %ld kB after 16 MiB, %ld kB after 24 MiB\n",
               before, after_a, after_b);
        T_TRUE(after_a >= 0 && after_a <= 4096 + 256);
        T_TRUE(after_b >= 0 && after_b <= 4096 + 256);
        /* released pages come back from the file */
        T_TRUE(ta && al_st_read_f32(&f, ta, out, n32, err) == AL_OK &&
               memcmp(out, a, n32 * 4) == 0);
        /* The reads above go through pread(2) and map nothing; without
         * the descriptor (as when pread fails) they read the mapping and
         * must hand its pages back as they go. */
        if (f.fd >= 0) close(f.fd);
        f.fd = -1;
        T_TRUE(tb && al_st_read_f32(&f, tb, out, n16, err) == AL_OK);
        bad = 0;
        for (size_t i = 0; i < n16; i++) bad += out[i] != (float)(i % 2048);
        T_EQ_INT(bad, 0);
        T_TRUE(ta && al_st_read_f32(&f, ta, out, n32, err) == AL_OK &&
               memcmp(out, a, n32 * 4) == 0);
        long mapped = mapping_rss_kb(f.map);
        printf("mapping resident: %ld kB after both through the mapping\n", mapped);
        T_TRUE(mapped >= 0 && mapped <= 4096 + 256);
    }
    al_st_close(&f);
    free(a);
    free(out);
    free(h);
}

/* The reader's transposes (tiles, vector kernels, a band of rows per
 * thread) and straight copies (a share per thread) against the plain
 * element-by-element rule, for every dtype into fp32 and bf16, on odd
 * shapes below and above the size where the pool splits the work, with
 * tensors at offsets that leave their elements unaligned. */
static float src_value(al_dtype dt, const uint8_t *s, size_t i) {
    if (dt == AL_DT_F32) {
        float f;
        memcpy(&f, s + 4 * i, 4);
        return f;
    }
    uint16_t h = (uint16_t)(s[2 * i] | (s[2 * i + 1] << 8));
    return dt == AL_DT_F16 ? al_f16_to_f32(h) : al_bf16_to_f32(h);
}

static void test_transpose_odd(void) {
    char err[AL_ERRLEN];
    static const struct { const char *name; int rows, cols, pad; } k[] = {
        {"F32", 67, 131, 0}, {"F32", 131, 259, 2}, {"BF16", 131, 259, 0},
        {"BF16", 67, 131, 1}, {"F16", 131, 259, 0}, {"F32", 1, 77, 1},
        /* straight copies of more than the 256 KiB a thread preads and
         * converts at a time (800 KiB F32 and 600 KB F16, the last one at
         * an odd file offset); their rows are too long for the buffer, so
         * their transposes read the mapping */
        {"F32", 5, 40009, 3}, {"F16", 3, 100001, 1},
        /* transposes of more rows than fit the 256 KiB buffer at once */
        {"F32", 600, 131, 1}, {"BF16", 2100, 67, 0},
    };
    enum { N = sizeof k / sizeof k[0] };
    char hdr[4096];
    size_t off[N], len = 0, total = 0;
    uint64_t rng = 7;
    for (int i = 0; i < N; i++) {
        size_t es = k[i].name[1] == '3' ? 4 : 2;
        off[i] = total + (size_t)k[i].pad;
        total = off[i] + (size_t)k[i].rows * (size_t)k[i].cols * es;
        len += (size_t)snprintf(hdr + len, sizeof hdr - len,
                                "%s\"t%d\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                                i ? "," : "{", i, k[i].name, k[i].rows, k[i].cols, off[i], total);
    }
    snprintf(hdr + len, sizeof hdr - len, "}");
    uint8_t *data = malloc(total);
    T_TRUE(data != NULL);
    if (!data) return;
    for (size_t i = 0; i < total; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        data[i] = (uint8_t)(rng >> 56);
    }
    write_st(tpath("odd.safetensors"), hdr, data, total);
    al_st_file f;
    T_OK(al_st_open(&f, tpath("odd.safetensors"), err));
    for (int i = 0; i < N; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        const al_st_tensor *t = al_st_find(&f, name);
        size_t R = (size_t)k[i].rows, C = (size_t)k[i].cols, n = R * C;
        float *o32 = malloc(n * 4);
        uint16_t *o16 = malloc(n * 2);
        T_TRUE(t && o32 && o16);
        if (!t || !o32 || !o16) break;
        int bad = 0;
        for (int tr = 0; tr < 2; tr++) {
            T_OK(tr ? al_st_read_f32_t(&f, t, o32, n, err) : al_st_read_f32(&f, t, o32, n, err));
            T_OK(al_st_read_bf16(&f, t, o16, n, tr, err));
            for (size_t r = 0; r < R; r++)
                for (size_t c = 0; c < C; c++) {
                    float v = src_value(t->dtype, data + off[i], r * C + c);
                    size_t at = tr ? c * R + r : r * C + c;
                    uint16_t h = al_f32_to_bf16(v);
                    if (t->dtype == AL_DT_BF16)
                        memcpy(&h, data + off[i] + 2 * (r * C + c), 2);
                    bad += fbits(o32[at]) != fbits(v) || o16[at] != h;
                }
        }
        if (bad) printf("t%d (%s %zux%zu): %d elements differ\n", i, k[i].name, R, C, bad);
        T_EQ_INT(bad, 0);
        free(o32);
        free(o16);
    }
    /* serving in place: the file's own bytes where aligned to the element
     * size, NULL (copy) where not (t1 sits 2 bytes off) */
    int unaligned = 0;
    for (int i = 0; i < N; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        const al_st_tensor *t = al_st_find(&f, name);
        size_t es = k[i].name[1] == '3' ? 4 : 2, bytes = (size_t)k[i].rows * (size_t)k[i].cols * es;
        const void *p = al_st_data(&f, t);
        int aligned = (f.data_off + off[i]) % es == 0;
        unaligned += !aligned;
        T_EQ_INT(p != NULL, aligned);
        T_TRUE(al_st_serve(&f, t) == p);
        if (p) T_TRUE(memcmp(p, data + off[i], bytes) == 0);
    }
    T_TRUE(unaligned > 0);
    /* a handed-over mapping is the caller's; the file only closes */
    size_t size = 0;
    void *map = al_st_detach(&f, &size);
    T_TRUE(map != NULL && size == f.data_off + total);
    float row[77];
    T_EQ_INT(al_st_read_f32(&f, al_st_find(&f, "t5"), row, 77, err), AL_EINVAL);
    T_TRUE(al_st_data(&f, al_st_find(&f, "t5")) == NULL);
    al_st_unmap(map, size);
    al_st_close(&f);
    free(data);
}

int main(void) {
    g_root = t_tmpdir();
    /* two threads: the reader splits large tensors over the pool */
    T_OK(al_pool_init(2));
    test_half_known();
    test_half_exhaustive();
    test_roundtrip();
    test_handmade();
    test_hostile();
    test_dir();
    test_pages_released();
    test_transpose_odd();
    al_pool_shutdown();
    return t_done();
}

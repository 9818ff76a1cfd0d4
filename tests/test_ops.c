/* Tests of lib/compute/ops_nn.c: LayerNorm, RMSNorm (and over groups), gelu_new, SwiGLU,
 * GeGLU, RoPE and attention (with its scale, soft-cap and window), each three ways (STYLE.md §5):
 *   1. forward against values worked out by hand (Hugging Face conventions);
 *   2. backward against central differences (tests/gradcheck.h) on tiny,
 *      odd-sized tensors, for every input including weights and biases;
 *   3. the pooled/optimised path against a plain reference on larger random
 *      sizes with the pool at 2 threads (al_attention_forward_ref from ops.h;
 *      the others against double-precision loops written here).
 * Also: backward accumulates into its outputs, NULL gradients are skipped,
 * masked attention probabilities are exactly 0 and no gradient crosses a
 * segment. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"
#include "compute/ops.h"
#include "compute/pool.h"
#include "gradcheck.h"
#include "t.h"

/* ------------------------------------------------------------------ helpers */

static float *fbuf(size_t n) {
    float *p = al_calloc(n ? n : 1, sizeof(float));
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* max |a - ref| / max(|ref|, 1e-30) */
static double rel_err(const float *a, const double *ref, size_t n) {
    double md = 0.0, mr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return md / (mr > 1e-30 ? mr : 1e-30);
}

static double rel_err_f(const float *a, const float *ref, size_t n) {
    double md = 0.0, mr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (!(d <= md)) md = d;
        if (fabs((double)ref[i]) > mr) mr = fabs((double)ref[i]);
    }
    return md / (mr > 1e-30 ? mr : 1e-30);
}

static double *dbuf(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

/* Checks that backward accumulated: after = before + g (the gradient on zero). */
static void check_accum(const char *what, const float *g, const float *after, float before,
                        size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(after[i] - (before + g[i])) <= 1e-5f * (1.0f + fabsf(g[i])))) bad++;
    T_REPORT_(bad == 0, "%s accumulates: %d of %zu off", what, bad, n);
}

/* Runs fn(arg) inside a pool job on thread 0 only: nested kernels then see
 * al_pool_threads() == 1 and take their serial path. */
typedef struct { void (*fn)(void *); void *arg; } serial_job;
static void serial_tramp(void *ctx, int tid, int nth) {
    (void)nth;
    const serial_job *j = ctx;
    if (tid == 0) j->fn(j->arg);
}
static void run_serial(void (*fn)(void *), void *arg) {
    serial_job j = {fn, arg};
    al_pool_run(serial_tramp, &j);
}

/* ---------------------------------------------------------------- LayerNorm */

static void test_layernorm_hand(void) {
    const float x[3] = {1, 2, 3}, w1[3] = {1, 1, 1}, b0[3] = {0, 0, 0};
    float out[3], mean[1], rstd[1];
    al_layernorm_forward(out, mean, rstd, x, w1, b0, 1, 3, 1e-5f);
    /* mean 2, biased var 2/3: +-1/sqrt(2/3 + 1e-5) */
    T_NEAR(out[0], -1.2247357, 1e-5);
    T_NEAR(out[1], 0.0, 1e-6);
    T_NEAR(out[2], 1.2247357, 1e-5);
    T_NEAR(mean[0], 2.0, 1e-6);
    T_NEAR(rstd[0], 1.0 / sqrt(2.0 / 3.0 + 1e-5), 1e-5);
    /* weight and bias: out = xhat * w + b */
    const float w[3] = {2, 3, -1}, b[3] = {0.5f, -1, 4};
    al_layernorm_forward(out, NULL, NULL, x, w, b, 1, 3, 1e-5f);
    T_NEAR(out[0], -1.2247357 * 2 + 0.5, 1e-5);
    T_NEAR(out[1], -1.0, 1e-6);
    T_NEAR(out[2], 1.2247357 * -1 + 4, 1e-5);
    /* no bias */
    al_layernorm_forward(out, NULL, NULL, x, w, NULL, 1, 3, 1e-5f);
    T_NEAR(out[0], -1.2247357 * 2, 1e-5);
    /* a constant row normalises to 0 (eps keeps it finite) */
    const float c4[4] = {7, 7, 7, 7}, w4[4] = {1, 1, 1, 1};
    float o4[4], r4[1];
    al_layernorm_forward(o4, NULL, r4, c4, w4, NULL, 1, 4, 1e-5f);
    T_TRUE(o4[0] == 0.0f && o4[3] == 0.0f);
    T_NEAR(r4[0], 1.0 / sqrt(1e-5), 1e-1);
}

typedef struct {
    float *out, *mean, *rstd, *inp, *w, *b, *R;
    int N, C;
    float eps;
} ln_ctx;

static double ln_loss(void *vctx) {
    ln_ctx *c = vctx;
    al_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, c->eps);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_layernorm_grad(void) {
    const int N = 6, C = 5; /* B=2, T=3 */
    const size_t NC = (size_t)N * C;
    ln_ctx c = {fbuf(NC), fbuf(N), fbuf(N), fbuf(NC), fbuf(C), fbuf(C), fbuf(NC), N, C, 1e-5f};
    gc_fill(c.inp, NC, 1, 2.0f);
    gc_fill(c.w, C, 2, 1.5f);
    gc_fill(c.b, C, 3, 1.0f);
    gc_fill(c.R, NC, 4, 1.0f);
    float *dinp = fbuf(NC), *dw = fbuf(C), *db = fbuf(C);
    ln_loss(&c);
    al_layernorm_backward(dinp, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
    gc_check("layernorm.inp", c.inp, dinp, NC, ln_loss, &c, 1e-2f);
    gc_check("layernorm.w", c.w, dw, C, ln_loss, &c, 1e-2f);
    gc_check("layernorm.b", c.b, db, C, ln_loss, &c, 1e-2f);
    /* accumulation, and NULL outputs are skipped */
    float *a_inp = fbuf(NC), *a_w = fbuf(C), *a_b = fbuf(C);
    for (size_t i = 0; i < NC; i++) a_inp[i] = 1.0f;
    for (int i = 0; i < C; i++) a_w[i] = a_b[i] = 1.0f;
    ln_loss(&c);
    al_layernorm_backward(a_inp, a_w, a_b, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
    check_accum("layernorm.dinp", dinp, a_inp, 1.0f, NC);
    check_accum("layernorm.dw", dw, a_w, 1.0f, C);
    check_accum("layernorm.db", db, a_b, 1.0f, C);
    memset(a_inp, 0, NC * sizeof(float));
    al_layernorm_backward(a_inp, NULL, NULL, c.R, c.inp, c.w, c.mean, c.rstd, N, C);
    T_TRUE(memcmp(a_inp, dinp, NC * sizeof(float)) == 0);
    al_free(a_inp); al_free(a_w); al_free(a_b);
    al_free(dinp); al_free(dw); al_free(db);
    al_free(c.out); al_free(c.mean); al_free(c.rstd); al_free(c.inp); al_free(c.w);
    al_free(c.b); al_free(c.R);
}

typedef struct {
    float *out, *mean, *rstd, *dinp, *dw, *db;
    const float *inp, *w, *b, *dout;
    int N, C;
} ln_job;

static void ln_job_run(void *vj) {
    ln_job *j = vj;
    al_layernorm_forward(j->out, j->mean, j->rstd, j->inp, j->w, j->b, j->N, j->C, 1e-5f);
    al_layernorm_backward(j->dinp, j->dw, j->db, j->dout, j->inp, j->w, j->mean, j->rstd,
                          j->N, j->C);
}

/* Pooled (N*C above the inline threshold) against double loops. */
static void test_layernorm_large(void) {
    const int N = 67, C = 771;
    const size_t NC = (size_t)N * C;
    float *inp = fbuf(NC), *w = fbuf(C), *b = fbuf(C), *out = fbuf(NC), *mean = fbuf(N),
          *rstd = fbuf(N), *dout = fbuf(NC), *dinp = fbuf(NC), *dw = fbuf(C), *db = fbuf(C);
    gc_fill(inp, NC, 11, 3.0f);
    for (size_t i = 0; i < NC; i++) inp[i] += 0.5f; /* nonzero mean */
    gc_fill(w, C, 12, 1.0f);
    gc_fill(b, C, 13, 1.0f);
    gc_fill(dout, NC, 14, 1.0f);
    al_layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5f);
    al_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    double *ro = dbuf(NC), *rdi = dbuf(NC), *rdw = dbuf(C), *rdb = dbuf(C);
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
        v /= C;
        double r = 1.0 / sqrt(v + 1e-5), mg = 0, mgx = 0;
        for (int i = 0; i < C; i++) {
            double xh = (x[i] - m) * r, g = (double)w[i] * dy[i];
            ro[(size_t)n * C + i] = xh * w[i] + b[i];
            mg += g;
            mgx += g * xh;
            rdw[i] += dy[i] * xh;
            rdb[i] += dy[i];
        }
        mg /= C;
        mgx /= C;
        for (int i = 0; i < C; i++) {
            double xh = (x[i] - m) * r;
            rdi[(size_t)n * C + i] = ((double)w[i] * dy[i] - mg - xh * mgx) * r;
        }
    }
    T_TRUE(rel_err(out, ro, NC) < 1e-5);
    T_TRUE(rel_err(dinp, rdi, NC) < 1e-4);
    T_TRUE(rel_err(dw, rdw, C) < 1e-4);
    T_TRUE(rel_err(db, rdb, C) < 1e-4);
    /* one thread gives bit-identical results (rows and columns are split,
     * never the sums) */
    ln_job j = {fbuf(NC), fbuf(N), fbuf(N), fbuf(NC), fbuf(C), fbuf(C), inp, w, b, dout, N, C};
    run_serial(ln_job_run, &j);
    T_TRUE(memcmp(j.out, out, NC * sizeof(float)) == 0);
    T_TRUE(memcmp(j.dinp, dinp, NC * sizeof(float)) == 0);
    T_TRUE(memcmp(j.dw, dw, C * sizeof(float)) == 0);
    T_TRUE(memcmp(j.db, db, C * sizeof(float)) == 0);
    /* rows normalised together (the groups of rows of the forward and of
     * the backward's dinp) have the bits of each row alone */
    size_t off = 0;
    for (int n = 0; n < N; n++) {
        float m1, r1;
        const size_t e = (size_t)n * C;
        al_layernorm_forward(j.out, &m1, &r1, inp + e, w, b, 1, C, 1e-5f);
        off += memcmp(j.out, out + e, C * sizeof(float)) != 0 || memcmp(&m1, mean + n, sizeof m1) != 0 ||
               memcmp(&r1, rstd + n, sizeof r1) != 0;
        memset(j.dinp, 0, C * sizeof(float));
        al_layernorm_backward(j.dinp, NULL, NULL, dout + e, inp + e, w, mean + n, rstd + n, 1, C);
        off += memcmp(j.dinp, dinp + e, C * sizeof(float)) != 0;
    }
    T_EQ_INT(off, 0);
    al_free(j.out); al_free(j.mean); al_free(j.rstd); al_free(j.dinp); al_free(j.dw);
    al_free(j.db);
    free(ro); free(rdi); free(rdw); free(rdb);
    al_free(inp); al_free(w); al_free(b); al_free(out); al_free(mean); al_free(rstd);
    al_free(dout); al_free(dinp); al_free(dw); al_free(db);
}

/* ------------------------------------------------------------------ RMSNorm */

static void test_rmsnorm_hand(void) {
    const float x[2] = {3, 4}, w[2] = {1, 2};
    float out[2], rstd[1];
    al_rmsnorm_forward(out, rstd, x, w, 1, 2, 1e-6f);
    /* mean(x^2) = 12.5 */
    double r = 1.0 / sqrt(12.5 + 1e-6);
    T_NEAR(rstd[0], r, 1e-7);
    T_NEAR(out[0], 3 * r, 1e-6);
    T_NEAR(out[1], 2 * 4 * r, 1e-6);
    T_NEAR(out[0], 0.8485281, 1e-6);
    T_NEAR(out[1], 2.2627417, 1e-6);
    /* all zeros stay zero, finite */
    const float z[3] = {0, 0, 0}, w3[3] = {1, 1, 1};
    float o3[3];
    al_rmsnorm_forward(o3, NULL, z, w3, 1, 3, 1e-6f);
    T_TRUE(o3[0] == 0.0f && o3[1] == 0.0f && o3[2] == 0.0f);
}

typedef struct {
    float *out, *rstd, *inp, *w, *R;
    int N, C;
} rms_ctx;

static double rms_loss(void *vctx) {
    rms_ctx *c = vctx;
    al_rmsnorm_forward(c->out, c->rstd, c->inp, c->w, c->N, c->C, 1e-5f);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_rmsnorm_grad(void) {
    const int N = 6, C = 5;
    const size_t NC = (size_t)N * C;
    rms_ctx c = {fbuf(NC), fbuf(N), fbuf(NC), fbuf(C), fbuf(NC), N, C};
    gc_fill(c.inp, NC, 21, 2.0f);
    gc_fill(c.w, C, 22, 1.5f);
    gc_fill(c.R, NC, 23, 1.0f);
    float *dinp = fbuf(NC), *dw = fbuf(C);
    rms_loss(&c);
    al_rmsnorm_backward(dinp, dw, c.R, c.inp, c.w, c.rstd, N, C);
    gc_check("rmsnorm.inp", c.inp, dinp, NC, rms_loss, &c, 1e-2f);
    gc_check("rmsnorm.w", c.w, dw, C, rms_loss, &c, 1e-2f);
    float *a_inp = fbuf(NC), *a_w = fbuf(C);
    for (size_t i = 0; i < NC; i++) a_inp[i] = 1.0f;
    for (int i = 0; i < C; i++) a_w[i] = 1.0f;
    rms_loss(&c);
    al_rmsnorm_backward(a_inp, a_w, c.R, c.inp, c.w, c.rstd, N, C);
    check_accum("rmsnorm.dinp", dinp, a_inp, 1.0f, NC);
    check_accum("rmsnorm.dw", dw, a_w, 1.0f, C);
    memset(a_w, 0, C * sizeof(float));
    al_rmsnorm_backward(NULL, a_w, c.R, c.inp, c.w, c.rstd, N, C);
    T_TRUE(memcmp(a_w, dw, C * sizeof(float)) == 0);
    al_free(a_inp); al_free(a_w); al_free(dinp); al_free(dw);
    al_free(c.out); al_free(c.rstd); al_free(c.inp); al_free(c.w); al_free(c.R);
}

static void test_rmsnorm_large(void) {
    const int N = 67, C = 771;
    const size_t NC = (size_t)N * C;
    float *inp = fbuf(NC), *w = fbuf(C), *out = fbuf(NC), *rstd = fbuf(N), *dout = fbuf(NC),
          *dinp = fbuf(NC), *dw = fbuf(C);
    gc_fill(inp, NC, 31, 3.0f);
    gc_fill(w, C, 32, 1.0f);
    gc_fill(dout, NC, 33, 1.0f);
    al_rmsnorm_forward(out, rstd, inp, w, N, C, 1e-6f);
    al_rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    double *ro = dbuf(NC), *rdi = dbuf(NC), *rdw = dbuf(C);
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        double ms = 0, s = 0;
        for (int i = 0; i < C; i++) ms += (double)x[i] * x[i];
        double r = 1.0 / sqrt(ms / C + 1e-6);
        for (int i = 0; i < C; i++) {
            ro[(size_t)n * C + i] = w[i] * (x[i] * r);
            s += (double)w[i] * dy[i] * x[i];
            rdw[i] += dy[i] * x[i] * r;
        }
        for (int i = 0; i < C; i++)
            rdi[(size_t)n * C + i] = r * w[i] * dy[i] - x[i] * r * r * r * s / C;
    }
    T_TRUE(rel_err(out, ro, NC) < 1e-5);
    T_TRUE(rel_err(dinp, rdi, NC) < 1e-4);
    T_TRUE(rel_err(dw, rdw, C) < 1e-4);
    /* the backward's groups of rows: each row's dinp has the bits of the row alone */
    float *d1 = fbuf(C);
    size_t off = 0;
    for (int n = 0; n < N; n++) {
        const size_t e = (size_t)n * C;
        memset(d1, 0, C * sizeof(float));
        al_rmsnorm_backward(d1, NULL, dout + e, inp + e, w, rstd + n, 1, C);
        off += memcmp(d1, dinp + e, C * sizeof(float)) != 0;
    }
    T_EQ_INT(off, 0);
    al_free(d1);
    free(ro); free(rdi); free(rdw);
    al_free(inp); al_free(w); al_free(out); al_free(rstd); al_free(dout); al_free(dinp);
    al_free(dw);
}

/* --------------------------------------------------------------------- GELU */

static void test_gelu_hand(void) {
    const float x[6] = {1.0f, 0.0f, -1.0f, 2.0f, 10.0f, -10.0f};
    float o[6];
    al_gelu_forward(o, x, 6);
    /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    T_NEAR(o[0], 0.841192, 1e-6);
    T_TRUE(o[1] == 0.0f);
    T_NEAR(o[2], -0.158808, 1e-6);
    T_NEAR(o[3], 1.954598, 1e-6);
    T_NEAR(o[4], 10.0, 1e-6);
    T_NEAR(o[5], 0.0, 1e-6);
    /* derivative at 0 is 0.5 */
    const float z = 0.0f, one = 1.0f;
    float d = 0.0f;
    al_gelu_backward(&d, &one, &z, 1);
    T_NEAR(d, 0.5, 1e-7);
}

typedef struct {
    float *out, *inp, *R;
    size_t n;
} gelu_ctx;

static double gelu_loss(void *vctx) {
    gelu_ctx *c = vctx;
    al_gelu_forward(c->out, c->inp, c->n);
    return dot_d(c->out, c->R, c->n);
}

static void test_gelu_grad(void) {
    const size_t n = 7 * 5;
    gelu_ctx c = {fbuf(n), fbuf(n), fbuf(n), n};
    gc_fill(c.inp, n, 41, 3.0f);
    gc_fill(c.R, n, 42, 1.0f);
    float *d = fbuf(n), *a = fbuf(n);
    al_gelu_backward(d, c.R, c.inp, n);
    gc_check("gelu.inp", c.inp, d, n, gelu_loss, &c, 1e-2f);
    for (size_t i = 0; i < n; i++) a[i] = 1.0f;
    al_gelu_backward(a, c.R, c.inp, n);
    check_accum("gelu.dinp", d, a, 1.0f, n);
    al_free(d); al_free(a); al_free(c.out); al_free(c.inp); al_free(c.R);
}

/* The fused bf16 forwards give the bits of their unfused steps: the norms'
 * rows rounded as al_bf16_round rounds the fp32 output, and gelu's
 * snap, activation and rounding (odd sizes, above the pool's split too). */
static void test_bf16_fused(void) {
    const int Ns[2] = {7, 601}, C = 67;
    for (int k = 0; k < 2; k++) {
        const int N = Ns[k];
        const size_t NC = (size_t)N * C;
        float *x = fbuf(NC), *w = fbuf(C), *b = fbuf(C), *o1 = fbuf(NC), *o2 = fbuf(NC);
        float *m1 = fbuf(N), *r1 = fbuf(N), *m2 = fbuf(N), *r2 = fbuf(N);
        uint16_t *h1 = al_calloc(NC, 2), *h2 = al_calloc(NC, 2), *h3 = al_calloc(NC, 2), *h4 = al_calloc(NC, 2);
        T_TRUE(h1 && h2 && h3 && h4);
        gc_fill(x, NC, 47, 3.0f);
        gc_fill(w, C, 48, 1.0f);
        gc_fill(b, C, 49, 1.0f);
        al_layernorm_forward(o1, m1, r1, x, w, b, N, C, 1e-5f);
        al_bf16_round(h1, o1, NC);
        al_layernorm_forward_bf16(o2, h2, m2, r2, x, w, b, N, C, 1e-5f);
        T_TRUE(memcmp(o1, o2, NC * 4) == 0 && memcmp(h1, h2, NC * 2) == 0);
        T_TRUE(memcmp(m1, m2, (size_t)N * 4) == 0 && memcmp(r1, r2, (size_t)N * 4) == 0);
        memset(h2, 0, NC * 2); /* only the bf16 rows: the same bits, with and without a bias */
        memset(m2, 0, (size_t)N * 4);
        memset(r2, 0, (size_t)N * 4);
        al_layernorm_forward_bf16(NULL, h2, m2, r2, x, w, b, N, C, 1e-5f);
        T_TRUE(memcmp(h1, h2, NC * 2) == 0 && memcmp(m1, m2, (size_t)N * 4) == 0 &&
               memcmp(r1, r2, (size_t)N * 4) == 0);
        al_layernorm_forward(o1, NULL, NULL, x, w, NULL, N, C, 1e-5f);
        al_bf16_round(h1, o1, NC);
        al_layernorm_forward_bf16(NULL, h2, NULL, NULL, x, w, NULL, N, C, 1e-5f);
        T_TRUE(memcmp(h1, h2, NC * 2) == 0);
        al_rmsnorm_forward(o1, r1, x, w, N, C, 1e-5f);
        al_bf16_round(h1, o1, NC);
        al_rmsnorm_forward_bf16(o2, h2, r2, x, w, N, C, 1e-5f);
        T_TRUE(memcmp(o1, o2, NC * 4) == 0 && memcmp(h1, h2, NC * 2) == 0);
        memset(h2, 0, NC * 2); /* only the bf16 rows: the same bits */
        memset(r2, 0, (size_t)N * 4);
        al_rmsnorm_forward_bf16(NULL, h2, r2, x, w, N, C, 1e-5f);
        T_TRUE(memcmp(h1, h2, NC * 2) == 0 && memcmp(r1, r2, (size_t)N * 4) == 0);
        /* gelu: keep = bf16(x), out = bf16(gelu(widened keep)) */
        memcpy(o1, x, NC * 4);
        al_bf16_snap(o1, h1, NC);
        al_gelu_forward(o2, o1, NC);
        al_bf16_round(h3, o2, NC);
        al_gelu_forward_bf16(h4, h2, x, NC);
        T_TRUE(memcmp(h1, h2, NC * 2) == 0 && memcmp(h3, h4, NC * 2) == 0);
        al_free(x); al_free(w); al_free(b); al_free(o1); al_free(o2);
        al_free(m1); al_free(r1); al_free(m2); al_free(r2);
        al_free(h1); al_free(h2); al_free(h3); al_free(h4);
    }
}

/* LayerNorm with the residual add in its pass (GPT-2's mid = x + attention,
 * then ln2): the bits of al_acc then al_layernorm_forward_bf16, in the sum,
 * the rows (fp32, bf16 or both), mean and rstd; with and without a bias,
 * inline and split over the pool, row counts not a multiple of the kernel's
 * 4-row groups. */
static void test_layernorm_res(void) {
    static const int shapes[][2] = {{7, 67}, {601, 67}, {1030, 128}, {3, 5}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int N = shapes[k][0], C = shapes[k][1];
        const size_t NC = (size_t)N * C;
        float *y = fbuf(NC), *r = fbuf(NC), *w = fbuf(C), *b = fbuf(C), *y1 = fbuf(NC), *y2 = fbuf(NC);
        float *o1 = fbuf(NC), *o2 = fbuf(NC), *m1 = fbuf(N), *r1 = fbuf(N), *m2 = fbuf(N), *r2 = fbuf(N);
        uint16_t *h1 = al_calloc(NC, 2), *h2 = al_calloc(NC, 2);
        T_TRUE(h1 && h2);
        gc_fill(y, NC, 51 + k, 3.0f);
        gc_fill(r, NC, 61 + k, 3.0f);
        gc_fill(w, C, 71 + k, 1.0f);
        gc_fill(b, C, 81 + k, 1.0f);
        for (int v = 0; v < 3; v++) { /* out and out16; out16 alone; no bias, out alone */
            const float *bb = v == 2 ? NULL : b;
            memcpy(y1, y, NC * 4);
            memcpy(y2, y, NC * 4);
            memset(o1, 0, NC * 4), memset(o2, 0, NC * 4), memset(h1, 0, NC * 2), memset(h2, 0, NC * 2);
            al_acc(y1, r, NC);
            al_layernorm_forward_bf16(v == 1 ? NULL : o1, v == 2 ? NULL : h1, m1, r1, y1, w, bb, N, C, 1e-5f);
            al_layernorm_forward_res_bf16(v == 1 ? NULL : o2, v == 2 ? NULL : h2, m2, r2, y2, r, w, bb, N, C,
                                          1e-5f);
            T_REPORT_(memcmp(y1, y2, NC * 4) == 0 && memcmp(o1, o2, NC * 4) == 0 && memcmp(h1, h2, NC * 2) == 0 &&
                          memcmp(m1, m2, (size_t)N * 4) == 0 && memcmp(r1, r2, (size_t)N * 4) == 0,
                      "layernorm with residual %dx%d (%d) differs", N, C, v);
        }
        al_free(y); al_free(r); al_free(w); al_free(b); al_free(y1); al_free(y2); al_free(o1); al_free(o2);
        al_free(m1); al_free(r1); al_free(m2); al_free(r2); al_free(h1); al_free(h2);
    }
}

/* In place, from fp32 or bf16 inputs, above and below the pool's split:
 * the bits of the accumulating kernels into a zeroed buffer, negative zeros
 * of d turned to +0 as that sum turns them. */
static void test_gelu_inplace(void) {
    const size_t sizes[2] = {37, 100003};
    for (int k = 0; k < 2; k++) {
        const size_t n = sizes[k];
        float *x = fbuf(n), *dy = fbuf(n), *ref = fbuf(n), *d = fbuf(n);
        uint16_t *x16 = al_calloc(n, sizeof *x16);
        T_TRUE(x16 != NULL);
        gc_fill(x, n, 45, 6.0f);
        gc_fill(dy, n, 46, 1.0f);
        dy[1] = -0.0f;
        dy[2] = 0.0f;
        al_bf16_round(x16, x, n);
        for (int h = 0; h < 2; h++) {
            memset(ref, 0, n * sizeof *ref);
            if (h) al_gelu_backward_h(ref, dy, x16, n);
            else al_gelu_backward(ref, dy, x, n);
            memcpy(d, dy, n * sizeof *d);
            al_gelu_backward_inplace(d, h ? NULL : x, h ? x16 : NULL, n);
            T_TRUE(memcmp(d, ref, n * sizeof *d) == 0);
            T_TRUE(!signbit(d[1]));
        }
        al_free(x16); al_free(x); al_free(dy); al_free(ref); al_free(d);
    }
}

static void test_gelu_large(void) {
    const size_t n = 100003;
    float *x = fbuf(n), *o = fbuf(n), *dy = fbuf(n), *dx = fbuf(n);
    gc_fill(x, n, 43, 6.0f);
    gc_fill(dy, n, 44, 1.0f);
    al_gelu_forward(o, x, n);
    al_gelu_backward(dx, dy, x, n);
    double *ro = dbuf(n), *rd = dbuf(n);
    const double s = sqrt(2.0 / 3.14159265358979323846), a = 0.044715;
    for (size_t i = 0; i < n; i++) {
        double v = x[i], t = tanh(s * (v + a * v * v * v));
        ro[i] = 0.5 * v * (1 + t);
        rd[i] = dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * s * (1 + 3 * a * v * v));
    }
    T_TRUE(rel_err(o, ro, n) < 1e-5);
    T_TRUE(rel_err(dx, rd, n) < 1e-5);
    free(ro); free(rd);
    al_free(x); al_free(o); al_free(dy); al_free(dx);
}

/* The activations' backward on a bf16 input (the rounded h1 a bf16
 * training step keeps) gives the bits of the fp32 kernels on the widened
 * input accumulating into zeros, whatever dx held (it writes dx): odd
 * lengths and rows wider than the kernels' widening blocks, split over the
 * pool. */
static void test_act_backward_h(void) {
    const int N = 67, FF = 771;
    const size_t n1 = (size_t)N * FF, n2 = 2 * n1;
    float *x = fbuf(n2), *dy = fbuf(n1), *a = fbuf(n2), *b = fbuf(n2);
    uint16_t *x16 = al_calloc(n2, sizeof *x16);
    gc_fill(x, n2, 63, 6.0f);
    gc_fill(dy, n1, 64, 1.0f);
    al_bf16_round(x16, x, n2);
    al_bf16_widen(x, x16, n2);
    for (int k = 0; k < 3; k++) {
        memset(a, 0, n2 * sizeof(float));
        gc_fill(b, n2, 65, 1.0f);
        if (k == 0) al_gelu_backward(a, dy, x, n1), al_gelu_backward_h(b, dy, x16, n1);
        if (k == 1) al_swiglu_backward(a, dy, x, N, FF), al_swiglu_backward_h(b, dy, x16, N, FF);
        if (k == 2) al_geglu_backward(a, dy, x, N, FF), al_geglu_backward_h(b, dy, x16, N, FF);
        size_t nd = k == 0 ? n1 : n2; /* gelu's gradient is n1 wide */
        T_REPORT_(memcmp(a, b, nd * sizeof(float)) == 0, "activation %d: bf16-input backward differs", k);
        if (k == 0) continue;
        /* the fp32 ones writing: the bits of accumulating into zeros */
        gc_fill(b, n2, 66, 1.0f);
        if (k == 1) al_swiglu_backward_set(b, dy, x, N, FF);
        else al_geglu_backward_set(b, dy, x, N, FF);
        T_REPORT_(memcmp(a, b, n2 * sizeof(float)) == 0, "activation %d: writing backward differs", k);
        /* the gated ones also straight to bf16: the bits of rounding b */
        uint16_t *r16 = al_calloc(n2, sizeof *r16), *o16 = al_calloc(n2, sizeof *o16);
        T_TRUE(r16 && o16);
        al_bf16_round(r16, b, n2);
        if (k == 1) al_swiglu_backward_h16(o16, dy, x16, N, FF);
        else al_geglu_backward_h16(o16, dy, x16, N, FF);
        T_REPORT_(memcmp(r16, o16, n2 * sizeof *o16) == 0, "activation %d: bf16 backward differs", k);
        /* one odd row alone (inline, not split) */
        if (k == 1) al_swiglu_backward_h(b, dy, x16, 1, 5), al_swiglu_backward_h16(o16, dy, x16, 1, 5);
        else al_geglu_backward_h(b, dy, x16, 1, 5), al_geglu_backward_h16(o16, dy, x16, 1, 5);
        al_bf16_round(r16, b, 10);
        T_TRUE(memcmp(r16, o16, 10 * sizeof *o16) == 0);
        al_free(r16); al_free(o16);
    }
    al_free(x); al_free(dy); al_free(a); al_free(b); al_free(x16);
}

/* GPT-2's fused gelu backward with the bias sum (al_gelu_backward_h16):
 * the bits of al_gelu_backward_inplace then al_bf16_round_colsum, on the
 * pool (columns split, a 64-column block and a tail) and inline (small),
 * with and without the bias gradient, a -0 in dout among the values. */
static void test_gelu_backward_h16(void) {
    static const int shapes[][2] = {{67, 771}, {1, 5}, {9, 64}, {130, 200}, {3, 17}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int N = shapes[s][0], FF = shapes[s][1];
        const size_t n = (size_t)N * FF;
        float *x = fbuf(n), *dy = fbuf(n), *d = fbuf(n), *db = fbuf((size_t)FF), *db2 = fbuf((size_t)FF);
        uint16_t *x16 = al_calloc(n, sizeof *x16), *r16 = al_calloc(n, sizeof *r16),
                 *o16 = al_calloc(n, sizeof *o16);
        T_TRUE(x16 && r16 && o16);
        gc_fill(x, n, 71 + s, 6.0f);
        gc_fill(dy, n, 81 + s, 1.0f);
        gc_fill(db, (size_t)FF, 91 + s, 1.0f);
        memcpy(db2, db, (size_t)FF * sizeof *db);
        dy[0] = -0.0f;
        al_bf16_round(x16, x, n);
        memcpy(d, dy, n * sizeof *d);
        al_gelu_backward_inplace(d, NULL, x16, n);
        al_bf16_round_colsum(r16, db, d, N, FF);
        al_gelu_backward_h16(o16, db2, dy, x16, N, FF);
        T_REPORT_(memcmp(r16, o16, n * sizeof *o16) == 0, "gelu h16 %dx%d: d16 differs", N, FF);
        T_REPORT_(memcmp(db, db2, (size_t)FF * sizeof *db) == 0, "gelu h16 %dx%d: bias sums differ", N, FF);
        memset(o16, 0, n * sizeof *o16);
        al_gelu_backward_h16(o16, NULL, dy, x16, N, FF);
        T_REPORT_(memcmp(r16, o16, n * sizeof *o16) == 0, "gelu h16 %dx%d: d16 without db differs", N, FF);
        al_free(x); al_free(dy); al_free(d); al_free(db); al_free(db2);
        al_free(x16); al_free(r16); al_free(o16);
    }
}

/* ------------------------------------------------------------------- SwiGLU */

static void test_swiglu_hand(void) {
    /* N = 1, FF = 4: gate | up */
    const float gu[8] = {0, 1, -1, -100, 5, 2, 3, 7};
    float o[4];
    al_swiglu_forward(o, gu, 1, 4);
    T_TRUE(o[0] == 0.0f);
    T_NEAR(o[1], 2.0 / (1.0 + exp(-1.0)), 1e-6);  /* 1.4621172 */
    T_NEAR(o[2], -3.0 / (1.0 + exp(1.0)), 1e-6);  /* -0.8068243 */
    T_TRUE(isfinite(o[3]) && fabsf(o[3]) < 1e-30f); /* exp overflow: still finite */
    T_NEAR(o[1], 1.4621172, 1e-6);
    T_NEAR(o[2], -0.8068243, 1e-6);
}

typedef struct {
    float *out, *gu, *R;
    int N, FF;
} swi_ctx;

static double swi_loss(void *vctx) {
    swi_ctx *c = vctx;
    al_swiglu_forward(c->out, c->gu, c->N, c->FF);
    return dot_d(c->out, c->R, (size_t)c->N * c->FF);
}

static void test_swiglu_grad(void) {
    const int N = 3, FF = 5;
    swi_ctx c = {fbuf((size_t)N * FF), fbuf((size_t)N * 2 * FF), fbuf((size_t)N * FF), N, FF};
    gc_fill(c.gu, (size_t)N * 2 * FF, 51, 3.0f);
    gc_fill(c.R, (size_t)N * FF, 52, 1.0f);
    float *d = fbuf((size_t)N * 2 * FF), *a = fbuf((size_t)N * 2 * FF);
    al_swiglu_backward(d, c.R, c.gu, N, FF);
    gc_check("swiglu.gu", c.gu, d, (size_t)N * 2 * FF, swi_loss, &c, 1e-2f);
    for (int i = 0; i < N * 2 * FF; i++) a[i] = 1.0f;
    al_swiglu_backward(a, c.R, c.gu, N, FF);
    check_accum("swiglu.dgu", d, a, 1.0f, (size_t)N * 2 * FF);
    al_free(d); al_free(a); al_free(c.out); al_free(c.gu); al_free(c.R);
}

static void test_swiglu_large(void) {
    const int N = 67, FF = 771;
    const size_t n1 = (size_t)N * FF, n2 = 2 * n1;
    float *gu = fbuf(n2), *o = fbuf(n1), *dy = fbuf(n1), *dgu = fbuf(n2);
    gc_fill(gu, n2, 53, 6.0f);
    gc_fill(dy, n1, 54, 1.0f);
    al_swiglu_forward(o, gu, N, FF);
    al_swiglu_backward(dgu, dy, gu, N, FF);
    double *ro = dbuf(n1), *rd = dbuf(n2);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < FF; i++) {
            double g = gu[(size_t)n * 2 * FF + i], u = gu[(size_t)n * 2 * FF + FF + i];
            double sg = 1 / (1 + exp(-g)), y = dy[(size_t)n * FF + i];
            ro[(size_t)n * FF + i] = g * sg * u;
            rd[(size_t)n * 2 * FF + i] = y * u * sg * (1 + g * (1 - sg));
            rd[(size_t)n * 2 * FF + FF + i] = y * g * sg;
        }
    T_TRUE(rel_err(o, ro, n1) < 1e-5);
    T_TRUE(rel_err(dgu, rd, n2) < 1e-5);
    free(ro); free(rd);
    al_free(gu); al_free(o); al_free(dy); al_free(dgu);
}

/* The vectorised SiLU against the expf loops of its _ref twin, odd sizes
 * split over the pool, with the edges of the exp: large |g| both ways
 * (past expf's overflow silu is -0 / g itself), zeros, infinities, NaN. */
static void test_swiglu_ref(void) {
    const int N = 67, FF = 771;
    const size_t n1 = (size_t)N * FF, n2 = 2 * n1;
    float *gu = fbuf(n2), *o = fbuf(n1), *r = fbuf(n1);
    gc_fill(gu, n2, 55, 12.0f);
    const float edge[12] = {0.0f, -0.0f, 87.0f, -87.0f, 87.5f, -87.5f, 89.0f, -89.0f,
                            -100.0f, 1e-30f, -1e-30f, INFINITY};
    for (int i = 0; i < 12; i++) gu[(size_t)7 * 2 * FF + i] = edge[i];
    al_swiglu_forward(o, gu, N, FF);
    al_swiglu_forward_ref(r, gu, N, FF);
    size_t bad = 0;
    for (size_t i = 0; i < n1; i++) {
        double d = fabs((double)o[i] - (double)r[i]);
        bad += !(o[i] == r[i] || d <= 4e-7 * fabs((double)r[i]) + 1e-30); /* a few ulp */
    }
    T_EQ_INT((int)bad, 0);
    T_TRUE(o[(size_t)7 * FF + 0] == 0.0f && o[(size_t)7 * FF + 11] == INFINITY * gu[(size_t)7 * 2 * FF + FF + 11]);
    gu[0] = NAN;
    al_swiglu_forward(o, gu, 1, FF);
    T_TRUE(isnan(o[0]));
    al_free(gu); al_free(o); al_free(r);
}

/* bf16 mixed precision's one-pass SwiGLU and GeGLU: the bits of rounding h1
 * (al_bf16_snap), the fp32 kernel and rounding its output, odd sizes on
 * one thread and split over the pool. */
static void test_gated_forward_bf16(void) {
    const int Ns[2] = {3, 67}, FFs[2] = {5, 771};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 2; k++) {
            const int N = Ns[s], FF = FFs[s];
            const size_t n1 = (size_t)N * FF, n2 = 2 * n1;
            float *gu = fbuf(n2), *snap = fbuf(n2), *o = fbuf(n1);
            uint16_t *h1 = al_calloc(n2, 2), *h2 = al_calloc(n2, 2), *o1 = al_calloc(n1, 2),
                     *o2 = al_calloc(n1, 2);
            T_TRUE(h1 && h2 && o1 && o2);
            gc_fill(gu, n2, 56 + (uint64_t)s, 6.0f);
            memcpy(snap, gu, n2 * sizeof(float));
            al_bf16_snap(snap, h1, n2);
            if (k == 0) al_swiglu_forward(o, snap, N, FF), al_swiglu_forward_bf16(o2, h2, gu, N, FF);
            else al_geglu_forward(o, snap, N, FF), al_geglu_forward_bf16(o2, h2, gu, N, FF);
            al_bf16_round(o1, o, n1);
            T_REPORT_(memcmp(h1, h2, n2 * 2) == 0 && memcmp(o1, o2, n1 * 2) == 0,
                      "gated %d N=%d: one-pass bf16 forward differs", k, N);
            al_free(gu); al_free(snap); al_free(o);
            al_free(h1); al_free(h2); al_free(o1); al_free(o2);
        }
}

/* ------------------------------------------ GeGLU (Gemma's gelu_tanh MLP) */

static double gelu_tanh_d(double v) {
    return 0.5 * v * (1.0 + tanh(0.79788456080286536 * (v + 0.044715 * v * v * v))); /* sqrt(2/pi) */
}

static void test_geglu_hand(void) {
    /* gelu_tanh(1) = 0.5 (1 + tanh(0.7978846 * 1.044715)) = 0.8411920 */
    const float gu[6] = {1, 0, -2, 2, 5, 3};
    float o[3], r[3];
    al_geglu_forward(o, gu, 1, 3);
    al_geglu_forward_ref(r, gu, 1, 3);
    T_NEAR(o[0], 2.0 * 0.8411920, 1e-6);
    T_TRUE(o[1] == 0.0f);
    T_NEAR(o[2], 3.0 * gelu_tanh_d(-2.0), 1e-6); /* -0.1362 */
    for (int i = 0; i < 3; i++) T_NEAR(o[i], r[i], 1e-6);
}

typedef struct {
    float *out, *gu, *R;
    int N, FF;
} geglu_ctx;

static double geglu_loss(void *vctx) {
    geglu_ctx *c = vctx;
    al_geglu_forward(c->out, c->gu, c->N, c->FF);
    return dot_d(c->out, c->R, (size_t)c->N * c->FF);
}

static void test_geglu_grad(void) {
    const int N = 3, FF = 5;
    geglu_ctx c = {fbuf((size_t)N * FF), fbuf((size_t)N * 2 * FF), fbuf((size_t)N * FF), N, FF};
    gc_fill(c.gu, (size_t)N * 2 * FF, 151, 3.0f);
    gc_fill(c.R, (size_t)N * FF, 152, 1.0f);
    float *d = fbuf((size_t)N * 2 * FF), *a = fbuf((size_t)N * 2 * FF);
    al_geglu_backward(d, c.R, c.gu, N, FF);
    gc_check("geglu.gu", c.gu, d, (size_t)N * 2 * FF, geglu_loss, &c, 1e-2f);
    for (int i = 0; i < N * 2 * FF; i++) a[i] = 1.0f;
    al_geglu_backward(a, c.R, c.gu, N, FF);
    check_accum("geglu.dgu", d, a, 1.0f, (size_t)N * 2 * FF);
    al_free(d); al_free(a); al_free(c.out); al_free(c.gu); al_free(c.R);
}

static void test_geglu_large(void) {
    const int N = 67, FF = 771;
    const size_t n1 = (size_t)N * FF, n2 = 2 * n1;
    float *gu = fbuf(n2), *o = fbuf(n1), *ref = fbuf(n1);
    gc_fill(gu, n2, 153, 6.0f);
    al_geglu_forward(o, gu, N, FF);
    al_geglu_forward_ref(ref, gu, N, FF);
    double *ro = dbuf(n1);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < FF; i++)
            ro[(size_t)n * FF + i] =
                gelu_tanh_d(gu[(size_t)n * 2 * FF + i]) * gu[(size_t)n * 2 * FF + FF + i];
    T_TRUE(rel_err(o, ro, n1) < 1e-5);
    T_TRUE(rel_err_f(o, ref, n1) < 1e-6);
    free(ro);
    al_free(gu); al_free(o); al_free(ref);
}

/* ------------------------------------------- RMSNorm over groups (q/k norms) */

static void test_rmsnorm_groups_hand(void) {
    /* one row, two groups of D = 2 at stride 5 (a spare column), out stride 6:
     * group 0: mean(9, 16) = 12.5, r = 1/sqrt(12.5); (1 + w) = (2, 3)
     * group 1: mean(1, 1) = 1, r = 1 */
    const float x[5] = {3, 4, 1, -1, 99}, w[2] = {1, 2};
    float y[6], yr[6], rs[2];
    for (int i = 0; i < 6; i++) y[i] = yr[i] = 42.0f;
    al_rmsnorm_groups_forward(y, rs, x, w, 1.0f, 5, 6, 1, 2, 2, 0.0f);
    al_rmsnorm_groups_forward_ref(yr, NULL, x, w, 1.0f, 5, 6, 1, 2, 2, 0.0f);
    const double r0 = 1.0 / sqrt(12.5);
    T_NEAR(y[0], 3 * r0 * 2, 1e-6);
    T_NEAR(y[1], 4 * r0 * 3, 1e-6);
    T_NEAR(y[2], 2.0, 1e-6);
    T_NEAR(y[3], -3.0, 1e-6);
    T_TRUE(y[4] == 42.0f && y[5] == 42.0f); /* stride padding untouched */
    T_NEAR(rs[0], r0, 1e-7);
    for (int i = 0; i < 6; i++) T_NEAR(y[i], yr[i], 1e-6);
    /* woff 0 is LlamaRMSNorm: w * x_hat, bit for bit what al_rmsnorm_forward gives */
    float y0[4], l0[4];
    const float x4[4] = {0.5f, -2, 3, 1.25f}, w4[4] = {1.5f, -0.5f, 2, 0.25f};
    al_rmsnorm_groups_forward(y0, NULL, x4, w4, 0.0f, 4, 4, 1, 1, 4, 1e-6f);
    al_rmsnorm_forward(l0, NULL, x4, w4, 1, 4, 1e-6f);
    T_TRUE(memcmp(y0, l0, sizeof y0) == 0);
}

typedef struct {
    float *out, *rstd, *inp, *w, *R;
    float woff;
    int ldx, ldy, N, G, D;
} gnorm_ctx;

static double gnorm_loss(void *vctx) {
    gnorm_ctx *c = vctx;
    al_rmsnorm_groups_forward(c->out, c->rstd, c->inp, c->w, c->woff, c->ldx, c->ldy, c->N,
                              c->G, c->D, 1e-5f);
    return dot_d(c->out, c->R, (size_t)c->N * c->ldy);
}

static void gnorm_gradcheck(const char *name, int N, int G, int D, float woff, uint64_t seed) {
    const int ldx = G * D + 2, ldy = G * D + 3;
    gnorm_ctx c = {fbuf((size_t)N * ldy), fbuf((size_t)N * G), fbuf((size_t)N * ldx), fbuf(D),
                   fbuf((size_t)N * ldy), woff, ldx, ldy, N, G, D};
    gc_fill(c.inp, (size_t)N * ldx, seed, 2.0f);
    gc_fill(c.w, D, seed + 1, 0.5f);
    gc_fill(c.R, (size_t)N * ldy, seed + 2, 1.0f);
    /* padding columns of out hold 0 (the R there must not matter) */
    float *dx = fbuf((size_t)N * ldx), *dw = fbuf(D), *ax = fbuf((size_t)N * ldx);
    gnorm_loss(&c);
    al_rmsnorm_groups_backward(dx, dw, c.R, c.inp, c.w, woff, c.rstd, ldx, ldy, N, G, D);
    char what[64];
    snprintf(what, sizeof what, "%s.x", name);
    gc_check(what, c.inp, dx, (size_t)N * ldx, gnorm_loss, &c, 1e-2f);
    snprintf(what, sizeof what, "%s.w", name);
    gc_check(what, c.w, dw, D, gnorm_loss, &c, 1e-2f);
    int spare = 0;
    for (int n = 0; n < N; n++)
        for (int j = G * D; j < ldx; j++) spare += dx[(size_t)n * ldx + j] != 0.0f;
    T_EQ_INT(spare, 0);
    for (size_t i = 0; i < (size_t)N * ldx; i++) ax[i] = 1.0f;
    al_rmsnorm_groups_backward(ax, NULL, c.R, c.inp, c.w, woff, c.rstd, ldx, ldy, N, G, D);
    check_accum(what, dx, ax, 1.0f, (size_t)N * ldx);
    al_free(dx); al_free(dw); al_free(ax);
    al_free(c.out); al_free(c.rstd); al_free(c.inp); al_free(c.w); al_free(c.R);
}

static void test_rmsnorm_groups_grad(void) {
    gnorm_gradcheck("qknorm_heads", 3, 4, 5, 0.0f, 161);   /* Qwen3: per head */
    gnorm_gradcheck("qknorm_gemma", 2, 3, 4, 1.0f, 162);   /* Gemma 3: (1 + w) */
    gnorm_gradcheck("qknorm_full", 3, 1, 12, 0.0f, 163);   /* OLMo-2: all heads */
    gnorm_gradcheck("rmsnorm_1pw", 4, 1, 7, 1.0f, 164);    /* Gemma's main norms */
}

static void test_rmsnorm_groups_large(void) {
    const int N = 67, G = 5, D = 64, ld = G * D + 7;
    float *x = fbuf((size_t)N * ld), *w = fbuf(D), *y = fbuf((size_t)N * ld),
          *yr = fbuf((size_t)N * ld);
    gc_fill(x, (size_t)N * ld, 165, 3.0f);
    gc_fill(w, D, 166, 1.0f);
    al_rmsnorm_groups_forward(y, NULL, x, w, 1.0f, ld, ld, N, G, D, 1e-6f);
    al_rmsnorm_groups_forward_ref(yr, NULL, x, w, 1.0f, ld, ld, N, G, D, 1e-6f);
    T_TRUE(rel_err_f(y, yr, (size_t)N * ld) < 1e-6);
    al_free(x); al_free(w); al_free(y); al_free(yr);
}

/* -------------------------------------------------- attention variants by hand */

static void test_attention_opts_hand(void) {
    /* window 2, T = 3, zero scores: each row averages the values it sees:
     * row 0 {v0}, row 1 {v0, v1}, row 2 {v1, v2} (key 0 is out of the window) */
    const float zq[3] = {0, 0, 0}, v[3] = {1, 2, 4};
    float out[3], att[9];
    const al_attn_opts w2 = {.window = 2};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) al_attention_forward(out, att, zq, zq, v, 1, NULL, 1, 3, 1, 1, 1, &w2);
        else al_attention_forward_ref(out, att, zq, zq, v, 1, NULL, 1, 3, 1, 1, 1, &w2);
        T_NEAR(out[0], 1.0, 1e-6);
        T_NEAR(out[1], 1.5, 1e-6);
        T_NEAR(out[2], 3.0, 1e-6);
        T_TRUE(att[2 * 3 + 0] == 0.0f);
    }
    /* soft-cap 1, scale 1: row 1 scores {0, 2} become {0, tanh 2}, so
     * out = sigmoid(tanh 2) = 1 / (1 + e^-0.9640276) = 0.7239 with v = {0, 1} */
    const float q[2] = {0, 2}, k[2] = {0, 1}, v2[2] = {0, 1};
    const al_attn_opts cap = {.scale = 1.0f, .softcap = 1.0f};
    float o2[2], a2[4];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) al_attention_forward(o2, a2, q, k, v2, 1, NULL, 1, 2, 1, 1, 1, &cap);
        else al_attention_forward_ref(o2, a2, q, k, v2, 1, NULL, 1, 2, 1, 1, 1, &cap);
        T_NEAR(o2[1], 1.0 / (1.0 + exp(-tanh(2.0))), 1e-6);
        T_NEAR(o2[1], 0.7239, 1e-4);
    }
}

/* --------------------------------------------------------------------- RoPE */

static void test_rope_hand(void) {
    /* HD = 4, theta = 10000: inv_freq = {1, 1/100} */
    float cs[3 * 2], sn[3 * 2];
    al_rope_table(cs, sn, 3, 4, 10000.0f);
    T_TRUE(cs[0] == 1.0f && cs[1] == 1.0f && sn[0] == 0.0f && sn[1] == 0.0f);
    T_NEAR(cs[2], cos(1.0), 1e-7);
    T_NEAR(sn[2], sin(1.0), 1e-7);
    T_NEAR(cs[3], cos(0.01), 1e-7);
    T_NEAR(sn[3], sin(0.01), 1e-7);
    T_NEAR(cs[4], cos(2.0), 1e-7);
    T_NEAR(sn[5], sin(0.02), 1e-7);

    /* HD = 2 at pos 1 rotates by 1 radian; pos 0 is the identity. The row
     * has stride 5 with two heads and one extra column left untouched. */
    float c2[2], s2[2];
    al_rope_table(c2, s2, 2, 2, 10000.0f);
    float x[2 * 5] = {1, 0, 0, 1, 9, /* pos 0 */ 1, 0, 0, 1, 9 /* pos 1 */};
    const int32_t pos[2] = {0, 1};
    al_rope_forward(x, 5, pos, c2, s2, 2, 2, 2);
    T_TRUE(x[0] == 1.0f && x[1] == 0.0f && x[2] == 0.0f && x[3] == 1.0f && x[4] == 9.0f);
    T_NEAR(x[5], cos(1.0), 1e-7);  /* (1, 0) -> (cos 1, sin 1) */
    T_NEAR(x[6], sin(1.0), 1e-7);
    T_NEAR(x[7], -sin(1.0), 1e-7); /* (0, 1) -> (-sin 1, cos 1) */
    T_NEAR(x[8], cos(1.0), 1e-7);
    T_TRUE(x[9] == 9.0f);

    /* rotate-half pairing at HD = 4: dims (0, 2) and (1, 3) rotate together */
    float y[4] = {1, 2, 3, 4};
    const int32_t p1 = 1;
    al_rope_forward(y, 4, &p1, cs, sn, 1, 1, 4);
    T_NEAR(y[0], 1 * cos(1.0) - 3 * sin(1.0), 1e-6);
    T_NEAR(y[2], 3 * cos(1.0) + 1 * sin(1.0), 1e-6);
    T_NEAR(y[1], 2 * cos(0.01) - 4 * sin(0.01), 1e-6);
    T_NEAR(y[3], 4 * cos(0.01) + 2 * sin(0.01), 1e-6);
    /* backward is the inverse rotation: it undoes forward */
    al_rope_backward(y, 4, &p1, cs, sn, 1, 1, 4);
    T_NEAR(y[0], 1, 1e-6);
    T_NEAR(y[1], 2, 1e-6);
    T_NEAR(y[2], 3, 1e-6);
    T_NEAR(y[3], 4, 1e-6);
}

typedef struct {
    float *x, *y, *R, *cs, *sn;
    const int32_t *pos;
    int ld, N, nh, HD;
} rope_ctx;

static double rope_loss(void *vctx) {
    rope_ctx *c = vctx;
    size_t n = (size_t)c->N * c->ld;
    memcpy(c->y, c->x, n * sizeof(float));
    al_rope_forward(c->y, c->ld, c->pos, c->cs, c->sn, c->N, c->nh, c->HD);
    return dot_d(c->y, c->R, n);
}

static void test_rope_grad(void) {
    /* N = 6 rows of stride 27: 3 heads of 8 plus 3 columns RoPE must skip */
    const int N = 6, nh = 3, HD = 8, ld = 27, maxT = 50;
    const size_t n = (size_t)N * ld;
    const int32_t pos[6] = {0, 1, 2, 49, 7, 3};
    rope_ctx c = {fbuf(n), fbuf(n), fbuf(n), fbuf((size_t)maxT * HD / 2),
                  fbuf((size_t)maxT * HD / 2), pos, ld, N, nh, HD};
    al_rope_table(c.cs, c.sn, maxT, HD, 10000.0f);
    gc_fill(c.x, n, 61, 1.0f);
    gc_fill(c.R, n, 62, 1.0f);
    /* the gradient of sum(rope(x) * R) is rope_backward(R); columns past the
     * heads pass through unchanged */
    float *g = fbuf(n);
    memcpy(g, c.R, n * sizeof(float));
    al_rope_backward(g, ld, pos, c.cs, c.sn, N, nh, HD);
    gc_check("rope.x", c.x, g, n, rope_loss, &c, 1e-2f);
    /* adjoint: <rope(x), R> == <x, rope_backward(R)> */
    double lhs = rope_loss(&c), rhs = dot_d(c.x, g, n);
    T_NEAR(lhs, rhs, 1e-5 * (1 + fabs(lhs)));
    for (int r = 0; r < N; r++)
        for (int j = nh * HD; j < ld; j++) T_TRUE(g[(size_t)r * ld + j] == c.R[(size_t)r * ld + j]);
    al_free(g);
    al_free(c.x); al_free(c.y); al_free(c.R); al_free(c.cs); al_free(c.sn);
}

static void test_rope_large(void) {
    /* pooled: N * nh * HD above the inline threshold; against double math */
    const int N = 67, nh = 8, HD = 64, ld = nh * HD + 5, maxT = 300;
    const size_t n = (size_t)N * ld;
    float *cs = fbuf((size_t)maxT * HD / 2), *sn = fbuf((size_t)maxT * HD / 2);
    float *x = fbuf(n), *y = fbuf(n), *z = fbuf(n);
    int32_t pos[67];
    for (int i = 0; i < N; i++) pos[i] = (i * 37) % maxT;
    al_rope_table(cs, sn, maxT, HD, 500000.0f);
    gc_fill(x, n, 63, 1.0f);
    memcpy(y, x, n * sizeof(float));
    al_rope_forward(y, ld, pos, cs, sn, N, nh, HD);
    double *ry = dbuf(n);
    double maxang = 0;
    for (int r = 0; r < N; r++) {
        for (int j = 0; j < ld; j++) ry[(size_t)r * ld + j] = x[(size_t)r * ld + j];
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < HD / 2; i++) {
                /* the table in float as HF computes it; rotation in double */
                float inv = 1.0f / powf(500000.0f, (float)(2 * i) / (float)HD);
                double a = (double)((float)pos[r] * inv);
                if (a > maxang) maxang = a;
                size_t o = (size_t)r * ld + (size_t)h * HD + i;
                ry[o] = x[o] * cos(a) - x[o + HD / 2] * sin(a);
                ry[o + HD / 2] = x[o + HD / 2] * cos(a) + x[o] * sin(a);
            }
    }
    T_TRUE(rel_err(y, ry, n) < 1e-5);
    /* backward undoes forward (orthogonal) */
    memcpy(z, y, n * sizeof(float));
    al_rope_backward(z, ld, pos, cs, sn, N, nh, HD);
    T_TRUE(rel_err_f(z, x, n) < 1e-5);
    free(ry);
    al_free(cs); al_free(sn); al_free(x); al_free(y); al_free(z);
}

/* The rotations rounded to bf16 in one pass: the bits of al_rope_backward
 * (al_rope_forward) then al_bf16_round over the first width values of each
 * row (the rotated heads and the rest, v's columns in a qkv row); backward
 * leaves its input unchanged, forward rotates it as al_rope_forward; odd
 * sizes inline and split over the pool. */
static void test_rope_backward_bf16(void) {
    const int Ns[2] = {5, 67}, nhs[2] = {3, 8}, HDs[2] = {6, 64}, maxT = 300;
    for (int k = 0; k < 2; k++) {
        const int N = Ns[k], nh = nhs[k], HD = HDs[k], width = nh * HD + 7, ld = width + 3;
        const size_t n = (size_t)N * ld, nw = (size_t)N * width;
        float *cs = fbuf((size_t)maxT * HD / 2), *sn = fbuf((size_t)maxT * HD / 2);
        float *x = fbuf(n), *y = fbuf(n), *w = fbuf(nw);
        uint16_t *r16 = al_calloc(nw, 2), *o16 = al_calloc(nw, 2);
        int32_t pos[67];
        for (int i = 0; i < N; i++) pos[i] = (i * 37) % maxT;
        al_rope_table(cs, sn, maxT, HD, 10000.0f);
        gc_fill(x, n, 64 + (uint64_t)k, 1.0f);
        memcpy(y, x, n * sizeof(float));
        al_rope_backward(y, ld, pos, cs, sn, N, nh, HD);
        for (int r = 0; r < N; r++) memcpy(w + (size_t)r * width, y + (size_t)r * ld, (size_t)width * 4);
        al_bf16_round(r16, w, nw);
        memcpy(y, x, n * sizeof(float));
        al_rope_backward_bf16(o16, width, y, ld, pos, cs, sn, N, nh, HD);
        T_TRUE(memcmp(r16, o16, nw * 2) == 0);
        T_TRUE(memcmp(x, y, n * sizeof(float)) == 0);
        /* forward: rotated in place as al_rope_forward, and rounded */
        float *z = fbuf(n);
        memcpy(z, x, n * sizeof(float));
        al_rope_forward(z, ld, pos, cs, sn, N, nh, HD);
        for (int r = 0; r < N; r++) memcpy(w + (size_t)r * width, z + (size_t)r * ld, (size_t)width * 4);
        al_bf16_round(r16, w, nw);
        al_rope_forward_bf16(y, o16, width, ld, pos, cs, sn, N, nh, HD);
        T_TRUE(memcmp(r16, o16, nw * 2) == 0);
        T_TRUE(memcmp(z, y, n * sizeof(float)) == 0);
        al_free(z);
        al_free(cs); al_free(sn); al_free(x); al_free(y); al_free(w); al_free(r16); al_free(o16);
    }
}

/* ---------------------------------------------------------------- Attention */

/* Plain backward, loops only (ops.h has no al_attention_backward_ref). */
static void attn_backward_ref(float *dq, float *dk, float *dv, const float *dout,
                              const float *att, const float *q, const float *k,
                              const float *v, int ld, int B, int T, int NH, int NKV,
                              int HD, const al_attn_opts *o) {
    const int G = NH / NKV, OC = NH * HD;
    const double scale = o && o->scale > 0 ? o->scale : 1.0 / sqrt((double)HD);
    const double cap = o && o->softcap > 0 ? o->softcap : 0.0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int kh = h / G;
            for (int i = 0; i < T; i++) {
                const float *p = att + (((size_t)b * NH + h) * T + i) * T;
                const float *dO = dout + ((size_t)b * T + i) * OC + (size_t)h * HD;
                double D = 0;
                for (int j = 0; j < T; j++) {
                    const float *vj = v + ((size_t)b * T + j) * ld + (size_t)kh * HD;
                    double dp = 0;
                    for (int d = 0; d < HD; d++) dp += (double)dO[d] * vj[d];
                    D += p[j] * dp;
                }
                for (int j = 0; j < T; j++) {
                    size_t rj = ((size_t)b * T + j) * ld + (size_t)kh * HD;
                    size_t ri = ((size_t)b * T + i) * ld + (size_t)h * HD;
                    double dp = 0;
                    for (int d = 0; d < HD; d++) dp += (double)dO[d] * v[rj + d];
                    double ds = p[j] * (dp - D) * scale;
                    if (cap > 0) { /* through s' = cap tanh(s / cap), s = scale q.k */
                        double qk = 0;
                        for (int d = 0; d < HD; d++) qk += (double)q[ri + d] * k[rj + d];
                        double th = tanh(scale * qk / cap);
                        ds *= 1.0 - th * th;
                    }
                    for (int d = 0; d < HD; d++) {
                        dq[ri + d] += (float)(ds * k[rj + d]);
                        dk[rj + d] += (float)(ds * q[ri + d]);
                        dv[rj + d] += (float)(p[j] * dO[d]);
                    }
                }
            }
        }
}

static void test_attention_hand(void) {
    /* B=1, T=2, NH=NKV=1, HD=4 (scale 1/2), separate q, k, v of stride 4. */
    const float q[8] = {9, 9, 9, 9, 2, 0, 0, 0};
    const float k[8] = {0, 0, 0, 0, (float)log(3.0), 0, 0, 0};
    const float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float out[8], att[4];
    for (int pass = 0; pass < 2; pass++) {
        memset(out, 0xff, sizeof out); /* NaN: every element must be written */
        memset(att, 0xff, sizeof att);
        if (pass == 0) al_attention_forward(out, att, q, k, v, 4, NULL, 1, 2, 1, 1, 4, NULL);
        else al_attention_forward_ref(out, att, q, k, v, 4, NULL, 1, 2, 1, 1, 4, NULL);
        /* row 0 sees only key 0; row 1 scores {0, 2 ln3 / 2} -> {1/4, 3/4} */
        T_NEAR(att[0], 1.0, 1e-7);
        T_TRUE(att[1] == 0.0f);
        T_NEAR(att[2], 0.25, 1e-6);
        T_NEAR(att[3], 0.75, 1e-6);
        for (int d = 0; d < 4; d++) T_NEAR(out[d], v[d], 1e-6);
        for (int d = 0; d < 4; d++) T_NEAR(out[4 + d], 0.25 * v[d] + 0.75 * v[4 + d], 1e-5);
        T_NEAR(out[4], 4.0, 1e-5);
        T_NEAR(out[7], 7.0, 1e-5);
    }

    /* GQA by hand: fused rows [q0 q1 | k | v], NH=2, NKV=1, HD=1 (scale 1).
     * Row 1: head 0 scores {0, 0} -> {1/2, 1/2}; head 1 {0, ln3} -> {1/4, 3/4}. */
    const float l3 = (float)log(3.0);
    const float qkv[2 * 4] = {5, -5, 0, 10, /* t=0 */ 0, l3, 1, 20 /* t=1 */};
    float o2[4], a2[2 * 2 * 2];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) al_attention_forward(o2, a2, qkv, qkv + 2, qkv + 3, 4, NULL, 1, 2, 2, 1, 1, NULL);
        else al_attention_forward_ref(o2, a2, qkv, qkv + 2, qkv + 3, 4, NULL, 1, 2, 2, 1, 1, NULL);
        T_NEAR(o2[0], 10.0, 1e-6);
        T_NEAR(o2[1], 10.0, 1e-6);
        T_NEAR(o2[2], 15.0, 1e-5);
        T_NEAR(o2[3], 17.5, 1e-5);
        T_NEAR(a2[0 * 4 + 2], 0.5, 1e-6);  /* head 0, row 1 */
        T_NEAR(a2[1 * 4 + 3], 0.75, 1e-6); /* head 1, row 1, key 1 */
    }

    /* Head mapping h -> h / (NH/NKV): NH=4, NKV=2, T=1, HD=1. Output of each
     * head is its kv head's v: {1, 1, 2, 2} (not {1, 2, 1, 2}). */
    const float q4[4] = {0.3f, -1, 2, 0.5f}, k4[2] = {1, -1}, v4[2] = {1, 2};
    float o4[4], a4[4];
    al_attention_forward(o4, a4, q4, k4, v4, 4, NULL, 1, 1, 4, 2, 1, NULL);
    T_TRUE(o4[0] == 1.0f && o4[1] == 1.0f && o4[2] == 2.0f && o4[3] == 2.0f);
    T_TRUE(a4[0] == 1.0f && a4[3] == 1.0f);
    al_attention_forward_ref(o4, a4, q4, k4, v4, 4, NULL, 1, 1, 4, 2, 1, NULL);
    T_TRUE(o4[0] == 1.0f && o4[1] == 1.0f && o4[2] == 2.0f && o4[3] == 2.0f);
}

/* Segment masking: B=2, T=6. Sequence 0 packs two examples and padding
 * {1,1,1,2,2,0}; sequence 1 is one example then padding {3,3,3,3,0,0}. */
static void test_attention_segments(void) {
    enum { B = 2, T = 6, NH = 2, NKV = 1, HD = 4, LD = (NH + 2 * NKV) * HD };
    const int32_t seg[B * T] = {1, 1, 1, 2, 2, 0, 3, 3, 3, 3, 0, 0};
    float qkv[B * T * LD], qkv2[B * T * LD];
    gc_fill(qkv, B * T * LD, 71, 2.0f);
    float out[B * T * NH * HD], att[B * NH * T * T], out2[B * T * NH * HD], att2[B * NH * T * T];
    float outr[B * T * NH * HD], attr[B * NH * T * T];
    const float *q = qkv, *k = qkv + NH * HD, *v = qkv + (NH + NKV) * HD;
    al_attention_forward(out, att, q, k, v, LD, seg, B, T, NH, NKV, HD, NULL);
    al_attention_forward_ref(outr, attr, q, k, v, LD, seg, B, T, NH, NKV, HD, NULL);
    int bad_zero = 0, bad_sum = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *p = att + (((size_t)b * NH + h) * T + i) * T;
                const float *pr = attr + (((size_t)b * NH + h) * T + i) * T;
                double s = 0;
                for (int j = 0; j < T; j++) {
                    int vis = j <= i && seg[b * T + j] == seg[b * T + i];
                    if (!vis && (p[j] != 0.0f || pr[j] != 0.0f)) bad_zero++;
                    if (vis && !(p[j] > 0.0f)) bad_zero++;
                    s += p[j];
                }
                if (fabs(s - 1.0) > 1e-6) bad_sum++;
            }
    T_EQ_INT(bad_zero, 0);
    T_EQ_INT(bad_sum, 0);
    /* the first token of a segment and a lone padding token attend to themselves */
    T_TRUE(att[(0 * NH + 0) * T * T + 3 * T + 3] == 1.0f);
    T_TRUE(att[(0 * NH + 1) * T * T + 5 * T + 5] == 1.0f);
    for (int d = 0; d < HD; d++)
        T_TRUE(out[(size_t)5 * NH * HD + d] == v[(size_t)5 * LD + d]);
    T_TRUE(rel_err_f(out, outr, sizeof out / sizeof *out) < 1e-5);
    T_TRUE(rel_err_f(att, attr, sizeof att / sizeof *att) < 1e-5);

    /* Changing every token of segment 1 (and sequence 1) leaves segment 2 and
     * the padding of sequence 0 bit-identical. */
    memcpy(qkv2, qkv, sizeof qkv);
    for (int t = 0; t < 3; t++)
        for (int c = 0; c < LD; c++) qkv2[t * LD + c] += 1.5f;
    for (int t = T; t < 2 * T; t++)
        for (int c = 0; c < LD; c++) qkv2[t * LD + c] *= -0.5f;
    al_attention_forward(out2, att2, qkv2, qkv2 + NH * HD, qkv2 + (NH + NKV) * HD, LD, seg,
                         B, T, NH, NKV, HD, NULL);
    T_TRUE(memcmp(out + 3 * NH * HD, out2 + 3 * NH * HD, 3 * NH * HD * sizeof(float)) == 0);

    /* Backward: a gradient only on segment 2's outputs reaches only segment 2's
     * q, k, v; everything else stays exactly 0. */
    float dout[B * T * NH * HD], dqkv[B * T * LD];
    memset(dout, 0, sizeof dout);
    memset(dqkv, 0, sizeof dqkv);
    for (int t = 3; t < 5; t++)
        for (int c = 0; c < NH * HD; c++) dout[t * NH * HD + c] = 1.0f + 0.1f * (float)c;
    al_attention_backward(dqkv, dqkv + NH * HD, dqkv + (NH + NKV) * HD, dout, att, q, k, v, LD,
                          seg, B, T, NH, NKV, HD, NULL);
    int leak = 0, reach = 0;
    for (int t = 0; t < B * T; t++)
        for (int c = 0; c < LD; c++) {
            if ((t == 3 || t == 4)) reach += dqkv[t * LD + c] != 0.0f;
            else leak += dqkv[t * LD + c] != 0.0f;
        }
    T_EQ_INT(leak, 0);
    T_TRUE(reach > 0);
}

/* Masked keys may score far above the visible ones (another example's keys
 * aligned with this query): the softmax max must ignore them, or every
 * visible exponential underflows to 0 and the row becomes NaN. */
static void test_attention_masked_max(void) {
    enum { T = 21, HD = 4, LD = 3 * HD };
    int32_t seg[T];
    float qkv[T * LD], out[T * HD], att[T * T], outr[T * HD], attr[T * T];
    gc_fill(qkv, T * LD, 75, 1.0f);
    for (int t = 0; t < T; t++) {
        seg[t] = t < 10 ? 1 : 2;
        if (t < 10) qkv[t * LD + HD] = 100.0f;    /* k of example 1 */
        else qkv[t * LD] = 10.0f;                /* q of example 2 */
    }
    al_attention_forward(out, att, qkv, qkv + HD, qkv + 2 * HD, LD, seg, 1, T, 1, 1, HD, NULL);
    al_attention_forward_ref(outr, attr, qkv, qkv + HD, qkv + 2 * HD, LD, seg, 1, T, 1, 1, HD, NULL);
    int bad = 0;
    for (int i = 0; i < T; i++) {
        double sum = 0;
        for (int j = 0; j < T; j++) {
            if (!isfinite(att[i * T + j])) bad++;
            sum += att[i * T + j];
        }
        if (fabs(sum - 1.0) > 1e-6) bad++;
    }
    T_EQ_INT(bad, 0);
    T_TRUE(rel_err_f(out, outr, T * HD) < 1e-5);
    T_TRUE(rel_err_f(att, attr, T * T) < 1e-5);
}

typedef struct {
    float *out, *att, *q, *k, *v, *R;
    const int32_t *seg;
    int ld, B, T, NH, NKV, HD;
    const al_attn_opts *o;
} attn_ctx;

static double attn_loss(void *vctx) {
    attn_ctx *c = vctx;
    al_attention_forward(c->out, c->att, c->q, c->k, c->v, c->ld, c->seg, c->B, c->T, c->NH,
                         c->NKV, c->HD, c->o);
    return dot_d(c->out, c->R, (size_t)c->B * c->T * c->NH * c->HD);
}

/* Separate q, k, v buffers sharing the stride ld (with spare columns, whose
 * gradient must stay 0), checked one at a time. */
static void attn_gradcheck(const char *name, int B, int T, int NH, int NKV, int HD,
                           const int32_t *seg, uint64_t seed, const al_attn_opts *o) {
    const int ld = NH * HD + 3;
    const size_t nx = (size_t)B * T * ld, no = (size_t)B * T * NH * HD;
    attn_ctx c = {fbuf(no), fbuf((size_t)B * NH * T * T), fbuf(nx), fbuf(nx), fbuf(nx), fbuf(no),
                  seg, ld, B, T, NH, NKV, HD, o};
    gc_fill(c.q, nx, seed, 1.5f);
    gc_fill(c.k, nx, seed + 1, 1.5f);
    gc_fill(c.v, nx, seed + 2, 1.0f);
    gc_fill(c.R, no, seed + 3, 1.0f);
    float *dq = fbuf(nx), *dk = fbuf(nx), *dv = fbuf(nx);
    float *rq = fbuf(nx), *rk = fbuf(nx), *rv = fbuf(nx);
    attn_loss(&c);
    al_attention_backward(dq, dk, dv, c.R, c.att, c.q, c.k, c.v, ld, seg, B, T, NH, NKV, HD, o);
    attn_backward_ref(rq, rk, rv, c.R, c.att, c.q, c.k, c.v, ld, B, T, NH, NKV, HD, o);
    char what[96];
    snprintf(what, sizeof what, "%s.q", name);
    gc_check(what, c.q, dq, nx, attn_loss, &c, 1e-2f);
    snprintf(what, sizeof what, "%s.k", name);
    gc_check(what, c.k, dk, nx, attn_loss, &c, 1e-2f);
    snprintf(what, sizeof what, "%s.v", name);
    gc_check(what, c.v, dv, nx, attn_loss, &c, 1e-2f);
    T_TRUE(rel_err_f(dq, rq, nx) < 1e-5);
    T_TRUE(rel_err_f(dk, rk, nx) < 1e-5);
    T_TRUE(rel_err_f(dv, rv, nx) < 1e-5);
    /* spare columns untouched: k and v beyond NKV heads, all beyond NH heads */
    int spare = 0;
    for (int r = 0; r < B * T; r++) {
        for (int j = NH * HD; j < ld; j++) spare += dq[(size_t)r * ld + j] != 0.0f;
        for (int j = NKV * HD; j < ld; j++)
            spare += dk[(size_t)r * ld + j] != 0.0f || dv[(size_t)r * ld + j] != 0.0f;
    }
    T_EQ_INT(spare, 0);
    /* accumulates; NULL outputs are skipped */
    float *aq = fbuf(nx), *ak = fbuf(nx), *av = fbuf(nx);
    for (size_t i = 0; i < nx; i++) aq[i] = ak[i] = av[i] = 1.0f;
    attn_loss(&c);
    al_attention_backward(aq, ak, av, c.R, c.att, c.q, c.k, c.v, ld, seg, B, T, NH, NKV, HD, o);
    check_accum("attention.dq", dq, aq, 1.0f, nx);
    check_accum("attention.dk", dk, ak, 1.0f, nx);
    check_accum("attention.dv", dv, av, 1.0f, nx);
    memset(ak, 0, nx * sizeof(float));
    al_attention_backward(NULL, ak, NULL, c.R, c.att, c.q, c.k, c.v, ld, seg, B, T, NH, NKV, HD, o);
    T_TRUE(memcmp(ak, dk, nx * sizeof(float)) == 0);
    al_free(aq); al_free(ak); al_free(av);
    al_free(dq); al_free(dk); al_free(dv); al_free(rq); al_free(rk); al_free(rv);
    al_free(c.out); al_free(c.att); al_free(c.q); al_free(c.k); al_free(c.v); al_free(c.R);
}

static void test_attention_grad(void) {
    attn_gradcheck("attn_mha", 2, 3, 2, 2, 4, NULL, 81, NULL);
    attn_gradcheck("attn_gqa", 2, 3, 2, 1, 4, NULL, 82, NULL);
    const int32_t seg3[6] = {1, 2, 2, 1, 1, 0};
    attn_gradcheck("attn_gqa_seg", 2, 3, 2, 1, 4, seg3, 83, NULL);
    const int32_t seg5[10] = {4, 4, 5, 5, 5, 7, 7, 7, 0, 0};
    attn_gradcheck("attn_gqa4_seg", 2, 5, 4, 2, 3, seg5, 84, NULL);
    /* the family variants: Gemma 2's scale and soft-cap (small enough to bend
     * the scores), a sliding window shorter than T, all three with segments */
    const al_attn_opts cap = {.scale = 0.7f, .softcap = 1.5f};
    attn_gradcheck("attn_softcap", 2, 5, 4, 2, 3, NULL, 85, &cap);
    const al_attn_opts win = {.window = 2};
    attn_gradcheck("attn_window", 2, 5, 4, 2, 3, NULL, 86, &win);
    const al_attn_opts all = {.scale = 0.4f, .softcap = 2.0f, .window = 3};
    attn_gradcheck("attn_all_seg", 2, 5, 4, 2, 3, seg5, 87, &all);
}

typedef struct {
    float *out, *att, *d;
    const float *q, *k, *v, *dout;
    const int32_t *seg;
    int ld, B, T, NH, NKV, HD;
    const al_attn_opts *o;
} attn_job;

static void attn_job_run(void *vj) {
    attn_job *j = vj;
    al_attention_forward(j->out, j->att, j->q, j->k, j->v, j->ld, j->seg, j->B, j->T, j->NH,
                         j->NKV, j->HD, j->o);
    al_attention_backward(j->d, j->d + j->NH * j->HD, j->d + (j->NH + j->NKV) * j->HD, j->dout,
                          j->att, j->q, j->k, j->v, j->ld, j->seg, j->B, j->T, j->NH, j->NKV,
                          j->HD, j->o);
}

/* Optimised against _ref on larger random sizes, fused qkv rows, pool at 2. */
static void attn_compare(const char *name, int B, int T, int NH, int NKV, int HD,
                         const int32_t *seg, uint64_t seed, const al_attn_opts *o) {
    const int win = o ? o->window : 0;
    const int ld = (NH + 2 * NKV) * HD;
    const size_t nx = (size_t)B * T * ld, no = (size_t)B * T * NH * HD;
    const size_t na = (size_t)B * NH * T * T;
    float *qkv = fbuf(nx), *out = fbuf(no), *att = fbuf(na), *outr = fbuf(no), *attr = fbuf(na);
    float *dout = fbuf(no), *d = fbuf(nx), *dr = fbuf(nx), *d2 = fbuf(nx), *out2 = fbuf(no);
    gc_fill(qkv, nx, seed, 2.0f);
    gc_fill(dout, no, seed + 1, 1.0f);
    const float *q = qkv, *k = qkv + NH * HD, *v = qkv + (NH + NKV) * HD;
    for (size_t i = 0; i < na; i++) att[i] = NAN;
    al_attention_forward(out, att, q, k, v, ld, seg, B, T, NH, NKV, HD, o);
    al_attention_forward_ref(outr, attr, q, k, v, ld, seg, B, T, NH, NKV, HD, o);
    double eo = rel_err_f(out, outr, no), ea = rel_err_f(att, attr, na);
    T_REPORT_(eo < 1e-4, "%s: out rel err %g", name, eo);
    T_REPORT_(ea < 1e-4, "%s: att rel err %g", name, ea);
    int masked = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    int vis = j <= i && (!seg || seg[b * T + j] == seg[b * T + i]) &&
                              (!win || i - j < win);
                    if (!vis && att[(((size_t)b * NH + h) * T + i) * T + j] != 0.0f) masked++;
                }
    T_REPORT_(masked == 0, "%s: %d masked probabilities not exactly 0", name, masked);
    al_attention_backward(d, d + NH * HD, d + (NH + NKV) * HD, dout, att, q, k, v, ld, seg,
                          B, T, NH, NKV, HD, o);
    attn_backward_ref(dr, dr + NH * HD, dr + (NH + NKV) * HD, dout, attr, q, k, v, ld, B, T,
                      NH, NKV, HD, o);
    double ed = rel_err_f(d, dr, nx);
    T_REPORT_(ed < 1e-4, "%s: dqkv rel err %g", name, ed);
    /* deterministic: a second run is bit-identical, and so is a run on one
     * thread (results do not depend on the pool's thread count) */
    al_attention_forward(out2, att, q, k, v, ld, seg, B, T, NH, NKV, HD, o);
    al_attention_backward(d2, d2 + NH * HD, d2 + (NH + NKV) * HD, dout, att, q, k, v, ld, seg,
                          B, T, NH, NKV, HD, o);
    T_TRUE(memcmp(out, out2, no * sizeof(float)) == 0);
    T_TRUE(memcmp(d, d2, nx * sizeof(float)) == 0);
    memset(d2, 0, nx * sizeof(float));
    attn_job j = {out2, att, d2, q, k, v, dout, seg, ld, B, T, NH, NKV, HD, o};
    run_serial(attn_job_run, &j);
    T_REPORT_(memcmp(out, out2, no * sizeof(float)) == 0, "%s: 1-thread out differs", name);
    T_REPORT_(memcmp(d, d2, nx * sizeof(float)) == 0, "%s: 1-thread dqkv differs", name);
    al_free(qkv); al_free(out); al_free(att); al_free(outr); al_free(attr);
    al_free(dout); al_free(d); al_free(dr); al_free(d2); al_free(out2);
}

static void test_attention_large(void) {
    attn_compare("attn67_gqa", 2, 67, 4, 2, 64, NULL, 91, NULL);
    int32_t seg[2 * 67];
    for (int t = 0; t < 67; t++) {
        seg[t] = t < 30 ? 1 : t < 60 ? 2 : 0;     /* two packed examples + padding */
        seg[67 + t] = t < 50 ? 9 : 0;             /* one example + padding */
    }
    attn_compare("attn67_gqa_seg", 2, 67, 4, 2, 64, seg, 92, NULL);
    /* several query blocks and key tiles per row; MQA */
    attn_compare("attn200_mqa", 1, 200, 3, 1, 64, NULL, 93, NULL);
    /* a window across block boundaries (and one shorter than a block), with
     * segments; Gemma 2's scale and soft-cap over several key tiles */
    const al_attn_opts w = {.window = 70}, w2 = {.window = 5}, g2 = {.scale = 0.0625f, .softcap = 3.0f, .window = 150};
    attn_compare("attn200_window", 1, 200, 3, 1, 64, NULL, 95, &w);
    attn_compare("attn67_window_seg", 2, 67, 4, 2, 64, seg, 96, &w2);
    attn_compare("attn300_gemma2", 1, 300, 2, 1, 32, NULL, 97, &g2);
    int32_t seg2[300];
    for (int t = 0; t < 300; t++) seg2[t] = t < 10 ? 0 : t < 170 ? 1 : t < 290 ? 2 : 0;
    attn_compare("attn300_seg_leftpad", 1, 300, 2, 2, 32, seg2, 94, NULL);
}

int main(void) {
    if (al_pool_init(2) != AL_OK) {
        fprintf(stderr, "al_pool_init failed\n");
        return 2;
    }
    test_layernorm_hand();
    test_layernorm_grad();
    test_layernorm_large();
    test_rmsnorm_hand();
    test_rmsnorm_grad();
    test_rmsnorm_large();
    test_gelu_hand();
    test_gelu_grad();
    test_gelu_large();
    test_gelu_inplace();
    test_bf16_fused();
    test_layernorm_res();
    test_act_backward_h();
    test_gelu_backward_h16();
    test_swiglu_hand();
    test_swiglu_grad();
    test_swiglu_large();
    test_swiglu_ref();
    test_gated_forward_bf16();
    test_geglu_hand();
    test_geglu_grad();
    test_geglu_large();
    test_rmsnorm_groups_hand();
    test_rmsnorm_groups_grad();
    test_rmsnorm_groups_large();
    test_rope_hand();
    test_rope_grad();
    test_rope_large();
    test_rope_backward_bf16();
    test_attention_hand();
    test_attention_opts_hand();
    test_attention_segments();
    test_attention_masked_max();
    test_attention_grad();
    test_attention_large();
    al_pool_shutdown();
    return t_done();
}

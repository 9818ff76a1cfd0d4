/* Neural-network kernels of ops.h: LayerNorm, RMSNorm, gelu_new, SwiGLU,
 * RoPE and causal grouped-query attention with segment masking.
 *
 * Numerics follow Hugging Face transformers in convention: LayerNorm with
 * biased variance (torch.nn.LayerNorm), LlamaRMSNorm (mean of squares in
 * float32, x * rsqrt(var + eps), then weight *), NewGELUActivation
 * (gelu_new), SiLU(gate) * up, LlamaRotaryEmbedding (rotate_half). All
 * arithmetic is float32; there is no -ffast-math, and reductions use a fixed
 * order, so the results depend on the inputs only -- never on the pool's
 * thread count, because every output element is computed by the same code
 * path whichever thread owns it.
 *
 * Threads: kernels split their work over the compute pool (pool.h) with a
 * static partition. Row-wise work (norm inputs, softmax rows) is split by
 * rows; parameter gradients (dw, db) by columns, so that no two threads ever
 * write the same element. Attention forward is split over (b, head, query
 * block); attention backward over (b, kv head) so that all the query heads
 * that write one kv head's dk/dv run on one thread.
 *
 * The models run FlashAttention-2 (al_flash_attention_*, at the end of this
 * file): key tiles with an online softmax, the probabilities recomputed in
 * backward from each row's log-sum-exp, memory linear in T. The kernels
 * that store the (T, T) probabilities stay as the tested reference. Their
 * tile products are OpenBLAS's sgemm in fp32 (al_blas_sgemm, blas.h) and,
 * in bf16 mode, al_t16_gemm (ops_bf16.c: bf16 operands packed per tile,
 * fp32 sums, AVX512_BF16's vdpbf16ps where the CPU has it): at 64 x 64 x
 * head_dim a oneDNN call costs more than the work. Their row loops (max, exp, rescale) are vector code;
 * in fp32 each row's sum keeps its written order, so fp32 results are the
 * bits they were before the bf16 products came.
 *
 * Attention forward computes scores and P V with single-threaded
 * al_blas_sgemm on (query block x visible keys) tiles, skipping keys that no
 * row of the block can see (causal future; earlier segments). Its softmax
 * uses a branch-free polynomial exp (< 1 ulp on [-87.3, 0], like torch's
 * vectorised exp); the _ref twin uses plain loops and expf. Backward uses
 * D_i = sum_j P_ij dP_ij (two passes over each query block's key tiles), so
 * it needs no (T, T) scratch.
 *
 * The family variants (al_attn_opts) are a score scale, Gemma 2's tanh
 * soft-cap of the scores (backward recomputes the scores of a tile for the
 * cap's derivative) and a sliding window, which masks keys like the causal
 * future and narrows each block's key range.
 *
 * No kernel allocates: attention uses fixed-size tiles on the stack (at most
 * 2 AT_BQ * AT_BK + AT_BQ floats, 66 KB) and the caller's att buffer. */
#include "compute/ops.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "al.h"
#include "compute/blas.h"
#include "compute/pool.h"
#include "compute/simd.h"

/* Below this many elements a kernel runs inline rather than waking the pool.
 * Results are the same either way. */
#define NN_PAR_MIN 32768

/* Helpers of the kernels' loops: inlined into each SIMD clone (simd.h), so
 * they run at the clone's vector width. */
#define NN_INLINE inline __attribute__((always_inline))

/* Attention tiles: query rows per block, key columns per tile. */
#define AT_BQ 64
#define AT_BK 128

static void nn_run(al_pool_fn fn, void *ctx, size_t work) {
    if (work < NN_PAR_MIN || al_pool_threads() <= 1) fn(ctx, 0, 1);
    else al_pool_run(fn, ctx);
}

/* Sums with 8 independent lanes: a fixed order the compiler can vectorise
 * without reassociating (no -ffast-math needed). */
/* Inlined as nn_dot: called from SIMD clones (the norms, attention), it runs
 * at their width, and a LayerNorm row's sums pay no call. */
static NN_INLINE float nn_sum(const float *x, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += x[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Inlined: called from SIMD clones (RMSNorm's forward), it runs at their
 * width; a call from the AVX-512 clone ran the portable build's SSE2 copy. */
static NN_INLINE float nn_dot(const float *x, const float *y, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[i + l] * y[i + l];
    for (int l = 0; i < n; i++, l++) acc[l] += x[i] * y[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* sum((x - m)^2), inlined as nn_sum */
static NN_INLINE float nn_sqdev(const float *x, float m, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            float d = x[i + l] - m;
            acc[l] += d * d;
        }
    for (int l = 0; i < n; i++, l++) {
        float d = x[i] - m;
        acc[l] += d * d;
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* ---------------------------------------------------------------- LayerNorm */

typedef struct {
    float *out, *mean, *rstd, *dinp, *dw, *db;
    const float *inp, *w, *b, *dout, *cmean, *crstd;
    uint16_t *out16;      /* forward: each row of out also rounded to bf16 here */
    float *acc;           /* forward: the input's rows are acc += res first (inp is acc) */
    const float *res;
    int N, C;
    float eps;
} nn_norm_ctx;

/* The parameters' share of a norm's backward, by columns (rows in order):
 * dw += sum_n dout * xhat, db += sum_n dout, where xhat = (inp - mean) * rstd
 * for LayerNorm and inp * rstd for RMSNorm (cmean NULL: no mean to take). */
static NN_INLINE void norm_params_bwd(const nn_norm_ctx *x, int tid, int nth) {
    if (!x->dw && !x->db) return;
    const int C = x->C;
    long lo, hi;
    al_split(C, nth, tid, &lo, &hi);
    for (int n = 0; n < x->N; n++) {
        const float *in = x->inp + (size_t)n * C, *dy = x->dout + (size_t)n * C;
        const float r = x->crstd[n];
        if (x->dw && x->cmean) {
            const float m = x->cmean[n];
            for (long c = lo; c < hi; c++) x->dw[c] += dy[c] * ((in[c] - m) * r);
        } else if (x->dw) {
            for (long c = lo; c < hi; c++) x->dw[c] += dy[c] * (in[c] * r);
        }
        if (x->db)
            for (long c = lo; c < hi; c++) x->db[c] += dy[c];
    }
}

/* nn_sum's combination of its 8 lanes. */
static NN_INLINE float nn_lanes8(const float *acc) {
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* LayerNorm's mean and rstd of NN_ROWS consecutive rows (stride C) at once:
 * each row's sums are nn_sum's and nn_sqdev's (the same lanes, order and
 * combination), so the same bits, but the rows' chains of dependent adds
 * run side by side. One row at a time, a row of 128 waited on its sums'
 * latency more than it computed. */
#define NN_ROWS 4
static NN_INLINE void ln_stats_rows(const float *in, int C, float eps, float *m, float *r) {
    float acc[NN_ROWS][8] = {{0}};
    int i = 0;
    for (; i + 8 <= C; i += 8)
        for (int k = 0; k < NN_ROWS; k++)
            for (int l = 0; l < 8; l++) acc[k][l] += in[(size_t)k * C + i + l];
    for (int k = 0; k < NN_ROWS; k++) {
        for (int j = i, l = 0; j < C; j++, l++) acc[k][l] += in[(size_t)k * C + j];
        m[k] = nn_lanes8(acc[k]) / (float)C;
    }
    float sq[NN_ROWS][8] = {{0}};
    for (i = 0; i + 8 <= C; i += 8)
        for (int k = 0; k < NN_ROWS; k++)
            for (int l = 0; l < 8; l++) {
                float d = in[(size_t)k * C + i + l] - m[k];
                sq[k][l] += d * d;
            }
    for (int k = 0; k < NN_ROWS; k++) {
        for (int j = i, l = 0; j < C; j++, l++) {
            float d = in[(size_t)k * C + j] - m[k];
            sq[k][l] += d * d;
        }
        r[k] = 1.0f / sqrtf(nn_lanes8(sq[k]) / (float)C + eps);
    }
}

AL_SIMD_CLONES static void layernorm_fwd_fn(void *vctx, int tid, int nth) {
    const nn_norm_ctx *x = vctx;
    const int C = x->C;
    long lo, hi;
    al_split(x->N, nth, tid, &lo, &hi);
    float ms[NN_ROWS], rs[NN_ROWS];
    for (long n0 = lo; n0 < hi; n0 += NN_ROWS) {
        const int R = hi - n0 < NN_ROWS ? (int)(hi - n0) : NN_ROWS;
        if (x->acc) /* the residual add, on rows about to be read */
            for (size_t e = (size_t)n0 * C; e < (size_t)(n0 + R) * C; e++) x->acc[e] += x->res[e];
        if (R == NN_ROWS) {
            ln_stats_rows(x->inp + (size_t)n0 * C, C, x->eps, ms, rs);
        } else {
            for (int k = 0; k < R; k++) {
                const float *in = x->inp + (size_t)(n0 + k) * C;
                ms[k] = nn_sum(in, C) / (float)C;
                rs[k] = 1.0f / sqrtf(nn_sqdev(in, ms[k], C) / (float)C + x->eps);
            }
        }
        for (int k = 0; k < R; k++) {
            const long n = n0 + k;
            const float *in = x->inp + (size_t)n * C;
            float *o = x->out ? x->out + (size_t)n * C : NULL;
            const float m = ms[k], r = rs[k];
            if (x->mean) x->mean[n] = m;
            if (x->rstd) x->rstd[n] = r;
            uint16_t *o16 = x->out16 ? x->out16 + (size_t)n * C : NULL;
            if (!o) { /* only the bf16 rows, rounded as they are made */
                if (x->b)
                    for (int c = 0; c < C; c++) o16[c] = al_bf16_round1((in[c] - m) * r * x->w[c] + x->b[c]);
                else
                    for (int c = 0; c < C; c++) o16[c] = al_bf16_round1((in[c] - m) * r * x->w[c]);
                continue;
            }
            if (x->b) {
                for (int c = 0; c < C; c++) o[c] = (in[c] - m) * r * x->w[c] + x->b[c];
            } else {
                for (int c = 0; c < C; c++) o[c] = (in[c] - m) * r * x->w[c];
            }
            /* al_bf16_round's bits, inline: a call per row cost more than the rounding */
            if (o16)
                for (int c = 0; c < C; c++) o16[c] = al_bf16_round1(o[c]);
        }
    }
}

/* out (N, C) = (inp - mean) * rstd * w + b; mean, rstd (N). b, mean and rstd
 * may be NULL (no bias; inference without saving). */
void al_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps) {
    al_layernorm_forward_bf16(out, NULL, mean, rstd, inp, w, b, N, C, eps);
}

void al_layernorm_forward_bf16(float *out, uint16_t *out16, float *mean, float *rstd,
                               const float *inp, const float *w, const float *b, int N, int C,
                               float eps) {
    AL_ASSERT((out || out16) && inp && w && N >= 0 && C > 0);
    nn_norm_ctx x = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w,
                     .b = b, .out16 = out16, .N = N, .C = C, .eps = eps};
    nn_run(layernorm_fwd_fn, &x, (size_t)N * (size_t)C);
}

void al_layernorm_forward_res_bf16(float *out, uint16_t *out16, float *mean, float *rstd, float *inp,
                                   const float *res, const float *w, const float *b, int N, int C,
                                   float eps) {
    AL_ASSERT((out || out16) && inp && res && w && N >= 0 && C > 0);
    nn_norm_ctx x = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .w = w, .b = b,
                     .out16 = out16, .acc = inp, .res = res, .N = N, .C = C, .eps = eps};
    nn_run(layernorm_fwd_fn, &x, (size_t)N * (size_t)C);
}

AL_SIMD_CLONES static void layernorm_bwd_fn(void *vctx, int tid, int nth) {
    const nn_norm_ctx *x = vctx;
    const int C = x->C;
    long lo, hi;
    /* rows: dinp += (g - mean(g) - xhat * mean(g * xhat)) * rstd, g = w * dout;
     * the two means of NN_ROWS rows at once, as the forward's (the rows'
     * chains of adds side by side, each row's lanes and order kept) */
    if (x->dinp) {
        al_split(x->N, nth, tid, &lo, &hi);
        for (long n0 = lo; n0 < hi; n0 += NN_ROWS) {
            const int R = hi - n0 < NN_ROWS ? (int)(hi - n0) : NN_ROWS;
            float acc_g[NN_ROWS][8] = {{0}}, acc_gx[NN_ROWS][8] = {{0}};
            int c = 0;
            if (R == NN_ROWS)
                for (; c + 8 <= C; c += 8)
                    for (int k = 0; k < NN_ROWS; k++) {
                        const size_t e = (size_t)(n0 + k) * C + c;
                        const float m = x->cmean[n0 + k], r = x->crstd[n0 + k];
                        for (int l = 0; l < 8; l++) {
                            float g = x->w[c + l] * x->dout[e + l];
                            acc_g[k][l] += g;
                            acc_gx[k][l] += g * ((x->inp[e + l] - m) * r);
                        }
                    }
            for (int k = 0; k < R; k++) {
                const long n = n0 + k;
                const float *in = x->inp + (size_t)n * C, *dy = x->dout + (size_t)n * C;
                float *dx = x->dinp + (size_t)n * C;
                const float m = x->cmean[n], r = x->crstd[n];
                int j = c;
                for (; j + 8 <= C; j += 8) /* a row not in a whole group */
                    for (int l = 0; l < 8; l++) {
                        float g = x->w[j + l] * dy[j + l];
                        acc_g[k][l] += g;
                        acc_gx[k][l] += g * ((in[j + l] - m) * r);
                    }
                for (int l = 0; j < C; j++, l++) {
                    float g = x->w[j] * dy[j];
                    acc_g[k][l] += g;
                    acc_gx[k][l] += g * ((in[j] - m) * r);
                }
                float mg = nn_sum(acc_g[k], 8) / (float)C, mgx = nn_sum(acc_gx[k], 8) / (float)C;
                for (j = 0; j < C; j++) {
                    float xhat = (in[j] - m) * r;
                    dx[j] += (x->w[j] * dy[j] - mg - xhat * mgx) * r;
                }
            }
        }
    }
    norm_params_bwd(x, tid, nth);
}

void al_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean,
                           const float *rstd, int N, int C) {
    AL_ASSERT(dout && inp && w && mean && rstd && N >= 0 && C > 0);
    nn_norm_ctx x = {.dinp = dinp, .dw = dw, .db = db, .dout = dout, .inp = inp,
                     .w = w, .cmean = mean, .crstd = rstd, .N = N, .C = C};
    nn_run(layernorm_bwd_fn, &x, (size_t)N * (size_t)C);
}

/* ------------------------------------------------------------------ RMSNorm */

AL_SIMD_CLONES static void rmsnorm_fwd_fn(void *vctx, int tid, int nth) {
    const nn_norm_ctx *x = vctx;
    const int C = x->C;
    long lo, hi;
    al_split(x->N, nth, tid, &lo, &hi);
    for (long n = lo; n < hi; n++) {
        const float *in = x->inp + (size_t)n * C;
        float var = nn_dot(in, in, C) / (float)C;
        float r = 1.0f / sqrtf(var + x->eps);
        if (x->rstd) x->rstd[n] = r;
        /* as LlamaRMSNorm: weight * (x * rsqrt(var + eps)) */
        if (!x->out) { /* only the bf16 rows, rounded as they are made */
            uint16_t *o16 = x->out16 + (size_t)n * C;
            for (int c = 0; c < C; c++) o16[c] = al_bf16_round1(x->w[c] * (in[c] * r));
            continue;
        }
        float *o = x->out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = x->w[c] * (in[c] * r);
        if (x->out16) al_bf16_round(x->out16 + (size_t)n * C, o, (size_t)C);
    }
}

/* rstd may be NULL (inference). */
void al_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w,
                        int N, int C, float eps) {
    al_rmsnorm_forward_bf16(out, NULL, rstd, inp, w, N, C, eps);
}

void al_rmsnorm_forward_bf16(float *out, uint16_t *out16, float *rstd, const float *inp,
                             const float *w, int N, int C, float eps) {
    AL_ASSERT((out || out16) && inp && w && N >= 0 && C > 0);
    nn_norm_ctx x = {.out = out, .rstd = rstd, .inp = inp, .w = w, .out16 = out16, .N = N,
                     .C = C, .eps = eps};
    nn_run(rmsnorm_fwd_fn, &x, (size_t)N * (size_t)C);
}

AL_SIMD_CLONES static void rmsnorm_bwd_fn(void *vctx, int tid, int nth) {
    const nn_norm_ctx *x = vctx;
    const int C = x->C;
    long lo, hi;
    /* y = w * x * r, r = (mean(x^2) + eps)^-1/2, dr/dx = -r^3 x / C:
     * dx = r * g - x * r^3 * sum(g * x) / C, with g = w * dy. */
    if (x->dinp) { /* sum(g * x) of NN_ROWS rows at once, as LayerNorm's backward */
        al_split(x->N, nth, tid, &lo, &hi);
        for (long n0 = lo; n0 < hi; n0 += NN_ROWS) {
            const int R = hi - n0 < NN_ROWS ? (int)(hi - n0) : NN_ROWS;
            float acc[NN_ROWS][8] = {{0}};
            int c = 0;
            if (R == NN_ROWS)
                for (; c + 8 <= C; c += 8)
                    for (int q = 0; q < NN_ROWS; q++) {
                        const size_t e = (size_t)(n0 + q) * C + c;
                        for (int l = 0; l < 8; l++) acc[q][l] += x->w[c + l] * x->dout[e + l] * x->inp[e + l];
                    }
            for (int q = 0; q < R; q++) {
                const long n = n0 + q;
                const float *in = x->inp + (size_t)n * C, *dy = x->dout + (size_t)n * C;
                float *dx = x->dinp + (size_t)n * C;
                const float r = x->crstd[n];
                int j = c;
                for (; j + 8 <= C; j += 8) /* a row not in a whole group */
                    for (int l = 0; l < 8; l++) acc[q][l] += x->w[j + l] * dy[j + l] * in[j + l];
                for (int l = 0; j < C; j++, l++) acc[q][l] += x->w[j] * dy[j] * in[j];
                const float k = nn_sum(acc[q], 8) * r * r * r / (float)C;
                for (j = 0; j < C; j++) dx[j] += r * (x->w[j] * dy[j]) - in[j] * k;
            }
        }
    }
    norm_params_bwd(x, tid, nth);
}

void al_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, const float *rstd, int N, int C) {
    AL_ASSERT(dout && inp && w && rstd && N >= 0 && C > 0);
    nn_norm_ctx x = {.dinp = dinp, .dw = dw, .dout = dout, .inp = inp, .w = w,
                     .crstd = rstd, .N = N, .C = C};
    nn_run(rmsnorm_bwd_fn, &x, (size_t)N * (size_t)C);
}

/* ---------------------------------------------- RMSNorm over groups of rows */

typedef struct {
    float *out, *rstd, *dinp, *dw;
    const float *inp, *w, *dout, *crstd;
    float woff, eps;
    int ldx, ldy, N, G, D;
} nn_gnorm_ctx;

/* One group: y = (x * r) * (w + woff), r = 1 / sqrt(mean(x^2) + eps). */
static float gnorm_fwd_one(float *y, const float *in, const float *w, float woff, int D,
                           float eps) {
    float r = 1.0f / sqrtf(nn_dot(in, in, D) / (float)D + eps);
    for (int c = 0; c < D; c++) y[c] = (in[c] * r) * (w[c] + woff);
    return r;
}

static void gnorm_fwd_fn(void *vctx, int tid, int nth) {
    const nn_gnorm_ctx *x = vctx;
    long lo, hi;
    al_split((long)x->N * x->G, nth, tid, &lo, &hi);
    for (long t = lo; t < hi; t++) {
        long n = t / x->G, g = t % x->G;
        float r = gnorm_fwd_one(x->out + (size_t)n * x->ldy + (size_t)g * x->D,
                                x->inp + (size_t)n * x->ldx + (size_t)g * x->D, x->w, x->woff,
                                x->D, x->eps);
        if (x->rstd) x->rstd[t] = r;
    }
}

void al_rmsnorm_groups_forward(float *out, float *rstd, const float *inp, const float *w,
                               float woff, int ldx, int ldy, int N, int G, int D, float eps) {
    AL_ASSERT(out && inp && w && N >= 0 && G > 0 && D > 0 && ldx >= G * D && ldy >= G * D);
    nn_gnorm_ctx x = {.out = out, .rstd = rstd, .inp = inp, .w = w, .woff = woff, .eps = eps,
                      .ldx = ldx, .ldy = ldy, .N = N, .G = G, .D = D};
    nn_run(gnorm_fwd_fn, &x, (size_t)N * (size_t)G * (size_t)D);
}

void al_rmsnorm_groups_forward_ref(float *out, float *rstd, const float *inp, const float *w,
                                   float woff, int ldx, int ldy, int N, int G, int D,
                                   float eps) {
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *in = inp + (size_t)n * ldx + (size_t)g * D;
            float *y = out + (size_t)n * ldy + (size_t)g * D;
            double ss = 0.0;
            for (int c = 0; c < D; c++) ss += (double)in[c] * in[c];
            float r = 1.0f / sqrtf((float)(ss / D) + eps);
            for (int c = 0; c < D; c++) y[c] = (in[c] * r) * (w[c] + woff);
            if (rstd) rstd[(size_t)n * G + g] = r;
        }
}

/* y = x r v with v = w + woff: dx = r v dy - x r^3 sum(v dy x) / D;
 * dw = sum over rows and groups of dy x r. */
static void gnorm_bwd_fn(void *vctx, int tid, int nth) {
    const nn_gnorm_ctx *x = vctx;
    const int D = x->D;
    long lo, hi;
    if (x->dinp) {
        al_split((long)x->N * x->G, nth, tid, &lo, &hi);
        for (long t = lo; t < hi; t++) {
            long n = t / x->G, g = t % x->G;
            const float *in = x->inp + (size_t)n * x->ldx + (size_t)g * D;
            const float *dy = x->dout + (size_t)n * x->ldy + (size_t)g * D;
            float *dx = x->dinp + (size_t)n * x->ldx + (size_t)g * D;
            const float r = x->crstd[t];
            float acc = 0.0f;
            for (int c = 0; c < D; c++) acc += (x->w[c] + x->woff) * dy[c] * in[c];
            const float k = acc * r * r * r / (float)D;
            for (int c = 0; c < D; c++) dx[c] += r * ((x->w[c] + x->woff) * dy[c]) - in[c] * k;
        }
    }
    if (x->dw) {
        al_split(D, nth, tid, &lo, &hi);
        for (int n = 0; n < x->N; n++)
            for (int g = 0; g < x->G; g++) {
                const float *in = x->inp + (size_t)n * x->ldx + (size_t)g * D;
                const float *dy = x->dout + (size_t)n * x->ldy + (size_t)g * D;
                const float r = x->crstd[(size_t)n * x->G + g];
                for (long c = lo; c < hi; c++) x->dw[c] += dy[c] * (in[c] * r);
            }
    }
}

void al_rmsnorm_groups_backward(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, float woff, const float *rstd, int ldx,
                                int ldy, int N, int G, int D) {
    AL_ASSERT(dout && inp && w && rstd && N >= 0 && G > 0 && D > 0);
    nn_gnorm_ctx x = {.dinp = dinp, .dw = dw, .dout = dout, .inp = inp, .w = w, .woff = woff,
                      .crstd = rstd, .ldx = ldx, .ldy = ldy, .N = N, .G = G, .D = D};
    nn_run(gnorm_bwd_fn, &x, (size_t)N * (size_t)G * (size_t)D);
}

/* --------------------------------------------------------------------- GELU */

/* Type punning through a union (defined in C11) keeps the bit tricks below
 * free of memcpy, so GCC vectorises them at -O2. */
typedef union { float f; uint32_t u; } nn_fu;

/* exp(x) for x <= 0 (softmax after subtracting the row max), vectorisable:
 * x = n ln2 + r, |r| <= ln2/2, exp(r) by the Cephes expf polynomial (about
 * 1 ulp, like torch's vectorised exp), scaled by 2^n built from its bits.
 * Below -87.3 (where 2^n would leave the normal range) it returns 0; NaN
 * stays NaN. Selects are bit masks and all integer work is unsigned, so the
 * loops stay branch-free and no input is undefined behaviour. */
static inline float nn_exp_neg(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    nn_fu t = {.f = x * 1.44269504088896341f + magic};
    float n = t.f - magic;
    float r = x - n * 0.693359375f; /* ln2 in two parts (Cephes C1, C2) */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    nn_fu sc = {.u = (t.u - 0x4B400000u + 127u) << 23}; /* low bits of t hold n */
    nn_fu res = {.f = p * sc.f};
    res.u &= -(uint32_t)!(x < -87.3f); /* NaN keeps its bits */
    return res.f;
}

/* tanh(u) = sign(u) (1 - e) / (1 + e), e = exp(-2|u|), through the
 * vectorisable exp above: absolute error about 1e-7, so gelu_new matches
 * torch's within float rounding while the loop vectorises (libm's tanhf
 * is scalar and was a fifth of a GPT-2 training step). */
static inline float nn_tanh(float u) {
    float e = nn_exp_neg(-2.0f * fabsf(u));
    return copysignf((1.0f - e) / (1.0f + e), u);
}

#define GELU_S 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

/* gelu_new(v) = 0.5 v (1 + t), t = tanh(sqrt(2/pi) (v + 0.044715 v^3)). */
static NN_INLINE float nn_gelu(float v) {
    float t = nn_tanh(GELU_S * (v + GELU_A * (v * v * v)));
    return 0.5f * v * (1.0f + t);
}

/* d gelu_new / dv = 0.5 (1 + t) + 0.5 v (1 - t^2) s (1 + 3 a v^2); *act gets
 * gelu_new(v) itself. */
static NN_INLINE float nn_gelu_grad(float v, float *act) {
    float t = nn_tanh(GELU_S * (v + GELU_A * (v * v * v)));
    *act = 0.5f * v * (1.0f + t);
    return 0.5f * (1.0f + t) +
           0.5f * v * (1.0f - t * t) * GELU_S * (1.0f + 3.0f * GELU_A * v * v);
}

/* torch's silu, g / (1 + exp(-g)), through the vectorisable exp above
 * (libm's expf is scalar: it and the scalar loop around it were 8 % of a
 * SmolLM training step). With e = exp(-|g|) in (0, 1]: g >= 0 is g / (1 + e)
 * as torch writes it; g < 0 multiplies through by e, g e / (e + 1), so no
 * exp overflows. Within an ulp or two of expf's (torch's own vectorised
 * silu is not libm's either); below -87.3 it gives -0, as torch does past
 * expf's overflow. NaN stays NaN. */
static NN_INLINE float nn_silu(float g) {
    float e = nn_exp_neg(-fabsf(g));
    return (g >= 0.0f ? g : g * e) / (1.0f + e);
}

/* d silu / dg = sig (1 + g (1 - sig)), sig = 1 / (1 + exp(-g)) (as nn_silu:
 * e / (1 + e) for g < 0); *act gets silu(g) = g sig. */
static NN_INLINE float nn_silu_grad(float g, float *act) {
    float e = nn_exp_neg(-fabsf(g));
    float sig = (g >= 0.0f ? 1.0f : e) / (1.0f + e);
    *act = g * sig;
    return sig * (1.0f + g * (1.0f - sig));
}

typedef struct {
    float *out;
    const float *in, *in2, *dout;
    const uint16_t *in16; /* the input in bf16 instead of in (backward kernels) */
    uint16_t *out16, *keep16; /* gated forward in bf16: the output and the
                               * kept input, rounded (out unused) */
    size_t n;
    int N, FF;
    int set;              /* backward: out = 0 + gradient (the bits of adding
                           * to zeros) instead of out += gradient */
    int inplace;          /* gelu backward: out = dout, scaled in place */
} nn_ew_ctx;

/* The bf16 inputs are widened by blocks of NN_BLK on the stack. */
#define NN_BLK 256

static NN_INLINE void nn_widen(float *dst, const uint16_t *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = al_bf16_widen1(src[i]);
}

AL_SIMD_CLONES static void gelu_fwd_fn(void *vctx, int tid, int nth) {
    const nn_ew_ctx *x = vctx;
    long lo, hi;
    al_split((long)x->n, nth, tid, &lo, &hi);
    for (long i = lo; i < hi; i++) x->out[i] = nn_gelu(x->in[i]);
}

void al_gelu_forward(float *out, const float *inp, size_t n) {
    AL_ASSERT((out && inp) || n == 0);
    nn_ew_ctx x = {.out = out, .in = inp, .n = n};
    nn_run(gelu_fwd_fn, &x, n);
}

typedef struct {
    uint16_t *out16, *keep16;
    const float *in;
    size_t n;
} nn_gelu16_ctx;

AL_SIMD_CLONES static void gelu_fwd16_fn(void *vctx, int tid, int nth) {
    const nn_gelu16_ctx *x = vctx;
    long lo, hi;
    al_split((long)((x->n + NN_BLK - 1) / NN_BLK), nth, tid, &lo, &hi);
    float buf[NN_BLK];
    for (size_t i = (size_t)lo * NN_BLK; i < (size_t)hi * NN_BLK && i < x->n; i += NN_BLK) {
        const size_t k = x->n - i < NN_BLK ? x->n - i : NN_BLK;
        al_bf16_round(x->keep16 + i, x->in + i, k);
        nn_widen(buf, x->keep16 + i, (int)k);
        for (size_t j = 0; j < k; j++) buf[j] = nn_gelu(buf[j]);
        al_bf16_round(x->out16 + i, buf, k);
    }
}

void al_gelu_forward_bf16(uint16_t *out16, uint16_t *keep16, const float *inp, size_t n) {
    AL_ASSERT((out16 && keep16 && inp) || n == 0);
    nn_gelu16_ctx x = {.out16 = out16, .keep16 = keep16, .in = inp, .n = n};
    nn_run(gelu_fwd16_fn, &x, n);
}

static NN_INLINE void gelu_bwd_range(float *out, const float *dout, const float *in, long n, int set) {
    for (long i = 0; i < n; i++) {
        float act;
        out[i] = (set ? 0.0f : out[i]) + dout[i] * nn_gelu_grad(in[i], &act);
    }
}

/* d = 0 + d gelu'(in): what gelu_bwd_range accumulates into a zeroed out
 * (0 + x turns a -0 into +0 as that sum does), read and written in place. */
static NN_INLINE void gelu_bwd_range_inplace(float *d, const float *in, long n) {
    for (long i = 0; i < n; i++) {
        float act;
        d[i] = 0.0f + d[i] * nn_gelu_grad(in[i], &act);
    }
}

AL_SIMD_CLONES static void gelu_bwd_fn(void *vctx, int tid, int nth) {
    const nn_ew_ctx *x = vctx;
    long lo, hi;
    al_split((long)x->n, nth, tid, &lo, &hi);
    if (!x->in16) {
        if (hi <= lo) return;
        if (x->inplace) gelu_bwd_range_inplace(x->out + lo, x->in + lo, hi - lo);
        else gelu_bwd_range(x->out + lo, x->dout + lo, x->in + lo, hi - lo, x->set);
        return;
    }
    float buf[NN_BLK];
    for (long i = lo, k; i < hi; i += k) {
        k = hi - i < NN_BLK ? hi - i : NN_BLK;
        nn_widen(buf, x->in16 + i, (int)k);
        if (x->inplace) gelu_bwd_range_inplace(x->out + i, buf, k);
        else gelu_bwd_range(x->out + i, x->dout + i, buf, k, x->set);
    }
}

void al_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    AL_ASSERT((dinp && inp && dout) || n == 0);
    nn_ew_ctx x = {.out = dinp, .in = inp, .dout = dout, .n = n};
    nn_run(gelu_bwd_fn, &x, n);
}

void al_gelu_backward_h(float *dinp, const float *dout, const uint16_t *inp, size_t n) {
    AL_ASSERT((dinp && inp && dout) || n == 0);
    nn_ew_ctx x = {.out = dinp, .in16 = inp, .dout = dout, .n = n, .set = 1};
    nn_run(gelu_bwd_fn, &x, n);
}

void al_gelu_backward_inplace(float *d, const float *inp, const uint16_t *inp16, size_t n) {
    AL_ASSERT((d && (!inp != !inp16)) || n == 0);
    nn_ew_ctx x = {.out = d, .in = inp, .in16 = inp16, .n = n, .inplace = 1};
    nn_run(gelu_bwd_fn, &x, n);
}

/* GPT-2's bf16 backward of gelu and of the c_fc bias in one pass: columns
 * [c0, c0 + bw) of every row, g = 0 + dout gelu'(in16) (the in-place
 * kernel's values), d16 = bf16(g) and db += the column sums of g in double,
 * rows in order (al_bf16_round_colsum's order). Inlined with bw a constant
 * (64), the sums stay in registers. */
static NN_INLINE void gelu_bwd16_cols(const nn_ew_ctx *x, uint16_t *d16, float *db, long c0, const int bw) {
    const int FF = x->FF;
    double acc[64];
    for (int j = 0; j < bw; j++) acc[j] = 0.0;
    for (int n = 0; n < x->N; n++) {
        const size_t o = (size_t)n * (size_t)FF + (size_t)c0;
        float g[64];
        for (int j = 0; j < bw; j++) {
            float act;
            g[j] = 0.0f + x->dout[o + j] * nn_gelu_grad(al_bf16_widen1(x->in16[o + j]), &act);
        }
        for (int j = 0; j < bw; j++) {
            acc[j] += (double)g[j];
            d16[o + j] = al_bf16_round1(g[j]);
        }
    }
    if (db)
        for (int j = 0; j < bw; j++) db[c0 + j] += (float)acc[j];
}

AL_SIMD_CLONES static void gelu_bwd16_fn(void *vctx, int tid, int nth) {
    const nn_ew_ctx *x = vctx;
    long lo, hi;
    if (!x->out) { /* no bias to sum: the elements in order, by blocks on the stack */
        al_split((long)x->N * x->FF, nth, tid, &lo, &hi);
        float buf[NN_BLK];
        for (long i = lo, k; i < hi; i += k) {
            k = hi - i < NN_BLK ? hi - i : NN_BLK;
            for (long j = 0; j < k; j++) {
                float act;
                buf[j] = 0.0f + x->dout[i + j] * nn_gelu_grad(al_bf16_widen1(x->in16[i + j]), &act);
            }
            for (long j = 0; j < k; j++) x->out16[i + j] = al_bf16_round1(buf[j]);
        }
        return;
    }
    /* in units of 16 columns */
    al_split((x->FF + 15) / 16, nth, tid, &lo, &hi);
    long c = lo * 16, c1 = hi * 16 < x->FF ? hi * 16 : x->FF;
    for (; c + 64 <= c1; c += 64) gelu_bwd16_cols(x, x->out16, x->out, c, 64);
    if (c < c1) gelu_bwd16_cols(x, x->out16, x->out, c, (int)(c1 - c));
}

void al_gelu_backward_h16(uint16_t *d16, float *db, const float *dout, const uint16_t *in16, int N,
                          int FF) {
    AL_ASSERT((d16 && dout && in16) || (size_t)N * (size_t)FF == 0);
    nn_ew_ctx x = {.out = db, .out16 = d16, .dout = dout, .in16 = in16, .N = N, .FF = FF};
    nn_run(gelu_bwd16_fn, &x, (size_t)N * (size_t)FF);
}

/* ------------------------------------------------------ SwiGLU and GeGLU */

/* Gated units act(gate) * up over rows of [gate (FF) | up (FF)]: SiLU
 * (SwiGLU, Llama) or gelu_pytorch_tanh (GeGLU, Gemma: torch's tanh GELU,
 * the same formula as gelu_new). `gelu` is a constant in each caller, so each
 * kernel inlines one activation. */
static NN_INLINE void gated_fwd(const nn_ew_ctx *x, int tid, int nth, int gelu) {
    const int FF = x->FF;
    long lo, hi;
    al_split(x->N, nth, tid, &lo, &hi);
    for (long n = lo; n < hi; n++) {
        const float *g = x->in + (size_t)n * 2 * FF, *u = g + FF;
        if (x->out16) { /* bf16: the row rounded and kept, the product rounded */
            uint16_t *kg = x->keep16 + (size_t)n * 2 * FF, *ku = kg + FF;
            uint16_t *o = x->out16 + (size_t)n * FF;
            for (int c = 0; c < FF; c++) {
                uint16_t hg = al_bf16_round1(g[c]), hu = al_bf16_round1(u[c]);
                kg[c] = hg;
                ku[c] = hu;
                float gv = al_bf16_widen1(hg), uv = al_bf16_widen1(hu);
                o[c] = al_bf16_round1((gelu ? nn_gelu(gv) : nn_silu(gv)) * uv);
            }
            continue;
        }
        float *o = x->out + (size_t)n * FF;
        for (int c = 0; c < FF; c++) o[c] = (gelu ? nn_gelu(g[c]) : nn_silu(g[c])) * u[c];
    }
}

/* dgate += dout * up * act'(gate), dup += dout * act(gate), over n columns
 * (set: onto zeros, not onto what they held). */
static NN_INLINE void gated_bwd_cols(float *dg, float *du, const float *dy, const float *g,
                                     const float *u, int n, int gelu, int set) {
    for (int c = 0; c < n; c++) {
        float act;
        float d = gelu ? nn_gelu_grad(g[c], &act) : nn_silu_grad(g[c], &act);
        dg[c] = (set ? 0.0f : dg[c]) + dy[c] * u[c] * d;
        du[c] = (set ? 0.0f : du[c]) + dy[c] * act;
    }
}

/* The same written (set) and rounded to bf16: the gradient the up
 * projection's bf16 backward reads, without an fp32 copy in between. */
static NN_INLINE void gated_bwd_cols16(uint16_t *dg, uint16_t *du, const float *dy,
                                       const float *g, const float *u, int n, int gelu) {
    for (int c = 0; c < n; c++) {
        float act;
        float d = gelu ? nn_gelu_grad(g[c], &act) : nn_silu_grad(g[c], &act);
        dg[c] = al_bf16_round1(0.0f + dy[c] * u[c] * d);
        du[c] = al_bf16_round1(0.0f + dy[c] * act);
    }
}

static NN_INLINE void gated_bwd(const nn_ew_ctx *x, int tid, int nth, int gelu) {
    const int FF = x->FF;
    long lo, hi;
    al_split(x->N, nth, tid, &lo, &hi);
    float gb[NN_BLK], ub[NN_BLK];
    for (long n = lo; n < hi; n++) {
        const float *dy = x->dout + (size_t)n * FF;
        /* the fp32 gradient's row, or (out16) its bf16 one */
        float *dg = x->out16 ? NULL : x->out + (size_t)n * 2 * FF, *du = dg ? dg + FF : NULL;
        uint16_t *dg16 = x->out16 ? x->out16 + (size_t)n * 2 * FF : NULL;
        if (!x->in16) {
            const float *g = x->in + (size_t)n * 2 * FF;
            gated_bwd_cols(dg, du, dy, g, g + FF, FF, gelu, x->set);
            continue;
        }
        const uint16_t *g16 = x->in16 + (size_t)n * 2 * FF;
        for (int c = 0, k; c < FF; c += k) {
            k = FF - c < NN_BLK ? FF - c : NN_BLK;
            nn_widen(gb, g16 + c, k);
            nn_widen(ub, g16 + FF + c, k);
            if (dg16) gated_bwd_cols16(dg16 + c, dg16 + FF + c, dy + c, gb, ub, k, gelu);
            else gated_bwd_cols(dg + c, du + c, dy + c, gb, ub, k, gelu, x->set);
        }
    }
}

AL_SIMD_CLONES static void swiglu_fwd_fn(void *vctx, int tid, int nth) {
    gated_fwd(vctx, tid, nth, 0);
}
AL_SIMD_CLONES static void swiglu_bwd_fn(void *vctx, int tid, int nth) {
    gated_bwd(vctx, tid, nth, 0);
}
AL_SIMD_CLONES static void geglu_fwd_fn(void *vctx, int tid, int nth) {
    gated_fwd(vctx, tid, nth, 1);
}
AL_SIMD_CLONES static void geglu_bwd_fn(void *vctx, int tid, int nth) {
    gated_bwd(vctx, tid, nth, 1);
}

/* Runs a gated kernel on ctx x (bwd: a backward, which reads dout). */
static void gated_go(al_pool_fn fn, nn_ew_ctx x, int bwd) {
    AL_ASSERT((x.out || x.out16) && (x.in || x.in16) && (x.dout || !bwd) && x.N >= 0 && x.FF > 0);
    nn_run(fn, &x, (size_t)x.N * (size_t)x.FF);
}

void al_swiglu_backward_h(float *dgu, const float *dout, const uint16_t *gu, int N, int FF) {
    gated_go(swiglu_bwd_fn,
             (nn_ew_ctx){.out = dgu, .in16 = gu, .dout = dout, .N = N, .FF = FF, .set = 1}, 1);
}

void al_geglu_backward_h(float *dgu, const float *dout, const uint16_t *gu, int N, int FF) {
    gated_go(geglu_bwd_fn,
             (nn_ew_ctx){.out = dgu, .in16 = gu, .dout = dout, .N = N, .FF = FF, .set = 1}, 1);
}

void al_swiglu_backward_h16(uint16_t *dgu16, const float *dout, const uint16_t *gu, int N, int FF) {
    gated_go(swiglu_bwd_fn,
             (nn_ew_ctx){.out16 = dgu16, .in16 = gu, .dout = dout, .N = N, .FF = FF, .set = 1}, 1);
}

void al_geglu_backward_h16(uint16_t *dgu16, const float *dout, const uint16_t *gu, int N, int FF) {
    gated_go(geglu_bwd_fn,
             (nn_ew_ctx){.out16 = dgu16, .in16 = gu, .dout = dout, .N = N, .FF = FF, .set = 1}, 1);
}

void al_swiglu_forward(float *out, const float *gu, int N, int FF) {
    gated_go(swiglu_fwd_fn, (nn_ew_ctx){.out = out, .in = gu, .N = N, .FF = FF}, 0);
}

void al_swiglu_forward_bf16(uint16_t *out16, uint16_t *keep16, const float *gu, int N, int FF) {
    AL_ASSERT(keep16);
    gated_go(swiglu_fwd_fn,
             (nn_ew_ctx){.out16 = out16, .keep16 = keep16, .in = gu, .N = N, .FF = FF}, 0);
}

void al_geglu_forward_bf16(uint16_t *out16, uint16_t *keep16, const float *gu, int N, int FF) {
    AL_ASSERT(keep16);
    gated_go(geglu_fwd_fn,
             (nn_ew_ctx){.out16 = out16, .keep16 = keep16, .in = gu, .N = N, .FF = FF}, 0);
}

void al_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int FF) {
    gated_go(swiglu_bwd_fn, (nn_ew_ctx){.out = dgu, .in = gu, .dout = dout, .N = N, .FF = FF}, 1);
}

void al_swiglu_backward_set(float *dgu, const float *dout, const float *gu, int N, int FF) {
    gated_go(swiglu_bwd_fn,
             (nn_ew_ctx){.out = dgu, .in = gu, .dout = dout, .N = N, .FF = FF, .set = 1}, 1);
}

void al_swiglu_forward_ref(float *out, const float *gu, int N, int FF) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < FF; c++) {
            float g = gu[(size_t)n * 2 * FF + c], u = gu[(size_t)n * 2 * FF + FF + c];
            out[(size_t)n * FF + c] = g / (1.0f + expf(-g)) * u;
        }
}

void al_geglu_forward(float *out, const float *gu, int N, int FF) {
    gated_go(geglu_fwd_fn, (nn_ew_ctx){.out = out, .in = gu, .N = N, .FF = FF}, 0);
}

void al_geglu_forward_ref(float *out, const float *gu, int N, int FF) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < FF; c++) {
            float v = gu[(size_t)n * 2 * FF + c], u = gu[(size_t)n * 2 * FF + FF + c];
            float t = tanhf(GELU_S * (v + GELU_A * (v * v * v)));
            out[(size_t)n * FF + c] = 0.5f * v * (1.0f + t) * u;
        }
}

void al_geglu_backward(float *dgu, const float *dout, const float *gu, int N, int FF) {
    gated_go(geglu_bwd_fn, (nn_ew_ctx){.out = dgu, .in = gu, .dout = dout, .N = N, .FF = FF}, 1);
}

void al_geglu_backward_set(float *dgu, const float *dout, const float *gu, int N, int FF) {
    gated_go(geglu_bwd_fn,
             (nn_ew_ctx){.out = dgu, .in = gu, .dout = dout, .N = N, .FF = FF, .set = 1}, 1);
}

/* --------------------------------------------------------------------- RoPE */

void al_rope_table(float *cos_t, float *sin_t, int maxT, int HD, float theta) {
    AL_ASSERT(cos_t && sin_t && maxT >= 0 && HD > 0 && HD % 2 == 0 && theta > 0.0f);
    const int half = HD / 2;
    for (int i = 0; i < half; i++) {
        /* as torch: (arange(0, dim, 2).float() / dim) in float, base ** that,
         * 1.0 / that, then position (float) times inv_freq, cos/sin in float */
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)HD);
        for (int p = 0; p < maxT; p++) {
            float a = (float)p * inv_freq;
            cos_t[(size_t)p * half + i] = cosf(a);
            sin_t[(size_t)p * half + i] = sinf(a);
        }
    }
}

void al_rope_table_inv(float *cos_t, float *sin_t, int maxT, int half, const float *inv_freq,
                       float attn_factor) {
    AL_ASSERT(cos_t && sin_t && inv_freq && maxT >= 0 && half > 0);
    for (int i = 0; i < half; i++)
        for (int p = 0; p < maxT; p++) {
            float a = (float)p * inv_freq[i];
            cos_t[(size_t)p * half + i] = cosf(a) * attn_factor;
            sin_t[(size_t)p * half + i] = sinf(a) * attn_factor;
        }
}

typedef struct {
    float *x;
    uint16_t *out16;      /* the rotated rows also rounded here (N, width) */
    int width;
    int keep_x;           /* with out16: x left unrotated (backward) */
    const int32_t *pos;
    const float *cos_t, *sin_t;
    int ld, N, nh, HD;
} nn_rope_ctx;

/* dir = +1: forward rotation; -1: its transpose (the inverse rotation). */
static NN_INLINE void rope_apply(const nn_rope_ctx *x, int tid, int nth, float dir) {
    const int half = x->HD / 2;
    long lo, hi;
    al_split(x->N, nth, tid, &lo, &hi);
    for (long n = lo; n < hi; n++) {
        int32_t p = x->pos[n];
        AL_ASSERT(p >= 0);
        const float *cs = x->cos_t + (size_t)p * half, *sn = x->sin_t + (size_t)p * half;
        if (x->out16) {
            float *row = x->x + (size_t)n * x->ld;
            uint16_t *o = x->out16 + (size_t)n * x->width;
            for (int h = 0; h < x->nh; h++) {
                float *x1 = row + (size_t)h * x->HD, *x2 = x1 + half;
                uint16_t *o1 = o + (size_t)h * x->HD, *o2 = o1 + half;
                for (int i = 0; i < half; i++) {
                    float a = x1[i], b = x2[i], c = cs[i], s = dir * sn[i];
                    float r1 = a * c - b * s, r2 = b * c + a * s;
                    o1[i] = al_bf16_round1(r1);
                    o2[i] = al_bf16_round1(r2);
                    if (!x->keep_x) x1[i] = r1, x2[i] = r2;
                }
            }
            for (int j = x->nh * x->HD; j < x->width; j++) o[j] = al_bf16_round1(row[j]);
            continue;
        }
        for (int h = 0; h < x->nh; h++) {
            float *x1 = x->x + (size_t)n * x->ld + (size_t)h * x->HD, *x2 = x1 + half;
            for (int i = 0; i < half; i++) {
                float a = x1[i], b = x2[i], c = cs[i], s = dir * sn[i];
                x1[i] = a * c - b * s;
                x2[i] = b * c + a * s;
            }
        }
    }
}

AL_SIMD_CLONES static void rope_fwd_fn(void *vctx, int tid, int nth) {
    rope_apply(vctx, tid, nth, 1.0f);
}
AL_SIMD_CLONES static void rope_bwd_fn(void *vctx, int tid, int nth) {
    rope_apply(vctx, tid, nth, -1.0f);
}

static void rope_run(al_pool_fn fn, float *x, int ld, const int32_t *pos, const float *cos_t,
                     const float *sin_t, int N, int nh, int HD) {
    AL_ASSERT(x && pos && cos_t && sin_t && HD > 0 && HD % 2 == 0 && ld >= nh * HD);
    nn_rope_ctx c = {.x = x, .pos = pos, .cos_t = cos_t, .sin_t = sin_t, .ld = ld,
                     .N = N, .nh = nh, .HD = HD};
    nn_run(fn, &c, (size_t)N * (size_t)nh * (size_t)HD);
}

void al_rope_forward(float *x, int ld, const int32_t *pos, const float *cos_t,
                     const float *sin_t, int N, int nh, int HD) {
    rope_run(rope_fwd_fn, x, ld, pos, cos_t, sin_t, N, nh, HD);
}

void al_rope_backward(float *dx, int ld, const int32_t *pos, const float *cos_t,
                      const float *sin_t, int N, int nh, int HD) {
    rope_run(rope_bwd_fn, dx, ld, pos, cos_t, sin_t, N, nh, HD);
}

static void rope_run16(al_pool_fn fn, uint16_t *x16, int width, float *x, int keep_x, int ld,
                       const int32_t *pos, const float *cos_t, const float *sin_t, int N, int nh,
                       int HD) {
    AL_ASSERT(x16 && x && pos && cos_t && sin_t && HD > 0 && HD % 2 == 0);
    AL_ASSERT(nh * HD <= width && width <= ld);
    nn_rope_ctx c = {.x = x, .out16 = x16, .width = width, .keep_x = keep_x, .pos = pos,
                     .cos_t = cos_t, .sin_t = sin_t, .ld = ld, .N = N, .nh = nh, .HD = HD};
    nn_run(fn, &c, (size_t)N * (size_t)width);
}

void al_rope_forward_bf16(float *x, uint16_t *x16, int width, int ld, const int32_t *pos,
                          const float *cos_t, const float *sin_t, int N, int nh, int HD) {
    rope_run16(rope_fwd_fn, x16, width, x, 0, ld, pos, cos_t, sin_t, N, nh, HD);
}

void al_rope_backward_bf16(uint16_t *dx16, int width, const float *dx, int ld, const int32_t *pos,
                           const float *cos_t, const float *sin_t, int N, int nh, int HD) {
    /* keep_x: dx is only read */
    rope_run16(rope_bwd_fn, dx16, width, (float *)dx, 1, ld, pos, cos_t, sin_t, N, nh, HD);
}

/* ---------------------------------------------------------------- Attention */

static void attn_check(int ld, int B, int T, int NH, int NKV, int HD) {
    AL_ASSERT(B >= 0 && T >= 0 && NH > 0 && NKV > 0 && HD > 0);
    AL_ASSERT(NH % NKV == 0);
    AL_ASSERT(ld >= NH * HD);
}

/* The options in effect: score scale, soft-cap (0 = none), window (0 = none). */
static void attn_opts_get(const al_attn_opts *o, int HD, float *scale, float *cap, int *win) {
    *scale = o && o->scale > 0.0f ? o->scale : 1.0f / sqrtf((float)HD);
    *cap = o && o->softcap > 0.0f ? o->softcap : 0.0f;
    *win = o && o->window > 0 ? o->window : 0;
}

/* First key visible to query i of one sequence: the first j <= i inside the
 * window with the same segment (j = i always qualifies). */
static int attn_first_key(const int32_t *sg, int i, int win) {
    int j = win > 0 && i - win + 1 > 0 ? i - win + 1 : 0;
    if (!sg) return j;
    while (sg[j] != sg[i]) j++;
    return j;
}

/* The first key any row of [i0, i1) sees. */
static int attn_jlo(const int32_t *sg, int i0, int i1, int win) {
    int jlo = i0;
    for (int i = i0; i < i1 && jlo > 0; i++) {
        int f = attn_first_key(sg, i, win);
        if (f < jlo) jlo = f;
    }
    return jlo;
}

/* Gemma 2's soft-cap of scaled scores, as transformers writes it:
 * s / cap, tanh, * cap. */
static inline float attn_cap(float s, float cap) { return tanhf(s / cap) * cap; }

void al_attention_forward_ref(float *out, float *att, const float *q, const float *k,
                              const float *v, int ld, const int32_t *seg,
                              int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts) {
    attn_check(ld, B, T, NH, NKV, HD);
    const int G = NH / NKV, OC = NH * HD;
    float scale, cap;
    int win;
    attn_opts_get(opts, HD, &scale, &cap, &win);
    for (int b = 0; b < B; b++) {
        const int32_t *sg = seg ? seg + (size_t)b * T : NULL;
        for (int h = 0; h < NH; h++) {
            const int kh = h / G;
            for (int i = 0; i < T; i++) {
                const float *qi = q + ((size_t)b * T + i) * ld + (size_t)h * HD;
                float *p = att + (((size_t)b * NH + h) * T + i) * T;
                float mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    p[j] = 0.0f;
                    if (j > i || (sg && sg[j] != sg[i]) || (win && i - j >= win)) continue;
                    const float *kj = k + ((size_t)b * T + j) * ld + (size_t)kh * HD;
                    float s = 0.0f;
                    for (int d = 0; d < HD; d++) s += qi[d] * kj[d];
                    p[j] = s * scale;
                    if (cap > 0.0f) p[j] = attn_cap(p[j], cap);
                    if (p[j] > mx) mx = p[j];
                }
                float sum = 0.0f;
                for (int j = 0; j <= i; j++) {
                    if ((sg && sg[j] != sg[i]) || (win && i - j >= win)) continue;
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
                for (int j = 0; j <= i; j++) p[j] /= sum;
                float *o = out + ((size_t)b * T + i) * OC + (size_t)h * HD;
                for (int d = 0; d < HD; d++) o[d] = 0.0f;
                for (int j = 0; j <= i; j++) {
                    if (p[j] == 0.0f) continue;
                    const float *vj = v + ((size_t)b * T + j) * ld + (size_t)kh * HD;
                    for (int d = 0; d < HD; d++) o[d] += p[j] * vj[d];
                }
            }
        }
    }
}

typedef struct {
    float *out, *att, *dq, *dk, *dv;
    const float *q, *k, *v, *dout, *catt;
    const int32_t *seg;
    int ld, B, T, NH, NKV, HD;
    float scale, cap;
    int win;
} nn_attn_ctx;


/* Softmax of one score row in place: row[j] for j in [jlo, i] holds the
 * scaled score; on return row[0, T) holds the probabilities, exactly 0
 * where masked. sg is the sequence's segments or NULL. Max and sum run in 8
 * independent lanes: a fixed order, vectorised by GCC at -O2. */
static void attn_softmax_row(float *row, const int32_t *sg, int i, int jlo, int T) {
    float *r = row + jlo;
    const int n = i + 1 - jlo;
    const int32_t *sj = sg ? sg + jlo : NULL;
    const int32_t si = sg ? sg[i] : 0;
    const nn_fu ninf = {.f = -INFINITY};
    float mx8[8], sum8[8];
    for (int l = 0; l < 8; l++) mx8[l] = -INFINITY, sum8[l] = 0.0f;
    /* the max over visible keys; masked keys read as -inf */
    int j = 0;
    if (sj) {
        for (; j + 8 <= n; j += 8)
            for (int l = 0; l < 8; l++) {
                uint32_t k = -(uint32_t)(sj[j + l] == si);
                nn_fu v = {.f = r[j + l]};
                v.u = (v.u & k) | (ninf.u & ~k);
                mx8[l] = v.f > mx8[l] ? v.f : mx8[l];
            }
        for (int l = 0; j < n; j++, l++) {
            float v = sj[j] == si ? r[j] : -INFINITY;
            mx8[l] = v > mx8[l] ? v : mx8[l];
        }
    } else {
        for (; j + 8 <= n; j += 8)
            for (int l = 0; l < 8; l++) mx8[l] = r[j + l] > mx8[l] ? r[j + l] : mx8[l];
        for (int l = 0; j < n; j++, l++) mx8[l] = r[j] > mx8[l] ? r[j] : mx8[l];
    }
    float mx = mx8[0];
    for (int l = 1; l < 8; l++) mx = mx8[l] > mx ? mx8[l] : mx;
    /* exponentials (masked ones exactly 0) and their sum */
    j = 0;
    if (sj) {
        for (; j + 8 <= n; j += 8)
            for (int l = 0; l < 8; l++) {
                nn_fu e = {.f = nn_exp_neg(r[j + l] - mx)};
                e.u &= -(uint32_t)(sj[j + l] == si);
                r[j + l] = e.f;
                sum8[l] += e.f;
            }
        for (int l = 0; j < n; j++, l++) {
            float e = sj[j] == si ? nn_exp_neg(r[j] - mx) : 0.0f;
            r[j] = e;
            sum8[l] += e;
        }
    } else {
        for (; j + 8 <= n; j += 8)
            for (int l = 0; l < 8; l++) {
                float e = nn_exp_neg(r[j + l] - mx);
                r[j + l] = e;
                sum8[l] += e;
            }
        for (int l = 0; j < n; j++, l++) {
            float e = nn_exp_neg(r[j] - mx);
            r[j] = e;
            sum8[l] += e;
        }
    }
    const float inv = 1.0f / nn_sum(sum8, 8);
    for (j = 0; j < n; j++) r[j] *= inv;
    for (j = 0; j < jlo; j++) row[j] = 0.0f;
    for (j = i + 1; j < T; j++) row[j] = 0.0f;
}

/* Task t = (b, h, query block) of a forward split over B * NH * nblk blocks
 * of BQ query rows, dealt round-robin. Block cost grows with its index
 * (causal), so odd heads walk their blocks backwards: with 2 threads and an
 * even block count each thread then gets the same total. */
typedef struct {
    int b, h, kh, i0, i1, M, jlo;
    const int32_t *sg; /* the sequence's segments, or NULL */
} attn_task;

static attn_task attn_task_get(long t, const int32_t *seg, int T, int NH, int G, int nblk,
                               int BQ, int win) {
    attn_task k;
    k.b = (int)(t / ((long)NH * nblk));
    k.h = (int)(t / nblk % NH);
    const int blk = (k.b * NH + k.h) % 2 ? nblk - 1 - (int)(t % nblk) : (int)(t % nblk);
    k.kh = k.h / G;
    k.i0 = blk * BQ;
    k.i1 = k.i0 + BQ < T ? k.i0 + BQ : T;
    k.M = k.i1 - k.i0;
    k.sg = seg ? seg + (size_t)k.b * T : NULL;
    k.jlo = attn_jlo(k.sg, k.i0, k.i1, win);
    return k;
}

static void attn_fwd_fn(void *vctx, int tid, int nth) {
    const nn_attn_ctx *x = vctx;
    const int T = x->T, NH = x->NH, HD = x->HD, ld = x->ld, G = NH / x->NKV;
    const int OC = NH * HD;
    const int nblk = (T + AT_BQ - 1) / AT_BQ;
    const long ntask = (long)x->B * NH * nblk;
    const float scale = x->scale, cap = x->cap;
    const int win = x->win;
    for (long t = tid; t < ntask; t += nth) {
        const attn_task k = attn_task_get(t, x->seg, T, NH, G, nblk, AT_BQ, win);
        const int b = k.b, h = k.h, kh = k.kh, i0 = k.i0, i1 = k.i1, M = k.M, jlo = k.jlo;
        const int32_t *sg = k.sg;
        const int NK = i1 - jlo;
        float *P = x->att + ((size_t)b * NH + h) * T * T; /* (T, T) of this head */
        const float *qI = x->q + ((size_t)b * T + i0) * ld + (size_t)h * HD;
        const float *kJ = x->k + ((size_t)b * T + jlo) * ld + (size_t)kh * HD;
        const float *vJ = x->v + ((size_t)b * T + jlo) * ld + (size_t)kh * HD;
        /* S[i0:i1, jlo:i1) = scale * Q_I K_J^T, written into att */
        al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, NK, HD, scale, qI, ld,
                       kJ, ld, 0.0f, P + (size_t)i0 * T + jlo, T);
        for (int i = i0; i < i1; i++) {
            /* keys before the row's window are masked like the future ones */
            const int rlo = win && i - win + 1 > jlo ? i - win + 1 : jlo;
            float *row = P + (size_t)i * T;
            if (cap > 0.0f)
                for (int j = rlo; j <= i; j++) row[j] = attn_cap(row[j], cap);
            attn_softmax_row(row, sg, i, rlo, T);
        }
        /* out_I = P[i0:i1, jlo:i1) V_J */
        al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, HD, NK, 1.0f,
                       P + (size_t)i0 * T + jlo, T, vJ, ld, 0.0f,
                       x->out + ((size_t)b * T + i0) * OC + (size_t)h * HD, OC);
    }
}

void al_attention_forward(float *out, float *att, const float *q, const float *k,
                          const float *v, int ld, const int32_t *seg,
                          int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts) {
    attn_check(ld, B, T, NH, NKV, HD);
    AL_ASSERT(out && att && q && k && v);
    nn_attn_ctx x = {.out = out, .att = att, .q = q, .k = k, .v = v, .seg = seg,
                     .ld = ld, .B = B, .T = T, .NH = NH, .NKV = NKV, .HD = HD};
    attn_opts_get(opts, HD, &x.scale, &x.cap, &x.win);
    nn_run(attn_fwd_fn, &x, (size_t)B * NH * (size_t)T * (size_t)T);
}

/* Task = (b, kv head): every query head of the group runs here, so dk/dv of
 * that kv head have one writer. For each query block I and key tile J:
 *   dP = dO_I V_J^T;  D_i = sum_j P_ij dP_ij  (first pass over J)
 *   dS = P * (dP - D) * scale;  dq_I += dS K_J;  dk_J += dS^T Q_I
 *   (with a soft-cap, dS also takes the cap's 1 - tanh^2 of the recomputed
 *   scores: S = scale Q_I K_J^T in a second tile)
 *   dv_[jlo, i1) += P_I^T dO_I                 (one product per block)
 * Masked P are exactly 0, so their dS and dv terms vanish. */
static void attn_bwd_fn(void *vctx, int tid, int nth) {
    const nn_attn_ctx *x = vctx;
    const int T = x->T, NH = x->NH, NKV = x->NKV, HD = x->HD, ld = x->ld, G = NH / NKV;
    const int OC = NH * HD;
    const int nblk = (T + AT_BQ - 1) / AT_BQ;
    const long ntask = (long)x->B * NKV;
    const float scale = x->scale, cap = x->cap;
    const int win = x->win;
    float tile[AT_BQ * AT_BK]; /* dP, then dS, of one (query block, key tile) */
    float stile[AT_BQ * AT_BK]; /* the scaled scores of the tile, with a soft-cap */
    float D[AT_BQ];
    for (long t = tid; t < ntask; t += nth) {
        const int b = (int)(t / NKV), kh = (int)(t % NKV);
        const int32_t *sg = x->seg ? x->seg + (size_t)b * T : NULL;
        const float *kb = x->k + (size_t)b * T * ld + (size_t)kh * HD;
        const float *vb = x->v + (size_t)b * T * ld + (size_t)kh * HD;
        float *dkb = x->dk ? x->dk + (size_t)b * T * ld + (size_t)kh * HD : NULL;
        float *dvb = x->dv ? x->dv + (size_t)b * T * ld + (size_t)kh * HD : NULL;
        for (int h = kh * G; h < (kh + 1) * G; h++) {
            const float *P = x->catt + ((size_t)b * NH + h) * T * T;
            for (int blk = 0; blk < nblk; blk++) {
                const int i0 = blk * AT_BQ, i1 = i0 + AT_BQ < T ? i0 + AT_BQ : T;
                const int M = i1 - i0;
                const int jlo = attn_jlo(sg, i0, i1, win);
                const float *qI = x->q + ((size_t)b * T + i0) * ld + (size_t)h * HD;
                const float *dO = x->dout + ((size_t)b * T + i0) * OC + (size_t)h * HD;
                float *dqI = x->dq ? x->dq + ((size_t)b * T + i0) * ld + (size_t)h * HD : NULL;
                if (dvb)
                    al_blas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1 - jlo, HD, M, 1.0f,
                                   P + (size_t)i0 * T + jlo, T, dO, OC, 1.0f,
                                   dvb + (size_t)jlo * ld, ld);
                if (!dqI && !dkb) continue;
                for (int r = 0; r < M; r++) D[r] = 0.0f;
                for (int pass = 0; pass < 2; pass++) {
                    for (int j0 = jlo; j0 < i1; j0 += AT_BK) {
                        const int j1 = j0 + AT_BK < i1 ? j0 + AT_BK : i1, NK = j1 - j0;
                        al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, NK, HD, 1.0f,
                                       dO, OC, vb + (size_t)j0 * ld, ld, 0.0f, tile, AT_BK);
                        if (pass == 0) {
                            for (int r = 0; r < M; r++)
                                D[r] += nn_dot(P + (size_t)(i0 + r) * T + j0, tile + r * AT_BK, NK);
                            continue;
                        }
                        if (cap > 0.0f)
                            al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, NK, HD,
                                           scale, qI, ld, kb + (size_t)j0 * ld, ld, 0.0f, stile,
                                           AT_BK);
                        for (int r = 0; r < M; r++) {
                            const float *pr = P + (size_t)(i0 + r) * T + j0;
                            float *tr = tile + r * AT_BK;
                            const float dr = D[r];
                            for (int c = 0; c < NK; c++) tr[c] = pr[c] * (tr[c] - dr) * scale;
                            if (cap > 0.0f) {
                                const float *sr = stile + r * AT_BK;
                                for (int c = 0; c < NK; c++) {
                                    float th = tanhf(sr[c] / cap);
                                    tr[c] *= 1.0f - th * th;
                                }
                            }
                        }
                        if (dqI)
                            al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, HD, NK,
                                           1.0f, tile, AT_BK, kb + (size_t)j0 * ld, ld, 1.0f,
                                           dqI, ld);
                        if (dkb)
                            al_blas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, NK, HD, M,
                                           1.0f, tile, AT_BK, qI, ld, 1.0f,
                                           dkb + (size_t)j0 * ld, ld);
                    }
                }
            }
        }
    }
}

void al_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *att, const float *q, const float *k,
                           const float *v, int ld, const int32_t *seg,
                           int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts) {
    attn_check(ld, B, T, NH, NKV, HD);
    AL_ASSERT(dout && att && q && k && v);
    nn_attn_ctx x = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .catt = att, .q = q,
                     .k = k, .v = v, .seg = seg, .ld = ld, .B = B, .T = T, .NH = NH,
                     .NKV = NKV, .HD = HD};
    attn_opts_get(opts, HD, &x.scale, &x.cap, &x.win);
    nn_run(attn_bwd_fn, &x, (size_t)B * NH * (size_t)T * (size_t)T);
}

/* ------------------------------------------------ FlashAttention-2 (ops.h) */

/* Tiles of the flash kernels: query rows per block, keys per tile, and the
 * widest head they take (their buffers live on the stack: about 300 KB in
 * the backward, with its packed bf16 operands; pool threads have 8 MB). */
#define FA_BQ 64
#define FA_BK 64
#define FA_HD_MAX 256

/* Key j is visible to query i (the mask of al_attention_forward). */
static inline int fa_visible(const int32_t *sg, int i, int j, int win) {
    return j <= i && (!sg || sg[j] == sg[i]) && (!win || i - j < win);
}

typedef struct {
    float *out, *lse, *dq, *dk, *dv;
    uint16_t *out16;     /* the forward's output also rounded to bf16 (may be NULL) */
    const float *q, *k, *v, *dout, *o, *lse_in;
    const uint16_t *o16; /* the backward's O in bf16 instead of o */
    const uint16_t *q16, *k16, *v16; /* the backward's q, k, v in bf16 instead (bf16 mode) */
    const int32_t *seg;
    int ld, B, T, NH, NKV, HD, bf16, native;
    int fresh;           /* backward: dq, dk, dv zeroed by their tasks first */
    float scale, cap;
    int win;
} fa_ctx;

/* bf16 mode: a task's operands rounded and packed as al_t16_gemm takes them
 * (ops.h): A operands row-major, B operands in pairs of k. */
typedef struct {
    uint32_t qa[AL_T16_A_SIZE(FA_BQ, FA_HD_MAX)]; /* Q_I, A of S = Q K^T */
    uint32_t kb[AL_T16_B_SIZE(FA_HD_MAX, FA_BK)]; /* K_J^T, B of S */
    uint32_t vb[AL_T16_B_SIZE(FA_BK, FA_HD_MAX)]; /* V_J, B of O += P V */
    uint32_t pa[AL_T16_A_SIZE(FA_BQ, FA_BK)];     /* P, A of O += P V */
} fa_fwd16;

typedef struct {
    uint32_t qa[AL_T16_A_SIZE(FA_BQ, FA_HD_MAX)]; /* Q_I, A of S */
    uint32_t qb[AL_T16_B_SIZE(FA_BQ, FA_HD_MAX)]; /* Q_I, B of dK += dS^T Q */
    uint32_t da[AL_T16_A_SIZE(FA_BQ, FA_HD_MAX)]; /* dO_I, A of dP = dO V^T */
    uint32_t db[AL_T16_B_SIZE(FA_BQ, FA_HD_MAX)]; /* dO_I, B of dV += P^T dO */
    uint32_t kb[AL_T16_B_SIZE(FA_HD_MAX, FA_BK)]; /* K_J^T, B of S */
    uint32_t kr[AL_T16_B_SIZE(FA_BK, FA_HD_MAX)]; /* K_J, B of dQ += dS K */
    uint32_t vb[AL_T16_B_SIZE(FA_HD_MAX, FA_BK)]; /* V_J^T, B of dP */
    uint32_t ta[AL_T16_A_SIZE(FA_BK, FA_BQ)];     /* P^T or dS^T, A of dV and dK */
    uint32_t sa[AL_T16_A_SIZE(FA_BQ, FA_BK)];     /* dS, A of dQ */
} fa_bwd16;

/* Columns [0, n) of a tile's row that causality leaves visible (the
 * others are masked: their exp is 0): key j0 + c, c < n, is not after query i. */
static NN_INLINE int fa_causal_n(int i, int j0, int NK) {
    const int n = i - j0 + 1;
    return n < 0 ? 0 : n < NK ? n : NK;
}

/* Scaled, capped, masked scores of a tile: s (M, NK) from Q_I (M rows from
 * i0) and K_J (NK rows from j0) -- in bf16 mode from their packed copies qa
 * and kb; masked entries become -inf. Only each row's causal columns
 * [0, fa_causal_n) are capped and masked: the callers read no others (they
 * write their exp 0 without reading them). raw (may be NULL) keeps the
 * scaled scores before the cap (the backward's 1 - tanh^2), all NK. */
static NN_INLINE void fa_scores(float *s, float *raw, const float *qI, const float *kJ, const uint32_t *qa,
                      const uint32_t *kb, const fa_ctx *x, const int32_t *sg, int i0, int M, int j0,
                      int NK) {
    if (x->bf16) /* on the diagonal the masked scores above it need not be computed (no cap:
                  * the backward's cap derivative reads them all) */
        al_t16_gemm_tri(s, FA_BK, qa, kb, M, NK, x->HD, x->scale, 0, x->native,
                        i0 == j0 && x->cap == 0.0f ? AL_T16_COLS_LE_ROW : AL_T16_FULL);
    else
        al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, NK, x->HD, x->scale, qI, x->ld, kJ,
                       x->ld, 0.0f, s, FA_BK);
    for (int r = 0; r < M; r++) {
        float *sr = s + r * FA_BK;
        const int i = i0 + r;
        const int n = fa_causal_n(i, j0, NK);
        if (raw) for (int c = 0; c < NK; c++) raw[r * FA_BK + c] = sr[c];
        if (x->cap > 0.0f)
            for (int c = 0; c < n; c++) sr[c] = attn_cap(sr[c], x->cap);
        if (sg) {
            for (int c = 0; c < n; c++)
                if (!fa_visible(sg, i, j0 + c, x->win)) sr[c] = -INFINITY;
        } else if (x->win) { /* the visible columns of [0, n) are [lo, n) */
            const int lo = i - x->win + 1 - j0;
            for (int c = 0; c < n && c < lo; c++) sr[c] = -INFINITY;
        }
    }
}

/* max(m, x[0..n)) in 16 lanes (any order gives the same maximum). */
static NN_INLINE float fa_max(const float *x, int n, float m) {
    float mx[16];
    for (int l = 0; l < 16; l++) mx[l] = m;
    int c = 0;
    for (; c + 16 <= n; c += 16)
        for (int l = 0; l < 16; l++) mx[l] = x[c + l] > mx[l] ? x[c + l] : mx[l];
    for (; c < n; c++) mx[0] = x[c] > mx[0] ? x[c] : mx[0];
    for (int l = 1; l < 16; l++) m = mx[l] > m ? mx[l] : m;
    return mx[0] > m ? mx[0] : m;
}

/* x[r][c] = exp(x[r][c] - m[r]) for r < rows, c < n (row stride ld), and
 * exactly 0 where x is -inf (masked). The mask is applied to the bits after
 * computing every exp: GCC does not if-convert a floating-point select that
 * guards a computation (-ftrapping-math), and the loop stays vector code. */
static NN_INLINE void fa_exp_rows(float *x, int ld, int rows, int n, const float *m) {
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * ld;
        const float mr = m[r];
        for (int c = 0; c < n; c++) {
            nn_fu e = {.f = nn_exp_neg(xr[c] - mr)};
            e.u &= -(uint32_t)(xr[c] != -INFINITY);
            xr[c] = e.f;
        }
    }
}

/* The sum of a row's n exponentials: in written order in fp32 mode (its
 * bits as before), in 8 lanes in bf16 mode (lanes). */
static NN_INLINE float fa_row_sum(const float *sr, int n, int lanes) {
    if (lanes) return nn_sum(sr, n);
    float sum = 0.0f;
    for (int c = 0; c < n; c++) sum += sr[c];
    return sum;
}

/* A row's running max becomes mx, its running sum l alpha l + sum, and its
 * accumulator (HD) is rescaled by alpha = exp(m - mx). */
static NN_INLINE void fa_row_update(float *m, float *l, float *accr, int HD, float mx, float alpha,
                                    float sum) {
    *l = *l * alpha + sum;
    *m = mx;
    if (alpha != 1.0f)
        for (int d = 0; d < HD; d++) accr[d] *= alpha;
}

/* One row's online-softmax step over a key tile: sr (NK scores, -inf where
 * masked; from n on causally masked, not read) becomes exp(s - m'), m' the new running
 * max; the running sum l and the accumulator row (HD) are rescaled by
 * exp(m - m'). The sum runs in written order in fp32 mode (its bits as
 * before) and in 8 lanes in bf16 mode. Columns from n on are written 0
 * without an exp: the max, and sums that start at +0, are those over all
 * NK, bit for bit (a value keeps its lane in nn_sum, and +0 changes no
 * sum of non-negative values). */
static NN_INLINE void fa_row_step(float *sr, int n, int NK, float *m, float *l, float *accr, int HD,
                                  int lanes) {
    const float mx = fa_max(sr, n, *m);
    if (mx == -INFINITY) { /* nothing visible yet */
        for (int c = 0; c < NK; c++) sr[c] = 0.0f;
        return;
    }
    const float alpha = *m == -INFINITY ? 0.0f : nn_exp_neg(*m - mx);
    fa_exp_rows(sr, 0, 1, n, &mx);
    for (int c = n; c < NK; c++) sr[c] = 0.0f;
    fa_row_update(m, l, accr, HD, mx, alpha, fa_row_sum(sr, n, lanes));
}

/* fa_row_step on rows r < FA_ROWS of a block (stride FA_BK in s, HD in acc),
 * each visible through the whole tile (n = NK = FA_BK): the same steps,
 * bit for bit, phase by phase across the rows, so that one row's chain of
 * reductions (max, exp, sum: each waits for the one before) overlaps the
 * others' instead of running alone. */
#define FA_ROWS 4
static NN_INLINE void fa_rows_step(float *s, float *m, float *l, float *acc, int HD, int lanes) {
    float mx[FA_ROWS], alpha[FA_ROWS], sum[FA_ROWS];
    int none = 0;
    for (int q = 0; q < FA_ROWS; q++) {
        mx[q] = fa_max(s + q * FA_BK, FA_BK, m[q]);
        none |= mx[q] == -INFINITY;
    }
    if (none) { /* a row with nothing visible yet: row by row */
        for (int q = 0; q < FA_ROWS; q++)
            fa_row_step(s + q * FA_BK, FA_BK, FA_BK, &m[q], &l[q], acc + (size_t)q * HD, HD, lanes);
        return;
    }
    for (int q = 0; q < FA_ROWS; q++) alpha[q] = m[q] == -INFINITY ? 0.0f : nn_exp_neg(m[q] - mx[q]);
    for (int q = 0; q < FA_ROWS; q++) fa_exp_rows(s + q * FA_BK, 0, 1, FA_BK, &mx[q]);
    for (int q = 0; q < FA_ROWS; q++) sum[q] = fa_row_sum(s + q * FA_BK, FA_BK, lanes);
    for (int q = 0; q < FA_ROWS; q++)
        fa_row_update(&m[q], &l[q], acc + (size_t)q * HD, HD, mx[q], alpha[q], sum[q]);
}

/* Task t = (b, h, query block), dealt as al_attention_forward deals them.
 * Per key tile: S = scale Q K^T (capped, masked); the running row max m and
 * sum l rescale the accumulator, O += exp(S - m) V; at the end O /= l and
 * lse = m + log l. */
AL_SIMD_CLONES static void fa_fwd_fn(void *vctx, int tid, int nth) {
    const fa_ctx *x = vctx;
    const int T = x->T, NH = x->NH, HD = x->HD, ld = x->ld, G = NH / x->NKV, OC = NH * HD;
    const int nblk = (T + FA_BQ - 1) / FA_BQ;
    const long ntask = (long)x->B * NH * nblk;
    float s[FA_BQ * FA_BK], acc[FA_BQ * FA_HD_MAX], mrow[FA_BQ], lrow[FA_BQ];
    fa_fwd16 w;
    for (long t = tid; t < ntask; t += nth) {
        const attn_task k = attn_task_get(t, x->seg, T, NH, G, nblk, FA_BQ, x->win);
        const int b = k.b, h = k.h, kh = k.kh, i0 = k.i0, i1 = k.i1, M = k.M, jlo = k.jlo;
        const size_t q0 = ((size_t)b * T + i0) * ld + (size_t)h * HD;
        const float *qI = x->q16 ? NULL : x->q + q0;
        if (x->q16) al_t16_pack_a_h(w.qa, x->q16 + q0, ld, M, HD);
        else if (x->bf16) al_t16_pack_a(w.qa, qI, ld, M, HD);
        for (int r = 0; r < M; r++) {
            mrow[r] = -INFINITY;
            lrow[r] = 0.0f;
        }
        for (int e = 0; e < M * HD; e++) acc[e] = 0.0f;
        for (int j0 = jlo; j0 < i1; j0 += FA_BK) {
            const int NK = j0 + FA_BK < i1 ? FA_BK : i1 - j0;
            const size_t k0 = ((size_t)b * T + j0) * ld + (size_t)kh * HD;
            const float *kJ = x->k16 ? NULL : x->k + k0, *vJ = x->v16 ? NULL : x->v + k0;
            if (x->k16) {
                al_t16_pack_bt_h(w.kb, x->k16 + k0, ld, HD, NK);
                al_t16_pack_b_h(w.vb, x->v16 + k0, ld, NK, HD);
            } else if (x->bf16) {
                al_t16_pack_bt(w.kb, kJ, ld, HD, NK);
                al_t16_pack_b(w.vb, vJ, ld, NK, HD);
            }
            fa_scores(s, NULL, qI, kJ, w.qa, w.kb, x, k.sg, i0, M, j0, NK);
            for (int r = 0; r < M;) {
                if (r + FA_ROWS <= M && fa_causal_n(i0 + r, j0, NK) == FA_BK) { /* rows r.. all see the
                                                                                * whole tile */
                    fa_rows_step(s + r * FA_BK, &mrow[r], &lrow[r], acc + r * HD, HD, x->bf16);
                    r += FA_ROWS;
                } else {
                    fa_row_step(s + r * FA_BK, fa_causal_n(i0 + r, j0, NK), NK, &mrow[r], &lrow[r],
                                acc + r * HD, HD, x->bf16);
                    r++;
                }
            }
            if (x->bf16) {
                al_t16_pack_a(w.pa, s, FA_BK, M, NK);
                al_t16_gemm_tri(acc, HD, w.pa, w.vb, M, HD, NK, 1.0f, 1, x->native,
                                i0 == j0 ? AL_T16_A_LOWER : AL_T16_FULL);
            } else {
                al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, HD, NK, 1.0f, s, FA_BK, vJ,
                               ld, 1.0f, acc, HD);
            }
        }
        for (int r = 0; r < M; r++) {
            const int i = i0 + r;
            float *o = x->out + ((size_t)b * T + i) * OC + (size_t)h * HD;
            const float inv = 1.0f / lrow[r];
            for (int d = 0; d < HD; d++) o[d] = acc[r * HD + d] * inv;
            /* al_bf16_round's bits, inline: a call per row of HD cost more than the rounding */
            if (x->out16) {
                uint16_t *o16 = x->out16 + (o - x->out);
                for (int d = 0; d < HD; d++) o16[d] = al_bf16_round1(acc[r * HD + d] * inv);
            }
            x->lse[((size_t)b * NH + h) * T + i] = mrow[r] + logf(lrow[r]);
        }
    }
}

void al_flash_attention_forward(float *out, float *lse, const float *q, const float *k,
                                const float *v, int ld, const int32_t *seg, int B, int T, int NH,
                                int NKV, int HD, const al_attn_opts *opts, int bf16) {
    al_flash_attention_forward_bf16(out, NULL, lse, q, k, v, ld, seg, B, T, NH, NKV, HD, opts, bf16);
}

/* The forward on q, k, v in fp32 or (q16, k16, v16; bf16 mode) bf16. */
static void fa_forward(float *out, uint16_t *out16, float *lse, const float *q, const float *k,
                       const float *v, const uint16_t *q16, const uint16_t *k16, const uint16_t *v16,
                       int ld, const int32_t *seg, int B, int T, int NH, int NKV, int HD,
                       const al_attn_opts *opts, int bf16) {
    attn_check(ld, B, T, NH, NKV, HD);
    AL_ASSERT(out && lse && ((q && k && v) || (q16 && k16 && v16 && bf16)) && HD <= FA_HD_MAX);
    fa_ctx x = {.out = out, .out16 = out16, .lse = lse, .q = q, .k = k, .v = v, .q16 = q16, .k16 = k16,
                .v16 = v16, .seg = seg, .ld = ld, .B = B, .T = T, .NH = NH, .NKV = NKV, .HD = HD,
                .bf16 = bf16, .native = bf16 && al_bf16_dp_cpu()};
    attn_opts_get(opts, HD, &x.scale, &x.cap, &x.win);
    nn_run(fa_fwd_fn, &x, (size_t)B * NH * (size_t)T * (size_t)HD);
}

void al_flash_attention_forward_bf16(float *out, uint16_t *out16, float *lse, const float *q,
                                     const float *k, const float *v, int ld, const int32_t *seg,
                                     int B, int T, int NH, int NKV, int HD,
                                     const al_attn_opts *opts, int bf16) {
    fa_forward(out, out16, lse, q, k, v, NULL, NULL, NULL, ld, seg, B, T, NH, NKV, HD, opts, bf16);
}

void al_flash_attention_forward_h(float *out, uint16_t *out16, float *lse, const uint16_t *q,
                                  const uint16_t *k, const uint16_t *v, int ld, const int32_t *seg,
                                  int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts) {
    fa_forward(out, out16, lse, NULL, NULL, NULL, q, k, v, ld, seg, B, T, NH, NKV, HD, opts, 1);
}

/* One query block of the backward: its rows [i0, i0 + M) of head h. */
typedef struct {
    const int32_t *sg;
    const float *qI, *dO;            /* Q_I (stride qld), dO_I (stride NH HD) */
    int qld;
    float *dqI, *dkb, *dvb;          /* dq_I; dk, dv of the sequence's kv head; may be NULL */
    int i0, M;
    float D[FA_BQ], L[FA_BQ];        /* dO_i . O_i, lse_i */
} fa_blk;

/* The products of one key tile J for query block k (see fa_bwd_fn). p, dp:
 * FA_BQ x FA_BK scratch; raw: the same, used under a soft-cap. K_J and V_J
 * are kJ and vJ (stride kld), or in bf16 mode kJ16 and vJ16 (stride ld). */
AL_SIMD_CLONES static void fa_bwd_tile(const fa_ctx *x, const fa_blk *k, fa_bwd16 *w, float *p, float *dp,
                        float *raw, const float *kJ, const float *vJ, int kld, const uint16_t *kJ16,
                        const uint16_t *vJ16, int j0, int NK) {
    const int M = k->M, HD = x->HD, ld = x->ld, OC = x->NH * HD;
    if (kJ16) {
        al_t16_pack_bt_h(w->kb, kJ16, ld, HD, NK);
        al_t16_pack_bt_h(w->vb, vJ16, ld, HD, NK);
        if (k->dqI) al_t16_pack_b_h(w->kr, kJ16, ld, NK, HD);
    } else if (x->bf16) {
        al_t16_pack_bt(w->kb, kJ, kld, HD, NK);
        al_t16_pack_bt(w->vb, vJ, kld, HD, NK);
        if (k->dqI) al_t16_pack_b(w->kr, kJ, kld, NK, HD);
    }
    fa_scores(p, x->cap > 0.0f ? raw : NULL, k->qI, kJ, w->qa, w->kb, x, k->sg, k->i0, M, j0, NK);
    for (int r = 0; r < M; r++) { /* P; past the causal columns exactly the exp's masked 0 */
        const int n = fa_causal_n(k->i0 + r, j0, NK);
        if (n == FA_BK) fa_exp_rows(p + r * FA_BK, FA_BK, 1, FA_BK, k->L + r); /* constant width, as the forward */
        else fa_exp_rows(p + r * FA_BK, FA_BK, 1, n, k->L + r);
        for (int c = n; c < NK; c++) p[r * FA_BK + c] = 0.0f;
    }
    /* bf16, on the diagonal with no cap: dP and dS only where j <= i. Above
     * it P is an exact 0, so dS is a zero there and is written +0: the
     * products below skip such zeros or add them to sums that start at +0,
     * so a zero's sign never reaches a result (the bits of computing them) */
    const int tri = x->bf16 && k->i0 == j0 && x->cap == 0.0f;
    /* dP = dO V^T; dS takes P in fp32 */
    if (x->bf16)
        al_t16_gemm_tri(dp, FA_BK, w->da, w->vb, M, NK, HD, 1.0f, 0, x->native,
                        tri ? AL_T16_COLS_LE_ROW : AL_T16_FULL);
    else
        al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, NK, HD, 1.0f, k->dO, OC, vJ, kld,
                       0.0f, dp, FA_BK);
    for (int r = 0; r < M; r++) {
        float *pr = p + r * FA_BK, *dr = dp + r * FA_BK;
        if (x->cap > 0.0f) {
            for (int c = 0; c < NK; c++) {
                float th = tanhf(raw[r * FA_BK + c] / x->cap);
                dr[c] = pr[c] * (dr[c] - k->D[r]) * (1.0f - th * th) * x->scale;
            }
        } else {
            const int nc = tri && r + 1 < NK ? r + 1 : NK;
            for (int c = 0; c < nc; c++) dr[c] = pr[c] * (dr[c] - k->D[r]) * x->scale;
            for (int c = nc; c < NK; c++) dr[c] = 0.0f;
        }
    }
    if (!x->bf16) {
        if (k->dvb)
            al_blas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, NK, HD, M, 1.0f, p, FA_BK, k->dO, OC,
                           1.0f, k->dvb + (size_t)j0 * ld, ld);
        if (k->dqI)
            al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, HD, NK, 1.0f, dp, FA_BK, kJ, kld,
                           1.0f, k->dqI, ld);
        if (k->dkb)
            al_blas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, NK, HD, M, 1.0f, dp, FA_BK, k->qI, k->qld,
                           1.0f, k->dkb + (size_t)j0 * ld, ld);
        return;
    }
    /* on the diagonal P and dS are 0 above it (masked keys), P^T and dS^T below */
    const int diag = k->i0 == j0;
    if (k->dvb) { /* dV_J += P^T dO_I */
        al_t16_pack_at(w->ta, p, FA_BK, NK, M);
        al_t16_gemm_tri(k->dvb + (size_t)j0 * ld, ld, w->ta, w->db, NK, HD, M, 1.0f, 1, x->native,
                        diag ? AL_T16_A_UPPER : AL_T16_FULL);
    }
    if (k->dqI) { /* dQ_I += dS K_J */
        al_t16_pack_a(w->sa, dp, FA_BK, M, NK);
        al_t16_gemm_tri(k->dqI, ld, w->sa, w->kr, M, HD, NK, 1.0f, 1, x->native,
                        diag ? AL_T16_A_LOWER : AL_T16_FULL);
    }
    if (k->dkb) { /* dK_J += dS^T Q_I */
        al_t16_pack_at(w->ta, dp, FA_BK, NK, M);
        al_t16_gemm_tri(k->dkb + (size_t)j0 * ld, ld, w->ta, w->qb, NK, HD, M, 1.0f, 1, x->native,
                        diag ? AL_T16_A_UPPER : AL_T16_FULL);
    }
}

/* Task = (b, kv head), so that dk and dv of a kv head have one writer. For
 * every query head of the group, query block I and key tile J, the
 * probabilities are recomputed from the saved log-sum-exp:
 *   P = exp(S - lse) (masked: 0);  dv_J += P^T dO_I;  dP = dO_I V_J^T
 *   dS = P (dP - D) [1 - tanh^2 under a cap] scale, D_i = dO_i . O_i
 *   dq_I += dS K_J;  dk_J += dS^T Q_I */
AL_SIMD_CLONES static void fa_bwd_fn(void *vctx, int tid, int nth) {
    const fa_ctx *x = vctx;
    const int T = x->T, NH = x->NH, NKV = x->NKV, HD = x->HD, ld = x->ld, G = NH / NKV;
    const int OC = NH * HD;
    const int nblk = (T + FA_BQ - 1) / FA_BQ;
    const long ntask = (long)x->B * NKV;
    float p[FA_BQ * FA_BK], dp[FA_BQ * FA_BK], raw[FA_BQ * FA_BK], orow[FA_HD_MAX];
    /* q, k, v kept in bf16 (q16): packed from there as they are */
    fa_bwd16 w;
    fa_blk k;
    for (long t = tid; t < ntask; t += nth) {
        const int b = (int)(t / NKV), kh = (int)(t % NKV);
        k.sg = x->seg ? x->seg + (size_t)b * T : NULL;
        k.dkb = x->dk ? x->dk + (size_t)b * T * ld + (size_t)kh * HD : NULL;
        k.dvb = x->dv ? x->dv + (size_t)b * T * ld + (size_t)kh * HD : NULL;
        if (x->fresh) /* this task's rows of dk, dv and of its query heads' dq */
            for (int i = 0; i < T; i++) {
                const size_t r = (size_t)i * ld;
                if (k.dkb) memset(k.dkb + r, 0, (size_t)HD * sizeof(float));
                if (k.dvb) memset(k.dvb + r, 0, (size_t)HD * sizeof(float));
                if (x->dq)
                    memset(x->dq + ((size_t)b * T + i) * ld + (size_t)kh * G * HD, 0,
                           (size_t)G * HD * sizeof(float));
            }
        for (int h = kh * G; h < (kh + 1) * G; h++) {
            for (int blk = 0; blk < nblk; blk++) {
                const int i0 = blk * FA_BQ, i1 = i0 + FA_BQ < T ? i0 + FA_BQ : T, M = i1 - i0;
                const int jlo = attn_jlo(k.sg, i0, i1, x->win);
                const size_t o0 = ((size_t)b * T + i0) * OC + (size_t)h * HD;
                k.i0 = i0;
                k.M = M;
                k.dO = x->dout + ((size_t)b * T + i0) * OC + (size_t)h * HD;
                const size_t q0 = ((size_t)b * T + i0) * ld + (size_t)h * HD;
                k.qI = x->q16 ? NULL : x->q + q0;
                k.qld = ld;
                k.dqI = x->dq ? x->dq + ((size_t)b * T + i0) * ld + (size_t)h * HD : NULL;
                for (int r = 0; r < M; r++) {
                    const float *Or = x->o16 ? orow : x->o + o0 + (size_t)r * OC;
                    if (x->o16) nn_widen(orow, x->o16 + o0 + (size_t)r * OC, HD);
                    k.D[r] = nn_dot(k.dO + (size_t)r * OC, Or, HD);
                    k.L[r] = x->lse_in[((size_t)b * NH + h) * T + i0 + r];
                }
                if (x->q16) {
                    al_t16_pack_a_h(w.qa, x->q16 + q0, ld, M, HD);
                    if (k.dkb) al_t16_pack_b_h(w.qb, x->q16 + q0, ld, M, HD);
                } else if (x->bf16) {
                    al_t16_pack_a(w.qa, k.qI, k.qld, M, HD);
                    if (k.dkb) al_t16_pack_b(w.qb, k.qI, k.qld, M, HD);
                }
                if (x->bf16) {
                    al_t16_pack_a(w.da, k.dO, OC, M, HD);
                    if (k.dvb) al_t16_pack_b(w.db, k.dO, OC, M, HD);
                }
                for (int j0 = jlo; j0 < i1; j0 += FA_BK) {
                    const int NK = j0 + FA_BK < i1 ? FA_BK : i1 - j0;
                    const size_t k0 = ((size_t)b * T + j0) * ld + (size_t)kh * HD;
                    if (x->k16)
                        fa_bwd_tile(x, &k, &w, p, dp, raw, NULL, NULL, ld, x->k16 + k0, x->v16 + k0, j0, NK);
                    else
                        fa_bwd_tile(x, &k, &w, p, dp, raw, x->k + k0, x->v + k0, ld, NULL, NULL, j0, NK);
                }
            }
        }
    }
}

static void fa_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                        const uint16_t *out16, const float *lse, const float *q, const float *k,
                        const float *v, const uint16_t *q16, const uint16_t *k16, const uint16_t *v16,
                        int ld, const int32_t *seg, int B, int T, int NH, int NKV,
                        int HD, const al_attn_opts *opts, int bf16, int fresh) {
    attn_check(ld, B, T, NH, NKV, HD);
    AL_ASSERT(dout && lse && ((q && k && v) || (q16 && k16 && v16 && bf16)) && HD <= FA_HD_MAX);
    fa_ctx x = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .o = out, .o16 = out16, .lse_in = lse,
                .q = q, .k = k, .v = v, .q16 = q16, .k16 = k16, .v16 = v16, .seg = seg, .ld = ld,
                .B = B, .T = T, .NH = NH, .NKV = NKV,
                .HD = HD, .bf16 = bf16, .native = bf16 && al_bf16_dp_cpu(), .fresh = fresh};
    attn_opts_get(opts, HD, &x.scale, &x.cap, &x.win);
    nn_run(fa_bwd_fn, &x, (size_t)B * NH * (size_t)T * (size_t)HD);
}

void al_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const float *lse, const float *q,
                                 const float *k, const float *v, int ld, const int32_t *seg,
                                 int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts,
                                 int bf16, int fresh) {
    AL_ASSERT(out);
    fa_backward(dq, dk, dv, dout, out, NULL, lse, q, k, v, NULL, NULL, NULL, ld, seg, B, T, NH, NKV, HD,
                opts, bf16, fresh);
}

void al_flash_attention_backward_h(float *dq, float *dk, float *dv, const float *dout,
                                   const uint16_t *out16, const float *lse, const uint16_t *q,
                                   const uint16_t *k, const uint16_t *v, int ld, const int32_t *seg,
                                   int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts,
                                   int fresh) {
    AL_ASSERT(out16);
    fa_backward(dq, dk, dv, dout, NULL, out16, lse, NULL, NULL, NULL, q, k, v, ld, seg, B, T, NH, NKV,
                HD, opts, 1, fresh);
}

/* Dense kernels of ops.h: GEMM split into per-thread panels, linear layers,
 * the chunked language-model head (log-softmax, entropy and their gradient),
 * embeddings and elementwise helpers.
 *
 * Threads: every kernel runs on the caller's thread plus the compute pool
 * (pool.h). Work is partitioned statically by (tid, nthreads), never over a
 * reduction dimension, so results are bit-identical for a given thread
 * count; the embedding backward and the bias/column sums are identical for
 * any thread count. Nothing here allocates: scratch comes from the caller or
 * the stack. Inner loops are contiguous and branch-free so that the compiler
 * vectorises them without -ffast-math (reductions use explicit lanes). */
#include "compute/ops.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"
#include "compute/blas.h"
#include "compute/onednn.h"
#include "compute/pool.h"
#include "compute/simd.h"

#define MAX_THREADS AL_POOL_MAX
#define ELEM_PAR_N ((size_t)1 << 17) /* elementwise ops split above this */
#define EMBED_PAR_WORK ((size_t)1 << 15)
#define LANES 8                    /* independent accumulators per reduction */

/* Splits [0, n) into `parts` ranges whose bounds are multiples of `align`
 * (except the end), so that panels start on cache-line boundaries. */
static void split_aligned(long n, int parts, int i, long align, long *lo, long *hi) {
    long units = (n + align - 1) / align;
    al_split(units, parts, i, lo, hi);
    *lo *= align;
    *hi *= align;
    if (*lo > n) *lo = n;
    if (*hi > n) *hi = n;
}

/* ---------------------------------------------------------------- GEMM */

static _Atomic int g_backend = -1; /* AL_MM_*, -1 until first use */

static int backend_default(void) {
    const char *e = getenv("ALIGND_MATMUL");
    if (e && !strcmp(e, "openblas")) return AL_MM_OPENBLAS;
    return al_dnnl_ready() ? AL_MM_ONEDNN : AL_MM_OPENBLAS;
}

int al_gemm_backend(void) {
    int b = atomic_load_explicit(&g_backend, memory_order_relaxed);
    if (b < 0) {
        b = backend_default();
        atomic_store_explicit(&g_backend, b, memory_order_relaxed);
    }
    return b;
}

int al_gemm_set_backend(int backend) {
    if (backend != AL_MM_OPENBLAS && backend != AL_MM_ONEDNN) return AL_EINVAL;
    if (backend == AL_MM_ONEDNN && !al_dnnl_ready()) return AL_EUNSUP;
    atomic_store_explicit(&g_backend, backend, memory_order_relaxed);
    return AL_OK;
}

const char *al_gemm_backend_name(void) {
    return al_gemm_backend() == AL_MM_ONEDNN ? "onednn" : "openblas";
}

typedef struct gemm_ctx {
    int transA, transB, M, N, K;
    float alpha, beta;
    const float *A, *B;
    int lda, ldb, ldc;
    float *C;
    const float *bias; /* optional (N): C rows start as bias, beta becomes 1 */
    int split_m;       /* split over rows of C, else over its columns */
    int onednn;        /* panels of two rows or more go to oneDNN */
} gemm_ctx;

/* C[m0:m1, n0:n1] = alpha op(A)[m0:m1, :] op(B)[:, n0:n1] + beta C[...]. */
static void gemm_panel(const gemm_ctx *g, long m0, long m1, long n0, long n1) {
    int m = (int)(m1 - m0), n = (int)(n1 - n0);
    if (m <= 0 || n <= 0) return;
    float *C = g->C + (size_t)m0 * (size_t)g->ldc + (size_t)n0;
    float beta = g->beta;
    if (g->bias) {
        for (int i = 0; i < m; i++)
            memcpy(C + (size_t)i * (size_t)g->ldc, g->bias + n0, (size_t)n * sizeof(float));
        beta = 1.0f;
    }
    if (g->K == 0 || g->alpha == 0.0f) {
        /* C = beta C; BLAS would reject lda = 0 when K = 0. beta 0 clears
         * (no NaN * 0). */
        if (beta == 1.0f) return;
        for (int i = 0; i < m; i++) {
            float *c = C + (size_t)i * (size_t)g->ldc;
            if (beta == 0.0f) memset(c, 0, (size_t)n * sizeof(float));
            else for (int j = 0; j < n; j++) c[j] *= beta;
        }
        return;
    }
    const float *A = g->transA ? g->A + m0 : g->A + (size_t)m0 * (size_t)g->lda;
    const float *B = g->transB ? g->B + (size_t)n0 * (size_t)g->ldb : g->B + n0;
    if (m == 1) {
        /* One row (token-by-token decoding): a matrix-vector product. sgemm
         * would repack all of B on every call, which dominated decoding. */
        int inc_a = g->transA ? g->lda : 1;
        if (g->transB)
            al_blas_sgemv(CblasRowMajor, CblasNoTrans, n, g->K, g->alpha, B, g->ldb, A, inc_a, beta, C, 1);
        else
            al_blas_sgemv(CblasRowMajor, CblasTrans, g->K, n, g->alpha, B, g->ldb, A, inc_a, beta, C, 1);
        return;
    }
    if (g->onednn && al_dnnl_gemm(0, g->transA, g->transB, m, n, g->K, g->alpha, A, g->lda, B,
                                  g->ldb, beta, C, g->ldc) == AL_OK)
        return;
    al_blas_sgemm(CblasRowMajor, g->transA ? CblasTrans : CblasNoTrans,
                   g->transB ? CblasTrans : CblasNoTrans, m, n, g->K, g->alpha, A, g->lda,
                   B, g->ldb, beta, C, g->ldc);
}

static void gemm_fn(void *p, int tid, int nt) {
    const gemm_ctx *g = p;
    long lo, hi;
    if (g->split_m) {
        split_aligned(g->M, nt, tid, 8, &lo, &hi);
        gemm_panel(g, lo, hi, 0, g->N);
    } else {
        split_aligned(g->N, nt, tid, 16, &lo, &hi);
        gemm_panel(g, 0, g->M, lo, hi);
    }
}

static void gemm_run(gemm_ctx *g) {
    AL_ASSERT(g->M >= 0 && g->N >= 0 && g->K >= 0);
    if (g->M == 0 || g->N == 0) return;
    g->onednn = al_gemm_backend() == AL_MM_ONEDNN;
    if (!al_gemm_plan(g->M, g->N, g->K, al_pool_threads(),
                      g->onednn ? AL_PANEL_DNNL_F32 : AL_PANEL_OPENBLAS, g->transB, &g->split_m)) {
        gemm_panel(g, 0, g->M, 0, g->N);
        return;
    }
    al_pool_run(gemm_fn, g);
}

void al_gemm(int transA, int transB, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc) {
    gemm_ctx g = {.transA = transA, .transB = transB, .M = M, .N = N, .K = K,
                  .alpha = alpha, .beta = beta, .A = A, .B = B, .lda = lda,
                  .ldb = ldb, .ldc = ldc, .C = C};
    gemm_run(&g);
}

/* ------------------------------------------------------------- matmul */

void al_matmul_forward(float *out, const float *inp, const float *w,
                       const float *b, int N, int C, int OC) {
    /* Each panel first copies the bias into its rows of out, then the sgemm
     * accumulates with beta = 1, so out is written once while in cache. */
    gemm_ctx g = {.transA = 0, .transB = 1, .M = N, .N = OC, .K = C, .alpha = 1.0f,
                  .beta = 0.0f, .A = inp, .B = w, .lda = C, .ldb = C, .ldc = OC,
                  .C = out, .bias = b};
    gemm_run(&g);
}

void al_matmul_forward_t(float *out, const float *inp, const float *wt,
                         const float *b, int N, int C, int OC) {
    gemm_ctx g = {.transA = 0, .transB = 0, .M = N, .N = OC, .K = C, .alpha = 1.0f,
                  .beta = 0.0f, .A = inp, .B = wt, .lda = C, .ldb = OC, .ldc = OC,
                  .C = out, .bias = b};
    gemm_run(&g);
}

void al_matmul_forward_ref(float *out, const float *inp, const float *w,
                           const float *b, int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * (size_t)C;
        for (int o = 0; o < OC; o++) {
            const float *wr = w + (size_t)o * (size_t)C;
            double s = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++) s += (double)x[c] * (double)wr[c];
            out[(size_t)n * (size_t)OC + (size_t)o] = (float)s;
        }
    }
}

typedef struct colsum_ctx {
    float *db;
    const float *dout;
    int N, OC;
} colsum_ctx;

/* db[c:c+bw] += sum over rows of x[:, c:c+bw] (x (N, C)), in double, rows
 * in order, and (h not NULL) h = bf16(x) on those columns. Inlined with bw
 * a constant (64, the whole blocks) and h known, the sums stay in registers:
 * a variable width kept them on the stack (1.2 to 1.9x the time, the same
 * bits). */
static inline __attribute__((always_inline)) void colsum_block(float *db, uint16_t *h, const float *x, int N,
                                                               int C, long c, const int bw) {
    double acc[64];
    for (int j = 0; j < bw; j++) acc[j] = 0.0;
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * (size_t)C + (size_t)c;
        uint16_t *hr = h ? h + (size_t)n * (size_t)C + (size_t)c : NULL;
        for (int j = 0; j < bw; j++) {
            acc[j] += (double)r[j];
            if (h) hr[j] = al_bf16_round1(r[j]);
        }
    }
    for (int j = 0; j < bw; j++) db[c + j] += (float)acc[j];
}

/* Columns [c0, c1) by blocks of 64. */
static inline __attribute__((always_inline)) void colsum_blocks(float *db, uint16_t *h, const float *x, int N,
                                                                int C, long c0, long c1) {
    long c = c0;
    for (; c + 64 <= c1; c += 64) colsum_block(db, h, x, N, C, c, 64);
    if (c < c1) colsum_block(db, h, x, N, C, c, (int)(c1 - c));
}

/* db[c0:c1] += sum over rows of dout[:, c0:c1], in double, rows in order. */
AL_SIMD_CLONES static void colsum_range(float *db, const float *dout, int N, int OC, long c0, long c1) {
    colsum_blocks(db, NULL, dout, N, OC, c0, c1);
}

static void colsum_fn(void *p, int tid, int nt) {
    const colsum_ctx *s = p;
    long lo, hi;
    split_aligned(s->OC, nt, tid, 16, &lo, &hi);
    colsum_range(s->db, s->dout, s->N, s->OC, lo, hi);
}

typedef struct round_colsum_ctx {
    uint16_t *h;
    float *db;
    const float *x;
    int N, C;
} round_colsum_ctx;

/* Columns [c0, c1) of every row: h = bf16(x), db += the column sums as
 * colsum_range makes them (double, rows in order). */
AL_SIMD_CLONES static void round_colsum_range(const round_colsum_ctx *s, long c0, long c1) {
    colsum_blocks(s->db, s->h, s->x, s->N, s->C, c0, c1);
}

static void round_colsum_fn(void *p, int tid, int nt) {
    const round_colsum_ctx *s = p;
    long lo, hi;
    split_aligned(s->C, nt, tid, 16, &lo, &hi);
    round_colsum_range(s, lo, hi);
}

void al_bf16_round_colsum(uint16_t *dst, float *db, const float *src, int N, int C) {
    round_colsum_ctx s = {dst, db, src, N, C};
    if (al_pool_threads() > 1 && (size_t)N * (size_t)C >= ELEM_PAR_N) al_pool_run(round_colsum_fn, &s);
    else round_colsum_range(&s, 0, C);
}

void al_matmul_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int N, int C, int OC) {
    if (dinp) /* (N, C) += (N, OC) @ (OC, C) */
        al_gemm(0, 0, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (dw) /* (OC, C) += (N, OC)^T @ (N, C); the sum over N stays in one sgemm */
        al_gemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
        colsum_ctx s = {db, dout, N, OC};
        if (al_pool_threads() > 1 && (size_t)N * (size_t)OC >= ELEM_PAR_N)
            al_pool_run(colsum_fn, &s);
        else
            colsum_range(db, dout, N, OC, 0, OC);
    }
}

/* out (ni, nj) += a b summed in double over k in order: a[i, k] at
 * a[i * ai + k * ak], b[k, j] at b[k * bk + j]. */
static void ref_prod_acc(float *out, const float *a, size_t ai, size_t ak, const float *b,
                         size_t bk, int ni, int nj, int nk) {
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < nj; j++) {
            double s = 0.0;
            for (int k = 0; k < nk; k++)
                s += (double)a[(size_t)i * ai + (size_t)k * ak] * (double)b[(size_t)k * bk + j];
            out[(size_t)i * nj + j] += (float)s;
        }
}

void al_matmul_backward_ref(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int N, int C, int OC) {
    if (dinp) /* (N, C) += dout (N, OC) @ w (OC, C) */
        ref_prod_acc(dinp, dout, (size_t)OC, 1, w, (size_t)C, N, C, OC);
    if (dw) /* (OC, C) += dout^T @ inp (N, C) */
        ref_prod_acc(dw, dout, 1, (size_t)OC, inp, (size_t)C, OC, C, N);
    if (db)
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int n = 0; n < N; n++) s += (double)dout[(size_t)n * OC + o];
            db[o] += (float)s;
        }
}

/* ------------------------------------------------------------ LM head */

/* The softmax loops use GCC/Clang vector extensions: with the default
 * -ftrapping-math GCC will not if-convert the clamps of a polynomial exp, so
 * a plain loop stays scalar (measured ~10 ns/element against ~1 here).
 * Two widths: EW lanes for the per-element work (exp, max, the gradient),
 * 16 with AVX-512F, else VW; and VW lanes for row_expsum's sums (8 with AVX,
 * else 4, so that a vector is one register and passing it to the inlined
 * helpers raises no ABI question). The per-element results do not depend on
 * the width, and row_expsum adds the EW-wide exps to its VW lanes in the
 * order VW-wide ones would: the same bits at either width (AVX-512's 16
 * lanes took the exps ~1.4x faster than 8 on the Zen 4 cores measured). */
#if defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
#if defined(__AVX512F__) && VW == 8
#define EW 16
#else
#define EW VW
#endif
typedef float vf __attribute__((vector_size(VW * 4)));
typedef float hf __attribute__((vector_size(VW * 2)));  /* half of a vf */
typedef double hd __attribute__((vector_size(VW * 4))); /* hf widened */
typedef float ef __attribute__((vector_size(EW * 4)));
typedef int32_t ei __attribute__((vector_size(EW * 4)));
typedef uint32_t eu __attribute__((vector_size(EW * 4)));

static inline ef ef_load(const float *p) {
    ef v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void ef_store(float *p, ef v) { memcpy(p, &v, sizeof v); }
static inline ef ef_splat(float x) {
    ef v;
    for (int j = 0; j < EW; j++) v[j] = x;
    return v;
}
/* mask ? a : b, with mask lanes all ones or all zeros */
static inline ef ef_sel(ei mask, ef a, ef b) {
    return (ef)(((ei)a & mask) | ((ei)b & ~mask));
}
/* VW lanes of an ef from lane `at` on (at + VW <= EW). */
static inline vf ef_part(ef x, int at) {
#if EW == 16 && VW == 8 && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
    /* in registers: memcpy's way went through the stack, whose reloads
     * took a third of row_expsum's time (perf annotate, Zen 4) */
    if (at == 0) return __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7);
    if (at == 8) return __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
#endif
#endif
    vf v;
    memcpy(&v, (const char *)&x + (size_t)at * sizeof(float), sizeof v);
    return v;
}
/* Halves of a vector widened to double. */
static inline hd vf_lo_d(vf x) {
    hf h;
    memcpy(&h, &x, sizeof h);
    return __builtin_convertvector(h, hd);
}
static inline hd vf_hi_d(vf x) {
    hf h;
    memcpy(&h, (const char *)&x + sizeof h, sizeof h);
    return __builtin_convertvector(h, hd);
}

/* exp(x): Cephes' expf reduction and polynomial (about 1 ulp on [-87, 88]).
 * Returns 0 below -87 (where expf < 1.7e-38), saturates above 88 and
 * propagates NaN. */
#define EXP_LO -87.0f
#define EXP_HI 88.0f
#define EXP_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

/* x < lo ? lo : x, then > hi ? hi : that, NaN kept: with AVX one max and
 * one min (maxps(a, b) is a > b ? a : b, so b when either is NaN), where
 * the selects took a compare and two logic operations each. */
static inline ef exp_clamp(ef x) {
#if EW == 16 && defined(__AVX512F__)
    return (ef)_mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), (__m512)x));
#elif EW == 8 && defined(__AVX__)
    return (ef)_mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_LO), (__m256)x));
#else
    ef xc = ef_sel(x < ef_splat(EXP_LO), ef_splat(EXP_LO), x);
    return ef_sel(xc > ef_splat(EXP_HI), ef_splat(EXP_HI), xc);
#endif
}

static inline ef exp_v(ef x) {
    ei below = x < ef_splat(EXP_LO);
    ef xc = exp_clamp(x);
    ef t = xc * EXP_LOG2E + EXP_MAGIC;
    ef n = t - EXP_MAGIC;
    ef r = xc - n * EXP_C1;
    r = r + n * EXP_C2;
    ef r2 = r * r;
    ef p = ef_splat(EXP_P0);
    p = p * r + EXP_P1;
    p = p * r + EXP_P2;
    p = p * r + EXP_P3;
    p = p * r + EXP_P4;
    p = p * r + EXP_P5;
    p = p * r2 + r + 1.0f;
    eu sb = ((eu)t - 0x4B400000u + 127u) << 23;
    ef y = p * (ef)sb;
    return (ef)((ei)y & ~below);
}

/* The same for one float (row tails): lane 0 of the vector version. */
static inline float exp_1(float x) { return exp_v(ef_splat(x))[0]; }

static float row_max(const float *z, int V) {
    ef mv = ef_splat(-INFINITY);
    int v = 0;
    for (; v + EW <= V; v += EW) {
        ef x = ef_load(z + v);
        mv = ef_sel(x > mv, x, mv);
    }
    float m = -INFINITY;
    for (int j = 0; j < EW; j++) m = mv[j] > m ? mv[j] : m;
    for (; v < V; v++) m = z[v] > m ? z[v] : m;
    return m;
}

/* S = sum exp(z - m), T = sum exp(z - m) (z - m). Each of VW lanes sums
 * blocks of up to 8 terms in float (a few ulp of the block), blocks add up
 * in double. The exps run EW at a time, each part added in turn. */
static void row_expsum(const float *z, int V, float m, double *S, double *T) {
    hd s = {0}, t = {0};
    ef mv = ef_splat(m);
    int v = 0;
    while (v + VW <= V) {
        vf bs = {0}, bt = {0};
        int end = v + 8 * VW <= V ? v + 8 * VW : V - VW + 1;
        for (; v + (EW - VW) < end; v += EW) {
            ef d = ef_load(z + v) - mv, e = exp_v(d), ed = e * d;
            for (int at = 0; at < EW; at += VW) {
                bs += ef_part(e, at);
                bt += ef_part(ed, at);
            }
        }
        if (v < end) { /* one VW step left (EW > VW): the other lanes unused */
            ef x = ef_splat(0.0f);
            memcpy(&x, z + v, VW * sizeof(float));
            ef d = x - mv, e = exp_v(d);
            bs += ef_part(e, 0);
            bt += ef_part(e * d, 0);
            v += VW;
        }
        s += vf_lo_d(bs) + vf_hi_d(bs);
        t += vf_lo_d(bt) + vf_hi_d(bt);
    }
    double ss = 0.0, tt = 0.0;
    for (int j = 0; j < VW / 2; j++) {
        ss += s[j];
        tt += t[j];
    }
    for (; v < V; v++) {
        float d = z[v] - m, e = exp_1(d);
        ss += (double)e;
        tt += (double)e * (double)d;
    }
    *S = ss;
    *T = tt;
}

/* z[v] = -exp(z[v] - L) * (k0 + b (z[v] - L)), in place. */
static void row_dz(float *z, int V, float L, float k0, float b) {
    ef Lv = ef_splat(L), kv = ef_splat(k0), bv = ef_splat(b);
    int v = 0;
    for (; v + EW <= V; v += EW) {
        ef d = ef_load(z + v) - Lv;
        ef p = exp_v(d);
        ef_store(z + v, -p * (kv + bv * d));
    }
    for (; v < V; v++) {
        float d = z[v] - L, p = exp_1(d);
        z[v] = -p * (k0 + b * d);
    }
}

/* The same, rounded to bf16 into z16 (al_bf16_round1's bits, lane by lane)
 * instead of written back: the products after it read only the rounded
 * values, so the fp32 row is neither stored nor read again. The target's
 * element gets + a before its rounding, as the fp32 path adds it. */
static void row_dz_h(uint16_t *z16, const float *z, int V, float L, float k0, float b, int t, float a) {
    typedef uint16_t eh __attribute__((vector_size(EW * 2)));
    ef Lv = ef_splat(L), kv = ef_splat(k0), bv = ef_splat(b);
    int v = 0;
    for (; v + EW <= V; v += EW) {
        ef d = ef_load(z + v) - Lv;
        ef p = exp_v(d);
        ef y = -p * (kv + bv * d);
#if EW == 16 && defined(__AVX512BF16__) && defined(__AVX512DQ__)
        /* vcvtneps2bf16 rounds as al_bf16_round1 does (to nearest even,
         * NaN quieted by the same bit) except that it flushes subnormals:
         * those vectors, rare, take the integer way below */
        if (!_mm512_fpclass_ps_mask((__m512)y, 0x20)) {
            __m256bh hb = _mm512_cvtneps_pbh((__m512)y);
            memcpy(z16 + v, &hb, sizeof hb);
            continue;
        }
#endif
        eu x = (eu)y;
        eu r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16, q = (x >> 16) | 0x40u;
        ei nan = (ei)((x & 0x7fffffffu) > 0x7f800000u);
        eh h = __builtin_convertvector((eu)(((ei)q & nan) | ((ei)r & ~nan)), eh);
        memcpy(z16 + v, &h, sizeof h);
    }
    for (; v < V; v++) {
        float d = z[v] - L, p = exp_1(d);
        z16[v] = al_bf16_round1(-p * (k0 + b * d));
    }
    float d = z[t] - L, p = exp_1(d);
    z16[t] = al_bf16_round1(-p * (k0 + b * d) + a);
}

typedef struct lm_ctx {
    float *z;                 /* (cnt, V) logits of the gathered rows */
    const int32_t *target;
    int n0, cnt, V;           /* chunk starts at row n0 (maybe a skipped row) */
    float *logp, *ent, *lse;  /* forward outputs */
    uint8_t *hit;
    const float *dlogp, *dent, *lse_in, *ent_in; /* backward inputs */
    float cap, inv_temp;      /* soft-cap (0: none; z holds raw logits) */
    float *g;                 /* (cnt, V) backward: the cap's 1 - tanh^2 */
    uint16_t *z16;            /* backward without a cap, bf16 products: dz goes
                               * here rounded (row_dz_h), z is left as it is */
} lm_ctx;

/* Gemma 2's final soft-cap, in place on one row of raw logits, then the
 * temperature: z = tanh(z / cap) * cap * inv_temp (transformers: logits /
 * cap, tanh, * cap; TRL then divides by the temperature). g (may be NULL)
 * receives the cap's derivative 1 - tanh^2. */
static void lm_cap_row(float *z, float *g, int V, float cap, float inv_temp) {
    for (int v = 0; v < V; v++) {
        float t = tanhf(z[v] / cap);
        if (g) g[v] = 1.0f - t * t;
        z[v] = t * cap * inv_temp;
    }
}

/* Row index of the k-th row with target >= 0 at or after n. */
static int lm_nth_valid(const int32_t *target, int n, long k) {
    for (;; n++)
        if (target[n] >= 0 && k-- == 0) return n;
}

/* Turns gathered row r (the batch's row n) of logits into dL/dz in place:
 *   dz_v = a (1[v == t] - p_v) - b p_v (log p_v + H)
 *        = -p_v (a + b H + b (z_v - lse)) + a 1[v == t]. */
static void lm_bwd_row(const lm_ctx *c, long r, int n) {
    int V = c->V;
    float *z = c->z + (size_t)r * (size_t)V;
    float *g = c->cap > 0.0f ? c->g + (size_t)r * (size_t)V : NULL;
    if (g) lm_cap_row(z, g, V, c->cap, c->inv_temp);
    float L = c->lse_in[n];
    float a = c->dlogp ? c->dlogp[n] : 0.0f;
    float b = c->dent ? c->dent[n] : 0.0f;
    float H = 0.0f;
    if (b != 0.0f) {
        if (c->ent_in) {
            H = c->ent_in[n];
        } else { /* entropy not saved: recompute it from the row */
            double S, T;
            row_expsum(z, V, L, &S, &T);
            H = (float)(log(S) - T / S);
        }
    }
    if (c->z16) {
        row_dz_h(c->z16 + (size_t)r * (size_t)V, z, V, L, a + b * H, b, c->target[n], a);
        return;
    }
    row_dz(z, V, L, a + b * H, b);
    z[c->target[n]] += a;
    if (g) /* through the cap: d raw = dz * (1 - tanh^2); inv_temp in the gemms */
        for (int v = 0; v < V; v++) z[v] *= g[v];
}

/* dh += inv_temp * dz @ w for a chunk of cnt rows from row n0 (dz in z, or
 * rounded in z16 with w16): the product into hbuf (cnt, C), then added into
 * dh's rows (on the pool when they are consecutive: rows != hbuf). */
static void lm_dh_add(float *dh, float *hbuf, const float *rows, const float *z, const uint16_t *z16,
                      const float *w, const uint16_t *w16, const int32_t *target, int n0, int cnt,
                      int C, int V, float inv_temp) {
    if (w16) al_gemm_bf16(0, 0, cnt, C, V, inv_temp, z16, V, w16, C, 0.0f, hbuf, C);
    else al_gemm(0, 0, cnt, C, V, inv_temp, z, V, w, C, 0.0f, hbuf, C);
    if (rows != hbuf) {
        al_acc(dh + (size_t)n0 * (size_t)C, hbuf, (size_t)cnt * (size_t)C);
        return;
    }
    int m = n0;
    for (int r = 0; r < cnt; r++, m++) {
        while (target[m] < 0) m++;
        float *d = dh + (size_t)m * (size_t)C;
        const float *s = hbuf + (size_t)r * (size_t)C;
        for (int j = 0; j < C; j++) d[j] += s[j];
    }
}

static void lm_fwd_fn(void *p, int tid, int nt) {
    const lm_ctx *c = p;
    long lo, hi;
    al_split(c->cnt, nt, tid, &lo, &hi);
    if (lo >= hi) return;
    int n = lm_nth_valid(c->target, c->n0, lo);
    for (long r = lo; r < hi; r++, n++) {
        while (c->target[n] < 0) n++;
        float *z = c->z + (size_t)r * (size_t)c->V;
        if (c->cap > 0.0f) lm_cap_row(z, NULL, c->V, c->cap, c->inv_temp);
        float m = row_max(z, c->V);
        double S, T;
        row_expsum(z, c->V, m, &S, &T);
        double logS = log(S);
        c->lse[n] = (float)((double)m + logS);
        c->logp[n] = (float)((double)(z[c->target[n]] - m) - logS);
        /* H = -sum p (z - lse) = log S - T / S; both terms >= 0 */
        if (c->ent) c->ent[n] = (float)(logS - T / S);
        if (c->hit) c->hit[n] = z[c->target[n]] >= m;
        if (c->dlogp) lm_bwd_row(c, r, n); /* fused: the row's dz while it is in cache */
    }
}

/* Gathers the next rows with target >= 0, starting at *n, into hbuf, and
 * points *rows at them: at h's own rows, uncopied, when they are
 * consecutive (every target of the chunk given: training's usual case).
 * Returns how many (<= chunk); *n0 is where the gathering started. */
static int lm_gather(float *hbuf, const float **rows, const float *h, const int32_t *target, int N,
                     int C, int V, int chunk, int *n, int *n0) {
    while (*n < N && target[*n] < 0) (*n)++;
    *n0 = *n;
    int k = 0;
    while (*n0 + k < N && k < chunk && target[*n0 + k] >= 0) {
        AL_ASSERT(target[*n0 + k] < V);
        k++;
    }
    if (k == chunk || *n0 + k == N) {
        *n = *n0 + k;
        *rows = h + (size_t)*n0 * (size_t)C;
        return k;
    }
    *rows = hbuf;
    int r = 0;
    for (; *n < N && r < chunk; (*n)++) {
        if (target[*n] < 0) continue;
        AL_ASSERT(target[*n] < V);
        memcpy(hbuf + (size_t)r * (size_t)C, h + (size_t)*n * (size_t)C,
               (size_t)C * sizeof(float));
        r++;
    }
    return r;
}

/* z (cnt, V) = scale * hbuf @ w^T, in fp32 or (w16) with bf16 operands. */
static void lm_logits(float *z, const float *hbuf, uint16_t *h16, const float *w,
                      const uint16_t *w16, int cnt, int C, int V, float scale) {
    if (w16) {
        al_bf16_round(h16, hbuf, (size_t)cnt * (size_t)C);
        al_gemm_bf16(0, 1, cnt, V, C, scale, h16, C, w16, C, 0.0f, z, V);
    } else {
        al_gemm(0, 1, cnt, V, C, scale, hbuf, C, w, C, 0.0f, z, V);
    }
}

/* Returns the number of chunks it ran. dlogp (fused, no soft-cap): each
 * chunk's rows also get their dz (lm_bwd_row, with the lse just written),
 * and dh += inv_temp * dz @ w, as lmhead_bwd computes them. */
static int lmhead_fwd(float *logp, float *ent, float *lse, uint8_t *hit, float *dh,
                      const float *dlogp, const float *h, const float *w, const uint16_t *w16,
                      const int32_t *target, int N, int C, int V, float inv_temp, float softcap,
                      float *scratch, uint16_t *scratch16, int chunk) {
    AL_ASSERT(chunk > 0 && V > 0 && C > 0);
    AL_ASSERT(!dlogp || (dh && softcap <= 0.0f));
    for (int n = 0; n < N; n++)
        if (target[n] < 0) {
            logp[n] = lse[n] = 0.0f;
            if (ent) ent[n] = 0.0f;
        }
    float *hbuf = scratch, *z = scratch + (size_t)chunk * (size_t)C;
    uint16_t *z16 = w16 && scratch16 ? scratch16 + (size_t)chunk * (size_t)C : NULL;
    lm_ctx c = {.z = z, .target = target, .V = V, .logp = logp, .ent = ent, .lse = lse, .hit = hit,
                .cap = softcap > 0.0f ? softcap : 0.0f, .inv_temp = inv_temp,
                .dlogp = dlogp, .lse_in = lse, .z16 = dlogp ? z16 : NULL};
    if (hit)
        for (int k = 0; k < N; k++)
            if (target[k] < 0) hit[k] = 0;
    int n = 0, chunks = 0;
    for (;; chunks++) {
        const float *rows;
        int cnt = lm_gather(hbuf, &rows, h, target, N, C, V, chunk, &n, &c.n0);
        if (cnt == 0) break;
        /* z (cnt, V) = inv_temp * rows @ w^T (raw logits when capped); read,
         * never written, below without a cap, so that one chunk's logits
         * outlive the call (al_lmhead_backward_reuse) */
        lm_logits(z, rows, scratch16, w, w16, cnt, C, V, c.cap > 0.0f ? 1.0f : inv_temp);
        c.cnt = cnt;
        al_pool_run(lm_fwd_fn, &c);
        if (dlogp) lm_dh_add(dh, hbuf, rows, z, z16, w, w16, target, c.n0, cnt, C, V, inv_temp);
    }
    return chunks;
}

int al_lmhead_forward(float *logp, float *ent, float *lse, uint8_t *hit, const float *h,
                      const float *w, const int32_t *target, int N, int C, int V,
                      float inv_temp, float softcap, float *scratch, int chunk) {
    return lmhead_fwd(logp, ent, lse, hit, NULL, NULL, h, w, NULL, target, N, C, V, inv_temp,
                      softcap, scratch, NULL, chunk);
}

int al_lmhead_forward_bf16(float *logp, float *ent, float *lse, uint8_t *hit, const float *h,
                           const uint16_t *w, const int32_t *target, int N, int C, int V,
                           float inv_temp, float softcap, float *scratch, uint16_t *scratch16,
                           int chunk) {
    return lmhead_fwd(logp, ent, lse, hit, NULL, NULL, h, NULL, w, target, N, C, V, inv_temp,
                      softcap, scratch, scratch16, chunk);
}

int al_lmhead_forward_fused(float *logp, float *ent, float *lse, uint8_t *hit, float *dh,
                            const float *dlogp, const float *h, const float *w, const uint16_t *w16,
                            const int32_t *target, int N, int C, int V, float inv_temp,
                            float *scratch, uint16_t *scratch16, int chunk) {
    return lmhead_fwd(logp, ent, lse, hit, dh, dlogp, h, w16 ? NULL : w, w16, target, N, C, V,
                      inv_temp, 0.0f, scratch, w16 ? scratch16 : NULL, chunk);
}

static void lm_bwd_fn(void *p, int tid, int nt) {
    const lm_ctx *c = p;
    long lo, hi;
    al_split(c->cnt, nt, tid, &lo, &hi);
    if (lo >= hi) return;
    int n = lm_nth_valid(c->target, c->n0, lo);
    for (long r = lo; r < hi; r++, n++) {
        while (c->target[n] < 0) n++;
        lm_bwd_row(c, r, n);
    }
}

static void lmhead_bwd(float *dh, float *dw, const float *dlogp, const float *dent,
                       const float *h, const float *w, const uint16_t *w16,
                       const int32_t *target, const float *lse, const float *ent, int N, int C,
                       int V, float inv_temp, float softcap, float *scratch, uint16_t *scratch16,
                       int chunk, int reuse) {
    AL_ASSERT(chunk > 0 && V > 0 && C > 0);
    AL_ASSERT(!reuse || softcap <= 0.0f);
    if (!dh && !dw) return;
    float *hbuf = scratch, *z = scratch + (size_t)chunk * (size_t)C;
    uint16_t *h16 = scratch16, *z16 = scratch16 ? scratch16 + (size_t)chunk * (size_t)C : NULL;
    lm_ctx c = {.z = z, .target = target, .V = V, .dlogp = dlogp, .dent = dent,
                .lse_in = lse, .ent_in = ent, .cap = softcap > 0.0f ? softcap : 0.0f,
                .inv_temp = inv_temp, .g = z + (size_t)chunk * (size_t)V,
                .z16 = w16 && softcap <= 0.0f ? z16 : NULL};
    int n = 0;
    for (;;) {
        const float *rows;
        int cnt = lm_gather(hbuf, &rows, h, target, N, C, V, chunk, &n, &c.n0);
        if (cnt == 0) break;
        if (reuse) { /* z holds the forward's logits of this, its only, chunk */
            for (int k = n; k < N; k++) AL_ASSERT(target[k] < 0);
            if (w16) al_bf16_round(h16, rows, (size_t)cnt * (size_t)C);
            reuse = 0;
        } else {
            lm_logits(z, rows, h16, w, w16, cnt, C, V, c.cap > 0.0f ? 1.0f : inv_temp);
        }
        c.cnt = cnt;
        al_pool_run(lm_bwd_fn, &c);
        if (w16 && !c.z16) al_bf16_round(z16, z, (size_t)cnt * (size_t)V);
        /* dw (V, C) += inv_temp * dz^T @ rows, before hbuf is reused */
        if (dw) {
            if (w16) al_gemm_bf16(1, 0, V, C, cnt, inv_temp, z16, V, h16, C, 1.0f, dw, C);
            else al_gemm(1, 0, V, C, cnt, inv_temp, z, V, rows, C, 1.0f, dw, C);
        }
        /* hbuf (cnt, C) = inv_temp * dz @ w, then into dh */
        if (dh) lm_dh_add(dh, hbuf, rows, z, z16, w, w16, target, c.n0, cnt, C, V, inv_temp);
    }
}

void al_lmhead_backward(float *dh, float *dw, const float *dlogp, const float *dent,
                        const float *h, const float *w, const int32_t *target,
                        const float *lse, const float *ent, int N, int C, int V,
                        float inv_temp, float softcap, float *scratch, int chunk) {
    lmhead_bwd(dh, dw, dlogp, dent, h, w, NULL, target, lse, ent, N, C, V, inv_temp, softcap,
               scratch, NULL, chunk, 0);
}

void al_lmhead_backward_bf16(float *dh, float *dw, const float *dlogp, const float *dent,
                             const float *h, const uint16_t *w, const int32_t *target,
                             const float *lse, const float *ent, int N, int C, int V,
                             float inv_temp, float softcap, float *scratch, uint16_t *scratch16,
                             int chunk) {
    lmhead_bwd(dh, dw, dlogp, dent, h, NULL, w, target, lse, ent, N, C, V, inv_temp, softcap,
               scratch, scratch16, chunk, 0);
}

void al_lmhead_backward_reuse(float *dh, float *dw, const float *dlogp, const float *dent,
                              const float *h, const float *w, const uint16_t *w16,
                              const int32_t *target, const float *lse, const float *ent, int N,
                              int C, int V, float inv_temp, float *scratch, uint16_t *scratch16,
                              int chunk) {
    lmhead_bwd(dh, dw, dlogp, dent, h, w16 ? NULL : w, w16, target, lse, ent, N, C, V, inv_temp,
               0.0f, scratch, w16 ? scratch16 : NULL, chunk, 1);
}

void al_lmhead_forward_ref(float *logp, float *ent, float *lse, uint8_t *hit, const float *h,
                           const float *w, const int32_t *target, int N, int C, int V,
                           float inv_temp, float softcap) {
    for (int n = 0; n < N; n++) {
        if (target[n] < 0) {
            logp[n] = lse[n] = 0.0f;
            if (ent) ent[n] = 0.0f;
            if (hit) hit[n] = 0;
            continue;
        }
        AL_ASSERT(target[n] < V);
        const float *x = h + (size_t)n * (size_t)C;
        /* online logsumexp: S = sum e^(z-m), U = sum e^(z-m) (z-m) */
        double m = 0.0, S = 0.0, U = 0.0, zt = 0.0;
        for (int v = 0; v < V; v++) {
            const float *wr = w + (size_t)v * (size_t)C;
            double s = 0.0;
            for (int k = 0; k < C; k++) s += (double)x[k] * (double)wr[k];
            if (softcap > 0.0f) s = tanh(s / softcap) * softcap;
            double z = s * (double)inv_temp;
            if (v == target[n]) zt = z;
            if (v == 0) {
                m = z;
                S = 1.0;
                U = 0.0;
            } else if (z > m) {
                double f = exp(m - z);
                U = f * (U + S * (m - z));
                S = f * S;
                m = z;
                S += 1.0;
            } else {
                double e = exp(z - m);
                S += e;
                U += e * (z - m);
            }
        }
        if (hit) hit[n] = zt >= m;
        double L = m + log(S);
        lse[n] = (float)L;
        logp[n] = (float)(zt - L);
        if (ent) ent[n] = (float)(log(S) - U / S);
    }
}

/* --------------------------------------------------------- embeddings */

typedef struct embed_ctx {
    float *out;               /* forward out, or backward dwte */
    float *dwpe;
    const float *wte, *wpe, *dout;
    const uint16_t *wte16, *wpe16; /* forward from bf16 tables */
    const int32_t *ids, *pos;
    int N, C;
} embed_ctx;

static void embed_fwd_range(const embed_ctx *e, long n0, long n1) {
    size_t C = (size_t)e->C;
    if (e->wte16) {
        for (long n = n0; n < n1; n++) {
            float *o = e->out + (size_t)n * C;
            al_bf16_widen(o, e->wte16 + (size_t)e->ids[n] * C, C);
            if (e->wpe16) {
                const uint16_t *b = e->wpe16 + (size_t)e->pos[n] * C;
                for (size_t c = 0; c < C; c++) o[c] += al_bf16_widen1(b[c]);
            }
        }
        return;
    }
    for (long n = n0; n < n1; n++) {
        float *o = e->out + (size_t)n * C;
        const float *a = e->wte + (size_t)e->ids[n] * C;
        if (e->wpe) {
            const float *b = e->wpe + (size_t)e->pos[n] * C;
            for (size_t c = 0; c < C; c++) o[c] = a[c] + b[c];
        } else {
            memcpy(o, a, C * sizeof(float));
        }
    }
}

static void embed_fwd_fn(void *p, int tid, int nt) {
    const embed_ctx *e = p;
    long lo, hi;
    al_split(e->N, nt, tid, &lo, &hi);
    embed_fwd_range(e, lo, hi);
}

void al_embed_forward(float *out, const int32_t *ids, const int32_t *pos,
                      const float *wte, const float *wpe, int N, int C) {
    AL_ASSERT(!wpe || pos);
    embed_ctx e = {.out = out, .wte = wte, .wpe = wpe, .ids = ids, .pos = pos, .N = N, .C = C};
    if (al_pool_threads() > 1 && (size_t)N * (size_t)C >= EMBED_PAR_WORK)
        al_pool_run(embed_fwd_fn, &e);
    else
        embed_fwd_range(&e, 0, N);
}

void al_embed_forward_bf16(float *out, const int32_t *ids, const int32_t *pos,
                           const uint16_t *wte, const uint16_t *wpe, int N, int C) {
    AL_ASSERT(!wpe || pos);
    embed_ctx e = {.out = out, .wte16 = wte, .wpe16 = wpe, .ids = ids, .pos = pos, .N = N,
                   .C = C};
    if (al_pool_threads() > 1 && (size_t)N * (size_t)C >= EMBED_PAR_WORK)
        al_pool_run(embed_fwd_fn, &e);
    else
        embed_fwd_range(&e, 0, N);
}

/* Columns [c0, c1) of every row, rows in order: no two threads touch the same
 * gradient element, and each element sums in the same order for any split. */
static void embed_bwd_range(const embed_ctx *e, long c0, long c1) {
    size_t C = (size_t)e->C;
    long w = c1 - c0;
    if (w <= 0) return;
    for (int n = 0; n < e->N; n++) {
        const float *d = e->dout + (size_t)n * C + c0;
        if (e->out) {
            float *g = e->out + (size_t)e->ids[n] * C + c0;
            for (long c = 0; c < w; c++) g[c] += d[c];
        }
        if (e->dwpe) {
            float *g = e->dwpe + (size_t)e->pos[n] * C + c0;
            for (long c = 0; c < w; c++) g[c] += d[c];
        }
    }
}

static void embed_bwd_fn(void *p, int tid, int nt) {
    const embed_ctx *e = p;
    long lo, hi;
    split_aligned(e->C, nt, tid, 16, &lo, &hi);
    embed_bwd_range(e, lo, hi);
}

void al_embed_backward(float *dwte, float *dwpe, const float *dout, const int32_t *ids,
                       const int32_t *pos, int N, int C) {
    AL_ASSERT(!dwpe || pos);
    embed_ctx e = {.out = dwte, .dwpe = dwpe, .dout = dout, .ids = ids, .pos = pos,
                   .N = N, .C = C};
    if (al_pool_threads() > 1 && (size_t)N * (size_t)C >= EMBED_PAR_WORK && C >= 32)
        al_pool_run(embed_bwd_fn, &e);
    else
        embed_bwd_range(&e, 0, C);
}

/* --------------------------------------------------------- elementwise */

enum { EW_ADD, EW_ACC, EW_SCALE, EW_ZERO, EW_SUMSQ };

typedef struct ew_ctx {
    int op;
    float *y;
    const float *a, *b;
    float s;
    size_t n;
    double *part;             /* EW_SUMSQ: one partial sum per thread */
} ew_ctx;

static double sumsq_range(const float *x, size_t n) {
    double acc[LANES];
    for (int j = 0; j < LANES; j++) acc[j] = 0.0;
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += (double)x[i + j] * (double)x[i + j];
    double s = 0.0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

AL_SIMD_CLONES static void ew_range(ew_ctx *e, int tid, size_t lo, size_t hi) {
    size_t n = hi - lo;
    float *y = e->y + lo;
    switch (e->op) {
    case EW_ADD: {
        const float *a = e->a + lo, *b = e->b + lo;
        for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
        break;
    }
    case EW_ACC: {
        const float *a = e->a + lo;
        for (size_t i = 0; i < n; i++) y[i] += a[i];
        break;
    }
    case EW_SCALE: {
        float s = e->s;
        for (size_t i = 0; i < n; i++) y[i] *= s;
        break;
    }
    case EW_ZERO:
        memset(y, 0, n * sizeof(float));
        break;
    case EW_SUMSQ:
        e->part[tid] = sumsq_range(e->a + lo, n);
        break;
    }
}

static void ew_fn(void *p, int tid, int nt) {
    ew_ctx *e = p;
    long lo, hi;
    split_aligned((long)e->n, nt, tid, 16, &lo, &hi);
    ew_range(e, tid, (size_t)lo, (size_t)hi);
}

static void ew_run(ew_ctx *e) {
    int nt = al_pool_threads();
    if (nt > 1 && e->n >= ELEM_PAR_N) {
        AL_ASSERT(nt <= MAX_THREADS);
        al_pool_run(ew_fn, e);
    } else {
        ew_range(e, 0, 0, e->n);
    }
}

void al_add(float *out, const float *a, const float *b, size_t n) {
    ew_ctx e = {.op = EW_ADD, .y = out, .a = a, .b = b, .n = n};
    ew_run(&e);
}

void al_acc(float *y, const float *x, size_t n) {
    ew_ctx e = {.op = EW_ACC, .y = y, .a = x, .n = n};
    ew_run(&e);
}

void al_scale(float *y, float s, size_t n) {
    ew_ctx e = {.op = EW_SCALE, .y = y, .s = s, .n = n};
    ew_run(&e);
}

void al_zero(float *y, size_t n) {
    ew_ctx e = {.op = EW_ZERO, .y = y, .n = n};
    ew_run(&e);
}

double al_sumsq(const float *x, size_t n) {
    double part[MAX_THREADS];
    ew_ctx e = {.op = EW_SUMSQ, .a = x, .n = n, .part = part};
    int nt = al_pool_threads();
    if (nt > 1 && n >= ELEM_PAR_N) {
        AL_ASSERT(nt <= MAX_THREADS);
        al_pool_run(ew_fn, &e);
    } else {
        nt = 1;
        ew_range(&e, 0, 0, n);
    }
    double s = 0.0;
    for (int i = 0; i < nt; i++) s += part[i];
    return s;
}

/* bf16 kernels of ops.h: conversions, bf16 matrix products with fp32
 * accumulation, and the linear layer of mixed precision as PyTorch's CPU
 * autocast defines it (torch.autocast("cpu", dtype=torch.bfloat16)): the
 * inputs of a product are rounded to bf16, the product accumulates and
 * returns fp32; everything else stays fp32.
 *
 * Rounding is round-to-nearest-even on the bit pattern, as c10::BFloat16
 * (and al_f32_to_bf16 in safetensors.c): NaN stays a quiet NaN, values past
 * the largest bf16 become infinity, subnormals round like any other value.
 * It is written in portable C that GCC vectorises, not with AVX512_BF16's
 * vcvtneps2bf16, which flushes subnormals to zero: the same bits on every
 * CPU and with or without -march=native.
 *
 * Products: panels over the compute pool as al_gemm (ops_dense.c), each a
 * oneDNN bf16 matmul (onednn.c); a single row against a weight matrix (token
 * by token decoding) is a matrix-vector product here, bound by memory, with
 * the weights widened in registers; without oneDNN, plain fp32 loops over
 * widened values (slow, the same semantics).
 *
 * Small tiles (al_t16_*: FlashAttention's 64 x 64 x head_dim products)
 * skip oneDNN, whose per-call cost is larger than such a product: their
 * operands are packed in pairs of k and multiplied by AVX512_BF16's
 * vdpbf16ps (4 x 64 blocks of C in registers) or, on other CPUs, by plain
 * loops of the same form.
 *
 * Threads and determinism as ops_dense.c: static partitions, no reduction
 * split across threads, results fixed for a given machine and thread count.
 * Nothing here allocates; scratch for rounded operands comes from the
 * caller. */
#include "compute/ops.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "al.h"
#include "compute/onednn.h"
#include "compute/pool.h"
#include "compute/simd.h"

#define BF_PAR_N ((size_t)1 << 16)   /* conversions split above this */

static inline uint16_t round1(float f) { return al_bf16_round1(f); }


/* ------------------------------------------------------------ CPU */

/* Bit 0: AVX512_BF16, bit 1: AMX-BF16; 0 when the OS does not save the
 * AVX-512 state. */
static int bf16_cpu_bits(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int amx_bf16 = (d >> 22) & 1u, avx512f = (b >> 16) & 1u;
    __cpuid_count(7, 1, a, b, c, d);
    int avx512_bf16 = avx512f && ((a >> 5) & 1u);
    /* the OS must save the AVX-512 state (XCR0 bits 5-7, and 1-2) */
    __cpuid(1, a, b, c, d);
    if (!((c >> 27) & 1u)) return 0; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6u) != 0xe6u) return 0;
    return avx512_bf16 | amx_bf16 << 1;
#else
    return 0;
#endif
}

/* bf16_cpu_bits, asked once: cpuid traps to the hypervisor in a virtual
 * machine (measured: 1 % of a FlashAttention call at tiny's shape, which
 * asks on every call). Threads racing to fill it store the same value. */
static int bf16_cpu_cached(void) {
    static _Atomic int bits = -1;
    int b = atomic_load_explicit(&bits, memory_order_relaxed);
    if (b < 0) {
        b = bf16_cpu_bits();
        atomic_store_explicit(&bits, b, memory_order_relaxed);
    }
    return b;
}

int al_bf16_cpu(void) { return bf16_cpu_cached() != 0; }

int al_bf16_dp_cpu(void) { return bf16_cpu_cached() & 1; }

int al_bf16_auto(void) {
    const char *e = getenv("ALIGND_MIXED_PRECISION");
    if (e && !strcmp(e, "bf16")) return 1;
    if (e && !strcmp(e, "fp32")) return 0;
    return al_bf16_cpu() && al_gemm_backend() == AL_MM_ONEDNN;
}

/* ------------------------------------------------------------ conversions */

typedef struct conv_ctx {
    uint16_t *h;
    float *f;
    const float *fin;
    const uint16_t *hin;
    size_t n;
} conv_ctx;

AL_SIMD_CLONES static void round_range(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = round1(src[i]);
}

AL_SIMD_CLONES static void widen_range(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = al_bf16_widen1(src[i]);
}

/* Thread tid's share [*a, *b) of n elements, in whole blocks of 32. */
static void conv_split(size_t n, int nt, int tid, size_t *a, size_t *b) {
    long lo, hi;
    al_split((long)((n + 31) / 32), nt, tid, &lo, &hi);
    *a = (size_t)lo * 32;
    *b = (size_t)hi * 32 < n ? (size_t)hi * 32 : n;
}

static void round_fn(void *p, int tid, int nt) {
    const conv_ctx *c = p;
    size_t a, b;
    conv_split(c->n, nt, tid, &a, &b);
    if (a < b) round_range(c->h + a, c->fin + a, b - a);
}

static void widen_fn(void *p, int tid, int nt) {
    const conv_ctx *c = p;
    size_t a, b;
    conv_split(c->n, nt, tid, &a, &b);
    if (a < b) widen_range(c->f + a, c->hin + a, b - a);
}

void al_bf16_round(uint16_t *dst, const float *src, size_t n) {
    conv_ctx c = {.h = dst, .fin = src, .n = n};
    if (n >= BF_PAR_N && al_pool_threads() > 1) al_pool_run(round_fn, &c);
    else round_range(dst, src, n);
}

void al_bf16_round_ref(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float f = src[i];
        if (isnan(f)) {
            uint32_t x;
            memcpy(&x, &f, sizeof x);
            dst[i] = (uint16_t)((x >> 16) | 0x40u);
            continue;
        }
        /* the nearest bf16 by value, ties to the even significand */
        uint32_t x;
        memcpy(&x, &f, sizeof x);
        uint16_t lo = (uint16_t)(x >> 16), hi = (uint16_t)(lo + 1);
        double d_lo = fabs((double)al_bf16_widen1(lo) - (double)f);
        /* past the largest bf16 the next value up is 2^128 (infinity) */
        double v_hi = (hi & 0x7f80u) == 0x7f80u ? copysign(ldexp(1.0, 128), (double)f)
                                               : (double)al_bf16_widen1(hi);
        double d_hi = fabs(v_hi - (double)f);
        if ((x & 0xffffu) == 0) dst[i] = lo;
        else if (d_lo < d_hi) dst[i] = lo;
        else if (d_hi < d_lo) dst[i] = hi;
        else dst[i] = (lo & 1u) ? hi : lo;
    }
}

void al_bf16_widen(float *dst, const uint16_t *src, size_t n) {
    conv_ctx c = {.f = dst, .hin = src, .n = n};
    if (n >= BF_PAR_N && al_pool_threads() > 1) al_pool_run(widen_fn, &c);
    else widen_range(dst, src, n);
}

/* x = bf16(x) in place, keep (may be NULL) = the same values in bf16. */
static void snap_fn(void *p, int tid, int nt) {
    const conv_ctx *c = p;
    size_t a, b;
    conv_split(c->n, nt, tid, &a, &b);
    uint16_t buf[1024];
    for (size_t i = a, k; i < b; i += k) {
        k = b - i < 1024 ? b - i : 1024;
        uint16_t *h = c->h ? c->h + i : buf;
        round_range(h, c->f + i, k);
        widen_range(c->f + i, h, k);
    }
}

void al_bf16_snap(float *x, uint16_t *keep, size_t n) {
    conv_ctx c = {.h = keep, .f = x, .n = n};
    if (n >= BF_PAR_N && al_pool_threads() > 1) al_pool_run(snap_fn, &c);
    else snap_fn(&c, 0, 1);
}

/* ------------------------------------------------------------ products */

typedef struct gemm16_ctx {
    int ta, tb, M, N, K;
    float alpha, beta;
    const uint16_t *A, *B;
    int lda, ldb, ldc;
    float *C;
    const float *bias;
    int split_m;
    int wt;        /* B is a weight held (in, out): a single row streams it by rows */
    long chunk;    /* > 0: a single row's columns taken from `next`, at least chunk at a time */
    _Atomic long next;
    const al_dnnl_pk *pk; /* op(B) packed for row panels (gemm16_pack), or NULL */
    int pk_parts;         /* its parts */
    _Atomic int pk_bad;   /* a part of the packing failed */
} gemm16_ctx;

/* The tree over the 16 lanes of dot16 (and of rows_dot, which keeps its bits). */
static inline float sum16(float acc[16]) {
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

/* sum_k widen(a[k]) widen(b[k]) in fp32, 16 lanes (a fixed order). */
static float dot16(const uint16_t *a, const uint16_t *b, int K) {
    float acc[16] = {0};
    int k = 0;
    for (; k + 16 <= K; k += 16)
        for (int l = 0; l < 16; l++) acc[l] += al_bf16_widen1(a[k + l]) * al_bf16_widen1(b[k + l]);
    for (int l = 0; k < K; k++, l++) acc[l] += al_bf16_widen1(a[k]) * al_bf16_widen1(b[k]);
    return sum16(acc);
}

typedef float rb_vf __attribute__((vector_size(64)));
typedef uint32_t rb_vu __attribute__((vector_size(64)));
typedef uint16_t rb_vh __attribute__((vector_size(32)));

/* acc[0 .. 128) += a * widen(b[0 .. 128)), per element a product then a
 * sum (the scalar loop's operations), eight 16-lane accumulators. */
static inline void rows_acc128(rb_vf acc[8], float a, const uint16_t *b) {
    for (int v = 0; v < 8; v++) {
        rb_vh h;
        memcpy(&h, b + 16 * v, sizeof h);
        rb_vu u = __builtin_convertvector(h, rb_vu) << 16;
        rb_vf f;
        memcpy(&f, &u, sizeof f);
        acc[v] += a * f;
    }
}

/* One row of C (n columns) from B (K, N) read by rows, k in order. */
static void rows_panel(const gemm16_ctx *g, const uint16_t *a, const uint16_t *B, float *c, int n,
                       float beta) {
    enum { NB = 128 };
    int j0 = 0;
    for (; j0 + NB <= n; j0 += NB) {
        rb_vf acc[8] = {{0}};
        for (int k = 0; k < g->K; k++) rows_acc128(acc, al_bf16_widen1(a[k]), B + (size_t)k * g->ldb + j0);
        float t[NB];
        memcpy(t, acc, sizeof t);
        for (int j = 0; j < NB; j++)
            c[j0 + j] = g->alpha * t[j] + (beta == 0.0f ? 0.0f : beta * c[j0 + j]);
    }
    if (j0 == n) return;
    float t[NB];
    int nb = n - j0;
    for (int j = 0; j < nb; j++) t[j] = 0.0f;
    for (int k = 0; k < g->K; k++) {
        float x = al_bf16_widen1(a[k]);
        const uint16_t *b = B + (size_t)k * g->ldb + j0;
        for (int j = 0; j < nb; j++) t[j] += x * al_bf16_widen1(b[j]);
    }
    for (int j = 0; j < nb; j++) c[j0 + j] = g->alpha * t[j] + (beta == 0.0f ? 0.0f : beta * c[j0 + j]);
}

/* c[j] = alpha dot16(a, B row j) + beta c[j] for j < n, B's rows ldb apart:
 * four rows at a time, so four sums are in flight instead of one chain of
 * dependent additions, and each 16 values of a are widened once for the
 * four. Each row's lanes see dot16's operations in dot16's order: the same
 * bits. The four rows are i, i + n/4, i + n/2, i + 3n/4: four sequential
 * streams, which the prefetcher follows; four adjacent rows read side by
 * side (one stream hopping by a row) ran at half the rate from memory.
 * Batch-1 decoding with nn.Linear's layout (2-core machine, loaded):
 * 1.6x a row at a time from L2 on one thread (28-29 against 17.6 GB/s: a
 * row at a time could not take in even one thread's share of the memory
 * bandwidth), 1.2-1.5x from memory on two (GPT-2's head and layer shapes). */
static inline void rows_dot(const gemm16_ctx *g, const uint16_t *a, const uint16_t *B, float *c, int n,
                            float beta) {
    const int K = g->K, K16 = K & ~15, q = n / 4;
    const size_t ldb = (size_t)g->ldb, qs = (size_t)q * ldb;
    for (int i = 0; i < q; i++) {
        const uint16_t *b0 = B + (size_t)i * ldb, *b1 = b0 + qs, *b2 = b1 + qs, *b3 = b2 + qs;
        /* lanes written as dot16 writes them: GCC vectorises them with one
         * widening load per 16 values (explicit vector types got two and a
         * shuffle, 0.88x the rate from L2) */
        float s0[16] = {0}, s1[16] = {0}, s2[16] = {0}, s3[16] = {0};
        for (int k = 0; k < K16; k += 16)
            for (int l = 0; l < 16; l++) {
                float x = al_bf16_widen1(a[k + l]);
                s0[l] += x * al_bf16_widen1(b0[k + l]);
                s1[l] += x * al_bf16_widen1(b1[k + l]);
                s2[l] += x * al_bf16_widen1(b2[k + l]);
                s3[l] += x * al_bf16_widen1(b3[k + l]);
            }
        for (int k = K16, l = 0; k < K; k++, l++) {
            float x = al_bf16_widen1(a[k]);
            s0[l] += x * al_bf16_widen1(b0[k]);
            s1[l] += x * al_bf16_widen1(b1[k]);
            s2[l] += x * al_bf16_widen1(b2[k]);
            s3[l] += x * al_bf16_widen1(b3[k]);
        }
        float t[4] = {sum16(s0), sum16(s1), sum16(s2), sum16(s3)};
        for (int r = 0; r < 4; r++) {
            float *cr = c + i + (size_t)r * q;
            *cr = g->alpha * t[r] + (beta == 0.0f ? 0.0f : beta * *cr);
        }
    }
    for (int j = 4 * q; j < n; j++) {
        float s = dot16(a, B + (size_t)j * ldb, K);
        c[j] = g->alpha * s + (beta == 0.0f ? 0.0f : beta * c[j]);
    }
}

/* Plain panel: C[i][j] = alpha sum_k op(A)[i][k] op(B)[k][j] + beta C. */
AL_SIMD_CLONES static void panel_loops(const gemm16_ctx *g, const uint16_t *A, const uint16_t *B, float *C,
                        int m, int n, float beta) {
    if (!g->ta && !g->tb) {
        /* B (K, N) by rows (a weight held (in, out)): the sums of the loop
         * below, k in order, instead of a stride of ldb per element */
        for (int i = 0; i < m; i++)
            rows_panel(g, A + (size_t)i * g->lda, B, C + (size_t)i * g->ldc, n, beta);
        return;
    }
    if (!g->ta && g->tb) {
        for (int i = 0; i < m; i++)
            rows_dot(g, A + (size_t)i * g->lda, B, C + (size_t)i * g->ldc, n, beta);
        return;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f; /* op(A) = A^T */
            for (int k = 0; k < g->K; k++) {
                uint16_t a = A[(size_t)k * g->lda + i];
                uint16_t b = g->tb ? B[(size_t)j * g->ldb + k] : B[(size_t)k * g->ldb + j];
                s += al_bf16_widen1(a) * al_bf16_widen1(b);
            }
            float *c = C + (size_t)i * g->ldc + j;
            *c = g->alpha * s + (beta == 0.0f ? 0.0f : beta * *c);
        }
}

static void gemm16_panel(const gemm16_ctx *g, long m0, long m1, long n0, long n1) {
    int m = (int)(m1 - m0), n = (int)(n1 - n0);
    if (m <= 0 || n <= 0) return;
    float *C = g->C + (size_t)m0 * g->ldc + (size_t)n0;
    float beta = g->beta;
    if (g->bias) {
        for (int i = 0; i < m; i++)
            memcpy(C + (size_t)i * g->ldc, g->bias + n0, (size_t)n * sizeof(float));
        beta = 1.0f;
    }
    if (g->K == 0 || g->alpha == 0.0f) {
        if (beta == 1.0f) return;
        for (int i = 0; i < m; i++) {
            float *c = C + (size_t)i * g->ldc;
            for (int j = 0; j < n; j++) c[j] = beta == 0.0f ? 0.0f : c[j] * beta;
        }
        return;
    }
    const uint16_t *A = g->ta ? g->A + m0 : g->A + (size_t)m0 * g->lda;
    const uint16_t *B = g->tb ? g->B + (size_t)n0 * g->ldb : g->B + n0;
    /* a single row against a weight: memory-bound, widened in registers
     * (a oneDNN primitive of one row would pack the weight on every call) */
    if (m == 1 && !g->ta && (g->tb || g->wt)) {
        panel_loops(g, A, B, C, m, n, beta);
        return;
    }
    if (g->pk && n == g->N &&
        al_dnnl_gemm_pk(1, g->tb, m, n, g->K, g->alpha, A, g->lda, g->pk, g->ldb, beta, C,
                        g->ldc) == AL_OK)
        return;
    if (al_gemm_backend() == AL_MM_ONEDNN &&
        al_dnnl_gemm(1, g->ta, g->tb, m, n, g->K, g->alpha, A, g->lda, B, g->ldb, beta, C,
                     g->ldc) == AL_OK)
        return;
    panel_loops(g, A, B, C, m, n, beta);
}

static void gemm16_fn(void *p, int tid, int nt) {
    gemm16_ctx *g = p;
    long lo, hi;
    if (g->chunk > 0) { /* a single row: guided chunks of its columns (gemm16_run) */
        long j0 = atomic_load_explicit(&g->next, memory_order_relaxed);
        for (;;) {
            long rem = g->N - j0, n = (rem / (2L * nt) + 15) & ~15L;
            if (rem <= 0) return;
            if (n < g->chunk) n = g->chunk;
            if (n > rem) n = rem;
            if (atomic_compare_exchange_weak_explicit(&g->next, &j0, j0 + n, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                gemm16_panel(g, 0, 1, j0, j0 + n);
                j0 = atomic_load_explicit(&g->next, memory_order_relaxed);
            }
        }
    }
    if (g->split_m) {
        al_split((g->M + 7) / 8, nt, tid, &lo, &hi);
        gemm16_panel(g, lo * 8, hi * 8 < g->M ? hi * 8 : g->M, 0, g->N);
    } else {
        al_split((g->N + 15) / 16, nt, tid, &lo, &hi);
        gemm16_panel(g, 0, g->M, lo * 16, hi * 16 < g->N ? hi * 16 : g->N);
    }
}

/* Part tid of the packing (and every nt-th after it, should the pool run
 * fewer threads than it has parts). */
static void gemm16_pack_fn(void *p, int tid, int nt) {
    gemm16_ctx *g = p;
    for (int part = tid; part < g->pk_parts; part += nt)
        if (al_dnnl_pack_part(g->pk, part) != AL_OK)
            atomic_store_explicit(&g->pk_bad, 1, memory_order_relaxed);
}

/* Row panels of at least this many rows per thread get op(B) packed once
 * (al_dnnl_pack_b) instead of every thread's brgemm repacking all of it. */
#define GEMM16_PACK_ROWS 512
/* ... and op(B) at least this wide: narrower ones (LoRA's rank-32 d(input)
 * 1024x32x2304, the tiny model's 1024x128x512) lost 10-30 % packed. */
#define GEMM16_PACK_COLS 512

/* Row-split products C = A B, B (K, N) deeper than wide (K > N: the
 * d(input) products of layers held (out, in) whose out > in, nn.Linear's
 * MLP up and QKV maps): op(B), which every row panel shares, packed once
 * into oneDNN's blocked layout, each of the pool's threads a block of its
 * columns (one fork/join more), before the pool runs the panels on it
 * (onednn.c, "Packed weights"). Alone on a core, a 512-row panel with half
 * of op(B) to pack took 3-7 % less CPU time than the panel packing all of
 * it, for every GPT-2 layer shape; but the two threads at once (wall time,
 * 2 threads, load ~1, best of 60 alternating, 2026-12-07) gained only
 * here: 1024x768x3072 +3 % (4 runs +0.6..+3.5 %), 2048x768x3072 +4.5 %,
 * 1024x768x2304 +2.7 %, while op(B) = B^T (1024x768x3072 -6.6 %), the
 * forward shapes (1024x3072x768, 1024x2304x768: -1..-2 %, noise +-2 %)
 * and 256-row panels (-1 %; 64-row: -8..-40 %) lost. Not op(A) = A^T (the
 * weight gradients, K the tokens): packing cost more than it saved. */
static void gemm16_pack(gemm16_ctx *g, int nt) {
    if (!g->split_m || g->ta || g->tb || g->K <= g->N || g->N < GEMM16_PACK_COLS ||
        g->alpha == 0.0f || al_gemm_backend() != AL_MM_ONEDNN)
        return;
    long lo, hi;
    al_split((g->M + 7) / 8, nt, 0, &lo, &hi);
    long m0 = hi * 8 < g->M ? hi * 8 : g->M;
    if (m0 - lo * 8 < GEMM16_PACK_ROWS) return;
    g->pk = al_dnnl_pack_b(1, g->tb, (int)(m0 - lo * 8), g->N, g->K, g->alpha, g->lda, g->B, g->ldb,
                           g->bias ? 1.0f : g->beta, g->ldc, nt);
    if (!g->pk) return;
    g->pk_parts = nt;
    al_pool_run(gemm16_pack_fn, g);
    if (atomic_load_explicit(&g->pk_bad, memory_order_relaxed)) g->pk = NULL;
}

/* The smallest chunk of a single row's columns (gemm16_run): the size
 * that gives each thread this many, or (if smaller) this many bytes of B
 * (GPT-2's 768-wide products: 48 columns; its head: 160 of 50257). */
#define GEMM16_ROW_CHUNKS_PER_THREAD 8
#define GEMM16_ROW_CHUNK_BYTES (256L << 10)

static void gemm16_run(gemm16_ctx *g) {
    AL_ASSERT(g->M >= 0 && g->N >= 0 && g->K >= 0);
    if (g->M == 0 || g->N == 0) return;
    int nt = al_pool_threads();
    if (!al_gemm_plan(g->M, g->N, g->K, nt, AL_PANEL_DNNL_BF16, g->tb, &g->split_m)) {
        gemm16_panel(g, 0, g->M, 0, g->N);
        return;
    }
    /* A single row against B^T (decoding: rows_dot) is bound by reading B,
     * and a fixed half per thread left the first thread done waiting for
     * the other whenever their shares of the memory bandwidth differed, or
     * one of them was late (descheduled, or still in the serial code
     * between products). The threads instead take chunks of the columns
     * until none are left, the faster one more: guided, each chunk
     * 1/(2 nt) of what is left (long streams for the prefetcher first,
     * short ones to even out the end), at least g->chunk. Each column has
     * the bits it has alone (rows_dot), so the split changes no result. */
    if (g->M == 1 && !g->split_m && !g->ta && g->tb) {
        long per = g->N / (nt * GEMM16_ROW_CHUNKS_PER_THREAD);
        long cap = GEMM16_ROW_CHUNK_BYTES / (2L * (g->K > 0 ? g->K : 1));
        if (per > cap) per = cap;
        g->chunk = per < 16 ? 16 : per & ~15L;
        atomic_store_explicit(&g->next, 0, memory_order_relaxed);
    }
    gemm16_pack(g, nt);
    al_pool_run(gemm16_fn, g);
}

void al_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const uint16_t *A,
                  int lda, const uint16_t *B, int ldb, float beta, float *C, int ldc) {
    gemm16_ctx g = {.ta = transA, .tb = transB, .M = M, .N = N, .K = K, .alpha = alpha,
                    .beta = beta, .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C};
    gemm16_run(&g);
}

void al_gemm_bf16_ref(int transA, int transB, int M, int N, int K, float alpha,
                      const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                      float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                uint16_t a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                uint16_t b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += (double)al_bf16_widen1(a) * (double)al_bf16_widen1(b);
            }
            float *c = C + (size_t)i * ldc + j;
            *c = (float)((double)alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

/* ------------------------------------------------------------ linear */

void al_matmul_forward_bf16(float *out, const float *inp, const uint16_t *w, const float *b,
                            int N, int C, int OC, uint16_t *scratch) {
    al_bf16_round(scratch, inp, (size_t)N * (size_t)C);
    al_matmul_forward_h(out, scratch, w, b, N, C, OC);
}

void al_matmul_forward_h(float *out, const uint16_t *inp16, const uint16_t *w, const float *b,
                         int N, int C, int OC) {
    gemm16_ctx g = {.ta = 0, .tb = 1, .M = N, .N = OC, .K = C, .alpha = 1.0f, .beta = 0.0f,
                    .A = inp16, .B = w, .lda = C, .ldb = C, .ldc = OC, .C = out, .bias = b};
    gemm16_run(&g);
}

void al_matmul_forward_ht(float *out, const uint16_t *inp16, const uint16_t *wt, const float *b,
                          int N, int C, int OC) {
    if (N == 1) { /* decoding: each thread streams whole rows of W */
        al_matvec_ht(out, inp16, wt, b, C, OC);
        return;
    }
    gemm16_ctx g = {.ta = 0, .tb = 0, .M = N, .N = OC, .K = C, .alpha = 1.0f, .beta = 0.0f,
                    .A = inp16, .B = wt, .lda = C, .ldb = OC, .ldc = OC, .C = out, .bias = b,
                    .wt = 1};
    gemm16_run(&g);
}

void al_matmul_backward_bf16(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const uint16_t *w, int N, int C, int OC,
                             uint16_t *scratch) {
    uint16_t *d16 = scratch, *x16 = scratch + (size_t)N * (size_t)OC;
    if (dinp || dw) al_bf16_round(d16, dout, (size_t)N * (size_t)OC);
    if (dinp) /* (N, C) += (N, OC) @ (OC, C) */
        al_gemm_bf16(0, 0, N, C, OC, 1.0f, d16, OC, w, C, 1.0f, dinp, C);
    if (dw) { /* (OC, C) += (N, OC)^T @ (N, C) */
        al_bf16_round(x16, inp, (size_t)N * (size_t)C);
        al_gemm_bf16(1, 0, OC, C, N, 1.0f, d16, OC, x16, C, 1.0f, dw, C);
    }
    /* the bias gradient is a sum in fp32, as autocast's */
    if (db) al_matmul_backward(NULL, NULL, db, dout, inp, NULL, N, C, OC);
}

/* ------------------------------------------------------------ small tiles */

/* bf16 pairs (lo, hi) as one 32-bit word, lo in the low half: the order of
 * two bf16 values in memory on a little-endian CPU, as vdpbf16ps reads them. */
static inline uint32_t pair1(float lo, float hi) {
    return (uint32_t)round1(lo) | (uint32_t)round1(hi) << 16;
}

/* Pairs of one row: dst[p] = (x[2p], x[2p+1]), x[K] read as 0. On a
 * little-endian CPU these are the bf16 values in a row: rounded at full
 * vector width, then copied. */
static void pair_row(uint32_t *dst, const float *x, int K) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint16_t h[2 * AL_T16_KMAX];
    AL_ASSERT(K <= 2 * AL_T16_KMAX);
    round_range(h, x, (size_t)K);
    if (K % 2) h[K] = 0;
    memcpy(dst, h, (size_t)(K + 1) / 2 * sizeof *dst);
#else
    const int K2 = K / 2;
    for (int p = 0; p < K2; p++) dst[p] = pair1(x[2 * p], x[2 * p + 1]);
    if (K % 2) dst[K2] = round1(x[K - 1]);
#endif
}

/* dst[p] = (x0[p], x1[p]) for p < n: two rows interleaved. */
AL_SIMD_CLONES static void pair_rows(uint32_t *dst, const float *x0, const float *x1, int n) {
    if (x1)
        for (int p = 0; p < n; p++) dst[p] = pair1(x0[p], x1[p]);
    else
        for (int p = 0; p < n; p++) dst[p] = round1(x0[p]);
}

/* The word at byte offset off of src (any alignment). */
static inline uint32_t word_at(const unsigned char *src, size_t off) {
    uint32_t w;
    memcpy(&w, src + off, sizeof w);
    return w;
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

/* dst (16 rows, stride ldd words) = the transpose of 16 rows of 16 words
 * at src (row stride lds bytes, any alignment), in registers: the packers'
 * transposes were scalar loads and stores, word by word (2 % of a tiny bf16
 * training step). The shuffles move bits, never change them. */
__attribute__((target("avx512f"))) static void words_tr16(uint32_t *dst, size_t ldd,
                                                         const unsigned char *src, size_t lds) {
    __m512i r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(src + (size_t)i * lds);
    for (int i = 0; i < 16; i += 2) { /* 2 x 2 blocks of words */
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* 4 x 4 blocks within each 128-bit lane */
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8) /* lanes across rows 4 apart, then 8 apart */
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
    for (int i = 0; i < 16; i++) _mm512_storeu_si512(dst + (size_t)i * ldd, r[i]);
}
#define WORDS_TR16 1
#endif

/* dst (cols, ldd) = src^T, src (rows of cols words, row stride lds bytes):
 * by 16 x 16 blocks in registers where the CPU has AVX-512 (al_bf16_cpu's
 * CPUs), the rest in 8 x 8 blocks word by word. */
static void words_transpose_b(uint32_t *dst, int ldd, const unsigned char *src, size_t lds, int rows,
                              int cols) {
    int r16 = 0, c16 = 0;
#ifdef WORDS_TR16
    if (bf16_cpu_cached() & 1) { /* AVX512_BF16 comes with AVX-512F */
        r16 = rows & ~15;
        c16 = cols & ~15;
        for (int r0 = 0; r0 < r16; r0 += 16)
            for (int c0 = 0; c0 < c16; c0 += 16)
                words_tr16(dst + (size_t)c0 * ldd + r0, (size_t)ldd, src + (size_t)r0 * lds + (size_t)c0 * 4,
                           lds);
    }
#endif
    for (int r0 = 0; r0 < rows; r0 += 8)
        for (int c0 = 0; c0 < cols; c0 += 8) {
            if (r0 < r16 && c0 < c16) continue; /* done above */
            const int r1 = r0 + 8 < rows ? r0 + 8 : rows, c1 = c0 + 8 < cols ? c0 + 8 : cols;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) dst[(size_t)c * ldd + r] = word_at(src, (size_t)r * lds + (size_t)c * 4);
        }
}

/* dst (cols, ldd) = src^T, src (rows, lds). */
static void words_transpose(uint32_t *dst, int ldd, const uint32_t *src, int lds, int rows,
                            int cols) {
    words_transpose_b(dst, ldd, (const unsigned char *)src, (size_t)lds * sizeof *src, rows, cols);
}

/* The packers (ops.h, al_t16_*): rounded as al_bf16_round, pads zeroed. */
void al_t16_pack_a(uint32_t *dst, const float *src, int ld, int M, int K) {
    const int K2 = (K + 1) / 2;
    for (int m = 0; m < M; m++) pair_row(dst + (size_t)m * K2, src + (size_t)m * ld, K);
}

void al_t16_pack_at(uint32_t *dst, const float *src, int ld, int M, int K) {
    /* pairs of source rows (K2, M), then transposed to (M, K2) */
    const int K2 = (K + 1) / 2;
    uint32_t tmp[AL_T16_TMAX];
    AL_ASSERT((size_t)K2 * (size_t)M <= AL_T16_TMAX);
    for (int p = 0; p < K2; p++)
        pair_rows(tmp + (size_t)p * M, src + (size_t)2 * p * ld,
                  2 * p + 1 < K ? src + (size_t)(2 * p + 1) * ld : NULL, M);
    words_transpose(dst, K2, tmp, M, K2, M);
}

void al_t16_pack_b(uint32_t *dst, const float *src, int ld, int K, int N) {
    const int NP = AL_T16_NP(N), K2 = (K + 1) / 2;
    for (int p = 0; p < K2; p++) {
        uint32_t *d = dst + (size_t)p * NP;
        pair_rows(d, src + (size_t)2 * p * ld, 2 * p + 1 < K ? src + (size_t)(2 * p + 1) * ld : NULL,
                  N);
        for (int n = N; n < NP; n++) d[n] = 0;
    }
}

void al_t16_pack_bt(uint32_t *dst, const float *src, int ld, int K, int N) {
    /* pairs of each source row (N, K2), then transposed to (K2, NP) */
    const int NP = AL_T16_NP(N), K2 = (K + 1) / 2;
    uint32_t tmp[AL_T16_TMAX];
    AL_ASSERT((size_t)K2 * (size_t)N <= AL_T16_TMAX);
    for (int n = 0; n < N; n++) pair_row(tmp + (size_t)n * K2, src + (size_t)n * ld, K);
    words_transpose(dst, NP, tmp, K2, N, K2);
    for (int p = 0; p < K2; p++)
        for (int n = N; n < NP; n++) dst[(size_t)p * NP + n] = 0;
}

/* The packers from bf16 sources: the layouts of the ones above, no
 * rounding (the values are bf16 already), pads zeroed. */
static inline uint32_t pair16(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }

/* The pair (x[0], x[1]) as one word: on a little-endian CPU the 4 bytes as
 * they are in memory (one load). */
static inline uint32_t pair_at(const uint16_t *x) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t w;
    memcpy(&w, x, sizeof w);
    return w;
#else
    return pair16(x[0], x[1]);
#endif
}

void al_t16_pack_a_h(uint32_t *dst, const uint16_t *src, int ld, int M, int K) {
    const int K2 = (K + 1) / 2;
    for (int m = 0; m < M; m++) {
        const uint16_t *x = src + (size_t)m * ld;
        uint32_t *d = dst + (size_t)m * K2;
        for (int p = 0; p < K / 2; p++) d[p] = pair_at(x + 2 * p);
        if (K % 2) d[K2 - 1] = x[K - 1];
    }
}

void al_t16_pack_b_h(uint32_t *dst, const uint16_t *src, int ld, int K, int N) {
    const int NP = AL_T16_NP(N), K2 = (K + 1) / 2;
    for (int p = 0; p < K2; p++) {
        const uint16_t *x0 = src + (size_t)2 * p * ld, *x1 = x0 + ld;
        uint32_t *d = dst + (size_t)p * NP;
        if (2 * p + 1 < K)
            for (int n = 0; n < N; n++) d[n] = pair16(x0[n], x1[n]);
        else
            for (int n = 0; n < N; n++) d[n] = x0[n];
        for (int n = N; n < NP; n++) d[n] = 0;
    }
}

void al_t16_pack_bt_h(uint32_t *dst, const uint16_t *src, int ld, int K, int N) {
    /* a transpose of the source's pairs, each a word in memory (pair_at) */
    const int NP = AL_T16_NP(N), K2 = (K + 1) / 2, KE = K / 2;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    words_transpose_b(dst, NP, (const unsigned char *)src, (size_t)ld * sizeof *src, N, KE);
#else
    for (int p = 0; p < KE; p++)
        for (int n = 0; n < N; n++) dst[(size_t)p * NP + n] = pair_at(src + (size_t)n * ld + 2 * p);
#endif
    if (K % 2)
        for (int n = 0; n < N; n++) dst[(size_t)(K2 - 1) * NP + n] = src[(size_t)n * ld + K - 1];
    for (int p = 0; p < K2; p++)
        for (int n = N; n < NP; n++) dst[(size_t)p * NP + n] = 0;
}

typedef struct t16_args {
    float *C;
    const uint32_t *A, *B;
    int ldc, M, N, K2, NP, acc;
    float alpha;
    int tri;   /* AL_T16_* of ops.h: the work a causal diagonal tile may skip */
} t16_args;

/* The portable loops: 16 columns at a time, pair after pair. */
AL_SIMD_CLONES static void t16_plain(const t16_args *g) {
    for (int i = 0; i < g->M; i++) {
        const uint32_t *a = g->A + (size_t)i * g->K2;
        for (int n0 = 0; n0 < g->N; n0 += 16) {
            float s[16] = {0};
            for (int p = 0; p < g->K2; p++) {
                const float a0 = al_bf16_widen1((uint16_t)a[p]), a1 = al_bf16_widen1((uint16_t)(a[p] >> 16));
                const uint32_t *b = g->B + (size_t)p * g->NP + n0;
                for (int l = 0; l < 16; l++) {
                    float t = s[l] + a0 * al_bf16_widen1((uint16_t)b[l]);
                    s[l] = t + a1 * al_bf16_widen1((uint16_t)(b[l] >> 16));
                }
            }
            float *c = g->C + (size_t)i * g->ldc + n0;
            const int nl = g->N - n0 < 16 ? g->N - n0 : 16;
            for (int l = 0; l < nl; l++) c[l] = g->alpha * s[l] + (g->acc ? c[l] : 0.0f);
        }
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

#define T16_TARGET __attribute__((target("avx512f,avx512bf16")))
#define T16_MR 4 /* rows per register block: 4 x 4 accumulators of 16 */

/* Rows [i0, i0 + T16_MR) by vectors [n0, n0 + 16 NV) of C, NV <= 4 a
 * constant where inlined, over the pairs [p0, p1) of k; rows past M repeat
 * the last row, unstored. */
T16_TARGET static inline __attribute__((always_inline)) void
t16_block(const t16_args *g, int i0, int n0, const int NV, int p0, int p1) {
    __m512 c[T16_MR][4];
    const uint32_t *a[T16_MR];
#pragma GCC unroll 4
    for (int r = 0; r < T16_MR; r++) {
        const int i = i0 + r < g->M ? i0 + r : g->M - 1;
        a[r] = g->A + (size_t)i * g->K2;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) c[r][v] = _mm512_setzero_ps();
    }
    const uint32_t *b = g->B + (size_t)p0 * g->NP + n0;
    for (int p = p0; p < p1; p++, b += g->NP) {
        __m512i bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_si512(b + 16 * v);
#pragma GCC unroll 4
        for (int r = 0; r < T16_MR; r++) {
            const __m512i av = _mm512_set1_epi32((int)a[r][p]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                c[r][v] = _mm512_dpbf16_ps(c[r][v], (__m512bh)av, (__m512bh)bv[v]);
        }
    }
    const __m512 alpha = _mm512_set1_ps(g->alpha);
    const int mr = g->M - i0 < T16_MR ? g->M - i0 : T16_MR;
    if (mr == T16_MR && g->N - n0 >= 16 * NV) { /* a whole block: no masks, and the
                                                 * accumulators stay in registers */
#pragma GCC unroll 4
        for (int r = 0; r < T16_MR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                float *cp = g->C + (size_t)(i0 + r) * g->ldc + n0 + 16 * v;
                __m512 x = _mm512_mul_ps(c[r][v], alpha);
                if (g->acc) x = _mm512_add_ps(_mm512_loadu_ps(cp), x);
                _mm512_storeu_ps(cp, x);
            }
        return;
    }
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            const int n = n0 + 16 * v;
            const __mmask16 k = g->N - n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (g->N - n)) - 1);
            float *cp = g->C + (size_t)(i0 + r) * g->ldc + n;
            __m512 x = _mm512_mul_ps(c[r][v], alpha);
            if (g->acc) x = _mm512_add_ps(_mm512_maskz_loadu_ps(k, cp), x);
            _mm512_mask_storeu_ps(cp, k, x);
        }
}

T16_TARGET static void t16_native(const t16_args *g) {
    for (int n0 = 0; n0 < g->N; n0 += 64) {
        for (int i0 = 0; i0 < g->M; i0 += T16_MR) {
            /* the block's last row; a causal diagonal tile's zeros and
             * unneeded columns (ops.h, AL_T16_*) skipped by whole pairs and
             * vectors: the pairs skipped add exact zeros to sums that start
             * at +0, so the sums keep their bits */
            const int rl = i0 + T16_MR - 1 < g->M - 1 ? i0 + T16_MR - 1 : g->M - 1;
            int nv = (g->N - n0 + 15) / 16, p0 = 0, p1 = g->K2;
            if (g->tri == AL_T16_COLS_LE_ROW) {
                if (n0 > rl) continue;
                nv = (rl - n0) / 16 + 1 < nv ? (rl - n0) / 16 + 1 : nv;
            } else if (g->tri == AL_T16_A_LOWER) {
                p1 = rl / 2 + 1 < p1 ? rl / 2 + 1 : p1;
            } else if (g->tri == AL_T16_A_UPPER) {
                p0 = i0 / 2;
            }
            switch (nv > 4 ? 4 : nv) {
            case 1: t16_block(g, i0, n0, 1, p0, p1); break;
            case 2: t16_block(g, i0, n0, 2, p0, p1); break;
            case 3: t16_block(g, i0, n0, 3, p0, p1); break;
            default: t16_block(g, i0, n0, 4, p0, p1); break;
            }
        }
    }
}
#define T16_HAVE_NATIVE 1
#endif

void al_t16_gemm(float *C, int ldc, const uint32_t *A, const uint32_t *B, int M, int N, int K,
                 float alpha, int acc, int native) {
    al_t16_gemm_tri(C, ldc, A, B, M, N, K, alpha, acc, native, AL_T16_FULL);
}

void al_t16_gemm_tri(float *C, int ldc, const uint32_t *A, const uint32_t *B, int M, int N, int K,
                     float alpha, int acc, int native, int tri) {
    AL_ASSERT(M >= 0 && N >= 0 && K >= 0 && ldc >= N);
    t16_args g = {.C = C, .A = A, .B = B, .ldc = ldc, .M = M, .N = N, .K2 = (K + 1) / 2,
                  .NP = AL_T16_NP(N), .acc = acc, .alpha = alpha, .tri = tri};
    if (M == 0 || N == 0) return;
#ifdef T16_HAVE_NATIVE
    if (native) {
        t16_native(&g);
        return;
    }
#else
    (void)native;
#endif
    t16_plain(&g);
}

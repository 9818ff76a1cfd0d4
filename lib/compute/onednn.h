/* Private to lib/compute: matrix-product panels on oneDNN (onednn.c), and
 * how the pool splits a product (al_gemm_plan).
 *
 * Each call runs one product on the calling thread alone (the compute pool
 * splits larger products into panels, one per thread; pool.h). With
 * AL_HAVE_ONEDNN undefined (-DALIGND_ONEDNN=OFF, ThreadSanitizer builds)
 * every function reports AL_EUNSUP and the callers use OpenBLAS or plain
 * loops. */
#ifndef AL_COMPUTE_ONEDNN_H
#define AL_COMPUTE_ONEDNN_H

#include <stdint.h>

/* Row-major C = alpha op(A) op(B) + beta C as al_gemm, on the calling
 * thread. A and B are float (dt_bf16 = 0) or bf16 (dt_bf16 = 1); C is
 * float. beta 0 never reads C. Returns AL_OK, or AL_EUNSUP when oneDNN is
 * absent or has no primitive for the shape (nothing was written). */
int al_dnnl_gemm(int dt_bf16, int transA, int transB, int M, int N, int K, float alpha,
                 const void *A, int lda, const void *B, int ldb, float beta, float *C, int ldc);

/* 1 when oneDNN is built in and its CPU engine started. */
int al_dnnl_ready(void);

/* The instruction set oneDNN's kernels use here ("avx512_core_bf16", ...),
 * or "none". */
const char *al_dnnl_isa(void);

/* Primitives alive now, and created since the process started. */
void al_dnnl_cache_stats(int *live, long *created);
/* Tests: the primitives kept before the least recently used goes (default
 * 1024, at least 1). */
void al_dnnl_set_cache_cap(int cap);

/* How the pool splits a product C (M x N, K deep) of al_gemm or
 * al_gemm_bf16 over nt threads: 0 runs it on the calling thread (too small
 * to pay a fork/join); else 1, with *split_m 1 for blocks of C's rows and 0
 * for blocks of its columns. A few rows against a large matrix (decoding)
 * are bound by reading the matrix, worth splitting far below the work a
 * product needs. whole_rows: the panels run on oneDNN, whose fastest
 * kernels want whole rows of C, so rows are split whenever each thread gets
 * a block of them; otherwise the larger side of C is (each panel repacks the
 * operand it shares with the others). K is never split: no reductions
 * across threads, and the result does not depend on the split. */
static inline int al_gemm_plan(int M, int N, int K, int nt, int whole_rows, int *split_m) {
    double work = (double)M * (double)N * (double)K;
    int gemv = M <= 4 && (double)N * (double)K >= 65536.0;
    if (nt <= 1 || (work < 2.0e6 && !gemv)) return 0;
    *split_m = whole_rows ? M >= 32 * nt : M >= N;
    return 1;
}

#endif

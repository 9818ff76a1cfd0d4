/* Private to lib/compute: matrix-product panels on oneDNN (onednn.c).
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

#endif

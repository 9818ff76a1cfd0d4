/* OpenBLAS, opened on first use (blas.c): the fp32 products that do not run
 * on oneDNN (decoding's one-row products, the fp32 attention tiles, the
 * OpenBLAS backend of al_gemm). Same arguments and results as cblas_sgemm and
 * cblas_sgemv (cblas.h); OpenBLAS runs single-threaded (pool.h). A process
 * whose products are all on oneDNN, an SFT-LoRA job on a bf16 base for one,
 * never loads it. If the library cannot be opened (an install without it)
 * the first call aborts with the loader's reason in the log: a long-lived
 * process checks first with al_blas_probe. */
#ifndef AL_BLAS_H
#define AL_BLAS_H

#include <cblas.h>

#include "al.h"

void al_blas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                   blasint N, blasint K, float alpha, const float *A, blasint lda, const float *B,
                   blasint ldb, float beta, float *C, blasint ldc);
void al_blas_sgemv(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE trans, blasint m, blasint n, float alpha,
                   const float *A, blasint lda, const float *x, blasint incx, float beta, float *y,
                   blasint incy);
/* AL_OK if OpenBLAS (name, or NULL for the one this build uses) can be
 * opened and has the functions used here; else AL_ENOENT and the loader's
 * reason ("OpenBLAS (NAME) cannot be opened: ..."). Opens it in a child
 * process (fork), so this process stays without it; call it before starting
 * threads. */
int al_blas_probe(const char *name, char err[AL_ERRLEN]);
/* 0 while OpenBLAS is not loaded in this process, else its thread count
 * (1 once blas.c has opened it). Opens nothing (tests). */
int al_blas_threads(void);

#endif

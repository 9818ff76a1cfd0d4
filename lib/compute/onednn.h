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

/* op(B) packed once for a product split by rows (al_gemm_plan's split_m):
 * oneDNN's brgemm kernels otherwise repack all of op(B) into their blocked
 * layout on every call, every thread all of it. al_dnnl_pack_b prepares a
 * packing of op(B) (K x N, transB and ldb as in al_dnnl_gemm) into the
 * layout the matmul of a row panel of M rows with these parameters
 * chooses, in a buffer of the calling thread (kept, grown to the largest
 * op(B) packed: one weight), in `parts` parts: al_dnnl_pack_part(pk, p) for
 * each p in [0, parts), on any threads, each writing its blocks of columns
 * (together the bytes of one whole reorder). The packing stays valid until
 * the thread that prepared it prepares another. NULL when oneDNN is absent
 * or cannot. al_dnnl_gemm_pk runs a row panel (M rows, any count) of the
 * same product on the packing: the same bits as al_dnnl_gemm with B plain,
 * or AL_EUNSUP (nothing written) when that panel's matmul chose another
 * layout; then the caller runs al_dnnl_gemm. */
typedef struct al_dnnl_pk al_dnnl_pk;
const al_dnnl_pk *al_dnnl_pack_b(int dt_bf16, int transB, int M, int N, int K, float alpha,
                                 int lda, const void *B, int ldb, float beta, int ldc, int parts);
int al_dnnl_pack_part(const al_dnnl_pk *pk, int part);
int al_dnnl_gemm_pk(int dt_bf16, int transB, int M, int N, int K, float alpha, const void *A,
                    int lda, const al_dnnl_pk *pk, int ldb, float beta, float *C, int ldc);

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

/* What runs the panels of a product, for al_gemm_plan. */
enum { AL_PANEL_OPENBLAS = 0, AL_PANEL_DNNL_F32 = 1, AL_PANEL_DNNL_BF16 = 2 };

/* How the pool splits a product C (M x N, K deep) of al_gemm or
 * al_gemm_bf16 over nt threads, its panels run by `panel` (AL_PANEL_*),
 * transB as in al_gemm: 0 runs it on the calling thread (too small to pay a
 * fork/join); else 1, with *split_m 1 for blocks of C's rows and 0 for
 * blocks of its columns. A few rows against a large matrix (decoding) are
 * bound by reading the matrix, worth splitting far below the work a
 * product needs. K is never split: no reductions across threads, and the
 * result does not depend on the split.
 *
 * OpenBLAS panels: the larger side of C is split (each panel repacks the
 * operand it shares with the others).
 *
 * oneDNN panels: a block of whole rows of C runs oneDNN's brgemm kernels,
 * the fastest for products of many rows, but they first repack ALL of op(B)
 * (the operand the row blocks share) into their layout, every thread all
 * of it; a block of columns is strided in C and runs oneDNN's jit gemm,
 * which packs just its columns of op(B), block by block. So rows are split
 * whenever each thread gets 32 of them, unless op(B) is large: at least
 * 2^24 elements (32 MB in bf16, this CPU's whole L3; an LM head's V x C,
 * while no layer product of the models here comes near), where repacking
 * it on every thread costs more than narrower panels; then columns, if
 * each thread's block stays at least 256 wide. With op(B) = B^T (the
 * head's logits, K the model width) only in bf16 and up to K = 1024: the
 * jit gemm's panels were no faster in fp32, and slower in bf16 at K = 2048.
 * Per thread, rows -> columns (bench/gemm_split, 2 threads, 2026-12-07):
 * d(hidden) of GPT-2's head in 128-row chunks, 128x768x50257, bf16
 * 149 -> 181 GFLOP/s, fp32 82 -> 111; its logits 128x50257x768 bf16
 * 163 -> 176, fp32 91 -> 96 but SmolLM's 86 -> 76; 128x32768x2048 bf16
 * 78 -> 68; the tiny head's 128x128x4096 (64-wide columns) 196 -> 172. Only
 * the shapes decide, never timing. */
static inline int al_gemm_plan(int M, int N, int K, int nt, int panel, int transB, int *split_m) {
    double work = (double)M * (double)N * (double)K;
    int gemv = M <= 4 && (double)N * (double)K >= 65536.0;
    if (nt <= 1 || (work < 2.0e6 && !gemv)) return 0;
    if (panel == AL_PANEL_OPENBLAS) {
        *split_m = M >= N;
        return 1;
    }
    int big_b = (double)N * (double)K >= 16777216.0 && N >= 256 * nt &&
                (!transB || (panel == AL_PANEL_DNNL_BF16 && K <= 1024));
    *split_m = M >= 32 * nt && !big_b;
    return 1;
}

#endif

/* Tests for OpenBLAS opened on first use (lib/compute/blas.c): products
 * that run on oneDNN leave it unloaded, the first fp32 product that needs
 * it opens it single-threaded, and its results are cblas_sgemm's and
 * cblas_sgemv's; al_blas_probe checks it in a child. The order matters:
 * the probe runs before the pool's threads exist (it forks), and the first
 * cases before any product on OpenBLAS. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "al.h"
#include "compute/blas.h"
#include "compute/ops.h"
#include "compute/pool.h"
#include "t.h"

/* A bf16 product and a many-row fp32 one, the products of an SFT-LoRA step
 * on a bf16 base, run on oneDNN: the process has not loaded OpenBLAS. */
static void test_onednn_products_leave_it_unloaded(void) {
    if (al_gemm_backend() != AL_MM_ONEDNN) return; /* the build has no oneDNN */
    enum { M = 64, N = 48, K = 32 };
    static float A[M * K], B[K * N], C[M * N];
    static uint16_t Ah[M * K], Bh[K * N];
    for (int i = 0; i < M * K; i++) A[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < K * N; i++) B[i] = (float)(i % 5) - 2.0f;
    al_bf16_round(Ah, A, M * K);
    al_bf16_round(Bh, B, K * N);
    al_gemm_bf16(0, 0, M, N, K, 1.0f, Ah, K, Bh, N, 0.0f, C, N);
    al_gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    T_EQ_INT(al_blas_threads(), 0);
}

/* C = A B, 2x3 by 3x2, worked out by hand; then y = A x. */
static void test_first_product_opens_it(void) {
    const float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {7, 8, 9, 10, 11, 12}, x[3] = {1, -1, 2};
    float C[4] = {1, 1, 1, 1}, y[2] = {0, 0};
    al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2);
    T_NEAR(C[0], 58.0f, 0.0f);
    T_NEAR(C[1], 64.0f, 0.0f);
    T_NEAR(C[2], 139.0f, 0.0f);
    T_NEAR(C[3], 154.0f, 0.0f);
    al_blas_sgemv(CblasRowMajor, CblasNoTrans, 2, 3, 2.0f, A, 3, x, 1, 0.0f, y, 1);
    T_NEAR(y[0], 10.0f, 0.0f);
    T_NEAR(y[1], 22.0f, 0.0f);
    /* the pool owns the cores: OpenBLAS starts no threads of its own */
    T_EQ_INT(al_blas_threads(), 1);
}

/* Products on the pool's threads at once after it is open: the same bits
 * as one thread's (single-threaded OpenBLAS per panel). */
typedef struct par_ctx {
    float A[32 * 16], B[16 * 24], C[2][32 * 24];
} par_ctx;

static void par_fn(void *p, int tid, int nt) {
    par_ctx *c = p;
    (void)nt;
    if (tid < 2)
        al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 32, 24, 16, 1.0f, c->A, 16, c->B, 24, 0.0f,
                      c->C[tid], 24);
}

static void test_threads_agree(void) {
    static par_ctx c;
    for (int i = 0; i < 32 * 16; i++) c.A[i] = 0.01f * (float)(i % 97) - 0.3f;
    for (int i = 0; i < 16 * 24; i++) c.B[i] = 0.02f * (float)(i % 89) - 0.7f;
    al_pool_run(par_fn, &c);
    float ref[32 * 24];
    al_blas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 32, 24, 16, 1.0f, c.A, 16, c.B, 24, 0.0f, ref, 24);
    T_TRUE(memcmp(c.C[0], ref, sizeof ref) == 0);
    if (al_pool_threads() > 1) T_TRUE(memcmp(c.C[1], ref, sizeof ref) == 0);
}

/* The probe opens it in a child: this process stays without it, and a name
 * the loader cannot find, or a library without OpenBLAS's functions, gets
 * the reason. */
static void test_probe(void) {
    char err[AL_ERRLEN];
    T_OK(al_blas_probe(NULL, err));
    T_EQ_INT(al_blas_threads(), 0);
    T_EQ_INT(al_blas_probe("libalignd-no-such-blas.so.0", err), AL_ENOENT);
    T_STR_EQ(err, "OpenBLAS (libalignd-no-such-blas.so.0) cannot be opened: libalignd-no-such-blas.so.0: "
                  "cannot open shared object file: No such file or directory");
    T_EQ_INT(al_blas_probe("libm.so.6", err), AL_ENOENT);
    T_STR_EQ(err, "OpenBLAS (libm.so.6) lacks cblas_sgemm, cblas_sgemv or openblas_set_num_threads");
    T_EQ_INT(al_blas_threads(), 0);
}

int main(void) {
    test_probe(); /* before the pool's threads: it forks */
    T_OK(al_pool_init(2));
    test_onednn_products_leave_it_unloaded();
    test_first_product_opens_it();
    test_threads_agree();
    al_pool_shutdown();
    return t_done();
}

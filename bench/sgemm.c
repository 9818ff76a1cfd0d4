/* bench/sgemm: the matrix-product rate of this machine, the yardstick for
 * model-FLOPs utilisation (MFU) in BENCHMARKS.md.
 *
 * Measures single-precision GEMM in GFLOP/s (2 M N K flops per product) for
 * square sizes 256..2048 and for the matrix products of one GPT-2 124M
 * training step at B=4, T=256 (1024 token rows), in three settings, in this
 * order:
 *   openblas_1t   cblas_sgemm with OpenBLAS single-threaded;
 *   openblas_nt   cblas_sgemm with OpenBLAS's own threads (--threads of them);
 *   al_gemm_pool  al_gemm split across the alignd pool (--threads threads),
 *                 each panel a single-threaded cblas_sgemm (pool.h).
 *
 * One JSON line per measurement on stdout. A benchmark, never a test: it
 * asserts nothing about times.
 *
 * Usage: sgemm [--threads N] [--min-time S] [--quick] [--only square|model] */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"
#include "compute/ops.h"
#include "compute/pool.h"

typedef struct bench_shape {
    const char *name;
    int M, N, K;
    int ta, tb;           /* op(A) = A^T, op(B) = B^T */
} bench_shape;

/* The 124M model's products at N = B*T = 1024 rows. Forward is
 * out = inp @ w^T (transB); backward dinp = dout @ w and dw = dout^T @ inp. */
static const bench_shape k_model[] = {
    {"gpt2_qkv_fwd", 1024, 2304, 768, 0, 1},
    {"gpt2_qkv_dinp", 1024, 768, 2304, 0, 0},
    {"gpt2_qkv_dw", 2304, 768, 1024, 1, 0},
    {"gpt2_attnproj_fwd", 1024, 768, 768, 0, 1},
    {"gpt2_fc_fwd", 1024, 3072, 768, 0, 1},
    {"gpt2_fcproj_fwd", 1024, 768, 3072, 0, 1},
    {"gpt2_fc_dw", 3072, 768, 1024, 1, 0},
    {"gpt2_head_chunk256_fwd", 256, 50257, 768, 0, 1},
    {"gpt2_head_full_fwd", 1024, 50257, 768, 0, 1},
    {"gpt2_head_dw", 50257, 768, 1024, 1, 0},
};

static const int k_square[] = {256, 512, 1024, 1536, 2048};

enum { IMPL_BLAS = 0, IMPL_POOL = 1, IMPL_BF16 = 2 };

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run_gemm(int impl, const bench_shape *s, const float *A, const float *B, float *C) {
    int lda = s->ta ? s->M : s->K;
    int ldb = s->tb ? s->K : s->N;
    if (impl == IMPL_BF16) { /* A and B hold bf16 values in their first halves */
        al_gemm_bf16(s->ta, s->tb, s->M, s->N, s->K, 1.0f, (const uint16_t *)A, lda,
                     (const uint16_t *)B, ldb, 0.0f, C, s->N);
        return;
    }
    if (impl == IMPL_POOL) {
        al_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
        return;
    }
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f, A, lda, B,
                ldb, 0.0f, C, s->N);
}

/* Times one shape: one untimed product, then repetitions until min_s has
 * passed (at least 3). Prints one JSON line. */
static int bench_one(int impl, const char *impl_name, int threads, const bench_shape *s,
                     double min_s) {
    size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
    float *A = al_calloc(na, sizeof(float));
    float *B = al_calloc(nb, sizeof(float));
    float *C = al_calloc(nc, sizeof(float));
    if (!A || !B || !C) {
        al_free(A);
        al_free(B);
        al_free(C);
        fprintf(stderr, "sgemm: out of memory for %s\n", s->name);
        return AL_ENOMEM;
    }
    al_rng rng;
    al_rng_seed(&rng, 42);
    for (size_t i = 0; i < na; i++) A[i] = al_rng_uniform(&rng) - 0.5f;
    for (size_t i = 0; i < nb; i++) B[i] = al_rng_uniform(&rng) - 0.5f;

    if (impl == IMPL_BF16) /* in place, front to back in serial chunks (no overlap race) */
        for (int w = 0; w < 2; w++) {
            float *X = w ? B : A;
            size_t n = w ? nb : na;
            for (size_t i = 0; i < n; i += 32768)
                al_bf16_round((uint16_t *)X + i, X + i, n - i < 32768 ? n - i : 32768);
        }
    run_gemm(impl, s, A, B, C);
    double times[256];
    int reps = 0;
    double t_start = al_now();
    while (reps < (int)(sizeof times / sizeof times[0]) &&
           (reps < 3 || al_now() - t_start < min_s)) {
        double t0 = al_now();
        run_gemm(impl, s, A, B, C);
        times[reps++] = al_now() - t0;
    }
    qsort(times, (size_t)reps, sizeof times[0], cmp_double);
    double flops = 2.0 * s->M * s->N * (double)s->K;
    double check = 0;
    for (size_t i = 0; i < nc; i += nc / 7 + 1) check += C[i];
    printf("{\"bench\":\"sgemm\",\"impl\":\"%s\",\"threads\":%d,\"shape\":\"%s\","
           "\"M\":%d,\"N\":%d,\"K\":%d,\"transA\":%d,\"transB\":%d,"
           "\"gflops\":%.2f,\"gflops_best\":%.2f,\"reps\":%d,\"check\":%.3g}\n",
           impl_name, threads, s->name, s->M, s->N, s->K, s->ta, s->tb,
           flops / times[reps / 2] / 1e9, flops / times[0] / 1e9, reps, check);
    fflush(stdout);
    al_free(A);
    al_free(B);
    al_free(C);
    return AL_OK;
}

static void bench_all(int impl, const char *impl_name, int threads, int do_square,
                      int do_model, int quick, double min_s) {
    if (do_square) {
        for (size_t i = 0; i < sizeof k_square / sizeof k_square[0]; i++) {
            int n = k_square[i];
            if (quick && n != 1024) continue;
            char name[32];
            snprintf(name, sizeof name, "square%d", n);
            bench_shape s = {name, n, n, n, 0, 0};
            bench_one(impl, impl_name, threads, &s, min_s);
        }
    }
    if (do_model) {
        for (size_t i = 0; i < sizeof k_model / sizeof k_model[0]; i++) {
            if (quick && i > 0 && i != 7) continue;
            bench_one(impl, impl_name, threads, &k_model[i], min_s);
        }
    }
}

static void usage(void) {
    fprintf(stderr, "usage: sgemm [--threads N] [--min-time S] [--quick] "
                    "[--only square|model]\n");
}

int main(int argc, char **argv) {
    int threads = 2, quick = 0, do_square = 1, do_model = 1;
    double min_s = 0.3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) {
            min_s = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            i++;
            do_square = !strcmp(argv[i], "square");
            do_model = !strcmp(argv[i], "model");
        } else {
            usage();
            return 2;
        }
    }
    if (threads < 1) threads = 1;

    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("{\"bench\":\"sgemm_info\",\"openblas_config\":\"%s\",\"openblas_core\":\"%s\","
           "\"OPENBLAS_CORETYPE\":\"%s\",\"threads\":%d}\n",
           openblas_get_config(), openblas_get_corename(), coretype ? coretype : "",
           threads);

    openblas_set_num_threads(1);
    bench_all(IMPL_BLAS, "openblas_1t", 1, do_square, do_model, quick, min_s);
    if (threads > 1) {
        openblas_set_num_threads(threads);
        bench_all(IMPL_BLAS, "openblas_nt", threads, do_square, do_model, quick, min_s);
        openblas_set_num_threads(1);
    }
    /* al_pool_init makes OpenBLAS single-threaded: the pool owns the cores. */
    int rc = al_pool_init(threads);
    if (rc != AL_OK) {
        fprintf(stderr, "sgemm: al_pool_init: %s\n", al_strerror(rc));
        return 1;
    }
    /* the pool with each backend, and bf16 products (oneDNN when built in) */
    if (al_gemm_set_backend(AL_MM_OPENBLAS) == AL_OK)
        bench_all(IMPL_POOL, "al_gemm_pool_openblas", al_pool_threads(), do_square, do_model, quick,
                  min_s);
    if (al_gemm_set_backend(AL_MM_ONEDNN) == AL_OK) {
        bench_all(IMPL_POOL, "al_gemm_pool_onednn", al_pool_threads(), do_square, do_model, quick,
                  min_s);
        bench_all(IMPL_BF16, "al_gemm_bf16_pool_onednn", al_pool_threads(), do_square, do_model,
                  quick, min_s);
    }
    al_gemm_set_backend(AL_MM_OPENBLAS);
    bench_all(IMPL_POOL, "al_gemm_pool", al_pool_threads(), do_square, do_model, quick,
              min_s);
    al_pool_shutdown();
    return 0;
}

/* bench/gemm_split: how the pool should split a oneDNN product (al_gemm_plan
 * in lib/compute/onednn.h). Times one product C (M x N, K deep) split over
 * the pool's threads by blocks of C's rows and by blocks of its columns, the
 * two alternating repetition by repetition (so a change of load hits both),
 * each panel a single-threaded oneDNN matmul as in al_gemm and al_gemm_bf16.
 * Prints per shape, dtype and split the median and best rate per thread
 * (GFLOP/s, 2 M N K flops over the wall time and the threads) and the split
 * al_gemm_plan takes. A benchmark, never a test: it asserts nothing.
 *
 * The shapes: the LM head's products in 128-row chunks (a frozen head:
 * LoRA, reference models) and whole 1024-row batches, logits (op(B) = B^T)
 * and d(hidden), of GPT-2, SmolLM, Qwen2.5-0.5B and the tiny bench model;
 * the layer products of GPT-2, SmolLM and Qwen at 1024 token rows; LoRA's
 * rank-16 products; a decoding batch; and a few made-up shapes between.
 * Splits are the pool's: rows in blocks of 8, columns in blocks of 16.
 *
 * Usage: gemm_split [--threads N] [--reps R] [--dtype f32|bf16] [--match NAME_PART]
 *                   [--from INDEX] [--shape M,N,K,transA,transB] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"
#include "compute/onednn.h"
#include "compute/ops.h"
#include "compute/pool.h"

typedef struct shape {
    const char *name;
    int M, N, K, ta, tb;
} shape;

static const shape k_shapes[] = {
    {"gpt2_head128_fwd", 128, 50257, 768, 0, 1},
    {"gpt2_head128_dh", 128, 768, 50257, 0, 0},
    {"gpt2_head1024_fwd", 1024, 50257, 768, 0, 1},
    {"gpt2_head1024_dh", 1024, 768, 50257, 0, 0},
    {"smollm_head128_fwd", 128, 49152, 576, 0, 1},
    {"smollm_head128_dh", 128, 576, 49152, 0, 0},
    {"tiny_head128_fwd", 128, 4096, 128, 0, 1},
    {"tiny_head128_dh", 128, 128, 4096, 0, 0},
    {"tiny_head1024_fwd", 1024, 4096, 128, 0, 1},
    {"tiny_head1024_dh", 1024, 128, 4096, 0, 0},
    {"gpt2_qkv_fwd", 1024, 2304, 768, 0, 1},
    {"gpt2_qkv_dinp", 1024, 768, 2304, 0, 0},
    {"gpt2_fc_fwd", 1024, 3072, 768, 0, 1},
    {"gpt2_fcproj_dinp", 1024, 3072, 768, 0, 0},
    {"gpt2_attnproj_fwd", 1024, 768, 768, 0, 1},
    {"smollm_gateup_fwd", 1024, 3072, 576, 0, 1},
    {"smollm_down_dinp", 1024, 1536, 576, 0, 0},
    {"smollm_q_fwd", 1024, 576, 576, 0, 1},
    {"lora_A_fwd", 1024, 16, 768, 0, 1},
    {"lora_dA", 16, 768, 1024, 1, 0},
    {"decode4_qkv", 4, 2304, 768, 0, 1},
    {"qwen_up_fwd", 1024, 4864, 896, 0, 1},
    {"qwen_gateup_fwd", 1024, 9728, 896, 0, 1},
    {"qwen_down_fwd", 1024, 896, 4864, 0, 1},
    {"qwen_down_dinp", 1024, 4864, 896, 0, 0},
    {"qwen_head128_fwd", 128, 151936, 896, 0, 1},
    {"qwen_head128_dh", 128, 896, 151936, 0, 0},
    {"sweep128_1k", 128, 1024, 1024, 0, 1},
    {"sweep128_2k", 128, 2048, 2048, 0, 1},
    {"sweep128_4k2k", 128, 4096, 2048, 0, 1},
    {"sweep128_8k2k", 128, 8192, 2048, 0, 1},
    {"sweep128_dh8k", 128, 1024, 8192, 0, 0},
    {"sweep128_dh16k", 128, 1024, 16384, 0, 0},
    {"sweep256_8k2k", 256, 8192, 2048, 0, 1},
    {"sweep2048_head", 2048, 50257, 768, 0, 1},
};

typedef struct run_ctx {
    const shape *s;
    int bf16, split_m;
    const void *A, *B;
    float *C;
} run_ctx;

static void run_fn(void *p, int tid, int nt) {
    const run_ctx *r = p;
    const shape *s = r->s;
    size_t el = r->bf16 ? 2 : 4;
    long lo, hi, m0 = 0, m1 = s->M, n0 = 0, n1 = s->N;
    if (r->split_m) {
        al_split((s->M + 7) / 8, nt, tid, &lo, &hi);
        m0 = lo * 8, m1 = hi * 8 < s->M ? hi * 8 : s->M;
    } else {
        al_split((s->N + 15) / 16, nt, tid, &lo, &hi);
        n0 = lo * 16, n1 = hi * 16 < s->N ? hi * 16 : s->N;
    }
    if (m1 <= m0 || n1 <= n0) return;
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    const char *A = (const char *)r->A + el * (s->ta ? (size_t)m0 : (size_t)m0 * (size_t)lda);
    const char *B = (const char *)r->B + el * (s->tb ? (size_t)n0 * (size_t)ldb : (size_t)n0);
    if (al_dnnl_gemm(r->bf16, s->ta, s->tb, (int)(m1 - m0), (int)(n1 - n0), s->K, 1.0f, A, lda, B,
                     ldb, 0.0f, r->C + (size_t)m0 * (size_t)s->N + (size_t)n0, s->N) != AL_OK)
        abort();
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_shape(const shape *s, int bf16, int reps) {
    size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
    float *A = al_calloc(na, sizeof(float)), *B = al_calloc(nb, sizeof(float));
    float *C = al_calloc(nc, sizeof(float));
    AL_ASSERT(A && B && C);
    al_rng rng;
    al_rng_seed(&rng, 42);
    for (size_t i = 0; i < na; i++) A[i] = al_rng_uniform(&rng) - 0.5f;
    for (size_t i = 0; i < nb; i++) B[i] = al_rng_uniform(&rng) - 0.5f;
    if (bf16) /* in place, front to back in chunks (no overlap) */
        for (int w = 0; w < 2; w++) {
            float *X = w ? B : A;
            size_t n = w ? nb : na;
            for (size_t i = 0; i < n; i += 32768)
                al_bf16_round((uint16_t *)X + i, X + i, n - i < 32768 ? n - i : 32768);
        }
    run_ctx rc[2] = {{s, bf16, 1, A, B, C}, {s, bf16, 0, A, B, C}};
    double t[2][64];
    if (reps > 64) reps = 64;
    for (int k = 0; k < 2; k++) al_pool_run(run_fn, &rc[k]); /* primitives made */
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < 2; k++) {
            int kk = r & 1 ? 1 - k : k; /* alternate which goes first */
            double t0 = al_now();
            al_pool_run(run_fn, &rc[kk]);
            t[kk][r] = al_now() - t0;
        }
    int plan_m = -1, nt = al_pool_threads();
    if (!al_gemm_plan(s->M, s->N, s->K, nt, bf16 ? AL_PANEL_DNNL_BF16 : AL_PANEL_DNNL_F32, s->tb,
                      &plan_m))
        plan_m = -1;
    double fl = 2.0 * s->M * (double)s->N * s->K / nt / 1e9;
    double med[2], best[2];
    for (int k = 0; k < 2; k++) {
        qsort(t[k], (size_t)reps, sizeof t[k][0], cmp_double);
        med[k] = fl / t[k][reps / 2];
        best[k] = fl / t[k][0];
    }
    printf("%-20s %-4s M %5d N %5d K %5d ta %d tb %d  rows %6.1f (best %6.1f)  cols %6.1f (best %6.1f)"
           "  cols/rows %.3f  plan %s\n",
           s->name, bf16 ? "bf16" : "f32", s->M, s->N, s->K, s->ta, s->tb, med[0], best[0], med[1],
           best[1], med[1] / med[0], plan_m < 0 ? "serial" : plan_m ? "rows" : "cols");
    fflush(stdout);
    al_free(A);
    al_free(B);
    al_free(C);
}

int main(int argc, char **argv) {
    int threads = 2, reps = 9, only = -1, from = 0;
    const char *match = NULL;
    shape one = {"custom", 0, 0, 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--match") && i + 1 < argc) match = argv[++i];
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) only = !strcmp(argv[++i], "bf16");
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc &&
                 sscanf(argv[++i], "%d,%d,%d,%d,%d", &one.M, &one.N, &one.K, &one.ta, &one.tb) == 5)
            ;
        else {
            fprintf(stderr, "usage: gemm_split [--threads N] [--reps R] [--dtype f32|bf16] "
                            "[--match NAME_PART] [--from INDEX] [--shape M,N,K,transA,transB]\n");
            return 2;
        }
    }
    if (al_pool_init(threads) != AL_OK || !al_dnnl_ready()) {
        fprintf(stderr, "gemm_split: needs the pool and oneDNN\n");
        return 1;
    }
    size_t n = one.M ? 1 : sizeof k_shapes / sizeof k_shapes[0];
    for (size_t i = one.M ? 0 : (size_t)from; i < n; i++)
        for (int bf16 = 0; bf16 < 2; bf16++)
            if ((only < 0 || only == bf16) && (!match || one.M || strstr(k_shapes[i].name, match))) bench_shape(one.M ? &one : &k_shapes[i], bf16, reps < 1 ? 1 : reps);
    al_pool_shutdown();
    return 0;
}

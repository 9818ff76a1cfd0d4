/* Numeric kernels of the compute core.
 *
 * Conventions (STYLE.md §5): outputs first, then inputs, then sizes. Rows are
 * n = b*T + t. Weights use the nn.Linear layout (OC, C). Backward kernels
 * ACCUMULATE into their outputs (the caller zeroes); a NULL gradient output
 * is skipped (frozen parameter). Kernels never allocate, log or touch
 * globals other than the compute pool (pool.h), which they may use to split
 * work; results depend only on the inputs and the pool's thread count.
 * Every optimised kernel has a plain `_ref` twin that tests compare against. */
#ifndef AL_OPS_H
#define AL_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Row-major C = alpha * op(A) @ op(B) + beta * C, with op(X) = X or X^T.
 * M x K times K x N; lda/ldb/ldc are row strides. Split across the pool into
 * panels, each a single-threaded oneDNN matmul (or cblas_sgemm with the
 * OpenBLAS backend); single rows are OpenBLAS matrix-vector products, and
 * small products run inline. beta 0 never reads C. */
void al_gemm(int transA, int transB, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb, float beta,
             float *C, int ldc);

/* The library behind the matrix products: oneDNN when the build has it and
 * its CPU engine starts, else OpenBLAS. ALIGND_MATMUL=openblas in the
 * environment (read at first use) or al_gemm_set_backend chooses OpenBLAS;
 * both are deterministic for a given machine and thread count, and differ
 * from each other in the last bits. */
enum { AL_MM_OPENBLAS = 0, AL_MM_ONEDNN = 1 };
int al_gemm_backend(void);
/* AL_OK, AL_EINVAL (unknown), AL_EUNSUP (oneDNN asked for, not available). */
int al_gemm_set_backend(int backend);
const char *al_gemm_backend_name(void);   /* "onednn" or "openblas" */

/* out = inp @ w^T + b.  inp (N, C), w (OC, C), b (OC) or NULL, out (N, OC). */
void al_matmul_forward(float *out, const float *inp, const float *w,
                       const float *b, int N, int C, int OC);
void al_matmul_forward_ref(float *out, const float *inp, const float *w,
                           const float *b, int N, int C, int OC);
/* The same with the weight held (in, out), as GPT-2's Conv1D stores it:
 * out = inp @ wt + b, wt (C, OC). Another product order than
 * al_matmul_forward's (a GEMV by columns when N is 1), so not its bits. */
void al_matmul_forward_t(float *out, const float *inp, const float *wt,
                         const float *b, int N, int C, int OC);
/* Accumulates: dinp += dout @ w, dw += dout^T @ inp, db += colsum(dout).
 * Any of dinp, dw, db may be NULL. */
void al_matmul_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, int N, int C, int OC);
void al_matmul_backward_ref(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int N, int C, int OC);

/* ---- bf16 mixed precision (ops_bf16.c), as PyTorch's CPU autocast: the
 * operands of a product are rounded to bf16, it accumulates and returns
 * fp32. bf16 values are uint16_t bit patterns. */

/* 1 when this CPU multiplies bf16 natively (AVX512_BF16 or AMX-BF16, and
 * the OS saves the AVX-512 state): a runtime check, whatever the build's
 * -march. */
int al_bf16_cpu(void);
/* 1 when it has AVX512_BF16's dot product (vdpbf16ps) and AVX-512F. */
int al_bf16_dp_cpu(void);
/* What "auto" means for mixed precision: ALIGND_MIXED_PRECISION=bf16 or
 * fp32 in the environment, else bf16 when the CPU has it and the products
 * run on oneDNN (without oneDNN bf16 products are plain loops). */
int al_bf16_auto(void);
/* dst = bf16(src), round to nearest even (NaN stays a quiet NaN; no flush
 * of subnormals), and the exact way back. Split over the pool when large. */
void al_bf16_round(uint16_t *dst, const float *src, size_t n);
/* One value of al_bf16_round (the same bits), for loops that produce the
 * fp32 value and its bf16 copy in one pass (the optimizer). */
static inline uint16_t al_bf16_round1(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16, q = (x >> 16) | 0x40u;
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? q : r);
}
/* One value of al_bf16_widen: the fp32 value of bf16 bits (exact). Always
 * inlined, also into the kernels' per-ISA clones. */
static inline __attribute__((always_inline)) float al_bf16_widen1(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}
void al_bf16_round_ref(uint16_t *dst, const float *src, size_t n);
void al_bf16_widen(float *dst, const uint16_t *src, size_t n);
/* x = bf16(x) in place (as fp32 values), and keep (may be NULL) = bf16(x):
 * a product's output as autocast returns it, for the fp32 code after it. */
void al_bf16_snap(float *x, uint16_t *keep, size_t n);
/* dst (N, C) = bf16(src) and db (C) += the column sums of src, in one pass
 * over src: the bits of al_bf16_round and of al_matmul_backward's bias
 * gradient (the backward of a bf16 linear layer with a bias). */
void al_bf16_round_colsum(uint16_t *dst, float *db, const float *src, int N, int C);
/* al_gemm with bf16 A and B, fp32 C, fp32 accumulation. */
void al_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const uint16_t *A,
                  int lda, const uint16_t *B, int ldb, float beta, float *C, int ldc);
/* Plain loops in double over the same bf16 values. */
void al_gemm_bf16_ref(int transA, int transB, int M, int N, int K, float alpha,
                      const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta,
                      float *C, int ldc);
/* bf16 products of small tiles (ops_bf16.c): the products of
 * FlashAttention's tiles in bf16 mode (ops_nn.c), 64 x 64 x head_dim each,
 * where a oneDNN call's overhead outweighs the work.
 *
 * C (M, N) = alpha A (M, K) B (K, N) [+ C], A and B bf16 (rounded from fp32
 * by the packers, round to nearest even as al_bf16_round), accumulated in
 * fp32. The reduction runs in pairs of k, each pair one uint32_t (the first
 * value in the low half: the layout of AVX512_BF16's vdpbf16ps):
 *   A packed: M rows of K2 = (K + 1) / 2 pairs;
 *   B packed: K2 rows of AL_T16_NP(N) pairs (B[2p][n], B[2p+1][n]);
 * the value past an odd K and the columns past N are zeros. A row of A or
 * of the source of pack_bt holds at most AL_T16_KMAX pairs, the transposing
 * packers at most AL_T16_TMAX pairs in all. */
#define AL_T16_NP(N) (((N) + 15) & ~15)
#define AL_T16_A_SIZE(M, K) ((size_t)(M) * (size_t)(((K) + 1) / 2))
#define AL_T16_B_SIZE(K, N) ((size_t)(((K) + 1) / 2) * (size_t)AL_T16_NP(N))
#define AL_T16_TMAX (64 * 128)
#define AL_T16_KMAX 128 /* pairs per row of the row packers */

/* A[m][k] = src[m * ld + k] (M rows of K). */
void al_t16_pack_a(uint32_t *dst, const float *src, int ld, int M, int K);
/* A[m][k] = src[k * ld + m] (the transpose of K rows of M). */
void al_t16_pack_at(uint32_t *dst, const float *src, int ld, int M, int K);
/* B[k][n] = src[k * ld + n] (K rows of N). */
void al_t16_pack_b(uint32_t *dst, const float *src, int ld, int K, int N);
/* B[k][n] = src[n * ld + k] (the transpose of N rows of K). */
void al_t16_pack_bt(uint32_t *dst, const float *src, int ld, int K, int N);

/* The same layouts from bf16 sources (uint16_t, row stride ld), without
 * rounding: the bits of the packers above on the values widened. */
void al_t16_pack_a_h(uint32_t *dst, const uint16_t *src, int ld, int M, int K);
void al_t16_pack_b_h(uint32_t *dst, const uint16_t *src, int ld, int K, int N);
void al_t16_pack_bt_h(uint32_t *dst, const uint16_t *src, int ld, int K, int N);

/* C (M, N), row stride ldc, = alpha A B (+ C when acc). native != 0 runs
 * vdpbf16ps (only where al_bf16_dp_cpu() says so); 0 portable loops of
 * the same form: each column's fp32 sum takes the products of one pair of
 * k after the other (vdpbf16ps flushes subnormals to zero, the loops do
 * not, and the rounding inside a pair is the CPU's). */
void al_t16_gemm(float *C, int ldc, const uint32_t *A, const uint32_t *B, int M, int N, int K,
                 float alpha, int acc, int native);
/* The same on a causal attention tile on the diagonal (its rows and
 * columns, or rows and k, the same positions), skipping work by blocks
 * where tri says it is not needed:
 *   AL_T16_COLS_LE_ROW  only C[i][j], j <= i, is needed: others may be left
 *                       as they were or written (scores masked afterwards);
 *   AL_T16_A_LOWER      A[i][k] = 0 for k > i (P, dS: masked keys);
 *   AL_T16_A_UPPER      A[i][k] = 0 for k < i (P^T, dS^T).
 * The zeros skipped are exact, so every element needed keeps the bits of
 * al_t16_gemm (but for a NaN or infinity met only through them). The
 * portable loops skip nothing. */
enum { AL_T16_FULL = 0, AL_T16_COLS_LE_ROW = 1, AL_T16_A_LOWER = 2, AL_T16_A_UPPER = 3 };
void al_t16_gemm_tri(float *C, int ldc, const uint32_t *A, const uint32_t *B, int M, int N, int K,
                     float alpha, int acc, int native, int tri);

/* al_matmul_forward with bf16 weights w (OC, C): out = bf16(inp) @ w^T + b.
 * scratch holds N*C bf16 values (the rounded input). */
void al_matmul_forward_bf16(float *out, const float *inp, const uint16_t *w, const float *b,
                            int N, int C, int OC, uint16_t *scratch);
/* The same on an input already rounded: out = inp16 @ w^T + b, inp16 (N, C). */
void al_matmul_forward_h(float *out, const uint16_t *inp16, const uint16_t *w, const float *b,
                         int N, int C, int OC);
/* And with the weight held (in, out): out = inp16 @ wt + b, wt (C, OC);
 * one row is al_matvec_ht. */
void al_matmul_forward_ht(float *out, const uint16_t *inp16, const uint16_t *wt, const float *b,
                          int N, int C, int OC);
/* Its one row (ops_matvec.c: batch-1 decoding): out = inp16 @ wt + b,
 * inp16 (C), wt (C, OC), b (OC) or NULL, out (OC). Sums in fp32 over two
 * fixed halves of k, each in order, then added: the same bits whatever the
 * thread count. */
void al_matvec_ht(float *out, const uint16_t *inp16, const uint16_t *wt, const float *b, int C,
                  int OC);
void al_matvec_ht_ref(float *out, const uint16_t *inp16, const uint16_t *wt, const float *b, int C,
                      int OC);
/* al_matmul_backward with bf16 products: dinp += bf16(dout) @ w,
 * dw += bf16(dout)^T @ bf16(inp), db += colsum(dout) in fp32. scratch holds
 * N*(OC + C) bf16 values. */
void al_matmul_backward_bf16(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const uint16_t *w, int N, int C, int OC,
                             uint16_t *scratch);

/* LayerNorm over the last dim (biased variance, as torch):
 * out = (inp - mean) * rstd * w + b. Saves mean, rstd (N) for backward. */
void al_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C, float eps);
/* The same, each row of out also rounded to bf16 into out16 (may be NULL)
 * while in cache: the bits of al_bf16_round after al_layernorm_forward.
 * out NULL: only out16 is written. */
void al_layernorm_forward_bf16(float *out, uint16_t *out16, float *mean, float *rstd,
                               const float *inp, const float *w, const float *b, int N, int C,
                               float eps);
/* The residual add before it in the same pass: inp += res (N, C), then
 * al_layernorm_forward_bf16 on inp; the bits of al_acc and then that, with
 * one fork/join and the rows added while they are in cache. */
void al_layernorm_forward_res_bf16(float *out, uint16_t *out16, float *mean, float *rstd, float *inp,
                                   const float *res, const float *w, const float *b, int N, int C,
                                   float eps);
void al_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean,
                           const float *rstd, int N, int C);

/* RMSNorm as Hugging Face's LlamaRMSNorm: rstd = 1/sqrt(mean(x^2) + eps),
 * out = w * (x * rstd). Saves rstd (N). */
void al_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w,
                        int N, int C, float eps);
/* The same with out16 (may be NULL) as al_layernorm_forward_bf16's; out
 * may be NULL when out16 is not (only the rounded rows are wanted). */
void al_rmsnorm_forward_bf16(float *out, uint16_t *out16, float *rstd, const float *inp,
                             const float *w, int N, int C, float eps);
void al_rmsnorm_backward(float *dinp, float *dw, const float *dout, const float *inp,
                         const float *w, const float *rstd, int N, int C);

/* RMSNorm over G groups of D values in each of N rows: group g of row n is
 * inp[n*ldx + g*D .. + D) and is written to out[n*ldy + g*D ..]:
 *   y = (x * rstd) * (w + woff),  rstd = 1 / sqrt(mean(x^2) + eps).
 * woff 0 is LlamaRMSNorm's w * x_hat (Qwen3's per-head q/k norm: G = heads,
 * D = head_dim; OLMo-2's over all heads: G = 1); woff 1 is Gemma's (1 + w).
 * rstd (N*G) may be NULL. out must not overlap inp. */
void al_rmsnorm_groups_forward(float *out, float *rstd, const float *inp, const float *w,
                               float woff, int ldx, int ldy, int N, int G, int D, float eps);
void al_rmsnorm_groups_forward_ref(float *out, float *rstd, const float *inp, const float *w,
                                   float woff, int ldx, int ldy, int N, int G, int D,
                                   float eps);
/* Accumulates dinp (stride ldx, may be NULL) and dw (D, may be NULL) from
 * dout (stride ldy). */
void al_rmsnorm_groups_backward(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, float woff, const float *rstd, int ldx,
                                int ldy, int N, int G, int D);

/* gelu_new (tanh approximation, as GPT-2):
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). n elements. */
void al_gelu_forward(float *out, const float *inp, size_t n);
void al_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* The backward kernels of the activations with their input in bf16 (the
 * rounded value the bf16 forward computed the activation from, kept in
 * half the bytes): the same results as on that input widened to fp32, but
 * WRITTEN, not accumulated: dinp = 0 + gradient, the bits of the fp32
 * kernel adding to zeros (a bf16 step's d_h1 needs no zeroing first). */
void al_gelu_backward_h(float *dinp, const float *dout, const uint16_t *inp, size_t n);
/* bf16 mixed precision's gelu in one pass: keep16 = bf16(inp), out16 =
 * bf16(gelu(keep16 widened)): the bits of al_bf16_snap, al_gelu_forward
 * and al_bf16_round in turn (the activation reads h1 as autocast's bf16
 * linear returns it; the next product reads its output rounded). */
void al_gelu_forward_bf16(uint16_t *out16, uint16_t *keep16, const float *inp, size_t n);
/* d = d * gelu'(x) in place, x given in fp32 (inp) or bf16 (inp16, the
 * other NULL): the values al_gelu_backward(_h) accumulates into a zeroed
 * dinp from dout = d, bit for bit, without a second (n) buffer. */
void al_gelu_backward_inplace(float *d, const float *inp, const uint16_t *inp16, size_t n);
/* GPT-2's bf16 backward of gelu fused with the next map's bias gradient:
 * d16 (N, FF) = bf16(0 + dout gelu'(in16)) and db (FF, may be NULL) += the
 * column sums of those fp32 values: the bits of al_gelu_backward_inplace
 * then al_bf16_round_colsum, in one pass and no fp32 gradient written. */
void al_gelu_backward_h16(uint16_t *d16, float *db, const float *dout, const uint16_t *in16, int N,
                          int FF);
void al_swiglu_backward_h(float *dgu, const float *dout, const uint16_t *gu, int N, int FF);
void al_geglu_backward_h(float *dgu, const float *dout, const uint16_t *gu, int N, int FF);
/* The same rounded to bf16 into dgu16 (N, 2*FF) with no fp32 gradient:
 * the bits of al_bf16_round after al_swiglu_backward_h (al_geglu_backward_h),
 * the operand the up projection's bf16 backward reads. */
void al_swiglu_backward_h16(uint16_t *dgu16, const float *dout, const uint16_t *gu, int N, int FF);
void al_geglu_backward_h16(uint16_t *dgu16, const float *dout, const uint16_t *gu, int N, int FF);

/* SwiGLU on a fused projection gu (N, 2*FF): columns [0, FF) are the gate
 * (gate_proj), [FF, 2FF) the up projection. out (N, FF) = silu(gate) * up. */
void al_swiglu_forward(float *out, const float *gu, int N, int FF);
/* Plain loops with libm's expf: g / (1 + expf(-g)) * u, as torch writes it
 * (the kernel's vectorised exp may differ from expf in the last bits). */
void al_swiglu_forward_ref(float *out, const float *gu, int N, int FF);
void al_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int FF);
/* bf16 mixed precision's SwiGLU (GeGLU) in one pass: keep16 (N, 2*FF) =
 * bf16(gu), out16 (N, FF) = bf16(act(gate) * up) on the rounded values: the
 * bits of al_bf16_snap, al_swiglu_forward (al_geglu_forward) and
 * al_bf16_round in turn, as al_gelu_forward_bf16's. */
void al_swiglu_forward_bf16(uint16_t *out16, uint16_t *keep16, const float *gu, int N, int FF);
void al_geglu_forward_bf16(uint16_t *out16, uint16_t *keep16, const float *gu, int N, int FF);

/* GeGLU (Gemma): as SwiGLU with gelu_pytorch_tanh for silu:
 * out (N, FF) = gelu_tanh(gate) * up on gu (N, 2*FF) = [gate | up]. */
void al_geglu_forward(float *out, const float *gu, int N, int FF);
void al_geglu_forward_ref(float *out, const float *gu, int N, int FF);
void al_geglu_backward(float *dgu, const float *dout, const float *gu, int N, int FF);
/* al_swiglu_backward / al_geglu_backward WRITING dgu = 0 + gradient: the
 * bits of the accumulating kernel on a zeroed dgu, without zeroing it first. */
void al_swiglu_backward_set(float *dgu, const float *dout, const float *gu, int N, int FF);
void al_geglu_backward_set(float *dgu, const float *dout, const float *gu, int N, int FF);

/* RoPE tables in Hugging Face's convention: inv_freq[i] = 1 / theta^(2i/HD)
 * computed in float, angle = (float)pos * inv_freq[i], cos/sin (maxT, HD/2). */
void al_rope_table(float *cos_t, float *sin_t, int maxT, int HD, float theta);
/* RoPE tables from given inverse frequencies (the scaled RoPE types):
 * angle = (float)pos * inv_freq[i]; cos/sin (maxT, half) = cos/sin(angle) *
 * attn_factor (YaRN's and LongRoPE's attention scaling; 1 otherwise). */
void al_rope_table_inv(float *cos_t, float *sin_t, int maxT, int half, const float *inv_freq,
                       float attn_factor);
/* In place on nh heads of HD inside rows of stride ld (x points at head 0):
 * rotate-half convention, x1 = x[:HD/2], x2 = x[HD/2:]:
 * out1 = x1*cos - x2*sin, out2 = x2*cos + x1*sin, at position pos[n]. */
void al_rope_forward(float *x, int ld, const int32_t *pos, const float *cos_t,
                     const float *sin_t, int N, int nh, int HD);
/* Gradient through the rotation (the transpose rotation), in place on dx. */
void al_rope_backward(float *dx, int ld, const int32_t *pos, const float *cos_t,
                      const float *sin_t, int N, int nh, int HD);
/* al_rope_forward, each row's first width values (the rotated heads and
 * the rest: v's columns in a qkv row) also rounded into x16 (N, width): the
 * bits of al_bf16_round after it, in the same pass. */
void al_rope_forward_bf16(float *x, uint16_t *x16, int width, int ld, const int32_t *pos,
                          const float *cos_t, const float *sin_t, int N, int nh, int HD);
/* bf16 training's d qkv for its product: dx16 (N, width) = bf16 of the
 * first width values of each row of dx (stride ld) after al_rope_backward's
 * rotation of its first nh heads, with those bits; dx is not changed. */
void al_rope_backward_bf16(uint16_t *dx16, int width, const float *dx, int ld, const int32_t *pos,
                           const float *cos_t, const float *sin_t, int N, int nh, int HD);

/* Attention variants of the model families (NULL = all defaults).
 * scale   multiplies q.k (0: 1/sqrt(HD)); Gemma's query_pre_attn_scalar^-0.5,
 *         Granite's attention_multiplier.
 * softcap caps the scaled scores: s = softcap * tanh(s / softcap) before the
 *         mask and softmax (Gemma 2's attn_logit_softcapping); 0 = none.
 * window  sliding window: key j is visible to query i only if i - j < window
 *         (transformers' sliding_window_overlay); 0 = none. */
typedef struct al_attn_opts {
    float scale;
    float softcap;
    int window;
} al_attn_opts;

/* Causal self-attention with grouped-query heads and segment masking.
 * q, k, v are (B*T, ld) row views: q holds NH heads of HD, k and v NKV heads
 * (query head h reads kv head h / (NH/NKV)). Key j is visible to query i iff
 * j <= i and seg[b*T+j] == seg[b*T+i] (and i - j < window when opts set
 * one); seg NULL means all ones. Padding has seg 0 (it then attends only to
 * padding, never real tokens to it), packing uses one seg value per example
 * (block-diagonal causal mask). Scores are scaled by 1/sqrt(HD) (or
 * opts->scale) and soft-capped when opts->softcap > 0. att (B, NH, T, T)
 * receives the softmax probabilities (0 where masked) and is needed by
 * backward. out (B*T, NH*HD). opts may be NULL. */
void al_attention_forward(float *out, float *att, const float *q, const float *k,
                          const float *v, int ld, const int32_t *seg,
                          int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts);
void al_attention_forward_ref(float *out, float *att, const float *q, const float *k,
                              const float *v, int ld, const int32_t *seg,
                              int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts);
/* Accumulates dq, dk, dv (same layout and stride ld as q, k, v). With a
 * soft-cap the scores are recomputed from q and k (the cap's derivative
 * 1 - tanh^2 needs them). */
void al_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *att, const float *q, const float *k,
                           const float *v, int ld, const int32_t *seg,
                           int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts);

/* The same attention as FlashAttention-2 computes it (Dao 2023), in memory
 * linear in T: the forward runs key tiles with an online softmax and saves
 * lse (B, NH, T), each row's log-sum-exp of its scaled, capped, visible
 * scores, instead of the (T, T) probabilities; the backward recomputes them
 * tile by tile from q, k and lse, and takes D_i = dout_i . out_i (out: the
 * forward's output). bf16 != 0 rounds q, k, v, dout and the probability and
 * dS tiles to bf16 before each product (fp32 accumulation), as autocast's
 * bf16 attention, and runs the products on al_t16_gemm (vdpbf16ps where
 * al_bf16_dp_cpu()); softmax, log-sum-exp and row sums stay fp32. HD <= 256.
 * Backward accumulates into dq, dk, dv; fresh != 0 says they hold nothing
 * yet: each task zeroes its part of them (its sequence's rows, its heads'
 * columns) before adding to it, the bits of zeroing them first, without a
 * pass (and a fork/join) of its own. */
void al_flash_attention_forward(float *out, float *lse, const float *q, const float *k,
                                const float *v, int ld, const int32_t *seg, int B, int T, int NH,
                                int NKV, int HD, const al_attn_opts *opts, int bf16);
/* The same, each output row also rounded to bf16 into out16 (may be NULL;
 * (B*T, NH*HD) as out) as it is written: the bits of al_bf16_round after. */
void al_flash_attention_forward_bf16(float *out, uint16_t *out16, float *lse, const float *q,
                                     const float *k, const float *v, int ld, const int32_t *seg,
                                     int B, int T, int NH, int NKV, int HD,
                                     const al_attn_opts *opts, int bf16);
/* The bf16 one with q, k, v given in bf16 (a bf16 training step's kept
 * copies, rounded after RoPE and the q/k norms): the bits of
 * al_flash_attention_forward_bf16(..., bf16 = 1) on the values widened. */
void al_flash_attention_forward_h(float *out, uint16_t *out16, float *lse, const uint16_t *q,
                                  const uint16_t *k, const uint16_t *v, int ld, const int32_t *seg,
                                  int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts);
void al_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                 const float *out, const float *lse, const float *q,
                                 const float *k, const float *v, int ld, const int32_t *seg,
                                 int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts,
                                 int bf16, int fresh);
/* The bf16 one with its inputs in bf16, as a bf16 training step keeps them:
 * the forward's output (out16, the rounded copy the output projection read)
 * and q, k, v (rounded after RoPE and the q/k norms; the tile products round
 * them so anyway): the bits of al_flash_attention_backward(..., bf16 = 1) on
 * the same values widened to fp32. */
void al_flash_attention_backward_h(float *dq, float *dk, float *dv, const float *dout,
                                   const uint16_t *out16, const float *lse, const uint16_t *q,
                                   const uint16_t *k, const uint16_t *v, int ld, const int32_t *seg,
                                   int B, int T, int NH, int NKV, int HD, const al_attn_opts *opts,
                                   int fresh);

/* out[n] = wte[ids[n]] + (wpe ? wpe[pos[n]] : 0). out (N, C). */
void al_embed_forward(float *out, const int32_t *ids, const int32_t *pos,
                      const float *wte, const float *wpe, int N, int C);
/* The same from bf16 tables (frozen embeddings held in bf16), widened. */
void al_embed_forward_bf16(float *out, const int32_t *ids, const int32_t *pos,
                           const uint16_t *wte, const uint16_t *wpe, int N, int C);
/* Accumulates dwte[ids[n]] += dout[n], dwpe[pos[n]] += dout[n]; either NULL. */
void al_embed_backward(float *dwte, float *dwpe, const float *dout, const int32_t *ids,
                       const int32_t *pos, int N, int C);

/* Language-model head and log-softmax, chunked so that (N, V) logits never
 * exist at once. For each row n with target[n] >= 0:
 *   z = (h[n] @ w^T) * inv_temp                           (V)
 *   (softcap > 0, Gemma 2's final_logit_softcapping:
 *    z = softcap * tanh((h[n] @ w^T) / softcap) * inv_temp)
 *   lse[n] = logsumexp(z); logp[n] = z[target[n]] - lse[n]
 *   ent[n] = -sum_v p_v log p_v                           (p = softmax z)
 * Rows with target[n] < 0 are skipped: logp = ent = lse = 0. ent may be NULL.
 * hit (may be NULL) receives 1 where the target is the most likely token
 * (greedy argmax: z[target] equals the row maximum), else 0.
 * h (N, C), w (V, C). scratch holds at least chunk*(C+V) floats; rows are
 * gathered `chunk` at a time. Returns the number of chunks (0: no target).
 * After a single chunk with no soft-cap, scratch still holds its logits
 * (al_lmhead_backward_reuse). */
int al_lmhead_forward(float *logp, float *ent, float *lse, uint8_t *hit, const float *h,
                      const float *w, const int32_t *target, int N, int C, int V,
                      float inv_temp, float softcap, float *scratch, int chunk);
/* Accumulates dh += dz @ w * inv_temp and dw += dz^T @ h * inv_temp for the
 * rows with target >= 0, where over z:
 *   dz_v = dlogp[n] * (1[v == target] - p_v) + dent[n] * (-p_v (log p_v + ent[n]))
 * (times the cap's 1 - tanh^2 with a soft-cap). dent and ent may be NULL (no
 * entropy term); dh or dw may be NULL. Recomputes the logits chunk by chunk
 * from h and w (and the saved lse). scratch holds chunk*(C+V) floats, or
 * chunk*(C+2V) with a soft-cap. */
void al_lmhead_backward(float *dh, float *dw, const float *dlogp, const float *dent,
                        const float *h, const float *w, const int32_t *target,
                        const float *lse, const float *ent, int N, int C, int V,
                        float inv_temp, float softcap, float *scratch, int chunk);
/* The same with bf16 weights w (V, C): the products take bf16 operands
 * (h and dz rounded), log-softmax and entropy stay fp32. scratch16 holds at
 * least chunk*(C+V) bf16 values. */
int al_lmhead_forward_bf16(float *logp, float *ent, float *lse, uint8_t *hit, const float *h,
                           const uint16_t *w, const int32_t *target, int N, int C, int V,
                           float inv_temp, float softcap, float *scratch, uint16_t *scratch16,
                           int chunk);
void al_lmhead_backward_bf16(float *dh, float *dw, const float *dlogp, const float *dent,
                             const float *h, const uint16_t *w, const int32_t *target,
                             const float *lse, const float *ent, int N, int C, int V,
                             float inv_temp, float softcap, float *scratch, uint16_t *scratch16,
                            int chunk);
/* al_lmhead_backward (w16 NULL) or _bf16 (w16 the bf16 weights; w unused)
 * right after a forward of the same h, w, target, inv_temp, scratch and
 * chunk that ran one chunk with no soft-cap: the logits still in scratch
 * are used instead of being recomputed (the same product, the same bits).
 * The caller guarantees nothing wrote scratch in between. */
void al_lmhead_backward_reuse(float *dh, float *dw, const float *dlogp, const float *dent,
                              const float *h, const float *w, const uint16_t *w16,
                              const int32_t *target, const float *lse, const float *ent, int N,
                              int C, int V, float inv_temp, float *scratch, uint16_t *scratch16,
                              int chunk);
/* The forward (al_lmhead_forward; _bf16's with w16, w then unused) fused
 * with the backward of a head that takes no gradient, for a loss whose
 * dlogp (N) is known before the forward (the LM objectives'), no entropy
 * term and no soft-cap: right after each chunk's log-probs, its dz and
 * dh += dz @ w * inv_temp, exactly as al_lmhead_backward(_bf16) adds them
 * (the same products, chunks and order: the same bits), without computing
 * the logits a second time. Returns the number of chunks; the logits do not
 * outlive the call (no al_lmhead_backward_reuse after it). */
int al_lmhead_forward_fused(float *logp, float *ent, float *lse, uint8_t *hit, float *dh,
                            const float *dlogp, const float *h, const float *w, const uint16_t *w16,
                            const int32_t *target, int N, int C, int V, float inv_temp,
                            float *scratch, uint16_t *scratch16, int chunk);
/* Plain reference: materialises logits row by row with loops, no BLAS. */
void al_lmhead_forward_ref(float *logp, float *ent, float *lse, uint8_t *hit, const float *h,
                           const float *w, const int32_t *target, int N, int C, int V,
                           float inv_temp, float softcap);

/* Elementwise helpers. */
void al_add(float *out, const float *a, const float *b, size_t n);  /* out = a + b */
void al_acc(float *y, const float *x, size_t n);                    /* y += x */
void al_scale(float *y, float s, size_t n);                         /* y *= s */
void al_zero(float *y, size_t n);
/* Sum of squares in double (for gradient norms). */
double al_sumsq(const float *x, size_t n);

#endif

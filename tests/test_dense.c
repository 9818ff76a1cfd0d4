/* Tests for the dense kernels (lib/compute/ops_dense.c), the three ways of
 * STYLE.md §5: forward against values worked out by hand, backward against
 * central differences (tests/gradcheck.h) on odd sizes, and the optimised
 * paths (pool of 2 threads, GEMM panels split over M and over N, chunked LM
 * head) against the plain _ref kernels or double-precision loops here.
 * Also: accumulation semantics, NULL outputs, NaN propagation, extreme
 * logits and bit-identical repeated runs. */
#include <stdint.h>
#include <string.h>

#include "al.h"
#include "compute/onednn.h"
#include "compute/ops.h"
#include "compute/pool.h"
#include "gradcheck.h"
#include "t.h"

/* ------------------------------------------------------------ helpers */

static float *fbuf(size_t n) {
    float *p = al_calloc(n, sizeof(float));
    AL_ASSERT(p);
    return p;
}

static float *frand(size_t n, uint64_t seed, float scale) {
    float *p = fbuf(n);
    gc_fill(p, n, seed, scale);
    return p;
}

static float *fcopy(const float *x, size_t n) {
    float *p = fbuf(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}

static void expect_same(const char *what, const float *a, const float *b, size_t n) {
    T_REPORT_(memcmp(a, b, n * sizeof(float)) == 0, "%s: not bit-identical", what);
}

/* C = alpha op(A) op(B) + beta C in double, for checking al_gemm. */
static void gemm_naive(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

/* ------------------------------------------------- forward, by hand */

static void test_matmul_hand(void) {
    /* inp (2, 3), w (OC = 2, C = 3), b (2): out = inp @ w^T + b
     *   row 0: [1 - 3, 2 + 2] + b = [-1.5, 3]
     *   row 1: [4 - 6, 8 + 5] + b = [-1.5, 12] */
    const float inp[6] = {1, 2, 3, 4, 5, 6};
    const float w[6] = {1, 0, -1, 2, 1, 0};
    const float b[2] = {0.5f, -1.0f};
    const float want_b[4] = {-1.5f, 3, -1.5f, 12};
    const float want_nob[4] = {-2, 4, -2, 13};
    float out[4];
    al_matmul_forward(out, inp, w, b, 2, 3, 2);
    for (int i = 0; i < 4; i++) T_NEAR(out[i], want_b[i], 0);
    al_matmul_forward_ref(out, inp, w, b, 2, 3, 2);
    for (int i = 0; i < 4; i++) T_NEAR(out[i], want_b[i], 0);
    al_matmul_forward(out, inp, w, NULL, 2, 3, 2);
    for (int i = 0; i < 4; i++) T_NEAR(out[i], want_nob[i], 0);
    al_matmul_forward_ref(out, inp, w, NULL, 2, 3, 2);
    for (int i = 0; i < 4; i++) T_NEAR(out[i], want_nob[i], 0);

    /* backward with dout = [[1, 2], [0, 1]], accumulating onto ones:
     *   dinp = dout @ w    = [[1+4, 0+2, -1+0], [2, 1, 0]] = [[5,2,-1],[2,1,0]]
     *   dw   = dout^T @ inp = [[1, 2, 3], [2+4, 4+5, 6+6]] = [[1,2,3],[6,9,12]]
     *   db   = colsum       = [1, 3] */
    const float dout[4] = {1, 2, 0, 1};
    const float want_dinp[6] = {6, 3, 0, 3, 2, 1};
    const float want_dw[6] = {2, 3, 4, 7, 10, 13};
    const float want_db[2] = {2, 4};
    for (int pass = 0; pass < 2; pass++) {
        float dinp[6], dw[6], db[2];
        for (int i = 0; i < 6; i++) dinp[i] = dw[i] = 1.0f;
        db[0] = db[1] = 1.0f;
        if (pass == 0) al_matmul_backward(dinp, dw, db, dout, inp, w, 2, 3, 2);
        else al_matmul_backward_ref(dinp, dw, db, dout, inp, w, 2, 3, 2);
        for (int i = 0; i < 6; i++) T_NEAR(dinp[i], want_dinp[i], 0);
        for (int i = 0; i < 6; i++) T_NEAR(dw[i], want_dw[i], 0);
        for (int i = 0; i < 2; i++) T_NEAR(db[i], want_db[i], 0);
    }
    /* NULL outputs are skipped; the others still accumulate */
    float dw[6] = {0};
    al_matmul_backward(NULL, dw, NULL, dout, inp, w, 2, 3, 2);
    for (int i = 0; i < 6; i++) T_NEAR(dw[i], want_dw[i] - 1, 0);
    float db[2] = {0};
    al_matmul_backward(NULL, NULL, db, dout, inp, w, 2, 3, 2);
    T_NEAR(db[0], 1, 0);
    T_NEAR(db[1], 3, 0);
}

static void test_gemm_hand(void) {
    /* A (2, 3) = [[1,2,3],[4,5,6]], B (3, 2) = [[1,0],[0,1],[2,-1]]
     * A @ B = [[1+6, 2-3], [4+12, 5-6]] = [[7,-1],[16,-1]];
     * C = 2 A B + 0.5 C0 with C0 = [[2,4],[6,8]] -> [[15,0],[35,2]] */
    const float A[6] = {1, 2, 3, 4, 5, 6}, At[6] = {1, 4, 2, 5, 3, 6};
    const float B[6] = {1, 0, 0, 1, 2, -1}, Bt[6] = {1, 0, 2, 0, 1, -1};
    const float want[4] = {15, 0, 35, 2};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float C[4] = {2, 4, 6, 8};
            al_gemm(ta, tb, 2, 2, 3, 2.0f, ta ? At : A, ta ? 2 : 3, tb ? Bt : B, tb ? 3 : 2,
                    0.5f, C, 2);
            for (int i = 0; i < 4; i++) T_NEAR(C[i], want[i], 0);
        }
    /* beta = 0 ignores NaN in C; K = 0 leaves beta * C */
    float C[4] = {NAN, NAN, NAN, NAN};
    al_gemm(0, 0, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2);
    T_NEAR(C[0], 7, 0);
    T_NEAR(C[3], -1, 0);
    float C2[4] = {1, 2, 3, 4};
    al_gemm(0, 0, 2, 2, 0, 1.0f, A, 0, B, 2, 3.0f, C2, 2);
    T_NEAR(C2[0], 3, 0);
    T_NEAR(C2[3], 12, 0);
    al_gemm(0, 0, 2, 2, 0, 1.0f, A, 0, B, 2, 0.0f, C2, 2);
    T_NEAR(C2[1], 0, 0);
}

static void test_lmhead_hand(void) {
    /* C = 1, h = [2], w = [0, ln 2, ln 3] (V = 3), inv_temp = 0.5:
     * z = [0, ln 2, ln 3], softmax = [1, 2, 3] / 6, lse = ln 6,
     * logp[t] = z[t] - ln 6, H = (1/6) ln 6 + (2/6) ln 3 + (3/6) ln 2. */
    const float w[3] = {0.0f, (float)log(2.0), (float)log(3.0)};
    const float h[4] = {2, 5, 2, 2};
    const int32_t target[4] = {0, -1, 2, 1};
    double lse = log(6.0);
    double H = log(6.0) / 6 + log(3.0) / 3 + log(2.0) / 2;
    double want_logp[4] = {-log(6.0), 0, -log(2.0), -log(3.0)};
    double want_lse[4] = {lse, 0, lse, lse};
    double want_ent[4] = {H, 0, H, H};
    float scratch[4 * (1 + 3)];
    for (int mode = 0; mode < 3; mode++) {
        float logp[4], ent[4], lse_o[4];
        for (int i = 0; i < 4; i++) logp[i] = ent[i] = lse_o[i] = 99.0f;
        if (mode == 0) al_lmhead_forward_ref(logp, ent, lse_o, NULL, h, w, target, 4, 1, 3, 0.5f, 0.0f);
        else al_lmhead_forward(logp, ent, lse_o, NULL, h, w, target, 4, 1, 3, 0.5f, 0.0f, scratch,
                               mode == 1 ? 1 : 4);
        for (int i = 0; i < 4; i++) {
            T_NEAR(logp[i], want_logp[i], 1e-6);
            T_NEAR(lse_o[i], want_lse[i], 1e-6);
            T_NEAR(ent[i], want_ent[i], 1e-6);
        }
    }
    /* uniform logits (h = 0): logp = -ln V, H = ln V; ent may be NULL */
    const float hz[2] = {0, 0};
    const int32_t tz[1] = {1};
    float wz[7 * 2];
    gc_fill(wz, 14, 3, 1.0f);
    float lp, ls, en, sc[1 * (2 + 7)];
    al_lmhead_forward(&lp, &en, &ls, NULL, hz, wz, tz, 1, 2, 7, 1.0f, 0.0f, sc, 1);
    T_NEAR(lp, -log(7.0), 1e-6);
    T_NEAR(en, log(7.0), 1e-6);
    al_lmhead_forward(&lp, NULL, &ls, NULL, hz, wz, tz, 1, 2, 7, 1.0f, 0.0f, sc, 1);
    T_NEAR(lp, -log(7.0), 1e-6);
    T_NEAR(ls, log(7.0), 1e-6);

    /* extreme logits z = [0, 100, -100, 50]: lse = 100 + log(1 + e^-50 + ...)
     * = 100 in float; logp = z - 100; H ~ 50 e^-50 ~ 0. */
    const float we[4] = {0, 100, -100, 50};
    const float he[4] = {1, 1, 1, 1};
    const int32_t te[4] = {0, 1, 2, 3};
    float lpe[4], lse_e[4], ene[4], sce[4 * (1 + 4)];
    for (int mode = 0; mode < 2; mode++) {
        if (mode == 0) al_lmhead_forward_ref(lpe, ene, lse_e, NULL, he, we, te, 4, 1, 4, 1.0f, 0.0f);
        else al_lmhead_forward(lpe, ene, lse_e, NULL, he, we, te, 4, 1, 4, 1.0f, 0.0f, sce, 3);
        T_NEAR(lpe[0], -100, 1e-4);
        T_NEAR(lpe[1], 0, 1e-6);
        T_NEAR(lpe[2], -200, 1e-4);
        T_NEAR(lpe[3], -50, 1e-4);
        T_NEAR(lse_e[0], 100, 1e-4);
        T_NEAR(ene[0], 0, 1e-6);
    }

    /* a NaN in h makes that row's outputs NaN (loss NaN checks must fire) */
    const float hn[2] = {NAN, 1};
    const int32_t tn[2] = {0, 0};
    float lpn[2], lsn[2], enn[2], scn[2 * (1 + 3)];
    al_lmhead_forward(lpn, enn, lsn, NULL, hn, w, tn, 2, 1, 3, 1.0f, 0.0f, scn, 2);
    T_TRUE(isnan(lpn[0]));
    T_TRUE(isnan(enn[0]));
    T_TRUE(isnan(lsn[0])); /* exp(NaN) is NaN, not a clamped bound */
    T_TRUE(isfinite(lpn[1]));
}

/* The LM head's softmax kernels against a scalar model of their documented
 * arithmetic, bit for bit: Cephes' exp lane by lane (its clamps keeping
 * NaN), row_expsum's order (VW lanes, float blocks of up to 8 * VW terms,
 * blocks added in double, the tail in double) and dz = -p (k0 + b d), + a
 * at the target (rounded to bf16 on the bf16 path). C = 1, h = 1 and
 * inv_temp = 1 make the logits the weights and dw the row's dz. */
#if defined(__AVX__)
#define REF_VW 8
#else
#define REF_VW 4
#endif

static float ref_exp(float x) {
    union { float f; uint32_t u; } t, sb, y;
    int below = x < -87.0f;
    float xc = below ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    t.f = xc * 1.44269504088896341f + 12582912.0f;
    float n = t.f - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float r2 = r * r, q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    q = q * r2 + r + 1.0f;
    sb.u = (t.u - 0x4B400000u + 127u) << 23;
    y.f = q * sb.f;
    if (below) y.u = 0;
    return y.f;
}

static void ref_expsum(const float *z, int V, float m, double *S, double *T) {
    double s[REF_VW / 2] = {0}, t[REF_VW / 2] = {0};
    int v = 0;
    while (v + REF_VW <= V) {
        float bs[REF_VW] = {0}, bt[REF_VW] = {0};
        int end = v + 8 * REF_VW <= V ? v + 8 * REF_VW : V - REF_VW + 1;
        for (; v < end; v += REF_VW)
            for (int j = 0; j < REF_VW; j++) {
                float d = z[v + j] - m, e = ref_exp(d);
                bs[j] += e;
                bt[j] += e * d;
            }
        for (int j = 0; j < REF_VW / 2; j++) {
            s[j] += (double)bs[j] + (double)bs[j + REF_VW / 2];
            t[j] += (double)bt[j] + (double)bt[j + REF_VW / 2];
        }
    }
    double ss = 0.0, tt = 0.0;
    for (int j = 0; j < REF_VW / 2; j++) {
        ss += s[j];
        tt += t[j];
    }
    for (; v < V; v++) {
        float d = z[v] - m, e = ref_exp(d);
        ss += (double)e;
        tt += (double)e * (double)d;
    }
    *S = ss;
    *T = tt;
}

/* 1 when a and b are the same float (NaN equal to NaN, -0 to 0: dw = 0 + dz) */
static int same_float(float a, float b) { return a == b || (isnan(a) && isnan(b)); }

static void test_lmhead_softmax_bits(void) {
    enum { V = 300, TGT = 77 };
    float w[V];
    gc_fill(w, V, 41, 8.0f);
    w[5] = -150.0f; /* exp clamped to 0 */
    w[200] = 9.5f;  /* the row max */
    for (int k = 0; k < 16; k++) /* p ~ 1e-38..1e-35: dz = -p a subnormal for a = 0.01 */
        w[20 + k] = 9.5f - 80.0f - 0.5f * (float)k;
    for (int v = 0; v < V; v++) w[v] = al_bf16_widen1(al_bf16_round1(w[v])); /* bf16 too */
    const float h = 1.0f;
    const int32_t target = TGT;
    float m = -INFINITY;
    for (int v = 0; v < V; v++) m = w[v] > m ? w[v] : m;
    double S, T;
    ref_expsum(w, V, m, &S, &T);
    double logS = log(S);
    float want_lse = (float)((double)m + logS), want_logp = (float)((double)(w[TGT] - m) - logS);
    float want_ent = (float)(logS - T / S);
    float logp, ent, lse, scratch[1 + V];
    uint16_t w16[V], s16[1 + V];
    al_bf16_round(w16, w, V);
    for (int bf = 0; bf < 2; bf++) {
        if (bf) al_lmhead_forward_bf16(&logp, &ent, &lse, NULL, &h, w16, &target, 1, 1, V, 1.0f, 0.0f, scratch, s16, 1);
        else al_lmhead_forward(&logp, &ent, &lse, NULL, &h, w, &target, 1, 1, V, 1.0f, 0.0f, scratch, 1);
        T_REPORT_(same_float(lse, want_lse) && same_float(logp, want_logp) && same_float(ent, want_ent),
                  "lmhead softmax bits (bf16 %d): lse %a/%a logp %a/%a ent %a/%a", bf, lse, want_lse,
                  logp, want_logp, ent, want_ent);
    }
    /* the backward, entropy recomputed from the row (ent NULL); then
     * without it, a = 0.01 making some dz subnormal */
    static const float ab[2][2] = {{-0.75f, 0.375f}, {0.01f, 0.0f}};
    for (int c = 0; c < 2; c++) {
        const float a = ab[c][0], b = ab[c][1];
        float H = 0.0f;
        if (b != 0.0f) {
            double S2, T2;
            ref_expsum(w, V, lse, &S2, &T2);
            H = (float)(log(S2) - T2 / S2);
        }
        float k0 = a + b * H, dz[V];
        uint16_t dz16[V];
        int subnormal = 0;
        for (int v = 0; v < V; v++) {
            float d = w[v] - lse, p = ref_exp(d);
            dz[v] = -p * (k0 + b * d);
            dz16[v] = al_bf16_round1(v == TGT ? dz[v] + a : dz[v]);
            subnormal += (dz16[v] & 0x7f80) == 0 && (dz16[v] & 0x7f) != 0;
        }
        dz[TGT] += a;
        T_TRUE(c == 0 || subnormal > 0);
        /* bf16: the rounded dz itself, which the backward leaves in
         * scratch16 after the chunk's C rounded h (the products flush
         * subnormal operands, so dw would not show them) */
        for (int bf = 0; bf < 2; bf++) {
            float dw[V] = {0}, sc[1 + 2 * V];
            int bad = -1;
            if (bf) {
                al_lmhead_backward_bf16(NULL, dw, &a, &b, &h, w16, &target, &lse, NULL, 1, 1, V, 1.0f, 0.0f, sc, s16, 1);
                for (int v = 0; v < V && bad < 0; v++)
                    if (s16[1 + v] != dz16[v]) bad = v;
            } else {
                al_lmhead_backward(NULL, dw, &a, &b, &h, w, &target, &lse, NULL, 1, 1, V, 1.0f, 0.0f, sc, 1);
                for (int v = 0; v < V && bad < 0; v++)
                    if (!same_float(dw[v], dz[v])) bad = v;
            }
            T_REPORT_(bad < 0, "lmhead dz bits (case %d, bf16 %d): first difference at %d", c, bf, bad);
        }
    }
}

static void test_embed_hand(void) {
    /* wte (3, 2), wpe (2, 2), ids [2, 0, 2], pos [0, 1, 1] */
    const float wte[6] = {1, 2, 3, 4, 5, 6};
    const float wpe[4] = {10, 20, 30, 40};
    const int32_t ids[3] = {2, 0, 2}, pos[3] = {0, 1, 1};
    const float want[6] = {15, 26, 31, 42, 35, 46};
    float out[6];
    al_embed_forward(out, ids, pos, wte, wpe, 3, 2);
    for (int i = 0; i < 6; i++) T_NEAR(out[i], want[i], 0);
    al_embed_forward(out, ids, NULL, wte, NULL, 3, 2);
    const float want_nopos[6] = {5, 6, 1, 2, 5, 6};
    for (int i = 0; i < 6; i++) T_NEAR(out[i], want_nopos[i], 0);

    /* dout rows [1,1], [2,2], [3,3]: dwte[2] += 4, dwte[0] += 2,
     * dwpe[0] += 1, dwpe[1] += 5 (onto ones) */
    const float dout[6] = {1, 1, 2, 2, 3, 3};
    float dwte[6], dwpe[4];
    for (int i = 0; i < 6; i++) dwte[i] = 1;
    for (int i = 0; i < 4; i++) dwpe[i] = 1;
    al_embed_backward(dwte, dwpe, dout, ids, pos, 3, 2);
    const float want_dwte[6] = {3, 3, 1, 1, 5, 5}, want_dwpe[4] = {2, 2, 6, 6};
    for (int i = 0; i < 6; i++) T_NEAR(dwte[i], want_dwte[i], 0);
    for (int i = 0; i < 4; i++) T_NEAR(dwpe[i], want_dwpe[i], 0);
    al_embed_backward(NULL, dwpe, dout, ids, pos, 3, 2);
    T_NEAR(dwpe[0], 3, 0);
    al_embed_backward(dwte, NULL, dout, ids, NULL, 3, 2);
    T_NEAR(dwte[0], 5, 0);
}

static void test_elementwise(void) {
    float a[5] = {1, -2, 3, 0.5f, 4}, b[5] = {1, 1, 1, 1, -4}, o[5];
    al_add(o, a, b, 5);
    const float want_add[5] = {2, -1, 4, 1.5f, 0};
    for (int i = 0; i < 5; i++) T_NEAR(o[i], want_add[i], 0);
    al_acc(o, a, 5);
    const float want_acc[5] = {3, -3, 7, 2, 4};
    for (int i = 0; i < 5; i++) T_NEAR(o[i], want_acc[i], 0);
    al_scale(o, -0.5f, 5);
    const float want_sc[5] = {-1.5f, 1.5f, -3.5f, -1, -2};
    for (int i = 0; i < 5; i++) T_NEAR(o[i], want_sc[i], 0);
    T_NEAR(al_sumsq(a, 5), 1 + 4 + 9 + 0.25 + 16, 0);
    al_zero(o, 5);
    for (int i = 0; i < 5; i++) T_NEAR(o[i], 0, 0);
    T_NEAR(al_sumsq(a, 0), 0, 0);

    /* large enough to be split over the pool (odd length) */
    size_t n = ((size_t)1 << 18) + 13;
    float *x = frand(n, 1, 1.0f), *y = frand(n, 2, 1.0f), *z = fbuf(n), *w = fbuf(n);
    al_add(z, x, y, n);
    for (size_t i = 0; i < n; i++) w[i] = x[i] + y[i];
    expect_same("al_add big", z, w, n);
    al_acc(z, x, n);
    for (size_t i = 0; i < n; i++) w[i] += x[i];
    expect_same("al_acc big", z, w, n);
    al_scale(z, 0.25f, n);
    for (size_t i = 0; i < n; i++) w[i] *= 0.25f;
    expect_same("al_scale big", z, w, n);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    double got = al_sumsq(x, n);
    T_NEAR(got, s, 1e-12 * s);
    T_TRUE(al_sumsq(x, n) == got); /* deterministic */
    al_zero(z, n);
    T_NEAR(gc_maxabs(z, n), 0, 0);
    al_free(x);
    al_free(y);
    al_free(z);
    al_free(w);
}

/* ------------------------------------------- backward, central differences */

typedef struct mm_case {
    float *inp, *w, *b, *out, *R;
    int N, C, OC;
} mm_case;

static double mm_loss(void *p) {
    mm_case *m = p;
    al_matmul_forward(m->out, m->inp, m->w, m->b, m->N, m->C, m->OC);
    double L = 0.0;
    for (size_t i = 0; i < (size_t)m->N * m->OC; i++) L += (double)m->out[i] * m->R[i];
    return L;
}

static void test_matmul_grad(void) {
    int B = 2, T = 3, C = 5, OC = 7, N = B * T;
    mm_case m = {.inp = frand((size_t)N * C, 11, 1.0f), .w = frand((size_t)OC * C, 12, 1.0f),
                 .b = frand(OC, 13, 1.0f), .out = fbuf((size_t)N * OC),
                 .R = frand((size_t)N * OC, 14, 1.0f), .N = N, .C = C, .OC = OC};
    float *dinp = fbuf((size_t)N * C), *dw = fbuf((size_t)OC * C), *db = fbuf(OC);
    al_matmul_backward(dinp, dw, db, m.R, m.inp, m.w, N, C, OC);
    gc_check("matmul dinp", m.inp, dinp, (size_t)N * C, mm_loss, &m, 1e-2f);
    gc_check("matmul dw", m.w, dw, (size_t)OC * C, mm_loss, &m, 1e-2f);
    gc_check("matmul db", m.b, db, OC, mm_loss, &m, 1e-2f);
    al_free(m.inp); al_free(m.w); al_free(m.b); al_free(m.out); al_free(m.R);
    al_free(dinp); al_free(dw); al_free(db);
}

typedef struct lm_case {
    float *h, *w, *logp, *ent, *lse, *R1, *R2, *scratch;
    const int32_t *target;
    int N, C, V, chunk;
    float inv_temp, cap;
} lm_case;

static double lm_loss(void *p) {
    lm_case *c = p;
    al_lmhead_forward(c->logp, c->ent, c->lse, NULL, c->h, c->w, c->target, c->N, c->C, c->V,
                      c->inv_temp, c->cap, c->scratch, c->chunk);
    double L = 0.0;
    for (int n = 0; n < c->N; n++) {
        L += (double)c->logp[n] * c->R1[n];
        if (c->R2) L += (double)c->ent[n] * c->R2[n];
    }
    return L;
}

static void test_lmhead_grad(void) {
    int B = 2, T = 3, C = 5, V = 7, N = B * T, chunk = 4;
    const int32_t target[6] = {3, -1, 0, 6, 2, 5}; /* 5 valid rows > chunk */
    lm_case c = {.h = frand((size_t)N * C, 21, 1.0f), .w = frand((size_t)V * C, 22, 1.0f),
                 .logp = fbuf(N), .ent = fbuf(N), .lse = fbuf(N), .R1 = frand(N, 23, 1.0f),
                 .R2 = frand(N, 24, 1.0f), .scratch = fbuf((size_t)chunk * (C + V)),
                 .target = target, .N = N, .C = C, .V = V, .chunk = chunk,
                 .inv_temp = 1.0f / 0.7f};
    float *dh = fbuf((size_t)N * C), *dw = fbuf((size_t)V * C);

    /* logp and entropy terms together */
    lm_loss(&c);
    al_lmhead_backward(dh, dw, c.R1, c.R2, c.h, c.w, target, c.lse, c.ent, N, C, V,
                       c.inv_temp, 0.0f, c.scratch, chunk);
    for (int j = 0; j < C; j++) T_NEAR(dh[1 * C + j], 0, 0); /* target -1: no gradient */
    gc_check("lmhead dh (logp+ent)", c.h, dh, (size_t)N * C, lm_loss, &c, 1e-2f);
    gc_check("lmhead dw (logp+ent)", c.w, dw, (size_t)V * C, lm_loss, &c, 1e-2f);

    /* entropy not saved: recomputed from the logits, same gradient */
    float *dh2 = fbuf((size_t)N * C), *dw2 = fbuf((size_t)V * C);
    lm_loss(&c);
    al_lmhead_backward(dh2, dw2, c.R1, c.R2, c.h, c.w, target, c.lse, NULL, N, C, V,
                       c.inv_temp, 0.0f, c.scratch, chunk);
    gc_expect_close("lmhead dh, ent recomputed", dh2, dh, (size_t)N * C, 1e-5);
    gc_expect_close("lmhead dw, ent recomputed", dw2, dw, (size_t)V * C, 1e-5);

    /* logp term only (dent NULL), inv_temp = 1, chunk 1 */
    al_free(c.R2);
    c.R2 = NULL;
    c.inv_temp = 1.0f;
    c.chunk = 1;
    memset(dh, 0, (size_t)N * C * sizeof(float));
    memset(dw, 0, (size_t)V * C * sizeof(float));
    lm_loss(&c);
    al_lmhead_backward(dh, dw, c.R1, NULL, c.h, c.w, target, c.lse, NULL, N, C, V,
                       c.inv_temp, 0.0f, c.scratch, c.chunk);
    gc_check("lmhead dh (logp)", c.h, dh, (size_t)N * C, lm_loss, &c, 1e-2f);
    gc_check("lmhead dw (logp)", c.w, dw, (size_t)V * C, lm_loss, &c, 1e-2f);

    al_free(c.h); al_free(c.w); al_free(c.logp); al_free(c.ent); al_free(c.lse);
    al_free(c.R1); al_free(c.scratch); al_free(dh); al_free(dw); al_free(dh2); al_free(dw2);
}

/* Gemma 2's final soft-cap (small, so tanh bends the logits): the forward
 * against the double reference and a hand value, the backward (which needs
 * chunk*(C+2V) scratch) against central differences with logp and entropy
 * terms at a temperature. */
static void test_lmhead_softcap(void) {
    /* one row, C = 1, V = 2: logits {0, 3} capped at 2 become {0, 2 tanh 1.5} */
    const float h1[1] = {1}, w1[2] = {0, 3};
    const int32_t t1[1] = {1};
    float lp, ls, en, sc1[1 * (1 + 2 * 2)];
    al_lmhead_forward(&lp, &en, &ls, NULL, h1, w1, t1, 1, 1, 2, 1.0f, 2.0f, sc1, 1);
    double z1 = 2.0 * tanh(1.5);
    T_NEAR(lp, z1 - log(1.0 + exp(z1)), 1e-6);
    float lpr, lsr, enr;
    al_lmhead_forward_ref(&lpr, &enr, &lsr, NULL, h1, w1, t1, 1, 1, 2, 1.0f, 2.0f);
    T_NEAR(lpr, lp, 1e-6);
    T_NEAR(enr, en, 1e-6);

    int N = 6, C = 5, V = 9, chunk = 4;
    const int32_t target[6] = {3, -1, 0, 8, 2, 5};
    lm_case c = {.h = frand((size_t)N * C, 31, 1.5f), .w = frand((size_t)V * C, 32, 1.5f),
                 .logp = fbuf(N), .ent = fbuf(N), .lse = fbuf(N), .R1 = frand(N, 33, 1.0f),
                 .R2 = frand(N, 34, 1.0f), .scratch = fbuf((size_t)chunk * (C + 2 * V)),
                 .target = target, .N = N, .C = C, .V = V, .chunk = chunk,
                 .inv_temp = 1.0f / 0.7f, .cap = 1.5f};
    float *lp_r = fbuf(N), *en_r = fbuf(N), *ls_r = fbuf(N);
    lm_loss(&c);
    al_lmhead_forward_ref(lp_r, en_r, ls_r, NULL, c.h, c.w, target, N, C, V, c.inv_temp, c.cap);
    gc_expect_close("lmhead softcap logp", c.logp, lp_r, N, 1e-5);
    gc_expect_close("lmhead softcap ent", c.ent, en_r, N, 1e-5);
    float *dh = fbuf((size_t)N * C), *dw = fbuf((size_t)V * C);
    al_lmhead_backward(dh, dw, c.R1, c.R2, c.h, c.w, target, c.lse, c.ent, N, C, V,
                       c.inv_temp, c.cap, c.scratch, chunk);
    gc_check("lmhead softcap dh", c.h, dh, (size_t)N * C, lm_loss, &c, 1e-2f);
    gc_check("lmhead softcap dw", c.w, dw, (size_t)V * C, lm_loss, &c, 1e-2f);
    al_free(c.h); al_free(c.w); al_free(c.logp); al_free(c.ent); al_free(c.lse);
    al_free(c.R1); al_free(c.R2); al_free(c.scratch); al_free(dh); al_free(dw);
    al_free(lp_r); al_free(en_r); al_free(ls_r);
}

typedef struct emb_case {
    float *wte, *wpe, *out, *R;
    const int32_t *ids, *pos;
    int N, C;
} emb_case;

static double emb_loss(void *p) {
    emb_case *e = p;
    al_embed_forward(e->out, e->ids, e->pos, e->wte, e->wpe, e->N, e->C);
    double L = 0.0;
    for (size_t i = 0; i < (size_t)e->N * e->C; i++) L += (double)e->out[i] * e->R[i];
    return L;
}

static void test_embed_grad(void) {
    int B = 2, T = 3, C = 5, V = 7, N = B * T;
    const int32_t ids[6] = {4, 1, 4, 6, 0, 4}, pos[6] = {0, 1, 2, 0, 1, 2};
    emb_case e = {.wte = frand((size_t)V * C, 31, 1.0f), .wpe = frand((size_t)T * C, 32, 1.0f),
                  .out = fbuf((size_t)N * C), .R = frand((size_t)N * C, 33, 1.0f),
                  .ids = ids, .pos = pos, .N = N, .C = C};
    float *dwte = fbuf((size_t)V * C), *dwpe = fbuf((size_t)T * C);
    al_embed_backward(dwte, dwpe, e.R, ids, pos, N, C);
    gc_check("embed dwte", e.wte, dwte, (size_t)V * C, emb_loss, &e, 1e-2f);
    gc_check("embed dwpe", e.wpe, dwpe, (size_t)T * C, emb_loss, &e, 1e-2f);
    al_free(e.wte); al_free(e.wpe); al_free(e.out); al_free(e.R);
    al_free(dwte); al_free(dwpe);
}

/* ------------------------------------------ optimised against reference */

/* al_gemm on sizes above the split threshold: M-split (M >= N) and N-split,
 * all transposes, strided operands, alpha and beta. */
static void test_gemm_split(void) {
    static const int shapes[][3] = {{301, 67, 131}, {37, 613, 97}, {9, 1500, 200}};
    for (int s = 0; s < 3; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        T_TRUE((double)M * N * K > 2e6);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
                size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
                float *A = frand(na, 100 + s, 1.0f), *Bm = frand(nb, 200 + s, 1.0f);
                float *C = frand((size_t)M * ldc, 300 + s, 1.0f);
                float *Cr = fcopy(C, (size_t)M * ldc), *C2 = fcopy(C, (size_t)M * ldc);
                al_gemm(ta, tb, M, N, K, 0.75f, A, lda, Bm, ldb, 0.5f, C, ldc);
                gemm_naive(ta, tb, M, N, K, 0.75f, A, lda, Bm, ldb, 0.5f, Cr, ldc);
                char what[64];
                snprintf(what, sizeof what, "gemm %dx%dx%d ta=%d tb=%d", M, N, K, ta, tb);
                gc_expect_close(what, C, Cr, (size_t)M * ldc, 1e-5);
                /* padding columns of C are untouched */
                int pad_ok = 1;
                for (int i = 0; i < M; i++)
                    for (int j = N; j < ldc; j++)
                        if (C[(size_t)i * ldc + j] != C2[(size_t)i * ldc + j]) pad_ok = 0;
                T_TRUE(pad_ok);
                /* determinism */
                al_gemm(ta, tb, M, N, K, 0.75f, A, lda, Bm, ldb, 0.5f, C2, ldc);
                expect_same(what, C, C2, (size_t)M * ldc);
                al_free(A); al_free(Bm); al_free(C); al_free(Cr); al_free(C2);
            }
    }
}

/* al_gemm_plan by hand, two threads: oneDNN splits rows unless the operand
 * every row panel repacks whole, op(B), is an LM head's size (then
 * columns: GPT-2's head in 128-row chunks, both products in bf16, d(hidden)
 * alone in fp32); layer products, the tiny head and decoding are as before. */
static void test_gemm_plan(void) {
    static const struct { int M, N, K, panel, tb, split_m; } c[] = {
        {128, 50257, 768, AL_PANEL_DNNL_BF16, 1, 0},   /* logits */
        {128, 50257, 768, AL_PANEL_DNNL_F32, 1, 1},
        {128, 768, 50257, AL_PANEL_DNNL_BF16, 0, 0},   /* d(hidden) */
        {128, 768, 50257, AL_PANEL_DNNL_F32, 0, 0},
        {1024, 768, 50257, AL_PANEL_DNNL_F32, 0, 0},
        {128, 32768, 2048, AL_PANEL_DNNL_BF16, 1, 1},  /* K past 1024 */
        {128, 128, 4096, AL_PANEL_DNNL_BF16, 0, 1},    /* the tiny head */
        {128, 4096, 128, AL_PANEL_DNNL_BF16, 1, 1},
        {128, 384, 65536, AL_PANEL_DNNL_BF16, 0, 1},   /* columns under 256 a thread */
        {1024, 9728, 896, AL_PANEL_DNNL_BF16, 1, 1},   /* a layer product */
        {1024, 2304, 768, AL_PANEL_DNNL_F32, 1, 1},
        {4, 2304, 768, AL_PANEL_DNNL_BF16, 1, 0},      /* decoding */
        {37, 613, 97, AL_PANEL_DNNL_F32, 0, 0},        /* under 32 rows a thread */
        {301, 67, 131, AL_PANEL_OPENBLAS, 0, 1},       /* OpenBLAS: the larger side */
        {128, 768, 50257, AL_PANEL_OPENBLAS, 0, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int split_m = -1;
        T_EQ_INT(al_gemm_plan(c[i].M, c[i].N, c[i].K, 2, c[i].panel, c[i].tb, &split_m), 1);
        T_EQ_INT(split_m, c[i].split_m);
    }
    int split_m = -1;
    T_EQ_INT(al_gemm_plan(128, 50257, 768, 1, AL_PANEL_DNNL_BF16, 1, &split_m), 0); /* one thread */
    T_EQ_INT(al_gemm_plan(8, 8, 8, 2, AL_PANEL_DNNL_BF16, 1, &split_m), 0);         /* too small */
    T_EQ_INT(split_m, -1);
}

/* oneDNN's products against OpenBLAS's, 1e-5 relative in fp32: every
 * transpose, padded leading dimensions, alpha and beta (beta 0 must ignore
 * NaN in C), panels split over rows and over columns (two threads), small
 * products run inline. */
static void gemm_backends_compare(const char *tag, int dm) {
    static const int shapes[][3] = {{301, 67, 131}, {37, 613, 97}, {2, 3, 5}, {130, 300, 257}};
    static const float ab[][2] = {{1.0f, 0.0f}, {0.75f, 0.5f}, {-1.25f, 1.0f}};
    for (int s = 0; s < 4; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int v = 0; v < 3; v++) {
                    int M = shapes[s][0] + dm, N = shapes[s][1], K = shapes[s][2];
                    float alpha = ab[v][0], beta = ab[v][1];
                    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
                    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
                    size_t nc = (size_t)M * ldc;
                    float *A = frand(na, 110 + s, 1.0f), *Bm = frand(nb, 210 + s, 1.0f);
                    float *C = frand(nc, 310 + s, 1.0f);
                    if (beta == 0.0f)
                        for (size_t i = 0; i < nc; i += 7) C[i] = NAN;
                    float *Cb = fcopy(C, nc);
                    T_OK(al_gemm_set_backend(AL_MM_ONEDNN));
                    al_gemm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, C, ldc);
                    T_OK(al_gemm_set_backend(AL_MM_OPENBLAS));
                    al_gemm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, Cb, ldc);
                    /* padding columns: both left them alone */
                    for (int i = 0; i < M; i++)
                        for (int j = N; j < ldc; j++) {
                            size_t at = (size_t)i * ldc + (size_t)j;
                            C[at] = Cb[at] = 0.0f;
                        }
                    char what[96];
                    snprintf(what, sizeof what, "%s: onednn vs openblas %dx%dx%d ta=%d tb=%d a=%g b=%g",
                             tag, M, N, K, ta, tb, alpha, beta);
                    gc_expect_close(what, C, Cb, nc, 1e-5);
                    al_free(A); al_free(Bm); al_free(C); al_free(Cb);
                }
}

/* One product's bits on oneDNN: a fresh array C = op(A) op(B) of a fixed
 * shape that splits over both threads. */
static float *gemm_probe(void) {
    int M = 263, N = 190, K = 333;
    float *A = frand((size_t)M * K, 41, 1.0f), *Bm = frand((size_t)N * K, 42, 1.0f);
    float *C = frand((size_t)M * N, 43, 1.0f);
    al_gemm(0, 1, M, N, K, 1.0f, A, K, Bm, K, 0.0f, C, N);
    al_free(A);
    al_free(Bm);
    return C;
}

static void test_gemm_onednn_vs_openblas(void) {
    if (al_gemm_set_backend(AL_MM_ONEDNN) != AL_OK) {
        fprintf(stderr, "skip: this build has no oneDNN (ALIGND_ONEDNN=OFF)\n");
        return;
    }
    int before = al_gemm_backend();
    float *first = gemm_probe();
    gemm_backends_compare("cached", 0);
    int live;
    long created0, created;
    al_dnnl_cache_stats(&live, &created0);
    T_TRUE(live > 2);
    /* a cache of two primitives: every new shape evicts one while the other
     * thread may be running its own panel (ASan sees a use after free) */
    al_dnnl_set_cache_cap(2);
    gemm_backends_compare("evicting", 1);
    al_dnnl_cache_stats(&live, &created);
    T_TRUE(live <= 2);
    T_TRUE(created - created0 > 40);
    /* a shape's bits do not depend on what the process multiplied before
     * (its primitive was evicted and is made again with the cache full) */
    T_OK(al_gemm_set_backend(AL_MM_ONEDNN)); /* the comparison ends on OpenBLAS */
    float *again = gemm_probe();
    expect_same("oneDNN product after evictions", first, again, (size_t)263 * 190);
    al_free(first);
    al_free(again);
    al_dnnl_set_cache_cap(1024);
    al_gemm_set_backend(before);
}

/* ---------------------------------------------------------------- bf16 */

static uint16_t *hbuf(size_t n) {
    uint16_t *p = al_calloc(n, sizeof(uint16_t));
    AL_ASSERT(p);
    return p;
}

static uint16_t *hrand(size_t n, uint64_t seed, float scale) {
    float *f = frand(n, seed, scale);
    uint16_t *h = hbuf(n);
    al_bf16_round_ref(h, f, n);
    al_free(f);
    return h;
}

static float bf(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

static float fbits(uint32_t x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* Rounding by hand: ties to even, carries, infinity, NaN, subnormals; then
 * the fast path against the by-value _ref on random bit patterns (serial and
 * split over the pool), and widening exact. */
static void test_bf16_round(void) {
    static const struct { uint32_t in; uint16_t want; } cases[] = {
        {0x3f800000u, 0x3f80u}, /* 1 */
        {0x3f808000u, 0x3f80u}, /* 1 + 2^-8: a tie, to even (down) */
        {0x3f818000u, 0x3f82u}, /* a tie, to even (up) */
        {0x3f808001u, 0x3f81u}, /* just above the tie */
        {0x3f7fffffu, 0x3f80u}, /* carries into the exponent */
        {0xbf808001u, 0xbf81u}, /* negative, by magnitude */
        {0x7f7fffffu, 0x7f80u}, /* the largest float: to infinity */
        {0x7f7f7fffu, 0x7f7fu}, /* below the overflow tie: the largest bf16 */
        {0x7f800000u, 0x7f80u}, /* +inf */
        {0xff800000u, 0xff80u}, /* -inf */
        {0x7f800001u, 0x7fc0u}, /* a signalling NaN comes out quiet */
        {0xffc00000u, 0xffc0u}, /* -NaN */
        {0x00000001u, 0x0000u}, /* the smallest subnormal: to zero */
        {0x00018000u, 0x0002u}, /* subnormal tie, to even (up): no flush */
        {0x80000000u, 0x8000u}, /* -0 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float f = fbits(cases[i].in);
        uint16_t got, ref;
        al_bf16_round(&got, &f, 1);
        al_bf16_round_ref(&ref, &f, 1);
        T_REPORT_(got == cases[i].want && ref == cases[i].want,
                  "round 0x%08x: got 0x%04x, ref 0x%04x, want 0x%04x", cases[i].in, got, ref,
                  cases[i].want);
    }
    size_t n = (size_t)1 << 18; /* above the pool threshold */
    float *f = fbuf(n);
    al_rng r;
    al_rng_seed(&r, 77);
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)al_rng_u64(&r);
        if (i % 3 == 0) x &= 0xffff8000u | (x & 1u); /* many exact ties */
        f[i] = fbits(x);
    }
    uint16_t *a = hbuf(n), *b = hbuf(n);
    al_bf16_round(a, f, n);
    al_bf16_round_ref(b, f, n);
    T_TRUE(memcmp(a, b, n * sizeof(uint16_t)) == 0);
    float *w = fbuf(n);
    al_bf16_widen(w, a, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, &w[i], sizeof x);
        bad += x != (uint32_t)a[i] << 16;
    }
    T_EQ_INT(bad, 0);
    /* snap: the same rounding in place, with and without the bf16 copy */
    float *g = fbuf(n);
    uint16_t *k = hbuf(n);
    memcpy(g, f, n * sizeof(float));
    al_bf16_snap(g, k, n);
    T_TRUE(memcmp(k, b, n * sizeof(uint16_t)) == 0 && memcmp(g, w, n * sizeof(float)) == 0);
    memcpy(g, f, n * sizeof(float));
    al_bf16_snap(g, NULL, n - 5);
    T_TRUE(memcmp(g, w, (n - 5) * sizeof(float)) == 0 && memcmp(g + n - 5, f + n - 5, 5 * sizeof(float)) == 0);
    al_free(f); al_free(a); al_free(b); al_free(w); al_free(g); al_free(k);
    /* rounding and the bias gradient's column sums in one pass: the bits of
     * al_bf16_round and al_matmul_backward's db, on the pool and serial
     * sizes, odd column counts included */
    static const int shapes[][2] = {{1024, 384}, {1024, 131}, {7, 50}, {300, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int N = shapes[si][0], C = shapes[si][1];
        const size_t nc = (size_t)N * C;
        float *x = frand(nc, 90 + si, 3.0f), *db = frand((size_t)C, 95 + si, 1.0f), *dbr = fcopy(db, (size_t)C);
        float *dbp = fcopy(db, (size_t)C);
        uint16_t *h = hbuf(nc), *hr = hbuf(nc);
        al_bf16_round_colsum(h, db, x, N, C);
        al_bf16_round(hr, x, nc);
        al_matmul_backward(NULL, NULL, dbr, x, NULL, NULL, N, 1, C);
        T_REPORT_(memcmp(h, hr, nc * sizeof *h) == 0 && memcmp(db, dbr, (size_t)C * sizeof *db) == 0,
                  "round_colsum %dx%d differs", N, C);
        /* both sums as defined: in double, rows in order, plain loops */
        for (int c = 0; c < C; c++) {
            double sum = 0;
            for (int row = 0; row < N; row++) sum += (double)x[(size_t)row * C + c];
            dbp[c] += (float)sum;
        }
        T_REPORT_(memcmp(db, dbp, (size_t)C * sizeof *db) == 0, "colsum %dx%d differs from the loops", N, C);
        al_free(x); al_free(db); al_free(dbr); al_free(dbp); al_free(h); al_free(hr);
    }
}

/* |got - want| <= tol_ij per element; tol = k * sum_k |a_ik b_kj| + 1e-30. */
static void expect_within_abs(const char *what, const float *got, const float *want,
                              const double *absum, size_t n, double k) {
    size_t bad = 0, worst = 0;
    double wr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]), tol = k * absum[i] + 1e-30;
        if (!(d <= tol)) {
            bad++;
            if (!(d / tol <= wr)) wr = d / tol, worst = i;
        }
    }
    T_REPORT_(bad == 0, "%s: %zu of %zu off, worst [%zu] %.9g vs %.9g (%.3g x tol)", what, bad,
              n, worst, n ? got[worst] : 0.0, n ? want[worst] : 0.0, wr);
}

/* sum_k |op(A)_ik op(B)_kj| in double over widened bf16 or float values. */
static double *abs_sums(int ta, int tb, int M, int N, int K, const uint16_t *Ah, const float *Af,
                        int lda, const uint16_t *Bh, const float *Bf, int ldb) {
    double *s = calloc((size_t)M * N, sizeof *s);
    AL_ASSERT(s);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            for (int k = 0; k < K; k++) {
                size_t ia = ta ? (size_t)k * lda + i : (size_t)i * lda + k;
                size_t ib = tb ? (size_t)j * ldb + k : (size_t)k * ldb + j;
                double a = Ah ? bf(Ah[ia]) : Af[ia], b = Bh ? bf(Bh[ib]) : Bf[ib];
                s[(size_t)i * N + j] += fabs(a * b);
            }
    return s;
}

/* al_gemm_bf16 against the double-precision loops over the same bf16
 * values: only fp32 accumulation separates them (K * 2^-24 of the sum of
 * |products|). Every transpose, alpha/beta, a single row (the decoding
 * path), pool panels over rows and columns, on both backends. */
static void gemm_bf16_check(const char *backend) {
    static const int shapes[][3] = {{1, 301, 257}, {3, 40, 17}, {130, 67, 131}, {37, 613, 97}};
    for (int s = 0; s < 4; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 3, ldc = N;
                uint16_t *A = hrand((size_t)(ta ? K : M) * lda, 410 + s, 1.0f);
                uint16_t *Bm = hrand((size_t)(tb ? N : K) * ldb, 420 + s, 1.0f);
                float *C = frand((size_t)M * ldc, 430 + s, 1.0f), *Cr = fcopy(C, (size_t)M * ldc);
                al_gemm_bf16(ta, tb, M, N, K, 0.5f, A, lda, Bm, ldb, 0.25f, C, ldc);
                al_gemm_bf16_ref(ta, tb, M, N, K, 0.5f, A, lda, Bm, ldb, 0.25f, Cr, ldc);
                double *abs = abs_sums(ta, tb, M, N, K, A, NULL, lda, Bm, NULL, ldb);
                for (size_t i = 0; i < (size_t)M * N; i++) abs[i] = 0.5 * abs[i] + 0.25 * 2.0;
                char what[96];
                snprintf(what, sizeof what, "gemm_bf16 (%s) %dx%dx%d ta=%d tb=%d", backend, M, N,
                         K, ta, tb);
                expect_within_abs(what, C, Cr, abs, (size_t)M * N, (K + 2) * 0x1p-24);
                free(abs);
                al_free(A); al_free(Bm); al_free(C); al_free(Cr);
            }
}

static void test_gemm_bf16(void) {
    int before = al_gemm_backend();
    if (al_gemm_set_backend(AL_MM_ONEDNN) == AL_OK) gemm_bf16_check("onednn");
    al_gemm_set_backend(AL_MM_OPENBLAS);
    gemm_bf16_check("loops");
    al_gemm_set_backend(before);
}

/* Row-split bf16 products C = A B (B deep) pack B once (al_dnnl_pack_b)
 * and run every row panel on the packing: the same bits as each panel's
 * matmul repacking B plain, on shapes that take the packed path, odd sizes
 * (N, K not multiples of oneDNN's blocks, padded leading dimensions),
 * beta 0 and not, both transposes of B; the panels by hand and through
 * al_gemm_bf16. */
static void test_gemm_bf16_packed(void) {
    if (!al_dnnl_ready() || al_pool_threads() != 2) return;
    int before = al_gemm_backend();
    T_OK(al_gemm_set_backend(AL_MM_ONEDNN));
    /* {1030, 520, 611}: 520 rows on thread 0, B deeper than wide and wide
     * enough: al_gemm_bf16 packs it (gemm16_pack) */
    static const int shapes[][3] = {{200, 131, 77}, {517, 300, 261}, {256, 768, 192},
                                    {161, 640, 33}, {1030, 520, 611}};
    for (int s = 0; s < 5; s++)
        for (int tb = 0; tb < 2; tb++)
            for (int bz = 0; bz < 2; bz++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                int lda = K + 1, ldb = (tb ? K : N) + 3, ldc = N + 2;
                float beta = bz ? 0.0f : 0.25f;
                int split_m = 0;
                T_TRUE(al_gemm_plan(M, N, K, 2, AL_PANEL_DNNL_BF16, tb, &split_m) && split_m);
                uint16_t *A = hrand((size_t)M * lda, 510 + s, 1.0f);
                uint16_t *Bm = hrand((size_t)(tb ? N : K) * ldb, 520 + s, 1.0f);
                float *C = frand((size_t)M * ldc, 530 + s, 1.0f);
                float *Cp = fcopy(C, (size_t)M * ldc), *Cg = fcopy(C, (size_t)M * ldc);
                char what[96];
                snprintf(what, sizeof what, "gemm_bf16 packed %dx%dx%d tb=%d beta=%g", M, N, K, tb,
                         (double)beta);
                /* the pool's row panels (blocks of 8 rows), plain and packed */
                long lo0, hi0;
                al_split((M + 7) / 8, 2, 0, &lo0, &hi0);
                const al_dnnl_pk *pk = al_dnnl_pack_b(1, tb, (int)(hi0 * 8), N, K, 0.5f, lda, Bm,
                                                      ldb, beta, ldc, 2);
                T_TRUE(pk != NULL);
                T_OK(al_dnnl_pack_part(pk, 1)); /* any order, any thread */
                T_OK(al_dnnl_pack_part(pk, 0));
                for (int t = 0; t < 2; t++) {
                    long lo, hi;
                    al_split((M + 7) / 8, 2, t, &lo, &hi);
                    int m0 = (int)lo * 8, m1 = hi * 8 < M ? (int)hi * 8 : M;
                    T_OK(al_dnnl_gemm(1, 0, tb, m1 - m0, N, K, 0.5f, A + (size_t)m0 * lda, lda, Bm,
                                      ldb, beta, C + (size_t)m0 * ldc, ldc));
                    T_OK(al_dnnl_gemm_pk(1, tb, m1 - m0, N, K, 0.5f, A + (size_t)m0 * lda, lda, pk,
                                         ldb, beta, Cp + (size_t)m0 * ldc, ldc));
                }
                expect_same(what, Cp, C, (size_t)M * ldc);
                al_gemm_bf16(0, tb, M, N, K, 0.5f, A, lda, Bm, ldb, beta, Cg, ldc);
                expect_same(what, Cg, C, (size_t)M * ldc);
                al_free(A); al_free(Bm); al_free(C); al_free(Cp); al_free(Cg);
            }
    al_gemm_set_backend(before);
}

/* A row against B^T (decoding with nn.Linear's layout) takes its columns
 * four at a time, from four quarters of B: each column has the bits it has
 * when computed alone (odd K, columns not a multiple of 4 or 16, on the
 * pool and not). */
static void test_gemm_bf16_row_bits(void) {
    enum { K = 203, LDB = K + 5 };
    static const int Ns[] = {1, 3, 4, 7, 301, 1031};
    for (size_t s = 0; s < sizeof Ns / sizeof Ns[0]; s++) {
        int N = Ns[s];
        uint16_t *a = hrand(K, 440, 1.0f), *Bm = hrand((size_t)N * LDB, 441 + s, 1.0f);
        float *c = frand((size_t)N, 442, 1.0f), *one = fcopy(c, (size_t)N);
        al_gemm_bf16(0, 1, 1, N, K, 0.5f, a, K, Bm, LDB, 0.25f, c, N);
        for (int j = 0; j < N; j++)
            al_gemm_bf16(0, 1, 1, 1, K, 0.5f, a, K, Bm + (size_t)j * LDB, LDB, 0.25f, one + j, 1);
        T_TRUE(memcmp(c, one, (size_t)N * sizeof *c) == 0);
        al_free(a); al_free(Bm); al_free(c); al_free(one);
    }
}

/* The bf16 linear layer against the fp32 _ref on the unrounded data: within
 * the bf16 tolerance derived from K, (2^-7 + K 2^-23) of the sum of
 * |products| (both operands rounded, 2^-8 relative each, plus fp32
 * accumulation); the bias gradient is fp32 alone. */
static void test_matmul_bf16_vs_ref(void) {
    static const int shapes[][3] = {{1, 37, 29}, {5, 7, 3}, {300, 96, 130}, {64, 200, 48}};
    for (int s = 0; s < 4; s++) {
        int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        float *inp = frand((size_t)N * C, 510 + s, 1.0f), *w = frand((size_t)OC * C, 520 + s, 1.0f);
        float *b = frand((size_t)OC, 530 + s, 1.0f), *dout = frand((size_t)N * OC, 540 + s, 1.0f);
        uint16_t *w16 = hbuf((size_t)OC * C), *scr = hbuf((size_t)N * (OC + C));
        al_bf16_round(w16, w, (size_t)OC * C);
        float *out = fbuf((size_t)N * OC), *ref = fbuf((size_t)N * OC);
        al_matmul_forward_bf16(out, inp, w16, b, N, C, OC, scr);
        al_matmul_forward_ref(ref, inp, w, b, N, C, OC);
        double *abs = abs_sums(0, 1, N, OC, C, NULL, inp, C, NULL, w, C);
        char what[96];
        double tol = 0x1p-7 + (C + 1) * 0x1p-23;
        snprintf(what, sizeof what, "matmul_forward_bf16 %dx%dx%d", N, C, OC);
        expect_within_abs(what, out, ref, abs, (size_t)N * OC, tol);
        free(abs);
        /* backward, accumulating onto ones */
        float *dinp = fbuf((size_t)N * C), *dw = fbuf((size_t)OC * C), *db = fbuf((size_t)OC);
        float *dinp_r = fbuf((size_t)N * C), *dw_r = fbuf((size_t)OC * C), *db_r = fbuf((size_t)OC);
        for (size_t i = 0; i < (size_t)N * C; i++) dinp[i] = dinp_r[i] = 1.0f;
        for (size_t i = 0; i < (size_t)OC * C; i++) dw[i] = dw_r[i] = 1.0f;
        al_matmul_backward_bf16(dinp, dw, db, dout, inp, w16, N, C, OC, scr);
        al_matmul_backward_ref(dinp_r, dw_r, db_r, dout, inp, w, N, C, OC);
        abs = abs_sums(0, 0, N, C, OC, NULL, dout, OC, NULL, w, C);
        for (size_t i = 0; i < (size_t)N * C; i++) abs[i] += 1.0;
        snprintf(what, sizeof what, "matmul_backward_bf16 dinp %dx%dx%d", N, C, OC);
        expect_within_abs(what, dinp, dinp_r, abs, (size_t)N * C, 0x1p-7 + (OC + 1) * 0x1p-23);
        free(abs);
        abs = abs_sums(1, 0, OC, C, N, NULL, dout, OC, NULL, inp, C);
        for (size_t i = 0; i < (size_t)OC * C; i++) abs[i] += 1.0;
        snprintf(what, sizeof what, "matmul_backward_bf16 dw %dx%dx%d", N, C, OC);
        expect_within_abs(what, dw, dw_r, abs, (size_t)OC * C, 0x1p-7 + (N + 1) * 0x1p-23);
        free(abs);
        gc_expect_close("matmul_backward_bf16 db", db, db_r, (size_t)OC, 1e-6);
        al_free(inp); al_free(w); al_free(b); al_free(dout); al_free(w16); al_free(scr);
        al_free(out); al_free(ref); al_free(dinp); al_free(dw); al_free(db);
        al_free(dinp_r); al_free(dw_r); al_free(db_r);
    }
}

/* The products of a weight held (in, out) (a frozen GPT-2 Conv1D weight
 * as its file has it): al_matmul_forward_t / _ht against the fp32 _ref on
 * nn.Linear's layout, within fp32 (bf16) rounding, on both backends; one
 * row (decoding: a GEMV; in bf16 al_matvec_ht) and several. */
static void test_matmul_wt(void) {
    static const int shapes[][3] = {{1, 37, 29}, {1, 64, 300}, {3, 40, 260}, {300, 96, 130}};
    int before = al_gemm_backend();
    for (int be = 0; be < 2; be++) {
        if (al_gemm_set_backend(be ? AL_MM_ONEDNN : AL_MM_OPENBLAS) != AL_OK) continue;
        for (int s = 0; s < 4; s++) {
            int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
            float *inp = frand((size_t)N * C, 610 + s, 1.0f), *w = frand((size_t)OC * C, 620 + s, 1.0f);
            float *b = frand((size_t)OC, 630 + s, 1.0f), *wt = fbuf((size_t)OC * C);
            for (int o = 0; o < OC; o++)
                for (int c = 0; c < C; c++) wt[(size_t)c * OC + o] = w[(size_t)o * C + c];
            uint16_t *wt16 = hbuf((size_t)OC * C), *in16 = hbuf((size_t)N * C);
            al_bf16_round(wt16, wt, (size_t)OC * C);
            al_bf16_round(in16, inp, (size_t)N * C);
            float *out = fbuf((size_t)N * OC), *ref = fbuf((size_t)N * OC);
            al_matmul_forward_ref(ref, inp, w, b, N, C, OC);
            double *abs = abs_sums(0, 1, N, OC, C, NULL, inp, C, NULL, w, C);
            char what[96];
            al_matmul_forward_t(out, inp, wt, b, N, C, OC);
            snprintf(what, sizeof what, "matmul_forward_t %dx%dx%d", N, C, OC);
            expect_within_abs(what, out, ref, abs, (size_t)N * OC, (C + 1) * 0x1p-23);
            al_matmul_forward_ht(out, in16, wt16, b, N, C, OC);
            snprintf(what, sizeof what, "matmul_forward_ht %dx%dx%d", N, C, OC);
            expect_within_abs(what, out, ref, abs, (size_t)N * OC, 0x1p-7 + (C + 1) * 0x1p-23);
            free(abs);
            al_free(inp); al_free(w); al_free(b); al_free(wt); al_free(wt16); al_free(in16);
            al_free(out); al_free(ref);
        }
    }
    al_gemm_set_backend(before);
}

/* One call of al_matvec_ht on the caller's thread alone (al_pool_run runs
 * nested calls inline with one thread). */
typedef struct mv_args {
    float *out;
    const uint16_t *x, *w;
    const float *b;
    int C, OC;
} mv_args;

static void mv_one_thread(void *p, int tid, int nt) {
    const mv_args *a = p;
    (void)nt;
    if (!tid) al_matvec_ht(a->out, a->x, a->w, a->b, a->C, a->OC);
}

/* The decoding product of a bf16 weight held (in, out) against its _ref
 * twin (double sums) within fp32 rounding of the sum of |terms|, on odd
 * sizes: k not cut in two (C < 64) and cut (odd C), one block of columns
 * and several (OC > 2048) with a tail, an output too wide to cut k for;
 * with and without a bias. Two threads and one give the same bits. */
static void test_matvec_ht(void) {
    static const int shapes[][2] = {{5, 7}, {37, 29}, {65, 300}, {131, 4099}, {67, 9001}};
    for (int s = 0; s < 5; s++) {
        int C = shapes[s][0], OC = shapes[s][1];
        uint16_t *x = hrand((size_t)C, 640 + s, 1.0f), *w = hrand((size_t)C * OC, 650 + s, 1.0f);
        float *b = frand((size_t)OC, 660 + s, 4.0f), *out = fbuf((size_t)OC), *ref = fbuf((size_t)OC);
        float *one = fbuf((size_t)OC);
        double *abs = calloc((size_t)OC, sizeof *abs);
        AL_ASSERT(abs);
        for (int bias = 0; bias < 2; bias++) {
            const float *bb = bias ? b : NULL;
            for (int j = 0; j < OC; j++) {
                abs[j] = bias ? fabs(b[j]) : 0.0;
                for (int k = 0; k < C; k++) abs[j] += fabs((double)bf(x[k]) * bf(w[(size_t)k * OC + j]));
            }
            char what[96];
            snprintf(what, sizeof what, "matvec_ht C=%d OC=%d bias=%d", C, OC, bias);
            al_matvec_ht(out, x, w, bb, C, OC);
            al_matvec_ht_ref(ref, x, w, bb, C, OC);
            expect_within_abs(what, out, ref, abs, (size_t)OC, (C + 2) * 0x1p-24);
            mv_args args = {.out = one, .x = x, .w = w, .b = bb, .C = C, .OC = OC};
            al_pool_run(mv_one_thread, &args);
            expect_same(what, out, one, (size_t)OC);
        }
        free(abs);
        al_free(x); al_free(w); al_free(b); al_free(out); al_free(ref); al_free(one);
    }
}

static void test_matmul_vs_ref(void) {
    /* {N, C, OC}: forward M-split (N >= OC), forward N-split (N < OC) */
    static const int shapes[][3] = {{256, 96, 101}, {40, 128, 515}, {6, 5, 7}};
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        float *inp = frand((size_t)N * C, 40 + s, 1.0f), *w = frand((size_t)OC * C, 50 + s, 0.5f);
        float *b = frand(OC, 60 + s, 1.0f), *dout = frand((size_t)N * OC, 70 + s, 1.0f);
        float *out = fbuf((size_t)N * OC), *out_r = fbuf((size_t)N * OC),
              *out2 = fbuf((size_t)N * OC);
        char what[96];
        al_matmul_forward(out, inp, w, b, N, C, OC);
        al_matmul_forward_ref(out_r, inp, w, b, N, C, OC);
        snprintf(what, sizeof what, "matmul fwd N=%d C=%d OC=%d", N, C, OC);
        gc_expect_close(what, out, out_r, (size_t)N * OC, 1e-4);
        al_matmul_forward(out2, inp, w, b, N, C, OC);
        expect_same(what, out, out2, (size_t)N * OC);
        al_matmul_forward(out, inp, w, NULL, N, C, OC);
        al_matmul_forward_ref(out_r, inp, w, NULL, N, C, OC);
        gc_expect_close(what, out, out_r, (size_t)N * OC, 1e-4);

        /* backward accumulates onto random initial gradients */
        float *dinp = frand((size_t)N * C, 80, 1.0f), *dw = frand((size_t)OC * C, 81, 1.0f);
        float *db = frand(OC, 82, 1.0f);
        float *dinp_r = fcopy(dinp, (size_t)N * C), *dw_r = fcopy(dw, (size_t)OC * C);
        float *db_r = fcopy(db, OC);
        float *dinp2 = fcopy(dinp, (size_t)N * C), *dw2 = fcopy(dw, (size_t)OC * C);
        float *db2 = fcopy(db, OC);
        al_matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
        al_matmul_backward_ref(dinp_r, dw_r, db_r, dout, inp, w, N, C, OC);
        snprintf(what, sizeof what, "matmul bwd dinp N=%d C=%d OC=%d", N, C, OC);
        gc_expect_close(what, dinp, dinp_r, (size_t)N * C, 1e-4);
        snprintf(what, sizeof what, "matmul bwd dw N=%d C=%d OC=%d", N, C, OC);
        gc_expect_close(what, dw, dw_r, (size_t)OC * C, 1e-4);
        snprintf(what, sizeof what, "matmul bwd db N=%d C=%d OC=%d", N, C, OC);
        gc_expect_close(what, db, db_r, OC, 1e-5);
        al_matmul_backward(dinp2, dw2, db2, dout, inp, w, N, C, OC);
        expect_same("matmul bwd dinp repeat", dinp, dinp2, (size_t)N * C);
        expect_same("matmul bwd dw repeat", dw, dw2, (size_t)OC * C);
        expect_same("matmul bwd db repeat", db, db2, OC);
        al_free(inp); al_free(w); al_free(b); al_free(dout); al_free(out); al_free(out_r);
        al_free(out2); al_free(dinp); al_free(dw); al_free(db); al_free(dinp_r);
        al_free(dw_r); al_free(db_r); al_free(dinp2); al_free(dw2); al_free(db2);
    }
    /* a large db: the column sums are split over the pool */
    int N = 300, OC = 1000;
    float *dout = frand((size_t)N * OC, 90, 1.0f), *db = fbuf(OC), *db_r = fbuf(OC);
    al_matmul_backward(NULL, NULL, db, dout, NULL, NULL, N, 1, OC);
    al_matmul_backward_ref(NULL, NULL, db_r, dout, NULL, NULL, N, 1, OC);
    gc_expect_close("matmul db big", db, db_r, OC, 1e-6);
    al_free(dout); al_free(db); al_free(db_r);
}

/* dh, dw of L = sum(dlogp * logp + dent * ent) in double, for comparison. */
/* sh, sw (may be NULL) accumulate sum |dz| |w| and sum |dz| |h|, the scale
 * of each gradient element's rounding error. */
static void lmhead_backward_naive_abs(float *dh, float *dw, double *sh, double *sw,
                                      const float *dlogp, const float *dent, const float *h,
                                      const float *w, const int32_t *target, int N, int C, int V,
                                      float inv_temp) {
    double *z = calloc((size_t)V, sizeof(double));
    AL_ASSERT(z);
    for (int n = 0; n < N; n++) {
        if (target[n] < 0) continue;
        const float *x = h + (size_t)n * C;
        double m = -INFINITY;
        for (int v = 0; v < V; v++) {
            double s = 0.0;
            for (int k = 0; k < C; k++) s += (double)x[k] * w[(size_t)v * C + k];
            z[v] = s * inv_temp;
            m = fmax(m, z[v]);
        }
        double S = 0.0;
        for (int v = 0; v < V; v++) S += exp(z[v] - m);
        double lse = m + log(S), H = 0.0;
        for (int v = 0; v < V; v++) {
            double lp = z[v] - lse;
            H -= exp(lp) * lp;
        }
        for (int v = 0; v < V; v++) {
            double lp = z[v] - lse, p = exp(lp);
            double g = dlogp[n] * ((v == target[n]) - p) + (dent ? dent[n] : 0.0) * (-p * (lp + H));
            g *= inv_temp;
            for (int k = 0; k < C; k++) {
                dh[(size_t)n * C + k] += (float)(g * w[(size_t)v * C + k]);
                dw[(size_t)v * C + k] += (float)(g * x[k]);
                if (sh) sh[(size_t)n * C + k] += fabs(g * w[(size_t)v * C + k]);
                if (sw) sw[(size_t)v * C + k] += fabs(g * x[k]);
            }
        }
    }
    free(z);
}

static void lmhead_backward_naive(float *dh, float *dw, const float *dlogp, const float *dent,
                                  const float *h, const float *w, const int32_t *target,
                                  int N, int C, int V, float inv_temp) {
    lmhead_backward_naive_abs(dh, dw, NULL, NULL, dlogp, dent, h, w, target, N, C, V, inv_temp);
}

/* The bf16 head against its fp32 twins. Forward: against the _ref on the
 * bf16-rounded h and w, fp32 rounding apart (1e-5); against the _ref on the
 * unrounded data, log-probs within twice the largest logit's bound
 * (2^-7 + C 2^-23) sum_k |h_k w_vk| / T. Backward: against the plain loops on
 * the rounded data, within the rounding of dz to bf16 (2^-8 of sum |dz| |w|,
 * plus fp32 accumulation over V and C). */
static void test_lmhead_bf16(void) {
    static const int cfg[][4] = {{50, 64, 1031, 24}, {13, 5, 7, 4}};
    for (int s = 0; s < 2; s++) {
        int N = cfg[s][0], C = cfg[s][1], V = cfg[s][2], chunk = cfg[s][3];
        float inv_temp = 1.0f / 0.7f;
        int32_t *target = calloc((size_t)N, sizeof(int32_t));
        AL_ASSERT(target);
        for (int n = 0; n < N; n++) target[n] = n % 5 == 3 ? -1 : (n * 37) % V;
        float *h = frand((size_t)N * C, 900 + s, 1.0f), *w = frand((size_t)V * C, 910 + s, 0.5f);
        uint16_t *w16 = hbuf((size_t)V * C), *h16 = hbuf((size_t)N * C);
        al_bf16_round(w16, w, (size_t)V * C);
        al_bf16_round(h16, h, (size_t)N * C);
        float *hr = fbuf((size_t)N * C), *wr = fbuf((size_t)V * C);
        al_bf16_widen(hr, h16, (size_t)N * C);
        al_bf16_widen(wr, w16, (size_t)V * C);
        float *scratch = fbuf((size_t)chunk * (C + V));
        uint16_t *s16 = hbuf((size_t)chunk * (C + V));
        float *lp = fbuf(N), *en = fbuf(N), *ls = fbuf(N), *lp_r = fbuf(N), *en_r = fbuf(N),
              *ls_r = fbuf(N), *lp_u = fbuf(N), *ls_u = fbuf(N);
        al_lmhead_forward_bf16(lp, en, ls, NULL, h, w16, target, N, C, V, inv_temp, 0.0f, scratch, s16,
                               chunk);
        al_lmhead_forward_ref(lp_r, en_r, ls_r, NULL, hr, wr, target, N, C, V, inv_temp, 0.0f);
        gc_expect_close("lmhead_bf16 logp vs ref on rounded", lp, lp_r, N, 1e-5);
        gc_expect_close("lmhead_bf16 ent vs ref on rounded", en, en_r, N, 1e-5);
        gc_expect_close("lmhead_bf16 lse vs ref on rounded", ls, ls_r, N, 1e-5);
        al_lmhead_forward_ref(lp_u, NULL, ls_u, NULL, h, w, target, N, C, V, inv_temp, 0.0f);
        double *bound = calloc((size_t)N, sizeof *bound);
        AL_ASSERT(bound);
        for (int n = 0; n < N; n++)
            for (int v = 0; v < V; v++) {
                double a = 0;
                for (int k = 0; k < C; k++) a += fabs((double)h[(size_t)n * C + k] * w[(size_t)v * C + k]);
                a *= (0x1p-7 + (C + 1) * 0x1p-23) * inv_temp;
                if (a > bound[n]) bound[n] = a;
            }
        for (int n = 0; n < N; n++) bound[n] = 2.0 * bound[n] / 1.0;
        expect_within_abs("lmhead_bf16 logp vs fp32 ref", lp, lp_u, bound, (size_t)N, 1.0);
        free(bound);

        float *dlogp = frand(N, 920 + s, 1.0f), *dent = frand(N, 930 + s, 1.0f);
        float *dh = fbuf((size_t)N * C), *dw = fbuf((size_t)V * C);
        float *dh_r = fbuf((size_t)N * C), *dw_r = fbuf((size_t)V * C);
        double *sh = calloc((size_t)N * C, sizeof *sh), *sw = calloc((size_t)V * C, sizeof *sw);
        AL_ASSERT(sh && sw);
        al_lmhead_backward_bf16(dh, dw, dlogp, dent, h, w16, target, ls, en, N, C, V, inv_temp,
                                0.0f, scratch, s16, chunk);
        lmhead_backward_naive_abs(dh_r, dw_r, sh, sw, dlogp, dent, hr, wr, target, N, C, V,
                                  inv_temp);
        for (size_t i = 0; i < (size_t)N * C; i++) sh[i] += 1e-7;
        for (size_t i = 0; i < (size_t)V * C; i++) sw[i] += 1e-7;
        double k = 0x1p-8 + (V + C + 8) * 0x1p-23;
        expect_within_abs("lmhead_bf16 dh", dh, dh_r, sh, (size_t)N * C, k);
        expect_within_abs("lmhead_bf16 dw", dw, dw_r, sw, (size_t)V * C, k);
        free(sh); free(sw); free(target);
        al_free(h); al_free(w); al_free(w16); al_free(h16); al_free(hr); al_free(wr);
        al_free(scratch); al_free(s16); al_free(lp); al_free(en); al_free(ls); al_free(lp_r);
        al_free(en_r); al_free(ls_r); al_free(lp_u); al_free(ls_u); al_free(dlogp); al_free(dent);
        al_free(dh); al_free(dw); al_free(dh_r); al_free(dw_r);
    }
}

/* Embeddings from bf16 tables: exactly the widened values (and their sum). */
static void test_embed_bf16(void) {
    enum { V = 11, T = 5, C = 7, N = 6 };
    int32_t ids[N] = {3, 0, 10, 3, 7, 1}, pos[N] = {0, 1, 2, 3, 4, 0};
    uint16_t *te = hrand((size_t)V * C, 940, 1.0f), *pe = hrand((size_t)T * C, 941, 1.0f);
    float *tf = fbuf((size_t)V * C), *pf = fbuf((size_t)T * C);
    al_bf16_widen(tf, te, (size_t)V * C);
    al_bf16_widen(pf, pe, (size_t)T * C);
    float *o = fbuf((size_t)N * C), *r = fbuf((size_t)N * C);
    al_embed_forward_bf16(o, ids, pos, te, pe, N, C);
    al_embed_forward(r, ids, pos, tf, pf, N, C);
    expect_same("embed_bf16 with positions", o, r, (size_t)N * C);
    al_embed_forward_bf16(o, ids, NULL, te, NULL, N, C);
    al_embed_forward(r, ids, NULL, tf, NULL, N, C);
    expect_same("embed_bf16", o, r, (size_t)N * C);
    al_free(te); al_free(pe); al_free(tf); al_free(pf); al_free(o); al_free(r);
}

static void test_lmhead_vs_ref(void) {
    /* chunk 40 x V 1031 x C 64 = 2.6e6: logits and dh gemms split over N,
     * dw gemm over M; 96 rows with about a quarter skipped -> 2 chunks. */
    static const int cfg[][4] = {{96, 64, 1031, 40}, {96, 64, 1031, 7}, {13, 5, 7, 4}};
    for (int s = 0; s < 3; s++) {
        int N = cfg[s][0], C = cfg[s][1], V = cfg[s][2], chunk = cfg[s][3];
        float inv_temp = 1.0f / 0.7f;
        int32_t *target = calloc((size_t)N, sizeof(int32_t));
        AL_ASSERT(target);
        uint64_t st = 77 + s;
        int valid = 0;
        for (int n = 0; n < N; n++) {
            uint64_t r = gc_next_(&st);
            target[n] = (r % 4 == 0) ? -1 : (int32_t)((r >> 8) % (uint64_t)V);
            valid += target[n] >= 0;
        }
        target[N - 1] = -1; /* a skipped row at the very end */
        T_TRUE(valid > chunk);
        float *h = frand((size_t)N * C, 400 + s, 1.0f), *w = frand((size_t)V * C, 500 + s, 0.5f);
        float *scratch = fbuf((size_t)chunk * (C + V));
        float *lp = fbuf(N), *en = fbuf(N), *ls = fbuf(N);
        float *lp_r = fbuf(N), *en_r = fbuf(N), *ls_r = fbuf(N);
        float *lp2 = fbuf(N), *en2 = fbuf(N), *ls2 = fbuf(N);
        char what[96];
        al_lmhead_forward(lp, en, ls, NULL, h, w, target, N, C, V, inv_temp, 0.0f, scratch, chunk);
        al_lmhead_forward_ref(lp_r, en_r, ls_r, NULL, h, w, target, N, C, V, inv_temp, 0.0f);
        snprintf(what, sizeof what, "lmhead logp N=%d C=%d V=%d chunk=%d", N, C, V, chunk);
        gc_expect_close(what, lp, lp_r, N, 1e-5);
        snprintf(what, sizeof what, "lmhead ent N=%d C=%d V=%d chunk=%d", N, C, V, chunk);
        gc_expect_close(what, en, en_r, N, 1e-5);
        snprintf(what, sizeof what, "lmhead lse N=%d C=%d V=%d chunk=%d", N, C, V, chunk);
        gc_expect_close(what, ls, ls_r, N, 1e-5);
        int zeros = 1;
        for (int n = 0; n < N; n++)
            if (target[n] < 0 && (lp[n] != 0 || en[n] != 0 || ls[n] != 0)) zeros = 0;
        T_TRUE(zeros);
        al_lmhead_forward(lp2, en2, ls2, NULL, h, w, target, N, C, V, inv_temp, 0.0f, scratch, chunk);
        expect_same("lmhead fwd repeat logp", lp, lp2, N);
        expect_same("lmhead fwd repeat ent", en, en2, N);

        float *dlogp = frand(N, 600 + s, 1.0f), *dent = frand(N, 700 + s, 1.0f);
        float *dh = frand((size_t)N * C, 800, 0.1f), *dw = frand((size_t)V * C, 801, 0.1f);
        float *dh_r = fcopy(dh, (size_t)N * C), *dw_r = fcopy(dw, (size_t)V * C);
        float *dh2 = fcopy(dh, (size_t)N * C), *dw2 = fcopy(dw, (size_t)V * C);
        al_lmhead_backward(dh, dw, dlogp, dent, h, w, target, ls, en, N, C, V, inv_temp, 0.0f,
                           scratch, chunk);
        lmhead_backward_naive(dh_r, dw_r, dlogp, dent, h, w, target, N, C, V, inv_temp);
        snprintf(what, sizeof what, "lmhead dh N=%d C=%d V=%d chunk=%d", N, C, V, chunk);
        gc_expect_close(what, dh, dh_r, (size_t)N * C, 1e-4);
        snprintf(what, sizeof what, "lmhead dw N=%d C=%d V=%d chunk=%d", N, C, V, chunk);
        gc_expect_close(what, dw, dw_r, (size_t)V * C, 1e-4);
        al_lmhead_backward(dh2, dw2, dlogp, dent, h, w, target, ls, en, N, C, V, inv_temp, 0.0f,
                           scratch, chunk);
        expect_same("lmhead bwd repeat dh", dh, dh2, (size_t)N * C);
        expect_same("lmhead bwd repeat dw", dw, dw2, (size_t)V * C);
        /* dh only / dw only give the same pieces */
        float *dh3 = fcopy(dh_r, (size_t)N * C), *dw3 = fcopy(dw_r, (size_t)V * C);
        memcpy(dh3, dh2, (size_t)N * C * sizeof(float));
        memcpy(dw3, dw2, (size_t)V * C * sizeof(float));
        al_lmhead_backward(dh3, NULL, dlogp, dent, h, w, target, ls, en, N, C, V, inv_temp, 0.0f,
                           scratch, chunk);
        al_lmhead_backward(NULL, dw3, dlogp, dent, h, w, target, ls, en, N, C, V, inv_temp, 0.0f,
                           scratch, chunk);
        al_lmhead_backward(dh2, dw2, dlogp, dent, h, w, target, ls, en, N, C, V, inv_temp, 0.0f,
                           scratch, chunk);
        expect_same("lmhead bwd dh alone", dh3, dh2, (size_t)N * C);
        expect_same("lmhead bwd dw alone", dw3, dw2, (size_t)V * C);

        free(target);
        al_free(h); al_free(w); al_free(scratch); al_free(lp); al_free(en); al_free(ls);
        al_free(lp_r); al_free(en_r); al_free(ls_r); al_free(lp2); al_free(en2); al_free(ls2);
        al_free(dlogp); al_free(dent); al_free(dh); al_free(dw); al_free(dh_r); al_free(dw_r);
        al_free(dh2); al_free(dw2); al_free(dh3); al_free(dw3);
    }
}

/* The head in one chunk (model.c gives a trained head up to 2C rows): the
 * forward says it ran one chunk, and the backward reusing the logits it
 * left in scratch gives the bits of the backward that recomputes them;
 * against the same head in chunks of 7 rows (other product shapes, the
 * weight gradient summed in other pieces) within fp32 rounding; fp32 and
 * bf16. */
static void test_lmhead_one_chunk(void) {
    enum { N = 96, C = 64, V = 1031, SMALL = 7 };
    float inv_temp = 1.0f / 0.7f;
    int32_t target[N];
    int valid = 0;
    for (int n = 0; n < N; n++) {
        target[n] = n % 4 == 1 ? -1 : (n * 131 + 5) % V;
        valid += target[n] >= 0;
    }
    target[N - 1] = -1;
    float *h = frand((size_t)N * C, 1400, 1.0f), *w = frand((size_t)V * C, 1500, 0.5f);
    uint16_t *w16 = hbuf((size_t)V * C);
    al_bf16_round(w16, w, (size_t)V * C);
    float *scratch = fbuf((size_t)N * (C + V));
    uint16_t *s16 = hbuf((size_t)N * (C + V));
    float *dlogp = frand(N, 1600, 1.0f), *dent = frand(N, 1700, 1.0f);
    float lp[N], en[N], ls[N], lp7[N], en7[N], ls7[N];
    for (int bf = 0; bf < 2; bf++) {
        const uint16_t *w_h = bf ? w16 : NULL;
        float *dh = fbuf((size_t)N * C), *dw = fbuf((size_t)V * C);
        float *dh_r = fbuf((size_t)N * C), *dw_r = fbuf((size_t)V * C);
        float *dh7 = fbuf((size_t)N * C), *dw7 = fbuf((size_t)V * C);
        int k7 = bf ? al_lmhead_forward_bf16(lp7, en7, ls7, NULL, h, w16, target, N, C, V, inv_temp, 0.0f,
                                             scratch, s16, SMALL)
                    : al_lmhead_forward(lp7, en7, ls7, NULL, h, w, target, N, C, V, inv_temp, 0.0f,
                                        scratch, SMALL);
        T_EQ_INT(k7, (valid + SMALL - 1) / SMALL);
        if (bf) al_lmhead_backward_bf16(dh7, dw7, dlogp, dent, h, w16, target, ls7, en7, N, C, V, inv_temp,
                                        0.0f, scratch, s16, SMALL);
        else al_lmhead_backward(dh7, dw7, dlogp, dent, h, w, target, ls7, en7, N, C, V, inv_temp, 0.0f,
                                scratch, SMALL);
        /* one chunk: recomputed, then reused */
        int k1 = bf ? al_lmhead_forward_bf16(lp, en, ls, NULL, h, w16, target, N, C, V, inv_temp, 0.0f,
                                             scratch, s16, N)
                    : al_lmhead_forward(lp, en, ls, NULL, h, w, target, N, C, V, inv_temp, 0.0f, scratch, N);
        T_EQ_INT(k1, 1);
        if (bf) al_lmhead_backward_bf16(dh_r, dw_r, dlogp, dent, h, w16, target, ls, en, N, C, V, inv_temp,
                                        0.0f, scratch, s16, N);
        else al_lmhead_backward(dh_r, dw_r, dlogp, dent, h, w, target, ls, en, N, C, V, inv_temp, 0.0f,
                                scratch, N);
        if (bf) al_lmhead_forward_bf16(lp, en, ls, NULL, h, w16, target, N, C, V, inv_temp, 0.0f, scratch,
                                       s16, N);
        else al_lmhead_forward(lp, en, ls, NULL, h, w, target, N, C, V, inv_temp, 0.0f, scratch, N);
        al_lmhead_backward_reuse(dh, dw, dlogp, dent, h, w, w_h, target, ls, en, N, C, V, inv_temp, scratch,
                                 s16, N);
        expect_same(bf ? "bf16 one chunk: reused dh" : "one chunk: reused dh", dh, dh_r, (size_t)N * C);
        expect_same(bf ? "bf16 one chunk: reused dw" : "one chunk: reused dw", dw, dw_r, (size_t)V * C);
        /* the logits of 96 rows and of 7 are products of other shapes: the
         * matrix library may block them otherwise (another build, another
         * CPU), so the same to fp32 rounding, not bit for bit */
        gc_expect_close(bf ? "bf16 one chunk vs 7 rows: logp" : "one chunk vs 7 rows: logp", lp, lp7, N, 1e-6);
        gc_expect_close(bf ? "bf16 one chunk vs 7 rows: dh" : "one chunk vs 7 rows: dh", dh, dh7,
                        (size_t)N * C, 1e-5);
        gc_expect_close(bf ? "bf16 one chunk vs 7 rows: dw" : "one chunk vs 7 rows: dw", dw, dw7,
                        (size_t)V * C, 1e-5);
        al_free(dh); al_free(dw); al_free(dh_r); al_free(dw_r); al_free(dh7); al_free(dw7);
    }
    int32_t none[N];
    for (int n = 0; n < N; n++) none[n] = -1;
    T_EQ_INT(al_lmhead_forward(lp, en, ls, NULL, h, w, none, N, C, V, 1.0f, 0.0f, scratch, N), 0);
    al_free(h); al_free(w); al_free(w16); al_free(scratch); al_free(s16); al_free(dlogp); al_free(dent);
}

/* The forward fused with the backward of a frozen head (no dw) against
 * the forward and then the backward: the same log-probs, lse, hits and dh
 * bit for bit, in chunks of 7 rows (some gathered past rows without a
 * target, others consecutive), fp32 and bf16; dh accumulates. */
static void test_lmhead_fused(void) {
    enum { N = 40, C = 24, V = 203, CH = 7 };
    float inv_temp = 1.0f / 0.7f;
    int32_t target[N];
    for (int n = 0; n < N; n++) target[n] = n % 5 == 2 || (n >= 20 && n < 23) ? -1 : (n * 37 + 3) % V;
    float *h = frand((size_t)N * C, 1800, 1.0f), *w = frand((size_t)V * C, 1900, 0.5f);
    float *dlogp = frand(N, 2000, 1.0f), *dh0 = frand((size_t)N * C, 2100, 1.0f);
    uint16_t *w16 = hbuf((size_t)V * C);
    al_bf16_round(w16, w, (size_t)V * C);
    float *scratch = fbuf((size_t)CH * (C + V));
    uint16_t *s16 = hbuf((size_t)CH * (C + V));
    for (int bf = 0; bf < 2; bf++) {
        float lp[N], ls[N], en[N], lp_f[N], ls_f[N], en_f[N];
        uint8_t hit[N], hit_f[N];
        float *dh = fbuf((size_t)N * C), *dh_f = fbuf((size_t)N * C);
        memcpy(dh, dh0, (size_t)N * C * sizeof *dh);
        memcpy(dh_f, dh0, (size_t)N * C * sizeof *dh);
        int k = bf ? al_lmhead_forward_bf16(lp, en, ls, hit, h, w16, target, N, C, V, inv_temp, 0.0f, scratch,
                                            s16, CH)
                   : al_lmhead_forward(lp, en, ls, hit, h, w, target, N, C, V, inv_temp, 0.0f, scratch, CH);
        if (bf) al_lmhead_backward_bf16(dh, NULL, dlogp, NULL, h, w16, target, ls, en, N, C, V, inv_temp, 0.0f,
                                        scratch, s16, CH);
        else al_lmhead_backward(dh, NULL, dlogp, NULL, h, w, target, ls, en, N, C, V, inv_temp, 0.0f, scratch, CH);
        int kf = al_lmhead_forward_fused(lp_f, en_f, ls_f, hit_f, dh_f, dlogp, h, w, bf ? w16 : NULL, target, N,
                                         C, V, inv_temp, scratch, s16, CH);
        T_EQ_INT(kf, k);
        T_TRUE(k > 2);
        const char *what = bf ? "bf16 fused" : "fused";
        T_REPORT_(!memcmp(lp, lp_f, sizeof lp) && !memcmp(ls, ls_f, sizeof ls) && !memcmp(en, en_f, sizeof en) &&
                      !memcmp(hit, hit_f, sizeof hit),
                  "%s: forward outputs differ", what);
        expect_same(bf ? "bf16 fused: dh" : "fused: dh", dh_f, dh, (size_t)N * C);
        T_REPORT_(memcmp(dh, dh0, (size_t)N * C * sizeof *dh) != 0, "%s: no gradient", what);
        al_free(dh);
        al_free(dh_f);
    }
    al_free(h); al_free(w); al_free(w16); al_free(scratch); al_free(s16); al_free(dlogp); al_free(dh0);
}

static void test_embed_vs_serial(void) {
    /* large enough to split the columns over the pool; many repeated ids */
    int N = 300, C = 203, V = 17, T = 50;
    int32_t *ids = calloc((size_t)N, sizeof(int32_t)), *pos = calloc((size_t)N, sizeof(int32_t));
    AL_ASSERT(ids && pos);
    for (int n = 0; n < N; n++) {
        ids[n] = (n * 7) % V;
        pos[n] = n % T;
    }
    float *wte = frand((size_t)V * C, 900, 1.0f), *wpe = frand((size_t)T * C, 901, 1.0f);
    float *out = fbuf((size_t)N * C), *dout = frand((size_t)N * C, 902, 1.0f);
    al_embed_forward(out, ids, pos, wte, wpe, N, C);
    int ok = 1;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            if (out[(size_t)n * C + c] != wte[(size_t)ids[n] * C + c] + wpe[(size_t)pos[n] * C + c])
                ok = 0;
    T_TRUE(ok);
    float *dwte = frand((size_t)V * C, 903, 1.0f), *dwpe = frand((size_t)T * C, 904, 1.0f);
    float *dwte_s = fcopy(dwte, (size_t)V * C), *dwpe_s = fcopy(dwpe, (size_t)T * C);
    al_embed_backward(dwte, dwpe, dout, ids, pos, N, C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            dwte_s[(size_t)ids[n] * C + c] += dout[(size_t)n * C + c];
            dwpe_s[(size_t)pos[n] * C + c] += dout[(size_t)n * C + c];
        }
    /* same additions in the same order: bit-identical to the serial loop */
    expect_same("embed dwte vs serial", dwte, dwte_s, (size_t)V * C);
    expect_same("embed dwpe vs serial", dwpe, dwpe_s, (size_t)T * C);
    free(ids);
    free(pos);
    al_free(wte); al_free(wpe); al_free(out); al_free(dout);
    al_free(dwte); al_free(dwpe); al_free(dwte_s); al_free(dwpe_s);
}

/* A single row (decoding) goes through sgemv: every transpose, strides,
 * alpha and beta, against a plain loop. */
static void test_gemm_one_row(void) {
    enum { K = 7, N = 5, LD = 9 };
    float A[K * LD], B[K * LD], C[LD], want[N];
    gc_fill(A, K * LD, 31, 1.0f);
    gc_fill(B, K * LD, 32, 1.0f);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gc_fill(C, LD, 33, 1.0f);
            for (int j = 0; j < N; j++) {
                double acc = 0;
                for (int k = 0; k < K; k++) {
                    float a = ta ? A[k * LD] : A[k];
                    float b = tb ? B[j * LD + k] : B[k * LD + j];
                    acc += (double)a * b;
                }
                want[j] = (float)(0.5 * acc + 2.0 * C[j]);
            }
            al_gemm(ta, tb, 1, N, K, 0.5f, A, LD, B, LD, 2.0f, C, LD);
            for (int j = 0; j < N; j++) T_NEAR(C[j], want[j], 1e-5);
        }
}

/* hit marks rows whose target is the greedy argmax, in both versions. */
static void test_lmhead_hits(void) {
    /* C = 1, h = 1: the logits are the weights themselves */
    float h[3] = {1, 1, 1}, w[5] = {0.5f, 2.0f, -1.0f, 1.5f, 0.0f};
    int32_t target[3] = {1, 3, -1};
    float logp[3], lse[3], scratch[2 * (1 + 5)];
    uint8_t hit[3] = {7, 7, 7}, hit_ref[3] = {7, 7, 7};
    al_lmhead_forward(logp, NULL, lse, hit, h, w, target, 3, 1, 5, 1.0f, 0.0f, scratch, 2);
    al_lmhead_forward_ref(logp, NULL, lse, hit_ref, h, w, target, 3, 1, 5, 1.0f, 0.0f);
    T_EQ_INT(hit[0], 1);
    T_EQ_INT(hit[1], 0);
    T_EQ_INT(hit[2], 0);
    T_TRUE(memcmp(hit, hit_ref, 3) == 0);
}

int main(void) {
    T_OK(al_pool_init(2));
    T_EQ_INT(al_pool_threads(), 2);

    test_matmul_hand();
    test_gemm_hand();
    test_lmhead_hand();
    test_lmhead_softmax_bits();
    test_embed_hand();
    test_elementwise();

    test_matmul_grad();
    test_lmhead_grad();
    test_lmhead_softcap();
    test_embed_grad();

    test_gemm_split();
    test_gemm_plan();
    test_gemm_onednn_vs_openblas();
    test_bf16_round();
    test_gemm_bf16();
    test_gemm_bf16_packed();
    test_gemm_bf16_row_bits();
    test_matmul_bf16_vs_ref();
    test_matmul_wt();
    test_matvec_ht();
    test_lmhead_bf16();
    test_embed_bf16();
    test_matmul_vs_ref();
    test_lmhead_vs_ref();
    test_lmhead_one_chunk();
    test_lmhead_fused();
    test_embed_vs_serial();

    al_pool_shutdown();
    test_gemm_one_row();
    test_lmhead_hits();
    return t_done();
}

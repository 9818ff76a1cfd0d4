/* Tests for FlashAttention-2 (al_flash_attention_forward/backward, ops.h):
 * the tiled online-softmax forward and the backward that recomputes the
 * probabilities from the saved log-sum-exp, against today's kernel that
 * stores them (al_attention_forward/backward, fp32: 1e-5), on sizes that
 * cross the 64-row blocks and 64-key tiles, with grouped-query heads,
 * padding, packed segments, a sliding window, a soft-cap and a score scale;
 * central differences on odd sizes (tests/gradcheck.h); the bf16 variant
 * against the fp32 one within the bound bf16 operands give; repeated runs
 * bit-identical; accumulation into the gradients. The bf16 tile products
 * (al_t16_*) against al_gemm_bf16_ref, on vdpbf16ps and the portable loops,
 * through every packer. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "al.h"
#include "compute/ops.h"
#include "compute/pool.h"
#include "gradcheck.h"
#include "t.h"

static float *fbuf(size_t n) {
    float *p = al_calloc(n ? n : 1, sizeof(float));
    AL_ASSERT(p);
    return p;
}

typedef struct shape {
    const char *name;
    int B, T, NH, NKV, HD;
    al_attn_opts o;
    int segs; /* 0: none; 1: row 0 packed in three examples, row 1 padded at the end */
} shape;

static int32_t *make_seg(const shape *s) {
    if (!s->segs) return NULL;
    int32_t *seg = calloc((size_t)s->B * s->T, sizeof *seg);
    AL_ASSERT(seg);
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T; t++)
            seg[b * s->T + t] = b % 2 == 0 ? 1 + (t >= s->T / 3) + (t >= s->T / 2 + 5)
                                           : (t < s->T - 11 ? 1 : 0);
    return seg;
}

/* Flash forward and backward against today's kernel: outputs, and dq, dk,
 * dv accumulated onto the same random start. */
static void against_today(const shape *s) {
    const int ld = (s->NH + 2 * s->NKV) * s->HD + 1, OC = s->NH * s->HD;
    const size_t N = (size_t)s->B * s->T, nx = N * ld, no = N * OC;
    int32_t *seg = make_seg(s);
    float *qkv = fbuf(nx), *dout = fbuf(no);
    gc_fill(qkv, nx, 11, 1.5f);
    gc_fill(dout, no, 12, 1.0f);
    const float *q = qkv, *k = qkv + OC, *v = k + s->NKV * s->HD;
    float *out = fbuf(no), *outr = fbuf(no), *lse = fbuf(N * s->NH);
    float *att = fbuf((size_t)s->B * s->NH * s->T * s->T);
    al_flash_attention_forward(out, lse, q, k, v, ld, seg, s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 0);
    al_attention_forward(outr, att, q, k, v, ld, seg, s->B, s->T, s->NH, s->NKV, s->HD, &s->o);
    char what[128];
    snprintf(what, sizeof what, "%s: flash out vs today's", s->name);
    gc_expect_close(what, out, outr, no, 1e-5);
    /* lse: the log of each row's softmax denominator; P = exp(s - lse) sums to 1 is
     * checked through the gradients below */
    float *d = fbuf(nx), *dr = fbuf(nx);
    gc_fill(d, nx, 13, 1.0f);
    memcpy(dr, d, nx * sizeof(float));
    float *dq = d, *dk = d + OC, *dv = dk + s->NKV * s->HD;
    float *rq = dr, *rk = dr + OC, *rv = rk + s->NKV * s->HD;
    al_flash_attention_backward(dq, dk, dv, dout, out, lse, q, k, v, ld, seg, s->B, s->T, s->NH,
                                s->NKV, s->HD, &s->o, 0, 0);
    al_attention_backward(rq, rk, rv, dout, att, q, k, v, ld, seg, s->B, s->T, s->NH, s->NKV, s->HD,
                          &s->o);
    snprintf(what, sizeof what, "%s: flash dq|dk|dv vs today's", s->name);
    gc_expect_close(what, d, dr, nx, 1e-5);
    /* determinism */
    float *out2 = fbuf(no), *lse2 = fbuf(N * s->NH);
    al_flash_attention_forward(out2, lse2, q, k, v, ld, seg, s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 0);
    T_TRUE(memcmp(out, out2, no * sizeof(float)) == 0 && memcmp(lse, lse2, N * s->NH * sizeof(float)) == 0);
    al_free(out2); al_free(lse2);

    /* bf16: within what bf16 operands allow. The scores move by at most
     * E_i = 2^-7 scale max_j sum_d |q_id k_jd| (both rounded), which moves
     * log p by 2 E_i; P and V rounded add 2^-7 relative; so
     * |out - out_fp32| <= (2^-7 + 2.2 E_i) max_j |v_j| per row, doubled for
     * fp32 rounding and the tanh of a cap. Gradients: relative L2 4e-2. */
    float *o16 = fbuf(no), *l16 = fbuf(N * s->NH);
    al_flash_attention_forward(o16, l16, q, k, v, ld, seg, s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 1);
    {   /* the rows rounded as they are written: al_bf16_round's bits of the output */
        float *o3 = fbuf(no), *l3 = fbuf(N * s->NH);
        uint16_t *h3 = al_calloc(no, sizeof *h3), *hr = al_calloc(no, sizeof *hr);
        AL_ASSERT(h3 && hr);
        al_flash_attention_forward_bf16(o3, h3, l3, q, k, v, ld, seg, s->B, s->T, s->NH, s->NKV, s->HD,
                                        &s->o, 1);
        al_bf16_round(hr, o16, no);
        T_TRUE(memcmp(o3, o16, no * sizeof(float)) == 0 && memcmp(h3, hr, no * sizeof *hr) == 0);
        al_free(o3); al_free(l3); al_free(h3); al_free(hr);
    }
    float scale = s->o.scale > 0 ? s->o.scale : 1.0f / sqrtf((float)s->HD);
    size_t bad = 0;
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++) {
            int kh = h / (s->NH / s->NKV);
            for (int i = 0; i < s->T; i++) {
                const float *qi = q + ((size_t)b * s->T + i) * ld + (size_t)h * s->HD;
                double E = 0, vmax = 0;
                for (int j = 0; j <= i; j++) {
                    const float *kj = k + ((size_t)b * s->T + j) * ld + (size_t)kh * s->HD;
                    const float *vj = v + ((size_t)b * s->T + j) * ld + (size_t)kh * s->HD;
                    double a = 0;
                    for (int e = 0; e < s->HD; e++) {
                        a += fabs((double)qi[e] * kj[e]);
                        vmax = fmax(vmax, fabs(vj[e]));
                    }
                    E = fmax(E, a);
                }
                E *= 0x1p-7 * scale;
                double tol = 2.0 * (0x1p-7 + 2.2 * E) * vmax;
                const float *x1 = o16 + ((size_t)b * s->T + i) * OC + (size_t)h * s->HD;
                const float *x2 = out + ((size_t)b * s->T + i) * OC + (size_t)h * s->HD;
                for (int e = 0; e < s->HD; e++) bad += !(fabs((double)x1[e] - x2[e]) <= tol);
            }
        }
    T_REPORT_(bad == 0, "%s: bf16 out off the bf16 bound in %zu places", s->name, bad);
    float *d16 = fbuf(nx), *dz = fbuf(nx);
    al_flash_attention_backward(d16, d16 + OC, d16 + OC + s->NKV * s->HD, dout, o16, l16, q, k, v,
                                ld, seg, s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 1, 0);
    al_flash_attention_backward(dz, dz + OC, dz + OC + s->NKV * s->HD, dout, out, lse, q, k, v, ld,
                                seg, s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 0, 0);
    T_REPORT_(gc_rel_l2(d16, dz, nx) <= 4e-2, "%s: bf16 gradients off by %.3g", s->name,
              gc_rel_l2(d16, dz, nx));
    /* q, k, v and the output kept in bf16 (a bf16 training step's copies):
     * the bits of the fp32-input bf16 backward on the same values widened */
    size_t n_o = (size_t)s->B * s->T * OC;
    uint16_t *oh = al_calloc(n_o, sizeof *oh), *xh = al_calloc(nx, sizeof *xh);
    al_bf16_round(oh, o16, n_o);
    al_bf16_widen(o16, oh, n_o);
    al_bf16_round(xh, qkv, nx);
    float *xw = fbuf(nx), *dh = fbuf(nx);
    al_bf16_widen(xw, xh, nx);
    memset(d16, 0, nx * sizeof(float));
    const size_t ko = (size_t)OC, vo = ko + (size_t)s->NKV * s->HD;
    al_flash_attention_backward(d16, d16 + ko, d16 + vo, dout, o16, l16, xw, xw + ko, xw + vo, ld, seg,
                                s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 1, 0);
    al_flash_attention_backward_h(dh, dh + ko, dh + vo, dout, oh, l16, xh, xh + ko, xh + vo, ld, seg,
                                  s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 0);
    T_REPORT_(memcmp(dh, d16, nx * sizeof(float)) == 0, "%s: backward from the bf16 inputs differs", s->name);
    {   /* fresh: gradients over garbage, each task zeroing its part first: the bits
         * of the accumulating kernels on zeros, columns past q|k|v (ld) untouched */
        const size_t w = (size_t)OC + 2 * (size_t)s->NKV * s->HD;
        float *fz = fbuf(nx), *fg = fbuf(nx);
        for (int bf = 0; bf < 3; bf++) {
            gc_fill(fg, nx, 14 + bf, 3.0f);
            memcpy(fz, fg, nx * sizeof(float));
            for (size_t r = 0; r < N; r++) memset(fz + r * ld, 0, w * sizeof(float));
            if (bf == 2) {
                al_flash_attention_backward_h(fz, fz + ko, fz + vo, dout, oh, l16, xh, xh + ko, xh + vo, ld,
                                              seg, s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 0);
                al_flash_attention_backward_h(fg, fg + ko, fg + vo, dout, oh, l16, xh, xh + ko, xh + vo, ld,
                                              seg, s->B, s->T, s->NH, s->NKV, s->HD, &s->o, 1);
            } else {
                al_flash_attention_backward(fz, fz + ko, fz + vo, dout, out, lse, q, k, v, ld, seg, s->B,
                                            s->T, s->NH, s->NKV, s->HD, &s->o, bf, 0);
                al_flash_attention_backward(fg, fg + ko, fg + vo, dout, out, lse, q, k, v, ld, seg, s->B,
                                            s->T, s->NH, s->NKV, s->HD, &s->o, bf, 1);
            }
            T_REPORT_(memcmp(fz, fg, nx * sizeof(float)) == 0, "%s: fresh backward (%d) differs", s->name,
                      bf);
        }
        al_free(fz); al_free(fg);
    }
    {   /* the forward from q, k, v in bf16: the bits of the fp32-input one on them widened */
        float *o4 = fbuf(no), *l4 = fbuf(N * s->NH), *o5 = fbuf(no), *l5 = fbuf(N * s->NH);
        uint16_t *h4 = al_calloc(no, sizeof *h4), *h5 = al_calloc(no, sizeof *h5);
        AL_ASSERT(h4 && h5);
        al_flash_attention_forward_bf16(o4, h4, l4, xw, xw + ko, xw + vo, ld, seg, s->B, s->T, s->NH,
                                        s->NKV, s->HD, &s->o, 1);
        al_flash_attention_forward_h(o5, h5, l5, xh, xh + ko, xh + vo, ld, seg, s->B, s->T, s->NH, s->NKV,
                                     s->HD, &s->o);
        T_REPORT_(memcmp(o4, o5, no * sizeof(float)) == 0 && memcmp(h4, h5, no * sizeof *h4) == 0 &&
                      memcmp(l4, l5, N * s->NH * sizeof(float)) == 0,
                  "%s: forward from the bf16 inputs differs", s->name);
        al_free(o4); al_free(l4); al_free(o5); al_free(l5); al_free(h4); al_free(h5);
    }
    al_free(oh); al_free(xh); al_free(xw); al_free(dh);
    al_free(o16); al_free(l16); al_free(d16); al_free(dz);
    al_free(qkv); al_free(dout); al_free(out); al_free(outr); al_free(lse); al_free(att);
    al_free(d); al_free(dr);
    free(seg);
}

/* The block's first key (al_attention_forward's: the least key any of its
 * rows [i0, i1) sees): the key tiles start there. */
static int first_key_of(const int32_t *sg, int i0, int i1, int win) {
    int lo = i0;
    for (int i = i0; i < i1; i++)
        for (int j = win ? (i - win + 1 > 0 ? i - win + 1 : 0) : 0; j < lo; j++)
            if (!sg || sg[j] == sg[i]) {
                lo = j;
                break;
            }
    return lo;
}

/* One row's forward has the same bits whether its block's rows go through
 * a key tile together (4 at a time, where the tile is wholly visible to
 * them) or one by one: row i of the whole sequence against the last row of
 * the sequence cut after it (alone where its block's rows are not a
 * multiple of 4), wherever the cut leaves the block's first key tile where
 * it was. mode 1: bf16 products; 2: bf16 inputs (in fp32 the tile products
 * are OpenBLAS's, whose bits depend on the number of rows). */
static void rows_case(const shape *s, int mode) {
    const int B = s->B, T = s->T, NH = s->NH, HD = s->HD, ld = NH * HD, OC = NH * HD;
    const size_t nx = (size_t)B * T * ld, no = (size_t)B * T * OC;
    int32_t *seg = make_seg(s);
    float *x[3], *cx[3], *out = fbuf(no), *lse = fbuf((size_t)B * NH * T), *cout = fbuf(no),
                         *clse = fbuf((size_t)B * NH * T);
    uint16_t *h[3], *ch[3], *o16 = al_calloc(no, 2), *co16 = al_calloc(no, 2);
    int32_t *cseg = seg ? calloc(nx, sizeof *cseg) : NULL;
    AL_ASSERT(o16 && co16 && (!seg || cseg));
    for (int m = 0; m < 3; m++) {
        x[m] = fbuf(nx);
        cx[m] = fbuf(nx);
        h[m] = al_calloc(nx, 2);
        ch[m] = al_calloc(nx, 2);
        AL_ASSERT(h[m] && ch[m]);
        gc_fill(x[m], nx, 71 + m, m == 2 ? 1.0f : 2.5f);
        al_bf16_round(h[m], x[m], nx);
    }
    size_t rows = 0, bad = 0;
    for (int i = 0; i < T; i++) {
        const int Tc = i + 1, i0 = i / 64 * 64;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Tc; t++) {
                const size_t from = ((size_t)b * T + t) * ld, to = ((size_t)b * Tc + t) * ld;
                for (int m = 0; m < 3; m++) {
                    memcpy(cx[m] + to, x[m] + from, (size_t)ld * sizeof(float));
                    memcpy(ch[m] + to, h[m] + from, (size_t)ld * 2);
                }
                if (seg) cseg[(size_t)b * Tc + t] = seg[(size_t)b * T + t];
            }
        if (i == 0) { /* the whole sequence, once */
            if (mode == 2)
                al_flash_attention_forward_h(out, o16, lse, h[0], h[1], h[2], ld, seg, B, T, NH, s->NKV, HD, &s->o);
            else
                al_flash_attention_forward_bf16(out, mode ? o16 : NULL, lse, x[0], x[1], x[2], ld, seg, B, T, NH,
                                                s->NKV, HD, &s->o, mode);
        }
        if (mode == 2)
            al_flash_attention_forward_h(cout, co16, clse, ch[0], ch[1], ch[2], ld, cseg, B, Tc, NH, s->NKV, HD,
                                         &s->o);
        else
            al_flash_attention_forward_bf16(cout, mode ? co16 : NULL, clse, cx[0], cx[1], cx[2], ld, cseg, B, Tc,
                                            NH, s->NKV, HD, &s->o, mode);
        for (int b = 0; b < B; b++) {
            const int32_t *sg = seg ? seg + (size_t)b * T : NULL, *csg = seg ? cseg + (size_t)b * Tc : NULL;
            const int i1 = i0 + 64 < T ? i0 + 64 : T;
            if (first_key_of(sg, i0, i1, s->o.window) != first_key_of(csg, i0, Tc, s->o.window)) continue;
            rows++;
            const size_t r = ((size_t)b * T + i) * OC, cr = ((size_t)b * Tc + i) * OC;
            int off = memcmp(out + r, cout + cr, (size_t)OC * sizeof(float)) != 0 ||
                      (mode && memcmp(o16 + r, co16 + cr, (size_t)OC * 2) != 0);
            for (int hh = 0; hh < NH; hh++)
                off |= memcmp(&lse[((size_t)b * NH + hh) * T + i], &clse[((size_t)b * NH + hh) * Tc + i],
                              sizeof(float)) != 0;
            bad += off;
        }
    }
    T_REPORT_(bad == 0 && rows >= (size_t)T, "%s mode %d: %zu of %zu rows differ cut after them", s->name, mode,
              bad, rows);
    for (int m = 0; m < 3; m++) {
        al_free(x[m]); al_free(cx[m]); al_free(h[m]); al_free(ch[m]);
    }
    al_free(out); al_free(lse); al_free(cout); al_free(clse); al_free(o16); al_free(co16);
    free(seg);
    free(cseg);
}

static void test_rows(void) {
    static const shape shapes[] = {
        {"gqa+segments", 2, 150, 4, 2, 16, {0, 0, 0}, 1}, /* padding in row 1 */
        {"gqa+window", 1, 139, 3, 1, 8, {0, 0, 37}, 1},
        {"head 64", 1, 135, 2, 2, 64, {0, 0, 0}, 0},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int mode = 1; mode < 3; mode++) rows_case(&shapes[i], mode);
}

static void test_against_today(void) {
    static const shape shapes[] = {
        {"mha", 2, 150, 2, 2, 16, {0, 0, 0}, 0},
        {"gqa+segments", 2, 150, 4, 2, 16, {0, 0, 0}, 1},
        {"gqa+window", 1, 200, 3, 1, 8, {0, 0, 37}, 1},
        {"softcap+scale", 2, 70, 2, 1, 32, {0.3f, 5.0f, 0}, 1},
        {"one token", 3, 1, 2, 2, 4, {0, 0, 0}, 0},
        {"head 128", 1, 65, 2, 2, 128, {0, 0, 0}, 0},
        {"head 80, odd", 1, 67, 2, 1, 80, {0, 0, 0}, 1},
        {"head 5", 2, 9, 2, 2, 5, {0, 0, 0}, 0},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) against_today(&shapes[i]);
}

/* ---- the bf16 tile products (al_t16_*, ops.h) ---- */

/* C = alpha A B + C0 through each packer, on the portable loops and (where
 * the CPU has it) vdpbf16ps, against al_gemm_bf16_ref on the same rounded
 * values: the two differ only by fp32 accumulation, (K + 2) 2^-24 of
 * |alpha| sum_k |a_ik b_kj| + |C0| (each add rounds by 2^-24 at most, the
 * running sum bounded by the absolute sum). Columns past N stay untouched. */
static void tile_case(int M, int N, int K, uint64_t seed) {
    const int ldc = N + 3;
    const size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * ldc;
    float *a = fbuf(na), *at = fbuf(na), *bm = fbuf(nb), *bt = fbuf(nb), *c0 = fbuf(nc);
    gc_fill(a, na, seed, 2.0f);
    gc_fill(bm, nb, seed + 1, 2.0f);
    gc_fill(c0, nc, seed + 2, 1.0f);
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) at[(size_t)k * M + i] = a[(size_t)i * K + k];
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) bt[(size_t)j * K + k] = bm[(size_t)k * N + j];
    uint32_t *pa = calloc(AL_T16_A_SIZE(M, K), 4), *pat = calloc(AL_T16_A_SIZE(M, K), 4);
    uint32_t *pb = calloc(AL_T16_B_SIZE(K, N), 4), *pbt = calloc(AL_T16_B_SIZE(K, N), 4);
    uint16_t *ra = calloc(na + 1, 2), *rb = calloc(nb + 1, 2);
    AL_ASSERT(pa && pat && pb && pbt && ra && rb);
    al_t16_pack_a(pa, a, K, M, K);
    al_t16_pack_at(pat, at, M, M, K);
    al_t16_pack_b(pb, bm, N, K, N);
    al_t16_pack_bt(pbt, bt, K, K, N);
    T_TRUE(memcmp(pa, pat, AL_T16_A_SIZE(M, K) * 4) == 0);
    T_TRUE(memcmp(pb, pbt, AL_T16_B_SIZE(K, N) * 4) == 0);
    al_bf16_round(ra, a, na);
    al_bf16_round(rb, bm, nb);
    { /* the packers from bf16: the same words from the rounded values */
        uint16_t *rbt = calloc(nb + 1, 2);
        uint32_t *h = calloc(AL_T16_A_SIZE(M, K) + AL_T16_B_SIZE(K, N), 4);
        AL_ASSERT(rbt && h);
        al_bf16_round(rbt, bt, nb);
        memset(h, 0xff, AL_T16_A_SIZE(M, K) * 4); /* every word must be written */
        al_t16_pack_a_h(h, ra, K, M, K);
        T_TRUE(memcmp(h, pa, AL_T16_A_SIZE(M, K) * 4) == 0);
        memset(h, 0xff, AL_T16_B_SIZE(K, N) * 4); /* the pads too */
        al_t16_pack_b_h(h, rb, N, K, N);
        T_TRUE(memcmp(h, pb, AL_T16_B_SIZE(K, N) * 4) == 0);
        memset(h, 0xff, AL_T16_B_SIZE(K, N) * 4);
        al_t16_pack_bt_h(h, rbt, K, K, N);
        T_TRUE(memcmp(h, pbt, AL_T16_B_SIZE(K, N) * 4) == 0);
        free(rbt);
        free(h);
    }
    const float alpha = 0.75f;
    float *want = fbuf(nc), *got = fbuf(nc), *rows = fbuf(nc);
    memcpy(want, c0, nc * sizeof(float));
    al_gemm_bf16_ref(0, 0, M, N, K, alpha, ra, K, rb, N, 1.0f, want, ldc);
    for (int native = 0; native <= al_bf16_dp_cpu(); native++) {
        memcpy(got, c0, nc * sizeof(float));
        al_t16_gemm(got, ldc, native ? pa : pat, native ? pbt : pb, M, N, K, alpha, 1, native);
        size_t bad = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < ldc; j++) {
                const size_t e = (size_t)i * ldc + j;
                double abs = fabs(c0[e]);
                for (int k = 0; j < N && k < K; k++) {
                    float x;
                    uint16_t h[2] = {ra[(size_t)i * K + k], rb[(size_t)k * N + j]};
                    al_bf16_widen(&x, h, 1);
                    float y;
                    al_bf16_widen(&y, h + 1, 1);
                    abs += fabs((double)alpha * x * y);
                }
                double tol = j < N ? (K + 2) * 0x1p-24 * abs : 0.0;
                bad += !(fabs((double)got[e] - want[e]) <= tol);
            }
        T_REPORT_(bad == 0, "tile %dx%dx%d native=%d: %zu elements off", M, N, K, native, bad);
        /* a row's bits do not depend on its register block: whole blocks of 4 rows and 16 NV
         * columns store without masks (their accumulators kept in registers), the rest masked;
         * row by row (M = 1) every row takes the masked store */
        for (int acc = 0; acc <= 1; acc++) {
            memcpy(got, c0, nc * sizeof(float));
            memcpy(rows, c0, nc * sizeof(float));
            al_t16_gemm(got, ldc, pa, pbt, M, N, K, alpha, acc, native);
            for (int i = 0; i < M; i++)
                al_t16_gemm(rows + (size_t)i * ldc, ldc, pa + (size_t)i * ((K + 1) / 2), pbt, 1, N, K, alpha,
                            acc, native);
            T_REPORT_(memcmp(got, rows, nc * sizeof(float)) == 0,
                      "tile %dx%dx%d native=%d acc=%d: rows differ from the rows alone", M, N, K, native, acc);
        }
    }
    al_free(a); al_free(at); al_free(bm); al_free(bt); al_free(c0); al_free(want); al_free(got); al_free(rows);
    free(pa); free(pat); free(pb); free(pbt); free(ra); free(rb);
}

/* al_t16_gemm_tri on a causal diagonal tile (M = N = K): the elements it
 * must give have the bits of al_t16_gemm's, with A zero above (A_LOWER) or
 * below (A_UPPER) the diagonal, or only j <= i wanted (COLS_LE_ROW). */
static void tile_tri_case(int n, uint64_t seed) {
    const size_t nn = (size_t)n * n;
    float *a = fbuf(nn), *b = fbuf(nn), *c0 = fbuf(nn), *want = fbuf(nn), *got = fbuf(nn);
    gc_fill(a, nn, seed, 2.0f);
    gc_fill(b, nn, seed + 1, 2.0f);
    gc_fill(c0, nn, seed + 2, 1.0f);
    uint32_t *pa = calloc(AL_T16_A_SIZE(n, n), 4), *pb = calloc(AL_T16_B_SIZE(n, n), 4);
    AL_ASSERT(pa && pb);
    al_t16_pack_b(pb, b, n, n, n);
    for (int tri = AL_T16_COLS_LE_ROW; tri <= AL_T16_A_UPPER; tri++) {
        float *az = fbuf(nn);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++) {
                const int zero = (tri == AL_T16_A_LOWER && k > i) || (tri == AL_T16_A_UPPER && k < i);
                az[(size_t)i * n + k] = zero ? 0.0f : a[(size_t)i * n + k];
            }
        al_t16_pack_a(pa, az, n, n, n);
        for (int native = 0; native <= al_bf16_dp_cpu(); native++)
            for (int acc = 0; acc <= 1; acc++) {
                memcpy(want, c0, nn * sizeof(float));
                memcpy(got, c0, nn * sizeof(float));
                al_t16_gemm(want, n, pa, pb, n, n, n, 0.5f, acc, native);
                al_t16_gemm_tri(got, n, pa, pb, n, n, n, 0.5f, acc, native, tri);
                size_t bad = 0;
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < n; j++)
                        if (tri != AL_T16_COLS_LE_ROW || j <= i)
                            bad += memcmp(&got[(size_t)i * n + j], &want[(size_t)i * n + j], sizeof(float)) != 0;
                T_REPORT_(bad == 0, "tri %d tile %d native=%d acc=%d: %zu elements differ", tri, n, native, acc, bad);
            }
        al_free(az);
    }
    al_free(a); al_free(b); al_free(c0); al_free(want); al_free(got);
    free(pa); free(pb);
}

/* The transposing packers (pack_at, pack_bt, pack_bt_h) word by word
 * against their definitions (ops.h), from sources with a row stride wider
 * than the rows (odd for the bf16 one: pairs at any alignment), on sizes
 * with and without whole 16 x 16 blocks of words. */
static uint32_t pk(uint16_t lo, uint16_t hi) { return (uint32_t)lo | (uint32_t)hi << 16; }

static void packers_case(int M, int K, uint64_t seed) {
    const int ld = (M > K ? M : K) + 3, K2 = (K + 1) / 2, NP = AL_T16_NP(M);
    const size_t ns = (size_t)(M > K ? M : K) * ld;
    float *src = fbuf(ns);
    gc_fill(src, ns, seed, 2.0f);
    uint16_t *h = calloc(ns, 2);
    uint32_t *got = calloc(AL_T16_B_SIZE(K, M) + AL_T16_A_SIZE(M, K), 4);
    AL_ASSERT(h && got);
    al_bf16_round(h, src, ns);
    size_t bad = 0;
    /* pack_at: A (M rows of K2 pairs), A[m][k] = src[k * ld + m] */
    memset(got, 0xff, AL_T16_A_SIZE(M, K) * 4);
    al_t16_pack_at(got, src, ld, M, K);
    for (int m = 0; m < M; m++)
        for (int p = 0; p < K2; p++)
            bad += got[(size_t)m * K2 + p] != pk(h[(size_t)2 * p * ld + m], 2 * p + 1 < K ? h[(size_t)(2 * p + 1) * ld + m] : 0);
    /* pack_bt, pack_bt_h: B (K2 rows of NP pairs), B[k][n] = src[n * ld + k], here N = M */
    for (int from16 = 0; from16 <= 1; from16++) {
        memset(got, 0xff, AL_T16_B_SIZE(K, M) * 4);
        if (from16) al_t16_pack_bt_h(got, h, ld, K, M);
        else al_t16_pack_bt(got, src, ld, K, M);
        for (int p = 0; p < K2; p++)
            for (int n = 0; n < NP; n++) {
                const size_t r = (size_t)n * ld + 2 * p;
                const uint32_t want = n >= M ? 0 : pk(h[r], 2 * p + 1 < K ? h[r + 1] : 0);
                bad += got[(size_t)p * NP + n] != want;
            }
    }
    T_REPORT_(bad == 0, "packers %dx%d: %zu words off", M, K, bad);
    al_free(src);
    free(h);
    free(got);
}

static void test_tiles(void) {
    packers_case(64, 64, 51);    /* whole 16 x 16 blocks */
    packers_case(64, 32, 52);    /* a flash tile of the tiny shape's heads */
    packers_case(37, 45, 53);    /* blocks and edges, odd K */
    packers_case(16, 33, 54);
    packers_case(5, 3, 55);      /* no whole block */
    tile_tri_case(64, 41);
    tile_tri_case(37, 42);       /* a last, partial block: odd K, rows past a block */
    tile_tri_case(5, 43);
    tile_case(64, 64, 64, 31);   /* a flash tile of SmolLM's heads */
    tile_case(37, 80, 5, 32);    /* odd K (a zero pad), rows past a block, 5 vectors */
    tile_case(1, 17, 63, 33);
    tile_case(64, 256, 64, 34);  /* the widest head */
    tile_case(3, 2, 1, 35);
    tile_case(12, 40, 33, 36);   /* a whole vector and a partial one per block */
}

/* ---- central differences on odd sizes ---- */

typedef struct fa_gc {
    float *out, *lse, *q, *k, *v, *R;
    const int32_t *seg;
    int ld, B, T, NH, NKV, HD;
    al_attn_opts o;
} fa_gc;

static double fa_loss(void *p) {
    fa_gc *c = p;
    al_flash_attention_forward(c->out, c->lse, c->q, c->k, c->v, c->ld, c->seg, c->B, c->T, c->NH,
                               c->NKV, c->HD, &c->o, 0);
    double s = 0;
    for (size_t i = 0; i < (size_t)c->B * c->T * c->NH * c->HD; i++) s += (double)c->out[i] * c->R[i];
    return s;
}

static void gradcheck(const char *name, int B, int T, int NH, int NKV, int HD, const int32_t *seg,
                      al_attn_opts o, uint64_t seed) {
    const int ld = NH * HD + 3;
    const size_t nx = (size_t)B * T * ld, no = (size_t)B * T * NH * HD;
    fa_gc c = {fbuf(no), fbuf((size_t)B * NH * T), fbuf(nx), fbuf(nx), fbuf(nx), fbuf(no), seg, ld,
               B, T, NH, NKV, HD, o};
    gc_fill(c.q, nx, seed, 1.5f);
    gc_fill(c.k, nx, seed + 1, 1.5f);
    gc_fill(c.v, nx, seed + 2, 1.0f);
    gc_fill(c.R, no, seed + 3, 1.0f);
    float *dq = fbuf(nx), *dk = fbuf(nx), *dv = fbuf(nx);
    fa_loss(&c);
    al_flash_attention_backward(dq, dk, dv, c.R, c.out, c.lse, c.q, c.k, c.v, ld, seg, B, T, NH, NKV,
                                HD, &c.o, 0, 0);
    char what[96];
    snprintf(what, sizeof what, "%s.q", name);
    gc_check(what, c.q, dq, nx, fa_loss, &c, 1e-2f);
    snprintf(what, sizeof what, "%s.k", name);
    gc_check(what, c.k, dk, nx, fa_loss, &c, 1e-2f);
    snprintf(what, sizeof what, "%s.v", name);
    gc_check(what, c.v, dv, nx, fa_loss, &c, 1e-2f);
    /* accumulates, and a NULL output is skipped */
    float *ak = fbuf(nx);
    for (size_t i = 0; i < nx; i++) ak[i] = 1.0f;
    fa_loss(&c);
    al_flash_attention_backward(NULL, ak, NULL, c.R, c.out, c.lse, c.q, c.k, c.v, ld, seg, B, T, NH,
                                NKV, HD, &c.o, 0, 0);
    size_t off = 0;
    for (size_t i = 0; i < nx; i++) off += fabsf(ak[i] - 1.0f - dk[i]) > 1e-6f * (1.0f + fabsf(dk[i]));
    T_EQ_INT(off, 0);
    al_free(ak); al_free(dq); al_free(dk); al_free(dv);
    al_free(c.out); al_free(c.lse); al_free(c.q); al_free(c.k); al_free(c.v); al_free(c.R);
}

static void test_gradcheck(void) {
    al_attn_opts none = {0, 0, 0}, win = {0, 0, 2}, cap = {0.4f, 3.0f, 0};
    gradcheck("flash_mha", 2, 3, 2, 2, 4, NULL, none, 91);
    gradcheck("flash_gqa", 2, 5, 2, 1, 4, NULL, none, 92);
    const int32_t seg5[10] = {1, 1, 2, 2, 2, 1, 1, 1, 0, 0};
    gradcheck("flash_gqa_seg", 2, 5, 2, 1, 4, seg5, none, 93);
    gradcheck("flash_window", 2, 5, 2, 1, 4, seg5, win, 94);
    gradcheck("flash_softcap", 2, 5, 2, 1, 4, NULL, cap, 95);
}

int main(void) {
    test_tiles();
    test_rows();
    T_OK(al_pool_init(2));
    test_against_today();
    test_gradcheck();
    al_pool_shutdown();
    /* and on one thread, the serial path */
    test_against_today();
    return t_done();
}

/* One bf16 row against a bf16 weight held (in, out) (GPT-2's Conv1D
 * layout, as the file has it): y = x W + b with W (C, OC) row-major, the
 * batch-1 decoding product of a frozen GPT-2 in bf16
 * (al_matmul_forward_ht with N = 1).
 *
 * y is a sum of W's rows scaled by x. Memory-bound: what counts is that
 * each thread reads long contiguous runs of W. A 128-column block over
 * all rows (the loop this replaces) read 256 bytes of each row at a
 * stride of a whole row, and a band of columns per thread a piece of
 * every row: the hardware prefetcher lost both. So k is cut into two fixed
 * halves, the first rows and the last: each half's sums go over whole
 * rows (four rows a pass, the sums of at most MV_BLOCK columns kept in
 * L1), two threads each stream one contiguous half of W, and y = (half0 +
 * half1) + b. More threads cut each half into column bands; one thread
 * does both halves. The cut does not depend on the thread count, and each
 * half's sum runs over its k in order, a product then a sum per element
 * (C11: no fused multiply-adds), so the result depends on neither the
 * thread count nor the vector width. GPT-2 decoding on the 2-core machine:
 * about 10 % less time in these products than the 128-column blocks; the
 * dot products of nn.Linear's (out, in) layout still take about 25 % less
 * (one stream a thread, no sums to keep). */
#include "compute/ops.h"

#include <string.h>

#include "al.h"
#include "compute/pool.h"
#include "compute/simd.h"

#define MV_BLOCK 2048          /* columns summed a pass over the rows (8 KiB: L1) */
#define MV_PAR ((size_t)1 << 16) /* weights split over the pool above this */
#define MV_HALF_MIN 64          /* rows from which k is cut in two */
#define MV_HALF_MAX 8192        /* widest output cut so (its scratch is on the stack) */

typedef struct mv_ctx {
    float *part[2];              /* the halves' sums: out, then scratch */
    const uint16_t *x, *w;       /* bf16 x (C) and W (C, OC) */
    int C, OC, halves, bands;    /* work units: halves x bands of columns */
} mv_ctx;

/* t[0 .. n) = sum_k x[k] w[k * ld + j] over k < C in order, x and W bf16
 * widened as read. */
AL_SIMD_CLONES static void mv_block_h(float *restrict t, const uint16_t *x, const uint16_t *w,
                                      size_t ld, int C, int n) {
    for (int j = 0; j < n; j++) t[j] = 0.0f;
    int k = 0;
    for (; k + 4 <= C; k += 4) {
        const uint16_t *w0 = w + (size_t)k * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
        const float x0 = al_bf16_widen1(x[k]), x1 = al_bf16_widen1(x[k + 1]), x2 = al_bf16_widen1(x[k + 2]),
                    x3 = al_bf16_widen1(x[k + 3]);
        for (int j = 0; j < n; j++)
            t[j] = t[j] + x0 * al_bf16_widen1(w0[j]) + x1 * al_bf16_widen1(w1[j]) + x2 * al_bf16_widen1(w2[j]) +
                   x3 * al_bf16_widen1(w3[j]);
    }
    for (; k < C; k++) {
        const uint16_t *w0 = w + (size_t)k * ld;
        const float x0 = al_bf16_widen1(x[k]);
        for (int j = 0; j < n; j++) t[j] = t[j] + x0 * al_bf16_widen1(w0[j]);
    }
}

/* Unit u: half u / bands of k, band u % bands of the columns (multiples
 * of 16), in blocks of at most MV_BLOCK columns. */
static void mv_unit(const mv_ctx *c, long u) {
    int h = (int)(u / c->bands), k0 = h ? c->C / 2 : 0;
    int k1 = c->halves == 2 && !h ? c->C / 2 : c->C;
    long lo, hi;
    al_split((c->OC + 15) / 16, c->bands, (int)(u % c->bands), &lo, &hi);
    int j1 = hi * 16 < c->OC ? (int)hi * 16 : c->OC;
    size_t ld = (size_t)c->OC;
    for (int a = (int)lo * 16; a < j1; a += MV_BLOCK) {
        int n = j1 - a < MV_BLOCK ? j1 - a : MV_BLOCK;
        size_t at = (size_t)k0 * ld + (size_t)a;
        mv_block_h(c->part[h] + a, c->x + k0, c->w + at, ld, k1 - k0, n);
    }
}

static void mv_fn(void *p, int tid, int nt) {
    const mv_ctx *c = p;
    long lo, hi;
    al_split((long)c->halves * c->bands, nt, tid, &lo, &hi);
    for (long u = lo; u < hi; u++) mv_unit(c, u);
}

static void mv_run(mv_ctx *c, float *out, const float *b) {
    AL_ASSERT(c->C >= 0 && c->OC >= 0);
    if (c->OC == 0) return;
    float scratch[MV_HALF_MAX];
    c->halves = c->C >= MV_HALF_MIN && c->OC <= MV_HALF_MAX ? 2 : 1;
    c->part[0] = out;
    c->part[1] = scratch;
    int nt = (size_t)c->C * (size_t)c->OC >= MV_PAR ? al_pool_threads() : 1;
    c->bands = (nt + c->halves - 1) / c->halves;
    if (nt > 1) al_pool_run(mv_fn, c);
    else mv_fn(c, 0, 1);
    for (int j = 0; j < c->OC; j++) {
        float y = c->halves == 2 ? out[j] + scratch[j] : out[j];
        out[j] = y + (b ? b[j] : 0.0f);
    }
}

void al_matvec_ht(float *out, const uint16_t *inp16, const uint16_t *wt, const float *b, int C,
                  int OC) {
    mv_ctx c = {.x = inp16, .w = wt, .C = C, .OC = OC};
    mv_run(&c, out, b);
}

void al_matvec_ht_ref(float *out, const uint16_t *inp16, const uint16_t *wt, const float *b, int C,
                      int OC) {
    for (int j = 0; j < OC; j++) {
        double s = b ? b[j] : 0.0;
        for (int k = 0; k < C; k++)
            s += (double)al_bf16_widen1(inp16[k]) * (double)al_bf16_widen1(wt[(size_t)k * (size_t)OC + j]);
        out[j] = (float)s;
    }
}

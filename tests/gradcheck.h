/* Gradient checks against central differences (STYLE.md §5).
 *
 * The test fixes a random R and defines L = sum(out * R) (so dout = R),
 * computes the analytic gradient of L with respect to an input x once, then
 * calls gc_check, which perturbs up to 64 coordinates of x by +-h, re-runs the
 * forward through `loss` (which must return L summed in double), and compares
 * (L(x+h) - L(x-h)) / 2h with the analytic value. A coordinate passes when
 * |a - n| <= 1e-3 + 1e-2 * max(|a|, |n|). */
#ifndef GRADCHECK_H
#define GRADCHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include "t.h"

typedef double (*gc_loss_fn)(void *ctx);

/* Deterministic coordinate picker (splitmix64) so failures reproduce. */
static inline uint64_t gc_next_(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Returns the number of failing coordinates (also counted in t.h's totals).
 * stencil 2: (L(x+h) - L(x-h)) / 2h. stencil 4: the fourth-order central
 * difference (-L(x+2h) + 8L(x+h) - 8L(x-h) + L(x-2h)) / 12h, for whole
 * models in float32 where curvature over h = 1e-2 exceeds the tolerance but
 * a smaller h drowns in rounding noise. */
static inline int gc_check_stencil(const char *what, float *x, const float *grad, size_t n,
                                   gc_loss_fn loss, void *ctx, float h, int stencil) {
    int fails = 0;
    uint64_t s = 12345;
    size_t count = n < 64 ? n : 64;
    for (size_t k = 0; k < count; k++) {
        size_t i = n <= 64 ? k : (size_t)(gc_next_(&s) % n);
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        double num = (lp - lm) / (2.0 * (double)h);
        if (stencil == 4) {
            x[i] = x0 + 2 * h;
            double lp2 = loss(ctx);
            x[i] = x0 - 2 * h;
            double lm2 = loss(ctx);
            num = (-lp2 + 8 * lp - 8 * lm + lm2) / (12.0 * (double)h);
        }
        x[i] = x0;
        double a = grad[i];
        double tol = 1e-3 + 1e-2 * fmax(fabs(a), fabs(num));
        if (!(fabs(a - num) <= tol)) {
            if (fails < 5)
                fprintf(stderr, "gradcheck %s[%zu]: analytic %.6g numeric %.6g\n", what, i, a, num);
            fails++;
        }
    }
    T_REPORT_(fails == 0, "gradcheck %s: %d of %zu coordinates off", what, fails, count);
    return fails;
}

static inline int gc_check(const char *what, float *x, const float *grad, size_t n,
                           gc_loss_fn loss, void *ctx, float h) {
    return gc_check_stencil(what, x, grad, n, loss, ctx, h, 2);
}

/* Fills x with uniform values in [-scale, scale) from a seed. */
static inline void gc_fill(float *x, size_t n, uint64_t seed, float scale) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)((double)(gc_next_(&s) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* max |x|, and ||a - b|| / ||b|| (||a - b|| when b is zero), in double. */
static inline double gc_maxabs(const float *x, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

static inline double gc_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* |got - want| <= rtol * (|want| + max|want|) for every element; a failure
 * names the worst one. */
static inline void gc_expect_close(const char *what, const float *got, const float *want, size_t n,
                                   double rtol) {
    double scale = gc_maxabs(want, n), worst = 0;
    size_t bad = 0, wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]), tol = rtol * (fabs((double)want[i]) + scale);
        if (!(d <= tol)) {
            bad++;
            if (!(d / tol <= worst)) worst = d / tol, wi = i;
        }
    }
    T_REPORT_(bad == 0, "%s: %zu of %zu off, worst [%zu] %.9g vs %.9g", what, bad, n, wi,
              n ? got[wi] : 0.0, n ? want[wi] : 0.0);
}

#endif

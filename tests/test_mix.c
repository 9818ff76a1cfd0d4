/* Mixing training sets by weighted sampling (lib/text/mix.h): the share of
 * each source within a stated margin, every pass over a source a
 * permutation of it, the same stream for the same seed, and a restored
 * state continuing the stream exactly (also at a pass boundary); bad
 * arguments and stale states refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "text/mix.h"

/* Shares within 5 binomial standard deviations of the weights: a false
 * alarm once in ~3.5 million runs for a correct sampler, while a sampler
 * off by 2 points fails (sigma is 0.3 points at these sizes). */
static void test_shares(void) {
    static const struct { int n_src; int32_t n[3]; double w[3]; } CASES[] = {
        {2, {100, 7}, {0.7, 0.3}},        /* the weights; a small source repeats */
        {3, {5, 400, 60}, {1.0, 2.0, 5.0}}, /* weights need not sum to 1 */
    };
    enum { DRAWS = 20000 };
    char err[AL_ERRLEN];
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        al_mix m;
        T_OK(al_mix_init(&m, CASES[c].n_src, CASES[c].n, CASES[c].w, 7, err));
        long got[3] = {0};
        for (int i = 0; i < DRAWS; i++) {
            int32_t idx = al_mix_next(&m);
            int s = al_mix_source(&m, idx);
            T_TRUE(idx >= m.off[s] && idx < m.off[s] + m.n[s]);
            got[s]++;
        }
        double wsum = 0;
        for (int s = 0; s < CASES[c].n_src; s++) wsum += CASES[c].w[s];
        for (int s = 0; s < CASES[c].n_src; s++) {
            double p = CASES[c].w[s] / wsum, share = (double)got[s] / DRAWS;
            double sigma = sqrt(p * (1 - p) / DRAWS);
            printf("case %zu source %d: share %.4f, weight %.4f, margin %.4f\n", c, s, share, p, 5 * sigma);
            T_TRUE(fabs(share - p) <= 5 * sigma);
        }
        al_mix_deinit(&m);
    }
}

/* Each pass over a source takes every example once, in a new order. */
static void test_passes(void) {
    char err[AL_ERRLEN];
    al_mix m;
    int32_t n[2] = {7, 13};
    double w[2] = {1, 1};
    T_OK(al_mix_init(&m, 2, n, w, 3, err));
    int32_t seen[2][13 * 40];
    int cnt[2] = {0, 0};
    while (cnt[0] < 7 * 40 || cnt[1] < 13 * 40) {
        int32_t idx = al_mix_next(&m);
        int s = al_mix_source(&m, idx);
        if (cnt[s] < n[s] * 40) seen[s][cnt[s]++] = idx - m.off[s];
    }
    int perms_ok = 1, orders_differ = 0;
    for (int s = 0; s < 2; s++)
        for (int pass = 0; pass < 40; pass++) {
            int hit[13] = {0};
            for (int k = 0; k < n[s]; k++) hit[seen[s][pass * n[s] + k]]++;
            for (int k = 0; k < n[s]; k++) perms_ok &= hit[k] == 1;
            if (pass && memcmp(&seen[s][pass * n[s]], &seen[s][(pass - 1) * n[s]], (size_t)n[s] * 4)) orders_differ++;
        }
    T_TRUE(perms_ok);
    T_TRUE(orders_differ > 70);
    al_mix_deinit(&m);
}

static void test_determinism_and_resume(void) {
    char err[AL_ERRLEN];
    int32_t n[3] = {11, 3, 50};
    double w[3] = {0.5, 0.2, 0.3};
    al_mix a, b, c;
    T_OK(al_mix_init(&a, 3, n, w, 42, err));
    T_OK(al_mix_init(&b, 3, n, w, 42, err));
    T_OK(al_mix_init(&c, 3, n, w, 43, err));
    int same = 1, differ = 0;
    for (int i = 0; i < 1000; i++) {
        int32_t x = al_mix_next(&a), y = al_mix_next(&b), z = al_mix_next(&c);
        same &= x == y;
        differ += x != z;
    }
    T_TRUE(same);
    T_TRUE(differ > 500);
    /* a state saved mid-stream continues the stream exactly, through JSON
     * text as a checkpoint stores it; one saved right at the end of a pass
     * over the 3-example source too */
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            while (a.taken[1] % 3 != 0 || a.taken[1] == 0) { al_mix_next(&a); al_mix_next(&b); }
        json_t *st = al_mix_state(&a);
        char *txt = json_dumps(st, 0);
        json_decref(st);
        json_t *back = json_loads(txt, 0, NULL);
        free(txt);
        al_mix r;
        T_OK(al_mix_init(&r, 3, n, w, 42, err));
        T_OK(al_mix_restore(&r, back, err));
        json_decref(back);
        int ok = 1;
        for (int i = 0; i < 3000; i++) ok &= al_mix_next(&r) == al_mix_next(&a);
        T_TRUE(ok);
        for (int i = 0; i < 3000; i++) al_mix_next(&b);
        al_mix_deinit(&r);
    }
    /* rewind: the stream from the start again */
    al_mix_rewind(&a);
    al_mix_rewind(&c);
    al_mix d;
    T_OK(al_mix_init(&d, 3, n, w, 42, err));
    int ok = 1;
    for (int i = 0; i < 500; i++) ok &= al_mix_next(&a) == al_mix_next(&d);
    T_TRUE(ok);
    /* a state for other sources, seed or a malformed one: refused, m kept */
    json_t *st = al_mix_state(&a);
    int32_t n2[3] = {11, 4, 50};
    al_mix e;
    T_OK(al_mix_init(&e, 3, n2, w, 42, err));
    T_EQ_INT(al_mix_restore(&e, st, err), AL_EFORMAT);
    T_TRUE(strstr(err, "training_files[1] has 4 examples") != NULL);
    T_EQ_INT(e.draws, 0);
    al_mix_deinit(&e);
    T_OK(al_mix_init(&e, 3, n, w, 41, err));
    T_EQ_INT(al_mix_restore(&e, st, err), AL_EFORMAT);
    al_mix_deinit(&e);
    T_OK(al_mix_init(&e, 3, n, w, 42, err));
    json_object_set_new(st, "rng", json_string("zz"));
    T_EQ_INT(al_mix_restore(&e, st, err), AL_EFORMAT);
    al_mix_deinit(&e);
    json_decref(st);
    al_mix_deinit(&a);
    al_mix_deinit(&b);
    al_mix_deinit(&c);
    al_mix_deinit(&d);
}

static void test_bad_args(void) {
    char err[AL_ERRLEN];
    al_mix m;
    int32_t n[2] = {5, 0};
    double w[2] = {1, 1}, w0[2] = {1, 0}, wn[2] = {1, NAN};
    T_EQ_INT(al_mix_init(&m, 0, n, w, 1, err), AL_EINVAL);
    al_mix_deinit(&m);
    T_EQ_INT(al_mix_init(&m, 2, n, w, 1, err), AL_EINVAL);
    al_mix_deinit(&m);
    n[1] = 5;
    T_EQ_INT(al_mix_init(&m, 2, n, w0, 1, err), AL_EINVAL);
    al_mix_deinit(&m);
    T_EQ_INT(al_mix_init(&m, 2, n, wn, 1, err), AL_EINVAL);
    al_mix_deinit(&m);
    T_EQ_INT(al_mix_init(&m, AL_MIX_MAX_SOURCES + 1, n, w, 1, err), AL_EINVAL);
    al_mix_deinit(&m);
}

int main(void) {
    test_shares();
    test_passes();
    test_determinism_and_resume();
    test_bad_args();
    return t_done();
}

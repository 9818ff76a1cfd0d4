/* The gradient reduction alone (lib/dist's reducer), against the bytes
 * reduced: for each size, the float array is cut into buckets of
 * --bucket-mb (25, PyTorch DDP's default), every bucket started at once and
 * waited for, as al_ddp_reduce does for a rank whose backward started none;
 * the best and the median of --reps rounds, each after an agreement (a
 * barrier) so the ranks start together. Run as ranks:
 *
 *   mpirun --allow-run-as-root --oversubscribe -np 2 build/release/bench/allreduce [--reps 7]
 *
 * Rank 0 prints one JSON line per size: bytes, best and median seconds, and
 * the bus bandwidth 2 (N-1)/N x bytes / time (the ring allreduce's traffic
 * per rank). Without MPI, or alone, it says so and exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    int reps = 7;
    double bucket_mb = 25, max_mb = 512;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--bucket-mb")) bucket_mb = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-mb")) max_mb = atof(argv[i + 1]);
    }
    if (reps < 1 || reps > 1000) reps = 7;
    char err[AL_ERRLEN];
    if (al_dist_init(err)) {
        fprintf(stderr, "allreduce: %s\n", err);
        return 2;
    }
    int size = al_dist_size(), rank = al_dist_rank();
    if (size < 2) {
        fprintf(stderr, "allreduce: run it as several ranks (mpirun -np 2 ...)\n");
        return 2;
    }
    size_t max_n = (size_t)(max_mb * 1048576.0 / sizeof(float));
    float *x = malloc(max_n * sizeof *x);
    size_t cap = (size_t)(bucket_mb * 1048576.0 / sizeof(float));
    size_t nb_max = max_n / (cap ? cap : 1) + 2;
    size_t *lo = malloc(nb_max * sizeof *lo), *hi = malloc(nb_max * sizeof *hi);
    double *t = malloc((size_t)reps * sizeof *t);
    if (!x || !lo || !hi || !t) return 1;
    for (size_t k = 0; k < max_n; k++) x[k] = (float)(k % 97) * 1e-3f;
    for (size_t n = 256; n <= max_n; n *= 4) {
        int nb = 0;
        for (size_t a = 0; a < n; a += cap) {
            lo[nb] = a;
            hi[nb++] = a + cap < n ? a + cap : n;
        }
        al_dist_reducer *r = al_dist_reducer_new(x, n, lo, hi, nb, 0, err);
        if (!r) return 1;
        for (int k = 0; k < reps; k++) {
            al_dist_agree_rc(0);
            double t0 = al_now();
            al_dist_reducer_wait(r, err);
            t[k] = al_now() - t0;
        }
        al_dist_max(t, reps); /* a round lasts as long as its slowest rank */
        qsort(t, (size_t)reps, sizeof *t, cmp);
        double bytes = (double)n * sizeof(float);
        if (rank == 0)
            printf("{\"bytes\":%.0f,\"buckets\":%d,\"best_s\":%.6f,\"median_s\":%.6f,\"busbw_GBps\":%.3f}\n", bytes, nb,
                   t[0], t[reps / 2], 2.0 * (size - 1) / size * bytes / t[0] / 1e9);
        fflush(stdout);
        al_dist_reducer_free(r);
    }
    free(x);
    free(lo);
    free(hi);
    free(t);
    al_dist_finalize();
    return 0;
}

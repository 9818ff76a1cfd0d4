/* lib/dist without MPI (see dist.h): compiled when the build has no MPI
 * (ALIGND_MPI off). One rank; every collective leaves its data as it is.
 * al_dist_init refuses a process that a launcher started as one of several
 * ranks, which would otherwise train alone beside its twins. */
#include "dist.h"

#include <stdlib.h>
#include <string.h>

int al_dist_init(char err[AL_ERRLEN]) {
    int n = al_dist_env_world();
    if (n > 1)
        return al_err(err, AL_EUNSUP, "started as one of %d ranks, but this alignd was built without MPI "
                      "(install libopenmpi-dev and rebuild with -DALIGND_MPI=ON)", n);
    return AL_OK;
}

void al_dist_finalize(void) {}
int al_dist_rank(void) { return 0; }
int al_dist_size(void) { return 1; }
int al_dist_compiled(void) { return 0; }
void al_dist_sum(double *x, int n) { (void)x, (void)n; }
void al_dist_max(double *x, int n) { (void)x, (void)n; }
void al_dist_min(double *x, int n) { (void)x, (void)n; }
int al_dist_any(int flags) { return flags; }
int al_dist_agree_rc(int rc) { return rc; }
int al_dist_agree_err(int rc, al_error *err) {
    (void)err;
    return rc;
}
void al_dist_bcast(void *buf, size_t bytes, int root) { (void)buf, (void)bytes, (void)root; }

void al_dist_allgather(const void *send, size_t bytes, void *recv) {
    if (recv != send) memcpy(recv, send, bytes);
}

void al_dist_gather_f32(const float *send, const size_t *counts, float *recv) {
    if (recv != send) memcpy(recv, send, counts[0] * sizeof *recv);
}

void al_dist_allgather_shards(float *data, size_t n) { (void)data, (void)n; }

struct al_dist_reducer {
    int unused;
};

al_dist_reducer *al_dist_reducer_new(float *data, size_t n, const size_t *lo, const size_t *hi, int n_buckets,
                                     int sharded, char err[AL_ERRLEN]) {
    (void)data, (void)n, (void)lo, (void)hi, (void)n_buckets, (void)sharded, (void)err;
    return calloc(1, sizeof(al_dist_reducer));
}
void al_dist_reducer_free(al_dist_reducer *r) { free(r); }
void al_dist_reducer_start(al_dist_reducer *r, int b) { (void)r, (void)b; }
int al_dist_reducer_wait(al_dist_reducer *r, char err[AL_ERRLEN]) {
    (void)r, (void)err;
    return AL_OK;
}
void al_dist_reducer_stats(const al_dist_reducer *r, long *rounds, double *bytes, double *wait_s, double *early) {
    (void)r;
    *rounds = 0;
    *bytes = *wait_s = *early = 0;
}

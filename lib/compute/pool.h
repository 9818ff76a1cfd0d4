/* The shared compute pool: one set of threads, sized to the cores, that all
 * numeric work runs on. The caller of al_pool_run is thread 0 and works too.
 *
 * One owner for the cores: OpenBLAS runs single-threaded (blas.c sets it so
 * when it opens the library, before the first product); large matrix products are split by the pool
 * into per-thread panels, each a single-threaded oneDNN primitive (whose
 * OpenMP thread count is 1 on every thread that calls it, onednn.c) or
 * cblas_sgemm. So neither library's threads ever spin against ours.
 *
 * After fork() the child's pool has one thread (the forking one): it has
 * no workers to wake.
 *
 * Work is partitioned statically by (thread id, thread count), so results are
 * bit-identical for the same thread count. al_pool_run calls from different
 * threads are serialised by a mutex: jobs take turns on the core. */
#ifndef AL_POOL_H
#define AL_POOL_H

typedef void (*al_pool_fn)(void *ctx, int tid, int nthreads);

/* Most threads the pool runs; kernels may size per-thread arrays with it. */
#define AL_POOL_MAX 256

/* Starts the process-wide pool with n threads (0 = number of online cores,
 * at most AL_POOL_MAX). ALIGND_THREADS=N in the environment overrides n, so
 * that any program (tests included) runs at a chosen thread count.
 * Idempotent: later calls return AL_OK without change. */
int al_pool_init(int n);
/* Stops the pool's threads (at exit; tests). */
void al_pool_shutdown(void);
/* Number of threads work is split into (>= 1; 1 before al_pool_init, and 1
 * inside a pool function, so kernels called there take their serial path). */
int al_pool_threads(void);
/* Runs fn(ctx, tid, n) on every thread and returns when all are done.
 * Nested calls from inside fn run inline on the calling thread with n = 1. */
void al_pool_run(al_pool_fn fn, void *ctx);

/* Split [0, n) into `parts` contiguous ranges; range `i` is [*lo, *hi). */
static inline void al_split(long n, int parts, int i, long *lo, long *hi) {
    long q = n / parts, r = n % parts;
    *lo = i * q + (i < r ? i : r);
    *hi = *lo + q + (i < r ? 1 : 0);
}

#endif

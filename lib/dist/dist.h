/* Data parallelism over MPI: the process-wide layer (DESIGN.md, "Scale
 * beyond one machine").
 *
 * `alignd train` started by mpirun or srun runs as N ranks of one job. This
 * layer starts MPI when the environment says so (al_dist_init), names the
 * rank and the world size, and offers the few collectives the training loops
 * use: sums, maxima and minima of small vectors (global statistics), an
 * agreement on flags (every rank stops or pauses at the same step), a
 * broadcast, a gather of fixed-size records, and for gradients a reducer
 * that sums a float array across ranks in buckets, each started with a
 * non-blocking collective as soon as the caller says that bucket is final,
 * so that communication runs while backward still computes; with a shard
 * (ZeRO-1) each rank receives only the sum of its own slice
 * (reduce-scatter), and al_dist_allgather_shards puts the updated slices
 * back together.
 *
 * Two implementations: dist_mpi.c (the build found MPI, ALIGND_MPI) and
 * dist_solo.c (it did not: one rank, every collective a no-op, no MPI symbol
 * referenced). Without al_dist_init, or when the launcher started a single
 * process, the MPI build behaves as the solo one: rank 0 of 1, nothing
 * initialised. Everything here is called from the one thread that runs the
 * job (MPI_THREAD_FUNNELED); the compute pool's threads never call MPI. All
 * collectives must be called by every rank in the same order. */
#ifndef AL_DIST_H
#define AL_DIST_H

#include "../al.h"

/* Starts MPI when this process is one of several ranks: mpirun/mpiexec
 * (OMPI_COMM_WORLD_SIZE), srun (SLURM_NTASKS with SLURM_PROCID) or another
 * PMI launcher (PMI_SIZE, PMIX_SIZE... as MPI_Init reads them) says the world
 * holds more than one process. Otherwise does nothing and returns AL_OK.
 * AL_EUNSUP when launched as several ranks by a build without MPI (each would
 * otherwise train alone and overwrite the others' checkpoints); AL_EIO when
 * MPI fails to start. Call once, before any other al_dist_ function. */
int al_dist_init(char err[AL_ERRLEN]);
/* The world size the launcher's environment announces (1 when none):
 * dist_env.c, shared by both builds. */
int al_dist_env_world(void);
/* Ends MPI (after every rank's last collective). No-op when not started. */
void al_dist_finalize(void);

int al_dist_rank(void);      /* 0 when not distributed */
int al_dist_size(void);      /* 1 when not distributed */
int al_dist_compiled(void);  /* 1 in a build with MPI */

/* ---- small collectives (no-ops with one rank) ---------------------------- */

/* Element-wise sum, maximum or minimum over ranks, in place. */
void al_dist_sum(double *x, int n);
void al_dist_max(double *x, int n);
void al_dist_min(double *x, int n);
/* Non-zero on every rank when it is non-zero on any; bits are ORed. */
int al_dist_any(int flags);
/* The smallest rc of all ranks (an error anywhere is an error everywhere:
 * every AL_ code is <= 0). */
int al_dist_agree_rc(int rc);
/* al_dist_agree_rc with the reason: when any rank failed, every rank
 * returns the code of the lowest-numbered failing rank and gets its field
 * and message in err (may be NULL; the message prefixed "rank N: " on the
 * others when N > 0), so that rank 0 reports an error that arose on another
 * rank, the job's field at fault included. */
int al_dist_agree_err(int rc, al_error *err);
/* Rank root's bytes into every rank's buf. */
void al_dist_bcast(void *buf, size_t bytes, int root);
/* Each rank's `bytes` from send, concatenated in rank order into recv
 * (size * bytes) on every rank. */
void al_dist_allgather(const void *send, size_t bytes, void *recv);
/* Rank r's n[r] floats into recv at offset sum(n[<r]) on rank 0 only
 * (recv may be NULL elsewhere). counts: every rank's n, known to all. */
void al_dist_gather_f32(const float *send, const size_t *counts, float *recv);

/* The contiguous slice [lo, hi) of n elements that rank r owns (equal parts,
 * the first n % size ranks one longer). */
static inline void al_dist_shard(size_t n, int rank, int size, size_t *lo, size_t *hi) {
    size_t q = n / (size_t)size, rem = n % (size_t)size, r = (size_t)rank;
    *lo = r * q + (r < rem ? r : rem);
    *hi = *lo + q + (r < rem ? 1 : 0);
}
/* Every rank's shard of data (n floats, each rank's own slice filled in) into
 * every rank's data: MPI_Allgatherv in place. */
void al_dist_allgather_shards(float *data, size_t n);

/* ---- the gradient reducer ------------------------------------------------ */

typedef struct al_dist_reducer al_dist_reducer;

/* A reducer of data[0..n) (the gradient arena) in buckets [lo[b], hi[b]),
 * b = 0 .. n_buckets-1, disjoint and covering what is to be reduced. Its
 * collectives run on a communicator of its own, so two reducers (policy and
 * critic) never mix. sharded: rank r ends with the sum over ranks of its
 * shard (al_dist_shard of n) only, in place, and the rest of data is
 * undefined (ZeRO-1); otherwise every element holds the sum. NULL when
 * memory runs out (reason in err). With one rank it does nothing. */
al_dist_reducer *al_dist_reducer_new(float *data, size_t n, const size_t *lo, const size_t *hi, int n_buckets,
                                     int sharded, char err[AL_ERRLEN]);
void al_dist_reducer_free(al_dist_reducer *r);
/* Bucket b is final: start its reduction (non-blocking). Buckets must be
 * started in the same order on every rank; starting one twice in a round is
 * a no-op. Also drives the reductions already under way. */
void al_dist_reducer_start(al_dist_reducer *r, int b);
/* Starts every bucket not started yet (in index order) and waits for all;
 * the round is over and the next one may begin. AL_OK or AL_EIO. */
int al_dist_reducer_wait(al_dist_reducer *r, char err[AL_ERRLEN]);
/* Statistics since the reducer was made: rounds, bytes reduced per round,
 * seconds spent blocked in al_dist_reducer_wait (the communication the
 * backward did not hide), and the fraction of buckets started before it
 * (by the backward's progress). */
void al_dist_reducer_stats(const al_dist_reducer *r, long *rounds, double *bytes, double *wait_s, double *early);

#endif

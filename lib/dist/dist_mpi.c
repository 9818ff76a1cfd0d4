/* lib/dist over MPI (see dist.h): compiled when the build found MPI.
 *
 * MPI is started only when a launcher made this process one of several
 * ranks; otherwise `started` stays 0 and every function answers as the solo
 * build does, so the daemon and a plain `alignd train` never touch MPI.
 *
 * Gradient buckets are summed with MPI_Iallreduce, or MPI_Ireduce_scatter
 * when sharded (ZeRO-1), each on the reducer's own duplicate of
 * MPI_COMM_WORLD. Open MPI progresses non-blocking collectives only inside
 * MPI calls, so al_dist_reducer_start also tests the requests under way: the
 * model calls it after each layer's backward, which keeps the transfers
 * moving while the next layer computes. Counts are ints in MPI: buckets are
 * far below 2^31 floats; gathers and all-gathers of whole arenas fall back
 * to chunked point-to-point transfers or broadcasts when a count would not
 * fit.
 *
 * The MPI library is opened (dlopen) by al_dist_init in a process that is one
 * of several ranks, not linked: linked, Open MPI and what it pulls in
 * (open-pal, open-rte, hwloc, libevent, libudev, OpenCL's loader) were
 * loaded and relocated in every alignd process, ~1 MB of resident memory a
 * solo process never used (tiny SFT-LoRA bf16 bench at its peak: RssFile
 * 13.4 MB linked, 12.4-12.5 not; peak RSS 38.1-39.0 and 37.0-38.0 MB,
 * 2026-12-07). mpi.h still gives the types and prototypes;
 * the calls go through `mpi`, a table of the library's functions, and Open
 * MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...: addresses
 * of the library's globals) are looked up by name (mpi_global). */
#include "dist.h"

#include <dlfcn.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef AL_MPI_LIB
#define AL_MPI_LIB "libmpi.so"
#endif
#ifndef AL_MPI_PATH
#define AL_MPI_PATH AL_MPI_LIB
#endif

/* the MPI functions this file calls */
#define AL_MPI_FUNCS(X)                                                                     \
    X(Init_thread) X(Finalize) X(Comm_rank) X(Comm_size) X(Comm_dup) X(Comm_free)           \
    X(Allreduce) X(Bcast) X(Allgather) X(Allgatherv) X(Send) X(Recv) X(Iallreduce)          \
    X(Ireduce_scatter) X(Test) X(Wait) X(Wtime)

static struct {
    void *lib; /* dlopen's handle; NULL until al_dist_init starts MPI */
#define X(f) __typeof__(MPI_##f) *f;
    AL_MPI_FUNCS(X)
#undef X
} mpi;

#ifdef OPEN_MPI
/* A predefined handle: the address of the library's global `name` (a
 * dlsym per use: cheap beside the MPI call it feeds); NULL before the
 * library is open, when no MPI call is made (they all wait for `started`). */
static void *mpi_global(const char *name) { return mpi.lib ? dlsym(mpi.lib, name) : NULL; }
#undef OMPI_PREDEFINED_GLOBAL
#define OMPI_PREDEFINED_GLOBAL(type, global) ((type)mpi_global(#global))
#endif

/* Opens the MPI library, by its soname or else where the build found it,
 * with its symbols global (Open MPI's components, which it opens itself,
 * resolve against them), and fills in `mpi`. */
static int mpi_open(char err[AL_ERRLEN]) {
    if (mpi.lib) return AL_OK;
    void *lib = dlopen(AL_MPI_LIB, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) lib = dlopen(AL_MPI_PATH, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) return al_err(err, AL_EIO, "MPI: %s", dlerror());
#define X(f)                                                                   \
    if (!(*(void **)&mpi.f = dlsym(lib, "MPI_" #f))) {                         \
        dlclose(lib);                                                          \
        return al_err(err, AL_EIO, "MPI: %s has no MPI_%s", AL_MPI_LIB, #f);   \
    }
    AL_MPI_FUNCS(X)
#undef X
    mpi.lib = lib;
    return AL_OK;
}

static int started, g_rank, g_size = 1;

int al_dist_init(char err[AL_ERRLEN]) {
    if (started || al_dist_env_world() <= 1) return AL_OK;
    int rc = mpi_open(err);
    if (rc != AL_OK) return rc;
    int provided = 0;
    if (mpi.Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return al_err(err, AL_EIO, "MPI failed to start");
    mpi.Comm_rank(MPI_COMM_WORLD, &g_rank);
    mpi.Comm_size(MPI_COMM_WORLD, &g_size);
    started = 1;
    if (g_size <= 1) { /* a world of one: nothing to share */
        mpi.Finalize();
        started = 0;
        g_rank = 0;
        g_size = 1;
    }
    return AL_OK;
}

void al_dist_finalize(void) {
    if (!started) return;
    mpi.Finalize();
    started = 0;
}

int al_dist_rank(void) { return g_rank; }
int al_dist_size(void) { return g_size; }
int al_dist_compiled(void) { return 1; }

static void allreduce(double *x, int n, MPI_Op op) {
    if (started && n > 0) mpi.Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, op, MPI_COMM_WORLD);
}
void al_dist_sum(double *x, int n) { allreduce(x, n, MPI_SUM); }
void al_dist_max(double *x, int n) { allreduce(x, n, MPI_MAX); }
void al_dist_min(double *x, int n) { allreduce(x, n, MPI_MIN); }

int al_dist_any(int flags) {
    if (started) mpi.Allreduce(MPI_IN_PLACE, &flags, 1, MPI_INT, MPI_BOR, MPI_COMM_WORLD);
    return flags;
}

int al_dist_agree_rc(int rc) {
    if (started) mpi.Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return rc;
}

int al_dist_agree_err(int rc, al_error *err) {
    if (!started) return rc;
    int who = rc ? g_rank : g_size;
    mpi.Allreduce(MPI_IN_PLACE, &who, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (who == g_size) return AL_OK;
    al_error buf = {"", ""};
    if (g_rank == who && err) buf = *err;
    mpi.Bcast(&rc, 1, MPI_INT, who, MPI_COMM_WORLD);
    mpi.Bcast(&buf, (int)sizeof buf, MPI_BYTE, who, MPI_COMM_WORLD);
    if (err && g_rank != who) {
        buf.field[sizeof buf.field - 1] = 0;
        buf.msg[sizeof buf.msg - 1] = 0;
        if (who == 0) al_fail_as(err, rc, buf.field, buf.msg);
        else al_fail_as(err, al_err(err->msg, rc, "rank %d: %.*s", who, AL_ERRLEN - 16, buf.msg), buf.field, err->msg);
    }
    return rc;
}

enum { CHUNK = 1 << 28 }; /* elements per transfer when a count would not fit an int */

void al_dist_bcast(void *buf, size_t bytes, int root) {
    if (!started) return;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        size_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
        mpi.Bcast((char *)buf + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
    }
}

void al_dist_allgather(const void *send, size_t bytes, void *recv) {
    if (!started) {
        memcpy(recv, send, bytes);
        return;
    }
    AL_ASSERT(bytes <= INT_MAX);
    mpi.Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
}

void al_dist_gather_f32(const float *send, const size_t *counts, float *recv) {
    if (!started) {
        if (recv != send) memcpy(recv, send, counts[0] * sizeof *recv);
        return;
    }
    /* point to point in chunks: whole optimizer moments exceed int counts
     * on large models, and this runs once per checkpoint */
    if (g_rank == 0) {
        size_t off = 0;
        for (int r = 0; r < g_size; r++) {
            if (r == 0) memmove(recv, send, counts[0] * sizeof *recv);
            else
                for (size_t k = 0; k < counts[r]; k += CHUNK) {
                    size_t c = counts[r] - k < CHUNK ? counts[r] - k : CHUNK;
                    mpi.Recv(recv + off + k, (int)c, MPI_FLOAT, r, 77, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                }
            off += counts[r];
        }
    } else {
        for (size_t k = 0; k < counts[g_rank]; k += CHUNK) {
            size_t c = counts[g_rank] - k < CHUNK ? counts[g_rank] - k : CHUNK;
            mpi.Send(send + k, (int)c, MPI_FLOAT, 0, 77, MPI_COMM_WORLD);
        }
    }
}

void al_dist_allgather_shards(float *data, size_t n) {
    if (!started) return;
    size_t lo, hi;
    al_dist_shard(n, 0, g_size, &lo, &hi);
    if (hi - lo <= (size_t)INT_MAX && n <= (size_t)INT_MAX) {
        int *cnt = malloc((size_t)g_size * 2 * sizeof *cnt);
        AL_ASSERT(cnt);
        for (int r = 0; r < g_size; r++) {
            al_dist_shard(n, r, g_size, &lo, &hi);
            cnt[r] = (int)(hi - lo);
            cnt[g_size + r] = (int)lo;
        }
        mpi.Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, cnt, cnt + g_size, MPI_FLOAT, MPI_COMM_WORLD);
        free(cnt);
        return;
    }
    for (int r = 0; r < g_size; r++) {
        al_dist_shard(n, r, g_size, &lo, &hi);
        al_dist_bcast(data + lo, (hi - lo) * sizeof *data, r);
    }
}

/* ---- the gradient reducer ------------------------------------------------------ */

struct al_dist_reducer {
    MPI_Comm comm;
    int dup;              /* comm is MPI_Comm_dup's (to free) */
    float *data;
    size_t n;
    int nb;
    size_t *lo, *hi;
    int sharded;
    int *counts;          /* (nb, size): each rank's part of each bucket (sharded) */
    MPI_Request *req;     /* (nb) */
    char *state;          /* (nb): 0 idle, 1 started, 2 done */
    int waiting;          /* inside al_dist_reducer_wait */
    long rounds, starts, early;
    double bytes, wait_s;
};

al_dist_reducer *al_dist_reducer_new(float *data, size_t n, const size_t *lo, const size_t *hi, int n_buckets,
                                     int sharded, char err[AL_ERRLEN]) {
    al_dist_reducer *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->data = data;
    r->n = n;
    r->nb = n_buckets;
    r->sharded = sharded;
    r->comm = MPI_COMM_NULL;
    r->lo = malloc((size_t)(n_buckets + 1) * sizeof *r->lo);
    r->hi = malloc((size_t)(n_buckets + 1) * sizeof *r->hi);
    r->req = malloc((size_t)(n_buckets + 1) * sizeof *r->req);
    r->state = calloc((size_t)n_buckets + 1, 1);
    r->counts = calloc((size_t)(n_buckets + 1) * (size_t)g_size, sizeof *r->counts);
    if (!r->lo || !r->hi || !r->req || !r->state || !r->counts) {
        al_err(err, AL_ENOMEM, "out of memory for the gradient buckets");
        al_dist_reducer_free(r);
        return NULL;
    }
    for (int b = 0; b < n_buckets; b++) {
        r->lo[b] = lo[b];
        r->hi[b] = hi[b];
        AL_ASSERT(hi[b] >= lo[b] && hi[b] <= n && hi[b] - lo[b] <= (size_t)INT_MAX);
        r->req[b] = MPI_REQUEST_NULL;
        for (int k = 0; k < g_size && sharded; k++) {
            size_t s0, s1;
            al_dist_shard(n, k, g_size, &s0, &s1);
            size_t a = s0 > lo[b] ? s0 : lo[b], z = s1 < hi[b] ? s1 : hi[b];
            r->counts[(size_t)b * g_size + k] = z > a ? (int)(z - a) : 0;
        }
    }
    if (started) r->dup = mpi.Comm_dup(MPI_COMM_WORLD, &r->comm) == MPI_SUCCESS;
    return r;
}

void al_dist_reducer_free(al_dist_reducer *r) {
    if (!r) return;
    if (r->dup) mpi.Comm_free(&r->comm);
    free(r->lo);
    free(r->hi);
    free(r->req);
    free(r->state);
    free(r->counts);
    free(r);
}

static void progress(al_dist_reducer *r) {
    for (int b = 0; b < r->nb; b++)
        if (r->state[b] == 1) {
            int done = 0;
            mpi.Test(&r->req[b], &done, MPI_STATUS_IGNORE);
            if (!done) break; /* collectives complete in order: the rest wait too */
            r->state[b] = 2;
        }
}

void al_dist_reducer_start(al_dist_reducer *r, int b) {
    if (!started || !r || b < 0 || b >= r->nb || r->state[b]) return;
    float *x = r->data + r->lo[b];
    int cnt = (int)(r->hi[b] - r->lo[b]);
    if (r->sharded)
        /* in place: rank k's sum lands at the start of the bucket; wait()
         * moves it to where it belongs */
        mpi.Ireduce_scatter(MPI_IN_PLACE, x, r->counts + (size_t)b * g_size, MPI_FLOAT, MPI_SUM, r->comm,
                            &r->req[b]);
    else
        mpi.Iallreduce(MPI_IN_PLACE, x, cnt, MPI_FLOAT, MPI_SUM, r->comm, &r->req[b]);
    r->state[b] = 1;
    r->starts++;
    r->early += !r->waiting;
    progress(r);
}

int al_dist_reducer_wait(al_dist_reducer *r, char err[AL_ERRLEN]) {
    if (!started || !r) return AL_OK;
    r->waiting = 1;
    for (int b = 0; b < r->nb; b++) al_dist_reducer_start(r, b);
    r->waiting = 0;
    double t0 = mpi.Wtime();
    int rc = AL_OK;
    for (int b = 0; b < r->nb; b++) {
        if (r->state[b] == 1 && mpi.Wait(&r->req[b], MPI_STATUS_IGNORE) != MPI_SUCCESS)
            rc = al_err(err, AL_EIO, "MPI: the gradient reduction failed");
        r->state[b] = 0;
        if (r->sharded) {
            /* this rank's part of bucket b back to its place in the arena */
            size_t s0, s1;
            al_dist_shard(r->n, g_rank, g_size, &s0, &s1);
            size_t a = s0 > r->lo[b] ? s0 : r->lo[b];
            int c = r->counts[(size_t)b * g_size + g_rank];
            if (c > 0 && a != r->lo[b]) memmove(r->data + a, r->data + r->lo[b], (size_t)c * sizeof(float));
        }
        r->bytes += (double)(r->hi[b] - r->lo[b]) * sizeof(float);
    }
    r->wait_s += mpi.Wtime() - t0;
    r->rounds++;
    return rc;
}

void al_dist_reducer_stats(const al_dist_reducer *r, long *rounds, double *bytes, double *wait_s, double *early) {
    *rounds = r ? r->rounds : 0;
    *bytes = r && r->rounds ? r->bytes / (double)r->rounds : 0;
    *wait_s = r ? r->wait_s : 0;
    *early = r && r->starts ? (double)r->early / (double)r->starts : 0;
}

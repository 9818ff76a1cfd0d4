/* The shared compute pool (pool.h).
 *
 * Structure: n-1 worker threads plus the caller of al_pool_run, which is
 * thread 0. A job is published by storing fn/ctx and bumping a generation
 * counter; each worker runs fn once per generation, then decrements
 * `pending`; the caller runs its own share, then waits for pending == 0.
 *
 * Waiting: both sides spin on the atomics for about SPIN_NS (so that a
 * training step's back-to-back kernels do not pay a futex round trip each),
 * then block on a condition variable, so idle threads cost no CPU. Every
 * state change that a sleeper waits for is made while holding `mu` and is
 * followed by a broadcast/signal, so no wake-up is lost.
 *
 * Threads: run_mu serialises al_pool_run between client threads (jobs take
 * turns on the cores). A thread-local flag marks code running inside a pool
 * function; al_pool_run from there runs inline with nthreads = 1, and
 * al_pool_threads reports 1 there, so nested kernels take their serial path.
 * Pool threads start with all signals blocked (STYLE.md §6). */
#include "compute/pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "al.h"

#define POOL_MAX AL_POOL_MAX
#define SPIN_NS 50000L      /* spin this long before blocking on the condvar */

typedef struct pool_arg {
    int tid;
    unsigned seen0;         /* generation current when the thread was created */
} pool_arg;

static struct {
    pthread_mutex_t init_mu;   /* init/shutdown */
    pthread_mutex_t run_mu;    /* one job at a time */
    pthread_mutex_t mu;        /* guards sleeping on cv_work / cv_done */
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
    atomic_int n;              /* threads, 1 when not started */
    atomic_uint gen;           /* job generation */
    atomic_int pending;        /* workers still running the current job */
    atomic_int stop;
    al_pool_fn fn;             /* current job; written before gen is bumped */
    void *ctx;
    int inited;                /* al_pool_init has run (guarded by init_mu) */
    int nthreads;              /* threads actually created + 1 */
    pthread_t th[POOL_MAX];
    pool_arg args[POOL_MAX];
} g_pool = {
    .init_mu = PTHREAD_MUTEX_INITIALIZER,
    .run_mu = PTHREAD_MUTEX_INITIALIZER,
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv_work = PTHREAD_COND_INITIALIZER,
    .cv_done = PTHREAD_COND_INITIALIZER,
    .n = 1,
    .nthreads = 1,
};

static _Thread_local int t_in_pool;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void *pool_main(void *argp) {
    const pool_arg *a = argp;
    int tid = a->tid;
    unsigned seen = a->seen0;
    t_in_pool = 1;
    for (;;) {
        /* Spin briefly for the next job, then sleep. */
        long t0 = now_ns();
        int got = 0;
        for (int i = 1;; i++) {
            if (atomic_load_explicit(&g_pool.gen, memory_order_acquire) != seen ||
                atomic_load_explicit(&g_pool.stop, memory_order_acquire)) {
                got = 1;
                break;
            }
            cpu_relax();
            if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS) break;
        }
        if (!got) {
            pthread_mutex_lock(&g_pool.mu);
            while (atomic_load_explicit(&g_pool.gen, memory_order_acquire) == seen &&
                   !atomic_load_explicit(&g_pool.stop, memory_order_acquire))
                pthread_cond_wait(&g_pool.cv_work, &g_pool.mu);
            pthread_mutex_unlock(&g_pool.mu);
        }
        if (atomic_load_explicit(&g_pool.stop, memory_order_acquire)) break;
        seen = atomic_load_explicit(&g_pool.gen, memory_order_acquire);
        al_pool_fn fn = g_pool.fn;
        void *ctx = g_pool.ctx;
        fn(ctx, tid, g_pool.nthreads);
        if (atomic_fetch_sub_explicit(&g_pool.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&g_pool.mu);
            pthread_cond_signal(&g_pool.cv_done);
            pthread_mutex_unlock(&g_pool.mu);
        }
    }
    return NULL;
}

/* A child of fork() has only the thread that forked: its pool runs every
 * job on that thread (and may be started again). */
static void pool_after_fork_child(void) {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cfresh = PTHREAD_COND_INITIALIZER;
    g_pool.init_mu = fresh;
    g_pool.run_mu = fresh;
    g_pool.mu = fresh;
    g_pool.cv_work = cfresh;
    g_pool.cv_done = cfresh;
    g_pool.nthreads = 1;
    atomic_store_explicit(&g_pool.n, 1, memory_order_relaxed);
    atomic_store_explicit(&g_pool.stop, 0, memory_order_relaxed);
    g_pool.inited = 0;
}

/* Stops and joins threads th[1..k). Caller holds init_mu and run_mu. */
static void pool_stop(int k) {
    pthread_mutex_lock(&g_pool.mu);
    atomic_store_explicit(&g_pool.stop, 1, memory_order_release);
    pthread_cond_broadcast(&g_pool.cv_work);
    pthread_mutex_unlock(&g_pool.mu);
    for (int i = 1; i < k; i++) pthread_join(g_pool.th[i], NULL);
    atomic_store_explicit(&g_pool.stop, 0, memory_order_release);
    g_pool.nthreads = 1;
    atomic_store_explicit(&g_pool.n, 1, memory_order_release);
}

int al_pool_init(int n) {
    int rc = AL_OK;
    pthread_mutex_lock(&g_pool.init_mu);
    if (g_pool.inited) goto out;
    static int atfork_set;
    if (!atfork_set && pthread_atfork(NULL, NULL, pool_after_fork_child) == 0) atfork_set = 1;
    /* the environment picks the thread count of any program (tests, benches
     * and other floating-point paths: results depend on it) */
    const char *env = getenv("ALIGND_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == 0 && v >= 1 && v <= POOL_MAX) n = (int)v;
    }
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)(c < POOL_MAX ? c : POOL_MAX) : 1;
    }
    if (n > POOL_MAX) n = POOL_MAX;
    if (n == 1) goto done;

    pthread_mutex_lock(&g_pool.run_mu);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    unsigned gen = atomic_load_explicit(&g_pool.gen, memory_order_acquire);
    g_pool.nthreads = n;
    int k;
    for (k = 1; k < n; k++) {
        g_pool.args[k].tid = k;
        g_pool.args[k].seen0 = gen;
        int e = pthread_create(&g_pool.th[k], NULL, pool_main, &g_pool.args[k]);
        if (e != 0) {
            rc = e == ENOMEM || e == EAGAIN ? AL_ENOMEM : -e;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != AL_OK) pool_stop(k);
    else atomic_store_explicit(&g_pool.n, n, memory_order_release);
    pthread_mutex_unlock(&g_pool.run_mu);
    if (rc != AL_OK) goto out;
done:
    g_pool.inited = 1;
out:
    pthread_mutex_unlock(&g_pool.init_mu);
    return rc;
}

void al_pool_shutdown(void) {
    pthread_mutex_lock(&g_pool.init_mu);
    if (g_pool.nthreads > 1) {
        pthread_mutex_lock(&g_pool.run_mu);
        pool_stop(g_pool.nthreads);
        pthread_mutex_unlock(&g_pool.run_mu);
    }
    g_pool.inited = 0;
    pthread_mutex_unlock(&g_pool.init_mu);
}

int al_pool_threads(void) {
    if (t_in_pool) return 1;
    return atomic_load_explicit(&g_pool.n, memory_order_acquire);
}

void al_pool_run(al_pool_fn fn, void *ctx) {
    if (t_in_pool) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&g_pool.run_mu);
    int n = g_pool.nthreads;
    t_in_pool = 1;
    if (n == 1) {
        fn(ctx, 0, 1);
        t_in_pool = 0;
        pthread_mutex_unlock(&g_pool.run_mu);
        return;
    }
    g_pool.fn = fn;
    g_pool.ctx = ctx;
    atomic_store_explicit(&g_pool.pending, n - 1, memory_order_relaxed);
    pthread_mutex_lock(&g_pool.mu);
    atomic_fetch_add_explicit(&g_pool.gen, 1, memory_order_release);
    pthread_cond_broadcast(&g_pool.cv_work);
    pthread_mutex_unlock(&g_pool.mu);

    fn(ctx, 0, n);

    long t0 = now_ns();
    int done = 0;
    for (int i = 1;; i++) {
        if (atomic_load_explicit(&g_pool.pending, memory_order_acquire) == 0) {
            done = 1;
            break;
        }
        cpu_relax();
        if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS) break;
    }
    if (!done) {
        pthread_mutex_lock(&g_pool.mu);
        while (atomic_load_explicit(&g_pool.pending, memory_order_acquire) != 0)
            pthread_cond_wait(&g_pool.cv_done, &g_pool.mu);
        pthread_mutex_unlock(&g_pool.mu);
    }
    t_in_pool = 0;
    pthread_mutex_unlock(&g_pool.run_mu);
}

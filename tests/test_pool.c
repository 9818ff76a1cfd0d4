/* Tests for the compute pool (lib/compute/pool.c): thread ids and counts,
 * al_split, nested calls, concurrent callers, idle threads sleeping,
 * shutdown and restart. Also run under ThreadSanitizer. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "al.h"
#include "compute/pool.h"
#include "t.h"

#define MAXT 8

/* ---- every thread id runs exactly once per run ---- */

typedef struct count_ctx {
    atomic_int hits[MAXT];
    atomic_int bad_n;        /* calls whose nthreads differed from expected */
    atomic_int bad_tid;
    int expect_n;
} count_ctx;

static void count_fn(void *p, int tid, int nt) {
    count_ctx *c = p;
    if (nt != c->expect_n) atomic_fetch_add(&c->bad_n, 1);
    if (tid < 0 || tid >= nt || tid >= MAXT) {
        atomic_fetch_add(&c->bad_tid, 1);
        return;
    }
    atomic_fetch_add(&c->hits[tid], 1);
}

static void check_counts(int n, int runs) {
    count_ctx c = {.expect_n = n};
    int exact = 1;
    for (int r = 0; r < runs; r++) {
        al_pool_run(count_fn, &c);
        /* all of run r is finished when al_pool_run returns */
        for (int i = 0; i < n; i++)
            if (atomic_load(&c.hits[i]) != r + 1) exact = 0;
    }
    T_TRUE(exact);
    T_EQ_INT(atomic_load(&c.bad_n), 0);
    T_EQ_INT(atomic_load(&c.bad_tid), 0);
    for (int i = 0; i < n; i++) T_EQ_INT(atomic_load(&c.hits[i]), runs);
    for (int i = n; i < MAXT; i++) T_EQ_INT(atomic_load(&c.hits[i]), 0);
}

/* ---- al_split ---- */

static void test_split(void) {
    int ok = 1;
    for (long n = 0; n <= 200; n++)
        for (int parts = 1; parts <= 9; parts++) {
            long prev = 0, minsz = n + 1, maxsz = -1;
            for (int i = 0; i < parts; i++) {
                long lo, hi;
                al_split(n, parts, i, &lo, &hi);
                if (lo != prev || hi < lo) ok = 0;
                if (hi - lo < minsz) minsz = hi - lo;
                if (hi - lo > maxsz) maxsz = hi - lo;
                prev = hi;
            }
            if (prev != n || maxsz - minsz > 1) ok = 0;
        }
    T_TRUE(ok);
    long lo, hi;
    al_split(10, 3, 0, &lo, &hi);
    T_EQ_INT(lo, 0);
    T_EQ_INT(hi, 4);
    al_split(10, 3, 1, &lo, &hi);
    T_EQ_INT(lo, 4);
    T_EQ_INT(hi, 7);
    al_split(10, 3, 2, &lo, &hi);
    T_EQ_INT(lo, 7);
    T_EQ_INT(hi, 10);
    al_split(2, 4, 3, &lo, &hi); /* more parts than items: empty tail */
    T_EQ_INT(hi - lo, 0);
    long big = 3000000000L;
    al_split(big, 7, 6, &lo, &hi);
    T_EQ_INT(hi, big);
}

/* ---- sums over split ranges: the work really is partitioned ---- */

typedef struct sum_ctx {
    const int *x;
    long n;
    long long part[MAXT];
} sum_ctx;

static void sum_fn(void *p, int tid, int nt) {
    sum_ctx *s = p;
    long lo, hi;
    al_split(s->n, nt, tid, &lo, &hi);
    long long acc = 0;
    for (long i = lo; i < hi; i++) acc += s->x[i];
    s->part[tid] = acc;
}

static long long pool_sum(const int *x, long n) {
    sum_ctx s = {.x = x, .n = n};
    al_pool_run(sum_fn, &s);
    long long t = 0;
    for (int i = 0; i < MAXT; i++) t += s.part[i];
    return t;
}

/* ---- nested calls run inline ---- */

static _Thread_local int t_marker;

typedef struct nest_ctx {
    atomic_int outer_calls;
    atomic_int inner_calls;
    atomic_int inner_bad;      /* inner ran with tid != 0 or n != 1 */
    atomic_int wrong_thread;   /* inner ran on another thread */
    atomic_int threads_inside; /* al_pool_threads() != 1 inside fn */
} nest_ctx;

static void inner_fn(void *p, int tid, int nt) {
    nest_ctx *c = p;
    atomic_fetch_add(&c->inner_calls, 1);
    if (tid != 0 || nt != 1) atomic_fetch_add(&c->inner_bad, 1);
    if (t_marker != 1) atomic_fetch_add(&c->wrong_thread, 1);
}

static void outer_fn(void *p, int tid, int nt) {
    (void)tid;
    (void)nt;
    nest_ctx *c = p;
    atomic_fetch_add(&c->outer_calls, 1);
    if (al_pool_threads() != 1) atomic_fetch_add(&c->threads_inside, 1);
    t_marker = 1;
    al_pool_run(inner_fn, c);
    al_pool_run(inner_fn, c);
    t_marker = 0;
}

static void test_nested(int n) {
    nest_ctx c = {0};
    al_pool_run(outer_fn, &c);
    T_EQ_INT(atomic_load(&c.outer_calls), n);
    T_EQ_INT(atomic_load(&c.inner_calls), 2 * n);
    T_EQ_INT(atomic_load(&c.inner_bad), 0);
    T_EQ_INT(atomic_load(&c.wrong_thread), 0);
    T_EQ_INT(atomic_load(&c.threads_inside), 0);
}

/* ---- concurrent callers: both complete, jobs never overlap ---- */

static atomic_int g_active[2];
static atomic_int g_overlap;

typedef struct job_ctx {
    int id;
    const int *x;
    long n;
    long long part[MAXT];
} job_ctx;

static void job_fn(void *p, int tid, int nt) {
    job_ctx *j = p;
    atomic_fetch_add(&g_active[j->id], 1);
    if (atomic_load(&g_active[1 - j->id]) != 0) atomic_fetch_add(&g_overlap, 1);
    long lo, hi;
    al_split(j->n, nt, tid, &lo, &hi);
    long long acc = 0;
    for (long i = lo; i < hi; i++) acc += (long long)j->x[i] * (j->id + 1);
    j->part[tid] = acc;
    atomic_fetch_sub(&g_active[j->id], 1);
}

typedef struct client {
    int id, runs, wrong;
    const int *x;
    long n;
    long long expect;
} client;

static void *client_main(void *p) {
    client *c = p;
    for (int r = 0; r < c->runs; r++) {
        job_ctx j = {.id = c->id, .x = c->x, .n = c->n};
        al_pool_run(job_fn, &j);
        long long t = 0;
        for (int i = 0; i < MAXT; i++) t += j.part[i];
        if (t != c->expect) c->wrong++;
    }
    return NULL;
}

static void test_concurrent(const int *x, long n, long long sum) {
    client cl[2] = {{.id = 0, .runs = 300, .x = x, .n = n, .expect = sum},
                    {.id = 1, .runs = 300, .x = x, .n = n, .expect = 2 * sum}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) T_EQ_INT(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    T_EQ_INT(cl[0].wrong, 0);
    T_EQ_INT(cl[1].wrong, 0);
    T_EQ_INT(atomic_load(&g_overlap), 0);
}

/* ---- idle workers block instead of spinning ---- */

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nop_fn(void *p, int tid, int nt) {
    (void)p;
    (void)tid;
    (void)nt;
}

/* A spinning worker would use ~0.2 s of CPU in a 0.2 s sleep; blocking after
 * 50 us uses ~0. CPU accounting on a loaded machine (other tests run in
 * parallel) can be noisy, so take the best of three sleeps: a pool that
 * spins fails all three. */
static void test_idle(void) {
    double best = 1e9;
    for (int attempt = 0; attempt < 3 && best >= 0.05; attempt++) {
        al_pool_run(nop_fn, NULL);
        double c0 = cpu_seconds();
        struct timespec d = {0, 200 * 1000 * 1000};
        nanosleep(&d, NULL);
        double used = cpu_seconds() - c0;
        if (used < best) best = used;
    }
    T_TRUE(best < 0.05);
    if (best >= 0.05) fprintf(stderr, "idle pool used %.3f s of CPU in 0.2 s\n", best);
}

int main(void) {
    enum { NX = 100003 };
    static int x[NX];
    long long sum = 0;
    for (int i = 0; i < NX; i++) {
        x[i] = (i * 7919) % 1000 - 500;
        sum += x[i];
    }

    /* before init: one thread, inline */
    T_EQ_INT(al_pool_threads(), 1);
    check_counts(1, 3);
    T_EQ_INT(pool_sum(x, NX), sum);

    test_split();

    T_OK(al_pool_init(2));
    T_EQ_INT(al_pool_threads(), 2);
    T_OK(al_pool_init(3)); /* idempotent */
    T_EQ_INT(al_pool_threads(), 2);
    check_counts(2, 2000);
    T_EQ_INT(pool_sum(x, NX), sum);
    T_EQ_INT(pool_sum(x, 1), x[0]);
    T_EQ_INT(pool_sum(x, 0), 0);
    test_nested(2);
    test_concurrent(x, NX, sum);
    test_idle();
    check_counts(2, 10); /* still works after sleeping */

    /* shutdown, inline again, then a bigger pool */
    al_pool_shutdown();
    T_EQ_INT(al_pool_threads(), 1);
    check_counts(1, 5);
    test_nested(1);
    al_pool_shutdown(); /* twice is harmless */
    T_OK(al_pool_init(4));
    T_EQ_INT(al_pool_threads(), 4);
    check_counts(4, 500);
    T_EQ_INT(pool_sum(x, NX), sum);
    test_nested(4);
    al_pool_shutdown();

    /* 0 = one thread per online core */
    T_OK(al_pool_init(0));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    T_EQ_INT(al_pool_threads(), cores > 0 ? (cores < 256 ? cores : 256) : 1);
    if (al_pool_threads() <= MAXT) check_counts(al_pool_threads(), 100);
    al_pool_shutdown();
    return t_done();
}

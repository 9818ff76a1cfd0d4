/* OpenBLAS opened on first use (blas.h).
 *
 * Why not linked: a linked OpenBLAS is loaded and relocated at start-up,
 * used or not, with libgfortran and libquadmath behind it, and its
 * constructor starts a server thread (which mallocs its buffer). Measured
 * on an SFT-LoRA bf16 step of the tiny shape, whose products all run on
 * oneDNN and which never calls OpenBLAS: ~2.3 MB of its ~37 MB peak RSS
 * (libopenblas 1.6 MB resident, most of it the symbol and relocation
 * tables the loader reads whole; libgfortran 0.45, libquadmath 0.15; the
 * thread's stack; /proc/PID/smaps by mapping). Peak RSS 37.1-37.7 MB
 * linked, 34.2-35.1 opened here (bench_train --mode lora --dtype bf16
 * --shape tiny --steps 20 --warmup 2 --threads 2, 4 alternating pairs,
 * 2026-12-08). lib/dist/dist_mpi.c opens MPI in the same way for the same
 * reason.
 *
 * The first call, on whichever thread makes it, opens the library by its
 * soname (or else where the build found it) under pthread_once, with all
 * signals blocked so that the server thread its constructor starts never
 * takes the daemon's signals (STYLE.md §6), and makes it single-threaded
 * before any product runs, as al_pool_init did when it was linked (the
 * pool owns the cores). Later calls cost one pthread_once check and an
 * indirect call, beside a product. */
#include "compute/blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>

#include "al.h"

typedef void (*sgemm_t)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint,
                        blasint, float, const float *, blasint, const float *, blasint, float, float *,
                        blasint);
typedef void (*sgemv_t)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, blasint, blasint, float, const float *,
                        blasint, const float *, blasint, float, float *, blasint);

static struct {
    pthread_once_t once;
    sgemm_t sgemm;
    sgemv_t sgemv;
} g_blas = {.once = PTHREAD_ONCE_INIT};

static void blas_open(void) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    void *lib = dlopen(AL_OPENBLAS_LIB, RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen(AL_OPENBLAS_PATH, RTLD_NOW | RTLD_LOCAL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!lib) {
        al_log(AL_LOG_ERROR, "OpenBLAS: %s", dlerror());
        return;
    }
    void (*set_threads)(int);
    *(void **)&set_threads = dlsym(lib, "openblas_set_num_threads");
    *(void **)&g_blas.sgemm = dlsym(lib, "cblas_sgemm");
    *(void **)&g_blas.sgemv = dlsym(lib, "cblas_sgemv");
    if (set_threads) set_threads(1);
    if (!set_threads || !g_blas.sgemm || !g_blas.sgemv) {
        al_log(AL_LOG_ERROR, "OpenBLAS: %s lacks cblas_sgemm, cblas_sgemv or openblas_set_num_threads",
               AL_OPENBLAS_LIB);
        g_blas.sgemm = NULL;
        g_blas.sgemv = NULL;
    }
}

/* Every product needs the library: without it there is no result to give. */
static void blas_need(void) {
    pthread_once(&g_blas.once, blas_open);
    AL_ASSERT(g_blas.sgemm && "OpenBLAS could not be opened (see the log)");
}

void al_blas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                   blasint N, blasint K, float alpha, const float *A, blasint lda, const float *B,
                   blasint ldb, float beta, float *C, blasint ldc) {
    blas_need();
    g_blas.sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void al_blas_sgemv(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE trans, blasint m, blasint n, float alpha,
                   const float *A, blasint lda, const float *x, blasint incx, float beta, float *y,
                   blasint incy) {
    blas_need();
    g_blas.sgemv(order, trans, m, n, alpha, A, lda, x, incx, beta, y, incy);
}

int al_blas_threads(void) {
    /* dlopen with RTLD_NOLOAD opens nothing: it answers whether the process
     * has the library already (opened here, or linked by the program) */
    void *lib = dlopen(AL_OPENBLAS_LIB, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) return 0;
    int (*get_threads)(void);
    *(void **)&get_threads = dlsym(lib, "openblas_get_num_threads");
    int n = get_threads ? get_threads() : -1;
    dlclose(lib);
    return n;
}

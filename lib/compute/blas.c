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
 * indirect call, beside a product.
 *
 * Without the library a product has no result to give, so the first one
 * aborts. A daemon must not start only to die at its first fp32 job or chat
 * request: al_blas_probe opens the library in a child process, which leaves
 * this one without it, and says why it cannot be opened. */
#include "compute/blas.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* Opens the library by soname, else by the path the build found, and
 * resolves what this file calls; NULL with the reason in why otherwise. */
static void *lib_open(const char *name, const char *path, sgemm_t *sgemm, sgemv_t *sgemv,
                      void (**set_threads)(int), char *why, size_t why_n) {
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib && path) lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(why, why_n, "OpenBLAS (%s) cannot be opened: %s", name, dlerror());
        return NULL;
    }
    *(void **)set_threads = dlsym(lib, "openblas_set_num_threads");
    *(void **)sgemm = dlsym(lib, "cblas_sgemm");
    *(void **)sgemv = dlsym(lib, "cblas_sgemv");
    if (!*set_threads || !*sgemm || !*sgemv) {
        snprintf(why, why_n, "OpenBLAS (%s) lacks cblas_sgemm, cblas_sgemv or openblas_set_num_threads",
                 name);
        dlclose(lib);
        return NULL;
    }
    return lib;
}

static void blas_open(void) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    char why[AL_ERRLEN];
    void (*set_threads)(int) = NULL;
    sgemm_t sgemm = NULL;
    sgemv_t sgemv = NULL;
    void *lib = lib_open(AL_OPENBLAS_LIB, AL_OPENBLAS_PATH, &sgemm, &sgemv, &set_threads, why, sizeof why);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!lib) {
        al_log(AL_LOG_ERROR, "%s", why);
        return;
    }
    set_threads(1);
    g_blas.sgemm = sgemm;
    g_blas.sgemv = sgemv;
}

int al_blas_probe(const char *name, char err[AL_ERRLEN]) {
    const char *path = name ? NULL : AL_OPENBLAS_PATH;
    if (!name) name = AL_OPENBLAS_LIB;
    int fds[2];
    if (pipe(fds)) return al_err(err, -errno, "OpenBLAS probe: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return al_err(err, -e, "OpenBLAS probe: fork: %s", strerror(e));
    }
    if (pid == 0) { /* the child opens it and says why not, if not */
        close(fds[0]);
        char why[AL_ERRLEN] = "";
        void (*set_threads)(int);
        sgemm_t sgemm;
        sgemv_t sgemv;
        void *lib = lib_open(name, path, &sgemm, &sgemv, &set_threads, why, sizeof why);
        ssize_t w = lib ? 0 : write(fds[1], why, strlen(why));
        _exit(lib ? 0 : w >= 0 ? 1 : 2);
    }
    close(fds[1]);
    char why[AL_ERRLEN];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fds[0], why + got, sizeof why - 1 - got);
        if (r > 0 && (got += (size_t)r) < sizeof why - 1) continue;
        if (r < 0 && errno == EINTR) continue;
        break;
    }
    why[got] = 0;
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return al_err(err, -errno, "OpenBLAS probe: waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return AL_OK;
    if (got) return al_err(err, AL_ENOENT, "%s", why);
    return al_err(err, AL_ENOENT, "OpenBLAS (%s): the process that opened it ended with status %d", name, st);
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

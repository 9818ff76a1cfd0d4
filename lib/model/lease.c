/* Weight-file mappings under a read lease (fcntl(2), "Leases").
 *
 * Why: a served tensor points into a private mapping of its file, and a
 * page of it not yet copied is read from the file on every fault. If
 * another process truncates the file or rewrites it in place, the next such
 * fault raises SIGBUS and the daemon dies with every job it runs.
 *
 * How: each mapped file keeps its read-only descriptor, holding a read
 * lease (F_SETLEASE F_RDLCK). A process that opens the file for writing or
 * truncates it is then blocked by the kernel, which sends the lease holder
 * the lease signal (F_SETSIG: SIGRTMIN + AL_LEASE_SIGNAL_OFFSET, whose
 * siginfo carries the descriptor in si_fd). The handler only writes si_fd
 * into a self-pipe (write(2) is async-signal-safe; a flag could not wake a
 * thread). The watcher thread reads it and, for the mapping that descriptor
 * protects, copies the whole mapping out: a fresh anonymous mapping, a
 * memcpy from the file's, then mremap(MREMAP_MAYMOVE | MREMAP_FIXED) of the
 * copy onto the old address, which replaces the mapping atomically, so a
 * reader at any moment sees the same bytes, from the file or from the copy.
 * It then drops the lease (F_UNLCK, close) and the writer proceeds; the
 * model now holds its weights in anonymous memory. Once the loader is done
 * with a file (al_lease_detach) only the pages of the spans it serves
 * (al_lease_keep) are copied: tensors it copied into the model (GPT-2's
 * transposed Conv1D weights, say) cost neither memory nor time.
 *
 * Time: the kernel waits /proc/sys/fs/lease-break-time seconds (45 by
 * default) for the release, then breaks the lease itself. The copy runs at
 * memory speed (a 500 MB GPT-2 file in 5 s at nice 19 on a loaded 2-core
 * machine, most of it waiting for a core), so even large files should
 * finish well within it; a copy that took more than half of it is
 * logged as a warning. If the copy cannot be made (no memory for it), the
 * lease is kept: the writer waits out the break time and a fault may follow
 * (logged as an error).
 *
 * Threads: the watcher is started at the first mapping of the process (a
 * daemon, the CLI or a test alike; again in a child forked after that), with
 * every signal blocked but the lease signal, and each descriptor's owner is
 * set to it (F_SETOWN_EX F_OWNER_TID), so no other thread of the host is
 * interrupted. One mutex guards the list of leased mappings, the set-up and
 * each copy, so a mapping is never unmapped while it is copied. A stale
 * descriptor number in the pipe (its mapping unmapped, the number reused) is
 * told apart by F_GETLEASE, which reads F_RDLCK unless a break is pending.
 *
 * Not covered: Linux breaks no read lease for open(O_RDONLY | O_TRUNC)
 * (POSIX leaves it undefined; it truncates), so such a truncation still
 * faults; truncate(2) and every open for writing are covered.
 *
 * Without a lease (the file is open for writing somewhere: EAGAIN; another
 * user owns it and we lack CAP_LEASE: EACCES; a filesystem without leases,
 * some network filesystems; a host handler on the lease signal) the mapping
 * is returned unprotected, a debug line says why, and the caller serves
 * nothing from it: it copies every tensor while loading. */
#define _GNU_SOURCE
#include "lease.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../al.h"

struct al_lease {
    al_lease *next;
    int fd;             /* holds the lease; -1 once copied out */
    void *map;
    size_t size;
    atomic_int copied;
    char name[64];      /* the file's, for the log */
    uint8_t *keep;      /* bit per page: a served span touches it (NULL: none recorded) */
    int keep_all;       /* the bitmap could not be allocated: copy everything */
    int detached;       /* the loader is done: only kept pages are read any more */
};

static struct {
    pthread_mutex_t mu; /* everything below, and each copy-out */
    pthread_cond_t cv;  /* the watcher has published its tid */
    al_lease *head;
    pid_t pid;          /* the process set up (0: none yet) */
    int why;            /* 0: leases work in pid, else the errno why not */
    int sig;
    int rd;             /* the self-pipe's read end (the watcher's) */
    pid_t tid;          /* the watcher's kernel thread id */
    int break_s;        /* /proc/sys/fs/lease-break-time */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .rd = -1};

/* The write end, read by the handler (lock-free atomics are signal-safe). */
static atomic_int g_wr = -1;

static void on_signal(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    int e = errno, fd = si->si_fd;
    ssize_t n = write(atomic_load_explicit(&g_wr, memory_order_relaxed), &fd, sizeof fd);
    (void)n; /* a full pipe (16 384 breaks pending) loses one: its writer waits the break time */
    errno = e;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static size_t page_bytes(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* The bytes of l's mapping into tmp: all of them while the loader may read
 * any tensor; once it is done, only the pages of served spans (the others
 * stay untouched zero pages: no memory, no time). */
static void copy_pages(uint8_t *tmp, const al_lease *l) {
    const uint8_t *src = l->map;
    if (!l->detached || !l->keep || l->keep_all) {
        memcpy(tmp, src, l->size);
        return;
    }
    size_t pg = page_bytes(), np = (l->size + pg - 1) / pg;
    for (size_t a = 0; a < np;) {
        if (!(l->keep[a >> 3] >> (a & 7) & 1)) {
            a++;
            continue;
        }
        size_t b = a;
        while (b < np && (l->keep[b >> 3] >> (b & 7) & 1)) b++;
        size_t hi = b * pg < l->size ? b * pg : l->size;
        memcpy(tmp + a * pg, src + a * pg, hi - a * pg);
        a = b;
    }
}

/* Under g.mu: l's mapping into anonymous memory at the same address, then
 * the lease dropped. */
static void copy_out(al_lease *l) {
    double t0 = now_s();
    void *tmp = mmap(NULL, l->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (tmp == MAP_FAILED) {
        al_log(AL_LOG_ERROR,
               "event=lease_copy_failed file=%s bytes=%zu errno=%d (its writer waits %d s, then a fault may follow)",
               l->name, l->size, errno, g.break_s);
        return;
    }
    copy_pages(tmp, l);
    if (mremap(tmp, l->size, l->size, MREMAP_MAYMOVE | MREMAP_FIXED, l->map) == MAP_FAILED) {
        al_log(AL_LOG_ERROR, "event=lease_copy_failed file=%s bytes=%zu errno=%d (mremap)", l->name,
               l->size, errno);
        munmap(tmp, l->size);
        return;
    }
    atomic_store(&l->copied, 1);
    (void)fcntl(l->fd, F_SETLEASE, F_UNLCK);
    close(l->fd);
    l->fd = -1;
    double dt = now_s() - t0;
    /* info: the model now holds the file's size in anonymous memory */
    al_log(dt > 0.5 * g.break_s ? AL_LOG_WARN : AL_LOG_INFO,
           "event=lease_broken file=%s bytes=%zu copy_ms=%.0f break_time_s=%d (weights copied, writer released)",
           l->name, l->size, 1e3 * dt, g.break_s);
}

static void on_break(int fd) {
    pthread_mutex_lock(&g.mu);
    al_lease *l = g.head;
    while (l && l->fd != fd) l = l->next;
    if (l && fcntl(fd, F_GETLEASE) != F_RDLCK) copy_out(l);
    pthread_mutex_unlock(&g.mu);
}

static void *watch_main(void *arg) {
    (void)arg;
    sigset_t s;
    sigfillset(&s);
    sigdelset(&s, g.sig);
    pthread_sigmask(SIG_SETMASK, &s, NULL);
    pthread_mutex_lock(&g.mu);
    g.tid = (pid_t)syscall(SYS_gettid);
    int rd = g.rd;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    for (;;) {
        int fd;
        ssize_t n = read(rd, &fd, sizeof fd);
        if (n == (ssize_t)sizeof fd) on_break(fd);
        else if (n < 0 && errno != EINTR) break;
        else if (n == 0) break;
    }
    return NULL;
}

static int read_break_time(void) {
    FILE *f = fopen("/proc/sys/fs/lease-break-time", "r");
    int s = 45;
    if (f) {
        if (fscanf(f, "%d", &s) != 1 || s < 0) s = 45;
        fclose(f);
    }
    return s;
}

/* Under g.mu: the handler, the pipe and the watcher of this process. 0, or
 * the errno why leases are off. */
static int set_up(void) {
    pid_t pid = getpid();
    if (g.pid == pid) return g.why;
    /* first use, or a child forked after it: the parent's watcher did not follow */
    if (g.rd >= 0) {
        close(g.rd);
        close(atomic_load(&g_wr));
    }
    g.rd = -1;
    atomic_store(&g_wr, -1);
    g.pid = pid;
    g.tid = 0;
    g.break_s = read_break_time();
    g.sig = SIGRTMIN + AL_LEASE_SIGNAL_OFFSET;
    if (g.sig > SIGRTMAX) return g.why = ENOSYS;
    struct sigaction old;
    if (sigaction(g.sig, NULL, &old) != 0) return g.why = errno;
    int ours = (old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_signal;
    if (!ours && !(old.sa_flags & SA_SIGINFO) && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)
        return g.why = EBUSY; /* the host's */
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return g.why = errno;
    (void)fcntl(p[1], F_SETFL, O_NONBLOCK); /* the handler never blocks */
    g.rd = p[0];
    atomic_store(&g_wr, p[1]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    /* No SA_RESTART: the watcher's read returns EINTR after the signal,
     * which TSan needs (it runs a handler only when the thread next leaves
     * a call it intercepts; a restarted read would never leave). The signal
     * is directed at the watcher alone (F_SETOWN_EX), so no other thread
     * sees EINTR, bar a writer in the instant between F_SETLEASE and it. */
    sa.sa_flags = SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    if (sigaction(g.sig, &sa, NULL) != 0) return g.why = errno;
    pthread_attr_t at;
    pthread_t th;
    sigset_t all, prev;
    if (pthread_attr_init(&at) != 0) return g.why = ENOMEM;
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &prev);
    int e = pthread_create(&th, &at, watch_main, NULL);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    pthread_attr_destroy(&at);
    if (e != 0) return g.why = e;
    while (!g.tid) pthread_cond_wait(&g.cv, &g.mu);
    return g.why = 0;
}

int al_lease_map(int fd, const char *name, void **map, size_t *size, al_lease **lease) {
    al_lease *l = calloc(1, sizeof *l);
    pthread_mutex_lock(&g.mu);
    /* the lease first: the size and every byte read after it are the file's until we let go */
    int why = l ? set_up() : ENOMEM;
    if (!why && fcntl(fd, F_SETSIG, g.sig) != 0) why = errno;
    if (!why && fcntl(fd, F_SETLEASE, F_RDLCK) != 0) why = errno;
    if (!why) {
        struct f_owner_ex o = {.type = F_OWNER_TID, .pid = g.tid};
        (void)fcntl(fd, F_SETOWN_EX, &o); /* else the process: any thread runs the handler */
    }
    struct stat st;
    void *p = NULL;
    int rc = AL_OK;
    if (fstat(fd, &st) != 0) rc = -errno;
    else if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) rc = -EFBIG;
    else if (st.st_size > 0) {
        p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = -errno;
            p = NULL;
        }
    }
    if (rc == AL_OK && !why && p) {
        l->fd = fd;
        l->map = p;
        l->size = (size_t)st.st_size;
        snprintf(l->name, sizeof l->name, "%s", name);
        l->next = g.head;
        g.head = l;
    }
    pthread_mutex_unlock(&g.mu);
    if (rc != AL_OK || why || !p) {
        close(fd); /* drops the lease, if taken */
        free(l);
        l = NULL;
    }
    if (rc != AL_OK) return rc;
    if (why)
        al_log(AL_LOG_DEBUG, "event=weights_unleased file=%s errno=%d reason=\"%s\" (tensors copied, none served)",
               name, why, strerror(why));
    *map = p;
    *size = p ? (size_t)st.st_size : 0;
    *lease = l;
    return AL_OK;
}

void al_lease_unmap(void *map, size_t size) {
    if (!map) return;
    pthread_mutex_lock(&g.mu);
    al_lease **at = &g.head;
    while (*at && (*at)->map != map) at = &(*at)->next;
    al_lease *l = *at;
    if (l) *at = l->next;
    pthread_mutex_unlock(&g.mu);
    munmap(map, size);
    if (l && l->fd >= 0) close(l->fd);
    if (l) free(l->keep);
    free(l);
}

void al_lease_keep(al_lease *lease, const void *p, size_t n) {
    if (!lease || n == 0) return;
    pthread_mutex_lock(&g.mu);
    size_t pg = page_bytes(), np = (lease->size + pg - 1) / pg;
    if (!lease->keep && !lease->keep_all) {
        lease->keep = calloc((np + 7) / 8, 1);
        lease->keep_all = !lease->keep;
    }
    uintptr_t base = (uintptr_t)lease->map, a = (uintptr_t)p;
    if (lease->keep && a >= base && a + n <= base + lease->size)
        for (size_t k = (a - base) / pg; k <= (a + n - 1 - base) / pg && k < np; k++)
            lease->keep[k >> 3] |= (uint8_t)(1u << (k & 7));
    pthread_mutex_unlock(&g.mu);
}

void al_lease_detach(al_lease *lease) {
    if (!lease) return;
    pthread_mutex_lock(&g.mu);
    lease->detached = 1;
    pthread_mutex_unlock(&g.mu);
}

int al_lease_copied(const al_lease *lease) {
    return lease ? atomic_load(&lease->copied) : 0;
}

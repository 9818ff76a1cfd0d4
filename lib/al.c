/* Core utilities: error names, logging hook, RNG, aligned allocation. */
/* MAP_ANONYMOUS and MADV_HUGEPAGE are not POSIX */
#define _DEFAULT_SOURCE
#include "al.h"

#include <sys/mman.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *al_strerror(int rc) {
    switch (rc) {
    case AL_OK: return "ok";
    case AL_ENOMEM: return "out of memory";
    case AL_EIO: return "I/O error";
    case AL_EINVAL: return "invalid argument";
    case AL_ENOSPC: return "no space left on device";
    case AL_ENOENT: return "not found";
    case AL_ECANCELED: return "cancelled";
    case AL_EFORMAT: return "malformed input";
    case AL_ESHAPE: return "shape mismatch";
    case AL_ENAN: return "non-finite value";
    case AL_EUNSUP: return "unsupported";
    case AL_ERANGE: return "out of range";
    case AL_EPAUSED: return "paused";
    default: return rc < 0 ? strerror(-rc) : "unknown";
    }
}

int al_err(char err[AL_ERRLEN], int rc, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, AL_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return rc;
}

char *al_names_join(char *dst, size_t cap, const char *const *names, const char *quote, const char *last) {
    size_t len = 0;
    dst[0] = 0;
    for (int i = 0; names[i] && len < cap; i++) {
        const char *sep = i == 0 ? "" : names[i + 1] ? ", " : last;
        len += (size_t)snprintf(dst + len, cap - len, "%s%s%s%s", sep, quote, names[i], quote);
    }
    return dst;
}

int al_fail_at(al_error *e, int rc, const char *field_fmt, const char *fmt, ...) {
    if (!e) return rc;
    va_list ap, fp;
    va_start(ap, fmt);
    va_copy(fp, ap);
    /* field_fmt is fmt's beginning: it reads the leading arguments (C leaves
     * the ones a format does not use alone) */
    vsnprintf(e->field, sizeof e->field, field_fmt, fp);
    va_end(fp);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return rc;
}

int al_failf(al_error *e, int rc, const char *fmt, ...) {
    if (!e) return rc;
    va_list ap;
    va_start(ap, fmt);
    e->field[0] = 0;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return rc;
}

int al_fail_as(al_error *e, int rc, const char *field, const char *msg) {
    if (!e) return rc;
    if (field != e->field) snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    if (msg != e->msg) snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "");
    return rc;
}

int al_fail_wrap(al_error *e, int rc, const char *dflt, const char *prefix, const al_error *src) {
    if (!e) return rc;
    snprintf(e->field, sizeof e->field, "%s", src->field[0] ? src->field : dflt ? dflt : "");
    return al_err(e->msg, rc, "%s: %s", prefix, src->msg);
}

void al_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "alignd: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

static void log_stderr(void *ud, al_log_level lvl, const char *msg) {
    (void)ud;
    static const char *names[8] = {"", "", "", "error", "warn", "", "info", "debug"};
    fprintf(stderr, "level=%s %s\n", names[lvl & 7], msg);
}

static al_log_fn g_log_fn = log_stderr;
static void *g_log_ud;

void al_log_set(al_log_fn fn, void *ud) {
    g_log_fn = fn ? fn : log_stderr;
    g_log_ud = ud;
}

void al_log(al_log_level lvl, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log_fn(g_log_ud, lvl, buf);
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void al_rng_seed(al_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t al_rng_u64(al_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float al_rng_uniform(al_rng *r) { return (float)(al_rng_u64(r) >> 40) * 0x1.0p-24f; }

float al_rng_normal(al_rng *r) {
    /* Box-Muller in double; u1 in (0, 1] so the log is finite. */
    double u1 = ((double)(al_rng_u64(r) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(al_rng_u64(r) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t al_rng_below(al_rng *r, uint32_t n) {
    AL_ASSERT(n > 0);
    /* Lemire's multiply-shift with rejection: unbiased. */
    uint64_t m = (uint64_t)(uint32_t)(al_rng_u64(r) >> 32) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t t = -n % n;
        while (l < t) {
            m = (uint64_t)(uint32_t)(al_rng_u64(r) >> 32) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void *al_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    size_t bytes = n * size;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    void *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void al_free(void *p) { free(p); }

#define AL_HUGE ((size_t)2 << 20)

static size_t page_round(size_t bytes) {
    size_t pg = 4096;
    return bytes == 0 ? pg : (bytes + pg - 1) & ~(pg - 1);
}

void *al_alloc_pages(size_t bytes) {
    size_t len = page_round(bytes);
    if (len < bytes) return NULL; /* overflow */
    if (len < AL_HUGE) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    /* over-map, keep a 2 MiB-aligned window, give the rest back */
    size_t total = len + AL_HUGE;
    if (total < len) return NULL;
    uint8_t *b = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)b + AL_HUGE - 1) & ~(uintptr_t)(AL_HUGE - 1));
    if (a > b) munmap(b, (size_t)(a - b));
    size_t tail = (size_t)(b + total - (a + len));
    if (tail) munmap(a + len, tail);
    (void)madvise(a, len, MADV_HUGEPAGE); /* advice: fewer page faults, no more */
    return a;
}

void al_free_pages(void *p, size_t bytes) {
    if (p) munmap(p, page_round(bytes));
}

void al_release_pages(void *p, size_t bytes) {
    uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)p + bytes) & ~(uintptr_t)4095;
    if (p && hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice: memory, not results */
}

double al_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

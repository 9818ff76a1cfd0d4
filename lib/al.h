/* alignd core: error codes, assertions, logging hook, RNG and aligned buffers.
 *
 * Every lib/ module includes this header. lib/ never prints directly: it logs
 * through the callback installed with al_log_set (default: stderr), and it
 * never calls exit(). Functions return AL_OK (0) or a negative code. */
#ifndef AL_H
#define AL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* Error spaces. A function that returns int returns 0 (AL_OK, STORE_OK, ...)
 * on success and a negative code on failure, from its layer's space. The
 * spaces never overlap, so a code passed up a layer keeps its meaning:
 *
 *   -1 .. -999      errno values, negated (AL_ENOMEM = -ENOMEM, ...): any layer
 *   -1000 .. -1999  lib/: the domain codes below
 *   -2000 .. -2099  daemon/store.h: STORE_E*
 *   -2100 .. -2199  daemon/hub.h: HUB_E* (hub_strerror names them for the API)
 *
 * api/ has no codes: its functions return -1 with an api_error (the HTTP
 * status and OpenAI's error fields, api/backend.h).
 *
 * The reason of a failure is one line in a buffer of AL_ERRLEN bytes: every
 * layer's messages (lib's, the store's, the Hub client's, the API's) use this
 * one size. */
#define AL_ERRLEN 512

enum {
    AL_OK = 0,
    AL_ENOMEM = -ENOMEM,
    AL_EIO = -EIO,
    AL_EINVAL = -EINVAL,
    AL_ENOSPC = -ENOSPC,
    AL_ENOENT = -ENOENT,
    AL_ECANCELED = -ECANCELED,
    AL_EFORMAT = -1000, /* a file or body is not what it claims to be */
    AL_ESHAPE = -1001,  /* a tensor has the wrong shape or dtype */
    AL_ENAN = -1002,    /* a loss or gradient is not finite */
    AL_EUNSUP = -1003,  /* well-formed, but a feature we do not implement */
    AL_ERANGE = -1004,  /* a value outside its allowed range */
    AL_EPAUSED = -1005, /* a run stopped at a checkpoint because it was asked to pause */
};

/* A short description of a return code: every AL_E* above by its own
 * wording ("malformed input"), other errno values by strerror. Never NULL. */
const char *al_strerror(int rc);

/* Formats a one-line reason into err (may be NULL) and returns rc, so that
 * error paths read `return al_err(err, AL_EFORMAT, "bad %s", name);`. */
int al_err(char err[AL_ERRLEN], int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the NULL-terminated names for a message, as `"a", "b" or "c"`
 * (quote "\"", last " or ") or `a, b, c` (quote "", last ", "), cut to cap
 * bytes. Returns dst. */
char *al_names_join(char *dst, size_t cap, const char *const *names, const char *quote, const char *last);

/* A refusal of input that names the field at fault as data: the parsers of
 * what users send (job descriptions, dataset_info, graders, objectives'
 * settings) fill one, and the API answers with `field` as the error's
 * `param`. field is the field's path ("hyperparameters.beta",
 * "training_files[2].weight", "eval_tasks[0].grader.regex"), "" when no one
 * field is at fault; msg is the one-line reason, which starts with the path:
 * "hyperparameters.beta: must be a finite number > 0 (got -1)". */
#define AL_FIELDLEN 160
typedef struct al_error {
    char field[AL_FIELDLEN];
    char msg[AL_ERRLEN];
} al_error;

/* Fills e (may be NULL) and returns rc:
 *   return AL_FAIL(e, AL_EINVAL, "%s.rows", "must be an integer", path);
 * gives field "<path>.rows" and msg "<path>.rows: must be an integer". The
 * field's format takes the first of the arguments, the message's the rest;
 * the compiler checks both as one format. */
#define AL_FAIL(e, rc, field_fmt, ...) al_fail_at((e), (rc), field_fmt, field_fmt ": " __VA_ARGS__)
int al_fail_at(al_error *e, int rc, const char *field_fmt, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with no field at fault (field ""). */
int al_failf(al_error *e, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A reason written elsewhere (msg, kept as it is) blamed on field; msg may
 * be e->msg itself (a reason already there, now blamed on field). */
int al_fail_as(al_error *e, int rc, const char *field, const char *msg);
/* A failure reported by a callee (src) as the caller's: msg "<prefix>:
 * <src->msg>", blamed on src's field, or on dflt when src names none. */
int al_fail_wrap(al_error *e, int rc, const char *dflt, const char *prefix, const al_error *src);

/* Always-on check for programmer errors (never for bad input). */
#define AL_ASSERT(cond)                                                      \
    do {                                                                     \
        if (!(cond)) al_assert_fail(#cond, __FILE__, __LINE__);              \
    } while (0)
void al_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

/* Logging: lib reports through one process-wide callback. */
typedef enum { AL_LOG_ERROR = 3, AL_LOG_WARN = 4, AL_LOG_INFO = 6, AL_LOG_DEBUG = 7 } al_log_level;
typedef void (*al_log_fn)(void *ud, al_log_level lvl, const char *msg);
void al_log_set(al_log_fn fn, void *ud);
void al_log(al_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Deterministic RNG (xoshiro256**), seeded by splitmix64. Not thread-safe:
 * each user owns one. The whole state is 4 words so it checkpoints exactly. */
typedef struct al_rng { uint64_t s[4]; } al_rng;
void al_rng_seed(al_rng *r, uint64_t seed);
uint64_t al_rng_u64(al_rng *r);
float al_rng_uniform(al_rng *r);            /* [0, 1) with 24 random bits */
float al_rng_normal(al_rng *r);             /* standard normal, Box-Muller */
uint32_t al_rng_below(al_rng *r, uint32_t n); /* uniform in [0, n), n > 0 */

/* 64-byte aligned, zeroed allocation; al_free(NULL) is a no-op. */
void *al_calloc(size_t n, size_t size);
void al_free(void *p);
/* Large zeroed arenas (weights, gradients, activations) straight from the
 * kernel: page-aligned (2 MiB when large, with transparent huge pages asked
 * for), zero pages that become resident only when first written, so a
 * reservation costs no memset and no memory until used. Free with
 * al_free_pages and the same byte count; al_free_pages(NULL, n) is a no-op.
 * NULL when memory runs out. */
void *al_alloc_pages(size_t bytes);
void al_free_pages(void *p, size_t bytes);
/* Gives the whole pages inside [p, p + bytes) of an al_alloc_pages arena
 * back to the kernel (they read as zeros afterwards): an arena being
 * emptied piece by piece stops counting in the resident set as it goes. */
void al_release_pages(void *p, size_t bytes);

/* Monotonic seconds, for throughput figures only (never for results). */
double al_now(void);

/* Wall-clock-free helpers */
static inline size_t al_min_sz(size_t a, size_t b) { return a < b ? a : b; }

#endif

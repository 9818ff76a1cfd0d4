/* Minimal test harness. Assertions print the expression and both values and
 * keep going; t_done() prints "N passed, N failed" and returns the exit code.
 *
 *   T_EQ_INT(a, b); T_NEAR(a, b, tol); T_TRUE(x); T_STR_EQ(a, b); T_OK(rc)
 */
#ifndef T_H
#define T_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int t_pass_, t_fail_;

#define T_REPORT_(ok, ...)                                                   \
    do {                                                                     \
        if (ok) {                                                            \
            t_pass_++;                                                       \
        } else {                                                             \
            t_fail_++;                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);             \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

#define T_TRUE(x) T_REPORT_((x), "%s", #x)
#define T_EQ_INT(a, b)                                                       \
    do {                                                                     \
        long long ta_ = (long long)(a), tb_ = (long long)(b);                \
        T_REPORT_(ta_ == tb_, "%s == %s (%lld vs %lld)", #a, #b, ta_, tb_);  \
    } while (0)
#define T_NEAR(a, b, tol)                                                    \
    do {                                                                     \
        double ta_ = (double)(a), tb_ = (double)(b);                         \
        T_REPORT_(fabs(ta_ - tb_) <= (tol), "%s ~ %s (%.9g vs %.9g, tol %g)", \
                  #a, #b, ta_, tb_, (double)(tol));                          \
    } while (0)
#define T_STR_EQ(a, b)                                                       \
    do {                                                                     \
        const char *ta_ = (a), *tb_ = (b);                                   \
        T_REPORT_(ta_ && tb_ && strcmp(ta_, tb_) == 0, "%s == %s (\"%s\" vs \"%s\")", \
                  #a, #b, ta_ ? ta_ : "(null)", tb_ ? tb_ : "(null)");       \
    } while (0)
#define T_OK(rc)                                                             \
    do {                                                                     \
        int trc_ = (rc);                                                     \
        T_REPORT_(trc_ == 0, "%s returned %d", #rc, trc_);                   \
    } while (0)

static char t_dir_[1024];
static int t_dir_own_; /* made under /tmp: removed by t_done when all passed */

/* A fresh scratch directory for this test: $AL_TEST_TMP (ctest sets one in
 * the build tree, kept as an artefact) or /tmp/al_test_<pid>. */
static inline const char *t_tmpdir(void) {
    if (!t_dir_[0]) {
        const char *e = getenv("AL_TEST_TMP");
        if (e && *e) snprintf(t_dir_, sizeof t_dir_, "%s", e);
        else snprintf(t_dir_, sizeof t_dir_, "/tmp/al_test_%ld", (long)getpid());
        t_dir_own_ = !(e && *e);
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", t_dir_, t_dir_);
        if (system(cmd) != 0) { fprintf(stderr, "cannot make %s\n", t_dir_); exit(2); }
    }
    return t_dir_;
}

/* Prints the tally; a /tmp scratch directory goes when every check passed
 * (a failure keeps it for a look). */
static inline int t_done(void) {
    printf("%d passed, %d failed\n", t_pass_, t_fail_);
    if (!t_fail_ && t_dir_own_) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t_dir_);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", t_dir_);
    }
    return t_fail_ ? 1 : 0;
}

#endif

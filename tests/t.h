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

static inline int t_done(void) {
    printf("%d passed, %d failed\n", t_pass_, t_fail_);
    return t_fail_ ? 1 : 0;
}

/* A fresh scratch directory for this test: $AL_TEST_TMP or /tmp/al_test_<pid>. */
static inline const char *t_tmpdir(void) {
    static char dir[1024];
    if (!dir[0]) {
        const char *e = getenv("AL_TEST_TMP");
        if (e && *e) snprintf(dir, sizeof dir, "%s", e);
        else snprintf(dir, sizeof dir, "/tmp/al_test_%ld", (long)getpid());
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
        if (system(cmd) != 0) { fprintf(stderr, "cannot make %s\n", dir); exit(2); }
    }
    return dir;
}

#endif

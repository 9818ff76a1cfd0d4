/* lib/al.h's error space: every AL_E* code has its own description from
 * al_strerror (none falls through to strerror's "Unknown error"), the
 * domain codes stay out of errno's range, and al_err formats into AL_ERRLEN
 * bytes at most. */
#include <string.h>

#include "al.h"
#include "t.h"

static const int k_codes[] = {AL_ENOMEM, AL_EIO,   AL_EINVAL, AL_ENOSPC, AL_ENOENT, AL_ECANCELED, AL_EFORMAT,
                              AL_ESHAPE, AL_ENAN,  AL_EUNSUP, AL_ERANGE, AL_EPAUSED};
#define N_CODES ((int)(sizeof k_codes / sizeof k_codes[0]))

static void test_every_code_named(void) {
    T_STR_EQ(al_strerror(AL_OK), "ok");
    T_STR_EQ(al_strerror(AL_EPAUSED), "paused");
    for (int i = 0; i < N_CODES; i++) {
        const char *s = al_strerror(k_codes[i]);
        T_TRUE(s && *s && !strstr(s, "Unknown"));
        for (int j = 0; j < i; j++) T_TRUE(k_codes[i] != k_codes[j] && strcmp(s, al_strerror(k_codes[j])));
    }
}

static void test_ranges(void) {
    /* domain codes in -1000..-1999, errno codes above -1000 */
    for (int i = 0; i < N_CODES; i++) {
        int c = k_codes[i];
        T_TRUE(c < 0 && c > -2000);
        if (c <= -1000) T_TRUE(strcmp(al_strerror(c), strerror(-c)));
    }
    T_TRUE(-ENOMEM > -1000 && -ECANCELED > -1000);
}

static void test_err_length(void) {
    char err[AL_ERRLEN];
    char big[2 * AL_ERRLEN];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    T_EQ_INT(al_err(err, AL_EINVAL, "field: %s", big), AL_EINVAL);
    T_EQ_INT(strlen(err), AL_ERRLEN - 1);
    T_TRUE(!strncmp(err, "field: xxx", 10));
    T_EQ_INT(al_err(NULL, AL_EIO, "ignored"), AL_EIO);
}

int main(void) {
    test_every_code_named();
    test_ranges();
    test_err_length();
    return t_done();
}

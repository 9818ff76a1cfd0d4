/* buf.h: appends of any length, printf growing the buffer, taking the bytes,
 * and running out of memory (sticky, contents kept). */
#include <stdint.h>
#include <wchar.h>

#include "buf.h"
#include "t.h"

/* Under AddressSanitizer an impossible allocation returns NULL, as glibc's
 * does, instead of aborting: test_oom asks for one on purpose. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void test_put(void) {
    al_buf b = {0};
    T_STR_EQ(al_buf_str(&b), "");
    T_OK(al_buf_puts(&b, "ab"));
    T_OK(al_buf_putc(&b, 'c'));
    T_OK(al_buf_put(&b, "d\0e", 3)); /* embedded NUL kept, length counts it */
    T_EQ_INT((long)b.n, 6);
    T_TRUE(memcmp(b.p, "abcd\0e", 7) == 0);
    T_OK(al_buf_put(&b, NULL, 0));
    T_EQ_INT((long)b.n, 6);
    al_buf_clear(&b);
    T_EQ_INT((long)b.n, 0);
    T_STR_EQ(al_buf_str(&b), "");
    T_TRUE(b.cap >= 64); /* clear keeps the memory */
    al_buf_deinit(&b);
    T_TRUE(b.p == NULL && b.n == 0 && b.cap == 0);
}

static void test_grow(void) {
    al_buf b;
    al_buf_init(&b);
    /* 10,000 one-byte appends: the contents are right at every doubling */
    int rc = AL_OK;
    for (int i = 0; i < 10000; i++) rc |= al_buf_putc(&b, (char)('a' + i % 26));
    T_OK(rc);
    T_EQ_INT((long)b.n, 10000);
    int ok = 1;
    for (int i = 0; i < 10000; i++) ok &= b.p[i] == (char)('a' + i % 26);
    T_TRUE(ok);
    T_EQ_INT(b.p[10000], 0);
    T_TRUE(b.cap >= 10001 && b.cap <= 2 * 10001);
    al_buf_deinit(&b);
}

static void test_printf(void) {
    al_buf b = {0};
    T_OK(al_buf_printf(&b, "%d-%s", 42, "x"));
    T_STR_EQ(al_buf_str(&b), "42-x");
    /* longer than the room left: formatted again after growing */
    T_OK(al_buf_printf(&b, "%0300d|", 7));
    T_EQ_INT((long)b.n, 4 + 301);
    T_EQ_INT(b.p[4], '0');
    T_EQ_INT(b.p[4 + 299], '7');
    T_STR_EQ(b.p + 4 + 300, "|");
    /* one that fits exactly in what is left */
    al_buf c = {0};
    T_OK(al_buf_reserve(&c, 10));
    size_t cap = c.cap;
    char fill[128];
    memset(fill, 'y', sizeof fill);
    fill[cap - 1] = 0; /* cap - 1 bytes + NUL == cap */
    T_OK(al_buf_printf(&c, "%s", fill));
    T_EQ_INT((long)c.cap, (long)cap);
    T_EQ_INT((long)c.n, (long)cap - 1);
    T_OK(al_buf_printf(&c, "%s", "z"));
    T_EQ_INT(c.p[cap - 1], 'z');
    T_EQ_INT((long)strlen(c.p), (long)cap);
    al_buf_deinit(&c);
    /* an encoding error appends nothing and leaves the text as it was:
     * U+0100 has no encoding in the C locale's character set */
    size_t before = b.n;
    T_EQ_INT(al_buf_printf(&b, "[%lc]", (wint_t)0x100), AL_EINVAL);
    T_EQ_INT((long)b.n, (long)before);
    T_EQ_INT((long)strlen(b.p), (long)before);
    T_OK(al_buf_puts(&b, "!"));
    T_EQ_INT(b.p[before], '!');
    al_buf_deinit(&b);
}

static void test_take(void) {
    al_buf b = {0};
    size_t n = 99;
    char *p = al_buf_take(&b, &n); /* empty: a malloc'd "" */
    T_TRUE(p && p[0] == 0 && n == 0);
    free(p);
    T_OK(al_buf_puts(&b, "hello"));
    p = al_buf_take(&b, &n);
    T_STR_EQ(p, "hello");
    T_EQ_INT((long)n, 5);
    T_TRUE(b.p == NULL && b.n == 0 && b.cap == 0);
    free(p);
}

static void test_oom(void) {
    al_buf b = {0};
    T_OK(al_buf_puts(&b, "kept"));
    /* a size that cannot be allocated: AL_ENOMEM, sticky, contents kept */
    T_EQ_INT(al_buf_reserve(&b, SIZE_MAX - 2), AL_ENOMEM);
    T_TRUE(b.oom);
    T_EQ_INT(al_buf_puts(&b, "more"), AL_ENOMEM);
    T_EQ_INT(al_buf_printf(&b, "%d", 1), AL_ENOMEM);
    T_STR_EQ(al_buf_str(&b), "kept");
    T_TRUE(al_buf_take(&b, NULL) == NULL); /* and taking fails, freeing */
    T_TRUE(b.p == NULL && !b.oom);
    /* a failed growth by realloc (too large for the address space) */
    T_OK(al_buf_puts(&b, "x"));
    T_EQ_INT(al_buf_reserve(&b, SIZE_MAX / 2), AL_ENOMEM);
    T_STR_EQ(al_buf_str(&b), "x");
    al_buf_clear(&b); /* clear forgets the failure */
    T_OK(al_buf_puts(&b, "y"));
    T_STR_EQ(al_buf_str(&b), "y");
    al_buf_deinit(&b);
}

int main(void) {
    test_put();
    test_grow();
    test_printf();
    test_take();
    test_oom();
    return t_done();
}

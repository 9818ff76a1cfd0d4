/* io.h: bounded reads, opening regular files only, atomic replacement and
 * its failure paths (no temp file left behind, the old file untouched),
 * mkdir -p, path joins and the checks that keep a path inside a folder. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"
#include "t.h"

static int contains(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

/* Entries of dir whose name contains ".tmp." (left-over temp files). */
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* 1 if path holds exactly the NUL-terminated string want. */
static int file_is(const char *path, const char *want) {
    char *buf = NULL;
    size_t len = 0;
    if (al_file_read(path, 1 << 20, &buf, &len, NULL) != AL_OK) return 0;
    int ok = len == strlen(want) && memcmp(buf, want, len) == 0;
    free(buf);
    return ok;
}

static void test_path_join(void) {
    char out[16];
    T_OK(al_path_join(out, sizeof out, "a", "b"));
    T_STR_EQ(out, "a/b");
    T_OK(al_path_join(out, sizeof out, "a/", "b"));
    T_STR_EQ(out, "a/b");
    T_OK(al_path_join(out, sizeof out, "", "b"));
    T_STR_EQ(out, "b");
    T_OK(al_path_join(out, sizeof out, "/", "etc"));
    T_STR_EQ(out, "/etc");
    T_EQ_INT(al_path_join(out, sizeof out, "0123456789", "abcdef"), AL_ERANGE);
    T_EQ_INT(al_path_join(out, 4, "ab", "c"), AL_ERANGE); /* "ab/c" needs 5 */
    T_OK(al_path_join(out, 5, "ab", "c"));
    T_STR_EQ(out, "ab/c");
}

static void test_mkdir(const char *root) {
    char p[1024], err[AL_ERRLEN];
    snprintf(p, sizeof p, "%s/m/n//o/", root);
    T_OK(al_mkdir_p(p, err));
    snprintf(p, sizeof p, "%s/m/n/o", root);
    struct stat st;
    T_TRUE(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
    T_OK(al_mkdir_p(p, err)); /* exists already: fine */
    T_TRUE(al_file_exists(p));
    /* A regular file in the way. */
    snprintf(p, sizeof p, "%s/m/file", root);
    T_OK(al_file_write_atomic(p, "x", 1, err));
    snprintf(p, sizeof p, "%s/m/file/sub", root);
    err[0] = '\0';
    T_EQ_INT(al_mkdir_p(p, err), AL_EIO);
    T_TRUE(contains(err, "m/file"));
}

static void test_read(const char *root) {
    char p[1024], err[AL_ERRLEN];
    char *buf = NULL;
    size_t len = 99;
    snprintf(p, sizeof p, "%s/r.txt", root);
    T_OK(al_file_write_atomic(p, "hello", 5, err));
    T_OK(al_file_read(p, 5, &buf, &len, err)); /* exactly at the limit */
    T_EQ_INT(len, 5);
    T_TRUE(buf && buf[5] == '\0' && strcmp(buf, "hello") == 0);
    free(buf);
    buf = NULL;
    err[0] = '\0';
    T_EQ_INT(al_file_read(p, 4, &buf, &len, err), AL_ERANGE);
    T_TRUE(buf == NULL);
    T_TRUE(contains(err, "r.txt"));
    /* empty file */
    snprintf(p, sizeof p, "%s/empty", root);
    T_OK(al_file_write_atomic(p, "", 0, err));
    T_OK(al_file_read(p, 0, &buf, &len, err));
    T_EQ_INT(len, 0);
    T_TRUE(buf && buf[0] == '\0');
    free(buf);
    buf = NULL;
    /* missing and directory */
    snprintf(p, sizeof p, "%s/nope", root);
    err[0] = '\0';
    T_EQ_INT(al_file_read(p, 100, &buf, &len, err), AL_ENOENT);
    T_TRUE(contains(err, "nope") && contains(err, "No such file"));
    T_TRUE(!al_file_exists(p));
    err[0] = '\0';
    T_EQ_INT(al_file_read(root, 100, &buf, &len, err), AL_EIO);
    T_TRUE(contains(err, "directory"));
    /* a file that reports size 0 but has content (/proc) reads fully */
    T_OK(al_file_read("/proc/self/status", 1 << 20, &buf, &len, err));
    T_TRUE(len > 0 && buf && strlen(buf) == len);
    free(buf);
    buf = NULL;
    T_EQ_INT(al_file_read("/proc/self/status", 10, &buf, &len, err), AL_ERANGE);
    /* a FIFO (or any file that is not regular) is refused at once instead of
     * blocking in open() until a writer comes, or reading forever */
    al_path_join(p, sizeof p, root, "fifo");
    T_OK(mkfifo(p, 0600));
    alarm(20); /* today's open() would block here */
    err[0] = '\0';
    T_EQ_INT(al_file_read(p, 100, &buf, &len, err), AL_EIO);
    T_TRUE(contains(err, "not a regular file"));
    err[0] = '\0';
    T_EQ_INT(al_file_read("/dev/zero", 100, &buf, &len, err), AL_EIO);
    T_TRUE(contains(err, "not a regular file"));
    alarm(0);
    unlink(p);
}

static void test_open_regular(const char *root) {
    char p[1024], d[1024], err[AL_ERRLEN];
    al_path_join(p, sizeof p, root, "reg.txt");
    T_OK(al_file_write_atomic(p, "abc", 3, err));
    int fd = -1;
    struct stat st;
    T_OK(al_file_open_regular(p, &fd, &st, err));
    T_TRUE(fd >= 0 && st.st_size == 3 && (fcntl(fd, F_GETFD) & FD_CLOEXEC));
    char b[4] = "";
    T_EQ_INT((int)read(fd, b, sizeof b), 3);
    close(fd);
    T_TRUE(al_file_is_regular(p));
    /* followed through a symlink */
    al_path_join(d, sizeof d, root, "reg.link");
    T_OK(symlink(p, d));
    T_TRUE(al_file_is_regular(d));
    fd = -1;
    T_OK(al_file_open_regular(d, &fd, NULL, err));
    close(fd);
    /* a folder, a FIFO (at once: no writer is waited for), nothing */
    err[0] = 0;
    T_EQ_INT(al_file_open_regular(root, &fd, NULL, err), AL_EIO);
    T_TRUE(contains(err, root) && contains(err, "is a directory"));
    T_TRUE(!al_file_is_regular(root));
    al_path_join(d, sizeof d, root, "fifo2");
    T_OK(mkfifo(d, 0600));
    alarm(20);
    err[0] = 0;
    T_EQ_INT(al_file_open_regular(d, &fd, NULL, err), AL_EIO);
    T_TRUE(contains(err, "not a regular file"));
    T_TRUE(!al_file_is_regular(d));
    alarm(0);
    unlink(d);
    al_path_join(d, sizeof d, root, "absent");
    err[0] = 0;
    T_EQ_INT(al_file_open_regular(d, &fd, NULL, err), AL_ENOENT);
    T_TRUE(contains(err, "absent") && contains(err, "No such file"));
    T_TRUE(!al_file_is_regular(d));
}

static void test_path_below(const char *root_in) {
    char root[PATH_MAX], p[PATH_MAX + 64], q[PATH_MAX + 64], real[PATH_MAX];
    T_TRUE(realpath(root_in, root) != NULL);
    /* the pure check: strictly below, whole components only */
    T_TRUE(al_path_is_below("/a/b", "/a/b/c"));
    T_TRUE(al_path_is_below("/a/b", "/a/b/c/d"));
    T_TRUE(!al_path_is_below("/a/b", "/a/b"));
    T_TRUE(!al_path_is_below("/a/b", "/a/bc"));
    T_TRUE(!al_path_is_below("/a/b", "/a"));
    T_TRUE(!al_path_is_below("/a/b", "/x/b/c"));
    T_TRUE(al_path_is_below("/", "/etc"));
    T_TRUE(!al_path_is_below("/", "/"));
    T_TRUE(!al_path_is_below("", "/etc"));
    /* resolved: "..", symlinks out and in, missing entries */
    snprintf(p, sizeof p, "%s/in", root);
    T_OK(al_mkdir_p(p, NULL));
    snprintf(p, sizeof p, "%s/in/sub", root);
    T_OK(al_mkdir_p(p, NULL));
    snprintf(q, sizeof q, "%s/in", root);
    T_OK(al_path_resolve_below(q, p, real));
    T_STR_EQ(real, p);
    snprintf(p, sizeof p, "%s/in/sub/../..", root);
    T_EQ_INT(al_path_resolve_below(q, p, real), AL_ERANGE);
    T_STR_EQ(real, root);
    snprintf(p, sizeof p, "%s/in/out", root);
    T_OK(symlink("/tmp", p));
    T_EQ_INT(al_path_resolve_below(q, p, real), AL_ERANGE);
    snprintf(p, sizeof p, "%s/in/again", root);
    T_OK(symlink("sub", p));
    T_OK(al_path_resolve_below(q, p, real));
    snprintf(p, sizeof p, "%s/in/sub", root);
    T_STR_EQ(real, p);
    snprintf(p, sizeof p, "%s/in/none", root);
    T_EQ_INT(al_path_resolve_below(q, p, real), AL_ENOENT);
    snprintf(p, sizeof p, "%s/reg.txt/x", root);
    T_EQ_INT(al_path_resolve_below(root, p, real), -ENOTDIR);
    /* relative names that stay inside whatever folder they are joined to */
    T_TRUE(al_path_rel_ok("a"));
    T_TRUE(al_path_rel_ok("a/b.c/..d/.e"));
    T_TRUE(!al_path_rel_ok(""));
    T_TRUE(!al_path_rel_ok("/a"));
    T_TRUE(!al_path_rel_ok("a/"));
    T_TRUE(!al_path_rel_ok("a//b"));
    T_TRUE(!al_path_rel_ok("./a"));
    T_TRUE(!al_path_rel_ok("a/."));
    T_TRUE(!al_path_rel_ok("a/../b"));
    T_TRUE(!al_path_rel_ok(".."));
}

static void test_atomic(const char *root) {
    char p[1024], err[AL_ERRLEN];
    snprintf(p, sizeof p, "%s/a.txt", root);
    T_OK(al_file_write_atomic(p, "first version", 13, err));
    T_TRUE(file_is(p, "first version"));
    T_OK(al_file_write_atomic(p, "v2", 2, err)); /* replaces, shorter */
    T_TRUE(file_is(p, "v2"));
    T_EQ_INT(count_tmp(root), 0);
    struct stat st;
    T_TRUE(stat(p, &st) == 0 && S_ISREG(st.st_mode));

    /* Streaming writer: several writes, commit. */
    al_atomic_file f;
    T_OK(al_atomic_open(&f, p, err));
    T_EQ_INT(count_tmp(root), 1);
    T_TRUE(contains(f.tmp, "a.txt.tmp."));
    T_OK(al_atomic_write(&f, "abc", 3, err));
    T_OK(al_atomic_write(&f, "def", 3, err));
    T_TRUE(file_is(p, "v2")); /* invisible until commit */
    T_OK(al_atomic_commit(&f, err));
    T_TRUE(file_is(p, "abcdef"));
    T_EQ_INT(count_tmp(root), 0);
    al_atomic_abort(&f); /* after commit: a no-op */
    T_TRUE(file_is(p, "abcdef"));

    /* Abort: old content stays, temp file goes. */
    T_OK(al_atomic_open(&f, p, err));
    T_OK(al_atomic_write(&f, "garbage", 7, err));
    al_atomic_abort(&f);
    al_atomic_abort(&f); /* twice is safe */
    T_TRUE(file_is(p, "abcdef"));
    T_EQ_INT(count_tmp(root), 0);
    T_TRUE(al_atomic_write(&f, "x", 1, err) != AL_OK);
    T_TRUE(al_atomic_commit(&f, err) != AL_OK);
    T_TRUE(file_is(p, "abcdef"));

    /* A bare file name: the directory to sync is ".". */
    char cwd[1024];
    T_TRUE(getcwd(cwd, sizeof cwd) != NULL);
    T_OK(chdir(root));
    T_OK(al_file_write_atomic("rel.txt", "rel", 3, err));
    T_TRUE(file_is("rel.txt", "rel"));
    T_OK(chdir(cwd));

    /* Two writers of the same path get distinct temp files. */
    al_atomic_file g;
    T_OK(al_atomic_open(&f, p, err));
    T_OK(al_atomic_open(&g, p, err));
    T_TRUE(strcmp(f.tmp, g.tmp) != 0);
    T_OK(al_atomic_write(&f, "F", 1, err));
    T_OK(al_atomic_write(&g, "G", 1, err));
    T_OK(al_atomic_commit(&g, err));
    T_OK(al_atomic_commit(&f, err));
    T_TRUE(file_is(p, "F"));
    T_EQ_INT(count_tmp(root), 0);
}

static void test_failures(const char *root) {
    char p[1024], err[AL_ERRLEN];
    /* ENOENT: the directory does not exist. */
    snprintf(p, sizeof p, "%s/no/such/dir/x.txt", root);
    err[0] = '\0';
    T_EQ_INT(al_file_write_atomic(p, "x", 1, err), AL_EIO);
    T_TRUE(contains(err, "no/such/dir/x.txt"));
    T_TRUE(contains(err, "No such file or directory"));

    /* rename fails (the target is a non-empty directory): temp removed. */
    char d[1024];
    snprintf(d, sizeof d, "%s/isdir", root);
    T_OK(al_mkdir_p(d, err));
    snprintf(p, sizeof p, "%s/isdir/keep", root);
    T_OK(al_file_write_atomic(p, "k", 1, err));
    err[0] = '\0';
    T_EQ_INT(al_file_write_atomic(d, "x", 1, err), AL_EIO);
    T_TRUE(contains(err, "isdir") && contains(err, "rename"));
    T_EQ_INT(count_tmp(root), 0);
    T_TRUE(file_is(p, "k"));

    /* A write that fails midway (file size limit -> EFBIG): the old file is
     * untouched and the temp file is gone. */
    snprintf(p, sizeof p, "%s/big.bin", root);
    T_OK(al_file_write_atomic(p, "old", 3, err));
    struct rlimit old_lim, lim;
    T_OK(getrlimit(RLIMIT_FSIZE, &old_lim));
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old_lim;
    lim.rlim_cur = 4096;
    T_OK(setrlimit(RLIMIT_FSIZE, &lim));
    size_t n = 1 << 20;
    char *big = calloc(n, 1);
    err[0] = '\0';
    int rc = al_file_write_atomic(p, big, n, err);
    T_OK(setrlimit(RLIMIT_FSIZE, &old_lim));
    signal(SIGXFSZ, old_sig);
    T_EQ_INT(rc, AL_EIO);
    T_TRUE(contains(err, "big.bin") && contains(err, "too large"));
    T_TRUE(file_is(p, "old"));
    T_EQ_INT(count_tmp(root), 0);
    free(big);

    /* Unwritable directory (skipped as root, who may write anywhere). */
    if (geteuid() != 0) {
        snprintf(d, sizeof d, "%s/ro", root);
        T_OK(al_mkdir_p(d, err));
        chmod(d, 0555);
        snprintf(p, sizeof p, "%s/ro/x", root);
        err[0] = '\0';
        T_EQ_INT(al_file_write_atomic(p, "x", 1, err), AL_EIO);
        T_TRUE(contains(err, "Permission denied"));
        chmod(d, 0755);
    }
}

int main(void) {
    const char *root = t_tmpdir();
    test_path_join();
    test_mkdir(root);
    test_read(root);
    test_open_regular(root);
    test_path_below(root);
    test_atomic(root);
    test_failures(root);
    return t_done();
}

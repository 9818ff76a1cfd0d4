/* File helpers shared by lib/, api/ and daemon/: bounded whole-file reads,
 * opening regular files only, atomic replacement (temp file, fsync, rename,
 * fsync of the directory), mkdir -p, path joins and the checks that keep a
 * path inside a folder.
 *
 * Every failure is reported through the return code and a one-line reason
 * in err naming the path and strerror(errno); nothing here prints. The
 * functions are thread-safe: the only shared state is the counter that
 * makes temp file names unique within the process. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* errno after a failed write/fsync/close/rename -> our code. */
static int io_code(int e) { return e == ENOSPC || e == EDQUOT ? AL_ENOSPC : AL_EIO; }

int al_file_open_regular(const char *path, int *fd_out, struct stat *st_out, char err[AL_ERRLEN]) {
    int fd;
    /* O_NONBLOCK: a FIFO opens at once instead of waiting for a writer, and
     * is then refused with every other file that is not regular */
    do fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        return al_err(err, e == ENOENT ? AL_ENOENT : AL_EIO, "%s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return al_err(err, AL_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return al_err(err, AL_EIO, "%s: %s", path, S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
    }
    *fd_out = fd;
    if (st_out) *st_out = st;
    return AL_OK;
}

int al_file_is_regular(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int al_file_read(const char *path, size_t max_bytes, char **out, size_t *len,
                 char err[AL_ERRLEN]) {
    int fd;
    struct stat st;
    int rc = al_file_open_regular(path, &fd, &st, err);
    if (rc) return rc;
    if (st.st_size > 0 && (uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return al_err(err, AL_ERANGE, "%s: %lld bytes, more than the limit of %zu",
                      path, (long long)st.st_size, max_bytes);
    }
    /* st_size is a hint only (pipes and /proc report 0, files can grow):
     * read until EOF, never accepting more than max_bytes. */
    size_t ceiling = max_bytes < SIZE_MAX - 1 ? max_bytes + 1 : SIZE_MAX - 1; /* + NUL */
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    if (cap > ceiling) cap = ceiling;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return al_err(err, AL_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);
    }
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            if (n >= max_bytes) {
                /* Full at the limit: one more byte means too large. */
                char c;
                ssize_t r;
                do r = read(fd, &c, 1);
                while (r < 0 && errno == EINTR);
                if (r == 0) break;
                int e = errno;
                free(buf);
                close(fd);
                if (r < 0) return al_err(err, AL_EIO, "%s: %s", path, strerror(e));
                return al_err(err, AL_ERANGE, "%s: more than the limit of %zu bytes", path,
                              max_bytes);
            }
            size_t ncap = cap > ceiling / 2 ? ceiling : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                close(fd);
                return al_err(err, AL_ENOMEM, "%s: out of memory reading %zu bytes", path, ncap);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return al_err(err, AL_EIO, "%s: %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return AL_OK;
}

int al_file_write_atomic(const char *path, const void *data, size_t n,
                         char err[AL_ERRLEN]) {
    al_atomic_file f;
    int rc = al_atomic_open(&f, path, err);
    if (rc != AL_OK) return rc;
    if ((rc = al_atomic_write(&f, data, n, err)) != AL_OK) {
        al_atomic_abort(&f);
        return rc;
    }
    return al_atomic_commit(&f, err);
}

static atomic_uint g_tmp_seq;

int al_atomic_open(al_atomic_file *f, const char *path, char err[AL_ERRLEN]) {
    f->fd = -1;
    f->tmp[0] = '\0';
    f->path[0] = '\0';
    size_t pl = strlen(path);
    if (pl == 0 || pl >= sizeof f->path)
        return al_err(err, AL_EIO, "%.200s: path empty or too long", path);
    memcpy(f->path, path, pl + 1);
    /* "<path>.tmp.<pid>.<seq>": the pid keeps processes apart, the sequence
     * keeps two threads writing the same path apart. */
    unsigned seq = atomic_fetch_add(&g_tmp_seq, 1u);
    int w = snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld.%u", path, (long)getpid(), seq);
    if (w < 0 || (size_t)w >= sizeof f->tmp) {
        f->tmp[0] = '\0';
        return al_err(err, AL_EIO, "%.200s: path too long", path);
    }
    int fd;
    do fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        f->tmp[0] = '\0'; /* not ours: never unlink it */
        return al_err(err, io_code(e), "%s: cannot create temp file: %s", path, strerror(e));
    }
    f->fd = fd;
    return AL_OK;
}

int al_atomic_write(al_atomic_file *f, const void *data, size_t n, char err[AL_ERRLEN]) {
    if (f->fd < 0) return al_err(err, AL_EIO, "%s: write after a failed write", f->path);
    const char *p = data;
    while (n > 0) {
        /* Linux writes at most ~2 GB per call; ask for less. */
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t r = write(f->fd, p, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            al_atomic_abort(f);
            return al_err(err, io_code(e), "%s: write failed: %s", f->path, strerror(e));
        }
        if (r == 0) {
            al_atomic_abort(f);
            return al_err(err, AL_EIO, "%s: write failed: wrote 0 bytes", f->path);
        }
        p += r;
        n -= (size_t)r;
    }
    return AL_OK;
}

/* fsync the directory holding path, so the rename itself is durable. */
static int fsync_dir(const char *path, char err[AL_ERRLEN]) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        dir[0] = '.';
        dir[1] = '\0';
    } else if (slash == path) {
        dir[0] = '/';
        dir[1] = '\0';
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) n = sizeof dir - 1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd;
    do fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int e = errno;
        return al_err(err, AL_EIO, "%s: cannot open directory to sync: %s", dir, strerror(e));
    }
    int rc = AL_OK;
    if (fsync(fd) != 0) {
        int e = errno;
        /* Some file systems cannot sync directories; that is not a failure. */
        if (e != EINVAL && e != ENOTSUP && e != EROFS)
            rc = al_err(err, io_code(e), "%s: fsync of directory failed: %s", dir, strerror(e));
    }
    close(fd);
    return rc;
}

int al_atomic_commit(al_atomic_file *f, char err[AL_ERRLEN]) {
    if (f->fd < 0) return al_err(err, AL_EIO, "%s: commit after a failed write", f->path);
    int e;
    if (fsync(f->fd) != 0) {
        e = errno;
        al_atomic_abort(f);
        return al_err(err, io_code(e), "%s: fsync failed: %s", f->path, strerror(e));
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0) {
        e = errno;
        al_atomic_abort(f);
        return al_err(err, io_code(e), "%s: close failed: %s", f->path, strerror(e));
    }
    if (rename(f->tmp, f->path) != 0) {
        e = errno;
        al_atomic_abort(f);
        return al_err(err, io_code(e), "%s: rename failed: %s", f->path, strerror(e));
    }
    f->tmp[0] = '\0'; /* renamed: nothing left to clean up */
    return fsync_dir(f->path, err);
}

void al_atomic_abort(al_atomic_file *f) {
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    if (f->tmp[0]) {
        unlink(f->tmp);
        f->tmp[0] = '\0';
    }
}

int al_mkdir_p(const char *path, char err[AL_ERRLEN]) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0) return al_err(err, AL_EINVAL, "mkdir: empty path");
    if (n >= sizeof buf) return al_err(err, AL_ERANGE, "%.200s: path too long", path);
    memcpy(buf, path, n + 1);
    /* Create each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (i < n && buf[i] != '/') continue;
        if (i < n && buf[i - 1] == '/') continue; /* "a//b" */
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0) {
            int e = errno;
            struct stat st;
            if (e != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                if (e == EEXIST)
                    return al_err(err, AL_EIO, "%s: exists and is not a directory", buf);
                return al_err(err, io_code(e), "%s: cannot create directory: %s", buf,
                              strerror(e));
            }
        }
        buf[i] = saved;
    }
    return AL_OK;
}

int al_path_join(char *out, size_t n, const char *dir, const char *name) {
    int w;
    size_t dl = strlen(dir);
    if (dl == 0) w = snprintf(out, n, "%s", name);
    else if (dir[dl - 1] == '/') w = snprintf(out, n, "%s%s", dir, name);
    else w = snprintf(out, n, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= n) {
        if (n) out[0] = '\0';
        return AL_ERANGE;
    }
    return AL_OK;
}

int al_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int al_path_is_below(const char *root, const char *real) {
    size_t rl = strlen(root);
    if (rl == 0 || strncmp(real, root, rl) != 0) return 0;
    if (root[rl - 1] == '/') return real[rl] != 0; /* root is "/" */
    return real[rl] == '/' && real[rl + 1] != 0;
}

int al_path_resolve_below(const char *root, const char *path, char real[PATH_MAX]) {
    if (!realpath(path, real)) return errno ? -errno : AL_ENOENT;
    return al_path_is_below(root, real) ? AL_OK : AL_ERANGE;
}

int al_path_rel_ok(const char *s) {
    if (!s[0] || s[0] == '/') return 0;
    for (const char *p = s;;) {
        const char *q = strchr(p, '/');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        if (l == 0 || (l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.')) return 0;
        if (!q) return 1;
        p = q + 1;
    }
}

static int rmtree_at(char *path, size_t cap, int depth, char err[AL_ERRLEN]) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? AL_OK : al_err(err, AL_EIO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode) && depth < 64) {
        DIR *d = opendir(path);
        if (!d) return al_err(err, AL_EIO, "%s: %s", path, strerror(errno));
        size_t n = strlen(path);
        struct dirent *e;
        int rc = AL_OK;
        while (rc == AL_OK && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (n + 1 + strlen(e->d_name) + 1 > cap) {
                rc = al_err(err, AL_ERANGE, "%s/%s: path too long", path, e->d_name);
                break;
            }
            path[n] = '/';
            strcpy(path + n + 1, e->d_name);
            rc = rmtree_at(path, cap, depth + 1, err);
            path[n] = 0;
        }
        closedir(d);
        if (rc) return rc;
        if (rmdir(path) != 0) return al_err(err, AL_EIO, "%s: %s", path, strerror(errno));
        return AL_OK;
    }
    if (unlink(path) != 0 && errno != ENOENT) return al_err(err, AL_EIO, "%s: %s", path, strerror(errno));
    return AL_OK;
}

int al_rmtree(const char *path, char err[AL_ERRLEN]) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return al_err(err, AL_ERANGE, "%s: path too long", path);
    strcpy(buf, path);
    return rmtree_at(buf, sizeof buf, 0, err);
}

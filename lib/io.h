/* File helpers shared by lib/, api/ and daemon/: bounded reads, opening
 * regular files only, atomic writes, directories, and the path checks that
 * keep a name from a request or a server inside the folder it names.
 * Atomic means: write to "<path>.tmp.<pid>", fsync, rename over <path>,
 * fsync the directory. A failure (ENOSPC, EIO) removes the temp file and
 * leaves any earlier <path> untouched. */
#ifndef AL_IO_H
#define AL_IO_H

#include <limits.h>
#include <sys/stat.h>

#include "al.h"

/* Reads a whole file of at most max_bytes into a malloc'd, NUL-terminated
 * buffer (*out, caller frees with free()). AL_ENOENT, AL_EIO (also for a
 * directory, FIFO, socket or device: only regular files are read, and a
 * FIFO is refused without waiting for a writer), AL_ERANGE (larger than
 * max_bytes), AL_ENOMEM. */
int al_file_read(const char *path, size_t max_bytes, char **out, size_t *len,
                 char err[AL_ERRLEN]);
/* Opens path read-only when it is a regular file (symlinks followed). A
 * FIFO is refused without waiting for a writer: the descriptor is opened
 * O_NONBLOCK, which regular files ignore. *fd gets the descriptor (close-on-
 * exec; the caller closes it) and *st, when not NULL, its fstat. AL_ENOENT,
 * AL_EIO ("is a directory", "not a regular file", or the system's reason),
 * err naming path. */
int al_file_open_regular(const char *path, int *fd, struct stat *st, char err[AL_ERRLEN]);
/* 1 when path is a regular file (symlinks followed), else 0. */
int al_file_is_regular(const char *path);
/* Atomically replaces path with the n bytes of data. AL_EIO, AL_ENOSPC. */
int al_file_write_atomic(const char *path, const void *data, size_t n,
                         char err[AL_ERRLEN]);

/* Streaming atomic writer for large files (safetensors). */
typedef struct al_atomic_file {
    int fd;
    char path[4096];
    char tmp[4200];
} al_atomic_file;
int al_atomic_open(al_atomic_file *f, const char *path, char err[AL_ERRLEN]);
int al_atomic_write(al_atomic_file *f, const void *data, size_t n, char err[AL_ERRLEN]);
/* fsync + rename + fsync(dir). On failure the temp file is removed. */
int al_atomic_commit(al_atomic_file *f, char err[AL_ERRLEN]);
/* Removes the temp file; safe after a failed write. */
void al_atomic_abort(al_atomic_file *f);

/* mkdir -p with mode 0755; AL_OK if it exists already as a directory. */
int al_mkdir_p(const char *path, char err[AL_ERRLEN]);
/* Joins dir and name into out (size n); AL_ERANGE if it does not fit. */
int al_path_join(char *out, size_t n, const char *dir, const char *name);
int al_file_exists(const char *path);

/* 1 when real lies strictly below the folder root, both absolute paths
 * resolved by realpath (no "..", no symlink, no trailing '/' but for "/"). */
int al_path_is_below(const char *root, const char *real);
/* Resolves path with realpath into real and checks that it lies strictly
 * below root (a resolved folder, as above). AL_OK; -errno of realpath when
 * path does not resolve (AL_ENOENT, -ENOTDIR, -EACCES, -ELOOP, ...);
 * AL_ERANGE when it resolves outside root (a symlink or ".." leading out).
 * real is written in every case but the first. */
int al_path_resolve_below(const char *root, const char *path, char real[PATH_MAX]);
/* 1 when s is a relative path (no leading '/') whose '/'-separated
 * components are none of them empty, "." or "..", so that dir/s stays inside
 * dir whatever dir is; else 0. Other characters are the caller's to check. */
int al_path_rel_ok(const char *s);
/* Removes path and, when it is a directory, everything below it (symlinks
 * are removed, never followed). AL_OK also when path does not exist;
 * AL_EIO naming the first entry that could not be removed. */
int al_rmtree(const char *path, char err[AL_ERRLEN]);

#endif

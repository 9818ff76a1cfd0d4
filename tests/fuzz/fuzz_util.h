/* What the model-file fuzz targets share: their loaders read files, so
 * each input is written to a scratch file in the working directory. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* Replaces path's contents with data; aborts when it cannot (the harness,
 * not the parser, is then broken). */
static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0600);
    if (fd < 0) abort();
    while (size) {
        ssize_t w = write(fd, data, size);
        if (w <= 0) abort();
        data += w;
        size -= (size_t)w;
    }
    close(fd);
}

#endif

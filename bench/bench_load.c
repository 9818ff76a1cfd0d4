/* bench/bench_load: how fast a model folder loads from the page cache, the
 * "loading at disk speed" row of BENCHMARKS.md.
 *
 * Reads the folder's safetensors files once (so that they sit in the page
 * cache), then times al_model_open_ex(AL_OPEN_FROZEN [| AL_OPEN_BF16]) --reps
 * times: mapping, parsing, serving the frozen tensors that need no change
 * from the mapping, converting the rest (and transposing GPT-2's Conv1D
 * weights) on the compute pool. --copy adds AL_OPEN_COPY: every tensor
 * copied (the loader before serving), the in-run comparator. Prints one
 * JSON line: bytes of the weight files, the best and median open time and
 * GB/s (bytes / time), peak RSS. A benchmark, never a test: it asserts
 * nothing about times.
 *
 * Usage: bench_load --model DIR [--dtype fp32|bf16] [--reps N] [--threads N] [--copy] */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "al.h"
#include "compute/pool.h"
#include "model/model.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reads every *.safetensors file of dir once; returns their total bytes. */
static double warm(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    double total = 0;
    static char buf[1 << 20];
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t r;
        while ((r = read(fd, buf, sizeof buf)) > 0) total += (double)r;
        close(fd);
    }
    closedir(d);
    return total;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *dtype = "fp32";
    int reps = 5, threads = 2, copy = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--copy")) {
            copy = 1;
            continue;
        }
        if (i + 1 == argc) break;
        if (!strcmp(argv[i], "--model")) dir = argv[++i];
        else if (!strcmp(argv[i], "--dtype")) dtype = argv[++i];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
    }
    int bf16 = !strcmp(dtype, "bf16");
    if (!dir || reps < 1 || reps > 100 || (!bf16 && strcmp(dtype, "fp32"))) {
        fprintf(stderr, "usage: bench_load --model DIR [--dtype fp32|bf16] [--reps N] [--threads N] [--copy]\n");
        return 2;
    }
    if (al_pool_init(threads) != AL_OK) return 1;
    double bytes = warm(dir);
    double t[100];
    char err[AL_ERRLEN] = "";
    for (int r = 0; r < reps; r++) {
        al_model *m = NULL;
        double t0 = al_now();
        int rc = al_model_open_ex(&m, dir, NULL, AL_OPEN_FROZEN | (bf16 ? AL_OPEN_BF16 : 0) | (copy ? AL_OPEN_COPY : 0), 0, err);
        t[r] = al_now() - t0;
        if (rc) {
            fprintf(stderr, "bench_load: %s\n", err);
            return 1;
        }
        al_model_free(m);
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\":\"alignd%s\",\"bench\":\"load\",\"dtype\":\"%s\",\"threads\":%d,\"bytes\":%.0f,"
           "\"open_s_best\":%.4f,\"open_s_median\":%.4f,\"gb_per_s_best\":%.2f,"
           "\"gb_per_s_median\":%.2f,\"reps\":%d,\"peak_rss_mb\":%.1f}\n",
           copy ? "_copy" : "", dtype, al_pool_threads(), bytes, t[0], t[reps / 2], bytes / t[0] / 1e9,
           bytes / t[reps / 2] / 1e9, reps, (double)ru.ru_maxrss / 1024.0);
    al_pool_shutdown();
    return 0;
}

/* Served weights under a read lease (lib/model/lease.c): a file that
 * another process truncates and rewrites in place while a model is served
 * from it leaves the model's log-probs bit for bit (no SIGBUS: the mapping
 * was copied out before the writer could proceed; only the spans served,
 * once loaded), and a file whose lease
 * is refused is copied, never served, so rewriting it changes nothing.
 *
 * Nothing here waits on a clock: the writer child blocks in open(2) until
 * the lease is released, and the parent waits for the child. Were the lease
 * not honoured, the child would go ahead after lease-break-time (45 s) and
 * the parent's next forward would fault or differ. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compute/pool.h"
#include "model/model.h"
#include "model/model_impl.h"
#include "model/safetensors.h"
#include "t.h"
#include "t_model.h"

enum { T_LEN = 12 };
static const int32_t k_ids[T_LEN] = {65, 104, 97, 32, 119, 111, 114, 100, 115, 10, 66, 256};

static void logprobs_of(al_model *m, float *lp) {
    char err[AL_ERRLEN];
    int32_t tgt[T_LEN];
    for (int t = 0; t < T_LEN; t++) tgt[t] = t + 1 < T_LEN ? k_ids[t + 1] : -1;
    T_OK(al_model_reserve(m, 1, T_LEN, 0, err));
    al_tokens in = {.B = 1, .T = T_LEN, .ids = k_ids, .targets = tgt};
    al_fwd f = {.logp = lp};
    T_OK(al_model_forward(m, &in, &f));
}

/* Truncates path and writes 100 bytes of garbage, as `cp` over it would;
 * from a child, which the kernel holds in open(2) while we hold a lease.
 * Returns the child's exit status (0: it wrote). */
static int rewrite_in_child(const char *path) {
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_TRUNC);
        char junk[100];
        memset(junk, 0xff, sizeof junk);
        int ok = fd >= 0 && write(fd, junk, sizeof junk) == (ssize_t)sizeof junk;
        if (fd >= 0) close(fd);
        _exit(ok ? 0 : 1);
    }
    int st = -1;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Overwrites every byte of path from `from` on with 0xff, in place (no
 * truncation: the file keeps its size), from a child held in open(2). */
static int overwrite_in_child(const char *path, long from) {
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_WRONLY);
        struct stat st;
        int ok = fd >= 0 && fstat(fd, &st) == 0;
        char junk[4096];
        memset(junk, 0xff, sizeof junk);
        for (long at = from; ok && at < (long)st.st_size; at += (long)sizeof junk) {
            size_t n = st.st_size - at < (long)sizeof junk ? (size_t)(st.st_size - at) : sizeof junk;
            ok = pwrite(fd, junk, n, at) == (ssize_t)n;
        }
        if (fd >= 0) close(fd);
        _exit(ok ? 0 : 1);
    }
    int st = -1;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void save_model(al_arch arch, const char *dir, al_model **mem) {
    char err[AL_ERRLEN];
    /* GPT-2's Conv1D matrices (copied, not served) span whole pages at C 64 */
    int gpt2 = arch == AL_ARCH_GPT2;
    t_shape s = {.arch = arch, .layers = 2, .C = gpt2 ? 64 : 16, .heads = 2, .kv_heads = gpt2 ? 0 : 1,
                 .FF = gpt2 ? 256 : 32, .max_T = 16};
    al_model_config c = t_byte_config(s);
    *mem = al_model_new(&c, NULL, err);
    T_TRUE(*mem != NULL);
    al_model_init(*mem, 11 + (uint64_t)arch);
    T_OK(al_model_save(*mem, dir, err));
}

/* A model of arch saved under name, opened served (flags: AL_OPEN_FROZEN
 * and more), its log-probs taken (before), the file cut short and
 * rewritten by another process, its log-probs taken again: the same bits,
 * the writer went ahead. Returns the served model (NULL if it could not be
 * made; *mem is the in-memory model it was saved from). */
static al_model *served_then_rewritten(al_arch arch, const char *name, int flags, float before[T_LEN],
                                       al_model **mem) {
    char err[AL_ERRLEN], dir[1200], path[1300];
    snprintf(dir, sizeof dir, "%s/%s", t_tmpdir(), name);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    al_model *m = NULL;
    save_model(arch, dir, mem);
    T_OK(al_model_open_ex(&m, dir, NULL, flags, 0, err));
    if (!m || !*mem) {
        al_model_free(m);
        return NULL;
    }
    T_EQ_INT(m->n_maps, 1); /* served: the lease was taken */
    T_EQ_INT(t_anon_kb(m->maps[0]), 0);
    float after[T_LEN];
    logprobs_of(m, before);
    T_EQ_INT(rewrite_in_child(path), 0);
    T_EQ_INT(file_size(path), 100); /* the writer went ahead */
    logprobs_of(m, after);
    T_TRUE(memcmp(before, after, sizeof after) == 0);
    return m;
}

/* Served, then the file cut short and rewritten by another process: the
 * same log-probs, and the mapping is now anonymous memory. */
static void test_rewrite_while_served(void) {
    static const al_arch archs[2] = {AL_ARCH_GPT2, AL_ARCH_LLAMA};
    for (int a = 0; a < 2; a++) {
        char name[32];
        snprintf(name, sizeof name, "served_%d", a);
        al_model *mem = NULL;
        float want[T_LEN], before[T_LEN];
        al_model *m = served_then_rewritten(archs[a], name, AL_OPEN_FROZEN, before, &mem);
        if (m) {
            logprobs_of(mem, want);
            /* GPT-2's Conv1D weights are served in the file's (in, out)
             * layout, another product order than the in-memory model's:
             * fp32 rounding */
            if (archs[a] == AL_ARCH_GPT2)
                for (int t = 0; t + 1 < T_LEN; t++) T_NEAR(want[t], before[t], 1e-5);
            else
                T_TRUE(memcmp(want, before, sizeof want) == 0);
            long kb = t_anon_kb(m->maps[0]);
            T_TRUE(kb > 0); /* copied out */
            /* at most the mapping (GPT-2 is served whole, its Conv1D
             * weights in the file's layout: no unserved spans) */
            T_TRUE(kb <= (long)(m->map_sizes[0] >> 10) + 4);
        }
        al_model_free(m);
        al_model_free(mem);
    }
}

/* Opened in bf16 from an F32 file, GPT-2's matrices are rounded into the
 * model's own memory and only the norms and biases are served: a break then
 * copies out the served pages alone, not the whole mapping. */
static void test_copy_out_served_spans_only(void) {
    al_model *mem = NULL;
    float before[T_LEN];
    al_model *m = served_then_rewritten(AL_ARCH_GPT2, "spans", AL_OPEN_FROZEN | AL_OPEN_BF16, before, &mem);
    if (m) {
        long kb = t_anon_kb(m->maps[0]), whole = (long)(m->map_sizes[0] >> 10);
        T_TRUE(kb > 0 && 4 * kb < whole); /* the norms and biases: a few pages of the file */
    }
    al_model_free(m);
    al_model_free(mem);
}

/* A writer in this very process (a thread of it opening the file for
 * writing) is released the same way: the watcher is a thread of its own. */
static void test_rewrite_from_this_process(void) {
    char err[AL_ERRLEN], dir[1200], path[1300];
    snprintf(dir, sizeof dir, "%s/self", t_tmpdir());
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    al_model *mem = NULL, *m = NULL;
    save_model(AL_ARCH_LLAMA, dir, &mem);
    T_OK(al_model_open_ex(&m, dir, NULL, AL_OPEN_FROZEN, 0, err));
    if (m && mem) {
        T_EQ_INT(m->n_maps, 1);
        float before[T_LEN], after[T_LEN];
        logprobs_of(m, before);
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        T_TRUE(fd >= 0);
        if (fd >= 0) {
            T_TRUE(write(fd, "garbage", 7) == 7);
            close(fd);
        }
        logprobs_of(m, after);
        T_TRUE(memcmp(before, after, sizeof before) == 0);
    }
    al_model_free(m);
    al_model_free(mem);
}

/* The file open for writing when the model loads: no lease (EAGAIN), so
 * every tensor is copied; truncating and rewriting it after changes
 * nothing. Also at the safetensors level: nothing is served. */
static void test_refused_lease_copies(void) {
    char err[AL_ERRLEN], dir[1200], path[1300];
    snprintf(dir, sizeof dir, "%s/refused", t_tmpdir());
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    al_model *mem = NULL, *m = NULL;
    save_model(AL_ARCH_LLAMA, dir, &mem);
    int wfd = open(path, O_WRONLY | O_CLOEXEC);
    T_TRUE(wfd >= 0);
    al_st_file f;
    T_OK(al_st_open(&f, path, err));
    T_TRUE(f.lease == NULL);
    const al_st_tensor *t = al_st_find(&f, "model.norm.weight");
    T_TRUE(t != NULL && al_st_data(&f, t) == NULL && al_st_serve(&f, t) == NULL);
    al_st_close(&f);
    T_OK(al_model_open_ex(&m, dir, NULL, AL_OPEN_FROZEN, 0, err));
    if (m && mem && wfd >= 0) {
        T_EQ_INT(m->n_maps, 0);
        float want[T_LEN], before[T_LEN], after[T_LEN];
        logprobs_of(mem, want);
        logprobs_of(m, before);
        T_TRUE(memcmp(want, before, sizeof want) == 0);
        T_OK(ftruncate(wfd, 0));
        T_TRUE(write(wfd, "garbage", 7) == 7);
        logprobs_of(m, after);
        T_TRUE(memcmp(before, after, sizeof before) == 0);
    }
    if (wfd >= 0) close(wfd);
    al_model_free(m);
    al_model_free(mem);
}

/* An open file whose lease breaks while the loader still reads it: served
 * and copied reads alike return the file's bytes as they were. */
static void test_break_while_loading(void) {
    char err[AL_ERRLEN], path[1300];
    snprintf(path, sizeof path, "%s/loading.safetensors", t_tmpdir());
    enum { N = 3000 };
    static float v[N], got[N];
    for (int i = 0; i < N; i++) v[i] = (float)i * 0.25f - 7.0f;
    al_st_entry e[2] = {{.name = "a", .data = v, .ndim = 1, .shape = {N}},
                        {.name = "b", .data = v, .ndim = 2, .shape = {N / 3, 3}}};
    T_OK(al_st_write(path, e, 2, err));
    al_st_file f;
    T_OK(al_st_open(&f, path, err));
    T_TRUE(f.lease != NULL);
    const al_st_tensor *ta = al_st_find(&f, "a"), *tb = al_st_find(&f, "b");
    const float *served = ta ? al_st_serve(&f, ta) : NULL;
    T_TRUE(served != NULL && tb != NULL);
    if (served && tb) {
        T_EQ_INT(rewrite_in_child(path), 0);
        T_TRUE(memcmp(served, v, sizeof v) == 0);
        T_OK(al_st_read_f32(&f, tb, got, N, err));
        T_TRUE(memcmp(got, v, sizeof v) == 0);
        T_OK(al_st_read_f32(&f, tb, got, N, err)); /* again: its pages were not zeroed */
        T_TRUE(memcmp(got, v, sizeof v) == 0);
    }
    al_st_close(&f);
}

/* A lease that breaks for a writer who rewrites the file in place, at
 * its full size, before the loader copies a tensor: the copy reads the
 * file with pread(2), whose bytes are now the writer's, so it must notice
 * the break and take the old bytes from the copied-out mapping, as
 * straight copies (fp32 and bf16, within one pread and across the 256 KiB
 * pieces of a conversion) and transposes alike. */
static void test_overwrite_in_place(void) {
    char err[AL_ERRLEN], path[1300];
    snprintf(path, sizeof path, "%s/inplace.safetensors", t_tmpdir());
    enum { N = 200000 };
    static float v[N], got[N];
    static uint16_t h[N];
    for (int i = 0; i < N; i++) v[i] = (float)i * 0.375f - 11.0f;
    al_st_entry e[1] = {{.name = "a", .data = v, .ndim = 2, .shape = {N / 8, 8}}};
    T_OK(al_st_write(path, e, 1, err));
    al_st_file f;
    T_OK(al_st_open(&f, path, err));
    T_TRUE(f.lease != NULL);
    const al_st_tensor *t = al_st_find(&f, "a");
    T_TRUE(t != NULL);
    if (t) {
        T_EQ_INT(overwrite_in_child(path, (long)f.data_off), 0);
        T_EQ_INT(file_size(path), (long)f.size);
        T_OK(al_st_read_f32(&f, t, got, N, err));
        T_TRUE(memcmp(got, v, sizeof v) == 0);
        T_OK(al_st_read_bf16(&f, t, h, N, 0, err));
        int bad = 0;
        for (int i = 0; i < N; i++) bad += h[i] != al_f32_to_bf16(v[i]);
        T_EQ_INT(bad, 0);
        T_OK(al_st_read_f32_t(&f, t, got, N, err));
        bad = 0;
        for (int i = 0; i < N; i++) bad += got[(i % 8) * (N / 8) + i / 8] != v[i];
        T_EQ_INT(bad, 0);
    }
    al_st_close(&f);
}

int main(void) {
    t_tmpdir();
    al_pool_init(2);
    test_rewrite_while_served();
    test_copy_out_served_spans_only();
    test_rewrite_from_this_process();
    test_refused_lease_copies();
    test_break_while_loading();
    test_overwrite_in_place();
    al_pool_shutdown();
    return t_done();
}

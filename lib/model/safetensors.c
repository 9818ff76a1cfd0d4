/* safetensors reader and writer, and sharded folders (index.json).
 *
 * Format (https://github.com/huggingface/safetensors, README "Format"):
 *   8 bytes   N, little-endian u64
 *   N bytes   JSON object {"name": {"dtype": "F32", "shape": [..],
 *             "data_offsets": [begin, end]}, "__metadata__": {str: str}},
 *             possibly padded with trailing spaces
 *   rest      the byte buffer; offsets are relative to its start, data is
 *             little-endian, row-major, packed.
 *
 * The reader maps the file (privately: a write would copy the page, never
 * reach the file; the reader never writes; under a read lease, see below)
 * and treats every number in the header
 * as hostile: the header length against the file and the 100 MB cap that
 * the reference implementation uses, each span against the buffer and
 * against numel * element size (with overflow checks), spans against each
 * other (no overlap), names against each other (jansson rejects duplicate
 * keys). Only then are tensors handed out, sorted by name for bsearch.
 *
 * Sharded folders: model.safetensors.index.json maps each tensor name to a
 * shard file in the same folder; every shard is opened once and every
 * mapping is checked against the shard's own header.
 *
 * Reading a tensor converts it on the compute pool (each thread its own
 * share of the destination, so each faults in its own fresh pages; GPT-2's
 * transposes in tiles, with SSE2 4x4 / 8x8 kernels where the dtypes agree).
 * It reads the file with pread(2), not through the mapping: a straight
 * copy into the destination when the dtypes agree, else 256 KiB at a time
 * into a buffer of the thread's, converted while in its cache (st_pread);
 * a transpose whole rows at a time into that buffer (st_tiles_pread). The
 * kernel copies from the page cache through its own map, so no page of
 * ours is faulted in, touched for the first time or handed back. Under a
 * hypervisor that makes page faults costly (2 vCPUs of a Zen 5 VM) the
 * mapping's first touch of each 4 KiB page stalled the rounding whether
 * the reads faulted the pages in or MADV_POPULATE_READ did, released or
 * not: the load that `bench_load --model <fp32 GPT-2, 498 MB> --dtype
 * bf16` times (al_model_open_ex FROZEN | BF16) took 0.41-0.47 seconds of
 * process CPU time (getrusage around it, best of 5) through the mapping,
 * 0.12-0.13 with pread (see st_copy_fn for the wall times); with GPT-2's
 * Conv1D weights transposed too (| COPY), 0.53-0.64 through the mapping,
 * 0.42-0.62 with only the straight copies' pread, 0.25-0.36 with the
 * transposes' too (load average 7-13 from other jobs throughout).
 * When a read cannot pread (no descriptor, a short read, a broken lease,
 * a transpose whose 8 rows exceed the buffer) it reads the mapping, a
 * transpose mapping its source 4 MiB at a time (MADV_POPULATE_READ), and
 * hands each 4 MiB's whole pages of the mapping back (madvise
 * MADV_DONTNEED): a model's loader copies
 * every tensor once, and pages left mapped until the file closes would hold
 * the weights twice at the loading moment, the peak RSS of every job whose
 * training state is small (LoRA). On this private, never-written mapping
 * that only drops our page-table entries; the page cache keeps the data and
 * a later read of the same bytes faults them in again from the file.
 *
 * Serving instead of copying (al_st_serve): a tensor the caller keeps as
 * the file has it is used in place, its pages mapped up front; the caller
 * takes the mapping over (al_st_detach) and holds it as long as the tensor
 * lives. Served tensors are aligned to their element size, no more.
 *
 * Files changed under us: a mapped file that another process truncates or
 * rewrites in place (`cp new.safetensors model.safetensors` opens it with
 * O_TRUNC) would raise SIGBUS at the next access to a page not yet copied,
 * killing the daemon with every job. So each file is mapped under a read
 * lease (lease.c): the kernel holds such a writer in open(2) and signals
 * us; a watcher thread copies the mapping out to anonymous memory at the
 * same address (mremap: readers see the same bytes throughout; once the
 * file is detached, only the pages of spans al_st_serve handed out), then
 * lets go of the lease and the writer proceeds. That protects the loader's
 * reads and every served tensor until al_st_unmap releases the lease. A
 * file we cannot lease (open for writing elsewhere, owned by another user,
 * a filesystem without leases) serves nothing: al_st_data and al_st_serve
 * return NULL and the loader copies its tensors (a debug line says so);
 * only those copies, while they run, still read an unprotected mapping.
 * Our own writers never truncate in place anyway (they rename a complete
 * temp file over the old one, which leaves the mapped file intact).
 *
 * The only global state is lease.c's list of leased mappings and its
 * watcher thread; an open al_st_file is read-only and may be shared between
 * threads. Its descriptor belongs to the lease (al_st_file.fd is -1). */
/* madvise and MADV_DONTNEED (POSIX's posix_madvise DONTNEED is a no-op in glibc). */
#define _DEFAULT_SOURCE
#include "safetensors.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

#include "../compute/ops.h"
#include "../compute/pool.h"
#include "../io.h"
#include "lease.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the file format is little-endian)"
#endif

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* reference: 100 MB */
#define ST_MAX_INDEX ((size_t)64 << 20)

/* ---------- half precision ---------- */

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float al_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        if (mant == 0) return u2f(sign); /* +-0 */
        /* Subnormal: mant * 2^-24. Normalise so the leading 1 is bit 10. */
        int e = -1;
        do {
            mant <<= 1;
            e++;
        } while (!(mant & 0x400u));
        mant &= 0x3ffu;
        return u2f(sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13));
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (mant << 13)); /* inf, nan (payload kept) */
    return u2f(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

float al_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t al_f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {
        if (x == 0x7f800000u) return sign | 0x7c00u;
        /* NaN: keep it quiet and keep the top payload bits. */
        return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    }
    /* 65520 is halfway between 65504 (max half, odd mantissa) and 65536:
     * ties to even go up, so everything from there on is infinity. */
    if (x >= 0x477ff000u) return sign | 0x7c00u;
    if (x >= 0x38800000u) { /* normal half: |f| >= 2^-14 */
        uint32_t odd = (x >> 13) & 1u;
        x += 0xfffu + odd;               /* round to nearest, ties to even */
        x -= (uint32_t)(127 - 15) << 23; /* rebias; a mantissa carry bumps the exponent */
        return (uint16_t)(sign | (x >> 13));
    }
    /* Half subnormal or zero. 2^-25 and below round to zero (2^-25 is the
     * tie between 0 and 2^-24; 0 is even). */
    if (x <= 0x33000000u) return sign;
    uint32_t e = x >> 23;                        /* 102 .. 112 */
    uint32_t m = (x & 0x7fffffu) | 0x800000u;    /* value = m * 2^(e-150) */
    uint32_t shift = 126 - e;                    /* to units of 2^-24: 14 .. 24 */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++; /* may carry into the smallest normal */
    return (uint16_t)(sign | r);
}

uint16_t al_f32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u); /* round to nearest, ties to even; overflow -> inf */
    return (uint16_t)(x >> 16);
}

/* ---------- reader ---------- */

/* Element sizes in bits of every dtype the format defines; only F32, F16
 * and BF16 are readable, the rest are listed with dtype 0. */
static const struct {
    const char *name;
    int bits;
    al_dtype dt;
} k_dtypes[] = {
    {"F32", 32, AL_DT_F32}, {"F16", 16, AL_DT_F16}, {"BF16", 16, AL_DT_BF16},
    {"F64", 64, 0},         {"I64", 64, 0},         {"U64", 64, 0},
    {"I32", 32, 0},         {"U32", 32, 0},         {"I16", 16, 0},
    {"U16", 16, 0},         {"I8", 8, 0},           {"U8", 8, 0},
    {"BOOL", 8, 0},         {"F8_E5M2", 8, 0},      {"F8_E4M3", 8, 0},
    {"F8_E8M0", 8, 0},      {"F6_E2M3", 6, 0},      {"F6_E3M2", 6, 0},
    {"F4", 4, 0},           {"C64", 64, 0},
};

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int elem_bytes(al_dtype dt) { return dt == AL_DT_F32 ? 4 : 2; }

/* A power of two; 4096 if the system will not say. */
static uintptr_t page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 && (p & (p - 1)) == 0 ? (uintptr_t)p : 4096;
}

/* The dtype string of a listed tensor is stored after its name's NUL so
 * that reading an unsupported tensor can name it (the struct has no field). */
static const char *tensor_dtype_str(const al_st_file *f, const al_st_tensor *t) {
    if (t->dtype == AL_DT_F32) return "F32";
    if (t->dtype == AL_DT_F16) return "F16";
    if (t->dtype == AL_DT_BF16) return "BF16";
    if (!f->t || !t->name) return "(unknown)";
    uintptr_t a = (uintptr_t)t, lo = (uintptr_t)f->t, hi = (uintptr_t)(f->t + f->n);
    if (a >= lo && a < hi) return t->name + strlen(t->name) + 1;
    return "(unknown)";
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const al_st_tensor *)a)->name, ((const al_st_tensor *)b)->name);
}

static int cmp_tensor_begin(const void *a, const void *b) {
    const al_st_tensor *x = *(const al_st_tensor *const *)a, *y = *(const al_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static void free_tensors(al_st_tensor *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

/* A JSON integer in [0, 2^63). */
static int get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return 0;
    json_int_t x = json_integer_value(v);
    if (x < 0) return 0;
    *out = (uint64_t)x;
    return 1;
}

/* Validates one header entry into *t (name and dtype string owned by t). */
static int parse_entry(const char *fn, const char *name, const json_t *v, uint64_t buf_size,
                       al_st_tensor *t, char err[AL_ERRLEN]) {
    if (!json_is_object(v))
        return al_err(err, AL_EFORMAT, "%s: tensor '%s': entry is not an object", fn, name);
    const json_t *jd = json_object_get(v, "dtype");
    const json_t *js = json_object_get(v, "shape");
    const json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return al_err(err, AL_EFORMAT, "%s: tensor '%s': missing or non-string dtype", fn, name);
    if (!json_is_array(js))
        return al_err(err, AL_EFORMAT, "%s: tensor '%s': missing or non-array shape", fn, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return al_err(err, AL_EFORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", fn,
                      name);
    const char *ds = json_string_value(jd);
    int bits = 0;
    al_dtype dt = 0;
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++) {
        if (strcmp(ds, k_dtypes[i].name) == 0) {
            bits = k_dtypes[i].bits;
            dt = k_dtypes[i].dt;
            break;
        }
    }
    size_t ndim = json_array_size(js);
    if (ndim > AL_ST_MAXDIM)
        return al_err(err, AL_EUNSUP, "%s: tensor '%s': %zu dimensions (at most %d supported)", fn,
                      name, ndim, AL_ST_MAXDIM);
    /* numel in bits with overflow checks: a hostile shape must not wrap. */
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (!get_u64(json_array_get(js, i), &d))
            return al_err(err, AL_EFORMAT,
                          "%s: tensor '%s': shape[%zu] is not a non-negative integer", fn, name,
                          i);
        t->shape[i] = (int64_t)d;
        if (d != 0 && numel > UINT64_MAX / d) overflow = 1;
        else numel *= d;
    }
    /* A zero dimension makes any product of the others harmless. */
    for (size_t i = 0; i < ndim; i++) {
        if (t->shape[i] == 0) {
            overflow = 0;
            numel = 0;
        }
    }
    if (overflow || (bits && numel > UINT64_MAX / (uint64_t)bits))
        return al_err(err, AL_EFORMAT, "%s: tensor '%s': shape is too large (overflow)", fn, name);
    uint64_t b, e;
    if (!get_u64(json_array_get(jo, 0), &b) || !get_u64(json_array_get(jo, 1), &e))
        return al_err(err, AL_EFORMAT,
                      "%s: tensor '%s': data_offsets are not non-negative integers", fn, name);
    if (b > e || e > buf_size)
        return al_err(err, AL_EFORMAT,
                      "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte buffer",
                      fn, name, (unsigned long long)b, (unsigned long long)e,
                      (unsigned long long)buf_size);
    if (bits) {
        uint64_t nbits = numel * (uint64_t)bits;
        if (nbits % 8 != 0 || nbits / 8 != e - b)
            return al_err(err, AL_EFORMAT,
                          "%s: tensor '%s': data_offsets span %llu bytes but the %s shape needs "
                          "%llu%s",
                          fn, name, (unsigned long long)(e - b), ds,
                          (unsigned long long)(nbits / 8), nbits % 8 ? " and a fraction" : "");
    }
    /* Dtypes the format does not define are listed too (dtype 0) and fail
     * when read: the span is in bounds, its size simply cannot be checked. */
    size_t nl = strlen(name), dl = strlen(ds);
    char *s = malloc(nl + dl + 2);
    if (!s) return al_err(err, AL_ENOMEM, "%s: out of memory", fn);
    memcpy(s, name, nl + 1);
    memcpy(s + nl + 1, ds, dl + 1);
    t->name = s;
    t->dtype = dt;
    t->ndim = (int)ndim;
    t->begin = b;
    t->end = e;
    return AL_OK;
}

/* Parses and validates the header of a mapped file into a sorted array. */
static int parse_header(const char *fn, const uint8_t *map, size_t size, al_st_tensor **out_t,
                        int *out_n, size_t *out_data_off, char err[AL_ERRLEN]) {
    if (size < 8)
        return al_err(err, AL_EFORMAT, "%s: %zu bytes, too short for a safetensors header", fn,
                      size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | map[i];
    if (hl > ST_MAX_HEADER)
        return al_err(err, AL_EFORMAT, "%s: header length %llu exceeds the 100 MB limit", fn,
                      (unsigned long long)hl);
    if (hl > size - 8)
        return al_err(err, AL_EFORMAT,
                      "%s: header length %llu exceeds the file (%zu bytes): truncated?", fn,
                      (unsigned long long)hl, size);
    if (hl < 2 || map[8] != '{')
        return al_err(err, AL_EFORMAT, "%s: header does not start with a JSON object", fn);
    json_error_t je;
    json_t *root = json_loadb((const char *)map + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return al_err(err, AL_EFORMAT, "%s: invalid JSON header: %s (column %d)", fn, je.text,
                      je.column);
    int rc = AL_OK;
    al_st_tensor *t = NULL;
    int n = 0;
    const al_st_tensor **by_off = NULL;
    if (!json_is_object(root)) {
        rc = al_err(err, AL_EFORMAT, "%s: header is not a JSON object", fn);
        goto done;
    }
    uint64_t buf_size = size - 8 - hl;
    size_t cap = json_object_size(root);
    if (cap > (size_t)1 << 24) { /* int n; also a 100 MB header holds fewer */
        rc = al_err(err, AL_EFORMAT, "%s: %zu header entries", fn, cap);
        goto done;
    }
    t = calloc(cap ? cap : 1, sizeof *t);
    if (!t) {
        rc = al_err(err, AL_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            /* A text-to-text map; its contents do not concern us. */
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) {
                rc = al_err(err, AL_EFORMAT, "%s: __metadata__ is not an object", fn);
                goto done;
            }
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = al_err(err, AL_EFORMAT, "%s: __metadata__ '%s' is not a string", fn, mk);
                    goto done;
                }
            }
            continue;
        }
        if ((rc = parse_entry(fn, key, val, buf_size, &t[n], err)) != AL_OK) goto done;
        n++;
    }
    /* Non-empty spans must not overlap (the reference promises this; it is
     * what bounds memory by the file size). */
    by_off = malloc((n ? (size_t)n : 1) * sizeof *by_off);
    if (!by_off) {
        rc = al_err(err, AL_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (t[i].end > t[i].begin) by_off[m++] = &t[i];
    qsort(by_off, (size_t)m, sizeof *by_off, cmp_tensor_begin);
    for (int i = 1; i < m; i++) {
        if (by_off[i]->begin < by_off[i - 1]->end) {
            rc = al_err(err, AL_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data buffer",
                        fn, by_off[i - 1]->name, by_off[i]->name);
            goto done;
        }
    }
    qsort(t, (size_t)n, sizeof *t, cmp_tensor_name);
done:
    free(by_off);
    json_decref(root);
    if (rc != AL_OK) {
        free_tensors(t, n);
        return rc;
    }
    *out_t = t;
    *out_n = n;
    *out_data_off = (size_t)(8 + hl);
    return AL_OK;
}

int al_st_open(al_st_file *f, const char *path, char err[AL_ERRLEN]) {
    const char *fn = base_name(path);
    int fd;
    /* a FIFO planted in a model folder must not hang the open */
    int orc = al_file_open_regular(path, &fd, NULL, err);
    if (orc) return orc;
    /* Writable but private: a tensor served from the file (al_st_serve)
     * that something writes gets its own copy of the page; the file never
     * changes. The reader itself never writes. The lease (lease.c) keeps
     * the descriptor; without one it is closed and nothing is served. */
    void *p = NULL;
    size_t size = 0;
    al_lease *lease = NULL;
    /* our own descriptor for the copies' pread (st_copy_fn); -1: they
     * read the mapping */
    int rfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    int me = al_lease_map(fd, fn, &p, &size, &lease);
    if (me && rfd >= 0) close(rfd);
    if (me == -EFBIG) return al_err(err, AL_EFORMAT, "%s: too large to map", fn);
    if (me)
        return al_err(err, me == -ENOMEM ? AL_ENOMEM : AL_EIO, "%s: mmap failed: %s", path,
                      strerror(-me));
    if (size < 8) {
        if (rfd >= 0) close(rfd);
        al_lease_unmap(p, size);
        return al_err(err, AL_EFORMAT, "%s: %zu bytes, too short for a safetensors header", fn, size);
    }
    al_st_tensor *t = NULL;
    int n = 0;
    size_t data_off = 0;
    int rc = parse_header(fn, p, size, &t, &n, &data_off, err);
    char *pc = rc == AL_OK ? strdup(path) : NULL;
    if (rc == AL_OK && !pc) rc = al_err(err, AL_ENOMEM, "%s: out of memory", fn);
    if (rc != AL_OK) {
        free_tensors(t, n);
        if (rfd >= 0) close(rfd);
        al_lease_unmap(p, size);
        return rc;
    }
    f->path = pc;
    f->fd = rfd;
    f->map = p;
    f->lease = lease;
    f->size = size;
    f->data_off = data_off;
    f->t = t;
    f->n = n;
    return AL_OK;
}

void al_st_close(al_st_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    al_lease_unmap((void *)f->map, f->size);
    free_tensors(f->t, f->n);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

const al_st_tensor *al_st_find(const al_st_file *f, const char *name) {
    if (!f || !name || !f->t || f->n <= 0) return NULL;
    al_st_tensor key = {.name = (char *)name};
    return bsearch(&key, f->t, (size_t)f->n, sizeof *f->t, cmp_tensor_name);
}

size_t al_st_numel(const al_st_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* A tensor's conversion, split over the compute pool. Straight copies: each
 * thread converts one contiguous share of the tensor, so that it alone
 * faults in (and the kernel zeroes) the fresh arena pages it writes; two
 * threads writing halves of the same 2 MiB page would each zero a huge page
 * and the loser's work is thrown away. Transposes: one run of whole file
 * rows at a time, each thread writing its own band of destination rows
 * (file columns), for the same reason. */
typedef struct st_run {
    const uint8_t *src;       /* the tensor's first byte in the mapping */
    al_dtype in;              /* file dtype */
    int out_bf16;             /* dst is uint16_t bf16, else float */
    void *dst;
    size_t n;                 /* elements of the tensor */
    size_t r0, r1;            /* transposing: the run's file rows */
    size_t rows, cols;        /* file shape (2-D) when transposing, else 0 */
    uintptr_t pg;             /* page size */
    const al_lease *lease;    /* the file's (NULL: none) */
    int fd;                   /* the file's for pread (-1: read the mapping) */
    uint64_t off;             /* src's offset in the file */
} st_run;

#define ST_CHUNK ((size_t)4 << 20) /* bytes of the file converted between releases */
#define ST_TB 32                   /* transpose tile edge */
#define ST_PF 2                    /* tiles ahead that a transpose prefetches */

static inline float st_get(const uint8_t *s, al_dtype dt, size_t i) {
    if (dt == AL_DT_F32) {
        float f;
        memcpy(&f, s + 4 * i, 4);
        return f;
    }
    uint16_t h = (uint16_t)(s[2 * i] | (s[2 * i + 1] << 8));
    return dt == AL_DT_F16 ? al_f16_to_f32(h) : al_bf16_to_f32(h);
}

/* The k file elements at s (in r's file dtype) into dst element a on. */
static void st_conv(const st_run *r, size_t a, const uint8_t *s, size_t k) {
    if (r->out_bf16) {
        uint16_t *d = (uint16_t *)r->dst + a;
        if (r->in == AL_DT_BF16) memcpy(d, s, 2 * k);
        else if (r->in == AL_DT_F32 && (uintptr_t)s % 4 == 0)
            al_bf16_round(d, (const float *)(const void *)s, k);
        else
            for (size_t j = 0; j < k; j++) d[j] = al_f32_to_bf16(st_get(s, r->in, j));
    } else {
        float *d = (float *)r->dst + a;
        if (r->in == AL_DT_F32) memcpy(d, s, 4 * k);
        else if (r->in == AL_DT_BF16 && (uintptr_t)s % 2 == 0)
            al_bf16_widen(d, (const uint16_t *)(const void *)s, k);
        else
            for (size_t j = 0; j < k; j++) d[j] = st_get(s, r->in, j);
    }
}

/* dst[j] for file elements [a, b) in the file's order, from the mapping. */
static void st_convert(const st_run *r, size_t a, size_t b) {
    st_conv(r, a, r->src + a * (size_t)elem_bytes(r->in), b - a);
}

#define ST_BUF ((size_t)256 << 10) /* bytes of the file a straight copy preads at a time */

/* The calling thread's pread buffer (ST_BUF bytes, kept while it lives;
 * the pointer in static TLS so that leak checkers see it), or NULL. */
static pthread_key_t st_buf_key;
static pthread_once_t st_buf_once = PTHREAD_ONCE_INIT;
static int st_buf_keyed;
static _Thread_local void *st_buf_mine;

static void st_buf_key_make(void) { st_buf_keyed = pthread_key_create(&st_buf_key, free) == 0; }

static void *st_buf(void) {
    if (st_buf_mine) return st_buf_mine;
    if (pthread_once(&st_buf_once, st_buf_key_make) != 0 || !st_buf_keyed) return NULL;
    void *b = aligned_alloc(64, ST_BUF);
    if (b && pthread_setspecific(st_buf_key, b) != 0) { /* nothing would free it */
        free(b);
        b = NULL;
    }
    return st_buf_mine = b;
}

/* File elements [a, b) converted through pread(2) (straight into dst in
 * one call when the dtypes agree, else ST_BUF at a time through the
 * thread's buffer):
 * the kernel copies from the page cache, so no page of the mapping is
 * faulted in or handed back. Returns where it stopped: b, or the first
 * element to take from the mapping instead (no descriptor, no buffer, a
 * short read: a file cut short faults there as before; or the lease broke
 * while reading: the file's new bytes would be read, the mapping holds the
 * old ones; al_lease_copied is set before the writer is let go). */
static size_t st_pread(const st_run *r, size_t a, size_t b) {
    size_t es = (size_t)elem_bytes(r->in);
    int same = r->out_bf16 ? r->in == AL_DT_BF16 : r->in == AL_DT_F32;
    uint8_t *buf = same ? NULL : st_buf();
    if (r->fd < 0 || (!same && !buf)) return a;
    while (a < b) {
        size_t k = same || b - a < ST_BUF / es ? b - a : ST_BUF / es;
        uint8_t *to = same ? (uint8_t *)r->dst + a * es : buf;
        ssize_t got = pread(r->fd, to, k * es, (off_t)(r->off + a * es));
        if (got != (ssize_t)(k * es) || al_lease_copied(r->lease)) return a;
        if (!same) st_conv(r, a, buf, k);
        a += k;
    }
    return a;
}

/* Hands back the whole pages of the mapping from *done (a page boundary,
 * or the first byte of the span) up to hi, and moves *done there. Advice:
 * if it fails, the pages merely stay until al_st_close. Not once the
 * lease broke and the mapping is anonymous: that would zero them. */
static void st_release(uintptr_t *done, uintptr_t hi, uintptr_t pg, const al_lease *lease) {
    uintptr_t lo = (*done + pg - 1) & ~(pg - 1);
    hi &= ~(pg - 1);
    if (hi <= lo || al_lease_copied(lease)) return;
    (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    *done = hi;
}

/* Maps the pages of [lo, hi) of the mapping in one call (Linux 5.14+)
 * instead of a page fault every 16 pages (under a hypervisor that exits
 * on guest faults, each a costly exit). A hint: where unsupported, the
 * faults happen anyway. Not for straight copies (st_copy_fn), nor for
 * what a transpose preads. */
static void st_populate(uintptr_t lo, uintptr_t hi, uintptr_t pg) {
#ifdef MADV_POPULATE_READ
    lo &= ~(pg - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
#else
    (void)lo, (void)hi, (void)pg;
#endif
}

/* Where share k of the straight copy starts (k = 0 .. parts): shares are
 * grains of 16 pages counted from the first page boundary inside the
 * tensor, so neighbouring threads do not both keep a page mapped. */
static size_t st_share(const st_run *r, size_t k, size_t parts) {
    size_t es = (size_t)elem_bytes(r->in), g = 16 * r->pg;
    if (k == 0) return 0;
    if (k >= parts) return r->n;
    size_t f0 = (size_t)((r->pg - (uintptr_t)r->src % r->pg) % r->pg);
    size_t at = f0 + (k - 1) * g; /* bytes, a page boundary of the mapping */
    size_t e = (at + es - 1) / es;
    return e < r->n ? e : r->n;
}

static void st_copy_fn(void *p, int tid, int nt) {
    const st_run *r = p;
    size_t es = (size_t)elem_bytes(r->in), g = 16 * r->pg;
    size_t parts = (r->n * es + g - 1) / g + 1;
    long lo, hi;
    al_split((long)parts, nt, tid, &lo, &hi);
    size_t a = st_share(r, (size_t)lo, parts), b = st_share(r, (size_t)hi, parts);
    uintptr_t done = (uintptr_t)r->src + a * es;
    /* pread first (see the top of the file). Through the mapping instead,
     * the source is read once, in order: the page faults of the reads
     * (each maps 16 pages, fault-around) cost less than MADV_POPULATE_READ,
     * which walks every page again after faulting it (bf16 GPT-2 on the
     * 2-core VM: a fifth fewer CPU samples outside the zeroing of
     * the arena's pages and the rounding). With pread, the same bench_load
     * (5 reps, 6 runs of each binary alternating, load average ~7 from
     * other jobs): best 2.3-4.2 GB/s against 0.6-1.2 through the mapping,
     * median 0.6-1.6 (five of six 1.3-1.6) against 0.45-0.9; peak RSS 251 MB (254 before). */
    for (size_t i = a; i < b;) {
        size_t e = b - i < ST_CHUNK / es ? b : i + ST_CHUNK / es;
        size_t at = st_pread(r, i, e);
        if (at < e) {
            st_convert(r, at, e);
            st_release(&done, (uintptr_t)r->src + e * es, r->pg, r->lease);
        }
        i = e;
    }
}

/* d[j * ldd + i] = s[i * lds + j] for i < h, j < w (4-byte elements). */
static void st_tr32(float *d, size_t ldd, const float *s, size_t lds, size_t h, size_t w) {
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 4 <= h; i += 4) {
        size_t j = 0;
        for (; j + 4 <= w; j += 4) {
            __m128 a = _mm_loadu_ps(s + i * lds + j), b = _mm_loadu_ps(s + (i + 1) * lds + j);
            __m128 c = _mm_loadu_ps(s + (i + 2) * lds + j), e = _mm_loadu_ps(s + (i + 3) * lds + j);
            _MM_TRANSPOSE4_PS(a, b, c, e);
            _mm_storeu_ps(d + j * ldd + i, a);
            _mm_storeu_ps(d + (j + 1) * ldd + i, b);
            _mm_storeu_ps(d + (j + 2) * ldd + i, c);
            _mm_storeu_ps(d + (j + 3) * ldd + i, e);
        }
        for (; j < w; j++)
            for (size_t k = i; k < i + 4; k++) d[j * ldd + k] = s[k * lds + j];
    }
#endif
    for (; i < h; i++)
        for (size_t j = 0; j < w; j++) d[j * ldd + i] = s[i * lds + j];
}

/* The same for 2-byte elements. */
static void st_tr16(uint16_t *d, size_t ldd, const uint16_t *s, size_t lds, size_t h, size_t w) {
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 8 <= h; i += 8) {
        size_t j = 0;
        for (; j + 8 <= w; j += 8) {
            __m128i a[8], b[8];
            for (int k = 0; k < 8; k++)
                a[k] = _mm_loadu_si128((const __m128i *)(const void *)(s + (i + k) * lds + j));
            for (int k = 0; k < 4; k++) {
                b[k] = _mm_unpacklo_epi16(a[2 * k], a[2 * k + 1]); /* cols 0-3 of a row pair */
                b[k + 4] = _mm_unpackhi_epi16(a[2 * k], a[2 * k + 1]); /* cols 4-7 */
            }
            for (int k = 0; k < 2; k++) { /* k = 0: cols 0-3, k = 1: cols 4-7 */
                __m128i c0 = _mm_unpacklo_epi32(b[4 * k], b[4 * k + 1]);
                __m128i c1 = _mm_unpackhi_epi32(b[4 * k], b[4 * k + 1]);
                __m128i c2 = _mm_unpacklo_epi32(b[4 * k + 2], b[4 * k + 3]);
                __m128i c3 = _mm_unpackhi_epi32(b[4 * k + 2], b[4 * k + 3]);
                uint16_t *o = d + (j + 4 * (size_t)k) * ldd + i;
                _mm_storeu_si128((__m128i *)(void *)o, _mm_unpacklo_epi64(c0, c2));
                _mm_storeu_si128((__m128i *)(void *)(o + ldd), _mm_unpackhi_epi64(c0, c2));
                _mm_storeu_si128((__m128i *)(void *)(o + 2 * ldd), _mm_unpacklo_epi64(c1, c3));
                _mm_storeu_si128((__m128i *)(void *)(o + 3 * ldd), _mm_unpackhi_epi64(c1, c3));
            }
        }
        for (; j < w; j++)
            for (size_t k = i; k < i + 8; k++) d[j * ldd + k] = s[k * lds + j];
    }
#endif
    for (; i < h; i++)
        for (size_t j = 0; j < w; j++) d[j * ldd + i] = s[i * lds + j];
}

/* One tile: file rows [i0, i0 + h) x columns [j0, j0 + w) (h, w <= ST_TB),
 * whose first element is at at0 and whose rows are lds elements apart (in
 * the mapping, or in a thread's pread buffer), transposed into dst (cols,
 * rows): straight when the dtypes agree (and the source is aligned), else
 * converted row by row into a local tile first. */
static void st_tile(const st_run *r, const uint8_t *at0, size_t lds, size_t i0, size_t h,
                    size_t j0, size_t w) {
    size_t es = (size_t)elem_bytes(r->in);
    if (r->in == AL_DT_F32 && !r->out_bf16 && (uintptr_t)at0 % 4 == 0) {
        st_tr32((float *)r->dst + j0 * r->rows + i0, r->rows, (const float *)(const void *)at0,
                lds, h, w);
        return;
    }
    if (r->in == AL_DT_BF16 && r->out_bf16 && (uintptr_t)at0 % 2 == 0) {
        st_tr16((uint16_t *)r->dst + j0 * r->rows + i0, r->rows,
                (const uint16_t *)(const void *)at0, lds, h, w);
        return;
    }
    if (!r->out_bf16) {
        _Alignas(64) float t[ST_TB * ST_TB];
        for (size_t i = 0; i < h; i++) {
            const uint8_t *s = at0 + i * lds * es;
            float *o = t + i * ST_TB;
            if (r->in == AL_DT_F32) memcpy(o, s, w * 4);
            else if (r->in == AL_DT_BF16 && (uintptr_t)s % 2 == 0)
                al_bf16_widen(o, (const uint16_t *)(const void *)s, w);
            else
                for (size_t j = 0; j < w; j++) o[j] = st_get(s, r->in, j);
        }
        st_tr32((float *)r->dst + j0 * r->rows + i0, r->rows, t, ST_TB, h, w);
        return;
    }
    _Alignas(64) uint16_t t[ST_TB * ST_TB];
    _Alignas(64) float v[ST_TB];
    for (size_t i = 0; i < h; i++) {
        const uint8_t *s = at0 + i * lds * es;
        uint16_t *o = t + i * ST_TB;
        if (r->in == AL_DT_BF16) {
            memcpy(o, s, w * 2);
        } else if (r->in == AL_DT_F32) {
            /* a constant size is a few vector loads, not a rep movs */
            if (w == ST_TB) memcpy(v, s, ST_TB * 4);
            else memcpy(v, s, w * 4);
            al_bf16_round(o, v, w);
        } else {
            for (size_t j = 0; j < w; j++) o[j] = al_f32_to_bf16(st_get(s, r->in, j));
        }
    }
    st_tr16((uint16_t *)r->dst + j0 * r->rows + i0, r->rows, t, ST_TB, h, w);
}

/* File rows [i0, i1) of columns [c0, c1) (a multiple of ST_TB from c0)
 * from the mapping. A tile reads ST_TB rows of the file a few cache lines
 * each: too many streams for the hardware prefetcher, whose misses left
 * the loads waiting. Each tile asks for the lines ST_PF tiles ahead. */
static void st_tiles_mapped(const st_run *r, size_t i0, size_t i1, size_t c0, size_t c1) {
    size_t es = (size_t)elem_bytes(r->in), tb = ST_TB * es;
    for (size_t rb = i0; rb < i1; rb += ST_TB) {
        size_t h = i1 - rb < ST_TB ? i1 - rb : ST_TB;
        for (size_t cb = c0; cb < c1; cb += ST_TB) {
            if (cb + (ST_PF + 1) * ST_TB <= c1) {
                const uint8_t *pf = r->src + (rb * r->cols + cb + ST_PF * ST_TB) * es;
                for (size_t i = 0; i < h; i++, pf += r->cols * es)
                    for (size_t b = 0; b < tb; b += 64) __builtin_prefetch(pf + b);
            }
            st_tile(r, r->src + (rb * r->cols + cb) * es, r->cols, rb, h, cb,
                    c1 - cb < ST_TB ? c1 - cb : ST_TB);
        }
    }
}

/* File rows [i0, r->r1) of columns [c0, c1) through pread, as st_pread
 * does for straight copies: as many whole rows as fill the thread's
 * buffer (a multiple of 8, the 16-bit kernel's height) in one call, then
 * the band's tiles from there. Every thread reads the run's whole rows
 * (only its band of them is used): a second copy by the kernel costs less
 * than a pread per row, or a buffer shared between the threads. Returns
 * the first row left to read from the mapping (r->r1 when done; i0 when
 * 8 rows do not fit in the buffer; see st_pread for the rest). */
static size_t st_tiles_pread(const st_run *r, size_t i0, size_t c0, size_t c1) {
    size_t es = (size_t)elem_bytes(r->in), rowb = r->cols * es, nb = ST_BUF / rowb;
    nb -= nb % 8;
    uint8_t *buf = r->fd >= 0 && nb ? st_buf() : NULL;
    if (!buf) return i0;
    while (i0 < r->r1) {
        size_t h = r->r1 - i0 < nb ? r->r1 - i0 : nb;
        ssize_t got = pread(r->fd, buf, h * rowb, (off_t)(r->off + i0 * rowb));
        if (got != (ssize_t)(h * rowb) || al_lease_copied(r->lease)) return i0;
        for (size_t rb = 0; rb < h; rb += ST_TB) {
            size_t th = h - rb < ST_TB ? h - rb : ST_TB;
            for (size_t cb = c0; cb < c1; cb += ST_TB)
                st_tile(r, buf + (rb * r->cols + cb) * es, r->cols, i0 + rb, th, cb,
                        c1 - cb < ST_TB ? c1 - cb : ST_TB);
        }
        i0 += h;
    }
    return i0;
}

/* Transposing: file rows [r0, r1) into dst (cols, rows); this thread
 * writes the destination rows (file columns) of its band only, through
 * pread where it can, else from the mapping. Tiles go along the file's
 * rows: reading the file across rows instead (a column band at a time)
 * left the copy waiting on one cache miss after another. */
static void st_transpose_fn(void *p, int tid, int nt) {
    const st_run *r = p;
    long lo, hi;
    al_split((long)((r->cols + ST_TB - 1) / ST_TB), nt, tid, &lo, &hi);
    size_t c0 = (size_t)lo * ST_TB, c1 = (size_t)hi * ST_TB < r->cols ? (size_t)hi * ST_TB : r->cols;
    if (c0 >= c1) return;
    size_t i0 = st_tiles_pread(r, r->r0, c0, c1);
    if (i0 == r->r1) return;
    /* every thread reads all the run's rows: each maps its share of them */
    size_t es = (size_t)elem_bytes(r->in), bytes = (r->r1 - i0) * r->cols * es;
    uintptr_t at = (uintptr_t)r->src + i0 * r->cols * es;
    st_populate(at + bytes * (size_t)tid / (size_t)nt, at + bytes * (size_t)(tid + 1) / (size_t)nt,
                r->pg);
    st_tiles_mapped(r, i0, r->r1, c0, c1);
}

/* Reads t into dst (n elements, float or bf16), transposed when asked
 * (t 2-D), on the compute pool. Pages of the mapping wholly inside the
 * span are released as the copy passes them (the at most two it shares
 * with its neighbours stay): every 4 MiB for straight copies that could
 * not pread, after each run of about 4 MiB of whole rows for transposes. */
static int st_read(const al_st_file *f, const al_st_tensor *t, void *dst, int out_bf16, size_t n,
                   int transpose, char err[AL_ERRLEN]) {
    const char *fn = base_name(f->path ? f->path : "safetensors");
    if (t->dtype != AL_DT_F32 && t->dtype != AL_DT_F16 && t->dtype != AL_DT_BF16)
        return al_err(err, AL_EUNSUP,
                      "%s: tensor '%s': dtype %s is not supported (F32, F16 and BF16 are)", fn,
                      t->name, tensor_dtype_str(f, t));
    size_t numel = al_st_numel(t);
    if (n != numel)
        return al_err(err, AL_ESHAPE, "%s: tensor '%s' has %zu elements, expected %zu", fn,
                      t->name, numel, n);
    if (transpose && t->ndim != 2)
        return al_err(err, AL_ESHAPE, "%s: tensor '%s' is not a matrix", fn, t->name);
    if (!f->map) return al_err(err, AL_EINVAL, "%s: the mapping was handed over", fn);
    /* Re-check the span so a tensor from another file cannot read out of bounds. */
    size_t es = (size_t)elem_bytes(t->dtype);
    if (t->end < t->begin || t->end > f->size - f->data_off || t->end - t->begin != numel * es)
        return al_err(err, AL_EFORMAT, "%s: tensor '%s': span does not match this file", fn,
                      t->name);
    const uint8_t *src = f->map + f->data_off + t->begin;
    st_run r = {.src = src, .in = t->dtype, .out_bf16 = out_bf16, .dst = dst, .n = n,
                .pg = page_size(), .lease = f->lease, .fd = f->fd, .off = f->data_off + t->begin};
    /* small tensors: the pool's hand-over would cost more than it saves */
    int par = n * es >= ((size_t)1 << 16) && al_pool_threads() > 1;
    if (!transpose) {
        if (par) al_pool_run(st_copy_fn, &r);
        else st_copy_fn(&r, 0, 1);
        return AL_OK;
    }
    r.rows = (size_t)t->shape[0];
    r.cols = (size_t)t->shape[1];
    if (r.cols == 0 || r.rows == 0) return AL_OK;
    size_t run = ST_CHUNK / es / r.cols + 1; /* whole rows */
    uintptr_t done = (uintptr_t)src;
    for (r.r0 = 0; r.r0 < r.rows; r.r0 = r.r1) {
        r.r1 = r.rows - r.r0 < run ? r.rows : r.r0 + run;
        if (par) al_pool_run(st_transpose_fn, &r);
        else st_transpose_fn(&r, 0, 1);
        st_release(&done, (uintptr_t)src + r.r1 * r.cols * es, r.pg, f->lease);
    }
    return AL_OK;
}

/* Populates share tid of [lo, hi) of the mapping. */
typedef struct st_span {
    uintptr_t lo, hi, pg;
} st_span;

static void st_populate_fn(void *p, int tid, int nt) {
    const st_span *s = p;
    size_t pages = (s->hi - s->lo + s->pg - 1) / s->pg;
    long a, b;
    al_split((long)pages, nt, tid, &a, &b);
    uintptr_t lo = s->lo + (uintptr_t)a * s->pg, hi = s->lo + (uintptr_t)b * s->pg;
    st_populate(lo, hi < s->hi ? hi : s->hi, s->pg);
}

const void *al_st_data(const al_st_file *f, const al_st_tensor *t) {
    if (!f->map || !f->lease) return NULL; /* unprotected: copy */
    if (t->dtype != AL_DT_F32 && t->dtype != AL_DT_F16 && t->dtype != AL_DT_BF16) return NULL;
    size_t es = (size_t)elem_bytes(t->dtype), numel = al_st_numel(t);
    if (t->end < t->begin || t->end > f->size - f->data_off || t->end - t->begin != numel * es)
        return NULL;
    const uint8_t *src = f->map + f->data_off + t->begin;
    return (uintptr_t)src % es ? NULL : src;
}

const void *al_st_serve(const al_st_file *f, const al_st_tensor *t) {
    const uint8_t *src = al_st_data(f, t);
    if (!src) return NULL;
    size_t numel = al_st_numel(t), es = (size_t)elem_bytes(t->dtype);
    st_span s = {.lo = (uintptr_t)src & ~(page_size() - 1), .hi = (uintptr_t)src + numel * es,
                 .pg = page_size()};
    if (s.hi - s.lo >= ((size_t)1 << 20) && al_pool_threads() > 1) al_pool_run(st_populate_fn, &s);
    else if (s.hi > s.lo) st_populate(s.lo, s.hi, s.pg);
    al_lease_keep(f->lease, src, numel * es); /* what a break must copy out */
    return src;
}

void *al_st_detach(al_st_file *f, size_t *size) {
    void *p = (void *)f->map;
    *size = f->size;
    al_lease_detach(f->lease); /* only served spans are read from now on */
    f->map = NULL;
    f->lease = NULL;
    return p;
}

void al_st_unmap(void *map, size_t size) { al_lease_unmap(map, size); }

int al_st_read_f32(const al_st_file *f, const al_st_tensor *t, float *dst, size_t n,
                   char err[AL_ERRLEN]) {
    return st_read(f, t, dst, 0, n, 0, err);
}

int al_st_read_f32_t(const al_st_file *f, const al_st_tensor *t, float *dst, size_t n,
                     char err[AL_ERRLEN]) {
    return st_read(f, t, dst, 0, n, 1, err);
}

int al_st_read_bf16(const al_st_file *f, const al_st_tensor *t, uint16_t *dst, size_t n,
                    int transpose, char err[AL_ERRLEN]) {
    return st_read(f, t, dst, 1, n, transpose, err);
}

/* ---------- sharded folders ---------- */

/* A shard name from the index must be a plain file in the same folder. */
static int plain_file_name(const char *s) {
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..") && strcmp(s, ".") != 0;
}

int al_st_dir_open(al_st_dir *d, const char *dir, const char *base, char err[AL_ERRLEN]) {
    char path[4096], name[512];
    snprintf(name, sizeof name, "%s.safetensors", base);
    if (al_path_join(path, sizeof path, dir, name) != AL_OK)
        return al_err(err, AL_ERANGE, "%.200s: path too long", dir);
    if (al_file_exists(path)) {
        al_st_file *f = calloc(1, sizeof *f);
        if (!f) return al_err(err, AL_ENOMEM, "%s: out of memory", name);
        int rc = al_st_open(f, path, err);
        if (rc != AL_OK) {
            free(f);
            return rc;
        }
        d->files = f;
        d->n_files = 1;
        return AL_OK;
    }
    char iname[512];
    snprintf(iname, sizeof iname, "%s.safetensors.index.json", base);
    if (al_path_join(path, sizeof path, dir, iname) != AL_OK)
        return al_err(err, AL_ERANGE, "%.200s: path too long", dir);
    if (!al_file_exists(path))
        return al_err(err, AL_ENOENT, "%.150s: neither %s nor %s", dir, name, iname);

    char *text = NULL;
    size_t len = 0;
    int rc = al_file_read(path, ST_MAX_INDEX, &text, &len, err);
    if (rc != AL_OK) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return al_err(err, AL_EFORMAT, "%s: invalid JSON: %s (line %d)", iname, je.text, je.line);
    al_st_file *files = NULL;
    int nf = 0;
    const char **shard_names = NULL;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        rc = al_err(err, AL_EFORMAT, "%s: weight_map is missing or not an object", iname);
        goto fail;
    }
    json_t *meta = json_object_get(root, "metadata");
    if (meta && !json_is_object(meta) && !json_is_null(meta)) {
        rc = al_err(err, AL_EFORMAT, "%s: metadata is not an object", iname);
        goto fail;
    }
    size_t nw = json_object_size(wm);
    if (nw == 0) {
        rc = al_err(err, AL_EFORMAT, "%s: weight_map is empty", iname);
        goto fail;
    }
    shard_names = calloc(nw, sizeof *shard_names);
    files = calloc(nw, sizeof *files);
    if (!shard_names || !files) {
        rc = al_err(err, AL_ENOMEM, "%s: out of memory", iname);
        goto fail;
    }
    const char *key;
    json_t *val;
    /* Pass 1: validate the values and open each distinct shard once. */
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            rc = al_err(err, AL_EFORMAT, "%s: weight_map '%s' is not a file name", iname, key);
            goto fail;
        }
        const char *sn = json_string_value(val);
        if (!plain_file_name(sn)) {
            rc = al_err(err, AL_EFORMAT,
                        "%s: weight_map '%s' -> '%s' is not a plain file name in the folder",
                        iname, key, sn);
            goto fail;
        }
        int seen = 0;
        for (int i = 0; i < nf && !seen; i++) seen = strcmp(shard_names[i], sn) == 0;
        if (seen) continue;
        if (al_path_join(path, sizeof path, dir, sn) != AL_OK) {
            rc = al_err(err, AL_ERANGE, "%.200s: path too long", sn);
            goto fail;
        }
        if ((rc = al_st_open(&files[nf], path, err)) != AL_OK) {
            if (rc == AL_ENOENT)
                al_err(err, AL_ENOENT, "%s: shard %s (for '%s') does not exist", iname, sn, key);
            goto fail;
        }
        shard_names[nf++] = sn;
    }
    /* Pass 2: each tensor must be in the shard the index names. */
    json_object_foreach(wm, key, val) {
        const char *sn = json_string_value(val);
        int i = 0;
        while (i < nf && strcmp(shard_names[i], sn) != 0) i++;
        if (i == nf || !al_st_find(&files[i], key)) {
            rc = al_err(err, AL_EFORMAT, "%s: tensor '%s' is mapped to %s, which does not hold it",
                        iname, key, sn);
            goto fail;
        }
    }
    /* A name held by two shards would make al_st_dir_find ambiguous. */
    for (int i = 0; i < nf; i++) {
        for (int k = 0; k < files[i].n; k++) {
            for (int j = i + 1; j < nf; j++) {
                if (al_st_find(&files[j], files[i].t[k].name)) {
                    rc = al_err(err, AL_EFORMAT, "%s: tensor '%s' is in both %s and %s", iname,
                                files[i].t[k].name, shard_names[i], shard_names[j]);
                    goto fail;
                }
            }
        }
    }
    free(shard_names);
    json_decref(root);
    d->files = files;
    d->n_files = nf;
    return AL_OK;
fail:
    for (int i = 0; i < nf; i++) al_st_close(&files[i]);
    free(files);
    free(shard_names);
    json_decref(root);
    return rc;
}

void al_st_dir_close(al_st_dir *d) {
    if (!d) return;
    for (int i = 0; i < d->n_files; i++) al_st_close(&d->files[i]);
    free(d->files);
    d->files = NULL;
    d->n_files = 0;
}

const al_st_tensor *al_st_dir_find(const al_st_dir *d, const char *name,
                                   const al_st_file **file) {
    for (int i = 0; d && i < d->n_files; i++) {
        const al_st_tensor *t = al_st_find(&d->files[i], name);
        if (t) {
            if (file) *file = &d->files[i];
            return t;
        }
    }
    return NULL;
}

/* ---------- writer ---------- */

static int cmp_entry_ptr(const void *a, const void *b) {
    return strcmp((*(const al_st_entry *const *)a)->name, (*(const al_st_entry *const *)b)->name);
}

static al_dtype entry_dtype(const al_st_entry *e) { return e->dtype ? e->dtype : AL_DT_F32; }

/* Writes the entry's values in its dtype; conversions and transposes go
 * through a bounded buffer. */
static int write_entry(al_atomic_file *af, const al_st_entry *e, size_t numel, uint8_t *buf,
                       size_t buf_n, char err[AL_ERRLEN]) {
    if (numel == 0) return AL_OK;
    al_dtype dt = entry_dtype(e);
    size_t es = (size_t)elem_bytes(dt);
    if (!e->transpose && e->data && dt == AL_DT_F32)
        return al_atomic_write(af, e->data, numel * 4, err);
    if (!e->transpose && !e->data && dt == AL_DT_BF16)
        return al_atomic_write(af, e->data16, numel * 2, err);
    /* File holds (s0, s1); memory holds (s1, s0): file[i][j] = data[j][i]. */
    size_t s0 = e->transpose ? (size_t)e->shape[0] : numel, s1 = e->transpose ? (size_t)e->shape[1] : 1;
    size_t k = 0, cap = buf_n / es;
    for (size_t i = 0; i < s0; i++) {
        for (size_t j = 0; j < s1; j++) {
            size_t at = e->transpose ? j * s0 + i : i;
            float v = e->data ? e->data[at] : al_bf16_to_f32(e->data16[at]);
            uint8_t *o = buf + k * es;
            if (dt == AL_DT_F32) {
                memcpy(o, &v, 4);
            } else {
                uint16_t h = dt == AL_DT_F16 ? al_f32_to_f16(v)
                             : e->data ? al_f32_to_bf16(v) : e->data16[at];
                o[0] = (uint8_t)h;
                o[1] = (uint8_t)(h >> 8);
            }
            if (++k == cap) {
                int rc = al_atomic_write(af, buf, k * es, err);
                if (rc != AL_OK) return rc;
                k = 0;
            }
        }
    }
    return k ? al_atomic_write(af, buf, k * es, err) : AL_OK;
}

int al_st_write(const char *path, const al_st_entry *e, int n, char err[AL_ERRLEN]) {
    const char *fn = base_name(path);
    if (n < 0 || (n > 0 && !e)) return al_err(err, AL_EINVAL, "%s: bad entry list", fn);
    int rc = AL_OK;
    const al_st_entry **order = malloc((n ? (size_t)n : 1) * sizeof *order);
    json_t *hdr = json_object();
    json_t *meta = json_object();
    char *text = NULL;
    uint8_t *buf = NULL;
    al_atomic_file af;
    af.fd = -1;
    af.tmp[0] = '\0';
    if (!order || !hdr || !meta || json_object_set_new(meta, "format", json_string("pt")) ||
        json_object_set_new(hdr, "__metadata__", meta)) {
        if (!hdr) json_decref(meta);
        rc = al_err(err, AL_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const al_st_entry *x = &e[i];
        if (!x->name || !x->name[0] || strcmp(x->name, "__metadata__") == 0) {
            rc = al_err(err, AL_EINVAL, "%s: entry %d has an empty or reserved name", fn, i);
            goto done;
        }
        if (x->ndim < 0 || x->ndim > AL_ST_MAXDIM || (x->transpose && x->ndim != 2)) {
            rc = al_err(err, AL_EINVAL, "%s: tensor '%s': bad ndim %d%s", fn, x->name, x->ndim,
                        x->transpose ? " (transpose needs 2)" : "");
            goto done;
        }
        uint64_t numel = 1;
        for (int k = 0; k < x->ndim; k++) {
            if (x->shape[k] < 0) {
                rc = al_err(err, AL_EINVAL, "%s: tensor '%s': negative shape", fn, x->name);
                goto done;
            }
            uint64_t s = (uint64_t)x->shape[k];
            if (s && numel > (UINT64_MAX / 8) / s) {
                rc = al_err(err, AL_EINVAL, "%s: tensor '%s': shape too large", fn, x->name);
                goto done;
            }
            numel *= s;
        }
        if (numel && !x->data && !x->data16) {
            rc = al_err(err, AL_EINVAL, "%s: tensor '%s': no data", fn, x->name);
            goto done;
        }
        if (x->dtype && x->dtype != AL_DT_F32 && x->dtype != AL_DT_F16 && x->dtype != AL_DT_BF16) {
            rc = al_err(err, AL_EINVAL, "%s: tensor '%s': cannot write dtype %d", fn, x->name,
                        (int)x->dtype);
            goto done;
        }
        order[i] = x;
    }
    qsort(order, (size_t)n, sizeof *order, cmp_entry_ptr);
    for (int i = 1; i < n; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            rc = al_err(err, AL_EINVAL, "%s: duplicate tensor name '%s'", fn, order[i]->name);
            goto done;
        }
    }
    /* Header in name order (jansson keeps insertion order), offsets likewise. */
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const al_st_entry *x = order[i];
        uint64_t bytes = (uint64_t)elem_bytes(entry_dtype(x));
        for (int k = 0; k < x->ndim; k++) bytes *= (uint64_t)x->shape[k];
        if (off + bytes < off || off + bytes > (uint64_t)INT64_MAX) {
            rc = al_err(err, AL_EINVAL, "%s: tensors too large in total", fn);
            goto done;
        }
        json_t *ent = json_object(), *shape = json_array(), *offs = json_array();
        int bad = !ent || !shape || !offs;
        for (int k = 0; !bad && k < x->ndim; k++)
            bad = json_array_append_new(shape, json_integer((json_int_t)x->shape[k])) != 0;
        bad = bad || json_array_append_new(offs, json_integer((json_int_t)off)) ||
              json_array_append_new(offs, json_integer((json_int_t)(off + bytes)));
        if (bad) {
            json_decref(ent);
            json_decref(shape);
            json_decref(offs);
            rc = al_err(err, AL_ENOMEM, "%s: out of memory", fn);
            goto done;
        }
        /* set_new takes the references, even on failure. */
        al_dtype xdt = entry_dtype(x);
        const char *dname = xdt == AL_DT_F32 ? "F32" : xdt == AL_DT_F16 ? "F16" : "BF16";
        if (json_object_set_new(ent, "dtype", json_string(dname)) ||
            json_object_set_new(ent, "shape", shape) ||
            json_object_set_new(ent, "data_offsets", offs)) {
            json_decref(ent);
            rc = al_err(err, AL_ENOMEM, "%s: out of memory", fn);
            goto done;
        }
        if (json_object_set_new(hdr, x->name, ent)) {
            /* jansson refuses keys that are not valid UTF-8 */
            rc = al_err(err, AL_EINVAL, "%s: tensor name '%s' is not valid UTF-8", fn, x->name);
            goto done;
        }
        off += bytes;
    }
    text = json_dumps(hdr, JSON_COMPACT);
    if (!text) {
        rc = al_err(err, AL_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    size_t hl = strlen(text);
    size_t padded = (hl + 7) & ~(size_t)7; /* 8 + padded is a multiple of 8 */
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    const size_t buf_n = 65536;
    buf = malloc(buf_n);
    if (!buf) {
        rc = al_err(err, AL_ENOMEM, "%s: out of memory", fn);
        goto done;
    }
    static const char spaces[8] = "        ";
    if ((rc = al_atomic_open(&af, path, err)) != AL_OK) goto done;
    if ((rc = al_atomic_write(&af, lenb, 8, err)) != AL_OK) goto done;
    if ((rc = al_atomic_write(&af, text, hl, err)) != AL_OK) goto done;
    if ((rc = al_atomic_write(&af, spaces, padded - hl, err)) != AL_OK) goto done;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int k = 0; k < order[i]->ndim; k++) numel *= (size_t)order[i]->shape[k];
        if ((rc = write_entry(&af, order[i], numel, buf, buf_n, err)) != AL_OK) goto done;
    }
    rc = al_atomic_commit(&af, err);
done:
    if (rc != AL_OK) al_atomic_abort(&af);
    free(buf);
    free(text);
    json_decref(hdr);
    free(order);
    return rc;
}

/* Matrix-product panels on oneDNN (onednn.h; DESIGN.md "The shared compute
 * core").
 *
 * Why oneDNN: it JIT-compiles for the CPU it finds (AVX-512, AVX512_BF16),
 * whatever OPENBLAS_CORETYPE pins OpenBLAS to, and it multiplies bf16
 * matrices with fp32 accumulation; PyTorch's CPU backend is built on it.
 *
 * One owner of the cores: Debian's libdnnl threads with OpenMP, and the
 * compute pool has threads of its own. Here oneDNN never starts a thread:
 * the pool splits a product into panels (ops_dense.c), and each pool thread
 * (and the caller of al_pool_run, thread 0) runs its panel through oneDNN
 * with its own OpenMP thread count set to 1 (libgomp keeps that count per
 * thread), so oneDNN takes its serial path and no OpenMP thread exists to
 * spin against the pool. Results depend on the shapes, never on timing.
 *
 * Primitives: one matmul primitive per (dtype, transposes, M, N, K, leading
 * dimensions, alpha, beta), created on first use (creation JIT-compiles,
 * about a millisecond) and kept while it is among the CACHE_CAP most
 * recently used; past that the least recently used one that no thread is
 * running is destroyed. Every shape always runs its own exact-shape
 * primitive (oneDNN's brgemm kernels for whole rows of C, its jit gemm for
 * a block of C's columns; al_gemm_plan), so a product's bits depend on its
 * shape alone, never on which shapes the process saw before: an earlier
 * design gave new row counts a shared run-time-M primitive once 384 shapes
 * existed, whose jit-gemm kernel rounds differently (measured: 90 % of the
 * elements of a 1024x2304x768 product differed in the last bits), so a
 * job's numbers changed with the daemon's history and a resumed run left
 * the path of an uninterrupted one. Variable-length batches cost one
 * creation per new shape instead. alpha is the primitive's output scale and
 * beta a sum post-op. Memory descriptors and objects are made per call
 * (well under a microsecond); the scratchpad is ours, one per thread, so
 * one primitive runs on several threads at once.
 *
 * Packed weights (al_dnnl_pack_b): a product split by rows has each row
 * panel's brgemm repack all of op(B), every call, every thread (GPT-2 bf16
 * LoRA or training: jit_brgemm_matmul_copy_b_* ~3-4 % of a step). For
 * the row-split bf16 products where it measured faster (ops_bf16.c,
 * gemm16_pack: C = A B with B deeper than wide) the caller instead
 * makes the matmul of its row panel with the weights' layout left to
 * oneDNN (format_tag any, entries with pk = 1), and the pool's threads each
 * reorder a block of op(B)'s columns (whole blocks of the chosen layout,
 * submemories of it: together the bytes of one whole reorder) into one
 * buffer of the calling thread; then every row panel runs on it. The
 * reorders of each part live in the entry with its matmul (made once, gone
 * with it). The buffer stays, grown to the largest op(B) packed: a weight,
 * GPT-2's 768 x 3072 at most, 4.7 MB in bf16. Same bits as the panels
 * repacking B themselves (the kernels are the same; tests/test_dense.c).
 * Single-threaded per panel, 512 rows, thread CPU time, half of op(B)
 * packed per thread (2026-12-07): c_fc forward 512x3072x768 12.4 -> 11.7
 * ms, c_attn 8.7 -> 8.3, d(input) 512x768x3072 11.7 -> 10.9; but two
 * threads at once gain less (both reading one packed op(B) instead of each
 * its own blocks copied into its cache), in wall time only the deep
 * products (gemm16_pack's numbers). Not the weight gradients (op(A) =
 * A^T, K the tokens): oneDNN's jit gemm, which packs per block.
 *
 * Threads: the cache is guarded by a mutex; per-thread state (stream,
 * scratchpad) lives in a pthread key whose destructor frees it when a job's
 * thread ends. */
#include "compute/onednn.h"
#include "compute/pool.h"

#include "al.h"

#ifndef AL_HAVE_ONEDNN

int al_dnnl_gemm(int dt_bf16, int transA, int transB, int M, int N, int K, float alpha,
                 const void *A, int lda, const void *B, int ldb, float beta, float *C, int ldc) {
    (void)dt_bf16, (void)transA, (void)transB, (void)M, (void)N, (void)K, (void)alpha;
    (void)A, (void)lda, (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    return AL_EUNSUP;
}
int al_dnnl_ready(void) { return 0; }
const char *al_dnnl_isa(void) { return "none"; }
void al_dnnl_cache_stats(int *live, long *created) {
    *live = 0;
    *created = 0;
}
void al_dnnl_set_cache_cap(int cap) { (void)cap; }
const al_dnnl_pk *al_dnnl_pack_b(int dt_bf16, int transB, int M, int N, int K, float alpha,
                                 int lda, const void *B, int ldb, float beta, int ldc, int parts) {
    (void)dt_bf16, (void)transB, (void)M, (void)N, (void)K, (void)alpha, (void)lda, (void)B;
    (void)ldb, (void)beta, (void)ldc, (void)parts;
    return NULL;
}
int al_dnnl_pack_part(const al_dnnl_pk *pk, int part) {
    (void)pk, (void)part;
    return AL_EUNSUP;
}
int al_dnnl_gemm_pk(int dt_bf16, int transB, int M, int N, int K, float alpha, const void *A,
                    int lda, const al_dnnl_pk *pk, int ldb, float beta, float *C, int ldc) {
    (void)dt_bf16, (void)transB, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)pk, (void)ldb, (void)beta, (void)C, (void)ldc;
    return AL_EUNSUP;
}

#else

#include <malloc.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* libgomp: the OpenMP thread count of the calling thread (oneDNN reads it
 * through omp_get_max_threads). Declared here so that the build needs no
 * -fopenmp. */
void omp_set_num_threads(int n);

#define CACHE_CAP 1024      /* primitives kept (least recently used go first) */
#define CACHE_SLOTS 1024    /* hash chains (power of two) */

typedef struct mm_key {
    int bf16, ta, tb, M, N, K, lda, ldb, ldc;
    int pk; /* 1: the weights come packed (al_dnnl_pack_b), b_md oneDNN's choice */
    uint32_t alpha, beta; /* bit patterns */
} mm_key;

typedef struct mm_entry {
    mm_key key;
    struct mm_entry *next;     /* hash chain */
    dnnl_primitive_t prim;     /* NULL: oneDNN has none for this key */
    dnnl_memory_desc_t b_md;   /* weights: fixed by the key (pk: the packed layout) */
    dnnl_memory_desc_t bsrc_md; /* pk: the plain op(B) the reorders read */
    struct pk_part *parts;     /* pk: the reorders of each part, made by the first pack */
    int nparts;
    dnnl_memory_desc_t sp_md;  /* scratchpad */
    size_t sp_bytes;
    uint64_t last_use;         /* g_dnnl.tick at the last lookup */
    _Atomic int users;         /* threads running it: raised under mu only */
} mm_entry;

static struct {
    pthread_once_t once;
    pthread_mutex_t mu;
    int ready;
    dnnl_engine_t eng;
    pthread_key_t tkey;
    mm_entry *slot[CACHE_SLOTS];
    int live, cap;
    long created;
    uint64_t tick;
} g_dnnl = {.once = PTHREAD_ONCE_INIT, .mu = PTHREAD_MUTEX_INITIALIZER, .cap = CACHE_CAP};

/* One part of a packing: a block of op(B)'s columns (whole blocks of the
 * packed layout's) reordered into its place in the packed buffer. */
typedef struct pk_part {
    dnnl_primitive_t r; /* NULL: the part has no columns */
    dnnl_memory_desc_t src, dst;
} pk_part;

struct al_dnnl_pk {
    void *buf;
    size_t bytes;
    dnnl_memory_desc_t md; /* the layout buf holds */
    mm_key key;            /* the row panel's matmul that chose it */
    const void *B;
    int parts;
};

typedef struct thread_state {
    dnnl_stream_t stream;
    void *sp;
    size_t sp_bytes;
    struct al_dnnl_pk pk; /* the op(B) this thread packed last (al_dnnl_pack_b) */
} thread_state;

static void thread_state_free(void *p) {
    thread_state *t = p;
    if (!t) return;
    if (t->stream) dnnl_stream_destroy(t->stream);
    al_free(t->sp);
    al_free(t->pk.buf);
    free(t);
}

/* oneDNN allocates and frees hundreds of KB making each primitive, on
 * whichever pool thread first runs the shape; glibc keeps such freed blocks
 * in its heaps, resident (a LoRA step on a small model held ~1 MB of them).
 * malloc_trim after each creation hands their pages back. Not a fixed mmap
 * threshold: the products whose A is transposed (the weight gradients,
 * dout^T x, K = the tokens) run on oneDNN's jit gemm, not brgemm (2.6
 * picks `gemm:jit` for their strided transposed source), whose driver
 * mallocs and frees its packing buffers inside every execution whatever the
 * scratchpad mode (gemm_driver.cpp; the user scratchpad holds the matmul's
 * own buffers only): 32 of 131-263 KB a tiny SFT-LoRA bf16 step, 51 of
 * 230-623 KB a tiny bf16 training step. A fixed 128 KiB threshold mapped each afresh:
 * ~1900 page faults (zeroed pages) a tiny bf16 training step, which ran
 * 6-10 % slower for it (25.5-26.2k tok/s against 27.7-29.0k, alternating
 * on an idle machine, 2026-12-07). Left to glibc's dynamic threshold they
 * stay in the heap and are reused; the price is their resident pages and
 * the holes they leave (tiny LoRA bf16 peak RSS 36.9-37.4 MB; 36.0-36.2
 * when an LD_PRELOAD experiment served them from one cached block per
 * thread, 2026-12-07). */
static void malloc_release(void) { (void)malloc_trim(0); }

static void dnnl_init_once(void) {
    if (pthread_key_create(&g_dnnl.tkey, thread_state_free) != 0) return;
    if (dnnl_engine_create(&g_dnnl.eng, dnnl_cpu, 0) != dnnl_success) return;
    g_dnnl.ready = 1;
}

int al_dnnl_ready(void) {
    pthread_once(&g_dnnl.once, dnnl_init_once);
    return g_dnnl.ready;
}

const char *al_dnnl_isa(void) {
    if (!al_dnnl_ready()) return "none";
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return "other";
    }
}

void al_dnnl_cache_stats(int *live, long *created) {
    pthread_mutex_lock(&g_dnnl.mu);
    *live = g_dnnl.live;
    *created = g_dnnl.created;
    pthread_mutex_unlock(&g_dnnl.mu);
}

void al_dnnl_set_cache_cap(int cap) {
    pthread_mutex_lock(&g_dnnl.mu);
    g_dnnl.cap = cap < 1 ? 1 : cap;
    pthread_mutex_unlock(&g_dnnl.mu);
}

/* The calling thread's stream, OpenMP count and a scratchpad of >= bytes. */
static thread_state *thread_get(size_t sp_bytes) {
    thread_state *t = pthread_getspecific(g_dnnl.tkey);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t) return NULL;
        if (dnnl_stream_create(&t->stream, g_dnnl.eng, dnnl_stream_default_flags) != dnnl_success) {
            free(t);
            return NULL;
        }
        omp_set_num_threads(1);
        if (pthread_setspecific(g_dnnl.tkey, t) != 0) {
            thread_state_free(t);
            return NULL;
        }
    }
    if (sp_bytes > t->sp_bytes) {
        void *p = al_calloc(sp_bytes, 1);
        if (!p) return NULL;
        al_free(t->sp);
        t->sp = p;
        t->sp_bytes = sp_bytes;
    }
    return t;
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static uint32_t key_hash(const mm_key *k) {
    const uint32_t w[11] = {(uint32_t)k->bf16 | (uint32_t)k->ta << 1 | (uint32_t)k->tb << 2 |
                                (uint32_t)k->pk << 3,
                            (uint32_t)k->M, (uint32_t)k->N, (uint32_t)k->K, (uint32_t)k->lda,
                            (uint32_t)k->ldb, (uint32_t)k->ldc, k->alpha, k->beta, 0, 0};
    uint32_t h = 2166136261u; /* FNV-1a over the words */
    for (int i = 0; i < 9; i++) {
        h ^= w[i];
        h *= 16777619u;
    }
    return h;
}

static int key_eq(const mm_key *a, const mm_key *b) {
    return a->bf16 == b->bf16 && a->ta == b->ta && a->tb == b->tb && a->M == b->M &&
           a->N == b->N && a->K == b->K && a->lda == b->lda && a->ldb == b->ldb &&
           a->ldc == b->ldc && a->alpha == b->alpha && a->beta == b->beta && a->pk == b->pk;
}

/* Memory descriptors of A (M x K), B (K x N) and C (M x N) for a key. */
static int make_mds(const mm_key *k, dnnl_dim_t M, dnnl_memory_desc_t *a, dnnl_memory_desc_t *b,
                    dnnl_memory_desc_t *c) {
    dnnl_data_type_t dt = k->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t da = {M, k->K}, db = {k->K, k->N}, dc = {M, k->N};
    dnnl_dims_t sa = {k->ta ? 1 : k->lda, k->ta ? k->lda : 1};
    dnnl_dims_t sb = {k->tb ? 1 : k->ldb, k->tb ? k->ldb : 1};
    dnnl_dims_t sc = {k->ldc, 1};
    if (a && dnnl_memory_desc_init_by_strides(a, 2, da, dt, sa) != dnnl_success) return -1;
    if (b && dnnl_memory_desc_init_by_strides(b, 2, db, dt, sb) != dnnl_success) return -1;
    if (c && dnnl_memory_desc_init_by_strides(c, 2, dc, dnnl_f32, sc) != dnnl_success) return -1;
    return 0;
}

/* Builds the primitive of a key (prim stays NULL when oneDNN has none). */
static void entry_build(mm_entry *e) {
    const mm_key *k = &e->key;
    dnnl_memory_desc_t a, c;
    if (make_mds(k, k->M, &a, &e->b_md, &c)) return;
    if (k->pk) {
        dnnl_dims_t db = {k->K, k->N};
        e->bsrc_md = e->b_md;
        if (dnnl_memory_desc_init_by_tag(&e->b_md, 2, db, k->bf16 ? dnnl_bf16 : dnnl_f32,
                                         dnnl_format_tag_any) != dnnl_success)
            return;
    }
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &a, &e->b_md, NULL, &c) != dnnl_success) return;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    float alpha, beta;
    memcpy(&alpha, &k->alpha, sizeof alpha);
    memcpy(&beta, &k->beta, sizeof beta);
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return;
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success)
        goto out;
    if (alpha != 1.0f && dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) != dnnl_success)
        goto out;
    if (beta != 0.0f) {
        if (dnnl_post_ops_create(&po) != dnnl_success ||
            dnnl_post_ops_append_sum(po, beta) != dnnl_success ||
            dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success)
            goto out;
    }
    if (dnnl_primitive_desc_create(&pd, &md, attr, g_dnnl.eng, NULL) != dnnl_success) goto out;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (sp) e->sp_md = *sp;
    else memset(&e->sp_md, 0, sizeof e->sp_md);
    e->sp_bytes = dnnl_memory_desc_get_size(&e->sp_md);
    if (k->pk) {
        const dnnl_memory_desc_t *w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        if (!w) goto out;
        e->b_md = *w;
    }
    if (dnnl_primitive_create(&e->prim, pd) != dnnl_success) e->prim = NULL;
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
}

/* Destroys the least recently used entry no thread is running; 0 when
 * every entry is in use. Caller holds g_dnnl.mu (users only rise under it,
 * so an entry seen idle here stays idle). */
static int evict_one(void) {
    mm_entry **victim = NULL;
    for (int h = 0; h < CACHE_SLOTS; h++)
        for (mm_entry **p = &g_dnnl.slot[h]; *p; p = &(*p)->next)
            if (atomic_load_explicit(&(*p)->users, memory_order_acquire) == 0 &&
                (!victim || (*p)->last_use < (*victim)->last_use))
                victim = p;
    if (!victim) return 0;
    mm_entry *e = *victim;
    *victim = e->next;
    if (e->prim) dnnl_primitive_destroy(e->prim);
    for (int i = 0; e->parts && i < e->nparts; i++)
        if (e->parts[i].r) dnnl_primitive_destroy(e->parts[i].r);
    free(e->parts);
    free(e);
    g_dnnl.live--;
    return 1;
}

/* The entry of a key, created when missing, marked in use (the caller
 * releases it); NULL when out of memory or oneDNN has no primitive. */
static mm_entry *lookup(const mm_key *k) {
    pthread_mutex_lock(&g_dnnl.mu);
    uint32_t h = key_hash(k) & (CACHE_SLOTS - 1);
    mm_entry *e = g_dnnl.slot[h];
    while (e && !key_eq(&e->key, k)) e = e->next;
    if (!e) {
        while (g_dnnl.live >= g_dnnl.cap && evict_one()) {
        }
        e = calloc(1, sizeof *e);
        if (e) {
            e->key = *k;
            entry_build(e);
            malloc_release();
            e->next = g_dnnl.slot[h];
            g_dnnl.slot[h] = e;
            g_dnnl.live++;
            g_dnnl.created++;
        }
    }
    if (e && e->prim) {
        e->last_use = ++g_dnnl.tick;
        atomic_fetch_add_explicit(&e->users, 1, memory_order_relaxed);
    } else {
        e = NULL;
    }
    pthread_mutex_unlock(&g_dnnl.mu);
    return e;
}

/* Runs the primitive of entry e (looked up, released here) on the calling
 * thread, its weights B in e->b_md's layout. */
static int entry_run(mm_entry *e, const void *A, const void *B, float *C) {
    const mm_key *k = &e->key;
    dnnl_memory_desc_t a_md, c_md;
    dnnl_memory_t a = NULL, b = NULL, c = NULL, sp = NULL;
    int rc = AL_EUNSUP;
    thread_state *t = thread_get(e->sp_bytes);
    if (!t || make_mds(k, k->M, &a_md, NULL, &c_md)) goto out;
    if (dnnl_memory_create(&a, &a_md, g_dnnl.eng, (void *)A) != dnnl_success ||
        dnnl_memory_create(&b, &e->b_md, g_dnnl.eng, (void *)B) != dnnl_success ||
        dnnl_memory_create(&c, &c_md, g_dnnl.eng, C) != dnnl_success ||
        dnnl_memory_create(&sp, &e->sp_md, g_dnnl.eng, t->sp) != dnnl_success)
        goto out;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c},
                               {DNNL_ARG_SCRATCHPAD, sp}};
    if (dnnl_primitive_execute(e->prim, t->stream, 4, args) == dnnl_success &&
        dnnl_stream_wait(t->stream) == dnnl_success)
        rc = AL_OK;
out:
    if (a) dnnl_memory_destroy(a);
    if (b) dnnl_memory_destroy(b);
    if (c) dnnl_memory_destroy(c);
    if (sp) dnnl_memory_destroy(sp);
    atomic_fetch_sub_explicit(&e->users, 1, memory_order_release);
    return rc;
}

int al_dnnl_gemm(int dt_bf16, int transA, int transB, int M, int N, int K, float alpha,
                 const void *A, int lda, const void *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0 || K <= 0 || !al_dnnl_ready()) return AL_EUNSUP;
    mm_key k = {.bf16 = dt_bf16 != 0, .ta = transA != 0, .tb = transB != 0, .M = M, .N = N,
                .K = K, .lda = lda, .ldb = ldb, .ldc = ldc, .alpha = fbits(alpha),
                .beta = fbits(beta)};
    /* the thread's OpenMP count is 1 before a primitive is made, not only
     * before it runs: oneDNN plans a primitive for the threads it sees at
     * creation (no shape measured so far rounds differently, but the plan
     * must be the one that runs) */
    if (!thread_get(0)) return AL_EUNSUP;
    mm_entry *e = lookup(&k);
    if (!e) return AL_EUNSUP;
    return entry_run(e, A, B, C);
}

/* The reorders of `parts` parts of a packed entry's op(B), made once:
 * part p gets the columns of blocks [p nb / parts, (p + 1) nb / parts) of
 * the nb blocks of the packed layout's column block (al_split). 0, or -1
 * when oneDNN cannot (a submemory not on whole blocks, no reorder). Caller
 * holds g_dnnl.mu. */
static int parts_make(mm_entry *e, int parts) {
    if (e->parts) return e->nparts == parts ? 0 : -1;
    pk_part *pp = calloc((size_t)parts, sizeof *pp);
    if (!pp) return -1;
    const dnnl_memory_desc_t *w = &e->b_md;
    if (w->format_kind != dnnl_blocked) goto fail;
    dnnl_dim_t blk = 1;
    for (int i = 0; i < w->format_desc.blocking.inner_nblks; i++)
        if (w->format_desc.blocking.inner_idxs[i] == 1) blk *= w->format_desc.blocking.inner_blks[i];
    long nb = (long)((e->key.N + blk - 1) / blk);
    for (int p = 0; p < parts; p++) {
        long lo, hi;
        al_split(nb, parts, p, &lo, &hi);
        dnnl_dim_t c0 = lo * blk, c1 = hi * blk < e->key.N ? hi * blk : e->key.N;
        if (c1 <= c0) continue;
        dnnl_dims_t dims = {e->key.K, c1 - c0}, offs = {0, c0};
        dnnl_primitive_desc_t pd = NULL;
        if (dnnl_memory_desc_init_submemory(&pp[p].src, &e->bsrc_md, dims, offs) != dnnl_success ||
            dnnl_memory_desc_init_submemory(&pp[p].dst, w, dims, offs) != dnnl_success ||
            dnnl_reorder_primitive_desc_create(&pd, &pp[p].src, g_dnnl.eng, &pp[p].dst, g_dnnl.eng,
                                               NULL) != dnnl_success ||
            dnnl_primitive_create(&pp[p].r, pd) != dnnl_success)
            pp[p].r = NULL;
        if (pd) dnnl_primitive_desc_destroy(pd);
        if (!pp[p].r) goto fail;
    }
    e->parts = pp;
    e->nparts = parts;
    malloc_release();
    return 0;
fail:
    for (int p = 0; p < parts; p++)
        if (pp[p].r) dnnl_primitive_destroy(pp[p].r);
    free(pp);
    malloc_release();
    return -1;
}

/* The key of a row panel's matmul on packed weights: the one al_dnnl_pack_b
 * makes the packing for and al_dnnl_gemm_pk runs. */
static mm_key pk_key(int dt_bf16, int transB, int M, int N, int K, float alpha, int lda, int ldb, float beta,
                     int ldc) {
    return (mm_key){.bf16 = dt_bf16 != 0, .tb = transB != 0, .M = M, .N = N, .K = K, .lda = lda,
                    .ldb = ldb, .ldc = ldc, .alpha = fbits(alpha), .beta = fbits(beta), .pk = 1};
}

const al_dnnl_pk *al_dnnl_pack_b(int dt_bf16, int transB, int M, int N, int K, float alpha,
                                 int lda, const void *B, int ldb, float beta, int ldc, int parts) {
    if (M <= 0 || N <= 0 || K <= 0 || parts < 1 || !al_dnnl_ready()) return NULL;
    mm_key k = pk_key(dt_bf16, transB, M, N, K, alpha, lda, ldb, beta, ldc);
    thread_state *t = thread_get(0);
    if (!t) return NULL;
    mm_entry *e = lookup(&k);
    if (!e) return NULL;
    const al_dnnl_pk *out = NULL;
    pthread_mutex_lock(&g_dnnl.mu);
    int made = parts_make(e, parts);
    pthread_mutex_unlock(&g_dnnl.mu);
    size_t bytes = dnnl_memory_desc_get_size(&e->b_md);
    if (made) goto out;
    if (bytes > t->pk.bytes) {
        void *p = al_calloc(bytes, 1);
        if (!p) goto out;
        al_free(t->pk.buf);
        t->pk.buf = p;
        t->pk.bytes = bytes;
    }
    t->pk.md = e->b_md;
    t->pk.key = k;
    t->pk.B = B;
    t->pk.parts = parts;
    out = &t->pk;
out:
    atomic_fetch_sub_explicit(&e->users, 1, memory_order_release);
    return out;
}

int al_dnnl_pack_part(const al_dnnl_pk *pk, int part) {
    thread_state *t = pk && part >= 0 && part < pk->parts ? thread_get(0) : NULL;
    if (!t) return AL_EUNSUP;
    mm_entry *e = lookup(&pk->key);
    if (!e) return AL_EUNSUP;
    int rc = AL_EUNSUP;
    dnnl_memory_t src = NULL, dst = NULL;
    pthread_mutex_lock(&g_dnnl.mu); /* made again if the entry was evicted since */
    int made = parts_make(e, pk->parts);
    pthread_mutex_unlock(&g_dnnl.mu);
    if (made || !dnnl_memory_desc_equal(&e->b_md, &pk->md)) goto out;
    const pk_part *pp = &e->parts[part];
    if (!pp->r) {
        rc = AL_OK;
        goto out;
    }
    if (dnnl_memory_create(&src, &pp->src, g_dnnl.eng, (void *)pk->B) != dnnl_success ||
        dnnl_memory_create(&dst, &pp->dst, g_dnnl.eng, pk->buf) != dnnl_success)
        goto out;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    if (dnnl_primitive_execute(pp->r, t->stream, 2, args) == dnnl_success &&
        dnnl_stream_wait(t->stream) == dnnl_success)
        rc = AL_OK;
out:
    if (src) dnnl_memory_destroy(src);
    if (dst) dnnl_memory_destroy(dst);
    atomic_fetch_sub_explicit(&e->users, 1, memory_order_release);
    return rc;
}

int al_dnnl_gemm_pk(int dt_bf16, int transB, int M, int N, int K, float alpha, const void *A,
                    int lda, const al_dnnl_pk *pk, int ldb, float beta, float *C, int ldc) {
    if (!pk || M <= 0 || N <= 0 || K <= 0 || !al_dnnl_ready()) return AL_EUNSUP;
    mm_key k = pk_key(dt_bf16, transB, M, N, K, alpha, lda, ldb, beta, ldc);
    if (!thread_get(0)) return AL_EUNSUP;
    mm_entry *e = lookup(&k);
    if (!e) return AL_EUNSUP;
    if (!dnnl_memory_desc_equal(&e->b_md, &pk->md)) { /* another row count chose another layout */
        atomic_fetch_sub_explicit(&e->users, 1, memory_order_release);
        return AL_EUNSUP;
    }
    return entry_run(e, A, pk->buf, C);
}

#endif

/* bench/bench_train: alignd's training-step and generation throughput, the
 * C side of the PyTorch comparison in BENCHMARKS.md (bench/torch_bench.py is
 * the other side; both print the same JSON lines).
 *
 * Shapes (as torch_bench.py):
 *   tiny    GPT-2 architecture, 4 layers, C 128, 4 heads, V 4096, ctx 128; B 8, T 128
 *   gpt2    GPT-2 124M: 12 layers, C 768, 12 heads, V 50257, ctx 1024;  B 4, T 256
 *   smollm  SmolLM-135M (Llama): 30 layers, C 576, 9 heads, 3 kv heads,
 *           FF 1536, V 49152, tied, rope_theta 10000;                  B 4, T 256
 * Modes:
 *   train   zero grads, al_model_forward, al_model_backward with
 *           dlogp = -1/(B*T) on every position (mean token cross entropy,
 *           targets = next token of random ids), al_adamw_step (lib/train/
 *           optim.h: lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0.01 on
 *           matrices) over all parameters; forward, backward and optimiser
 *           times are also reported apart;
 *   lora    the same with LoRA r=16, alpha=32 on c_attn + attn.c_proj (gpt2)
 *           or q/k/v/o_proj (llama), base frozen;
 *   gen     al_generate, greedy, batch 1 and 8, 128 new tokens from a 16-token
 *           prompt (112 on tiny, whose context is 128), prefill included.
 *           Batch 1 is bound by reading the weights, so before each timed
 *           step the pool also streams the model's weights (stream_fn, best
 *           of 3 passes): read_gbs is the best rate seen, bound_tokens_per_s
 *           = read_gbs / the bytes of the weights in products (the tied head
 *           once, in the dtype served), of_bound = tokens_per_s / that: a
 *           ratio against a comparator timed in the same minutes. ids_hash
 *           (FNV-1a of the last step's tokens) compares builds' outputs.
 *
 * faults_per_step: the process's page faults (minor and major) in the timed
 * steps, per step: memory a step maps afresh (zeroed pages, clear_page in a
 * profile) rather than reuses. The first step touches the gradients and the
 * activations first; the second grows glibc's heaps, once its dynamic mmap
 * threshold has risen past the sizes of the buffers oneDNN's jit gemm
 * mallocs and frees in each product (onednn.c). From the third step on, a
 * step that reuses its memory shows 0 (with --warmup 2).
 *
 * MFU = model FLOPs per token * tokens/s / (al_gemm rate at 1024^3 on the same
 * pool, measured at start in this process). Model FLOPs per token:
 * 6 N + 12 L C T for training, 4 N + 12 L C T for LoRA (no weight gradients
 * for the frozen base), N = parameters in matrix products (all but GPT-2's
 * position embeddings; the tied head once).
 *
 * Single-threaded apart from the shared pool. A benchmark, never a test: it
 * asserts nothing about times.
 *
 *   dpo     LoRA as above, B pairs of (chosen, rejected) rows: the reference's
 *           log-probs from the adapters switched off (forward only), the
 *           policy's forward, DPO's sigmoid loss (beta 0.1) on the sequence
 *           sums, backward, AdamW.
 *
 * Usage: bench_train --shape tiny|gpt2|smollm|qwen05 --mode train|lora|dpo|gen
 *                    [--steps N] [--warmup N] [--threads N]
 *                    [--matmul onednn|openblas]   (default: the library's, ops.h)
 *                    [--dtype fp32|bf16]          (bf16: mixed precision, model.h)
 *                    [--B N] [--T N]              (batch and length instead of the shape's;
 *                                                  gen: only batch N)
 *                    [--grad-ckpt 0|1]            (gradient checkpointing: backward recomputes
 *                                                  each layer's forward but the last's)
 *                    [--fused-head 0|1]           (train, lora: the forward gets dlogp, as the
 *                                                  trainer's SFT gives it (al_fwd.dlogp), and
 *                                                  runs a frozen LM head's backward at once;
 *                                                  default 1)
 *                    [--hash 1]                   (train, lora, dpo: "state_hash", an FNV hash of
 *                                                  every step's log-probs and gradients and
 *                                                  the final weights, bf16 copies and moments:
 *                                                  two builds' bits compared; slows the steps)
 *                    [--max-grad-norm X]          (train, lora, dpo: clip the gradients' global
 *                                                  norm to X before AdamW, as every trainer's
 *                                                  step does; in opt_s; default 0 = off) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "al.h"
#include "compute/ops.h"
#include "compute/pool.h"
#include "model/config.h"
#include "model/model.h"
#include "train/estimate.h"
#include "train/optim.h"

typedef struct bench_shape {
    const char *name;
    al_arch arch;
    int L, C, NH, NKV, FF, V, ctx, T, B;
    int qkv_bias;            /* Qwen2: q/k/v biases */
    float eps, theta;        /* 0: 1e-5 and 10000 */
} bench_shape;

static const bench_shape k_shapes[] = {
    {"tiny", AL_ARCH_GPT2, 4, 128, 4, 4, 512, 4096, 128, 128, 8, 0, 0, 0},
    {"gpt2", AL_ARCH_GPT2, 12, 768, 12, 12, 3072, 50257, 1024, 256, 4, 0, 0, 0},
    {"smollm", AL_ARCH_LLAMA, 30, 576, 9, 3, 1536, 49152, 2048, 256, 4, 0, 0, 0},
    /* Qwen/Qwen2.5-0.5B-Instruct's config.json (context 2048 here) */
    {"qwen05", AL_ARCH_LLAMA, 24, 896, 14, 2, 4864, 151936, 2048, 256, 4, 1, 1e-6f, 1e6f},
};

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

/* Page faults of the process so far, minor and major. */
static long page_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* GFLOP/s of a 1024^3 product through al_gemm (or al_gemm_bf16) on the pool,
 * each panel single-threaded: the denominator of MFU for that dtype. */
static double sgemm_rate(int bf16) {
    const int n = 1024;
    float *A = al_calloc((size_t)n * n, sizeof(float));
    float *B = al_calloc((size_t)n * n, sizeof(float));
    float *C = al_calloc((size_t)n * n, sizeof(float));
    if (!A || !B || !C) {
        al_free(A);
        al_free(B);
        al_free(C);
        return 0;
    }
    al_rng r;
    al_rng_seed(&r, 7);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        A[i] = al_rng_uniform(&r) - 0.5f;
        B[i] = al_rng_uniform(&r) - 0.5f;
    }
    uint16_t *Ah = (uint16_t *)A, *Bh = (uint16_t *)B; /* bf16 in the first half */
    if (bf16) {
        al_bf16_round(Ah, A, (size_t)n * n);
        al_bf16_round(Bh, B, (size_t)n * n);
    }
#define PRODUCT()                                                                   \
    do {                                                                            \
        if (bf16) al_gemm_bf16(0, 1, n, n, n, 1.0f, Ah, n, Bh, n, 0.0f, C, n);      \
        else al_gemm(0, 1, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);                  \
    } while (0)
    PRODUCT();
    double best = 1e30;
    double t_start = al_now();
    for (int reps = 0; reps < 3 || (al_now() - t_start < 0.5 && reps < 100); reps++) {
        double t0 = al_now();
        PRODUCT();
        double dt = al_now() - t0;
        if (dt < best) best = dt;
    }
#undef PRODUCT
    al_free(A);
    al_free(B);
    al_free(C);
    return 2.0 * n * n * (double)n / best / 1e9;
}

static void make_config(al_model_config *cfg, const bench_shape *s) {
    al_config_default(cfg, s->arch);
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s",
             s->arch == AL_ARCH_GPT2 ? "gpt2" : "llama");
    cfg->n_layers = s->L;
    cfg->C = s->C;
    cfg->NH = s->NH;
    cfg->NKV = s->NKV;
    cfg->HD = s->C / s->NH;
    cfg->FF = s->FF;
    cfg->V = s->V;
    cfg->max_T = s->ctx;
    cfg->norm_eps = s->eps > 0 ? s->eps : 1e-5f;
    cfg->rope_theta = s->theta > 0 ? s->theta : 10000.0f;
    cfg->init_range = 0.02f;
    cfg->tie_word_embeddings = 1;
    cfg->attn_bias = s->arch == AL_ARCH_GPT2 || s->qkv_bias;
    cfg->o_bias = s->arch == AL_ARCH_GPT2;
    cfg->mlp_bias = s->arch == AL_ARCH_GPT2;
    cfg->has_lm_head = 1;
    cfg->has_score = 0;
    cfg->num_labels = 1;
}

/* Parameters that take part in matrix products (see the header comment). */
static double matmul_params(al_model *m, const bench_shape *s) {
    double n = (double)al_model_num_params(m, 0);
    if (s->arch == AL_ARCH_GPT2) n -= (double)s->ctx * s->C;
    return n;
}

static const char *g_dtype = "fp32";
static int g_ckpt; /* --grad-ckpt 1: gradient checkpointing (AL_MODEL_GRAD_CKPT) */
static int g_fused = 1; /* --fused-head 0: the forward is not given dlogp */
static int g_hash;      /* --hash 1: state_hash */
static double g_max_gn; /* --max-grad-norm X: clip as a trainer does (0: off) */

/* FNV-1a (64-bit): state_hash and ids_hash */
#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

/* FNV-1a's step over 8-byte words (then the tail's bytes) of n 32-bit
 * (16-bit when half) values, folded into *h. */
static void hash_words(uint64_t *h, const void *p, size_t n, int half) {
    const unsigned char *b = p;
    size_t bytes = n * (half ? 2 : 4), i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t x;
        memcpy(&x, b + i, sizeof x);
        *h = (*h ^ x) * FNV_PRIME;
    }
    for (; i < bytes; i++) *h = (*h ^ b[i]) * FNV_PRIME;
}

/* The trainable parameters' gradients (grads) or weights and bf16 copies. */
static void hash_params(uint64_t *h, al_model *m, int grads) {
    int np;
    const al_param *ps = al_model_params_ro(m, &np);
    for (int i = 0; i < np; i++) {
        if (!ps[i].g) continue;
        if (grads) hash_words(h, ps[i].g, ps[i].n, 0);
        else {
            if (ps[i].w) hash_words(h, ps[i].w, ps[i].n, 0);
            if (ps[i].h) hash_words(h, ps[i].h, ps[i].n, 1);
        }
    }
}

static void print_common(const bench_shape *s, const char *mode, int B, int T) {
    printf("{\"impl\":\"alignd\",\"shape\":\"%s\",\"mode\":\"%s\",\"B\":%d,\"T\":%d,"
           "\"threads\":%d,\"matmul\":\"%s\",\"dtype\":\"%s\",",
           s->name, mode, B, T, al_pool_threads(), al_gemm_backend_name(), g_dtype);
}

/* dpo: B pairs of (chosen, rejected) rows; the reference's log-probs come
 * from the same model with its adapters off (LoRA), the loss is DPO's
 * sigmoid loss with beta 0.1 on the sequence sums. */
static int run_train(al_model *m, const bench_shape *s, int lora, int dpo, int warmup, int steps,
                     double gemm_gflops) {
    const int B = dpo ? 2 * s->B : s->B, T = s->T, N = B * T;
    char err[AL_ERRLEN] = "";
    int rc = al_model_reserve(m, B, T, g_ckpt ? AL_MODEL_GRAD_CKPT : 0, err);
    if (rc != AL_OK) {
        fprintf(stderr, "bench_train: al_model_reserve: %s: %s\n", al_strerror(rc), err);
        return rc;
    }
    int32_t *ids = calloc((size_t)B * (T + 1), sizeof *ids);
    int32_t *x = calloc((size_t)N, sizeof *x), *y = calloc((size_t)N, sizeof *y);
    float *logp = calloc((size_t)N, sizeof *logp), *dlogp = calloc((size_t)N, sizeof *dlogp);
    float *ref_logp = calloc((size_t)N, sizeof *ref_logp);
    double *times = calloc((size_t)(steps > 0 ? steps : 1), sizeof *times);
    al_adamw_cfg ocfg;
    al_adamw_defaults(&ocfg);
    ocfg.lr = 1e-4f;
    ocfg.beta1 = 0.9f;
    ocfg.beta2 = 0.999f;
    ocfg.eps = 1e-8f;
    ocfg.weight_decay = 0.01f;
    al_adamw opt;
    if (!ids || !x || !y || !logp || !dlogp || !ref_logp || !times ||
        al_adamw_init(&opt, &ocfg, m) != AL_OK) {
        fprintf(stderr, "bench_train: out of memory\n");
        return AL_ENOMEM;
    }
    al_rng r;
    al_rng_seed(&r, 1234);
    for (int i = 0; i < B * (T + 1); i++) ids[i] = (int32_t)al_rng_below(&r, (uint32_t)s->V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            x[b * T + t] = ids[b * (T + 1) + t];
            y[b * T + t] = ids[b * (T + 1) + t + 1];
        }
    /* mean token cross entropy over all B*T positions: d loss / d logp = -1/N */
    for (int i = 0; i < N; i++) dlogp[i] = -1.0f / (float)N;
    al_tokens in = {.B = B, .T = T, .ids = x, .seg = NULL, .pos = NULL, .targets = y};
    /* dlogp is known before the forward but under dpo, as in the trainer
     * (which gives it for the LM objectives); only a frozen head uses it */
    al_fwd out = {.logp = logp, .entropy = NULL, .values = NULL, .dlogp = dpo || !g_fused ? NULL : dlogp};

    double loss = 0, t_fwd = 0, t_bwd = 0, t_opt = 0;
    uint64_t state_hash = FNV_OFFSET;
    long faults0 = 0;
    for (int it = 0; it < warmup + steps; it++) {
        if (it == warmup) faults0 = page_faults();
        double t0 = al_now();
        al_model_zero_grad(m);
        if (dpo) { /* the reference: adapters off, forward only */
            al_fwd rout = {.logp = ref_logp};
            al_model_set_adapters(m, 0);
            rc = al_model_forward(m, &in, &rout);
            al_model_set_adapters(m, 1);
        }
        if (rc == AL_OK) rc = al_model_forward(m, &in, &out);
        if (dpo && rc == AL_OK) {
            /* z = beta ((pc - rc) - (pr - rr)), loss = -log sigmoid(z) per pair */
            const int P = B / 2;
            for (int k = 0; k < P; k++) {
                double z = 0;
                for (int t = 0; t < T; t++) {
                    size_t ic = (size_t)k * T + t, ir = (size_t)(k + P) * T + t;
                    z += (double)(logp[ic] - ref_logp[ic]) - (double)(logp[ir] - ref_logp[ir]);
                }
                z *= 0.1;
                float g = (float)(-0.1 / (1.0 + exp(z)) / P);
                for (int t = 0; t < T; t++) {
                    dlogp[(size_t)k * T + t] = g;
                    dlogp[(size_t)(k + P) * T + t] = -g;
                }
            }
        }
        double t1 = al_now();
        if (rc == AL_OK) rc = al_model_backward(m, &in, dlogp, NULL, NULL);
        if (rc != AL_OK) {
            fprintf(stderr, "bench_train: step: %s\n", al_strerror(rc));
            return rc;
        }
        if (g_hash) {
            hash_words(&state_hash, logp, (size_t)N, 0);
            hash_params(&state_hash, m, 1);
        }
        double t2 = al_now();
        float gscale = 1.0f;
        if (g_max_gn > 0) al_clip_grad_norm(m, g_max_gn, &gscale);
        al_adamw_step(&opt, m, ocfg.lr, gscale);
        double t3 = al_now();
        if (it >= warmup) {
            times[it - warmup] = t3 - t0;
            t_fwd += t1 - t0;
            t_bwd += t2 - t1;
            t_opt += t3 - t2;
        }
        loss = 0;
        for (int i = 0; i < N; i++) loss -= logp[i];
        loss /= N;
    }
    double faults = (double)(page_faults() - faults0) / steps;
    if (g_hash) {
        hash_params(&state_hash, m, 0);
        hash_words(&state_hash, opt.m, opt.n, 0);
        hash_words(&state_hash, opt.v, opt.n, 0);
    }
    double total = 0;
    for (int i = 0; i < steps; i++) total += times[i];
    qsort(times, (size_t)steps, sizeof *times, cmp_double);
    const al_model_config *c = al_model_config_of(m);
    /* dpo: the reference's forward adds 2N per token */
    double fpt = (dpo ? 6.0 : lora ? 4.0 : 6.0) * matmul_params(m, s) + (dpo ? 18.0 : 12.0) * c->n_layers * c->C * T;
    double tps = (double)N * steps / total;
    /* the step's peak, read before the estimator below builds its own
     * models (a small model whole, a large one's one- and two-layer probes)
     * beside this one to measure the rates */
    double peak_mb = peak_rss_mb();
    /* what the job estimator (POST /v1/fine_tuning/jobs/estimate) predicts for
     * this step, from its own measurement of this machine's rates */
    double est = 0;
    al_lora_cfg elc = {.r = 16, .alpha = 32.0f};
    snprintf(elc.targets, sizeof elc.targets, "%s",
             s->arch == AL_ARCH_GPT2 ? "c_attn,attn.c_proj" : "q_proj,k_proj,v_proj,o_proj");
    al_step_plan plan = {.rows = B, .micro_rows = B, .T = T, .ref_rows = dpo ? B : 0, .grad_ckpt = g_ckpt,
                         .fused_head = !dpo && g_fused};
    al_error eerr;
    if (al_estimate_step(c, lora ? &elc : NULL, al_model_is_bf16(m), &plan, &est, &eerr)) est = 0;
    print_common(s, dpo ? "dpo" : lora ? "lora" : "train", B, T);
    printf("\"tokens_per_s\":%.2f,\"step_s\":%.5f,\"step_s_min\":%.5f,"
           "\"tokens_per_s_best\":%.2f,\"steps\":%d,"
           "\"warmup\":%d,\"peak_rss_mb\":%.1f,\"model_mb\":%.1f,\"params\":%zu,"
           "\"trainable_params\":%zu,\"flops_per_token\":%.0f,\"sgemm_gflops\":%.2f,"
           "\"mfu\":%.4f,\"loss\":%.4f,\"fwd_s\":%.5f,\"bwd_s\":%.5f,\"opt_s\":%.5f,"
           "\"est_step_s\":%.5f,\"grad_ckpt\":%d,\"faults_per_step\":%.1f}\n",
           tps, total / steps, times[0], (double)N / times[0], steps, warmup, peak_mb,
           (double)al_model_memory(m) / (1024.0 * 1024.0), al_model_num_params(m, 0),
           al_model_num_params(m, 1), fpt, gemm_gflops,
           gemm_gflops > 0 ? fpt * tps / (gemm_gflops * 1e9) : 0.0, loss, t_fwd / steps,
           t_bwd / steps, t_opt / steps, est, g_ckpt, faults);
    if (g_hash) printf("{\"state_hash\":\"%016llx\"}\n", (unsigned long long)state_hash);
    fflush(stdout);
    al_adamw_deinit(&opt);
    free(ids);
    free(x);
    free(y);
    free(logp);
    free(dlogp);
    free(ref_logp);
    free(times);
    return AL_OK;
}

/* The bandwidth comparator of gen: every thread of the pool reads its half
 * (1/nt) of each of the model's weight tensors (the bf16 copies, else the
 * fp32 values), in one fork/join for all of them, summing 64-byte words
 * so that nothing is skipped: the rate at which this run could stream the
 * weights a decoded token reads, with no arithmetic, no sums to keep and
 * no waits between products. */
typedef uint64_t stream_v __attribute__((vector_size(64)));

typedef struct stream_ctx {
    const al_param *p;
    int n;
    uint64_t sink[64];
} stream_ctx;

static void stream_fn(void *arg, int tid, int nt) {
    stream_ctx *c = arg;
    stream_v acc0 = {0}, acc1 = {0};
    for (int i = 0; i < c->n; i++) {
        const al_param *p = &c->p[i];
        const char *base = p->h ? (const char *)p->h : (const char *)p->w;
        size_t bytes = p->n * (p->h ? sizeof(uint16_t) : sizeof(float)), nv = bytes / 128;
        long lo, hi;
        al_split((long)nv, nt, tid, &lo, &hi);
        for (size_t v = (size_t)lo; v < (size_t)hi; v++) {
            stream_v a, b;
            memcpy(&a, base + v * 128, sizeof a);
            memcpy(&b, base + v * 128 + 64, sizeof b);
            acc0 ^= a;
            acc1 ^= b;
        }
    }
    acc0 ^= acc1;
    uint64_t s = 0;
    for (int l = 0; l < 8; l++) s ^= acc0[l];
    c->sink[tid & 63] = s;
}

/* Bytes one pass streams, and the best of `reps` passes' rate in GB/s. */
static double stream_rate(al_model *m, int reps, double *bytes_out) {
    stream_ctx c = {0};
    c.p = al_model_params_ro(m, &c.n);
    double bytes = 0;
    for (int i = 0; i < c.n; i++)
        if (c.p[i].h || c.p[i].w)
            bytes += (double)(c.p[i].n * (c.p[i].h ? sizeof(uint16_t) : sizeof(float)) / 128 * 128);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = al_now();
        al_pool_run(stream_fn, &c);
        double dt = al_now() - t0;
        if (dt < best) best = dt;
    }
    *bytes_out = bytes;
    return bytes / best / 1e9;
}

/* only_B > 0: that batch alone (--B), e.g. to profile batch 1. */
static int run_gen(al_model *m, const bench_shape *s, int warmup, int steps, int only_B) {
    const int P = 16, NEW = s->ctx - P < 128 ? s->ctx - P : 128;
    static const int batches[2] = {1, 8};
    for (int bi = 0; bi < 2; bi++) {
        int B = only_B > 0 ? only_B : batches[bi];
        if (only_B > 0 && bi > 0) break;
        int32_t *prompt = calloc((size_t)B * P, sizeof *prompt);
        const int32_t **prompts = calloc((size_t)B, sizeof *prompts);
        int *plen = calloc((size_t)B, sizeof *plen), *olen = calloc((size_t)B, sizeof *olen);
        int32_t *oids = calloc((size_t)B * NEW, sizeof *oids);
        if (!prompt || !prompts || !plen || !olen || !oids) {
            fprintf(stderr, "bench_train: out of memory\n");
            return AL_ENOMEM;
        }
        al_rng r;
        al_rng_seed(&r, 99);
        for (int i = 0; i < B * P; i++) prompt[i] = (int32_t)al_rng_below(&r, (uint32_t)s->V);
        for (int b = 0; b < B; b++) {
            prompts[b] = prompt + (size_t)b * P;
            plen[b] = P;
        }
        al_gen_cfg g = {.max_new = NEW, .temperature = 0.0f, .top_k = 0, .top_p = 1.0f,
                        .stop = NULL, .n_stop = 0};
        double total = 0, best = 1e30;
        long produced = 0;
        char err[AL_ERRLEN] = "";
        /* batch 1 alternates its steps with passes of the comparator */
        double read_gbs = 0, stream_bytes = 0;
        uint64_t ids_hash = FNV_OFFSET;
        for (int it = 0; it < warmup + steps; it++) {
            if (B == 1 && it >= warmup) {
                double rate = stream_rate(m, 3, &stream_bytes);
                if (rate > read_gbs) read_gbs = rate;
            }
            al_rng gr;
            al_rng_seed(&gr, 5);
            double t0 = al_now();
            int rc = al_generate(m, (const int32_t *const *)prompts, plen, B, &g, &gr, oids,
                                 NULL, olen, err);
            double dt = al_now() - t0;
            if (rc != AL_OK) {
                fprintf(stderr, "bench_train: al_generate: %s: %s\n", al_strerror(rc), err);
                return rc;
            }
            if (it == warmup + steps - 1) /* what was generated, to compare builds by */
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < olen[b]; i++)
                        ids_hash = (ids_hash ^ (uint32_t)oids[(size_t)b * NEW + i]) * FNV_PRIME;
            if (it >= warmup) {
                total += dt;
                if (dt < best) best = dt;
                for (int b = 0; b < B; b++) produced += olen[b];
            }
        }
        char mode[16];
        snprintf(mode, sizeof mode, "gen_b%d", B);
        print_common(s, mode, B, P + NEW);
        double tps = (double)produced / total;
        printf("\"prompt\":%d,\"new_tokens\":%d,\"tokens_per_s\":%.2f,\"step_s\":%.5f,"
               "\"step_s_min\":%.5f,\"tokens_per_s_best\":%.2f,\"steps\":%d,"
               "\"warmup\":%d,\"peak_rss_mb\":%.1f,\"params\":%zu,\"ids_hash\":\"%016llx\"",
               P, NEW, tps, total / steps, best, (double)produced / steps / best, steps, warmup,
               peak_rss_mb(), al_model_num_params(m, 0), (unsigned long long)ids_hash);
        if (B == 1) {
            /* the bound: a token reads every weight once (the tied head's too) */
            double wbytes = matmul_params(m, s) * (al_model_is_bf16(m) ? 2.0 : 4.0);
            double bound = read_gbs * 1e9 / wbytes;
            printf(",\"weights_mb\":%.1f,\"stream_mb\":%.1f,\"read_gbs\":%.2f,"
                   "\"bound_tokens_per_s\":%.2f,\"of_bound\":%.4f,\"of_bound_best\":%.4f",
                   wbytes / 1e6, stream_bytes / 1e6, read_gbs, bound, tps / bound,
                   (double)produced / steps / best / bound);
        }
        printf("}\n");
        fflush(stdout);
        free(prompt);
        free(prompts);
        free(plen);
        free(olen);
        free(oids);
    }
    return AL_OK;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_train --shape tiny|gpt2|smollm|qwen05 --mode train|lora|dpo|gen "
                    "[--steps N] [--warmup N] [--threads N] [--matmul onednn|openblas] "
                    "[--dtype fp32|bf16] [--B N] [--T N] [--grad-ckpt 0|1] [--fused-head 0|1] [--hash 1]\n"
                    "       [--max-grad-norm X]\n");
}

int main(int argc, char **argv) {
    const char *shape = "tiny", *mode = "train";
    int steps = 5, warmup = 3, threads = 2, Bo = 0, To = 0;
    const char *matmul = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
            return 2;
        }
        if (!strcmp(argv[i], "--shape")) shape = argv[++i];
        else if (!strcmp(argv[i], "--mode")) mode = argv[++i];
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--matmul")) matmul = argv[++i];
        else if (!strcmp(argv[i], "--dtype")) g_dtype = argv[++i];
        else if (!strcmp(argv[i], "--B")) Bo = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--T")) To = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--grad-ckpt")) g_ckpt = atoi(argv[++i]) != 0;
        else if (!strcmp(argv[i], "--fused-head")) g_fused = atoi(argv[++i]) != 0;
        else if (!strcmp(argv[i], "--hash")) g_hash = atoi(argv[++i]) != 0;
        else if (!strcmp(argv[i], "--max-grad-norm")) g_max_gn = atof(argv[++i]);
        else {
            usage();
            return 2;
        }
    }
    const bench_shape *s = NULL;
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        if (!strcmp(shape, k_shapes[i].name)) s = &k_shapes[i];
    int dpo = !strcmp(mode, "dpo"), lora = dpo || !strcmp(mode, "lora");
    int bf16 = !strcmp(g_dtype, "bf16");
    if (!s || (!lora && strcmp(mode, "train") && strcmp(mode, "gen")) || steps < 1 ||
        warmup < 0 || threads < 1 || (!bf16 && strcmp(g_dtype, "fp32")) || Bo < 0 || To < 0) {
        usage();
        return 2;
    }
    bench_shape shp = *s;
    if (Bo) shp.B = Bo;
    if (To) shp.T = To;
    if (shp.T > shp.ctx) shp.ctx = shp.T;
    s = &shp;
    int rc = al_pool_init(threads);
    if (rc != AL_OK) {
        fprintf(stderr, "bench_train: al_pool_init: %s\n", al_strerror(rc));
        return 1;
    }
    if (matmul && al_gemm_set_backend(!strcmp(matmul, "openblas") ? AL_MM_OPENBLAS
                                      : !strcmp(matmul, "onednn") ? AL_MM_ONEDNN : -1)) {
        fprintf(stderr, "bench_train: --matmul %s: not available in this build\n", matmul);
        return 2;
    }
    double gemm_gflops = sgemm_rate(bf16);

    al_model_config cfg;
    make_config(&cfg, s);
    al_lora_cfg lc = {.r = 16, .alpha = 32.0f, .targets = ""};
    snprintf(lc.targets, sizeof lc.targets, "%s",
             s->arch == AL_ARCH_GPT2 ? "c_attn,attn.c_proj" : "q_proj,k_proj,v_proj,o_proj");
    char err[AL_ERRLEN] = "";
    al_model *m = al_model_new(&cfg, lora ? &lc : NULL, err);
    if (!m) {
        fprintf(stderr, "bench_train: al_model_new: %s\n", err);
        return 1;
    }
    al_model_init(m, 42);
    /* generation serves a frozen model (no gradients; in bf16 its weights
     * are held in bf16 alone, as the chat endpoints hold them) */
    if (!strcmp(mode, "gen")) al_model_drop_grads(m);
    /* bf16: trained matrices keep fp32 masters, frozen ones (the LoRA base)
     * are held in bf16 alone */
    if (bf16 && (rc = al_model_set_bf16(m, 1, err))) {
        fprintf(stderr, "bench_train: %s\n", err);
        return 1;
    }
    if (!strcmp(mode, "gen")) rc = run_gen(m, s, warmup, steps, Bo);
    else rc = run_train(m, s, lora, dpo, warmup, steps, gemm_gflops);
    al_model_free(m);
    al_pool_shutdown();
    return rc == AL_OK ? 0 : 1;
}

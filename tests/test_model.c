/* Whole-model tests: gradients of both families (with the scalar head, with
 * LoRA, with gradient checkpointing) against central differences; forward
 * against an independent double-precision reference written here with plain
 * loops; save/load round trips; KV-cache generation against full forwards;
 * micro-batch accumulation; determinism; frozen opens hold no gradients;
 * forward-only reservations compute the same forward in less memory; a
 * model in another's activations gets the gradients it gets in its own; a
 * frozen LM head run backward inside the forward gives the same bits. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compute/ops.h"
#include "compute/pool.h"
#include "io.h"
#include "gradcheck.h"
#include "model/model.h"
#include "model/model_impl.h"
#include "model/safetensors.h"
#include "t.h"
#include "t_model.h"
#include "train/optim.h"
#include "t_model_grad.h"

static al_model_config tiny(al_arch arch, int variant) {
    al_model_config c;
    al_config_default(&c, arch);
    c.n_layers = 2;
    c.C = 8;
    c.NH = 2;
    c.NKV = arch == AL_ARCH_LLAMA ? 1 : 2;
    c.HD = 4;
    c.FF = 12;
    c.V = 11;
    c.max_T = 16;
    c.init_range = 0.3f;
    c.rope_theta = 10000.0f;
    c.has_lm_head = 1;
    if (arch == AL_ARCH_LLAMA) {
        c.tie_word_embeddings = variant == 0;
        c.attn_bias = variant == 1; /* Qwen2-style q/k/v biases */
        if (variant == 1) snprintf(c.model_type, sizeof c.model_type, "qwen2");
    }
    return c;
}

static void test_gradients(void) {
    char err[AL_ERRLEN];
    for (int arch = 1; arch <= 2; arch++) {
        for (int variant = 0; variant < (arch == 2 ? 2 : 1); variant++) {
            al_model_config c = tiny((al_arch)arch, variant);
            al_model *m = al_model_new(&c, NULL, err);
            T_TRUE(m != NULL);
            al_model_init(m, 7);
            check_grads(arch == 1 ? "gpt2" : variant ? "qwen2" : "llama", m, 1, 0, 0);
            al_model_free(m);
            /* with the scalar head (reward model / critic) */
            c.has_score = 1;
            c.num_labels = 1;
            m = al_model_new(&c, NULL, err);
            al_model_init(m, 8);
            check_grads(arch == 1 ? "gpt2+head" : "llama+head", m, 0, 1, 0);
            al_model_free(m);
        }
    }
}

static void test_lora_gradients(void) {
    char err[AL_ERRLEN];
    for (int arch = 1; arch <= 2; arch++) {
        al_model_config c = tiny((al_arch)arch, 1);
        al_lora_cfg lc = {.r = 2, .alpha = 4.0f};
        snprintf(lc.targets, sizeof lc.targets, "all-linear");
        al_model *m = al_model_new(&c, &lc, err);
        T_TRUE(m != NULL);
        al_model_init(m, 9);
        /* B starts at zero; make it non-zero so A's gradient is too */
        int np;
        al_param *ps = al_model_params(m, &np);
        int n_lora = 0, n_trainable = 0;
        for (int i = 0; i < np; i++) {
            if (ps[i].lora) {
                n_lora++;
                gc_fill(ps[i].w, ps[i].n, 100 + (uint64_t)i, 0.5f);
            }
            n_trainable += ps[i].g != NULL;
        }
        T_EQ_INT(n_lora, arch == 1 ? 2 * 4 * 2 : 2 * 7 * 2);
        T_EQ_INT(n_trainable, n_lora); /* base frozen */
        check_grads(arch == 1 ? "gpt2 lora" : "llama lora", m, 1, 0, 0);
        /* adapters off == the base model */
        al_fwd f1 = {0}, f2 = {0};
        float a[B_ * T_], b[B_ * T_];
        f1.logp = a;
        f2.logp = b;
        al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
        al_model_set_adapters(m, 0);
        al_model_forward(m, &in, &f1);
        al_model_set_adapters(m, 1);
        al_model_forward(m, &in, &f2);
        al_model_config c0 = c;
        al_model *base = al_model_new(&c0, NULL, err);
        al_param *bp = al_model_params(base, &np);
        int nb = np;
        for (int i = 0; i < nb; i++) memcpy(bp[i].w, ps[i].w, bp[i].n * sizeof(float));
        T_OK(al_model_reserve(base, B_, T_, 0, err));
        float cbuf[B_ * T_];
        al_fwd f3 = {.logp = cbuf};
        al_model_forward(base, &in, &f3);
        int same = 1, differs = 0;
        for (int n = 0; n < B_ * T_; n++) {
            same &= a[n] == cbuf[n];
            differs |= fabsf(a[n] - b[n]) > 1e-4f;
        }
        T_TRUE(same);
        T_TRUE(differs);
        al_model_free(base);
        al_model_free(m);
    }
}

/* Gradient checkpointing recomputes the same numbers: gradients bit-equal. */
static void test_checkpointing(void) {
    char err[AL_ERRLEN];
    for (int arch = 1; arch <= 2; arch++) {
        al_model_config c = tiny((al_arch)arch, 1);
        al_model *m = al_model_new(&c, NULL, err);
        al_model_init(m, 3);
        al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
        float lp[B_ * T_], R[B_ * T_];
        gc_fill(R, B_ * T_, 5, 1.0f);
        al_fwd f = {.logp = lp};
        size_t ng = al_model_num_params(m, 1);
        float *g0 = malloc(ng * sizeof *g0);
        for (int ck = 0; ck < 2; ck++) {
            T_OK(al_model_reserve(m, B_, T_, ck ? AL_MODEL_GRAD_CKPT : 0, err));
            al_model_zero_grad(m);
            al_model_forward(m, &in, &f);
            al_model_backward(m, &in, R, NULL, NULL);
            if (ck == 0) memcpy(g0, m->grad, ng * sizeof *g0);
            else T_TRUE(memcmp(g0, m->grad, ng * sizeof *g0) == 0);
        }
        free(g0);
        al_model_free(m);
    }
}

/* AL_MODEL_FORWARD_ONLY: the same forward bit for bit (log-probs, entropy,
 * head values, with LoRA on and off) in less memory; no backward. */
static void test_forward_only(void) {
    char err[AL_ERRLEN];
    al_lora_cfg lc = {.r = 2, .alpha = 4};
    snprintf(lc.targets, sizeof lc.targets, "all-linear");
    for (int arch = 1; arch <= 2; arch++) {
        al_model_config c = tiny((al_arch)arch, 1);
        c.n_layers = 3; /* odd: the last layer writes the first residual buffer */
        c.has_score = 1;
        c.num_labels = 1;
        al_model *m = al_model_new(&c, &lc, err);
        T_TRUE(m != NULL);
        al_model_init(m, 5);
        int np;
        al_param *ps = al_model_params(m, &np);
        for (int i = 0; i < np; i++) /* B nonzero, so the adapters change the outputs */
            if (ps[i].lora) gc_fill(ps[i].w, ps[i].n, 40 + i, 0.3f);
        al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
        float out[2][2][3][B_ * T_], R[B_ * T_];
        gc_fill(R, B_ * T_, 6, 1.0f);
        size_t mem[2];
        for (int fo = 0; fo < 2; fo++) {
            T_OK(al_model_reserve(m, B_, T_, fo ? AL_MODEL_FORWARD_ONLY : 0, err));
            mem[fo] = al_model_memory(m);
            for (int on = 0; on < 2; on++) {
                al_model_set_adapters(m, on);
                memset(out[fo][on], 0xff, sizeof out[fo][on]);
                al_fwd f = {.logp = out[fo][on][0], .entropy = out[fo][on][1], .values = out[fo][on][2]};
                T_OK(al_model_forward(m, &in, &f));
            }
            al_model_set_adapters(m, 1);
            /* a forward without log-probs uses the scratch that forward-only keeps */
            al_fwd fv = {.values = out[fo][1][2]};
            T_OK(al_model_forward(m, &in, &fv));
        }
        T_TRUE(memcmp(out[0], out[1], sizeof out[0]) == 0);
        T_TRUE(memcmp(out[0][0], out[0][1], sizeof out[0][0]) != 0);
        T_TRUE(mem[1] < mem[0]);
        T_EQ_INT(al_model_backward(m, &in, R, NULL, NULL), AL_EINVAL);
        /* reserving for training again makes backward work */
        T_OK(al_model_reserve(m, B_, T_, 0, err));
        al_fwd f = {.logp = out[0][0][0]};
        T_OK(al_model_forward(m, &in, &f));
        T_OK(al_model_backward(m, &in, R, NULL, NULL));
        al_model_free(m);
    }
}

/* A LoRA model on q|k|v alone keeps none of the MLP's inputs; a fully
 * trained model sharing its activations (PPO's separate critic) widens what
 * the owner keeps, and its gradients equal those in an arena of its own,
 * fp32 and bf16, GPT-2 and Llama. */
static void test_shared_keep(void) {
    char err[AL_ERRLEN];
    al_lora_cfg lc = {.r = 2, .alpha = 4};
    for (int arch = 1; arch <= 2; arch++)
        for (int bf = 0; bf < 2; bf++) {
            al_model_config c = tiny((al_arch)arch, 1);
            snprintf(lc.targets, sizeof lc.targets, "%s", arch == AL_ARCH_GPT2 ? "c_attn" : "q_proj");
            al_model *p = al_model_new(&c, &lc, err), *f = al_model_new(&c, NULL, err);
            al_model *g = al_model_new(&c, NULL, err);
            T_TRUE(p && f && g);
            if (!p || !f || !g) return;
            al_model_init(p, 5);
            al_model_init(f, 6);
            al_model_init(g, 6);
            if (bf) {
                T_OK(al_model_set_bf16(p, 1, err));
                T_OK(al_model_set_bf16(f, 1, err));
                T_OK(al_model_set_bf16(g, 1, err));
            }
            al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
            float lp[B_ * T_], R[B_ * T_];
            gc_fill(R, B_ * T_, 6, 1.0f);
            al_fwd fw = {.logp = lp};
            T_OK(al_model_reserve(p, B_, T_, 0, err));
            T_OK(al_model_reserve(g, B_, T_, 0, err));
            size_t narrow = al_model_memory(p);
            T_OK(al_model_share_activations(f, p, err));
            T_TRUE(al_model_memory(p) > narrow);
            T_OK(al_model_reserve(f, B_, T_, 0, err));
            al_model_zero_grad(g);
            al_model_zero_grad(f);
            T_OK(al_model_forward(g, &in, &fw));
            T_OK(al_model_backward(g, &in, R, NULL, NULL));
            T_OK(al_model_forward(f, &in, &fw));
            T_OK(al_model_backward(f, &in, R, NULL, NULL));
            size_t n = al_model_num_params(f, 1);
            T_TRUE(n == al_model_num_params(g, 1) && memcmp(f->grad, g->grad, n * sizeof(float)) == 0);
            T_OK(al_model_forward(p, &in, &fw));
            T_OK(al_model_backward(p, &in, R, NULL, NULL));
            al_model_free(f);
            al_model_free(g);
            al_model_free(p);
        }
}

/* al_model_share_activations: PPO's shared-base critic in its policy's
 * activations, each run forward to backward in turn, gives the gradients
 * each gets in an arena of its own; shapes that differ are refused. */
static void test_shared_activations(void) {
    char err[AL_ERRLEN];
    al_lora_cfg lc = {.r = 2, .alpha = 4};
    snprintf(lc.targets, sizeof lc.targets, "all-linear");
    for (int arch = 1; arch <= 2; arch++) {
        for (int ck = 0; ck < 2; ck++) {
            int flags = ck ? AL_MODEL_GRAD_CKPT : 0;
            al_model_config c = tiny((al_arch)arch, 1);
            al_model *p = al_model_new(&c, &lc, err);
            T_TRUE(p != NULL);
            al_model_init(p, 5);
            al_model *cs = al_model_new_shared(p, &lc, 9, err), *co = al_model_new_shared(p, &lc, 9, err);
            T_TRUE(cs && co);
            if (!cs || !co) return;
            al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
            al_tokens cin = in;
            cin.targets = NULL;
            float lp[B_ * T_], val[B_ * T_], R[B_ * T_], R2[B_ * T_];
            gc_fill(R, B_ * T_, 6, 1.0f);
            gc_fill(R2, B_ * T_, 7, 1.0f);
            al_fwd pf = {.logp = lp}, cf = {.values = val};
            T_OK(al_model_reserve(p, B_, T_, flags, err));
            T_OK(al_model_reserve(co, B_, T_, flags, err));
            /* each in its own arena: the policy, then the critic */
            al_model_zero_grad(p);
            al_model_zero_grad(co);
            T_OK(al_model_forward(p, &in, &pf));
            T_OK(al_model_backward(p, &in, R, NULL, NULL));
            T_OK(al_model_forward(co, &cin, &cf));
            T_OK(al_model_backward(co, &cin, NULL, NULL, R2));
            size_t np = al_model_num_params(p, 1), nc = al_model_num_params(co, 1);
            float *gp = malloc(np * sizeof *gp);
            memcpy(gp, p->grad, np * sizeof *gp);
            /* the critic in the policy's arena, run first, then the policy */
            T_OK(al_model_share_activations(cs, p, err));
            T_OK(al_model_reserve(cs, B_, T_, flags, err));
            T_EQ_INT(al_model_reserve(cs, B_, T_ + 1, flags, err), AL_EINVAL);
            T_EQ_INT(al_model_reserve(cs, B_, T_, flags ^ AL_MODEL_GRAD_CKPT, err), AL_EINVAL);
            T_TRUE(al_model_memory(cs) < al_model_memory(co));
            al_model_zero_grad(p);
            al_model_zero_grad(cs);
            T_OK(al_model_forward(cs, &cin, &cf));
            T_OK(al_model_backward(cs, &cin, NULL, NULL, R2));
            T_OK(al_model_forward(p, &in, &pf));
            T_OK(al_model_backward(p, &in, R, NULL, NULL));
            T_TRUE(nc == al_model_num_params(cs, 1) && memcmp(co->grad, cs->grad, nc * sizeof(float)) == 0);
            T_TRUE(memcmp(gp, p->grad, np * sizeof *gp) == 0);
            /* the owner reserving anew is seen by the model in its arena */
            T_OK(al_model_reserve(p, B_, T_ + 2, flags, err));
            T_OK(al_model_reserve(cs, B_, T_ + 1, flags, err));
            T_OK(al_model_forward(cs, &cin, &cf));
            free(gp);
            al_model_free(cs);
            al_model_free(co);
            al_model_free(p);
        }
    }
    /* shapes that differ */
    al_model_config c = tiny(AL_ARCH_GPT2, 0), d = c;
    d.FF = 16;
    al_model *a = al_model_new(&c, NULL, err), *b = al_model_new(&d, NULL, err);
    al_model *e = al_model_new(&c, &lc, err);
    T_TRUE(a && b && e);
    if (!a || !b || !e) return;
    T_EQ_INT(al_model_share_activations(a, b, err), AL_EINVAL);
    T_EQ_INT(al_model_share_activations(a, a, err), AL_EINVAL);
    T_EQ_INT(al_model_share_activations(e, a, err), AL_EINVAL); /* adapters the owner has no room for */
    T_OK(al_model_share_activations(a, e, err));
    al_model_free(a);
    al_model_free(b);
    al_model_free(e);
}

/* A training reservation lays the LM head's chunk over the backward's wide
 * buffers, which the layers write. A head that trains keeps its logits from
 * the forward for the backward; a second forward of the same rows without
 * targets (it runs the layers, not the head) overwrites them, and the
 * backward must then compute them again: its gradients equal those of one
 * forward and its backward (fp32 and bf16). */
static void test_head_logits_overwritten(void) {
    char err[AL_ERRLEN];
    for (int bf = 0; bf < 2; bf++) {
        al_model_config c = tiny(AL_ARCH_GPT2, 0);
        al_model *p = al_model_new(&c, NULL, err);
        T_TRUE(p != NULL);
        if (!p) return;
        al_model_init(p, 5);
        if (bf) T_OK(al_model_set_bf16(p, 1, err));
        al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
        al_tokens bare = in;
        bare.targets = NULL;
        float lp[B_ * T_], R[B_ * T_];
        gc_fill(R, B_ * T_, 6, 1.0f);
        al_fwd pf = {.logp = lp}, none = {0};
        T_OK(al_model_reserve(p, B_, T_, 0, err));
        al_model_zero_grad(p);
        T_OK(al_model_forward(p, &in, &pf));
        T_OK(al_model_backward(p, &in, R, NULL, NULL));
        size_t np = al_model_num_params(p, 1);
        float *gp = malloc(np * sizeof *gp);
        memcpy(gp, p->grad, np * sizeof *gp);
        al_model_zero_grad(p);
        T_OK(al_model_forward(p, &in, &pf));
        T_OK(al_model_forward(p, &bare, &none));
        T_OK(al_model_backward(p, &in, R, NULL, NULL));
        T_REPORT_(memcmp(gp, p->grad, np * sizeof *gp) == 0,
                  "bf16 %d: a forward without targets between forward and backward changed the gradients", bf);
        free(gp);
        al_model_free(p);
    }
}

/* An entropy-only gradient (d logp NULL) is the gradient with a zero d logp,
 * bit for bit (the backward puts those zeros in a scratch of its own). */
static void test_entropy_only_backward(void) {
    char err[AL_ERRLEN];
    for (int bf = 0; bf < 2; bf++) {
        al_model_config c = tiny(AL_ARCH_GPT2, 0);
        al_model *m = al_model_new(&c, NULL, err);
        T_TRUE(m != NULL);
        if (!m) return;
        al_model_init(m, 8);
        if (bf) T_OK(al_model_set_bf16(m, 1, err));
        al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
        float lp[B_ * T_], en[B_ * T_], R[B_ * T_], Z[B_ * T_];
        gc_fill(R, B_ * T_, 9, 1.0f);
        memset(Z, 0, sizeof Z);
        al_fwd f = {.logp = lp, .entropy = en};
        T_OK(al_model_reserve(m, B_, T_, 0, err));
        size_t np = al_model_num_params(m, 1);
        float *g0 = malloc(np * sizeof *g0);
        al_model_zero_grad(m);
        T_OK(al_model_forward(m, &in, &f));
        T_OK(al_model_backward(m, &in, Z, R, NULL));
        memcpy(g0, m->grad, np * sizeof *g0);
        al_model_zero_grad(m);
        T_OK(al_model_forward(m, &in, &f));
        T_OK(al_model_backward(m, &in, NULL, R, NULL));
        T_REPORT_(memcmp(g0, m->grad, np * sizeof *g0) == 0, "bf16 %d: entropy-only gradient differs", bf);
        free(g0);
        al_model_free(m);
    }
}

/* ---- the LM head's backward run inside the forward (al_fwd.dlogp) ------- */

enum { FB_ = 3, FT_ = 64 }; /* 192 rows: two chunks of a frozen head's 128 */

typedef struct fused_batch {
    int32_t ids[FB_ * FT_], seg[FB_ * FT_], tgt[FB_ * FT_];
    float R[FB_ * FT_], R2[FB_ * FT_], D[FB_ * FT_], lp[FB_ * FT_];
    al_tokens in;
} fused_batch;

/* A batch whose scored rows are not all consecutive (prompts, a padded
 * tail, a masked stretch), so that chunks gather rows; R is a dlogp (0
 * where no target), R2 the same but one value, D a dent. */
static void fused_batch_make(fused_batch *b, int V) {
    al_rng r;
    al_rng_seed(&r, 77);
    for (int n = 0; n < FB_ * FT_; n++) {
        int row = n / FT_, t = n % FT_;
        int pad = row == 1 && t >= FT_ - 20;
        b->ids[n] = pad ? 0 : (int32_t)al_rng_below(&r, (uint32_t)V);
        b->seg[n] = pad ? 0 : 1;
        b->tgt[n] = pad || t == 0 || (row == 2 && t >= 10 && t < 16) ? -1 : (int32_t)al_rng_below(&r, (uint32_t)V);
    }
    gc_fill(b->R, FB_ * FT_, 41, 1.0f);
    gc_fill(b->D, FB_ * FT_, 42, 1.0f);
    for (int n = 0; n < FB_ * FT_; n++)
        if (b->tgt[n] < 0) b->R[n] = 0.0f;
    memcpy(b->R2, b->R, sizeof b->R);
    b->R2[FT_ + 5] *= 0.5f;
    b->in = (al_tokens){.B = FB_, .T = FT_, .ids = b->ids, .seg = b->seg, .targets = b->tgt};
}

/* Zeroed gradients, a forward (fused with dlogp fdl unless NULL; with
 * `between`, a forward of the same batch wanting no log-probs after it, whose
 * log-prob scratch lies in d_ln), a backward with dlogp bdl and dent bde; the
 * gradients into g (np floats). Returns 1 when the forward ran the head fused. */
static int fused_run(al_model *m, fused_batch *b, const float *fdl, int between, const float *bdl,
                     const float *bde, float *g, size_t np) {
    al_fwd f = {.logp = b->lp, .dlogp = fdl}, none = {0};
    al_model_zero_grad(m);
    T_OK(al_model_forward(m, &b->in, &f));
    int fused = m->head_fused != 0;
    if (between) T_OK(al_model_forward(m, &b->in, &none));
    T_OK(al_model_backward(m, &b->in, bdl, bde, NULL));
    memcpy(g, m->grad, np * sizeof *g);
    return fused;
}

/* GPT-2 (tied head) and Llama-shaped (untied) models with LoRA, fp32 and
 * bf16, a batch over two chunks of the head: the gradients of a forward
 * given dlogp are bit-equal to those of the plain forward and backward;
 * the backward does take d lnf from the forward (a nudge to d_ln between
 * them shows); a different dlogp at the backward, a dent, or a forward in
 * between make it compute the head again, with the plain result; a head that
 * trains is never fused. */
static void test_fused_head(void) {
    char err[AL_ERRLEN];
    static fused_batch b;
    for (int v = 0; v < 4; v++) {
        al_arch arch = v < 2 ? AL_ARCH_GPT2 : AL_ARCH_LLAMA;
        int bf = v & 1;
        al_model_config c = tiny(arch, 1);
        c.max_T = FT_;
        c.init_range = 0.1f;
        al_lora_cfg lc = {.r = 2, .alpha = 4.0f};
        snprintf(lc.targets, sizeof lc.targets, "all-linear");
        al_model *m = al_model_new(&c, &lc, err);
        T_TRUE(m != NULL);
        if (!m) return;
        al_model_init(m, 12);
        int np;
        al_param *ps = al_model_params(m, &np);
        for (int i = 0; i < np; i++)
            if (ps[i].lora) gc_fill(ps[i].w, ps[i].n, 300 + (uint64_t)i, 0.5f);
        if (bf) T_OK(al_model_set_bf16(m, 1, err));
        T_OK(al_model_reserve(m, FB_, FT_, 0, err));
        T_TRUE(m->head_chunk < FB_ * FT_);
        fused_batch_make(&b, c.V);
        size_t n = al_model_num_params(m, 1);
        float *g0 = malloc(n * sizeof *g0), *g1 = malloc(n * sizeof *g1);
        float *g2 = malloc(n * sizeof *g2), *g3 = malloc(n * sizeof *g3);
        const char *name = v < 2 ? "gpt2" : "llama";
        T_TRUE(!fused_run(m, &b, NULL, 0, b.R, NULL, g0, n));
        T_REPORT_(fused_run(m, &b, b.R, 0, b.R, NULL, g1, n), "%s bf16 %d: not fused", name, bf);
        T_REPORT_(!memcmp(g0, g1, n * sizeof *g0), "%s bf16 %d: fused gradients differ", name, bf);
        /* the backward reads the d lnf the forward left */
        al_fwd f = {.logp = b.lp, .dlogp = b.R};
        al_model_zero_grad(m);
        T_OK(al_model_forward(m, &b.in, &f));
        m->d_ln[(FT_ + 3) * c.C] += 1.0f;
        T_OK(al_model_backward(m, &b.in, b.R, NULL, NULL));
        T_REPORT_(memcmp(g0, m->grad, n * sizeof *g0) != 0, "%s bf16 %d: the backward ignored d_ln", name, bf);
        /* another dlogp: the plain backward of it */
        fused_run(m, &b, NULL, 0, b.R2, NULL, g2, n);
        fused_run(m, &b, b.R, 0, b.R2, NULL, g3, n);
        T_REPORT_(memcmp(g0, g2, n * sizeof *g0) && !memcmp(g2, g3, n * sizeof *g0),
                  "%s bf16 %d: another dlogp at the backward", name, bf);
        /* a dent */
        fused_run(m, &b, NULL, 0, b.R, b.D, g2, n);
        fused_run(m, &b, b.R, 0, b.R, b.D, g3, n);
        T_REPORT_(memcmp(g0, g2, n * sizeof *g0) && !memcmp(g2, g3, n * sizeof *g0),
                  "%s bf16 %d: a dent at the backward", name, bf);
        /* a forward in between */
        fused_run(m, &b, b.R, 1, b.R, NULL, g3, n);
        T_REPORT_(!memcmp(g0, g3, n * sizeof *g0), "%s bf16 %d: a forward in between", name, bf);
        free(g0);
        free(g1);
        free(g2);
        free(g3);
        al_model_free(m);
        /* a head that trains: not fused, the same gradients */
        m = al_model_new(&c, NULL, err);
        T_TRUE(m != NULL);
        if (!m) return;
        al_model_init(m, 13);
        if (bf) T_OK(al_model_set_bf16(m, 1, err));
        T_OK(al_model_reserve(m, FB_, FT_, 0, err));
        n = al_model_num_params(m, 1);
        g0 = malloc(n * sizeof *g0);
        g1 = malloc(n * sizeof *g1);
        fused_run(m, &b, NULL, 0, b.R, NULL, g0, n);
        T_REPORT_(!fused_run(m, &b, b.R, 0, b.R, NULL, g1, n) && !memcmp(g0, g1, n * sizeof *g0),
                  "%s bf16 %d: a trained head", name, bf);
        free(g0);
        free(g1);
        al_model_free(m);
    }
}

/* ---- independent reference forward (double, plain loops) ---------------- */

static double ref_norm(double *out, const double *x, const float *w, const float *b, int C,
                       int rms, double eps) {
    double mean = 0, var = 0;
    if (!rms) {
        for (int i = 0; i < C; i++) mean += x[i];
        mean /= C;
    }
    for (int i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= C;
    double r = 1.0 / sqrt(var + eps);
    for (int i = 0; i < C; i++) out[i] = (x[i] - mean) * r * w[i] + (b ? b[i] : 0);
    return r;
}

/* y (out) = W x + b with W (out, in) given as a param run */
static void ref_lin(double *y, const double *x, const float *W, const float *b, int out, int in) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++) s += (double)W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

/* log p(tgt[t] | ids[<=t]) for one sequence of length n, written from the
 * Hugging Face modeling files' definitions, independent of lib/compute. */
static void ref_logprobs(al_model *m, const int32_t *ids, int n, const int32_t *tgt, double *out) {
    const al_model_config *c = &m->cfg;
    int C = c->C, NH = c->NH, NKV = c->NKV, HD = c->HD, FF = c->FF, rms = c->arch == AL_ARCH_LLAMA;
    double *x = calloc((size_t)n * C, sizeof *x), *h = calloc((size_t)C, sizeof *h);
    double *q = calloc((size_t)n * NH * HD, sizeof *q), *k = calloc((size_t)n * NKV * HD, sizeof *k);
    double *v = calloc((size_t)n * NKV * HD, sizeof *v), *qkv = calloc((size_t)m->QKV, sizeof *qkv);
    double *att = calloc((size_t)n * NH * HD, sizeof *att), *tmp = calloc((size_t)2 * FF + C, sizeof *tmp);
    double *u = calloc((size_t)2 * FF, sizeof *u);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < C; i++)
            x[t * C + i] = m->params[m->wte].w[(size_t)ids[t] * C + i] +
                           (m->wpe >= 0 ? m->params[m->wpe].w[(size_t)t * C + i] : 0);
    for (int l = 0; l < c->n_layers; l++) {
        al_layer *ly = &m->layers[l];
        for (int t = 0; t < n; t++) {
            ref_norm(h, x + t * C, PW(m, ly->ln1_w), PW(m, ly->ln1_b), C, rms, c->norm_eps);
            al_linear *L = &ly->lin[LIN_QKV];
            ref_lin(qkv, h, PW(m, L->w), PW(m, L->b), L->out, L->in);
            for (int e = 0; e < NH * HD; e++) q[t * NH * HD + e] = qkv[e];
            for (int e = 0; e < NKV * HD; e++) {
                k[t * NKV * HD + e] = qkv[NH * HD + e];
                v[t * NKV * HD + e] = qkv[(NH + NKV) * HD + e];
            }
            if (rms) { /* rotate_half RoPE */
                for (int hh = 0; hh < NH + NKV; hh++) {
                    double *z = hh < NH ? q + t * NH * HD + hh * HD : k + t * NKV * HD + (hh - NH) * HD;
                    for (int i = 0; i < HD / 2; i++) {
                        double inv = 1.0 / pow(c->rope_theta, 2.0 * i / HD), a = t * inv;
                        double x1 = z[i], x2 = z[i + HD / 2];
                        z[i] = x1 * cos(a) - x2 * sin(a);
                        z[i + HD / 2] = x2 * cos(a) + x1 * sin(a);
                    }
                }
            }
        }
        for (int t = 0; t < n; t++) {
            for (int hh = 0; hh < NH; hh++) {
                int g = hh / (NH / NKV);
                double mx = -1e300, w[64], s = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int e = 0; e < HD; e++) d += q[t * NH * HD + hh * HD + e] * k[j * NKV * HD + g * HD + e];
                    w[j] = d / sqrt((double)HD);
                    if (w[j] > mx) mx = w[j];
                }
                for (int j = 0; j <= t; j++) s += (w[j] = exp(w[j] - mx));
                for (int e = 0; e < HD; e++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++) o += w[j] / s * v[j * NKV * HD + g * HD + e];
                    att[t * NH * HD + hh * HD + e] = o;
                }
            }
        }
        for (int t = 0; t < n; t++) {
            al_linear *L = &ly->lin[LIN_O];
            ref_lin(tmp, att + t * NH * HD, PW(m, L->w), PW(m, L->b), L->out, L->in);
            for (int i = 0; i < C; i++) x[t * C + i] += tmp[i];
            ref_norm(h, x + t * C, PW(m, ly->ln2_w), PW(m, ly->ln2_b), C, rms, c->norm_eps);
            L = &ly->lin[LIN_UP];
            ref_lin(u, h, PW(m, L->w), PW(m, L->b), L->out, L->in);
            for (int i = 0; i < FF; i++) {
                if (rms) {
                    double gt = u[i];
                    tmp[i] = gt / (1 + exp(-gt)) * u[FF + i];
                } else {
                    double z = u[i];
                    tmp[i] = 0.5 * z * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (z + 0.044715 * z * z * z)));
                }
            }
            L = &ly->lin[LIN_DOWN];
            ref_lin(u, tmp, PW(m, L->w), PW(m, L->b), L->out, L->in);
            for (int i = 0; i < C; i++) x[t * C + i] += u[i];
        }
    }
    for (int t = 0; t < n; t++) {
        if (tgt[t] < 0) { out[t] = 0; continue; }
        ref_norm(h, x + t * C, PW(m, m->lnf_w), PW(m, m->lnf_b), C, rms, c->norm_eps);
        double mx = -1e300, s = 0, z[64];
        for (int vv = 0; vv < c->V; vv++) {
            z[vv] = 0;
            for (int i = 0; i < C; i++) z[vv] += h[i] * m->params[m->head].w[(size_t)vv * C + i];
            if (z[vv] > mx) mx = z[vv];
        }
        for (int vv = 0; vv < c->V; vv++) s += exp(z[vv] - mx);
        out[t] = z[tgt[t]] - mx - log(s);
    }
    free(x); free(h); free(q); free(k); free(v); free(qkv); free(att); free(tmp); free(u);
}

static void test_forward_reference(void) {
    char err[AL_ERRLEN];
    for (int arch = 1; arch <= 2; arch++) {
        for (int variant = 0; variant < 2; variant++) {
            al_model_config c = tiny((al_arch)arch, variant);
            al_model *m = al_model_new(&c, NULL, err);
            al_model_init(m, 21 + (uint64_t)variant);
            /* non-trivial norms and biases */
            int np;
            al_param *ps = al_model_params(m, &np);
            for (int i = 0; i < np; i++)
                if (ps[i].ndim == 1) gc_fill(ps[i].w, ps[i].n, 40 + (uint64_t)i, 0.5f);
            T_OK(al_model_reserve(m, B_, T_, 0, err));
            al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
            float lp[B_ * T_];
            al_fwd f = {.logp = lp};
            T_OK(al_model_forward(m, &in, &f));
            double ref[T_];
            ref_logprobs(m, g_ids, T_, g_tgt, ref);
            for (int t = 0; t < T_; t++) T_NEAR(lp[t], ref[t], 1e-4);
            /* row 1 is 3 real tokens: padding must not change them */
            ref_logprobs(m, g_ids + T_, 3, g_tgt + T_, ref);
            for (int t = 0; t < 3; t++) T_NEAR(lp[T_ + t], ref[t], 1e-4);
            al_model_free(m);
        }
    }
}

/* ---- save / load -------------------------------------------------------- */

static void test_save_load(void) {
    char err[AL_ERRLEN], dir[1200];
    for (int arch = 1; arch <= 3; arch++) {
        /* 3: a Llama reward model (ForSequenceClassification, score head) */
        al_model_config c = tiny(arch == 1 ? AL_ARCH_GPT2 : AL_ARCH_LLAMA, 1);
        if (arch == 3) {
            c.has_score = 1;
            c.num_labels = 1;
            c.has_lm_head = 0;
        }
        al_model *m = al_model_new(&c, NULL, err);
        al_model_init(m, 5);
        snprintf(dir, sizeof dir, "%s/save%d", t_tmpdir(), arch);
        err[0] = 0;
        T_OK(al_model_save(m, dir, err));
        if (err[0]) fprintf(stderr, "%s\n", err);
        al_model *r = NULL;
        int rc = al_model_open(&r, dir, NULL, err);
        T_OK(rc);
        if (rc) { fprintf(stderr, "%s\n", err); al_model_free(m); continue; }
        int n1, n2;
        al_param *a = al_model_params(m, &n1), *b = al_model_params(r, &n2);
        T_EQ_INT(n1, n2);
        int exact = 1;
        for (int i = 0; i < n1 && i < n2; i++)
            exact &= strcmp(a[i].name, b[i].name) == 0 && memcmp(a[i].w, b[i].w, a[i].n * 4) == 0;
        T_TRUE(exact);
        al_model_free(r);
        if (arch == 3) {
            al_model_free(m);
            continue;
        }

        /* LoRA: adapter folder round trip, and merged save == adapters on */
        al_lora_cfg lc = {.r = 2, .alpha = 8.0f};
        snprintf(lc.targets, sizeof lc.targets, arch == 1 ? "c_attn,c_proj" : "q_proj,v_proj,down_proj");
        al_model *lm = NULL;
        T_OK(al_model_open(&lm, dir, &lc, err));
        al_param *lp = al_model_params(lm, &n1);
        for (int i = 0; i < n1; i++)
            if (lp[i].lora) gc_fill(lp[i].w, lp[i].n, 300 + (uint64_t)i, 0.3f);
        char adir[1300], mdir[1300];
        snprintf(adir, sizeof adir, "%s/adapter%d", t_tmpdir(), arch);
        snprintf(mdir, sizeof mdir, "%s/merged%d", t_tmpdir(), arch);
        T_OK(al_model_save_adapter(lm, adir, dir, err));
        T_OK(al_model_save(lm, mdir, err));
        al_model *la = NULL, *mg = NULL;
        T_OK(al_model_open(&la, adir, NULL, err));
        T_OK(al_model_open(&mg, mdir, NULL, err));
        if (la && mg) {
            al_param *x = al_model_params(la, &n2);
            exact = n1 == n2;
            for (int i = 0; i < n1 && i < n2; i++) exact &= memcmp(x[i].w, lp[i].w, x[i].n * 4) == 0;
            T_TRUE(exact);
            al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
            float l1[B_ * T_], l2[B_ * T_];
            al_fwd f1 = {.logp = l1}, f2 = {.logp = l2};
            T_OK(al_model_reserve(la, B_, T_, 0, err));
            T_OK(al_model_reserve(mg, B_, T_, 0, err));
            al_model_forward(la, &in, &f1);
            al_model_forward(mg, &in, &f2);
            for (int n = 0; n < B_ * T_; n++) T_NEAR(l1[n], l2[n], 1e-5);
        }
        al_model_free(la);
        al_model_free(mg);
        al_model_free(lm);
        al_model_free(m);
    }
    /* GPT2Model-style files name tensors without "transformer." (and old ones
     * carry attn.bias mask buffers): they load into the same weights */
    {
        al_model_config g = tiny(AL_ARCH_GPT2, 0);
        al_model *src = al_model_new(&g, NULL, err);
        al_model_init(src, 12);
        char bare[1300], path[1400];
        snprintf(bare, sizeof bare, "%s/bare_gpt2", t_tmpdir());
        T_OK(al_model_save(src, bare, err));
        int np;
        al_param *ps = al_model_params(src, &np);
        al_st_entry e[64];
        char names[64][112];
        int ne = 0;
        static float mask[16 * 16];
        for (int i = 0; i < np && ne < 62; i++, ne++) {
            const char *nm = ps[i].name;
            snprintf(names[ne], sizeof names[ne], "%s", strncmp(nm, "transformer.", 12) ? nm : nm + 12);
            e[ne] = (al_st_entry){.name = names[ne], .data = ps[i].w, .ndim = ps[i].ndim,
                                  .transpose = ps[i].conv1d};
            e[ne].shape[0] = ps[i].conv1d ? ps[i].shape[1] : ps[i].shape[0];
            e[ne].shape[1] = ps[i].conv1d ? ps[i].shape[0] : ps[i].shape[1];
        }
        snprintf(names[ne], sizeof names[ne], "h.0.attn.bias");
        e[ne++] = (al_st_entry){.name = names[ne - 1], .data = mask, .ndim = 2, .shape = {16, 16}};
        snprintf(path, sizeof path, "%s/model.safetensors", bare);
        T_OK(al_st_write(path, e, ne, err));
        al_model *r = NULL;
        T_OK(al_model_open(&r, bare, NULL, err));
        if (r) {
            int nr;
            al_param *rp = al_model_params(r, &nr);
            int same = nr == np;
            for (int i = 0; i < np && i < nr; i++) same &= memcmp(ps[i].w, rp[i].w, ps[i].n * 4) == 0;
            T_TRUE(same);
        }
        al_model_free(r);
        al_model_free(src);
    }

    /* a wrong shape on disk is named */
    al_model_config c = tiny(AL_ARCH_GPT2, 0);
    al_model *m = al_model_new(&c, NULL, err);
    snprintf(dir, sizeof dir, "%s/save1", t_tmpdir());
    c.C = 12;
    c.NH = c.NKV = 3;
    al_model *w = al_model_new(&c, NULL, err);
    int rc = al_model_load_weights(w, dir, err);
    T_EQ_INT(rc, AL_ESHAPE);
    T_TRUE(strstr(err, "transformer.wte.weight") != NULL);
    al_model_free(w);
    al_model_free(m);
}

/* ---- generation --------------------------------------------------------- */

static void test_generation(void) {
    char err[AL_ERRLEN];
    for (int run = 0; run < 4; run++) {
        /* runs 2, 3: in bf16, where decoding rows take the matrix-vector path */
        int arch = 1 + run % 2, bf16 = run >= 2;
        al_model_config c = tiny((al_arch)arch, 1);
        c.max_T = 24;
        al_lora_cfg lc = {.r = 2, .alpha = 4};
        snprintf(lc.targets, sizeof lc.targets, "all-linear");
        al_model *m = al_model_new(&c, arch == 2 ? &lc : NULL, err);
        al_model_init(m, 77);
        int np;
        al_param *ps = al_model_params(m, &np);
        for (int i = 0; i < np; i++)
            if (ps[i].lora) gc_fill(ps[i].w, ps[i].n, 500 + (uint64_t)i, 0.3f);
        if (bf16) T_OK(al_model_set_bf16(m, 1, err));
        int32_t p0[] = {1, 2, 3}, p1[] = {4, 5, 6, 7, 8};
        const int32_t *pr[2] = {p0, p1};
        int plen[2] = {3, 5}, len[2];
        enum { NEW = 10 };
        int32_t out[2 * NEW];
        float lps[2 * NEW];
        al_gen_cfg g = {.max_new = NEW, .temperature = 0, .top_p = 1};
        al_rng rng;
        al_rng_seed(&rng, 1);
        T_OK(al_generate(m, pr, plen, 2, &g, &rng, out, lps, len, err));
        /* each greedy token is the argmax of a full forward over the prefix */
        T_OK(al_model_reserve(m, 1, 24, 0, err));
        for (int b = 0; b < 2; b++) {
            T_EQ_INT(len[b], NEW);
            int32_t seq[24], tgt[24];
            int n = plen[b];
            memcpy(seq, pr[b], (size_t)n * sizeof *seq);
            int agree = 1;
            double maxdiff = 0;
            for (int s = 0; s < NEW; s++) {
                /* log-probs of every vocabulary entry at the last position */
                float best = -1e30f;
                int arg = -1;
                for (int v = 0; v < c.V; v++) {
                    for (int t = 0; t < n; t++) tgt[t] = -1;
                    tgt[n - 1] = v;
                    float lp[24];
                    al_tokens in = {.B = 1, .T = n, .ids = seq, .targets = tgt};
                    al_fwd f = {.logp = lp};
                    al_model_forward(m, &in, &f);
                    if (lp[n - 1] > best) { best = lp[n - 1]; arg = v; }
                    if (v == out[b * NEW + s]) maxdiff = fmax(maxdiff, fabs(lp[n - 1] - lps[b * NEW + s]));
                }
                agree &= arg == out[b * NEW + s];
                seq[n++] = out[b * NEW + s];
            }
            T_TRUE(agree);
            /* bf16: a last-bit difference in a row can round an operand to
             * the neighbouring bf16 value */
            T_NEAR(maxdiff, 0, bf16 ? 1e-2 : 1e-4);
        }
        /* without log-probs wanted (their normaliser is skipped) the same tokens */
        int32_t out2[2 * NEW];
        al_rng_seed(&rng, 1);
        T_OK(al_generate(m, pr, plen, 2, &g, &rng, out2, NULL, len, err));
        T_TRUE(memcmp(out, out2, sizeof out) == 0);
        /* stop tokens end a sequence (and are included) */
        int32_t stop = out[2];
        int want_len = 1;
        while (out[want_len - 1] != stop) want_len++;
        g.stop = &stop;
        g.n_stop = 1;
        al_rng_seed(&rng, 1);
        T_OK(al_generate(m, pr, plen, 2, &g, &rng, out, NULL, len, err));
        T_EQ_INT(len[0], want_len);
        T_EQ_INT(out[want_len - 1], stop);
        /* sampling is reproducible from the seed and changes with it */
        g.temperature = 1.0f;
        g.top_k = 5;
        g.top_p = 0.9f;
        g.n_stop = 0;
        int32_t s1[2 * NEW], s2[2 * NEW], s3[2 * NEW];
        al_rng_seed(&rng, 42);
        al_generate(m, pr, plen, 2, &g, &rng, s1, NULL, len, err);
        al_rng_seed(&rng, 42);
        al_generate(m, pr, plen, 2, &g, &rng, s2, NULL, len, err);
        al_rng_seed(&rng, 43);
        al_generate(m, pr, plen, 2, &g, &rng, s3, NULL, len, err);
        T_TRUE(memcmp(s1, s2, sizeof s1) == 0);
        T_TRUE(memcmp(s1, s3, sizeof s1) != 0);
        al_rng_seed(&rng, 42);
        al_generate(m, pr, plen, 2, &g, &rng, s2, lps, len, err);
        T_TRUE(memcmp(s1, s2, sizeof s1) == 0);
        /* errors: context overflow, bad ids */
        g.max_new = 30;
        T_EQ_INT(al_generate(m, pr, plen, 2, &g, &rng, s1, NULL, len, err), AL_ERANGE);
        al_model_free(m);
    }
}

/* ---- bf16 mixed precision ------------------------------------------------ */

/* Largest |a - b| over the positions with a target. */
static double logp_maxdiff(const float *a, const float *b) {
    double d = 0;
    for (int n = 0; n < B_ * T_; n++)
        if (g_tgt[n] >= 0) d = fmax(d, fabs((double)a[n] - b[n]));
    return d;
}

/* One forward (log-probs, entropy, values when the model has a head) and
 * backward of the test batch. */
static void fwd_bwd(al_model *m, int flags, float *lp, float *en, float *val) {
    char err[AL_ERRLEN];
    T_OK(al_model_reserve(m, B_, T_, flags, err));
    al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
    int has_score = al_model_config_of(m)->has_score;
    al_fwd f = {.logp = lp, .entropy = en, .values = has_score ? val : NULL};
    T_OK(al_model_forward(m, &in, &f));
    if (flags & AL_MODEL_FORWARD_ONLY) return;
    float R1[B_ * T_], R2[B_ * T_], R3[B_ * T_];
    gc_fill(R1, B_ * T_, 21, 1.0f);
    gc_fill(R2, B_ * T_, 22, 1.0f);
    gc_fill(R3, B_ * T_, 23, 1.0f);
    al_model_zero_grad(m);
    T_OK(al_model_backward(m, &in, R1, R2, has_score ? R3 : NULL));
}

/* The same model in bf16 and in fp32 (both families, tied and untied heads,
 * biases, a scalar head, LoRA on a base held in bf16): log-probs, entropies
 * and values within 2e-2 (measured: at most 3e-3) and every gradient within
 * 4e-2 in relative L2 (bf16 keeps 8 significant bits; a wrong operand, bias
 * or transpose is off by O(1)); the
 * forward-only and checkpointed reservations give the same bits; matrices
 * that do not train live in bf16 alone, and widen back exactly. */
static void test_bf16_model(void) {
    char err[AL_ERRLEN];
    for (int v = 0; v < 4; v++) {
        al_arch arch = v == 0 ? AL_ARCH_GPT2 : AL_ARCH_LLAMA;
        al_model_config c = tiny(arch, v == 2);
        if (v == 3) c.has_score = 1, c.num_labels = 1;
        c.init_range = 0.1f; /* logits of a size a language model has (|z| < 3) */
        al_lora_cfg lc = {.r = 2, .alpha = 4};
        snprintf(lc.targets, sizeof lc.targets, "all-linear");
        const al_lora_cfg *lora = v == 2 ? &lc : NULL;
        al_model *a = al_model_new(&c, lora, err), *b = al_model_new(&c, lora, err);
        al_model_init(a, 31);
        al_model_init(b, 31);
        int np;
        al_param *pa = al_model_params(a, &np), *pb = al_model_params(b, &np);
        for (int i = 0; i < np; i++)
            if (pa[i].lora) {
                gc_fill(pa[i].w, pa[i].n, 600 + (uint64_t)i, 0.3f);
                memcpy(pb[i].w, pa[i].w, pa[i].n * sizeof(float));
            }
        T_OK(al_model_set_bf16(b, 1, err));
        T_TRUE(al_model_is_bf16(b));
        pb = al_model_params(b, &np);
        for (int i = 0; i < np; i++) {
            /* matrices have bf16 values; only the trained keep fp32 ones */
            T_TRUE((pb[i].h != NULL) == (pb[i].ndim == 2));
            T_TRUE((pb[i].w != NULL) == (pb[i].ndim == 1 || pb[i].g != NULL));
        }
        float lp32[B_ * T_], en32[B_ * T_], va32[B_ * T_], lp16[B_ * T_], en16[B_ * T_], va16[B_ * T_];
        fwd_bwd(a, 0, lp32, en32, va32);
        fwd_bwd(b, 0, lp16, en16, va16);
        char what[160];
        snprintf(what, sizeof what, "bf16 logp, variant %d: max diff %.3g", v, logp_maxdiff(lp16, lp32));
        T_REPORT_(logp_maxdiff(lp16, lp32) <= 2e-2, "%s", what);
        T_REPORT_(logp_maxdiff(en16, en32) <= 2e-2, "bf16 entropy, variant %d: %.3g", v,
                  logp_maxdiff(en16, en32));
        if (c.has_score) {
            double d = 0;
            for (int n = 0; n < B_ * T_; n++) d = fmax(d, fabs((double)va16[n] - va32[n]));
            T_REPORT_(d <= 2e-2, "bf16 values, variant %d: %.3g", v, d);
        }
        double worst = 0;
        const char *wname = "";
        for (int i = 0; i < np; i++) {
            if (!pb[i].g) continue;
            double e = gc_rel_l2(pb[i].g, pa[i].g, pb[i].n);
            if (e > worst) worst = e, wname = pb[i].name;
        }
        T_REPORT_(worst <= 4e-2, "bf16 gradients, variant %d: %s off by %.3g", v, wname, worst);
        /* the other reservations compute the same forward */
        float lpf[B_ * T_], enf[B_ * T_], vaf[B_ * T_];
        fwd_bwd(b, AL_MODEL_FORWARD_ONLY, lpf, enf, vaf);
        T_TRUE(memcmp(lpf, lp16, sizeof lpf) == 0);
        float *g1 = malloc(b->n_grad * sizeof(float));
        memcpy(g1, b->grad, b->n_grad * sizeof(float));
        fwd_bwd(b, 0, lp16, en16, va16);
        T_TRUE(memcmp(g1, b->grad, b->n_grad * sizeof(float)) == 0); /* deterministic */
        fwd_bwd(b, AL_MODEL_GRAD_CKPT, lpf, enf, vaf);
        T_TRUE(memcmp(g1, b->grad, b->n_grad * sizeof(float)) == 0);
        free(g1);
        /* back to fp32: frozen matrices widen exactly, trained ones keep fp32 */
        T_OK(al_model_set_bf16(b, 0, err));
        pb = al_model_params(b, &np);
        int exact = 1;
        for (int i = 0; i < np; i++) {
            T_TRUE(pb[i].w && !pb[i].h);
            if (pa[i].g) exact &= memcmp(pb[i].w, pa[i].w, pa[i].n * sizeof(float)) == 0;
            else
                for (size_t k = 0; k < pa[i].n; k++) {
                    uint16_t h;
                    al_bf16_round(&h, &pa[i].w[k], 1);
                    float wv;
                    al_bf16_widen(&wv, &h, 1);
                    exact &= memcmp(&wv, &pb[i].w[k], sizeof wv) == 0;
                }
        }
        T_TRUE(exact);
        al_model_free(a);
        al_model_free(b);
    }
}

/* bf16: the backward computes the norms' rounded outputs again (from the
 * norm's input) instead of keeping them. Log-probs and gradients equal those
 * of a reservation that keeps them (keep_norms16), bit for bit, in less
 * memory, and so do a checkpointed backward's: GPT-2's layernorm, RMSNorm
 * and the offset RMSNorm (its fp32 rows rounded by the product), full
 * training and LoRA on q|k|v with nonzero adapters. */
static void test_bf16_norms_again(void) {
    char err[AL_ERRLEN];
    for (int v = 0; v < 6; v++) {
        al_arch arch = v % 3 == 0 ? AL_ARCH_GPT2 : AL_ARCH_LLAMA;
        al_model_config c = tiny(arch, 1);
        if (v % 3 == 2) c.norm_offset = 1;
        al_lora_cfg lc = {.r = 2, .alpha = 4};
        snprintf(lc.targets, sizeof lc.targets, "%s", arch == AL_ARCH_GPT2 ? "c_attn" : "q_proj,v_proj");
        const al_lora_cfg *lora = v >= 3 ? &lc : NULL;
        al_model *m[2];
        size_t mem[2];
        float lp[2][B_ * T_], en[2][B_ * T_], va[2][B_ * T_];
        for (int k = 0; k < 2; k++) {
            m[k] = al_model_new(&c, lora, err);
            T_TRUE(m[k] != NULL);
            if (!m[k]) return;
            al_model_init(m[k], 9);
            int np;
            al_param *ps = al_model_params(m[k], &np);
            for (int i = 0; i < np; i++) /* B nonzero: d A reads the normed input */
                if (ps[i].lora) gc_fill(ps[i].w, ps[i].n, 700 + (uint64_t)i, 0.3f);
            T_OK(al_model_set_bf16(m[k], 1, err));
            m[k]->keep_norms16 = k;
            fwd_bwd(m[k], 0, lp[k], en[k], va[k]);
            mem[k] = al_model_memory(m[k]);
        }
        size_t ng = m[0]->n_grad;
        T_TRUE(ng == m[1]->n_grad && ng > 0);
        T_TRUE(mem[0] < mem[1]);
        T_TRUE(memcmp(lp[0], lp[1], sizeof lp[0]) == 0);
        T_REPORT_(memcmp(m[0]->grad, m[1]->grad, ng * sizeof(float)) == 0,
                  "variant %d: gradients with the norms computed again differ from kept ones", v);
        fwd_bwd(m[0], AL_MODEL_GRAD_CKPT, lp[0], en[0], va[0]);
        T_TRUE(memcmp(m[0]->grad, m[1]->grad, ng * sizeof(float)) == 0);
        al_model_free(m[0]);
        al_model_free(m[1]);
    }
}

/* A frozen model opened in bf16 holds its matrices in bf16 alone (about
 * half the bytes), and gives the log-probs of the bf16 forward. */
static void test_bf16_frozen_open(void) {
    char err[AL_ERRLEN], dir[1200];
    al_model_config c = tiny(AL_ARCH_LLAMA, 0);
    al_model *m = al_model_new(&c, NULL, err);
    al_model_init(m, 8);
    snprintf(dir, sizeof dir, "%s/bf16open", t_tmpdir());
    T_OK(al_model_save(m, dir, err));
    al_model *f32 = NULL, *f16 = NULL;
    T_OK(al_model_open_ex(&f32, dir, NULL, AL_OPEN_FROZEN, 0, err));
    T_OK(al_model_open_ex(&f16, dir, NULL, AL_OPEN_FROZEN | AL_OPEN_BF16, 0, err));
    size_t mat = 0, vec = 0;
    int np;
    al_param *ps = al_model_params(f16, &np);
    for (int i = 0; i < np; i++) {
        T_TRUE(!ps[i].g);
        if (ps[i].ndim == 2) {
            mat += ps[i].n;
            T_TRUE(!ps[i].w && ps[i].h);
        } else {
            vec += ps[i].n;
        }
    }
    T_EQ_INT(f16->n_data, vec);
    T_EQ_INT(f16->n_data16, mat);
    /* the same forward as converting the fp32 open */
    T_OK(al_model_set_bf16(f32, 1, err));
    float l1[B_ * T_], e1[B_ * T_], v1[B_ * T_], l2[B_ * T_], e2[B_ * T_], v2[B_ * T_];
    fwd_bwd(f32, AL_MODEL_FORWARD_ONLY, l1, e1, v1);
    fwd_bwd(f16, AL_MODEL_FORWARD_ONLY, l2, e2, v2);
    T_TRUE(memcmp(l1, l2, sizeof l1) == 0);
    al_model_free(f32);
    al_model_free(f16);
    al_model_free(m);
}

/* Checkpoints keep the dtype they came in: a model saved as BF16 (config
 * torch_dtype bfloat16) saves BF16 again after a reload, save_dtype
 * overrides; a BF16 base fine-tuned with LoRA (held in bf16) and merged
 * saves BF16 whose bits are round(widen(W) + s B A), and reloads bit-exactly
 * in either mode. */
static void test_bf16_checkpoints(void) {
    char err[AL_ERRLEN], d1[1200], d2[1200], d3[1200];
    al_model_config c = tiny(AL_ARCH_GPT2, 0);
    al_model *m = al_model_new(&c, NULL, err);
    al_model_init(m, 12);
    T_EQ_INT(al_model_save_dtype(m), AL_DT_F32);
    al_model_set_save_dtype(m, AL_DT_BF16);
    snprintf(d1, sizeof d1, "%s/ck_bf16", t_tmpdir());
    T_OK(al_model_save(m, d1, err));
    al_st_dir sd;
    const al_st_file *sf;
    T_OK(al_st_dir_open(&sd, d1, "model", err));
    const al_st_tensor *t = al_st_dir_find(&sd, "transformer.h.0.attn.c_attn.weight", &sf);
    T_TRUE(t && t->dtype == AL_DT_BF16);
    t = al_st_dir_find(&sd, "transformer.h.0.ln_1.bias", &sf);
    T_TRUE(t && t->dtype == AL_DT_BF16);
    al_st_dir_close(&sd);
    char cj[1300], *text = NULL;
    size_t len;
    snprintf(cj, sizeof cj, "%s/config.json", d1);
    T_OK(al_file_read(cj, 1 << 20, &text, &len, err));
    T_TRUE(text && strstr(text, "\"torch_dtype\": \"bfloat16\""));
    free(text);

    /* reloaded in fp32, trained nothing: saves BF16 again, the same bits */
    al_model *r = NULL;
    T_OK(al_model_open(&r, d1, NULL, err));
    T_EQ_INT(al_model_save_dtype(r), AL_DT_BF16);
    snprintf(d2, sizeof d2, "%s/ck_bf16_again", t_tmpdir());
    T_OK(al_model_save(r, d2, err));
    char f1[1400], f2[1400], *b1 = NULL, *b2 = NULL;
    size_t n1, n2;
    snprintf(f1, sizeof f1, "%s/model.safetensors", d1);
    snprintf(f2, sizeof f2, "%s/model.safetensors", d2);
    T_OK(al_file_read(f1, 1 << 24, &b1, &n1, err));
    T_OK(al_file_read(f2, 1 << 24, &b2, &n2, err));
    T_TRUE(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0);
    free(b1);
    free(b2);
    al_model_set_save_dtype(r, AL_DT_F32);
    T_OK(al_model_save(r, d2, err));
    T_OK(al_st_dir_open(&sd, d2, "model", err));
    t = al_st_dir_find(&sd, "transformer.wte.weight", &sf);
    T_TRUE(t && t->dtype == AL_DT_F32);
    al_st_dir_close(&sd);
    al_model_free(r);

    /* LoRA on the BF16 base, held in bf16; merged save */
    al_lora_cfg lc = {.r = 2, .alpha = 8.0f};
    snprintf(lc.targets, sizeof lc.targets, "c_attn,c_proj");
    al_model *lm = NULL;
    T_OK(al_model_open_ex(&lm, d1, &lc, AL_OPEN_BF16, 3, err));
    int np;
    al_param *lp = al_model_params(lm, &np);
    for (int i = 0; i < np; i++)
        if (lp[i].lora) gc_fill(lp[i].w, lp[i].n, 700 + (uint64_t)i, 0.3f);
    snprintf(d3, sizeof d3, "%s/ck_merged", t_tmpdir());
    T_OK(al_model_save(lm, d3, err));
    al_model *x16 = NULL, *x32 = NULL;
    T_OK(al_model_open_ex(&x16, d3, NULL, AL_OPEN_FROZEN | AL_OPEN_BF16, 0, err));
    T_OK(al_model_open_ex(&x32, d3, NULL, AL_OPEN_FROZEN, 0, err));
    T_EQ_INT(al_model_save_dtype(x16), AL_DT_BF16);
    int n16;
    al_param *p16 = al_model_params(x16, &n16), *p32 = al_model_params(x32, &n16);
    /* the expected merged bits, computed here (frozen GPT-2 Conv1D weights
     * are held (in, out): read in nn.Linear's layout) */
    int bad = 0, checked = 0;
    for (int k = 0; k < lm->n_lora; k++) {
        const al_lora_mod *mo = &lm->lora[k];
        const al_linear *L = &lm->layers[mo->layer].lin[mo->lin];
        const al_param *W = &lm->params[L->w], *A = &lm->params[mo->pA], *Bm = &lm->params[mo->pB];
        int j = -1;
        for (int i = 0; i < n16; i++)
            if (!strcmp(p16[i].name, W->name)) j = i;
        T_TRUE(j >= 0);
        if (j < 0) continue;
        float *Wr = malloc(W->n * sizeof(float)), *r16 = malloc(W->n * sizeof(float));
        float *r32 = malloc(W->n * sizeof(float));
        al_param_rows(Wr, W);
        al_param_rows(r16, &p16[j]);
        al_param_rows(r32, &p32[j]);
        for (int o = 0; o < mo->out; o++)
            for (int q = 0; q < mo->in; q++) {
                size_t at = (size_t)(mo->off + o) * mo->in + q;
                float w = Wr[at];
                float s = 0;
                for (int rr = 0; rr < lc.r; rr++) s += Bm->w[o * lc.r + rr] * A->w[rr * mo->in + q];
                float merged = w + lm->lora_scale * s;
                uint16_t want;
                al_bf16_round(&want, &merged, 1);
                uint16_t got16;
                al_bf16_round(&got16, &r16[at], 1); /* exact: r16 holds bf16 values */
                float got32 = r32[at], gw = r16[at];
                /* one fp32 rounding of the sum may differ from ours: allow
                 * the neighbouring bf16 value, never more */
                bad += abs((int)got16 - (int)want) > 1 || memcmp(&gw, &got32, 4) != 0;
                checked++;
            }
        free(Wr);
        free(r16);
        free(r32);
    }
    T_TRUE(checked > 0);
    T_EQ_INT(bad, 0);
    /* and a reload of the merged model saves the same bytes */
    char d4[1300];
    snprintf(d4, sizeof d4, "%s/ck_merged_again", t_tmpdir());
    T_OK(al_model_save(x16, d4, err));
    snprintf(f1, sizeof f1, "%s/model.safetensors", d3);
    snprintf(f2, sizeof f2, "%s/model.safetensors", d4);
    b1 = b2 = NULL;
    T_OK(al_file_read(f1, 1 << 24, &b1, &n1, err));
    T_OK(al_file_read(f2, 1 << 24, &b2, &n2, err));
    T_TRUE(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0);
    free(b1);
    free(b2);
    al_model_free(x16);
    al_model_free(x32);
    al_model_free(lm);
    al_model_free(m);
}

/* ---- accumulation and determinism --------------------------------------- */

/* One AdamW update from a batch of 8 sequences, done as 1x8 or as 8x1. */
static void update(al_model *m, int micro, float *out_params) {
    char err[AL_ERRLEN];
    enum { NB = 8, T = 6 };
    int32_t ids[NB * T], tgt[NB * T];
    for (int i = 0; i < NB * T; i++) ids[i] = (i * 7 + 3) % 11;
    for (int i = 0; i < NB * T; i++) tgt[i] = (i % T) == T - 1 ? -1 : ids[i + 1];
    int per = NB / micro, ntok = 0;
    for (int i = 0; i < NB * T; i++) ntok += tgt[i] >= 0;
    float dl[NB * T], lp[NB * T];
    for (int i = 0; i < NB * T; i++) dl[i] = tgt[i] >= 0 ? -1.0f / ntok : 0;
    al_model_reserve(m, per, T, 0, err);
    al_model_zero_grad(m);
    for (int k = 0; k < micro; k++) {
        al_tokens in = {.B = per, .T = T, .ids = ids + k * per * T, .targets = tgt + k * per * T};
        al_fwd f = {.logp = lp};
        al_model_forward(m, &in, &f);
        al_model_backward(m, &in, dl + k * per * T, NULL, NULL);
    }
    al_adamw opt;
    al_adamw_cfg oc;
    al_adamw_defaults(&oc);
    oc.weight_decay = 0.1f;
    al_adamw_init(&opt, &oc, m);
    float gscale;
    al_clip_grad_norm(m, 1.0, &gscale);
    al_adamw_step(&opt, m, 1e-3f, gscale);
    al_adamw_deinit(&opt);
    memcpy(out_params, m->data, m->n_data * sizeof(float));
}

/* 1 when every trained matrix's bf16 copy is its weight rounded. */
static int bf16_copies_current(al_model *m) {
    int np, ok = 1;
    const al_param *ps = al_model_params_ro(m, &np);
    for (int i = 0; i < np; i++)
        for (size_t k = 0; ps[i].w && ps[i].h && k < ps[i].n; k++) ok &= ps[i].h[k] == al_bf16_round1(ps[i].w[k]);
    return ok;
}

/* The optimizer rounds its updates into the bf16 copies, so the forward
 * after a step keeps them (al_model_bf16_stepped): the step's copies are
 * the weights rounded, and the next forward gives the bits of a model
 * holding those weights afresh. A weight written after the step through
 * the table, al_param_set or a load reaches the next forward. */
static void test_bf16_copy_after_step(void) {
    char err[AL_ERRLEN];
    float lp[B_ * T_], lp2[B_ * T_], en[B_ * T_], val[B_ * T_];
    al_tokens in = {.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
    for (int arch = AL_ARCH_GPT2; arch <= AL_ARCH_LLAMA; arch++) {
        al_model_config c = tiny((al_arch)arch, 0);
        al_model *m = al_model_new(&c, NULL, err), *f = al_model_new(&c, NULL, err);
        al_model_init(m, 31);
        T_OK(al_model_set_bf16(m, 1, err));
        T_OK(al_model_set_bf16(f, 1, err));
        T_OK(al_model_reserve(f, B_, T_, AL_MODEL_FORWARD_ONLY, err));
        al_adamw_cfg oc;
        al_adamw_defaults(&oc);
        oc.weight_decay = 0.1f;
        al_adamw o;
        T_OK(al_adamw_init(&o, &oc, m));
        for (int step = 0; step < 2; step++) {
            fwd_bwd(m, 0, lp, en, val);
            al_adamw_step(&o, m, 1e-2f, 1.0f);
        }
        T_TRUE(bf16_copies_current(m));
        al_fwd out = {.logp = lp};
        T_OK(al_model_forward(m, &in, &out));
        /* f: the same weights, written through the table */
        int np, nf;
        const al_param *ps = al_model_params_ro(m, &np);
        al_param *fs = al_model_params(f, &nf);
        for (int i = 0; i < np; i++)
            if (ps[i].w) al_param_set(&fs[i], ps[i].w);
        al_fwd fo = {.logp = lp2};
        T_OK(al_model_forward(f, &in, &fo));
        T_TRUE(memcmp(lp, lp2, sizeof lp) == 0);

        /* a matrix written through the table after a step */
        fwd_bwd(m, 0, lp, en, val);
        al_adamw_step(&o, m, 1e-2f, 1.0f);
        al_param *pw = al_model_params(m, &np);
        int qkv = 2; /* the first layer's first matrix: c_attn (GPT-2), q_proj */
        while (!(pw[qkv].w && pw[qkv].h)) qkv++;
        for (size_t k = 0; k < pw[qkv].n; k++) pw[qkv].w[k] = 0.25f + 1e-3f * (float)k;
        T_OK(al_model_forward(m, &in, &out));
        T_TRUE(bf16_copies_current(m));
        T_EQ_INT(pw[qkv].h[1], al_bf16_round1(0.25f + 1e-3f));

        /* written by a load after a step: the weights saved before it */
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/bf16step%d", t_tmpdir(), arch);
        T_OK(al_model_save(m, dir, err));
        fwd_bwd(m, 0, lp, en, val);
        al_adamw_step(&o, m, 1e-2f, 1.0f);
        T_OK(al_model_load_weights(m, dir, err));
        T_OK(al_model_forward(m, &in, &out));
        T_TRUE(bf16_copies_current(m));
        al_adamw_deinit(&o);
        al_model_free(m);
        al_model_free(f);
    }
}

/* AdamW as PyTorch computes it, element by element (the operations and
 * order of lib/train/optim.c), for the test below. */
static void adamw_ref(float *w, float *m, float *v, const float *g, size_t n, float decay, float lr,
                      const al_adamw_cfg *c, long step) {
    const double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    const float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    for (size_t k = 0; k < n; k++) {
        float mk = c->beta1 * m[k] + (1.0f - c->beta1) * g[k];
        float vk = c->beta2 * v[k] + (1.0f - c->beta2) * g[k] * g[k];
        m[k] = mk;
        v[k] = vk;
        float denom = sqrtf(vk) * inv_sqrt_bc2 + c->eps;
        w[k] = w[k] * decay - step_size * mk / denom;
    }
}

/* The optimizer's update has PyTorch's AdamW bits, and its bf16 copies are
 * the weights rounded: every weight, moment and copy against the
 * reference, fed the gradients that clipping in place (al_scale) would
 * have left — the step's gradient scale applied once, the stored
 * gradients untouched — on matrices whose sizes are no multiple of a vector (and
 * longer than the optimizer's 2048-element pieces), whole and as slices (a
 * rank's share) whose ends and thread splits fall inside them at odd
 * offsets, on 2 threads and 1. */
static void test_adamw_bits(void) {
    char err[AL_ERRLEN];
    al_model_config c = tiny(AL_ARCH_GPT2, 0);
    c.C = 36; /* matrices of 36 x 108, 36 x 37 ... : odd element counts */
    c.NH = 3;
    c.NKV = 3;
    c.HD = 12;
    c.FF = 100;
    c.V = 37;
    for (int threads = 2; threads >= 1; threads--) {
        al_pool_shutdown();
        al_pool_init(threads);
        al_model *m = al_model_new(&c, NULL, err);
        al_model_init(m, 5);
        T_OK(al_model_set_bf16(m, 1, err));
        size_t n = al_model_num_params(m, 1), lo = 7, hi = n - 13;
        for (int slice = 0; slice < 2; slice++) {
            al_adamw_cfg oc;
            al_adamw_defaults(&oc);
            oc.weight_decay = 0.1f;
            al_adamw o;
            size_t a = slice ? lo : 0, b = slice ? hi : n;
            T_OK(al_adamw_init_range(&o, &oc, m, a, b));
            float *mr = calloc(n, sizeof *mr), *vr = calloc(n, sizeof *vr), *wr = malloc(n * sizeof *wr);
            float *gr = malloc(n * sizeof *gr), *gc = malloc(n * sizeof *gc);
            int np, same = 1, nh = 0;
            for (long step = 1; step <= 3; step++) {
                const float gscale = step == 1 ? 1.0f : step == 2 ? 0.3f : 0.7123f;
                al_param *ps = al_model_params(m, &np);
                size_t off = 0;
                for (int i = 0; i < np; i++) {
                    if (!ps[i].g) continue;
                    for (size_t k = 0; k < ps[i].n; k++)
                        ps[i].g[k] = 0.01f * (float)((off + k) * 37 % 101) - 0.5f + 0.001f * (float)step;
                    memcpy(wr + off, ps[i].w, ps[i].n * sizeof *wr);
                    memcpy(gc + off, ps[i].g, ps[i].n * sizeof *gc);
                    memcpy(gr + off, ps[i].g, ps[i].n * sizeof *gr);
                    al_scale(gr + off, gscale, ps[i].n);
                    size_t s0 = off > a ? off : a, s1 = off + ps[i].n < b ? off + ps[i].n : b;
                    if (s0 < s1)
                        adamw_ref(wr + s0, mr + s0, vr + s0, gr + s0, s1 - s0,
                                  ps[i].decay ? 1.0f - 1e-2f * oc.weight_decay : 1.0f, 1e-2f, &oc, step);
                    off += ps[i].n;
                }
                al_adamw_step(&o, m, 1e-2f, gscale);
                const al_param *pr = al_model_params_ro(m, &np);
                off = 0;
                for (int i = 0; i < np; i++) {
                    if (!pr[i].g) continue;
                    same &= memcmp(pr[i].w, wr + off, pr[i].n * sizeof *wr) == 0;
                    same &= memcmp(pr[i].g, gc + off, pr[i].n * sizeof *gc) == 0;
                    for (size_t k = 0; pr[i].h && k < pr[i].n; k++, nh++)
                        same &= pr[i].h[k] == al_bf16_round1(pr[i].w[k]);
                    off += pr[i].n;
                }
                same &= memcmp(o.m, mr + a, (b - a) * sizeof *mr) == 0;
                same &= memcmp(o.v, vr + a, (b - a) * sizeof *vr) == 0;
            }
            T_TRUE(same);
            T_TRUE(nh > 0);
            free(gr);
            free(gc);
            free(mr);
            free(vr);
            free(wr);
            al_adamw_deinit(&o);
        }
        al_model_free(m);
    }
    al_pool_shutdown();
    al_pool_init(2);
}

static void count_stage(void *ud, int stage) {
    (void)stage;
    ++*(int *)ud;
}

/* al_model_zero_grad leaves the layer maps' weight gradients to the next
 * backward, which writes them: the same bits as zeroing first (a model
 * with a grad hook zeroes at once), in fp32 and bf16, and zeros to anyone
 * reading before that backward. */
static void test_zero_grad_deferred(void) {
    char err[AL_ERRLEN];
    float lp[B_ * T_], en[B_ * T_], val[B_ * T_];
    for (int bf16 = 0; bf16 < 2; bf16++) {
        al_model_config c = tiny(AL_ARCH_LLAMA, 1);
        al_model *m = al_model_new(&c, NULL, err);
        al_model_init(m, 5);
        if (bf16) T_OK(al_model_set_bf16(m, 1, err));
        fwd_bwd(m, 0, lp, en, val); /* zero_grad (deferred), backward */
        fwd_bwd(m, 0, lp, en, val);
        int np;
        const al_param *ps = al_model_params_ro(m, &np);
        size_t n = al_model_num_params(m, 1), at = 0;
        float *g1 = malloc(n * sizeof *g1);
        for (int i = 0; i < np; i++)
            if (ps[i].g) {
                memcpy(g1 + at, ps[i].g, ps[i].n * sizeof *g1);
                at += ps[i].n;
            }
        T_TRUE(al_model_grad_norm(m) > 0);
        int stages = 0;
        al_model_set_grad_hook(m, count_stage, &stages); /* zeroes at once */
        fwd_bwd(m, 0, lp, en, val);
        T_EQ_INT(stages, c.n_layers + 2);
        ps = al_model_params_ro(m, &np);
        int same = 1;
        at = 0;
        for (int i = 0; i < np; i++)
            if (ps[i].g) {
                same &= memcmp(g1 + at, ps[i].g, ps[i].n * sizeof *g1) == 0;
                at += ps[i].n;
            }
        T_TRUE(same);
        al_model_set_grad_hook(m, NULL, NULL);
        al_model_zero_grad(m);
        T_TRUE(al_model_grad_norm(m) == 0.0);
        al_model_zero_grad(m);
        ps = al_model_params_ro(m, &np);
        double ss = 0;
        for (int i = 0; i < np; i++)
            for (size_t k = 0; ps[i].g && k < ps[i].n; k++) ss += fabs(ps[i].g[k]);
        T_TRUE(ss == 0.0);
        free(g1);
        al_model_free(m);
    }
}

static void test_accumulation_and_determinism(void) {
    char err[AL_ERRLEN];
    al_model_config c = tiny(AL_ARCH_LLAMA, 1);
    al_model *m = al_model_new(&c, NULL, err);
    size_t n = m->n_data;
    float *w0 = malloc(n * 4), *a = malloc(n * 4), *b = malloc(n * 4), *d = malloc(n * 4);
    al_model_init(m, 1);
    memcpy(w0, m->data, n * 4);
    update(m, 1, a);
    memcpy(m->data, w0, n * 4);
    update(m, 8, b);
    double maxd = 0;
    for (size_t i = 0; i < n; i++) maxd = fmax(maxd, fabs(a[i] - b[i]));
    T_NEAR(maxd, 0, 1e-5);
    memcpy(m->data, w0, n * 4);
    update(m, 1, d);
    T_TRUE(memcmp(a, d, n * 4) == 0); /* same thread count: bit-identical */
    free(w0); free(a); free(b); free(d);
    al_model_free(m);
}

static void test_errors(void) {
    char err[AL_ERRLEN];
    al_model_config c = tiny(AL_ARCH_GPT2, 0);
    al_model *m = al_model_new(&c, NULL, err);
    T_EQ_INT(al_model_reserve(m, 1, 17, 0, err), AL_ERANGE);
    T_OK(al_model_reserve(m, 1, 4, 0, err));
    int32_t ids[4] = {1, 2, 99, 3};
    al_tokens in = {.B = 1, .T = 4, .ids = ids};
    T_EQ_INT(al_model_forward(m, &in, NULL), AL_ERANGE);
    in.T = 5;
    T_EQ_INT(al_model_forward(m, &in, NULL), AL_EINVAL);
    al_lora_cfg lc = {.r = 2, .alpha = 2};
    snprintf(lc.targets, sizeof lc.targets, "nonexistent_proj");
    T_TRUE(al_model_new(&c, &lc, err) == NULL);
    T_TRUE(strstr(err, "nonexistent_proj") != NULL);
    al_model_free(m);
}

/* ---- frozen opens ------------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
enum { SANITIZED = 1 };
#else
enum { SANITIZED = 0 };
#endif

/* In a child limited to `extra` bytes of address space beyond what it has
 * mapped now, opens dir with flags: 0 when the open succeeds, 1 when it
 * fails, -1 when the child could not be run. */
static int open_in_child(const char *dir, int flags, size_t extra) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        long vm_kb = -1;
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "VmSize: %ld kB", &vm_kb) == 1) break;
        if (f) fclose(f);
        if (vm_kb < 0) _exit(3);
        struct rlimit rl = {.rlim_cur = (rlim_t)vm_kb * 1024 + extra,
                            .rlim_max = (rlim_t)vm_kb * 1024 + extra};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
        char err[AL_ERRLEN] = "";
        al_model *m = NULL;
        int rc = al_model_open_ex(&m, dir, NULL, flags, 0, err);
        al_model_free(m);
        _exit(rc == AL_OK ? 0 : 1);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) <= 1 ? WEXITSTATUS(st) : -1;
}

/* The base tensors (not adapters) of two models hold the same fp32 bits,
 * read in nn.Linear's layout (a frozen Conv1D weight is held (in, out)). */
static int same_rows(const al_param *a, int na, const al_param *b, int nb) {
    int same = 1;
    for (int i = 0; i < na && i < nb; i++)
        if (!b[i].lora) same &= t_param_same_rows(&a[i], &b[i]);
    return same;
}

/* A tiny GPT-2 from seed saved to dir, and LoRA adapters (r 2 on c_attn)
 * on it saved to adir naming base_path as their base; returns the model. */

static al_model *base_and_adapter(uint64_t seed, const char *dir, const char *adir, const char *base_path) {
    char err[AL_ERRLEN];
    al_model_config c = tiny(AL_ARCH_GPT2, 0);
    al_model *src = al_model_new(&c, NULL, err);
    al_model_init(src, seed);
    T_OK(al_model_save(src, dir, err));
    al_lora_cfg lc = {.r = 2, .alpha = 4.0f};
    snprintf(lc.targets, sizeof lc.targets, "c_attn");
    al_model *lm = NULL;
    T_OK(al_model_open(&lm, dir, &lc, err));
    T_OK(al_model_save_adapter(lm, adir, base_path, err));
    al_model_free(lm);
    return src;
}

/* AL_OPEN_FROZEN (inference, references, reward models) gives no tensor a
 * gradient, and never allocates the gradient arena on the way: the open
 * fits in an address space with room for the weights and the mapped file
 * but not for a third copy, where a trainable open of the same folder does
 * not fit (the check's control). Address space is counted, not sampled, so
 * this is no timing; sanitizers and valgrind reserve their own, so it runs
 * in the plain build only. */
static void test_frozen_open(void) {
    char err[AL_ERRLEN], dir[1200], adir[1300];
    snprintf(dir, sizeof dir, "%s/frozen", t_tmpdir());
    snprintf(adir, sizeof adir, "%s/frozen_adapter", t_tmpdir());
    al_model *src = base_and_adapter(21, dir, adir, dir);

    const char *dirs[2] = {dir, adir};
    const int flags[3] = {AL_OPEN_FROZEN, AL_OPEN_FROZEN | AL_OPEN_SCORE_HEAD, 0};
    for (int d = 0; d < 2; d++) {
        for (int k = 0; k < 3; k++) {
            al_model *m = NULL;
            T_OK(al_model_open_ex(&m, dirs[d], NULL, flags[k], 7, err));
            if (!m) continue;
            int frozen = flags[k] & AL_OPEN_FROZEN, np, with_g = 0;
            al_param *ps = al_model_params(m, &np);
            for (int i = 0; i < np; i++) with_g += ps[i].g != NULL;
            if (frozen) {
                T_EQ_INT(with_g, 0);
                T_TRUE(m->grad == NULL && m->n_grad == 0);
                T_EQ_INT(al_model_num_params(m, 1), 0);
                T_EQ_INT(al_model_memory(m), al_model_num_params(m, 0) * sizeof(float));
            } else {
                T_TRUE(with_g > 0 && m->grad != NULL); /* all of them, or the adapters */
            }
            /* the same weights either way */
            int ns;
            al_param *s0 = al_model_params(src, &ns);
            T_TRUE(same_rows(s0, ns, ps, np));
            al_model_free(m);
        }
    }
    al_model_free(src);

    const char *pre = getenv("LD_PRELOAD");
    if (SANITIZED || (pre && strstr(pre, "vgpreload"))) {
        printf("frozen open address space: skipped under a sanitizer or valgrind\n");
        return;
    }
    /* ~50 MiB of weights: big enough that the slack (W/2) dwarfs what an
     * open allocates besides the weights, its mapped file and one Conv1D
     * transpose buffer (4 MiB here) */
    al_model_config g;
    al_config_default(&g, AL_ARCH_GPT2);
    g.n_layers = 4;
    g.C = 512;
    g.NH = g.NKV = 8;
    g.HD = 64;
    g.FF = 2048;
    g.V = 260;
    g.max_T = 64;
    g.has_lm_head = 1;
    g.tie_word_embeddings = 1;
    al_model *big = al_model_new(&g, NULL, err);
    T_TRUE(big != NULL);
    if (!big) return;
    al_model_init(big, 3);
    size_t W = al_model_num_params(big, 0) * sizeof(float);
    snprintf(dir, sizeof dir, "%s/frozen_big", t_tmpdir());
    T_OK(al_model_save(big, dir, err));
    al_model_free(big);
    size_t room = 2 * W + W / 2;
    int frozen_rc = open_in_child(dir, AL_OPEN_FROZEN, room);
    int trainable_rc = open_in_child(dir, 0, room);
    printf("frozen open in %zu MiB of address space (weights %zu MiB): frozen %s, trainable %s\n",
           room >> 20, W >> 20, frozen_rc == 0 ? "fits" : "does not fit",
           trainable_rc == 0 ? "fits" : "does not fit");
    T_EQ_INT(trainable_rc, 1); /* control: the limit leaves no room for gradients */
    T_EQ_INT(frozen_rc, 0);
}

/* base_model_name_or_path relative to the adapter folder (how a state
 * directory's adapters name a base in the same tree, wherever it lies):
 * resolved against the adapter folder, loaded, and reported by
 * al_model_adapter_base; a plain folder has no adapter base. */
static void test_relative_adapter_base(void) {
    char err[AL_ERRLEN], dir[1200], adir[1300], got[1400], want[1400];
    snprintf(dir, sizeof dir, "%s/relbase", t_tmpdir());
    snprintf(adir, sizeof adir, "%s/reladapter", t_tmpdir());
    al_model *src = base_and_adapter(22, dir, adir, "../relbase");
    T_OK(al_model_adapter_base(adir, got, sizeof got, err));
    snprintf(want, sizeof want, "%s/../relbase", adir);
    T_STR_EQ(got, want);
    al_model *m = NULL;
    T_OK(al_model_open(&m, adir, NULL, err));
    if (m) {
        int ns, np;
        al_param *s0 = al_model_params(src, &ns), *ps = al_model_params(m, &np);
        T_TRUE(same_rows(s0, ns, ps, np));
    }
    al_model_free(m);
    T_EQ_INT(al_model_adapter_base(dir, got, sizeof got, err), AL_ENOENT);
    al_model_free(src);
}

int main(void) {
    al_pool_init(2);
    test_gradients();
    test_lora_gradients();
    test_checkpointing();
    test_forward_only();
    test_shared_activations();
    test_shared_keep();
    test_head_logits_overwritten();
    test_entropy_only_backward();
    test_fused_head();
    test_forward_reference();
    test_save_load();
    test_generation();
    test_bf16_model();
    test_bf16_norms_again();
    test_bf16_frozen_open();
    test_bf16_checkpoints();
    test_bf16_copy_after_step();
    test_adamw_bits();
    test_zero_grad_deferred();
    test_accumulation_and_determinism();
    test_errors();
    test_frozen_open();
    test_relative_adapter_base();
    return t_done();
}

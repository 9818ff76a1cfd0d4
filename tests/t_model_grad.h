/* Whole-model gradients against central differences (STYLE.md §5), shared
 * by test_model.c and test_families.c: a batch of B_ x T_ tokens with
 * padding in row 1 and a prompt (no targets) at the start, the loss
 * L = sum(R1 logp + R2 entropy + R3 value), the fourth-order stencil for
 * float32 whole models, every trainable tensor checked. */
#ifndef T_MODEL_GRAD_H
#define T_MODEL_GRAD_H

#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "model/model.h"
#include "t.h"

enum { B_ = 2, T_ = 5 };

/* A batch with padding in row 1 and a prompt (no targets) at the start. */
static int32_t g_ids[B_ * T_] = {1, 4, 7, 2, 9, 3, 10, 5, 0, 0};
static int32_t g_seg[B_ * T_] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
static int32_t g_tgt[B_ * T_] = {-1, 7, 2, 9, 6, 10, 5, 8, -1, -1};

typedef struct gc_ctx {
    al_model *m;
    al_tokens in;
    float R1[B_ * T_], R2[B_ * T_], R3[B_ * T_];
    float logp[B_ * T_], ent[B_ * T_], val[B_ * T_];
    int use_ent, use_val;
} gc_ctx;

static inline double gc_loss(void *p) {
    gc_ctx *c = p;
    al_fwd f = {.logp = c->logp, .entropy = c->use_ent ? c->ent : NULL,
                .values = c->use_val ? c->val : NULL};
    AL_ASSERT(al_model_forward(c->m, &c->in, &f) == AL_OK);
    double L = 0;
    for (int n = 0; n < B_ * T_; n++) {
        L += (double)c->R1[n] * c->logp[n];
        if (c->use_ent) L += (double)c->R2[n] * c->ent[n];
        if (c->use_val) L += (double)c->R3[n] * c->val[n];
    }
    return L;
}

static inline void check_grads(const char *what, al_model *m, int use_ent, int use_val, int flags) {
    char err[AL_ERRLEN];
    T_OK(al_model_reserve(m, B_, T_, flags, err));
    static gc_ctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.in = (al_tokens){.B = B_, .T = T_, .ids = g_ids, .seg = g_seg, .targets = g_tgt};
    c.use_ent = use_ent;
    c.use_val = use_val;
    gc_fill(c.R1, B_ * T_, 11, 1.0f);
    gc_fill(c.R2, B_ * T_, 12, 1.0f);
    gc_fill(c.R3, B_ * T_, 13, 1.0f);
    gc_loss(&c);
    al_model_zero_grad(m);
    T_OK(al_model_backward(m, &c.in, c.R1, use_ent ? c.R2 : NULL, use_val ? c.R3 : NULL));
    int np;
    al_param *ps = al_model_params(m, &np);
    /* the analytic gradient must be copied: gc_check re-runs forwards only */
    for (int i = 0; i < np; i++) {
        if (!ps[i].g) continue;
        float *g = malloc(ps[i].n * sizeof *g);
        memcpy(g, ps[i].g, ps[i].n * sizeof *g);
        char name[200];
        snprintf(name, sizeof name, "%s %s", what, ps[i].name);
        gc_check_stencil(name, ps[i].w, g, ps[i].n, gc_loss, &c, 5e-3f, 4);
        free(g);
    }
}

#endif

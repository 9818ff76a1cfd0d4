/* AdamW, schedules and clipping (see optim.h). The update walks the
 * parameter table in order; moments are laid out in the same order as the
 * model's gradient arena, so a checkpoint of m and v is two flat arrays. */
#include "optim.h"

#include <stdio.h>
#include <stdlib.h>

#include <math.h>
#include <string.h>

#include "../compute/ops.h"
#include "../compute/pool.h"
#include "../model/safetensors.h"
#include "../compute/simd.h"

void al_adamw_defaults(al_adamw_cfg *cfg) {
    cfg->lr = 1e-3f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->weight_decay = 0.0f;
}

int al_adamw_init(al_adamw *o, const al_adamw_cfg *cfg, al_model *model) {
    return al_adamw_init_range(o, cfg, model, 0, al_model_num_params(model, 1));
}

int al_adamw_init_range(al_adamw *o, const al_adamw_cfg *cfg, al_model *model, size_t lo, size_t hi) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    AL_ASSERT(lo <= hi && hi <= al_model_num_params(model, 1));
    o->lo = lo;
    o->n = hi - lo;
    o->m = al_calloc(o->n ? o->n : 1, sizeof(float));
    o->v = al_calloc(o->n ? o->n : 1, sizeof(float));
    if (!o->m || !o->v) {
        al_adamw_deinit(o);
        return AL_ENOMEM;
    }
    return AL_OK;
}

void al_adamw_deinit(al_adamw *o) {
    al_free(o->m);
    al_free(o->v);
    o->m = o->v = NULL;
}

typedef struct adamw_job {
    al_adamw *o;
    const al_param *ps;
    int np;
    float lr, step_size, inv_sqrt_bc2;
    float gscale;  /* the clipping coefficient; 1 without clipping */
} adamw_job;

/* Each thread updates its share [lo, hi) of the optimiser's slice of the
 * flattened trainable parameters; the moments are laid out in that same
 * flat order, from the slice's start. */
AL_SIMD_CLONES static void adamw_range(void *ctx, int tid, int nthreads) {
    const adamw_job *j = ctx;
    const al_adamw *o = j->o;
    const float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    long lo, hi;
    al_split((long)o->n, nthreads, tid, &lo, &hi);
    lo += (long)o->lo;
    hi += (long)o->lo;
    size_t off = 0;
    for (int i = 0; i < j->np && (long)off < hi; i++) {
        const al_param *p = &j->ps[i];
        if (!p->g) continue;
        size_t a = (long)off > lo ? off : (size_t)lo;
        size_t b = off + p->n < (size_t)hi ? off + p->n : (size_t)hi;
        if (a < b) {
            /* elements [a, b) of the flat order: the parameter's from a - off,
             * the moments' from a - o->lo */
            float *w = p->w + (a - off), *mm = o->m + (a - o->lo), *vv = o->v + (a - o->lo);
            const float *g = p->g + (a - off);
            const float decay = p->decay ? 1.0f - j->lr * o->cfg.weight_decay : 1.0f;
            uint16_t *h = p->h ? p->h + (a - off) : NULL;
            /* by pieces that stay in L1, so that a bf16 model's copy of the
             * weight is rounded from the update still in cache: the next
             * forward then need not round every weight again
             * (al_model_bf16_stepped) */
            for (size_t c0 = 0; c0 < b - a; c0 += 2048) {
                size_t c1 = c0 + 2048 < b - a ? c0 + 2048 : b - a;
                for (size_t k = c0; k < c1; k++) {
                    /* the clipped gradient, rounded as al_scale rounded it
                     * in place (x * 1.0f == x: no clipping is exact too) */
                    float gk = g[k] * j->gscale;
                    float mk = b1 * mm[k] + (1.0f - b1) * gk;
                    float vk = b2 * vv[k] + (1.0f - b2) * gk * gk;
                    mm[k] = mk;
                    vv[k] = vk;
                    float denom = sqrtf(vk) * j->inv_sqrt_bc2 + eps;
                    w[k] = w[k] * decay - j->step_size * mk / denom;
                }
                for (size_t k = c0; h && k < c1; k++) h[k] = al_bf16_round1(w[k]);
            }
        }
        off += p->n;
    }
}

void al_adamw_step(al_adamw *o, al_model *model, float lr, float gscale) {
    adamw_job j = {.o = o, .lr = lr, .gscale = gscale};
    j.ps = al_model_params_ro(model, &j.np);
    o->step++;
    const double bc1 = 1.0 - pow(o->cfg.beta1, (double)o->step);
    const double bc2 = 1.0 - pow(o->cfg.beta2, (double)o->step);
    j.step_size = (float)(lr / bc1);
    j.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    al_pool_run(adamw_range, &j);
    al_model_bf16_stepped(model);
}

float al_sched_lr(al_sched_kind kind, float peak, long step, long warmup, long total) {
    if (step < warmup) return peak * (float)step / (float)(warmup > 0 ? warmup : 1);
    if (kind == AL_SCHED_CONSTANT) return peak;
    long span = total - warmup;
    if (span <= 0) return kind == AL_SCHED_CONSTANT ? peak : 0.0f;
    double progress = (double)(step - warmup) / (double)span;
    if (progress > 1) progress = 1;
    if (kind == AL_SCHED_LINEAR) return (float)(peak * (1.0 - progress));
    return (float)(peak * 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
}

int al_sched_parse(const char *name, al_sched_kind *out) {
    if (!strcmp(name, "constant")) *out = AL_SCHED_CONSTANT;
    else if (!strcmp(name, "linear")) *out = AL_SCHED_LINEAR;
    else if (!strcmp(name, "cosine")) *out = AL_SCHED_COSINE;
    else return AL_EINVAL;
    return AL_OK;
}

/* Calls fn on each trainable parameter's part within [lo, hi) of the flat
 * order: (gradient pointer, count). */
static void grad_range(al_model *model, size_t lo, size_t hi, void (*fn)(float *g, size_t n, void *ud), void *ud) {
    int np;
    const al_param *ps = al_model_params_ro(model, &np);
    size_t off = 0;
    for (int i = 0; i < np && off < hi; i++) {
        if (!ps[i].g) continue;
        size_t a = off > lo ? off : lo, b = off + ps[i].n < hi ? off + ps[i].n : hi;
        if (a < b) fn(ps[i].g + (a - off), b - a, ud);
        off += ps[i].n;
    }
}

static void add_sumsq(float *g, size_t n, void *ud) { *(double *)ud += al_sumsq(g, n); }

double al_grad_sumsq_range(al_model *model, size_t lo, size_t hi) {
    double ss = 0;
    grad_range(model, lo, hi, add_sumsq, &ss);
    return ss;
}

float al_clip_coef(double norm, double max_norm) {
    if (max_norm > 0 && isfinite(norm)) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) return (float)coef;
    }
    return 1.0f;
}

double al_clip_grad_norm(al_model *model, double max_norm, float *gscale) {
    int np;
    const al_param *ps = al_model_params_ro(model, &np);
    double ss = 0;
    for (int i = 0; i < np; i++)
        if (ps[i].g) ss += al_sumsq(ps[i].g, ps[i].n);
    double norm = sqrt(ss);
    *gscale = al_clip_coef(norm, max_norm);
    return norm;
}

int al_adamw_save_file(const char *path, const float *m, const float *v, size_t n, al_model *model,
                       char err[AL_ERRLEN]) {
    int np = 0;
    const al_param *ps = model ? al_model_params_ro(model, &np) : NULL;
    int masters = model && al_model_save_dtype(model) != AL_DT_F32;
    al_st_entry *e = calloc((size_t)np + 2, sizeof *e);
    char (*names)[128] = calloc((size_t)np + 1, sizeof *names);
    if (!e || !names) {
        free(e);
        free(names);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    e[0] = (al_st_entry){.name = "exp_avg", .data = m, .ndim = 1, .shape = {(int64_t)n}};
    e[1] = (al_st_entry){.name = "exp_avg_sq", .data = v, .ndim = 1, .shape = {(int64_t)n}};
    int k = 2;
    for (int i = 0; masters && i < np; i++) {
        if (!ps[i].g || !ps[i].w || ps[i].lora) continue; /* adapters are saved in fp32 */
        snprintf(names[i], sizeof names[i], "master.%s", ps[i].name);
        e[k++] = (al_st_entry){.name = names[i], .data = ps[i].w, .ndim = 1, .shape = {(int64_t)ps[i].n}};
    }
    int rc = al_st_write(path, e, k, err);
    free(e);
    free(names);
    return rc;
}

int al_adamw_load_file(al_adamw *o, al_model *model, const char *path, size_t n_total, char err[AL_ERRLEN]) {
    al_st_file f;
    int rc = al_st_open(&f, path, err);
    if (rc) return rc;
    const al_st_tensor *t[2] = {al_st_find(&f, "exp_avg"), al_st_find(&f, "exp_avg_sq")};
    float *dst[2] = {o->m, o->v};
    int whole = o->lo == 0 && o->n == n_total;
    float *tmp = whole ? NULL : malloc((n_total ? n_total : 1) * sizeof *tmp);
    if (!t[0] || !t[1]) rc = al_err(err, AL_EFORMAT, "%s: exp_avg/exp_avg_sq missing", path);
    else if (!whole && !tmp) rc = al_err(err, AL_ENOMEM, "out of memory reading %s", path);
    for (int k = 0; k < 2 && !rc; k++) {
        rc = al_st_read_f32(&f, t[k], whole ? dst[k] : tmp, n_total, err);
        if (!rc && !whole) memcpy(dst[k], tmp + o->lo, o->n * sizeof *tmp);
    }
    free(tmp);
    /* the fp32 masters of a checkpoint saved narrower: every rank reads all
     * of them (its weights are whole, its moments a slice) */
    int np;
    al_param *ps = al_model_params(model, &np);
    char name[128];
    for (int i = 0; !rc && i < np; i++) {
        if (!ps[i].g || !ps[i].w) continue;
        snprintf(name, sizeof name, "master.%s", ps[i].name);
        const al_st_tensor *mt = al_st_find(&f, name);
        if (mt) rc = al_st_read_f32(&f, mt, ps[i].w, ps[i].n, err);
    }
    al_st_close(&f);
    return rc;
}

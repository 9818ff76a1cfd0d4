/* Data-parallel gradients and the ZeRO-1 optimizer step (see ddp.h).
 *
 * Buckets are contiguous runs of the gradient arena (the trainable
 * parameters in table order: embeddings, layers 0..L-1, final norm, heads,
 * then any adapters), formed from the end of the arena backwards because
 * backward completes the parameters in about that order. A bucket is ready
 * at the latest stage (al_model_param_stage) of its parameters; the hook
 * starts buckets in index order as their stage passes, and every rank starts
 * them in that same order (an MPI requirement for collectives), whether its
 * backward started them or al_ddp_reduce did (a rank with no examples in a
 * step's last, short batch runs no backward at all). */
#include "ddp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct al_ddp {
    al_model *m;
    al_ddp_cfg cfg;
    float *arena;           /* the gradient arena: n floats */
    size_t n;
    size_t s0, s1;          /* this rank's slice (sharded) */
    int nb, next, armed;
    int *ready;             /* (nb) stage at which bucket b is final */
    al_dist_reducer *red;
};

static void on_stage(void *ud, int stage) {
    al_ddp *d = ud;
    if (!d->armed) return;
    while (d->next < d->nb && d->ready[d->next] <= stage) al_dist_reducer_start(d->red, d->next++);
}

int al_ddp_new(al_ddp **out, al_model *m, const al_ddp_cfg *cfg, char err[AL_ERRLEN]) {
    *out = NULL;
    if (al_dist_size() <= 1) return AL_OK;
    al_ddp *d = calloc(1, sizeof *d);
    if (!d) return al_err(err, AL_ENOMEM, "out of memory");
    d->m = m;
    d->cfg = *cfg;
    if (!(d->cfg.bucket_mb > 0)) d->cfg.bucket_mb = 25;
    int np;
    al_param *ps = al_model_params(m, &np);
    d->n = al_model_num_params(m, 1);
    size_t *off = calloc((size_t)np + 1, sizeof *off);
    size_t *lo = calloc((size_t)np + 1, sizeof *lo), *hi = calloc((size_t)np + 1, sizeof *hi);
    d->ready = calloc((size_t)np + 1, sizeof *d->ready);
    int rc = AL_OK;
    if (!off || !lo || !hi || !d->ready) rc = al_err(err, AL_ENOMEM, "out of memory");
    /* the arena: trainable parameters' gradients back to back in table order */
    size_t pos = 0;
    for (int i = 0; i < np && !rc; i++) {
        if (!ps[i].g) continue;
        if (!d->arena) d->arena = ps[i].g;
        AL_ASSERT(ps[i].g == d->arena + pos);
        off[i] = pos;
        pos += ps[i].n;
    }
    size_t cap = (size_t)(d->cfg.bucket_mb * 1048576.0 / sizeof(float));
    if (cap < 1) cap = 1;
    int cur = -1;
    for (int i = np - 1; i >= 0 && !rc; i--) {
        if (!ps[i].g) continue;
        int st = al_model_param_stage(m, i);
        if (cur < 0 || hi[cur] - lo[cur] >= cap) {
            cur = d->nb++;
            hi[cur] = off[i] + ps[i].n;
            d->ready[cur] = st;
        }
        lo[cur] = off[i];
        if (st > d->ready[cur]) d->ready[cur] = st;
    }
    if (!rc) {
        al_dist_shard(d->n, al_dist_rank(), al_dist_size(), &d->s0, &d->s1);
        d->red = al_dist_reducer_new(d->arena, d->n, lo, hi, d->nb, d->cfg.shard_optimizer, err);
        if (!d->red) rc = AL_ENOMEM;
    }
    free(off);
    free(lo);
    free(hi);
    if (rc) {
        al_ddp_free(d);
        return rc;
    }
    al_model_set_grad_hook(m, on_stage, d);
    *out = d;
    return AL_OK;
}

void al_ddp_free(al_ddp *d) {
    if (!d) return;
    if (d->red) al_model_set_grad_hook(d->m, NULL, NULL);
    al_dist_reducer_free(d->red);
    free(d->ready);
    free(d);
}

int al_ddp_adamw_init(al_ddp *d, al_adamw *o, const al_adamw_cfg *cfg, al_model *m) {
    if (d && d->cfg.shard_optimizer) return al_adamw_init_range(o, cfg, m, d->s0, d->s1);
    return al_adamw_init(o, cfg, m);
}

void al_ddp_arm(al_ddp *d) {
    if (d && d->cfg.overlap) d->armed = 1;
}

int al_ddp_reduce(al_ddp *d, char err[AL_ERRLEN]) {
    if (!d) return AL_OK;
    d->armed = 0;
    d->next = 0;
    return al_dist_reducer_wait(d->red, err);
}

double al_ddp_grad_sumsq(al_ddp *d, al_model *m) {
    if (!d) return al_grad_sumsq_range(m, 0, al_model_num_params(m, 1));
    if (!d->cfg.shard_optimizer) return al_grad_sumsq_range(m, 0, d->n); /* the same on every rank */
    double ss = al_grad_sumsq_range(m, d->s0, d->s1);
    al_dist_sum(&ss, 1);
    return ss;
}

double al_ddp_clip_grad_norm(al_ddp *d, al_model *m, double max_norm, float *gscale) {
    if (!d) return al_clip_grad_norm(m, max_norm, gscale);
    double norm = sqrt(al_ddp_grad_sumsq(d, m));
    *gscale = al_clip_coef(norm, max_norm);
    return norm;
}

/* Copies the trainable weights of the flat range [lo, hi) into the arena
 * (to_arena) or back from it into the weights. */
static void weights_arena(al_ddp *d, size_t lo, size_t hi, int to_arena) {
    int np;
    al_param *ps = al_model_params(d->m, &np);
    size_t off = 0;
    for (int i = 0; i < np && off < hi; i++) {
        if (!ps[i].g) continue;
        size_t a = off > lo ? off : lo, b = off + ps[i].n < hi ? off + ps[i].n : hi;
        if (a < b) {
            float *w = ps[i].w + (a - off), *g = d->arena + a;
            memcpy(to_arena ? g : w, to_arena ? w : g, (b - a) * sizeof(float));
        }
        off += ps[i].n;
    }
}

void al_ddp_adamw_step(al_ddp *d, al_adamw *o, al_model *m, float lr, float gscale) {
    al_adamw_step(o, m, lr, gscale);
    if (!d || !d->cfg.shard_optimizer) return;
    /* the updated slices to every rank, through the arena (its gradients
     * are spent; the next step zeroes it) */
    weights_arena(d, d->s0, d->s1, 1);
    al_dist_allgather_shards(d->arena, d->n);
    weights_arena(d, 0, d->n, 0);
}

int al_ddp_moments_gather(al_ddp *d, const al_adamw *o, float **mm, float **vv, size_t *n, char err[AL_ERRLEN]) {
    *mm = *vv = NULL;
    if (!d || !d->cfg.shard_optimizer) {
        *mm = o->m;
        *vv = o->v;
        *n = o->n;
        return AL_OK;
    }
    int size = al_dist_size(), rank = al_dist_rank();
    size_t *counts = calloc((size_t)size, sizeof *counts);
    float *fm = NULL, *fv = NULL;
    int rc = counts ? AL_OK : AL_ENOMEM;
    if (!rc && rank == 0) {
        fm = malloc((d->n ? d->n : 1) * sizeof *fm);
        fv = malloc((d->n ? d->n : 1) * sizeof *fv);
        if (!fm || !fv) rc = AL_ENOMEM;
    }
    /* a rank out of memory must not leave the others in the gather */
    rc = al_dist_agree_rc(rc);
    if (!rc) {
        for (int r = 0; r < size; r++) {
            size_t a, b;
            al_dist_shard(d->n, r, size, &a, &b);
            counts[r] = b - a;
        }
        al_dist_gather_f32(o->m, counts, fm);
        al_dist_gather_f32(o->v, counts, fv);
    }
    free(counts);
    if (rc) {
        free(fm);
        free(fv);
        return al_err(err, rc, "out of memory gathering the optimizer state for a checkpoint");
    }
    *mm = fm;
    *vv = fv;
    *n = d->n;
    return AL_OK;
}

void al_ddp_moments_release(const al_adamw *o, float *mm, float *vv) {
    if (mm != o->m) free(mm);
    if (vv != o->v) free(vv);
}

void al_ddp_stats(const al_ddp *d, long *rounds, double *bytes, double *wait_s, double *early) {
    al_dist_reducer_stats(d ? d->red : NULL, rounds, bytes, wait_s, early);
}

int al_ddp_summary(const al_ddp *d, const char *what, char *buf, size_t n) {
    long rounds;
    double bytes, wait_s, early;
    al_ddp_stats(d, &rounds, &bytes, &wait_s, &early);
    buf[0] = 0;
    if (rounds <= 0) return 0;
    snprintf(buf, n, "distributed: %ld gradient reductions%s of %.2f MB (one per optimizer update), %.1f ms each "
             "spent waiting for them, %.0f%% of the buckets started during backward", rounds, what, bytes / 1e6,
             1e3 * wait_s / (double)rounds, 100 * early);
    return 1;
}

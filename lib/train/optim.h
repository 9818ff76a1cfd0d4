/* Optimiser: AdamW as PyTorch defines it (decoupled weight decay), learning
 * rate schedules as Hugging Face transformers' get_scheduler, and global
 * gradient-norm clipping as torch.nn.utils.clip_grad_norm_. */
#ifndef AL_OPTIM_H
#define AL_OPTIM_H

#include "../model/model.h"

typedef struct al_adamw_cfg {
    float lr;            /* peak learning rate */
    float beta1, beta2;  /* 0.9, 0.999 */
    float eps;           /* 1e-8 */
    float weight_decay;  /* applied to params with decay set (not norms, biases) */
} al_adamw_cfg;

/* Moments for the trainable parameters of one model, one allocation each:
 * all of them, or (ZeRO-1, lib/dist/ddp.h) the slice [lo, lo + n) of the
 * trainable parameters flattened in table order (the gradient arena's
 * order). */
typedef struct al_adamw {
    al_adamw_cfg cfg;
    float *m, *v;
    size_t n;
    size_t lo;           /* first element owned; 0 unless sharded */
    long step;           /* updates taken so far */
} al_adamw;

void al_adamw_defaults(al_adamw_cfg *cfg);
/* Sizes the moments for the model's trainable parameters. AL_ENOMEM. */
int al_adamw_init(al_adamw *o, const al_adamw_cfg *cfg, al_model *model);
/* The same for the elements [lo, hi) of the flattened trainable parameters
 * only (hi <= al_model_num_params(model, 1)). AL_ENOMEM. */
int al_adamw_init_range(al_adamw *o, const al_adamw_cfg *cfg, al_model *model, size_t lo, size_t hi);
void al_adamw_deinit(al_adamw *o);
/* One update of every trainable parameter with learning rate lr, of the
 * gradients times gscale (the clipping coefficient, 1 without clipping;
 * g = g_stored * gscale, rounded to float, is the clipped gradient that
 * torch.nn.utils.clip_grad_norm_ writes in place: applied here, the
 * gradients are read once a step instead of three times):
 * p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
 * The stored gradients are left unscaled. */
void al_adamw_step(al_adamw *o, al_model *model, float lr, float gscale);
/* Sum of squares of the gradients of the elements [lo, hi) of the
 * flattened trainable parameters (the norm of a shard). */
double al_grad_sumsq_range(al_model *model, size_t lo, size_t hi);

/* A checkpoint's optimizer.safetensors: the AdamW moments exp_avg and
 * exp_avg_sq of every trainable parameter (n floats each; gathered from the
 * ranks of a sharded run) and, when model's checkpoints are saved in a
 * narrower dtype than its trained fp32 weights (a BF16 base fine-tuned in
 * full), those fp32 master weights ("master.<name>"), so that resuming
 * continues exactly (model NULL: the moments only). model is not const:
 * reading its parameter table settles its deferred gradients first. */
int al_adamw_save_file(const char *path, const float *m, const float *v, size_t n, al_model *model,
                       char err[AL_ERRLEN]);
/* Reads them back into o: all of them, or o's slice [o->lo, o->lo + o->n)
 * of a file that holds n_total (a checkpoint written by any number of
 * ranks), and the masters it holds into model's weights: call it after the
 * weights are loaded. AL_EFORMAT (names the file) when a tensor is missing
 * or of another size, AL_ENOMEM, the file's errors. */
int al_adamw_load_file(al_adamw *o, al_model *model, const char *path, size_t n_total, char err[AL_ERRLEN]);

typedef enum { AL_SCHED_CONSTANT = 0, AL_SCHED_LINEAR, AL_SCHED_COSINE } al_sched_kind;
/* Learning rate for update `step` (0-based) of `total`: linear warm-up over
 * `warmup` steps from 0, then constant, linear decay to 0, or half-cosine to 0. */
float al_sched_lr(al_sched_kind kind, float peak, long step, long warmup, long total);
/* Parses "constant" | "linear" | "cosine"; AL_EINVAL otherwise. */
int al_sched_parse(const char *name, al_sched_kind *out);

/* The coefficient that brings a global gradient norm down to max_norm, as
 * torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6) when that is
 * < 1, else 1 (also for max_norm 0 = no clipping, and a NaN/Inf norm). */
float al_clip_coef(double norm, double max_norm);
/* Global L2 norm of the gradients, and in *gscale the coefficient that
 * clips it to max_norm (al_clip_coef), for al_adamw_step to apply: the
 * gradients themselves are not scaled. Returns the norm before clipping
 * (NaN/Inf propagate, so the caller can detect divergence). */
double al_clip_grad_norm(al_model *model, double max_norm, float *gscale);

#endif

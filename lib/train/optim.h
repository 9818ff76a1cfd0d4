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

/* Moments for the trainable parameters of one model, one allocation each. */
typedef struct al_adamw {
    al_adamw_cfg cfg;
    float *m, *v;
    size_t n;
    long step;           /* updates taken so far */
} al_adamw;

void al_adamw_defaults(al_adamw_cfg *cfg);
/* Sizes the moments for the model's trainable parameters. AL_ENOMEM. */
int al_adamw_init(al_adamw *o, const al_adamw_cfg *cfg, al_model *model);
void al_adamw_deinit(al_adamw *o);
/* One update of every trainable parameter with learning rate lr:
 * p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void al_adamw_step(al_adamw *o, al_model *model, float lr);

/* A checkpoint's optimizer.safetensors: AdamW's moments (exp_avg,
 * exp_avg_sq) and, when m's checkpoints are saved in a narrower dtype than
 * its trained fp32 weights (a BF16 base fine-tuned in full), those fp32
 * master weights ("master.<name>"), so that resuming continues exactly.
 * al_adamw_load goes after the weights are loaded: the masters it finds
 * replace them. AL_EFORMAT naming what is missing or misshaped. */
int al_adamw_save(const al_adamw *o, const al_model *m, const char *path, char err[AL_ERRLEN]);
int al_adamw_load(al_adamw *o, al_model *m, const char *path, char err[AL_ERRLEN]);

typedef enum { AL_SCHED_CONSTANT = 0, AL_SCHED_LINEAR, AL_SCHED_COSINE } al_sched_kind;
/* Learning rate for update `step` (0-based) of `total`: linear warm-up over
 * `warmup` steps from 0, then constant, linear decay to 0, or half-cosine to 0. */
float al_sched_lr(al_sched_kind kind, float peak, long step, long warmup, long total);
/* Parses "constant" | "linear" | "cosine"; AL_EINVAL otherwise. */
int al_sched_parse(const char *name, al_sched_kind *out);

/* Scales the gradients so their global L2 norm is at most max_norm (0 = no
 * clipping). Returns the norm before clipping (NaN/Inf propagate, so the
 * caller can detect divergence). */
double al_clip_grad_norm(al_model *model, double max_norm);

#endif

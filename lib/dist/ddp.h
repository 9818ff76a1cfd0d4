/* Data-parallel training of one model across the ranks of lib/dist: the one
 * place where the training loops meet MPI (after backward, where gradients
 * are final; DESIGN.md "One run skeleton").
 *
 * Each rank runs forward and backward on its share of the global batch, with
 * the objective's denominators (scored tokens, rows) counted over the whole
 * global batch; the gradients are then summed over ranks, which makes them
 * the gradients of the global batch's loss: equal to what one process
 * accumulating the same examples in the same micro-batches computes. The
 * sum runs in buckets of about bucket_mb MiB of the gradient arena: the
 * model's backward reports each layer as it completes (al_model_set_grad_hook)
 * and a bucket whose layers are all done starts its non-blocking reduction
 * while the layers below still compute (overlap), the rest at
 * al_ddp_reduce. Every rank then takes the same clipped AdamW step.
 *
 * ZeRO-1 (shard_optimizer): the buckets are reduce-scattered instead, so
 * rank r holds the summed gradients of its slice of the flattened trainable
 * parameters only, and AdamW moments for that slice only (optimizer memory
 * divided by the number of ranks); the clipping norm is summed over slices;
 * after its AdamW step each rank's updated slice is all-gathered (through the
 * gradient arena, which is free by then) into every rank's weights.
 *
 * A NULL al_ddp (one process) is valid everywhere: each call then does what
 * the single-process loop did (al_clip_grad_norm, al_adamw_step, ...), so
 * the loops have one code path. */
#ifndef AL_DDP_H
#define AL_DDP_H

#include "../model/model.h"
#include "../train/optim.h"
#include "dist.h"

typedef struct al_ddp_cfg {
    int shard_optimizer;   /* ZeRO-1; 0 */
    double bucket_mb;      /* 25 (PyTorch DDP's bucket_cap_mb) */
    int overlap;           /* 1: buckets start as backward completes them */
} al_ddp_cfg;

typedef struct al_ddp al_ddp;

/* Sets up the reduction of m's trainable gradients. *out = NULL (AL_OK)
 * when there is one rank. AL_ENOMEM. */
int al_ddp_new(al_ddp **out, al_model *m, const al_ddp_cfg *cfg, char err[AL_ERRLEN]);
void al_ddp_free(al_ddp *d);
/* The model's AdamW: moments for all trainable parameters, or for this
 * rank's slice (sharded). AL_ENOMEM. */
int al_ddp_adamw_init(al_ddp *d, al_adamw *o, const al_adamw_cfg *cfg, al_model *m);
/* The next backward of the model is the last of the step: its completed
 * layers start their buckets (with overlap). */
void al_ddp_arm(al_ddp *d);
/* After the step's last backward: every bucket summed over ranks; the
 * gradients (of this rank's slice, sharded) are final. AL_OK or AL_EIO. */
int al_ddp_reduce(al_ddp *d, char err[AL_ERRLEN]);
/* Sum of squares of the final gradients over the whole model (every rank
 * gets the same): global-norm clipping over several models (PPO's policy
 * and critic, al_clip_coef). */
double al_ddp_grad_sumsq(al_ddp *d, al_model *m);
/* torch.nn.utils.clip_grad_norm_ over the final gradients: the norm before
 * clipping (NaN/Inf propagate), and in *gscale the clipping coefficient
 * for al_ddp_adamw_step (the gradients are not scaled in place). */
double al_ddp_clip_grad_norm(al_ddp *d, al_model *m, double max_norm, float *gscale);
/* One AdamW update of the gradients times gscale (al_adamw_step): of every
 * parameter, or of this rank's slice followed by the all-gather of the
 * slices into every rank's weights. */
void al_ddp_adamw_step(al_ddp *d, al_adamw *o, al_model *m, float lr, float gscale);
/* The full moments for a checkpoint (collective): *mm and *vv point to n
 * floats (every trainable parameter) on rank 0 — the optimiser's own arrays
 * when not sharded, else gathered copies — and are NULL on the other ranks
 * of a sharded run. Release with al_ddp_moments_release. AL_ENOMEM. */
int al_ddp_moments_gather(al_ddp *d, const al_adamw *o, float **mm, float **vv, size_t *n, char err[AL_ERRLEN]);
void al_ddp_moments_release(const al_adamw *o, float *mm, float *vv);
/* Statistics of the reduction so far: rounds (optimizer steps), gradient
 * bytes per round, seconds blocked waiting for it, the fraction of buckets
 * the backward started. Zeros for NULL. */
void al_ddp_stats(const al_ddp *d, long *rounds, double *bytes, double *wait_s, double *early);
/* Those statistics as one line for the run's events ("distributed: N
 * gradient reductions<what> of X MB, ..."), into buf; 0 (buf empty) when no
 * reduction ran (NULL d, one process). */
int al_ddp_summary(const al_ddp *d, const char *what, char *buf, size_t n);

#endif

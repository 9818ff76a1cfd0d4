/* Hyper-parameters of a training job, resolved: every field holds a value
 * (TRL's default where the job left it out). Names follow OpenAI's
 * fine-tuning API where it has one (n_epochs, batch_size, learning_rate)
 * and TRL's for the rest. Parsed from the job's "hyperparameters" object by
 * the trainer (lib/train/job.c). */
#ifndef AL_HPARAMS_H
#define AL_HPARAMS_H

#include "optim.h"

#define AL_MAX_LOSS_TYPES 8

typedef struct al_hparams {
    /* optimisation */
    int n_epochs;                    /* 1; ignored when max_steps > 0 */
    int batch_size;                  /* examples (pairs for preference) per optimiser step */
    int micro_batch_size;            /* rows per forward; batch_size / gradient_accumulation_steps */
    int gradient_accumulation_steps; /* 1 */
    long max_steps;                  /* -1: from n_epochs; 0: evaluate only */
    float learning_rate;
    al_sched_kind lr_scheduler_type; /* linear (TRL default) */
    float warmup_ratio;              /* 0 */
    float weight_decay;              /* 0 */
    float max_grad_norm;             /* 1.0; 0 disables clipping */
    float adam_beta1, adam_beta2, adam_epsilon;
    int max_length;                  /* 1024 (SFT), total prompt+completion tokens */
    int gradient_checkpointing;      /* 0 */
    int packing;                     /* SFT only */
    int dedupe;
    int group_by_length;             /* 0: batches of similar lengths (less padding) when 1 */
    int completion_only_loss;        /* 1: loss on completions only (prompt/completion data) */
    int assistant_only_loss;         /* 1: loss on assistant turns only (messages data) */

    /* preference family */
    float beta;                      /* 0.1 (DPO, KTO, SimPO 2.0 in TRL's CPO), ORPO's lambda */
    char loss_type[AL_MAX_LOSS_TYPES][24]; /* "sigmoid", "ipo", "hinge", "robust", ... */
    int n_loss_types;
    float loss_weights[AL_MAX_LOSS_TYPES]; /* 1.0 each when not given */
    float label_smoothing;           /* 0 */
    float rpo_alpha;                 /* 0: no SFT term; else weight of chosen NLL (RPO) */
    float simpo_gamma;               /* 0.5 */
    float desirable_weight, undesirable_weight; /* KTO: 1.0, 1.0 */
    float center_rewards_coefficient;/* reward model: 0 = off */
    int precompute_ref_log_probs;    /* 1 */

    /* cadence */
    int eval_steps, save_steps, logging_steps;
    uint64_t seed;
} al_hparams;

#endif

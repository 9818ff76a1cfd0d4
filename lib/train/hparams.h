/* Hyper-parameters of a training job, resolved: every field holds a value
 * (TRL's default where the job left it out). Names follow OpenAI's
 * fine-tuning API where it has one (n_epochs, batch_size, learning_rate)
 * and TRL's for the rest. Parsed from the job's "hyperparameters" object by
 * the trainer (lib/train/job.c). */
#ifndef AL_HPARAMS_H
#define AL_HPARAMS_H

#include "optim.h"

#define AL_MAX_LOSS_TYPES 8
/* Examples one micro-batch (one forward) holds: batch_size /
 * gradient_accumulation_steps above it is refused when the job is parsed. */
#define AL_MAX_MICRO_BATCH 1024

enum { AL_SCALE_GROUP = 0, AL_SCALE_BATCH = 1, AL_SCALE_NONE = 2 };
enum { AL_KL_K1 = 1, AL_KL_K3 = 3 };
/* mixed_precision: "auto" resolves when the job is parsed (al_bf16_auto,
 * compute/ops.h: bf16 where the CPU multiplies bf16 natively) */
enum { AL_MP_AUTO = 0, AL_MP_FP32 = 1, AL_MP_BF16 = 2 };

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

    /* reinforcement learning (ppo, grpo, rloo) and the sampling jobs
     * (generate_preferences, evaluate, critique_revise); TRL's names */
    int num_generations;             /* completions per prompt: grpo 8, rloo 2, ppo 1, generate_preferences 4 */
    int max_completion_length;       /* new tokens: grpo/rloo 256, ppo 53 (response_length); alias max_new_tokens */
    int max_prompt_length;           /* 512: longer prompts keep their last tokens */
    float temperature;               /* ppo 0.7, others 1.0 (evaluate 0: greedy) */
    float top_p;                     /* 1.0 */
    int top_k;                       /* 0 = off */
    float epsilon;                   /* 0.2: clip range below (GRPO/RLOO) */
    float epsilon_high;              /* clip range above; < 0 (TRL's None) = epsilon */
    int scale_rewards;               /* AL_SCALE_GROUP (TRL main), _BATCH, _NONE */
    float kl_coef;                   /* ppo 0.05 */
    int kl_estimator;                /* AL_KL_K1 (TRL default) or AL_KL_K3 */
    int adaptive_kl;                 /* 0: fixed kl_coef; 1: Ziegler et al.'s controller */
    float target_kl;                 /* 6.0: the controller's target (TRL 0.x "target") */
    float kl_horizon;                /* 10000: the controller's horizon (TRL 0.x "horizon") */
    float gamma, lam;                /* 1.0, 0.95 */
    int whiten_rewards;              /* 0 */
    float cliprange, cliprange_value;/* 0.2, 0.2 */
    float vf_coef;                   /* 0.1 */
    int num_ppo_epochs;              /* 4 (ppo); grpo/rloo use num_iterations */
    int num_mini_batches;            /* 1 */
    int num_iterations;              /* 1: GRPO's mu, updates per generation batch */
    float missing_eos_penalty;       /* 0 = TRL's None */
    float sft_mix_ratio;             /* 0: weight of an SFT loss on reference answers mixed into RL */
    float entropy_coef;              /* 0: entropy bonus */
    int normalize_advantages;        /* rloo: 0 (TRL main) */
    int mask_truncated_completions;  /* 0 */
    float kl_warn;                   /* 10: health warning when the mean sequence KL exceeds it */

    /* precision */
    int mixed_precision;             /* AL_MP_FP32 or AL_MP_BF16 once parsed ("auto" resolved) */
    int save_dtype;                  /* 0 ("auto"): the base checkpoint's; AL_DT_F32, _BF16, _F16 */

    /* cadence */
    int eval_steps, save_steps, logging_steps;
    int save_total_limit;            /* 0: keep every checkpoint; else the newest N (transformers') */
    uint64_t seed;
} al_hparams;

#endif

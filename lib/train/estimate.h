/* What a job will cost, without running it: examples, tokens, optimiser
 * steps, parameters (all and trainable) and peak memory. The daemon uses it
 * at admission (a job that would not fit waits) and for POST /v1/jobs/estimate.
 *
 * Parameters come from config.json alone (no weights are read). Tokens come
 * from tokenizing the data with the model's tokenizer: every row of a JSONL
 * file (through the dataset reader, so the count matches what the trainer
 * trains), or up to 256 rows of a built-in task scaled to its row count.
 * Memory counts fp32 weights, gradients and AdamW moments of the trainable
 * parameters, a separate reference model when one is held, and the
 * activations of one micro-batch at its longest sequence (per layer: the
 * saved inputs of attention and MLP and attention's log-sum-exp, one layer's
 * set alone with gradient_checkpointing; the residual stream at each layer's
 * input; the logits),
 * plus a fixed 64 MiB for the tokenizer, data and buffers. It is an upper
 * estimate, good to about a factor of two. */
#ifndef AL_ESTIMATE_H
#define AL_ESTIMATE_H

#include <stddef.h>

#include "job.h"

typedef struct al_estimate {
    long examples;              /* training examples (a pair counts once) */
    double tokens;              /* tokens trained over the whole run */
    long steps;                 /* optimiser steps */
    size_t parameters;          /* of the model as trained (score head included) */
    size_t trainable_parameters;
    size_t memory_bytes;        /* peak, see above */
    double seconds;             /* the run: steps x seconds_per_step (+ a reference's scoring) */
    double seconds_per_step;    /* one optimiser step, from this machine's measured rates */
    int max_seq;                /* longest sequence seen (tokens) */
} al_estimate;

/* Returns AL_OK, or the error of reading the model's config or the data
 * (AL_ENOENT, AL_EFORMAT, ...) with the reason in err->msg and the field
 * whose model or data failed in err->field ("model", "chat_template",
 * "training_file", "training_files[1].file", "method"). */
int al_job_estimate(const al_job *job, al_estimate *out, al_error *err);

/* The shape of one optimiser step. */
typedef struct al_step_plan {
    int rows;        /* rows trained (forward + backward) per step; 0: none (forward only) */
    int micro_rows;  /* rows per forward/backward call (gradient accumulation); 0: all at once */
    int T;           /* tokens per row */
    int ref_rows;    /* rows a reference scores, forward only */
    int grad_ckpt;   /* gradient checkpointing: the backward recomputes the forward of each layer but the last */
    int fused_head;  /* the objective gives d loss / d logp before the forward (dlogp_prior: SFT,
                      * pretraining), so a frozen LM head runs its backward in the forward and
                      * computes its logits once (al_fwd.dlogp); the probes run it so too */
} al_step_plan;

/* Seconds one optimiser step takes on this machine: p->rows rows of p->T
 * tokens through forward and backward of cfg's model, p->micro_rows at a
 * time (LoRA adapters when lora is non-NULL, products in bf16 when bf16),
 * plus p->ref_rows rows of a forward-only reference, plus zeroing the
 * gradients and AdamW once. Measured, not assumed: the first call for a
 * shape runs the model's own forward, backward and AdamW on a batch of the
 * step's micro-batch and row length, with the job's checkpointing, best of
 * a few runs on the compute pool (a fraction of a second to a few seconds).
 * A model no bigger than two of its layers and a 4096-entry head is timed
 * itself; a larger one through two probes, one and two of its layers under
 * a vocabulary of 4096 (up to 1024 tokens, rows of up to 256): a layer costs
 * their difference (attention scaled by its share of the FLOPs at T), the
 * rest (embedding, head, per-call costs) what the one-layer probe takes
 * beyond, scaled by the vocabulary. Later calls reuse the figures (cached
 * per shape, precision, LoRA settings, checkpointing, micro-batch and row
 * length, for the life of the process). AL_OK, or the model's error with
 * its field (al_model_create's: "lora.target_modules" when LoRA targets
 * nothing, ...; "model" when the error names none), AL_ENOMEM. */
int al_estimate_step(const al_model_config *cfg, const al_lora_cfg *lora, int bf16, const al_step_plan *p,
                     double *seconds, al_error *err);

/* Parameters of a model config (score head when has_score or score_head). */
size_t al_config_num_params(const al_model_config *c, int score_head);

#endif

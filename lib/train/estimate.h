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
 * saved inputs of attention and MLP, the attention matrix, and the logits),
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

/* Seconds one optimiser step takes on this machine: rows sequences of T
 * tokens through forward and backward of cfg's model (LoRA adapters when
 * lora is non-NULL, products in bf16 when bf16), plus ref_rows rows of a
 * forward-only reference, plus AdamW over the trainable parameters. The
 * rates are measured, not assumed: the first call for a shape times one
 * layer of it (forward, backward), its LM head on a slice of the
 * vocabulary, and the optimiser, on the compute pool (a fraction of a
 * second), and scales by layers, tokens (attention by its share of the
 * FLOPs at each T) and vocabulary; later calls reuse the figures (cached
 * per shape, precision and LoRA rank for the life of the process).
 * AL_OK, or AL_ENOMEM / the model's error. */
int al_estimate_step(const al_model_config *cfg, const al_lora_cfg *lora, int bf16, int rows,
                     int T, int ref_rows, double *seconds, char err[AL_ERRLEN]);

/* Parameters of a model config (score head when has_score or score_head). */
size_t al_config_num_params(const al_model_config *c, int score_head);

#endif

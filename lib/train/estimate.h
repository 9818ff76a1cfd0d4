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
    double seconds;             /* rough: 6 x trainable-ish FLOPs per token at 2 GFLOP/s per core */
    int max_seq;                /* longest sequence seen (tokens) */
} al_estimate;

/* Returns AL_OK, or the error of reading the model's config or the data
 * (AL_ENOENT, AL_EFORMAT, ...) with the reason in err->msg and the field
 * whose model or data failed in err->field ("model", "chat_template",
 * "training_file", "training_files[1].file", "method"). */
int al_job_estimate(const al_job *job, al_estimate *out, al_error *err);

/* Parameters of a model config (score head when has_score or score_head). */
size_t al_config_num_params(const al_model_config *c, int score_head);

#endif

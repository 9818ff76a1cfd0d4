/* Tokenized examples and the padded batches the model consumes.
 *
 * An example is one or two token sequences with a per-token trained mask
 * (TRL's completion_mask: 1 where the token is part of what is trained, i.e.
 * predicted from the tokens before it). A batch turns examples into the
 * right-padded (B, T) arrays of al_tokens: ids, seg (0 = padding, k = the
 * k-th example packed into the row), pos (reset per example) and targets
 * (targets[t] = ids[t+1] where token t+1 is trained and belongs to the same
 * example, else -1).
 *
 * Masks never come from comparing ids with the pad id, so pad may equal EOS
 * without hiding the real EOS; callers still pick a distinct pad
 * (al_chat_pad_id) so that logs and dumps read unambiguously.
 *
 * Layouts:
 *   LM        one example per row (SFT, pretraining, KTO, RL prompts).
 *   PAIR      TRL's DataCollatorForPreference: rows 0..n-1 hold prompt+chosen,
 *             rows n..2n-1 prompt+rejected, one common padded length.
 *   packed    SFT packing: best-fit decreasing (TRL's "bfd") of whole
 *             examples into rows of at most max_length tokens; positions
 *             restart at 0 and seg numbers the examples of a row 1, 2, ...,
 *             so the model's block-diagonal causal mask keeps them apart.
 *
 * al_batch is sized once (al_batch_init) and refilled every step without
 * allocating. Nothing here is shared between threads. */
#ifndef AL_BATCH_H
#define AL_BATCH_H

#include <jansson.h>

#include "../al.h"
#include "../model/model.h"

/* One tokenized sequence. ids and mask are malloc'd and owned by the
 * sequence (al_seq_deinit frees them). */
typedef struct al_seq {
    int32_t *ids;    /* (n) token ids */
    uint8_t *mask;   /* (n) 1 = trained token (TRL's completion_mask) */
    int n;
} al_seq;

/* Frees ids and mask and zeroes the struct; safe on a zeroed struct. */
void al_seq_deinit(al_seq *s);
/* Number of tokens with mask 1. */
int al_seq_trained(const al_seq *s);

/* Which columns a dataset provides and an objective consumes. */
typedef enum al_batch_kind {
    AL_BATCH_LM = 1,     /* one sequence: sft, pretrain */
    AL_BATCH_PAIR,       /* chosen and rejected: dpo family, reward model */
    AL_BATCH_UNPAIRED,   /* one sequence and a label: kto */
    AL_BATCH_PROMPT,     /* a prompt (mask all 0) and an optional reference: rl */
} al_batch_kind;

/* A training example. kind says which members are used. */
typedef struct al_example {
    al_seq seq[2];       /* PAIR: chosen, rejected; otherwise seq[0] only */
    float label;         /* UNPAIRED: 1 desirable, 0 undesirable */
    float margin;        /* PAIR: preference strength (rating gap), 0 when none */
    int line;            /* 1-based line of the source row (rows: index + 1) */
    char *reference;     /* PROMPT: reference answer (the first of a list), malloc'd, or NULL */
    json_t *row;         /* PROMPT: the source row (a reference: its answers, grader, columns), or NULL */
} al_example;

/* Frees the sequences, reference and row; safe on a zeroed struct. */
void al_example_deinit(al_example *e);
/* Longest sequence of the example (what must fit in max_length). */
int al_example_len(const al_example *e);

/* Padded arrays for one step. Row-major (B, T) arrays hold max_rows x max_T
 * entries; B and T are this batch's. */
typedef struct al_batch {
    al_batch_kind kind;
    int B, T;            /* rows and padded length of the current batch */
    int n_ex;            /* examples in it (PAIR: B = 2 n_ex) */
    int32_t *ids;        /* (B, T) pad_id in padding */
    int32_t *seg;        /* (B, T) 0 padding, k for the k-th example of the row */
    int32_t *pos;        /* (B, T) positions, restarting at 0 per example; 0 in padding */
    int32_t *targets;    /* (B, T) next token where it is trained, else -1 */
    uint8_t *mask;       /* (B, T) completion_mask: 1 where ids[t] is trained */
    int32_t *len;        /* (B) real tokens per row */
    int32_t *ex;         /* (n_ex) index of each example in the caller's array */
    float *label;        /* (n_ex) example labels (UNPAIRED) */
    float *margin;       /* (n_ex) example margins (PAIR) */
    int max_rows, max_T, max_ex;
} al_batch;

/* Sizes b for at most max_rows rows of max_T tokens (PAIR: max_rows = 2 x
 * examples). LM batches also reserve room for packed rows (up to max_T
 * examples per row). Returns AL_OK, AL_EINVAL (non-positive sizes) or
 * AL_ENOMEM; on error b is zeroed. */
int al_batch_init(al_batch *b, al_batch_kind kind, int max_rows, int max_T);
/* Frees the arrays; safe on a zeroed or failed batch. */
void al_batch_deinit(al_batch *b);

/* Fills b with the n examples ex[idx[0]] ... ex[idx[n-1]], right-padded to
 * the longest sequence among them. PAIR lays chosen rows first, then the
 * rejected rows in the same order. AL_ERANGE when the rows or a sequence do
 * not fit the sizes given to al_batch_init (err names the example's line);
 * on error b's contents are unspecified. */
int al_batch_fill(al_batch *b, const al_example *ex, const int32_t *idx, int n,
                  int32_t pad_id, char err[AL_ERRLEN]);

/* The batch as the model's input (borrowed pointers into b). */
al_tokens al_batch_tokens(const al_batch *b);

/* A packing plan: rows of whole examples, each row at most max_length tokens. */
typedef struct al_pack {
    int n_rows;
    int32_t *start;      /* (n_rows + 1) row r holds items[start[r] .. start[r+1]) */
    int32_t *items;      /* example indices (into the caller's array) */
    int32_t *len;        /* (n_rows) tokens in each row */
} al_pack;

/* Best-fit decreasing, as TRL's packing_strategy="bfd": examples by length,
 * longest first, each into the row whose free space is the smallest that
 * fits, O(n log max_length). Only LM examples (seq[0]) are packed. Examples
 * longer than max_length -> AL_ERANGE (truncation happens, and is reported,
 * when the dataset is read). AL_ENOMEM. *p is written only on success. */
int al_pack_bfd(const al_example *ex, const int32_t *idx, int n, int max_length,
                al_pack *p, char err[AL_ERRLEN]);
void al_pack_deinit(al_pack *p);

/* Fills b with packed rows r0 .. r0+nr-1 of plan p: seg numbers the examples
 * of a row from 1, pos restarts at 0 for each, and no target crosses from one
 * example into the next. AL_ERANGE if the rows do not fit b. */
int al_batch_fill_packed(al_batch *b, const al_example *ex, const al_pack *p, int r0,
                         int nr, int32_t pad_id, char err[AL_ERRLEN]);

/* Batch order for an epoch: a permutation of 0..n-1 written to order (n).
 * group_by_length 0: a seeded shuffle. 1: transformers' LengthGroupedSampler
 * (shuffle, cut into megabatches of up to 50 batches, sort each longest
 * first, put the longest example in the first batch), so that consecutive
 * runs of batch_size indices have similar lengths and little padding.
 * Deterministic in seed. AL_EINVAL for n < 0 or batch_size < 1, AL_ENOMEM. */
int al_batch_order(const int32_t *lengths, int n, int batch_size, int group_by_length,
                   uint64_t seed, int32_t *order);

#endif

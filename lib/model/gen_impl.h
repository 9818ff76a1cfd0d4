/* Internals shared by the two users of the inference rows (generate.c):
 * al_generate (whole batches, RL rollouts) and the serving decoder
 * (decode.c). A gen_state holds the scratch of one forward over R rows;
 * each row is one token of sequence seq[r] at position pos[r], whose keys
 * and values go to that sequence's cache (L, tcap[b], NKV*HD). */
#ifndef AL_GEN_IMPL_H
#define AL_GEN_IMPL_H

#include "model.h"

typedef struct gen_state {
    al_model *m;
    int B, Tmax, R;              /* sequences, longest cache, max rows */
    float **kseq, **vseq;        /* per sequence: (L, tcap[b], NKV*HD) */
    int *tcap;
    float *kc, *vc;              /* al_generate: every sequence's cache in one block */
    float *x, *ln, *mean, *rstd, *qkv, *atty, *tmp, *h1, *h2, *lora_t, *scores;
    float *y, *qk_raw;           /* (R, C) the next residual; (R, (NH+NKV)*HD) raw q|k */
    float *logits;               /* (B, V) */
    uint16_t *s16;               /* bf16 models: rounded operands of the products */
    int32_t *ids, *pos, *seq;    /* per row */
    int nthreads;
} gen_state;

typedef struct cand { float z; int i; } cand;

/* Checks a generation config: AL_EINVAL naming the bad field. */
int al_gen_check(const al_gen_cfg *g, char err[AL_ERRLEN]);
/* Allocates s's scratch for s->R rows, caches up to s->Tmax long and
 * n_logits rows of logits (s->m, R and Tmax set). AL_ENOMEM. */
int al_gen_scratch(gen_state *s, int n_logits);
/* Runs R rows (ids, pos, seq set) through the model, writing their keys and
 * values into the caches; logits of the rows want[0..n_want) go to
 * s->logits (n_want x V). */
void al_gen_run_rows(gen_state *s, int R, const int *want, int n_want);
/* Samples one token from a row of logits as g says (cs: V candidates of
 * scratch); *logp its log-prob under the temperature-scaled distribution
 * (logp NULL: not computed). */
int al_gen_sample(const float *logits, int V, const al_gen_cfg *g, al_rng *rng, cand *cs, float *logp);

#endif

/* Mixing several training sets by weighted sampling, deterministic by seed
 * and resumable exactly.
 *
 * Each draw picks source s with probability w_s / sum(w) (the RNG, one per
 * mixer, xoshiro256** from the job's seed), then takes that source's next
 * example in its own order: a seeded permutation of its examples, a new one
 * for each pass over it (as Hugging Face datasets' interleave_datasets with
 * probabilities and the all_exhausted strategy draws; LLaMA-Factory's
 * mix_strategy interleave_over). A small source is thus repeated and a
 * large one sampled, each in proportion to its weight, whatever its size.
 *
 * The whole state is the RNG's four words and the draws taken from each
 * source (a pass's permutation follows from the seed, the source and the
 * pass number), so a checkpoint that stores al_mix_state resumes the
 * identical stream. Not thread-safe: one owner. */
#ifndef AL_MIX_H
#define AL_MIX_H

#include <jansson.h>

#include "../al.h"

#define AL_MIX_MAX_SOURCES 16

typedef struct al_mix {
    int n_src;
    int32_t n[AL_MIX_MAX_SOURCES];      /* examples per source (> 0) */
    int32_t off[AL_MIX_MAX_SOURCES];    /* first index of each in the concatenation */
    double w[AL_MIX_MAX_SOURCES];       /* weights as given (> 0) */
    double cum[AL_MIX_MAX_SOURCES];     /* cumulative probabilities, the last 1 */
    int64_t taken[AL_MIX_MAX_SOURCES];  /* draws taken from each source */
    int32_t *perm[AL_MIX_MAX_SOURCES];  /* the current pass's order of each */
    uint64_t seed;
    al_rng rng;
    int64_t draws;
} al_mix;

/* n_src sources of n[i] examples with weights w[i] (finite, > 0). Returns
 * AL_OK, AL_EINVAL (no source, too many, a size or weight out of range),
 * AL_ENOMEM; al_mix_deinit is safe after a failure. */
int al_mix_init(al_mix *m, int n_src, const int32_t *n, const double *w, uint64_t seed,
                char err[AL_ERRLEN]);
void al_mix_deinit(al_mix *m);
/* Back to the state right after al_mix_init. */
void al_mix_rewind(al_mix *m);

/* The next example: an index into the concatenation of the sources (source
 * s's example k is off[s] + k). */
int32_t al_mix_next(al_mix *m);
/* The source of a concatenated index. */
int al_mix_source(const al_mix *m, int32_t idx);

/* The state as JSON (a new reference; NULL on ENOMEM):
 * {"seed", "draws", "rng": [4 hex strings], "taken": [...], "sizes": [...],
 *  "weights": [...]}. */
json_t *al_mix_state(const al_mix *m);
/* Restores a state written by al_mix_state for the same sources: AL_OK, or
 * AL_EFORMAT naming what differs (sizes or weights changed since the
 * checkpoint, a malformed state); m is unchanged on error. */
int al_mix_restore(al_mix *m, const json_t *state, char err[AL_ERRLEN]);

#endif

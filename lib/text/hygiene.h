/* Data hygiene: near-duplicates, evaluation-set contamination, length and
 * language, each decided per row and reported with its reason.
 *
 * A row's text is every string in it (messages' contents, prompt,
 * completion, chosen, ...; not roles, types, ids or tags), joined by
 * newlines. Words are its maximal runs of ASCII letters and digits or of
 * non-ASCII bytes, ASCII lower-cased: punctuation and case do not count,
 * as in the GPT-3 paper's overlap analysis.
 *
 * Near-duplicates (MinHash, Broder 1997, with LSH banding): a row's
 * shingles are its word 5-grams (a row of fewer words is one shingle);
 * num_perm = 128 hash functions h_i(x) = (a_i x + b_i) mod (2^61 - 1),
 * fixed by a seed, give its signature; bands = 16 bands of 8 values make
 * rows that agree on a whole band candidates (a pair of Jaccard similarity
 * s is a candidate with probability 1 - (1 - s^8)^16: 0.947 at 0.8, 0.994
 * at 0.85, 0.99999 at 0.9). A candidate is a near-duplicate when the exact
 * Jaccard similarity of the two shingle sets is >= threshold (0.8); the
 * later row goes, the first stays. Deterministic: no randomness but the
 * fixed seed.
 *
 * Contamination against an evaluation file: an n-gram of words shared with
 * any evaluation row marks a training row contaminated. n is the GPT-3
 * paper's (Brown et al. 2020, appendix C): the 5th percentile of the
 * evaluation rows' word counts, clamped to [8, 13], unless given.
 * Evaluation rows shorter than n words cannot match and are counted. The
 * rule is GPT-3's by default: any shared n-gram drops the row; with
 * coverage c > 0 it is Llama 2's (Touvron et al. 2023, appendix A.6): a
 * row is dropped when the share of its words lying inside shared n-grams is
 * >= c (Llama 2 called a sample "dirty" above 0.8).
 *
 * Length: rows of fewer than min_words or more than max_words words.
 *
 * Language: libexttextcat (LibreOffice's language guesser: Cavnar and
 * Trenkle's 1994 ranking of character n-gram frequencies against ~170
 * language fingerprints) on the first 1000 bytes of the text. It names the
 * languages within its margin of the best score ("[sco][en]" for plain
 * English is common), so a row is kept when any of them is wanted; rows too
 * short to tell (under 25 characters) or that it cannot place are kept and
 * counted as undetermined.
 *
 * Not thread-safe: one al_hygiene per reader. */
#ifndef AL_HYGIENE_H
#define AL_HYGIENE_H

#include <jansson.h>

#include "../al.h"

#define AL_HYG_MAX_LANGS 16

typedef struct al_hygiene_cfg {
    int near_dedupe;          /* near-duplicate removal on */
    double near_threshold;    /* Jaccard similarity >= this: a near-duplicate (0.8) */
    int near_ngram;           /* words per shingle (5) */
    int num_perm;             /* MinHash functions (128) */
    int bands;                /* LSH bands; num_perm % bands == 0 (16) */
    char decon_file[4096];    /* the evaluation file, "" = no decontamination */
    int decon_ngram;          /* 0: GPT-3's rule from the evaluation rows */
    double decon_coverage;    /* 0: any shared n-gram (GPT-3); else Llama 2's share */
    int min_words, max_words; /* 0 = no bound */
    char languages[AL_HYG_MAX_LANGS][16]; /* ISO 639 codes ("en", "de", "zh") */
    int n_languages;          /* 0 = no language filter */
} al_hygiene_cfg;

/* Whether any filter is on. */
int al_hygiene_any(const al_hygiene_cfg *c);

/* Parses a "hygiene" object of a job:
 *   {"near_duplicates": true | {"threshold", "ngram", "num_perm", "bands"},
 *    "decontaminate": {"file": FILE, "ngram": N | "auto", "coverage": C},
 *    "min_words": N, "max_words": N, "languages": ["en", ...]}
 * Errors are AL_EINVAL with the field's path in err->field
 * ("hygiene.near_duplicates.bands") and err->msg ("hygiene.near_duplicates.bands:
 * must divide num_perm"). */
int al_hygiene_parse(const json_t *v, al_hygiene_cfg *out, al_error *err);
/* The resolved settings as JSON (a new reference). */
json_t *al_hygiene_json(const al_hygiene_cfg *c);

typedef struct al_hygiene al_hygiene;

/* Prepares the filters: the hash functions, the language fingerprints, and
 * (decontamination) the evaluation rows' n-grams, from eval_texts (a JSON
 * array of the evaluation rows' texts; borrowed; may be NULL without
 * decontamination). AL_OK, AL_EIO (the fingerprints cannot be read),
 * AL_ENOMEM. */
int al_hygiene_new(al_hygiene **out, const al_hygiene_cfg *c, const json_t *eval_texts,
                   char err[AL_ERRLEN]);
void al_hygiene_free(al_hygiene *h);
const al_hygiene_cfg *al_hygiene_cfg_of(const al_hygiene *h);
int al_hygiene_bands(const al_hygiene *h);

/* A row's text (see above) into a malloc'd string; NULL on ENOMEM. */
char *al_hygiene_text(const json_t *row, size_t *len);

/* What the filters say of one text. */
typedef struct al_hyg_row {
    int words;
    int contaminated;         /* the contamination rule holds */
    float coverage;           /* share of words inside shared n-grams */
    int lang_ok;              /* 1 wanted, 0 another language, -1 undetermined */
    char lang[16];            /* the best guess ("" when undetermined) */
} al_hyg_row;

/* Judges a text; band (al_hygiene_bands entries, may be NULL without
 * near-duplicate removal) receives its LSH band keys. AL_OK or AL_ENOMEM. */
int al_hygiene_row(al_hygiene *h, const char *text, size_t len, al_hyg_row *out, uint64_t *band);

/* Exact Jaccard similarity of two texts' shingle sets (-1 on ENOMEM). */
double al_hygiene_jaccard(const al_hygiene *h, const char *a, size_t la, const char *b, size_t lb);

/* What the filters did to a file, for a job's events: calls fn with one line
 * "WHAT: hygiene kept K of N rows, D near-duplicates, ..." from the hygiene
 * section of a dataset report (al_dataset_report), then with the reason of
 * each dropped row ("WHAT: line 7: ... (near_duplicate)"), the first max of
 * them. Nothing when the report has no hygiene section. */
void al_hygiene_describe(const json_t *report, const char *what, int max, void (*fn)(void *ud, const char *line),
                         void *ud);

/* Counters of the evaluation set: rows, rows too short to match, the n
 * used, distinct n-grams. */
void al_hygiene_eval_stats(const al_hygiene *h, int *rows, int *short_rows, int *n, long *ngrams);

#endif

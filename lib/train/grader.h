/* Graders: whether a completion states a reference answer, for the
 * "verifiable" reward and the generative benchmarks, and the format reward.
 *
 * A grader extracts the answer from the completion, then compares it with
 * each accepted answer (one match is enough):
 *
 *   extract  "none"         the whole completion (trimmed)
 *            "last_number"  the last number in the text: digits with
 *                           thousands commas (strict groups of three),
 *                           a decimal part, a fraction a/b or \frac{a}{b},
 *                           a sign, a trailing %; never digits glued to a
 *                           letter before them ("x2", "H2O" are no numbers;
 *                           "12km" is 12)
 *            "hash"         the rest of the line after the last "####"
 *                           (GSM8K's answer line)
 *            "boxed"        the contents of the last \boxed{...} (braces
 *                           nested to any depth; also \fbox{} and "\boxed 5")
 *            {"regex": R, "group": 1, "occurrence": "last"|"first"}
 *                           a capture group of the last (or first) match of a
 *                           PCRE2 pattern (UTF, Unicode classes)
 *   compare  "exact"        byte equality after trimming whitespace
 *            "casefold"     Unicode NFC + case folding (utf8proc), whitespace
 *                           runs collapsed, trimmed
 *            "numeric"      both sides read as numbers and equal within
 *                           tolerance * max(1, |answer|): commas, currency
 *                           ($ € £ ¥), trailing units ("12 apples", "5 km/h"),
 *                           a leading "x =", LaTeX (\frac, \dfrac, \text{},
 *                           \%, \$, \!, \left/\right, $...$), a trailing full
 *                           stop; "50%" equals 50 and 0.5 (a percentage
 *                           matches its value or its hundredth)
 *            "auto"         numeric when both sides read as numbers, else
 *                           casefold
 *   after    "</think>"     grade only the text after the last occurrence
 *                           (TRL's reasoning_accuracy_reward); a completion
 *                           without it scores 0
 *
 * The reference answer goes through the same extractor when it contains
 * what the extractor looks for (a GSM8K solution "... #### 72" grades as
 * 72), else it is taken whole. Nothing extracted from the completion scores
 * 0. JSON: a preset name ("exact" — the default, the whole completion
 * exactly —, "casefold", "numeric", "last_number", "hash"/"gsm8k",
 * "boxed"/"math") or an object {"extract", "compare", "tolerance", "after",
 * "preset"} whose fields override the base it is parsed over.
 *
 * The format reward is 1 when the completion matches a PCRE2 pattern, else
 * 0. As open-r1's format_reward, the pattern runs with DOTALL and MULTILINE
 * and must match from the start (Python's re.match); "match": "full" also
 * pins the end, "search" finds it anywhere.
 *
 * Patterns are compiled once (no JIT: the service denies writable
 * executable memory) with a match limit, and tolerate invalid UTF-8 in
 * completions. A compiled grader is read-only: threads may share it. */
#ifndef AL_GRADER_H
#define AL_GRADER_H

#include <jansson.h>

#include "../al.h"

#define AL_GRADER_RE_MAX 1024
#define AL_GRADER_AFTER_MAX 64

typedef enum al_extract {
    AL_EXTRACT_NONE,
    AL_EXTRACT_LAST_NUMBER,
    AL_EXTRACT_HASH,
    AL_EXTRACT_BOXED,
    AL_EXTRACT_REGEX
} al_extract;

typedef enum al_compare { AL_COMPARE_EXACT, AL_COMPARE_CASEFOLD, AL_COMPARE_NUMERIC, AL_COMPARE_AUTO } al_compare;

typedef struct al_grader_cfg {
    al_extract extract;
    char regex[AL_GRADER_RE_MAX];   /* AL_EXTRACT_REGEX */
    int group;                      /* its capture group (default 1) */
    int first;                      /* 1: the first match, 0: the last (default) */
    al_compare compare;
    double tolerance;               /* numeric: default 1e-6 */
    char after[AL_GRADER_AFTER_MAX];/* "" = the whole completion */
} al_grader_cfg;

/* The default grader: the whole completion, exact match. */
void al_grader_cfg_default(al_grader_cfg *c);
/* Reads a grader (a preset name or an object) over *c, which holds the base
 * (defaults or the job's grader). On error *c is unchanged and err names
 * the field under path (err->field "reward.verifiable.grader.compare",
 * err->msg "reward.verifiable.grader.compare: must be one of ..."). AL_EINVAL. */
int al_grader_cfg_parse(al_grader_cfg *c, const json_t *v, const char *path, al_error *err);
/* The resolved description {"extract", "compare", "tolerance", "after"} (new reference, NULL without memory). */
json_t *al_grader_cfg_json(const al_grader_cfg *c);

typedef struct al_grader al_grader;

/* Compiles c (its regex). path names the field in errors. AL_EINVAL (a bad
 * pattern: PCRE2's message and offset; a group the pattern does not have),
 * AL_ENOMEM. */
int al_grader_new(al_grader **out, const al_grader_cfg *c, const char *path, al_error *err);
void al_grader_free(al_grader *g);
const al_grader_cfg *al_grader_config(const al_grader *g);

/* The answer in text: 1 and *out (malloc'd) when found, 0 when not,
 * AL_ENOMEM, or AL_ERANGE when a pattern hit its match limit. */
int al_grader_extract(const al_grader *g, const char *text, char **out);

/* Grades completion against n accepted answers: *score 1 when one matches,
 * else 0; *extracted (may be NULL) 1 when an answer was found in the
 * completion. AL_OK, AL_ENOMEM, AL_ERANGE (match limit). */
int al_grader_grade(const al_grader *g, const char *completion, const char *const *answers, int n,
                    double *score, int *extracted);

/* Whether a reference answer can ever match: with a numeric compare it must
 * read as a number. 0, or 1 with the reason in why (whyn bytes). */
int al_grader_answer_invalid(const al_grader *g, const char *answer, char *why, size_t whyn);

/* Compiled graders shared by equal configurations: the rows of one file
 * mostly name the same grader, compiled once. */
typedef struct al_grader_set {
    al_grader **g;
    int n, cap;
} al_grader_set;

/* The set's grader for c, compiled on first use (path names it in errors);
 * *out is borrowed until al_grader_set_free. */
int al_grader_set_get(al_grader_set *s, const al_grader_cfg *c, const char *path, const al_grader **out,
                      al_error *err);
void al_grader_set_free(al_grader_set *s);

/* ---- pieces, exposed for tests ------------------------------------------- */

/* Reads s (whole, after the numeric normalisation above) as one number:
 * 1 with *v and *pct (1 when it was a percentage, *v then the number before
 * the %), 0 when s is not one number. */
int al_grade_parse_number(const char *s, double *v, int *pct);
/* Numeric equality of a completion's answer a and a reference b (percent rule
 * above); 0 when either is no number. */
int al_grade_numeric_equal(const char *a, const char *b, double tol);
/* Case-folded, NFC, whitespace-collapsed, trimmed copy of s (malloc'd; NULL
 * without memory). Invalid UTF-8 folds ASCII only. */
char *al_grade_casefold(const char *s);

/* ---- the format reward ---------------------------------------------------- */

typedef enum al_format_mode { AL_FORMAT_START, AL_FORMAT_FULL, AL_FORMAT_SEARCH } al_format_mode;
typedef struct al_format_rule al_format_rule;

int al_format_new(al_format_rule **out, const char *regex, al_format_mode mode, const char *path,
                  al_error *err);
void al_format_free(al_format_rule *f);
/* 1 when text matches, 0 when not, AL_ERANGE (match limit), AL_ENOMEM. */
int al_format_match(const al_format_rule *f, const char *text);

#endif

/* Unicode character data for lib/text, on utf8proc (Debian's libutf8proc,
 * Unicode 15): normalization (the tokenizers' NFC/NFD/NFKC/NFKD), full case
 * mappings (Jinja's str methods and filters, the tokenizers' Lowercase) and
 * the character classes Python's str methods test (Jinja's isalpha, strip,
 * split, ...). What utf8proc does not carry is derived or listed in
 * unicode.c, which says which and why. */
#ifndef AL_UNICODE_H
#define AL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define AL_UC_MAX_DECOMP 18 /* the longest decomposition: U+FDFA's compatibility one */
#define AL_UC_MAX_CASE 3    /* the longest full case mapping (U+FB03 "ﬃ" -> "FFI") */

/* Canonical combining class of cp (0 for starters). */
int al_uc_ccc(uint32_t cp);
/* Full canonical (compat 0) or compatibility (compat 1) decomposition of cp
 * into out; returns its length, or 0 when cp is its own. Hangul included. */
int al_uc_decompose(uint32_t cp, int compat, uint32_t out[AL_UC_MAX_DECOMP]);
/* The primary composite of the pair (a, b), or 0 when there is none. */
uint32_t al_uc_compose(uint32_t a, uint32_t b);

/* Full case mappings of one character, without context (SpecialCasing's
 * unconditional mappings, as Python's str and Rust's char apply them):
 * write 1 to AL_UC_MAX_CASE characters to out and return the count.
 * "ß" -> "SS" (upper), "Ss" (title); "İ" -> "i̇" (lower); "ﬁ" -> "fi"
 * (fold). Python's final-sigma rule needs the string: see al_uc_final_sigma. */
int al_uc_upper(uint32_t cp, uint32_t out[AL_UC_MAX_CASE]);
int al_uc_lower(uint32_t cp, uint32_t out[AL_UC_MAX_CASE]);
int al_uc_title(uint32_t cp, uint32_t out[AL_UC_MAX_CASE]);
int al_uc_fold(uint32_t cp, uint32_t out[AL_UC_MAX_CASE]);

/* Character classes, as Python's str methods define them (one character):
 * alpha        categories L*                                (str.isalpha)
 * decimal      Nd                                           (str.isdecimal)
 * digit        decimal, and the No characters with a digit value (str.isdigit)
 * numeric      Nd, Nl, No (not Unihan's numeric ideographs)  (str.isnumeric)
 * space        bidi class WS, B or S, or category Zs        (str.isspace)
 * printable    not C* or Z*, or U+0020                      (str.isprintable)
 * lower/upper  the Lowercase / Uppercase properties         (str.islower ...)
 * title        Lt;  cased: lower, upper or title
 * case_ignorable  Unicode's Case_Ignorable (final sigma)
 * id_start/id_continue  approximations of XID_Start/XID_Continue (unicode.c) */
int al_uc_is_alpha(uint32_t cp);
int al_uc_is_decimal(uint32_t cp);
int al_uc_is_digit(uint32_t cp);
int al_uc_is_numeric(uint32_t cp);
int al_uc_is_space(uint32_t cp);
int al_uc_is_printable(uint32_t cp);
int al_uc_is_lower(uint32_t cp);
int al_uc_is_upper(uint32_t cp);
int al_uc_is_title(uint32_t cp);
int al_uc_is_cased(uint32_t cp);
int al_uc_is_case_ignorable(uint32_t cp);
int al_uc_is_id_start(uint32_t cp);
int al_uc_is_id_continue(uint32_t cp);

/* Whether the U+03A3 at byte i of the n bytes of UTF-8 s is in Unicode's
 * Final_Sigma context (a cased letter before it and none after, skipping
 * case-ignorable ones), where Python's str.lower writes U+03C2. */
int al_uc_final_sigma(const char *s, size_t n, size_t i);

#endif

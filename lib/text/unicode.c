/* Unicode character data on utf8proc (see unicode.h). utf8proc gives the
 * general category, bidi class, combining class, canonical and
 * compatibility decompositions, composition, the simple case mappings of
 * UnicodeData.txt and full case folding (CaseFolding.txt, C + F). From these:
 *
 * - Full uppercase: SpecialCasing.txt's unconditional multi-character
 *   uppercase mappings are exactly those of the lowercase and titlecase
 *   letters whose full case folding has several characters, and each is the
 *   simple uppercase of the folding's characters ("ß" folds to "ss" ->
 *   "SS", "ᾳ" to "αι" -> "ΑΙ", "ΐ" to "ΐ" -> "Ϊ́").
 * - Full titlecase: a titlecase letter is its own ("ǅ", "ᾈ"); for those
 *   same letters, the simple titlecase when it is a titlecase letter
 *   ("ᾳ" -> "ᾼ"), else the titlecase of the folding's first character and
 *   the rest as they are ("ß" -> "Ss", "ﬁ" -> "Fi"), where the Greek
 *   letters with ypogegrammeni keep it as U+0345 instead of the folding's
 *   iota ("ᾲ" -> "Ὰͅ"), as SpecialCasing writes them (utf8proc's own simple
 *   titlecase of "ß" is "ẞ", which neither Python nor Rust uses); every
 *   other character its simple titlecase.
 *
 * Written out here because utf8proc does not carry them (each list is
 * short and changes rarely; the lists are as of Unicode 14, the version of
 * Debian 12's Python, whose str methods Jinja templates run on):
 * - SpecialCasing's two mappings that the rules above do not give: the
 *   lowercase of U+0130 "İ" ("i̇") and the titlecase of U+0149 "ŉ" ("ʼN");
 * - PropList.txt's Other_Lowercase and Other_Uppercase (ª, ʰ, ⓐ, Ⅰ, ...),
 *   which with Ll and Lu make the Lowercase and Uppercase properties;
 * - the No characters that have a digit value (², ①, ...: str.isdigit);
 * - Word_Break's MidLetter, MidNumLet and Single_Quote characters, part of
 *   Case_Ignorable.
 * Known differences from Python that remain: isnumeric misses the CJK
 * ideographs with a numeric value in Unihan (一, 五, 萬, ...), and the
 * identifier classes use categories (L*, Nl; then Mn, Mc, Nd, Pc) in place
 * of XID_Start/XID_Continue, which differ for a handful of characters
 * (℘, ℮, ゛, ·, ...). */
#include "unicode.h"

#include <utf8proc.h>

typedef struct range { uint32_t lo, hi; } range;

static int in_ranges(uint32_t cp, const range *r, size_t n) {
    size_t a = 0, b = n;
    while (a < b) {
        size_t m = (a + b) / 2;
        if (cp < r[m].lo) b = m;
        else if (cp > r[m].hi) a = m + 1;
        else return 1;
    }
    return 0;
}
#define IN(cp, tab) in_ranges((cp), (tab), sizeof(tab) / sizeof((tab)[0]))

static const range OTHER_LOWERCASE[] = {
    {0xAA, 0xAA}, {0xBA, 0xBA}, {0x2B0, 0x2B8}, {0x2C0, 0x2C1}, {0x2E0, 0x2E4}, {0x345, 0x345},
    {0x37A, 0x37A}, {0x1D2C, 0x1D6A}, {0x1D78, 0x1D78}, {0x1D9B, 0x1DBF}, {0x2071, 0x2071},
    {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2170, 0x217F}, {0x24D0, 0x24E9}, {0x2C7C, 0x2C7D},
    {0xA69C, 0xA69D}, {0xA770, 0xA770}, {0xA7F8, 0xA7F9}, {0xAB5C, 0xAB5F}, {0x10780, 0x10780},
    {0x10783, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA},
};
static const range OTHER_UPPERCASE[] = {
    {0x2160, 0x216F}, {0x24B6, 0x24CF}, {0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
};
static const range NO_DIGITS[] = {
    {0xB2, 0xB3}, {0xB9, 0xB9}, {0x1369, 0x1371}, {0x19DA, 0x19DA}, {0x2070, 0x2070}, {0x2074, 0x2079},
    {0x2080, 0x2089}, {0x2460, 0x2468}, {0x2474, 0x247C}, {0x2488, 0x2490}, {0x24EA, 0x24EA},
    {0x24F5, 0x24FD}, {0x24FF, 0x24FF}, {0x2776, 0x277E}, {0x2780, 0x2788}, {0x278A, 0x2792},
    {0x10A40, 0x10A43}, {0x10E60, 0x10E68}, {0x11052, 0x1105A}, {0x1F100, 0x1F10A},
};
/* Word_Break = MidLetter, MidNumLet or Single_Quote */
static const range WORD_MID[] = {
    {0x27, 0x27}, {0x2E, 0x2E}, {0x3A, 0x3A}, {0xB7, 0xB7}, {0x387, 0x387}, {0x55F, 0x55F},
    {0x5F4, 0x5F4}, {0x2018, 0x2019}, {0x2024, 0x2024}, {0x2027, 0x2027}, {0xFE13, 0xFE13},
    {0xFE52, 0xFE52}, {0xFE55, 0xFE55}, {0xFF07, 0xFF07}, {0xFF0E, 0xFF0E}, {0xFF1A, 0xFF1A},
};

static const utf8proc_property_t *prop(uint32_t cp) {
    return utf8proc_get_property(cp > 0x10FFFF ? 0xFFFD : (utf8proc_int32_t)cp);
}
static int cat(uint32_t cp) { return cp > 0x10FFFF ? UTF8PROC_CATEGORY_CN : prop(cp)->category; }

/* ---------------------------------------------------------------- normalization */

int al_uc_ccc(uint32_t cp) {
    if (cp > 0x10FFFF) return 0;
    return prop(cp)->combining_class;
}

int al_uc_decompose(uint32_t cp, int compat, uint32_t out[AL_UC_MAX_DECOMP]) {
    if (cp > 0x10FFFF) return 0;
    utf8proc_int32_t buf[AL_UC_MAX_DECOMP];
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, buf, AL_UC_MAX_DECOMP,
                                                 UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0), &boundclass);
    /* n > AL_UC_MAX_DECOMP cannot happen (U+FDFA's 18 are the longest);
     * treat it as none rather than truncate */
    if (n <= 0 || n > AL_UC_MAX_DECOMP || (n == 1 && (uint32_t)buf[0] == cp)) return 0;
    for (utf8proc_ssize_t i = 0; i < n; i++) out[i] = (uint32_t)buf[i];
    return (int)n;
}

/* utf8proc exposes composition only over whole buffers: a pair is composed
 * as a two-character buffer (composition-excluded characters never come
 * out of it). */
uint32_t al_uc_compose(uint32_t a, uint32_t b) {
    if (a > 0x10FFFF || b > 0x10FFFF) return 0;
    utf8proc_int32_t buf[2] = {(utf8proc_int32_t)a, (utf8proc_int32_t)b};
    utf8proc_ssize_t n = utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE);
    return n == 1 ? (uint32_t)buf[0] : 0;
}

/* ---------------------------------------------------------------- case */

int al_uc_fold(uint32_t cp, uint32_t out[AL_UC_MAX_CASE]) {
    if (cp > 0x10FFFF) {
        out[0] = cp;
        return 1;
    }
    utf8proc_int32_t buf[AL_UC_MAX_CASE];
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, buf, AL_UC_MAX_CASE, UTF8PROC_CASEFOLD,
                                                 &boundclass);
    if (n <= 0 || n > AL_UC_MAX_CASE) {
        out[0] = cp;
        return 1;
    }
    for (utf8proc_ssize_t i = 0; i < n; i++) out[i] = (uint32_t)buf[i];
    return (int)n;
}

/* The full case folding of a lowercase or titlecase letter when it has
 * several characters (those letters are the ones with SpecialCasing
 * entries); 0 otherwise. */
static int multi_fold(uint32_t cp, uint32_t f[AL_UC_MAX_CASE]) {
    int c = cat(cp);
    if (c != UTF8PROC_CATEGORY_LL && c != UTF8PROC_CATEGORY_LT) return 0;
    int n = al_uc_fold(cp, f);
    return n > 1 ? n : 0;
}

int al_uc_upper(uint32_t cp, uint32_t out[AL_UC_MAX_CASE]) {
    int n = multi_fold(cp, out);
    for (int i = 0; i < n; i++) out[i] = (uint32_t)utf8proc_toupper((utf8proc_int32_t)out[i]);
    if (n) return n;
    out[0] = cp > 0x10FFFF ? cp : (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp);
    return 1;
}

int al_uc_lower(uint32_t cp, uint32_t out[AL_UC_MAX_CASE]) {
    if (cp == 0x130) { /* "İ": "i" and U+0307 COMBINING DOT ABOVE */
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    out[0] = cp > 0x10FFFF ? cp : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
    return 1;
}

int al_uc_title(uint32_t cp, uint32_t out[AL_UC_MAX_CASE]) {
    if (cp == 0x149) { /* "ŉ": U+02BC MODIFIER LETTER APOSTROPHE and "N" */
        out[0] = 0x2BC;
        out[1] = 'N';
        return 2;
    }
    if (cat(cp) == UTF8PROC_CATEGORY_LT) {
        out[0] = cp;
        return 1;
    }
    uint32_t t = cp > 0x10FFFF ? cp : (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp);
    int n = multi_fold(cp, out);
    if (!n || (t != cp && cat(t) == UTF8PROC_CATEGORY_LT)) {
        out[0] = t;
        return 1;
    }
    out[0] = (uint32_t)utf8proc_totitle((utf8proc_int32_t)out[0]);
    if (cp >= 0x1F80 && cp <= 0x1FFF && out[n - 1] == 0x3B9) out[n - 1] = 0x345; /* ypogegrammeni */
    return n;
}

/* ---------------------------------------------------------------- classes */

int al_uc_is_alpha(uint32_t cp) {
    int c = cat(cp);
    return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}

int al_uc_is_decimal(uint32_t cp) { return cat(cp) == UTF8PROC_CATEGORY_ND; }
int al_uc_is_digit(uint32_t cp) { return al_uc_is_decimal(cp) || IN(cp, NO_DIGITS); }

int al_uc_is_numeric(uint32_t cp) {
    int c = cat(cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

int al_uc_is_space(uint32_t cp) {
    if (cp > 0x10FFFF) return 0;
    const utf8proc_property_t *p = prop(cp);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

int al_uc_is_printable(uint32_t cp) {
    if (cp == ' ') return 1;
    int c = cat(cp);
    return !(c == UTF8PROC_CATEGORY_CN || (c >= UTF8PROC_CATEGORY_ZS && c <= UTF8PROC_CATEGORY_CO));
}

int al_uc_is_lower(uint32_t cp) { return cat(cp) == UTF8PROC_CATEGORY_LL || IN(cp, OTHER_LOWERCASE); }
int al_uc_is_upper(uint32_t cp) { return cat(cp) == UTF8PROC_CATEGORY_LU || IN(cp, OTHER_UPPERCASE); }
int al_uc_is_title(uint32_t cp) { return cat(cp) == UTF8PROC_CATEGORY_LT; }
int al_uc_is_cased(uint32_t cp) { return al_uc_is_lower(cp) || al_uc_is_upper(cp) || al_uc_is_title(cp); }

int al_uc_is_case_ignorable(uint32_t cp) {
    int c = cat(cp);
    return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
           c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK || IN(cp, WORD_MID);
}

int al_uc_is_id_start(uint32_t cp) { return al_uc_is_alpha(cp) || cat(cp) == UTF8PROC_CATEGORY_NL; }

int al_uc_is_id_continue(uint32_t cp) {
    int c = cat(cp);
    return al_uc_is_id_start(cp) || c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_MC ||
           c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_PC;
}

/* ---------------------------------------------------------------- final sigma */

/* The character at s[i] (n bytes left), U+FFFD for a bad byte. */
static uint32_t char_at(const char *s, size_t n, size_t *len) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
    *len = k > 0 ? (size_t)k : 1;
    return k > 0 ? (uint32_t)cp : 0xFFFD;
}

int al_uc_final_sigma(const char *s, size_t n, size_t i) {
    /* \p{cased} \p{case-ignorable}* U+03A3 !(\p{case-ignorable}* \p{cased}) */
    size_t j = i, k;
    int before = 0;
    while (j > 0) {
        size_t st = j - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        uint32_t cp = char_at(s + st, j - st, &k);
        j = st;
        if (al_uc_is_case_ignorable(cp)) continue;
        before = al_uc_is_cased(cp);
        break;
    }
    if (!before) return 0;
    char_at(s + i, n - i, &k);
    for (j = i + k; j < n; j += k) {
        uint32_t cp = char_at(s + j, n - j, &k);
        if (!al_uc_is_case_ignorable(cp)) return !al_uc_is_cased(cp);
    }
    return 1;
}

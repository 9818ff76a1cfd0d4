/* Unicode canonical normalization for the tokenizer's NFC/NFD normalizers,
 * on utf8proc (Debian's libutf8proc: Unicode 15) instead of tables of our
 * own: the combining class and full canonical decomposition of a character
 * (Hangul included), and the primary composite of a pair, which utf8proc
 * exposes only through whole-buffer composition — so a pair is composed as a
 * two-character buffer (composition-excluded characters never come out). */
#include "tokenizer.h"

#include <utf8proc.h>

int al_uc_ccc(uint32_t cp) {
    if (cp > 0x10FFFF) return 0;
    return utf8proc_get_property((utf8proc_int32_t)cp)->combining_class;
}

int al_uc_decompose(uint32_t cp, uint32_t out[AL_UC_MAX_DECOMP]) {
    if (cp > 0x10FFFF) return 0;
    utf8proc_int32_t buf[AL_UC_MAX_DECOMP];
    int boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, buf, AL_UC_MAX_DECOMP,
                                                 UTF8PROC_DECOMPOSE, &boundclass);
    /* n > AL_UC_MAX_DECOMP cannot happen for canonical decompositions
     * (the longest has 4 characters); treat it as none rather than truncate */
    if (n <= 0 || n > AL_UC_MAX_DECOMP || (n == 1 && (uint32_t)buf[0] == cp)) return 0;
    for (utf8proc_ssize_t i = 0; i < n; i++) out[i] = (uint32_t)buf[i];
    return (int)n;
}

uint32_t al_uc_compose(uint32_t a, uint32_t b) {
    if (a > 0x10FFFF || b > 0x10FFFF) return 0;
    utf8proc_int32_t buf[2] = {(utf8proc_int32_t)a, (utf8proc_int32_t)b};
    utf8proc_ssize_t n = utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE);
    return n == 1 ? (uint32_t)buf[0] : 0;
}

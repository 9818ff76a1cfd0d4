/* Graders and the format reward (see grader.h).
 *
 * Number reading and the extractors other than "regex" are written here
 * rather than as PCRE2 patterns: the rules (strict thousands groups, no
 * digits glued to a letter before them, LaTeX fractions, the percent rule,
 * unit tails) are clearer as code and each is tested on its own case
 * (tests/test_grader.c). User patterns go to PCRE2; case folding and
 * normalisation to utf8proc. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "grader.h"

#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

struct al_grader {
    al_grader_cfg cfg;
    pcre2_code *re;
};

struct al_format_rule {
    pcre2_code *re;
    uint32_t opts;
};

/* ---- configuration --------------------------------------------------------- */

static const char *const extract_names[] = {"none", "last_number", "hash", "boxed", "regex"};
static const char *const compare_names[] = {"exact", "casefold", "numeric", "auto"};

void al_grader_cfg_default(al_grader_cfg *c) {
    memset(c, 0, sizeof *c);
    c->extract = AL_EXTRACT_NONE;
    c->compare = AL_COMPARE_EXACT;
    c->group = 1;
    c->tolerance = 1e-6;
}

static const struct {
    const char *name;
    al_extract extract;
    al_compare compare;
} presets[] = {
    {"exact", AL_EXTRACT_NONE, AL_COMPARE_EXACT},          {"casefold", AL_EXTRACT_NONE, AL_COMPARE_CASEFOLD},
    {"numeric", AL_EXTRACT_NONE, AL_COMPARE_NUMERIC},      {"last_number", AL_EXTRACT_LAST_NUMBER, AL_COMPARE_NUMERIC},
    {"hash", AL_EXTRACT_HASH, AL_COMPARE_NUMERIC},         {"gsm8k", AL_EXTRACT_HASH, AL_COMPARE_NUMERIC},
    {"boxed", AL_EXTRACT_BOXED, AL_COMPARE_AUTO},          {"math", AL_EXTRACT_BOXED, AL_COMPARE_AUTO},
};
#define N_PRESETS (int)(sizeof presets / sizeof presets[0])

static int apply_preset(al_grader_cfg *c, const json_t *v, const char *path, al_error *err) {
    const char *s = json_string_value(v);
    for (int i = 0; s && i < N_PRESETS; i++)
        if (!strcmp(s, presets[i].name)) {
            c->extract = presets[i].extract;
            c->compare = presets[i].compare;
            c->regex[0] = 0;
            return AL_OK;
        }
    return AL_FAIL(err, AL_EINVAL, "%s", "must be a grader object or one of exact, casefold, numeric, "
                   "last_number, hash, gsm8k, boxed, math", path);
}

static int parse_extract(al_grader_cfg *c, const json_t *v, const char *path, al_error *err) {
    if (json_is_string(v)) {
        for (int i = 0; i < AL_EXTRACT_REGEX; i++)
            if (!strcmp(json_string_value(v), extract_names[i])) {
                c->extract = (al_extract)i;
                c->regex[0] = 0;
                return AL_OK;
            }
        return AL_FAIL(err, AL_EINVAL, "%s", "must be \"none\", \"last_number\", \"hash\", \"boxed\" or "
                       "{\"regex\": ...}", path);
    }
    if (!json_is_object(v))
        return AL_FAIL(err, AL_EINVAL, "%s", "must be \"none\", \"last_number\", \"hash\", \"boxed\" or "
                       "{\"regex\": ...}", path);
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        if (strcmp(k, "regex") && strcmp(k, "group") && strcmp(k, "occurrence"))
            return AL_FAIL(err, AL_EINVAL, "%s.%s", "unknown field", path, k);
    }
    const json_t *re = json_object_get(v, "regex"), *gr = json_object_get(v, "group"),
                 *oc = json_object_get(v, "occurrence");
    if (!json_is_string(re) || json_string_length(re) == 0)
        return AL_FAIL(err, AL_EINVAL, "%s.regex", "must be a non-empty string", path);
    if (json_string_length(re) >= AL_GRADER_RE_MAX || strlen(json_string_value(re)) != json_string_length(re))
        return AL_FAIL(err, AL_EINVAL, "%s.regex", "must be under %d bytes, without NUL", path, AL_GRADER_RE_MAX);
    int group = 1, first = 0;
    if (gr && (!json_is_integer(gr) || json_integer_value(gr) < 0 || json_integer_value(gr) > 99))
        return AL_FAIL(err, AL_EINVAL, "%s.group", "must be an integer in [0, 99]", path);
    if (gr) group = (int)json_integer_value(gr);
    if (oc) {
        const char *o = json_string_value(oc);
        if (!o || (strcmp(o, "last") && strcmp(o, "first")))
            return AL_FAIL(err, AL_EINVAL, "%s.occurrence", "must be \"last\" or \"first\"", path);
        first = !strcmp(o, "first");
    }
    c->extract = AL_EXTRACT_REGEX;
    memcpy(c->regex, json_string_value(re), json_string_length(re) + 1);
    c->group = group;
    c->first = first;
    return AL_OK;
}

int al_grader_cfg_parse(al_grader_cfg *out, const json_t *v, const char *path, al_error *err) {
    al_grader_cfg c = *out;
    char p[160];
    int rc;
    if (json_is_string(v)) {
        if ((rc = apply_preset(&c, v, path, err))) return rc;
        *out = c;
        return AL_OK;
    }
    if (!json_is_object(v))
        return AL_FAIL(err, AL_EINVAL, "%s", "must be a grader object or a preset name (exact, casefold, numeric, "
                       "last_number, hash, boxed)", path);
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        if (strcmp(k, "preset") && strcmp(k, "extract") && strcmp(k, "compare") && strcmp(k, "tolerance") &&
            strcmp(k, "after"))
            return AL_FAIL(err, AL_EINVAL, "%s.%s", "unknown field", path, k);
    }
    if ((x = json_object_get(v, "preset"))) {
        snprintf(p, sizeof p, "%s.preset", path);
        if ((rc = apply_preset(&c, x, p, err))) return rc;
    }
    if ((x = json_object_get(v, "extract"))) {
        snprintf(p, sizeof p, "%s.extract", path);
        if ((rc = parse_extract(&c, x, p, err))) return rc;
    }
    if ((x = json_object_get(v, "compare"))) {
        int found = -1;
        for (int i = 0; i < 4 && json_is_string(x); i++)
            if (!strcmp(json_string_value(x), compare_names[i])) found = i;
        if (found < 0)
            return AL_FAIL(err, AL_EINVAL, "%s.compare",
                           "must be \"exact\", \"casefold\", \"numeric\" or \"auto\"", path);
        c.compare = (al_compare)found;
    }
    if ((x = json_object_get(v, "tolerance"))) {
        if (!json_is_number(x) || !isfinite(json_number_value(x)) || json_number_value(x) < 0 ||
            json_number_value(x) > 1e6)
            return AL_FAIL(err, AL_EINVAL, "%s.tolerance", "must be a number in [0, 1e6]", path);
        c.tolerance = json_number_value(x);
    }
    if ((x = json_object_get(v, "after"))) {
        if (json_is_null(x)) {
            c.after[0] = 0;
        } else if (!json_is_string(x) || json_string_length(x) == 0 ||
                   json_string_length(x) >= AL_GRADER_AFTER_MAX ||
                   strlen(json_string_value(x)) != json_string_length(x)) {
            return AL_FAIL(err, AL_EINVAL, "%s.after", "must be a non-empty string under %d bytes (or null)", path,
                           AL_GRADER_AFTER_MAX);
        } else {
            memcpy(c.after, json_string_value(x), json_string_length(x) + 1);
        }
    }
    *out = c;
    return AL_OK;
}

json_t *al_grader_cfg_json(const al_grader_cfg *c) {
    json_t *ex = c->extract == AL_EXTRACT_REGEX
                     ? json_pack("{s:s, s:i, s:s}", "regex", c->regex, "group", c->group, "occurrence",
                                 c->first ? "first" : "last")
                     : json_string(extract_names[c->extract]);
    return json_pack("{s:o, s:s, s:f, s:o}", "extract", ex, "compare", compare_names[c->compare], "tolerance",
                     c->tolerance, "after", c->after[0] ? json_string(c->after) : json_null());
}

/* ---- compiled patterns ---------------------------------------------------------- */

static pcre2_code *compile(const char *re, uint32_t opts, const char *path, al_error *err) {
    int ec;
    PCRE2_SIZE off;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
                                     opts | PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &off, NULL);
    if (!code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        AL_FAIL(err, AL_EINVAL, "%s", "not a valid pattern at offset %zu: %s", path, (size_t)off, (const char *)msg);
    }
    return code;
}

int al_grader_new(al_grader **out, const al_grader_cfg *c, const char *path, al_error *err) {
    al_grader *g = calloc(1, sizeof *g);
    if (!g) return al_failf(err, AL_ENOMEM, "out of memory");
    g->cfg = *c;
    if (c->extract == AL_EXTRACT_REGEX) {
        char p[200];
        snprintf(p, sizeof p, "%s.extract.regex", path);
        if (!(g->re = compile(c->regex, 0, p, err))) {
            free(g);
            return AL_EINVAL;
        }
        uint32_t groups = 0;
        pcre2_pattern_info(g->re, PCRE2_INFO_CAPTURECOUNT, &groups);
        if ((uint32_t)c->group > groups) {
            AL_FAIL(err, AL_EINVAL, "%s", "has no capture group %d (it has %u; e.g. \"answer: (\\\\S+)\" captures "
                    "what follows)", p, c->group, groups);
            al_grader_free(g);
            return AL_EINVAL;
        }
    }
    *out = g;
    return AL_OK;
}

void al_grader_free(al_grader *g) {
    if (!g) return;
    pcre2_code_free(g->re);
    free(g);
}

const al_grader_cfg *al_grader_config(const al_grader *g) { return &g->cfg; }

int al_grader_set_get(al_grader_set *s, const al_grader_cfg *c, const char *path, const al_grader **out,
                      al_error *err) {
    /* the last few distinct ones: equal rows come together */
    for (int k = s->n - 1; k >= 0 && k >= s->n - 16; k--)
        if (!memcmp(&s->g[k]->cfg, c, sizeof *c)) {
            *out = s->g[k];
            return AL_OK;
        }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 4;
        al_grader **ng = realloc(s->g, (size_t)cap * sizeof *ng);
        if (!ng) return al_failf(err, AL_ENOMEM, "out of memory");
        s->g = ng;
        s->cap = cap;
    }
    al_grader *g = NULL;
    int rc = al_grader_new(&g, c, path, err);
    if (rc) return rc;
    s->g[s->n++] = g;
    *out = g;
    return AL_OK;
}

void al_grader_set_free(al_grader_set *s) {
    for (int k = 0; k < s->n; k++) al_grader_free(s->g[k]);
    free(s->g);
    memset(s, 0, sizeof *s);
}

/* ---- text helpers ------------------------------------------------------------------ */

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static char *dup_trim(const char *s, size_t n) {
    while (n && is_space((unsigned char)*s)) s++, n--;
    while (n && is_space((unsigned char)s[n - 1])) n--;
    char *o = malloc(n + 1);
    if (!o) return NULL;
    memcpy(o, s, n);
    o[n] = 0;
    return o;
}

/* The code point that ends just before byte i of s (-1 at the start; a
 * broken sequence reads as 0xFFFD, a letter for our purposes). */
static int32_t cp_before(const char *s, size_t i) {
    if (i == 0) return -1;
    size_t j = i - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80 && i - j < 4) j--;
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + j, (utf8proc_ssize_t)(i - j), &cp);
    if (k != (utf8proc_ssize_t)(i - j)) return (unsigned char)s[i - 1] < 0x80 ? (unsigned char)s[i - 1] : 0xFFFD;
    return cp;
}

/* Letters, digits, underscore: what a number may not be glued to on its left. */
static int is_wordish(int32_t cp) {
    if (cp < 0) return 0;
    if (cp < 0x80) return isalnum(cp) || cp == '_';
    if (cp == 0xFFFD) return 1;
    utf8proc_category_t k = utf8proc_category(cp);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO || k == UTF8PROC_CATEGORY_ND ||
           k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A plain number starting at s[i] (digits, strict thousands groups, a
 * decimal part, an exponent): its end, or i when there is none. */
static size_t plain_end(const char *s, size_t i) {
    size_t j = i, lead = 0;
    while (is_digit(s[j])) j++, lead++;
    if (lead && lead <= 3)
        while (s[j] == ',' && is_digit(s[j + 1]) && is_digit(s[j + 2]) && is_digit(s[j + 3]) && !is_digit(s[j + 4]))
            j += 4;
    if (s[j] == '.' && is_digit(s[j + 1])) {
        j++;
        while (is_digit(s[j])) j++;
    } else if (!lead) {
        return i;
    }
    if ((s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (s[k] == '+' || s[k] == '-') k++;
        if (is_digit(s[k]) && !isalpha((unsigned char)s[k + 1])) {
            while (is_digit(s[k])) k++;
            if (!isalpha((unsigned char)s[k])) j = k;
        }
    }
    return j;
}

/* The length of a minus sign at s: '-', '+' or U+2212; 0 when none. */
static size_t sign_len(const char *s) {
    if (*s == '-' || *s == '+') return 1;
    if ((unsigned char)s[0] == 0xE2 && (unsigned char)s[1] == 0x88 && (unsigned char)s[2] == 0x92) return 3;
    return 0;
}

/* A LaTeX fraction \frac{a}{b} (\dfrac, \tfrac; also \frac12) at s[i]: its end, or i. */
static size_t frac_end(const char *s, size_t i) {
    size_t j = i;
    if (s[j] != '\\') return i;
    j++;
    if (s[j] == 'd' || s[j] == 't') j++;
    if (strncmp(s + j, "frac", 4)) return i;
    j += 4;
    while (s[j] == ' ') j++;
    if (is_digit(s[j]) && is_digit(s[j + 1])) return j + 2;
    for (int part = 0; part < 2; part++) {
        while (s[j] == ' ') j++;
        if (s[j] != '{') return i;
        j++;
        while (s[j] == ' ') j++;
        j += sign_len(s + j);
        size_t e = plain_end(s, j);
        if (e == j) return i;
        j = e;
        while (s[j] == ' ') j++;
        if (s[j] != '}') return i;
        j++;
    }
    return j;
}

/* Finds the number tokens of s; returns the last one's span. */
static int last_number(const char *s, size_t *a, size_t *b) {
    size_t n = strlen(s), i = 0;
    int found = 0;
    while (i < n) {
        size_t e = frac_end(s, i);
        if (e > i) {
            size_t st = i;
            if (st >= 1 && sign_len(s + st - 1) == 1 && !is_wordish(cp_before(s, st - 1))) st--;
            *a = st;
            *b = e;
            found = 1;
            i = e;
            continue;
        }
        if (!(is_digit(s[i]) || (s[i] == '.' && is_digit(s[i + 1])))) {
            i++;
            continue;
        }
        int32_t before = cp_before(s, i);
        if (is_wordish(before) || (before == '.' && i >= 2 && is_digit(s[i - 2]))) {
            /* glued to a word (x2, H2O): skip the whole run */
            while (i < n && (is_digit(s[i]) || s[i] == '.' || s[i] == ',')) i++;
            continue;
        }
        size_t st = i;
        /* a sign counts when nothing word-like precedes it ("3-5" is 3 and 5) */
        if (st >= 1 && (s[st - 1] == '-' || s[st - 1] == '+') && !is_wordish(cp_before(s, st - 1))) st--;
        else if (st >= 3 && sign_len(s + st - 3) == 3 && !is_wordish(cp_before(s, st - 3))) st -= 3;
        size_t j = plain_end(s, i);
        if (j == i) {
            i++;
            continue;
        }
        if (s[j] == '/' && (is_digit(s[j + 1]) || s[j + 1] == '.')) {
            size_t k = plain_end(s, j + 1);
            if (k > j + 1) j = k;
        }
        if (s[j] == '%') j++;
        else if (s[j] == ' ' && s[j + 1] == '%') j += 2;
        else if (s[j] == '\\' && s[j + 1] == '%') j += 2;
        *a = st;
        *b = j;
        found = 1;
        i = j;
    }
    return found;
}

/* The last \boxed{...} (or \fbox{...}, "\boxed 5") of s that is well formed. */
static int boxed(const char *s, size_t *a, size_t *b) {
    static const char *const cmds[] = {"\\boxed", "\\fbox"};
    size_t n = strlen(s);
    for (size_t i = n; i-- > 0;) {
        if (s[i] != '\\') continue;
        size_t cl = 0;
        for (int c = 0; c < 2 && !cl; c++)
            if (!strncmp(s + i, cmds[c], strlen(cmds[c])) && !isalpha((unsigned char)s[i + strlen(cmds[c])]))
                cl = strlen(cmds[c]);
        if (!cl) continue;
        size_t j = i + cl, sp = j;
        while (s[j] == ' ') j++;
        if (s[j] == '{') {
            int depth = 0;
            size_t k = j;
            for (; k < n; k++) {
                if (s[k] == '\\' && (s[k + 1] == '{' || s[k + 1] == '}')) {
                    k++;
                    continue;
                }
                if (s[k] == '{') depth++;
                else if (s[k] == '}' && --depth == 0) break;
            }
            if (k < n) {
                *a = j + 1;
                *b = k;
                return 1;
            }
        } else if (j > sp && s[j] && s[j] != '$') {
            size_t k = j;
            while (s[k] && !is_space((unsigned char)s[k]) && s[k] != '$') k++;
            *a = j;
            *b = k;
            return 1;
        }
    }
    return 0;
}

/* The rest of the line after the last "####". */
static int hash_answer(const char *s, size_t *a, size_t *b) {
    const char *p = NULL, *q = s;
    while ((q = strstr(q, "####"))) p = q++;
    if (!p) return 0;
    p += 4;
    while (*p == '#') p++;
    const char *e = p;
    while (*e && *e != '\n') e++;
    *a = (size_t)(p - s);
    *b = (size_t)(e - s);
    return 1;
}

static int regex_answer(const pcre2_code *re, int group, int first, const char *s, size_t *a, size_t *b) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return AL_ENOMEM;
    size_t n = strlen(s), off = 0;
    int found = 0, rc = AL_OK;
    while (off <= n) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, n, off, 0, md, NULL);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) {
            rc = m == PCRE2_ERROR_MATCHLIMIT || m == PCRE2_ERROR_DEPTHLIMIT || m == PCRE2_ERROR_HEAPLIMIT
                     ? AL_ERANGE : AL_EINVAL;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (m > group && ov[2 * group] != PCRE2_UNSET) {
            *a = ov[2 * group];
            *b = ov[2 * group + 1];
            found = 1;
            if (first) break;
        }
        size_t next = ov[1];
        if (next == ov[0]) {
            next++;
            while (next < n && ((unsigned char)s[next] & 0xC0) == 0x80) next++;
        }
        off = next;
    }
    pcre2_match_data_free(md);
    return rc ? rc : found;
}

/* The span of the answer in s under extractor g; 1 found, 0 not, < 0 error. */
static int extract_span(const al_grader *g, const char *s, size_t *a, size_t *b) {
    switch (g->cfg.extract) {
    case AL_EXTRACT_NONE: *a = 0; *b = strlen(s); return 1;
    case AL_EXTRACT_LAST_NUMBER: return last_number(s, a, b);
    case AL_EXTRACT_HASH: return hash_answer(s, a, b);
    case AL_EXTRACT_BOXED: return boxed(s, a, b);
    case AL_EXTRACT_REGEX: return regex_answer(g->re, g->cfg.group, g->cfg.first, s, a, b);
    }
    return 0;
}

int al_grader_extract(const al_grader *g, const char *text, char **out) {
    size_t a = 0, b = 0;
    int rc = extract_span(g, text, &a, &b);
    if (rc <= 0) return rc;
    char *o = dup_trim(text + a, b - a);
    if (!o) return AL_ENOMEM;
    if (!*o && g->cfg.extract != AL_EXTRACT_NONE) {
        free(o);
        return 0;
    }
    *out = o;
    return 1;
}

/* ---- numbers --------------------------------------------------------------------------- */

/* Removes every occurrence of pat from s (in place). */
static void drop(char *s, const char *pat) {
    size_t l = strlen(pat);
    char *p;
    while ((p = strstr(s, pat))) memmove(p, p + l, strlen(p + l) + 1);
}

static void replace(char *s, const char *pat, char with) {
    size_t l = strlen(pat);
    char *p;
    while ((p = strstr(s, pat))) {
        *p = with;
        memmove(p + 1, p + l, strlen(p + l) + 1);
    }
}

/* \text{X} -> X (and \textbf, \mathrm, \mbox, ...). */
static void unwrap(char *s, const char *cmd) {
    size_t l = strlen(cmd);
    char *p;
    while ((p = strstr(s, cmd))) {
        char *q = p + l;
        if (*q != '{') {
            memmove(p, q, strlen(q) + 1);
            continue;
        }
        int depth = 0;
        char *e = q;
        for (; *e; e++) {
            if (*e == '{') depth++;
            else if (*e == '}' && --depth == 0) break;
        }
        if (*e) memmove(e, e + 1, strlen(e + 1) + 1);
        memmove(p, q + 1, strlen(q + 1) + 1);
    }
}

/* Copies s with the LaTeX and typography the numeric reading ignores taken out. */
static char *normalise_number_text(const char *s) {
    char *t = dup_trim(s, strlen(s));
    if (!t) return NULL;
    static const char *const drops[] = {"\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "^{\\circ}",
                                        "^\\circ", "\\circ", "\xc2\xb0", "\\displaystyle", "\\(", "\\)", "\\[",
                                        "\\]", "$", "\xc2\xa0", "\xe2\x80\xaf", "\xe2\x80\x89"};
    static const char *const wraps[] = {"\\textbf", "\\textrm", "\\text", "\\mathrm", "\\mathbf", "\\mbox"};
    replace(t, "{,}", ',');
    replace(t, "\\%", '%');
    replace(t, "\\$", '$');
    for (size_t i = 0; i < sizeof wraps / sizeof wraps[0]; i++) unwrap(t, wraps[i]);
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++) drop(t, drops[i]);
    size_t n = strlen(t);
    for (;;) {
        while (n && is_space((unsigned char)t[n - 1])) n--;
        if (n && (t[n - 1] == '.' || t[n - 1] == ',' || t[n - 1] == ';' || t[n - 1] == '!')) {
            n--;
            continue;
        }
        break;
    }
    t[n] = 0;
    size_t i = 0;
    while (is_space((unsigned char)t[i])) i++;
    memmove(t, t + i, strlen(t + i) + 1);
    return t;
}

/* Reads a plain number at s (no sign) into v; returns its end or s. */
static const char *read_plain(const char *s, double *v) {
    size_t e = plain_end(s, 0);
    if (e == 0) return s;
    char buf[128];
    size_t k = 0;
    for (size_t i = 0; i < e && k + 1 < sizeof buf; i++)
        if (s[i] != ',') buf[k++] = s[i];
    buf[k] = 0;
    char *end;
    *v = strtod(buf, &end);
    if (*end || !isfinite(*v)) return s;
    return s + e;
}

static const char *read_signed(const char *s, double *v) {
    size_t sl = sign_len(s);
    int neg = sl && *s != '+';
    const char *p = s + sl;
    while (*p == ' ') p++;
    const char *e = read_plain(p, v);
    if (e == p) return s;
    if (neg) *v = -*v;
    return e;
}

int al_grade_parse_number(const char *text, double *out, int *pct_out) {
    char *t = normalise_number_text(text);
    if (!t) return 0;
    const char *s = t;
    int ok = 0;
    /* "x = 5": the right-hand side */
    if (isalpha((unsigned char)*s)) {
        const char *q = s;
        while (isalnum((unsigned char)*q) || *q == '_') q++;
        while (*q == ' ') q++;
        if (*q == '=') {
            s = q + 1;
            while (is_space((unsigned char)*s)) s++;
        }
    }
    size_t sl = sign_len(s);
    int neg = sl && *s != '+';
    s += sl;
    while (*s == ' ') s++;
    static const char *const cur[] = {"\xe2\x82\xac", "\xc2\xa3", "\xc2\xa5"};
    for (int i = 0; i < 3; i++)
        if (!strncmp(s, cur[i], strlen(cur[i]))) {
            s += strlen(cur[i]);
            while (*s == ' ') s++;
            break;
        }
    if (!sl && (sl = sign_len(s))) {
        neg = *s != '+';
        s += sl;
    }
    double v = 0, d = 0;
    size_t fe = frac_end(s, 0);
    if (fe > 0) {
        const char *p = s;
        while (*p != 'f') p++;
        p += 4;
        while (*p == ' ') p++;
        if (is_digit(p[0]) && is_digit(p[1])) {
            v = p[0] - '0';
            d = p[1] - '0';
        } else {
            p = read_signed(p + 1 + strspn(p + 1, " "), &v);
            p = strchr(p, '{');
            if (p) read_signed(p + 1 + strspn(p + 1, " "), &d);
        }
        if (d == 0) goto out;
        v /= d;
        s += fe;
    } else {
        const char *e = read_plain(s, &v);
        if (e == s) goto out;
        s = e;
        if (*s == '/') {
            const char *e2 = read_plain(s + 1, &d);
            if (e2 == s + 1 || d == 0) goto out;
            v /= d;
            s = e2;
        }
    }
    while (*s == ' ') s++;
    int pct = 0;
    if (*s == '%') {
        pct = 1;
        s++;
    } else if (!strncasecmp(s, "percent", 7) && !isalpha((unsigned char)s[7])) {
        pct = 1;
        s += 7;
    }
    /* the rest may only be a unit: letters, spaces, / ^ . { } and exponents */
    int in_exp = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '^') in_exp = 1;
        else if (c == '{' && in_exp) continue;
        else if (is_digit((char)c)) {
            if (!in_exp) goto out;
        } else if (isalpha(c) || c >= 0x80 || c == ' ' || c == '/' || c == '.' || c == '}') {
            in_exp = 0;
        } else {
            goto out;
        }
    }
    *out = neg ? -v : v;
    if (pct_out) *pct_out = pct;
    ok = 1;
out:
    free(t);
    return ok;
}

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(1.0, fabs(b)); }

int al_grade_numeric_equal(const char *a, const char *b, double tol) {
    double va, vb;
    int pa, pb;
    if (!al_grade_parse_number(a, &va, &pa) || !al_grade_parse_number(b, &vb, &pb)) return 0;
    if (pa == pb) return close_to(va, vb, tol);
    if (pa) return close_to(va, vb, tol) || close_to(va / 100, vb, tol);
    return close_to(va, vb, tol) || close_to(va, vb / 100, tol);
}

char *al_grade_casefold(const char *s) {
    utf8proc_uint8_t *f = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, 0, &f,
                                      UTF8PROC_NULLTERM | UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD);
    char *src;
    if (n < 0) {
        free(f);
        if (n == UTF8PROC_ERROR_NOMEM || !(src = strdup(s))) return NULL;
        for (char *p = src; *p; p++) *p = (char)tolower((unsigned char)*p);
    } else {
        src = (char *)f;
    }
    /* collapse whitespace runs, trim */
    char *o = src, *p = src;
    int sp = 0;
    while (*p && is_space((unsigned char)*p)) p++;
    for (; *p; p++) {
        if (is_space((unsigned char)*p)) {
            sp = 1;
            continue;
        }
        if (sp) *o++ = ' ';
        sp = 0;
        *o++ = *p;
    }
    *o = 0;
    return src;
}

/* ---- grading ------------------------------------------------------------------------------- */

static int equal(const al_grader *g, const char *pred, const char *gold, int *eq) {
    double v;
    int pct;
    al_compare c = g->cfg.compare;
    if (c == AL_COMPARE_AUTO)
        c = al_grade_parse_number(pred, &v, &pct) && al_grade_parse_number(gold, &v, &pct) ? AL_COMPARE_NUMERIC
                                                                                            : AL_COMPARE_CASEFOLD;
    if (c == AL_COMPARE_NUMERIC) {
        *eq = al_grade_numeric_equal(pred, gold, g->cfg.tolerance);
        return AL_OK;
    }
    /* text: case-folded, or exact after trimming */
    const int fold = c == AL_COMPARE_CASEFOLD;
    char *a = fold ? al_grade_casefold(pred) : dup_trim(pred, strlen(pred));
    char *b = fold ? al_grade_casefold(gold) : dup_trim(gold, strlen(gold));
    int rc = AL_ENOMEM;
    if (a && b) {
        *eq = !strcmp(a, b);
        rc = AL_OK;
    }
    free(a);
    free(b);
    return rc;
}

/* The reference answer as the grader compares it: extracted when it holds
 * what the extractor looks for, else whole (malloc'd; NULL without memory). */
static char *gold_of(const al_grader *g, const char *answer) {
    char *x = NULL;
    int rc = g->cfg.extract == AL_EXTRACT_NONE ? 0 : al_grader_extract(g, answer, &x);
    if (rc == 1) return x;
    return dup_trim(answer, strlen(answer));
}

int al_grader_grade(const al_grader *g, const char *completion, const char *const *answers, int n, double *score,
                    int *extracted) {
    *score = 0;
    if (extracted) *extracted = 0;
    const char *text = completion;
    if (g->cfg.after[0]) {
        const char *p = NULL, *q = completion;
        while ((q = strstr(q, g->cfg.after))) p = q++;
        if (!p) return AL_OK;
        text = p + strlen(g->cfg.after);
    }
    char *pred = NULL;
    int rc = al_grader_extract(g, text, &pred);
    if (rc < 0) return rc;
    if (rc == 0) return AL_OK;
    if (extracted) *extracted = 1;
    rc = AL_OK;
    for (int i = 0; i < n && !rc && *score == 0; i++) {
        if (!answers[i]) continue;
        char *gold = gold_of(g, answers[i]);
        int eq = 0;
        if (!gold) rc = AL_ENOMEM;
        else rc = equal(g, pred, gold, &eq);
        if (eq) *score = 1;
        free(gold);
    }
    free(pred);
    return rc;
}

int al_grader_answer_invalid(const al_grader *g, const char *answer, char *why, size_t whyn) {
    if (g->cfg.compare != AL_COMPARE_NUMERIC) return 0;
    char *gold = gold_of(g, answer);
    double v;
    int pct, bad = gold && !al_grade_parse_number(gold, &v, &pct);
    if (bad) snprintf(why, whyn, "the answer '%.60s' is not a number (the grader compares numbers)", gold);
    free(gold);
    return bad;
}

/* ---- the format reward ---------------------------------------------------------------------- */

int al_format_new(al_format_rule **out, const char *regex, al_format_mode mode, const char *path,
                  al_error *err) {
    al_format_rule *f = calloc(1, sizeof *f);
    if (!f) return al_failf(err, AL_ENOMEM, "out of memory");
    if (!(f->re = compile(regex, PCRE2_DOTALL | PCRE2_MULTILINE, path, err))) {
        free(f);
        return AL_EINVAL;
    }
    f->opts = mode == AL_FORMAT_START ? PCRE2_ANCHORED
            : mode == AL_FORMAT_FULL ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0;
    *out = f;
    return AL_OK;
}

void al_format_free(al_format_rule *f) {
    if (!f) return;
    pcre2_code_free(f->re);
    free(f);
}

int al_format_match(const al_format_rule *f, const char *text) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(f->re, NULL);
    if (!md) return AL_ENOMEM;
    int m = pcre2_match(f->re, (PCRE2_SPTR)text, strlen(text), 0, f->opts, md, NULL);
    pcre2_match_data_free(md);
    if (m >= 0) return 1;
    if (m == PCRE2_ERROR_NOMATCH) return 0;
    return m == PCRE2_ERROR_MATCHLIMIT || m == PCRE2_ERROR_DEPTHLIMIT || m == PCRE2_ERROR_HEAPLIMIT ? AL_ERANGE
                                                                                                      : AL_EINVAL;
}

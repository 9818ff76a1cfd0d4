/* Tests for lib/text/unicode.c: full case mappings and character classes
 * derived from utf8proc, against values worked out by hand from
 * SpecialCasing.txt, CaseFolding.txt and PropList.txt (each rule the file
 * derives and each entry it lists), then against Debian's Python (its str
 * methods, Unicode 14) over every character of the blocks where case and
 * the classes are interesting: Latin, Greek, Cyrillic, Armenian, Georgian,
 * Cherokee, phonetic and modifier letters, Greek Extended, letterlike and
 * number forms, enclosed alphanumerics, Glagolitic, Coptic, ligatures,
 * fullwidth forms, Deseret, Adlam. Python 3 is installed by scripts/deps.sh
 * (python3-jinja2 pulls it in); without it this test fails. */
#include <stdint.h>
#include <stdio.h>

#include "t.h"
#include "text/unicode.h"

/* The UTF-8 of n characters. */
static void utf8(const uint32_t *cp, int n, char *out) {
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c < 0x80) out[o++] = (char)c;
        else if (c < 0x800) {
            out[o++] = (char)(0xC0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | (c >> 12));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (c >> 18));
            out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = 0;
}

static void mapped(int (*map)(uint32_t, uint32_t *), uint32_t cp, char out[16]) {
    uint32_t m[AL_UC_MAX_CASE];
    utf8(m, map(cp, m), out);
}

static void test_case_mappings(void) {
    static const struct { uint32_t cp; const char *upper, *lower, *title, *fold; } C[] = {
        {'a', "A", "a", "A", "a"},
        {0xDF, "SS", "\xC3\x9F", "Ss", "ss"},                                   /* ß */
        {0x1E9E, "\xE1\xBA\x9E", "\xC3\x9F", "\xE1\xBA\x9E", "ss"},             /* ẞ */
        {0x130, "\xC4\xB0", "i\xCC\x87", "\xC4\xB0", "i\xCC\x87"},              /* İ */
        {0x149, "\xCA\xBCN", "\xC5\x89", "\xCA\xBCN", "\xCA\xBCn"},             /* ŉ */
        {0x1F0, "J\xCC\x8C", "\xC7\xB0", "J\xCC\x8C", "j\xCC\x8C"},             /* ǰ */
        {0x1C5, "\xC7\x84", "\xC7\x86", "\xC7\x85", "\xC7\x86"},                /* ǅ */
        {0x1C6, "\xC7\x84", "\xC7\x86", "\xC7\x85", "\xC7\x86"},                /* ǆ */
        {0xFB03, "FFI", "\xEF\xAC\x83", "Ffi", "ffi"},                          /* ﬃ */
        {0x390, "\xCE\x99\xCC\x88\xCC\x81", "\xCE\x90", "\xCE\x99\xCC\x88\xCC\x81",
         "\xCE\xB9\xCC\x88\xCC\x81"},                                           /* ΐ */
        {0x1FB3, "\xCE\x91\xCE\x99", "\xE1\xBE\xB3", "\xE1\xBE\xBC", "\xCE\xB1\xCE\xB9"}, /* ᾳ */
        {0x1FB2, "\xE1\xBE\xBA\xCE\x99", "\xE1\xBE\xB2", "\xE1\xBE\xBA\xCD\x85",
         "\xE1\xBD\xB0\xCE\xB9"},                                               /* ᾲ */
        {0x1F88, "\xE1\xBC\x88\xCE\x99", "\xE1\xBE\x80", "\xE1\xBE\x88",
         "\xE1\xBC\x80\xCE\xB9"},                                               /* ᾈ */
        {0x3A3, "\xCE\xA3", "\xCF\x83", "\xCE\xA3", "\xCF\x83"},                /* Σ: no context */
        {0x587, "\xD4\xB5\xD5\x92", "\xD6\x87", "\xD4\xB5\xD6\x82", "\xD5\xA5\xD6\x82"}, /* Armenian և */
        {0x10D0, "\xE1\xB2\x90", "\xE1\x83\x90", "\xE1\x83\x90", "\xE1\x83\x90"}, /* Georgian ა */
        {0xAB70, "\xE1\x8E\xA0", "\xEA\xAD\xB0", "\xE1\x8E\xA0", "\xE1\x8E\xA0"}, /* Cherokee ꭰ */
        {0x10428, "\xF0\x90\x90\x80", "\xF0\x90\x90\xA8", "\xF0\x90\x90\x80",
         "\xF0\x90\x90\xA8"},                                                   /* Deseret 𐐨 */
        {0xFF41, "\xEF\xBC\xA1", "\xEF\xBD\x81", "\xEF\xBC\xA1", "\xEF\xBD\x81"}, /* fullwidth ａ */
        {0x2170, "\xE2\x85\xA0", "\xE2\x85\xB0", "\xE2\x85\xA0", "\xE2\x85\xB0"}, /* ⅰ */
    };
    char u[16], l[16], t[16], f[16];
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        mapped(al_uc_upper, C[i].cp, u);
        mapped(al_uc_lower, C[i].cp, l);
        mapped(al_uc_title, C[i].cp, t);
        mapped(al_uc_fold, C[i].cp, f);
        T_REPORT_(!strcmp(u, C[i].upper) && !strcmp(l, C[i].lower) && !strcmp(t, C[i].title) &&
                      !strcmp(f, C[i].fold),
                  "U+%04X: upper \"%s\" lower \"%s\" title \"%s\" fold \"%s\", want \"%s\" \"%s\" \"%s\" \"%s\"",
                  (unsigned)C[i].cp, u, l, t, f, C[i].upper, C[i].lower, C[i].title, C[i].fold);
    }
}

/* Each class as a letter, for the table below and the comparison with Python. */
static void classes(uint32_t cp, char out[12]) {
    int v[11] = {al_uc_is_alpha(cp), al_uc_is_decimal(cp), al_uc_is_digit(cp), al_uc_is_numeric(cp),
                 al_uc_is_space(cp), al_uc_is_printable(cp), al_uc_is_lower(cp), al_uc_is_upper(cp),
                 al_uc_is_title(cp), al_uc_is_cased(cp), al_uc_is_case_ignorable(cp)};
    for (int i = 0; i < 11; i++) out[i] = v[i] ? "adgnsplutci"[i] : '.';
    out[11] = 0;
}

static void test_classes(void) {
    /* alpha decimal digit numeric space printable lower upper title cased ignorable */
    static const struct { uint32_t cp; const char *want; } C[] = {
        {'A', "a....p.u.c."},    {'_', ".....p....."},    {' ', "....sp....."},
        {0xAA, "a....pl..c."},   /* ª: Other_Lowercase */
        {0x2B0, "a....pl..ci"},  /* ʰ: Lm, Other_Lowercase, case-ignorable */
        {0x24B6, ".....p.u.c."}, /* Ⓐ: Other_Uppercase */
        {0xB2, "..gn.p....."},   /* ²: a digit, not decimal */
        {0xBD, "...n.p....."},   /* ½ */
        {0x663, ".dgn.p....."},  /* Arabic-Indic ٣ */
        {0x2003, "....s......"}, /* em space */
        {0x200B, "..........i"}, /* zero width space: Cf */
        {0x378, "..........."},  /* unassigned */
        {0x1C5, "a....p..tc."},  /* ǅ */
        {0x301, ".....p....i"},  /* combining acute: Mn */
        {0x2019, ".....p....i"}, /* right single quotation mark: MidNumLet */
        {0x10D0, "a....pl..c."}, /* Georgian ა */
        {0x65E5, "a....p....."}, /* 日 */
    };
    char got[12];
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        classes(C[i].cp, got);
        T_REPORT_(!strcmp(got, C[i].want), "U+%04X: classes %s, want %s", (unsigned)C[i].cp, got, C[i].want);
    }
}

static void test_final_sigma(void) {
    /* byte offset of the sigma under test */
    static const struct { const char *s; size_t at; int final; } C[] = {
        {"\xCE\x91\xCE\xA3", 2, 1},              /* ΑΣ */
        {"\xCE\xA3", 0, 0},                      /* Σ alone: nothing cased before */
        {"\xCE\x91\xCE\xA3\xCE\x91", 2, 0},      /* ΑΣΑ */
        {"\xCE\x91\xCE\xA3.", 2, 1},             /* ΑΣ. */
        {"\xCE\x91\xCE\xA3'\xCE\x92", 2, 0},     /* ΑΣ'Β: the apostrophe is skipped */
        {"\xCE\x91'\xCE\xA3", 3, 1},             /* Α'Σ */
        {"\xCE\x91\xCE\xA3\xCC\x88", 2, 1},      /* ΑΣ + diaeresis */
        {"1\xCE\xA3", 1, 0},                     /* a digit is not cased */
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++)
        T_REPORT_(al_uc_final_sigma(C[i].s, strlen(C[i].s), C[i].at) == C[i].final, "final sigma of \"%s\" at %zu",
                  C[i].s, C[i].at);
}

/* Every character of the blocks above, against Python's str methods. */
static void test_python(void) {
    static const uint32_t blocks[][2] = {
        {0x00, 0x24F},      {0x250, 0x2FF},     {0x300, 0x58F},     {0x10A0, 0x10FF},   {0x13A0, 0x13FF},
        {0x1C80, 0x1CBF},   {0x1D00, 0x1DBF},   {0x1E00, 0x1FFF},   {0x2000, 0x218F},   {0x2460, 0x24FF},
        {0x2C00, 0x2D2F},   {0xA640, 0xA7FF},   {0xAB30, 0xABBF},   {0xFB00, 0xFB4F},   {0xFF00, 0xFFEF},
        {0x10400, 0x1044F}, {0x1E900, 0x1E95F}, {0x1F100, 0x1F1FF},
    };
    char path[1200], cmd[2600];
    snprintf(path, sizeof path, "%s/python_unicode.txt", t_tmpdir());
    FILE *f = fopen(path, "w");
    if (!f) {
        T_TRUE(!"cannot write the Python script's input");
        return;
    }
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) fprintf(f, "%u %u\n", blocks[b][0], blocks[b][1]);
    fclose(f);
    /* per assigned character: its code, upper, lower, title, casefold (hex
     * joined by ","), then the classes as classes() writes them; Python has
     * no Cased or Case_Ignorable, read here from how lower() treats a final
     * sigma next to the character */
    snprintf(cmd, sizeof cmd,
             "python3 -c '\n"
             "import sys, unicodedata\n"
             "h = lambda s: \",\".join(\"%%X\" %% ord(x) for x in s)\n"
             "for line in open(sys.argv[1]):\n"
             "    a, b = map(int, line.split())\n"
             "    for c in range(a, b + 1):\n"
             "        ch = chr(c)\n"
             "        if unicodedata.category(ch) in (\"Cn\", \"Cs\"): continue\n"
             "        lt = ch.istitle() and not ch.isupper()\n"
             "        x = (\"A\\u03a3\" + ch).lower()[1] == \"\\u03c3\"\n"
             "        y = (\"A\" + ch + \"\\u03a3\").lower()[-1] == \"\\u03c2\"\n"
             "        v = [ch.isalpha(), ch.isdecimal(), ch.isdigit(), ch.isnumeric(), ch.isspace(), ch.isprintable(),\n"
             "             ch.islower(), ch.isupper(), lt, ch.islower() or ch.isupper() or lt, y and not x]\n"
             "        print(\"%%X %%s %%s %%s %%s %%s\" %% (c, h(ch.upper()), h(ch.lower()), h(ch.title()), h(ch.casefold()),\n"
             "              \"\".join(\"adgnsplutci\"[i] if v[i] else \".\" for i in range(11))))\n"
             "' '%s'",
             path);
    FILE *p = popen(cmd, "r");
    if (!p) {
        T_TRUE(!"cannot run python3");
        return;
    }
    char line[256];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, p)) {
        unsigned cp;
        char want[5][64];
        if (sscanf(line, "%x %63s %63s %63s %63s %63s", &cp, want[0], want[1], want[2], want[3], want[4]) != 6) continue;
        int (*maps[4])(uint32_t, uint32_t *) = {al_uc_upper, al_uc_lower, al_uc_title, al_uc_fold};
        char got[5][64];
        for (int k = 0; k < 4; k++) {
            uint32_t m[AL_UC_MAX_CASE];
            int nm = maps[k](cp, m);
            size_t o = 0;
            for (int i = 0; i < nm; i++) o += (size_t)snprintf(got[k] + o, sizeof got[k] - o, "%s%X", i ? "," : "", (unsigned)m[i]);
        }
        classes(cp, got[4]);
        n++;
        for (int k = 0; k < 5; k++)
            if (strcmp(got[k], want[k])) {
                if (bad++ < 20)
                    T_REPORT_(0, "U+%04X: %s \"%s\", Python \"%s\"", cp,
                              (const char *[]){"upper", "lower", "title", "casefold", "classes"}[k], got[k], want[k]);
                break;
            }
    }
    T_EQ_INT(pclose(p), 0);
    T_TRUE(n > 4000); /* Python answered for the blocks (4336 characters) */
    T_EQ_INT(bad, 0);
}

int main(void) {
    test_case_mappings();
    test_classes();
    test_final_sigma();
    test_python();
    return t_done();
}

/* Graders (lib/train/grader.h) on hand-written cases, the adversarial ones
 * included: two boxed answers, nested braces, numbers glued to words,
 * thousands commas, percentages, negative numbers, a trailing full stop,
 * invalid UTF-8; and the format reward's three match modes. */
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "train/grader.h"

static al_error g_e; /* the parsers name the field at fault as data */

/* A grader from JSON text (a preset name in quotes, or an object). */
static al_grader *mk(const char *json) {
    al_grader_cfg c;
    al_grader_cfg_default(&c);
    json_error_t je;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &je);
    al_grader *g = NULL;
    if (!v || al_grader_cfg_parse(&c, v, "grader", &g_e) || al_grader_new(&g, &c, "grader", &g_e))
        fprintf(stderr, "grader %s: %s\n", json, g_e.msg);
    json_decref(v);
    return g;
}

/* The extracted answer, or "(none)". */
static const char *ex(const char *grader, const char *text) {
    static char buf[256];
    al_grader *g = mk(grader);
    char *o = NULL;
    int rc = g ? al_grader_extract(g, text, &o) : -1;
    snprintf(buf, sizeof buf, "%s", rc == 1 ? o : rc == 0 ? "(none)" : "(error)");
    free(o);
    al_grader_free(g);
    return buf;
}

static double grade(const char *grader, const char *completion, const char *answer) {
    al_grader *g = mk(grader);
    double s = -1;
    if (g && al_grader_grade(g, completion, &answer, 1, &s, NULL)) s = -2;
    al_grader_free(g);
    return s;
}

static int num_eq(const char *a, const char *b) { return al_grade_numeric_equal(a, b, 1e-6); }

static void test_last_number(void) {
    const char *G = "\"last_number\"";
    T_STR_EQ(ex(G, "The answer is 42."), "42");
    T_STR_EQ(ex(G, "First 3, then 5, so 8"), "8");
    T_STR_EQ(ex(G, "abc123 def"), "(none)");              /* glued to a word */
    T_STR_EQ(ex(G, "H2O and x2 and CO2"), "(none)");
    T_STR_EQ(ex(G, "version v3 gives 9 apples"), "9");
    T_STR_EQ(ex(G, "it costs $1,000 in total"), "1,000");
    T_STR_EQ(ex(G, "1,2,3"), "3");                          /* a list, not thousands */
    T_STR_EQ(ex(G, "1,0000"), "0000");                      /* not a thousands group either */
    T_STR_EQ(ex(G, "it fell to -5 degrees"), "-5");
    T_STR_EQ(ex(G, "\xe2\x88\x92" "7 is the answer"), "\xe2\x88\x92" "7");
    T_STR_EQ(ex(G, "from 3-5"), "5");                       /* a range: no sign */
    T_STR_EQ(ex(G, "it is 50%"), "50%");
    T_STR_EQ(ex(G, "a ratio of 3/4"), "3/4");
    T_STR_EQ(ex(G, "half is \\frac{1}{2} here"), "\\frac{1}{2}");
    T_STR_EQ(ex(G, "walked 12km"), "12");
    T_STR_EQ(ex(G, "so 0.5."), "0.5");
    T_STR_EQ(ex(G, "about .75 of it"), ".75");
    T_STR_EQ(ex(G, "no numbers here"), "(none)");
    T_STR_EQ(ex(G, "\xff\xfe 42 \xc3"), "42");              /* invalid UTF-8 around it */
    T_STR_EQ(ex(G, "caf\xc3\xa9" "7"), "(none)");           /* glued to a non-ASCII letter */
}

static void test_boxed(void) {
    const char *G = "\"boxed\"";
    T_STR_EQ(ex(G, "first \\boxed{5}, finally \\boxed{7}"), "7");          /* two boxed: the last */
    T_STR_EQ(ex(G, "so \\boxed{\\frac{1}{2}}."), "\\frac{1}{2}");          /* nested braces */
    T_STR_EQ(ex(G, "\\boxed{\\text{(B)} \\{x\\}}"), "\\text{(B)} \\{x\\}"); /* escaped braces */
    T_STR_EQ(ex(G, "\\boxed{3} then \\boxed{oops"), "3");                  /* the last is unclosed */
    T_STR_EQ(ex(G, "$\\boxed 5$"), "5");
    T_STR_EQ(ex(G, "\\fbox{9}"), "9");
    T_STR_EQ(ex(G, "\\boxedx{9}"), "(none)");
    T_STR_EQ(ex(G, "nothing boxed 4"), "(none)");
    T_STR_EQ(ex(G, "\\boxed{}"), "(none)");
}

static void test_hash_and_regex(void) {
    T_STR_EQ(ex("\"hash\"", "12-3=9\n#### 9"), "9");
    T_STR_EQ(ex("\"hash\"", "#### 4\nno, #### 1,000\nmore"), "1,000");
    T_STR_EQ(ex("\"hash\"", "no marker 5"), "(none)");
    T_STR_EQ(ex("\"hash\"", "#### \n"), "(none)");
    const char *R = "{\"extract\": {\"regex\": \"answer: (\\\\w+)\"}}";
    T_STR_EQ(ex(R, "answer: foo, then answer: bar"), "bar");
    T_STR_EQ(ex("{\"extract\": {\"regex\": \"answer: (\\\\w+)\", \"occurrence\": \"first\"}}",
                "answer: foo, then answer: bar"), "foo");
    T_STR_EQ(ex("{\"extract\": {\"regex\": \"(\\\\d)?x\", \"group\": 1}}", "7x x"), "7"); /* unset group skipped */
    T_STR_EQ(ex("{\"extract\": {\"regex\": \"\\\\p{Lu}+\", \"group\": 0}}", "\xff ab \xc3\x89T\xc3\x89 c"),
             "\xc3\x89T\xc3\x89");                                      /* Unicode classes, invalid UTF-8 */
    al_grader_cfg c;
    al_grader_cfg_default(&c);
    json_t *v = json_loads("{\"extract\": {\"regex\": \"answer: \\\\w+\"}}", 0, NULL);
    al_grader *g = NULL;
    T_OK(al_grader_cfg_parse(&c, v, "reward.verifiable.grader", &g_e));
    T_EQ_INT(al_grader_new(&g, &c, "reward.verifiable.grader", &g_e), AL_EINVAL);
    T_TRUE(strstr(g_e.msg, "reward.verifiable.grader.extract.regex: has no capture group 1") == g_e.msg);
    T_STR_EQ(g_e.field, "reward.verifiable.grader.extract.regex");
    json_decref(v);
    al_grader_cfg_default(&c);
    v = json_loads("{\"extract\": {\"regex\": \"(a\"}}", 0, NULL);
    T_OK(al_grader_cfg_parse(&c, v, "g", &g_e));
    T_EQ_INT(al_grader_new(&g, &c, "g", &g_e), AL_EINVAL);
    T_TRUE(strstr(g_e.msg, "g.extract.regex: not a valid pattern at offset 2") == g_e.msg);
    T_STR_EQ(g_e.field, "g.extract.regex");
    json_decref(v);
}

static void test_numbers(void) {
    double v;
    int pct;
    T_TRUE(al_grade_parse_number("1,000", &v, &pct) && v == 1000 && !pct);
    T_TRUE(al_grade_parse_number("\\frac{3}{4}", &v, &pct) && v == 0.75);
    T_TRUE(al_grade_parse_number("-\\dfrac{1}{8}", &v, &pct) && v == -0.125);
    T_TRUE(al_grade_parse_number("\\frac12", &v, &pct) && v == 0.5);
    T_TRUE(al_grade_parse_number("50\\%", &v, &pct) && v == 50 && pct);
    T_TRUE(al_grade_parse_number("12 percent", &v, &pct) && v == 12 && pct);
    T_TRUE(!al_grade_parse_number("5 and 6", &v, &pct));
    T_TRUE(!al_grade_parse_number("3x+1", &v, &pct));
    T_TRUE(!al_grade_parse_number("1/0", &v, &pct));
    T_TRUE(!al_grade_parse_number("", &v, &pct));
    T_TRUE(al_grade_parse_number("9 m^2", &v, &pct) && v == 9);
    T_TRUE(num_eq("1,000", "1000"));
    T_TRUE(num_eq("50%", "0.5"));          /* a percentage is its value or its hundredth */
    T_TRUE(num_eq("50%", "50"));
    T_TRUE(num_eq("0.5", "50%"));
    T_TRUE(!num_eq("50%", "5"));
    T_TRUE(!num_eq("-3", "3"));
    T_TRUE(num_eq("\xe2\x88\x92" "3", "-3"));
    T_TRUE(num_eq("42.", "42"));           /* trailing full stop */
    T_TRUE(num_eq("$5", "5"));
    T_TRUE(num_eq("\\$12.50", "12.5"));
    T_TRUE(num_eq("\xe2\x82\xac" "7", "7"));
    T_TRUE(num_eq("5 apples", "5"));
    T_TRUE(num_eq("x = 5", "5"));
    T_TRUE(num_eq("\\text{5 apples}", "5"));
    T_TRUE(num_eq("\\frac{1}{2}", "0.5"));
    T_TRUE(num_eq("1/2", "\\frac{1}{2}"));
    T_TRUE(num_eq("1e3", "1000"));
    T_TRUE(num_eq("0.3333333", "1/3"));
    T_TRUE(!num_eq("0.33", "1/3"));
    T_TRUE(!num_eq("12", "twelve"));
    T_TRUE(al_grade_numeric_equal("1001", "1000", 1e-3));  /* relative above 1 */
    T_TRUE(!al_grade_numeric_equal("0.0011", "0.001", 1e-6)); /* absolute below 1 */
}

static void test_compare(void) {
    T_NEAR(grade("\"exact\"", " 42 \n", "42"), 1, 0);
    T_NEAR(grade("\"exact\"", "Paris", "paris"), 0, 0);
    T_NEAR(grade("\"casefold\"", "  Paris \n", "paris"), 1, 0);
    T_NEAR(grade("\"casefold\"", "STRASSE", "stra\xc3\x9f" "e"), 1, 0);     /* full case folding */
    T_NEAR(grade("\"casefold\"", "cafe\xcc\x81", "Caf\xc3\xa9"), 1, 0);     /* NFD vs NFC */
    T_NEAR(grade("\"casefold\"", "new  york", "New York"), 1, 0);
    T_NEAR(grade("\"casefold\"", "\xff" "A", "\xff" "a"), 1, 0);           /* invalid UTF-8: ASCII folding */
    T_NEAR(grade("\"numeric\"", "1,000", "1000"), 1, 0);
    T_NEAR(grade("\"numeric\"", "The answer is 1000", "1000"), 0, 0);      /* numeric: the whole text */
    T_NEAR(grade("\"last_number\"", "The answer is 1,000.", "1000"), 1, 0);
    T_NEAR(grade("\"last_number\"", "so 50% of them", "0.5"), 1, 0);
    T_NEAR(grade("\"last_number\"", "It is -4.", "-4"), 1, 0);
    T_NEAR(grade("\"last_number\"", "It is -4.", "4"), 0, 0);
    T_NEAR(grade("\"hash\"", "7+5=12. 12-3=9.\n#### 9", "9"), 1, 0);
    T_NEAR(grade("\"hash\"", "#### 9", "Ann had 7+5=12, gave 3: 12-3=9\n#### 9"), 1, 0); /* gold extracted too */
    T_NEAR(grade("\"hash\"", "the answer is 9", "9"), 0, 0);
    T_NEAR(grade("\"boxed\"", "so \\boxed{\\frac{1}{2}}", "0.5"), 1, 0);
    T_NEAR(grade("\"boxed\"", "\\boxed{\\frac{1}{3}} or \\boxed{\\frac{1}{2}}", "\\frac{1}{3}"), 0, 0);
    T_NEAR(grade("\"boxed\"", "\\boxed{\\text{Paris}}", "\\text{paris}"), 1, 0); /* auto: casefold */
    T_NEAR(grade("{\"preset\": \"boxed\", \"after\": \"</think>\"}", "<think>\\boxed{1}</think> \\boxed{2}", "2"), 1, 0);
    T_NEAR(grade("{\"preset\": \"boxed\", \"after\": \"</think>\"}", "<think>\\boxed{2}", "2"), 0, 0);
    T_NEAR(grade("{\"extract\": \"last_number\", \"compare\": \"numeric\", \"tolerance\": 0.01}", "3.14", "3.1416"), 1, 0);
    /* several accepted answers: one is enough */
    al_grader *g = mk("\"casefold\"");
    const char *ans[] = {"forty-two", "42"};
    double s;
    int extracted;
    T_OK(al_grader_grade(g, " 42 ", ans, 2, &s, &extracted));
    T_NEAR(s, 1, 0);
    T_EQ_INT(extracted, 1);
    T_OK(al_grader_grade(g, "Forty-Two", ans, 2, &s, NULL));
    T_NEAR(s, 1, 0);
    T_OK(al_grader_grade(g, "41", ans, 2, &s, NULL));
    T_NEAR(s, 0, 0);
    al_grader_free(g);
    g = mk("\"hash\"");
    T_OK(al_grader_grade(g, "no answer line", ans + 1, 1, &s, &extracted));
    T_EQ_INT(extracted, 0);
    char why[128];
    T_EQ_INT(al_grader_answer_invalid(g, "forty-two", why, sizeof why), 1);
    T_STR_EQ(why, "the answer 'forty-two' is not a number (the grader compares numbers)");
    T_EQ_INT(al_grader_answer_invalid(g, "so #### 1,000", why, sizeof why), 0);
    al_grader_free(g);
}

static void test_config(void) {
    al_grader_cfg c;
    al_grader_cfg_default(&c);
    const struct { const char *json, *err; } bad[] = {
        {"\"fuzzy\"", "g: must be a grader object or one of exact, casefold, numeric, last_number, hash, gsm8k, boxed, math"},
        {"{\"compare\": \"approx\"}", "g.compare: must be \"exact\", \"casefold\", \"numeric\" or \"auto\""},
        {"{\"extract\": \"first_number\"}", "g.extract: must be \"none\", \"last_number\", \"hash\", \"boxed\" or {\"regex\": ...}"},
        {"{\"extract\": {\"regex\": 5}}", "g.extract.regex: must be a non-empty string"},
        {"{\"extract\": {\"regex\": \"(x)\", \"group\": -1}}", "g.extract.group: must be an integer in [0, 99]"},
        {"{\"extract\": {\"regex\": \"(x)\", \"occurrence\": \"middle\"}}", "g.extract.occurrence: must be \"last\" or \"first\""},
        {"{\"extract\": {\"regex\": \"(x)\", \"flags\": 1}}", "g.extract.flags: unknown field"},
        {"{\"tolerance\": -1}", "g.tolerance: must be a number in [0, 1e6]"},
        {"{\"after\": \"\"}", "g.after: must be a non-empty string under 64 bytes (or null)"},
        {"{\"extractor\": \"hash\"}", "g.extractor: unknown field"},
        {"[1]", "g: must be a grader object or a preset name (exact, casefold, numeric, last_number, hash, boxed)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *v = json_loads(bad[i].json, JSON_DECODE_ANY, NULL);
        T_EQ_INT(al_grader_cfg_parse(&c, v, "g", &g_e), AL_EINVAL);
        T_STR_EQ(g_e.msg, bad[i].err);
        /* the field is the path the message starts with */
        size_t fl = strlen(g_e.field);
        T_TRUE(fl > 0 && !strncmp(bad[i].err, g_e.field, fl) && bad[i].err[fl] == ':');
        json_decref(v);
    }
    T_EQ_INT(c.extract, AL_EXTRACT_NONE); /* unchanged by the failures */
    /* an object overrides its base field by field */
    json_t *v = json_loads("{\"preset\": \"hash\", \"tolerance\": 0.5}", 0, NULL);
    T_OK(al_grader_cfg_parse(&c, v, "g", &g_e));
    json_decref(v);
    v = json_loads("{\"compare\": \"casefold\"}", 0, NULL);
    T_OK(al_grader_cfg_parse(&c, v, "g", &g_e));
    json_decref(v);
    T_EQ_INT(c.extract, AL_EXTRACT_HASH);
    T_EQ_INT(c.compare, AL_COMPARE_CASEFOLD);
    T_NEAR(c.tolerance, 0.5, 0);
    json_t *o = al_grader_cfg_json(&c);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    T_STR_EQ(s, "{\"after\":null,\"compare\":\"casefold\",\"extract\":\"hash\",\"tolerance\":0.5}");
    free(s);
    json_decref(o);
}

static void test_format(void) {
    al_format_rule *f = NULL;
    const char *re = "^<think>.*?</think>\\s*<answer>.*?</answer>$";
    T_OK(al_format_new(&f, re, AL_FORMAT_START, "reward.format.regex", &g_e));
    T_EQ_INT(al_format_match(f, "<think>a\nb</think>\n<answer>5</answer>"), 1); /* DOTALL */
    T_EQ_INT(al_format_match(f, "<think>a</think>\n<answer>5"), 0);
    T_EQ_INT(al_format_match(f, "so <think>a</think><answer>5</answer>"), 0);
    T_EQ_INT(al_format_match(f, "<think>a</think><answer>5</answer>\nmore"), 1);   /* MULTILINE $ */
    T_EQ_INT(al_format_match(f, "\xff<think>"), 0);
    al_format_free(f);
    T_OK(al_format_new(&f, "<answer>\\d+</answer>", AL_FORMAT_SEARCH, "r", &g_e));
    T_EQ_INT(al_format_match(f, "so <answer>5</answer> ok"), 1);
    al_format_free(f);
    T_OK(al_format_new(&f, "<answer>\\d+</answer>", AL_FORMAT_START, "r", &g_e));
    T_EQ_INT(al_format_match(f, "<answer>5</answer> ok"), 1);
    T_EQ_INT(al_format_match(f, "so <answer>5</answer>"), 0);
    al_format_free(f);
    T_OK(al_format_new(&f, "<answer>\\d+</answer>", AL_FORMAT_FULL, "r", &g_e));
    T_EQ_INT(al_format_match(f, "<answer>5</answer> ok"), 0);
    T_EQ_INT(al_format_match(f, "<answer>5</answer>"), 1);
    al_format_free(f);
    /* catastrophic backtracking stops at the match limit with an error, not a hang or a 0 */
    T_OK(al_format_new(&f, "(a|aa)+$", AL_FORMAT_START, "r", &g_e));
    char s[64];
    memset(s, 'a', 60);
    s[60] = '!';
    s[61] = 0;
    T_EQ_INT(al_format_match(f, s), AL_ERANGE);
    al_format_free(f);
    T_EQ_INT(al_format_new(&f, "[", AL_FORMAT_START, "reward.format.regex", &g_e), AL_EINVAL);
    T_TRUE(strstr(g_e.msg, "reward.format.regex: not a valid pattern at offset 1") == g_e.msg);
    T_STR_EQ(g_e.field, "reward.format.regex");
}

int main(void) {
    test_last_number();
    test_boxed();
    test_hash_and_regex();
    test_numbers();
    test_compare();
    test_config();
    test_format();
    return t_done();
}

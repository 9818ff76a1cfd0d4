/* Built-in tasks: each row drawn from an RNG seeded by (seed, index), so any
 * row is reproducible on its own and splits never overlap when seeds differ. */
#include "tasks.h"

#include <stdio.h>
#include <string.h>

static const al_task_info g_tasks[] = {
    {"addition", "Sums of two numbers of 1-3 digits: \"417+86=\" -> \"503\".", NULL},
    {"addition2", "Sums of two numbers of 1-2 digits, which tiny models learn in a few hundred steps.", NULL},
    {"reversal", "A word of 3-7 letters reversed: \"rev abc=\" -> \"cba\".", NULL},
    {"sorting", "3-5 digits sorted: \"sort 3,1,2=\" -> \"1,2,3\".", NULL},
    {"word_problems", "Two-step arithmetic word problems answered by a worked solution ending in \"#### N\".",
     "hash"},
    {NULL, NULL, NULL},
};

const al_task_info *al_tasks(void) { return g_tasks; }

static int is_addition(const char *task) { return !strcmp(task, "addition") || !strcmp(task, "addition2"); }

/* Changes one character of s to another from the same class (digit/letter). */
static void perturb(char *s, al_rng *r) {
    size_t n = strlen(s);
    if (n == 0) return;
    for (int tries = 0; tries < 16; tries++) {
        size_t i = al_rng_below(r, (uint32_t)n);
        char c = s[i];
        if (c >= '0' && c <= '9') {
            s[i] = (char)('0' + (c - '0' + 1 + (int)al_rng_below(r, 9)) % 10);
            return;
        }
        if (c >= 'a' && c <= 'z') {
            s[i] = (char)('a' + (c - 'a' + 1 + (int)al_rng_below(r, 25)) % 26);
            return;
        }
    }
    s[n - 1] = s[n - 1] == '0' ? '1' : '0';
}

/* A wrong sum of the kinds a learner makes: one digit changed (2 in 5), the
 * sum off by one or ten (a carry slip), a digit dropped or doubled (a wrong
 * length), or any other sum of the operands' range. A reward model trained
 * on pairs whose wrong answer was only ever a one-digit change learnt
 * nothing about the other kinds: the number it scored highest over 0..999
 * was the right sum for 1 prompt in 5, and PPO against it drifted to wrong
 * sums (tests/test_rl_learning.c). Never equal to the answer. */
static void wrong_sum(char *w, size_t cap, uint32_t sum, uint32_t max_sum, al_rng *r) {
    snprintf(w, cap, "%u", sum);
    size_t n = strlen(w);
    uint32_t kind = al_rng_below(r, 5), v;
    if (kind <= 1) {
        perturb(w, r);
        return;
    }
    if (kind == 3) {
        size_t i = al_rng_below(r, (uint32_t)n);
        if (n > 1 && al_rng_below(r, 2)) memmove(w + i, w + i + 1, n - i);   /* dropped */
        else if (n + 1 < cap) memmove(w + i + 1, w + i, n - i + 1);          /* doubled */
        if (w[0] == '0' && w[1]) w[0] = (char)('1' + al_rng_below(r, 9)); /* no leading 0 */
        return;
    }
    if (kind == 2) {
        uint32_t d = al_rng_below(r, 2) ? 10 : 1;
        v = al_rng_below(r, 2) && sum >= d ? sum - d : sum + d;
    } else {
        v = al_rng_below(r, max_sum + 1);
        if (v == sum) v = sum + 1;
    }
    snprintf(w, cap, "%u", v);
}

/* ---- word_problems ------------------------------------------------------- */

static const char *const wp_names[] = {"Ann", "Ben", "Cleo", "Dev", "Eva", "Finn", "Gus", "Ivy"};
static const char *const wp_pron[] = {"She", "He", "She", "He", "She", "He", "He", "She"};
static const char *const wp_things[] = {"apples", "pens", "cards", "shells", "coins", "books", "stamps", "eggs"};

/* A two-step problem from one of four templates; one-digit operands keep
 * the arithmetic within reach of the tiny test models. */
static void word_problem(al_task_row *out, al_rng *r) {
    uint32_t who = al_rng_below(r, 8), th = al_rng_below(r, 8), kind = al_rng_below(r, 4);
    const char *n = wp_names[who], *p = wp_pron[who], *t = wp_things[th];
    uint32_t a = 2 + al_rng_below(r, 8), b = 2 + al_rng_below(r, 8), c, s1, res;
    char op1, op2;
    uint32_t x1, y1;
    switch (kind) {
    case 0: /* a + b - c */
        s1 = a + b;
        c = 1 + al_rng_below(r, s1 - 1);
        res = s1 - c;
        snprintf(out->prompt, sizeof out->prompt, "%s has %u %s. %s buys %u more, then gives away %u. "
                 "How many %s now?", n, a, t, p, b, c, t);
        x1 = a, y1 = b, op1 = '+', op2 = '-';
        break;
    case 1: /* a * b - c */
        s1 = a * b;
        c = 1 + al_rng_below(r, s1 - 1 < 9 ? s1 - 1 : 9);
        res = s1 - c;
        snprintf(out->prompt, sizeof out->prompt, "%s buys %u bags of %u %s and loses %u. How many %s are "
                 "left?", n, a, b, t, c, t);
        x1 = a, y1 = b, op1 = '*', op2 = '-';
        break;
    case 2: /* b * c + a */
        c = 2 + al_rng_below(r, 8);
        s1 = b * c;
        res = s1 + a;
        snprintf(out->prompt, sizeof out->prompt, "%s has %u %s and gets %u more each day for %u days. How "
                 "many %s now?", n, a, t, b, c, t);
        x1 = b, y1 = c, op1 = '*', op2 = '+';
        c = a; /* the second step adds the start */
        break;
    default: /* a * b + c */
        s1 = a * b;
        c = 1 + al_rng_below(r, 9);
        res = s1 + c;
        snprintf(out->prompt, sizeof out->prompt, "There are %u %s in each of %u boxes. %s adds %u more. How "
                 "many %s in all?", a, t, b, n, c, t);
        x1 = a, y1 = b, op1 = '*', op2 = '+';
        break;
    }
    snprintf(out->answer, sizeof out->answer, "%u%c%u=%u. %u%c%u=%u.\n#### %u", x1, op1, y1, s1, s1, op2, c, res,
             res);
    uint32_t d = 1 + al_rng_below(r, 3), bad = al_rng_below(r, 2) || res < d ? res + d : res - d;
    snprintf(out->wrong, sizeof out->wrong, "%u%c%u=%u. %u%c%u=%u.\n#### %u", x1, op1, y1, s1, s1, op2, c, bad,
             bad);
}

/* The final answer of a worked solution: the rest of the line after the
 * last "####", trimmed; NULL when there is none. */
static const char *final_answer(const char *s, size_t *len) {
    const char *p = NULL, *q = s;
    while ((q = strstr(q, "####"))) p = q++;
    if (!p) return NULL;
    p += 4;
    while (*p == ' ' || *p == '\t') p++;
    size_t n = strcspn(p, "\n");
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r')) n--;
    *len = n;
    return p;
}

const char *al_task_grader(const char *task) {
    for (const al_task_info *t = g_tasks; task && t->name; t++)
        if (!strcmp(t->name, task)) return t->grader;
    return NULL;
}

/* One draw of the task's distribution from the rng seeded with rng_seed. */
static int row_draw(const char *task, uint64_t rng_seed, al_task_row *out) {
    al_rng r;
    al_rng_seed(&r, rng_seed);
    memset(out, 0, sizeof *out);
    if (!strcmp(task, "word_problems")) {
        word_problem(out, &r);
        return AL_OK;
    }
    if (is_addition(task)) {
        /* 1-3 digit operands ("addition2": 1-2, an easier variant that tiny
         * models learn in a few hundred steps) */
        uint32_t maxd = task[8] == '2' ? 2 : 3;
        uint32_t da = 1 + al_rng_below(&r, maxd), db = 1 + al_rng_below(&r, maxd);
        uint32_t pa = da == 1 ? 10 : da == 2 ? 100 : 1000, pb = db == 1 ? 10 : db == 2 ? 100 : 1000;
        uint32_t a = al_rng_below(&r, pa), b = al_rng_below(&r, pb);
        snprintf(out->prompt, sizeof out->prompt, "%u+%u=", a, b);
        snprintf(out->answer, sizeof out->answer, "%u", a + b);
        wrong_sum(out->wrong, sizeof out->wrong, a + b, pa + pb - 2, &r);
        if (!strcmp(out->wrong, out->answer)) perturb(out->wrong, &r);
        return AL_OK;
    } else if (!strcmp(task, "reversal")) {
        uint32_t n = 3 + al_rng_below(&r, 5);
        char s[16];
        for (uint32_t i = 0; i < n; i++) s[i] = (char)('a' + al_rng_below(&r, 26));
        s[n] = 0;
        snprintf(out->prompt, sizeof out->prompt, "rev %s=", s);
        for (uint32_t i = 0; i < n; i++) out->answer[i] = s[n - 1 - i];
    } else if (!strcmp(task, "sorting")) {
        uint32_t n = 3 + al_rng_below(&r, 3), v[8];
        for (uint32_t i = 0; i < n; i++) v[i] = al_rng_below(&r, 10);
        size_t len = (size_t)snprintf(out->prompt, sizeof out->prompt, "sort ");
        for (uint32_t i = 0; i < n; i++)
            len += (size_t)snprintf(out->prompt + len, sizeof out->prompt - len, "%s%u", i ? "," : "", v[i]);
        snprintf(out->prompt + len, sizeof out->prompt - len, "=");
        for (uint32_t i = 1; i < n; i++)
            for (uint32_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
                uint32_t t = v[j];
                v[j] = v[j - 1];
                v[j - 1] = t;
            }
        len = 0;
        for (uint32_t i = 0; i < n; i++)
            len += (size_t)snprintf(out->answer + len, sizeof out->answer - len, "%s%u", i ? "," : "", v[i]);
    } else {
        return AL_ENOENT;
    }
    memcpy(out->wrong, out->answer, sizeof out->wrong);
    perturb(out->wrong, &r);
    if (!strcmp(out->wrong, out->answer)) perturb(out->wrong, &r);
    return AL_OK;
}

al_task_split al_task_prompt_split(const char *prompt) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: any fixed hash of the text will do */
    for (const unsigned char *p = (const unsigned char *)prompt; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    h ^= h >> 29; /* the low bits of FNV-1a mix poorly for short strings */
    return h % 1000 < AL_TASK_TEST_PERMILLE ? AL_SPLIT_TEST : AL_SPLIT_TRAIN;
}

int al_task_row_get(const char *task, al_task_split split, uint64_t seed, uint64_t index, al_task_row *out) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull ^ (index + 1) * 0xD1B54A32D192ED03ull;
    /* Rejection sampling: the first draw of the row's own stream that falls
     * in the split (1.25 draws on average for train, 5 for test). The first
     * attempt is the row's draw of the whole distribution. */
    for (uint64_t attempt = 0;; attempt++) {
        int rc = row_draw(task, attempt ? s ^ attempt * 0xBF58476D1CE4E5B9ull : s, out);
        if (rc || split == AL_SPLIT_ALL || al_task_prompt_split(out->prompt) == split) return rc;
    }
}

static const char *const mistake_names[] = {"any", "one_digit"};

const char *al_task_mistakes_name(al_task_mistakes m) { return mistake_names[m]; }

int al_task_mistakes_parse(const char *name) {
    for (size_t i = 0; i < sizeof mistake_names / sizeof *mistake_names; i++)
        if (!strcmp(name, mistake_names[i])) return (int)i;
    return -1;
}

int al_task_has_mistakes(const char *task, al_task_mistakes m) { return m == AL_MISTAKES_ANY || is_addition(task); }

int al_task_row_get_with(const char *task, al_task_split split, uint64_t seed, uint64_t index, al_task_mistakes m,
                         al_task_row *out) {
    int rc = al_task_row_get(task, split, seed, index, out);
    if (rc || m == AL_MISTAKES_ANY) return rc;
    if (!al_task_has_mistakes(task, m)) return AL_EINVAL;
    /* the right sum, one digit changed to another (no leading zero), from a
     * stream of its own so that the row itself is the same as under "any" */
    al_rng r;
    al_rng_seed(&r, (seed ^ 0x6A09E667F3BCC909ull) * 0x9E3779B97F4A7C15ull ^ (index + 1) * 0xD1B54A32D192ED03ull);
    size_t n = strlen(out->answer), at = al_rng_below(&r, (uint32_t)n);
    int lo = at == 0 && n > 1;
    char d = (char)('0' + lo + (int)al_rng_below(&r, (uint32_t)(9 - lo)));
    if (d >= out->answer[at]) d++; /* one of the other digits */
    memcpy(out->wrong, out->answer, sizeof out->wrong);
    out->wrong[at] = d;
    return AL_OK;
}

static const char *const split_names[] = {"all", "train", "test"};

const char *al_task_split_name(al_task_split split) { return split_names[split]; }

int al_task_split_parse(const char *name) {
    for (size_t i = 0; i < sizeof split_names / sizeof *split_names; i++)
        if (!strcmp(name, split_names[i])) return (int)i;
    return -1;
}

int al_task_correct(const al_task_row *row, const char *output) {
    size_t la, lo;
    const char *fa = final_answer(row->answer, &la);
    if (fa) {
        const char *fo = final_answer(output, &lo);
        return fo && lo == la && memcmp(fo, fa, la) == 0;
    }
    size_t n = strlen(output);
    while (n && (output[n - 1] == ' ' || output[n - 1] == '\n' || output[n - 1] == '\t')) n--;
    return n == strlen(row->answer) && memcmp(output, row->answer, n) == 0;
}

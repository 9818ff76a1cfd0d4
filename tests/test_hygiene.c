/* Data hygiene (lib/text/hygiene.h) through the dataset reader, the
 * clean_data job and a training job's "hygiene" option: MinHash
 * near-duplicates on crafted rows (checked against an exact Jaccard
 * computed here independently), decontamination on crafted overlaps (the
 * n-gram rule and its n), length and language filters, the report's counts
 * and reasons, and bad settings refused by path. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "t.h"
#include "t_model.h"
#include "t_train.h"
#include "text/dataset.h"

/* ~100 distinct words per row: rows i differ everywhere. */
static void sentence(char *out, size_t n, int seed, int replace_at, const char *with) {
    static const char *const W[] = {"river", "stone", "maple", "copper", "lantern", "harbor", "velvet", "orbit",
                                    "meadow", "signal", "cobalt", "thistle", "ember", "quartz", "willow", "falcon",
                                    "prairie", "saddle", "tundra", "beacon", "marble", "cinder", "glacier", "nimbus"};
    size_t k = 0;
    uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < 100 && k < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const char *w = i == replace_at ? with : W[x % 24];
        k += (size_t)snprintf(out + k, n - k, "%s%s%d", i ? " " : "", w, (int)(x % 97));
    }
}

/* Exact Jaccard of word 5-gram sets, computed here on its own: words are
 * runs of letters and digits, lower-cased. */
static double jaccard5(const char *a, const char *b) {
    char wa[200][40], wb[200][40];
    int na = 0, nb = 0;
    for (int s = 0; s < 2; s++) {
        const char *p = s ? b : a;
        char(*w)[40] = s ? wb : wa;
        int *n = s ? &nb : &na;
        while (*p) {
            while (*p && !isalnum((unsigned char)*p)) p++;
            int l = 0;
            while (*p && isalnum((unsigned char)*p)) {
                if (l < 39) w[*n][l++] = (char)tolower((unsigned char)*p);
                p++;
            }
            if (l) w[(*n)++][l] = 0;
        }
    }
    int both = 0, ga = na - 4, gb = nb - 4;
    for (int i = 0; i < ga; i++) {
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) {
            int eq = 1;
            for (int k = 0; k < 5; k++) eq &= !strcmp(wa[i + k], wa[j + k]);
            dup = eq;
        }
        if (dup) continue;
        for (int j = 0; j < gb; j++) {
            int eq = 1;
            for (int k = 0; k < 5; k++) eq &= !strcmp(wa[i + k], wb[j + k]);
            if (eq) {
                both++;
                break;
            }
        }
    }
    return (double)both / (double)(ga + gb - both);
}

static const json_t *warning_at(const al_dataset *d, int line) {
    size_t i;
    const json_t *w;
    json_array_foreach(json_object_get(al_dataset_report(d), "warnings"), i, w) {
        if (json_integer_value(json_object_get(w, "line")) == line) return w;
    }
    return NULL;
}

static const char *wcode(const al_dataset *d, int line) {
    const json_t *w = warning_at(d, line);
    return w ? json_string_value(json_object_get(w, "code")) : "(none)";
}

static long hy(const al_dataset *d, const char *sect, const char *key) {
    const json_t *h = json_object_get(al_dataset_report(d), "hygiene");
    return (long)json_integer_value(json_object_get(sect ? json_object_get(h, sect) : h, key));
}

static al_dataset *read_with(const char *jsonl, const al_hygiene_cfg *c) {
    al_data_opts o = {0};
    o.hygiene = c;
    al_dataset *d = NULL;
    char err[AL_ERRLEN] = "";
    int rc = al_dataset_read_mem(jsonl, strlen(jsonl), NULL, &o, &d, err);
    T_OK(rc);
    if (rc) fprintf(stderr, "read: %s\n", err);
    return d;
}

static al_hygiene_cfg parse(const char *json) {
    al_hygiene_cfg c;
    al_error err;
    json_t *v = json_loads(json, 0, NULL);
    T_OK(al_hygiene_parse(v, &c, &err));
    json_decref(v);
    return c;
}

enum { NROWS = 8 };

static void test_near_duplicates(void) {
    static char txt[NROWS][1400];
    sentence(txt[0], sizeof txt[0], 1, -1, NULL);
    sentence(txt[1], sizeof txt[1], 2, -1, NULL);
    sentence(txt[2], sizeof txt[2], 1, 50, "zebra");           /* row 1, one word changed */
    for (size_t i = 0, k = 0; txt[0][i]; i++)                   /* row 1 shouted, with commas */
        txt[3][k++] = txt[0][i] == ' ' ? ',' : (char)toupper((unsigned char)txt[0][i]), txt[3][k] = 0;
    sentence(txt[4], sizeof txt[4], 1, -1, NULL);               /* row 1 with every 6th word changed */
    for (char *p = txt[4], *q; (q = strchr(p, ' ')); p = q + 1) {
        static int c = 0;
        if (++c % 6 == 0) q[-1] = 'x';
    }
    sentence(txt[5], sizeof txt[5], 2, 10, "yak");             /* row 2, one word changed */
    sentence(txt[6], sizeof txt[6], 3, -1, NULL);
    snprintf(txt[7], sizeof txt[7], "%s", "short row");
    char jsonl[16000];
    size_t k = 0;
    for (int i = 0; i < NROWS; i++) {
        /* alternate formats: the text of a row is all its strings */
        if (i % 2) k += (size_t)snprintf(jsonl + k, sizeof jsonl - k, "{\"text\":\"%s\"}\n", txt[i]);
        else k += (size_t)snprintf(jsonl + k, sizeof jsonl - k, "{\"text\":\"%s\",\"source\":\"s%d\"}\n", txt[i], i);
    }
    al_hygiene_cfg c = parse("{\"near_duplicates\": true}");
    al_dataset *d = read_with(jsonl, &c);
    T_STR_EQ(wcode(d, 3), "near_duplicate");
    T_STR_EQ(wcode(d, 4), "near_duplicate");
    T_STR_EQ(wcode(d, 6), "near_duplicate");
    T_STR_EQ(wcode(d, 5), "(none)");
    T_STR_EQ(wcode(d, 1), "(none)");
    T_STR_EQ(wcode(d, 8), "(none)");
    T_TRUE(strstr(json_string_value(json_object_get(warning_at(d, 3), "message")), "near-duplicate of line 1") != NULL);
    T_TRUE(strstr(json_string_value(json_object_get(warning_at(d, 6), "message")), "near-duplicate of line 2") != NULL);
    T_EQ_INT(hy(d, "near_duplicates", "dropped"), 3);
    T_EQ_INT(hy(d, NULL, "rows_in"), NROWS);
    T_EQ_INT(hy(d, NULL, "rows_out"), NROWS - 3);
    /* the similarity reported is the exact one, computed here independently;
     * every pair at >= 0.85 has its later row dropped, none below 0.8 */
    for (int i = 0; i < NROWS; i++)
        for (int j = i + 1; j < NROWS; j++) {
            double jac = jaccard5(txt[i], txt[j]);
            const char *code = wcode(d, j + 1);
            if (jac >= 0.85) T_STR_EQ(code, "near_duplicate");
            if (jac < 0.8 && strcmp(code, "near_duplicate") == 0) {
                const char *m = json_string_value(json_object_get(warning_at(d, j + 1), "message"));
                char want[32];
                snprintf(want, sizeof want, "of line %d ", i + 1);
                T_TRUE(strstr(m, want) == NULL);
            }
        }
    char want[64];
    snprintf(want, sizeof want, "Jaccard similarity %.2f", jaccard5(txt[0], txt[2]));
    T_TRUE(strstr(json_string_value(json_object_get(warning_at(d, 3), "message")), want) != NULL);
    printf("jaccard: one word changed %.3f, shouted %.3f, every 6th word %.3f\n", jaccard5(txt[0], txt[2]),
           jaccard5(txt[0], txt[3]), jaccard5(txt[0], txt[4]));
    /* deterministic: the same verdicts again */
    al_dataset *d2 = read_with(jsonl, &c);
    T_TRUE(json_equal(json_object_get(al_dataset_report(d), "warnings"), json_object_get(al_dataset_report(d2), "warnings")));
    al_dataset_free(d2);
    al_dataset_free(d);
    /* a stricter threshold keeps the one-word changes */
    c = parse("{\"near_duplicates\": {\"threshold\": 0.95, \"num_perm\": 64, \"bands\": 32}}");
    d = read_with(jsonl, &c);
    T_STR_EQ(wcode(d, 3), "(none)");
    T_STR_EQ(wcode(d, 4), "near_duplicate");
    T_EQ_INT(hy(d, "near_duplicates", "num_perm"), 64);
    al_dataset_free(d);
}

static void test_decontamination(void) {
    char ev[1200], tr[4000];
    snprintf(ev, sizeof ev, "%s/eval.jsonl", t_tmpdir());
    const char *eval =
        "{\"prompt\":\"Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?\",\"answer\":\"72\"}\n"
        "{\"prompt\":\"Weng earns 12 dollars an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "How much did she earn?\",\"answer\":\"10\"}\n"
        "{\"prompt\":\"Too short to match.\",\"answer\":\"1\"}\n";
    char err[AL_ERRLEN];
    T_OK(al_file_write_atomic(ev, eval, strlen(eval), err));
    snprintf(tr, sizeof tr,
             /* 1: clean */
             "{\"prompt\":\"How many legs do three spiders have together?\",\"completion\":\"24\"}\n"
             /* 2: 13 words of eval row 1 inside other text, case and punctuation changed */
             "{\"prompt\":\"Puzzle: NATALIA sold clips, to 48 of her friends in April and then she sold half... "
             "and so on\",\"completion\":\"?\"}\n"
             /* 3: only 12 consecutive words shared */
             "{\"prompt\":\"Natalia sold clips to 48 of her friends in April and then bought pens\","
             "\"completion\":\"x\"}\n"
             /* 4: the eval row itself, with its answer */
             "{\"prompt\":\"Weng earns 12 dollars an hour for babysitting. Yesterday, she just did 50 minutes of "
             "babysitting. How much did she earn?\",\"completion\":\"10\"}\n");
    al_hygiene_cfg c;
    memset(&c, 0, sizeof c);
    json_t *v = json_pack("{s:{s:s}}", "decontaminate", "file", ev);
    T_OK(al_hygiene_parse(v, &c, NULL));
    json_decref(v);
    al_dataset *d = read_with(tr, &c);
    /* n: GPT-3's 5th percentile of the eval rows' lengths, clamped to [8, 13]:
     * the 4-word row makes it 8 */
    T_EQ_INT(hy(d, "decontamination", "ngram"), 8);
    T_EQ_INT(hy(d, "decontamination", "eval_rows"), 3);
    T_EQ_INT(hy(d, "decontamination", "eval_rows_too_short"), 1);
    T_STR_EQ(wcode(d, 1), "(none)");
    T_STR_EQ(wcode(d, 2), "contaminated");
    T_STR_EQ(wcode(d, 3), "contaminated");   /* 12 shared words hold 8-grams */
    T_STR_EQ(wcode(d, 4), "contaminated");
    al_dataset_free(d);
    /* n = 13 given: 12 shared words are not enough */
    v = json_pack("{s:{s:s,s:i}}", "decontaminate", "file", ev, "ngram", 13);
    T_OK(al_hygiene_parse(v, &c, NULL));
    json_decref(v);
    d = read_with(tr, &c);
    T_EQ_INT(hy(d, "decontamination", "ngram"), 13);
    T_STR_EQ(wcode(d, 2), "contaminated");
    T_STR_EQ(wcode(d, 3), "(none)");
    T_EQ_INT(hy(d, "decontamination", "dropped"), 2);
    al_dataset_free(d);
    /* Llama 2's rule: only rows mostly made of shared n-grams */
    v = json_pack("{s:{s:s,s:i,s:f}}", "decontaminate", "file", ev, "ngram", 13, "coverage", 0.8);
    T_OK(al_hygiene_parse(v, &c, NULL));
    json_decref(v);
    d = read_with(tr, &c);
    T_STR_EQ(wcode(d, 2), "(none)");
    T_STR_EQ(wcode(d, 4), "contaminated");
    T_TRUE(strstr(json_string_value(json_object_get(json_object_get(json_object_get(al_dataset_report(d), "hygiene"),
                                                                    "decontamination"), "rule")), "Llama 2") != NULL);
    al_dataset_free(d);
    /* a missing evaluation file is an error naming the field */
    v = json_pack("{s:{s:s}}", "decontaminate", "file", "/nonexistent/eval.jsonl");
    T_OK(al_hygiene_parse(v, &c, NULL));
    json_decref(v);
    al_data_opts o = {0};
    o.hygiene = &c;
    T_EQ_INT(al_dataset_read_mem(tr, strlen(tr), NULL, &o, &d, err), AL_ENOENT);
    T_TRUE(strstr(err, "hygiene.decontaminate.file") == err);
}

static void test_length_language(void) {
    const char *rows =
        "{\"text\":\"The committee will publish its final report on the new railway line next spring.\"}\n"
        "{\"text\":\"Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke im nächsten Frühjahr "
        "veröffentlichen.\"}\n"
        "{\"text\":\"Le comité publiera son rapport final sur la nouvelle ligne de chemin de fer au printemps "
        "prochain.\"}\n"
        "{\"text\":\"Hi there\"}\n"
        "{\"text\":\"one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty twenty-one\"}\n";
    al_hygiene_cfg c = parse("{\"languages\": [\"en\"]}");
    al_dataset *d = read_with(rows, &c);
    T_STR_EQ(wcode(d, 1), "(none)");
    T_STR_EQ(wcode(d, 2), "language");
    T_STR_EQ(wcode(d, 3), "language");
    T_STR_EQ(wcode(d, 4), "(none)");   /* too short to tell: kept, undetermined */
    T_EQ_INT(hy(d, "language", "dropped"), 2);
    T_EQ_INT(hy(d, "language", "undetermined"), 1);
    T_TRUE(strstr(json_string_value(json_object_get(warning_at(d, 2), "message")), "de") != NULL);
    al_dataset_free(d);
    c = parse("{\"languages\": [\"en\", \"fr\"], \"min_words\": 3, \"max_words\": 20}");
    d = read_with(rows, &c);
    T_STR_EQ(wcode(d, 3), "(none)");
    T_STR_EQ(wcode(d, 4), "too_short");
    T_STR_EQ(wcode(d, 5), "too_long");   /* 22 words: twenty-one is two */
    T_EQ_INT(hy(d, "length", "too_short"), 1);
    T_EQ_INT(hy(d, "length", "too_long"), 1);
    T_EQ_INT(hy(d, NULL, "rows_out"), 2);
    al_dataset_free(d);
}

static void test_parse_errors(void) {
    static const char *const BAD[][2] = {
        {"{\"near_duplicates\": {\"num_perm\": 100, \"bands\": 16}}", "hygiene.near_duplicates.bands: 16 does not divide"},
        {"{\"near_duplicates\": {\"threshold\": 2}}", "hygiene.near_duplicates.threshold: must be"},
        {"{\"near_duplicates\": \"yes\"}", "hygiene.near_duplicates: must be"},
        {"{\"decontaminate\": {\"ngram\": 13}}", "hygiene.decontaminate.file: must name"},
        {"{\"decontaminate\": {\"file\": \"f\", \"coverage\": 1.5}}", "hygiene.decontaminate.coverage: must be"},
        {"{\"min_words\": 10, \"max_words\": 5}", "hygiene.max_words: 5 is below"},
        {"{\"languages\": [\"english!\"]}", "hygiene.languages[0]: must be"},
        {"{\"lang\": [\"en\"]}", "hygiene.lang: unknown field"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        al_hygiene_cfg c;
        al_error err;
        json_t *v = json_loads(BAD[i][0], 0, NULL);
        T_EQ_INT(al_hygiene_parse(v, &c, &err), AL_EINVAL);
        T_TRUE(strstr(err.msg, BAD[i][1]) == err.msg);
        if (strstr(err.msg, BAD[i][1]) != err.msg) fprintf(stderr, "got: %s\n", err.msg);
        /* the field at fault as data: the path the message starts with */
        size_t fl = strlen(err.field);
        T_TRUE(fl > 0 && !strncmp(BAD[i][1], err.field, fl) && BAD[i][1][fl] == ':');
        json_decref(v);
    }
}

typedef struct seen { char events[8192]; double rows_kept, near; } seen;
static void on_event(void *ud, al_log_level l, const char *msg) {
    (void)l;
    seen *s = ud;
    size_t n = strlen(s->events);
    snprintf(s->events + n, sizeof s->events - n, "%s\n", msg);
}
static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    (void)step;
    (void)epoch;
    seen *s = ud;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].name, "rows_kept")) s->rows_kept = m[i].value;
        if (!strcmp(m[i].name, "hygiene/near_duplicates")) s->near = m[i].value;
    }
}

/* The file job writes the rows that stay (a CSV in, JSONL out) and its
 * report; a training job's option filters as the data loads. */
static void test_jobs(void) {
    char in[1200], out[1200], json[4096], err[AL_ERRLEN], base[1200];
    snprintf(in, sizeof in, "%s/raw.csv", t_tmpdir());
    snprintf(out, sizeof out, "%s/cleaned", t_tmpdir());
    static char a[1400], b[1400], csv[8000];
    sentence(a, sizeof a, 11, -1, NULL);
    sentence(b, sizeof b, 11, 40, "ox");
    snprintf(csv, sizeof csv, "prompt,completion\n\"%s\",yes\n\"%s\",no\nbad row\n\"short prompt\",ok\n\"%s\",yes\n", a,
             b, a);
    T_OK(al_file_write_atomic(in, csv, strlen(csv), err));
    snprintf(json, sizeof json, "{\"method\":\"clean_data\",\"training_file\":\"%s\",\"output_dir\":\"%s\","
             "\"hygiene\":{\"near_duplicates\":true}}", in, out);
    seen s;
    memset(&s, 0, sizeof s);
    al_train_cb cb = {.event = on_event, .log = on_log, .ud = &s};
    al_train_result res;
    T_OK(t_train_json(json, NULL, &cb, &res, err));
    T_EQ_INT(res.n_output_files, 1);
    T_STR_EQ(res.output_files[0].purpose, "fine-tune");
    /* line 2 kept; 3 a near-duplicate of it; 4 bad; 5 kept; 6 an exact duplicate of 2 */
    T_NEAR(s.rows_kept, 2, 0);
    T_NEAR(s.near, 1, 0);
    T_TRUE(strstr(s.events, "near-duplicates: 1 dropped") != NULL);
    al_data_opts o = {0};
    al_dataset *d = NULL;
    T_OK(al_dataset_read_file(res.output_files[0].path, NULL, &o, &d, err));
    if (d) {
        T_EQ_INT(d->rows, 2);
        T_EQ_INT(d->n_errors, 0);
        T_STR_EQ(json_string_value(json_object_get(al_dataset_report(d), "file_format")), "jsonl");
        T_STR_EQ(json_string_value(json_object_get(al_dataset_report(d), "format")), "prompt_completion");
        al_dataset_free(d);
    }
    char rp[1300];
    snprintf(rp, sizeof rp, "%s/report.json", out);
    json_t *rep = json_load_file(rp, 0, NULL);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(rep, "hygiene"), "rows_out")), 2);
    json_decref(rep);
    /* no filter, or no file: refused */
    snprintf(json, sizeof json, "{\"method\":\"clean_data\",\"training_file\":\"%s\",\"output_dir\":\"%s\"}", in, out);
    al_job j;
    T_EQ_INT(al_job_parse(&j, json, strlen(json), err), AL_EINVAL);
    T_TRUE(strstr(err, "hygiene: clean_data needs") == err);
    /* a file that is missing, or holds no row, names training_file as data */
    char missing[1300], none[1300];
    snprintf(missing, sizeof missing, "%s/no_such.jsonl", t_tmpdir());
    snprintf(none, sizeof none, "%s/none.jsonl", t_tmpdir());
    T_OK(al_file_write_atomic(none, "not json\n{\"x\":1}\n", 17, err));
    al_error fe;
    const char *bad[2] = {missing, none};
    char want[1400];
    for (int k = 0; k < 2; k++) {
        snprintf(json, sizeof json, "{\"method\":\"clean_data\",\"training_file\":\"%s\",\"output_dir\":\"%s\","
                 "\"hygiene\":{\"min_words\":2}}", bad[k], out);
        T_EQ_INT(t_train_json_at(json, NULL, NULL, &res, &fe), k ? AL_EFORMAT : AL_ENOENT);
        T_STR_EQ(fe.field, "training_file");
        if (k) snprintf(want, sizeof want, "training_file: no row is in a recognised format");
        else snprintf(want, sizeof want, "%s: No such file or directory", missing);
        T_STR_EQ(fe.msg, want);
    }
    /* a training job's option: the near-duplicate never reaches training */
    snprintf(base, sizeof base, "%s/base", t_tmpdir());
    t_shape sh = {AL_ARCH_LLAMA, .layers = 1, .C = 16, .heads = 2, .kv_heads = 2, .FF = 32, .max_T = 1024};
    T_OK(t_save_byte_model(sh, 1, base, err));
    snprintf(json, sizeof json, "{\"method\":\"sft\",\"model\":\"%s\",\"training_file\":\"%s\",\"hygiene\":"
             "{\"near_duplicates\":true,\"min_words\":4},\"hyperparameters\":{\"max_steps\":1,\"batch_size\":1,"
             "\"max_length\":1024,\"dedupe\":true}}", base, in);
    memset(&s, 0, sizeof s);
    T_OK(t_train_json(json, NULL, &cb, &res, err));
    T_TRUE(strstr(s.events, "hygiene kept 1 of 3 rows, 1 near-duplicates, 1 too short") != NULL);
    if (!strstr(s.events, "hygiene kept 1 of 3 rows")) fprintf(stderr, "%s", s.events);
    /* an evaluation measures its file as given */
    snprintf(json, sizeof json, "{\"method\":\"evaluate\",\"model\":\"m\",\"training_file\":\"f\",\"output_dir\":\"o\","
             "\"hygiene\":{\"min_words\":3}}");
    T_EQ_INT(al_job_parse(&j, json, strlen(json), err), AL_EINVAL);
    T_TRUE(strstr(err, "hygiene: filters what a job trains on or generates from") == err);
}

int main(void) {
    test_near_duplicates();
    test_decontamination();
    test_length_language();
    test_parse_errors();
    test_jobs();
    return t_done();
}

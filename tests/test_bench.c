/* Benchmarks (lib/train/bench.c) on hand-made items and constructed models
 * whose answers are known.
 *
 * The constructed model is a GPT-2 whose final layer norm has weight 0 and
 * bias e_0: every position's hidden state is e_0, so its next-token
 * distribution is the same everywhere, softmax(wte[:, 0]) (the head is tied
 * to the embeddings). With wte[' '][0] = 3, wte['b'][0] = 2.2, wte['a'][0] = 1
 * and every other entry 0, the log-likelihood of a continuation is the sum of
 * its bytes' log p, worked out here in double from that formula alone. The
 * items are crafted so acc, acc_norm (per character, as the harness's
 * len(choice)) and acc_bytes (per UTF-8 byte) pick differently: " a" beats
 * " bb" on the sum (-7.33 > -9.60) but not per character (-7.33 < -4.80).
 * A second model prefers '7' above all, so greedy completions are "777...":
 * the generative path's graders, answer lists and row graders are checked
 * on it. Then evaluate jobs and an SFT job's eval_tasks report results
 * through the callbacks, and bad files are refused by line. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "model/model.h"
#include "t.h"
#include "t_model.h"
#include "t_train.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/bench.h"

static char g_err[AL_ERRLEN];

/* Saves the constructed model: logits[v] = wte[v][0] at every position. */
static void unigram_model(const char *dir, const int *tok, const float *logit, int k) {
    t_shape s = {AL_ARCH_GPT2, .layers = 1, .C = 16, .heads = 2, .FF = 32, .max_T = 64};
    al_model_config c = t_byte_config(s);
    al_model *m = al_model_new(&c, NULL, g_err);
    T_TRUE(m != NULL);
    if (!m) return;
    al_model_init(m, 7);
    int n;
    al_param *p = al_model_params(m, &n);
    for (int i = 0; i < n; i++) {
        if (!strcmp(p[i].name, "transformer.wte.weight"))
            for (int v = 0; v < 260; v++) {
                p[i].w[(size_t)v * 16] = 0;
                for (int j = 0; j < k; j++)
                    if (tok[j] == v) p[i].w[(size_t)v * 16] = logit[j];
            }
        if (!strcmp(p[i].name, "transformer.ln_f.weight")) memset(p[i].w, 0, p[i].n * sizeof(float));
        if (!strcmp(p[i].name, "transformer.ln_f.bias")) {
            memset(p[i].w, 0, p[i].n * sizeof(float));
            p[i].w[0] = 1;
        }
    }
    T_OK(al_model_save(m, dir, g_err));
    al_model_free(m);
}

/* log p(byte) of the first constructed model, by hand. */
static double lp(int byte) {
    double z = exp(3) + exp(2.2) + exp(1) + 257;
    double l = byte == ' ' ? 3 : byte == 'b' ? 2.2 : byte == 'a' ? 1 : 0;
    return l - log(z);
}

static double ll_of(const char *s) {
    double t = 0;
    for (; *s; s++) t += lp((unsigned char)*s);
    return t;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    T_TRUE(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static double metric(const json_t *res, const char *name) {
    const json_t *v = json_object_get(json_object_get(res, "metrics"), name);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* An eval task over file with the settings the tests vary. */
static al_eval_task task_of(const char *file, const char *type) {
    al_eval_task t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "t");
    snprintf(t.file, sizeof t.file, "%s", file);
    snprintf(t.type, sizeof t.type, "%s", type);
    snprintf(t.delimiter, sizeof t.delimiter, " ");
    snprintf(t.fewshot_delimiter, sizeof t.fewshot_delimiter, "\n\n");
    t.fewshot_seed = 1234;
    t.n_until = -1;
    al_grader_cfg_default(&t.grader);
    return t;
}

/* Loads file as task type with the model's tokenizer and runs it. */
static json_t *run(const char *model, const char *file, const char *type, const char *grader_json, int max_new,
                   double *lls) {
    al_eval_task t = task_of(file, type);
    t.max_new_tokens = max_new;
    if (grader_json) {
        json_t *g = json_loads(grader_json, JSON_DECODE_ANY, NULL);
        al_error ge;
        T_OK(al_grader_cfg_parse(&t.grader, g, "grader", &ge));
        json_decref(g);
    }
    al_tok *tok = NULL;
    al_chat *chat = NULL;
    al_model *m = NULL;
    al_bench *b = NULL;
    json_t *res = NULL;
    T_OK(al_tok_load(&tok, model, g_err));
    T_OK(al_chat_new(&chat, tok, NULL, g_err));
    T_OK(al_model_open_ex(&m, model, NULL, AL_OPEN_FROZEN, 0, g_err));
    if (!al_bench_load(&b, &t, chat, NULL, 64, "eval_tasks[0]", g_err)) {
        T_OK(al_model_reserve(m, 3, al_bench_longest(b), AL_MODEL_FORWARD_ONLY, g_err));
        T_OK(al_bench_run(b, m, 3, al_bench_longest(b), &res, lls, g_err));
    } else {
        fprintf(stderr, "load: %s\n", g_err);
    }
    al_bench_free(b);
    al_model_free(m);
    al_chat_free(chat);
    al_tok_free(tok);
    return res;
}

static void test_multiple_choice(const char *model, const char *tmp) {
    char file[1200];
    snprintf(file, sizeof file, "%s/mc.jsonl", tmp);
    write_file(file,
               "{\"question\": \"Q\", \"choices\": [\"a\", \"bb\"], \"answer\": 0}\n"
               "\n"
               "{\"query\": \"Q\", \"choices\": [\"b\", \"a\"], \"label\": \"b\"}\n"
               "{\"prompt\": \"Q\", \"choices\": [\"a\", \"bb\", \"b\"], \"gold\": 2}\n"
               "{\"context\": \"Q \", \"choices\": [\"\xc3\xa9\xc3\xa9\", \"zzz\"], \"answer\": \"A\"}\n");
    double lls[9];
    json_t *res = run(model, file, "multiple_choice", NULL, 0, lls);
    T_TRUE(res != NULL);
    if (!res) return;
    /* each log-likelihood against the formula; the context's trailing space
     * moves to the continuation (_encode_pair): "  éé" and "  zzz" */
    const char *cont[9] = {" a", " bb", " b", " a", " a", " bb", " b", "  \xc3\xa9\xc3\xa9", "  zzz"};
    for (int i = 0; i < 9; i++) T_NEAR(lls[i], ll_of(cont[i]), 1e-4);
    T_EQ_INT(json_integer_value(json_object_get(res, "n")), 4);
    T_STR_EQ(json_string_value(json_object_get(res, "type")), "multiple_choice");
    /* acc: [1, 1, 1, 0]; acc_norm (per character): [0, 1, 0, 0]; acc_bytes: [0, 1, 0, 1] */
    T_NEAR(metric(res, "acc"), 0.75, 1e-12);
    T_NEAR(metric(res, "acc_norm"), 0.25, 1e-12);
    T_NEAR(metric(res, "acc_bytes"), 0.5, 1e-12);
    /* the harness's stderr: sample sd / sqrt(n) */
    T_NEAR(metric(res, "acc_stderr"), sqrt(0.75 * 0.25 * 4 / 3) / 2, 1e-12);
    T_NEAR(metric(res, "acc_norm_stderr"), sqrt(0.75 * 0.25 * 4 / 3) / 2, 1e-12);
    json_decref(res);
    /* a JSON array file reads the same */
    snprintf(file, sizeof file, "%s/mc.json", tmp);
    write_file(file, "[{\"question\": \"Q\", \"choices\": [\"a\", \"bb\"], \"answer\": 0},"
                     " {\"question\": \"Q\", \"choices\": [\"a\", \"bb\"], \"answer\": \"bb\"}]");
    res = run(model, file, "multiple_choice", NULL, 0, NULL);
    T_NEAR(metric(res, "acc"), 0.5, 1e-12);
    T_NEAR(metric(res, "acc_norm"), 0.5, 1e-12);
    json_decref(res);
    char type[32];
    T_OK(al_bench_detect(file, type, g_err));
    T_STR_EQ(type, "multiple_choice");
}

static void test_generative(const char *model7, const char *tmp) {
    char file[1200];
    snprintf(file, sizeof file, "%s/gen.jsonl", tmp);
    /* greedy completions are "7", "77", "777" ... (no EOS: '7' always wins) */
    write_file(file,
               "{\"prompt\": \"x\", \"answer\": \"777\"}\n"
               "{\"prompt\": \"y\", \"answer\": 77}\n"
               "{\"prompt\": \"z\", \"answer\": [\"8\", \"777.0\"]}\n"
               "{\"prompt\": \"w\", \"answer\": \"7\", \"grader\": {\"extract\": {\"regex\": \"7(7)7\"}, \"compare\": \"exact\"}}\n");
    json_t *res = run(model7, file, "generative", "\"numeric\"", 3, NULL);
    T_TRUE(res != NULL);
    T_STR_EQ(json_string_value(json_object_get(res, "type")), "generative");
    T_NEAR(metric(res, "exact_match"), 0.75, 1e-12); /* 777: yes; 77: no; 777.0 numerically: yes; the regex: yes */
    T_NEAR(metric(res, "extracted"), 1, 0);
    json_decref(res);
    res = run(model7, file, "generative", "\"exact\"", 3, NULL);
    T_NEAR(metric(res, "exact_match"), 0.5, 1e-12); /* "777.0" is not "777" exactly */
    json_decref(res);
    char type[32];
    T_OK(al_bench_detect(file, type, g_err));
    T_STR_EQ(type, "generative");
}

static void test_bad_files(const char *model, const char *tmp) {
    struct { const char *rows, *type, *err; } bad[] = {
        {"{\"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n{\"question\": \"Q\", \"choices\": [\"a\"], \"answer\": 0}\n",
         "multiple_choice", "eval_tasks[0]: line 2: choices must be a list of 2 to 1000 strings"},
        {"{\"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}\n", "multiple_choice",
         "eval_tasks[0]: line 1: the answer is neither a choice nor an index below 2"},
        {"{\"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"answer\": \"c\"}\n", "multiple_choice",
         "eval_tasks[0]: line 1: the answer is neither a choice nor an index below 2"},
        {"{\"choices\": [\"a\", \"b\"], \"answer\": 0}\n", "multiple_choice",
         "eval_tasks[0]: line 1: needs a \"question\" (or query, prompt, context) string"},
        {"{\"question\": \"Q\", \"choices\": [\"a\", \"b\"]}\n", "multiple_choice",
         "eval_tasks[0]: line 1: needs \"answer\" (or label, gold, answerKey): the right choice's index, text or label"},
        {"{\"question\": \"Q\", \"choices\": [\"a\", \"\"], \"answer\": 0}\n", "multiple_choice",
         "eval_tasks[0]: line 1: an empty choice"},
        {"\n{\"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n{oops\n", "multiple_choice",
         "eval_tasks[0]: file: line 3: invalid JSON at column"},
        {"[1]\n", "multiple_choice", "eval_tasks[0]: line 1: must be a JSON object"},
        {"{\"prompt\": \"p\"}\n", "generative",
         "eval_tasks[0]: line 1: needs \"answer\": a string, a number or a list of strings"},
        {"{\"prompt\": \"p\", \"answer\": \"x\", \"grader\": \"numeric\"}\n", "generative",
         "eval_tasks[0]: line 1: the answer 'x' is not a number (the grader compares numbers)"},
        {"{\"prompt\": \"p\", \"answer\": \"1\", \"grader\": {\"compare\": \"fuzzy\"}}\n", "generative",
         "eval_tasks[0]: line 1: grader.compare: must be"},
        {"", "generative", "eval_tasks[0]: no rows"},
    };
    char file[1200];
    snprintf(file, sizeof file, "%s/bad.jsonl", tmp);
    al_tok *tok = NULL;
    al_chat *chat = NULL;
    T_OK(al_tok_load(&tok, model, g_err));
    T_OK(al_chat_new(&chat, tok, NULL, g_err));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(file, bad[i].rows);
        al_eval_task t = task_of(file, bad[i].type);
        al_bench *b = NULL;
        T_TRUE(al_bench_load(&b, &t, chat, NULL, 64, "eval_tasks[0]", g_err) != AL_OK);
        T_REPORT_(!strncmp(g_err, bad[i].err, strlen(bad[i].err)), "error \"%s\" starts with \"%s\"", g_err, bad[i].err);
        al_bench_free(b);
    }
    al_chat_free(chat);
    al_tok_free(tok);
}

/* ---- few-shot contexts, stop strings, the harness's datasets' shapes --------------- */

typedef struct loaded {
    al_tok *tok;
    al_chat *chat;
    al_bench *b;
    int rc;
} loaded;

static loaded load(const char *model, const al_eval_task *t, const char *tmpl) {
    loaded l = {0};
    T_OK(al_tok_load(&l.tok, model, g_err));
    T_OK(al_chat_new(&l.chat, l.tok, tmpl ? al_chat_builtin(tmpl) : NULL, g_err));
    l.rc = al_bench_load(&l.b, t, l.chat, NULL, 512, "eval_tasks[0]", g_err);
    return l;
}

static void unload(loaded *l) {
    al_bench_free(l->b);
    al_chat_free(l->chat);
    al_tok_free(l->tok);
}

/* Item i's context (and choice c's continuation) as text. */
static int g_keep_special; /* text_of shows special tokens (chat templates) */

static const char *text_of(const loaded *l, int i, int c, int part) {
    static char out[2][2048];
    const int32_t *ids;
    int n, ctx;
    out[part][0] = 0;
    if (!l->b || al_bench_item_tokens(l->b, i, c, &ids, &n, &ctx)) return "(none)";
    char *txt = NULL;
    size_t len;
    int a = part ? ctx : 0, z = part ? n : ctx;
    if (al_tok_decode(l->tok, ids + a, z - a, !g_keep_special, &txt, &len)) return "(undecodable)";
    snprintf(out[part], sizeof out[part], "%s", txt);
    free(txt);
    return out[part];
}

static void test_fewshot(const char *model, const char *model7, const char *tmp) {
    char own[1200], shots[1200], gen[1200];
    snprintf(own, sizeof own, "%s/fs.jsonl", tmp);
    snprintf(shots, sizeof shots, "%s/shots.jsonl", tmp);
    snprintf(gen, sizeof gen, "%s/fsgen.jsonl", tmp);
    write_file(own, "{\"question\": \"Q1\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n"
                    "{\"question\": \"Q2\", \"choices\": [\"a\", \"b\"], \"answer\": 1}\n"
                    "{\"question\": \"Q3 \", \"choices\": [\"a\", \"b\"], \"answer\": \"a\"}\n");
    /* first_n from the row's own file: the first two rows drawn, the row itself dropped */
    al_eval_task t = task_of(own, "multiple_choice");
    t.num_fewshot = 1;
    t.fewshot_first_n = 1;
    loaded l = load(model, &t, NULL);
    T_OK(l.rc);
    T_STR_EQ(text_of(&l, 0, 0, 0), "Q2 b\n\nQ1");
    T_STR_EQ(text_of(&l, 0, 1, 1), " b");
    T_STR_EQ(text_of(&l, 1, 0, 0), "Q1 a\n\nQ2");
    T_STR_EQ(text_of(&l, 2, 0, 0), "Q1 a\n\nQ3"); /* the trailing space goes to the continuation */
    T_STR_EQ(text_of(&l, 2, 0, 1), "  a");
    unload(&l);
    /* from fewshot_file: its first rows, nothing left out; two shots in order */
    write_file(shots, "{\"question\": \"S1\", \"choices\": [\"x\", \"y\"], \"answer\": 1}\n"
                      "{\"question\": \"S2\", \"choices\": [\"x\", \"y\"], \"answer\": 0}\n"
                      "{\"question\": \"S3\", \"choices\": [\"x\", \"y\"], \"answer\": 0}\n");
    snprintf(t.fewshot_file, sizeof t.fewshot_file, "%s", shots);
    t.num_fewshot = 2;
    snprintf(t.fewshot_delimiter, sizeof t.fewshot_delimiter, "\n###\n");
    l = load(model, &t, NULL);
    T_STR_EQ(text_of(&l, 1, 0, 0), "S1 y\n###\nS2 x\n###\nQ2");
    unload(&l);
    /* the default sampler: seeded draws without the row itself, the same
     * on every load; with two rows each row's shot is the other */
    t = task_of(own, "multiple_choice");
    t.num_fewshot = 2;
    const char *first[3];
    char keep[3][256];
    l = load(model, &t, NULL);
    for (int i = 0; i < 3; i++) {
        snprintf(keep[i], sizeof keep[i], "%s", text_of(&l, i, 0, 0));
        first[i] = keep[i];
        char self[8];
        snprintf(self, sizeof self, "\n\nQ%d", i + 1);
        int others = 0;
        for (int q = 1; q <= 3; q++) {
            char sh[8];
            snprintf(sh, sizeof sh, "Q%d", q);
            others += q != i + 1 && strstr(keep[i], sh) != NULL;
        }
        T_EQ_INT(others, 2);
        T_TRUE(strlen(keep[i]) > strlen(self) && !strcmp(keep[i] + strlen(keep[i]) - strlen(self) + 2, self + 2));
    }
    unload(&l);
    l = load(model, &t, NULL);
    for (int i = 0; i < 3; i++) T_STR_EQ(text_of(&l, i, 0, 0), first[i]);
    unload(&l);
    t.num_fewshot = 3;
    l = load(model, &t, NULL);
    T_EQ_INT(l.rc, AL_EINVAL);
    T_STR_EQ(g_err, "eval_tasks[0]: num_fewshot 3: the file holds only 2 other rows");
    unload(&l);
    /* generative: the shots as chat turns, and stop strings */
    write_file(gen, "{\"prompt\": \"x\", \"answer\": \"77\"}\n{\"prompt\": \"y\", \"answer\": \"7\"}\n");
    t = task_of(gen, "generative");
    t.num_fewshot = 1;
    t.chat_template = 1;
    t.fewshot_multiturn = 1;
    g_keep_special = 1;
    l = load(model7, &t, "chatml");
    T_STR_EQ(text_of(&l, 0, 0, 0), "<|im_start|>user\ny<|im_end|>\n<|im_start|>assistant\n7<|im_end|>\n"
                                   "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n");
    unload(&l);
    t.fewshot_multiturn = 0;
    l = load(model7, &t, "chatml");
    T_STR_EQ(text_of(&l, 0, 0, 0), "<|im_start|>user\ny 7\n\nx<|im_end|>\n<|im_start|>assistant\n");
    unload(&l);
    g_keep_special = 0;
    /* greedy completions are "77777" (a number found in each); ended before
     * their first "7" they are empty (none found) */
    for (int k = 0; k < 2; k++) {
        t = task_of(gen, "generative");
        t.max_new_tokens = 5;
        json_t *g = json_string("last_number");
        al_error ge;
        T_OK(al_grader_cfg_parse(&t.grader, g, "grader", &ge));
        json_decref(g);
        snprintf(t.until[0], sizeof t.until[0], "7");
        t.n_until = k;
        l = load(model7, &t, NULL);
        al_model *m = NULL;
        json_t *res = NULL;
        T_OK(al_model_open_ex(&m, model7, NULL, AL_OPEN_FROZEN, 0, g_err));
        if (l.b && m) {
            T_OK(al_model_reserve(m, 2, al_bench_longest(l.b), AL_MODEL_FORWARD_ONLY, g_err));
            T_OK(al_bench_run(l.b, m, 2, al_bench_longest(l.b), &res, NULL, g_err));
        }
        T_NEAR(metric(res, "extracted"), k ? 0 : 1, 0);
        json_decref(res);
        al_model_free(m);
        unload(&l);
    }
    /* a bad shot row is reported in the file it comes from */
    write_file(shots, "{\"question\": \"S1\", \"choices\": [\"x\", \"y\"], \"answer\": 1}\n"
                      "{\"question\": \"S2\", \"choices\": [\"x\", \"y\"]}\n");
    t = task_of(own, "multiple_choice");
    t.num_fewshot = 1;
    snprintf(t.fewshot_file, sizeof t.fewshot_file, "%s", shots);
    l = load(model, &t, NULL);
    T_EQ_INT(l.rc, AL_EINVAL);
    T_TRUE(!strncmp(g_err, "eval_tasks[0]: fewshot_file: line 2: needs \"answer\"", 50));
    unload(&l);
    /* job fields */
    static const struct { const char *e, *msg; } bad[] = {
        {"\"num_fewshot\":65", "eval_tasks[0].num_fewshot: must be an integer in [0, 64]"},
        {"\"fewshot_file\":\"s\"", "eval_tasks[0].num_fewshot: is 0, so the few-shot settings have no use"},
        {"\"num_fewshot\":1,\"fewshot_sampler\":\"balanced\"", "eval_tasks[0].fewshot_sampler: must be"},
        {"\"num_fewshot\":1,\"fewshot_as_multiturn\":true", "eval_tasks[0].fewshot_as_multiturn: needs chat_template"},
        {"\"until\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "eval_tasks[0].until: must be a list of at most 4"},
        {"\"until\":[\"\"]", "eval_tasks[0].until[0]: must be a non-empty string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"method\":\"evaluate\",\"model\":\"m\",\"output_dir\":\"o\","
                 "\"eval_tasks\":[{\"file\":\"f\",\"name\":\"n\",%s}]}", bad[i].e);
        al_job j;
        T_EQ_INT(al_job_parse(&j, json, strlen(json), g_err), AL_EINVAL);
        T_REPORT_(!strncmp(g_err, bad[i].msg, strlen(bad[i].msg)), "%s: %s", bad[i].e, g_err);
    }
    const char *ok = "{\"method\":\"evaluate\",\"model\":\"m\",\"output_dir\":\"o\",\"eval_tasks\":[{\"file\":\"f\","
                     "\"name\":\"n\",\"num_fewshot\":5,\"fewshot_file\":\"s\",\"fewshot_sampler\":\"first_n\","
                     "\"fewshot_delimiter\":\"\\n\",\"until\":[\"Q:\"]}]}";
    al_job j;
    T_OK(al_job_parse(&j, ok, strlen(ok), g_err));
    T_EQ_INT(j.eval_tasks[0].num_fewshot, 5);
    T_STR_EQ(j.eval_tasks[0].fewshot_file, "s");
    T_EQ_INT(j.eval_tasks[0].fewshot_first_n, 1);
    T_STR_EQ(j.eval_tasks[0].fewshot_delimiter, "\n");
    T_EQ_INT(j.eval_tasks[0].n_until, 1);
    al_job_deinit(&j);
}

/* ARC's, OpenBookQA's and HellaSwag's rows as the Hub has them. */
static void test_dataset_shapes(const char *model, const char *tmp) {
    char file[1200];
    snprintf(file, sizeof file, "%s/shapes.jsonl", tmp);
    write_file(file, "{\"question\": \"Q\", \"choices\": {\"text\": [\"a\", \"bb\"], \"label\": [\"A\", \"B\"]}, "
                     "\"answerKey\": \"B\"}\n"
                     "{\"question_stem\": \"Q\", \"choices\": {\"text\": [\"bb\", \"a\"], \"label\": [\"1\", \"2\"]}, "
                     "\"answerKey\": \"2\"}\n"
                     "{\"ctx\": \"Q\", \"endings\": [\"a\", \"bb\"], \"label\": \"0\"}\n");
    char type[32];
    T_OK(al_bench_detect(file, type, g_err));
    T_STR_EQ(type, "multiple_choice");
    double lls[6];
    json_t *res = run(model, file, "", NULL, 0, lls);
    /* " a" wins on the sum: wrong for row 1 (B), right for rows 2 (label "2") and 3 */
    T_NEAR(metric(res, "acc"), 2.0 / 3, 1e-12);
    T_NEAR(lls[0], ll_of(" a"), 1e-4);
    T_NEAR(lls[2], ll_of(" bb"), 1e-4);
    json_decref(res);
    const char *up = "{\"question\": \"Q\", \"choices\": {\"text\": [\"a\", \"b\"], \"label\": [\"A\"]}, \"answerKey\": \"A\"}\n";
    json_t *rep = NULL;
    T_OK(al_bench_check_mem(up, strlen(up), &rep, g_err));
    T_EQ_INT(json_integer_value(json_object_get(rep, "n_errors")), 1);
    T_TRUE(strstr(json_string_value(json_object_get(json_array_get(json_object_get(rep, "errors"), 0), "message")),
                  "choices.label must give one label per choices.text") != NULL);
    json_decref(rep);
}

/* ---- through the runners ---------------------------------------------------------- */

typedef struct seen {
    int n;
    char roles[16][16];
    long steps[16];
    double acc[16];
    double last_acc, last_acc_b;
} seen;

static void on_result(void *ud, long step, const json_t *r) {
    seen *s = ud;
    if (s->n < 16) {
        snprintf(s->roles[s->n], sizeof s->roles[0], "%s", json_string_value(json_object_get(r, "model")));
        s->steps[s->n] = step;
        s->acc[s->n] = metric(r, json_object_get(json_object_get(r, "metrics"), "acc") ? "acc" : "exact_match");
        s->n++;
    }
}

static void on_log(void *ud, long step, double epoch, const al_metric *m, int n) {
    seen *s = ud;
    (void)step;
    (void)epoch;
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].name, "eval/mc/acc")) s->last_acc = m[i].value;
        if (!strcmp(m[i].name, "eval/mc/acc_b")) s->last_acc_b = m[i].value;
    }
}

static void test_runners(const char *model, const char *model7, const char *tmp) {
    char json[4096], mc[1200];
    snprintf(mc, sizeof mc, "%s/mc.jsonl", tmp);
    /* evaluate: two models on a benchmark file and a built-in task, no prompts */
    snprintf(json, sizeof json,
             "{\"method\":\"evaluate\",\"model\":\"%s\",\"model_b\":\"%s\",\"output_dir\":\"%s/ev\","
             "\"eval_tasks\":[{\"file\":\"%s\",\"name\":\"mc\"},{\"name\":\"addition2\",\"rows\":4}]}",
             model, model7, tmp, mc);
    seen s;
    memset(&s, 0, sizeof s);
    al_train_cb cb = {.eval_result = on_result, .log = on_log, .ud = &s};
    T_OK(t_train_json(json, NULL, &cb, NULL, g_err));
    T_EQ_INT(s.n, 4);
    T_STR_EQ(s.roles[0], "model");
    T_STR_EQ(s.roles[1], "model_b");
    T_NEAR(s.acc[0], 0.75, 1e-12);
    T_NEAR(s.last_acc, 0.75, 1e-12);
    T_TRUE(s.last_acc_b >= 0 && s.last_acc_b <= 1);
    T_NEAR(s.acc[2], 0, 0); /* "777..." is no sum */
    /* an SFT job's eval_tasks: the start at step 0, the end at the last step */
    snprintf(json, sizeof json,
             "{\"method\":\"sft\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":16},"
             "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":4,\"max_length\":12,\"learning_rate\":0},"
             "\"eval_tasks\":[{\"file\":\"%s\",\"name\":\"mc\"}]}",
             model, mc);
    memset(&s, 0, sizeof s);
    T_OK(t_train_json(json, NULL, &cb, NULL, g_err));
    T_EQ_INT(s.n, 2);
    T_EQ_INT(s.steps[0], 0);
    T_EQ_INT(s.steps[1], 2);
    T_NEAR(s.acc[0], 0.75, 1e-12); /* max_length 12 does not cut the benchmark's rows */
    T_NEAR(s.acc[1], 0.75, 1e-12); /* learning rate 0: unchanged */
    /* a GRPO job's eval_tasks */
    snprintf(json, sizeof json,
             "{\"method\":\"grpo\",\"model\":\"%s\",\"task\":{\"name\":\"addition2\",\"rows\":16},"
             "\"reward\":{\"verifiable\":1},\"hyperparameters\":{\"max_steps\":1,\"batch_size\":4,"
             "\"num_generations\":2,\"max_completion_length\":3,\"learning_rate\":0},"
             "\"eval_tasks\":[{\"file\":\"%s\",\"name\":\"mc\",\"type\":\"multiple_choice\"}]}",
             model, mc);
    memset(&s, 0, sizeof s);
    T_OK(t_train_json(json, NULL, &cb, NULL, g_err));
    T_EQ_INT(s.n, 2);
    T_NEAR(s.acc[1], 0.75, 1e-12);
    /* job fields */
    al_job j;
    const char *bad = "{\"method\":\"evaluate\",\"model\":\"m\",\"output_dir\":\"o\","
                      "\"eval_tasks\":[{\"file\":\"f\",\"name\":\"n\",\"type\":\"mcq\"}]}";
    T_EQ_INT(al_job_parse(&j, bad, strlen(bad), g_err), AL_EINVAL);
    T_STR_EQ(g_err, "eval_tasks[0].type: must be \"loss\", \"multiple_choice\" or \"generative\"");
    bad = "{\"method\":\"evaluate\",\"model\":\"m\",\"output_dir\":\"o\","
          "\"eval_tasks\":[{\"file\":\"f\",\"name\":\"n\",\"grader\":{\"extract\":\"first\"}}]}";
    T_EQ_INT(al_job_parse(&j, bad, strlen(bad), g_err), AL_EINVAL);
    T_TRUE(!strncmp(g_err, "eval_tasks[0].grader.extract: must be", 37));
    bad = "{\"method\":\"evaluate\",\"model\":\"m\",\"output_dir\":\"o\"}";
    T_EQ_INT(al_job_parse(&j, bad, strlen(bad), g_err), AL_EINVAL);
    T_STR_EQ(g_err, "training_file: is required (or training_files, or a built-in task)");
}

int main(void) {
    al_pool_init(2);
    const char *tmp = t_tmpdir();
    char model[1100], model7[1100];
    snprintf(model, sizeof model, "%s/uni", tmp);
    snprintf(model7, sizeof model7, "%s/seven", tmp);
    int toks[3] = {' ', 'b', 'a'};
    float logits[3] = {3, 2.2f, 1};
    unigram_model(model, toks, logits, 3);
    int t7[1] = {'7'};
    float l7[1] = {9};
    unigram_model(model7, t7, l7, 1);
    test_multiple_choice(model, tmp);
    test_generative(model7, tmp);
    test_bad_files(model, tmp);
    test_fewshot(model, model7, tmp);
    test_dataset_shapes(model, tmp);
    test_runners(model, model7, tmp);
    return t_done();
}

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

/* Loads file as task type with the model's tokenizer and runs it. */
static json_t *run(const char *model, const char *file, const char *type, const char *grader_json, int max_new,
                   double *lls) {
    al_eval_task t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "t");
    snprintf(t.file, sizeof t.file, "%s", file);
    snprintf(t.type, sizeof t.type, "%s", type);
    snprintf(t.delimiter, sizeof t.delimiter, " ");
    t.max_new_tokens = max_new;
    al_grader_cfg_default(&t.grader);
    if (grader_json) {
        json_t *g = json_loads(grader_json, JSON_DECODE_ANY, NULL);
        T_OK(al_grader_cfg_parse(&t.grader, g, "grader", g_err));
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
         "eval_tasks[0]: line 1: needs \"answer\" (or label, gold): the right choice's index or text"},
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
        al_eval_task t;
        memset(&t, 0, sizeof t);
        snprintf(t.name, sizeof t.name, "t");
        snprintf(t.file, sizeof t.file, "%s", file);
        snprintf(t.type, sizeof t.type, "%s", bad[i].type);
        al_grader_cfg_default(&t.grader);
        al_bench *b = NULL;
        T_TRUE(al_bench_load(&b, &t, chat, NULL, 64, "eval_tasks[0]", g_err) != AL_OK);
        T_REPORT_(!strncmp(g_err, bad[i].err, strlen(bad[i].err)), "error \"%s\" starts with \"%s\"", g_err, bad[i].err);
        al_bench_free(b);
    }
    al_chat_free(chat);
    al_tok_free(tok);
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
    test_runners(model, model7, tmp);
    return t_done();
}

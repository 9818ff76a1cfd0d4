/* Datasets: format detection for every shape (standard and conversational),
 * one test per validation error code, duplicates, empty targets, token
 * statistics, truncation and drops at max_length, the mix, and 100k rows
 * in seconds. Uses the byte tokenizer (one id per byte, EOS 256), so token
 * counts are worked out by hand: BOS (when the tokenizer adds it) + bytes +
 * EOS. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io.h"
#include "t.h"
#include "t_jinja.h"
#include "text/dataset.h"

static const char *data_path(const char *name) {
    static char buf[4096];
    const char *f = __FILE__, *slash = strrchr(f, '/');
    if (slash) snprintf(buf, sizeof buf, "%.*s/data/%s", (int)(slash - f), f, name);
    else snprintf(buf, sizeof buf, "data/%s", name);
    return buf;
}

static al_tok *g_tok;
static al_chat *g_chat;
static int g_b;   /* 1 when the tokenizer adds BOS */

static al_dataset *rd(const char *jsonl, const al_chat *c, const char *method, int max_length,
                      int dedupe) {
    al_data_opts o = {0};
    o.method = method;
    o.max_length = max_length;
    o.dedupe = dedupe;
    al_dataset *d = NULL;
    char err[AL_ERRLEN] = "";
    int rc = al_dataset_read_mem(jsonl, strlen(jsonl), c, &o, &d, err);
    T_OK(rc);
    if (rc != AL_OK) fprintf(stderr, "read: %s\n", err);
    return d;
}

static long rep_int(const al_dataset *d, const char *key) {
    return (long)json_integer_value(json_object_get(al_dataset_report(d), key));
}

static const json_t *error_at(const al_dataset *d, int line) {
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(al_dataset_report(d), "errors"), i, e) {
        if (json_integer_value(json_object_get(e, "line")) == line) return e;
    }
    return NULL;
}

static const char *code_at(const al_dataset *d, int line) {
    const json_t *e = error_at(d, line);
    return e ? json_string_value(json_object_get(e, "code")) : "(none)";
}

static int has_warning(const al_dataset *d, int line, const char *code) {
    size_t i;
    const json_t *w;
    json_array_foreach(json_object_get(al_dataset_report(d), "warnings"), i, w) {
        if (json_integer_value(json_object_get(w, "line")) == line &&
            strcmp(json_string_value(json_object_get(w, "code")), code) == 0)
            return 1;
    }
    return 0;
}

static int seq_eq(const al_seq *a, const al_seq *b) {
    return a->n == b->n && memcmp(a->ids, b->ids, (size_t)a->n * sizeof *a->ids) == 0 &&
           memcmp(a->mask, b->mask, (size_t)a->n) == 0;
}

/* The trained tokens of a sequence as text (byte tokenizer; EOS as '$',
 * other special tokens by name). */
static const char *trained(const al_seq *s) {
    static char buf[1024];
    size_t k = 0;
    for (int i = 0; i < s->n && k < 900; i++) {
        if (!s->mask[i]) continue;
        int32_t id = s->ids[i];
        if (id < 256) buf[k++] = (char)id;
        else if (id == al_tok_eos(g_tok)) buf[k++] = '$';
        else k += (size_t)snprintf(buf + k, sizeof buf - k, "%s", al_tok_str(g_tok, id));
    }
    buf[k] = 0;
    return buf;
}

/* ---- one test per error code ------------------------------------------ */

#define MSG_OK "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n"
#define PC_OK "{\"prompt\":\"p\",\"completion\":\"c\"}\n"

static const struct code_case {
    const char *code, *field, *method, *jsonl;
    int line;
} CASES[] = {
    {"invalid_json", "", NULL, PC_OK PC_OK "{\"prompt\": \"p\", \"completion\": \n", 3},
    {"data_type", "", NULL, PC_OK PC_OK "[\"prompt\", \"completion\"]\n", 3},
    {"unrecognized_format", "", NULL, "{\"question\":\"q\",\"answer\":\"a\"}\n", 1},
    {"missing_field", "completion", "sft", PC_OK PC_OK "{\"prompt\":\"p\"}\n", 3},
    {"invalid_field_type", "completion", "sft", PC_OK PC_OK "{\"prompt\":\"p\",\"completion\":5}\n", 3},
    {"missing_messages_list", "messages", "sft", MSG_OK MSG_OK "{\"messages\":\"hi\"}\n", 3},
    {"message_missing_key", "messages[1]", "sft",
     MSG_OK MSG_OK "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"content\":\"a\"}]}\n", 3},
    {"message_unrecognized_key", "messages[0]", "sft",
     MSG_OK MSG_OK
     "{\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"lang\":\"en\"},{\"role\":\"assistant\","
     "\"content\":\"a\"}]}\n",
     3},
    {"unrecognized_role", "messages[0]", "sft",
     MSG_OK MSG_OK
     "{\"messages\":[{\"role\":\"human\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n",
     3},
    {"missing_content", "messages[1]", "sft",
     MSG_OK MSG_OK
     "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":7}]}\n",
     3},
    {"example_missing_assistant_message", "messages", "sft",
     MSG_OK MSG_OK "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}\n", 3},
    {"invalid_weight", "messages[1]", "sft",
     MSG_OK MSG_OK
     "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\","
     "\"weight\":0.5}]}\n",
     3},
    {"invalid_label", "label", "kto",
     "{\"prompt\":\"p\",\"completion\":\"c\",\"label\":true}\n"
     "{\"prompt\":\"p\",\"completion\":\"d\",\"label\":false}\n"
     "{\"prompt\":\"p\",\"completion\":\"e\",\"label\":\"good\"}\n",
     3},
    {"invalid_ranking", "ranking", "reward_model",
     "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ranking\":[1,0]}\n"
     "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\",\"c\"],\"ranking\":[0,0,1]}\n",
     2},
    {"invalid_rating", "ratings", "dpo",
     "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ratings\":[5,2]}\n"
     "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ratings\":[6,2]}\n",
     2},
    {"identical_responses", "rejected", "dpo",
     "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
     "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"a\"}\n",
     2},
    {"empty_target", "completion", "sft", PC_OK PC_OK "{\"prompt\":\"p\",\"completion\":\" \\t\\n\"}\n", 3},
    {"unsupported_format", "", "dpo", MSG_OK MSG_OK, 0},
};

static void test_error_codes(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const struct code_case *k = &CASES[i];
        al_dataset *d = rd(k->jsonl, g_chat, k->method, 0, 0);
        if (!d) continue;
        const json_t *e = error_at(d, k->line);
        const char *code = e ? json_string_value(json_object_get(e, "code")) : "(none)";
        const char *field = e ? json_string_value(json_object_get(e, "field")) : "(none)";
        const char *msg = e ? json_string_value(json_object_get(e, "message")) : "";
        T_STR_EQ(code, k->code);
        T_STR_EQ(field, k->field);
        char want[32];
        snprintf(want, sizeof want, "line %d", k->line);
        /* Messages name the line and the field. */
        T_TRUE(k->line == 0 || strstr(msg, want) == msg);
        T_TRUE(!k->field[0] || strstr(msg, k->field) != NULL);
        if (!e || strcmp(code, k->code) != 0) fprintf(stderr, "  case %s: %s\n", k->code, msg);
        T_EQ_INT(json_integer_value(json_object_get(json_object_get(al_dataset_report(d),
                                                                    "error_counts"),
                                                    k->code)),
                 1);
        al_dataset_free(d);
    }
}

/* template_error: the chat template raises for this row. */
static void test_template_error(void) {
    static const char *RAISES =
        "{% for message in messages %}{% if message.role == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}<|im_start|>"
        "{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}";
    al_chat *c = NULL;
    char err[AL_ERRLEN];
    T_OK(al_chat_new(&c, g_tok, RAISES, err));
    al_dataset *d = rd(MSG_OK
                       "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\","
                       "\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n",
                       c, "sft", 0, 0);
    T_STR_EQ(code_at(d, 2), "template_error");
    T_TRUE(strstr(json_string_value(json_object_get(error_at(d, 2), "message")),
                  "System role not supported") != NULL);
    T_EQ_INT(d->n_ex, 1);
    al_dataset_free(d);
    al_chat_free(c);
}

/* The OpenAI-style file: one bad line per code, line numbers exact. */
static void test_bad_lines_file(void) {
    al_data_opts o = {0};
    o.method = "sft";
    al_dataset *d = NULL;
    char err[AL_ERRLEN];
    T_OK(al_dataset_read_file(data_path("bad_lines.jsonl"), g_chat, &o, &d, err));
    if (!d) return;
    static const char *want[19] = {
        NULL,  NULL, "invalid_json", "data_type", "missing_messages_list", "message_missing_key",
        "message_unrecognized_key", "unrecognized_role", "missing_content",
        "example_missing_assistant_message", "invalid_weight", "empty_target", "empty_target",
        NULL, NULL, NULL, "missing_messages_list", NULL, NULL};
    for (int line = 1; line <= 18; line++)
        T_STR_EQ(code_at(d, line), want[line] ? want[line] : "(none)");
    T_STR_EQ(json_string_value(json_object_get(al_dataset_report(d), "format")), "messages");
    T_EQ_INT(rep_int(d, "rows"), 17);          /* the blank line 14 is not a row */
    T_EQ_INT(rep_int(d, "valid_rows"), 5);
    T_EQ_INT(d->n_errors, 12);
    T_EQ_INT(rep_int(d, "empty_targets"), 2);
    T_EQ_INT(rep_int(d, "duplicates"), 1);     /* line 13 = line 1 up to whitespace */
    T_TRUE(has_warning(d, 13, "duplicate"));
    T_EQ_INT(d->n_ex, 5);                      /* counted, kept without dedupe */
    T_TRUE(d->conversational);
    T_EQ_INT(al_dataset_check(d, 0, err), AL_OK);
    T_EQ_INT(al_dataset_check(d, 1, err), AL_EFORMAT);
    T_TRUE(strstr(err, "12 bad rows; first: line 2") != NULL);
    const json_t *st = json_object_get(json_object_get(al_dataset_report(d), "mix"), "structure");
    T_EQ_INT(json_integer_value(json_object_get(st, "multi_turn")), 1);
    T_EQ_INT(json_integer_value(json_object_get(st, "single_turn")), 4);
    T_EQ_INT(json_integer_value(json_object_get(st, "with_system")), 1);
    /* Multi-turn row 15: both answers trained, weight 1 on row 17 honoured. */
    T_STR_EQ(trained(&d->ex[2].seq[0]), "4<|im_end|>\n6<|im_end|>\n$");
    T_STR_EQ(trained(&d->ex[3].seq[0]), "Paris.<|im_end|>\n$");
    al_dataset_free(d);

    o.dedupe = 1;
    T_OK(al_dataset_read_file(data_path("bad_lines.jsonl"), g_chat, &o, &d, err));
    T_EQ_INT(d->n_ex, 4);
    T_EQ_INT(rep_int(d, "deduplicated"), 1);
    al_dataset_free(d);

    T_EQ_INT(al_dataset_read_file(data_path("no_such_file.jsonl"), g_chat, &o, &d, err), AL_ENOENT);
}

/* ---- formats ----------------------------------------------------------- */

static void test_preference_variants(void) {
    al_data_opts o = {0};
    o.method = "dpo";
    al_dataset *d = NULL;
    char err[AL_ERRLEN];
    T_OK(al_dataset_read_file(data_path("preference.jsonl"), g_chat, &o, &d, err));
    if (!d) return;
    T_EQ_INT(d->format, AL_FMT_PREFERENCE);
    T_EQ_INT(d->kind, AL_BATCH_PAIR);
    T_EQ_INT(d->n_errors, 0);
    T_EQ_INT(d->n_ex, 5);
    if (d->n_ex == 5) {
        /* Implicit prompts split where TRL's extract_prompt does, and every
         * conversational spelling (TRL explicit, TRL implicit, OpenAI) gives
         * the same tokens. */
        T_TRUE(seq_eq(&d->ex[1].seq[0], &d->ex[0].seq[0]));
        T_TRUE(seq_eq(&d->ex[1].seq[1], &d->ex[0].seq[1]));
        T_STR_EQ(trained(&d->ex[0].seq[0]), " blue.$");
        T_STR_EQ(trained(&d->ex[0].seq[1]), " green.$");
        T_TRUE(seq_eq(&d->ex[3].seq[0], &d->ex[2].seq[0]));
        T_TRUE(seq_eq(&d->ex[4].seq[0], &d->ex[2].seq[0]));
        T_TRUE(seq_eq(&d->ex[4].seq[1], &d->ex[2].seq[1]));
        /* DPOTrainer (main) trains everything after the prompt's tokens,
         * the template's end of turn included, and adds no EOS to a
         * conversation */
        T_STR_EQ(trained(&d->ex[2].seq[0]), "It is blue.<|im_end|>\n");
        T_STR_EQ(trained(&d->ex[4].seq[1]), "It is green.<|im_end|>\n");
        T_EQ_INT(d->ex[4].line, 5);
    }
    const json_t *rep = al_dataset_report(d);
    T_STR_EQ(json_string_value(json_object_get(rep, "style")), "mixed");
    T_STR_EQ(json_string_value(json_object_get(rep, "kind")), "pair");
    const json_t *st = json_object_get(json_object_get(rep, "mix"), "structure");
    T_EQ_INT(json_integer_value(json_object_get(st, "explicit_prompt")), 2);
    T_EQ_INT(json_integer_value(json_object_get(st, "implicit_prompt")), 2);
    T_EQ_INT(json_integer_value(json_object_get(st, "openai")), 1);
    T_EQ_INT(json_integer_value(json_object_get(st, "conversational")), 3);

    /* Batched as TRL's collator: chosen rows, then rejected rows. */
    al_batch b;
    T_OK(al_batch_init(&b, AL_BATCH_PAIR, 4, 128));
    int32_t idx[] = {0, 2};
    T_OK(al_batch_fill(&b, d->ex, idx, 2, al_chat_pad_id(g_chat), err));
    T_EQ_INT(b.B, 4);
    T_EQ_INT(b.len[0], d->ex[0].seq[0].n);
    T_EQ_INT(b.len[2], d->ex[0].seq[1].n);
    T_EQ_INT(b.len[3], d->ex[2].seq[1].n);
    al_batch_deinit(&b);
    al_dataset_free(d);

    /* KTO from pairs: chosen desirable, rejected undesirable, in the order
     * of TRL's unpair_preference_dataset: the chosen of a batch of rows,
     * then their rejected. */
    o.method = "kto";
    T_OK(al_dataset_read_file(data_path("preference.jsonl"), g_chat, &o, &d, err));
    T_EQ_INT(d->kind, AL_BATCH_UNPAIRED);
    T_EQ_INT(d->n_ex, 10);
    if (d->n_ex == 10) {
        for (int i = 0; i < 10; i++) T_NEAR(d->ex[i].label, i < 5, 0);
        T_STR_EQ(trained(&d->ex[0].seq[0]), " blue.$");
        T_STR_EQ(trained(&d->ex[5].seq[0]), " green.$");
        T_EQ_INT(d->ex[5].line, 1);
    }
    al_dataset_free(d);
}

/* CPOTrainer/ORPOTrainer on conversations: maybe_apply_chat_template cuts
 * the prompt text where the prompt's rendering (with the generation prompt)
 * differs from prompt + chosen's OR prompt + rejected's. A template whose
 * generation prompt opens a think block (as reasoning models' do) differs
 * from the full renderings at different places for a chosen answer that
 * starts with that block and a rejected one that does not: both answers
 * start right after "assistant\n", the chosen's "<think>\n" trained. */
static void test_answer_split_common_prompt(void) {
    al_chat *c = NULL;
    char err[AL_ERRLEN];
    T_OK(al_chat_new(&c, g_tok,
                     "{% for message in messages %}<|im_start|>{{ message.role }}\n"
                     "{{ message.content }}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}",
                     err));
    if (!c) return;
    const char *rows =
        "{\"prompt\":[{\"role\":\"user\",\"content\":\"Q\"}],"
        "\"chosen\":[{\"role\":\"assistant\",\"content\":\"<think>\\nok</think>A\"}],"
        "\"rejected\":[{\"role\":\"assistant\",\"content\":\"B\"}]}\n"
        "{\"chosen\":[{\"role\":\"user\",\"content\":\"Q\"},"
        "{\"role\":\"assistant\",\"content\":\"<think>\\nok</think>A\"}],"
        "\"rejected\":[{\"role\":\"user\",\"content\":\"Q\"},"
        "{\"role\":\"assistant\",\"content\":\"B\"}]}\n";
    al_dataset *d = rd(rows, c, "orpo", 0, 0);
    T_EQ_INT(d ? d->n_ex : -1, 2);
    for (int i = 0; d && i < d->n_ex && i < 2; i++) {
        T_STR_EQ(trained(&d->ex[i].seq[0]), "<think>\nok</think>A<|im_end|>\n$");
        T_STR_EQ(trained(&d->ex[i].seq[1]), "B<|im_end|>\n$");
    }
    al_dataset_free(d);
    al_chat_free(c);
}

static void test_rankings_ratings(void) {
    al_dataset *d = rd("{\"prompt\":\"Q:\",\"responses\":[\"a\",\"b\",\"c\"],\"ranking\":[2,0,1]}\n",
                       g_chat, "reward_model", 0, 0);
    /* InstructGPT: every ordered pair, c > a, c > b, a > b. */
    T_EQ_INT(d->n_ex, 3);
    T_EQ_INT(d->format, AL_FMT_RANKINGS);
    if (d->n_ex == 3) {
        T_STR_EQ(trained(&d->ex[0].seq[0]), "c$");
        T_STR_EQ(trained(&d->ex[0].seq[1]), "a$");
        T_STR_EQ(trained(&d->ex[1].seq[0]), "c$");
        T_STR_EQ(trained(&d->ex[1].seq[1]), "b$");
        T_STR_EQ(trained(&d->ex[2].seq[0]), "a$");
        T_STR_EQ(trained(&d->ex[2].seq[1]), "b$");
    }
    T_EQ_INT(rep_int(d, "rows"), 1);
    T_EQ_INT(rep_int(d, "examples"), 3);
    al_dataset_free(d);

    /* Ratings: the best against each lower one, the gap as the margin. */
    d = rd("{\"prompt\":\"Q:\",\"responses\":[\"a\",\"b\",\"c\",\"d\"],\"ratings\":[3,5,1,5]}\n",
           g_chat, "dpo", 0, 0);
    T_EQ_INT(d->n_ex, 2);
    if (d->n_ex == 2) {
        T_STR_EQ(trained(&d->ex[0].seq[0]), "b$");
        T_STR_EQ(trained(&d->ex[0].seq[1]), "a$");
        T_NEAR(d->ex[0].margin, 2, 0);
        T_STR_EQ(trained(&d->ex[1].seq[1]), "c$");
        T_NEAR(d->ex[1].margin, 4, 0);
    }
    al_dataset_free(d);

    /* Conversational responses. */
    d = rd("{\"prompt\":[{\"role\":\"user\",\"content\":\"Q\"}],\"responses\":[[{\"role\":"
           "\"assistant\",\"content\":\"x\"}],[{\"role\":\"assistant\",\"content\":\"y\"}]],"
           "\"ranking\":[1,0]}\n",
           g_chat, "dpo", 0, 0);
    T_EQ_INT(d->n_ex, 1);
    if (d->n_ex == 1) T_STR_EQ(trained(&d->ex[0].seq[0]), "y<|im_end|>\n");
    al_dataset_free(d);
}

static void test_lm_formats(void) {
    /* Standard and conversational prompt/completion in one file. */
    al_dataset *d = rd("{\"prompt\":\"2+2=\",\"completion\":\"4\"}\n"
                       "{\"prompt\":[{\"role\":\"user\",\"content\":\"2+2?\"}],\"completion\":"
                       "[{\"role\":\"assistant\",\"content\":\"4\"}]}\n"
                       "{\"text\":\"a stray line\"}\n",
                       g_chat, "sft", 0, 0);
    T_EQ_INT(d->format, AL_FMT_PROMPT_COMPLETION);
    T_EQ_INT(d->n_ex, 2);
    T_STR_EQ(code_at(d, 3), "missing_field");
    if (d->n_ex == 2) {
        T_STR_EQ(trained(&d->ex[0].seq[0]), "4$");
        T_EQ_INT(d->ex[0].seq[0].n, g_b + 6);
        T_STR_EQ(trained(&d->ex[1].seq[0]), "4<|im_end|>\n$");
    }
    al_dataset_free(d);

    /* Pretraining text: everything but BOS trained. */
    d = rd("{\"text\":\"abc\"}\n{\"text\":\"de\"}\n", g_chat, "pretrain", 0, 0);
    T_EQ_INT(d->n_ex, 2);
    if (d->n_ex == 2) T_STR_EQ(trained(&d->ex[0].seq[0]), "abc$");
    al_dataset_free(d);

    /* Unpaired (KTO) with labels as booleans or 0/1. */
    d = rd("{\"prompt\":\"p\",\"completion\":\"good\",\"label\":true}\n"
           "{\"prompt\":\"p\",\"completion\":\"bad\",\"label\":0}\n"
           "{\"prompt\":\"p\",\"completion\":\"fine\",\"label\":1}\n",
           g_chat, "kto", 0, 0);
    T_EQ_INT(d->format, AL_FMT_UNPAIRED);
    T_EQ_INT(d->n_ex, 3);
    if (d->n_ex == 3) {
        T_NEAR(d->ex[0].label, 1, 0);
        T_NEAR(d->ex[1].label, 0, 0);
    }
    const json_t *lab = json_object_get(json_object_get(al_dataset_report(d), "mix"), "labels");
    T_EQ_INT(json_integer_value(json_object_get(lab, "desirable")), 2);
    T_EQ_INT(json_integer_value(json_object_get(lab, "undesirable")), 1);
    al_dataset_free(d);

    /* Conversational unpaired rows, as TRL's KTO examples. */
    d = rd("{\"prompt\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"completion\":[{\"role\":"
           "\"assistant\",\"content\":\"Hello!\"}],\"label\":true}\n"
           "{\"prompt\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"completion\":[{\"role\":"
           "\"assistant\",\"content\":\"Go away.\"}],\"label\":false}\n",
           g_chat, "kto", 0, 0);
    T_EQ_INT(d->n_ex, 2);
    T_TRUE(d->conversational);
    if (d->n_ex == 2) {
        T_STR_EQ(trained(&d->ex[1].seq[0]), "Go away.<|im_end|>\n");
        T_NEAR(d->ex[1].label, 0, 0);
    }
    al_dataset_free(d);
}

static void test_rl_prompts(void) {
    al_data_opts o = {0};
    o.method = "rl";
    o.max_prompt_length = g_b + 8;
    al_dataset *d = NULL;
    const char *j = "{\"prompt\":\"2+2=\",\"answer\":\"4\"}\n"
                    "{\"prompt\":\"3+3=\"}\n"
                    "{\"prompt\":[{\"role\":\"user\",\"content\":\"hi\"}],\"reference\":\"hello\"}\n"
                    "{\"prompt\":\"a very long prompt indeed\",\"answer\":\"x\"}\n";
    T_OK(al_dataset_read_mem(j, strlen(j), g_chat, &o, &d, NULL));
    T_EQ_INT(d->format, AL_FMT_PROMPT_ONLY);
    T_EQ_INT(d->kind, AL_BATCH_PROMPT);
    T_EQ_INT(d->n_ex, 2);   /* the conversational prompt renders long, the last is long */
    T_EQ_INT(rep_int(d, "dropped"), 2);
    T_TRUE(has_warning(d, 4, "dropped"));
    if (d->n_ex >= 2) {
        T_STR_EQ(d->ex[0].reference, "4");
        T_TRUE(d->ex[1].reference == NULL);
        T_EQ_INT(al_seq_trained(&d->ex[0].seq[0]), 0);
        T_EQ_INT(d->ex[0].seq[0].n, g_b + 4);   /* no EOS on prompts */
    }
    al_dataset_free(d);
    o.max_prompt_length = 0;
    T_OK(al_dataset_read_mem(j, strlen(j), g_chat, &o, &d, NULL));
    T_EQ_INT(d->n_ex, 4);
    if (d->n_ex == 4) T_STR_EQ(d->ex[2].reference, "hello");
    al_dataset_free(d);
}

/* ---- hygiene, statistics, lengths ---------------------------------------- */

static void test_stats_and_lengths(void) {
    /* Text rows of 1..20 bytes: tokens b + n + 1. */
    char buf[4096];
    size_t k = 0;
    for (int n = 1; n <= 20; n++) {
        k += (size_t)snprintf(buf + k, sizeof buf - k, "{\"text\":\"");
        for (int i = 0; i < n; i++) buf[k++] = (char)('a' + i);
        k += (size_t)snprintf(buf + k, sizeof buf - k, "\"}\n");
    }
    buf[k] = 0;
    al_dataset *d = rd(buf, g_chat, "pretrain", 0, 0);
    const json_t *t = json_object_get(al_dataset_report(d), "tokens");
    T_EQ_INT(json_integer_value(json_object_get(t, "min")), g_b + 2);
    T_EQ_INT(json_integer_value(json_object_get(t, "max")), g_b + 21);
    T_NEAR(json_real_value(json_object_get(t, "mean")), g_b + 11.5, 1e-9);
    T_EQ_INT(json_integer_value(json_object_get(t, "p95")), g_b + 20);
    T_TRUE(json_is_null(json_object_get(al_dataset_report(d), "max_length")));
    al_dataset_free(d);

    /* max_length: a long completion is cut (and reported), a row whose
     * prompt fills max_length is dropped, never trained with no target. */
    int L = g_b + 12;
    d = rd("{\"prompt\":\"0123456789\",\"completion\":\"abcde\"}\n"
           "{\"prompt\":\"0123456789abcdefghij\",\"completion\":\"xyz\"}\n"
           "{\"prompt\":\"01\",\"completion\":\"ok\"}\n",
           g_chat, "sft", L, 0);
    T_EQ_INT(rep_int(d, "truncated"), 1);
    T_EQ_INT(rep_int(d, "dropped"), 1);
    T_EQ_INT(rep_int(d, "max_length"), L);
    T_TRUE(has_warning(d, 1, "truncated"));
    T_TRUE(has_warning(d, 2, "dropped"));
    T_EQ_INT(d->n_ex, 2);
    if (d->n_ex == 2) {
        T_EQ_INT(d->ex[0].seq[0].n, L);
        T_STR_EQ(trained(&d->ex[0].seq[0]), "ab");
        T_EQ_INT(d->ex[1].line, 3);
        T_STR_EQ(trained(&d->ex[1].seq[0]), "ok$");
    }
    al_dataset_free(d);

    /* Pairs: dropped when either side would lose its whole completion. */
    d = rd("{\"prompt\":\"0123456789\",\"chosen\":\"a\",\"rejected\":\"b\"}\n", g_chat, "dpo",
           g_b + 10, 0);
    T_EQ_INT(d->n_ex, 0);
    T_EQ_INT(rep_int(d, "dropped"), 1);
    char err[AL_ERRLEN];
    T_EQ_INT(al_dataset_check(d, 0, err), AL_EFORMAT);
    T_TRUE(strstr(err, "dropped at max_length") != NULL);
    al_dataset_free(d);
}

static void test_duplicates_and_mix(void) {
    al_dataset *d = rd("{\"id\":1,\"source\":\"math\",\"prompt\":\"1+1=\",\"completion\":\"2\"}\n"
                       "{\"id\":2,\"source\":\"math\",\"prompt\":\" 1+1=\",\"completion\":\"2\\n\"}\n"
                       "{\"id\":3,\"source\":\"math\",\"prompt\":\"2+2=\",\"completion\":\"4\"}\n"
                       "{\"id\":4,\"source\":\"code\",\"prompt\":\"print(1)\",\"completion\":\"1\"}\n"
                       "{\"id\":5,\"source\":\"code\",\"prompt\":\"print( 1 )\",\"completion\":\"1\"}\n",
                       g_chat, "sft", 0, 1);
    /* Row 2 = row 1 after whitespace normalisation (ids ignored); row 5 has
     * spaces where row 4 has none, so it is other text. */
    T_EQ_INT(rep_int(d, "duplicates"), 1);
    T_EQ_INT(rep_int(d, "deduplicated"), 1);
    T_TRUE(has_warning(d, 2, "duplicate"));
    T_EQ_INT(d->n_ex, 4);
    const json_t *mix = json_object_get(al_dataset_report(d), "mix");
    T_STR_EQ(json_string_value(json_object_get(mix, "by")), "source");
    const json_t *g = json_object_get(mix, "groups");
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(g, "math"), "rows")), 2);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(g, "code"), "rows")), 2);
    T_NEAR(json_real_value(json_object_get(json_object_get(g, "math"), "share")), 0.5, 1e-9);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(g, "code"), "tokens_max")),
             g_b + 12);
    T_TRUE(json_object_get(mix, "lengths") != NULL);
    al_dataset_free(d);
}

/* EOS is a target of every completion; BOS never appears twice. */
static void test_eos_bos_everywhere(void) {
    al_data_opts o = {0};
    o.method = "sft";
    al_dataset *d = NULL;
    char err[AL_ERRLEN];
    T_OK(al_dataset_read_file(data_path("bad_lines.jsonl"), g_chat, &o, &d, err));
    al_dataset *d2 = rd("{\"prompt\":\"<|endoftext|>Q\",\"completion\":\"A\"}\n"
                        "{\"prompt\":\"Q\",\"completion\":\"A<|endoftext|>\"}\n"
                        "{\"prompt\":\"\",\"completion\":\"whole\"}\n",
                        g_chat, "sft", 0, 0);
    int32_t eos = al_tok_eos(g_tok), bos = al_tok_bos(g_tok);
    const al_dataset *ds[2] = {d, d2};
    for (int j = 0; j < 2; j++) {
        if (!ds[j]) continue;
        al_batch b;
        T_OK(al_batch_init(&b, AL_BATCH_LM, ds[j]->n_ex, 512));
        int32_t idx[16];
        for (int i = 0; i < ds[j]->n_ex; i++) idx[i] = i;
        T_OK(al_batch_fill(&b, ds[j]->ex, idx, ds[j]->n_ex, al_chat_pad_id(g_chat), err));
        for (int r = 0; r < b.B; r++) {
            int eos_t = 0;
            for (int t = 0; t < b.T; t++) eos_t += b.targets[r * b.T + t] == eos;
            T_EQ_INT(eos_t, 1);
            T_TRUE(!(b.ids[r * b.T] == bos && b.ids[r * b.T + 1] == bos));
        }
        al_batch_deinit(&b);
    }
    al_dataset_free(d);
    al_dataset_free(d2);
}

/* ---- inputs and modes ------------------------------------------------- */

static void test_inputs(void) {
    /* BOM, CRLF and blank lines: line numbers stay physical. */
    const char *j = "\xEF\xBB\xBF{\"text\":\"a\"}\r\n\r\n{\"text\":\r\n{\"text\":\"b\"}";
    al_dataset *d = rd(j, g_chat, NULL, 0, 0);
    T_EQ_INT(rep_int(d, "rows"), 3);
    T_STR_EQ(code_at(d, 3), "invalid_json");
    T_EQ_INT(d->n_ex, 2);
    T_EQ_INT(d->ex[1].line, 4);
    al_dataset_free(d);

    /* Validation without a tokenizer: structure only. */
    d = rd(j, NULL, "sft", 0, 0);
    T_TRUE(json_is_null(json_object_get(al_dataset_report(d), "tokens")));
    T_EQ_INT(d->n_ex, 0);
    T_EQ_INT(rep_int(d, "valid_rows"), 2);
    T_TRUE(json_is_true(json_object_get(al_dataset_report(d), "trainable")));
    al_dataset_free(d);

    /* A list of rows instead of a file. */
    json_t *rows = json_pack("[{s:s,s:s},i,{s:s,s:s}]", "prompt", "p", "completion", "c", 7,
                             "prompt", "q", "completion", "d");
    char err[AL_ERRLEN];
    al_data_opts o = {0};
    o.method = "sft";
    T_OK(al_dataset_from_rows(rows, g_chat, &o, &d, err));
    T_EQ_INT(d->n_ex, 2);
    T_STR_EQ(code_at(d, 2), "data_type");
    al_dataset_free(d);
    json_decref(rows);

    /* Bad arguments and file-level verdicts. */
    o.method = "telepathy";
    T_EQ_INT(al_dataset_read_mem("", 0, g_chat, &o, &d, err), AL_EINVAL);
    d = rd("", g_chat, "sft", 0, 0);
    T_EQ_INT(al_dataset_check(d, 0, err), AL_EFORMAT);
    T_TRUE(strstr(err, "no rows") != NULL);
    al_dataset_free(d);
    d = rd(MSG_OK, g_chat, "dpo", 0, 0);
    T_EQ_INT(al_dataset_check(d, 0, err), AL_EFORMAT);
    T_TRUE(strstr(err, "messages") != NULL && strstr(err, "dpo") != NULL);
    T_TRUE(json_is_false(json_object_get(al_dataset_report(d), "trainable")));
    al_dataset_free(d);
}

/* ---- the formats people bring: alpaca, sharegpt, content parts, tools,
 * CSV/TSV, a JSON array, and files that cannot be told apart ------------- */

/* The whole sequence as text (special tokens by name, EOS as '$'). */
static const char *all_text(const al_seq *s) {
    static char buf[4096];
    size_t k = 0;
    for (int i = 0; i < s->n && k < 4000; i++) {
        int32_t id = s->ids[i];
        if (id == al_tok_eos(g_tok)) buf[k++] = '$';
        else if (id < 256) buf[k++] = (char)id;
        else k += (size_t)snprintf(buf + k, sizeof buf - k, "%s", al_tok_str(g_tok, id));
    }
    buf[k] = 0;
    return buf + (g_b && s->n && s->ids[0] == al_tok_bos(g_tok) ? strlen(al_tok_str(g_tok, s->ids[0])) : 0);
}

static al_dataset *rd_name(const char *buf, const char *filename, const char *method) {
    al_data_opts o = {0};
    o.method = method;
    o.filename = filename;
    al_dataset *d = NULL;
    char err[AL_ERRLEN] = "";
    T_OK(al_dataset_read_mem(buf, strlen(buf), g_chat, &o, &d, err));
    return d;
}

static const char *rep_str(const al_dataset *d, const char *key) {
    const char *v = json_string_value(json_object_get(al_dataset_report(d), key));
    return v ? v : "(null)";
}

#define ALPACA_OK "{\"instruction\":\"Add\",\"input\":\"2 and 2\",\"output\":\"4\"}\n"

static void test_alpaca(void) {
    /* The example: instruction/input/output is alpaca, not OpenAI's
     * DPO "input" shape. */
    al_dataset *d = rd(ALPACA_OK "{\"instruction\":\"Name a colour\",\"input\":\"\",\"output\":\"Blue\"}\n"
                       "{\"instruction\":\"Again\",\"output\":\"Red\",\"system\":\"Be brief\","
                       "\"history\":[[\"Name a fruit\",\"Pear\"],[\"Another\",\"Fig\"]]}\n",
                       g_chat, NULL, 0, 0);
    T_STR_EQ(rep_str(d, "format"), "alpaca");
    T_EQ_INT(d->n_errors, 0);
    T_EQ_INT(d->n_ex, 3);
    if (d->n_ex == 3) {
        /* LLaMA-Factory: instruction + "\n" + input as the user turn */
        T_STR_EQ(all_text(&d->ex[0].seq[0]),
                 "<|im_start|>user\nAdd\n2 and 2<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n$");
        T_STR_EQ(all_text(&d->ex[1].seq[0]),
                 "<|im_start|>user\nName a colour<|im_end|>\n<|im_start|>assistant\nBlue<|im_end|>\n$");
        /* system first, history pairs as earlier turns, all answers trained */
        T_STR_EQ(all_text(&d->ex[2].seq[0]),
                 "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nName a fruit<|im_end|>\n"
                 "<|im_start|>assistant\nPear<|im_end|>\n<|im_start|>user\nAnother<|im_end|>\n"
                 "<|im_start|>assistant\nFig<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n"
                 "<|im_start|>assistant\nRed<|im_end|>\n$");
        T_STR_EQ(trained(&d->ex[2].seq[0]), "Pear<|im_end|>\nFig<|im_end|>\nRed<|im_end|>\n$");
    }
    const json_t *st = json_object_get(json_object_get(al_dataset_report(d), "mix"), "structure");
    T_EQ_INT(json_integer_value(json_object_get(st, "with_history")), 1);
    T_EQ_INT(json_integer_value(json_object_get(st, "with_system")), 1);
    al_dataset_free(d);

    /* bad rows, exact codes and lines */
    d = rd(ALPACA_OK ALPACA_OK "{\"instruction\":\"x\",\"input\":\"y\"}\n"
           "{\"instruction\":\"x\",\"output\":\"  \"}\n"
           "{\"instruction\":\"x\",\"output\":\"o\",\"history\":[[\"q\"]]}\n"
           "{\"instruction\":\"\",\"input\":\"\",\"output\":\"o\"}\n"
           "{\"instruction\":5,\"output\":\"o\"}\n"
           "{\"instruction\":\"x\",\"output\":[\"o\"]}\n",
           g_chat, "sft", 0, 0);
    T_STR_EQ(code_at(d, 3), "missing_field");
    T_STR_EQ(json_string_value(json_object_get(error_at(d, 3), "field")), "output");
    T_STR_EQ(code_at(d, 4), "empty_target");
    T_STR_EQ(code_at(d, 5), "invalid_field_type");
    T_STR_EQ(json_string_value(json_object_get(error_at(d, 5), "field")), "history[0]");
    T_STR_EQ(code_at(d, 6), "missing_content");
    T_STR_EQ(code_at(d, 7), "invalid_field_type");
    T_STR_EQ(code_at(d, 8), "invalid_field_type");
    T_EQ_INT(d->n_errors, 6);
    T_EQ_INT(d->n_ex, 2);
    al_dataset_free(d);

    /* RL: the prompt turns, output the reference */
    d = rd(ALPACA_OK, g_chat, "grpo", 0, 0);
    T_EQ_INT(d->n_ex, 1);
    if (d->n_ex == 1) {
        T_STR_EQ(all_text(&d->ex[0].seq[0]), "<|im_start|>user\nAdd\n2 and 2<|im_end|>\n<|im_start|>assistant\n");
        T_STR_EQ(d->ex[0].reference, "4");
    }
    al_dataset_free(d);
    /* LLaMA-Factory's alpaca pairs */
    d = rd("{\"instruction\":\"Sky?\",\"input\":\"colour\",\"chosen\":\"Blue\",\"rejected\":\"Green\"}\n"
           "{\"instruction\":\"Sky?\",\"chosen\":\"Blue\",\"rejected\":\"Blue\"}\n",
           g_chat, "dpo", 0, 0);
    T_STR_EQ(rep_str(d, "format"), "preference");
    T_EQ_INT(d->n_ex, 1);
    if (d->n_ex == 1) {
        /* DPO's conversations as TRL's DPOTrainer: all after the prompt, no EOS added */
        T_STR_EQ(trained(&d->ex[0].seq[0]), "Blue<|im_end|>\n");
        T_STR_EQ(trained(&d->ex[0].seq[1]), "Green<|im_end|>\n");
        T_TRUE(strstr(all_text(&d->ex[0].seq[1]), "user\nSky?\ncolour<|im_end|>") != NULL);
    }
    T_STR_EQ(code_at(d, 2), "identical_responses");
    al_dataset_free(d);
    /* OpenAI's DPO rows keep their shape */
    d = rd("{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"Sky?\"}]},\"preferred_output\":"
           "[{\"role\":\"assistant\",\"content\":\"Blue\"}],\"non_preferred_output\":[{\"role\":"
           "\"assistant\",\"content\":\"Green\"}]}\n",
           g_chat, NULL, 0, 0);
    T_STR_EQ(rep_str(d, "format"), "preference");
    T_EQ_INT(d->n_errors, 0);
    al_dataset_free(d);
}

#define SG_OK "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\"Hello\"}]}\n"

static void test_sharegpt(void) {
    al_dataset *d = rd(SG_OK
                       "{\"conversations\":[{\"from\":\"system\",\"value\":\"Be kind\"},{\"from\":\"human\","
                       "\"value\":\"2+2\"},{\"from\":\"gpt\",\"value\":\"4\"},{\"from\":\"human\",\"value\":"
                       "\"3+3\"},{\"from\":\"gpt\",\"value\":\"6\"}]}\n"
                       /* LLaMA-Factory's OpenAI-style tags, and from/value under "messages" */
                       "{\"conversations\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\","
                       "\"content\":\"Yo\"}],\"system\":\"Top\"}\n"
                       "{\"messages\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\"Hey\"}]}\n",
                       g_chat, "sft", 0, 0);
    T_STR_EQ(rep_str(d, "format"), "sharegpt");
    T_EQ_INT(d->n_errors, 0);
    T_EQ_INT(d->n_ex, 4);
    if (d->n_ex == 4) {
        T_STR_EQ(trained(&d->ex[0].seq[0]), "Hello<|im_end|>\n$");
        T_STR_EQ(trained(&d->ex[1].seq[0]), "4<|im_end|>\n6<|im_end|>\n$");
        T_TRUE(strstr(all_text(&d->ex[1].seq[0]), "<|im_start|>system\nBe kind<|im_end|>") != NULL);
        T_STR_EQ(all_text(&d->ex[2].seq[0]), "<|im_start|>system\nTop<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                             "<|im_start|>assistant\nYo<|im_end|>\n$");
        T_STR_EQ(trained(&d->ex[3].seq[0]), "Hey<|im_end|>\n$");
    }
    al_dataset_free(d);

    d = rd(SG_OK SG_OK
           "{\"conversations\":[{\"from\":\"gpt\",\"value\":\"Hello\"},{\"from\":\"human\",\"value\":\"Hi\"}]}\n"
           "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"bot\",\"value\":\"Hello\"}]}\n"
           "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\"}]}\n"
           "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"function_call\",\"value\":"
           "\"get_weather(Paris)\"},{\"from\":\"observation\",\"value\":\"21\"},{\"from\":\"gpt\",\"value\":\"21\"}]}\n"
           "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\"Hello\"},"
           "{\"from\":\"human\",\"value\":\"Bye\"}]}\n"
           "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"}]}\n"
           "{\"conversations\":[]}\n"
           "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"gpt\",\"value\":\" \"}]}\n"
           "{\"conversations\":[{\"from\":\"human\",\"value\":\"Hi\"},{\"from\":\"system\",\"value\":\"S\"},"
           "{\"from\":\"gpt\",\"value\":\"x\"}]}\n",
           g_chat, "sft", 0, 0);
    static const struct { int line; const char *code, *field; } want[] = {
        {3, "invalid_turn_order", "conversations[0]"}, {4, "unrecognized_role", "conversations[1]"},
        {5, "message_missing_key", "conversations[1]"}, {6, "invalid_tool_call", "conversations[1]"},
        {7, "invalid_turn_order", "conversations"}, {8, "example_missing_assistant_message", "conversations"},
        {9, "missing_messages_list", "conversations"}, {10, "empty_target", "conversations"},
        {11, "invalid_turn_order", "conversations[1]"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        T_STR_EQ(code_at(d, want[i].line), want[i].code);
        T_STR_EQ(json_string_value(json_object_get(error_at(d, want[i].line), "field")), want[i].field);
    }
    T_EQ_INT(d->n_errors, 9);
    al_dataset_free(d);

    /* RL: the turns before the last gpt turn; the pairs of LLaMA-Factory */
    d = rd(SG_OK, g_chat, "ppo", 0, 0);
    if (d->n_ex == 1) {
        T_STR_EQ(all_text(&d->ex[0].seq[0]), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        T_STR_EQ(d->ex[0].reference, "Hello");
    }
    al_dataset_free(d);
    d = rd("{\"conversations\":[{\"from\":\"human\",\"value\":\"Sky?\"}],\"chosen\":{\"from\":\"gpt\",\"value\":"
           "\"Blue\"},\"rejected\":{\"from\":\"gpt\",\"value\":\"Green\"}}\n"
           "{\"conversations\":[{\"from\":\"human\",\"value\":\"Sky?\"}],\"chosen\":{\"from\":\"human\",\"value\":"
           "\"Blue\"},\"rejected\":{\"from\":\"gpt\",\"value\":\"Green\"}}\n",
           g_chat, "reward_model", 0, 0);
    T_EQ_INT(d->n_ex, 1);
    if (d->n_ex == 1) T_STR_EQ(trained(&d->ex[0].seq[1]), "Green<|im_end|>\n$");
    T_STR_EQ(code_at(d, 2), "invalid_turn_order");
    al_dataset_free(d);
}

/* A sharegpt file under its own names (LLaMA-Factory's dataset_info
 * "columns" and "tags"): read as the default names read, only the file's
 * tags accepted, errors naming its fields; the report says the names. */
static al_dataset *rd_sg(const char *buf, const char *filename, const char *method, const al_sharegpt_cfg *sg) {
    al_data_opts o = {.method = method, .filename = filename, .sharegpt = sg};
    al_dataset *d = NULL;
    char err[AL_ERRLEN] = "";
    T_OK(al_dataset_read_mem(buf, strlen(buf), g_chat, &o, &d, err));
    return d;
}

static void test_sharegpt_names(void) {
    const char *info = "{\"file_name\": \"chat.json\", \"formatting\": \"sharegpt\", \"columns\": {\"messages\": "
                       "\"dialog\", \"system\": \"persona\"}, \"tags\": {\"role_tag\": \"speaker\", \"content_tag\": "
                       "\"text\", \"user_tag\": \"USER\", \"assistant_tag\": \"BOT\", \"function_tag\": \"CALL\", "
                       "\"observation_tag\": \"RESULT\"}}";
    json_t *v = json_loads(info, 0, NULL);
    al_sharegpt_cfg sg;
    al_error ae;
    T_OK(al_sharegpt_parse(v, "dataset_info", &sg, &ae));
    json_decref(v);
    const char *mine = "{\"dialog\":[{\"speaker\":\"USER\",\"text\":\"2+2\"},{\"speaker\":\"BOT\",\"text\":\"4\"},"
                       "{\"speaker\":\"USER\",\"text\":\"weather?\"},{\"speaker\":\"CALL\",\"text\":"
                       "\"{\\\"name\\\":\\\"w\\\",\\\"arguments\\\":{}}\"},{\"speaker\":\"RESULT\",\"text\":\"sun\"},"
                       "{\"speaker\":\"BOT\",\"text\":\"Sunny\"}],\"persona\":\"Be brief\"}\n"
                       "{\"dialog\":[{\"speaker\":\"system\",\"text\":\"S\"},{\"speaker\":\"USER\",\"text\":\"x\"},"
                       "{\"speaker\":\"BOT\",\"text\":\"y\"}]}\n"
                       "{\"dialog\":[{\"from\":\"USER\",\"value\":\"x\"},{\"speaker\":\"BOT\",\"text\":\"y\"}]}\n"
                       "{\"dialog\":[{\"speaker\":\"BOT\",\"text\":\"y\"}]}\n";
    const char *same = "{\"conversations\":[{\"from\":\"human\",\"value\":\"2+2\"},{\"from\":\"gpt\",\"value\":\"4\"},"
                       "{\"from\":\"human\",\"value\":\"weather?\"},{\"from\":\"function_call\",\"value\":"
                       "\"{\\\"name\\\":\\\"w\\\",\\\"arguments\\\":{}}\"},{\"from\":\"observation\",\"value\":\"sun\"},"
                       "{\"from\":\"gpt\",\"value\":\"Sunny\"}],\"system\":\"Be brief\"}\n";
    al_dataset *d = rd_sg(mine, NULL, "sft", &sg), *w = rd(same, g_chat, "sft", 0, 0);
    T_STR_EQ(rep_str(d, "format"), "sharegpt");
    T_EQ_INT(d->n_ex, 1);
    T_EQ_INT(w->n_ex, 1);
    if (d->n_ex && w->n_ex) T_TRUE(seq_eq(&d->ex[0].seq[0], &w->ex[0].seq[0]));
    /* "system" is no tag of this file; the turns' keys are the file's */
    T_STR_EQ(code_at(d, 2), "unrecognized_role");
    T_STR_EQ(json_string_value(json_object_get(error_at(d, 2), "field")), "dialog[0]");
    T_TRUE(strstr(json_string_value(json_object_get(error_at(d, 2), "message")),
                  "dialog[0].speaker \"system\" is not one of the file's tags (\"USER\", \"BOT\", \"RESULT\", \"CALL\")") != NULL);
    T_STR_EQ(code_at(d, 3), "message_missing_key");
    T_TRUE(strstr(json_string_value(json_object_get(error_at(d, 3), "message")), "lacks \"speaker\"") != NULL);
    T_STR_EQ(code_at(d, 4), "invalid_turn_order");
    const json_t *di = json_object_get(al_dataset_report(d), "dataset_info");
    T_STR_EQ(json_string_value(json_object_get(json_object_get(di, "columns"), "messages")), "dialog");
    T_STR_EQ(json_string_value(json_object_get(json_object_get(di, "columns"), "tools")), "tools");
    T_TRUE(json_object_get(json_object_get(di, "tags"), "system_tag") == NULL);
    al_dataset_free(d);
    al_dataset_free(w);
    /* without the names the rows are no format at all */
    d = rd(mine, g_chat, "sft", 0, 0);
    T_EQ_INT(d->n_ex, 0);
    T_STR_EQ(code_at(d, 1), "unrecognized_format");
    al_dataset_free(d);
    /* a CSV with the file's messages column; RL prompts from it */
    d = rd_sg("dialog,persona\n\"[{\"\"speaker\"\":\"\"USER\"\",\"\"text\"\":\"\"Hi\"\"},{\"\"speaker\"\":\"\"BOT\"\","
              "\"\"text\"\":\"\"Hello\"\"}]\",Kind\n", "chat.csv", "grpo", &sg);
    T_STR_EQ(rep_str(d, "file_format"), "csv");
    T_EQ_INT(d->n_ex, 1);
    if (d->n_ex == 1) {
        T_STR_EQ(all_text(&d->ex[0].seq[0]),
                 "<|im_start|>system\nKind<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
        T_STR_EQ(d->ex[0].reference, "Hello");
    }
    al_dataset_free(d);
    /* the entry itself, refused field by field */
    static const struct { const char *json, *msg; } bad[] = {
        {"{\"formatting\":\"alpaca\"}", "dataset_info.formatting: must be \"sharegpt\""},
        {"{\"formatting\":\"sharegpt\",\"ranking\":true}", "dataset_info.ranking: unknown field"},
        {"{\"formatting\":\"sharegpt\",\"columns\":{\"images\":\"i\"}}", "dataset_info.columns.images: unknown field"},
        {"{\"formatting\":\"sharegpt\",\"tags\":{\"user_tag\":\"a\"}}", "dataset_info.tags: needs user_tag and assistant_tag"},
        {"{\"formatting\":\"sharegpt\",\"tags\":{\"user_tag\":\"a\",\"assistant_tag\":\"a\"}}",
         "dataset_info.tags.assistant_tag: \"a\" is also user_tag"},
        {"{\"formatting\":\"sharegpt\",\"tags\":{\"role_tag\":\"\"}}", "dataset_info.tags.role_tag: must be a non-empty"},
        {"{\"formatting\":\"sharegpt\",\"tags\":{\"role_tag\":\"k\",\"content_tag\":\"k\",\"user_tag\":\"u\","
         "\"assistant_tag\":\"a\"}}", "dataset_info.tags.content_tag: must differ from role_tag"},
        {"[]", "dataset_info: must be an object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = json_loads(bad[i].json, JSON_DECODE_ANY, NULL);
        T_EQ_INT(al_sharegpt_parse(v, "dataset_info", &sg, &ae), AL_EINVAL);
        T_REPORT_(strstr(ae.msg, bad[i].msg) == ae.msg, "%s: %s", bad[i].json, ae.msg);
        /* the field at fault as data: the path the message starts with */
        size_t fl = strlen(ae.field);
        T_REPORT_(fl > 0 && !strncmp(bad[i].msg, ae.field, fl) && bad[i].msg[fl] == ':', "%s: field %s",
                  bad[i].json, ae.field);
        json_decref(v);
    }
    /* no tags: LLaMA-Factory's defaults, and only those */
    v = json_loads("{\"formatting\":\"sharegpt\",\"columns\":{\"messages\":\"turns\"}}", 0, NULL);
    T_OK(al_sharegpt_parse(v, "dataset_info", &sg, &ae));
    json_decref(v);
    d = rd_sg("{\"turns\":[{\"from\":\"human\",\"value\":\"a\"},{\"from\":\"gpt\",\"value\":\"b\"}]}\n"
              "{\"turns\":[{\"from\":\"user\",\"value\":\"a\"},{\"from\":\"gpt\",\"value\":\"b\"}]}\n", NULL, "sft", &sg);
    T_EQ_INT(d->n_ex, 1);
    T_STR_EQ(code_at(d, 2), "unrecognized_role");
    al_dataset_free(d);
}

static void test_content_parts(void) {
    al_dataset *d = rd(MSG_OK
                       "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"2+\"},"
                       "{\"type\":\"text\",\"text\":\"2\"}]},{\"role\":\"assistant\",\"content\":[{\"type\":"
                       "\"text\",\"text\":\"4\"}]}]}\n"
                       "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
                       "{\"url\":\"x.png\"}}]},{\"role\":\"assistant\",\"content\":\"a\"}]}\n"
                       "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]},{\"role\":"
                       "\"assistant\",\"content\":\"a\"}]}\n"
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":"
                       "[{\"type\":\"text\",\"text\":\" \"}]}]}\n"
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                       "\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]},"
                       "{\"role\":\"tool\",\"content\":\"1\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n",
                       g_chat, "sft", 0, 0);
    T_EQ_INT(d->n_ex, 2);
    if (d->n_ex == 2)
        T_STR_EQ(all_text(&d->ex[1].seq[0]), "<|im_start|>user\n2+2<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n$");
    T_STR_EQ(code_at(d, 3), "unsupported_content_part");
    T_STR_EQ(json_string_value(json_object_get(error_at(d, 3), "field")), "messages[0]");
    T_TRUE(strstr(json_string_value(json_object_get(error_at(d, 3), "message")), "image_url") != NULL);
    T_STR_EQ(code_at(d, 4), "missing_content");
    T_STR_EQ(code_at(d, 5), "empty_target");
    T_STR_EQ(code_at(d, 6), "invalid_tool_call");
    T_STR_EQ(json_string_value(json_object_get(error_at(d, 6), "field")), "messages[1]");
    al_dataset_free(d);
}

/* tools and tool_calls reach templates that take them: a sharegpt row with
 * function_call/observation and its OpenAI twin (string arguments) give the
 * same tokens under Qwen2.5's and Llama 3.1's real templates, and those
 * tokens are what jinja2 renders for the conversation. */
static void test_tools_in_templates(void) {
    static const char *const TOOLS =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather of a city\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";
    char sg[2048], oa[2048];
    json_t *tools = json_loads(TOOLS, 0, NULL);
    json_t *tjs = json_string(TOOLS);
    char *tq = json_dumps(tjs, JSON_ENCODE_ANY);
    snprintf(sg, sizeof sg,
             "{\"conversations\":[{\"from\":\"human\",\"value\":\"Weather in Paris?\"},{\"from\":\"function_call\","
             "\"value\":\"{\\\"name\\\": \\\"get_weather\\\", \\\"arguments\\\": {\\\"city\\\": \\\"Paris\\\"}}\"},"
             "{\"from\":\"observation\",\"value\":\"{\\\"temp\\\": 21}\"},{\"from\":\"gpt\",\"value\":\"It is 21.\"}],"
             "\"tools\":%s}\n", tq);
    snprintf(oa, sizeof oa,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},{\"role\":\"assistant\","
             "\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
             "\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},{\"role\":\"tool\",\"content\":\"{\\\"temp\\\": 21}\"},"
             "{\"role\":\"assistant\",\"content\":\"It is 21.\"}],\"tools\":%s}\n", TOOLS);
    free(tq);
    json_decref(tjs);
    static const char *const FILES[] = {"qwen2.5-instruct.jinja", "llama-3.1-instruct.jinja"};
    char *text[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        char path[4096], err[AL_ERRLEN];
        const char *f = __FILE__, *slash = strrchr(f, '/');
        snprintf(path, sizeof path, "%.*s/chat_templates/%s", (int)(slash - f), f, FILES[k]);
        char *src = NULL;
        size_t len;
        T_OK(al_file_read(path, 1 << 20, &src, &len, err));
        al_chat *c = NULL;
        T_OK(al_chat_new(&c, g_tok, src, err));
        al_data_opts o = {.method = "sft"};
        al_dataset *a = NULL, *b = NULL;
        T_OK(al_dataset_read_mem(sg, strlen(sg), c, &o, &a, err));
        T_OK(al_dataset_read_mem(oa, strlen(oa), c, &o, &b, err));
        T_EQ_INT(a->n_errors + b->n_errors, 0);
        if (a->n_ex == 1 && b->n_ex == 1) {
            T_TRUE(seq_eq(&a->ex[0].seq[0], &b->ex[0].seq[0]));
            text[k] = strdup(all_text(&a->ex[0].seq[0]));
            T_STR_EQ(trained(&a->ex[0].seq[0]) + strlen(trained(&a->ex[0].seq[0])) - 1, "$");
        }
        /* jinja2's rendering of the conversation, arguments as an object */
        json_t *ctx = json_pack("{s:o,s:O,s:b,s:s,s:s}", "messages",
                                json_loads("[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},{\"role\":"
                                           "\"assistant\",\"tool_calls\":[{\"type\":\"function\",\"function\":"
                                           "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
                                           "{\"role\":\"tool\",\"content\":\"{\\\"temp\\\": 21}\"},{\"role\":"
                                           "\"assistant\",\"content\":\"It is 21.\"}]", 0, NULL),
                                "tools", tools, "add_generation_prompt", 0, "bos_token", al_tok_bos_str(g_tok),
                                "eos_token", al_tok_eos_str(g_tok));
        json_object_set_new(ctx, "date_string", json_string("26 Jul 2024"));
        t_jinja_add(FILES[k], src, ctx);
        al_dataset_free(a);
        al_dataset_free(b);
        al_chat_free(c);
        free(src);
    }
    if (t_jinja_run() == 0)
        for (int k = 0; k < 2; k++) {
            const char *want = t_jinja_output(FILES[k]);
            T_TRUE(want != NULL && text[k] != NULL);
            if (want && text[k]) {
                /* ours ends with the EOS appended after the last answer */
                const char *ours = text[k], *bos = al_tok_bos_str(g_tok);
                if (bos && !strncmp(want, bos, strlen(bos)) && ours[0] == '$') { /* BOS = EOS here */
                    want += strlen(bos);
                    ours++;
                }
                size_t n = strlen(want);
                T_TRUE(strncmp(ours, want, n) == 0);
                T_TRUE(strstr(want, "get_weather") && strstr(want, "\"city\": \"Paris\""));
                if (strncmp(ours, want, n)) fprintf(stderr, "ours:\n%s\njinja2:\n%s\n", ours, want);
            }
        }
    t_jinja_done();
    free(text[0]);
    free(text[1]);
    json_decref(tools);
}

static void test_csv_tsv(void) {
    /* RFC 4180: quoted commas, line breaks and doubled quotes; a record
     * spanning lines 3-4; errors on the lines their records start on */
    const char *csv = "\xEF\xBB\xBFinstruction,input,output\r\n"
                      "Add,2 and 2,4\r\n"
                      "\"Say, twice\",\"\",\"\"\"hi\"\"\nhi\"\r\n"
                      "Odd,one\r\n"
                      "Bad,\"x\"y,z\r\n"
                      "\r\n"
                      "Last,,ok";
    al_dataset *d = rd_name(csv, NULL, "sft");
    T_STR_EQ(rep_str(d, "file_format"), "csv");
    T_STR_EQ(rep_str(d, "format"), "alpaca");
    T_EQ_INT(rep_int(d, "rows"), 5);
    T_STR_EQ(code_at(d, 5), "invalid_csv");
    T_TRUE(strstr(json_string_value(json_object_get(error_at(d, 5), "message")), "2 fields, the header 3") != NULL);
    T_STR_EQ(code_at(d, 6), "invalid_csv");
    T_EQ_INT(d->n_ex, 3);
    if (d->n_ex == 3) {
        T_EQ_INT(d->ex[1].line, 3);
        T_EQ_INT(d->ex[2].line, 8);
        T_STR_EQ(trained(&d->ex[1].seq[0]), "\"hi\"\nhi<|im_end|>\n$");
        T_TRUE(strstr(all_text(&d->ex[1].seq[0]), "user\nSay, twice<|im_end|>") != NULL);
    }
    al_dataset_free(d);
    /* an unclosed quote swallows the rest: reported where it opens */
    d = rd_name("prompt,completion\np,c\n\"p,c\nq,d\n", NULL, "sft");
    T_STR_EQ(code_at(d, 3), "invalid_csv");
    T_EQ_INT(d->n_ex, 1);
    al_dataset_free(d);
    /* TSV; KTO labels from text */
    d = rd_name("prompt\tcompletion\tlabel\nSky?\tBlue\ttrue\nSky?\tGreen\t0\n", NULL, "kto");
    T_STR_EQ(rep_str(d, "file_format"), "tsv");
    T_STR_EQ(rep_str(d, "format"), "unpaired_preference");
    T_EQ_INT(d->n_ex, 2);
    if (d->n_ex == 2) {
        T_NEAR(d->ex[0].label, 1, 0);
        T_NEAR(d->ex[1].label, 0, 0);
    }
    al_dataset_free(d);
    /* a header that reads both ways is refused unless the name says */
    const char *both = "prompt,completion\ttext\np,c\tt\n";
    d = rd_name(both, NULL, NULL);
    T_STR_EQ(code_at(d, 0), "ambiguous_format");
    T_TRUE(json_is_false(json_object_get(al_dataset_report(d), "trainable")));
    al_dataset_free(d);
    d = rd_name(both, "data.tsv", NULL);
    T_STR_EQ(rep_str(d, "file_format"), "tsv");
    T_STR_EQ(rep_str(d, "format"), "text");
    al_dataset_free(d);
    /* a history column holds JSON */
    d = rd_name("instruction,output,history\nAgain,Red,\"[[\"\"Fruit?\"\",\"\"Pear\"\"]]\"\n", NULL, "sft");
    T_EQ_INT(d->n_ex, 1);
    if (d->n_ex == 1) T_STR_EQ(trained(&d->ex[0].seq[0]), "Pear<|im_end|>\nRed<|im_end|>\n$");
    al_dataset_free(d);
    /* a first line that is not a header stays JSONL */
    d = rd_name("hello world\n{\"text\":\"a\"}\n", NULL, NULL);
    T_STR_EQ(rep_str(d, "file_format"), "jsonl");
    T_STR_EQ(code_at(d, 1), "invalid_json");
    al_dataset_free(d);
}

static void test_json_array(void) {
    const char *arr = "[\n  {\"text\": \"a\"},\n  {\n    \"text\": 5\n  },\n  7,\n  {\"text\": \"b\"}\n]\n";
    al_dataset *d = rd_name(arr, NULL, "pretrain");
    T_STR_EQ(rep_str(d, "file_format"), "json");
    T_EQ_INT(rep_int(d, "rows"), 4);
    T_STR_EQ(code_at(d, 3), "invalid_field_type");
    T_STR_EQ(code_at(d, 6), "data_type");
    T_EQ_INT(d->n_ex, 2);
    if (d->n_ex == 2) T_EQ_INT(d->ex[1].line, 7);
    al_dataset_free(d);
    d = rd_name("[{\"text\":\"a\"},\n{\"text\":\"b\"},\n{\"text\": }\n", NULL, NULL);
    T_STR_EQ(code_at(d, 3), "invalid_json");
    T_EQ_INT(rep_int(d, "valid_rows"), 2);
    al_dataset_free(d);
    d = rd_name("[{\"text\":\"a\"}] {\"text\":\"b\"}", NULL, NULL);
    T_STR_EQ(code_at(d, 1), "invalid_json");
    al_dataset_free(d);
    d = rd_name("[]", NULL, NULL);
    T_TRUE(json_is_false(json_object_get(al_dataset_report(d), "trainable")));
    al_dataset_free(d);
}

/* A file whose format cannot be told apart is refused with the candidates
 * named; a method that can train only one of them settles it. */
static void test_ambiguity(void) {
    const char *both = "{\"instruction\":\"i\",\"output\":\"o\",\"text\":\"### i\\n### o\"}\n"
                       "{\"instruction\":\"j\",\"output\":\"p\",\"text\":\"### j\\n### p\"}\n";
    al_dataset *d = rd(both, g_chat, NULL, 0, 0);
    T_STR_EQ(code_at(d, 0), "ambiguous_format");
    const char *msg = json_string_value(json_object_get(error_at(d, 0), "message"));
    T_TRUE(msg && strstr(msg, "alpaca (instruction/output)") && strstr(msg, "text (text)"));
    T_TRUE(json_is_false(json_object_get(al_dataset_report(d), "trainable")));
    al_dataset_free(d);
    d = rd(both, g_chat, "sft", 0, 0);      /* sft takes both: still refused */
    T_STR_EQ(code_at(d, 0), "ambiguous_format");
    al_dataset_free(d);
    d = rd(both, g_chat, "pretrain", 0, 0); /* pretrain takes text only */
    T_STR_EQ(rep_str(d, "format"), "text");
    T_EQ_INT(d->n_ex, 2);
    al_dataset_free(d);
    /* a tie between two formats */
    d = rd("{\"text\":\"a\"}\n" MSG_OK, g_chat, NULL, 0, 0);
    T_STR_EQ(code_at(d, 0), "ambiguous_format");
    T_TRUE(strstr(json_string_value(json_object_get(error_at(d, 0), "message")), "text (text), messages") != NULL);
    al_dataset_free(d);
    /* one ambiguous row in a text file is judged as text */
    d = rd("{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\":\"c\",\"prompt\":\"p\",\"completion\":\"q\"}\n", g_chat,
           NULL, 0, 0);
    T_STR_EQ(rep_str(d, "format"), "text");
    T_EQ_INT(d->n_ex, 3);
    al_dataset_free(d);
}

/* 100k rows in seconds: conversations rendered incrementally and text.
 * Sanitizer and valgrind (ctest -T memcheck) runs take a fifth of the rows
 * and check no time. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
enum { SANITIZED = 1 };
#else
enum { SANITIZED = 0 };
#endif

static void test_speed(void) {
    const char *pre = getenv("LD_PRELOAD");
    int slow = SANITIZED || (pre && strstr(pre, "vgpreload"));
    const int n = slow ? 20000 : 100000;
    size_t cap = (size_t)n * 220, k = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < n; i++) {
        if (i % 3 == 0)
            k += (size_t)snprintf(buf + k, cap - k,
                                  "{\"messages\":[{\"role\":\"user\",\"content\":\"What is %d plus "
                                  "%d?\"},{\"role\":\"assistant\",\"content\":\"It is %d.\"}]}\n",
                                  i, i + 1, 2 * i + 1);
        else
            k += (size_t)snprintf(buf + k, cap - k,
                                  "{\"prompt\":\"Add %d and %d: \",\"completion\":\"%d\"}\n", i, 7,
                                  i + 7);
    }
    /* A third of the rows are in the minority format: a bad case for the
     * re-read of rows whose format differs from the file's (a tie would be
     * refused as ambiguous). */
    al_data_opts o = {0};
    o.max_length = 64;
    al_dataset *d = NULL;
    /* CPU time: other jobs on the machine do not count against us. */
    clock_t t0 = clock();
    T_OK(al_dataset_read_mem(buf, k, g_chat, &o, &d, NULL));
    double dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("read %d rows (%zu bytes) in %.2f CPU s\n", n, k, dt);
    T_EQ_INT(d->rows, n);
    T_EQ_INT(d->n_errors, (n + 2) / 3);   /* the conversations lack "prompt" */
    T_TRUE(slow || dt < 20.0);
    al_dataset_free(d);
    /* Uniform rows. */
    k = 0;
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf(buf + k, cap - k,
                              "{\"messages\":[{\"role\":\"user\",\"content\":\"What is %d plus "
                              "%d?\"},{\"role\":\"assistant\",\"content\":\"It is %d.\"}]}\n",
                              i, i + 1, 2 * i + 1);
    t0 = clock();
    T_OK(al_dataset_read_mem(buf, k, g_chat, &o, &d, NULL));
    dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("read %d conversations in %.2f CPU s\n", n, dt);
    T_EQ_INT(d->n_ex, n);
    T_TRUE(slow || dt < 20.0);
    al_dataset_free(d);
    free(buf);
}

/* The report stays small whatever the file: the first AL_REPORT_MAX_ITEMS
 * errors and warnings are listed, every one is counted by code, and the
 * rest are summed under errors_omitted / warnings_omitted. */
static void test_report_capped(void) {
    int bad = 3000, dups = 2500;
    size_t cap = (size_t)(bad + dups + 1) * 48, k = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < bad; i++) k += (size_t)snprintf(buf + k, cap - k, "not json %d\n", i);
    for (int i = 0; i <= dups; i++) k += (size_t)snprintf(buf + k, cap - k, "{\"text\":\"same\"}\n");
    al_dataset *d = rd(buf, NULL, NULL, 0, 0);
    const json_t *rep = al_dataset_report(d);
    T_EQ_INT(d->n_errors, bad);
    T_EQ_INT(json_array_size(json_object_get(rep, "errors")), AL_REPORT_MAX_ITEMS);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(rep, "error_counts"), "invalid_json")), bad);
    T_EQ_INT(rep_int(d, "errors_omitted"), bad - AL_REPORT_MAX_ITEMS);
    T_STR_EQ(code_at(d, 1), "invalid_json");
    T_STR_EQ(code_at(d, AL_REPORT_MAX_ITEMS), "invalid_json");
    T_TRUE(error_at(d, AL_REPORT_MAX_ITEMS + 1) == NULL);
    T_EQ_INT(rep_int(d, "duplicates"), dups);
    T_EQ_INT(json_array_size(json_object_get(rep, "warnings")), AL_REPORT_MAX_ITEMS);
    T_EQ_INT(json_integer_value(json_object_get(json_object_get(rep, "warning_counts"), "duplicate")), dups);
    T_EQ_INT(rep_int(d, "warnings_omitted"), dups - AL_REPORT_MAX_ITEMS);
    /* the whole report, serialised, is a few tens of kB */
    char *js = json_dumps(rep, JSON_COMPACT);
    T_TRUE(js && strlen(js) < 64 * 1024);
    free(js);
    al_dataset_free(d);
    /* a small file lists everything and omits nothing */
    d = rd("x\n{\"text\":\"a\"}\n{\"text\":\"a\"}\n", NULL, NULL, 0, 0);
    T_EQ_INT(rep_int(d, "errors_omitted"), 0);
    T_EQ_INT(rep_int(d, "warnings_omitted"), 0);
    T_EQ_INT(json_array_size(json_object_get(al_dataset_report(d), "warnings")), 1);
    al_dataset_free(d);
    free(buf);
}

int main(void) {
    g_tok = al_tok_byte_new();
    T_TRUE(g_tok != NULL);
    char err[AL_ERRLEN];
    /* Plain ChatML: masks come from incremental rendering and are the
     * content plus "<|im_end|>\n" of each assistant turn. */
    T_OK(al_chat_new(&g_chat, g_tok,
                     "{% for message in messages %}<|im_start|>{{ message.role }}\n"
                     "{{ message.content }}<|im_end|>\n{% endfor %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
                     err));
    if (!g_tok || !g_chat) return t_done();
    g_b = al_tok_adds_bos(g_tok) ? 1 : 0;
    test_error_codes();
    test_template_error();
    test_bad_lines_file();
    test_preference_variants();
    test_answer_split_common_prompt();
    test_rankings_ratings();
    test_lm_formats();
    test_rl_prompts();
    test_stats_and_lengths();
    test_duplicates_and_mix();
    test_eos_bos_everywhere();
    test_inputs();
    test_alpaca();
    test_sharegpt();
    test_sharegpt_names();
    test_content_parts();
    test_tools_in_templates();
    test_csv_tsv();
    test_json_array();
    test_ambiguity();
    test_speed();
    test_report_capped();
    al_chat_free(g_chat);
    al_tok_free(g_tok);
    return t_done();
}

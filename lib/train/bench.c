/* Benchmarks (see bench.h): multiple choice by log-likelihood as
 * lm-evaluation-harness scores it (its MultipleChoiceTask: context,
 * target_delimiter + choice as the continuation, _encode_pair's split, acc
 * and acc_norm = argmax of ll / len(choice)), and generative tasks graded
 * by lib/train/grader.h. A file is JSONL or one JSON array of rows; rows
 * are read with jansson. */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io.h"
#include "../tasks/tasks.h"
#include "../buf.h"

enum { BT_MC = 1, BT_GEN = 2, MAX_FILE = 1 << 30, GEN_DEFAULT = 256 };

typedef struct bchoice {
    int32_t *ids;        /* context + continuation */
    int len, ctx;        /* tokens; the first continuation token is ids[ctx] */
    double chars, bytes; /* of the choice text */
} bchoice;

typedef struct bitem {
    int line;
    int n_choices, gold;
    bchoice *ch;
    al_seq prompt;                  /* generative */
    char **answers;
    int n_answers;
    const al_grader *grader;
} bitem;

struct al_bench {
    char name[64];
    int type;
    int n;
    bitem *items;
    al_grader_set graders;
    const al_tok *tok;
    int32_t eos, pad;
    int max_new, longest, max_T;
    char until[4][32];   /* generative: a completion ends before the first of these */
    int n_until;
};

/* ---- reading -------------------------------------------------------------------- */

/* Calls fn on each row object of a JSONL file or a JSON array file. */
typedef int (*row_fn)(void *ud, const json_t *row, int line, char err[AL_ERRLEN]);

static int each_row_mem(const char *buf, size_t len, const char *what, long limit, row_fn fn, void *ud,
                        char err[AL_ERRLEN]) {
    size_t i = 0;
    int rc = AL_OK;
    while (i < len && strchr(" \t\r\n", buf[i])) i++;
    long seen = 0;
    if (i < len && buf[i] == '[') {
        json_error_t je;
        json_t *arr = json_loadb(buf, len, 0, &je);
        if (!arr || !json_is_array(arr))
            rc = al_err(err, AL_EFORMAT, "%s: not a JSON array of rows (line %d: %s)", what, je.line, je.text);
        for (size_t k = 0; !rc && k < json_array_size(arr) && (!limit || seen < limit); k++, seen++)
            rc = fn(ud, json_array_get(arr, k), (int)k + 1, err);
        json_decref(arr);
    } else {
        int line = 0;
        for (size_t a = 0; !rc && a < len && (!limit || seen < limit);) {
            size_t b = a;
            while (b < len && buf[b] != '\n') b++;
            line++;
            size_t s = a;
            while (s < b && strchr(" \t\r", buf[s])) s++;
            if (s < b) {
                json_error_t je;
                json_t *o = json_loadb(buf + a, b - a, 0, &je);
                if (!o) rc = al_err(err, AL_EFORMAT, "%s: line %d: invalid JSON at column %d: %s", what, line,
                                    je.column, je.text);
                else rc = fn(ud, o, line, err);
                json_decref(o);
                seen++;
            }
            a = b + 1;
        }
    }
    return rc;
}

static int each_row(const char *path, const char *what, long limit, row_fn fn, void *ud, char err[AL_ERRLEN]) {
    char *buf;
    size_t len;
    char e2[AL_ERRLEN];
    int rc = al_file_read(path, MAX_FILE, &buf, &len, e2);
    if (rc) return al_err(err, rc, "%s: %s", what, e2);
    rc = each_row_mem(buf, len, what, limit, fn, ud, err);
    free(buf);
    return rc;
}

static const char *first_string(const json_t *o, const char *const *keys) {
    for (int i = 0; keys[i]; i++) {
        const char *s = json_string_value(json_object_get(o, keys[i]));
        if (s) return s;
    }
    return NULL;
}

static const char *const CONTEXT_KEYS[] = {"question", "query", "prompt", "context", "ctx", "question_stem", NULL};
static const char *const GEN_KEYS[] = {"prompt", "question", "query", NULL};
static const char *const GOLD_KEYS[] = {"answer", "label", "gold", "answerKey", NULL};
static const char *const REF_KEYS[] = {"answer", "answers", "reference", "solution", "ground_truth", NULL};

typedef struct detect_ud {
    char *type;
} detect_ud;

static int detect_row(void *ud, const json_t *row, int line, char err[AL_ERRLEN]) {
    (void)line;
    (void)err;
    char *type = ((detect_ud *)ud)->type;
    if (json_object_get(row, "choices") || json_object_get(row, "endings")) snprintf(type, 32, "multiple_choice");
    else if (first_string(row, GEN_KEYS) && !json_object_get(row, "completion") && !json_object_get(row, "messages")) {
        int ref = 0;
        for (int i = 0; REF_KEYS[i]; i++) ref |= json_object_get(row, REF_KEYS[i]) != NULL;
        snprintf(type, 32, "%s", ref ? "generative" : "loss");
    } else {
        snprintf(type, 32, "loss");
    }
    return AL_OK;
}

int al_bench_detect(const char *path, char type[32], char err[AL_ERRLEN]) {
    detect_ud d = {type};
    snprintf(type, 32, "loss");
    return each_row(path, "file", 1, detect_row, &d, err);
}

/* ---- tokenizing -------------------------------------------------------------------- */

/* Text with the tokenizer's own special tokens, never a trailing EOS. */
static int enc(const al_tok *tok, const char *s, size_t n, int32_t **ids, int *len, char err[AL_ERRLEN]) {
    int rc = al_tok_encode(tok, s, n, 1, 0, ids, len, NULL, NULL, err);
    if (rc) return rc;
    int32_t eos = al_tok_eos(tok);
    if (al_tok_adds_eos(tok) && *len > 0 && (*ids)[*len - 1] == eos) (*len)--;
    return AL_OK;
}

static double utf8_chars(const char *s) {
    double n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

typedef struct load_ud {
    al_bench *b;
    const al_eval_task *t;
    const al_chat *chat;
    const char *what;
    int cap;
    json_t *shots;       /* few-shot: the rows shots are drawn from, or NULL */
    int shots_own;       /* they are the task's own rows (the row itself is left out) */
    long ordinal;        /* the row being read (0-based, among the file's rows) */
    json_t *turns;       /* chat: the current row's few-shot turns, then its own user turn */
} load_ud;

static bitem *new_item(load_ud *u, char err[AL_ERRLEN]) {
    al_bench *b = u->b;
    if (b->n == u->cap) {
        int cap = u->cap ? 2 * u->cap : 64;
        bitem *ni = realloc(b->items, (size_t)cap * sizeof *ni);
        if (!ni) {
            al_err(err, AL_ENOMEM, "out of memory");
            return NULL;
        }
        b->items = ni;
        u->cap = cap;
    }
    bitem *it = &b->items[b->n++];
    memset(it, 0, sizeof *it);
    return it;
}

/* The context as prompt ids: raw text, or rendered as a user turn. */
static int context_ids(load_ud *u, const char *ctx, int32_t **ids, int *len, char err[AL_ERRLEN]) {
    if (!u->t->chat_template) return enc(u->b->tok, ctx, strlen(ctx), ids, len, err);
    json_t *msgs = u->turns ? json_incref(u->turns) : json_pack("[{s:s, s:s}]", "role", "user", "content", ctx);
    al_seq s = {0};
    int rc = msgs ? al_chat_encode_prompt_messages(u->chat, msgs, NULL, &s, err) : al_err(err, AL_ENOMEM, "out of memory");
    json_decref(msgs);
    if (rc) return rc;
    *ids = s.ids;
    *len = s.n;
    free(s.mask);
    return AL_OK;
}

static int mc_choice(load_ud *u, bitem *it, const char *ctx, const char *choice, bchoice *c, char err[AL_ERRLEN]) {
    const al_tok *tok = u->b->tok;
    int rc;
    c->chars = utf8_chars(choice);
    c->bytes = (double)strlen(choice);
    if (u->t->chat_template) {
        int32_t *ci = NULL, *ch = NULL;
        int cn = 0, hn = 0;
        if ((rc = context_ids(u, ctx, &ci, &cn, err))) return rc;
        if ((rc = al_tok_encode(tok, choice, strlen(choice), 0, 0, &ch, &hn, NULL, NULL, err))) {
            free(ci);
            return rc;
        }
        c->ids = malloc(((size_t)cn + hn + 1) * sizeof *c->ids);
        if (c->ids) {
            memcpy(c->ids, ci, (size_t)cn * sizeof *ci);
            memcpy(c->ids + cn, ch, (size_t)hn * sizeof *ch);
        }
        c->len = cn + hn;
        c->ctx = cn;
        free(ci);
        free(ch);
        return c->ids ? AL_OK : al_err(err, AL_ENOMEM, "out of memory");
    }
    /* _encode_pair: the context's trailing whitespace belongs to the continuation */
    const char *delim = u->t->delimiter;
    size_t cl = strlen(ctx), keep = cl;
    while (keep && strchr(" \t\n\r", ctx[keep - 1])) keep--;
    size_t wl = cl + strlen(delim) + strlen(choice);
    char *whole = malloc(wl + 1);
    if (!whole) return al_err(err, AL_ENOMEM, "out of memory");
    snprintf(whole, wl + 1, "%s%s%s", ctx, delim, choice);
    int32_t *wi = NULL, *ci = NULL;
    int wn = 0, cn = 0;
    rc = enc(tok, whole, wl, &wi, &wn, err);
    if (!rc) rc = enc(tok, ctx, keep, &ci, &cn, err);
    free(whole);
    if (rc) {
        free(wi);
        return rc;
    }
    free(ci);
    if (cn == 0) {
        /* an empty context: the end-of-text token stands before the continuation */
        int32_t *ni = malloc(((size_t)wn + 1) * sizeof *ni);
        if (!ni) {
            free(wi);
            return al_err(err, AL_ENOMEM, "out of memory");
        }
        int32_t bos = al_tok_bos(tok);
        ni[0] = bos >= 0 ? bos : u->b->eos;
        memcpy(ni + 1, wi, (size_t)wn * sizeof *wi);
        free(wi);
        wi = ni;
        wn++;
        cn = 1;
    }
    if (wn <= cn) {
        free(wi);
        return al_err(err, AL_EINVAL, "line %d: the choice '%.40s' adds no tokens to the context", it->line, choice);
    }
    c->ids = wi;
    c->len = wn;
    c->ctx = cn;
    return AL_OK;
}

/* A multiple-choice row's context, choices and right answer; AL_EINVAL
 * naming the line. */
static int mc_check(const json_t *row, int line, const char **ctx_out, const json_t **ch_out, long *gold_out,
                    char err[AL_ERRLEN]) {
    const char *ctx = first_string(row, CONTEXT_KEYS);
    const json_t *ch = json_object_get(row, "choices"), *labels = NULL;
    if (!ch) ch = json_object_get(row, "endings"); /* HellaSwag */
    if (json_is_object(ch)) {
        /* ARC, OpenBookQA: {"text": [...], "label": ["A", ...]}, answerKey a label */
        labels = json_object_get(ch, "label");
        ch = json_object_get(ch, "text");
        if (labels && json_array_size(labels) != json_array_size(ch))
            return al_err(err, AL_EINVAL, "line %d: choices.label must give one label per choices.text", line);
    }
    if (!ctx) return al_err(err, AL_EINVAL, "line %d: needs a \"question\" (or query, prompt, context) string", line);
    size_t k = json_array_size(ch);
    int ok = json_is_array(ch) && k >= 2 && k <= 1000;
    for (size_t i = 0; ok && i < k; i++) ok = json_is_string(json_array_get(ch, i));
    if (!ok) return al_err(err, AL_EINVAL, "line %d: choices must be a list of 2 to 1000 strings", line);
    for (size_t i = 0; i < k; i++)
        if (!json_string_length(json_array_get(ch, i))) return al_err(err, AL_EINVAL, "line %d: an empty choice", line);
    const json_t *g = NULL;
    for (int i = 0; GOLD_KEYS[i] && !g; i++) g = json_object_get(row, GOLD_KEYS[i]);
    long gold = -1;
    if (json_is_integer(g)) gold = (long)json_integer_value(g);
    else if (json_is_string(g)) {
        const char *s = json_string_value(g);
        for (size_t i = 0; labels && i < k && gold < 0; i++)
            if (json_is_string(json_array_get(labels, i)) && !strcmp(s, json_string_value(json_array_get(labels, i))))
                gold = (long)i;
        for (size_t i = 0; i < k && gold < 0; i++)
            if (!strcmp(s, json_string_value(json_array_get(ch, i)))) gold = (long)i;
        if (gold < 0 && s[0] >= 'A' && s[0] <= 'Z' && !s[1]) gold = s[0] - 'A'; /* MMLU's letters */
        if (gold < 0 && s[0] >= '0' && s[0] <= '9') {
            char *end;
            long v = strtol(s, &end, 10);
            if (!*end) gold = v;
        }
    } else {
        return al_err(err, AL_EINVAL, "line %d: needs \"answer\" (or label, gold, answerKey): the right choice's "
                      "index, text or label", line);
    }
    if (gold < 0 || gold >= (long)k)
        return al_err(err, AL_EINVAL, "line %d: the answer is neither a choice nor an index below %zu", line, k);
    *ctx_out = ctx;
    *ch_out = ch;
    *gold_out = gold;
    return AL_OK;
}

/* ---- few-shot contexts ---------------------------------------------------------------- */

static int gen_check(const json_t *row, int line, const char **prompt_out, char ***ans_out, int *n_out,
                     char err[AL_ERRLEN]);
static void free_answers(char **ans);

/* A shot's text and target: a multiple-choice row's context and right
 * choice, a generative row's prompt and first accepted answer (*target
 * malloc'd). */
static int shot_parts(int type, const json_t *row, int line, const char **text, char **target, char err[AL_ERRLEN]) {
    int rc;
    if (type == BT_MC) {
        const json_t *ch;
        long gold;
        if ((rc = mc_check(row, line, text, &ch, &gold, err))) return rc;
        *target = strdup(json_string_value(json_array_get(ch, (size_t)gold)));
    } else {
        char **ans;
        int k;
        if ((rc = gen_check(row, line, text, &ans, &k, err))) return rc;
        *target = strdup(ans[0]);
        free_answers(ans);
    }
    return *target ? AL_OK : al_err(err, AL_ENOMEM, "out of memory");
}

typedef struct shots_ud {
    json_t *rows;
    int *lines;
    int n, cap;
} shots_ud;

static int collect_row(void *ud, const json_t *row, int line, char err[AL_ERRLEN]) {
    shots_ud *s = ud;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        int *nl = realloc(s->lines, (size_t)cap * sizeof *nl);
        if (!nl) return al_err(err, AL_ENOMEM, "out of memory");
        s->lines = nl;
        s->cap = cap;
    }
    s->lines[s->n++] = line;
    return json_array_append(s->rows, (json_t *)row) ? al_err(err, AL_ENOMEM, "out of memory") : AL_OK;
}

/* The rows shots are drawn from (fewshot_file, else the task's own file),
 * each checked as a shot of b's type. */
static int load_shots(load_ud *u, char err[AL_ERRLEN]) {
    const al_eval_task *t = u->t;
    const char *what = t->fewshot_file[0] ? "fewshot_file" : "file";
    shots_ud s = {json_array(), NULL, 0, 0};
    if (!s.rows) return al_err(err, AL_ENOMEM, "out of memory");
    int rc = each_row(t->fewshot_file[0] ? t->fewshot_file : t->file, what, 0, collect_row, &s, err);
    for (int i = 0; !rc && i < s.n; i++) {
        const json_t *row = json_array_get(s.rows, (size_t)i);
        const char *text;
        char *target = NULL, e2[AL_ERRLEN];
        if (!json_is_object(row)) rc = al_err(err, AL_EINVAL, "%s: line %d: must be a JSON object", what, s.lines[i]);
        else if ((rc = shot_parts(u->b->type, row, s.lines[i], &text, &target, e2))) al_err(err, rc, "%s: %s", what, e2);
        free(target);
    }
    free(s.lines);
    if (rc) {
        json_decref(s.rows);
        return rc;
    }
    u->shots = s.rows;
    u->shots_own = !t->fewshot_file[0];
    long others = (long)json_array_size(s.rows) - u->shots_own;
    if (others < t->num_fewshot) {
        json_decref(u->shots);
        u->shots = NULL;
        return al_err(err, AL_EINVAL, "num_fewshot %d: the %s holds only %ld %s", t->num_fewshot, what, others,
                      u->shots_own ? "other rows" : "rows");
    }
    return AL_OK;
}

/* The shots of row `self` (its index among the file's rows), as the
 * harness's ContextSampler picks them: num_fewshot + 1 drawn when they come
 * from the row's own file, the row itself dropped, the first num_fewshot
 * kept. "default" draws without replacement from a generator seeded by
 * fewshot_seed and the row (the harness's Python random draws cannot be
 * reproduced; the choice is as uniform and as fixed); "first_n" takes the
 * first rows in order. */
static void pick_shots(const load_ud *u, long self, long *pick) {
    long N = (long)json_array_size(u->shots), n = u->t->num_fewshot, got = 0;
    long need = u->shots_own ? n + 1 : n, draw[66];
    if (need > N) need = N;
    al_rng rng;
    al_rng_seed(&rng, u->t->fewshot_seed ^ ((uint64_t)self * 0x9E3779B97F4A7C15ull));
    for (long i = 0; i < need;) {
        long r = u->t->fewshot_first_n ? i : (long)(al_rng_u64(&rng) % (uint64_t)N);
        int dup = 0;
        for (long j = 0; j < i; j++) dup |= draw[j] == r;
        if (!dup) draw[i++] = r;
    }
    for (long i = 0; i < need && got < n; i++)
        if (!u->shots_own || draw[i] != self) pick[got++] = draw[i];
}

/* Row `self`'s context with its shots before it (the harness's
 * fewshot_context): each shot's text + target_delimiter + target +
 * fewshot_delimiter, then the row's text, into *full (malloc'd). With
 * fewshot_as_multiturn the shots become user and assistant turns in
 * u->turns, the row's text the last user turn. */
static int with_shots(load_ud *u, long self, const char *text, char **full, char err[AL_ERRLEN]) {
    json_decref(u->turns);
    u->turns = NULL;
    if (!u->shots) {
        *full = strdup(text);
        return *full ? AL_OK : al_err(err, AL_ENOMEM, "out of memory");
    }
    long pick[64];
    pick_shots(u, self, pick);
    const al_eval_task *t = u->t;
    al_buf b = {0};
    int rc = AL_OK, multi = t->fewshot_multiturn;
    if (multi && !(u->turns = json_array())) return al_err(err, AL_ENOMEM, "out of memory");
    for (int i = 0; i < t->num_fewshot && !rc; i++) {
        const char *st;
        char *target = NULL;
        if ((rc = shot_parts(u->b->type, json_array_get(u->shots, (size_t)pick[i]), 0, &st, &target, err))) break;
        if (multi) {
            if (json_array_append_new(u->turns, json_pack("{s:s, s:s}", "role", "user", "content", st)) ||
                json_array_append_new(u->turns, json_pack("{s:s, s:s}", "role", "assistant", "content", target)))
                rc = al_err(err, AL_ENOMEM, "out of memory");
        } else {
            al_buf_puts(&b, st);
            al_buf_puts(&b, t->delimiter);
            al_buf_puts(&b, target);
            al_buf_puts(&b, t->fewshot_delimiter);
        }
        free(target);
    }
    if (!rc && multi && json_array_append_new(u->turns, json_pack("{s:s, s:s}", "role", "user", "content", text)))
        rc = al_err(err, AL_ENOMEM, "out of memory");
    al_buf_puts(&b, text);
    if (!rc && b.oom) rc = al_err(err, AL_ENOMEM, "out of memory");
    if (rc) {
        al_buf_deinit(&b);
        return rc;
    }
    *full = b.p;
    return AL_OK;
}

static int mc_item(load_ud *u, int line, const char *ctx, const json_t *ch, long gold, char err[AL_ERRLEN]);

static int mc_row(load_ud *u, const json_t *row, int line, char err[AL_ERRLEN]) {
    const char *ctx;
    const json_t *ch;
    long gold;
    int rc = mc_check(row, line, &ctx, &ch, &gold, err);
    if (rc) return rc;
    char *full = NULL;
    if ((rc = with_shots(u, u->ordinal, ctx, &full, err))) return rc;
    rc = mc_item(u, line, full, ch, gold, err);
    free(full);
    return rc;
}

static int mc_item(load_ud *u, int line, const char *ctx, const json_t *ch, long gold, char err[AL_ERRLEN]) {
    int rc;
    size_t k = json_array_size(ch);
    bitem *it = new_item(u, err);
    if (!it) return AL_ENOMEM;
    it->line = line;
    it->gold = (int)gold;
    it->ch = calloc(k, sizeof *it->ch);
    if (!it->ch) return al_err(err, AL_ENOMEM, "out of memory");
    it->n_choices = (int)k;
    for (size_t i = 0; i < k; i++) {
        bchoice *c = &it->ch[i];
        if ((rc = mc_choice(u, it, ctx, json_string_value(json_array_get(ch, i)), c, err))) return rc;
        if (c->len - c->ctx + 1 > u->b->max_T)
            return al_err(err, AL_EINVAL, "line %d: choice %zu is longer than the model's context (%d tokens)", line, i,
                          u->b->max_T);
        int L = c->len < u->b->max_T ? c->len : u->b->max_T;
        if (L > u->b->longest) u->b->longest = L;
    }
    return AL_OK;
}

static int gen_item(load_ud *u, int line, const char *prompt, char **answers, int n_answers, const json_t *gspec,
                    char err[AL_ERRLEN]) {
    bitem *it = new_item(u, err);
    if (!it) return AL_ENOMEM;
    it->line = line;
    it->answers = answers;
    it->n_answers = n_answers;
    int32_t *ids = NULL;
    int n = 0;
    int rc = context_ids(u, prompt, &ids, &n, err);
    if (rc) return rc;
    it->prompt.ids = ids;
    it->prompt.n = n;
    if (n >= u->b->max_T) return al_err(err, AL_EINVAL, "line %d: the prompt fills the model's context", line);
    al_grader_cfg c = u->t->grader;
    al_error e2;
    if (gspec && !json_is_null(gspec) && (rc = al_grader_cfg_parse(&c, gspec, "grader", &e2)))
        return al_err(err, rc, "line %d: %s", line, e2.msg);
    if ((rc = al_grader_set_get(&u->b->graders, &c, "grader", &it->grader, &e2)))
        return al_err(err, rc, "line %d: %s", line, e2.msg);
    char why[160];
    for (int i = 0; i < n_answers; i++)
        if (al_grader_answer_invalid(it->grader, answers[i], why, sizeof why))
            return al_err(err, AL_EINVAL, "line %d: %s", line, why);
    int L = n + u->b->max_new < u->b->max_T ? n + u->b->max_new : u->b->max_T;
    if (L > u->b->longest) u->b->longest = L;
    return AL_OK;
}

/* A generative row's prompt and accepted answers (malloc'd,
 * NULL-terminated); AL_EINVAL naming the line. */
static int gen_check(const json_t *row, int line, const char **prompt_out, char ***ans_out, int *n_out,
                     char err[AL_ERRLEN]) {
    const char *prompt = first_string(row, GEN_KEYS);
    if (!prompt) return al_err(err, AL_EINVAL, "line %d: needs a \"prompt\" (or question) string", line);
    const json_t *a = NULL;
    for (int i = 0; REF_KEYS[i] && !a; i++) a = json_object_get(row, REF_KEYS[i]);
    size_t k = json_is_array(a) ? json_array_size(a) : json_is_string(a) || json_is_number(a) ? 1 : 0;
    if (!k) return al_err(err, AL_EINVAL, "line %d: needs \"answer\": a string, a number or a list of strings", line);
    char **ans = calloc(k + 1, sizeof *ans);
    if (!ans) return al_err(err, AL_ENOMEM, "out of memory");
    for (size_t i = 0; i < k; i++) {
        const json_t *v = json_is_array(a) ? json_array_get(a, i) : a;
        char num[64];
        const char *s = json_string_value(v);
        if (!s && json_is_integer(v)) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v)), s = num;
        else if (!s && json_is_real(v)) snprintf(num, sizeof num, "%.17g", json_real_value(v)), s = num;
        if (!s || !(ans[i] = strdup(s))) {
            for (size_t q = 0; q < i; q++) free(ans[q]);
            free(ans);
            return s ? al_err(err, AL_ENOMEM, "out of memory")
                     : al_err(err, AL_EINVAL, "line %d: answer[%zu] must be a string", line, i);
        }
    }
    *prompt_out = prompt;
    *ans_out = ans;
    *n_out = (int)k;
    return AL_OK;
}

static void free_answers(char **ans) {
    for (int q = 0; ans && ans[q]; q++) free(ans[q]);
    free(ans);
}

static int gen_row(load_ud *u, const json_t *row, int line, char err[AL_ERRLEN]) {
    const char *prompt;
    char **ans;
    int k;
    int rc = gen_check(row, line, &prompt, &ans, &k, err);
    if (rc) return rc;
    char *full = NULL;
    if ((rc = with_shots(u, u->ordinal, prompt, &full, err))) {
        free_answers(ans);
        return rc;
    }
    rc = gen_item(u, line, full, ans, k, json_object_get(row, "grader"), err);
    free(full);
    if (rc && (!u->b->n || u->b->items[u->b->n - 1].answers != ans)) free_answers(ans);
    return rc;
}

static int load_row(void *ud, const json_t *row, int line, char err[AL_ERRLEN]) {
    load_ud *u = ud;
    int rc = !json_is_object(row) ? al_err(err, AL_EINVAL, "line %d: must be a JSON object", line)
             : u->b->type == BT_MC ? mc_row(u, row, line, err)
                                   : gen_row(u, row, line, err);
    u->ordinal++;
    return rc;
}

static void item_free(bitem *it) {
    for (int c = 0; c < it->n_choices; c++) free(it->ch[c].ids);
    free(it->ch);
    al_seq_deinit(&it->prompt);
    for (int i = 0; i < it->n_answers; i++) free(it->answers[i]);
    free(it->answers);
}

void al_bench_free(al_bench *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++) item_free(&b->items[i]);
    free(b->items);
    al_grader_set_free(&b->graders);
    free(b);
}

int al_bench_load(al_bench **out, const al_eval_task *t, const al_chat *chat, const al_grader_cfg *job_grader,
                  int max_T, const char *what, char err[AL_ERRLEN]) {
    (void)job_grader; /* t->grader was read over it */
    al_bench *b = calloc(1, sizeof *b);
    if (!b) return al_err(err, AL_ENOMEM, "out of memory");
    snprintf(b->name, sizeof b->name, "%s", t->name);
    b->tok = al_chat_tok(chat);
    b->eos = al_tok_eos(b->tok);
    b->pad = al_chat_pad_id(chat);
    b->max_T = max_T;
    b->max_new = t->max_new_tokens > 0 ? t->max_new_tokens : GEN_DEFAULT;
    char type[32];
    int rc = AL_OK;
    if (t->task[0]) {
        snprintf(type, sizeof type, "generative");
    } else if (t->type[0]) {
        snprintf(type, sizeof type, "%s", t->type);
    } else if ((rc = al_bench_detect(t->file, type, err))) {
        char e2[AL_ERRLEN];
        snprintf(e2, sizeof e2, "%s", err);
        al_bench_free(b);
        return al_err(err, rc, "%s: %s", what, e2);
    }
    b->type = !strcmp(type, "multiple_choice") ? BT_MC : !strcmp(type, "generative") ? BT_GEN : 0;
    if (!b->type) {
        al_bench_free(b);
        return al_err(err, AL_EINVAL, "%s: a %s file is no benchmark", what, type);
    }
    load_ud u = {b, t, chat, what, 0, NULL, 0, 0, NULL};
    char e2[AL_ERRLEN];
    /* stop strings: the task's, else (the harness's default) the few-shot delimiter when shots are given */
    b->n_until = t->n_until >= 0 ? t->n_until : t->num_fewshot > 0 && t->fewshot_delimiter[0] ? 1 : 0;
    for (int i = 0; i < b->n_until; i++)
        snprintf(b->until[i], sizeof b->until[i], "%s", t->n_until >= 0 ? t->until[i] : t->fewshot_delimiter);
    if (t->task[0]) {
        /* a built-in task as a generative benchmark: its prompts and answers, its grader */
        al_eval_task tt = *t;
        const char *tg = al_task_grader(t->task);
        if (tg) {
            json_t *v = json_string(tg);
            al_error ge;
            rc = v ? al_grader_cfg_parse(&tt.grader, v, "grader", &ge) : al_failf(&ge, AL_ENOMEM, "out of memory");
            if (rc) snprintf(e2, sizeof e2, "%s", ge.msg);
            json_decref(v);
        }
        u.t = &tt;
        for (long i = 0; !rc && i < (t->rows > 0 ? t->rows : 100); i++) {
            al_task_row r;
            char **ans = calloc(2, sizeof *ans);
            if (!ans || al_task_row_get(t->task, (al_task_split)t->split, 1000003u, (uint64_t)i, &r) ||
                !(ans[0] = strdup(r.answer))) {
                free(ans);
                rc = al_err(e2, AL_ENOMEM, "out of memory");
                break;
            }
            if ((rc = gen_item(&u, (int)i + 1, r.prompt, ans, 1, NULL, e2)) && b->items[b->n - 1].answers != ans) {
                free(ans[0]);
                free(ans);
            }
        }
    } else {
        if (t->num_fewshot > 0) rc = load_shots(&u, e2);
        if (!rc) rc = each_row(t->file, "file", t->limit, load_row, &u, e2);
        json_decref(u.shots);
        json_decref(u.turns);
    }
    if (!rc && b->n == 0) rc = al_err(e2, AL_EINVAL, "no rows");
    if (rc) {
        al_bench_free(b);
        return al_err(err, rc, "%s: %s", what, e2);
    }
    *out = b;
    return AL_OK;
}

int al_bench_longest(const al_bench *b) { return b->longest; }
int al_bench_items(const al_bench *b) { return b->n; }

int al_bench_item_tokens(const al_bench *b, int i, int c, const int32_t **ids, int *n, int *ctx) {
    if (i < 0 || i >= b->n) return AL_ERANGE;
    const bitem *it = &b->items[i];
    if (b->type == BT_GEN) {
        *ids = it->prompt.ids;
        *n = *ctx = it->prompt.n;
        return AL_OK;
    }
    if (c < 0 || c >= it->n_choices) return AL_ERANGE;
    *ids = it->ch[c].ids;
    *n = it->ch[c].len;
    *ctx = it->ch[c].ctx;
    return AL_OK;
}

/* ---- validating an upload -------------------------------------------------------------- */

typedef struct check_ud {
    int type;
    int rows;
    json_t *errors;   /* [{"line","message"}], the first 100 */
    int n_errors;
    al_grader_set graders;
} check_ud;

static int check_row(void *ud, const json_t *row, int line, char err[AL_ERRLEN]) {
    check_ud *c = ud;
    char e2[AL_ERRLEN];
    int rc;
    c->rows++;
    if (!json_is_object(row)) {
        rc = al_err(e2, AL_EINVAL, "line %d: must be a JSON object", line);
    } else if (c->type == BT_MC) {
        const char *ctx;
        const json_t *ch;
        long gold;
        rc = mc_check(row, line, &ctx, &ch, &gold, e2);
    } else {
        const char *prompt;
        char **ans;
        int k;
        rc = gen_check(row, line, &prompt, &ans, &k, e2);
        const json_t *g = json_object_get(row, "grader");
        if (!rc && g && !json_is_null(g)) {
            al_grader_cfg cfg;
            const al_grader *gr;
            al_grader_cfg_default(&cfg);
            al_error e3;
            if ((rc = al_grader_cfg_parse(&cfg, g, "grader", &e3)) ||
                (rc = al_grader_set_get(&c->graders, &cfg, "grader", &gr, &e3)))
                al_err(e2, rc, "line %d: %s", line, e3.msg);
        }
        if (!rc) free_answers(ans);
    }
    if (rc == AL_ENOMEM) return al_err(err, rc, "out of memory");
    if (rc) {
        if (json_array_size(c->errors) < 100)
            json_array_append_new(c->errors, json_pack("{s:i, s:s}", "line", line, "message", e2));
        c->n_errors++;
    }
    return AL_OK;
}

int al_bench_check_mem(const char *buf, size_t len, json_t **report, char err[AL_ERRLEN]) {
    char type[32] = "loss";
    detect_ud d = {type};
    int rc = each_row_mem(buf, len, "file", 1, detect_row, &d, err);
    if (rc) return rc;
    check_ud c = {.type = !strcmp(type, "multiple_choice") ? BT_MC : !strcmp(type, "generative") ? BT_GEN : 0};
    if (!c.type)
        return al_err(err, AL_EFORMAT, "the first row is neither multiple choice ({\"question\", \"choices\", "
                      "\"answer\"}) nor generative ({\"prompt\", \"answer\"})");
    if (!(c.errors = json_array())) return al_err(err, AL_ENOMEM, "out of memory");
    rc = each_row_mem(buf, len, "file", 0, check_row, &c, err);
    al_grader_set_free(&c.graders);
    if (rc) {
        json_decref(c.errors);
        return rc;
    }
    *report = json_pack("{s:s, s:i, s:i, s:i, s:o}", "format", type, "rows", c.rows, "valid_rows",
                        c.rows - c.n_errors, "n_errors", c.n_errors, "errors", c.errors);
    return *report ? AL_OK : al_err(err, AL_ENOMEM, "out of memory");
}

/* ---- scoring ------------------------------------------------------------------------ */

/* Mean and its standard error (sample standard deviation / sqrt(n)). */
static void put_mean(json_t *m, const char *name, const double *x, int n) {
    double s = 0, v = 0;
    for (int i = 0; i < n; i++) s += x[i];
    double mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) v += (x[i] - mean) * (x[i] - mean);
    char key[64];
    json_object_set_new(m, name, n ? json_real(mean) : json_null());
    snprintf(key, sizeof key, "%s_stderr", name);
    json_object_set_new(m, key, n > 1 ? json_real(sqrt(v / (n - 1)) / sqrt((double)n)) : json_null());
}

static int argmax(const double *v, const double *div, int k) {
    int best = 0;
    for (int i = 1; i < k; i++)
        if (v[i] / (div ? div[i] : 1) > v[best] / (div ? div[best] : 1)) best = i;
    return best;
}

static int run_mc(al_bench *b, al_model *m, int rows, int T, json_t *metrics, double *lls_out, char err[AL_ERRLEN]) {
    /* every (item, choice) as one row */
    int total = 0, maxk = 0;
    for (int i = 0; i < b->n; i++) {
        total += b->items[i].n_choices;
        maxk = b->items[i].n_choices > maxk ? b->items[i].n_choices : maxk;
    }
    if (rows < 1) rows = 1;
    int32_t *ids = malloc((size_t)rows * T * sizeof *ids), *tgt = malloc((size_t)rows * T * sizeof *tgt);
    float *lp = malloc((size_t)rows * T * sizeof *lp);
    double *ll = malloc((size_t)total * sizeof *ll), *acc = malloc((size_t)b->n * 3 * sizeof *acc);
    double *chars = malloc((size_t)maxk * sizeof *chars), *bytes = malloc((size_t)maxk * sizeof *bytes);
    int32_t *ri = malloc((size_t)total * sizeof *ri), *rc_ = malloc((size_t)total * sizeof *rc_);
    int rc = ids && tgt && lp && ll && acc && chars && bytes && ri && rc_ ? AL_OK : al_err(err, AL_ENOMEM, "out of memory");
    for (int i = 0, r = 0; !rc && i < b->n; i++)
        for (int c = 0; c < b->items[i].n_choices; c++, r++) {
            ri[r] = i;
            rc_[r] = c;
        }
    for (int r0 = 0; !rc && r0 < total; r0 += rows) {
        int k = total - r0 < rows ? total - r0 : rows, Tb = 1;
        for (int j = 0; j < k; j++) {
            const bchoice *c = &b->items[ri[r0 + j]].ch[rc_[r0 + j]];
            int L = c->len < T ? c->len : T;
            Tb = L > Tb ? L : Tb;
        }
        for (int j = 0; j < k; j++) {
            const bchoice *c = &b->items[ri[r0 + j]].ch[rc_[r0 + j]];
            int L = c->len < T ? c->len : T, skip = c->len - L;
            for (int t = 0; t < Tb; t++) {
                size_t o = (size_t)j * Tb + t;
                int src = skip + t; /* position t holds token src, predicts src + 1 */
                ids[o] = t < L ? c->ids[src] : b->pad >= 0 ? b->pad : 0;
                tgt[o] = t < L - 1 && src + 1 >= c->ctx ? c->ids[src + 1] : -1;
            }
        }
        al_tokens in = {.B = k, .T = Tb, .ids = ids, .targets = tgt};
        al_fwd f = {.logp = lp};
        if ((rc = al_model_forward(m, &in, &f))) {
            al_err(err, rc, "forward failed: %s", al_strerror(rc));
            break;
        }
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int t = 0; t < Tb; t++)
                if (tgt[(size_t)j * Tb + t] >= 0) s += lp[(size_t)j * Tb + t];
            ll[r0 + j] = s;
        }
    }
    if (!rc) {
        double *a = acc, *an = acc + b->n, *ab = acc + 2 * b->n;
        for (int i = 0, r = 0; i < b->n; r += b->items[i].n_choices, i++) {
            const bitem *it = &b->items[i];
            for (int c = 0; c < it->n_choices; c++) {
                chars[c] = it->ch[c].chars;
                bytes[c] = it->ch[c].bytes;
            }
            a[i] = argmax(ll + r, NULL, it->n_choices) == it->gold;
            an[i] = argmax(ll + r, chars, it->n_choices) == it->gold;
            ab[i] = argmax(ll + r, bytes, it->n_choices) == it->gold;
        }
        put_mean(metrics, "acc", a, b->n);
        put_mean(metrics, "acc_norm", an, b->n);
        put_mean(metrics, "acc_bytes", ab, b->n);
        if (lls_out) memcpy(lls_out, ll, (size_t)total * sizeof *ll);
    }
    free(ids);
    free(tgt);
    free(lp);
    free(ll);
    free(acc);
    free(chars);
    free(bytes);
    free(ri);
    free(rc_);
    return rc;
}

static int run_gen(al_bench *b, al_model *m, int rows, json_t *metrics, char err[AL_ERRLEN]) {
    if (rows < 1) rows = 1;
    if (rows > 16) rows = 16;
    double *em = malloc((size_t)b->n * 2 * sizeof *em);
    int32_t *out = NULL;
    const int32_t **ps = malloc((size_t)rows * sizeof *ps);
    int *pl = malloc((size_t)rows * sizeof *pl), *len = malloc((size_t)rows * sizeof *len);
    int rc = em && ps && pl && len ? AL_OK : al_err(err, AL_ENOMEM, "out of memory");
    al_rng rng;
    al_rng_seed(&rng, 1);
    for (int i0 = 0; !rc && i0 < b->n; i0 += rows) {
        int k = b->n - i0 < rows ? b->n - i0 : rows, maxp = 0;
        for (int j = 0; j < k; j++) {
            ps[j] = b->items[i0 + j].prompt.ids;
            pl[j] = b->items[i0 + j].prompt.n;
            maxp = pl[j] > maxp ? pl[j] : maxp;
        }
        int nn = b->max_T - maxp < b->max_new ? b->max_T - maxp : b->max_new;
        int32_t *no = realloc(out, (size_t)k * nn * sizeof *out);
        if (!no) {
            rc = al_err(err, AL_ENOMEM, "out of memory");
            break;
        }
        out = no;
        al_gen_cfg g = {.max_new = nn, .temperature = 0, .top_p = 1, .stop = &b->eos, .n_stop = b->eos >= 0};
        if ((rc = al_generate(m, ps, pl, k, &g, &rng, out, NULL, len, err))) break;
        for (int j = 0; j < k && !rc; j++) {
            int l = len[j];
            if (l > 0 && out[(size_t)j * nn + l - 1] == b->eos) l--;
            char *txt = NULL;
            size_t tl;
            if (al_tok_decode(b->tok, out + (size_t)j * nn, l, 1, &txt, &tl)) txt = strdup("");
            if (!txt) {
                rc = al_err(err, AL_ENOMEM, "out of memory");
                break;
            }
            for (int q = 0; q < b->n_until; q++) {
                char *hit = strstr(txt, b->until[q]);
                if (hit) *hit = 0; /* the completion ends before its first stop string */
            }
            const bitem *it = &b->items[i0 + j];
            double s = 0;
            int got = 0;
            rc = al_grader_grade(it->grader, txt, (const char *const *)it->answers, it->n_answers, &s, &got);
            if (rc) al_err(err, rc, "line %d: grading failed: %s", it->line, al_strerror(rc));
            em[i0 + j] = s;
            em[b->n + i0 + j] = got;
            free(txt);
        }
    }
    if (!rc) {
        put_mean(metrics, "exact_match", em, b->n);
        put_mean(metrics, "extracted", em + b->n, b->n);
    }
    free(em);
    free(out);
    free(ps);
    free(pl);
    free(len);
    return rc;
}

int al_bench_run(al_bench *b, al_model *m, int rows, int T, json_t **result, double *lls, char err[AL_ERRLEN]) {
    json_t *metrics = json_object();
    if (!metrics) return al_err(err, AL_ENOMEM, "out of memory");
    char e2[AL_ERRLEN];
    int rc = b->type == BT_MC ? run_mc(b, m, rows, T < b->max_T ? T : b->max_T, metrics, lls, e2)
                              : run_gen(b, m, rows, metrics, e2);
    if (rc) {
        json_decref(metrics);
        return al_err(err, rc, "%s: %s", b->name, e2);
    }
    json_t *o = json_pack("{s:s, s:s, s:i, s:o}", "task", b->name, "type",
                          b->type == BT_MC ? "multiple_choice" : "generative", "n", b->n, "metrics", metrics);
    if (!o) return al_err(err, AL_ENOMEM, "out of memory");
    *result = o;
    return AL_OK;
}

int al_bench_report(al_bench *b, al_model *m, int rows, int T, const char *role, long step, const al_train_cb *cb,
                    al_metric *m_out, int *n_out, int cap, char err[AL_ERRLEN]) {
    json_t *res = NULL;
    int rc = al_bench_run(b, m, rows, T, &res, NULL, err);
    if (rc) return rc;
    const char *k;
    json_t *v;
    int b_suffix = strcmp(role, "model") != 0;
    json_object_foreach(json_object_get(res, "metrics"), k, v) {
        size_t kl = strlen(k);
        if (*n_out >= cap || (kl > 7 && !strcmp(k + kl - 7, "_stderr"))) continue;
        snprintf(m_out[*n_out].name, sizeof m_out[*n_out].name, "eval/%.30s/%s%s", b->name, k, b_suffix ? "_b" : "");
        m_out[(*n_out)++].value = json_is_number(v) ? json_number_value(v) : NAN;
    }
    json_object_set_new(res, "model", json_string(role));
    if (cb && cb->eval_result) cb->eval_result(cb->ud, step, res);
    json_decref(res);
    return AL_OK;
}

/* JSONL datasets: format detection, validation, tokenization, hygiene and
 * the report. See dataset.h for the formats and the report's shape.
 *
 * One pass parses each row, detects its own format, validates it and (when
 * a chat is given and the method takes that format) tokenizes it into
 * examples. The file's format is then the most common one; the rare rows
 * detected as something else are parsed again and judged as that format, so
 * that {"prompt": ...} in a prompt/completion file reads "missing_field
 * completion". Duplicates, length statistics, truncation and the mix are
 * worked out over the valid rows afterwards. */
#include "dataset.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../io.h"
#include "csv.h"
#include "../buf.h"

#define FMT_BIT(f) (1u << (f))

static const char *const FORMAT_NAMES[AL_FMT_COUNT] = {
    "unknown",    "text",   "messages",    "prompt_completion", "preference",
    "unpaired_preference", "prompt_only", "rankings", "ratings", "alpaca", "sharegpt",
};
/* The keys that give each format away, for messages naming candidates. */
static const char *const FORMAT_KEYS[AL_FMT_COUNT] = {
    "", "text", "messages", "prompt/completion", "chosen/rejected", "prompt/completion/label",
    "prompt", "responses/ranking", "responses/ratings", "instruction/output", "conversations",
};

const char *al_data_format_name(al_data_format f) {
    return f >= 0 && f < AL_FMT_COUNT ? FORMAT_NAMES[f] : "unknown";
}

/* Natural use of each format when no method is given. */
static const al_batch_kind NATURAL_KIND[AL_FMT_COUNT] = {
    AL_BATCH_LM, AL_BATCH_LM, AL_BATCH_LM, AL_BATCH_LM, AL_BATCH_PAIR,
    AL_BATCH_UNPAIRED, AL_BATCH_PROMPT, AL_BATCH_PAIR, AL_BATCH_PAIR, AL_BATCH_LM, AL_BATCH_LM,
};

#define CHAT_FMTS (FMT_BIT(AL_FMT_ALPACA) | FMT_BIT(AL_FMT_SHAREGPT))
#define LM_FMTS (FMT_BIT(AL_FMT_TEXT) | FMT_BIT(AL_FMT_MESSAGES) | FMT_BIT(AL_FMT_PROMPT_COMPLETION) | \
                 CHAT_FMTS)
#define PAIR_FMTS (FMT_BIT(AL_FMT_PREFERENCE) | FMT_BIT(AL_FMT_RANKINGS) | FMT_BIT(AL_FMT_RATINGS))
#define KTO_FMTS (FMT_BIT(AL_FMT_UNPAIRED) | FMT_BIT(AL_FMT_PREFERENCE))
#define RL_FMTS (FMT_BIT(AL_FMT_PROMPT_ONLY) | FMT_BIT(AL_FMT_PROMPT_COMPLETION) | CHAT_FMTS)

/* split: how a prompt and its completion are tokenized, after the TRL
 * trainer the method follows (chat.h): DPOTrainer and KTOTrainer keep the
 * prompt's own ids, CPOTrainer (simpo) and ORPOTrainer move a merged
 * boundary token into the answer. */
static const struct method {
    const char *name;
    al_batch_kind kind;
    unsigned fmts;
    const char *takes;
    al_split_kind split;
} METHODS[] = {
    {"sft", AL_BATCH_LM, LM_FMTS, "text, messages, prompt_completion, alpaca or sharegpt", AL_SPLIT_BYTES},
    {"pretrain", AL_BATCH_LM, FMT_BIT(AL_FMT_TEXT), "text", AL_SPLIT_BYTES},
    {"dpo", AL_BATCH_PAIR, PAIR_FMTS, "preference, rankings or ratings", AL_SPLIT_PROMPT_IDS},
    {"ipo", AL_BATCH_PAIR, PAIR_FMTS, "preference, rankings or ratings", AL_SPLIT_PROMPT_IDS},
    {"orpo", AL_BATCH_PAIR, PAIR_FMTS, "preference, rankings or ratings", AL_SPLIT_ANSWER},
    {"simpo", AL_BATCH_PAIR, PAIR_FMTS, "preference, rankings or ratings", AL_SPLIT_ANSWER},
    {"reward_model", AL_BATCH_PAIR, PAIR_FMTS, "preference, rankings or ratings", AL_SPLIT_BYTES},
    {"rm", AL_BATCH_PAIR, PAIR_FMTS, "preference, rankings or ratings", AL_SPLIT_BYTES},
    {"kto", AL_BATCH_UNPAIRED, KTO_FMTS, "unpaired_preference or preference", AL_SPLIT_PROMPT_IDS},
    {"rl", AL_BATCH_PROMPT, RL_FMTS, "prompt_only, prompt_completion, alpaca or sharegpt", AL_SPLIT_BYTES},
    {"ppo", AL_BATCH_PROMPT, RL_FMTS, "prompt_only, prompt_completion, alpaca or sharegpt", AL_SPLIT_BYTES},
    {"grpo", AL_BATCH_PROMPT, RL_FMTS, "prompt_only, prompt_completion, alpaca or sharegpt", AL_SPLIT_BYTES},
    {"rloo", AL_BATCH_PROMPT, RL_FMTS, "prompt_only, prompt_completion, alpaca or sharegpt", AL_SPLIT_BYTES},
};
#define N_METHODS ((int)(sizeof METHODS / sizeof METHODS[0]))
#define UNPAIR_BATCH 1000   /* rows per batch of TRL's unpair_preference_dataset map */

al_split_kind al_data_split(const char *method) {
    for (int i = 0; method && i < N_METHODS; i++)
        if (strcmp(METHODS[i].name, method) == 0) return METHODS[i].split;
    return AL_SPLIT_BYTES;
}

static const char *const ROLES[] = {"system", "user", "assistant", "function",
                                    "tool",   "developer", NULL};
static const char *const MESSAGE_KEYS[] = {"role",   "content",    "name",         "function_call",
                                           "weight", "tool_calls", "tool_call_id", NULL};
static const char *const REFERENCE_KEYS[] = {"reference", "answer", "solution", "ground_truth",
                                             NULL};
static const char *const GROUP_KEYS[] = {"task", "category", "source"};
/* Top-level keys that tag a row rather than say what it trains on; two rows
 * differing only in these are still duplicates. */
static const char *const META_KEYS[] = {"id", "_id", "uuid", "idx", "index", "row_id", "task",
                                        "category", "source", "dataset", "metadata", NULL};

/* ---- per-row bookkeeping ------------------------------------------------ */

typedef struct row_rec {
    int line;
    int8_t det;          /* format detected from the row's own keys */
    int8_t used;         /* format it was judged as */
    int8_t label;        /* unpaired: 1/0, else -1 */
    int8_t group_key;    /* index into GROUP_KEYS, -1 none */
    uint8_t parsed;      /* the line is a JSON object */
    uint8_t bad, empty, dup, dropped, truncated, conv, has_system, multi_turn, variant;
    uint8_t n_resp;      /* rankings/ratings: responses (capped at 255) */
    uint8_t has_ref;
    uint16_t cands;      /* formats the row's keys fit, when more than one */
    const char *code;    /* error code (static) */
    char *field, *msg;   /* error field and message (malloc'd) */
    size_t off, len;     /* line bytes (memory input) or row index (rows input) */
    char *canon;         /* whitespace-normalised canonical form */
    size_t canon_len;
    uint64_t hash;
    char *group;         /* value of the task/category/source field */
    int ex0, nex;        /* examples ex[ex0 .. ex0+nex) */
    int tokens;          /* longest sequence before truncation, -1 unknown */
    int dup_of;          /* line of the first copy */
    al_hyg_row hy;       /* hygiene: what the filters say of the row */
    uint64_t *bands;     /* hygiene: its LSH band keys (near-duplicates) */
} row_rec;

typedef struct reader {
    const al_chat *chat;
    al_data_opts o;
    const struct method *m;   /* NULL: natural */
    row_rec *rows;
    int n_rows, cap_rows;
    al_example *ex;
    int n_ex, cap_ex;
    const char *buf;          /* memory input: JSONL lines, JSON array elements or CSV records */
    const json_t *arr;        /* rows input */
    const char *file_format;  /* "jsonl", "json", "csv", "tsv", "rows" */
    char delim;               /* CSV/TSV */
    char **cols;              /* CSV/TSV header */
    int n_cols;
    size_t body;              /* CSV/TSV: where the records start */
    al_hygiene *hyg;          /* the filters, or NULL */
    json_t *collect;          /* reading an evaluation file: its rows' texts, nothing else */
    int kept_only;            /* the clean job: rows kept, in row order, into `kept_rows` */
    int *kept_rows, n_kept_rows;
    char file_fatal[AL_ERRLEN]; /* the file as a whole cannot be read as a dataset */
    int n_bad;                /* bad rows met in the first pass */
} reader;

/* Records the row's first error (later ones are not reported). Returns 1 so
 * validators read `return row_error(...)`. */
static int row_error(row_rec *r, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int row_error(row_rec *r, const char *code, const char *field, const char *fmt, ...) {
    if (r->bad) return 1;
    r->bad = 1;
    r->code = code;
    if (strcmp(code, "empty_target") == 0) r->empty = 1;
    char text[AL_ERRLEN], full[AL_ERRLEN + 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "line %d: %s", r->line, text);
    r->field = strdup(field ? field : "");
    r->msg = strdup(full);
    return 1;
}

static void row_clear_error(row_rec *r) {
    free(r->field);
    free(r->msg);
    r->field = r->msg = NULL;
    r->bad = r->empty = 0;
    r->code = NULL;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' ||
              s[i] == '\v'))
            return 0;
    return 1;
}

static int json_blank(const json_t *s) {
    return blank(json_string_value(s), json_string_length(s));
}

static int in_list(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

static const char *type_name(const json_t *v) {
    if (!v) return "missing";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* ---- validation --------------------------------------------------------- */

static int has_call(const json_t *m) {
    return json_object_get(m, "function_call") || json_object_get(m, "tool_calls");
}

static int is_role(const json_t *m, const char *role) {
    const char *r = json_string_value(json_object_get(m, "role"));
    return r && strcmp(r, role) == 0;
}

static int weight_zero(const json_t *m) {
    const json_t *w = json_object_get(m, "weight");
    return w && (json_is_false(w) || (json_is_number(w) && json_number_value(w) == 0.0));
}

/* Whether a message's content has no text: absent, null, "", or content
 * parts whose texts are all empty (blank_ok: whitespace counts as text). */
static int content_empty(const json_t *c, int blank_ok) {
    if (json_is_string(c)) return blank_ok ? json_string_length(c) == 0 : json_blank(c);
    if (!json_is_array(c)) return 1;
    size_t i;
    const json_t *part;
    json_array_foreach(c, i, part) {
        const json_t *t = json_object_get(part, "text");
        if (json_is_string(t) && (blank_ok ? json_string_length(t) > 0 : !json_blank(t))) return 0;
    }
    return 1;
}

/* OpenAI's content parts: text parts only (alignd trains language models). */
static int check_parts(row_rec *r, const json_t *parts, const char *f) {
    size_t i;
    const json_t *part;
    json_array_foreach(parts, i, part) {
        const json_t *ty = json_object_get(part, "type");
        if (!json_is_object(part) || !json_is_string(ty))
            return row_error(r, "missing_content", f,
                             "%s.content[%zu] is not a content part {\"type\": \"text\", \"text\": ...}", f,
                             i);
        if (strcmp(json_string_value(ty), "text") != 0)
            return row_error(r, "unsupported_content_part", f,
                             "%s.content[%zu] is a \"%.40s\" part; only text parts are supported", f, i,
                             json_string_value(ty));
        if (!json_is_string(json_object_get(part, "text")))
            return row_error(r, "missing_content", f, "%s.content[%zu].text is %s, not a string", f, i,
                             type_name(json_object_get(part, "text")));
    }
    return 0;
}

/* OpenAI's tool_calls: [{"id"?, "type": "function", "function": {"name",
 * "arguments": a JSON string or an object}}]. */
static int check_tool_calls(row_rec *r, const json_t *calls, const char *f) {
    if (!json_is_array(calls) || json_array_size(calls) == 0)
        return row_error(r, "invalid_tool_call", f, "%s.tool_calls must be a non-empty list, got %s", f,
                         json_is_array(calls) ? "an empty list" : type_name(calls));
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c) {
        const json_t *fn = json_object_get(c, "function"), *ty = json_object_get(c, "type");
        const json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        const char *why = NULL;
        json_t *parsed = NULL;
        if (!json_is_object(c) || !json_is_object(fn)) why = "has no \"function\" object";
        else if (ty && (!json_is_string(ty) || strcmp(json_string_value(ty), "function") != 0))
            why = "has a type other than \"function\"";
        else if (!json_is_string(name) || json_string_length(name) == 0) why = "has no function name";
        else if (json_is_string(args)) {
            parsed = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
            if (!json_is_object(parsed)) why = "has arguments that are not a JSON object";
            json_decref(parsed);
        } else if (args && !json_is_object(args)) {
            why = "has arguments that are neither an object nor a JSON string";
        }
        if (why) return row_error(r, "invalid_tool_call", f, "%s.tool_calls[%zu] %s", f, i, why);
    }
    return 0;
}

/* OpenAI's checks for a message list, in its order, plus per-message weight. */
static int check_messages(row_rec *r, const json_t *list, const char *field, int need_assistant) {
    if (!list)
        return row_error(r, "missing_messages_list", field, "missing \"%s\", a list of messages",
                         field);
    if (!json_is_array(list) || json_array_size(list) == 0)
        return row_error(r, "missing_messages_list", field,
                         "%s must be a non-empty list of messages, got %s", field,
                         json_is_array(list) ? "an empty list" : type_name(list));
    size_t i;
    const json_t *m;
    int assistant = 0;
    json_array_foreach(list, i, m) {
        char f[128];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        if (!json_is_object(m))
            return row_error(r, "message_missing_key", f,
                             "%s is %s, not a message with role and content", f, type_name(m));
        const json_t *content = json_object_get(m, "content");
        if (!json_object_get(m, "role") || (!content && !has_call(m)))
            return row_error(r, "message_missing_key", f, "%s lacks \"%s\"", f,
                             json_object_get(m, "role") ? "content" : "role");
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)m, key, v) {
            if (!in_list(key, MESSAGE_KEYS))
                return row_error(r, "message_unrecognized_key", f,
                                 "%s has the unrecognized key \"%s\"", f, key);
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role)
            return row_error(r, "unrecognized_role", f, "%s.role is %s, not a string", f,
                             type_name(json_object_get(m, "role")));
        if (!in_list(role, ROLES))
            return row_error(r, "unrecognized_role", f,
                             "%s.role \"%s\" is not one of system, user, assistant, function, "
                             "tool, developer",
                             f, role);
        if (json_is_array(content)) {
            if (check_parts(r, content, f)) return 1;
        } else if (content && !json_is_null(content) && !json_is_string(content)) {
            return row_error(r, "missing_content", f,
                             "%s.content is %s, not a string or a list of text parts", f,
                             type_name(content));
        }
        if (content_empty(content, 1) && !has_call(m))
            return row_error(r, "missing_content", f, "%s.content is empty", f);
        const json_t *calls = json_object_get(m, "tool_calls");
        if (calls && check_tool_calls(r, calls, f)) return 1;
        const json_t *w = json_object_get(m, "weight");
        if (w) {
            int ok = json_is_boolean(w) ||
                     (json_is_number(w) && (json_number_value(w) == 0.0 || json_number_value(w) == 1.0));
            if (!ok)
                return row_error(r, "invalid_weight", f, "%s.weight must be 0 or 1", f);
            if (strcmp(role, "assistant") != 0)
                return row_error(r, "invalid_weight", f,
                                 "%s.weight is only allowed on assistant messages", f);
        }
        if (strcmp(role, "assistant") == 0) assistant = 1;
    }
    if (need_assistant && !assistant)
        return row_error(r, "example_missing_assistant_message", field,
                         "%s has no assistant message", field);
    return 0;
}

/* The trained part of a message list (assistant messages from `first` on
 * with weight != 0) must exist and not be blank. */
static int check_trained(row_rec *r, const json_t *list, size_t first, const char *field) {
    int weighted = 0, text = 0;
    for (size_t i = first; i < json_array_size(list); i++) {
        const json_t *m = json_array_get(list, i);
        if (!is_role(m, "assistant") || weight_zero(m)) continue;
        weighted = 1;
        const json_t *c = json_object_get(m, "content");
        if (has_call(m) || !content_empty(c, 0)) text = 1;
    }
    if (!weighted)
        return row_error(r, "empty_target", field,
                         "%s: every assistant message has weight 0, nothing to train", field);
    if (!text)
        return row_error(r, "empty_target", field,
                         "%s: the assistant content is empty or whitespace", field);
    return 0;
}

static size_t common_messages(const json_t *a, const json_t *b) {
    size_t n = 0, na = json_array_size(a), nb = json_array_size(b);
    while (n < na && n < nb && json_equal(json_array_get(a, n), json_array_get(b, n))) n++;
    return n;
}

/* What a validated row holds (borrowed from the row's JSON). */
typedef struct parsed {
    int conv;
    const json_t *prompt;      /* string, list or NULL (implicit) */
    const json_t *comp[2];     /* completion, or chosen and rejected */
    const json_t *tools;
    const json_t *responses;   /* rankings/ratings */
    const json_t *order;       /* ranking or ratings */
    long shared;               /* implicit prompt: shared bytes/messages, else -1 */
    int label;
    const json_t *reference;   /* the (first) reference answer */
    const json_t *row;         /* the row itself (kept by PROMPT examples) */
    json_t *own[4];            /* converted turns (alpaca, sharegpt) the pointers above use */
    int oom;                   /* a conversion ran out of memory */
    const al_dataset_info *sg; /* the file's dataset_info entry, or NULL (the defaults) */
} parsed;

static void parsed_deinit(parsed *p) {
    for (int i = 0; i < 4; i++) json_decref(p->own[i]);
    memset(p->own, 0, sizeof p->own);
}

/* Keeps j (a new reference) alive with p; NULL when j is NULL (p->oom). */
static json_t *keep(parsed *p, json_t *j) {
    if (!j) {
        p->oom = 1;
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        if (!p->own[i]) return p->own[i] = j;
    AL_ASSERT(0 && "parsed keeps at most 4 conversions");
    return NULL;
}

static const json_t *need(row_rec *r, const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    if (!v) row_error(r, "missing_field", key, "missing \"%s\"", key);
    return v;
}

/* A target field: a string (standard) or a message list (conversational),
 * matching `conv` (-1: either, sets it). */
static int check_target(row_rec *r, const json_t *v, const char *field, int *conv, int is_prompt) {
    if (!json_is_string(v) && !json_is_array(v))
        return row_error(r, "invalid_field_type", field,
                         "%s must be a string or a list of messages, got %s", field, type_name(v));
    int c = json_is_array(v);
    if (*conv >= 0 && c != *conv)
        return row_error(r, "invalid_field_type", field,
                         "%s is %s but the row's other fields are %s", field, type_name(v),
                         *conv ? "message lists" : "strings");
    *conv = c;
    if (c) {
        if (check_messages(r, v, field, !is_prompt)) return 1;
        if (!is_prompt && check_trained(r, v, 0, field)) return 1;
    } else if (!is_prompt && json_blank(v)) {
        return row_error(r, "empty_target", field, "%s is empty or whitespace", field);
    }
    return 0;
}

static int check_tools(row_rec *r, const json_t *tools, const char *field) {
    if (tools && !json_is_array(tools))
        return row_error(r, "invalid_field_type", field, "%s must be a list, got %s", field,
                         type_name(tools));
    return 0;
}

static int validate_text(row_rec *r, const json_t *o, parsed *p) {
    const json_t *t = need(r, o, "text");
    if (!t) return 1;
    if (!json_is_string(t))
        return row_error(r, "invalid_field_type", "text", "text must be a string, got %s",
                         type_name(t));
    if (json_blank(t)) return row_error(r, "empty_target", "text", "text is empty or whitespace");
    p->comp[0] = t;
    return 0;
}

static int validate_messages(row_rec *r, const json_t *o, parsed *p) {
    const json_t *m = json_object_get(o, "messages");
    if (check_messages(r, m, "messages", 1) || check_trained(r, m, 0, "messages")) return 1;
    p->tools = json_object_get(o, "tools");
    if (check_tools(r, p->tools, "tools")) return 1;
    p->conv = 1;
    p->comp[0] = m;
    size_t i;
    const json_t *x;
    int n_assist = 0;
    json_array_foreach(m, i, x) {
        if (is_role(x, "system") || is_role(x, "developer")) r->has_system = 1;
        n_assist += is_role(x, "assistant");
    }
    r->multi_turn = n_assist > 1;
    return 0;
}

static int validate_label(row_rec *r, const json_t *o, parsed *p) {
    const json_t *l = need(r, o, "label");
    if (!l) return 1;
    if (json_is_boolean(l)) p->label = json_is_true(l);
    else if (json_is_integer(l) && (json_integer_value(l) == 0 || json_integer_value(l) == 1))
        p->label = (int)json_integer_value(l);
    else
        return row_error(r, "invalid_label", "label", "label must be true or false, got %s",
                         type_name(l));
    r->label = (int8_t)p->label;
    return 0;
}

static int validate_pc(row_rec *r, const json_t *o, parsed *p, int unpaired) {
    const json_t *pr = need(r, o, "prompt");
    if (!pr) return 1;
    const json_t *c = need(r, o, "completion");
    if (!c) return 1;
    int conv = -1;
    if (check_target(r, pr, "prompt", &conv, 1) || check_target(r, c, "completion", &conv, 0))
        return 1;
    p->tools = json_object_get(o, "tools");
    if (check_tools(r, p->tools, "tools")) return 1;
    if (unpaired && validate_label(r, o, p)) return 1;
    p->conv = conv;
    p->prompt = pr;
    p->comp[0] = c;
    return 0;
}

/* TRL's extract_prompt for strings: the longest common prefix, backed off to
 * a character boundary and before a space so completions start with it. */
static size_t shared_text(const json_t *a, const json_t *b) {
    const char *x = json_string_value(a), *y = json_string_value(b);
    size_t na = json_string_length(a), nb = json_string_length(b), i = 0;
    while (i < na && i < nb && x[i] == y[i]) i++;
    while (i > 0 && i < na && ((unsigned char)x[i] & 0xC0) == 0x80) i--;
    if (i > 0 && x[i - 1] == ' ') i--;
    return i;
}

/* ---- LLaMA-Factory's alpaca and sharegpt rows ---------------------------- */

enum { END_ASSISTANT, END_USER, END_ANY };
enum { SIDE_USER = 1, SIDE_ASSISTANT = 2, SIDE_SYSTEM = 4 };

/* A sharegpt role tag: LLaMA-Factory's defaults and its OpenAI-style tags. */
static const struct { const char *tag, *role; int side; } SHAREGPT_TAGS[] = {
    {"human", "user", SIDE_USER},           {"user", "user", SIDE_USER},
    {"observation", "tool", SIDE_USER},     {"gpt", "assistant", SIDE_ASSISTANT},
    {"assistant", "assistant", SIDE_ASSISTANT}, {"function_call", "assistant", SIDE_ASSISTANT},
    {"system", "system", SIDE_SYSTEM},
};

static const char *const SG_TAG_KEYS[AL_SG_NTAGS] = {"user_tag", "assistant_tag", "observation_tag",
                                                     "function_tag", "system_tag"};
static const char *const SG_TAG_DEFAULTS[AL_SG_NTAGS] = {"human", "gpt", "observation", "function_call", "system"};
/* Each AL_SG_* tag's row in SHAREGPT_TAGS (its role and side). */
static const int SG_TAG_ROW[AL_SG_NTAGS] = {0, 3, 2, 5, 6};

static const char *const DI_COL_KEYS[AL_DI_NCOLS] = {"prompt", "query",  "response", "history", "messages",
                                                     "system", "tools",  "chosen",   "rejected"};
static const char *const DI_COL_DEFAULTS[AL_DI_NCOLS] = {"instruction", "input", "output", "history", "conversations",
                                                         "system",      "tools", "chosen", "rejected"};
/* The columns each kind of entry reads (the keys "columns" may name). */
static const char *const DI_ALPACA_COLS[] = {"prompt", "query", "response", "history", "system", "tools", NULL};
static const char *const DI_ALPACA_RANKED[] = {"prompt", "query", "history", "system", "tools", "chosen", "rejected",
                                               NULL};
static const char *const DI_SHAREGPT_COLS[] = {"messages", "system", "tools", NULL};
static const char *const DI_SHAREGPT_RANKED[] = {"messages", "system", "tools", "chosen", "rejected", NULL};

static int di_name(const json_t *o, const char *key, const char *path, const char *dflt, char out[AL_DI_NAME],
                   al_error *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        snprintf(out, AL_DI_NAME, "%s", dflt);
        return AL_OK;
    }
    if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) >= AL_DI_NAME ||
        strlen(json_string_value(v)) != json_string_length(v))
        return AL_FAIL(err, AL_EINVAL, "%s.%s", "must be a non-empty string of at most %d bytes", path, key,
                       AL_DI_NAME - 1);
    snprintf(out, AL_DI_NAME, "%s", json_string_value(v));
    return AL_OK;
}

/* "what" says which entries read the keys in the unknown-field message. */
static int di_keys(const json_t *o, const char *path, const char *const *allowed, const char *what, al_error *err) {
    const char *k;
    json_t *v;
    if (!json_is_object(o)) return AL_FAIL(err, AL_EINVAL, "%s", "must be an object", path);
    json_object_foreach((json_t *)o, k, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(k, allowed[i]);
        if (!ok) {
            char list[200] = "";
            size_t n = 0;
            for (int i = 0; allowed[i] && n < sizeof list; i++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", allowed[i]);
            return AL_FAIL(err, AL_EINVAL, "%s.%.60s", "unknown field (alignd reads %s%s)", path, k, list, what);
        }
    }
    return AL_OK;
}

/* The columns of an entry: those of its format (and ranking) named or at
 * their defaults, the others "". */
static int di_columns(const json_t *co, const char *path, al_dataset_info *c, al_error *err) {
    int alpaca = c->format == AL_FMT_ALPACA;
    const char *const *cols = alpaca ? (c->ranking ? DI_ALPACA_RANKED : DI_ALPACA_COLS)
                                     : (c->ranking ? DI_SHAREGPT_RANKED : DI_SHAREGPT_COLS);
    char what[64];
    snprintf(what, sizeof what, " for %s%s", alpaca ? "alpaca" : "sharegpt",
             c->ranking ? " ranking" : "");
    json_t *none = json_object();
    if (!none) return AL_ENOMEM;
    const json_t *o = co ? co : none;
    int rc = AL_OK;
    if (co && json_is_object(co)) {
        /* the refusals that say why rather than only what is read */
        if (json_object_get(co, "kto_tag"))
            rc = AL_FAIL(err, AL_EINVAL, "%s.kto_tag",
                         "alignd's KTO reads prompt/completion/label rows or preference pairs, not labelled "
                         "%s rows", path, alpaca ? "alpaca" : "sharegpt");
        else if (!c->ranking && (json_object_get(co, "chosen") || json_object_get(co, "rejected")))
            rc = AL_FAIL(err, AL_EINVAL, "%s.%s", "is read only with \"ranking\": true", path,
                         json_object_get(co, "chosen") ? "chosen" : "rejected");
        else if (alpaca && c->ranking && json_object_get(co, "response"))
            rc = AL_FAIL(err, AL_EINVAL, "%s.response", "is not read with \"ranking\": true (chosen and rejected are)",
                         path);
    }
    if (!rc && co) rc = di_keys(co, path, cols, what, err);
    int named[AL_DI_NCOLS] = {0};
    for (int i = 0; !rc && cols[i]; i++) {
        int k = 0;
        while (strcmp(DI_COL_KEYS[k], cols[i])) k++;
        named[k] = json_object_get(o, cols[i]) && !json_is_null(json_object_get(o, cols[i]));
        rc = di_name(o, cols[i], path, DI_COL_DEFAULTS[k], c->col[k], err);
    }
    /* two roles of one column: refused when both are named; a default name
     * another role took is left unread (as LLaMA-Factory leaves it) */
    for (int i = 0; !rc && i < AL_DI_NCOLS; i++)
        for (int k = 0; k < AL_DI_NCOLS && !rc; k++)
            if (k != i && c->col[i][0] && !strcmp(c->col[i], c->col[k]) && named[k]) {
                if (named[i] && k < i)
                    rc = AL_FAIL(err, AL_EINVAL, "%s.%s", "\"%s\" is also %s", path, DI_COL_KEYS[i], c->col[i],
                                 DI_COL_KEYS[k]);
                else if (!named[i])
                    memset(c->col[i], 0, sizeof c->col[i]);
            }
    json_decref(none);
    return rc;
}

static int di_tags(const json_t *tg, const char *path, al_dataset_info *c, al_error *err) {
    static const char *const tags[] = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag",
                                       "function_tag", "system_tag", NULL};
    int rc = tg ? di_keys(tg, path, tags, "", err) : AL_OK;
    if (rc) return rc;
    json_t *none = json_object();
    if (!none) return AL_ENOMEM;
    const json_t *t0 = tg ? tg : none;
    rc = di_name(t0, "role_tag", path, "from", c->role, err);
    if (!rc) rc = di_name(t0, "content_tag", path, "value", c->content, err);
    for (int i = 0; i < AL_SG_NTAGS && !rc; i++)
        rc = di_name(t0, SG_TAG_KEYS[i], path, tg ? "" : SG_TAG_DEFAULTS[i], c->tag[i], err);
    json_decref(none);
    if (rc) return rc;
    if (!strcmp(c->role, c->content))
        return AL_FAIL(err, AL_EINVAL, "%s.content_tag", "must differ from role_tag", path);
    if (!c->tag[AL_SG_USER][0] || !c->tag[AL_SG_ASSISTANT][0])
        return AL_FAIL(err, AL_EINVAL, "%s", "needs user_tag and assistant_tag", path);
    for (int i = 0; i < AL_SG_NTAGS; i++)
        for (int k = 0; k < i; k++)
            if (c->tag[i][0] && !strcmp(c->tag[i], c->tag[k]))
                return AL_FAIL(err, AL_EINVAL, "%s.%s", "\"%s\" is also %s", path, SG_TAG_KEYS[i], c->tag[i],
                               SG_TAG_KEYS[k]);
    return AL_OK;
}

int al_dataset_info_parse(const json_t *v, const char *path, al_dataset_info *out, al_error *err) {
    static const char *const top[] = {"formatting", "ranking", "columns", "tags", "file_name", NULL};
    char p2[96];
    al_dataset_info c;
    memset(&c, 0, sizeof c);
    int rc = di_keys(v, path, top, "", err);
    if (rc) return rc;
    const json_t *f = json_object_get(v, "formatting"), *rk = json_object_get(v, "ranking");
    if (!f || json_is_null(f) || (json_is_string(f) && !strcmp(json_string_value(f), "alpaca")))
        c.format = AL_FMT_ALPACA; /* LLaMA-Factory's default */
    else if (json_is_string(f) && !strcmp(json_string_value(f), "sharegpt"))
        c.format = AL_FMT_SHAREGPT;
    else
        return AL_FAIL(err, AL_EINVAL, "%s.formatting", "must be \"alpaca\" or \"sharegpt\"", path);
    if (rk && !json_is_null(rk) && !json_is_boolean(rk))
        return AL_FAIL(err, AL_EINVAL, "%s.ranking", "must be true or false", path);
    c.ranking = json_is_true(rk);
    const json_t *tg = json_object_get(v, "tags");
    snprintf(p2, sizeof p2, "%s.columns", path);
    if ((rc = di_columns(json_object_get(v, "columns"), p2, &c, err))) return rc;
    snprintf(p2, sizeof p2, "%s.tags", path);
    if (c.format == AL_FMT_ALPACA && tg)
        return AL_FAIL(err, AL_EINVAL, "%s", "only a sharegpt entry has tags", p2);
    if (c.format == AL_FMT_SHAREGPT && (rc = di_tags(tg, p2, &c, err))) return rc;
    *out = c;
    return AL_OK;
}

json_t *al_dataset_info_json(const al_dataset_info *c) {
    int sg = c->format == AL_FMT_SHAREGPT;
    json_t *cols = json_object(), *tags = sg ? json_pack("{s:s, s:s}", "role_tag", c->role, "content_tag", c->content)
                                             : NULL;
    for (int i = 0; cols && i < AL_DI_NCOLS; i++)
        if (c->col[i][0]) json_object_set_new(cols, DI_COL_KEYS[i], json_string(c->col[i]));
    for (int i = 0; tags && i < AL_SG_NTAGS; i++)
        if (c->tag[i][0]) json_object_set_new(tags, SG_TAG_KEYS[i], json_string(c->tag[i]));
    json_t *out = json_pack("{s:s, s:b, s:o}", "formatting", sg ? "sharegpt" : "alpaca", "ranking", c->ranking,
                            "columns", cols);
    if (out && sg && (!tags || json_object_set_new(out, "tags", tags))) {
        json_decref(out);
        return NULL;
    }
    if (!out) json_decref(tags);
    return out;
}

/* The name of column k a row is read from: the entry's, or the default. */
static const char *di_col(const parsed *p, int k) { return p->sg ? p->sg->col[k] : DI_COL_DEFAULTS[k]; }

/* The columns a sharegpt row is read from. */
static const char *sg_messages(const parsed *p, const json_t *o) {
    if (p->sg) return p->sg->col[AL_DI_MESSAGES];
    return json_object_get(o, "conversations") ? "conversations" : "messages";
}

/* Whether name is one of the columns that make a row the entry's format
 * (its prompt, query and response, or messages; chosen and rejected). */
static int di_owns(const al_dataset_info *di, const char *name) {
    static const int own[] = {AL_DI_PROMPT, AL_DI_QUERY, AL_DI_RESPONSE, AL_DI_MESSAGES, AL_DI_CHOSEN, AL_DI_REJECTED};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (di->col[own[i]][0] && !strcmp(name, di->col[own[i]])) return 1;
    return 0;
}

static json_t *message(const char *role, const json_t *content) {
    return json_pack("{s:s,s:O}", "role", role, "content", (json_t *)content);
}

/* Appends a new message (stolen) to list; 0 on success. */
static int push(json_t *list, json_t *m) { return m ? json_array_append_new(list, m) : -1; }

/* An optional string field: absent, null or a string; 1 (row error) else. */
static int opt_string(row_rec *r, const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    if (v && !json_is_null(v) && !json_is_string(v))
        return row_error(r, "invalid_field_type", key, "%s must be a string, got %s", key,
                         type_name(v));
    return 0;
}

static int nonempty(const json_t *v) { return json_is_string(v) && json_string_length(v) > 0; }

/* The prompt turns of an alpaca row, as LLaMA-Factory's alpaca converter
 * builds them: system, the history pairs as user/assistant turns, then the
 * user turn prompt + "\n" + query (whichever is non-empty alone), each from
 * the file's own column (dataset_info; instruction, input, system, history
 * by default). Returns the list (kept by p), or NULL with a row error or
 * p->oom. */
static json_t *alpaca_prompt(row_rec *r, const json_t *o, parsed *p) {
    const char *kp = di_col(p, AL_DI_PROMPT), *kq = di_col(p, AL_DI_QUERY), *ks = di_col(p, AL_DI_SYSTEM),
               *kh = di_col(p, AL_DI_HISTORY);
    const json_t *ins = json_object_get(o, kp), *in = json_object_get(o, kq);
    const json_t *sys = json_object_get(o, ks), *hist = json_object_get(o, kh);
    if (!ins && !in) {
        row_error(r, "missing_field", kp, "missing \"%s\"", kp);
        return NULL;
    }
    if (opt_string(r, o, kp) || opt_string(r, o, kq) || opt_string(r, o, ks)) return NULL;
    if (!nonempty(ins) && !nonempty(in)) {
        row_error(r, "missing_content", kp, "%s and %s are both empty", kp, kq);
        return NULL;
    }
    if (hist && !json_is_null(hist) && !json_is_array(hist)) {
        row_error(r, "invalid_field_type", kh, "%s must be a list of [query, response] pairs, got %s", kh,
                  type_name(hist));
        return NULL;
    }
    json_t *list = keep(p, json_array());
    if (!list) return NULL;
    int bad = 0;
    if (nonempty(sys)) bad |= push(list, message("system", sys));
    size_t i;
    const json_t *h;
    json_array_foreach(hist, i, h) {
        if (!json_is_array(h) || json_array_size(h) != 2 || !json_is_string(json_array_get(h, 0)) ||
            !json_is_string(json_array_get(h, 1))) {
            char f[AL_DI_NAME + 24];
            snprintf(f, sizeof f, "%s[%zu]", kh, i);
            row_error(r, "invalid_field_type", f, "%s must be a [query, response] pair of strings", f);
            return NULL;
        }
        bad |= push(list, message("user", json_array_get(h, 0)));
        bad |= push(list, message("assistant", json_array_get(h, 1)));
    }
    r->multi_turn = json_array_size(hist) > 0;
    r->has_system = nonempty(sys);
    json_t *query;
    if (nonempty(ins) && nonempty(in)) {
        size_t a = json_string_length(ins), b = json_string_length(in);
        char *q = malloc(a + b + 2);
        if (!q) {
            p->oom = 1;
            return NULL;
        }
        memcpy(q, json_string_value(ins), a);
        q[a] = '\n';
        memcpy(q + a + 1, json_string_value(in), b);
        query = json_stringn_nocheck(q, a + b + 1);
        free(q);
    } else {
        query = json_incref((json_t *)(nonempty(ins) ? ins : in));
    }
    if (query) bad |= push(list, json_pack("{s:s,s:o}", "role", "user", "content", query));
    if (bad || !query) {
        p->oom = 1;
        return NULL;
    }
    return list;
}

static int row_tools(row_rec *r, const json_t *o, parsed *p);

static int validate_alpaca(row_rec *r, const json_t *o, parsed *p, al_batch_kind kind) {
    json_t *prompt = alpaca_prompt(r, o, p);
    if (!prompt || row_tools(r, o, p)) return 1;
    p->conv = 1;
    p->prompt = prompt;
    const char *kr = di_col(p, AL_DI_RESPONSE);
    if (kind == AL_BATCH_PROMPT && !json_object_get(o, kr)) return 0;   /* RL: the prompt alone */
    const json_t *out = need(r, o, kr);
    if (!out) return 1;
    if (!json_is_string(out))
        return row_error(r, "invalid_field_type", kr, "%s must be a string, got %s", kr, type_name(out));
    if (json_blank(out)) return row_error(r, "empty_target", kr, "%s is empty or whitespace", kr);
    json_t *all = keep(p, json_copy(prompt));
    if (!all || push(all, message("assistant", out))) {
        p->oom = 1;
        return 1;
    }
    p->comp[0] = all;
    p->reference = out;
    return 0;
}

/* Whether a message list uses sharegpt's keys (from/value) rather than
 * OpenAI's (role/content). */
static int sharegpt_style(const json_t *list) {
    const json_t *m = json_array_get(list, 0);
    return json_object_get(m, "from") || json_object_get(m, "value");
}

/* LLaMA-Factory's function_call value: the JSON of {"name", "arguments"}
 * or a list of them, as OpenAI's tool_calls (arguments an object). */
static json_t *function_calls(const json_t *value) {
    json_t *v = json_loadb(json_string_value(value), json_string_length(value), 0, NULL);
    json_t *calls = json_array();
    int ok = v && calls && (json_is_object(v) || (json_is_array(v) && json_array_size(v) > 0));
    for (size_t i = 0; ok && i < (json_is_array(v) ? json_array_size(v) : 1); i++) {
        json_t *c = json_is_array(v) ? json_array_get(v, i) : v;
        json_t *name = json_object_get(c, "name"), *args = json_object_get(c, "arguments");
        if (json_is_string(args)) args = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        else args = json_incref(args ? args : json_object_get(c, "parameters"));
        ok = json_is_object(c) && json_is_string(name) && json_string_length(name) && json_is_object(args) &&
             !json_array_append_new(calls, json_pack("{s:s,s:{s:O,s:O}}", "type", "function", "function",
                                                     "name", name, "arguments", args));
        json_decref(args);
    }
    json_decref(v);
    if (!ok) {
        json_decref(calls);
        return NULL;
    }
    return calls;
}

/* One sharegpt turn as an OpenAI message (new reference) with its side;
 * NULL with a row error (or p->oom). */
static json_t *sharegpt_turn(row_rec *r, const json_t *t, const char *f, int *side, parsed *p) {
    const al_dataset_info *sg = p->sg;
    if (!json_is_object(t)) {
        row_error(r, "message_missing_key", f, "%s is %s, not a turn with %s and %s", f, type_name(t),
                  sg ? sg->role : "from", sg ? sg->content : "value");
        return NULL;
    }
    const char *rk = sg ? sg->role : json_object_get(t, "from") ? "from" : "role";
    const char *ck = sg ? sg->content : json_object_get(t, "value") ? "value" : "content";
    const json_t *tag = json_object_get(t, rk), *val = json_object_get(t, ck);
    if (!tag || !val) {
        row_error(r, "message_missing_key", f, "%s lacks \"%s\"", f, tag ? ck : rk);
        return NULL;
    }
    int k = -1;
    if (sg) {
        /* the file's own tags, and only those */
        for (int i = 0; json_is_string(tag) && i < AL_SG_NTAGS; i++)
            if (sg->tag[i][0] && !strcmp(json_string_value(tag), sg->tag[i])) k = SG_TAG_ROW[i];
        if (k < 0) {
            char list[5 * (AL_DI_NAME + 4)] = "";
            size_t n = 0;
            for (int i = 0; i < AL_SG_NTAGS && n < sizeof list; i++)
                if (sg->tag[i][0]) n += (size_t)snprintf(list + n, sizeof list - n, "%s\"%s\"", n ? ", " : "", sg->tag[i]);
            row_error(r, "unrecognized_role", f, "%s.%s %s%.40s%s is not one of the file's tags (%s)", f, rk,
                      json_is_string(tag) ? "\"" : "", json_is_string(tag) ? json_string_value(tag) : "not a string",
                      json_is_string(tag) ? "\"" : "", list);
            return NULL;
        }
    }
    for (int i = 0; !sg && json_is_string(tag) && i < (int)(sizeof SHAREGPT_TAGS / sizeof SHAREGPT_TAGS[0]); i++)
        if (!strcmp(json_string_value(tag), SHAREGPT_TAGS[i].tag)) k = i;
    if (k < 0) {
        row_error(r, "unrecognized_role", f,
                  "%s.%s %s%.40s%s is not one of human, gpt, system, function_call, observation "
                  "(or user, assistant)",
                  f, rk, json_is_string(tag) ? "\"" : "", json_is_string(tag) ? json_string_value(tag) : "not a string",
                  json_is_string(tag) ? "\"" : "");
        return NULL;
    }
    if (!json_is_string(val)) {
        row_error(r, "missing_content", f, "%s.%s is %s, not a string", f, ck, type_name(val));
        return NULL;
    }
    *side = SHAREGPT_TAGS[k].side;
    json_t *m;
    if (!strcmp(SHAREGPT_TAGS[k].tag, "function_call")) {
        json_t *calls = function_calls(val);
        if (!calls) {
            row_error(r, "invalid_tool_call", f,
                      "%s: a function_call value must be the JSON of {\"name\", \"arguments\"} or a list of them", f);
            return NULL;
        }
        m = json_pack("{s:s,s:o}", "role", "assistant", "tool_calls", calls);
    } else {
        m = message(SHAREGPT_TAGS[k].role, val);
    }
    if (!m) p->oom = 1;
    return m;
}

/* The turns under o[key] as OpenAI messages, checked as LLaMA-Factory's
 * sharegpt converter checks them (a system turn first only, then
 * human/observation and gpt/function_call alternating), ending as `end`
 * says. A top-level "system" string stands in for a system turn. Returns
 * the list (kept by p) or NULL with a row error or p->oom. */
static json_t *sharegpt_turns(row_rec *r, const json_t *o, const char *key, int end, parsed *p) {
    const json_t *list = json_object_get(o, key);
    if (!json_is_array(list) || json_array_size(list) == 0) {
        if (!list) row_error(r, "missing_messages_list", key, "missing \"%s\", a list of turns", key);
        else row_error(r, "missing_messages_list", key, "%s must be a non-empty list of turns, got %s", key,
                       json_is_array(list) ? "an empty list" : type_name(list));
        return NULL;
    }
    const char *sys = di_col(p, AL_DI_SYSTEM);
    if (sys[0] && opt_string(r, o, sys)) return NULL;
    json_t *out = keep(p, json_array());
    if (!out) return NULL;
    size_t i, first = 0;
    const json_t *t;
    int assistant = 0, last = 0;
    json_array_foreach(list, i, t) {
        char f[64];
        snprintf(f, sizeof f, "%s[%zu]", key, i);
        int side = 0;
        json_t *m = sharegpt_turn(r, t, f, &side, p);
        if (!m) return NULL;
        if (side == SIDE_SYSTEM && i == 0) {
            first = 1;
            r->has_system = 1;
        } else {
            int want = (i - first) % 2 == 0 ? SIDE_USER : SIDE_ASSISTANT;
            if (side != want) {
                json_decref(m);
                row_error(r, "invalid_turn_order", f,
                          "%s is a %s turn where %s must come (after an optional first system turn, "
                          "human/observation and gpt/function_call turns alternate)",
                          f, side == SIDE_SYSTEM ? "system" : side == SIDE_USER ? "human" : "gpt",
                          want == SIDE_USER ? "human or observation" : "gpt or function_call");
                return NULL;
            }
        }
        if (push(out, m)) {
            p->oom = 1;
            return NULL;
        }
        if (side == SIDE_ASSISTANT) assistant++;
        last = side;
    }
    if (!first && sys[0] && nonempty(json_object_get(o, sys))) {
        if (json_array_insert_new(out, 0, message("system", json_object_get(o, sys)))) {
            p->oom = 1;
            return NULL;
        }
        r->has_system = 1;
    }
    if (end == END_ASSISTANT && !assistant) {
        row_error(r, "example_missing_assistant_message", key, "%s has no gpt turn", key);
        return NULL;
    }
    if ((end == END_ASSISTANT && last != SIDE_ASSISTANT) || (end == END_USER && last != SIDE_USER)) {
        row_error(r, "invalid_turn_order", key, "%s must end with a %s turn", key,
                  end == END_ASSISTANT ? "gpt (or function_call)" : "human (or observation)");
        return NULL;
    }
    r->multi_turn = assistant > 1;
    return out;
}

/* tools: a list, or that list as a JSON string (LLaMA-Factory's columns;
 * alpaca and sharegpt rows). */
static int row_tools(row_rec *r, const json_t *o, parsed *p) {
    const char *col = di_col(p, AL_DI_TOOLS);
    if (!col[0]) return 0;
    const json_t *t = json_object_get(o, col);
    if (json_is_string(t) && json_string_length(t) == 0) return 0;
    if (json_is_string(t)) {
        json_t *v = json_loadb(json_string_value(t), json_string_length(t), 0, NULL);
        if (!json_is_array(v)) {
            json_decref(v);
            return row_error(r, "invalid_field_type", col,
                             "%s is a string but not the JSON of a list of tools", col);
        }
        p->tools = keep(p, v);
        return p->tools ? 0 : 1;
    }
    p->tools = t && !json_is_null(t) ? t : NULL;
    return check_tools(r, p->tools, col);
}

static int validate_sharegpt(row_rec *r, const json_t *o, parsed *p, al_batch_kind kind) {
    const char *key = sg_messages(p, o);
    json_t *all = sharegpt_turns(r, o, key, kind == AL_BATCH_PROMPT ? END_ANY : END_ASSISTANT, p);
    if (!all || row_tools(r, o, p)) return 1;
    if (kind != AL_BATCH_PROMPT && check_trained(r, all, 0, key)) return 1;
    size_t n = json_array_size(all);
    const json_t *lastm = json_array_get(all, n - 1);
    /* RL: the turns before the last assistant turn, which is the reference */
    if (is_role(lastm, "assistant")) {
        json_t *prompt = keep(p, json_array());
        for (size_t i = 0; prompt && i + 1 < n; i++)
            if (json_array_append(prompt, json_array_get(all, i))) prompt = NULL;
        if (!prompt) {
            p->oom = 1;
            return 1;
        }
        p->prompt = prompt;
        const json_t *c = json_object_get(lastm, "content");
        p->reference = json_is_string(c) ? c : NULL;
    } else {
        p->prompt = all;
    }
    p->conv = 1;
    p->comp[0] = all;
    return 0;
}

/* LLaMA-Factory's pairs: the prompt of an alpaca or sharegpt row with
 * chosen and rejected answers (strings for alpaca, gpt turns for sharegpt). */
static int validate_lf_pair(row_rec *r, const json_t *o, parsed *p, int sg) {
    r->variant = sg ? 4 : 3;
    json_t *prompt = sg ? sharegpt_turns(r, o, sg_messages(p, o), END_USER, p) : alpaca_prompt(r, o, p);
    if (!prompt || row_tools(r, o, p)) return 1;
    const char *kc = di_col(p, AL_DI_CHOSEN), *kj = di_col(p, AL_DI_REJECTED);
    const json_t *c = need(r, o, kc);
    if (!c) return 1;
    const json_t *j = need(r, o, kj);
    if (!j) return 1;
    for (int k = 0; k < 2; k++) {
        const char *f = k ? kj : kc;
        const json_t *v = k ? j : c;
        json_t *m;
        if (sg) {
            int side = 0;
            if (!(m = sharegpt_turn(r, v, f, &side, p))) return 1;
            if (side != SIDE_ASSISTANT) {
                json_decref(m);
                return row_error(r, "invalid_turn_order", f, "%s must be a gpt or function_call turn", f);
            }
        } else {
            if (!json_is_string(v))
                return row_error(r, "invalid_field_type", f, "%s must be a string, got %s", f, type_name(v));
            m = message("assistant", v);
        }
        json_t *list = keep(p, json_array());
        if (!list || push(list, m)) {
            p->oom = 1;
            return 1;
        }
        if (check_trained(r, list, 0, f)) return 1;
        p->comp[k] = list;
    }
    if (json_equal((json_t *)c, (json_t *)j))
        return row_error(r, "identical_responses", kj, "%s and %s are identical", kc, kj);
    p->conv = 1;
    p->prompt = prompt;
    return 0;
}

static int validate_preference(row_rec *r, const json_t *o, parsed *p) {
    p->shared = -1;
    if (p->sg) return validate_lf_pair(r, o, p, p->sg->format == AL_FMT_SHAREGPT); /* the entry says which */
    if (json_object_get(o, "conversations")) return validate_lf_pair(r, o, p, 1);
    if (json_object_get(o, "instruction") || json_is_string(json_object_get(o, "input")))
        return validate_lf_pair(r, o, p, 0);
    if (json_object_get(o, "preferred_output") || json_object_get(o, "non_preferred_output") ||
        (json_object_get(o, "input") && !json_object_get(o, "chosen"))) {
        /* OpenAI: {"input": {"messages", "tools"}, "preferred_output": [...],
         * "non_preferred_output": [...]} */
        r->variant = 2;
        const json_t *in = need(r, o, "input");
        if (!in) return 1;
        if (!json_is_object(in))
            return row_error(r, "invalid_field_type", "input",
                             "input must be an object with messages, got %s", type_name(in));
        const json_t *msgs = json_object_get(in, "messages");
        if (check_messages(r, msgs, "input.messages", 0)) return 1;
        const json_t *c = need(r, o, "preferred_output");
        if (!c) return 1;
        const json_t *j = need(r, o, "non_preferred_output");
        if (!j) return 1;
        if (check_messages(r, c, "preferred_output", 1) ||
            check_trained(r, c, 0, "preferred_output") ||
            check_messages(r, j, "non_preferred_output", 1) ||
            check_trained(r, j, 0, "non_preferred_output"))
            return 1;
        if (json_equal((json_t *)c, (json_t *)j))
            return row_error(r, "identical_responses", "non_preferred_output",
                             "preferred_output and non_preferred_output are identical");
        p->tools = json_object_get(in, "tools");
        if (check_tools(r, p->tools, "input.tools")) return 1;
        p->conv = 1;
        p->prompt = msgs;
        p->comp[0] = c;
        p->comp[1] = j;
        return 0;
    }
    const json_t *c = need(r, o, "chosen");
    if (!c) return 1;
    const json_t *j = need(r, o, "rejected");
    if (!j) return 1;
    const json_t *pr = json_object_get(o, "prompt");
    int conv = -1;
    if (pr && check_target(r, pr, "prompt", &conv, 1)) return 1;
    p->tools = json_object_get(o, "tools");
    if (check_tools(r, p->tools, "tools")) return 1;
    if (pr) {
        if (check_target(r, c, "chosen", &conv, 0) || check_target(r, j, "rejected", &conv, 0))
            return 1;
        if (json_equal((json_t *)c, (json_t *)j))
            return row_error(r, "identical_responses", "rejected", "chosen and rejected are identical");
    } else {
        /* Implicit prompt: chosen and rejected are whole sequences sharing it. */
        r->variant = 1;
        if (!json_is_string(c) && !json_is_array(c))
            return row_error(r, "invalid_field_type", "chosen",
                             "chosen must be a string or a list of messages, got %s", type_name(c));
        conv = json_is_array(c);
        if (conv) {
            if (check_messages(r, c, "chosen", 1)) return 1;
            if (!json_is_array(j))
                return row_error(r, "invalid_field_type", "rejected",
                                 "rejected is %s but chosen is a list of messages", type_name(j));
            if (check_messages(r, j, "rejected", 1)) return 1;
            size_t s = common_messages(c, j);
            if (s == json_array_size(c) && s == json_array_size(j))
                return row_error(r, "identical_responses", "rejected",
                                 "chosen and rejected are identical");
            if (check_trained(r, c, s, "chosen") || check_trained(r, j, s, "rejected")) return 1;
            p->shared = (long)s;
        } else {
            if (!json_is_string(j))
                return row_error(r, "invalid_field_type", "rejected",
                                 "rejected is %s but chosen is a string", type_name(j));
            if (json_equal((json_t *)c, (json_t *)j))
                return row_error(r, "identical_responses", "rejected",
                                 "chosen and rejected are identical");
            size_t s = shared_text(c, j);
            if (blank(json_string_value(c) + s, json_string_length(c) - s))
                return row_error(r, "empty_target", "chosen",
                                 "chosen adds nothing but whitespace to the shared prompt");
            if (blank(json_string_value(j) + s, json_string_length(j) - s))
                return row_error(r, "empty_target", "rejected",
                                 "rejected adds nothing but whitespace to the shared prompt");
            p->shared = (long)s;
        }
    }
    p->conv = conv;
    p->prompt = pr;
    p->comp[0] = c;
    p->comp[1] = j;
    return 0;
}

static int validate_prompt_only(row_rec *r, const json_t *o, parsed *p) {
    const json_t *pr = need(r, o, "prompt");
    if (!pr) return 1;
    int conv = -1;
    if (check_target(r, pr, "prompt", &conv, 1)) return 1;
    if (!conv && json_blank(pr))
        return row_error(r, "missing_field", "prompt", "prompt is empty or whitespace");
    p->tools = json_object_get(o, "tools");
    if (check_tools(r, p->tools, "tools")) return 1;
    for (int i = 0; REFERENCE_KEYS[i]; i++) {
        const json_t *v = json_object_get(o, REFERENCE_KEYS[i]);
        if (!v || json_is_null(v)) continue;
        /* a list: every answer accepted (the graders, lib/train/grader.h) */
        int list_ok = json_is_array(v) && json_array_size(v) > 0;
        for (size_t k = 0; list_ok && k < json_array_size(v); k++)
            list_ok = json_is_string(json_array_get(v, k));
        if (!json_is_string(v) && !list_ok)
            return row_error(r, "invalid_field_type", REFERENCE_KEYS[i],
                             "%s must be a string or a non-empty list of strings, got %s", REFERENCE_KEYS[i],
                             type_name(v));
        p->reference = json_is_string(v) ? v : json_array_get(v, 0);
        break;
    }
    r->has_ref = p->reference != NULL;
    p->conv = conv;
    p->prompt = pr;
    return 0;
}

static int validate_ranked(row_rec *r, const json_t *o, parsed *p, int ratings) {
    const json_t *pr = need(r, o, "prompt");
    if (!pr) return 1;
    int conv = -1;
    if (check_target(r, pr, "prompt", &conv, 1)) return 1;
    const json_t *resp = need(r, o, "responses");
    if (!resp) return 1;
    if (!json_is_array(resp) || json_array_size(resp) < 2)
        return row_error(r, "invalid_field_type", "responses",
                         "responses must be a list of at least 2 responses, got %s",
                         json_is_array(resp) ? "fewer" : type_name(resp));
    size_t k = json_array_size(resp);
    for (size_t i = 0; i < k; i++) {
        char f[64];
        snprintf(f, sizeof f, "responses[%zu]", i);
        if (check_target(r, json_array_get(resp, i), f, &conv, 0)) return 1;
    }
    const char *key = ratings ? "ratings" : "ranking";
    const char *code = ratings ? "invalid_rating" : "invalid_ranking";
    const json_t *ord = need(r, o, key);
    if (!ord) return 1;
    if (!json_is_array(ord) || json_array_size(ord) != k)
        return row_error(r, code, key, "%s must be a list of %zu entries, one per response", key, k);
    if (ratings) {
        double lo = 6, hi = 0;
        for (size_t i = 0; i < k; i++) {
            const json_t *v = json_array_get(ord, i);
            double x = json_number_value(v);
            if (!json_is_number(v) || !(x >= 1.0 && x <= 5.0))
                return row_error(r, code, key, "ratings[%zu] must be a number from 1 to 5", i);
            if (x < lo) lo = x;
            if (x > hi) hi = x;
        }
        if (hi == lo)
            return row_error(r, code, key, "every response has the same rating, no preference");
    } else {
        unsigned char seen[256] = {0};
        if (k > 255) return row_error(r, code, key, "more than 255 responses");
        for (size_t i = 0; i < k; i++) {
            const json_t *v = json_array_get(ord, i);
            json_int_t x = json_integer_value(v);
            if (!json_is_integer(v) || x < 0 || (size_t)x >= k || seen[x])
                return row_error(r, code, key,
                                 "ranking must list each response index 0..%zu once, best first",
                                 k - 1);
            seen[x] = 1;
        }
    }
    r->n_resp = (uint8_t)(k > 255 ? 255 : k);
    p->conv = conv;
    p->prompt = pr;
    p->responses = resp;
    p->order = ord;
    p->shared = -1;
    return 0;
}

static int validate(row_rec *r, const json_t *o, al_data_format f, al_batch_kind kind, const al_dataset_info *sg,
                    parsed *p) {
    memset(p, 0, sizeof *p);
    p->shared = -1;
    p->sg = sg;
    switch (f) {
    case AL_FMT_TEXT: return validate_text(r, o, p);
    case AL_FMT_MESSAGES: return validate_messages(r, o, p);
    case AL_FMT_PROMPT_COMPLETION: return validate_pc(r, o, p, 0);
    case AL_FMT_PREFERENCE: return validate_preference(r, o, p);
    case AL_FMT_UNPAIRED: return validate_pc(r, o, p, 1);
    case AL_FMT_PROMPT_ONLY: return validate_prompt_only(r, o, p);
    case AL_FMT_RANKINGS: return validate_ranked(r, o, p, 0);
    case AL_FMT_RATINGS: return validate_ranked(r, o, p, 1);
    case AL_FMT_ALPACA: return validate_alpaca(r, o, p, kind);
    case AL_FMT_SHAREGPT: return validate_sharegpt(r, o, p, kind);
    default:
        if (sg) {
            char list[6 * (AL_DI_NAME + 2)] = "";
            size_t n = 0;
            for (int k = 0; k < AL_DI_NCOLS && n < sizeof list; k++)
                if (sg->col[k][0] && di_owns(sg, sg->col[k]))
                    n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", sg->col[k]);
            return row_error(r, "unrecognized_format", "", "none of the dataset_info's columns (%s%s rows: %s)",
                             sg->format == AL_FMT_ALPACA ? "alpaca" : "sharegpt", sg->ranking ? " ranking" : "", list);
        }
        return row_error(r, "unrecognized_format", "",
                         "no known format: expected text, messages, prompt/completion, "
                         "prompt/chosen/rejected, prompt/completion/label, prompt, "
                         "responses/ranking, responses/ratings, instruction/output (alpaca) "
                         "or conversations (sharegpt)");
    }
}

/* The formats a row's keys fit, as a bit mask: the keys that give each
 * format away, after the formats that hold another's keys as a part have
 * absorbed it (alpaca's and sharegpt's pairs are preference rows). More than
 * one bit: the row alone cannot tell which format it is in. */
static unsigned detect(const json_t *o, const al_dataset_info *di) {
#define HAS(k) (json_object_get(o, k) != NULL)
    if (di) {
        /* a file with a dataset_info entry: its columns say the format, and
         * a row with none of them is no format (never read as another) */
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)o, k, v) if (di_owns(di, k)) return FMT_BIT(di->ranking ? AL_FMT_PREFERENCE : di->format);
        return 0;
    }
    unsigned m = 0;
    const json_t *msgs = json_object_get(o, "messages"), *input = json_object_get(o, "input");
    if (msgs) m |= sharegpt_style(msgs) ? FMT_BIT(AL_FMT_SHAREGPT) : FMT_BIT(AL_FMT_MESSAGES);
    if (HAS("conversations")) m |= FMT_BIT(AL_FMT_SHAREGPT);
    if (HAS("instruction") || HAS("output") || (input && !json_is_object(input)))
        m |= FMT_BIT(AL_FMT_ALPACA);
    if (HAS("text")) m |= FMT_BIT(AL_FMT_TEXT);
    if (HAS("label") && (HAS("completion") || HAS("prompt"))) m |= FMT_BIT(AL_FMT_UNPAIRED);
    else if (HAS("completion")) m |= FMT_BIT(AL_FMT_PROMPT_COMPLETION);
    if (HAS("preferred_output") || HAS("non_preferred_output") || HAS("chosen") || HAS("rejected") ||
        json_is_object(input))
        m |= FMT_BIT(AL_FMT_PREFERENCE);
    if (HAS("ranking")) m |= FMT_BIT(AL_FMT_RANKINGS);
    if (HAS("ratings")) m |= FMT_BIT(AL_FMT_RATINGS);
    if (m & FMT_BIT(AL_FMT_PREFERENCE)) m &= ~(FMT_BIT(AL_FMT_ALPACA) | FMT_BIT(AL_FMT_SHAREGPT));
    if (!m && HAS("prompt") && !HAS("responses")) m = FMT_BIT(AL_FMT_PROMPT_ONLY);
    return m;
#undef HAS
}

static int popcount(unsigned m) {
    int n = 0;
    for (; m; m &= m - 1) n++;
    return n;
}

static al_data_format lowest(unsigned m) {
    for (int f = 1; f < AL_FMT_COUNT; f++)
        if (m & FMT_BIT(f)) return (al_data_format)f;
    return AL_FMT_UNKNOWN;
}

/* "alpaca (instruction/output), text (text)" */
static void name_formats(unsigned m, char *out, size_t n) {
    size_t k = 0;
    out[0] = 0;
    for (int f = 1; f < AL_FMT_COUNT && k < n; f++)
        if (m & FMT_BIT(f))
            k += (size_t)snprintf(out + k, n - k, "%s%s (%s)", k ? ", " : "", FORMAT_NAMES[f],
                                  FORMAT_KEYS[f]);
}

/* ---- canonical form for duplicates ------------------------------------- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted keys, strings with whitespace runs collapsed and trimmed; at the
 * top level (top = 1) the META_KEYS are left out. */
static void canon(al_buf *b, const json_t *v, int top) {
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        const char **keys = malloc((n ? n : 1) * sizeof *keys);
        if (!keys) {
            b->oom = 1;
            return;
        }
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (!top || !in_list(k, META_KEYS)) keys[i++] = k;
        }
        n = i;
        qsort(keys, n, sizeof *keys, cmp_str);
        al_buf_put(b, "{", 1);
        for (i = 0; i < n; i++) {
            al_buf_put(b, "\"", 1);
            al_buf_puts(b, keys[i]);
            al_buf_put(b, "\":", 2);
            canon(b, json_object_get(v, keys[i]), 0);
            al_buf_put(b, ",", 1);
        }
        al_buf_put(b, "}", 1);
        free(keys);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        const json_t *x;
        al_buf_put(b, "[", 1);
        json_array_foreach(v, i, x) {
            canon(b, x, 0);
            al_buf_put(b, ",", 1);
        }
        al_buf_put(b, "]", 1);
        break;
    }
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v), i = 0;
        al_buf_put(b, "\"", 1);
        int pending_space = 0, any = 0;
        while (i < n) {
            size_t j = i;
            while (j < n && !blank(s + j, 1) && s[j] != '"' && s[j] != '\\') j++;
            if (j > i) {
                if (pending_space && any) al_buf_put(b, " ", 1);
                al_buf_put(b, s + i, j - i);
                any = 1;
                pending_space = 0;
                i = j;
                continue;
            }
            if (s[i] == '"' || s[i] == '\\') {   /* escaped so strings stay unambiguous */
                if (pending_space && any) al_buf_put(b, " ", 1);
                al_buf_put(b, "\\", 1);
                al_buf_put(b, s + i, 1);
                any = 1;
                pending_space = 0;
            } else {
                pending_space = 1;
            }
            i++;
        }
        al_buf_put(b, "\"", 1);
        break;
    }
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        al_buf_puts(b, num);
        break;
    case JSON_REAL:
        snprintf(num, sizeof num, "%.17g", json_real_value(v));
        al_buf_puts(b, num);
        break;
    case JSON_TRUE: al_buf_put(b, "true", 4); break;
    case JSON_FALSE: al_buf_put(b, "false", 5); break;
    default: al_buf_put(b, "null", 4); break;
    }
}

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- encoding ------------------------------------------------------------ */

static al_example *new_example(reader *d) {
    if (d->n_ex == d->cap_ex) {
        int cap = d->cap_ex ? d->cap_ex * 2 : 1024;
        al_example *e = realloc(d->ex, (size_t)cap * sizeof *e);
        if (!e) return NULL;
        d->ex = e;
        d->cap_ex = cap;
    }
    al_example *e = &d->ex[d->n_ex++];
    memset(e, 0, sizeof *e);
    return e;
}

/* A conversation as chat templates take it: content parts joined into one
 * string (with nothing between them, as the chat API joins them) and
 * tool_calls' JSON-string arguments parsed into objects (Llama 3.1 and
 * Qwen2.5 render arguments with tojson; vLLM parses them the same way).
 * A new reference: msgs itself when nothing changes; NULL on ENOMEM. */
static json_t *norm_conv(const json_t *msgs) {
    int change = 0;
    size_t i, k;
    json_t *m, *c;
    json_array_foreach(msgs, i, m) {
        if (json_is_array(json_object_get(m, "content"))) change = 1;
        json_array_foreach(json_object_get(m, "tool_calls"), k, c) {
            if (json_is_string(json_object_get(json_object_get(c, "function"), "arguments"))) change = 1;
        }
    }
    if (!change) return json_incref((json_t *)msgs);
    json_t *out = json_deep_copy(msgs);
    if (!out) return NULL;
    json_array_foreach(out, i, m) {
        json_t *parts = json_object_get(m, "content");
        if (json_is_array(parts)) {
            al_buf b = {0};
            json_t *part;
            json_array_foreach(parts, k, part) {
                json_t *t = json_object_get(part, "text");
                al_buf_put(&b, json_string_value(t), json_string_length(t));
            }
            json_t *str = b.oom ? NULL : json_stringn(al_buf_str(&b), b.n);
            al_buf_deinit(&b);
            if (!str || json_object_set_new(m, "content", str)) {
                json_decref(out);
                return NULL;
            }
        }
        json_array_foreach(json_object_get(m, "tool_calls"), k, c) {
            json_t *fn = json_object_get(c, "function"), *a = json_object_get(fn, "arguments");
            json_t *v = json_is_string(a) ? json_loadb(json_string_value(a), json_string_length(a), 0, NULL) : NULL;
            if (v) json_object_set_new(fn, "arguments", v);
        }
    }
    return out;
}

/* Messages [from, to) of list (borrowed) as a new array; NULL when out of
 * memory. */
static json_t *slice(const json_t *list, size_t from, size_t to) {
    json_t *out = json_array();
    for (size_t i = from; out && i < to; i++)
        if (json_array_append(out, json_array_get(list, i))) {
            json_decref(out);
            out = NULL;
        }
    return out;
}

/* A conversation trained from message first_trained on, split as `how`
 * says (chat.h) after norm_conv. sib (may be NULL): the pair's other
 * conversation, whose first first_trained messages are the same prompt
 * (AL_SPLIT_ANSWER takes the prompt text common to both renderings). */
static int enc_conv(reader *d, al_split_kind how, const json_t *msgs, const json_t *sib,
                    const json_t *tools, int first_trained, al_seq *out, char err[AL_ERRLEN]) {
    json_t *n = norm_conv(msgs);
    if (!n) return al_err(err, AL_ENOMEM, "out of memory");
    int rc;
    if (how == AL_SPLIT_BYTES) {
        rc = al_chat_encode_messages(d->chat, n, tools, first_trained, out, err);
    } else {
        json_t *ns = sib ? norm_conv(sib) : NULL;
        size_t k = (size_t)first_trained;
        json_t *head = slice(n, 0, k), *tail = slice(n, k, json_array_size(n));
        json_t *other = ns ? slice(ns, k, json_array_size(ns)) : NULL;
        rc = !head || !tail || (sib && !other)
                 ? al_err(err, AL_ENOMEM, "out of memory")
                 : al_chat_encode_split_messages(d->chat, how, head, tail, other, tools, out, err);
        json_decref(head);
        json_decref(tail);
        json_decref(other);
        json_decref(ns);
    }
    json_decref(n);
    return rc;
}

/* prompt (string, list or NULL) + completion as one sequence, split as the
 * method's trainer does (the format's natural use when no method is named).
 * shared >= 0: completion is a whole sequence whose first `shared` bytes (or
 * messages) are the prompt. sib (may be NULL): the pair's other completion,
 * shaped as comp. */
static int enc_one(reader *d, const json_t *prompt, const json_t *comp, const json_t *sib,
                   const json_t *tools, long shared, al_seq *out, char err[AL_ERRLEN]) {
    al_split_kind how = d->m ? d->m->split : AL_SPLIT_BYTES;
    if (how != AL_SPLIT_ANSWER) sib = NULL;   /* only TRL's CPO/ORPO look at the other */
    if (json_is_string(comp)) {
        const char *cs = json_string_value(comp);
        size_t cl = json_string_length(comp);
        if (shared >= 0)
            return al_chat_encode_split(d->chat, how, cs, (size_t)shared, cs + shared,
                                        cl - (size_t)shared, out, err);
        const char *ps = prompt ? json_string_value(prompt) : "";
        size_t pl = prompt ? json_string_length(prompt) : 0;
        return al_chat_encode_split(d->chat, how, ps, pl, cs, cl, out, err);
    }
    if (shared >= 0) return enc_conv(d, how, comp, sib, tools, (int)shared, out, err);
    json_t *all = json_array(), *all_sib = sib ? json_array() : NULL;
    if (!all || (sib && !all_sib) || (prompt && json_array_extend(all, (json_t *)prompt)) ||
        json_array_extend(all, (json_t *)comp) ||
        (sib && ((prompt && json_array_extend(all_sib, (json_t *)prompt)) ||
                 json_array_extend(all_sib, (json_t *)sib)))) {
        json_decref(all);
        json_decref(all_sib);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    int rc = enc_conv(d, how, all, all_sib, tools, (int)json_array_size(prompt), out, err);
    json_decref(all);
    json_decref(all_sib);
    return rc;
}

static int enc_prompt(reader *d, const json_t *prompt, const json_t *tools, al_seq *out,
                      char err[AL_ERRLEN]) {
    if (json_is_string(prompt))
        return al_chat_encode_prompt(d->chat, json_string_value(prompt), json_string_length(prompt),
                                     out, err);
    json_t *n = norm_conv(prompt);
    if (!n) return al_err(err, AL_ENOMEM, "out of memory");
    int rc = al_chat_encode_prompt_messages(d->chat, n, tools, out, err);
    json_decref(n);
    return rc;
}

static int copy_seq(const al_seq *s, al_seq *out) {
    al_seq c = {0};
    c.ids = malloc(((size_t)s->n + 1) * sizeof *c.ids);
    c.mask = malloc((size_t)s->n + 1);
    if (!c.ids || !c.mask) {
        al_seq_deinit(&c);
        return AL_ENOMEM;
    }
    memcpy(c.ids, s->ids, (size_t)s->n * sizeof *c.ids);
    memcpy(c.mask, s->mask, (size_t)s->n);
    c.n = s->n;
    *out = c;
    return AL_OK;
}

/* Tokenizes a valid row into examples. Returns AL_OK, AL_ENOMEM, or 1 for a
 * row error (recorded). */
static int encode_row(reader *d, row_rec *r, const parsed *p, al_data_format f, al_batch_kind kind) {
    char err[AL_ERRLEN] = "";
    int rc = AL_OK;
    const char *what = "completion";
    int start = d->n_ex;
    al_seq seqs[2] = {{0}};
    al_seq *many = NULL;
    size_t k = 0;
    r->ex0 = start;
    r->nex = 0;
    if (kind == AL_BATCH_PROMPT) {
        what = "prompt";
        al_example *e = new_example(d);
        if (!e) return AL_ENOMEM;
        if ((rc = enc_prompt(d, p->prompt, p->tools, &e->seq[0], err)) != AL_OK) goto fail;
        const char *ref = NULL;
        if (p->reference) ref = json_string_value(p->reference);
        else if (f == AL_FMT_PROMPT_COMPLETION && json_is_string(p->comp[0]))
            ref = json_string_value(p->comp[0]);
        else if (f == AL_FMT_PROMPT_COMPLETION) {
            size_t n = json_array_size(p->comp[0]);
            for (size_t i = n; i-- > 0;) {
                const json_t *m = json_array_get(p->comp[0], i);
                if (is_role(m, "assistant") && json_is_string(json_object_get(m, "content"))) {
                    ref = json_string_value(json_object_get(m, "content"));
                    break;
                }
            }
        }
        if (ref && !(e->reference = strdup(ref))) {
            rc = AL_ENOMEM;
            goto fail;
        }
        e->row = json_incref((json_t *)p->row);
        e->line = r->line;
    } else if (f == AL_FMT_RANKINGS || f == AL_FMT_RATINGS) {
        /* Each response is tokenized once; pairs share copies. */
        k = json_array_size(p->responses);
        many = calloc(k, sizeof *many);
        if (!many) return AL_ENOMEM;
        for (size_t i = 0; i < k; i++) {
            what = "responses";
            if ((rc = enc_one(d, p->prompt, json_array_get(p->responses, i), NULL, p->tools, -1,
                              &many[i], err)) != AL_OK)
                goto fail;
        }
        size_t best = 0;
        if (f == AL_FMT_RATINGS)
            for (size_t i = 1; i < k; i++)
                if (json_number_value(json_array_get(p->order, i)) >
                    json_number_value(json_array_get(p->order, best)))
                    best = i;
        for (size_t a = 0; a < k; a++) {
            for (size_t b = 0; b < k; b++) {
                size_t ci, ri;
                float margin = 0;
                if (f == AL_FMT_RANKINGS) {
                    if (b <= a) continue;   /* ranking order a before b */
                    ci = (size_t)json_integer_value(json_array_get(p->order, a));
                    ri = (size_t)json_integer_value(json_array_get(p->order, b));
                } else {
                    if (a != best) continue;
                    double ra = json_number_value(json_array_get(p->order, a));
                    double rb = json_number_value(json_array_get(p->order, b));
                    if (!(rb < ra)) continue;
                    ci = a;
                    ri = b;
                    margin = (float)(ra - rb);
                }
                al_example *e = new_example(d);
                if (!e) {
                    rc = AL_ENOMEM;
                    goto fail;
                }
                e->line = r->line;
                e->margin = margin;
                if ((rc = copy_seq(&many[ci], &e->seq[0])) != AL_OK ||
                    (rc = copy_seq(&many[ri], &e->seq[1])) != AL_OK)
                    goto fail;
            }
        }
    } else if (f == AL_FMT_PREFERENCE) {
        for (int j = 0; j < 2; j++) {
            what = j ? "rejected" : "chosen";
            if ((rc = enc_one(d, p->prompt, p->comp[j], p->comp[1 - j], p->tools, p->shared,
                              &seqs[j], err)) != AL_OK)
                goto fail;
        }
        if (kind == AL_BATCH_PAIR) {
            al_example *e = new_example(d);
            if (!e) {
                rc = AL_ENOMEM;
                goto fail;
            }
            e->seq[0] = seqs[0];
            e->seq[1] = seqs[1];
            e->line = r->line;
        } else {   /* KTO from pairs: chosen desirable, rejected undesirable */
            for (int j = 0; j < 2; j++) {
                al_example *e = new_example(d);
                if (!e) {
                    rc = AL_ENOMEM;
                    goto fail;
                }
                e->seq[0] = seqs[j];
                seqs[j] = (al_seq){0};
                e->label = j ? 0.0f : 1.0f;
                e->line = r->line;
            }
        }
        memset(seqs, 0, sizeof seqs);
    } else {
        al_example *e = new_example(d);
        if (!e) return AL_ENOMEM;
        e->line = r->line;
        e->label = (float)p->label;
        int whole = f == AL_FMT_TEXT || f == AL_FMT_MESSAGES || f == AL_FMT_ALPACA || f == AL_FMT_SHAREGPT;
        const json_t *prompt = whole ? NULL : p->prompt;
        what = f == AL_FMT_TEXT       ? "text"
               : f == AL_FMT_MESSAGES ? "messages"
               : f == AL_FMT_ALPACA   ? "instruction"
               : f == AL_FMT_SHAREGPT ? "conversations"
                                      : "completion";
        if ((rc = enc_one(d, prompt, p->comp[0], NULL, p->tools, -1, &e->seq[0], err)) != AL_OK)
            goto fail;
    }
    r->nex = d->n_ex - start;
    r->tokens = 0;
    for (int i = start; i < d->n_ex; i++)
        if (al_example_len(&d->ex[i]) > r->tokens) r->tokens = al_example_len(&d->ex[i]);
    if (many)
        for (size_t i = 0; i < k; i++) al_seq_deinit(&many[i]);
    free(many);
    return AL_OK;
fail:
    for (int i = start; i < d->n_ex; i++) al_example_deinit(&d->ex[i]);
    d->n_ex = start;
    al_seq_deinit(&seqs[0]);
    al_seq_deinit(&seqs[1]);
    if (many)
        for (size_t i = 0; i < k; i++) al_seq_deinit(&many[i]);
    free(many);
    r->nex = 0;
    if (rc == AL_ENOMEM) return AL_ENOMEM;
    /* Validation has ruled out empty targets, so what is left is the chat
     * template (raise_exception, no template, not prefix-stable) or the
     * tokenizer refusing the row. */
    return row_error(r, "template_error", what, "%s: %s", what, err);
}

/* ---- the pass over rows ------------------------------------------------- */

static int kind_of(const reader *d, al_data_format f) {
    return d->m ? (int)d->m->kind : (int)NATURAL_KIND[f];
}

static int takes(const reader *d, al_data_format f) {
    return f != AL_FMT_UNKNOWN && (!d->m || (d->m->fmts & FMT_BIT(f)));
}

/* Judges object o as format f and encodes it when the method takes f. */
static int process(reader *d, row_rec *r, const json_t *o, al_data_format f) {
    parsed p;
    r->used = (int8_t)f;
    r->label = -1;
    r->tokens = -1;
    al_batch_kind kind = (al_batch_kind)kind_of(d, f);
    int bad = validate(r, o, f, kind, d->o.dataset_info, &p), rc = AL_OK;
    p.row = o;
    if (p.oom) rc = AL_ENOMEM;
    else if (!bad) {
        r->conv = (uint8_t)(p.conv > 0);
        if (d->chat && takes(d, f)) rc = encode_row(d, r, &p, f, kind);
    }
    parsed_deinit(&p);
    return rc == AL_ENOMEM ? AL_ENOMEM : AL_OK;
}

static row_rec *new_row(reader *d, int line) {
    if (d->n_rows == d->cap_rows) {
        int cap = d->cap_rows ? d->cap_rows * 2 : 1024;
        row_rec *r = realloc(d->rows, (size_t)cap * sizeof *r);
        if (!r) return NULL;
        d->rows = r;
        d->cap_rows = cap;
    }
    row_rec *r = &d->rows[d->n_rows++];
    memset(r, 0, sizeof *r);
    r->line = line;
    r->det = r->used = AL_FMT_UNKNOWN;
    r->label = -1;
    r->group_key = -1;
    r->tokens = -1;
    return r;
}

/* First look at one row: parse (done by the caller), detect, canonicalise,
 * judge as its own format. */
static int first_look(reader *d, row_rec *r, const json_t *o) {
    if (!json_is_object(o)) {
        row_error(r, "data_type", "", "the row is %s, not a JSON object", type_name(o));
        return AL_OK;
    }
    r->parsed = 1;
    if (d->collect || d->hyg) {
        size_t tl = 0;
        char *text = al_hygiene_text(o, &tl);
        if (!text) return AL_ENOMEM;
        int rc = AL_OK;
        if (d->collect) rc = json_array_append_new(d->collect, json_stringn(text, tl)) ? AL_ENOMEM : AL_OK;
        else if (al_hygiene_bands(d->hyg) &&
                 !(r->bands = malloc((size_t)al_hygiene_bands(d->hyg) * sizeof *r->bands)))
            rc = AL_ENOMEM;
        if (!rc && !d->collect) rc = al_hygiene_row(d->hyg, text, tl, &r->hy, r->bands);
        free(text);
        if (rc || d->collect) return rc;
    }
    unsigned cands = detect(o, d->o.dataset_info);
    r->det = (int8_t)lowest(cands);
    if (popcount(cands) > 1) {
        /* the method may settle it: one candidate it can train */
        unsigned fit = d->m ? cands & d->m->fmts : 0;
        if (popcount(fit) == 1) r->det = (int8_t)lowest(fit);
        else r->cands = (uint16_t)cands;
    }
    al_buf b = {0};
    canon(&b, o, 1);
    if (b.oom) {
        al_buf_deinit(&b);
        return AL_ENOMEM;
    }
    r->canon = b.p;
    r->canon_len = b.n;
    r->hash = fnv1a(b.p, b.n);
    for (int i = 0; i < 3; i++) {
        const json_t *g = json_object_get(o, GROUP_KEYS[i]);
        if (json_is_string(g)) {
            if (!(r->group = strdup(json_string_value(g)))) return AL_ENOMEM;
            r->group_key = (int8_t)i;
            break;
        }
    }
    return process(d, r, o, (al_data_format)r->det);
}

static json_t *parse_line(const char *s, size_t n, json_error_t *je) {
    return json_loadb(s, n, JSON_DECODE_ANY, je);
}

/* The report lists the first bad rows only: the others keep their code
 * (counted) but not their text, so millions of bad lines stay cheap. */
static void cap_detail(reader *d, row_rec *r) {
    if (r->bad && ++d->n_bad > AL_REPORT_MAX_ITEMS) {
        free(r->field);
        free(r->msg);
        r->field = r->msg = NULL;
    }
}

static int feed_line(reader *d, const char *s, size_t n, int line, size_t off) {
    row_rec *r = new_row(d, line);
    if (!r) return AL_ENOMEM;
    r->off = off;
    r->len = n;
    json_error_t je;
    json_t *o = parse_line(s, n, &je);
    int rc = AL_OK;
    if (!o)
        row_error(r, "invalid_json", "", "invalid JSON at column %d: %s", je.column, je.text);
    else
        rc = first_look(d, r, o);
    json_decref(o);
    cap_detail(d, r);
    return rc;
}

/* The object of row r again (a new reference). */
static json_t *csv_reload(const reader *d, const row_rec *r);
static int read_lines(reader *d, const char *buf, size_t len, size_t pos);
static int eval_texts(const char *path, json_t **out, char err[AL_ERRLEN]);

static json_t *reload(const reader *d, const row_rec *r) {
    if (d->arr) return json_incref(json_array_get(d->arr, r->off));
    if (d->cols) return csv_reload(d, r);
    json_error_t je;
    return parse_line(d->buf + r->off, r->len, &je);
}

/* ---- files: a JSON array, CSV and TSV --------------------------------------- */

static size_t skip_ws(const char *b, size_t n, size_t i) {
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) i++;
    return i;
}

/* Line numbers of increasing offsets, counted once. */
typedef struct line_at { const char *b; size_t pos; int line; } line_at;

static int line_of(line_at *l, size_t off) {
    for (; l->pos < off; l->pos++) l->line += l->b[l->pos] == '\n';
    return l->line;
}

/* An error that belongs to no row of its own (the array is cut short, text
 * follows it): a row holding only the error. */
static int error_row(reader *d, int line, const char *code, const char *msg) {
    row_rec *r = new_row(d, line);
    if (!r) return AL_ENOMEM;
    row_error(r, code, "", "%s", msg);
    return AL_OK;
}

/* A JSON array of row objects, one element at a time so that each row
 * knows the line its object starts on. An element that does not parse ends
 * the reading (what follows cannot be told from it). */
static int read_array(reader *d, const char *buf, size_t len, size_t start, line_at *la) {
    size_t i = start + 1;
    int first = 1, rc;
    char msg[AL_ERRLEN];
    for (;;) {
        i = skip_ws(buf, len, i);
        if (i >= len) return error_row(d, line_of(la, i), "invalid_json", "the JSON array is not closed");
        if (first && buf[i] == ']') {
            i++;
            break;
        }
        json_error_t je;
        json_t *o = json_loadb(buf + i, len - i, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &je);
        int line = line_of(la, i);
        if (!o) {
            snprintf(msg, sizeof msg, "invalid JSON at line %d column %d: %s (the rest of the array is "
                     "not read)", line + je.line - 1, je.column, je.text);
            return error_row(d, line + je.line - 1, "invalid_json", msg);
        }
        row_rec *r = new_row(d, line);
        if (!r) {
            json_decref(o);
            return AL_ENOMEM;
        }
        r->off = i;
        r->len = (size_t)je.position;
        rc = first_look(d, r, o);
        json_decref(o);
        cap_detail(d, r);
        if (rc != AL_OK) return rc;
        i = skip_ws(buf, len, i + (size_t)je.position);
        first = 0;
        if (i < len && buf[i] == ',') {
            i++;
            continue;
        }
        if (i < len && buf[i] == ']') {
            i++;
            break;
        }
        return error_row(d, line_of(la, i), "invalid_json", "expected ',' or ']' after an element of the array");
    }
    i = skip_ws(buf, len, i);
    if (i < len) return error_row(d, line_of(la, i), "invalid_json", "text follows the JSON array");
    return AL_OK;
}

/* Columns whose cells are read as JSON when they parse as it (lists and
 * objects have no CSV form of their own). */
static const char *const JSON_COLUMNS[] = {"messages", "conversations", "history", "tools", "responses",
                                           "ranking",  "ratings",       NULL};
/* Column names that say what format a header is for. */
static const char *const FORMAT_COLUMNS[] = {"text",   "messages", "conversations", "instruction",
                                             "output", "prompt",   "completion",    "chosen",
                                             "rejected", "input",  NULL};

/* A CSV record as a row object: each column a string; label true/false/1/0
 * a boolean; the JSON columns parsed; empty cells of those two left out.
 * NULL with *why set when a cell is not UTF-8 (or out of memory). */
static json_t *csv_object(const reader *d, const al_csv_rec *rec, const char **why) {
    json_t *o = json_object();
    *why = "out of memory";
    for (int i = 0; o && i < d->n_cols; i++) {
        const char *name = d->cols[i], *v = rec->f[i];
        size_t n = rec->fl[i];
        json_t *x = NULL;
        const al_dataset_info *di = d->o.dataset_info;
        int json_col = in_list(name, JSON_COLUMNS) ||
                       (di && (!strcmp(name, di->col[AL_DI_MESSAGES]) || !strcmp(name, di->col[AL_DI_TOOLS]) ||
                               !strcmp(name, di->col[AL_DI_HISTORY]) ||
                               (di->format == AL_FMT_SHAREGPT && di_owns(di, name))));
        int special = json_col || !strcmp(name, "label");
        if (special && blank(v, n)) continue;
        if (!strcmp(name, "label") && (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "True")))
            x = json_true();
        else if (!strcmp(name, "label") && (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "False")))
            x = json_false();
        else if (json_col && (v[skip_ws(v, n, 0)] == '[' || v[skip_ws(v, n, 0)] == '{'))
            x = json_loadb(v, n, 0, NULL);
        if (!x && !(x = json_stringn(v, n))) {
            json_decref(o);
            *why = "a cell is not valid UTF-8";
            return NULL;
        }
        if (json_object_set_new(o, name, x)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static int csv_row(void *ud, const al_csv_rec *rec) {
    reader *d = ud;
    row_rec *r = new_row(d, rec->line);
    if (!r) return AL_ENOMEM;
    r->off = rec->off;
    r->len = rec->len;
    int rc = AL_OK;
    const char *why = NULL;
    json_t *o = NULL;
    if (rec->error)
        row_error(r, "invalid_csv", "", "%s", rec->error);
    else if (rec->n != d->n_cols)
        row_error(r, "invalid_csv", "", "the record has %d field%s, the header %d", rec->n,
                  rec->n == 1 ? "" : "s", d->n_cols);
    else if (!(o = csv_object(d, rec, &why)) && !strcmp(why, "out of memory"))
        return AL_ENOMEM;
    else if (!o)
        row_error(r, "invalid_csv", "", "%s", why);
    else
        rc = first_look(d, r, o);
    json_decref(o);
    cap_detail(d, r);
    return rc;
}

typedef struct csv_one { const reader *d; json_t *o; } csv_one;

static int csv_one_cb(void *ud, const al_csv_rec *rec) {
    csv_one *c = ud;
    const char *why;
    if (!rec->error && rec->n == c->d->n_cols) c->o = csv_object(c->d, rec, &why);
    return 1;
}

static json_t *csv_reload(const reader *d, const row_rec *r) {
    csv_one c = {d, NULL};
    al_csv_each(d->buf, r->off + r->len, r->off, r->line, d->delim, csv_one_cb, &c);
    return c.o;
}

typedef struct header { char **cols; int n, oom; size_t end; } header;

static int header_cb(void *ud, const al_csv_rec *rec) {
    header *h = ud;
    h->end = rec->off + rec->len;
    if (rec->error || rec->n == 0) return 1;
    h->cols = calloc((size_t)rec->n, sizeof *h->cols);
    if (!h->cols) {
        h->oom = 1;
        return 1;
    }
    h->n = rec->n;
    for (int i = 0; i < rec->n; i++) {
        /* names are trimmed: "prompt, completion" is a common header */
        size_t a = skip_ws(rec->f[i], rec->fl[i], 0), b = rec->fl[i];
        while (b > a && blank(rec->f[i] + b - 1, 1)) b--;
        if (!(h->cols[i] = strndup(rec->f[i] + a, b - a))) h->oom = 1;
    }
    return 1;
}

static void header_free(header *h) {
    for (int i = 0; i < h->n; i++) free(h->cols[i]);
    free(h->cols);
    memset(h, 0, sizeof *h);
}

/* The header at buf[start..] split at delim; *known: how many of its names
 * say a format. */
static int read_header(const char *buf, size_t len, size_t start, int line, char delim,
                       const al_dataset_info *di, header *h, int *known) {
    memset(h, 0, sizeof *h);
    al_csv_each(buf, len, start, line, delim, header_cb, h);
    if (h->oom) {
        header_free(h);
        return AL_ENOMEM;
    }
    *known = 0;
    for (int i = 0; i < h->n; i++)
        *known += h->cols[i] && (in_list(h->cols[i], FORMAT_COLUMNS) || (di && di_owns(di, h->cols[i])));
    return AL_OK;
}

static const char *extension(const char *name) {
    const char *dot = name ? strrchr(name, '.') : NULL;
    return dot && !strchr(dot, '/') ? dot + 1 : "";
}

/* CSV or TSV when the first line is a header naming a format's columns.
 * Returns AL_OK with d->cols set (CSV/TSV), AL_OK with d->cols NULL (not a
 * header: read as JSONL), or AL_ENOMEM; sets d->file_fatal when the header
 * reads both ways. */
static int sniff_csv(reader *d, const char *buf, size_t len, size_t start, int line) {
    const char *ext = extension(d->o.filename);
    const char *nl = memchr(buf + start, '\n', len - start);
    size_t end = nl ? (size_t)(nl - buf) : len;
    int commas = memchr(buf + start, ',', end - start) != NULL;
    int tabs = memchr(buf + start, '\t', end - start) != NULL;
    char delim = !strcasecmp(ext, "tsv") || !strcasecmp(ext, "tab") ? '\t'
                 : !strcasecmp(ext, "csv")                          ? ','
                 : tabs && !commas                                  ? '\t'
                                                                    : ',';
    header h, h2;
    int known = 0, known2 = 0, rc;
    if ((rc = read_header(buf, len, start, line, delim, d->o.dataset_info, &h, &known))) return rc;
    if (!ext[0] || (strcasecmp(ext, "csv") && strcasecmp(ext, "tsv") && strcasecmp(ext, "tab"))) {
        if (commas && tabs) {
            if ((rc = read_header(buf, len, start, line, '\t', d->o.dataset_info, &h2, &known2))) {
                header_free(&h);
                return rc;
            }
            if (known && known2) {
                snprintf(d->file_fatal, sizeof d->file_fatal,
                         "the header line reads as CSV (%d columns) and as TSV (%d columns); a file "
                         "named .csv or .tsv settles it",
                         h.n, h2.n);
                header_free(&h2);
            } else if (known2) {
                header_free(&h);
                h = h2;
                known = known2;
                delim = '\t';
            } else {
                header_free(&h2);
            }
        }
    }
    if (!known) {
        header_free(&h);
        d->file_fatal[0] = 0;
        return AL_OK;
    }
    for (int i = 0; i < h.n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(h.cols[i], h.cols[j]) && !d->file_fatal[0])
                snprintf(d->file_fatal, sizeof d->file_fatal, "the header names the column \"%.60s\" twice",
                         h.cols[i]);
    d->cols = h.cols;
    d->n_cols = h.n;
    d->body = h.end;
    d->delim = delim;
    d->file_format = delim == '\t' ? "tsv" : "csv";
    return AL_OK;
}

/* ---- after the pass ------------------------------------------------------ */

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void drop_examples(reader *d, row_rec *r) {
    for (int i = r->ex0; i < r->ex0 + r->nex; i++) al_example_deinit(&d->ex[i]);
    r->nex = 0;
}

static int mark_duplicates(reader *d) {
    size_t cap = 16;
    while (cap < (size_t)d->n_rows * 2) cap <<= 1;
    int32_t *slot = malloc(cap * sizeof *slot);
    if (!slot) return AL_ENOMEM;
    for (size_t i = 0; i < cap; i++) slot[i] = -1;
    for (int i = 0; i < d->n_rows; i++) {
        row_rec *r = &d->rows[i];
        if (r->bad || !r->canon) continue;
        size_t h = (size_t)r->hash & (cap - 1);
        for (;; h = (h + 1) & (cap - 1)) {
            if (slot[h] < 0) {
                slot[h] = i;
                break;
            }
            row_rec *q = &d->rows[slot[h]];
            if (q->hash == r->hash && q->canon_len == r->canon_len &&
                memcmp(q->canon, r->canon, r->canon_len) == 0) {
                r->dup = 1;
                r->dup_of = q->line;
                break;
            }
        }
    }
    free(slot);
    return AL_OK;
}

/* Truncates every example of a kept row to max_length; drops examples left
 * without a trained token. Sets r->truncated / r->dropped. */
static void apply_length(reader *d, row_rec *r, al_batch_kind kind) {
    int maxl = d->o.max_length, maxp = d->o.max_prompt_length ? d->o.max_prompt_length : maxl;
    int kept = 0, cut = 0;
    for (int i = r->ex0; i < r->ex0 + r->nex; i++) {
        al_example *e = &d->ex[i];
        int ok = 1;
        if (kind == AL_BATCH_PROMPT) {
            if (maxp > 0 && e->seq[0].n > maxp) ok = 0;
        } else if (maxl > 0) {
            int nseq = kind == AL_BATCH_PAIR ? 2 : 1;
            for (int j = 0; j < nseq; j++) {
                al_seq *s = &e->seq[j];
                if (s->n > maxl) {
                    s->n = maxl;
                    cut = 1;
                }
                if (!al_seq_trained(s)) ok = 0;
            }
        }
        if (!ok) al_example_deinit(e);
        else kept++;
    }
    if (!kept && r->nex) r->dropped = 1;
    else if (cut) r->truncated = 1;
}

static json_t *jint(long long v) { return json_integer(v); }

/* Counts one more `code` in the object counts (code -> N). */
static void count_code(json_t *counts, const char *code) {
    json_t *c = json_object_get(counts, code);
    json_object_set_new(counts, code, jint(c ? json_integer_value(c) + 1 : 1));
}

/* A warning: counted by code always, listed while the list has room
 * (AL_REPORT_MAX_ITEMS). */
static void add_warning(json_t *arr, json_t *counts, int line, const char *code, const char *fmt,
                        ...) __attribute__((format(printf, 5, 6)));
static void add_warning(json_t *arr, json_t *counts, int line, const char *code, const char *fmt,
                        ...) {
    count_code(counts, code);
    if (json_array_size(arr) >= AL_REPORT_MAX_ITEMS) return;
    char text[AL_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_array_append_new(arr, json_pack("{s:i,s:s,s:s}", "line", line, "code", code, "message", text));
}

/* A row's name in the structural mix. */
static void structure_name(const row_rec *r, char *out, size_t n) {
    switch (r->used) {
    case AL_FMT_TEXT: snprintf(out, n, "text"); break;
    case AL_FMT_MESSAGES: snprintf(out, n, r->multi_turn ? "multi_turn" : "single_turn"); break;
    case AL_FMT_PREFERENCE:
        snprintf(out, n, r->variant == 4   ? "sharegpt"
                         : r->variant == 3 ? "alpaca"
                         : r->variant == 2 ? "openai"
                         : r->variant == 1 ? "implicit_prompt"
                                           : "explicit_prompt");
        break;
    case AL_FMT_UNPAIRED: snprintf(out, n, r->label ? "desirable" : "undesirable"); break;
    case AL_FMT_PROMPT_ONLY: snprintf(out, n, r->has_ref ? "with_reference" : "without_reference"); break;
    case AL_FMT_RANKINGS:
    case AL_FMT_RATINGS: snprintf(out, n, "%d_responses", r->n_resp); break;
    case AL_FMT_ALPACA: snprintf(out, n, r->multi_turn ? "with_history" : "single_turn"); break;
    case AL_FMT_SHAREGPT: snprintf(out, n, r->multi_turn ? "multi_turn" : "single_turn"); break;
    default: snprintf(out, n, r->conv ? "conversational" : "standard"); break;
    }
}

typedef struct group_ref { const char *name; int row; } group_ref;

static int cmp_group(const void *a, const void *b) {
    const group_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->row > y->row) - (x->row < y->row);
}

typedef struct group_stat { const char *name; int rows, tok_n, tok_max; double tok_sum; } group_stat;

static int cmp_group_rows(const void *a, const void *b) {
    const group_stat *x = a, *y = b;
    if (x->rows != y->rows) return x->rows > y->rows ? -1 : 1;
    return strcmp(x->name, y->name);
}

#define MAX_GROUPS 50

static json_t *build_mix(reader *d, const int *kept, int n_kept, int tokenized) {
    json_t *mix = json_object();
    if (!mix) return NULL;
    /* Task types from a task/category/source field when most rows have one. */
    int key_rows[3] = {0, 0, 0};
    for (int i = 0; i < n_kept; i++) {
        const row_rec *r = &d->rows[kept[i]];
        if (r->group_key >= 0) key_rows[r->group_key]++;
    }
    int key = -1;
    for (int i = 0; i < 3; i++)
        if (key_rows[i] * 2 > n_kept && (key < 0 || key_rows[i] > key_rows[key])) key = i;
    json_object_set_new(mix, "by", json_string(key >= 0 ? GROUP_KEYS[key] : "structure"));

    group_ref *refs = malloc(((size_t)n_kept + 1) * sizeof *refs);
    char (*names)[32] = malloc(((size_t)n_kept + 1) * sizeof *names);
    group_stat *gs = malloc(((size_t)n_kept + 1) * sizeof *gs);
    if (!refs || !names || !gs) {
        free(refs);
        free(names);
        free(gs);
        json_decref(mix);
        return NULL;
    }
    for (int i = 0; i < n_kept; i++) {
        const row_rec *r = &d->rows[kept[i]];
        structure_name(r, names[i], sizeof names[i]);
        if (key >= 0) refs[i].name = r->group_key == key ? r->group : "(none)";
        else refs[i].name = names[i];
        refs[i].row = kept[i];
    }
    qsort(refs, (size_t)n_kept, sizeof *refs, cmp_group);
    int ng = 0;
    for (int i = 0; i < n_kept; i++) {
        if (!ng || strcmp(gs[ng - 1].name, refs[i].name) != 0)
            gs[ng++] = (group_stat){refs[i].name, 0, 0, 0, 0.0};
        group_stat *g = &gs[ng - 1];
        const row_rec *r = &d->rows[refs[i].row];
        g->rows++;
        if (r->tokens >= 0) {
            g->tok_n++;
            g->tok_sum += r->tokens;
            if (r->tokens > g->tok_max) g->tok_max = r->tokens;
        }
    }
    qsort(gs, (size_t)ng, sizeof *gs, cmp_group_rows);
    json_t *groups = json_object();
    group_stat other = {"(other)", 0, 0, 0, 0.0};
    for (int i = 0; i < ng; i++) {
        group_stat *g = &gs[i];
        if (i >= MAX_GROUPS) {   /* long tails are summed, the report stays small */
            other.rows += g->rows;
            other.tok_n += g->tok_n;
            other.tok_sum += g->tok_sum;
            if (g->tok_max > other.tok_max) other.tok_max = g->tok_max;
            if (i + 1 < ng) continue;
            g = &other;
        }
        json_t *o = json_pack("{s:i,s:f}", "rows", g->rows, "share",
                              n_kept ? (double)g->rows / n_kept : 0.0);
        if (tokenized && g->tok_n) {
            json_object_set_new(o, "tokens_mean", json_real(g->tok_sum / g->tok_n));
            json_object_set_new(o, "tokens_max", jint(g->tok_max));
        }
        json_object_set_new(groups, g->name, o);
    }
    json_object_set_new(mix, "groups", groups);

    /* Structure: standard vs conversational, and the format's own split. */
    json_t *st = json_object();
    int conv = 0, sys = 0, desirable = 0, undesirable = 0;
    for (int i = 0; i < n_kept; i++) {
        const row_rec *r = &d->rows[kept[i]];
        conv += r->conv;
        sys += r->has_system;
        if (r->label == 1) desirable++;
        if (r->label == 0) undesirable++;
    }
    json_object_set_new(st, "standard", jint(n_kept - conv));
    json_object_set_new(st, "conversational", jint(conv));
    for (int i = 0; i < n_kept; i++) {
        if (!strcmp(names[i], "standard") || !strcmp(names[i], "conversational")) continue;
        json_t *c = json_object_get(st, names[i]);
        json_object_set_new(st, names[i], jint(c ? json_integer_value(c) + 1 : 1));
    }
    if (sys) json_object_set_new(st, "with_system", jint(sys));
    json_object_set_new(mix, "structure", st);
    if (desirable + undesirable)
        json_object_set_new(mix, "labels", json_pack("{s:i,s:i}", "desirable", desirable,
                                                     "undesirable", undesirable));
    if (tokenized) {   /* power-of-two length buckets from 64 */
        json_t *h = json_object();
        int counts[32] = {0}, top = 0;
        for (int i = 0; i < n_kept; i++) {
            int t = d->rows[kept[i]].tokens, b = 0;
            if (t < 0) continue;
            while (b < 31 && t > (64LL << b)) b++; /* 64 << 25 would overflow an int */
            counts[b]++;
            if (b > top) top = b;
        }
        for (int b = 0; b <= top; b++) {
            char name[48];
            snprintf(name, sizeof name, "%lld-%lld", b ? (64LL << (b - 1)) + 1 : 1LL, 64LL << b);
            json_object_set_new(h, name, jint(counts[b]));
        }
        json_object_set_new(mix, "lengths", h);
    }
    free(refs);
    free(names);
    free(gs);
    return mix;
}

/* ---- hygiene ----------------------------------------------------------------- */

static char *row_text(const reader *d, const row_rec *r, size_t *len) {
    json_t *o = reload(d, r);
    char *t = o ? al_hygiene_text(o, len) : NULL;
    json_decref(o);
    return t;
}

typedef struct bucket { uint64_t key; int32_t row1; } bucket;   /* row1 = row + 1, 0 empty */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void bump(json_t *o, const char *key) {
    json_t *c = json_object_get(o, key);
    json_object_set_new(o, key, json_integer(c ? json_integer_value(c) + 1 : 1));
}

/* Applies the filters to kept[0..*n) in order, in the order length,
 * language, contamination, near-duplicates (a row's first reason is the one
 * reported); the rows that stay are compacted in kept. */
static int apply_hygiene(reader *d, int *kept, int *n, json_t *warnings, json_t *wcounts, int *n_dropped,
                         json_t **rep) {
    const al_hygiene_cfg *c = al_hygiene_cfg_of(d->hyg);
    int nb = al_hygiene_bands(d->hyg), rc = AL_OK;
    size_t cap = 16;
    while (nb && cap < (size_t)*n * (size_t)nb * 2) cap <<= 1;
    bucket *bk = nb ? calloc(cap, sizeof *bk) : NULL;
    int32_t *cand = nb ? malloc(sizeof *cand * 256) : NULL;
    json_t *detected = json_object();
    if ((nb && (!bk || !cand)) || !detected) rc = AL_ENOMEM;
    int m = 0, too_short = 0, too_long = 0, lang = 0, undetermined = 0, contam = 0, near = 0;
    for (int i = 0; i < *n && !rc; i++) {
        row_rec *r = &d->rows[kept[i]];
        const al_hyg_row *y = &r->hy;
        if (c->n_languages) {
            if (y->lang_ok < 0) undetermined++;
            else bump(detected, y->lang);
        }
        const char *code = NULL;
        char why[160] = "";
        if (c->min_words && y->words < c->min_words) {
            code = "too_short";
            too_short++;
            snprintf(why, sizeof why, "%d words, fewer than min_words %d", y->words, c->min_words);
        } else if (c->max_words && y->words > c->max_words) {
            code = "too_long";
            too_long++;
            snprintf(why, sizeof why, "%d words, more than max_words %d", y->words, c->max_words);
        } else if (c->n_languages && y->lang_ok == 0) {
            code = "language";
            lang++;
            snprintf(why, sizeof why, "the language is %s, not one of those wanted", y->lang);
        } else if (y->contaminated) {
            code = "contaminated";
            contam++;
            snprintf(why, sizeof why, "shares %s with the evaluation file (%.0f%% of its words)",
                     c->decon_coverage > 0 ? "n-grams" : "an n-gram", 100.0 * y->coverage);
        } else if (nb) {
            /* candidates: kept rows that agree on a whole band */
            int nc = 0;
            for (int b = 0; b < nb; b++)
                for (size_t j = r->bands[b] & (cap - 1); bk[j].row1; j = (j + 1) & (cap - 1))
                    if (bk[j].key == r->bands[b] && nc < 256) cand[nc++] = bk[j].row1 - 1;
            qsort(cand, (size_t)nc, sizeof *cand, cmp_i32);
            size_t la = 0;
            char *ta = nc ? row_text(d, r, &la) : NULL;
            if (nc && !ta) rc = AL_ENOMEM;
            for (int k = 0; k < nc && !rc && !code; k++) {
                if (k && cand[k] == cand[k - 1]) continue;
                size_t lb = 0;
                char *tb = row_text(d, &d->rows[cand[k]], &lb);
                double jac = tb ? al_hygiene_jaccard(d->hyg, ta, la, tb, lb) : -1;
                free(tb);
                if (jac < 0) rc = AL_ENOMEM;
                else if (jac >= c->near_threshold) {
                    code = "near_duplicate";
                    near++;
                    snprintf(why, sizeof why, "a near-duplicate of line %d (Jaccard similarity %.2f of word "
                             "%d-grams)", d->rows[cand[k]].line, jac, c->near_ngram);
                }
            }
            free(ta);
            if (!code && !rc)
                for (int b = 0; b < nb; b++) {
                    size_t j = r->bands[b] & (cap - 1);
                    while (bk[j].row1) j = (j + 1) & (cap - 1);
                    bk[j].key = r->bands[b];
                    bk[j].row1 = kept[i] + 1;
                }
        }
        if (code) {
            drop_examples(d, r);
            add_warning(warnings, wcounts, r->line, code, "line %d: %s (dropped)", r->line, why);
            (*n_dropped)++;
            continue;
        }
        kept[m++] = kept[i];
    }
    free(bk);
    free(cand);
    if (rc) {
        json_decref(detected);
        return rc;
    }
    json_t *o = json_pack("{s:i,s:i,s:i}", "rows_in", *n, "rows_out", m, "dropped", *n - m);
    if (c->near_dedupe)
        json_object_set_new(o, "near_duplicates", json_pack("{s:i,s:f,s:i,s:i,s:i}", "dropped", near, "threshold",
                                                            c->near_threshold, "ngram", c->near_ngram, "num_perm",
                                                            c->num_perm, "bands", c->bands));
    if (c->decon_file[0]) {
        int rows, short_rows, ng;
        long grams;
        al_hygiene_eval_stats(d->hyg, &rows, &short_rows, &ng, &grams);
        char rule[96];
        if (c->decon_coverage > 0)
            snprintf(rule, sizeof rule, "coverage >= %g (Llama 2)", c->decon_coverage);
        else
            snprintf(rule, sizeof rule, "any shared n-gram (GPT-3)");
        json_object_set_new(o, "decontamination",
                            json_pack("{s:i,s:i,s:s,s:i,s:i,s:I}", "dropped", contam, "ngram", ng, "rule", rule,
                                      "eval_rows", rows, "eval_rows_too_short", short_rows, "eval_ngrams",
                                      (json_int_t)grams));
    }
    if (c->min_words || c->max_words)
        json_object_set_new(o, "length", json_pack("{s:i,s:i,s:i,s:i}", "too_short", too_short, "too_long", too_long,
                                                   "min_words", c->min_words, "max_words", c->max_words));
    if (c->n_languages) {
        json_t *want = json_array();
        for (int i = 0; i < c->n_languages; i++) json_array_append_new(want, json_string(c->languages[i]));
        json_object_set_new(o, "language", json_pack("{s:i,s:i,s:o,s:o}", "dropped", lang, "undetermined",
                                                     undetermined, "languages", want, "detected", detected));
        detected = NULL;
    }
    json_decref(detected);
    *n = m;
    *rep = o;
    return AL_OK;
}

/* What finish counts on its way, for the report. */
typedef struct tally {
    int valid, empty, dups, dedup, n_err, n_kept, conv, truncated, dropped, hyg_dropped;
} tally;

/* 1. The file's format: the most common among rows whose keys fit one
 * format. Rows that fit several, when no row settles it, or a tie between
 * two formats, leave it ambiguous: refused, never guessed (AL_FMT_UNKNOWN,
 * with the reason in ambiguous; "" when no row is in any format). */
static al_data_format decide_format(const reader *d, char ambiguous[AL_ERRLEN]) {
    int count[AL_FMT_COUNT] = {0};
    unsigned common = ~0u, seen = 0;
    int n_amb = 0;
    for (int i = 0; i < d->n_rows; i++) {
        const row_rec *r = &d->rows[i];
        if (!r->parsed || r->det == AL_FMT_UNKNOWN) continue;
        if (r->cands) {
            n_amb++;
            common &= r->cands;
            seen |= r->cands;
            continue;
        }
        count[r->det]++;
    }
    al_data_format F = AL_FMT_UNKNOWN;
    for (int f = 1; f < AL_FMT_COUNT; f++)
        if (count[f] > count[F]) F = (al_data_format)f;
    char names[128];
    ambiguous[0] = 0;
    for (int f = 1; f < AL_FMT_COUNT && F != AL_FMT_UNKNOWN; f++)
        if (f != (int)F && count[f] == count[F]) {
            name_formats(FMT_BIT(F) | FMT_BIT(f), names, sizeof names);
            snprintf(ambiguous, AL_ERRLEN,
                     "as many rows are in one format as in another (%d each): %.150s; the file's format "
                     "cannot be told apart",
                     count[F], names);
            return AL_FMT_UNKNOWN;
        }
    if (F == AL_FMT_UNKNOWN && n_amb) {
        name_formats(common ? common : seen, names, sizeof names);
        snprintf(ambiguous, AL_ERRLEN,
                 "every row has the keys of more than one format: %.150s; keep only the columns of "
                 "the format you mean",
                 names);
    }
    return F;
}

/* 2. Rows judged as something else are judged again as F. */
static int rejudge_rows(reader *d, al_data_format F) {
    for (int i = 0; i < d->n_rows; i++) {
        row_rec *r = &d->rows[i];
        if (!r->parsed || r->used == (int8_t)F) continue;
        drop_examples(d, r);
        row_clear_error(r);
        r->has_system = r->multi_turn = r->variant = r->n_resp = r->has_ref = 0;
        json_t *o = reload(d, r);
        if (!o) return AL_ENOMEM;
        int rc = process(d, r, o, F);
        json_decref(o);
        if (rc != AL_OK) return rc;
    }
    return AL_OK;
}

/* 3. File-level verdicts, in ds->fatal (and errors when they are the
 * file's fault rather than the rows'). */
static void file_verdict(const reader *d, al_dataset *ds, al_data_format F, const char *ambiguous,
                         json_t *errors, json_t *counts) {
    if (d->n_rows == 0 && !d->file_fatal[0]) {
        snprintf(ds->fatal, sizeof ds->fatal, "the dataset has no rows");
    } else if (ambiguous[0] || d->file_fatal[0]) {
        const char *code = d->file_fatal[0] && strstr(d->file_fatal, "twice") ? "invalid_csv" : "ambiguous_format";
        snprintf(ds->fatal, sizeof ds->fatal, "%s", d->file_fatal[0] ? d->file_fatal : ambiguous);
        json_array_append_new(errors, json_pack("{s:i,s:s,s:s,s:s}", "line", 0, "code", code, "field", "",
                                                "message", ds->fatal));
        json_object_set_new(counts, code, jint(1));
    } else if (F == AL_FMT_UNKNOWN) {
        snprintf(ds->fatal, sizeof ds->fatal, "no row is in a recognised format");
    } else if (!takes(d, F)) {
        snprintf(ds->fatal, sizeof ds->fatal,
                 "the dataset's format is %s, which method %s cannot train on (it takes %s)",
                 al_data_format_name(F), d->m->name, d->m->takes);
        json_array_append_new(errors, json_pack("{s:i,s:s,s:s,s:s}", "line", 0, "code",
                                                "unsupported_format", "field", "", "message",
                                                ds->fatal));
        json_object_set_new(counts, "unsupported_format", jint(1));
    }
}

/* 4. Errors and duplicates: bad rows reported (up to AL_REPORT_MAX_ITEMS)
 * and dropped, duplicates warned about (and dropped when deduplicating);
 * the others' indices in kept[0..t->n_kept). */
static int sort_rows(reader *d, json_t *errors, json_t *warnings, json_t *counts, json_t *wcounts, int *kept,
                     tally *t) {
    int rc = mark_duplicates(d);
    if (rc != AL_OK) return rc;
    t->n_err = (int)json_array_size(errors);
    for (int i = 0; i < d->n_rows; i++) {
        row_rec *r = &d->rows[i];
        if (r->bad) {
            if (json_array_size(errors) < AL_REPORT_MAX_ITEMS) {
                char msg[64];
                snprintf(msg, sizeof msg, "line %d: %s", r->line, r->code);
                json_array_append_new(errors, json_pack("{s:i,s:s,s:s,s:s}", "line", r->line,
                                                        "code", r->code, "field",
                                                        r->field ? r->field : "", "message",
                                                        r->msg ? r->msg : msg));
            }
            t->n_err++;
            count_code(counts, r->code);
            t->empty += r->empty;
            drop_examples(d, r);
            continue;
        }
        t->valid++;
        if (r->dup) {
            t->dups++;
            add_warning(warnings, wcounts, r->line, "duplicate", "line %d: duplicates line %d%s", r->line,
                        r->dup_of, d->o.dedupe ? " (dropped)" : "");
            if (d->o.dedupe) {
                t->dedup++;
                drop_examples(d, r);
                continue;
            }
        }
        kept[t->n_kept++] = i;
    }
    return AL_OK;
}

/* 4b. Hygiene over the kept rows, in row order (its report in *hyg_rep);
 * the clean job keeps the surviving row indices. */
static int keep_clean(reader *d, int *kept, json_t *warnings, json_t *wcounts, tally *t, json_t **hyg_rep) {
    int rc;
    *hyg_rep = NULL;
    if (d->hyg &&
        (rc = apply_hygiene(d, kept, &t->n_kept, warnings, wcounts, &t->hyg_dropped, hyg_rep)) != AL_OK)
        return rc;
    t->conv = 0;
    for (int i = 0; i < t->n_kept; i++) t->conv += d->rows[kept[i]].conv;
    if (d->kept_only) {
        if (!(d->kept_rows = malloc(((size_t)t->n_kept + 1) * sizeof *d->kept_rows))) {
            json_decref(*hyg_rep);
            *hyg_rep = NULL;
            return AL_ENOMEM;
        }
        memcpy(d->kept_rows, kept, (size_t)t->n_kept * sizeof *kept);
        d->n_kept_rows = t->n_kept;
    }
    return AL_OK;
}

/* 5. Token statistics over the kept rows, before truncation (null when the
 * rows were not tokenized); lens is scratch of n_rows entries. */
static json_t *token_stats(const reader *d, const int *kept, int n_kept, int tokenized, int *lens) {
    int nl = 0;
    for (int i = 0; i < n_kept; i++)
        if (d->rows[kept[i]].tokens >= 0) lens[nl++] = d->rows[kept[i]].tokens;
    if (!tokenized || !nl) return json_null();
    qsort(lens, (size_t)nl, sizeof *lens, cmp_int);
    double sum = 0;
    for (int i = 0; i < nl; i++) sum += lens[i];
    int p95 = lens[(int)ceil(0.95 * nl) - 1];
    return json_pack("{s:i,s:f,s:i,s:i}", "min", lens[0], "mean", sum / nl, "max", lens[nl - 1], "p95", p95);
}

/* 6. Truncation and drops at max_length. */
static void apply_lengths(reader *d, const int *kept, al_batch_kind kind, json_t *warnings, json_t *wcounts,
                          tally *t) {
    for (int i = 0; i < t->n_kept; i++) {
        row_rec *r = &d->rows[kept[i]];
        apply_length(d, r, kind);
        if (r->dropped) {
            t->dropped++;
            add_warning(warnings, wcounts, r->line, "dropped",
                        kind == AL_BATCH_PROMPT
                            ? "line %d: the prompt (%d tokens) is longer than max_prompt_length"
                            : "line %d: truncating to max_length would leave no trained token "
                              "(%d tokens)",
                        r->line, r->tokens);
        } else if (r->truncated) {
            t->truncated++;
            add_warning(warnings, wcounts, r->line, "truncated", "line %d: %d tokens cut to max_length %d",
                        r->line, r->tokens, d->o.max_length);
        }
    }
}

/* 7. The kept rows' examples move into ds, in row order. KTO on pairs
 * (unpair): TRL's unpair_preference_dataset maps batches of 1,000 rows
 * (datasets' default) to their chosen completions, then their rejected
 * ones; KTOTrainer keeps that order (its KL pairs and batches follow it). */
static int move_examples(reader *d, al_dataset *ds, const int *kept, int n_kept, int unpair) {
    int n_ex = 0;
    for (int i = 0; i < d->n_ex; i++) n_ex += d->ex[i].seq[0].ids != NULL;
    ds->ex = calloc((size_t)n_ex + 1, sizeof *ds->ex);
    if (!ds->ex) return AL_ENOMEM;
    for (int b0 = 0; b0 < n_kept; b0 += unpair ? UNPAIR_BATCH : n_kept) {
        int b1 = unpair && b0 + UNPAIR_BATCH < n_kept ? b0 + UNPAIR_BATCH : n_kept;
        for (int pass = 0; pass < (unpair ? 2 : 1); pass++)
            for (int i = b0; i < b1; i++) {
                row_rec *r = &d->rows[kept[i]];
                for (int j = r->ex0; j < r->ex0 + r->nex; j++)
                    if (d->ex[j].seq[0].ids && (!unpair || (d->ex[j].label > 0.5f) == !pass)) {
                        ds->ex[ds->n_ex++] = d->ex[j];
                        memset(&d->ex[j], 0, sizeof d->ex[j]);
                    }
            }
    }
    return AL_OK;
}

/* 8. The report's fields (rep takes errors, warnings, counts, wcounts,
 * tokens, hyg_rep and mix); a dataset with nothing to train on gets its
 * fatal reason here. */
static void fill_report(const reader *d, al_dataset *ds, json_t *rep, const tally *t, json_t *errors,
                        json_t *warnings, json_t *counts, json_t *wcounts, json_t *tokens, json_t *hyg_rep,
                        json_t *mix) {
    static const char *const KIND_NAMES[] = {"", "lm", "pair", "unpaired", "prompt"};
    int trainable = !ds->fatal[0] && (d->chat ? ds->n_ex > 0 : t->valid > 0);
    if (!ds->fatal[0] && !trainable)
        snprintf(ds->fatal, sizeof ds->fatal,
                 "no trainable rows: %d of %d rows are bad, %d dropped at max_length %d%s",
                 ds->n_errors, d->n_rows, t->dropped, d->o.max_length,
                 t->dedup ? ", and duplicates were removed" : "");
    json_object_set_new(rep, "format", json_string(al_data_format_name(ds->format)));
    json_object_set_new(rep, "file_format", json_string(d->file_format ? d->file_format : "jsonl"));
    json_object_set_new(rep, "style", json_string(t->conv == 0 ? "standard"
                                                  : t->conv == t->n_kept ? "conversational"
                                                                         : "mixed"));
    json_object_set_new(rep, "method", d->m ? json_string(d->m->name) : json_null());
    json_object_set_new(rep, "kind", json_string(KIND_NAMES[ds->kind]));
    json_object_set_new(rep, "rows", jint(d->n_rows));
    json_object_set_new(rep, "valid_rows", jint(t->valid));
    json_object_set_new(rep, "examples", jint(ds->n_ex));
    json_object_set_new(rep, "errors", errors);
    json_object_set_new(rep, "error_counts", counts);
    json_object_set_new(rep, "duplicates", jint(t->dups));
    json_object_set_new(rep, "deduplicated", jint(t->dedup));
    json_object_set_new(rep, "empty_targets", jint(t->empty));
    json_object_set_new(rep, "tokens", tokens);
    json_object_set_new(rep, "max_length", d->o.max_length > 0 ? jint(d->o.max_length) : json_null());
    json_object_set_new(rep, "truncated", jint(t->truncated));
    json_object_set_new(rep, "dropped", jint(t->dropped));
    json_object_set_new(rep, "warnings", warnings);
    json_object_set_new(rep, "warning_counts", wcounts);
    json_object_set_new(rep, "errors_omitted", jint(t->n_err - (long long)json_array_size(errors)));
    json_object_set_new(rep, "warnings_omitted", jint(t->dups + t->truncated + t->dropped + t->hyg_dropped -
                                                      (long long)json_array_size(warnings)));
    if (hyg_rep) json_object_set_new(rep, "hygiene", hyg_rep);
    if (d->o.dataset_info) json_object_set_new(rep, "dataset_info", al_dataset_info_json(d->o.dataset_info));
    json_object_set_new(rep, "mix", mix);
    json_object_set_new(rep, "trainable", json_boolean(trainable));
    if (ds->fatal[0]) json_object_set_new(rep, "fatal", json_string(ds->fatal));
}

static int finish(reader *d, al_dataset **out, char err[AL_ERRLEN]) {
    int rc;
    char ambiguous[AL_ERRLEN];
    al_data_format F = decide_format(d, ambiguous);
    if (F != AL_FMT_UNKNOWN && (rc = rejudge_rows(d, F)) != AL_OK) return al_err(err, rc, "out of memory");
    al_batch_kind kind = F == AL_FMT_UNKNOWN ? AL_BATCH_LM : (al_batch_kind)kind_of(d, F);

    al_dataset *ds = calloc(1, sizeof *ds);
    json_t *rep = json_object(), *errors = json_array(), *warnings = json_array(),
           *counts = json_object(), *wcounts = json_object();
    int *kept = malloc(((size_t)d->n_rows + 1) * sizeof *kept);
    int *lens = malloc(((size_t)d->n_rows + 1) * sizeof *lens);
    if (!ds || !rep || !errors || !warnings || !counts || !wcounts || !kept || !lens) {
        rc = AL_ENOMEM;
        goto fail;
    }
    ds->kind = kind;
    ds->format = F;
    file_verdict(d, ds, F, ambiguous, errors, counts);
    tally t = {0};
    json_t *hyg_rep = NULL;
    if ((rc = sort_rows(d, errors, warnings, counts, wcounts, kept, &t)) != AL_OK ||
        (rc = keep_clean(d, kept, warnings, wcounts, &t, &hyg_rep)) != AL_OK)
        goto fail;
    ds->rows = d->n_rows;
    ds->valid_rows = t.valid;
    ds->n_errors = t.n_err;
    ds->conversational = t.conv * 2 > t.n_kept;

    int tokenized = d->chat && takes(d, F);
    json_t *tokens = token_stats(d, kept, t.n_kept, tokenized, lens);
    if (tokenized) apply_lengths(d, kept, kind, warnings, wcounts, &t);
    json_t *mix = NULL;
    int unpair = kind == AL_BATCH_UNPAIRED && F == AL_FMT_PREFERENCE;
    if ((rc = move_examples(d, ds, kept, t.n_kept, unpair)) == AL_OK &&
        !(mix = build_mix(d, kept, t.n_kept, tokenized)))
        rc = AL_ENOMEM;
    if (rc != AL_OK) {
        json_decref(tokens);
        json_decref(hyg_rep);
        goto fail;
    }
    fill_report(d, ds, rep, &t, errors, warnings, counts, wcounts, tokens, hyg_rep, mix);
    ds->report = rep;
    free(kept);
    free(lens);
    *out = ds;
    return AL_OK;
fail:
    if (ds) {
        ds->report = NULL;
        al_dataset_free(ds);
    }
    json_decref(rep);
    json_decref(errors);
    json_decref(warnings);
    json_decref(counts);
    json_decref(wcounts);
    free(kept);
    free(lens);
    return al_err(err, rc, "out of memory building the dataset report");
}

static void reader_deinit(reader *d) {
    for (int i = 0; i < d->n_rows; i++) {
        row_rec *r = &d->rows[i];
        free(r->field);
        free(r->msg);
        free(r->canon);
        free(r->group);
        free(r->bands);
    }
    al_hygiene_free(d->hyg);
    free(d->kept_rows);
    free(d->rows);
    for (int i = 0; i < d->n_ex; i++) al_example_deinit(&d->ex[i]);
    free(d->ex);
    for (int i = 0; i < d->n_cols; i++) free(d->cols[i]);
    free(d->cols);
}

static int reader_init(reader *d, const al_chat *chat, const al_data_opts *opts,
                       char err[AL_ERRLEN]) {
    memset(d, 0, sizeof *d);
    d->chat = chat;
    if (opts) d->o = *opts;
    if (d->o.max_length < 0 || d->o.max_prompt_length < 0)
        return al_err(err, AL_EINVAL, "max_length must not be negative");
    if (d->o.method && d->o.method[0]) {
        for (int i = 0; i < N_METHODS; i++)
            if (strcmp(METHODS[i].name, d->o.method) == 0) d->m = &METHODS[i];
        if (!d->m)
            return al_err(err, AL_EINVAL,
                          "unknown method \"%s\" (sft, pretrain, dpo, kto, reward_model, rl)",
                          d->o.method);
    }
    if (al_hygiene_any(d->o.hygiene)) {
        json_t *texts = NULL;
        int rc = AL_OK;
        if (d->o.hygiene->decon_file[0]) rc = eval_texts(d->o.hygiene->decon_file, &texts, err);
        if (!rc) rc = al_hygiene_new(&d->hyg, d->o.hygiene, texts, err);
        json_decref(texts);
        if (rc) return rc;
    }
    return AL_OK;
}

/* Every row of a file, whatever its format, through first_look. */
static int read_any(reader *d, const char *buf, size_t len) {
    int rc = AL_OK;
    d->buf = buf;
    size_t pos = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) pos = 3;   /* UTF-8 BOM */
    size_t first = skip_ws(buf, len, pos);
    line_at la = {buf, pos, 1};
    if (first < len && buf[first] == '[') {
        d->file_format = "json";
        rc = read_array(d, buf, len, first, &la);
    } else if (first < len && buf[first] != '{' &&
               (rc = sniff_csv(d, buf, len, first, line_of(&la, first))) == AL_OK && d->cols) {
        /* records from the end of the header on */
        if (!d->file_fatal[0])
            rc = al_csv_each(buf, len, d->body, line_of(&la, d->body), d->delim, csv_row, d);
    } else if (rc == AL_OK) {
        d->file_format = "jsonl";
        rc = read_lines(d, buf, len, pos);
    }
    return rc;
}

/* The texts of an evaluation file's rows (hygiene.h), for decontamination. */
static int eval_texts(const char *path, json_t **out, char err[AL_ERRLEN]) {
    char *buf = NULL;
    size_t len = 0;
    char e2[AL_ERRLEN];
    int rc = al_file_read(path, (size_t)8 << 30, &buf, &len, e2);
    if (rc) return al_err(err, rc, "hygiene.decontaminate.file: %s", e2);
    reader d;
    memset(&d, 0, sizeof d);
    d.o.filename = path;
    if (!(d.collect = json_array())) rc = AL_ENOMEM;
    if (!rc) rc = read_any(&d, buf, len);
    free(buf);
    if (!rc) {
        *out = d.collect;
        d.collect = NULL;
    }
    json_decref(d.collect);
    reader_deinit(&d);
    return rc ? al_err(err, rc, "hygiene.decontaminate.file: out of memory") : AL_OK;
}

int al_dataset_read_mem(const char *buf, size_t len, const al_chat *chat,
                        const al_data_opts *opts, al_dataset **out, char err[AL_ERRLEN]) {
    reader d;
    int rc = reader_init(&d, chat, opts, err);
    if (rc != AL_OK) return rc;
    if ((rc = read_any(&d, buf, len)) != AL_OK) {
        reader_deinit(&d);
        return al_err(err, rc, "out of memory reading the file");
    }
    rc = finish(&d, out, err);
    reader_deinit(&d);
    return rc;
}

int al_dataset_clean_file(const char *in_path, const char *in_field, const char *out_path,
                          const al_data_opts *opts, json_t **report, int *kept, al_error *e) {
    char *buf = NULL, *err = e->msg;
    size_t len = 0;
    int rc = al_file_read(in_path, opts && opts->max_bytes ? opts->max_bytes : ((size_t)8 << 30), &buf, &len, err);
    if (rc) return al_fail_as(e, rc, in_field, err);
    al_data_opts o = {0};
    if (opts) o = *opts;
    if (!o.filename) o.filename = in_path;
    o.dedupe = 1;   /* exact duplicates go too */
    reader d;
    al_dataset *ds = NULL;
    if ((rc = reader_init(&d, NULL, &o, err)) != AL_OK) {
        free(buf);
        return al_fail_as(e, rc, in_field, err);
    }
    d.kept_only = 1;
    if ((rc = read_any(&d, buf, len)) != AL_OK) rc = al_err(err, rc, "out of memory reading the file");
    if (!rc) rc = finish(&d, &ds, err);
    if (!rc && ds->fatal[0]) rc = al_err(err, AL_EFORMAT, "%s: %s", in_field, ds->fatal);
    /* the reading's failures (memory's aside) are the input's, blamed on
     * in_field; the writing's on no field */
    const char *field = rc && rc != AL_ENOMEM ? in_field : "";
    al_buf b = {0};
    for (int i = 0; !rc && i < d.n_kept_rows; i++) {
        json_t *row = reload(&d, &d.rows[d.kept_rows[i]]);
        char *line = row ? json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) : NULL;
        json_decref(row);
        if (!line) rc = al_err(err, AL_ENOMEM, "out of memory writing the rows");
        else {
            al_buf_puts(&b, line);
            al_buf_putc(&b, '\n');
            free(line);
        }
    }
    if (!rc && b.oom) rc = al_err(err, AL_ENOMEM, "out of memory writing the rows");
    if (!rc) rc = al_file_write_atomic(out_path, al_buf_str(&b), b.n, err);
    al_buf_deinit(&b);
    if (!rc) {
        *report = json_incref((json_t *)al_dataset_report(ds));
        *kept = d.n_kept_rows;
    }
    al_dataset_free(ds);
    reader_deinit(&d);
    free(buf);
    return rc ? al_fail_as(e, rc, field, err) : AL_OK;
}

/* JSONL: one row per non-blank line. */
static int read_lines(reader *d, const char *buf, size_t len, size_t pos) {
    int line = 0, rc;
    while (pos < len) {
        line++;
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        size_t next = pos + n + (nl ? 1 : 0);
        size_t m = n;
        if (m && s[m - 1] == '\r') m--;
        if (!blank(s, m) && (rc = feed_line(d, s, m, line, pos)) != AL_OK) return rc;
        pos = next;
    }
    return AL_OK;
}

int al_dataset_read_file(const char *path, const al_chat *chat, const al_data_opts *opts,
                         al_dataset **out, char err[AL_ERRLEN]) {
    size_t max = opts && opts->max_bytes ? opts->max_bytes : ((size_t)8 << 30);
    char *buf = NULL;
    size_t len = 0;
    int rc = al_file_read(path, max, &buf, &len, err);
    if (rc != AL_OK) return rc;
    al_data_opts o = {0};
    if (opts) o = *opts;
    if (!o.filename) o.filename = path;   /* a .csv or .tsv name settles the delimiter */
    rc = al_dataset_read_mem(buf, len, chat, &o, out, err);
    free(buf);
    return rc;
}

int al_dataset_from_rows(const json_t *rows, const al_chat *chat, const al_data_opts *opts,
                         al_dataset **out, char err[AL_ERRLEN]) {
    if (!json_is_array(rows)) return al_err(err, AL_EINVAL, "rows must be a JSON list");
    reader d;
    int rc = reader_init(&d, chat, opts, err);
    if (rc != AL_OK) return rc;
    d.arr = rows;
    for (size_t i = 0; i < json_array_size(rows); i++) {
        row_rec *r = new_row(&d, (int)i + 1);
        if (!r) {
            rc = AL_ENOMEM;
            break;
        }
        r->off = i;
        if ((rc = first_look(&d, r, json_array_get(rows, i))) != AL_OK) break;
    }
    if (rc != AL_OK) {
        reader_deinit(&d);
        return al_err(err, rc, "out of memory");
    }
    rc = finish(&d, out, err);
    reader_deinit(&d);
    return rc;
}

void al_dataset_free(al_dataset *d) {
    if (!d) return;
    for (int i = 0; i < d->n_ex; i++) al_example_deinit(&d->ex[i]);
    free(d->ex);
    json_decref(d->report);
    free(d);
}

const json_t *al_dataset_report(const al_dataset *d) { return d->report; }

int al_dataset_check(const al_dataset *d, int strict, char err[AL_ERRLEN]) {
    if (d->fatal[0]) return al_err(err, AL_EFORMAT, "%s", d->fatal);
    if (strict && d->n_errors) {
        const json_t *e = json_array_get(json_object_get(d->report, "errors"), 0);
        return al_err(err, AL_EFORMAT, "%d bad rows; first: %s", d->n_errors,
                      json_string_value(json_object_get(e, "message")));
    }
    return AL_OK;
}

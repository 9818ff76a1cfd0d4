/* Datasets: a file of rows -> validated, tokenized examples and a report.
 *
 * Files: JSONL (one object per line), a JSON array of objects (one file,
 * pretty-printed or not; a row's "line" is the line its object starts on),
 * and CSV or TSV with a header row (RFC 4180 quoting, lib/text/csv.h; the
 * columns are the row's keys, every value a string, except "label"
 * (true/false/1/0 -> a boolean) and the list-valued columns messages,
 * conversations, history, tools, responses, ranking and ratings, which are
 * read as JSON when they parse as it). Which one a file is comes from its
 * content: '[' first is a JSON array, '{' first is JSONL, otherwise the
 * first line must be a header naming a format's columns when split at
 * commas or at tabs (both -> refused as ambiguous; al_data_opts.filename's
 * .csv/.tsv extension settles it). The report's "file_format" says which.
 *
 * Every row format people bring is recognised, standard (strings) and
 * conversational (message lists, as TRL's conversational formats):
 *
 *   text               {"text"}                                    LM
 *   messages           {"messages": [{role, content, weight?,
 *                       tool_calls?, tool_call_id?}], "tools"?}    LM
 *                      content: a string or OpenAI's content parts
 *                      [{"type": "text", "text": ...}] (joined, as the
 *                      chat API joins them; any other part type is
 *                      refused: unsupported_content_part); tool_calls'
 *                      JSON-string arguments are parsed into objects for
 *                      the template (Llama 3.1 and Qwen2.5 render them
 *                      with tojson, as vLLM hands them over)
 *   alpaca             {"instruction", "input"?, "output", "system"?,
 *                       "history"?: [[query, response], ...],
 *                       "tools"?}                                  LM
 *                      as LLaMA-Factory's alpaca converter: history pairs
 *                      become earlier user/assistant turns (trained, as
 *                      LLaMA-Factory trains them), the user turn is
 *                      instruction + "\n" + input (either alone when the
 *                      other is empty), system a first system message
 *   sharegpt           {"conversations": [{"from", "value"}], "system"?,
 *                       "tools"?}                                  LM
 *                      as LLaMA-Factory's sharegpt converter: from is
 *                      human, gpt, system (first turn only),
 *                      function_call (the assistant calling a tool: value
 *                      is the JSON of {"name", "arguments"} or a list of
 *                      them -> tool_calls) or observation (the tool's
 *                      answer -> role "tool"); turns alternate
 *                      human/observation then gpt/function_call and end
 *                      with the assistant. Also accepted, as LLaMA-Factory
 *                      accepts with its tags: role/content keys instead of
 *                      from/value, user/assistant instead of human/gpt, and
 *                      the list under "messages" when its turns use
 *                      from/value. tools may be a JSON string of the list.
 *   prompt_completion  {"prompt", "completion"}                    LM
 *   preference         {"prompt", "chosen", "rejected"}            PAIR
 *                      {"chosen", "rejected"} (implicit shared prompt)
 *                      {"instruction", "input"?, "system"?, "history"?,
 *                       "chosen", "rejected"} (LLaMA-Factory's alpaca pairs)
 *                      {"conversations": [...], "chosen": {"from", "value"},
 *                       "rejected": {...}} (LLaMA-Factory's sharegpt pairs)
 *                      {"input": {"messages", "tools"?}, "preferred_output",
 *                       "non_preferred_output"} (OpenAI's DPO format)
 *   unpaired           {"prompt", "completion", "label": bool}     UNPAIRED (KTO)
 *   prompt_only        {"prompt", "reference"? | "answer"? |
 *                       "solution"? | "ground_truth"?}             PROMPT (RL)
 *                      (the reference may be a list of accepted answers;
 *                      the example keeps its row for the graders' "grader"
 *                      column and external verifiers)
 *   rankings           {"prompt", "responses": [k], "ranking": [k]}: ranking
 *                      lists response indices best first; expanded into all
 *                      k(k-1)/2 ordered pairs, as InstructGPT's reward model
 *   ratings            {"prompt", "responses": [k], "ratings": [k] in 1..5}:
 *                      the best response against each lower-rated one, the
 *                      rating gap as the pair's margin
 *
 * The file's format is the one most rows have; each row is then validated
 * against it, so a row missing a field is reported as missing_field rather
 * than misread as another format. Extra columns are ignored. A file whose
 * format cannot be told apart is refused, never guessed: when the rows'
 * keys fit two formats at once (alpaca's instruction/output beside a
 * "text" column, "text" beside prompt/completion, ...) and the method does
 * not settle it, or when two formats have the same number of rows, the
 * report's fatal error (code ambiguous_format, line 0) names the
 * candidates.
 *
 * Errors carry a line number, a code in the spirit of OpenAI's fine-tuning
 * data checker and a message naming the line and the field: invalid_json,
 * data_type, unrecognized_format, missing_field, invalid_field_type,
 * missing_messages_list, message_missing_key, message_unrecognized_key,
 * unrecognized_role, missing_content, unsupported_content_part,
 * invalid_tool_call, invalid_turn_order (sharegpt turns out of order),
 * invalid_csv (malformed quoting, or a record whose field count differs
 * from the header's), example_missing_assistant_message,
 * invalid_weight, invalid_label, invalid_ranking, invalid_rating,
 * identical_responses, empty_target (empty or whitespace-only target, or
 * every assistant message weighted 0), template_error (the chat template or
 * tokenizer rejected the row), unsupported_format (line 0: the file's
 * format cannot train the method) and ambiguous_format (line 0).
 *
 * Nothing is dropped or cut silently. The report counts duplicates (rows
 * equal after collapsing whitespace runs and trimming every string, ignoring
 * tags such as id, source, task; dropped only with dedupe), rows truncated
 * to max_length (the end is cut) and rows dropped because truncation would
 * leave no trained token, and lists each of them under "warnings":
 *
 *   {"format":"preference","file_format":"jsonl"|"json"|"csv"|"tsv",
 *    "style":"standard","method":"dpo","kind":"pair",
 *    "rows":N,"valid_rows":N,"examples":N,
 *    "errors":[{"line":7,"code":"invalid_json","field":"","message":"..."}],
 *    "error_counts":{"invalid_json":1},
 *    "duplicates":N,"deduplicated":N,"empty_targets":N,
 *    "tokens":{"min":..,"mean":..,"max":..,"p95":..} | null,
 *    "max_length":M | null,"truncated":N,"dropped":N,
 *    "warnings":[{"line":9,"code":"duplicate"|"truncated"|"dropped","message":".."}],
 *    "warning_counts":{"duplicate":N,...},"errors_omitted":N,"warnings_omitted":N,
 *    "hygiene":{"rows_in":N,"rows_out":N,"dropped":N,
 *               "near_duplicates":{"dropped","threshold","ngram","num_perm","bands"},
 *               "decontamination":{"dropped","file","ngram","rule","eval_rows",
 *                                  "eval_rows_too_short","eval_ngrams"},
 *               "length":{"too_short","too_long","min_words","max_words"},
 *               "language":{"dropped","undetermined","languages","detected":{..}}}
 *               (only the filters that are on; the key only with hygiene),
 *    "mix":{"by":"task"|"category"|"source"|"structure",
 *           "groups":{name:{"rows":n,"share":f,"tokens_mean":x,"tokens_max":y}},
 *           "structure":{...},"labels":{"desirable":n,"undesirable":n},
 *           "lengths":{"1-64":n,...}},
 *    "trainable":true,"fatal":"..."}
 *
 * Token lengths count the sequence as trained (BOS, template, EOS); for
 * pairs, the longer of chosen and rejected. Reading is one pass over the
 * rows (plus a re-read of the rare rows whose own format differs from the
 * file's), O(rows log rows) overall. Not thread-safe per dataset; separate
 * datasets may be read concurrently with one shared al_chat. */
#ifndef AL_DATASET_H
#define AL_DATASET_H

/* The report lists at most this many errors and this many warnings (the
 * first, in line order); error_counts and warning_counts count every one by
 * code and errors_omitted / warnings_omitted say how many were left out, so
 * a file of millions of bad lines gets a report of a few tens of kB. */
#define AL_REPORT_MAX_ITEMS 100

#include <jansson.h>

#include "../al.h"
#include "batch.h"
#include "chat.h"
#include "hygiene.h"

typedef enum al_data_format {
    AL_FMT_UNKNOWN = 0,
    AL_FMT_TEXT,
    AL_FMT_MESSAGES,
    AL_FMT_PROMPT_COMPLETION,
    AL_FMT_PREFERENCE,
    AL_FMT_UNPAIRED,
    AL_FMT_PROMPT_ONLY,
    AL_FMT_RANKINGS,
    AL_FMT_RATINGS,
    AL_FMT_ALPACA,
    AL_FMT_SHAREGPT,
    AL_FMT_COUNT
} al_data_format;

/* "text", "messages", "prompt_completion", "preference",
 * "unpaired_preference", "prompt_only", "rankings", "ratings", "alpaca",
 * "sharegpt", "unknown". */
const char *al_data_format_name(al_data_format f);

/* A file's own format and column names: LLaMA-Factory's dataset_info.json
 * entry (data/README.md there; src/llamafactory/data/parser.py reads it):
 *
 *   {"formatting": "alpaca" (the default) | "sharegpt", "ranking": false,
 *    "columns": {alpaca: "prompt" (default "instruction"), "query" ("input"),
 *                "response" ("output"), "history", "system", "tools";
 *                sharegpt: "messages" ("conversations"), "system", "tools";
 *                with "ranking": true both: "chosen", "rejected"},
 *    "tags": {sharegpt only: "role_tag", "content_tag", "user_tag",
 *             "assistant_tag", "observation_tag", "function_tag",
 *             "system_tag"}}
 *
 * ("file_name" is ignored). "ranking": true makes the rows preference pairs
 * (an alpaca or sharegpt prompt with chosen and rejected answers); without
 * it the rows are alpaca or sharegpt rows (SFT, RL prompts) and naming
 * chosen/rejected is refused, as is naming response with it. A column left
 * unnamed is read under its default name (LLaMA-Factory leaves it unread;
 * alignd reads it as it reads the file without an entry, so an entry naming
 * nothing reads what no entry reads). As LLaMA-Factory reads it, a "tags"
 * object names the only turn tags accepted (one it leaves out: no such
 * turns); role_tag and content_tag default to "from" and "value". kto_tag
 * (LLaMA-Factory's labelled rows for KTO) and the image/video/audio columns
 * are refused by name: alignd's KTO reads prompt/completion/label rows and
 * preference pairs. With an entry its columns decide the rows' format: a
 * row with none of them is refused (unrecognized_format, naming them),
 * never read as another format. */
#define AL_DI_NAME 64
enum { AL_SG_USER, AL_SG_ASSISTANT, AL_SG_OBSERVATION, AL_SG_FUNCTION, AL_SG_SYSTEM, AL_SG_NTAGS };
/* The columns (AL_DI_PROMPT.. in the order of "columns"' keys). */
enum {
    AL_DI_PROMPT, AL_DI_QUERY, AL_DI_RESPONSE, AL_DI_HISTORY, AL_DI_MESSAGES, AL_DI_SYSTEM, AL_DI_TOOLS,
    AL_DI_CHOSEN, AL_DI_REJECTED, AL_DI_NCOLS
};
typedef struct al_dataset_info {
    al_data_format format;                       /* AL_FMT_ALPACA or AL_FMT_SHAREGPT */
    int ranking;                                 /* rows are chosen/rejected pairs */
    char col[AL_DI_NCOLS][AL_DI_NAME];           /* AL_DI_*; "" = not read by this format */
    char role[AL_DI_NAME], content[AL_DI_NAME];  /* sharegpt: the turn's keys */
    char tag[AL_SG_NTAGS][AL_DI_NAME];           /* sharegpt: AL_SG_*; "" = not accepted */
} al_dataset_info;

/* Reads a dataset_info entry (above); path names it in errors (err->field
 * "dataset_info.columns.prompt", err->msg "dataset_info.columns.prompt:
 * must be a non-empty string of at most 63 bytes"). AL_EINVAL. */
int al_dataset_info_parse(const json_t *v, const char *path, al_dataset_info *out, al_error *err);
/* The entry as JSON, every name resolved (new reference; NULL on ENOMEM). */
json_t *al_dataset_info_json(const al_dataset_info *c);

typedef struct al_data_opts {
    /* "sft", "pretrain", "dpo" (also "ipo", "orpo", "simpo"), "kto",
     * "reward_model" ("rm"), "rl" ("ppo", "grpo", "rloo"); NULL: the format's
     * natural use (validation). Which formats each accepts:
     *   sft: text, messages, prompt_completion   pretrain: text
     *   dpo, reward_model: preference, rankings, ratings
     *   kto: unpaired_preference, preference (each pair -> two rows: per
     *        1,000 rows their chosen, then their rejected, as TRL's
     *        unpair_preference_dataset orders them)
     *   rl: prompt_only, prompt_completion (completion = reference) */
    const char *method;
    int max_length;          /* tokens per sequence; 0 = unlimited */
    int max_prompt_length;   /* rl prompts; 0 = max_length */
    int dedupe;              /* drop exact duplicates (they are counted always) */
    size_t max_bytes;        /* largest file read; 0 = 8 GiB */
    const char *filename;    /* NULL, or the file's name: a .csv or .tsv
                              * extension settles the delimiter */
    const al_hygiene_cfg *hygiene; /* NULL, or filters applied to the valid rows
                              * (hygiene.h), after exact duplicates: each
                              * dropped row a warning (too_short, too_long,
                              * language, contaminated, near_duplicate) and
                              * the report's "hygiene" section the counts */
    const al_dataset_info *dataset_info; /* NULL, or the file's dataset_info
                              * entry (then its names are the only ones
                              * read; the report's "dataset_info" says them) */
} al_data_opts;

/* A read dataset. Members are read-only for callers; al_dataset_free
 * releases everything, examples and report included. */
typedef struct al_dataset {
    al_batch_kind kind;      /* what the examples are */
    al_data_format format;   /* the file's format */
    int conversational;      /* most rows use message lists */
    al_example *ex;          /* n_ex examples, in row order (kto on pairs: see method) */
    int n_ex;
    int rows, valid_rows, n_errors;
    json_t *report;          /* the report (owned; al_dataset_report borrows) */
    char fatal[AL_ERRLEN];   /* why nothing can train, "" otherwise */
} al_dataset;

/* How `method` tokenizes a prompt with its completion (chat.h, al_split_kind):
 * the TRL trainer it follows. AL_SPLIT_BYTES for SFT-like methods and for
 * names it does not know. */
al_split_kind al_data_split(const char *method);

/* Reads and validates a file (JSONL, JSON array, CSV, TSV). chat (borrowed, may be NULL) tokenizes: NULL
 * validates structure only (no examples, "tokens": null). opts may be NULL
 * (defaults). Bad rows do not fail the call: they are in the report, and
 * al_dataset_check turns them into an error where the caller wants one.
 * Returns AL_OK (with *out), AL_ENOENT, AL_EIO, AL_ERANGE (file larger than
 * max_bytes), AL_EINVAL (unknown method), AL_ENOMEM. */
int al_dataset_read_file(const char *path, const al_chat *chat, const al_data_opts *opts,
                         al_dataset **out, char err[AL_ERRLEN]);
/* The same over len bytes in memory (borrowed). */
int al_dataset_read_mem(const char *buf, size_t len, const al_chat *chat,
                        const al_data_opts *opts, al_dataset **out, char err[AL_ERRLEN]);
/* The same over a JSON array of row objects (borrowed); row i is "line" i+1. */
int al_dataset_from_rows(const json_t *rows, const al_chat *chat, const al_data_opts *opts,
                         al_dataset **out, char err[AL_ERRLEN]);
void al_dataset_free(al_dataset *d);

/* The data hygiene file job: reads in_path (any file format) with the
 * hygiene filters (opts->hygiene; opts->method may be NULL), and writes the
 * valid rows that survive (bad rows, exact duplicates and every filter's
 * drops left out) to out_path as JSONL, atomically, each row as its JSON
 * object (CSV records as their row objects). *report (a new reference) is
 * the reading's report, its "hygiene" section included; *kept the rows
 * written. AL_OK, the reader's codes, AL_EFORMAT (the file cannot train:
 * ambiguous, no rows: the message starts with in_field), AL_EIO; err's
 * field is in_field (the caller's name for the input, "training_file") when
 * the input cannot be read or used, "" when the writing or memory fails. */
int al_dataset_clean_file(const char *in_path, const char *in_field, const char *out_path,
                          const al_data_opts *opts, json_t **report, int *kept, al_error *err);

/* The report (borrowed; valid until al_dataset_free). */
const json_t *al_dataset_report(const al_dataset *d);

/* Whether the dataset can train: AL_EFORMAT with a one-line reason when the
 * format does not fit the method, when no example survived, or (strict) when
 * any row was bad; AL_OK otherwise. */
int al_dataset_check(const al_dataset *d, int strict, char err[AL_ERRLEN]);

#endif

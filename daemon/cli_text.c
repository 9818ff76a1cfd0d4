/* Text subcommands: tokenize, template, validate. Each reads stdin line by
 * line (or a data file) and writes one JSON value per line; a bad line is
 * answered on stderr with its number and the command goes on, exiting 1 at
 * the end if any line failed. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "io.h"
#include "text/chat.h"
#include "text/dataset.h"
#include "text/jinja/jinja.h"
#include "text/tokenizer.h"

/* Reads one line of any length from f into *buf (getline's buffer);
 * strips the newline. Returns its length, or -1 at end of input. */
static long read_line(FILE *f, char **buf, size_t *cap) {
    ssize_t n = getline(buf, cap, f);
    if (n < 0) return -1;
    if (n && (*buf)[n - 1] == '\n') n--;
    if (n && (*buf)[n - 1] == '\r') n--;
    (*buf)[n] = 0;
    return (long)n;
}

static void print_ids(const int32_t *ids, int n) {
    putchar('[');
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
    puts("]");
}

/* A JSON message list from a line, or NULL with the reason on stderr. */
static json_t *parse_messages(const char *line, size_t len, long lineno) {
    json_error_t je;
    json_t *m = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_array(m)) {
        fprintf(stderr, "alignd: line %ld: %s\n", lineno,
                m ? "expected a JSON list of messages" : je.text);
        json_decref(m);
        return NULL;
    }
    return m;
}

int cli_tokenize(int argc, char **argv) {
    cli_flag f[] = {{"--model", 0, 0}, {"--jsonl", 0, 1}, {"--chat", 0, 1}, {"--no-special", 0, 1}};
    if (cli_parse(argc, argv, f, 4)) return 2;
    if (!f[0].value) {
        fprintf(stderr, "alignd: tokenize: --model DIR is required\n");
        return 2;
    }
    char err[AL_ERRLEN] = "";
    al_tok *tok = NULL;
    al_chat *chat = NULL;
    if (al_tok_load(&tok, f[0].value, err) || al_chat_new(&chat, tok, NULL, err)) {
        fprintf(stderr, "alignd: %s\n", err);
        al_tok_free(tok);
        return 1;
    }
    int special = !f[3].value, bad = 0;
    char *line = NULL;
    size_t cap = 0;
    long len, lineno = 0;
    while ((len = read_line(stdin, &line, &cap)) >= 0) {
        lineno++;
        char *text = NULL;
        size_t tlen = 0;
        int rc = AL_OK;
        if (f[2].value) {
            json_t *m = parse_messages(line, (size_t)len, lineno);
            if (!m) {
                bad = 1;
                continue;
            }
            rc = al_chat_render(chat, m, NULL, 0, &text, &tlen, NULL, NULL, err);
            json_decref(m);
        } else if (f[1].value) {
            json_error_t je;
            json_t *s = json_loadb(line, (size_t)len, JSON_DECODE_ANY, &je);
            if (!json_is_string(s)) {
                fprintf(stderr, "alignd: line %ld: expected a JSON string\n", lineno);
                json_decref(s);
                bad = 1;
                continue;
            }
            tlen = json_string_length(s);
            text = malloc(tlen + 1);
            if (text) memcpy(text, json_string_value(s), tlen + 1);
            else rc = AL_ENOMEM;
            json_decref(s);
        } else {
            text = strdup(line);
            tlen = (size_t)len;
            if (!text) rc = AL_ENOMEM;
        }
        int32_t *ids = NULL;
        int n = 0;
        if (!rc) rc = al_tok_encode(tok, text, tlen, special, 1, &ids, &n, NULL, NULL, err);
        if (rc) {
            fprintf(stderr, "alignd: line %ld: %s\n", lineno, err[0] ? err : al_strerror(rc));
            bad = 1;
        } else {
            print_ids(ids, n);
        }
        free(ids);
        free(text);
    }
    free(line);
    al_chat_free(chat);
    al_tok_free(tok);
    return bad;
}

int cli_template(int argc, char **argv) {
    cli_flag f[] = {{"--model", 0, 0}, {"--template", 0, 0}, {"--add-generation-prompt", 0, 1}};
    if (cli_parse(argc, argv, f, 3)) return 2;
    if (!f[0].value == !f[1].value) {
        fprintf(stderr, "alignd: template: give --model DIR or --template FILE.jinja\n");
        return 2;
    }
    char err[AL_ERRLEN] = "";
    al_tok *tok = NULL;
    al_jinja *tpl = NULL;
    const char *bos = "", *eos = "";
    if (f[0].value) {
        if (al_tok_load(&tok, f[0].value, err)) {
            fprintf(stderr, "alignd: %s\n", err);
            return 1;
        }
        const char *src = al_tok_chat_template(tok);
        if (!src) {
            fprintf(stderr, "alignd: template: %s has no chat_template\n", f[0].value);
            al_tok_free(tok);
            return 1;
        }
        if (al_jinja_parse(&tpl, src, strlen(src), err)) {
            fprintf(stderr, "alignd: chat_template: %s\n", err);
            al_tok_free(tok);
            return 1;
        }
        bos = al_tok_bos_str(tok);
        eos = al_tok_eos_str(tok);
    } else {
        char *src = NULL;
        size_t n = 0;
        /* a template larger than this is not a chat template */
        int rc = al_file_read(f[1].value, 16u << 20, &src, &n, err);
        if (rc) {
            fprintf(stderr, "alignd: %s\n", err);
            return 1;
        }
        rc = al_jinja_parse(&tpl, src, n, err);
        free(src);
        if (rc) {
            fprintf(stderr, "alignd: %s: %s\n", f[1].value, err);
            return 1;
        }
    }
    int bad = 0;
    char *line = NULL;
    size_t cap = 0;
    long len, lineno = 0;
    while ((len = read_line(stdin, &line, &cap)) >= 0) {
        lineno++;
        json_t *m = parse_messages(line, (size_t)len, lineno);
        if (!m) {
            bad = 1;
            continue;
        }
        json_t *ctx = json_pack("{s:o, s:b, s:s, s:s}", "messages", m, "add_generation_prompt",
                                f[2].value != NULL, "bos_token", bos, "eos_token", eos);
        char *out = NULL;
        size_t olen;
        int rc = ctx ? al_jinja_render(tpl, ctx, &out, &olen, NULL, NULL, err) : AL_ENOMEM;
        json_decref(ctx);
        if (rc) {
            fprintf(stderr, "alignd: line %ld: %s\n", lineno, err);
            bad = 1;
            continue;
        }
        json_t *s = json_stringn(out, olen);
        char *js = s ? json_dumps(s, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
        if (js) puts(js);
        free(js);
        json_decref(s);
        free(out);
    }
    free(line);
    al_jinja_free(tpl);
    al_tok_free(tok);
    return bad;
}

int cli_validate(int argc, char **argv) {
    cli_flag f[] = {{"--model", 0, 0}, {"--data", 0, 0}, {"--max-length", 0, 0}, {"--method", 0, 0},
                    {"--dedupe", 0, 1}};
    if (cli_parse(argc, argv, f, 5)) return 2;
    if (!f[1].value) {
        fprintf(stderr, "alignd: validate: --data FILE.jsonl is required\n");
        return 2;
    }
    long max_len = 0;
    if (f[2].value && cli_int(&f[2], 1, 1 << 20, &max_len)) return 2;
    char err[AL_ERRLEN] = "";
    al_tok *tok = NULL;
    al_chat *chat = NULL;
    if (f[0].value && (al_tok_load(&tok, f[0].value, err) || al_chat_new(&chat, tok, NULL, err))) {
        fprintf(stderr, "alignd: %s\n", err);
        al_tok_free(tok);
        return 1;
    }
    al_data_opts o = {.method = f[3].value, .max_length = (int)max_len, .dedupe = f[4].value != NULL};
    al_dataset *d = NULL;
    int rc = al_dataset_read_file(f[1].value, chat, &o, &d, err);
    if (rc) {
        fprintf(stderr, "alignd: validate: %s\n", err);
    } else {
        char *s = json_dumps(al_dataset_report(d), JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s) puts(s);
        free(s);
    }
    al_dataset_free(d);
    al_chat_free(chat);
    al_tok_free(tok);
    return rc ? (rc == AL_EINVAL ? 2 : 1) : 0;
}

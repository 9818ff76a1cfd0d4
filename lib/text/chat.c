/* Chat templates and loss masks by byte offset. See chat.h for the rules:
 * one tokenization per sequence, masks from generation spans or incremental
 * rendering, BOS never doubled, EOS trained at the end of every completion. */
#include "chat.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../io.h"

struct al_chat {
    const al_tok *tok;
    al_jinja *tpl;      /* NULL: no template */
    int has_gen;
};

/* Whether src has a "{% generation %}" (or "{%- generation -%}") tag. */
static int has_generation_tag(const char *src) {
    for (const char *p = strstr(src, "{%"); p; p = strstr(p + 2, "{%")) {
        const char *q = p + 2;
        if (*q == '-' || *q == '+') q++;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (strncmp(q, "generation", 10) == 0) {
            char c = q[10];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '-' || c == '%')
                return 1;
        }
    }
    return 0;
}

int al_chat_new(al_chat **out, const al_tok *tok, const char *template_src,
                char err[AL_ERRLEN]) {
    if (!tok) return al_err(err, AL_EINVAL, "chat needs a tokenizer");
    al_chat *c = calloc(1, sizeof *c);
    if (!c) return al_err(err, AL_ENOMEM, "out of memory");
    c->tok = tok;
    const char *src = template_src ? template_src : al_tok_chat_template(tok);
    if (src) {
        char e[AL_ERRLEN] = "";
        int rc = al_jinja_parse(&c->tpl, src, strlen(src), e);
        if (rc != AL_OK) {
            free(c);
            return al_err(err, rc, "chat template: %s", e);
        }
        c->has_gen = has_generation_tag(src);
    }
    *out = c;
    return AL_OK;
}

void al_chat_free(al_chat *c) {
    if (!c) return;
    al_jinja_free(c->tpl);
    free(c);
}

const al_tok *al_chat_tok(const al_chat *c) { return c->tok; }
int al_chat_has_template(const al_chat *c) { return c->tpl != NULL; }
int al_chat_has_generation(const al_chat *c) { return c->has_gen; }

int32_t al_chat_pad_id(const al_chat *c) {
    int32_t pad = al_tok_pad(c->tok), eos = al_tok_eos(c->tok), bos = al_tok_bos(c->tok);
    if (pad >= 0 && pad != eos) return pad;
    int32_t id = 0;
    while (id == eos || id == bos) id++;
    return id;
}

/* ---- where an answer ends -------------------------------------------------- */

static void add_stop(int32_t *ids, int cap, int *n, int32_t id) {
    if (id < 0 || *n >= cap) return;
    for (int i = 0; i < *n; i++)
        if (ids[i] == id) return;
    ids[(*n)++] = id;
}

/* eos_token_id of <dir>/<file> (absent file or key: nothing). */
static int config_eos(const char *dir, const char *file, int32_t *ids, int cap, int *n, char err[AL_ERRLEN]) {
    char path[4096];
    if (al_path_join(path, sizeof path, dir, file) != AL_OK) return al_err(err, AL_ERANGE, "%s: path too long", dir);
    if (!al_file_exists(path)) return AL_OK;
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return al_err(err, AL_EFORMAT, "%s: not a JSON object (line %d: %s)", file, je.line, je.text);
    }
    const json_t *v = json_object_get(o, "eos_token_id");
    int rc = AL_OK;
    size_t k, count = json_is_array(v) ? json_array_size(v) : 1;
    for (k = 0; v && !json_is_null(v) && k < count && !rc; k++) {
        const json_t *x = json_is_array(v) ? json_array_get(v, k) : v;
        json_int_t id = json_is_integer(x) ? json_integer_value(x) : -1;
        if (id < 0 || id > INT32_MAX)
            rc = json_is_array(v) ? al_err(err, AL_EFORMAT, "%s: eos_token_id[%zu]: must be a token id (an integer >= 0)", file, k)
                                  : al_err(err, AL_EFORMAT, "%s: eos_token_id: must be a token id or a list of them", file);
        else add_stop(ids, cap, n, (int32_t)id);
    }
    json_decref(o);
    return rc;
}

/* The special token right after an assistant turn's content in the
 * template's rendering of a one-turn exchange (-1 when the template renders
 * none there, or cannot render it). */
static int32_t turn_end_token(const al_chat *c) {
    static const char probe[] = "alignd-turn-probe";
    json_t *msgs = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "user", "content", "hi", "role", "assistant",
                             "content", probe);
    char *text = NULL, err[AL_ERRLEN];
    size_t len = 0;
    int32_t id = -1;
    if (msgs && al_chat_render(c, msgs, NULL, 0, &text, &len, NULL, NULL, err) == AL_OK) {
        const char *at = strstr(text, probe), *tail = NULL;
        for (const char *q = at; q; q = strstr(q + 1, probe)) tail = q + sizeof probe - 1;
        while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r')) tail++;
        int32_t *tok = NULL;
        int n = 0;
        if (tail && *tail && al_tok_encode(c->tok, tail, strlen(tail), 0, 1, &tok, &n, NULL, NULL, err) == AL_OK &&
            n > 0 && al_tok_is_special(c->tok, tok[0]))
            id = tok[0];
        free(tok);
    }
    free(text);
    json_decref(msgs);
    return id;
}

int al_chat_stop_ids(const al_chat *c, const char *model_dir, int32_t *ids, int cap, char err[AL_ERRLEN]) {
    int n = 0, rc;
    if (model_dir && ((rc = config_eos(model_dir, "generation_config.json", ids, cap, &n, err)) ||
                      (rc = config_eos(model_dir, "config.json", ids, cap, &n, err))))
        return rc;
    add_stop(ids, cap, &n, al_tok_eos(c->tok));
    if (c->tpl) add_stop(ids, cap, &n, turn_end_token(c));
    return n;
}

int al_chat_render(const al_chat *c, const json_t *messages, const json_t *tools,
                   int add_generation_prompt, char **text, size_t *len, al_span **spans,
                   int *n_spans, char err[AL_ERRLEN]) {
    if (!c->tpl) return al_err(err, AL_EUNSUP, "the tokenizer has no chat template");
    if (!json_is_array(messages)) return al_err(err, AL_EINVAL, "messages is not a list");
    json_t *ctx = json_object();
    if (!ctx) return al_err(err, AL_ENOMEM, "out of memory");
    /* json_object_set takes its own reference; the caller's objects are not
     * modified. */
    int bad = json_object_set(ctx, "messages", (json_t *)messages);
    if (tools) bad |= json_object_set(ctx, "tools", (json_t *)tools);
    bad |= json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
    bad |= json_object_set_new(ctx, "bos_token", json_string(al_tok_bos_str(c->tok)));
    bad |= json_object_set_new(ctx, "eos_token", json_string(al_tok_eos_str(c->tok)));
    int rc;
    if (bad) rc = al_err(err, AL_ENOMEM, "out of memory");
    else rc = al_jinja_render(c->tpl, ctx, text, len, spans, n_spans, err);
    json_decref(ctx);
    return rc;
}

/* ---- tokenization with a mask from byte ranges ------------------------- */

/* Encodes text once (special tokens parsed, no post-processor), prepends
 * BOS when the tokenizer adds one and the text does not already start with
 * it, and sets mask[j] = 1 for tokens overlapping one of the sorted,
 * disjoint byte ranges r[0..nr). Leaves room for one more token (EOS). */
static int encode_masked(const al_chat *c, const char *text, size_t len, const al_span *r,
                         int nr, al_seq *out, char err[AL_ERRLEN]) {
    int32_t *ids = NULL, *st = NULL, *en = NULL;
    int n = 0;
    char e[AL_ERRLEN] = "";
    int rc = al_tok_encode(c->tok, text, len, 0, 1, &ids, &n, &st, &en, e);
    if (rc != AL_OK) return al_err(err, rc, "tokenizer: %s", e);
    int32_t bos = al_tok_bos(c->tok);
    int add_bos = al_tok_adds_bos(c->tok) && bos >= 0 && !(n > 0 && ids[0] == bos);
    int m = n + add_bos;
    al_seq s = {0};
    s.ids = malloc(((size_t)m + 1) * sizeof *s.ids);
    s.mask = calloc((size_t)m + 1, 1);
    if (!s.ids || !s.mask) {
        al_seq_deinit(&s);
        rc = al_err(err, AL_ENOMEM, "out of memory");
        goto done;
    }
    if (add_bos) s.ids[0] = bos;
    int k = 0;   /* ranges before the current token are done */
    for (int j = 0; j < n; j++) {
        size_t a = (size_t)st[j], b = (size_t)en[j];
        s.ids[j + add_bos] = ids[j];
        /* ranges are sorted; empty ones train nothing */
        while (k < nr && (r[k].end <= a || r[k].start == r[k].end)) k++;
        if (k < nr && r[k].start < b && r[k].end > a) s.mask[j + add_bos] = 1;
    }
    s.n = m;
    *out = s;
done:
    free(ids);
    free(st);
    free(en);
    return rc;
}

/* Appends EOS after the last trained stretch unless that stretch already
 * holds EOS; the tokens between the stretch and the end are trained with it
 * so that the model learns to finish. out has room for one more token. */
static void ensure_eos(const al_chat *c, al_seq *s) {
    int32_t eos = al_tok_eos(c->tok);
    if (eos < 0) return;
    int last = s->n - 1;
    while (last >= 0 && !s->mask[last]) last--;
    if (last < 0) return;
    int first = last;
    while (first > 0 && s->mask[first - 1]) first--;
    for (int j = first; j <= last; j++)
        if (s->ids[j] == eos) return;
    for (int j = last + 1; j < s->n; j++) s->mask[j] = 1;
    s->ids[s->n] = eos;
    s->mask[s->n] = 1;
    s->n++;
}

int al_chat_encode_text(const al_chat *c, const char *prompt, size_t plen,
                        const char *completion, size_t clen, al_seq *out,
                        char err[AL_ERRLEN]) {
    if (clen == 0) return al_err(err, AL_EINVAL, "empty completion");
    char *text = malloc(plen + clen + 1);
    if (!text) return al_err(err, AL_ENOMEM, "out of memory");
    if (plen) memcpy(text, prompt, plen);
    memcpy(text + plen, completion, clen);
    text[plen + clen] = 0;
    al_span r = {plen, plen + clen};
    al_seq s;
    int rc = encode_masked(c, text, plen + clen, &r, 1, &s, err);
    free(text);
    if (rc != AL_OK) return rc;
    int32_t eos = al_tok_eos(c->tok);
    if (eos >= 0 && (s.n == 0 || s.ids[s.n - 1] != eos)) {
        s.ids[s.n] = eos;
        s.mask[s.n] = 1;
        s.n++;
    }
    *out = s;
    return AL_OK;
}

int al_chat_encode_prompt(const al_chat *c, const char *text, size_t len, al_seq *out,
                          char err[AL_ERRLEN]) {
    return encode_masked(c, text, len, NULL, 0, out, err);
}

int al_chat_encode_prompt_messages(const al_chat *c, const json_t *messages,
                                   const json_t *tools, al_seq *out, char err[AL_ERRLEN]) {
    char *text = NULL;
    size_t len = 0;
    int rc = al_chat_render(c, messages, tools, 1, &text, &len, NULL, NULL, err);
    if (rc != AL_OK) return rc;
    rc = encode_masked(c, text, len, NULL, 0, out, err);
    free(text);
    return rc;
}

/* ---- conversations ------------------------------------------------------ */

static int is_assistant(const json_t *m) {
    const char *role = json_string_value(json_object_get(m, "role"));
    return role && strcmp(role, "assistant") == 0;
}

/* OpenAI's per-message weight: 0 (or false) excludes the message. */
static int weight_zero(const json_t *m) {
    const json_t *w = json_object_get(m, "weight");
    if (!w) return 0;
    if (json_is_false(w)) return 1;
    return json_is_number(w) && json_number_value(w) == 0.0;
}

/* messages[0..n) as a new array (elements shared). NULL on ENOMEM. */
static json_t *prefix(const json_t *messages, size_t n) {
    json_t *a = json_array();
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++)
        if (json_array_append(a, json_array_get(messages, i))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* Byte range of assistant message i in `full` by incremental rendering. */
static int incremental_range(const al_chat *c, const json_t *messages, const json_t *tools,
                             size_t i, const char *full, size_t full_len, al_span *r,
                             char err[AL_ERRLEN]) {
    json_t *before = prefix(messages, i), *upto = prefix(messages, i + 1);
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    int rc = AL_OK;
    if (!before || !upto) {
        rc = al_err(err, AL_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = al_chat_render(c, before, tools, 1, &a, &la, NULL, NULL, err)) != AL_OK) goto done;
    if ((rc = al_chat_render(c, upto, tools, 0, &b, &lb, NULL, NULL, err)) != AL_OK) goto done;
    /* Templates that close a conversation with eos_token when no generation
     * prompt follows (Phi-3) end a partial rendering with it: the turn ends
     * before that eos_token. */
    const char *eos = al_tok_eos_str(c->tok);
    size_t le = eos ? strlen(eos) : 0;
    if (le && lb >= le && !(lb <= full_len && memcmp(b, full, lb) == 0) && memcmp(b + lb - le, eos, le) == 0 &&
        lb - le <= full_len && memcmp(b, full, lb - le) == 0)
        lb -= le;
    if (la > lb || memcmp(a, b, la) != 0 || lb > full_len || memcmp(b, full, lb) != 0) {
        rc = al_err(err, AL_EUNSUP,
                    "messages[%zu]: the chat template renders earlier turns differently once "
                    "later ones follow, so assistant tokens cannot be located by rendering "
                    "incrementally; use a template with {%% generation %%} tags",
                    i);
        goto done;
    }
    r->start = la;
    r->end = lb;
done:
    free(a);
    free(b);
    json_decref(before);
    json_decref(upto);
    return rc;
}

int al_chat_encode_messages(const al_chat *c, const json_t *messages, const json_t *tools,
                            int first_trained, al_seq *out, char err[AL_ERRLEN]) {
    if (!c->tpl) return al_err(err, AL_EUNSUP, "the tokenizer has no chat template");
    if (!json_is_array(messages)) return al_err(err, AL_EINVAL, "messages is not a list");
    size_t n = json_array_size(messages), n_trained = 0, last = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(messages, i);
        if (is_assistant(m) && (long)i >= first_trained && !weight_zero(m)) {
            n_trained++;
            last = i;
        }
    }
    if (!n_trained) return al_err(err, AL_EINVAL, "no assistant message to train on");
    /* Messages after the last trained one change no trained token (attention
     * is causal) and would only sit between the answer and its EOS: they are
     * left out. */
    json_t *msgs = last + 1 < n ? prefix(messages, last + 1) : json_incref((json_t *)messages);
    if (!msgs) return al_err(err, AL_ENOMEM, "out of memory");
    n = last + 1;
    size_t n_assist = 0;
    for (size_t i = 0; i < n; i++) n_assist += is_assistant(json_array_get(msgs, i));
    char *full = NULL;
    size_t len = 0;
    al_span *gen = NULL, *r = NULL;
    int n_gen = 0;
    int rc = al_chat_render(c, msgs, tools, 0, &full, &len, &gen, &n_gen, err);
    if (rc != AL_OK) goto done;
    r = malloc(n_trained * sizeof *r);
    if (!r) {
        rc = al_err(err, AL_ENOMEM, "out of memory");
        goto done;
    }
    /* Generation spans map to assistant messages in order when the template
     * wraps each of them; anything else falls back to rendering. */
    int use_gen = c->has_gen && (size_t)n_gen == n_assist;
    int nr = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(msgs, i);
        if (!is_assistant(m)) continue;
        size_t which = k++;
        if ((long)i < first_trained || weight_zero(m)) continue;
        if (use_gen) r[nr] = gen[which];
        else if ((rc = incremental_range(c, msgs, tools, i, full, len, &r[nr], err)) != AL_OK)
            goto done;
        nr++;
    }
    al_seq s;
    if ((rc = encode_masked(c, full, len, r, nr, &s, err)) != AL_OK) goto done;
    if (!al_seq_trained(&s)) {
        al_seq_deinit(&s);
        rc = al_err(err, AL_EINVAL, "the assistant messages render to no tokens");
        goto done;
    }
    ensure_eos(c, &s);
    *out = s;
done:
    free(r);
    free(gen);
    free(full);
    json_decref(msgs);
    return rc;
}

/* ---- TRL's preference tokenizations (chat.h, al_split_kind) ------------------ */

enum { IDS_RAW, IDS_SPECIAL, IDS_CHAT };

/* Ids of text into s (s->mask may stay NULL): IDS_RAW without the
 * post-processor, IDS_SPECIAL with it (tokenizer(text)), IDS_CHAT by this
 * file's rule for rendered conversations. Special tokens are parsed. */
static int ids_of(const al_chat *c, const char *text, size_t len, int how, al_seq *s,
                  char err[AL_ERRLEN]) {
    memset(s, 0, sizeof *s);
    if (how == IDS_CHAT) return encode_masked(c, text, len, NULL, 0, s, err);
    char e[AL_ERRLEN] = "";
    int rc = al_tok_encode(c->tok, text, len, how == IDS_SPECIAL, 1, &s->ids, &s->n, NULL, NULL, e);
    return rc != AL_OK ? al_err(err, rc, "tokenizer: %s", e) : AL_OK;
}

/* [pre] a[0..na) b[0..nb) [post] with b and post trained; pre/post < 0 are
 * left out. */
static int join_seq(int32_t pre, const int32_t *a, int na, const int32_t *b, int nb, int32_t post,
                    al_seq *out, char err[AL_ERRLEN]) {
    int n = (pre >= 0) + na + nb + (post >= 0);
    al_seq s = {0};
    s.ids = malloc(((size_t)n + 1) * sizeof *s.ids);
    s.mask = calloc((size_t)n + 1, 1);
    if (!s.ids || !s.mask) {
        al_seq_deinit(&s);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    if (pre >= 0) s.ids[s.n++] = pre;
    for (int i = 0; i < na; i++) s.ids[s.n++] = a[i];
    for (int i = 0; i < nb; i++) {
        s.mask[s.n] = 1;
        s.ids[s.n++] = b[i];
    }
    if (post >= 0) {
        s.mask[s.n] = 1;
        s.ids[s.n++] = post;
    }
    *out = s;
    return AL_OK;
}

/* DPOTrainer / KTOTrainer: P = ids(p), F = ids(f); P then F[len(P):]. */
static int split_prompt_ids(const al_chat *c, const char *p, size_t pl, const char *f, size_t fl,
                            int how, al_seq *out, char err[AL_ERRLEN]) {
    al_seq P, F;
    int rc = ids_of(c, p, pl, how, &P, err);
    if (rc != AL_OK) return rc;
    if ((rc = ids_of(c, f, fl, how, &F, err)) == AL_OK) {
        if (F.n <= P.n)
            rc = al_err(err, AL_EINVAL,
                        "completion: no token of its own after the prompt's %d tokens", P.n);
        else
            rc = join_seq(-1, P.ids, P.n, F.ids + P.n, F.n - P.n, -1, out, err);
        al_seq_deinit(&F);
    }
    al_seq_deinit(&P);
    return rc;
}

/* CPOTrainer / ORPOTrainer build_tokenized_answer + add_bos/eos_token_if_needed:
 * f is the full text, its first pl bytes the prompt p. */
static int split_answer(const al_chat *c, const char *p, size_t pl, const char *f, size_t fl,
                        al_seq *out, char err[AL_ERRLEN]) {
    al_seq P, F;
    int rc = ids_of(c, p, pl, IDS_RAW, &P, err);
    if (rc != AL_OK) return rc;
    if ((rc = ids_of(c, f, fl, IDS_RAW, &F, err)) != AL_OK) {
        al_seq_deinit(&P);
        return rc;
    }
    if (F.n < P.n) {
        /* TRL: "Prompt input ids and answer input ids should have the same length." */
        rc = al_err(err, AL_EINVAL, "completion: the prompt's %d tokens outnumber the %d of prompt "
                    "and completion together", P.n, F.n);
    } else {
        int start = P.n;
        if (start > 0 && memcmp(F.ids, P.ids, (size_t)start * sizeof *P.ids) != 0) start--;
        int32_t bos = al_tok_bos(c->tok), eos = al_tok_eos(c->tok);
        int32_t pre = bos >= 0 && (start == 0 || F.ids[0] != bos) ? bos : -1;
        int na = F.n - start;
        int32_t post = eos >= 0 && (na == 0 || F.ids[F.n - 1] != eos) ? eos : -1;
        rc = join_seq(pre, F.ids, start, F.ids + start, na, post, out, err);
    }
    al_seq_deinit(&P);
    al_seq_deinit(&F);
    return rc;
}

int al_chat_encode_split(const al_chat *c, al_split_kind how, const char *prompt, size_t plen,
                         const char *completion, size_t clen, al_seq *out, char err[AL_ERRLEN]) {
    if (how == AL_SPLIT_BYTES) return al_chat_encode_text(c, prompt, plen, completion, clen, out, err);
    if (clen == 0) return al_err(err, AL_EINVAL, "empty completion");
    /* DPO/KTO append the EOS string to a completion that does not end in it
     * (their add_eos); CPO/ORPO append the EOS id after tokenizing. */
    const char *eos = al_tok_eos_str(c->tok);
    size_t el = how == AL_SPLIT_PROMPT_IDS ? strlen(eos) : 0;
    if (el && clen >= el && memcmp(completion + clen - el, eos, el) == 0) el = 0;
    char *text = malloc(plen + clen + el + 1);
    if (!text) return al_err(err, AL_ENOMEM, "out of memory");
    if (plen) memcpy(text, prompt, plen);
    memcpy(text + plen, completion, clen);
    if (el) memcpy(text + plen + clen, eos, el);
    size_t n = plen + clen + el;
    text[n] = 0;
    int rc = how == AL_SPLIT_PROMPT_IDS ? split_prompt_ids(c, prompt, plen, text, n, IDS_SPECIAL, out, err)
                                        : split_answer(c, prompt, plen, text, n, out, err);
    free(text);
    return rc;
}

int al_chat_encode_split_messages(const al_chat *c, al_split_kind how, const json_t *prompt,
                                  const json_t *completion, const json_t *other, const json_t *tools,
                                  al_seq *out, char err[AL_ERRLEN]) {
    json_t *all = json_array();
    if (!all) return al_err(err, AL_ENOMEM, "out of memory");
    if ((prompt && json_array_extend(all, (json_t *)prompt)) ||
        json_array_extend(all, (json_t *)completion)) {
        json_decref(all);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    int rc;
    if (how == AL_SPLIT_BYTES) {
        rc = al_chat_encode_messages(c, all, tools, (int)json_array_size(prompt), out, err);
        json_decref(all);
        return rc;
    }
    char *p = NULL, *f = NULL, *o = NULL;
    size_t pl = 0, fl = 0, ol = 0;
    json_t *none = prompt ? NULL : json_array(), *all_o = NULL;
    rc = al_chat_render(c, prompt ? prompt : none, tools, 1, &p, &pl, NULL, NULL, err);
    if (rc == AL_OK) rc = al_chat_render(c, all, tools, 0, &f, &fl, NULL, NULL, err);
    if (rc == AL_OK && other && how == AL_SPLIT_ANSWER) {
        if (!(all_o = json_array()) || (prompt && json_array_extend(all_o, (json_t *)prompt)) ||
            json_array_extend(all_o, (json_t *)other))
            rc = al_err(err, AL_ENOMEM, "out of memory");
        else
            rc = al_chat_render(c, all_o, tools, 0, &o, &ol, NULL, NULL, err);
    }
    if (rc == AL_OK) {
        if (how == AL_SPLIT_PROMPT_IDS) {
            rc = split_prompt_ids(c, p, pl, f, fl, IDS_CHAT, out, err);
        } else {
            /* the prompt text: what the renderings share (the other
             * completion's too, as maybe_apply_chat_template cuts a
             * preference row's prompt where any of the three differ) */
            size_t k = 0;
            while (k < pl && k < fl && p[k] == f[k] && (!o || (k < ol && p[k] == o[k]))) k++;
            rc = split_answer(c, f, k, f, fl, out, err);
        }
    }
    free(p);
    free(f);
    free(o);
    json_decref(none);
    json_decref(all_o);
    json_decref(all);
    return rc;
}

/* ---- tokenizer files of a saved model ----------------------------------- */

static int copy_one(const char *src, const char *dst, char err[AL_ERRLEN]) {
    char *buf;
    size_t len;
    int rc = al_file_read(src, (size_t)1 << 30, &buf, &len, err);
    if (rc == AL_ENOENT) return AL_OK;
    if (rc) return rc;
    rc = al_file_write_atomic(dst, buf, len, err);
    free(buf);
    return rc;
}

int al_chat_copy_files(const char *model_dir, const char *dir, const char *chat_template,
                       char err[AL_ERRLEN]) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                                        "special_tokens_map.json", "generation_config.json", NULL};
    char src[4096], dst[4096];
    for (int i = 0; files[i]; i++) {
        if (al_path_join(src, sizeof src, model_dir, files[i]) != AL_OK ||
            al_path_join(dst, sizeof dst, dir, files[i]) != AL_OK)
            return al_err(err, AL_ERANGE, "%s: path too long", dir);
        int config = !strcmp(files[i], "tokenizer_config.json");
        if (chat_template && !strcmp(files[i], "chat_template.jinja")) {
            if (unlink(dst) != 0 && errno != ENOENT) return al_err(err, AL_EIO, "%s: %s", dst, strerror(errno));
            continue;
        }
        if (!chat_template || !config) {
            int rc = copy_one(src, dst, err);
            if (rc) return rc;
            continue;
        }
        /* the model's tokenizer_config.json with the template replaced */
        json_t *cfg = NULL;
        if (al_file_exists(src)) {
            json_error_t je;
            cfg = json_load_file(src, 0, &je);
            if (!json_is_object(cfg)) {
                json_decref(cfg);
                return al_err(err, AL_EFORMAT, "%s: not a JSON object (%s)", src, je.text);
            }
        } else if (!(cfg = json_object())) {
            return al_err(err, AL_ENOMEM, "out of memory");
        }
        char *txt = NULL;
        if (json_object_set_new(cfg, "chat_template", json_string(chat_template)) == 0)
            txt = json_dumps(cfg, JSON_INDENT(2));
        json_decref(cfg);
        if (!txt) return al_err(err, AL_ENOMEM, "out of memory");
        int rc = al_file_write_atomic(dst, txt, strlen(txt), err);
        free(txt);
        if (rc) return rc;
    }
    return AL_OK;
}

/* Chat templates and loss masks: text and conversations -> token ids plus a
 * per-token trained mask.
 *
 * Everything is tokenized once, as one string, and the mask comes from byte
 * offsets (al_tok_encode's starts/ends): a token is trained when its span
 * overlaps a trained byte range. Prompt and completion are never tokenized
 * separately and concatenated, so the ids are exactly what the model sees at
 * inference, merges across the boundary included.
 *
 * Trained byte ranges of a conversation come from the template's
 * {% generation %} spans when it has them (transformers'
 * return_assistant_tokens_mask), otherwise from rendering the conversation
 * incrementally: assistant message i covers
 *     [len(render(messages[:i], add_generation_prompt=true)),
 *      len(render(messages[:i+1])))
 * of the full rendering, which must extend each partial rendering (else
 * AL_EUNSUP naming the message: such a template needs generation tags). A
 * partial rendering may end with eos_token where the full one goes on
 * (templates that close a conversation with it, as Phi-3's): the turn then
 * ends before that eos_token.
 *
 * BOS is never doubled: ids are encoded without the post-processor and BOS
 * is prepended only when the tokenizer adds one and the text does not
 * already start with it (templates often write bos_token themselves).
 * Completions end with EOS, trained: appended when the trained part does
 * not already end in EOS (a template's own end-of-turn EOS counts).
 *
 * An al_chat borrows its tokenizer and is immutable after al_chat_new, so
 * one may be shared between threads. */
#ifndef AL_CHAT_H
#define AL_CHAT_H

#include <jansson.h>

#include "../al.h"
#include "batch.h"
#include "jinja/jinja.h"
#include "tokenizer.h"

typedef struct al_chat al_chat;

/* The text of a built-in template, each the real template of its family:
 * "chatml", "llama2", "llama3", "llama3.1", "mistral", "zephyr", "gemma",
 * "phi3", "qwen2.5" (lib/text/chat_builtin.c); NULL for another name. */
const char *al_chat_builtin(const char *name);
/* The i-th built-in's name (0-based), NULL past the last. */
const char *al_chat_builtin_name(int i);

/* Copies a model folder's tokenizer files (tokenizer.json,
 * tokenizer_config.json, chat_template.jinja, special_tokens_map.json,
 * generation_config.json: those it has) into dir, each written atomically,
 * so that dir serves on its own. chat_template (may be NULL) replaces the
 * model's template: tokenizer_config.json then carries it (created with
 * that key alone when the model has none) and chat_template.jinja, which
 * transformers would prefer, is left out. AL_OK, AL_EIO, AL_EFORMAT (the
 * model's tokenizer_config.json is not a JSON object), AL_ENOMEM. */
int al_chat_copy_files(const char *model_dir, const char *dir, const char *chat_template,
                       char err[AL_ERRLEN]);

/* Binds tok (borrowed: it must outlive the chat) to a chat template:
 * template_src, or NULL for the tokenizer's own chat_template. A tokenizer
 * without one still encodes text; conversations then fail with AL_EUNSUP.
 * Returns AL_OK, AL_EFORMAT (template syntax, reason in err), AL_ENOMEM. */
int al_chat_new(al_chat **out, const al_tok *tok, const char *template_src,
                char err[AL_ERRLEN]);
void al_chat_free(al_chat *c);

const al_tok *al_chat_tok(const al_chat *c);   /* borrowed */
int al_chat_has_template(const al_chat *c);
/* Whether the template marks assistant output with {% generation %}. */
int al_chat_has_generation(const al_chat *c);
/* A pad id distinct from EOS: the tokenizer's pad token when it has one that
 * is not EOS, else the lowest id that is neither EOS nor BOS. */
int32_t al_chat_pad_id(const al_chat *c);

/* Renders a conversation (messages: JSON array of {role, content, ...};
 * tools: array or NULL; both borrowed) as transformers' apply_chat_template
 * does (bos_token, eos_token, add_generation_prompt in the context). *text is
 * malloc'd and NUL-terminated; spans (may be NULL) receives the malloc'd
 * generation spans. AL_EUNSUP (no template), AL_EINVAL (raise_exception,
 * message in err), AL_ERANGE, AL_ENOMEM. */
int al_chat_render(const al_chat *c, const json_t *messages, const json_t *tools,
                   int add_generation_prompt, char **text, size_t *len, al_span **spans,
                   int *n_spans, char err[AL_ERRLEN]);

/* A conversation for training. Trains the assistant messages at index >=
 * first_trained whose "weight" is not 0 (OpenAI's per-message weight; absent
 * = 1): their generation spans, or their incremental-rendering ranges (the
 * content and the template's end-of-turn marker). Messages after the last
 * trained one are left out (they change no trained token). When the last
 * trained stretch lacks EOS, EOS is appended and the template's tail after
 * that stretch (e.g. ChatML's "\n") is trained with it. *out is written on success only (caller deinits).
 * AL_EINVAL when nothing is trained (no weighted assistant message), plus
 * al_chat_render's codes and the tokenizer's. */
int al_chat_encode_messages(const al_chat *c, const json_t *messages, const json_t *tools,
                            int first_trained, al_seq *out, char err[AL_ERRLEN]);

/* prompt (plen bytes, may be 0) followed by completion (clen bytes) as one
 * string: tokens overlapping the completion's bytes are trained, then EOS
 * (appended unless the completion already ends in it). An empty prompt
 * trains everything (language modelling). AL_EINVAL for an empty completion. */
int al_chat_encode_text(const al_chat *c, const char *prompt, size_t plen,
                        const char *completion, size_t clen, al_seq *out,
                        char err[AL_ERRLEN]);

/* A prompt for generation (mask all 0, no EOS): text as is, or a
 * conversation rendered with add_generation_prompt. */
int al_chat_encode_prompt(const al_chat *c, const char *text, size_t len, al_seq *out,
                          char err[AL_ERRLEN]);
int al_chat_encode_prompt_messages(const al_chat *c, const json_t *messages,
                                   const json_t *tools, al_seq *out, char err[AL_ERRLEN]);

#endif

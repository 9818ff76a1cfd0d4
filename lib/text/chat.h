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

/* The token ids that end an answer when the model in model_dir is served,
 * as transformers' generate() stops for it: the eos_token_id of
 * generation_config.json and of config.json (an id or a list of ids: Llama
 * 3.1's three, Gemma's <eos> and <end_of_turn>, Phi-3's <|endoftext|> and
 * <|end|>), the tokenizer's eos_token, and the special token the chat
 * template closes an assistant turn with (found by rendering a one-turn
 * exchange: <|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>, ...), which a
 * checkpoint whose files name only the end of the document still needs.
 * model_dir may be NULL (the tokenizer and template alone). Rollouts and
 * training samples stop at the same ids (al_lm_stop_ids, lm.h), so that a
 * completion is trained and rewarded where its served answer would end. TRL
 * differs by generator (trl/trainer/grpo_trainer.py, main): on
 * transformers' generate() it passes the tokenizer's eos_token_id alone
 * (for an instruct model's tokenizer that is the end of turn), on vLLM the
 * generation_config's eos_token_id list stops it too.
 * Writes at most cap distinct ids in that order and returns how many (>= 0),
 * or AL_EFORMAT naming the file and field when a config's eos_token_id is
 * neither an id nor a list of ids, or a file is not JSON. */
int al_chat_stop_ids(const al_chat *c, const char *model_dir, int32_t *ids, int cap, char err[AL_ERRLEN]);

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

/* How a prompt and its completion become one trained sequence. TRL's
 * trainers differ, and each preference method follows its own (dataset.c's
 * method table says which):
 *
 *   AL_SPLIT_BYTES       al_chat_encode_text / al_chat_encode_messages: one
 *                        tokenization, trained where tokens overlap the
 *                        completion (SFT, reward model).
 *   AL_SPLIT_PROMPT_IDS  TRL's DPOTrainer and KTOTrainer (main since the
 *                        2026 rewrites, trl/trainer/{dpo,kto}_trainer.py
 *                        _prepare_dataset): P = ids of the prompt, F = ids
 *                        of prompt + completion, and the sequence is P
 *                        followed by F[len(P):], the completion trained. A
 *                        merge across the boundary is not undone: the
 *                        prompt keeps its own ids and the completion starts
 *                        after len(P) tokens of F. Text is encoded as
 *                        tokenizer(text) (post-processor on: BOS where the
 *                        tokenizer adds one) with EOS appended to the
 *                        completion's text unless it ends in it;
 *                        conversations render the prompt with the
 *                        generation prompt and prompt + completion without,
 *                        everything after P trained (end-of-turn markers
 *                        included), no EOS added. TRL's versions differ
 *                        here, and this is current main (July 2026): DPO
 *                        does so since 0.29 (the DPO refactor, #3906), KTO
 *                        since 1.3 (#5601). Before, DPOTrainer.tokenize_row
 *                        (<= 0.28) tokenized prompt and completion each on
 *                        its own without special tokens and concatenated
 *                        the ids, and KTO (<= 1.2) used CPO's
 *                        build_tokenized_answer (AL_SPLIT_ANSWER's split).
 *   AL_SPLIT_ANSWER      TRL's CPOTrainer and ORPOTrainer
 *                        (trl/experimental/{cpo,orpo}, build_tokenized_answer
 *                        and tokenize_row, unchanged from 0.x to main): F = ids of prompt + completion
 *                        without special tokens; the prompt is F's first
 *                        len(P) tokens, one fewer when P is not a prefix of
 *                        F (the merged token moves into the answer); then
 *                        the tokenizer's BOS token (GPT-2's too:
 *                        <|endoftext|>) is put first unless already there,
 *                        and EOS last unless already there. Conversations
 *                        become text first as TRL's maybe_apply_chat_template
 *                        does: the prompt is the common prefix of the
 *                        prompt's rendering (with the generation prompt) and
 *                        of prompt + completion's (and prompt + the other
 *                        completion's, for a pair), the completion the rest.
 *
 * AL_SPLIT_PROMPT_IDS conversations keep this file's BOS rule (BOS never
 * doubled, added where the tokenizer adds one and the template did not
 * write it) where transformers' apply_chat_template adds none: they differ
 * only for a template without bos_token on a tokenizer that adds BOS.
 * TRL checks nothing else either: a row whose prompt alone tokenizes to
 * more tokens than prompt + completion is refused (AL_EINVAL), as TRL's
 * trainers refuse or train on nothing. Truncation stays the data layer's
 * (keep the start, as DPOTrainer's collator). */
typedef enum al_split_kind {
    AL_SPLIT_BYTES = 0,
    AL_SPLIT_PROMPT_IDS,
    AL_SPLIT_ANSWER,
} al_split_kind;

/* prompt (plen bytes) and completion (clen bytes) as text, split as `how`
 * says (AL_SPLIT_BYTES is al_chat_encode_text). AL_EINVAL for an empty
 * completion or one left with no token of its own, plus the tokenizer's. */
int al_chat_encode_split(const al_chat *c, al_split_kind how, const char *prompt, size_t plen,
                         const char *completion, size_t clen, al_seq *out, char err[AL_ERRLEN]);
/* The same for a conversation: prompt and completion are message lists
 * (borrowed). AL_SPLIT_BYTES is al_chat_encode_messages over their
 * concatenation, training the completion's messages. other (borrowed, may
 * be NULL): the pair's other completion; AL_SPLIT_ANSWER then cuts the
 * prompt text where the prompt's rendering differs from either prompt +
 * completion's or prompt + other's, as TRL's maybe_apply_chat_template does
 * for a preference row (the others ignore it). */
int al_chat_encode_split_messages(const al_chat *c, al_split_kind how, const json_t *prompt,
                                  const json_t *completion, const json_t *other, const json_t *tools,
                                  al_seq *out, char err[AL_ERRLEN]);

/* A prompt for generation (mask all 0, no EOS): text as is, or a
 * conversation rendered with add_generation_prompt. */
int al_chat_encode_prompt(const al_chat *c, const char *text, size_t len, al_seq *out,
                          char err[AL_ERRLEN]);
int al_chat_encode_prompt_messages(const al_chat *c, const json_t *messages,
                                   const json_t *tools, al_seq *out, char err[AL_ERRLEN]);

#endif

/* Tokenizers: Hugging Face tokenizer.json (byte-level BPE as GPT-2, Llama 3,
 * Qwen2, SmolLM; SentencePiece-style BPE with the metaspace and byte
 * fallback as Llama 2, TinyLlama, Mistral) and the built-in byte tokenizer.
 *
 * Encoding matches the `tokenizers` library: added/special tokens are split
 * out first (when parse_special), then normalizer, pre-tokenizer (the split
 * regex taken from the file, run with PCRE2 and Unicode properties), BPE with
 * the file's merges, and the post-processor template (BOS/EOS) when
 * add_special. A tokenizer is immutable after loading and may be shared
 * between threads. */
#ifndef AL_TOKENIZER_H
#define AL_TOKENIZER_H

#include "../al.h"

typedef struct al_tok al_tok;

/* The byte tokenizer of the built-in tiny models: ids 0..255 are bytes,
 * 256 "<|endoftext|>" (BOS and EOS), 257 "<|pad|>", 258 "<|im_start|>",
 * 259 "<|im_end|>". Its chat template is ChatML with those markers. */
al_tok *al_tok_byte_new(void);

/* Loads <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json
 * (bos_token, eos_token, pad_token, chat_template, add_bos_token,
 * add_eos_token). A folder with neither but a config.json whose vocab_size
 * is 260 gets the byte tokenizer; a PEFT adapter folder (adapter_config.json)
 * without tokenizer files loads its base model's. Malformed files -> AL_EFORMAT with the
 * file and field named; unsupported model/normalizer/pre-tokenizer types ->
 * AL_EUNSUP naming the type. */
int al_tok_load(al_tok **out, const char *dir, char err[AL_ERRLEN]);
void al_tok_free(al_tok *t);

/* Encodes len bytes of UTF-8 text into a malloc'd id array (*ids, *n).
 * add_special: apply the post-processor (BOS/EOS as the file says).
 * parse_special: match added special tokens in the text (e.g. "<|im_end|>").
 * starts/ends (may be NULL): malloc'd byte offsets into text of each id's
 * span (special tokens added by the post-processor get start == end).
 * Invalid UTF-8 is encoded byte-wise (byte-level) or via byte fallback. */
int al_tok_encode(const al_tok *t, const char *text, size_t len, int add_special,
                  int parse_special, int32_t **ids, int *n, int32_t **starts,
                  int32_t **ends, char err[AL_ERRLEN]);
/* Decodes ids to malloc'd UTF-8 (*text, NUL-terminated, *len bytes).
 * skip_special drops special tokens. Ids outside the vocabulary -> AL_ERANGE. */
int al_tok_decode(const al_tok *t, const int32_t *ids, int n, int skip_special,
                  char **text, size_t *len);

int al_tok_vocab_size(const al_tok *t);        /* highest id + 1 */
int32_t al_tok_id(const al_tok *t, const char *token);  /* -1 if absent */
const char *al_tok_str(const al_tok *t, int32_t id);    /* NULL if out of range */
int al_tok_is_special(const al_tok *t, int32_t id);
int32_t al_tok_bos(const al_tok *t);           /* -1 when none */
int32_t al_tok_eos(const al_tok *t);
int32_t al_tok_pad(const al_tok *t);           /* -1 when none: callers pick a distinct id */
/* Whether the post-processor adds BOS / EOS to a single sequence. */
int al_tok_adds_bos(const al_tok *t);
int al_tok_adds_eos(const al_tok *t);
/* bos_token / eos_token strings for chat templates ("" when none). */
const char *al_tok_bos_str(const al_tok *t);
const char *al_tok_eos_str(const al_tok *t);
/* The chat_template from tokenizer_config.json (NULL when none). */
const char *al_tok_chat_template(const al_tok *t);

/* Notes on al_tok_encode with add_special: the post-processor never adds a
 * BOS (or EOS) that the text already supplies as a parsed special token, so
 * a chat template that renders bos_token does not get a second one. The
 * tokenizers library would double it; this is a deliberate difference. */

#endif

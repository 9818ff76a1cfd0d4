/* Internals of the tokenizer shared by tokenizer.c (encoding, decoding,
 * the vocabulary and merge hashes, the word cache) and tokenizer_load.c
 * (building an al_tok from tokenizer.json and tokenizer_config.json, or the
 * byte tokenizer, and freeing it): the step lists loading flattens the
 * file's pipeline into and the al_tok that holds them. */
#ifndef AL_TOK_INT_H
#define AL_TOK_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "../buf.h"
#include "tokenizer.h"
#include "unicode.h"

enum { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
enum { N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWERCASE, N_PREPEND, N_REPLACE, N_STRIP };
enum { P_SPLIT, P_BYTELEVEL, P_METASPACE };
enum { D_BYTELEVEL, D_METASPACE, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP };
enum { PREPEND_NEVER, PREPEND_ALWAYS, PREPEND_FIRST };
enum { F_MODEL = 1, F_ADDED = 2, F_SPECIAL = 4 };

/* A literal or regex pattern (Split, Replace). */
typedef struct tpattern {
    char *lit;
    size_t lit_n;
    pcre2_code *re;
} tpattern;

typedef struct norm_step {
    int kind;
    tpattern pat;     /* Replace */
    char *text;       /* Replace content, Prepend text */
    size_t text_n;
    int left, right;  /* Strip */
} norm_step;

typedef struct pre_step {
    int kind;
    tpattern pat;       /* Split; ByteLevel with use_regex: the GPT-2 regex */
    int behavior, invert;
    int add_prefix_space;
    char rep[8];        /* Metaspace replacement (UTF-8) */
    int rep_n, prepend, split;
} pre_step;

typedef struct dec_step {
    int kind;
    tpattern pat;       /* Replace */
    char *text;
    size_t text_n;
    uint32_t rep;       /* Metaspace replacement; Strip content */
    int prepend;
    int start, stop;    /* Strip */
} dec_step;

typedef struct added_tok {
    char *norm;         /* content as matched (normalized when normalized) */
    size_t norm_n;
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} added_tok;

/* Added tokens of one kind indexed by first byte, longest first. */
typedef struct match_set {
    int *idx;
    int first[257];
} match_set;

typedef struct merge_slot {
    uint64_t key; /* 0: empty */
    uint32_t rank;
    int32_t id;
} merge_slot;

typedef struct cache_shard cache_shard; /* the word cache (tokenizer.c) */

struct al_tok {
    int n_ids;
    char **id_str;
    uint32_t *id_len;
    uint8_t *id_flags;
    int32_t *vocab_slot, *added_slot; /* open addressing, id or -1 */
    uint32_t vocab_mask, added_mask;

    merge_slot *merges;
    uint32_t merges_mask;
    int32_t char_id[0x800]; /* model id of each single character < U+0800 */
    int32_t bf_id[256];     /* <0xNN> ids, -1 when absent */
    int byte_fallback, ignore_merges, fuse_unk;
    int32_t unk_id;
    char *sw_prefix, *eow_suffix; /* continuing_subword_prefix, end_of_word_suffix */
    size_t sw_prefix_n, eow_suffix_n;

    added_tok *added;
    int n_added;
    match_set raw_set, norm_set;

    norm_step *norm;
    int n_norm;
    pre_step *pre;
    int n_pre;
    dec_step *dec;
    int n_dec, has_decoder;
    int16_t byte_of_char[0x144]; /* ByteLevel decoder: char -> byte or -1 */
    char byte_utf8[256][2];      /* ByteLevel: UTF-8 of each byte's character */
    uint8_t byte_utf8_n[256];

    int32_t *prefix, *suffix;
    int n_prefix, n_suffix;

    int32_t bos, eos, pad;
    char *bos_str, *eos_str, *chat_template;
    pcre2_code *re_word; /* Rust regex's \w, for single_word */

    cache_shard *cache;
};

/* ------------------------------------------------------------ shared helpers (tokenizer.c) */

/* The UTF-8 character at s (n > 0 bytes left): its length, or -k when the
 * bytes are not a character, k being the maximal invalid prefix. */
int tok_utf8_dec(const unsigned char *s, size_t n, uint32_t *cp);
int tok_utf8_enc(uint32_t cp, char *out);
/* Open-addressing string -> id maps over t's id strings (slot -1: empty). */
void tok_map_put(int32_t *slot, uint32_t mask, const al_tok *t, int32_t id);
int32_t tok_map_get(const int32_t *slot, uint32_t mask, const al_tok *t, const char *s, size_t n);
int32_t tok_vocab_get(const al_tok *t, const char *s, size_t n);  /* model tokens */
/* The merge (a, b) -> id at rank; later duplicates overwrite earlier ones. */
void tok_merge_put(al_tok *t, int32_t a, int32_t b, uint32_t rank, int32_t id);
cache_shard *tok_cache_new(void);
void tok_cache_free(cache_shard *c);
/* s run through the normalizer steps (for added tokens with normalized). */
int tok_normalize_string(const al_tok *t, const char *s, size_t n, al_buf *out);

#endif

/* libFuzzer target: tokenizer.json and tokenizer_config.json (lib/text/
 * tokenizer.h, al_tok_load): BPE models (vocab, merges, byte fallback,
 * unk), normalizers, pre-tokenizers, post-processors, decoders and
 * added_tokens, then encoding and decoding with what loaded.
 *
 * The input is tokenizer.json, optionally followed by a NUL byte and
 * tokenizer_config.json (JSON text never holds a raw NUL). al_tok_load
 * reads a folder, so each input is written to one scratch folder in the
 * working directory (removed at exit). A load must succeed or fail with a
 * message; a loaded tokenizer must encode a few fixed strings (ASCII,
 * whitespace runs, special-token markers, CJK and emoji, invalid UTF-8)
 * and decode what it encoded. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "io.h"
#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void path_of(char *p, size_t n, const char *name) { snprintf(p, n, "%s/%s", g_dir, name); }

static void cleanup(void) {
    char p[128];
    path_of(p, sizeof p, "tokenizer.json");
    unlink(p);
    path_of(p, sizeof p, "tokenizer_config.json");
    unlink(p);
    rmdir(g_dir);
}

static void put(const char *name, const uint8_t *data, size_t size) {
    char p[128];
    path_of(p, sizeof p, name);
    fuzz_write_file(p, data, size);
}

static void quiet(void *ud, al_log_level lvl, const char *msg) {
    (void)ud;
    (void)lvl;
    (void)msg;
}

static const char *const k_texts[] = {
    "Hello, world! It's 2024: 12345 tokens.",
    "  leading  and\ttrailing \n\n\r\n  ",
    "<|im_start|>user\nhi<|im_end|>\n<s>[INST] x [/INST]</s><|endoftext|>",
    "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x99\x82 \xe2\x96\x81x",
    "\xff\xfe bad \xc3 utf8 \xed\xa0\x80",
    "",
};

static void exercise(const al_tok *t) {
    char err[AL_ERRLEN];
    int V = al_tok_vocab_size(t);
    for (size_t k = 0; k < sizeof k_texts / sizeof k_texts[0]; k++) {
        size_t len = strlen(k_texts[k]);
        char *text = malloc(len ? len : 1); /* exact size: no NUL to lean on */
        if (!text) abort();
        memcpy(text, k_texts[k], len);
        for (int mode = 0; mode < 4; mode++) {
            int32_t *ids = NULL, *st = NULL, *en = NULL;
            int n = 0;
            int rc = al_tok_encode(t, text, len, mode & 1, mode >> 1, &ids, &n, mode == 3 ? &st : NULL,
                                   mode == 3 ? &en : NULL, err);
            if (rc == AL_OK) {
                for (int i = 0; i < n; i++) {
                    if (ids[i] < 0 || ids[i] >= V) abort();
                    if (st && (st[i] < 0 || st[i] > en[i] || (size_t)en[i] > len)) abort();
                }
                char *out = NULL;
                size_t olen = 0;
                if (al_tok_decode(t, ids, n, mode & 1, &out, &olen) == AL_OK) free(out);
            }
            free(ids);
            free(st);
            free(en);
        }
        free(text);
    }
    int32_t probe[3] = {0, V - 1, V};
    char *out = NULL;
    size_t olen = 0;
    if (al_tok_decode(t, probe, 3, 0, &out, &olen) != AL_ERANGE) abort();
    free(out);
    for (int32_t i = 0; i < V && i < 64; i++) {
        const char *s = al_tok_str(t, i);
        (void)al_tok_is_special(t, i);
        if (s) (void)al_tok_id(t, s);
    }
    (void)al_tok_bos(t);
    (void)al_tok_eos(t);
    (void)al_tok_pad(t);
    (void)strlen(al_tok_bos_str(t));
    (void)strlen(al_tok_eos_str(t));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[AL_ERRLEN];
    if (!g_dir[0]) {
        al_log_set(quiet, NULL);
        snprintf(g_dir, sizeof g_dir, "fuzz_tokenizer_%d", (int)getpid());
        if (al_mkdir_p(g_dir, err) != AL_OK) abort();
        atexit(cleanup);
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t n1 = nul ? (size_t)(nul - data) : size;
    put("tokenizer.json", data, n1);
    char cp[128];
    path_of(cp, sizeof cp, "tokenizer_config.json");
    if (nul) put("tokenizer_config.json", nul + 1, size - n1 - 1);
    else unlink(cp);
    al_tok *t = NULL;
    err[0] = 0;
    int rc = al_tok_load(&t, g_dir, err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "rc %d: %s\n", rc, rc ? err : "");
    if (rc != AL_OK) {
        if (!err[0] || t) abort(); /* a refusal names its reason, returns nothing */
        return 0;
    }
    exercise(t);
    al_tok_free(t);
    return 0;
}

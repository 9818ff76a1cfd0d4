/* libFuzzer target: the JSONL dataset reader (lib/text/dataset.h,
 * al_dataset_read_mem) that every upload goes through.
 *
 * The first byte picks the options: bits 0-2 the method (none, sft, dpo,
 * kto, reward_model, rl, pretrain, orpo), bit 5 tokenizing with the byte
 * tokenizer and its ChatML template (else structure only), bit 6 dedupe,
 * bit 7 max_length 32. The rest is the file. A read must succeed with a
 * report or fail with a code; the report must serialise. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat.h"
#include "text/dataset.h"
#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *ud, al_log_level lvl, const char *msg) {
    (void)ud;
    (void)lvl;
    (void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static al_tok *tok;
    static al_chat *chat;
    char err[AL_ERRLEN];
    if (!tok) {
        al_log_set(quiet, NULL);
        tok = al_tok_byte_new();
        if (!tok || al_chat_new(&chat, tok, NULL, err) != AL_OK) abort();
    }
    if (size < 1) return 0;
    static const char *const methods[] = {NULL, "sft", "dpo", "kto", "reward_model", "rl",
                                          "pretrain", "orpo"};
    al_data_opts o;
    memset(&o, 0, sizeof o);
    o.method = methods[data[0] & 7];
    o.dedupe = (data[0] >> 6) & 1;
    o.max_length = (data[0] & 0x80) ? 32 : 0;
    const al_chat *c = (data[0] & 0x20) ? chat : NULL;
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    memcpy(buf, data + 1, n);
    al_dataset *d = NULL;
    int rc = al_dataset_read_mem(buf, n, c, &o, &d, err);
    if (rc == AL_OK) {
        if (!d || !al_dataset_report(d)) abort();
        (void)al_dataset_check(d, 0, err);
        (void)al_dataset_check(d, 1, err);
        char *s = json_dumps(al_dataset_report(d), JSON_COMPACT);
        if (!s) abort();
        free(s);
        for (int i = 0; i < d->n_ex; i++) (void)d->ex[i];
        al_dataset_free(d);
    }
    free(buf);
    return 0;
}

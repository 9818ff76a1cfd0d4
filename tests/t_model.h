/* Tiny models for tests: the byte vocabulary (260 ids: the 256 bytes, 256
 * also BOS/EOS, 257 padding) in a shape of the test's choosing, initialised
 * from a seed and saved as a Hugging Face folder. */
#ifndef T_MODEL_H
#define T_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

typedef struct t_shape {
    al_arch arch;
    int layers, C, heads, kv_heads, FF, max_T; /* kv_heads 0: as heads */
    int score_head;                            /* a scalar head (reward model) */
} t_shape;

static inline al_model_config t_byte_config(t_shape s) {
    al_model_config c;
    al_config_default(&c, s.arch);
    c.n_layers = s.layers;
    c.C = s.C;
    c.NH = s.heads;
    c.NKV = s.kv_heads ? s.kv_heads : s.heads;
    c.HD = s.C / s.heads;
    c.FF = s.FF;
    c.V = 260;
    c.max_T = s.max_T;
    c.bos_id = c.eos_id = 256;
    c.pad_id = 257;
    if (s.score_head) {
        c.has_score = 1;
        c.num_labels = 1;
    }
    return c;
}

/* Builds a model of shape s initialised from seed and saves it to dir. */
static inline int t_save_byte_model(t_shape s, uint64_t seed, const char *dir, char err[AL_ERRLEN]) {
    al_model_config c = t_byte_config(s);
    al_model *m = al_model_new(&c, NULL, err);
    if (!m) return AL_EINVAL;
    al_model_init(m, seed);
    int rc = al_model_save(m, dir, err);
    al_model_free(m);
    return rc;
}

/* 1 when two parameters of the same shape hold the same fp32 bits read in
 * nn.Linear's (out, in) layout, whichever layout each is held in (a frozen
 * GPT-2 Conv1D weight is held (in, out): al_param_rows). */
static inline int t_param_same_rows(const al_param *x, const al_param *y) {
    if (x->n != y->n) return 0;
    float *u = malloc(x->n * sizeof(float)), *v = malloc(x->n * sizeof(float));
    int same = 0;
    if (u && v) {
        al_param_rows(u, x);
        al_param_rows(v, y);
        same = memcmp(u, v, x->n * sizeof(float)) == 0;
    }
    free(u);
    free(v);
    return same;
}

/* Kilobytes of anonymous (copied-on-write or copied-out) memory in the
 * mapping that holds p, from /proc/self/smaps; -1 if not found: how much of
 * a served checkpoint's mapping is no longer the file's pages. */
static inline long t_anon_kb(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    long kb = -1;
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        } else if (in && sscanf(line, "Anonymous: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb;
}

#endif

/* A model folder's weights, tokenizer and chat template, opened and closed
 * together (lm.h). */
#include "lm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* err = "field: e2" blamed on field, or e2 alone (no field) when field is NULL. */
static int lm_fail(al_error *err, int rc, const char *field, const char *e2) {
    return field ? AL_FAIL(err, rc, "%s", "%s", field, e2) : al_fail_as(err, rc, "", e2);
}

int al_lm_open(al_lm *lm, const char *dir, const al_lm_cfg *cfg, char err[AL_ERRLEN]) {
    al_error e;
    int rc = al_lm_open_at(lm, dir, cfg, &e);
    if (rc && err) snprintf(err, AL_ERRLEN, "%s", e.msg);
    return rc;
}

int al_lm_open_at(al_lm *lm, const char *dir, const al_lm_cfg *cfg, al_error *err) {
    al_lm x = {0};
    char e2[AL_ERRLEN] = "";
    int rc;
    if (!(x.dir = strdup(dir))) return al_failf(err, AL_ENOMEM, "out of memory");
    rc = al_tok_load(&x.tok, dir, e2);
    if (!rc) rc = al_chat_new(&x.chat, x.tok, cfg->chat_template, e2);
    if (rc && (cfg->flags & AL_LM_TOK_OPTIONAL)) {
        al_tok_free(x.tok);
        x.tok = NULL;
        rc = AL_OK;
    }
    if (rc) {
        rc = lm_fail(err, rc, cfg->tok_field, e2);
        goto fail;
    }
    al_error me;
    if ((rc = al_model_open_at(&x.m, dir, cfg->lora, cfg->open_flags, cfg->seed, &me))) {
        /* the caller's LoRA settings at fault, or the folder (model_field) */
        rc = me.field[0] ? al_fail_as(err, rc, me.field, me.msg) : lm_fail(err, rc, cfg->model_field, me.msg);
        goto fail;
    }
    *lm = x;
    return AL_OK;
fail:
    al_lm_close(&x);
    memset(lm, 0, sizeof *lm);
    return rc;
}

void al_lm_close(al_lm *lm) {
    if (!lm) return;
    al_model_free(lm->m);
    al_chat_free(lm->chat);
    al_tok_free(lm->tok);
    free(lm->dir);
    memset(lm, 0, sizeof *lm);
}

int al_lm_stop_ids(const al_lm *lm, int32_t *ids, int cap, char err[AL_ERRLEN]) {
    int32_t eos = al_model_config_of(lm->m)->eos_id;
    int n = 0;
    /* one place kept for the model's eos */
    if (lm->chat && cap > 1 && (n = al_chat_stop_ids(lm->chat, lm->dir, ids, cap - 1, err)) < 0) return n;
    int known = 0;
    for (int i = 0; i < n; i++) known |= ids[i] == eos;
    if (eos >= 0 && !known && n < cap) ids[n++] = eos;
    return n;
}

/* A language model as a job or a server uses it: the weights (lib/model),
 * the tokenizer and the chat template of one Hugging Face folder, opened
 * together and closed together, and the token ids that end its answers.
 *
 * It lives in lib/train, the layer that already joins lib/model and
 * lib/text (lib/text never calls into lib/model: its parsers link and are
 * fuzzed without it). The training code, the server (api/infer.c) and the
 * command line (daemon/cli_model.c) open their models through it. An al_lm is a
 * caller-owned struct; its parts are borrowed by whoever reads them and live
 * until al_lm_close. Opening runs on the calling thread (the weights are
 * converted on the shared compute pool, as al_model_open_ex does). */
#ifndef AL_LM_H
#define AL_LM_H

#include "../model/model.h"
#include "../text/chat.h"
#include "../text/tokenizer.h"

typedef struct al_lm {
    al_model *m;       /* the weights (owned) */
    al_tok *tok;       /* the tokenizer (owned; NULL only with AL_LM_TOK_OPTIONAL) */
    al_chat *chat;     /* the chat template bound to tok (owned; NULL with tok) */
    char *dir;         /* the folder (owned copy), for al_lm_stop_ids */
} al_lm;

/* Token ids alone will be used: a folder whose tokenizer or template is
 * missing or cannot be read opens with tok and chat NULL. */
#define AL_LM_TOK_OPTIONAL 1

/* How to open a folder. Errors keep the words each caller gave them before
 * al_lm existed: model_field prefixes the weights' errors ("model: ...",
 * NULL: the loader's message alone), tok_field the tokenizer's and the
 * template's. */
typedef struct al_lm_cfg {
    int open_flags;              /* AL_OPEN_* of al_model_open_ex */
    const al_lora_cfg *lora;     /* fresh adapters (may be NULL) */
    uint64_t seed;               /* their (and a new scalar head's) initialisation */
    const char *chat_template;   /* the job's template source; NULL: the folder's own */
    int flags;                   /* AL_LM_* */
    const char *model_field, *tok_field;
} al_lm_cfg;

/* Opens dir's tokenizer, binds the chat template, then opens the weights
 * (in that order: the tokenizer fails fast). On error nothing is left open,
 * *lm is zeroed and err says why: AL_ENOENT, AL_EFORMAT, AL_ESHAPE,
 * AL_EUNSUP, AL_ERANGE, AL_ENOMEM (al_tok_load's, al_chat_new's and
 * al_model_open_ex's codes). */
int al_lm_open(al_lm *lm, const char *dir, const al_lm_cfg *cfg, char err[AL_ERRLEN]);
/* The same with the field the reason starts with as data: err->field is
 * cfg->model_field or tok_field when one prefixes the message,
 * "lora.target_modules" ("lora") when cfg->lora matches no module of the
 * model (has a bad r or alpha), else "". */
int al_lm_open_at(al_lm *lm, const char *dir, const al_lm_cfg *cfg, al_error *err);
/* Frees what is open and zeroes *lm; a zeroed al_lm is a no-op. */
void al_lm_close(al_lm *lm);

/* The ids that end an answer of this model, where a served answer ends
 * (api/infer.c), a rollout's completion (lib/train/rl.c), a training sample
 * and `alignd generate`: al_chat_stop_ids of the folder and its template
 * (generation_config.json's and config.json's eos_token_id, the tokenizer's
 * eos_token, the template's end-of-turn token), then the model's own eos_id
 * when those lack it (an adapter's is its base's). Without a tokenizer, the
 * model's eos_id alone. Writes at most cap ids (the last place kept for the
 * model's eos_id) and returns how many (>= 0),
 * or al_chat_stop_ids's AL_EFORMAT naming the file and field. */
int al_lm_stop_ids(const al_lm *lm, int32_t *ids, int cap, char err[AL_ERRLEN]);
/* Room for every stop id a caller of al_lm_stop_ids keeps. */
enum { AL_LM_MAX_STOPS = 16 };

#endif

/* Reward sources of RL and sampling jobs (see rl.h): the verifiable reward
 * (the job's grader, lib/train/grader.h, against each prompt's accepted
 * answers), the format reward (a pattern the completion must match), an
 * external verifier (reward.http, reached through the runner's callback:
 * lib/ speaks no HTTP), reward models (one, or an ensemble scored by
 * its minimum, a guard against exploiting one model's errors: Coste et al.
 * 2023), the AI judge (RLAIF: Bai et al. 2022, Lee et al. 2023) and the
 * rules (length penalty, missing-EOS penalty as TRL's missing_eos_penalty,
 * length normalisation of the model score, clipping).
 *
 *   r = verifiable * v + format_weight * f + http_weight * h
 *       + reward_model_weight * (min_k RM_k [/ len]) + judge_weight * j
 *   r = clip(r - length_penalty * len - missing_eos_penalty * [no EOS], -clip, clip)
 *
 * A reward model scores prompt + completion + EOS, tokenized as text by its
 * own tokenizer, by its head's value at the last token (TRL's get_reward:
 * the value at the last non-padding token). The judge sees the prompt and
 * two responses in its chat template (or as plain text when it has none)
 * with the principles, and its answer is read from the next-token
 * log-probabilities of "A" and "B": one forward, no sampling. Both models
 * run forward only; a reward model's activations are sized for the job's
 * longest texts (al_reward_len), the judge's for its context. */
#include "rl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../text/chat.h"
#include "lm.h"

typedef struct scorer {
    al_lm lm;                    /* a reward model or the judge, its tokenizer and template */
    int T;                       /* longest sequence scored (longer ones keep their last T tokens) */
    int rows, Tres;              /* activations reserved for rows x Tres (Tres <= T) */
} scorer;

struct al_rewarder {
    al_reward_cfg cfg;
    al_grader *grader;           /* the job's (reward.verifiable.grader) */
    al_format_rule *format;      /* reward.format, or NULL */
    int (*ext)(void *ud, const al_reward_cfg *cfg, int n, const char *const *prompts,
               const char *const *completions, const json_t *const *rows, float *rewards, char err[AL_ERRLEN]);
    void *ext_ud;
    double eos_pen;
    int rows;
    scorer rm[AL_MAX_REWARD_MODELS];
    int n_rm;
    scorer judge;
    int has_judge;
    int32_t id_a, id_b;          /* the judge's answer tokens */
    int plain;                   /* judge without a chat template */
    int32_t *ids, *tgt;          /* (rows, T) */
    float *vals;                 /* (rows, T) */
    int Tmax;
};

/* ---- rules ------------------------------------------------------------------- */

static void trim(const char *s, size_t *a, size_t *b) {
    size_t n = strlen(s), i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) i++;
    while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    *a = i;
    *b = n;
}

double al_reward_verifiable(const char *answer, const char *output, int partial) {
    size_t a0, a1, o0, o1;
    trim(answer, &a0, &a1);
    trim(output, &o0, &o1);
    size_t la = a1 - a0, lo = o1 - o0;
    if (la == lo && memcmp(answer + a0, output + o0, la) == 0) return 1.0;
    if (!partial) return 0.0;
    size_t n = la < lo ? la : lo, same = 0, longer = la > lo ? la : lo;
    for (size_t i = 0; i < n; i++) same += answer[a0 + i] == output[o0 + i];
    return longer ? 0.5 * (double)same / (double)longer : 0.0;
}

double al_reward_rules(const al_reward_cfg *c, double r, int len, int has_eos, double eos_pen) {
    r -= c->length_penalty * len;
    if (!has_eos) r -= eos_pen;
    if (c->clip > 0) r = r < -c->clip ? -c->clip : r > c->clip ? c->clip : r;
    return r;
}

/* ---- models ------------------------------------------------------------------ */

static void scorer_free(scorer *s) {
    al_lm_close(&s->lm);
    memset(s, 0, sizeof *s);
}

/* Extra tokens beyond one per byte: BOS, EOS, the " " of an empty completion. */
enum { SPECIAL_SLACK = 8 };

/* want_T: the longest sequence expected (0: unknown, the model's context). */
static int scorer_open(scorer *s, const char *dir, int flags, int rows, size_t want_T, const char *what,
                       al_error *err) {
    char e2[AL_ERRLEN];
    int rc;
    al_lm_cfg lc = {.open_flags = flags | AL_OPEN_FROZEN, .model_field = what, .tok_field = what};
    if ((rc = al_lm_open_at(&s->lm, dir, &lc, err))) return rc;
    const al_model_config *c = al_model_config_of(s->lm.m);
    s->T = c->max_T < 1024 ? c->max_T : 1024;
    s->rows = rows;
    s->Tres = want_T > 0 && want_T < (size_t)s->T ? (int)want_T : s->T;
    if ((rc = al_model_reserve(s->lm.m, rows, s->Tres, AL_MODEL_FORWARD_ONLY, e2)))
        return AL_FAIL(err, rc, "%s", "%s", what, e2);
    return AL_OK;
}

/* Room for sequences of T tokens (T <= s->T): grows the reservation when a
 * tokenizer needed more tokens than the texts have bytes. */
static int scorer_fit(scorer *s, int T, const char *what, char err[AL_ERRLEN]) {
    if (T <= s->Tres) return AL_OK;
    int want = 2 * s->Tres > T ? 2 * s->Tres : T;
    if (want > s->T) want = s->T;
    char e2[AL_ERRLEN];
    int rc = al_model_reserve(s->lm.m, s->rows, want, AL_MODEL_FORWARD_ONLY, e2);
    if (rc) return al_err(err, rc, "%s: %s", what, e2);
    s->Tres = want;
    return AL_OK;
}

static int judge_prompt(al_rewarder *rw, const char *prompt, const char *x, const char *y, al_seq *out,
                        char err[AL_ERRLEN]);

int al_rewarder_new(al_rewarder **out, const al_reward_cfg *cfg, double hp_eos_penalty, int rows,
                    const al_reward_len *len, al_error *fail) {
    /* the reason alone where no field of the job is at fault */
    fail->field[0] = 0;
    char *err = fail->msg;
    al_rewarder *rw = calloc(1, sizeof *rw);
    if (!rw) return al_err(err, AL_ENOMEM, "out of memory");
    rw->cfg = *cfg;
    rw->eos_pen = cfg->missing_eos_penalty >= 0 ? cfg->missing_eos_penalty : hp_eos_penalty;
    rw->rows = rows < 2 ? 2 : rows;
    al_error e2;
    int rc = al_grader_new(&rw->grader, &cfg->grader, "reward.verifiable.grader", &e2);
    if (!rc && cfg->format_regex[0])
        rc = al_format_new(&rw->format, cfg->format_regex, (al_format_mode)cfg->format_mode, "reward.format.regex",
                           &e2);
    if (rc) {
        al_rewarder_free(rw);
        return al_fail_as(fail, rc, e2.field, e2.msg);
    }
    char what[64];
    /* one token per byte, the completion at least the " " an empty one becomes */
    size_t want_rm = 0;
    if (len && (len->prompt_bytes || len->completion_bytes))
        want_rm = len->prompt_bytes + (len->completion_bytes > 0 ? len->completion_bytes : 1) + SPECIAL_SLACK;
    for (int k = 0; k < cfg->n_reward_models && !rc; k++) {
        if (cfg->n_reward_models > 1) snprintf(what, sizeof what, "reward.reward_model[%d]", k);
        else snprintf(what, sizeof what, "reward.reward_model");
        rc = scorer_open(&rw->rm[k], cfg->reward_model[k], AL_OPEN_SCORE_HEAD | (cfg->bf16 ? AL_OPEN_BF16 : 0),
                         rw->rows, want_rm, what, fail);
        rw->n_rm = k + 1;
        if (rc) break;
        if (rw->rm[k].T > rw->Tmax) rw->Tmax = rw->rm[k].T;
    }
    int size_judge = len && (len->prompt_bytes || len->completion_bytes);
    if (!rc && cfg->judge_model[0]) {
        /* sized below, once the instructions' tokens are known */
        rc = scorer_open(&rw->judge, cfg->judge_model, cfg->bf16 ? AL_OPEN_BF16 : 0, 2, size_judge ? 1 : 0,
                         "reward.judge.model", fail);
        rw->has_judge = 1;
        if (!rc && !al_model_config_of(rw->judge.lm.m)->has_lm_head)
            rc = AL_FAIL(fail, AL_EINVAL, "reward.judge.model", "%s has no language-model head", cfg->judge_model);
        if (!rc) {
            rw->plain = !al_chat_has_template(rw->judge.lm.chat);
            const char *a = rw->plain ? " A" : "A", *b = rw->plain ? " B" : "B";
            int32_t *ia = NULL, *ib = NULL;
            int na = 0, nb = 0;
            rc = al_tok_encode(rw->judge.lm.tok, a, strlen(a), 0, 0, &ia, &na, NULL, NULL, err);
            if (!rc) rc = al_tok_encode(rw->judge.lm.tok, b, strlen(b), 0, 0, &ib, &nb, NULL, NULL, err);
            if (!rc && (na < 1 || nb < 1 || ia[0] == ib[0]))
                rc = AL_FAIL(fail, AL_EINVAL, "reward.judge.model", "cannot tell the answers A and B apart");
            if (!rc) {
                rw->id_a = ia[0];
                rw->id_b = ib[0];
            }
            free(ia);
            free(ib);
        }
        if (!rc && size_judge) {
            /* the instructions with nothing in them, then a token per byte of
             * what fills them (and slack at each of the three places) */
            al_seq s0;
            if ((rc = judge_prompt(rw, "", "", "", &s0, err)) && rc != AL_ENOMEM) {
                /* its template cannot render the instructions */
                char why[AL_ERRLEN];
                memcpy(why, err, sizeof why);
                AL_FAIL(fail, rc, "reward.judge.model", "%s", why);
            } else if (!rc) {
                size_t want = (size_t)s0.n + len->prompt_bytes + 2 * (len->completion_bytes + 1) + 3 * SPECIAL_SLACK;
                al_seq_deinit(&s0);
                rc = scorer_fit(&rw->judge, want < (size_t)rw->judge.T ? (int)want : rw->judge.T,
                                "reward.judge.model", err);
                if (rc) al_fail_as(fail, rc, "reward.judge.model", err);
            }
        }
        if (!rc && rw->judge.T > rw->Tmax) rw->Tmax = rw->judge.T;
    }
    if (!rc && rw->Tmax > 0) {
        size_t n = (size_t)rw->rows * (size_t)rw->Tmax;
        rw->ids = malloc(n * sizeof *rw->ids);
        rw->tgt = malloc(n * sizeof *rw->tgt);
        rw->vals = malloc(n * sizeof *rw->vals);
        if (!rw->ids || !rw->tgt || !rw->vals) rc = al_err(err, AL_ENOMEM, "out of memory");
    }
    if (rc) {
        al_rewarder_free(rw);
        return rc;
    }
    *out = rw;
    return AL_OK;
}

void al_rewarder_free(al_rewarder *rw) {
    if (!rw) return;
    al_grader_free(rw->grader);
    al_format_free(rw->format);
    for (int k = 0; k < rw->n_rm; k++) scorer_free(&rw->rm[k]);
    scorer_free(&rw->judge);
    free(rw->ids);
    free(rw->tgt);
    free(rw->vals);
    free(rw);
}

int al_rewarder_has_rm(const al_rewarder *rw) { return rw && rw->n_rm > 0; }
int al_rewarder_has_judge(const al_rewarder *rw) { return rw && rw->has_judge; }

/* One reward model over n texts, rows at a time; sequences longer than the
 * reserved length keep their last tokens. A cut-off completion (has_eos[i]
 * 0) is scored without the EOS that encoding the text appends. */
static int rm_score(al_rewarder *rw, scorer *s, int n, const char *const *prompts, const char *const *comps,
                    const int *has_eos, float *out, char err[AL_ERRLEN]) {
    for (int i0 = 0, k = 0; i0 < n; i0 += k) {
        enum { CAP = 64 };
        int T = 1, rc;
        k = n - i0 < rw->rows ? n - i0 : rw->rows;
        if (k > CAP) k = CAP;
        al_seq seqs[CAP];
        for (int j = 0; j < k; j++) {
            const char *c = comps[i0 + j][0] ? comps[i0 + j] : " ";
            rc = al_chat_encode_text(s->lm.chat, prompts[i0 + j], strlen(prompts[i0 + j]), c, strlen(c), &seqs[j], err);
            if (rc) {
                for (int q = 0; q < j; q++) al_seq_deinit(&seqs[q]);
                return rc;
            }
            int32_t eos = al_tok_eos(s->lm.tok);
            if (has_eos && !has_eos[i0 + j] && eos >= 0 && seqs[j].n > 1 && seqs[j].ids[seqs[j].n - 1] == eos)
                seqs[j].n--;
            int len = seqs[j].n < s->T ? seqs[j].n : s->T;
            if (len > T) T = len;
        }
        for (int j = 0; j < k; j++) {
            int len = seqs[j].n < s->T ? seqs[j].n : s->T, skip = seqs[j].n - len;
            for (int t = 0; t < T; t++)
                rw->ids[(size_t)j * T + t] = t < len ? seqs[j].ids[skip + t] : seqs[j].ids[skip + len - 1];
        }
        al_tokens in = {.B = k, .T = T, .ids = rw->ids};
        al_fwd f = {.values = rw->vals};
        rc = scorer_fit(s, T, "reward model", err);
        if (!rc && (rc = al_model_forward(s->lm.m, &in, &f)))
            al_err(err, rc, "reward model forward failed: %s", al_strerror(rc));
        for (int j = 0; j < k; j++) {
            int len = seqs[j].n < s->T ? seqs[j].n : s->T;
            if (!rc) out[i0 + j] = rw->vals[(size_t)j * T + (size_t)(len - 1)];
            al_seq_deinit(&seqs[j]);
        }
        if (rc) return rc;
    }
    return AL_OK;
}

int al_rewarder_rm(al_rewarder *rw, int n, const char *const *prompts, const char *const *completions,
                   const int *has_eos, float *out, char err[AL_ERRLEN]) {
    if (!rw->n_rm) return al_err(err, AL_EINVAL, "no reward model");
    float *tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof *tmp);
    if (!tmp) return al_err(err, AL_ENOMEM, "out of memory");
    int rc = AL_OK;
    for (int k = 0; k < rw->n_rm && !rc; k++) {
        rc = rm_score(rw, &rw->rm[k], n, prompts, completions, has_eos, k ? tmp : out, err);
        for (int i = 0; k && !rc && i < n; i++) out[i] = tmp[i] < out[i] ? tmp[i] : out[i];
    }
    free(tmp);
    return rc;
}

/* The judge's prompt for (prompt, first, second) as token ids. */
static int judge_prompt(al_rewarder *rw, const char *prompt, const char *x, const char *y, al_seq *out,
                        char err[AL_ERRLEN]) {
    size_t cap = strlen(prompt) + strlen(x) + strlen(y) + 1024;
    for (int i = 0; i < rw->cfg.n_principles; i++) cap += strlen(rw->cfg.principles[i]) + 8;
    char *sys = malloc(cap), *user = malloc(cap);
    if (!sys || !user) {
        free(sys);
        free(user);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    size_t n = (size_t)snprintf(sys, cap, "You compare two responses to a prompt and say which is better.");
    if (rw->cfg.n_principles) n += (size_t)snprintf(sys + n, cap - n, " Judge them by these principles:");
    for (int i = 0; i < rw->cfg.n_principles; i++)
        n += (size_t)snprintf(sys + n, cap - n, "\n- %s", rw->cfg.principles[i]);
    snprintf(user, cap, "Prompt:\n%s\n\nResponse A:\n%s\n\nResponse B:\n%s\n\nWhich response is better? "
             "Answer with the single letter A or B.", prompt, x, y);
    int rc;
    if (rw->plain) {
        size_t tl = strlen(sys) + strlen(user) + 16;
        char *text = malloc(tl);
        if (!text) rc = al_err(err, AL_ENOMEM, "out of memory");
        else {
            snprintf(text, tl, "%s\n\n%s\nAnswer:", sys, user);
            rc = al_chat_encode_prompt(rw->judge.lm.chat, text, strlen(text), out, err);
            free(text);
        }
    } else {
        json_t *msgs = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", sys, "role", "user",
                                 "content", user);
        rc = msgs ? al_chat_encode_prompt_messages(rw->judge.lm.chat, msgs, NULL, out, err)
                  : al_err(err, AL_ENOMEM, "out of memory");
        json_decref(msgs);
        if (rc && rc != AL_ENOMEM) {
            /* a template without a system role: the principles go first in the user turn */
            size_t tl = strlen(sys) + strlen(user) + 4;
            char *both = malloc(tl);
            if (!both) return free(sys), free(user), al_err(err, AL_ENOMEM, "out of memory");
            snprintf(both, tl, "%s\n\n%s", sys, user);
            msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", both);
            rc = msgs ? al_chat_encode_prompt_messages(rw->judge.lm.chat, msgs, NULL, out, err)
                      : al_err(err, AL_ENOMEM, "out of memory");
            json_decref(msgs);
            free(both);
        }
    }
    free(sys);
    free(user);
    return rc;
}

/* P(the judge answers A) for one order. */
static int judge_once(al_rewarder *rw, const char *prompt, const char *x, const char *y, double *pa,
                      char err[AL_ERRLEN]) {
    al_seq s;
    int rc = judge_prompt(rw, prompt, x, y, &s, err);
    if (rc) return rc;
    int T = s.n < rw->judge.T ? s.n : rw->judge.T, skip = s.n - T;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < T; t++) {
            rw->ids[(size_t)r * T + t] = s.ids[skip + t];
            rw->tgt[(size_t)r * T + t] = t == T - 1 ? (r ? rw->id_b : rw->id_a) : -1;
        }
    al_seq_deinit(&s);
    if ((rc = scorer_fit(&rw->judge, T, "judge", err))) return rc;
    al_tokens in = {.B = 2, .T = T, .ids = rw->ids, .targets = rw->tgt};
    al_fwd f = {.logp = rw->vals};
    if ((rc = al_model_forward(rw->judge.lm.m, &in, &f)))
        return al_err(err, rc, "judge forward failed: %s", al_strerror(rc));
    double la = rw->vals[T - 1], lb = rw->vals[(size_t)T + T - 1];
    *pa = 1.0 / (1.0 + exp(lb - la));
    return AL_OK;
}

int al_rewarder_judge(al_rewarder *rw, const char *prompt, const char *a, const char *b, double *p_a,
                      char err[AL_ERRLEN]) {
    if (!rw->has_judge) return al_err(err, AL_EINVAL, "no judge");
    double p1, p2;
    int rc = judge_once(rw, prompt, a, b, &p1, err);
    if (!rc) rc = judge_once(rw, prompt, b, a, &p2, err);
    if (!rc) *p_a = 0.5 * (p1 + (1 - p2));
    return rc;
}

int al_rewarder_attach(al_rewarder *rw, const al_train_cb *cb, al_error *err) {
    rw->ext = cb ? cb->external_reward : NULL;
    rw->ext_ud = cb ? cb->ud : NULL;
    if (rw->cfg.http_url[0] && !rw->ext)
        return AL_FAIL(err, AL_EINVAL, "reward.http", "this runner cannot call external verifiers");
    return AL_OK;
}

int al_rewarder_correct(const al_rewarder *rw, const char *completion, const al_reward_row *row, int *correct,
                        char err[AL_ERRLEN]) {
    *correct = 0;
    if (!row || row->n_answers < 1) return AL_OK;
    double v = 0;
    int rc = al_grader_grade(row->grader ? row->grader : rw->grader, completion, row->answers, row->n_answers, &v,
                             NULL);
    if (rc) return al_err(err, rc, "reward.verifiable.grader: %s", rc == AL_ERANGE
                          ? "the pattern hit PCRE2's match limit on a completion (catastrophic backtracking?)"
                          : al_strerror(rc));
    *correct = v == 1.0;
    return AL_OK;
}

/* The external verifier over n completions, reward.http.batch at a time. */
static int http_score(al_rewarder *rw, int n, const char *const *prompts, const char *const *completions,
                      const al_reward_row *const *rows, float *out, char err[AL_ERRLEN]) {
    int B = rw->cfg.http_batch > 0 ? rw->cfg.http_batch : 64;
    const json_t **rj = calloc((size_t)B, sizeof *rj);
    json_t **made = calloc((size_t)B, sizeof *made);
    int rc = rj && made ? AL_OK : al_err(err, AL_ENOMEM, "out of memory");
    for (int i0 = 0; i0 < n && !rc; i0 += B) {
        int k = n - i0 < B ? n - i0 : B;
        for (int j = 0; j < k && !rc; j++) {
            const al_reward_row *rr = rows ? rows[i0 + j] : NULL;
            made[j] = NULL;
            if (rr && rr->row) {
                rj[j] = rr->row;
                continue;
            }
            /* a built-in task's row: its prompt and answer */
            const char *ans = rr && rr->n_answers > 0 ? rr->answers[0] : NULL;
            made[j] = json_pack("{s:s, s:o}", "prompt", prompts[i0 + j], "answer",
                                ans ? json_string(ans) : json_null());
            if (!made[j]) rc = al_err(err, AL_ENOMEM, "out of memory");
            rj[j] = made[j];
        }
        char e2[AL_ERRLEN] = "";
        if (!rc && (rc = rw->ext(rw->ext_ud, &rw->cfg, k, prompts + i0, completions + i0, rj, out + i0, e2)))
            al_err(err, rc, "reward.http: %s", e2[0] ? e2 : al_strerror(rc));
        for (int j = 0; j < k && !rc; j++)
            if (!isfinite(out[i0 + j])) rc = al_err(err, AL_EINVAL, "reward.http: reward %d is not finite", i0 + j);
        for (int j = 0; j < k; j++) json_decref(made[j]);
    }
    free(rj);
    free(made);
    return rc;
}

int al_rewarder_score_rows(al_rewarder *rw, int n, int G, const char *const *prompts,
                           const char *const *completions, const al_reward_row *const *rows, const int *lens,
                           const int *has_eos, float *scores, al_reward_parts *parts, al_error *fail) {
    const al_reward_cfg *c = &rw->cfg;
    char *err = fail->msg;
    const char *field = ""; /* the source that failed: its field in the job */
    int rc = AL_OK;
    fail->field[0] = 0;
    float *rm = NULL, *jd = NULL, *hv = NULL;
    if (rw->n_rm) {
        rm = malloc((size_t)n * sizeof *rm);
        if (!rm) return al_err(err, AL_ENOMEM, "out of memory");
        field = "reward.reward_model";
        if ((rc = al_rewarder_rm(rw, n, prompts, completions, has_eos, rm, err))) goto done;
    }
    if (c->http_url[0]) {
        field = "reward.http";
        if (!rw->ext) {
            rc = al_err(err, AL_EINVAL, "reward.http: this runner cannot call external verifiers");
            goto done;
        }
        hv = malloc((size_t)(n > 0 ? n : 1) * sizeof *hv);
        if (!hv) {
            rc = al_err(err, AL_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = http_score(rw, n, prompts, completions, rows, hv, err))) goto done;
    }
    if (rw->has_judge) {
        field = "reward.judge.model"; /* its template, its context */
        jd = calloc((size_t)n, sizeof *jd);
        if (!jd) {
            rc = al_err(err, AL_ENOMEM, "out of memory");
            goto done;
        }
        for (int g0 = 0; g0 < n && !rc; g0 += G) {
            int k = n - g0 < G ? n - g0 : G;
            if (k < 2) {
                jd[g0] = 0.5f;
                continue;
            }
            for (int i = 0; i < k && !rc; i++)
                for (int j = i + 1; j < k && !rc; j++) {
                    double p = 0.5;
                    rc = al_rewarder_judge(rw, prompts[g0 + i], completions[g0 + i], completions[g0 + j], &p, err);
                    jd[g0 + i] += (float)(p / (k - 1));
                    jd[g0 + j] += (float)((1 - p) / (k - 1));
                }
        }
        if (rc) goto done;
    }
    for (int i = 0; i < n && !rc; i++) {
        double r = 0, v = NAN, fm = NAN, ex = NAN;
        const al_reward_row *rr = rows ? rows[i] : NULL;
        if (rr && rr->n_answers > 0) {
            /* graded whenever the row has answers, also at weight 0: the
             * samples' true accuracy beside a learned reward (hacking) */
            int got = 0, grc = al_grader_grade(rr->grader ? rr->grader : rw->grader, completions[i], rr->answers,
                                               rr->n_answers, &v, &got);
            if (grc && c->verifiable != 0) {
                field = "reward.verifiable.grader";
                rc = al_err(err, grc, "reward.verifiable.grader: %s", grc == AL_ERANGE
                            ? "the pattern hit PCRE2's match limit on a completion (catastrophic backtracking?)"
                            : al_strerror(grc));
                break;
            }
            if (grc) v = NAN; /* a monitor only: never fails the step */
            else {
                if (v == 0 && c->partial) v = al_reward_verifiable(rr->answers[0], completions[i], 1);
                ex = got;
            }
        } else if (c->verifiable != 0) {
            v = 0;
        }
        if (c->verifiable != 0) r += c->verifiable * v;
        if (rw->format) {
            int m = al_format_match(rw->format, completions[i]);
            if (m < 0) {
                field = "reward.format.regex";
                rc = al_err(err, m, "reward.format.regex: %s", m == AL_ERANGE
                            ? "the pattern hit PCRE2's match limit on a completion (catastrophic backtracking?)"
                            : al_strerror(m));
                break;
            }
            fm = m;
            r += c->format_weight * fm;
        }
        if (hv) r += c->http_weight * hv[i];
        double m = NAN;
        if (rm) {
            m = rm[i];
            if (c->length_normalize) m /= lens[i] > 0 ? lens[i] : 1;
            r += c->reward_model_weight * m;
        }
        if (jd) r += c->judge_weight * jd[i];
        scores[i] = (float)al_reward_rules(c, r, lens[i], has_eos[i], rw->eos_pen);
        if (parts) {
            if (parts->verifiable) parts->verifiable[i] = (float)v;
            if (parts->reward_model) parts->reward_model[i] = (float)m;
            if (parts->judge) parts->judge[i] = jd ? jd[i] : NAN;
            if (parts->format) parts->format[i] = (float)fm;
            if (parts->http) parts->http[i] = hv ? hv[i] : NAN;
            if (parts->extracted) parts->extracted[i] = (float)ex;
        }
    }
done:
    free(rm);
    free(jd);
    free(hv);
    if (rc && rc != AL_ENOMEM) snprintf(fail->field, sizeof fail->field, "%s", field);
    return rc;
}

int al_rewarder_score(al_rewarder *rw, int n, int G, const char *const *prompts,
                      const char *const *completions, const char *const *answers, const int *lens,
                      const int *has_eos, float *scores, al_reward_parts *parts, char err[AL_ERRLEN]) {
    al_reward_row *rr = calloc((size_t)(n > 0 ? n : 1), sizeof *rr);
    const al_reward_row **rp = calloc((size_t)(n > 0 ? n : 1), sizeof *rp);
    if (!rr || !rp) {
        free(rr);
        free(rp);
        return al_err(err, AL_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        rr[i].answers = answers ? &answers[i] : NULL;
        rr[i].n_answers = answers && answers[i] ? 1 : 0;
        rp[i] = &rr[i];
    }
    al_error e;
    int rc = al_rewarder_score_rows(rw, n, G, prompts, completions, rp, lens, has_eos, scores, parts, &e);
    if (rc && err) snprintf(err, AL_ERRLEN, "%s", e.msg);
    free(rr);
    free(rp);
    return rc;
}

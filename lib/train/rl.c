/* The RL loop: ppo, grpo and rloo (see rl.h).
 *
 * One step of the job is one rollout and the updates made from it:
 *   1. take the step's prompts (a seeded permutation per epoch, as the
 *      trainer orders its examples), batch_size completions in all (GRPO,
 *      RLOO: batch_size / num_generations prompts, num_generations each;
 *      PPO: batch_size prompts, one each);
 *   2. sample them from the policy with the KV cache (temperature, top_p,
 *      top_k, max_completion_length, stop at EOS), keeping each token's
 *      sampling log-prob under the tempered distribution: these are the
 *      "old" log-probs of the ratio (TRL recomputes them with a forward
 *      because its sampler may run in another precision; ours is the same
 *      fp32 model, so the values agree to rounding);
 *   3. score the reference's log-probs (the base with adapters off under
 *      LoRA, else a frozen copy or ref_model), the critic's values (PPO)
 *      and the rewards (rl.h: verifiable, reward models, judge, rules);
 *   4. advantages: PPO per token (KL penalty in the reward, score at the
 *      last token, optional reward whitening, GAE, whitened advantages);
 *      GRPO per group (scale_rewards); RLOO leave-one-out with beta * KL in
 *      the sequence reward;
 *   5. updates: PPO num_ppo_epochs x num_mini_batches AdamW steps over
 *      shuffled minibatches (gradient accumulation inside), the policy and
 *      the critic clipped together by max_grad_norm as TRL's
 *      PolicyAndValueWrapper; GRPO/RLOO num_iterations steps over the whole
 *      batch; each optimiser step may add sft_mix_ratio times an SFT loss
 *      on the step's reference answers;
 *   6. metrics under TRL's names, samples, health warnings, checkpoints.
 *
 * The critic (PPO) is, with critic "shared_base", a value head with its own
 * LoRA on the policy's frozen base (al_model_new_shared: no second copy of
 * the weights); with "separate", a model of its own initialised from
 * critic_model, else the (first) reward model, else the policy's start,
 * trained fully or through its own LoRA when the job uses LoRA. Either runs
 * in the policy's activations (al_model_share_activations; a separate
 * critic of another shape keeps its own): each micro-batch of an update
 * runs the critic's forward, value loss and backward to the end before the
 * policy's forward (the value term needs only the critic's values). Checkpoints
 * keep it in the subfolder critic/ (a PEFT adapter folder with the head as
 * modules_to_save, or a full model folder) with its AdamW moments in
 * critic/optimizer.safetensors; trainer_state.json holds the step, the
 * sampler's RNG state, the prompt cursor and the (adaptive) KL
 * coefficient, so a resumed run continues exactly.
 *
 * Buffers are sized at set-up; generation allocates its KV cache per call
 * (al_generate), the one allocation inside a step.
 *
 * Data parallelism (lib/dist/ddp.h; N ranks under mpirun or srun): a step's
 * prompts are the global list of batch_size / num_generations x N prompts,
 * and rank r generates, scores and trains on its r-th share, whole groups
 * only (a group never straddles ranks); each rank samples from its own RNG
 * stream derived from the seed and its rank. Advantages use global
 * statistics where they mix rows (PPO's whitening, GRPO's batch scaling,
 * RLOO's normalisation), the losses' denominators are global, the
 * gradients of the policy and the critic are summed over ranks before the
 * joint clipping (optimizer_step), and the metrics, the KL controller and
 * the health checks see the global batch. Rank 0 alone evaluates, samples
 * and writes checkpoints (with every rank's RNG state). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "rl.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compute/ops.h"
#include "../io.h"
#include "../model/safetensors.h"
#include "../tasks/tasks.h"
#include "../text/chat.h"
#include "../text/dataset.h"
#include "../text/mix.h"
#include "bench.h"
#include "optim.h"
#include "rl_int.h"

enum { GEN_CHUNK = 64, N_SAMPLES = 2, HEALTH_WINDOW = 10 };

/* ---- prompts ----------------------------------------------------------------- */

void rl_prompts_free(rl_prompts *p) {
    for (int i = 0; i < p->n; i++) {
        al_seq_deinit(&p->seq[i]);
        al_example_deinit(&p->sft[i]);
        free(p->text[i]);
        free(p->answer[i]);
        for (int k = 0; p->answers[i] && p->answers[i][k]; k++) free(p->answers[i][k]);
        free(p->answers[i]);
        json_decref(p->row[i]);
    }
    al_grader_set_free(&p->graders);
    json_decref(p->report);
    free(p->seq);
    free(p->sft);
    free(p->text);
    free(p->answer);
    free(p->ref);
    free(p->answers);
    free(p->row);
    memset(p, 0, sizeof *p);
}

static int prompts_alloc(rl_prompts *p, long n, char err[AL_ERRLEN]) {
    p->seq = calloc((size_t)n + 1, sizeof *p->seq);
    p->sft = calloc((size_t)n + 1, sizeof *p->sft);
    p->text = calloc((size_t)n + 1, sizeof *p->text);
    p->answer = calloc((size_t)n + 1, sizeof *p->answer);
    p->ref = calloc((size_t)n + 1, sizeof *p->ref);
    p->answers = calloc((size_t)n + 1, sizeof *p->answers);
    p->row = calloc((size_t)n + 1, sizeof *p->row);
    if (!p->seq || !p->sft || !p->text || !p->answer || !p->ref || !p->answers || !p->row)
        return al_err(err, AL_ENOMEM, "out of memory for prompts");
    return AL_OK;
}

int rl_prompts_append(rl_prompts *dst, rl_prompts *src, char err[AL_ERRLEN]) {
    size_t n = (size_t)dst->n + src->n + 1, ng = (size_t)dst->graders.n + src->graders.n;
    /* grow every array first, so that a failure changes nothing visible */
#define GROW(f)                                                                  \
    do {                                                                         \
        void *q = realloc(dst->f, n * sizeof *dst->f);                           \
        if (!q) return al_err(err, AL_ENOMEM, "out of memory for prompts");      \
        dst->f = q;                                                              \
    } while (0)
    GROW(seq); GROW(sft); GROW(text); GROW(answer); GROW(ref); GROW(answers); GROW(row);
#undef GROW
    if (ng > (size_t)dst->graders.cap) {
        al_grader **g = realloc(dst->graders.g, ng * sizeof *g);
        if (!g) return al_err(err, AL_ENOMEM, "out of memory for prompts");
        dst->graders.g = g;
        dst->graders.cap = (int)ng;
    }
    size_t o = (size_t)dst->n, k = (size_t)src->n; /* the arrays hold n + 1: never NULL */
    memcpy(dst->seq + o, src->seq, k * sizeof *src->seq);
    memcpy(dst->sft + o, src->sft, k * sizeof *src->sft);
    memcpy(dst->text + o, src->text, k * sizeof *src->text);
    memcpy(dst->answer + o, src->answer, k * sizeof *src->answer);
    memcpy(dst->ref + o, src->ref, k * sizeof *src->ref);  /* its pointers go with what they point at */
    memcpy(dst->answers + o, src->answers, k * sizeof *src->answers);
    memcpy(dst->row + o, src->row, k * sizeof *src->row);
    if (src->graders.n)
        memcpy(dst->graders.g + dst->graders.n, src->graders.g, (size_t)src->graders.n * sizeof *src->graders.g);
    dst->n += src->n;
    dst->graders.n += src->graders.n;
    src->n = 0;
    src->graders.n = 0;
    rl_prompts_free(src);
    return AL_OK;
}

/* Whether file is one of the job's training files (the hygiene filters
 * clean those, never a validation file of the same path). */
static int is_training_file(const al_job *job, const char *file) {
    if (file == job->training_file) return 1;
    for (int k = 0; k < job->n_train_files; k++)
        if (file == job->train_files[k].file) return 1;
    return 0;
}

/* The accepted answers of a data row: the first reference column present
 * (the dataset reader's order: reference, answer, solution, ground_truth),
 * a string or a list of strings; else the reader's reference (a
 * prompt/completion row's completion). NULL-terminated, malloc'd. */
static char **row_answers(const json_t *row, const char *reference) {
    static const char *const keys[] = {"reference", "answer", "solution", "ground_truth", NULL};
    const json_t *v = NULL;
    for (int i = 0; keys[i] && !v; i++) {
        v = json_object_get(row, keys[i]);
        if (json_is_null(v)) v = NULL;
    }
    size_t n = json_is_array(v) ? json_array_size(v) : reference ? 1 : 0;
    char **a = calloc(n + 1, sizeof *a);
    if (!a) return NULL;
    for (size_t k = 0; k < n; k++) {
        const char *s = json_is_array(v) ? json_string_value(json_array_get(v, k)) : reference;
        if (!(a[k] = strdup(s ? s : ""))) {
            for (size_t q = 0; q < k; q++) free(a[q]);
            free(a);
            return NULL;
        }
    }
    return a;
}

/* The row's own "grader" over the job's, compiled (shared with an equal
 * earlier one); *out NULL when the row has none. */
static int row_grader(rl_prompts *p, const al_job *job, const json_t *spec, int line, const char *what,
                      const al_grader **out, char err[AL_ERRLEN]) {
    *out = NULL;
    if (!spec || json_is_null(spec)) return AL_OK;
    al_grader_cfg c = job->reward.grader;
    al_error e2;
    int rc = al_grader_cfg_parse(&c, spec, "grader", &e2);
    if (!rc) rc = al_grader_set_get(&p->graders, &c, "grader", out, &e2);
    return rc ? al_err(err, rc, "%s: line %d: %s", what, line, e2.msg) : AL_OK;
}

/* Fills p->ref[i] from p->answers[i]; with reward.verifiable on, checks
 * that the grader can ever match each answer. */
static int finish_ref(rl_prompts *p, const al_job *job, int i, int line, const char *what, char err[AL_ERRLEN]) {
    al_reward_row *r = &p->ref[i];
    r->answers = (const char *const *)p->answers[i];
    r->n_answers = 0;
    while (p->answers[i] && p->answers[i][r->n_answers]) r->n_answers++;
    r->row = p->row[i];
    if (job->reward.verifiable == 0) return AL_OK;
    al_grader *own = NULL;
    const al_grader *g = r->grader;
    if (!g) {
        al_error e2;
        int rc = al_grader_new(&own, &job->reward.grader, "reward.verifiable.grader", &e2);
        if (rc) return al_err(err, rc, "%s", e2.msg);
        g = own;
    }
    char why[160];
    for (int k = 0; k < r->n_answers; k++)
        if (al_grader_answer_invalid(g, r->answers[k], why, sizeof why)) {
            al_grader_free(own);
            return al_err(err, AL_EINVAL, "%s: line %d: %s", what, line, why);
        }
    al_grader_free(own);
    return AL_OK;
}

/* Keeps the last max_prompt_length tokens of a prompt (TRL truncates prompts
 * from the left). */
static void clip_prompt(al_seq *s, int maxp) {
    if (s->n <= maxp) return;
    memmove(s->ids, s->ids + (s->n - maxp), (size_t)maxp * sizeof *s->ids);
    memmove(s->mask, s->mask + (s->n - maxp), (size_t)maxp);
    s->n = maxp;
}

int rl_prompts_load(rl_prompts *p, const al_job *job, const al_chat *chat, int from_task, long rows,
                    uint64_t seed, int split, const char *file, const char *what, int want_sft, char err[AL_ERRLEN]) {
    const al_tok *tok = al_chat_tok(chat);
    int maxp = job->hp.max_prompt_length;
    int rc;
    if (from_task) {
        if ((rc = prompts_alloc(p, rows, err))) return rc;
        for (long i = 0; i < rows; i++) {
            al_task_row r;
            if (al_task_row_get(job->task, split, seed, (uint64_t)i, &r))
                return al_err(err, AL_EINVAL, "task: '%s' is not a built-in task", job->task);
            /* raw text, as the trainer's task rows: the tiny models have no chat habits */
            if ((rc = al_chat_encode_prompt(chat, r.prompt, strlen(r.prompt), &p->seq[p->n], err))) return rc;
            p->text[p->n] = strdup(r.prompt);
            p->answer[p->n] = strdup(r.answer);
            p->answers[p->n] = calloc(2, sizeof *p->answers[p->n]);
            if (!p->text[p->n] || !p->answer[p->n] || !p->answers[p->n] || !(p->answers[p->n][0] = strdup(r.answer)))
                return al_err(err, AL_ENOMEM, "out of memory");
            /* a task whose answers are worked solutions grades their final answer
             * unless the job chose a grader */
            const char *tg = al_task_grader(job->task);
            if (tg && !job->reward.grader_given && !p->n) {
                json_t *v = json_string(tg);
                rc = v ? row_grader(p, job, v, 1, what, &p->ref[0].grader, err) : al_err(err, AL_ENOMEM, "out of memory");
                json_decref(v);
                if (rc) return rc;
            }
            if (p->n) p->ref[p->n].grader = p->ref[0].grader;
            if ((rc = finish_ref(p, job, p->n, (int)i + 1, what, err))) return rc;
            if (want_sft && (rc = al_chat_encode_text(chat, r.prompt, strlen(r.prompt), r.answer, strlen(r.answer),
                                                      &p->sft[p->n].seq[0], err)))
                return rc;
            p->sft[p->n].line = (int)i + 1;
            clip_prompt(&p->seq[p->n], maxp);
            p->n++;
        }
        return AL_OK;
    }
    al_data_opts o = {.method = "rl", .max_length = 0, .max_prompt_length = 0, .dedupe = job->hp.dedupe,
                      .sharegpt = al_job_file_sharegpt(job, file)};
    if (al_hygiene_any(&job->hygiene) && is_training_file(job, file)) o.hygiene = &job->hygiene;
    al_dataset *ds = NULL;
    char e2[AL_ERRLEN];
    if ((rc = al_dataset_read_file(file, chat, &o, &ds, e2))) return al_err(err, rc, "%s: %s", what, e2);
    if ((rc = al_dataset_check(ds, 0, e2))) {
        al_dataset_free(ds);
        return al_err(err, rc, "%s: %s", what, e2);
    }
    p->report = json_incref(ds->report);
    if ((rc = prompts_alloc(p, ds->n_ex, err))) {
        al_dataset_free(ds);
        return rc;
    }
    for (int i = 0; i < ds->n_ex && !rc; i++) {
        al_example *e = &ds->ex[i];
        p->seq[p->n] = e->seq[0];
        memset(&e->seq[0], 0, sizeof e->seq[0]);
        size_t len;
        if (al_tok_decode(tok, p->seq[p->n].ids, p->seq[p->n].n, 1, &p->text[p->n], &len))
            rc = al_err(err, AL_EFORMAT, "%s: line %d does not decode", what, e->line);
        p->answer[p->n] = e->reference;
        e->reference = NULL;
        p->row[p->n] = e->row;
        e->row = NULL;
        if (!rc && !(p->answers[p->n] = row_answers(p->row[p->n], p->answer[p->n])))
            rc = al_err(err, AL_ENOMEM, "out of memory");
        if (!rc)
            rc = row_grader(p, job, json_object_get(p->row[p->n], "grader"), e->line, what, &p->ref[p->n].grader, err);
        if (!rc) rc = finish_ref(p, job, p->n, e->line, what, err);
        if (!rc && want_sft && p->answer[p->n] && p->answer[p->n][0])
            rc = al_chat_encode_text(chat, p->text[p->n], strlen(p->text[p->n]), p->answer[p->n],
                                     strlen(p->answer[p->n]), &p->sft[p->n].seq[0], err);
        p->sft[p->n].line = e->line;
        clip_prompt(&p->seq[p->n], maxp);
        p->n++;
    }
    al_dataset_free(ds);
    return rc;
}

/* ---- events ------------------------------------------------------------------- */

void rl_event(const al_train_cb *cb, al_log_level lvl, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (cb && cb->event) cb->event(cb->ud, lvl, buf);
}

/* ---- generation ---------------------------------------------------------------- */

int rl_generate(al_model *m, const al_seq *const *prompts, int n, const al_gen_cfg *g, al_rng *rng,
                int32_t *ids, float *logp, int *len, char err[AL_ERRLEN]) {
    const int32_t *pp[GEN_CHUNK];
    int pl[GEN_CHUNK];
    for (int i0 = 0; i0 < n; i0 += GEN_CHUNK) {
        int k = n - i0 < GEN_CHUNK ? n - i0 : GEN_CHUNK;
        for (int j = 0; j < k; j++) {
            pp[j] = prompts[i0 + j]->ids;
            pl[j] = prompts[i0 + j]->n;
        }
        int rc = al_generate(m, pp, pl, k, g, rng, ids + (size_t)i0 * g->max_new,
                             logp ? logp + (size_t)i0 * g->max_new : NULL, len + i0, err);
        if (rc) return rc;
    }
    return AL_OK;
}

char *rl_decode_completion(const al_tok *tok, const int32_t *ids, int n, int32_t eos, int *has_eos) {
    int e = n > 0 && ids[n - 1] == eos;
    if (has_eos) *has_eos = e;
    char *txt = NULL;
    size_t len;
    if (al_tok_decode(tok, ids, n - e, 1, &txt, &len)) return strdup("");
    return txt;
}

size_t rl_prompts_max_bytes(const rl_prompts *p) {
    size_t m = 0;
    for (int i = 0; i < p->n; i++) {
        size_t n = p->text[i] ? strlen(p->text[i]) : 0;
        if (n > m) m = n;
    }
    return m;
}

size_t rl_completion_max_bytes(const al_tok *tok, int max_new) {
    size_t m = 1;
    for (int32_t id = 0, V = al_tok_vocab_size(tok); id < V; id++) {
        char *txt = NULL;
        size_t len = 0;
        if (al_tok_decode(tok, &id, 1, 1, &txt, &len)) continue;
        if (len > m) m = len;
        free(txt);
    }
    return m * (size_t)(max_new > 0 ? max_new : 1);
}

/* ---- the RL state --------------------------------------------------------------- */

typedef struct rl {
    const al_job *job;
    const al_hparams *hp;
    const al_train_cb *cb;
    const char *resume;         /* the checkpoint resumed from, or NULL */
    const al_objective_ops *ops;
    void *obj;
    int ppo, grpo, rloo;
    al_tok *tok;
    al_chat *chat;
    int32_t pad, eos;
    al_model *m;                /* policy */
    al_model *ref;              /* separate frozen reference, or NULL */
    int ref_off;                /* reference = policy with adapters off */
    int use_ref;
    al_model *critic;           /* ppo */
    al_adamw opt, copt;
    al_ddp *ddp, *cddp;         /* policy's and critic's reduction across ranks (NULL alone) */
    int rank, world, world0;    /* world0: the ranks of the run a checkpoint came from */
    int Pg;                     /* prompts per step over all ranks: P x world */
    al_rewarder *rw;
    rl_prompts train, val;
    int all_answered;           /* every training prompt has an answer: its exact match is logged */
    al_bench *bench[AL_MAX_EVAL_TASKS]; /* eval_tasks with a benchmark file */
    int G, P, N;                /* completions per prompt, prompts per step, completions per step */
    int max_new, T, mb;         /* T: longest prompt + completion */
    int T_sft;
    /* per step, (N, T) with stride T */
    int32_t *ids, *pos, *seg, *tgt;
    float *old_logp, *ref_logp, *values, *adv, *ret, *rew, *kl;
    int32_t *comp;              /* (N, max_new) */
    float *samp;                /* (N, max_new) */
    int *plen, *clen, *has_eos;
    float *scores, *seq_adv;
    float *p_ver, *p_rm, *p_judge, *p_fmt, *p_http, *p_ext;
    char **ctext;               /* decoded completions */
    const char **cprompt;
    const al_reward_row **crow; /* what each completion is graded against */
    const al_seq **gen_prompts;
    int32_t *prow;              /* (N) prompt index of each row */
    /* micro-batch buffers, (mb, T) */
    int32_t *m_ids, *m_pos, *m_seg, *m_tgt;
    float *m_logp, *m_ent, *m_val, *m_old, *m_adv, *m_ret, *m_oldv, *m_ref, *m_dlogp, *m_dent, *m_dval;
    al_batch sft_batch;
    int32_t *perm, *order, *pidx, *plens, *idx;
    uint64_t *scratch;
    long order_epoch;
    al_mix mix;                 /* training_files: the weighted mixture's sampler */
    int mixing;
    al_rng rng;
    long step, total_steps, steps_per_epoch, cursor;
    double kl_coef, trained_tokens;
    /* health signals: per-step history */
    double h_len[HEALTH_WINDOW * 2], h_rew[HEALTH_WINDOW * 2], h_ref[HEALTH_WINDOW * 2];
    int h_n;
    double kl_mean, d2_first, ent_first;
    long warned_at[8];
    long n_updates, n_clipped;  /* optimiser updates, and how many were clipped (not checkpointed) */
    int clip_run;               /* consecutive steps whose every update was clipped */
    char err[AL_ERRLEN];
} rl;

static void rl_free(rl *r) {
    rl_prompts_free(&r->train);
    rl_prompts_free(&r->val);
    al_mix_deinit(&r->mix);
    for (int k = 0; k < AL_MAX_EVAL_TASKS; k++) al_bench_free(r->bench[k]);
    if (r->obj) r->ops->destroy(r->obj);
    al_adamw_deinit(&r->opt);
    al_adamw_deinit(&r->copt);
    al_ddp_free(r->cddp);
    al_ddp_free(r->ddp);
    al_rewarder_free(r->rw);
    al_model_free(r->critic); /* before the policy whose base it may share */
    al_model_free(r->ref);
    al_model_free(r->m);
    al_chat_free(r->chat);
    al_tok_free(r->tok);
    al_batch_deinit(&r->sft_batch);
    if (r->ctext)
        for (int i = 0; i < r->N; i++) free(r->ctext[i]);
    void *bufs[] = {r->ids, r->pos, r->seg, r->tgt, r->old_logp, r->ref_logp, r->values, r->adv, r->ret,
                    r->rew, r->kl, r->comp, r->samp, r->plen, r->clen, r->has_eos, r->scores, r->seq_adv,
                    r->p_ver, r->p_rm, r->p_judge, r->p_fmt, r->p_http, r->p_ext, r->ctext, r->cprompt, r->crow,
                    r->gen_prompts, r->prow,
                    r->m_ids, r->m_pos, r->m_seg, r->m_tgt, r->m_logp, r->m_ent, r->m_val, r->m_old, r->m_adv,
                    r->m_ret, r->m_oldv, r->m_ref, r->m_dlogp, r->m_dent, r->m_dval, r->perm, r->order,
                    r->pidx, r->scratch, r->plens, r->idx};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static size_t nz(size_t n) { return n ? n : 1; }

static int alloc_bufs(rl *r) {
    size_t NT = (size_t)r->N * r->T, MT = (size_t)r->mb * r->T, NM = (size_t)r->N * r->max_new;
#define A(p, n) if (!((p) = calloc(nz(n), sizeof *(p)))) return al_err(r->err, AL_ENOMEM, "out of memory")
    A(r->ids, NT); A(r->pos, NT); A(r->seg, NT); A(r->tgt, NT);
    A(r->old_logp, NT); A(r->ref_logp, NT); A(r->values, NT); A(r->adv, NT); A(r->ret, NT);
    A(r->rew, NT); A(r->kl, NT);
    A(r->comp, NM); A(r->samp, NM);
    A(r->plen, (size_t)r->N); A(r->clen, (size_t)r->N); A(r->has_eos, (size_t)r->N);
    A(r->scores, (size_t)r->N); A(r->seq_adv, (size_t)r->N);
    A(r->p_ver, (size_t)r->N); A(r->p_rm, (size_t)r->N); A(r->p_judge, (size_t)r->N);
    A(r->p_fmt, (size_t)r->N); A(r->p_http, (size_t)r->N); A(r->p_ext, (size_t)r->N);
    A(r->ctext, (size_t)r->N); A(r->cprompt, (size_t)r->N); A(r->crow, (size_t)r->N);
    A(r->gen_prompts, (size_t)r->N); A(r->prow, (size_t)r->N);
    A(r->m_ids, MT); A(r->m_pos, MT); A(r->m_seg, MT); A(r->m_tgt, MT);
    A(r->m_logp, MT); A(r->m_ent, MT); A(r->m_val, MT); A(r->m_old, MT); A(r->m_adv, MT);
    A(r->m_ret, MT); A(r->m_oldv, MT); A(r->m_ref, MT); A(r->m_dlogp, MT); A(r->m_dent, MT);
    A(r->m_dval, MT);
    A(r->perm, (size_t)r->N); A(r->order, (size_t)r->train.n); A(r->pidx, (size_t)r->P);
    A(r->scratch, (size_t)2 * (r->max_new + 1));
    A(r->plens, (size_t)r->train.n); A(r->idx, (size_t)r->N + r->P);
#undef A
    for (int i = 0; i < r->train.n; i++) r->plens[i] = r->train.seq[i].n;
    return AL_OK;
}

/* ---- set-up ----------------------------------------------------------------------- */

static int open_critic(rl *r) {
    const al_job *job = r->job;
    char e2[AL_ERRLEN];
    int rc;
    if (job->critic == AL_CRITIC_SHARED_BASE) {
        r->critic = al_model_new_shared(r->m, &job->lora, job->hp.seed ^ 0xC817Cull, e2);
        if (!r->critic) return al_err(r->err, AL_ENOMEM, "critic: %s", e2);
        return AL_OK;
    }
    const char *src = job->critic_model[0] ? job->critic_model
                      : job->reward.n_reward_models ? job->reward.reward_model[0] : job->model;
    const char *field = job->critic_model[0] ? "critic_model" : job->reward.n_reward_models ? "reward.reward_model" : "model";
    if ((rc = al_model_open_ex(&r->critic, src, job->use_lora ? &job->lora : NULL,
                               AL_OPEN_SCORE_HEAD | al_job_open_flags(job), job->hp.seed ^ 0xC817Cull, e2)))
        return al_err(r->err, rc, "%s: %s", field, e2);
    if (al_model_config_of(r->critic)->V != al_model_config_of(r->m)->V)
        return al_err(r->err, AL_EINVAL, "%s: the critic's vocabulary (%d) differs from the policy's (%d)", field,
                      al_model_config_of(r->critic)->V, al_model_config_of(r->m)->V);
    return AL_OK;
}

/* A rank's stream: the one-process seed on rank 0 (and alone), mixed with
 * the rank elsewhere. */
static uint64_t rank_seed(const rl *r, uint64_t seed) {
    return seed ^ (uint64_t)r->rank * 0x9E3779B97F4A7C15ull;
}

/* The reductions across ranks and the optimisers (their slices, with
 * ZeRO-1): after every rank's set-up succeeded (al_ddp_new is collective). */
static int start_dist(rl *r) {
    const al_hparams *hp = r->hp;
    al_adamw_cfg oc = {.lr = hp->learning_rate, .beta1 = hp->adam_beta1, .beta2 = hp->adam_beta2,
                       .eps = hp->adam_epsilon, .weight_decay = hp->weight_decay};
    char e2[AL_ERRLEN];
    int rc = al_ddp_new(&r->ddp, r->m, &r->job->dist, e2);
    if (!rc && r->critic) rc = al_ddp_new(&r->cddp, r->critic, &r->job->dist, e2);
    if (rc) return al_err(r->err, rc, "%s", e2);
    if ((rc = al_ddp_adamw_init(r->ddp, &r->opt, &oc, r->m))) return al_err(r->err, rc, "out of memory for AdamW");
    if (r->critic && (rc = al_ddp_adamw_init(r->cddp, &r->copt, &oc, r->critic)))
        return al_err(r->err, rc, "out of memory for AdamW");
    if (r->world > 1)
        rl_event(r->cb, AL_LOG_INFO, "distributed: %d ranks, %d prompts x %d completions per rank per step (%d "
                 "prompts in all), %s", r->world, r->P, r->G, r->Pg,
                 r->job->dist.shard_optimizer ? "AdamW moments sharded (ZeRO-1)" : "AdamW moments on every rank");
    return AL_OK;
}

static void event_line(void *ud, const char *line) { rl_event(ud, AL_LOG_INFO, "%s", line); }

/* What reading a prompt file did: rows skipped, the hygiene filters' drops. */
static void prompts_events(rl *r, const rl_prompts *p, const char *what) {
    const json_t *rep = p->report, *errs = json_object_get(rep, "errors");
    long bad = (long)json_integer_value(json_object_get(rep, "rows")) -
               (long)json_integer_value(json_object_get(rep, "valid_rows"));
    rl_event(r->cb, bad ? AL_LOG_WARN : AL_LOG_INFO, "%s: %lld rows, format %s, %d prompts; %ld bad lines skipped",
             what, (long long)json_integer_value(json_object_get(rep, "rows")),
             json_string_value(json_object_get(rep, "format")), p->n, bad);
    for (size_t i = 0; i < json_array_size(errs) && i < 20; i++) {
        const json_t *e = json_array_get(errs, i);
        rl_event(r->cb, AL_LOG_WARN, "%s: %s (%s)", what, json_string_value(json_object_get(e, "message")),
                 json_string_value(json_object_get(e, "code")));
    }
    al_hygiene_describe(rep, what, 20, event_line, (void *)r->cb);
}

/* training_files: each file's prompts one after the other, and the sampler
 * that mixes them by weight (lib/text/mix.h, as the trainer mixes). */
static int mixture_prompts(rl *r, int want_sft) {
    const al_job *job = r->job;
    int32_t n[AL_MAX_TRAIN_FILES];
    double w[AL_MAX_TRAIN_FILES], wsum = 0;
    int rc = AL_OK;
    for (int k = 0; k < job->n_train_files && !rc; k++) {
        char what[48];
        rl_prompts part;
        memset(&part, 0, sizeof part);
        snprintf(what, sizeof what, "training_files[%d]", k);
        rc = rl_prompts_load(&part, job, r->chat, 0, 0, 0, 0, job->train_files[k].file, what, want_sft, r->err);
        if (!rc && !part.n) rc = al_err(r->err, AL_EINVAL, "%s: no prompts", what);
        if (!rc) {
            prompts_events(r, &part, what);
            n[k] = part.n;
            w[k] = job->train_files[k].weight;
            wsum += w[k];
            rc = rl_prompts_append(&r->train, &part, r->err);
        }
        rl_prompts_free(&part);
    }
    if (rc) return rc;
    char e2[AL_ERRLEN];
    if ((rc = al_mix_init(&r->mix, job->n_train_files, n, w, r->hp->seed, e2)))
        return al_err(r->err, rc, "training_files: %s", e2);
    r->mixing = 1;
    for (int k = 0; k < job->n_train_files; k++)
        rl_event(r->cb, AL_LOG_INFO, "training_files[%d]: %d prompts, weight %g: %.1f%% of the prompts drawn", k,
                 n[k], w[k], 100.0 * w[k] / wsum);
    return AL_OK;
}

static int setup(rl *r) {
    const al_job *job = r->job;
    const al_hparams *hp = r->hp;
    int rc;
    char e2[AL_ERRLEN];
    r->ops = al_objective_find(job->method);
    if (!r->ops) return al_err(r->err, AL_EINVAL, "method: '%s' is unknown", job->method);
    al_error oe;
    if ((rc = r->ops->create(hp, &r->obj, &oe))) return al_err(r->err, rc, "%s", oe.msg);
    r->ppo = !strcmp(job->method, "ppo");
    r->grpo = !strcmp(job->method, "grpo");
    r->rloo = !strcmp(job->method, "rloo");
    r->G = r->ppo ? 1 : hp->num_generations;
    /* batch_size completions on each rank, or resuming, the global batch the
     * checkpoint was trained with split over the ranks there are now */
    r->rank = al_dist_rank();
    r->world = r->world0 = al_dist_size();
    if ((long)hp->batch_size * r->world > (1L << 30))
        return al_err(r->err, AL_EINVAL, "hyperparameters.batch_size: %d on %d ranks is too large a global batch",
                      hp->batch_size, r->world);
    int gn = hp->batch_size * r->world, ws;
    al_ckpt_world(r->resume, &gn, &ws);
    if (gn > 0) r->world0 = ws;
    else gn = hp->batch_size * r->world;
    if (gn % (r->G * r->world))
        return al_err(r->err, AL_EINVAL, "hyperparameters.batch_size: the checkpoint's %d completions a step do not "
                      "split into whole groups of %d over %d ranks", gn, r->G, r->world);
    r->N = gn / r->world;
    r->P = r->N / r->G;
    r->Pg = r->P * r->world;
    if ((rc = al_tok_load(&r->tok, job->model, r->err))) return rc;
    if ((rc = al_chat_new(&r->chat, r->tok, job->chat_template, r->err))) return rc;
    r->pad = al_chat_pad_id(r->chat);
    r->eos = al_tok_eos(r->tok);
    if ((rc = al_model_open_ex(&r->m, job->model, job->use_lora ? &job->lora : NULL, al_job_open_flags(job),
                               hp->seed, e2)))
        return al_err(r->err, rc, "model: %s", e2);
    if (hp->save_dtype) al_model_set_save_dtype(r->m, (al_dtype)hp->save_dtype);
    const al_model_config *mc = al_model_config_of(r->m);
    if (!mc->has_lm_head) return al_err(r->err, AL_EINVAL, "model: %s has no language-model head", job->model);
    al_model_set_temperature(r->m, hp->temperature);
    /* prompts */
    int want_sft = hp->sft_mix_ratio > 0;
    if (job->task[0]) {
        if ((rc = rl_prompts_load(&r->train, job, r->chat, 1, job->task_rows, job->task_seed, job->task_split,
                                  NULL, "task", want_sft, r->err)))
            return rc;
        long vrows = job->task_rows / 10 < 200 ? job->task_rows / 10 : 200;
        if (vrows < 8) vrows = 8;
        /* validation prompts from the held-out split */
        if ((rc = rl_prompts_load(&r->val, job, r->chat, 1, vrows, job->task_seed + 1000003u, AL_SPLIT_TEST, NULL,
                                  "task", 0, r->err)))
            return rc;
    } else {
        if (job->n_train_files) rc = mixture_prompts(r, want_sft);
        else if (!(rc = rl_prompts_load(&r->train, job, r->chat, 0, 0, 0, 0, job->training_file, "training_file",
                                        want_sft, r->err)))
            prompts_events(r, &r->train, "training_file");
        if (rc) return rc;
        if (job->validation_file[0] &&
            (rc = rl_prompts_load(&r->val, job, r->chat, 0, 0, 0, 0, job->validation_file, "validation_file", 0,
                                  r->err)))
            return rc;
    }
    if (r->train.n == 0) return al_err(r->err, AL_EINVAL, "training data: no prompts");
    r->all_answered = 1;
    for (int i = 0; i < r->train.n; i++) r->all_answered &= r->train.answer[i] != NULL;
    if (job->reward.verifiable != 0)
        for (int i = 0; i < r->train.n; i++)
            if (!r->train.answer[i])
                return al_err(r->err, AL_EINVAL, "reward.verifiable: the prompt at line %d has no answer "
                              "(give \"answer\" in the data)", r->train.sft[i].line ? r->train.sft[i].line : i + 1);
    int maxp = 0, maxs = 1;
    for (int i = 0; i < r->train.n; i++) {
        if (r->train.seq[i].n > maxp) maxp = r->train.seq[i].n;
        if (r->train.sft[i].seq[0].n > maxs) maxs = r->train.sft[i].seq[0].n;
    }
    for (int i = 0; i < r->val.n; i++)
        if (r->val.seq[i].n > maxp) maxp = r->val.seq[i].n;
    r->max_new = hp->max_completion_length;
    if (maxp + r->max_new > mc->max_T) r->max_new = mc->max_T - maxp;
    if (r->max_new < 1)
        return al_err(r->err, AL_EINVAL, "hyperparameters.max_prompt_length: prompts of %d tokens leave no room "
                      "for a completion in the context of %d", maxp, mc->max_T);
    r->T = maxp + r->max_new;
    r->T_sft = maxs < mc->max_T ? maxs : mc->max_T;
    r->mb = hp->micro_batch_size < r->N ? hp->micro_batch_size : r->N;
    if (r->ppo && r->mb > r->N / hp->num_mini_batches) r->mb = r->N / hp->num_mini_batches;
    if (r->mb < 1) r->mb = 1;
    int rowsT = r->T > r->T_sft ? r->T : r->T_sft;
    /* eval_tasks: benchmark files (a built-in task's prompts are the validation split) */
    for (int k = 0; k < job->n_eval_tasks; k++) {
        const al_eval_task *et = &job->eval_tasks[k];
        char type[32] = "loss", what[48];
        snprintf(what, sizeof what, "eval_tasks[%d]", k);
        if (et->task[0]) continue;
        if (et->type[0]) snprintf(type, sizeof type, "%s", et->type);
        else if ((rc = al_bench_detect(et->file, type, r->err))) return rc;
        if (!strcmp(type, "loss")) {
            rl_event(r->cb, AL_LOG_WARN, "%s: a loss file is measured by SFT-like jobs only; left out", what);
            continue;
        }
        if ((rc = al_bench_load(&r->bench[k], et, r->chat, &job->reward.grader, mc->max_T, what, r->err))) return rc;
        if (al_bench_longest(r->bench[k]) > rowsT) rowsT = al_bench_longest(r->bench[k]);
    }
    if ((rc = al_model_reserve(r->m, r->mb, rowsT, hp->gradient_checkpointing ? AL_MODEL_GRAD_CKPT : 0, e2)))
        return al_err(r->err, rc, "%s", e2);
    if (want_sft && (rc = al_batch_init(&r->sft_batch, AL_BATCH_LM, r->mb, r->T_sft)))
        return al_err(r->err, rc, "out of memory");
    /* reference */
    r->use_ref = r->ppo ? (hp->kl_coef > 0 || hp->adaptive_kl) : hp->beta > 0;
    if (r->use_ref) {
        if (job->ref_model[0]) {
            if ((rc = al_model_open_ex(&r->ref, job->ref_model, NULL, AL_OPEN_FROZEN | al_job_open_flags(job), 0,
                                       e2)))
                return al_err(r->err, rc, "ref_model: %s", e2);
        } else if (job->use_lora) {
            r->ref_off = 1;
        } else if ((rc = al_model_open_ex(&r->ref, job->model, NULL, AL_OPEN_FROZEN | al_job_open_flags(job), 0,
                                          e2))) {
            return al_err(r->err, rc, "model: %s", e2);
        }
        if (r->ref) {
            al_model_set_temperature(r->ref, hp->temperature);
            if (al_model_config_of(r->ref)->V != mc->V)
                return al_err(r->err, AL_EINVAL, "ref_model: its vocabulary differs from the policy's");
            if ((rc = al_model_reserve(r->ref, r->mb, r->T, AL_MODEL_FORWARD_ONLY, e2)))
                return al_err(r->err, rc, "%s", e2);
        }
    }
    if (r->ppo) {
        if ((rc = open_critic(r))) return rc;
        /* the critic runs in the policy's activations (update_rows runs the two one
         * after the other); a separate critic of another shape keeps its own */
        rc = al_model_share_activations(r->critic, r->m, e2);
        if (rc == AL_EINVAL && job->critic == AL_CRITIC_SEPARATE) rc = AL_OK;
        if (!rc) rc = al_model_reserve(r->critic, r->mb, r->T, hp->gradient_checkpointing ? AL_MODEL_GRAD_CKPT : 0, e2);
        if (rc) return al_err(r->err, rc, "%s", e2);
    }
    size_t pb_train = rl_prompts_max_bytes(&r->train), pb_val = rl_prompts_max_bytes(&r->val);
    al_reward_len rlen = {pb_train > pb_val ? pb_train : pb_val, rl_completion_max_bytes(r->tok, r->max_new)};
    if ((rc = al_rewarder_new(&r->rw, &job->reward, hp->missing_eos_penalty, r->mb, &rlen, r->err))) return rc;
    if ((rc = al_rewarder_attach(r->rw, r->cb, r->err))) return rc;
    r->steps_per_epoch = (r->train.n + r->Pg - 1) / r->Pg;
    r->total_steps = hp->max_steps >= 0 ? hp->max_steps : r->steps_per_epoch * hp->n_epochs;
    if ((rc = alloc_bufs(r))) return rc;
    al_rng_seed(&r->rng, rank_seed(r, hp->seed ^ 0x5A3D1E5ull));
    r->kl_coef = hp->kl_coef;
    r->order_epoch = -1;
    rl_event(r->cb, AL_LOG_INFO,
             "%s: %d prompts (%d validation), %d per step x %d completions, %ld steps, %zu trainable parameters%s",
             job->method, r->train.n, r->val.n, r->P, r->G, r->total_steps, al_model_num_params(r->m, 1),
             r->ppo ? (job->critic == AL_CRITIC_SHARED_BASE ? ", critic: value head + LoRA on the shared base"
                                                            : ", critic: a separate model") : "");
    return AL_OK;
}

/* ---- rollout ------------------------------------------------------------------------ */

/* The prompts of the step: the cursor runs through a seeded permutation per
 * epoch, so the step number alone fixes them. */
static void step_prompts(rl *r, long step) {
    if (r->mixing) {
        /* a mixture's global draws s*Pg .. s*Pg+Pg-1, this rank's share of
         * them: replayed from the start when the sampler is past them (step 0
         * measures what step 1 trains on) */
        int64_t want = (int64_t)step * r->Pg + (int64_t)r->rank * r->P;
        if (r->mix.draws > want) al_mix_rewind(&r->mix);
        while (r->mix.draws < want) al_mix_next(&r->mix);
        for (int k = 0; k < r->P; k++) r->pidx[k] = al_mix_next(&r->mix);
        r->cursor = (step + 1) * r->Pg;
        return;
    }
    /* this rank's share of the step's global list of Pg prompts */
    for (int k = 0; k < r->P; k++) {
        long g = step * r->Pg + (long)r->rank * r->P + k;
        long epoch = g / r->train.n, i = g % r->train.n;
        if (epoch != r->order_epoch) {
            al_batch_order(r->plens, r->train.n, r->Pg, 0, r->hp->seed + (uint64_t)epoch * 0x9E3779B9u, r->order);
            r->order_epoch = epoch;
        }
        r->pidx[k] = r->order[i];
    }
    r->cursor = (step + 1) * r->Pg;
}

/* Copies rows idx[0..k) of the step buffers into the micro-batch buffers
 * with their own padded length; returns it. */
static int gather(rl *r, const int32_t *idx, int k) {
    int T = 1;
    for (int j = 0; j < k; j++) {
        int L = r->plen[idx[j]] + r->clen[idx[j]];
        if (L > T) T = L;
    }
    for (int j = 0; j < k; j++) {
        size_t s = (size_t)idx[j] * r->T, d = (size_t)j * T;
        memcpy(r->m_ids + d, r->ids + s, (size_t)T * sizeof *r->m_ids);
        memcpy(r->m_pos + d, r->pos + s, (size_t)T * sizeof *r->m_pos);
        memcpy(r->m_seg + d, r->seg + s, (size_t)T * sizeof *r->m_seg);
        memcpy(r->m_tgt + d, r->tgt + s, (size_t)T * sizeof *r->m_tgt);
        memcpy(r->m_old + d, r->old_logp + s, (size_t)T * sizeof *r->m_old);
        memcpy(r->m_adv + d, r->adv + s, (size_t)T * sizeof *r->m_adv);
        memcpy(r->m_ret + d, r->ret + s, (size_t)T * sizeof *r->m_ret);
        memcpy(r->m_oldv + d, r->values + s, (size_t)T * sizeof *r->m_oldv);
        memcpy(r->m_ref + d, r->ref_logp + s, (size_t)T * sizeof *r->m_ref);
    }
    return T;
}

static void scatter(rl *r, float *dst, const float *src, const int32_t *idx, int k, int T) {
    for (int j = 0; j < k; j++) memcpy(dst + (size_t)idx[j] * r->T, src + (size_t)j * T, (size_t)T * sizeof *dst);
}

static int forward_ref(rl *r, const al_tokens *in, float *out) {
    al_fwd f = {.logp = out};
    int rc;
    if (r->ref_off) {
        al_model_set_adapters(r->m, 0);
        rc = al_model_forward(r->m, in, &f);
        al_model_set_adapters(r->m, 1);
    } else {
        rc = al_model_forward(r->ref, in, &f);
    }
    return rc ? al_err(r->err, rc, "reference forward failed: %s", al_strerror(rc)) : AL_OK;
}

static int rollout(rl *r, long step) {
    const al_hparams *hp = r->hp;
    int rc;
    step_prompts(r, step);
    for (int i = 0; i < r->N; i++) {
        int p = r->pidx[i / r->G];
        r->prow[i] = p;
        r->gen_prompts[i] = &r->train.seq[p];
    }
    al_gen_cfg g = {.max_new = r->max_new, .temperature = hp->temperature, .top_k = hp->top_k,
                    .top_p = hp->top_p > 0 ? hp->top_p : 1, .stop = &r->eos, .n_stop = r->eos >= 0};
    char e2[AL_ERRLEN];
    if ((rc = rl_generate(r->m, r->gen_prompts, r->N, &g, &r->rng, r->comp, r->samp, r->clen, e2)))
        return al_err(r->err, rc, "generation failed: %s", e2);
    /* the (N, T) rows: prompt + completion; position plen-1+j predicts token j */
    for (int i = 0; i < r->N; i++) {
        const al_seq *ps = r->gen_prompts[i];
        int pl = ps->n, cl = r->clen[i];
        r->plen[i] = pl;
        size_t o = (size_t)i * r->T;
        const int32_t *c = r->comp + (size_t)i * r->max_new;
        r->has_eos[i] = cl > 0 && c[cl - 1] == r->eos;
        int drop = hp->mask_truncated_completions && !r->has_eos[i];
        for (int t = 0; t < r->T; t++) {
            int in = t < pl + cl;
            r->ids[o + t] = t < pl ? ps->ids[t] : in ? c[t - pl] : r->pad;
            r->pos[o + t] = in ? t : 0;
            r->seg[o + t] = in;
            int j = t - (pl - 1);
            int scored = j >= 0 && j < cl && !drop;
            r->tgt[o + t] = scored ? c[j] : -1;
            r->old_logp[o + t] = scored ? r->samp[(size_t)i * r->max_new + j] : 0;
            r->ref_logp[o + t] = 0;
            r->values[o + t] = 0;
        }
        free(r->ctext[i]);
        r->ctext[i] = rl_decode_completion(r->tok, c, cl, r->eos, NULL);
        if (!r->ctext[i]) return al_err(r->err, AL_ENOMEM, "out of memory");
        r->cprompt[i] = r->train.text[r->prow[i]];
        r->crow[i] = &r->train.ref[r->prow[i]];
    }
    /* reference log-probs and critic values, micro-batch by micro-batch */
    for (int i0 = 0; i0 < r->N && (r->use_ref || r->ppo); i0 += r->mb) {
        int k = r->N - i0 < r->mb ? r->N - i0 : r->mb;
        int32_t *idx = r->idx;
        for (int j = 0; j < k; j++) idx[j] = i0 + j;
        int T = gather(r, idx, k);
        al_tokens in = {.B = k, .T = T, .ids = r->m_ids, .seg = r->m_seg, .pos = r->m_pos, .targets = r->m_tgt};
        if (r->use_ref) {
            if ((rc = forward_ref(r, &in, r->m_ref))) return rc;
            scatter(r, r->ref_logp, r->m_ref, idx, k, T);
        }
        if (r->ppo) {
            al_tokens cin = in;
            cin.targets = NULL;
            al_fwd f = {.values = r->m_val};
            if ((rc = al_model_forward(r->critic, &cin, &f)))
                return al_err(r->err, rc, "critic forward failed: %s", al_strerror(rc));
            scatter(r, r->values, r->m_val, idx, k, T);
        }
    }
    al_reward_parts parts = {r->p_ver, r->p_rm, r->p_judge, r->p_fmt, r->p_http, r->p_ext};
    if ((rc = al_rewarder_score_rows(r->rw, r->N, r->G, r->cprompt, (const char *const *)r->ctext, r->crow,
                                r->clen, r->has_eos, r->scores, &parts, e2)))
        return al_err(r->err, rc, "reward: %s", e2);
    return AL_OK;
}

/* Advantages (and PPO's returns) into adv/ret. */
static int advantages(rl *r, al_step_stats *st, int *zero_std) {
    const al_hparams *hp = r->hp;
    size_t NT = (size_t)r->N * r->T;
    *zero_std = 0;
    if (r->ppo) {
        al_rl_token_rewards(r->rew, r->kl, r->old_logp, r->use_ref ? r->ref_logp : NULL, r->tgt, r->scores, r->N,
                            r->T, r->kl_coef, hp->kl_estimator);
        if (hp->whiten_rewards) al_rl_whiten_global(r->rew, r->tgt, r->N, r->T, 0);
        al_rl_gae(r->adv, r->ret, r->rew, r->values, r->tgt, r->N, r->T, hp->gamma, hp->lam);
        al_rl_whiten_global(r->adv, r->tgt, r->N, r->T, 1);
        double sd = 0, mean = 0;
        for (int i = 0; i < r->N; i++) mean += r->scores[i] / (r->N * r->world);
        al_dist_sum(&mean, 1);
        for (int i = 0; i < r->N; i++) sd += (r->scores[i] - mean) * (r->scores[i] - mean);
        al_dist_sum(&sd, 1);
        *zero_std = sd < 1e-12;
        return AL_OK;
    }
    /* sequence KL (k1 sums) for RLOO's reward and the metrics */
    for (size_t i = 0; i < NT; i++)
        r->kl[i] = r->tgt[i] >= 0 && r->use_ref ? (float)al_rl_kl(r->old_logp[i], r->ref_logp[i], AL_KL_K1) : 0;
    if (r->grpo) {
        *zero_std = al_rl_group_adv_global(r->seq_adv, r->scores, r->P, r->G, hp->scale_rewards);
    } else {
        float *seqr = r->rew; /* scratch (N) */
        for (int i = 0; i < r->N; i++) {
            double k = 0;
            for (int t = 0; t < r->T; t++) k += r->kl[(size_t)i * r->T + t];
            seqr[i] = (float)(r->scores[i] - hp->beta * k);
        }
        al_rl_rloo_adv(r->seq_adv, seqr, r->P, r->G);
        for (int g = 0; g < r->P; g++) {
            double s = 0, ss = 0;
            for (int k = 0; k < r->G; k++) s += seqr[g * r->G + k];
            for (int k = 0; k < r->G; k++) ss += (seqr[g * r->G + k] - s / r->G) * (seqr[g * r->G + k] - s / r->G);
            *zero_std += ss < 1e-12;
        }
        int Ng = r->N * r->world;
        if (hp->normalize_advantages && Ng > 1) {
            double m = 0, v = 0;
            for (int i = 0; i < r->N; i++) m += r->seq_adv[i] / Ng;
            al_dist_sum(&m, 1);
            for (int i = 0; i < r->N; i++) v += (r->seq_adv[i] - m) * (r->seq_adv[i] - m) / (Ng - 1);
            al_dist_sum(&v, 1);
            for (int i = 0; i < r->N; i++) r->seq_adv[i] = (float)((r->seq_adv[i] - m) / (sqrt(v) + 1e-8));
        }
    }
    for (int i = 0; i < r->N; i++)
        for (int t = 0; t < r->T; t++) {
            size_t o = (size_t)i * r->T + t;
            r->adv[o] = r->tgt[o] >= 0 ? r->seq_adv[i] : 0;
            r->ret[o] = 0;
        }
    (void)st;
    return AL_OK;
}

/* ---- updates ----------------------------------------------------------------------- */

/* The step's reference answers on this rank (into r->idx; returns their
 * count) and their trained tokens. */
static int sft_rows(rl *r, double *tokens) {
    int32_t *idx = r->idx;
    int n = 0;
    for (int k = 0; k < r->P; k++)
        if (r->train.sft[r->pidx[k]].seq[0].n > 0) idx[n++] = r->pidx[k];
    double tk = 0;
    for (int i = 0; i < n; i++) {
        const al_seq *s = &r->train.sft[idx[i]].seq[0];
        for (int t = 1; t < s->n; t++) tk += s->mask[t];
    }
    *tokens = tk;
    return n;
}

/* The SFT term of sft_mix_ratio on the step's reference answers: adds
 * ratio * (token-mean NLL) and its gradient; tokens: their trained tokens
 * over every rank (the denominator). Its last backward is the step's. */
static int sft_mix(rl *r, double tokens, al_step_stats *st) {
    int32_t *idx = r->idx;
    double mine;
    int n = sft_rows(r, &mine);
    if (n == 0 || tokens <= 0) return AL_OK;
    al_model_set_temperature(r->m, 1);
    int rc = AL_OK;
    double nll = 0;
    for (int i0 = 0; i0 < n && !rc; i0 += r->mb) {
        int k = n - i0 < r->mb ? n - i0 : r->mb;
        if ((rc = al_batch_fill(&r->sft_batch, r->train.sft, idx + i0, k, r->pad, r->err))) break;
        al_tokens in = al_batch_tokens(&r->sft_batch);
        al_fwd f = {.logp = r->m_logp};
        if ((rc = al_model_forward(r->m, &in, &f))) {
            rc = al_err(r->err, rc, "forward failed: %s", al_strerror(rc));
            break;
        }
        size_t cnt = (size_t)in.B * in.T;
        for (size_t q = 0; q < cnt; q++) {
            r->m_dlogp[q] = in.targets[q] >= 0 ? (float)(-r->hp->sft_mix_ratio / tokens) : 0;
            if (in.targets[q] >= 0) nll -= r->m_logp[q] / tokens;
        }
        if (i0 + k >= n) al_ddp_arm(r->ddp); /* the step's last backward */
        if ((rc = al_model_backward(r->m, &in, r->m_dlogp, NULL, NULL)))
            rc = al_err(r->err, rc, "backward failed: %s", al_strerror(rc));
    }
    al_model_set_temperature(r->m, r->hp->temperature);
    if (!rc) {
        st->loss += r->hp->sft_mix_ratio * nll;
        al_stats_add(st, "sft_loss", nll);
    }
    return rc;
}

static int loss_failed(rl *r, int rc) {
    if (rc == AL_ENAN) return al_err(r->err, AL_ENAN, "divergence: the loss is not finite at step %ld", r->step + 1);
    return al_err(r->err, rc, "objective %s failed: %s", r->ops->name, al_strerror(rc));
}

/* Forward, objective and backward over rows idx[0..n) in micro-batches,
 * accumulating gradients and stats; the denominators count the rows and
 * tokens of every rank (collective, first). last: these are the step's last
 * backward passes (no SFT term follows), which start the reductions. */
static int update_rows(rl *r, const int32_t *idx, int n, int use_old, int last, al_step_stats *st) {
    double norms[2] = {0, (double)n}; /* scored tokens, rows */
    for (int j = 0; j < n; j++)
        for (int t = 0; t < r->T; t++) norms[0] += r->tgt[(size_t)idx[j] * r->T + t] >= 0;
    al_dist_sum(norms, 2);
    double norm_tokens = norms[0], norm_rows = norms[1];
    if (norm_tokens <= 0) return AL_OK;
    int rc;
    for (int i0 = 0; i0 < n; i0 += r->mb) {
        int k = n - i0 < r->mb ? n - i0 : r->mb;
        int T = gather(r, idx + i0, k);
        al_tokens in = {.B = k, .T = T, .ids = r->m_ids, .seg = r->m_seg, .pos = r->m_pos, .targets = r->m_tgt};
        size_t cnt = (size_t)k * T;
        al_obj_in oi = {.R = k, .T = T, .targets = r->m_tgt, .logp = NULL, .entropy = r->m_ent,
                        .values = r->ppo ? r->m_val : NULL, .ref_logp = r->use_ref ? r->m_ref : NULL,
                        .norm_tokens = norm_tokens, .norm_rows = norm_rows, .old_logp = use_old ? r->m_old : NULL,
                        .adv = r->m_adv, .returns = r->m_ret, .old_values = r->m_oldv};
        if (r->ppo) {
            /* the critic first, forward to backward: its value loss needs only its own
             * values, so it may share the policy's activations (setup) */
            al_tokens cin = in;
            cin.targets = NULL;
            al_fwd cf = {.values = r->m_val};
            if ((rc = al_model_forward(r->critic, &cin, &cf)))
                return al_err(r->err, rc, "critic forward failed: %s", al_strerror(rc));
            memset(r->m_dval, 0, cnt * sizeof(float));
            al_obj_out vo = {.dvalue = r->m_dval};
            if ((rc = r->ops->loss(r->obj, &oi, &vo, st))) return loss_failed(r, rc);
            if (i0 + k >= n) al_ddp_arm(r->cddp); /* the critic's last backward of the step */
            if ((rc = al_model_backward(r->critic, &in, NULL, NULL, r->m_dval)))
                return al_err(r->err, rc, "critic backward failed: %s", al_strerror(rc));
        }
        al_fwd f = {.logp = r->m_logp, .entropy = r->m_ent};
        if ((rc = al_model_forward(r->m, &in, &f))) return al_err(r->err, rc, "forward failed: %s", al_strerror(rc));
        memset(r->m_dlogp, 0, cnt * sizeof(float));
        memset(r->m_dent, 0, cnt * sizeof(float));
        oi.logp = r->m_logp;
        al_obj_out oo = {.dlogp = r->m_dlogp, .dent = r->m_dent};
        if ((rc = r->ops->loss(r->obj, &oi, &oo, st))) return loss_failed(r, rc);
        if (last && i0 + k >= n) al_ddp_arm(r->ddp);
        if ((rc = al_model_backward(r->m, &in, r->m_dlogp, r->hp->entropy_coef > 0 ? r->m_dent : NULL, NULL)))
            return al_err(r->err, rc, "backward failed: %s", al_strerror(rc));
    }
    return AL_OK;
}

static void zero_grads(rl *r) {
    al_model_zero_grad(r->m);
    if (r->critic) al_model_zero_grad(r->critic);
}

/* Clips the policy's and critic's gradients together (their global norm,
 * summed over ranks), then one AdamW step each. */
static double optimizer_step(rl *r, float lr) {
    double mx = r->hp->max_grad_norm;
    r->n_updates++;
    if (!r->ddp) {
        /* one process: as before lib/dist, to the last bit */
        double a = al_model_grad_norm(r->m), b = r->critic ? al_model_grad_norm(r->critic) : 0;
        double norm = sqrt(a * a + b * b);
        if (mx > 0 && norm > mx && isfinite(norm)) {
            r->n_clipped++;
            if (a > 0) al_clip_grad_norm(r->m, mx * a / norm);
            if (b > 0) al_clip_grad_norm(r->critic, mx * b / norm);
        }
        al_adamw_step(&r->opt, r->m, lr);
        if (r->critic) al_adamw_step(&r->copt, r->critic, lr);
        return norm;
    }
    double a2 = al_ddp_grad_sumsq(r->ddp, r->m), b2 = r->critic ? al_ddp_grad_sumsq(r->cddp, r->critic) : 0;
    double norm = sqrt(a2 + b2);
    if (mx > 0 && norm > mx && isfinite(norm)) {
        r->n_clipped++;
        /* torch.nn.utils.clip_grad_norm_ over both models' parameters */
        float coef = (float)(mx / (norm + 1e-6));
        al_ddp_grad_scale(r->ddp, r->m, coef);
        if (r->critic) al_ddp_grad_scale(r->cddp, r->critic, coef);
    }
    al_ddp_adamw_step(r->ddp, &r->opt, r->m, lr);
    if (r->critic) al_ddp_adamw_step(r->cddp, &r->copt, r->critic, lr);
    return norm;
}

/* One optimiser step's gradients over rows idx[0..n): forward, objective
 * and backward here, the SFT term, then the sums over ranks (every rank
 * passes every collective, one that failed too) and an agreement on the
 * outcome. */
static int step_grads(rl *r, const int32_t *idx, int n, int use_old, al_step_stats *st) {
    int sft = r->hp->sft_mix_ratio > 0;
    double tokens = 0;
    if (sft) {
        sft_rows(r, &tokens);
        al_dist_sum(&tokens, 1);
    }
    zero_grads(r);
    int rc = update_rows(r, idx, n, use_old, !sft, st);
    if (!rc && sft) rc = sft_mix(r, tokens, st);
    char e2[AL_ERRLEN];
    int r1 = al_ddp_reduce(r->cddp, e2), r2 = al_ddp_reduce(r->ddp, e2);
    if (!rc && (r1 || r2)) rc = al_err(r->err, r1 ? r1 : r2, "%s", e2);
    return al_dist_agree_err(rc, r->err);
}

/* The updates of one rollout; st receives the mean over its optimiser steps. */
static int updates(rl *r, float lr, al_step_stats *st, double *gnorm) {
    const al_hparams *hp = r->hp;
    int rc, n_up = 0;
    al_step_stats acc, one;
    memset(&acc, 0, sizeof acc);
    double gsum = 0;
    if (r->ppo) {
        int M = r->N / hp->num_mini_batches;
        for (int e = 0; e < hp->num_ppo_epochs; e++) {
            for (int i = 0; i < r->N; i++) r->perm[i] = i;
            for (int i = r->N - 1; i > 0; i--) {
                int j = (int)al_rng_below(&r->rng, (uint32_t)i + 1);
                int32_t t = r->perm[i];
                r->perm[i] = r->perm[j];
                r->perm[j] = t;
            }
            for (int b = 0; b < hp->num_mini_batches; b++) {
                memset(&one, 0, sizeof one);
                if ((rc = step_grads(r, r->perm + (size_t)b * M, M, 1, &one))) return rc;
                gsum += optimizer_step(r, lr);
                acc.loss += one.loss;
                acc.num_tokens += one.num_tokens;
                for (int i = 0; i < one.n; i++) al_stats_add(&acc, one.m[i].name, one.m[i].value);
                n_up++;
            }
        }
    } else {
        for (int i = 0; i < r->N; i++) r->perm[i] = i;
        for (int it = 0; it < hp->num_iterations; it++) {
            memset(&one, 0, sizeof one);
            /* num_iterations 1: the ratio is 1 (old = current, detached) as TRL */
            if ((rc = step_grads(r, r->perm, r->N, hp->num_iterations > 1, &one))) return rc;
            gsum += optimizer_step(r, lr);
            acc.loss += one.loss;
            acc.num_tokens += one.num_tokens;
            for (int i = 0; i < one.n; i++) al_stats_add(&acc, one.m[i].name, one.m[i].value);
            n_up++;
        }
    }
    al_stats_dist_sum(&acc); /* each rank's share of the global losses and metrics */
    memset(st, 0, sizeof *st);
    st->loss = acc.loss / n_up;
    st->num_tokens = acc.num_tokens / n_up;
    for (int i = 0; i < acc.n; i++) al_stats_add(st, acc.m[i].name, acc.m[i].value / n_up);
    *gnorm = gsum / n_up;
    return AL_OK;
}

/* ---- metrics and health -------------------------------------------------------------- */

typedef struct mlist {
    al_metric m[2 * AL_MAX_METRICS];
    int n;
} mlist;

static void put(mlist *l, const char *name, double v) {
    if (l->n >= 2 * AL_MAX_METRICS) return;
    snprintf(l->m[l->n].name, sizeof l->m[l->n].name, "%s", name);
    l->m[l->n++].value = v;
}

/* The mean of the finite values of x (n on each rank) over every rank
 * (collective). */
static double mean_of(const float *x, int n) {
    double sk[2] = {0, 0};
    for (int i = 0; i < n; i++)
        if (isfinite(x[i])) {
            sk[0] += x[i];
            sk[1]++;
        }
    al_dist_sum(sk, 2);
    return sk[1] > 0 ? sk[0] / sk[1] : NAN;
}

/* Emits a health warning at most once per HEALTH_WINDOW steps per kind. */
static void warn(rl *r, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void warn(rl *r, int kind, const char *fmt, ...) {
    if (r->warned_at[kind] && r->step - r->warned_at[kind] < HEALTH_WINDOW) return;
    r->warned_at[kind] = r->step;
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    rl_event(r->cb, AL_LOG_WARN, "step %ld: %s", r->step, buf);
}

/* The seed's RLHF debugging checklist, automated. */
static void health(rl *r, double kl, double ent_tok, double mean_len, double reward, double ref_tok, double d2,
                   double frac_zero) {
    const al_hparams *hp = r->hp;
    if (r->use_ref && isfinite(kl)) {
        if (hp->kl_warn > 0 && kl > hp->kl_warn)
            warn(r, 0, "KL to the reference is %.3g, above %g: the policy drifts (raise kl_coef/beta or lower "
                 "the learning rate)", kl, hp->kl_warn);
        else if (r->h_n >= 5 && kl > 4 * r->kl_mean && kl > 1)
            warn(r, 1, "KL to the reference exploded: %.3g against a running mean of %.3g", kl, r->kl_mean);
        r->kl_mean = r->h_n ? 0.8 * r->kl_mean + 0.2 * kl : kl;
    }
    if (r->h_n == 0) {
        r->ent_first = ent_tok;
        r->d2_first = d2;
    }
    if (isfinite(ent_tok) && r->ent_first > 0.1 && ent_tok < 0.05)
        warn(r, 2, "entropy collapsed: %.3g nats per token (%.3g at the start)", ent_tok, r->ent_first);
    if (isfinite(d2) && r->d2_first > 0.2 && d2 < 0.5 * r->d2_first)
        warn(r, 3, "distinct-2 of the samples fell to %.3f from %.3f: mode collapse", d2, r->d2_first);
    if (frac_zero > 0.9)
        warn(r, 4, "advantages have near-zero variance in %.0f%% of the groups: no learning signal",
             100 * frac_zero);
    int W = HEALTH_WINDOW / 2, k = r->h_n % (2 * HEALTH_WINDOW);
    r->h_len[k] = mean_len;
    r->h_rew[k] = reward;
    r->h_ref[k] = ref_tok;
    r->h_n++;
    if (r->h_n >= 2 * W) {
        double l0 = 0, l1 = 0, r0 = 0, r1 = 0, f0 = 0, f1 = 0;
        for (int i = 0; i < W; i++) {
            int a = (r->h_n - 1 - i) % (2 * HEALTH_WINDOW), b = (r->h_n - 1 - W - i) % (2 * HEALTH_WINDOW);
            l1 += r->h_len[a] / W;
            l0 += r->h_len[b] / W;
            r1 += r->h_rew[a] / W;
            r0 += r->h_rew[b] / W;
            f1 += r->h_ref[a] / W;
            f0 += r->h_ref[b] / W;
        }
        if (l1 > 1.2 * l0 + 1 && r1 > r0)
            warn(r, 5, "mean response length keeps growing (%.1f -> %.1f tokens) while the reward rises: "
                 "length hacking? (try reward.length_penalty or length_normalize)", l0, l1);
        if (r->use_ref && isfinite(f1) && isfinite(f0) && r1 > r0 && f1 < f0 - 0.5)
            warn(r, 6, "the reference's log-likelihood of the samples falls fast (%.3f -> %.3f per token) "
                 "while the reward rises: reward hacking?", f0, f1);
    }
}

static void samples(rl *r, long step) {
    if (!r->cb || !r->cb->sample) return;
    for (int i = 0; i < r->N && i < N_SAMPLES * r->G; i += r->G)
        r->cb->sample(r->cb->ud, step, r->cprompt[i], r->ctext[i], r->scores[i]);
}

/* Greedy completions of up to 200 validation prompts: exact match against
 * their answers and the mean reward. */
static int evaluate_val(rl *r, mlist *l) {
    int n = r->val.n < 200 ? r->val.n : 200;
    if (n == 0) return AL_OK;
    enum { B = 16 };
    double ok = 0, rsum = 0;
    int with_answer = 0;
    al_gen_cfg g = {.max_new = r->max_new, .temperature = 0, .top_p = 1, .stop = &r->eos, .n_stop = r->eos >= 0};
    al_rng rng;
    al_rng_seed(&rng, 1);
    int32_t *ids = malloc((size_t)B * r->max_new * sizeof *ids);
    if (!ids) return al_err(r->err, AL_ENOMEM, "out of memory");
    int rc = AL_OK;
    for (int i0 = 0; i0 < n && !rc; i0 += B) {
        int k = n - i0 < B ? n - i0 : B, len[B], eos[B];
        const al_seq *ps[B];
        char *txt[B];
        const char *pr[B];
        const al_reward_row *an[B];
        float sc[B];
        for (int j = 0; j < k; j++) ps[j] = &r->val.seq[i0 + j];
        char e2[AL_ERRLEN];
        if ((rc = rl_generate(r->m, ps, k, &g, &rng, ids, NULL, len, e2))) {
            rc = al_err(r->err, rc, "evaluation: %s", e2);
            break;
        }
        for (int j = 0; j < k; j++) {
            txt[j] = rl_decode_completion(r->tok, ids + (size_t)j * r->max_new, len[j], r->eos, &eos[j]);
            pr[j] = r->val.text[i0 + j];
            an[j] = &r->val.ref[i0 + j];
            if (!txt[j] && !rc) rc = al_err(r->err, AL_ENOMEM, "out of memory");
            int correct = 0;
            if (!rc && an[j]->n_answers > 0) {
                with_answer++;
                if ((rc = al_rewarder_correct(r->rw, txt[j], an[j], &correct, e2)))
                    al_err(r->err, rc, "evaluation: %s", e2);
                ok += correct;
            }
        }
        if (!rc && (rc = al_rewarder_score_rows(r->rw, k, 1, pr, (const char *const *)txt, an, len, eos, sc, NULL, e2)))
            rc = al_err(r->err, rc, "evaluation reward: %s", e2);
        for (int j = 0; j < k; j++) {
            if (!rc) rsum += sc[j];
            free(txt[j]);
        }
    }
    free(ids);
    if (rc) return rc;
    if (with_answer) put(l, "eval_exact_match", ok / with_answer);
    put(l, "eval_reward", rsum / n);
    return AL_OK;
}

/* The eval_tasks' benchmarks at step. */
static int evaluate_bench(rl *r, mlist *l, long step) {
    for (int k = 0; k < r->job->n_eval_tasks; k++) {
        if (!r->bench[k]) continue;
        int T = al_bench_longest(r->bench[k]);
        int rc = al_bench_report(r->bench[k], r->m, r->mb, T, "model", step, r->cb, l->m, &l->n, 2 * AL_MAX_METRICS, r->err);
        if (rc) return rc;
    }
    return AL_OK;
}

/* ---- checkpoints ------------------------------------------------------------------------ */

int rl_copy_tokenizer(const al_job *job, const char *dir, char err[AL_ERRLEN]) {
    return al_chat_copy_files(job->model, dir, job->chat_template, err);
}

/* The full AdamW moments of the policy and the critic, every rank's RNG
 * state: what a checkpoint holds beyond the weights, gathered on rank 0. */
typedef struct rl_state {
    float *pm, *pv, *cm, *cv;
    size_t pn, cn;
    uint64_t *rng;             /* (world, 4) */
} rl_state;

/* optimizer.safetensors of a model's folder (optim.h: moments, and the fp32
 * masters of a checkpoint saved narrower) */
static int save_opt(const char *dir, const float *m, const float *v, size_t n, const al_model *model,
                    char err[AL_ERRLEN]) {
    char path[AL_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    return al_adamw_save_file(path, m, v, n, model, err);
}

static int load_opt(al_adamw *o, al_model *m, const char *dir, char err[AL_ERRLEN]) {
    char path[AL_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    return al_adamw_load_file(o, m, path, al_model_num_params(m, 1), err);
}

static int save_weights(rl *r, al_model *m, const char *dir, const char *base) {
    if (al_model_num_params(m, 1) < al_model_num_params(m, 0) && (r->job->use_lora || m == r->critic)) {
        char real[PATH_MAX];
        const char *b = realpath(base, real) ? real : base;
        return al_model_save_adapter(m, dir, b, r->err);
    }
    return al_model_save(m, dir, r->err);
}

/* Reads the trainable weights saved in dir into m: an adapter folder's
 * adapters and head (the base is m's already), or a whole model. */
static int load_trainable(al_model *m, const char *dir, char err[AL_ERRLEN]) {
    char p[AL_PATH_MAX + 64];
    if (!al_path_join(p, sizeof p, dir, "adapter_config.json") && al_file_exists(p))
        return al_model_load_adapters(m, dir, err);
    return al_model_load_weights(m, dir, err);
}

static const char *critic_base(const rl *r) {
    const al_job *j = r->job;
    if (j->critic == AL_CRITIC_SHARED_BASE) return j->model;
    return j->critic_model[0] ? j->critic_model : j->reward.n_reward_models ? j->reward.reward_model[0] : j->model;
}

static int fill_dir(rl *r, const char *dir, const char *tmp, int in_place, const rl_state *ws) {
    char path[AL_PATH_MAX + 64];
    int rc;
    if ((rc = al_mkdir_p(tmp, r->err))) return rc;
    if ((rc = save_weights(r, r->m, tmp, r->job->model))) return rc;
    if (!r->job->use_lora) {
        /* a full model replaces an adapter folder written there before */
        snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
        if (al_file_exists(path)) remove(path);
    }
    if ((rc = rl_copy_tokenizer(r->job, tmp, r->err))) return rc;
    if (r->critic) {
        snprintf(path, sizeof path, "%s/critic", tmp);
        if ((rc = al_mkdir_p(path, r->err)) || (rc = save_weights(r, r->critic, path, critic_base(r)))) return rc;
        if (ws && (rc = save_opt(path, ws->cm, ws->cv, ws->cn, r->critic, r->err))) return rc;
    }
    if (ws) {
        if ((rc = save_opt(tmp, ws->pm, ws->pv, ws->pn, r->m, r->err))) return rc;
        /* "rng": rank 0's (a run of one process reads it); "rank_rng": every rank's */
        json_t *ranks = json_array(), *rng0 = NULL;
        for (int k = 0; k < r->world; k++) {
            json_t *a = json_array();
            for (int i = 0; i < 4; i++) {
                char h[24];
                snprintf(h, sizeof h, "%016" PRIx64, ws->rng[4 * k + i]);
                json_array_append_new(a, json_string(h));
            }
            if (k == 0) rng0 = json_deep_copy(a);
            json_array_append_new(ranks, a);
        }
        json_t *st = json_pack("{s:I, s:I, s:I, s:I, s:f, s:s, s:I, s:f, s:I, s:o, s:o, s:i, s:i}", "global_step",
                               (json_int_t)r->step, "max_steps", (json_int_t)r->total_steps, "optimizer_step",
                               (json_int_t)r->opt.step, "critic_optimizer_step", (json_int_t)r->copt.step,
                               "trained_tokens", r->trained_tokens, "method", r->job->method, "seed",
                               (json_int_t)r->hp->seed, "kl_coef", r->kl_coef, "prompt_cursor",
                               (json_int_t)r->cursor, "rng", rng0, "rank_rng", ranks, "world_size", r->world,
                               "global_batch_size", r->N * r->world);
        /* rank 0's sampler: step_prompts replays any rank's draws from it */
        if (st && r->mixing && json_object_set_new(st, "mixer", al_mix_state(&r->mix))) {
            json_decref(st);
            st = NULL;
        }
        char *txt = st ? json_dumps(st, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        json_decref(st);
        if (!txt) return al_err(r->err, AL_ENOMEM, "out of memory");
        snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
        rc = al_file_write_atomic(path, txt, strlen(txt), r->err);
        free(txt);
        if (rc) return rc;
    }
    if (!in_place && rename(tmp, dir) != 0) return al_err(r->err, AL_EIO, "%s: %s", dir, strerror(errno));
    return AL_OK;
}

/* fill_dir; a new folder left half-written (a full disk) is removed. Every
 * rank calls it (sharded moments and the RNG states are gathered); rank 0
 * writes, and all return its result. */
static int save_dir(rl *r, const char *dir, int with_state) {
    rl_state ws;
    memset(&ws, 0, sizeof ws);
    int rc = AL_OK;
    if (with_state) {
        rc = al_ddp_moments_gather(r->ddp, &r->opt, &ws.pm, &ws.pv, &ws.pn, r->err);
        if (!rc && r->critic) rc = al_ddp_moments_gather(r->cddp, &r->copt, &ws.cm, &ws.cv, &ws.cn, r->err);
        ws.rng = malloc((size_t)r->world * sizeof r->rng);
        AL_ASSERT(ws.rng);
        al_dist_allgather(r->rng.s, sizeof r->rng.s, ws.rng);
    }
    if (!rc && r->rank == 0) {
        char tmp[AL_PATH_MAX + 32], e2[AL_ERRLEN];
        int in_place = al_file_exists(dir);
        if (snprintf(tmp, sizeof tmp, "%s%s", dir, in_place ? "" : ".tmp") >= (int)sizeof tmp) {
            rc = al_err(r->err, AL_EINVAL, "%s: the path is too long", dir);
        } else {
            rc = fill_dir(r, dir, tmp, in_place, with_state ? &ws : NULL);
            if (rc && !in_place) al_rmtree(tmp, e2);
        }
    }
    if (with_state) {
        al_ddp_moments_release(&r->opt, ws.pm, ws.pv);
        if (r->critic) al_ddp_moments_release(&r->copt, ws.cm, ws.cv);
        free(ws.rng);
    }
    return al_dist_agree_err(rc, r->err);
}

static int load_state(rl *r, const char *dir) {
    char path[AL_PATH_MAX + 64], *txt;
    size_t len;
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    int rc = al_file_read(path, 1 << 20, &txt, &len, r->err);
    if (rc) return rc;
    json_error_t je;
    json_t *st = json_loadb(txt, len, 0, &je);
    free(txt);
    json_t *gs = json_object_get(st, "global_step"), *rng = json_object_get(st, "rng");
    if (!json_is_integer(gs) || json_integer_value(gs) < 0 || !json_is_array(rng) || json_array_size(rng) != 4) {
        json_decref(st);
        return al_err(r->err, AL_EFORMAT, "%s: global_step or rng missing (not an RL checkpoint?)", path);
    }
    r->step = (long)json_integer_value(gs);
    r->opt.step = (long)json_integer_value(json_object_get(st, "optimizer_step"));
    r->copt.step = (long)json_integer_value(json_object_get(st, "critic_optimizer_step"));
    r->trained_tokens = json_number_value(json_object_get(st, "trained_tokens"));
    r->kl_coef = json_number_value(json_object_get(st, "kl_coef"));
    r->cursor = (long)json_integer_value(json_object_get(st, "prompt_cursor"));
    /* this rank's sampling stream: rank 0's is "rng", the others' in
     * "rank_rng" when the checkpoint's run had them */
    json_t *mine = r->rank == 0 ? rng : json_array_get(json_object_get(st, "rank_rng"), (size_t)r->rank);
    int derive = !json_is_array(mine) || json_array_size(mine) != 4;
    for (int i = 0; i < 4 && !derive; i++) {
        const char *s = json_string_value(json_array_get(mine, (size_t)i));
        r->rng.s[i] = s ? strtoull(s, NULL, 16) : 0;
    }
    if (r->mixing) {
        char e2[AL_ERRLEN];
        const json_t *mx = json_object_get(st, "mixer");
        if (!mx) rc = al_err(r->err, AL_EFORMAT, "%s: no mixer state (written by a job without training_files)", path);
        else if ((rc = al_mix_restore(&r->mix, mx, e2))) al_err(r->err, rc, "%s: %s", path, e2);
    }
    json_decref(st);
    if (rc) return rc;
    if (derive) /* a rank the checkpoint's run did not have: a stream of its own from the seed and the step */
        al_rng_seed(&r->rng, rank_seed(r, r->hp->seed ^ 0x5A3D1E5ull ^ (uint64_t)r->step * 0xD1B54A32D192ED03ull));
    if (r->cursor != r->step * r->Pg)
        return al_err(r->err, AL_EFORMAT, "%s: prompt_cursor %ld does not match step %ld x %d prompts", path,
                      r->cursor, r->step, r->Pg);
    if (r->job->use_lora) rc = load_trainable(r->m, dir, r->err);
    else rc = al_model_load_weights(r->m, dir, r->err);
    if (rc || (rc = load_opt(&r->opt, r->m, dir, r->err))) return rc;
    if (r->critic) {
        snprintf(path, sizeof path, "%s/critic", dir);
        if (al_model_num_params(r->critic, 1) < al_model_num_params(r->critic, 0)) rc = load_trainable(r->critic, path, r->err);
        else rc = al_model_load_weights(r->critic, path, r->err);
        if (!rc) rc = load_opt(&r->copt, r->critic, path, r->err);
    }
    return rc;
}

/* ---- the run -------------------------------------------------------------------------- */

static int one_step(rl *r, mlist *l, int train) {
    const al_hparams *hp = r->hp;
    /* generation and scoring are local: agree on their outcome */
    int rc = al_dist_agree_err(rollout(r, r->step), r->err);
    if (rc) return rc;
    al_step_stats st;
    memset(&st, 0, sizeof st);
    int zero_std;
    if ((rc = advantages(r, &st, &zero_std))) return rc;
    long warmup = (long)ceil(hp->warmup_ratio * (double)r->total_steps);
    float lr = al_sched_lr(hp->lr_scheduler_type, hp->learning_rate, r->step, warmup, r->total_steps);
    double gnorm = 0;
    if (train) {
        long u0 = r->n_updates, c0 = r->n_clipped;
        if ((rc = updates(r, lr, &st, &gnorm))) return rc;
        r->clip_run = r->n_clipped - c0 == r->n_updates - u0 ? r->clip_run + 1 : 0;
        if (r->clip_run == HEALTH_WINDOW)
            warn(r, 7, "the gradient norm (%.3g) exceeded max_grad_norm %g at every update of the last %d "
                 "steps: clipping rescales every step instead of guarding against spikes (raise max_grad_norm "
                 "above the typical norm)", gnorm, hp->max_grad_norm,
                 HEALTH_WINDOW);
        if (!isfinite(st.loss) || !isfinite(gnorm))
            return al_err(r->err, AL_ENAN, "divergence: %s is not finite at step %ld",
                          isfinite(st.loss) ? "grad_norm" : "loss", r->step + 1);
    }
    /* batch statistics of the rollout */
    double score = mean_of(r->scores, r->N), sd = 0, len = 0, minl = 1e9, maxl = 0, eos = 0, tl = 0, tn = 0;
    double seq_kl = 0, seq_nlp = 0, ref_tok = 0, ntok = 0, d2 = 0;
    for (int i = 0; i < r->N; i++) {
        sd += (r->scores[i] - score) * (r->scores[i] - score);
        len += r->clen[i];
        minl = r->clen[i] < minl ? r->clen[i] : minl;
        maxl = r->clen[i] > maxl ? r->clen[i] : maxl;
        eos += r->has_eos[i];
        if (r->has_eos[i]) {
            tl += r->clen[i];
            tn++;
        }
        d2 += al_rl_distinct2(r->comp + (size_t)i * r->max_new, r->clen[i], r->scratch);
        for (int t = 0; t < r->T; t++) {
            size_t o = (size_t)i * r->T + t;
            if (r->tgt[o] < 0) continue;
            double k = r->use_ref ? al_rl_kl(r->old_logp[o], r->ref_logp[o], r->ppo ? hp->kl_estimator : AL_KL_K1) : 0;
            seq_kl += k;
            seq_nlp -= r->old_logp[o];
            ref_tok += r->ref_logp[o];
            ntok++;
        }
    }
    /* over every rank's completions */
    double sums[10] = {sd, len, eos, tl, tn, d2, seq_kl, seq_nlp, ref_tok, ntok}, zs = zero_std;
    al_dist_sum(sums, 10);
    sd = sums[0], len = sums[1], eos = sums[2], tl = sums[3], tn = sums[4], d2 = sums[5];
    seq_kl = sums[6], seq_nlp = sums[7], ref_tok = sums[8], ntok = sums[9];
    al_dist_min(&minl, 1);
    al_dist_max(&maxl, 1);
    if (!r->ppo) al_dist_sum(&zs, 1); /* PPO's is the batch's already */
    zero_std = (int)zs;
    int N = r->N * r->world, P = r->Pg;
    sd = N > 1 ? sqrt(sd / (N - 1)) : 0;
    put(l, "loss", st.loss);
    put(l, "learning_rate", lr);
    put(l, "grad_norm", gnorm);
    if (r->ppo) {
        double nsr = -r->kl_coef * seq_kl / N;
        put(l, "objective/kl", seq_kl / N);
        put(l, "objective/entropy", seq_nlp / N);
        put(l, "objective/non_score_reward", nsr);
        put(l, "objective/rlhf_reward", score + nsr);
        put(l, "objective/scores", score);
        put(l, "val/num_eos_tokens", eos);
        if (hp->adaptive_kl) put(l, "objective/kl_coef", r->kl_coef);
        put(l, "episode", (double)(r->step + 1) * P);
    } else {
        put(l, "reward", score);
        put(l, "reward_std", sd);
        put(l, "frac_reward_zero_std", (double)zero_std / P);
        if (r->use_ref) put(l, "objective/kl", seq_kl / N);
    }
    put(l, "completions/mean_length", len / N);
    put(l, "completions/min_length", minl);
    put(l, "completions/max_length", maxl);
    put(l, "completions/clipped_ratio", 1.0 - eos / N);
    put(l, "completions/mean_terminated_length", tn > 0 ? tl / tn : 0);
    put(l, "completions/distinct_2", d2 / N);
    /* logged at weight 0 too when the prompts have answers: the samples'
     * true accuracy beside what a reward model says of them */
    if (r->job->reward.verifiable != 0 || r->all_answered) {
        put(l, "rewards/verifiable/mean", mean_of(r->p_ver, r->N));
        put(l, "rewards/verifiable/extracted", mean_of(r->p_ext, r->N));
    }
    if (r->job->reward.format_regex[0]) put(l, "rewards/format/mean", mean_of(r->p_fmt, r->N));
    if (r->job->reward.http_url[0]) put(l, "rewards/http/mean", mean_of(r->p_http, r->N));
    if (al_rewarder_has_rm(r->rw)) put(l, "rewards/reward_model/mean", mean_of(r->p_rm, r->N));
    if (al_rewarder_has_judge(r->rw)) put(l, "rewards/judge/mean", mean_of(r->p_judge, r->N));
    for (int i = 0; i < st.n; i++) put(l, st.m[i].name, st.m[i].value);
    put(l, "num_tokens", r->trained_tokens + (train ? st.num_tokens : 0));
    if (train) r->trained_tokens += st.num_tokens;
    health(r, r->use_ref ? seq_kl / N : NAN, ntok > 0 ? seq_nlp / ntok : NAN, len / N, score,
           r->use_ref && ntok > 0 ? ref_tok / ntok : NAN, d2 / N, (double)zero_std / P);
    if (r->ppo && hp->adaptive_kl && train)
        r->kl_coef = al_rl_adaptive_kl(r->kl_coef, seq_kl / N, hp->target_kl, hp->kl_horizon, P);
    return AL_OK;
}

static void emit(rl *r, long step, const mlist *l) {
    if (r->cb && r->cb->log) {
        double epoch = r->steps_per_epoch ? (double)step / (double)r->steps_per_epoch : 0;
        r->cb->log(r->cb->ud, step, epoch, l->m, l->n);
    }
}

static int rl_train(rl *r, const char *resume_dir, al_train_result *res) {
    const al_job *job = r->job;
    const al_train_cb *cb = r->cb;
    int rc = AL_OK;
    char dir[AL_PATH_MAX + 64];
    if (resume_dir) {
        if ((rc = al_dist_agree_err(load_state(r, resume_dir), r->err))) return rc;
        rl_event(cb, AL_LOG_INFO, "resumed from %s at step %ld", resume_dir, r->step);
        if (r->world0 != r->world)
            rl_event(cb, AL_LOG_INFO, "the checkpoint was written by %d ranks, this run has %d: %d prompts a step "
                     "are kept, %d per rank; ranks without a stream in the checkpoint sample from one of their own",
                     r->world0, r->world, r->Pg, r->P);
    }
    if (cb && cb->begin) cb->begin(cb->ud, r->total_steps, r->step);
    double t0 = al_now(), tok0 = r->trained_tokens;
    mlist l;
    if (r->step == 0) {
        /* step 0: the starting point, measured on a rollout of its own RNG so
         * the training rollouts do not depend on whether it ran */
        al_rng keep = r->rng;
        al_rng_seed(&r->rng, rank_seed(r, r->hp->seed ^ 0x0DDBA11ull));
        l.n = 0;
        if (r->total_steps > 0 && (rc = one_step(r, &l, 0))) return rc;
        r->rng = keep;
        r->h_n = 0; /* the health history starts with the training steps */
        if (r->rank == 0 && !(rc = evaluate_val(r, &l))) rc = evaluate_bench(r, &l, 0); /* rank 0's duty */
        if ((rc = al_dist_agree_err(rc, r->err))) return rc;
        emit(r, 0, &l);
        samples(r, 0);
    }
    while (r->step < r->total_steps) {
        /* every rank stops or pauses at the same step */
        int stop = cb && cb->should_stop && cb->should_stop(cb->ud);
        int pause = !stop && cb && cb->should_pause && cb->should_pause(cb->ud);
        int agreed = al_dist_any(stop | pause << 1);
        if (agreed & 1) return al_err(r->err, AL_ECANCELED, "cancelled at step %ld", r->step);
        if (agreed & 2) {
            snprintf(dir, sizeof dir, "%s/checkpoint-%ld", job->output_dir[0] ? job->output_dir : ".", r->step);
            if ((rc = save_dir(r, dir, 1))) return rc;
            if (cb && cb->checkpoint) cb->checkpoint(cb->ud, r->step, dir);
            snprintf(res->last_checkpoint, sizeof res->last_checkpoint, "%s", dir);
            return al_err(r->err, AL_EPAUSED, "paused at step %ld", r->step);
        }
        l.n = 0;
        if ((rc = one_step(r, &l, 1))) return rc;
        r->step++;
        long s = r->step;
        int log_now = s % r->hp->logging_steps == 0 || s == r->total_steps || s == 1;
        int eval_now = (r->hp->eval_steps > 0 && s % r->hp->eval_steps == 0) || s == r->total_steps;
        if (log_now || eval_now) {
            double dt = al_now() - t0;
            put(&l, "tokens_per_second", dt > 0 ? (r->trained_tokens - tok0) / dt : 0);
            if (eval_now && r->rank == 0 && !(rc = evaluate_val(r, &l))) rc = evaluate_bench(r, &l, s);
            if (eval_now && (rc = al_dist_agree_err(rc, r->err))) return rc;
            emit(r, s, &l);
            samples(r, s);
        }
        res->final_loss = l.n ? l.m[0].value : 0;
        if (job->output_dir[0] && r->hp->save_steps > 0 && s % r->hp->save_steps == 0 && s < r->total_steps) {
            snprintf(dir, sizeof dir, "%s/checkpoint-%ld", job->output_dir, s);
            if ((rc = save_dir(r, dir, 1))) return rc;
            snprintf(res->last_checkpoint, sizeof res->last_checkpoint, "%s", dir);
            if (cb && cb->checkpoint) cb->checkpoint(cb->ud, s, dir);
        }
    }
    if (job->output_dir[0]) {
        if ((rc = save_dir(r, job->output_dir, 1))) return rc;
        snprintf(res->output_dir, sizeof res->output_dir, "%s", job->output_dir);
        if (cb && cb->checkpoint) cb->checkpoint(cb->ud, r->step, job->output_dir);
        if (job->use_lora && job->lora_merge) {
            snprintf(dir, sizeof dir, "%s/merged", job->output_dir);
            if (r->rank == 0 && !(rc = al_mkdir_p(dir, r->err)) && !(rc = al_model_save(r->m, dir, r->err)))
                rc = rl_copy_tokenizer(job, dir, r->err);
            if ((rc = al_dist_agree_err(rc, r->err))) return rc;
        }
    }
    char line[300];
    if (al_ddp_summary(r->ddp, " of the policy", line, sizeof line)) rl_event(cb, AL_LOG_INFO, "%s", line);
    if (al_ddp_summary(r->cddp, " of the critic", line, sizeof line)) rl_event(cb, AL_LOG_INFO, "%s", line);
    return AL_OK;
}

int al_rl_run(const al_job *job, const char *resume_dir, const al_train_cb *cb, al_train_result *res,
              char err[AL_ERRLEN]) {
    al_train_result r0;
    memset(&r0, 0, sizeof r0);
    if (al_method_is_data(job->method)) {
        int rc = rl_data_job(job, cb, &r0, err);
        if (res) *res = r0;
        return rc;
    }
    rl *r = calloc(1, sizeof *r);
    if (!r) return al_err(err, AL_ENOMEM, "out of memory");
    r->job = job;
    r->hp = &job->hp;
    r->cb = cb;
    r->resume = resume_dir;
    /* every rank passes each agreement, one whose set-up failed too */
    int rc = al_dist_agree_err(setup(r), r->err);
    if (!rc) rc = start_dist(r);
    rc = al_dist_agree_err(rc, r->err);
    if (!rc) rc = rl_train(r, resume_dir, &r0);
    r0.steps = r->step;
    r0.total_steps = r->total_steps;
    r0.trained_tokens = r->trained_tokens;
    r0.output_is_model = 1;
    if (res) *res = r0;
    if (rc) al_err(err, rc, "%s", r->err);
    rl_free(r);
    free(r);
    return rc;
}

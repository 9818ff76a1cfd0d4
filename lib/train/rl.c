/* The RL step kind of the run skeleton (run.h): ppo, grpo and rloo (see
 * rl.h). Prompting, generation and decoding are rollout.c's.
 *
 * One step of the job is one rollout (hook_before_step) and the updates
 * made from it (hook_backward, hook_optimizer):
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
 * gradients of the policy and the critic are summed over ranks after
 * backward (by the skeleton) before the joint clipping (optimizer_step),
 * and the metrics, the KL controller and
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
#include "rollout.h"
#include "run.h"

enum { N_SAMPLES = 2, HEALTH_WINDOW = 10 };

/* ---- the RL state --------------------------------------------------------------- */

typedef struct rl {
    const al_job *job;
    const al_hparams *hp;
    const al_train_cb *cb;
    const char *resume;         /* the checkpoint resumed from, or NULL */
    const al_objective_ops *ops;
    void *obj;
    int ppo, grpo, rloo;
    al_lm lm;                   /* the policy, its tokenizer and chat template */
    int32_t pad;
    int32_t stops[AL_LM_MAX_STOPS];          /* the ids that end a completion (al_lm_stop_ids) */
    int n_stops;
    al_model *ref;              /* separate frozen reference, or NULL */
    int ref_off;                /* reference = policy with adapters off */
    int use_ref;
    al_model *critic;           /* ppo */
    al_adamw opt, copt;
    al_ddp *ddp, *cddp;         /* policy's and critic's reduction across ranks (NULL alone) */
    int Pg;                     /* prompts per step over all ranks: P x world */
    al_rewarder *rw;
    al_prompts train, val;
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
    long cursor;
    double kl_coef;
    /* health signals: per-step history */
    double h_len[HEALTH_WINDOW * 2], h_rew[HEALTH_WINDOW * 2], h_ref[HEALTH_WINDOW * 2];
    int h_n;
    double kl_mean, d2_first, ent_first;
    long warned_at[8];
    long n_updates, n_clipped;  /* optimiser updates, and how many were clipped (not checkpointed) */
    int clip_run;               /* consecutive steps whose every update was clipped */
    /* the step in progress */
    int training;               /* 0: step 0's measurement, no updates */
    int zero_std;               /* groups (PPO: the batch) whose rewards do not vary */
    long u0, c0;                /* n_updates and n_clipped before the step */
    al_step_stats one, acc;     /* an update's statistics, their sum over the step's updates */
    double gsum;                /* the updates' gradient norms, summed */
    int n_up;                   /* updates made */
    al_run run;                 /* the skeleton's state: step, world, err (run.h) */
} rl;

static void rl_free(rl *r) {
    al_prompts_free(&r->train);
    al_prompts_free(&r->val);
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
    al_lm_close(&r->lm);
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
#define A(p, n) if (!((p) = calloc(nz(n), sizeof *(p)))) return al_err(r->run.err.msg, AL_ENOMEM, "out of memory")
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
        r->critic = al_model_new_shared(r->lm.m, &job->lora, job->hp.seed ^ 0xC817Cull, e2);
        if (!r->critic) return AL_FAIL(&r->run.err, AL_ENOMEM, "critic", "%s", e2);
        return AL_OK;
    }
    const char *src = job->critic_model[0] ? job->critic_model
                      : job->reward.n_reward_models ? job->reward.reward_model[0] : job->model;
    const char *field = job->critic_model[0] ? "critic_model" : job->reward.n_reward_models ? "reward.reward_model" : "model";
    if ((rc = al_model_open_ex(&r->critic, src, job->use_lora ? &job->lora : NULL,
                               AL_OPEN_SCORE_HEAD | al_job_open_flags(job), job->hp.seed ^ 0xC817Cull, e2)))
        return AL_FAIL(&r->run.err, rc, "%s", "%s", field, e2);
    if (al_model_config_of(r->critic)->V != al_model_config_of(r->lm.m)->V)
        return AL_FAIL(&r->run.err, AL_EINVAL, "%s", "the critic's vocabulary (%d) differs from the policy's (%d)", field,
                       al_model_config_of(r->critic)->V, al_model_config_of(r->lm.m)->V);
    return AL_OK;
}

/* A rank's stream: the one-process seed on rank 0 (and alone), mixed with
 * the rank elsewhere. */
static uint64_t rank_seed(const rl *r, uint64_t seed) {
    return seed ^ (uint64_t)r->run.rank * 0x9E3779B97F4A7C15ull;
}

/* The reductions across ranks and the optimisers (their slices, with
 * ZeRO-1): after every rank's set-up succeeded (al_ddp_new is collective). */
static int start_dist(rl *r) {
    al_ddp *d[2] = {NULL, NULL};
    int rc = al_run_dist_start(&r->run, r->critic ? 2 : 1, (al_model *const[]){r->lm.m, r->critic}, d,
                               (al_adamw *const[]){&r->opt, &r->copt});
    r->ddp = d[0];
    r->cddp = d[1];
    if (rc) return rc;
    if (r->run.world > 1)
        al_run_event(r->cb, AL_LOG_INFO, "distributed: %d ranks, %d prompts x %d completions per rank per step (%d "
                     "prompts in all), %s", r->run.world, r->P, r->G, r->Pg,
                     r->job->dist.shard_optimizer ? "AdamW moments sharded (ZeRO-1)" : "AdamW moments on every rank");
    return AL_OK;
}

/* What reading a prompt file did: rows skipped, the hygiene filters' drops. */
static void prompts_events(rl *r, const al_prompts *p, const char *what) {
    const json_t *rep = p->report, *errs = json_object_get(rep, "errors");
    long bad = (long)json_integer_value(json_object_get(rep, "rows")) -
               (long)json_integer_value(json_object_get(rep, "valid_rows"));
    al_run_event(r->cb, bad ? AL_LOG_WARN : AL_LOG_INFO, "%s: %lld rows, format %s, %d prompts; %ld bad lines skipped",
             what, (long long)json_integer_value(json_object_get(rep, "rows")),
             json_string_value(json_object_get(rep, "format")), p->n, bad);
    for (size_t i = 0; i < json_array_size(errs) && i < 20; i++) {
        const json_t *e = json_array_get(errs, i);
        al_run_event(r->cb, AL_LOG_WARN, "%s: %s (%s)", what, json_string_value(json_object_get(e, "message")),
                 json_string_value(json_object_get(e, "code")));
    }
    al_hygiene_describe(rep, what, 20, al_run_event_line, (void *)r->cb);
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
        al_prompts part;
        memset(&part, 0, sizeof part);
        snprintf(what, sizeof what, "training_files[%d]", k);
        rc = al_prompts_load(&part, job, r->lm.chat, 0, 0, 0, 0, job->train_files[k].file, what, want_sft, &r->run.err);
        if (!rc && !part.n) rc = AL_FAIL(&r->run.err, AL_EINVAL, "%s", "no prompts", what);
        if (!rc) {
            prompts_events(r, &part, what);
            n[k] = part.n;
            w[k] = job->train_files[k].weight;
            wsum += w[k];
            rc = al_prompts_append(&r->train, &part, r->run.err.msg);
        }
        al_prompts_free(&part);
    }
    if (rc) return rc;
    char e2[AL_ERRLEN];
    if ((rc = al_mix_init(&r->mix, job->n_train_files, n, w, r->hp->seed, e2)))
        return AL_FAIL(&r->run.err, rc, "training_files", "%s", e2);
    r->mixing = 1;
    for (int k = 0; k < job->n_train_files; k++)
        al_run_event(r->cb, AL_LOG_INFO, "training_files[%d]: %d prompts, weight %g: %.1f%% of the prompts drawn", k,
                 n[k], w[k], 100.0 * w[k] / wsum);
    return AL_OK;
}

/* The training and validation prompts: a built-in task's splits, or the
 * training file(s) and the validation file. */
static int load_prompts(rl *r, int want_sft) {
    const al_job *job = r->job;
    int rc;
    if (job->task[0]) {
        if ((rc = al_prompts_load(&r->train, job, r->lm.chat, 1, job->task_rows, job->task_seed, job->task_split,
                                  NULL, "task", want_sft, &r->run.err)))
            return rc;
        long vrows = job->task_rows / 10 < 200 ? job->task_rows / 10 : 200;
        if (vrows < 8) vrows = 8;
        /* validation prompts from the held-out split */
        if ((rc = al_prompts_load(&r->val, job, r->lm.chat, 1, vrows, job->task_seed + 1000003u, AL_SPLIT_TEST, NULL,
                                  "task", 0, &r->run.err)))
            return rc;
    } else {
        if (job->n_train_files) rc = mixture_prompts(r, want_sft);
        else if (!(rc = al_prompts_load(&r->train, job, r->lm.chat, 0, 0, 0, 0, job->training_file, "training_file",
                                        want_sft, &r->run.err)))
            prompts_events(r, &r->train, "training_file");
        if (rc) return rc;
        if (job->validation_file[0] &&
            (rc = al_prompts_load(&r->val, job, r->lm.chat, 0, 0, 0, 0, job->validation_file, "validation_file", 0,
                                  &r->run.err)))
            return rc;
    }
    if (r->train.n == 0) return al_err(r->run.err.msg, AL_EINVAL, "training data: no prompts");
    r->all_answered = 1;
    for (int i = 0; i < r->train.n; i++) r->all_answered &= r->train.answer[i] != NULL;
    if (job->reward.verifiable != 0)
        for (int i = 0; i < r->train.n; i++)
            if (!r->train.answer[i])
                return AL_FAIL(&r->run.err, AL_EINVAL, "reward.verifiable", "the prompt at line %d has no answer "
                               "(give \"answer\" in the data)", r->train.sft[i].line ? r->train.sft[i].line : i + 1);
    return AL_OK;
}

static int setup(rl *r) {
    const al_job *job = r->job;
    const al_hparams *hp = r->hp;
    int rc;
    char e2[AL_ERRLEN];
    r->ops = al_objective_find(job->method);
    if (!r->ops) return AL_FAIL(&r->run.err, AL_EINVAL, "method", "'%s' is unknown", job->method);
    if ((rc = r->ops->create(hp, &r->obj, &r->run.err))) return rc;
    r->ppo = !strcmp(job->method, "ppo");
    r->grpo = !strcmp(job->method, "grpo");
    r->rloo = !strcmp(job->method, "rloo");
    r->G = r->ppo ? 1 : hp->num_generations;
    /* batch_size completions on each rank, or resuming, the global batch the
     * checkpoint was trained with split over the ranks there are now */
    int gn;
    if ((rc = al_run_world(&r->run, r->resume, &gn))) return rc;
    if (gn % (r->G * r->run.world))
        return AL_FAIL(&r->run.err, AL_EINVAL, "hyperparameters.batch_size", "the checkpoint's %d completions a step do "
                       "not split into whole groups of %d over %d ranks", gn, r->G, r->run.world);
    r->N = gn / r->run.world;
    r->P = r->N / r->G;
    r->Pg = r->P * r->run.world;
    if ((rc = al_run_open_policy(&r->run, &r->lm, 0, 1))) return rc;
    r->pad = al_chat_pad_id(r->lm.chat);
    /* completions end where the served model's answers end */
    if ((r->n_stops = al_lm_stop_ids(&r->lm, r->stops, AL_LM_MAX_STOPS, e2)) < 0)
        return AL_FAIL(&r->run.err, r->n_stops, "model", "%s", e2);
    const al_model_config *mc = al_model_config_of(r->lm.m);
    if (!mc->has_lm_head) return AL_FAIL(&r->run.err, AL_EINVAL, "model", "%s has no language-model head", job->model);
    al_model_set_temperature(r->lm.m, hp->temperature);
    int want_sft = hp->sft_mix_ratio > 0;
    if ((rc = load_prompts(r, want_sft))) return rc;
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
        return AL_FAIL(&r->run.err, AL_EINVAL, "hyperparameters.max_prompt_length", "prompts of %d tokens leave no "
                       "room for a completion in the context of %d", maxp, mc->max_T);
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
        else if ((rc = al_bench_detect(et->file, type, r->run.err.msg))) return rc;
        if (!strcmp(type, "loss")) {
            al_run_event(r->cb, AL_LOG_WARN, "%s: a loss file is measured by SFT-like jobs only; left out", what);
            continue;
        }
        if ((rc = al_bench_load(&r->bench[k], et, r->lm.chat, &job->reward.grader, mc->max_T, what, r->run.err.msg)))
            return al_fail_as(&r->run.err, rc, what, r->run.err.msg);
        if (al_bench_longest(r->bench[k]) > rowsT) rowsT = al_bench_longest(r->bench[k]);
    }
    if ((rc = al_model_reserve(r->lm.m, r->mb, rowsT, hp->gradient_checkpointing ? AL_MODEL_GRAD_CKPT : 0, e2)))
        return al_err(r->run.err.msg, rc, "%s", e2);
    if (want_sft && (rc = al_batch_init(&r->sft_batch, AL_BATCH_LM, r->mb, r->T_sft)))
        return al_err(r->run.err.msg, rc, "out of memory");
    /* reference */
    r->use_ref = r->ppo ? (hp->kl_coef > 0 || hp->adaptive_kl) : hp->beta > 0;
    if (r->use_ref) {
        if ((rc = al_run_open_ref(&r->run, 1, 1, &r->ref, &r->ref_off))) return rc;
        if (r->ref) {
            al_model_set_temperature(r->ref, hp->temperature);
            if (al_model_config_of(r->ref)->V != mc->V)
                return AL_FAIL(&r->run.err, AL_EINVAL, "ref_model", "its vocabulary differs from the policy's");
            if ((rc = al_model_reserve(r->ref, r->mb, r->T, AL_MODEL_FORWARD_ONLY, e2)))
                return al_err(r->run.err.msg, rc, "%s", e2);
        }
    }
    if (r->ppo) {
        if ((rc = open_critic(r))) return rc;
        /* the critic runs in the policy's activations (update_rows runs the two one
         * after the other); a separate critic of another shape keeps its own */
        rc = al_model_share_activations(r->critic, r->lm.m, e2);
        if (rc == AL_EINVAL && job->critic == AL_CRITIC_SEPARATE) rc = AL_OK;
        if (!rc) rc = al_model_reserve(r->critic, r->mb, r->T, hp->gradient_checkpointing ? AL_MODEL_GRAD_CKPT : 0, e2);
        if (rc) return al_err(r->run.err.msg, rc, "%s", e2);
    }
    size_t pb_train = al_prompts_max_bytes(&r->train), pb_val = al_prompts_max_bytes(&r->val);
    al_reward_len rlen = {pb_train > pb_val ? pb_train : pb_val, al_completion_max_bytes(r->lm.tok, r->max_new)};
    if ((rc = al_rewarder_new(&r->rw, &job->reward, hp->missing_eos_penalty, r->mb, &rlen, &r->run.err))) return rc;
    if ((rc = al_rewarder_attach(r->rw, r->cb, &r->run.err))) return rc;
    r->run.steps_per_epoch = (r->train.n + r->Pg - 1) / r->Pg;
    r->run.total_steps = hp->max_steps >= 0 ? hp->max_steps : r->run.steps_per_epoch * hp->n_epochs;
    if ((rc = alloc_bufs(r))) return rc;
    al_rng_seed(&r->rng, rank_seed(r, hp->seed ^ 0x5A3D1E5ull));
    r->kl_coef = hp->kl_coef;
    r->order_epoch = -1;
    al_run_event(r->cb, AL_LOG_INFO,
             "%s: %d prompts (%d validation), %d per step x %d completions, %ld steps, %zu trainable parameters%s",
             job->method, r->train.n, r->val.n, r->P, r->G, r->run.total_steps, al_model_num_params(r->lm.m, 1),
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
        int64_t want = (int64_t)step * r->Pg + (int64_t)r->run.rank * r->P;
        if (r->mix.draws > want) al_mix_rewind(&r->mix);
        while (r->mix.draws < want) al_mix_next(&r->mix);
        for (int k = 0; k < r->P; k++) r->pidx[k] = al_mix_next(&r->mix);
        r->cursor = (step + 1) * r->Pg;
        return;
    }
    /* this rank's share of the step's global list of Pg prompts */
    for (int k = 0; k < r->P; k++) {
        long g = step * r->Pg + (long)r->run.rank * r->P + k;
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
        al_model_set_adapters(r->lm.m, 0);
        rc = al_model_forward(r->lm.m, in, &f);
        al_model_set_adapters(r->lm.m, 1);
    } else {
        rc = al_model_forward(r->ref, in, &f);
    }
    return rc ? al_err(r->run.err.msg, rc, "reference forward failed: %s", al_strerror(rc)) : AL_OK;
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
                    .top_p = hp->top_p > 0 ? hp->top_p : 1, .stop = r->stops, .n_stop = r->n_stops};
    char e2[AL_ERRLEN];
    if ((rc = al_rollout_generate(r->lm.m, r->gen_prompts, r->N, &g, &r->rng, r->comp, r->samp, r->clen, e2)))
        return al_err(r->run.err.msg, rc, "generation failed: %s", e2);
    /* the (N, T) rows: prompt + completion; position plen-1+j predicts token j */
    for (int i = 0; i < r->N; i++) {
        const al_seq *ps = r->gen_prompts[i];
        int pl = ps->n, cl = r->clen[i];
        r->plen[i] = pl;
        size_t o = (size_t)i * r->T;
        const int32_t *c = r->comp + (size_t)i * r->max_new;
        r->has_eos[i] = al_rollout_ended(c, cl, r->stops, r->n_stops);
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
        r->ctext[i] = al_rollout_decode_stops(r->lm.tok, c, cl, r->stops, r->n_stops, NULL);
        if (!r->ctext[i]) return al_err(r->run.err.msg, AL_ENOMEM, "out of memory");
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
                return al_err(r->run.err.msg, rc, "critic forward failed: %s", al_strerror(rc));
            scatter(r, r->values, r->m_val, idx, k, T);
        }
    }
    al_reward_parts parts = {r->p_ver, r->p_rm, r->p_judge, r->p_fmt, r->p_http, r->p_ext};
    al_error se;
    if ((rc = al_rewarder_score_rows(r->rw, r->N, r->G, r->cprompt, (const char *const *)r->ctext, r->crow,
                                r->clen, r->has_eos, r->scores, &parts, &se)))
        return al_fail_wrap(&r->run.err, rc, "reward", "reward", &se);
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
        for (int i = 0; i < r->N; i++) mean += r->scores[i] / (r->N * r->run.world);
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
        int Ng = r->N * r->run.world;
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
    al_model_set_temperature(r->lm.m, 1);
    int rc = AL_OK;
    double nll = 0;
    for (int i0 = 0; i0 < n && !rc; i0 += r->mb) {
        int k = n - i0 < r->mb ? n - i0 : r->mb;
        if ((rc = al_batch_fill(&r->sft_batch, r->train.sft, idx + i0, k, r->pad, r->run.err.msg))) break;
        al_tokens in = al_batch_tokens(&r->sft_batch);
        al_fwd f = {.logp = r->m_logp};
        if ((rc = al_model_forward(r->lm.m, &in, &f))) {
            rc = al_err(r->run.err.msg, rc, "forward failed: %s", al_strerror(rc));
            break;
        }
        size_t cnt = (size_t)in.B * in.T;
        for (size_t q = 0; q < cnt; q++) {
            r->m_dlogp[q] = in.targets[q] >= 0 ? (float)(-r->hp->sft_mix_ratio / tokens) : 0;
            if (in.targets[q] >= 0) nll -= r->m_logp[q] / tokens;
        }
        if (i0 + k >= n) al_ddp_arm(r->ddp); /* the step's last backward */
        if ((rc = al_model_backward(r->lm.m, &in, r->m_dlogp, NULL, NULL)))
            rc = al_err(r->run.err.msg, rc, "backward failed: %s", al_strerror(rc));
    }
    al_model_set_temperature(r->lm.m, r->hp->temperature);
    if (!rc) {
        st->loss += r->hp->sft_mix_ratio * nll;
        al_stats_add(st, "sft_loss", nll);
    }
    return rc;
}

static int loss_failed(rl *r, int rc) {
    if (rc == AL_ENAN) return al_err(r->run.err.msg, AL_ENAN, "divergence: the loss is not finite at step %ld", r->run.step + 1);
    return al_err(r->run.err.msg, rc, "objective %s failed: %s", r->ops->name, al_strerror(rc));
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
                return al_err(r->run.err.msg, rc, "critic forward failed: %s", al_strerror(rc));
            memset(r->m_dval, 0, cnt * sizeof(float));
            al_obj_out vo = {.dvalue = r->m_dval};
            if ((rc = r->ops->loss(r->obj, &oi, &vo, st))) return loss_failed(r, rc);
            if (i0 + k >= n) al_ddp_arm(r->cddp); /* the critic's last backward of the step */
            if ((rc = al_model_backward(r->critic, &in, NULL, NULL, r->m_dval)))
                return al_err(r->run.err.msg, rc, "critic backward failed: %s", al_strerror(rc));
        }
        al_fwd f = {.logp = r->m_logp, .entropy = r->m_ent};
        if ((rc = al_model_forward(r->lm.m, &in, &f))) return al_err(r->run.err.msg, rc, "forward failed: %s", al_strerror(rc));
        memset(r->m_dlogp, 0, cnt * sizeof(float));
        memset(r->m_dent, 0, cnt * sizeof(float));
        oi.logp = r->m_logp;
        al_obj_out oo = {.dlogp = r->m_dlogp, .dent = r->m_dent};
        if ((rc = r->ops->loss(r->obj, &oi, &oo, st))) return loss_failed(r, rc);
        if (last && i0 + k >= n) al_ddp_arm(r->ddp);
        if ((rc = al_model_backward(r->lm.m, &in, r->m_dlogp, r->hp->entropy_coef > 0 ? r->m_dent : NULL, NULL)))
            return al_err(r->run.err.msg, rc, "backward failed: %s", al_strerror(rc));
    }
    return AL_OK;
}

static void zero_grads(rl *r) {
    al_model_zero_grad(r->lm.m);
    if (r->critic) al_model_zero_grad(r->critic);
}

/* Clips the policy's and critic's gradients together (their global norm,
 * summed over ranks), then one AdamW step each. */
static double optimizer_step(rl *r, float lr) {
    double mx = r->hp->max_grad_norm;
    r->n_updates++;
    if (!r->ddp) {
        /* one process: as before lib/dist, to the last bit */
        double a = al_model_grad_norm(r->lm.m), b = r->critic ? al_model_grad_norm(r->critic) : 0;
        double norm = sqrt(a * a + b * b);
        float sa = 1.0f, sb = 1.0f;
        if (mx > 0 && norm > mx && isfinite(norm)) {
            r->n_clipped++;
            if (a > 0) al_clip_grad_norm(r->lm.m, mx * a / norm, &sa);
            if (b > 0) al_clip_grad_norm(r->critic, mx * b / norm, &sb);
        }
        al_adamw_step(&r->opt, r->lm.m, lr, sa);
        if (r->critic) al_adamw_step(&r->copt, r->critic, lr, sb);
        return norm;
    }
    double a2 = al_ddp_grad_sumsq(r->ddp, r->lm.m), b2 = r->critic ? al_ddp_grad_sumsq(r->cddp, r->critic) : 0;
    double norm = sqrt(a2 + b2);
    float coef = 1.0f;
    if (mx > 0 && norm > mx && isfinite(norm)) {
        r->n_clipped++;
        /* torch.nn.utils.clip_grad_norm_ over both models' parameters,
         * applied by the AdamW steps */
        coef = (float)(mx / (norm + 1e-6));
    }
    al_ddp_adamw_step(r->ddp, &r->opt, r->lm.m, lr, coef);
    if (r->critic) al_ddp_adamw_step(r->cddp, &r->copt, r->critic, lr, coef);
    return norm;
}

/* One optimiser update's gradients over rows idx[0..n) on this rank:
 * forward, objective and backward here, then the SFT term. The skeleton
 * sums them over the ranks next (run.h, after backward). */
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
    return rc;
}

/* The optimiser updates of one rollout: PPO num_ppo_epochs passes of
 * num_mini_batches shuffled minibatches; GRPO and RLOO num_iterations over
 * the whole batch. */
static int n_updates(const rl *r) {
    return r->ppo ? r->hp->num_ppo_epochs * r->hp->num_mini_batches : r->hp->num_iterations;
}

/* Update k's forward and backward passes. */
static int hook_backward(void *u, int k) {
    rl *r = u;
    const al_hparams *hp = r->hp;
    memset(&r->one, 0, sizeof r->one);
    if (r->ppo) {
        int M = r->N / hp->num_mini_batches, b = k % hp->num_mini_batches;
        if (b == 0) { /* a new epoch over the rollout: shuffled again */
            for (int i = 0; i < r->N; i++) r->perm[i] = i;
            for (int i = r->N - 1; i > 0; i--) {
                int j = (int)al_rng_below(&r->rng, (uint32_t)i + 1);
                int32_t t = r->perm[i];
                r->perm[i] = r->perm[j];
                r->perm[j] = t;
            }
        }
        return step_grads(r, r->perm + (size_t)b * M, M, 1, &r->one);
    }
    if (k == 0)
        for (int i = 0; i < r->N; i++) r->perm[i] = i;
    /* num_iterations 1: the ratio is 1 (old = current, detached) as TRL */
    return step_grads(r, r->perm, r->N, hp->num_iterations > 1, &r->one);
}

/* The gradients summed over the ranks: clipping and AdamW, and the update's
 * statistics kept. */
static int hook_optimizer(void *u, int k, float lr) {
    rl *r = u;
    (void)k;
    r->gsum += optimizer_step(r, lr);
    r->acc.loss += r->one.loss;
    r->acc.num_tokens += r->one.num_tokens;
    for (int i = 0; i < r->one.n; i++) al_stats_add(&r->acc, r->one.m[i].name, r->one.m[i].value);
    r->n_up++;
    return AL_OK;
}

/* The mean over the step's updates into st, and their mean gradient norm. */
static double updates_mean(rl *r, al_step_stats *st) {
    al_stats_dist_sum(&r->acc); /* each rank's share of the global losses and metrics */
    memset(st, 0, sizeof *st);
    st->loss = r->acc.loss / r->n_up;
    st->num_tokens = r->acc.num_tokens / r->n_up;
    for (int i = 0; i < r->acc.n; i++) al_stats_add(st, r->acc.m[i].name, r->acc.m[i].value / r->n_up);
    return r->gsum / r->n_up;
}

/* ---- metrics and health -------------------------------------------------------------- */

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
    if (r->warned_at[kind] && r->run.step - r->warned_at[kind] < HEALTH_WINDOW) return;
    r->warned_at[kind] = r->run.step;
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    al_run_event(r->cb, AL_LOG_WARN, "step %ld: %s", r->run.step, buf);
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
static int evaluate_val(rl *r, al_mlist *l) {
    int n = r->val.n < 200 ? r->val.n : 200;
    if (n == 0) return AL_OK;
    enum { B = 16 };
    double ok = 0, rsum = 0;
    int with_answer = 0;
    al_gen_cfg g = {.max_new = r->max_new, .temperature = 0, .top_p = 1, .stop = r->stops, .n_stop = r->n_stops};
    al_rng rng;
    al_rng_seed(&rng, 1);
    int32_t *ids = malloc((size_t)B * r->max_new * sizeof *ids);
    if (!ids) return al_err(r->run.err.msg, AL_ENOMEM, "out of memory");
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
        if ((rc = al_rollout_generate(r->lm.m, ps, k, &g, &rng, ids, NULL, len, e2))) {
            rc = al_err(r->run.err.msg, rc, "evaluation: %s", e2);
            break;
        }
        for (int j = 0; j < k; j++) {
            txt[j] = al_rollout_decode_stops(r->lm.tok, ids + (size_t)j * r->max_new, len[j], r->stops, r->n_stops, &eos[j]);
            pr[j] = r->val.text[i0 + j];
            an[j] = &r->val.ref[i0 + j];
            if (!txt[j] && !rc) rc = al_err(r->run.err.msg, AL_ENOMEM, "out of memory");
            int correct = 0;
            if (!rc && an[j]->n_answers > 0) {
                with_answer++;
                if ((rc = al_rewarder_correct(r->rw, txt[j], an[j], &correct, e2)))
                    al_err(r->run.err.msg, rc, "evaluation: %s", e2);
                ok += correct;
            }
        }
        al_error se;
        if (!rc && (rc = al_rewarder_score_rows(r->rw, k, 1, pr, (const char *const *)txt, an, len, eos, sc, NULL, &se)))
            rc = al_fail_wrap(&r->run.err, rc, "", "evaluation reward", &se);
        for (int j = 0; j < k; j++) {
            if (!rc) rsum += sc[j];
            free(txt[j]);
        }
    }
    free(ids);
    if (rc) return rc;
    if (with_answer) al_mlist_put(l, "eval_exact_match", ok / with_answer);
    al_mlist_put(l, "eval_reward", rsum / n);
    return AL_OK;
}

/* The eval_tasks' benchmarks at step. */
static int evaluate_bench(rl *r, al_mlist *l, long step) {
    for (int k = 0; k < r->job->n_eval_tasks; k++) {
        if (!r->bench[k]) continue;
        int T = al_bench_longest(r->bench[k]);
        int rc = al_bench_report(r->bench[k], r->lm.m, r->mb, T, "model", step, r->cb, l->m, &l->n, 2 * AL_MAX_METRICS, r->run.err.msg);
        if (rc) return rc;
    }
    return AL_OK;
}

/* ---- checkpoints ------------------------------------------------------------------------ */

/* The full AdamW moments of the policy and the critic, every rank's RNG
 * state: what a checkpoint holds beyond the weights, gathered on rank 0. */
typedef struct rl_state {
    float *pm, *pv, *cm, *cv;
    size_t pn, cn;
    uint64_t *rng;             /* (world, 4) */
} rl_state;

/* A model of the run's weights into dir: a PEFT adapter folder when only
 * its adapters (and head) train, else the whole model. */
static int save_weights(rl *r, al_model *m, const char *dir, const char *base) {
    int adapter = al_model_num_params(m, 1) < al_model_num_params(m, 0) && (r->job->use_lora || m == r->critic);
    return al_run_save_weights(&r->run, m, dir, base, adapter);
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

/* trainer_state.json's fields (NULL without memory). */
static json_t *state_json(rl *r, const rl_state *ws) {
    /* "rng": rank 0's (a run of one process reads it); "rank_rng": every rank's */
    json_t *ranks = json_array(), *rng0 = NULL;
    for (int k = 0; k < r->run.world; k++) {
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
                           (json_int_t)r->run.step, "max_steps", (json_int_t)r->run.total_steps, "optimizer_step",
                           (json_int_t)r->opt.step, "critic_optimizer_step", (json_int_t)r->copt.step,
                           "trained_tokens", r->run.trained_tokens, "method", r->job->method, "seed",
                           (json_int_t)r->hp->seed, "kl_coef", r->kl_coef, "prompt_cursor",
                           (json_int_t)r->cursor, "rng", rng0, "rank_rng", ranks, "world_size", r->run.world,
                           "global_batch_size", r->N * r->run.world);
    /* rank 0's sampler: step_prompts replays any rank's draws from it */
    if (st && r->mixing && json_object_set_new(st, "mixer", al_mix_state(&r->mix))) {
        json_decref(st);
        st = NULL;
    }
    return st;
}

typedef struct fill_ctx {
    rl *r;
    const rl_state *ws;        /* NULL: the weights alone */
} fill_ctx;

/* The folder tmp (al_run_write_dir): the policy, the tokenizer, the critic
 * in critic/, and with the state their moments and trainer_state.json. */
static int fill_dir(void *u, const char *tmp) {
    const fill_ctx *c = u;
    rl *r = c->r;
    const rl_state *ws = c->ws;
    char path[AL_PATH_MAX + 64];
    int rc;
    if ((rc = save_weights(r, r->lm.m, tmp, r->job->model))) return rc;
    if (!r->job->use_lora) {
        /* a full model replaces an adapter folder written there before */
        snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
        if (al_file_exists(path)) remove(path);
    }
    if ((rc = al_run_copy_tokenizer(r->job, tmp, r->run.err.msg))) return rc;
    if (r->critic) {
        snprintf(path, sizeof path, "%s/critic", tmp);
        if ((rc = al_mkdir_p(path, r->run.err.msg)) || (rc = save_weights(r, r->critic, path, critic_base(r)))) return rc;
        if (ws && (rc = al_run_save_opt(&r->run, path, ws->cm, ws->cv, ws->cn, r->critic))) return rc;
    }
    if (!ws) return AL_OK;
    if ((rc = al_run_save_opt(&r->run, tmp, ws->pm, ws->pv, ws->pn, r->lm.m))) return rc;
    return al_run_save_state(&r->run, tmp, state_json(r, ws));
}

/* The folder dir (with_state: a checkpoint). Every rank calls it (sharded
 * moments and the RNG states are gathered); rank 0 writes, and all return
 * its result. */
static int save_dir(rl *r, const char *dir, int with_state) {
    rl_state ws;
    memset(&ws, 0, sizeof ws);
    int rc = AL_OK;
    if (with_state) {
        rc = al_ddp_moments_gather(r->ddp, &r->opt, &ws.pm, &ws.pv, &ws.pn, r->run.err.msg);
        if (!rc && r->critic) rc = al_ddp_moments_gather(r->cddp, &r->copt, &ws.cm, &ws.cv, &ws.cn, r->run.err.msg);
        ws.rng = malloc((size_t)r->run.world * sizeof r->rng);
        AL_ASSERT(ws.rng);
        al_dist_allgather(r->rng.s, sizeof r->rng.s, ws.rng);
    }
    fill_ctx c = {r, with_state ? &ws : NULL};
    rc = al_run_write_dir(&r->run, dir, rc, fill_dir, &c);
    if (with_state) {
        al_ddp_moments_release(&r->opt, ws.pm, ws.pv);
        if (r->critic) al_ddp_moments_release(&r->copt, ws.cm, ws.cv);
        free(ws.rng);
    }
    return al_dist_agree_err(rc, &r->run.err);
}

static int load_state(rl *r, const char *dir) {
    char path[AL_PATH_MAX + 64];
    json_t *st = NULL;
    int rc = al_run_load_state(&r->run, dir, &st, path);
    if (rc) return rc;
    json_t *gs = json_object_get(st, "global_step"), *rng = json_object_get(st, "rng");
    if (!json_is_integer(gs) || json_integer_value(gs) < 0 || !json_is_array(rng) || json_array_size(rng) != 4) {
        json_decref(st);
        return al_err(r->run.err.msg, AL_EFORMAT, "%s: global_step or rng missing (not an RL checkpoint?)", path);
    }
    r->run.step = (long)json_integer_value(gs);
    r->opt.step = (long)json_integer_value(json_object_get(st, "optimizer_step"));
    r->copt.step = (long)json_integer_value(json_object_get(st, "critic_optimizer_step"));
    r->run.trained_tokens = json_number_value(json_object_get(st, "trained_tokens"));
    r->kl_coef = json_number_value(json_object_get(st, "kl_coef"));
    r->cursor = (long)json_integer_value(json_object_get(st, "prompt_cursor"));
    /* this rank's sampling stream: rank 0's is "rng", the others' in
     * "rank_rng" when the checkpoint's run had them */
    json_t *mine = r->run.rank == 0 ? rng : json_array_get(json_object_get(st, "rank_rng"), (size_t)r->run.rank);
    int derive = !json_is_array(mine) || json_array_size(mine) != 4;
    for (int i = 0; i < 4 && !derive; i++) {
        const char *s = json_string_value(json_array_get(mine, (size_t)i));
        r->rng.s[i] = s ? strtoull(s, NULL, 16) : 0;
    }
    if (r->mixing) {
        char e2[AL_ERRLEN];
        const json_t *mx = json_object_get(st, "mixer");
        if (!mx) rc = al_err(r->run.err.msg, AL_EFORMAT, "%s: no mixer state (written by a job without training_files)", path);
        else if ((rc = al_mix_restore(&r->mix, mx, e2))) al_err(r->run.err.msg, rc, "%s: %s", path, e2);
    }
    json_decref(st);
    if (rc) return rc;
    if (derive) /* a rank the checkpoint's run did not have: a stream of its own from the seed and the step */
        al_rng_seed(&r->rng, rank_seed(r, r->hp->seed ^ 0x5A3D1E5ull ^ (uint64_t)r->run.step * 0xD1B54A32D192ED03ull));
    if (r->cursor != r->run.step * r->Pg)
        return al_err(r->run.err.msg, AL_EFORMAT, "%s: prompt_cursor %ld does not match step %ld x %d prompts", path,
                      r->cursor, r->run.step, r->Pg);
    if (r->job->use_lora) rc = load_trainable(r->lm.m, dir, r->run.err.msg);
    else rc = al_model_load_weights(r->lm.m, dir, r->run.err.msg);
    if (rc || (rc = al_run_load_opt(&r->run, &r->opt, r->lm.m, dir))) return rc;
    if (r->critic) {
        snprintf(path, sizeof path, "%s/critic", dir);
        if (al_model_num_params(r->critic, 1) < al_model_num_params(r->critic, 0)) rc = load_trainable(r->critic, path, r->run.err.msg);
        else rc = al_model_load_weights(r->critic, path, r->run.err.msg);
        if (!rc) rc = al_run_load_opt(&r->run, &r->copt, r->critic, path);
    }
    return rc;
}

/* ---- the run -------------------------------------------------------------------------- */

/* Before the step: the rollout (its prompts, completions, rewards) and
 * the advantages. */
static int hook_before_step(void *u, long step, int *n_up) {
    rl *r = u;
    /* generation and scoring are local: agree on their outcome */
    int rc = al_dist_agree_err(rollout(r, step), &r->run.err);
    if (rc) return rc;
    al_step_stats st;
    memset(&st, 0, sizeof st);
    if ((rc = advantages(r, &st, &r->zero_std))) return rc;
    memset(&r->acc, 0, sizeof r->acc);
    r->gsum = 0;
    r->n_up = 0;
    r->u0 = r->n_updates;
    r->c0 = r->n_clipped;
    *n_up = n_updates(r);
    return AL_OK;
}

static void step_metrics(rl *r, float lr, const al_step_stats *st, double gnorm, al_mlist *l);

/* After the step: the updates' means, the clipping and divergence checks,
 * and the step's metrics (step 0's, measure, without updates). */
static int hook_after_step(void *u, float lr, al_mlist *l) {
    rl *r = u;
    const al_hparams *hp = r->hp;
    al_step_stats st;
    memset(&st, 0, sizeof st);
    double gnorm = 0;
    if (r->training) {
        gnorm = updates_mean(r, &st);
        r->clip_run = r->n_clipped - r->c0 == r->n_updates - r->u0 ? r->clip_run + 1 : 0;
        if (r->clip_run == HEALTH_WINDOW)
            warn(r, 7, "the gradient norm (%.3g) exceeded max_grad_norm %g at every update of the last %d "
                 "steps: clipping rescales every step instead of guarding against spikes (raise max_grad_norm "
                 "above the typical norm)", gnorm, hp->max_grad_norm,
                 HEALTH_WINDOW);
        if (!isfinite(st.loss) || !isfinite(gnorm))
            return al_err(r->run.err.msg, AL_ENAN, "divergence: %s is not finite at step %ld",
                          isfinite(st.loss) ? "grad_norm" : "loss", r->run.step + 1);
    }
    step_metrics(r, lr, &st, gnorm, l);
    l->tps_at = l->n;
    return AL_OK;
}

/* The metrics of a step under TRL's names (collective: the batch's
 * statistics over every rank), the health checks and the KL controller. */
static void step_metrics(rl *r, float lr, const al_step_stats *stp, double gnorm, al_mlist *l) {
    const al_hparams *hp = r->hp;
    const al_step_stats st = *stp;
    int zero_std = r->zero_std, train = r->training;
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
    int N = r->N * r->run.world, P = r->Pg;
    sd = N > 1 ? sqrt(sd / (N - 1)) : 0;
    al_mlist_put(l, "loss", st.loss);
    al_mlist_put(l, "learning_rate", lr);
    al_mlist_put(l, "grad_norm", gnorm);
    if (r->ppo) {
        double nsr = -r->kl_coef * seq_kl / N;
        al_mlist_put(l, "objective/kl", seq_kl / N);
        al_mlist_put(l, "objective/entropy", seq_nlp / N);
        al_mlist_put(l, "objective/non_score_reward", nsr);
        al_mlist_put(l, "objective/rlhf_reward", score + nsr);
        al_mlist_put(l, "objective/scores", score);
        al_mlist_put(l, "val/num_eos_tokens", eos);
        if (hp->adaptive_kl) al_mlist_put(l, "objective/kl_coef", r->kl_coef);
        al_mlist_put(l, "episode", (double)(r->run.step + 1) * P);
    } else {
        al_mlist_put(l, "reward", score);
        al_mlist_put(l, "reward_std", sd);
        al_mlist_put(l, "frac_reward_zero_std", (double)zero_std / P);
        if (r->use_ref) al_mlist_put(l, "objective/kl", seq_kl / N);
    }
    al_mlist_put(l, "completions/mean_length", len / N);
    al_mlist_put(l, "completions/min_length", minl);
    al_mlist_put(l, "completions/max_length", maxl);
    al_mlist_put(l, "completions/clipped_ratio", 1.0 - eos / N);
    al_mlist_put(l, "completions/mean_terminated_length", tn > 0 ? tl / tn : 0);
    al_mlist_put(l, "completions/distinct_2", d2 / N);
    /* logged at weight 0 too when the prompts have answers: the samples'
     * true accuracy beside what a reward model says of them */
    if (r->job->reward.verifiable != 0 || r->all_answered) {
        al_mlist_put(l, "rewards/verifiable/mean", mean_of(r->p_ver, r->N));
        al_mlist_put(l, "rewards/verifiable/extracted", mean_of(r->p_ext, r->N));
    }
    if (r->job->reward.format_regex[0]) al_mlist_put(l, "rewards/format/mean", mean_of(r->p_fmt, r->N));
    if (r->job->reward.http_url[0]) al_mlist_put(l, "rewards/http/mean", mean_of(r->p_http, r->N));
    if (al_rewarder_has_rm(r->rw)) al_mlist_put(l, "rewards/reward_model/mean", mean_of(r->p_rm, r->N));
    if (al_rewarder_has_judge(r->rw)) al_mlist_put(l, "rewards/judge/mean", mean_of(r->p_judge, r->N));
    for (int i = 0; i < st.n; i++) al_mlist_put(l, st.m[i].name, st.m[i].value);
    al_mlist_put(l, "num_tokens", r->run.trained_tokens + (train ? st.num_tokens : 0));
    if (train) r->run.trained_tokens += st.num_tokens;
    health(r, r->use_ref ? seq_kl / N : NAN, ntok > 0 ? seq_nlp / ntok : NAN, len / N, score,
           r->use_ref && ntok > 0 ? ref_tok / ntok : NAN, d2 / N, (double)zero_std / P);
    if (r->ppo && hp->adaptive_kl && train)
        r->kl_coef = al_rl_adaptive_kl(r->kl_coef, seq_kl / N, hp->target_kl, hp->kl_horizon, P);
}

/* ---- the step kind: hooks of the run skeleton (run.h) ------------------------------- */

static int hook_resume(void *u, const char *dir, char *note) {
    rl *r = u;
    int rc = load_state(r, dir);
    if (!rc && r->run.world0 != r->run.world)
        snprintf(note, AL_ERRLEN, "the checkpoint was written by %d ranks, this run has %d: %d prompts a step are "
                 "kept, %d per rank; ranks without a stream in the checkpoint sample from one of their own",
                 r->run.world0, r->run.world, r->Pg, r->P);
    return rc;
}

/* Step 0: the starting point, measured on a rollout of its own RNG so the
 * training rollouts do not depend on whether it ran. */
static int hook_measure(void *u, al_mlist *l) {
    rl *r = u;
    al_rng keep = r->rng;
    al_rng_seed(&r->rng, rank_seed(r, r->hp->seed ^ 0x0DDBA11ull));
    int n;
    r->training = 0;
    int rc = hook_before_step(r, r->run.step, &n);
    if (!rc) rc = hook_after_step(r, al_run_lr(&r->run), l);
    r->training = 1;
    if (rc) return rc;
    r->rng = keep;
    r->h_n = 0; /* the health history starts with the training steps */
    return AL_OK;
}

/* Rank 0 at evaluation steps: the validation prompts, the benchmarks. */
static int hook_evaluate(void *u, long step, al_mlist *l) {
    rl *r = u;
    int rc = evaluate_val(r, l);
    return rc ? rc : evaluate_bench(r, l, step);
}

static void hook_samples(void *u, long step) { samples(u, step); }

static int hook_save(void *u, const char *dir) { return save_dir(u, dir, 1); }

static const al_run_ops k_rl_ops = {
    .log_first = 1, .resume = hook_resume, .measure = hook_measure, .before_step = hook_before_step,
    .backward = hook_backward, .optimizer = hook_optimizer, .after_step = hook_after_step,
    .evaluate = hook_evaluate, .samples = hook_samples, .save = hook_save,
};

int al_rl_run(const al_job *job, const char *resume_dir, const al_train_cb *cb, al_train_result *res,
              al_error *err) {
    al_train_result r0;
    memset(&r0, 0, sizeof r0);
    rl *r = calloc(1, sizeof *r);
    if (!r) return al_failf(err, AL_ENOMEM, "out of memory");
    r->job = r->run.job = job;
    r->hp = r->run.hp = &job->hp;
    r->cb = r->run.cb = cb;
    r->resume = resume_dir;
    r->training = 1;
    /* every rank passes each agreement, one whose set-up failed too */
    int rc = al_dist_agree_err(setup(r), &r->run.err);
    if (!rc) rc = start_dist(r);
    rc = al_dist_agree_err(rc, &r->run.err);
    r->run.ddp[0] = r->cddp; /* the critic's reduction first, then the policy's */
    r->run.ddp[1] = r->ddp;
    if (!rc) rc = al_run_loop(&r->run, &k_rl_ops, r, resume_dir, &r0);
    char line[300];
    if (!rc && al_ddp_summary(r->ddp, " of the policy", line, sizeof line)) al_run_event(cb, AL_LOG_INFO, "%s", line);
    if (!rc && al_ddp_summary(r->cddp, " of the critic", line, sizeof line)) al_run_event(cb, AL_LOG_INFO, "%s", line);
    r0.steps = r->run.step;
    r0.total_steps = r->run.total_steps;
    r0.trained_tokens = r->run.trained_tokens;
    r0.output_is_model = 1;
    if (res) *res = r0;
    if (rc && err) *err = r->run.err;
    rl_free(r);
    free(r);
    return rc;
}

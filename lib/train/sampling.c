/* The sampling jobs, whose product is data rather than weights
 * (al_sampling_run, trainer.h). Each reads prompts as the RL methods do
 * (rollout.h: a built-in task or a prompt-only JSONL file), samples from
 * frozen models with the KV cache,
 * and writes JSONL files into output_dir that the daemon registers as
 * uploads (al_train_result.output_files):
 *
 *   generate_preferences  num_generations completions per prompt, scored by
 *       the job's reward sources (verifiable, reward model, AI judge), the
 *       best against the worst as {"prompt","chosen","rejected",
 *       "score_chosen","score_rejected"} in preferences.jsonl: a DPO job's
 *       training_file (SFT -> sample -> rank -> DPO). Prompts whose
 *       completions all score the same give no pair and are counted.
 *   evaluate  model (A) against model_b (B) on the prompts: one completion
 *       each (greedy by default), judged by the reward model (higher score
 *       wins) or the AI judge (both orders asked, so position bias cancels);
 *       ties count half. Metrics: win_rate (A's), win_rate_b, ties,
 *       reward_a/reward_b, exact_match_a/exact_match_b where prompts have
 *       answers; evaluation.jsonl holds every comparison.
 *   critique_revise  Constitutional AI's supervised stage (Bai et al. 2022):
 *       the model answers, critiques its answer against a principle drawn
 *       from the list, and revises it; sft.jsonl gets {"prompt",
 *       "completion": revision} and pairs.jsonl {"prompt", "chosen":
 *       revision, "rejected": first answer}. The model is asked through its
 *       chat template (a conversation of answer, critique request, critique,
 *       revision request), or in plain text when it has none.
 *
 * They are the run skeleton's step kind without updates (run.h): a step is a
 * chunk of prompts (evaluate's benchmarks one more step at the end), its
 * metrics logged through after_step every logging_steps and at the last
 * chunk, samples and events as training sends them, stop and pause between
 * steps through the loop. A checkpoint (every save_steps, and at a pause)
 * is a folder checkpoint-N holding the files written so far and
 * trainer_state.json (the step, the running sums behind the metrics, the
 * RNG), written under a temporary name and renamed, so that a paused or
 * crashed job resumes where it stopped and ends with the files an
 * uninterrupted run writes, byte for byte. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../buf.h"
#include "../io.h"
#include "bench.h"
#include "lm.h"
#include "rollout.h"
#include "run.h"

enum { CHUNK = 16, MAX_SUMS = 12, MAX_OUT = 2 };

/* Empty or only whitespace: what the dataset reader refuses as a target. */
static int is_blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\n\r\f\v", *s)) return 0;
    return 1;
}

/* A model to sample from (frozen): dir's weights, tokenizer and template,
 * errors prefixed with field. */
static int lm_open(al_lm *p, const al_job *job, const char *dir, const char *field, al_error *err) {
    al_lm_cfg lc = {.open_flags = AL_OPEN_FROZEN | al_job_open_flags(job), .model_field = field, .tok_field = field};
    int rc = al_lm_open_at(p, dir, &lc, err);
    if (!rc && !al_model_config_of(p->m)->has_lm_head)
        return AL_FAIL(err, AL_EINVAL, "%s", "%s has no language-model head", field, dir);
    return rc;
}

/* ---- the step kind ------------------------------------------------------------------ */

typedef struct djob djob;

/* A data job: its set-up (models, prompts, rewards; the steps and files),
 * one step (a chunk of prompts from d->p0), the step's metrics, and the
 * closing event. */
typedef struct dkind {
    const char *method;
    int (*setup)(djob *d);
    int (*step)(djob *d, long step);
    void (*metrics)(djob *d, long step, al_mlist *l);
    void (*done)(djob *d);
} dkind;

struct djob {
    al_run run;
    const dkind *kind;
    const al_job *job;
    const al_hparams *hp;
    const al_train_cb *cb;
    al_train_result *res;
    al_error *fail;             /* &run.err: the field at fault and the message */
    char *err;                  /* run.err.msg, where no job field is at fault */
    al_lm A, B;
    al_prompts pa, pb;
    al_rewarder *rw;
    al_rng rng;
    int per;                    /* prompts per step */
    int p0, k;                  /* the step's prompts: p0 .. p0 + k - 1 */
    long chunks;                /* steps over the prompts */
    double s[MAX_SUMS];         /* the running sums behind the metrics (saved) */
    int n_out;                  /* files written at the end, in out[] */
    const char *file[MAX_OUT], *purpose[MAX_OUT];
    al_buf out[MAX_OUT];
    al_mlist bench;             /* evaluate's benchmark metrics */
    /* generate_preferences' rows of one step (per x num_generations) */
    const al_seq **ps;
    char **txt;
    const char **pt;
    const al_reward_row **an;
    int *lens, *eos;
    float *sc;
};

/* Appends o (whose reference it takes) to b as one JSONL line. */
static int jsonl_add(al_buf *b, json_t *o) {
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line) return AL_ENOMEM;
    al_buf_puts(b, line);
    free(line);
    return al_buf_putc(b, '\n');
}

static int write_output(djob *d, int i) {
    char path[AL_PATH_MAX + 64];
    al_train_result *res = d->res;
    int rc = al_mkdir_p(d->job->output_dir, d->err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/%s", d->job->output_dir, d->file[i]);
    if (d->out[i].oom) return al_err(d->err, AL_ENOMEM, "out of memory");
    if ((rc = al_file_write_atomic(path, al_buf_str(&d->out[i]), d->out[i].n, d->err))) return rc;
    if (res->n_output_files < 4) {
        snprintf(res->output_files[res->n_output_files].path, sizeof res->output_files[0].path, "%s", path);
        snprintf(res->output_files[res->n_output_files].purpose, sizeof res->output_files[0].purpose, "%s",
                 d->purpose[i]);
        res->n_output_files++;
    }
    return AL_OK;
}

/* The job's prompts, encoded with chat; what the hygiene filters dropped
 * from its training_file goes to cb's events. */
static int load_prompts(const al_job *job, const al_chat *chat, al_prompts *p, const al_train_cb *cb,
                        al_error *err) {
    if (job->task[0])
        return al_prompts_load(p, job, chat, 1, job->task_rows, job->task_seed, job->task_split, NULL, "task", 0, err);
    int rc = al_prompts_load(p, job, chat, 0, 0, 0, 0, job->training_file, "training_file", 0, err);
    if (!rc) al_hygiene_describe(p->report, "training_file", 20, al_run_event_line, (void *)cb);
    return rc;
}

/* Generates one completion for each of n prompts (max_new tokens) and
 * decodes them into txt (malloc'd each), lens and eos flags. */
static int gen_texts(al_lm *pm, const al_seq *const *ps, int n, const al_hparams *hp, al_rng *rng, int max_new,
                     char **txt, int *lens, int *eos, char err[AL_ERRLEN]) {
    int32_t *ids = malloc((size_t)n * max_new * sizeof *ids);
    if (!ids) return al_err(err, AL_ENOMEM, "out of memory");
    /* completions end where the served model's answers end (EOS, the
     * template's end of turn), as RL rollouts do */
    int32_t stops[AL_LM_MAX_STOPS];
    int n_stops = al_lm_stop_ids(pm, stops, AL_LM_MAX_STOPS, err);
    if (n_stops < 0) {
        free(ids);
        return n_stops;
    }
    al_gen_cfg g = {.max_new = max_new, .temperature = hp->temperature, .top_k = hp->top_k,
                    .top_p = hp->top_p > 0 ? hp->top_p : 1, .stop = stops, .n_stop = n_stops};
    int rc = al_rollout_generate(pm->m, ps, n, &g, rng, ids, NULL, lens, err);
    for (int i = 0; i < n; i++) {
        txt[i] = NULL;
        if (!rc) {
            txt[i] = al_rollout_decode_stops(pm->tok, ids + (size_t)i * max_new, lens[i], stops, n_stops, &eos[i]);
            if (!txt[i]) rc = al_err(err, AL_ENOMEM, "out of memory");
        }
    }
    free(ids);
    return rc;
}

static int room(const al_lm *pm, const al_seq *const *ps, int n, int want, al_error *err) {
    int maxp = 0, T = al_model_config_of(pm->m)->max_T;
    for (int i = 0; i < n; i++) maxp = ps[i]->n > maxp ? ps[i]->n : maxp;
    int r = T - maxp < want ? T - maxp : want;
    if (r < 1)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.max_prompt_length", "a prompt of %d tokens leaves no room "
                       "in the context of %d", maxp, T);
    return r;
}

/* ---- generate_preferences ------------------------------------------------------- */

enum { GP_PAIRS, GP_TIES, GP_BLANK, GP_SUM_C, GP_SUM_R, GP_SUM_ALL, GP_SUM_LEN };

static int gp_setup(djob *d) {
    const al_hparams *hp = d->hp;
    int G = hp->num_generations, n;
    d->per = CHUNK / G > 0 ? CHUNK / G : 1;
    n = d->per * G;
    d->ps = calloc((size_t)n, sizeof *d->ps);
    d->txt = calloc((size_t)n, sizeof *d->txt);
    d->pt = calloc((size_t)n, sizeof *d->pt);
    d->an = calloc((size_t)n, sizeof *d->an);
    d->lens = calloc((size_t)n, sizeof *d->lens);
    d->eos = calloc((size_t)n, sizeof *d->eos);
    d->sc = calloc((size_t)n, sizeof *d->sc);
    if (!d->ps || !d->txt || !d->pt || !d->an || !d->lens || !d->eos || !d->sc)
        return al_err(d->err, AL_ENOMEM, "out of memory");
    int rc = lm_open(&d->A, d->job, d->job->model, "model", d->fail);
    if (!rc) rc = load_prompts(d->job, d->A.chat, &d->pa, d->cb, d->fail);
    if (!rc) {
        al_reward_len len = {al_prompts_max_bytes(&d->pa), al_completion_max_bytes(d->A.tok, hp->max_completion_length)};
        rc = al_rewarder_new(&d->rw, &d->job->reward, hp->missing_eos_penalty, CHUNK, &len, d->fail);
        if (!rc) rc = al_rewarder_attach(d->rw, d->cb, d->fail);
    }
    d->n_out = 1;
    d->file[0] = "preferences.jsonl";
    d->purpose[0] = "preferences";
    d->chunks = d->run.total_steps = (d->pa.n + d->per - 1) / d->per;
    return rc;
}

/* Prompt q's group of completions: its best against its worst as a pair,
 * unless they tie. */
static int gp_pair(djob *d, int q, long step) {
    const al_train_cb *cb = d->cb;
    int G = d->hp->num_generations, best = -1, worst = -1;
    double *s = d->s;
    for (int i = q * G; i < (q + 1) * G; i++) {
        /* blank completions score but never enter a pair: a training
         * file's chosen and rejected must say something */
        s[GP_SUM_ALL] += d->sc[i];
        s[GP_SUM_LEN] += d->lens[i];
        if (is_blank(d->txt[i])) {
            s[GP_BLANK]++;
            continue;
        }
        if (best < 0 || d->sc[i] > d->sc[best]) best = i;
        if (worst < 0 || d->sc[i] < d->sc[worst]) worst = i;
    }
    if (best < 0 || !(d->sc[best] > d->sc[worst]) || !strcmp(d->txt[best], d->txt[worst])) {
        s[GP_TIES]++;
        return AL_OK;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:f, s:f}", "prompt", d->pt[best], "chosen", d->txt[best], "rejected",
                          d->txt[worst], "score_chosen", (double)d->sc[best], "score_rejected", (double)d->sc[worst]);
    int rc = !o || jsonl_add(&d->out[0], o) ? al_err(d->err, AL_ENOMEM, "out of memory") : AL_OK;
    s[GP_PAIRS]++;
    s[GP_SUM_C] += d->sc[best];
    s[GP_SUM_R] += d->sc[worst];
    if (cb && cb->sample && s[GP_PAIRS] <= 3) cb->sample(cb->ud, step + 1, d->pt[best], d->txt[best], d->sc[best]);
    return rc;
}

static int gp_step(djob *d, long step) {
    const al_hparams *hp = d->hp;
    int G = hp->num_generations, n = d->k * G;
    for (int i = 0; i < n; i++) {
        d->ps[i] = &d->pa.seq[d->p0 + i / G];
        d->pt[i] = d->pa.text[d->p0 + i / G];
        d->an[i] = &d->pa.ref[d->p0 + i / G];
    }
    int max_new = room(&d->A, d->ps, n, hp->max_completion_length, d->fail);
    if (max_new < 0) return max_new;
    int rc = gen_texts(&d->A, d->ps, n, hp, &d->rng, max_new, d->txt, d->lens, d->eos, d->err);
    al_error se;
    if (!rc && (rc = al_rewarder_score_rows(d->rw, n, G, d->pt, (const char *const *)d->txt, d->an, d->lens, d->eos,
                                            d->sc, NULL, &se)))
        al_fail_wrap(d->fail, rc, "reward", "reward", &se);
    for (int q = 0; q < d->k && !rc; q++) rc = gp_pair(d, q, step);
    for (int i = 0; i < n; i++) {
        free(d->txt[i]);
        d->txt[i] = NULL;
    }
    return rc;
}

static void gp_metrics(djob *d, long step, al_mlist *l) {
    (void)step;
    const double *s = d->s;
    double seen = (double)(d->p0 + d->k) * d->hp->num_generations;
    al_mlist_put(l, "pairs", s[GP_PAIRS]);
    al_mlist_put(l, "skipped_ties", s[GP_TIES]);
    al_mlist_put(l, "blank_completions", s[GP_BLANK]);
    al_mlist_put(l, "reward", s[GP_SUM_ALL] / seen);
    al_mlist_put(l, "completions/mean_length", s[GP_SUM_LEN] / seen);
    if (s[GP_PAIRS] > 0) {
        al_mlist_put(l, "score_chosen", s[GP_SUM_C] / s[GP_PAIRS]);
        al_mlist_put(l, "score_rejected", s[GP_SUM_R] / s[GP_PAIRS]);
    }
}

static void gp_done(djob *d) {
    long ties = (long)d->s[GP_TIES];
    al_run_event(d->cb, ties ? AL_LOG_WARN : AL_LOG_INFO,
                 "generate_preferences: %ld pairs from %d prompts; %ld prompts skipped (all completions scored "
                 "alike); %ld blank completions left out of pairs",
                 (long)d->s[GP_PAIRS], d->pa.n, ties, (long)d->s[GP_BLANK]);
}

/* ---- evaluate ----------------------------------------------------------------------- */

enum { EV_WINS, EV_TIES, EV_CMP, EV_RA, EV_RB, EV_EMA, EV_EMB, EV_WITH_ANSWER, EV_PMEAN };

static int ev_setup(djob *d) {
    const al_job *job = d->job;
    const al_hparams *hp = d->hp;
    int two = job->model_b[0] != 0, has_prompts = job->task[0] || job->training_file[0];
    int rc = lm_open(&d->A, job, job->model, "model", d->fail);
    if (!rc && two) rc = lm_open(&d->B, job, job->model_b, "model_b", d->fail);
    if (!rc && has_prompts) rc = load_prompts(job, d->A.chat, &d->pa, NULL, d->fail);
    if (!rc && two && has_prompts) rc = load_prompts(job, d->B.chat, &d->pb, NULL, d->fail);
    if (!rc) {
        /* without model_b only the grader is used (exact match) */
        al_reward_len len = {al_prompts_max_bytes(&d->pa), al_completion_max_bytes(d->A.tok, hp->max_completion_length)};
        size_t cb_b = two ? al_completion_max_bytes(d->B.tok, hp->max_completion_length) : 0;
        if (cb_b > len.completion_bytes) len.completion_bytes = cb_b;
        rc = al_rewarder_new(&d->rw, &job->reward, hp->missing_eos_penalty, CHUNK, &len, d->fail);
    }
    d->per = CHUNK;
    d->n_out = has_prompts;
    d->file[0] = "evaluation.jsonl";
    d->purpose[0] = "evaluation";
    d->chunks = (d->pa.n + CHUNK - 1) / CHUNK;
    d->run.total_steps = d->chunks + (job->n_eval_tasks > 0);
    return rc;
}

/* The eval_tasks on model A (and B): each benchmark's results, logged at
 * step as eval/<task>/<metric> (B's with the suffix _b). */
static int ev_benchmarks(djob *d, long step) {
    enum { ROWS = 8 };
    const al_job *job = d->job;
    al_mlist *l = &d->bench;
    int rc = AL_OK;
    l->n = 0;
    for (int k = 0; k < job->n_eval_tasks && !rc; k++) {
        char what[48];
        snprintf(what, sizeof what, "eval_tasks[%d]", k);
        for (int side = 0; side < (job->model_b[0] ? 2 : 1) && !rc; side++) {
            al_lm *pm = side ? &d->B : &d->A;
            al_bench *b = NULL;
            int T = al_model_config_of(pm->m)->max_T;
            char e2[AL_ERRLEN];
            if ((rc = al_bench_load(&b, &job->eval_tasks[k], pm->chat, &job->reward.grader, T, what, d->err))) {
                al_fail_as(d->fail, rc, what, d->err);
                break;
            }
            /* a forward-only reservation for the scoring rows */
            if ((rc = al_model_reserve(pm->m, ROWS, al_bench_longest(b), AL_MODEL_FORWARD_ONLY, e2)))
                AL_FAIL(d->fail, rc, "%s", "%s", side ? "model_b" : "model", e2);
            if (!rc)
                rc = al_bench_report(b, pm->m, ROWS, al_bench_longest(b), side ? "model_b" : "model", step + 1, d->cb,
                                     l->m, &l->n, 2 * AL_MAX_METRICS, d->err);
            al_bench_free(b);
        }
    }
    return rc;
}

/* Completion i of A against B's: the JSONL row (NULL without memory), the
 * sums. sca, scb: the reward model's scores. */
static json_t *ev_row(djob *d, int i, char *const *ta, char *const *tb, const float *sca, const float *scb, int ca,
                      int cbv, long step, int *rc) {
    const al_train_cb *cb = d->cb;
    int two = d->job->model_b[0] != 0, at = d->p0 + i;
    const char *ans = d->pa.answer[at], *pt = d->pa.text[at];
    double *s = d->s;
    json_t *o = json_pack("{s:s, s:s}", "prompt", pt, "completion_a", ta[i]);
    if (!o) return NULL;
    if (ans) {
        json_object_set_new(o, "answer", json_string(ans));
        json_object_set_new(o, "correct_a", json_boolean(ca));
    }
    if (!two) {
        if (cb && cb->sample && at < 3) cb->sample(cb->ud, step + 1, pt, ta[i], ans ? ca : NAN);
        return o;
    }
    double win;
    json_object_set_new(o, "completion_b", json_string(tb[i]));
    if (ans) json_object_set_new(o, "correct_b", json_boolean(cbv));
    if (al_rewarder_has_judge(d->rw)) {
        double p;
        char e2[AL_ERRLEN];
        if ((*rc = al_rewarder_judge(d->rw, pt, ta[i], tb[i], &p, e2))) {
            /* its template, its context: the judge's model (as al_rewarder_score_rows says) */
            al_err(d->err, *rc, "judge: %s", e2);
            al_fail_as(d->fail, *rc, *rc == AL_ENOMEM ? "" : "reward.judge.model", d->err);
            json_decref(o);
            return NULL;
        }
        s[EV_PMEAN] += p;
        win = p > 0.5 ? 1 : p < 0.5 ? 0 : 0.5;
        json_object_set_new(o, "p_a_better", json_real(p));
    } else {
        win = sca[i] > scb[i] ? 1 : sca[i] < scb[i] ? 0 : 0.5;
        s[EV_RA] += sca[i];
        s[EV_RB] += scb[i];
        json_object_set_new(o, "score_a", json_real(sca[i]));
        json_object_set_new(o, "score_b", json_real(scb[i]));
    }
    s[EV_WINS] += win;
    s[EV_TIES] += win == 0.5;
    s[EV_CMP]++;
    json_object_set_new(o, "winner", json_string(win == 1 ? "a" : win == 0 ? "b" : "tie"));
    if (cb && cb->sample && at < 3) cb->sample(cb->ud, step + 1, pt, ta[i], win);
    return o;
}

/* The step's completions of A (and B), scored, graded and compared. */
static int ev_compare(djob *d, long step, char **ta, char **tb) {
    const al_hparams *hp = d->hp;
    int k = d->k, two = d->job->model_b[0] != 0, la[CHUNK], lb[CHUNK], ea[CHUNK], eb[CHUNK];
    const al_seq *sa[CHUNK], *sb[CHUNK];
    const char *pt[CHUNK];
    float sca[CHUNK], scb[CHUNK];
    char e2[AL_ERRLEN];
    for (int i = 0; i < k; i++) {
        sa[i] = &d->pa.seq[d->p0 + i];
        sb[i] = two ? &d->pb.seq[d->p0 + i] : NULL;
        pt[i] = d->pa.text[d->p0 + i];
    }
    int na = room(&d->A, sa, k, hp->max_completion_length, d->fail);
    int nb = two ? room(&d->B, sb, k, hp->max_completion_length, d->fail) : 1;
    if (na < 0 || nb < 0) return na < 0 ? na : nb;
    int rc = gen_texts(&d->A, sa, k, hp, &d->rng, na, ta, la, ea, d->err);
    if (!rc && two) rc = gen_texts(&d->B, sb, k, hp, &d->rng, nb, tb, lb, eb, d->err);
    if (!rc && two && al_rewarder_has_rm(d->rw)) {
        if ((rc = al_rewarder_rm(d->rw, k, pt, (const char *const *)ta, ea, sca, e2)) ||
            (rc = al_rewarder_rm(d->rw, k, pt, (const char *const *)tb, eb, scb, e2)))
            rc = AL_FAIL(d->fail, rc, "reward", "%s", e2);
    }
    for (int i = 0; i < k && !rc; i++) {
        int ca = 0, cbv = 0;
        const al_reward_row *ref = &d->pa.ref[d->p0 + i];
        if ((rc = al_rewarder_correct(d->rw, ta[i], ref, &ca, e2)) ||
            (two && (rc = al_rewarder_correct(d->rw, tb[i], ref, &cbv, e2)))) {
            al_err(d->err, rc, "%s", e2);
            break;
        }
        if (d->pa.answer[d->p0 + i]) {
            d->s[EV_WITH_ANSWER]++;
            d->s[EV_EMA] += ca;
            d->s[EV_EMB] += cbv;
        }
        json_t *o = ev_row(d, i, ta, tb, sca, scb, ca, cbv, step, &rc);
        if (rc) break;
        if (!o || jsonl_add(&d->out[0], o)) rc = al_err(d->err, AL_ENOMEM, "out of memory");
    }
    return rc;
}

static int ev_step(djob *d, long step) {
    if (step >= d->chunks) return ev_benchmarks(d, step);
    char *ta[CHUNK] = {0}, *tb[CHUNK] = {0};
    int rc = ev_compare(d, step, ta, tb);
    for (int i = 0; i < d->k; i++) {
        free(ta[i]);
        free(tb[i]);
    }
    return rc;
}

static void ev_metrics(djob *d, long step, al_mlist *l) {
    const double *s = d->s;
    if (step >= d->chunks) {
        for (int i = 0; i < d->bench.n; i++) al_mlist_put(l, d->bench.m[i].name, d->bench.m[i].value);
        return;
    }
    l->log = step + 1 == d->chunks; /* the prompts' last step, before the benchmarks' */
    if (s[EV_CMP] > 0) {
        al_mlist_put(l, "win_rate", s[EV_WINS] / s[EV_CMP]);
        al_mlist_put(l, "win_rate_b", (s[EV_CMP] - s[EV_WINS]) / s[EV_CMP]);
        al_mlist_put(l, "ties", s[EV_TIES] / s[EV_CMP]);
        if (al_rewarder_has_judge(d->rw)) al_mlist_put(l, "judge/mean_p_a", s[EV_PMEAN] / s[EV_CMP]);
        else {
            al_mlist_put(l, "reward_a", s[EV_RA] / s[EV_CMP]);
            al_mlist_put(l, "reward_b", s[EV_RB] / s[EV_CMP]);
        }
    }
    if (s[EV_WITH_ANSWER] > 0) {
        al_mlist_put(l, "exact_match_a", s[EV_EMA] / s[EV_WITH_ANSWER]);
        if (d->job->model_b[0]) al_mlist_put(l, "exact_match_b", s[EV_EMB] / s[EV_WITH_ANSWER]);
    }
    al_mlist_put(l, "prompts", (double)(d->p0 + d->k));
}
/* ---- critique_revise ------------------------------------------------------------------ */

/* The k-th turn of the constitutional conversation as prompt ids:
 * stage 1 asks for the critique, stage 2 for the revision. */
static int cr_prompt(al_lm *pm, const char *prompt, const char *answer, const char *principle,
                     const char *critique, int stage, al_seq *out, char err[AL_ERRLEN]) {
    char req1[AL_PRINCIPLE_LEN + 256];
    snprintf(req1, sizeof req1, "Critique your last response against this principle: %s\nPoint out "
             "specifically where it falls short.", principle);
    const char *req2 = "Rewrite your response to address the critique. Reply with the revised response only.";
    if (al_chat_has_template(pm->chat)) {
        json_t *msgs = json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]", "role", "user", "content", prompt,
                                 "role", "assistant", "content", answer, "role", "user", "content", req1);
        if (msgs && stage == 2) {
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "assistant", "content", critique));
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", req2));
        }
        int rc = msgs ? al_chat_encode_prompt_messages(pm->chat, msgs, NULL, out, err)
                      : al_err(err, AL_ENOMEM, "out of memory");
        json_decref(msgs);
        return rc;
    }
    size_t cap = strlen(prompt) + strlen(answer) + strlen(critique) + sizeof req1 + 256;
    char *t = malloc(cap);
    if (!t) return al_err(err, AL_ENOMEM, "out of memory");
    if (stage == 1) snprintf(t, cap, "%s%s\n\nCritique request: %s\nCritique:", prompt, answer, req1);
    else snprintf(t, cap, "%s%s\n\nCritique request: %s\nCritique:%s\n\nRevision request: %s\nRevision:", prompt,
                  answer, req1, critique, req2);
    int rc = al_chat_encode_prompt(pm->chat, t, strlen(t), out, err);
    free(t);
    return rc;
}

enum { CR_KEPT, CR_SAME };

static int cr_setup(djob *d) {
    int rc = lm_open(&d->A, d->job, d->job->model, "model", d->fail);
    if (!rc) rc = load_prompts(d->job, d->A.chat, &d->pa, d->cb, d->fail);
    d->per = CHUNK;
    d->n_out = 2;
    d->file[0] = "sft.jsonl";
    d->purpose[0] = "sft";
    d->file[1] = "pairs.jsonl";
    d->purpose[1] = "pairs";
    d->chunks = d->run.total_steps = (d->pa.n + CHUNK - 1) / CHUNK;
    return rc;
}

/* The critiques (stage 1) and the revisions (stage 2) of the k answers,
 * the conversations in q. */
static int cr_turns(djob *d, const int *pi, char **ans, char **crit, char **rev, al_seq *q) {
    const al_hparams *hp = d->hp;
    int k = d->k, T = al_model_config_of(d->A.m)->max_T, len[CHUNK], eos[CHUNK], rc = AL_OK;
    const al_seq *ps[CHUNK];
    for (int stage = 1; stage <= 2 && !rc; stage++) {
        int maxp = 0;
        for (int i = 0; i < k && !rc; i++) {
            al_seq_deinit(&q[i]);
            rc = cr_prompt(&d->A, d->pa.text[d->p0 + i], ans[i], d->job->principles[pi[i]], crit[i] ? crit[i] : "",
                           stage, &q[i], d->err);
            if (!rc && q[i].n > T - 1) {
                /* keep the end of an overlong conversation (the request) */
                int keep = T / 2;
                memmove(q[i].ids, q[i].ids + (q[i].n - keep), (size_t)keep * sizeof *q[i].ids);
                q[i].n = keep;
            }
            if (!rc && q[i].n > maxp) maxp = q[i].n;
            ps[i] = &q[i];
        }
        if (rc) break;
        int mn = T - maxp < hp->max_completion_length ? T - maxp : hp->max_completion_length;
        rc = gen_texts(&d->A, ps, k, hp, &d->rng, mn, stage == 1 ? crit : rev, len, eos, d->err);
    }
    return rc;
}

/* Revision i into the files, unless it is empty or the answer unchanged. */
static int cr_keep(djob *d, int i, const int *pi, char *const *ans, char *const *crit, const char *rv, long step) {
    const al_train_cb *cb = d->cb;
    const char *prompt = d->pa.text[d->p0 + i];
    int rc = AL_OK;
    while (*rv == ' ' || *rv == '\n') rv++;
    if (is_blank(rv) || !strcmp(rv, ans[i])) {
        d->s[CR_SAME]++;
        return AL_OK;
    }
    json_t *a = json_pack("{s:s, s:s}", "prompt", prompt, "completion", rv);
    if (!a || jsonl_add(&d->out[0], a)) rc = al_err(d->err, AL_ENOMEM, "out of memory");
    /* a blank first answer makes no pair a DPO job would take */
    json_t *b = is_blank(ans[i]) ? NULL
              : json_pack("{s:s, s:s, s:s, s:s, s:s}", "prompt", prompt, "chosen", rv, "rejected", ans[i],
                          "principle", d->job->principles[pi[i]], "critique", crit[i]);
    if (!is_blank(ans[i]) && (!b || jsonl_add(&d->out[1], b))) rc = al_err(d->err, AL_ENOMEM, "out of memory");
    d->s[CR_KEPT]++;
    if (cb && cb->sample && d->s[CR_KEPT] <= 3) cb->sample(cb->ud, step + 1, prompt, rv, NAN);
    return rc;
}

static int cr_step(djob *d, long step) {
    int k = d->k, len[CHUNK], eos[CHUNK], pi[CHUNK];
    const al_seq *ps[CHUNK];
    char *ans[CHUNK] = {0}, *crit[CHUNK] = {0}, *rev[CHUNK] = {0};
    al_seq q[CHUNK];
    memset(q, 0, sizeof q);
    for (int i = 0; i < k; i++) {
        ps[i] = &d->pa.seq[d->p0 + i];
        pi[i] = (int)al_rng_below(&d->rng, (uint32_t)d->job->n_principles);
    }
    int rc = room(&d->A, ps, k, d->hp->max_completion_length, d->fail);
    if (rc >= 0) rc = gen_texts(&d->A, ps, k, d->hp, &d->rng, rc, ans, len, eos, d->err);
    if (!rc) rc = cr_turns(d, pi, ans, crit, rev, q);
    for (int i = 0; i < k && !rc; i++) rc = cr_keep(d, i, pi, ans, crit, rev[i], step);
    for (int i = 0; i < k; i++) {
        free(ans[i]);
        free(crit[i]);
        free(rev[i]);
        al_seq_deinit(&q[i]);
    }
    return rc;
}

static void cr_metrics(djob *d, long step, al_mlist *l) {
    (void)step;
    al_mlist_put(l, "revisions", d->s[CR_KEPT]);
    al_mlist_put(l, "unchanged", d->s[CR_SAME]);
    al_mlist_put(l, "prompts", (double)(d->p0 + d->k));
}

static void cr_done(djob *d) {
    long same = (long)d->s[CR_SAME];
    al_run_event(d->cb, same ? AL_LOG_WARN : AL_LOG_INFO,
                 "critique_revise: %ld revisions of %d prompts; %ld empty or unchanged were left out",
                 (long)d->s[CR_KEPT], d->pa.n, same);
}

/* ---- the hooks -------------------------------------------------------------------------- */

static const dkind k_kinds[] = {
    {"generate_preferences", gp_setup, gp_step, gp_metrics, gp_done},
    {"evaluate", ev_setup, ev_step, ev_metrics, NULL},
    {"critique_revise", cr_setup, cr_step, cr_metrics, cr_done},
};

static int hook_before_step(void *u, long step, int *n_updates) {
    djob *d = u;
    *n_updates = 0;
    d->p0 = (int)(step < d->chunks ? step * d->per : d->pa.n);
    d->k = d->pa.n - d->p0 < d->per ? d->pa.n - d->p0 : d->per;
    return d->kind->step(d, step);
}

static int hook_after_step(void *u, float lr, al_mlist *l) {
    (void)lr;
    djob *d = u;
    l->tps_at = -1; /* a data job's metrics are its own */
    d->kind->metrics(d, d->run.step, l);
    return AL_OK;
}

/* The checkpoint folder tmp: the files so far and trainer_state.json. */
static int fill_ckpt(void *u, const char *tmp) {
    djob *d = u;
    char path[AL_PATH_MAX + 64];
    int rc = AL_OK;
    for (int i = 0; i < d->n_out && !rc; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, d->file[i]);
        rc = d->out[i].oom ? al_err(d->err, AL_ENOMEM, "out of memory")
                           : al_file_write_atomic(path, al_buf_str(&d->out[i]), d->out[i].n, d->err);
    }
    if (rc) return rc;
    json_t *rng = json_array(), *sums = json_array();
    for (int i = 0; i < 4; i++) {
        char h[24];
        snprintf(h, sizeof h, "%016" PRIx64, d->rng.s[i]);
        json_array_append_new(rng, json_string(h));
    }
    /* doubles print with 17 digits: they read back exactly */
    for (int i = 0; i < MAX_SUMS; i++) json_array_append_new(sums, json_real(d->s[i]));
    json_t *st = json_pack("{s:s, s:I, s:I, s:i, s:i, s:I, s:o, s:o}", "method", d->job->method, "global_step",
                           (json_int_t)d->run.step, "max_steps", (json_int_t)d->run.total_steps, "prompts", d->pa.n,
                           "prompts_per_step", d->per, "seed", (json_int_t)d->hp->seed, "rng", rng, "sums", sums);
    return al_run_save_state(&d->run, tmp, st);
}

static int hook_save(void *u, const char *dir) {
    djob *d = u;
    return al_run_write_dir(&d->run, dir, AL_OK, fill_ckpt, d);
}

/* A checkpoint's state back: it must be of this job (method, prompts,
 * steps), else resuming could not end with an uninterrupted run's files. */
static int read_state(djob *d, const char *dir) {
    char path[AL_PATH_MAX + 64];
    json_t *st = NULL;
    int rc = al_run_load_state(&d->run, dir, &st, path);
    if (rc) return rc;
    json_t *gs = json_object_get(st, "global_step"), *rng = json_object_get(st, "rng"),
           *sums = json_object_get(st, "sums");
    const char *method = json_string_value(json_object_get(st, "method"));
    if (!json_is_integer(gs) || !json_is_array(rng) || json_array_size(rng) != 4 || !json_is_array(sums) ||
        json_array_size(sums) != MAX_SUMS || !method)
        rc = al_err(d->err, AL_EFORMAT, "%s: global_step, rng or sums missing (not a data job's checkpoint?)", path);
    else if (strcmp(method, d->job->method) ||
             json_integer_value(json_object_get(st, "prompts")) != d->pa.n ||
             json_integer_value(json_object_get(st, "prompts_per_step")) != d->per ||
             json_integer_value(gs) < 0 || json_integer_value(gs) > d->run.total_steps)
        rc = al_err(d->err, AL_EINVAL, "%s: written by another job (%s, %lld prompts, %lld per step, step %lld), "
                    "not this %s of %d prompts, %d per step, %ld steps", path, method,
                    (long long)json_integer_value(json_object_get(st, "prompts")),
                    (long long)json_integer_value(json_object_get(st, "prompts_per_step")),
                    (long long)json_integer_value(gs), d->job->method, d->pa.n, d->per, d->run.total_steps);
    for (int i = 0; i < 4 && !rc; i++) {
        const char *h = json_string_value(json_array_get(rng, (size_t)i));
        d->rng.s[i] = h ? strtoull(h, NULL, 16) : 0;
    }
    for (int i = 0; i < MAX_SUMS && !rc; i++) d->s[i] = json_number_value(json_array_get(sums, (size_t)i));
    if (!rc) d->run.step = (long)json_integer_value(gs);
    json_decref(st);
    return rc;
}

static int hook_resume(void *u, const char *dir, char *note) {
    (void)note;
    djob *d = u;
    int rc = read_state(d, dir);
    for (int i = 0; i < d->n_out && !rc; i++) {
        char path[AL_PATH_MAX + 64], *txt;
        size_t len;
        snprintf(path, sizeof path, "%s/%s", dir, d->file[i]);
        if ((rc = al_file_read(path, (size_t)1 << 34, &txt, &len, d->err))) break;
        al_buf_clear(&d->out[i]);
        if (al_buf_put(&d->out[i], txt, len)) rc = al_err(d->err, AL_ENOMEM, "out of memory");
        free(txt);
    }
    return rc;
}

/* The job's files into output_dir, then its closing event. */
static int hook_finish(void *u) {
    djob *d = u;
    int rc = AL_OK;
    for (int i = 0; i < d->n_out && !rc; i++) rc = write_output(d, i);
    if (!rc && d->kind->done) d->kind->done(d);
    return rc;
}

static const al_run_ops k_data_ops = {
    .before_step = hook_before_step, .after_step = hook_after_step, .save = hook_save, .resume = hook_resume,
    .finish = hook_finish,
};

static void djob_free(djob *d) {
    for (int i = 0; d->txt && i < d->per * d->hp->num_generations; i++) free(d->txt[i]);
    free(d->ps);
    free(d->txt);
    free(d->pt);
    free(d->an);
    free(d->lens);
    free(d->eos);
    free(d->sc);
    for (int i = 0; i < MAX_OUT; i++) al_buf_deinit(&d->out[i]);
    al_rewarder_free(d->rw);
    al_prompts_free(&d->pa);
    al_prompts_free(&d->pb);
    al_lm_close(&d->A);
    al_lm_close(&d->B);
}

int al_sampling_run(const al_job *job, const char *resume_dir, const al_train_cb *cb, al_train_result *res,
                    al_error *err) {
    al_train_result r0;
    memset(&r0, 0, sizeof r0);
    djob *d = calloc(1, sizeof *d);
    if (!d) return al_fail_as(err, AL_ENOMEM, "", "out of memory");
    d->job = d->run.job = job;
    d->hp = d->run.hp = &job->hp;
    d->cb = d->run.cb = cb;
    d->res = &r0;
    d->fail = &d->run.err;
    d->err = d->run.err.msg;
    d->run.world = d->run.world0 = 1;
    for (size_t i = 0; i < sizeof k_kinds / sizeof *k_kinds; i++)
        if (!strcmp(job->method, k_kinds[i].method)) d->kind = &k_kinds[i];
    int rc = d->kind ? d->kind->setup(d) : AL_FAIL(d->fail, AL_EINVAL, "method", "'%s' is not a sampling job", job->method);
    al_rng_seed(&d->rng, job->hp.seed);
    d->run.steps_per_epoch = d->run.total_steps; /* the epoch logged is the fraction done */
    if (!rc) rc = al_run_loop(&d->run, &k_data_ops, d, resume_dir, &r0);
    r0.output_is_model = 0;
    r0.final_loss = 0;
    r0.steps = d->run.step;
    r0.total_steps = d->run.total_steps;
    if (rc) al_fail_as(err, rc, d->run.err.field, d->run.err.msg);
    djob_free(d);
    free(d);
    if (res) *res = r0;
    return rc;
}

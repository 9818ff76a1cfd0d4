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
 * Progress goes through the same callbacks as training: begin/log per
 * chunk of prompts, samples, events, should_stop between chunks. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../buf.h"
#include "../io.h"
#include "bench.h"
#include "rollout.h"
#include "run.h"

enum { CHUNK = 16 };

/* Empty or only whitespace: what the dataset reader refuses as a target. */
static int is_blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\n\r\f\v", *s)) return 0;
    return 1;
}

typedef struct pmodel {
    al_tok *tok;
    al_chat *chat;
    al_model *m;
    int32_t eos;
} pmodel;

static void pmodel_free(pmodel *p) {
    al_model_free(p->m);
    al_chat_free(p->chat);
    al_tok_free(p->tok);
    memset(p, 0, sizeof *p);
}

static int pmodel_open(pmodel *p, const al_job *job, const char *dir, const char *field, al_error *err) {
    char e2[AL_ERRLEN];
    int rc;
    if ((rc = al_tok_load(&p->tok, dir, e2)) || (rc = al_chat_new(&p->chat, p->tok, NULL, e2)) ||
        (rc = al_model_open_ex(&p->m, dir, NULL, AL_OPEN_FROZEN | al_job_open_flags(job), 0, e2)))
        return AL_FAIL(err, rc, "%s", "%s", field, e2);
    if (!al_model_config_of(p->m)->has_lm_head)
        return AL_FAIL(err, AL_EINVAL, "%s", "%s has no language-model head", field, dir);
    p->eos = al_tok_eos(p->tok);
    return AL_OK;
}

/* Appends o (whose reference it takes) to b as one JSONL line. */
static int jsonl_add(al_buf *b, json_t *o) {
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line) return AL_ENOMEM;
    al_buf_puts(b, line);
    free(line);
    return al_buf_putc(b, '\n');
}

static int write_output(const al_job *job, al_buf *b, const char *name, const char *purpose, al_train_result *res,
                        char err[AL_ERRLEN]) {
    char path[AL_PATH_MAX + 64];
    int rc = al_mkdir_p(job->output_dir, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/%s", job->output_dir, name);
    if ((rc = al_file_write_atomic(path, al_buf_str(b), b->n, err))) return rc;
    if (res->n_output_files < 4) {
        snprintf(res->output_files[res->n_output_files].path, sizeof res->output_files[0].path, "%s", path);
        snprintf(res->output_files[res->n_output_files].purpose, sizeof res->output_files[0].purpose, "%s", purpose);
        res->n_output_files++;
    }
    return AL_OK;
}

static void log_metrics(const al_train_cb *cb, long step, long total, const al_metric *m, int n) {
    if (cb && cb->log) cb->log(cb->ud, step, total > 0 ? (double)step / total : 0, m, n);
}

static void mput(al_metric *m, int *n, const char *name, double v) {
    snprintf(m[*n].name, sizeof m[*n].name, "%s", name);
    m[(*n)++].value = v;
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

static int stopped(const al_train_cb *cb, long done, char err[AL_ERRLEN]) {
    if (cb && cb->should_stop && cb->should_stop(cb->ud))
        return al_err(err, AL_ECANCELED, "cancelled after %ld prompts", done);
    return AL_OK;
}

/* Generates one completion for each of n prompts (max_new tokens) and
 * decodes them into txt (malloc'd each), lens and eos flags. */
static int gen_texts(pmodel *pm, const al_seq *const *ps, int n, const al_hparams *hp, al_rng *rng, int max_new,
                     char **txt, int *lens, int *eos, char err[AL_ERRLEN]) {
    int32_t *ids = malloc((size_t)n * max_new * sizeof *ids);
    if (!ids) return al_err(err, AL_ENOMEM, "out of memory");
    al_gen_cfg g = {.max_new = max_new, .temperature = hp->temperature, .top_k = hp->top_k,
                    .top_p = hp->top_p > 0 ? hp->top_p : 1, .stop = &pm->eos, .n_stop = pm->eos >= 0};
    int rc = al_rollout_generate(pm->m, ps, n, &g, rng, ids, NULL, lens, err);
    for (int i = 0; i < n; i++) {
        txt[i] = NULL;
        if (!rc) {
            txt[i] = al_rollout_decode(pm->tok, ids + (size_t)i * max_new, lens[i], pm->eos, &eos[i]);
            if (!txt[i]) rc = al_err(err, AL_ENOMEM, "out of memory");
        }
    }
    free(ids);
    return rc;
}

static int room(const pmodel *pm, const al_seq *const *ps, int n, int want, al_error *err) {
    int maxp = 0, T = al_model_config_of(pm->m)->max_T;
    for (int i = 0; i < n; i++) maxp = ps[i]->n > maxp ? ps[i]->n : maxp;
    int r = T - maxp < want ? T - maxp : want;
    if (r < 1)
        return AL_FAIL(err, AL_EINVAL, "hyperparameters.max_prompt_length", "a prompt of %d tokens leaves no room "
                       "in the context of %d", maxp, T);
    return r;
}

/* ---- generate_preferences ------------------------------------------------------- */

static int gen_prefs(const al_job *job, const al_train_cb *cb, al_train_result *res, al_error *fail) {
    char *err = fail->msg; /* where no job field is at fault */
    const al_hparams *hp = &job->hp;
    pmodel pm = {0};
    al_prompts pr = {0};
    al_rewarder *rw = NULL;
    al_buf out = {0};
    int G = hp->num_generations, per = CHUNK / G > 0 ? CHUNK / G : 1, n = 0;
    const al_seq **ps = calloc((size_t)per * G, sizeof *ps);
    char **txt = calloc((size_t)per * G, sizeof *txt);
    const char **pt = calloc((size_t)per * G, sizeof *pt);
    const al_reward_row **an = calloc((size_t)per * G, sizeof *an);
    int *lens = calloc((size_t)per * G, sizeof *lens), *eos = calloc((size_t)per * G, sizeof *eos);
    float *sc = calloc((size_t)per * G, sizeof *sc);
    int rc = (!ps || !txt || !pt || !an || !lens || !eos || !sc) ? al_err(err, AL_ENOMEM, "out of memory") : AL_OK;
    if (!rc) rc = pmodel_open(&pm, job, job->model, "model", fail);
    if (!rc) rc = load_prompts(job, pm.chat, &pr, cb, fail);
    if (!rc) {
        al_reward_len len = {al_prompts_max_bytes(&pr), al_completion_max_bytes(pm.tok, hp->max_completion_length)};
        rc = al_rewarder_new(&rw, &job->reward, hp->missing_eos_penalty, CHUNK, &len, fail);
        if (!rc) rc = al_rewarder_attach(rw, cb, fail);
    }
    al_rng rng;
    al_rng_seed(&rng, hp->seed);
    long chunks = (pr.n + per - 1) / per, pairs = 0, ties = 0, blank = 0;
    double sum_c = 0, sum_r = 0, sum_all = 0, sum_len = 0;
    if (!rc && cb && cb->begin) cb->begin(cb->ud, chunks, 0);
    for (int p0 = 0; !rc && p0 < pr.n; p0 += per) {
        if ((rc = stopped(cb, p0, err))) break;
        int k = pr.n - p0 < per ? pr.n - p0 : per;
        n = k * G;
        for (int i = 0; i < n; i++) {
            ps[i] = &pr.seq[p0 + i / G];
            pt[i] = pr.text[p0 + i / G];
            an[i] = &pr.ref[p0 + i / G];
        }
        int max_new = room(&pm, ps, n, hp->max_completion_length, fail);
        if (max_new < 0) {
            rc = max_new;
            break;
        }
        if ((rc = gen_texts(&pm, ps, n, hp, &rng, max_new, txt, lens, eos, err))) break;
        char e2[AL_ERRLEN];
        if ((rc = al_rewarder_score_rows(rw, n, G, pt, (const char *const *)txt, an, lens, eos, sc, NULL, e2))) {
            rc = AL_FAIL(fail, rc, "reward", "%s", e2);
            break;
        }
        for (int q = 0; q < k && !rc; q++) {
            /* blank completions score but never enter a pair: a training
             * file's chosen and rejected must say something */
            int best = -1, worst = -1;
            for (int i = q * G; i < (q + 1) * G; i++) {
                sum_all += sc[i];
                sum_len += lens[i];
                if (is_blank(txt[i])) {
                    blank++;
                    continue;
                }
                if (best < 0 || sc[i] > sc[best]) best = i;
                if (worst < 0 || sc[i] < sc[worst]) worst = i;
            }
            if (best < 0 || !(sc[best] > sc[worst]) || !strcmp(txt[best], txt[worst])) {
                ties++;
                continue;
            }
            json_t *o = json_pack("{s:s, s:s, s:s, s:f, s:f}", "prompt", pt[best], "chosen", txt[best],
                                  "rejected", txt[worst], "score_chosen", (double)sc[best], "score_rejected",
                                  (double)sc[worst]);
            if (!o || jsonl_add(&out, o)) rc = al_err(err, AL_ENOMEM, "out of memory");
            pairs++;
            sum_c += sc[best];
            sum_r += sc[worst];
            if (cb && cb->sample && pairs <= 3) cb->sample(cb->ud, p0 / per + 1, pt[best], txt[best], sc[best]);
        }
        for (int i = 0; i < n; i++) {
            free(txt[i]);
            txt[i] = NULL;
        }
        al_metric m[8];
        int nm = 0;
        long done = p0 / per + 1, seen = (long)(p0 + k) * G;
        mput(m, &nm, "pairs", (double)pairs);
        mput(m, &nm, "skipped_ties", (double)ties);
        mput(m, &nm, "blank_completions", (double)blank);
        mput(m, &nm, "reward", sum_all / seen);
        mput(m, &nm, "completions/mean_length", sum_len / seen);
        if (pairs) {
            mput(m, &nm, "score_chosen", sum_c / pairs);
            mput(m, &nm, "score_rejected", sum_r / pairs);
        }
        if (!rc && (done % hp->logging_steps == 0 || done == chunks)) log_metrics(cb, done, chunks, m, nm);
    }
    if (!rc) rc = write_output(job, &out, "preferences.jsonl", "preferences", res, err);
    if (!rc) {
        al_run_event(cb, ties ? AL_LOG_WARN : AL_LOG_INFO,
                 "generate_preferences: %ld pairs from %d prompts; %ld prompts skipped (all completions scored "
                 "alike); %ld blank completions left out of pairs",
                 pairs, pr.n, ties, blank);
        res->steps = res->total_steps = chunks;
    }
    for (int i = 0; txt && i < per * G; i++) free(txt[i]);
    free(ps); free(txt); free(pt); free(an); free(lens); free(eos); free(sc); al_buf_deinit(&out);
    al_rewarder_free(rw);
    al_prompts_free(&pr);
    pmodel_free(&pm);
    return rc;
}

/* ---- evaluate ----------------------------------------------------------------------- */

/* The eval_tasks on model A (and B): each benchmark's results, logged at
 * step as eval/<task>/<metric> (B's with the suffix _b). */
static int evaluate_benchmarks(const al_job *job, pmodel *A, pmodel *B, const al_train_cb *cb, long step,
                               al_error *fail) {
    char *err = fail->msg;
    enum { ROWS = 8 };
    al_metric m[2 * AL_MAX_METRICS];
    int nm = 0, rc = AL_OK;
    for (int k = 0; k < job->n_eval_tasks && !rc; k++) {
        char what[48];
        snprintf(what, sizeof what, "eval_tasks[%d]", k);
        for (int side = 0; side < (B ? 2 : 1) && !rc; side++) {
            pmodel *pm = side ? B : A;
            al_bench *b = NULL;
            int T = al_model_config_of(pm->m)->max_T;
            char e2[AL_ERRLEN];
            if ((rc = al_bench_load(&b, &job->eval_tasks[k], pm->chat, &job->reward.grader, T, what, err))) {
                al_fail_as(fail, rc, what, err);
                break;
            }
            /* a forward-only reservation for the scoring rows */
            if ((rc = al_model_reserve(pm->m, ROWS, al_bench_longest(b), AL_MODEL_FORWARD_ONLY, e2)))
                AL_FAIL(fail, rc, "%s", "%s", side ? "model_b" : "model", e2);
            if (!rc)
                rc = al_bench_report(b, pm->m, ROWS, al_bench_longest(b), side ? "model_b" : "model", step, cb, m, &nm,
                                     2 * AL_MAX_METRICS, err);
            al_bench_free(b);
        }
    }
    if (!rc) log_metrics(cb, step, step, m, nm);
    return rc;
}

static int evaluate_job(const al_job *job, const al_train_cb *cb, al_train_result *res, al_error *fail) {
    char *err = fail->msg; /* where no job field is at fault */
    const al_hparams *hp = &job->hp;
    pmodel A = {0}, B = {0};
    al_prompts pa = {0}, pb = {0};
    al_rewarder *rw = NULL;
    al_buf out = {0};
    int two = job->model_b[0] != 0;
    int has_prompts = job->task[0] || job->training_file[0];
    int rc = pmodel_open(&A, job, job->model, "model", fail);
    if (!rc && two) rc = pmodel_open(&B, job, job->model_b, "model_b", fail);
    if (!rc && has_prompts) rc = load_prompts(job, A.chat, &pa, NULL, fail);
    if (!rc && two && has_prompts) rc = load_prompts(job, B.chat, &pb, NULL, fail);
    if (!rc) {
        /* without model_b only the grader is used (exact match) */
        al_reward_len len = {al_prompts_max_bytes(&pa), al_completion_max_bytes(A.tok, hp->max_completion_length)};
        size_t cb_b = two ? al_completion_max_bytes(B.tok, hp->max_completion_length) : 0;
        if (cb_b > len.completion_bytes) len.completion_bytes = cb_b;
        rc = al_rewarder_new(&rw, &job->reward, hp->missing_eos_penalty, CHUNK, &len, fail);
    }
    al_rng rng;
    al_rng_seed(&rng, hp->seed);
    long chunks = (pa.n + CHUNK - 1) / CHUNK, total = chunks + (job->n_eval_tasks > 0);
    double wins = 0, ties = 0, cmp = 0, ra = 0, rb = 0, ema = 0, emb = 0, with_answer = 0, pmean = 0;
    if (!rc && cb && cb->begin) cb->begin(cb->ud, total, 0);
    for (int p0 = 0; !rc && p0 < pa.n; p0 += CHUNK) {
        if ((rc = stopped(cb, p0, err))) break;
        int k = pa.n - p0 < CHUNK ? pa.n - p0 : CHUNK, la[CHUNK], lb[CHUNK], ea[CHUNK], eb[CHUNK];
        const al_seq *sa[CHUNK], *sb[CHUNK];
        char *ta[CHUNK] = {0}, *tb[CHUNK] = {0};
        const char *pt[CHUNK];
        float sca[CHUNK], scb[CHUNK];
        for (int i = 0; i < k; i++) {
            sa[i] = &pa.seq[p0 + i];
            sb[i] = two ? &pb.seq[p0 + i] : NULL;
            pt[i] = pa.text[p0 + i];
        }
        int na = room(&A, sa, k, hp->max_completion_length, fail);
        int nb = two ? room(&B, sb, k, hp->max_completion_length, fail) : 1;
        if (na < 0 || nb < 0) {
            rc = na < 0 ? na : nb;
            break;
        }
        rc = gen_texts(&A, sa, k, hp, &rng, na, ta, la, ea, err);
        if (!rc && two) rc = gen_texts(&B, sb, k, hp, &rng, nb, tb, lb, eb, err);
        char e2[AL_ERRLEN];
        if (!rc && two && al_rewarder_has_rm(rw)) {
            if ((rc = al_rewarder_rm(rw, k, pt, (const char *const *)ta, ea, sca, e2)) ||
                (rc = al_rewarder_rm(rw, k, pt, (const char *const *)tb, eb, scb, e2)))
                rc = AL_FAIL(fail, rc, "reward", "%s", e2);
        }
        for (int i = 0; i < k && !rc; i++) {
            const char *ans = pa.answer[p0 + i];
            int ca = 0, cbv = 0;
            if ((rc = al_rewarder_correct(rw, ta[i], &pa.ref[p0 + i], &ca, e2)) ||
                (two && (rc = al_rewarder_correct(rw, tb[i], &pa.ref[p0 + i], &cbv, e2)))) {
                al_err(err, rc, "%s", e2);
                break;
            }
            if (ans) {
                with_answer++;
                ema += ca;
                emb += cbv;
            }
            json_t *o = json_pack("{s:s, s:s}", "prompt", pt[i], "completion_a", ta[i]);
            if (!o) {
                rc = al_err(err, AL_ENOMEM, "out of memory");
                break;
            }
            if (ans) {
                json_object_set_new(o, "answer", json_string(ans));
                json_object_set_new(o, "correct_a", json_boolean(ca));
            }
            if (two) {
                double win;
                json_object_set_new(o, "completion_b", json_string(tb[i]));
                if (ans) json_object_set_new(o, "correct_b", json_boolean(cbv));
                if (al_rewarder_has_judge(rw)) {
                    double p;
                    if ((rc = al_rewarder_judge(rw, pt[i], ta[i], tb[i], &p, e2))) {
                        rc = al_err(err, rc, "judge: %s", e2);
                        json_decref(o);
                        break;
                    }
                    pmean += p;
                    win = p > 0.5 ? 1 : p < 0.5 ? 0 : 0.5;
                    json_object_set_new(o, "p_a_better", json_real(p));
                } else {
                    win = sca[i] > scb[i] ? 1 : sca[i] < scb[i] ? 0 : 0.5;
                    ra += sca[i];
                    rb += scb[i];
                    json_object_set_new(o, "score_a", json_real(sca[i]));
                    json_object_set_new(o, "score_b", json_real(scb[i]));
                }
                wins += win;
                ties += win == 0.5;
                cmp++;
                json_object_set_new(o, "winner", json_string(win == 1 ? "a" : win == 0 ? "b" : "tie"));
                if (cb && cb->sample && p0 + i < 3) cb->sample(cb->ud, p0 / CHUNK + 1, pt[i], ta[i], win);
            } else if (cb && cb->sample && p0 + i < 3) {
                cb->sample(cb->ud, p0 / CHUNK + 1, pt[i], ta[i], ans ? ca : NAN);
            }
            if (jsonl_add(&out, o)) rc = al_err(err, AL_ENOMEM, "out of memory");
        }
        for (int i = 0; i < k; i++) {
            free(ta[i]);
            free(tb[i]);
        }
        if (rc) break;
        al_metric m[10];
        int nm = 0;
        long done = p0 / CHUNK + 1;
        if (cmp > 0) {
            mput(m, &nm, "win_rate", wins / cmp);
            mput(m, &nm, "win_rate_b", (cmp - wins) / cmp);
            mput(m, &nm, "ties", ties / cmp);
            if (al_rewarder_has_judge(rw)) mput(m, &nm, "judge/mean_p_a", pmean / cmp);
            else {
                mput(m, &nm, "reward_a", ra / cmp);
                mput(m, &nm, "reward_b", rb / cmp);
            }
        }
        if (with_answer > 0) {
            mput(m, &nm, "exact_match_a", ema / with_answer);
            if (two) mput(m, &nm, "exact_match_b", emb / with_answer);
        }
        mput(m, &nm, "prompts", (double)(p0 + k));
        if (done % hp->logging_steps == 0 || done == chunks) log_metrics(cb, done, total, m, nm);
    }
    if (!rc && has_prompts) rc = write_output(job, &out, "evaluation.jsonl", "evaluation", res, err);
    if (!rc && job->n_eval_tasks) rc = evaluate_benchmarks(job, &A, two ? &B : NULL, cb, total, fail);
    if (!rc) res->steps = res->total_steps = total;
    al_buf_deinit(&out);
    al_rewarder_free(rw);
    al_prompts_free(&pa);
    al_prompts_free(&pb);
    pmodel_free(&A);
    pmodel_free(&B);
    return rc;
}

/* ---- critique_revise ------------------------------------------------------------------ */

/* The k-th turn of the constitutional conversation as prompt ids:
 * stage 1 asks for the critique, stage 2 for the revision. */
static int cr_prompt(pmodel *pm, const char *prompt, const char *answer, const char *principle,
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

static int critique_revise(const al_job *job, const al_train_cb *cb, al_train_result *res, al_error *fail) {
    char *err = fail->msg; /* where no job field is at fault */
    const al_hparams *hp = &job->hp;
    pmodel pm = {0};
    al_prompts pr = {0};
    al_buf sft = {0}, pairs = {0};
    int rc = pmodel_open(&pm, job, job->model, "model", fail);
    if (!rc) rc = load_prompts(job, pm.chat, &pr, cb, fail);
    al_rng rng;
    al_rng_seed(&rng, hp->seed);
    long chunks = (pr.n + CHUNK - 1) / CHUNK, kept = 0, same = 0;
    int T = pm.m ? al_model_config_of(pm.m)->max_T : 0;
    if (!rc && cb && cb->begin) cb->begin(cb->ud, chunks, 0);
    for (int p0 = 0; !rc && p0 < pr.n; p0 += CHUNK) {
        if ((rc = stopped(cb, p0, err))) break;
        int k = pr.n - p0 < CHUNK ? pr.n - p0 : CHUNK, len[CHUNK], eos[CHUNK], pi[CHUNK];
        const al_seq *ps[CHUNK];
        char *ans[CHUNK] = {0}, *crit[CHUNK] = {0}, *rev[CHUNK] = {0};
        al_seq q[CHUNK];
        memset(q, 0, sizeof q);
        for (int i = 0; i < k; i++) {
            ps[i] = &pr.seq[p0 + i];
            pi[i] = (int)al_rng_below(&rng, (uint32_t)job->n_principles);
        }
        int nn = room(&pm, ps, k, hp->max_completion_length, fail);
        if (nn < 0) {
            rc = nn;
            break;
        }
        rc = gen_texts(&pm, ps, k, hp, &rng, nn, ans, len, eos, err);
        for (int stage = 1; stage <= 2 && !rc; stage++) {
            int maxp = 0;
            for (int i = 0; i < k && !rc; i++) {
                al_seq_deinit(&q[i]);
                rc = cr_prompt(&pm, pr.text[p0 + i], ans[i], job->principles[pi[i]], crit[i] ? crit[i] : "", stage,
                               &q[i], err);
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
            rc = gen_texts(&pm, ps, k, hp, &rng, mn, stage == 1 ? crit : rev, len, eos, err);
        }
        for (int i = 0; i < k && !rc; i++) {
            const char *rv = rev[i];
            while (*rv == ' ' || *rv == '\n') rv++;
            if (is_blank(rv) || !strcmp(rv, ans[i])) {
                same++;
                continue;
            }
            json_t *a = json_pack("{s:s, s:s}", "prompt", pr.text[p0 + i], "completion", rv);
            if (!a || jsonl_add(&sft, a)) rc = al_err(err, AL_ENOMEM, "out of memory");
            /* a blank first answer makes no pair a DPO job would take */
            json_t *b = is_blank(ans[i]) ? NULL
                      : json_pack("{s:s, s:s, s:s, s:s, s:s}", "prompt", pr.text[p0 + i], "chosen", rv, "rejected",
                                  ans[i], "principle", job->principles[pi[i]], "critique", crit[i]);
            if (!is_blank(ans[i]) && (!b || jsonl_add(&pairs, b))) rc = al_err(err, AL_ENOMEM, "out of memory");
            kept++;
            if (cb && cb->sample && kept <= 3) cb->sample(cb->ud, p0 / CHUNK + 1, pr.text[p0 + i], rv, NAN);
        }
        for (int i = 0; i < k; i++) {
            free(ans[i]);
            free(crit[i]);
            free(rev[i]);
            al_seq_deinit(&q[i]);
        }
        if (rc) break;
        al_metric m[4];
        int nm = 0;
        long done = p0 / CHUNK + 1;
        mput(m, &nm, "revisions", (double)kept);
        mput(m, &nm, "unchanged", (double)same);
        mput(m, &nm, "prompts", (double)(p0 + k));
        if (done % hp->logging_steps == 0 || done == chunks) log_metrics(cb, done, chunks, m, nm);
    }
    if (!rc) rc = write_output(job, &sft, "sft.jsonl", "sft", res, err);
    if (!rc) rc = write_output(job, &pairs, "pairs.jsonl", "pairs", res, err);
    if (!rc) {
        res->steps = res->total_steps = chunks;
        al_run_event(cb, same ? AL_LOG_WARN : AL_LOG_INFO,
                 "critique_revise: %ld revisions of %d prompts; %ld empty or unchanged were left out", kept, pr.n,
                 same);
    }
    al_buf_deinit(&sft);
    al_buf_deinit(&pairs);
    al_prompts_free(&pr);
    pmodel_free(&pm);
    return rc;
}

static int sampling_job(const al_job *job, const al_train_cb *cb, al_train_result *res, al_error *err) {
    res->output_is_model = 0;
    if (!strcmp(job->method, "generate_preferences")) return gen_prefs(job, cb, res, err);
    if (!strcmp(job->method, "evaluate")) return evaluate_job(job, cb, res, err);
    if (!strcmp(job->method, "critique_revise")) return critique_revise(job, cb, res, err);
    return AL_FAIL(err, AL_EINVAL, "method", "'%s' is not a sampling job", job->method);
}

int al_sampling_run(const al_job *job, const al_train_cb *cb, al_train_result *res, al_error *err) {
    al_train_result r0;
    memset(&r0, 0, sizeof r0);
    al_error e = {"", ""};
    int rc = sampling_job(job, cb, &r0, &e);
    if (rc) al_fail_as(err, rc, e.field, e.msg);
    if (res) *res = r0;
    return rc;
}

/* Rollouts (see rollout.h): a job's prompts, read once from a built-in
 * task or a JSONL file with each row's answers and grader; their
 * completions sampled in chunks of GEN_CHUNK prompts with the KV cache and
 * decoded for the reward sources. Shared by the RL step (rl.c) and the
 * sampling jobs (sampling.c), which call nothing of each other. */
#include "rollout.h"

#include <stdlib.h>
#include <string.h>

#include "../tasks/tasks.h"
#include "../text/dataset.h"

enum { GEN_CHUNK = 64 };

/* ---- prompts ----------------------------------------------------------------- */

void al_prompts_free(al_prompts *p) {
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

static int prompts_alloc(al_prompts *p, long n, char err[AL_ERRLEN]) {
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

int al_prompts_append(al_prompts *dst, al_prompts *src, char err[AL_ERRLEN]) {
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
    al_prompts_free(src);
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
static int row_grader(al_prompts *p, const al_job *job, const json_t *spec, int line, const char *what,
                      const al_grader **out, al_error *err) {
    *out = NULL;
    if (!spec || json_is_null(spec)) return AL_OK;
    al_grader_cfg c = job->reward.grader;
    al_error e2;
    int rc = al_grader_cfg_parse(&c, spec, "grader", &e2);
    if (!rc) rc = al_grader_set_get(&p->graders, &c, "grader", out, &e2);
    return rc ? AL_FAIL(err, rc, "%s", "line %d: %s", what, line, e2.msg) : AL_OK;
}

/* Fills p->ref[i] from p->answers[i]; with reward.verifiable on, checks
 * that the grader can ever match each answer. */
static int finish_ref(al_prompts *p, const al_job *job, int i, int line, const char *what, al_error *err) {
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
        if (rc) return al_fail_as(err, rc, e2.field, e2.msg);
        g = own;
    }
    char why[160];
    for (int k = 0; k < r->n_answers; k++)
        if (al_grader_answer_invalid(g, r->answers[k], why, sizeof why)) {
            al_grader_free(own);
            return AL_FAIL(err, AL_EINVAL, "%s", "line %d: %s", what, line, why);
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

int al_prompts_load(al_prompts *p, const al_job *job, const al_chat *chat, int from_task, long rows,
                    uint64_t seed, int split, const char *file, const char *what, int want_sft, al_error *fail) {
    /* the reason alone where no field is at fault (memory, the chat template) */
    fail->field[0] = 0;
    char *err = fail->msg;
    const al_tok *tok = al_chat_tok(chat);
    int maxp = job->hp.max_prompt_length;
    int rc;
    if (from_task) {
        if ((rc = prompts_alloc(p, rows, err))) return rc;
        for (long i = 0; i < rows; i++) {
            al_task_row r;
            if (al_task_row_get(job->task, split, seed, (uint64_t)i, &r))
                return AL_FAIL(fail, AL_EINVAL, "task", "'%s' is not a built-in task", job->task);
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
                rc = v ? row_grader(p, job, v, 1, what, &p->ref[0].grader, fail) : al_err(err, AL_ENOMEM, "out of memory");
                json_decref(v);
                if (rc) return rc;
            }
            if (p->n) p->ref[p->n].grader = p->ref[0].grader;
            if ((rc = finish_ref(p, job, p->n, (int)i + 1, what, fail))) return rc;
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
                      .dataset_info = al_job_file_dataset_info(job, file)};
    if (al_hygiene_any(&job->hygiene) && is_training_file(job, file)) o.hygiene = &job->hygiene;
    al_dataset *ds = NULL;
    char e2[AL_ERRLEN];
    if ((rc = al_dataset_read_file(file, chat, &o, &ds, e2))) return AL_FAIL(fail, rc, "%s", "%s", what, e2);
    if ((rc = al_dataset_check(ds, 0, e2))) {
        al_dataset_free(ds);
        return AL_FAIL(fail, rc, "%s", "%s", what, e2);
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
            rc = AL_FAIL(fail, AL_EFORMAT, "%s", "line %d does not decode", what, e->line);
        p->answer[p->n] = e->reference;
        e->reference = NULL;
        p->row[p->n] = e->row;
        e->row = NULL;
        if (!rc && !(p->answers[p->n] = row_answers(p->row[p->n], p->answer[p->n])))
            rc = al_err(err, AL_ENOMEM, "out of memory");
        if (!rc)
            rc = row_grader(p, job, json_object_get(p->row[p->n], "grader"), e->line, what, &p->ref[p->n].grader, fail);
        if (!rc) rc = finish_ref(p, job, p->n, e->line, what, fail);
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

/* ---- generation ---------------------------------------------------------------- */

int al_rollout_generate(al_model *m, const al_seq *const *prompts, int n, const al_gen_cfg *g, al_rng *rng,
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

int al_rollout_ended(const int32_t *ids, int n, const int32_t *stops, int n_stops) {
    for (int i = 0; n > 0 && i < n_stops; i++)
        if (ids[n - 1] == stops[i]) return 1;
    return 0;
}

char *al_rollout_decode_stops(const al_tok *tok, const int32_t *ids, int n, const int32_t *stops, int n_stops,
                              int *has_eos) {
    int e = al_rollout_ended(ids, n, stops, n_stops);
    if (has_eos) *has_eos = e;
    char *txt = NULL;
    size_t len;
    if (al_tok_decode(tok, ids, n - e, 1, &txt, &len)) return strdup("");
    return txt;
}

size_t al_prompts_max_bytes(const al_prompts *p) {
    size_t m = 0;
    for (int i = 0; i < p->n; i++) {
        size_t n = p->text[i] ? strlen(p->text[i]) : 0;
        if (n > m) m = n;
    }
    return m;
}

size_t al_completion_max_bytes(const al_tok *tok, int max_new) {
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

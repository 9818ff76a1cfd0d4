/* The SFT-like step kind of the run skeleton (run.h): SFT, pretraining,
 * reward modelling and the preference methods (see trainer.h).
 *
 * Data flow of one optimiser step: the step's examples are cut into
 * micro-batches; each is padded into an al_batch, run through the model's
 * forward (policy log-probs, entropy, head values), handed with the
 * reference log-probs to the objective, and the objective's gradients go to
 * the model's backward (hook_backward). The step's denominators (scored
 * tokens, examples) are counted first so accumulation equals one big batch.
 * Then (hook_optimizer) the global gradient norm is clipped, and AdamW
 * updates the trainable parameters with the scheduler's learning rate.
 *
 * Every buffer is sized before the first step; a step allocates nothing.
 * The example order of epoch e is a seeded permutation (seed + e), so a step
 * number alone says which examples it holds: that, the weights, the AdamW
 * moments and the step counter are all a resumed run needs to continue
 * exactly.
 *
 * Data parallelism (lib/dist/ddp.h; N ranks under mpirun or srun): a step
 * takes a global batch of batch_size x N examples, the same on every rank
 * (every rank reads all the data), and rank r trains on its r-th share of
 * batch_size; the denominators are counted over the global batch, the
 * gradients summed over ranks after backward (by the skeleton, the one
 * point where they are final), and every rank takes the same AdamW step. Rank 0
 * alone evaluates, samples and writes checkpoints; stop and pause are agreed
 * by all. A checkpoint records the global batch and the data cursor in
 * global samples, and a run resumed on another number of ranks keeps that
 * global batch (batch_size per rank = global / N).
 *
 * KTO follows TRL's KTOTrainer (trl/trainer/kto_trainer.py, main): when the
 * data is prepared, each example is given its KL row, its own prompt with
 * the completion of the example before it in its run of micro_batch_size
 * examples (the first takes the run's last: add_kl_completion_ids, a
 * rotation by one in dataset order), and training visits the examples in
 * dataset order every epoch (KTOConfig's train_sampling_strategy
 * "sequential", which TRL requires with a KL term; every TRL release pairs
 * and samples so, 0.x's _get_kl_dataset and SequentialSampler included).
 * The pairing is fixed for the whole run, so resuming and evaluating see
 * the same KL rows, and their reference log-probs can be precomputed with
 * the rest. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "trainer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../compute/ops.h"
#include "../io.h"
#include "../model/safetensors.h"
#include "../tasks/tasks.h"
#include "../text/chat.h"
#include "../text/dataset.h"
#include "../text/mix.h"
#include "bench.h"
#include "optim.h"
#include "rl.h"
#include "rollout.h"
#include "run.h"

enum { N_SAMPLES = 3, SAMPLE_MAX_NEW = 48, WATCH_WARMUP = 20, WATCH_PATIENCE = 20 };

typedef struct dataset {
    al_example *ex;
    int n;
    int32_t *len;                 /* longest sequence per example */
    float **ref;                  /* per example, per sequence: ref log-probs by position, or NULL */
} dataset;

typedef struct trainer {
    const al_job *job;
    const al_hparams *hp;
    const al_objective_ops *ops;
    void *obj;
    const al_train_cb *cb;
    al_lm lm;                     /* the policy, its tokenizer and chat template */
    int32_t pad;
    int32_t stops[AL_LM_MAX_STOPS];            /* where a sample ends (al_lm_stop_ids) */
    int n_stops;
    al_model *ref;                /* separate frozen reference, or NULL */
    int ref_adapters_off;         /* reference = this model with adapters off */
    dataset train, val;
    dataset evals[AL_MAX_EVAL_TASKS]; /* eval_tasks as language-modelling examples */
    al_bench *bench[AL_MAX_EVAL_TASKS]; /* or as benchmarks (multiple choice, generative) */
    al_batch lm_batch;            /* their batches, whatever the objective's layout */
    al_batch_kind kind;
    int packed;                   /* SFT packing: the training units are packed rows */
    al_pack pack;                 /* best-fit-decreasing plan over the training examples */
    al_pack sub;                  /* one micro-batch's rows of the plan */
    int rows_per_ex;              /* rows one example occupies (PAIR 2, KTO 2 with KL rows) */
    int mb;                       /* examples per micro-batch */
    int max_T;
    al_batch batch;
    al_batch kl_batch;            /* KTO: mismatched prompt/completion rows */
    al_example *kl_ex;            /* KTO: views of the examples' KL rows (seq[1]) as seq[0] */
    /* per-row buffers, (rows, max_T) */
    float *logp, *ent, *values, *ref_logp, *dlogp, *dent, *dvalue;
    uint8_t *hit;                 /* greedy-argmax hits (mean_token_accuracy) */
    uint8_t *cmask;               /* ORPO: 1 where a scored position is a completion token */
    int32_t *ids, *seg, *pos, *tgt, *last;
    int8_t *label;
    float *margin;
    int32_t *order;
    int32_t *idx;
    al_adamw opt;
    al_ddp *ddp;                  /* the gradient reduction across ranks, NULL alone */
    int B;                        /* examples (units) this rank takes per step */
    int GB;                       /* the global batch: B x world */
    al_mix mix;                   /* training_files: the weighted mixture's sampler */
    int mixing;                   /* drawn step by step (else fixed, or no mixture) */
    int32_t *unit_ex, *unit_len;  /* a mixture fixed for packing or group_by_length:
                                   * its first epoch of draws (examples), their lengths */
    int32_t *mapped;              /* a step's units as examples (batch_size) */
    al_step_stats st;             /* the step's statistics */
    double gnorm;                 /* its gradient norm */
    const int32_t *step_ex;       /* its units (global batch), step_n of them */
    int step_n;
    double ema;                   /* the watchdog's running mean of the loss */
    long watched;                 /* steps it has seen in this run */
    int above;
    al_run run;                   /* the skeleton's state: step, world, err (run.h) */
} trainer;

/* ---- data ---------------------------------------------------------------- */

static void dataset_free(dataset *d) {
    for (int i = 0; i < d->n; i++) {
        al_example_deinit(&d->ex[i]);
        if (d->ref) {
            free(d->ref[2 * i]);
            free(d->ref[2 * i + 1]);
        }
    }
    free(d->ex);
    free(d->len);
    free(d->ref);
    memset(d, 0, sizeof *d);
}

/* Built-in task rows as examples of the objective's layout: prompt and
 * answer as raw text (the tiny models have no chat habits to keep), the
 * plausible wrong answer as the rejected or undesirable completion. */
static int task_examples(trainer *t, const char *task, int split, long rows, uint64_t seed, int mistakes,
                         al_batch_kind kind, dataset *d) {
    d->ex = calloc((size_t)rows, sizeof *d->ex);
    if (!d->ex) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory for %ld task rows", rows);
    int pretrain = kind == t->kind && !strcmp(t->ops->name, "pretrain");
    /* the tokenization of the TRL trainer the method follows (chat.h) */
    al_split_kind how = kind == AL_BATCH_LM ? AL_SPLIT_BYTES : al_data_split(t->ops->name);
    for (long i = 0; i < rows; i++) {
        al_task_row r;
        al_example *e = &d->ex[d->n];
        int rc = al_task_row_get_with(task, split, seed, (uint64_t)i, mistakes, &r);
        if (rc) return AL_FAIL(&t->run.err, rc, "task", "'%s' is not a built-in task", task);
        e->line = (int)i + 1;
        const char *good = r.answer;
        if (kind == AL_BATCH_UNPAIRED) {
            e->label = (i % 2 == 0) ? 1.0f : 0.0f;
            if (i % 2) good = r.wrong;
        }
        if (pretrain) {
            char full[2 * AL_TASK_TEXT];
            snprintf(full, sizeof full, "%s%s", r.prompt, r.answer);
            rc = al_chat_encode_text(t->lm.chat, "", 0, full, strlen(full), &e->seq[0], t->run.err.msg);
        } else {
            rc = al_chat_encode_split(t->lm.chat, how, r.prompt, strlen(r.prompt), good, strlen(good),
                                      &e->seq[0], t->run.err.msg);
        }
        if (!rc && kind == AL_BATCH_PAIR)
            rc = al_chat_encode_split(t->lm.chat, how, r.prompt, strlen(r.prompt), r.wrong, strlen(r.wrong),
                                      &e->seq[1], t->run.err.msg);
        if (rc) return rc;
        d->n++;
    }
    return AL_OK;
}

static long report_int(const json_t *rep, const char *key) {
    return (long)json_integer_value(json_object_get(rep, key));
}

/* A JSONL file through the dataset reader: every bad line, truncation and
 * drop becomes an event; the examples move into d. */
static int file_examples(trainer *t, const char *path, const char *method, dataset *d, const char *what,
                         int training) {
    al_data_opts o = {.method = method, .max_length = t->hp->max_length, .dedupe = t->hp->dedupe,
                      .dataset_info = al_job_file_dataset_info(t->job, path)};
    /* the job's hygiene filters clean what it trains on, not what it is measured on */
    if (training && al_hygiene_any(&t->job->hygiene)) o.hygiene = &t->job->hygiene;
    al_dataset *ds = NULL;
    char e2[AL_ERRLEN];
    int rc = al_dataset_read_file(path, t->lm.chat, &o, &ds, e2);
    /* the file the job names under what cannot be read */
    if (rc) return al_fail_as(&t->run.err, rc, what, e2);
    if ((rc = al_dataset_check(ds, 0, e2))) {
        al_dataset_free(ds);
        return AL_FAIL(&t->run.err, rc, "%s", "%s", what, e2);
    }
    const json_t *rep = al_dataset_report(ds);
    al_run_event(t->cb, ds->n_errors || report_int(rep, "truncated") || report_int(rep, "dropped") ? AL_LOG_WARN
                                                                                       : AL_LOG_INFO,
          "%s: %d rows, format %s, %d examples; %d bad lines skipped, %ld truncated to max_length %d, "
          "%ld dropped (nothing left to train), %ld duplicates (%ld dropped)",
          what, ds->rows, al_data_format_name(ds->format), ds->n_ex, ds->n_errors,
          report_int(rep, "truncated"), t->hp->max_length, report_int(rep, "dropped"),
          report_int(rep, "duplicates"), report_int(rep, "deduplicated"));
    al_hygiene_describe(rep, what, 20, al_run_event_line, (void *)t->cb);
    const json_t *errs = json_object_get(rep, "errors");
    for (size_t i = 0; i < json_array_size(errs) && i < 20; i++) {
        const json_t *e = json_array_get(errs, i);
        /* the message starts with its line number */
        al_run_event(t->cb, AL_LOG_WARN, "%s: %s (%s)", what, json_string_value(json_object_get(e, "message")),
              json_string_value(json_object_get(e, "code")));
    }
    d->ex = ds->ex;
    d->n = ds->n_ex;
    ds->ex = NULL;
    ds->n_ex = 0;
    al_dataset_free(ds);
    return AL_OK;
}

/* training_files: each file read as training_file is, their examples one
 * after the other, and the sampler that mixes them by weight. */
static int mixture_examples(trainer *t) {
    const al_job *job = t->job;
    dataset parts[AL_MAX_TRAIN_FILES];
    int32_t n[AL_MAX_TRAIN_FILES];
    double w[AL_MAX_TRAIN_FILES], wsum = 0;
    int rc = AL_OK, k, total = 0;
    memset(parts, 0, sizeof parts);
    for (k = 0; k < job->n_train_files && !rc; k++) {
        char what[48];
        snprintf(what, sizeof what, "training_files[%d]", k);
        rc = file_examples(t, job->train_files[k].file, t->ops->name, &parts[k], what, 1);
        n[k] = parts[k].n;
        w[k] = job->train_files[k].weight;
        wsum += w[k];
        total += parts[k].n;
    }
    if (!rc && !(t->train.ex = calloc((size_t)total + 1, sizeof *t->train.ex)))
        rc = al_err(t->run.err.msg, AL_ENOMEM, "out of memory");
    for (k = 0; k < job->n_train_files && !rc; k++) {
        memcpy(t->train.ex + t->train.n, parts[k].ex, (size_t)parts[k].n * sizeof *parts[k].ex);
        t->train.n += parts[k].n;
        free(parts[k].ex);
        parts[k].ex = NULL;
        parts[k].n = 0;
    }
    for (k = 0; k < AL_MAX_TRAIN_FILES; k++) dataset_free(&parts[k]);
    if (rc) return rc;
    char e2[AL_ERRLEN];
    if ((rc = al_mix_init(&t->mix, job->n_train_files, n, w, t->hp->seed, e2)))
        return AL_FAIL(&t->run.err, rc, "training_files", "%s", e2);
    t->mixing = 1;
    for (k = 0; k < job->n_train_files; k++)
        al_run_event(t->cb, AL_LOG_INFO, "training_files[%d]: %d examples, weight %g: %.1f%% of the examples drawn", k, n[k],
              w[k], 100.0 * w[k] / wsum);
    return AL_OK;
}

/* Packing and group_by_length plan over a fixed set: a mixture becomes
 * its first epoch of draws (as many as the files hold together), which the
 * plan then packs or groups afresh each epoch, as Hugging Face datasets'
 * interleave_datasets builds one set that the trainer packs and shuffles.
 * The plan follows from the seed, so a checkpoint needs no sampler state. */
static int fix_mixture(trainer *t) {
    int n = t->train.n;
    t->unit_ex = malloc(((size_t)n + 1) * sizeof *t->unit_ex);
    t->unit_len = malloc(((size_t)n + 1) * sizeof *t->unit_len);
    if (!t->unit_ex || !t->unit_len) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory");
    int32_t seen[AL_MIX_MAX_SOURCES] = {0};
    for (int i = 0; i < n; i++) {
        t->unit_ex[i] = al_mix_next(&t->mix);
        t->unit_len[i] = t->train.len[t->unit_ex[i]];
        seen[al_mix_source(&t->mix, t->unit_ex[i])]++;
    }
    t->mixing = 0;
    for (int k = 0; k < t->mix.n_src; k++)
        al_run_event(t->cb, AL_LOG_INFO, "training_files[%d]: %d of the %d examples of the mixture fixed for %s", k, seen[k], n,
              t->hp->packing ? "packing" : "group_by_length");
    return AL_OK;
}

/* Records each example's length. Training data over max_length is an error
 * here (the file reader truncates and reports before this; task rows are
 * short); an evaluation set (drop_long) leaves such rows out and says so. */
static int finish_dataset(trainer *t, dataset *d, int drop_long, const char *what) {
    d->len = calloc((size_t)d->n + 1, sizeof *d->len);
    if (!d->len) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory");
    int kept = 0;
    for (int i = 0; i < d->n; i++) {
        int n = al_example_len(&d->ex[i]);
        if (n > t->hp->max_length) {
            if (!drop_long)
                return al_err(t->run.err.msg, AL_ERANGE, "%s: example at line %d has %d tokens, over max_length %d",
                              what, d->ex[i].line, n, t->hp->max_length);
            al_example_deinit(&d->ex[i]);
            continue;
        }
        d->ex[kept] = d->ex[i];
        d->len[kept++] = n;
    }
    if (kept < d->n)
        al_run_event(t->cb, AL_LOG_WARN, "%s: %d of %d rows are longer than max_length %d and are left out", what,
              d->n - kept, d->n, t->hp->max_length);
    d->n = kept;
    return AL_OK;
}

/* KTO's KL rows (TRL's add_kl_completion_ids): in runs of `run` examples in
 * dataset order, example i gets its own prompt followed by the completion
 * of example i - 1, the run's first the completion of the run's last (a run
 * of one pairs an example with itself, as TRL's rotation does), cut to
 * max_T tokens. Stored as seq[1] of each example. With several
 * training_files (alignd's mixture, which TRL does not have) the pairs are
 * made over the files one after the other, and each example keeps its KL row
 * whichever batch the mixture draws it into. */
static int kto_kl_rows(trainer *t, dataset *d, int run) {
    for (int c0 = 0; c0 < d->n; c0 += run) {
        int c1 = c0 + run < d->n ? c0 + run : d->n;
        for (int i = c0; i < c1; i++) {
            const al_seq *p = &d->ex[i].seq[0], *c = &d->ex[i == c0 ? c1 - 1 : i - 1].seq[0];
            int pl = 0, cs = 0;
            while (pl < p->n && !p->mask[pl]) pl++;
            while (cs < c->n && !c->mask[cs]) cs++;
            int len = pl + (c->n - cs);
            if (len > t->max_T) len = t->max_T;
            al_seq s = {0};
            s.ids = malloc(((size_t)len + 1) * sizeof *s.ids);
            s.mask = malloc((size_t)len + 1);
            if (!s.ids || !s.mask) {
                al_seq_deinit(&s);
                return al_err(t->run.err.msg, AL_ENOMEM, "out of memory for KTO's KL rows");
            }
            for (int k = 0; k < len; k++) {
                s.ids[k] = k < pl ? p->ids[k] : c->ids[cs + k - pl];
                s.mask[k] = k >= pl;
            }
            s.n = len;
            d->ex[i].seq[1] = s;
            if (len > d->len[i]) d->len[i] = len;
        }
    }
    return AL_OK;
}

/* ---- buffers -------------------------------------------------------------- */

static int alloc_buffers(trainer *t) {
    int rows = t->mb * t->rows_per_ex;
    size_t n = (size_t)rows * (size_t)t->max_T;
    int rc = al_batch_init(&t->batch, t->kind, t->kind == AL_BATCH_PAIR ? 2 * t->mb : t->mb, t->max_T);
    if (rc) return al_err(t->run.err.msg, rc, "out of memory for batches");
    if (t->job->n_eval_tasks && (rc = al_batch_init(&t->lm_batch, AL_BATCH_LM, t->mb, t->max_T)))
        return al_err(t->run.err.msg, rc, "out of memory for batches");
    if (t->kind == AL_BATCH_UNPAIRED) {
        if ((rc = al_batch_init(&t->kl_batch, AL_BATCH_LM, t->mb, t->max_T)))
            return al_err(t->run.err.msg, rc, "out of memory for batches");
        t->kl_ex = calloc((size_t)t->mb, sizeof *t->kl_ex); /* views: never deinit'd */
        if (!t->kl_ex) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory");
    }
#define ALLOC(p, count) if (!((p) = calloc((count), sizeof *(p)))) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory")
    ALLOC(t->logp, n);
    ALLOC(t->ent, n);
    ALLOC(t->values, n);
    ALLOC(t->ref_logp, n);
    ALLOC(t->dlogp, n);
    ALLOC(t->dent, n);
    ALLOC(t->dvalue, n);
    ALLOC(t->hit, n);
    ALLOC(t->cmask, n);
    ALLOC(t->ids, n);
    ALLOC(t->seg, n);
    ALLOC(t->pos, n);
    ALLOC(t->tgt, n);
    ALLOC(t->last, (size_t)rows);
    ALLOC(t->label, (size_t)rows);
    ALLOC(t->margin, (size_t)rows);
    ALLOC(t->order, (size_t)(t->train.n > t->GB ? t->train.n : t->GB) + 1);
    ALLOC(t->idx, (size_t)t->mb);
    ALLOC(t->mapped, (size_t)t->GB);
#undef ALLOC
    char e2[AL_ERRLEN];
    if ((rc = al_model_reserve(t->lm.m, rows, t->max_T,
                               t->hp->gradient_checkpointing ? AL_MODEL_GRAD_CKPT : 0, e2)))
        return al_err(t->run.err.msg, rc, "%s", e2);
    if (t->ref && (rc = al_model_reserve(t->ref, rows, t->max_T, AL_MODEL_FORWARD_ONLY, e2)))
        return al_err(t->run.err.msg, rc, "%s", e2);
    return AL_OK;
}

/* ---- one micro-batch ------------------------------------------------------- */

/* The model's input for a micro-batch of examples idx[0..n): the batch
 * arrays, plus for KTO the mismatched rows (prompt of example i with the
 * completion of example i+1, as TRL's KL dataset) appended after them. */
static int build_rows(trainer *t, dataset *d, const int32_t *idx, int n, al_tokens *in) {
    int rc;
    if (t->packed && d == &t->train) {
        /* the chosen rows of the plan, in order, as a plan of their own */
        int k = 0;
        t->sub.n_rows = n;
        t->sub.start[0] = 0;
        for (int i = 0; i < n; i++) {
            for (int j = t->pack.start[idx[i]]; j < t->pack.start[idx[i] + 1]; j++)
                t->sub.items[k++] = t->pack.items[j];
            t->sub.start[i + 1] = k;
            t->sub.len[i] = t->pack.len[idx[i]];
        }
        rc = al_batch_fill_packed(&t->batch, d->ex, &t->sub, 0, n, t->pad, t->run.err.msg);
    } else {
        rc = al_batch_fill(&t->batch, d->ex, idx, n, t->pad, t->run.err.msg);
    }
    if (rc) return rc;
    al_batch *b = &t->batch;
    int R = b->B, T = b->T;
    int KL = 0;
    if (t->kind == AL_BATCH_UNPAIRED) {
        /* the examples' KL rows, fixed when the data was prepared */
        int32_t kidx[1024];
        for (int i = 0; i < n; i++) {
            t->kl_ex[i].seq[0] = d->ex[idx[i]].seq[1];
            t->kl_ex[i].line = d->ex[idx[i]].line;
            kidx[i] = i;
        }
        if ((rc = al_batch_fill(&t->kl_batch, t->kl_ex, kidx, n, t->pad, t->run.err.msg))) return rc;
        KL = t->kl_batch.B;
        if (t->kl_batch.T > T) T = t->kl_batch.T;
    }
    /* copy into the (R + KL, T) row buffers with one common T */
    int rows = R + KL;
    for (int r = 0; r < rows; r++) {
        const al_batch *src = r < R ? b : &t->kl_batch;
        int sr = r < R ? r : r - R;
        for (int k = 0; k < T; k++) {
            size_t o = (size_t)r * T + k;
            if (k < src->T) {
                size_t so = (size_t)sr * src->T + k;
                t->ids[o] = src->ids[so];
                t->seg[o] = src->seg[so];
                t->pos[o] = src->pos[so];
                t->tgt[o] = src->targets[so];
            } else {
                t->ids[o] = t->pad;
                t->seg[o] = 0;
                t->pos[o] = 0;
                t->tgt[o] = -1;
            }
            t->cmask[o] = t->tgt[o] >= 0;
        }
        t->last[r] = src->len[sr] > 0 ? src->len[sr] - 1 : 0;
        /* ORPO's NLL scores every token of a chosen row after its first
         * (TRL: the chosen rows' labels are their input ids, prompt
         * included); cmask keeps the completion for the odds ratio */
        if (t->ops->scores_prompt && t->kind == AL_BATCH_PAIR && r < n)
            for (int k = 0; k + 1 < src->len[sr]; k++) t->tgt[(size_t)r * T + k] = t->ids[(size_t)r * T + k + 1];
    }
    for (int i = 0; i < n; i++) {
        if (t->kind == AL_BATCH_UNPAIRED) t->label[i] = b->label[i] > 0.5f;
        if (t->kind == AL_BATCH_PAIR) t->margin[i] = b->margin[i];
    }
    *in = (al_tokens){.B = rows, .T = T, .ids = t->ids, .seg = t->seg, .pos = t->pos,
                      .targets = t->ops->needs_lm ? t->tgt : NULL};
    return AL_OK;
}

/* Runs the reference over rows [r0, r0 + nr) of the micro-batch in `in`,
 * writing their log-probs into ref_logp. */
static int reference_forward(trainer *t, const al_tokens *in, int r0, int nr) {
    size_t off = (size_t)r0 * in->T;
    al_tokens sub = {.B = nr, .T = in->T, .ids = in->ids + off, .seg = in->seg + off,
                     .pos = in->pos + off, .targets = t->tgt + off};
    al_fwd f = {.logp = t->ref_logp + off};
    int rc;
    if (t->ref_adapters_off) {
        al_model_set_adapters(t->lm.m, 0);
        rc = al_model_forward(t->lm.m, &sub, &f);
        al_model_set_adapters(t->lm.m, 1);
    } else {
        rc = al_model_forward(t->ref, &sub, &f);
    }
    return rc ? al_err(t->run.err.msg, rc, "reference forward failed: %s", al_strerror(rc)) : AL_OK;
}

/* Reference log-probs for the rows now in the buffers: copied from the
 * precomputed values where there are some (pairs: chosen, rejected; KTO:
 * the example, its KL row), computed by the reference otherwise. */
static int reference_rows(trainer *t, dataset *d, const int32_t *idx, int n, const al_tokens *in) {
    if (!d->ref) return reference_forward(t, in, 0, in->B);
    memset(t->ref_logp, 0, (size_t)in->B * in->T * sizeof(float));
    for (int r = 0; r < in->B; r++) {
        int e = idx[r % n], s = r >= n;   /* rows: n examples, then their second sequences */
        const float *src = d->ref[2 * e + s];
        if (src) memcpy(t->ref_logp + (size_t)r * in->T, src, (size_t)d->ex[e].seq[s].n * sizeof(float));
    }
    return AL_OK;
}

/* Counts a step's denominators: scored tokens and examples. */
static void step_norms(trainer *t, dataset *d, const int32_t *idx, int n, double *tokens,
                       double *rows) {
    double tk = 0, ex = 0;
    int packed = t->packed && d == &t->train;
    for (int i = 0; i < n; i++) {
        int a = packed ? t->pack.start[idx[i]] : idx[i];
        int b = packed ? t->pack.start[idx[i] + 1] : idx[i] + 1;
        for (int j = a; j < b; j++, ex++) {
            const al_example *e = &d->ex[packed ? t->pack.items[j] : j];
            /* targets are scored at t for token t+1: trained tokens after the first */
            for (int s = 0; s < (t->kind == AL_BATCH_PAIR ? 2 : 1); s++)
                for (int k = 1; k < e->seq[s].n; k++) tk += e->seq[s].mask[k];
        }
    }
    *tokens = tk > 0 ? tk : 1;
    *rows = ex;
}

/* Forward, objective and (when train) backward for one micro-batch.
 * Accumulates the objective's statistics into st. */
static int micro_batch(trainer *t, dataset *d, const int32_t *idx, int n, double norm_tokens,
                       double norm_rows, int train, al_step_stats *st) {
    al_tokens in;
    int rc = build_rows(t, d, idx, n, &in);
    if (rc) return rc;
    size_t cnt = (size_t)in.B * in.T;
    al_fwd f = {.logp = t->ops->needs_lm ? t->logp : NULL,
                .entropy = t->ops->needs_lm ? t->ent : NULL,
                .values = t->ops->needs_values ? t->values : NULL,
                .hit = t->kind == AL_BATCH_LM && t->ops->needs_lm ? t->hit : NULL};
    al_obj_in oi = {
        .R = in.B, .T = in.T, .targets = t->tgt, .weight = NULL, .last = t->last,
        .n_pairs = t->kind == AL_BATCH_PAIR ? n : 0,
        .margin = t->kind == AL_BATCH_PAIR ? t->margin : NULL,
        .label = t->kind == AL_BATCH_UNPAIRED ? t->label : NULL,
        .n_main = t->kind == AL_BATCH_UNPAIRED ? t->batch.B : in.B,
        .ref_logp = t->ops->needs_ref ? t->ref_logp : NULL,
        .completion = t->ops->scores_prompt ? t->cmask : NULL,
        .norm_tokens = norm_tokens, .norm_rows = norm_rows,
    };
    if (train && t->ops->needs_lm && t->ops->dlogp_prior) {
        /* the loss's dlogp known before the forward: the forward runs a
         * frozen LM head's backward at once (the backward checks that loss
         * gave the same values) */
        memset(t->dlogp, 0, cnt * sizeof(float));
        if (t->ops->dlogp_prior(t->obj, &oi, t->dlogp) == AL_OK) f.dlogp = t->dlogp;
    }
    if ((rc = al_model_forward(t->lm.m, &in, &f)))
        return al_err(t->run.err.msg, rc, "forward failed: %s", al_strerror(rc));
    if (f.hit) {
        /* TRL's mean_token_accuracy: greedy predictions equal to the targets */
        double hits = 0;
        for (size_t k = 0; k < cnt; k++) hits += t->tgt[k] >= 0 && f.hit[k];
        al_stats_add(st, "mean_token_accuracy", hits / norm_tokens);
    }
    if (t->ops->needs_ref && (rc = reference_rows(t, d, idx, n, &in))) return rc;
    memset(t->dlogp, 0, cnt * sizeof(float));
    memset(t->dent, 0, cnt * sizeof(float));
    memset(t->dvalue, 0, cnt * sizeof(float));
    oi.logp = f.logp;
    oi.entropy = f.entropy;
    oi.values = f.values;
    al_obj_out oo = {.dlogp = t->dlogp, .dent = NULL, .dvalue = t->ops->needs_values ? t->dvalue : NULL};
    al_step_stats s;
    memset(&s, 0, sizeof s);
    if ((rc = t->ops->loss(t->obj, &oi, &oo, &s))) {
        if (rc == AL_ENAN)
            return al_err(t->run.err.msg, AL_ENAN, "divergence: the loss is not finite at step %ld", t->run.step + 1);
        return al_err(t->run.err.msg, rc, "objective %s failed: %s", t->ops->name, al_strerror(rc));
    }
    if (train) {
        if ((rc = al_model_backward(t->lm.m, &in, t->ops->needs_lm ? t->dlogp : NULL, NULL,
                                    t->ops->needs_values ? t->dvalue : NULL)))
            return al_err(t->run.err.msg, rc, "backward failed: %s", al_strerror(rc));
    }
    st->loss += s.loss;
    st->num_tokens += s.num_tokens;
    for (int i = 0; i < s.n; i++) al_stats_add(st, s.m[i].name, s.m[i].value);
    return AL_OK;
}

/* Training units: examples, or packed rows when packing. */
static int n_units(const trainer *t) { return t->packed ? t->pack.n_rows : t->train.n; }

/* The units of step `step` (0-based) into t->order (from t->order +
 * step_offset); returns their count. A mixture draws batch_size examples
 * from its sampler, whose state the checkpoint keeps. */
static int step_examples(trainer *t, long step) {
    if (t->mixing) {
        for (int k = 0; k < t->GB; k++) t->order[k] = al_mix_next(&t->mix);
        return t->GB;
    }
    long spe = t->run.steps_per_epoch;
    long epoch = step / spe, k = step % spe;
    if (k == 0 || step == t->run.step) {
        /* (re)build the epoch's order; cheap and keeps resume exact. KTO:
         * dataset order (TRL's sequential sampler keeps its KL pairs) */
        if (t->kind == AL_BATCH_UNPAIRED)
            for (int i = 0; i < n_units(t); i++) t->order[i] = i;
        else
            al_batch_order(t->packed ? t->pack.len : t->unit_len ? t->unit_len : t->train.len, n_units(t),
                           t->GB, t->hp->group_by_length,
                           t->hp->seed + (uint64_t)epoch * 0x9E3779B9u, t->order);
    }
    long lo = k * t->GB;
    long hi = lo + t->GB;
    if (hi > n_units(t)) hi = n_units(t);
    return (int)(hi - lo);
}

/* Global samples (units) consumed before step `step`: the data cursor a
 * checkpoint records. */
static long data_cursor(const trainer *t, long step) {
    if (t->mixing) return step * t->GB;
    long spe = t->run.steps_per_epoch, k = step % spe, in_epoch = k * t->GB;
    return (step / spe) * n_units(t) + (in_epoch < n_units(t) ? in_epoch : n_units(t));
}

/* Before step `step`: its units, the global batch, into t->step_ex and
 * t->step_n. */
static void step_units(trainer *t, long step) {
    int n = step_examples(t, step);
    long lo = t->mixing ? 0 : (step % t->run.steps_per_epoch) * t->GB;
    const int32_t *all = t->order + lo;
    if (t->unit_ex && !t->packed) {
        /* a fixed mixture's units are its draws: examples, some repeated */
        for (int i = 0; i < n; i++) t->mapped[i] = t->unit_ex[all[i]];
        all = t->mapped;
    }
    t->step_ex = all;
    t->step_n = n;
}

/* This rank's share of the step's units: forward, objective and (update)
 * backward micro-batch by micro-batch, the statistics into t->st. The
 * gradients are then complete on this rank; the skeleton sums them over
 * the ranks (run.h, after backward). */
static int step_share(trainer *t, int update) {
    const int32_t *all = t->step_ex;
    int n = t->step_n;
    double norm_tokens, norm_rows;
    /* the denominators of the global batch: every rank holds all the data */
    step_norms(t, &t->train, all, n, &norm_tokens, &norm_rows);
    int a = t->run.rank * t->B < n ? t->run.rank * t->B : n, b = a + t->B < n ? a + t->B : n;
    memset(&t->st, 0, sizeof t->st);
    if (update) al_model_zero_grad(t->lm.m);
    int rc = AL_OK;
    for (int i = a; i < b && !rc; i += t->mb) {
        int k = b - i < t->mb ? b - i : t->mb;
        memcpy(t->idx, all + i, (size_t)k * sizeof *t->idx);
        if (update && i + k >= b) al_ddp_arm(t->ddp); /* the step's last backward starts the buckets */
        rc = micro_batch(t, &t->train, t->idx, k, norm_tokens, norm_rows, update, &t->st);
    }
    return rc;
}

/* ---- evaluation ------------------------------------------------------------ */

static int eval_loss(trainer *t, dataset *d, al_step_stats *st) {
    memset(st, 0, sizeof *st);
    int32_t *all = malloc((size_t)d->n * sizeof *all);
    if (!all) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory");
    for (int i = 0; i < d->n; i++) all[i] = i;
    double norm_tokens, norm_rows;
    step_norms(t, d, all, d->n, &norm_tokens, &norm_rows);
    int rc = AL_OK;
    for (int i = 0; i < d->n && !rc; i += t->mb) {
        int k = d->n - i < t->mb ? d->n - i : t->mb;
        memcpy(t->idx, all + i, (size_t)k * sizeof *t->idx);
        rc = micro_batch(t, d, t->idx, k, norm_tokens, norm_rows, 0, st);
    }
    free(all);
    return rc;
}

/* Greedy completions of the first validation prompts, as samples. */
static void eval_samples(trainer *t, long step) {
    if (!t->cb || !t->cb->sample || !t->ops->needs_lm || t->val.n == 0) return;
    int n = t->val.n < N_SAMPLES ? t->val.n : N_SAMPLES;
    for (int i = 0; i < n; i++) {
        const al_seq *s = &t->val.ex[i].seq[0];
        int pl = 0;
        while (pl < s->n && !s->mask[pl]) pl++;
        if (pl == 0 || pl + SAMPLE_MAX_NEW > al_model_config_of(t->lm.m)->max_T) continue;
        int32_t out[SAMPLE_MAX_NEW];
        int len = 0;
        al_gen_cfg g = {.max_new = SAMPLE_MAX_NEW, .temperature = 0, .top_p = 1,
                        .stop = t->stops, .n_stop = t->n_stops};
        al_rng rng;
        al_rng_seed(&rng, t->hp->seed);
        char e2[AL_ERRLEN];
        const int32_t *pp = s->ids;
        if (al_generate(t->lm.m, &pp, &pl, 1, &g, &rng, out, NULL, &len, e2)) continue;
        char *ptxt = NULL, *ctxt = NULL;
        size_t a, b;
        if (al_rollout_ended(out, len, t->stops, t->n_stops)) len--;
        if (al_tok_decode(t->lm.tok, s->ids, pl, 1, &ptxt, &a) == AL_OK &&
            al_tok_decode(t->lm.tok, out, len, 1, &ctxt, &b) == AL_OK) {
            double reward = NAN;
            if (t->job->task[0]) {
                al_task_row r;
                al_task_row_get(t->job->task, AL_SPLIT_TEST, t->job->task_seed + 1000003u, (uint64_t)i, &r);
                reward = al_task_correct(&r, ctxt);
            }
            t->cb->sample(t->cb->ud, step, ptxt, ctxt, reward);
        }
        free(ptxt);
        free(ctxt);
    }
}

/* Greedy exact-match accuracy of model m on n rows of a task (raw prompts). */
static int task_accuracy(al_model *m, const al_tok *tok, const char *task, int split, uint64_t seed, int n,
                         double *acc, char err[AL_ERRLEN]) {
    enum { B = 8, NEW = 48 }; /* word_problems' solutions run to about 30 bytes */
    int ok = 0, max_T = al_model_config_of(m)->max_T;
    int32_t eos = al_tok_eos(tok);
    for (int i = 0; i < n; i += B) {
        int nb = n - i < B ? n - i : B, plen[B];
        int32_t *ids[B] = {0}, out[B * NEW];
        int len[B];
        al_task_row rows[B];
        int rc = AL_OK;
        for (int b = 0; b < nb && !rc; b++) {
            al_task_row_get(task, split, seed, (uint64_t)(i + b), &rows[b]);
            rc = al_tok_encode(tok, rows[b].prompt, strlen(rows[b].prompt), 1, 0, &ids[b], &plen[b],
                               NULL, NULL, err);
        }
        /* as many new tokens as the context leaves, up to NEW */
        int maxp = 0;
        for (int b = 0; b < nb && !rc; b++) maxp = plen[b] > maxp ? plen[b] : maxp;
        int nn = max_T - maxp < NEW ? max_T - maxp : NEW;
        if (!rc && nn < 1) rc = al_err(err, AL_EINVAL, "task %s: a prompt of %d tokens fills the context (%d)", task, maxp, max_T);
        al_gen_cfg g = {.max_new = nn, .temperature = 0, .top_p = 1, .stop = &eos, .n_stop = eos >= 0};
        al_rng rng;
        al_rng_seed(&rng, 1);
        if (!rc) rc = al_generate(m, (const int32_t *const *)ids, plen, nb, &g, &rng, out, NULL, len, err);
        for (int b = 0; b < nb; b++) {
            if (!rc) {
                int l = len[b];
                if (l > 0 && out[b * nn + l - 1] == eos) l--;
                char *txt = NULL;
                size_t tl;
                if (al_tok_decode(tok, out + b * nn, l, 1, &txt, &tl) == AL_OK) ok += al_task_correct(&rows[b], txt);
                free(txt);
            }
            free(ids[b]);
        }
        if (rc) return rc;
    }
    *acc = n > 0 ? (double)ok / n : 0;
    return AL_OK;
}

/* Mean token cross-entropy of the policy on language-modelling examples. */
static int lm_loss(trainer *t, dataset *d, double *loss) {
    double sum = 0, count = 0;
    for (int i = 0; i < d->n; i += t->mb) {
        int n = d->n - i < t->mb ? d->n - i : t->mb;
        for (int k = 0; k < n; k++) t->idx[k] = i + k;
        int rc = al_batch_fill(&t->lm_batch, d->ex, t->idx, n, t->pad, t->run.err.msg);
        if (rc) return rc;
        al_tokens in = al_batch_tokens(&t->lm_batch);
        al_fwd f = {.logp = t->logp};
        if ((rc = al_model_forward(t->lm.m, &in, &f))) return al_err(t->run.err.msg, rc, "forward failed");
        for (size_t k = 0; k < (size_t)in.B * in.T; k++)
            if (in.targets[k] >= 0) {
                sum -= t->logp[k];
                count++;
            }
    }
    *loss = count > 0 ? sum / count : 0;
    return AL_OK;
}

/* Validation loss and metrics (eval_*), samples, and the eval_tasks. */
static int evaluate(trainer *t, long step, al_metric *m, int *nm) {
    int rc;
    if (t->val.n > 0) {
        al_step_stats st;
        if ((rc = eval_loss(t, &t->val, &st))) return rc;
        snprintf(m[*nm].name, sizeof m[*nm].name, "eval_loss");
        m[(*nm)++].value = st.loss;
        for (int i = 0; i < st.n && *nm < 2 * AL_MAX_METRICS - 1; i++) {
            snprintf(m[*nm].name, sizeof m[*nm].name, "eval_%.42s", st.m[i].name);
            m[(*nm)++].value = st.m[i].value;
        }
        eval_samples(t, step);
    }
    for (int k = 0; k < t->job->n_eval_tasks && t->ops->needs_lm && *nm < 2 * AL_MAX_METRICS - 2; k++) {
        const al_eval_task *et = &t->job->eval_tasks[k];
        if (t->bench[k]) {
            if ((rc = al_bench_report(t->bench[k], t->lm.m, t->mb * t->rows_per_ex, t->max_T, "model", step, t->cb, m, nm,
                                      2 * AL_MAX_METRICS, t->run.err.msg)))
                return rc;
            continue;
        }
        double loss = 0;
        if ((rc = lm_loss(t, &t->evals[k], &loss))) return rc;
        snprintf(m[*nm].name, sizeof m[*nm].name, "eval/%.20s/loss", et->name);
        m[(*nm)++].value = loss;
        if (!et->task[0]) continue;
        double acc;
        if ((rc = task_accuracy(t->lm.m, t->lm.tok, et->task, et->split, 1000003u,
                                (int)(et->rows < 200 ? et->rows : 200), &acc, t->run.err.msg)))
            return rc;
        snprintf(m[*nm].name, sizeof m[*nm].name, "eval/%.20s/accuracy", et->name);
        m[(*nm)++].value = acc;
    }
    return AL_OK;
}

/* ---- reference log-probs ---------------------------------------------------- */

/* Runs the (start) model once over a dataset and keeps every sequence's
 * token log-probs, so the reference need not stay in memory: both
 * sequences of a pair, and a KTO example's KL row (pass 1) as well as the
 * example (pass 0). */
static int precompute_ref(trainer *t, dataset *d) {
    d->ref = calloc((size_t)d->n * 2, sizeof *d->ref);
    if (!d->ref) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory for reference log-probs");
    int passes = t->kind == AL_BATCH_UNPAIRED ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        al_batch *bt = pass ? &t->kl_batch : &t->batch;
        for (int i = 0; i < d->n; i += t->mb) {
            int n = d->n - i < t->mb ? d->n - i : t->mb, rc;
            if (pass) { /* the KL rows, seen as first sequences */
                for (int k = 0; k < n; k++) {
                    t->kl_ex[k].seq[0] = d->ex[i + k].seq[1];
                    t->idx[k] = k;
                }
                rc = al_batch_fill(bt, t->kl_ex, t->idx, n, t->pad, t->run.err.msg);
            } else {
                for (int k = 0; k < n; k++) t->idx[k] = i + k;
                rc = al_batch_fill(bt, d->ex, t->idx, n, t->pad, t->run.err.msg);
            }
            if (rc) return rc;
            al_tokens in = al_batch_tokens(bt);
            al_fwd f = {.logp = t->ref_logp};
            al_model *rm = t->ref ? t->ref : t->lm.m;
            if (t->ref_adapters_off) al_model_set_adapters(t->lm.m, 0);
            rc = al_model_forward(rm, &in, &f);
            if (t->ref_adapters_off) al_model_set_adapters(t->lm.m, 1);
            if (rc) return al_err(t->run.err.msg, rc, "reference forward failed: %s", al_strerror(rc));
            for (int r = 0; r < in.B; r++) {
                int e = i + r % n, s = pass || r >= n;
                int len = d->ex[e].seq[s].n;
                float *v = malloc((size_t)(len > 0 ? len : 1) * sizeof *v);
                if (!v) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory for reference log-probs");
                memcpy(v, t->ref_logp + (size_t)r * in.T, (size_t)len * sizeof *v);
                d->ref[2 * e + s] = v;
            }
        }
    }
    return AL_OK;
}

/* ---- checkpoints ------------------------------------------------------------ */

/* What a checkpoint folder is filled from: the gathered AdamW moments. */
typedef struct fill_ctx {
    trainer *t;
    int with_state;
    const float *mm, *vv;
    size_t nm;
} fill_ctx;

/* Writes the model (adapter or full), tokenizer files and the trainer state
 * into the folder tmp (al_run_write_dir). */
static int fill_model_dir(void *u, const char *tmp) {
    const fill_ctx *c = u;
    trainer *t = c->t;
    int rc;
    if ((rc = al_run_save_weights(&t->run, t->lm.m, tmp, t->job->model, t->job->use_lora))) return rc;
    if ((rc = al_run_copy_tokenizer(t->job, tmp, t->run.err.msg))) return rc;
    if (!c->with_state) return AL_OK;
    /* AdamW moments (and the fp32 masters of a checkpoint saved narrower)
     * and the step: all that resuming needs beyond weights; the global batch
     * and the data cursor (in global samples) let a run resume on another
     * number of ranks */
    if ((rc = al_run_save_opt(&t->run, tmp, c->mm, c->vv, c->nm, t->lm.m))) return rc;
    json_t *st = json_pack("{s:I, s:I, s:I, s:f, s:s, s:I, s:i, s:i, s:I}", "global_step", (json_int_t)t->run.step,
                           "max_steps", (json_int_t)t->run.total_steps, "optimizer_step", (json_int_t)t->opt.step,
                           "trained_tokens", t->run.trained_tokens, "method", t->ops->name, "seed",
                           (json_int_t)t->hp->seed, "global_batch_size", t->GB, "world_size", t->run.world,
                           "data_cursor", (json_int_t)data_cursor(t, t->run.step));
    if (st && t->mixing && json_object_set_new(st, "mixer", al_mix_state(&t->mix))) {
        json_decref(st);
        st = NULL;
    }
    return al_run_save_state(&t->run, tmp, st);
}

/* A model folder (with_state: a checkpoint) at dir. Every rank calls it
 * (the moments of a sharded optimizer are gathered); rank 0 writes, and all
 * return its result. */
static int save_model_dir(trainer *t, const char *dir, int with_state) {
    float *mm = NULL, *vv = NULL;
    size_t nm = 0;
    int rc = with_state ? al_ddp_moments_gather(t->ddp, &t->opt, &mm, &vv, &nm, t->run.err.msg) : AL_OK;
    fill_ctx c = {t, with_state, mm, vv, nm};
    rc = al_run_write_dir(&t->run, dir, rc, fill_model_dir, &c);
    if (with_state) al_ddp_moments_release(&t->opt, mm, vv);
    return al_dist_agree_err(rc, &t->run.err);
}

static int load_state(trainer *t, const char *dir) {
    char path[AL_PATH_MAX + 64];
    json_t *st = NULL;
    int rc = al_run_load_state(&t->run, dir, &st, path);
    if (rc) return rc;
    json_t *gs = json_object_get(st, "global_step"), *os = json_object_get(st, "optimizer_step");
    json_t *tt = json_object_get(st, "trained_tokens");
    if (!json_is_integer(gs) || !json_is_integer(os) || json_integer_value(gs) < 0) {
        json_decref(st);
        return al_err(t->run.err.msg, AL_EFORMAT, "%s: global_step missing or invalid", path);
    }
    if (t->mixing) {
        char e2[AL_ERRLEN];
        const json_t *mx = json_object_get(st, "mixer");
        if (!mx) rc = al_err(t->run.err.msg, AL_EFORMAT, "%s: no mixer state (written by a job without training_files)", path);
        else if ((rc = al_mix_restore(&t->mix, mx, e2))) al_err(t->run.err.msg, rc, "%s: %s", path, e2);
        if (rc) {
            json_decref(st);
            return rc;
        }
    }
    t->run.step = (long)json_integer_value(gs);
    t->opt.step = (long)json_integer_value(os);
    t->run.trained_tokens = json_number_value(tt);
    json_t *dc = json_object_get(st, "data_cursor");
    long cursor = json_is_integer(dc) ? (long)json_integer_value(dc) : -1;
    json_decref(st);
    if (cursor >= 0 && cursor != data_cursor(t, t->run.step))
        return al_err(t->run.err.msg, AL_EFORMAT, "%s: data_cursor %ld does not match step %ld of global batches of %d",
                      path, cursor, t->run.step, t->GB);
    /* weights: full model or adapters on the job's base; then the moments
     * (this rank's slice) and the fp32 masters of a checkpoint saved narrower */
    if (t->job->use_lora) rc = al_model_load_adapters(t->lm.m, dir, t->run.err.msg);
    else rc = al_model_load_weights(t->lm.m, dir, t->run.err.msg);
    return rc ? rc : al_run_load_opt(&t->run, &t->opt, t->lm.m, dir);
}

/* ---- the run ----------------------------------------------------------------- */

static void trainer_free(trainer *t) {
    dataset_free(&t->train);
    dataset_free(&t->val);
    for (int k = 0; k < AL_MAX_EVAL_TASKS; k++) {
        dataset_free(&t->evals[k]);
        al_bench_free(t->bench[k]);
    }
    al_batch_deinit(&t->lm_batch);
    al_pack_deinit(&t->pack);
    al_pack_deinit(&t->sub);
    al_batch_deinit(&t->batch);
    al_batch_deinit(&t->kl_batch);
    free(t->kl_ex);   /* views of the datasets' sequences */
    free(t->logp); free(t->ent); free(t->values); free(t->ref_logp);
    free(t->dlogp); free(t->dent); free(t->dvalue); free(t->hit); free(t->cmask);
    free(t->ids); free(t->seg); free(t->pos); free(t->tgt); free(t->last);
    free(t->label); free(t->margin); free(t->order); free(t->idx);
    free(t->unit_ex); free(t->unit_len); free(t->mapped);
    al_adamw_deinit(&t->opt);
    al_ddp_free(t->ddp);
    al_mix_deinit(&t->mix);
    if (t->obj) t->ops->destroy(t->obj);
    al_model_free(t->ref);
    al_lm_close(&t->lm);
}

/* The global batch: batch_size on each rank, or when resuming the one the
 * checkpoint was trained with (however many ranks there are now), split
 * evenly over the ranks. */
static int global_batch(trainer *t, const char *resume_dir) {
    int rc = al_run_world(&t->run, resume_dir, &t->GB);
    if (rc) return rc;
    if (t->GB % t->run.world)
        return AL_FAIL(&t->run.err, AL_EINVAL, "hyperparameters.batch_size", "the checkpoint's global batch of %d does "
                       "not split over %d ranks", t->GB, t->run.world);
    t->B = t->GB / t->run.world;
    if (t->mb > t->B) t->mb = t->B;
    return AL_OK;
}

static int setup(trainer *t, const al_job *job, const char *resume_dir, const al_train_cb *cb) {
    int rc;
    t->job = t->run.job = job;
    t->hp = t->run.hp = &job->hp;
    t->cb = t->run.cb = cb;
    t->ops = al_objective_find(job->method);
    if (!t->ops) return AL_FAIL(&t->run.err, AL_EINVAL, "method", "'%s' is unknown", job->method);
    if ((rc = t->ops->create(t->hp, &t->obj, &t->run.err))) return rc;
    t->kind = t->ops->batch;
    t->rows_per_ex = t->kind == AL_BATCH_LM ? 1 : 2;
    t->mb = t->hp->micro_batch_size;
    if (t->mb > AL_MAX_MICRO_BATCH)
        return AL_FAIL(&t->run.err, AL_EINVAL, "hyperparameters.batch_size", "micro-batches hold at most %d",
                       AL_MAX_MICRO_BATCH);
    if ((rc = global_batch(t, resume_dir))) return rc;
    if ((rc = al_run_open_policy(&t->run, &t->lm, t->ops->needs_values ? AL_OPEN_SCORE_HEAD : 0, 0))) return rc;
    t->pad = al_chat_pad_id(t->lm.chat);
    /* samples end where the served model's answers end */
    char e2[AL_ERRLEN];
    if ((t->n_stops = al_lm_stop_ids(&t->lm, t->stops, AL_LM_MAX_STOPS, e2)) < 0)
        return AL_FAIL(&t->run.err, t->n_stops, "model", "%s", e2);
    const al_model_config *mc = al_model_config_of(t->lm.m);
    if (t->ops->needs_lm && !mc->has_lm_head)
        return AL_FAIL(&t->run.err, AL_EINVAL, "model", "%s has no language-model head (a reward model?)", job->model);
    t->max_T = t->hp->max_length < mc->max_T ? t->hp->max_length : mc->max_T;
    /* data */
    if (job->task[0]) {
        if ((rc = task_examples(t, job->task, job->task_split, job->task_rows, job->task_seed, job->task_mistakes,
                                t->kind, &t->train)))
            return rc;
        /* validation rows from the held-out split, every kind of mistake:
         * what the model will meet */
        long vrows = job->task_rows / 10 < 200 ? job->task_rows / 10 : 200;
        if (vrows < 8) vrows = 8;
        if ((rc = task_examples(t, job->task, AL_SPLIT_TEST, vrows, job->task_seed + 1000003u, AL_MISTAKES_ANY,
                                t->kind, &t->val)))
            return rc;
    } else if (job->n_train_files) {
        if ((rc = mixture_examples(t))) return rc;
        if (job->validation_file[0] &&
            (rc = file_examples(t, job->validation_file, t->ops->name, &t->val, "validation_file", 0)))
            return rc;
    } else {
        if ((rc = file_examples(t, job->training_file, t->ops->name, &t->train, "training_file", 1))) return rc;
        if (job->validation_file[0] &&
            (rc = file_examples(t, job->validation_file, t->ops->name, &t->val, "validation_file", 0)))
            return rc;
    }
    if ((rc = finish_dataset(t, &t->train, 0, "training data")) ||
        (rc = finish_dataset(t, &t->val, 0, "validation data")))
        return rc;
    if (t->kind == AL_BATCH_UNPAIRED) {
        /* KL rows in runs of a micro-batch (the job parser asks for at
         * least 2), the validation set's too (TRL pairs both in runs of
         * per_device_train_batch_size) */
        if ((rc = kto_kl_rows(t, &t->train, t->mb)) || (rc = kto_kl_rows(t, &t->val, t->mb))) return rc;
    }
    /* eval_tasks: what the model could do before, measured as an SFT loss
     * (and exact-match for built-in tasks) whatever this job optimises */
    for (int k = 0; k < job->n_eval_tasks && t->ops->needs_lm; k++) {
        const al_eval_task *et = &job->eval_tasks[k];
        char what[96];
        snprintf(what, sizeof what, "eval_tasks[%d]", k);
        char type[32] = "loss";
        if (!et->task[0] && et->type[0]) snprintf(type, sizeof type, "%s", et->type);
        else if (!et->task[0] && (rc = al_bench_detect(et->file, type, t->run.err.msg))) return rc;
        if (strcmp(type, "loss")) {
            if ((rc = al_bench_load(&t->bench[k], et, t->lm.chat, &job->reward.grader, mc->max_T, what, t->run.err.msg)))
                return al_fail_as(&t->run.err, rc, what, t->run.err.msg);
            continue;
        }
        if (et->task[0]) rc = task_examples(t, et->task, et->split, et->rows < 200 ? et->rows : 200, 1000003u,
                                            AL_MISTAKES_ANY, AL_BATCH_LM, &t->evals[k]);
        else rc = file_examples(t, et->file, "sft", &t->evals[k], what, 0);
        if (rc || (rc = finish_dataset(t, &t->evals[k], 1, what))) return rc;
    }
    int longest = 0;
    for (int i = 0; i < t->train.n; i++) longest = t->train.len[i] > longest ? t->train.len[i] : longest;
    for (int i = 0; i < t->val.n; i++) longest = t->val.len[i] > longest ? t->val.len[i] : longest;
    for (int k = 0; k < job->n_eval_tasks; k++)
        for (int i = 0; i < t->evals[k].n; i++)
            longest = t->evals[k].len[i] > longest ? t->evals[k].len[i] : longest;
    if (longest < t->max_T && !t->hp->packing) t->max_T = longest; /* packed rows fill max_length */
    for (int k = 0; k < job->n_eval_tasks; k++) /* a benchmark's rows may outrun max_length */
        if (t->bench[k] && al_bench_longest(t->bench[k]) > t->max_T) t->max_T = al_bench_longest(t->bench[k]);
    if (t->mixing && (t->hp->packing || t->hp->group_by_length) && (rc = fix_mixture(t))) return rc;
    if (t->hp->packing) {
        int32_t *all = malloc((size_t)t->train.n * sizeof *all);
        if (!all) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory");
        for (int i = 0; i < t->train.n; i++) all[i] = t->unit_ex ? t->unit_ex[i] : i;
        rc = al_pack_bfd(t->train.ex, all, t->train.n, t->max_T, &t->pack, t->run.err.msg);
        free(all);
        if (rc) return rc;
        t->sub.start = calloc((size_t)t->mb + 1, sizeof *t->sub.start);
        t->sub.len = calloc((size_t)t->mb, sizeof *t->sub.len);
        t->sub.items = calloc((size_t)t->train.n, sizeof *t->sub.items);
        if (!t->sub.start || !t->sub.len || !t->sub.items) return al_err(t->run.err.msg, AL_ENOMEM, "out of memory");
        t->packed = 1;
        al_run_event(t->cb, AL_LOG_INFO, "packing: %d examples into %d rows of at most %d tokens", t->train.n,
              t->pack.n_rows, t->max_T);
    }
    /* reference */
    /* a reference precomputed once needs no copy of the start model */
    if (t->ops->needs_ref &&
        (rc = al_run_open_ref(&t->run, !t->hp->precompute_ref_log_probs, 0, &t->ref, &t->ref_adapters_off)))
        return rc;
    t->run.steps_per_epoch = (n_units(t) + t->GB - 1) / t->GB;
    t->run.total_steps = t->hp->max_steps >= 0 ? t->hp->max_steps : t->run.steps_per_epoch * t->hp->n_epochs;
    if ((rc = alloc_buffers(t))) return rc;
    if (t->ops->needs_ref && t->hp->precompute_ref_log_probs) {
        /* score the data once with the reference, then let it go */
        if ((rc = precompute_ref(t, &t->train)) || (rc = precompute_ref(t, &t->val))) return rc;
        if (t->ref) {
            al_model_free(t->ref);
            t->ref = NULL;
        }
        al_run_event(t->cb, AL_LOG_INFO, "reference log-probs precomputed for %d + %d examples", t->train.n, t->val.n);
    }
    al_run_event(t->cb, AL_LOG_INFO, "%s: %d training and %d validation examples, %ld steps, %zu trainable parameters",
          t->ops->name, t->train.n, t->val.n, t->run.total_steps, al_model_num_params(t->lm.m, 1));
    if (t->run.world > 1)
        al_run_event(t->cb, AL_LOG_INFO, "distributed: %d ranks, %d examples per rank per step, global batch %d, "
              "micro-batches of %d, %s, buckets of %g MB %s", t->run.world, t->B, t->GB, t->mb,
              job->dist.shard_optimizer ? "AdamW moments sharded (ZeRO-1)" : "AdamW moments on every rank",
              job->dist.bucket_mb, job->dist.overlap ? "reduced during backward" : "reduced after backward");
    return AL_OK;
}

/* The divergence watchdog: non-finite values, or a loss that stays far
 * above its running mean for WATCH_PATIENCE steps. */
static int watchdog(trainer *t, double loss, double gnorm) {
    if (!isfinite(loss) || !isfinite(gnorm))
        return al_err(t->run.err.msg, AL_ENAN, "divergence: %s is %s at step %ld; stopped before writing it",
                      isfinite(loss) ? "grad_norm" : "loss", isnan(isfinite(loss) ? gnorm : loss) ? "nan" : "inf",
                      t->run.step + 1);
    /* the running mean starts with this run (a resumed run too) */
    if (t->watched++ < WATCH_WARMUP) {
        t->ema = t->watched == 1 ? loss : 0.9 * t->ema + 0.1 * loss;
        return AL_OK;
    }
    if (loss > 3.0 * fabs(t->ema) + 2.0) {
        if (++t->above >= WATCH_PATIENCE)
            return al_err(t->run.err.msg, AL_ENAN, "divergence: loss %.4g stayed far above its running mean %.4g "
                          "for %d steps", loss, t->ema, WATCH_PATIENCE);
    } else {
        t->above = 0;
        t->ema = 0.9 * t->ema + 0.1 * loss;
    }
    return AL_OK;
}

/* ---- the step kind: hooks of the run skeleton (run.h) ----------------------- */

static int hook_resume(void *u, const char *dir, char *note) {
    trainer *t = u;
    int rc = load_state(t, dir);
    if (!rc && t->run.world0 != t->run.world)
        snprintf(note, AL_ERRLEN, "the checkpoint was written by %d ranks, this run has %d: the global batch of %d "
                 "is kept, %d per rank", t->run.world0, t->run.world, t->GB, t->B);
    return rc;
}

/* Step 0: the loss and the objective's metrics of step 1's batch before
 * any update. */
static int hook_measure(void *u, al_mlist *l) {
    trainer *t = u;
    step_units(t, 0);
    int rc = step_share(t, 0);
    al_stats_dist_sum(&t->st);
    rc = al_dist_agree_err(rc, &t->run.err);
    if (!rc) {
        al_mlist_put(l, "loss", t->st.loss);
        for (int i = 0; i < t->st.n; i++) al_mlist_put(l, t->st.m[i].name, t->st.m[i].value);
    }
    if (t->mixing) al_mix_rewind(&t->mix); /* step 1 trains on what step 0 measured */
    return rc;
}

static int hook_before_step(void *u, long step, int *n_updates) {
    step_units(u, step);
    *n_updates = 1;
    return AL_OK;
}

static int hook_backward(void *u, int k) {
    (void)k;
    return step_share(u, 1);
}

/* The gradients summed over the ranks: the global norm clipped, the
 * watchdog (before the step is taken), AdamW. */
static int hook_optimizer(void *u, int k, float lr) {
    trainer *t = u;
    (void)k;
    al_stats_dist_sum(&t->st);
    /* the loss and the norm are global: every rank decides alike */
    float gscale;
    t->gnorm = al_ddp_clip_grad_norm(t->ddp, t->lm.m, t->hp->max_grad_norm, &gscale);
    int rc = watchdog(t, t->st.loss, t->gnorm);
    if (rc) return rc;
    al_ddp_adamw_step(t->ddp, &t->opt, t->lm.m, lr, gscale);
    return AL_OK;
}

static int hook_after_step(void *u, float lr, al_mlist *l) {
    trainer *t = u;
    t->run.trained_tokens += t->st.num_tokens;
    al_mlist_put(l, "loss", t->st.loss);
    al_mlist_put(l, "learning_rate", lr);
    al_mlist_put(l, "grad_norm", t->gnorm);
    al_mlist_put(l, "num_tokens", t->run.trained_tokens);
    l->tps_at = l->n;
    for (int i = 0; i < t->st.n; i++) al_mlist_put(l, t->st.m[i].name, t->st.m[i].value);
    return AL_OK;
}

static int hook_evaluate(void *u, long step, al_mlist *l) { return evaluate(u, step, l->m, &l->n); }

static int hook_save(void *u, const char *dir) { return save_model_dir(u, dir, 1); }

static const al_run_ops k_trainer_ops = {
    .resume = hook_resume, .measure = hook_measure, .before_step = hook_before_step, .backward = hook_backward,
    .optimizer = hook_optimizer, .after_step = hook_after_step, .evaluate = hook_evaluate, .save = hook_save,
};

int al_train_run(const al_job *job, const char *resume_dir, const al_train_cb *cb,
                 al_train_result *res, al_error *err) {
    if ((!strcmp(job->method, "clean_data") || al_method_is_data(job->method)) && al_dist_size() > 1) {
        if (res) memset(res, 0, sizeof *res);
        return AL_FAIL(err, AL_EINVAL, "method", "%s runs in one process, not as %d ranks", job->method,
                       al_dist_size());
    }
    if (!strcmp(job->method, "clean_data")) return al_clean_run(job, cb, res, err);
    if (al_method_is_data(job->method)) return al_sampling_run(job, resume_dir, cb, res, err);
    if (al_method_is_rl(job->method)) return al_rl_run(job, resume_dir, cb, res, err);
    trainer *t = calloc(1, sizeof *t);
    if (!t) return al_failf(err, AL_ENOMEM, "out of memory");
    al_train_result r0;
    memset(&r0, 0, sizeof r0);
    /* every rank passes every agreement below, so that one failing alone
     * (a file it cannot read) fails them all with its reason */
    int rc = al_dist_agree_err(setup(t, job, resume_dir, cb), &t->run.err);
    if (!rc) rc = al_run_dist_start(&t->run, 1, &t->lm.m, &t->ddp, (al_adamw *const[]){&t->opt});
    rc = al_dist_agree_err(rc, &t->run.err);
    t->run.ddp[0] = t->ddp;
    if (!rc) rc = al_run_loop(&t->run, &k_trainer_ops, t, resume_dir, &r0);
    char line[300];
    if (al_ddp_summary(t->ddp, "", line, sizeof line)) al_run_event(cb, AL_LOG_INFO, "%s", line);
    r0.steps = t->run.step;
    r0.output_is_model = 1;
    r0.total_steps = t->run.total_steps;
    r0.trained_tokens = t->run.trained_tokens;
    if (res) *res = r0;
    if (rc && err) *err = t->run.err;
    trainer_free(t);
    free(t);
    return rc;
}

int al_eval_task_accuracy(const char *model_dir, const char *task, int n, double *acc,
                          char err[AL_ERRLEN]) {
    al_lm lm;
    al_lm_cfg lc = {.open_flags = AL_OPEN_FROZEN};
    int rc = al_lm_open(&lm, model_dir, &lc, err);
    al_task_row r;
    if (!rc && al_task_row_get(task, AL_SPLIT_ALL, 0, 0, &r) != AL_OK)
        rc = al_err(err, AL_EINVAL, "--task: '%s' is not a built-in task", task);
    if (!rc) rc = task_accuracy(lm.m, lm.tok, task, AL_SPLIT_TEST, 1000003u, n, acc, err);
    al_lm_close(&lm);
    return rc;
}

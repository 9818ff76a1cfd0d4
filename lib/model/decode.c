/* The serving decoder: continuous batching over one model (model.h,
 * al_decoder).
 *
 * Sequences join and leave between steps. A step gathers rows for one
 * forward (al_gen_run_rows): one row for every sequence that is decoding
 * (its last sampled token), then prompt rows of the sequences still being
 * prefilled, oldest first, as far as the row budget goes (a long prompt is
 * prefilled in chunks over several steps, so the decoding sequences keep
 * getting a token per step). Every row of a step goes through the matrix
 * products together: concurrent requests share them instead of taking
 * turns. A sequence samples from the logits of its last row of the step
 * when that row is its last prompt token or its last sampled token.
 *
 * Each sequence has its own cache (sized prompt + max_new when it joins),
 * its own sampling settings and its own RNG, so what it generates does not
 * depend on which other sequences share its steps (up to the floating-point
 * path of a matrix product over a different number of rows). */
#include <stdlib.h>
#include <string.h>

#include "gen_impl.h"
#include "model_impl.h"

typedef struct dseq {
    int used;
    int32_t *prompt;
    int plen, done_prompt;       /* prompt tokens already in the cache */
    int n_new;                   /* tokens sampled */
    int32_t last;                /* the last sampled token */
    al_gen_cfg g;
    int32_t stop[16];
    al_rng rng;
    uint64_t order;              /* arrival, for prefill order */
} dseq;

struct al_decoder {
    al_model *m;
    gen_state s;                 /* scratch for max_rows rows, caches per slot */
    int max_seqs;
    dseq *seqs;
    cand *cs;
    int *want, *want_seq;
    uint64_t arrivals;
    int last_rows;               /* rows of the last step */
};

al_decoder *al_decoder_new(al_model *m, int max_seqs, int max_rows, char err[AL_ERRLEN]) {
    const al_model_config *c = &m->cfg;
    if (m->head < 0) {
        al_err(err, AL_EINVAL, "model has no language-model head");
        return NULL;
    }
    if (max_seqs < 1) max_seqs = 1;
    if (max_rows < max_seqs) max_rows = max_seqs;
    al_decoder *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    d->m = m;
    d->max_seqs = max_seqs;
    d->s.m = m;
    d->s.B = max_seqs;
    d->s.R = max_rows;
    d->s.Tmax = c->max_T;
    d->seqs = calloc((size_t)max_seqs, sizeof *d->seqs);
    d->s.kseq = calloc((size_t)max_seqs, sizeof *d->s.kseq);
    d->s.vseq = calloc((size_t)max_seqs, sizeof *d->s.vseq);
    d->s.tcap = calloc((size_t)max_seqs, sizeof *d->s.tcap);
    d->cs = calloc((size_t)c->V, sizeof *d->cs);
    d->want = calloc((size_t)max_seqs, sizeof *d->want);
    d->want_seq = calloc((size_t)max_seqs, sizeof *d->want_seq);
    if (!d->seqs || !d->s.kseq || !d->s.vseq || !d->s.tcap || !d->cs || !d->want || !d->want_seq ||
        al_gen_scratch(&d->s, max_seqs)) {
        al_decoder_free(d);
        goto oom;
    }
    al_model_bf16_sync(m); /* a trained model's bf16 copies (frozen ones have no other) */
    return d;
oom:
    al_err(err, AL_ENOMEM, "out of memory for a decoder of %d rows", max_rows);
    return NULL;
}

void al_decoder_remove(al_decoder *d, int slot) {
    if (!d || slot < 0 || slot >= d->max_seqs || !d->seqs[slot].used) return;
    dseq *q = &d->seqs[slot];
    free(q->prompt);
    al_free(d->s.kseq[slot]);
    al_free(d->s.vseq[slot]);
    d->s.kseq[slot] = d->s.vseq[slot] = NULL;
    memset(q, 0, sizeof *q);
}

void al_decoder_free(al_decoder *d) {
    if (!d) return;
    for (int i = 0; d->seqs && i < d->max_seqs; i++) al_decoder_remove(d, i);
    gen_state *s = &d->s;
    al_free(s->x);
    al_free(s->s16);
    free(s->ids);
    free(s->pos);
    free(s->seq);
    al_free(s->logits);
    free(s->kseq);
    free(s->vseq);
    free(s->tcap);
    free(d->seqs);
    free(d->cs);
    free(d->want);
    free(d->want_seq);
    free(d);
}

int al_decoder_last_rows(const al_decoder *d) { return d->last_rows; }

int al_decoder_live(const al_decoder *d) {
    int n = 0;
    for (int i = 0; i < d->max_seqs; i++) n += d->seqs[i].used;
    return n;
}

int al_decoder_add(al_decoder *d, const int32_t *prompt, int plen, const al_gen_cfg *g, uint64_t seed,
                   char err[AL_ERRLEN]) {
    const al_model_config *c = &d->m->cfg;
    int rc = al_gen_check(g, err);
    if (rc) return rc;
    if (plen < 1) return al_err(err, AL_EINVAL, "the prompt is empty");
    if (g->n_stop > 16) return al_err(err, AL_EINVAL, "at most 16 stop tokens");
    if (plen + g->max_new > c->max_T)
        return al_err(err, AL_ERANGE, "prompt (%d) + max_new_tokens (%d) exceeds the context (%d)", plen,
                      g->max_new, c->max_T);
    if (c->arch == AL_ARCH_LLAMA && c->rope.type == AL_ROPE_LONGROPE && plen + g->max_new > c->rope.orig_max)
        return al_err(err, AL_EUNSUP,
                      "LongRoPE past the original context (%d tokens) re-encodes the sequence, which the "
                      "serving decoder does not do: at most %d tokens of prompt and completion",
                      c->rope.orig_max, c->rope.orig_max);
    for (int t = 0; t < plen; t++)
        if (prompt[t] < 0 || prompt[t] >= c->V)
            return al_err(err, AL_ERANGE, "token id %d outside the vocabulary (%d)", prompt[t], c->V);
    int slot = -1;
    for (int i = 0; i < d->max_seqs && slot < 0; i++)
        if (!d->seqs[i].used) slot = i;
    if (slot < 0) return al_err(err, AL_ENOSPC, "all %d decoding slots are busy", d->max_seqs);
    dseq *q = &d->seqs[slot];
    size_t cap = (size_t)(plen + (g->max_new > 0 ? g->max_new : 1));
    size_t n = (size_t)c->n_layers * cap * (size_t)c->NKV * c->HD;
    q->prompt = malloc((size_t)plen * sizeof *q->prompt);
    d->s.kseq[slot] = al_calloc(n, sizeof(float));
    d->s.vseq[slot] = al_calloc(n, sizeof(float));
    if (!q->prompt || !d->s.kseq[slot] || !d->s.vseq[slot]) {
        q->used = 1;
        al_decoder_remove(d, slot);
        return al_err(err, AL_ENOMEM, "out of memory for a KV cache of %zu MB", 2 * n * sizeof(float) >> 20);
    }
    memcpy(q->prompt, prompt, (size_t)plen * sizeof *prompt);
    d->s.tcap[slot] = (int)cap;
    q->used = 1;
    q->plen = plen;
    q->g = *g;
    /* no stop tokens may come as stop == NULL, which memcpy must not see */
    if (g->n_stop > 0) memcpy(q->stop, g->stop, (size_t)g->n_stop * sizeof *g->stop);
    q->g.stop = q->stop;
    al_rng_seed(&q->rng, seed);
    q->order = ++d->arrivals;
    return slot;
}

int al_decoder_step(al_decoder *d, al_dec_out *out, int max_out, char err[AL_ERRLEN]) {
    gen_state *s = &d->s;
    const al_model_config *c = &d->m->cfg;
    int R = 0, n_want = 0;
    /* one row per decoding sequence */
    for (int i = 0; i < d->max_seqs; i++) {
        dseq *q = &d->seqs[i];
        if (!q->used || q->done_prompt < q->plen) continue;
        s->ids[R] = q->last;
        s->pos[R] = q->plen + q->n_new - 1;
        s->seq[R] = i;
        d->want[n_want] = R;
        d->want_seq[n_want++] = i;
        R++;
    }
    /* then prompt chunks, oldest sequence first */
    for (;;) {
        int best = -1;
        for (int i = 0; i < d->max_seqs; i++) {
            dseq *q = &d->seqs[i];
            if (q->used && q->done_prompt < q->plen && (best < 0 || q->order < d->seqs[best].order)) best = i;
        }
        if (best < 0 || R >= s->R) break;
        dseq *q = &d->seqs[best];
        int take = q->plen - q->done_prompt;
        if (take > s->R - R) take = s->R - R;
        for (int t = 0; t < take; t++, R++) {
            s->ids[R] = q->prompt[q->done_prompt + t];
            s->pos[R] = q->done_prompt + t;
            s->seq[R] = best;
        }
        q->done_prompt += take;
        if (q->done_prompt == q->plen) {
            d->want[n_want] = R - 1;
            d->want_seq[n_want++] = best;
        }
        /* a partly prefilled sequence waits for the next step */
        if (q->done_prompt < q->plen) break;
    }
    d->last_rows = R;
    if (R == 0) return 0;
    if (n_want > max_out) return al_err(err, AL_EINVAL, "out has room for %d tokens, the step makes %d", max_out, n_want);
    al_gen_run_rows(s, R, d->want, n_want);
    for (int k = 0; k < n_want; k++) {
        int i = d->want_seq[k];
        dseq *q = &d->seqs[i];
        float lp = 0;
        int32_t tok = -1;
        int done = q->g.max_new <= 0;
        if (!done) {
            tok = al_gen_sample(s->logits + (size_t)k * c->V, c->V, &q->g, &q->rng, d->cs, &lp);
            q->last = tok;
            q->n_new++;
            for (int j = 0; j < q->g.n_stop; j++) done |= tok == q->g.stop[j];
            done |= q->n_new >= q->g.max_new;
        }
        out[k].slot = i;
        out[k].token = tok;
        out[k].logp = lp;
        out[k].done = done;
        if (done) al_decoder_remove(d, i);
    }
    return n_want;
}

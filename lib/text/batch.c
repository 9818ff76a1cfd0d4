/* Examples -> padded (B, T) arrays; SFT packing; length-grouped order.
 * See batch.h for the layouts. */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

void al_seq_deinit(al_seq *s) {
    if (!s) return;
    free(s->ids);
    free(s->mask);
    memset(s, 0, sizeof *s);
}

int al_seq_trained(const al_seq *s) {
    int k = 0;
    for (int i = 0; i < s->n; i++) k += s->mask[i] != 0;
    return k;
}

void al_example_deinit(al_example *e) {
    if (!e) return;
    al_seq_deinit(&e->seq[0]);
    al_seq_deinit(&e->seq[1]);
    free(e->reference);
    json_decref(e->row);
    memset(e, 0, sizeof *e);
}

int al_example_len(const al_example *e) {
    return e->seq[0].n > e->seq[1].n ? e->seq[0].n : e->seq[1].n;
}

int al_batch_init(al_batch *b, al_batch_kind kind, int max_rows, int max_T) {
    memset(b, 0, sizeof *b);
    if (max_rows < 1 || max_T < 1) return AL_EINVAL;
    size_t n = (size_t)max_rows * (size_t)max_T;
    /* Packed LM rows hold up to max_T examples each. */
    size_t n_ex = kind == AL_BATCH_LM ? n : (size_t)max_rows;
    if (n_ex > INT32_MAX) return AL_EINVAL;
    b->kind = kind;
    b->max_rows = max_rows;
    b->max_T = max_T;
    b->max_ex = (int)n_ex;
    b->ids = malloc(n * sizeof *b->ids);
    b->seg = malloc(n * sizeof *b->seg);
    b->pos = malloc(n * sizeof *b->pos);
    b->targets = malloc(n * sizeof *b->targets);
    b->mask = malloc(n);
    b->len = malloc((size_t)max_rows * sizeof *b->len);
    b->ex = malloc(n_ex * sizeof *b->ex);
    b->label = malloc(n_ex * sizeof *b->label);
    b->margin = malloc(n_ex * sizeof *b->margin);
    if (!b->ids || !b->seg || !b->pos || !b->targets || !b->mask || !b->len || !b->ex ||
        !b->label || !b->margin) {
        al_batch_deinit(b);
        return AL_ENOMEM;
    }
    return AL_OK;
}

void al_batch_deinit(al_batch *b) {
    if (!b) return;
    free(b->ids);
    free(b->seg);
    free(b->pos);
    free(b->targets);
    free(b->mask);
    free(b->len);
    free(b->ex);
    free(b->label);
    free(b->margin);
    memset(b, 0, sizeof *b);
}

al_tokens al_batch_tokens(const al_batch *b) {
    al_tokens t = {b->B, b->T, b->ids, b->seg, b->pos, b->targets};
    return t;
}

/* Copies seq s into row r at column c0 as example number k (seg value):
 * positions restart at 0, targets point at the next token of the same
 * example only. */
static void put_seq(al_batch *b, int r, int c0, const al_seq *s, int k) {
    size_t o = (size_t)r * (size_t)b->T + (size_t)c0;
    for (int t = 0; t < s->n; t++) {
        b->ids[o + t] = s->ids[t];
        b->seg[o + t] = k;
        b->pos[o + t] = t;
        b->mask[o + t] = s->mask[t] ? 1 : 0;
        b->targets[o + t] = (t + 1 < s->n && s->mask[t + 1]) ? s->ids[t + 1] : -1;
    }
}

/* Pads every row of the batch from len[r] to T. */
static void pad_rows(al_batch *b, int32_t pad_id) {
    for (int r = 0; r < b->B; r++) {
        size_t o = (size_t)r * (size_t)b->T;
        for (int t = b->len[r]; t < b->T; t++) {
            b->ids[o + t] = pad_id;
            b->seg[o + t] = 0;
            b->pos[o + t] = 0;
            b->mask[o + t] = 0;
            b->targets[o + t] = -1;
        }
    }
}

int al_batch_fill(al_batch *b, const al_example *ex, const int32_t *idx, int n,
                  int32_t pad_id, char err[AL_ERRLEN]) {
    int per = b->kind == AL_BATCH_PAIR ? 2 : 1;
    if (n < 1) return al_err(err, AL_EINVAL, "empty batch");
    if (n > b->max_ex || (size_t)n * per > (size_t)b->max_rows)
        return al_err(err, AL_ERANGE, "batch of %d examples exceeds the %d rows reserved", n,
                      b->max_rows / per);
    int T = 1;
    for (int i = 0; i < n; i++) {
        const al_example *e = &ex[idx[i]];
        for (int j = 0; j < per; j++) {
            if (e->seq[j].n > b->max_T)
                return al_err(err, AL_ERANGE,
                              "example from line %d has %d tokens, more than the %d reserved",
                              e->line, e->seq[j].n, b->max_T);
            if (e->seq[j].n > T) T = e->seq[j].n;
        }
    }
    b->B = n * per;
    b->T = T;
    b->n_ex = n;
    for (int i = 0; i < n; i++) {
        const al_example *e = &ex[idx[i]];
        b->ex[i] = idx[i];
        b->label[i] = e->label;
        b->margin[i] = e->margin;
        for (int j = 0; j < per; j++) {
            int r = j * n + i;
            put_seq(b, r, 0, &e->seq[j], 1);
            b->len[r] = e->seq[j].n;
        }
    }
    pad_rows(b, pad_id);
    return AL_OK;
}

int al_batch_fill_packed(al_batch *b, const al_example *ex, const al_pack *p, int r0,
                         int nr, int32_t pad_id, char err[AL_ERRLEN]) {
    if (nr < 1 || r0 < 0 || r0 + nr > p->n_rows)
        return al_err(err, AL_EINVAL, "rows %d..%d outside the plan's %d", r0, r0 + nr - 1,
                      p->n_rows);
    if (nr > b->max_rows)
        return al_err(err, AL_ERANGE, "%d packed rows exceed the %d reserved", nr, b->max_rows);
    int T = 1, n_ex = 0;
    for (int r = r0; r < r0 + nr; r++) {
        if (p->len[r] > b->max_T)
            return al_err(err, AL_ERANGE, "packed row of %d tokens exceeds the %d reserved",
                          p->len[r], b->max_T);
        if (p->len[r] > T) T = p->len[r];
        n_ex += p->start[r + 1] - p->start[r];
    }
    if (n_ex > b->max_ex) return al_err(err, AL_ERANGE, "too many packed examples");
    b->B = nr;
    b->T = T;
    b->n_ex = 0;
    for (int r = 0; r < nr; r++) {
        int c = 0, k = 0;
        for (int32_t it = p->start[r0 + r]; it < p->start[r0 + r + 1]; it++) {
            const al_example *e = &ex[p->items[it]];
            put_seq(b, r, c, &e->seq[0], ++k);
            c += e->seq[0].n;
            b->ex[b->n_ex] = p->items[it];
            b->label[b->n_ex] = e->label;
            b->margin[b->n_ex] = e->margin;
            b->n_ex++;
        }
        b->len[r] = c;
    }
    pad_rows(b, pad_id);
    return AL_OK;
}

/* ---- best-fit decreasing ---------------------------------------------- */

/* Max segment tree over free-space values 1..L: leaf v-1 holds v while some
 * row has exactly v tokens free. The leftmost leaf >= need is the best fit. */
typedef struct space_tree {
    int size;     /* leaves, a power of two >= L */
    int32_t *t;   /* (2 size) */
} space_tree;

static void tree_set(space_tree *st, int v, int32_t val) {
    int i = st->size + v - 1;
    st->t[i] = val;
    for (i >>= 1; i >= 1; i >>= 1) {
        int32_t a = st->t[2 * i], c = st->t[2 * i + 1];
        st->t[i] = a >= c ? a : c;
    }
}

static int32_t tree_search(const space_tree *st, int need) {
    int i = 1;
    while (i < st->size) i = st->t[2 * i] >= need ? 2 * i : 2 * i + 1;
    return st->t[i];
}

typedef struct len_idx { int32_t len, idx, order; } len_idx;

static int cmp_len_desc(const void *a, const void *b) {
    const len_idx *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

void al_pack_deinit(al_pack *p) {
    if (!p) return;
    free(p->start);
    free(p->items);
    free(p->len);
    memset(p, 0, sizeof *p);
}

int al_pack_bfd(const al_example *ex, const int32_t *idx, int n, int max_length,
                al_pack *p, char err[AL_ERRLEN]) {
    if (n < 0 || max_length < 1) return al_err(err, AL_EINVAL, "bad packing sizes");
    for (int i = 0; i < n; i++) {
        const al_seq *s = &ex[idx[i]].seq[0];
        if (s->n > max_length)
            return al_err(err, AL_ERANGE,
                          "example from line %d has %d tokens, more than max_length %d",
                          ex[idx[i]].line, s->n, max_length);
        if (s->n < 1)
            return al_err(err, AL_EINVAL, "example from line %d is empty", ex[idx[i]].line);
    }
    int rc = AL_ENOMEM;
    space_tree st = {1, NULL};
    while (st.size < max_length) st.size <<= 1;
    len_idx *li = malloc(((size_t)n + 1) * sizeof *li);
    int32_t *bin_of = malloc(((size_t)n + 1) * sizeof *bin_of);
    /* Rows with v tokens free form a FIFO list: head[v] .. tail[v] via next[]. */
    int32_t *head = malloc(((size_t)max_length + 1) * sizeof *head);
    int32_t *tail = malloc(((size_t)max_length + 1) * sizeof *tail);
    int32_t *next = malloc(((size_t)n + 1) * sizeof *next);
    int32_t *bin_len = malloc(((size_t)n + 1) * sizeof *bin_len);
    st.t = calloc(2 * (size_t)st.size, sizeof *st.t);
    al_pack out = {0};
    if (!li || !bin_of || !head || !tail || !next || !bin_len || !st.t) goto done;
    for (int v = 0; v <= max_length; v++) head[v] = tail[v] = -1;
    for (int i = 0; i < n; i++) li[i] = (len_idx){ex[idx[i]].seq[0].n, idx[i], i};
    qsort(li, (size_t)n, sizeof *li, cmp_len_desc);
    tree_set(&st, max_length, max_length);   /* a fresh row is always available */
    int n_bins = 0;
    for (int i = 0; i < n; i++) {
        int need = li[i].len;
        int space = tree_search(&st, need);
        int bin;
        if (space == max_length) {
            bin = n_bins++;
            bin_len[bin] = 0;
        } else {
            bin = head[space];
            head[space] = next[bin];
            if (head[space] < 0) {
                tail[space] = -1;
                tree_set(&st, space, 0);
            }
        }
        bin_of[i] = bin;
        bin_len[bin] += need;
        int left = space - need;
        if (left > 0) {
            next[bin] = -1;
            if (tail[left] >= 0) next[tail[left]] = bin;
            else head[left] = bin;
            tail[left] = bin;
            tree_set(&st, left, left);
        }
    }
    out.n_rows = n_bins;
    out.start = calloc((size_t)n_bins + 1, sizeof *out.start);
    out.items = malloc(((size_t)n + 1) * sizeof *out.items);
    out.len = malloc(((size_t)n_bins + 1) * sizeof *out.len);
    if (!out.start || !out.items || !out.len) {
        al_pack_deinit(&out);
        goto done;
    }
    for (int i = 0; i < n; i++) out.start[bin_of[i] + 1]++;
    for (int r = 0; r < n_bins; r++) {
        out.start[r + 1] += out.start[r];
        out.len[r] = bin_len[r];
        next[r] = out.start[r];   /* reused as a fill cursor */
    }
    for (int i = 0; i < n; i++) out.items[next[bin_of[i]]++] = li[i].idx;
    *p = out;
    rc = AL_OK;
done:
    free(li);
    free(bin_of);
    free(head);
    free(tail);
    free(next);
    free(bin_len);
    free(st.t);
    if (rc == AL_ENOMEM) al_err(err, rc, "out of memory packing %d examples", n);
    return rc;
}

/* ---- batch order -------------------------------------------------------- */

int al_batch_order(const int32_t *lengths, int n, int batch_size, int group_by_length,
                   uint64_t seed, int32_t *order) {
    if (n < 0 || batch_size < 1) return AL_EINVAL;
    if (n == 0) return AL_OK;
    len_idx *li = malloc((size_t)n * sizeof *li);
    if (!li) return AL_ENOMEM;
    al_rng rng;
    al_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) li[i] = (len_idx){lengths[i], i, i};
    for (int i = n - 1; i > 0; i--) {   /* Fisher-Yates */
        int j = (int)al_rng_below(&rng, (uint32_t)i + 1);
        len_idx t = li[i];
        li[i] = li[j];
        li[j] = t;
    }
    if (group_by_length) {
        /* transformers' get_length_grouped_indices: megabatches of
         * min(n / (4 batch_size), 50) batches, each sorted longest first;
         * the overall longest example moves to the very first batch so that
         * running out of memory happens at step one, not hours in. */
        long mult = (long)n / (4L * batch_size);
        if (mult > 50) mult = 50;
        if (mult < 1) mult = 1;
        long mb = mult * batch_size;
        int best_mb = 0;
        for (long s = 0; s < n; s += mb) {
            long e = s + mb < n ? s + mb : n;
            for (long i = s; i < e; i++) li[i].order = (int32_t)i;   /* stable ties */
            qsort(li + s, (size_t)(e - s), sizeof *li, cmp_len_desc);
            if (li[s].len > li[best_mb].len) best_mb = (int)s;
        }
        len_idx t = li[0];
        li[0] = li[best_mb];
        li[best_mb] = t;
    }
    for (int i = 0; i < n; i++) order[i] = li[i].idx;
    free(li);
    return AL_OK;
}

/* Batching: TRL's preference collator vector, padding that never hides the
 * real EOS, SFT packing (best-fit decreasing, reset positions, no target
 * across examples) and length-grouped order. */
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "text/batch.h"

/* An example from prompt ids and completion ids (completion trained). */
static al_seq mkseq(const int32_t *p, int np, const int32_t *c, int nc) {
    al_seq s = {0};
    s.n = np + nc;
    s.ids = malloc((size_t)(s.n + 1) * sizeof *s.ids);
    s.mask = calloc((size_t)s.n + 1, 1);
    for (int i = 0; i < np; i++) s.ids[i] = p[i];
    for (int i = 0; i < nc; i++) {
        s.ids[np + i] = c[i];
        s.mask[np + i] = 1;
    }
    return s;
}

static int row_eq(const int32_t *got, const int32_t *want, int n) {
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) return 0;
    return 1;
}

static int row_eq8(const uint8_t *got, const int32_t *want, int n) {
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) return 0;
    return 1;
}

/* TRL tests/test_dpo_trainer.py TestDataCollatorForPreference, with the
 * issue's vector: prompts [1,2,3]/[7,8], chosen [4,5]/[9], rejected
 * [6]/[10,11]. */
static void test_trl_preference_collator(void) {
    al_example ex[2];
    memset(ex, 0, sizeof ex);
    int32_t p0[] = {1, 2, 3}, c0[] = {4, 5}, r0[] = {6};
    int32_t p1[] = {7, 8}, c1[] = {9}, r1[] = {10, 11};
    ex[0].seq[0] = mkseq(p0, 3, c0, 2);
    ex[0].seq[1] = mkseq(p0, 3, r0, 1);
    ex[1].seq[0] = mkseq(p1, 2, c1, 1);
    ex[1].seq[1] = mkseq(p1, 2, r1, 2);
    ex[1].margin = 2.5f;
    al_batch b;
    T_OK(al_batch_init(&b, AL_BATCH_PAIR, 4, 8));
    int32_t idx[] = {0, 1};
    char err[AL_ERRLEN];
    T_OK(al_batch_fill(&b, ex, idx, 2, 0, err));
    T_EQ_INT(b.B, 4);
    T_EQ_INT(b.T, 5);
    T_EQ_INT(b.n_ex, 2);
    const int32_t ids[4][5] = {{1, 2, 3, 4, 5}, {7, 8, 9, 0, 0}, {1, 2, 3, 6, 0}, {7, 8, 10, 11, 0}};
    const int32_t mask[4][5] = {{0, 0, 0, 1, 1}, {0, 0, 1, 0, 0}, {0, 0, 0, 1, 0}, {0, 0, 1, 1, 0}};
    const int32_t seg[4][5] = {{1, 1, 1, 1, 1}, {1, 1, 1, 0, 0}, {1, 1, 1, 1, 0}, {1, 1, 1, 1, 0}};
    const int32_t tgt[4][5] = {{-1, -1, 4, 5, -1}, {-1, 9, -1, -1, -1},
                               {-1, -1, 6, -1, -1}, {-1, 10, 11, -1, -1}};
    for (int r = 0; r < 4; r++) {
        T_TRUE(row_eq(b.ids + r * b.T, ids[r], 5));
        T_TRUE(row_eq8(b.mask + r * b.T, mask[r], 5));
        T_TRUE(row_eq(b.seg + r * b.T, seg[r], 5));
        T_TRUE(row_eq(b.targets + r * b.T, tgt[r], 5));
    }
    T_EQ_INT(b.len[1], 3);
    T_NEAR(b.margin[1], 2.5, 0);
    T_EQ_INT(b.pos[3 * b.T + 3], 3);
    T_EQ_INT(b.pos[1 * b.T + 4], 0);
    al_tokens tk = al_batch_tokens(&b);
    T_EQ_INT(tk.B, 4);
    T_TRUE(tk.targets == b.targets && tk.seg == b.seg);
    /* Three examples do not fit four rows. */
    int32_t idx3[] = {0, 1, 0};
    T_EQ_INT(al_batch_fill(&b, ex, idx3, 3, 0, err), AL_ERANGE);
    al_batch_deinit(&b);
    al_batch_deinit(&b);   /* idempotent */
    al_example_deinit(&ex[0]);
    al_example_deinit(&ex[1]);
}

/* Pad = EOS: the real EOS stays a target because masks never look at ids. */
static void test_pad_is_eos(void) {
    const int32_t EOS = 256;
    al_example ex[2];
    memset(ex, 0, sizeof ex);
    int32_t p[] = {10, 11}, c[] = {12, EOS}, c2[] = {12, 13, 14, 15, EOS};
    ex[0].seq[0] = mkseq(p, 2, c, 2);
    ex[1].seq[0] = mkseq(p, 2, c2, 5);
    al_batch b;
    T_OK(al_batch_init(&b, AL_BATCH_LM, 2, 16));
    int32_t idx[] = {0, 1};
    T_OK(al_batch_fill(&b, ex, idx, 2, EOS, NULL));
    T_EQ_INT(b.T, 7);
    T_EQ_INT(b.targets[2], EOS);        /* row 0: 12 -> EOS trained */
    T_EQ_INT(b.targets[3], -1);         /* EOS is the last real token */
    for (int t = 4; t < 7; t++) {       /* padding: pad id, seg 0, no target */
        T_EQ_INT(b.ids[t], EOS);
        T_EQ_INT(b.seg[t], 0);
        T_EQ_INT(b.targets[t], -1);
    }
    T_EQ_INT(b.targets[b.T + 5], EOS);
    int eos_targets = 0;
    for (int i = 0; i < b.B * b.T; i++) eos_targets += b.targets[i] == EOS;
    T_EQ_INT(eos_targets, 2);           /* exactly one per completion */
    al_batch_deinit(&b);
    al_example_deinit(&ex[0]);
    al_example_deinit(&ex[1]);
}

static void make_lm(al_example *e, int n, int first_id) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = first_id + i;
    e->seq[0] = mkseq(ids, 0, ids, n);
    e->seq[0].mask[0] = 0;   /* the first token has nothing before it */
    free(ids);
}

static void test_pack_bfd(void) {
    /* lengths 5,4,3,3,2,1 into rows of 8, by hand:
     * 5 -> new row A (3 free); 4 -> new row B (4 free); 3 -> A (0 free);
     * 3 -> B (1 free); 2 -> new row C (6 free); 1 -> B (0 free). */
    int lens[6] = {3, 5, 1, 4, 2, 3};
    al_example ex[6];
    memset(ex, 0, sizeof ex);
    for (int i = 0; i < 6; i++) make_lm(&ex[i], lens[i], 100 * (i + 1));
    int32_t idx[6] = {0, 1, 2, 3, 4, 5};
    al_pack p;
    char err[AL_ERRLEN];
    T_OK(al_pack_bfd(ex, idx, 6, 8, &p, err));
    T_EQ_INT(p.n_rows, 3);
    /* row A: ex1 (5) + ex0 (3, first of the 3s); row B: ex3 (4) + ex5 (3) +
     * ex2 (1); row C: ex4 (2). */
    T_EQ_INT(p.start[1] - p.start[0], 2);
    T_EQ_INT(p.items[0], 1);
    T_EQ_INT(p.items[1], 0);
    T_EQ_INT(p.items[2], 3);
    T_EQ_INT(p.items[3], 5);
    T_EQ_INT(p.items[4], 2);
    T_EQ_INT(p.items[5], 4);
    T_EQ_INT(p.len[0], 8);
    T_EQ_INT(p.len[1], 8);
    T_EQ_INT(p.len[2], 2);

    al_batch b;
    T_OK(al_batch_init(&b, AL_BATCH_LM, 3, 8));
    T_OK(al_batch_fill_packed(&b, ex, &p, 0, 3, 257, err));
    T_EQ_INT(b.B, 3);
    T_EQ_INT(b.T, 8);
    T_EQ_INT(b.n_ex, 6);
    /* Row A: ids 200..204 then 100..102; seg 1x5 2x3; pos 0..4 0..2. */
    const int32_t segA[8] = {1, 1, 1, 1, 1, 2, 2, 2}, posA[8] = {0, 1, 2, 3, 4, 0, 1, 2};
    const int32_t tgtA[8] = {201, 202, 203, 204, -1, 101, 102, -1};
    T_TRUE(row_eq(b.seg, segA, 8));
    T_TRUE(row_eq(b.pos, posA, 8));
    T_TRUE(row_eq(b.targets, tgtA, 8));   /* 204 never predicts 100 */
    const int32_t segC[8] = {1, 1, 0, 0, 0, 0, 0, 0}, tgtC[8] = {501, -1, -1, -1, -1, -1, -1, -1};
    T_TRUE(row_eq(b.seg + 2 * 8, segC, 8));
    T_TRUE(row_eq(b.targets + 2 * 8, tgtC, 8));
    T_EQ_INT(b.ids[2 * 8 + 5], 257);
    /* Every example appears once. */
    int seen[6] = {0};
    for (int i = 0; i < b.n_ex; i++) seen[b.ex[i]]++;
    for (int i = 0; i < 6; i++) T_EQ_INT(seen[i], 1);
    /* A window of the plan. */
    T_OK(al_batch_fill_packed(&b, ex, &p, 2, 1, 257, err));
    T_EQ_INT(b.B, 1);
    T_EQ_INT(b.T, 2);
    T_EQ_INT(al_batch_fill_packed(&b, ex, &p, 2, 2, 257, err), AL_EINVAL);
    al_batch_deinit(&b);
    al_pack_deinit(&p);

    /* Longer than a row: an error, never a silent cut. */
    T_EQ_INT(al_pack_bfd(ex, idx, 6, 4, &p, err), AL_ERANGE);
    T_TRUE(strstr(err, "max_length 4") != NULL);
    for (int i = 0; i < 6; i++) al_example_deinit(&ex[i]);
}

static void test_pack_many(void) {
    /* 100k examples: every one placed once, rows full enough, fast. */
    const int n = 100000, L = 512;
    al_example *ex = calloc((size_t)n, sizeof *ex);
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    al_rng rng;
    al_rng_seed(&rng, 7);
    long total = 0;
    for (int i = 0; i < n; i++) {
        int len = 1 + (int)al_rng_below(&rng, 300);
        ex[i].seq[0].n = len;   /* lengths only: packing never reads ids */
        idx[i] = i;
        total += len;
    }
    al_pack p;
    double t0 = al_now();
    T_OK(al_pack_bfd(ex, idx, n, L, &p, NULL));
    double dt = al_now() - t0;
    printf("packed %d examples into %d rows of %d in %.3f s (fill %.3f)\n", n, p.n_rows, L, dt,
           (double)total / ((double)p.n_rows * L));
    T_TRUE(dt < 5.0);
    T_TRUE((double)total / ((double)p.n_rows * L) > 0.95);
    char *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int r = 0; r < p.n_rows; r++) {
        long sum = 0;
        for (int it = p.start[r]; it < p.start[r + 1]; it++) {
            sum += ex[p.items[it]].seq[0].n;
            if (seen[p.items[it]]++) ok = 0;
        }
        if (sum != p.len[r] || sum > L) ok = 0;
    }
    T_TRUE(ok);
    T_EQ_INT(p.start[p.n_rows], n);
    free(seen);
    al_pack_deinit(&p);
    free(ex);
    free(idx);
}

static void test_order(void) {
    const int n = 1000, bs = 8;
    int32_t *len = malloc(n * sizeof *len), *o1 = malloc(n * sizeof *o1),
            *o2 = malloc(n * sizeof *o2), *o3 = malloc(n * sizeof *o3);
    al_rng rng;
    al_rng_seed(&rng, 1);
    int longest = 0;
    for (int i = 0; i < n; i++) {
        len[i] = 1 + (int)al_rng_below(&rng, 1000);
        if (len[i] > len[longest]) longest = i;
    }
    T_OK(al_batch_order(len, n, bs, 1, 42, o1));
    T_OK(al_batch_order(len, n, bs, 1, 42, o2));
    T_OK(al_batch_order(len, n, bs, 1, 43, o3));
    T_TRUE(memcmp(o1, o2, n * sizeof *o1) == 0);   /* deterministic in the seed */
    T_TRUE(memcmp(o1, o3, n * sizeof *o1) != 0);
    char *seen = calloc(n, 1);
    int perm = 1;
    for (int i = 0; i < n; i++)
        if (o1[i] < 0 || o1[i] >= n || seen[o1[i]]++) perm = 0;
    T_TRUE(perm);
    T_EQ_INT(len[o1[0]], len[longest]);   /* the longest example comes first */
    /* Padding: grouped batches waste far less than a plain shuffle. */
    T_OK(al_batch_order(len, n, bs, 0, 42, o2));
    memset(seen, 0, n);
    perm = 1;
    for (int i = 0; i < n; i++)
        if (seen[o2[i]]++) perm = 0;
    T_TRUE(perm);
    long pad_g = 0, pad_r = 0;
    for (int s = 0; s < n; s += bs) {
        int mg = 0, mr = 0;
        for (int i = s; i < s + bs; i++) {
            if (len[o1[i]] > mg) mg = len[o1[i]];
            if (len[o2[i]] > mr) mr = len[o2[i]];
        }
        for (int i = s; i < s + bs; i++) {
            pad_g += mg - len[o1[i]];
            pad_r += mr - len[o2[i]];
        }
    }
    printf("padding: grouped %ld, shuffled %ld\n", pad_g, pad_r);
    T_TRUE(pad_g * 5 < pad_r);
    T_EQ_INT(al_batch_order(len, n, 0, 1, 1, o1), AL_EINVAL);
    T_OK(al_batch_order(len, 0, 4, 1, 1, o1));
    free(seen);
    free(len);
    free(o1);
    free(o2);
    free(o3);
}

static void test_init_errors(void) {
    al_batch b;
    T_EQ_INT(al_batch_init(&b, AL_BATCH_LM, 0, 8), AL_EINVAL);
    al_batch_deinit(&b);
    T_OK(al_batch_init(&b, AL_BATCH_LM, 1, 4));
    al_example ex[1];
    memset(ex, 0, sizeof ex);
    make_lm(&ex[0], 6, 1);
    int32_t idx[] = {0};
    char err[AL_ERRLEN];
    ex[0].line = 12;
    T_EQ_INT(al_batch_fill(&b, ex, idx, 1, 0, err), AL_ERANGE);
    T_TRUE(strstr(err, "line 12") != NULL);
    al_batch_deinit(&b);
    al_example_deinit(&ex[0]);
    T_EQ_INT(al_seq_trained(&ex[0].seq[0]), 0);
}

int main(void) {
    test_trl_preference_collator();
    test_pad_is_eos();
    test_pack_bfd();
    test_pack_many();
    test_order();
    test_init_errors();
    return t_done();
}

/* lib/dist and lib/dist/ddp: ctest runs this under
 * `mpirun --oversubscribe -np 2` (label mpi) and once alone (dist_solo): the
 * same checks hold for any world size, each rank checking what it can see.
 *
 *   collectives   sums, maxima, minima, flags, rc agreement, broadcast, gathers
 *   reducer       bucketed sums, all at once or sharded (reduce-scatter)
 *   ddp_grads     two ranks' halves of a batch, reduced, equal the gradients
 *                 of one process accumulating both halves; with overlap the
 *                 backward starts buckets itself
 *   zero1         a sharded optimizer's steps equal the plain data-parallel
 *                 ones, and its gathered moments equal theirs
 *   rl_global     RL's statistics over ranks: each rank's whole groups (and
 *                 rows) of a global batch get the advantages (GRPO's batch
 *                 scaling, PPO's whitening) one process computes over all of
 *                 it; an error on one rank reaches every rank with its reason */
#include "t.h"

#include "dist/ddp.h"
#include "dist/dist.h"
#include "model/model.h"
#include "train/rl.h"

static int R, S; /* rank, size */

static void test_collectives(void) {
    T_EQ_INT(S, al_dist_env_world());
    double x[3] = {R + 1.0, -(double)R, 10.0 * R};
    al_dist_sum(x, 3);
    T_NEAR(x[0], S * (S + 1) / 2.0, 0);
    T_NEAR(x[1], -(S * (S - 1) / 2.0), 0);
    double y[2] = {(double)R, (double)R};
    al_dist_max(y, 1);
    al_dist_min(y + 1, 1);
    T_NEAR(y[0], S - 1, 0);
    T_NEAR(y[1], 0, 0);
    T_EQ_INT(al_dist_any(R == S - 1 ? 2 : 0), 2);
    T_EQ_INT(al_dist_any(0), 0);
    T_EQ_INT(al_dist_agree_rc(R == S - 1 ? AL_EIO : AL_OK), AL_EIO);
    T_EQ_INT(al_dist_agree_rc(AL_OK), AL_OK);
    char msg[32];
    snprintf(msg, sizeof msg, "from %d", R);
    al_dist_bcast(msg, sizeof msg, S - 1);
    char want[32];
    snprintf(want, sizeof want, "from %d", S - 1);
    T_STR_EQ(msg, want);
    int mine = 100 + R, all[64];
    al_dist_allgather(&mine, sizeof mine, all);
    for (int r = 0; r < S; r++) T_EQ_INT(all[r], 100 + r);
    /* uneven gather: rank r sends r + 1 floats valued r */
    size_t counts[64], tot = 0;
    for (int r = 0; r < S; r++) tot += counts[r] = (size_t)r + 1;
    float send[64], recv[256];
    for (int k = 0; k <= R; k++) send[k] = (float)R;
    al_dist_gather_f32(send, counts, R == 0 ? recv : NULL);
    if (R == 0)
        for (size_t k = 0, r = 0, i = 0; k < tot; k++, i++) {
            if (i == counts[r]) r++, i = 0;
            T_NEAR(recv[k], (double)r, 0);
        }
    /* shards cover 0..n once, in rank order */
    size_t lo, hi, prev = 0;
    for (int r = 0; r < 3; r++) {
        al_dist_shard(10, r, 3, &lo, &hi);
        T_EQ_INT(lo, prev);
        T_EQ_INT(hi - lo, r == 0 ? 4 : 3);
        prev = hi;
    }
    float data[37];
    for (int k = 0; k < 37; k++) data[k] = -1;
    al_dist_shard(37, R, S, &lo, &hi);
    for (size_t k = lo; k < hi; k++) data[k] = (float)(k * 2);
    al_dist_allgather_shards(data, 37);
    int ok = 1;
    for (int k = 0; k < 37; k++) ok &= data[k] == (float)(k * 2);
    T_TRUE(ok);
}

static void test_reducer(int sharded) {
    enum { N = 1000 };
    static float d[N];
    size_t lo[3] = {617, 100, 0}, hi[3] = {N, 617, 100};
    char err[AL_ERRLEN];
    al_dist_reducer *red = al_dist_reducer_new(d, N, lo, hi, 3, sharded, err);
    T_TRUE(red != NULL);
    for (int round = 0; round < 2 && red; round++) {
        for (int k = 0; k < N; k++) d[k] = (float)((R + 1) * k * 0.5 + round);
        al_dist_reducer_start(red, 0);
        T_OK(al_dist_reducer_wait(red, err));
        size_t a = 0, b = N;
        if (sharded) al_dist_shard(N, R, S, &a, &b);
        int ok = 1;
        for (size_t k = a; k < b; k++) ok &= d[k] == (float)(S * (S + 1) / 2.0 * k * 0.5 + S * round);
        T_TRUE(ok);
    }
    long rounds;
    double bytes, wait_s, early;
    al_dist_reducer_stats(red, &rounds, &bytes, &wait_s, &early);
    T_EQ_INT(rounds, S > 1 ? 2 : 0);
    if (S > 1) T_NEAR(bytes, N * sizeof(float), 0);
    al_dist_reducer_free(red);
}

/* ---- a tiny model ----------------------------------------------------------- */

enum { B = 4, T = 6 };

static al_model *tiny(int lora) {
    al_model_config c;
    al_config_default(&c, AL_ARCH_GPT2);
    c.n_layers = 3;
    c.C = 16;
    c.NH = 2;
    c.NKV = 2;
    c.HD = 8;
    c.FF = 32;
    c.V = 23;
    c.max_T = 16;
    char err[AL_ERRLEN];
    al_lora_cfg lc = {.r = 2, .alpha = 4, .targets = "c_attn,c_proj"};
    al_model *m = al_model_new(&c, lora ? &lc : NULL, err);
    AL_ASSERT(m);
    al_model_init(m, 7);
    if (lora) {
        /* nonzero B so every adapter has a gradient */
        int np;
        al_param *ps = al_model_params(m, &np);
        for (int i = 0; i < np; i++)
            if (ps[i].lora)
                for (size_t k = 0; k < ps[i].n; k++) ps[i].w[k] = 0.01f * (float)((k * 7 + (size_t)i) % 11) - 0.05f;
    }
    AL_ASSERT(al_model_reserve(m, B, T, 0, err) == AL_OK);
    return m;
}

static int32_t ids[B * T], tgt[B * T];

static void batch_init(void) {
    for (int k = 0; k < B * T; k++) ids[k] = (int32_t)((k * 5 + 3) % 23);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T && t > 0 ? ids[b * T + t + 1] : -1;
}

/* Forward and backward of rows [r0, r0 + n), the loss the mean NLL over the
 * whole batch's scored tokens (the global denominator). */
static void fwd_bwd(al_model *m, int r0, int n) {
    float logp[B * T], dlogp[B * T];
    double scored = 0;
    for (int k = 0; k < B * T; k++) scored += tgt[k] >= 0;
    al_tokens in = {.B = n, .T = T, .ids = ids + r0 * T, .targets = tgt + r0 * T};
    al_fwd f = {.logp = logp};
    AL_ASSERT(al_model_forward(m, &in, &f) == AL_OK);
    for (int k = 0; k < n * T; k++) dlogp[k] = in.targets[k] >= 0 ? (float)(-1.0 / scored) : 0;
    AL_ASSERT(al_model_backward(m, &in, dlogp, NULL, NULL) == AL_OK);
}

/* Max |a - b| over the trainable gradients, relative to max |b|. */
static double grad_diff(al_model *a, al_model *b) {
    int na, nb;
    al_param *pa = al_model_params(a, &na), *pb = al_model_params(b, &nb);
    double d = 0, mx = 0;
    for (int i = 0; i < na; i++)
        for (size_t k = 0; pa[i].g && k < pa[i].n; k++) {
            d = fmax(d, fabs(pa[i].g[k] - pb[i].g[k]));
            mx = fmax(mx, fabs(pb[i].g[k]));
        }
    return d / (mx > 0 ? mx : 1);
}

static double weight_diff(al_model *a, al_model *b) {
    int na, nb;
    al_param *pa = al_model_params(a, &na), *pb = al_model_params(b, &nb);
    double d = 0;
    for (int i = 0; i < na; i++)
        for (size_t k = 0; k < pa[i].n; k++) d = fmax(d, fabs(pa[i].w[k] - pb[i].w[k]));
    return d;
}

static void test_ddp_grads(int lora, int overlap) {
    al_model *dp = tiny(lora), *one = tiny(lora);
    al_ddp *d = NULL;
    char err[AL_ERRLEN];
    al_ddp_cfg cfg = {.bucket_mb = 0.002, .overlap = overlap}; /* ~500 floats: many buckets */
    T_OK(al_ddp_new(&d, dp, &cfg, err));
    T_TRUE((d != NULL) == (S > 1));
    /* one process: micro-batches of B / S rows, accumulated */
    int per = B / S;
    al_model_zero_grad(one);
    for (int r = 0; r < S; r++) fwd_bwd(one, r * per, per);
    /* this rank: its micro-batch, then the reduction */
    al_model_zero_grad(dp);
    al_ddp_arm(d);
    fwd_bwd(dp, R * per, per);
    T_OK(al_ddp_reduce(d, err));
    T_NEAR(grad_diff(dp, one), 0, 1e-6);
    float s1, s2;
    double n1 = al_ddp_clip_grad_norm(d, dp, 0, &s1), n2 = al_clip_grad_norm(one, 0, &s2);
    T_TRUE(s1 == 1.0f && s2 == 1.0f);
    T_NEAR(n1, n2, 1e-6 * n2);
    long rounds;
    double bytes, wait_s, early;
    al_ddp_stats(d, &rounds, &bytes, &wait_s, &early);
    if (S > 1) {
        T_EQ_INT(rounds, 1);
        T_NEAR(bytes, al_model_num_params(dp, 1) * sizeof(float), 0);
        /* with overlap the backward started most buckets; without, none */
        T_TRUE(overlap ? early > 0.5 : early == 0);
    }
    al_ddp_free(d);
    al_model_free(dp);
    al_model_free(one);
}

static void test_zero1(int lora) {
    al_model *plain = tiny(lora), *z = tiny(lora);
    al_ddp *dp = NULL, *dz = NULL;
    char err[AL_ERRLEN];
    al_ddp_cfg cp = {.bucket_mb = 0.003, .overlap = 1}, cz = cp;
    cz.shard_optimizer = 1;
    T_OK(al_ddp_new(&dp, plain, &cp, err));
    T_OK(al_ddp_new(&dz, z, &cz, err));
    al_adamw op, oz;
    al_adamw_cfg oc;
    al_adamw_defaults(&oc);
    oc.lr = 1e-2f;
    oc.weight_decay = 0.1f;
    T_OK(al_ddp_adamw_init(dp, &op, &oc, plain));
    T_OK(al_ddp_adamw_init(dz, &oz, &oc, z));
    size_t n = al_model_num_params(z, 1);
    /* the sharded optimizer holds 1/S of the moments */
    T_TRUE(oz.n <= n / (size_t)S + 1);
    int per = B / S;
    for (int step = 0; step < 3; step++) {
        al_model *ms[2] = {plain, z};
        al_ddp *ds[2] = {dp, dz};
        al_adamw *os[2] = {&op, &oz};
        for (int k = 0; k < 2; k++) {
            al_model_zero_grad(ms[k]);
            al_ddp_arm(ds[k]);
            fwd_bwd(ms[k], R * per, per);
            T_OK(al_ddp_reduce(ds[k], err));
            float gscale;
            al_ddp_clip_grad_norm(ds[k], ms[k], 0.5, &gscale);
            al_ddp_adamw_step(ds[k], os[k], ms[k], 1e-2f, gscale);
        }
        T_NEAR(weight_diff(plain, z), 0, 1e-6);
    }
    float *mm, *vv;
    size_t nm;
    T_OK(al_ddp_moments_gather(dz, &oz, &mm, &vv, &nm, err));
    if (R == 0) {
        T_EQ_INT(nm, n);
        double dm = 0;
        for (size_t k = 0; k < n; k++) dm = fmax(dm, fabs(mm[k] - op.m[k]) + fabs(vv[k] - op.v[k]));
        T_NEAR(dm, 0, 1e-7);
    } else {
        T_TRUE(S == 1 || mm == NULL);
    }
    al_ddp_moments_release(&oz, mm, vv);
    al_adamw_deinit(&op);
    al_adamw_deinit(&oz);
    al_ddp_free(dp);
    al_ddp_free(dz);
    al_model_free(plain);
    al_model_free(z);
}

/* ---- RL's global statistics ---------------------------------------------------- */

static void test_rl_global(void) {
    enum { PG = 3, G = 4, RT = 2, TT = 5 }; /* per rank: groups of G; rows of TT positions */
    int n = PG * G, ng = S * n;
    float all[64 * PG * G], one[64 * PG * G], mine[PG * G];
    for (int i = 0; i < ng; i++) all[i] = (float)((i * 37 + 11) % 17) * 0.25f - 1.0f;
    static const int scales[] = {AL_SCALE_GROUP, AL_SCALE_BATCH, AL_SCALE_NONE};
    for (int s = 0; s < 3; s++) {
        /* one process: every rank's groups, this rank's are groups R*PG .. */
        int z1 = al_rl_group_adv(one, all, S * PG, G, scales[s]);
        int zr = al_rl_group_adv_global(mine, all + R * n, PG, G, scales[s]);
        double d = 0;
        for (int i = 0; i < n; i++) d = fmax(d, fabs(mine[i] - one[R * n + i]));
        T_NEAR(d, 0, 1e-6);
        /* zero-spread groups: this rank's count, summed, is the batch's */
        double zs = zr;
        al_dist_sum(&zs, 1);
        T_NEAR(zs, z1, 0);
    }
    /* PPO's whitening over every rank's scored positions, shifted or not */
    float x[64 * RT * TT], w1[64 * RT * TT], wr[RT * TT];
    int32_t tg[64 * RT * TT];
    int nt = S * RT * TT;
    for (int i = 0; i < nt; i++) {
        x[i] = (float)((i * 13 + 5) % 11) * 0.5f - 2.0f;
        tg[i] = (i * 7) % 5 == 0 ? -1 : 3; /* some positions unscored */
    }
    for (int shift = 0; shift < 2; shift++) {
        memcpy(w1, x, (size_t)nt * sizeof *x);
        al_rl_whiten(w1, tg, S * RT, TT, shift);
        memcpy(wr, x + R * RT * TT, sizeof wr);
        al_rl_whiten_global(wr, tg + R * RT * TT, RT, TT, shift);
        double d = 0;
        for (int i = 0; i < RT * TT; i++) d = fmax(d, fabs(wr[i] - w1[R * RT * TT + i]));
        T_NEAR(d, 0, 1e-6);
    }
    /* an error on the last rank alone: every rank gets its code, its field
     * (the job's field at fault, the API's param) and its reason, naming
     * the rank */
    al_error err = {"", ""};
    int rc = R == S - 1 ? AL_FAIL(&err, AL_EFORMAT, "training_files[%d]", "bad row %d", 1, 7) : AL_OK;
    T_EQ_INT(al_dist_agree_err(rc, &err), AL_EFORMAT);
    char want[AL_ERRLEN];
    if (S == 1 || R == S - 1) snprintf(want, sizeof want, "training_files[1]: bad row 7");
    else snprintf(want, sizeof want, "rank %d: training_files[1]: bad row 7", S - 1);
    T_STR_EQ(err.msg, want);
    T_STR_EQ(err.field, "training_files[1]");
    T_EQ_INT(al_dist_agree_err(AL_OK, &err), AL_OK);
    /* rank 0's own failure is said as it is; one with no field names none */
    al_error e0 = {"stale", ""};
    rc = R == 0 ? al_failf(&e0, AL_EIO, "disk full") : AL_OK;
    T_EQ_INT(al_dist_agree_err(rc, &e0), AL_EIO);
    T_STR_EQ(e0.msg, "disk full");
    T_STR_EQ(e0.field, "");
}

int main(void) {
    char err[AL_ERRLEN];
    if (al_dist_init(err)) {
        fprintf(stderr, "al_dist_init: %s\n", err);
        return 1;
    }
    R = al_dist_rank();
    S = al_dist_size();
    batch_init();
    test_collectives();
    test_reducer(0);
    test_reducer(1);
    test_ddp_grads(0, 1);
    test_ddp_grads(0, 0);
    test_ddp_grads(1, 1);
    test_zero1(0);
    test_zero1(1);
    test_rl_global();
    int rc = t_done();
    /* a failure on any rank fails the test on every rank */
    rc = al_dist_agree_rc(-rc) ? 1 : 0;
    al_dist_finalize();
    return rc;
}

/* Generation with a KV cache.
 *
 * Inference runs on "rows": each row is one token of one sequence at one
 * position. Prefill sends every prompt token of every sequence as rows in a
 * single pass; each decode step sends one row per unfinished sequence. A row
 * writes its key and value into its sequence's cache, then attends over the
 * cache up to its own position, so prompts of different lengths need no
 * padding. The cache and scratch are allocated per call (outside training
 * steps). Shares the weights, kernels and LoRA path of the training forward. */
#include "model_impl.h"
#include "gen_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../compute/ops.h"
#include "../compute/pool.h"


typedef struct attn_job {
    gen_state *s;
    int layer, R;
    al_attn_opts o;
} attn_job;

static void attn_rows(void *ctx, int tid, int nthreads) {
    attn_job *j = ctx;
    gen_state *s = j->s;
    const al_model_config *c = &s->m->cfg;
    int NH = c->NH, HD = c->HD, KVD = c->NKV * HD, grp = c->NH / c->NKV;
    float scale = j->o.scale > 0 ? j->o.scale : 1.0f / sqrtf((float)HD), cap = j->o.softcap;
    int win = j->o.window;
    float *sc = s->scores + (size_t)tid * s->Tmax;
    long lo, hi;
    al_split((long)j->R * NH, nthreads, tid, &lo, &hi);
    for (long w = lo; w < hi; w++) {
        int r = (int)(w / NH), h = (int)(w % NH), g = h / grp;
        int b = s->seq[r], p = s->pos[r];
        size_t layer_off = (size_t)j->layer * s->tcap[b] * KVD;
        const float *q = s->qkv + (size_t)r * s->m->QKV + (size_t)h * HD;
        const float *K = s->kseq[b] + layer_off + (size_t)g * HD;
        const float *Vv = s->vseq[b] + layer_off + (size_t)g * HD;
        /* keys in the window: i - j < window */
        int t0 = win > 0 && p - win + 1 > 0 ? p - win + 1 : 0;
        float mx = -INFINITY;
        int t = t0;
        /* eight keys at a time: eight independent sums in flight instead
         * of one chain of dependent additions; each key's sum is the same
         * sequence of operations (and bits) as the one-key loop below */
        for (; t + 8 <= p + 1; t += 8) {
            const float *k = K + (size_t)t * KVD;
            float d[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int e = 0; e < HD; e++)
                for (int i = 0; i < 8; i++) d[i] += q[e] * k[(size_t)i * KVD + e];
            for (int i = 0; i < 8; i++) sc[t + i] = d[i] * scale;
        }
        for (; t <= p; t++) {
            const float *k = K + (size_t)t * KVD;
            float d = 0;
            for (int e = 0; e < HD; e++) d += q[e] * k[e];
            sc[t] = d * scale;
        }
        for (t = t0; t <= p; t++) {
            if (cap > 0) sc[t] = tanhf(sc[t] / cap) * cap;
            if (sc[t] > mx) mx = sc[t];
        }
        float sum = 0;
        for (t = t0; t <= p; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        float inv = 1.0f / sum, *o = s->atty + (size_t)r * NH * HD + (size_t)h * HD;
        for (int e = 0; e < HD; e++) o[e] = 0;
        /* four values a pass: o + p0 v0 + p1 v1 + ... adds them in order */
        for (t = t0; t + 4 <= p + 1; t += 4) {
            const float *v0 = Vv + (size_t)t * KVD, *v1 = v0 + KVD, *v2 = v1 + KVD, *v3 = v2 + KVD;
            float p0 = sc[t] * inv, p1 = sc[t + 1] * inv, p2 = sc[t + 2] * inv, p3 = sc[t + 3] * inv;
            for (int e = 0; e < HD; e++) o[e] = o[e] + p0 * v0[e] + p1 * v1[e] + p2 * v2[e] + p3 * v3[e];
        }
        for (; t <= p; t++) {
            const float *v = Vv + (size_t)t * KVD;
            float pt = sc[t] * inv;
            for (int e = 0; e < HD; e++) o[e] += pt * v[e];
        }
    }
}


/* Runs R rows through the model; writes logits for the rows listed in
 * want[0..n_want) into s->logits (row i of logits for want[i]). */
void al_gen_run_rows(gen_state *s, int R, const int *want, int n_want) {
    al_model *m = s->m;
    const al_model_config *c = &m->cfg;
    int C = c->C, HD = c->HD, KVD = c->NKV * HD, AH = c->NH * HD;
    size_t RC = (size_t)R * C;
    int32_t pmax = 0;
    for (int r = 0; r < R; r++) pmax = s->pos[r] > pmax ? s->pos[r] : pmax;
    al_model_rope_prepare(m, (int)pmax + 1);
    al_model_embed(m, s->x, s->ids, s->pos, R);
    for (int l = 0; l < c->n_layers; l++) {
        const al_layer *ly = &m->layers[l];
        const float *xin = s->x;
        if (ly->ln1_w >= 0) {
            al_model_norm(m, s->ln, s->mean, s->rstd, s->x, ly->ln1_w, ly->ln1_b, R);
            xin = s->ln;
        }
        al_linear_forward(m, l, LIN_QKV, s->qkv, xin, s->lora_t, s->s16, R);
        float *k = s->qkv + AH, *v = k + KVD;
        al_layer_qk_forward(m, l, s->qkv, s->qk_raw, NULL, s->pos, R);
        for (int r = 0; r < R; r++) {
            int b = s->seq[r];
            size_t at = ((size_t)l * s->tcap[b] + (size_t)s->pos[r]) * KVD;
            memcpy(s->kseq[b] + at, k + (size_t)r * m->QKV, (size_t)KVD * sizeof(float));
            memcpy(s->vseq[b] + at, v + (size_t)r * m->QKV, (size_t)KVD * sizeof(float));
        }
        attn_job j = {.s = s, .layer = l, .R = R};
        al_layer_attn_opts(m, l, &j.o);
        al_pool_run(attn_rows, &j);
        al_linear_forward(m, l, LIN_O, s->tmp, s->atty, s->lora_t, s->s16, R);
        al_layer_residual(m, l, 0, s->y, s->x, s->tmp, NULL, R);
        memcpy(s->x, s->y, RC * sizeof(float));
        const float *min = s->x;
        if (ly->ln2_w >= 0) {
            al_model_norm(m, s->ln, s->mean, s->rstd, s->x, ly->ln2_w, ly->ln2_b, R);
            min = s->ln;
        }
        al_linear_forward(m, l, LIN_UP, s->h1, min, s->lora_t, s->s16, R);
        al_layer_act(m, s->h2, s->h1, NULL, R);
        al_linear_forward(m, l, LIN_DOWN, s->tmp, s->h2, s->lora_t, s->s16, R);
        al_layer_residual(m, l, 1, s->y, s->x, s->tmp, NULL, R);
        memcpy(s->x, s->y, RC * sizeof(float));
    }
    /* final norm only on the rows that need logits, gathered into ln */
    for (int i = 0; i < n_want; i++)
        memcpy(s->ln + (size_t)i * C, s->x + (size_t)want[i] * C, (size_t)C * sizeof(float));
    al_model_norm(m, s->tmp, s->mean, s->rstd, s->ln, m->lnf_w, m->lnf_b, n_want);
    if (m->bf16) al_matmul_forward_bf16(s->logits, s->tmp, PH(m, m->head), NULL, n_want, C, c->V, s->s16);
    else al_matmul_forward(s->logits, s->tmp, PW(m, m->head), NULL, n_want, C, c->V);
    size_t nz = (size_t)n_want * c->V;
    if (c->final_softcap > 0) /* Gemma: logits / cap, tanh, * cap */
        for (size_t i = 0; i < nz; i++)
            s->logits[i] = tanhf(s->logits[i] / c->final_softcap) * c->final_softcap;
    if (c->logits_scaling > 0 && c->logits_scaling != 1.0f) /* Granite */
        for (size_t i = 0; i < nz; i++) s->logits[i] /= c->logits_scaling;
}

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->z != y->z) return x->z > y->z ? -1 : 1;
    return x->i - y->i;
}

/* Picks the next token from one row of logits; *logp receives its log-prob
 * under softmax(logits / temperature) (untempered when greedy). logp NULL:
 * not wanted, and the normaliser over the vocabulary (V exp() in double on
 * one thread: 0.3 ms, about 3 % of a GPT-2 token decoded at batch 1 on 2
 * cores) is not computed. */
int al_gen_sample(const float *logits, int V, const al_gen_cfg *g, al_rng *rng, cand *cs, float *logp) {
    float T = g->temperature > 0 ? g->temperature : 1.0f;
    float mx = -INFINITY;
    int arg = 0;
    for (int v = 0; v < V; v++)
        if (logits[v] > mx) { mx = logits[v]; arg = v; }
    double lse = 0;
    if (logp) {
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)(logits[v] - mx) / T);
        lse = log(sum);
    }
    int tok = arg;
    if (g->temperature > 0) {
        int n = V;
        for (int v = 0; v < V; v++) { cs[v].z = logits[v] / T; cs[v].i = v; }
        int filter = (g->top_k > 0 && g->top_k < V) || (g->top_p > 0 && g->top_p < 1);
        if (filter) {
            qsort(cs, (size_t)V, sizeof *cs, cand_desc);
            if (g->top_k > 0 && g->top_k < n) n = g->top_k;
        }
        float zmax = filter ? cs[0].z : mx / T;
        double tot = 0;
        for (int i = 0; i < n; i++) tot += exp((double)(cs[i].z - zmax));
        if (g->top_p > 0 && g->top_p < 1) {
            /* keep tokens whose strictly-larger mass is below top_p (HF's TopP) */
            double cum = 0;
            int keep = 0;
            for (int i = 0; i < n; i++) {
                if (i > 0 && cum >= g->top_p) break;
                cum += exp((double)(cs[i].z - zmax)) / tot;
                keep++;
            }
            n = keep;
            tot = 0;
            for (int i = 0; i < n; i++) tot += exp((double)(cs[i].z - zmax));
        }
        double u = (double)al_rng_uniform(rng) * tot, acc = 0;
        tok = cs[n - 1].i;
        for (int i = 0; i < n; i++) {
            acc += exp((double)(cs[i].z - zmax));
            if (u < acc) { tok = cs[i].i; break; }
        }
    }
    if (logp) *logp = (float)((double)(logits[tok] - mx) / T - lse);
    return tok;
}

int al_gen_check(const al_gen_cfg *g, char err[AL_ERRLEN]) {
    if (g->max_new < 0) return al_err(err, AL_EINVAL, "max_new_tokens must be >= 0");
    if (g->temperature < 0) return al_err(err, AL_EINVAL, "temperature must be >= 0");
    if (g->top_p < 0 || g->top_p > 1) return al_err(err, AL_EINVAL, "top_p must be in [0, 1]");
    if (g->top_k < 0) return al_err(err, AL_EINVAL, "top_k must be >= 0");
    if (g->n_stop < 0 || (g->n_stop > 0 && !g->stop)) return al_err(err, AL_EINVAL, "bad stop token list");
    return AL_OK;
}

int al_gen_scratch(gen_state *s, int n_logits) {
    al_model *m = s->m;
    const al_model_config *c = &m->cfg;
    s->nthreads = al_pool_threads();
    size_t R = (size_t)s->R, C = (size_t)c->C;
    int max_ad = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < LIN_COUNT; j++)
            if (m->layers[l].lin[j].n_lora > max_ad) max_ad = m->layers[l].lin[j].n_lora;
    size_t r = (size_t)(m->lora_cfg.r ? m->lora_cfg.r : 1);
    size_t QK = (size_t)(c->NH + c->NKV) * c->HD;
    size_t scratch = R * C * 4 + R * 2 + R * (size_t)m->QKV + R * QK + R * (size_t)c->NH * c->HD +
                     R * (size_t)m->UPW + R * (size_t)c->FF + R * r * (size_t)(max_ad ? max_ad : 1) +
                     (size_t)s->nthreads * s->Tmax;
    s->x = al_calloc(scratch, sizeof(float));
    s->logits = al_calloc((size_t)n_logits * c->V, sizeof(float));
    s->ids = calloc(R, sizeof(int32_t));
    s->pos = calloc(R, sizeof(int32_t));
    s->seq = calloc(R, sizeof(int32_t));
    if (m->bf16) { /* the rounded operands of the products */
        size_t n16 = al_model_lin_scratch16(m, R);
        if (n16 < (size_t)n_logits * (C + 1)) n16 = (size_t)n_logits * (C + 1);
        s->s16 = al_calloc(n16, sizeof(uint16_t));
    }
    if (!s->x || !s->logits || !s->ids || !s->pos || !s->seq || (m->bf16 && !s->s16)) return AL_ENOMEM;
    float *p = s->x + R * C;
    s->ln = p; p += R * C;
    s->tmp = p; p += R * C;
    s->y = p; p += R * C;
    s->qk_raw = p; p += R * QK;
    s->mean = p; p += R;
    s->rstd = p; p += R;
    s->qkv = p; p += R * (size_t)m->QKV;
    s->atty = p; p += R * (size_t)c->NH * c->HD;
    s->h1 = p; p += R * (size_t)m->UPW;
    s->h2 = p; p += R * (size_t)c->FF;
    s->lora_t = p; p += R * r * (size_t)(max_ad ? max_ad : 1);
    s->scores = p;
    return AL_OK;
}

static void gen_free(gen_state *s) {
    al_free(s->kc);
    al_free(s->vc);
    free(s->kseq);
    free(s->vseq);
    free(s->tcap);
    al_free(s->x);
    free(s->ids);
    free(s->pos);
    free(s->seq);
    al_free(s->logits);
    al_free(s->s16);
}

int al_generate(al_model *m, const int32_t *const *prompts, const int *plen, int B,
                const al_gen_cfg *g, al_rng *rng, int32_t *out_ids, float *out_logp,
                int *out_len, char err[AL_ERRLEN]) {
    const al_model_config *c = &m->cfg;
    if (m->head < 0) return al_err(err, AL_EINVAL, "model has no language-model head");
    if (B <= 0) return al_err(err, AL_EINVAL, "no prompts");
    int rc = al_gen_check(g, err);
    if (rc) return rc;
    int maxp = 0;
    long total = 0;
    for (int b = 0; b < B; b++) {
        if (plen[b] < 1) return al_err(err, AL_EINVAL, "prompt %d is empty", b);
        for (int t = 0; t < plen[b]; t++)
            if (prompts[b][t] < 0 || prompts[b][t] >= c->V)
                return al_err(err, AL_ERANGE, "prompt %d: token id %d outside the vocabulary (%d)",
                              b, prompts[b][t], c->V);
        if (plen[b] > maxp) maxp = plen[b];
        total += plen[b];
    }
    if (maxp + g->max_new > c->max_T)
        return al_err(err, AL_ERANGE, "prompt (%d) + max_new_tokens (%d) exceeds the context (%d)",
                      maxp, g->max_new, c->max_T);
    gen_state s = {0};
    s.m = m;
    s.B = B;
    s.Tmax = maxp + g->max_new;
    s.R = (int)(total > B ? total : B);
    /* LongRoPE switches to its long factors once a pass is longer than the
     * original context, and transformers' Phi-3 then drops the cache and
     * re-encodes the whole sequence (prepare_inputs_for_generation): a
     * generation that crosses it re-runs every live sequence's tokens once */
    int longrope = c->arch == AL_ARCH_LLAMA && c->rope.type == AL_ROPE_LONGROPE &&
                   maxp + g->max_new > c->rope.orig_max;
    if (longrope) s.R = (int)(total + (long)B * g->max_new);
    s.nthreads = al_pool_threads();
    size_t KVD = (size_t)c->NKV * c->HD;
    size_t cache = (size_t)c->n_layers * B * s.Tmax * KVD;
    s.kc = al_calloc(cache, sizeof(float));
    s.vc = al_calloc(cache, sizeof(float));
    s.kseq = calloc((size_t)B, sizeof *s.kseq);
    s.vseq = calloc((size_t)B, sizeof *s.vseq);
    s.tcap = calloc((size_t)B, sizeof *s.tcap);
    cand *cs = calloc((size_t)c->V, sizeof *cs);
    int *want = calloc((size_t)B, sizeof *want), *live = calloc((size_t)B, sizeof *live);
    if (al_gen_scratch(&s, B) || !s.kc || !s.vc || !s.kseq || !s.vseq || !s.tcap || !cs || !want || !live) {
        gen_free(&s);
        free(cs);
        free(want);
        free(live);
        return al_err(err, AL_ENOMEM, "out of memory for the KV cache (%zu MB)",
                      2 * cache * sizeof(float) >> 20);
    }
    for (int b = 0; b < B; b++) {
        s.kseq[b] = s.kc + (size_t)b * c->n_layers * s.Tmax * KVD;
        s.vseq[b] = s.vc + (size_t)b * c->n_layers * s.Tmax * KVD;
        s.tcap[b] = s.Tmax;
    }

    al_model_bf16_sync(m);
    /* prefill */
    int n = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < plen[b]; t++) {
            s.ids[n] = prompts[b][t];
            s.pos[n] = t;
            s.seq[n] = b;
            n++;
        }
        want[b] = n - 1;
        live[b] = b;
        out_len[b] = 0;
    }
    int n_live = B;
    al_gen_run_rows(&s, n, want, B);
    for (int step = 0; step < g->max_new && n_live > 0; step++) {
        int k = 0;
        for (int i = 0; i < n_live; i++) {
            int b = live[i];
            float lp = 0;
            int tok = al_gen_sample(s.logits + (size_t)i * c->V, c->V, g, rng, cs, out_logp ? &lp : NULL);
            out_ids[(size_t)b * g->max_new + step] = tok;
            if (out_logp) out_logp[(size_t)b * g->max_new + step] = lp;
            out_len[b] = step + 1;
            int stop = 0;
            for (int j = 0; j < g->n_stop; j++) stop |= tok == g->stop[j];
            if (stop || step + 1 == g->max_new) continue;
            s.ids[k] = tok;
            s.pos[k] = plen[b] + step;
            s.seq[k] = b;
            want[k] = k;
            live[k] = b;
            k++;
        }
        n_live = k;
        if (!n_live) break;
        int32_t pmax = 0;
        for (int i = 0; i < n_live; i++) pmax = s.pos[i] > pmax ? s.pos[i] : pmax;
        if (longrope && al_rope_key(c, (int)pmax + 1) != m->rope_key) {
            /* the whole of each live sequence, its last token's logits */
            int nr = 0;
            for (int i = 0; i < n_live; i++) {
                int b = live[i];
                for (int t = 0; t <= plen[b] + step; t++) {
                    s.ids[nr] = t < plen[b] ? prompts[b][t] : out_ids[(size_t)b * g->max_new + t - plen[b]];
                    s.pos[nr] = t;
                    s.seq[nr] = b;
                    nr++;
                }
                want[i] = nr - 1;
            }
            al_gen_run_rows(&s, nr, want, n_live);
        } else {
            al_gen_run_rows(&s, n_live, want, n_live);
        }
    }
    gen_free(&s);
    free(cs);
    free(want);
    free(live);
    return AL_OK;
}

/* Weighted mixing of training sets (see mix.h). */
#include "mix.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The permutation of source s for pass p: Fisher-Yates from a seed that
 * depends on the mixer's seed, the source and the pass only. */
static void fill_perm(al_mix *m, int s) {
    int64_t pass = m->taken[s] / m->n[s];
    al_rng r;
    al_rng_seed(&r, m->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(s + 1)) ^
                        (0xD1B54A32D192ED03ull * (uint64_t)(pass + 1)));
    int32_t *p = m->perm[s];
    for (int32_t i = 0; i < m->n[s]; i++) p[i] = i;
    for (int32_t i = m->n[s] - 1; i > 0; i--) {
        int32_t j = (int32_t)al_rng_below(&r, (uint32_t)i + 1);
        int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

int al_mix_init(al_mix *m, int n_src, const int32_t *n, const double *w, uint64_t seed,
                char err[AL_ERRLEN]) {
    memset(m, 0, sizeof *m);
    if (n_src < 1 || n_src > AL_MIX_MAX_SOURCES)
        return al_err(err, AL_EINVAL, "mixing takes 1 to %d sources, not %d", AL_MIX_MAX_SOURCES, n_src);
    double sum = 0;
    int64_t total = 0;
    for (int s = 0; s < n_src; s++) {
        if (n[s] < 1) return al_err(err, AL_EINVAL, "source %d has no examples", s);
        if (!(w[s] > 0) || !isfinite(w[s])) return al_err(err, AL_EINVAL, "source %d: weight must be > 0", s);
        sum += w[s];
        total += n[s];
    }
    if (total > INT32_MAX) return al_err(err, AL_EINVAL, "more than 2^31 examples");
    m->n_src = n_src;
    m->seed = seed;
    double acc = 0;
    int32_t off = 0;
    for (int s = 0; s < n_src; s++) {
        m->n[s] = n[s];
        m->w[s] = w[s];
        m->off[s] = off;
        off += n[s];
        acc += w[s];
        m->cum[s] = acc / sum;
        if (!(m->perm[s] = malloc((size_t)n[s] * sizeof *m->perm[s]))) {
            al_mix_deinit(m);
            return al_err(err, AL_ENOMEM, "out of memory");
        }
    }
    m->cum[n_src - 1] = 1.0;
    al_mix_rewind(m);
    return AL_OK;
}

void al_mix_deinit(al_mix *m) {
    for (int s = 0; s < AL_MIX_MAX_SOURCES; s++) free(m->perm[s]);
    memset(m, 0, sizeof *m);
}

void al_mix_rewind(al_mix *m) {
    al_rng_seed(&m->rng, m->seed);
    m->draws = 0;
    for (int s = 0; s < m->n_src; s++) {
        m->taken[s] = 0;
        fill_perm(m, s);
    }
}

int32_t al_mix_next(al_mix *m) {
    /* 53 random bits: a uniform double in [0, 1) */
    double u = (double)(al_rng_u64(&m->rng) >> 11) * 0x1.0p-53;
    int s = 0;
    while (s < m->n_src - 1 && u >= m->cum[s]) s++;
    int32_t k = (int32_t)(m->taken[s] % m->n[s]);
    if (k == 0 && m->taken[s] > 0) fill_perm(m, s);   /* a new pass */
    int32_t idx = m->off[s] + m->perm[s][k];
    m->taken[s]++;
    m->draws++;
    return idx;
}

int al_mix_source(const al_mix *m, int32_t idx) {
    int s = 0;
    while (s < m->n_src - 1 && idx >= m->off[s + 1]) s++;
    return s;
}

json_t *al_mix_state(const al_mix *m) {
    json_t *o = json_object(), *rng = json_array(), *taken = json_array(), *sizes = json_array(),
           *w = json_array();
    int bad = !o || !rng || !taken || !sizes || !w;
    for (int i = 0; i < 4 && !bad; i++) {
        char hex[24];
        snprintf(hex, sizeof hex, "%016" PRIx64, m->rng.s[i]);
        bad |= json_array_append_new(rng, json_string(hex));
    }
    for (int s = 0; s < m->n_src && !bad; s++) {
        bad |= json_array_append_new(taken, json_integer((json_int_t)m->taken[s]));
        bad |= json_array_append_new(sizes, json_integer(m->n[s]));
        bad |= json_array_append_new(w, json_real(m->w[s]));
    }
    char seed[24];
    snprintf(seed, sizeof seed, "%016" PRIx64, m->seed);
    if (!bad)
        bad = json_object_set_new(o, "seed", json_string(seed)) ||
              json_object_set_new(o, "draws", json_integer((json_int_t)m->draws)) ||
              json_object_set(o, "rng", rng) || json_object_set(o, "taken", taken) ||
              json_object_set(o, "sizes", sizes) || json_object_set(o, "weights", w);
    json_decref(rng);
    json_decref(taken);
    json_decref(sizes);
    json_decref(w);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int hex64(const json_t *v, uint64_t *out) {
    const char *s = json_string_value(v);
    char *end;
    if (!s || !*s || strlen(s) > 16) return -1;
    unsigned long long x = strtoull(s, &end, 16);
    if (*end) return -1;
    *out = (uint64_t)x;
    return 0;
}

int al_mix_restore(al_mix *m, const json_t *state, char err[AL_ERRLEN]) {
    const json_t *rng = json_object_get(state, "rng"), *taken = json_object_get(state, "taken");
    const json_t *sizes = json_object_get(state, "sizes"), *w = json_object_get(state, "weights");
    const json_t *draws = json_object_get(state, "draws");
    uint64_t seed, s[4];
    if (!json_is_object(state) || hex64(json_object_get(state, "seed"), &seed) || json_array_size(rng) != 4 ||
        !json_is_integer(draws) || json_array_size(taken) != (size_t)m->n_src)
        return al_err(err, AL_EFORMAT, "mixer state: malformed (or for %zu sources, not %d)",
                      json_array_size(taken), m->n_src);
    for (int i = 0; i < 4; i++)
        if (hex64(json_array_get(rng, (size_t)i), &s[i]))
            return al_err(err, AL_EFORMAT, "mixer state: rng[%d] is not a hex word", i);
    if (seed != m->seed) return al_err(err, AL_EFORMAT, "mixer state: written for another seed");
    int64_t t[AL_MIX_MAX_SOURCES];
    for (int k = 0; k < m->n_src; k++) {
        const json_t *tk = json_array_get(taken, (size_t)k);
        if (json_integer_value(json_array_get(sizes, (size_t)k)) != m->n[k] ||
            json_real_value(json_array_get(w, (size_t)k)) != m->w[k])
            return al_err(err, AL_EFORMAT,
                          "mixer state: training_files[%d] has %d examples and weight %g now, %lld and %g "
                          "at the checkpoint",
                          k, m->n[k], m->w[k], (long long)json_integer_value(json_array_get(sizes, (size_t)k)),
                          json_number_value(json_array_get(w, (size_t)k)));
        if (!json_is_integer(tk) || json_integer_value(tk) < 0)
            return al_err(err, AL_EFORMAT, "mixer state: taken[%d] is not a count", k);
        t[k] = (int64_t)json_integer_value(tk);
    }
    memcpy(m->rng.s, s, sizeof s);
    m->draws = (int64_t)json_integer_value(draws);
    for (int k = 0; k < m->n_src; k++) {
        /* the permutation of the pass the next draw falls in; a draw at a
         * pass boundary rebuilds it itself */
        m->taken[k] = t[k] && t[k] % m->n[k] == 0 ? t[k] - 1 : t[k];
        fill_perm(m, k);
        m->taken[k] = t[k];
    }
    return AL_OK;
}

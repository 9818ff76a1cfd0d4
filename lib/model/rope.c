/* RoPE frequencies of every rope_type the supported families use, as
 * transformers' modeling_rope_utils.py computes them: the same operations in
 * the same float32/float64 split (Python scalars are doubles, tensors
 * float32; a double meeting a float32 tensor is rounded to float first), so
 * that the cos/sin tables match to the last bit or nearly.
 *
 * Two types depend on the pass: "dynamic" (NTK) recomputes the base for the
 * pass's length once it exceeds max_position_embeddings (transformers'
 * dynamic_rope_update: seq_len = max(position_ids) + 1), and "longrope"
 * switches from the short to the long factors when the pass's length
 * exceeds original_max_position_embeddings. alignd evaluates each pass on
 * its own (transformers keeps the largest length it has seen between calls
 * until it falls back below the original context: a history alignd does not
 * reproduce). */
#include "model_impl.h"

#include <math.h>
#include <string.h>

#define ROPE_PI 3.141592653589793 /* math.pi */

int al_rope_key(const al_model_config *c, int seq_len) {
    if (c->rope.type == AL_ROPE_DYNAMIC) return seq_len > c->rope.orig_max ? seq_len : 0;
    if (c->rope.type == AL_ROPE_LONGROPE) return seq_len > c->rope.orig_max ? 1 : 0;
    return 0;
}

/* base ** (arange(0, dim, 2).float() / dim), in float */
static float pos_freq(float base, int i, int dim) {
    return powf(base, (float)(2 * i) / (float)dim);
}

static double yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

static double yarn_corr_dim(double rot, int dim, double base, double maxpos) {
    return ((double)dim * log(maxpos / (rot * 2.0 * ROPE_PI))) / (2.0 * log(base));
}

void al_rope_freqs(const al_model_config *c, int seq_len, int local, float *inv, float *attn) {
    const int dim = c->HD, half = dim / 2;
    const al_rope_cfg *r = &c->rope;
    const float theta = local ? c->rope_local_theta : c->rope_theta;
    *attn = 1.0f;
    if (local || r->type == AL_ROPE_DEFAULT || r->type == AL_ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv[i] = 1.0f / pos_freq(theta, i, dim);
        if (!local && r->type == AL_ROPE_LINEAR)
            for (int i = 0; i < half; i++) inv[i] /= (float)r->factor;
        return;
    }
    switch (r->type) {
    case AL_ROPE_DYNAMIC: {
        float base = theta;
        if (seq_len > r->orig_max) {
            /* seq_len is a tensor there: the new base is computed in float
             * (orig_max: the config's max_position_embeddings) */
            float f = (float)r->factor;
            float t = f * (float)seq_len / (float)r->orig_max - (float)(r->factor - 1.0);
            base = theta * powf(t, (float)((double)dim / (double)(dim - 2)));
        }
        for (int i = 0; i < half; i++) inv[i] = 1.0f / pos_freq(base, i, dim);
        return;
    }
    case AL_ROPE_YARN: {
        double factor = r->factor;
        int om = r->orig_max ? r->orig_max : c->max_T;
        double af = r->attention_factor;
        if (af == 0.0)
            af = r->mscale && r->mscale_all_dim
                     ? yarn_mscale(factor, r->mscale) / yarn_mscale(factor, r->mscale_all_dim)
                     : yarn_mscale(factor, 1.0);
        double bf = r->beta_fast ? r->beta_fast : 32.0, bs = r->beta_slow ? r->beta_slow : 1.0;
        double lo = yarn_corr_dim(bf, dim, theta, om), hi = yarn_corr_dim(bs, dim, theta, om);
        if (r->truncate) {
            lo = floor(lo);
            hi = ceil(hi);
        }
        if (lo < 0) lo = 0;
        if (hi > dim - 1) hi = dim - 1;
        if (lo == hi) hi += 0.001;
        for (int i = 0; i < half; i++) {
            float pf = pos_freq(theta, i, dim);
            float extrap = 1.0f / pf, interp = 1.0f / ((float)factor * pf);
            float ramp = ((float)i - (float)lo) / (float)(hi - lo);
            ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
            float ef = 1.0f - ramp;
            inv[i] = interp * (1.0f - ef) + extrap * ef;
        }
        *attn = (float)af;
        return;
    }
    case AL_ROPE_LONGROPE: {
        int om = r->orig_max ? r->orig_max : c->max_T;
        double factor = (double)c->max_T / (double)om, af = r->attention_factor;
        if (af == 0.0) af = factor <= 1.0 ? 1.0 : sqrt(1.0 + log(factor) / log((double)om));
        const float *ext = seq_len > om ? r->long_factor : r->short_factor;
        for (int i = 0; i < half; i++) inv[i] = 1.0f / (ext[i] * pos_freq(theta, i, dim));
        *attn = (float)af;
        return;
    }
    case AL_ROPE_LLAMA3: {
        const double old = r->orig_max, lf = r->low_freq_factor, hf = r->high_freq_factor;
        const float lw = (float)(old / lf), hw = (float)(old / hf), f = (float)r->factor;
        for (int i = 0; i < half; i++) {
            float base_inv = 1.0f / pos_freq(theta, i, dim);
            float wl = (float)(2.0 * ROPE_PI) / base_inv;
            float il = wl > lw ? base_inv / f : base_inv;
            float smooth = ((float)old / wl - (float)lf) / (float)(hf - lf);
            float smoothed = (1.0f - smooth) * il / f + smooth * il;
            int medium = !(wl < hw) && !(wl > lw);
            inv[i] = medium ? smoothed : il;
        }
        return;
    }
    default:
        for (int i = 0; i < half; i++) inv[i] = 1.0f / pos_freq(theta, i, dim);
        return;
    }
}

/* Transformer training path: parameter table, initialisation, LoRA, and the
 * forward/backward pair the objectives are built on (DESIGN.md, "The one
 * idea"). GPT-2 follows modeling_gpt2.py (pre-LayerNorm blocks, learned
 * positions, gelu_new, tied head); Llama follows modeling_llama.py (RMSNorm,
 * rotate-half RoPE, SwiGLU, grouped-query attention), and the other
 * families are that block with the variations config.h lists, each taken
 * from its modeling_*.py: Mistral and Qwen2/3 (windows, Qwen3's q/k norms),
 * Gemma 2/3 ((1 + w) norms before and after each branch, GeGLU, soft-caps,
 * local RoPE), Phi-3 (fused projections), OLMo-2 (post-norms only, q/k norms
 * over all heads), SmolLM3 (NoPE layers), Granite (multipliers). The pieces
 * generation shares (norms, q/k norms and RoPE, residuals, activations) are
 * the al_layer_* functions of model_impl.h.
 *
 * Memory: one arena for weights, one for gradients (trainable tensors only,
 * so a LoRA model carries no base gradients), one for activations sized by
 * al_model_reserve. A linear map's input is kept for the backward only when
 * the backward reads it (its weight trains, or an adapter's A does: a frozen
 * LoRA base map without one needs its weight alone), and in bf16 mode a
 * normed input or the activation's output, read by nothing but the product,
 * is kept as the rounded bf16 copy the product read (al_acts, lin_need). With
 * AL_MODEL_GRAD_CKPT only the residual stream at each
 * layer input is kept; backward recomputes a layer's activations into one
 * shared set before differentiating it. With AL_MODEL_FORWARD_ONLY (models
 * that are never differentiated) the layers share that one set and two
 * residual buffers, and there are no backward buffers. */
#include "model_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compute/ops.h"
#include "../compute/pool.h"
#include "safetensors.h"

/* ---- parameter table ---------------------------------------------------- */

/* During construction w and g hold offsets (as uintptr_t) into the arenas. */
static int add_param(al_model *m, const char *name, int rows, int cols, int conv1d) {
    if (m->n_params == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 64;
        al_param *p = realloc(m->params, (size_t)cap * sizeof *p);
        if (!p) return -1;
        m->params = p;
        m->cap_params = cap;
    }
    al_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    size_t len = strlen(name);
    if (len >= sizeof p->name) return -1;
    memcpy(p->name, name, len + 1);
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols > 0 ? cols : 1;
    p->n = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    p->decay = p->ndim == 2;
    p->conv1d = conv1d;
    p->layer = m->build_layer;
    p->w = (float *)(uintptr_t)m->n_data;
    m->n_data += p->n;
    return m->n_params++;
}

/* Adds the named tensors of a fused map as one adjacent run. */
static int add_linear(al_model *m, al_linear *L, int n, const char *const *names,
                      const int *outs, int in, int bias, int conv1d) {
    char nm[160];
    L->in = in;
    L->out = 0;
    L->w = L->b = -1;
    L->first_lora = L->n_lora = 0;
    for (int i = 0; i < n; i++) {
        snprintf(nm, sizeof nm, "%s.weight", names[i]);
        int idx = add_param(m, nm, outs[i], in, conv1d);
        if (idx < 0) return -1;
        if (i == 0) L->w = idx;
        L->out += outs[i];
    }
    if (bias) {
        for (int i = 0; i < n; i++) {
            snprintf(nm, sizeof nm, "%s.bias", names[i]);
            int idx = add_param(m, nm, outs[i], 0, 0);
            if (idx < 0) return -1;
            if (i == 0) L->b = idx;
        }
    }
    return 0;
}

/* PEFT matches a target against the end of the module path. */
static int lora_targets(const al_lora_cfg *lc, const char *module) {
    if (!lc || lc->r <= 0) return 0;
    if (strcmp(lc->targets, "all-linear") == 0) return 1;
    const char *s = lc->targets;
    size_t ml = strlen(module);
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        while (len && *s == ' ') { s++; len--; }
        while (len && s[len - 1] == ' ') len--;
        if (len && len <= ml && memcmp(module + ml - len, s, len) == 0 &&
            (len == ml || module[ml - len - 1] == '.'))
            return 1;
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

/* The modules of one layer that LoRA may target: path, fused map, column range. */
typedef struct lora_site { char module[96]; int lin, off, out, in; } lora_site;

static int layer_sites(const al_model_config *c, int l, lora_site *s) {
    int n = 0, q = c->NH * c->HD, kv = c->NKV * c->HD;
#define SITE(path, LIN, OFF, OUT, IN)                                          \
    do {                                                                       \
        snprintf(s[n].module, sizeof s[n].module, path, l);                    \
        s[n].lin = LIN; s[n].off = OFF; s[n].out = OUT; s[n].in = IN; n++;     \
    } while (0)
    if (c->arch == AL_ARCH_GPT2) {
        SITE("transformer.h.%d.attn.c_attn", LIN_QKV, 0, 3 * c->C, c->C);
        SITE("transformer.h.%d.attn.c_proj", LIN_O, 0, c->C, c->C);
        SITE("transformer.h.%d.mlp.c_fc", LIN_UP, 0, c->FF, c->C);
        SITE("transformer.h.%d.mlp.c_proj", LIN_DOWN, 0, c->C, c->FF);
    } else if (c->fused_proj) { /* Phi-3: PEFT targets the fused modules by these names */
        SITE("model.layers.%d.self_attn.qkv_proj", LIN_QKV, 0, q + 2 * kv, c->C);
        SITE("model.layers.%d.self_attn.o_proj", LIN_O, 0, c->C, q);
        SITE("model.layers.%d.mlp.gate_up_proj", LIN_UP, 0, 2 * c->FF, c->C);
        SITE("model.layers.%d.mlp.down_proj", LIN_DOWN, 0, c->C, c->FF);
    } else {
        SITE("model.layers.%d.self_attn.q_proj", LIN_QKV, 0, q, c->C);
        SITE("model.layers.%d.self_attn.k_proj", LIN_QKV, q, kv, c->C);
        SITE("model.layers.%d.self_attn.v_proj", LIN_QKV, q + kv, kv, c->C);
        SITE("model.layers.%d.self_attn.o_proj", LIN_O, 0, c->C, q);
        SITE("model.layers.%d.mlp.gate_proj", LIN_UP, 0, c->FF, c->C);
        SITE("model.layers.%d.mlp.up_proj", LIN_UP, c->FF, c->FF, c->C);
        SITE("model.layers.%d.mlp.down_proj", LIN_DOWN, 0, c->C, c->FF);
    }
#undef SITE
    return n;
}

/* Layer l of GPT-2: ln_1, c_attn, c_proj, ln_2 and the MLP, all with biases. */
static int build_gpt2_layer(al_model *m, al_layer *ly, int l) {
    const al_model_config *c = &m->cfg;
    char a[128], b[128];
    int C = c->C;
    snprintf(a, sizeof a, "transformer.h.%d.ln_1.weight", l);
    snprintf(b, sizeof b, "transformer.h.%d.ln_1.bias", l);
    if ((ly->ln1_w = add_param(m, a, C, 0, 0)) < 0) return -1;
    if ((ly->ln1_b = add_param(m, b, C, 0, 0)) < 0) return -1;
    snprintf(a, sizeof a, "transformer.h.%d.attn.c_attn", l);
    const char *n1[1] = {a};
    int o1[1] = {3 * C};
    if (add_linear(m, &ly->lin[LIN_QKV], 1, n1, o1, C, 1, 1)) return -1;
    snprintf(a, sizeof a, "transformer.h.%d.attn.c_proj", l);
    int o2[1] = {C};
    if (add_linear(m, &ly->lin[LIN_O], 1, n1, o2, C, 1, 1)) return -1;
    snprintf(a, sizeof a, "transformer.h.%d.ln_2.weight", l);
    snprintf(b, sizeof b, "transformer.h.%d.ln_2.bias", l);
    if ((ly->ln2_w = add_param(m, a, C, 0, 0)) < 0) return -1;
    if ((ly->ln2_b = add_param(m, b, C, 0, 0)) < 0) return -1;
    snprintf(a, sizeof a, "transformer.h.%d.mlp.c_fc", l);
    int o3[1] = {c->FF};
    if (add_linear(m, &ly->lin[LIN_UP], 1, n1, o3, C, 1, 1)) return -1;
    snprintf(a, sizeof a, "transformer.h.%d.mlp.c_proj", l);
    if (add_linear(m, &ly->lin[LIN_DOWN], 1, n1, o2, c->FF, 1, 1)) return -1;
    return 0;
}

/* Layer l of the Llama block and its variants (the norms, fused projections
 * and biases the config sets). */
static int build_llama_layer(al_model *m, al_layer *ly, int l) {
    const al_model_config *c = &m->cfg;
    char a[128], b[128], d[128];
    int C = c->C, q = c->NH * c->HD, kv = c->NKV * c->HD;
    /* Llama: input_layernorm, post_attention_layernorm (before the
     * MLP). Gemma 2/3: input_layernorm, post_attention_layernorm
     * (after attention), pre_ and post_feedforward_layernorm.
     * OLMo-2: post_attention_ and post_feedforward_layernorm only. */
    ly->ln1_w = ly->ln2_w = ly->pa_w = ly->pf_w = ly->qn_w = ly->kn_w = -1;
    ly->ln1_b = ly->ln2_b = -1;
    if (!c->no_pre_norm) {
        snprintf(a, sizeof a, "model.layers.%d.input_layernorm.weight", l);
        if ((ly->ln1_w = add_param(m, a, C, 0, 0)) < 0) return -1;
    }
    if (c->fused_proj) {
        snprintf(a, sizeof a, "model.layers.%d.self_attn.qkv_proj", l);
        const char *n1[1] = {a};
        int o1[1] = {q + 2 * kv};
        if (add_linear(m, &ly->lin[LIN_QKV], 1, n1, o1, C, c->attn_bias, 0)) return -1;
    } else {
        snprintf(a, sizeof a, "model.layers.%d.self_attn.q_proj", l);
        snprintf(b, sizeof b, "model.layers.%d.self_attn.k_proj", l);
        snprintf(d, sizeof d, "model.layers.%d.self_attn.v_proj", l);
        const char *n3[3] = {a, b, d};
        int o3[3] = {q, kv, kv};
        if (add_linear(m, &ly->lin[LIN_QKV], 3, n3, o3, C, c->attn_bias, 0)) return -1;
    }
    if (c->qk_norm) {
        int all = c->qk_norm == AL_QK_ALL;
        snprintf(a, sizeof a, "model.layers.%d.self_attn.q_norm.weight", l);
        if ((ly->qn_w = add_param(m, a, all ? q : c->HD, 0, 0)) < 0) return -1;
        snprintf(a, sizeof a, "model.layers.%d.self_attn.k_norm.weight", l);
        if ((ly->kn_w = add_param(m, a, all ? kv : c->HD, 0, 0)) < 0) return -1;
    }
    snprintf(a, sizeof a, "model.layers.%d.self_attn.o_proj", l);
    const char *no[1] = {a};
    int o1[1] = {C};
    if (add_linear(m, &ly->lin[LIN_O], 1, no, o1, q, c->o_bias, 0)) return -1;
    snprintf(a, sizeof a, "model.layers.%d.post_attention_layernorm.weight", l);
    if (c->post_norm) {
        if ((ly->pa_w = add_param(m, a, C, 0, 0)) < 0) return -1;
        if (!c->no_pre_norm) {
            snprintf(a, sizeof a, "model.layers.%d.pre_feedforward_layernorm.weight", l);
            if ((ly->ln2_w = add_param(m, a, C, 0, 0)) < 0) return -1;
        }
    } else if ((ly->ln2_w = add_param(m, a, C, 0, 0)) < 0) {
        return -1;
    }
    if (c->fused_proj) {
        snprintf(a, sizeof a, "model.layers.%d.mlp.gate_up_proj", l);
        const char *n1[1] = {a};
        int o2[1] = {2 * c->FF};
        if (add_linear(m, &ly->lin[LIN_UP], 1, n1, o2, C, c->mlp_bias, 0)) return -1;
    } else {
        snprintf(a, sizeof a, "model.layers.%d.mlp.gate_proj", l);
        snprintf(b, sizeof b, "model.layers.%d.mlp.up_proj", l);
        const char *n2[2] = {a, b};
        int o2[2] = {c->FF, c->FF};
        if (add_linear(m, &ly->lin[LIN_UP], 2, n2, o2, C, c->mlp_bias, 0)) return -1;
    }
    snprintf(a, sizeof a, "model.layers.%d.mlp.down_proj", l);
    if (add_linear(m, &ly->lin[LIN_DOWN], 1, no, o1, c->FF, c->mlp_bias, 0)) return -1;
    if (c->post_norm) {
        snprintf(a, sizeof a, "model.layers.%d.post_feedforward_layernorm.weight", l);
        if ((ly->pf_w = add_param(m, a, C, 0, 0)) < 0) return -1;
    }
    return 0;
}

int al_lora_maps(const al_model_config *cfg, const al_lora_cfg *lora) {
    lora_site sites[8];
    int mask = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        int ns = layer_sites(cfg, l, sites);
        for (int s = 0; s < ns; s++)
            if (lora_targets(lora, sites[s].module)) mask |= 1 << sites[s].lin;
    }
    return mask;
}

size_t al_lora_num_params(const al_model_config *cfg, const al_lora_cfg *lora) {
    lora_site sites[8];
    size_t n = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        int ns = layer_sites(cfg, l, sites);
        for (int s = 0; s < ns; s++)
            if (lora_targets(lora, sites[s].module)) n += (size_t)lora->r * (size_t)(sites[s].in + sites[s].out);
    }
    return n;
}

/* The LoRA adapters of every targeted linear map, in layer and map order. */
static int build_lora(al_model *m) {
    const al_model_config *c = &m->cfg;
    const al_lora_cfg *lc = &m->lora_cfg;
    char a[128];
    lora_site sites[8] = {{{0}, 0, 0, 0, 0}};
    int cap = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int ns = layer_sites(c, l, sites);
        for (int s = 0; s < ns; s++) {
            if (!lora_targets(lc, sites[s].module)) continue;
            if (m->n_lora == cap) {
                cap = cap ? 2 * cap : 16;
                al_lora_mod *nl = realloc(m->lora, (size_t)cap * sizeof *nl);
                if (!nl) return -1;
                m->lora = nl;
            }
            al_lora_mod *lm = &m->lora[m->n_lora];
            lm->layer = l;
            lm->lin = sites[s].lin;
            lm->off = sites[s].off;
            lm->out = sites[s].out;
            lm->in = sites[s].in;
            snprintf(lm->module, sizeof lm->module, "%.95s", sites[s].module);
            snprintf(a, sizeof a, "%.95s.lora_A.weight", sites[s].module);
            m->build_layer = l;
            if ((lm->pA = add_param(m, a, lc->r, lm->in, 0)) < 0) return -1;
            snprintf(a, sizeof a, "%.95s.lora_B.weight", sites[s].module);
            if ((lm->pB = add_param(m, a, lm->out, lc->r, 0)) < 0) return -1;
            m->params[lm->pA].lora = m->params[lm->pB].lora = 1;
            m->n_lora++;
        }
    }
    m->build_layer = -1;
    /* Adapters of one map are consecutive (sites are ordered by map). */
    for (int k = 0; k < m->n_lora; k++) {
        al_linear *L = &m->layers[m->lora[k].layer].lin[m->lora[k].lin];
        if (L->n_lora == 0) L->first_lora = k;
        L->n_lora++;
    }
    return 0;
}

static int build_params(al_model *m) {
    const al_model_config *c = &m->cfg;
    int C = c->C;
    int gpt2 = c->arch == AL_ARCH_GPT2;
    m->wte = m->wpe = m->lnf_w = m->lnf_b = m->head = m->score = -1;
    m->build_layer = -1;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return -1;
    if (gpt2) {
        if ((m->wte = add_param(m, "transformer.wte.weight", c->V, C, 0)) < 0) return -1;
        if ((m->wpe = add_param(m, "transformer.wpe.weight", c->max_T, C, 0)) < 0) return -1;
    } else {
        if ((m->wte = add_param(m, "model.embed_tokens.weight", c->V, C, 0)) < 0) return -1;
    }
    for (int l = 0; l < c->n_layers; l++) {
        al_layer *ly = &m->layers[l];
        m->build_layer = l;
        ly->pa_w = ly->pf_w = ly->qn_w = ly->kn_w = -1;
        if (gpt2) {
            if (build_gpt2_layer(m, ly, l)) return -1;
        } else if (build_llama_layer(m, ly, l)) {
            return -1;
        }
    }
    m->build_layer = -1;
    if (gpt2) {
        if ((m->lnf_w = add_param(m, "transformer.ln_f.weight", C, 0, 0)) < 0) return -1;
        if ((m->lnf_b = add_param(m, "transformer.ln_f.bias", C, 0, 0)) < 0) return -1;
    } else {
        if ((m->lnf_w = add_param(m, "model.norm.weight", C, 0, 0)) < 0) return -1;
    }
    if (c->has_lm_head) {
        if (c->tie_word_embeddings) m->head = m->wte;
        else if ((m->head = add_param(m, "lm_head.weight", c->V, C, 0)) < 0) return -1;
    }
    if (c->has_score) {
        if ((m->score = add_param(m, "score.weight", c->num_labels, C, 0)) < 0) return -1;
        m->params[m->score].decay = 1;
    }

    /* LoRA adapters after the base, so the base's fused runs stay adjacent. */
    if (m->lora_cfg.r > 0 && build_lora(m)) return -1;
    return 0;
}

/* Gives every parameter a gradient, or with lora_only just the adapters and
 * the scalar head (PEFT's modules_to_save for a reward model or critic). */
static int alloc_grads(al_model *m, int lora_only) {
    al_free_pages(m->grad, m->n_grad * sizeof(float));
    m->grad = NULL;
    m->n_grad = 0;
    for (int i = 0; i < m->n_params; i++) {
        al_param *p = &m->params[i];
        p->g = NULL;
        if (lora_only && !p->lora && i != m->score) continue;
        m->n_grad += p->n;
    }
    if (m->n_grad == 0) return 0;
    m->grad = al_alloc_pages(m->n_grad * sizeof(float));
    m->grad_defer = 0; /* fresh zero pages */
    if (!m->grad) return -1;
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        al_param *p = &m->params[i];
        if (lora_only && !p->lora && i != m->score) continue;
        AL_ASSERT(!p->wt); /* a weight that trains has nn.Linear's layout */
        p->g = m->grad + off;
        off += p->n;
    }
    return 0;
}

al_model *al_model_new(const al_model_config *cfg, const al_lora_cfg *lora, char err[AL_ERRLEN]) {
    return al_model_new_ex(cfg, lora, 0, err);
}

/* ---- weight storage ------------------------------------------------------ */

/* Whether tensor i of a new model trains: everything, or with LoRA the
 * adapters and a scalar head (alloc_grads' rule); nothing when frozen. */
static int param_trains(const al_model *m, int i, int frozen) {
    if (frozen) return 0;
    return m->lora_cfg.r <= 0 || m->params[i].lora || i == m->score;
}

/* Whether p points into the arena [base, base + bytes). */
static int in_arena(const void *p, const void *base, size_t bytes) {
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
    return p && base && a >= b && a - b < bytes;
}

/* Lays the weights out for the model's mode and copies what the tensors
 * held (w or h; NULL pointers: zeros). fp32: every tensor in data. bf16:
 * vectors (norms, biases) in data; matrices in data16, and those that train
 * (trains[i]) keep an fp32 master in data too. Returns 0 or -1 (ENOMEM,
 * nothing changed). */
static int storage_build(al_model *m, const unsigned char *trains) {
    size_t n32 = 0, n16 = 0;
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        int h = m->bf16 && p->ndim == 2;
        if (!h || trains[i]) n32 += p->n;
        if (h) n16 += p->n;
    }
    /* fresh zero pages: loading writes every weight once, no memset first */
    float *d32 = al_alloc_pages(n32 * sizeof(float));
    uint16_t *d16 = n16 ? al_alloc_pages(n16 * sizeof(uint16_t)) : NULL;
    if (!d32 || (n16 && !d16)) {
        al_free_pages(d32, n32 * sizeof(float));
        al_free_pages(d16, n16 * sizeof(uint16_t));
        return -1;
    }
    size_t o32 = 0, o16 = 0;
    for (int i = 0; i < m->n_params; i++) {
        al_param *p = &m->params[i];
        int h = m->bf16 && p->ndim == 2;
        float *nw = !h || trains[i] ? d32 + o32 : NULL;
        uint16_t *nh = h ? d16 + o16 : NULL;
        if (nw) {
            if (p->w) memcpy(nw, p->w, p->n * sizeof(float));
            else if (p->h) al_bf16_widen(nw, p->h, p->n);
            o32 += p->n;
        }
        /* the old copy goes as the new one fills (a large matrix by pieces):
         * converting GPT-2 to bf16 peaked at fp32 + bf16 (733 MB), now at
         * about the fp32 model alone */
        int old32 = in_arena(p->w, m->data, m->n_data * sizeof(float));
        if (nh) {
            if (p->h) memcpy(nh, p->h, p->n * sizeof(uint16_t));
            for (size_t o = 0, k; !p->h && p->w && o < p->n; o += k) {
                k = al_min_sz(p->n - o, (size_t)1 << 20);
                al_bf16_round(nh + o, p->w + o, k);
                if (old32) al_release_pages(p->w + o, k * sizeof(float));
            }
            o16 += p->n;
        }
        if (in_arena(p->w, m->data, m->n_data * sizeof(float))) al_release_pages(p->w, p->n * sizeof(float));
        if (in_arena(p->h, m->data16, m->n_data16 * sizeof(uint16_t)))
            al_release_pages(p->h, p->n * sizeof(uint16_t));
        p->w = nw;
        p->h = nh;
    }
    al_free_pages(m->data, m->n_data * sizeof(float));
    al_free_pages(m->data16, m->n_data16 * sizeof(uint16_t));
    m->data = d32;
    m->n_data = n32;
    m->data16 = d16;
    m->n_data16 = n16;
    al_model_w_written(m);
    return 0;
}

int al_model_set_bf16(al_model *m, int on, char err[AL_ERRLEN]) {
    on = on != 0;
    if (m->shared_base) return al_err(err, AL_EINVAL, "a shared-base model computes as its base");
    if (m->bf16 == on) return AL_OK;
    unsigned char *trains = calloc((size_t)m->n_params, 1);
    if (!trains) return al_err(err, AL_ENOMEM, "out of memory");
    for (int i = 0; i < m->n_params; i++) trains[i] = m->params[i].g != NULL;
    m->bf16 = on;
    int rc = storage_build(m, trains);
    free(trains);
    if (rc) {
        m->bf16 = !on;
        return al_err(err, AL_ENOMEM, "out of memory converting the weights");
    }
    /* the activations need (or no longer need) bf16 scratch */
    al_free_pages(m->act16, m->n_act16 * sizeof(uint16_t));
    m->act16 = m->s16 = NULL;
    m->s16_len = 0;
    m->n_act16 = 0;
    m->resB = m->resT = 0;
    return AL_OK;
}

int al_model_is_bf16(const al_model *m) { return m->bf16; }

/* Debug and sanitizer builds (which run every test in CI; Release keeps
 * AL_ASSERT but not this pass over the weights): a skipped sync must have
 * had nothing to do (a writer that forgot al_model_w_written, or one
 * through a table fetched before the optimizer's step, would leave a copy
 * stale). */
#if !defined(__OPTIMIZE__) || defined(__SANITIZE_ADDRESS__)
#define AL_CHECK_BF16_COPIES 1
#endif

#ifdef AL_CHECK_BF16_COPIES
static void bf16_check_current(const al_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        for (size_t k = 0; p->w && p->h && k < p->n; k++)
            AL_ASSERT(p->h[k] == al_bf16_round1(p->w[k]));
    }
}
#endif

void al_model_bf16_sync(al_model *m) {
    if (!m->bf16) return;
    /* a shared-base model's base weights are another model's to write */
    int skip = m->h_stepped && !m->h_dirty && !m->shared_base;
    m->h_stepped = m->h_dirty = 0;
    if (skip) {
#ifdef AL_CHECK_BF16_COPIES
        bf16_check_current(m);
#endif
        return;
    }
    for (int i = 0; i < m->n_params; i++) {
        al_param *p = &m->params[i];
        if (p->w && p->h) al_bf16_round(p->h, p->w, p->n);
    }
}

void al_model_bf16_stepped(al_model *m) { m->h_stepped = 1; }

void al_param_rows(float *dst, const al_param *p) {
    if (!p->wt) {
        if (p->w) memcpy(dst, p->w, p->n * sizeof(float));
        else al_bf16_widen(dst, p->h, p->n);
        return;
    }
    /* held (in, out): dst[o][i] = v[i][o], in blocks of 16 x 16 */
    size_t R = (size_t)p->shape[0], C = (size_t)p->shape[1];
    for (size_t i0 = 0; i0 < C; i0 += 16)
        for (size_t o0 = 0; o0 < R; o0 += 16)
            for (size_t i = i0; i < C && i < i0 + 16; i++)
                for (size_t o = o0; o < R && o < o0 + 16; o++)
                    dst[o * C + i] = p->w ? p->w[i * R + o] : al_bf16_to_f32(p->h[i * R + o]);
}

void al_param_set(al_param *p, const float *v) {
    AL_ASSERT(!p->wt);
    if (p->w) memcpy(p->w, v, p->n * sizeof(float));
    if (p->h) al_bf16_round(p->h, v, p->n);
}

/* Copies a tensor between models of the same shape, whatever their modes
 * (d in nn.Linear's layout; s in either: al_param_rows). */
static void param_copy(al_param *d, const al_param *s) {
    AL_ASSERT(!d->wt);
    if (s->wt) {
        float *v = malloc(s->n * sizeof(float));
        AL_ASSERT(v);
        al_param_rows(v, s);
        if (d->w) memcpy(d->w, v, d->n * sizeof(float));
        if (d->h) al_bf16_round(d->h, v, d->n);
        free(v);
        return;
    }
    if (d->w) {
        if (s->w) memcpy(d->w, s->w, d->n * sizeof(float));
        else al_bf16_widen(d->w, s->h, d->n);
    }
    if (d->h) {
        if (s->h && !s->w) memcpy(d->h, s->h, d->n * sizeof(uint16_t));
        else al_bf16_round(d->h, s->w, d->n);
    }
}

/* Fills a (max_T, HD/2) cos/sin table for the RoPE of a pass of length seq_len. */
static void rope_fill(const al_model *m, float *cs, float *sn, int seq_len, int local) {
    const al_model_config *c = &m->cfg;
    float inv[4096 / 2], attn;
    al_rope_freqs(c, seq_len, local, inv, &attn);
    al_rope_table_inv(cs, sn, c->max_T, c->HD / 2, inv, attn);
}

/* The RoPE tables: the global one for passes within the context, and the
 * local one of Gemma 3's sliding layers. */
static int rope_alloc(al_model *m) {
    const al_model_config *c = &m->cfg;
    size_t n = (size_t)c->max_T * (size_t)(c->HD / 2);
    m->rope_cos = al_calloc(n, sizeof(float));
    m->rope_sin = al_calloc(n, sizeof(float));
    if (!m->rope_cos || !m->rope_sin) return -1;
    m->rope_key = 0;
    rope_fill(m, m->rope_cos, m->rope_sin, 1, 0);
    int local = 0;
    for (int l = 0; l < c->n_layers; l++) local |= c->layer_flags[l] & AL_LAYER_LOCAL_ROPE;
    if (local) {
        m->rope_lcos = al_calloc(n, sizeof(float));
        m->rope_lsin = al_calloc(n, sizeof(float));
        if (!m->rope_lcos || !m->rope_lsin) return -1;
        rope_fill(m, m->rope_lcos, m->rope_lsin, 1, 1);
    }
    return 0;
}

void al_model_rope_prepare(al_model *m, int seq_len) {
    if (m->cfg.arch != AL_ARCH_LLAMA) return;
    int key = al_rope_key(&m->cfg, seq_len);
    if (key == m->rope_key) return;
    rope_fill(m, m->rope_cos, m->rope_sin, seq_len, 0);
    m->rope_key = key;
}

al_model *al_model_new_ex(const al_model_config *cfg, const al_lora_cfg *lora, int frozen,
                          char err[AL_ERRLEN]) {
    return al_model_new_dt(cfg, lora, frozen, 0, err);
}

al_model *al_model_new_dt(const al_model_config *cfg, const al_lora_cfg *lora, int frozen,
                          int bf16, char err[AL_ERRLEN]) {
    al_error e;
    al_model *m = NULL;
    if (al_model_new_at(&m, cfg, lora, frozen, bf16, &e) && err) snprintf(err, AL_ERRLEN, "%s", e.msg);
    return m;
}

int al_model_create(al_model **out, const al_model_config *cfg, const al_lora_cfg *lora, al_error *e) {
    return al_model_new_at(out, cfg, lora, 0, 0, e);
}

/* For a message: the last part of each module name LoRA may target in
 * layer 0 ("q_proj, k_proj, ..."), as a job names them. */
static void lora_site_names(const al_model *m, char *dst, size_t cap) {
    lora_site sites[8];
    int ns = layer_sites(&m->cfg, 0, sites);
    size_t n = 0;
    dst[0] = 0;
    for (int s = 0; s < ns && n < cap; s++) {
        const char *dot = strrchr(sites[s].module, '.');
        n += (size_t)snprintf(dst + n, cap - n, "%s%s", s ? ", " : "", dot ? dot + 1 : sites[s].module);
    }
}

int al_model_new_at(al_model **out, const al_model_config *cfg, const al_lora_cfg *lora, int frozen, int bf16,
                    al_error *e) {
    char *err = e->msg;
    e->field[0] = 0;
    int rc = al_config_validate(cfg, err);
    if (rc != AL_OK) return rc;
    if (lora && lora->r > 0 && (lora->r > 4096 || !(lora->alpha > 0)))
        return AL_FAIL(e, AL_EINVAL, "lora", "r must be in 1..4096 and alpha > 0");
    al_model *m = calloc(1, sizeof *m);
    if (!m) return al_err(err, AL_ENOMEM, "out of memory");
    m->cfg = *cfg;
    if (lora && lora->r > 0) {
        m->lora_cfg = *lora;
        m->lora_scale = lora->alpha / (float)lora->r;
    }
    m->adapters_on = 1;
    m->inv_temp = 1.0f;
    m->QKV = (cfg->NH + 2 * cfg->NKV) * cfg->HD;
    m->UPW = cfg->arch == AL_ARCH_GPT2 ? cfg->FF : 2 * cfg->FF;
    if (build_params(m)) goto nomem;
    if (m->lora_cfg.r > 0 && m->n_lora == 0) {
        char names[160];
        lora_site_names(m, names, sizeof names);
        rc = AL_FAIL(e, AL_EINVAL, "lora.target_modules",
                     "\"%s\" match no module of the model (%s, or \"all-linear\")", m->lora_cfg.targets, names);
        al_model_free(m);
        return rc;
    }
    m->bf16 = bf16 != 0;
    {
        unsigned char *trains = calloc((size_t)m->n_params, 1);
        if (!trains) goto nomem;
        for (int i = 0; i < m->n_params; i++) {
            trains[i] = (unsigned char)param_trains(m, i, frozen);
            m->params[i].w = NULL; /* offsets until now: storage_build lays them out */
        }
        int bad = storage_build(m, trains);
        free(trains);
        if (bad) goto nomem;
    }
    if (!frozen && alloc_grads(m, m->lora_cfg.r > 0)) goto nomem;
    if (cfg->arch == AL_ARCH_LLAMA && rope_alloc(m)) goto nomem;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].name[0] == 0) AL_ASSERT(0);
    *out = m;
    return AL_OK;
nomem:
    rc = al_err(err, AL_ENOMEM, "out of memory allocating the model (%zu parameters)", m->n_data);
    al_model_free(m);
    return rc;
}

void al_model_free(al_model *m) {
    if (!m) return;
    al_free_pages(m->data, m->n_data * sizeof(float));
    al_free_pages(m->data16, m->n_data16 * sizeof(uint16_t));
    for (int i = 0; i < m->n_maps; i++) al_st_unmap(m->maps[i], m->map_sizes[i]);
    free(m->maps);
    free(m->map_sizes);
    al_free_pages(m->act16, m->n_act16 * sizeof(uint16_t));
    al_free_pages(m->grad, m->n_grad * sizeof(float));
    al_free_pages(m->act, m->n_act * sizeof(float));
    al_free(m->rope_cos);
    al_free(m->rope_sin);
    al_free(m->rope_lcos);
    al_free(m->rope_lsin);
    free(m->acts);
    free(m->params);
    free(m->layers);
    free(m->lora);
    free(m);
}

const al_model_config *al_model_config_of(const al_model *m) { return &m->cfg; }

static void grads_settle(al_model *m);

al_param *al_model_params(al_model *m, int *n) {
    grads_settle(m);
    m->h_dirty = 1;
    *n = m->n_params;
    return m->params;
}

const al_param *al_model_params_ro(al_model *m, int *n) {
    grads_settle(m);
    *n = m->n_params;
    return m->params;
}

size_t al_model_num_params(const al_model *m, int trainable_only) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (!trainable_only || m->params[i].g) n += m->params[i].n;
    return n;
}

void al_model_freeze_base(al_model *m) {
    if (alloc_grads(m, 1)) AL_ASSERT(!"out of memory shrinking gradients");
}

void al_model_drop_grads(al_model *m) {
    al_free_pages(m->grad, m->n_grad * sizeof(float));
    m->grad = NULL;
    m->n_grad = 0;
    m->grad_defer = 0;
    for (int i = 0; i < m->n_params; i++) m->params[i].g = NULL;
}

void al_model_set_adapters(al_model *m, int on) { m->adapters_on = on; }



static void fill_normal(float *w, size_t n, float std, al_rng *r) {
    for (size_t i = 0; i < n; i++) w[i] = std * al_rng_normal(r);
}

static void init_param(al_model *m, al_param *p, al_rng *r);

static void init_params(al_model *m, uint64_t seed, int lora_only) {
    al_model_w_written(m);
    al_rng r;
    al_rng_seed(&r, seed);
    for (int i = 0; i < m->n_params; i++) {
        al_param *p = &m->params[i];
        if (lora_only && !p->lora) continue;
        if (p->w) {
            init_param(m, p, &r);
            if (p->h) al_bf16_round(p->h, p->w, p->n);
            continue;
        }
        /* a matrix held in bf16 alone: drawn in fp32, then rounded */
        al_param tmp = *p;
        tmp.w = malloc(p->n * sizeof(float));
        AL_ASSERT(tmp.w);
        init_param(m, &tmp, &r);
        al_bf16_round(p->h, tmp.w, p->n);
        free(tmp.w);
    }
}

static void init_param(al_model *m, al_param *p, al_rng *r) {
    const al_model_config *c = &m->cfg;
    float std = c->init_range > 0 ? c->init_range : 0.02f;
    const char *nm = p->name;
    size_t len = strlen(nm);
    int is_bias = len > 5 && strcmp(nm + len - 5, ".bias") == 0;
    int is_norm = strstr(nm, "ln_") || strstr(nm, "layernorm") || strstr(nm, "norm.weight");
    if (p->lora) {
        if (strstr(nm, "lora_A")) {
            /* kaiming_uniform_(a=sqrt(5)) as PEFT: bound = 1/sqrt(fan_in) */
            float bound = 1.0f / sqrtf((float)p->shape[1]);
            for (size_t k = 0; k < p->n; k++) p->w[k] = bound * (2.0f * al_rng_uniform(r) - 1.0f);
        } else {
            memset(p->w, 0, p->n * sizeof(float));
        }
    } else if (is_bias) {
        memset(p->w, 0, p->n * sizeof(float));
    } else if (is_norm && p->ndim == 1) {
        /* Gemma's norms act as (1 + w): transformers initialises w to 0 */
        float one = c->norm_offset ? 0.0f : 1.0f;
        for (size_t k = 0; k < p->n; k++) p->w[k] = one;
    } else {
        float s = std;
        /* GPT-2's scheme: residual projections scaled by 1/sqrt(2 n_layer). */
        if (c->arch == AL_ARCH_GPT2 && len > 14 && strcmp(nm + len - 14, "c_proj.weight") == 0)
            s = std / sqrtf(2.0f * (float)c->n_layers);
        fill_normal(p->w, p->n, s, r);
    }
}

void al_model_init(al_model *m, uint64_t seed) { init_params(m, seed, 0); }

void al_model_init_lora(al_model *m, uint64_t seed) { init_params(m, seed, 1); }

void al_model_set_temperature(al_model *m, float temperature) {
    m->inv_temp = temperature > 0 ? 1.0f / temperature : 1.0f;
}

al_model *al_model_new_shared(al_model *base, const al_lora_cfg *lora, uint64_t seed, char err[AL_ERRLEN]) {
    if (!lora || lora->r <= 0) {
        al_err(err, AL_EINVAL, "a shared-base model needs LoRA adapters");
        return NULL;
    }
    al_model_config c = base->cfg;
    c.has_score = 1;
    if (c.num_labels <= 0) c.num_labels = 1;
    al_model *m = calloc(1, sizeof *m);
    if (!m) goto nomem;
    m->cfg = c;
    m->lora_cfg = *lora;
    m->lora_scale = lora->alpha / (float)lora->r;
    m->adapters_on = 1;
    m->inv_temp = 1.0f;
    m->shared_base = 1;
    m->QKV = base->QKV;
    m->UPW = base->UPW;
    if (build_params(m)) goto nomem;
    if (m->n_lora == 0) {
        al_err(err, AL_EINVAL, "lora: target_modules \"%s\" match no module", lora->targets);
        al_model_free(m);
        return NULL;
    }
    /* own storage only for the adapters and the head; the rest aliases base */
    m->bf16 = base->bf16;
    size_t own = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].lora || i == m->score) own += m->params[i].n;
    m->n_data = own;
    m->data = al_alloc_pages(own * sizeof(float));
    if (!m->data) goto nomem;
    if (m->bf16) {
        m->n_data16 = own;
        m->data16 = al_alloc_pages(own * sizeof(uint16_t));
        if (!m->data16) goto nomem;
    }
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        al_param *p = &m->params[i];
        if (p->lora || i == m->score) {
            p->w = m->data + off;
            p->h = m->bf16 ? m->data16 + off : NULL;
            off += p->n;
            continue;
        }
        p->w = NULL;
        p->h = NULL;
        int found = 0;
        for (int j = 0; j < base->n_params && !found; j++)
            if (!base->params[j].lora && !strcmp(base->params[j].name, p->name) && base->params[j].n == p->n) {
                p->w = base->params[j].w;
                p->h = base->params[j].h;
                p->wt = base->params[j].wt;
                found = 1;
            }
        if (!found) {
            al_err(err, AL_ESHAPE, "shared base: %s not found", p->name);
            al_model_free(m);
            return NULL;
        }
    }
    if (alloc_grads(m, 1)) goto nomem;
    init_params(m, seed, 1);
    al_rng r;
    al_rng_seed(&r, seed ^ 0x5C0E5C0Eull);
    fill_normal(m->params[m->score].w, m->params[m->score].n, c.init_range > 0 ? c.init_range : 0.02f, &r);
    al_model_w_written(m);
    if (c.arch == AL_ARCH_LLAMA && rope_alloc(m)) goto nomem;
    return m;
nomem:
    al_err(err, AL_ENOMEM, "out of memory allocating a shared-base model");
    al_model_free(m);
    return NULL;
}

int al_model_add_score_head(al_model *m, uint64_t seed) {
    if (m->score >= 0) return AL_OK;
    /* The arenas are rebuilt: copy weights into a model with the head. */
    al_model_config c = m->cfg;
    c.has_score = 1;
    if (c.num_labels <= 0) c.num_labels = 1;
    char err[AL_ERRLEN];
    al_model *n = al_model_new_dt(&c, m->lora_cfg.r > 0 ? &m->lora_cfg : NULL, m->n_grad == 0,
                                   m->bf16, err);
    if (!n) return AL_ENOMEM;
    for (int i = 0; i < m->n_params; i++) {
        AL_ASSERT(strcmp(m->params[i].name, n->params[i < n->score ? i : i + 1].name) == 0);
    }
    for (int i = 0; i < m->n_params; i++) {
        int j = i < n->score ? i : i + 1;
        param_copy(&n->params[j], &m->params[i]);
    }
    al_rng r;
    al_rng_seed(&r, seed);
    al_param *sp = &n->params[n->score];
    float *hv = malloc(sp->n * sizeof(float));
    if (!hv) {
        al_model_free(n);
        return AL_ENOMEM;
    }
    fill_normal(hv, sp->n, c.init_range > 0 ? c.init_range : 0.02f, &r);
    al_param_set(sp, hv);
    free(hv);
    if (m->n_grad == 0) {
        /* m was inference-only: keep it so */
        al_free(n->grad);
        n->grad = NULL;
        n->n_grad = 0;
        for (int i = 0; i < n->n_params; i++) n->params[i].g = NULL;
    }
    /* m takes n's contents; the old arrays are freed with n. */
    al_model tmp = *m;
    *m = *n;
    *n = tmp;
    m->resB = m->resT = 0;
    al_model_free(n);
    return AL_OK;
}

/* ---- activations -------------------------------------------------------- */

/* 1 when the MLP's activation is not gated (GPT-2's gelu): its gradient
 * d_h1 is d_h2 scaled in place, and the two share a buffer. */
static int act_inplace(const al_model *m) { return m->cfg.arch == AL_ARCH_GPT2; }

/* The most adapters on one layer (each has an (N, r) buffer in lora_t). */
static int max_lora_per_layer(const al_model *m) {
    int max_lora = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        int k = 0;
        for (int j = 0; j < LIN_COUNT; j++) k += m->layers[l].lin[j].n_lora;
        if (k > max_lora) max_lora = k;
    }
    return max_lora;
}

/* The fused maps (bit j: map j) whose backward reads their input: a trained
 * weight, or an adapter whose A trains (d A = d t^T x). A frozen base map
 * with no such adapter needs only its weight to pass the gradient on. */
static int lin_need(const al_model *m) {
    int mask = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < LIN_COUNT; j++) {
            const al_linear *L = &m->layers[l].lin[j];
            int need = PG((al_model *)m, L->w) != NULL;
            for (int k = 0; k < L->n_lora; k++)
                need |= PG((al_model *)m, m->lora[L->first_lora + k].pA) != NULL;
            if (need) mask |= 1 << j;
        }
    return mask;
}

/* A model in another's activations: its views, from the owner's current reservation. */
static void act_sync(al_model *m) {
    const al_model *o = m->act_owner;
    m->resB = o->resB;
    m->resT = o->resT;
    m->flags = o->flags;
    if (o->acts) memcpy(m->acts, o->acts, (size_t)m->cfg.n_layers * sizeof *m->acts);
    m->res = o->res;
    m->lnf = o->lnf;
    m->lnf_mean = o->lnf_mean;
    m->lnf_rstd = o->lnf_rstd;
    m->lse = o->lse;
    m->ent = o->ent;
    m->d_res = o->d_res;
    m->d_ln = o->d_ln;
    m->d_qkv = o->d_qkv;
    m->d_atty = o->d_atty;
    m->d_h1 = o->d_h1;
    m->d_h2 = o->d_h2;
    m->d_lora = o->d_lora;
    m->d_post = o->d_post;
    m->d_qk = o->d_qk;
    m->head_scratch = o->head_scratch;
    m->head_chunk = o->head_chunk;
    m->head_dlogp = o->head_dlogp;
    m->head_tgt = o->head_tgt;
    m->pos_buf = o->pos_buf;
    m->s16 = o->s16;
    m->s16_len = o->s16_len;
    m->keep = o->keep;
    m->x_tmp = o->x_tmp;
}

int al_model_share_activations(al_model *m, al_model *owner, char err[AL_ERRLEN]) {
    const al_model_config *a = &m->cfg, *b = &owner->cfg;
    if (m == owner || owner->act_owner || a->arch != b->arch || a->n_layers != b->n_layers || a->C != b->C ||
        a->NH != b->NH || a->NKV != b->NKV || a->HD != b->HD || a->FF != b->FF || a->V != b->V ||
        a->max_T != b->max_T || m->QKV != owner->QKV || m->UPW != owner->UPW ||
        a->qk_norm != b->qk_norm || a->post_norm != b->post_norm ||
        (a->final_softcap > 0) != (b->final_softcap > 0) || a->residual_scale != b->residual_scale)
        return al_err(err, AL_EINVAL, "models of different shapes cannot share activations");
    if (m->lora_cfg.r > 0 &&
        (m->lora_cfg.r != owner->lora_cfg.r || max_lora_per_layer(m) > max_lora_per_layer(owner)))
        return al_err(err, AL_EINVAL, "adapters of a different rank or number cannot share activations");
    if (m->bf16 != owner->bf16)
        return al_err(err, AL_EINVAL, "a bf16 and an fp32 model cannot share activations");
    if (!m->acts) {
        m->acts = calloc((size_t)a->n_layers, sizeof *m->acts);
        if (!m->acts) return al_err(err, AL_ENOMEM, "out of memory");
    }
    /* the owner keeps the product inputs this model's backward reads too */
    int need = lin_need(m);
    if (need & ~(owner->keep_more | lin_need(owner))) {
        owner->keep_more |= need;
        int rc = owner->act ? al_model_reserve(owner, owner->resB, owner->resT, owner->flags, err) : AL_OK;
        if (rc) return rc;
    }
    al_free_pages(m->act, m->n_act * sizeof(float));
    m->act = NULL;
    m->n_act = 0;
    m->act_owner = owner;
    act_sync(m);
    return AL_OK;
}

/* The sizes of a reservation (al_model_reserve). */
typedef struct act_plan {
    size_t B, T, N, n_sets, n_res, per_layer, n_bwd, head, n_dpost, n_dqk, tmp, total;
    size_t per16, n16;     /* bf16 arena: per set, and all (the products' scratch first) */
    size_t s16;            /* that scratch's values (lin_scratch16, or the LM head's chunk) */
    size_t keep_ln1, keep_ln2, keep_h2;   /* values per set kept of each (0: not kept) */
    size_t keep_h1, keep_atty, keep_qkv;  /* bf16 values of h1 / atty / qkv kept per set (bf16 training; else fp32) */
    size_t keep_lora;                     /* and of the adapters' t */
    int keep, fwd_only, chunk;
} act_plan;

/* The LM head's chunk: rows whose logits exist at once (al_lmhead_forward).
 * A frozen head (LoRA, a reference or reward model, forward-only passes)
 * keeps 128 rows. A head that takes a gradient (full fine-tuning; GPT-2's
 * tied embedding) takes all N rows in one chunk when they fit the memory
 * rule below, else the fewest chunks that do, evened out. Why: the head's
 * products then have hundreds of rows per thread, the weight gradient's sum
 * runs over the whole chunk in one product (not 128 rows at a time into the
 * V x C gradient), and with one chunk the backward reuses the forward's
 * logits instead of recomputing them. The memory rule: a chunk's fp32
 * logits (in bf16 mode plus their rounded copy) are at most 2C x V floats,
 * twice the head's gradient, while training the head holds its weight,
 * gradient and two AdamW moments of V x C each; or at most 64 MiB, however
 * small the head; and never more rows than the batch has (HF/TRL
 * materialise all N x V logits, and again for their log-softmax). */
static int head_chunk_rows(const al_model *m, size_t N, int fwd_only) {
    size_t rows = 128;
    if (!fwd_only && m->head >= 0 && m->params[m->head].g) {
        size_t most = 2 * (size_t)m->cfg.C, budget = ((size_t)64 << 20) / sizeof(float) / (size_t)m->cfg.V;
        if (most < budget) most = budget;
        if (most < rows) most = rows;
        size_t parts = (N + most - 1) / most;
        rows = (N + parts - 1) / parts;
        rows = (rows + 31) & ~(size_t)31; /* whole 32-row blocks per chunk */
        if (rows > most) rows = most;
    }
    return (int)(N < rows ? N : rows);
}

/* Rounded up to 64 bytes of bf16 values, so each kept input starts aligned. */
static size_t h16_round(size_t n) { return (n + 31) & ~(size_t)31; }

/* The backward's wide buffers share one region of this many floats a row:
 * d_h1 and d_h2 (the same buffer when the activation is not gated: its
 * backward scales d_h2 into d_h1 in place), then, once they are dead,
 * d_qkv and d_atty side by side (layer_backward). A forward in bf16
 * training uses them in the same order (q|k|v and the attention output,
 * then h1 and h2). The LM head's chunk (head_scratch) shares the region
 * too: the head runs after the layers in a forward and before them in a
 * backward, so the region is free while it runs (act_take). */
static size_t bwd_wide(const al_model *m) {
    const al_model_config *c = &m->cfg;
    size_t mlp = (size_t)m->UPW + (act_inplace(m) ? 0 : (size_t)c->FF);
    size_t att = (size_t)m->QKV + (size_t)c->NH * (size_t)c->HD;
    return mlp > att ? mlp : att;
}

/* The bf16 scratch (s16) of a layer's fused maps, one map at a time, for a
 * reservation keeping the inputs in `keep` (bit j: map j's backward reads
 * its input): a forward's rounded input (N, in) and then an adapter's
 * rounded t (N, r) (linear_forward); a backward's rounded dout (N, out),
 * then the input when the backward reads it from s16 (rounded or computed
 * again there) and the adapter's t after them (linear_backward_bf16). Every
 * map counts an adapter when the model has any (a model sharing these
 * activations may adapt other maps), and the value head its (N, C + labels). */
static size_t lin_scratch16(const al_model *m, size_t N, int keep) {
    const al_model_config *c = &m->cfg;
    size_t r = m->lora_cfg.r > 0 ? (size_t)m->lora_cfg.r : 0;
    size_t most = (size_t)c->C + (size_t)(c->num_labels > 0 ? c->num_labels : 0);
    for (int l = 0; l < c->n_layers; l++)
        for (int j = 0; j < LIN_COUNT; j++) {
            const al_linear *L = &m->layers[l].lin[j];
            size_t in = (size_t)L->in, out = (size_t)L->out;
            size_t fwd = in + r, bwd = out + ((keep >> j & 1) ? in : 0) + r;
            most = fwd > most ? fwd : most;
            most = bwd > most ? bwd : most;
        }
    return N * most;
}

static void act_plan_make(const al_model *m, int B, int T, int flags, act_plan *pl) {
    const al_model_config *c = &m->cfg;
    size_t N = (size_t)B * (size_t)T, C = (size_t)c->C, L = (size_t)c->n_layers;
    size_t AH = (size_t)c->NH * (size_t)c->HD, r = (size_t)m->lora_cfg.r, FF = (size_t)c->FF;
    size_t QK = (size_t)(c->NH + c->NKV) * (size_t)c->HD;
    int has_ln1 = 0, has_ln2 = 0;
    for (int l = 0; l < c->n_layers; l++) {
        has_ln1 |= m->layers[l].ln1_w >= 0;
        has_ln2 |= m->layers[l].ln2_w >= 0;
    }
    memset(pl, 0, sizeof *pl);
    pl->B = (size_t)B;
    pl->T = (size_t)T;
    pl->N = N;
    pl->fwd_only = (flags & AL_MODEL_FORWARD_ONLY) != 0;
    pl->keep = pl->fwd_only ? 0 : lin_need(m) | m->keep_more;
    /* a map's input is kept when its backward reads it and it is the
     * output of a norm or the activation (the other inputs are kept anyway);
     * in bf16 a norm's output is not kept but computed again in the backward
     * (norm16_again), unless keep_norms16 */
    int norms = !m->bf16 || m->keep_norms16;
    pl->keep_ln1 = has_ln1 && norms && (pl->keep & 1 << LIN_QKV) ? N * C : 0;
    pl->keep_ln2 = has_ln2 && norms && (pl->keep & 1 << LIN_UP) ? N * C : 0;
    pl->keep_h2 = (pl->keep & 1 << LIN_DOWN) ? N * FF : 0;
    size_t n_qk = c->qk_norm ? N * QK + N * (size_t)(c->NH + c->NKV) : 0;
    size_t n_post = c->post_norm ? 2 * N * C + 2 * N : 0;
    /* bf16 training keeps h1 as the bf16 values the activation read */
    pl->keep_h1 = m->bf16 && !pl->fwd_only ? N * (size_t)m->UPW : 0;
    /* and the attention's output as the bf16 copy its projection read */
    pl->keep_atty = m->bf16 && !pl->fwd_only ? N * AH : 0;
    /* and q|k|v as the attention's bf16 tile products read them */
    pl->keep_qkv = m->bf16 && !pl->fwd_only ? N * (size_t)m->QKV : 0;
    size_t kept32 = m->bf16 ? 0 : pl->keep_ln1 + pl->keep_ln2 + pl->keep_h2;
    /* the adapters' t: bf16 training keeps only its rounded copy (lora_buf) */
    size_t n_lora = N * r * (size_t)max_lora_per_layer(m);
    pl->keep_lora = m->bf16 && !pl->fwd_only ? n_lora : 0;
    pl->per_layer = N * C + N * 4 + (pl->keep_qkv ? 0 : N * (size_t)m->QKV) + (size_t)B * c->NH * T +
                    (pl->keep_atty ? 0 : N * AH) +
                    (pl->keep_h1 ? 0 : N * (size_t)m->UPW) + (pl->keep_lora ? 0 : n_lora) + n_qk +
                    n_post + kept32;
    pl->per16 = m->bf16 ? h16_round(pl->keep_ln1) + h16_round(pl->keep_ln2) + h16_round(pl->keep_h2) +
                              h16_round(pl->keep_h1) + h16_round(pl->keep_atty) + h16_round(pl->keep_qkv) +
                              h16_round(pl->keep_lora)
                        : 0;
    pl->n_sets = (flags & (AL_MODEL_GRAD_CKPT | AL_MODEL_FORWARD_ONLY)) ? 1 : L;
    /* forward only: layer l reads residual buffer l % 2 and writes the other */
    pl->n_res = pl->fwd_only ? 2 : L + 1;
    /* backward buffers; forward only keeps N floats of d_h2, the log-prob
     * scratch of a forward whose caller wants no log-probs */
    pl->n_dpost = c->post_norm || (c->residual_scale > 0 && c->residual_scale != 1.0f) ? N * C : 0;
    pl->n_dqk = c->qk_norm ? N * QK : 0;
    pl->n_bwd = pl->fwd_only ? N : N * C * 2 + N * bwd_wide(m) + N * (r ? r : 1) + pl->n_dpost + pl->n_dqk;
    /* the inputs not kept go through x_tmp, which is d_h1 (free in a forward)
     * when there is one wide enough; bf16 training puts them in d_ln and d_h2
     * instead (layer_forward) */
    size_t wide = C > FF ? C : FF;
    int all_kept = pl->keep_h1 || (!m->bf16 && (!has_ln1 || pl->keep_ln1) && (!has_ln2 || pl->keep_ln2) && pl->keep_h2);
    pl->tmp = all_kept || (!pl->fwd_only && (size_t)m->UPW >= wide) ? 0 : N * wide;
    pl->chunk = head_chunk_rows(m, N, pl->fwd_only);
    /* the LM head's chunk: hidden rows and logits, and with a final soft-cap the cap's derivative */
    pl->head = (size_t)pl->chunk * (C + (size_t)c->V * (c->final_softcap > 0 ? 2 : 1));
    /* a training reservation's head chunk lies over the wide region (bwd_wide) */
    size_t wide_head = pl->fwd_only ? pl->head : (pl->head > N * bwd_wide(m) ? pl->head - N * bwd_wide(m) : 0);
    /* the final norm's output: its own N x C only forward-only (act_take) */
    /* + a training reservation's copy of a fused head's dlogp and targets
     * (al_model_forward with al_fwd.dlogp) */
    pl->total = pl->n_res * N * C + pl->n_sets * pl->per_layer + (pl->fwd_only ? N * C : 0) + 4 * N +
                pl->n_bwd + wide_head + pl->tmp + N + (pl->fwd_only ? 0 : 2 * N);
    /* bf16: the rounded operands of the products (one layer's linear maps
     * at a time, or one chunk of the LM head), then the kept inputs */
    if (m->bf16) {
        size_t n16 = lin_scratch16(m, N, pl->keep), head16 = (size_t)pl->chunk * (C + (size_t)c->V);
        pl->s16 = n16 > head16 ? n16 : head16;
        pl->n16 = h16_round(pl->s16) + pl->n_sets * pl->per16;
    }
}

/* Lays one set of layer activations out from *p (fp32) and *h (bf16). */
static void act_set_take(const al_model *m, const act_plan *pl, al_acts *a, float **pp, uint16_t **hh) {
    const al_model_config *c = &m->cfg;
    size_t N = pl->N, C = (size_t)c->C, AH = (size_t)c->NH * (size_t)c->HD;
    size_t QK = (size_t)(c->NH + c->NKV) * (size_t)c->HD, FF = (size_t)c->FF;
    float *p = *pp;
    uint16_t *h = *hh;
#define TAKE(ptr, count) do { (ptr) = p; p += (count); } while (0)
#define TAKE_KEPT(f, hp, count)                                                   \
    do {                                                                          \
        (f) = NULL;                                                               \
        (hp) = NULL;                                                              \
        if (!(count)) break;                                                      \
        if (m->bf16) { (hp) = h; h += h16_round(count); } else TAKE(f, count);    \
    } while (0)
/* kept16 values in bf16 when the plan keeps them so, else count32 in fp32 */
#define TAKE_EITHER(f, hp, kept16, count32)                                       \
    do {                                                                          \
        if (kept16) { (hp) = h; h += h16_round(kept16); } else TAKE(f, count32);  \
    } while (0)
    memset(a, 0, sizeof *a);
    TAKE_KEPT(a->ln1, a->ln1_h, pl->keep_ln1);
    TAKE(a->ln1_mean, N);
    TAKE(a->ln1_rstd, N);
    TAKE_EITHER(a->qkv, a->qkv_h, pl->keep_qkv, N * (size_t)m->QKV);
    TAKE(a->lse, pl->B * (size_t)c->NH * pl->T);
    TAKE_EITHER(a->atty, a->atty_h, pl->keep_atty, N * AH);
    TAKE(a->mid, N * C);
    TAKE_KEPT(a->ln2, a->ln2_h, pl->keep_ln2);
    TAKE(a->ln2_mean, N);
    TAKE(a->ln2_rstd, N);
    TAKE_EITHER(a->h1, a->h1_h, pl->keep_h1, N * (size_t)m->UPW);
    TAKE_KEPT(a->h2, a->h2_h, pl->keep_h2 ? N * FF : 0);
    TAKE_EITHER(a->lora_t, a->lora_t16, pl->keep_lora, N * (size_t)m->lora_cfg.r * (size_t)max_lora_per_layer(m));
    if (c->qk_norm) {
        TAKE(a->qk_raw, N * QK);
        TAKE(a->qk_rstd, N * (size_t)(c->NH + c->NKV));
    }
    if (c->post_norm) {
        TAKE(a->att_o, N * C);
        TAKE(a->pa_rstd, N);
        TAKE(a->mlp_o, N * C);
        TAKE(a->pf_rstd, N);
    }
#undef TAKE_EITHER
#undef TAKE_KEPT
#undef TAKE
    *pp = p;
    *hh = h;
}

/* Lays the whole reservation out in act (fp32) and act16 (bf16). */
static void act_take(al_model *m, const act_plan *pl) {
    const al_model_config *c = &m->cfg;
    size_t N = pl->N, C = (size_t)c->C, L = (size_t)c->n_layers;
    size_t r = (size_t)m->lora_cfg.r;
    float *p = m->act;
    uint16_t *h = m->act16 ? m->act16 + (pl->n16 - pl->n_sets * pl->per16) : NULL;
#define TAKE(ptr, count) do { (ptr) = p; p += (count); } while (0)
    TAKE(m->res, pl->n_res * N * C);
    for (size_t s = 0; s < pl->n_sets; s++) act_set_take(m, pl, &m->acts[s], &p, &h);
    for (size_t s = pl->n_sets; s < L; s++) m->acts[s] = m->acts[0];
    /* lnf: a training reservation's lies in d_res (below): the forward
     * writes it after the layers, the backward reads it in the heads and
     * then zeroes d_res for the final norm's d x */
    if (pl->fwd_only) TAKE(m->lnf, N * C);
    TAKE(m->lnf_mean, N);
    TAKE(m->lnf_rstd, N);
    TAKE(m->lse, N);
    TAKE(m->ent, N);
    m->d_post = m->d_qk = NULL;
    if (pl->fwd_only) {
        m->d_res = m->d_ln = m->d_qkv = m->d_atty = m->d_h1 = m->d_lora = NULL;
        TAKE(m->d_h2, N);
    } else {
        if (pl->n_dpost) TAKE(m->d_post, pl->n_dpost);
        if (pl->n_dqk) TAKE(m->d_qk, pl->n_dqk);
        TAKE(m->d_res, N * C);
        m->lnf = m->d_res;
        TAKE(m->d_ln, N * C);
        TAKE(m->d_lora, N * (r ? r : 1));
        /* one region (bwd_wide): d_h1 | d_h2, later d_qkv | d_atty; the
         * head's chunk over it (whichever is longer sets its length) */
        m->d_h1 = m->d_qkv = m->head_scratch = p;
        m->d_h2 = act_inplace(m) ? m->d_h1 : m->d_h1 + N * (size_t)m->UPW;
        m->d_atty = m->d_qkv + N * (size_t)m->QKV;
        p += N * bwd_wide(m) > pl->head ? N * bwd_wide(m) : pl->head;
    }
    if (pl->fwd_only) TAKE(m->head_scratch, pl->head);
    m->x_tmp = m->d_h1;
    if (pl->tmp) TAKE(m->x_tmp, pl->tmp);
    m->pos_buf = (int32_t *)p;
    p += N;
    m->head_dlogp = NULL;
    m->head_tgt = NULL;
    if (!pl->fwd_only) {
        TAKE(m->head_dlogp, N);
        m->head_tgt = (int32_t *)p;
        p += N;
    }
#undef TAKE
    AL_ASSERT((size_t)(p - m->act) == pl->total);
    AL_ASSERT(!h || h == m->act16 + pl->n16);
}

int al_model_reserve(al_model *m, int B, int T, int flags, char err[AL_ERRLEN]) {
    const al_model_config *c = &m->cfg;
    if (B <= 0 || T <= 0) return al_err(err, AL_EINVAL, "batch must be at least 1x1");
    if (T > c->max_T)
        return al_err(err, AL_ERANGE, "sequence length %d exceeds the model's context %d", T, c->max_T);
    int fwd_only = (flags & AL_MODEL_FORWARD_ONLY) != 0;
    int keep = fwd_only ? 0 : lin_need(m) | m->keep_more;
    if (m->act_owner) {
        const al_model *o = m->act_owner;
        if (o->act && B <= o->resB && T <= o->resT && flags == o->flags && !(keep & ~o->keep)) return AL_OK;
        return al_err(err, AL_EINVAL, "the activations this model shares hold %d x %d (flags %d), not %d x %d "
                      "(flags %d)", o->resB, o->resT, o->flags, B, T, flags);
    }
    if (m->act && B <= m->resB && T <= m->resT && flags == m->flags && (!m->bf16 || m->act16) &&
        keep == m->keep && head_chunk_rows(m, (size_t)m->resB * (size_t)m->resT, fwd_only) == m->head_chunk)
        return AL_OK;
    act_plan pl;
    act_plan_make(m, B, T, flags, &pl);
    al_acts *acts = calloc((size_t)c->n_layers, sizeof *acts);
    float *act = al_alloc_pages(pl.total * sizeof(float));
    uint16_t *act16 = pl.n16 ? al_alloc_pages(pl.n16 * sizeof(uint16_t)) : NULL;
    if (!acts || !act || (pl.n16 && !act16)) {
        free(acts);
        al_free_pages(act, pl.total * sizeof(float));
        al_free_pages(act16, pl.n16 * sizeof(uint16_t));
        return al_err(err, AL_ENOMEM, "out of memory for activations (%zu MB)",
                      (pl.total * sizeof(float) + pl.n16 * sizeof(uint16_t)) >> 20);
    }
    al_free_pages(m->act, m->n_act * sizeof(float));
    al_free_pages(m->act16, m->n_act16 * sizeof(uint16_t));
    free(m->acts);
    m->act16 = m->s16 = act16;
    m->n_act16 = pl.n16;
    m->s16_len = pl.s16;
    m->act = act;
    m->acts = acts;
    m->n_act = pl.total;
    m->resB = B;
    m->resT = T;
    m->flags = flags;
    m->keep = pl.keep;
    m->head_chunk = pl.chunk;
    m->head_gen++; /* a new arena: no logits kept */
    act_take(m, &pl);
    return AL_OK;
}

size_t al_model_memory(const al_model *m) {
    return (m->n_data + m->n_grad + m->n_act) * sizeof(float) +
           (m->n_data16 + m->n_act16) * sizeof(uint16_t);
}

size_t al_model_lin_scratch16(const al_model *m, size_t N) {
    const al_model_config *c = &m->cfg;
    /* one map at a time: its rounded dout (N, out), x (N, in) and an
     * adapter's t (N, r), so the widest map's in + out, not the widest
     * input beside the widest output (of two different maps) */
    size_t C = (size_t)c->C, AH = (size_t)c->NH * (size_t)c->HD;
    const size_t w[5] = {C + (size_t)m->QKV, AH + C, C + (size_t)m->UPW, (size_t)c->FF + C,
                         C + (size_t)(c->num_labels > 0 ? c->num_labels : 0)};
    size_t most = 0;
    for (int i = 0; i < 5; i++) most = w[i] > most ? w[i] : most;
    return N * (most + (size_t)(m->lora_cfg.r > 0 ? m->lora_cfg.r : 1));
}

/* ---- forward ------------------------------------------------------------ */

/* 1 when the map's weight is held (in, out) (al_param.wt): one frozen
 * tensor, the whole map. */
static int lin_wt(al_model *m, const al_linear *L) {
    const al_param *p = &m->params[L->w];
    AL_ASSERT(!p->wt || (p->shape[0] == L->out && !p->g));
    return p->wt;
}

/* A map's adapter buffers (N, r) each: t = x A^T in fp32 (lora_t), or in
 * bf16 training its rounded copy alone (lora_t16: what the second product
 * and the backward read), in adapter order; both NULL: none. */
typedef struct lora_buf {
    float *t;
    uint16_t *t16;
} lora_buf;

/* al_linear_forward; in bf16 mode with keep16 the rounded x goes there (the
 * backward's copy) instead of into s16, and x NULL says that keep16 (or s16)
 * holds it already. With lb.t16 an adapter's t is computed in d_lora (free
 * in a forward) and kept rounded in lb.t16. */
static void linear_forward(al_model *m, int layer, int lin, float *out, const float *x,
                           uint16_t *keep16, lora_buf lb, uint16_t *s16, int N) {
    al_linear *L = &m->layers[layer].lin[lin];
    int use = m->adapters_on && L->n_lora && (lb.t || lb.t16);
    int r = m->lora_cfg.r, wt = lin_wt(m, L);
    if (m->bf16) {
        /* s16: the rounded x (N, in) unless kept, then one adapter's rounded t (N, r) */
        uint16_t *x16 = keep16 ? keep16 : s16, *t16 = s16 + (size_t)N * (size_t)L->in;
        AL_ASSERT(s16 != m->s16 || (size_t)N * ((size_t)L->in + (use ? (size_t)r : 0)) <= m->s16_len);
        if (x) al_bf16_round(x16, x, (size_t)N * (size_t)L->in);
        if (wt) al_matmul_forward_ht(out, x16, PH(m, L->w), PW(m, L->b), N, L->in, L->out);
        else al_matmul_forward_h(out, x16, PH(m, L->w), PW(m, L->b), N, L->in, L->out);
        for (int k = 0; use && k < L->n_lora; k++) {
            const al_lora_mod *lm = &m->lora[L->first_lora + k];
            float *t = lb.t ? lb.t + (size_t)k * N * r : m->d_lora;
            uint16_t *tk16 = lb.t16 ? lb.t16 + (size_t)k * N * r : t16;
            al_gemm_bf16(0, 1, N, r, lm->in, 1.0f, x16, lm->in, PH(m, lm->pA), lm->in, 0.0f, t, r);
            al_bf16_round(tk16, t, (size_t)N * (size_t)r);
            al_gemm_bf16(0, 1, N, lm->out, r, m->lora_scale, tk16, r, PH(m, lm->pB), r, 1.0f,
                         out + lm->off, L->out);
        }
        return;
    }
    if (wt) al_matmul_forward_t(out, x, PW(m, L->w), PW(m, L->b), N, L->in, L->out);
    else al_matmul_forward(out, x, PW(m, L->w), PW(m, L->b), N, L->in, L->out);
    for (int k = 0; use && k < L->n_lora; k++) {
        const al_lora_mod *lm = &m->lora[L->first_lora + k];
        float *t = lb.t + (size_t)k * N * r;
        al_gemm(0, 1, N, r, lm->in, 1.0f, x, lm->in, PW(m, lm->pA), lm->in, 0.0f, t, r);
        al_gemm(0, 1, N, lm->out, r, m->lora_scale, t, r, PW(m, lm->pB), r, 1.0f,
                out + lm->off, L->out);
    }
}

void al_linear_forward(al_model *m, int layer, int lin, float *out, const float *x,
                       float *lora_t, uint16_t *s16, int N) {
    linear_forward(m, layer, lin, out, x, NULL, (lora_buf){lora_t, NULL}, s16, N);
}

/* A map's adapter buffers inside a layer's lora_t or lora_t16. */
static lora_buf lora_slot(const al_model *m, int layer, int lin, const al_acts *a, int N) {
    const al_layer *ly = &m->layers[layer];
    size_t k = 0;
    for (int j = 0; j < lin; j++) k += (size_t)ly->lin[j].n_lora;
    k *= (size_t)N * (size_t)m->lora_cfg.r;
    return (lora_buf){a->lora_t ? a->lora_t + k : NULL, a->lora_t16 ? a->lora_t16 + k : NULL};
}

void al_model_norm(al_model *m, float *out, float *mean, float *rstd, const float *x, int w,
                   int b, int N) {
    const al_model_config *c = &m->cfg;
    if (c->arch == AL_ARCH_GPT2)
        al_layernorm_forward(out, mean, rstd, x, PW(m, w), PW(m, b), N, c->C, c->norm_eps);
    else if (c->norm_offset)
        al_rmsnorm_groups_forward(out, rstd, x, PW(m, w), 1.0f, c->C, c->C, N, 1, c->C, c->norm_eps);
    else
        al_rmsnorm_forward(out, rstd, x, PW(m, w), N, c->C, c->norm_eps);
}

/* al_model_norm, in bf16 mode also rounding the rows into out16 for the
 * product that reads them (fewer passes over the rows). Returns 1 when it
 * did, 0 when only out was written (the groups' norm of norm_offset). When
 * it returns 1, out may hold nothing (RMSNorm writes only the bf16 rows). */
static int model_norm16(al_model *m, float *out, uint16_t *out16, float *mean, float *rstd,
                        const float *x, int w, int b, int N) {
    const al_model_config *c = &m->cfg;
    if (c->arch == AL_ARCH_GPT2)
        al_layernorm_forward_bf16(out16 ? NULL : out, out16, mean, rstd, x, PW(m, w), PW(m, b), N, c->C,
                                  c->norm_eps);
    else if (c->norm_offset) {
        al_model_norm(m, out, mean, rstd, x, w, b, N);
        return 0;
    } else
        al_rmsnorm_forward_bf16(out16 ? NULL : out, out16, rstd, x, PW(m, w), N, c->C, c->norm_eps);
    return out16 != NULL;
}

static void norm_backward(al_model *m, float *dx, const float *dout, const float *x,
                          const float *mean, const float *rstd, int w, int b, int N) {
    const al_model_config *c = &m->cfg;
    if (c->arch == AL_ARCH_GPT2)
        al_layernorm_backward(dx, PG(m, w), PG(m, b), dout, x, PW(m, w), mean, rstd, N, c->C);
    else if (c->norm_offset)
        al_rmsnorm_groups_backward(dx, PG(m, w), dout, x, PW(m, w), 1.0f, rstd, c->C, c->C, N, 1, c->C);
    else
        al_rmsnorm_backward(dx, PG(m, w), dout, x, PW(m, w), rstd, N, c->C);
}

void al_model_embed(al_model *m, float *out, const int32_t *ids, const int32_t *pos, int N) {
    const al_model_config *c = &m->cfg;
    /* A model in bf16 looks up its bf16 tables whether it trains or not (a
     * trained table's copy is refreshed before each forward), so a policy
     * and a frozen copy of it compute the same numbers: the reference a job
     * precomputes from the policy equals a live one, and a served model the
     * one that trained (with the fp32 tables looked up in training, a KTO
     * job's first loss against a live reference was 0.49998, not 0.5). */
    const al_param *te = P(m, m->wte), *pe = P(m, m->wpe);
    if (m->bf16) al_embed_forward_bf16(out, ids, pos, te->h, pe ? pe->h : NULL, N, c->C);
    else al_embed_forward(out, ids, pos, te->w, pe ? pe->w : NULL, N, c->C);
    /* Gemma: embeddings * sqrt(hidden) (a float32 tensor); Granite: * embedding_multiplier */
    if (c->embed_scale > 0 && c->embed_scale != 1.0f) al_scale(out, c->embed_scale, (size_t)N * c->C);
}

/* The RoPE table of layer l, NULL for a NoPE layer (and GPT-2). */
static void layer_rope(const al_model *m, int l, const float **cs, const float **sn) {
    const al_model_config *c = &m->cfg;
    *cs = *sn = NULL;
    if (c->arch != AL_ARCH_LLAMA || (c->layer_flags[l] & AL_LAYER_NOPE)) return;
    int local = (c->layer_flags[l] & AL_LAYER_LOCAL_ROPE) && m->rope_lcos;
    *cs = local ? m->rope_lcos : m->rope_cos;
    *sn = local ? m->rope_lsin : m->rope_sin;
}

/* The q/k norms' geometry: groups per row and group size of q and of k. */
static void qk_geom(const al_model_config *c, int *gq, int *gk, int *d) {
    if (c->qk_norm == AL_QK_ALL) {
        *gq = *gk = 1;
        *d = 0; /* D differs for q (NH*HD) and k (NKV*HD) */
    } else {
        *gq = c->NH;
        *gk = c->NKV;
        *d = c->HD;
    }
}

void al_layer_qk_forward(al_model *m, int l, float *qkv, float *qk_raw, float *qk_rstd,
                         const int32_t *pos, int N) {
    const al_model_config *c = &m->cfg;
    const al_layer *ly = &m->layers[l];
    const int AH = c->NH * c->HD, KH = c->NKV * c->HD, QK = AH + KH;
    float *q = qkv, *k = qkv + AH;
    if (c->qk_norm) {
        /* the raw q|k rows are kept (for backward, or in qk_raw's place a
         * per-call copy when the caller keeps none) and normed into qkv */
        AL_ASSERT(qk_raw);
        for (int n = 0; n < N; n++)
            memcpy(qk_raw + (size_t)n * QK, qkv + (size_t)n * m->QKV, (size_t)QK * sizeof(float));
        float woff = c->norm_offset ? 1.0f : 0.0f;
        int gq, gk, d;
        qk_geom(c, &gq, &gk, &d);
        al_rmsnorm_groups_forward(q, qk_rstd, qk_raw, PW(m, ly->qn_w), woff, QK, m->QKV, N, gq,
                                  d ? d : AH, c->norm_eps);
        al_rmsnorm_groups_forward(k, qk_rstd ? qk_rstd + (size_t)N * gq : NULL, qk_raw + AH,
                                  PW(m, ly->kn_w), woff, QK, m->QKV, N, gk, d ? d : KH, c->norm_eps);
    }
    const float *cs, *sn;
    layer_rope(m, l, &cs, &sn);
    /* k's heads follow q's in each row: one pass over both */
    if (cs) al_rope_forward(q, m->QKV, pos, cs, sn, N, c->NH + c->NKV, c->HD);
}

/* dqkv holds d (normed, rotated) q|k on entry and d (raw) q|k on return. */
/* Returns dqkv, or NULL when (bf16, no q/k norm, no qkv bias) the rotation
 * went straight into the qkv map's rounded dout in s16 instead
 * (linear_backward_bf16's dout NULL), dqkv left unrotated. */
static const float *layer_qk_backward(al_model *m, int l, al_acts *a, float *dqkv,
                                      const int32_t *pos, int N) {
    const al_model_config *c = &m->cfg;
    const al_layer *ly = &m->layers[l];
    const int AH = c->NH * c->HD, KH = c->NKV * c->HD, QK = AH + KH;
    const float *cs, *sn;
    layer_rope(m, l, &cs, &sn);
    if (cs && m->bf16 && !c->qk_norm && !PG(m, ly->lin[LIN_QKV].b)) {
        AL_ASSERT(ly->lin[LIN_QKV].out == m->QKV);
        al_rope_backward_bf16(m->s16, m->QKV, dqkv, m->QKV, pos, cs, sn, N, c->NH + c->NKV, c->HD);
        return NULL;
    }
    if (cs) al_rope_backward(dqkv, m->QKV, pos, cs, sn, N, c->NH + c->NKV, c->HD);
    if (!c->qk_norm) return dqkv;
    float woff = c->norm_offset ? 1.0f : 0.0f;
    int gq, gk, d;
    qk_geom(c, &gq, &gk, &d);
    al_zero(m->d_qk, (size_t)N * QK);
    al_rmsnorm_groups_backward(m->d_qk, PG(m, ly->qn_w), dqkv, a->qk_raw, PW(m, ly->qn_w), woff,
                               a->qk_rstd, QK, m->QKV, N, gq, d ? d : AH);
    al_rmsnorm_groups_backward(m->d_qk + AH, PG(m, ly->kn_w), dqkv + AH, a->qk_raw + AH,
                               PW(m, ly->kn_w), woff, a->qk_rstd + (size_t)N * gq, QK, m->QKV, N,
                               gk, d ? d : KH);
    for (int n = 0; n < N; n++)
        memcpy(dqkv + (size_t)n * m->QKV, m->d_qk + (size_t)n * QK, (size_t)QK * sizeof(float));
    return dqkv;
}

void al_layer_attn_opts(const al_model *m, int l, al_attn_opts *o) {
    const al_model_config *c = &m->cfg;
    o->scale = c->attn_scale;
    o->softcap = c->attn_softcap;
    o->window = (c->layer_flags[l] & AL_LAYER_SLIDING) ? c->window : 0;
}

void al_layer_residual(al_model *m, int l, int which, float *y, const float *res,
                       const float *branch, float *rstd, int N) {
    const al_model_config *c = &m->cfg;
    const al_layer *ly = &m->layers[l];
    size_t NC = (size_t)N * c->C;
    if (c->post_norm) al_model_norm(m, y, NULL, rstd, branch, which ? ly->pf_w : ly->pa_w, -1, N);
    else if (y != branch) memcpy(y, branch, NC * sizeof(float));
    /* Granite: residual + branch * residual_multiplier */
    if (c->residual_scale > 0 && c->residual_scale != 1.0f) al_scale(y, c->residual_scale, NC);
    al_acc(y, res, NC);
}

/* d branch from d y (dres): times residual_scale, back through the post-norm
 * when there is one. Returns where it is (dres itself when neither). */
static const float *residual_backward(al_model *m, int l, int which, const float *dres,
                                      const al_acts *a, int N) {
    const al_model_config *c = &m->cfg;
    const al_layer *ly = &m->layers[l];
    size_t NC = (size_t)N * c->C;
    int scaled = c->residual_scale > 0 && c->residual_scale != 1.0f;
    if (!scaled && !c->post_norm) return dres;
    const float *g = dres;
    if (scaled) {
        /* d_post = rs * dres, then (post-norm) into d_qk-free scratch: d_ln */
        memcpy(m->d_post, dres, NC * sizeof(float));
        al_scale(m->d_post, c->residual_scale, NC);
        g = m->d_post;
    }
    if (!c->post_norm) return g;
    float *out = scaled ? m->d_ln : m->d_post;
    al_zero(out, NC);
    norm_backward(m, out, g, which ? a->mlp_o : a->att_o, NULL, which ? a->pf_rstd : a->pa_rstd,
                  which ? ly->pf_w : ly->pa_w, -1, N);
    if (scaled) {
        memcpy(m->d_post, m->d_ln, NC * sizeof(float));
        return m->d_post;
    }
    return out;
}

void al_layer_act(const al_model *m, float *h2, float *h1, uint16_t *keep16, int N) {
    const al_model_config *c = &m->cfg;
    if (m->bf16) al_bf16_snap(h1, keep16, (size_t)N * (size_t)m->UPW);
    if (c->arch == AL_ARCH_GPT2) al_gelu_forward(h2, h1, (size_t)N * c->FF);
    else if (c->act == AL_ACT_GELU_TANH) al_geglu_forward(h2, h1, N, c->FF);
    else al_swiglu_forward(h2, h1, N, c->FF);
}

/* One block: y = mid + mlp(norm2(mid)), mid = x + attn(norm1(x)) (and the
 * families' variants: no pre-norms, post-norms, q/k norms, scaled residuals). */
static void layer_forward(al_model *m, int l, al_acts *a, const float *x, float *y,
                          const al_tokens *in, const int32_t *pos) {
    const al_model_config *c = &m->cfg;
    const al_layer *ly = &m->layers[l];
    int B = in->B, T = in->T, N = B * T, HD = c->HD;
    /* ln1, ln2 and h2 go to their kept buffer, or (not kept, or kept in
     * bf16 by the product that reads them) to x_tmp; with h1 kept in bf16
     * (bf16 training) h1 goes to d_h1, the norms to d_ln and h2 to d_h2,
     * the backward's buffers of their shapes, free in a forward (and in
     * the recompute of a checkpointed backward) */
    float *ln_tmp = a->h1_h ? m->d_ln : m->x_tmp;
    /* in bf16 mode the norms round their rows for the product that reads
     * them (into its kept copy, or into s16), which then rounds nothing */
    const float *xin = x;
    if (ly->ln1_w >= 0) {
        float *ln1 = a->ln1 ? a->ln1 : ln_tmp;
        uint16_t *ln1_16 = m->bf16 ? (a->ln1_h ? a->ln1_h : m->s16) : NULL;
        xin = model_norm16(m, ln1, ln1_16, a->ln1_mean, a->ln1_rstd, x, ly->ln1_w, ly->ln1_b, N) ? NULL : ln1;
    }
    float *qkv = a->qkv_h ? m->d_qkv : a->qkv;
    linear_forward(m, l, LIN_QKV, qkv, xin, a->ln1_h, lora_slot(m, l, LIN_QKV, a, N), m->s16, N);
    float *q = qkv, *k = qkv + c->NH * HD, *v = k + c->NKV * HD;
    const float *cs, *sn;
    layer_rope(m, l, &cs, &sn);
    if (a->qkv_h && cs && !c->qk_norm) { /* rotated and rounded (kept) in one pass */
        al_rope_forward_bf16(qkv, a->qkv_h, m->QKV, m->QKV, pos, cs, sn, N, c->NH + c->NKV, HD);
    } else {
        al_layer_qk_forward(m, l, qkv, a->qk_raw, a->qk_rstd, pos, N);
        if (a->qkv_h) al_bf16_round(a->qkv_h, qkv, (size_t)N * (size_t)m->QKV);
    }
    al_attn_opts ao;
    al_layer_attn_opts(m, l, &ao);
    float *atty = a->atty_h ? m->d_atty : a->atty;
    /* bf16: attention rounds its output rows for o_proj as it writes them */
    uint16_t *atty16 = m->bf16 ? (a->atty_h ? a->atty_h : m->s16) : NULL;
    if (a->qkv_h) { /* the tile products read q, k, v as rounded here */
        const uint16_t *q16 = a->qkv_h, *k16 = q16 + (size_t)c->NH * HD, *v16 = k16 + (size_t)c->NKV * HD;
        al_flash_attention_forward_h(atty, atty16, a->lse, q16, k16, v16, m->QKV, in->seg, B, T, c->NH,
                                     c->NKV, HD, &ao);
    } else {
        al_flash_attention_forward_bf16(atty, atty16, a->lse, q, k, v, m->QKV, in->seg, B, T, c->NH,
                                        c->NKV, HD, &ao, m->bf16);
    }
    float *ao_out = c->post_norm ? a->att_o : a->mid;
    linear_forward(m, l, LIN_O, ao_out, atty16 ? NULL : atty, a->atty_h, lora_slot(m, l, LIN_O, a, N),
                   m->s16, N);
    /* GPT-2: mid = x + attention in the pass of ln2 that reads it
     * (al_layer_residual's plain add, the same bits) */
    const int res_in_ln2 = c->arch == AL_ARCH_GPT2 && ly->ln2_w >= 0 && ao_out == a->mid &&
                           !(c->residual_scale > 0 && c->residual_scale != 1.0f);
    if (!res_in_ln2) al_layer_residual(m, l, 0, a->mid, x, ao_out, a->pa_rstd, N);
    const float *min = a->mid;
    if (res_in_ln2) { /* as model_norm16: in bf16 only the rounded rows */
        float *ln2 = m->bf16 ? NULL : a->ln2 ? a->ln2 : ln_tmp;
        uint16_t *ln2_16 = m->bf16 ? (a->ln2_h ? a->ln2_h : m->s16) : NULL;
        al_layernorm_forward_res_bf16(ln2, ln2_16, a->ln2_mean, a->ln2_rstd, a->mid, x, PW(m, ly->ln2_w),
                                      PW(m, ly->ln2_b), N, c->C, c->norm_eps);
        min = ln2;
    } else if (ly->ln2_w >= 0) {
        float *ln2 = a->ln2 ? a->ln2 : ln_tmp;
        uint16_t *ln2_16 = m->bf16 ? (a->ln2_h ? a->ln2_h : m->s16) : NULL;
        min = model_norm16(m, ln2, ln2_16, a->ln2_mean, a->ln2_rstd, a->mid, ly->ln2_w, ly->ln2_b, N) ? NULL
                                                                                                   : ln2;
    }
    float *h1 = a->h1_h ? m->d_h1 : a->h1;
    linear_forward(m, l, LIN_UP, h1, min, a->ln2_h, lora_slot(m, l, LIN_UP, a, N), m->s16, N);
    float *mo = c->post_norm ? a->mlp_o : y;
    if (a->h1_h) {
        /* bf16 training: h1 rounded (kept), the activation and h2 rounded
         * for the product in one pass, with the bits of al_layer_act's steps */
        uint16_t *h2_16 = a->h2_h ? a->h2_h : m->s16;
        if (c->arch == AL_ARCH_GPT2) al_gelu_forward_bf16(h2_16, a->h1_h, h1, (size_t)N * c->FF);
        else if (c->act == AL_ACT_GELU_TANH) al_geglu_forward_bf16(h2_16, a->h1_h, h1, N, c->FF);
        else al_swiglu_forward_bf16(h2_16, a->h1_h, h1, N, c->FF);
        linear_forward(m, l, LIN_DOWN, mo, NULL, h2_16, lora_slot(m, l, LIN_DOWN, a, N), m->s16, N);
    } else {
        float *h2 = a->h2 ? a->h2 : a->h1_h ? m->d_h2 : m->x_tmp;
        al_layer_act(m, h2, h1, a->h1_h, N);
        linear_forward(m, l, LIN_DOWN, mo, h2, a->h2_h, lora_slot(m, l, LIN_DOWN, a, N), m->s16, N);
    }
    al_layer_residual(m, l, 1, y, a->mid, mo, a->pf_rstd, N);
}

static const int32_t *positions(al_model *m, const al_tokens *in) {
    if (in->pos) return in->pos;
    for (int b = 0; b < in->B; b++)
        for (int t = 0; t < in->T; t++) m->pos_buf[(size_t)b * in->T + t] = t;
    return m->pos_buf;
}

/* The residual stream at the input of layer l (l = n_layers: the final norm's input). */
static float *res_at(const al_model *m, int l, size_t NC) {
    return m->res + (size_t)((m->flags & AL_MODEL_FORWARD_ONLY) ? (l & 1) : l) * NC;
}

static int check_batch(al_model *m, const al_tokens *in) {
    if (m->act_owner) act_sync(m);
    if (!(m->act_owner ? m->act_owner->act : m->act) || in->B > m->resB || in->T > m->resT ||
        (size_t)in->B * in->T > (size_t)m->resB * m->resT)
        return AL_EINVAL;
    const al_model_config *c = &m->cfg;
    size_t N = (size_t)in->B * in->T;
    for (size_t n = 0; n < N; n++) {
        if (in->ids[n] < 0 || in->ids[n] >= c->V) return AL_ERANGE;
        if (in->targets && in->targets[n] >= c->V) return AL_ERANGE;
        if (in->pos && (in->pos[n] < 0 || in->pos[n] >= c->max_T)) return AL_ERANGE;
    }
    return AL_OK;
}

/* The pass's length as transformers' RoPE sees it: max(position_ids) + 1. */
static int pass_len(const int32_t *pos, size_t N) {
    int32_t mx = 0;
    for (size_t n = 0; n < N; n++) mx = pos[n] > mx ? pos[n] : mx;
    return (int)mx + 1;
}

/* Temperature and Granite's logits_scaling: z = logits / logits_scaling / T. */
static float head_inv_temp(const al_model *m) {
    float ls = m->cfg.logits_scaling;
    return ls > 0 && ls != 1.0f ? m->inv_temp / ls : m->inv_temp;
}

/* The LM head's logits left in head_scratch: a forward notes whether its
 * logits stay there whole (one chunk, no soft-cap); every other pass that
 * writes head_scratch, through this model or another sharing its
 * activations, bumps the arena owner's count and so voids the note. The
 * layers write it too (a training reservation lays it over the backward's
 * wide region): a forward voids the notes before its layers, a backward
 * after its head. */
static void head_logits_note(al_model *m, int whole) {
    al_model *o = m->act_owner ? m->act_owner : m;
    o->head_gen++;
    m->head_kept = whole ? o->head_gen : 0;
    m->head_kept_temp = head_inv_temp(m);
}

/* The forward may run the LM head's backward itself (al_fwd.dlogp): a
 * head that takes no gradient (with one, the head's own chunking and the
 * reuse of one chunk's logits serve better) and no final soft-cap (Gemma
 * 2's: its backward keeps the cap's derivative beside the logits; not
 * fused), a training reservation, and log-probs asked for (else they would
 * lie in d_ln, where the fused head adds its d lnf). */
static int head_fusable(const al_model *m, const al_tokens *in, const al_fwd *out) {
    return out && out->dlogp && out->logp && in->targets && m->head >= 0 && !m->params[m->head].g &&
           !(m->cfg.final_softcap > 0) && m->head_dlogp && m->d_ln;
}

/* 1 when d_ln holds what the backward's head would add to it, given
 * dlogp and no dent: this model's forward ran the head fused with this
 * batch's targets, this dlogp (equal values) and this temperature, and no
 * pass (of this model or another in these activations) has run since. */
static int head_fused_kept(const al_model *m, const al_tokens *in, const float *dlogp, const float *dent) {
    const al_model *o = m->act_owner ? m->act_owner : m;
    size_t N = (size_t)in->B * (size_t)in->T;
    return m->head_fused && m->head_fused == o->head_gen && !dent && dlogp && in->targets &&
           in->B == m->head_fused_B && in->T == m->head_fused_T && m->head_fused_temp == head_inv_temp(m) &&
           !memcmp(dlogp, m->head_dlogp, N * sizeof *dlogp) &&
           !memcmp(in->targets, m->head_tgt, N * sizeof *in->targets);
}

/* 1 when head_scratch still holds this model's last forward's logits. */
static int head_logits_kept(const al_model *m) {
    const al_model *o = m->act_owner ? m->act_owner : m;
    return m->head_kept && m->head_kept == o->head_gen && m->head_kept_temp == head_inv_temp(m);
}

int al_model_forward(al_model *m, const al_tokens *in, al_fwd *out) {
    int rc = check_batch(m, in);
    if (rc) return rc;
    const al_model_config *c = &m->cfg;
    int N = in->B * in->T, C = c->C, L = c->n_layers;
    const int32_t *pos = positions(m, in);
    size_t NC = (size_t)N * C;
    al_model_bf16_sync(m);
    al_model_rope_prepare(m, pass_len(pos, (size_t)N));
    al_model_embed(m, res_at(m, 0, NC), in->ids, pos, N);
    head_logits_note(m, 0);
    m->head_fused = 0;
    for (int l = 0; l < L; l++)
        layer_forward(m, l, &m->acts[l], res_at(m, l, NC), res_at(m, l + 1, NC), in, pos);
    al_model_norm(m, m->lnf, m->lnf_mean, m->lnf_rstd, res_at(m, L, NC), m->lnf_w, m->lnf_b, N);
    if (in->targets && m->head >= 0) {
        /* logp goes to the caller's buffer or, as scratch, to d_ln (free
         * after the layers) or forward-only's d_h2 */
        float *logp = out && out->logp ? out->logp : m->d_ln ? m->d_ln : m->d_h2;
        int chunks, fused = head_fusable(m, in, out);
        if (fused) {
            /* d lnf into d_ln as the backward would put it: zeroed, then the
             * head's adds, the same products in the same order */
            al_zero(m->d_ln, NC);
            chunks = al_lmhead_forward_fused(logp, m->ent, m->lse, out->hit, m->d_ln, out->dlogp, m->lnf,
                                             PW(m, m->head), m->bf16 ? PH(m, m->head) : NULL, in->targets,
                                             N, C, c->V, head_inv_temp(m), m->head_scratch, m->s16,
                                             m->head_chunk);
        } else if (m->bf16)
            chunks = al_lmhead_forward_bf16(logp, m->ent, m->lse, out ? out->hit : NULL, m->lnf,
                                            PH(m, m->head), in->targets, N, C, c->V, head_inv_temp(m),
                                            c->final_softcap, m->head_scratch, m->s16, m->head_chunk);
        else
            chunks = al_lmhead_forward(logp, m->ent, m->lse, out ? out->hit : NULL, m->lnf,
                                       PW(m, m->head), in->targets, N, C, c->V, head_inv_temp(m),
                                       c->final_softcap, m->head_scratch, m->head_chunk);
        /* fused: the logits became their gradient */
        head_logits_note(m, chunks == 1 && !(c->final_softcap > 0) && !fused);
        if (fused) {
            memcpy(m->head_dlogp, out->dlogp, (size_t)N * sizeof *m->head_dlogp);
            memcpy(m->head_tgt, in->targets, (size_t)N * sizeof *m->head_tgt);
            m->head_fused = (m->act_owner ? m->act_owner : m)->head_gen;
            m->head_fused_temp = head_inv_temp(m);
            m->head_fused_B = in->B;
            m->head_fused_T = in->T;
        }
        if (out && out->entropy) memcpy(out->entropy, m->ent, (size_t)N * sizeof(float));
    }
    if (out && out->values) {
        if (m->score < 0) return AL_EINVAL;
        if (m->bf16) al_matmul_forward_bf16(out->values, m->lnf, PH(m, m->score), NULL, N, C, 1, m->s16);
        else al_matmul_forward(out->values, m->lnf, PW(m, m->score), NULL, N, C, 1);
    }
    return AL_OK;
}

/* ---- backward ----------------------------------------------------------- */

/* bf16 backward of one fused map: dout, x (unless the forward kept its
 * rounded copy, kept16) and the adapters' t and dt are rounded into s16
 * ((N, out), (N, in), (N, r)) for the products. dout NULL: the caller
 * rounded it into s16 already and summed the bias gradient, if any. */
static void linear_backward_bf16(al_model *m, al_linear *L, float *dx, int dx_fresh, const float *dout,
                                 const float *x, const uint16_t *kept16, lora_buf lb, int N) {
    int r = m->lora_cfg.r, lora = m->adapters_on && L->n_lora;
    float *gW = PG(m, L->w);
    uint16_t *d16 = m->s16, *x16 = d16 + (size_t)N * (size_t)L->out;
    int need_x = gW != NULL;
    for (int k = 0; lora && k < L->n_lora; k++) need_x |= PG(m, m->lora[L->first_lora + k].pA) != NULL;
    float *gb = PG(m, L->b);
    /* the bias gradient is a sum in fp32, as autocast's: in the pass that rounds dout */
    if (gb && dout) al_bf16_round_colsum(d16, gb, dout, N, L->out);
    else if (dout) al_bf16_round(d16, dout, (size_t)N * (size_t)L->out);
    if (need_x && kept16) x16 = (uint16_t *)kept16;
    else if (need_x) al_bf16_round(x16, x, (size_t)N * (size_t)L->in);
    /* the adapters' t after x when x is in s16 (rounded here or computed
     * again there, norm16_again), else right after dout (lin_scratch16) */
    uint16_t *t16 = d16 + (size_t)N * (size_t)L->out;
    if (need_x && x16 == t16) t16 += (size_t)N * (size_t)L->in;
    AL_ASSERT((size_t)(t16 - d16) + (lora ? (size_t)N * (size_t)r : 0) <= m->s16_len);
    /* dx (N, in) (+)= dout (N, out) @ W (out, in), W held (in, out) or not */
    int wt = lin_wt(m, L);
    if (dx)
        al_gemm_bf16(0, wt, N, L->in, L->out, 1.0f, d16, L->out, PH(m, L->w), wt ? L->out : L->in,
                     dx_fresh ? 0.0f : 1.0f, dx, L->in);
    if (gW) al_gemm_bf16(1, 0, L->out, L->in, N, 1.0f, d16, L->out, x16, L->in, m->grad_defer ? 0.0f : 1.0f, gW,
                         L->in);
    float s = m->lora_scale, *dt = m->d_lora;
    for (int k = 0; lora && k < L->n_lora; k++) {
        const al_lora_mod *lm = &m->lora[L->first_lora + k];
        const uint16_t *dsub = d16 + lm->off;
        float *gA = PG(m, lm->pA), *gB = PG(m, lm->pB);
        if (gB) { /* t as the forward's second product read it */
            const uint16_t *tk16 = lb.t16 ? lb.t16 + (size_t)k * N * r : t16;
            if (!lb.t16) al_bf16_round(t16, lb.t + (size_t)k * N * r, (size_t)N * (size_t)r);
            al_gemm_bf16(1, 0, lm->out, r, N, s, dsub, L->out, tk16, r, 1.0f, gB, r);
        }
        al_gemm_bf16(0, 0, N, r, lm->out, s, dsub, L->out, PH(m, lm->pB), r, 0.0f, dt, r);
        al_bf16_round(t16, dt, (size_t)N * (size_t)r);
        if (gA) al_gemm_bf16(1, 0, r, lm->in, N, 1.0f, t16, r, x16, lm->in, 1.0f, gA, lm->in);
        if (dx) al_gemm_bf16(0, 0, N, lm->in, r, 1.0f, t16, r, PH(m, lm->pA), lm->in, 1.0f, dx, lm->in);
    }
}

/* x (fp32) or kept16 (bf16 mode) is the map's input the forward kept, NULL
 * when it kept none (m->keep: the backward reads none). dx_fresh: dx holds
 * nothing yet (the product writes it rather than adds to it: no zeroing
 * first). */
static void linear_backward(al_model *m, int layer, int lin, float *dx, int dx_fresh, const float *dout,
                            const float *x, const uint16_t *kept16, lora_buf lb, int N) {
    al_linear *L = &m->layers[layer].lin[lin];
    AL_ASSERT(x || kept16 || !(m->keep & 1 << lin));
    if (m->bf16) {
        linear_backward_bf16(m, L, dx, dx_fresh, dout, x, kept16, lb, N);
        return;
    }
    /* al_matmul_backward's products, with their betas */
    float *gW = PG(m, L->w);
    int wt = lin_wt(m, L); /* W held (in, out): frozen, gW NULL */
    if (dx)
        al_gemm(0, wt, N, L->in, L->out, 1.0f, dout, L->out, PW(m, L->w), wt ? L->out : L->in,
                dx_fresh ? 0.0f : 1.0f, dx, L->in);
    if (gW) al_gemm(1, 0, L->out, L->in, N, 1.0f, dout, L->out, x, L->in, m->grad_defer ? 0.0f : 1.0f, gW, L->in);
    al_matmul_backward(NULL, NULL, PG(m, L->b), dout, x, NULL, N, L->in, L->out);
    if (!m->adapters_on || !L->n_lora) return;
    int r = m->lora_cfg.r;
    float s = m->lora_scale, *dt = m->d_lora;
    for (int k = 0; k < L->n_lora; k++) {
        const al_lora_mod *lm = &m->lora[L->first_lora + k];
        const float *t = lb.t + (size_t)k * N * r;
        const float *dsub = dout + lm->off;
        float *gA = PG(m, lm->pA), *gB = PG(m, lm->pB);
        /* out[:, off:off+out] += s * t @ B^T,  t = x @ A^T */
        if (gB) al_gemm(1, 0, lm->out, r, N, s, dsub, L->out, t, r, 1.0f, gB, r);
        al_gemm(0, 0, N, r, lm->out, s, dsub, L->out, PW(m, lm->pB), r, 0.0f, dt, r);
        if (gA) al_gemm(1, 0, r, lm->in, N, 1.0f, dt, r, x, lm->in, 1.0f, gA, lm->in);
        if (dx) al_gemm(0, 0, N, lm->in, r, 1.0f, dt, r, PW(m, lm->pA), lm->in, 1.0f, dx, lm->in);
    }
}

/* bf16 backward: the rounded output of a norm that the forward did not keep
 * (act_plan_make), computed again from the norm's kept input by the
 * forward's own steps, so with its bits: the norm rounding as it writes
 * (model_norm16), or its fp32 rows rounded as linear_forward rounds them.
 * The bf16 rows go where linear_backward_bf16 puts a map's rounded input
 * (s16 after the rounded dout, (N, out)); the fp32 rows to d_ln, free until
 * that map's backward writes its dx there. */
static const uint16_t *norm16_again(al_model *m, const float *x, float *mean, float *rstd, int w, int b,
                                    int out, int N) {
    uint16_t *x16 = m->s16 + (size_t)N * (size_t)out;
    if (!model_norm16(m, m->d_ln, x16, mean, rstd, x, w, b, N))
        al_bf16_round(x16, m->d_ln, (size_t)N * (size_t)m->cfg.C);
    return x16;
}

/* d_res holds d y on entry and d x on return. */
static void layer_backward(al_model *m, int l, al_acts *a, const float *x,
                           const al_tokens *in, const int32_t *pos) {
    const al_model_config *c = &m->cfg;
    const al_layer *ly = &m->layers[l];
    int B = in->B, T = in->T, N = B * T, HD = c->HD;
    size_t NC = (size_t)N * c->C;
    float *dres = m->d_res;
    /* MLP branch */
    const float *dmo = residual_backward(m, l, 1, dres, a, N);
    const float *dh1 = m->d_h1; /* NULL: rounded into s16 instead */
    linear_backward(m, l, LIN_DOWN, m->d_h2, 1, dmo, a->h2, a->h2_h, lora_slot(m, l, LIN_DOWN, a, N), N);
    if (act_inplace(m) && a->h1_h) {
        /* bf16: d h1 rounded straight into s16 for the up projection's
         * backward, its bias gradient summed in the same pass (no fp32 d h1) */
        al_gelu_backward_h16(m->s16, PG(m, ly->lin[LIN_UP].b), m->d_h2, a->h1_h, N, c->FF);
        dh1 = NULL;
    } else if (act_inplace(m)) { /* d_h1 is d_h2; h1 as the forward's activation read it */
        AL_ASSERT(m->d_h1 == m->d_h2);
        al_gelu_backward_inplace(m->d_h1, a->h1, NULL, (size_t)N * c->FF);
    } else if (a->h1_h && !PG(m, ly->lin[LIN_UP].b)) {
        /* bf16: from the rounded h1 the forward's activation read, d h1
         * rounded straight into s16, where the up projection's backward
         * reads it (no fp32 d_h1 written and read back) */
        if (c->act == AL_ACT_GELU_TANH) al_geglu_backward_h16(m->s16, m->d_h2, a->h1_h, N, c->FF);
        else al_swiglu_backward_h16(m->s16, m->d_h2, a->h1_h, N, c->FF);
        dh1 = NULL;
    } else if (a->h1_h) { /* the same with d_h1 in fp32 for the bias; the _h kernels write d_h1 */
        if (c->act == AL_ACT_GELU_TANH) al_geglu_backward_h(m->d_h1, m->d_h2, a->h1_h, N, c->FF);
        else al_swiglu_backward_h(m->d_h1, m->d_h2, a->h1_h, N, c->FF);
    } else { /* written, not accumulated: no zeroing of d_h1 first */
        if (c->act == AL_ACT_GELU_TANH) al_geglu_backward_set(m->d_h1, m->d_h2, a->h1, N, c->FF);
        else al_swiglu_backward_set(m->d_h1, m->d_h2, a->h1, N, c->FF);
    }
    const float *min = ly->ln2_w >= 0 ? a->ln2 : a->mid;
    const uint16_t *min16 = a->ln2_h;
    if (ly->ln2_w >= 0 && !min && !min16 && (m->keep & 1 << LIN_UP))
        min16 = norm16_again(m, a->mid, a->ln2_mean, a->ln2_rstd, ly->ln2_w, ly->ln2_b, ly->lin[LIN_UP].out, N);
    linear_backward(m, l, LIN_UP, m->d_ln, 1, dh1, min, min16, lora_slot(m, l, LIN_UP, a, N), N);
    if (ly->ln2_w >= 0)
        norm_backward(m, dres, m->d_ln, a->mid, a->ln2_mean, a->ln2_rstd, ly->ln2_w, ly->ln2_b, N);
    else
        al_acc(dres, m->d_ln, NC);
    /* dres is now d mid: the attention branch */
    const float *dao = residual_backward(m, l, 0, dres, a, N);
    size_t AH = (size_t)c->NH * HD;
    linear_backward(m, l, LIN_O, m->d_atty, 1, dao, a->atty, a->atty_h, lora_slot(m, l, LIN_O, a, N), N);
    /* d_qkv is written fresh: the attention backward zeroes it as it goes */
    float *dq = m->d_qkv, *dk = dq + AH, *dv = dk + (size_t)c->NKV * HD;
    al_attn_opts ao;
    al_layer_attn_opts(m, l, &ao);
    if (a->qkv_h) {
        const uint16_t *q = a->qkv_h, *k = q + AH, *v = k + (size_t)c->NKV * HD;
        al_flash_attention_backward_h(dq, dk, dv, m->d_atty, a->atty_h, a->lse, q, k, v, m->QKV, in->seg,
                                      B, T, c->NH, c->NKV, HD, &ao, 1);
    } else {
        const float *q = a->qkv, *k = q + AH, *v = k + (size_t)c->NKV * HD;
        al_flash_attention_backward(dq, dk, dv, m->d_atty, a->atty, a->lse, q, k, v, m->QKV, in->seg, B,
                                    T, c->NH, c->NKV, HD, &ao, m->bf16, 1);
    }
    const float *dqkv = layer_qk_backward(m, l, a, m->d_qkv, pos, N);
    const float *xin = ly->ln1_w >= 0 ? a->ln1 : x;
    const uint16_t *xin16 = a->ln1_h;
    if (ly->ln1_w >= 0 && !xin && !xin16 && (m->keep & 1 << LIN_QKV))
        xin16 = norm16_again(m, x, a->ln1_mean, a->ln1_rstd, ly->ln1_w, ly->ln1_b, ly->lin[LIN_QKV].out, N);
    linear_backward(m, l, LIN_QKV, m->d_ln, 1, dqkv, xin, xin16, lora_slot(m, l, LIN_QKV, a, N), N);
    if (ly->ln1_w >= 0)
        norm_backward(m, dres, m->d_ln, x, a->ln1_mean, a->ln1_rstd, ly->ln1_w, ly->ln1_b, N);
    else
        al_acc(dres, m->d_ln, NC);
}

static atomic_long g_fused_head_backwards;

long al_model_fused_head_backwards(void) { return atomic_load(&g_fused_head_backwards); }

int al_model_backward(al_model *m, const al_tokens *in, const float *dlogp,
                      const float *dent, const float *dvalue) {
    int rc = check_batch(m, in);
    if (rc) return rc;
    if (m->flags & AL_MODEL_FORWARD_ONLY) return AL_EINVAL;
    /* the forward kept the inputs the maps' backward reads (al_model_reserve) */
    if (lin_need(m) & ~m->keep) return AL_EINVAL;
    const al_model_config *c = &m->cfg;
    int N = in->B * in->T, C = c->C, L = c->n_layers;
    size_t NC = (size_t)N * C;
    const int32_t *pos = positions(m, in);
    al_model_rope_prepare(m, pass_len(pos, (size_t)N));
    /* d lnf in d_ln, then through the final norm into d_res; a forward
     * that ran the head fused left it there, else it is computed here */
    int fused = head_fused_kept(m, in, dlogp, dent);
    m->head_fused = 0;
    if (fused) atomic_fetch_add(&g_fused_head_backwards, 1);
    if (!fused) al_zero(m->d_ln, NC);
    if (!fused && in->targets && m->head >= 0 && (dlogp || dent)) {
        if (!dlogp) { /* entropy-only gradient: a zero d logp (in d_lora, free here) */
            al_zero(m->d_lora, (size_t)N);
            dlogp = m->d_lora;
        }
        if (head_logits_kept(m))
            al_lmhead_backward_reuse(m->d_ln, PG(m, m->head), dlogp, dent, m->lnf, PW(m, m->head),
                                     m->bf16 ? PH(m, m->head) : NULL, in->targets, m->lse, m->ent, N,
                                     C, c->V, head_inv_temp(m), m->head_scratch, m->s16, m->head_chunk);
        else if (m->bf16)
            al_lmhead_backward_bf16(m->d_ln, PG(m, m->head), dlogp, dent, m->lnf, PH(m, m->head),
                                    in->targets, m->lse, m->ent, N, C, c->V, head_inv_temp(m),
                                    c->final_softcap, m->head_scratch, m->s16, m->head_chunk);
        else
            al_lmhead_backward(m->d_ln, PG(m, m->head), dlogp, dent, m->lnf, PW(m, m->head),
                               in->targets, m->lse, m->ent, N, C, c->V, head_inv_temp(m),
                               c->final_softcap, m->head_scratch, m->head_chunk);
    }
    head_logits_note(m, 0); /* the backward turned them into their gradient; the layers overwrite them */
    if (dvalue) {
        if (m->score < 0) return AL_EINVAL;
        if (m->bf16)
            al_matmul_backward_bf16(m->d_ln, PG(m, m->score), NULL, dvalue, m->lnf, PH(m, m->score), N,
                                    C, 1, m->s16);
        else
            al_matmul_backward(m->d_ln, PG(m, m->score), NULL, dvalue, m->lnf, PW(m, m->score), N, C, 1);
    }
    al_zero(m->d_res, NC);
    norm_backward(m, m->d_res, m->d_ln, m->res + (size_t)L * NC, m->lnf_mean, m->lnf_rstd,
                  m->lnf_w, m->lnf_b, N);
    if (m->grad_hook) m->grad_hook(m->grad_hook_ud, 0);
    for (int l = L - 1; l >= 0; l--) {
        const float *x = m->res + (size_t)l * NC;
        if ((m->flags & AL_MODEL_GRAD_CKPT) && l != L - 1)
            layer_forward(m, l, &m->acts[l], x, m->res + (size_t)(l + 1) * NC, in, pos);
        layer_backward(m, l, &m->acts[l], x, in, pos);
        if (m->grad_hook) m->grad_hook(m->grad_hook_ud, L - l);
    }
    m->grad_defer = 0; /* every layer map's weight gradient is written */
    if (c->embed_scale > 0 && c->embed_scale != 1.0f) al_scale(m->d_res, c->embed_scale, NC);
    al_embed_backward(PG(m, m->wte), PG(m, m->wpe), m->d_res, in->ids, pos, N, C);
    if (m->grad_hook) m->grad_hook(m->grad_hook_ud, L + 1);
    return AL_OK;
}

void al_model_set_grad_hook(al_model *m, al_grad_hook fn, void *ud) {
    m->grad_hook = fn;
    m->grad_hook_ud = ud;
}

int al_model_grad_stages(const al_model *m) { return m->cfg.n_layers + 2; }

int al_model_param_stage(const al_model *m, int i) {
    const al_param *p = &m->params[i];
    if (p->layer >= 0) return m->cfg.n_layers - p->layer;
    if (i == m->wte || i == m->wpe) return m->cfg.n_layers + 1; /* a tied head is wte */
    return 0;
}

/* Zeroes the gradient arena but (keep_maps) the trained layer maps' weight
 * gradients: each a contiguous (out, in) run, in arena order; zeroes it all
 * when they are not in that order. */
static void zero_grads(al_model *m, int keep_maps) {
    float *at = m->grad, *end = m->grad + m->n_grad;
    for (int l = 0; keep_maps && l < m->cfg.n_layers; l++)
        for (int k = 0; k < LIN_COUNT; k++) {
            const al_linear *L = &m->layers[l].lin[k];
            float *g = PG(m, L->w);
            if (!g) continue;
            if (g < at) { /* not in arena order: no map kept */
                al_zero(m->grad, m->n_grad);
                return;
            }
            al_zero(at, (size_t)(g - at));
            at = g + (size_t)L->out * (size_t)L->in;
        }
    al_zero(at, (size_t)(end - at));
}

/* The deferred zeroing done, for readers other than the backward. */
static void grads_settle(al_model *m) {
    if (!m->grad_defer) return;
    m->grad_defer = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LIN_COUNT; k++) {
            const al_linear *L = &m->layers[l].lin[k];
            if (PG(m, L->w)) al_zero(PG(m, L->w), (size_t)L->out * (size_t)L->in);
        }
}

/* A data-parallel run's hook reads the arena itself: it gets real zeros. */
void al_model_zero_grad(al_model *m) {
    if (!m->grad) return;
    int defer = !m->grad_hook;
    zero_grads(m, defer);
    m->grad_defer = defer;
}

double al_model_grad_norm(al_model *m) {
    grads_settle(m);
    return m->grad ? sqrt(al_sumsq(m->grad, m->n_grad)) : 0.0;
}

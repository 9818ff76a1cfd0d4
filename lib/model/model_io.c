/* Hugging Face folders in and out: config.json + model.safetensors (or
 * shards) for full models, adapter_config.json + adapter_model.safetensors
 * (PEFT's layout) for LoRA adapters. GPT-2's Conv1D weights are (in, out) on
 * disk and transposed to nn.Linear's (out, in) here, both ways, when they
 * train; frozen ones keep the file's layout (al_param.wt: served from the
 * mapping, or converted without the transpose) and the products take them
 * transposed, so loading GPT-2 moves no byte it does not have to. */
#include "model_impl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compute/ops.h"
#include "../io.h"
#include "safetensors.h"

/* GPT2Model checkpoints (no LM head) name tensors without "transformer.". */
static const al_st_tensor *find_tensor(const al_st_dir *d, const al_model *m, const char *name,
                                       const al_st_file **file) {
    const al_st_tensor *t = al_st_dir_find(d, name, file);
    if (!t && m->cfg.arch == AL_ARCH_GPT2 && strncmp(name, "transformer.", 12) == 0)
        t = al_st_dir_find(d, name + 12, file);
    return t;
}

/* Where a frozen tensor can be served from f's mapping: when the model
 * keeps it as the file has it (fp32 values from F32, or a matrix held in
 * bf16 alone from BF16; GPT-2's Conv1D weights in their (in, out) layout,
 * keep_layout) and the on-disk shape is right (else read_param names the
 * error). NULL: copy it. Tensors that train are always copied: the
 * optimiser writes them every step, which would copy the file's pages one
 * small page at a time (and without huge pages). */
static const void *servable(const al_st_file *f, const al_st_tensor *t, const al_param *p) {
    if (p->g) return NULL;
    if (p->w ? t->dtype != AL_DT_F32 || p->h : t->dtype != AL_DT_BF16) return NULL;
    int r = p->conv1d, ok = t->ndim == p->ndim && t->shape[0] == p->shape[r] &&
                            (p->ndim == 1 || t->shape[1] == p->shape[!r]);
    return ok ? al_st_data(f, t) : NULL;
}

/* A frozen Conv1D weight keeps the file's (in, out) layout (al_param.wt)
 * unless every tensor is to be copied as nn.Linear's (AL_OPEN_COPY, the
 * loader before serving). */
static int keep_layout(const al_param *p, int serve) { return serve && p->conv1d && !p->g && p->ndim == 2; }

/* A fused map (q|k|v, gate|up, and their biases) is one matrix: a run of
 * its tensors is served only if the file holds them back to back in the
 * run's order (gate_proj then up_proj, as a name-sorted file does; never
 * q, k, v, which sort as k, o, q, v), else all of them are copied. */
static void serve_runs(const al_model *m, const void **at) {
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < LIN_COUNT; j++) {
            const al_linear *L = &m->layers[l].lin[j];
            int first[2] = {L->w, L->b};
            for (int k = 0; k < 2; k++) {
                if (first[k] < 0) continue;
                int i = first[k], ok = 1;
                size_t rows = 0;
                const uint8_t *next = NULL;
                for (; rows < (size_t)L->out; i++) {
                    const al_param *p = &m->params[i];
                    size_t es = p->w ? 4 : 2;
                    ok &= at[i] != NULL && (rows == 0 || (const uint8_t *)at[i] == next);
                    if (at[i]) next = (const uint8_t *)at[i] + p->n * es;
                    rows += (size_t)p->shape[0];
                }
                if (!ok)
                    for (int q = first[k]; q < i; q++) at[q] = NULL;
            }
        }
}

/* Reads one tensor into p (its fp32 values, or a matrix held in bf16
 * alone), checking its on-disk shape; or, at non-NULL (servable's
 * pointer), points p there instead. keep: a Conv1D weight keeps the file's
 * layout (p->wt set on success). */
static int read_param(const al_st_file *f, const al_st_tensor *t, al_param *p, const void *at,
                      int keep, char err[AL_ERRLEN]) {
    int64_t want0 = p->conv1d ? p->shape[1] : p->shape[0];
    int64_t want1 = p->conv1d ? p->shape[0] : p->shape[1];
    int ok = p->ndim == 1 ? (t->ndim == 1 && t->shape[0] == want0)
                          : (t->ndim == 2 && t->shape[0] == want0 && t->shape[1] == want1);
    if (!ok) {
        char got[96] = "";
        size_t len = 0;
        for (int i = 0; i < t->ndim && len < sizeof got - 24; i++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", i ? ", " : "",
                                    (long long)t->shape[i]);
        if (p->ndim == 1)
            return al_err(err, AL_ESHAPE, "%s: shape [%s], expected [%lld]", p->name, got,
                          (long long)want0);
        return al_err(err, AL_ESHAPE, "%s: shape [%s], expected [%lld, %lld]", p->name, got,
                      (long long)want0, (long long)want1);
    }
    if (at) {
        const void *src = al_st_serve(f, t); /* at, with its pages mapped */
        if (p->w) p->w = (float *)(uintptr_t)src;
        else p->h = (uint16_t *)(uintptr_t)src;
        p->wt = p->conv1d;
        return AL_OK;
    }
    int tr = p->conv1d && !keep, rc;
    if (!p->w) rc = al_st_read_bf16(f, t, p->h, p->n, tr, err);
    else if (tr) rc = al_st_read_f32_t(f, t, p->w, p->n, err);
    else rc = al_st_read_f32(f, t, p->w, p->n, err);
    if (rc == AL_OK) p->wt = p->conv1d && keep;
    return rc;
}

static int load_weights(al_model *m, const char *dir, int score_optional, int serve,
                        char err[AL_ERRLEN]);

int al_model_load_weights(al_model *m, const char *dir, char err[AL_ERRLEN]) {
    return load_weights(m, dir, 0, 1, err);
}

/* Room in m for n more mappings (al_model_free unmaps them). */
static int room_for_maps(al_model *m, int n) {
    void **maps = realloc(m->maps, (size_t)(m->n_maps + n) * sizeof *maps);
    if (!maps) return -1;
    m->maps = maps;
    size_t *sizes = realloc(m->map_sizes, (size_t)(m->n_maps + n) * sizeof *sizes);
    if (!sizes) return -1;
    m->map_sizes = sizes;
    return 0;
}

static int load_weights(al_model *m, const char *dir, int score_optional, int serve,
                        char err[AL_ERRLEN]) {
    al_st_dir d;
    int rc = al_st_dir_open(&d, dir, "model", err);
    if (rc) return rc;
    al_model_w_written(m); /* fp32 weights only: the next forward rounds their bf16 copies */
    unsigned char *served = calloc((size_t)d.n_files, 1);
    const void **at = calloc((size_t)m->n_params, sizeof *at);
    if (!served || !at || room_for_maps(m, d.n_files)) {
        free(served);
        free(at);
        al_st_dir_close(&d);
        return al_err(err, AL_ENOMEM, "%s: out of memory", dir);
    }
    for (int i = 0; serve && i < m->n_params; i++) {
        const al_st_file *f;
        const al_st_tensor *t = m->params[i].lora ? NULL : find_tensor(&d, m, m->params[i].name, &f);
        if (t && (!m->params[i].conv1d || keep_layout(&m->params[i], serve)))
            at[i] = servable(f, t, &m->params[i]);
    }
    serve_runs(m, at);
    for (int i = 0; i < m->n_params && rc == AL_OK; i++) {
        al_param *p = &m->params[i];
        if (p->lora) continue;
        const al_st_file *f;
        const al_st_tensor *t = find_tensor(&d, m, p->name, &f);
        if (!t && score_optional && i == m->score) continue; /* a fresh reward head */
        if (!t) {
            rc = al_err(err, AL_EFORMAT, "%s: missing tensor %s", dir, p->name);
            break;
        }
        if (!m->load_dt && p->ndim == 2) m->load_dt = t->dtype; /* the embedding's */
        rc = read_param(f, t, p, at[i], keep_layout(p, serve), err);
        if (at[i]) served[f - d.files] = 1;
    }
    free(at);
    /* The shards that serve tensors hand their mappings to m (also on
     * error: the tensors served so far point into them). */
    for (int k = 0; k < d.n_files; k++)
        if (served[k]) {
            m->maps[m->n_maps] = al_st_detach(&d.files[k], &m->map_sizes[m->n_maps]);
            m->n_maps++;
        }
    free(served);
    al_st_dir_close(&d);
    return rc;
}

/* Reads the adapters of m from <dir>/adapter_model.safetensors. */
static int load_adapters(al_model *m, const char *dir, char err[AL_ERRLEN]) {
    al_st_dir d;
    int rc = al_st_dir_open(&d, dir, "adapter_model", err);
    if (rc) return rc;
    al_model_w_written(m);
    char name[160];
    for (int i = 0; i < m->n_params && rc == AL_OK; i++) {
        al_param *p = &m->params[i];
        if (!p->lora && i != m->score) continue;
        snprintf(name, sizeof name, "base_model.model.%s", p->name);
        const al_st_file *f;
        const al_st_tensor *t = al_st_dir_find(&d, name, &f);
        if (!t) {
            if (i == m->score) continue; /* head kept from the base */
            rc = al_err(err, AL_EFORMAT, "%s: missing adapter tensor %s", dir, name);
            break;
        }
        rc = read_param(f, t, p, NULL, 0, err);
    }
    al_st_dir_close(&d);
    return rc;
}

/* Parses adapter_config.json into a LoRA config and the base folder path. */
static int read_adapter_config(const char *dir, al_lora_cfg *lc, char *base, size_t base_n,
                               int *has_score, char err[AL_ERRLEN]) {
    char path[4096], *text;
    size_t len;
    if (al_path_join(path, sizeof path, dir, "adapter_config.json"))
        return al_err(err, AL_ERANGE, "path too long: %s", dir);
    int rc = al_file_read(path, 1 << 20, &text, &len, err);
    if (rc) return rc;
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!json_is_object(j)) {
        json_decref(j);
        return al_err(err, AL_EFORMAT, "adapter_config.json: line %d: %s", je.line, je.text);
    }
    memset(lc, 0, sizeof *lc);
    rc = AL_OK;
    json_t *v;
    const char *pt = json_string_value(json_object_get(j, "peft_type"));
    if (pt && strcmp(pt, "LORA") != 0) {
        rc = al_err(err, AL_EUNSUP, "adapter_config.json: peft_type: %s is not LORA", pt);
        goto out;
    }
    v = json_object_get(j, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 4096) {
        rc = al_err(err, AL_EFORMAT, "adapter_config.json: r: must be an integer in 1..4096");
        goto out;
    }
    lc->r = (int)json_integer_value(v);
    v = json_object_get(j, "lora_alpha");
    if (!json_is_number(v) || json_number_value(v) <= 0) {
        rc = al_err(err, AL_EFORMAT, "adapter_config.json: lora_alpha: must be a positive number");
        goto out;
    }
    lc->alpha = (float)json_number_value(v);
    v = json_object_get(j, "target_modules");
    if (json_is_string(v)) {
        snprintf(lc->targets, sizeof lc->targets, "%s", json_string_value(v));
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        size_t i, n = 0;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (!json_is_string(e)) {
                rc = al_err(err, AL_EFORMAT, "adapter_config.json: target_modules: must list strings");
                goto out;
            }
            n += (size_t)snprintf(lc->targets + n, sizeof lc->targets - n, "%s%s", i ? "," : "",
                                  json_string_value(e));
            if (n >= sizeof lc->targets) {
                rc = al_err(err, AL_ERANGE, "adapter_config.json: target_modules: too long");
                goto out;
            }
        }
    } else {
        rc = al_err(err, AL_EFORMAT, "adapter_config.json: target_modules: missing");
        goto out;
    }
    const char *b = json_string_value(json_object_get(j, "base_model_name_or_path"));
    if (!b || !*b) {
        rc = al_err(err, AL_EFORMAT, "adapter_config.json: base_model_name_or_path: missing");
        goto out;
    }
    if (b[0] == '/') snprintf(base, base_n, "%s", b);
    else if (al_path_join(base, base_n, dir, b) || !al_file_exists(base))
        snprintf(base, base_n, "%s", b);
    *has_score = 0;
    v = json_object_get(j, "modules_to_save");
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
            if (json_is_string(e) && strcmp(json_string_value(e), "score") == 0) *has_score = 1;
    }
out:
    json_decref(j);
    return rc;
}

int al_model_adapter_base(const char *dir, char *out, size_t n, char err[AL_ERRLEN]) {
    al_lora_cfg lc;
    int has_score;
    return read_adapter_config(dir, &lc, out, n, &has_score, err);
}

int al_model_open(al_model **out, const char *dir, const al_lora_cfg *lora, char err[AL_ERRLEN]) {
    return al_model_open_ex(out, dir, lora, 0, 0, err);
}

int al_model_open_ex(al_model **out, const char *dir, const al_lora_cfg *lora, int flags,
                     uint64_t seed, char err[AL_ERRLEN]) {
    al_error e;
    int rc = al_model_open_at(out, dir, lora, flags, seed, &e);
    if (rc && err) snprintf(err, AL_ERRLEN, "%s", e.msg);
    return rc;
}

int al_model_open_at(al_model **out, const char *dir, const al_lora_cfg *lora, int flags, uint64_t seed,
                     al_error *e) {
    char *err = e->msg;
    e->field[0] = 0;
    char path[4096], base[4096];
    al_lora_cfg alc;
    int adapter = 0, has_score = 0, rc;
    if (al_path_join(path, sizeof path, dir, "adapter_config.json"))
        return al_err(err, AL_ERANGE, "path too long: %s", dir);
    if (al_file_exists(path)) {
        if ((rc = read_adapter_config(dir, &alc, base, sizeof base, &has_score, err))) return rc;
        adapter = 1;
        lora = &alc;
    } else {
        snprintf(base, sizeof base, "%s", dir);
    }
    al_model_config cfg;
    if ((rc = al_config_load(&cfg, base, err))) return rc;
    if (has_score && !cfg.has_score) {
        cfg.has_score = 1;
        if (cfg.num_labels <= 0) cfg.num_labels = 1;
    }
    int fresh_score = 0;
    if ((flags & AL_OPEN_SCORE_HEAD) && (!cfg.has_score || cfg.has_lm_head)) {
        fresh_score = !cfg.has_score;
        cfg.has_score = 1;
        cfg.num_labels = 1;
        cfg.has_lm_head = 0;
    }
    al_model *m = NULL;
    if ((rc = al_model_new_at(&m, &cfg, lora, flags & AL_OPEN_FROZEN, (flags & AL_OPEN_BF16) != 0, e))) {
        if (adapter) e->field[0] = 0; /* the adapter folder's own LoRA settings: the folder is at fault */
        return rc;
    }
    if (fresh_score) {
        al_rng r;
        al_rng_seed(&r, seed);
        float std = cfg.init_range > 0 ? cfg.init_range : 0.02f;
        al_param *sp = &m->params[m->score];
        float *v = malloc(sp->n * sizeof(float));
        if (!v) {
            rc = al_err(err, AL_ENOMEM, "out of memory");
            goto fail;
        }
        for (size_t k = 0; k < sp->n; k++) v[k] = std * al_rng_normal(&r);
        al_param_set(sp, v);
        free(v);
    }
    /* an adapter folder that saves the head (modules_to_save) may sit on a
     * base without one, e.g. a PPO critic on its policy's base */
    if ((rc = load_weights(m, base, fresh_score || (adapter && has_score), !(flags & AL_OPEN_COPY),
                           err)))
        goto fail;
    if (adapter) {
        if ((rc = load_adapters(m, dir, err))) goto fail;
    } else if (lora && lora->r > 0) {
        al_model_init_lora(m, seed ^ 0x10a);
    }
    *out = m;
    return AL_OK;
fail:
    al_model_free(m);
    return rc;
}

static void shape_on_disk(const al_param *p, al_st_entry *e) {
    e->name = p->name;
    e->ndim = p->ndim;
    e->transpose = p->conv1d && !p->wt; /* held (in, out) already: written as held */
    if (p->ndim == 1) {
        e->shape[0] = p->shape[0];
    } else if (p->conv1d) {
        e->shape[0] = p->shape[1];
        e->shape[1] = p->shape[0];
    } else {
        e->shape[0] = p->shape[0];
        e->shape[1] = p->shape[1];
    }
}

void al_model_set_save_dtype(al_model *m, al_dtype dt) { m->save_dt = dt; }

al_dtype al_model_save_dtype(const al_model *m) {
    if (m->save_dt) return m->save_dt;
    return m->load_dt ? m->load_dt : AL_DT_F32;
}

const char *al_dtype_torch_name(al_dtype dt) {
    return dt == AL_DT_BF16 ? "bfloat16" : dt == AL_DT_F16 ? "float16" : "float32";
}

/* fp32 values of a tensor: w, or h widened into tmp (p->n floats). */
static const float *param_f32(const al_param *p, float *tmp) {
    if (p->w) return p->w;
    al_bf16_widen(tmp, p->h, p->n);
    return tmp;
}

/* W' = W + scale * B @ A for every fused map an adapter writes, in fp32:
 * merged[i] receives the merged values of param i (views into one buffer),
 * NULL for untouched params. *buf_out owns the buffer. */
static int merge_adapters(const al_model *m, const float **merged, float **buf_out) {
    size_t total = 0, big = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < LIN_COUNT; j++) {
            const al_linear *L = &m->layers[l].lin[j];
            if (L->n_lora) total += (size_t)L->out * (size_t)L->in;
        }
    for (int k = 0; k < m->n_lora; k++) {
        size_t a = m->params[m->lora[k].pA].n, b = m->params[m->lora[k].pB].n;
        if (a + b > big) big = a + b;
    }
    float *buf = al_calloc(total + big, sizeof(float));
    if (!buf) return AL_ENOMEM;
    float *ab = buf + total, *W = buf;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int j = 0; j < LIN_COUNT; j++) {
            const al_linear *L = &m->layers[l].lin[j];
            if (!L->n_lora) continue;
            /* the run of named tensors that make up the fused map */
            size_t rows = 0;
            for (int i = L->w; rows < (size_t)L->out; i++) {
                const al_param *p = &m->params[i];
                float *dst = W + rows * (size_t)L->in;
                al_param_rows(dst, p);
                merged[i] = dst;
                rows += (size_t)p->shape[0];
            }
            for (int k = 0; k < L->n_lora; k++) {
                const al_lora_mod *lm = &m->lora[L->first_lora + k];
                const al_param *pa = &m->params[lm->pA], *pb = &m->params[lm->pB];
                const float *A = param_f32(pa, ab), *B = param_f32(pb, ab + pa->n);
                al_gemm(0, 0, lm->out, lm->in, m->lora_cfg.r, m->lora_scale, B, m->lora_cfg.r, A,
                        lm->in, 1.0f, W + (size_t)lm->off * lm->in, lm->in);
            }
            W += (size_t)L->out * (size_t)L->in;
        }
    *buf_out = buf;
    return AL_OK;
}

int al_model_save(const al_model *m, const char *dir, char err[AL_ERRLEN]) {
    int rc = al_mkdir_p(dir, err);
    if (rc) return rc;
    al_dtype dt = al_model_save_dtype(m);
    al_model_config cfg = m->cfg;
    snprintf(cfg.torch_dtype, sizeof cfg.torch_dtype, "%s", al_dtype_torch_name(dt));
    if ((rc = al_config_save(&cfg, dir, err))) return rc;
    al_st_entry *e = calloc((size_t)m->n_params, sizeof *e);
    const float **merged = calloc((size_t)m->n_params, sizeof *merged);
    float *mbuf = NULL;
    if (!e || !merged || (m->n_lora && m->adapters_on && merge_adapters(m, merged, &mbuf))) {
        free(e);
        free(merged);
        return al_err(err, AL_ENOMEM, "out of memory saving %s", dir);
    }
    int n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        if (p->lora) continue;
        shape_on_disk(p, &e[n]);
        e[n].dtype = dt;
        if (merged[i]) e[n].transpose = p->conv1d; /* merged in nn.Linear's layout */
        e[n].data = merged[i] ? merged[i] : p->w;
        e[n].data16 = e[n].data ? NULL : p->h;
        n++;
    }
    char path[4096];
    if (al_path_join(path, sizeof path, dir, "model.safetensors"))
        rc = al_err(err, AL_ERANGE, "path too long: %s", dir);
    else
        rc = al_st_write(path, e, n, err);
    al_free(mbuf);
    free(merged);
    free(e);
    return rc;
}

int al_model_save_adapter(const al_model *m, const char *dir, const char *base_path,
                          char err[AL_ERRLEN]) {
    if (!m->n_lora) return al_err(err, AL_EINVAL, "model has no LoRA adapters to save");
    int rc = al_mkdir_p(dir, err);
    if (rc) return rc;
    al_st_entry *e = calloc((size_t)m->n_params, sizeof *e);
    char (*names)[160] = calloc((size_t)m->n_params, sizeof *names);
    if (!e || !names) {
        free(e);
        free(names);
        return al_err(err, AL_ENOMEM, "out of memory saving %s", dir);
    }
    int n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        if (!p->lora && i != m->score) continue;
        shape_on_disk(p, &e[n]);
        snprintf(names[n], sizeof names[n], "base_model.model.%s", p->name);
        e[n].name = names[n];
        e[n].data = p->w;
        e[n].data16 = p->w ? NULL : p->h;
        n++;
    }
    char path[4096];
    if (al_path_join(path, sizeof path, dir, "adapter_model.safetensors"))
        rc = al_err(err, AL_ERANGE, "path too long: %s", dir);
    else
        rc = al_st_write(path, e, n, err);
    free(e);
    free(names);
    if (rc) return rc;

    json_t *j = json_object();
    json_t *targets;
    if (strcmp(m->lora_cfg.targets, "all-linear") == 0) {
        targets = json_string("all-linear");
    } else {
        targets = json_array();
        const char *s = m->lora_cfg.targets;
        while (*s) {
            const char *c = strchr(s, ',');
            size_t len = c ? (size_t)(c - s) : strlen(s);
            if (len) json_array_append_new(targets, json_stringn(s, len));
            if (!c) break;
            s = c + 1;
        }
    }
    json_object_set_new(j, "peft_type", json_string("LORA"));
    json_object_set_new(j, "task_type", json_string(m->cfg.has_lm_head ? "CAUSAL_LM" : "SEQ_CLS"));
    json_object_set_new(j, "r", json_integer(m->lora_cfg.r));
    json_object_set_new(j, "lora_alpha", json_real(m->lora_cfg.alpha));
    json_object_set_new(j, "lora_dropout", json_real(0.0));
    json_object_set_new(j, "target_modules", targets);
    json_object_set_new(j, "bias", json_string("none"));
    json_object_set_new(j, "fan_in_fan_out", json_boolean(m->cfg.arch == AL_ARCH_GPT2));
    json_object_set_new(j, "inference_mode", json_true());
    json_object_set_new(j, "base_model_name_or_path", json_string(base_path ? base_path : ""));
    if (m->score >= 0) {
        json_t *mts = json_array();
        json_array_append_new(mts, json_string("score"));
        json_object_set_new(j, "modules_to_save", mts);
    }
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!text) return al_err(err, AL_ENOMEM, "out of memory writing adapter_config.json");
    if (al_path_join(path, sizeof path, dir, "adapter_config.json"))
        rc = al_err(err, AL_ERANGE, "path too long: %s", dir);
    else
        rc = al_file_write_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

int al_model_load_adapters(al_model *m, const char *dir, char err[AL_ERRLEN]) {
    return load_adapters(m, dir, err);
}

/* Model folders (see models.h). */
#define _XOPEN_SOURCE 700
#include "models.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/ids.h"
#include "io.h"
#include "log.h"
#include "model/config.h"
#include "model/model.h"
#include "text/tokenizer.h"
#include "train/estimate.h"

int models_describe(const char *dir, store_model *m, char err[AL_ERRLEN]) {
    char p[STORE_PATH + 64], real[PATH_MAX], e2[AL_ERRLEN];
    if (!realpath(dir, real)) {
        snprintf(err, AL_ERRLEN, "%s: no such folder", dir);
        return -1;
    }
    snprintf(m->path, sizeof m->path, "%s", real);
    snprintf(p, sizeof p, "%s/adapter_config.json", real);
    int adapter = al_file_exists(p);
    char cdir[STORE_PATH + 64];
    snprintf(cdir, sizeof cdir, "%s", real);
    if (adapter && al_model_adapter_base(real, cdir, sizeof cdir, e2)) {
        snprintf(err, AL_ERRLEN, "%.100s: %.150s", dir, e2);
        return -1;
    }
    al_model_config cfg;
    if (al_config_load(&cfg, cdir, e2)) {
        snprintf(err, AL_ERRLEN, "%s", e2);
        return -1;
    }
    /* its tokenizer must fit the model (al_tok_load checks the ids against
     * vocab_size); a folder without one registers, and says so when used */
    al_tok *tok = NULL;
    int trc = al_tok_load(&tok, real, e2);
    al_tok_free(tok);
    if (trc && trc != AL_ENOENT) {
        snprintf(err, AL_ERRLEN, "%s", e2);
        return -1;
    }
    snprintf(m->kind, sizeof m->kind, "%s", adapter ? "adapter" : "base");
    snprintf(m->arch, sizeof m->arch, "%s", cfg.model_type);
    m->has_score = cfg.has_score;
    m->params = (int64_t)al_config_num_params(&cfg, 0);
    models_info(real, cdir, &cfg, m->info, sizeof m->info);
    if (!m->source[0]) {
        json_t *src = json_pack("{s:s,s:s}", "type", "folder", "path", real);
        char *t = src ? json_dumps(src, JSON_COMPACT) : NULL;
        if (t && strlen(t) < sizeof m->source) memcpy(m->source, t, strlen(t) + 1);
        free(t);
        json_decref(src);
    }
    return 0;
}

/* The weights' dtype as config.json names it (transformers writes
 * "torch_dtype", newer versions "dtype"), else the first tensor's in
 * model.safetensors, else NULL. */
static json_t *weights_dtype(const char *cdir) {
    char p[STORE_PATH + 64];
    snprintf(p, sizeof p, "%s/config.json", cdir);
    json_t *c = json_load_file(p, 0, NULL);
    const char *d = json_string_value(json_object_get(c, "torch_dtype"));
    if (!d) d = json_string_value(json_object_get(c, "dtype"));
    json_t *out = d ? json_string(d) : NULL;
    json_decref(c);
    if (out) return out;
    /* safetensors: an 8-byte little-endian header length, then the JSON header */
    snprintf(p, sizeof p, "%s/model.safetensors", cdir);
    FILE *f = fopen(p, "rb");
    unsigned char n8[8];
    if (!f || fread(n8, 1, 8, f) != 8) {
        if (f) fclose(f);
        return NULL;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | n8[i];
    char *h = n > 0 && n < ((uint64_t)1 << 24) ? malloc(n + 1) : NULL;
    if (h && fread(h, 1, n, f) == n) {
        json_t *hj = json_loadb(h, n, 0, NULL);
        const char *k;
        json_t *v;
        json_object_foreach(hj, k, v) {
            const char *dt = json_string_value(json_object_get(v, "dtype"));
            if (!dt) continue;
            out = json_string(!strcmp(dt, "F32") ? "float32" : !strcmp(dt, "BF16") ? "bfloat16"
                              : !strcmp(dt, "F16") ? "float16" : dt);
            break;
        }
        json_decref(hj);
    }
    free(h);
    fclose(f);
    return out;
}

/* Whether a chat template ships in dir: tokenizer_config.json's
 * chat_template, or chat_template.jinja / chat_template.json. */
static int has_chat_template(const char *dir) {
    char p[STORE_PATH + 64];
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    if (al_file_exists(p)) return 1;
    snprintf(p, sizeof p, "%s/chat_template.json", dir);
    if (al_file_exists(p)) return 1;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    json_t *t = json_load_file(p, 0, NULL);
    const json_t *ct = json_object_get(t, "chat_template");
    int yes = json_is_string(ct) || (json_is_array(ct) && json_array_size(ct) > 0);
    json_decref(t);
    return yes;
}

void models_info(const char *dir, const char *cdir, const al_model_config *cfg, char *out, size_t n) {
    json_t *dt = weights_dtype(cdir);
    json_t *o = json_pack("{s:s,s:o,s:i,s:b}", "family", cfg->model_type, "dtype", dt ? dt : json_null(),
                          "context_length", cfg->max_T, "chat_template",
                          has_chat_template(dir) || (strcmp(dir, cdir) && has_chat_template(cdir)));
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    out[0] = 0;
    if (t && strlen(t) < n) memcpy(out, t, strlen(t) + 1);
    free(t);
    json_decref(o);
}

/* Whether dir/file is a regular file (symlinks followed). */
static int regular(const char *dir, const char *file) {
    char p[STORE_PATH + 64];
    return !al_path_join(p, sizeof p, dir, file) && al_file_is_regular(p);
}

int models_scan(store *st, const char *dir) {
    char root[PATH_MAX];
    DIR *d = realpath(dir, root) ? opendir(root) : NULL;
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!strncmp(e->d_name, "models--", 8)) continue; /* a Hugging Face cache: hubmodels_scan */
        char path[STORE_PATH + 256], real[PATH_MAX], err[AL_ERRLEN], q[300], qe[300];
        /* the name is logged quoted: it may hold anything a file name can */
        log_quote(q, sizeof q, e->d_name);
        if ((size_t)snprintf(path, sizeof path, "%s/%s", root, e->d_name) >= sizeof path) continue;
        struct stat sb;
        const char *why = NULL;
        int below = al_path_resolve_below(root, path, real);
        if ((below && below != AL_ERANGE) || stat(real, &sb) || !S_ISDIR(sb.st_mode)) continue;
        if (below) why = "a symlink leading out of the models folder";
        else if (!api_model_name_ok(e->d_name))
            why = "not a model name (1 to 64 letters, digits, '.', '_', '-'; not starting with '.', '-' or ftjob-)";
        else if (!regular(real, "config.json") && !regular(real, "adapter_config.json"))
            why = "no config.json or adapter_config.json as a regular file";
        if (why) {
            log_warn("event=model_skipped dir=%s reason=\"%s\"", q, why);
            continue;
        }
        store_model m, old;
        memset(&m, 0, sizeof m);
        if (models_describe(real, &m, err)) {
            log_warn("event=model_skipped dir=%s reason=%s", q, log_quote(qe, sizeof qe, err));
            continue;
        }
        snprintf(m.name, sizeof m.name, "%s", e->d_name);
        snprintf(m.owned_by, sizeof m.owned_by, "alignd");
        if (store_model_get(st, m.name, &old) == STORE_OK) {
            /* never take over another folder's or a job's name */
            if (old.job_id || strcmp(old.path, m.path)) {
                log_warn("event=model_skipped dir=%s reason=\"the name is registered for %s\"", q,
                         old.job_id ? "a job's output" : "another folder");
                continue;
            }
            m.created_at = old.created_at;
        }
        if (store_model_put(st, &m) == STORE_OK) {
            n++;
            log_info("event=model_registered name=%s kind=%s params=%lld", m.name, m.kind, (long long)m.params);
        }
    }
    closedir(d);
    return n;
}

/* models_relocate's walk: depth 0 is the jobs folder, an adapter folder sits
 * at most at ftjob-<n>/checkpoint-<k>/critic, depth 3. */
static int relocate_walk(const char *dir, int depth, const char *old, const char *cur, char err[AL_ERRLEN]) {
    char p[STORE_PATH + 64], e2[AL_ERRLEN];
    int n = 0;
    if (depth > 0 && !al_path_join(p, sizeof p, dir, "adapter_config.json") && al_file_exists(p)) {
        char *txt;
        size_t len;
        if (al_file_read(p, 1 << 20, &txt, &len, e2)) {
            snprintf(err, AL_ERRLEN, "%.200s", e2);
            return -1;
        }
        json_t *o = json_loadb(txt, len, 0, NULL);
        free(txt);
        const char *b = json_string_value(json_object_get(o, "base_model_name_or_path"));
        size_t lo = strlen(old);
        if (b && !strncmp(b, old, lo) && (b[lo] == 0 || b[lo] == '/')) {
            char nb[STORE_PATH + 64];
            snprintf(nb, sizeof nb, "%s%s", cur, b + lo);
            json_object_set_new(o, "base_model_name_or_path", json_string(nb));
            char *out = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
            if (!out) snprintf(e2, sizeof e2, "out of memory");
            int rc = out ? al_file_write_atomic(p, out, strlen(out), e2) : AL_ENOMEM;
            free(out);
            if (rc) {
                json_decref(o);
                snprintf(err, AL_ERRLEN, "%.100s: %.140s", p, e2);
                return -1;
            }
            n++;
        }
        json_decref(o);
    }
    if (depth >= 3) return n;
    DIR *d = opendir(dir);
    if (!d) return n;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        struct stat sb;
        if (al_path_join(p, sizeof p, dir, e->d_name) || lstat(p, &sb) || !S_ISDIR(sb.st_mode)) continue;
        int k = relocate_walk(p, depth + 1, old, cur, err);
        if (k < 0) {
            n = -1;
            break;
        }
        n += k;
    }
    closedir(d);
    return n;
}

int models_relocate(const char *dir, const char *old, const char *cur, char err[AL_ERRLEN]) {
    return relocate_walk(dir, 0, old, cur, err);
}

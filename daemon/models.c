/* Model folders (see models.h). */
#define _XOPEN_SOURCE 700
#include "models.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io.h"
#include "log.h"
#include "model/config.h"
#include "train/estimate.h"

int models_describe(const char *dir, store_model *m, char err[256]) {
    char p[STORE_PATH + 64], real[PATH_MAX], e2[AL_ERRLEN];
    if (!realpath(dir, real)) {
        snprintf(err, 256, "%s: no such folder", dir);
        return -1;
    }
    snprintf(m->path, sizeof m->path, "%s", real);
    snprintf(p, sizeof p, "%s/adapter_config.json", real);
    int adapter = al_file_exists(p);
    char cdir[STORE_PATH + 64];
    snprintf(cdir, sizeof cdir, "%s", real);
    if (adapter) {
        char *txt;
        size_t len;
        if (al_file_read(p, 1 << 20, &txt, &len, e2)) {
            snprintf(err, 256, "%s", e2);
            return -1;
        }
        json_t *o = json_loadb(txt, len, 0, NULL);
        free(txt);
        const char *b = json_string_value(json_object_get(o, "base_model_name_or_path"));
        if (!b) {
            json_decref(o);
            snprintf(err, 256, "%s: adapter_config.json names no base_model_name_or_path", dir);
            return -1;
        }
        if (b[0] == '/') snprintf(cdir, sizeof cdir, "%s", b);
        else snprintf(cdir, sizeof cdir, "%s/../%s", real, b);
        json_decref(o);
    }
    al_model_config cfg;
    if (al_config_load(&cfg, cdir, e2)) {
        snprintf(err, 256, "%s", e2);
        return -1;
    }
    snprintf(m->kind, sizeof m->kind, "%s", adapter ? "adapter" : "base");
    snprintf(m->arch, sizeof m->arch, "%s", cfg.model_type);
    m->has_score = cfg.has_score;
    m->params = (int64_t)al_config_num_params(&cfg, 0);
    return 0;
}

int models_scan(store *st, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[STORE_PATH], err[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) || !S_ISDIR(sb.st_mode)) continue;
        store_model m;
        memset(&m, 0, sizeof m);
        if (models_describe(path, &m, err)) {
            log_warn("event=model_skipped dir=%s reason=\"%s\"", e->d_name, err);
            continue;
        }
        snprintf(m.name, sizeof m.name, "%s", e->d_name);
        snprintf(m.owned_by, sizeof m.owned_by, "alignd");
        store_model old;
        if (store_model_get(st, m.name, &old) == STORE_OK) m.created_at = old.created_at;
        if (store_model_put(st, &m) == STORE_OK) {
            n++;
            log_info("event=model_registered name=%s kind=%s params=%lld", m.name, m.kind, (long long)m.params);
        }
    }
    closedir(d);
    return n;
}

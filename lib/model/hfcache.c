/* The Hugging Face cache on disk (see hfcache.h): names, the cache folder
 * from the environment, and resolving a revision to a complete snapshot. */
#include "hfcache.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../io.h"

static int name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

/* One part of a repository id: [A-Za-z0-9_.-]+, not starting or ending with
 * '-' or '.'. */
static int part_ok(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i])) return 0;
    if (s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.') return 0;
    return 1;
}

int al_hf_repo_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 96 || strstr(s, "--") || strstr(s, "..")) return 0;
    const char *slash = strchr(s, '/');
    if (!slash || strchr(slash + 1, '/')) return 0;
    return part_ok(s, (size_t)(slash - s)) && part_ok(slash + 1, strlen(slash + 1));
}

int al_hf_rev_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= AL_HF_REV_MAX || s[0] == '/' || strstr(s, "..")) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '\\') return 0;
    }
    return al_path_rel_ok(s);
}

int al_hf_is_commit(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return 0;
    return n == 40;
}

int al_hf_looks_like_ref(const char *ref) {
    if (!ref || !*ref || ref[0] == '/' || ref[0] == '.') return 0;
    const char *at = strchr(ref, '@');
    size_t n = at ? (size_t)(at - ref) : strlen(ref);
    int slashes = 0;
    for (size_t i = 0; i < n; i++) slashes += ref[i] == '/';
    return slashes == 1;
}

int al_hf_parse_ref(const char *ref, char repo[AL_HF_REPO_MAX], char rev[AL_HF_REV_MAX],
                    char err[AL_ERRLEN]) {
    const char *at = strchr(ref, '@');
    size_t n = at ? (size_t)(at - ref) : strlen(ref);
    if (n >= AL_HF_REPO_MAX) return al_err(err, AL_EINVAL, "'%.100s...' is too long for a repository id", ref);
    char r[AL_HF_REPO_MAX];
    memcpy(r, ref, n);
    r[n] = 0;
    if (!al_hf_repo_ok(r))
        return al_err(err, AL_EINVAL,
                      "'%.100s' is not a Hugging Face repository id (ORG/NAME: letters, digits, '-', "
                      "'_' and '.', at most 96 characters, no \"--\" or \"..\")",
                      r);
    const char *rv = at ? at + 1 : "main";
    if (!al_hf_rev_ok(rv)) return al_err(err, AL_EINVAL, "'%.100s' is not a revision (a branch, tag or commit)", rv);
    memcpy(repo, r, n + 1);
    snprintf(rev, AL_HF_REV_MAX, "%s", rv);
    return AL_OK;
}

/* An environment value with a leading "~/" expanded (expanduser). */
static int expand(const char *v, const char *tail, char *out, size_t n) {
    const char *home = getenv("HOME");
    int w;
    if (v[0] == '~' && (v[1] == '/' || v[1] == 0) && home && *home)
        w = snprintf(out, n, "%s%s%s", home, v + 1, tail);
    else
        w = snprintf(out, n, "%s%s", v, tail);
    return w < 0 || (size_t)w >= n ? AL_ERANGE : AL_OK;
}

int al_hf_cache_dir(char *out, size_t n) {
    const char *v;
    if ((v = getenv("HF_HUB_CACHE")) && *v) return expand(v, "", out, n);
    if ((v = getenv("HUGGINGFACE_HUB_CACHE")) && *v) return expand(v, "", out, n);
    if ((v = getenv("HF_HOME")) && *v) return expand(v, "/hub", out, n);
    if ((v = getenv("XDG_CACHE_HOME")) && *v) return expand(v, "/huggingface/hub", out, n);
    const char *home = getenv("HOME");
    if (!home || !*home) return AL_ENOENT;
    return expand(home, "/.cache/huggingface/hub", out, n);
}

int al_hf_repo_dir(const char *cache, const char *repo, char *out, size_t n) {
    const char *slash = strchr(repo, '/');
    if (!slash) return AL_EINVAL;
    int w = snprintf(out, n, "%s/models--%.*s--%s", cache, (int)(slash - repo), repo, slash + 1);
    return w < 0 || (size_t)w >= n ? AL_ERANGE : AL_OK;
}

/* A regular file at dir/name (a snapshot link followed to its blob). */
static int has_file(const char *dir, const char *name) {
    char p[4096];
    return !al_path_join(p, sizeof p, dir, name) && al_file_is_regular(p);
}

/* The weights of a snapshot: model.safetensors, or every shard its index
 * names, or an adapter's file. */
static int weights_present(const char *dir, char err[AL_ERRLEN]) {
    if (has_file(dir, "adapter_config.json")) {
        if (has_file(dir, "adapter_model.safetensors")) return AL_OK;
        return al_err(err, AL_ENOENT, "adapter_model.safetensors is missing");
    }
    if (!has_file(dir, "config.json")) return al_err(err, AL_ENOENT, "config.json is missing");
    if (has_file(dir, "model.safetensors")) return AL_OK;
    if (!has_file(dir, "model.safetensors.index.json"))
        return al_err(err, AL_ENOENT, "no model.safetensors or model.safetensors.index.json");
    char p[4096];
    if (al_path_join(p, sizeof p, dir, "model.safetensors.index.json")) return AL_ERANGE;
    json_error_t je;
    json_t *idx = json_load_file(p, 0, &je);
    const json_t *map = json_object_get(idx, "weight_map");
    if (!json_is_object(map)) {
        json_decref(idx);
        return al_err(err, AL_ENOENT, "model.safetensors.index.json has no weight_map");
    }
    const char *k;
    json_t *v;
    int rc = AL_OK;
    json_object_foreach((json_t *)map, k, v) {
        const char *f = json_string_value(v);
        if (!f || strchr(f, '/') || !has_file(dir, f)) {
            rc = al_err(err, AL_ENOENT, "the shard %.100s is missing", f ? f : "(not a string)");
            break;
        }
    }
    json_decref(idx);
    return rc;
}

int al_hf_snapshot(const char *cache, const char *repo, const char *rev, char *dir, size_t n,
                   char commit[41], char err[AL_ERRLEN]) {
    if (!al_hf_repo_ok(repo)) return al_err(err, AL_EINVAL, "'%.100s' is not a repository id", repo);
    if (!al_hf_rev_ok(rev)) return al_err(err, AL_EINVAL, "'%.100s' is not a revision", rev);
    char base[4096], p[4400], c[41];
    if (al_hf_repo_dir(cache, repo, base, sizeof base)) return al_err(err, AL_ERANGE, "cache path too long");
    if (al_hf_is_commit(rev)) {
        memcpy(c, rev, 41);
    } else {
        snprintf(p, sizeof p, "%s/refs/%s", base, rev);
        char *txt = NULL;
        size_t len = 0;
        if (al_file_read(p, 256, &txt, &len, NULL))
            return al_err(err, AL_ENOENT, "%s@%s is not in the cache %s", repo, rev, cache);
        while (len > 0 && (txt[len - 1] == '\n' || txt[len - 1] == '\r' || txt[len - 1] == ' ')) txt[--len] = 0;
        int ok = al_hf_is_commit(txt);
        if (ok) memcpy(c, txt, 41);
        free(txt);
        if (!ok) return al_err(err, AL_ENOENT, "%s/refs/%s does not hold a commit hash", base, rev);
    }
    snprintf(p, sizeof p, "%s/snapshots/%s", base, c);
    struct stat st;
    if (stat(p, &st) || !S_ISDIR(st.st_mode))
        return al_err(err, AL_ENOENT, "%s@%s: the snapshot %s is not in the cache %s", repo, rev, c, cache);
    char why[AL_ERRLEN] = "";
    if (weights_present(p, why))
        return al_err(err, AL_ENOENT, "%s@%s: the cached snapshot %.12s is incomplete (%s)", repo, rev, c, why);
    if (strlen(p) >= n) return al_err(err, AL_ERANGE, "cache path too long");
    memcpy(dir, p, strlen(p) + 1);
    memcpy(commit, c, 41);
    return AL_OK;
}

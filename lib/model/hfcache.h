/* The Hugging Face cache on disk, as huggingface_hub lays it out (no HTTP
 * here: daemon/hub.c downloads into it).
 *
 *   <cache>/models--<org>--<name>/
 *       blobs/<etag>                 file contents, named by their ETag (the
 *                                    LFS sha256, or the git blob sha1)
 *       snapshots/<commit>/<file>    relative symlinks to ../../blobs/<etag>
 *       refs/<revision>              the commit a branch or tag pointed at
 *
 * The cache folder is $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (legacy),
 * else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub (huggingface_hub's constants.py). A leading "~/"
 * in a variable is expanded as Python's expanduser does.
 *
 * A model is named "<org>/<name>[@<revision>]" (revision "main" when
 * absent): repository ids follow huggingface_hub's validate_repo_id. */
#ifndef AL_HFCACHE_H
#define AL_HFCACHE_H

#include <stddef.h>

#include "../al.h"

#define AL_HF_REPO_MAX 128   /* "org/name" + NUL (the Hub allows 96) */
#define AL_HF_REV_MAX 256

/* 1 when s is a repository id: at most 96 characters of [A-Za-z0-9_.-],
 * one '/' between a namespace and a name (alignd needs the namespace), no
 * "--" or "..", no part starting or ending with '-' or '.'. */
int al_hf_repo_ok(const char *s);
/* 1 when s can be a revision (branch, tag, "refs/pr/N" or commit): 1 to 255
 * bytes, no control characters, spaces, backslashes or "..", no empty or
 * "." path component, not starting with '/'. */
int al_hf_rev_ok(const char *s);
/* 1 when s is a full commit hash (40 lowercase hex digits). */
int al_hf_is_commit(const char *s);
/* 1 when ref looks like a Hub reference ("org/name" or "org/name@rev"), not
 * a folder path: it has exactly one '/' before any '@', and does not start
 * with '/' or '.'. Says nothing of validity (al_hf_parse_ref does). */
int al_hf_looks_like_ref(const char *ref);
/* Splits "org/name[@rev]" into repo and rev ("main" when absent).
 * AL_EINVAL with the reason in err when either part is malformed. */
int al_hf_parse_ref(const char *ref, char repo[AL_HF_REPO_MAX], char rev[AL_HF_REV_MAX],
                    char err[AL_ERRLEN]);

/* The cache folder from the environment (above) into out (n bytes).
 * AL_ENOENT when no variable is set and there is no $HOME; AL_ERANGE when
 * it does not fit. */
int al_hf_cache_dir(char *out, size_t n);
/* <cache>/models--org--name into out. AL_ERANGE when it does not fit. */
int al_hf_repo_dir(const char *cache, const char *repo, char *out, size_t n);

/* The snapshot folder of repo at rev in cache: rev a commit hash, or a
 * branch/tag recorded in refs/<rev>. The snapshot must be complete enough to
 * load: config.json (or adapter_config.json with adapter_model.safetensors)
 * and the weights (model.safetensors, or every shard that
 * model.safetensors.index.json names), each link leading to a blob that
 * exists. AL_OK with dir (n bytes) and commit (41 bytes) filled; AL_ENOENT
 * with what is missing in err; AL_EINVAL for a malformed repo or rev. */
int al_hf_snapshot(const char *cache, const char *repo, const char *rev, char *dir, size_t n,
                   char commit[41], char err[AL_ERRLEN]);

#endif

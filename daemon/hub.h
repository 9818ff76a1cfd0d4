/* The Hugging Face Hub client: downloads a model repository into the
 * Hugging Face cache (lib/model/hfcache.h) the way huggingface_hub's
 * snapshot_download does, over libcurl.
 *
 *   1. GET  {endpoint}/api/models/{repo}/revision/{rev}?blobs=true
 *      -> "sha" (the commit) and "siblings" [{rfilename, size, blobId,
 *         lfs: {sha256, size}}]: the file list, sizes and checksums.
 *   2. per selected file, HEAD {endpoint}/{repo}/resolve/{commit}/{file}
 *      (Accept-Encoding: identity; relative redirects followed, as for a
 *      renamed repo) -> X-Repo-Commit, X-Linked-Etag or ETag (the blob's
 *      name), X-Linked-Size or Content-Length, and Location when the file
 *      lives on a CDN (then fetched without the Authorization header when
 *      the host differs).
 *   3. GET into blobs/<etag>.incomplete under an flock on
 *      .locks/models--org--name/<etag>.lock, resuming with Range from what
 *      an interrupted download left; up to `retries` resumes within one
 *      pull when the connection breaks after data arrived. The size must be
 *      the expected one, and the SHA-256 the LFS one (or, for a plain git
 *      file, the git blob SHA-1 its blobId names), else the partial file is
 *      deleted and the pull fails. A verified file is fsynced and renamed to
 *      blobs/<etag>, then snapshots/<commit>/<file> links to it (relative).
 *   4. refs/<rev> <- commit (atomically), once every file is in.
 * Nothing half-written is ever visible under a snapshot: a blob is complete
 * and verified before its link exists, and only <etag>.incomplete (kept for
 * resuming) may stay behind a failure.
 *
 * Environment, as huggingface_hub reads it: HF_ENDPOINT (mirrors; default
 * https://huggingface.co), HF_TOKEN (else the file $HF_TOKEN_PATH or
 * $HF_HOME/token) sent as "Authorization: Bearer", HF_HUB_OFFLINE (or
 * TRANSFORMERS_OFFLINE) = 1/ON/YES/TRUE: no network, the cache only.
 *
 * Threads: hub_pull may run on any thread, several at once (each has its
 * own curl handles; the blob locks keep two pulls of one file apart, even
 * across processes). */
#ifndef DAEMON_HUB_H
#define DAEMON_HUB_H

#include <stdatomic.h>
#include <stdint.h>

#include "model/hfcache.h"

#define HUB_PATH 4096

/* The Hub client's error space (lib/al.h lists every layer's): never an
 * errno value; hub_strerror() gives the API's name of each. */
enum {
    HUB_OK = 0,
    HUB_EINVAL = -2100,     /* a malformed repository id, revision or option */
    HUB_ENOTFOUND = -2101,  /* no such repository, revision or file */
    HUB_EGATED = -2102,     /* gated or private: a token is missing or not allowed */
    HUB_EOFFLINE = -2103,   /* HF_HUB_OFFLINE and not in the cache */
    HUB_ENET = -2104,       /* the connection failed (after the retries) */
    HUB_EPROTO = -2105,     /* the server's answer is malformed or hostile */
    HUB_ECHECKSUM = -2106,  /* size or SHA-256 not the announced one */
    HUB_EIO = -2107,        /* the cache cannot be written */
    HUB_ECANCELED = -2108,
    HUB_ENOWEIGHTS = -2109  /* the repository has no safetensors weights */
};

/* Progress of a pull, reported at most every 100 ms and at each file's end. */
typedef struct hub_progress {
    const char *file;         /* the file being fetched, NULL when none */
    int64_t file_done, file_total;
    int64_t done, total;      /* bytes of all selected files (cached ones count as done) */
    int files_done, files_total;
} hub_progress;

typedef struct hub_opts {
    const char *cache_dir;            /* NULL: al_hf_cache_dir() */
    const char *endpoint;             /* NULL: $HF_ENDPOINT, else https://huggingface.co */
    const char *token;                /* NULL: $HF_TOKEN, else the token file; "" none */
    const char *const *include;       /* NULL-terminated globs (fnmatch) over the repo's paths;
                                       * NULL: the files alignd reads */
    int offline;                      /* -1: from $HF_HUB_OFFLINE */
    int retries;                      /* resumes within one pull; < 0: 5 */
    void (*progress)(void *ud, const hub_progress *p);
    void *ud;
    const atomic_int *cancel;         /* set: stop at the next chunk (may be NULL) */
} hub_opts;
#define HUB_OPTS_INIT {NULL, NULL, NULL, NULL, -1, -1, NULL, NULL, NULL}

typedef struct hub_result {
    char dir[HUB_PATH];        /* <cache>/models--org--name/snapshots/<commit> */
    char commit[41];
    int files;                 /* files in the snapshot that were selected */
    int64_t bytes;             /* their total size */
    int64_t downloaded;        /* bytes fetched over the network by this pull */
    int from_cache;            /* 1: nothing needed fetching */
} hub_result;

/* Downloads repo at rev (see above) and fills out. Returns HUB_OK or an
 * error code with a one-line reason in err that names the repository, the
 * file and what to do (for a gated repo: the page where its terms are
 * accepted and HF_TOKEN). */
int hub_pull(const char *repo, const char *rev, const hub_opts *o, hub_result *out, char err[AL_ERRLEN]);

/* Name of a code ("gated", "not_found", ...) for API error codes. */
const char *hub_strerror(int rc);

/* Whether the environment says offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE). */
int hub_env_offline(void);

#endif

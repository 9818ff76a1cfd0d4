/* Cross-implementation parity with Hugging Face transformers: runs
 * tests/hf_parity.py, which re-implements transformers' GPT-2 and
 * Llama/Qwen2 forward in torch and compares alignd's logprobs and greedy
 * generate against it (folders from `alignd init-model` and folders written
 * in Python as F16, BF16 shards). The script prints one "ok"/"FAIL" line per
 * scenario; this wrapper asserts it exits 0.
 *
 * Needs /usr/bin/python3 with torch (Debian's python3-torch, installed by
 * scripts/test). Without it the test fails rather than skips: a parity test
 * that silently skips proves nothing. The script is found next to this
 * source file (__FILE__ is absolute under CMake). */
#include <sys/wait.h>

#include "t.h"

#define PYTHON "/usr/bin/python3"

/* Directory of this source file, or "." when __FILE__ has no slash. */
static void source_dir(char *out, size_t n) {
    snprintf(out, n, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
    else snprintf(out, n, ".");
}

/* Exit code of a shell command, or -1 when it did not exit normally. */
static int run(const char *cmd) {
    fflush(stdout);
    fflush(stderr);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

int main(void) {
    char dir[1024], script[1200], cmd[4096];
    source_dir(dir, sizeof dir);
    snprintf(script, sizeof script, "%s/hf_parity.py", dir);
    const char *bin = getenv("ALIGND_BIN");

    T_TRUE(access(script, R_OK) == 0);
    if (access(script, R_OK) != 0) fprintf(stderr, "hf_parity: script not found: %s\n", script);
    T_TRUE(bin && *bin && access(bin, X_OK) == 0);
    if (!bin || !*bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "hf_parity: ALIGND_BIN must name the alignd binary (got %s)\n",
                bin ? bin : "(unset)");
        return t_done();
    }
    /* Paths are single-quoted for the shell. */
    T_TRUE(!strchr(script, '\'') && !strchr(bin, '\''));
    if (strchr(script, '\'') || strchr(bin, '\'')) return t_done();

    int torch_ok = run(PYTHON " -c 'import torch' >/dev/null 2>&1") == 0;
    if (!torch_ok)
        fprintf(stderr, "hf_parity: %s cannot `import torch`: install Debian's python3-torch "
                        "(scripts/test does); this test fails rather than skips\n", PYTHON);
    T_TRUE(torch_ok);
    if (!torch_ok) return t_done();

    /* The script writes under $AL_TEST_TMP/hf_parity; make sure that exists. */
    setenv("AL_TEST_TMP", t_tmpdir(), 1);
    snprintf(cmd, sizeof cmd, PYTHON " '%s' '%s'", script, bin);
    int rc = run(cmd);
    if (rc != 0) fprintf(stderr, "hf_parity: %s exited %d (see the FAIL lines above)\n", script, rc);
    T_EQ_INT(rc, 0);
    return t_done();
}

/* The command line as a user runs it: the alignd binary ($ALIGND_BIN) on
 * folders it writes, with every bad input answered by its exact message. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "t.h"

static char g_out[1 << 16];

/* Runs `alignd <args>`; stdout+stderr in g_out; returns the exit status. */
static int run(const char *args) {
    const char *bin = getenv("ALIGND_BIN");
    char cmd[4096], path[1100];
    snprintf(path, sizeof path, "%s/out.txt", t_tmpdir());
    snprintf(cmd, sizeof cmd, "%s %s >'%s' 2>&1", bin ? bin : "alignd", args, path);
    int st = system(cmd);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(g_out, 1, sizeof g_out - 1, f) : 0;
    g_out[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_t *out_json(void) {
    json_error_t e;
    return json_loads(g_out, JSON_DECODE_ANY, &e);
}

#define T_OUT_HAS(s) T_REPORT_(strstr(g_out, s) != NULL, "output has \"%s\": %s", s, g_out)

int main(void) {
    const char *tmp = t_tmpdir();
    char a[4096];

    /* init-model writes a Hugging Face folder that loads */
    snprintf(a, sizeof a, "init-model --arch llama --layers 2 --hidden 32 --heads 4 --kv-heads 2 "
                          "--vocab 260 --context 32 --seed 5 --out %s/llama", tmp);
    T_EQ_INT(run(a), 0);
    json_t *j = out_json();
    T_TRUE(json_is_object(j));
    T_TRUE(json_integer_value(json_object_get(j, "parameters")) > 0);
    json_decref(j);
    snprintf(a, sizeof a, "%s/llama/config.json", tmp);
    FILE *f = fopen(a, "r");
    T_TRUE(f != NULL);
    if (f) fclose(f);

    /* logprobs: one per scored token, all <= 0 */
    snprintf(a, sizeof a, "logprobs --model %s/llama --ids 1,2,3,4,5", tmp);
    T_EQ_INT(run(a), 0);
    j = out_json();
    json_t *lp = json_object_get(j, "logprobs"), *tk = json_object_get(j, "tokens");
    T_EQ_INT(json_array_size(lp), 4);
    T_EQ_INT(json_integer_value(json_array_get(tk, 0)), 2);
    int neg = 1;
    for (size_t i = 0; i < json_array_size(lp); i++) neg &= json_real_value(json_array_get(lp, i)) <= 0;
    T_TRUE(neg);
    double lp_last = json_real_value(json_array_get(lp, 3));
    json_decref(j);
    snprintf(a, sizeof a, "logprobs --model %s/llama --ids 1,2,3,4,5 --prompt-len 4", tmp);
    T_EQ_INT(run(a), 0);
    j = out_json();
    T_EQ_INT(json_array_size(json_object_get(j, "logprobs")), 1);
    T_NEAR(json_real_value(json_array_get(json_object_get(j, "logprobs"), 0)), lp_last, 1e-6);
    json_decref(j);
    /* --dtype: bf16 rounds the products' operands (the figures differ) and
     * scores within bf16's rounding of fp32 (2 layers, 32 wide: far under
     * 0.1 nat); anything else is refused */
    double lp_dt[2];
    for (int d = 0; d < 2; d++) {
        snprintf(a, sizeof a, "logprobs --model %s/llama --ids 1,2,3,4,5 --prompt-len 4 --dtype %s", tmp,
                 d ? "bf16" : "fp32");
        T_EQ_INT(run(a), 0);
        j = out_json();
        lp_dt[d] = json_real_value(json_array_get(json_object_get(j, "logprobs"), 0));
        json_decref(j);
    }
    T_TRUE(lp_dt[0] < 0 && lp_dt[1] < 0 && lp_dt[0] != lp_dt[1]);
    T_NEAR(lp_dt[1], lp_dt[0], 0.1);
    snprintf(a, sizeof a, "logprobs --model %s/llama --ids 1,2,3 --dtype fp16", tmp);
    T_EQ_INT(run(a), 2);
    T_OUT_HAS("alignd: --dtype: 'fp16' is not bf16 or fp32");

    /* generate: greedy and seeded sampling are reproducible */
    static char first[sizeof g_out];
    snprintf(a, sizeof a, "generate --model %s/llama --ids 1,2,3 --max-new-tokens 6 --temperature 1 --seed 9", tmp);
    T_EQ_INT(run(a), 0);
    snprintf(first, sizeof first, "%s", g_out);
    T_EQ_INT(run(a), 0);
    T_STR_EQ(g_out, first);
    j = out_json();
    T_TRUE(json_array_size(json_object_get(j, "ids")) >= 1);
    T_TRUE(json_array_size(json_object_get(j, "ids")) <= 6);
    json_decref(j);

    /* bad input: each answered with the exact message and status 2 */
    T_EQ_INT(run("init-model --arch foo --out x"), 2);
    T_OUT_HAS("alignd: --arch: foo is not supported (gpt2, llama, mistral, qwen2, qwen3, gemma2");
    char g2[1200];
    snprintf(g2, sizeof g2, "init-model --arch gemma2 --layers 2 --hidden 32 --heads 2 --vocab 260 --out '%s/g2'",
             t_tmpdir());
    T_EQ_INT(run(g2), 0); /* another family: its class's defaults */
    T_OUT_HAS("\"arch\":\"gemma2\"");
    T_EQ_INT(run("init-model --layers two --out x"), 2);
    T_OUT_HAS("alignd: --layers: 'two' is not an integer");
    T_EQ_INT(run("init-model --hidden 30 --heads 4 --out x"), 2);
    T_OUT_HAS("--hidden (30) must be a multiple of --heads (4)");
    T_EQ_INT(run("init-model"), 2);
    T_OUT_HAS("--out DIR is required");
    T_EQ_INT(run("frobnicate"), 2);
    T_OUT_HAS("unknown command 'frobnicate'");
    snprintf(a, sizeof a, "logprobs --model %s/llama --ids 1,,2", tmp);
    T_EQ_INT(run(a), 2);
    T_OUT_HAS("--ids: bad token id list");
    snprintf(a, sizeof a, "logprobs --model %s/llama --ids 1,2,999", tmp);
    T_EQ_INT(run(a), 2);
    T_OUT_HAS("--ids: token 999 is outside the vocabulary (260)");
    snprintf(a, sizeof a, "generate --model %s/llama --ids 1,2 --max-new-tokens 40", tmp);
    T_EQ_INT(run(a), 2);
    T_OUT_HAS("exceeds the context (32)");
    snprintf(a, sizeof a, "generate --model %s/llama --ids 1 --top-p 1.5", tmp);
    T_EQ_INT(run(a), 2);
    T_OUT_HAS("--top-p: 1.5 is outside [0, 1]");
    snprintf(a, sizeof a, "logprobs --model %s/nonexistent --ids 1,2", tmp);
    T_EQ_INT(run(a), 1);
    T_OUT_HAS("config.json");

    /* a damaged weights file is refused with its name, never a crash */
    snprintf(a, sizeof a, "cp -r %s/llama %s/broken && truncate -s 1000 %s/broken/model.safetensors",
             tmp, tmp, tmp);
    T_EQ_INT(system(a), 0);
    snprintf(a, sizeof a, "logprobs --model %s/broken --ids 1,2", tmp);
    T_EQ_INT(run(a), 1);
    T_OUT_HAS("model.safetensors");

    /* training from a job file is deterministic: same seed, same losses */
    snprintf(a, sizeof a, "init-model --arch gpt2 --layers 1 --hidden 32 --heads 2 --context 32 --out %s/g", tmp);
    T_EQ_INT(run(a), 0);
    snprintf(a, sizeof a, "%s/job.json", tmp);
    f = fopen(a, "w");
    T_TRUE(f != NULL);
    if (f) {
        fprintf(f, "{\"method\":\"sft\",\"model\":\"%s/g\",\"task\":{\"name\":\"addition\",\"rows\":64},"
                   "\"hyperparameters\":{\"learning_rate\":0.003,\"batch_size\":8,\"max_steps\":10,"
                   "\"logging_steps\":5,\"max_length\":24},\"output_dir\":\"%s/g_sft\",\"seed\":3}", tmp, tmp);
        fclose(f);
    }
    snprintf(a, sizeof a, "train %s/job.json 2>/dev/null | sed 's/,\"tokens_per_second\":[0-9.e+-]*//'", tmp);
    T_EQ_INT(run(a), 0);
    snprintf(first, sizeof first, "%s", g_out);
    T_OUT_HAS("{\"step\":0,");
    T_OUT_HAS("{\"step\":10,");
    T_OUT_HAS("\"mean_token_accuracy\"");
    T_EQ_INT(run(a), 0);
    T_STR_EQ(g_out, first);
    snprintf(a, sizeof a, "eval --model %s/g_sft --task addition --n 8", tmp);
    T_EQ_INT(run(a), 0);
    T_OUT_HAS("{\"task\":\"addition\",\"n\":8,\"exact_match\":");
    /* a bad job is answered with the field */
    snprintf(a, sizeof a, "%s/bad.json", tmp);
    f = fopen(a, "w");
    if (f) {
        fputs("{\"method\":\"sft\",\"model\":\"m\",\"task\":{\"name\":\"addition\"},"
              "\"hyperparameters\":{\"beta\":\"high\"}}", f);
        fclose(f);
    }
    snprintf(a, sizeof a, "train %s/bad.json", tmp);
    T_EQ_INT(run(a), 2);
    T_OUT_HAS("hyperparameters.beta: must be a number");
    /* with --events json the result line names it as data (param); text
     * that is not JSON names no field, jansson's line and column instead */
    char want[1400];
    snprintf(a, sizeof a, "train %s/bad.json --events json", tmp);
    T_EQ_INT(run(a), 2);
    j = out_json();
    T_STR_EQ(json_string_value(json_object_get(j, "status")), "failed");
    T_STR_EQ(json_string_value(json_object_get(j, "param")), "hyperparameters.beta");
    char file[1300];
    snprintf(file, sizeof file, "%s/bad.json", tmp);
    snprintf(want, sizeof want, "%.100s: hyperparameters.beta: must be a number", file); /* cli_train.c's cut */
    T_STR_EQ(json_string_value(json_object_get(j, "message")), want);
    json_decref(j);
    snprintf(a, sizeof a, "%s/syntax.json", tmp);
    f = fopen(a, "w");
    if (f) {
        fputs("{\"method\": \"sft\",\n \"model\": }\n", f);
        fclose(f);
    }
    snprintf(a, sizeof a, "train %s/syntax.json --events json", tmp);
    T_EQ_INT(run(a), 2);
    j = out_json();
    T_STR_EQ(json_string_value(json_object_get(j, "param")), "");
    snprintf(file, sizeof file, "%s/syntax.json", tmp);
    snprintf(want, sizeof want, "%.100s: job: invalid JSON at line 2 column 11: unexpected token near '}'", file);
    T_STR_EQ(json_string_value(json_object_get(j, "message")), want);
    json_decref(j);
    /* a run's failure names the job's field as data: the result line's
     * param (which the daemon answers as the job error's param) */
    snprintf(a, sizeof a, "%s/eval_b.json", tmp);
    f = fopen(a, "w");
    if (f) {
        fprintf(f, "{\"method\":\"evaluate\",\"model\":\"%s/llama\",\"model_b\":\"%s/broken\","
                   "\"task\":{\"name\":\"addition\",\"rows\":4},\"reward\":{\"judge\":{\"model\":\"%s/llama\"}},"
                   "\"output_dir\":\"%s/eval_b\"}", tmp, tmp, tmp, tmp);
        fclose(f);
    }
    snprintf(a, sizeof a, "train %s/eval_b.json --events json 2>/dev/null | grep '\"event\": *\"result\"'", tmp);
    run(a);
    j = out_json();
    T_STR_EQ(json_string_value(json_object_get(j, "status")), "failed");
    T_STR_EQ(json_string_value(json_object_get(j, "param")), "model_b");
    const char *m = json_string_value(json_object_get(j, "message"));
    T_REPORT_(m && !strncmp(m, "model_b: ", 9) && strstr(m, "model.safetensors"), "message: %s", m ? m : "(none)");
    json_decref(j);
    snprintf(a, sizeof a, "eval --model %s/g_sft --task chess", tmp);
    T_EQ_INT(run(a), 2);
    T_OUT_HAS("'chess' is not a built-in task");
    return t_done();
}

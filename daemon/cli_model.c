/* Model subcommands: init-model, logprobs, generate. Output is one JSON
 * object on stdout; errors are one line on stderr. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compute/ops.h"
#include "compute/pool.h"
#include "model/model.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/lm.h"

/* Starts the shared compute pool: $ALIGND_THREADS or every core. */
static void pool_start(void) {
    const char *e = getenv("ALIGND_THREADS");
    int n = e ? atoi(e) : 0;
    al_pool_init(n > 0 && n <= 256 ? n : 0);
}

static int print_json(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) return 1;
    puts(s);
    free(s);
    return 0;
}

int cli_init_model(int argc, char **argv) {
    cli_flag f[] = {{"--arch", 0, 0},  {"--layers", 0, 0},       {"--hidden", 0, 0},
                    {"--heads", 0, 0}, {"--kv-heads", 0, 0},     {"--intermediate", 0, 0},
                    {"--vocab", 0, 0}, {"--context", 0, 0},      {"--seed", 0, 0},
                    {"--out", 0, 0},   {"--score-head", 0, 1}};
    enum { ARCH, LAYERS, HIDDEN, HEADS, KV, INTER, VOCAB, CTX, SEED, OUT, SCORE, NF };
    if (cli_parse(argc, argv, f, NF)) return 2;
    if (!f[OUT].value) {
        fprintf(stderr, "alignd: init-model: --out DIR is required\n");
        return 2;
    }
    const char *arch = f[ARCH].value ? f[ARCH].value : "gpt2";
    al_model_config cfg;
    int family = 0; /* another model_type: its class defaults, from a config.json of the sizes */
    if (!strcmp(arch, "gpt2")) al_config_default(&cfg, AL_ARCH_GPT2);
    else if (!strcmp(arch, "llama")) al_config_default(&cfg, AL_ARCH_LLAMA);
    else family = 1;
    /* The built-in tiny model: byte vocabulary (256 bytes + 4 specials:
     * 256 <|endoftext|> = BOS = EOS, 257 <|pad|>, 258 <|im_start|>, 259 <|im_end|>). */
    long layers = 4, hidden = 128, heads = 4, kv = -1, inter = -1, vocab = 260, ctx = 256, seed = 0;
    if ((f[LAYERS].value && cli_int(&f[LAYERS], 1, 256, &layers)) ||
        (f[HIDDEN].value && cli_int(&f[HIDDEN], 1, 65536, &hidden)) ||
        (f[HEADS].value && cli_int(&f[HEADS], 1, 1024, &heads)) ||
        (f[KV].value && cli_int(&f[KV], 1, 1024, &kv)) ||
        (f[INTER].value && cli_int(&f[INTER], 1, 1 << 20, &inter)) ||
        (f[VOCAB].value && cli_int(&f[VOCAB], 1, 1 << 24, &vocab)) ||
        (f[CTX].value && cli_int(&f[CTX], 1, 1 << 20, &ctx)) ||
        (f[SEED].value && cli_int(&f[SEED], 0, 0x7fffffffffffffffL, &seed)))
        return 2;
    if (hidden % heads) {
        fprintf(stderr, "alignd: --hidden (%ld) must be a multiple of --heads (%ld)\n", hidden, heads);
        return 2;
    }
    if (family) {
        char j[1024], perr[AL_ERRLEN] = "";
        long ff = inter > 0 ? inter : ((hidden * 8 / 3) + 7) / 8 * 8;
        snprintf(j, sizeof j,
                 "{\"model_type\": \"%.40s\", \"hidden_size\": %ld, \"num_hidden_layers\": %ld,"
                 " \"num_attention_heads\": %ld, \"num_key_value_heads\": %ld, \"head_dim\": %ld,"
                 " \"intermediate_size\": %ld, \"vocab_size\": %ld, \"max_position_embeddings\": %ld}",
                 arch, hidden, layers, heads, kv > 0 ? kv : heads, hidden / heads, ff, vocab, ctx);
        if (strchr(arch, '"') || strchr(arch, '\\') || al_config_parse(&cfg, j, strlen(j), perr)) {
            const char *pre = "config.json: model_type: ", *msg = perr[0] ? perr : "not a model_type";
            if (!strncmp(msg, pre, strlen(pre))) msg += strlen(pre);
            fprintf(stderr, "alignd: --arch: %s\n", msg);
            return 2;
        }
    }
    if (!family) {
        cfg.n_layers = (int)layers;
        cfg.C = (int)hidden;
        cfg.NH = (int)heads;
        cfg.HD = (int)(hidden / heads);
        cfg.NKV = kv > 0 ? (int)kv : (int)heads;
        if (inter > 0) cfg.FF = (int)inter;
        else if (cfg.arch == AL_ARCH_GPT2) cfg.FF = 4 * (int)hidden;
        else cfg.FF = (((int)hidden * 8 / 3) + 7) / 8 * 8; /* SwiGLU's 2/3 of 4C, rounded to 8 */
        cfg.V = (int)vocab;
        cfg.max_T = (int)ctx;
    }
    if (vocab >= 260) {
        cfg.bos_id = 256;
        cfg.eos_id = 256;
        cfg.pad_id = 257;
    }
    if (f[SCORE].value) {
        cfg.has_score = 1;
        cfg.num_labels = 1;
    }
    char err[AL_ERRLEN] = "";
    if (al_config_validate(&cfg, err)) {
        fprintf(stderr, "alignd: init-model: %s\n", err);
        return 2;
    }
    pool_start();
    al_model *m = al_model_new(&cfg, NULL, err);
    if (!m) {
        fprintf(stderr, "alignd: init-model: %s\n", err);
        return 1;
    }
    al_model_init(m, (uint64_t)seed);
    int rc = al_model_save(m, f[OUT].value, err);
    size_t n = al_model_num_params(m, 0);
    al_model_free(m);
    if (rc) {
        fprintf(stderr, "alignd: init-model: %s\n", err);
        return 1;
    }
    json_t *j = json_pack("{s:s, s:s, s:I}", "out", f[OUT].value, "arch", arch, "parameters",
                          (json_int_t)n);
    return print_json(j);
}

/* --dtype bf16|fp32 (absent: the job default, mixed_precision "auto");
 * 1 for bf16, 0 for fp32, -1 (and a message) for anything else. */
static int dtype_flag(const char *v) {
    if (!v) return al_bf16_auto();
    if (!strcmp(v, "bf16")) return 1;
    if (!strcmp(v, "fp32")) return 0;
    fprintf(stderr, "alignd: --dtype: '%s' is not bf16 or fp32\n", v);
    return -1;
}

/* Opens the model in dir for inference with its tokenizer and chat template;
 * with tok_optional (token ids given) a folder may lack them or hold ones we
 * cannot read. Returns 0, or 1 after printing the reason. */
static int open_lm(al_lm *lm, const char *dir, int bf16, int tok_optional) {
    char err[AL_ERRLEN] = "";
    /* inference only: no gradient memory, not even while loading; in bf16
     * the matrices are read straight into bf16 */
    al_lm_cfg lc = {.open_flags = AL_OPEN_FROZEN | (bf16 ? AL_OPEN_BF16 : 0), .flags = tok_optional ? AL_LM_TOK_OPTIONAL : 0};
    if (al_lm_open(lm, dir, &lc, err) != AL_OK) {
        fprintf(stderr, "alignd: %s\n", err[0] ? err : "cannot open model");
        return 1;
    }
    return 0;
}

/* Token ids for --prompt (and --completion) text: the model's tokenizer, one
 * encoding of the whole string (never prompt and completion separately);
 * with --chat the prompt is a JSON message list rendered by the model's chat
 * template with the generation prompt. *k receives the index of the first
 * completion token (tokens ending past the prompt's bytes). Returns 0, or 1/2
 * after printing the reason. */
static int text_ids(const al_lm *lm, const char *prompt, const char *completion, int chat,
                    int **ids, int *n, int *k) {
    char err[AL_ERRLEN] = "";
    char *ptext = NULL, *full = NULL;
    size_t plen = 0;
    int32_t *tids = NULL, *ends = NULL;
    int rc = 1, nt = 0;
    if (chat) {
        json_error_t je;
        json_t *m = json_loads(prompt, 0, &je);
        if (!json_is_array(m)) {
            fprintf(stderr, "alignd: --prompt: with --chat, a JSON list of messages (%s)\n", je.text);
            json_decref(m);
            rc = 2;
            goto out;
        }
        int r = al_chat_render(lm->chat, m, NULL, 1, &ptext, &plen, NULL, NULL, err);
        json_decref(m);
        if (r) {
            fprintf(stderr, "alignd: --prompt: %s\n", err);
            rc = 2;
            goto out;
        }
    } else {
        ptext = strdup(prompt);
        plen = strlen(prompt);
    }
    size_t clen = completion ? strlen(completion) : 0;
    full = malloc(plen + clen + 1);
    if (!ptext || !full) goto out;
    memcpy(full, ptext, plen);
    memcpy(full + plen, completion ? completion : "", clen + 1);
    /* a rendered template writes its own BOS; plain text gets the post-processor's */
    if (al_tok_encode(lm->tok, full, plen + clen, !chat, 1, &tids, &nt, NULL, &ends, err)) {
        fprintf(stderr, "alignd: %s\n", err);
        goto out;
    }
    *ids = malloc((size_t)(nt ? nt : 1) * sizeof **ids);
    if (!*ids) goto out;
    *k = nt;
    for (int i = 0; i < nt; i++) {
        (*ids)[i] = tids[i];
        if (*k == nt && ends[i] > (int32_t)plen) *k = i;
    }
    *n = nt;
    rc = 0;
out:
    free(tids);
    free(ends);
    free(ptext);
    free(full);
    return rc;
}

int cli_logprobs(int argc, char **argv) {
    cli_flag f[] = {{"--model", 0, 0},      {"--ids", 0, 0},  {"--prompt-len", 0, 0},
                    {"--prompt", 0, 0},     {"--completion", 0, 0}, {"--chat", 0, 1},
                    {"--dtype", 0, 0}};
    if (cli_parse(argc, argv, f, 7)) return 2;
    if (!f[0].value || !f[1].value == !f[3].value) {
        fprintf(stderr, "alignd: logprobs: --model DIR and either --ids 1,2,3 or --prompt TEXT "
                        "--completion TEXT are required\n");
        return 2;
    }
    int *ids = NULL, n = 0, rc;
    long k = 1;
    if (f[3].value && (!f[4].value || !f[4].value[0])) {
        fprintf(stderr, "alignd: logprobs: --prompt needs a non-empty --completion\n");
        return 2;
    }
    if (!f[3].value) {
        if ((rc = cli_ids("--ids", f[1].value, &ids, &n))) return rc;
        if (f[2].value && cli_int(&f[2], 1, n > 1 ? n - 1 : 1, &k)) {
            free(ids);
            return 2;
        }
        if (n < 2) {
            fprintf(stderr, "alignd: logprobs: --ids needs at least 2 tokens\n");
            free(ids);
            return 2;
        }
    }
    pool_start();
    int bf16 = dtype_flag(f[6].value);
    al_lm lm = {0};
    if (bf16 < 0 || open_lm(&lm, f[0].value, bf16, !f[3].value)) {
        free(ids);
        return bf16 < 0 ? 2 : 1;
    }
    if (f[3].value) {
        int kk;
        if ((rc = text_ids(&lm, f[3].value, f[4].value, f[5].value != NULL, &ids, &n, &kk))) {
            al_lm_close(&lm);
            return rc;
        }
        k = kk < 1 ? 1 : kk;
        if (k >= n) {
            fprintf(stderr, "alignd: logprobs: the completion adds no tokens\n");
            free(ids);
            al_lm_close(&lm);
            return 2;
        }
    }
    al_model *m = lm.m;
    const al_model_config *cfg = al_model_config_of(m);
    char err[AL_ERRLEN] = "";
    int32_t *tok = calloc((size_t)n, sizeof *tok), *tgt = calloc((size_t)n, sizeof *tgt);
    float *lp = calloc((size_t)n, sizeof *lp);
    rc = 1;
    if (!tok || !tgt || !lp) goto out;
    for (int i = 0; i < n; i++) {
        if (ids[i] >= cfg->V) {
            fprintf(stderr, "alignd: --ids: token %d is outside the vocabulary (%d)\n", ids[i], cfg->V);
            rc = 2;
            goto out;
        }
        tok[i] = ids[i];
    }
    if (n > cfg->max_T) {
        fprintf(stderr, "alignd: --ids: %d tokens exceed the context (%d)\n", n, cfg->max_T);
        rc = 2;
        goto out;
    }
    /* position t scores token t+1; we report tokens k..n-1 */
    for (int t = 0; t < n; t++) tgt[t] = (t + 1 < n && t + 1 >= k) ? tok[t + 1] : -1;
    if (al_model_reserve(m, 1, n, AL_MODEL_FORWARD_ONLY, err)) {
        fprintf(stderr, "alignd: %s\n", err);
        goto out;
    }
    al_tokens in = {.B = 1, .T = n, .ids = tok, .targets = tgt};
    al_fwd fo = {.logp = lp};
    if ((rc = al_model_forward(m, &in, &fo))) {
        fprintf(stderr, "alignd: forward failed: %s\n", al_strerror(rc));
        rc = 1;
        goto out;
    }
    json_t *jt = json_array(), *jl = json_array();
    for (int t = (int)k; t < n; t++) {
        json_array_append_new(jt, json_integer(tok[t]));
        json_array_append_new(jl, json_real(lp[t - 1]));
    }
    rc = print_json(json_pack("{s:o, s:o}", "tokens", jt, "logprobs", jl));
out:
    free(tok);
    free(tgt);
    free(lp);
    free(ids);
    al_lm_close(&lm);
    return rc;
}

int cli_generate(int argc, char **argv) {
    cli_flag f[] = {{"--model", 0, 0},       {"--ids", 0, 0},   {"--max-new-tokens", 0, 0},
                    {"--temperature", 0, 0}, {"--top-k", 0, 0}, {"--top-p", 0, 0},
                    {"--seed", 0, 0},        {"--stop", 0, 0},  {"--prompt", 0, 0},
                    {"--chat", 0, 1},        {"--dtype", 0, 0}};
    enum { MODEL, IDS, MAXNEW, TEMP, TOPK, TOPP, SEED, STOP, PROMPT, CHAT, DTYPE, NF };
    if (cli_parse(argc, argv, f, NF)) return 2;
    if (!f[MODEL].value || !f[IDS].value == !f[PROMPT].value) {
        fprintf(stderr, "alignd: generate: --model DIR and either --ids 1,2,3 or --prompt TEXT are required\n");
        return 2;
    }
    long max_new = 32, top_k = 0, seed = 0;
    double temp = 0.0, top_p = 1.0;
    if ((f[MAXNEW].value && cli_int(&f[MAXNEW], 0, 1 << 20, &max_new)) ||
        (f[TEMP].value && cli_float(&f[TEMP], 0, 100, &temp)) ||
        (f[TOPK].value && cli_int(&f[TOPK], 0, 1 << 24, &top_k)) ||
        (f[TOPP].value && cli_float(&f[TOPP], 0, 1, &top_p)) ||
        (f[SEED].value && cli_int(&f[SEED], 0, 0x7fffffffffffffffL, &seed)))
        return 2;
    int *ids = NULL, n = 0, rc, *stop = NULL, n_stop = 0, k;
    if (!f[PROMPT].value && (rc = cli_ids("--ids", f[IDS].value, &ids, &n))) return rc;
    if (f[STOP].value && (rc = cli_ids("--stop", f[STOP].value, &stop, &n_stop))) {
        free(ids);
        return rc;
    }
    pool_start();
    int bf16 = dtype_flag(f[DTYPE].value);
    al_lm lm = {0};
    if (bf16 < 0 || open_lm(&lm, f[MODEL].value, bf16, !f[PROMPT].value)) {
        free(ids);
        free(stop);
        return bf16 < 0 ? 2 : 1;
    }
    if (f[PROMPT].value) {
        rc = text_ids(&lm, f[PROMPT].value, NULL, f[CHAT].value != NULL, &ids, &n, &k);
        if (!rc && n == 0) {
            fprintf(stderr, "alignd: generate: --prompt encodes to no tokens\n");
            rc = 2;
        }
        if (rc) {
            free(ids);
            free(stop);
            al_lm_close(&lm);
            return rc;
        }
    }
    al_model *m = lm.m;
    char err[AL_ERRLEN] = "";
    int32_t *prompt = calloc((size_t)n, sizeof *prompt);
    int32_t *out_ids = calloc((size_t)max_new + 1, sizeof *out_ids);
    float *out_lp = calloc((size_t)max_new + 1, sizeof *out_lp);
    int32_t *stops = calloc((size_t)n_stop + AL_LM_MAX_STOPS, sizeof *stops);
    rc = 1;
    if (!prompt || !out_ids || !out_lp || !stops) goto out;
    for (int i = 0; i < n; i++) prompt[i] = ids[i];
    for (int i = 0; i < n_stop; i++) stops[i] = stop[i];
    /* where the served model stops (the folder's eos ids, the template's
     * end of turn) unless --stop names the ids */
    if (!n_stop && (n_stop = al_lm_stop_ids(&lm, stops, AL_LM_MAX_STOPS, err)) < 0) {
        fprintf(stderr, "alignd: %s\n", err);
        goto out;
    }
    al_gen_cfg g = {.max_new = (int)max_new, .temperature = (float)temp, .top_k = (int)top_k,
                    .top_p = (float)top_p, .stop = stops, .n_stop = n_stop};
    al_rng rng;
    al_rng_seed(&rng, (uint64_t)seed);
    int len = 0;
    const int32_t *pp = prompt;
    if (al_generate(m, &pp, &n, 1, &g, &rng, out_ids, out_lp, &len, err)) {
        fprintf(stderr, "alignd: generate: %s\n", err);
        rc = 2;
        goto out;
    }
    json_t *ji = json_array(), *jl = json_array();
    int stopped = 0;
    for (int i = 0; i < len; i++) {
        json_array_append_new(ji, json_integer(out_ids[i]));
        json_array_append_new(jl, json_real(out_lp[i]));
        for (int s = 0; s < n_stop; s++) stopped |= out_ids[i] == stops[s];
    }
    json_t *res = json_pack("{s:o, s:o, s:s}", "ids", ji, "logprobs", jl, "finish_reason",
                            stopped ? "stop" : "length");
    if (f[PROMPT].value) {
        /* the completion as text, special tokens (the stop token) left out */
        char *txt = NULL;
        size_t tl;
        if (al_tok_decode(lm.tok, out_ids, len, 1, &txt, &tl) == AL_OK)
            json_object_set_new(res, "text", json_stringn(txt, tl));
        free(txt);
    }
    rc = print_json(res);
out:
    free(prompt);
    free(out_ids);
    free(out_lp);
    free(stops);
    free(ids);
    free(stop);
    al_lm_close(&lm);
    return rc;
}

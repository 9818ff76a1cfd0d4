/* A Jinja interpreter for chat templates, rendering byte for byte what
 * jinja2 3.1 renders in the sandbox transformers' apply_chat_template uses:
 * {{ }}, {% if/elif/else %}, {% for %} with loop.* and loop controls,
 * {% set %} (incl. blocks and namespace() attributes), {% macro %}/{% call %},
 * {% filter %}, {% with %}, whitespace control ({%- -%}, trim_blocks and
 * lstrip_blocks as transformers sets them), jinja2's filters and tests by
 * name (filters.c, builtins.c; the few no chat template uses fail with
 * AL_EUNSUP), Python's operators, "%" and str.format, the str, dict and list
 * methods the immutable sandbox allows (strings.c, builtins.c) with Python's
 * full Unicode case mappings and character classes (../unicode.h, on
 * utf8proc), slicing, raise_exception(msg), strftime_now, and
 * {% generation %} ... {% endgeneration %} spans.
 *
 * Values come from a jansson object, so the caller passes messages, tools,
 * add_generation_prompt, bos_token, eos_token exactly as transformers'
 * apply_chat_template does. Templates are parsed once and rendered many
 * times; a parsed template is immutable and thread-safe to render. */
#ifndef AL_JINJA_H
#define AL_JINJA_H

#include <jansson.h>

#include "../../al.h"

typedef struct al_jinja al_jinja;

/* A byte range [start, end) of the rendered output. */
typedef struct al_span { size_t start, end; } al_span;

/* Parses a template. Syntax errors -> AL_EFORMAT with line and reason. */
int al_jinja_parse(al_jinja **out, const char *src, size_t len, char err[AL_ERRLEN]);
void al_jinja_free(al_jinja *t);
/* Renders with ctx (a JSON object of variables; borrowed). *out is malloc'd
 * and NUL-terminated. spans/n_spans (may be NULL): malloc'd byte ranges of
 * the output produced inside {% generation %} blocks. raise_exception ->
 * AL_EINVAL with its message in err; runaway templates (output over 64 MiB,
 * recursion or loop limits) -> AL_ERANGE. */
int al_jinja_render(const al_jinja *t, const json_t *ctx, char **out, size_t *len,
                    al_span **spans, int *n_spans, char err[AL_ERRLEN]);

#endif

/* A Jinja interpreter for chat templates (the subset real templates use):
 * {{ }}, {% if/elif/else %}, {% for %} with loop.index/index0/first/last/
 * length/revindex, {% set %} (incl. namespace() attributes), {% macro %},
 * whitespace control ({%- -%}, trim_blocks/lstrip_blocks as transformers sets
 * them), filters (trim, tojson, length, upper, lower, title, capitalize,
 * replace, join, first, last, default, list, string, int, items, selectattr,
 * map(attribute=), safe, indent), tests (defined, none, string, mapping,
 * iterable, number, sameas, equalto), operators (and or not in is ~ + - * /
 * // % == != < <= > >=), string methods (strip, lstrip, rstrip, split,
 * startswith, endswith, upper, lower, replace, title), dict .get/.items/.keys,
 * slicing, raise_exception(msg), strftime_now, and {% generation %} ...
 * {% endgeneration %} spans.
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

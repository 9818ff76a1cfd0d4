/* Jinja chat-template interpreter: public entry points (see jinja.h).
 *
 * The target is byte-identical output with what transformers'
 * apply_chat_template produces, i.e. jinja2 3.x with
 * ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
 * extensions=[AssistantTracker, loopcontrols]), its json.dumps-based tojson
 * filter and the raise_exception / strftime_now globals. The pieces live in
 * lex.c, parse.c, eval.c, value.c,
 * builtins.c and util.c (see jinja_int.h).
 *
 * Errors. al_jinja_parse: AL_EFORMAT for syntax errors and for filters or
 * tests that do not exist (outside if-statements, as jinja2 does),
 * AL_EUNSUP for tags we do not implement (include, extends, call, ...),
 * AL_ENOMEM. al_jinja_render: AL_EINVAL when the template calls
 * raise_exception (err holds exactly its message; "line N: raise_exception()
 * with an empty message" when that is empty); AL_EFORMAT for what
 * Python raises at render time (undefined values used in arithmetic, type
 * errors, unknown filters in if-branches, ...), with "line N: reason";
 * AL_ERANGE for runaway templates (output over 64 MiB, more than 5M loop
 * steps, macro recursion deeper than 200, range() over 100000 items as in
 * jinja2's sandbox, more than 512 MiB of live values); AL_EUNSUP for
 * Python features outside the supported subset.
 *
 * Known differences from CPython + jinja2, mostly reported as errors rather
 * than as different output: integers are 64-bit (overflow -> AL_ERANGE);
 * printing functions or generators (Python shows memory addresses), complex
 * numbers, str.encode, \N{...} escapes, lipsum/cycler/joiner and the
 * filters filesizeformat, groupby, pprint, random, slice, striptags,
 * urlencode, urlize, wordwrap, xmlattr -> AL_EUNSUP. Case mapping and
 * character classes know Latin, Greek and Cyrillic letters and the decimal
 * digits of common scripts; other letters are uncased (upper/lower/title
 * leave them as they are), and str.isprintable knows no unassigned code
 * points (repr() of those differs). |escape returns a
 * plain string (no Markup semantics). The context and the output are UTF-8;
 * floats are printed with the C library in the "C" numeric locale.
 *
 * Threads: a parsed template is immutable; renders share nothing. */
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"

int al_jinja_parse(al_jinja **out, const char *src, size_t len, char err[AL_ERRLEN]) {
    char tmp[AL_ERRLEN];
    if (!err) err = tmp;
    err[0] = 0;
    if (!out || (!src && len)) return al_err(err, AL_EINVAL, "no template");
    al_jinja *t = calloc(1, sizeof *t);
    if (!t) return al_err(err, AL_ENOMEM, "out of memory");
    jtok *toks = NULL;
    size_t ntok = 0;
    int rc = jj_lex(&t->arena, src ? src : "", len, &toks, &ntok, err);
    if (!rc) rc = jj_parse(t, toks, ntok, err);
    free(toks);
    if (rc) {
        if (rc == AL_ENOMEM && !err[0]) al_err(err, rc, "out of memory");
        jj_arena_free(&t->arena);
        free(t);
        return rc;
    }
    *out = t;
    return AL_OK;
}

void al_jinja_free(al_jinja *t) {
    if (!t) return;
    jj_arena_free(&t->arena);
    free(t);
}

int al_jinja_render(const al_jinja *t, const json_t *ctx, char **out, size_t *len, al_span **spans, int *n_spans,
                    char err[AL_ERRLEN]) {
    char tmp[AL_ERRLEN];
    if (!err) err = tmp;
    err[0] = 0;
    if (!t || !out) return al_err(err, AL_EINVAL, "no template");
    if (ctx && !json_is_object(ctx)) return al_err(err, AL_EINVAL, "context must be a JSON object");
    jctx c;
    memset(&c, 0, sizeof c);
    c.err = err;
    c.t = t;
    c.tracked.tnext = c.tracked.tprev = &c.tracked;
    c.out = &c.root;
    int rc = AL_OK;
    jv vars = jv_undef();
    if (ctx) {
        rc = jj_from_json(&c, ctx, &vars, 0);
        if (!rc) c.vars = jv_map(vars);
    }
    jmap *root = NULL;
    if (!rc) {
        root = jj_scope_new(&c, NULL);
        if (!root) rc = jj_fail(&c, AL_ENOMEM, "out of memory");
    }
    if (!rc) rc = jj_render_root(&c, t, root);
    jj_scope_release(&c, root);
    jj_decref(&c, vars);
    jj_track_teardown(&c);
    if (rc) {
        if (rc == AL_ENOMEM && !err[0]) al_err(err, rc, "out of memory");
        jj_buf_free(&c.root);
        free(c.spans);
        return rc;
    }
    if (!c.root.p) {
        c.root.p = malloc(1);
        if (!c.root.p) {
            free(c.spans);
            return al_err(err, AL_ENOMEM, "out of memory");
        }
        c.root.p[0] = 0;
    }
    *out = c.root.p;
    if (len) *len = c.root.n;
    if (spans) {
        *spans = c.nspans ? c.spans : NULL;
        if (!c.nspans) free(c.spans);
    } else {
        free(c.spans);
    }
    if (n_spans) *n_spans = c.nspans;
    return AL_OK;
}

#!/usr/bin/python3
"""Reference renderer for tests/test_jinja.c.

Renders chat templates with Debian's python3-jinja2 in the environment that
transformers' apply_chat_template builds (utils/chat_template_utils.py,
_compile_jinja_template / render_jinja_template):

    ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                  extensions=[AssistantTracker, loopcontrols])
    filters["tojson"]          = json.dumps(ensure_ascii=False, indent, separators, sort_keys)
    globals["raise_exception"] = raise TemplateError(message)
    globals["strftime_now"]    = datetime.now().strftime(format)

AssistantTracker is re-implemented here with the same logic as transformers'
(a span is recorded only while something has been rendered or a span exists)
and reports spans both in characters (what transformers returns) and in UTF-8
bytes (what al_jinja_render returns).

Usage: jinja_ref.py CASES.jsonl OUT.jsonl
  each input line:  {"id": str, "template": str, "context": {...}}
  each output line: {"id", "ok": true, "output", "spans": [[b0, b1], ...],
                     "char_spans": [[c0, c1], ...]}
                 or {"id", "ok": false, "kind": "syntax" | "raise" | "runtime",
                     "error": exception type, "message": str(exception)}
Exit code 3 when jinja2 cannot be imported.
"""
import json
import sys
from datetime import datetime

try:
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError as e:  # pragma: no cover - reported by the C test
    sys.stderr.write(f"jinja_ref.py: cannot import jinja2 ({e}); apt-get install python3-jinja2\n")
    sys.exit(3)


class AssistantTracker(Extension):
    """transformers' {% generation %} tag, recording character and byte spans."""

    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        environment.extend(activate_tracker=self.activate_tracker)
        self._rendered_blocks = None
        self._generation_indices = None
        self._byte_indices = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        rv = caller()
        if self.is_active():
            done = "".join(self._rendered_blocks)
            start_index = len(done)
            end_index = start_index + len(rv)
            self._generation_indices.append((start_index, end_index))
            b0 = len(done.encode("utf-8"))
            self._byte_indices.append((b0, b0 + len(rv.encode("utf-8"))))
        return rv

    def is_active(self):
        return self._rendered_blocks or self._generation_indices

    def activate_tracker(self, rendered_blocks, generation_indices, byte_indices):
        self._rendered_blocks = rendered_blocks
        self._generation_indices = generation_indices
        self._byte_indices = byte_indices


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, context):
    try:
        template = env.from_string(source)
    except Exception as e:  # syntax and assertion errors surface at compile time
        return {"ok": False, "kind": "syntax", "error": type(e).__name__, "message": str(e)}
    blocks, spans, byte_spans = [], [], []
    env.activate_tracker(blocks, spans, byte_spans)
    try:
        for block in template.generate(**context):
            blocks.append(block)
        out = "".join(blocks)
    except Exception as e:
        kind = "raise" if type(e) is jinja2.exceptions.TemplateError else "runtime"
        return {"ok": False, "kind": kind, "error": type(e).__name__, "message": str(e)}
    finally:
        env.activate_tracker(None, None, None)
    return {"ok": True, "output": out, "spans": [list(s) for s in byte_spans],
            "char_spans": [list(s) for s in spans]}


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    env = make_env()
    with open(argv[1], encoding="utf-8") as fin, open(argv[2], "w", encoding="utf-8") as fout:
        for line in fin:
            if not line.strip():
                continue
            case = json.loads(line)
            res = render(env, case["template"], case.get("context") or {})
            res["id"] = case["id"]
            fout.write(json.dumps(res, ensure_ascii=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.setrecursionlimit(1000)
    sys.exit(main(sys.argv))

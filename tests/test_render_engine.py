"""render/engine.py + engine_check.py: MiniJinja renders exactly what the jinja2 sandbox renders, or not at all.

Every construct the static check allows is rendered by both engines on adversarial values; real
templates are compared on real conversations (with tools); refused constructs, hostile templates, data
guards, spot-check mismatches and errors all end with jinja2's text or jinja2's error."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import pytest
from conftest import template_source
from helpers import chat, write_jsonl

from llmprep.errors import RecordError
from llmprep.render import ChatRenderer
from llmprep.render.engine import FastTemplate, _compile, for_source
from llmprep.render.engine_check import unsupported
from llmprep.render.sandbox import TEMPLATE_GLOBALS, compile_template

ASSETS = Path(__file__).parent / "assets"
VALUES = {"s": "a b", "e": "", "n": 3, "z": 0, "neg": -7, "t": True, "l": [1, "x", True], "el": [],
          "d": {"k": "v", "n": 1}, "ed": {}, "ls": ["b", "a"], "ld": [{"role": "user", "x": 1}, {"role": "assistant"}],
          "q": "it's \"q\" \\ \n\t", "u": "ü你 🤗", "ws": " \u3000\u2028x\xa0 "}  # null/floats: the guards' test
EXPRESSIONS = [
    "{v}", "{v} is string", "{v} is mapping", "{v} is iterable", "{v} is sequence", "{v} is none", "{v} is defined",
    "{v} is number", "{v} is integer", "{v} is boolean", "{v} is true", "{v} is false", "{v} is undefined",
    "{v}|length", "{v}|count", "{v}|string", "{v}|tojson", "{v}|tojson(indent=2)", "{v}|default('D')",
    "{v}|default('D', true)", "{v}|list", "{v}|join(',')", "{v}|first", "{v}|last", "{v}|trim", "{v}|safe",
    "{v}|items|list", "{v}|dictsort", "{v} is not none", "not {v}", "{v} ~ 'x'", "'k' in {v}", "'a' in {v}",
    "{v}.items()|list", "{v}.keys()|list", "{v}.values()|list", "{v}.get('k')", "{v}.get('k', 'D')",
    "{v}[0]", "{v}[-1]", "{v}[1:]", "{v}[::-1]", "{v}['k']", "{v}.k", "{v} == 'a b'", "{v} != 1", "{v} + {v}",
    "{v}.split()", "{v}.split(' ')", "{v}.split(' ', 1)", "{v}.strip()", "{v}.lstrip()", "{v}.rstrip()",
    "{v}.strip('a ')", "{v}.startswith('a')", "{v}.endswith('b')", "{v} if {v} else 'no'", "{v} or 'x'",
    "{v} and 'x'", "{v}|selectattr('role', 'equalto', 'user')|list", "{v}|map(attribute='role')|list",
    "{v}|reject('equalto', 'a')|list", "{v}|select('odd')|list", "{v}|rejectattr('x', 'defined')|list",
    "{v} is equalto 3", "{v}|length > 1", "({v}|length) - 1", "{v} // 2", "{v} % 2", "{v} < 2", "'a' in {v}",
    "{v} in ['a b', 1]", "{v}|join(', ')",
    "{v} / 2", "-{v}", "missing.{v}", "namespace(a={v}).a",
]
STATEMENTS = [
    "{% for x in ls if x != 'a' %}{{ loop.index }}{{ x }}{{ loop.length }}{{ loop.first }}{% endfor %}",
    "{% for x in ls %}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.last }}"
    "{% else %}E{% endfor %}",
    "{% for x in el %}X{% else %}E{% endfor %}",
    "{% set y = 1 %}{% for x in ls %}{% set y = 2 %}{{ y }}{% endfor %}{{ y }}",
    "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d|dictsort %}{{ k }}{% endfor %}",
    "{% macro m(a, b='B') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m(1, b=2) }}",
    "{% set x %}  body {{ s }} {% endset %}[{{ x }}]",
    "  {% if t %}\n   yes\n  {% endif %}\n", "{%- if t -%}  a  {%- endif -%}  b", "{% if t +%}  x{% endif %}",
    "{% for m in ld %}\n  {{ m.role }}\n{% endfor %}\n", "{# c #}\n  x {#- c -#} y\n",
    "{% set ns = namespace(a=[], c=0) %}{% for x in ls %}{% set ns.a = ns.a + [x] %}{% set ns.c = ns.c + 1 %}"
    "{% endfor %}{{ ns.a }}{{ ns.c }}",
    "{% for x in ls %}{% if loop.first %}{% continue %}{% endif %}{{ x }}{% break %}{% endfor %}",
    "{% for x in s %}{{ x }}.{% endfor %}{% for x in d %}{{ x }}.{% endfor %}", "{{ range(3)|join }}",
    "{{ raise_exception('boom') if ls|length > 5 }}ok", "{{ ld[0]['x'] + 1 }}", "{{ {'a': 1, 'b': [s]}|tojson }}",
    "{% set ns = namespace(i=ls|length - 1) %}{% for x in ls %}{% set j = ns.i - loop.index0 %}"
    "{% if loop.index0 > ns.i or j >= 0 %}{% set ns.i = j %}{% endif %}{% endfor %}{{ ns.i }}",
    "{% if messages[0].role == 'system' %}{% set rest = messages[1:] %}{% else %}{% set rest = messages %}"
    "{% endif %}{% for m in rest[::-1] %}{{ m.content }}{% endfor %}",
    "{% generation %}{{ s }}{% endgeneration %}\n{%- generation -%}\n x {% endgeneration %}",
]


def _pair(source: str, context: dict, fast: FastTemplate | None = None):
    """(jinja2's result, FastTemplate's result); an error is ("error", type). Spot checks off: what is
    compared here is MiniJinja itself plus the guards and the fallback."""
    fast = fast or for_source(source)
    fast.calls = 10**9 + 1
    out = []
    for render in (fast.reference.render, fast.render):
        try:
            out.append(render(**context))
        except Exception as exc:  # noqa: BLE001 - both engines must fail alike, whatever the error
            out.append(("error", type(exc).__name__))
    return out, fast


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_every_allowed_expression_renders_as_jinja2(expression):
    served = rendered = 0
    for name in [*VALUES, "missing"]:
        source = "{{ " + expression.format(v=name) + " }}"
        if unsupported(source, compile_template(source).environment) is not None:
            continue
        (expected, got), fast = _pair(source, VALUES)
        assert got == expected, (source, expected, got)
        served += fast.stats["minijinja"]
        rendered += not isinstance(expected, tuple)
    assert served or not rendered, f"{expression}: allowed, renders in jinja2, but never by MiniJinja"


@pytest.mark.parametrize("statement", STATEMENTS)
def test_every_allowed_statement_renders_as_jinja2(statement):
    assert unsupported(statement, compile_template(statement).environment) is None
    (expected, got), fast = _pair(statement, VALUES)
    assert got == expected
    assert fast.stats["minijinja"] == (0 if isinstance(expected, tuple) else 1)


@pytest.mark.parametrize("source, why", [
    ("{{ s|upper }}", "filter 'upper'"),  # Rust's Unicode case tables differ from Python's
    ("{{ s.capitalize() }}", "method .capitalize()"),
    ("{{ s.title() }}", "method .title()"),
    ("{{ d.__class__ }}", "'__class__'"),
    ("{{ d['_x'] }}", "'_x'"),
    ("{{ d.items }}", "'.items' not called"),
    ("{{ '%s' % s }}", "string formatting"),
    ("{{ s * 3 }}", "Mul nodes"),
    ("{{ 1e20 }}", "constant 1e+20"),
    ("{{ s.split('')|length }}", "split() with an empty or computed separator"),
    ("{{ s.split(x)|length }}", "split() with an empty or computed separator"),
    ("{% for x in ls %}{{ loop.cycle('a', 'b') }}{% endfor %}", "loop.cycle"),
    ("{% for x in ls %}{{ loop }}{% endfor %}", "'loop' used other than"),
    ("{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}x{% endcall %}", "'caller'"),
    ("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", "macro 'm' calls itself"),
    ("{% macro a(n) %}{{ b(n) }}{% endmacro %}{% macro b(n) %}{{ a(n) }}{% endmacro %}", "calls itself"),
    ("{% set f = namespace %}{{ f() }}", "call of 'f'"),
    ("{{ d.get }}", "'.get' not called"),
    ("{{ s[1:]|length }}", "a slice of something other than messages"),  # jinja2 raises on undefined, MiniJinja: []
    ("{% set m = messages[1:] %}{% set m = s %}", "also assigned something else"),
    ("{{ s.split(' ') }}", "printing a list/map"),  # MiniJinja's repr escapes unlike Python's
    ("{{ 'x' ~ (d|items) }}", "printing a list/map"),
    ("{% set p = ls|list %}{{ p }}", "printing a list/map"),
    ("{% for pair in d|items %}{{ pair }}{% endfor %}", "printing a list/map"),
    ("{{ [s]|string }}", "printing a list/map"),
    ("{{ d|items|join(', ') }}", "printing a list/map"),
    ("{{ n > m.x }}", "ordering comparison"),  # jinja2 raises on undefined or mixed types
    ("{% set ns = namespace(i=0) %}{% set ns.i = s %}{{ ns.i < 1 }}", "ordering comparison"),
    ("{{ m.role in s }}", "'in' between two computed values"),
    ("{{ ls|select('odd')|join }}", "select with 'odd'"),
    ("{{ lipsum() }}", "call of 'lipsum'"),
    ("{% set ns = namespace(s='a') %}{% for m in messages %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
     "could grow exponentially"),
    ("{% set ns = namespace(s='a') %}{% for m in messages %}{% set ns.s = ns.s|tojson %}{% endfor %}",
     "could grow exponentially"),
    ("{% set ns = namespace(s='a') %}{% macro m(x) %}{{ x }}{{ x }}{% endmacro %}"
     "{% for i in messages %}{% set ns.s = m(ns.s) %}{% endfor %}", "could grow exponentially"),
    ("{% set x = 'a' %}" + "{% set x = x + x %}" * 5, "more than 4 assignments that enlarge"),
    ("{% set ns = namespace(_a=1) %}", "keyword '_a'"),
    ("{{ s|map('upper')|join }}", "map with 'upper'"),
    ("{{ ls|select('lower')|join }}", "select with 'lower'"),
])
def test_refused_constructs(source, why):
    assert why in unsupported(source, compile_template(source).environment)
    fast = for_source(source)
    assert fast.engine == "jinja2" and why in fast.why_not


def test_linear_accumulation_is_allowed():
    source = ("{% set ns = namespace(s='') %}{% for m in messages %}{% set ns.s = ns.s + m.content + ', ' %}"
              "{% endfor %}{{ ns.s }}{% set x = messages[0].content %}{% set x = x + '!' %}{{ x }}")
    assert for_source(source).engine == "minijinja"
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert _pair(source, {"messages": messages})[0] == ["a, b, a!", "a, b, a!"]


REAL = sorted(p for p in (ASSETS / "engine").glob("*.jinja")) + sorted((ASSETS / "templates").glob("*.jinja"))
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "required": ["city"],
                                                          "properties": {"city": {"type": "string"}}}}}]
TOOL_CHAT = [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [
                 {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "{\"c\": 21}"}, {"role": "assistant", "content": "21 °C."}]


# Real templates MiniJinja may not render, and why (they are still compared: jinja2 renders them).
REFUSED = {"llama3_1.jinja": "'in' between two computed values",  # `tool_call.name in builtin_tools`
           "llama3.1.jinja": "'in' between two computed values", "gpt-oss.jinja": "'in' between two computed values",
           "command-r7b.jinja": "filter 'lower'", "command-r7b-tool-use.jinja": "filter 'lower'",
           "mistral-v0.3.jinja": "printing a list/map", "mistral-nemo.jinja": "printing a list/map",
           "nemotron-nano-v2.jinja": "method .replace()", "smollm3.jinja": "method .replace()"}


@pytest.mark.parametrize("name", ["chatml", "llama2", "llama3", "mistral", "zephyr", "alpaca", "question-answer"]
                         + [str(p) for p in REAL])
def test_real_templates_render_as_jinja2(name, english_chats, chinese_chats):
    source = Path(name).read_text(encoding="utf-8") if name.endswith(".jinja") else template_source(name)
    contexts = [{"messages": m, "add_generation_prompt": g, "bos_token": "<s>", "eos_token": "</s>"}
                for m in english_chats[:60] + chinese_chats[:60] + [chat(" lead", "trail \n", system=" sys ")]
                for g in (False, True)]
    contexts += [{"messages": TOOL_CHAT, "tools": TOOLS, "add_generation_prompt": True}]
    fast = for_source(source)
    refused = REFUSED.get(Path(name).name)
    assert (fast.why_not is None) if refused is None else refused in fast.why_not, fast.why_not
    for context in contexts:
        expected, got = _pair(source, context, fast)[0]
        assert got == expected
    renderer = ChatRenderer(source, {"bos_token": "<s>", "eos_token": "</s>"}, ("</s>", "<|im_end|>", "<|eot_id|>"))
    for context in contexts[:20]:
        try:
            renderer.layout(context["messages"])
        except RecordError:
            pass
    assert renderer.engine.stats["mismatches"] == 0
    assert renderer.rows_by_engine["minijinja" if fast.engine == "minijinja" else "jinja2"] > 0


def test_data_guards_send_rows_to_jinja2():
    """null and floats anywhere in the data, and U+001C..U+001F for templates that strip: jinja2 renders."""
    strip = for_source("{% for m in messages %}{{ m.content|trim }}{% endfor %}")
    plain = for_source("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert strip.strips and not plain.strips
    for fast, messages, engine in [
        (strip, [{"role": "user", "content": "x\x1f"}], "jinja2"),
        (plain, [{"role": "user", "content": "x\x1f"}], "minijinja"),
        (plain, [{"role": "user", "content": "x", "extra": None}], "jinja2"),
        (plain, [{"role": "user", "content": "x", "score": 0.5}], "jinja2"),
        (plain, [{"role": "user", "content": "x", "meta": {"a": [1, {"b": None}]}}], "jinja2"),
        (plain, [{"role": "user", "content": "x", "meta": {"a": [1, {"b": "c"}]}}], "minijinja"),
    ]:
        before = dict(fast.stats)
        assert fast.render(messages=messages) == fast.reference.render(messages=messages)
        assert fast.stats[engine] == before[engine] + 1, (messages, engine)


@pytest.mark.parametrize("source, nullable", [
    ("{% if tools %}{% for t in tools %}{{ t|tojson }}{% endfor %}{% endif %}", {"tools"}),
    ("{% if tools is not none and x %}{{ tools|join(',') }}{% endif %}{{ tools is defined }}", {"tools"}),
    ("{{ tools == none }}{{ 'T' if tools else 'F' }}{{ tools[0] if tools else '' }}", {"tools"}),
    ("{% for t in tools %}{{ t }}{% endfor %}", set()),  # jinja2 raises on None, MiniJinja loops 0 times
    ("{% if tools or x %}{{ tools|join(',') }}{% endif %}", set()),
    ("{% if not tools %}{{ tools|join(',') }}{% endif %}", set()),
    ("{{ tools or 'x' }}", set()),
])
def test_tools_none_is_minijinja_only_where_the_template_guards_it(source, nullable):
    """transformers passes tools=None: MiniJinja gets the None only where every use of it is a test, a
    condition, or inside a branch taken when it is truthy; elsewhere jinja2 renders (or raises) for it."""
    fast = for_source(source)
    assert fast.nullable & {"tools"} == nullable
    messages = [{"role": "user", "content": "Hi"}]
    for tools, engine in [(None, "minijinja" if nullable else "jinja2"), ([{"name": "f"}], "minijinja")]:
        before = dict(fast.stats)
        (expected, got), _ = _pair(source, {"messages": messages, "tools": tools}, fast)
        assert got == expected, (tools, expected, got)
        if not isinstance(expected, tuple):
            assert fast.stats[engine] == before[engine] + 1, (tools, engine)


@pytest.mark.parametrize("path", [p for p in REAL if p.parent.name == "templates"], ids=lambda p: p.stem)
def test_corpus_conversations_render_as_jinja2(path, monkeypatch):
    """Every render ChatRenderer makes for the real-template corpus (tool calls, tools=, reasoning, content
    parts, null content, sentinel renders) is compared with jinja2: MiniJinja never differs."""
    from conversations_support import conversation_records

    import llmprep.render.engine as engine

    monkeypatch.setattr(engine, "CHECK_FIRST", 10**9)
    renderer = ChatRenderer(path.read_text(encoding="utf-8"), {"bos_token": "<s>", "eos_token": "</s>"},
                            ("</s>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>"))
    for record in conversation_records():
        try:
            renderer.layout(record["messages"], tools=record.get("tools"))
        except RecordError:
            pass
    assert renderer.engine.stats["mismatches"] == 0
    assert renderer.engine.stats["minijinja"] > 0 or renderer.engine.why_not is not None


def test_spot_check_mismatch_turns_the_engine_off():
    source = "{% for m in messages %}{{ m.content }}{% endfor %}"
    fast = for_source(source)
    fast.compiled = _compile("{% for m in messages %}[{{ m.content }}]{% endfor %}", TEMPLATE_GLOBALS)  # a bug
    messages = [{"role": "user", "content": "x"}]
    assert fast.render(messages=messages) == "x"  # the first renders are spot-checked: jinja2's text wins
    assert fast.engine == "jinja2" and fast.stats["mismatches"] == 1 and "spot check" in fast.why_not
    assert fast.render(messages=messages) == "x" and fast.stats == {"minijinja": 0, "jinja2": 2, "mismatches": 1}


def test_errors_and_fuel_end_in_jinja2s_outcome():
    """raise_exception, a MiniJinja-only error and running out of fuel: the row gets jinja2's result."""
    renderer = ChatRenderer(template_source("llama2"), {"bos_token": "<s>", "eos_token": "</s>"}, ("</s>",))
    with pytest.raises(RecordError, match="Conversation roles must alternate"):
        renderer.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(jinja2.UndefinedError):  # jinja2's own error, as without MiniJinja
        for_source("{{ missing.attr }}").render()
    hog = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}done"
    assert unsupported(hog, compile_template(hog).environment) is None  # loops are fine: fuel bounds them

    class Reference:  # jinja2 would run the 10^10 iterations (the sandbox's own limits are render/sandbox.py's)
        @staticmethod
        def render(**context):
            return "jinja2 decided"

    fast = FastTemplate(Reference(), _compile(hog, TEMPLATE_GLOBALS))
    fast.calls = 10**9 + 1
    assert fast.render(messages=[]) == "jinja2 decided" and fast.stats["jinja2"] == 1


def test_report_counts_rows_per_template_engine(tmp_path, english_chats):
    from llmprep.prepare import prepare

    data = write_jsonl(tmp_path / "c.jsonl", [{"messages": m} for m in english_chats[:30]])
    shout = tmp_path / "shout.jinja"
    shout.write_text("{% for m in messages %}{{ m.role|upper }}: {{ m.content }}<|im_end|>\n{% endfor %}")
    common = dict(progress=False, num_proc=1, cache=False)
    for template, rows, note in [("auto", ("minijinja_rows", "shape_rows"), "minijinja"),
                                 (str(shout), ("jinja2_rows",), "jinja2 (filter 'upper')")]:
        prepare([str(data)], out=tmp_path / "out", template=template, **common)
        engine = json.loads((tmp_path / "out" / "report.json").read_text())["engine"]
        assert sum(engine[k] for k in rows) == 30 and engine["minijinja_mismatches"] == engine["shape_mismatches"] == 0
        assert engine["template_engine"] == note
        # SmolLM2's ChatML prints a plain chat as fixed text around the contents (render/skeleton.py): after
        # the checked first chats of each role sequence, rows take their text from their shape, unrendered.
        # The shouting template is not provably so: every row is rendered.
        assert (engine["shape_rows"] > 0) == (template == "auto")


def test_fuel_grows_with_the_conversation():
    """Fuel is per render and proportional to the input: a 400-message conversation with 20 tools still
    renders by MiniJinja; a loop the input does not justify runs out and goes to jinja2."""
    messages = [{"role": r, "content": "word " * 20} for _ in range(200) for r in ("user", "assistant")]
    tools = TOOLS * 20
    fast = for_source((ASSETS / "engine" / "qwen3.jinja").read_text(encoding="utf-8"))
    fast.calls = 10**9 + 1
    fast.render(messages=messages, tools=tools, add_generation_prompt=True)
    assert fast.stats == {"minijinja": 1, "jinja2": 0, "mismatches": 0}
    spin = for_source("{% for m in messages %}{% for i in range(20000) %}{% endfor %}{% endfor %}ok")
    spin.calls = 10**9 + 1
    assert spin.render(messages=messages[:3]) == "ok" and spin.stats["jinja2"] == 1

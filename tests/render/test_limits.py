"""Hostile chat templates (render/sandbox.py, render/limits.py): each becomes a clean "template error"
naming the template and line — a reject of the conversation, or one config error when the template
can never render — within the time, size and memory limits; never a hang or a traceback."""

from __future__ import annotations

import json
import threading
import time

import pytest
from helpers import chat, write_jsonl

import llmprep.prepare as prep
from llmprep.errors import ConfigError, RecordError
from llmprep.render import ChatRenderer
from llmprep.render import limits as lim
from llmprep.render.limits import RenderLimits
from llmprep.render.sandbox import compile_template

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}")
FOREVER = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def render(source: str, *, timeout: float = 5.0, max_chars: int = lim.DEFAULT_MAX_RENDER_CHARS) -> str:
    renderer = ChatRenderer(source, {}, (), name="evil.jinja", limits=RenderLimits(timeout, max_chars))
    return renderer.render(chat("hi", "yo"))


@pytest.mark.parametrize("tag", ["{% include 'x.jinja' %}", "{% import 'm.jinja' as m %}",
                                 "{% from 'm.jinja' import f %}", "{% extends 'base.jinja' %}"])
def test_loading_other_templates_is_one_config_error(tag):
    source = CHATML + "\n\n" + tag
    with pytest.raises(ConfigError) as info:
        ChatRenderer(source, {}, (), name="evil.jinja")
    assert str(info.value).startswith("--template: evil.jinja, line 3: {% ")
    assert "is not allowed; chat templates must be self-contained" in str(info.value)


# fmt: off
FAILURES = [  # (template, what the reject says after "template error in evil.jinja, line N: ")
    ("ok\n{{ 1 / 0 }}", 2, "ZeroDivisionError: division by zero"),
    ("{% for i in range(10**9) %}{{ i }}{% endfor %}", 1, "argument 1,000,000,000 is over --max-render-chars"),
    ("{% for i in range(200000) %}{{ i }}{% endfor %}", 1, "OverflowError: Range too big"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(1) }}", 1, "RecursionError: maximum recursion depth"),
    ("{{ 9**999999999 }}", 1, "'**' would make an integer of more than 65,536 bits"),
    ("{{ 'x' * 10**10 }}", 1, "'*' would make 10,000,000,000 characters, over --max-render-chars"),
    ("{{ 10**10 * ['x'] }}", 1, "'*' would make 10,000,000,000 characters"),
    ("{{ 'x'|center(10**10) }}", 1, "center(): argument 10,000,000,000 is over --max-render-chars"),
    ("{{ 'x'.ljust(10**10) }}", 1, "ljust(): argument 10,000,000,000"),
    ("{{ '%0999999999d' % 1 }}", 1, "'%': format width 999,999,999 is over --max-render-chars"),
    ("{{ '{:>999999999}'.format(1) }}", 1, "str.format: format width 999,999,999"),
    ("{{ 'aa'|replace('a', 'a' * 40000000) }}", 1, "replace would make 80,000,000 characters"),
    ("{{ 1 + 'a' }}", 1, "TypeError: unsupported operand type(s) for +"),
    ("\n\n{{ foo.bar }}", 3, "'foo' is undefined"),
]
# fmt: on


@pytest.mark.parametrize("source,line,what", FAILURES)
def test_a_failing_template_is_a_reject_naming_template_and_line(source, line, what):
    started = time.monotonic()
    with pytest.raises(RecordError) as info:
        render(source)
    assert time.monotonic() - started < 5  # (a loaded CI machine: the point is "not forever")
    assert info.value.field == "messages"
    assert f"the chat template refused this conversation: template error in evil.jinja, line {line}: " \
           in str(info.value)
    assert what in str(info.value)


@pytest.mark.parametrize("grow", [
    "{% set ns.s = ns.s + ns.s %}",                      # '+' where the result is kept
    "{% set ns.s = ns.s ~ ns.s %}",                      # '~'
    "{% set ns.s = d(ns.s) %}",                          # a macro's output
    "{% set ns.s = [ns.s, ns.s]|join %}",                # an aggregating filter
    "{% set ns.s = ns.s|replace('a', 'aaaaaaaaaa') %}",  # replace
    "{% set ns.s = [ns.s, ns.s]|tojson %}",              # tojson
])
def test_doubling_loops_stop_at_max_render_chars(grow):
    source = ("{% macro d(s) %}{{ s }}{{ s }}{% endmacro %}{% set ns = namespace(s='ab') %}"
              "{% for i in range(60) %}" + grow + "{% endfor %}{{ ns.s|length }}")
    with pytest.raises(RecordError, match=r"would make [\d,]+ characters, over --max-render-chars 1,000,000"):
        render(source, max_chars=1_000_000)


def test_output_is_capped_while_it_streams():
    source = "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    with pytest.raises(RecordError, match="evil.jinja: the rendered conversation would make 1,000,0[0-9]{2} chara"):
        render(source, max_chars=1_000_000)
    assert render(CHATML, max_chars=200) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
    with pytest.raises(RecordError, match="over --max-render-chars 20"):
        render(CHATML, max_chars=20)


def test_endless_loops_stop_at_the_render_timeout():
    started = time.monotonic()
    with pytest.raises(RecordError, match=r"template error in evil.jinja, line 1: rendering took more than 0.3 s "
                                          r"\(--render-timeout\)"):
        render(FOREVER, timeout=0.3)
    assert time.monotonic() - started < 5
    assert render(CHATML, timeout=0.3).startswith("<|im_start|>user")  # the next rendering is unaffected


@pytest.mark.parametrize("source", [  # no timer outside the main thread: checked between chunks and at calls
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% set x = 'a'.upper() %}{% endfor %}{% endfor %}",
])
def test_the_time_limit_holds_in_other_threads_too(source):
    errors = []
    thread = threading.Thread(target=lambda: errors.append(pytest.raises(RecordError, render, source, timeout=0.3)))
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert "rendering took more than 0.3 s" in str(errors[0].value)


def test_memory_growth_within_the_time_limit_is_stopped(monkeypatch):
    monkeypatch.setattr(lim, "MIN_RENDER_MEMORY", 200 << 20)
    source = ("{% set ns = namespace(l=[]) %}{% set big = 'x' * 4000000 %}"
              "{% for i in range(100000) %}{% set ns.l = ns.l + [big ~ i] %}{% endfor %}")
    with pytest.raises(RecordError, match="rendering used more than 200 MiB of memory"):
        render(source, timeout=60, max_chars=8_000_000)


def test_deliberate_refusals_and_sandbox_errors_keep_their_message():
    with pytest.raises(RecordError) as info:
        render("{{ raise_exception('Conversation roles must alternate') }}")
    assert str(info.value).endswith("refused this conversation: Conversation roles must alternate")
    with pytest.raises(RecordError, match="template error in evil.jinja, line 1: .*unsafe"):
        render("{{ ''.__class__.__mro__ }}")


def test_limits_are_checked_as_options():
    assert RenderLimits(0, 10).check() == ["--render-timeout 0: expected a positive number of seconds"]
    assert RenderLimits(1.0, 0).check() == ["--max-render-chars 0: expected a positive integer"]
    with pytest.raises(ConfigError, match="--render-timeout -1"):
        prep.PrepareConfig(render_timeout=-1).check()


def test_plain_jinja_render_of_a_compiled_template_applies_the_default_limits():
    template = compile_template("{{ 9**999999999 }}")
    with pytest.raises(Exception, match=r"template error in the chat template, line 1: '\*\*' would make"):
        template.render()


def test_hostile_conversations_are_rejected_in_pool_workers(tmp_path, monkeypatch, smollm2):
    """The timer works in worker processes: one conversation hangs the template, the run goes on."""
    monkeypatch.setattr(prep, "SHARD_SIZE", 2)
    template = tmp_path / "evil.jinja"
    template.write_text("{% if messages[0]['content'] == 'hang' %}\n" + FOREVER + "{% endif %}" + CHATML)
    rows = [{"messages": chat(q, "fine")} for q in ("a", "b", "hang", "c", "d", "e")]
    data = write_jsonl(tmp_path / "c.jsonl", rows)
    started = time.monotonic()
    config = prep.PrepareConfig(tokenizer=smollm2, template=str(template), num_proc=2, cache=False, progress=False,
                                render_timeout=0.5)
    result = prep.run(config, [str(data)])
    assert time.monotonic() - started < 60
    assert result.report["records"] == {"read": 6, "kept": 5, "rejected": 1, "dropped": 0}
    (bad,) = result.rejected
    assert bad.line == 3 and bad.field == "messages"
    assert "template error in evil.jinja, line 2: rendering took more than 0.5 s (--render-timeout)" in bad.reason
    assert json.dumps(bad.to_json())  # serialisable for rejected.jsonl

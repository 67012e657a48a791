"""A faster chat-template engine: MiniJinja (Rust), used only where it renders exactly what the jinja2
sandbox renders. Faster per render; the jinja2 sandbox stays the reference and the fallback.

How a render is verified (the same policy as the fastokens encoder):

1. Static check, once per template (render/engine_check.py): the template may only use constructs whose
   MiniJinja behaviour was compared with jinja2's on adversarial values (tests/test_render_engine.py),
   used in ways that give the same result on missing or mixed-type values, and nothing that could make
   a value grow faster than linearly in the instructions run.
2. Probes, once per template: a few synthetic conversations rendered by both engines must agree.
3. Per-row guards: a row whose data holds null, a float, or (for templates that strip or split)
   U+001C..U+001F — the four characters Python counts as whitespace and Rust does not — goes to jinja2.
4. Spot checks: the first 32 renders, then every 256th, are also rendered by jinja2; any difference
   turns the engine off for the rest of the run (the row gets jinja2's text) and is counted.
5. Any MiniJinja error — its own, out of fuel, recursion limit, or an exception from a callback —
   sends the row to jinja2, whose text or error (the usual "template refused" reject) stands.

Safety: the context holds only JSON-like data, and MiniJinja calls Python methods on it only through
the listed (non-mutating) method names; `_` attributes are refused by MiniJinja itself. Fuel (MiniJinja's
instruction budget, proportional to the conversation) bounds a render's work; the growth rule keeps
values linear in the instructions run. A render out of fuel goes to jinja2, and so to the sandbox's
own limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import jinja2
from jinja2 import nodes

from llmprep.render.engine_check import STRIPPING, nullable_names, unsupported

# MiniJinja instructions a render may run: the real templates need ~100 per message (Qwen3.6 with 20
# tools: 21k for 200 messages), so 20x that; a render out of fuel goes to jinja2 (and its own limits).
FUEL_BASE, FUEL_PER_ITEM = 20_000, 2_000
CHECK_FIRST, CHECK_EVERY = 32, 256
NAME = "chat_template"
_GENERATION = re.compile(r"\{%(-|\+)?\s*(end)?generation\s*(-|\+)?%\}")
_GUARD = re.compile("[\x1c-\x1f]")


@dataclass
class FastTemplate:
    """A template rendered by MiniJinja, with jinja2 as reference and fallback; `.render(**context)` as
    jinja2's. Without a MiniJinja template (`why_not` says why), every render is jinja2's.

    `stats`: renders served by each engine, and spot-check mismatches.
    """

    reference: jinja2.Template
    compiled: Any = None  # a minijinja.Environment holding the template
    strips: bool = False  # the template strips or splits on whitespace: guard U+001C..U+001F
    why_not: str | None = None
    nullable: frozenset = frozenset()  # top-level names a render may pass as None (engine_check.nullable_names)
    calls: int = 0
    stats: dict = field(default_factory=lambda: {"minijinja": 0, "jinja2": 0, "mismatches": 0})

    @property
    def engine(self) -> str:
        return "minijinja" if self.compiled is not None else "jinja2"

    def render(self, **context) -> str:
        if self.compiled is None or not _safe_data(context, self.strips, self.nullable):
            return self._reference(context)
        self.calls += 1
        self.compiled.fuel = FUEL_BASE + FUEL_PER_ITEM * sum(len(v) for v in context.values() if type(v) is list)
        try:
            text = self.compiled.render_template(NAME, **context)
        except Exception:  # MiniJinja's error, fuel, recursion, a callback's exception: jinja2 decides
            return self._reference(context)
        if self.calls <= CHECK_FIRST or self.calls % CHECK_EVERY == 0:
            try:
                expected = self.reference.render(**context)
            except Exception:  # jinja2 refuses what MiniJinja rendered: jinja2's error stands
                self._mismatch()
                raise
            if expected != text:
                self._mismatch()
                self.stats["jinja2"] += 1
                return expected
        self.stats["minijinja"] += 1
        return text

    def _reference(self, context: dict) -> str:
        self.stats["jinja2"] += 1
        return self.reference.render(**context)

    def _mismatch(self) -> None:
        """Off for the rest of the run: one difference means this template's constructs were misjudged."""
        self.compiled = None
        self.why_not = "a spot check differed from jinja2"
        self.stats["mismatches"] += 1


def _safe_data(context: dict, strips: bool, nullable: frozenset = frozenset()) -> bool:
    """No null (but top-level `nullable` names, e.g. tools=None where the template only tests it), no float
    (Rust prints some differently), and — for templates that strip — none of the four characters Python
    calls whitespace and Rust does not. Example: {"content": "Hi"} -> True; {"tools": None}, nullable
    {"tools"} -> True

    Runs on every render: the messages list of string-valued dicts is checked without recursion."""
    for key, value in context.items():
        kind = type(value)
        if value is None and key in nullable:
            continue
        if kind is str:
            if strips and _GUARD.search(value):
                return False
        elif kind is list:
            for item in value:
                if type(item) is dict:
                    for x in item.values():
                        if type(x) is str:
                            if strips and _GUARD.search(x):
                                return False
                        elif not _safe_value(x, strips):
                            return False
                elif not _safe_value(item, strips):
                    return False
        elif not _safe_value(value, strips):
            return False
    return True


def _safe_value(value: Any, strips: bool) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is str:
            if strips and _GUARD.search(v):
                return False
        elif kind is dict:
            stack.extend(v.values())
        elif kind is list or kind is tuple:
            stack.extend(v)
        elif kind is not bool and kind is not int:
            return False  # None, float, or anything that is not JSON-like data
    return True


def for_source(source: str, name: str | None = None, limits=None) -> FastTemplate:
    """The template as ChatRenderer renders it: MiniJinja where verified, else jinja2 (with the reason).
    `name` and `limits` (RenderLimits: --render-timeout, --max-render-chars) are the jinja2 reference's.

    Example: for_source(chatml).engine -> "minijinja"; a template using |upper -> "jinja2", why_not "filter 'upper'"
    """
    from llmprep.render.limits import DEFAULT_LIMITS
    from llmprep.render.sandbox import TEMPLATE_GLOBALS, compile_template

    reference = compile_template(source, name, limits or DEFAULT_LIMITS)
    why = unsupported(source, reference.environment)
    compiled = _compile(source, TEMPLATE_GLOBALS) if why is None else None
    if why is None and compiled is None:
        why = "minijinja is not installed or does not compile it"
    tree = reference.environment.parse(source)
    strips = any(f.name in STRIPPING for f in tree.find_all(nodes.Filter)) or any(
        isinstance(c.node, nodes.Getattr) and c.node.attr in STRIPPING for c in tree.find_all(nodes.Call))
    fast = FastTemplate(reference, compiled, strips, why, nullable_names(tree))
    if compiled is not None and not _probes_agree(fast):
        fast.compiled, fast.why_not = None, "the probe conversations render differently"
    return fast


def describe_engine(source: str) -> str:
    """For the report. Example: -> "minijinja", or "jinja2 (filter 'upper')" with the reason."""
    fast = for_source(source)
    return fast.engine if fast.why_not is None else f"jinja2 ({fast.why_not})"


def _compile(source: str, globals_: dict[str, Callable]):
    """A MiniJinja environment holding the template, with jinja2's (llmprep's sandbox) filters, tests
    and globals where MiniJinja's own differ; None if MiniJinja is missing or rejects the source."""
    try:
        import minijinja
    except ImportError:
        return None
    env = minijinja.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, fuel=FUEL_BASE,
                                undefined_behavior="lenient", auto_escape_callback=lambda name: False)
    try:
        env.add_template(NAME, _GENERATION.sub(_generation_as_if, source))
    except minijinja.TemplateError:
        return None
    env.add_filter("tojson", _none_refused(globals_["tojson"], deep=True))
    env.add_test("sequence", _none_refused(_jinja2_test("sequence")))
    env.add_test("iterable", _none_refused(_jinja2_test("iterable")))
    for name in ("raise_exception", "strftime_now"):
        env.add_global(name, globals_[name])
    return env


def _generation_as_if(match: re.Match) -> str:
    """{% generation %} only renders its body: the same as {% if true %} (same whitespace control)."""
    left, end, right = match.group(1) or "", match.group(2), match.group(3) or ""
    return "{%" + left + (" endif " if end else " if true ") + right + "%}"


def _jinja2_test(name: str) -> Callable[[Any], bool]:
    return jinja2.Environment().tests[name]


def _none_refused(fn: Callable, deep: bool = False) -> Callable:
    """MiniJinja passes both null and undefined to Python as None, which jinja2 treats differently
    (tojson: "null" or an error): refuse it — anywhere inside the value when `deep` — so that row is
    rendered by jinja2. (The data guard keeps null out of the input, so a None here is rare.)"""
    def call(value, *args, **kwargs):
        if value is None or (deep and not _safe_value(value, False)):
            raise ValueError("null or undefined: rendered by jinja2")
        return fn(value, *args, **kwargs)
    return call


PROBE_CHATS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " 2+2? "},
     {"role": "assistant", "content": "4\n"}, {"role": "user", "content": "ok"},
     {"role": "assistant", "content": "Yes."}],
    [{"role": "user", "content": "<think>a</think>\n\nq"},
     {"role": "assistant", "content": "<think>\nr\n</think>\n\nx"}],
]


def _probes_agree(fast: FastTemplate) -> bool:
    """Both engines on a few conversations, with and without a generation prompt; errors must match too."""
    for chat in PROBE_CHATS:
        for prompt in (False, True):
            context = {"messages": chat, "add_generation_prompt": prompt, "bos_token": "<s>", "eos_token": "</s>",
                       **{k: None for k in fast.nullable}}
            try:
                expected = fast.reference.render(**context)
            except Exception:  # noqa: BLE001 - any jinja2 failure; MiniJinja must not succeed instead
                expected = None
            try:
                got = fast.compiled.render_template(NAME, **context)
            except Exception:
                got = None
            if got is not None and got != expected:
                return False
    return True

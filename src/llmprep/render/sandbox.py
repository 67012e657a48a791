"""The sandbox chat templates render in: jinja2's ImmutableSandboxedEnvironment with the globals
transformers gives templates (raise_exception, namespace, strftime_now, tojson, {% generation %}),
and limits on what one rendering may cost (render/limits.py).

Templates are untrusted code (they come from model repos): nothing here may reach Python internals,
and no template may hang or exhaust the machine. Per rendering: --render-timeout seconds (default
10), --max-render-chars characters of output and of any string built on the way (default 64 Mi),
integers under 65,536 bits, and at most max(1 GiB, 8 x max-render-chars) of memory growth.

`{% include %}`, `{% import %}` and `{% extends %}` are refused when the template is compiled (a chat
template must be self-contained: there is nothing to load). Whatever a template raises at render
time becomes a TemplateError naming the template and line, which the renderer turns into a reject of
that conversation: never a traceback.
"""

from __future__ import annotations

import functools
import json
import types
from datetime import datetime
from itertools import islice
from typing import Any, Iterable

import jinja2
import jinja2.compiler
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmprep.errors import ConfigError
from llmprep.render import limits as lim
from llmprep.render.limits import DEFAULT_LIMITS, RenderLimitError, RenderLimits


class TemplateRefusal(jinja2.exceptions.TemplateError):
    """raise_exception('...') in a template: the template's own verdict on a conversation."""


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (transformers' assistant-mask tag): renders its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise TemplateRefusal(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None,
            sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters; chat templates expect plain JSON (as transformers does).
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


# The callables templates get on top of jinja2's builtins; render/engine.py gives MiniJinja the same ones.
TEMPLATE_GLOBALS = {"raise_exception": _raise_exception, "strftime_now": _strftime_now, "tojson": _tojson}


class _Namespace(jinja2.utils.Namespace):
    """namespace() that refuses dunder/underscore attributes (no reaching CPython internals)."""

    def __init__(*args, **kwargs):
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"templates cannot set underscore attributes ({name!r})")


class _CodeGenerator(jinja2.compiler.CodeGenerator):
    """Jinja's code generator, with `+` and `~` size-checked wherever their result can be kept.

    A `+` or `~` whose result goes straight to the output (`{{ '<|im_start|>' + m.role + '\\n' }}`,
    most of what chat templates do) runs as plain Python: the output is capped anyway. Anywhere else
    (`{% set %}`, a macro argument, a filter's input) its result could grow by doubling, so it goes
    through the sandbox's checks: once per chain (`a + b + c` is checked as a whole, which bounds its
    parts to a few times the limit).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._direct: set[int] = set()  # ids of Add/Concat nodes whose result is output at once

    def visit_Output(self, node: jinja2.nodes.Output, frame) -> None:
        for child in node.nodes:
            self._mark_direct(child)
        super().visit_Output(node, frame)

    def _mark_direct(self, node: jinja2.nodes.Node) -> None:
        if isinstance(node, jinja2.nodes.Add):
            self._direct.add(id(node))
            self._mark_direct(node.left)
            self._mark_direct(node.right)
        elif isinstance(node, jinja2.nodes.Concat):
            self._direct.add(id(node))
            for child in node.nodes:
                self._mark_direct(child)

    @jinja2.compiler.optimizeconst
    def visit_Add(self, node: jinja2.nodes.Add, frame) -> None:
        checked = id(node) not in self._direct
        if checked:  # in `a + b + c`, checking the whole bounds the parts: one check per chain
            self._mark_direct(node.left)
            self._mark_direct(node.right)
        self.write("environment.call_binop(context, '+', " if checked else "(")
        self.visit(node.left, frame)
        self.write(", " if checked else " + ")
        self.visit(node.right, frame)
        self.write(")")

    @jinja2.compiler.optimizeconst
    def visit_Concat(self, node: jinja2.nodes.Concat, frame) -> None:
        checked = id(node) not in self._direct
        if checked:
            for child in node.nodes:
                self._mark_direct(child)
        self.write("environment.str_join((" if checked else "str_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


_METHODS = (types.MethodType, types.BuiltinMethodType)
_FIRST = 1024  # output chunks gathered at once (a conversation renders to ~10-100)


class _Sandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with size-checked operators, calls and filters, and its attribute
    verdicts memoised.

    Every `loop.first` or `message.content` in a template asks the sandbox whether that attribute is
    safe; the answer depends only on the object's type and the attribute name (jinja2's checks are
    `isinstance` tests and name tests), so it is computed once per (type, name). Same verdicts,
    about a third less rendering time.
    """

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset(["+", "*", "**", "%"])

    def __init__(self, *args, max_chars: int = lim.DEFAULT_MAX_RENDER_CHARS, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_chars = max_chars
        self._verdicts: dict[tuple[type, str], bool] = {}
        self.concat = self._concat  # macro, {% set %} block and {% filter %} output goes through here
        self.filters = {name: lim.bounded_filter(f, name, lambda: self.max_chars) if name in lim.CHECKED_FILTERS else f
                        for name, f in self.filters.items()}

    def is_safe_attribute(self, obj, attr: str, value) -> bool:
        key = (type(obj), attr)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = super().is_safe_attribute(obj, attr, value)
        return verdict

    def wrap_str_format(self, value: Any):
        """`'{:>999999999}'.format(1)`: the format string is checked when `.format` is looked up."""
        if type(value) not in _METHODS:
            return None  # what jinja's own returns for anything but a method (one frame less per attribute)
        if value.__name__ in ("format", "format_map") and isinstance(value.__self__, str):
            lim.check_format(self.max_chars, f"str.{value.__name__}", value.__self__)
        return super().wrap_str_format(value)

    def call_binop(self, context, op: str, left: Any, right: Any) -> Any:
        limit = self.max_chars
        if op == "+":  # the common one (ChatML: 5 per message): checked after, it at most doubles a size
            result = left + right
            kind = type(result)
            if (kind is str or kind is list) and len(result) > limit:
                raise lim.too_big("'+'", len(result), limit)
            if kind is int and result.bit_length() > lim.INT_BITS:
                raise RenderLimitError(f"'+' would make an integer of more than {lim.INT_BITS:,} bits")
            return result
        if op == "*":
            lim.check_mul(left, right, limit)
            return left * right
        if op == "**":
            lim.check_pow(left, right)
            return left ** right
        if isinstance(left, str):  # '%' formatting
            lim.check_format(limit, "'%'", left)
            lim.check_args(limit, "'%'", (left, *(right if isinstance(right, tuple) else (right,))), {}, skip=1)
            result = left % right
            if len(result) > limit:
                raise lim.too_big("'%'", len(result), limit)
            return result
        return left % right

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's own signature)
        lim.check_deadline()
        limit = __self.max_chars
        name = getattr(__obj, "__name__", type(__obj).__name__)
        lim.check_args(limit, name, args, kwargs)
        owner = getattr(__obj, "__self__", None)
        if name == "replace" and isinstance(owner, str):
            lim.check_replace(limit, owner, *args[:3])
        elif name in ("format", "format_map") and isinstance(owner, str):
            lim.check_format(limit, f"str.{name}", owner)
        elif name == "join" and isinstance(owner, str) and args:
            size = lim.deep_size(args[0], limit) + len(owner) * (len(args[0]) if isinstance(args[0], lim.SIZED) else 0)
            if size > limit:
                raise lim.too_big("join", size, limit)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, lim.SIZED) and len(result) > limit:
            raise lim.too_big(name, len(result), limit)
        return result

    def _concat(self, parts: Iterable[str]) -> str:
        if isinstance(parts, list):
            size = sum(map(len, parts))
            if size > self.max_chars:
                raise lim.too_big("this output", size, self.max_chars)
            return "".join(parts)
        result = "".join(parts)
        if len(result) > self.max_chars:
            raise lim.too_big("this output", len(result), self.max_chars)
        return result

    def str_join(self, parts: tuple) -> str:
        """`a ~ b`: jinja's str_join, size-checked."""
        strings = [p if type(p) is str else str(p) for p in parts]
        size = sum(map(len, strings))
        if size > self.max_chars:
            raise lim.too_big("'~'", size, self.max_chars)
        return "".join(strings)


class LimitedTemplate(jinja2.Template):
    """A compiled chat template whose render() applies its RenderLimits and names the template and line
    in every error."""

    limits: RenderLimits = DEFAULT_LIMITS
    label: str = "the chat template"

    def render(self, *args: Any, **kwargs: Any) -> str:
        """Like jinja2's render, within self.limits. Example: t.render(messages=[...]) -> "<|im_start|>..." """
        limits = self.limits
        budget, timed = lim.start(limits)
        max_chars, size, parts = limits.max_chars, 0, []
        try:
            try:
                chunks = self.root_render_func(self.new_context(dict(*args, **kwargs)))
                try:  # what generate() does, one generator less, with the output counted as it streams
                    if timed:  # the first chunks (all of a usual conversation) at once, in C: the timer bounds them
                        parts = list(islice(chunks, _FIRST))
                        size = sum(map(len, parts))
                    for chunk in chunks:  # a long output: counted chunk by chunk
                        if size > max_chars:
                            break
                        size += len(chunk)
                        parts.append(chunk)
                        if not timed:  # no timer in this thread: check the clock here
                            lim.check_deadline()
                    if size > max_chars:
                        raise lim.too_big("the rendered conversation", size, max_chars)
                except Exception:
                    self.environment.handle_exception()  # re-raises with the template's lines in the traceback
            finally:
                lim.stop(timed)
        except lim.Interrupt as exc:  # from the timer (or a deadline check), possibly inside the finally
            lim.stop(timed)
            what = (f"rendering took more than {limits.timeout:g} s (--render-timeout)" if budget.reason == "time"
                    else f"rendering used more than {limits.memory >> 20:,} MiB of memory")
            raise self._failure(what, exc) from None
        except TemplateRefusal:
            raise
        except jinja2.exceptions.TemplateError as exc:
            exc.args = (f"{self._where(exc)}: {exc.message or type(exc).__name__}",) + exc.args[1:]
            raise
        except Exception as exc:  # ZeroDivisionError, RecursionError, OverflowError (range), TypeError...
            raise self._failure(f"{type(exc).__name__}: {exc}", exc) from exc
        return "".join(parts)

    def _where(self, exc: BaseException) -> str:
        line = _template_line(exc)
        return f"template error in {self.label}" + (f", line {line}" if line else "")

    def _failure(self, what: str, exc: BaseException) -> jinja2.exceptions.TemplateRuntimeError:
        return jinja2.exceptions.TemplateRuntimeError(f"{self._where(exc)}: {what}")


def _template_line(exc: BaseException) -> int | None:
    """The template line an exception was raised at (innermost template frame of its traceback)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        elif frame.f_code.co_filename == "<template>" or frame.f_globals.get("__file__") == "<template>":
            line = tb.tb_lineno  # a frame jinja rewrote to point at the template itself
        tb = tb.tb_next
    return line


_FORBIDDEN = {jinja2.nodes.Include: "include", jinja2.nodes.Import: "import",
              jinja2.nodes.FromImport: "from ... import", jinja2.nodes.Extends: "extends"}


def _refuse_loading(env: jinja2.Environment, source: str, label: str) -> None:
    """A chat template must be self-contained: {% include/import/extends %} can only fail (there is
    nothing to load), so they are one config error up front, not a reject per conversation."""
    tree = env.parse(source)
    for kind, tag in _FORBIDDEN.items():
        for node in tree.find_all(kind):
            raise ConfigError(f"--template: {label}, line {node.lineno}: {{% {tag} %}} is not allowed; chat "
                              "templates must be self-contained (there are no other templates to load)")


@functools.lru_cache(maxsize=64)
def compile_template(source: str, name: str | None = None, limits: RenderLimits = DEFAULT_LIMITS) -> LimitedTemplate:
    """Compile a chat template in the sandbox; `name` is how errors call it. Cached: compiling costs
    ~1 ms, rendering ~40 µs.

    Example: compile_template("{{ 1/0 }}", "evil.jinja").render()
    -> TemplateRuntimeError("template error in evil.jinja, line 1: ZeroDivisionError: division by zero")
    """
    label = {None: "the chat template", "auto": "the tokenizer's chat template"}.get(name, name)
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols],
                   max_chars=limits.max_chars)
    env.template_class = LimitedTemplate
    env.filters["tojson"] = lim.bounded_filter(_tojson, "tojson", lambda: env.max_chars)
    env.globals.update(raise_exception=_raise_exception, namespace=_Namespace, strftime_now=_strftime_now)
    try:
        _refuse_loading(env, source, label)
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"--template: {label} does not compile: {exc} (line {exc.lineno})") from exc
    except RecursionError as exc:  # a template nested thousands of blocks deep
        raise ConfigError(f"--template: {label} does not compile: nested too deeply") from exc
    template.limits, template.label = limits, label
    return template


__all__ = ["DEFAULT_LIMITS", "LimitedTemplate", "RenderLimitError", "RenderLimits", "TemplateRefusal",
           "compile_template"]

"""A faster chat-template engine: MiniJinja (Rust), used only where it renders exactly what the jinja2
sandbox renders. About 2x faster per render; the jinja2 sandbox stays the reference and the fallback.

How a render is verified (the same policy as the fastokens encoder):

1. Static check, once per template (`unsupported`): parsed by jinja2, the template may only use
   constructs whose MiniJinja behaviour was compared with jinja2's on adversarial values
   (tests/test_render_engine.py): the filters, tests, methods and functions listed below, the `loop`
   attributes, {% generation %}. No `_` attributes, no method objects used as values, no string
   formatting or multiplication, no macro recursion or `caller`, no empty/computed `split` separator.
   And nothing that could grow a value faster than linearly: an assignment inside a cycle of
   assignments (`set ns.x = ns.x + ...`) may reference the cycle's values once, and not through an
   expanding filter (tojson, join, string, ...) or a macro. (Rust's `trim`/`split()` whitespace and
   Unicode case tables differ from Python's, so upper/lower/title/capitalize are not allowed.)
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

# --- what a template may use (each compared with jinja2 in tests/test_render_engine.py) -------------
FILTERS = frozenset({"tojson", "trim", "length", "count", "string", "items", "safe", "default", "d", "join",
                     "first", "last", "list", "dictsort", "selectattr", "rejectattr", "select", "reject", "map"})
TESTS = frozenset({"defined", "undefined", "none", "string", "mapping", "iterable", "sequence", "number",
                   "integer", "boolean", "true", "false", "equalto", "eq", "ne"})
METHODS = frozenset({"split", "strip", "lstrip", "rstrip", "startswith", "endswith", "items", "keys", "values",
                     "get"})
FUNCTIONS = frozenset({"namespace", "raise_exception", "strftime_now", "range"})
LOOP_ATTRS = frozenset({"index", "index0", "revindex", "revindex0", "first", "last", "length", "previtem",
                        "nextitem"})
# A dict's own methods: `d.items` (not called) is the method in jinja2 but the key "items" in MiniJinja.
DICT_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))
# Filters that may make their output larger than their input: never on values of an assignment cycle.
EXPANDING = frozenset({"tojson", "join", "string", "list", "items", "dictsort", "map", "select", "reject",
                       "selectattr", "rejectattr"})
STRIPPING = frozenset({"trim", "strip", "lstrip", "rstrip", "split"})
# Expressions that make MiniJinja's own lists/tuples/maps, which it prints unlike Python's repr (strings
# holding non-printable characters, Undefined items): never printed or joined with `~`.
CONTAINER_FILTERS = frozenset({"list", "items", "dictsort", "map", "select", "reject", "selectattr", "rejectattr"})
CONTAINER_METHODS = frozenset({"split", "items", "keys", "values"})
NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name, nodes.Getattr, nodes.Getitem,
         nodes.Slice, nodes.Call, nodes.Filter, nodes.Test, nodes.If, nodes.For, nodes.Assign, nodes.AssignBlock,
         nodes.Macro, nodes.Keyword, nodes.Pair, nodes.Dict, nodes.List, nodes.Tuple, nodes.CondExpr, nodes.And,
         nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Add, nodes.Sub, nodes.Div, nodes.FloorDiv, nodes.Mod,
         nodes.Concat, nodes.Compare, nodes.Operand, nodes.NSRef, nodes.Continue, nodes.Break, nodes.CallBlock,
         nodes.ExtensionAttribute)
# MiniJinja instructions a render may run: the real templates need ~100 per message (Qwen3.6 with 20
# tools: 21k for 200 messages), so 20x that; a render out of fuel goes to jinja2 (and its own limits).
FUEL_BASE, FUEL_PER_ITEM = 20_000, 2_000
CHECK_FIRST, CHECK_EVERY = 32, 256
NAME = "chat_template"
_GENERATION = re.compile(r"\{%(-|\+)?\s*(end)?generation\s*(-|\+)?%\}")
_GUARD = re.compile("[\x1c-\x1f]")


def unsupported(source: str, env: jinja2.Environment) -> str | None:
    """Why MiniJinja may not render this template (the first construct it can't vouch for), or None.

    Example: "{{ messages[0]['content'] }}" -> None; "{{ messages[0].content|upper }}" -> "filter 'upper'"
    """
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"syntax: {exc}"
    macros = {m.name for m in tree.find_all(nodes.Macro)}
    try:
        _check(tree, macros)
        _check_growth(tree, macros)
    except _Refused as why:
        return str(why)
    return None


class _Refused(Exception):
    pass


def _check(tree: nodes.Template, macros: set[str]) -> None:
    """Every node is a construct of the lists above, used the way they were compared with jinja2."""
    callees = {id(n.node) for n in tree.find_all(nodes.Call)}
    loop_refs = {id(g.node) for g in tree.find_all(nodes.Getattr)
                 if isinstance(g.node, nodes.Name) and g.node.name == "loop"}
    for node in tree.find_all(nodes.Node):
        kind = type(node).__name__
        if not isinstance(node, NODES):
            raise _Refused(f"{kind} nodes")
        if isinstance(node, nodes.Const) and not _plain_const(node.value):
            raise _Refused(f"constant {node.value!r}")
        if isinstance(node, nodes.Name) and node.name in ("caller", "varargs", "kwargs", "self", "super"):
            raise _Refused(f"name {node.name!r}")
        if isinstance(node, nodes.Name) and node.name == "loop" and id(node) not in loop_refs:
            raise _Refused("'loop' used other than for its attributes")
        if isinstance(node, nodes.NSRef) and node.attr.startswith("_"):
            raise _Refused(f"namespace attribute {node.attr!r}")
        if isinstance(node, nodes.Keyword) and node.key.startswith("_"):
            raise _Refused(f"keyword {node.key!r}")
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            _check_access(node, callees)
        if isinstance(node, nodes.Filter):
            _check_filter(node)
        if isinstance(node, nodes.Test) and node.name not in TESTS:
            raise _Refused(f"test {node.name!r}")
        if isinstance(node, nodes.Call):
            _check_call(node, macros)
        if isinstance(node, nodes.For) and node.recursive:
            raise _Refused("recursive loops")
        if isinstance(node, nodes.CallBlock) and not _is_generation(node):
            raise _Refused("{% call %} blocks")
        if isinstance(node, nodes.Mod) and isinstance(node.left, nodes.Const) and isinstance(node.left.value, str):
            raise _Refused("'%' string formatting")
    _check_printing(tree)
    _check_slices(tree)
    _check_comparisons(tree)


def _check_printing(tree: nodes.Template) -> None:
    """No list, tuple or map made by the template is printed (MiniJinja's repr is not Python's)."""
    containers = _container_names(tree)
    printed = [n for out in tree.find_all(nodes.Output) for n in out.nodes if not isinstance(n, nodes.TemplateData)]
    printed += [side for c in tree.find_all(nodes.Concat) for side in c.nodes]
    printed += [f.node for f in tree.find_all(nodes.Filter) if f.name == "string"]
    # join prints each item: pairs from items/dictsort would be printed as tuples
    printed += [f.node for f in tree.find_all(nodes.Filter) if f.name == "join" and _pairs(f.node)]
    for expr in printed:
        if _makes_container(expr, containers):
            raise _Refused("printing a list/map the template made (MiniJinja's repr differs from Python's)")


def _makes_container(node, containers: set[str]) -> bool:
    if isinstance(node, (nodes.List, nodes.Tuple, nodes.Dict)):
        return True
    if isinstance(node, nodes.Name):
        return node.name in containers
    if isinstance(node, nodes.Filter):
        return node.name in CONTAINER_FILTERS or (node.name in ("default", "d", "first", "last")
                                                  and _makes_container(node.node, containers))
    if isinstance(node, nodes.Call):
        callee = node.node
        return (isinstance(callee, nodes.Getattr) and callee.attr in CONTAINER_METHODS) or (
            isinstance(callee, nodes.Name) and callee.name == "range")
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice):
        return True
    if isinstance(node, nodes.CondExpr):
        return _makes_container(node.expr1, containers) or _makes_container(node.expr2, containers)
    return isinstance(node, (nodes.And, nodes.Or)) and (
        _makes_container(node.left, containers) or _makes_container(node.right, containers))


def _pairs(node) -> bool:
    return (isinstance(node, nodes.Filter) and node.name in ("items", "dictsort")) or (
        isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and node.node.attr == "items")


def _container_names(tree) -> set[str]:
    """Names that may hold a list/tuple/map the template made: assigned one, or looping over pairs."""
    names: set[str] = set()
    while True:
        found = {name for node in tree.find_all((nodes.Assign, nodes.For))
                 for name in _targets(node.target)
                 if (isinstance(node, nodes.Assign) and _makes_container(node.node, names))
                 or (isinstance(node, nodes.For) and not isinstance(node.target, nodes.Tuple)
                     and _makes_container(node.iter, names))} - names
        if not found:
            return names
        names |= found


def _check_comparisons(tree: nodes.Template) -> None:
    """Ordering (< > <= >=) only between integers the template knows are integers, and `in` only with a
    literal on one side: jinja2 raises for undefined or mixed-type operands, MiniJinja answers."""
    ints = _int_names(tree)
    for node in tree.find_all(nodes.Compare):
        left = node.expr
        for op in node.ops:
            if op.op in ("lt", "gt", "lteq", "gteq") and not (_is_int(left, ints) and _is_int(op.expr, ints)):
                raise _Refused("an ordering comparison of values not known to be integers")
            if op.op in ("in", "notin") and not (isinstance(left, nodes.Const)
                                                 or isinstance(op.expr, (nodes.List, nodes.Tuple))):
                raise _Refused("'in' between two computed values")
            left = op.expr


def _is_int(node, ints: set[str]) -> bool:
    """Certainly an integer: an int literal, a loop counter, a length, arithmetic of those, or a name
    (or namespace attribute) only ever assigned such values."""
    if isinstance(node, nodes.Const):
        return type(node.value) is int
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        if node.node.name == "loop":
            return node.attr in ("index", "index0", "revindex", "revindex0", "length")
        return f"{node.node.name}.{node.attr}" in ints
    if isinstance(node, nodes.Name):
        return node.name in ints
    if isinstance(node, nodes.Filter):
        return node.name in ("length", "count")
    if isinstance(node, (nodes.Add, nodes.Sub, nodes.FloorDiv, nodes.Mod)):
        return _is_int(node.left, ints) and _is_int(node.right, ints)
    return isinstance(node, nodes.Neg) and _is_int(node.node, ints)


def _int_names(tree) -> set[str]:
    """Names and namespace attributes ("ns.i") every assignment of which is an integer (fixpoint)."""
    values: dict[str, list] = {}
    for node in tree.find_all(nodes.Assign):
        target = node.target
        if isinstance(target, nodes.Name):
            values.setdefault(target.name, []).append(node.node)
        elif isinstance(target, nodes.NSRef):
            values.setdefault(f"{target.name}.{target.attr}", []).append(node.node)
        if isinstance(node.node, nodes.Call) and isinstance(node.node.node, nodes.Name) and \
                node.node.node.name == "namespace" and isinstance(target, nodes.Name):
            for kw in node.node.kwargs:
                values.setdefault(f"{target.name}.{kw.key}", []).append(kw.value)
    for loop in tree.find_all(nodes.For):  # a loop variable is whatever it iterates: not known
        for name in _targets(loop.target):
            values.setdefault(name, []).append(None)
    ints = set(values)
    while True:
        wrong = {name for name in ints if not all(v is not None and _is_int(v, ints) for v in values[name])}
        if not wrong:
            return ints
        ints -= wrong


def _check_slices(tree: nodes.Template) -> None:
    """Slices only of `messages` (or names assigned slices of it): slicing an undefined value is an
    error in jinja2 and an empty list in MiniJinja."""
    sliced = {"messages"}
    assigns = [a for a in tree.find_all(nodes.Assign) if isinstance(a.target, nodes.Name)]
    for node in assigns:  # loop_messages = messages[1:], or = messages
        if _slice_of(node.node, sliced):
            sliced.add(node.target.name)
    for node in tree.find_all(nodes.Getitem):
        if isinstance(node.arg, nodes.Slice) and not (isinstance(node.node, nodes.Name) and node.node.name in sliced):
            raise _Refused("a slice of something other than messages")
    if any(a.target.name in sliced and not _slice_of(a.node, sliced) for a in assigns):
        raise _Refused("a sliced name is also assigned something else")


def _slice_of(value, names: set[str]) -> bool:
    inner = value.node if isinstance(value, nodes.Getitem) else value
    return isinstance(inner, nodes.Name) and inner.name in names


def _plain_const(value: Any) -> bool:
    """Literals both engines print alike: no floats in exponent notation (Rust writes 1e20 in full)."""
    if isinstance(value, float):
        return value == 0 or 1e-4 <= abs(value) < 1e16
    return value is None or isinstance(value, (str, int, bool))


def _check_access(node, callees: set[int]) -> None:
    key = node.attr if isinstance(node, nodes.Getattr) else (
        node.arg.value if isinstance(node.arg, nodes.Const) else None)
    if isinstance(key, str) and key.startswith("_"):
        raise _Refused(f"attribute {key!r}")
    if isinstance(node, nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "loop":
            if node.attr not in LOOP_ATTRS:
                raise _Refused(f"loop.{node.attr}")
        elif id(node) not in callees and node.attr in DICT_METHODS:
            raise _Refused(f"'.{node.attr}' not called (a method in jinja2, a key in MiniJinja)")


def _check_filter(node: nodes.Filter) -> None:
    if node.name not in FILTERS:
        raise _Refused(f"filter {node.name!r}")
    if node.dyn_args or node.dyn_kwargs:
        raise _Refused(f"*args/**kwargs in filter {node.name!r}")
    # Filters that take another filter's or a test's name: that one must be allowed too.
    position = {"map": 0, "select": 0, "reject": 0, "selectattr": 1, "rejectattr": 1}.get(node.name)
    if position is None or len(node.args) <= position:
        return
    named = node.args[position]
    allowed = FILTERS if node.name == "map" else TESTS
    if not (isinstance(named, nodes.Const) and named.value in allowed):
        raise _Refused(f"{node.name} with {getattr(named, 'value', 'a computed name')!r}")


def _check_call(node: nodes.Call, macros: set[str]) -> None:
    if node.dyn_args or node.dyn_kwargs:
        raise _Refused("*args/**kwargs calls")
    callee = node.node
    if isinstance(callee, nodes.Getattr):
        if isinstance(callee.node, nodes.Name) and callee.node.name == "loop":
            raise _Refused(f"loop.{callee.attr}()")
        if callee.attr not in METHODS:
            raise _Refused(f"method .{callee.attr}()")
        if callee.attr == "split" and node.args and not (
                isinstance(node.args[0], nodes.Const) and isinstance(node.args[0].value, str) and node.args[0].value):
            raise _Refused("split() with an empty or computed separator")  # Python raises, MiniJinja splits
    elif isinstance(callee, nodes.Name):
        if callee.name not in FUNCTIONS and callee.name not in macros:
            raise _Refused(f"call of {callee.name!r}")
    elif not isinstance(callee, nodes.ExtensionAttribute):
        raise _Refused(f"call of a {type(callee).__name__}")


def _is_generation(node: nodes.CallBlock) -> bool:
    call = node.call
    return isinstance(call, nodes.Call) and isinstance(call.node, nodes.ExtensionAttribute) and \
        call.node.name == "_render" and not node.args


def _check_growth(tree: nodes.Template, macros: set[str]) -> None:
    """No value can grow faster than linearly in the instructions run (fuel bounds those).

    In both engines a plain {% set %} inside a loop or macro is forgotten at the next iteration or
    call: only namespace attributes carry values from one iteration to the next. So a namespace
    attribute may only be assigned what it held plus other values (`ns.s = ns.s + m.content`), never
    two of the template's own values or one through an expanding filter or a macro (`ns.s = ns.s +
    ns.s`, `ns.s = ns.s|tojson`); and a template has at most MAX_AMPLIFYING such plain assignments
    (`args = args|tojson`), which no loop can repeat on their own output. Macros may not recurse.
    """
    defined = {m.name: m for m in tree.find_all(nodes.Macro)}
    for macro in defined.values():
        if macro.name in _called_names(macro, defined):
            raise _Refused(f"macro {macro.name!r} calls itself")
    assigned = _assigned_names(tree)
    amplifying = 0
    for node in tree.find_all((nodes.Assign, nodes.AssignBlock)):
        value = node.body if isinstance(node, nodes.AssignBlock) else [node.node]
        refs = sum(_growth(v, assigned, macros) for v in value)
        if refs <= 1:
            continue
        target = node.target.name if isinstance(node.target, (nodes.Name, nodes.NSRef)) else "a tuple"
        if isinstance(node.target, nodes.NSRef):
            raise _Refused(f"namespace attribute '{target}.{node.target.attr}' could grow exponentially")
        amplifying += 1
        if amplifying > MAX_AMPLIFYING:
            raise _Refused(f"more than {MAX_AMPLIFYING} assignments that enlarge template values (last: '{target}')")


MAX_AMPLIFYING = 4
_NO_SIZE = (nodes.Compare, nodes.Test, nodes.Not, nodes.Neg, nodes.Pos, nodes.Sub, nodes.Div, nodes.FloorDiv,
            nodes.Mod, nodes.Const, nodes.TemplateData)
_BOUNDED_FILTERS = frozenset({"trim", "first", "last", "safe", "default", "d"})
_BOUNDED_METHODS = frozenset({"split", "strip", "lstrip", "rstrip", "items", "keys", "values", "get"})


def _growth(node, assigned: set[str], macros: set[str]) -> int:
    """How many template-assigned values a value's size may add up (2 = it could double); an expanding
    filter or a macro over one counts as 2. Example: "x + m.content" -> 1; "x + x" -> 2; "x|tojson" -> 2"""
    if isinstance(node, nodes.Name):
        return 1 if node.name in assigned else 0
    if isinstance(node, _NO_SIZE) or node is None:
        return 0
    if isinstance(node, nodes.CondExpr):
        return max(_growth(node.expr1, assigned, macros), _growth(node.expr2, assigned, macros))
    if isinstance(node, (nodes.And, nodes.Or)):
        return max(_growth(node.left, assigned, macros), _growth(node.right, assigned, macros))
    if isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Slice)):
        return _growth(node.node, assigned, macros) if not isinstance(node, nodes.Slice) else 0
    if isinstance(node, nodes.Filter):
        inner = sum(_growth(n, assigned, macros) for n in [node.node, *node.args, *(k.value for k in node.kwargs)])
        if node.name in ("length", "count"):
            return 0
        return inner if node.name in _BOUNDED_FILTERS or inner == 0 else 2
    if isinstance(node, nodes.Call):
        parts = [*node.args, *(k.value for k in node.kwargs)]
        if isinstance(node.node, nodes.Getattr):
            if node.node.attr in ("startswith", "endswith"):
                return 0
            inner = _growth(node.node.node, assigned, macros) + sum(_growth(n, assigned, macros) for n in parts)
            return inner if node.node.attr in _BOUNDED_METHODS or inner == 0 else 2
        inner = sum(_growth(n, assigned, macros) for n in parts)
        is_macro = isinstance(node.node, nodes.Name) and node.node.name in macros
        return 2 if is_macro and inner else inner
    if isinstance(node, nodes.Output):  # a block {% set %} body
        return sum(_growth(n, assigned, macros) for n in node.nodes)
    if isinstance(node, (nodes.For, nodes.If)):  # a loop in a block {% set %} body prints its body many times
        body = sum(_growth(n, assigned, macros) for n in node.iter_child_nodes())
        return 2 if body and isinstance(node, nodes.For) else body
    return sum(_growth(n, assigned, macros) for n in node.iter_child_nodes())


def _assigned_names(tree) -> set[str]:
    """Names holding the template's own values: {% set %} targets, namespaces, macro arguments, and loop
    variables over such values (a loop over the input data gives input-sized items, not template ones)."""
    names = {a.name for m in tree.find_all(nodes.Macro) for a in m.args}
    for node in tree.find_all((nodes.Assign, nodes.AssignBlock)):
        names |= _targets(node.target)
    loops = list(tree.find_all(nodes.For))
    while True:
        grown = {name for loop in loops if {n.name for n in _all_names(loop.iter)} & names
                 for name in _targets(loop.target)} - names
        if not grown:
            return names
        names |= grown


def _targets(target) -> set[str]:
    items = target.items if isinstance(target, nodes.Tuple) else [target]
    return {t.name for t in items if isinstance(t, (nodes.Name, nodes.NSRef))}


def _all_names(node) -> list:
    return ([node] if isinstance(node, nodes.Name) else []) + list(node.find_all(nodes.Name))


def _called_names(macro: nodes.Macro, defined: dict[str, nodes.Macro], seen: set[str] | None = None) -> set[str]:
    """Macros a macro calls, directly or through other macros."""
    seen = set() if seen is None else seen
    for call in macro.find_all(nodes.Call):
        name = call.node.name if isinstance(call.node, nodes.Name) else None
        if name in defined and name not in seen:
            seen.add(name)
            _called_names(defined[name], defined, seen)
    return seen


# --- the engine ----------------------------------------------------------------------------------

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
    calls: int = 0
    stats: dict = field(default_factory=lambda: {"minijinja": 0, "jinja2": 0, "mismatches": 0})

    @property
    def engine(self) -> str:
        return "minijinja" if self.compiled is not None else "jinja2"

    def render(self, **context) -> str:
        if self.compiled is None or not _safe_data(context, self.strips):
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


def _safe_data(context: dict, strips: bool) -> bool:
    """No null, no float (Rust prints some differently), and — for templates that strip — none of the
    four characters Python calls whitespace and Rust does not. Example: {"content": "Hi"} -> True

    Runs on every render: the messages list of string-valued dicts is checked without recursion."""
    for value in context.values():
        kind = type(value)
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


def for_source(source: str) -> FastTemplate:
    """The template as ChatRenderer renders it: MiniJinja where verified, else jinja2 (with the reason).

    Example: for_source(chatml).engine -> "minijinja"; a template using |upper -> "jinja2", why_not "filter 'upper'"
    """
    from llmprep.render.sandbox import TEMPLATE_GLOBALS, compile_template

    reference = compile_template(source)
    why = unsupported(source, reference.environment)
    compiled = _compile(source, TEMPLATE_GLOBALS) if why is None else None
    if why is None and compiled is None:
        why = "minijinja is not installed or does not compile it"
    tree = reference.environment.parse(source)
    strips = any(f.name in STRIPPING for f in tree.find_all(nodes.Filter)) or any(
        isinstance(c.node, nodes.Getattr) and c.node.attr in STRIPPING for c in tree.find_all(nodes.Call))
    fast = FastTemplate(reference, compiled, strips, why)
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
            context = {"messages": chat, "add_generation_prompt": prompt, "bos_token": "<s>", "eos_token": "</s>"}
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

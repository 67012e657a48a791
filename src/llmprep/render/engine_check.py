"""Static check: may MiniJinja render this chat template, i.e. does it only use constructs whose MiniJinja
behaviour was compared with jinja2's (tests/test_render_engine.py renders each on adversarial values)?

    unsupported("{{ messages[0]['content'] }}", env) -> None (MiniJinja may render it)
    unsupported("{{ messages[0].content|upper }}", env) -> "filter 'upper'" (Rust's case tables differ)

Refused beyond the lists below: `_` attributes, method objects used as values, string formatting and
multiplication, macro recursion and `caller`, empty/computed `split` separators, printing a list the
template built (MiniJinja's repr is not Python's), ordering comparisons of values not known to be
integers and `in` between two computed values (jinja2 raises on undefined or mixed types, MiniJinja
answers), slices of anything but `messages` (the same for undefined), and any assignment that could
make a value grow faster than linearly in the instructions run.
"""

from __future__ import annotations

from typing import Any

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


# --- top-level names transformers passes as None ---------------------------------------------------
NULLABLE = ("tools", "documents")
_SAME_ON_NONE = frozenset({"eq", "ne"})


def nullable_names(tree: nodes.Template, candidates: tuple[str, ...] = NULLABLE) -> frozenset[str]:
    """The candidates a render may pass to MiniJinja as None: the template only tests them (`if tools`,
    `tools is not none`, `tools is defined`, `tools == none`) or uses their value inside a branch taken only
    when they are truthy / not none. Elsewhere the engines differ on None (jinja2 raises on `for t in None`
    and `None|join`, MiniJinja loops zero times), so such a row goes to jinja2.

    Example: "{% if tools %}{% for t in tools %}{{ t|tojson }}{% endfor %}{% endif %}" -> {"tools"};
             "{% for t in tools %}{{ t }}{% endfor %}" -> set()
    """
    unsafe: set[str] = set()
    _walk_nullable(tree, frozenset(), False, set(candidates), unsafe)
    return frozenset(candidates) - unsafe


def _walk_nullable(node, guarded: frozenset, boolean: bool, names: set[str], unsafe: set[str]) -> None:
    """Record in `unsafe` each name of `names` whose value is used outside a test, a boolean condition or
    a branch guarded by its truthiness."""
    if isinstance(node, nodes.Name):
        if node.ctx == "load" and node.name in names and node.name not in guarded and not boolean:
            unsafe.add(node.name)
        return
    if isinstance(node, (nodes.If, nodes.CondExpr)):
        _walk_nullable(node.test, guarded, True, names, unsafe)
        truthy = guarded | _truthy_names(node.test)
        for child in (node.body if isinstance(node, nodes.If) else [node.expr1]):
            _walk_nullable(child, truthy, False, names, unsafe)
        rest = [*node.elif_, *node.else_] if isinstance(node, nodes.If) else [node.expr2]
        for child in rest:
            if child is not None:
                _walk_nullable(child, guarded, False, names, unsafe)
        return
    if isinstance(node, nodes.Test):  # `tools is none`, `tools is defined`: the same answer in both engines
        if isinstance(node.node, nodes.Name):
            for child in [*node.args, *node.kwargs]:
                _walk_nullable(child, guarded, False, names, unsafe)
            return
    if isinstance(node, nodes.Compare) and all(op.op in _SAME_ON_NONE for op in node.ops):
        for child in node.iter_child_nodes():
            _walk_nullable(child, guarded, True, names, unsafe)
        return
    keep = boolean and isinstance(node, (nodes.Not, nodes.And, nodes.Or))
    for child in node.iter_child_nodes():
        _walk_nullable(child, guarded, keep, names, unsafe)


def _truthy_names(test) -> frozenset[str]:
    """Names a condition proves truthy or not none. Example: "tools and x" -> {"tools"};
    "tools is not none" -> {"tools"}; "tools or x" -> set()"""
    if isinstance(test, nodes.Name):
        return frozenset({test.name})
    if isinstance(test, nodes.And):
        return _truthy_names(test.left) | _truthy_names(test.right)
    if isinstance(test, nodes.Not) and isinstance(test.node, nodes.Test) and test.node.name == "none" and \
            isinstance(test.node.node, nodes.Name):
        return frozenset({test.node.node.name})
    return frozenset()

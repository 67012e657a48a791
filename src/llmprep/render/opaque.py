"""Static check: does a template only print message content, never inspect or rewrite it?"""

from __future__ import annotations

import functools

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmprep.render.sandbox import _GenerationTag


@functools.lru_cache(maxsize=32)  # a pure function of the source: every renderer of a run asks it again
def content_is_opaque(source: str) -> bool:
    """True when the template only prints message content (concatenates it into output) and never
    inspects it: then rendering with sentinel-wrapped content equals the real rendering with the
    sentinels inserted, and one rendering per conversation is enough.

    Example: ChatML's "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + ... }}" -> True;
    Llama 3's "message['content'] | trim" -> False (the content is rewritten).
    """
    tree = _parse(source)
    return tree is not None and _opaque(tree, _message_names(tree))


def _opaque(tree, message_names: set[str], *, plain: bool = False) -> bool:
    """content_is_opaque on a parsed template. `plain`: judge only what a plain conversation can reach (every
    message just a role and a non-empty string content): there the content may also decide a test — it is
    always truthy, always a string — and a loop over a message's other keys (undefined there) never runs."""
    from jinja2 import nodes

    safe_filters = {"length", "count", "first", "last"}

    def visit(node, parents) -> bool:
        is_content = (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
                      and node.arg.value == "content") or (isinstance(node, nodes.Getattr) and node.attr == "content")
        if is_content and not (plain and _decides_a_test_only(node, parents)):
            for parent in reversed(parents):
                if isinstance(parent, nodes.Output):
                    break
                if not isinstance(parent, (nodes.Add, nodes.Concat)):
                    return False
            else:
                return False
        if plain and _never_runs_on_plain(node, message_names):
            return all(visit(child, parents + [node]) for child in node.else_)
        if isinstance(node, nodes.Filter) and node.name not in safe_filters and _mentions(node.node, message_names):
            return False
        if isinstance(node, nodes.Call) and any(_mentions(a, message_names) for a in node.args):
            return False
        return all(visit(child, parents + [node]) for child in node.iter_child_nodes())

    return visit(tree, [])


# Type tests: their answer on a value of a known type is fixed (jinja2's and MiniJinja's alike).
_TYPE_TESTS = frozenset({"defined", "undefined", "none", "mapping", "sequence", "iterable"})
_STRING_TESTS = _TYPE_TESTS | {"string"}  # ... and on a message's content, a non-empty string


def _decides_a_test_only(node, parents) -> bool:
    """Is this value (a message's content) used only as the condition of an `if` or `x if c else y`, possibly
    through `not`, `and`, `or` and a type test? On a non-empty string such a condition always comes out
    the same. Example: "{% if message.content %}" -> True; "{{ message.content }}" -> False."""
    from jinja2 import nodes

    child, k = node, len(parents) - 1
    if k >= 0 and isinstance(parents[k], nodes.Test) and parents[k].node is child and parents[k].name in _STRING_TESTS:
        child, k = parents[k], k - 1
    while k >= 0 and isinstance(parents[k], (nodes.Not, nodes.And, nodes.Or)):
        child, k = parents[k], k - 1
    return k >= 0 and isinstance(parents[k], (nodes.If, nodes.CondExpr)) and parents[k].test is child


def _never_runs_on_plain(node, message_names: set[str]) -> bool:
    """A `for` over a message's key other than role and content (`message.tool_calls`): on a plain message
    that key is undefined, an empty loop in jinja2 and MiniJinja alike, so its body never runs."""
    from jinja2 import nodes

    if not isinstance(node, nodes.For):
        return False
    it = node.iter
    if isinstance(it, nodes.Getattr):
        base, key = it.node, it.attr
    elif isinstance(it, nodes.Getitem) and isinstance(it.arg, nodes.Const) and isinstance(it.arg.value, str):
        base, key = it.node, it.arg.value
    else:
        return False
    return isinstance(base, nodes.Name) and base.name in message_names and base.name != "messages" \
        and key not in ("role", "content")


def _mentions(node, names: set[str]) -> bool:
    from jinja2 import nodes

    return node is not None and (
        (isinstance(node, nodes.Name) and node.name in names)
        or any(n.name in names for n in node.find_all(nodes.Name)))


def _parse(source: str):
    env = ImmutableSandboxedEnvironment(extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    try:
        return env.parse(source)
    except jinja2.TemplateSyntaxError:
        return None


def _message_names(tree) -> set[str]:
    """`messages`, its loop variables and its aliases. Example: "{% for m in messages %}" -> {"messages", "m"}"""
    from jinja2 import nodes

    names = {"messages"}
    for node in tree.find_all((nodes.For, nodes.Assign)):
        value = node.iter if isinstance(node, nodes.For) else node.node
        if any(n.name in names for n in value.find_all(nodes.Name)) or (
                isinstance(value, nodes.Name) and value.name in names):
            names |= {n.name for n in node.target.find_all(nodes.Name)} | (
                {node.target.name} if isinstance(node.target, nodes.Name) else set())
    return names


# What a template may do with a message (or the list of them) and still print plain conversations as fixed
# text that depends only on the roles: read a key (not a dict method), iterate, alias, count, test its type.
_DICT_METHODS = frozenset({"items", "keys", "values", "get", "pop", "copy", "update", "setdefault", "popitem",
                           "clear", "fromkeys"})
_GLOBALS_OK = frozenset({"range", "namespace", "raise_exception", "dict"})


@functools.lru_cache(maxsize=32)
def shape_determined(source: str) -> bool:
    """True when the rendering of a plain conversation ({"role", "content"} messages, every content a
    non-empty string) is fixed text that depends only on the roles, with each content printed verbatim:
    content_is_opaque for what such a conversation reaches (its content may also decide a truth or type
    test; a loop over a message's other keys never runs), and no message is
    used but through a constant key (`message['role']`, `message.content`), a loop, an alias, `length`,
    `first`/`last` or a type test — never printed whole, iterated as a dict, read with a computed key, or
    reached through `loop.previtem`/`nextitem`; and no global whose value changes (`strftime_now`).

    Then render/skeleton.py may build such a conversation's text from its shape's pieces without
    rendering it. Example: ChatML -> True; "{{ message }}" (the dict printed) -> False.
    """
    from jinja2 import nodes

    tree = _parse(source)
    if tree is None:
        return False
    names = _message_names(tree)
    if not _opaque(tree, names, plain=True):
        return False

    def used_safely(node, parents) -> bool:
        """`node` is a message or a list of them: is what consumes it on the list above?"""
        parent = parents[-1] if parents else None
        if isinstance(parent, nodes.Getattr) and parent.node is node:
            return parent.attr not in _DICT_METHODS
        if isinstance(parent, nodes.Getitem) and parent.node is node:
            if isinstance(parent.arg, nodes.Const) and isinstance(parent.arg.value, str):
                return True  # message['role']: a string
            if isinstance(parent.arg, (nodes.Const, nodes.Slice)) or (
                    isinstance(node, nodes.Name) and node.name == "messages"):
                return used_safely(parent, parents[:-1])  # messages[0], messages[1:], messages[i]: messages
            return False
        if isinstance(parent, nodes.For):
            return parent.iter is node
        if isinstance(parent, nodes.Assign):
            return parent.node is node and isinstance(parent.target, (nodes.Name, nodes.Tuple))
        if isinstance(parent, nodes.Filter) and parent.node is node:
            if parent.name in ("length", "count"):
                return True
            return parent.name in ("first", "last") and used_safely(parent, parents[:-1])
        if isinstance(parent, nodes.Test) and parent.node is node:
            return parent.name in _TYPE_TESTS
        return False

    def visit(node, parents) -> bool:
        if _never_runs_on_plain(node, names):
            return all(visit(child, parents + [node]) for child in node.else_)
        if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in names \
                and not used_safely(node, parents):
            return False
        if isinstance(node, nodes.Getattr) and node.attr in ("previtem", "nextitem"):
            return False
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name not in _GLOBALS_OK:
            return False
        return all(visit(child, parents + [node]) for child in node.iter_child_nodes())

    return visit(tree, [])

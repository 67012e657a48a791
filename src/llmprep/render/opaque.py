"""Static check: does a template only print message content, never inspect or rewrite it?"""

from __future__ import annotations

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmprep.render.sandbox import _GenerationTag


def content_is_opaque(source: str) -> bool:
    """True when the template only prints message content (concatenates it into output) and never
    inspects it: then rendering with sentinel-wrapped content equals the real rendering with the
    sentinels inserted, and one rendering per conversation is enough.

    Example: ChatML's "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + ... }}" -> True;
    Llama 3's "message['content'] | trim" -> False (the content is rewritten).
    """
    from jinja2 import nodes

    env = ImmutableSandboxedEnvironment(extensions=[_GenerationTag, jinja2.ext.loopcontrols])
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError:
        return False
    message_names = {"messages"}
    for node in tree.find_all((nodes.For, nodes.Assign)):  # loop variables and aliases of messages
        value = node.iter if isinstance(node, nodes.For) else node.node
        if any(n.name in message_names for n in value.find_all(nodes.Name)) or (
                isinstance(value, nodes.Name) and value.name in message_names):
            message_names |= {n.name for n in node.target.find_all(nodes.Name)} | (
                {node.target.name} if isinstance(node.target, nodes.Name) else set())
    safe_filters = {"length", "count", "first", "last"}

    def visit(node, parents) -> bool:
        is_content = (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
                      and node.arg.value == "content") or (isinstance(node, nodes.Getattr) and node.attr == "content")
        if is_content:
            for parent in reversed(parents):
                if isinstance(parent, nodes.Output):
                    break
                if not isinstance(parent, (nodes.Add, nodes.Concat)):
                    return False
            else:
                return False
        if isinstance(node, nodes.Filter) and node.name not in safe_filters and _mentions(node.node, message_names):
            return False
        if isinstance(node, nodes.Call) and any(_mentions(a, message_names) for a in node.args):
            return False
        return all(visit(child, parents + [node]) for child in node.iter_child_nodes())

    return visit(tree, [])


def _mentions(node, names: set[str]) -> bool:
    from jinja2 import nodes

    return node is not None and (
        (isinstance(node, nodes.Name) and node.name in names)
        or any(n.name in names for n in node.find_all(nodes.Name)))



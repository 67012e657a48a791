"""Sentinels around every renderable string of a conversation, and where they land in a rendering.

Each non-empty string a template may print — a message's content (or each text part), its reasoning,
each tool call's function name and arguments (a string, or each string value of an arguments object),
a tool result — is wrapped in numbered private-use sentinels. Rendering the wrapped conversation and
reading the sentinels' positions tells which fields the template printed and where; removing them
gives the text back (when the template only printed the strings, without trimming them).

    content "Hi" (field 3) -> "\\ue0003\\ue002Hi\\ue0013\\ue002"

Empty strings are never wrapped: a template testing `if message.content` must take the same branch.
Tool-call ids are never wrapped (Mistral's template checks their length), nor dict keys.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, NamedTuple

from llmprep.messages import REASONING_FIELDS, Message

OPEN, CLOSE, END = "\ue000", "\ue001", "\ue002"  # private-use: never produced by templates
_MARK = re.compile(f"([{OPEN}{CLOSE}])(\\d+){END}")


class Field(NamedTuple):
    """One wrapped string. Example: Field(1, ("tool_calls", 0, "function", "name"), "tool_call", "get_weather")"""

    message: int
    keys: tuple  # where it sits in its message
    kind: str  # "content" | "reasoning" | "tool_call"
    text: str

    @property
    def path(self) -> str:
        """Example: ("tool_calls", 0, "function", "name") -> "tool_calls[0].function.name" """
        out = ""
        for key in self.keys:
            out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
        return out


def has_sentinels(fields: list[Field]) -> bool:
    """Does any field already hold a sentinel character? (Then the sentinels would be ambiguous.)"""
    return any(OPEN in f.text or CLOSE in f.text or END in f.text for f in fields)


def fields_of(messages: list[Message]) -> list[Field]:
    """Every non-empty renderable string, in message order (the order mark() numbers them)."""
    out: list[Field] = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if len(m) == 2 and type(content) is str:  # {"role", "content"}: the common case
            if content:
                out.append(Field(i, ("content",), "content", content))
            continue
        if isinstance(content, str) and content:
            out.append(Field(i, ("content",), "content", content))
        elif isinstance(content, list):
            out += [Field(i, ("content", j, "text"), "content", p["text"]) for j, p in enumerate(content) if p["text"]]
        out += [Field(i, (name,), "reasoning", m[name]) for name in REASONING_FIELDS
                if isinstance(m.get(name), str) and m[name]]
        for j, call in enumerate(m.get("tool_calls") or []):
            fn, base = (call["function"], ("tool_calls", j, "function")) if "function" in call \
                else (call, ("tool_calls", j))
            out.append(Field(i, base + ("name",), "tool_call", fn["name"]))
            args = fn.get("arguments")
            if isinstance(args, str) and args:
                out.append(Field(i, base + ("arguments",), "tool_call", args))
            elif isinstance(args, dict):
                out += [Field(i, base + ("arguments", k), "tool_call", v) for k, v in args.items()
                        if isinstance(v, str) and v]
    return out


def mark(messages: list[Message], fields: list[Field]) -> list[Message]:
    """A copy of the conversation with every field (fields_of(messages)) wrapped in sentinels numbered by
    its index in `fields`.

    Example: [user "Hi", assistant "Yo"] -> [user "\\ue0000\\ue002Hi\\ue0010\\ue002", assistant "...Yo..."]
    """
    out = [dict(m) for m in messages]
    for k, f in enumerate(fields):
        wrapped = f"{OPEN}{k}{END}{f.text}{CLOSE}{k}{END}"
        if len(f.keys) == 1:
            out[f.message][f.keys[0]] = wrapped
        else:
            _set(out[f.message], f.keys, wrapped)
    return out


def _set(msg: dict, keys: tuple, value: str) -> None:
    """Set a field by its keys, copying the containers on the way (the caller's data stays untouched).

    Example: (msg, ("tool_calls", 0, "function", "name"), "X") -> msg["tool_calls"][0]["function"]["name"] = "X"
    """
    node: Any = msg
    for key in keys[:-1]:
        child = node[key]
        child = list(child) if isinstance(child, list) else dict(child)
        node[key] = child
        node = child
    node[keys[-1]] = value


def strip(marked: str) -> tuple[str, list[tuple[int, int, bool]]]:
    """Remove the sentinels -> (plain text, [(position in the plain text, field number, is_open), ...]).

    Example: "a\\ue0000\\ue002Hi\\ue0010\\ue002b" -> ("aHib", [(1, 0, True), (3, 0, False)])
    """
    parts = _MARK.split(marked)  # text, kind, number, text, kind, number, ..., text
    if len(parts) == 1:
        return marked, []
    texts = parts[::3]
    where = itertools.accumulate(map(len, texts[:-1]))  # each sentinel sits after the text before it
    return "".join(texts), list(zip(where, map(int, parts[2::3]), map(OPEN.__eq__, parts[1::3])))

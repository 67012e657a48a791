"""Sentinels around every renderable string of a conversation, and where they land in a rendering.

Each non-empty string a template may print — a message's content (or each text part), its reasoning,
each tool call's function name and arguments (a string, or each string value of an arguments object),
a tool result — is wrapped in numbered private-use sentinels of three characters: a lead character,
the field's number as one private-use character (U+E100 + number), and open or close. Rendering the
wrapped conversation and reading the sentinels' positions tells which fields the template printed and
where; removing them gives the text back (when the template only printed the strings, without
trimming them). Splitting the rendering at the lead character finds them all in one C call.

    content "Hi" (field 3) -> "\\ue000\\ue103\\ue001Hi\\ue000\\ue103\\ue002"

Empty strings are never wrapped: a template testing `if message.content` must take the same branch.
Tool-call ids are never wrapped (Mistral's template checks their length), nor dict keys.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, NamedTuple

from llmprep.messages import REASONING_FIELDS, Message

LEAD, OPEN, CLOSE = "\ue000", "\ue001", "\ue002"  # private-use: never produced by templates
BASE, MAX_FIELDS = 0xE100, 0xF8FF - 0xE100  # field numbers as one private-use character (BMP: fast strings)


def sentinel(k: int, kind: str) -> str:
    """The three characters that open (kind OPEN) or close (CLOSE) field k.

    Example: (3, OPEN) -> "\\ue000\\ue103\\ue001" """
    return f"{LEAD}{chr(BASE + k)}{kind}"


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
    """Does any field already hold a sentinel character, or are there too many fields to number? (Then the
    sentinels would be ambiguous.)"""
    joined = "".join(f.text for f in fields)
    return LEAD in joined or OPEN in joined or CLOSE in joined or len(fields) > MAX_FIELDS


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
    out = list(messages)
    copied = set()
    for k, f in enumerate(fields):
        number = chr(BASE + k)
        wrapped = f"{LEAD}{number}{OPEN}{f.text}{LEAD}{number}{CLOSE}"
        if f.message not in copied:
            out[f.message] = dict(out[f.message])
            copied.add(f.message)
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
    A lead character not followed by a field number and open/close (a template cut the sentinel) stays.

    Example: "a" + sentinel(0, OPEN) + "Hi" + sentinel(0, CLOSE) + "b" -> ("aHib", [(1, 0, True), (3, 0, False)])
    """
    parts = marked.split(LEAD)
    if len(parts) == 1:
        return marked, []
    texts, marks, pos = [parts[0]], [], len(parts[0])
    for part in parts[1:]:
        if len(part) >= 2 and part[1] in (OPEN, CLOSE) and BASE <= ord(part[0]) <= BASE + MAX_FIELDS:
            marks.append((pos, ord(part[0]) - BASE, part[1] == OPEN))
            part = part[2:]
        else:
            part = LEAD + part
        texts.append(part)
        pos += len(part)
    return "".join(texts), marks


@functools.lru_cache(maxsize=256)
def _in_order(n: int) -> str:
    """What follows each lead character when n fields are printed once each, in order."""
    return "".join(f"{chr(BASE + k)}{OPEN}{chr(BASE + k)}{CLOSE}" for k in range(n))


def strip_in_order(marked: str, n: int) -> tuple[str, list[int]] | None:
    """strip() for the usual case, faster: n fields, each printed once and in order -> (plain text,
    [open 0, close 0, open 1, close 1, ...] positions in it); None when that is not the case.

    Example: "a" + sentinel(0, OPEN) + "Hi" + sentinel(0, CLOSE) + "b", 1 -> ("aHib", [1, 3])
    """
    parts = marked.split(LEAD)
    if len(parts) != 2 * n + 1 or "".join([p[:2] for p in parts[1:]]) != _in_order(n):
        return None
    texts = [parts[0]] + [p[2:] for p in parts[1:]]
    return "".join(texts), list(itertools.accumulate(map(len, texts[:-1])))

"""Lay out plain conversations by their shape: the sentinel rendering once per shape, arithmetic after.

Most training chats are plain — every message exactly {"role", "content"} with a non-empty string —
and a template prints such a chat as fixed text around each content, where the fixed text depends only
on the roles (and which turns are trained), not on what was said:

    roles (system, user, assistant) -> pieces ["<|im_start|>system\\n", "<|im_end|>\\n<|im_start|>user\\n",
                                               "<|im_end|>\\n<|im_start|>assistant\\n", "<|im_end|>\\n"]
    text = pieces[0] + content[0] + pieces[1] + content[1] + ... + pieces[-1]

So the first chat of each shape is laid out the full way (layout.py: the sentinel rendering), and its
text is cut into those pieces; the trained spans are then found in the pieces themselves, with
layout.py's own rule (after the generation prompt's last occurrence in the piece before the turn,
through the first run of end-of-turn tokens in the piece after it). A shape is used only when that rule,
applied to the pieces, gives exactly the full layout's spans — never when a turn's edge falls inside
a content, or when the full layout had to fall back to prefix renderings (their answer can depend on
the content).

Every later chat of the shape gets its spans and field positions as sums of lengths. Its text:
- the template's own rendering, used only when it is exactly the pieces joined with the contents
  (anything else goes the full way);
- or, when the template provably prints a plain chat that way (opaque.py: `shape_determined` —
  ChatML's, SmolLM2's), the joined pieces themselves, without rendering: the same policy as a faster
  engine (render/engine.py), a static check plus spot checks.
The first CHECK_PER_SHAPE chats of every shape and every CHECK_EVERY-th after that are rendered and
laid out the full way too, and compared; one difference turns the shortcut off for the rest of the
run (counted in `mismatches`, report.json `engine.shape_mismatches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmprep.messages import _PLAIN_ROLES, Message
from llmprep.render.layout import Layout, Span
from llmprep.render.markers import Field

CHECK_PER_SHAPE = 2  # chats of each shape laid out both ways
CHECK_EVERY = 128  # then every 128th chat laid out by shape is checked the full way too
MAX_SHAPES = 4096  # shapes remembered per run (a shape is a tuple of roles: real data has few)
_CONTENT = ("content",)


@dataclass(frozen=True)
class Shape:
    """The fixed text of one shape of conversation and where its trained spans sit in it.

    pieces: the text before the first content, between contents, after the last (len = messages + 1)
    anchors: per trained span, (piece of its start, offset in that piece, piece of its end, offset)
    stop: Layout.stop of every chat of this shape
    """

    pieces: tuple[str, ...]
    anchors: tuple[tuple[int, int, int, int], ...]
    stop: bool | None


def plain_parts(messages: list) -> tuple[tuple[str, ...], list[str]] | None:
    """(roles, contents) of a plain conversation — every message a dict of just a known role and a non-empty
    string content (an assistant's not blank) — or None. The shape test of Shapes.layout (on validated
    messages, where the role and blank-reply conditions always hold) and of the lane (lane.py, on raw records,
    where they stand in for validation).

    Example: [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}] -> (("user", "assistant"),
    ["Hi", "Yo"]); an empty content, another key or content parts -> None
    """
    roles, contents = [], []
    for m in messages:
        if type(m) is not dict or len(m) != 2:
            return None
        content, role = m.get("content"), m.get("role")
        if type(content) is not str or not content or role not in _PLAIN_ROLES or (
                role == "assistant" and content.isspace()):
            return None
        roles.append(role)
        contents.append(content)
    return tuple(roles), contents


def plain_key(messages: list[Message], trained: list[int]) -> tuple | None:
    """The shape of a plain conversation, or None when a message is not plain (other keys, content parts,
    an empty content).

    Example: [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], [1]
    -> (("user", "assistant"), (1,))
    """
    parts = plain_parts(messages)
    return (parts[0], tuple(trained)) if parts is not None else None


def shape_of(lay: Layout, messages: list[Message], trained: list[int], header: str, eot) -> Shape | None:
    """The Shape a full layout of a plain conversation implies, or None when its spans do not follow from
    the fixed text alone (see the module docstring)."""
    if lay.missing or lay.eos_added or lay.stop is False or len(lay.fields) != len(messages):
        return None
    pieces, pos = [], 0
    for i, (f, a, b) in enumerate(lay.fields):
        if f.message != i or f.keys != _CONTENT or a is None or b is None or a < pos \
                or lay.text[a:b] != messages[i]["content"]:
            return None
        pieces.append(lay.text[pos:a])
        pos = b
    pieces.append(lay.text[pos:])
    anchors = _anchors(pieces, messages, trained, header, eot)
    if anchors is None:
        return None
    shape = Shape(tuple(pieces), tuple(anchors), lay.stop)
    contents = [m["content"] for m in messages]
    if join(shape, contents) != lay.text or positions(shape, contents)[0] != lay.spans:
        return None
    return shape


def _anchors(pieces: list[str], messages: list[Message], trained: list[int], header: str,
             eot) -> list[tuple[int, int, int, int]] | None:
    """layout.py's turn rule, applied to the fixed text: an assistant turn starts after the last generation
    prompt in the piece before its content and ends after the run of end-of-turn tokens first found in the
    piece after it; another trained message starts at its content. None when a search finds nothing (the
    full layout then asks prefix renderings, which can depend on the content)."""
    out = []
    for i in trained:
        before, after = pieces[i], pieces[i + 1]
        start = len(before)
        if messages[i]["role"] == "assistant":
            at = before.rfind(header) if header else -1
            if at == -1:
                return None
            start = at + len(header)
        match = eot.search(after) if eot is not None else None
        if match is None:
            return None
        end = match.end()
        while (nxt := eot.match(after, end)) is not None:
            end = nxt.end()
        out.append((i, start, i + 1, end))
    return out


def join(shape: Shape, contents: list[str]) -> str:
    """The pieces joined with the contents. Example: pieces ["<u>", "<a>", "</a>"], ["Hi", "Yo"] -> "<u>Hi<a>Yo</a>" """
    return "".join(_interleave(shape, contents))


def _interleave(shape: Shape, contents: list[str]) -> list[str]:
    parts = [None] * (2 * len(contents) + 1)
    parts[::2] = shape.pieces
    parts[1::2] = contents
    return parts


def positions(shape: Shape, contents: list[str]) -> tuple[list[Span], list[int]]:
    """(trained spans, start of each content) of a chat of this shape with these contents.

    Example: pieces ["<u>", "<a>", "</a>"], contents ["Hi", "Yo"] -> starts [3, 8]; an anchor (1, 3, 2, 4)
    (piece 1 from its end, through 4 characters into piece 2) -> span (8, 14)
    """
    piece_at, starts, pos = [], [], 0
    for piece, content in zip(shape.pieces, contents):
        piece_at.append(pos)
        pos += len(piece)
        starts.append(pos)
        pos += len(content)
    piece_at.append(pos)
    return [(piece_at[a] + x, piece_at[b] + y) for a, x, b, y in shape.anchors], starts


class ContentFields(Sequence):
    """Layout.fields of a chat laid out by shape — (Field, start, end) of each content — built only when
    read (most rows never need them: see `control_spans`)."""

    def __init__(self, contents: list[str], starts: list[int]):
        self.contents, self.starts = contents, starts

    def _items(self) -> list:
        return [(Field(i, _CONTENT, "content", c), a, a + len(c)) for i, (c, a) in enumerate(zip(self.contents,
                                                                                                   self.starts))]

    def __len__(self) -> int:
        return len(self.contents)

    def __getitem__(self, k):
        return self._items()[k]

    def __iter__(self):
        return iter(self._items())

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(self._items())

    def control_spans(self, has_control_text) -> list[Span]:
        """Spans of the contents for which has_control_text(content) is true; one search over all of them
        first (a match across two contents only costs the per-content search)."""
        if not has_control_text("".join(self.contents)):
            return []
        return [(a, a + len(c)) for c, a in zip(self.contents, self.starts) if has_control_text(c)]


class Shapes:
    """The shortcut for one ChatRenderer: shape -> Shape (or None: this shape goes the full way)."""

    def __init__(self, renderer, *, render_free: bool = False):
        self.r = renderer
        # The template provably prints a plain chat as its shape's pieces around the contents (opaque.py:
        # shape_determined): the text is the joined pieces, without rendering. Else every chat is rendered.
        self.render_free = render_free
        self.enabled = True
        self.rows = 0  # chats laid out by shape
        self.unrendered = 0  # of them, chats whose text is the joined pieces (no rendering)
        self.mismatches = 0
        self.new_shard()

    def new_shard(self) -> None:
        """Forget the shapes learnt so far: each shard learns its own, so which rows take the shortcut (counted
        in the report) depends on the shard's records only, never on which worker saw which shard first."""
        self.by_key: dict[tuple, Shape | None] = {}
        self.seen: dict[tuple, int] = {}
        self.served = 0  # rows served in this shard (the spot-check clock)

    def layout(self, messages: list[Message], trained: list[int], *, add_eos: bool = False) -> Layout | None:
        """The layout of a plain conversation from its shape, or None: lay it out the full way. (`add_eos`
        changes nothing in a shape's chats — each has its stop token — but the full layouts get it.)"""
        key = plain_key(messages, trained) if self.enabled else None
        if key is None:
            return None
        if key not in self.by_key:
            if len(self.by_key) >= MAX_SHAPES:
                return None
            return self._learn(key, messages, trained, add_eos)
        shape = self.by_key[key]
        if shape is None:
            return None
        contents = [m["content"] for m in messages]
        check = self.due(key)
        if self.render_free and not check:
            text, spans, starts = self.unrendered_text(key, shape, contents)
            return Layout(text, spans, ContentFields(contents, starts), stop=shape.stop)
        self.seen[key] += 1
        text = self.r.render(messages)  # the template's own text
        if text != join(shape, contents):
            return None
        spans, starts = positions(shape, contents)
        lay = Layout(text, spans, ContentFields(contents, starts), stop=shape.stop)
        self.rows += 1
        self.served += 1
        if check:
            full = self._full(messages, trained, add_eos)
            if (full.text, full.spans, full.fields, full.stop, full.missing) != (
                    lay.text, lay.spans, lay.fields, lay.stop, lay.missing):
                self.enabled = False
                self.mismatches += 1
                return full
        return lay

    def due(self, key: tuple) -> bool:
        """Is the next chat of this (known) shape one the spot checks lay out the full way too?"""
        return self.seen[key] < CHECK_PER_SHAPE or (self.served + 1) % CHECK_EVERY == 0

    def unrendered_text(self, key: tuple, shape: Shape, contents: list[str]) -> tuple[str, list[Span], list[int]]:
        """(text, trained spans, content starts) of a chat of this known shape laid out without rendering (no
        spot check due: see `due`), counted as such. Shapes.layout and the lane (lane.py) take this one way.

        Example: pieces ["<u>", "<a>", "</a>"], contents ["Hi", "Yo"] -> ("<u>Hi<a>Yo</a>", spans, [3, 8])
        """
        self.seen[key] += 1
        self.served += 1
        self.rows += 1
        self.unrendered += 1
        spans, starts = positions(shape, contents)
        return join(shape, contents), spans, starts

    def _learn(self, key: tuple, messages: list[Message], trained: list[int], add_eos: bool) -> Layout:
        lay = self._full(messages, trained, add_eos)
        loc = self.r.locator
        self.by_key[key] = shape_of(lay, messages, trained, loc.generation_prompt, self.r.end_of_turn_re)
        self.seen[key] = 1
        return lay

    def _full(self, messages: list[Message], trained: list[int], add_eos: bool) -> Layout:
        return self.r.full_layout(messages, trained, add_eos=add_eos)

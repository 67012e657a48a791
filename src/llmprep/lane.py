"""The plain-chat lane: parse, validate and lay out a plain chat in one step, with no per-record layers.

Most training records are `{"messages": [{"role": ..., "content": ...}, ...]}` with non-empty string
contents. For a template that provably prints such a chat as fixed text around the contents
(render/skeleton.py: a shape, `render_free`), everything the general path does for the record —
parse_record, the format's conversion, validate_messages, trained_messages, the renderer's layout, the
report's counts — reduces to: read the JSON, check each message, look its role sequence up among the shapes
this shard has learnt, and join the shape's pieces with the contents.

The lane takes a record only when the general path would do exactly that with it:
- the file's format is `messages` and no --column renames anything;
- the JSON is an object with a `messages` list and no `tools`, and parse_record would find no problem in it
  (no lone surrogate, no deep nesting); an object its reader parsed already (a `.json` array's item, which
  that reader checked) is taken the same way, without parsing;
- every message is `{"role", "content"}` with a known role and a non-empty string (an assistant's not
  blank), so validation depends on the roles alone — and a shape is only ever learnt from a chat that
  passed validation with the same roles;
- its shape is known in this shard and usable, and this chat is not one the shapes spot-check (the first
  of each shape, every CHECK_EVERY-th) nor one of the shard's prefix-consistency checks.

Every other record goes the general way, at its place in the order, so which chats learn a shape, which
are spot-checked and every count in the report are the same as without the lane (tests/test_lane.py
compares whole shard results).

Example: '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}' with
SmolLM2's template, shape (user, assistant) known -> text "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>
assistant\\nYo<|im_end|>\\n", spans [(45, 57)], no rendering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from llmprep.examples import Example, Rejected, to_examples
from llmprep.formats import CHAT
from llmprep.messages import trained_messages
from llmprep.records import Record, messages_object
from llmprep.render.skeleton import ContentFields, plain_parts


@dataclass
class ChatRows:
    """The rendered rows of a shard's chats, in order: text, trained spans, literal control-text spans, and
    the example index behind each (several rows per example with --history per-turn)."""

    texts: list[str] = field(default_factory=list)
    spans: list = field(default_factory=list)
    literal: list = field(default_factory=list)
    ok: list[int] = field(default_factory=list)

    def add(self, i: int, texts: list[str], spans: list, literal: list) -> None:
        self.texts += texts
        self.spans += spans
        self.literal += literal
        self.ok += [i] * len(texts)


class PlainLane:
    """The lane for one shard (see the module docstring). Built by `for_shard`, or None where it can't apply."""

    def __init__(self, renderer, settings, formats: dict[str, str]):
        self.r, self.shapes = renderer, renderer.shapes
        self.settings, self.formats = settings, formats
        self.roles = tuple(settings.train_roles)
        self.last_only = settings.train_turns == "last" or settings.history == "last"
        self.literal = settings.literal_control_text
        self._trained: dict[tuple, tuple] = {}  # roles -> (trained indices, the shape key)
        self.taken = 0  # records the lane laid out itself

    @classmethod
    def for_shard(cls, renderer, settings, formats: dict[str, str], records: list[Record]) -> PlainLane | None:
        """The lane, when this run's settings allow it: a template whose plain chats are laid out without
        rendering, one row per chat, the `messages` format read as is, every file's format known (a format
        detected inside the shard is detected once for the whole file, by to_examples)."""
        if renderer is None or not (renderer.shapes.enabled and renderer.shapes.render_free):
            return None
        if settings.history == "per-turn" or settings.columns or settings.format not in (None, "messages"):
            return None
        if settings.format is None and any(r.source not in formats for r in records):
            return None
        return cls(renderer, settings, formats)

    def run(self, records: list[Record], encoder, stats,
            general: Callable) -> tuple[list[Example], list[Rejected], ChatRows]:
        """(examples, rejected, chat rows) of the shard's records, in order. `general(example)` lays out a
        chat the general way: (texts, spans, literal spans), appending a reject itself when it has one."""
        examples: list[Example] = []
        rejected: list[Rejected] = []
        rows = ChatRows()
        self.has_control_text = encoder.has_control_text
        fmt, formats = self.settings.format, self.formats
        for rec in records:
            plain = None
            if rec.error is None and (fmt or formats.get(rec.source)) == "messages":
                if rec.data is None and rec.raw is not None:  # a JSON line, parsed here
                    plain = self._plain(rec.raw, stats)
                elif type(rec.data) is dict:  # an object read already (a .json array's item)
                    plain = self._plain_object(rec.data, stats)
            if plain is not None:
                self.taken += 1
                messages, text, spans, literal = plain
                rows.add(len(examples), [text], [spans], [literal])
                examples.append(Example(rec.source, rec.line, CHAT, {"messages": messages}))
                continue
            for x in to_examples([rec], format=fmt, formats=formats):
                if isinstance(x, Rejected):
                    rejected.append(x)
                    continue
                i = len(examples)
                examples.append(x)
                if x.kind == CHAT:
                    rows.add(i, *general(x, rejected))
        return examples, rejected, rows

    def _plain(self, raw: str, stats) -> tuple | None:
        """(messages, text, spans, literal spans) of a record the lane takes, else None (nothing changed)."""
        got = messages_object(raw)
        return None if got is None else self._laid_out(got[1], stats)

    def _plain_object(self, record: dict, stats) -> tuple | None:
        """_plain for a record its reader parsed (and checked: an item with a lone surrogate or nested too deep
        is a reject there), as messages_object would take it: a non-empty `messages` list and no `tools`."""
        messages = record.get("messages") if "tools" not in record else None
        return self._laid_out(messages, stats) if type(messages) is list and messages else None

    def _laid_out(self, messages: list, stats) -> tuple | None:
        parts = plain_parts(messages)  # its role and blank-reply conditions stand in for validate_messages
        if parts is None:
            return None
        roles, contents = parts
        known = self._trained.get(roles)
        if known is None:
            trained = trained_messages(messages, roles=self.roles, last_only=self.last_only)
            known = self._trained[roles] = (trained, (roles, tuple(trained)))
        trained, key = known
        shapes = self.shapes
        shape = shapes.by_key.get(key)
        if shape is None or not shapes.enabled or not trained or shapes.due(key) or stats.wants_prefix(len(messages)):
            return None
        text, spans, starts = shapes.unrendered_text(key, shape, contents)
        self.r.rows_by_engine["shape"] += 1  # as ChatRenderer.layout counts a row whose text was not rendered
        stats.add_plain(roles)
        literal = ContentFields(contents, starts).control_spans(self.has_control_text) if self.literal else []
        return messages, text, spans, literal  # `messages` is this record's own list: no copy

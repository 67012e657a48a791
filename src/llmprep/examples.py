"""Records -> examples: rename fields, pick the format, convert, and keep rejects with their reasons.

Example: Record("a.jsonl", 3, {"question": "Hi", "answer": "Yo"})
-> Example(source="a.jsonl", line=3, kind="chat", data={"messages": [...]})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from llmprep.errors import FormatError, RecordError
from llmprep.formats import Format, detect_format, get_format, rename_fields
from llmprep.messages import _all_plain, _check_order
from llmprep.records import Record, messages_object, parse_record


@dataclass
class Example:
    source: str
    line: int
    kind: str
    data: dict[str, Any]


@dataclass
class Rejected:
    source: str
    line: int
    field: str | None
    reason: str
    record: Any
    duplicate_of: str | None = None  # --dedup: "file:line" of the kept copy (llmprep.mix)
    benchmark: str | None = None  # --decontaminate: "file:line" of the benchmark item it shares an n-gram with

    def to_json(self) -> dict:
        out = {"source": self.source, "line": self.line, "field": self.field, "reason": self.reason,
               "record": self.record}
        return out | {k: v for k, v in (("duplicate_of", self.duplicate_of), ("benchmark", self.benchmark)) if v}

    def message(self) -> str:
        return RecordError(self.reason, source=self.source, line=self.line, field=self.field).describe()


def reject(rec_or_ex, err: RecordError, record: Any) -> Rejected:
    return Rejected(rec_or_ex.source, rec_or_ex.line, err.field, err.reason, record)


def to_examples(records: Iterable[Record], *, format: str | None = None,
                columns: Mapping[str, str] | None = None,
                formats: Mapping[str, str] | None = None) -> Iterator[Example | Rejected]:
    """Convert records in order, yielding an Example or a Rejected for each.

    The format is `format` when given, else `formats[source]` (detected beforehand), else detected
    per file from its first readable record; a file whose fields match no format raises FormatError
    (a whole-input problem, not a per-record one).
    """
    fixed: Format | None = get_format(format) if format else None
    per_file: dict[str, Format] = {src: get_format(name) for src, name in (formats or {}).items()}
    for rec in records:
        if not columns and rec.raw is not None and rec.data is None and rec.error is None \
                and (fixed or per_file.get(rec.source)) is _MESSAGES:
            quick = _plain_chat(rec)
            if quick is not None:
                yield quick
                continue
        rec = parse_record(rec)
        if rec.error is not None:
            yield Rejected(rec.source, rec.line, rec.error.field, rec.error.reason, rec.raw)
            continue
        data = rename_fields(rec.data, columns or {})
        fmt = fixed or per_file.get(rec.source)
        if fmt is None:
            fmt = per_file[rec.source] = detect_format(set(data), source=rec.source)
        try:
            yield Example(rec.source, rec.line, fmt.kind, fmt.convert(data))
        except RecordError as err:
            yield reject(rec, err, rec.data)


_MESSAGES = get_format("messages")


def _plain_chat(rec: Record) -> Example | Rejected | None:
    """The common record, `{"messages": [...]}` of plain messages (role + string content) in the `messages`
    format, converted in one step: exactly what parse_record, rename_fields and the format's conversion
    give it (the same Example, or the same reject for a turn-order error), without their layers. None:
    not such a record, convert it the general way.

    Example: Record("a.jsonl", 3, raw='{"messages": [{"role": "user", "content": "Hi"}, ...]}')
    -> Example("a.jsonl", 3, "chat", {"messages": [...]})
    """
    got = messages_object(rec.raw)
    if got is None or not _all_plain(got[1]):
        return None
    d, messages = got
    try:
        _check_order(messages, "messages")
    except RecordError as err:
        return Rejected(rec.source, rec.line, err.field, err.reason, d)
    return Example(rec.source, rec.line, _MESSAGES.kind, {"messages": list(messages)})


__all__ = ["Example", "Rejected", "to_examples", "FormatError"]


def detect_formats(chunk: list[Record], known: dict[str, str], columns: Mapping[str, str] | None) -> list[Record]:
    """Record in `known` the format of each file first seen in `chunk`, from its first readable record.

    Runs in the reading process so every shard of a file uses the same format; returns the chunk with
    the records it had to parse replaced by their parsed form.
    Example: [Record("a.jsonl", 1, raw='{"question": "q", "answer": "a"}')] -> known["a.jsonl"] = "question-answer"
    """
    out = list(chunk)
    for i, rec in enumerate(out):
        if rec.source in known:
            continue
        out[i] = rec = parse_record(rec)
        if rec.data is not None:
            known[rec.source] = detect_format(set(rename_fields(rec.data, columns or {})), source=rec.source).name
    return out

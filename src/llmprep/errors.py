"""Errors a user can act on: each names where (file:line), what (field) and what was expected."""

from __future__ import annotations


class LlmprepError(Exception):
    """Base class for errors caused by user input or configuration."""


class RecordError(LlmprepError):
    """One input record is unusable. Carries its location so rejects can name it.

    Example: RecordError("missing field", source="a.jsonl", line=3, field="messages")
    -> "a.jsonl:3: field 'messages': missing field"
    """

    def __init__(self, reason: str, *, source: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.reason = reason
        self.source = source
        self.line = line
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"{self.source}:{self.line}: " if self.source is not None else ""
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}{what}{self.reason}"

    def located(self, source: str, line: int) -> "RecordError":
        """Return a copy that names the file and line (stages below records don't know them)."""
        return RecordError(self.reason, source=source, line=line, field=self.field)


class FormatError(LlmprepError):
    """A whole input does not match any supported format."""


class ConfigError(LlmprepError):
    """Bad option values, collected and reported together."""


class OutputError(ConfigError):
    """--out can't be written or must not be replaced: names the path and the cause."""

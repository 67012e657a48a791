"""Read input files into raw records, each tagged with its file and line.

Supported: .jsonl, .json (an array of objects), .csv, .parquet, .txt (one document per non-empty
line), and the gzip variant of each text format (.jsonl.gz, ...). Inputs may be files, directories
(read recursively) or globs; files are read in sorted order so runs are reproducible.

A record that can't be read (malformed JSON, non-UTF-8 bytes, not an object) is yielded as a
RecordError in its place, so the caller can reject it and go on: nothing is dropped silently.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from llmprep.errors import ConfigError, RecordError

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet", ".txt")


@dataclass
class Record:
    """One input record: where it came from and either its fields or why it can't be read."""

    source: str
    line: int  # 1-based line (jsonl/txt/csv) or item number (json array, parquet row)
    data: dict[str, Any] | None = None
    error: RecordError | None = None
    raw: str | None = None  # the undecodable text, kept for rejected.jsonl


def file_kind(path: Path) -> str | None:
    """Extension that decides the reader. Example: "a/b.jsonl.gz" -> ".jsonl"; "x.md" -> None"""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return next((ext for ext in EXTENSIONS if name.endswith(ext)), None)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, directories and globs -> sorted, de-duplicated list of readable files.

    Example: ["data/", "extra/*.jsonl"] -> [data/a.jsonl, data/sub/b.csv, extra/c.jsonl]
    """
    if not inputs:
        raise ConfigError("INPUT: no input given; pass files, directories or globs")
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and file_kind(f))
            if not files:
                raise ConfigError(f"INPUT {item!r}: directory holds no {'/'.join(EXTENSIONS)} files (or .gz)")
            found += files
        elif p.is_file():
            if not file_kind(p):
                raise ConfigError(f"INPUT {item!r}: unsupported file type; expected one of "
                                  f"{', '.join(EXTENSIONS)} (optionally .gz)")
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if file_kind(Path(m)))
            if not matches:
                raise ConfigError(f"INPUT {item!r}: no such file, directory or matching glob")
            found += matches
    seen: set[Path] = set()
    return [f for f in found if not (f.resolve() in seen or seen.add(f.resolve()))]


def _open_bytes(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def read_file(path: Path, *, lazy: bool = False, span: tuple[int, int, int] | None = None) -> Iterator[Record]:
    """Yield every record of one file. An empty file yields one rejected record (line 0).

    lazy=True leaves JSONL lines unparsed (see parse_record). `span` = (start byte, stop byte, line
    number at start) reads only those lines of an uncompressed .jsonl/.txt (a shard task's range).
    """
    kind = file_kind(path)
    if span is not None:
        lines = text_lines(path, span)
        yield from (_jsonl_records(path, lines, lazy) if kind == ".jsonl" else _txt_records(path, lines))
        return
    reader = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
              ".parquet": _read_parquet, ".txt": _read_txt}[kind]
    empty = True
    try:
        for rec in (reader(path, lazy) if kind == ".jsonl" else reader(path)):
            empty = False
            yield rec
    except (OSError, EOFError) as exc:  # truncated gzip, unreadable file
        empty = False
        yield Record(str(path), 0, error=RecordError(f"cannot read file: {exc}", source=str(path), line=0))
    if empty:
        yield Record(str(path), 0, error=RecordError("empty file: no records", source=str(path), line=0))


def read_records(paths: list[Path], *, lazy: bool = False) -> Iterator[Record]:
    """All records of all files, in order."""
    for path in paths:
        yield from read_file(path, lazy=lazy)


def _decode(raw: bytes, source: str, line: int) -> str | RecordError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RecordError(f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 4]!r})",
                           source=source, line=line)


def _as_object(value: Any, source: str, line: int, raw: str) -> Record:
    if isinstance(value, dict):
        return Record(source, line, data=value)
    err = RecordError(f"expected a JSON object, got {type(value).__name__}", source=source, line=line)
    return Record(source, line, error=err, raw=raw)


def text_lines(path: Path, span: tuple[int, int, int] | None = None) -> Iterator[tuple[int, str | Record]]:
    """(line number, text) for each non-blank line; a line that is not UTF-8 comes as a rejected Record.

    Blank lines are not records (in JSONL and text files alike they separate nothing). `span` =
    (start byte, stop byte, number of the line at start) reads that range only (always whole lines).
    """
    source = str(path)
    with _open_bytes(path) as fh:
        first = 1
        if span is not None:
            fh.seek(span[0])
            fh = io.BytesIO(fh.read(span[1] - span[0]))
            first = span[2]
        for n, raw in enumerate(fh, start=first):
            text = _decode(raw, source, n)
            if isinstance(text, RecordError):
                yield n, Record(source, n, error=text, raw=raw.decode("utf-8", "replace"))
            elif text.strip():
                yield n, text


def _read_jsonl(path: Path, lazy: bool = False) -> Iterator[Record]:
    return _jsonl_records(path, text_lines(path), lazy)


def _jsonl_records(path: Path, lines, lazy: bool) -> Iterator[Record]:
    for n, text in lines:
        if isinstance(text, Record):
            yield text
        elif lazy:
            yield Record(str(path), n, raw=text.rstrip("\n"))  # parsed later, by parse_record
        else:
            yield parse_record(Record(str(path), n, raw=text.rstrip("\n")))


def parse_record(rec: Record) -> Record:
    """Parse a lazily read JSONL record (raw text only) into its fields or a reject; others pass as is.

    Lazy reading lets worker processes do the JSON parsing instead of the process that reads files.
    Example: Record("a.jsonl", 3, raw='{"text": "hi"}') -> Record("a.jsonl", 3, data={"text": "hi"}, raw=...)
    """
    if rec.data is not None or rec.error is not None or rec.raw is None:
        return rec
    try:
        value = json.loads(rec.raw)
    except json.JSONDecodeError as exc:
        err = RecordError(f"malformed JSON: {exc.msg} at column {exc.colno}", source=rec.source, line=rec.line)
        return Record(rec.source, rec.line, error=err, raw=rec.raw)
    return _as_object(value, rec.source, rec.line, rec.raw)


def _read_json(path: Path) -> Iterator[Record]:
    source = str(path)
    with _open_bytes(path) as fh:
        raw = fh.read()
    text = _decode(raw, source, 1)
    if isinstance(text, RecordError):
        yield Record(source, 1, error=text)
        return
    if not text.strip():
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Record(source, exc.lineno, error=RecordError(f"malformed JSON: {exc.msg} at column {exc.colno}",
                                                           source=source, line=exc.lineno))
        return
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        yield Record(source, 1, error=RecordError(f"expected a JSON array of objects, got {type(value).__name__}",
                                                  source=source, line=1))
        return
    for n, item in enumerate(value, start=1):
        yield _as_object(item, source, n, json.dumps(item, ensure_ascii=False)[:10000])


def _read_csv(path: Path) -> Iterator[Record]:
    source = str(path)
    with _open_bytes(path) as fh:
        # surrogateescape keeps undecodable bytes visible per row, so one bad row is rejected, not the file
        text = fh.read().decode("utf-8", "surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for row in reader:
        line = reader.line_num
        if None in row:  # more cells than header columns
            n_head = len(reader.fieldnames or [])
            err = RecordError(f"row has {n_head + len(row[None])} cells, the header has {n_head}",
                              source=source, line=line)
            yield Record(source, line, error=err, raw=str(row))
            continue
        bad = next((k for k, v in row.items() if isinstance(v, str) and has_surrogate(v)), None)
        if bad is not None:
            err = RecordError("not valid UTF-8", source=source, line=line, field=bad)
            yield Record(source, line, error=err, raw=row[bad].encode("utf-8", "surrogateescape")
                         .decode("utf-8", "replace"))
            continue
        yield Record(source, line, data=dict(row))


def has_surrogate(text: str) -> bool:
    """True if text holds bytes that were not UTF-8 (decoded with surrogateescape)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _read_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    source = str(path)
    table = pq.read_table(path)
    for n, row in enumerate(table.to_pylist(), start=1):
        yield Record(source, n, data=row)


def _read_txt(path: Path) -> Iterator[Record]:
    return _txt_records(path, text_lines(path))


def _txt_records(path: Path, lines) -> Iterator[Record]:
    for n, text in lines:
        yield text if isinstance(text, Record) else Record(str(path), n, data={"text": text.rstrip("\r\n")})

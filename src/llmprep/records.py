"""Read input files into raw records, each tagged with its file and line.

Supported: .jsonl, .json (an array of objects), .csv, .parquet, .txt (one document per non-empty
line), and the gzip variant of each text format (.jsonl.gz, ...). Inputs may be files, directories
(read recursively) or globs; files are read in sorted order so runs are reproducible.

A record that can't be read (malformed JSON, non-UTF-8 bytes, not an object, a lone surrogate,
JSON nested deeper than MAX_JSON_DEPTH, a line longer than --max-record-bytes, a malformed CSV row)
is yielded as a RecordError in its place, so the caller can reject it and go on: nothing is dropped
silently. A file that can't be read at all (a corrupt .parquet or .gz) is one reject at line 0.
A UTF-8 byte-order mark (what Excel's "CSV UTF-8" writes) is dropped in every text format.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import math
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from llmprep.errors import ConfigError, RecordError

EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet", ".txt")
# --max-record-bytes: 8 MiB, above any chat or book. Preparing a record costs ~170 bytes of memory per byte
# at peak (tokenizing with offsets; measured 690 MB for a 4 MiB record), so this bounds one record to ~1.4 GB.
DEFAULT_MAX_RECORD_BYTES = 8 << 20
MAX_JSON_DEPTH = 100  # chat records nest ~6 levels; 10,000 levels would crash json/jinja with RecursionError
BOM = "\ufeff"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how a surrogate can get into a JSON string
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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
            files = _walk(p)
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


def _walk(root: Path) -> list[Path]:
    """Readable files under `root`, sorted, skipping llmprep's own outputs and temp dirs inside it
    (an --out inside an input folder must not become input on the next run)."""
    from llmprep.store import MARKER

    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (_LLMPREP_TEMP.fullmatch(d) or os.path.isfile(os.path.join(
            dirpath, d, MARKER)))]
        found += [Path(dirpath) / f for f in filenames if file_kind(Path(f))]
    return sorted(found)


_LLMPREP_TEMP = re.compile(r"\..+\.(?:tmp|old)-.+-\d+-[A-Za-z0-9_]+")


def open_input(path: Path) -> io.BufferedIOBase:
    """The bytes of an input file, decompressed when it is gzip (by its name)."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def file_key(path) -> tuple | None:
    """What tells a file's version apart: (absolute path, size, mtime, inode); None when it can't be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def relabel(rec: Record, source: str) -> Record:
    """The record as read from a copy, named by the file it copies. Example: /tmp/x/a.jsonl:3 -> s3://b/a.jsonl:3"""
    err = rec.error.located(source, rec.line) if rec.error is not None else None
    return Record(source, rec.line, rec.data, err, rec.raw)


# Decompressed copies of gzip inputs that this process's prepare made (executor.plan.split_compressed), by the
# version of the file they hold: reading such a file whole (prepare's doctor pass) reads its copy instead,
# a big .json array range by range, never parsed whole. A copy counts only while it is the file it was.
_COPIES: dict[tuple, tuple[str, tuple]] = {}


def register_copy(path, copy) -> None:
    """`copy` holds the decompressed bytes of the gzip file `path` (as both are now)."""
    key, copy_key = file_key(path), file_key(copy)
    if key is not None and copy_key is not None:
        _COPIES[key] = (str(copy), copy_key)
        while len(_COPIES) > 64:
            del _COPIES[next(iter(_COPIES))]


def _live_copy(path) -> str | None:
    entry = _COPIES.get(file_key(path))
    return entry[0] if entry is not None and file_key(entry[0]) == entry[1] else None


def read_file(path: Path, *, lazy: bool = False, span: tuple[int, int, int] | None = None,
              max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Record]:
    """Yield every record of one file. An empty file yields one rejected record (line 0).

    lazy=True leaves JSONL lines unparsed (see parse_record). `span` = (start byte, stop byte, line
    number at start) reads only those lines of an uncompressed .jsonl/.txt (a shard task's range); for a
    .json array the bytes of whole items (number of the first item, see jsonarray.py); for a .parquet file
    it is (first row group, stop row group, row number at start).
    A record longer than `max_record_bytes` (--max-record-bytes) is rejected with its size, read
    without holding it whole.
    """
    if span is None and path.name.lower().endswith(".gz") and (copy := _live_copy(path)) is not None:
        for rec in read_file(Path(copy), lazy=lazy, max_record_bytes=max_record_bytes):
            yield relabel(rec, str(path))
        return
    kind = file_kind(path)
    if span is not None and kind == ".parquet":
        yield from _read_parquet(path, max_record_bytes=max_record_bytes, row_groups=span)
        return
    if span is not None and kind == ".json":
        yield from _read_json_span(path, span, max_record_bytes=max_record_bytes)
        return
    if kind == ".json" and (cuts := _json_ranges(path)) is not None:  # an array read range by range, as its tasks do
        with open_input(path) as fh:
            for a, b, first in cuts:  # contiguous from byte 0, read in order (a .gz: one decompression)
                yield from _json_span_records(fh.read(b - a), str(path), first, max_record_bytes=max_record_bytes)
        return
    if span is not None:
        lines = text_lines(path, span, max_record_bytes=max_record_bytes)
        yield from (_jsonl_records(path, lines, lazy) if kind == ".jsonl" else _txt_records(path, lines))
        return
    reader = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
              ".parquet": _read_parquet, ".txt": _read_txt}[kind]
    empty = True
    try:
        for rec in reader(path, max_record_bytes=max_record_bytes, lazy=lazy):
            empty = False
            yield rec
    except (OSError, EOFError) as exc:  # truncated gzip, unreadable file
        empty = False
        yield Record(str(path), 0, error=RecordError(f"cannot read file: {exc}", source=str(path), line=0))
    if empty:
        yield Record(str(path), 0, error=RecordError("empty file: no records", source=str(path), line=0))


STREAM_JSON_BYTES = 32 << 20  # a .json file bigger than this is read range by range, never parsed whole
STREAM_JSON_ITEMS = 4096  # items per range then (one range's objects in memory at a time)


def _json_ranges(path: Path) -> list[tuple[int, int, int]] | None:
    """Ranges of whole items to read a .json file by instead of parsing it whole: a big array's (a big .gz's
    too, found in a first pass over its stream), or that of an array this process scanned already (prepare's
    plan: its doctor pass then parses the items it reads, not the whole file). None: read it whole."""
    from llmprep.jsonarray import known_cuts, scan_file

    if path.name.lower().endswith(".gz"):
        if not _big_gzip(path):
            return None
        try:
            return scan_file(path, STREAM_JSON_ITEMS)
        except (OSError, EOFError, zlib.error):  # not gzip, or truncated: the whole-file reader says so
            return None
    known, cuts = known_cuts(path, STREAM_JSON_ITEMS)
    return cuts if known or not _big_plain_file(path) else scan_file(path, STREAM_JSON_ITEMS)


def _big_gzip(path: Path) -> bool:
    """A gzip file that may hold more than STREAM_JSON_BYTES (compressed text: 8x smaller, or less)."""
    try:
        return path.name.lower().endswith(".gz") and path.stat().st_size > STREAM_JSON_BYTES // 8
    except OSError:
        return False  # the whole-file reader reports it


def _big_plain_file(path: Path) -> bool:
    try:
        return not path.name.lower().endswith(".gz") and path.stat().st_size > STREAM_JSON_BYTES
    except OSError:
        return False  # the whole-file reader reports it


def read_records(paths: list[Path], *, lazy: bool = False,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Record]:
    """All records of all files, in order."""
    for path in paths:
        yield from read_file(path, lazy=lazy, max_record_bytes=max_record_bytes)


def _decode(raw: bytes, source: str, line: int) -> str | RecordError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RecordError(f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 4]!r})",
                           source=source, line=line)


def too_big(size: int, limit: int, source: str, line: int, head: bytes | str = b"") -> Record:
    """The reject for a record over --max-record-bytes; keeps only its first 200 characters."""
    if isinstance(head, bytes):
        head = head[:200].decode("utf-8", "replace")
    err = RecordError(f"record is {size:,} bytes, over --max-record-bytes {limit:,}; raise --max-record-bytes "
                      "to read it", source=source, line=line)
    return Record(source, line, error=err, raw=head[:200] + "...")


def _rest_of_line(fh: io.BufferedIOBase, head: bytes) -> tuple[int, int]:
    """Read past the rest of a long line without keeping it; -> (the line's size, line break excluded;
    the bytes read after `head`)."""
    size, end = len(head), head
    while not end.endswith(b"\n") and (end := fh.readline(1 << 20)):
        size += len(end)
    return size - end.endswith(b"\n") - end.endswith(b"\r\n"), size - len(head)


def text_lines(path: Path, span: tuple[int, int, int] | None = None, *,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[tuple[int, str | Record]]:
    """(line number, text) for each non-blank line; a line that is not UTF-8, or longer than
    `max_record_bytes` (read in pieces, never held whole), comes as a rejected Record. A byte-order
    mark before line 1 is dropped.

    Blank lines are not records (in JSONL and text files alike they separate nothing). `span` =
    (start byte, stop byte, number of the line at start) reads that range only (always whole lines).
    """
    source = str(path)
    cap = max_record_bytes + 2  # a line of exactly the limit and its CR LF
    with open_input(path) as fh:
        n, left = 0, math.inf
        if span is not None:
            fh.seek(span[0])
            n, left = span[2] - 1, span[1] - span[0]
        while left > 0 and (raw := fh.readline(cap if left >= cap else left)):
            n += 1
            left -= len(raw)
            if len(raw) > max_record_bytes:
                size, more = _rest_of_line(fh, raw)
                left -= more
                if size > max_record_bytes:
                    yield n, too_big(size, max_record_bytes, source, n, raw)
                    continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                err = RecordError(f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 4]!r})",
                                  source=source, line=n)
                yield n, Record(source, n, error=err, raw=raw.decode("utf-8", "replace"))
                continue
            if n == 1 and text.startswith(BOM):
                text = text[1:]
            if text.strip():
                yield n, text


def _read_jsonl(path: Path, *, max_record_bytes: int, lazy: bool = False) -> Iterator[Record]:
    return _jsonl_records(path, text_lines(path, max_record_bytes=max_record_bytes), lazy)


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
    except RecursionError:
        return Record(rec.source, rec.line, error=_too_deep(rec.source, rec.line), raw=rec.raw[:200] + "...")
    return _as_object(value, rec.source, rec.line, rec.raw)


def messages_object(raw: str) -> tuple[dict, list] | None:
    """(the object, its `messages`) when the JSON line `raw` is an object with a non-empty `messages` list and
    no `tools`, and parse_record would accept it — given that its messages are plain (a role and a string
    each, so 3 levels deep: only a lone-surrogate escape can be wrong there), which the caller checks next;
    other fields get parse_record's full check. None: parse it the general way.

    Example: '{"messages": [{"role": "user", "content": "Hi"}]}' -> ({"messages": [...]}, [...])
    """
    try:
        d = _json_value(raw)
    except (ValueError, RecursionError):
        return None
    if type(d) is not dict or "tools" in d:
        return None
    messages = d.get("messages")
    if type(messages) is not list or not messages:
        return None
    if (len(d) == 1 and "\\u" in raw and _SURROGATE_ESCAPE.search(raw)) or (len(d) > 1 and json_problem(d, raw)):
        return None
    return d, messages


_json_value = json.JSONDecoder().decode  # json.loads(str) without its per-call keyword handling


def _too_deep(source: str, line: int, field: str | None = None) -> RecordError:
    return RecordError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep", source=source, line=line, field=field)


def json_problem(value: Any, raw: str, surrogates: bool | None = None) -> tuple[str | None, str] | None:
    """What makes parsed JSON unusable, as (field, reason), or None; `raw` is its JSON text.

    Two things parse but break later stages: a lone surrogate ("\\ud800" is valid JSON but no
    character: the tokenizer raises on it) and deep nesting (RecursionError in jinja, json.dumps,
    pickle). Only records whose text could hold them are walked, so ordinary records cost two scans.
    Example: {"messages": [{"content": "\\ud800"}]} -> ("messages[0].content", "lone surrogate U+D800 ...")
    """
    if surrogates is None:  # JSON text can only carry a surrogate as an escape
        surrogates = "\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None
    if not surrogates and raw.count("[") + raw.count("{") <= MAX_JSON_DEPTH:
        return None
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return where or None, f"JSON nested more than {MAX_JSON_DEPTH} levels deep"
        if isinstance(item, str):
            if surrogates and (m := _LONE_SURROGATE.search(item)):
                return where or None, (f"lone surrogate U+{ord(m.group()):04X} (escaped in the JSON): not a "
                                       "Unicode character, so it cannot be tokenized")
        elif isinstance(item, dict):
            for key in reversed(list(item)):
                if surrogates and isinstance(key, str) and _LONE_SURROGATE.search(key):
                    return where or None, "lone surrogate in a field name: not a Unicode character"
                stack.append((item[key], f"{where}.{key}" if where else str(key), depth + 1))
        elif isinstance(item, list):
            stack += [(x, f"{where}[{i}]", depth + 1) for i, x in reversed(list(enumerate(item)))]
    return None


def _as_object(value: Any, source: str, line: int, raw: str, surrogates: bool | None = None) -> Record:
    if not isinstance(value, dict):
        err = RecordError(f"expected a JSON object, got {type(value).__name__}", source=source, line=line)
        return Record(source, line, error=err, raw=raw)
    problem = json_problem(value, raw, surrogates)
    if problem is not None:
        err = RecordError(problem[1], source=source, line=line, field=problem[0])
        raw = raw if len(raw) < 100_000 else raw[:200] + "..."
        # A .json item's text is re-serialised (a lone surrogate in it is a real character): write it as
        # the JSON escape it came from, so rejected.jsonl and report.html can always encode it.
        return Record(source, line, error=err, raw=raw.encode("utf-8", "backslashreplace").decode("utf-8"))
    return Record(source, line, data=value)


def _read_json(path: Path, *, max_record_bytes: int, lazy: bool = False) -> Iterator[Record]:
    source = str(path)
    with open_input(path) as fh:
        raw = fh.read()
    text = _decode(raw, source, 1)
    if isinstance(text, RecordError):
        yield Record(source, 1, error=text)
        return
    if text.startswith(BOM):
        text = text[1:]
    if not text.strip():
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Record(source, exc.lineno, error=RecordError(f"malformed JSON: {exc.msg} at column {exc.colno}",
                                                           source=source, line=exc.lineno))
        return
    except RecursionError:
        yield Record(source, 1, error=_too_deep(source, 1))
        return
    surrogates = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        yield Record(source, 1, error=RecordError(f"expected a JSON array of objects, got {type(value).__name__}",
                                                  source=source, line=1))
        return
    yield from _json_items(value, source, 1, surrogates, max_record_bytes)


def _read_json_span(path: Path, span: tuple[int, int, int], *, max_record_bytes: int) -> Iterator[Record]:
    """The items of one byte range of a .json array (a shard task's; plan.py found whole items), numbered
    from span[2]. An item that does not parse is rejected alone, naming its number."""
    with open(path, "rb") as fh:
        fh.seek(span[0])
        raw = fh.read(span[1] - span[0])
    yield from _json_span_records(raw, str(path), span[2], max_record_bytes=max_record_bytes)


def _json_span_records(raw: bytes, source: str, first: int, *, max_record_bytes: int) -> Iterator[Record]:
    """_read_json_span on the range's bytes, its first item numbered `first`."""
    from llmprep.jsonarray import item_texts, span_body

    text = _decode(raw, source, first)
    if isinstance(text, RecordError):
        yield Record(source, first, error=text)
        return
    body = span_body(text, first == 1)
    surrogates = "\\u" in body and _SURROGATE_ESCAPE.search(body) is not None
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, RecursionError):  # find the bad items: parse them one by one
        for n, item_text in enumerate(item_texts(body), start=first):
            try:
                item = json.loads(item_text)
            except json.JSONDecodeError as exc:
                yield Record(source, n, error=RecordError(f"malformed JSON: {exc.msg} at column {exc.colno} of the "
                                                          "item", source=source, line=n), raw=item_text[:200])
                continue
            except RecursionError:
                yield Record(source, n, error=_too_deep(source, n))
                continue
            yield from _json_items([item], source, n, surrogates, max_record_bytes)
        return
    yield from _json_items(value, source, first, surrogates, max_record_bytes)


def _json_items(value: list, source: str, first: int, surrogates: bool, max_record_bytes: int) -> Iterator[Record]:
    """Records of parsed .json items numbered from `first`: objects, with the size limit and text checks."""
    for n, item in enumerate(value, start=first):
        try:
            item_text = json.dumps(item, ensure_ascii=False)
        except RecursionError:
            yield Record(source, n, error=_too_deep(source, n))
            continue
        size = _utf8_size(item_text, max_record_bytes)
        if size > max_record_bytes:
            yield too_big(size, max_record_bytes, source, n, item_text)
            continue
        yield _as_object(item, source, n, item_text[:10000] if len(item_text) > 10000 else item_text, surrogates)


def _utf8_size(text: str, limit: int) -> int:
    """Bytes of `text` in UTF-8, encoding only when the character count can't settle it against `limit`."""
    return len(text) if len(text) * 4 <= limit or len(text) > limit else len(text.encode("utf-8", "surrogatepass"))


def _read_csv(path: Path, *, max_record_bytes: int, lazy: bool = False) -> Iterator[Record]:
    """Rows of a CSV with a header line, streamed; each row is reported at the line where it starts
    (a quoted cell may span lines). Malformed quoting is a reject (csv's strict mode), not a silent
    merge of rows."""
    source = str(path)
    if csv.field_size_limit() < max_record_bytes:
        csv.field_size_limit(max_record_bytes)  # csv's default (128 KiB) would refuse long documents
    oversized: dict[int, int] = {}  # physical line -> its size, for lines over max_record_bytes
    with open_input(path) as raw_fh:
        # surrogateescape keeps undecodable bytes visible per row, so one bad row is rejected, not the file;
        # utf-8-sig drops the byte-order mark Excel writes (else the first column is "\ufeffinstruction")
        fh = io.TextIOWrapper(raw_fh, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(_capped_lines(fh, max_record_bytes, oversized), strict=True)
        header: list[str] | None = None
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                hint = "; raise --max-record-bytes to read it" if "field limit" in str(exc) else ""
                yield Record(source, start, error=RecordError(f"malformed CSV row: {exc}{hint}", source=source,
                                                              line=start), raw=None)
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            big = [oversized[n] for n in range(line, start) if n in oversized]
            if big:
                yield too_big(max(big), max_record_bytes, source, line, ",".join(row)[:200])
            elif not row:
                continue  # a blank line
            elif header is None:
                header = row
            else:
                yield _csv_record(header, row, source, line)


def _capped_lines(fh: io.TextIOBase, limit: int, oversized: dict[int, int]) -> Iterator[str]:
    """Lines of a text file for csv.reader; a line over `limit` characters is skipped whole (never held)
    and its size recorded, the reader gets a blank line in its place."""
    n = 0
    while line := fh.readline(limit + 2):  # + 2: room for a CR LF after `limit` characters
        n += 1
        if len(line) > limit and not line.endswith("\n"):
            size = len(line)
            while piece := fh.readline(1 << 20):
                size += len(piece)
                if piece.endswith("\n"):
                    break
            oversized[n] = size
            line = "\n"
        yield line


def _csv_record(header: list[str], row: list[str], source: str, line: int) -> Record:
    """One CSV row -> a Record (missing cells are None, as csv.DictReader gives), or a reject."""
    if len(row) > len(header):
        err = RecordError(f"row has {len(row)} cells, the header has {len(header)}", source=source, line=line)
        return Record(source, line, error=err, raw=str(row))
    data = dict(zip(header, row + [None] * (len(header) - len(row))))
    bad = next((k for k, v in data.items() if isinstance(v, str) and has_surrogate(v)), None)
    if bad is not None:
        err = RecordError("not valid UTF-8", source=source, line=line, field=bad)
        return Record(source, line, error=err, raw=data[bad].encode("utf-8", "surrogateescape")
                      .decode("utf-8", "replace"))
    return Record(source, line, data=data)


def has_surrogate(text: str) -> bool:
    """True if text holds bytes that were not UTF-8 (decoded with surrogateescape)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _read_parquet(path: Path, *, max_record_bytes: int, lazy: bool = False,
                  row_groups: tuple[int, int, int] | None = None, source: str | None = None) -> Iterator[Record]:
    """Rows of a Parquet file (a path or an open binary file), a batch at a time; `row_groups` = (first, stop,
    number of the first row) reads only those row groups (a shard task's). A file pyarrow can't read is one
    reject naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = source or str(path)
    n = row_groups[2] - 1 if row_groups else 0
    try:
        groups = range(row_groups[0], row_groups[1]) if row_groups else None
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024, row_groups=groups):
            if batch.nbytes <= max_record_bytes:  # no row of the batch can be over the limit
                for row in batch.to_pylist():
                    n += 1
                    yield Record(source, n, data=row)
                continue
            for i in range(batch.num_rows):
                n += 1
                one = batch.slice(i, 1)
                if one.nbytes > max_record_bytes:
                    yield too_big(one.nbytes, max_record_bytes, source, n, "")
                else:
                    yield Record(source, n, data=one.to_pylist()[0])
    except (pa.ArrowException, OSError, ValueError) as exc:
        after = f" after row {n}" if n else ""
        yield Record(source, 0, error=RecordError(f"cannot read the Parquet file{after}: {exc}", source=source, line=0))


def _read_txt(path: Path, *, max_record_bytes: int, lazy: bool = False) -> Iterator[Record]:
    return _txt_records(path, text_lines(path, max_record_bytes=max_record_bytes))


def _txt_records(path: Path, lines) -> Iterator[Record]:
    for n, text in lines:
        yield text if isinstance(text, Record) else Record(str(path), n, data={"text": text.rstrip("\r\n")})

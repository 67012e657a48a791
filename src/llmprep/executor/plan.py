"""Inputs -> shard tasks: which records each task reads, decided by the driver without holding them.

A plain `.jsonl` or `.txt` file is cut into byte ranges of SHARD_LINES lines (a cheap newline scan,
done together with the file's sha256 for the report), so one big file runs as many parallel tasks.
A `.json` array is cut into byte ranges of SHARD_LINES whole items (a structural scan, jsonarray.py).
A `.parquet` file with several row groups is cut into runs of row groups of about SHARD_LINES rows
(from its footer). A gzip `.jsonl.gz`/`.txt.gz`/`.json.gz` is decompressed once into the run's work dir and
cut like the plain file (split_compressed). Other files (`.csv`, `.csv.gz`, a parquet file of one row group,
a `.json` file that is not one plain array) are one task each, which cuts its records into shards of
SHARD_LINES. A shard never spans two files: adding, renaming or moving a file leaves every other file's
shards — and so their cache keys — unchanged.

Each file's format is detected here, from its first readable record, so every shard of a file uses
the same one (as the in-memory pipeline did); a local gzip file's by split_compressed, from its first range.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from itertools import islice, pairwise
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from llmprep.examples import detect_formats
from llmprep.executor import storage
from llmprep.jsonarray import ArrayScan, remember
from llmprep.records import (
    DEFAULT_MAX_RECORD_BYTES,
    Record,
    open_input,
    read_file,
    register_copy,
    relabel,
)

SCAN_BLOCK = 1 << 24
_TEXT = re.compile(rb"[^ \t\r\n]")  # a byte that is not JSON whitespace


@dataclass(frozen=True)
class ShardTask:
    """One unit of work. Example: ShardTask(7, "a.jsonl", 0, span=(1048576, 2097152, 4097))
    = the lines of a.jsonl from byte 1048576 to 2097152, the first being line 4097."""

    index: int  # task number, in input order
    path: str
    file_index: int
    # (start byte, stop byte, first line number); for .parquet (first row group, stop row group, first row
    # number); None: the whole file
    span: tuple[int, int, int] | None = None
    format: str | None = None  # the file's detected format (None: --format, or no readable record)
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES  # --max-record-bytes: a longer record is a reject
    source: int = 0  # --mix: index of the recipe source the file belongs to (its own format and columns)
    local: str | None = None  # a decompressed copy of `path` the span is read from (split_compressed)

    def records(self, lazy: bool = True) -> Iterator[Record]:
        if self.local is not None:  # the lines of a gzip file, from its copy, named by the file itself
            for rec in read_file(Path(self.local), lazy=lazy, span=self.span, max_record_bytes=self.max_record_bytes):
                yield relabel(rec, self.path)
            return
        if not storage.is_uri(self.path):
            yield from read_file(Path(self.path), lazy=lazy, span=self.span, max_record_bytes=self.max_record_bytes)
            return
        if self.span is not None and storage.kind(self.path) == ".parquet":  # its row groups, read by range
            from llmprep.records import _read_parquet

            with storage.open_bytes(self.path) as fh:
                yield from _read_parquet(fh, max_record_bytes=self.max_record_bytes, row_groups=self.span,
                                         source=self.path)
            return
        with storage.local_copy(self.path, self.span) as (local, span):
            for rec in read_file(local, lazy=lazy, span=span, max_record_bytes=self.max_record_bytes):
                yield relabel(rec, self.path)

    def shards(self, size: int) -> Iterator[list[Record]]:
        """The task's records in shards of at most `size` (a line-range task is one shard)."""
        it = self.records()
        while chunk := list(islice(it, size)):
            yield chunk


@dataclass
class FileScan:
    path: str
    sha256: str
    cuts: list[tuple[int, int, int]] | None  # byte ranges of a line file, row groups of a parquet file;
    #                                          None: one whole-file task


class LineCuts:
    """Byte ranges of `shard_lines` lines of a text fed block by block, in order.

    Example: feed(b"a\nb\nc\nd\ne\n") with shard_lines 2 -> cuts() [(0, 4, 1), (4, 8, 3), (8, 10, 5)]
    """

    def __init__(self, shard_lines: int):
        self.shard_lines = shard_lines
        self.starts, self.pos, self.lines, self.text = [0], 0, 0, False

    def feed(self, block: bytes) -> None:
        n = self.shard_lines
        # a regex stops at the first non-blank byte; np.isin compared every byte (0.1 s per 12 MB)
        self.text = self.text or _TEXT.search(block) is not None
        newlines = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
        first = (n - 1 - self.lines) % n  # newline #k*n ends a range
        for k in newlines[first::n] if first < len(newlines) else []:
            self.starts.append(self.pos + int(k) + 1)
        self.lines += len(newlines)
        self.pos += len(block)

    def cuts(self) -> list[tuple[int, int, int]] | None:
        """(start byte, stop byte, first line number) of each range; None when the text is all blank."""
        if not self.text:
            return None
        bounds = [s for s in self.starts if s < self.pos] + [self.pos]
        return [(a, b, 1 + i * self.shard_lines) for i, (a, b) in enumerate(pairwise(bounds))]


def scan(path: str | Path, shard_lines: int) -> FileScan:
    """sha256 of the file and, for an uncompressed .jsonl/.txt with text in it, byte ranges of
    `shard_lines` lines. Example: 5 lines, shard_lines 2 -> cuts (0, b2, 1), (b2, b4, 3), (b4, end, 5)"""
    path = str(path)
    h = hashlib.sha256()
    lines = LineCuts(shard_lines) if _line_file(path) and not path.lower().endswith(".gz") else None
    array = ArrayScan() if storage.kind(path) == ".json" and not path.lower().endswith(".gz") else None
    with storage.open_bytes(path) as fh:
        while block := fh.read(SCAN_BLOCK):
            h.update(block)
            if array is not None:
                array.feed(block)
            if lines is not None:
                lines.feed(block)
    if array is not None:
        if not storage.is_uri(path):
            remember(path, array)  # the doctor's pass reads the first items by range, without a second scan
        return FileScan(path, h.hexdigest(), array.cuts(shard_lines))
    if storage.kind(path) == ".parquet" and not path.lower().endswith(".gz"):
        return FileScan(path, h.hexdigest(), row_group_cuts(path, shard_lines))
    return FileScan(path, h.hexdigest(), lines.cuts() if lines is not None else None)


def _line_file(path: str) -> bool:
    return storage.kind(path) in (".jsonl", ".txt")


def _splits_after_decompressing(path: str) -> bool:
    """A file split_compressed considers: local gzip of lines or of one JSON array."""
    return path.lower().endswith(".gz") and storage.kind(path) in _SPLIT_GZ and not storage.is_uri(path)


def split_compressed(tasks: list[ShardTask], work_dir: str, shard_lines: int,
                     detect: Callable[[list[ShardTask]], str | None] | None = None) -> list[ShardTask]:
    """Tasks with each gzip file of lines or of one JSON array (.jsonl.gz, .txt.gz, .json.gz) decompressed once
    into `work_dir` and cut like the plain file (line ranges, ranges of whole items), so its shards run in
    parallel instead of as one task, and a big array is never parsed whole; its records keep their file name
    and line (item) numbers. A file that stays one task: one range long, all blank, not one plain array, not
    gzip or truncated (its one task rejects it, saying why), or remote (as is a URI `work_dir`: the copies
    stay local). Tasks are numbered again, in input order. The copies go with `work_dir`. `detect(tasks)`: the
    format of such a file planned with `defer_gzip` (None: --format), from the tasks it became.

    Example: [0: a.jsonl.gz, whole] -> [0: a.jsonl.gz lines 1-2048 (from work_dir/input-00000.jsonl), 1: ...]
    """
    out: list[ShardTask] = []
    for task in tasks:
        parts = [task]
        if task.span is None and _splits_after_decompressing(task.path) and not storage.is_uri(work_dir):
            copy = f"{work_dir}/input-{task.file_index:05d}{storage.kind(task.path)}"
            cuts = _decompress(task.path, copy, shard_lines)
            if cuts is not None and len(cuts) > 1:
                parts = [replace(task, span=span, local=copy) for span in cuts]
                register_copy(task.path, copy)  # the doctor's pass reads it too (records.read_file)
            else:
                Path(copy).unlink(missing_ok=True)
            if detect is not None and task.format is None:
                fmt = detect(parts)  # from the first range of the copy: not a pass over the whole file
                parts = [replace(t, format=fmt) for t in parts]
        out += [replace(t, index=len(out) + k) for k, t in enumerate(parts)]
    return out


_SPLIT_GZ = (".jsonl", ".txt", ".json")  # what a gzip file holds, to be cut after decompression


def _decompress(path: str, copy: str, shard_lines: int) -> list[tuple[int, int, int]] | None:
    """Write the decompressed bytes of `path` to `copy`; -> their ranges (lines; whole items of a .json array),
    or None when `path` cannot be read as gzip (the whole-file task reports that). A failed write (disk
    full) is raised: the caller's error."""
    import zlib

    cutter = ArrayScan() if storage.kind(path) == ".json" else LineCuts(shard_lines)
    with open_input(Path(path)) as src, open(copy, "wb") as dst:
        while True:
            try:
                block = src.read(SCAN_BLOCK)
            except (OSError, EOFError, zlib.error):  # not gzip, or truncated
                return None
            if not block:
                if isinstance(cutter, ArrayScan):
                    dst.flush()
                    remember(copy, cutter)  # read whole again (the doctor's pass), the copy goes by range
                    return cutter.cuts(shard_lines)
                return cutter.cuts()
            dst.write(block)
            cutter.feed(block)


def row_group_cuts(path: str, shard_lines: int) -> list[tuple[int, int, int]] | None:
    """Runs of consecutive row groups of at least `shard_lines` rows (the last may hold fewer), from the
    file's footer; None for one run (or a file pyarrow cannot read: its one task rejects it, naming why).
    Example: row groups of 600, 600, 600, 100 rows, shard_lines 1000 -> (0, 2, 1), (2, 4, 1201)"""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with storage.open_bytes(path) as fh:
            meta = pq.ParquetFile(fh).metadata
            sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    except (pa.ArrowException, OSError, ValueError):
        return None
    cuts, first, rows, row = [], 0, 0, 1
    for g, n in enumerate(sizes):
        rows += n
        if rows >= shard_lines or g == len(sizes) - 1:
            cuts.append((first, g + 1, row))
            first, row, rows = g + 1, row + rows, 0
    return cuts if len(cuts) > 1 else None


def detect_format(tasks: list[ShardTask], columns: Mapping[str, str]) -> str | None:
    """The format of a file (its tasks) from its first readable record (FormatError if it matches none)."""
    known: dict[str, str] = {}
    for task in tasks:
        for rec in task.records():
            detect_formats([rec], known, columns)
            if known:
                return known[task.path]
    return None


def plan(files: list[str], *, shard_lines: int, fmt: str | None, columns: Mapping[str, str], source: int = 0,
         first_task: int = 0, first_file: int = 0, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
         defer_gzip: bool = False) -> tuple[list[ShardTask], list[FileScan]]:
    """Every file scanned (sha256, line ranges) and its format detected -> tasks in input order.

    A --mix source is planned on its own (its format and columns) and numbered after the sources before
    it: `first_task`/`first_file` are the counts so far, `source` its index in the recipe. `defer_gzip`: a
    local gzip file split_compressed will cut is detected there, from its first range (read whole here, a
    big .json.gz would be decompressed and scanned to the end first).
    """
    tasks: list[ShardTask] = []
    scans = []
    for i, path in enumerate(files, start=first_file):
        s = scan(str(path), shard_lines)
        scans.append(s)
        mine = [ShardTask(first_task + len(tasks) + k, str(path), i, span, source=source,
                           max_record_bytes=max_record_bytes)
                for k, span in enumerate(s.cuts or [None])]
        detected = None if fmt or (defer_gzip and _splits_after_decompressing(str(path))) else \
            detect_format(mine, columns)
        tasks += [ShardTask(t.index, t.path, i, t.span, detected, max_record_bytes, source) for t in mine]
    return tasks, scans

"""A prepared directory as the checks and report.html read it: rows by split (Arrow, read with pyarrow
in chunks, never the whole split at once), report.json, rejected.jsonl, and the examples behind the
rows, read back from the inputs named in the report.

Kept rows are the input records minus the rejected and dropped ones, in input order, split exactly as
prepare split them (`split_indices` with the run's seed).

    DIR/dataset_dict.json  {"splits": ["train", "test"]}
    DIR/train/state.json   {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], ...}
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from llmprep.checks.registry import Skip
from llmprep.constants import IGNORE_INDEX
from llmprep.errors import ConfigError
from llmprep.mix.select import MIX_REASON

CHUNK_TOKENS = 1 << 20  # rows are read and checked about a million tokens at a time


@dataclass(frozen=True)
class Rows:
    """Consecutive rows of a split as flat arrays: row r is ids[offsets[r]:offsets[r + 1]]. The derived
    arrays (lengths, real, trained, real_lengths) are computed once: several checks read the same kept rows.

    `labels` is None for sentence pairs (one class label per row); `mask` is the attention mask
    (0 = padding).
    """

    ids: np.ndarray
    labels: np.ndarray | None
    mask: np.ndarray | None
    offsets: np.ndarray

    @classmethod
    def of(cls, table) -> "Rows":
        """A pyarrow Table (or RecordBatch) with list columns -> flat numpy arrays."""
        ids, offsets = _flat(table.column("input_ids"))
        names = set(table.column_names)
        labels = mask = None
        if "labels" in names and _is_list(table.column("labels")):
            labels = _flat(table.column("labels"))[0]
        if "attention_mask" in names:
            mask = _flat(table.column("attention_mask"))[0]
        return cls(ids, labels, mask, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @functools.cached_property
    def real(self) -> np.ndarray:
        """True at real (non-padding) tokens."""
        return np.ones(len(self.ids), bool) if self.mask is None else self.mask.astype(bool)

    @functools.cached_property
    def trained(self) -> np.ndarray:
        """True at trained tokens (label != IGNORE_INDEX). Example: labels [-100, 5, 6] -> [F, T, T]"""
        trained = self.labels != IGNORE_INDEX
        if self.unpadded and isinstance(trained, np.ndarray):
            return trained  # no padding: every token is real
        return trained & self.real

    @functools.cached_property
    def unpadded(self) -> bool:
        """No padding token in these rows (no mask, or a mask of ones: prepare writes one when it pads nothing)."""
        return self.mask is None or bool(self.mask.all())

    @functools.cached_property
    def real_lengths(self) -> np.ndarray:
        """Real (non-padding) tokens per row. Example: offsets [0, 3], mask [0, 1, 1] -> [2]"""
        return self.lengths if self.unpadded else self.per_row(self.real)

    def per_row(self, flags: np.ndarray) -> np.ndarray:
        """How many flagged tokens each row has. Example: offsets [0, 2, 3], flags [T, F, T] -> [1, 1]"""
        counts = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])  # exact, no float weights
        return counts[self.offsets[1:]] - counts[self.offsets[:-1]]


def _is_list(column) -> bool:
    import pyarrow as pa

    return pa.types.is_list(column.type) or pa.types.is_large_list(column.type)


def _flat(column) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow list column (chunked or not) -> (flat values, row offsets from 0)."""
    from llmprep.arrowcols import list_flat

    return list_flat(column)


def split_files(root: Path) -> dict[str, list[Path]]:
    """Arrow files of each split of a save_to_disk layout (a DatasetDict, or one Dataset as "train")."""
    if (root / "dataset_dict.json").is_file():
        names = json.loads((root / "dataset_dict.json").read_text())["splits"]
        return {name: _data_files(root / name) for name in names}
    if (root / "state.json").is_file():
        return {"train": _data_files(root)}
    raise ConfigError(f"DATA {str(root)!r}: not a dataset written by `llmprep prepare` (no dataset_dict.json "
                      "or state.json); expected such a directory or raw input files")


def _data_files(split: Path) -> list[Path]:
    state = json.loads((split / "state.json").read_text())
    return [split / f["filename"] for f in state["_data_files"]]


ROWS_KEPT = 64 << 20  # Arrow bytes of a split read once and kept for all row checks


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return ROWS_KEPT + 1  # unreadable here: stream it (read_chunks reports the error)


def read_chunks(files: list[Path], tokens: int = CHUNK_TOKENS) -> Iterator[tuple[int, Rows]]:
    """(index of the first row, Rows) for consecutive groups of record batches of about `tokens` tokens."""
    import pyarrow as pa

    start, pending, size = 0, [], 0
    for path in files:
        # read, not memory-mapped: every page of a mapped file stays resident (and counted) until it is
        # closed, so one 500 MB output file added 500 MB to prepare's peak; a read batch is freed with its chunk
        with pa.OSFile(str(path)) as source:
            for batch in pa.ipc.open_stream(source):
                pending.append(batch)
                size += len(batch.column("input_ids").flatten())
                if size >= tokens:
                    rows = Rows.of(pa.Table.from_batches(pending))
                    yield start, rows
                    start, pending, size = start + len(rows), [], 0
    if pending:
        yield start, Rows.of(pa.Table.from_batches(pending))


def schema_of(files: list[Path]):
    import pyarrow as pa

    with pa.OSFile(str(files[0])) as source:
        return pa.ipc.open_stream(source).schema


@dataclass(frozen=True)
class Item:
    """One kept example: its split, "file:line", kind (chat/text/pair) and data ({"messages": [...]})."""

    split: str
    where: str
    kind: str
    data: dict


class Data:
    """Prepared rows by split, their report, and (read back from the inputs) the examples behind them."""

    def __init__(self, splits: dict[str, list[Path]] | None, report: dict, *, inputs: list[str] | None,
                 excluded: list[dict], inputs_error: str | None = None, rows_error: str | None = None):
        self.splits = dict(splits or {})
        self.report = report
        self.inputs = inputs
        self.excluded = {(e["source"], e["line"]) for e in excluded}
        self.dropped = [e for e in excluded if e.get("dropped") and not e["reason"].startswith(MIX_REASON)]
        # rows the mix left out: drawn into the split like every clean row, but not in the output
        self.mixed_out = {(e["source"], e["line"]) for e in excluded
                          if e.get("dropped") and e["reason"].startswith(MIX_REASON)}
        self.inputs_error = inputs_error
        self.rows_error = rows_error
        # The example checks (duplicates, leakage, control text) read at most this many examples; None: all.
        # prepare sets it (its checks must stay cheap); `llmprep doctor DIR` reads them all.
        self.scan_limit: int | None = None
        self._kept_rows: dict[str, list[tuple[int, Rows]]] = {}

    # --- rows -------------------------------------------------------------------------------
    def chunks(self, split: str) -> Iterator[tuple[int, Rows]]:
        """(first row index, Rows) of a split, about CHUNK_TOKENS tokens at a time. A split whose files
        total at most ROWS_KEPT bytes is read once and kept (three row checks read every row); a bigger
        one is streamed again for each check, so memory stays bounded."""
        kept = self._kept_rows.get(split)
        if kept is not None:
            return iter(kept)
        files = self.splits[split]
        if sum(_size(f) for f in files) > ROWS_KEPT:
            return read_chunks(files)
        self._kept_rows[split] = list(read_chunks(files))
        return iter(self._kept_rows[split])

    def require_rows(self) -> list[str]:
        """Split names, or Skip when there are no prepared rows (raw data that could not be prepared)."""
        if self.rows_error or not self.splits:
            raise Skip(self.rows_error or "no prepared rows")
        return list(self.splits)

    def has_token_labels(self) -> bool:
        """Rows with per-token labels (not sentence pairs' class labels)."""
        import pyarrow as pa

        split = self.require_rows()[0]
        schema = schema_of(self.splits[split])
        return "labels" in schema.names and (pa.types.is_list(schema.field("labels").type)
                                             or pa.types.is_large_list(schema.field("labels").type))

    @property
    def options(self) -> dict:
        return self.report.get("options") or {}

    @property
    def kinds(self) -> dict:
        """Examples per kind (chat/text/pair). Example: {"chat": 2492}; --stream runs hold documents only."""
        if self.report.get("mode") == "stream":
            return {"text": self.report.get("documents", 0)}
        return self.report.get("examples") or {}

    def deduplicated(self) -> dict:
        """report.json's "dedup" when prepare removed what the duplicates check looks for (text compared with
        whitespace collapsed and case folded), else {}. A --dedup near at another threshold or n-gram length
        counts as exact: the doctor still compares near duplicates itself.

        Example: {"mode": "exact", "removed": 1129, "compared": "same text (whitespace collapsed, case folded)"}
        """
        d = dict(self.report.get("dedup") or {})
        opts = self.options
        if d.get("mode") not in ("exact", "near") or opts.get("dedup_keep_case") or opts.get("dedup_keep_whitespace"):
            return {}
        if d["mode"] == "near" and (opts.get("dedup_threshold", 0.8) > 0.8 or opts.get("dedup_ngram", 5) != 5):
            d["mode"] = "exact"
        return d

    @property
    def wrapped(self) -> bool:
        """Rows are --pack wrap blocks: documents cut at block boundaries by design."""
        return self.options.get("pack") == "wrap" or self.report.get("mode") == "stream"

    @functools.cached_property
    def padded(self) -> bool:
        """Rows padded on disk (--padding longest/max-length, or padding left by packing)."""
        if self.options.get("padding", "none") != "none":
            return True
        return any(not rows.unpadded
                   for split in self.require_rows() for _, rows in self.chunks(split))

    # --- examples ---------------------------------------------------------------------------
    def items(self) -> Iterator[Item]:
        """The kept examples in row order (input order), each tagged with its split.

        Raises Skip when the inputs are gone or changed, or no longer give the kept count.
        """
        if self.inputs_error:
            raise Skip(self.inputs_error)
        from llmprep.examples import Example, to_examples
        from llmprep.prepare import split_indices
        from llmprep.records import read_records

        kept = (self.report.get("records") or {}).get("kept")  # None: raw inputs, every example is "train"
        # the split was drawn over the clean rows (after dedup and decontamination), before the mix left some out
        n = int(kept) + len(self.mixed_out) if kept is not None else None
        opts = self.options
        test = np.zeros(n or 0, dtype=bool)
        if n:
            test[split_indices(n, opts.get("test_size") or 0, opts.get("seed", 42))[1]] = True
        k = 0
        for x in self._examples(read_records, to_examples):
            key = (x.source, x.line)
            if not isinstance(x, Example) or (key in self.excluded and key not in self.mixed_out):
                continue
            if n is not None and k >= n:
                break
            k += 1
            if key not in self.mixed_out:
                yield Item("test" if n and test[k - 1] else "train", f"{x.source}:{x.line}", x.kind, x.data)
        if n is not None and k != n:
            raise Skip(f"the inputs give {k - len(self.mixed_out):,} kept examples but the data has "
                       f"{n - len(self.mixed_out):,}: they changed since prepare")

    def _examples(self, read_records, to_examples):
        """Examples and rejects of every input in order, each file with its format and columns (a --mix
        source's own, from report.json's inputs)."""
        opts = self.options
        entries = {str(e["path"]): e for e in self.report.get("inputs") or [] if isinstance(e, dict)}
        for p in self.inputs:
            entry = entries.get(str(p), {})
            yield from to_examples(read_records([Path(p)], lazy=True), format=entry.get("format", opts.get("format")),
                                   columns=entry.get("columns", opts.get("columns")) or {})

    def first_items(self, n: int, kind: str | None = None) -> list[Item]:
        """Up to n items (of one kind), stopping early; [] when the examples can't be read."""
        out: list[Item] = []
        try:
            for item in self.items():
                if kind is None or item.kind == kind:
                    out.append(item)
                    if len(out) >= n:
                        break
        except Skip:
            pass
        return out

    # --- constructors -----------------------------------------------------------------------
    @classmethod
    def from_dir(cls, path: str | Path, *, verify_inputs: bool = True) -> "Data":
        """A directory written by `llmprep prepare` (or any save_to_disk dataset with input_ids).

        `verify_inputs`: check the inputs named in report.json against their sha256 (prepare itself,
        which just read them, skips that).
        """
        path = Path(path)
        splits = split_files(path)
        for name, files in splits.items():
            names = schema_of(files).names if files else []
            if "input_ids" not in names:
                raise ConfigError(f"DATA {str(path)!r}: split {name!r} has no input_ids column "
                                  f"(columns: {', '.join(names) or 'none'})")
        report = _read_json(path / "report.json")
        excluded = _read_jsonl(path / "rejected.jsonl")
        inputs, error = _inputs_of(report, path, verify=verify_inputs)
        if report is None:
            report = {"options": {}}
        return cls(splits, report, inputs=inputs, excluded=excluded, inputs_error=error)

    @classmethod
    def from_files(cls, files: list, *, rows_error: str) -> "Data":
        """Raw inputs that were not prepared (e.g. chats without a template): examples only, all "train"."""
        return cls(None, {"records": {}, "options": {}}, inputs=[str(f) for f in files], excluded=[],
                   rows_error=rows_error)


def tokenizer_entry(report: dict | None) -> dict:
    """report.json's tokenizer as a dict. Example: {"name": "smollm2", "fingerprint": ...}; a --stream
    report's bare "path/to/tok" -> {"name": "path/to/tok"}"""
    value = (report or {}).get("tokenizer")
    return value if isinstance(value, dict) else {"name": value} if value else {}


def excluded_of(rejected, dropped) -> list[dict]:
    """Rejected and dropped records as rejected.jsonl holds them. Example: [Rejected(a.jsonl, 3, ...)] -> [{...}]"""
    return [r.to_json() for r in rejected] + [{**r.to_json(), "dropped": True} for r in dropped]


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _inputs_of(report: dict | None, path: Path, *, verify: bool) -> tuple[list[str] | None, str | None]:
    """The input files a prepared dir came from, checked against their recorded sha256."""
    if not report or not report.get("inputs"):
        return None, f"{path}/report.json names no inputs, so the examples behind the rows are unknown"
    from llmprep.prepare import _sha256  # the same digest prepare recorded

    files = []
    for entry in report["inputs"]:
        entry = entry if isinstance(entry, dict) else {"path": entry}  # --stream reports list bare paths
        p = Path(entry["path"])
        if not p.is_file():
            return None, (f"input {entry['path']!r} of the prepared data is gone (paths are relative to where "
                          "prepare ran)")
        if verify and entry.get("sha256") and _sha256(p) != entry["sha256"]:
            return None, f"input {entry['path']!r} changed since prepare (sha256 differs)"
        files.append(str(p))
    return files, None

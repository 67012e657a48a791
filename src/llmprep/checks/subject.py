"""What the doctor examines: a tokenizer, its chat template, optionally a model and data.

Data is either a directory written by `llmprep prepare` (rows + report.json + rejected.jsonl) or the
same thing still in memory at the end of a prepare run. The examples behind the rows are read back
from the inputs named in the report: kept rows are the input records minus the rejected and dropped
ones, in input order, split exactly as prepare split them (`split_indices` with the run's seed).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from llmprep.checks.registry import Skip
from llmprep.constants import IGNORE_INDEX
from llmprep.errors import ConfigError


@dataclass
class Rows:
    """One split's rows as flat arrays: row r is ids[offsets[r]:offsets[r + 1]].

    `labels` is None for sentence pairs (one class label per row); `mask` is the attention mask
    (0 = padding); `positions` the position_ids of packed rows, when present.
    """

    ids: np.ndarray
    labels: np.ndarray | None
    mask: np.ndarray | None
    offsets: np.ndarray
    positions: np.ndarray | None = None

    @classmethod
    def of(cls, dataset) -> "Rows":
        """A `datasets.Dataset` with list columns -> flat numpy arrays (no per-row Python lists)."""
        table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
        ids, offsets = _flat(table.column("input_ids"))
        cols = set(table.column_names)
        labels = mask = positions = None
        if "labels" in cols and _is_list(table.column("labels")):
            labels = _flat(table.column("labels"))[0]
        if "attention_mask" in cols:
            mask = _flat(table.column("attention_mask"))[0]
        if "position_ids" in cols:
            positions = _flat(table.column("position_ids"))[0]
        return cls(ids, labels, mask, offsets, positions)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def real(self) -> np.ndarray:
        """True at real (non-padding) tokens."""
        return np.ones(len(self.ids), bool) if self.mask is None else self.mask.astype(bool)

    @property
    def trained(self) -> np.ndarray:
        """True at trained tokens (label != IGNORE_INDEX). Example: labels [-100, 5, 6] -> [F, T, T]"""
        return (self.labels != IGNORE_INDEX) & self.real

    @property
    def row_of(self) -> np.ndarray:
        """Row index of every flat position. Example: offsets [0, 2, 3] -> [0, 0, 1]"""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))


def _is_list(column) -> bool:
    import pyarrow as pa

    return pa.types.is_list(column.type) or pa.types.is_large_list(column.type)


def _flat(column) -> tuple[np.ndarray, np.ndarray]:
    """A chunked Arrow list column -> (flat values, row offsets from 0)."""
    arr = column.combine_chunks()
    if hasattr(arr, "chunks"):  # pyarrow may hand back a ChunkedArray of one chunk
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    values = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.int64)
    return values, offsets - offsets[0]


@dataclass(frozen=True)
class Item:
    """One kept example: its split, "file:line", kind (chat/text/pair) and data ({"messages": [...]})."""

    split: str
    where: str
    kind: str
    data: dict


class Data:
    """Prepared rows by split, their report, and (read back from the inputs) the examples behind them."""

    def __init__(self, splits: Mapping[str, Any] | None, report: dict, *, inputs: list[str] | None,
                 excluded: list[dict], inputs_error: str | None = None, rows_error: str | None = None):
        self.splits = dict(splits or {})
        self.report = report
        self.inputs = inputs
        self.excluded = {(e["source"], e["line"]) for e in excluded}
        self.dropped = [e for e in excluded if e.get("dropped")]
        self.inputs_error = inputs_error
        self.rows_error = rows_error
        self._rows: dict[str, Rows] = {}

    # --- rows -------------------------------------------------------------------------------
    def rows(self, split: str) -> Rows:
        if split not in self._rows:
            self._rows[split] = Rows.of(self.splits[split])
        return self._rows[split]

    def require_rows(self) -> list[str]:
        """Split names, or Skip when there are no prepared rows (raw data that could not be prepared)."""
        if self.rows_error or not self.splits:
            raise Skip(self.rows_error or "no prepared rows")
        return list(self.splits)

    @property
    def options(self) -> dict:
        return self.report.get("options") or {}

    @property
    def kinds(self) -> dict:
        return self.report.get("examples") or {}

    @property
    def padded(self) -> bool:
        """Rows padded on disk (--padding longest/max-length, or padding left by packing)."""
        if self.options.get("padding", "none") != "none":
            return True
        return any(self.rows(s).mask is not None and not self.rows(s).real.all() for s in self.splits)

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
        n = int(kept) if kept is not None else None
        opts = self.options
        test = np.zeros(n or 0, dtype=bool)
        if n:
            test[split_indices(n, opts.get("test_size") or 0, opts.get("seed", 42))[1]] = True
        k = 0
        for x in to_examples(read_records([Path(p) for p in self.inputs], lazy=True), format=opts.get("format"),
                             columns=opts.get("columns") or {}):
            if not isinstance(x, Example) or (x.source, x.line) in self.excluded:
                continue
            if n is not None and k >= n:
                break
            yield Item("test" if n and test[k] else "train", f"{x.source}:{x.line}", x.kind, x.data)
            k += 1
        if n is not None and k != n:
            raise Skip(f"the inputs give {k:,} kept examples but the data has {n:,}: they changed since prepare")

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
    def from_run(cls, splits, report: dict, files: list, excluded: list[dict]) -> "Data":
        """The data of a prepare run still in memory (`excluded`: its rejected + dropped records)."""
        return cls(splits, report, inputs=[str(f) for f in files], excluded=excluded)

    @classmethod
    def from_dir(cls, path: str | Path) -> "Data":
        """A directory written by `llmprep prepare` (or any `save_to_disk` DatasetDict with input_ids)."""
        from datasets import load_from_disk

        path = Path(path)
        try:
            splits = load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise ConfigError(f"DATA {str(path)!r}: not a dataset written by `llmprep prepare` ({exc})") from exc
        if not hasattr(splits, "keys"):
            splits = {"train": splits}
        for name, ds in splits.items():
            if "input_ids" not in ds.column_names:
                raise ConfigError(f"DATA {str(path)!r}: split {name!r} has no input_ids column "
                                  f"(columns: {', '.join(ds.column_names)})")
        report = _read_json(path / "report.json")
        excluded = _read_jsonl(path / "rejected.jsonl")
        inputs, error = _inputs_of(report, path)
        if report is None:
            report = {"examples": {"chat": sum(len(d) for d in splits.values())}, "options": {}}
        return cls(splits, report, inputs=inputs, excluded=excluded, inputs_error=error)

    @classmethod
    def from_files(cls, files: list, *, rows_error: str) -> "Data":
        """Raw inputs that were not prepared (e.g. chats without a template): examples only, all "train"."""
        return cls(None, {"records": {}, "options": {}}, inputs=[str(f) for f in files], excluded=[],
                   rows_error=rows_error)


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


def _inputs_of(report: dict | None, path: Path) -> tuple[list[str] | None, str | None]:
    """The input files a prepared dir came from, checked against their recorded sha256."""
    if not report or not report.get("inputs"):
        return None, f"{path}/report.json names no inputs, so the examples behind the rows are unknown"
    files = []
    for entry in report["inputs"]:
        p = Path(entry["path"])
        if not p.is_file():
            return None, (f"input {entry['path']!r} of the prepared data is gone (paths are relative to where "
                          "prepare ran)")
        if entry.get("sha256") and _sha256(p) != entry["sha256"]:
            return None, f"input {entry['path']!r} changed since prepare (sha256 differs)"
        files.append(str(p))
    return files, None


@functools.lru_cache(maxsize=64)
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Subject:
    """Tokenizer + template (+ model) (+ data): everything a check may look at."""

    tokenizer: Any
    template: str | None = None  # jinja source; None when none could be resolved
    template_name: str | None = None
    template_error: str | None = None  # why there is no template
    tokenizer_dir: Path | None = None  # where the tokenizer's files are (slow-fast looks for tokenizer.model)
    model: Any = None  # llmprep.checks.model.ModelInfo
    data: Data | None = None
    notes: dict = field(default_factory=dict)

    @classmethod
    def build(cls, tokenizer, *, template: str | None = "auto", tokenizer_dir: str | Path | None = None,
              model=None, data: Data | None = None) -> "Subject":
        """Resolve the template the way prepare does (--template auto/name/path). A tokenizer without a
        template is a finding (no-chat-template) when the data holds chats; a bad --template is an error."""
        from llmprep.render import compile_template, resolve_template

        name = source = error = None
        try:
            name, source = resolve_template(template, tokenizer)
        except ConfigError as exc:
            if template not in (None, "auto"):
                raise
            error = str(exc)
        if source is not None:
            compile_template(source)  # a template that does not compile: one clear error now
        return cls(tokenizer, source, name, error, Path(tokenizer_dir) if tokenizer_dir else None, model, data)

    @functools.cached_property
    def renderer(self):
        """The ChatRenderer prepare would use, or None without a template."""
        from llmprep.render import ChatRenderer

        return ChatRenderer.for_tokenizer(self.template, self.tokenizer) if self.template else None

    @functools.cached_property
    def probe(self):
        from llmprep.checks.probe import probe_template

        return probe_template(self)

    @functools.cached_property
    def scan(self):
        from llmprep.checks.dedup import scan_data

        return scan_data(self)

    def require_data(self) -> Data:
        if self.data is None:
            raise Skip("no DATA given")
        return self.data

    def require_model(self):
        if self.model is None:
            raise Skip("no --model given")
        return self.model

"""Benchmark decontamination: remove training rows that share an n-gram with an evaluation item.

    main:   benchmark files -> items (all string fields of a record, or one line of text) -> n-gram hashes
            -> BenchmarkIndex (sorted uint64 hashes -> item), travels to the workers once
    worker: row text -> the same n-grams -> BenchmarkIndex.match -> item id or -1

N-grams are 13 words (GPT-3's and datatrove's choice) and, in scripts written without spaces (Han, kana,
Thai...), 13 characters: measured on fortunes-zh against unrelated Chinese text (chatterbot-corpus), shared
character n-grams stop at 8 (5-6 still hit stock phrases), and exam boilerplate ("下列说法中正确的是",
9) or a five-character couplet (10) stays below 13, while a seven-character couplet (14) is caught. Text is
case folded and punctuation dropped first. An item too short for one n-gram is matched whole (all its
units, in order) when it has at least 8 units; shorter items cannot be matched without false positives
and are counted as `too_short`. (An item long enough whose scripts alternate so often that no run holds
an n-gram is matched by its 13-unit windows across runs.) Rows are searched at at most 7 lengths.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmprep.errors import ConfigError
from llmprep.mix.text import UnitBatch, ngram_hashes, window_hashes
from llmprep.records import expand_inputs, read_file

NGRAM_WORDS = 13
NGRAM_CHARS = 13
MIN_ITEM_UNITS = 8


@dataclass(frozen=True)
class DecontConfig:
    """--decontaminate FILES and its n-gram lengths."""

    files: tuple[str, ...] = ()
    ngram_words: int = NGRAM_WORDS
    ngram_chars: int = NGRAM_CHARS
    min_item_units: int = MIN_ITEM_UNITS

    def check(self) -> None:
        problems = [f"--decontaminate-{name.replace('_', '-')} {value!r}: expected a positive integer"
                    for name, value in (("ngram_words", self.ngram_words), ("ngram_chars", self.ngram_chars),
                                        ("min_item_units", self.min_item_units))
                    if not isinstance(value, int) or value < 1]
        if problems:
            raise ConfigError("; ".join(problems))


def item_text(data: dict[str, Any]) -> str:
    """Every string of a benchmark record, nested ones included, in field order, one per line.

    Example: {"question": "2+2?", "choices": ["3", "4"], "answer": 1} -> "2+2?\\n3\\n4"
    """
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(data)
    return "\n".join(out)


def content_key(texts: list[str], min_item_units: int = MIN_ITEM_UNITS) -> str:
    """What the matches depend on besides the n-gram lengths: the items' text, in order (part of the shard
    cache key, as --decontaminate). Example: the same items in a renamed file -> the same key; one item edited
    -> another."""
    h = hashlib.sha256(str(min_item_units).encode())
    for t in texts:
        h.update(b"\x00" + t.encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


@dataclass
class BenchmarkIndex:
    """N-gram hashes of every benchmark item, sorted, each with the first item (in file order) that has it."""

    cfg: DecontConfig
    hashes: np.ndarray  # sorted, unique uint64
    item_of: np.ndarray  # int32 item id of each hash
    whole_lengths: tuple[int, ...]  # window lengths rows are also searched at (items without a run n-gram)
    where: list[str]  # "file:line" of each item
    file_of: np.ndarray  # int32 file index of each item
    files: list[str]
    stats: list[dict] = field(default_factory=list)  # per file: items, too_short
    content: str = ""  # the items' text, in order (not the files' names): see content_key
    _filter: np.ndarray | None = field(default=None, repr=False)  # bitmap over the hashes' low bits

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_filter": None}  # rebuilt in each worker rather than shipped

    def _may_hold(self, flat: np.ndarray) -> np.ndarray:
        """Bitmap prefilter: False means the hash is surely not in the index (most row n-grams), so only a
        few percent go through the binary search."""
        if self._filter is None:
            bits = int(min(max(1 << 16, 1 << int(np.ceil(np.log2(32 * len(self.hashes) + 1)))), 1 << 30))
            self._filter = np.zeros(bits // 8, dtype=np.uint8)
            slot = self.hashes & np.uint64(bits - 1)
            np.bitwise_or.at(self._filter, (slot >> np.uint64(3)).astype(np.int64),
                             (np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8)))
        slot = flat & np.uint64(len(self._filter) * 8 - 1)
        byte = self._filter[(slot >> np.uint64(3)).astype(np.int64)]
        return (byte >> (slot & np.uint64(7)).astype(np.uint8)) & 1 == 1

    @classmethod
    def build(cls, cfg: DecontConfig) -> "BenchmarkIndex":
        """Read the benchmark files (JSONL, JSON, CSV, Parquet, or text: one item per line) and index them.

        An unreadable item stops the run: silently skipping it would let its leak through.
        """
        cfg.check()
        try:
            paths = expand_inputs(list(cfg.files))
        except ConfigError as exc:
            raise ConfigError(f"--decontaminate: {exc}") from None
        texts, where, file_of, files = [], [], [], []
        for k, path in enumerate(paths):
            files.append(str(path))
            for rec in read_file(Path(path)):
                if rec.error is not None:
                    raise ConfigError(f"--decontaminate {rec.error.describe()}; fix or remove that item")
                texts.append(item_text(rec.data))
                where.append(f"{path}:{rec.line}")
                file_of.append(k)
        file_of = np.asarray(file_of, dtype=np.int32)
        ub = UnitBatch.of(texts)
        flat, offsets = ngram_hashes(ub, cfg.ngram_words, cfg.ngram_chars, short_runs=False)
        item_ids = [np.repeat(np.arange(len(texts), dtype=np.int32), np.diff(offsets))]
        hashes = [flat]
        n_units = np.diff(ub.offsets)
        no_ngram = np.diff(offsets) == 0
        longest = max(cfg.ngram_words, cfg.ngram_chars)
        # Too short for an n-gram: the whole item is one window. Long enough but no run reaches n (scripts
        # mixed unit by unit): its windows of `longest` units across runs. Rows are searched at these lengths.
        whole = np.flatnonzero(no_ngram & (n_units >= cfg.min_item_units) & (n_units < longest))
        mixed = no_ngram & (n_units >= longest)
        lengths = set(n_units[whole].tolist()) | ({longest} if mixed.any() else set())
        for length in sorted(lengths):
            wflat, woff = window_hashes(ub, length)
            ids = whole[n_units[whole] == length]
            hashes.append(wflat[woff[ids]])  # an item of exactly `length` units has one window: itself
            item_ids.append(ids.astype(np.int32))
            if length == longest:
                rows = np.repeat(np.arange(len(texts), dtype=np.int32), np.diff(woff))
                hashes.append(wflat[mixed[rows]])
                item_ids.append(rows[mixed[rows]])
        too_short = no_ngram & (n_units < cfg.min_item_units)
        h, it = np.concatenate(hashes), np.concatenate(item_ids)
        order = np.lexsort((it, h))
        h, it = h[order], it[order]
        first = np.r_[True, h[1:] != h[:-1]] if len(h) else np.zeros(0, dtype=bool)
        stats = [{"file": f, "items": int((file_of == k).sum()), "too_short": int(too_short[file_of == k].sum())}
                 for k, f in enumerate(files)]
        return cls(cfg, h[first], it[first], tuple(sorted(int(x) for x in lengths)), where, file_of, files, stats,
                   content_key(texts, cfg.min_item_units))

    def match(self, texts: list[str] | UnitBatch) -> np.ndarray:
        """For each text, the id of the first benchmark item (in file order) it shares an n-gram with, or -1.

        Example: index of ["the quick brown fox jumps over the lazy dog again and again today ok"];
        match(["He said the quick brown fox jumps over the lazy dog again and again today ok."]) -> [0]
        """
        n = len(texts.offsets) - 1 if isinstance(texts, UnitBatch) else len(texts)
        out = np.full(n, -1, dtype=np.int64)
        if not len(self.hashes) or not n:
            return out
        ub = texts if isinstance(texts, UnitBatch) else UnitBatch.of(texts)
        parts = [ngram_hashes(ub, self.cfg.ngram_words, self.cfg.ngram_chars, short_runs=False)]
        parts += [window_hashes(ub, n) for n in self.whole_lengths]
        rows, items = [], []
        for flat, offsets in parts:
            maybe = np.flatnonzero(self._may_hold(flat))
            pos = np.searchsorted(self.hashes, flat[maybe])
            pos[pos == len(self.hashes)] = 0
            hit = self.hashes[pos] == flat[maybe]
            rows.append(np.searchsorted(offsets, maybe[hit], side="right") - 1)
            items.append(self.item_of[pos[hit]])
        rows, items = np.concatenate(rows), np.concatenate(items)
        order = np.lexsort((items, rows))  # per row, the lowest item id first
        rows, items = rows[order], items[order]
        first = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.zeros(0, dtype=bool)
        out[rows[first]] = items[first]
        return out

    def items(self) -> int:
        return len(self.where)

    def counts(self, matched: np.ndarray) -> dict[str, int]:
        """Rows removed per benchmark file, from match() results. Example: [-1, 0, 0] -> {"mmlu.jsonl": 2}"""
        matched = np.asarray(matched)
        per_file = np.bincount(self.file_of[matched[matched >= 0]], minlength=len(self.files))
        return {f: int(n) for f, n in zip(self.files, per_file)}

"""Global steps on per-row metadata, then the output splits streamed from the shards' spill files.

    RowIndex (length, trained, record... per kept row; no tokens)
      -> seeded train/test split (indices) -> length stats, token totals
      -> per split: plain/padded rows (shard by shard) | wrap blocks (a running packer) |
         bfd bins (global, from lengths) -> rows gathered through bucket files
      -> SplitWriter (Arrow files load_from_disk reads)

Memory holds one shard (or one bfd chunk of CHUNK_TOKENS tokens) of rows at a time, plus the
per-row metadata; spill files are deleted once read, so the disk holds at most the spills + the
output (within 2x the output size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from llmprep.arrowcols import from_numpy, list_flat, to_numpy
from llmprep.cache import parse_entry
from llmprep.encode import Encoded, offsets_of, take
from llmprep.executor import storage
from llmprep.output import PACKED_SCHEMA, ClassNames, SplitWriter, list_column, packed_table, rows_table
from llmprep.pack import WrapPacker, bfd_bins, bfd_columns, bfd_stats

CHUNK_TOKENS = 4_000_000  # tokens of one bfd output chunk held in memory


@dataclass
class RowIndex:
    """Per-row metadata of every kept row, in input order (the pipeline's contract, docs/scale.md).

    columns["length"][r], columns["trained"][r], ...; rows of shard k are shard_rows[k]:shard_rows[k+1]
    and their tokens are in spills[k].
    """

    columns: dict[str, np.ndarray]
    shard_rows: np.ndarray
    spills: list[str]
    # trained tokens truncation cut, only at the rows that lost some: (row numbers, tokens), int64
    cut: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def build(cls, metas: list) -> "RowIndex":
        """Concatenate the shards' per-row columns, taking them from the metas (each meta's rows dict is
        emptied): the index holds them once, not twice, and a column's parts are freed as it is built."""
        names = list(metas[0].rows) if metas else ["length", "trained", "record"]
        sizes = [len(m.rows["length"]) for m in metas]
        cols = {}
        for k in names:
            cols[k] = np.concatenate([m.rows.pop(k) for m in metas]) if metas else np.zeros(0, np.int32)
        shard_rows = offsets_of(sizes)
        cut_rows = [np.asarray(m.cut["rows"], np.int64) + shard_rows[k] for k, m in enumerate(metas)]
        cut_tokens = [np.asarray(m.cut["tokens"], np.int64) for m in metas]
        cut = (np.concatenate(cut_rows), np.concatenate(cut_tokens)) if metas else cls.cut
        return cls(cols, shard_rows, [m.spill for m in metas], cut)

    def __len__(self) -> int:
        return len(self.columns["length"])

    def trained_cut(self, rows: np.ndarray) -> int:
        """Trained tokens truncation cut from these rows (a row given twice counts twice).
        Example: cut at rows [1] of 5 tokens; rows [0, 1, 1] -> 10"""
        at, tokens = self.cut
        if len(at) == 0:
            return 0
        pos = np.searchsorted(at, rows)  # `at` is ascending: shards in order, rows in order within each
        hit = pos < len(at)
        hit[hit] = at[pos[hit]] == rows[hit]
        return int(tokens[pos[hit]].sum(dtype=np.int64))

    def shard_of(self, rows: np.ndarray) -> np.ndarray:
        """The shard of each row (global row numbers), from shard_rows: no per-row column (2M rows: 8 MB).
        Example: shard_rows [0, 2, 2, 5]; rows [0, 2, 4] -> [0, 2, 2] (shard 1 has no row)"""
        return np.searchsorted(self.shard_rows, rows, side="right") - 1

    def shard(self, k: int, *, consume: bool = True, native: bool = False) -> Encoded:
        """Rows of shard k, read from its spill file (deleted afterwards when `consume`); `native`: as the
        spill holds them (int32, no copy; see cache.parse_entry)."""
        enc, _ = parse_entry(storage.read_bytes(self.spills[k]), verify=False, native=native)
        if consume:
            storage.remove(self.spills[k])
        return enc

    def discard(self, k: int) -> None:
        """Delete shard k's spill file unread (none of its rows is written)."""
        storage.remove(self.spills[k])


def assemble(index: RowIndex, splits: dict[str, np.ndarray], cfg, pad_id: int, out: Path,
             fingerprint: str) -> tuple[dict[str, int], dict]:
    """Write every split to out/<split>; -> (rows per split, packing stats per split)."""
    writers = {name: SplitWriter(out / name, fingerprint=f"{fingerprint}-{name}") for name in splits}
    classes = ClassNames()  # string class labels: one id space over all splits
    try:
        if cfg.pack == "bfd":
            stats = _bfd(index, splits, cfg.max_length, writers, out / ".work")
        else:
            stats = _in_order(index, splits, cfg, pad_id, writers, classes)
        for w in writers.values():
            w.features = classes.features()
        rows = {name: w.close(_schema(index, cfg)) for name, w in writers.items()}
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    return rows, stats


def _schema(index: RowIndex, cfg) -> pa.Schema:
    """Columns of an empty split (no batch was written to show them)."""
    if cfg.pack != "none":
        return PACKED_SCHEMA
    empty = Encoded(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64))
    return rows_table(empty, padding="none", padding_side="right", width=0, pad_id=0).schema


def _membership(n: int, splits: dict[str, np.ndarray], none: int = 0) -> np.ndarray:
    """Split number of every row (`none` for rows in no split).
    Example: n=4, {"train": [0, 2, 3], "test": [1]} -> [0, 1, 0, 0]"""
    which = np.full(n, none, np.int8)
    for k, idx in enumerate(splits.values()):
        which[idx] = k
    return which


def increasing_runs(idx: np.ndarray) -> list[np.ndarray]:
    """A split's row numbers cut into increasing runs: one for a plain split, one per epoch of a mix.

    Example: [1, 4, 6, 1, 6] (rows 1, 4, 6, then 1 and 6 again) -> [[1, 4, 6], [1, 6]]
    """
    cuts = np.flatnonzero(np.diff(idx) <= 0) + 1
    return [r for r in np.split(idx, cuts) if len(r)] if len(idx) else []


def _in_order(index: RowIndex, splits: dict[str, np.ndarray], cfg, pad_id: int,
              writers: dict[str, SplitWriter], classes: ClassNames | None = None) -> dict:
    """Plain, padded or wrapped rows in each split's order: rows of one increasing run per pass over the
    shards (one pass without a mix; a mix's repeats are later runs), each spill deleted after its last use."""
    lengths = index.columns["length"]
    widths = {name: (cfg.max_length if cfg.padding == "max-length" else int(lengths[idx].max()) if len(idx) else 0)
              for name, idx in splits.items()}
    packers = {name: _Wrap(cfg.max_length, pad_id, cfg.remainder) for name in splits} if cfg.pack == "wrap" else {}
    runs = {name: increasing_runs(idx) for name, idx in splits.items()}
    passes = [{name: r[p] for name, r in runs.items() if p < len(r)} for p in range(max(map(len, runs.values()),
                                                                                         default=0))]
    last = np.full(len(index.spills), -1)
    for p, rows in enumerate(passes):
        for idx in rows.values():
            last[np.unique(index.shard_of(idx))] = p
    for k in np.flatnonzero(last < 0):  # every row removed (dedup, decontamination, mix)
        index.discard(int(k))
    for p, rows in enumerate(passes):
        which = _membership(len(index), rows, none=-1)
        for k in np.flatnonzero(last >= p):
            a, b = index.shard_rows[k], index.shard_rows[k + 1]
            if not (which[a:b] >= 0).any():
                continue
            # rows written as they are (int32 columns again) need no int64 copy; the wrap packer gets int64
            enc = index.shard(int(k), consume=last[k] == p, native=not packers)
            for s, name in enumerate(rows):
                local = np.flatnonzero(which[a:b] == s)
                if not len(local):
                    continue
                part = take(enc, local) if len(local) < len(enc) else enc
                if packers:
                    writers[name].write(packers[name].add(part))
                else:
                    writers[name].write(rows_table(part, padding=cfg.padding, padding_side=cfg.padding_side,
                                                   width=widths[name], pad_id=pad_id, classes=classes))
    stats = {}
    for name, packer in packers.items():
        writers[name].write(packer.finish())
        stats[name] = packer.stats()
    return stats


class _Wrap:
    """WrapPacker over a split's rows arriving shard by shard, counting what report.json needs."""

    def __init__(self, block_size: int, pad_id: int, remainder: str):
        self.packer = WrapPacker(block_size, pad_token_id=pad_id, remainder=remainder)
        self.rows = self.tokens = self.padding = 0

    def add(self, enc: Encoded) -> pa.Table:
        keep = np.flatnonzero(enc.lengths > 0)
        enc = take(enc, keep) if len(keep) < len(enc) else enc
        self.packer.documents += len(enc)
        starts = np.zeros(len(enc.ids), dtype=bool)
        starts[enc.offsets[:-1]] = True
        return self._table(self.packer.add_arrays(enc.ids, enc.labels, starts))

    def finish(self) -> pa.Table:
        return self._table(self.packer.finish())

    def _table(self, cols: dict) -> pa.Table:
        real = sum(sum(m) for m in cols["attention_mask"])
        self.rows += len(cols["input_ids"])
        self.tokens += real
        self.padding += sum(len(m) for m in cols["attention_mask"]) - real
        return packed_table(cols)

    def stats(self) -> dict:
        p = self.packer
        return {"strategy": "wrap", "max_length": p.block_size, "rows": self.rows, "examples_packed": p.documents,
                "tokens": self.tokens, "fill": round(self.tokens / (self.rows * p.block_size), 6) if self.rows else 0.0,
                "remainder_tokens_dropped": p.dropped, "padding_tokens": self.padding, "remainder": p.remainder}


# ---------------------------------------------------------------- bfd: global bins, rows gathered by bucket

@dataclass
class _BfdPlan:
    members: np.ndarray  # global row ids in output order
    seg_len: np.ndarray
    row_sizes: np.ndarray
    chunk_rows: np.ndarray  # output-row offsets of each chunk
    chunk_members: np.ndarray  # member offsets of each chunk
    stats: dict


def _bfd_plan(idx: np.ndarray, lengths: np.ndarray, max_length: int) -> _BfdPlan:
    """Bins of a split from row lengths alone (the same bins as pack_bfd_arrays), cut into chunks."""
    split_len = lengths[idx].astype(np.int64)
    keep = np.flatnonzero(split_len > 0)
    bins = bfd_bins(split_len[keep].tolist(), max_length)
    order = keep[np.fromiter(chain.from_iterable(bins), dtype=np.int64, count=len(keep))]
    row_sizes = np.fromiter((len(b) for b in bins), dtype=np.int64, count=len(bins))
    del bins
    seg_len = split_len[order]
    row_tokens = np.add.reduceat(seg_len, offsets_of(row_sizes)[:-1]) if len(row_sizes) else np.zeros(0, np.int64)
    chunk_of_row = np.cumsum(row_tokens) // CHUNK_TOKENS
    cuts = np.flatnonzero(np.diff(chunk_of_row)) + 1
    chunk_rows = np.concatenate([[0], cuts, [len(row_sizes)]]).astype(np.int64)
    member_off = offsets_of(row_sizes)
    return _BfdPlan(idx[order], seg_len, row_sizes, chunk_rows, member_off[chunk_rows],
                    bfd_stats(seg_len, row_sizes, max_length, len(idx)))


def _bfd(index: RowIndex, splits: dict[str, np.ndarray], max_length: int, writers: dict[str, SplitWriter],
         work: Path) -> dict:
    """Pass 1: each shard's rows go to the bucket file of the chunk that will hold them.
    Pass 2: per chunk, read its bucket, order rows as the bins say, write the packed rows."""
    plans = {name: _bfd_plan(idx, index.columns["length"], max_length) for name, idx in splits.items()}
    buckets: dict[tuple[str, int], pa.ipc.RecordBatchStreamWriter] = {}
    sinks = []
    schema = pa.schema([("p", pa.int64()), ("ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])
    where = {}
    for name, plan in plans.items():
        # a row may fill several slots (a mix repeats it): slots sorted by row, found per shard by bisection
        by_row = np.argsort(plan.members, kind="stable")
        chunk = np.searchsorted(plan.chunk_members, np.arange(len(plan.members)), side="right") - 1
        where[name] = (plan.members[by_row], by_row, chunk)
    try:
        for k in range(len(index.spills)):
            enc = index.shard(k)
            a, b = index.shard_rows[k], index.shard_rows[k + 1]
            for name, (rows_sorted, by_row, chunk) in where.items():
                lo, hi = np.searchsorted(rows_sorted, [a, b])
                slots, local = by_row[lo:hi], rows_sorted[lo:hi] - a
                for c in np.unique(chunk[slots]):
                    mine = chunk[slots] == c
                    part = take(enc, local[mine])
                    key = (name, int(c))
                    if key not in buckets:
                        sink = pa.OSFile(str(work / f"bucket-{name}-{c:05d}.arrow"), "wb")
                        sinks.append(sink)
                        buckets[key] = pa.ipc.new_stream(sink, schema)
                    buckets[key].write_table(pa.table({
                        "p": from_numpy(slots[mine]), "ids": list_column(part.ids, part.offsets),
                        "labels": list_column(part.labels, part.offsets)}, schema=schema))
    finally:
        for w in buckets.values():
            w.close()
        for s in sinks:
            s.close()
    for name, plan in plans.items():
        for c in range(len(plan.chunk_rows) - 1):
            for table in _chunk(work / f"bucket-{name}-{c:05d}.arrow", plan, c):
                writers[name].write(table)
    return {name: plan.stats for name, plan in plans.items()}


def _chunk(path: Path, plan: _BfdPlan, c: int) -> Iterator[pa.Table]:
    """Packed rows of chunk c from its bucket file (then deleted)."""
    if not path.exists():
        return
    with pa.OSFile(str(path), "rb") as fh:
        table = pa.ipc.open_stream(fh).read_all()
    os.unlink(path)
    table = table.take(from_numpy(np.argsort(to_numpy(table["p"]), kind="stable")))
    flat_ids = list_flat(table["ids"])[0].astype(np.int64)
    flat_labels = list_flat(table["labels"])[0].astype(np.int64)
    m0, m1 = plan.chunk_members[c], plan.chunk_members[c + 1]
    r0, r1 = plan.chunk_rows[c], plan.chunk_rows[c + 1]
    yield packed_table(bfd_columns(flat_ids, flat_labels, plan.seg_len[m0:m1], plan.row_sizes[r0:r1]))

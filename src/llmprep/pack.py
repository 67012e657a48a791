"""Pack tokenized examples into fixed-capacity rows: `wrap` (continued pretraining) or `bfd` (SFT).

A packed row is a list of segments (one per example or document piece). Positions restart at 0 in
every segment, `seq_lengths` lists the segment lengths, and the first label of every segment is
IGNORE_INDEX, so no segment is ever trained to predict the next one's first token. A row of
max_length 8 holding examples A (3 tokens) and B (4 tokens), padded by 1:

    input_ids     A0 A1 A2 B0 B1 B2 B3 <pad>
    labels        -100 a1 a2 -100 b1 b2 b3 -100
    position_ids   0  1  2  0  1  2  3  0        <- restart per segment; pads form their own segment
    seq_lengths   [3, 4]                          (pads are not listed)
    attention     A0 x . . . . . . .              block-diagonal causal mask built from position_ids
                  A1 x x . . . . . .              (llmprep.attention): B never sees A.
                  A2 x x x . . . . .
                  B0 . . . x . . . .
                  B1 . . . x x . . .
                  B2 . . . x x x . .
                  B3 . . . x x x x .
                  pad . . . . . . . x

`bfd` rows are not padded here (the collator pads per batch); `wrap --remainder pad` pads the last
block. Fill = real tokens / (rows * max_length).
"""

from __future__ import annotations

from collections import deque
from itertools import chain
from typing import Any, Iterable, Sequence

import numpy as np

from llmprep.constants import IGNORE_INDEX
from llmprep.encode import offsets_of
from llmprep.errors import ConfigError

STRATEGIES = ("none", "wrap", "bfd")
REMAINDERS = ("drop", "pad", "keep")
Columns = dict[str, list[list[int]]]


def check_options(*, strategy: str, max_length: int, remainder: str = "drop") -> None:
    """Raise one ConfigError naming every bad option. Example: strategy="greedy" -> "--pack 'greedy': ..."."""
    problems = []
    if strategy not in STRATEGIES:
        problems.append(f"--pack {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool) or max_length < 1:
        problems.append(f"--max-length/--block-size {max_length!r}: expected a positive integer")
    if remainder not in REMAINDERS:
        problems.append(f"--remainder {remainder!r}: expected one of {', '.join(REMAINDERS)}")
    if problems:
        raise ConfigError("; ".join(problems))


# ---------------------------------------------------------------- document boundaries (wrap)

def boundary_tokens(tokenizer) -> tuple[int | None, int | None]:
    """(BOS to prepend or None, EOS to append or None) for documents of this tokenizer.

    BOS only if the tokenizer adds it by default (Llama/Mistral yes, SmolLM2/Qwen no).
    Example: Mistral v1 -> (1, 2); SmolLM2 -> (None, 2)
    """
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and len(with_special) > len(without) and with_special[0] == bos
    return (bos if adds_bos else None), tokenizer.eos_token_id


def with_boundaries(ids: Sequence[int], bos: int | None, eos: int | None, *,
                    first: bool = True, last: bool = True) -> list[int]:
    """Give a document (or its `first`/`last` piece) exactly one leading BOS and one trailing EOS.

    Example: bos=1, eos=2: [5, 6] -> [1, 5, 6, 2]; [1, 1, 5, 2] -> [1, 5, 2]; bos=None: [5] -> [5, 2]
    """
    ids = list(ids)
    if first and bos is not None:
        start = 0
        while start < len(ids) and ids[start] == bos:  # "<s>" in the text + the one the tokenizer added
            start += 1
        ids = [bos] + ids[start:]
    if last and eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


def add_document_boundaries(ids: Sequence[int], tokenizer) -> list[int]:
    """BOS if the tokenizer adds one by default (never two), EOS appended if missing.

    Example (Mistral v1, bos=1, eos=2): [1, 1, 330] -> [1, 330, 2]; (SmolLM2, eos=2): [330] -> [330, 2]
    """
    bos, eos = boundary_tokens(tokenizer)
    return with_boundaries(ids, bos, eos)


# ---------------------------------------------------------------- row assembly (shared)

def _flatten(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate lists into one int64 array plus offsets. Example: [[5, 6], [7]] -> [5, 6, 7], [0, 2, 3]"""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = offsets_of(lengths)
    flat = np.fromiter(chain.from_iterable(seqs), dtype=np.int64, count=int(offsets[-1]))
    return flat, offsets


def segment_positions(starts: np.ndarray) -> np.ndarray:
    """Position of each token in its segment, given a bool array marking segment starts.

    Example: [T, F, F, T, F] -> [0, 1, 2, 0, 1]
    """
    idx = np.arange(len(starts))
    last_start = np.maximum.accumulate(np.where(starts, idx, 0))
    return idx - last_start


def _rows_from_flat(ids: np.ndarray, labels: np.ndarray, starts: np.ndarray, row_bounds: np.ndarray,
                    row_length: int | None, pad_token_id: int) -> Columns:
    """Cut flat token arrays into rows at `row_bounds`; optionally pad every row to `row_length`.

    `starts` marks segment starts (a row's first token always starts one). Example: ids [5, 6, 7],
    starts [T, F, T], bounds [0, 3], row_length 4 -> input_ids [[5, 6, 7, pad]],
    labels [[-100, l6, -100, -100]], position_ids [[0, 1, 0, 0]], seq_lengths [[2, 1]], mask [[1, 1, 1, 0]]
    """
    starts = starts.copy()
    starts[row_bounds[:-1]] = True
    labels = np.where(starts, IGNORE_INDEX, labels)
    positions = segment_positions(starts)
    out: Columns = {k: [] for k in ("input_ids", "labels", "attention_mask", "position_ids", "seq_lengths")}
    start_idx = np.flatnonzero(starts)
    for a, b in zip(row_bounds[:-1].tolist(), row_bounds[1:].tolist()):
        n_pad = (row_length - (b - a)) if row_length else 0
        seg = start_idx[np.searchsorted(start_idx, a):np.searchsorted(start_idx, b)]
        out["seq_lengths"].append(np.diff(np.append(seg, b)).tolist())
        out["input_ids"].append(ids[a:b].tolist() + [pad_token_id] * n_pad)
        out["labels"].append(labels[a:b].tolist() + [IGNORE_INDEX] * n_pad)
        out["attention_mask"].append([1] * (b - a) + [0] * n_pad)
        out["position_ids"].append(positions[a:b].tolist() + list(range(n_pad)))
    return out


def _check_columns(columns: dict[str, list[list[int]]]) -> None:
    """Every example needs input_ids and labels of the same length."""
    if "input_ids" not in columns:
        raise ConfigError(f"pack_examples: columns need 'input_ids' (got {sorted(columns)})")
    labels = columns.get("labels")
    if labels is None:
        return
    if len(labels) != len(columns["input_ids"]):
        raise ConfigError(f"pack_examples: {len(columns['input_ids'])} input_ids but {len(labels)} labels")
    for i, (a, b) in enumerate(zip(columns["input_ids"], labels)):
        if len(a) != len(b):
            raise ConfigError(f"pack_examples: example {i} has {len(a)} input_ids but {len(b)} labels")


def _stats(strategy: str, columns: Columns, max_length: int, examples: int, **extra: Any) -> dict:
    """Packing stats for report.json. Example: 2 rows of 8 holding 14 real tokens -> fill 0.875."""
    real = sum(m.count(1) for m in columns["attention_mask"])
    rows = len(columns["input_ids"])
    stats = {"strategy": strategy, "max_length": max_length, "rows": rows, "examples_packed": examples,
             "tokens": real, "fill": round(real / (rows * max_length), 6) if rows else 0.0,
             "remainder_tokens_dropped": 0, "padding_tokens": rows and sum(len(m) for m in columns["attention_mask"]) - real}
    stats.update(extra)
    return stats


# ---------------------------------------------------------------- bfd

class _FreeCapacityTree:
    """Segment tree over capacities 0..size: which capacities have at least one open bin.

    Example: add(3); add(7); smallest_at_least(5) -> 7; smallest_at_least(8) -> None
    """

    def __init__(self, size: int):
        self.leaves = 1
        while self.leaves < size + 1:
            self.leaves *= 2
        self.count = [0] * (2 * self.leaves)  # number of non-empty capacities under each node

    def _update(self, cap: int, delta: int) -> None:
        node = cap + self.leaves
        while node:
            self.count[node] += delta
            node //= 2

    def add(self, cap: int) -> None:
        self._update(cap, 1)

    def remove(self, cap: int) -> None:
        self._update(cap, -1)

    def smallest_at_least(self, need: int) -> int | None:
        """Smallest non-empty capacity >= need, or None: climb to the first right sibling holding
        one, then descend to its leftmost non-empty leaf (O(log size))."""
        node = need + self.leaves
        if self.count[node]:
            return need
        while node > 1:
            if node % 2 == 0 and self.count[node + 1]:
                node += 1
                break
            node //= 2
        else:
            return None
        while node < self.leaves:
            node = 2 * node if self.count[2 * node] else 2 * node + 1
        return node - self.leaves


def bfd_bins(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing over the whole list: example indices per bin, deterministic.

    Longest first (ties: lower index first); each goes to the open bin with the least free space
    that fits (ties: the bin that reached that free space first); a new bin if none fits.
    Example: lengths [4, 3, 5, 2, 1], capacity 6 -> [[2, 4], [0, 3], [1]]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    too_long = np.flatnonzero(lengths > capacity)
    if too_long.size:
        i = int(too_long[0])
        raise ConfigError(f"pack_examples: example {i} has {int(lengths[i])} tokens > --max-length {capacity}; "
                          f"truncate first (--truncation) ({too_long.size} examples too long)")
    order = np.lexsort((np.arange(len(lengths)), -lengths))
    tree = _FreeCapacityTree(capacity)
    by_free: dict[int, deque[int]] = {}
    bins: list[list[int]] = []
    for idx, n in zip(order.tolist(), lengths[order].tolist()):
        free = tree.smallest_at_least(n)
        if free is None:
            b, free = len(bins), capacity
            bins.append([])
        else:
            b = by_free[free].popleft()
            if not by_free[free]:
                tree.remove(free)
        bins[b].append(idx)
        left = free - n
        if left > 0:
            if not by_free.setdefault(left, deque()):
                tree.add(left)
            by_free[left].append(b)
    return [sorted(x) for x in bins]


def _bfd_row(ids: list[list[int]], labels: list[list[int]], members: list[int]) -> dict[str, list]:
    """One packed row from example indices (plain list ops: faster than numpy round trips here).

    Example: ids [[5, 6], [7]], labels same, members [0, 1] -> input_ids [5, 6, 7],
    labels [-100, 6, -100], position_ids [0, 1, 0], seq_lengths [2, 1]
    """
    row_ids: list[int] = []
    row_labels: list[int] = []
    positions: list[int] = []
    for i in members:
        row_ids.extend(ids[i])
        row_labels.append(IGNORE_INDEX)
        row_labels.extend(labels[i][1:])
        positions.extend(range(len(ids[i])))
    return {"input_ids": row_ids, "labels": row_labels, "attention_mask": [1] * len(row_ids),
            "position_ids": positions, "seq_lengths": [len(ids[i]) for i in members]}


def _pack_bfd(columns: dict[str, list[list[int]]], max_length: int, pad_token_id: int) -> tuple[Columns, dict]:
    """BFD-pack whole examples into unpadded rows of at most max_length tokens."""
    ids = columns["input_ids"]
    labels = columns.get("labels") or ids
    keep = [i for i, x in enumerate(ids) if len(x) > 0]
    bins = bfd_bins([len(ids[i]) for i in keep], max_length)
    out: Columns = {k: [] for k in ("input_ids", "labels", "attention_mask", "position_ids", "seq_lengths")}
    for b in bins:
        for k, v in _bfd_row(ids, labels, [keep[i] for i in b]).items():
            out[k].append(v)
    per_row = [len(b) for b in bins]
    return out, _stats("bfd", out, max_length, len(keep), empty_examples_skipped=len(ids) - len(keep),
                       examples_per_row_max=max(per_row, default=0))


# ---------------------------------------------------------------- wrap

class WrapPacker:
    """Concatenate documents and cut fixed blocks, incrementally (the streaming path uses it too).

    Documents must already carry BOS/EOS (see `with_boundaries`). A document's piece starts a new
    segment; so does the continuation of a document at the start of the next block.
    Example (block 4): add([[1, 5, 6, 2], [1, 7, 2]]) -> one block [1, 5, 6, 2], carry [1, 7, 2];
    finish() with remainder "pad" -> [1, 7, 2, pad]; "drop" -> nothing (3 tokens dropped).
    """

    def __init__(self, block_size: int, *, pad_token_id: int, remainder: str = "drop"):
        check_options(strategy="wrap", max_length=block_size, remainder=remainder)
        self.block_size, self.pad_token_id, self.remainder = int(block_size), int(pad_token_id), remainder
        self._ids = np.zeros(0, dtype=np.int64)
        self._labels = np.zeros(0, dtype=np.int64)
        self._starts = np.zeros(0, dtype=bool)
        self.documents = 0
        self.dropped = 0

    def add_arrays(self, ids: np.ndarray, labels: np.ndarray, starts: np.ndarray) -> Columns:
        """Append tokens (with segment-start flags) and return the full blocks now available."""
        self._ids = np.concatenate([self._ids, ids])
        self._labels = np.concatenate([self._labels, labels])
        self._starts = np.concatenate([self._starts, starts])
        full = len(self._ids) // self.block_size * self.block_size
        out = self._emit(full, None)
        return out

    def add(self, documents: Sequence[Sequence[int]], labels: Sequence[Sequence[int]] | None = None) -> Columns:
        """Append whole documents; return the full blocks now available."""
        docs = [d for d in documents if len(d)]
        labs = [l for d, l in zip(documents, labels) if len(d)] if labels is not None else docs
        self.documents += len(docs)
        flat, offsets = _flatten(docs)
        flat_labels = _flatten(labs)[0] if labels is not None and labels is not documents else flat
        starts = np.zeros(len(flat), dtype=bool)
        starts[offsets[:-1]] = True
        return self.add_arrays(flat, flat_labels, starts)

    def finish(self) -> Columns:
        """The last partial block, per `remainder`: dropped, padded to block_size, or kept short."""
        n = len(self._ids)
        if self.remainder == "drop" or n == 0:
            self.dropped += n
            return self._emit(0, None, discard_rest=True)
        return self._emit(n, self.block_size if self.remainder == "pad" else None)

    def _emit(self, upto: int, row_length: int | None, discard_rest: bool = False) -> Columns:
        bounds = np.arange(0, upto + 1, self.block_size, dtype=np.int64)
        if bounds[-1] != upto:
            bounds = np.append(bounds, upto)
        if upto:
            out = _rows_from_flat(self._ids[:upto], self._labels[:upto], self._starts[:upto], bounds,
                                  row_length, self.pad_token_id)
        else:
            out = {k: [] for k in ("input_ids", "labels", "attention_mask", "position_ids", "seq_lengths")}
        cut = len(self._ids) if discard_rest else upto
        self._ids, self._labels, self._starts = self._ids[cut:], self._labels[cut:], self._starts[cut:]
        return out


def _extend(into: Columns, more: Columns) -> None:
    for k, v in more.items():
        into[k].extend(v)


def _pack_wrap(columns: dict[str, list[list[int]]], max_length: int, pad_token_id: int,
               remainder: str) -> tuple[Columns, dict]:
    """Concatenate all documents (already carrying BOS/EOS) and cut blocks of max_length."""
    packer = WrapPacker(max_length, pad_token_id=pad_token_id, remainder=remainder)
    out = packer.add(columns["input_ids"], columns.get("labels"))
    _extend(out, packer.finish())
    return out, _stats("wrap", out, max_length, packer.documents, remainder=remainder,
                       remainder_tokens_dropped=packer.dropped)


def _pack_none(columns: dict[str, list[list[int]]], max_length: int) -> tuple[Columns, dict]:
    """One example per row, unpadded; position_ids 0..n-1. Example: [[5, 6]] -> position_ids [[0, 1]]."""
    ids = columns["input_ids"]
    labels = columns.get("labels") or ids
    out: Columns = {"input_ids": [list(x) for x in ids], "labels": [list(x) for x in labels],
                    "attention_mask": [[1] * len(x) for x in ids],
                    "position_ids": [list(range(len(x))) for x in ids], "seq_lengths": [[len(x)] for x in ids]}
    return out, _stats("none", out, max_length, len(ids))


def pack_examples(columns: dict[str, list[list[int]]], *, strategy: str, max_length: int, pad_token_id: int,
                  remainder: str = "drop") -> tuple[Columns, dict]:
    """Pack examples into rows; return (columns, stats for report.json["packing"]).

    Output columns: input_ids, labels, attention_mask, position_ids, seq_lengths (one entry per row).
    Example (bfd, max_length 4): input_ids [[5, 6], [7], [8, 9, 10]] ->
        input_ids [[7, 8, 9, 10], [5, 6]], position_ids [[0, 0, 1, 2], [0, 1]],
        seq_lengths [[1, 3], [2]], labels [[-100, -100, 9, 10], [-100, 6]], fill 6/8 = 0.75
    """
    check_options(strategy=strategy, max_length=max_length, remainder=remainder)
    _check_columns(columns)
    if strategy == "bfd":
        return _pack_bfd(columns, int(max_length), pad_token_id)
    if strategy == "wrap":
        return _pack_wrap(columns, int(max_length), pad_token_id, remainder)
    return _pack_none(columns, int(max_length))


def iter_rows(columns: Columns) -> Iterable[dict[str, list[int]]]:
    """Rows of a column dict. Example: {"a": [[1], [2]]} -> {"a": [1]}, {"a": [2]}"""
    keys = list(columns)
    for values in zip(*(columns[k] for k in keys)):
        yield dict(zip(keys, values))


# ---------------------------------------------------------------- bfd on flat arrays (prepare's path)

def pack_bfd_arrays(ids: np.ndarray, labels: np.ndarray, offsets: np.ndarray,
                    max_length: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """`bfd` on flat token arrays (row r = ids[offsets[r]:offsets[r+1]]), with no per-row Python lists.

    Same bins and same rows as pack_examples(strategy="bfd"); returns {column: (flat values, row
    offsets)} ready for Arrow list columns, and the stats. Example (max_length 4): rows [5, 6], [7],
    [8, 9, 10] -> input_ids ([7, 8, 9, 10, 5, 6], [0, 4, 6]), seq_lengths ([1, 3, 2], [0, 2, 3])
    """
    check_options(strategy="bfd", max_length=max_length)
    lengths = np.diff(offsets)
    keep = np.flatnonzero(lengths > 0)
    bins = bfd_bins(lengths[keep].tolist(), max_length)
    members = keep[np.fromiter(chain.from_iterable(bins), dtype=np.int64, count=len(keep))]
    seg_len = lengths[members]
    # Flat positions of every member's tokens, members in row order.
    seg_off = offsets_of(seg_len)
    index = np.arange(seg_off[-1], dtype=np.int64) - np.repeat(seg_off[:-1], seg_len) \
        + np.repeat(offsets[:-1][members], seg_len)
    row_sizes = np.fromiter((len(b) for b in bins), dtype=np.int64, count=len(bins))
    columns = bfd_columns(ids[index], labels[index], seg_len, row_sizes)
    return columns, bfd_stats(seg_len, row_sizes, max_length, len(lengths))


def bfd_columns(ids: np.ndarray, labels: np.ndarray, seg_len: np.ndarray,
                row_sizes: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Packed columns from examples already in row order: `seg_len[i]` tokens each, `row_sizes[r]`
    examples in row r. Example: ids [7, 8, 9, 10, 5, 6], seg_len [1, 3, 2], row_sizes [2, 1] ->
    input_ids ([7, 8, 9, 10, 5, 6], [0, 4, 6]), position_ids [0, 0, 1, 2, 0, 1], first labels -100
    """
    seg_off = offsets_of(seg_len)
    positions = np.arange(seg_off[-1], dtype=np.int64) - np.repeat(seg_off[:-1], seg_len)  # restart per segment
    starts = np.zeros(len(ids), dtype=bool)
    starts[seg_off[:-1]] = True
    row_seg_off = offsets_of(row_sizes)
    row_tok_off = seg_off[row_seg_off]
    return {
        "input_ids": (ids, row_tok_off),
        "labels": (np.where(starts, IGNORE_INDEX, labels), row_tok_off),
        "attention_mask": (np.ones(len(ids), dtype=np.int8), row_tok_off),
        "position_ids": (positions, row_tok_off),
        "seq_lengths": (seg_len, row_seg_off),
    }


def bfd_stats(seg_len: np.ndarray, row_sizes: np.ndarray, max_length: int, examples: int) -> dict:
    """report.json's packing block for bfd. Example: 2 rows of 8 holding 14 tokens -> fill 0.875"""
    rows, real = len(row_sizes), int(np.sum(seg_len))
    stats = {"strategy": "bfd", "max_length": max_length, "rows": rows, "examples_packed": len(seg_len),
             "tokens": real, "fill": round(real / (rows * max_length), 6) if rows else 0.0,
             "remainder_tokens_dropped": 0, "padding_tokens": 0,
             "empty_examples_skipped": int(examples - len(seg_len)),
             "examples_per_row_max": int(row_sizes.max()) if rows else 0}
    return stats

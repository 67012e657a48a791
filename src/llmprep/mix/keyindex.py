"""First-seen lookups over fixed-size keys in bounded, flat memory: the main process's dedup memory.

Keys are 64-bit (one uint64 column) or 128-bit (two columns: hi, lo); each key maps to the id of the
row that first had it. Keys live in a few sorted numpy runs (a log-structured merge: a new batch is one
run, runs of similar size are merged up to RUN_KEYS keys), so 2M keys take 2M x (8 or 16 + 4) bytes and
no Python object per key. Lookups are vectorised binary searches, one per run.

Example: ix = KeyIndex(words=1); ix.add(np.array([[5], [7]], np.uint64), np.array([0, 1]))
         ix.find(np.array([[7], [9]], np.uint64)) -> array([1, -1])
"""

from __future__ import annotations

import numpy as np

# Runs stop merging at this many keys. A merge holds both runs and the merged copy at once, so merging every
# run into one made the main process's dedup peak grow with the data (2M rows: ~2x the keys, ~40 MB, at the
# moment a shard's worker is alive too); capped, a merge holds at most ~2 x 5 MB, and a lookup searches a
# few more runs (2M keys: about 16 runs, a few ms per shard).
RUN_KEYS = 1 << 18


class KeyIndex:
    """Sorted runs of (key, id); `find` returns the id stored for each key, or -1.

    A run is (high words, low words or None, ids), each a contiguous array: binary searches read the high
    words without copying them out of an (n, 2) array, and two runs merge by placing one into the other
    (insertion positions), not by sorting their concatenation again; runs stop merging at RUN_KEYS keys.
    """

    def __init__(self, words: int = 1):
        if words not in (1, 2):
            raise ValueError(f"words={words!r}: expected 1 (64-bit keys) or 2 (128-bit keys)")
        self.words = words
        self._runs: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []
        self.size = 0

    def add(self, keys: np.ndarray, ids: np.ndarray) -> None:
        """Store keys not yet present (the caller checked with `find`); ids are int32-sized row ids."""
        if len(keys) == 0:
            return
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1, self.words)
        hi = np.ascontiguousarray(keys[:, 0])
        lo = np.ascontiguousarray(keys[:, 1]) if self.words == 2 else None
        order = np.argsort(hi, kind="stable") if lo is None else np.lexsort((lo, hi))
        self._runs.append((hi[order], lo[order] if lo is not None else None,
                           np.asarray(ids, dtype=np.int32)[order]))
        self.size += len(keys)
        while (len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0])
               and len(self._runs[-2][0]) + len(self._runs[-1][0]) <= RUN_KEYS):
            b, a = self._runs.pop(), self._runs.pop()
            self._runs.append(_merge(a, b))

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Id stored for each key, or -1 where none. Keys are unique across runs (add stores new keys
        only), so at most one run answers."""
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1, self.words)
        hi = np.ascontiguousarray(keys[:, 0])
        lo = np.ascontiguousarray(keys[:, 1]) if self.words == 2 else None
        out = np.full(len(keys), -1, dtype=np.int64)
        for run in self._runs:
            pos = _positions(run, hi, lo)
            inside = pos < len(run[0])
            hit = np.zeros(len(keys), dtype=bool)
            hit[inside] = run[0][pos[inside]] == hi[inside]
            if lo is not None:
                hit[hit] = run[1][pos[hit]] == lo[hit]
            out[hit] = run[2][pos[hit]]
        return out

    def nbytes(self) -> int:
        return sum(h.nbytes + (lo.nbytes if lo is not None else 0) + i.nbytes for h, lo, i in self._runs)


def _positions(run, hi: np.ndarray, lo: np.ndarray | None) -> np.ndarray:
    """Where each key (hi, lo) sorts into the run: the first position whose key is not less than it.
    Example: run hi [1, 5, 5, 9], lo [0, 1, 3, 0]; key (5, 3) -> 2; key (5, 2) -> 2; key (6, 0) -> 3"""
    run_hi, run_lo = run[0], run[1]
    pos = np.searchsorted(run_hi, hi, side="left")
    if lo is not None and len(run_hi):
        # equal high words (rare for hashes): step over the run's keys with a smaller low word
        tied = np.flatnonzero(run_hi[np.minimum(pos, len(run_hi) - 1)] == hi)
        for q in tied.tolist():
            p = int(pos[q])
            while p < len(run_hi) and run_hi[p] == hi[q] and run_lo[p] < lo[q]:
                p += 1
            pos[q] = p
    return pos


def _merge(a, b):
    """Two sorted runs (no key in both) -> one sorted run: b's keys placed at their positions among a's."""
    n = len(a[0]) + len(b[0])
    at = _positions(a, b[0], b[1])
    at += np.arange(len(b[0]), dtype=at.dtype)  # each earlier key of b shifts the later ones by one
    rest = np.ones(n, dtype=bool)
    rest[at] = False
    merged = []
    for x, y in zip(a, b):
        if x is None:
            merged.append(None)
            continue
        out = np.empty(n, dtype=x.dtype)
        out[at] = y
        out[rest] = x
        merged.append(out)
    return tuple(merged)

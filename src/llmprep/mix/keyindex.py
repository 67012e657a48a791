"""First-seen lookups over fixed-size keys in bounded, flat memory: the main process's dedup memory.

Keys are 64-bit (one uint64 column) or 128-bit (two columns: hi, lo); each key maps to the id of the
row that first had it. Keys live in a few sorted numpy runs (a log-structured merge: a new batch is one
run, runs of similar size are merged), so 2M keys take 2M x (8 or 16 + 4) bytes and no Python object
per key. Lookups are vectorised binary searches.

Example: ix = KeyIndex(words=1); ix.add(np.array([[5], [7]], np.uint64), np.array([0, 1]))
         ix.find(np.array([[7], [9]], np.uint64)) -> array([1, -1])
"""

from __future__ import annotations

import numpy as np


class KeyIndex:
    """Sorted runs of (key, id); `find` returns the id stored for each key, or -1."""

    def __init__(self, words: int = 1):
        if words not in (1, 2):
            raise ValueError(f"words={words!r}: expected 1 (64-bit keys) or 2 (128-bit keys)")
        self.words = words
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (keys (n, words) sorted, ids int32)
        self.size = 0

    def add(self, keys: np.ndarray, ids: np.ndarray) -> None:
        """Store keys not yet present (the caller checked with `find`); ids are int32-sized row ids."""
        if len(keys) == 0:
            return
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1, self.words)
        order = self._order(keys)
        self._runs.append((keys[order], np.asarray(ids, dtype=np.int32)[order]))
        self.size += len(keys)
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            (k1, i1), (k2, i2) = self._runs.pop(), self._runs.pop()
            k, i = np.concatenate([k2, k1]), np.concatenate([i2, i1])
            order = self._order(k)
            self._runs.append((k[order], i[order]))

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Id stored for each key, or -1 where none. Keys are unique across runs (add stores new keys
        only), so at most one run answers."""
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1, self.words)
        out = np.full(len(keys), -1, dtype=np.int64)
        for run_keys, run_ids in self._runs:
            pos = np.searchsorted(run_keys[:, 0], keys[:, 0])
            inside = pos < len(run_keys)
            hit = np.zeros(len(keys), dtype=bool)
            hit[inside] = run_keys[pos[inside], 0] == keys[inside, 0]
            if self.words == 2:
                same = hit.copy()
                same[hit] = run_keys[pos[hit], 1] == keys[hit, 1]
                for q in np.flatnonzero(hit & ~same):  # equal high words, other low word: scan the range
                    p = pos[q] + 1
                    while p < len(run_keys) and run_keys[p, 0] == keys[q, 0] and run_keys[p, 1] != keys[q, 1]:
                        p += 1
                    same[q] = p < len(run_keys) and run_keys[p, 0] == keys[q, 0]
                    pos[q] = p
                hit = same
            out[hit] = run_ids[pos[hit]]
        return out

    def nbytes(self) -> int:
        return sum(k.nbytes + i.nbytes for k, i in self._runs)

    def _order(self, keys: np.ndarray) -> np.ndarray:
        return np.argsort(keys[:, 0], kind="stable") if self.words == 1 else np.lexsort((keys[:, 1], keys[:, 0]))

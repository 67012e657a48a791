"""MinHash signatures and LSH band keys, computed for a whole batch of rows at once.

A row's shingles arrive as 64-bit hashes (text.ngram_hashes). Permutation i maps a shingle hash h to
((a_i * h + b_i) mod 2^64) >> 32 and the signature keeps the minimum per permutation; (a_i, b_i) come
from xoshiro256++ seeded through SplitMix64. That is exactly what the `rensa` library (Rust, 0.4) computes,
so `rensa` is used where it is installed and gives the same signatures as the numpy path here, checked on
first use (as the fastokens encoder is): rensa 0.5 changed its permutations, fails that check and is not
used. numpy is the fallback on platforms without a rensa wheel; the keys are the same either way.

Fork safety: rensa runs on rayon's thread pool, and a process forked after that pool started inherits a
pool whose threads do not exist (the child's first rensa call waits forever). So a child forked from a
process that used rensa uses the numpy path (same signatures); prepare's workers set RAYON_NUM_THREADS=1
(the processes already fill the cores) before their first use.

Example: signatures(np.array([1, 2, 3], dtype=np.uint64), np.array([0, 3]), num_perm=4, seed=1)
-> a (1, 4) uint32 array; a row with no shingle is all 0xFFFFFFFF
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

_M64 = (1 << 64) - 1
_CHUNK = 1 << 14  # shingles per numpy step: 16k x 128 permutations x 8 bytes = 16 MB


def _splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & _M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return state, z ^ (z >> 31)


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _M64


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of each permutation: xoshiro256++ seeded by SplitMix64(seed), a made odd (as rensa does).

    Example: permutations(2, 42) -> (array([a0, a1], uint64), array([b0, b1], uint64)), a0 and a1 odd
    """
    s, state = [], seed & _M64
    for _ in range(4):
        state, value = _splitmix64(state)
        s.append(value)
    def next_u64() -> int:
        out = (_rotl((s[0] + s[3]) & _M64, 23) + s[0]) & _M64
        t = (s[1] << 17) & _M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return out

    a, b = [], []
    for _ in range(num_perm):
        a.append(next_u64() | 1)
        b.append(next_u64())
    return np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)


def signatures_numpy(flat: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures of rows flat[offsets[i]:offsets[i+1]], in numpy: (rows, num_perm) uint32."""
    a, b = permutations(num_perm, seed)
    rows = len(offsets) - 1
    out = np.full((rows, num_perm), 0xFFFFFFFF, dtype=np.uint32)
    row_of = np.repeat(np.arange(rows), np.diff(offsets))
    with np.errstate(over="ignore"):
        for i in range(0, len(flat), _CHUNK):
            r = row_of[i:i + _CHUNK]
            values = ((flat[i:i + _CHUNK, None] * a[None, :] + b[None, :]) >> np.uint64(32)).astype(np.uint32)
            starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
            first = r[starts]  # a row cut by the chunk edge gets the min of both parts
            out[first] = np.minimum(out[first], np.minimum.reduceat(values, starts, axis=0))
    return out


def _signatures_rensa(flat: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    import rensa

    _POOL["started"] = True
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        np.ascontiguousarray(flat, dtype=np.uint64), np.asarray(offsets, dtype=np.uint64), num_perm, seed)
    return np.array(matrix.to_rows(), dtype=np.uint32).reshape(len(offsets) - 1, num_perm)


_RENSA: dict[tuple[int, int], bool] = {}
_POOL = {"started": False, "inherited": False}  # rayon's pool started here / in the process we were forked from


def _after_fork_in_child() -> None:
    if _POOL["started"]:
        _POOL["inherited"] = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def rensa_verified(num_perm: int, seed: int) -> bool:
    """True when rensa is installed and gives the numpy path's signatures on a fixed probe (once per
    process and parameters): a rensa release that changed its hashing is never used silently. False in
    a process forked after its parent used rensa (see the module docstring)."""
    if _POOL["inherited"]:
        return False
    key = (num_perm, seed)
    if key not in _RENSA:
        try:
            import rensa  # noqa: F401
        except ImportError:
            _RENSA[key] = False
            return False
        probe = np.random.default_rng(0).integers(0, 2**63, 300, dtype=np.uint64) * np.uint64(2)
        offsets = np.array([0, 1, 1, 120, 300])
        _RENSA[key] = bool(np.array_equal(_signatures_rensa(probe, offsets, num_perm, seed),
                                          signatures_numpy(probe, offsets, num_perm, seed)))
    return _RENSA[key]


def signatures(flat: np.ndarray, offsets: np.ndarray, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """MinHash signatures, (rows, num_perm) uint32: rensa where verified identical, else numpy."""
    if len(offsets) <= 1:
        return np.zeros((0, num_perm), dtype=np.uint32)
    if rensa_verified(num_perm, seed):
        return _signatures_rensa(flat, offsets, num_perm, seed)
    return signatures_numpy(flat, offsets, num_perm, seed)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """LSH keys: one 64-bit hash per band of `rows` signature values, the band's index mixed in so two
    bands never share a key. Two rows are near-duplicate candidates when any key is equal.

    Example: band_keys(sig of shape (n, 128), bands=9, rows=13) -> (n, 9) uint64
    """
    n = sig.shape[0]
    out = np.empty((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(bands):
            acc = np.full(n, j + 1, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93)
            for v in sig[:, j * rows:(j + 1) * rows].T:
                acc = (acc ^ v.astype(np.uint64)) * np.uint64(0x100000001B3)  # FNV-style step per value
                acc ^= acc >> np.uint64(29)
            out[:, j] = acc
    return out

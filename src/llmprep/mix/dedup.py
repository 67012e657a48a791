"""Deduplication: fixed-size keys per row in the workers, keep-or-reject decisions in input order.

    worker:  example -> text -> normalize_text -> 16-byte exact key (xxh3-128)
                             -> units -> word/character 5-grams -> MinHash (128) -> 9 band keys (8 bytes)
    main:    Deduplicator.check(keys, where) in input order -> kept, or "duplicate of source:line"

`exact` removes rows whose normalised text (whitespace runs collapsed, case folded; both switchable)
equals an earlier kept row's. `near` does that, then removes rows that share an LSH band with an earlier
kept row: MinHash over 5-grams of words (CJK: of characters), 128 permutations, bands and rows chosen for
Jaccard 0.8 (9 bands of 13). The first row in input order stays; a later copy names it. Only keys of kept
rows are stored: about 36 bytes a kept row for exact, 110 more for near.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import xxhash

from llmprep.encode import int32_if_fits
from llmprep.errors import ConfigError
from llmprep.mix.keyindex import KeyIndex
from llmprep.mix.minhash import band_keys
from llmprep.mix.minhash import signatures as minhash_signatures
from llmprep.mix.text import UnitBatch, ngram_hashes, normalize_text

DEDUP_MODES = ("exact", "near", "none")


@dataclass(frozen=True)
class DedupConfig:
    """--dedup and its settings. Defaults: exact, whitespace collapsed, case folded; near: Jaccard 0.8
    over 5-grams (words; characters for CJK), 128 permutations."""

    mode: str = "exact"
    casefold: bool = True
    collapse_whitespace: bool = True
    threshold: float = 0.8
    ngram: int = 5
    num_perm: int = 128
    seed: int = 1

    def check(self) -> None:
        """Collect every bad setting and report them together."""
        problems = []
        if self.mode not in DEDUP_MODES:
            problems.append(f"--dedup {self.mode!r} is not valid; choose one of {', '.join(DEDUP_MODES)}")
        if not 0 < self.threshold < 1:
            problems.append(f"--dedup-threshold {self.threshold!r}: expected a Jaccard similarity in (0, 1), e.g. 0.8")
        if not isinstance(self.ngram, int) or self.ngram < 1:
            problems.append(f"--dedup-ngram {self.ngram!r}: expected a positive integer (words; characters for CJK)")
        if not isinstance(self.num_perm, int) or not 16 <= self.num_perm <= 1024:
            problems.append(f"--dedup-num-perm {self.num_perm!r}: expected an integer from 16 to 1024")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def lsh(self) -> tuple[int, int]:
        """(bands, rows per band) for the threshold: see lsh_params."""
        return lsh_params(self.threshold, self.num_perm)

    def describe(self) -> str:
        """How rows were compared, for reject reasons and the report."""
        norm = [x for x, on in (("whitespace collapsed", self.collapse_whitespace), ("case folded", self.casefold))
                if on]
        exact = "same text" + (f" ({', '.join(norm)})" if norm else "")
        if self.mode != "near":
            return exact
        b, r = self.lsh
        return (f"{exact}, or MinHash LSH near-duplicate: Jaccard >= {self.threshold} over {self.ngram}-grams of "
                f"words (CJK: characters), {self.num_perm} permutations, {b} bands x {r} rows")


_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 1.26 has only trapz


@lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands b and rows r (b * r <= num_perm) minimising the false-positive plus false-negative area of the
    S-curve 1 - (1 - s^r)^b around the threshold (the choice datasketch's MinHashLSH makes).

    Example: lsh_params(0.8, 128) -> (9, 13)
    """
    s = np.linspace(0.0, 1.0, 2001)
    best, best_err = (1, num_perm), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1 - (1 - s ** r) ** b
            below, above = s <= threshold, s >= threshold
            err = _trapezoid(p[below], s[below]) + _trapezoid(1 - p[above], s[above])
            if err < best_err:
                best, best_err = (b, r), err
    return best


@dataclass
class DedupKeys:
    """Per-row keys, in row order: exact (n, 2) uint64 (xxh3-128 of the normalised text, high and low
    words); near (n, bands) uint64 band keys, 0 where the text has no unit to compare (only exact applies)."""

    exact: np.ndarray
    near: np.ndarray | None = None
    signatures: np.ndarray | None = None  # (n, num_perm) uint32 MinHash, when asked for (the doctor's estimates)

    def __len__(self) -> int:
        return len(self.exact)


def dedup_keys(texts: list[str], cfg: DedupConfig, *, signatures: bool = False,
               units: UnitBatch | None = None) -> DedupKeys:
    """The keys of each text (worker side; texts from text.example_text). `signatures` keeps the near
    mode's MinHash signatures too (their agreement estimates Jaccard similarity); `units`: the texts'
    UnitBatch when the caller has it already (decontamination uses the same).

    Example: dedup_keys(["Hello  World", "hello world"], DedupConfig()).exact -> two equal rows
    """
    digests = b"".join(xxhash.xxh3_128_digest(normalize_text(
        t, casefold=cfg.casefold, collapse_whitespace=cfg.collapse_whitespace).encode("utf-8", "surrogatepass"))
        for t in texts)
    exact = np.frombuffer(digests, dtype=">u8").astype(np.uint64).reshape(len(texts), 2)  # (high, low) words
    if cfg.mode != "near":
        return DedupKeys(exact)
    flat, offsets = ngram_hashes(units if units is not None else texts, cfg.ngram, cfg.ngram, short_runs=True)
    bands, rows = cfg.lsh
    sig = minhash_signatures(flat, offsets, cfg.num_perm, cfg.seed)
    near = band_keys(sig, bands, rows)
    near[np.diff(offsets) == 0] = 0
    return DedupKeys(exact, near, sig if signatures else None)


@dataclass(frozen=True)
class Duplicate:
    """A removed row's kept copy: `of` is "source:line"; `how` is "exact" or "near"; `kept` its id among the
    kept rows (Deduplicator.where(kept) == of)."""

    of: str
    how: str
    kept: int = field(default=-1, compare=False)


class Deduplicator:
    """Decides, in input order, which rows stay: the first of each group of duplicates.

    Example: d = Deduplicator(DedupConfig()); k = dedup_keys(["a", "A", "b"], d.cfg)
             d.check(k, ["x.jsonl"] * 3, [1, 2, 3]) -> [None, Duplicate("x.jsonl:1", "exact"), None]
    """

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self._exact = KeyIndex(words=2)
        self._near = KeyIndex(words=1)
        self._sources: list[str] = []
        self._source_id: dict[str, int] = {}
        self._where: list[np.ndarray] = []  # per batch: (kept rows, 2) int32 (or int64) [source id, line]
        self._starts: list[int] = []  # id of each block's first row
        self.kept = 0
        self.removed = {"exact": 0, "near": 0}

    def check(self, keys: DedupKeys, sources: list[str], lines: list[int]) -> list[Duplicate | None]:
        """For each row (in input order, after every earlier batch): None if it stays, else its kept copy."""
        if self.cfg.mode == "none":
            return [None] * len(keys)
        n = len(keys)
        found = self._exact.find(keys.exact)
        how = np.where(found >= 0, 0, -1)  # 0 exact, 1 near, -1 not (yet) a duplicate
        near = keys.near if self.cfg.mode == "near" else None
        if near is not None:
            band_hits = self._near.find(near.reshape(-1, 1)).reshape(near.shape)
            band_hits[near == 0] = -1
            first = np.where(band_hits >= 0, band_hits, np.iinfo(np.int64).max).min(axis=1)
            use = (found < 0) & (first != np.iinfo(np.int64).max)
            found[use], how[use] = first[use], 1
        # Rows of this batch against each other. A row that shares no key with an earlier row of the batch
        # stays (vectorised); the few that do are decided in order, against kept rows only.
        earlier = _shares_earlier_key(keys.exact, near) & (found < 0)
        if earlier.any():
            kept_rows = self._in_order(keys.exact, near, found, how, earlier)
        else:
            kept_rows = np.flatnonzero(found < 0).tolist()
        self._store(keys, kept_rows, sources, lines)
        out: list[Duplicate | None] = [None] * n
        for i in np.flatnonzero(found >= 0):
            kind = "exact" if how[i] == 0 else "near"
            self.removed[kind] += 1
            out[i] = Duplicate(self.where(int(found[i])), kind, int(found[i]))
        return out

    def _in_order(self, exact: np.ndarray, near: np.ndarray | None, found: np.ndarray, how: np.ndarray,
                  earlier: np.ndarray) -> list[int]:
        """Decide the rows of a batch in order where some share a key with an earlier row of the batch;
        fills found/how for the duplicates and returns the kept rows."""
        seen_exact: dict[tuple[int, int], int] = {}
        seen_band: dict[int, int] = {}
        kept_rows: list[int] = []
        for i in np.flatnonzero(found < 0).tolist():
            ek = (int(exact[i, 0]), int(exact[i, 1]))
            if earlier[i]:
                if ek in seen_exact:
                    found[i], how[i] = seen_exact[ek], 0
                    continue
                hits = [seen_band[int(k)] for k in near[i] if k and int(k) in seen_band] if near is not None else []
                if hits:
                    found[i], how[i] = min(hits), 1
                    continue
            rid = self.kept + len(kept_rows)
            kept_rows.append(i)
            seen_exact[ek] = rid
            if near is not None:
                seen_band.update((int(k), rid) for k in near[i] if k)
        return kept_rows

    def _store(self, keys: DedupKeys, kept_rows: list[int], sources: list[str], lines: list[int]) -> None:
        if not kept_rows:
            return
        ids = np.arange(self.kept, self.kept + len(kept_rows))
        rows = np.asarray(kept_rows)
        self._exact.add(keys.exact[rows], ids)
        if self.cfg.mode == "near" and keys.near is not None:
            bands = keys.near[rows]
            mask = bands != 0
            self._near.add(bands[mask].reshape(-1, 1), np.broadcast_to(ids[:, None], bands.shape)[mask])
        src = [self._source_id.setdefault(sources[i], len(self._source_id)) for i in kept_rows]
        if len(self._sources) < len(self._source_id):
            self._sources = list(self._source_id)
        self._starts.append(self.kept)
        # int32 unless a line number needs more: the index holds this for every kept row of the run
        self._where.append(int32_if_fits(np.column_stack([np.asarray(src, dtype=np.int64),
                                                          np.asarray([lines[i] for i in kept_rows], dtype=np.int64)])))
        self.kept += len(kept_rows)

    def where(self, rid: int) -> str:
        """"source:line" of kept row `rid`."""
        b = bisect.bisect_right(self._starts, rid) - 1
        src, line = self._where[b][rid - self._starts[b]]
        return f"{self._sources[src]}:{line}"

    def nbytes(self) -> int:
        """Memory held by the decisions so far (keys, ids, locations)."""
        return self._exact.nbytes() + self._near.nbytes() + sum(b.nbytes for b in self._where)


def _shares_earlier_key(exact: np.ndarray, near: np.ndarray | None) -> np.ndarray:
    """For each row of a batch: does an earlier row of the batch have its exact key or one of its band keys?

    Example: exact keys [k1, k2, k1] -> [False, False, True]
    """
    n = len(exact)
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    _, first = np.unique(exact, axis=0, return_index=True)
    out[np.setdiff1d(np.arange(n), first)] = True
    if near is not None:
        flat = near.reshape(-1)
        rows = np.repeat(np.arange(n), near.shape[1])
        valid = flat != 0
        _, first = np.unique(flat[valid], return_index=True)
        repeated = np.ones(valid.sum(), dtype=bool)
        repeated[first] = False  # np.unique's index is the first occurrence, and rows are in order
        out[rows[valid][repeated]] = True
    return out

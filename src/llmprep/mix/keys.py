"""The per-row keys a shard task computes (in the workers), next to each row's length and trained tokens:
what the main process needs to decide dedup and decontamination without the rows' text.

    RowKeys(DedupConfig("near"), bench).columns(["Hi\\nHello!", ...])
    -> {"dedup_exact": (n, 2) uint64, "dedup_near": (n, 9) uint64, "benchmark": (n,) int32 item id or -1}

`settings()` names everything the columns depend on; it is part of the shard cache key, so a cached shard
always carries the keys of this run's --dedup settings and benchmark files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmprep.mix.decontaminate import BenchmarkIndex
from llmprep.mix.dedup import DedupConfig, dedup_keys

COLUMNS = ("dedup_exact", "dedup_near", "benchmark")


@dataclass(frozen=True, eq=False)
class RowKeys:
    """--dedup settings and the benchmark index (None without --decontaminate); travels once per worker."""

    dedup: DedupConfig
    bench: BenchmarkIndex | None = None

    @property
    def active(self) -> bool:
        return self.dedup.mode != "none" or self.bench is not None

    def settings(self) -> dict:
        """What changes the columns. Example: exact dedup, no benchmark ->
        {"dedup": {"mode": "exact", "casefold": True, "collapse_whitespace": True}, "decontaminate": None}"""
        d = self.dedup
        dedup = None
        if d.mode != "none":
            dedup = {"mode": d.mode, "casefold": d.casefold, "collapse_whitespace": d.collapse_whitespace}
            if d.mode == "near":
                dedup |= {"threshold": d.threshold, "ngram": d.ngram, "num_perm": d.num_perm, "seed": d.seed}
        return {"dedup": dedup, "decontaminate": self.bench.fingerprint() if self.bench is not None else None}

    def columns(self, texts: list[str], *, bench: bool = True) -> dict[str, np.ndarray]:
        """Per-row keys of the rows whose texts (mix.text.example_text) are given, in row order (dedup keys
        only with bench=False: rows truncation dropped take part in dedup, not in decontamination)."""
        out: dict[str, np.ndarray] = {}
        if self.dedup.mode != "none":
            keys = dedup_keys(texts, self.dedup)
            out["dedup_exact"] = keys.exact
            if keys.near is not None:
                out["dedup_near"] = keys.near
        if self.bench is not None and bench:
            out["benchmark"] = self.bench.match(texts).astype(np.int32)
        return out

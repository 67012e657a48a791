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

from llmprep.mix.decontaminate import BenchmarkIndex, DecontConfig
from llmprep.mix.dedup import DedupConfig, dedup_keys
from llmprep.mix.text import UnitBatch

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
        """What changes the columns, by the option that sets it: part of the shard cache key, and the cache's
        miss reason names the option that changed. Every value is given even where it has no effect (near
        settings under --dedup exact), so that turning a feature on names that one option.

        Example: --dedup exact, no benchmark -> {"dedup": ["exact", 128, 1], "dedup_keep_case": False,
        "dedup_keep_whitespace": False, "dedup_threshold": 0.8, "dedup_ngram": 5, "decontaminate": None,
        "decontaminate_ngram_words": 13, "decontaminate_ngram_chars": 13}
        """
        d, b = self.dedup, self.bench
        c = b.cfg if b is not None else DecontConfig()
        return {"dedup": [d.mode, d.num_perm, d.seed], "dedup_keep_case": not d.casefold,
                "dedup_keep_whitespace": not d.collapse_whitespace, "dedup_threshold": d.threshold,
                "dedup_ngram": d.ngram, "decontaminate": b.content if b is not None else None,
                "decontaminate_ngram_words": c.ngram_words, "decontaminate_ngram_chars": c.ngram_chars}

    def columns(self, texts: list[str], *, bench: bool = True) -> dict[str, np.ndarray]:
        """Per-row keys of the rows whose texts (mix.text.example_text) are given, in row order (dedup keys
        only with bench=False: rows truncation dropped take part in dedup, not in decontamination)."""
        out: dict[str, np.ndarray] = {}
        bench = self.bench is not None and bench
        units = UnitBatch.of(texts) if bench and self.dedup.mode == "near" else None  # both use the same units
        if self.dedup.mode != "none":
            keys = dedup_keys(texts, self.dedup, units=units)
            out["dedup_exact"] = keys.exact
            if keys.near is not None:
                out["dedup_near"] = keys.near
        if bench:
            out["benchmark"] = self.bench.match(units if units is not None else texts).astype(np.int32)
        return out

"""The mix plan: how many times each kept row of each source goes into the output, from trained tokens.

Input: per source, the trained-token count of each kept row (arrays, in input order). Output: per row a
use count (0: left out, dropped with reason `mix`; 1: once; 2+: repeated) and a per-source summary.
Whole examples only. A source gets floor(epochs) full passes, and the fractional rest is a seeded random
subset: the prefix of a seeded permutation whose tokens come closest to the rest, then the one row in or
out that best closes the gap. Seeds come from the recipe seed and the source's name, so one source's
selection does not change when another source changes.

Example: sources {"a": [10] * 100, "b": [10] * 100}, shares a 0.75, b 0.25, total_tokens 1000
-> a: 75 rows (epochs 0.75), b: 25 rows (epochs 0.25); shares 0.75 / 0.25
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from llmprep.mix.recipe import Recipe

TOLERANCE = 0.01  # achieved share within 1% (relative) of the target


@dataclass
class SourcePlan:
    """One source's selection and summary. counts[i]: times row i is used."""

    name: str
    counts: np.ndarray
    target_share: float
    share: float
    rows: int
    trained_tokens: int
    epochs: float
    available_rows: int
    available_tokens: int
    target_tokens: int
    reason: str | None = None  # why the share is not within TOLERANCE of the target

    def summary(self) -> dict:
        """report.json's `mix.sources` entry."""
        out = {"name": self.name, "target_share": round(self.target_share, 6), "share": round(self.share, 6),
               "rows": self.rows, "trained_tokens": self.trained_tokens, "epochs": round(self.epochs, 4),
               "available_rows": self.available_rows, "available_tokens": self.available_tokens}
        if self.reason:
            out["reason"] = self.reason
        return out

    def order(self) -> np.ndarray:
        """Row indices in output order: every row used at least once (input order), then those used at
        least twice, and so on. Example: counts [2, 0, 1] -> [0, 2, 0]"""
        return np.concatenate([np.flatnonzero(self.counts > e) for e in range(int(self.counts.max(initial=0)))]
                              or [np.zeros(0, dtype=np.int64)])


@dataclass
class MixPlan:
    sources: list[SourcePlan]
    total_tokens: int  # achieved

    def summary(self) -> list[dict]:
        return [s.summary() for s in self.sources]


def plan_mix(recipe: Recipe, tokens: dict[str, np.ndarray]) -> MixPlan:
    """Choose the rows of each source (tokens[name]: trained tokens of each kept row) to meet the recipe.

    Example: see the module docstring.
    """
    avail = {s.name: int(np.asarray(tokens.get(s.name, []), dtype=np.int64).sum()) for s in recipe.sources}
    shares = [s for s in recipe.sources if s.amount == "share"]
    if recipe.scarcest:
        usable = [s for s in shares if avail[s.name] > 0]
        budget = min((avail[s.name] / s.value for s in usable), default=0.0)
    else:
        budget = float(recipe.total_tokens)
    plans: list[SourcePlan] = []
    for src in recipe.sources:
        t = np.asarray(tokens.get(src.name, []), dtype=np.int64)
        rng = np.random.default_rng([recipe.seed, zlib.crc32(src.name.encode())])
        if src.amount == "rows":
            counts = _rows(len(t), int(src.value), rng)
            target = int(t @ counts)
        else:
            target = int(round(src.value * budget)) if src.amount == "share" else int(src.value)
            counts = _tokens(t, target, rng)
        plans.append(SourcePlan(src.name, counts, 0.0, 0.0, int(counts.sum()), int(t @ counts),
                                float(t @ counts) / avail[src.name] if avail[src.name] else 0.0,
                                len(t), avail[src.name], target))
    total = sum(p.trained_tokens for p in plans)
    targets = sum(p.target_tokens for p in plans)
    for p, src in zip(plans, recipe.sources):
        p.target_share = src.value if src.amount == "share" else (p.target_tokens / targets if targets else 0.0)
        p.share = p.trained_tokens / total if total else 0.0
        if abs(p.share - p.target_share) > TOLERANCE * p.target_share:
            p.reason = _reason(p, tokens.get(src.name, np.zeros(0)), total, targets)
    return MixPlan(plans, total)


def _rows(n: int, want: int, rng: np.random.Generator) -> np.ndarray:
    """`want` rows out of n: want // n full passes plus a seeded subset of the rest."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    counts = np.full(n, want // n, dtype=np.int64)
    counts[rng.permutation(n)[:want % n]] += 1
    return counts


def _tokens(t: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Whole rows whose trained tokens come closest to `target`: full passes, then a seeded subset."""
    n, total = len(t), int(t.sum())
    if n == 0 or total == 0:
        return np.zeros(n, dtype=np.int64)
    full, rest = divmod(target, total)
    counts = np.full(n, full, dtype=np.int64)
    perm = rng.permutation(n)
    cum = np.r_[0, np.cumsum(t[perm])]
    m = int(np.abs(cum - rest).argmin())
    chosen = np.zeros(n, dtype=bool)
    chosen[perm[:m]] = True
    gap = rest - int(cum[m])  # > 0: short of the target; < 0: over it
    pool = perm[m:] if gap > 0 else perm[:m]
    if gap and len(pool):
        j = pool[np.abs(t[pool] - abs(gap)).argmin()]
        if abs(abs(gap) - t[j]) < abs(gap):  # one row in (or out) that gets closer
            chosen[j] = gap > 0
    return counts + chosen


def _reason(p: SourcePlan, t: np.ndarray, total: int, targets: int) -> str:
    if p.available_rows == 0 or p.available_tokens == 0:
        return "no kept rows with trained tokens in this source"
    if abs(p.trained_tokens - p.target_tokens) > TOLERANCE * max(p.target_tokens, 1):
        return (f"whole examples: the closest selection has {p.trained_tokens:,} of the {p.target_tokens:,} target "
                f"tokens (rows of up to {int(np.max(t)):,} tokens)")
    return (f"the other sources give {total - p.trained_tokens:,} trained tokens where the recipe asks "
            f"{targets - p.target_tokens:,}, so this source's share moves although its own count is met")

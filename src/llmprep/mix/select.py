"""The main process's part of --decontaminate, --dedup and --mix: decisions in input order from per-row
metadata only (no rows, no text), then the records of the rows it removed, read back for rejected.jsonl.

    shard metadata, in task order -> RowFilter.add: benchmark matches, then dedup -> rows["clean"]
    after the split (clean rows)  -> mix_order: the recipe's plan over the train rows -> output order,
                                     rows left out (dropped, reason `mix`), repeats (a row again per epoch)
    rejected.jsonl                -> removed_records: each removed row's record, read again from its task's
                                     input one task at a time (the driver never held it)

Example: rows "a", "A ", "b" of x.jsonl with --dedup exact -> clean [True, False, True]; row 2 is rejected
with reason "duplicate: ..." and duplicate_of "x.jsonl:1".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from llmprep.errors import LlmprepError
from llmprep.examples import Rejected
from llmprep.mix.dedup import DedupKeys, Deduplicator
from llmprep.mix.keys import RowKeys
from llmprep.mix.plan import MixPlan, plan_mix
from llmprep.mix.recipe import Recipe
from llmprep.records import parse_record

MIX_REASON = "mix"  # every reason of a row the mix left out starts with this


@dataclass
class Removal:
    """A row removed after its shard was processed: `row` within the shard, its record and line."""

    row: int
    record: int
    line: int
    reason: str
    dropped: bool = False  # left out by the mix (dropped), not rejected (dedup, decontamination)
    duplicate_of: str | None = None
    benchmark: str | None = None


class RowFilter:
    """Decontamination, then dedup, shard by shard in input order; keeps only the removals (and the
    dedup index of the kept rows' keys, llmprep.mix.dedup)."""

    def __init__(self, keys: RowKeys | None, files: list[str], source_of_file: list[str]):
        self.keys = keys
        self.files = files
        self.source_of_file = source_of_file  # --mix: the recipe source of each file; else the file itself
        self.dedup = Deduplicator(keys.dedup) if keys is not None and keys.dedup.mode != "none" else None
        self.removed: dict[int, list[Removal]] = {}  # meta number -> its removals, by row
        self.per_source: dict[str, Counter] = {}
        self.reasons: dict[tuple[bool, str], int] = {}  # (dropped, reason) -> rows
        self._flushed: dict[tuple[bool, str], int] = {}
        self.bench_rows = np.zeros(len(keys.bench.files) if keys and keys.bench else 0, np.int64)

    def add(self, k: int, meta) -> None:
        """Decide shard k's rows (call in input order). Pops the key columns, adds rows["clean"]."""
        rows = meta.rows
        n = len(rows["length"])
        clean = np.ones(n, dtype=bool)
        bench = rows.pop("benchmark", None)
        exact, near = rows.pop("dedup_exact", None), rows.pop("dedup_near", None)
        source = self.source_of_file[meta.file]
        path = self.files[meta.file]
        out: list[Removal] = []
        if bench is not None:
            index = self.keys.bench
            for j in np.flatnonzero(bench >= 0).tolist():
                item = int(bench[j])
                f = int(index.file_of[item])
                self.bench_rows[f] += 1
                out.append(self._removal(rows, j, self._bench_reason(index.files[f]), benchmark=index.where[item]))
                self._count(source, "benchmark")
            clean[bench >= 0] = False
        if self.dedup is not None and exact is not None:
            self._dedup(meta, clean, exact, near, path, source, out)
        rows["clean"] = clean
        if out:
            self.removed[k] = sorted(out, key=lambda r: r.row)

    def _dedup(self, meta, clean: np.ndarray, exact: np.ndarray, near: np.ndarray | None, path: str, source: str,
               out: list[Removal]) -> None:
        """Dedup the shard's clean rows and the examples truncation dropped, merged in line order: a copy of a
        dropped example is a duplicate too (so the count does not depend on --max-length). A dropped example
        found to be a duplicate moves from meta.dropped to meta.rejected (call before Accounts.add)."""
        rows, sel = meta.rows, np.flatnonzero(clean)
        dk = meta.dropped_keys if "dedup_exact" in meta.dropped_keys else {}
        d_lines = np.asarray([r.line for r in meta.dropped] if dk else [], dtype=np.int64)
        lines = np.concatenate([rows["line"][sel], d_lines])
        ex = np.concatenate([exact[sel], dk["dedup_exact"]]) if dk else exact[sel]
        nr = None
        if near is not None:
            nr = np.concatenate([near[sel], dk["dedup_near"]]) if dk else near[sel]
        order = np.argsort(lines, kind="stable")
        keys = DedupKeys(ex[order], nr[order] if nr is not None else None)
        moved: dict[int, Rejected] = {}
        for pos, dup in zip(order.tolist(), self.dedup.check(keys, [path] * len(order), lines[order].tolist())):
            if dup is None:
                continue
            self._count(source, dup.how)
            if pos < len(sel):
                j = int(sel[pos])
                clean[j] = False
                out.append(self._removal(rows, j, self._dup_reason(dup.how), duplicate_of=dup.of))
            else:
                r = meta.dropped[pos - len(sel)]
                moved[pos - len(sel)] = Rejected(r.source, r.line, None, self._dup_reason(dup.how), r.record,
                                                 duplicate_of=dup.of)
        meta.dropped_keys = {}
        if moved:
            meta.dropped = [r for i, r in enumerate(meta.dropped) if i not in moved]
            meta.rejected = sorted(meta.rejected + list(moved.values()), key=lambda r: r.line)

    def drop_for_mix(self, index, rows: np.ndarray, reason_of_row: list[str]) -> None:
        """Rows (global numbers) the mix left out, each with its source's reason."""
        for g, reason in zip(rows.tolist(), reason_of_row):
            k = int(index.columns["shard"][g])
            removal = Removal(g - int(index.shard_rows[k]), int(index.columns["record"][g]),
                              int(index.columns["line"][g]), reason, dropped=True)
            self.removed.setdefault(k, []).append(removal)
            self.reasons[(True, reason)] = self.reasons.get((True, reason), 0) + 1
        for k in {int(index.columns["shard"][g]) for g in rows.tolist()}:
            self.removed[k].sort(key=lambda r: (r.dropped, r.row))

    def flush(self) -> tuple[int, int, dict[tuple[bool, str], int]]:
        """(rejected, dropped, rows per (dropped, reason)) removed since the last flush (for the counts)."""
        new = {k: n - self._flushed.get(k, 0) for k, n in self.reasons.items() if n != self._flushed.get(k, 0)}
        self._flushed = dict(self.reasons)
        rejected = sum(n for (dropped, _), n in new.items() if not dropped)
        return rejected, sum(new.values()) - rejected, new

    def report(self) -> dict:
        """report.json's "dedup" and "decontamination" sections (the latter only with --decontaminate)."""
        out = {}
        if self.keys is None:
            return {"dedup": {"mode": "none"}}
        sources = sorted(self.per_source)
        if self.dedup is not None:
            d = self.dedup
            per = {s: {"exact": self.per_source[s]["exact"], "near": self.per_source[s]["near"]} for s in sources}
            out["dedup"] = {"mode": d.cfg.mode, "compared": d.cfg.describe(),
                            "removed": d.removed["exact"] + d.removed["near"], **d.removed,
                            "per_source": {s: c for s, c in per.items() if c["exact"] + c["near"]}}
        else:
            out["dedup"] = {"mode": "none"}
        bench = self.keys.bench
        if bench is not None:
            c = bench.cfg
            out["decontamination"] = {
                "ngram_words": c.ngram_words, "ngram_chars": c.ngram_chars, "min_item_units": c.min_item_units,
                "removed": int(self.bench_rows.sum()),
                "files": [{**st, "rows_removed": int(n)} for st, n in zip(bench.stats, self.bench_rows)],
                "per_source": {s: self.per_source[s]["benchmark"] for s in sources if self.per_source[s]["benchmark"]}}
        return out

    def _removal(self, rows: dict, j: int, reason: str, **extra) -> Removal:
        self.reasons[(False, reason)] = self.reasons.get((False, reason), 0) + 1
        return Removal(j, int(rows["record"][j]), int(rows["line"][j]), reason, **extra)

    def _count(self, source: str, what: str) -> None:
        self.per_source.setdefault(source, Counter())[what] += 1

    def _bench_reason(self, file: str) -> str:
        c = self.keys.bench.cfg
        return (f"benchmark: shares a {c.ngram_words}-word n-gram ({c.ngram_chars} characters in scripts written "
                f"without spaces) with an item of {file}")

    def _dup_reason(self, how: str) -> str:
        cfg = self.dedup.cfg
        if how == "exact":
            return "duplicate: " + cfg.describe().split(", or ")[0] + " as an earlier row"
        b, r = cfg.lsh
        return (f"near-duplicate of an earlier row (MinHash LSH: Jaccard >= {cfg.threshold} over {cfg.ngram}-grams, "
                f"{cfg.num_perm} permutations, {b} bands x {r} rows)")


def mix_order(recipe: Recipe, train: np.ndarray, source: np.ndarray,
              weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str], MixPlan]:
    """The recipe's plan over the train rows (global numbers, input order; `source` is each row's recipe
    source, `weights` its trained tokens) -> (output order, rows left out, their reasons, the plan).

    Output order: every selected row once in input order, then the rows used a second time, and so on
    (an epoch after another, whole examples). Example: counts [2, 0, 1] over rows [4, 7, 9]
    -> order [4, 9, 4], left out [7]
    """
    plan = plan_mix(recipe, {s.name: weights[source == i] for i, s in enumerate(recipe.sources)})
    counts = np.zeros(len(train), dtype=np.int64)
    for i, sp in enumerate(plan.sources):
        counts[source == i] = sp.counts
    order = np.concatenate([train[counts > e] for e in range(int(counts.max(initial=0)))] or
                           [np.zeros(0, np.int64)])
    left_out = np.flatnonzero(counts == 0)
    reasons = {i: f"{MIX_REASON}: not selected; source {sp.name!r} is down-sampled to {sp.epochs:.4g} of its "
                  f"trained tokens to meet its target share {sp.target_share:.4g}"
               for i, sp in enumerate(plan.sources)}
    return order, train[left_out], [reasons[int(i)] for i in source[left_out]], plan


def removed_records(tasks: list, metas: list, removed: dict[int, list[Removal]],
                    shard_size: int) -> Iterator[tuple[int, list[Rejected], list[Rejected]]]:
    """(meta number, rejected, dropped) of every shard with removals, in input order, each Rejected with
    its record read again from the input (one task's records in memory at a time)."""
    by_task: dict[int, list[int]] = {}
    for k in sorted(removed):
        by_task.setdefault(metas[k].task, []).append(k)
    for t in sorted(by_task):
        shards = {metas[k].shard: k for k in by_task[t]}
        for n, records in enumerate(tasks[t].shards(shard_size)):
            if n not in shards:
                continue
            k = shards[n]
            rejected, dropped = [], []
            for r in removed[k]:
                rec = parse_record(records[r.record])
                if rec.line != r.line:  # the file was rewritten while the run read it
                    raise LlmprepError(f"INPUT {rec.source!r} changed during the run (line {r.line} is now at "
                                       f"{rec.line}); nothing was written")
                item = Rejected(rec.source, r.line, None, r.reason, rec.data if rec.data is not None else rec.raw,
                                r.duplicate_of, r.benchmark)
                (dropped if r.dropped else rejected).append(item)
            yield k, rejected, dropped

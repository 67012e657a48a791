"""The main process's part of --decontaminate, --dedup and --mix: decisions in input order from per-row
metadata only (no rows, no text), then the records of the rows it removed, read back for rejected.jsonl.

    shard metadata, in task order -> RowFilter.add: benchmark matches, then dedup -> rows["clean"]
    after the split (clean rows)  -> mix_order: the recipe's plan over the train rows -> output order,
                                     rows left out (dropped, reason `mix`), repeats (a row again per epoch)
    rejected.jsonl                -> RowFilter.records: each removed row's record, read again from its task's
                                     input one task at a time (the driver never held it)

Removed rows are kept as a few numpy arrays per shard (row, record, line, what, which), not as an object
per row: the reason and the kept copy's "file:line" are made when rejected.jsonl is written.

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
BENCHMARK, EXACT, NEAR, MIX = range(4)  # what removed a row


@dataclass
class Removed:
    """One shard's removed rows, in row order. `which`: the benchmark item (BENCHMARK), the kept copy's id
    among the dedup's kept rows (EXACT, NEAR), or the recipe source (MIX)."""

    row: np.ndarray  # within the shard
    record: np.ndarray  # within the shard's records
    line: np.ndarray
    what: np.ndarray  # BENCHMARK | EXACT | NEAR | MIX
    which: np.ndarray

    @classmethod
    def of(cls, rows: dict, local: list[int] | np.ndarray, what: list[int] | np.ndarray,
           which: list[int] | np.ndarray) -> "Removed":
        local = np.asarray(local, dtype=np.int64)
        return cls(local.astype(np.int32), rows["record"][local].astype(np.int32), rows["line"][local],
                   np.asarray(what, dtype=np.int8), np.asarray(which, dtype=np.int64))

    def __add__(self, other: "Removed") -> "Removed":
        cols = {k: np.concatenate([getattr(self, k), getattr(other, k)]) for k in self.__dataclass_fields__}
        order = np.lexsort((cols["row"], cols["what"] == MIX))  # rejects by row, then the mix's drops by row
        return Removed(**{k: v[order] for k, v in cols.items()})


class RowFilter:
    """Decontamination, then dedup, shard by shard in input order; keeps the removals (compact) and the
    dedup index of the kept rows' keys (llmprep.mix.dedup)."""

    def __init__(self, keys: RowKeys | None, files: list[str], source_of_file: list[str]):
        self.keys = keys
        self.files = files
        self.source_of_file = source_of_file  # --mix: the recipe source of each file; else the file itself
        self.dedup = Deduplicator(keys.dedup) if keys is not None and keys.dedup.mode != "none" else None
        self.bench = keys.bench if keys is not None else None
        self.removed: dict[int, Removed] = {}  # meta number -> its removed rows
        self.per_source: dict[str, Counter] = {}
        self.reasons: dict[tuple[bool, str], int] = {}  # (dropped, reason) -> rows, what Accounts counts
        self._flushed: dict[tuple[bool, str], int] = {}
        self.bench_rows = np.zeros(len(self.bench.files) if self.bench is not None else 0, np.int64)
        self.mix_reasons: list[str] = []

    def add(self, k: int, meta) -> None:
        """Decide shard k's rows (call in input order, before Accounts.add). Pops the key columns, adds
        rows["clean"]."""
        rows = meta.rows
        clean = np.ones(len(rows["length"]), dtype=bool)
        bench = rows.pop("benchmark", None)
        exact, near = rows.pop("dedup_exact", None), rows.pop("dedup_near", None)
        source = self.source_of_file[meta.file]
        local: list[int] = []
        what: list[int] = []
        which: list[int] = []
        if bench is not None:
            hit = np.flatnonzero(bench >= 0)
            files = self.bench.file_of[bench[hit]]
            self.bench_rows += np.bincount(files, minlength=len(self.bench_rows))
            for f, n in zip(*np.unique(files, return_counts=True)):
                self._count_reason(self.bench_reason(int(f)), int(n))
            self._count(source, "benchmark", len(hit))
            local += hit.tolist()
            what += [BENCHMARK] * len(hit)
            which += bench[hit].tolist()
            clean[hit] = False
        if self.dedup is not None and exact is not None:
            for j, dup in self._dedup(meta, clean, exact, near, source):
                local.append(j)
                what.append(EXACT if dup.how == "exact" else NEAR)
                which.append(dup.kept)
                self._count_reason(self.dup_reason(dup.how), 1)
        rows["clean"] = clean
        if local:
            order = np.argsort(local, kind="stable")
            self.removed[k] = Removed.of(rows, np.asarray(local)[order], np.asarray(what)[order],
                                         np.asarray(which)[order])

    def _dedup(self, meta, clean: np.ndarray, exact: np.ndarray, near: np.ndarray | None,
               source: str) -> list[tuple[int, object]]:
        """Dedup the shard's clean rows and the examples truncation dropped, merged in line order: a copy of a
        dropped example is a duplicate too (so the count does not depend on --max-length). A dropped example
        found to be a duplicate moves from meta.dropped to meta.rejected (Accounts.add writes it). Returns
        (row, Duplicate) of the rows found to be duplicates (and marks them not clean)."""
        rows, sel = meta.rows, np.flatnonzero(clean)
        dk = meta.dropped_keys if "dedup_exact" in meta.dropped_keys else {}
        meta.dropped_keys = {}
        d_lines = np.asarray([r.line for r in meta.dropped] if dk else [], dtype=np.int64)
        lines = np.concatenate([rows["line"][sel], d_lines])
        ex = np.concatenate([exact[sel], dk["dedup_exact"]]) if dk else exact[sel]
        nr = None
        if near is not None:
            nr = np.concatenate([near[sel], dk["dedup_near"]]) if dk else near[sel]
        order = np.argsort(lines, kind="stable")
        keys = DedupKeys(ex[order], nr[order] if nr is not None else None)
        path = self.files[meta.file]
        found, moved = [], {}
        for pos, dup in zip(order.tolist(), self.dedup.check(keys, [path] * len(order), lines[order].tolist())):
            if dup is None:
                continue
            self._count(source, dup.how, 1)
            if pos < len(sel):
                clean[sel[pos]] = False
                found.append((int(sel[pos]), dup))
            else:
                r = meta.dropped[pos - len(sel)]
                moved[pos - len(sel)] = Rejected(r.source, r.line, None, self.dup_reason(dup.how), r.record,
                                                 duplicate_of=dup.of)
        if moved:
            meta.dropped = [r for i, r in enumerate(meta.dropped) if i not in moved]
            meta.dropped_trained = [n for i, n in enumerate(meta.dropped_trained) if i not in moved]
            meta.rejected = sorted(meta.rejected + list(moved.values()), key=lambda r: r.line)
        return found

    def drop_for_mix(self, index, rows: np.ndarray, source: np.ndarray, reasons: list[str]) -> None:
        """Rows (global numbers, ascending) the mix left out; `source` is each one's recipe source and
        reasons[s] the reason of source s."""
        self.mix_reasons = reasons
        for s, n in zip(*np.unique(source, return_counts=True)):
            self._count_reason(reasons[int(s)], int(n), dropped=True)
        shard = index.shard_of(rows)
        cuts = np.flatnonzero(np.diff(shard)) + 1
        for part, src, of in zip(np.split(rows, cuts), np.split(source, cuts), np.split(shard, cuts)):
            if not len(part):
                continue
            k = int(of[0])
            a = int(index.shard_rows[k])
            cols = {"record": index.columns["record"][a:index.shard_rows[k + 1]],
                    "line": index.columns["line"][a:index.shard_rows[k + 1]]}
            removal = Removed.of(cols, part - a, np.full(len(part), MIX), src)
            self.removed[k] = self.removed[k] + removal if k in self.removed else removal

    def flush(self) -> tuple[int, int, dict[tuple[bool, str], int]]:
        """(rejected, dropped, rows per (dropped, reason)) removed since the last flush (for the counts)."""
        new = {k: n - self._flushed.get(k, 0) for k, n in self.reasons.items() if n != self._flushed.get(k, 0)}
        self._flushed = dict(self.reasons)
        rejected = sum(n for (dropped, _), n in new.items() if not dropped)
        return rejected, sum(new.values()) - rejected, new

    def records(self, tasks: list, metas: list, shard_size: int) -> Iterator[tuple[int, list[Rejected],
                                                                                 list[Rejected]]]:
        """(meta number, rejected, dropped) of every shard with removals, in input order, each Rejected with
        its record read again from the input (one task's records in memory at a time)."""
        by_task: dict[int, list[int]] = {}
        for k in sorted(self.removed):
            by_task.setdefault(metas[k].task, []).append(k)
        for t in sorted(by_task):
            shards = {metas[k].shard: k for k in by_task[t]}
            for n, records in enumerate(tasks[t].shards(shard_size)):
                if n in shards:
                    yield shards[n], *self._rejects(self.removed[shards[n]], records)

    def _rejects(self, r: Removed, records: list) -> tuple[list[Rejected], list[Rejected]]:
        rejected, dropped = [], []
        for rec_i, line, what, which in zip(r.record.tolist(), r.line.tolist(), r.what.tolist(), r.which.tolist()):
            rec = parse_record(records[rec_i])
            if rec.line != line:  # the file was rewritten while the run read it
                raise LlmprepError(f"INPUT {rec.source!r} changed during the run (line {line} is now at "
                                   f"{rec.line}); nothing was written")
            data = rec.data if rec.data is not None else rec.raw
            if what == BENCHMARK:
                f = int(self.bench.file_of[which])
                rejected.append(Rejected(rec.source, line, None, self.bench_reason(f), data,
                                         benchmark=self.bench.where[which]))
            elif what in (EXACT, NEAR):
                how = "exact" if what == EXACT else "near"
                rejected.append(Rejected(rec.source, line, None, self.dup_reason(how), data,
                                         duplicate_of=self.dedup.where(which)))
            else:
                dropped.append(Rejected(rec.source, line, None, self.mix_reasons[which], data))
        return rejected, dropped

    def report(self) -> dict:
        """report.json's "dedup" and "decontamination" sections (the latter only with --decontaminate)."""
        if self.keys is None or self.dedup is None:
            out = {"dedup": {"mode": "none"}}
        else:
            d = self.dedup
            per = {s: {"exact": c["exact"], "near": c["near"]} for s, c in sorted(self.per_source.items())}
            out = {"dedup": {"mode": d.cfg.mode, "compared": d.cfg.describe(),
                             "removed": d.removed["exact"] + d.removed["near"], **d.removed,
                             "per_source": {s: c for s, c in per.items() if c["exact"] + c["near"]}}}
        if self.bench is not None:
            c = self.bench.cfg
            out["decontamination"] = {
                "ngram_words": c.ngram_words, "ngram_chars": c.ngram_chars, "min_item_units": c.min_item_units,
                "removed": int(self.bench_rows.sum()),
                "files": [{**st, "rows_removed": int(n)} for st, n in zip(self.bench.stats, self.bench_rows)],
                "per_source": {s: c["benchmark"] for s, c in sorted(self.per_source.items()) if c["benchmark"]}}
        return out

    def bench_reason(self, file: int) -> str:
        c = self.bench.cfg
        return (f"benchmark: shares a {c.ngram_words}-word n-gram ({c.ngram_chars} characters in scripts written "
                f"without spaces) with an item of {self.bench.files[file]}")

    def dup_reason(self, how: str) -> str:
        cfg = self.dedup.cfg
        if how == "exact":
            return "duplicate: " + cfg.describe().split(", or ")[0] + " as an earlier row"
        b, r = cfg.lsh
        return (f"near-duplicate of an earlier row (MinHash LSH: Jaccard >= {cfg.threshold} over {cfg.ngram}-grams, "
                f"{cfg.num_perm} permutations, {b} bands x {r} rows)")

    def _count(self, source: str, what: str, n: int) -> None:
        self.per_source.setdefault(source, Counter())[what] += n

    def _count_reason(self, reason: str, n: int, *, dropped: bool = False) -> None:
        self.reasons[(dropped, reason)] = self.reasons.get((dropped, reason), 0) + n


def mix_order(recipe: Recipe, train: np.ndarray, source: np.ndarray,
              weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], MixPlan]:
    """The recipe's plan over the train rows (global numbers, input order; `source` is each row's recipe
    source, `weights` its trained tokens) -> (output order, rows left out, their sources, each source's
    reason for leaving rows out, the plan).

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
    reasons = [f"{MIX_REASON}: not selected; source {sp.name!r} is down-sampled to {sp.epochs:.4g} of its "
               f"trained tokens to meet its target share {sp.target_share:.4g}" for sp in plan.sources]
    return order, train[left_out], source[left_out], reasons, plan

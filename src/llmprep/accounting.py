"""Every record accounted for while shards complete: counts, reasons, rejects streamed to rejected.jsonl,
and the contents of report.json (what the data is) and run.json (how this run went).

The driver keeps per shard only its ShardMeta (counts, per-row metadata); rejects stream to side files
and are merged at the end, by line, with the rows removed after their shard came back (--dedup,
--decontaminate, --mix: llmprep.mix.select). read = kept + rejected + dropped holds by construction.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from llmprep.assemble import RowIndex
from llmprep.errors import LlmprepError
from llmprep.examples import Rejected
from llmprep.executor.task import ShardMeta
from llmprep.formats import PAIR
from llmprep.output import length_stats
from llmprep.shard import TEMPLATE_ROWS

REJECTED = "rejected.jsonl"


class StrictStop(LlmprepError):
    """--strict: the first rejected record stops the run."""


class Accounts:
    """What the driver keeps while shards complete: their metadata (no rows), counts, and rejects and drops
    streamed to side files; `finish` writes rejected.jsonl from them (rejects, then drops, in input order)."""

    def __init__(self, tmp: Path, work: Path, cfg):
        self.cfg = cfg
        self.metas: list[ShardMeta] = []
        self.read = self.n_rejected = self.n_dropped = self.tasks_seen = 0
        self.rejected_reasons: dict[str, int] = {}
        self.dropped_reasons: dict[str, int] = {}
        self.first: list[Rejected] = []
        self.first_dropped: list[Rejected] = []
        self.kinds: dict[str, int] = {}
        self.counts = {"truncated": 0, "trained_lost": 0, "control_text_rows": 0, "fast_rows": 0, "engine_mismatches": 0}
        self.template_rows: dict[str, int] = {}
        self.hits = self.computed = 0
        self.misses: dict[str, int] = {}
        self.cache_errors: list[str] = []
        self.lines: list[tuple[int, int]] = []  # per shard: lines it wrote to the rejected and dropped side files
        self._final = tmp / REJECTED
        self._paths = (work / "rejected.side.jsonl", work / "dropped.side.jsonl")
        # a lone surrogate in a rejected record is written as its JSON escape, never a crash
        self._rejected, self._dropped = (open(p, "w", encoding="utf-8", errors="backslashreplace")
                                         for p in self._paths)

    def add(self, meta: ShardMeta) -> None:
        bad = [r for r in meta.rejected if not r.duplicate_of]  # a duplicate is no bad record: --strict goes on
        if self.cfg.strict and bad:
            raise StrictStop(f"--strict: {bad[0].message()}")
        self.metas.append(meta)
        self.read += meta.records
        for items, sink, reasons, first, dropped in (
                (meta.rejected, self._rejected, self.rejected_reasons, self.first, False),
                (meta.dropped, self._dropped, self.dropped_reasons, self.first_dropped, True)):
            for r in items:
                sink.write(json.dumps({**r.to_json(), "dropped": True} if dropped else r.to_json(),
                                      ensure_ascii=False) + "\n")
                key = r.reason if len(r.reason) < 80 else r.reason[:77] + "..."
                reasons[key] = reasons.get(key, 0) + 1
            first.extend(items[:3 - len(first)])
        self.n_rejected += len(meta.rejected)
        self.n_dropped += len(meta.dropped)
        self.lines.append((len(meta.rejected), len(meta.dropped)))
        for k, v in meta.kinds.items():
            self.kinds[k] = self.kinds.get(k, 0) + v
        for k in self.counts:
            self.counts[k] += getattr(meta, k)
        self.counts["trained_lost"] += sum(meta.dropped_trained)  # after dedup moved its copies to rejected
        for k, v in meta.template_rows.items():
            self.template_rows[k] = self.template_rows.get(k, 0) + v
        if meta.hit:
            self.hits += 1
        else:
            self.computed += 1
        if meta.cache_error and meta.cache_error not in self.cache_errors:
            self.cache_errors.append(meta.cache_error)
            warn(f"cache: {meta.cache_error}: going on without writing to the cache")
        if meta.miss and (meta.miss.startswith("corrupt") or meta.miss.startswith("unreadable")):
            warn(f"cache: {meta.miss} for a shard of {meta.rejected[0].source if meta.rejected else 'the input'}; "
                  "recomputed and overwritten")
        meta.rejected, meta.dropped, meta.dropped_trained = [], [], []  # written to the side files: no records kept

    def first_reasons(self) -> list[str]:
        return [r.message() for r in (self.first + self.first_dropped)[:3]]

    def removed(self, rejected: int, dropped: int, reasons: dict[tuple[bool, str], int]) -> None:
        """Count rows removed after their shard (dedup, decontamination: rejected; mix: dropped)."""
        self.n_rejected += rejected
        self.n_dropped += dropped
        for (is_dropped, reason), n in reasons.items():
            counts = self.dropped_reasons if is_dropped else self.rejected_reasons
            counts[reason] = counts.get(reason, 0) + n

    def finish(self, removed: Iterable[tuple[int, list[Rejected], list[Rejected]]] = ()) -> None:
        """rejected.jsonl = rejects, then drops, each in input order: per shard, its bad records merged by
        line with `removed` (shard number, rejected, dropped: rows removed after the shard, with records)."""
        self._rejected.close()
        self._dropped.close()
        later = iter(removed)
        nxt = next(later, None)
        dropped_all = self._paths[1].with_name("dropped.all.jsonl")
        with open(self._paths[0], encoding="utf-8") as rej_in, open(self._paths[1], encoding="utf-8") as drop_in, \
                open(self._final, "w", encoding="utf-8", errors="backslashreplace") as out, \
                open(dropped_all, "w+", encoding="utf-8", errors="backslashreplace") as drops:
            for k, (n_rej, n_drop) in enumerate(self.lines):
                extra_rej, extra_drop = ([], [])
                if nxt is not None and nxt[0] == k:
                    _, extra_rej, extra_drop = nxt
                    nxt = next(later, None)
                _merge(rej_in, n_rej, extra_rej, out, dropped=False)
                _merge(drop_in, n_drop, extra_drop, drops, dropped=True)
            drops.seek(0)
            shutil.copyfileobj(drops, out)

    def __del__(self):
        for fh in (getattr(self, "_rejected", None), getattr(self, "_dropped", None)):
            if fh is not None and not fh.closed:
                fh.close()


def _merge(side, n: int, extra: list[Rejected], out, *, dropped: bool) -> None:
    """Copy a shard's n lines of a side file to `out`, merged by line with `extra` (both in input order)."""
    lines = [side.readline() for _ in range(n)]
    if not extra:
        out.writelines(lines)
        return
    tagged = [(json.loads(x)["line"], 0, x) for x in lines]
    tagged += [(r.line, 1, json.dumps({**r.to_json(), "dropped": True} if dropped else r.to_json(),
                                      ensure_ascii=False) + "\n") for r in extra]
    out.writelines(x for _, _, x in sorted(tagged, key=lambda t: (t[0], t[1])))


def report(cfg, acc: Accounts, index: RowIndex, splits: dict[str, np.ndarray],
            rows: dict[str, int], options: dict, kept: dict[str, int] | None = None) -> dict:
    """report.json's counts from per-row metadata: read = kept + rejected + dropped, tokens, lengths.

    `splits` are the row numbers written to each split (a row the mix repeats appears again); `kept` the
    distinct records per split (the split's size when None).
    """
    used = np.concatenate(list(splits.values())) if splits else np.zeros(0, np.int64)
    lengths = index.columns["length"][used]
    pairs = PAIR in acc.kinds
    kept = kept if kept is not None else {name: len(idx) for name, idx in splits.items()}
    return {
        "llmprep_version": version(),
        "examples": {k: acc.kinds[k] for k in sorted(acc.kinds)},
        "records": {"read": acc.read, "kept": sum(kept.values()), "rejected": acc.n_rejected,
                    "dropped": acc.n_dropped},
        "kept": kept,
        "rows": rows,
        "rejected_reasons": dict(sorted(acc.rejected_reasons.items(), key=lambda kv: -kv[1])),
        "dropped_reasons": dict(sorted(acc.dropped_reasons.items(), key=lambda kv: -kv[1])),
        "truncated": acc.counts["truncated"],
        "control_text_rows": acc.counts["control_text_rows"],
        "tokens": {"total": int(lengths.sum(dtype=np.int64)),
                   "trained": 0 if pairs else int(index.columns["trained"][used].sum(dtype=np.int64)),
                   # trained tokens truncation cut away: from the rows written (as often as they are written)
                   # and from the records dropped with none left
                   "trained_cut": 0 if pairs else index.trained_cut(used)
                   + acc.counts["trained_lost"]},
        "lengths": length_stats(lengths),
        "engine": {"requested": cfg.engine, "fastokens_rows": acc.counts["fast_rows"],
                   "fastokens_mismatches": acc.counts["engine_mismatches"],
                   **{k: acc.template_rows.get(k, 0) for k in TEMPLATE_ROWS}},
        "options": options,
    }


def run_info(cfg, executor, tasks: list, acc: Accounts, cache, warning: str | None,
              clock: dict) -> dict:
    """run.json: how this run went (executor, tasks, cache hits and why shards missed, timings)."""
    t0 = clock["started"]
    return {
        "llmprep_version": version(),
        "executor": {"name": executor.name, "workers": executor.workers, "tasks": len(tasks),
                     "shards": len(acc.metas)},
        "cache": {"enabled": cache is not None, "dir": str(cache.base) if cache else None, "hits": acc.hits,
                  "computed": acc.computed, "miss_reasons": acc.misses,
                  "warnings": ([warning] if warning else []) + acc.cache_errors},
        "seconds": {"plan": round(clock["plan"] - t0, 3), "shards": round(clock["shards"] - clock["plan"], 3),
                    "assemble": round(clock["assemble"] - clock["shards"], 3),
                    "total": round(time.perf_counter() - t0, 3),
                    "shard_compute": round(sum(m.seconds for m in acc.metas), 3)},
    }


def warn(message: str) -> None:
    print(f"llmprep: warning: {message}", file=sys.stderr, flush=True)



def version() -> str:
    from llmprep import __version__
    return __version__

"""The task an executor runs: read a task's records, then per shard serve it from the cache or process
it (llmprep.shard), write its rows to a spill file, and return only ShardMeta — never the rows.

Runs in a local worker process or a Ray actor; the spill file and the cache entry are the same bytes
(llmprep.cache's entry format). Rejects are stored by their position in the shard and re-attached to
this run's file:line, so a cache entry serves a renamed or moved input.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

import numpy as np

from llmprep.encode import Encoded, int32_if_fits
from llmprep.examples import Rejected
from llmprep.mix.keys import RowKeys
from llmprep.records import Record
from llmprep.shard import ShardResult, ShardSettings, process_shard, worker_init


@dataclass(frozen=True)
class TaskEnv:
    """Where a task writes and what it may read; picklable, sent once per worker."""

    settings: ShardSettings
    settings_digest: str
    work_dir: str  # spill files go to WORK_DIR/<task>-<shard>.arrow
    cache_dir: str | None
    shard_size: int
    keys: RowKeys | None = None  # --dedup / --decontaminate: per-row keys computed here (llmprep.mix.keys)
    sources: tuple[tuple[ShardSettings, str], ...] = ()  # --mix: per source, its settings and their digest

    def settings_for(self, task) -> tuple[ShardSettings, str]:
        """The settings (and cache digest) of a task's source: a --mix source has its own format/columns."""
        return self.sources[task.source] if self.sources else (self.settings, self.settings_digest)


@dataclass
class ShardMeta:
    """What the driver keeps of a shard: counts, rejects, per-row columns (see docs/scale.md). No rows."""

    task: int
    shard: int  # within the task
    spill: str
    records: int
    rows: dict  # per-row columns: "length", "trained", "record" (index of the row's record in the shard),
    #             "line" (its line in the file); with --dedup/--decontaminate the llmprep.mix.keys columns
    rejected: list[Rejected]
    dropped: list[Rejected]
    truncated: int = 0
    trained_lost: int = 0  # trained tokens of rows truncation dropped from records that keep other rows
    dropped_trained: list[int] = field(default_factory=list)  # per entry of `dropped`: trained tokens it lost
    control_text_rows: int = 0
    fast_rows: int = 0
    engine_mismatches: int = 0
    kinds: dict = field(default_factory=dict)
    # trained tokens truncation cut from rows, only where non-zero (most rows lose none): {"rows": [...] (within
    # the shard), "tokens": [...]}; a dense per-row column cost the main process 4 bytes per row of the run
    cut: dict = field(default_factory=lambda: {"rows": [], "tokens": []})
    template_rows: dict = field(default_factory=dict)  # rows per template engine (shard.TEMPLATE_ROWS)
    chat: dict = field(default_factory=dict)  # chat statistics for the report (shard.ChatStats)
    content: str = ""  # content key (records only), for the manifest's miss reasons
    hit: bool = False
    miss: str | None = None  # why the cache had no entry: "missing", "corrupt entry (...)"
    cache_error: str | None = None  # the cache dir could not be written
    seconds: float = 0.0
    file: int = 0  # index of the shard's file among all inputs (a shard never spans two files)
    dropped_keys: dict = field(default_factory=dict)  # --dedup: the dedup key columns of `dropped`, in its order


def row_columns(enc: Encoded, record_index: np.ndarray, pairs: bool) -> dict:
    """Per-row metadata of a shard. Example: rows [5,6] (labels [-100,6]), [7] -> length [2,1], trained [1,1]"""
    lengths = enc.lengths.astype(np.int32)
    if pairs or len(enc) == 0:
        trained = np.zeros(len(enc), np.int32)
    else:
        nz = np.concatenate([[0], np.cumsum(enc.labels != -100)])
        trained = (nz[enc.offsets[1:]] - nz[enc.offsets[:-1]]).astype(np.int32)
    return {"length": lengths, "trained": trained, "record": np.asarray(record_index, np.int32)}


def _meta_json(res: ShardResult, index: dict[tuple[str, int], int], record_rows: list[int]) -> dict:
    """Shard meta stored with the rows; rejects keep their record's position in the shard, not file:line."""
    def pos(r: Rejected) -> dict:
        return {"i": index[(r.source, r.line)], "field": r.field, "reason": r.reason, "record": r.record}

    return {"rejected": [pos(r) for r in res.rejected], "dropped": [pos(r) for r in res.dropped],
            "truncated": res.truncated, "control_text_rows": res.control_text_rows, "fast_rows": res.fast_rows,
            "engine_mismatches": res.engine_mismatches, "template_rows": res.template_rows, "chat": res.chat,
            "kinds": res.kinds, "record": record_rows, "pairs": res.encoded.token_type_ids is not None,
            "cut": _sparse(res.cut), "trained_lost": res.trained_lost, "dropped_trained": res.dropped_trained}


def _sparse(cut: np.ndarray | None) -> dict:
    """Per-row trained tokens cut by truncation, as its non-zero entries (most rows lose none).
    Example: [0, 5, 0] -> {"rows": [1], "tokens": [5]}"""
    at = np.flatnonzero(cut) if cut is not None else np.zeros(0, np.int64)
    return {"rows": at.tolist(), "tokens": cut[at].tolist() if cut is not None else []}


def _located(items: list[dict], records: list[Record]) -> list[Rejected]:
    """Re-attach file:line (from this run's records) to rejects stored by position."""
    return [Rejected(records[x["i"]].source, records[x["i"]].line, x["field"], x["reason"], x["record"])
            for x in items]


def _compute(records: list[Record], fmt: str | None, settings: ShardSettings,
             keys: RowKeys | None = None, checksum: bool = True) -> tuple[list, ShardResult, dict]:
    """(the entry's pieces, see cache.entry_parts; the shard's result; its meta). `checksum`: the entry goes
    into the cache too (a spill alone is never verified)."""
    from llmprep.cache import entry_parts

    formats = {r.source: fmt for r in records} if fmt else {}
    res = process_shard(records, formats, settings)
    index = {(r.source, r.line): i for i, r in enumerate(records)}
    kept_records = [index[(s, ln)] for s, ln in res.kept_at] if res.kept_at is not None else []
    meta = _meta_json(res, index, kept_records)
    if keys is not None and keys.active:  # stored with the rows: a cache hit serves them too
        from llmprep.mix.text import example_text

        texts = [example_text(ex.kind, ex.data) for ex in res.kept_examples or []]
        meta["keys"] = {name: array_to_json(a) for name, a in keys.columns(texts).items()}
        # examples truncation dropped are deduplicated too: a copy of one is a duplicate, whatever --max-length
        texts = [example_text(ex.kind, ex.data) for ex in res.dropped_examples or []]
        meta["dropped_keys"] = {name: array_to_json(a) for name, a in keys.columns(texts, bench=False).items()}
    return entry_parts(res.encoded, meta, checksum=checksum), res, meta


def array_to_json(a: np.ndarray) -> dict:
    """A numpy array as JSON (dtype, shape, base64 bytes): per-row keys in a cache entry's meta and in
    ShardMeta's JSON from Ray. Example: np.array([1, 2], np.int32) -> {"dtype": "int32", "shape": [2], "b64": ...}"""
    return {"dtype": a.dtype.str, "shape": list(a.shape), "b64": base64.b64encode(np.ascontiguousarray(a)).decode()}


def array_from_json(d: dict) -> np.ndarray:
    """The inverse of array_to_json (a writable copy)."""
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def run_task(task, env: TaskEnv | None = None) -> list[ShardMeta]:
    """Read a task's records, then per shard: cache hit, or process + store; write the spill file.

    Example: run_task(ShardTask(0, "a.jsonl", 0, (0, 900, 1), "messages"), env)
    -> [ShardMeta(task=0, shard=0, records=12, rows={"length": [...], ...}, hit=False, miss="missing")]
    """
    from llmprep.cache import content_key, parse_entry, shard_key
    from llmprep.executor import storage

    env = env or _WORKER_ENV[0]
    settings, digest = env.settings_for(task)
    cache = _cache_for(env)
    out = []
    for n, records in enumerate(task.shards(env.shard_size)):
        started = time.perf_counter()
        # the content key only names cache entries (and cache misses): no cache, no hashing
        content = content_key(records, task.format) if cache is not None else ""
        key = shard_key(content, digest) if cache is not None else None
        lookup = cache.get(key) if cache is not None else None
        spill = f"{env.work_dir}/{task.index:07d}-{n:05d}.arrow"
        if lookup is not None and lookup.blob is not None:
            blob, hit = lookup.blob, True
            enc, meta = parse_entry(blob, verify=False)  # verified by cache.get
        else:
            blob, res, meta = _compute(records, task.format, settings, env.keys, checksum=cache is not None)
            enc, hit = res.encoded, False
            if cache is not None:
                cache.put(key, blob)
        storage.write_bytes(spill, blob)  # atomic: a retried task (Ray) never leaves a half-written spill
        rows = row_columns(enc, meta["record"], meta["pairs"])
        rows["line"] = int32_if_fits([records[i].line for i in meta["record"]])
        rows |= {name: array_from_json(a) for name, a in meta.get("keys", {}).items()}
        out.append(ShardMeta(
            task=task.index, shard=n, spill=spill, records=len(records), rows=rows,
            rejected=_located(meta["rejected"], records), dropped=_located(meta["dropped"], records),
            truncated=meta["truncated"], trained_lost=meta["trained_lost"],
            dropped_trained=meta["dropped_trained"], control_text_rows=meta["control_text_rows"],
            fast_rows=meta["fast_rows"], engine_mismatches=meta["engine_mismatches"],
            template_rows=meta.get("template_rows", {}), chat=meta.get("chat", {}), kinds=meta["kinds"],
            cut=meta["cut"], content=content, hit=hit,
            miss=None if hit or lookup is None else lookup.miss,
            cache_error=cache.write_error if cache is not None else None, seconds=time.perf_counter() - started,
            file=task.file_index,
            dropped_keys={name: array_from_json(a) for name, a in meta.get("dropped_keys", {}).items()}))
    return out


_CACHES: dict = {}
_WORKER_ENV: list[TaskEnv] = []


def _cache_for(env: TaskEnv):
    """One ShardCache per process and dir, so a failed write (read-only, full) turns writing off once."""
    if env.cache_dir is None:
        return None
    from llmprep.cache import ShardCache

    if env.cache_dir not in _CACHES:
        _CACHES[env.cache_dir] = ShardCache(env.cache_dir)
    return _CACHES[env.cache_dir]


def task_worker_init(env: TaskEnv) -> None:
    """Pool initializer for run_task: settings, tokenizer, cache and the dedup/benchmark settings travel
    once per worker."""
    import os

    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # rensa (near dedup): the worker processes fill the cores
    worker_init(env.settings)
    _WORKER_ENV[:] = [env]

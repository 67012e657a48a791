"""Process one shard of examples: render, encode, fit to --max-length. Runs in worker processes.

A shard is a list of records; the result holds the encoded rows plus what was rejected or dropped,
each with its file, line and reason, so the caller can account for every record.

`run_task` is the unit an executor runs (a local worker process or a Ray task): it reads a task's
records itself, serves each shard from the cache or computes it, writes the rows to a spill file and
returns only per-row metadata (ShardMeta) — never the rows.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmprep.encode import ChatEncoder, Encoded, concat, encode_documents, encode_pairs, take
from llmprep.errors import ConfigError, RecordError
from llmprep.examples import Example, Rejected, reject, to_examples
from llmprep.formats import CHAT, PAIR, TEXT
from llmprep.records import Record
from llmprep.render import ChatRenderer
from llmprep.tokenizer import load_tokenizer
from llmprep.truncate import fit


@dataclass(frozen=True)
class ShardSettings:
    """Everything a worker needs; picklable (the tokenizer travels as a name or an object)."""

    tokenizer: object
    template_source: str | None
    max_length: int
    truncation: str
    train_on_prompt: bool = False
    train_turns: str = "all"
    literal_control_text: bool = True
    engine: str = "auto"
    format: str | None = None
    columns: tuple[tuple[str, str], ...] = ()
    template_error: str | None = None  # why no template could be resolved; raised only if a chat shows up


@dataclass
class ShardResult:
    encoded: Encoded
    rejected: list[Rejected] = field(default_factory=list)
    dropped: list[Rejected] = field(default_factory=list)
    truncated: int = 0
    control_text_rows: int = 0
    fast_rows: int = 0
    engine_mismatches: int = 0
    kinds: dict = field(default_factory=dict)  # examples per kind (chat/text/pair)
    kept_at: list[tuple[str, int]] | None = None  # (source, line) of the record behind each kept row


_STATE: dict = {}


def _tools(settings: ShardSettings):
    """Tokenizer, renderer and encoder, built once per process and settings."""
    # Keyed on the tokenizer itself, not id(settings): a freed settings object's id is reused by the next
    # one, which then silently got the previous tokenizer/template. _STATE holds `tok`, so its id stays valid.
    tok_key = settings.tokenizer if isinstance(settings.tokenizer, str) else id(settings.tokenizer)
    key = (tok_key, settings.template_source, settings.engine)
    if _STATE.get("key") != key:
        tok = load_tokenizer(settings.tokenizer) if isinstance(settings.tokenizer, str) else settings.tokenizer
        renderer = ChatRenderer.for_tokenizer(settings.template_source, tok) if settings.template_source else None
        _STATE.update(key=key, tok=tok, renderer=renderer,
                      encoder=ChatEncoder(tok, engine=settings.engine))
    return _STATE["tok"], _STATE["renderer"], _STATE["encoder"]


_WORKER_SETTINGS: list[ShardSettings] = []


def worker_init(settings: ShardSettings | None = None) -> None:
    """Pool initializer: settings (and so the tokenizer) travel once per worker, not once per shard."""
    # Each worker encodes single-threaded: the processes already fill the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_SETTINGS[:] = [settings] if settings is not None else []


def process_shard(records: list[Record], formats: dict[str, str],
                  settings: ShardSettings | None = None) -> ShardResult:
    """Records -> parsed, converted, encoded, fitted rows (in input order) + rejects + drops.

    `formats` maps each file to its detected format; `settings` may be omitted in a pool worker
    started with worker_init(settings).
    """
    settings = settings or _WORKER_SETTINGS[0]
    tok, renderer, encoder = _tools(settings)
    fast_before, mismatch_before = encoder.fast_rows, encoder.engine_mismatches
    converted = list(to_examples(records, format=settings.format, columns=dict(settings.columns), formats=formats))
    examples = [x for x in converted if isinstance(x, Example)]
    rejected: list[Rejected] = [x for x in converted if isinstance(x, Rejected)]
    kinds = {k: sum(1 for ex in examples if ex.kind == k) for k in {ex.kind for ex in examples}}
    if CHAT in kinds and renderer is None:
        raise ConfigError(settings.template_error or "--template: no chat template")
    if PAIR in kinds and len(kinds) > 1:
        raise ConfigError("INPUT mixes sentence pairs with chats or documents; prepare them separately")
    parts: list[Encoded] = []
    order: list[int] = []  # example index of each encoded row, to restore input order
    chats = [i for i, ex in enumerate(examples) if ex.kind == CHAT]
    encoded, ok, control_rows = _encode_chats(examples, chats, renderer, encoder, settings, rejected)
    if ok:
        parts.append(encoded)
        order += ok
    docs = [i for i, ex in enumerate(examples) if ex.kind == TEXT]
    if docs:
        parts.append(encode_documents(tok, [examples[i].data["text"] for i in docs]))
        order += docs
    pairs = [i for i, ex in enumerate(examples) if ex.kind == PAIR]
    if pairs:
        d = [examples[i].data for i in pairs]
        parts.append(encode_pairs(tok, [x["text"] for x in d], [x["text_pair"] for x in d],
                                  [x["label"] for x in d], settings.max_length, settings.truncation))
        order += pairs
    enc = take(concat(parts), np.argsort(order, kind="stable")) if parts else concat([])
    order = sorted(order)
    fitted = fit(enc, settings.max_length, settings.truncation, require_trained=not pairs)
    dropped = [Rejected(examples[order[r]].source, examples[order[r]].line, None, why, examples[order[r]].data)
               for r, why in fitted.dropped]
    file_order = {src: i for i, src in enumerate(dict.fromkeys(r.source for r in records))}
    rejected.sort(key=lambda r: (file_order.get(r.source, 0), r.line))  # input order
    kept_at = [(examples[order[r]].source, examples[order[r]].line) for r in fitted.kept.tolist()]
    return ShardResult(fitted.encoded, rejected, dropped, fitted.truncated, control_rows,
                       encoder.fast_rows - fast_before, encoder.engine_mismatches - mismatch_before, kinds, kept_at)


def _encode_chats(examples: list[Example], chats: list[int], renderer: ChatRenderer, encoder: ChatEncoder,
                  settings: ShardSettings, rejected: list[Rejected]) -> tuple[Encoded | None, list[int], int]:
    """Render and encode the chat examples at `chats`; a conversation the template refuses is appended
    to `rejected`. Returns (encoded rows, their example indices, rows holding control-token text)."""
    texts, spans, literal, ok = [], [], [], []
    for i in chats:
        ex = examples[i]
        try:
            text, sp, contents = renderer.locate(ex.data["messages"])
        except RecordError as err:
            rejected.append(reject(ex, err, ex.data))
            continue
        if settings.train_turns == "last":
            sp = sp[-1:]
        texts.append(text), spans.append(sp), ok.append(i)
        literal.append(_literal_spans(encoder, ex.data["messages"], text, contents)
                       if settings.literal_control_text else [])
    if not ok:
        return None, [], 0
    encoded = encoder.encode(texts, spans, literal, train_all=settings.train_on_prompt)
    return encoded, ok, sum(1 for x in literal if x)


def _literal_spans(encoder: ChatEncoder, messages, text: str, contents) -> list[tuple[int, int]]:
    """Content spans holding control-token text that must stay literal ([] when there are none)."""
    flagged = [i for i, m in enumerate(messages) if encoder.has_control_text(m["content"])]
    if not flagged:
        return []
    if contents is not None:
        return [contents[i] for i in flagged]
    # The template rewrote content (e.g. trimmed it): find the visible text of each flagged message.
    spans = []
    for i in flagged:
        body = messages[i]["content"].strip()
        start = text.find(body)
        while start != -1:
            spans.append((start, start + len(body)))
            start = text.find(body, start + 1)
    return spans


# ---------------------------------------------------------------- the task an executor runs

@dataclass(frozen=True)
class TaskEnv:
    """Where a task writes and what it may read; picklable, sent once per worker."""

    settings: ShardSettings
    settings_digest: str
    work_dir: str  # spill files go to WORK_DIR/<task>-<shard>.arrow
    cache_dir: str | None
    shard_size: int


@dataclass
class ShardMeta:
    """What the driver keeps of a shard: counts, rejects, per-row columns (see docs/scale.md). No rows."""

    task: int
    shard: int  # within the task
    spill: str
    records: int
    rows: dict  # per-row columns: "length", "trained", "record" (index of the row's record in the shard)
    rejected: list[Rejected]
    dropped: list[Rejected]
    truncated: int = 0
    control_text_rows: int = 0
    fast_rows: int = 0
    engine_mismatches: int = 0
    kinds: dict = field(default_factory=dict)
    content: str = ""  # content key (records only), for the manifest's miss reasons
    hit: bool = False
    miss: str | None = None  # why the cache had no entry: "missing", "corrupt entry (...)"
    cache_error: str | None = None  # the cache dir could not be written
    seconds: float = 0.0


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
            "engine_mismatches": res.engine_mismatches,
            "kinds": res.kinds, "record": record_rows, "pairs": res.encoded.token_type_ids is not None}


def _located(items: list[dict], records: list[Record]) -> list[Rejected]:
    """Re-attach file:line (from this run's records) to rejects stored by position."""
    return [Rejected(records[x["i"]].source, records[x["i"]].line, x["field"], x["reason"], x["record"])
            for x in items]


def _compute(records: list[Record], fmt: str | None, settings: ShardSettings) -> tuple[bytes, ShardResult, dict]:
    from llmprep.cache import entry_bytes

    formats = {r.source: fmt for r in records} if fmt else {}
    res = process_shard(records, formats, settings)
    index = {(r.source, r.line): i for i, r in enumerate(records)}
    kept_records = [index[(s, ln)] for s, ln in res.kept_at] if res.kept_at is not None else []
    meta = _meta_json(res, index, kept_records)
    return entry_bytes(res.encoded, meta), res, meta


def run_task(task, env: TaskEnv | None = None) -> list[ShardMeta]:
    """Read a task's records, then per shard: cache hit, or process + store; write the spill file.

    Example: run_task(ShardTask(0, "a.jsonl", 0, (0, 900, 1), "messages"), env)
    -> [ShardMeta(task=0, shard=0, records=12, rows={"length": [...], ...}, hit=False, miss="missing")]
    """
    from llmprep.cache import content_key, parse_entry, shard_key
    from llmprep.executor import storage

    env = env or _WORKER_ENV[0]
    cache = _cache_for(env)
    out = []
    for n, records in enumerate(task.shards(env.shard_size)):
        started = time.perf_counter()
        content = content_key(records, task.format)
        key = shard_key(content, env.settings_digest)
        lookup = cache.get(key) if cache is not None else None
        spill = f"{env.work_dir}/{task.index:07d}-{n:05d}.arrow"
        if lookup is not None and lookup.blob is not None:
            blob, hit = lookup.blob, True
            enc, meta = parse_entry(blob, verify=False)  # verified by cache.get
        else:
            blob, res, meta = _compute(records, task.format, env.settings)
            enc, hit = res.encoded, False
            if cache is not None:
                cache.put(key, blob)
        storage.write_bytes(spill, blob)  # atomic: a retried task (Ray) never leaves a half-written spill
        out.append(ShardMeta(
            task=task.index, shard=n, spill=spill, records=len(records),
            rows=row_columns(enc, meta["record"], meta["pairs"]),
            rejected=_located(meta["rejected"], records), dropped=_located(meta["dropped"], records),
            truncated=meta["truncated"], control_text_rows=meta["control_text_rows"],
            fast_rows=meta["fast_rows"], engine_mismatches=meta["engine_mismatches"],
            kinds=meta["kinds"], content=content, hit=hit,
            miss=None if hit or lookup is None else lookup.miss,
            cache_error=cache.write_error if cache is not None else None, seconds=time.perf_counter() - started))
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
    """Pool initializer for run_task: settings, tokenizer and cache travel once per worker."""
    worker_init(env.settings)
    _WORKER_ENV[:] = [env]

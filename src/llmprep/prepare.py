"""`prepare`: files of records -> a DatasetDict of training-ready rows on disk, with a report.

    records -> examples (formats) -> render -> encode -> fit (truncate/drop) -> split -> [pack] -> [pad]
    -> Arrow -> DIR (atomic) + report.json + rejected.jsonl

Every record read ends up kept, rejected (bad input) or dropped (truncation), and the report's counts
add up: read = kept + rejected + dropped.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from llmprep.cache import ShardCache, default_cache_dir, shard_key
from llmprep.constants import DEFAULT_MAX_LENGTH, DEFAULT_TOKENIZER
from llmprep.encode import ENGINES, Encoded, concat, take
from llmprep.errors import ConfigError, LlmprepError
from llmprep.examples import Rejected, detect_formats
from llmprep.formats import CHAT, get_format
from llmprep.messages import ROLES
from llmprep.output import build_splits, length_stats
from llmprep.records import Record, expand_inputs, read_records
from llmprep.render import resolve_template, template_fingerprint
from llmprep.shard import ShardResult, ShardSettings, process_shard, worker_init
from llmprep.tokenizer import load_tokenizer, resolve_tokenizer_path
from llmprep.truncate import TRUNCATION

SHARD_SIZE = 2048
PADDING = ("none", "longest", "max-length")
PACK = ("none", "wrap", "bfd")
TRAIN_TURNS = ("all", "last")
HISTORY = ("full", "per-turn", "last")


class StrictStop(LlmprepError):
    """--strict: the first rejected record stops the run."""


@dataclass
class PrepareConfig:
    """Options of `llmprep prepare`; field names mirror the CLI flags."""

    tokenizer: object = DEFAULT_TOKENIZER
    format: str | None = None
    template: str = "auto"
    max_length: int = DEFAULT_MAX_LENGTH
    truncation: str = "right"
    test_size: float = 0.0
    seed: int = 42
    train_on_prompt: bool = False
    train_turns: str = "all"
    train_roles: tuple[str, ...] = ("assistant",)
    history: str = "full"
    add_eos: bool = False
    strict: bool = False
    columns: Mapping[str, str] = field(default_factory=dict)
    padding: str = "none"
    padding_side: str = "right"
    pack: str = "none"
    remainder: str = "drop"
    literal_control_text: bool = True
    engine: str = "auto"
    num_proc: int | None = None
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True

    def check(self) -> None:
        """Collect every bad option and report them together."""
        problems = []
        if isinstance(self.train_roles, str):  # the CLI's and the API's "assistant,user"
            self.train_roles = tuple(r.strip() for r in self.train_roles.split(",") if r.strip())
        for name, value, valid in [("--truncation", self.truncation, TRUNCATION), ("--padding", self.padding, PADDING),
                                   ("--padding-side", self.padding_side, ("left", "right")),
                                   ("--pack", self.pack, PACK), ("--train-turns", self.train_turns, TRAIN_TURNS),
                                   ("--remainder", self.remainder, ("drop", "pad", "keep")),
                                   ("--engine", self.engine, ENGINES), ("--history", self.history, HISTORY)]:
            if value not in valid:
                problems.append(f"{name} {value!r} is not valid; choose one of {', '.join(valid)}")
        bad_roles = [r for r in self.train_roles if r not in ROLES]
        if bad_roles or not self.train_roles:
            problems.append(f"--train-roles {','.join(self.train_roles)!r}: expected a comma-separated list of "
                            f"{', '.join(ROLES)}")
        if not isinstance(self.max_length, int) or self.max_length < 1:
            problems.append(f"--max-length {self.max_length!r}: expected a positive integer")
        if self.test_size < 0 or (self.test_size >= 1 and float(self.test_size) != int(self.test_size)):
            problems.append(f"--test-size {self.test_size!r}: expected a fraction in [0, 1) or a whole count")
        if self.num_proc is not None and self.num_proc < 1:
            problems.append(f"--num-proc {self.num_proc!r}: expected 1 or more")
        if problems:
            raise ConfigError("; ".join(problems))


def prepare(inputs: list[str] | str, *, out: str | os.PathLike | None = None, **options):
    """Prepare INPUTs (files, directories, globs) and return a datasets.DatasetDict.

    Options are PrepareConfig's fields (tokenizer, format, template, max_length, truncation, test_size,
    seed, train_on_prompt, ...). With `out`, the result is also written to that directory atomically.

    Example: prepare("chats.jsonl", out="data/sft", test_size=0.1)
    -> DatasetDict({"train": ..., "test": ...}) with input_ids, attention_mask, labels
    """
    cfg = PrepareConfig(**options)
    result = run(cfg, [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    if out is not None:
        result.save(out)
    return result.splits


@dataclass
class PrepareResult:
    splits: object  # datasets.DatasetDict
    report: dict
    rejected: list[Rejected]
    dropped: list[Rejected]
    seconds: float = 0.0
    cache: dict = field(default_factory=dict)
    tokenizer: object = field(default=None, repr=False)  # decodes the sample rows of report.html

    def save(self, out: str | os.PathLike) -> Path:
        from llmprep.report import finish_output
        from llmprep.store import atomic_output_dir, save_output

        with atomic_output_dir(out) as tmp:
            save_output(tmp, self.splits, self.report,
                        [r.to_json() for r in self.rejected] + [{**r.to_json(), "dropped": True} for r in self.dropped])
            # llmprep doctor's cheap checks on what was just written (into report.json), then report.html
            self.report["doctor"] = finish_output(tmp, self.tokenizer)
        return Path(out)


def run(cfg: PrepareConfig, inputs: list[str]) -> PrepareResult:
    """The whole pipeline; see the module docstring."""
    cfg.check()
    started = time.perf_counter()
    files = expand_inputs([str(i) for i in inputs])
    tok = load_tokenizer(cfg.tokenizer) if isinstance(cfg.tokenizer, str) or cfg.tokenizer is None else cfg.tokenizer
    if cfg.format:
        get_format(cfg.format)  # an unknown --format fails before any reading
    template_name, source, template_error = None, None, None
    try:
        template_name, source = resolve_template(cfg.template, tok)
    except ConfigError as exc:  # only an error if a chat turns up (documents and pairs need no template)
        template_error = str(exc)
    settings = ShardSettings(
        tokenizer=resolve_tokenizer_path(cfg.tokenizer) if isinstance(cfg.tokenizer, str) else tok,
        # wrap cuts documents across blocks itself: rows are not truncated to the block size first
        template_source=source, max_length=cfg.max_length if cfg.pack != "wrap" else 2**62,
        truncation=cfg.truncation,
        train_on_prompt=cfg.train_on_prompt, train_turns=cfg.train_turns, train_roles=tuple(cfg.train_roles),
        history=cfg.history, add_eos=cfg.add_eos,
        literal_control_text=cfg.literal_control_text, engine=cfg.engine, format=cfg.format,
        columns=tuple(sorted(cfg.columns.items())), template_error=template_error)
    options = {k: v for k, v in asdict(cfg).items()
               if k not in ("tokenizer", "progress", "num_proc", "engine", "cache", "cache_dir")}
    tok_fingerprint = _tokenizer_fingerprint(tok)
    settings_digest = hashlib.sha256(repr((_version(), tok_fingerprint, source, sorted(options.items()),
                                           settings.max_length)).encode()).hexdigest()
    cache = ShardCache(Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()) if cfg.cache else None
    records = read_records(files, lazy=True)
    results = list(_process_all(records, settings, cfg, cache, settings_digest))
    kinds = {k: sum(r.kinds.get(k, 0) for r in results) for k in sorted({k for r in results for k in r.kinds})}
    if "pair" in kinds and len(kinds) > 1:
        raise ConfigError("INPUT mixes sentence pairs with chats or documents; prepare them separately")
    if CHAT not in kinds:
        template_name, source = None, None
    encoded = concat([r.encoded for r in results])
    rejected = [x for r in results for x in r.rejected]
    dropped = [x for r in results for x in r.dropped]
    read = sum(r.read for r in results)
    if len(encoded) == 0:
        raise LlmprepError(f"no usable rows: {read} records read, {len(rejected)} rejected, {len(dropped)} "
                           f"dropped. First reasons: " + "; ".join(r.message() for r in (rejected + dropped)[:3]))
    train_idx, test_idx = split_rows(len(encoded), cfg.test_size, cfg.seed, _row_groups(results))
    parts = {"train": take(encoded, train_idx)}
    if len(test_idx):
        parts["test"] = take(encoded, test_idx)
    digests = [_sha256(f) for f in files]
    fingerprint = hashlib.sha256(repr((_version(), digests, tok_fingerprint, source,
                                       sorted(options.items()))).encode()).hexdigest()[:16]
    splits, pack_stats = build_splits(parts, cfg, tok, fingerprint)
    report = _report(cfg, results, encoded, parts, splits, kinds, rejected, dropped, options)
    report["inputs"] = [{"path": str(f), "sha256": d} for f, d in zip(files, digests)]
    report["tokenizer"] = {"name": str(cfg.tokenizer), "class": type(tok).__name__, "vocab_size": len(tok),
                           "fingerprint": tok_fingerprint}
    report["template"] = {"name": template_name, "sha256": template_fingerprint(source) if source else None}
    if source:
        report["template"].update(template_facts(source, tok))
    if pack_stats:
        report["packing"] = pack_stats
    # Cache hits are not in report.json: a rerun served from the cache must write identical files.
    cache_stats = {"enabled": cache is not None, "hits": cache.hits if cache else 0,
                   "misses": cache.misses if cache else 0}
    return PrepareResult(splits, report, rejected, dropped, seconds=time.perf_counter() - started,
                         cache=cache_stats, tokenizer=tok)


def _report(cfg: PrepareConfig, results: list[ShardResult], encoded: Encoded, parts: dict, splits, kinds: dict,
            rejected: list[Rejected], dropped: list[Rejected], options: dict) -> dict:
    """report.json's counts: read = kept + rejected + dropped, kept split by split, tokens, lengths."""
    pairs = encoded.token_type_ids is not None
    read = sum(r.read for r in results)
    out = {
        "llmprep_version": _version(),
        "examples": kinds,
        "records": {"read": read, "kept": read - len(rejected) - len(dropped),
                    "rejected": len(rejected), "dropped": len(dropped)},
        "kept": {name: len(p) for name, p in parts.items()},
        "rows": {name: len(ds) for name, ds in splits.items()},
        "rejected_reasons": _count_reasons(rejected),
        "dropped_reasons": _count_reasons(dropped),
        "truncated": sum(r.truncated for r in results),
        "control_text_rows": sum(r.control_text_rows for r in results),
        "tokens": {"total": int(len(encoded.ids)), "trained": 0 if pairs else int((encoded.labels != -100).sum())},
        "lengths": length_stats(encoded.lengths),
        "engine": {"requested": cfg.engine, "fastokens_rows": sum(r.fast_rows for r in results),
                   "fastokens_mismatches": sum(r.engine_mismatches for r in results)},
        "options": options,
    }
    if "chat" in kinds:
        out["chat"] = chat_report([r.chat for r in results if r.chat], cfg)
    return out


def chat_report(parts: list[dict], cfg: PrepareConfig) -> dict:
    """The report's chat section, summed over shards: message kinds, rows per conversation (--history),
    fields of trained turns the template did not print, replies left without a trained stop token, and
    whether the template renders every prefix of a conversation as the start of the whole.

    Example: {"messages": {"tool_calls": 12, ...}, "history": {"mode": "full", "conversations": 10, "rows": 10},
              "no_stop_token": {"count": 0, "conversations": []}, ...}
    """
    def total(key):
        return sum(p[key] for p in parts)

    kinds: dict[str, int] = {}
    not_rendered: dict[str, int] = {}
    for p in parts:
        for k, v in p["kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
        for k, v in p["not_rendered"].items():
            not_rendered[k] = not_rendered.get(k, 0) + v
    first = next((p["prefix_first"] for p in parts if p["prefix_first"]), None)
    return {
        "messages": kinds,
        "history": {"mode": cfg.history, "conversations": total("conversations"), "rows": total("rows"),
                    "rows_dropped": total("rows_dropped")},
        "not_rendered": dict(sorted(not_rendered.items())),
        "no_stop_token": {"count": total("no_stop"), "eos_added": total("eos_added"),
                          "conversations": [x for p in parts for x in p["no_stop_examples"]][:20]},
        "prefix_consistent": {"checked": total("prefix_checked"), "inconsistent": total("prefix_inconsistent"),
                              "first": first},
    }


def template_facts(source: str, tok) -> dict:
    """What the label rule uses about the template: the end-of-turn tokens trained after a turn, and the
    generation prompt (the header the model is prompted with, never trained).

    Example (SmolLM2): {"end_of_turn": ["<|endoftext|>", "<|im_end|>"], "generation_prompt": "<|im_start|>assistant\n"}
    """
    from llmprep.render import ChatRenderer

    renderer = ChatRenderer.for_tokenizer(source, tok)
    return {"end_of_turn": list(renderer.end_of_turn), "generation_prompt": renderer.locator.generation_prompt}


def _row_groups(results: list[ShardResult]) -> np.ndarray | None:
    """--history per-turn: a record id per row (rows of one conversation share it), or None."""
    if not any(r.groups is not None for r in results):
        return None
    out, base = [], 0
    for r in results:
        out.append((r.groups if r.groups is not None else np.arange(len(r.encoded))) + base)
        base += r.read
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def split_rows(n: int, test_size: float, seed: int, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """split_indices over rows, or over conversations when rows come in groups (--history per-turn): all rows
    of one conversation land in the same split, so the test split never holds a prefix of a training row.

    Example: n=4, groups=[0, 0, 1, 2], one test conversation -> e.g. (train [0, 1, 2], test [3])
    """
    if groups is None:
        return split_indices(n, test_size, seed)
    ids, inverse = np.unique(groups, return_inverse=True)
    train_g, test_g = split_indices(len(ids), test_size, seed)
    test_mask = np.isin(inverse, test_g)
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


def _shards(records: Iterable[Record], cfg: PrepareConfig) -> Iterator[tuple[list[Record], dict[str, str]]]:
    """Group records into shards of SHARD_SIZE, with the format of each file in the shard.

    Formats are detected here, in input order, so every shard of a file uses the same one; the rest
    of the parsing happens in the workers.
    """
    it = iter(records)
    known: dict[str, str] = {}
    while True:
        chunk = list(islice(it, SHARD_SIZE))
        if not chunk:
            return
        if not cfg.format:
            chunk = detect_formats(chunk, known, cfg.columns)
        yield chunk, {src: known[src] for src in {r.source for r in chunk} if src in known}


def _process_all(records: Iterable[Record], settings: ShardSettings, cfg: PrepareConfig,
                 cache: "ShardCache | None", digest: str) -> Iterator[ShardResult]:
    """Run shards through process_shard — from the cache when it holds them, in parallel when there
    is more than one to compute — and yield results in input order."""
    from tqdm.auto import tqdm

    bar = tqdm(desc="prepare", unit="rec", disable=not cfg.progress, leave=False)
    nproc = cfg.num_proc or min(os.cpu_count() or 1, 4)
    shards = _shards(records, cfg)
    first, second = next(shards, None), next(shards, None)
    if first is None:
        bar.close()
        return
    pool = None
    if second is not None and nproc > 1:
        ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
        pool = ctx.Pool(nproc, initializer=worker_init, initargs=(settings,))
    try:
        queue: list = []  # (key, async result or ShardResult)
        for chunk, formats in _chain([first] + ([second] if second else []), shards):
            key = shard_key(chunk, formats, digest) if cache else None
            hit = cache.load(key) if cache else None
            if hit is not None:
                queue.append((None, hit))
            elif pool is not None:
                queue.append((key, pool.apply_async(process_shard, (chunk, formats))))
            else:
                queue.append((key, process_shard(chunk, formats, settings)))
            while len(queue) > 2 * nproc:  # bounded read-ahead keeps memory flat
                yield _finish(*queue.pop(0), cfg, bar, cache)
        while queue:
            yield _finish(*queue.pop(0), cfg, bar, cache)
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


def _finish(key: str | None, result, cfg: PrepareConfig, bar, cache) -> ShardResult:
    """Wait for a shard, store it in the cache if it was computed; --strict stops at its first reject."""
    if not isinstance(result, ShardResult):
        result = result.get()
    if key is not None and cache is not None:
        cache.save(key, result)
    if cfg.strict and result.rejected:
        raise StrictStop(f"--strict: {result.rejected[0].message()}")
    bar.update(len(result.encoded) + len(result.rejected) + len(result.dropped))
    return result


def split_indices(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test split of n rows; test_size is a fraction (0.1) or a count (100).

    Example: n=10, test_size=0.2, seed=0 -> (8 train indices, 2 test indices), sorted within each split
    """
    if not test_size:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    n_test = int(test_size) if test_size >= 1 else int(round(n * test_size))
    if n_test >= n or n_test < 1:
        raise ConfigError(f"--test-size {test_size!r}: gives {n_test} test rows out of {n}; "
                          "leave at least one row in each split")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _count_reasons(items: list[Rejected]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in items:
        key = r.reason if len(r.reason) < 80 else r.reason[:77] + "..."
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tokenizer_fingerprint(tok) -> str:
    """Hash of the tokenizer's full serialisation: two runs with different tokenizers never match."""
    inner = getattr(tok, "backend_tokenizer", None)
    blob = inner.to_str() if inner is not None else repr(sorted(tok.get_vocab().items()))
    extra = repr((tok.bos_token, tok.eos_token, tok.pad_token, getattr(tok, "chat_template", None)))
    return hashlib.sha256((blob + extra).encode("utf-8")).hexdigest()[:16]


def _version() -> str:
    from llmprep import __version__
    return __version__

"""`prepare`: files of records -> a DatasetDict of training-ready rows on disk, with a report.

    plan (files, or a --mix recipe's sources -> shard tasks)                       driver
    -> run_task per task: read -> formats -> render -> encode -> fit -> spill file   executor (local|ray)
       (+ per-row dedup keys and benchmark matches: llmprep.mix.keys)
    -> per-row metadata, in input order: decontamination, dedup (llmprep.mix.select)  driver, no tokens
    -> RowIndex -> split of the clean rows -> mix (train rows down-sampled/repeated)
       -> length stats, bfd bins
    -> splits assembled from the spill files -> DIR (atomic) + report.json + rejected.jsonl + run.json

The driver never holds the rows: shards are written to spill files as they complete, rejects stream
to side files, and the global steps work from per-row metadata (docs/scale.md, docs/mix.md). Every record
read ends up kept, rejected (bad input, a duplicate, a benchmark match) or dropped (truncation, left out
by the mix): read = kept + rejected + dropped.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from llmprep.accounting import REJECTED, Accounts, StrictStop, version, warn
from llmprep.accounting import report as make_report
from llmprep.accounting import run_info as make_run_info
from llmprep.assemble import RowIndex, assemble
from llmprep.cache import DEFAULT_MAX_SIZE, ShardCache, default_cache_dir, miss_reason, parse_size
from llmprep.constants import DEFAULT_MAX_LENGTH, DEFAULT_TOKENIZER
from llmprep.encode import ENGINES, tokenizer_json, whole_texts
from llmprep.errors import ConfigError, LlmprepError
from llmprep.examples import Rejected
from llmprep.executor import EXECUTORS, get_executor, storage
from llmprep.executor.plan import detect_format, plan, split_compressed
from llmprep.executor.task import ShardMeta, TaskEnv
from llmprep.formats import CHAT, PAIR, get_format
from llmprep.messages import ROLES
from llmprep.mix.decontaminate import BenchmarkIndex, DecontConfig
from llmprep.mix.dedup import DedupConfig
from llmprep.mix.keys import RowKeys
from llmprep.mix.recipe import Recipe, load_recipe
from llmprep.mix.select import RowFilter, mix_order
from llmprep.output import write_dataset_dict, write_json
from llmprep.records import DEFAULT_MAX_RECORD_BYTES
from llmprep.render import resolve_template, template_fingerprint
from llmprep.render.engine import describe_engine
from llmprep.render.limits import DEFAULT_MAX_RENDER_CHARS, DEFAULT_RENDER_TIMEOUT, RenderLimits
from llmprep.shard import ShardSettings
from llmprep.tokenizer import load_lite_tokenizer, resolve_tokenizer_path, tokenizer_class
from llmprep.truncate import TRUNCATION

SHARD_SIZE = int(os.environ.get("LLMPREP_SHARD_SIZE", 2048))  # lines (records) per shard
PADDING = ("none", "longest", "max-length")
PACK = ("none", "wrap", "bfd")
TRAIN_TURNS = ("all", "last")
HISTORY = ("full", "per-turn", "last")
REPORT, RUN = "report.json", "run.json"
__all__ = ["prepare", "run", "PrepareConfig", "PrepareResult", "StrictStop", "split_indices"]
# Options that shape a shard's tokens (its cache key); split, packing and padding happen after the cache.
SHARD_OPTIONS = ("format", "template", "max_length", "truncation", "train_on_prompt", "train_turns",
                 "train_roles", "history", "add_eos", "literal_control_text", "engine", "columns", "pack",
                 "render_timeout", "max_render_chars")


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
    executor: str = "local"
    ray_address: str | None = None
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES  # a longer record is rejected with its size
    render_timeout: float = DEFAULT_RENDER_TIMEOUT  # seconds one rendering of a conversation may take
    max_render_chars: int = DEFAULT_MAX_RENDER_CHARS  # characters a template may produce for one conversation
    mix: str | None = None  # a recipe file (llmprep.mix.recipe): its sources are the inputs
    dedup: str = "exact"
    dedup_keep_case: bool = False
    dedup_keep_whitespace: bool = False
    dedup_threshold: float = 0.8
    dedup_ngram: int = 5
    decontaminate: tuple[str, ...] = ()  # benchmark files, directories or globs
    decontaminate_ngram_words: int = 13
    decontaminate_ngram_chars: int = 13

    def dedup_config(self) -> DedupConfig:
        return DedupConfig(self.dedup, casefold=not self.dedup_keep_case,
                           collapse_whitespace=not self.dedup_keep_whitespace,
                           threshold=self.dedup_threshold, ngram=self.dedup_ngram)

    def decont_config(self) -> DecontConfig:
        return DecontConfig(tuple(self.decontaminate), self.decontaminate_ngram_words, self.decontaminate_ngram_chars)

    def check(self) -> None:
        """Collect every bad option and report them together."""
        problems = []
        if isinstance(self.train_roles, str):  # the CLI's and the API's "assistant,user"
            self.train_roles = tuple(r.strip() for r in self.train_roles.split(",") if r.strip())
        for name, value, valid in [("--truncation", self.truncation, TRUNCATION), ("--padding", self.padding, PADDING),
                                   ("--padding-side", self.padding_side, ("left", "right")),
                                   ("--pack", self.pack, PACK), ("--train-turns", self.train_turns, TRAIN_TURNS),
                                   ("--remainder", self.remainder, ("drop", "pad", "keep")),
                                   ("--engine", self.engine, ENGINES), ("--executor", self.executor, EXECUTORS),
                                   ("--history", self.history, HISTORY)]:
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
        if not isinstance(self.max_record_bytes, int) or self.max_record_bytes < 1:
            problems.append(f"--max-record-bytes {self.max_record_bytes!r}: expected a positive number of bytes")
        problems += RenderLimits(self.render_timeout, self.max_render_chars).check()
        if self.history == "per-turn":
            problems += per_turn_conflicts(self)
        for sub in (self.dedup_config(), self.decont_config()):
            try:
                sub.check()
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("; ".join(problems))


def prepare(inputs: list[str] | str, *, out: str | os.PathLike | None = None, **options):
    """Prepare INPUTs (files, directories, globs) and return a datasets.DatasetDict.

    Options are PrepareConfig's fields (tokenizer, format, template, max_length, truncation, test_size,
    seed, train_on_prompt, ...). With `out`, the result is written to that directory atomically and
    returned memory-mapped from it; without, it is built in a temp dir and returned in memory.

    Example: prepare("chats.jsonl", out="data/sft", test_size=0.1)
    -> DatasetDict({"train": ..., "test": ...}) with input_ids, attention_mask, labels
    Example: prepare([], mix="recipe.yaml", out="data/mix")  (the recipe's sources are the inputs)
    """
    cfg = PrepareConfig(**options)
    result = run(cfg, [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs or []), out=out)
    return result.splits


@dataclass
class PrepareResult:
    """A finished run: the directory it wrote, report.json's and run.json's contents."""

    out: Path | str  # a local directory, or the URI it was uploaded to
    report: dict
    run_info: dict
    seconds: float = 0.0
    temporary: bool = False
    _splits: object = None

    @property
    def splits(self):
        """The DatasetDict (memory-mapped from `out`; in memory when `out` is a temp dir)."""
        if self._splits is None:
            import datasets

            self._splits = datasets.load_from_disk(str(self.out), keep_in_memory=self.temporary)
        return self._splits

    def _open(self, name: str):
        if storage.is_uri(self.out):
            return storage.open_bytes(f"{self.out}/{name}")
        return open(Path(self.out) / name, "rb")

    def _rejects(self, dropped: bool) -> list[Rejected]:
        out = []
        with self._open(REJECTED) as fh:
            for line in fh:
                row = json.loads(line)
                if bool(row.pop("dropped", False)) == dropped:
                    out.append(Rejected(**row))
        return out

    @property
    def rejected(self) -> list[Rejected]:
        return self._rejects(False)

    @property
    def dropped(self) -> list[Rejected]:
        return self._rejects(True)

    @property
    def cache(self) -> dict:
        c = self.run_info["cache"]
        return {"enabled": c["enabled"], "hits": c["hits"], "misses": c["computed"]}


def run(cfg: PrepareConfig, inputs: list[str], out: str | os.PathLike | None = None) -> PrepareResult:
    """The whole pipeline (see the module docstring); writes `out` (a temp dir when None)."""
    with _caller_objects_frozen():
        return _run(cfg, inputs, out)


@contextlib.contextmanager
def _caller_objects_frozen():
    """Keep the objects that exist before the run out of the garbage collector's way while it runs (a process
    that imported torch, transformers and TRL holds ~450k): each full collection would walk all of them again,
    and in forked workers touch their pages (copy-on-write). Python's own advice for fork (gc.freeze);
    gc.unfreeze afterwards makes them collectable again, so nothing is kept alive. The youngest generation is
    also collected every 50,000 allocations instead of 700 (the workers inherit it): the run makes millions of
    short-lived dicts and lists and almost no cycles. Measured in a process holding TRL's stack, 20k chats
    in process: num_proc=1 1.82 -> 1.38 s."""
    gc.freeze()
    old = gc.get_threshold()
    gc.set_threshold(50_000, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _run(cfg: PrepareConfig, inputs: list[str], out: str | os.PathLike | None = None) -> PrepareResult:
    cfg.check()
    clock = {"started": time.perf_counter()}
    remote_out = out is not None and storage.is_uri(out)
    if out is not None and not remote_out:
        from llmprep.store import check_output_dir

        check_output_dir(out)  # a --out llmprep must not replace fails before the inputs are scanned
    recipe = _recipe(cfg, inputs)
    groups = _sources(cfg, inputs, recipe)
    keys = RowKeys(cfg.dedup_config(), BenchmarkIndex.build(cfg.decont_config()) if cfg.decontaminate else None)
    if remote_out:
        storage.check_out(str(out))
    named = isinstance(cfg.tokenizer, str) or cfg.tokenizer is None
    tok = load_lite_tokenizer(cfg.tokenizer) if named else cfg.tokenizer
    preload = _preload_fast_engine(tok, cfg, [f for g in groups for f in g.files])
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
        columns=tuple(sorted(cfg.columns.items())), template_error=template_error, template_name=template_name,
        render_timeout=cfg.render_timeout, max_render_chars=cfg.max_render_chars)
    options = report_options(cfg)
    tok_fingerprint = _tokenizer_fingerprint(tok)
    shaping = {"version": version(), "tokenizer": tok_fingerprint,
               "template": template_fingerprint(source) if source else None,
               "options": {k: _jsonable(getattr(cfg, k)) for k in SHARD_OPTIONS} | keys.settings()}
    shaping["options"]["pack"] = cfg.pack == "wrap"  # only wrap changes the shards (no truncation)
    if recipe is not None:  # each source's own format and columns
        shaping["options"]["mix"] = {g.name: [g.format, _jsonable(g.columns)] for g in groups}
    digest = hashlib.sha256(json.dumps([shaping, source], sort_keys=True).encode()).hexdigest()
    cache, cache_warning = _open_cache(cfg)
    tasks, scans, files = [], [], []
    for i, g in enumerate(groups):
        t, sc = plan(g.files, shard_lines=SHARD_SIZE, fmt=g.format, columns=g.columns, source=i,
                     first_task=len(tasks), first_file=len(scans), max_record_bytes=cfg.max_record_bytes,
                     defer_gzip=not remote_out)  # detected by split_compressed, from the decompressed copy
        tasks, scans = tasks + t, scans + sc
        files += [(str(f), g) for f in g.files]
    sources = tuple((replace(settings, format=g.format, columns=tuple(sorted(g.columns.items()))),
                     hashlib.sha256(f"{digest}\x00{g.format}\x00{sorted(g.columns.items())}".encode()).hexdigest())
                    for g in groups) if recipe is not None else ()
    clock["plan"] = time.perf_counter()
    executor = get_executor(cfg.executor, num_proc=cfg.num_proc, ray_address=cfg.ray_address)
    temporary = out is None or remote_out  # built locally; a URI --out is uploaded at the end
    target = Path(tempfile.mkdtemp(prefix="llmprep-")) / "out" if temporary else Path(out)
    staging = f"{str(out).rstrip('/')}.tmp-{os.getpid()}-{os.urandom(4).hex()}" if remote_out else None
    from llmprep.store import atomic_output_dir

    with contextlib.closing(executor), _sigterm_exits(), _output_errors(target), atomic_output_dir(target) as tmp:
        work = tmp / ".work"
        work.mkdir()
        spills = f"{staging}/.work" if remote_out else str(work)  # on the output filesystem: Ray tasks write there
        storage.make_dirs(spills)
        # a big .jsonl.gz runs as many tasks too; its format is detected from its first range
        tasks = split_compressed(tasks, spills, SHARD_SIZE,
                                 detect=lambda parts: None if groups[parts[0].source].format else
                                 detect_format(parts, groups[parts[0].source].columns))
        env = TaskEnv(settings, digest, spills, str(cache.base) if cache else None, SHARD_SIZE,
                      keys=keys if keys.active else None, sources=sources)
        acc = Accounts(tmp, work, cfg)
        rows_filter = RowFilter(keys if keys.active else None, [f for f, _ in files],
                                [g.name if recipe is not None else f for f, g in files])
        if cfg.executor == "local" and source is not None:
            from llmprep.shard import warm

            warm(settings)  # while the engine loads; the workers inherit the compiled template
        if preload is not None:
            preload.join()  # before the workers fork: they inherit the loaded engine
        for metas in _progress(executor.map(tasks, env), cfg):
            acc.tasks_seen += 1  # a task may hold no shard (a range of blank lines): count tasks, not shards
            for meta in metas:
                rows_filter.add(len(acc.metas), meta)  # decontamination + dedup, in input order
                acc.add(meta)
        acc.removed(*rows_filter.flush())
        clock["shards"] = time.perf_counter()
        if acc.tasks_seen != len(tasks):  # an executor that lost a task must never give a shorter dataset
            raise LlmprepError(f"--executor {cfg.executor}: {acc.tasks_seen} of {len(tasks)} tasks returned; "
                               "the output would be incomplete, nothing was written")
        kinds = acc.kinds
        if PAIR in kinds and len(kinds) > 1:
            raise ConfigError("INPUT mixes sentence pairs with chats or documents; prepare them separately")
        if CHAT not in kinds:
            template_name, source = None, None
        index = RowIndex.build(acc.metas)
        clean = np.flatnonzero(index.columns.get("clean", np.ones(len(index), bool)))  # not decontaminated/deduped
        if len(clean) == 0:
            raise LlmprepError(f"no usable rows: {acc.read} records read, {acc.n_rejected} rejected, "
                               f"{acc.n_dropped} dropped. First reasons: " + "; ".join(acc.first_reasons()
                                                                                       or _top(acc)))
        # the test split comes from unique, clean rows before any repeat: no train row is ever copied into it;
        # --history per-turn: all rows of one conversation land in the same split
        record_groups = _record_ids(index)[clean] if cfg.history == "per-turn" else None
        train_at, test_at = split_rows(len(clean), cfg.test_size, cfg.seed, record_groups)
        train_idx, test_idx = clean[train_at], clean[test_at]
        kept = {"train": len(train_idx)} | ({"test": len(test_idx)} if len(test_idx) else {})
        mixed = None
        if recipe is not None:
            train_idx, mixed = _mix(recipe, index, acc, train_idx, rows_filter, [g for _, g in files], groups)
            kept["train"] -= mixed["dropped"]
        splits = {"train": train_idx} | ({"test": test_idx} if len(test_idx) else {})
        fingerprint = hashlib.sha256(repr((version(), [s.sha256 for s in scans], tok_fingerprint, source,
                                           sorted(options.items()), recipe, keys.settings())).encode()
                                     ).hexdigest()[:16]
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        rows, pack_stats = assemble(index, splits, cfg, pad_id, tmp, fingerprint)
        write_dataset_dict(tmp, list(splits))
        report = make_report(cfg, acc, index, splits, rows, options, kept) | rows_filter.report()
        if record_groups is not None:  # several rows per record: records kept, not rows
            report["records"]["kept"] = int(len(np.unique(record_groups)))
        if CHAT in kinds:
            report["chat"] = chat_report([m.chat for m in acc.metas if m.chat], cfg)
        if mixed is not None:
            report["mix"] = mixed
        report["inputs"] = [{"path": s.path, "sha256": s.sha256} | _input_entry(g, recipe)
                            for s, (_, g) in zip(scans, files)]
        report["tokenizer"] = {"name": str(cfg.tokenizer), "class": tokenizer_class(tok), "vocab_size": len(tok),
                               "fingerprint": tok_fingerprint}
        report["template"] = {"name": template_name, "sha256": template_fingerprint(source) if source else None}
        if source:
            report["engine"]["template_engine"] = describe_engine(source)
            report["template"].update(template_facts(source, tok))
        if pack_stats:
            report["packing"] = pack_stats
        acc.finish(rows_filter.records(tasks, acc.metas, SHARD_SIZE))
        write_json(tmp / REPORT, report)
        if remote_out:
            storage.remove(spills)
        if out is not None:  # llmprep doctor's cheap checks on what was just written (into report.json), report.html
            from llmprep.report import finish_output

            report["doctor"] = finish_output(tmp, tok)
        shutil.rmtree(work)  # after the doctor's pass: it reads a gzip input's decompressed copy there
        clock["assemble"] = time.perf_counter()
        if cache is not None:
            _explain_misses(cache, acc, shaping)
        run_info = make_run_info(cfg, executor, tasks, acc, cache, cache_warning, clock)
        write_json(tmp / RUN, run_info)  # the one file allowed to differ between identical runs
    if cache is not None:
        _update_cache(cache, acc, shaping)
    if remote_out:
        storage.publish(target, str(out), staging)
        shutil.rmtree(target.parent, ignore_errors=True)
        target, temporary = out, False
    result = PrepareResult(target, report, run_info, seconds=run_info["seconds"]["total"], temporary=temporary)
    if temporary:
        weakref.finalize(result, shutil.rmtree, str(target.parent), True)
    return result


PRELOAD_BYTES = 4 << 20  # inputs at least this big: load the fast engine while the inputs are planned


def _preload_fast_engine(tok, cfg: PrepareConfig, files: list[str]) -> threading.Thread | None:
    """Load the fastokens engine for `tok` in a thread while the main thread plans the inputs, so forked
    workers inherit it instead of each loading it (~0.3 s, before their first shard). Only for a local run
    of inputs big enough to use it (--engine auto chooses it for big batches); a failure here is silent:
    the engine is then loaded, or found missing, where it is used, as without the preload.

    Safe to fork after: the thread has finished (joined) and never encoded, so no pool thread exists."""
    if cfg.engine == "tokenizers" or cfg.executor != "local":
        return None
    try:
        if sum(os.path.getsize(f) for f in files if not storage.is_uri(f)) < PRELOAD_BYTES:
            return None
        from llmprep.encode import backend, fast_engine_for, tokenizer_json

        text = tokenizer_json(backend(tok))  # the key workers look it up by (cached: they inherit it)
    except (OSError, LlmprepError, AttributeError):
        return None
    thread = threading.Thread(target=fast_engine_for, args=(text,), name="llmprep-preload", daemon=True)
    thread.start()
    return thread


@dataclass
class _Group:
    """The files of one --mix source (or all INPUTs) with the format and columns they are read with."""

    name: str | None
    files: list[str]
    format: str | None
    columns: dict


def _recipe(cfg: PrepareConfig, inputs: list[str]) -> Recipe | None:
    if cfg.mix is None:
        return None
    if inputs:
        raise ConfigError(f"--mix {cfg.mix!r}: the recipe's sources are the inputs; give no INPUT with --mix "
                          f"(got {', '.join(map(str, inputs[:3]))})")
    return load_recipe(cfg.mix)


def _sources(cfg: PrepareConfig, inputs: list[str], recipe: Recipe | None) -> list[_Group]:
    """INPUTs as one group, or each recipe source with its format/columns (--format/--column as defaults)."""
    if recipe is None:
        return [_Group(None, storage.expand([str(i) for i in inputs]), cfg.format, dict(cfg.columns))]
    return [_Group(s.name, storage.expand(list(s.paths)), s.format or cfg.format, {**cfg.columns, **s.columns})
            for s in recipe.sources]


def _mix(recipe: Recipe, index: RowIndex, acc: Accounts, train: np.ndarray, rows_filter: RowFilter,
         group_of_file: list[_Group], groups: list[_Group]) -> tuple[np.ndarray, dict]:
    """Down-sample or repeat each source's train rows to its share -> (train rows in output order, report's mix)."""
    source_of_file = np.array([groups.index(g) for g in group_of_file], dtype=np.int64)
    file_of_shard = np.array([m.file for m in acc.metas], dtype=np.int64)
    source = source_of_file[file_of_shard[index.shard_of(train)]]
    pairs = PAIR in acc.kinds  # sentence pairs train no token: their shares count all tokens
    weights = index.columns["length" if pairs else "trained"][train].astype(np.int64)
    order, left_out, left_source, reasons, mix_plan = mix_order(recipe, train, source, weights)
    rows_filter.drop_for_mix(index, left_out, left_source, reasons)
    acc.removed(*rows_filter.flush())
    if len(order) == 0:
        raise LlmprepError(f"--mix {recipe.path}: the recipe selects no train row: "
                           + "; ".join(f"{s['name']}: {s.get('reason', 'no rows')}" for s in mix_plan.summary()))
    distinct = len(train) - len(left_out)
    return order, {
        "recipe": recipe.path, "seed": recipe.seed,
        "total_tokens": recipe.total_tokens if recipe.total_tokens is not None else "scarcest",
        "measure": "tokens (sentence pairs train no token)" if pairs else "trained tokens",
        "trained_tokens": mix_plan.total_tokens, "rows": len(order), "distinct_rows": distinct,
        "repeated_rows": len(order) - distinct, "dropped": len(left_out),
        "sources": mix_plan.summary()}


def _input_entry(group: _Group, recipe: Recipe | None) -> dict:
    """report.json's inputs entry extras: a --mix file's source, format and columns (the doctor reads them)."""
    if recipe is None:
        return {}
    return {"source": group.name, "format": group.format, "columns": dict(sorted(group.columns.items()))}


def _top(acc: Accounts) -> list[str]:
    """The most frequent reject reasons (when every row was removed after its shard: dedup, decontamination)."""
    return [f"{n:,} x {r}" for r, n in sorted(acc.rejected_reasons.items(), key=lambda kv: -kv[1])[:3]]


def _open_cache(cfg: PrepareConfig) -> tuple[ShardCache | None, str | None]:
    """The shard cache, or None with one warning when its dir cannot be written (read-only, full)."""
    if not cfg.cache:
        return None, None
    cache = ShardCache(Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir())
    problem = cache.probe()
    if problem is None:
        return cache, None
    warning = f"--cache-dir: {problem}: running without the cache"
    warn(warning)
    return None, warning


def _explain_misses(cache: ShardCache, acc: Accounts, shaping: dict) -> None:
    """Name why each computed shard missed, against the last run's manifest (for run.json and the summary)."""
    last = cache.manifest()
    for meta in acc.metas:
        if not meta.hit:
            reason = miss_reason(meta.content, meta.miss or "missing", shaping, last)
            acc.misses[reason] = acc.misses.get(reason, 0) + 1


def _update_cache(cache: ShardCache, acc: Accounts, shaping: dict) -> None:
    """After a complete run: save its manifest and keep the cache under its size cap."""
    cache.write_manifest({"settings": shaping, "content": sorted({m.content for m in acc.metas})})
    try:
        cache.prune(parse_size(os.environ.get("LLMPREP_CACHE_MAX_SIZE", DEFAULT_MAX_SIZE)))
    except OSError:
        pass  # a cache we cannot prune (read-only since the probe) is not the run's failure


def _progress(results: Iterator[list[ShardMeta]], cfg: PrepareConfig) -> Iterator[list[ShardMeta]]:
    from tqdm.auto import tqdm

    with tqdm(desc="prepare", unit="rec", disable=not cfg.progress, leave=False) as bar:
        for metas in results:
            bar.update(sum(m.records for m in metas))
            yield metas


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM ends the run like Ctrl-C does: workers stopped, temp output removed, exit status 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _output_errors(out: Path):
    """A full disk or read-only file system while writing the output: one error naming --out and the cause
    (atomic_output_dir has removed the half-written temp dir by then)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
            raise
        raise LlmprepError(f"--out {str(out)!r}: cannot write the output ({exc.filename or out}): "
                           f"{exc.strerror}; nothing was written there") from None


NOT_OPTIONS = ("tokenizer", "progress", "num_proc", "engine", "cache", "cache_dir", "executor", "ray_address")


def report_options(cfg: PrepareConfig) -> dict:
    """The options that shape the dataset (report and fingerprint), read field by field: dataclasses.asdict
    would deep-copy every value, the tokenizer object included (~0.75 s per call for a real one).

    Example: PrepareConfig(max_length=64) -> {"format": None, "template": "auto", "max_length": 64, ...}
    """
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in NOT_OPTIONS}


def _jsonable(value):
    """As the manifest stores it (JSON): a tuple compares equal to the list read back next run."""
    if isinstance(value, tuple):
        return list(value)
    return dict(sorted(value.items())) if isinstance(value, dict) else value


def chat_report(parts: list[dict], cfg: PrepareConfig) -> dict:
    """The report's chat section, summed over shards: message kinds, rows per conversation (--history),
    what the template did not print of trained turns, replies left without a trained stop token, and
    whether the template renders every prefix of a conversation as the start of the whole.

    Example: {"messages": {"tool_calls": 12, ...}, "history": {"mode": "full", "conversations": 10, "rows": 10},
              "no_stop_token": {"count": 0, "eos_added": 0, "conversations": []}, ...}
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

    Example (SmolLM2): {"end_of_turn": ["<|endoftext|>", "<|im_end|>"], "generation_prompt": "<|im_start|>assistant\\n"}
    """
    from llmprep.render import ChatRenderer

    renderer = ChatRenderer.for_tokenizer(source, tok)
    return {"end_of_turn": list(renderer.end_of_turn), "generation_prompt": renderer.locator.generation_prompt}


def per_turn_conflicts(cfg: PrepareConfig) -> list[str]:
    """--history per-turn makes several rows per record, each keyed by its whole record: --dedup would remove
    a conversation's later rows as copies of its first, and --decontaminate and --mix count rows as records.
    Until they work per record, the combination is refused rather than losing rows.

    Example: history="per-turn", dedup="exact" -> ["--history per-turn cannot be combined with --dedup exact ..."]
    """
    used = [f"--dedup {cfg.dedup}"] * (cfg.dedup != "none") + ["--decontaminate"] * bool(cfg.decontaminate) + \
        ["--mix"] * (cfg.mix is not None)
    if not used:
        return []
    return [f"--history per-turn cannot be combined with {', '.join(used)} yet (they work on rows, and per-turn makes "
            "several rows of one conversation): give --dedup none, no --decontaminate/--mix, or --history full"]


def _record_ids(index: RowIndex) -> np.ndarray:
    """One id per input record behind the rows (--history per-turn gives a record several rows).
    Example: shard [0, 0, 1], record [0, 0, 0] -> [0, 0, 2**32]"""
    return index.shard_of(np.arange(len(index))) * (1 << 32) + index.columns["record"].astype(np.int64)


def split_rows(n: int, test_size: float, seed: int, groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """split_indices over rows, or over records when rows come in groups (--history per-turn): all rows of
    one conversation land in the same split, so the test split never holds a prefix of a training row.

    Example: n=4, groups=[0, 0, 1, 2], one test conversation -> e.g. (train [0, 1, 2], test [3])
    """
    if groups is None:
        return split_indices(n, test_size, seed)
    ids, inverse = np.unique(groups, return_inverse=True)
    _, test_groups = split_indices(len(ids), test_size, seed)
    test = np.isin(inverse, test_groups)
    return np.flatnonzero(~test), np.flatnonzero(test)


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


def _sha256(path) -> str:
    """sha256 of a file's bytes (path or URI): report.json's input digests (llmprep.checks verifies them)."""
    h = hashlib.sha256()
    with storage.open_bytes(str(path)) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tokenizer_fingerprint(tok) -> str:
    """Hash of the tokenizer's full serialisation: two runs with different tokenizers never match.
    (Without the truncation/padding an earlier call may have left on: encoding turns them off anyway.)"""
    inner = getattr(tok, "backend_tokenizer", None)
    blob = tokenizer_json(whole_texts(inner)) if inner is not None else repr(sorted(tok.get_vocab().items()))
    extra = repr((tok.bos_token, tok.eos_token, tok.pad_token, getattr(tok, "chat_template", None)))
    return hashlib.sha256((blob + extra).encode("utf-8")).hexdigest()[:16]

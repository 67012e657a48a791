"""Benchmark: llmprep prepare vs TRL SFTTrainer's dataset preparation vs the per-example recipe vs the raw bound.

    python benchmarks/bench_prepare.py            # 20,000 conversations (~3.9M tokens), ~4-6 min on 2 cores
    python benchmarks/bench_prepare.py --quick    # 200 conversations, one run of each: a smoke run
    python benchmarks/bench_prepare.py --profile  # also cProfile one llmprep run (num_proc=1) by stage

All methods start from the same JSONL file (built by benchmarks/data.py from chatterbot-corpus text,
seeded) and the SmolLM2-135M-Instruct tokenizer; tokens/s is total input_ids tokens / wall seconds,
best of --repeat runs (in one process, one after the other, so machine noise hits all of them).

1. llmprep  prepare(out=DIR): read + render + encode + assistant-only labels + Arrow + write to disk;
            num_proc default (min(cpus, 4)) and 1.
2. TRL      SFTTrainer._prepare_dataset itself (trl 1.16), called on an object carrying what
            SFTTrainer.__init__ sets (_tokenizer, chat_template, completion_only_loss), with
            assistant_only_loss=True, after load_dataset("json"). SmolLM2's own template has no
            {% generation %} markers and TRL's get_training_chat_template has no patch for it (it
            raises), so the tokenizer gets TRL's documented fix: the same template with the assistant
            reply and its <|im_end|> wrapped in {% generation %} ... {% endgeneration %} (renders the
            same text byte for byte; checked). max_length=None (no truncation pass: TRL's cheapest
            setting; llmprep still runs its fit step). Best of dataset_num_proc unset and 2.
3. seeds    load_dataset("json") + .map(tokenizing, batched=True, batch_size=1), tokenizing =
            apply_chat_template(tokenize=False) + tokenizer(text) per example (one call, not the
            seed's two: the kindest reading for the recipe). No labels.
4. raw      render every conversation (messages already in memory) with the compiled template, then
            backend.encode_batch once: no labels, no Arrow, no disk. The floor for any exact method.
            The physical bound is the fastest exact render (plain jinja2 or MiniJinja, whichever is
            faster) + the fastest exact encoder (fastokens); llmprep's share of it is bound s / llmprep s.

Whole processes (imports, tokenizer load and writing the dataset to disk included), median of
--process-runs, llmprep and TRL alternating, after one untimed warm-up run of each:
  llmprep   `python -m llmprep.cli prepare FILE --out DIR --no-cache --quiet --max-length 1048576`
  TRL       `python bench_prepare.py --trl-process FILE DIR`: what a TRL user's script does —
            import trl, AutoTokenizer, load_dataset("json"), SFTTrainer._prepare_dataset (as above,
            best config: dataset_num_proc=2 when there are 2+ cores), save_to_disk(DIR)
Start-up: `llmprep inspect "text"` and `llmprep prepare` of a 20-record file, median of 3 (target < 2 s).

Then: input_ids of llmprep == TRL == tokenizer.apply_chat_template(tokenize=True) (own template)
== seeds, row by row, and llmprep labels == TRL labels. Any mismatch: printed loudly, exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import build_conversations, write_jsonl  # noqa: E402

TOKENIZER = "smollm2"
NO_TRUNCATION = 1 << 20  # no benchmark row is near this: every method keeps every token
STARTUP_LIMIT_S = 2.0  # issue 9: `llmprep inspect "text"` and a 20-record prepare, whole process


@dataclass
class Timing:
    name: str
    config: str
    seconds: list[float] = field(default_factory=list)
    tokens: int = 0  # tokens and conversations the method processed (set after the runs)
    rows: int = 0

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.best


# --- the dataset ---------------------------------------------------------------------------------

def make_dataset(n: int, seed: int, workdir: Path) -> tuple[Path, list]:
    """-> (JSONL path, conversations)."""
    convs = build_conversations(n, seed)
    return write_jsonl(workdir / "chats.jsonl", convs), convs


def generation_tagged(source: str) -> str:
    """SmolLM2's ChatML template with each assistant reply + its <|im_end|> in {% generation %} markers
    (what TRL's *_training.jinja patches do for the templates it knows). Renders identical text."""
    old = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    if old not in source:
        raise RuntimeError("unexpected SmolLM2 chat template; update generation_tagged()")
    new = ("{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
           "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}{% else %}" + old + "{% endif %}")
    return source.replace(old, new)


def trl_tokenizer():
    """A fresh SmolLM2 tokenizer (not llmprep's cached one) with the generation-tagged template."""
    from transformers import AutoTokenizer

    from llmprep.tokenizer import embedded_path

    tok = AutoTokenizer.from_pretrained(str(embedded_path(TOKENIZER)))
    tok.chat_template = generation_tagged(tok.chat_template)
    return tok


# --- the methods ---------------------------------------------------------------------------------

def llmprep_options(**extra) -> dict:
    """prepare() options for a fair timing: no truncation, no progress bar, and the shard cache (when
    this llmprep has one) off, so every run computes everything. Options this llmprep lacks are left out."""
    from dataclasses import fields

    from llmprep.prepare import PrepareConfig

    known = {f.name for f in fields(PrepareConfig)}
    opts = {"tokenizer": TOKENIZER, "test_size": 0, "progress": False, "max_length": NO_TRUNCATION,
            "cache": False, "dedup": "none", **extra}  # TRL keeps repeated rows: the same rows on both sides
    return {k: v for k, v in opts.items() if k in known}


def run_llmprep(path: Path, workdir: Path, num_proc: int | None, **extra):
    """-> (seconds, train Dataset)."""
    from llmprep.prepare import prepare

    out = workdir / f"llmprep-out-{num_proc}"
    t = time.perf_counter()
    dd = prepare([str(path)], out=out, num_proc=num_proc, **llmprep_options(**extra))
    seconds = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    return seconds, dd["train"]


def _load_json(path: Path, cache: Path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))


def run_trl(path: Path, workdir: Path, num_proc: int | None, tok=None):
    """SFTTrainer._prepare_dataset on a fresh load_dataset("json") -> (seconds, Dataset)."""
    from trl import SFTConfig, SFTTrainer
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    tok = tok or trl_tokenizer()
    cache = Path(tempfile.mkdtemp(prefix="trl-cache-", dir=workdir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = SFTConfig(output_dir=str(workdir / "trl-out"), assistant_only_loss=True, max_length=None,
                         dataset_num_proc=num_proc, use_cpu=True, bf16=False, report_to=[])
    # What SFTTrainer.__init__ sets before calling _prepare_dataset (sft_trainer.py, trl 1.16):
    shim = types.SimpleNamespace(
        _tokenizer=tok,
        chat_template=None if has_generation_markers(tok.chat_template) else get_training_chat_template(tok),
        completion_only_loss=False)  # args.completion_only_loss None + a "messages" dataset -> False
    t = time.perf_counter()
    ds = _load_json(path, cache)
    ds = SFTTrainer._prepare_dataset(shim, ds, tok, args, packing=False, formatting_func=None, dataset_name="train")
    seconds = time.perf_counter() - t
    return seconds, ds


def run_seeds(path: Path, workdir: Path):
    """The per-example recipe of the seed notes -> (seconds, Dataset)."""
    from llmprep.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(TOKENIZER)
    cache = Path(tempfile.mkdtemp(prefix="seeds-cache-", dir=workdir))

    def tokenizing(example):
        text = tokenizer.apply_chat_template(example["messages"][0], tokenize=False)
        return tokenizer(text, return_tensors="np")

    t = time.perf_counter()
    ds = _load_json(path, cache)
    ds = ds.map(tokenizing, batched=True, batch_size=1)
    return time.perf_counter() - t, ds


def run_raw(convs: list, engine: str = "tokenizers") -> tuple[float, float, int] | None:
    """Fastest exact render + one batch encode -> (render seconds, encode seconds, tokens).

    Render: plain (unsandboxed) jinja2 or MiniJinja, whichever is faster here (both give the same
    text; checked). engine "tokenizers": backend.encode_batch (what transformers/TRL use);
    "fastokens": the fastest exact encoder (None when it is not installed)."""
    from llmprep.tokenizer import load_tokenizer

    tok = load_tokenizer(TOKENIZER)
    backend = tok.backend_tokenizer
    if engine == "fastokens":
        try:
            import fastokens
        except ImportError:
            return None
        fast = fastokens.Tokenizer.from_json_str(backend.to_str())
        encode = lambda texts: len(fast.encode_batch_flat(texts, add_special_tokens=False)[0]) // 4  # noqa: E731
    else:
        encode = lambda texts: sum(len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False))  # noqa: E731
    best, texts = None, None
    for render in _renderers(tok.chat_template):
        t0 = time.perf_counter()
        out = [render(m) for m in convs]
        seconds = time.perf_counter() - t0
        if texts is not None and out != texts:
            raise RuntimeError("jinja2 and MiniJinja rendered different text")
        texts, best = out, seconds if best is None else min(best, seconds)
    t1 = time.perf_counter()
    tokens = encode(texts)
    t2 = time.perf_counter()
    return best, t2 - t1, tokens


def _renderers(source: str) -> list:
    """messages -> text with plain jinja2, and with MiniJinja when installed."""
    import jinja2

    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    out = [lambda m: template.render(messages=m, add_generation_prompt=False)]
    try:
        import minijinja
    except ImportError:
        return out
    env = minijinja.Environment(trim_blocks=True, lstrip_blocks=True)
    env.add_template("t", source)
    return out + [lambda m: env.render_template("t", messages=m, add_generation_prompt=False)]


# --- whole processes -------------------------------------------------------------------------------

def trl_process(path: str, out: str) -> None:
    """The TRL side of the whole-process comparison, run as `bench_prepare.py --trl-process IN OUT`."""
    import datasets

    datasets.disable_progress_bars()
    workdir = Path(tempfile.mkdtemp(prefix="trl-process-"))
    try:
        _, ds = run_trl(Path(path), workdir, 2 if (os.cpu_count() or 1) > 1 else None)
        ds.save_to_disk(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _timed_process(argv: list[str]) -> float:
    # Both sides start as on a user's machine, importing from .pyc files the warm-up round wrote: a machine
    # that sets PYTHONDONTWRITEBYTECODE (this one does) would compile an editable checkout's sources on
    # every start (~0.12 s for llmprep's), which no installed package pays.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}... failed:\n{proc.stderr[-2000:]}")
    return seconds


def llmprep_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmprep.cli", *args]


def whole_processes(path: Path, workdir: Path, runs: int = 3, log=print, *,
                    warm_up: bool = True) -> dict[str, list[float]]:
    """llmprep's CLI and a TRL script as whole processes, alternating; -> {"llmprep": [s...], "TRL": [...]}."""
    out = workdir / "process-out"
    # The same work as TRL's script and as the in-process runs (llmprep_options): every row kept (no
    # --dedup; TRL keeps repeats), no test split. The defaults (--dedup exact, --test-size 0.1) cost more.
    argv = {"llmprep": llmprep_argv("prepare", str(path), "--out", str(out), "--no-cache", "--quiet",
                                    "--max-length", str(NO_TRUNCATION), "--dedup", "none", "--test-size", "0"),
            "TRL": [sys.executable, str(Path(__file__).resolve()), "--trl-process", str(path), str(out)]}
    return _alternate(argv, out, runs, warm_up, log)


def _alternate(argv: dict[str, list[str]], out: Path, runs: int, warm_up: bool, log) -> dict[str, list[float]]:
    """Run each command `runs` times, alternating, after one untimed warm-up round (OS caches, .pyc files,
    llmprep's tokenizer snapshot); -> {name: [seconds, ...]}."""
    times: dict[str, list[float]] = {name: [] for name in argv}
    for run in range(0 if warm_up else 1, runs + 1):
        for name, cmd in argv.items():
            seconds = _timed_process(cmd)
            shutil.rmtree(out, ignore_errors=True)
            if run:
                times[name].append(seconds)
                log(f"  [{run}] {name}: {seconds:.2f} s")
    return times


def startup(workdir: Path, runs: int = 3, log=print, *, warm_up: bool = True) -> dict[str, list[float]]:
    """Seconds of `llmprep inspect "text"` and of `llmprep prepare` on a 20-record file (after a warm-up)."""
    small = write_jsonl(workdir / "twenty.jsonl", build_conversations(20, 1))
    out = workdir / "startup-out"
    argv = {"inspect \"text\"": llmprep_argv("inspect", "Hello world, 你好"),
            "prepare 20 records": llmprep_argv("prepare", str(small), "--out", str(out), "--no-cache", "--quiet")}
    return _alternate(argv, out, runs, warm_up, log)


# --- checks --------------------------------------------------------------------------------------

def rows(ds, column: str) -> list[np.ndarray]:
    """A list column of a Dataset -> one int64 array per row (no per-token Python objects)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = ds.data.table.column(column) if hasattr(ds.data, "table") else ds.data.column(column)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    # seeds: list<list<int>> (batch of one per row) -> flatten one level
    if pa.types.is_list(col.type.value_type) or pa.types.is_large_list(col.type.value_type):
        col = pc.list_flatten(col)
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(lengths))]


def count_mismatches(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    """Rows that differ (a missing/extra row counts as a mismatch)."""
    bad = abs(len(a) - len(b))
    return bad + sum(1 for x, y in zip(a, b) if len(x) != len(y) or not np.array_equal(x, y))


def template_ids(convs: list, chunk: int = 1000) -> list[np.ndarray]:
    """tokenizer.apply_chat_template(tokenize=True) with SmolLM2's own (untagged) template."""
    from llmprep.tokenizer import load_tokenizer

    tok = load_tokenizer(TOKENIZER)
    out = []
    for i in range(0, len(convs), chunk):
        enc = tok.apply_chat_template(convs[i:i + chunk], tokenize=True)
        ids = enc["input_ids"] if hasattr(enc, "keys") else enc
        out += [np.asarray(x, dtype=np.int64) for x in ids]
    return out


def check(convs: list, llm_ds, trl_ds, seeds_ds=None) -> dict[str, int]:
    """Mismatch counts (0 everywhere = identical). llmprep == TRL (tagged template) and llmprep ==
    apply_chat_template (own template) together also show the tagged template renders the same text."""
    llm_ids, trl_ids = rows(llm_ds, "input_ids"), rows(trl_ds, "input_ids")
    result = {
        "rows (llmprep, TRL, conversations)": int(not (len(llm_ids) == len(trl_ids) == len(convs))),
        "input_ids llmprep != TRL": count_mismatches(llm_ids, trl_ids),
        "input_ids llmprep != apply_chat_template": count_mismatches(llm_ids, template_ids(convs)),
        "labels llmprep != TRL (assistant_only_loss)": count_mismatches(rows(llm_ds, "labels"), rows(trl_ds, "labels")),
    }
    if seeds_ds is not None:
        seeds_ids = rows(seeds_ds, "input_ids")
        result["input_ids llmprep != seeds recipe"] = count_mismatches(llm_ids[:len(seeds_ids)], seeds_ids)
    return result


# --- profile -------------------------------------------------------------------------------------

STAGES = [  # (stage, top-level?, [(file suffix, function name; "*x" = name contains x)])
    ("parse_record: json.loads", False, [("records.py", "parse_record")]),
    ("to_examples: records -> validated chats (incl. parsing)", True, [("examples.py", "to_examples")]),
    ("ChatRenderer.layout: render + spans", True, [("renderer.py", "layout")]),
    ("  of which template renders (MiniJinja, or the jinja2 sandbox)", False, [("engine.py", "render")]),
    ("ChatEncoder.encode: ids + labels", True, [("encode.py", "encode")]),
    ("  of which Rust encode calls (fastokens/tokenizers)", False, [("~", "*encode_batch")]),
    ("  of which labels + numpy glue", False, []),  # encode - Rust
    ("fit (truncate/drop)", True, [("truncate.py", "fit")]),
    ("build_splits: to Arrow", True, [("output.py", "build_splits")]),
    ("save: Arrow -> disk", True, [("prepare.py", "save")]),
    ("report: sha256 + tokenizer fingerprints", True, [("prepare.py", "_sha256"),
                                                     ("prepare.py", "_tokenizer_fingerprint")]),
]


def profile_llmprep(path: Path, workdir: Path) -> list[tuple[str, float]]:
    """cProfile one num_proc=1 run; -> [(stage, cumulative seconds)], the total first, the rest last."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    t = time.perf_counter()
    run_llmprep(path, workdir, 1)
    total = time.perf_counter() - t
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}

    def cumulative(keys) -> float:
        return sum(v[3] for (f, _, fn), v in stats.items() for suffix, name in keys
                   if f.endswith(suffix) and (fn == name or (name.startswith("*") and name[1:] in fn)))

    out = [("total (under cProfile)", total)]
    top = 0.0
    for stage, is_top, keys in STAGES:
        seconds = cumulative(keys) if keys else out[-2][1] - out[-1][1]
        top += seconds if is_top else 0.0
        out.append((stage, seconds))
    out.append(("everything else (tokenizer load, glue, split)", max(0.0, total - top)))
    return out


# --- main ----------------------------------------------------------------------------------------

def benchmark(n: int, seed: int = 0, repeat: int = 2, workdir: Path | None = None, *, repeat_slow: int = 1,
              seeds: bool = True, seeds_n: int = 5000, trl_procs=(None, 2), llmprep_procs=(None, 1),
              llmprep_tokenizers_engine: bool = True, process_runs: int = 3, startup_runs: int = 3,
              warm_up: bool = True, log=print) -> dict:
    """Run every method, interleaved; -> {"timings": [Timing], "tokens": {...}, "checks": {...}, ...}.

    llmprep and the raw bounds run `repeat` times, TRL and the seeds recipe (5-15x slower) `repeat_slow`
    times per config: best-of favours the method repeated more, so this is the conservative way round.
    The seeds recipe runs on the first `seeds_n` conversations only (it is linear in rows and the
    slowest by far); its tokens/s is over those rows' tokens. Then `process_runs` whole-process runs
    of each (0: none) and `startup_runs` of the start-up commands (0: none)."""
    import datasets

    from llmprep.tokenizer import load_tokenizer

    datasets.disable_progress_bars()  # for every method alike
    load_tokenizer(TOKENIZER)  # warm the per-process cache: loading is not preparing
    own = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        t = time.perf_counter()
        path, convs = make_dataset(n, seed, workdir)
        seeds_n = min(seeds_n, n)
        seeds_path = path if seeds_n == n else write_jsonl(workdir / "chats-seeds.jsonl", convs[:seeds_n])
        log(f"dataset: {n} conversations, {path.stat().st_size / 1e6:.1f} MB JSONL ({time.perf_counter() - t:.1f} s)")
        trl_tok = trl_tokenizer()
        engine_opt = "engine" in llmprep_options(engine="x")
        timings: list[Timing] = []
        llm_ds = trl_ds = seeds_ds = None
        raw: dict[str, tuple] = {}

        def timed(name, config, fn, *args, **kw):
            tm = _timing(timings, name, config)
            s, ds = fn(*args, **kw)
            tm.seconds.append(s)
            log(f"  [{len(tm.seconds)}] {name} {config}: {s:.2f} s")
            return ds

        for r in range(repeat):
            for procs in llmprep_procs:
                llm_ds = timed("llmprep prepare", f"num_proc={'default' if procs is None else procs}"
                               + (", engine=auto" if engine_opt else ""), run_llmprep, path, workdir, procs)
            if engine_opt and llmprep_tokenizers_engine and r < repeat_slow:
                timed("llmprep prepare", "num_proc=1, engine=tokenizers", run_llmprep, path, workdir, 1,
                      engine="tokenizers")
            for procs in (trl_procs if r < repeat_slow else ()):
                config = f"dataset_num_proc={'unset' if procs is None else procs}"
                trl_ds = timed("TRL SFTTrainer._prepare_dataset", config, run_trl, path, workdir, procs, trl_tok)
            if seeds and r < repeat_slow:
                seeds_ds = timed("seeds: map(batch_size=1) per example", f"first {seeds_n:,} conversations",
                                 run_seeds, seeds_path, workdir)
            for engine in ("tokenizers", "fastokens"):
                got = run_raw(convs, engine)
                if got is None:
                    continue
                log(f"  [{r + 1}] raw bound ({engine}): render {got[0]:.2f} s + encode {got[1]:.2f} s")
                if engine not in raw or sum(got[:2]) < sum(raw[engine][:2]):
                    raw[engine] = got
        for engine, (render_s, encode_s, _) in raw.items():
            what = "backend.encode_batch" if engine == "tokenizers" else "fastokens encode_batch_flat"
            _timing(timings, f"raw bound: render + {what}", "no labels, no disk").seconds.append(render_s + encode_s)
        llm_rows = rows(llm_ds, "input_ids")
        tokens = int(sum(len(x) for x in llm_rows))
        seeds_tokens = int(sum(len(x) for x in llm_rows[:seeds_n]))
        for tm in timings:
            seeds_row = tm.name.startswith("seeds")
            tm.tokens, tm.rows = (seeds_tokens, seeds_n) if seeds_row else (tokens, n)
        checks = check(convs, llm_ds, trl_ds, seeds_ds)
        processes = whole_processes(path, workdir, process_runs, log, warm_up=warm_up) if process_runs else {}
        starts = startup(workdir, startup_runs, log, warm_up=warm_up) if startup_runs else {}
        return {"timings": timings, "tokens": tokens, "seeds_tokens": seeds_tokens, "seeds_n": seeds_n,
                "checks": checks, "raw": raw, "n": n, "path": path, "workdir": workdir, "processes": processes,
                "startup": starts}
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def _timing(timings: list[Timing], name: str, config: str) -> Timing:
    for tm in timings:
        if tm.name == name and tm.config == config:
            return tm
    timings.append(Timing(name, config))
    return timings[-1]


def ratios(result: dict) -> dict[str, float]:
    """Throughput ratios (tokens/s) of llmprep's best config against each other method's best, and
    TRL / llmprep whole-process seconds (medians)."""
    best: dict[str, float] = {}
    for tm in result["timings"]:
        key = {"llmprep": "llmprep", "TRL": "TRL best", "seeds:": "seeds"}.get(tm.name.split(" ")[0])
        if tm.name.startswith("raw bound"):
            key = "raw bound (tokenizers)" if "backend.encode_batch" in tm.name else "raw bound (fastokens)"
        if tm.name.startswith("llmprep") and "engine=tokenizers" in tm.config:
            key = "llmprep engine=tokenizers"
        best[key] = max(best.get(key, 0.0), tm.tokens_per_s)
    llm = best["llmprep"]
    out = {f"llmprep / {k}": llm / v for k, v in best.items() if k not in ("llmprep", "llmprep engine=tokenizers")}
    if "llmprep engine=tokenizers" in best:
        out["llmprep engine=tokenizers / TRL best"] = best["llmprep engine=tokenizers"] / best["TRL best"]
    processes = result.get("processes") or {}
    if processes.get("llmprep") and processes.get("TRL"):
        out["whole process: TRL / llmprep (median)"] = (statistics.median(processes["TRL"])
                                                        / statistics.median(processes["llmprep"]))
    return out


def targets(result: dict) -> list[tuple[str, str, str, bool | None]]:
    """(what, measured, target, met) for issue 9's speed targets; met None where not measured."""
    r = ratios(result)
    out = []
    for what, (key, target) in [("in process: llmprep / TRL best (tokens/s)", ("llmprep / TRL best", 10.0)),
                                ("whole process: TRL / llmprep (median s)",
                                 ("whole process: TRL / llmprep (median)", 5.0))]:
        value = r.get(key)
        out.append((what, "-" if value is None else f"{value:.2f}x", f">= {target:g}x",
                    None if value is None else value >= target))
    for name, times in (result.get("startup") or {}).items():
        median = statistics.median(times)
        out.append((f"start-up: llmprep {name} (median s)", f"{median:.2f} s", f"< {STARTUP_LIMIT_S:g} s",
                    median < STARTUP_LIMIT_S))
    share = r.get("llmprep / raw bound (fastokens)")
    out.append(("share of the physical bound (render + fastokens, no labels, no disk)",
                "-" if share is None else f"{100 * share:.0f}%", "(reported)", None))
    return out


def summary(result: dict) -> dict:
    """The numbers of a run as JSON-able data: seconds per method, ratios, targets, identity checks."""
    return {"n": result["n"], "tokens": result["tokens"], "cpus": os.cpu_count(),
            "timings": [{"method": t.name, "config": t.config, "seconds": t.seconds, "tokens_per_s": t.tokens_per_s}
                        for t in result["timings"]],
            "processes": result.get("processes"), "startup": result.get("startup"), "ratios": ratios(result),
            "targets": [{"measure": m, "value": v, "target": t, "met": ok} for m, v, t, ok in targets(result)],
            "checks": result["checks"]}


def report(result: dict, console=None) -> bool:
    """Print the tables; -> True when every check passed."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"prepare throughput: {result['n']:,} conversations, {result['tokens']:,} tokens, "
                        f"SmolLM2 tokenizer, {os.cpu_count()} CPUs")
    for col, just in [("method", "left"), ("config", "left"), ("best s", "right"), ("runs", "right"),
                      ("tokens/s", "right"), ("conv/s", "right")]:
        table.add_column(col, justify=just)
    for tm in result["timings"]:
        table.add_row(tm.name, tm.config, f"{tm.best:.2f}", str(len(tm.seconds)), f"{tm.tokens_per_s:,.0f}",
                      f"{tm.rows / tm.best:,.0f}")
    console.print(table)
    for engine, (render_s, encode_s, _) in result["raw"].items():
        console.print(f"raw bound ({engine}) split: render {render_s:.2f} s, encode {encode_s:.2f} s")
    for name, times in (result.get("processes") or {}).items():
        console.print(f"whole process {name}: median {statistics.median(times):.2f} s of "
                      f"{', '.join(f'{t:.2f}' for t in times)}")
    rt = Table(title="ratios (llmprep's best config over each; >1 = llmprep faster)")
    rt.add_column("ratio")
    rt.add_column("value", justify="right")
    for k, v in ratios(result).items():
        rt.add_row(k, f"{v:.2f}x")
    console.print(rt)
    tt = Table(title="issue 9 speed targets (same run, same machine)")
    for col in ("measure", "value", "target", "met"):
        tt.add_column(col)
    for what, value, target, met in targets(result):
        tt.add_row(what, value, target, "-" if met is None else ("[green]yes[/]" if met else "[red]no[/]"))
    console.print(tt)
    ok = all(v == 0 for v in result["checks"].values())
    ct = Table(title="identity checks (mismatching rows)")
    ct.add_column("check")
    ct.add_column("mismatches", justify="right")
    for k, v in result["checks"].items():
        ct.add_row(k, f"[bold red]{v}[/]" if v else "0")
    console.print(ct)
    if not ok:
        console.print("[bold red]MISMATCH: llmprep's output differs from TRL / apply_chat_template; see above[/]")
    else:
        console.print("[green]all identical: input_ids (llmprep == TRL == apply_chat_template == seeds), labels "
                      "(llmprep == TRL assistant_only_loss)[/]")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="conversations (default 20000)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (tests/test_bench_smoke.py): 200 conversations, one run of each method and "
                         "command, no warm-up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="runs of llmprep and raw; the best is reported")
    ap.add_argument("--repeat-slow", type=int, default=1, help="runs of TRL and seeds per config (default 1)")
    ap.add_argument("--no-seeds", action="store_true", help="skip the (slow) per-example recipe")
    ap.add_argument("--seeds-n", type=int, default=5000, help="conversations for the seeds recipe (default 5000)")
    ap.add_argument("--profile", action="store_true", help="also cProfile one llmprep num_proc=1 run")
    ap.add_argument("--process-runs", type=int, default=3, help="whole-process runs of llmprep and TRL (0: none)")
    ap.add_argument("--startup-runs", type=int, default=3, help="runs of each start-up command (0: none)")
    ap.add_argument("--json", metavar="PATH", help="also write the ratios, targets and checks as JSON")
    ap.add_argument("--trl-process", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.trl_process:  # one whole-process TRL run (see whole_processes)
        trl_process(*args.trl_process)
        return 0
    n = 200 if args.quick else args.n
    quick = dict(trl_procs=(None,), llmprep_procs=(1,), llmprep_tokenizers_engine=False, warm_up=False)
    if args.quick:
        args.repeat, args.seeds_n, args.process_runs, args.startup_runs = 1, 50, 1, 1
    from rich.console import Console

    console = Console()
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        result = benchmark(n, args.seed, args.repeat, workdir, repeat_slow=args.repeat_slow, seeds=not args.no_seeds,
                           seeds_n=args.seeds_n, process_runs=args.process_runs, startup_runs=args.startup_runs,
                           log=console.print, **(quick if args.quick else {}))
        ok = report(result, console)
        if args.json:
            Path(args.json).write_text(json.dumps(summary(result), indent=2, ensure_ascii=False) + "\n")
        if args.profile:
            from rich.table import Table

            stages = profile_llmprep(result["path"], workdir)
            pt = Table(title="where llmprep's time goes (cProfile, num_proc=1; nested stages overlap)")
            pt.add_column("stage")
            pt.add_column("seconds", justify="right")
            pt.add_column("share", justify="right")
            for stage, s in stages:
                pt.add_row(stage, f"{s:.2f}", f"{100 * s / stages[0][1]:.0f}%")
            console.print(pt)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

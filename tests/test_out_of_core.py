"""The out-of-core pipeline gives the rows, order, split, report counts and rejects of the in-memory one.

`reference()` below is the in-memory pipeline `prepare` used to run (every record processed as one
shard, all rows concatenated, split, packed or padded as one table), kept here as the oracle: every
mode (chats, documents, sentence pairs, --pack bfd/wrap, padding) must match it row for row.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from helpers import a, u, write_jsonl

import llmprep.prepare as prep
from llmprep.encode import take
from llmprep.examples import detect_formats
from llmprep.output import length_stats, list_column, packed_table, pad_rows, rows_table
from llmprep.pack import pack_bfd_arrays, pack_examples
from llmprep.prepare import PrepareConfig, prepare, split_indices
from llmprep.records import expand_inputs, read_records
from llmprep.render import resolve_template
from llmprep.shard import ShardSettings, process_shard
from llmprep.tokenizer import load_tokenizer
from llmprep.truncate import NO_TRAINED


def reference(cfg: PrepareConfig, inputs: list[str]) -> tuple[dict[str, list[dict]], dict, list[dict], dict]:
    """(rows per split, report counts, rejected.jsonl lines, features per split) computed all in memory."""
    tok = load_tokenizer(cfg.tokenizer) if isinstance(cfg.tokenizer, str) else cfg.tokenizer
    records = list(read_records(expand_inputs(inputs)))
    formats: dict[str, str] = {}
    if not cfg.format:
        records = detect_formats(records, formats, cfg.columns)
    try:
        source = resolve_template(cfg.template, tok)[1]
    except Exception:
        source = None
    settings = ShardSettings(tokenizer=tok, template_source=source,
                             max_length=cfg.max_length if cfg.pack != "wrap" else 2**62, truncation=cfg.truncation,
                             train_on_prompt=cfg.train_on_prompt, train_turns=cfg.train_turns,
                             literal_control_text=cfg.literal_control_text, engine=cfg.engine, format=cfg.format,
                             columns=tuple(sorted(cfg.columns.items())))
    res = process_shard(records, formats, settings)
    enc = res.encoded
    train_idx, test_idx = split_indices(len(enc), cfg.test_size, cfg.seed)
    parts = {"train": take(enc, train_idx)}
    if len(test_idx):
        parts["test"] = take(enc, test_idx)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    rows, packing, features = {}, {}, {}
    for name, part in parts.items():
        if cfg.pack == "bfd":
            cols, packing[name] = pack_bfd_arrays(part.ids, part.labels, part.offsets, cfg.max_length)
            table = pa.table({k: list_column(v, off, pa.int8() if k == "attention_mask" else pa.int32())
                              for k, (v, off) in cols.items()})
            rows[name], features[name] = table.to_pylist(), datasets.Dataset(table).features
        elif cfg.pack == "wrap":
            docs = [part.row(r) for r in range(len(part))]
            cols, packing[name] = pack_examples({"input_ids": [d[0] for d in docs], "labels": [d[1] for d in docs]},
                                                strategy="wrap", max_length=cfg.max_length, pad_token_id=pad_id,
                                                remainder=cfg.remainder)
            rows[name], features[name] = _rows(cols), datasets.Dataset(packed_table(cols)).features
        else:
            rows[name] = _plain_rows(part, cfg, pad_id)
            width = cfg.max_length if cfg.padding == "max-length" else int(part.lengths.max())
            table = rows_table(part, padding=cfg.padding, padding_side=cfg.padding_side, width=width, pad_id=pad_id)
            features[name] = datasets.Dataset(table).features
    pairs = enc.token_type_ids is not None
    counts = {
        "records": {"read": len(enc) + len(res.rejected) + len(res.dropped), "kept": len(enc),
                    "rejected": len(res.rejected), "dropped": len(res.dropped)},
        "kept": {name: len(p) for name, p in parts.items()},
        "rows": {name: len(r) for name, r in rows.items()},
        "truncated": res.truncated,
        "tokens": {"total": int(len(enc.ids)), "trained": 0 if pairs else int((enc.labels != -100).sum()),
                   "trained_cut": 0 if pairs else _trained_cut(records, formats, settings, res)},
        "lengths": length_stats(enc.lengths),
    }
    if packing:
        counts["packing"] = packing
    rejected = [r.to_json() for r in res.rejected] + [{**r.to_json(), "dropped": True} for r in res.dropped]
    return rows, counts, json.loads(json.dumps(rejected)), features


def _trained_cut(records, formats, settings, res) -> int:
    """Trained tokens truncation cut away, from an untruncated run: the trained tokens of the records kept
    or dropped with nothing left to train, minus those kept."""
    full = process_shard(records, formats, replace(settings, max_length=2**62))
    keep = set(res.kept_at) | {(r.source, r.line) for r in res.dropped if r.reason.startswith(NO_TRAINED[:20])}
    trained = full.encoded.labels != -100
    offsets = full.encoded.offsets
    before = sum(int(trained[offsets[i]:offsets[i + 1]].sum()) for i, at in enumerate(full.kept_at) if at in keep)
    return before - int((res.encoded.labels != -100).sum())


def _rows(cols: dict[str, list]) -> list[dict]:
    return [dict(zip(cols, values)) for values in zip(*cols.values())]


def _plain_rows(part, cfg: PrepareConfig, pad_id: int) -> list[dict]:
    pairs = part.token_type_ids is not None
    if cfg.padding != "none":
        width = cfg.max_length if cfg.padding == "max-length" else int(part.lengths.max())
        cols = {k: v.tolist() for k, v in pad_rows(part, width, pad_id, cfg.padding_side).items()}
    else:
        cols = {"input_ids": [part.ids[a:b].tolist() for a, b in zip(part.offsets[:-1], part.offsets[1:])]}
        cols["attention_mask"] = [[1] * len(x) for x in cols["input_ids"]]
        cols["labels"] = [part.labels[a:b].tolist() for a, b in zip(part.offsets[:-1], part.offsets[1:])]
        if pairs:
            cols["token_type_ids"] = [part.token_type_ids[a:b].tolist()
                                      for a, b in zip(part.offsets[:-1], part.offsets[1:])]
    if pairs:
        cols["labels"] = list(part.extra["class_labels"])
    return _rows(cols)


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory, english_chats) -> Path:
    """A folder of chats in three formats, with a malformed line, a refused conversation and long rows."""
    d = tmp_path_factory.mktemp("mixed")
    rows = [{"messages": m} for m in english_chats[:30]]
    rows.insert(4, '{"messages": oops')
    rows.insert(9, {"messages": [u("a"), u("b"), a("c")]})
    rows.insert(12, {"messages": [u("word " * 120), a("The answer.")]})
    rows.insert(20, {"messages": [u("Why?"), a("because " * 90)]})
    write_jsonl(d / "a_chats.jsonl", rows)
    alpaca = [{"instruction": f"Say {i}", "input": "", "output": f"{i} " * (i % 7 + 1)} for i in range(9)]
    (d / "b_alpaca.json").write_text(json.dumps(alpaca))
    (d / "c_qa.csv").write_text("question,answer\n" + "".join(f"Q{i}?,A{i}.\n" for i in range(11)) + "bad,row,x\n")
    return d


@pytest.fixture(scope="module")
def doc_inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("docs")
    (d / "a.txt").write_text("".join(f"Line {i}: " + "lorem ipsum " * (i % 5 + 1) + "\n" for i in range(23)))
    write_jsonl(d / "b.jsonl", [{"text": f"Doc {i} " + "dolor sit amet " * (i % 9)} for i in range(17)] + ["{bad"])
    return d


@pytest.fixture(scope="module")
def pair_inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pairs")
    rows = [(f"A man number {i} is eating.", f"Someone {i} eats " + "food " * (i % 4), i % 2) for i in range(21)]
    (d / "p.csv").write_text("sentence1,sentence2,label\n" + "".join(f'"{x}","{y}",{z}\n' for x, y, z in rows))
    return d


MODES = {
    "chats-split": ("mixed", dict(test_size=0.25, max_length=64)),
    "chats-pad-longest-left": ("mixed", dict(padding="longest", padding_side="left", max_length=96)),
    "chats-pad-max-drop": ("mixed", dict(padding="max-length", max_length=80, truncation="drop", test_size=5)),
    "chats-bfd": ("mixed", dict(pack="bfd", max_length=128, test_size=0.2, seed=3)),
    "docs-wrap-keep": ("docs", dict(pack="wrap", max_length=16, remainder="keep", test_size=3)),
    "docs-wrap-pad": ("docs", dict(pack="wrap", max_length=24, remainder="pad")),
    "docs-wrap-drop": ("docs", dict(pack="wrap", max_length=20, remainder="drop", test_size=0.3)),
    "docs-plain-left": ("docs", dict(max_length=12, truncation="left")),
    "pairs": ("pairs", dict(test_size=0.3, max_length=16)),
    "pairs-padded": ("pairs", dict(padding="max-length", max_length=24)),
}


TWO_WORKERS = ("chats-split", "chats-bfd", "docs-wrap-keep")


@pytest.mark.parametrize("mode,num_proc", [(m, 1) for m in MODES] + [(m, 2) for m in TWO_WORKERS])
def test_every_mode_matches_in_memory_reference(mode, num_proc, tmp_path, monkeypatch, mixed_inputs, doc_inputs,
                                                pair_inputs, bert):
    monkeypatch.setattr(prep, "SHARD_SIZE", 4)  # many shards, several per file
    kind, options = MODES[mode]
    folder = {"mixed": mixed_inputs, "docs": doc_inputs, "pairs": pair_inputs}[kind]
    cfg = dict(options, progress=False, num_proc=num_proc, cache=False)
    if kind == "pairs":
        cfg["tokenizer"] = bert
    rows, counts, rejected, features = reference(PrepareConfig(**cfg), [str(folder)])
    out = tmp_path / "out"
    prepare([str(folder)], out=out, **cfg)
    dd = datasets.load_from_disk(str(out))
    assert list(dd) == list(rows)
    for name, expected in rows.items():
        assert dd[name].to_list() == expected, name
        assert dd[name].features == features[name], name
    report = json.loads((out / "report.json").read_text())
    for key, value in counts.items():
        assert report[key] == value, key
    got = [json.loads(line) for line in (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert got == rejected
    assert report["records"]["read"] == sum(report["records"][k] for k in ("kept", "rejected", "dropped"))
    if kind == "mixed":
        assert report["records"]["rejected"] >= 3 and report["records"]["kept"] > 40
    assert np.all([len(r) for r in rows["train"]])


def test_cli_prepare_writes_with_pyarrow_only(tmp_path):
    """`llmprep prepare` never imports `datasets` (~1.4 s of start-up), nor datasketch/scipy (~0.35 s: the
    doctor's duplicate checks use llmprep.mix's MinHash); its output still loads."""
    import subprocess
    import sys

    src = write_jsonl(tmp_path / "c.jsonl", [{"messages": [u(f"Hi {i}"), a(f"Hello {i}!")]} for i in range(5)])
    args = ["prepare", str(src), "--out", str(tmp_path / "o"), "--quiet", "--no-cache", "--test-size", "1"]
    code = (f"import sys; from llmprep.cli import main; main({args!r}, standalone_mode=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('datasets', 'datasketch', 'scipy')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(Path(prep.__file__).parents[1])})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"
    dd = datasets.load_from_disk(str(tmp_path / "o"))
    assert (len(dd["train"]), len(dd["test"])) == (4, 1)

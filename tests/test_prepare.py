"""prepare(): counts add up, rejects/drops are written with their reasons, truncation, splits, padding,
sentence pairs, byte-identical reruns, atomic output, and multi-process == single-process."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from helpers import a, u, write_jsonl

import llmprep.prepare as prep
from llmprep.constants import IGNORE_INDEX
from llmprep.errors import ConfigError
from llmprep.prepare import PrepareConfig, prepare, run
from llmprep.truncate import NO_TRAINED, TOO_LONG


def opts(**kw):
    kw.setdefault("progress", False)
    kw.setdefault("num_proc", 1)
    if "cache" in PrepareConfig.__dataclass_fields__:  # test the processing itself, not a shard cache
        kw.setdefault("cache", False)
    return kw


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, english_chats):
    """24 real conversations (English chatterbot corpus) as a messages JSONL file."""
    p = tmp_path_factory.mktemp("corpus") / "chats.jsonl"
    return write_jsonl(p, [{"messages": m} for m in english_chats[::12][:24]])


def files_under(d: Path) -> dict[str, bytes]:
    """Every output file's bytes, except run.json (timings and cache hits: the one file allowed to differ)."""
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file() and f.name != "run.json"}


def test_report_counts_and_rejected_file(tmp_path, smollm2):
    long_prompt = "word " * 300
    rows = [{"messages": [u("Hi"), a("Hello!")]},
            '{"messages": oops',                                              # rejected: malformed
            {"messages": [u("a"), u("b"), a("c")]},                            # rejected: order
            {"messages": [u(long_prompt), a("The answer.")]},                  # dropped: answer cut away
            {"messages": [u("Q2"), a("A2")]},
            {"messages": [u("Q3"), a("A3")]},
            {"messages": [u("Q4"), a("A4")]}]
    p = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    dd = prepare(str(p), out=out, **opts(max_length=64, test_size=1))
    report = json.loads((out / "report.json").read_text())
    rec = report["records"]
    assert rec == {"read": 7, "kept": 4, "rejected": 2, "dropped": 1}
    assert rec["read"] == rec["kept"] + rec["rejected"] + rec["dropped"]
    assert rec["kept"] == sum(report["kept"].values()) == sum(report["rows"].values()) == 4
    assert report["kept"] == {"train": 3, "test": 1} and {k: len(v) for k, v in dd.items()} == report["kept"]
    assert report["dropped_reasons"] == {NO_TRAINED.format(side="right", max_length=64): 1}
    assert sum(report["rejected_reasons"].values()) == 2
    assert report["inputs"][0]["path"] == str(p) and len(report["inputs"][0]["sha256"]) == 64
    lines = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(x["source"], x["line"]) for x in lines] == [(str(p), 2), (str(p), 3), (str(p), 4)]
    for x in lines:
        assert {"source", "line", "field", "reason", "record"} <= set(x)
    assert lines[0]["record"] == '{"messages": oops' and lines[0]["reason"].startswith("malformed JSON")
    assert lines[1]["field"] == "messages[1].role" and lines[1]["record"] == rows[2]
    assert lines[2]["dropped"] is True and lines[2]["reason"] == NO_TRAINED.format(side="right", max_length=64)
    loaded = datasets.load_from_disk(str(out))
    assert set(loaded) == {"train", "test"}
    assert sorted(list(loaded["train"]["input_ids"]) + list(loaded["test"]["input_ids"])) == sorted(
        smollm2.apply_chat_template(r["messages"], tokenize=True)["input_ids"] for r in [rows[0]] + rows[4:])


def test_truncation_right_left_drop(tmp_path, smollm2):
    long_prompt = "word " * 100
    long_answer = "answer " * 100
    convs = [[u(long_prompt), a("Short answer.")], [u("Short?"), a(long_answer)], [u("Hi"), a("Hello!")]]
    p = write_jsonl(tmp_path / "in.jsonl", [{"messages": m} for m in convs])
    refs = [smollm2.apply_chat_template(m, tokenize=True)["input_ids"] for m in convs]
    n = 48
    assert len(refs[0]) > n and len(refs[1]) > n and len(refs[2]) <= n

    right = run(PrepareConfig(**opts(max_length=n, truncation="right")), [str(p)])
    rows = right.splits["train"]
    # row 0's answer sits past the cut: dropped with its reason; row 1 keeps its first n tokens
    assert [(d.line, d.reason) for d in right.dropped] == [(1, NO_TRAINED.format(side="right", max_length=n))]
    assert rows["input_ids"] == [refs[1][:n], refs[2]]
    assert right.report["truncated"] == 1
    assert right.report["records"] == {"read": 3, "kept": 2, "rejected": 0, "dropped": 1}

    left = run(PrepareConfig(**opts(max_length=n, truncation="left")), [str(p)])
    rows = left.splits["train"]
    assert rows["input_ids"] == [refs[0][-n:], refs[1][-n:], refs[2]]
    assert not left.dropped and left.report["truncated"] == 2
    trained = [t for t, lab in zip(rows[0]["input_ids"], rows[0]["labels"]) if lab != IGNORE_INDEX]
    assert smollm2.decode(trained) == "Short answer.<|im_end|>"

    drop = run(PrepareConfig(**opts(max_length=n, truncation="drop")), [str(p)])
    assert drop.splits["train"]["input_ids"] == [refs[2]]
    assert [(d.line, d.reason) for d in drop.dropped] == [
        (1, TOO_LONG.format(max_length=n, length=len(refs[0]))),
        (2, TOO_LONG.format(max_length=n, length=len(refs[1])))]
    assert drop.report["truncated"] == 0
    assert drop.report["records"]["dropped"] == 2


def test_test_size_fraction_and_count(corpus_file):
    frac = run(PrepareConfig(**opts(test_size=0.25)), [str(corpus_file)])
    assert frac.report["kept"] == {"train": 18, "test": 6}
    count = run(PrepareConfig(**opts(test_size=5)), [str(corpus_file)])
    assert count.report["kept"] == {"train": 19, "test": 5}
    everything = list(run(PrepareConfig(**opts()), [str(corpus_file)]).splits["train"]["input_ids"])
    for res in (frac, count):
        tr, te = list(res.splits["train"]["input_ids"]), list(res.splits["test"]["input_ids"])
        assert sorted(tr + te) == sorted(everything)
        assert len(tr) + len(te) == 24
    with pytest.raises(ConfigError, match="test-size"):
        run(PrepareConfig(**opts(test_size=24)), [str(corpus_file)])
    with pytest.raises(ConfigError, match="test-size"):
        run(PrepareConfig(**opts(test_size=2.5)), [str(corpus_file)])


def test_same_inputs_same_bytes_and_seed_changes_split(tmp_path, corpus_file):
    o1, o2, o3 = tmp_path / "o1", tmp_path / "o2", tmp_path / "o3"
    prepare(str(corpus_file), out=o1, **opts(test_size=0.25, seed=1))
    prepare(str(corpus_file), out=o2, **opts(test_size=0.25, seed=1))
    f1, f2 = files_under(o1), files_under(o2)
    assert any(k.endswith(".arrow") for k in f1) and "report.json" in f1 and "rejected.jsonl" in f1
    assert f1.keys() == f2.keys()
    for name in f1:
        assert f1[name] == f2[name], name
    dd3 = prepare(str(corpus_file), out=o3, **opts(test_size=0.25, seed=2))
    dd1 = datasets.load_from_disk(str(o1))
    assert list(dd1["test"]["input_ids"]) != list(dd3["test"]["input_ids"])
    assert sorted(list(dd1["test"]["input_ids"]) + list(dd1["train"]["input_ids"])) == \
        sorted(list(dd3["test"]["input_ids"]) + list(dd3["train"]["input_ids"]))


@pytest.mark.parametrize("padding,side", [("longest", "right"), ("longest", "left"),
                                          ("max-length", "right"), ("max-length", "left")])
def test_fixed_padding(tmp_path, smollm2, padding, side):
    convs = [[u("Hi"), a("Hello!")], [u("Tell me a longer story please"), a("Once upon a time, there was a cat.")]]
    p = write_jsonl(tmp_path / "in.jsonl", [{"messages": m} for m in convs])
    refs = [smollm2.apply_chat_template(m, tokenize=True)["input_ids"] for m in convs]
    plain = run(PrepareConfig(**opts()), [str(p)]).splits["train"]
    res = run(PrepareConfig(**opts(padding=padding, padding_side=side, max_length=64)), [str(p)])
    rows = res.splits["train"]
    width = 64 if padding == "max-length" else max(map(len, refs))
    pad = smollm2.pad_token_id
    for row, ref, labels in zip(rows, refs, plain["labels"]):
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["attention_mask"]) == width
        k = width - len(ref)
        if side == "right":
            assert row["input_ids"] == ref + [pad] * k
            assert row["labels"] == labels + [IGNORE_INDEX] * k
            assert row["attention_mask"] == [1] * len(ref) + [0] * k
        else:
            assert row["input_ids"] == [pad] * k + ref
            assert row["labels"] == [IGNORE_INDEX] * k + labels
            assert row["attention_mask"] == [0] * k + [1] * len(ref)
        assert labels[-2] == smollm2.eos_token_id  # EOS of the reply stays trained although pad == eos


def test_sentence_pairs_with_bert(tmp_path, bert):
    rows = [{"sentence1": "A man is eating food.", "sentence2": "A man is eating a meal.", "label": 1},
            {"sentence1": "A woman plays the violin.", "sentence2": "A man drives a car.", "label": 0},
            {"sentence1": "你好", "sentence2": "Hello there, friend!", "label": 1}]
    p = tmp_path / "pairs.csv"
    p.write_text("sentence1,sentence2,label\n" + "".join(
        f'"{r["sentence1"]}","{r["sentence2"]}",{r["label"]}\n' for r in rows), encoding="utf-8")
    ds = prepare(str(p), **opts(tokenizer=bert))["train"]
    assert set(ds.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    for got, r in zip(ds, rows, strict=True):
        ref = bert(r["sentence1"], r["sentence2"])
        assert got["input_ids"] == ref["input_ids"]
        assert got["token_type_ids"] == ref["token_type_ids"]
        assert got["attention_mask"] == ref["attention_mask"]
        assert got["labels"] == r["label"]
    assert bert.convert_ids_to_tokens(ds[0]["input_ids"])[0] == "[CLS]"
    assert set(ds[0]["token_type_ids"]) == {0, 1}


def test_atomic_write_on_interruption(tmp_path, corpus_file, monkeypatch):
    import llmprep.output as output

    out = tmp_path / "out"
    real_close = output.SplitWriter.close

    def broken_close(self, schema=None):
        rows = real_close(self, schema)  # a split is complete on disk...
        if self.dir.name == "test":
            raise KeyboardInterrupt("interrupted midway")  # ...then the run dies
        return rows

    monkeypatch.setattr(output.SplitWriter, "close", broken_close)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(corpus_file), out=out, **opts(test_size=0.25))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp dir left behind

    # an existing, complete output survives a failed rerun untouched
    monkeypatch.setattr(output.SplitWriter, "close", real_close)
    prepare(str(corpus_file), out=out, **opts(test_size=0.25))
    before = files_under(out)
    monkeypatch.setattr(output.SplitWriter, "close", broken_close)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(corpus_file), out=out, **opts(test_size=0.5))
    assert files_under(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert len(datasets.load_from_disk(str(out))["test"]) == 6


def test_num_proc_two_equals_one(tmp_path, english_chats, monkeypatch):
    monkeypatch.setattr(prep, "SHARD_SIZE", 7)
    rows = [{"messages": m} for m in english_chats[:40]]
    rows.insert(9, '{"broken": ')
    rows.insert(20, {"messages": [u("x"), u("y"), a("z")]})
    p = write_jsonl(tmp_path / "in.jsonl", rows)
    one = run(PrepareConfig(**opts(num_proc=1, test_size=0.2)), [str(p)])
    two = run(PrepareConfig(**opts(num_proc=2, test_size=0.2)), [str(p)])
    assert len(rows) > 4 * 7  # more than 2 shards
    for split in ("train", "test"):
        assert one.splits[split].to_dict() == two.splits[split].to_dict()
    assert [r.to_json() for r in one.rejected] == [r.to_json() for r in two.rejected]
    assert [r.line for r in one.rejected] == [10, 21]
    assert one.report["records"] == two.report["records"] == {"read": 42, "kept": 40, "rejected": 2, "dropped": 0}


def test_the_garbage_collector_is_as_the_caller_left_it(tmp_path, english_chats):
    """prepare freezes the caller's objects and collects less often while it runs (speed); afterwards, also
    after a failed run, nothing stays frozen and the thresholds are the caller's."""
    import gc

    p = write_jsonl(tmp_path / "in.jsonl", [{"messages": m} for m in english_chats[:10]])
    before = gc.get_threshold()
    run(PrepareConfig(**opts(num_proc=1)), [str(p)])
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    with pytest.raises(ConfigError):
        run(PrepareConfig(**opts(num_proc=1, template="no-such-template")), [str(p)])
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_bad_options_reported_together(corpus_file):
    with pytest.raises(ConfigError) as info:
        run(PrepareConfig(**opts(truncation="middle", padding="all", max_length=0)), [str(corpus_file)])
    msg = str(info.value)
    assert "--truncation 'middle'" in msg and "--padding 'all'" in msg and "--max-length 0" in msg


def test_prepare_never_deep_copies_the_tokenizer(tmp_path, smollm2, monkeypatch):
    """A tokenizer object in the config is used, not copied (dataclasses.asdict deep-copied it: ~0.75 s a call)."""
    p = write_jsonl(tmp_path / "c.jsonl", [{"messages": [u("Hi"), a("Hello!")]}])
    copies = []
    monkeypatch.setattr(type(smollm2), "__deepcopy__", lambda self, memo: copies.append(self) or self, raising=False)
    res = run(PrepareConfig(**opts(tokenizer=smollm2, max_length=64)), [str(p)])
    assert copies == []
    assert res.report["options"]["max_length"] == 64 and "tokenizer" not in res.report["options"]

"""Sentence-pair classification (seed 003) on the real all-MiniLM-L6-v2 BERT with real sentence pairs:
labels and names from the data, id2label saved, dynamic padding, accuracy + F1 at each evaluation,
`llmprep predict` on raw records and on a prepared directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from train_helpers import cli, read_jsonl
from transformers import AutoConfig

from llmprep.train.classification import accuracy_f1, prediction_rows


def test_accuracy_and_macro_f1_golden():
    # pred [0, 0, 1, 0, 1] vs ref [0, 0, 1, 1, 2]: class 0: tp 2, fp 1, fn 0 -> f1 4/5;
    # class 1: tp 1, fp 1, fn 1 -> 2/4; class 2: tp 0, fp 0, fn 1 -> 0
    m = accuracy_f1([0, 0, 1, 0, 1], [0, 0, 1, 1, 2])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx((4 / 5 + 1 / 2 + 0) / 3)


def test_metrics_match_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    pred, ref = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    m = accuracy_f1(pred, ref)
    assert m["accuracy"] == pytest.approx(sklearn.accuracy_score(ref, pred))
    assert m["f1"] == pytest.approx(sklearn.f1_score(ref, pred, average="macro"))


def test_prediction_rows():
    rows = prediction_rows(np.array([[2.0, 0.0], [0.0, 1.0]]), {0: "reply", 1: "unrelated"})
    assert rows[0]["label"] == 0 and rows[0]["label_name"] == "reply"
    assert rows[0]["probabilities"]["reply"] == pytest.approx(np.exp(2) / (np.exp(2) + 1), abs=1e-6)
    assert rows[1]["label_name"] == "unrelated" and sum(rows[1]["probabilities"].values()) == pytest.approx(1)


def test_string_labels_become_class_names(pair_data):
    from datasets import load_from_disk

    data = load_from_disk(str(pair_data))
    assert data["train"].features["labels"].names == ["reply", "unrelated"]
    assert set(data["train"]["labels"]) == {0, 1} and "token_type_ids" in data["train"].column_names


@pytest.fixture(scope="module")
def cls_run(pair_data, minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "run"
    cli("train", pair_data, "--model", minilm, "--out", out, "--max-steps", "2", "--batch-size", "8",
        "--eval-steps", "1", "--logging-steps", "1", "--lr", "5e-5", "--quiet")
    return out


def test_classifier_run(cls_run):
    cfg = AutoConfig.from_pretrained(cls_run)
    assert cfg.architectures == ["BertForSequenceClassification"]
    assert cfg.id2label == {0: "reply", 1: "unrelated"} and cfg.label2id == {"reply": 0, "unrelated": 1}
    run = json.loads((cls_run / "llmprep-run.json").read_text())
    assert run["task"] == "classification" and run["collator"] == "padding"
    assert run["label_names"] == ["reply", "unrelated"]
    evals = [r for r in read_jsonl(cls_run / "metrics.jsonl") if "eval_loss" in r]
    assert [r["step"] for r in evals] == [1, 2]
    for r in evals:
        assert 0 <= r["eval_accuracy"] <= 1 and 0 <= r["eval_f1"] <= 1
    final = json.loads((cls_run / "train_metrics.json").read_text())
    assert final["eval_accuracy"] == evals[-1]["eval_accuracy"] and final["eval_f1"] == evals[-1]["eval_f1"]


def test_predict_raw_records_and_prepared_dir(cls_run, pairs_jsonl, pair_data, tmp_path):
    out = tmp_path / "predictions.jsonl"
    lines = pairs_jsonl.read_text(encoding="utf-8").splitlines(keepends=True)
    raw = tmp_path / "raw.jsonl"  # a repeated record is predicted again (prepare's dedup is off here)
    raw.write_text("".join(lines + lines[:3]), encoding="utf-8")
    res = cli("predict", "--model", cls_run, raw, "--out", out, "--quiet")
    rows = read_jsonl(out)
    records = read_jsonl(raw)
    assert len(rows) == len(records) and [r["row"] for r in rows] == list(range(len(records)))
    for row, rec in zip(rows, records):
        assert row["label_name"] == ["reply", "unrelated"][row["label"]]
        assert set(row["probabilities"]) == {"reply", "unrelated"}
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert row["probabilities"][row["label_name"]] == max(row["probabilities"].values())
        assert row["true_label_name"] == rec["label"]
    m = accuracy_f1([r["label"] for r in rows], [r["true_label"] for r in rows])
    assert f"accuracy {m['accuracy']:.4f}" in res.output
    test_out = tmp_path / "test.jsonl"
    cli("predict", "--model", cls_run, pair_data, "--out", test_out, "--quiet")
    assert len(read_jsonl(test_out)) == 16  # the prepared test split


def test_bundled_pairs_are_build_pairs_written_out():
    from pairs import build_pairs

    from llmprep.cli.prepare import sample_path

    bundled = read_jsonl(Path(sample_path()).with_name("pairs.jsonl"))
    assert bundled == build_pairs()
    assert {r["label"] for r in bundled} == {"reply", "unrelated"}

"""Checks of prepared rows (eot-untrained, zero-trained-rows, truncation-loss, double BOS on disk),
on data prepared by llmprep from the bundled sample, and on rows made the way other tools make them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from doctor_assets import prepared, sample_lines

from llmprep.checks import Data, Subject, run_checks
from llmprep.checks.prepared import Rows
from llmprep.checks.rows import TRUNCATION_LOSS, open_ends, reply_ends
from llmprep.constants import IGNORE_INDEX


def findings(tokenizer, path, check, tmpl="auto"):
    report = run_checks(Subject.build(tokenizer, template=tmpl, data=Data.from_dir(path)), model=False)
    return [f for f in report.findings if f.id == check], report


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    """300 real conversations prepared with the defaults (the twin of every row check)."""
    return prepared(tmp_path_factory.mktemp("clean"), sample_lines(300), test_size=0.1)


def test_clean_rows_trigger_no_row_check(smollm2, clean_dir):
    for check in ("eot-untrained", "zero-trained-rows", "truncation-loss", "double-bos"):
        assert findings(smollm2, clean_dir, check)[0] == [], check


def _rewrite_labels(src, dst, fn):
    """Copy a prepared dataset with labels rewritten by fn(input_ids, labels) -> labels (row by row)."""
    import shutil

    from datasets import load_from_disk

    shutil.copytree(src, dst)
    data = load_from_disk(str(src)).map(lambda r: {"labels": fn(r["input_ids"], r["labels"])})
    for name, ds in data.items():
        shutil.rmtree(dst / name)
        ds.save_to_disk(str(dst / name))
    return dst


def test_eot_untrained_when_a_collator_masked_labels_equal_to_the_pad_id(smollm2, clean_dir, tmp_path):
    """The classic bug: labels[input_ids == pad_token_id] = -100 with SmolLM2, whose pad is <|im_end|>."""
    pad = smollm2.pad_token_id
    bad = _rewrite_labels(clean_dir, tmp_path / "masked",
                          lambda ids, labels: [IGNORE_INDEX if i == pad else lab for i, lab in zip(ids, labels)])
    (f,), _ = findings(smollm2, bad, "eot-untrained")
    replies = sum(sum(1 for m in r["messages"] if m["role"] == "assistant") for r in sample_lines(300))
    assert f.severity == "error" and "'<|im_end|>'" in f.message
    n, total = [int(x.replace(",", "")) for x in f.message.split(" replies")[0].split(" of ")]
    assert n == total and total <= replies  # every reply's stop token masked (one sample reply is rejected)


def test_eot_untrained_when_truncation_cut_the_replies(smollm2, tmp_path):
    cut = prepared(tmp_path, sample_lines(200), max_length=40)
    found, _ = findings(smollm2, cut, "eot-untrained")
    (f,) = [f for f in found if f.severity == "warning"]
    report = Data.from_dir(cut).report
    # every truncated row that kept its trained tokens ends inside the last reply
    n = int(f.message.split(" rows")[0].replace(",", ""))
    assert 0 < n <= report["truncated"]
    assert "--max-length" in f.fix


def test_reply_ends_and_open_ends_golden():
    # fmt: off
    ids    = np.array([9, 5, 6, 2, 1,   9, 5, 6, 7])   # 2 = stop token; row 2 is cut after "6 7"
    labels = np.array([-100, 5, 6, 2, -100,   -100, 5, 6, 7])
    # fmt: on
    rows = Rows(ids, labels, None, np.array([0, 5, 9]))
    ok, masked = reply_ends(rows, 2)
    assert ok.tolist() == [3] and masked.tolist() == []
    assert open_ends(rows, 2).tolist() == [1]
    rows = Rows(ids, np.array([-100, 5, 6, -100, -100, -100, 5, 6, 7]), None, rows.offsets)
    assert reply_ends(rows, 2)[1].tolist() == [3]
    assert open_ends(rows, 2).tolist() == [1]  # row 0 ends on an untrained token: masked, not cut


def _open_ends_by_loop(rows, eot: int) -> list[int]:
    """The definition, row by row: the last real token is trained and its trained run holds no stop token."""
    trained, real, out = rows.trained, rows.real, []
    for r in range(len(rows)):
        a, b = rows.offsets[r], rows.offsets[r + 1]
        if not real[a:b].any():
            continue
        last = a + np.flatnonzero(real[a:b])[-1]
        if not trained[last]:
            continue
        start = last
        while start > a and trained[start - 1]:
            start -= 1
        if not (rows.ids[start:last + 1] == eot).any():
            out.append(r)
    return out


@pytest.mark.parametrize("padding", [None, "right", "left"])
def test_open_ends_matches_the_row_by_row_definition(padding):
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 12, 400)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, 4, offsets[-1])  # 2 is the stop token
    labels = np.where(rng.random(offsets[-1]) < 0.6, ids, IGNORE_INDEX)
    mask = None
    if padding:
        pads = [min(int(k), int(n)) for k, n in zip(rng.integers(0, 4, len(lengths)), lengths)]
        mask = np.ones(offsets[-1], np.int64)
        for r, k in enumerate(pads):
            a, b = offsets[r], offsets[r + 1]
            mask[(b - k):b] = 0 if padding == "right" else 1
            mask[a:(a + k)] = 0 if padding == "left" else mask[a:(a + k)]
    rows = Rows(ids, labels, mask, offsets)
    assert open_ends(rows, 2).tolist() == _open_ends_by_loop(rows, 2)
    assert len(_open_ends_by_loop(rows, 2)) > 10  # the data exercises the check


def test_zero_trained_rows_assistant_mask_of_a_template_without_generation_tags(smollm2, tmp_path):
    """transformers' return_assistant_tokens_mask on a template without {% generation %} gives all-zero
    masks: labels made from them train nothing."""
    from datasets import Dataset, DatasetDict

    ids, labels = [], []
    for r in sample_lines(30):
        out = smollm2.apply_chat_template(r["messages"], tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True)
        ids.append(out["input_ids"])
        labels.append([t if m else IGNORE_INDEX for t, m in zip(out["input_ids"], out["assistant_masks"])])
    DatasetDict({"train": Dataset.from_dict({"input_ids": ids, "labels": labels})}).save_to_disk(str(tmp_path / "d"))
    (f,), _ = findings(smollm2, tmp_path / "d", "zero-trained-rows")
    assert f.severity == "error" and f.message.startswith("30 of 30 rows")


def test_zero_trained_rows_some_rows_is_a_warning(smollm2, clean_dir, tmp_path):
    first = {"done": False}

    def wipe_first(ids, labels):
        if first["done"]:
            return labels
        first["done"] = True
        return [IGNORE_INDEX] * len(labels)

    (f,), _ = findings(smollm2, _rewrite_labels(clean_dir, tmp_path / "one", wipe_first), "zero-trained-rows")
    assert f.severity == "warning" and f.message.startswith("1 of ") and "first row 0" in f.where


def test_truncation_loss_share_matches_an_untruncated_prepare(smollm2, tmp_path):
    rows = sample_lines(300)
    short = prepared(tmp_path, rows, "short", max_length=40)
    full = prepared(tmp_path, rows, "full", max_length=100_000)
    (f,), _ = findings(smollm2, short, "truncation-loss")
    total = Data.from_dir(full).report["tokens"]["trained"]
    kept = Data.from_dir(short).report["tokens"]["trained"]
    assert f.severity == "warning"
    assert f"cut away {total - kept:,} of {total:,} trained tokens ({(total - kept) / total:.1%})" in f.message
    assert (total - kept) / total > TRUNCATION_LOSS
    assert Data.from_dir(short).report["tokens"]["trained_cut"] == total - kept  # what the check read


def test_truncation_loss_of_a_report_without_the_cut_count_encodes_again(smollm2, tmp_path):
    """report.json from before prepare counted the cut tokens: the check encodes the chats again, same answer."""
    short = prepared(tmp_path, sample_lines(300), "short", max_length=40)
    (new,), _ = findings(smollm2, short, "truncation-loss")
    path = short / "report.json"
    report = json.loads(path.read_text())
    del report["tokens"]["trained_cut"]
    path.write_text(json.dumps(report))
    (old,), _ = findings(smollm2, short, "truncation-loss")
    assert old.message == new.message


def test_truncation_loss_twin_below_the_threshold(smollm2, tmp_path):
    """The sample's longest row (693 tokens, sample.jsonl:2100) cut by a little, among 300 others: under 1% lost."""
    rows = sample_lines(300) + [sample_lines()[2099]]
    d = prepared(tmp_path, rows, max_length=680)
    assert Data.from_dir(d).report["truncated"] == 1
    assert findings(smollm2, d, "truncation-loss")[0] == []


def test_pad_is_eos_warns_when_padding_on_disk_carries_the_stop_token_id(smollm2, tmp_path):
    (f,), _ = findings(smollm2, prepared(tmp_path, sample_lines(50), padding="longest"), "pad-is-eos")
    assert f.severity == "warning" and f.where == "prepared rows padded on disk"


def test_pad_is_eos_twin_unpadded_rows_stay_info(smollm2, clean_dir):
    (f,), _ = findings(smollm2, clean_dir, "pad-is-eos")
    assert f.severity == "info"


def test_reply_ends_skip_each_rows_first_token_also_after_empty_rows():
    """A stop token opening a row is no reply's end, whatever rows (empty ones too) come before it: the same
    positions as the per-token rule (row of every position), on random rows."""
    rng = np.random.default_rng(7)
    for _ in range(50):
        lengths = rng.integers(0, 6, 12)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        ids = rng.integers(0, 4, offsets[-1])
        labels = np.where(rng.random(offsets[-1]) < 0.5, ids, -100)
        rows = Rows(ids, labels, None, offsets)
        row_of = np.repeat(np.arange(len(lengths)), lengths)
        trained = labels != -100
        pos = np.flatnonzero(ids == 2)
        pos = pos[pos - offsets[row_of[pos]] > 0]
        after = trained[pos - 1]
        ok, masked = reply_ends(rows, 2)
        assert ok.tolist() == pos[after & trained[pos]].tolist()
        assert masked.tolist() == pos[after & ~trained[pos]].tolist()


def test_rows_with_a_mask_of_ones_read_as_unpadded():
    """prepare writes an attention mask of ones when it pads nothing: such rows count every token as real
    without summing the mask, and give the same lengths and trained tokens as rows without a mask."""
    ids = np.array([9, 5, 2, 0, 9, 5])
    labels = np.array([-100, 5, 2, -100, -100, 5])
    offsets = np.array([0, 3, 6])
    plain, ones = Rows(ids, labels, None, offsets), Rows(ids, labels, np.ones(6, np.int8), offsets)
    padded = Rows(ids, labels, np.array([1, 1, 1, 0, 1, 1], np.int8), offsets)
    assert plain.unpadded and ones.unpadded and not padded.unpadded
    assert ones.real_lengths.tolist() == plain.real_lengths.tolist() == [3, 3]
    assert ones.trained.tolist() == plain.trained.tolist()
    assert padded.real_lengths.tolist() == [3, 2]
    assert padded.trained.tolist() == [False, True, True, False, False, True]

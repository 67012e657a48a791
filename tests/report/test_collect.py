"""report.html's statistics of a split (llmprep.report.collect), read chunk by chunk as value counts:
the same numbers as per-row arrays of the split give."""

from __future__ import annotations

import numpy as np

from llmprep.checks.prepared import Rows
from llmprep.encode import offsets_of
from llmprep.report.collect import _Tally, split_stats


def _rows(lengths, trained) -> Rows:
    ids = np.arange(sum(lengths), dtype=np.int32)
    labels = np.full(len(ids), -100, np.int32)
    offsets = offsets_of(lengths)
    for a, n in zip(offsets[:-1], trained):
        labels[a + 1:a + 1 + n] = 7  # n trained tokens after the first
    return Rows(ids, labels, None, offsets)


def test_split_stats_counts_equal_the_per_row_arrays():
    rng = np.random.default_rng(4)
    chunks, all_len, all_tr, start = [], [], [], 0
    for _ in range(40):  # more chunks than _Tally.MERGE: merged tallies are exact too
        lengths = rng.integers(2, 60, size=50)
        trained = rng.integers(0, lengths - 1)
        chunks.append((start, _rows(lengths, trained)))
        start += len(lengths)
        all_len.append(lengths)
        all_tr.append(trained)
    lengths, trained = np.concatenate(all_len), np.concatenate(all_tr)
    stats = split_stats(chunks, tokenizer=None)
    assert stats["rows"] == len(lengths) and stats["tokens"] == lengths.sum() and stats["trained"] == trained.sum()
    v, c = np.unique(lengths, return_counts=True)
    assert stats["lengths"].values.tolist() == v.tolist() and stats["lengths"].counts.tolist() == c.tolist()
    shares = trained / np.maximum(lengths, 1)
    expect = np.sort(shares)
    got = np.repeat(stats["shares"].values, stats["shares"].counts)
    assert np.array_equal(np.sort(got), expect)  # the same float64 values, as often
    assert len(stats["samples"]) == 3


def test_tally_merges_parts():
    t = _Tally()
    t.add(np.array([3, 3]))
    t.add(np.array([5, 3]))
    assert (t.result().values.tolist(), t.result().counts.tolist()) == ([3, 5], [3, 1])
    assert len(_Tally().result()) == 0 and _Tally().result().values.tolist() == []

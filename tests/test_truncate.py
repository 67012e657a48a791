"""truncate.fit: rows cut to --max-length, rows with nothing left to train dropped, and the trained
tokens cut away counted (report.json's tokens.trained_cut, read by the doctor's truncation-loss check)."""

from __future__ import annotations

import numpy as np

from llmprep.constants import IGNORE_INDEX as X
from llmprep.encode import Encoded
from llmprep.truncate import NO_TRAINED, fit


def rows(*labels: list[int]) -> Encoded:
    """Rows whose ids are their labels with the prompt positions numbered 0.. (ids do not matter here)."""
    flat = [lab if lab != X else 0 for r in labels for lab in r]
    lengths = [len(r) for r in labels]
    return Encoded(np.asarray(flat, np.int64), np.asarray([lab for r in labels for lab in r], np.int64),
                   np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def test_cut_counts_the_trained_tokens_each_kept_row_lost():
    enc = rows([X, X, 3, 4, 5], [X, 7], [X, X, X, X, 9, 10])
    right = fit(enc, 3, "right")
    # row 0 keeps [X, X, 3] (cut 4, 5); row 1 fits; row 2 keeps [X, X, X]: nothing trained -> dropped
    assert right.kept.tolist() == [0, 1]
    assert right.cut.tolist() == [2, 0]
    assert right.lost == [2] and right.dropped == [(2, NO_TRAINED.format(side="right", max_length=3))]
    left = fit(enc, 3, "left")
    assert left.kept.tolist() == [0, 1, 2]
    assert left.cut.tolist() == [0, 0, 0] and left.lost == []  # the left cut only removed prompt tokens


def test_cut_sums_to_the_untruncated_trained_tokens():
    rng = np.random.default_rng(0)
    labels = [[int(v) if rng.random() < 0.5 else X for v in rng.integers(1, 100, rng.integers(1, 40))]
              for _ in range(200)]
    enc = rows(*labels)
    full = int((enc.labels != X).sum())
    for side in ("right", "left"):
        f = fit(enc, 16, side)
        assert int((f.encoded.labels != X).sum()) + int(f.cut.sum()) + sum(f.lost) == full


def test_drop_cuts_nothing():
    f = fit(rows([X, 1, 2, 3], [X, 5]), 2, "drop")
    assert f.kept.tolist() == [1] and f.cut.tolist() == [0] and f.lost == [0]  # too long, not cut

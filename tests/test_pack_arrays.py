"""prepare's array-native BFD gives exactly the rows and stats of pack_examples(strategy="bfd")."""

import numpy as np
import pytest

from llmprep.errors import ConfigError
from llmprep.pack import pack_bfd_arrays, pack_examples


def _rows(flat, offsets):
    return [flat[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_rows_and_stats_as_list_packer(seed):
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.lognormal(3, 1, 400).astype(int), 128)  # long-tailed, some empty rows
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = rng.integers(0, 1000, offsets[-1])
    labels = np.where(rng.random(offsets[-1]) < 0.4, -100, ids)
    as_lists = {"input_ids": _rows(ids, offsets), "labels": _rows(labels, offsets)}
    expected, expected_stats = pack_examples(as_lists, strategy="bfd", max_length=128, pad_token_id=0)
    columns, stats = pack_bfd_arrays(ids, labels, offsets, 128)
    assert stats == expected_stats
    for name, rows in expected.items():
        assert _rows(*columns[name]) == rows, name


def test_hand_golden():
    # fmt: off
    ids     = np.array([5, 6, 7, 8, 9, 10])
    labels  = np.array([5, 6, 7, 8, 9, 10])
    offsets = np.array([0, 2, 3, 6])          # rows [5, 6], [7], [8, 9, 10]
    # fmt: on
    columns, stats = pack_bfd_arrays(ids, labels, offsets, 4)
    # Longest first: [8, 9, 10] opens row 0 (1 free), [5, 6] opens row 1, [7] best-fits row 0;
    # members of a row keep input order.
    assert _rows(*columns["input_ids"]) == [[7, 8, 9, 10], [5, 6]]
    assert _rows(*columns["labels"]) == [[-100, -100, 9, 10], [-100, 6]]
    assert _rows(*columns["position_ids"]) == [[0, 0, 1, 2], [0, 1]]
    assert _rows(*columns["seq_lengths"]) == [[1, 3], [2]]
    assert stats["fill"] == 6 / 8


def test_too_long_example_is_an_error():
    with pytest.raises(ConfigError, match="--max-length 2"):
        pack_bfd_arrays(np.arange(3), np.arange(3), np.array([0, 3]), 2)

"""RowIndex: the main process's per-row metadata (llmprep.assemble), built from the shards' metas."""

from __future__ import annotations

import numpy as np

from llmprep.assemble import RowIndex
from llmprep.encode import int32_if_fits
from llmprep.executor.task import ShardMeta


def _meta(n: int, cut: dict | None = None, first_line: int = 1) -> ShardMeta:
    rows = {"length": np.full(n, 10, np.int32), "trained": np.full(n, 4, np.int32),
            "record": np.arange(n, dtype=np.int32), "line": int32_if_fits(np.arange(first_line, first_line + n))}
    return ShardMeta(task=0, shard=0, spill="", records=n, rows=rows, rejected=[], dropped=[],
                     cut=cut or {"rows": [], "tokens": []})


def test_shard_of_skips_empty_shards_and_trained_cut_counts_repeats():
    metas = [_meta(2, {"rows": [1], "tokens": [5]}), _meta(0), _meta(3, {"rows": [0, 2], "tokens": [7, 1]})]
    index = RowIndex.build(metas)
    assert len(index) == 5 and "shard" not in index.columns
    assert index.shard_of(np.arange(5)).tolist() == [0, 0, 2, 2, 2]
    assert index.cut[0].tolist() == [1, 2, 4] and index.cut[1].tolist() == [5, 7, 1]
    # a reference: the dense per-row column the index no longer holds
    dense = np.zeros(5, np.int64)
    dense[[1, 2, 4]] = [5, 7, 1]
    for rows in ([0, 1, 2, 3, 4], [3], [1, 1, 4], [], [0, 3]):
        rows = np.asarray(rows, np.int64)
        assert index.trained_cut(rows) == int(dense[rows].sum())


def test_line_column_is_int32_and_widens_only_past_int32():
    assert int32_if_fits([1, 2]).dtype == np.int32 and int32_if_fits([]).dtype == np.int32
    assert int32_if_fits([2**31 - 1]).dtype == np.int32 and int32_if_fits([2**31]).dtype == np.int64
    index = RowIndex.build([_meta(2), _meta(2, first_line=2**31)])
    assert index.columns["line"].dtype == np.int64  # one shard past int32: the column widens, values exact
    assert index.columns["line"].tolist() == [1, 2, 2**31, 2**31 + 1]
    assert RowIndex.build([]).trained_cut(np.arange(0)) == 0

"""numpy <-> Arrow without pandas: the arrays equal pyarrow's own conversions (types, values, slices,
chunks, large lists), nulls are refused, and none of it imports pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from llmprep.arrowcols import from_numpy, list_flat, list_offsets, to_numpy

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]


@pytest.mark.parametrize("arrow_type", INT_TYPES, ids=str)
def test_from_numpy_equals_pa_array(arrow_type):
    values = np.array([0, 1, 7, 100, 3])
    ours, theirs = from_numpy(values, arrow_type), pa.array(values, type=arrow_type)
    assert ours.type == theirs.type and ours.equals(theirs)
    np.testing.assert_array_equal(to_numpy(ours), theirs.to_numpy())


def test_from_numpy_shares_memory_when_the_dtype_matches():
    values = np.arange(5, dtype=np.int64)
    assert np.shares_memory(to_numpy(from_numpy(values)), values)


def test_to_numpy_of_slices_and_chunks():
    arr = pa.array(np.arange(10, dtype=np.int32))
    np.testing.assert_array_equal(to_numpy(arr.slice(3, 4)), [3, 4, 5, 6])
    chunked = pa.chunked_array([arr.slice(0, 2), arr.slice(8)])
    np.testing.assert_array_equal(to_numpy(chunked), [0, 1, 8, 9])
    assert len(to_numpy(pa.chunked_array([], type=pa.int64()))) == 0


def test_nulls_and_non_integers_are_refused():
    with pytest.raises(ValueError, match="1 null"):
        to_numpy(pa.array([1, None], type=pa.int64()))
    with pytest.raises(TypeError, match="not an Arrow integer type: double"):
        from_numpy([1.5], pa.float64())


@pytest.mark.parametrize("large", [False, True])
def test_list_flat_matches_pyarrow_on_sliced_and_chunked_lists(large):
    rows = [[1, 2], [3], [], [4, 5, 6], [7]]
    typ = pa.large_list(pa.int32()) if large else pa.list_(pa.int32())
    arr = pa.array(rows, type=typ)
    for col in (arr, arr.slice(1, 3), pa.chunked_array([arr.slice(0, 2), arr.slice(3)])):
        values, offsets = list_flat(col)
        expected = col.to_pylist()
        assert [values[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])] == expected
        assert offsets[0] == 0 and offsets[-1] == len(values)
    np.testing.assert_array_equal(list_offsets(arr.slice(1, 3)), [2, 3, 3, 6])  # offsets of the parent buffer
    values, offsets = list_flat(pa.chunked_array([], type=typ))
    assert len(values) == 0 and offsets.tolist() == [0]


def test_list_flat_of_a_non_integer_list_uses_pyarrow():
    values, offsets = list_flat(pa.array([[0.5], [1.5, 2.5]]))
    assert values.tolist() == [0.5, 1.5, 2.5] and offsets.tolist() == [0, 1, 3]


def test_no_pandas_import():
    code = ("import sys, numpy as np, pyarrow as pa\n"
            "from llmprep.arrowcols import from_numpy, list_flat, to_numpy\n"
            "col = pa.ListArray.from_arrays(from_numpy([0, 2, 3], pa.int32()), from_numpy([5, 6, 7], pa.int32()))\n"
            "list_flat(pa.table({'ids': col})['ids']); to_numpy(from_numpy(np.arange(3)))\n"
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr

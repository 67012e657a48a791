"""numpy <-> Arrow for the integer columns of the pipeline: zero-copy, and without importing pandas.

Why: pyarrow imports pandas (about 0.25 s) the first time `pa.array(...)` or `Array.to_numpy()` runs,
to ask whether its input is a pandas object. Every `llmprep prepare` process and worker paid that for
columns that are plain numpy integers. Building the arrays from their buffers gives the same arrays
(tests/test_arrowcols.py compares them with pyarrow's own conversions) with no pandas import.

    from_numpy(np.array([1, 2]), pa.int32())   -> <Int32Array> [1, 2]
    to_numpy(pa.array([1, 2], pa.int64()))     -> array([1, 2])   (a view over the Arrow buffer)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
          pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64}


def numpy_dtype(arrow_type: pa.DataType) -> np.dtype:
    """The numpy dtype of an Arrow integer type. Example: pa.int32() -> dtype('int32')"""
    try:
        return np.dtype(_NUMPY[arrow_type])
    except KeyError:
        raise TypeError(f"not an Arrow integer type: {arrow_type}") from None


def from_numpy(values, arrow_type: pa.DataType = pa.int64()) -> pa.Array:
    """Integers -> an Arrow array of `arrow_type` (no nulls), sharing memory when the dtype already matches.

    Values must fit the type (token ids, labels, offsets and row numbers do): unlike pa.array, no overflow
    check is made. Example: from_numpy([3, 1], pa.int32()) -> <Int32Array> [3, 1]
    """
    arr = np.ascontiguousarray(values, dtype=numpy_dtype(arrow_type))
    return pa.Array.from_buffers(arrow_type, len(arr), [None, pa.py_buffer(arr)])


def to_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow integer array without nulls -> a read-only numpy view (a copy only to join chunks).

    Example: to_numpy(pa.chunked_array([[1], [2, 3]])) -> array([1, 2, 3])
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else pa.concat_arrays(arr.chunks) if arr.num_chunks else \
            pa.Array.from_buffers(arr.type, 0, [None, None])
    if arr.null_count:
        raise ValueError(f"to_numpy: {arr.null_count} null(s) in an integer column that should have none")
    dtype = numpy_dtype(arr.type)
    data = arr.buffers()[1]
    if data is None:
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def list_offsets(arr: pa.ListArray | pa.LargeListArray) -> np.ndarray:
    """A list array's row offsets (len(arr) + 1 of them), as numpy. Example: [[1, 2], [3]] -> [0, 2, 3]"""
    dtype = np.dtype(np.int64 if pa.types.is_large_list(arr.type) else np.int32)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr) + 1, offset=arr.offset * dtype.itemsize)


def list_flat(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A list column (chunked or not) -> (flat values, row offsets starting at 0).

    Example: [[1, 2], [3]] -> (array([1, 2, 3]), array([0, 2, 3]))
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if len(column) == 0:
        return np.zeros(0, numpy_dtype(column.type.value_type) if column.type.value_type in _NUMPY else float), \
            np.zeros(1, np.int64)
    offsets = list_offsets(column).astype(np.int64)
    values = column.values
    if values.type in _NUMPY and not values.null_count:
        flat = to_numpy(values)
    else:  # not an integer column llmprep writes: pyarrow's own conversion
        flat = values.to_numpy(zero_copy_only=False)
    return flat[offsets[0]:offsets[-1]], offsets - offsets[0]

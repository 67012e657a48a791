"""Rows -> Arrow record batches -> split directories that `datasets.load_from_disk` reads, with pyarrow only.

Layout written (the one `DatasetDict.save_to_disk` writes; importing `datasets` is not needed for it):

    DIR/dataset_dict.json                 {"splits": ["train", "test"]}
    DIR/train/data-00000-of-00002.arrow   Arrow IPC stream files; schema metadata "huggingface" = features
    DIR/train/dataset_info.json           {"features": {...}, ...}
    DIR/train/state.json                  data files + a fingerprint derived from inputs and options

Columns go straight from flat numpy arrays + offsets into Arrow list arrays: no per-row Python lists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from llmprep.arrowcols import from_numpy
from llmprep.constants import IGNORE_INDEX
from llmprep.encode import Encoded

MAX_FILE_BYTES = 500 * 10**6  # save_to_disk's default max_shard_size


def list_column(values: np.ndarray, offsets: np.ndarray, dtype=pa.int32()) -> pa.Array:
    """Flat values + row offsets -> an Arrow list column. Example: [1,2,3], [0,2,3] -> [[1,2],[3]]"""
    vals = from_numpy(values, dtype)
    if offsets[-1] < 2**31 - 1:
        return pa.ListArray.from_arrays(from_numpy(offsets, pa.int32()), vals)
    return pa.LargeListArray.from_arrays(from_numpy(offsets, pa.int64()), vals)


def pad_rows(enc: Encoded, width: int, pad_id: int, side: str) -> dict[str, np.ndarray]:
    """Pad every row to `width`; labels pad with IGNORE_INDEX, attention_mask marks real tokens.

    Example: rows [5,6], [7]; width 3; right -> ids [[5,6,p],[7,p,p]], mask [[1,1,0],[1,0,0]]
    """
    n = len(enc)
    lengths = enc.lengths
    cols = {"input_ids": np.full((n, width), pad_id, dtype=np.int64),
            "labels": np.full((n, width), IGNORE_INDEX, dtype=np.int64),
            "attention_mask": np.zeros((n, width), dtype=np.int64)}
    if enc.token_type_ids is not None:
        cols["token_type_ids"] = np.zeros((n, width), dtype=np.int64)
    rows = np.repeat(np.arange(n), lengths)
    within = np.arange(len(enc.ids)) - np.repeat(enc.offsets[:-1], lengths)
    cols_idx = within if side == "right" else within + np.repeat(width - lengths, lengths)
    cols["input_ids"][rows, cols_idx] = enc.ids
    cols["labels"][rows, cols_idx] = enc.labels
    cols["attention_mask"][rows, cols_idx] = 1
    if enc.token_type_ids is not None:
        cols["token_type_ids"][rows, cols_idx] = enc.token_type_ids
    return cols


class ClassNames:
    """Class names of string labels (sentence pairs / labelled texts), ids by first appearance in input order.

    One instance sees every split's rows in input order, so the ids are the same in train and test and
    the same on every run. Mixing names and integer ids is refused.
    Example: ["reply", "unrelated", "reply"] -> ids [0, 1, 0], names ["reply", "unrelated"]
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ids: dict[str, int] = {}
        self._ints = False

    def ids(self, labels: list) -> list:
        out = []
        for x in labels:
            if isinstance(x, str):
                if x not in self._ids:
                    self._ids[x] = len(self.names)
                    self.names.append(x)
                x = self._ids[x]
            elif x is not None:
                self._ints = True
            out.append(x)
        if self._ints and self.names:
            from llmprep.errors import ConfigError

            raise ConfigError("field 'label': the rows mix class names (strings) and class ids (integers); "
                              "use one or the other")
        return out

    def features(self) -> dict:
        """Feature overrides for the split's dataset_info.json: {"labels": ClassLabel} once names were seen."""
        return {"labels": {"names": list(self.names), "_type": "ClassLabel"}} if self.names else {}


def rows_table(enc: Encoded, *, padding: str, padding_side: str, width: int, pad_id: int,
               classes: ClassNames | None = None) -> pa.Table:
    """Rows (one batch of a split) as an Arrow table: input_ids, attention_mask, labels (+ token_type_ids).

    `width` is the padded length for padding "longest" / "max-length" (the split's longest row or
    --max-length), ignored for "none". Class labels given as names become ids through `classes`.
    """
    pairs = enc.token_type_ids is not None
    if padding != "none" and len(enc):
        cols = pad_rows(enc, width, pad_id, padding_side)
        offsets = np.arange(len(enc) + 1, dtype=np.int64) * width
        flat = {k: v.reshape(-1) for k, v in cols.items()}
    else:
        offsets = enc.offsets
        flat = {"input_ids": enc.ids, "labels": enc.labels, "attention_mask": np.ones(len(enc.ids), np.int8)}
        if pairs:
            flat["token_type_ids"] = enc.token_type_ids
    data = {"input_ids": list_column(flat["input_ids"], offsets)}
    if pairs:
        data["token_type_ids"] = list_column(flat["token_type_ids"], offsets, pa.int8())
    data["attention_mask"] = list_column(flat["attention_mask"], offsets, pa.int8())
    if pairs:
        labels = list(enc.extra.get("class_labels") or [None] * len(enc))
        data["labels"] = pa.array((classes or ClassNames()).ids(labels), type=pa.int64())
    else:
        data["labels"] = list_column(flat["labels"], offsets)
    return pa.table(data)


def packed_table(columns: dict[str, tuple[np.ndarray, np.ndarray] | list[list[int]]]) -> pa.Table:
    """Packed rows -> Arrow table: {column: (flat values, offsets)} (bfd) or {column: rows as lists} (wrap)."""
    small = {"attention_mask": pa.int8()}
    out = {}
    for k, v in columns.items():
        dtype = small.get(k, pa.int32())
        out[k] = list_column(*v, dtype) if isinstance(v, tuple) else pa.array(v, type=pa.list_(dtype))
    return pa.table(out)


# ---------------------------------------------------------------- datasets' on-disk format

PACKED_SCHEMA = pa.schema([(k, pa.list_(pa.int8() if k == "attention_mask" else pa.int32()))
                           for k in ("input_ids", "labels", "attention_mask", "position_ids", "seq_lengths")])


def _feature(t: pa.DataType) -> dict:
    """Arrow type -> datasets' feature JSON.

    Example: list<int32> -> {"feature": {"dtype": "int32", "_type": "Value"}, "_type": "List"}
    """
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {"feature": _feature(t.value_type), "_type": "List" if pa.types.is_list(t) else "LargeList"}
    return {"dtype": str(t), "_type": "Value"}


def features_json(schema: pa.Schema) -> dict:
    return {f.name: _feature(f.type) for f in schema}


def with_features(schema: pa.Schema) -> pa.Schema:
    """The schema plus the "huggingface" metadata datasets reads the features from."""
    meta = json.dumps({"info": {"features": features_json(schema)}}, separators=(", ", ": "))
    return schema.with_metadata({"huggingface": meta})


class SplitWriter:
    """Append record batches to a split directory; files roll over at MAX_FILE_BYTES.

    Example: w = SplitWriter(DIR / "train", fingerprint="ab12-train"); w.write(table); w.close()
    -> DIR/train/data-00000-of-00001.arrow, dataset_info.json, state.json
    """

    def __init__(self, directory: Path, *, fingerprint: str, max_file_bytes: int = MAX_FILE_BYTES):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.max_file_bytes = max_file_bytes
        self.schema: pa.Schema | None = None
        self.files: list[Path] = []
        self.rows = 0
        self.features: dict = {}
        self._sink = self._writer = None

    def _open(self) -> None:
        path = self.dir / f"part-{len(self.files):05d}.arrow"
        self.files.append(path)
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self.schema = with_features(table.schema)
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._open()
        table = table.cast(self.schema) if table.schema != self.schema else table
        for batch in table.to_batches(max_chunksize=1000):
            self._writer.write_batch(batch)
        self.rows += table.num_rows
        if self._sink.tell() >= self.max_file_bytes:
            self._close_file()

    def close(self, schema: pa.Schema | None = None) -> int:
        """Finish the split: name files data-i-of-n, write dataset_info.json and state.json. -> rows

        `self.features` (set before closing) overrides columns' features in dataset_info.json, e.g.
        {"labels": ClassLabel} for string class labels."""
        if self.schema is None:
            self.schema = with_features(schema)
        if not self.files:  # an empty split still loads (no rows, the right columns)
            self._open()
        self._close_file()
        names = []
        for i, path in enumerate(self.files):
            name = f"data-{i:05d}-of-{len(self.files):05d}.arrow"
            os.replace(path, self.dir / name)
            names.append(name)
        info = {"citation": "", "description": "", "features": {**features_json(self.schema), **self.features},
                "homepage": "", "license": ""}
        write_json(self.dir / "dataset_info.json", info)
        write_json(self.dir / "state.json", {
            "_data_files": [{"filename": n} for n in names], "_fingerprint": self.fingerprint,
            "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
            "_output_all_columns": False, "_split": None})
        return self.rows

    def abort(self) -> None:
        self._close_file()


def write_json(path: Path, data) -> None:
    """JSON with stable key order, UTF-8 kept readable (the format of report.json and datasets' files)."""
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_dataset_dict(root: Path, splits: list[str]) -> None:
    write_json(Path(root) / "dataset_dict.json", {"splits": splits})


def length_stats(lengths: np.ndarray) -> dict:
    """Token-length summary. Example: [1,2,3,4] -> {"min": 1, "p50": 2.5, ..., "max": 4, "mean": 2.5}"""
    if len(lengths) == 0:
        return {}
    q = np.percentile(lengths, [50, 90, 95, 99])
    return {"min": int(lengths.min()), "p50": float(q[0]), "p90": float(q[1]), "p95": float(q[2]),
            "p99": float(q[3]), "max": int(lengths.max()), "mean": round(float(lengths.mean()), 2)}

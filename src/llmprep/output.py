"""Encoded rows -> Arrow columns -> datasets.DatasetDict (optionally packed or padded to fixed shapes).

Columns go straight from flat numpy arrays + offsets into Arrow list arrays: no per-row Python lists.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from llmprep.constants import IGNORE_INDEX
from llmprep.encode import Encoded


def list_column(values: np.ndarray, offsets: np.ndarray, dtype=pa.int32()) -> pa.Array:
    """Flat values + row offsets -> an Arrow list column. Example: [1,2,3], [0,2,3] -> [[1,2],[3]]"""
    vals = pa.array(np.asarray(values), type=dtype)
    if offsets[-1] < 2**31 - 1:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), vals)
    return pa.LargeListArray.from_arrays(pa.array(offsets.astype(np.int64)), vals)


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


def class_names(parts: dict[str, Encoded]) -> list[str] | None:
    """Class names when the labels were given as strings (ids: sorted name order), else None.

    Mixing names and integer ids is refused. Example: {"train": ["reply", "unrelated", "reply"]}
    -> ["reply", "unrelated"]
    """
    labels = [x for enc in parts.values() for x in enc.extra.get("class_labels") or [] if x is not None]
    names = {x for x in labels if isinstance(x, str)}
    if not names:
        return None
    if len(names) != len(labels) and any(not isinstance(x, str) for x in labels):
        from llmprep.errors import ConfigError

        raise ConfigError("field 'label': the rows mix class names (strings) and class ids (integers); "
                          "use one or the other")
    return sorted(names)


def to_table(enc: Encoded, cfg, pad_id: int, label_ids: dict[str, int] | None = None) -> pa.Table:
    """One split as an Arrow table with input_ids, attention_mask, labels (+ token_type_ids)."""
    pairs = enc.token_type_ids is not None
    if cfg.padding != "none" and len(enc):
        width = cfg.max_length if cfg.padding == "max-length" else int(enc.lengths.max())
        cols = pad_rows(enc, width, pad_id, cfg.padding_side)
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
        labels = enc.extra.get("class_labels", [None] * len(enc))
        if label_ids is not None:
            labels = [label_ids.get(x, x) if isinstance(x, str) else x for x in labels]
        data["labels"] = pa.array(labels, type=pa.int64())
    else:
        data["labels"] = list_column(flat["labels"], offsets)
    return pa.table(data)


def packed_table(columns: dict[str, list[list[int]]]) -> pa.Table:
    """Packed rows (lists from llmprep.pack) -> Arrow table."""
    small = {"attention_mask": pa.int8()}
    return pa.table({k: pa.array(v, type=pa.list_(small.get(k, pa.int32()))) for k, v in columns.items()})


def build_splits(parts: dict[str, Encoded], cfg, tok, fingerprint: str):
    """Encoded splits -> DatasetDict, packing each split on its own (no test row leaks into train)."""
    from datasets import Dataset, DatasetDict

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    names = class_names(parts)
    label_ids = {n: i for i, n in enumerate(names)} if names else None
    out, stats = {}, {}
    for name, enc in parts.items():
        if cfg.pack == "bfd":
            from llmprep.pack import pack_bfd_arrays

            columns, stats[name] = pack_bfd_arrays(enc.ids, enc.labels, enc.offsets, cfg.max_length)
            small = {"attention_mask": pa.int8()}
            table = pa.table({k: list_column(v, off, small.get(k, pa.int32())) for k, (v, off) in columns.items()})
        elif cfg.pack == "wrap":
            from llmprep.pack import pack_examples

            rows = [enc.row(r) for r in range(len(enc))]
            columns, stats[name] = pack_examples(
                {"input_ids": [r[0] for r in rows], "labels": [r[1] for r in rows]},
                strategy=cfg.pack, max_length=cfg.max_length, pad_token_id=pad_id, remainder=cfg.remainder)
            table = packed_table(columns)
        else:
            table = to_table(enc, cfg, pad_id, label_ids)
        info = None
        if names:  # string labels: ids in the table, names in the features (ClassLabel, saved with the data)
            from datasets import ClassLabel, DatasetInfo, Features

            features = Features.from_arrow_schema(table.schema)
            features["labels"] = ClassLabel(names=names)
            info = DatasetInfo(features=features)
        # A fingerprint derived from inputs + options (not datasets' random one): same run, same bytes.
        out[name] = Dataset(table, info=info, fingerprint=f"{fingerprint}-{name}")
    return DatasetDict(out), stats


def length_stats(lengths: np.ndarray) -> dict:
    """Token-length summary. Example: [1,2,3,4] -> {"min": 1, "p50": 2.5, ..., "max": 4, "mean": 2.5}"""
    if len(lengths) == 0:
        return {}
    q = np.percentile(lengths, [50, 90, 95, 99])
    return {"min": int(lengths.min()), "p50": float(q[0]), "p90": float(q[1]), "p95": float(q[2]),
            "p99": float(q[3]), "max": int(lengths.max()), "mean": round(float(lengths.mean()), 2)}

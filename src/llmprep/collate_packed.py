"""Collate packed rows for HF Trainer so that no example ever attends to another one.

Modes (which one is safe depends on the attention implementation, see llmprep.attention):
- "padding_free": the whole batch becomes one row [1, N] with position_ids, cu_seq_lens_q/k and
  max_length_q/k (flash-attention varlen kernels; no padding at all).
- "mask_4d": rows padded to the batch width plus a block-diagonal causal 4D attention_mask
  (sdpa: bool, eager: additive float in the model's dtype). Works on CPU.
- "position_ids": rows padded, position_ids restart per example and NO attention_mask, so
  transformers builds the block-diagonal mask itself (flex attention; sdpa/eager in transformers >= 5).

Every batch carries use_cache=False: with a KV cache, transformers skips the position_ids-based
packed-sequence detection (`_preprocess_mask_arguments` requires cache is None), and a model outside
Trainer (which sets config.use_cache = args.use_cache = False) would attend across examples.

Segments come from `seq_lengths` when present, else from position_ids resets (HF Trainer's
remove_unused_columns drops `seq_lengths`, which is not a forward() argument), else one per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from llmprep.attention import MODES, attention_implementation, block_diagonal_mask, mode_for
from llmprep.constants import IGNORE_INDEX
from llmprep.errors import ConfigError


def _as_list(values: Any) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def row_segments(feature: Mapping[str, Any]) -> list[int]:
    """Lengths of the real (non-pad) examples in one packed row.

    Example: {"input_ids": [5, 6, 7, 0], "position_ids": [0, 1, 0, 0], "attention_mask": [1, 1, 1, 0]}
    -> [2, 1]   (the trailing pad is not an example)
    """
    if feature.get("seq_lengths") is not None:
        return [int(n) for n in _as_list(feature["seq_lengths"])]
    n = len(feature["input_ids"])
    if feature.get("attention_mask") is not None:
        n = int(sum(_as_list(feature["attention_mask"])))
    positions = _as_list(feature["position_ids"])[:n] if feature.get("position_ids") is not None else None
    if not positions:
        return [n] if n else []
    starts = [i for i in range(n) if i == 0 or positions[i] != positions[i - 1] + 1]
    return [b - a for a, b in zip(starts, starts[1:] + [n])]


def _segments(feature: Mapping[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """(input_ids, labels, position_ids) of the real tokens, labels IGNORE_INDEX at each example start.

    Example: ids [5, 6, 7], labels [5, 6, 7], seq_lengths [2, 1] -> labels [-100, 6, -100], positions [0, 1, 0]
    """
    lengths = row_segments(feature)
    n = sum(lengths)
    ids = _as_list(feature["input_ids"])[:n]
    labels = _as_list(feature["labels"])[:n] if feature.get("labels") is not None else list(ids)
    positions: list[int] = []
    for length in lengths:
        if length:
            labels[len(positions)] = IGNORE_INDEX
        positions.extend(range(length))
    return ids, labels, positions


@dataclass
class PackedCollator:
    """Batch packed rows (from llmprep.pack) for a model, with attention confined to each example.

    Example (mode="mask_4d", pad_token_id=0): rows [{"input_ids": [5, 6, 7], "seq_lengths": [2, 1]},
    {"input_ids": [8], "seq_lengths": [1]}] -> input_ids [[5, 6, 7], [8, 0, 0]],
    position_ids [[0, 1, 0], [0, 0, 1]], labels [[-100, 6, -100], [-100, -100, -100]],
    attention_mask [2, 1, 3, 3] bool, block-diagonal causal.
    """

    pad_token_id: int
    mode: str = "mask_4d"
    mask_dtype: torch.dtype = torch.bool
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"PackedCollator mode={self.mode!r}: expected one of {', '.join(MODES)}")

    @classmethod
    def for_model(cls, model: Any, *, pad_token_id: int, mode: str | None = None, **kwargs) -> "PackedCollator":
        """The safe mode and mask dtype for `model`. Example: eager float32 Llama -> mask_4d, float32 mask."""
        mode = mode or mode_for(model)
        if mode == "mask_4d" and "mask_dtype" not in kwargs:
            eager = attention_implementation(model) == "eager"
            kwargs["mask_dtype"] = getattr(model, "dtype", torch.float32) if eager else torch.bool
        return cls(pad_token_id=pad_token_id, mode=mode, **kwargs)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        rows = [_segments(f) for f in features]
        if self.mode == "padding_free":
            return self._flatten(rows)
        return self._pad(rows)

    def _flatten(self, rows: list[tuple[list[int], list[int], list[int]]]) -> dict[str, Any]:
        """One [1, N] row; cu_seq_lens from the segment starts (position 0 of each example)."""
        ids = [t for r in rows for t in r[0]]
        labels = [t for r in rows for t in r[1]]
        positions = [t for r in rows for t in r[2]]
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        cu = torch.tensor(starts, dtype=torch.int32)
        longest = int((cu[1:] - cu[:-1]).max()) if len(starts) > 1 else 0
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([positions]), "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
                "max_length_q": longest, "max_length_k": longest, "use_cache": False}

    def _pad(self, rows: list[tuple[list[int], list[int], list[int]]]) -> dict[str, Any]:
        """Pad rows to the batch width; pads get labels -100 and positions 0.. (their own segment)."""
        width = max((len(r[0]) for r in rows), default=0)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        ids, labels, positions = [], [], []
        for r_ids, r_labels, r_pos in rows:
            n_pad = width - len(r_ids)
            ids.append(r_ids + [self.pad_token_id] * n_pad)
            labels.append(r_labels + [IGNORE_INDEX] * n_pad)
            positions.append(r_pos + list(range(n_pad)))
        batch: dict[str, Any] = {"input_ids": torch.tensor(ids, dtype=torch.long),
                                 "labels": torch.tensor(labels, dtype=torch.long),
                                 "position_ids": torch.tensor(positions, dtype=torch.long),
                                 "use_cache": False}
        if self.mode == "mask_4d":
            batch["attention_mask"] = block_diagonal_mask(batch["position_ids"], self.mask_dtype)
        return batch

"""Collators for HF Trainer: pad each batch dynamically, labels padded with IGNORE_INDEX.

Labels are never derived from the pad id: many tokenizers set pad == eos, and a collator that masks
"labels == pad_token_id" silently stops the model from learning to emit EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from llmprep.constants import IGNORE_INDEX


def _pad_value(key: str, pad_token_id: int) -> int:
    """Which value pads a column. Example: "labels" -> -100, "attention_mask" -> 0."""
    return {"labels": IGNORE_INDEX, "attention_mask": 0, "token_type_ids": 0}.get(key, pad_token_id)


@dataclass
class PaddingCollator:
    """Pad a list of examples to the longest in the batch (or a multiple of `pad_to_multiple_of`).

    Example (pad_token_id=0, side="right"):
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
        -> input_ids [[5, 6, 7], [8, 0, 0]], labels [[-100, 6, 7], [8, -100, -100]],
           attention_mask [[1, 1, 1], [1, 0, 0]]
    """

    pad_token_id: int
    padding_side: str = "right"
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side={self.padding_side!r}: expected 'left' or 'right'")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(f["input_ids"]) for f in features]
        width = max(lengths)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        seq_labels = "labels" in features[0] and not isinstance(features[0]["labels"], int)
        keys = [k for k in features[0] if k in ("input_ids", "attention_mask", "token_type_ids")
                or (k == "labels" and seq_labels)]
        batch: dict[str, torch.Tensor] = {}
        for key in keys:
            out = torch.full((len(features), width), _pad_value(key, self.pad_token_id), dtype=torch.long)
            for row, f in enumerate(features):
                values = torch.as_tensor(f[key], dtype=torch.long)
                if self.padding_side == "right":
                    out[row, : len(values)] = values
                else:
                    out[row, width - len(values):] = values
            batch[key] = out
        if "attention_mask" not in batch:
            mask = torch.zeros((len(features), width), dtype=torch.long)
            for row, n in enumerate(lengths):
                if self.padding_side == "right":
                    mask[row, :n] = 1
                else:
                    mask[row, width - n:] = 1
            batch["attention_mask"] = mask
        for key in ("label", "labels"):
            if key in features[0] and isinstance(features[0][key], int):  # class ids: one int per example
                batch["labels"] = torch.as_tensor([f[key] for f in features], dtype=torch.long)
        return batch

    @classmethod
    def for_tokenizer(cls, tokenizer, **kwargs) -> "PaddingCollator":
        """Build from a tokenizer; a tokenizer without a pad token pads with EOS (labels stay -100)."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("tokenizer has neither a pad nor an eos token; pass pad_token_id explicitly")
        kwargs.setdefault("padding_side", tokenizer.padding_side)
        return cls(pad_token_id=pad, **kwargs)

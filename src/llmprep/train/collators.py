"""Which collator a run uses: it follows the data layout and the model's attention implementation.

| task           | attention implementation        | rows           | collator                               |
|----------------|---------------------------------|----------------|----------------------------------------|
| classification | any                             | any            | PaddingCollator (dynamic padding)      |
| causal-lm      | llmprep_varlen, flash_attention | packed or not  | PackedCollator "padding_free" (1 row)  |
| causal-lm      | flex_attention                  | packed or not  | PackedCollator "position_ids"          |
| causal-lm      | sdpa, eager                     | packed         | PackedCollator "mask_4d"               |
| causal-lm      | sdpa, eager                     | one example    | PaddingCollator (dynamic padding)      |

A plain (unpacked) row is one segment to PackedCollator, so flattened and padded batches of the same
examples give the same loss.
"""

from __future__ import annotations

from llmprep.attention import attention_implementation, mode_for
from llmprep.collate import PaddingCollator
from llmprep.collate_packed import PackedCollator
from llmprep.models import CLASSIFICATION


def pad_id(tokenizer) -> int:
    """The id padding uses (labels are padded with IGNORE_INDEX regardless). Example: SmolLM2 -> 2"""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return 0 if pad is None else int(pad)


def collator_for(task: str, packed: bool, model, tokenizer):
    """The collator for this task, data layout and model. Example: causal-lm, unpacked, sdpa -> PaddingCollator"""
    pad = pad_id(tokenizer)
    if task == CLASSIFICATION:
        return PaddingCollator(pad_token_id=pad, padding_side="right")
    mode = mode_for(model)
    if mode == "mask_4d" and not packed:
        return PaddingCollator(pad_token_id=pad, padding_side="right")
    return PackedCollator.for_model(model, pad_token_id=pad)


def describe(collator) -> str:
    """Short name for logs. Example: PackedCollator(mode="padding_free") -> "packed/padding_free" """
    if isinstance(collator, PackedCollator):
        return f"packed/{collator.mode}"
    return "padding"


__all__ = ["attention_implementation", "collator_for", "describe", "pad_id"]

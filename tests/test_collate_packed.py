"""PackedCollator: goldens per mode, segments recovered without seq_lengths, clear errors."""

import pytest
import torch

from llmprep.collate_packed import PackedCollator, row_segments
from llmprep.errors import ConfigError

P = -100
ROWS = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7], "position_ids": [0, 1, 0], "seq_lengths": [2, 1]},
        {"input_ids": [8], "labels": [8], "position_ids": [0], "seq_lengths": [1]}]


def test_mask_4d_golden():
    batch = PackedCollator(pad_token_id=0, mode="mask_4d")(ROWS)
    # fmt: off
    assert batch["input_ids"].tolist() ==    [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() ==       [[P, 6, P], [P, P, P]]
    assert batch["position_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]
    assert batch["attention_mask"].shape == (2, 1, 3, 3) and batch["attention_mask"].dtype == torch.bool
    assert batch["attention_mask"][0, 0].int().tolist() == [[1, 0, 0],
                                                            [1, 1, 0],
                                                            [0, 0, 1]]
    assert batch["attention_mask"][1, 0].int().tolist() == [[1, 0, 0],
                                                            [0, 1, 0],
                                                            [0, 1, 1]]
    # fmt: on
    assert batch["use_cache"] is False


def test_position_ids_mode_sends_no_attention_mask():
    batch = PackedCollator(pad_token_id=0, mode="position_ids", pad_to_multiple_of=4)(ROWS)
    assert "attention_mask" not in batch  # an all-ones 2D mask would switch off HF's packed detection
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 0], [0, 0, 1, 2]]


def test_padding_free_golden():
    batch = PackedCollator(pad_token_id=0, mode="padding_free")(ROWS)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8]]
    assert batch["labels"].tolist() == [[P, 6, P, P]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 0]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 2, 3, 4] and batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["max_length_q"] == batch["max_length_k"] == 2


def test_segments_without_seq_lengths_and_with_row_padding():
    """Trainer's remove_unused_columns drops seq_lengths: recover from position_ids; skip pads."""
    row = {"input_ids": [5, 6, 7, 0], "position_ids": [0, 1, 0, 0], "attention_mask": [1, 1, 1, 0]}
    assert row_segments(row) == [2, 1]
    assert row_segments({"input_ids": [5, 6, 7]}) == [3]
    batch = PackedCollator(pad_token_id=0, mode="padding_free")([dict(row, labels=[5, 6, 7, 0])])
    assert batch["input_ids"].tolist() == [[5, 6, 7]] and batch["labels"].tolist() == [[P, 6, P]]


def test_for_model_picks_eager_float_mask():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, attn_implementation="eager")
    collator = PackedCollator.for_model(LlamaForCausalLM(cfg), pad_token_id=0)
    assert collator.mode == "mask_4d" and collator.mask_dtype == torch.float32
    mask = collator(ROWS)["attention_mask"]
    assert mask.dtype == torch.float32 and mask[0, 0, 2, 0] == torch.finfo(torch.float32).min


def test_bad_mode():
    with pytest.raises(ConfigError, match="mode='flat'.*padding_free, mask_4d, position_ids"):
        PackedCollator(pad_token_id=0, mode="flat")

"""collate.py: PaddingCollator pads input_ids with the pad id, labels with -100 (never derived from the pad
id: SmolLM2's pad == eos and EOS labels must stay trained), attention_mask 0; left/right; multiples."""

from __future__ import annotations

import json

import pytest
import torch

from llmprep.collate import PaddingCollator
from llmprep.constants import IGNORE_INDEX
from llmprep.prepare import prepare

FEATURES = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]


def test_docstring_golden_right():
    batch = PaddingCollator(pad_token_id=0)(FEATURES)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_left_padding_and_multiple_of():
    batch = PaddingCollator(pad_token_id=9, padding_side="left", pad_to_multiple_of=4)(FEATURES)
    assert batch["input_ids"].tolist() == [[9, 5, 6, 7], [9, 9, 9, 8]]
    assert batch["labels"].tolist() == [[-100, -100, 6, 7], [-100, -100, -100, 8]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    right = PaddingCollator(pad_token_id=9, pad_to_multiple_of=8)(FEATURES)
    assert right["input_ids"].shape == (2, 8)
    assert PaddingCollator(pad_token_id=9, pad_to_multiple_of=3)(FEATURES)["input_ids"].shape == (2, 3)
    with pytest.raises(ValueError, match="padding_side"):
        PaddingCollator(pad_token_id=0, padding_side="middle")


def test_existing_attention_mask_and_token_type_ids_are_padded():
    feats = [{"input_ids": [1, 2], "attention_mask": [1, 1], "token_type_ids": [0, 1], "label": 1},
             {"input_ids": [3], "attention_mask": [1], "token_type_ids": [0], "label": 0}]
    batch = PaddingCollator(pad_token_id=0)(feats)
    assert batch["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 1], [0, 0]]
    assert batch["labels"].tolist() == [1, 0]  # sequence-classification targets


def test_eos_labels_stay_trained_when_pad_is_eos(smollm2):
    collate = PaddingCollator.for_tokenizer(smollm2)
    assert collate.pad_token_id == smollm2.eos_token_id == 2 and collate.padding_side == "right"
    feats = [{"input_ids": [10, 11, 2], "labels": [-100, 11, 2]}, {"input_ids": [12, 2], "labels": [12, 2]}]
    batch = collate(feats)
    assert batch["input_ids"].tolist() == [[10, 11, 2], [12, 2, 2]]
    assert batch["labels"].tolist() == [[-100, 11, 2], [12, 2, -100]]  # real EOS trained, the pad not
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    left = PaddingCollator.for_tokenizer(smollm2, padding_side="left")(feats)
    assert left["labels"].tolist() == [[-100, 11, 2], [-100, 12, 2]]


def test_for_tokenizer_without_pad_uses_eos(mistral):
    assert mistral.pad_token_id is None
    assert PaddingCollator.for_tokenizer(mistral).pad_token_id == mistral.eos_token_id == 2


def test_on_prepared_dataset_rows_like_trainer(tmp_path, smollm2):
    """HF Trainer passes a list of dataset rows (dicts of lists) to data_collator."""
    chats = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
             [{"role": "user", "content": "Tell me about Paris."},
              {"role": "assistant", "content": "Paris is the capital of France."}]]
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps({"messages": m}) + "\n" for m in chats))
    ds = prepare(str(p), progress=False, num_proc=1)["train"]
    rows = [ds[i] for i in range(len(ds))]
    batch = PaddingCollator.for_tokenizer(smollm2)(rows)
    n = [len(r["input_ids"]) for r in rows]
    assert batch["input_ids"].shape == (2, max(n))
    for i, r in enumerate(rows):
        k = max(n) - n[i]
        assert batch["input_ids"][i].tolist() == r["input_ids"] + [2] * k
        assert batch["labels"][i].tolist() == r["labels"] + [IGNORE_INDEX] * k
        assert batch["attention_mask"][i].tolist() == [1] * n[i] + [0] * k
    # the model's loss sees exactly the reply tokens + <|im_end|>, one row at a time
    for i, r in enumerate(rows):
        trained = batch["input_ids"][i][batch["labels"][i] != IGNORE_INDEX].tolist()
        assert smollm2.decode(trained) == chats[i][1]["content"] + "<|im_end|>"
    # with torch-formatted rows too (Trainer with set_format("torch"))
    ds.set_format("torch")
    batch2 = PaddingCollator.for_tokenizer(smollm2)([ds[0], ds[1]])
    assert all(torch.equal(batch[k], batch2[k]) for k in batch)

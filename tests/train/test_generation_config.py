"""At save, generation_config.eos_token_id holds EOS and the template's end-of-turn token, so a model whose
turns end with another token than its EOS (Qwen, Llama 3 style) stops where training taught it to."""

from __future__ import annotations

import copy
import json

import pytest
from datasets import load_from_disk
from train_helpers import cli, tiny_llama
from transformers import GenerationConfig

from llmprep.generate import end_of_turn_token, stop_token_ids
from llmprep.train.run import _save_generation_config


@pytest.fixture(scope="module")
def eos_differs(smollm2):
    """SmolLM2's tokenizer with EOS <|endoftext|> (id 0) while its ChatML turns end with <|im_end|> (id 2)."""
    tok = copy.deepcopy(smollm2)
    tok.eos_token = "<|endoftext|>"
    return tok


def test_end_of_turn_token_per_template(smollm2, llama3, eos_differs):
    assert end_of_turn_token(smollm2) == "<|im_end|>"
    assert end_of_turn_token(llama3) == "<|eot_id|>"
    assert stop_token_ids(smollm2) == [2]
    assert stop_token_ids(eos_differs) == [0, 2]


def test_saved_generation_config_stops_at_the_end_of_turn(eos_differs, tmp_path):
    _save_generation_config(tiny_llama(), eos_differs, tmp_path)
    gen = GenerationConfig.from_pretrained(tmp_path)
    assert gen.eos_token_id == [0, 2] and gen.pad_token_id == 2


def test_bf16_and_epochs_run(tiny_dir, chat_data, tmp_path):
    out = tmp_path / "bf16"
    cli("train", chat_data / "packed", "--model", tiny_dir, "--out", out, "--epochs", "1", "--batch-size", "8",
        "--bf16", "--cpu", "--logging-steps", "1", "--quiet")
    run = json.loads((out / "llmprep-run.json").read_text())
    rows = len(load_from_disk(str(chat_data / "packed"))["train"])
    assert run["mixed_precision"] == "bf16" and run["dtype"] == "float32"  # float32 master weights
    losses = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in losses) == -(-rows // 8)  # --epochs 1: one pass over the packed rows

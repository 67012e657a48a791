"""Checks that need the model, on the real SmolLM2-135M-Instruct (loaded once per session), copies of it
with a base model's generation config, and the model resized with `llmprep model resize`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from doctor_assets import SAMPLE, prepared, sample_lines

from llmprep.checks import Data, Subject, run_checks
from llmprep.checks.model import load_model_info
from llmprep.checks.modelchecks import untrained_rows
from llmprep.tokenizer import load_tokenizer

ZH = Path(__file__).parents[1] / "assets" / "zh_fortunes_excerpt.txt"


def findings(tokenizer, model, check, *, data=None, tmpl="auto"):
    info = model if not isinstance(model, (str, Path)) else load_model_info(str(model))
    report = run_checks(Subject.build(tokenizer, template=tmpl, model=info, data=data))
    return [f for f in report.findings if f.id == check], report


def linked_copy(src: Path, dst: Path, **config_changes) -> Path:
    """A model directory sharing src's weights (symlinked), with generation_config.json keys changed."""
    dst.mkdir()
    for f in src.iterdir():
        if f.name != "generation_config.json":
            os.symlink(f, dst / f.name)
    gen = json.loads((src / "generation_config.json").read_text())
    (dst / "generation_config.json").write_text(json.dumps({**gen, **config_changes}))
    return dst


def test_gguf_model_info_equals_the_loaded_model(smol_model):
    info = load_model_info("smollm2")
    assert (info.max_positions, info.rows, info.generation_eos) == (8192, 49152, [2])
    assert np.array_equal(info.embedding, smol_model.get_input_embeddings().weight.detach().numpy())


# --- generation-eos ------------------------------------------------------------------------------

def test_generation_eos_base_model_generation_config(smollm2, smol_model_dir, tmp_path):
    """SmolLM2-135M (the base model) stops on <|endoftext|> (id 0); its chat template ends turns with
    <|im_end|> (id 2): generate() would run past every reply."""
    base = linked_copy(smol_model_dir, tmp_path / "base", eos_token_id=0)
    (f,), _ = findings(smollm2, base, "generation-eos")
    assert f.severity == "error" and "'<|im_end|>' (id 2)" in f.message and "0 '<|endoftext|>'" in f.message


def test_generation_eos_twin_instruct_model_and_a_list(smollm2, smol_model_dir, tmp_path):
    assert findings(smollm2, smol_model_dir, "generation-eos")[0] == []
    both = linked_copy(smol_model_dir, tmp_path / "both", eos_token_id=[0, 2])
    assert findings(smollm2, both, "generation-eos")[0] == []


# --- untrained-embeddings ------------------------------------------------------------------------

def test_untrained_embeddings_chat_tokens_added_with_zero_rows(llama31_dir, resized_zero_dir):
    tok = load_tokenizer(str(llama31_dir))
    (f,), _ = findings(tok, resized_zero_dir, "untrained-embeddings")
    assert f.severity == "error"  # <|eot_id|> is the stop token: trained with every reply
    for t in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
        assert any(repr(t) in e and e.endswith(": zero") for e in f.examples), t


def test_untrained_embeddings_smollm2_own_never_trained_special_tokens(smollm2, smol_model_dir, tmp_path):
    """SmolLM2-Instruct's <jupyter_*> tokens share one embedding row bit for bit (never trained): rows that
    use them as control tokens (--allow-control-text) are flagged on the real model."""
    rows = [{"messages": [{"role": "user", "content": "Run it"},
                          {"role": "assistant", "content": "<jupyter_code>print(1)<jupyter_output>1"}]}]
    d = prepared(tmp_path, rows, literal_control_text=False)
    (f,), _ = findings(smollm2, smol_model_dir, "untrained-embeddings", data=Data.from_dir(d))
    assert f.severity == "error"  # trained: they are in the reply
    assert any(e.startswith("13 '<jupyter_code>': identical to") for e in f.examples)
    assert any(e.startswith("14 '<jupyter_output>': identical to") for e in f.examples)


def test_untrained_embeddings_twin_real_model_on_the_sample(smollm2, smol_model_dir, tmp_path):
    d = prepared(tmp_path, sample_lines(300))
    assert findings(smollm2, smol_model_dir, "untrained-embeddings", data=Data.from_dir(d))[0] == []


def test_untrained_rows_golden():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10, 8)).astype(np.float32)
    emb[3] = 0
    emb[5] = emb[6] = emb[:3].mean(0)
    emb[7] *= 0.01
    # fmt: off
    assert untrained_rows(emb, np.arange(10)) == {3: "zero", 5: "identical to 1 other row(s)",
                                                  6: "identical to 1 other row(s)",
                                                  7: untrained_rows(emb, np.array([7]))[7]}
    # fmt: on
    assert untrained_rows(emb, np.array([7]))[7].startswith("norm 0.0")
    assert untrained_rows(emb, np.array([0, 1, 2])) == {}


# --- vocab-mismatch ------------------------------------------------------------------------------

def test_vocab_mismatch_tokenizer_larger_than_the_embedding(llama31_dir, smol_model_dir):
    (f,), _ = findings(load_tokenizer(str(llama31_dir)), smol_model_dir, "vocab-mismatch")
    assert f.severity == "error" and "49,156 tokens but the model only 49,152" in f.message


def test_vocab_mismatch_ids_beyond_the_embedding(llama31_dir, smol_model_dir, tmp_path):
    tok = load_tokenizer(str(llama31_dir))
    d = prepared(tmp_path, sample_lines(20), tokenizer=str(llama31_dir))
    found, _ = findings(tok, smol_model_dir, "vocab-mismatch", data=Data.from_dir(d))
    assert any("holds token id 4915" in f.message for f in found)  # <|eot_id|> etc. are ids 49152+


def test_vocab_mismatch_twins(llama31_dir, resized_zero_dir, smollm2, smol_model_dir, bert):
    assert findings(load_tokenizer(str(llama31_dir)), resized_zero_dir, "vocab-mismatch")[0] == []
    assert findings(smollm2, smol_model_dir, "vocab-mismatch")[0] == []
    (f,), _ = findings(bert, smol_model_dir, "vocab-mismatch", tmpl="chatml")  # fewer tokens than rows
    assert f.severity == "info"


# --- max-length ----------------------------------------------------------------------------------

def test_max_length_rows_beyond_the_model_positions(smollm2, smol_model_dir, tmp_path):
    d = prepared(tmp_path, ZH, pack="wrap", max_length=9000)
    (f,), _ = findings(smollm2, smol_model_dir, "max-length", data=Data.from_dir(d))
    assert f.severity == "error" and "longer than the model's 8,192 positions (longest 9,000)" in f.message


def test_max_length_twin_blocks_that_fit(smollm2, smol_model_dir, tmp_path):
    d = prepared(tmp_path, ZH, pack="wrap", max_length=8192)
    assert findings(smollm2, smol_model_dir, "max-length", data=Data.from_dir(d))[0] == []


# --- the clean real setup ------------------------------------------------------------------------

def test_clean_setup_only_warns_about_the_sample_duplicates(smol_model_dir):
    from llmprep.checks.doctor import doctor

    report = doctor("smollm2", model=str(smol_model_dir), data=[str(SAMPLE)])
    assert [f.id for f in report.findings if f.severity in ("error", "warning")] == ["duplicates"]
    assert report.exit_code == 1
    assert set(report.skipped) == {"slow-fast-mismatch", "leakage"}  # every other check ran


@pytest.mark.parametrize("spec", ["no/such/model", "README.md"])
def test_bad_model_value_is_one_clear_error(spec):
    from llmprep.errors import ConfigError

    with pytest.raises(ConfigError, match="expected 'smollm2', a local model directory"):
        load_model_info(spec)

"""`llmprep train`: prepare -> train -> saved model that loads and generates; LoRA saves adapters."""

import json

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from llmprep.cli import main
from llmprep.cli.prepare import sample_path
from llmprep.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    tok = load_tokenizer("smollm2")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    src = root / "chats.jsonl"
    with open(sample_path(), encoding="utf-8") as fh:
        src.write_text("".join(line for _, line in zip(range(60), fh)), encoding="utf-8")
    for name, extra in [("plain", []), ("packed", ["--pack", "bfd", "--max-length", "512"])]:
        res = CliRunner().invoke(main, ["prepare", str(src), "--out", str(root / name), "--quiet", "--no-cache",
                                        "--test-size", "8"] + extra)
        assert res.exit_code == 0, res.output
    return root


@pytest.mark.parametrize("layout", ["plain", "packed"])
def test_full_fine_tune_saves_a_loadable_model(tiny_model, data, tmp_path, layout):
    out = tmp_path / "ft"
    res = CliRunner().invoke(main, ["train", str(data / layout), "--model", str(tiny_model), "--out", str(out),
                                    "--max-steps", "3", "--lr", "1e-3"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["train_loss"] > 0 and metrics["eval_loss"] > 0 and metrics["eval_perplexity"] > 1
    before = AutoModelForCausalLM.from_pretrained(tiny_model)
    after = AutoModelForCausalLM.from_pretrained(out)
    assert not torch.equal(before.model.layers[0].self_attn.q_proj.weight, after.model.layers[0].self_attn.q_proj.weight)
    assert load_tokenizer(str(out)).chat_template == load_tokenizer("smollm2").chat_template


def test_lora_saves_adapters_only(tiny_model, data, tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "lora"
    res = CliRunner().invoke(main, ["train", str(data / "plain"), "--model", str(tiny_model), "--out", str(out),
                                    "--max-steps", "2", "--lora", "--lora-r", "4"])
    assert res.exit_code == 0, res.output
    assert (out / "adapter_config.json").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_model_smaller_than_tokenizer_is_refused(data, tmp_path):
    small = LlamaForCausalLM(LlamaConfig(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    small.save_pretrained(tmp_path / "small")
    res = CliRunner().invoke(main, ["train", str(data / "plain"), "--model", str(tmp_path / "small"),
                                    "--out", str(tmp_path / "o"), "--max-steps", "1"])
    assert res.exit_code == 1 and "1000 embedding rows" in res.output and "llmprep model resize" in res.output

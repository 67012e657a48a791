"""`llmprep train DATA --model M --out DIR`: fine-tune a causal LM (full or LoRA) or train a classifier."""

from __future__ import annotations

import json
import math

import click

from llmprep.cli.prepare import parse_test_size
from llmprep.train.config import ATTENTION, SCHEDULERS


def _json_safe(metrics: dict) -> dict:
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


@click.command("train")
@click.argument("data", nargs=-1, required=True)
@click.option("--model", default="smollm2", show_default=True,
              help="'smollm2', 'minilm', a model directory, a finished run, a .gguf file, or a hub id.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run directory: checkpoints while training, the finished model at the end.")
@click.option("--task", type=click.Choice(["auto", "causal-lm", "classification"]), default="auto", show_default=True,
              help="auto: from the data (class ids per row -> classification, token labels -> causal-lm).")
@click.option("--tokenizer", default=None, help="Default: the one DATA was prepared with (its report.json).")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=-1, show_default=True, help="Stop after N steps (overrides --epochs).")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Rows per device per micro-batch.")
@click.option("--grad-accum", type=int, default=1, show_default=True, help="Micro-batches per optimizer step.")
@click.option("--lr", type=float, default=2e-5, show_default=True)
@click.option("--lr-scheduler", type=click.Choice(SCHEDULERS), default="cosine", show_default=True)
@click.option("--warmup", type=float, default=0.03, show_default=True,
              help="Linear warmup: a fraction of the steps (< 1) or a number of steps.")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--lora", is_flag=True, help="Train LoRA adapters on every linear layer instead of all weights.")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--bf16", is_flag=True, help="bf16 mixed precision (float32 master weights).")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in backward (less memory).")
@click.option("--eval-steps", type=int, default=None,
              help="Evaluate on the test split every N steps (default: at the end).")
@click.option("--save-steps", type=int, default=500, show_default=True, help="Checkpoint every N steps.")
@click.option("--save-total-limit", type=int, default=2, show_default=True, help="Checkpoints kept.")
@click.option("--resume", is_flag=True,
              help="Continue the unfinished run in --out from its newest complete checkpoint.")
@click.option("--logging-steps", type=int, default=10, show_default=True)
@click.option("--attention", type=click.Choice(ATTENTION), default="auto", show_default=True,
              help="auto: varlen (flash, per example) on a CUDA GPU with --bf16, else the model's own (sdpa).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile each decoder layer.")
@click.option("--deepspeed", default=None, help="zero2, zero3 (shipped configs) or a DeepSpeed JSON file.")
@click.option("--fsdp", is_flag=True, help="Shard with FSDP2 (run under torchrun / accelerate launch).")
@click.option("--cpu", is_flag=True, help="Train on CPU even when a GPU is present (gloo under a launcher).")
@click.option("--num-workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--max-length", type=int, default=2048, show_default=True, help="Raw DATA only: prepare's --max-length.")
@click.option("--test-size", default="0", show_default=True, help="Raw DATA only: held-out split for evaluation.")
@click.option("--pack", type=click.Choice(["none", "bfd"]), default="none", show_default=True,
              help="Raw DATA only: pack examples into rows of --max-length.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(data, model, out, task, tokenizer, epochs, max_steps, batch_size, grad_accum, lr, lr_scheduler, warmup,
              weight_decay, lora, lora_r, bf16, gradient_checkpointing, eval_steps, save_steps, save_total_limit,
              resume, logging_steps, attention, compile_, deepspeed, fsdp, cpu, num_workers, seed, max_length,
              test_size, pack, quiet) -> None:
    """Train MODEL on DATA: a directory written by `llmprep prepare`, or raw records (prepared once into
    OUT/data with the model's tokenizer).

    \b
    llmprep train out/demo --model smollm2 --out runs/t --max-steps 5
    llmprep train out/demo --model smollm2 --out runs/lora --lora --lr 2e-4
    llmprep train pairs.jsonl --model minilm --out runs/cls --test-size 0.1 --eval-steps 20
    """
    from llmprep.train import TrainConfig, train

    cfg = TrainConfig(task=task, tokenizer=tokenizer, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                      grad_accum=grad_accum, lr=lr, lr_scheduler=lr_scheduler, warmup=warmup,
                      weight_decay=weight_decay, lora=lora, lora_r=lora_r, bf16=bf16,
                      gradient_checkpointing=gradient_checkpointing, eval_steps=eval_steps, save_steps=save_steps,
                      save_total_limit=save_total_limit, resume=resume, logging_steps=logging_steps,
                      attention=attention, compile=compile_, deepspeed=deepspeed, fsdp=fsdp, cpu=cpu,
                      num_workers=num_workers, seed=seed, max_length=max_length,
                      test_size=parse_test_size(test_size), pack=pack, progress=not quiet)
    metrics = train(list(data), out, model=model, config=cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        click.echo(json.dumps(_json_safe(metrics), indent=2))

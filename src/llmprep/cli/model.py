"""`llmprep model ...`: model surgery that follows a tokenizer change."""

from __future__ import annotations

import click

from llmprep.cli.vocab import user_errors


@click.group()
def model() -> None:
    """Model tooling: resize embeddings to a tokenizer."""


@model.command("resize")
@click.option("--model", "model_path", required=True, help="Model directory (config + safetensors) or .gguf.")
@click.option("--tokenizer", required=True, help="The new (extended) tokenizer directory.")
@click.option("--out", required=True, help="Output directory (safetensors + tokenizer).")
@click.option("--base-tokenizer", default=None,
              help="The model's own tokenizer (default: the one in the --model directory).")
@click.option("--init", type=click.Choice(["subword-mean", "mean", "zero", "random"]),
              default="subword-mean", show_default=True, help="How new rows start.")
@click.option("--pad-to-multiple-of", type=int, default=None, help="Round the row count up.")
@user_errors
def resize_cmd(model_path, tokenizer, out, base_tokenizer, init, pad_to_multiple_of) -> None:
    """Resize input embeddings and LM head to a tokenizer; old rows stay bit-identical."""
    from llmprep.store import check_output_dir

    check_output_dir(out)  # refuse a bad --out before the work, not after it (llmprep.store)
    from llmprep.vocab.resize import resize
    report = resize(model_path, tokenizer, out, base_tokenizer=base_tokenizer, init=init,
                    pad_to_multiple_of=pad_to_multiple_of)
    click.echo(report.summary())

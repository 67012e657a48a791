"""`llmprep vocab ...`: train, merge, compare and prune vocabularies."""

from __future__ import annotations

import functools
import json

import click

from llmprep.errors import LlmprepError
from llmprep.store import check_output_dir


def user_errors(fn):
    """Turn llmprep's user-input errors into click errors (message, exit code 1, no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LlmprepError as exc:
            raise click.ClickException(str(exc)) from exc
    return wrapper


@click.group()
def vocab() -> None:
    """Vocabulary tooling: train, merge, compare, prune."""


@vocab.command("train")
@click.option("--corpus", multiple=True, required=True, help="Text file or folder (repeatable).")
@click.option("--vocab-size", type=int, required=True, help="Pieces in the new vocabulary.")
@click.option("--out", required=True, help="Output directory (tokenizer.model, train_report.json).")
@click.option("--model-type", type=click.Choice(["bpe", "unigram"]), default="bpe", show_default=True)
@click.option("--character-coverage", type=float, default=0.9995, show_default=True)
@click.option("--max-sentences", type=int, default=None, help="Sample this many lines (reservoir).")
@user_errors
def train_cmd(corpus, vocab_size, out, model_type, character_coverage, max_sentences) -> None:
    """Train a SentencePiece vocabulary on a corpus."""
    check_output_dir(out)  # refuse a bad --out before the work, not after it (llmprep.store)
    from llmprep.vocab.train import train_vocab
    report = train_vocab(corpus, vocab_size=vocab_size, out=out, model_type=model_type,
                         character_coverage=character_coverage, max_sentences=max_sentences)
    click.echo(report.summary())
    click.echo(f"wrote {out}/tokenizer.model, {out}/train_report.json")


@vocab.command("merge")
@click.option("--base", required=True, help="Base tokenizer: tokenizer.model, tokenizer.json, a dir, or 'smollm2'.")
@click.option("--add", required=True, help="New SentencePiece model (file or dir from `vocab train`).")
@click.option("--out", required=True, help="Output tokenizer directory.")
@click.option("--keep-script", type=click.Choice(["cjk", "han", "no-ascii", "all"]), default="cjk",
              show_default=True, help="Which new pieces to add (all = the seed's rule).")
@user_errors
def merge_cmd(base, add, out, keep_script) -> None:
    """Append a new vocabulary to a base tokenizer; base ids never change."""
    check_output_dir(out)  # refuse a bad --out before the work, not after it (llmprep.store)
    from llmprep.vocab.merge import merge_vocab
    click.echo(merge_vocab(base, add, out, keep_script=keep_script).summary())


@vocab.command("compare")
@click.option("--tokenizers", "tokenizers_", multiple=True, required=True,
              help="Tokenizers to compare (repeat the flag, or give several after it).")
@click.option("--corpus", multiple=True, required=True, help="Text file or folder (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows instead of a table.")
@click.argument("more", nargs=-1)
@user_errors
def compare_cmd(tokenizers_, corpus, as_json, more) -> None:
    """Tokens per character, byte fallback, unknowns, round trips and speed per tokenizer."""
    from llmprep.vocab.compare import compare, render_table
    from llmprep.vocab.corpus import read_lines
    rows = compare([*tokenizers_, *more], read_lines(corpus))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False))
    else:
        click.echo(render_table(rows))


@vocab.command("prune")
@click.option("--model", "model_path", required=True, help="Model directory (config + safetensors) or .gguf.")
@click.option("--tokenizer", required=True, help="The model's tokenizer directory or 'smollm2'.")
@click.option("--corpus", multiple=True, required=True, help="Text file or folder (repeatable).")
@click.option("--out", required=True, help="Output directory (model + tokenizer).")
@click.option("--min-count", type=int, default=1, show_default=True,
              help="Drop tokens the corpus uses fewer times (the corpus then encodes differently).")
@user_errors
def prune_cmd(model_path, tokenizer, corpus, out, min_count) -> None:
    """Cut tokenizer and model down to the tokens a corpus uses plus specials."""
    check_output_dir(out)  # refuse a bad --out before the work, not after it (llmprep.store)
    from llmprep.vocab.prune import prune
    click.echo(prune(model_path, tokenizer, corpus, out, min_count=min_count).summary())

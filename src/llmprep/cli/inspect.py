"""`llmprep inspect`: tokens of a text, or the first rows of a prepared dataset with trained tokens marked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from llmprep.constants import DEFAULT_TOKENIZER


@click.command("inspect")
@click.argument("args", nargs=-1, required=True)
@click.option("--tokenizer", default=None, help=f"Tokenizer (default: the dataset's, else {DEFAULT_TOKENIZER}).")
@click.option("--n", "n", type=int, default=3, show_default=True, help="Rows to show from a dataset.")
@click.option("--split", default="train", show_default=True, help="Dataset split to show.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (text mode).")
def inspect_cmd(args, tokenizer, n, split, as_json) -> None:
    """Show "TEXT" ["SECOND TEXT"] as tokens, or the first rows of DATA (a prepared dataset dir).

    \b
    llmprep inspect --tokenizer smollm2 "Hello world"
    llmprep inspect --tokenizer bert_dir "first sentence" "second sentence"
    llmprep inspect out/demo --n 3
    """
    from llmprep.tokenizer import load_lite_tokenizer

    if len(args) == 1 and Path(args[0]).is_dir():
        _inspect_data(args[0], tokenizer, n, split)
        return
    if len(args) > 2:
        raise click.UsageError(f"expected 1 or 2 texts (a sentence pair), got {len(args)}")
    from llmprep.inspect import describe_text

    tok = load_lite_tokenizer(tokenizer or DEFAULT_TOKENIZER)
    info = describe_text(tok, args[0], args[1] if len(args) == 2 else None)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    click.echo(f"input_ids ({len(info['input_ids'])}): {info['input_ids']}")
    click.echo(f"tokens: {info['tokens']}")
    if "token_type_ids" in info:
        click.echo(f"token_type_ids: {info['token_type_ids']}")
    click.echo(f"decode: {info['decoded']!r}")
    click.echo(f"decode(skip_special_tokens=True): {info['decoded_skip_special']!r}")
    click.echo("special tokens: " + ", ".join(f"{k}={v!r} ({info['special_token_ids'].get(k)})"
                                              for k, v in info["special_tokens"].items()))


def _inspect_data(path: str, tokenizer: str | None, n: int, split: str) -> None:
    from rich.console import Console

    from llmprep.inspect import load_rows, mark_trained
    from llmprep.tokenizer import load_lite_tokenizer

    report = Path(path) / "report.json"
    name = tokenizer
    if name is None and report.exists():
        name = json.loads(report.read_text(encoding="utf-8")).get("tokenizer", {}).get("name")
    tok = load_lite_tokenizer(name or DEFAULT_TOKENIZER)
    try:
        rows = load_rows(path, split, n)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from exc
    color = sys.stdout.isatty()
    console = Console(highlight=False)
    for i, row in enumerate(rows):
        labels = row.get("labels") if isinstance(row.get("labels"), list) else None
        trained = sum(1 for x in labels or [] if x != -100)
        header = f"--- {split}[{i}]: {len(row['input_ids'])} tokens, {trained} trained"
        if "seq_lengths" in row:
            header += f", packed examples {row['seq_lengths']}"
        text = mark_trained(tok, row["input_ids"], labels, color=color)
        if color:
            console.print(header, style="bold")
            console.print(text)
        else:
            click.echo(header + (" (trained tokens inside [[ ]])" if labels else ""))
            click.echo(text)

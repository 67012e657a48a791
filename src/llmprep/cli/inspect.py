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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (text and chat-file modes).")
@click.option("--template", default="auto", show_default=True, help="Chat-file mode: the chat template.")
@click.option("--history", type=click.Choice(["full", "per-turn", "last"]), default="full", show_default=True,
              help="Chat-file mode: rows as `prepare --history` makes them.")
def inspect_cmd(args, tokenizer, n, split, as_json, template, history) -> None:
    """Show "TEXT" ["SECOND TEXT"] as tokens, the first rows of DATA (a prepared dataset dir), or the first
    records of a chat FILE (.jsonl/.json) laid out as `prepare` would, field by field.

    \b
    llmprep inspect --tokenizer smollm2 "Hello world"
    llmprep inspect --tokenizer bert_dir "first sentence" "second sentence"
    llmprep inspect out/demo --n 3
    llmprep inspect chats.jsonl --n 2 --history per-turn
    """
    from llmprep.records import file_kind
    from llmprep.tokenizer import load_lite_tokenizer

    if len(args) == 1 and Path(args[0]).is_dir():
        _inspect_data(args[0], tokenizer, n, split)
        return
    if len(args) == 1 and Path(args[0]).is_file() and file_kind(Path(args[0])) in (".jsonl", ".json"):
        _inspect_records(args[0], load_lite_tokenizer(tokenizer or DEFAULT_TOKENIZER), n, template, history, as_json)
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
        _echo_runs(console, tok, row["input_ids"], labels, color)


def _echo_runs(console, tok, ids, labels, color: bool) -> None:
    """One line per trained run: its length, what it holds (reasoning, a tool call) and its start."""
    from llmprep.inspect import trained_runs

    for k, run in enumerate(trained_runs(tok, ids, labels) if labels else []):
        holds = f" [{', '.join(run['holds'])}]" if run["holds"] else ""
        line = f"  trained run {k + 1}: {run['tokens']} tokens{holds}: {run['text'][:70]!r}"
        console.print(line, markup=False, highlight=False) if color else click.echo(line)


def _inspect_records(path: str, tok, n: int, template: str, history: str, as_json: bool) -> None:
    """Chat-file mode: each record rendered and labelled as prepare would, with a table of its fields."""
    from rich.console import Console

    from llmprep.inspect import mark_trained, record_rows

    rows = record_rows(path, tok, template=template, n=n, history=history)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    color = sys.stdout.isatty()
    console = Console(highlight=False)
    for row in rows:
        if "rejected" in row:
            click.echo(f"--- {row['where']}: rejected: {row['rejected']}")
            continue
        trained = sum(1 for x in row["labels"] if x != -100)
        header = f"--- {row['where']}: {len(row['ids'])} tokens, {trained} trained"
        if row["stop"] is False:
            header += ", NO trained end-of-turn token after the last reply (--add-eos)"
        text = mark_trained(tok, row["ids"], row["labels"], color=color)
        if color:
            console.print(header, style="bold")
            console.print(text)
        else:
            click.echo(header + " (trained tokens inside [[ ]])")
            click.echo(text)
        for f in row["fields"]:
            click.echo(f"  [{f['message']}] {f['role']:9s} {f['field']:40s} trained: {f['trained']:6s} "
                       f"{f['text'][:50]!r}")
        if row["missing"]:
            click.echo("  not printed by the template: " + ", ".join(row["missing"]))

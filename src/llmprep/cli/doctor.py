"""`llmprep doctor`: check tokenizer, template, model and data together before training."""

from __future__ import annotations

import json

import click

from llmprep.constants import DEFAULT_MAX_LENGTH


def recorded_tokenizer(directory: str) -> str | None:
    """The --tokenizer a prepared directory was made with, from its report.json (None if unknown)."""
    from pathlib import Path

    path = Path(directory) / "report.json"
    if not path.is_file():
        return None
    from llmprep.checks.prepared import tokenizer_entry

    return tokenizer_entry(json.loads(path.read_text(encoding="utf-8"))).get("name")


@click.command("doctor")
@click.argument("data", nargs=-1)
@click.option("--tokenizer", default=None,
              help="Tokenizer (as in prepare). Default: the one a prepared DATA directory was made with, else smollm2.")
@click.option("--model", default=None, help="'smollm2', a model directory or a .gguf file: enables the model checks.")
@click.option("--template", default="auto", show_default=True,
              help="'auto' (the tokenizer's chat template), a built-in name, or a .jinja file.")
@click.option("--max-length", type=int, default=DEFAULT_MAX_LENGTH, show_default=True,
              help="Raw DATA is prepared in memory with this --max-length first.")
@click.option("--test-size", default="0", show_default=True, help="Raw DATA: test split as in prepare (for leakage).")
@click.option("--seed", type=int, default=42, show_default=True, help="Raw DATA: seed of the test split.")
@click.option("--json", "as_json", is_flag=True, help='Print {"findings": [{id, severity, message, where, fix}, ...]}.')
@click.option("--list", "list_checks", is_flag=True, help="List every check id with what it catches, and exit.")
@click.pass_context
def doctor_cmd(ctx, data, tokenizer, model, template, max_length, test_size, seed, as_json, list_checks) -> None:
    """Check a fine-tuning setup: tokenizer, template, model (--model) and DATA (raw files, or a directory
    written by `llmprep prepare`). Exit status: 0 clean, 1 warnings, 2 errors.

    Example: llmprep doctor --tokenizer smollm2 --model smollm2 chats.jsonl
    """
    from llmprep.checks import CHECKS, IDS
    from llmprep.checks.doctor import doctor, is_prepared
    from llmprep.cli.prepare import parse_test_size
    from llmprep.constants import DEFAULT_TOKENIZER

    if list_checks:
        for i in IDS:
            click.echo(f"{i:22} {'(needs --model) ' if CHECKS[i].needs_model else ''}{CHECKS[i].summary}")
        return
    if tokenizer is None:
        tokenizer = (recorded_tokenizer(data[0]) if len(data) == 1 and is_prepared(data[0]) else None) \
            or DEFAULT_TOKENIZER
    report = doctor(tokenizer, model=model, template=template, data=data, max_length=max_length,
                    test_size=parse_test_size(test_size), seed=seed)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print_report(report)
    ctx.exit(report.exit_code)


def print_report(report) -> None:
    """Findings, most severe first: severity, id, what; then where and how to fix."""
    colors = {"error": "red", "warning": "yellow", "info": "blue"}
    for f in report.findings:
        click.echo(click.style(f"{f.severity:8}", fg=colors[f.severity], bold=True) + f"{f.id}: {f.message}")
        click.echo(f"{'':8}where: {f.where}")
        click.echo(f"{'':8}fix:   {f.fix}")
    for check_id, why in report.skipped.items():
        click.echo(click.style(f"{'skipped':8}{check_id}: {why}", dim=True))
    n = {s: sum(f.severity == s for f in report.findings) for s in ("error", "warning", "info")}
    click.echo(f"{n['error']} error(s), {n['warning']} warning(s), {n['info']} info; "
               f"{len(report.skipped)} check(s) did not apply")

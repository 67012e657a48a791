"""`llmprep report DIR`: (re)build DIR/report.html from a directory written by `llmprep prepare`."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--tokenizer", default=None,
              help="Decodes the sample rows; default: the tokenizer named in DIR/report.json.")
def report_cmd(directory, tokenizer) -> None:
    """Write DIR/report.html: counts, length histograms, trained tokens, truncation, packing, rejects,
    duplicates, the doctor's findings and sample rows with trained tokens highlighted.

    Example: llmprep report data/sft
    """
    from pathlib import Path

    from llmprep.cli.doctor import recorded_tokenizer
    from llmprep.errors import ConfigError
    from llmprep.report import write_report_html
    from llmprep.tokenizer import load_tokenizer

    if not (Path(directory) / "report.json").is_file():
        raise ConfigError(f"DIR {directory!r}: no report.json; expected a directory written by `llmprep prepare`")
    name = tokenizer or recorded_tokenizer(directory)
    try:
        tok = load_tokenizer(name)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the sample rows are decoded with it; pass --tokenizer)") from exc
    click.echo(str(write_report_html(directory, tok)))

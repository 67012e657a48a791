"""`llmprep inspect` (being written)."""

import click


@click.command("inspect")
def inspect_cmd() -> None:
    """Inspect tokens."""
    raise click.ClickException("not implemented yet")

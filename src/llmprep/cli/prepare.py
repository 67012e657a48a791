"""`llmprep prepare`: records to training-ready token datasets (being written)."""

import click


@click.command("prepare")
def prepare_cmd() -> None:
    """Prepare a dataset."""
    raise click.ClickException("not implemented yet")

"""`llmprep vocab ...`: train, merge, compare and prune vocabularies."""

import click


@click.group()
def vocab() -> None:
    """Vocabulary tooling: train, merge, compare, prune."""

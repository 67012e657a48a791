"""`llmprep model ...`: model surgery that follows a tokenizer change."""

import click


@click.group()
def model() -> None:
    """Model tooling: resize embeddings to a tokenizer."""

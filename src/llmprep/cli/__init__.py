"""The `llmprep` command line: a thin click group over the Python API."""

from __future__ import annotations

import click

from llmprep.cli.inspect import inspect_cmd
from llmprep.cli.model import model
from llmprep.cli.prepare import prepare_cmd
from llmprep.cli.vocab import vocab


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmprep")
def main() -> None:
    """llmprep: raw records to correct, training-ready tokens."""


main.add_command(prepare_cmd)
main.add_command(inspect_cmd)
main.add_command(vocab)
main.add_command(model)

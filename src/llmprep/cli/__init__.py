"""The `llmprep` command line: a thin click group over the Python API."""

from __future__ import annotations

import click

from llmprep.cli.cache import cache
from llmprep.cli.doctor import doctor_cmd
from llmprep.cli.generate import generate_cmd
from llmprep.cli.inspect import inspect_cmd
from llmprep.cli.model import model
from llmprep.cli.prepare import prepare_cmd
from llmprep.cli.render import render_cmd
from llmprep.cli.report import report_cmd
from llmprep.cli.train import train_cmd
from llmprep.cli.vocab import vocab


class Group(click.Group):
    """Turns llmprep's user-facing errors into one clean line (no traceback), exit status 1."""

    def invoke(self, ctx: click.Context):
        from llmprep.errors import LlmprepError

        try:
            return super().invoke(ctx)
        except LlmprepError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT
            click.echo("Aborted!", err=True)
            ctx.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmprep")
def main() -> None:
    """llmprep: raw records to correct, training-ready tokens."""


main.add_command(prepare_cmd)
main.add_command(inspect_cmd)
main.add_command(render_cmd)
main.add_command(generate_cmd)
main.add_command(train_cmd)
main.add_command(vocab)
main.add_command(model)
main.add_command(cache)
main.add_command(doctor_cmd)
main.add_command(report_cmd)

"""The `llmprep` command line: a thin click group over the Python API."""

from __future__ import annotations

import errno
import os
import signal
import threading

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


class Terminated(BaseException):
    """SIGTERM in the llmprep process: unwinds like Ctrl-C, so temp dirs are removed on the way out."""


class Group(click.Group):
    """No user-facing path prints a Python traceback.

    - llmprep's own errors (LlmprepError): one line, exit status 1;
    - an OSError (a path that can't be read or written): "PATH: cause", exit status 1;
    - Ctrl-C: "Aborted!", exit status 130; SIGTERM: "Terminated", exit status 143 (both after the
      `finally`/`except` blocks on the way out removed any half-written output);
    - anything else (a bug): one line naming the exception and how to see the traceback
      (LLMPREP_DEBUG=1, which also lets every error above raise as is).
    """

    def invoke(self, ctx: click.Context):
        from llmprep.errors import LlmprepError

        if os.environ.get("LLMPREP_DEBUG"):
            return super().invoke(ctx)
        restore = _catch_sigterm()
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except LlmprepError as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("Aborted!", err=True)
            ctx.exit(130)
        except Terminated:
            click.echo("Terminated", err=True)
            ctx.exit(143)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # `llmprep ... | head`: click's own handler exits quietly
                raise
            raise click.ClickException(describe_os_error(exc)) from exc
        except MemoryError as exc:
            raise click.ClickException("out of memory; lower --num-proc or --max-record-bytes, or split the input"
                                       ) from exc
        except Exception as exc:
            raise click.ClickException(f"unexpected {type(exc).__name__}: {exc} (this is a bug in llmprep; rerun "
                                       "with LLMPREP_DEBUG=1 to see the traceback, and please report it)") from exc
        finally:
            restore()


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError. Example: FileNotFoundError(2, "No such file or directory", "x.txt")
    -> "x.txt: No such file or directory" """
    cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return cause
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
    return f"{where if len(where) <= 300 else where[:300] + '...'}: {cause}"  # ENAMETOOLONG's names are long


def _catch_sigterm():
    """Turn SIGTERM into Terminated in this process (main thread only); -> a function restoring it.

    A worker process forked while the handler is set gets SIGTERM's default action back: the pool's
    terminate() must still end it at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    me = os.getpid()

    def handler(signum, frame):
        if os.getpid() != me:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


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

"""The ``salt`` command line: a thin typed layer over the library functions.

The one entry point that sees both sides of the project: it trains (``trainer``) and, for ``salt
serve``, starts the selector service as its own process (``python -m selector_service``), never by
import. Every subcommand turns a ``SaltError`` into one line on stderr and exit status 1.
"""

from __future__ import annotations

import signal
import sys

import typer

from trainer.cli import data, experiments, service, train

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Small-model-aided LLM training.")
app.command()(data.prepare)
app.command()(data.presets)
app.command()(train.train)
app.command()(service.serve)
app.command()(experiments.demo)
app.command()(experiments.experiment)
app.command()(experiments.ablations)
app.command()(experiments.report)
app.command()(service.score)
app.command("select")(service.select)
app.command()(service.export)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``salt`` console script (and of ``python -m trainer``).

    SIGTERM (``kill``, ``docker stop``) unwinds like an exception, so the selector service that
    ``salt experiment`` and ``salt demo`` start as a child process is stopped with its parent.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app(args=argv if argv is not None else sys.argv[1:], prog_name="salt")

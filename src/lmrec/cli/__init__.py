"""The ``lmrec`` command line. Each area registers its commands from its own module.

The CLI calls the same functions as the Python API (LensKit's habit): nothing here is logic.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from lmrec.errors import LmrecError

app = typer.Typer(
    name="lmrec",
    help="Recommenders with pretrained language models beside collaborative filtering.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: modules under lmrec.cli that define ``register(app)``
_AREAS = ("datasets", "experiment", "quickstart", "tune", "text", "serve", "score", "rl", "federate")


def _register_all() -> None:
    for area in _AREAS:
        try:
            mod = importlib.import_module(f"lmrec.cli.{area}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lmrec.cli.{area}":
                continue
            raise
        mod.register(app)


def _print_version(value: bool) -> None:
    if value:
        from lmrec import __version__

        typer.echo(f"lmrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the lmrec version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    # no docstring: the app's help stays the one given to typer.Typer above
    pass


_register_all()


def _reflow() -> None:
    from lmrec.cli._common import reflow_help

    reflow_help(app)


_reflow()


def main() -> None:
    try:
        app()
    except LmrecError as exc:
        from lmrec.cli._common import EXIT_ERROR, print_error

        print_error(exc)
        sys.exit(EXIT_ERROR)


__all__ = ["app", "main"]

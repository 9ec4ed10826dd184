"""The ``lmrec`` command line. Each area registers its commands from its own module.

The CLI calls the same functions as the Python API (LensKit's habit): nothing here is logic.
"""

from __future__ import annotations

import importlib
import sys

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
_AREAS = ("datasets", "experiment", "tune", "text", "serve")


def _register_all() -> None:
    for area in _AREAS:
        try:
            mod = importlib.import_module(f"lmrec.cli.{area}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lmrec.cli.{area}":
                continue
            raise
        mod.register(app)


_register_all()


def main() -> None:
    try:
        app()
    except LmrecError as exc:
        from lmrec.cli._common import EXIT_ERROR, print_error

        print_error(exc)
        sys.exit(EXIT_ERROR)


__all__ = ["app", "main"]

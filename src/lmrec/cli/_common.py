"""What every ``lmrec`` command shares: where output goes, and how an error is reported.

An :class:`~lmrec.errors.LmrecError` is a user's problem (a missing file, a bad option, an unknown
id) and its message already names what is wrong, so the CLI prints it as one line on stderr and
exits with :data:`EXIT_ERROR`, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from lmrec.errors import LmrecError

#: exit status for an :class:`LmrecError` (typer uses 2 for bad usage too)
EXIT_ERROR = 2


def stdout_console() -> Console:
    """A console on the current stdout; create one per command (typer's CliRunner swaps stdout)."""
    return Console(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def parse_value(text: str) -> Any:
    """A ``--set``/``--fix`` value: JSON when it parses (numbers, lists, true), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def print_error(exc: BaseException) -> None:
    """``error: <message>`` on stderr, on one line."""
    # escape: DataError messages start with "[file ..., column ...]", which rich would take for markup
    stderr_console().print(f"[bold red]error:[/] {escape(str(exc))}")


@contextmanager
def errors() -> Iterator[None]:
    """Report an :class:`LmrecError` raised inside as one line and exit with :data:`EXIT_ERROR`.

    ``lmrec.cli.main`` does the same for the whole app; this makes a command behave so also when
    ``lmrec.cli.app`` is invoked directly (tests, embedding).
    """
    try:
        yield
    except LmrecError as exc:
        print_error(exc)
        raise typer.Exit(code=EXIT_ERROR) from None


__all__ = ["EXIT_ERROR", "errors", "parse_value", "print_error", "stderr_console", "stdout_console"]

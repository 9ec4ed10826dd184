"""What every ``lmrec`` command shares: where output goes, and how an error is reported.

An :class:`~lmrec.errors.LmrecError` is a user's problem (a missing file, a bad option, an unknown
id) and its message already names what is wrong, so the CLI prints it as one line on stderr and
exits with :data:`EXIT_ERROR`, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from lmrec.errors import LmrecError

P = ParamSpec("P")
R = TypeVar("R")

#: exit status for an :class:`LmrecError` (typer uses 2 for bad usage too)
EXIT_ERROR = 2


def stdout_console() -> Console:
    """A console on the current stdout; create one per command (typer's CliRunner swaps stdout)."""
    return Console(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_report(
    report: dict[str, Any], title: str, json_out: bool, rows: dict[str, str] | None = None
) -> Console | None:
    """A command's report: JSON on stdout with ``json_out``, else a two-column rich table of
    ``rows`` (default: every entry as text). Returns the console the table went to (None for JSON),
    for lines printed after it."""
    console = stdout_console()
    if json_out:
        console.print_json(json.dumps(report))
        return None
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for k, v in (rows if rows is not None else {k: str(v) for k, v in report.items()}).items():
        table.add_row(k, escape(v))
    console.print(table)
    return console


def parse_value(text: str) -> Any:
    """A ``--set``/``--fix`` value: JSON when it parses (numbers, lists, true), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def print_error(exc: BaseException) -> None:
    """``error: <message>`` on stderr, on one line (line breaks inside the message are folded)."""
    # escape: DataError messages start with "[file ..., column ...]", which rich would take for markup
    message = " ".join(str(exc).split())
    stderr_console().print(f"[bold red]error:[/] {escape(message)}")


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


def with_errors(command: Callable[P, R]) -> Callable[P, R]:
    """``command`` run inside :func:`errors` (typer reads the signature through ``__wrapped__``)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with errors():
            return command(*args, **kwargs)

    return run


def reflow_help(app: typer.Typer) -> None:
    """Give every command of ``app`` (and of its groups) help read from its docstring, reflowed.

    Typer's rich help keeps a docstring's single line breaks, so text wrapped at 100 columns in the
    source breaks mid-sentence on an 80-column terminal; each paragraph becomes one line here and
    rich wraps it to the terminal. Square brackets are escaped: ``[evaluation]`` is not markup.
    """
    for info in app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = command_help(info.callback.__doc__)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


def command_help(doc: str) -> str:
    """A docstring as help text: paragraphs on one line each, rich markup escaped."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return escape("\n\n".join(" ".join(p.split()) for p in paragraphs))


__all__ = [
    "EXIT_ERROR",
    "command_help",
    "errors",
    "parse_value",
    "print_error",
    "reflow_help",
    "stderr_console",
    "stdout_console",
    "with_errors",
]

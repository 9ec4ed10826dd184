"""``lmrec score-all``: offline top-k for every user, sharded across Dask workers
(a thin wrapper over :func:`lmrec.serving.score_all.score_all`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lmrec.cli._common import stderr_console, stdout_console, with_errors


def score_all_cmd(
    artifact: Annotated[
        Path,
        typer.Argument(help="Folder written by `lmrec train` / model.save().", exists=True, file_okay=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (Parquet parts + _manifest.json).")],
    k: Annotated[int, typer.Option("-k", min=1, help="Items per user.")] = 10,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Local worker processes (without --scheduler).")
    ] = 2,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="ADDRESS",
            help="A running Dask scheduler (tcp://host:8786); its workers must see ARTIFACT and --out.",
        ),
    ] = None,
    users_per_part: Annotated[
        int | None,
        typer.Option("--users-per-part", min=1, help="Users per task (default: 4 parts per worker)."),
    ] = None,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="Keep each user's training items in the ranking.")
    ] = False,
) -> None:
    """Top-k for every known user of a saved model, written as Parquet parts by Dask workers.

    One machine: --workers N starts a local cluster. Many machines: start `dask scheduler` on one
    and `dask worker tcp://HOST:8786` on each, then pass --scheduler tcp://HOST:8786 (the artifact
    and --out must be on a shared file system). The output appears whole or not at all.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lmrec.serving.score_all import score_all

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} parts"),
    )
    with Progress(*columns, TimeElapsedColumn(), transient=True, console=stderr_console()) as bar:
        task = bar.add_task("scoring", total=None)
        summary = score_all(
            artifact,
            out,
            k=k,
            workers=workers,
            scheduler=scheduler,
            users_per_part=users_per_part,
            exclude_seen=not include_seen,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    stdout_console().print(
        escape(
            f"wrote top-{summary.k} for {summary.n_users:,} users ({summary.n_rows:,} rows, "
            f"{summary.n_parts} parts) to {summary.out} with {summary.n_workers} workers "
            f"in {summary.seconds:.1f} s"
        )
    )


def register(app: typer.Typer) -> None:
    app.command("score-all")(with_errors(score_all_cmd))


__all__ = ["register", "score_all_cmd"]

"""``lmrec datasets``: list, inspect, download and verify datasets; add your own.

Thin wrappers over :mod:`lmrec.data.loaders` (the CLI holds no logic of its own). ``--data-dir``
overrides ``$LMREC_DATA_HOME``; errors print one line naming the file and exit with status 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lmrec.cli._common import errors, stderr_console, stdout_console
from lmrec.data.dataset import Dataset
from lmrec.data.loaders import (
    data_home,
    dataset_dir,
    dataset_info,
    download_dataset,
    is_present,
    list_datasets,
    load_dataset,
    local_status,
    verify_dataset,
)
from lmrec.data.loaders.own import add_dataset, remove_dataset
from lmrec.errors import LmrecError

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Dataset home folder (overrides LMREC_DATA_HOME; default ~/.cache/lmrec/data)."
    ),
]
Name = Annotated[str, typer.Argument(help="Dataset name, e.g. ml-100k (see `lmrec datasets list`).")]

_STATUS_STYLE = {"verified": "green", "unpinned": "cyan", "present": "yellow", "missing": "dim"}
_TEXT_COLUMNS = ("title", "description", "genres", "categories", "brand", "tags")


def list_command(
    data_dir: DataDir = None,
    local: Annotated[bool, typer.Option("--local", help="Only datasets with a local copy.")] = False,
    family: Annotated[
        str | None,
        typer.Option("--family", help="Only one family: movielens, amazon, amazon-2014, lastfm ..."),
    ] = None,
) -> None:
    """Show every registered dataset with its size and local status."""
    with errors():
        home = data_home(data_dir)
        table = Table(title=escape(f"datasets (home: {home})"), title_justify="left")
        for col in ("name", "description", "size", "local"):
            table.add_column(col, overflow="fold")
        shown = 0
        for name in list_datasets(family, data_dir):
            status = local_status(name, data_dir)
            if local and status == "missing":
                continue
            spec = dataset_info(name, data_dir)
            table.add_row(
                escape(name),
                escape(spec.description),
                escape(spec.size),
                f"[{_STATUS_STYLE[status]}]{status}[/]",
            )
            shown += 1
        out = stdout_console()
        out.print(table)
        out.print(
            f"{shown} dataset(s). 'present' copies are verified on first load; `lmrec datasets verify NAME` checks now."
        )


def _summary(ds: Dataset) -> dict[str, Any]:
    inter = ds.interactions
    pairs = inter.select("user_idx", "item_idx").unique().height
    density = pairs / (ds.n_users * ds.n_items) if ds.n_users and ds.n_items else 0.0
    text_cols = [c for c in _TEXT_COLUMNS if ds.items is not None and c in ds.items.columns]
    ts = inter["timestamp"]
    return {
        "name": ds.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "density": density,
        "rated": "rating" in inter.columns,
        "timestamps": bool(ts.n_unique() > 1),
        "item_text_columns": text_cols,
        "user_profiles": ds.users is not None and "profile" in ds.users.columns,
        "reviews": ds.reviews.height if ds.reviews is not None else 0,
        "tags": ds.tags.height if ds.tags is not None else 0,
        "item_images": ds.images.report() if ds.images is not None else None,
        "checksums": ds.meta.get("checksums", {}),
        "source": ds.meta.get("source"),
        "notes": ds.meta.get("notes", []),
    }


def info_command(
    name: Name,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Counts (users, items, interactions, density), side data and checksums of a dataset."""
    with errors():
        spec = dataset_info(name, data_dir)
        out = stdout_console()
        present = is_present(name, data_dir)
        summary: dict[str, Any] = {
            "name": name,
            "local": local_status(name, data_dir),
            "folder": str(dataset_dir(name, data_dir)),
        }
        if present:
            summary.update(_summary(load_dataset(name, data_dir, download=False)))
        summary["official"] = dict(spec.stats)
        summary["archives"] = [
            {"url": a.url, "checksum": a.checksum, "confirmed": a.checksum_note} for a in spec.archives
        ]
        if spec.local_only:
            summary["local_only"] = spec.local_only
        if as_json:
            out.print_json(json.dumps(summary, default=str))
            return
        table = Table(title=escape(f"{name}: {spec.description}"), title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("folder", escape(f"{summary['folder']} ({summary['local']})"))
        if present:
            table.add_row("users", f"{summary['users']:,}")
            table.add_row("items", f"{summary['items']:,}")
            table.add_row("interactions", f"{summary['interactions']:,}")
            table.add_row("density", f"{summary['density']:.4%}")
            table.add_row("ratings", "yes" if summary["rated"] else "no")
            table.add_row("timestamps", "yes" if summary["timestamps"] else "no (all equal)")
            table.add_row("item text", ", ".join(summary["item_text_columns"]) or "none")
            table.add_row("user profiles", "yes" if summary["user_profiles"] else "no")
            table.add_row("reviews", f"{summary['reviews']:,}" if summary["reviews"] else "none")
            table.add_row("tags", f"{summary['tags']:,}" if summary["tags"] else "none")
            if summary["item_images"] is not None:
                pics = summary["item_images"]
                problems = ", ".join(f"{len(v)} {k}" for k, v in pics["problems"].items())
                table.add_row(
                    "item pictures",
                    f"{pics['items_with_image']:,} ({pics['kind']})" + (f"; {problems}" if problems else ""),
                )
            for fname, digest in summary["checksums"].items():
                table.add_row(escape(f"  {fname}"), digest)
            for note in summary["notes"]:
                table.add_row("note", escape(note))
        elif spec.local_only:
            table.add_row(
                "status",
                escape(f"missing; not downloadable, put the files in the folder ({spec.local_only})"),
            )
        else:
            table.add_row("status", f"not downloaded: `lmrec datasets download {name}`")
        if spec.stats:
            table.add_row("official counts", ", ".join(f"{k} {v:,}" for k, v in spec.stats.items()))
        for a in spec.archives:
            table.add_row("source", escape(f"{a.url} (checksum {a.checksum or 'not confirmed'})"))
        if spec.local_only:
            table.add_row("source", escape(f"local copy only: {spec.local_only}"))
        if spec.license:
            table.add_row("license", escape(spec.license))
        out.print(table)


def download_command(
    name: Name,
    data_dir: DataDir = None,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="Accept archives that have no confirmed checksum (a pinned one is always checked).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing local copy.")] = False,
) -> None:
    """Download a dataset from its official source (skipped when a verified copy exists)."""
    with errors():
        existed = is_present(name, data_dir)
        folder = download_dataset(name, data_dir, allow_unverified=no_verify, force=force)
        out = stdout_console()
        if existed and not force:
            out.print(escape(f"{name}: verified local copy already at {folder} (nothing downloaded)"))
        else:
            out.print(escape(f"{name}: downloaded, verified and installed at {folder}"))


def verify_command(name: Name, data_dir: DataDir = None) -> None:
    """Re-hash every file of the local copy and compare with the pinned checksums."""
    with errors():
        report = verify_dataset(name, data_dir, full=True, raise_on_error=False)
        out = stdout_console()
        table = Table(title=escape(f"{name} at {report.folder}"), title_justify="left")
        for col in ("file", "status", "expected md5", "actual md5", "reference"):
            table.add_column(col, overflow="fold")
        style = {"ok": "green", "unpinned": "yellow", "mismatch": "bold red", "missing": "red"}
        for c in report.checks:
            if c.status == "missing" and not c.required:
                continue
            table.add_row(
                escape(c.name),
                f"[{style[c.status]}]{c.status}[/]",
                c.expected or "-",
                c.actual or "-",
                c.origin or "-",
            )
        out.print(table)
        report.raise_for_problems()
        n_ok = sum(c.status == "ok" for c in report.checks)
        n_unpinned = sum(c.status == "unpinned" for c in report.checks)
        out.print(f"{name}: OK ({n_ok} file(s) match their checksums, {n_unpinned} without a reference)")


def _pairs(text: str | None) -> dict[str, str]:
    """``user_id=customer,item_id=sku`` -> ``{"user_id": "customer", "item_id": "sku"}``."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = (p.strip() for p in part.partition("="))
        if not sep or not key or not value:
            raise LmrecError(f"--map expects NAME=COLUMN pairs separated by commas, got {part.strip()!r}")
        if key in out:
            raise LmrecError(f"--map names {key!r} twice")
        out[key] = value
    return out


def add_command(
    name: Annotated[str, typer.Argument(help="Name for the dataset, e.g. mydata.")],
    interactions: Annotated[
        Path,
        typer.Option(help="Events: user_id, item_id and optionally timestamp, rating, weight."),
    ],
    items: Annotated[Path | None, typer.Option(help="Item table: item_id, title, description ...")] = None,
    users: Annotated[Path | None, typer.Option(help="User table: user_id and any attributes.")] = None,
    reviews: Annotated[Path | None, typer.Option(help="Reviews: user_id, item_id, text.")] = None,
    map_: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="Column names: NAME=COLUMN,... e.g. user_id=customer,item_id=sku,timestamp=ts.",
        ),
    ] = None,
    text_columns: Annotated[
        str | None,
        typer.Option(help="Item columns the language models read, e.g. title,description."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of item pictures named <item_id>.jpg (.png, ...); missing or unreadable ones "
            "are reported by item id and skipped.",
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="One line shown by `datasets list`.")] = "",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Write here (default: the user data home, $LMREC_USER_DATA_HOME or "
            "~/.local/share/lmrec/datasets).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a dataset of that name.")] = False,
) -> None:
    """Add your own data as a named dataset (validated, copied, checksummed).

    The files are checked (ids, timestamps, ratings; every error names the file, the column and
    the row), copied into HOME/NAME/ with a manifest of their MD5s, and from then on NAME works
    like a built-in name: `datasets info`, `evaluate --dataset NAME`, `train`, `tune`.
    """
    with errors():
        cols = [c.strip() for c in (text_columns or "").split(",") if c.strip()]
        folder = add_dataset(
            name,
            interactions,
            items=items,
            users=users,
            reviews=reviews,
            columns=_pairs(map_),
            text_columns=cols,
            images=images,
            data_dir=data_dir,
            description=description,
            overwrite=force,
        )
        ds = load_dataset(name, data_dir, download=False)
        out = stdout_console()
        out.print(
            escape(
                f"{name}: {ds.n_interactions:,} interactions, {ds.n_users:,} users, {ds.n_items:,} items"
                + (f", {len(ds.images):,} item pictures" if ds.images is not None else "")
                + f"; copied with checksums to {folder}"
            )
        )
        out.print(escape(f"next: lmrec evaluate --dataset {name} --model popularity --model ease"))


def synth_command(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (created; files in it are replaced).")],
    interactions: Annotated[int, typer.Option(help="Interaction rows to generate.", min=1)] = 100_000,
    users: Annotated[
        int | None, typer.Option(help="Users (default: scaled from ml-20m, 144 interactions each).", min=1)
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Items (default: scaled from ml-20m with the square root).", min=2)
    ] = None,
    topics: Annotated[
        int, typer.Option(help="Latent topics the item text and user tastes share.", min=1)
    ] = 24,
    seed: Annotated[int, typer.Option(help="Random seed: same options, same files.")] = 0,
    chunk_rows: Annotated[
        int, typer.Option(help="Rows per written chunk (bounds memory).", min=1000)
    ] = 1_000_000,
    add: Annotated[
        str | None,
        typer.Option("--add", help="Also add the result as a named dataset (like `datasets add`)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="With --add: write the dataset here.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="With --add: replace a dataset of that name.")
    ] = False,
) -> None:
    """Generate a synthetic dataset of any size (streamed to Parquet) for cost and scale tests.

    Power-law item popularity and user activity, topic-based tastes, sessions with timestamps, and
    item text drawn from per-topic vocabularies (so text models have signal). Writes
    OUT/interactions.parquet, OUT/items.parquet and OUT/synthetic.json; load with
    lmrec.data.synthetic.load_synthetic(OUT) or add it with --add NAME.
    """
    from pydantic import ValidationError
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lmrec.data.synthetic import SyntheticConfig, generate
    from lmrec.models.registry import describe_validation_error

    with errors():
        try:
            config = SyntheticConfig(
                n_interactions=interactions,
                n_users=users,
                n_items=items,
                n_topics=topics,
                seed=seed,
                chunk_rows=chunk_rows,
            )
        except ValidationError as exc:
            raise LmrecError(f"synth: {describe_validation_error(exc)}") from None
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
        )
        with Progress(*columns, TimeElapsedColumn(), transient=True, console=stderr_console()) as bar:
            task = bar.add_task("generating", total=interactions)
            summary = generate(config, out, progress=lambda done, _total: bar.update(task, completed=done))
        console = stdout_console()
        console.print(
            escape(
                f"wrote {summary.n_interactions:,} interactions, {summary.n_users:,} users, "
                f"{summary.n_items:,} items to {summary.folder} in {summary.seconds:.1f} s"
            )
        )
        if add:
            add_dataset(
                add,
                summary.folder / "interactions.parquet",
                items=summary.folder / "items.parquet",
                data_dir=data_dir,
                description=f"synthetic, {summary.n_interactions:,} interactions, seed {seed}",
                overwrite=force,
            )
            console.print(
                escape(f"added as {add}: lmrec evaluate --dataset {add} --model popularity --model ease")
            )


def remove_command(name: Name, data_dir: DataDir = None) -> None:
    """Delete a dataset added with `lmrec datasets add` (never a built-in copy)."""
    with errors():
        folder = remove_dataset(name, data_dir)
        stdout_console().print(escape(f"{name}: removed {folder}"))


def build_app() -> typer.Typer:
    group = typer.Typer(
        name="datasets",
        help="List, inspect, download, verify and add datasets.",
        no_args_is_help=True,
        add_completion=False,
    )
    commands: dict[str, Callable[..., None]] = {
        "list": list_command,
        "info": info_command,
        "download": download_command,
        "verify": verify_command,
        "add": add_command,
        "synth": synth_command,
        "remove": remove_command,
    }
    for cmd_name, fn in commands.items():
        group.command(cmd_name)(fn)
    return group


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` command group to the top-level ``lmrec`` app."""
    app.add_typer(build_app(), name="datasets")


__all__ = ["build_app", "register"]

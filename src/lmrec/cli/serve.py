"""``lmrec serve`` and ``lmrec retrain``: thin wrappers over :mod:`lmrec.serving.server`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class IndexChoice(StrEnum):
    auto = "auto"
    exact = "exact"
    hnsw = "hnsw"
    ivf = "ivf"
    ivfpq = "ivfpq"


class PolicyChoice(StrEnum):
    none = "none"
    linucb = "linucb"
    thompson = "thompson"


class SyncChoice(StrEnum):
    FULL = "FULL"
    NORMAL = "NORMAL"


# help panels: each is its own table, so a long option name in one does not squeeze the others
_HTTP = "HTTP and auth"
_DATA = "Data"
_RANK = "Ranking"
_OPS = "Operations"


def serve(
    artifact_dir: Annotated[
        Path,
        typer.Argument(help="Folder written by `lmrec train` / model.save().", exists=True, file_okay=False),
    ],
    host: Annotated[
        str, typer.Option(help="Interface to bind (127.0.0.1 keeps it local).", rich_help_panel=_HTTP)
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port, 1-65535.", rich_help_panel=_HTTP)] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="LMREC_API_KEY",
            help="Key for the write endpoints (X-API-Key header).",
            show_default=False,
            rich_help_panel=_HTTP,
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve the write endpoints without a key (local use only).",
            rich_help_panel=_HTTP,
        ),
    ] = False,
    db: Annotated[
        Path | None,
        typer.Option(
            help="SQLite event log. Default: <artifact>.events.db beside the artifact.",
            show_default=False,
            rich_help_panel=_DATA,
        ),
    ] = None,
    catalogue: Annotated[
        Path | None,
        typer.Option(
            help="Item titles, tags and fields (parquet, csv or jsonl with item_id). Default: "
            "the artifact's catalog.parquet (written by `lmrec train`), else catalogue.parquet "
            "or a .csv/.jsonl of either name.",
            show_default=False,
            rich_help_panel=_DATA,
        ),
    ] = None,
    index: Annotated[
        IndexChoice,
        typer.Option(
            metavar="<kind>",
            help="ANN index for embedding models: auto, exact, hnsw, ivf or ivfpq (compressed, "
            "for millions of items).",
            rich_help_panel=_RANK,
        ),
    ] = IndexChoice.auto,
    ann_threshold: Annotated[
        int, typer.Option(help="Catalogue size from which auto uses HNSW.", rich_help_panel=_RANK)
    ] = 100_000,
    ivfpq_threshold: Annotated[
        int,
        typer.Option(help="Catalogue size from which auto uses IVF-PQ.", rich_help_panel=_RANK),
    ] = 2_000_000,
    policy: Annotated[
        PolicyChoice,
        typer.Option(
            metavar="<name>", help="Bandit re-ranking: none, linucb or thompson.", rich_help_panel=_RANK
        ),
    ] = PolicyChoice.linucb,
    rl_policy: Annotated[
        Path | None,
        typer.Option(
            help="A policy folder from `lmrec rl train`; requests may then ask for policy rl.",
            exists=True,
            file_okay=False,
            rich_help_panel=_RANK,
        ),
    ] = None,
    explore: Annotated[
        float,
        typer.Option(help="Exploration: LinUCB alpha / Thompson posterior scale.", rich_help_panel=_RANK),
    ] = 0.5,
    epsilon: Annotated[
        float,
        typer.Option(help="Uniform mixing when exploring (keeps propensities > 0).", rich_help_panel=_RANK),
    ] = 0.05,
    explore_by_default: Annotated[
        bool,
        typer.Option(
            "--explore-by-default", help="Explore when a request does not say.", rich_help_panel=_RANK
        ),
    ] = False,
    diversity: Annotated[
        float, typer.Option(help="Default MMR diversity, 0 (off) to 1.", rich_help_panel=_RANK)
    ] = 0.0,
    candidates: Annotated[
        int, typer.Option(help="Candidates re-ranked by the bandit / MMR.", rich_help_panel=_RANK)
    ] = 50,
    strict_ids: Annotated[
        bool,
        typer.Option(
            "--strict-ids",
            help="Unknown ids in /recommend are a 404. Default: an unknown user gets popular items, "
            "flagged; unknown item ids are left out with a warning.",
            rich_help_panel=_RANK,
        ),
    ] = False,
    sync: Annotated[
        SyncChoice,
        typer.Option(
            metavar="<mode>",
            help="SQLite synchronous mode, FULL or NORMAL: FULL survives power loss.",
            rich_help_panel=_OPS,
        ),
    ] = SyncChoice.FULL,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes, each with its own copy of the model, sharing the event log: "
            "one per core the server may use.",
            rich_help_panel=_OPS,
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.", rich_help_panel=_OPS)] = "info",
    no_access_log: Annotated[
        bool,
        typer.Option(
            "--no-access-log",
            help="No JSON line per request on stderr (logger lmrec.access).",
            rich_help_panel=_OPS,
        ),
    ] = False,
) -> None:
    """Serve a trained model over HTTP: the JSON API, its docs at /docs, a web page at /ui."""
    from lmrec.errors import LmrecError

    if not 1 <= port <= 65535:  # uvicorn would log the bad port and listen on another
        raise LmrecError(f"--port must be between 1 and 65535, got {port}")

    from lmrec.serving.config import ServingConfig
    from lmrec.serving.server import run

    config = ServingConfig(
        api_key=api_key or None,
        allow_no_api_key=no_auth,
        index=index.value,
        ann_threshold=ann_threshold,
        ivfpq_threshold=ivfpq_threshold,
        policy=policy.value,
        rl_policy=str(rl_policy) if rl_policy is not None else None,
        explore=explore,
        epsilon=epsilon,
        explore_by_default=explore_by_default,
        diversity=diversity,
        candidates=candidates,
        synchronous=sync.value,
        strict_ids=strict_ids,
        workers=workers,
    )
    run(
        artifact_dir,
        host=host,
        port=port,
        db=db,
        catalogue=catalogue,
        config=config,
        log_level=log_level,
        access_log=not no_access_log,
    )


def retrain(
    artifact_dir: Annotated[
        Path, typer.Argument(help="The served artifact directory.", exists=True, file_okay=False)
    ],
    db: Annotated[Path | None, typer.Option(help="Event log (default: <artifact>.events.db).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the new artifact here (default: replace in place).")
    ] = None,
    catalogue: Annotated[
        Path | None, typer.Option(help="Item metadata for the refit (default: the artifact's).")
    ] = None,
) -> None:
    """Refit the model on its training data plus the logged feedback events."""
    from lmrec.serving.server import retrain as do_retrain

    result = do_retrain(artifact_dir, db=db, out=out, catalogue=catalogue)
    typer.echo(json.dumps(result.as_dict(), indent=2))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("retrain")(retrain)


__all__ = ["register", "retrain", "serve"]

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


class PolicyChoice(StrEnum):
    none = "none"
    linucb = "linucb"
    thompson = "thompson"


class SyncChoice(StrEnum):
    FULL = "FULL"
    NORMAL = "NORMAL"


def serve(
    artifact_dir: Annotated[
        Path, typer.Argument(help="Directory written by Recommender.save().", exists=True, file_okay=False)
    ],
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1 keeps it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: Annotated[
        Path | None,
        typer.Option(help="SQLite event log (default: <artifact>.events.db beside the artifact)."),
    ] = None,
    catalogue: Annotated[
        Path | None,
        typer.Option(
            help="Item metadata (parquet/csv/jsonl with item_id); default: catalogue.* in the artifact."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="LMREC_API_KEY", help="Key for write endpoints (X-API-Key header).", show_default=False
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve write endpoints without a key (local development only).")
    ] = False,
    index: Annotated[IndexChoice, typer.Option(help="ANN index for embedding models.")] = IndexChoice.auto,
    ann_threshold: Annotated[int, typer.Option(help="Catalogue size from which 'auto' uses HNSW.")] = 100_000,
    policy: Annotated[PolicyChoice, typer.Option(help="Bandit re-ranking policy.")] = PolicyChoice.linucb,
    explore: Annotated[
        float, typer.Option(help="Exploration knob: LinUCB alpha / Thompson posterior scale.")
    ] = 0.5,
    epsilon: Annotated[
        float, typer.Option(help="Uniform mixing within exploration (keeps propensities > 0).")
    ] = 0.05,
    explore_by_default: Annotated[bool, typer.Option(help="Explore when a request does not say.")] = False,
    diversity: Annotated[float, typer.Option(help="Default MMR diversity, 0 (off) to 1.")] = 0.0,
    candidates: Annotated[int, typer.Option(help="Candidates re-ranked by the bandit / MMR.")] = 50,
    sync: Annotated[
        SyncChoice, typer.Option(help="SQLite synchronous mode: FULL survives power loss.")
    ] = SyncChoice.FULL,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve a trained model over HTTP (OpenAPI docs at /docs)."""
    from lmrec.serving.config import ServingConfig
    from lmrec.serving.server import run

    config = ServingConfig(
        api_key=api_key or None,
        allow_no_api_key=no_auth,
        index=index.value,
        ann_threshold=ann_threshold,
        policy=policy.value,
        explore=explore,
        epsilon=epsilon,
        explore_by_default=explore_by_default,
        diversity=diversity,
        candidates=candidates,
        synchronous=sync.value,
    )
    run(artifact_dir, host=host, port=port, db=db, catalogue=catalogue, config=config, log_level=log_level)


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

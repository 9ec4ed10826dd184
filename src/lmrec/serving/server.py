"""Running the server, and folding the event log back into a model (``lmrec retrain``).

The server keeps online feedback in memory (and in the log); it never refits. ``retrain`` is the
offline half: it rebuilds the training interactions from the artifact's stored histories, appends
every positive event logged since the artifact was made, fits a fresh model with the same class and
config, and swaps it into place atomically with a checkpoint (``serving.json``) recording the last
event it consumed. A server started on the new artifact replays only newer events.

Times: logged events keep the timestamps the event log holds for them (the client's, or when the
server received them). An artifact stores each user's training history in time order but not the
times themselves, so its rows get increasing stand-in timestamps that all fall before the earliest
logged event: the training history comes first, and the log's own times order the events.

What the artifact does not hold is not retrained on: review and user-tag side tables. To retrain with
those, fit in Python on your dataset plus :func:`events_frame` and save with :func:`save_with_checkpoint`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec._atomic import replace_dir
from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.events import Event
from lmrec.models.base import Recommender
from lmrec.serving.catalogue import CATALOGUE_FILES, catalogue_row, find_catalogue, read_catalogue
from lmrec.serving.config import CHECKPOINT_FILE, ServingConfig, default_db_path, read_checkpoint
from lmrec.serving.store import EventStore, open_store


def run(
    artifact_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    db: str | os.PathLike[str] | None = None,
    catalogue: str | os.PathLike[str] | None = None,
    config: ServingConfig | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Load the artifact and serve it with uvicorn: in this process, or in ``config.workers``
    worker processes that share the event log (:mod:`lmrec.serving.sync`).

    ``access_log``: one JSON line per request on stderr (:mod:`lmrec.serving.http`; uvicorn's own
    access log stays off)."""
    import uvicorn

    from lmrec.serving.app import create_app
    from lmrec.serving.config import configure_process
    from lmrec.serving.http import configure_access_log
    from lmrec.serving.state import ServingState

    if not 1 <= int(port) <= 65535:
        raise LmrecError(f"port must be between 1 and 65535, got {port}")
    config = config or ServingConfig()
    if config.workers > 1:
        _run_workers(artifact_dir, host, port, db, catalogue, config, log_level, access_log)
        return
    if access_log:
        configure_access_log()

    configure_process(config)
    state = ServingState.from_artifact(artifact_dir, db=db, config=config, catalogue=catalogue)
    try:
        app = create_app(state, owns_state=True)
    except BaseException:
        state.close()
        raise
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, workers=1)


def _run_workers(
    artifact_dir: str | os.PathLike[str],
    host: str,
    port: int,
    db: str | os.PathLike[str] | None,
    catalogue: str | os.PathLike[str] | None,
    config: ServingConfig,
    log_level: str,
    access_log: bool,
) -> None:
    """uvicorn's worker processes over :func:`lmrec.serving.app.create_app_from_env`: each reads the
    settings from ``LMREC_*`` variables and loads the model itself; their metrics meet in a
    ``PROMETHEUS_MULTIPROC_DIR`` made for this run (:mod:`lmrec.serving.metrics`)."""
    import uvicorn

    artifact = Path(artifact_dir).resolve()
    if not (artifact / "model.json").is_file():  # fail here once, not in every worker
        raise LmrecError(f"{artifact} is not a saved lmrec model (no model.json)")
    metrics_dir = tempfile.mkdtemp(prefix="lmrec-metrics-")
    env = {
        "LMREC_ARTIFACT": str(artifact),
        "LMREC_DB": str(Path(db).resolve() if db is not None else default_db_path(artifact)),
        "LMREC_CATALOGUE": str(Path(catalogue).resolve()) if catalogue is not None else "",
        "LMREC_SERVE_CONFIG": config.model_dump_json(),
        "LMREC_ACCESS_LOG": "1" if access_log else "",
        "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the workers inherit the environment
    try:
        uvicorn.run(
            "lmrec.serving.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            workers=config.workers,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(metrics_dir, ignore_errors=True)


def events_frame(store: EventStore, *, after: int = 0, upto: int | None = None) -> pl.DataFrame:
    """Positive logged events with ``after < id <= upto`` as an interactions frame
    (``user_id, item_id, timestamp, weight, event``), in log order."""
    kept = [ev for ev in store.events(after) if ev.positive and (upto is None or (ev.id or 0) <= upto)]
    return _events_to_frame(kept)


def _events_to_frame(
    events: list[Event],
    user_dtype: type[pl.DataType] | None = None,
    item_dtype: type[pl.DataType] | None = None,
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": pl.Series([ev.user_id for ev in events], dtype=user_dtype, strict=False),
            "item_id": pl.Series([ev.item_id for ev in events], dtype=item_dtype, strict=False),
            "timestamp": pl.Series([float(ev.timestamp) for ev in events], dtype=pl.Float64),
            "weight": pl.Series([ev.history_weight for ev in events], dtype=pl.Float32),
            "event": pl.Series([ev.event for ev in events], dtype=pl.Utf8),
            "id": pl.Series([ev.id for ev in events], dtype=pl.Int64),
        },
        strict=False,
    )


def _history_frame(model: Recommender, before: float | None = None) -> pl.DataFrame:
    """The artifact's stored training histories as interactions (external ids, time order kept).

    The artifact holds no times: rows get increasing stand-in timestamps in ``[0, before)`` (row
    numbers when ``before`` is None), so that they sort in stored order and before any logged event.
    """
    hist = model.history_frame().drop("position")
    return hist.with_columns(timestamp=pl.Series(_stand_in_times(hist.height, before)))


def _stand_in_times(n: int, before: float | None) -> np.ndarray:
    """``n`` increasing non-negative times: row numbers, squeezed into ``[0, before)`` when the
    earliest logged event is earlier than that (a positive ``before`` below ``n``)."""
    rows = np.arange(n, dtype=np.float64)
    if before is None or before <= 0 or before >= n:
        return rows
    return rows * (float(before) / n)


def _dtype(kind: str) -> type[pl.DataType]:
    return pl.Int64 if kind == "int" else pl.Utf8


@dataclass(frozen=True)
class RetrainResult:
    artifact: Path
    model: str
    events_folded: int
    events_upto: int
    n_users: int
    n_items: int
    n_interactions: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def retrain(
    artifact_dir: str | os.PathLike[str],
    *,
    db: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    catalogue: str | os.PathLike[str] | None = None,
) -> RetrainResult:
    """Refit the artifact's model on its training history plus the logged events; see module doc."""
    t0 = time.perf_counter()
    artifact = Path(artifact_dir)
    target = Path(out) if out is not None else artifact
    model = Recommender.load(artifact)
    assert model.item_vocab is not None and model.user_vocab is not None
    prev = int(read_checkpoint(artifact).get("events_upto", 0))
    db_path = Path(db) if db is not None else default_db_path(artifact)
    if not db_path.exists():
        raise LmrecError(f"no event log at {db_path}: nothing to retrain on (pass --db)")
    store = open_store(db_path, impression_flush_s=0)
    try:
        upto = store.last_event_id()
        new = [ev for ev in store.events(prev) if ev.positive and (ev.id or 0) <= upto]
        logged_items = list(store.items())
    finally:
        store.close()

    ukind, ikind = model.user_vocab.kind, model.item_vocab.kind
    conv_u = int if ukind == "int" else str
    conv_i = int if ikind == "int" else str
    # the events keep their logged times; the stored histories (no times) all come before them
    hist = _history_frame(model, before=min((e.timestamp for e in new), default=None))
    ev_frame = _events_to_frame(
        [replace(e, user_id=conv_u(e.user_id), item_id=conv_i(e.item_id)) for e in new],
        _dtype(ukind),
        _dtype(ikind),
    ).select(hist.columns)
    inter = pl.concat([hist, ev_frame])

    # every known item stays in the vocabulary (cold catalogue items included), with catalogue text
    items = pl.DataFrame({"item_id": pl.Series(model.item_vocab.ids, dtype=_dtype(ikind))})
    cat_path = Path(catalogue) if catalogue is not None else find_catalogue(artifact)
    if cat_path is not None:
        cat = read_catalogue(cat_path)
        if "item_id" in cat.columns:
            cat = cat.with_columns(pl.col("item_id").cast(_dtype(ikind), strict=False)).drop_nulls("item_id")
            items = items.join(cat.unique("item_id", keep="last"), on="item_id", how="full", coalesce=True)
    if logged_items:
        extra = pl.DataFrame([catalogue_row(conv_i(it.item_id), it.fields) for it in logged_items])
        extra = extra.with_columns(pl.col("item_id").cast(_dtype(ikind)))
        items = pl.concat([items, extra], how="diagonal_relaxed").unique(
            "item_id", keep="last", maintain_order=True
        )

    data = Dataset.from_frames(inter, items=items, name=f"{artifact.name}+log")
    fresh = type(model)(model.config).fit(data)
    checkpoint = {
        "events_upto": upto,
        "previous_events_upto": prev,
        "events_folded": len(new),
        "retrained_at": time.time(),
    }
    save_with_checkpoint(fresh, target, checkpoint, catalogue=cat_path)
    return RetrainResult(
        artifact=target,
        model=fresh.name,
        events_folded=len(new),
        events_upto=upto,
        n_users=data.n_users,
        n_items=data.n_items,
        n_interactions=data.n_interactions,
        seconds=time.perf_counter() - t0,
    )


def save_with_checkpoint(
    model: Recommender,
    target: str | os.PathLike[str],
    checkpoint: dict[str, Any],
    *,
    catalogue: str | os.PathLike[str] | None = None,
) -> Path:
    """Save ``model`` with a ``serving.json`` checkpoint (and a copy of the catalogue), atomically:
    a server starting meanwhile sees either the old artifact or the complete new one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.retrain-", dir=target.parent))
    try:
        inner = model.save(staging / "model")
        (inner / CHECKPOINT_FILE).write_text(json.dumps(checkpoint, indent=2))
        if catalogue is not None and Path(catalogue).exists():
            suffix = Path(catalogue).suffix.lower()
            name = f"catalog{suffix}" if f"catalog{suffix}" in CATALOGUE_FILES else Path(catalogue).name
            shutil.copy2(catalogue, inner / name)
        replace_dir(inner, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


__all__ = ["RetrainResult", "events_frame", "retrain", "run", "save_with_checkpoint"]

"""Server settings, process set-up, and where the event log and the training checkpoint live."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lmrec.errors import LmrecError
from lmrec.ranking.index import DEFAULT_REFINE, IVFPQ_THRESHOLD, IndexKind, set_threads

#: sidecar in the artifact directory written by ``lmrec retrain``: which log entries the model has seen
CHECKPOINT_FILE = "serving.json"


class ServingConfig(BaseModel):
    """Server settings (one place; the CLI options and the env-var factory map onto it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str | None = Field(default=None, repr=False)
    #: refuse to start without an API key unless this is set (local development only)
    allow_no_api_key: bool = False
    index: IndexKind = "auto"
    #: ``index = "auto"``: exact below this many items, HNSW from here
    ann_threshold: int = Field(default=100_000, ge=1)
    #: ``index = "auto"``: IVF-PQ from this many items (HNSW's graph and build time grow too large)
    ivfpq_threshold: int = Field(default=IVFPQ_THRESHOLD, ge=1)
    ann_target_recall: float = Field(default=0.95, gt=0, le=1)
    ef_search: int = Field(default=64, ge=1)
    nprobe: int = Field(default=16, ge=1)
    #: IVF-PQ: ``refine × k`` compressed candidates re-ranked exactly (raised by the recall tuning)
    refine: int = Field(default=DEFAULT_REFINE, ge=1)
    max_k: int = Field(default=100, ge=1)
    max_history: int = Field(default=1000, ge=1)
    #: candidates re-ranked by the bandit / MMR
    candidates: int = Field(default=50, ge=1, le=1000)
    policy: Literal["none", "linucb", "thompson"] = "linucb"
    #: a policy folder written by ``lmrec rl train``: requests may then ask for ``policy: "rl"``
    rl_policy: str | None = None
    #: exploration knob: LinUCB's α or Thompson's posterior scale
    explore: float = Field(default=0.5, ge=0)
    #: uniform mixing inside exploration (gives every candidate a non-zero propensity)
    epsilon: float = Field(default=0.05, ge=0, le=1)
    #: whether requests that do not say ``explore`` get exploration
    explore_by_default: bool = False
    #: default MMR diversity (0 = off)
    diversity: float = Field(default=0.0, ge=0, le=1)
    #: SVD dimensions for item features of non-embedding models
    feature_dim: int = Field(default=32, ge=2, le=256)
    faiss_threads: int = Field(default=1, ge=1)
    #: BLAS threads for the whole server process (None: leave as is), set by the server entry points
    #: (:func:`configure_process`), not by :class:`ServingState`. One is right for a server: each
    #: request is a small matrix product, and spinning BLAS threads on a busy machine cost far more
    #: than they save (a 610 x 450 SVD took 2 s with 2 OpenBLAS threads on a loaded 2-core box, 25 ms
    #: with 1).
    blas_threads: int | None = Field(default=1, ge=1)
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    seed: int = 0
    #: unknown ids in a recommend request are a 404 (True) or are left out, an unknown user served
    #: the most popular items, reported in the answer (False); a request's ``strict`` overrides it
    strict_ids: bool = False
    #: warm the model (and its text encoder) up at start; ``/health`` is a 503 until it is done
    warm: bool = True
    #: server processes (``lmrec serve --workers``): each loads the model and keeps up with the
    #: others through the event log (:mod:`lmrec.serving.sync`); one per core the server may use
    workers: int = Field(default=1, ge=1, le=64)


def configure_process(config: ServingConfig) -> None:
    """Process-wide thread settings for a server: faiss OpenMP threads and BLAS threads.

    Called by ``lmrec serve`` and the uvicorn factory only: in a notebook or a test run these would
    silently slow down everything else in the process.
    """
    set_threads(config.faiss_threads)
    if config.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(config.blas_threads, user_api="blas")


def default_db_path(artifact_dir: str | os.PathLike[str]) -> Path:
    """``<artifact>.events.db`` beside the artifact directory, not inside it: ``lmrec retrain``
    swaps the artifact directory atomically and must not take the log with it."""
    p = Path(artifact_dir).resolve()
    return p.with_name(p.name + ".events.db")


def read_checkpoint(artifact_dir: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(artifact_dir) / CHECKPOINT_FILE
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LmrecError(f"{p}: cannot read serving checkpoint ({exc})") from exc
    return data if isinstance(data, dict) else {}


__all__ = ["CHECKPOINT_FILE", "ServingConfig", "configure_process", "default_db_path", "read_checkpoint"]

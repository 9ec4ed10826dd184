"""Serving a trained model over HTTP: API, event log, ANN index, online state.

``lmrec serve ARTIFACT_DIR`` (or :func:`run`) loads a saved model and serves it with uvicorn;
:func:`create_app` gives the FastAPI app for embedding or in-process tests. The pieces are usable
on their own: :class:`SQLiteEventStore` (durable event log), :class:`VectorIndex` (faiss),
:class:`ServingState` (everything but HTTP).

Names are imported lazily so that the event log and the index work without FastAPI installed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "lmrec.serving.app",
    "create_app_from_env": "lmrec.serving.app",
    "run": "lmrec.serving.server",
    "retrain": "lmrec.serving.server",
    "ServingState": "lmrec.serving.state",
    "ServingConfig": "lmrec.serving.config",
    "default_db_path": "lmrec.serving.config",
    "RecommendPipeline": "lmrec.serving.pipeline",
    "Catalogue": "lmrec.serving.catalogue",
    "VectorIndex": "lmrec.ranking.index",
    "EventStore": "lmrec.serving.store",
    "SQLiteEventStore": "lmrec.serving.store",
    "Event": "lmrec.events",
    "Impression": "lmrec.events",
    "open_store": "lmrec.serving.store",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lmrec.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_EXPORTS)

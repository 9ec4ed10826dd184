"""Micro-batching of concurrent ``/recommend`` requests: one model call for every request waiting.

A request's cost is mostly fixed per model call (a forward pass, per-call Python and LightGBM
overhead), so under load the server ranks all waiting requests together. :class:`RecommendBatcher`
queues each non-text request on the event loop and drains the queue in one step: every request is
resolved and filtered on its own (:func:`~lmrec.serving.pipeline.build_context`,
:func:`~lmrec.serving.pipeline.apply_filters`), the model scores all of them in one
``score_batch``, and each is then ranked with its own exclusions, reranked and answered on its own
(:meth:`RecommendPipeline.recommend_many`). With one request waiting this is the single-request
path; a failing request fails alone. Nothing waits for a batch to fill: a request arriving to an
idle server is served in the next event-loop step.

Batched ranking is the exact path (``rank_scores`` over ``score_batch``), which is what
:meth:`~lmrec.models.base.Recommender.rank` does for every model without an approximate
:class:`~lmrec.ranking.Ranker`; models with one are ranked one request at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lmrec.models.base import QueryBatch, Recommender
from lmrec.ranking import rank_scores

__all__ = ["MAX_BATCH", "RecommendBatcher", "rank_many"]

#: the most requests one model call ranks
MAX_BATCH = 32


def rank_many(
    model: Recommender,
    batches: Sequence[QueryBatch],
    k: Sequence[int],
    exclude_seen: Sequence[bool],
    exclude: Sequence[np.ndarray | None],
    allowed: Sequence[np.ndarray | None],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``model.rank`` of each single-query batch with its own ``k`` and masks, scored in one call."""
    if len(batches) <= 1 or getattr(model, "ranker", None) is not None:
        return [
            model.rank(b, kk, exclude_seen=es, exclude=ex, allowed=al)
            for b, kk, es, ex, al in zip(batches, k, exclude_seen, exclude, allowed, strict=True)
        ]
    scores = model.score_batch(QueryBatch.concat(batches))
    out = []
    row = 0
    for b, kk, es, ex, al in zip(batches, k, exclude_seen, exclude, allowed, strict=True):
        part = scores[row : row + len(b)]
        row += len(b)
        out.append(rank_scores(part, int(kk), seen=b.history if es else None, exclude=ex, allowed=al))
    return out


class RecommendBatcher:
    """Queue requests on the event loop; ``run_many(requests) -> results or exceptions`` answers a
    drained group (see the module docstring)."""

    def __init__(
        self, run_many: Callable[[list[dict[str, Any]]], list[Any]], max_batch: int = MAX_BATCH
    ) -> None:
        self.run_many = run_many
        self.max_batch = max(1, int(max_batch))
        self._pending: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        #: how many requests each drain answered (the last few hundred), for tests and metrics
        self.sizes: list[int] = []

    async def submit(self, request: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((request, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._drain, loop)
        return await fut

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        todo = [(r, f) for r, f in self._pending[: self.max_batch] if not f.done()]
        del self._pending[: self.max_batch]
        try:
            results = self.run_many([r for r, _ in todo]) if todo else []
        except Exception as exc:  # a bug in the batch path: every request of it fails with it
            results = [exc] * len(todo)
        for (_, fut), res in zip(todo, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        self.sizes = [*self.sizes[-255:], len(todo)]
        if self._pending:
            loop.call_soon(self._drain, loop)
        else:
            self._scheduled = False

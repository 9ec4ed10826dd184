"""Micro-batching: requests ranked together get the answers they would get alone; one bad request
fails alone; concurrent HTTP requests share model calls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from lmrec.models.base import QueryBatch
from lmrec.serving.batching import RecommendBatcher
from lmrec.serving.errors import ServingError


def _requests(s: Any) -> list[dict[str, Any]]:
    users = s.state.model.user_vocab.external(np.arange(6))
    items = s.state.model.item_vocab.external(np.arange(3, 8))
    return [
        {"user_id": users[0], "k": 5},
        {"user_id": users[1], "k": 3, "exclude": [items[0]]},
        {"history": list(items), "k": 4},
        {"user_id": users[2], "k": 5, "diversity": 0.5},
        {"user_id": users[3], "k": 2, "exclude_seen": False},
        {"user_id": users[4], "k": 5, "filters": {"item_ids": list(items[:3])}},
    ]


def _items(resp: Any) -> list[tuple[Any, float]]:
    return [(it.item_id, round(it.score, 5)) for it in resp.items]


def test_ranked_together_equals_ranked_alone(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    reqs = _requests(s)
    alone = [s.state.recommend(**r) for r in reqs]
    together = s.state.pipeline.recommend_many([dict(r) for r in reqs])
    assert [_items(r) for r in together] == [_items(r) for r in alone]
    assert all(len(r.items) == q["k"] or "filters" in q for r, q in zip(together, reqs, strict=True))


def test_a_bad_request_fails_alone(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    reqs = _requests(s)
    bad = {"history": [], "k": 5}  # an empty history is a usage error
    out = s.state.pipeline.recommend_many([reqs[0], bad, reqs[2]])
    assert isinstance(out[1], ServingError | Exception) and not hasattr(out[1], "items")
    assert _items(out[0]) == _items(s.state.recommend(**reqs[0]))
    assert _items(out[2]) == _items(s.state.recommend(**reqs[2]))


def test_concatenated_batches_keep_every_query(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    from lmrec.models.base import Query

    model = s.state.model
    users = model.user_vocab.external(np.arange(3))
    parts = [model.encode_queries([Query(user_id=u)]) for u in users]
    whole = QueryBatch.concat(parts)
    direct = model.encode_queries([Query(user_id=u) for u in users])
    assert (whole.user_idx == direct.user_idx).all()
    assert (whole.history != direct.history).nnz == 0
    np.testing.assert_array_equal(model.score_batch(whole), model.score_batch(direct))


def test_concurrent_http_requests_share_model_calls(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    users = s.state.model.user_vocab.external(np.arange(40))
    app = s.client.app

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(
                *[c.post("/recommend", json={"user_id": int(u), "k": 5}) for u in users]
            )

    responses = asyncio.run(go())
    assert all(r.status_code == 200 for r in responses)
    for u, r in zip(users[:5], responses[:5], strict=True):
        assert [it["item_id"] for it in r.json()["items"]] == [
            it.item_id for it in s.state.recommend(user_id=u, k=5).items
        ]
    batcher: RecommendBatcher = app.state.batcher
    assert sum(batcher.sizes) == len(users) and max(batcher.sizes) > 1


def test_batcher_answers_each_future_with_its_own_result() -> None:
    seen: list[list[dict[str, Any]]] = []

    def run_many(reqs: list[dict[str, Any]]) -> list[Any]:
        seen.append(reqs)
        return [ValueError("odd") if r["i"] % 2 else r["i"] * 10 for r in reqs]

    batcher = RecommendBatcher(run_many, max_batch=4)

    async def go() -> list[Any]:
        return await asyncio.gather(*[batcher.submit({"i": i}) for i in range(10)], return_exceptions=True)

    out = asyncio.run(go())
    assert [o if not isinstance(o, Exception) else "err" for o in out] == [
        0,
        "err",
        20,
        "err",
        40,
        "err",
        60,
        "err",
        80,
        "err",
    ]
    assert [len(b) for b in seen] == [4, 4, 2]

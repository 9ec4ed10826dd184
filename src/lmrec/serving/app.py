"""The HTTP API (FastAPI): thin handlers over :class:`~lmrec.serving.state.ServingState`.

======================  =====  ===========================================================
``POST /recommend``     open   a list for a user id, a history, free text, or a mix
``GET /items/{id}/similar`` open  items like this one
``POST /feedback``      key    one event; on disk before the 200, applied at once
``POST /items``         key    a new item, encoded and recommendable at once (text models)
``GET /health``         open   liveness plus model/index/log facts
``GET /metrics``        open   Prometheus text format
======================  =====  ===========================================================

Write endpoints need the ``X-API-Key`` header; the server will not start without a key unless
told ``allow_no_api_key`` (``lmrec serve --no-auth``), because an open write endpoint lets anyone
rewrite users' histories. Keys are compared in constant time.

Errors are JSON ``{"detail": ...}``: 422 for a body or parameter that fails the schema (with a
readable ``message`` beside FastAPI's list of field errors), 400 for a request the schema allows but
the model cannot serve (text on a CF model, a filter on a missing catalogue field), 401 for a bad
key, 404 for unknown ids, 409 for conflicts.

Threading: the write handlers (``/feedback``, ``/items``) are plain ``def`` functions, which FastAPI
runs in its thread pool, so their ``fsync`` never blocks the event loop. The read handlers are
``async``: they are a few milliseconds of numpy under the GIL either way, and running them on the
loop saves the thread hand-offs (about a millisecond per request on a busy 2-core machine).
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from lmrec.errors import LmrecError
from lmrec.serving.config import ServingConfig, configure_process
from lmrec.serving.errors import ServingError
from lmrec.serving.metrics import CONTENT_TYPE
from lmrec.serving.schemas import (
    ERROR_RESPONSES,
    MAX_ID_LENGTH,
    MAX_K,
    WRITE_RESPONSES,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    NewItem,
    NewItemResponse,
    RecommendRequest,
    RecommendResponse,
    SimilarResponse,
)
from lmrec.serving.state import ServingState

log = logging.getLogger("lmrec.serving")

API_KEY_HEADER = "X-API-Key"
MAX_BODY_BYTES = 2 * 1024 * 1024
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="Required on write endpoints."
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class _MetricsMiddleware:
    """Counts and times every request by route *template* (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, state: ServingState) -> None:
        self.app = app
        self.state = state

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            m = self.state.metrics
            m.requests.labels(route=path, method=method, status=str(status["code"])).inc()
            m.latency.labels(route=path, method=method).observe(time.perf_counter() - start)


def _summarise(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def _jsonable_errors(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        item = {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        out.append(item)
    return out


def create_app(state: ServingState, *, owns_state: bool = False) -> FastAPI:
    """The FastAPI app over a loaded state (``owns_state``: close it on shutdown)."""
    cfg = state.config
    if not cfg.api_key and not cfg.allow_no_api_key:
        raise LmrecError(
            "no API key: set LMREC_API_KEY or pass --api-key (write endpoints need one); "
            "--no-auth serves without one, for local development only"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owns_state:
            # the loaded model, vocabularies and catalogue live as long as the process: move them
            # out of the collector's reach, so full collections stop walking them (tail latency)
            gc.collect()
            gc.freeze()
        yield
        if owns_state:
            state.close()

    app = FastAPI(
        # a generous bound on any valid body (1,000 history ids, 10,000 allow-listed ids); bigger
        # bodies get a 413 before they are read into memory
        max_body_size=MAX_BODY_BYTES,
        title="lmrec",
        version=_version(),
        summary="Recommendations from a trained lmrec model, with online feedback.",
        lifespan=lifespan,
    )
    app.state.lmrec = state

    async def require_key(key: str | None = Security(_api_key_scheme)) -> None:
        if not cfg.api_key:
            return
        if key is None or not secrets.compare_digest(key.encode(), cfg.api_key.encode()):
            raise ServingError(f"missing or wrong {API_KEY_HEADER} header", status=401)

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        headers = {"WWW-Authenticate": "ApiKey"} if exc.status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(LmrecError)
    async def _lmrec_error(request: Request, exc: LmrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        return JSONResponse(
            {"detail": _jsonable_errors(errors), "message": _summarise(errors)},
            status_code=422,
        )

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        responses=ERROR_RESPONSES,
        summary="Recommend items for a user id, a history, free text, or a mix.",
    )
    async def recommend(req: RecommendRequest) -> RecommendResponse:
        # text queries run a text encoder (tens of ms): off the event loop; the rest is quick numpy
        call = functools.partial(
            state.recommend,
            user_id=req.user_id,
            history=req.history,
            text=req.text,
            k=req.k,
            exclude=req.exclude,
            exclude_seen=req.exclude_seen,
            filters=req.filters.model_dump(exclude_none=True) if req.filters else None,
            explore=req.explore,
            policy=req.policy,
            diversity=req.diversity,
            with_explanations=req.explain,
        )
        return await run_in_threadpool(call) if req.text else call()

    @app.get(
        "/items/{item_id}/similar",
        response_model=SimilarResponse,
        responses=ERROR_RESPONSES,
        summary="Items similar to an item (item-vector cosine, or the model on a one-item history).",
    )
    async def similar(
        item_id: str = Path(..., min_length=1, max_length=MAX_ID_LENGTH),
        k: int = Query(10, ge=1, le=MAX_K),
    ) -> SimilarResponse:
        return state.similar(item_id, k)

    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses=WRITE_RESPONSES,
        dependencies=[Depends(require_key)],
        summary="Log one feedback event (durable before the response) and apply it at once.",
    )
    def feedback(ev: FeedbackRequest) -> FeedbackResponse:
        logged, updated = state.feedback(
            user_id=ev.user_id,
            item_id=ev.item_id,
            event=ev.event,
            weight=ev.weight,
            timestamp=ev.timestamp,
            request_id=ev.request_id,
        )
        assert logged.id is not None
        return FeedbackResponse(
            id=logged.id,
            user_id=logged.user_id,
            item_id=logged.item_id,
            event=logged.event,
            timestamp=logged.timestamp,
            request_id=logged.request_id,
            bandit_updated=updated,
        )

    @app.post(
        "/items",
        response_model=NewItemResponse,
        status_code=201,
        responses=WRITE_RESPONSES,
        dependencies=[Depends(require_key)],
        summary="Add an item with text: encoded and recommendable at once (text models).",
    )
    def add_item(item: NewItem) -> NewItemResponse:
        index = state.add_item(
            item.item_id, title=item.title, text=item.text, tags=item.tags, fields=item.fields
        )
        return NewItemResponse(item_id=state.item_id(index), index=index, recommendable=True)

    @app.get("/health", response_model=HealthResponse, summary="Liveness and model/index/log facts.")
    async def health() -> HealthResponse:
        return state.health()

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics (text exposition format 0.0.4).",
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.add_middleware(_MetricsMiddleware, state=state)  # type: ignore[arg-type]
    return app


def _version() -> str:
    from lmrec import __version__

    return __version__


def config_from_env(
    env: MutableMapping[str, str] | None = None,
) -> tuple[str, str | None, str | None, ServingConfig]:
    """(artifact dir, db path, catalogue path, config) from ``LMREC_*`` environment variables.

    ``LMREC_ARTIFACT`` (required), ``LMREC_DB``, ``LMREC_CATALOGUE``, ``LMREC_API_KEY`` and
    ``LMREC_SERVE_CONFIG`` (JSON object of :class:`ServingConfig` fields).
    """
    env = os.environ if env is None else env
    artifact = env.get("LMREC_ARTIFACT")
    if not artifact:
        raise LmrecError("LMREC_ARTIFACT is not set: the directory of a saved lmrec model")
    extra = json.loads(env.get("LMREC_SERVE_CONFIG", "{}") or "{}")
    if env.get("LMREC_API_KEY"):
        extra.setdefault("api_key", env["LMREC_API_KEY"])
    return artifact, env.get("LMREC_DB") or None, env.get("LMREC_CATALOGUE") or None, ServingConfig(**extra)


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory lmrec.serving.app:create_app_from_env`` (see :func:`config_from_env`)."""
    artifact, db, catalogue, config = config_from_env()
    configure_process(config)
    state = ServingState.from_artifact(artifact, db=db, config=config, catalogue=catalogue)
    try:
        return create_app(state, owns_state=True)
    except BaseException:
        state.close()
        raise


__all__ = ["API_KEY_HEADER", "config_from_env", "create_app", "create_app_from_env"]

"""The HTTP API (FastAPI): thin handlers over :class:`~lmrec.serving.state.ServingState`.

======================  =====  ===========================================================
``POST /recommend``     open   a list for a user id, a history, free text, or a mix
``GET /items/{id}/similar`` open  items like this one
``GET /items/{id}/image``   open  the item's picture, when it has one
``POST /feedback``      key    one event; on disk before the 200, applied at once
``POST /items``         key    a new item (text and/or picture), recommendable at once (content models)
``GET /health``         open   readiness (503 until warm) plus model/index/log facts
``GET /metrics``        open   Prometheus text format
``GET /docs``           open   Swagger UI, from local files (works offline)
``GET /ui``             open   a web page over these endpoints (:mod:`lmrec.serving.ui`)
======================  =====  ===========================================================

Write endpoints need the ``X-API-Key`` header; the server will not start without a key unless
told ``allow_no_api_key`` (``lmrec serve --no-auth``), because an open write endpoint lets anyone
rewrite users' histories. Keys are compared in constant time.

Errors are JSON ``{"detail": ...}``, every one of them: 422 for a body or parameter that fails the
schema (with a readable ``message`` beside FastAPI's list of field errors; also a ``where`` value of
the wrong type for its catalogue column, and an empty ``history``), 400 for a request the schema
allows but the model cannot serve (text on a CF model, a filter on a missing catalogue field), 401
for a bad key, 404 for unknown ids in strict mode, 409 for conflicts, 413 for a body over 2 MiB, 500
(``{"detail": "internal server error", "request_id": ...}``) for a bug.

Unknown ids (:mod:`lmrec.models.query`, the same policy as Python and the CLI): by default an
unknown user gets the most popular items with ``"fallback": "popularity"``, and unknown ``history``,
``exclude`` and ``filters.item_ids`` ids are left out and listed in ``warnings``; ``"strict": true``
(or ``ServingConfig.strict_ids``) makes each a 404 naming the ids.

Start-up: the lifespan warms the model and its text encoder in the background
(:meth:`ServingState.warm`); ``/health`` answers 503 ``{"status": "warming"}`` until then. Every
request gets an id (``X-Request-ID``) and one JSON line in the ``lmrec.access`` log
(:mod:`lmrec.serving.http`).

Threading: the write handlers (``/feedback``, ``/items``) are plain ``def`` functions, which FastAPI
runs in its thread pool, so their ``fsync`` never blocks the event loop. The read handlers are
``async``: they are a few milliseconds of numpy under the GIL either way, and running them on the
loop saves the thread hand-offs (about a millisecond per request on a busy 2-core machine).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from lmrec.errors import LmrecError
from lmrec.serving.batching import RecommendBatcher
from lmrec.serving.config import ServingConfig, configure_process
from lmrec.serving.errors import InvalidField, ServingError
from lmrec.serving.http import (
    LmrecFastAPI,
    MetricsMiddleware,
    configure_access_log,
    mount_docs,
    request_id_of,
)
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
from lmrec.serving.ui import mount_ui

log = logging.getLogger("lmrec.serving")

API_KEY_HEADER = "X-API-Key"
MAX_BODY_BYTES = 2 * 1024 * 1024
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="Required on write endpoints."
)


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
    batcher = RecommendBatcher(state.pipeline.recommend_many)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owns_state:
            # the loaded model, vocabularies and catalogue live as long as the process: move them
            # out of the collector's reach, so full collections stop walking them (tail latency)
            gc.collect()
            gc.freeze()
        # warm in the background: the port opens at once (liveness), /health says when it is ready
        warming = asyncio.create_task(run_in_threadpool(state.warm)) if cfg.warm else None
        if warming is not None:
            warming.add_done_callback(_report_warm_failure)
        yield
        if warming is not None and not warming.done():
            await asyncio.wait([warming])
        if owns_state:
            state.close()

    app = LmrecFastAPI(
        # a generous bound on any valid body (1,000 history ids, 10,000 allow-listed ids); bigger
        # bodies get a 413 before they are read into memory
        max_body_size=MAX_BODY_BYTES,
        title="lmrec",
        version=_version(),
        summary="Recommendations from a trained lmrec model, with online feedback.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.lmrec = state
    app.state.batcher = batcher
    mount_docs(app)
    mount_ui(app, state)

    async def require_key(key: str | None = Security(_api_key_scheme)) -> None:
        if not cfg.api_key:
            return
        if key is None or not secrets.compare_digest(key.encode(), cfg.api_key.encode()):
            raise ServingError(f"missing or wrong {API_KEY_HEADER} header", status=401)

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        if isinstance(exc, InvalidField):  # shaped like a schema error: the field, then the message
            error = {"loc": list(exc.loc), "msg": str(exc), "type": exc.kind}
            return JSONResponse({"detail": [error], "message": _summarise([error])}, status_code=422)
        headers = {"WWW-Authenticate": "ApiKey"} if exc.status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("request %s failed", request_id_of(request.scope), exc_info=exc)
        body = {"detail": "internal server error", "request_id": request_id_of(request.scope)}
        return JSONResponse(body, status_code=500)

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
    async def recommend(req: RecommendRequest, request: Request) -> Response:
        # text queries run a text encoder (tens of ms): off the event loop; the rest is quick numpy,
        # ranked together with every other request waiting (:mod:`lmrec.serving.batching`)
        options: dict[str, Any] = dict(
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
            strict=req.strict,
            request_id=request_id_of(request.scope),
        )
        if req.text:
            result: RecommendResponse = await run_in_threadpool(functools.partial(state.recommend, **options))
        else:
            result = await batcher.submit(options)
        # the pipeline built and validated this model already: serialise it once. Returning the
        # model would have FastAPI validate and re-encode it against response_model, ~0.4 ms a
        # request of a ~4 ms budget (the schema in /docs still comes from response_model)
        return Response(result.model_dump_json(), media_type="application/json")

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

    @app.get(
        "/items/{item_id}/image",
        response_class=FileResponse,
        responses={**ERROR_RESPONSES, 200: {"content": {"image/*": {}}, "description": "The picture file."}},
        summary="An item's picture (from the catalogue's image column, or sent with POST /items).",
    )
    async def item_image(item_id: str = Path(..., min_length=1, max_length=MAX_ID_LENGTH)) -> FileResponse:
        return FileResponse(state.picture(item_id), headers={"Cache-Control": "public, max-age=3600"})

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
        summary="Add an item with text and/or a picture: encoded and recommendable at once (content models).",
    )
    def add_item(item: NewItem) -> NewItemResponse:
        index = state.add_item(
            item.item_id,
            title=item.title,
            text=item.text,
            tags=item.tags,
            fields=item.fields,
            image=item.image,
        )
        return NewItemResponse(item_id=state.item_id(index), index=index, recommendable=True)

    @app.get(
        "/health",
        response_model=HealthResponse,
        summary="Readiness (a 503 until the model and text encoder are warm) and model/index/log facts.",
        responses={503: {"model": HealthResponse, "description": "Still warming up."}},
    )
    async def health() -> Response:
        report = state.health()
        return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ready else 503)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics (text exposition format 0.0.4).",
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics() -> Response:
        if state.follower is not None:  # the gauges describe this worker's state: bring it up to date
            state.follower.catch_up(wait=False)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.add_middleware(MetricsMiddleware, state=state)  # type: ignore[arg-type]
    return app


def _report_warm_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("warm-up failed; /health stays 503", exc_info=task.exception())


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
    """Factory for ``uvicorn --factory lmrec.serving.app:create_app_from_env`` (see :func:`config_from_env`).

    Run through uvicorn's own ``--workers N``, it needs ``"workers": N`` in ``LMREC_SERVE_CONFIG`` too
    (so that each worker follows the others' events, :mod:`lmrec.serving.sync`) and a
    ``PROMETHEUS_MULTIPROC_DIR`` for shared metrics; ``lmrec serve --workers N`` sets both."""
    artifact, db, catalogue, config = config_from_env()
    if os.environ.get("LMREC_ACCESS_LOG"):  # set by ``lmrec serve --workers`` for its workers
        configure_access_log()
    configure_process(config)
    state = ServingState.from_artifact(artifact, db=db, config=config, catalogue=catalogue)
    try:
        return create_app(state, owns_state=True)
    except BaseException:
        state.close()
        raise


__all__ = ["API_KEY_HEADER", "config_from_env", "create_app", "create_app_from_env"]

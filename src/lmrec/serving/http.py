"""HTTP plumbing around the API: the access log, request ids, metrics, JSON errors, offline docs.

* :class:`AccessLog` wraps the whole ASGI stack (outside FastAPI's own middleware): it gives every
  request an id (the ``X-Request-ID`` response header, and the ``request_id`` of a ``/recommend``
  answer), writes one JSON object per request to the ``lmrec.access`` logger (``method``, ``path``,
  ``route``, ``status``, ``latency_ms``, ``request_id``), and turns the plain-text 413 that the body
  limit answers with into JSON, like every other error;
* :class:`MetricsMiddleware` counts and times requests by route template (Prometheus);
* :func:`mount_docs` serves ``/docs`` (Swagger UI) from the ``swagger-ui-bundle`` package, so the
  docs work without internet access.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from lmrec.serving.state import ServingState

#: one JSON object per request (:class:`AccessLog`)
access_log = logging.getLogger("lmrec.access")

REQUEST_ID_HEADER = "X-Request-ID"
DOCS_STATIC = "/docs-static"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_id_of(scope: Scope) -> str | None:
    """The id :class:`AccessLog` gave this request (None outside it)."""
    return scope.get("state", {}).get("request_id")


class AccessLog:
    """The outermost layer: request id, one JSON access-log line, JSON for a plain-text 413."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = {"code": 500}
        held: dict[str, Message] = {}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
                if message["status"] == 413 and not _is_json(headers):
                    held["start"] = message  # the body limit's plain text: answered as JSON below
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                if message.get("more_body"):
                    return
                head, body = _json_413(held.pop("start"))
                await send(head)
                await send(body)
                return
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if access_log.isEnabledFor(logging.INFO):  # no record built for a log nobody reads
                route = scope.get("route")
                record = {
                    "method": scope.get("method", ""),
                    "path": scope.get("path", ""),
                    "route": getattr(route, "path", None),
                    "status": status["code"],
                    "latency_ms": round((time.perf_counter() - start) * 1000, 3),
                    "request_id": request_id,
                }
                access_log.info(json.dumps(record), extra={"access": record})


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and b"json" in v for k, v in headers)


def _json_413(start: Message) -> tuple[Message, Message]:
    body = json.dumps({"detail": "request body too large: the limit is 2 MiB"}).encode()
    headers = [
        (k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return (
        {"type": "http.response.start", "status": 413, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class LmrecFastAPI(FastAPI):
    """FastAPI with :class:`AccessLog` around its whole middleware stack (so that it sees the body
    limit's 413 and the 500s of the error middleware too)."""

    def build_middleware_stack(self) -> ASGIApp:  # type: ignore[override]
        return AccessLog(super().build_middleware_stack())  # type: ignore[arg-type]


class MetricsMiddleware:
    """Counts and times every request by route *template* (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, state: ServingState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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


def swagger_ui_dir() -> Path:
    """The Swagger UI files of the ``swagger-ui-bundle`` package (the ``serve`` extra)."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


def mount_docs(app: FastAPI) -> None:
    """``/docs`` from local files: the Swagger UI page over ``/openapi.json``, its script and style
    from the ``swagger-ui-bundle`` package (nothing is fetched from a CDN)."""
    app.mount(DOCS_STATIC, StaticFiles(directory=swagger_ui_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
        )


def configure_access_log(stream: Any = None) -> logging.Handler:
    """Print the ``lmrec.access`` records, one JSON object per line, to ``stream`` (stderr);
    ``lmrec serve`` calls this. Returns the handler."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False
    return handler


__all__ = [
    "REQUEST_ID_HEADER",
    "AccessLog",
    "LmrecFastAPI",
    "MetricsMiddleware",
    "access_log",
    "configure_access_log",
    "mount_docs",
    "request_id_of",
]

"""Issue #12 over HTTP: one unknown-id policy, typed `where` filters, JSON for every error, offline
docs, readiness after warm-up, the JSON access log, and `lmrec serve --port` checked up front."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest

from lmrec.serving.app import create_app
from lmrec.serving.state import ServingConfig, ServingState
from tests.serving.conftest import API_KEY, ASGIClient, item_ids


# ---------------------------------------------------------------------- unknown ids
def test_unknown_user_gets_popularity_flagged(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    r = s.client.post("/recommend", json={"user_id": 99999999, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] == "popularity" and body["user_id"] == 99999999
    assert [(w["field"], w["ids"]) for w in body["warnings"]] == [("user_id", [99999999])]
    model = s.state.model
    expected = model.item_vocab.external(np.argsort(-model.popularity(), kind="stable")[:5])
    assert item_ids(r) == expected
    # the same answer as Python's lenient recommend
    with pytest.warns(UserWarning):
        py = model.recommend(99999999, k=5)
    assert py["item_id"].to_list() == expected and py["fallback"].to_list() == ["popularity"] * 5
    # a string id on an integer-id model is an unknown user too, not a different error
    assert s.client.post("/recommend", json={"user_id": "abc"}).json()["fallback"] == "popularity"
    # known users carry no flag
    known = s.client.post("/recommend", json={"user_id": 1}).json()
    assert known["fallback"] is None and known["warnings"] == []


def test_unknown_item_ids_are_dropped_with_warnings_everywhere(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    base = s.client.post("/recommend", json={"history": [1, 260], "k": 5})
    r = s.client.post(
        "/recommend",
        json={
            "history": [1, 424242, 260],
            "exclude": [88888888],
            "filters": {"item_ids": [*item_ids(base), 7777777]},
            "k": 5,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] is None and item_ids(r) == item_ids(base)
    got = {w["field"]: w["ids"] for w in body["warnings"]}
    assert got == {"history": [424242], "exclude": [88888888], "filters.item_ids": [7777777]}
    assert all("left out" in w["message"] for w in body["warnings"])
    # a history of nothing but unknown ids: the popularity fallback
    r = s.client.post("/recommend", json={"history": ["  ", "\u00a0"], "k": 3})
    assert r.status_code == 200 and r.json()["fallback"] == "popularity"


def test_strict_server_setting_makes_unknown_ids_404(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact, strict_ids=True)
    for body, needle in (
        ({"user_id": 99999999}, "99999999"),
        ({"history": [1, 424242]}, "424242"),
        ({"user_id": 1, "exclude": [5555555]}, "5555555"),
    ):
        r = s.client.post("/recommend", json=body)
        assert r.status_code == 404 and needle in r.json()["detail"], r.text
    # a request may still ask for the lenient answer
    r = s.client.post("/recommend", json={"user_id": 99999999, "strict": False})
    assert r.status_code == 200 and r.json()["fallback"] == "popularity"


def test_lone_surrogates_and_nul_in_ids_are_never_a_500(serve, text_artifact: Path) -> None:
    s = serve(text_artifact)
    auth = {"X-API-Key": API_KEY, "content-type": "application/json"}
    for path, raw in (
        ("/recommend", '{"user_id": "\\ud800"}'),
        ("/recommend", '{"history": ["\\udfff", "\\u0000"], "exclude": ["\\ud800"]}'),
        ("/recommend", '{"text": "\\ud800 drama"}'),
        ("/recommend", '{"user_id": 1, "filters": {"where": {"\\ud800": "\\ud800"}}}'),
        ("/feedback", '{"user_id": "\\ud800", "item_id": 1}'),
        ("/items", '{"item_id": "\\ud800", "title": "\\ud800"}'),
    ):
        r = s.client.post(path, content=raw.encode(), headers=auth)
        assert r.status_code < 500, (path, raw, r.status_code, r.text)
    assert s.client.get("/items/%ED%A0%80/similar").status_code < 500


# ---------------------------------------------------------------------- typed where filters
@pytest.fixture()
def with_years(ease_artifact: Path, tmp_path: Path):
    movies = pl.read_parquet(ease_artifact / "catalog.parquet")
    movies = movies.with_columns(
        year=pl.col("title").str.extract(r"\((\d{4})\)\s*$").cast(pl.Int64),
        rating=pl.lit(3.5),
        family=pl.col("genres").str.contains("Children"),
    )
    path = tmp_path / "catalogue.parquet"
    movies.write_parquet(path)
    state = ServingState.from_artifact(
        ease_artifact, db=tmp_path / "e.db", catalogue=path, config=ServingConfig(api_key=API_KEY)
    )
    state.warm()
    client = ASGIClient(create_app(state))
    yield client, movies
    client.close()
    state.close()


@pytest.mark.parametrize(
    ("where", "field", "kind"),
    [
        ({"year": "abc"}, "year", "integer"),
        ({"year": ["1995", 1996]}, "year", "integer"),
        ({"year": True}, "year", "integer"),
        ({"rating": "high"}, "rating", "number"),
        ({"family": 1}, "family", "boolean"),
        ({"title": 5}, "title", "string"),
    ],
)
def test_where_value_of_the_wrong_type_is_a_422_naming_field_and_type(with_years, where, field, kind) -> None:
    client, _ = with_years
    r = client.post("/recommend", json={"user_id": 1, "filters": {"where": where}})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["detail"][0]["loc"] == ["body", "filters", "where", field]
    assert f"filter field {field!r} holds {kind} values" in body["message"]


def test_where_values_of_the_right_type_filter(with_years) -> None:
    client, movies = with_years
    r = client.post("/recommend", json={"user_id": 1, "k": 5, "filters": {"where": {"year": [1995, 1999.0]}}})
    assert r.status_code == 200, r.text
    years = dict(zip(movies["item_id"].to_list(), movies["year"].to_list(), strict=True))
    assert item_ids(r) and all(years[i] in (1995, 1999) for i in item_ids(r))
    r = client.post("/recommend", json={"user_id": 1, "k": 5, "filters": {"where": {"rating": 3.5}}})
    assert r.status_code == 200 and len(item_ids(r)) == 5  # an integer-valued float column takes 3.5
    r = client.post("/recommend", json={"user_id": 1, "k": 5, "filters": {"where": {"family": True}}})
    fam = dict(zip(movies["item_id"].to_list(), movies["family"].to_list(), strict=True))
    assert r.status_code == 200 and all(fam[i] for i in item_ids(r))


# ---------------------------------------------------------------------- JSON errors
def test_413_is_json(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    body = b'{"user_id": 1, "text": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    for headers in ({"content-type": "application/json"}, {"content-type": "text/plain"}):
        r = s.client.post("/recommend", content=body, headers=headers)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/json" and "2 MiB" in r.json()["detail"], r.text


def test_500_is_json_with_the_request_id(serve, ease_artifact: Path, monkeypatch) -> None:
    s = serve(ease_artifact)

    def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(s.state, "health", broken)
    transport = httpx.ASGITransport(app=s.client.app, raise_app_exceptions=False)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/health")

    r = asyncio.run(call())
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"detail": "internal server error", "request_id": r.headers["x-request-id"]}


# ---------------------------------------------------------------------- docs offline
def test_docs_are_served_from_local_files(serve, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    page = s.client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/docs-static/swagger-ui-bundle.js" in page.text and "/openapi.json" in page.text
    assert "cdn.jsdelivr" not in page.text and "https://" not in page.text.split("<body>")[0]
    js = s.client.get("/docs-static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert s.client.get("/docs-static/swagger-ui.css").status_code == 200
    assert "/docs" not in s.client.get("/openapi.json").json()["paths"]


# ---------------------------------------------------------------------- readiness
def test_health_is_503_until_warm_and_the_lifespan_warms(serve, text_artifact: Path) -> None:
    s = serve(text_artifact, warm=False)
    r = s.client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "warming" and r.json()["ready"] is False
    app = s.client.app

    async def start() -> None:
        async with app.router.lifespan_context(app):
            for _ in range(600):
                if s.state.ready:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(start())
    assert s.state.ready and s.state.warm_s is not None
    r = s.client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["ready"] is True


def test_warm_runs_the_text_encoder(serve, text_artifact: Path, monkeypatch) -> None:
    s = serve(text_artifact, warm=False)
    seen: list[list] = []
    model = s.state.model
    original = model.query_vectors
    monkeypatch.setattr(model, "query_vectors", lambda b: seen.append(b.texts) or original(b))
    model.set_ranker(None)  # exact: rank goes through _score -> query_vectors
    s.state.warm()
    assert [None] in seen and ["warm up"] in seen
    assert s.state.warm() == s.state.warm_s and len(seen) == 2, "warm is idempotent"


# ---------------------------------------------------------------------- access log
def test_access_log_is_one_json_object_per_request(serve, ease_artifact: Path, caplog) -> None:
    s = serve(ease_artifact)
    caplog.set_level(logging.INFO, logger="lmrec.access")
    r = s.client.post("/recommend", json={"user_id": 1, "k": 3})
    bad = s.client.post("/recommend", json={"user_id": 1, "k": 0})
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "lmrec.access"]
    assert len(lines) == 2
    first, second = lines
    assert set(first) >= {"method", "path", "status", "latency_ms", "request_id"}
    assert first["method"] == "POST" and first["path"] == "/recommend" and first["status"] == 200
    assert first["route"] == "/recommend" and 0 < first["latency_ms"] < 60_000
    # one id for the request: the log line, the X-Request-ID header and the list's request_id
    assert first["request_id"] == r.headers["x-request-id"] == r.json()["request_id"]
    assert second["status"] == 422 and second["request_id"] == bad.headers["x-request-id"]
    assert second["request_id"] != first["request_id"]


def test_configure_access_log_prints_bare_json_lines(ease_artifact: Path) -> None:
    import io

    from lmrec.serving.http import access_log, configure_access_log

    out = io.StringIO()
    handler = configure_access_log(out)
    try:
        access_log.info(json.dumps({"method": "GET", "status": 200}))
    finally:
        access_log.removeHandler(handler)
        access_log.propagate = True
    assert json.loads(out.getvalue().strip()) == {"method": "GET", "status": 200}


# ---------------------------------------------------------------------- lmrec serve --port
@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_serve_rejects_a_bad_port_in_one_line(ease_artifact: Path, monkeypatch, capsys, port) -> None:
    from lmrec.cli import main

    monkeypatch.setattr(sys, "argv", ["lmrec", "serve", str(ease_artifact), "--no-auth", "--port", port])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --port must be between 1 and 65535, got {port}"

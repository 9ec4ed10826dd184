"""The ``/ui`` page, in process: what the server renders and ships (the browser test drives it)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.models.popularity import Popularity
from lmrec.serving import ui
from tests.serving.conftest import API_KEY

REPO = Path(__file__).resolve().parents[2]


def _page(served: Any) -> tuple[str, Any]:
    r = served.client.get("/ui")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return r.text, r


def _body_data(page: str) -> dict[str, str]:
    body = re.search(r"<body ([^>]*)>", page)
    assert body is not None
    return dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(1)))


def test_page_renders_the_model_users_and_the_auth_mode(serve: Any, text_artifact: Path) -> None:
    s = serve(text_artifact)
    page, r = _page(s)
    assert _body_data(page) == {"auth": "key", "text": "1", "add": "1"}
    assert "tiny_text" in page and f"{s.state.model.n_items} items" in page
    options = re.findall(r'<option value="([^"]+)">([^<]+)</option>', page)
    assert options[0] == ("1", f"user 1 ({s.state.model.history_length(0)} items)")
    new_visitor = options[-1][0]
    assert options[-1][1] == "new visitor (no history yet)"
    assert not s.state.known_user(int(new_visitor)) and int(new_visitor) not in s.state.model.user_vocab
    assert len(options) == ui.MAX_PICKER_USERS + 1
    new_item = re.search(r'id="new-id" value="([^"]+)"', page)
    assert new_item is not None and int(new_item.group(1)) not in s.state.model.item_vocab
    assert API_KEY not in page  # the server never hands out its key
    assert r.headers["content-security-policy"] == ui.CSP and "script-src 'self'" in ui.CSP


def test_no_key_hides_the_field_and_cf_models_disable_text_and_new_items(
    serve: Any, ease_artifact: Path
) -> None:
    s = serve(ease_artifact, api_key=None, allow_no_api_key=True)
    assert _body_data(_page(s)[0]) == {"auth": "none", "text": "0", "add": "0"}


def test_the_page_references_only_its_own_files_and_they_are_served(serve: Any, ease_artifact: Path) -> None:
    s = serve(ease_artifact)
    page, _ = _page(s)
    assert "<script>" not in page and " style=" not in page  # the CSP would block inline code
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert set(refs) == {"data:,", "/ui/static/style.css", "/ui/static/app.js"}
    js = s.client.get("/ui/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert s.client.get("/ui/static/style.css").status_code == 200
    assert s.client.get("/ui/static/nope.js").status_code == 404
    # no CDN, no absolute URL anywhere in what the page loads
    for text in (page, js.text, s.client.get("/ui/static/style.css").text):
        assert not re.search(r"(?:src|href|url|fetch)\s*[=(]\s*[\"'`]?(?:https?:)?//", text)
    # every endpoint the script calls exists in the app, with that method
    routes = {(m, r.path) for r in s.client.app.routes for m in getattr(r, "methods", ())}
    called = set(re.findall(r'api\("(GET|POST)", [`"](/[a-z]+)', js.text))
    assert called == {("POST", "/recommend"), ("POST", "/feedback"), ("POST", "/items"), ("GET", "/items")}
    for method, path in called - {("GET", "/items")}:
        assert (method, path) in routes
    assert ("GET", "/items/{item_id}/similar") in routes
    assert s.client.get("/ui/", follow_redirects=False).headers["location"] == "/ui"


def test_the_page_is_not_part_of_the_api_schema(serve: Any, ease_artifact: Path) -> None:
    paths = serve(ease_artifact).client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]


def test_ids_are_escaped(serve: Any, tmp_path: Path) -> None:
    evil = '"><script>alert(1)</script>'
    frame = pl.DataFrame({"user_id": [evil, evil, "u2"], "item_id": ["a", "b", "a"]})
    path = tmp_path / "pop"
    Popularity().fit(Dataset.from_frames(frame)).save(path)
    page, _ = _page(serve(path))
    assert evil not in page and "<script>alert" not in page
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert re.search(r'id="new-id" value="new-\d+"', page)


def test_the_page_files_are_package_data() -> None:
    """A wheel carries every file of the page: each matches a package-data pattern."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "lmrec"
    ]
    root = REPO / "src" / "lmrec"
    files = [p.relative_to(root).as_posix() for p in (root / "serving" / "ui").rglob("*") if p.is_file()]
    data = [f for f in files if not f.endswith(".py") and "__pycache__" not in f]
    assert {
        "serving/ui/templates/index.html",
        "serving/ui/static/app.js",
        "serving/ui/static/style.css",
    } <= set(data)
    for f in data:
        assert any(fnmatch.fnmatch(f, p) for p in patterns), f

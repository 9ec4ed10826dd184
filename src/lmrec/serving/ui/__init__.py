"""A small web page over the HTTP API, at ``/ui``: pick a user, search, like/dislike, add an item.

The page is one server-rendered HTML file plus a plain script (``static/app.js``, ``fetch()`` only)
and a style sheet, all shipped inside the package (package data): nothing is fetched from a CDN and
there is no build step. The server renders what it knows once per page load (the model, whether it
reads text, whether it can add items, a list of users to pick from, a free id for a new item); the
script then calls the public JSON endpoints, the same ones any client uses:

* ``POST /recommend`` for the list (a user id, the search text, or both), with ``because`` evidence;
* ``POST /feedback`` (``like`` / ``dislike``, crediting the list's ``request_id``) and then a
  fresh ``/recommend``: a liked item joins the history and leaves the list, a disliked one is hidden;
* ``GET /items/{id}/similar`` when a title is clicked;
* ``POST /items`` for the "add an item" form: the item is encoded and recommendable at once.

Authentication is the API's own: the page itself and the read endpoints are open (like ``/docs``),
the write endpoints need ``X-API-Key``. When the server has a key, the page shows a password field;
the key typed there is kept in the tab's ``sessionStorage`` and sent as ``X-API-Key`` with each
write, so a visitor without the key can browse but not write. When the server runs without a key
(``lmrec serve --no-auth``) the field is hidden. The server never puts its key into the page.

The page is sent with a ``Content-Security-Policy`` that allows only same-origin scripts, styles,
images and requests, so a stray external reference fails loudly instead of phoning a CDN, and no
inline script runs (the script reads its settings from ``data-`` attributes).
"""

from __future__ import annotations

import functools
import html
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from lmrec.models.protocols import SupportsAddItems

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lmrec.data.vocabulary import Vocabulary
    from lmrec.serving.state import ServingState

UI_PATH = "/ui"
STATIC_PATH = "/ui/static"
HERE = Path(__file__).resolve().parent
#: users offered in the picker, in vocabulary order (plus a "new visitor" with a free id)
MAX_PICKER_USERS = 200
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def picker_users(state: ServingState, limit: int = MAX_PICKER_USERS) -> list[tuple[Any, int]]:
    """Up to ``limit`` users with a history, as (external id, history length), in vocabulary order."""
    model = state.model
    vocab = model.user_vocab
    assert vocab is not None
    out: list[tuple[Any, int]] = []
    with state.lock:
        for u in range(model.n_history_users):
            n = model.history_length(u)
            if n > 0:
                out.append((vocab.external([u])[0], n))
                if len(out) >= limit:
                    break
    return out


def _free_id(vocab: Vocabulary | None, prefix: str) -> str:
    """An id not in ``vocab``: the largest integer id + 1, or ``<prefix>-<n>`` for string ids."""
    assert vocab is not None
    if vocab.kind == "int":
        top = vocab.to_series().max()
        return str(int(top) + 1 if isinstance(top, int) else 1)
    n = len(vocab) + 1
    while f"{prefix}-{n}" in vocab:
        n += 1
    return f"{prefix}-{n}"


def free_item_id(state: ServingState) -> str:
    """An item id not in the catalogue yet, offered in the "add an item" form."""
    return _free_id(state.model.item_vocab, "new")


def free_user_id(state: ServingState) -> str:
    """A user id nobody has, for the picker's "new visitor" entry (a cold start, built from likes)."""
    return _free_id(state.model.user_vocab, "visitor")


@functools.cache
def _template() -> Template:
    return Template((HERE / "templates" / "index.html").read_text(encoding="utf-8"))


def render_page(state: ServingState) -> str:
    """The page's HTML: the template filled in with escaped values (the script does the rest)."""
    esc = html.escape
    users = picker_users(state)
    options = [
        f'<option value="{esc(str(uid))}">user {esc(str(uid))} ({n} items)</option>' for uid, n in users
    ]
    options.append(f'<option value="{esc(free_user_id(state))}">new visitor (no history yet)</option>')
    model = state.model
    return _template().substitute(
        model=esc(model.name),
        n_items=model.n_items,
        auth="key" if state.config.api_key else "none",
        text="1" if "text" in model.supports else "0",
        add="1" if isinstance(model, SupportsAddItems) else "0",
        next_item=esc(free_item_id(state)),
        user_options="\n        ".join(options),
        static=STATIC_PATH,
    )


def mount_ui(app: FastAPI, state: ServingState) -> None:
    """Serve the page at ``/ui`` and its files at ``/ui/static`` (not part of the OpenAPI schema)."""
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.get(UI_PATH, include_in_schema=False)
    async def ui() -> HTMLResponse:
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
        return HTMLResponse(render_page(state), headers=headers)

    @app.get(UI_PATH + "/", include_in_schema=False)
    async def ui_slash() -> RedirectResponse:
        return RedirectResponse(UI_PATH)


__all__ = [
    "CSP",
    "STATIC_PATH",
    "UI_PATH",
    "free_item_id",
    "free_user_id",
    "mount_ui",
    "picker_users",
    "render_page",
]

"""POST /items with a picture: an item with only a poster is recommendable at once (issue #14)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from PIL import Image

from lmrec.data.dataset import Dataset
from lmrec.data.images import ItemImages
from lmrec.experiment import save_catalog
from lmrec.models.content import ContentRecommender
from tests.serving.conftest import AUTH

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 24), colour).save(buf, format="PNG")
    return buf.getvalue()


def _b64(colour: tuple[int, int, int]) -> str:
    return base64.b64encode(_png(colour)).decode()


@pytest.fixture()
def picture_artifact(tmp_path: Path) -> Path:
    """20 items, even ones red and odd ones blue; users 0-9 took some red items, users 10-19 some blue."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i}.png").write_bytes(_png(RED if i % 2 == 0 else BLUE))
    rows = [
        (u, i, t)
        for t, (u, i) in enumerate((u, i) for u in range(20) for i in range(12) if i % 2 == (u >= 10))
    ]
    inter = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    items = pl.DataFrame({"item_id": list(range(20)), "title": [f"item {i}" for i in range(20)]})
    data = Dataset.from_frames(inter, items=items, name="colours").with_images(
        ItemImages.from_folder(folder, range(20))
    )
    model = ContentRecommender(modalities=("image",), image_encoder="histogram", recency_half_life=None).fit(
        data
    )
    model.save(tmp_path / "art")
    save_catalog(data, tmp_path / "art")  # what `lmrec train` writes: titles and picture files
    return tmp_path / "art"


def _ids(r: Any) -> list[int]:
    assert r.status_code == 200, r.text
    return [it["item_id"] for it in r.json()["items"]]


def test_picture_only_item_is_recommendable_at_once_and_after_a_restart(
    serve: Any, picture_artifact: Path, tmp_path: Path
) -> None:
    db = tmp_path / "events.db"
    s = serve(picture_artifact, db=db)
    r = s.client.post("/items", json={"item_id": 900, "image": _b64(RED)}, headers=AUTH)
    assert r.status_code == 201, r.text
    # a red-taking user gets the new red item among the red ones they have not taken (14-18, 900)
    assert 900 in _ids(s.client.post("/recommend", json={"user_id": 0, "k": 5}))
    assert 900 not in _ids(s.client.post("/recommend", json={"user_id": 10, "k": 5}))
    # every listed item links its picture: the dataset's (from the catalogue) and the new one
    items = s.client.post("/recommend", json={"user_id": 0, "k": 5}).json()["items"]
    assert all(it["image_url"] == f"/items/{it['item_id']}/image" for it in items)
    got = s.client.get("/items/900/image")
    assert got.status_code == 200 and got.content == _png(RED) and got.headers["content-type"] == "image/png"
    assert s.client.get("/items/14/image").content == _png(RED)
    assert s.client.get("/items/424242/image").status_code == 404
    stored = list((tmp_path / "events-pictures").iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == _png(RED)
    s.close()
    again = serve(picture_artifact, db=db)  # replayed from the log, with its stored picture
    assert 900 in _ids(again.client.post("/recommend", json={"user_id": 0, "k": 5}))


@pytest.mark.parametrize(
    ("image", "status", "needle"),
    [
        ("not base64 at all!", 400, "item 901: 'image' is not base64"),
        (base64.b64encode(b"plain text, no picture").decode(), 400, "item 901: 'image' does not decode"),
    ],
)
def test_bad_pictures_are_refused_naming_the_item_and_nothing_is_added(
    serve: Any, picture_artifact: Path, tmp_path: Path, image: str, status: int, needle: str
) -> None:
    s = serve(picture_artifact, db=tmp_path / "bad.db")
    r = s.client.post("/items", json={"item_id": 901, "image": image}, headers=AUTH)
    assert r.status_code == status and needle in r.json()["detail"], r.text
    assert s.client.get("/items/901/similar").status_code == 404
    assert not (tmp_path / "bad-pictures").exists()


def test_picture_only_item_needs_a_model_that_scores_pictures(serve: Any, text_artifact: Path) -> None:
    s = serve(text_artifact)
    r = s.client.post("/items", json={"item_id": 990009, "image": _b64(RED)}, headers=AUTH)
    assert r.status_code == 400 and "does not score pictures" in r.json()["detail"]
    # with a title the text model takes it (and keeps the picture for display)
    r = s.client.post(
        "/items", json={"item_id": 990009, "title": "Red thing", "image": _b64(RED)}, headers=AUTH
    )
    assert r.status_code == 201, r.text


@pytest.fixture()
def two_tower_picture_artifact(tmp_path: Path) -> Path:
    """A two_tower over ID + picture on the checkerboard whose pictures carry each item's group."""
    from lmrec.models.two_tower import TwoTower
    from lmrec.testing import make_checkerboard
    from tests.models.pictures import draw_group_picture
    from tests.models.test_two_tower_images import FAST

    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    board = make_checkerboard(n_items=20)
    for i in range(20):
        draw_group_picture(i, folder / f"{i}.jpg", rng)
    assert board.items is not None
    data = Dataset.from_frames(
        board.interactions.select("user_id", "item_id", "timestamp"),
        items=board.items.with_columns(title=pl.Series([f"item {i}" for i in board.items["item_id"]])),
        name="board",
    ).with_images(folder)
    model = TwoTower(**{**FAST, "encoder": None}, modalities=["id", "image"]).fit(data)
    model.save(tmp_path / "art")
    save_catalog(data, tmp_path / "art")
    return tmp_path / "art"


def test_two_tower_places_a_picture_only_item_at_once_and_after_a_restart(
    serve: Any, two_tower_picture_artifact: Path, tmp_path: Path
) -> None:
    """POST /items on a two_tower with a picture tower: the picture alone places the new item."""
    from tests.models.pictures import draw_group_picture

    rng = np.random.default_rng(1)
    pics = {}
    for i in (900, 901):  # 900 even (red + circle), 901 odd (blue + box)
        draw_group_picture(i, tmp_path / f"{i}.jpg", rng)
        pics[i] = base64.b64encode((tmp_path / f"{i}.jpg").read_bytes()).decode()
    db = tmp_path / "events.db"
    s = serve(two_tower_picture_artifact, db=db)
    for i in (900, 901):
        r = s.client.post("/items", json={"item_id": i, "image": pics[i]}, headers=AUTH)
        assert r.status_code == 201, r.text

    def places(client: Any) -> float:
        """Share of users ranking the new item of their own group above the other one."""
        good = 0
        for u in range(20):
            ids = _ids(client.post("/recommend", json={"user_id": u, "k": 22, "exclude_seen": False}))
            assert {900, 901} <= set(ids)
            own, other = (900, 901) if u % 2 == 0 else (901, 900)
            good += ids.index(own) < ids.index(other)
        return good / 20

    assert places(s.client) >= 0.9
    # no text path: a free-text query is refused in one line, not failed inside the model
    r = s.client.post("/recommend", json={"text": "something red"})
    assert r.status_code == 400 and "no text path" in r.json()["detail"], r.text
    s.close()
    again = serve(two_tower_picture_artifact, db=db)  # replayed from the log with the stored pictures
    assert places(again.client) >= 0.9

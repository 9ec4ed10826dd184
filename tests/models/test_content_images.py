"""ContentRecommender over pictures: modalities text / image / both (``ContentConfig.modalities``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageDraw

from lmrec.data.dataset import Dataset
from lmrec.data.images import ItemImages
from lmrec.errors import DataError, LmrecError
from lmrec.models.base import Query, Recommender
from lmrec.models.content import ContentRecommender
from lmrec.testing import make_checkerboard
from tests.models.pictures import draw_group_picture

N_ITEMS = 20


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The checkerboard with pictures that carry the group (even: red circle, odd: blue box), noisy
    so that no two are identical; item 19 has no picture and 17's file is broken."""
    folder = tmp_path_factory.mktemp("pics")
    rng = np.random.default_rng(0)
    for i in range(N_ITEMS - 1):
        draw_group_picture(i, folder / f"{i}.jpg", rng)
    (folder / "17.jpg").write_bytes(b"broken")
    data = make_checkerboard(n_items=N_ITEMS)
    # pictures only: a text that says nothing about the group, so any signal is the picture's
    data = Dataset.from_frames(
        data.interactions.select("user_id", "item_id", "timestamp"),
        items=data.items.with_columns(
            title=data.items["item_id"].cast(str).map_elements(lambda s: f"item {s}", return_dtype=str)
        ),
        name="board",
    )
    return data.with_images(folder)


def _hit_rate(model: ContentRecommender, data: Dataset) -> float:
    from lmrec.testing import _withheld

    users = data.user_vocab.ids
    recs = model.recommend(list(users), k=1)
    top = dict(zip(recs["user_id"].to_list(), recs["item_id"].to_list(), strict=True))
    return float(
        np.mean([top[u] == _withheld(u, N_ITEMS) for u in users if _withheld(u, N_ITEMS) not in (17, 19)])
    )


def test_pictures_carry_the_signal(board: Dataset, tmp_path: Path) -> None:
    assert board.images is not None and set(board.images.problems) == {17, 19}
    text = ContentRecommender(encoder="hashing", recency_half_life=None).fit(board)
    image = ContentRecommender(
        modalities=("image",),
        image_encoder="histogram",
        recency_half_life=None,
        cache_dir=str(tmp_path / "c"),
    ).fit(board)
    both = ContentRecommender(
        encoder="hashing", modalities=("text", "image"), image_encoder="histogram", recency_half_life=None
    ).fit(board)
    assert image._encoder is None  # a pictures-only model never builds the text encoder
    assert _hit_rate(image, board) == 1.0 and _hit_rate(both, board) == 1.0
    assert _hit_rate(text, board) < 0.5
    # both = [sqrt(1-w) text, sqrt(w) picture]: the cosine is the weighted sum of the two cosines
    vt, vi, vb = text.item_vectors(), image.item_vectors(), both.item_vectors()
    assert vb.shape == (N_ITEMS, vt.shape[1] + vi.shape[1]) and both.text_dim_ == vt.shape[1]
    np.testing.assert_allclose(vb[0] @ vb[2], 0.5 * (vt[0] @ vt[2]) + 0.5 * (vi[0] @ vi[2]), atol=1e-5)
    # items without a usable picture have a zero picture part
    assert not vi[[17, 19]].any() and not vb[19, both.text_dim_ :].any()


def test_text_queries_persistence_and_errors(board: Dataset, tmp_path: Path) -> None:
    both = ContentRecommender(
        encoder="hashing", modalities=("text", "image"), image_encoder="histogram", image_weight=0.3
    ).fit(board)
    assert both.recommend(Query(text="item 4"), k=1)["item_id"].to_list() == [4]  # text part only
    loaded = Recommender.load(both.save(tmp_path / "m"))
    assert isinstance(loaded, ContentRecommender) and loaded.text_dim_ == both.text_dim_
    np.testing.assert_array_equal(loaded.item_vectors(), both.item_vectors())
    assert loaded.recommend(Query(text="item 4"), k=3).equals(both.recommend(Query(text="item 4"), k=3))
    image = ContentRecommender(modalities=("image",), image_encoder="histogram").fit(board)
    with pytest.raises(LmrecError, match="free-text queries need the text modality"):
        image.recommend(Query(text="red"), k=1)
    Recommender.load(image.save(tmp_path / "i"))
    with pytest.raises(LmrecError, match="has no item pictures"):
        ContentRecommender(modalities=("image",), image_encoder="histogram").fit(make_checkerboard())
    with pytest.raises(LmrecError, match="once each"):
        ContentRecommender(modalities=("text", "text"))
    # a feature matrix works the same way as files
    feats = ItemImages.from_features(list(range(N_ITEMS)), np.eye(N_ITEMS, 4)[np.arange(N_ITEMS) % 2 * 2])
    m = ContentRecommender(modalities=("image",), recency_half_life=None).fit(board.with_images(feats))
    assert m.image_encoder_id_ == "features" and _hit_rate(m, board) == 1.0


def test_add_items_with_only_a_picture_or_only_text(board: Dataset, tmp_path: Path) -> None:
    red = tmp_path / "new_red.jpg"
    im = Image.new("RGB", (24, 36), (210, 35, 45))
    ImageDraw.Draw(im).ellipse((4, 8, 20, 24), fill=(250, 250, 250))
    im.save(red, "JPEG")
    evens = [0, 2, 4, 6]
    image = ContentRecommender(modalities=("image",), image_encoder="histogram", recency_half_life=None).fit(
        board
    )
    image.add_items(pl.DataFrame({"item_id": [100], "image": [str(red)]}))
    top = image.recommend(Query(history=evens), k=3)["item_id"].to_list()
    assert 100 in top  # a poster-only item is recommendable at once, among its look-alikes
    with pytest.raises(DataError, match="need an 'image' column"):
        image.add_items(pl.DataFrame({"item_id": [101], "title": ["text only"]}))

    both = ContentRecommender(
        encoder="hashing", modalities=("text", "image"), image_encoder="histogram", recency_half_life=None
    ).fit(board)
    both.add_items(
        pl.DataFrame({"item_id": [100, 101], "title": [None, "purple unicorn"], "image": [str(red), None]})
    )
    v = both.item_vectors()
    t = both.text_dim_
    assert not v[-2, :t].any() and v[-2, t:].any()  # picture only
    assert v[-1, :t].any() and not v[-1, t:].any()  # text only
    assert both.recommend(Query(text="purple unicorn"), k=1)["item_id"].to_list() == [101]
    assert 100 in both.recommend(Query(history=evens), k=3)["item_id"].to_list()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"no")
    with pytest.raises(LmrecError, match=r"bad\.jpg"):
        both.add_items(pl.DataFrame({"item_id": [102], "title": ["x"], "image": [str(bad)]}))
    # pictures from a feature matrix: another space, so new picture files are refused
    feats = ItemImages.from_features(list(range(N_ITEMS)), np.eye(N_ITEMS, 72)[np.arange(N_ITEMS) % 2])
    m = ContentRecommender(modalities=("image",), image_encoder="histogram").fit(board.with_images(feats))
    with pytest.raises(LmrecError, match="different space"):
        m.add_items(pl.DataFrame({"item_id": [100], "image": [str(red)]}))


def test_concatenated_cnn_pictures_end_to_end(board: Dataset, tmp_path: Path) -> None:
    """The real offline CNNs side by side (``"mobilenetv2+efficientnet-lite2"``): fit, save, load, and
    a poster-only item added after loading ranks with its look-alikes."""
    m = ContentRecommender(
        modalities=("image",),
        image_encoder="mobilenetv2+efficientnet-lite2",
        recency_half_life=None,
        cache_dir=str(tmp_path / "cache"),
    ).fit(board)
    assert m.image_encoder_id_ is not None and m.image_encoder_id_.startswith("concat(")
    assert m.item_vectors().shape == (N_ITEMS, 2560)
    assert _hit_rate(m, board) >= 0.9
    loaded = Recommender.load(m.save(tmp_path / "m"))
    assert isinstance(loaded, ContentRecommender)
    np.testing.assert_array_equal(loaded.item_vectors(), m.item_vectors())
    red = tmp_path / "new_red.jpg"
    im = Image.new("RGB", (24, 36), (210, 35, 45))
    ImageDraw.Draw(im).ellipse((4, 8, 20, 24), fill=(250, 250, 250))
    im.save(red, "JPEG")
    loaded.add_items(pl.DataFrame({"item_id": [100], "image": [str(red)]}))
    # the 6 unseen red items and the new red poster come before every blue one
    top = loaded.recommend(Query(history=[0, 2, 4, 6]), k=7)["item_id"].to_list()
    assert 100 in top and all(i == 100 or i % 2 == 0 for i in top)

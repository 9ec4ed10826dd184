"""Hybrid: the opt-in ``image`` feature group (picture similarity between candidate and history)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lmrec.data.dataset import Dataset
from lmrec.models.base import Recommender
from lmrec.models.hybrid import DEFAULT_FEATURE_GROUPS, FEATURE_GROUPS, Hybrid
from lmrec.testing import make_checkerboard

CHEAP = [{"name": "popularity", "n_candidates": 20}]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The checkerboard with group-coloured pictures; item 19 has none."""
    folder = tmp_path_factory.mktemp("pics")
    for i in range(19):
        im = Image.new("RGB", (16, 24), (200, 40, 40) if i % 2 == 0 else (40, 40, 200))
        ImageDraw.Draw(im).rectangle((2, 2, 2 + i % 7, 10), fill=(250, 250, 250))
        im.save(folder / f"{i}.jpg", "JPEG")
    return make_checkerboard().with_images(folder)


def _same_half(model: Hybrid) -> float:
    top = model.recommend(list(range(40)), k=1)
    return float(np.mean([i % 2 == u % 2 for u, i in top.select("user_id", "item_id").iter_rows()]))


def test_image_group_is_opt_in_and_carries_the_signal(board: Dataset, tmp_path: Path) -> None:
    assert "image" in FEATURE_GROUPS and "image" not in DEFAULT_FEATURE_GROUPS
    plain = Hybrid(generators=CHEAP, text_encoder="hashing").fit(board)
    assert not [n for n in plain.feature_names_ if n.startswith("image_")]
    groups = ("scores", "history", "image")
    model = Hybrid(generators=CHEAP, feature_groups=groups, image_encoder="histogram").fit(board)
    assert model.feature_names_[-3:] == ["image_sim_max", "image_sim_mean", "image_sim_last"]
    # popularity scores alone cannot tell the halves apart (measured: 0.05 of users get their half
    # first); with the picture similarities 0.7 do
    without = Hybrid(generators=CHEAP, feature_groups=("scores", "history")).fit(board)
    assert _same_half(model) >= 0.6 and _same_half(without) <= 0.3
    loaded = Recommender.load(model.save(tmp_path / "h"))
    assert isinstance(loaded, Hybrid) and loaded._side is not None and loaded._side.image is not None
    assert loaded.recommend(list(range(40)), k=3).equals(model.recommend(list(range(40)), k=3))
    # no pictures in the dataset: the group adds nothing
    none = Hybrid(generators=CHEAP, feature_groups=groups, image_encoder="histogram").fit(make_checkerboard())
    assert not [n for n in none.feature_names_ if n.startswith("image_")]

"""TwoTower with item pictures: ``modalities`` (ID + text + image), masked fusion, modality dropout,
cold items placed by their picture (``add_items``), save/load, config validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from pydantic import ValidationError

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError, LmrecError
from lmrec.models.base import Recommender
from lmrec.models.two_tower import TwoTower, TwoTowerConfig
from lmrec.testing import RecommenderContract, make_checkerboard
from tests.models.pictures import draw_group_picture

torch.set_num_threads(1)

N_ITEMS = 20
#: fast settings: model-free encoders (hashing text, colour-histogram pictures), a tiny network
FAST: dict[str, Any] = {
    "dim": 16,
    "n_heads": 2,
    "n_layers": 1,
    "max_len": 12,
    "dropout": 0.0,
    "encoder": "hashing",
    "image_encoder": "histogram",
    "shuffle_prob": 0.5,
    "val_fraction": 0.0,
    "train": {"max_epochs": 15, "batch_size": 16, "lr": 1e-2, "progress_bar": False, "accelerator": "cpu"},
}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pictures of items 0..18 (19 has none)."""
    folder = tmp_path_factory.mktemp("pics")
    rng = np.random.default_rng(0)
    for i in range(N_ITEMS - 1):
        draw_group_picture(i, folder / f"{i}.jpg", rng)
    return folder


@pytest.fixture(scope="module")
def new_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """Picture files of brand-new items 100 (even), 101 (odd), 102 (even)."""
    folder = tmp_path_factory.mktemp("new")
    rng = np.random.default_rng(1)
    for i in (100, 101, 102):
        draw_group_picture(i, folder / f"{i}.jpg", rng)
    return {i: str(folder / f"{i}.jpg") for i in (100, 101, 102)}


@pytest.fixture(scope="module")
def board(pictures: Path) -> Dataset:
    """The checkerboard with group-carrying pictures and titles that say nothing about the group."""
    data = make_checkerboard(n_items=N_ITEMS)
    assert data.items is not None
    data = Dataset.from_frames(
        data.interactions.select("user_id", "item_id", "timestamp"),
        items=data.items.with_columns(title=pl.Series([f"item {i}" for i in data.items["item_id"]])),
        name="board",
    )
    return data.with_images(pictures)


@pytest.fixture(scope="module")
def fitted(board: Dataset) -> TwoTower:
    return TwoTower(**FAST, modalities=["id", "text", "image"], fusion="gate", modality_dropout=0.3).fit(
        board
    )


def test_fits_with_pictures_and_learns(board: Dataset, fitted: TwoTower) -> None:
    from lmrec.testing import _withheld

    items = fitted.net.items if fitted.net is not None else None
    assert items is not None and items.modalities == ("id", "text", "image") and items.image_dim > 0
    assert fitted.image_encoder_id_ is not None and fitted.image_encoder_id_.startswith("color-histogram")
    recs = fitted.recommend(list(board.user_vocab.ids), k=1)
    hits = [i == _withheld(u, N_ITEMS) for u, i in zip(recs["user_id"], recs["item_id"], strict=True)]
    assert np.mean(hits) >= 0.9
    assert fitted.report_ is not None and fitted.report_.epochs[-1].loss < fitted.report_.epochs[0].loss


def test_item_without_a_picture_is_masked_not_zero_fused(board: Dataset, fitted: TwoTower) -> None:
    net = fitted.net
    assert net is not None
    no_pic, with_pic = board.item_vocab.index(19), board.item_vocab.index(18)
    assert not bool(net.items.image_known[no_pic + 1]) and bool(net.items.image_known[with_pic + 1])
    # changing the picture rows changes an item that has a picture, never the one without
    with torch.no_grad():
        before = net.items.all_items().clone()
        saved = net.items.image_table.clone()
        net.items.image_table.add_(torch.randn_like(net.items.image_table))
        after = net.items.all_items()
        net.items.image_table.copy_(saved)
    assert torch.equal(before[no_pic], after[no_pic])
    assert not torch.allclose(before[with_pic], after[with_pic])
    # and it is served: users whose withheld item is 19 can get it
    scores = fitted.score(list(board.user_vocab.ids), items=[19])
    assert np.isfinite(scores).all()


def test_cold_item_with_only_a_picture_is_recommended(
    tmp_path: Path, board: Dataset, fitted: TwoTower, new_files: dict[int, str]
) -> None:
    files = new_files
    fitted_copy = Recommender.load(fitted.save(tmp_path / "copy"))
    assert isinstance(fitted_copy, TwoTower)
    fitted_copy.add_items(pl.DataFrame({"item_id": [100, 101], "image": [files[100], files[101]]}))
    net = fitted_copy.net
    assert net is not None and fitted_copy.n_items == N_ITEMS + 2
    new = [fitted_copy.item_vocab.index(i) + 1 for i in (100, 101)]  # type: ignore[union-attr]
    assert not net.items.id_known[new].any() and not net.items.text_known[new].any()
    assert net.items.image_known[new].all()
    users = list(board.user_vocab.ids)
    scores = fitted_copy.score(users, items=[100, 101])
    even = np.asarray(users) % 2 == 0
    # the picture alone tells a cold item's group: each user prefers the one of their own group
    assert ((scores[:, 0] > scores[:, 1]) == even).mean() >= 0.9
    recs = fitted_copy.recommend(users, k=N_ITEMS + 2, exclude_seen=False)
    assert {100, 101} <= set(recs["item_id"].to_list())
    # an id-only model has nothing to place a new item with
    id_only = TwoTower(**{**FAST, "fusion": "id_only", "train": {**FAST["train"], "max_epochs": 1}}).fit(
        board
    )
    with pytest.raises(LmrecError, match="ID only"):
        id_only.add_items(pl.DataFrame({"item_id": [100], "image": [files[100]]}))


def test_save_load_round_trip_with_pictures(
    tmp_path: Path, board: Dataset, fitted: TwoTower, new_files: dict[int, str]
) -> None:
    files = new_files
    model = Recommender.load(fitted.save(tmp_path / "a"))
    assert isinstance(model, TwoTower)
    model.add_items(
        pl.DataFrame({"item_id": [100, 102], "image": [files[100], None], "title": [None, "item 102"]})
    )
    loaded = Recommender.load(model.save(tmp_path / "b"))
    assert isinstance(loaded, TwoTower) and loaded.config == model.config
    assert loaded.image_encoder_id_ == model.image_encoder_id_
    np.testing.assert_array_equal(loaded.image_center_, model.image_center_)
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
    queries: list[Any] = [0, 5, {"history": [2, 4, 100]}, {"text": "item 102"}]
    np.testing.assert_allclose(loaded.score(queries), model.score(queries), rtol=1e-5, atol=1e-6)
    # the loaded model still places new pictures in the same space
    loaded.add_items(pl.DataFrame({"item_id": [101], "image": [files[101]]}))
    model.add_items(pl.DataFrame({"item_id": [101], "image": [files[101]]}))
    np.testing.assert_allclose(loaded.item_vectors(), model.item_vectors(), rtol=1e-5, atol=1e-6)
    # item 102 came with text only: its picture part is masked
    net = loaded.net
    assert net is not None and not bool(net.items.image_known[loaded.item_vocab.index(102) + 1])  # type: ignore[union-attr]


def test_image_only_model_needs_pictures(board: Dataset) -> None:
    model = TwoTower(**{**FAST, "modalities": ("id", "image"), "train": {**FAST["train"], "max_epochs": 1}})
    plain = Dataset.from_frames(board.interactions.select("user_id", "item_id", "timestamp"), name="plain")
    with pytest.raises(LmrecError, match="'plain' has no item pictures"):
        model.fit(plain)
    model.fit(board)
    with pytest.raises(LmrecError, match="no text path"):
        model.recommend({"text": "item 3"})
    with pytest.raises(DataError, match="'image' column"):
        model.add_items(pl.DataFrame({"item_id": [100], "title": ["item 100"]}))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"modalities": ["id", "image"], "modality_dropout": 1.0}, "less than 1"),
        ({"modalities": ["id", "image"], "modality_dropout": -0.1}, "greater than or equal to 0"),
        ({"modality_dropout": 0.3}, "modality_dropout needs modalities"),
        ({"modalities": ["image"], "modality_dropout": 0.3}, "none to drop"),
        ({"modalities": ["id"], "modality_dropout": 0.3}, "none to drop"),
        ({"modalities": ["id", "image", "image"]}, "once each"),
        ({"modalities": []}, "once each"),
        ({"modalities": ["id", "audio"]}, "'id', 'text' or 'image'"),
        ({"modalities": ["id", "image"], "fusion": "id_only"}, "must be 'sum' or 'gate'"),
        ({"modalities": ["id", "image"], "hard_negatives": 2}, "need a text fusion"),
    ],
)
def test_modality_config_validation(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TwoTowerConfig(**params)  # type: ignore[arg-type]


def test_modality_config_reads_naturally() -> None:
    cfg = TwoTowerConfig(modalities=["id", "text", "image"], fusion="gate", modality_dropout=0.3)  # type: ignore[arg-type]
    assert cfg.modalities == ("id", "text", "image") and cfg.parts == ("id", "text", "image")
    assert TwoTowerConfig(fusion="id_only").parts == ("id",) and TwoTowerConfig().parts == ("id", "text")
    assert TwoTowerConfig.model_validate_json(cfg.model_dump_json()) == cfg


class TestTwoTowerModalitiesContract(RecommenderContract):
    """The shared contract for the masked tower (ID + text, gated, modality dropout; no pictures)."""

    model_factory = staticmethod(
        lambda: TwoTower(
            **{k: v for k, v in FAST.items() if k != "image_encoder"},
            modalities=["id", "text"],
            fusion="gate",
            modality_dropout=0.2,
        )
    )

"""SASRec / BERT4Rec / UniSRec with item pictures: ``modalities`` (the masked ID + text + picture
tower shared with two_tower), cold items placed by their picture, save/load, config validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from pydantic import ValidationError

from lmrec.data.dataset import Dataset
from lmrec.data.images import ItemImages
from lmrec.models.base import Query, Recommender
from lmrec.models.sasrec import SASRec, SASRecConfig
from lmrec.models.unisrec import UniSRec, UniSRecConfig
from lmrec.testing import make_checkerboard

torch.set_num_threads(1)

N = 20  # checkerboard items 0..19; item 20 is in the catalogue with a picture but no interactions
FAST: dict[str, Any] = {
    "dim": 16,
    "n_heads": 2,
    "n_blocks": 1,
    "max_len": 12,
    "dropout": 0.0,
    "encoder": "hashing",
    "val_fraction": 0.0,
    "train": {"max_epochs": 25, "batch_size": 16, "lr": 1e-2, "progress_bar": False, "accelerator": "cpu"},
}


@pytest.fixture(scope="module")
def board() -> Dataset:
    """The checkerboard; pictures (a feature matrix) carry each item's group; item 19 has no usable
    picture (a non-finite row) and item 20 (group 0) was never taken."""
    data = make_checkerboard(n_items=N)
    assert data.items is not None
    items = pl.concat(
        [data.items.select("item_id", "title"), pl.DataFrame({"item_id": [N], "title": ["item 20"]})]
    )
    data = Dataset.from_frames(
        data.interactions.select("user_id", "item_id", "timestamp"), items=items, name="b"
    )
    rng = np.random.default_rng(0)
    ids = list(range(N + 1))
    feats = np.column_stack(
        [[1.0 if i % 2 == 0 else -1.0 for i in ids], 0.1 * rng.standard_normal((len(ids), 3))]
    )
    feats[19] = np.nan
    return data.with_images(ItemImages.from_features(ids, feats.astype(np.float32), model_id="groups"))


def test_sasrec_with_pictures_places_a_never_taken_item_by_its_picture(
    board: Dataset, tmp_path: Path
) -> None:
    # ID dropout: the picture path learns to carry items, as it must for one never taken
    model = SASRec(**FAST, modalities=["id", "image"], fusion="gate", id_dropout=0.5).fit(board)
    items = model.net.items if model.net is not None else None
    assert items is not None and items.modalities == ("id", "image") and items.image_dim == 4
    vec = model.item_vectors()
    cold, no_pic = board.item_vocab.index(N), board.item_vocab.index(19)
    assert np.abs(vec[cold]).sum() > 0  # its picture part alone, not a blank
    # a group-0 user's scores: the never-taken group-0 item above every group-1 item it has not seen
    scores = model.score_batch(model.encode_queries([Query(user_id=0)]))[0]
    odd = board.item_vocab.indices([i for i in range(1, N, 2)])
    assert scores[cold] > scores[odd].max()
    assert np.isfinite(vec[no_pic]).all()  # no picture: masked out, its ID carries it
    back = Recommender.load(model.save(tmp_path / "m"))
    q = [Query(user_id=u) for u in range(6)]
    np.testing.assert_allclose(
        back.score_batch(back.encode_queries(q)), model.score_batch(model.encode_queries(q)), atol=1e-5
    )


def test_unisrec_inductive_with_pictures_fits_and_round_trips(board: Dataset, tmp_path: Path) -> None:
    model = UniSRec(**FAST, mode="inductive", modalities=["text", "image"], modality_dropout=0.2, n_experts=2)
    model.fit(board)
    assert (
        model.config.fusion == "sum"
        and model.net is not None
        and model.net.items.modalities == ("text", "image")
    )
    back = Recommender.load(model.save(tmp_path / "u"))
    q = [Query(history=[0, 2, 4])]
    np.testing.assert_allclose(
        back.score_batch(back.encode_queries(q)), model.score_batch(model.encode_queries(q)), atol=1e-5
    )


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (SASRecConfig, {"modalities": ["id", "image"]}, "fusion must be 'sum' or 'gate'"),
        (SASRecConfig, {"modality_dropout": 0.3}, "modality_dropout needs modalities"),
        (
            SASRecConfig,
            {"modalities": ["image"], "fusion": "sum", "id_dropout": 0.2},
            "id_dropout needs the ID",
        ),
        (SASRecConfig, {"modalities": ["image"], "fusion": "sum", "init_from_text": True}, "init_from_text"),
        (
            UniSRecConfig,
            {"mode": "inductive", "modalities": ["id", "text", "image"]},
            "'id' exactly when transductive",
        ),
        (
            UniSRecConfig,
            {"mode": "transductive", "modalities": ["text", "image"]},
            "'id' exactly when transductive",
        ),
    ],
)
def test_modality_config_validation(cls: Any, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        cls(**params)

"""Federated two-tower in Flower's simulation: two clients, two rounds, record-level DP on a tiny
dataset with an item nobody has interacted with.

One simulation (Ray's start-up is most of the time), checked for everything it can show: the
rounds, what the server received (the packed item tower and aggregate numbers only: no interactions,
no user vectors), ε, the cold item's score, the artifact and ``add_items``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("flwr")
pytest.importorskip("opacus")

from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from lmrec.data.dataset import Dataset
from lmrec.data.split import Split, leave_last_out
from lmrec.federated import FedTwoTower, FedTwoTowerConfig
from lmrec.federated.clients import ClientData
from lmrec.federated.tower import TowerLayout
from lmrec.models.base import Recommender
from lmrec.testing import make_checkerboard
from tests.federated.messages import hashed_clients, leaks

pytestmark = pytest.mark.distributed  # Ray starts a cluster of processes

N_USERS, N_ITEMS, FACTORS = 24, 12, 4
#: the item no user has interacted with (its text is in the catalogue)
COLD = 99


def _data() -> Dataset:
    """The checkerboard, with one more catalogue item that nobody has interacted with."""
    board = make_checkerboard(N_USERS, N_ITEMS)
    assert board.items is not None
    inter = board.interactions
    frame = pl.DataFrame(
        {
            "user_id": board.user_vocab.external(inter["user_idx"].to_numpy()),
            "item_id": board.item_vocab.external(inter["item_idx"].to_numpy()),
            "timestamp": inter["timestamp"],
        }
    )
    items = pl.concat([board.items, pl.DataFrame({"item_id": [COLD], "title": ["even item cold"]})])
    return Dataset.from_frames(frame, items=items, name="checkerboard+cold")


@pytest.fixture(scope="module")
def split() -> Split:
    return leave_last_out(_data())


@pytest.fixture(scope="module")
def model(split: Split) -> FedTwoTower:
    """Two clients (hash partition), two rounds, ID + text tower, DP-SGD (noise 1), messages kept."""
    config = FedTwoTowerConfig(
        factors=FACTORS,
        fusion="sum",
        encoder="hashing",
        clients=2,
        iterations=2,
        batch_size=16,
        dp="record",
        noise_multiplier=1.0,
        seed=3,
    )
    model = FedTwoTower(config)
    seen: list[tuple[int, tuple[int, ...]]] = []

    def server_eval(server_round: int, items: np.ndarray) -> float:
        seen.append((server_round, items.shape))  # the item table the tower computes, not the tower
        return 0.0

    model.fit(split.train, valid=split.valid, keep_messages=True, server_eval=server_eval)
    model.server_seen_ = seen  # type: ignore[attr-defined]
    return model


def _layout(model: FedTwoTower) -> TowerLayout:
    return TowerLayout(model.item_text_.shape[1], model.n_items, FACTORS, ids=True)


def _clients(split: Split, model: FedTwoTower) -> list[ClientData]:
    return hashed_clients(split, model.config.seed)


def test_two_clients_two_rounds(model: FedTwoTower) -> None:
    rounds = model.run_.rounds
    assert [r.round for r in rounds] == [1, 2] and all(r.clients == 2 for r in rounds)
    layout = _layout(model)
    assert model.run_.shared is not None and model.run_.shared.shape == layout.shape
    # the served table is the tower's table over the fit-time text
    np.testing.assert_allclose(
        model.item_vectors(), layout.table(model.run_.shared, model.item_text_), rtol=1e-5, atol=1e-6
    )
    # per client and round: the packed tower down and up for training, down again for evaluation
    tower = len(Array(np.zeros(layout.shape, np.float32)).data)
    assert rounds[0].bytes_up == 2 * tower and rounds[0].bytes_down == 4 * tower
    assert all(r.valid_ndcg is not None and 0.0 <= r.valid_ndcg <= 1.0 for r in rounds)
    assert model.server_seen_ == [(1, (N_ITEMS + 1, FACTORS + 1)), (2, (N_ITEMS + 1, FACTORS + 1))]  # type: ignore[attr-defined]


def test_the_server_receives_no_interactions_or_user_vectors(model: FedTwoTower, split: Split) -> None:
    clients = _clients(split, model)
    layout = _layout(model)
    received = model.run_.received
    assert len(received) == 2 * 2 * 2  # 2 rounds x 2 clients x (train + evaluate replies)
    for content in received:
        assert leaks(content, clients, layout.shape) == []
    # a user-vector table (users x factors) or raw records would be caught
    users = np.zeros((len(clients[0].users), FACTORS), np.float32)
    raw = np.stack([clients[0].record_users, clients[0].record_items], 1)
    leaky = RecordDict(
        {
            "arrays": ArrayRecord({"items": Array(raw), "users": Array(users)}),
            "metrics": MetricRecord({"num-examples": 999.0, "user_7_item": 4.0}),
        }
    )
    assert len(leaks(leaky, clients, layout.shape)) == 4


def test_epsilon_is_reported_at_one_over_users(model: FedTwoTower) -> None:
    eps = [r.epsilon for r in model.run_.rounds]
    assert eps[0] is not None and eps[1] is not None and 0 < eps[0] < eps[1]
    assert model.run_.delta == pytest.approx(1 / N_USERS)


def test_the_cold_item_is_scored_through_its_text(model: FedTwoTower, split: Split) -> None:
    train = split.train.interactions
    cold = int(split.train.item_vocab.indices([COLD])[0])
    assert cold not in set(train["item_idx"].to_list())
    scores = model.score([0, 1], [COLD])
    assert scores.shape == (2, 1) and np.isfinite(scores).all()
    assert COLD in model.recommend([0], k=N_ITEMS + 1)["item_id"].to_list()


def test_the_artifact_serves_and_places_new_items(model: FedTwoTower, tmp_path: Path) -> None:
    folder = model.save(tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["model"] == "fed_two_tower" and [r["round"] for r in meta["extra"]["rounds"]] == [1, 2]
    loaded = Recommender.load(folder)
    assert isinstance(loaded, FedTwoTower)
    np.testing.assert_allclose(loaded.score([0, 1]), model.score([0, 1]), rtol=1e-5)
    # a brand-new item: placed by the trained projection of its text alone
    loaded.add_items(pl.DataFrame({"item_id": [500], "title": ["even item new"]}))
    new = loaded.score([0, 1], [500])
    assert np.isfinite(new).all() and loaded.n_items == model.n_items + 1
    # known items keep their vectors; the new one is its text's projection (no ID part)
    np.testing.assert_array_equal(loaded.item_vectors()[: model.n_items], model.item_vectors())
    text = loaded.item_text_[-1]
    expected = text @ loaded.projection_[:-1] + loaded.projection_[-1]
    np.testing.assert_allclose(loaded.item_vectors()[-1], expected, rtol=1e-5, atol=1e-6)

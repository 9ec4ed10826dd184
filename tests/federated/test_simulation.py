"""A Flower simulation on a tiny dataset: two clients, two rounds, record-level DP.

Each simulation starts Ray (about 15 s on a busy 2-core machine), so the module runs one and checks
everything it can on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("opacus")

from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from lmrec.data.split import Split, leave_last_out
from lmrec.federated import FedMF, FedMFConfig
from lmrec.federated.accounting import epsilon
from lmrec.federated.clients import ClientData
from lmrec.models.base import Recommender
from lmrec.testing import make_checkerboard
from tests.federated.messages import hashed_clients, leaks

pytestmark = pytest.mark.distributed  # Ray starts a cluster of processes

N_USERS, N_ITEMS, FACTORS = 24, 12, 4


@pytest.fixture(scope="module")
def split() -> Split:
    return leave_last_out(make_checkerboard(N_USERS, N_ITEMS))


@pytest.fixture(scope="module")
def model(split: Split) -> FedMF:
    """Two clients (hash partition), two rounds, DP-SGD with noise multiplier 1, messages kept."""
    config = FedMFConfig(
        factors=FACTORS,
        clients=2,
        iterations=2,
        local_epochs=1,
        batch_size=16,
        dp="record",
        noise_multiplier=1.0,
        seed=3,
    )
    model = FedMF(config)
    seen: list[int] = []

    def server_eval(server_round: int, items: np.ndarray) -> float:
        # the simulation hands over each round's aggregated table; serve it through the model
        seen.append(server_round)
        assert items.shape == (N_ITEMS, FACTORS + 1)
        return float(model.with_items(items).score([0], [0])[0, 0])

    model.fit(split.train, valid=split.valid, keep_messages=True, server_eval=server_eval)
    model.server_rounds_ = seen  # type: ignore[attr-defined]
    return model


def _clients(split: Split, model: FedMF) -> list[ClientData]:
    return hashed_clients(split, model.config.seed)


def test_two_clients_two_rounds(model: FedMF) -> None:
    rounds = model.run_.rounds
    assert [r.round for r in rounds] == [1, 2] and all(r.clients == 2 for r in rounds)
    assert model.item_vectors().shape == (N_ITEMS, FACTORS + 1) and np.isfinite(model.item_vectors()).all()
    # per client and round: the item table down and up for training, down again for evaluation
    table = len(Array(np.zeros((N_ITEMS, FACTORS + 1), np.float32)).data)
    assert rounds[0].bytes_up == 2 * table and rounds[0].bytes_down == 4 * table
    assert all(r.valid_ndcg is not None and 0.0 <= r.valid_ndcg <= 1.0 for r in rounds)


def test_server_eval_sees_every_round_table(model: FedMF) -> None:
    assert model.server_rounds_ == [1, 2]  # type: ignore[attr-defined]
    rounds = model.run_.rounds
    assert all(r.server_ndcg is not None for r in rounds)
    # the last round's table is the model's: the score measured by server_eval is the model's score
    assert rounds[-1].server_ndcg == pytest.approx(float(model.score([0], [0])[0, 0]), rel=1e-5)


def test_the_server_receives_no_interactions(model: FedMF, split: Split) -> None:
    clients = _clients(split, model)
    received = model.run_.received
    assert len(received) == 2 * 2 * 2  # 2 rounds x 2 clients x (train + evaluate replies)
    for content in received:
        assert leaks(content, clients, (N_ITEMS, FACTORS + 1)) == []


def test_the_leak_check_can_fail(model: FedMF, split: Split) -> None:
    clients = _clients(split, model)
    raw = np.stack([clients[0].record_users, clients[0].record_items], 1)
    leaky = RecordDict(
        {
            "arrays": ArrayRecord({"items": Array(raw)}),
            "metrics": MetricRecord({"num-examples": 999.0, "user_7_item": 4.0}),
        }
    )
    assert len(leaks(leaky, clients, (N_ITEMS, FACTORS + 1))) == 3


def test_epsilon_grows_with_rounds_and_shrinks_with_noise(model: FedMF) -> None:
    eps = [r.epsilon for r in model.run_.rounds]
    assert eps[0] is not None and eps[1] is not None and 0 < eps[0] < eps[1]
    assert model.run_.delta == pytest.approx(1 / N_USERS)
    # the accountant the clients call: more noise, less ε; more steps, more ε
    assert epsilon(2.0, 0.1, 100, 1e-3) < epsilon(1.0, 0.1, 100, 1e-3) < epsilon(1.0, 0.1, 200, 1e-3)


def test_the_artifact_records_the_run_and_serves(model: FedMF, tmp_path: Path) -> None:
    folder = model.save(tmp_path / "m")
    extra = json.loads((folder / "model.json").read_text())["extra"]
    assert [r["round"] for r in extra["rounds"]] == [1, 2]
    assert extra["epsilon"] == pytest.approx(model.run_.rounds[-1].epsilon)
    loaded = Recommender.load(folder)
    np.testing.assert_allclose(loaded.score([0, 1]), model.score([0, 1]), rtol=1e-5)
    assert loaded.recommend([0], k=3).height == 3

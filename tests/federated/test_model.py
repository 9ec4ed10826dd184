"""``fed_mf`` and ``fed_two_tower`` pass the contract every lmrec model passes (fit runs a Flower
simulation)."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")
pytest.importorskip("opacus")

from lmrec.federated.model import FedMF, FedTwoTower
from lmrec.testing import RecommenderContract

pytestmark = pytest.mark.distributed  # every fit starts Ray


class TestFedMFContract(RecommenderContract):
    model_factory = staticmethod(
        lambda: FedMF(factors=8, clients=2, iterations=4, local_epochs=5, learning_rate=0.05, batch_size=32)
    )


class TestFedTwoTowerContract(RecommenderContract):
    model_factory = staticmethod(
        lambda: FedTwoTower(
            factors=8,
            encoder="hashing",
            clients=2,
            iterations=4,
            local_epochs=5,
            learning_rate=0.05,
            batch_size=32,
        )
    )

"""lmrec.federated.engine: seeded client sampling, the ClientApp that is pickled once, and the
polling loop that asks only nodes with pending messages (unit tests, then one cross-device
simulation run twice)."""

from __future__ import annotations

import threading
from queue import Queue
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

import flwr
import flwr.server.superlink.fleet.vce.vce_api as vce_api
from flwr.app import Context, Message
from ray import cloudpickle

from lmrec.data.split import leave_last_out
from lmrec.federated import FedMF, FedMFConfig, engine
from lmrec.federated.engine import (
    NodeSampler,
    SampledGrid,
    ShippedClientApp,
    add_pending_messages_to_queue,
    simulation_engine,
)
from lmrec.testing import make_checkerboard


def test_sampler_draws_partitions_from_seed_and_round_only() -> None:
    a, b = NodeSampler(10, 3, seed=7), NodeSampler(10, 3, seed=7)
    a.nodes.update({1000 + p: p for p in range(10)})
    b.nodes.update({50_000 - 17 * p: p for p in range(10)})  # other node ids, same partitions
    for r in (1, 2, 3):
        pa = sorted(a.nodes[n] for n in a(r, "train"))
        pb = sorted(b.nodes[n] for n in b(r, "train"))
        assert pa == pb and len(set(pa)) == 3
    rounds = {tuple(sorted(a.nodes[n] for n in a(r, "train"))) for r in range(1, 30)}
    assert len(rounds) > 10  # rounds differ
    other_seed = NodeSampler(10, 3, seed=8)
    other_seed.nodes.update(a.nodes)
    assert any(sorted(other_seed(r, "train")) != sorted(a(r, "train")) for r in range(1, 10))
    assert any(sorted(a(r, "evaluate")) != sorted(a(r, "train")) for r in range(1, 10))


def test_sampler_waits_for_the_engine_then_gives_up() -> None:
    sampler = NodeSampler(4, 2, seed=0, timeout=5.0)

    def register() -> None:
        sampler.nodes.update({10 + p: p for p in range(4)})

    threading.Timer(0.2, register).start()
    assert len(sampler(1, "train")) == 2
    with pytest.raises(RuntimeError, match="0 of 4 simulated clients registered"):
        NodeSampler(4, 2, seed=0, timeout=0.1)(1, "train")


def test_sampled_grid_shows_only_its_nodes() -> None:
    class Grid:
        run = "the grid's run"

        def get_node_ids(self) -> list[int]:
            return [1, 2, 3, 4]

    grid = SampledGrid(Grid(), [2, 4])
    assert grid.get_node_ids() == [2, 4] and grid.run == "the grid's run"


def test_shipped_client_app_is_pickled_once_and_unpickled_once() -> None:
    app = ShippedClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return msg

    first, second = cloudpickle.dumps(app), cloudpickle.dumps(app)
    assert first == second
    assert app._lmrec_payload is not None and len(first) < len(app._lmrec_payload) + 200
    engine._SHIPPED.clear()
    one, two = cloudpickle.loads(first), cloudpickle.loads(second)
    assert one is two and type(one) is flwr.clientapp.ClientApp
    assert one._registered_funcs.keys() == app._registered_funcs.keys()


class _FakeState:
    """Not Flower's InMemoryLinkState: the loop must ask every node, as Flower's does."""

    def __init__(self, pending: dict[int, list[str]]) -> None:
        self.pending = pending
        self.asked: list[int] = []

    def get_message_ins(self, node_id: int, limit: int) -> list[str]:
        self.asked.append(node_id)
        return self.pending.pop(node_id, [])[:limit]


def test_polling_asks_every_node_of_an_unknown_state() -> None:
    state, queue, stop = _FakeState({2: ["m2"], 3: ["m3"]}), Queue[Any](), threading.Event()
    threading.Timer(0.05, stop.set).start()
    add_pending_messages_to_queue(state, queue, {1: 0, 2: 1, 3: 2}, stop)
    assert state.asked[:3] == [1, 2, 3] and [queue.get(), queue.get()] == ["m2", "m3"]


def test_an_unchecked_flwr_runs_flowers_own_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flwr, "__version__", "9.0.0")
    poll = vce_api.add_messages_to_queue
    with simulation_engine(NodeSampler(2, 1, 0)) as patched:
        assert not patched and vce_api.add_messages_to_queue is poll


@pytest.mark.distributed  # Ray starts a cluster of processes
def test_cross_device_rounds_follow_the_seed() -> None:
    """Two runs of the same seeded cross-device simulation train the same clients and end with the
    same table; the engine is Flower's own again afterwards."""
    split = leave_last_out(make_checkerboard(24, 12))
    poll, register = vce_api.add_messages_to_queue, vce_api._register_nodes
    config = FedMFConfig(
        factors=4, partition="user", fraction=0.25, iterations=2, local_epochs=1, batch_size=8, seed=5
    )
    runs = []
    for _ in range(2):
        model = FedMF(config)
        model.fit(split.train)
        runs.append(model)
    a, b = (m.run_ for m in runs)
    assert [r.clients for r in a.rounds] == [6, 6]  # 25 % of the 24 users
    assert [r.loss for r in a.rounds] == [r.loss for r in b.rounds]
    np.testing.assert_array_equal(a.items, b.items)
    assert vce_api.add_messages_to_queue is poll and vce_api._register_nodes is register

"""Two per-message costs of Flower's Ray simulation engine, taken off the driver, and seeded
cross-device sampling.

The two costs are pure overhead: removing them changes no message and no result. They matter when there are
many clients (cross-device: 943 clients, 94 sampled per round, about 3,800 messages a run), where
profiles of the driver (py-spy, ``benchmarks/federated.py --parts device``) showed them taking
most of its CPU, which it shares with the two Ray actors that do the clients' work.

1. **Polling every node** (:func:`simulation_engine`). Flower's ``vce_api.add_messages_to_queue``
   (flwr 1.42) asks the in-memory link state for each registered node's next message ten times a
   second, and each ask scans every stored message: 943 nodes x ~94 messages per poll kept one core
   busy. The replacement first collects, in one pass, the nodes that have an undelivered message,
   and asks Flower's own ``get_message_ins`` only for those: the same messages in the same node
   order. It is installed only around our simulation, only for the flwr versions it was checked
   against (:data:`CHECKED_FLWR`, :func:`engine_supported`) and only for Flower's
   ``InMemoryLinkState``; anywhere else Flower's own loop runs.
2. **Pickling the ClientApp with every message** (:class:`ShippedClientApp`). Flower's Ray backend
   sends the ClientApp loader with each message, and Ray's cloudpickle serialises our closures by
   value every time (scanning ``sys.modules`` for each function: 40 % of the driver's active time
   once the polling was gone). :class:`ShippedClientApp` pickles itself once per simulation and
   travels as those bytes; each actor unpickles them once and reuses the app.

It also makes cross-device sampling follow the seed (:class:`NodeSampler`). Flower's strategies
draw a round's clients with ``random.sample`` over node ids that the engine draws from
``os.urandom``, so two runs with the same seed trained different clients. The engine's own
node-to-partition map is recorded when it registers the nodes, and each round's partitions are
drawn from ``(seed, round)``; the strategy is then shown only those nodes (:class:`SampledGrid`)
and, asked for all of them, sends them the round's messages as before.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from queue import Queue
from typing import Any

import numpy as np
from flwr.clientapp import ClientApp

#: the flwr versions whose ``add_messages_to_queue`` and ``InMemoryLinkState`` the polling
#: replacement was read against (same loop, same ``get_message_ins(node_id, limit=1)`` calls)
CHECKED_FLWR = ("1.42.",)


def pending_nodes(state: Any) -> set[int] | None:
    """The destination nodes of the link state's undelivered messages, or None where ``state`` is
    not Flower's ``InMemoryLinkState`` (then every node must be asked)."""
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

    if not isinstance(state, InMemoryLinkState):
        return None
    with state.lock:
        return {
            m.metadata.dst_node_id for m in state.message_ins_store.values() if m.metadata.delivered_at == ""
        }


def add_pending_messages_to_queue(
    state: Any, queue: Queue[Any], nodes_mapping: dict[int, int], f_stop: threading.Event
) -> None:
    """Flower's ``add_messages_to_queue`` loop, asking only nodes with an undelivered message."""
    while not f_stop.is_set():
        pending = pending_nodes(state)
        for node_id in nodes_mapping:
            if pending is not None and node_id not in pending:
                continue
            for msg in state.get_message_ins(node_id=node_id, limit=1):
                queue.put(msg)
        f_stop.wait(0.1)


def engine_supported() -> bool:
    """Whether the installed flwr is one :func:`simulation_engine` was checked against."""
    import flwr
    import flwr.server.superlink.fleet.vce.vce_api as vce_api

    return flwr.__version__.startswith(CHECKED_FLWR) and all(
        hasattr(vce_api, name) for name in ("add_messages_to_queue", "_register_nodes")
    )


class NodeSampler:
    """Which clients a cross-device round trains: ``n_sampled`` of the ``n_clients`` partitions,
    drawn without replacement from ``(seed, round)`` alone, as the engine's node ids.

    ``nodes`` (node id -> partition id) is filled by :func:`simulation_engine` when Flower's engine
    registers its nodes.
    """

    def __init__(self, n_clients: int, n_sampled: int, seed: int, *, timeout: float = 600.0) -> None:
        self.n_clients = n_clients
        self.n_sampled = n_sampled
        self.seed = seed
        self.timeout = timeout
        self.nodes: dict[int, int] = {}

    def __call__(self, server_round: int, purpose: str) -> list[int]:
        """The node ids of this round's clients (``purpose``: "train" or "evaluate", drawn apart)."""
        deadline = time.monotonic() + self.timeout
        while len(self.nodes) < self.n_clients:  # the engine registers nodes beside the server
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self.nodes)} of {self.n_clients} simulated clients registered")
            time.sleep(0.05)
        rng = np.random.default_rng([self.seed, server_round, 0 if purpose == "train" else 1])
        chosen = rng.choice(self.n_clients, self.n_sampled, replace=False)
        node_of = {partition: node for node, partition in self.nodes.items()}
        return [node_of[int(p)] for p in np.sort(chosen)]


class SampledGrid:
    """A Flower ``Grid`` that shows a strategy only ``nodes`` (everything else is the grid's)."""

    def __init__(self, grid: Any, nodes: list[int]) -> None:
        self._grid = grid
        self._nodes = list(nodes)

    def get_node_ids(self) -> list[int]:
        return list(self._nodes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


@contextlib.contextmanager
def simulation_engine(sampler: NodeSampler | None = None) -> Iterator[bool]:
    """Within the block, Flower's simulation engine polls only nodes with pending messages and
    fills ``sampler.nodes`` as it registers its nodes; yields whether it did (False: an unchecked
    flwr version, Flower's engine runs as it is)."""
    import flwr.server.superlink.fleet.vce.vce_api as vce_api

    if not engine_supported():
        yield False
        return
    poll, register = vce_api.add_messages_to_queue, vce_api._register_nodes

    def register_and_record(*args: Any, **kwargs: Any) -> dict[int, int]:
        mapping: dict[int, int] = register(*args, **kwargs)
        if sampler is not None:
            sampler.nodes.update(mapping)
        return mapping

    vce_api.add_messages_to_queue = add_pending_messages_to_queue
    vce_api._register_nodes = register_and_record
    try:
        yield True
    finally:
        vce_api.add_messages_to_queue, vce_api._register_nodes = poll, register


#: the app each Ray actor last unpickled: (key, app)
_SHIPPED: dict[str, ClientApp] = {}
_SHIPPED_LOCK = threading.Lock()


def _receive(key: str, payload: bytes) -> ClientApp:
    """The ClientApp behind ``payload``, unpickled once per process (the last one is kept)."""
    with _SHIPPED_LOCK:
        app = _SHIPPED.get(key)
        if app is None:
            from ray import cloudpickle

            app = cloudpickle.loads(payload)
            _SHIPPED.clear()
            _SHIPPED[key] = app
        return app


class ShippedClientApp(ClientApp):
    """A ``ClientApp`` that Ray pickles once: it travels as the bytes of a plain ``ClientApp`` with
    the same handlers and mods (cloudpickled on first use) and a key the receiving process caches
    it under."""

    _lmrec_key: str
    _lmrec_payload: bytes | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lmrec_key = uuid.uuid4().hex
        self._lmrec_payload = None

    def __reduce__(self) -> tuple[Callable[[str, bytes], ClientApp], tuple[str, bytes]]:
        if self._lmrec_payload is None:
            from ray import cloudpickle

            plain = ClientApp.__new__(ClientApp)
            plain.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_lmrec")})
            self._lmrec_payload = cloudpickle.dumps(plain)
        return (_receive, (self._lmrec_key, self._lmrec_payload))

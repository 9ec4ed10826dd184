"""Federated BPR-MF on Flower: the ClientApp, the ServerApp and Flower's simulation engine.

Nothing here moves data between processes by itself: the ``ServerApp`` runs a Flower strategy
(``FedAvg``, ``FedProx`` or ``FedAdam``, optionally wrapped in Flower's server-side DP clipping),
``flwr.simulation.run_simulation`` delivers its messages to ``ClientApp`` instances on Ray actors,
and each client answers with the item factors it trained and a few metrics. Every message the
server receives is an ``ArrayRecord`` holding ``items`` (the ``n_items x (factors + 1)`` item table)
and a ``MetricRecord`` of numbers (record count, loss, ε, validation NDCG); user ids, item ids and
the user factors stay in the client's ``Context.state``. For federated two-tower (``text`` given)
``items`` holds the packed item tower (:class:`~lmrec.federated.tower.TowerLayout`) instead, and the
public item text vectors are read by every client from a file, like the clients' own data.

With ``secagg=True`` the server runs Flower's SecAgg+ instead (:mod:`lmrec.federated.secagg`):
Flower's legacy ``DefaultWorkflow`` with ``SecAggPlusWorkflow`` as its fit step, and the clients'
train handler inside ``secaggplus_mod``; the same client code trains, only the message layout and
the aggregation change, and the server receives masked tables whose sum alone it can unmask.

Privacy accounting always comes from Opacus's RDP accountant (``opacus.accountants.RDPAccountant``):
* ``dp="record"``: each client runs DP-SGD (Poisson sampling rate ``q = 1 / batches per epoch``,
  noise multiplier ``z``) and keeps its accountant history ``(z, q, steps)`` across rounds; the
  reported ε is the largest over clients (a record lives on one client only).
* ``dp="client"``: Flower's ``DifferentialPrivacyServerSideFixedClipping`` clips each sampled
  client's update to ``max_grad_norm`` and adds ``N(0, (z · C / m)²)`` to the mean of ``m`` sampled
  clients: DP-FedAvg (McMahan et al. 2018), accounted as the subsampled Gaussian mechanism with
  ``q = m / n_clients``, one step per round. Flower samples ``m`` clients without replacement while
  the accountant assumes Poisson sampling: the usual approximation of DP-FedAvg papers, stated here.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.mod import fixedclipping_mod
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from lmrec.federated.accounting import client_noise, epsilon, noise_for
from lmrec.federated.clients import ClientData, client_data, load_clients, save_clients
from lmrec.federated.config import FedMFConfig, FedTwoTowerConfig
from lmrec.federated.engine import NodeSampler, ShippedClientApp, engine_supported, simulation_engine
from lmrec.federated.local import LocalConfig, local_update
from lmrec.federated.secagg import (
    SecAggObserved,
    check_secagg,
    client_mods,
    legacy_evaluate,
    legacy_train,
    make_legacy_strategy,
    run_secagg,
    secagg_workflow,
)
from lmrec.federated.server import FederatedRun, Observed, RoundLog, items_of, make_strategy, num
from lmrec.federated.tower import TowerLayout

__all__ = ["ClientData", "FederatedRun", "RoundLog", "client_data", "simulate"]

#: ranking cut-off of the per-round validation metric
VALID_K = 10


def _ndcg(scores: np.ndarray, seen: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """NDCG@10 of one target per row (full ranking, each row's history masked)."""
    s = scores.copy()
    for row, items in enumerate(seen):
        s[row, items] = -np.inf
    target_score = s[np.arange(len(targets)), targets]
    rank = (s > target_score[:, None]).sum(1)  # ties go to the target: it is one of many at most
    return np.where(rank < VALID_K, 1.0 / np.log2(rank + 2.0), 0.0)


def simulate(
    clients: list[ClientData],
    n_items: int,
    n_users: int,
    config: FedMFConfig,
    *,
    on_round: Callable[[RoundLog], None] | None = None,
    keep_messages: bool = False,
    server_eval: Callable[[int, np.ndarray], float | None] | None = None,
    text: np.ndarray | None = None,
) -> FederatedRun:
    """Run ``config.iterations`` rounds of federated BPR-MF over ``clients`` in Flower's simulation
    engine; return the final item factors and the per-round log.

    ``server_eval(round, items)`` (simulation only) measures each round's aggregated item table, as
    Flower's server-side ``evaluate_fn``; its number lands in :attr:`RoundLog.server_ndcg`.

    ``text`` (``n_items x text_dim``, the public item text vectors; with a
    :class:`~lmrec.federated.config.FedTwoTowerConfig`) makes it federated two-tower: what travels
    and is aggregated is the packed item tower of :class:`~lmrec.federated.tower.TowerLayout`, every
    client reads the same text vectors, and ``server_eval``, the client's evaluation and the returned
    ``items`` see the item table the tower computes.
    """
    c = config
    layout: TowerLayout | None = None
    if text is not None:
        if not isinstance(c, FedTwoTowerConfig):
            raise TypeError(f"item text vectors need a FedTwoTowerConfig, not {type(c).__name__}")
        if text.shape[0] != n_items:
            raise ValueError(f"item text vectors have {text.shape[0]} rows for {n_items} items")
        layout = TowerLayout(text.shape[1], n_items, c.factors, ids=c.fusion == "sum")

    n_clients = len(clients)
    delta = c.dp_delta if c.dp_delta is not None else 1.0 / max(n_users, 2)
    n_sampled = max(1, int(n_clients * c.fraction))
    has_valid = any(len(d.valid_users) for d in clients)
    local = LocalConfig(
        factors=c.factors,
        learning_rate=c.learning_rate,
        regularization=c.weight_decay,
        optimizer=c.local_optimizer,
        epochs=c.local_epochs,
        batch_size=c.batch_size,
        max_grad_norm=c.max_grad_norm,
        proximal_mu=c.proximal_mu if c.strategy == "fedprox" else 0.0,
    )
    central_z: float | None = None
    if c.dp == "client":
        central_z = c.noise_multiplier
        if central_z is None:
            assert c.dp_epsilon is not None
            central_z = noise_for(c.dp_epsilon, delta, n_sampled / n_clients, c.iterations)

    def central_epsilon(server_round: int) -> float | None:
        if central_z is None:
            return None
        return epsilon(central_z, n_sampled / n_clients, server_round, delta)

    folder = tempfile.TemporaryDirectory(prefix="lmrec-fed-")
    data_file = str(Path(folder.name) / "clients.npz")
    save_clients(clients, Path(data_file))
    # public item text, written once like the clients' data and read once per Ray actor
    text_file = str(Path(folder.name) / "text.npy")
    if text is not None:
        np.save(text_file, np.ascontiguousarray(text, np.float32))

    def table_of(shared: np.ndarray) -> np.ndarray:
        """The item table the federated parameters stand for (FedMF: the parameters themselves)."""
        return shared if layout is None else layout.table(shared, load_text(text_file))

    # each client's DP-SGD noise multiplier, found here once (Opacus's search takes about a second
    # and clients with as many batches share it) rather than by every client on its first round
    record_z = {pid: _client_noise(d, c, delta) for pid, d in enumerate(clients)} if c.dp == "record" else {}

    max_weight = 0.0
    if c.secagg:
        max_weight = check_secagg(c, n_clients, n_sampled, [d.n_records for d in clients])

    def fit_client(
        items: np.ndarray, server_round: int, context: Context
    ) -> tuple[np.ndarray, dict[str, float]]:
        """One client's round: local BPR steps on its own records; its user factors stay in its state."""
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        data = load_clients(data_file)[pid]
        users = _user_factors(context, pid, len(data.users), c)
        rng = np.random.default_rng([c.seed, pid, server_round])
        z = 0.0
        if c.dp == "record":
            z = record_z[pid]
            if "dp" not in context.state.config_records:  # the client's accountant history
                context.state["dp"] = ConfigRecord({"steps": 0})
        run = local_update(
            items,
            users,
            data.record_users,
            data.record_items,
            LocalConfig(**{**local.__dict__, "noise_multiplier": z}),
            rng,
            tower=None if layout is None else (load_text(text_file), layout),
        )
        context.state["local"] = ArrayRecord({"users": Array(run.users)})
        metrics = {"num-examples": float(data.n_records), "loss": run.loss}
        if c.dp == "record":
            acc = context.state.config_records["dp"]
            steps = int(num(acc, "steps")) + run.steps
            acc["steps"] = steps
            metrics["epsilon"] = epsilon(z, run.sample_rate, steps, delta)
        return run.items, metrics

    def evaluate_client(items: np.ndarray, context: Context) -> tuple[int, float]:
        """The client's validation users and their mean NDCG@10 against ``items``."""
        pid = int(context.node_config["partition-id"])
        data = load_clients(data_file)[pid]
        users = _user_factors(context, pid, len(data.users), c)
        ndcg = 0.0
        items = table_of(items)
        if len(data.valid_users):
            scores = users[data.valid_users] @ items[:, :-1].T + items[:, -1]
            seen = [data.record_items[data.record_users == u] for u in data.valid_users]
            ndcg = float(_ndcg(scores, seen, data.valid_items).mean())
        return len(data.valid_users), ndcg

    if c.secagg:
        client_app = ShippedClientApp(mods=client_mods(c))

        @client_app.train()
        def train_legacy(msg: Message, context: Context) -> Message:
            return legacy_train(msg, context, fit_client)

        @client_app.evaluate()
        def evaluate_legacy(msg: Message, context: Context) -> Message:
            return legacy_evaluate(msg, context, evaluate_client)

    else:
        # Flower's message-API clipping mod for client-side DP clipping (the strategy sends the norm)
        client_app = ShippedClientApp(
            mods=[fixedclipping_mod] if c.dp == "client" and c.dp_clipping == "client" else []
        )

        @client_app.train()
        def train(msg: Message, context: Context) -> Message:
            server_round = int(num(msg.content.config_records["config"], "server-round"))
            items, metrics = fit_client(items_of(msg.content), server_round, context)
            return Message(
                RecordDict(
                    {"arrays": ArrayRecord({"items": Array(items)}), "metrics": MetricRecord(dict(metrics))}
                ),
                reply_to=msg,
            )

        @client_app.evaluate()
        def evaluate(msg: Message, context: Context) -> Message:
            n, ndcg = evaluate_client(items_of(msg.content), context)
            return Message(
                RecordDict({"metrics": MetricRecord({"num-examples": n, "ndcg": ndcg})}), reply_to=msg
            )

    if layout is None:
        init = (np.random.default_rng(c.seed).standard_normal((n_items, c.factors + 1)) * 0.1).astype(
            np.float32
        )
        init[:, -1] = 0.0
    else:
        init = layout.init(c.seed)
    final: dict[str, np.ndarray] = {}
    received: list[RecordDict] = []
    # a sampled round's clients follow c.seed (Flower's own draw does not; lmrec.federated.engine);
    # SecAgg+'s legacy workflow samples through its client manager and keeps Flower's draw
    sampler = (
        NodeSampler(n_clients, n_sampled, c.seed)
        if n_sampled < n_clients and not c.secagg and engine_supported()
        else None
    )
    rounds: list[RoundLog]
    server_app = ServerApp()
    if c.secagg:
        server_ndcg: dict[int, float] = {}

        def legacy_evaluate_fn(
            server_round: int, arrays: list[np.ndarray], config: dict[str, Any]
        ) -> tuple[float, dict[str, Any]] | None:
            """Flower's centralised evaluation, after each round's fit (simulation only)."""
            if server_eval is None or server_round == 0:
                return None
            value = server_eval(server_round, table_of(arrays[0].astype(np.float32)))
            if value is None:
                return None
            server_ndcg[server_round] = value
            return 0.0, {"ndcg": value}

        legacy_observer = SecAggObserved(
            make_legacy_strategy(c, n_clients, n_sampled, has_valid, central_z, init, legacy_evaluate_fn),
            client_epsilon=central_epsilon,
            on_round=on_round,
        )
        workflow = secagg_workflow(c, max_weight)

        @server_app.main()
        def main_secagg(grid: Grid, context: Context) -> None:
            final["items"], got = run_secagg(
                grid, context, c, legacy_observer, workflow, server_ndcg, keep=keep_messages
            )
            received.extend(got)

        rounds = legacy_observer.rounds
    else:
        observer = Observed(
            make_strategy(c, n_clients, n_sampled, has_valid, central_z, seeded_sampling=sampler is not None),
            client_epsilon=central_epsilon,
            on_round=on_round,
            keep=keep_messages,
            evaluate_every=c.evaluate_every,
            sample=sampler,
        )

        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            """Flower calls this last in every round: the round's log is complete here."""
            value = None
            if server_eval is not None and server_round > 0:
                value = server_eval(server_round, table_of(arrays["items"].numpy()))
            observer.end_round(server_round, value)
            return None if value is None else MetricRecord({"ndcg": value})

        @server_app.main()
        def main(grid: Grid, context: Context) -> None:
            result = observer.start(
                grid=grid,
                initial_arrays=ArrayRecord({"items": Array(init)}),
                num_rounds=c.iterations,
                evaluate_fn=evaluate_fn,
            )
            final["items"] = result.arrays["items"].numpy()

        rounds = observer.rounds
        received = observer.received

    # Ray warns (FutureWarning) that it will stop overriding accelerator variables; we use none
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # Flower logs every round at INFO and a deprecation notice for run_simulation at WARNING;
    # progress comes from on_round, and a client's failure reaches Observed as an error reply
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.ERROR)
    try:
        # the engine's per-message overhead, off the driver (lmrec.federated.engine)
        with simulation_engine(sampler):
            run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=n_clients,
                backend_config={
                    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                    "init_args": (
                        {"address": c.ray_address, "log_to_driver": False}
                        if c.ray_address
                        # "local": a Ray instance of its own, never one another process started on
                        # this machine (a plain ray.init() attaches to it and then refuses num_cpus)
                        else {"address": "local", "num_cpus": c.simulation_cpus, "include_dashboard": False}
                    ),
                },
            )
        if "items" not in final:
            raise RuntimeError("the Flower simulation ended without a model (see the log above)")
        shared = np.ascontiguousarray(final["items"], dtype=np.float32)
        items = np.ascontiguousarray(table_of(shared), dtype=np.float32)
    finally:
        flwr_log.setLevel(level)
        folder.cleanup()
    return FederatedRun(
        items=items,
        shared=shared,
        rounds=rounds,
        delta=delta if c.dp != "none" else None,
        noise_multiplier=central_z,
        received=received,
    )


@functools.lru_cache(maxsize=2)
def load_text(path: str) -> np.ndarray:
    """The public item text vectors of ``path``, read once per process (see ``load_clients``)."""
    return np.load(path)


def _user_factors(context: Context, pid: int, n: int, c: FedMFConfig) -> np.ndarray:
    """The client's user factors: from its own state, or freshly drawn on its first round."""
    if "local" in context.state.array_records:
        return context.state.array_records["local"]["users"].numpy()
    rng = np.random.default_rng([c.seed, pid, 0xFED])
    return (rng.standard_normal((n, c.factors)) * 0.1).astype(np.float32)


def _client_noise(data: ClientData, c: FedMFConfig, delta: float) -> float:
    """A client's DP-SGD noise multiplier: ``dp_epsilon`` is met after every round it may be sampled
    in (Opacus's ``get_noise_multiplier`` for its Poisson rate and step count), or the fixed
    ``noise_multiplier``."""
    if c.noise_multiplier is not None:
        return float(c.noise_multiplier)
    assert c.dp_epsilon is not None
    return client_noise(c.dp_epsilon, delta, data.n_records, c.batch_size, c.local_epochs * c.iterations)

"""Federated BPR-MF on Flower: the ClientApp, the ServerApp and Flower's simulation engine.

Nothing here moves data between processes by itself: the ``ServerApp`` runs a Flower strategy
(``FedAvg``, ``FedProx`` or ``FedAdam``, optionally wrapped in Flower's server-side DP clipping),
``flwr.simulation.run_simulation`` delivers its messages to ``ClientApp`` instances on Ray actors,
and each client answers with the item factors it trained and a few metrics. Every message the
server receives is an ``ArrayRecord`` holding ``items`` (the ``n_items x (factors + 1)`` item table)
and a ``MetricRecord`` of numbers (record count, loss, ε, validation NDCG); user ids, item ids and
the user factors stay in the client's ``Context.state``.

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

import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from lmrec.federated.accounting import epsilon, noise_for
from lmrec.federated.clients import ClientData, client_data, load_clients, save_clients
from lmrec.federated.config import FedMFConfig
from lmrec.federated.local import LocalConfig, local_update
from lmrec.federated.server import FederatedRun, Observed, RoundLog, items_of, make_strategy, num

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
) -> FederatedRun:
    """Run ``config.iterations`` rounds of federated BPR-MF over ``clients`` in Flower's simulation
    engine; return the final item factors and the per-round log.

    ``server_eval(round, items)`` (simulation only) measures each round's aggregated item table, as
    Flower's server-side ``evaluate_fn``; its number lands in :attr:`RoundLog.server_ndcg`.
    """
    c = config
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
    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        data = load_clients(data_file)[pid]
        server_round = int(num(msg.content.config_records["config"], "server-round"))
        items = items_of(msg.content)
        users = _user_factors(context, pid, len(data.users), c)
        rng = np.random.default_rng([c.seed, pid, server_round])
        z = 0.0
        if c.dp == "record":
            z = _record_noise(context, data, c, delta)
        run = local_update(
            items,
            users,
            data.record_users,
            data.record_items,
            LocalConfig(**{**local.__dict__, "noise_multiplier": z}),
            rng,
        )
        context.state["local"] = ArrayRecord({"users": Array(run.users)})
        metrics: dict[str, int | float | list[int] | list[float]] = {
            "num-examples": float(data.n_records),
            "loss": run.loss,
        }
        if c.dp == "record":
            acc = context.state.config_records["dp"]
            steps = int(num(acc, "steps")) + run.steps
            acc["steps"] = steps
            acc["sample_rate"] = run.sample_rate
            metrics["epsilon"] = epsilon(z, run.sample_rate, steps, delta)
        return Message(
            RecordDict(
                {"arrays": ArrayRecord({"items": Array(run.items)}), "metrics": MetricRecord(metrics)}
            ),
            reply_to=msg,
        )

    @client_app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        data = load_clients(data_file)[pid]
        items = items_of(msg.content)
        users = _user_factors(context, pid, len(data.users), c)
        ndcg = 0.0
        if len(data.valid_users):
            scores = users[data.valid_users] @ items[:, :-1].T + items[:, -1]
            seen = [data.record_items[data.record_users == u] for u in data.valid_users]
            ndcg = float(_ndcg(scores, seen, data.valid_items).mean())
        return Message(
            RecordDict({"metrics": MetricRecord({"num-examples": len(data.valid_users), "ndcg": ndcg})}),
            reply_to=msg,
        )

    observer = Observed(
        make_strategy(c, n_clients, n_sampled, has_valid, central_z),
        client_epsilon=central_epsilon,
        on_round=on_round,
        keep=keep_messages,
    )
    final: dict[str, np.ndarray] = {}
    server_app = ServerApp()

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Flower calls this last in every round: the round's log is complete here."""
        value = None
        if server_eval is not None and server_round > 0:
            value = server_eval(server_round, arrays["items"].numpy())
        observer.end_round(server_round, value)
        return None if value is None else MetricRecord({"ndcg": value})

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        rng = np.random.default_rng(c.seed)
        init = (rng.standard_normal((n_items, c.factors + 1)) * 0.1).astype(np.float32)
        init[:, -1] = 0.0
        result = observer.start(
            grid=grid,
            initial_arrays=ArrayRecord({"items": Array(init)}),
            num_rounds=c.iterations,
            evaluate_fn=evaluate_fn,
        )
        final["items"] = result.arrays["items"].numpy()

    # Ray warns (FutureWarning) that it will stop overriding accelerator variables; we use none
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # Flower logs every round at INFO and a deprecation notice for run_simulation at WARNING;
    # progress comes from on_round, and a client's failure reaches Observed as an error reply
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.ERROR)
    try:
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
    finally:
        flwr_log.setLevel(level)
        folder.cleanup()
    if "items" not in final:
        raise RuntimeError("the Flower simulation ended without a model (see the log above)")
    return FederatedRun(
        items=np.ascontiguousarray(final["items"], dtype=np.float32),
        rounds=observer.rounds,
        delta=delta if c.dp != "none" else None,
        noise_multiplier=central_z,
        received=observer.received,
    )


def _user_factors(context: Context, pid: int, n: int, c: FedMFConfig) -> np.ndarray:
    """The client's user factors: from its own state, or freshly drawn on its first round."""
    if "local" in context.state.array_records:
        return context.state.array_records["local"]["users"].numpy()
    rng = np.random.default_rng([c.seed, pid, 0xFED])
    return (rng.standard_normal((n, c.factors)) * 0.1).astype(np.float32)


def _record_noise(context: Context, data: ClientData, c: FedMFConfig, delta: float) -> float:
    """The client's DP-SGD noise multiplier, fixed on its first round so that ``dp_epsilon`` is met
    after every round it may be sampled in (Opacus's ``get_noise_multiplier`` on its own records)."""
    if "dp" in context.state.config_records:
        return num(context.state.config_records["dp"], "z")
    batches = max(1, math.ceil(data.n_records / min(c.batch_size, max(data.n_records, 1))))
    if c.noise_multiplier is not None:
        z = float(c.noise_multiplier)
    else:
        assert c.dp_epsilon is not None
        z = noise_for(c.dp_epsilon, delta, 1.0 / batches, batches * c.local_epochs * c.iterations)
    context.state["dp"] = ConfigRecord({"z": z, "steps": 0, "sample_rate": 1.0 / batches})
    return z

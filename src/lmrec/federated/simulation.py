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

import functools
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedProx,
    Strategy,
)
from flwr.simulation import run_simulation
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from lmrec.federated.config import FedMFConfig
from lmrec.federated.local import LocalConfig, local_update

#: ranking cut-off of the per-round validation metric
VALID_K = 10
#: Rényi orders the accountant optimises over: Opacus's defaults (up to 63) plus higher ones, which
#: the few steps of early rounds need for a tight bound (Opacus warns when the largest order wins)
ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 1024))


@dataclass(frozen=True)
class ClientData:
    """One client's private data: its users' records, local user indices ``0 .. n_users - 1``."""

    #: internal (global) indices of the client's users; only used to build the data, never sent
    users: np.ndarray
    #: per record: local user index and item index
    record_users: np.ndarray
    record_items: np.ndarray
    #: held-out validation targets (local user index, item index), possibly empty
    valid_users: np.ndarray
    valid_items: np.ndarray

    @property
    def n_records(self) -> int:
        return len(self.record_users)


def client_data(
    owner: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    valid_users: np.ndarray | None = None,
    valid_items: np.ndarray | None = None,
) -> list[ClientData]:
    """Split records (``users``/``items``: internal indices) over clients by ``owner[user]``."""
    n_clients = int(owner.max()) + 1 if len(owner) else 0
    vu = np.zeros(0, np.int64) if valid_users is None else np.asarray(valid_users, np.int64)
    vi = np.zeros(0, np.int64) if valid_items is None else np.asarray(valid_items, np.int64)
    out = []
    rec_owner, val_owner = owner[users], owner[vu]
    for c in range(n_clients):
        mine = np.flatnonzero(owner == c)
        local = np.full(len(owner), -1, np.int64)
        local[mine] = np.arange(len(mine))
        r = rec_owner == c
        v = val_owner == c
        out.append(ClientData(mine, local[users[r]], np.asarray(items[r], np.int64), local[vu[v]], vi[v]))
    return out


@dataclass(frozen=True)
class RoundLog:
    """What the server knows after one round (all of it from the clients' metric records)."""

    round: int
    clients: int
    loss: float
    #: mean over validation users of the clients' own NDCG@10 (local user factors); None: no valid
    valid_ndcg: float | None
    #: bytes of arrays the server sent / received this round (train and evaluate messages)
    bytes_down: int
    bytes_up: int
    #: ε spent so far at δ (None without DP)
    epsilon: float | None


@dataclass
class FederatedRun:
    items: np.ndarray
    rounds: list[RoundLog]
    delta: float | None
    noise_multiplier: float | None
    #: every RecordDict the server received, when asked for (tests inspect them)
    received: list[RecordDict] = field(default_factory=list)

    @property
    def epsilon(self) -> float | None:
        return self.rounds[-1].epsilon if self.rounds else None


_FIELDS = ("users", "record_users", "record_items", "valid_users", "valid_items")


def _save_clients(clients: list[ClientData], path: Path) -> None:
    """All clients' arrays in one ``.npz`` (each field concatenated, with per-client offsets)."""
    arrays: dict[str, np.ndarray] = {}
    for f in _FIELDS:
        parts = [np.asarray(getattr(d, f), np.int64) for d in clients]
        arrays[f] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        arrays[f"{f}.offsets"] = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy stubs: allow_pickle clashes with **kwds


@functools.lru_cache(maxsize=2)
def _load_clients(path: str) -> list[ClientData]:
    """The clients of ``path``, read once per process (a Ray actor serves many messages).

    Flower's Ray backend pickles the ClientApp with every message; a ClientApp that captured the
    data itself would ship every client's records with every message (943 clients: seconds each).
    """
    with np.load(path) as z:
        cols = {f: (z[f], z[f"{f}.offsets"]) for f in _FIELDS}
    n = len(cols["users"][1]) - 1
    return [ClientData(*(v[o[i] : o[i + 1]] for v, o in (cols[f] for f in _FIELDS))) for i in range(n)]


def _nbytes(content: RecordDict) -> int:
    return sum(len(a.data) for rec in content.array_records.values() for a in rec.values())


class _Observed(Strategy):
    """Flower strategy wrapper: forwards everything, counts bytes, tracks ε and logs each round.

    Replies are sorted by their metrics before aggregation, so a seeded run does not depend on the
    order in which Ray's actors answered (floating-point sums are order dependent).
    """

    def __init__(
        self,
        inner: Strategy,
        *,
        client_epsilon: Callable[[int], float | None],
        on_round: Callable[[RoundLog], None] | None,
        keep: bool,
    ) -> None:
        self.inner = inner
        self.client_epsilon = client_epsilon
        self.on_round = on_round
        self.keep = keep
        self.received: list[RecordDict] = []
        self.rounds: list[RoundLog] = []
        self._down = self._up = 0
        self._train: dict[str, float] = {}
        self._clients = 0
        self._eps = 0.0

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._down = sum(_nbytes(m.content) for m in messages)
        self._up = 0
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = sorted(replies, key=_reply_key)
        ok = [m for m in replies if not m.has_error()]
        failed = [m for m in replies if m.has_error()]
        if failed:  # a silently smaller average would hide a bug in the client code
            reason = " ".join((failed[0].error.reason or "no reason given").split())[:300]
            raise RuntimeError(f"round {server_round}: {len(failed)} client(s) failed; the first: {reason}")
        self._up = sum(_nbytes(m.content) for m in ok)
        self._clients = len(ok)
        if self.keep:
            self.received.extend(m.content for m in ok)
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        self._train = {k: _num(metrics, k) for k in metrics} if metrics is not None else {}
        client_eps = max((_metric(m.content, "epsilon") for m in ok), default=0.0)
        central = self.client_epsilon(server_round)
        self._eps = max(self._eps, client_eps, central or 0.0)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.inner.configure_evaluate(server_round, arrays, config, grid))
        self._down += sum(_nbytes(m.content) for m in messages)
        return messages

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = sorted(replies, key=_reply_key)
        if self.keep:
            self.received.extend(m.content for m in replies if not m.has_error())
        self._up += sum(_nbytes(m.content) for m in replies if not m.has_error())
        counted = [m for m in replies if not m.has_error() and _metric(m.content, "num-examples") > 0]
        metrics = self.inner.aggregate_evaluate(server_round, counted) if counted else None
        self._log(server_round, None if metrics is None else _num(metrics, "ndcg"))
        return metrics

    def _log(self, server_round: int, ndcg: float | None) -> None:
        log = RoundLog(
            round=server_round,
            clients=self._clients,
            loss=float(self._train.get("loss", math.nan)),
            valid_ndcg=ndcg,
            bytes_down=self._down,
            bytes_up=self._up,
            epsilon=self._eps if self._eps > 0 else None,
        )
        self.rounds.append(log)
        if self.on_round is not None:
            self.on_round(log)


def _reply_key(m: Message) -> tuple[float, ...]:
    if m.has_error():
        return (math.inf,)
    return tuple(_metric(m.content, k) for k in ("num-examples", "loss", "ndcg"))


def _num(record: MetricRecord | ConfigRecord, key: str) -> float:
    """A number from a Flower record (their values are typed as a union of everything storable)."""
    value = record.get(key, 0.0)
    if not isinstance(value, (int, float)):
        raise TypeError(f"record value {key!r} is {type(value).__name__}, not a number")
    return float(value)


def _metric(content: RecordDict, key: str) -> float:
    """``key`` of the one MetricRecord of a reply (0 when absent)."""
    return _num(next(iter(content.metric_records.values())), key)


def _items(content: RecordDict) -> np.ndarray:
    """The item table of a message (its one ArrayRecord, key ``items``)."""
    return next(iter(content.array_records.values()))["items"].numpy()


def _train_metrics(records: list[RecordDict], weighting: str) -> MetricRecord:
    """Record-weighted mean loss; ε is the largest client's (records live on one client each)."""
    w = np.array([_metric(r, weighting) for r in records])
    loss = np.array([_metric(r, "loss") for r in records])
    eps = max(_metric(r, "epsilon") for r in records)
    mean = float((w * loss).sum() / w.sum()) if w.sum() > 0 else math.nan
    return MetricRecord({"loss": mean, "epsilon": eps, weighting: float(w.sum())})


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
) -> FederatedRun:
    """Run ``config.iterations`` rounds of federated BPR-MF over ``clients`` in Flower's simulation
    engine; return the final item factors and the per-round log."""
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
            central_z = float(
                get_noise_multiplier(
                    target_epsilon=c.dp_epsilon,
                    target_delta=delta,
                    sample_rate=n_sampled / n_clients,
                    steps=c.iterations,
                    accountant="rdp",
                    alphas=ALPHAS,
                )
            )

    def central_epsilon(server_round: int) -> float | None:
        if central_z is None:
            return None
        return _epsilon(central_z, n_sampled / n_clients, server_round, delta)

    folder = tempfile.TemporaryDirectory(prefix="lmrec-fed-")
    data_file = str(Path(folder.name) / "clients.npz")
    _save_clients(clients, Path(data_file))
    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        data = _load_clients(data_file)[pid]
        server_round = int(_num(msg.content.config_records["config"], "server-round"))
        items = _items(msg.content)
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
            steps = int(_num(acc, "steps")) + run.steps
            acc["steps"] = steps
            acc["sample_rate"] = run.sample_rate
            metrics["epsilon"] = _epsilon(z, run.sample_rate, steps, delta)
        return Message(
            RecordDict(
                {"arrays": ArrayRecord({"items": Array(run.items)}), "metrics": MetricRecord(metrics)}
            ),
            reply_to=msg,
        )

    @client_app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        data = _load_clients(data_file)[pid]
        items = _items(msg.content)
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

    observer = _Observed(
        _strategy(c, n_clients, n_sampled, has_valid, central_z),
        client_epsilon=central_epsilon,
        on_round=on_round,
        keep=keep_messages,
    )
    final: dict[str, np.ndarray] = {}
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        rng = np.random.default_rng(c.seed)
        init = (rng.standard_normal((n_items, c.factors + 1)) * 0.1).astype(np.float32)
        init[:, -1] = 0.0
        result = observer.start(
            grid=grid, initial_arrays=ArrayRecord({"items": Array(init)}), num_rounds=c.iterations
        )
        final["items"] = result.arrays["items"].numpy()

    # Ray warns (FutureWarning) that it will stop overriding accelerator variables; we use none
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # Flower logs every round at INFO and a deprecation notice for run_simulation at WARNING;
    # progress comes from on_round, and a client's failure reaches _Observed as an error reply
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
                "init_args": {"num_cpus": c.simulation_cpus, "include_dashboard": False},
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


def _strategy(
    c: FedMFConfig, n_clients: int, n_sampled: int, has_valid: bool, central_z: float | None
) -> Strategy:
    common: dict[str, Any] = {
        "fraction_train": c.fraction,
        "fraction_evaluate": c.fraction if has_valid else 0.0,
        "min_train_nodes": min(n_sampled, n_clients),
        "min_evaluate_nodes": min(n_sampled, n_clients) if has_valid else 0,
        "min_available_nodes": n_clients,
        "train_metrics_aggr_fn": _train_metrics,
    }
    strategy: Strategy
    if c.strategy == "fedprox":
        strategy = FedProx(proximal_mu=c.proximal_mu, **common)
    elif c.strategy == "fedadam":
        strategy = FedAdam(eta=c.server_learning_rate, eta_l=c.learning_rate, **common)
    else:
        strategy = FedAvg(**common)
    if c.dp == "client":
        assert central_z is not None
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, noise_multiplier=central_z, clipping_norm=c.max_grad_norm, num_sampled_clients=n_sampled
        )
    return strategy


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
        return _num(context.state.config_records["dp"], "z")
    batches = max(1, math.ceil(data.n_records / min(c.batch_size, max(data.n_records, 1))))
    if c.noise_multiplier is not None:
        z = float(c.noise_multiplier)
    else:
        assert c.dp_epsilon is not None
        z = float(
            get_noise_multiplier(
                target_epsilon=c.dp_epsilon,
                target_delta=delta,
                sample_rate=1.0 / batches,
                steps=batches * c.local_epochs * c.iterations,
                accountant="rdp",
                alphas=ALPHAS,
            )
        )
    context.state["dp"] = ConfigRecord({"z": z, "steps": 0, "sample_rate": 1.0 / batches})
    return z


def _epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of ``steps`` subsampled Gaussian steps at ``delta``: Opacus's RDP accountant."""
    if steps == 0:
        return 0.0
    acc = RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta, alphas=ALPHAS))

"""The server side of a federated run: the Flower strategy, and what the server logs each round.

:func:`make_strategy` builds one of Flower's strategies (``FedAvg``, ``FedAvgM``, ``FedProx``,
``FedAdam``), optionally wrapped in Flower's ``DifferentialPrivacy{Server,Client}SideFixedClipping``;
:class:`Observed` wraps it to count bytes, track ε and log a :class:`RoundLog` per round, without
changing what the strategy does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    Result,
    Strategy,
)

from lmrec.federated.config import FedMFConfig
from lmrec.federated.engine import SampledGrid


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
    #: simulation only: the caller's measurement of this round's item table (``server_eval``), e.g.
    #: validation NDCG@10 with users folded in; a real server holds no data to compute it
    server_ndcg: float | None = None


@dataclass
class FederatedRun:
    #: the final item table (``n_items x (factors + 1)``, BPR's layout)
    items: np.ndarray
    rounds: list[RoundLog]
    delta: float | None
    noise_multiplier: float | None
    #: every RecordDict the server received, when asked for (tests inspect them)
    received: list[RecordDict] = field(default_factory=list)
    #: the final federated parameters as they travelled: the item table itself for FedMF, the packed
    #: item tower (:class:`lmrec.federated.tower.TowerLayout`) for two-tower; None: same as ``items``
    shared: np.ndarray | None = None

    @property
    def epsilon(self) -> float | None:
        return self.rounds[-1].epsilon if self.rounds else None


def payload_bytes(content: RecordDict) -> int:
    """Bytes of a message's payload: its arrays, and any bytes in its config records (SecAgg+
    sends keys, key shares and the masked table as bytes there). Scalars and metrics are not
    counted (a few bytes each)."""
    n = sum(len(a.data) for rec in content.array_records.values() for a in rec.values())
    for rec in content.config_records.values():
        for value in rec.values():
            if isinstance(value, bytes):
                n += len(value)
            elif isinstance(value, list):
                n += sum(len(v) for v in value if isinstance(v, bytes))
    return n


class Observed(Strategy):
    """Flower strategy wrapper: forwards everything, counts bytes, tracks ε and logs each round;
    with ``evaluate_every > 1`` it sends the clients' evaluation only every that many rounds.

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
        evaluate_every: int = 1,
        sample: Callable[[int, str], list[int]] | None = None,
    ) -> None:
        self.inner = inner
        #: seeded client sampling (:class:`lmrec.federated.engine.NodeSampler`): the strategy is
        #: shown only the round's nodes; None: the strategy samples (Flower's ``random.sample``)
        self.sample = sample
        #: clients evaluate in rounds ``evaluate_every, 2 * evaluate_every, ...`` and the last one
        self.evaluate_every = evaluate_every
        #: the rounds :meth:`start` was asked to run (the last round always evaluates)
        self.num_rounds = 0
        self.client_epsilon = client_epsilon
        self.on_round = on_round
        self.keep = keep
        self.received: list[RecordDict] = []
        self.rounds: list[RoundLog] = []
        self._down = self._up = 0
        self._train: dict[str, float] = {}
        self._clients = 0
        self._eps = 0.0
        self._ndcg: float | None = None

    def summary(self) -> None:
        self.inner.summary()

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        self.num_rounds = num_rounds  # read by configure_evaluate: the last round always evaluates
        return super().start(
            grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config, evaluate_fn
        )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.sample is not None:
            grid = cast(Grid, SampledGrid(grid, self.sample(server_round, "train")))
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._down = sum(payload_bytes(m.content) for m in messages)
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
        self._up = sum(payload_bytes(m.content) for m in ok)
        self._clients = len(ok)
        if self.keep:
            self.received.extend(m.content for m in ok)
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        self._train = {k: num(metrics, k) for k in metrics} if metrics is not None else {}
        client_eps = max((metric(m.content, "epsilon") for m in ok), default=0.0)
        central = self.client_epsilon(server_round)
        self._eps = max(self._eps, client_eps, central or 0.0)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if server_round % self.evaluate_every and server_round != self.num_rounds:
            return []  # no evaluation messages this round (Flower then aggregates no replies)
        if self.sample is not None:
            grid = cast(Grid, SampledGrid(grid, self.sample(server_round, "evaluate")))
        messages = list(self.inner.configure_evaluate(server_round, arrays, config, grid))
        self._down += sum(payload_bytes(m.content) for m in messages)
        return messages

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = sorted(replies, key=_reply_key)
        if self.keep:
            self.received.extend(m.content for m in replies if not m.has_error())
        self._up += sum(payload_bytes(m.content) for m in replies if not m.has_error())
        counted = [m for m in replies if not m.has_error() and metric(m.content, "num-examples") > 0]
        metrics = self.inner.aggregate_evaluate(server_round, counted) if counted else None
        self._ndcg = None if metrics is None else num(metrics, "ndcg")
        return metrics

    def end_round(self, server_round: int, server_ndcg: float | None) -> None:
        """Log the round (Flower calls the server-side ``evaluate_fn`` last in every round)."""
        if server_round == 0:
            return
        log = RoundLog(
            round=server_round,
            clients=self._clients,
            loss=float(self._train.get("loss", math.nan)),
            valid_ndcg=self._ndcg,
            bytes_down=self._down,
            bytes_up=self._up,
            epsilon=self._eps if self._eps > 0 else None,
            server_ndcg=server_ndcg,
        )
        self.rounds.append(log)
        if self.on_round is not None:
            self.on_round(log)


def _reply_key(m: Message) -> tuple[float, ...]:
    if m.has_error():
        return (math.inf,)
    return tuple(metric(m.content, k) for k in ("num-examples", "loss", "ndcg"))


def num(record: MetricRecord | ConfigRecord, key: str) -> float:
    """A number from a Flower record (their values are typed as a union of everything storable)."""
    value = record.get(key, 0.0)
    if not isinstance(value, (int, float)):
        raise TypeError(f"record value {key!r} is {type(value).__name__}, not a number")
    return float(value)


def metric(content: RecordDict, key: str) -> float:
    """``key`` of the one MetricRecord of a reply (0 when absent)."""
    return num(next(iter(content.metric_records.values())), key)


def items_of(content: RecordDict) -> np.ndarray:
    """The item table of a message (its one ArrayRecord, key ``items``)."""
    return next(iter(content.array_records.values()))["items"].numpy()


def train_metrics(records: list[RecordDict], weighting: str) -> MetricRecord:
    """Record-weighted mean loss; ε is the largest client's (records live on one client each)."""
    w = np.array([metric(r, weighting) for r in records])
    loss = np.array([metric(r, "loss") for r in records])
    eps = max(metric(r, "epsilon") for r in records)
    mean = float((w * loss).sum() / w.sum()) if w.sum() > 0 else math.nan
    return MetricRecord({"loss": mean, "epsilon": eps, weighting: float(w.sum())})


def make_strategy(
    c: FedMFConfig,
    n_clients: int,
    n_sampled: int,
    has_valid: bool,
    central_z: float | None,
    seeded_sampling: bool = False,
) -> Strategy:
    """Flower's strategy for ``c.strategy``; clients evaluate only when they hold validation data.
    With ``seeded_sampling`` the strategy is shown only the round's sampled nodes (``Observed``'s
    ``sample``), so it waits for those, not for every client."""
    common: dict[str, Any] = {
        "fraction_train": c.fraction,
        "fraction_evaluate": c.fraction if has_valid else 0.0,
        "min_train_nodes": min(n_sampled, n_clients),
        "min_evaluate_nodes": min(n_sampled, n_clients) if has_valid else 0,
        "min_available_nodes": min(n_sampled, n_clients) if seeded_sampling else n_clients,
        "train_metrics_aggr_fn": train_metrics,
    }
    strategy: Strategy
    if c.strategy == "fedprox":
        strategy = FedProx(proximal_mu=c.proximal_mu, **common)
    elif c.strategy == "fedadam":
        eta = 0.01 if c.server_learning_rate is None else c.server_learning_rate
        strategy = FedAdam(eta=eta, eta_l=c.learning_rate, **common)
    elif c.strategy == "fedavgm":
        eta = 1.0 if c.server_learning_rate is None else c.server_learning_rate
        strategy = FedAvgM(server_learning_rate=eta, server_momentum=c.server_momentum, **common)
    else:
        strategy = FedAvg(**common)
    if c.dp == "client":
        assert central_z is not None
        wrapper = (
            DifferentialPrivacyClientSideFixedClipping
            if c.dp_clipping == "client"
            else DifferentialPrivacyServerSideFixedClipping
        )
        strategy = wrapper(
            strategy, noise_multiplier=central_z, clipping_norm=c.max_grad_norm, num_sampled_clients=n_sampled
        )
    return strategy

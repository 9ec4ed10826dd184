"""Secure aggregation of the item table with Flower's SecAgg+ (``FedMFConfig.secagg``).

Flower 1.42 implements SecAgg+ only for its legacy workflow: the server runs
``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` on a ``LegacyContext`` with a legacy
``flwr.server.strategy`` strategy, and each client wraps its train handler in ``secaggplus_mod``.
Every piece of cryptography and masking below is Flower's; this module only wires it up:

* :func:`make_legacy_strategy`: the legacy twin of :func:`lmrec.federated.server.make_strategy`
  (same FedAvg / FedAvgM / FedProx / FedAdam arithmetic and settings, and Flower's
  ``DifferentialPrivacyClientSideFixedClipping`` for ``dp="client"``);
* :class:`SecAggObserved`: the legacy twin of :class:`~lmrec.federated.server.Observed` (round log,
  ε, failures are errors);
* :class:`CountingGrid`: counts the bytes of every message of the four SecAgg+ stages (public keys,
  encrypted key shares, the masked table, the unmasking shares) and, when asked, keeps every reply
  the server received, for the tests that inspect them;
* :func:`legacy_train` / :func:`legacy_evaluate`: the client's handlers in the legacy message
  layout (``fitins``/``fitres``) that ``secaggplus_mod`` and ``fixedclipping_mod`` read.

What the server sees per client and round: its public keys, key shares encrypted for other clients,
its item table quantised and masked (uniform noise modulo 2³² to anyone without the masks), the
shares that unmask the *sum*, and the metrics in the clear (record count, loss, ε, validation NDCG):
SecAgg+ hides the parameters, not the metrics. The server learns
``Σ_i (w_i / W) · V_i`` and ``Σ_i w_i / W`` (``w_i`` the record count, ``W`` ``secagg_max_weight``),
i.e. the weighted mean of the sampled clients' tables, which the strategy then uses as FedAvg's mean.

Precision: each client clips ``(w_i / W) · V_i`` to ``[-R, R]`` and rounds it stochastically to a
grid of step ``2R / Q`` (``R`` = ``secagg_clipping_range``, ``Q`` = ``secagg_quantization_range``);
the mean is then off by at most ``(2R / Q) · n / Σ_i (w_i / W)`` per entry (about 4e-6 with Flower's
defaults and equal clients), unbiased. The masked sum must stay below the 2³² modulus: at most
``2³² / Q`` clients per round (1024 at ``Q`` = 2²²).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp.typing import Mod
from flwr.common import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    MetricsAggregationFn,
    NDArrays,
    Parameters,
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server import strategy as legacy
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import default_evaluate_workflow
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from lmrec.federated.config import FedMFConfig
from lmrec.federated.server import RoundLog, payload_bytes

#: the key of the server round in the legacy ``fitins``/``evaluateins`` config
ROUND_KEY = "server-round"


def check_secagg(c: FedMFConfig, n_clients: int, n_sampled: int, records: list[int]) -> float:
    """Refuse a SecAgg+ run that Flower's protocol cannot carry out; return the weight cap W."""
    if n_sampled < 2:
        raise ValueError(
            f"secagg=True samples {n_sampled} of {n_clients} clients per round; SecAgg+ needs at least 2 "
            "(raise fraction or clients)"
        )
    if n_sampled * c.secagg_quantization_range >= 2**32:
        raise ValueError(
            f"secagg=True: {n_sampled} clients x secagg_quantization_range {c.secagg_quantization_range} "
            "overflow SecAgg+'s 2**32 modulus; lower secagg_quantization_range or fraction"
        )
    cap = float(max(records)) if c.secagg_max_weight is None else float(c.secagg_max_weight)
    over = [i for i, n in enumerate(records) if n > cap]
    if over:
        raise ValueError(
            f"secagg_max_weight={cap:g} is below client {over[0]}'s {records[over[0]]} records; the masked "
            "sum would overflow (raise secagg_max_weight or leave it None)"
        )
    return cap


def secagg_workflow(c: FedMFConfig, max_weight: float) -> SecAggPlusWorkflow:
    """Flower's SecAgg+ server workflow with the config's quantisation and sharing settings."""
    return SecAggPlusWorkflow(
        num_shares=c.secagg_num_shares,
        reconstruction_threshold=c.secagg_reconstruction_threshold,
        max_weight=max_weight,
        clipping_range=c.secagg_clipping_range,
        quantization_range=c.secagg_quantization_range,
    )


def client_mods(c: FedMFConfig) -> list[Mod]:
    """``secaggplus_mod`` outermost (it masks what the inner handler returns); with client-side DP
    clipping, ``fixedclipping_mod`` inside it, so the update is clipped before it is masked."""
    mods: list[Mod] = [secaggplus_mod]
    if c.dp == "client":
        mods.append(fixedclipping_mod)
    return mods


class CountingGrid(Grid):
    """Flower's grid, forwarded untouched; counts payload bytes down and up, keeps replies if asked."""

    def __init__(self, inner: Grid, *, keep: bool) -> None:
        self.inner = inner
        self.keep = keep
        self.received: list[RecordDict] = []
        self.down = self.up = 0

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self.down += sum(payload_bytes(m.content) for m in messages)
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.inner.pull_messages(message_ids))
        self._got(replies)
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        messages = list(messages)
        self.down += sum(payload_bytes(m.content) for m in messages)
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        self._got(replies)
        return replies

    def _got(self, replies: list[Message]) -> None:
        ok = [m.content for m in replies if not m.has_error()]
        self.up += sum(payload_bytes(content) for content in ok)
        if self.keep:
            self.received.extend(ok)


class SecAggObserved(legacy.Strategy):
    """Legacy strategy wrapper: forwards everything, logs each round, turns failures into errors.

    Under SecAgg+ every ``FitRes`` handed to ``aggregate_fit`` already carries the unmasked weighted
    mean (Flower writes it into each result), so the inner strategy's weighted average returns that
    mean and its server step (FedAvgM's momentum, FedAdam) runs on it unchanged. The mean arrives in
    float64; it is cast back to the table's float32 so the next round sends what a plain run sends.
    """

    def __init__(
        self,
        inner: legacy.Strategy,
        *,
        client_epsilon: Callable[[int], float | None],
        on_round: Callable[[RoundLog], None] | None,
    ) -> None:
        self.inner = inner
        self.client_epsilon = client_epsilon
        self.on_round = on_round
        self.rounds: list[RoundLog] = []
        self.aggregated: set[int] = set()
        self.final: np.ndarray | None = None
        self._loss = math.nan
        self._clients = 0
        self._eps = 0.0
        self._ndcg: float | None = None

    def __repr__(self) -> str:
        return f"SecAggObserved({self.inner!r})"

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.inner.initialize_parameters(client_manager)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        return self.inner.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:  # a silently smaller sum would hide a bug in the client code
            reason = " ".join(str(failures[0]).split())[:300]
            raise RuntimeError(
                f"round {server_round}: {len(failures)} SecAgg+ failure(s); the first: {reason}"
            )
        parameters, metrics = self.inner.aggregate_fit(server_round, results, failures)
        if parameters is None:
            raise RuntimeError(f"round {server_round}: the strategy returned no model from SecAgg+'s sum")
        arrays = [a.astype(np.float32) for a in parameters_to_ndarrays(parameters)]
        self.final = arrays[0]
        self.aggregated.add(server_round)
        self._clients = len(results)
        self._loss = float(metrics.get("loss", math.nan))
        client_eps = float(metrics.get("epsilon", 0.0))
        self._eps = max(self._eps, client_eps, self.client_epsilon(server_round) or 0.0)
        return ndarrays_to_parameters(arrays), metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.inner.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        if failures:
            raise RuntimeError(f"round {server_round}: {len(failures)} client(s) failed to evaluate")
        counted = [(p, r) for p, r in results if r.num_examples > 0]
        if not counted:
            self._ndcg = None
            return None, {}
        loss, metrics = self.inner.aggregate_evaluate(server_round, counted, failures)
        self._ndcg = float(metrics["ndcg"]) if "ndcg" in metrics else None
        return loss, metrics

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        return self.inner.evaluate(server_round, parameters)

    def end_round(self, server_round: int, grid: CountingGrid, server_ndcg: float | None) -> None:
        log = RoundLog(
            round=server_round,
            clients=self._clients,
            loss=self._loss,
            valid_ndcg=self._ndcg,
            bytes_down=grid.down,
            bytes_up=grid.up,
            epsilon=self._eps if self._eps > 0 else None,
            server_ndcg=server_ndcg,
        )
        self.rounds.append(log)
        if self.on_round is not None:
            self.on_round(log)


def _weighted(key: str) -> MetricsAggregationFn:
    def aggregate(results: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
        w = np.array([n for n, _ in results], dtype=float)
        v = np.array([float(m.get(key, math.nan)) for _, m in results])
        out: dict[str, Scalar] = {key: float((w * v).sum() / w.sum()) if w.sum() > 0 else math.nan}
        eps = [float(m["epsilon"]) for _, m in results if "epsilon" in m]
        if eps:  # records live on one client each: the largest client's ε is the run's
            out["epsilon"] = max(eps)
        return out

    return aggregate


def make_legacy_strategy(
    c: FedMFConfig,
    n_clients: int,
    n_sampled: int,
    has_valid: bool,
    central_z: float | None,
    init: np.ndarray,
    evaluate_fn: Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None],
) -> legacy.Strategy:
    """The legacy Flower strategy that :func:`lmrec.federated.server.make_strategy` builds for the
    message API, with the same settings (FedAdam's β and τ spelt out: the two APIs' defaults differ)."""

    def round_config(server_round: int) -> dict[str, Scalar]:
        return {ROUND_KEY: server_round}

    common: dict[str, Any] = {
        "fraction_fit": c.fraction,
        "fraction_evaluate": c.fraction if has_valid else 0.0,
        "min_fit_clients": min(n_sampled, n_clients),
        "min_evaluate_clients": min(n_sampled, n_clients) if has_valid else 0,
        "min_available_clients": n_clients,
        "evaluate_fn": evaluate_fn,
        "on_fit_config_fn": round_config,
        "on_evaluate_config_fn": round_config,
        "accept_failures": False,
        "initial_parameters": ndarrays_to_parameters([init]),
        "fit_metrics_aggregation_fn": _weighted("loss"),
        "evaluate_metrics_aggregation_fn": _weighted("ndcg"),
    }
    strategy: legacy.Strategy
    if c.strategy == "fedprox":
        strategy = legacy.FedProx(proximal_mu=c.proximal_mu, **common)
    elif c.strategy == "fedadam":
        eta = 0.01 if c.server_learning_rate is None else c.server_learning_rate
        strategy = legacy.FedAdam(eta=eta, eta_l=c.learning_rate, beta_1=0.9, beta_2=0.99, tau=1e-3, **common)
    elif c.strategy == "fedavgm":
        eta = 1.0 if c.server_learning_rate is None else c.server_learning_rate
        strategy = legacy.FedAvgM(server_learning_rate=eta, server_momentum=c.server_momentum, **common)
    else:
        strategy = legacy.FedAvg(**common)
    if c.dp == "client":  # the config refuses server-side clipping under SecAgg+
        assert central_z is not None and c.dp_clipping == "client"
        strategy = legacy.DifferentialPrivacyClientSideFixedClipping(
            strategy, noise_multiplier=central_z, clipping_norm=c.max_grad_norm, num_sampled_clients=n_sampled
        )
    return strategy


def run_secagg(
    grid: Grid,
    context: Context,
    c: FedMFConfig,
    observer: SecAggObserved,
    workflow: SecAggPlusWorkflow,
    server_ndcg: dict[int, float],
    *,
    keep: bool,
) -> tuple[np.ndarray, list[RecordDict]]:
    """The body of the SecAgg+ ``ServerApp``: Flower's ``DefaultWorkflow`` with SecAgg+ as its fit
    step; return the final item table and (with ``keep``) every reply the server received."""
    counting = CountingGrid(grid, keep=keep)

    def fit(g: Grid, ctx: Context) -> None:
        assert isinstance(ctx, LegacyContext)
        server_round = int(ctx.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])  # type: ignore[arg-type]
        counting.down = counting.up = 0
        workflow(g, ctx)
        if server_round not in observer.aggregated:  # Flower halts SecAgg+ with a log line only
            raise RuntimeError(
                f"round {server_round}: SecAgg+ halted before the sum (too few clients answered; see flwr's log)"
            )

    def evaluate(g: Grid, ctx: Context) -> None:
        assert isinstance(ctx, LegacyContext)
        server_round = int(ctx.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])  # type: ignore[arg-type]
        default_evaluate_workflow(g, ctx)
        observer.end_round(server_round, counting, server_ndcg.get(server_round))

    legacy_context = LegacyContext(context, config=ServerConfig(num_rounds=c.iterations), strategy=observer)
    DefaultWorkflow(fit_workflow=fit, evaluate_workflow=evaluate)(counting, legacy_context)
    params = compat.arrayrecord_to_parameters(legacy_context.state.array_records[MAIN_PARAMS_RECORD], True)
    return parameters_to_ndarrays(params)[0].astype(np.float32), counting.received


def legacy_train(
    msg: Message,
    context: Context,
    fit: Callable[[np.ndarray, int, Context], tuple[np.ndarray, dict[str, float]]],
) -> Message:
    """A train message in the legacy ``fitins`` layout in, ``fitres`` out (what ``secaggplus_mod``
    masks): ``fit(items, round, context)`` returns the new table and the metrics, with
    ``num-examples`` the record count (SecAgg+'s weight)."""
    ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    items = parameters_to_ndarrays(ins.parameters)[0].astype(np.float32)
    new, metrics = fit(items, int(ins.config[ROUND_KEY]), context)
    n = int(metrics.pop("num-examples"))
    res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([new]), n, dict(metrics))
    return Message(compat.fitres_to_recorddict(res, keep_input=False), reply_to=msg)


def legacy_evaluate(
    msg: Message, context: Context, evaluate: Callable[[np.ndarray, Context], tuple[int, float]]
) -> Message:
    """An evaluate message in the legacy layout: ``evaluate(items, context)`` gives the number of
    validation users and their mean NDCG@10 (no evaluation loss: 0)."""
    ins = compat.recorddict_to_evaluateins(msg.content, keep_input=True)
    items = parameters_to_ndarrays(ins.parameters)[0].astype(np.float32)
    n, ndcg = evaluate(items, context)
    res = EvaluateRes(Status(Code.OK, ""), 0.0, n, {"ndcg": ndcg})
    return Message(compat.evaluateres_to_recorddict(res), reply_to=msg)

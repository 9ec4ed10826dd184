"""The server side: which Flower strategy each setting builds, and the plots of a run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("flwr")

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
)

from lmrec.federated import FedMFConfig, RoundLog
from lmrec.federated.report import plot_epsilon, plot_rounds
from lmrec.federated.server import Observed, make_strategy


def test_fedavgm_takes_the_server_step_and_momentum() -> None:
    s = make_strategy(
        FedMFConfig(strategy="fedavgm", server_learning_rate=3.0, server_momentum=0.9), 10, 10, True, None
    )
    assert isinstance(s, FedAvgM) and s.server_learning_rate == 3.0 and s.server_momentum == 0.9
    default = make_strategy(FedMFConfig(strategy="fedavgm"), 10, 10, True, None)
    assert isinstance(default, FedAvgM) and default.server_learning_rate == 1.0 and not default.server_opt


def test_each_strategy_and_the_dp_wrapper() -> None:
    assert type(make_strategy(FedMFConfig(), 4, 4, False, None)) is FedAvg
    assert isinstance(make_strategy(FedMFConfig(strategy="fedprox"), 4, 4, False, None), FedProx)
    adam = make_strategy(FedMFConfig(strategy="fedadam"), 4, 4, False, None)
    assert isinstance(adam, FedAdam) and adam.eta == 0.01
    dp = make_strategy(FedMFConfig(dp="client", noise_multiplier=1.0), 10, 2, False, 1.0)
    assert isinstance(dp, DifferentialPrivacyServerSideFixedClipping)
    # no validation data: clients are never asked to evaluate
    assert make_strategy(FedMFConfig(), 4, 4, False, None).fraction_evaluate == 0.0  # type: ignore[attr-defined]


def _log(r: int, valid: float | None, server: float | None, eps: float | None) -> RoundLog:
    return RoundLog(r, 2, 0.5, valid, 10, 10, eps, server)


def test_plots_are_written(tmp_path: Path) -> None:
    runs = {
        "silo": [_log(1, 0.1, None, None), _log(2, 0.2, None, None)],
        "device": [_log(1, None, 0.05, None), _log(2, None, 0.1, None)],
        "dp": [_log(1, 0.05, None, 1.0), _log(2, 0.08, None, 2.0)],
    }
    out = plot_rounds(runs, tmp_path / "rounds.png", central=0.2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = {1.0: {"mean": 0.02, "ci95": 0.01}, 8.0: {"mean": 0.04, "ci95": float("nan")}}
    points[float("inf")] = {"mean": 0.05, "ci95": 0.002}
    eps = plot_epsilon(points, tmp_path / "eps.png", central=0.06)
    assert eps.stat().st_size > 1000


@pytest.mark.distributed
def test_one_ray_cluster_serves_connections_and_stops() -> None:
    import socket
    import tempfile

    import ray

    from lmrec.federated.cluster import ray_cluster

    with ray_cluster(cpus=1) as address:
        # plain ray.init() elsewhere on the machine must not find this cluster
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        assert not current.exists() or not current.read_text().strip().endswith(address.split(":")[1])
        ray.init(address=address, log_to_driver=False)
        try:
            assert ray.cluster_resources().get("CPU") == 1.0
        finally:
            ray.shutdown()  # what Flower does at the end of a simulation: only a disconnect
        ray.init(address=address, log_to_driver=False)  # the cluster is still there
        ray.shutdown()
    # stopped: nothing listens on the head's port any more
    host, port = address.split(":")
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(5)
        s.connect((host, int(port)))


class _OneEvaluation(FedAvg):
    """FedAvg that sends one evaluation message per round, without a grid."""

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        # the wrapper reads only a message's content (a real Message needs a running Flower app)
        return [SimpleNamespace(content=RecordDict({"arrays": arrays}))]  # type: ignore[list-item]


def test_clients_evaluate_every_n_rounds_and_in_the_last() -> None:
    observed = Observed(
        _OneEvaluation(),
        client_epsilon=lambda r: None,
        on_round=None,
        keep=False,
        evaluate_every=5,
    )
    observed.num_rounds = 12  # what start(num_rounds=12) records before the first round
    arrays = ArrayRecord({"items": Array(np.zeros((3, 2), np.float32))})
    sent = [r for r in range(1, 13) if list(observed.configure_evaluate(r, arrays, ConfigRecord(), None))]  # type: ignore[arg-type]
    assert sent == [5, 10, 12]
    observed.aggregate_evaluate(11, [])  # a skipped round: no replies, no metric
    observed.end_round(11, None)
    assert observed.rounds[-1].valid_ndcg is None


def test_secagg_refuses_sparse_client_evaluation() -> None:
    with pytest.raises(ValueError, match="evaluate_every=2 needs secagg=False"):
        FedMFConfig(secagg=True, clients=3, evaluate_every=2)

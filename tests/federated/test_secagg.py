"""Secure aggregation with Flower's SecAgg+: three clients, two rounds, against the same run without it.

One Flower simulation with SecAgg+ (Ray's start-up is most of the test's time); the run without it
is replayed in process with the same client code and FedAvg's mean. The checks that need no
simulation (which combinations are refused, how the pieces are wired) run without Ray.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.common import bytes_to_ndarray, ndarray_to_bytes
from flwr.common.secure_aggregation.secaggplus_constants import Key
from flwr.server import strategy as legacy
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping
from pydantic import ValidationError

from lmrec.data.split import Split, leave_last_out
from lmrec.federated import FedMFConfig, client_data, partition_users
from lmrec.federated.clients import ClientData
from lmrec.federated.cluster import ray_cluster
from lmrec.federated.local import LocalConfig, local_update
from lmrec.federated.secagg import client_mods, make_legacy_strategy
from lmrec.federated.server import FederatedRun, make_strategy
from lmrec.federated.simulation import simulate
from lmrec.testing import make_checkerboard

N_USERS, N_ITEMS, FACTORS, K = 24, 12, 4, 3
#: SecAgg+ settings of the run (the config's defaults): clipping range R, quantisation levels Q
R, Q = 8.0, 2**22


@pytest.fixture(scope="module")
def split() -> Split:
    return leave_last_out(make_checkerboard(N_USERS, N_ITEMS))


@pytest.fixture(scope="module")
def clients(split: Split) -> list[ClientData]:
    inter, valid = split.train.interactions, split.valid
    owner = partition_users(split.train, "hash", K, seed=3)
    return client_data(
        owner,
        inter["user_idx"].to_numpy(),
        inter["item_idx"].to_numpy(),
        valid["user_idx"].to_numpy(),
        valid["item_idx"].to_numpy(),
    )


def _config(**kw: object) -> FedMFConfig:
    return FedMFConfig(factors=FACTORS, clients=K, iterations=2, batch_size=16, seed=3, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def secure(split: Split, clients: list[ClientData]) -> Iterator[FederatedRun]:
    """The FedAvg run with SecAgg+ in Flower's simulation, every message the server received kept."""
    with ray_cluster(cpus=2) as address:
        yield simulate(
            clients,
            split.train.n_items,
            split.train.n_users,
            _config(secagg=True, ray_address=address),
            keep_messages=True,
        )


@pytest.fixture(scope="module")
def plain(clients: list[ClientData]) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """The same run without SecAgg+, in process (a second Ray simulation would double the test's
    time): the simulation's starting table, each client's user factors and per-round generator
    (seeded by client and round), the same ``local_update``, FedAvg's record-weighted mean. Returns
    the final table, each client's round-1 table (what SecAgg+ must hide) and the round losses."""
    c = _config()
    items = (np.random.default_rng(c.seed).standard_normal((N_ITEMS, FACTORS + 1)) * 0.1).astype(np.float32)
    items[:, -1] = 0.0
    users = [
        (np.random.default_rng([c.seed, pid, 0xFED]).standard_normal((len(d.users), FACTORS)) * 0.1).astype(
            np.float32
        )
        for pid, d in enumerate(clients)
    ]
    local = LocalConfig(FACTORS, c.learning_rate, c.weight_decay, c.local_epochs, c.batch_size)
    w = np.array([d.n_records for d in clients], dtype=np.float64)
    first: list[np.ndarray] = []
    losses = []
    for server_round in range(1, c.iterations + 1):
        tables, loss = [], []
        for pid, d in enumerate(clients):
            rng = np.random.default_rng([c.seed, pid, server_round])
            run = local_update(items, users[pid], d.record_users, d.record_items, local, rng)
            users[pid] = run.users
            tables.append(run.items.astype(np.float64))
            loss.append(run.loss)
        first = first or [t.astype(np.float32) for t in tables]
        items = (sum(wi * t for wi, t in zip(w, tables, strict=True)) / w.sum()).astype(np.float32)
        losses.append(float((w * np.array(loss)).sum() / w.sum()))
    return items, first, losses


def one_round_bound(clients: list[ClientData]) -> float:
    """The largest per-entry error SecAgg+'s quantisation adds to one round's weighted mean: each
    client's (w_i / W)·V_i is rounded to a grid of step 2R/Q, and the mean divides the sum of the n
    errors by Σ w_i / W (W the largest record count, the default ``secagg_max_weight``)."""
    w = np.array([c.n_records for c in clients], dtype=float)
    return (2 * R / Q) * len(w) / (w / w.max()).sum()


@pytest.mark.distributed
def test_secagg_finishes_and_matches_the_plain_run(
    secure: FederatedRun, plain: tuple[np.ndarray, list[np.ndarray], list[float]], clients: list[ClientData]
) -> None:
    items, _, losses = plain
    assert [r.round for r in secure.rounds] == [1, 2] and all(r.clients == K for r in secure.rounds)
    # Tolerance: 10x the one-round quantisation bound (4.8e-6 here): two rounds of it, and round 2's
    # local Adam steps start from a table that differs by that much (observed: ~4e-6)
    tol = 10 * one_round_bound(clients)
    assert 1e-6 < tol < 1e-4
    np.testing.assert_allclose(secure.items, items, rtol=0, atol=tol)
    # round 1 starts from the same table, so the clients' losses agree exactly; round 2 nearly
    assert secure.rounds[0].loss == pytest.approx(losses[0], rel=1e-6)
    assert secure.rounds[1].loss == pytest.approx(losses[1], rel=1e-4)
    assert all(r.valid_ndcg is not None and 0.0 <= r.valid_ndcg <= 1.0 for r in secure.rounds)
    # SecAgg+ costs bytes: keys, encrypted shares, a masked table of int64 entries, unmasking shares
    table = N_ITEMS * (FACTORS + 1) * 4
    assert secure.rounds[0].bytes_up > K * table


def _quantised(table: np.ndarray, weight: float) -> np.ndarray:
    """A table as SecAgg+ quantises it before masking (deterministic rounding, no masks)."""
    return np.round((np.clip(weight * table.astype(np.float64), -R, R) + R) * Q / (2 * R)).astype(np.int64)


def exposed(received: list, tables: list[np.ndarray], weights: list[float]) -> list[str]:
    """Where a client's table shows in what the server received, plain or quantised but unmasked."""
    problems = []
    for content in received:
        for name, rec in content.array_records.items():
            if any(len(a.data) for a in rec.values()):
                problems.append(f"array record {name} carries data")
        for rec in content.config_records.values():
            masked = rec.get(Key.MASKED_PARAMETERS)
            if not isinstance(masked, list):
                continue
            vector = bytes_to_ndarray(masked[-1]).astype(np.int64).ravel()  # [weight factor, table]
            # an unmasked quantised table lies in [0, Q), a 2**-10 sliver of the modulus 2**32
            if (vector < Q).mean() > 0.05:
                problems.append("a sent vector lies in [0, Q): not masked")
            for table, w in zip(tables, weights, strict=True):
                # stochastic rounding moves an entry by at most one level
                if np.abs(vector - _quantised(table, w).ravel()).max() <= 1:
                    problems.append("a sent vector is a client's quantised table")
                if table.size == vector.size and np.abs(vector - table.ravel()).max() < 1.0:
                    problems.append("a sent vector is a client's table")
    return problems


@pytest.mark.distributed
def test_the_server_never_sees_a_clients_table(
    secure: FederatedRun, plain: tuple[np.ndarray, list[np.ndarray], list[float]], clients: list[ClientData]
) -> None:
    received = secure.received
    tables = plain[1]
    records = [c.n_records for c in clients]
    weights = [n / max(records) for n in records]
    masked = [r for c in received for r in c.config_records.values() if Key.MASKED_PARAMETERS in r]
    assert len(masked) == K * 2  # one masked table per client and round: the only place it could be
    assert exposed(received, tables, weights) == []
    # what it does receive in the clear: counts and aggregate statistics, never ids
    for content in received:
        for rec in content.metric_records.values():
            assert set(rec) <= {"num_examples", "loss", "ndcg"}


def test_the_exposure_check_can_fail(
    plain: tuple[np.ndarray, list[np.ndarray], list[float]], clients: list[ClientData]
) -> None:
    tables = plain[1]
    records = [c.n_records for c in clients]
    weights = [n / max(records) for n in records]
    # the layout SecAgg+ uses, but the client's quantised table without masks
    leaky = RecordDict()
    unmasked = [ndarray_to_bytes(np.array([1])), ndarray_to_bytes(_quantised(tables[0], weights[0]))]
    leaky.config_records["secaggplus"] = ConfigRecord({Key.MASKED_PARAMETERS: unmasked})
    assert len(exposed([leaky], tables, weights)) == 2
    # and a plain reply (the client's table in an ArrayRecord)
    reply = RecordDict({"arrays": ArrayRecord({"items": Array(tables[1])})})
    assert exposed([reply], tables, weights) == ["array record arrays carries data"]


def test_server_side_dp_clipping_is_refused_under_secagg() -> None:
    with pytest.raises(ValidationError, match="dp_clipping='client'"):
        FedMFConfig(secagg=True, dp="client", noise_multiplier=1.0)
    with pytest.raises(ValidationError, match="at least 2 clients"):
        FedMFConfig(secagg=True, clients=1)
    with pytest.raises(ValidationError, match="secagg_num_shares"):
        FedMFConfig(secagg=True, secagg_num_shares=2)
    with pytest.raises(ValidationError, match="secagg_reconstruction_threshold"):
        FedMFConfig(secagg=True, secagg_num_shares=5, secagg_reconstruction_threshold=5)
    # what does compose: record-level DP, client-side clipping, every strategy
    FedMFConfig(secagg=True, dp="record", noise_multiplier=1.0)
    FedMFConfig(secagg=True, dp="client", dp_clipping="client", noise_multiplier=1.0)


def test_runs_secagg_cannot_carry_are_refused_before_ray(clients: list[ClientData]) -> None:
    with pytest.raises(ValueError, match="below client 0's"):
        simulate(clients, N_ITEMS, N_USERS, _config(secagg=True, secagg_max_weight=1.0))
    with pytest.raises(ValueError, match="SecAgg\\+ needs at least 2"):
        simulate(clients, N_ITEMS, N_USERS, _config(secagg=True, fraction=0.4))
    with pytest.raises(ValueError, match="overflow SecAgg\\+'s 2\\*\\*32 modulus"):
        simulate(clients, N_ITEMS, N_USERS, _config(secagg=True, secagg_quantization_range=2**31))


def test_client_side_clipping_is_wired_inside_the_masking() -> None:
    c = _config(secagg=True, dp="client", dp_clipping="client", noise_multiplier=1.0)
    # secaggplus_mod outermost: it masks what fixedclipping_mod has already clipped
    assert client_mods(c) == [secaggplus_mod, fixedclipping_mod]
    assert client_mods(_config(secagg=True)) == [secaggplus_mod]
    init = np.zeros((N_ITEMS, FACTORS + 1), np.float32)
    s = make_legacy_strategy(c, K, K, True, 1.0, init, lambda r, a, cfg: None)
    assert isinstance(s, legacy.DifferentialPrivacyClientSideFixedClipping) and s.clipping_norm == 1.0
    assert isinstance(
        make_legacy_strategy(_config(secagg=True), K, K, True, None, init, lambda r, a, cfg: None),
        legacy.FedAvg,
    )
    m = make_legacy_strategy(
        _config(strategy="fedavgm", server_momentum=0.9), K, K, True, None, init, lambda r, a, cfg: None
    )
    assert isinstance(m, legacy.FedAvgM) and m.server_momentum == 0.9
    # without SecAgg+, client-side clipping is Flower's message-API wrapper
    plain = make_strategy(_config(dp="client", dp_clipping="client", noise_multiplier=1.0), K, K, True, 1.0)
    assert isinstance(plain, DifferentialPrivacyClientSideFixedClipping)

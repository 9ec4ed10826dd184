"""Offline replay: IPS / SNIPS / replay estimates agree with the true value of a policy."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from lmrec.bandits import (
    LinUCB,
    LoggedDecision,
    ModelOrderPolicy,
    UniformPolicy,
    compare_policies,
    decisions_from_log,
    evaluate_policy,
    make_features,
)
from lmrec.events import Event, Impression
from lmrec.serving.store import SQLiteEventStore


class Fixed:
    """Always the candidate with the largest given feature column."""

    def __init__(self, col: int) -> None:
        self.col = col

    def probabilities(self, X, *, free=None, explore=True, epsilon=None):  # type: ignore[no-untyped-def]
        p = np.zeros(len(X))
        p[int(np.argmax(np.asarray(X)[:, self.col]))] = 1.0
        return p


def _logged(
    rng: np.random.Generator, n: int, logging: str = "uniform"
) -> tuple[list[LoggedDecision], float, float]:
    """n decisions over 10 candidates; reward prob = 0.1 + 0.8 * feature 1. Returns decisions, the
    true value of the Fixed(1) policy and of uniform."""
    out = []
    best_true, uni_true = [], []
    for _ in range(n):
        X = np.column_stack([rng.random(10), rng.random(10)])
        probs = 0.1 + 0.8 * X[:, 1]
        if logging == "uniform":
            mu = np.full(10, 0.1)
        else:  # a skewed logging policy that prefers feature 0
            w = np.exp(3 * X[:, 0])
            mu = w / w.sum()
        a = int(rng.choice(10, p=mu))
        out.append(LoggedDecision(X, a, float(mu[a]), float(rng.random() < probs[a])))
        best_true.append(probs[np.argmax(X[:, 1])])
        uni_true.append(probs.mean())
    return out, float(np.mean(best_true)), float(np.mean(uni_true))


@pytest.mark.parametrize("logging", ["uniform", "skewed"])
def test_ips_and_snips_are_close_to_the_truth(rng: np.random.Generator, logging: str) -> None:
    decisions, best, uniform = _logged(rng, 6000, logging)
    for est in ("ips", "snips"):
        r = evaluate_policy(Fixed(1), decisions, estimator=est)
        assert abs(r.value - best) < 4 * r.stderr + 0.02, (est, r, best)
        u = evaluate_policy(UniformPolicy(), decisions, estimator=est)
        assert abs(u.value - uniform) < 4 * u.stderr + 0.02, (est, u, uniform)
    assert best > uniform + 0.2  # the estimators must separate a good policy from a bad one


def test_replay_method_on_uniform_logs(rng: np.random.Generator) -> None:
    decisions, best, _ = _logged(rng, 6000, "uniform")
    r = evaluate_policy(Fixed(1), decisions, estimator="replay")
    assert 400 < r.used < 800  # about 1/10 of decisions match
    assert abs(r.value - best) < 4 * r.stderr + 0.02


def test_replay_can_evaluate_a_learning_bandit(rng: np.random.Generator) -> None:
    decisions, _best, uniform = _logged(rng, 6000, "uniform")
    bandit = LinUCB(2, explore=0.2, epsilon=0.0, prior_weight=0.0)
    r = evaluate_policy(bandit, decisions, estimator="replay", learn=True)
    assert bandit.n_updates == r.used
    assert r.value > uniform + 0.1


def test_compare_and_errors(rng: np.random.Generator) -> None:
    decisions, _, _ = _logged(rng, 200)
    table = compare_policies({"uniform": UniformPolicy(), "model": ModelOrderPolicy()}, decisions)
    assert [(t.policy, t.estimator) for t in table] == [
        ("uniform", "ips"),
        ("uniform", "snips"),
        ("model", "ips"),
        ("model", "snips"),
    ]
    assert table[0].effective_n == pytest.approx(200)  # uniform target on uniform logs: weights all 1
    bad = [LoggedDecision(np.zeros((2, 2)), 0, 0.0, 1.0)]
    with pytest.raises(ValueError, match="propensity"):
        evaluate_policy(UniformPolicy(), bad, estimator="ips")
    with pytest.raises(ValueError, match="estimator"):
        evaluate_policy(UniformPolicy(), decisions, estimator="dr")  # type: ignore[arg-type]


def test_decisions_from_the_serving_log(tmp_path: Path) -> None:
    vecs = {10: [1.0, 0.0], 11: [0.0, 1.0], 12: [1.0, 1.0]}
    with SQLiteEventStore(tmp_path / "e.db") as store:
        store.log_impression(
            Impression("r1", 7, [11, 10], [0.8, 0.5], [10, 11, 12], [1.0, 0.5, 0.0], "linucb", 100.0)
        )
        now = time.time()
        store.log_impression(Impression("r2", 8, [12], [0.4], [10, 12], [1.0, 0.0], "linucb", now - 5))
        store.append(Event(7, 10, "click", request_id="r1", timestamp=101))  # credited by request id
        store.append(Event(8, 12, "like"))  # no request id: credited by time (received within the window)
        store.append(Event(7, 12, "like"))  # 12 was not shown to user 7
        store.flush()
        decisions = decisions_from_log(store, lambda ids: np.array([vecs[i] for i in ids]))
    assert len(decisions) == 3
    d0, d1, d2 = decisions
    # slot 1 of r1: all three candidates free, 11 chosen (row 1), no feedback on 11
    assert d0.features.shape == (3, 3) and d0.chosen == 1 and d0.propensity == 0.8 and d0.reward == 0.0
    assert np.allclose(d0.features[:, 0], [1.0, 0.5, 0.0])
    # slot 2: 11 is taken; 10 is row 0 of the remaining [10, 12]; it was clicked
    assert d1.features.shape == (2, 3) and d1.chosen == 0 and d1.reward == 1.0
    assert np.allclose(d1.features, make_features(np.array([1.0, 0.0]), np.array([vecs[10], vecs[12]])))
    # r2: a like received within the window after serving
    assert d2.chosen == 1 and d2.reward == 1.0 and d2.propensity == 0.4

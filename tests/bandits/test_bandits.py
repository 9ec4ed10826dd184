"""LinUCB and linear Thompson sampling: posterior maths, learning, propensities."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.bandits import LinearThompson, LinUCB, create_policy, make_features
from lmrec.bandits.base import scale_scores


def _env(rng: np.random.Generator, n_arms: int = 40, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Arms with unit features and a hidden linear reward model (rewards in [0, 1])."""
    X = rng.standard_normal((n_arms, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    theta = rng.standard_normal(dim)
    theta /= np.linalg.norm(theta)
    return X, 0.5 + 0.5 * (X @ theta)


def test_sherman_morrison_matches_batch_ridge_with_prior(rng: np.random.Generator) -> None:
    b = LinUCB(5, reg=2.0, prior_weight=1.0)
    X = rng.standard_normal((30, 5))
    r = rng.random(30)
    b.update_many(X, r)
    A = 2.0 * np.eye(5) + X.T @ X
    theta0 = np.array([1.0, 0, 0, 0, 0])
    assert np.allclose(b.A_inv, np.linalg.inv(A), atol=1e-10)
    assert np.allclose(b.theta, np.linalg.solve(A, 2.0 * theta0 + X.T @ r), atol=1e-10)
    assert b.n_updates == 30


def test_fresh_bandit_keeps_the_model_order(rng: np.random.Generator) -> None:
    """Prior mean θ₀ = [1, 0, ...]: with no feedback and no exploration the base ranking stands."""
    scores = np.sort(rng.random(20))[::-1]
    X = make_features(scores, rng.standard_normal((20, 8)))
    for name in ("linucb", "thompson"):
        b = create_policy(name, X.shape[1], explore=0.0, epsilon=0.0)
        ranking = b.rank(X, 10)
        assert list(ranking.order) == list(range(10))
        assert np.all(ranking.propensities == 1.0)


def test_make_features_scales_scores_within_the_list() -> None:
    X = make_features(np.array([10.0, 5.0, 0.0, -np.inf]), np.array([[3.0, 4.0], [0, 0], [1, 0], [0, 2]]))
    assert np.allclose(X[:, 0], [1.0, 0.5, 0.0, 0.0])
    assert np.allclose(X[0, 1:], [0.6, 0.8]) and np.allclose(X[1, 1:], 0.0)


@pytest.mark.parametrize(
    ("scores", "scaled"),
    [
        ([2.0, 4.0, 3.0], [0.0, 1.0, 0.5]),  # every score finite: the fast path
        ([7.0, 7.0], [1.0, 1.0]),  # all equal: every item at the top
        ([np.nan, 1.0, 3.0, np.inf], [0.0, 0.0, 1.0, 0.0]),  # non-finite: 0, the rest scaled
        ([5.0, -np.inf, 5.0], [1.0, 0.0, 1.0]),
        ([np.nan, -np.inf], [0.0, 0.0]),
        ([], []),
    ],
)
def test_scale_scores_edge_cases(scores: list[float], scaled: list[float]) -> None:
    out = scale_scores(np.array(scores))
    assert out.dtype == np.float64 and np.array_equal(out, np.array(scaled))
    assert np.array_equal(make_features(np.array(scores), np.zeros((len(scores), 0)))[:, 0], out)


@pytest.mark.parametrize("klass", [LinUCB, LinearThompson])
def test_learns_the_best_arm(klass: type, rng: np.random.Generator) -> None:
    X, means = _env(rng)
    b = klass(X.shape[1], explore=0.5, epsilon=0.05, prior_weight=0.0, seed=3)
    rewards = []
    for _ in range(1500):
        arm = int(b.rank(X, 1).order[0])
        r = float(rng.random() < means[arm])
        b.update(X[arm], r)
        rewards.append(r)
    late = float(np.mean(rewards[-500:]))
    assert late > np.mean(means) + 0.6 * (means.max() - np.mean(means)), (late, means.max(), np.mean(means))
    assert int(np.argmax(b.expected(X))) in set(np.argsort(-means)[:3])


def test_linucb_propensities_match_frequencies(rng: np.random.Generator) -> None:
    X, _ = _env(rng, n_arms=8)
    b = LinUCB(X.shape[1], explore=1.0, epsilon=0.3, seed=0)
    p = b.probabilities(X)
    assert p.sum() == pytest.approx(1.0)
    firsts = []
    logged: dict[int, float] = {}
    for _ in range(4000):
        ranking = b.rank(X, 3)
        firsts.append(int(ranking.order[0]))
        logged[int(ranking.order[0])] = float(ranking.propensities[0])
    freq = np.bincount(firsts, minlength=len(X)) / len(firsts)
    assert np.allclose(freq, p, atol=0.03)
    for arm, prop in logged.items():
        assert prop == pytest.approx(p[arm])
    # later slots: choices among the free candidates only, never a repeat
    ranking = b.rank(X, 8)
    assert sorted(ranking.order) == list(range(8))
    assert ranking.propensities[-1] == pytest.approx(1.0)  # one candidate left


def test_thompson_propensities_match_frequencies(rng: np.random.Generator) -> None:
    X, means = _env(rng, n_arms=6)
    b = LinearThompson(X.shape[1], explore=1.0, epsilon=0.1, n_samples=400, seed=1)
    b.update_many(X[[0, 1, 2]], means[[0, 1, 2]])
    p = b.probabilities(X)
    firsts = [int(b.rank(X, 1).order[0]) for _ in range(3000)]
    freq = np.bincount(firsts, minlength=len(X)) / len(firsts)
    assert np.allclose(freq, p, atol=0.04)
    props = [b.rank(X, 1) for _ in range(200)]
    assert all(0 < r.propensities[0] <= 1 for r in props)


def test_greedy_switch_is_deterministic(rng: np.random.Generator) -> None:
    X, _ = _env(rng)
    b = LinearThompson(X.shape[1], explore=2.0, epsilon=0.5)
    first = b.rank(X, 5, explore=False)
    assert np.all(first.propensities == 1.0)
    assert all(np.array_equal(b.rank(X, 5, explore=False).order, first.order) for _ in range(5))


def test_state_round_trip_and_validation(rng: np.random.Generator) -> None:
    b = LinUCB(4)
    b.update_many(rng.standard_normal((5, 4)), rng.random(5))
    c = LinUCB(4)
    c.load_state_dict(b.state_dict())
    assert np.allclose(c.theta, b.theta) and c.n_updates == 5
    with pytest.raises(ValueError, match="dim"):
        LinUCB(3).load_state_dict(b.state_dict())
    with pytest.raises(ValueError, match="epsilon"):
        LinUCB(3, epsilon=2.0)
    with pytest.raises(ValueError, match="unknown bandit policy"):
        create_policy("ucb9", 3)

import numpy as np
import pytest

from lmrec.rl.ope import estimate, fit_reward_model


def _logs(rng, n=2000, k=5):
    """Contexts with one feature per arm; reward ~ Bernoulli(sigmoid(2x)); uniform-ish logging."""
    x = rng.standard_normal((n, k, 1))
    p_true = 1 / (1 + np.exp(-2 * x[..., 0]))
    mu = np.exp(0.5 * x[..., 0])
    mu /= mu.sum(1, keepdims=True)
    a = (mu.cumsum(1) < rng.random((n, 1))).sum(1).clip(max=k - 1)
    r = (rng.random(n) < p_true[np.arange(n), a]).astype(float)
    # target: softmax of 3x (prefers good arms): true value = E_x Σ π p
    pi = np.exp(3 * x[..., 0])
    pi /= pi.sum(1, keepdims=True)
    return x, a, mu[np.arange(n), a], r, pi, float((pi * p_true).sum(1).mean())


def test_estimators_are_unbiased_on_logs_with_known_value():
    rng = np.random.default_rng(0)
    errs = {"ips": [], "snips": [], "dr": []}
    covered = 0
    for rep in range(30):
        x, a, prop, r, pi, truth = _logs(rng)
        q = fit_reward_model(x, a, r, seed=rep)
        est = estimate(pi, a, prop, r, q=q, n_boot=100, seed=rep)
        for k in errs:
            errs[k].append(est[k].value - truth)
        covered += est["dr"].covers(truth)
    for k, e in errs.items():
        e = np.asarray(e)
        # mean error within 3 standard errors of zero: no detectable bias
        assert abs(e.mean()) < 3 * e.std() / np.sqrt(len(e)) + 1e-3, k
    assert covered >= 24  # a 95% interval should cover in ~28.5 of 30


def test_a_wrong_target_is_detected():
    x, a, prop, r, pi, truth = _logs(np.random.default_rng(1))
    worst = np.zeros_like(pi)
    worst[np.arange(len(pi)), x[..., 0].argmin(1)] = 1.0
    est = estimate(worst, a, prop, r, q=fit_reward_model(x, a, r), n_boot=100)
    assert est["dr"].ci_high < truth


def test_zero_propensity_is_refused():
    with pytest.raises(ValueError, match="propensities must be > 0"):
        estimate(np.ones((2, 2)) / 2, np.array([0, 1]), np.array([0.5, 0.0]), np.array([1.0, 0.0]))


def test_logged_decisions_of_different_widths_are_estimated_without_bias():
    from lmrec.bandits import LoggedDecision
    from lmrec.rl.ope import estimate_logged

    rng = np.random.default_rng(5)
    decisions, truth = [], []
    for _ in range(3000):
        m = int(rng.integers(3, 8))
        x = rng.standard_normal((m, 2))
        p = 1 / (1 + np.exp(-2 * x[:, 0]))
        a = int(rng.integers(m))  # uniform logging
        decisions.append(LoggedDecision(x, a, 1.0 / m, float(rng.random() < p[a])))
        truth.append(p[np.argmax(x[:, 0])])

    def best_first(features):
        out = np.zeros(len(features))
        out[np.argmax(features[:, 0])] = 1.0
        return out

    est = estimate_logged(decisions, best_first, n_boot=200)
    assert est["dr"].covers(float(np.mean(truth)))
    assert est["ips"].covers(float(np.mean(truth)))

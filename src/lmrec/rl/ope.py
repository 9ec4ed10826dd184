"""Off-policy estimates of a target policy's per-decision reward from logged decisions.

A logged decision is a context ``x`` (the candidates' features), the logged action ``a`` with its
propensity ``μ(a|x)``, and the reward ``r``. With the target's probabilities ``π(·|x)`` and
``w = π(a|x) / μ(a|x)``:

* **IPS**: ``mean(w·r)``, unbiased whenever ``μ > 0`` wherever ``π > 0``;
* **SNIPS**: ``Σ w·r / Σ w``, slightly biased, far less variance;
* **DR** (Dudík, Langford & Li 2011): ``mean(Σ_a π(a|x)·q̂(x,a) + w·(r − q̂(x,a)))`` with a reward
  model ``q̂``; unbiased if *either* the propensities or ``q̂`` are right, and low-variance when
  ``q̂`` is good. ``q̂`` is cross-fitted (fitted on the other folds' decisions), so a decision's own
  reward never enters its model.

Confidence intervals are percentile bootstraps over decisions.

Why not Open Bandit Pipeline: its newest release (0.5.7) does not install beside our pinned stack
(``pip install --dry-run obp`` backtracks to 0.4.1 of 2021, which predates the numpy 2 and pandas 3
this environment runs), and it is organised around its own ``bandit_feedback`` dict; the three
estimators are a few lines each, and writing them keeps the CIs and cross-fitting under our control.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lmrec.rl.simulator import ClickModel

ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    #: ``(Σw)² / Σw²``: how many decisions the estimate is worth
    effective_n: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high


def _check(target: np.ndarray, actions: np.ndarray, propensities: np.ndarray, rewards: np.ndarray) -> None:
    n = len(actions)
    if target.ndim != 2 or len(target) != n or len(propensities) != n or len(rewards) != n:
        raise ValueError(
            f"need target (n, A) and n actions, propensities and rewards; got {target.shape}, "
            f"{len(actions)}, {len(propensities)}, {len(rewards)}"
        )
    if (propensities <= 0).any():
        raise ValueError(f"propensities must be > 0 (row {int(np.argmax(propensities <= 0))} is not)")


def fit_reward_model(
    features: np.ndarray, actions: np.ndarray, rewards: np.ndarray, *, folds: int = 2, seed: int = 0
) -> np.ndarray:
    """Cross-fitted logistic ``q̂(x, a)`` for every candidate of every decision: ``(n, A)``.

    ``features (n, A, F)``: each candidate's features. Rewards must lie in [0, 1].
    """
    n = len(actions)
    rows = np.arange(n)
    fold = np.random.default_rng(seed).integers(folds, size=n)
    q = np.zeros(features.shape[:2])
    for k in range(folds):
        train = fold != k
        if not train.any() or train.all():
            train = np.ones(n, dtype=bool)
        y = rewards[train]
        if y.min() == y.max():  # one class only: the constant model
            q[fold == k] = float(y.mean())
            continue
        m = ClickModel.fit(features[rows[train], actions[train]], y, l2=1e-2)
        z = m.logits(features[fold == k])
        q[fold == k] = 1.0 / (1.0 + np.exp(-z))
    return q


def _values(
    target: np.ndarray,
    actions: np.ndarray,
    propensities: np.ndarray,
    rewards: np.ndarray,
    q: np.ndarray | None,
) -> dict[str, Callable[[np.ndarray], float]]:
    rows = np.arange(len(actions))
    w = target[rows, actions] / propensities
    wr = w * rewards
    out: dict[str, Callable[[np.ndarray], float]] = {
        "ips": lambda i: float(wr[i].mean()),
        "snips": lambda i: float(wr[i].sum() / max(w[i].sum(), 1e-12)),
    }
    if q is not None:
        dr = (target * q).sum(1) + w * (rewards - q[rows, actions])
        out["dr"] = lambda i: float(dr[i].mean())
    return out


def estimate(
    target: np.ndarray,
    actions: np.ndarray,
    propensities: np.ndarray,
    rewards: np.ndarray,
    *,
    q: np.ndarray | None = None,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Estimate]:
    """IPS, SNIPS and (with a reward model ``q (n, A)``) DR estimates with bootstrap CIs.

    ``target (n, A)``: the target policy's probabilities over each decision's candidates;
    ``actions (n,)``: the logged choices; ``propensities (n,)``: ``μ(a|x)``; ``rewards (n,)``.
    """
    target = np.asarray(target, dtype=np.float64)
    actions = np.asarray(actions, dtype=np.int64)
    propensities = np.asarray(propensities, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    _check(target, actions, propensities, rewards)
    n = len(actions)
    fns = _values(target, actions, propensities, rewards, q)
    w = target[np.arange(n), actions] / propensities
    ess = float(w.sum() ** 2 / max((w**2).sum(), 1e-12))
    rng = np.random.default_rng(seed)
    boots = rng.integers(n, size=(n_boot, n))
    everyone = np.arange(n)
    out = {}
    for name, fn in fns.items():
        b = np.array([fn(i) for i in boots])
        lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2])
        out[name] = Estimate(name, fn(everyone), float(lo), float(hi), n, ess)
    return out


def estimate_logged(
    decisions: Sequence[Any],
    target: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, Estimate]:
    """IPS, SNIPS and DR on the serving event log.

    ``decisions``: :class:`lmrec.bandits.LoggedDecision` rows, as
    :func:`lmrec.bandits.decisions_from_log` reads them from the server's impressions and feedback
    (every slot of every served list, with its propensity); ``target(features)`` gives the target
    policy's probabilities over one decision's free candidates (e.g. a bandit's
    ``probabilities``). Decisions have different numbers of candidates; shorter ones are padded
    with candidates the target never picks.
    """
    if not decisions:
        raise ValueError("no logged decisions: the event log has no served lists with candidates")
    n = len(decisions)
    width = max(len(d.features) for d in decisions)
    dim = decisions[0].features.shape[1]
    feats = np.zeros((n, width, dim))
    probs = np.zeros((n, width))
    for i, d in enumerate(decisions):
        m = len(d.features)
        feats[i, :m] = d.features
        probs[i, :m] = target(d.features)
    actions = np.array([d.chosen for d in decisions])
    rewards = np.array([d.reward for d in decisions], dtype=np.float64)
    props = np.array([d.propensity for d in decisions], dtype=np.float64)
    q = fit_reward_model(feats, actions, rewards, seed=seed)
    return estimate(probs, actions, props, rewards, q=q, n_boot=n_boot, seed=seed)


__all__ = ["ESTIMATORS", "Estimate", "estimate", "estimate_logged", "fit_reward_model"]

"""Offline evaluation of bandit policies on logged served lists.

Every list the server shows is logged with the candidates it was drawn from and the propensity of
each slot's choice (:class:`lmrec.events.Impression`); feedback events say which shown items
were taken. :func:`decisions_from_log` turns that log into one :class:`LoggedDecision` per shown
slot: the free candidates' features, the logged choice, its propensity and its reward.
:func:`evaluate_policy` then estimates what another policy would have earned:

* ``"ips"`` (inverse propensity scoring): ``mean(r · π(a|x) / μ(a|x))``. Unbiased whenever the
  logging policy ``μ`` gives every action ``π`` might take a non-zero propensity; high variance
  when the two policies disagree a lot.
* ``"snips"`` (self-normalised IPS): ``Σ r·w / Σ w`` with ``w = π/μ``. Slightly biased, much lower
  variance; usually the number to look at.
* ``"replay"`` (Li, Chu, Langford & Wang, WSDM 2011): draw the target's action; keep the decision
  only when it equals the logged one and average the kept rewards. Unbiased when the log was
  collected uniformly at random; with ``learn=True`` the target policy is updated on kept decisions,
  which evaluates a *learning* bandit as it would have run online.

``effective_n`` (``(Σw)² / Σw²``) says how many logged decisions the estimate is really worth; a
small value means the target policy strays far from what was logged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np

from lmrec.bandits.base import make_features
from lmrec.events import EventLog

Estimator = Literal["ips", "snips", "replay"]


class Policy(Protocol):
    """Anything that gives next-slot choice probabilities over candidate features."""

    def probabilities(
        self,
        X: np.ndarray,
        *,
        free: np.ndarray | None = None,
        explore: bool = True,
        epsilon: float | None = None,
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class LoggedDecision:
    """One logged slot: the free candidates' features, what was chosen, with what probability, and
    the reward it earned."""

    features: np.ndarray
    chosen: int
    propensity: float
    reward: float


@dataclass(frozen=True)
class ReplayResult:
    policy: str
    estimator: str
    value: float
    stderr: float
    n: int
    #: decisions that contributed (matches for "replay"; non-zero weights for IPS)
    used: int
    effective_n: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UniformPolicy:
    """Every free candidate equally likely: the baseline, and the ideal logging policy for replay."""

    name = "uniform"

    def probabilities(
        self,
        X: np.ndarray,
        *,
        free: np.ndarray | None = None,
        explore: bool = True,
        epsilon: float | None = None,
    ) -> np.ndarray:
        n = len(X)
        free = np.ones(n, dtype=bool) if free is None else free
        return free / free.sum()


class ModelOrderPolicy:
    """The recommender's own order (feature 0 is its scaled score): the no-bandit baseline."""

    name = "model"

    def probabilities(
        self,
        X: np.ndarray,
        *,
        free: np.ndarray | None = None,
        explore: bool = True,
        epsilon: float | None = None,
    ) -> np.ndarray:
        n = len(X)
        free = np.ones(n, dtype=bool) if free is None else free
        p = np.zeros(n)
        cand = np.flatnonzero(free)
        p[cand[np.argmax(np.asarray(X)[cand, 0])]] = 1.0
        return p


def evaluate_policy(
    policy: Policy,
    decisions: Sequence[LoggedDecision],
    *,
    estimator: Estimator = "snips",
    explore: bool = True,
    learn: bool = False,
    max_weight: float | None = None,
    seed: int = 0,
    name: str | None = None,
) -> ReplayResult:
    """Estimate the mean per-slot reward ``policy`` would have earned on the logged ``decisions``.

    ``max_weight`` clips importance weights (trades bias for variance); ``learn`` (replay only)
    updates a bandit ``policy`` on the decisions it matches, in log order.
    """
    label = str(name or getattr(policy, "name", None) or type(policy).__name__)
    if not decisions:
        return ReplayResult(label, estimator, float("nan"), float("nan"), 0, 0, 0.0)
    if estimator == "replay":
        rng = np.random.default_rng(seed)
        kept: list[float] = []
        for d in decisions:
            p = policy.probabilities(d.features, explore=explore)
            a = int(rng.choice(len(p), p=p / p.sum()))
            if a == d.chosen:
                kept.append(d.reward)
                if learn and hasattr(policy, "update"):
                    policy.update(d.features[a], d.reward)
        n_kept = len(kept)
        value = float(np.mean(kept)) if kept else float("nan")
        se = float(np.std(kept, ddof=1) / np.sqrt(n_kept)) if n_kept > 1 else float("nan")
        return ReplayResult(label, estimator, value, se, len(decisions), n_kept, float(n_kept))
    if estimator not in ("ips", "snips"):
        raise ValueError(f"estimator must be ips, snips or replay, got {estimator!r}")
    w = np.empty(len(decisions))
    r = np.empty(len(decisions))
    for i, d in enumerate(decisions):
        if d.propensity <= 0:
            raise ValueError(f"logged decision {i} has propensity {d.propensity}; IPS needs > 0")
        w[i] = policy.probabilities(d.features, explore=explore)[d.chosen] / d.propensity
        r[i] = d.reward
    if max_weight is not None:
        w = np.minimum(w, max_weight)
    sw = w.sum()
    ess = float(sw**2 / np.sum(w**2)) if np.any(w > 0) else 0.0
    if estimator == "ips":
        terms = w * r
        value = float(terms.mean())
        se = float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("nan")
    else:
        value = float((w * r).sum() / sw) if sw > 0 else float("nan")
        # delta-method standard error of a ratio estimator
        resid = w * (r - value) if sw > 0 else np.zeros_like(w)
        se = float(np.sqrt(np.sum(resid**2)) / sw) if sw > 0 else float("nan")
    return ReplayResult(label, estimator, value, se, len(decisions), int(np.sum(w > 0)), ess)


def compare_policies(
    policies: Mapping[str, Policy],
    decisions: Sequence[LoggedDecision],
    estimators: Iterable[Estimator] = ("ips", "snips"),
    **kwargs: Any,
) -> list[ReplayResult]:
    """Every policy under every estimator, in one table."""
    return [
        evaluate_policy(p, decisions, estimator=e, name=name, **kwargs)
        for name, p in policies.items()
        for e in estimators
    ]


def decisions_from_log(
    store: EventLog,
    item_vectors: Callable[[list[Any]], np.ndarray],
    *,
    window_s: float = 3600.0,
    first_slot_only: bool = False,
    since: float | None = None,
) -> list[LoggedDecision]:
    """Logged impressions joined with feedback events into per-slot decisions.

    ``item_vectors(ids)`` returns the item embeddings for external ids (the server passes its
    model's vectors). A shown item's reward is that of the user's first feedback event on it that
    names the impression's ``request_id``, or, for events without one, arrives within ``window_s``
    seconds after it was served; shown items without feedback have reward 0.
    """
    # index feedback by (user, item): few per pair, so a linear scan per lookup is cheap
    feedback: dict[tuple[str, str], list[tuple[float, str | None, float]]] = {}
    for ev in store.events():
        key = (repr(ev.user_id), repr(ev.item_id))
        when = ev.received_at if ev.received_at is not None else ev.timestamp
        feedback.setdefault(key, []).append((when, ev.request_id, ev.reward))
    out: list[LoggedDecision] = []
    for imp in store.impressions(since=since):
        if not imp.candidates or not imp.items:
            continue
        cand = list(imp.candidates)
        pos = {repr(c): i for i, c in enumerate(cand)}
        feats = make_features(np.asarray(imp.candidate_scores, dtype=np.float64), item_vectors(cand))
        # the log stores scaled scores already; make_features re-scales them, which is a no-op on [0, 1]
        free = np.ones(len(cand), dtype=bool)
        for item, prop in zip(imp.items, imp.propensities, strict=True):
            row = pos.get(repr(item))
            if row is None:  # shown but not from the pool (should not happen): no context, skip
                continue
            reward = 0.0
            for when, rid, rew in feedback.get((repr(imp.user_id), repr(item)), []):
                if rid == imp.request_id or (
                    rid is None and imp.served_at <= when <= imp.served_at + window_s
                ):
                    reward = rew
                    break
            rows = np.flatnonzero(free)
            out.append(
                LoggedDecision(
                    features=feats[rows],
                    chosen=int(np.searchsorted(rows, row)),
                    propensity=float(prop),
                    reward=reward,
                )
            )
            free[row] = False
            if first_slot_only:
                break
    return out


__all__ = [
    "LoggedDecision",
    "ModelOrderPolicy",
    "Policy",
    "ReplayResult",
    "UniformPolicy",
    "compare_policies",
    "decisions_from_log",
    "evaluate_policy",
]

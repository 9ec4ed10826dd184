"""Contextual bandits that re-rank a recommender's candidates, and their offline evaluation.

* :class:`LinUCB` and :class:`LinearThompson`: one shared linear reward model over
  ``[base score, item embedding]``; an exploration knob (``explore``) and uniform mixing
  (``epsilon``) that gives every served slot a logged propensity.
* :mod:`lmrec.bandits.replay`: IPS / SNIPS / replay estimates of any policy on logged lists.
"""

from lmrec.bandits.base import LinearBandit, Ranking, make_features, scale_scores
from lmrec.bandits.linucb import LinUCB
from lmrec.bandits.replay import (
    LoggedDecision,
    ModelOrderPolicy,
    ReplayResult,
    UniformPolicy,
    compare_policies,
    decisions_from_log,
    evaluate_policy,
)
from lmrec.bandits.thompson import LinearThompson

POLICIES: dict[str, type[LinearBandit]] = {"linucb": LinUCB, "thompson": LinearThompson}


def create_policy(name: str, dim: int, **params: float | int | None) -> LinearBandit:
    """A bandit by name (``"linucb"`` or ``"thompson"``)."""
    try:
        klass = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown bandit policy {name!r}; available: {', '.join(POLICIES)}") from None
    return klass(dim, **params)  # type: ignore[arg-type]


__all__ = [
    "POLICIES",
    "LinUCB",
    "LinearBandit",
    "LinearThompson",
    "LoggedDecision",
    "ModelOrderPolicy",
    "Ranking",
    "ReplayResult",
    "UniformPolicy",
    "compare_policies",
    "create_policy",
    "decisions_from_log",
    "evaluate_policy",
    "make_features",
    "scale_scores",
]

"""Shared pieces of the linear contextual bandits: features, the posterior, slot-wise ranking.

The bandits re-rank a short candidate list that the recommender produced. Each candidate is an arm
with a feature vector ``x = [base score, item embedding]``: the base model's score (min-max scaled
within the list) and the item's unit-length embedding. One linear reward model ``r ≈ θᵀx`` is shared
by all arms, so feedback on one item teaches the bandit about every item near it in embedding space,
which is what makes exploration affordable over a catalogue of thousands of arms.

The posterior is Bayesian ridge regression with a *prior mean*: ``θ₀ = [prior_weight, 0, …, 0]``,
i.e. before any feedback the bandit trusts the recommender's order. ``A = λI + Σ x xᵀ`` and
``b = λθ₀ + Σ r x``, so ``θ = A⁻¹b`` starts at ``θ₀`` and moves as rewards arrive. ``A⁻¹`` is kept
up to date with Sherman–Morrison (O(d²) per update).

A list of ``k`` items is filled slot by slot. At each slot the policy chooses among the candidates
still free, with probability ``1 - epsilon`` by its own rule (UCB, or a posterior sample) and with
probability ``epsilon`` uniformly. The probability of the item actually chosen at each slot (its
*propensity*) is returned with the list and logged, so offline replay can re-weight the log for any
other policy (:mod:`lmrec.bandits.replay`). ``epsilon > 0`` guarantees every candidate a non-zero
propensity, which unbiased off-policy estimates need.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


def make_features(base_scores: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """``[scaled base score, unit item vector]`` for each candidate, float64.

    Scores are min-max scaled within the list so that the first feature means "how high the
    recommender put this item here", comparable across queries whose raw scores differ in scale.
    """
    scaled = scale_scores(base_scores)
    v = np.asarray(item_vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    return np.concatenate([scaled[:, None], v], axis=1)


def scale_scores(base_scores: np.ndarray) -> np.ndarray:
    """The first feature of :func:`make_features` (what the server logs per candidate): scores
    min-max scaled within the list, non-finite ones 0, all 1 when every finite score is equal."""
    s = np.asarray(base_scores, dtype=np.float64)
    finite = np.isfinite(s)
    if finite.all():  # the usual list, every request: plain min/max, no NaN-aware passes
        if not len(s):
            return s.copy()
        lo, hi = s.min(), s.max()
        return (s - lo) / (hi - lo) if hi > lo else np.ones_like(s)
    if not finite.any():
        return np.zeros_like(s)
    lo, hi = s[finite].min(), s[finite].max()
    return np.where(finite, (s - lo) / (hi - lo) if hi > lo else 1.0, 0.0)


@dataclass(frozen=True)
class Ranking:
    """A served list: positions into the candidate array, and the propensity of each slot's choice."""

    order: np.ndarray
    propensities: np.ndarray


class LinearBandit(ABC):
    """Bayesian linear reward model over arm features, shared by every arm."""

    name = "linear"

    def __init__(
        self,
        dim: int,
        *,
        explore: float = 1.0,
        epsilon: float = 0.05,
        reg: float = 1.0,
        prior_weight: float = 1.0,
        seed: int | None = 0,
    ) -> None:
        if dim < 1:
            raise ValueError(f"feature dim must be >= 1, got {dim}")
        if explore < 0:
            raise ValueError(f"explore must be >= 0, got {explore}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if reg <= 0:
            raise ValueError(f"reg must be > 0, got {reg}")
        self.dim = dim
        #: the exploration knob: UCB width (LinUCB's α) or posterior scale (Thompson's v)
        self.explore = float(explore)
        self.epsilon = float(epsilon)
        self.reg = float(reg)
        self.prior_weight = float(prior_weight)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        theta0 = np.zeros(self.dim)
        theta0[0] = self.prior_weight
        self.A_inv = np.eye(self.dim) / self.reg
        self.b = self.reg * theta0
        self.theta = theta0.copy()
        self.n_updates = 0

    # ------------------------------------------------------------------ learning
    def update(self, x: np.ndarray, reward: float) -> None:
        """Add one (features, reward) observation (Sherman–Morrison update of ``A⁻¹``)."""
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.shape[0] != self.dim:
            raise ValueError(f"feature vector has dim {x.shape[0]}, bandit has {self.dim}")
        ax = self.A_inv @ x
        self.A_inv -= np.outer(ax, ax) / (1.0 + x @ ax)
        self.b += float(reward) * x
        self.theta = self.A_inv @ self.b
        self.n_updates += 1
        self._invalidate()

    def update_many(self, X: np.ndarray, rewards: np.ndarray) -> None:
        for x, r in zip(np.asarray(X), np.asarray(rewards), strict=True):
            self.update(x, float(r))

    def _invalidate(self) -> None:
        """Drop anything cached from the posterior (subclasses cache factorisations)."""
        return None

    # ------------------------------------------------------------------ policy
    def expected(self, X: np.ndarray) -> np.ndarray:
        """Posterior mean reward ``θᵀx`` per arm (the greedy policy's scores)."""
        return np.asarray(X, dtype=np.float64) @ self.theta

    def _prepare(self, X: np.ndarray) -> object:
        """Per-list precomputation shared by every slot (e.g. LinUCB's bounds); default none."""
        return None

    @abstractmethod
    def _slot_choice(
        self, X: np.ndarray, free: np.ndarray, prepared: object
    ) -> tuple[int, np.ndarray | None]:
        """Choose among ``free`` rows of ``X`` by the policy's own rule. Returns the row and, for a
        random rule, each row's probability of being the rule's choice (``None``: deterministic)."""

    def rank(self, X: np.ndarray, k: int, *, explore: bool = True) -> Ranking:
        """Fill ``k`` slots from the candidates ``X`` (n, dim); see the module docstring.

        ``explore=False`` is the greedy policy (posterior mean, no uniform mixing): deterministic,
        every propensity 1.
        """
        X = np.asarray(X, dtype=np.float64)
        n = len(X)
        k = min(int(k), n)
        free = np.ones(n, dtype=bool)
        order = np.empty(k, np.int64)
        props = np.ones(k, np.float64)
        if not explore:
            greedy = self.expected(X)
            for slot in range(k):
                order[slot] = greedy_argmax(greedy, free)
                free[order[slot]] = False
            return Ranking(order=order, propensities=props)
        prepared = self._prepare(X)
        for slot in range(k):
            n_free = int(free.sum())
            rule_pick, rule_probs = self._slot_choice(X, free, prepared)
            if self.epsilon > 0 and self.rng.random() < self.epsilon:
                pick = int(self.rng.choice(np.flatnonzero(free)))
            else:
                pick = rule_pick
            # a deterministic rule (rule_probs None) puts all its mass on rule_pick
            p_rule = float(pick == rule_pick) if rule_probs is None else float(rule_probs[pick])
            order[slot] = pick
            props[slot] = (1 - self.epsilon) * p_rule + self.epsilon / n_free
            free[pick] = False
        return Ranking(order=order, propensities=props)

    @abstractmethod
    def probabilities(
        self,
        X: np.ndarray,
        *,
        free: np.ndarray | None = None,
        explore: bool = True,
        epsilon: float | None = None,
    ) -> np.ndarray:
        """Probability of each candidate being chosen for the next slot (zeros for taken rows)."""

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "explore": self.explore,
            "epsilon": self.epsilon,
            "reg": self.reg,
            "prior_weight": self.prior_weight,
            "A_inv": self.A_inv.tolist(),
            "b": self.b.tolist(),
            "n_updates": self.n_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["dim"]) != self.dim:
            raise ValueError(f"saved bandit has dim {state['dim']}, this one {self.dim}")
        self.A_inv = np.asarray(state["A_inv"], dtype=np.float64)
        self.b = np.asarray(state["b"], dtype=np.float64)
        self.theta = self.A_inv @ self.b
        self.n_updates = int(state["n_updates"])
        self._invalidate()


def greedy_argmax(scores: np.ndarray, free: np.ndarray) -> int:
    """Highest score among free rows; ties go to the lower row (the recommender's order)."""
    cand = np.flatnonzero(free)
    return int(cand[np.argmax(scores[cand])])


__all__ = ["LinearBandit", "Ranking", "greedy_argmax", "make_features", "scale_scores"]

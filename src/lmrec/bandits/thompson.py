"""Linear Thompson sampling (Agrawal & Goyal, ICML 2013) as a list re-ranker.

Each slot draws ``θ̃ ~ N(θ, v² A⁻¹)`` and takes the free candidate with the highest ``θ̃ᵀx``;
``v`` (:attr:`explore`) is the exploration knob (0 is greedy). A fresh draw per slot makes every
slot an independent Thompson decision, so the probability of the chosen item at that slot is a
well-defined number: the chance that a posterior draw ranks it first among the free candidates.
It has no closed form; it is estimated from ``n_samples`` extra draws made with the same matrix
product (the draw actually used counts as one of them, so a chosen item never gets propensity 0).
"""

from __future__ import annotations

import numpy as np

from lmrec.bandits.base import LinearBandit, greedy_argmax


class LinearThompson(LinearBandit):
    """Shared-parameter linear Thompson sampling over ``[base score, item embedding]`` features."""

    name = "thompson"

    def __init__(self, dim: int, *, n_samples: int = 128, **kwargs: float | int | None) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.n_samples = int(n_samples)
        self._chol: np.ndarray | None = None
        super().__init__(dim, **kwargs)  # type: ignore[arg-type]

    def _invalidate(self) -> None:
        self._chol = None

    def _factor(self) -> np.ndarray:
        if self._chol is None:
            # A⁻¹ is SPD in exact arithmetic; symmetrise and add a tiny jitter against round-off
            cov = 0.5 * (self.A_inv + self.A_inv.T) + 1e-10 * np.eye(self.dim)
            self._chol = np.linalg.cholesky(cov)
        return self._chol

    def sample_thetas(self, n: int) -> np.ndarray:
        """``n`` posterior draws as columns, shape (dim, n)."""
        z = self.rng.standard_normal((self.dim, n))
        return self.theta[:, None] + self.explore * (self._factor() @ z)

    def _winners(self, X: np.ndarray, free: np.ndarray, n: int) -> np.ndarray:
        scores = np.asarray(X, dtype=np.float64) @ self.sample_thetas(n)  # (n_cand, n)
        scores[~free] = -np.inf
        return np.argmax(scores, axis=0)

    def _slot_choice(
        self, X: np.ndarray, free: np.ndarray, prepared: object
    ) -> tuple[int, np.ndarray | None]:
        winners = self._winners(X, free, self.n_samples + 1)
        return int(winners[0]), np.bincount(winners, minlength=len(X)) / len(winners)

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
        eps = (self.epsilon if explore else 0.0) if epsilon is None else epsilon
        p = np.zeros(n)
        if explore and self.explore > 0:
            winners = self._winners(X, free, self.n_samples)
            p += (1.0 - eps) * np.bincount(winners, minlength=n) / len(winners)
        else:
            p[greedy_argmax(self.expected(X), free)] = 1.0 - eps
        p[free] += eps / int(free.sum())
        return p


__all__ = ["LinearThompson"]

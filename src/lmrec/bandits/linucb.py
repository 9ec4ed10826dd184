"""LinUCB (Li, Chu, Langford & Schapire, WWW 2010) as a list re-ranker.

Each slot goes to the free candidate with the highest upper confidence bound

    UCB(x) = θᵀx + α · sqrt(xᵀ A⁻¹ x)

where ``α`` (:attr:`explore`) is the exploration knob: 0 is greedy, larger values favour items the
model is unsure about (far, in embedding space, from anything that has received feedback). The rule
is deterministic; the propensities that replay needs come from the ``epsilon`` uniform mixing (see
:mod:`lmrec.bandits.base`).
"""

from __future__ import annotations

import numpy as np

from lmrec.bandits.base import LinearBandit, greedy_argmax


class LinUCB(LinearBandit):
    """Shared-parameter LinUCB over ``[base score, item embedding]`` features."""

    name = "linucb"

    def ucb(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        width = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", X, self.A_inv, X), 0.0))
        return X @ self.theta + self.explore * width

    def _prepare(self, X: np.ndarray) -> object:
        return self.ucb(X)  # the posterior does not change within a list: one bound per candidate

    def _slot_choice(
        self, X: np.ndarray, free: np.ndarray, prepared: object
    ) -> tuple[int, np.ndarray | None]:
        return greedy_argmax(np.asarray(prepared), free), None

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
        p[greedy_argmax(self.ucb(X) if explore else self.expected(X), free)] = 1.0 - eps
        p[free] += eps / int(free.sum())
        return p


__all__ = ["LinUCB"]

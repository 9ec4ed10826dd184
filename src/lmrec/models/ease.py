"""EASE: Embarrassingly Shallow Autoencoder (Steck, WWW 2019).

A linear item-item model with a closed-form solution. With ``X`` the user x item matrix and ``λ`` the
L2 penalty::

    P = (XᵀX + λI)⁻¹          B = I - P · diag(1 / diag(P))   (so diag(B) = 0)
    scores = history @ B

The zero diagonal is the constraint that keeps the model from predicting an item from itself; it is
what makes EASE a strong top-N baseline rather than the identity. Fitting inverts one dense
``n_items x n_items`` matrix, so memory grows with the square of the catalogue: fine for tens of
thousands of items, use item-kNN or MF beyond that. Queries are plain history vectors, so unseen
users and known users with new events need no refit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from pydantic import Field

from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.models.base import ModelConfig, QueryBatch, Recommender


class EASEConfig(ModelConfig):
    """``l2`` default: best validation NDCG@10 on ml-100k leave-last-out (``benchmarks/tune_cf.py``).

    Larger catalogues with more users usually want a larger λ (Steck used 200-1000); tune it.
    """

    #: L2 penalty λ on the item-item weights (larger = smoother, closer to popularity)
    l2: float = Field(100.0, gt=0.0)
    #: use 1/0 interactions (implicit feedback); False uses the ``weight`` column (e.g. ratings)
    binary: bool = True
    #: refuse catalogues above this size: the dense inverse needs 2 x 8 x n_items² bytes
    max_items: int = Field(60_000, ge=1)


class EASE(Recommender):
    """Closed-form linear item-item autoencoder with a zero diagonal; see the module docstring."""

    name = "ease"
    Config = EASEConfig
    config: EASEConfig
    supports = frozenset({"user", "history"})

    def _fit(self, data: Dataset) -> None:
        c = self.config
        n = data.n_items
        if n > c.max_items:
            raise LmrecError(
                f"EASE needs a dense {n} x {n} matrix ({2 * 8 * n * n / 2**30:.1f} GiB to invert); "
                f"the catalogue exceeds max_items={c.max_items}. Use item_knn or als, or raise max_items."
            )
        x = data.csr("binary" if c.binary else "weight")
        # float64 keeps the inverse accurate for small λ; the result is stored as float32
        gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
        gram[np.diag_indices(n)] += c.l2
        # G is symmetric positive definite (λ > 0): a Cholesky-based inverse is faster and stabler
        # than a general LU inverse.
        chol = scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False)
        p = scipy.linalg.cho_solve(chol, np.eye(n), overwrite_b=True, check_finite=False)
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices(n)] = 0.0
        # row-major: scoring is history @ B, and a column-ordered B (as cho_solve returns it) made
        # every query copy the whole matrix
        self.weights_ = np.ascontiguousarray(b, dtype=np.float32)
        self.popularity_ = data.item_popularity().astype(np.float32)

    def _score(self, batch: QueryBatch) -> np.ndarray:
        h = batch.history
        if self.config.binary:
            h = h.copy()
            h.data[:] = 1.0
        scores = np.asarray(h @ self.weights_, dtype=np.float32)
        empty = np.diff(batch.history.indptr) == 0
        if empty.any():  # nothing personal to go on: the popular items
            scores[empty] = self.popularity_[None, :]
        return scores

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_, "popularity": self.popularity_}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.weights_ = tensors["weights"]
        self.popularity_ = tensors["popularity"]

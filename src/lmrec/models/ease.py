"""EASE: Embarrassingly Shallow Autoencoder (Steck, WWW 2019).

A linear item-item model with a closed-form solution. With ``X`` the user x item matrix and ``λ`` the
L2 penalty::

    P = (XᵀX + λI)⁻¹          B = I - P · diag(1 / diag(P))   (so diag(B) = 0)
    scores = history @ B

The zero diagonal is the constraint that keeps the model from predicting an item from itself; it is
what makes EASE a strong top-N baseline rather than the identity. Fitting inverts one dense
``n_items x n_items`` matrix, so memory grows with the square of the catalogue (16 bytes x n²: 12 GiB
at ml-20m's 27k items): fine for tens of thousands of items, use item-kNN or MF beyond that. A fit
checks the available memory first and refuses, naming the need, instead of being OOM-killed. Queries are plain history vectors, so unseen
users and known users with new events need no refit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field

from lmrec._memory import check_memory
from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.models.base import ModelConfig, QueryBatch, Recommender

#: one block of the blockwise Gram product holds at most this many float64 (~128 MB)
_BLOCK_FLOATS = 16_000_000


class EASEConfig(ModelConfig):
    """``l2`` default: best validation NDCG@10 on ml-100k leave-last-out (``benchmarks/tune_cf.py``).

    Larger catalogues with more users usually want a larger λ (Steck used 200-1000); tune it.
    """

    #: L2 penalty λ on the item-item weights (larger = smoother, closer to popularity)
    l2: float = Field(100.0, gt=0.0)
    #: use 1/0 interactions (implicit feedback); False uses the ``weight`` column (e.g. ratings)
    binary: bool = True
    #: refuse catalogues above this size (None: no fixed cap; the memory check always runs and
    #: refuses a catalogue whose 2 x 8 x n_items² bytes do not fit in the available memory)
    max_items: int | None = Field(None, ge=1)


def memory_needed(n_items: int) -> int:
    """Peak bytes of an EASE fit: the Gram matrix (factored in place) and the inverse, n² float64
    each, plus one block of the blockwise Gram product."""
    return 2 * 8 * n_items * n_items + 8 * n_items * _gram_block(n_items)


def _gram_block(n: int) -> int:
    return max(1, min(n, _BLOCK_FLOATS // max(n, 1)))


def _dense_gram(x: sp.csr_matrix) -> np.ndarray:
    """``XᵀX`` as a dense float64 array, built a block of columns at a time.

    ``(x.T @ x).todense()`` first builds the sparse product, which for a dense-ish Gram (ml-20m: most
    item pairs co-occur) holds as many entries as the dense matrix plus their indices, on top of
    it; blocks keep the extra memory to one ``n x block`` slice.
    """
    n = x.shape[1]
    xt = x.T.tocsr()
    xc = x.tocsc()
    gram = np.empty((n, n), dtype=np.float64)
    step = _gram_block(n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        gram[:, start:stop] = (xt @ xc[:, start:stop]).toarray()
    return gram


class EASE(Recommender):
    """Closed-form linear item-item autoencoder with a zero diagonal; see the module docstring."""

    name = "ease"
    Config = EASEConfig
    config: EASEConfig
    supports = frozenset({"user", "history"})

    def _fit(self, data: Dataset) -> None:
        c = self.config
        n = data.n_items
        if c.max_items is not None and n > c.max_items:
            raise LmrecError(
                f"EASE on {n:,} items exceeds max_items={c.max_items:,}; use item_knn or als, or raise max_items"
            )
        check_memory(
            memory_needed(n),
            what=f"EASE on {n:,} items (two dense {n:,} x {n:,} float64 matrices to invert)",
            alternative="use item_knn or als (sparse, memory linear in the catalogue), or fewer items",
        )
        x = data.csr("binary" if c.binary else "weight")
        # float64 keeps the inverse accurate for small λ; the result is stored as float32
        gram = _dense_gram(x)
        gram[np.diag_indices(n)] += c.l2
        # G is symmetric positive definite (λ > 0): a Cholesky-based inverse is faster and stabler
        # than a general LU inverse. The factor overwrites G and the inverse overwrites the
        # identity, so the peak is these two n x n float64 arrays. LAPACK works in column order:
        # G goes in as its transpose (the same symmetric matrix, a Fortran-ordered view) and the
        # identity is made in column order, or each would be copied first. Those two copies had
        # doubled the peak, and the 20M scale run (27k items) was killed by the OOM killer at 23 GB
        # after the memory check had passed it at 12 GB.
        chol = scipy.linalg.cho_factor(gram.T, overwrite_a=True, check_finite=False)
        p = scipy.linalg.cho_solve(chol, np.eye(n, order="F"), overwrite_b=True, check_finite=False)
        del chol, gram
        p /= (-np.diag(p))[None, :]
        p[np.diag_indices(n)] = 0.0
        # row-major: scoring is history @ B, and a column-ordered B (as cho_solve returns it) made
        # every query copy the whole matrix
        self.weights_ = np.ascontiguousarray(p, dtype=np.float32)
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

"""Neighbourhood models: item-based and user-based k-nearest-neighbours with shrunk cosine.

Both models score a query from its *history vector* (the base class merges a known user's training
history with any extra history), so known users, known users with new events and unseen users are
served by the same code path, without refitting.

Similarity is the shrunk cosine of Sarwar et al. / RecBole / Dacrema et al.::

    sim(a, b) = <a, b> / (|a| |b| + shrink)

``shrink`` pulls similarities that rest on few co-occurrences towards zero. Optional feature
weighting (TF-IDF or Okapi BM25) down-weights the "features" that say little: for item-kNN the
features of an item are the users who consumed it, so heavy users count less; for user-kNN they are
items, so blockbusters count less.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from lmrec.data.dataset import Dataset
from lmrec.models.base import ModelConfig, QueryBatch, Recommender
from lmrec.ranking import topk

Weighting = Literal["none", "tfidf", "bm25"]

#: dense similarity blocks are at most this many floats (~64 MB of float32)
_BLOCK_FLOATS = 16_000_000


def feature_weights(
    matrix: sp.csr_matrix, weighting: Weighting, *, bm25_k1: float = 1.2, bm25_b: float = 0.75
) -> sp.csr_matrix:
    """Re-weight ``matrix`` (rows = objects to compare, columns = their features).

    ``tfidf`` multiplies each column by ``log(n_rows / df)``; ``bm25`` additionally saturates the
    values and normalises by row length, as Okapi BM25 does for terms in documents. Rows of the result
    are what the cosine compares.
    """
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if weighting == "none" or m.nnz == 0:
        return m
    n_rows = m.shape[0]
    df = np.bincount(m.indices, minlength=m.shape[1]).astype(np.float64)
    idf = np.log(n_rows / np.maximum(df, 1.0)).astype(np.float32)
    if weighting == "tfidf":
        m.data *= idf[m.indices]
        return m
    row_len = np.asarray(m.sum(axis=1)).ravel()
    avg = row_len[row_len > 0].mean() if (row_len > 0).any() else 1.0
    rows = np.repeat(np.arange(n_rows), np.diff(m.indptr))
    denom = m.data + bm25_k1 * (1.0 - bm25_b + bm25_b * row_len[rows] / avg)
    m.data = (m.data * (bm25_k1 + 1.0) / denom * idf[m.indices]).astype(np.float32)
    return m


def _row_norms(m: sp.csr_matrix) -> np.ndarray:
    return np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel()).astype(np.float32)


def _csr_to_state(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.data": m.data.astype(np.float32),
        f"{prefix}.indices": m.indices.astype(np.int64),
        f"{prefix}.indptr": m.indptr.astype(np.int64),
        f"{prefix}.shape": np.asarray(m.shape, dtype=np.int64),
    }


def _csr_from_state(prefix: str, tensors: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in tensors[f"{prefix}.shape"])
    return sp.csr_matrix(
        (tensors[f"{prefix}.data"], tensors[f"{prefix}.indices"], tensors[f"{prefix}.indptr"]), shape=shape
    )


def _fallback_empty(scores: np.ndarray, history: sp.csr_matrix, popularity: np.ndarray) -> np.ndarray:
    """Queries with no history at all get the popular items: the model has nothing personal to use."""
    empty = np.diff(history.indptr) == 0
    if empty.any():
        scores[empty] = popularity[None, :]
    return scores


class ItemKNNConfig(ModelConfig):
    """Defaults: best validation NDCG@10 on ml-100k leave-last-out (``benchmarks/tune_cf.py``)."""

    #: neighbours kept per target item (the k most similar items)
    k: int = Field(50, ge=1)
    #: cosine shrinkage: sim = dot / (|a||b| + shrink)
    shrink: float = Field(50.0, ge=0.0)
    #: feature weighting of the users that describe each item before the cosine
    weighting: Weighting = "tfidf"
    #: divide by the vector norms (cosine); False uses raw (weighted) co-occurrences / (1 + shrink)
    normalize: bool = True
    #: use 1/0 interactions instead of the ``weight`` column (for training and queries)
    binary: bool = True


class ItemKNN(Recommender):
    """Item-based kNN: ``scores = history @ S`` with a sparse top-k item-item similarity ``S``.

    ``S[i, j]`` is the shrunk cosine between items ``i`` and ``j`` (columns of the user x item
    matrix), kept only if ``i`` is among the ``k`` most similar items of the target ``j``; the
    diagonal is zero so an item never recommends itself. Ties among neighbours go to the lower item
    index, so fits are deterministic.
    """

    name = "item_knn"
    Config = ItemKNNConfig
    config: ItemKNNConfig
    supports = frozenset({"user", "history"})

    def _fit(self, data: Dataset) -> None:
        c = self.config
        x = data.csr("binary" if c.binary else "weight")
        self.popularity_ = data.item_popularity().astype(np.float32)
        # items are the objects we compare; their features are users
        items = feature_weights(x.T.tocsr(), c.weighting)
        self.similarity_ = self._similarity(items)

    def _similarity(self, items: sp.csr_matrix) -> sp.csr_matrix:
        c = self.config
        n = items.shape[0]
        norms = _row_norms(items) if c.normalize else np.ones(n, np.float32)
        k = min(c.k, max(n - 1, 1))
        users_items = items.T.tocsc()  # features x items: slicing columns is cheap
        block = max(1, min(n, _BLOCK_FLOATS // max(n, 1)))
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for start in range(0, n, block):
            stop = min(n, start + block)
            # (n, block) dense: similarity of every item to the targets start..stop
            dots = np.asarray((items @ users_items[:, start:stop]).todense(), dtype=np.float32)
            dots /= np.maximum(
                norms[:, None] * norms[None, start:stop] + c.shrink, 1e-12
            )  # 0/0 for empty items
            targets = np.arange(start, stop)
            dots[targets, targets - start] = 0.0
            # per target column, the k most similar source items (ties: lower index)
            idx, val = topk(dots.T, k)
            keep = val > 0
            cols.append(np.repeat(targets, keep.sum(axis=1)))
            rows.append(idx[keep])
            vals.append(val[keep])
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        cc = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        v = np.concatenate(vals) if vals else np.zeros(0, np.float32)
        return sp.csr_matrix((v.astype(np.float32), (r, cc)), shape=(n, n))

    def _score(self, batch: QueryBatch) -> np.ndarray:
        h = batch.history
        if self.config.binary:
            h = h.copy()
            h.data[:] = 1.0
        scores = np.asarray((h @ self.similarity_).todense(), dtype=np.float32)
        return _fallback_empty(scores, batch.history, self.popularity_)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {**_csr_to_state("similarity", self.similarity_), "popularity": self.popularity_}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.similarity_ = _csr_from_state("similarity", tensors)
        self.popularity_ = tensors["popularity"]


class UserKNNConfig(ModelConfig):
    """Defaults: best validation NDCG@10 on ml-100k leave-last-out (``benchmarks/tune_cf.py``)."""

    #: neighbour users per query
    k: int = Field(10, ge=1)
    #: cosine shrinkage: sim = dot / (|a||b| + shrink)
    shrink: float = Field(10.0, ge=0.0)
    #: feature weighting of the items that describe each user before the cosine
    weighting: Weighting = "tfidf"
    #: divide by the vector norms (cosine); False uses raw co-occurrences / (1 + shrink)
    normalize: bool = True
    #: use 1/0 interactions instead of the ``weight`` column (for training and queries)
    binary: bool = True


class UserKNN(Recommender):
    """User-based kNN: the query's ``k`` most similar training users vote with their histories.

    ``scores = sum_v sim(q, v) * x_v`` over the ``k`` training users ``v`` most similar to the query
    history ``q``. Nothing query-specific is precomputed, so an unseen user's history is served exactly
    like a known user's. A known user finds themself among the neighbours; their own row only covers
    items they have seen (which are masked), so this costs a neighbour slot but changes no ranking of
    unseen items relative to an unseen user with the same history.
    """

    name = "user_knn"
    Config = UserKNNConfig
    config: UserKNNConfig
    supports = frozenset({"user", "history"})

    def _fit(self, data: Dataset) -> None:
        c = self.config
        x = data.csr("binary" if c.binary else "weight")
        self.popularity_ = data.item_popularity().astype(np.float32)
        self.ratings_ = x
        self._prepare()

    def _prepare(self) -> None:
        """Derived matrices (weighted user vectors, norms, idf) from ``ratings_``; not persisted."""
        c = self.config
        x = self.ratings_
        n_users, n_items = x.shape
        # item idf / BM25 statistics come from the training users and are reused for queries
        df = np.bincount(x.indices, minlength=n_items).astype(np.float64)
        self._idf = np.log(max(n_users, 1) / np.maximum(df, 1.0)).astype(np.float32)
        lens = np.asarray(x.sum(axis=1)).ravel()
        self._avg_len = float(lens[lens > 0].mean()) if (lens > 0).any() else 1.0
        self._users = self._weigh(x)
        self._votes = x.copy()
        if c.binary:
            self._votes.data[:] = 1.0
        self._norms = _row_norms(self._users) if c.normalize else np.ones(n_users, np.float32)

    def _weigh(self, m: sp.csr_matrix) -> sp.csr_matrix:
        c = self.config
        m = sp.csr_matrix(m, dtype=np.float32, copy=True)
        if c.binary:
            m.data[:] = 1.0
        if c.weighting == "none" or m.nnz == 0:
            return m
        if c.weighting == "tfidf":
            m.data *= self._idf[m.indices]
            return m
        k1, b = 1.2, 0.75
        lens = np.asarray(m.sum(axis=1)).ravel()
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        denom = m.data + k1 * (1.0 - b + b * lens[rows] / self._avg_len)
        m.data = (m.data * (k1 + 1.0) / denom * self._idf[m.indices]).astype(np.float32)
        return m

    def _score(self, batch: QueryBatch) -> np.ndarray:
        c = self.config
        q = self._weigh(batch.history)
        sims = np.asarray((q @ self._users.T).todense(), dtype=np.float32)
        qnorms = _row_norms(q) if c.normalize else np.ones(len(batch), np.float32)
        sims /= np.maximum(qnorms[:, None] * self._norms[None, :] + c.shrink, 1e-12)
        k = min(c.k, sims.shape[1])
        idx, val = topk(sims, k)
        keep = val > 0
        rows = np.repeat(np.arange(len(batch)), keep.sum(axis=1))
        w = sp.csr_matrix((val[keep], (rows, idx[keep])), shape=sims.shape)
        scores = np.asarray((w @ self._votes).todense(), dtype=np.float32)
        return _fallback_empty(scores, batch.history, self.popularity_)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {**_csr_to_state("ratings", self.ratings_), "popularity": self.popularity_}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.ratings_ = _csr_from_state("ratings", tensors)
        self.popularity_ = tensors["popularity"]
        self._prepare()

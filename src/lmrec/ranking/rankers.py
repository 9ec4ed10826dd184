"""From scores (or query and item vectors) to ranked lists: the exact and the faiss ranker.

Every ranked list in lmrec (``Recommender.recommend``, offline evaluation, validation during
training, the server) comes out of :func:`rank_scores` or a :class:`Ranker`, so the tie rule (lower
item index first), the exclusions and the "fewer than k candidates" convention are the same
everywhere: results are ``(n_queries, k)`` item indices, ``-1`` where no candidate is left, with
scores ``-inf`` there.

:class:`ExactRanker` scores every item (``queries @ items.T``) and takes the shared top-k;
:class:`IndexRanker` asks a faiss :class:`~lmrec.ranking.index.VectorIndex` (HNSW by default), for
catalogues too large to scan per query. An ``EmbeddingRecommender`` uses the exact path unless
given an :class:`IndexRanker` (``model.set_ranker(IndexRanker())``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import numpy as np
import scipy.sparse as sp

from lmrec.ranking.masking import mask_scores, row_exclusions
from lmrec.ranking.topk import topk

if TYPE_CHECKING:
    from lmrec.ranking.index import VectorIndex


def rank_scores(
    scores: np.ndarray,
    k: int,
    *,
    seen: sp.csr_matrix | None = None,
    exclude: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask ``scores`` in place (``seen`` rows, ``exclude`` indices, ``allowed`` mask) and take the top ``k``.

    Returns ``(n_queries, k)`` item indices and scores, best first, ties by lower index; ``-1`` and
    ``-inf`` where fewer than ``k`` candidates remain (masked or non-finite scores never count).
    """
    mask_scores(scores, seen, allowed=allowed, banned=exclude)
    idx, val = topk(scores, k)
    return _pad(idx, val, k)


def _pad(idx: np.ndarray, val: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = idx.shape[0]
    out_i = np.full((n, k), -1, np.int64)
    out_v = np.full((n, k), -np.inf, np.float32)
    w = min(k, idx.shape[1])
    ok = np.isfinite(val[:, :w])
    out_i[:, :w] = np.where(ok, idx[:, :w], -1)
    out_v[:, :w] = np.where(ok, val[:, :w], -np.inf)
    return out_i, out_v


class RankMasks(TypedDict, total=False):
    """What :meth:`Ranker.rank` leaves out, as keywords (each optional, None: nothing)."""

    #: (n_queries, n_items) CSR: each query's own items
    seen: sp.csr_matrix | None
    #: item indices excluded for every query
    exclude: np.ndarray | None
    #: boolean mask over items: only these may be returned
    allowed: np.ndarray | None


class Ranker(ABC):
    """Top-k of ``query · item`` inner products with exclusions (see the module docstring)."""

    name: str = "ranker"

    @abstractmethod
    def rank(
        self, queries: np.ndarray, items: np.ndarray, k: int, **masks: Unpack[RankMasks]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n_queries, k) item indices and scores for query vectors ``queries`` over ``items``.

        ``masks`` (:class:`RankMasks`): ``seen`` (n_queries, n_items) CSR removes each query's own
        items, ``exclude`` (indices) and ``allowed`` (a boolean mask) apply to every query.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExactRanker(Ranker):
    """Score every item and take the shared top-k: exact, deterministic ties."""

    name = "exact"

    def rank(
        self, queries: np.ndarray, items: np.ndarray, k: int, **masks: Unpack[RankMasks]
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(queries @ items.T, dtype=np.float32)
        return rank_scores(scores, k, **masks)


class IndexRanker(Ranker):
    """Rank through a faiss :class:`~lmrec.ranking.index.VectorIndex` (needs the ``serve`` extra).

    Give a built ``index`` (the server shares its own, items added later included), or let the
    ranker build one over the item vectors it is first called with (``kind``, ``seed`` and
    ``index_params`` go to :class:`~lmrec.ranking.index.VectorIndex`); it is rebuilt when a call
    brings a different item matrix.
    """

    name = "index"

    def __init__(
        self, index: VectorIndex | None = None, *, kind: str = "hnsw", seed: int = 0, **index_params: Any
    ) -> None:
        self.index = index
        self._owned = index is None
        self._items_key: tuple[int, tuple[int, ...]] | None = None
        self.kind = kind
        self.seed = seed
        self.index_params = index_params

    def __repr__(self) -> str:
        return (
            f"IndexRanker({self.index!r})" if self.index is not None else f"IndexRanker(kind={self.kind!r})"
        )

    def _index_for(self, items: np.ndarray) -> VectorIndex:
        if not self._owned:
            assert self.index is not None
            return self.index
        key = (id(items), items.shape)
        if self.index is None or key != self._items_key:
            from lmrec.ranking.index import VectorIndex

            self.index = VectorIndex(items, kind=self.kind, seed=self.seed, **self.index_params)  # type: ignore[arg-type]
            self._items_key = key
        return self.index

    def rank(
        self, queries: np.ndarray, items: np.ndarray, k: int, **masks: Unpack[RankMasks]
    ) -> tuple[np.ndarray, np.ndarray]:
        unknown = set(masks) - set(RankMasks.__annotations__)
        if unknown:  # a TypedDict does not reject a misspelled keyword at run time
            raise TypeError(f"IndexRanker.rank() got unexpected keyword(s) {sorted(unknown)}")
        index = self._index_for(items)
        q = np.asarray(queries, dtype=np.float32)
        seen, exclude, allowed = masks.get("seen"), masks.get("exclude"), masks.get("allowed")
        if seen is None or not seen.nnz:
            ids, val = index.search(q, k, exclude=exclude, allowed=allowed)
            return _pad(ids, val, k)
        # the exclusions differ per query: one search each (faiss ID selectors are per call)
        out_i = np.full((len(q), k), -1, np.int64)
        out_v = np.full((len(q), k), -np.inf, np.float32)
        for r in range(len(q)):
            ids, val = index.search(
                q[r : r + 1], k, exclude=row_exclusions(seen, exclude, r), allowed=allowed
            )
            out_i[r : r + 1], out_v[r : r + 1] = _pad(ids, val, k)
        return out_i, out_v


__all__ = ["ExactRanker", "IndexRanker", "RankMasks", "Ranker", "rank_scores"]

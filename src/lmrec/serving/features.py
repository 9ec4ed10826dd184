"""Item features for the rerankers and explanations, and the ANN index of embedding models.

Embedding models (:class:`~lmrec.models.protocols.SupportsItemVectors`) use their own item vectors,
L2-normalised; they also rank through a faiss :class:`~lmrec.ranking.index.VectorIndex` (exact below
the ANN threshold), set as their ranker. Other models (item-kNN, EASE, popularity) get a truncated
SVD of the training interaction matrix (items that co-occur get similar vectors), computed once at
load.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from lmrec.models.base import EmbeddingRecommender, Recommender
from lmrec.ranking import IndexRanker
from lmrec.ranking.index import VectorIndex

if TYPE_CHECKING:
    from lmrec.serving.config import ServingConfig

log = logging.getLogger("lmrec.serving")


def build_index(model: EmbeddingRecommender, vectors: np.ndarray, config: ServingConfig) -> VectorIndex:
    """The faiss index over ``vectors`` (the model's item vectors), set as the model's ranker; an ANN
    index is tuned at once to the configured recall target."""
    index = VectorIndex(
        vectors,
        kind=config.index,
        threshold=config.ann_threshold,
        ivfpq_threshold=config.ivfpq_threshold,
        refine=config.refine,
        ef_search=config.ef_search,
        nprobe=config.nprobe,
        seed=config.seed,
    )
    model.set_ranker(IndexRanker(index))
    if not index.exact:
        sample, seen = tuning_queries(model, vectors, 200, config.seed)
        rep = index.tune(sample, k=10, target=config.ann_target_recall, exclude=seen)
        log.info("ANN %r: recall@10 vs exact = %.3f", index, rep.recall)
        if rep.recall < config.ann_target_recall:
            log.warning("ANN recall %.3f below target %.2f", rep.recall, config.ann_target_recall)
    return index


def tuning_queries(
    model: EmbeddingRecommender, vectors: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Queries for the start-up recall check: the query vectors of ``n`` sampled known users (what
    the index will be asked) with each user's history, which a request leaves out of its answer by
    default (``exclude_seen``), else ``n`` sampled item vectors and no exclusions. Recall with the
    history left out is what users get, and it is lower: at 1M ALS items, nprobe 256 measured
    0.958 over every item and ~0.94 with the history left out. All-zero vectors are left out: every
    item ties with them, so their "exact top-10" is arbitrary and their recall meaningless (an ALS
    item with no interactions has one). Item vectors are a poor stand-in for a model whose users and
    items differ (ALS user factors are not item factors): tuned on them, a 1M-item IVF-PQ index
    stopped at recall 0.89 with nprobe = 1024, 20 ms of CPU a request."""
    from lmrec.errors import UnsupportedQueryError
    from lmrec.models.query import as_queries

    rng = np.random.default_rng(seed)
    q: np.ndarray | None = None
    seen: list[np.ndarray] | None = None
    users = model.user_vocab
    if users is not None and len(users):
        ids = users.external(np.sort(rng.choice(len(users), min(n, len(users)), replace=False)))
        try:
            batch = model.encode_queries(as_queries(ids), strict=False)
        except UnsupportedQueryError:  # a model that ranks for histories or text, not user ids
            batch = None
        if batch is not None and not batch.fallback_mask.all():
            known = batch.take(np.flatnonzero(~batch.fallback_mask))
            q = np.asarray(model.query_vectors(known), np.float32)
            h = known.history
            seen = [
                np.unique(h.indices[h.indptr[r] : h.indptr[r + 1]]).astype(np.int64) for r in range(len(q))
            ]
    if q is None:
        q = vectors[rng.choice(len(vectors), min(n, len(vectors)), replace=False)]
    nonzero = np.abs(q).sum(axis=1) > 0
    if seen is not None:
        seen = [e for e, ok in zip(seen, nonzero, strict=True) if ok]
    q = q[nonzero]
    return (q, seen) if len(q) else (vectors[:1], None)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def svd_item_features(model: Recommender, dim: int, seed: int) -> np.ndarray:
    """Item factors from a truncated SVD of the (binarised) training matrix: co-occurring items end
    up close, which is what MMR, explanations and the bandit need from "item embeddings"."""
    from scipy.sparse.linalg import svds

    x = model.train_history.copy().astype(np.float32)
    n_users, n_items = x.shape
    if x.nnz == 0 or min(n_users, n_items) < 3:
        return np.zeros((n_items, 1), np.float32)
    x.data[:] = 1.0
    k = int(min(dim, min(n_users, n_items) - 1))
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(n_users, n_items)).astype(np.float32)
    _, s, vt = svds(x, k=k, v0=v0, random_state=seed)
    return (vt.T * np.sqrt(s)[None, :]).astype(np.float32)


__all__ = ["build_index", "normalise", "svd_item_features", "tuning_queries"]

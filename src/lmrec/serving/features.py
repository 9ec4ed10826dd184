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
        rng = np.random.default_rng(config.seed)
        sample = vectors[rng.choice(len(vectors), min(200, len(vectors)), replace=False)]
        rep = index.tune(sample, k=10, target=config.ann_target_recall)
        log.info("ANN %r: recall@10 vs exact = %.3f", index, rep.recall)
        if rep.recall < config.ann_target_recall:
            log.warning("ANN recall %.3f below target %.2f", rep.recall, config.ann_target_recall)
    return index


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


__all__ = ["build_index", "normalise", "svd_item_features"]

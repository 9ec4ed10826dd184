"""Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998) for diverse top-k lists.

Greedy: the first pick is the most relevant candidate; each next one maximises
``λ · relevance − (1 − λ) · max similarity to those already chosen``. ``λ = 1`` returns the
relevance order unchanged; smaller values trade relevance for variety (callers that speak of
"diversity" pass ``λ = 1 − diversity``). By default relevance is min-max scaled within the
candidates so that ``λ`` means the same thing for every model (raw scores range from counts to
logits); similarity is cosine between item vectors.

The one MMR in lmrec: serving's re-ranker and the review keyphrases (:mod:`lmrec.text.keywords`,
which passes cosine relevance unscaled) both call :func:`mmr`.
"""

from __future__ import annotations

import numpy as np


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows (zero rows have similarity 0 to everything)."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    u = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    return u @ u.T


def mmr(
    relevance: np.ndarray,
    k: int,
    *,
    vectors: np.ndarray | None = None,
    similarity: np.ndarray | None = None,
    lambda_: float = 0.7,
    scale: bool = True,
) -> np.ndarray:
    """Positions (into ``relevance``) of a ``k``-item MMR list, in order.

    Give either item ``vectors`` (cosine is computed) or a precomputed ``similarity`` matrix.
    ``scale=False`` uses ``relevance`` as given (already on the similarities' scale, e.g. cosine
    to a query). Ties go to the lower position, i.e. to the candidate the model ranked higher.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"MMR lambda must be in [0, 1], got {lambda_}")
    rel = np.asarray(relevance, dtype=np.float64)
    n = len(rel)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, np.int64)
    if similarity is None:
        if vectors is None:
            raise ValueError("mmr needs item vectors or a similarity matrix")
        similarity = cosine_matrix(vectors)
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.shape != (n, n):
        raise ValueError(f"similarity must be ({n}, {n}), got {sim.shape}")
    finite = np.isfinite(rel)
    if scale:
        lo, hi = (rel[finite].min(), rel[finite].max()) if finite.any() else (0.0, 0.0)
        rel = np.where(finite, (rel - lo) / (hi - lo) if hi > lo else 1.0, -np.inf)
    else:
        rel = np.where(finite, rel, -np.inf)
    chosen = np.empty(k, np.int64)
    max_sim = np.full(n, -np.inf)  # nothing chosen yet: no redundancy penalty
    free = np.ones(n, dtype=bool)
    for slot in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        # the first pick is the most relevant one, also at λ = 0 (where every gain would be 0)
        gain = rel.copy() if slot == 0 else lambda_ * rel - (1.0 - lambda_) * penalty
        gain[~free] = -np.inf
        pick = int(np.argmax(gain))
        chosen[slot] = pick
        free[pick] = False
        max_sim = np.maximum(max_sim, sim[pick])
    return chosen


def intra_list_similarity(vectors: np.ndarray) -> float:
    """Mean pairwise cosine similarity of a list (lower = more diverse)."""
    n = len(vectors)
    if n < 2:
        return 0.0
    s = cosine_matrix(vectors)
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))


__all__ = ["cosine_matrix", "intra_list_similarity", "mmr"]

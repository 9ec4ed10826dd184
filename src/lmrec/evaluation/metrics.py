"""Vectorised ranking metrics over full-catalogue top-K lists.

All functions take ``hits``: a (n_users, K) boolean matrix saying whether the item at each rank is
relevant, and ``n_rel``: the number of relevant items per user. They return one value per user so
that callers can average over any segment. Naive reference implementations live in the tests and
Hypothesis checks these against them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from lmrec.ranking import rank_scores

if TYPE_CHECKING:
    from lmrec.data.split import ValidationData

RANKING_METRICS = ("recall", "precision", "ndcg", "mrr", "map", "hit_rate")


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Relevant items found in the top ``k`` / relevant items (= hit rate when one target)."""
    return np.asarray(hits[:, :k].sum(axis=1) / np.maximum(n_rel, 1), dtype=np.float64)


def precision_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(hits[:, :k].sum(axis=1) / k, dtype=np.float64)


def hit_rate_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(hits[:, :k].any(axis=1), dtype=np.float64)


def ndcg_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG with the ideal list of ``min(n_rel, k)`` hits."""
    disc = _discounts(k)
    dcg = (hits[:, :k] * disc[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal_cum[np.minimum(n_rel, k)]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def mrr_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = h.argmax(axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1), 0.0)


def map_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Mean average precision, normalised by ``min(n_rel, k)``."""
    h = hits[:, :k].astype(np.float64)
    prec = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    denom = np.minimum(n_rel, k)
    return np.divide((prec * h).sum(axis=1), denom, out=np.zeros(len(h)), where=denom > 0)


METRIC_FUNCS = {
    "recall": recall_at_k,
    "precision": precision_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "map": map_at_k,
    "hit_rate": hit_rate_at_k,
}


def hits_matrix(top: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """(n, K) booleans: is ``top[u, r]`` among user ``u``'s targets? ``-1`` entries are never hits."""
    n, k = top.shape
    out = np.zeros((n, k), dtype=bool)
    if n == 0 or k == 0:
        return out
    if targets.shape[1] * n <= 50_000_000:
        dense = targets[:n].toarray().astype(bool)
        valid = top >= 0
        rows = np.repeat(np.arange(n), k).reshape(n, k)
        out[valid] = dense[rows[valid], top[valid]]
        return out
    for u in range(n):
        rel = targets.indices[targets.indptr[u] : targets.indptr[u + 1]]
        out[u] = np.isin(top[u], rel)
    return out


def auc_per_user(scores: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """Per-user AUC of targets against every other candidate item (finite score, not a target).

    Ties count one half. Users with no targets or no negatives get NaN.
    """
    n = scores.shape[0]
    out = np.full(n, np.nan)
    for u in range(n):
        pos = targets.indices[targets.indptr[u] : targets.indptr[u + 1]]
        row = scores[u]
        finite = np.isfinite(row)
        if len(pos) == 0:
            continue
        is_pos = np.zeros(len(row), dtype=bool)
        is_pos[pos] = True
        neg = row[finite & ~is_pos]
        if len(neg) == 0:
            continue
        neg_sorted = np.sort(neg)
        ps = row[pos]
        ps = np.where(np.isfinite(ps), ps, -np.inf)  # a masked positive ranks below every candidate
        below = np.searchsorted(neg_sorted, ps, side="left")
        equal = np.searchsorted(neg_sorted, ps, side="right") - below
        out[u] = float(np.mean((below + 0.5 * equal) / len(neg)))
    return out


def coverage(top: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one top-``k`` list."""
    items = top[:, :k]
    items = items[items >= 0]
    return float(len(np.unique(items)) / max(n_items, 1))


def novelty(top: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Per-user mean self-information ``-log2 p(i)`` of recommended items (p smoothed by +1)."""
    p = (item_popularity + 1.0) / (n_users + 1.0)
    info = -np.log2(p)
    items = top[:, :k]
    valid = items >= 0  # -1 pads a short list; an empty list has no novelty (NaN, no warning)
    total = np.where(valid, info[np.maximum(items, 0)], 0.0).sum(axis=1)
    n = valid.sum(axis=1)
    return np.divide(total, n, out=np.full(len(top), np.nan), where=n > 0)


def intra_list_diversity(top: np.ndarray, features: np.ndarray, k: int) -> np.ndarray:
    """Per-user mean pairwise cosine distance between recommended items' feature vectors."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    f = np.divide(features, norms, out=np.zeros_like(features, dtype=np.float64), where=norms > 0)
    out = np.full(len(top), np.nan)
    for u, row in enumerate(top[:, :k]):
        row = row[row >= 0]
        if len(row) < 2:
            continue
        v = f[row]
        sim = v @ v.T
        m = len(row)
        out[u] = float(1.0 - (sim.sum() - np.trace(sim)) / (m * (m - 1)))
    return out


def ranking_metrics(
    top: np.ndarray, targets: sp.csr_matrix, ks: Sequence[int], metrics: Sequence[str] = RANKING_METRICS
) -> dict[str, np.ndarray]:
    """Per-user values of ``metric@k`` for every metric and k."""
    n_rel = np.diff(targets.indptr)
    hits = hits_matrix(top, targets)
    out: dict[str, np.ndarray] = {}
    for name in metrics:
        fn = METRIC_FUNCS[name]
        for k in ks:
            out[f"{name}@{k}"] = fn(hits, n_rel, k)
    return out


def validation_metrics(
    score_fn: Callable[[np.ndarray], np.ndarray],
    valid: ValidationData,
    seen: sp.csr_matrix | None,
    *,
    k: int = 10,
    batch_size: int = 512,
) -> dict[str, float]:
    """Full-ranking NDCG@k and Recall@k of ``score_fn`` on ``valid``: the early-stopping metric.

    ``score_fn(user_idx)`` returns ``(B, n_items)`` scores (array-like) for internal user indices;
    ``seen`` is the (n_users, n_items) training matrix whose items leave each user's ranking. Lists
    come from :func:`lmrec.ranking.rank_scores` (ties by the lower item index), like every other
    ranking. Averaged over all validation users.
    """
    ndcg_sum = 0.0
    recall_sum = 0.0
    for start in range(0, len(valid.users), batch_size):
        users = valid.users[start : start + batch_size]
        scores = np.array(score_fn(users), dtype=np.float32, copy=True)
        top, _ = rank_scores(scores, min(k, scores.shape[1]), seen=None if seen is None else seen[users])
        tgt = valid.targets[start : start + batch_size]
        hits = hits_matrix(top, tgt)
        n_rel = np.diff(tgt.indptr)
        ok = n_rel > 0
        ndcg_sum += float(ndcg_at_k(hits, n_rel, k)[ok].sum())
        recall_sum += float(recall_at_k(hits, n_rel, k)[ok].sum())
    n = max(len(valid.users), 1)
    return {f"ndcg@{k}": ndcg_sum / n, f"recall@{k}": recall_sum / n}

"""Masking: which items a query must not get back, as ``-inf`` scores."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def mask_scores(
    scores: np.ndarray,
    history: sp.csr_matrix | None,
    *,
    allowed: np.ndarray | None = None,
    banned: np.ndarray | None = None,
) -> np.ndarray:
    """Set -inf in place where an item is in the query's history, not allowed, or banned.

    ``history`` is (n_queries, n_items) CSR (one row per score row); ``allowed`` a boolean mask over
    items shared by every query; ``banned`` item indices removed for every query.
    """
    if history is not None and history.nnz:
        rows = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
        scores[rows, history.indices] = -np.inf
    if allowed is not None:
        scores[:, ~allowed[: scores.shape[1]]] = -np.inf
    if banned is not None and len(banned):
        scores[:, banned] = -np.inf
    return scores


def row_exclusions(history: sp.csr_matrix | None, banned: np.ndarray | None, row: int) -> np.ndarray:
    """Item indices query ``row`` must not get back: its history row plus ``banned`` (sorted, unique)."""
    parts = [np.zeros(0, np.int64)]
    if banned is not None and len(banned):
        parts.append(np.asarray(banned, dtype=np.int64))
    if history is not None:
        parts.append(history.indices[history.indptr[row] : history.indptr[row + 1]].astype(np.int64))
    return np.unique(np.concatenate(parts))

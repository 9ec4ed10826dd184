"""The shared top-k kernel: deterministic, ties broken by the lower internal item index."""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest scores per row, best first.

    Ties are broken by item index (lower first), so results do not depend on the partition
    algorithm. ``-inf`` marks excluded items; they sort last and callers drop them.
    """
    n, m = scores.shape
    k = min(k, m)
    if k == 0 or n == 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), scores.dtype)
    if k >= m // 2:
        # small catalogue relative to k: a stable full sort is simplest
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(scores, order, axis=1)
    # argpartition finds the k-th largest value; every item >= it is a candidate (ties included),
    # then a stable sort over candidates restores the index tie-break.
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    idx_out = np.empty((n, k), np.int64)
    val_out = np.empty((n, k), scores.dtype)
    for r in range(n):
        row = scores[r]
        cand = np.flatnonzero(row >= kth[r])
        if len(cand) > 4 * k + 64:  # a huge tie block at the boundary: keep the lowest indices
            above = cand[row[cand] > kth[r]]
            tied = cand[row[cand] == kth[r]]
            cand = np.concatenate([above, tied[: k - len(above)]])
            cand.sort()
        order = cand[np.argsort(-row[cand], kind="stable")[:k]]
        idx_out[r] = order
        val_out[r] = row[order]
    return idx_out, val_out

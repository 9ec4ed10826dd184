"""Recency-weighted mean of item vectors over a time-ordered history.

:func:`recency_mean` is the query vector of the content model (:mod:`lmrec.models.content`) and
the residual of UniSRec's history (:mod:`lmrec.models.unisrec`): the unit-length mean of the
history's item vectors, the most recent items weighing most.
"""

from __future__ import annotations

import numpy as np

from lmrec.text.encoder import l2_normalize


def recency_mean(
    table: np.ndarray, items: np.ndarray, half_life: float | None, weights: np.ndarray | None = None
) -> np.ndarray:
    """Unit-length mean of ``table[items]`` for a time-ordered history, each item weighing
    ``0.5 ** (age / half_life)`` (age 0 = most recent; ``None``: all alike) times ``weights`` when
    given; zeros for an empty history. The content model's query vector (and UniSRec's residual)."""
    if len(items) == 0:
        return np.zeros(table.shape[1], np.float32)
    w = np.ones(len(items), np.float64)
    if half_life is not None:
        age = np.arange(len(items) - 1, -1, -1, dtype=np.float64)
        w = np.power(0.5, age / half_life)
    if weights is not None:
        w = w * weights
    u = (w[:, None] * table[items]).sum(axis=0)
    return l2_normalize(u.astype(np.float32)[None, :])[0]


__all__ = ["recency_mean"]

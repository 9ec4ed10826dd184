"""The policy's state from the sequence encoder: a simulated user's history, re-encoded at every step.

A session changes the user's history: every click appends an item. A sequence model (SASRec,
BERT4Rec, UniSRec, or any lmrec model whose query vector is computed from the history) turns the
history into a vector, so its view of the user moves with the session. :class:`HistoryEncoder`
wraps such a fitted model for the simulator: :meth:`HistoryEncoder.encode` takes histories as item
*indices* (the simulator's currency) and returns the model's query vectors, through the model's
public ``query_vectors`` on a :class:`~lmrec.models.query.QueryBatch` built from them (no id look-ups
per step). The simulator calls it only for the users whose history changed since the last step.

With an encoder in the :class:`~lmrec.rl.simulator.World`, the state vector ``e_t`` is

* the *current* base score of every candidate (``e_t · v_i``): the order the candidates arrive in,
  what the greedy base model shows (a deployed sequence model re-encodes the history at every
  request), and the ``seq_score`` candidate feature;
* its drift from the session's start (``1 − cos(e_t, e_0)``): the ``seq_drift`` state feature.

The simulated user's *taste* (what the click model reads as ``base_score``) stays the session-start
score: the user does not change because the recommender's view of them does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp


class HistoryEncoder:
    """A fitted lmrec model's query encoder over index histories.

    ``max_len``: the newest items of a history that are encoded (a sequence model's attention cost
    grows with the square of it; 50 covers the 50-step sessions of the benchmark).
    """

    def __init__(self, model: Any, *, max_len: int = 50) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if not hasattr(model, "query_vectors") or not hasattr(model, "item_vectors"):
            raise TypeError(
                f"{type(model).__name__} has no query_vectors/item_vectors: the state encoder needs an "
                "embedding model (e.g. sasrec)"
            )
        self.model = model
        self.max_len = max_len
        self.item_vectors = np.asarray(model.item_vectors(), dtype=np.float64)
        self.n_items = len(self.item_vectors)

    def encode(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``(len(histories), d)`` query vectors of the histories (item indices, oldest first)."""
        from lmrec.models.query import QueryBatch

        seqs = [np.asarray(h, dtype=np.int64)[-self.max_len :] for h in histories]
        if any(len(s) and (s.min() < 0 or s.max() >= self.n_items) for s in seqs):
            raise ValueError(f"history item indices must lie in [0, {self.n_items})")
        rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
        cols = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
        hist = sp.csr_matrix(
            (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(seqs), self.n_items)
        )
        hist.sum_duplicates()
        batch = QueryBatch(
            user_idx=np.full(len(seqs), -1, dtype=np.int64),
            history=hist,
            sequences=seqs,
            texts=[None] * len(seqs),
            n_items=self.n_items,
        )
        return np.asarray(self.model.query_vectors(batch), dtype=np.float64)


__all__ = ["HistoryEncoder"]

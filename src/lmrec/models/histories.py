"""What a fitted model keeps of its data: the vocabularies and every user's interaction history.

:class:`HistoryStore` is the base of :class:`~lmrec.models.base.Recommender`. It holds the user
and item :class:`~lmrec.data.vocabulary.Vocabulary` (``None`` until ``fit``) and the users'
histories, time ordered, as flat arrays: item indices, weights and per-user offsets, as
:meth:`Dataset.histories <lmrec.data.dataset.Dataset.histories>` returns them. Known users' queries
are served from these histories, which grow online (:meth:`HistoryStore.add_interactions`, no
retraining); the views of them are here too: the training CSR (:attr:`HistoryStore.train_history`),
a frame of external ids (:meth:`HistoryStore.history_frame`) and the per-item counts of the
popularity fallback (:meth:`HistoryStore.popularity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import NotFittedError
from lmrec.models.query import id_dtype


class HistoryStore:
    """The vocabularies and interaction histories of a model (unfitted until ``fit`` sets them)."""

    def __init__(self) -> None:
        self.user_vocab: Vocabulary | None = None
        self.item_vocab: Vocabulary | None = None
        # training histories, time ordered: flattened items, weights and per-user offsets
        self._hist_items = np.zeros(0, dtype=np.int64)
        self._hist_weights = np.zeros(0, dtype=np.float32)
        self._hist_offsets = np.zeros(1, dtype=np.int64)
        self._history_csr: sp.csr_matrix | None = None

    @property
    def is_fitted(self) -> bool:
        return self.item_vocab is not None

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self.item_vocab is not None
        return len(self.item_vocab)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(data) first")

    def popularity(self) -> np.ndarray:
        """Interactions per item in the stored histories (training and online), float32: the
        scores of the popularity fallback."""
        self._check_fitted()
        cached = getattr(self, "_popularity_cache", None)
        if cached is not None and cached[0] is self._hist_items and len(cached[1]) == self.n_items:
            return cached[1]
        counts = np.bincount(self._hist_items, minlength=self.n_items)[: self.n_items].astype(np.float32)
        self._popularity_cache = (self._hist_items, counts)
        return counts

    # ------------------------------------------------------------------ histories
    def _set_histories(self, data: Dataset) -> None:
        self._hist_items, self._hist_weights, self._hist_offsets = data.histories()
        self._history_csr = None

    @property
    def train_history(self) -> sp.csr_matrix:
        """(n_users, n_items) CSR of training interactions (weights summed over duplicates)."""
        if self._history_csr is None:
            n_users = len(self._hist_offsets) - 1
            counts = np.diff(self._hist_offsets)
            rows = np.repeat(np.arange(n_users), counts)
            m = sp.csr_matrix(
                (self._hist_weights, (rows, self._hist_items)),
                shape=(n_users, self.n_items),
                dtype=np.float32,
            )
            m.sum_duplicates()
            self._history_csr = m
        return self._history_csr

    @property
    def n_history_users(self) -> int:
        """Users with a row in the stored histories: every user of the training data and every user
        added online (:meth:`add_interactions`); internal indices ``0 .. n_history_users - 1``."""
        return len(self._hist_offsets) - 1

    def history_length(self, user_idx: int) -> int:
        """Events in the stored history of the user with internal index ``user_idx`` (0 when none)."""
        if not 0 <= user_idx < self.n_history_users:
            return 0
        return int(self._hist_offsets[user_idx + 1] - self._hist_offsets[user_idx])

    def has_history(self, user_id: Any) -> bool:
        """Whether the user with external id ``user_id`` has a stored history (training or online):
        the users a plain user-id query can be served for."""
        self._check_fitted()
        assert self.user_vocab is not None
        return self.history_length(self.user_vocab.get(user_id)) > 0

    def history_frame(self) -> pl.DataFrame:
        """The stored histories as ``user_id, item_id, weight, position`` (external ids; ``position``
        counts each user's events from 0, oldest first; rows grouped by user, in time order)."""
        self._check_fitted()
        assert self.user_vocab is not None and self.item_vocab is not None
        counts = np.diff(self._hist_offsets)
        users = np.repeat(np.arange(len(counts)), counts)
        position = np.arange(len(users), dtype=np.int64) - np.repeat(self._hist_offsets[:-1], counts)
        return pl.DataFrame(
            {
                "user_id": pl.Series(self.user_vocab.external(users), dtype=id_dtype(self.user_vocab)),
                "item_id": pl.Series(
                    self.item_vocab.external(self._hist_items), dtype=id_dtype(self.item_vocab)
                ),
                "weight": self._hist_weights.astype(np.float32),
                "position": position,
            }
        )

    def add_interactions(
        self, user_id: Any, item_ids: Sequence[Any], weights: Sequence[float] | None = None
    ) -> None:
        """Append events to a known user's history in memory (online feedback, no retraining).

        New users are added to the vocabulary; their queries are then served from history.
        """
        self._check_fitted()
        assert self.user_vocab is not None and self.item_vocab is not None
        items = self.item_vocab.indices(list(item_ids))
        w = np.ones(len(items), np.float32) if weights is None else np.asarray(weights, np.float32)
        if user_id not in self.user_vocab:
            self.user_vocab = self.user_vocab.extend([user_id])
            self._hist_offsets = np.append(self._hist_offsets, self._hist_offsets[-1])
        u = self.user_vocab.index(user_id)
        at = self._hist_offsets[u + 1]
        self._hist_items = np.insert(self._hist_items, at, items)
        self._hist_weights = np.insert(self._hist_weights, at, w)
        self._hist_offsets[u + 1 :] += len(items)
        self._history_csr = None


__all__ = ["HistoryStore"]

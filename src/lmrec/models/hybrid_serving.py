"""The hybrid's serving fast path (its private helper): generator scores for known users, cheaply.

A served hybrid asks every generator for dense scores on every request. Two costs dominate one
request:

* each generator resolving the same external ids into its own query batch (the generators were
  fitted on the hybrid's data, so their vocabularies are the hybrid's, and the hybrid's own encoded
  batch serves them as it is);
* an embedding generator's query tower (a SASRec or two-tower forward pass, a content history
  vector), which for a known user depends on nothing but the stored history.

:class:`GeneratorScorer` scores every query without text (a known user, an unseen user's history,
or both) from the hybrid's batch, and keeps each embedding generator's query vector per *plain*
query's user (a known user, no extra history, no text), filled in one batched pass
(:meth:`GeneratorScorer.warm`) or on first use. ``add_interactions`` for a user drops that user's
cached vectors. Text queries go through the generators' public ``score``, as in training, since a
generator without a text path must not see the text. The scores are the same either way (a test
checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmrec.models.base import EmbeddingRecommender, Query, QueryBatch, Recommender
from lmrec.models.hybrid_features import CandidateQuery

__all__ = ["GeneratorScorer", "ResultCache"]

#: users per batch when filling the vector caches
WARM_BATCH = 512


class ResultCache:
    """The hybrid's ranked candidates per plain known-user query, once a server warmed it up.

    Everything a plain query's dense scores depend on is the user's stored history and the fitted
    model, so the candidates, their ranker scores and the floor below them are kept per user and the
    dense row is rebuilt from them (the same numbers: the scores of a user's first request). It
    holds about ``candidates x 8`` bytes per user; at most ``max_users`` users are kept.
    ``add_interactions`` for a user drops its entry (:meth:`forget`).
    """

    def __init__(self, n_items: int, max_users: int) -> None:
        self.n_items = n_items
        self.max_users = max_users
        self._rows: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, user_idx: int, n_items: int) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(candidates, their scores, floor) of ``user_idx``, if kept for this catalogue size."""
        if n_items != self.n_items:  # the catalogue grew: every kept row is incomplete
            self._rows.clear()
            self.n_items = n_items
            return None
        return self._rows.get(user_idx)

    def put(self, user_idx: int, cand: np.ndarray, pred: np.ndarray, floor: float) -> None:
        if len(self._rows) < self.max_users or user_idx in self._rows:
            self._rows[user_idx] = (cand.astype(np.int32), pred.astype(np.float32, copy=True), float(floor))

    def forget(self, user_idx: int) -> None:
        """``user_idx``'s history changed: score it afresh when next asked."""
        self._rows.pop(user_idx, None)


class GeneratorScorer:
    """Dense generator scores with the known-user fast path (see the module docstring)."""

    def __init__(self, gens: Sequence[Recommender], user_vocab: Any, item_vocab: Any) -> None:
        self.gens = list(gens)
        #: generators that share the hybrid's vocabularies may read its encoded batch
        self.shared = [g.user_vocab == user_vocab and g.item_vocab == item_vocab for g in self.gens]
        #: per embedding generator: (n_users, dim) query vectors and which rows are filled
        self._vecs: dict[int, np.ndarray] = {}
        self._filled: dict[int, np.ndarray] = {}
        #: the last sub-batch taken (the generators of one request usually share their rows)
        self._taken: tuple[QueryBatch, tuple[int, ...], QueryBatch] | None = None

    def _cacheable(self, gi: int) -> bool:
        # only models whose scores are exactly query vectors x item vectors (ALS/BPR fold in)
        g = self.gens[gi]
        return (
            self.shared[gi]
            and isinstance(g, EmbeddingRecommender)
            and type(g)._score is EmbeddingRecommender._score
            and g.ranker is None
        )

    def forget(self, user_idx: int) -> None:
        """``user_idx``'s history changed: recompute its vectors when next asked."""
        for filled in self._filled.values():
            if 0 <= user_idx < len(filled):
                filled[user_idx] = False

    def warm(self, n: int, encode: Any) -> None:
        """Fill every embedding generator's vector cache for ``n`` users, in batches:
        ``encode(positions)`` builds the hybrid's batch for the users at ``positions`` (of 0..n-1)."""
        for gi in range(len(self.gens)):
            if not self._cacheable(gi):
                continue
            for lo in range(0, n, WARM_BATCH):
                self._user_vectors(gi, encode(np.arange(lo, min(lo + WARM_BATCH, n), dtype=np.int64)))

    def _user_vectors(self, gi: int, batch: QueryBatch) -> np.ndarray:
        gen = self.gens[gi]
        assert isinstance(gen, EmbeddingRecommender)
        users = np.asarray(batch.user_idx, np.int64)
        need = int(users.max()) + 1 if len(users) else 0
        vecs, filled = self._vecs.get(gi), self._filled.get(gi)
        if vecs is None or filled is None or len(filled) < need:
            dim = gen.item_vectors().shape[1]
            grown = np.zeros((max(need, 0), dim), np.float32)
            grown_filled = np.zeros(max(need, 0), dtype=bool)
            if vecs is not None and filled is not None:
                grown[: len(vecs)] = vecs
                grown_filled[: len(filled)] = filled
            vecs, filled = self._vecs[gi], self._filled[gi] = grown, grown_filled
        missing = np.flatnonzero(~filled[users])
        if len(missing):
            vecs[users[missing]] = np.asarray(gen.query_vectors(batch.take(missing)), np.float32)
            filled[users[missing]] = True
        return vecs[users]

    def _take(self, batch: QueryBatch, rows: tuple[int, ...]) -> QueryBatch:
        last = self._taken
        if last is not None and last[0] is batch and last[1] == rows:
            return last[2]
        sub = batch if rows == tuple(range(len(batch))) else batch.take(np.array(rows, np.int64))
        self._taken = (batch, rows, sub)
        return sub

    def score(
        self,
        gi: int,
        gen: Recommender,
        rows: list[int],
        queries: list[Query],
        cands: list[CandidateQuery],
        batch: QueryBatch | None,
    ) -> np.ndarray:
        """Scores of generator ``gi`` for ``rows`` (positions in ``cands``; ``queries`` are the
        generator's view of them, used when the fast path does not apply)."""
        fast = [j for j, r in enumerate(rows) if batch is not None and self.shared[gi] and cands[r].row >= 0]
        if not fast:
            return gen.score(queries)
        assert batch is not None
        sub = self._take(batch, tuple(cands[rows[j]].row for j in fast))
        if self._cacheable(gi):
            assert isinstance(gen, EmbeddingRecommender)
            plain = np.array([cands[rows[j]].plain for j in fast], dtype=bool)
            qv = np.empty((len(fast), gen.item_vectors().shape[1]), np.float32)
            if plain.any():
                qv[plain] = self._user_vectors(gi, sub if plain.all() else sub.take(np.flatnonzero(plain)))
            if not plain.all():  # extra history or an unseen user's: computed, not cached
                qv[~plain] = gen.query_vectors(sub.take(np.flatnonzero(~plain)))
            fast_scores = qv @ gen.item_vectors().T
        else:
            fast_scores = gen.score_batch(sub)
        if len(fast) == len(rows):
            return fast_scores
        out = np.empty((len(rows), fast_scores.shape[1]), np.float32)
        out[fast] = fast_scores
        slow = np.setdiff1d(np.arange(len(rows)), fast)
        out[slow] = gen.score([queries[j] for j in slow])
        return out

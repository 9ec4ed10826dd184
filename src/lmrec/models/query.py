"""Queries: what a model recommends for, and the encoded batch models score.

A *query* is a known user id, an unseen user's history (external item ids, oldest first), free
text, or a mix: :class:`Query`. :func:`as_queries` normalises user input; the base class
(:meth:`lmrec.models.base.Recommender.encode_queries`) turns queries into a :class:`QueryBatch` of
internal indices, and :func:`results_frame` turns ranked indices back into the public answer.
Re-exported by :mod:`lmrec.models.base`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.vocabulary import Vocabulary

__all__ = ["Query", "QueryBatch", "QueryLike", "as_queries", "id_dtype", "results_frame"]


@dataclass(frozen=True)
class Query:
    """What to recommend for: a known user, an unseen user's history, free text, or a mix.

    ``history`` holds external item ids, oldest first. For a known user it is *added* to the
    training history (e.g. events since training, or the validation item at test time).
    """

    user_id: Any = None
    history: Sequence[Any] | None = None
    text: str | None = None
    #: optional per-item weights for ``history`` (ratings, dwell time); default 1
    weights: Sequence[float] | None = None

    def kinds(self) -> set[str]:
        out = set()
        if self.user_id is not None:
            out.add("user")
        if self.history is not None:
            out.add("history")
        if self.text:
            out.add("text")
        return out


QueryLike = Query | Mapping[str, Any] | int | str | np.integer


def as_queries(queries: QueryLike | Iterable[QueryLike]) -> list[Query]:
    """Normalise user input: a scalar is a user id; dicts use Query's field names."""
    if isinstance(queries, (Query, Mapping, int, str, np.integer)):
        queries = [queries]  # type: ignore[list-item]
    out: list[Query] = []
    for q in queries:  # type: ignore[union-attr]
        if isinstance(q, Query):
            out.append(q)
        elif isinstance(q, Mapping):
            unknown = set(q) - {"user_id", "history", "text", "weights"}
            if unknown:
                raise ValueError(f"query has unknown field(s) {sorted(unknown)}; use user_id, history, text")
            out.append(Query(**q))
        elif isinstance(q, (int, str, np.integer)):
            out.append(Query(user_id=q.item() if isinstance(q, np.integer) else q))
        else:
            raise TypeError(f"cannot interpret {q!r} as a query (give a user id, a dict or a Query)")
    for i, q in enumerate(out):
        if not q.kinds():
            raise ValueError(f"query {i} is empty: give a user_id, a history or a text")
    return out


@dataclass
class QueryBatch:
    """Queries in internal indices, as models see them."""

    #: model-internal user index, or -1 for users with no training history (unseen users)
    user_idx: np.ndarray
    #: (n_queries, n_items) CSR: training history (known users) plus the query's extra history
    history: sp.csr_matrix
    #: each query's item indices in time order (training sequence, then extra history)
    sequences: list[np.ndarray]
    texts: list[str | None]
    #: items each query must not get back (seen history, explicit exclusions) are masked by the base
    n_items: int
    queries: list[Query] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.user_idx)


def id_dtype(vocab: Vocabulary) -> type[pl.DataType]:
    """The polars dtype of ``vocab``'s external ids."""
    return pl.Int64 if vocab.kind == "int" else pl.Utf8


def results_frame(
    queries: Sequence[Query],
    idx: np.ndarray,
    val: np.ndarray,
    offset: int,
    user_vocab: Vocabulary | None,
    item_vocab: Vocabulary,
) -> pl.DataFrame:
    """Ranked ``(n_queries, k)`` item indices and scores as ``query, user_id, item_id, score, rank``
    (external ids, rank from 1; ``-inf`` scores, the padding of short lists, are dropped)."""
    valid = np.isfinite(val)
    qpos = np.repeat(np.arange(idx.shape[0]), idx.shape[1]).reshape(idx.shape)
    qpos, items, scores = qpos[valid], idx[valid], val[valid]
    ranks = (np.cumsum(valid, axis=1) * valid)[valid] if valid.size else np.zeros(0, np.int64)
    user_ids = [queries[i].user_id for i in qpos]
    user_dtype = id_dtype(user_vocab) if user_vocab is not None else pl.Utf8
    if user_dtype == pl.Int64:
        user_ids = [
            None if u is None else int(u) if not isinstance(u, str) or u.lstrip("-").isdigit() else None
            for u in user_ids
        ]
    else:
        user_ids = [None if u is None else str(u) for u in user_ids]
    return pl.DataFrame(
        {
            "query": (qpos + offset).astype(np.int64),
            "user_id": pl.Series(user_ids, dtype=user_dtype),
            "item_id": pl.Series(item_vocab.external(items), dtype=id_dtype(item_vocab)),
            "score": scores.astype(np.float32),
            "rank": ranks.astype(np.int64),
        }
    )

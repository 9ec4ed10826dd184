"""Queries: what a model recommends for, and the encoded batch models score.

A *query* is a known user id, an unseen user's history (external item ids, oldest first), free
text, or a mix: :class:`Query`. :func:`as_queries` normalises user input; :func:`resolve_queries`
(behind :meth:`lmrec.models.base.Recommender.encode_queries`) turns queries into a
:class:`QueryBatch` of internal indices, and :func:`results_frame` turns ranked indices back into the
public answer. Re-exported by :mod:`lmrec.models.base`.

Unknown ids, one policy for Python, the CLI and HTTP. *Lenient* (the default): unknown history
items are dropped, and a query left with nothing the model knows (an unknown user, or a user without
interactions, with no history or text; a history whose every id is unknown) is served the most
popular items, flagged (``fallback="popularity"``); what was left out is recorded
(:class:`UnknownIds`) and reported (a warning in Python, a ``warnings`` field over HTTP). *Strict*:
each of those is an :class:`~lmrec.errors.UnknownIdError` naming the ids. An unknown user *with* a
history or text is a new user, served from what the query gives, in both modes. An explicitly empty
history is not an unknown id: the model scores it (a sequence model has a start state).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import UnknownIdError, UnsupportedQueryError

__all__ = [
    "POPULARITY",
    "Query",
    "QueryBatch",
    "QueryLike",
    "UnknownIds",
    "as_queries",
    "id_dtype",
    "resolve_queries",
    "results_frame",
]

#: the ``fallback`` of a query served the most popular items (nothing in it was known)
POPULARITY = "popularity"


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
    #: per query: None (the model serves it) or how it is served instead (:data:`POPULARITY`)
    fallback: list[str | None] = field(default_factory=list)
    #: ids a lenient resolution left out (unknown users behind a fallback, dropped history items)
    unknown: list[UnknownIds] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.user_idx)

    @property
    def fallback_mask(self) -> np.ndarray:
        """Boolean per query: served by a fallback rather than by the model."""
        if not self.fallback:
            return np.zeros(len(self), dtype=bool)
        return np.array([f is not None for f in self.fallback], dtype=bool)

    def take(self, rows: np.ndarray) -> QueryBatch:
        """The sub-batch of ``rows`` (positions), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        pick = [int(r) for r in rows]
        return QueryBatch(
            user_idx=self.user_idx[rows],
            history=self.history[rows],
            sequences=[self.sequences[r] for r in pick],
            texts=[self.texts[r] for r in pick],
            n_items=self.n_items,
            queries=[self.queries[r] for r in pick] if self.queries else [],
            fallback=[self.fallback[r] for r in pick] if self.fallback else [],
        )

    @staticmethod
    def concat(batches: Sequence[QueryBatch]) -> QueryBatch:
        """One batch holding every query of ``batches`` (over the same items), in order: the
        inverse of :meth:`take` over consecutive rows."""
        return QueryBatch(
            user_idx=np.concatenate([b.user_idx for b in batches]),
            history=sp.vstack([b.history for b in batches], format="csr"),
            sequences=[s for b in batches for s in b.sequences],
            texts=[t for b in batches for t in b.texts],
            n_items=batches[0].n_items,
            queries=[q for b in batches for q in b.queries],
            fallback=[f for b in batches for f in (b.fallback or [None] * len(b))],
        )


@dataclass(frozen=True)
class UnknownIds:
    """Ids a lenient query resolution left out: of which query (-1: every query), which field."""

    query: int
    #: "user_id" (served by a fallback), "history", "exclude" or "items"
    field: str
    ids: list[Any]

    def message(self) -> str:
        shown = ", ".join(repr(i) for i in self.ids[:10])
        more = f" (and {len(self.ids) - 10} more)" if len(self.ids) > 10 else ""
        of = f" of query {self.query}" if self.query >= 0 else ""
        if self.field == "user_id":
            return f"unknown user_id{of}: {shown}{more}; served the most popular items (fallback)"
        return f"unknown item_id in {self.field}{of} left out: {shown}{more}"


def _history_matrix(seqs: list[np.ndarray], wts: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(n, n_items) CSR of the sequences' weights, indices sorted, repeated items summed."""
    n = len(seqs)
    lens = np.fromiter((len(s) for s in seqs), np.int64, n)
    rows = np.repeat(np.arange(n, dtype=np.int64), lens)
    c = np.concatenate(seqs).astype(np.int64, copy=False) if n else np.zeros(0, np.int64)
    d = np.concatenate(wts).astype(np.float32, copy=False) if n else np.zeros(0, np.float32)
    # built directly when no row repeats an item (the usual case, and the cheap one: a request pays
    # for this on every call); else through COO, which sums the repeats
    order = np.lexsort((c, rows)) if n > 1 else np.argsort(c, kind="stable")
    c_sorted, r_sorted = c[order], rows[order]
    if not ((c_sorted[1:] == c_sorted[:-1]) & (r_sorted[1:] == r_sorted[:-1])).any():
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(lens, out=indptr[1:])
        return sp.csr_matrix((d[order], c_sorted, indptr), shape=(n, n_items), dtype=np.float32)
    matrix = sp.csr_matrix((d, (rows, c)), shape=(n, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


def resolve_queries(
    queries: Sequence[Query],
    *,
    model: str,
    supports: Iterable[str],
    user_vocab: Vocabulary,
    item_vocab: Vocabulary,
    histories: tuple[np.ndarray, np.ndarray, np.ndarray],
    strict: bool = True,
    reasons: Mapping[str, str] | None = None,
) -> QueryBatch:
    """Resolve external ids, merge histories and check ``model`` supports each query kind.

    ``histories`` is the model's stored ``(items, weights, offsets)``. ``strict`` raises
    :class:`UnknownIdError` for an unknown user with nothing else to go on and for unknown history
    items; otherwise those queries get a fallback and the ids are recorded (see the module doc).
    """
    hist_items, hist_weights, offsets = histories
    supports = set(supports)
    n, n_items = len(queries), len(item_vocab)
    user_idx = np.full(n, -1, dtype=np.int64)
    seqs: list[np.ndarray] = []
    wts: list[np.ndarray] = []
    texts: list[str | None] = []
    fallback: list[str | None] = [None] * n
    unknown: list[UnknownIds] = []
    unknown_users: list[Any] = []
    no_history: list[Any] = []
    for qi, q in enumerate(queries):
        kinds = q.kinds()
        need = kinds - supports
        if "user" in need and q.history is not None:
            need.discard("user")  # history alone is enough for a history model
        if need:
            why = "".join(f"; {reasons[k]}" for k in sorted(need) if reasons and k in reasons)
            raise UnsupportedQueryError(
                f"{model} cannot serve {'/'.join(sorted(need))} queries "
                f"(supports: {', '.join(sorted(supports))}{why}); query {qi}: {q!r}"
            )
        seq = np.zeros(0, dtype=np.int64)
        w = np.zeros(0, dtype=np.float32)
        known_user = False
        if q.user_id is not None:
            u = user_vocab.get(q.user_id)
            if 0 <= u < len(offsets) - 1 and offsets[u + 1] > offsets[u]:
                known_user = True
                user_idx[qi] = u
                seq, w = hist_items[offsets[u] : offsets[u + 1]], hist_weights[offsets[u] : offsets[u + 1]]
        if q.history is not None:
            hist = list(q.history)
            if q.weights is not None and len(q.weights) != len(hist):
                raise ValueError(f"query {qi}: {len(q.weights)} weights for {len(hist)} history items")
            extra = item_vocab.indices(hist, missing="mark")
            ok = extra >= 0
            if not ok.all():
                bad = [h for h, good in zip(hist, ok, strict=True) if not good]
                if strict:
                    raise UnknownIdError(f"item_id in the history of query {qi}", bad)
                unknown.append(UnknownIds(qi, "history", bad))
            ew = np.ones(len(hist), np.float32) if q.weights is None else np.asarray(q.weights, np.float32)
            seq = np.concatenate([seq, extra[ok]])
            w = np.concatenate([w, ew[ok]])
        has_history = q.history is not None and (len(seq) > 0 or not len(q.history))
        if not known_user and not has_history and not q.text:
            if strict and q.user_id is not None and q.history is None:
                (unknown_users if user_vocab.get(q.user_id) < 0 else no_history).append(q.user_id)
            elif not strict:
                fallback[qi] = POPULARITY
                if q.user_id is not None:
                    unknown.append(UnknownIds(qi, "user_id", [q.user_id]))
        seqs.append(seq)
        wts.append(w)
        texts.append(q.text or None)
    if unknown_users:
        raise UnknownIdError("user_id", unknown_users)
    if no_history:
        raise UnknownIdError("user_id without training interactions (pass a history or text)", no_history)
    matrix = _history_matrix(seqs, wts, n_items)
    return QueryBatch(
        user_idx=user_idx,
        history=matrix,
        sequences=seqs,
        texts=texts,
        n_items=n_items,
        queries=list(queries),
        fallback=fallback,
        unknown=unknown,
    )


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
    fallback: Sequence[str | None] | None = None,
) -> pl.DataFrame:
    """Ranked ``(n_queries, k)`` item indices and scores as ``query, user_id, item_id, score, rank,
    fallback`` (external ids, rank from 1; ``-inf`` scores, the padding of short lists, are dropped;
    ``fallback`` is null, or :data:`POPULARITY` for a query nothing in which was known)."""
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
            "fallback": pl.Series(
                [fallback[i] for i in qpos] if fallback else [None] * len(qpos), dtype=pl.Utf8
            ),
        }
    )

"""The one protocol every lmrec model follows.

``fit(data) -> self``, ``recommend(queries, k) -> DataFrame[query, user_id, item_id, score, rank]``,
``score(queries, items) -> ndarray``, ``save(dir)`` / ``load(dir)`` (safetensors + JSON, never pickle).

A *query* is a known user id, an unseen user's history (external item ids, oldest first), free
text, or a mix: :class:`Query` (defined in :mod:`lmrec.models.query`, re-exported here). The base
class turns queries into a :class:`QueryBatch` of internal indices (known users get their training
history merged with any extra history) and ranks them with :meth:`Recommender.rank`: the subclass's
dense scores, seen/excluded items masked and the shared top-k of :mod:`lmrec.ranking` (embedding
models may rank through a faiss index instead). Subclasses only write ``_fit`` and ``_score`` (and
``_get_state``/``_set_state`` for persistence; ``_save_files``/``_load_files`` for files of their
own in the saved folder, such as sub-models).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict
from safetensors.numpy import save_file

from lmrec._atomic import atomic_directory
from lmrec._version import __version__
from lmrec.data.dataset import Dataset
from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import NotFittedError, UnknownIdError, UnsupportedQueryError
from lmrec.models.query import Query, QueryBatch, QueryLike, as_queries, id_dtype, results_frame
from lmrec.ranking import ExactRanker, Ranker, rank_scores

FORMAT_VERSION = 1


class ModelConfig(BaseModel):
    """Base for per-model hyperparameters: one pydantic model, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Recommender(ABC):
    """Base class: id handling, query kinds, top-k, masking and persistence for every model."""

    #: registry name, used in configs, the CLI and saved artifacts
    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    #: which query kinds ``_score`` can use: "user", "history", "text"
    supports: ClassVar[frozenset[str]] = frozenset({"user", "history"})

    def __init__(self, config: ModelConfig | Mapping[str, Any] | None = None, **params: Any) -> None:
        if config is None:
            config = self.Config(**params)
        elif isinstance(config, Mapping):
            config = self.Config(**{**config, **params})
        elif params:
            config = config.model_copy(update=params)
        if not isinstance(config, self.Config):
            raise TypeError(
                f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.user_vocab: Vocabulary | None = None
        self.item_vocab: Vocabulary | None = None
        # training histories, time ordered: flattened items, weights and per-user offsets
        self._hist_items = np.zeros(0, dtype=np.int64)
        self._hist_weights = np.zeros(0, dtype=np.float32)
        self._hist_offsets = np.zeros(1, dtype=np.int64)
        self._history_csr: sp.csr_matrix | None = None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _fit(self, data: Dataset) -> None:
        """Learn from ``data`` (internal indices in ``data.interactions``)."""

    @abstractmethod
    def _score(self, batch: QueryBatch) -> np.ndarray:
        """Dense (n_queries, n_items) float32 scores, higher is better. No masking needed."""

    def _get_state(self) -> dict[str, np.ndarray]:
        """Model tensors to persist (safetensors)."""
        return {}

    def _get_extra(self) -> dict[str, Any]:
        """JSON-serialisable non-tensor state to persist."""
        return {}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        """Restore what ``_get_state``/``_get_extra`` returned (default: nothing to restore)."""
        return None

    def _save_files(self, folder: Path) -> None:
        """Write files of the model's own into ``folder``, the staging directory of :meth:`save`
        (after the standard files, so atomically with them). Default: none."""
        return None

    def _load_files(self, folder: Path) -> None:
        """Read what ``_save_files`` wrote; called on load after ``_set_state``. Default: none."""
        return None

    # ------------------------------------------------------------------ public API
    @property
    def is_fitted(self) -> bool:
        return self.item_vocab is not None

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self.item_vocab is not None
        return len(self.item_vocab)

    def fit(self, data: Dataset) -> Self:
        """Fit on ``data`` and remember each user's history for serving known users."""
        self._start_fit(data)
        self._fit(data)
        return self

    def _start_fit(self, data: Dataset) -> None:
        """The bookkeeping every ``fit`` does first: vocabularies and training histories."""
        self.user_vocab = data.user_vocab
        self.item_vocab = data.item_vocab
        self._set_histories(data)

    def recommend(
        self,
        queries: QueryLike | Iterable[QueryLike],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        items: Iterable[Any] | None = None,
        exclude: Iterable[Any] | None = None,
        batch_size: int = 1024,
    ) -> pl.DataFrame:
        """Top-``k`` items per query as ``query, user_id, item_id, score, rank`` (rank from 1).

        ``items`` restricts the candidates (external ids); ``exclude`` removes items for every query;
        ``exclude_seen`` removes each query's history. Fewer than ``k`` rows come back when fewer
        candidates remain.
        """
        _check_k(k)
        qs = as_queries(queries)
        self._check_fitted()
        assert self.item_vocab is not None
        allowed = None
        if items is not None:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[self.item_vocab.indices(list(items))] = True
        banned = self.item_vocab.indices(list(exclude)) if exclude is not None else None
        frames = []
        for start in range(0, len(qs), batch_size):
            chunk = qs[start : start + batch_size]
            batch = self.encode_queries(chunk)
            idx, val = self.rank(batch, int(k), exclude_seen=exclude_seen, exclude=banned, allowed=allowed)
            frames.append(results_frame(chunk, idx, val, start, self.user_vocab, self.item_vocab))
        if not frames:
            z = np.zeros((0, 0), np.int64)
            return results_frame([], z, z.astype(np.float32), 0, self.user_vocab, self.item_vocab)
        return pl.concat(frames)

    def score(
        self, queries: QueryLike | Iterable[QueryLike], items: Iterable[Any] | None = None
    ) -> np.ndarray:
        """Raw scores (n_queries, n_items or len(items)); nothing masked."""
        qs = as_queries(queries)
        self._check_fitted()
        assert self.item_vocab is not None
        scores = self.score_batch(self.encode_queries(qs))
        if items is not None:
            scores = scores[:, self.item_vocab.indices(list(items))]
        return scores

    # ------------------------------------------------------------------ ranking (internal indices)
    def score_batch(self, batch: QueryBatch) -> np.ndarray:
        """Dense (n_queries, n_items) float32 scores of an encoded batch: a fresh, writable array,
        nothing masked (evaluation's AUC and :meth:`rank` start from it)."""
        self._check_fitted()
        return np.array(self._score(batch), dtype=np.float32, copy=True)

    def rank(
        self,
        batch: QueryBatch,
        k: int,
        *,
        exclude_seen: bool = True,
        exclude: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` internal item indices and scores per query of ``batch``, best first.

        ``exclude_seen`` removes each query's history (``batch.history``); ``exclude`` (item
        indices) and ``allowed`` (a boolean mask over items) apply to every query. Returns two
        ``(n_queries, k)`` arrays; where fewer than ``k`` candidates remain the index is ``-1`` and
        the score ``-inf``. Ties go to the lower item index (:func:`lmrec.ranking.topk`).
        """
        _check_k(k)
        seen = batch.history if exclude_seen else None
        by_vectors = self._vector_ranking(batch)
        if by_vectors is None:
            return rank_scores(self.score_batch(batch), int(k), seen=seen, exclude=exclude, allowed=allowed)
        ranker, queries, items = by_vectors
        return ranker.rank(queries, items, int(k), seen=seen, exclude=exclude, allowed=allowed)

    def _vector_ranking(self, batch: QueryBatch) -> tuple[Ranker, np.ndarray, np.ndarray] | None:
        """``(ranker, query vectors, item vectors)`` when :meth:`rank` goes through a
        :class:`~lmrec.ranking.Ranker` rather than the exact scores; None here (always exact)."""
        return None

    # ------------------------------------------------------------------ query encoding
    def encode_queries(self, queries: Sequence[Query], *, on_unknown_items: str = "raise") -> QueryBatch:
        """Resolve external ids, merge histories and check the model supports each query kind."""
        self._check_fitted()
        assert self.user_vocab is not None and self.item_vocab is not None
        n = len(queries)
        user_idx = np.full(n, -1, dtype=np.int64)
        seqs: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        wts: list[np.ndarray] = []
        texts: list[str | None] = []
        unknown_users: list[Any] = []
        no_history: list[Any] = []
        for qi, q in enumerate(queries):
            kinds = q.kinds()
            need = kinds - set(self.supports)
            if "user" in need and q.history is not None:
                need.discard("user")  # history alone is enough for a history model
            if need:
                raise UnsupportedQueryError(
                    f"{type(self).__name__} cannot serve {'/'.join(sorted(need))} queries "
                    f"(supports: {', '.join(sorted(self.supports))}); query {qi}: {q!r}"
                )
            seq = np.zeros(0, dtype=np.int64)
            w = np.zeros(0, dtype=np.float32)
            if q.user_id is not None:
                u = self.user_vocab.get(q.user_id)
                if u < 0 or self.history_length(u) == 0:
                    if q.history is None and not q.text:
                        (unknown_users if u < 0 else no_history).append(q.user_id)
                else:
                    user_idx[qi] = u
                    lo, hi = self._hist_offsets[u], self._hist_offsets[u + 1]
                    seq = self._hist_items[lo:hi]
                    w = self._hist_weights[lo:hi]
            if q.history is not None:
                hist = list(q.history)
                if on_unknown_items == "drop":
                    extra = self.item_vocab.indices(hist, missing="drop")
                    ew = np.ones(len(extra), np.float32)
                else:
                    try:
                        extra = self.item_vocab.indices(hist)
                    except UnknownIdError as exc:
                        raise UnknownIdError(f"item_id in the history of query {qi}", exc.ids) from None
                    ew = (
                        np.asarray(q.weights, dtype=np.float32)
                        if q.weights is not None
                        else np.ones(len(extra), np.float32)
                    )
                    if len(ew) != len(extra):
                        raise ValueError(f"query {qi}: {len(ew)} weights for {len(extra)} history items")
                seq = np.concatenate([seq, extra])
                w = np.concatenate([w, ew])
            seqs.append(seq)
            rows.append(np.full(len(seq), qi, dtype=np.int64))
            wts.append(w)
            texts.append(q.text or None)
        if unknown_users:
            raise UnknownIdError("user_id", unknown_users)
        if no_history:
            raise UnknownIdError("user_id without training interactions (pass a history or text)", no_history)
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        d = np.concatenate(wts) if wts else np.zeros(0, np.float32)
        hist = sp.csr_matrix((d, (r, c)), shape=(n, self.n_items), dtype=np.float32)
        hist.sum_duplicates()
        return QueryBatch(
            user_idx=user_idx,
            history=hist,
            sequences=seqs,
            texts=texts,
            n_items=self.n_items,
            queries=list(queries),
        )

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

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to directory ``path`` atomically (safetensors + JSON; no pickle)."""
        self._check_fitted()
        assert self.user_vocab is not None and self.item_vocab is not None
        target = Path(path)
        with atomic_directory(target) as tmp:
            meta = {
                "format_version": FORMAT_VERSION,
                "lmrec_version": __version__,
                "model": self.name,
                "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "config": self.config.model_dump(mode="json"),
                "extra": self._get_extra(),
            }
            (tmp / "model.json").write_text(json.dumps(meta, indent=2))
            (tmp / "vocab.json").write_text(
                json.dumps({"user": self.user_vocab.to_json(), "item": self.item_vocab.to_json()})
            )
            tensors = {f"model.{k}": np.ascontiguousarray(v) for k, v in self._get_state().items()}
            tensors.update(
                {
                    "history.items": self._hist_items,
                    "history.weights": self._hist_weights,
                    "history.offsets": self._hist_offsets,
                }
            )
            save_file(tensors, str(tmp / "state.safetensors"))
            self._save_files(tmp)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recommender:
        """Load any saved lmrec model (the class is read from ``model.json``); see
        :func:`lmrec.models.registry.load_model`. On a subclass, the model must be of that class."""
        # imported here: the registry resolves model classes, whose modules import this one
        from lmrec.models.registry import load_model

        return load_model(path, expected=cls)

    def _restore(
        self, vocab: Mapping[str, Any], tensors: dict[str, np.ndarray], extra: Mapping[str, Any]
    ) -> None:
        """Put back what :meth:`save` wrote (``vocab.json``, ``state.safetensors``, ``extra``)."""
        self.user_vocab = Vocabulary.from_json(vocab["user"])
        self.item_vocab = Vocabulary.from_json(vocab["item"])
        self._hist_items = tensors.pop("history.items")
        self._hist_weights = tensors.pop("history.weights")
        self._hist_offsets = tensors.pop("history.offsets")
        self._set_state({k.removeprefix("model."): v for k, v in tensors.items()}, dict(extra))

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(data) first")


def _check_k(k: Any) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


class EmbeddingRecommender(Recommender):
    """A model whose scores are dot products of query vectors and item vectors.

    MF, two-tower, sequence and content models implement ``query_vectors``/``item_vectors``; one
    scoring path then serves them all. Ranking is exact by default; :meth:`set_ranker` swaps in an
    approximate one (``IndexRanker``: faiss HNSW/IVF) for large catalogues, for any embedding model.
    """

    #: how :meth:`rank` turns query and item vectors into top-k lists (None: exact, via ``_score``)
    ranker: Ranker | None = None

    def set_ranker(self, ranker: Ranker | None) -> Self:
        """Rank through ``ranker`` from now on (``None`` or :class:`ExactRanker`: exact scoring).

        A runtime choice, not saved with the model.
        """
        self.ranker = None if isinstance(ranker, ExactRanker) else ranker
        return self

    def _vector_ranking(self, batch: QueryBatch) -> tuple[Ranker, np.ndarray, np.ndarray] | None:
        if self.ranker is None:
            return None
        self._check_fitted()
        return (
            self.ranker,
            np.asarray(self.query_vectors(batch), dtype=np.float32),
            np.asarray(self.item_vectors(), dtype=np.float32),
        )

    @abstractmethod
    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        """(n_queries, dim) float32."""

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32."""

    def _score(self, batch: QueryBatch) -> np.ndarray:
        return self.query_vectors(batch) @ self.item_vectors().T

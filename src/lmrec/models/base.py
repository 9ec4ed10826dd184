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
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict
from safetensors.numpy import save_file

from lmrec._atomic import atomic_directory
from lmrec._memory import rows_per_batch
from lmrec._version import __version__
from lmrec.data.dataset import Dataset
from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import DataError, UnknownIdError, UnknownIdWarning
from lmrec.models.histories import HistoryStore
from lmrec.models.query import (
    Query,
    QueryBatch,
    QueryLike,
    UnknownIds,
    as_queries,
    resolve_queries,
    results_frame,
)
from lmrec.ranking import ExactRanker, Ranker, rank_scores

FORMAT_VERSION = 2  # 2: model.json records every tensor's shape; load reads 1 (unchecked) and 2
READABLE_FORMATS = (1, 2)


class ModelConfig(BaseModel):
    """Base for per-model hyperparameters: one pydantic model, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Recommender(HistoryStore, ABC):
    """Base class: id handling, query kinds, top-k, masking and persistence for every model (the
    vocabularies and users' histories: :class:`~lmrec.models.histories.HistoryStore`)."""

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
        super().__init__()

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
        strict: bool = False,
    ) -> pl.DataFrame:
        """Top-``k`` items per query as ``query, user_id, item_id, score, rank, fallback`` (rank from 1).

        ``items`` restricts the candidates (external ids); ``exclude`` removes items for every query;
        ``exclude_seen`` removes each query's history. Fewer than ``k`` rows come back when fewer
        candidates remain.

        Unknown ids (:mod:`lmrec.models.query`): by default unknown history, ``items`` and
        ``exclude`` ids are left out and a query with nothing known (an unknown user, say) gets the
        most popular items with ``fallback == "popularity"``, each reported in one
        :class:`~lmrec.errors.UnknownIdWarning`; ``strict=True`` raises
        :class:`~lmrec.errors.UnknownIdError` for any of them instead.
        """
        _check_k(k)
        qs = as_queries(queries)
        self._check_fitted()
        assert self.item_vocab is not None
        notes: list[UnknownIds] = []
        allowed = None
        if items is not None:
            allowed = np.zeros(self.n_items, dtype=bool)
            allowed[self._item_indices(items, "items", strict, notes)] = True
        banned = self._item_indices(exclude, "exclude", strict, notes) if exclude is not None else None
        frames = []
        # a (batch, n_items) float32 score block and its masked copy: bounded, however large the
        # catalogue (1,024 queries x 1M items would be 4 GB each)
        batch_size = rows_per_batch(min(batch_size, max(len(qs), 1)), 2 * 4 * self.n_items)
        for start in range(0, len(qs), batch_size):
            chunk = qs[start : start + batch_size]
            batch = self.encode_queries(chunk, strict=strict)
            notes += [UnknownIds(n.query + start, n.field, n.ids) for n in batch.unknown]
            idx, val = self.rank(batch, int(k), exclude_seen=exclude_seen, exclude=banned, allowed=allowed)
            frames.append(
                results_frame(chunk, idx, val, start, self.user_vocab, self.item_vocab, batch.fallback)
            )
        if notes:
            warnings.warn(UnknownIdWarning("; ".join(n.message() for n in notes)), stacklevel=2)
        if not frames:
            z = np.zeros((0, 0), np.int64)
            return results_frame([], z, z.astype(np.float32), 0, self.user_vocab, self.item_vocab)
        return pl.concat(frames)

    def _item_indices(
        self, ids: Iterable[Any], field: str, strict: bool, notes: list[UnknownIds]
    ) -> np.ndarray:
        """Indices of the known ``ids``; unknown ones raise (``strict``) or are noted and left out."""
        assert self.item_vocab is not None
        ids = list(ids)
        idx = self.item_vocab.indices(ids, missing="mark")
        if (idx < 0).any():
            bad = [i for i, j in zip(ids, idx, strict=True) if j < 0]
            if strict:
                raise UnknownIdError(f"item_id in {field}", bad)
            notes.append(UnknownIds(-1, field, bad))
        return idx[idx >= 0]

    def score(
        self, queries: QueryLike | Iterable[QueryLike], items: Iterable[Any] | None = None
    ) -> np.ndarray:
        """Raw scores (n_queries, n_items or len(items)); nothing masked. Unknown ids raise
        :class:`~lmrec.errors.UnknownIdError` (there is no answer to flag a fallback in)."""
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
        fb = batch.fallback_mask
        if not fb.any():
            return np.array(self._score(batch), dtype=np.float32, copy=True)
        out = np.empty((len(batch), self.n_items), dtype=np.float32)
        out[fb] = self.popularity()
        if not fb.all():
            out[~fb] = self._score(batch.take(np.flatnonzero(~fb)))
        return out

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
        fb = batch.fallback_mask
        if fb.any() and not fb.all():  # the model ranks its queries, popularity the fallback ones
            out_i = np.full((len(batch), int(k)), -1, np.int64)
            out_v = np.full((len(batch), int(k)), -np.inf, np.float32)
            for rows in (np.flatnonzero(fb), np.flatnonzero(~fb)):
                out_i[rows], out_v[rows] = self.rank(
                    batch.take(rows), k, exclude_seen=exclude_seen, exclude=exclude, allowed=allowed
                )
            return out_i, out_v
        if fb.any():
            return rank_scores(self.score_batch(batch), int(k), seen=seen, exclude=exclude, allowed=allowed)
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
    def encode_queries(self, queries: Sequence[Query], *, strict: bool = True) -> QueryBatch:
        """Resolve external ids, merge histories and check the model supports each query kind.

        ``strict=False`` is the lenient policy of :meth:`recommend` (unknown history items dropped,
        queries with nothing known flagged for the popularity fallback); see
        :func:`lmrec.models.query.resolve_queries`.
        """
        self._check_fitted()
        assert self.user_vocab is not None and self.item_vocab is not None
        return resolve_queries(
            queries,
            model=type(self).__name__,
            supports=self.supports,
            user_vocab=self.user_vocab,
            item_vocab=self.item_vocab,
            histories=(self._hist_items, self._hist_weights, self._hist_offsets),
            strict=strict,
            reasons=getattr(self, "unsupported_reason", None),
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to directory ``path`` atomically (safetensors + JSON; no pickle)."""
        self._check_fitted()
        assert self.user_vocab is not None and self.item_vocab is not None
        target = Path(path)
        with atomic_directory(target) as tmp:
            tensors = {f"model.{k}": np.ascontiguousarray(v) for k, v in self._get_state().items()}
            tensors.update(
                {
                    "history.items": self._hist_items,
                    "history.weights": self._hist_weights,
                    "history.offsets": self._hist_offsets,
                }
            )
            meta = {
                "format_version": FORMAT_VERSION,
                "lmrec_version": __version__,
                "model": self.name,
                "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "config": self.config.model_dump(mode="json"),
                "extra": self._get_extra(),
                # what load checks state.safetensors and vocab.json against
                "n_users": len(self.user_vocab),
                "n_items": len(self.item_vocab),
                "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()},
            }
            (tmp / "model.json").write_text(json.dumps(meta, indent=2))
            (tmp / "vocab.json").write_text(
                json.dumps({"user": self.user_vocab.to_json(), "item": self.item_vocab.to_json()})
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
        self, vocabs: tuple[Vocabulary, Vocabulary], tensors: dict[str, np.ndarray], extra: Any
    ) -> None:
        """Put back what :meth:`save` wrote, once :func:`~lmrec.models.registry.load_model` checked it."""
        self.user_vocab, self.item_vocab = vocabs
        self._hist_items = tensors.pop("history.items")
        self._hist_weights = tensors.pop("history.weights")
        self._hist_offsets = tensors.pop("history.offsets")
        self._set_state({k.removeprefix("model."): v for k, v in tensors.items()}, dict(extra))


def new_items_frame(items: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    """Check a frame of new catalogue items (``add_items``) and cast ``item_id`` to the catalogue's
    id type; errors name the column or the ids at fault."""
    if not isinstance(items, pl.DataFrame):
        raise TypeError(f"add_items takes a polars DataFrame, got {type(items).__name__}")
    if "item_id" not in items.columns:
        raise DataError(
            f"new items have no 'item_id' column (columns: {', '.join(items.columns)})", column="item_id"
        )
    if items["item_id"].null_count():
        raise DataError("new items: null item_id", column="item_id")
    if items["item_id"].is_duplicated().any():
        raise DataError(
            f"new items: duplicate item_id {items['item_id'].filter(items['item_id'].is_duplicated())[0]!r}",
            column="item_id",
        )
    if vocab.kind == "int":
        bad = [
            i
            for i in items["item_id"].to_list()
            if not (isinstance(i, int) or (isinstance(i, str) and i.strip().lstrip("-").isdigit()))
        ]
        if bad:
            raise UnknownIdError("item_id (this catalogue uses integer ids)", bad)
        return items.with_columns(pl.col("item_id").cast(pl.Int64))
    return items.with_columns(pl.col("item_id").cast(pl.Utf8))


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

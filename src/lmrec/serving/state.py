"""The server's state container: the model, users' online histories, the index, the bandits.

:class:`ServingState` is everything the HTTP layer calls, usable without HTTP (tests, notebooks). It
holds the state and wires the parts together; the work is done elsewhere:

* :mod:`lmrec.serving.pipeline`: ``recommend`` as stages (candidates → filters → model ranking →
  rerankers: MMR, bandit → explanations → logged impression);
* :mod:`lmrec.serving.feedback`: ``feedback`` (durable log first, then memory; the one bandit update)
  and the replay of logged events at start-up;
* :mod:`lmrec.serving.features`: item features for the rerankers, and the ANN index.

Its life cycle:

1. **load**: the model from its artifact (safetensors + JSON, never pickle), the catalogue, the
   event log;
2. **replay**: items added through ``POST /items`` are re-added, then every logged feedback event
   newer than the artifact's training checkpoint is applied again, so a restarted server (even
   after ``kill -9``) serves exactly what it served before;
3. **serve**: ``recommend``, ``feedback``, ``add_item``, ``similar``, ``health``; each returns the
   API's response model (:mod:`lmrec.serving.schemas`) or the logged record.

Concurrency: one re-entrant lock (:attr:`ServingState.lock`) guards the model's mutable history
arrays and the bandits; the work inside it is a few milliseconds of numpy. Writers (feedback, new
items) are serialised by a second lock (:attr:`ServingState.write_lock`), so the in-memory order of
events equals their order in the log, and they do not hold the model lock while the log ``fsync``s:
reads go on during a durable write.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal, Unpack

import numpy as np
import polars as pl

from lmrec.bandits import LinearBandit, create_policy
from lmrec.errors import LmrecError
from lmrec.models.base import EmbeddingRecommender, Query, Recommender
from lmrec.models.protocols import SupportsAddItems, SupportsItemVectors, SupportsWarm
from lmrec.ranking import rank_scores
from lmrec.ranking.index import VectorIndex
from lmrec.serving.catalogue import Catalogue, catalogue_row, find_catalogue
from lmrec.serving.config import (
    CHECKPOINT_FILE,
    ServingConfig,
    configure_process,
    default_db_path,
    read_checkpoint,
)
from lmrec.serving.errors import Conflict, NotFound, ServingError
from lmrec.serving.features import build_index, normalise, svd_item_features
from lmrec.serving.feedback import RecentLists, record_feedback, replay_events
from lmrec.serving.metrics import ServerMetrics
from lmrec.serving.pictures import decode_picture, picture_url, pictures_dir, store_picture, uses_pictures
from lmrec.serving.pipeline import RecommendOptions, RecommendPipeline
from lmrec.serving.schemas import HealthResponse, IndexInfo, RecommendResponse, SimilarItem, SimilarResponse
from lmrec.serving.store import DuplicateItemError, EventStore, LoggedItem, open_store
from lmrec.serving.sync import LogFollower

log = logging.getLogger("lmrec.serving")


class ServingState:
    """Model + event log + index + bandits, with the operations the API exposes."""

    def __init__(
        self,
        model: Recommender,
        store: EventStore,
        config: ServingConfig | None = None,
        *,
        catalogue: Catalogue | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        if not model.is_fitted:
            raise LmrecError(f"cannot serve an unfitted {type(model).__name__}")
        self.model = model
        self.store = store
        self.config = config or ServingConfig()
        self.started = time.time()
        #: guards the model's history arrays and the bandits
        self.lock = threading.RLock()
        #: serialises writers, so that memory and log agree on the order of events
        self.write_lock = threading.Lock()
        assert model.item_vocab is not None
        self.catalogue = catalogue or Catalogue(model.item_vocab)
        #: item features come from the model's own vectors (else an SVD of the training matrix)
        self.embedding = isinstance(model, SupportsItemVectors)
        self.index: VectorIndex | None = None
        #: items each user said no to (negative feedback): never recommended to them again
        self.blocked: dict[Any, set[int]] = {}
        #: lists recently shown to each user, to credit feedback to the policy that served it
        self.recent = RecentLists()
        self.events_replayed = 0
        #: newest event id and added-item seq applied from the log (replay, then :attr:`follower`)
        self.events_applied = 0
        self.items_applied = 0
        #: keeps this worker up with the others' events when ``config.workers > 1``
        #: (:mod:`lmrec.serving.sync`); None in a one-process server
        self.follower: LogFollower | None = None
        #: set by :meth:`warm`: the model and its text encoder have served a query
        self.ready = False
        self.warm_s: float | None = None
        self.bandits: dict[str, LinearBandit] = {}
        #: the long-term-reward policy (``config.rl_policy``), None without one
        self.rl: Any = None
        self.metrics = ServerMetrics()
        self.pipeline = RecommendPipeline(self)
        # with other workers writing meanwhile: replay events up to a mark read before the items
        mark = self.store.watermark()[0] if self.config.workers > 1 else None
        self.add_logged_items(list(self.store.items()))
        self._build_vectors()
        after = int((checkpoint or {}).get("events_upto", 0))
        self.events_replayed = replay_events(self, after, upto=mark)
        if mark is not None:
            self.follower = LogFollower(self, events_upto=max(mark, after))
        self._register_gauges()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_artifact(
        cls,
        artifact_dir: str | os.PathLike[str],
        *,
        db: str | os.PathLike[str] | None = None,
        config: ServingConfig | None = None,
        catalogue: str | os.PathLike[str] | None = None,
    ) -> ServingState:
        """Load a saved model, its catalogue and its event log (created if missing)."""
        config = config or ServingConfig()
        model = Recommender.load(artifact_dir)
        assert model.item_vocab is not None
        cat_path = Path(catalogue) if catalogue is not None else find_catalogue(artifact_dir)
        cat = Catalogue.from_path(cat_path, model.item_vocab) if cat_path is not None else None
        store = open_store(
            db if db is not None else default_db_path(artifact_dir), synchronous=config.synchronous
        )
        try:
            return cls(model, store, config, catalogue=cat, checkpoint=read_checkpoint(artifact_dir))
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ ids
    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def n_items(self) -> int:
        return self.model.n_items

    def user_key(self, user_id: Any) -> Any:
        """The user id in the model vocabulary's type (``"42"`` -> 42 for integer vocabularies)."""
        vocab = self.model.user_vocab
        assert vocab is not None
        if vocab.kind == "int":
            if isinstance(user_id, int) and not isinstance(user_id, bool):
                return user_id
            if isinstance(user_id, str) and user_id.strip().lstrip("-").isdigit():
                return int(user_id)
            raise ServingError(f"user_id must be an integer for this model (got {user_id!r})")
        return str(user_id)

    def item_index(self, item_id: Any) -> int:
        """Internal index of an item id; :class:`NotFound` naming the id otherwise."""
        assert self.model.item_vocab is not None
        i = self.model.item_vocab.get(item_id)
        if i < 0:
            raise NotFound(f"unknown item_id {item_id!r}")
        return i

    def item_id(self, index: int) -> Any:
        assert self.model.item_vocab is not None
        return self.model.item_vocab.external([index])[0]

    def item_ids(self, indices: np.ndarray) -> list[Any]:
        assert self.model.item_vocab is not None
        return self.model.item_vocab.external(indices)

    def known_user(self, key: Any) -> bool:
        """Whether ``key`` names a user with a history (training or online)."""
        return self.model.has_history(key)

    # ------------------------------------------------------------------ vectors, index, bandits
    def _build_vectors(self) -> None:
        cfg = self.config
        if isinstance(self.model, SupportsItemVectors):
            features = np.asarray(self.model.item_vectors(), dtype=np.float32)
            if isinstance(self.model, EmbeddingRecommender):
                self.index = build_index(self.model, features, cfg)
        else:
            features = svd_item_features(self.model, cfg.feature_dim, cfg.seed)
        self.features = normalise(features)
        if cfg.rl_policy is not None:
            from lmrec.rl.serving import RLReranker

            self.rl = RLReranker.load(cfg.rl_policy, epsilon=cfg.epsilon, seed=cfg.seed)
        if cfg.policy != "none":
            dim = 1 + self.features.shape[1]
            for name in ("linucb", "thompson"):
                self.bandits[name] = create_policy(
                    name, dim, explore=cfg.explore, epsilon=cfg.epsilon, seed=cfg.seed
                )

    def append_item_vectors(self, old_n: int) -> None:
        """Item features, index rows and catalogue rows for the items the model gained after ``old_n``."""
        n = self.model.n_items
        if n == old_n:
            return
        if isinstance(self.model, SupportsItemVectors):
            new = np.asarray(self.model.item_vectors(), dtype=np.float32)[old_n:n]
            if self.index is not None:
                self.index.add(new)
        else:
            new = np.zeros((n - old_n, self.features.shape[1]), np.float32)
        self.features = np.concatenate([self.features, normalise(new)])
        self.catalogue.grow_to(n)

    def _register_gauges(self) -> None:
        m = self.metrics
        m.gauge("lmrec_items", "Items the model can recommend.", lambda: self.model.n_items)
        m.gauge(
            "lmrec_users",
            "Users with a history (training or online).",
            lambda: self.model.n_history_users,
        )
        m.gauge(
            "lmrec_events_replayed",
            "Feedback events replayed from the log at start-up.",
            lambda: self.events_replayed,
        )
        m.gauge(
            "lmrec_uptime_seconds", "Seconds since the state was loaded.", lambda: time.time() - self.started
        )
        if self.index is not None:
            index = self.index
            m.gauge(
                "lmrec_ann_recall_at_10",
                "Measured recall@10 of the ANN index vs exact search (1 for exact).",
                lambda: index.last_recall.recall if index.last_recall else 1.0,
            )
        for name, b in self.bandits.items():
            m.gauge(
                f"lmrec_bandit_{name}_observations",
                f"Rewards the {name} bandit has learned from.",
                functools.partial(_n_updates, b),
            )

    # ------------------------------------------------------------------ recommend, similar
    def recommend(
        self,
        *,
        with_explanations: bool = True,
        request_id: str | None = None,
        **request: Unpack[RecommendOptions],
    ) -> RecommendResponse:
        """A list for a user id, a history, free text or a mix (:mod:`lmrec.serving.pipeline`)."""
        return self.pipeline.recommend(with_explanations=with_explanations, request_id=request_id, **request)

    # ------------------------------------------------------------------ warm-up
    def warm(self) -> float:
        """Run one query of each kind the model serves (a history or a known user, and free text:
        this loads and runs a text encoder), after the model's own warm-up where it has one
        (:class:`~lmrec.models.protocols.SupportsWarm`), so the first request pays no start-up
        cost; then :attr:`ready`. Returns the seconds it took; idempotent."""
        if self.ready:
            return self.warm_s or 0.0
        t0 = time.perf_counter()
        model = self.model
        queries = []
        if "history" in model.supports and model.n_items:
            queries.append(Query(history=[self.item_id(0)]))
        elif "user" in model.supports and model.n_history_users:
            first = next((u for u in range(model.n_history_users) if model.history_length(u)), 0)
            assert model.user_vocab is not None
            queries.append(Query(user_id=model.user_vocab.external([first])[0]))
        if "text" in model.supports:
            queries.append(Query(text="warm up"))
        if isinstance(model, SupportsWarm):
            with self.lock:
                model.warm()
        for q in queries:
            with self.lock:
                batch = model.encode_queries([q], strict=False)
            model.rank(batch, 1)
        self.warm_s = round(time.perf_counter() - t0, 3)
        self.ready = True
        log.info("warm in %.3f s (%s)", self.warm_s, ", ".join("/".join(sorted(q.kinds())) for q in queries))
        return self.warm_s

    def similar(self, item_id: Any, k: int = 10) -> SimilarResponse:
        """Items like ``item_id``: item-vector cosine for embedding models, else the model's list
        for a one-item history."""
        if not 1 <= k <= self.config.max_k:
            raise ServingError(f"k must be between 1 and {self.config.max_k}, got {k}")
        if self.follower is not None:
            self.follower.catch_up(wait=False)
        i = self.item_index(item_id)
        with self.lock:
            if self.embedding:
                sims = (self.features @ self.features[i])[None, :].astype(np.float32)
                idx, val = rank_scores(sims, k, exclude=np.array([i]))
                method: Literal["item-vectors", "model"] = "item-vectors"
            else:
                batch = self.model.encode_queries([Query(history=[self.item_id(i)])])
                idx, val = self.model.rank(batch, k)  # the query item is its history: excluded
                method = "model"
        ok = np.isfinite(val[0])
        chosen, vals = idx[0][ok], val[0][ok]
        items = [
            SimilarItem(
                item_id=iid,
                score=float(v),
                rank=r,
                title=self.catalogue.title(int(c)),
                image_url=picture_url(iid) if self.catalogue.picture(int(c)) else None,
            )
            for r, (c, iid, v) in enumerate(zip(chosen, self.item_ids(chosen), vals, strict=True), start=1)
        ]
        return SimilarResponse(item_id=self.item_id(i), method=method, items=items)

    # ------------------------------------------------------------------ feedback
    #: log one event durably, then apply it; returns the logged event and whether a bandit learned
    #: from it (:func:`lmrec.serving.feedback.record_feedback`, with this state as ``state``)
    feedback = record_feedback

    # ------------------------------------------------------------------ items
    def add_logged_items(self, logged: list[LoggedItem]) -> None:
        """Add items from the log that the model does not know yet: at start-up (before the item
        features exist) and when another worker added them (then :meth:`append_item_vectors`)."""
        assert self.model.item_vocab is not None
        self.items_applied = max([self.items_applied, *(it.seq or 0 for it in logged)])
        pending = [it for it in logged if it.item_id not in self.model.item_vocab]
        if not pending:
            return
        if not isinstance(self.model, SupportsAddItems):
            raise LmrecError(
                f"the event log {self.store} holds {len(pending)} added items but {self.model.name} cannot add items; "
                "retrain the model with them (lmrec retrain) or serve a model that can"
            )
        self.model.add_items(pl.DataFrame([catalogue_row(it.item_id, it.fields) for it in pending]))
        for it in pending:
            i = self.model.item_vocab.get(it.item_id)
            self.catalogue.grow_to(i)
            self.catalogue.add(
                it.fields.get("title"),
                it.fields.get("tags") or [],
                it.fields.get("text"),
                _with_picture(it.fields.get("fields"), it.fields),
            )

    def add_item(
        self,
        item_id: Any,
        *,
        title: str | None = None,
        text: str | None = None,
        tags: list[str] | None = None,
        fields: dict[str, Any] | None = None,
        image: str | None = None,
    ) -> int:
        """Encode and add a new item (models with ``add_items``); durable before it returns.
        ``image`` is a base64 picture (:mod:`lmrec.serving.pictures`). Returns the item's internal
        index."""
        model = self.model
        if self.follower is not None:  # another worker may have added this id
            self.follower.catch_up()
        if not isinstance(model, SupportsAddItems):
            raise Conflict(
                f"model {self.model.name} cannot add items while serving (it has no add_items); "
                "log the item and retrain, or serve a text model (content)"
            )
        assert self.model.item_vocab is not None
        vocab = self.model.item_vocab
        if vocab.kind == "int" and not (
            isinstance(item_id, int) or (isinstance(item_id, str) and item_id.strip().lstrip("-").isdigit())
        ):
            raise ServingError(f"item_id must be an integer for this model (got {item_id!r})")
        if item_id in vocab:
            raise Conflict(f"item_id {item_id!r} already exists")
        canonical = int(item_id) if vocab.kind == "int" else str(item_id)
        has_text = bool((title or "").strip() or (text or "").strip())
        if not has_text and not uses_pictures(model):
            raise ServingError(
                f"item {item_id!r} has only a picture, and model {self.model.name} does not score pictures; "
                "send a title or text, or serve a content model with modalities including 'image'"
            )
        picture = decode_picture(image, item_id) if image and image.strip() else None
        logged = {"title": title, "text": text, "tags": list(tags or []), "fields": dict(fields or {})}
        if picture is not None:
            log_path = getattr(self.store, "path", None)
            if log_path is None:
                raise ServingError(
                    "this server's event log is not a file: it has nowhere durable to keep pictures"
                )
            logged["image"] = str(store_picture(*picture, pictures_dir(Path(log_path))))
        with self.write_lock, self.lock:
            if self.follower is not None:
                self.follower.catch_up_locked()
                if canonical in vocab:
                    raise Conflict(f"item_id {item_id!r} already exists")
            old_n = self.model.n_items

            def add_to_model() -> None:  # runs once the log holds the id, before it commits
                try:
                    model.add_items(pl.DataFrame([catalogue_row(canonical, logged)]))
                except LmrecError as exc:
                    raise ServingError(f"cannot add item {item_id!r}: {exc}") from None

            try:
                self.store.add_item(LoggedItem(item_id=canonical, fields=logged), then=add_to_model)
            except DuplicateItemError:  # another worker logged it since the catch-up above
                raise Conflict(f"item_id {item_id!r} already exists") from None
            self.catalogue.grow_to(old_n)
            self.catalogue.add(title, list(tags or []), text, _with_picture(fields, logged))
            self.append_item_vectors(old_n)
            index = self.model.item_vocab.get(canonical)
        self.metrics.items_added.inc()
        return index

    def picture(self, item_id: Any) -> Path:
        """The picture file of ``item_id``; :class:`NotFound` when the item or its picture is missing."""
        i = self.item_index(item_id)
        path = self.catalogue.picture(i)
        if path is None or not path.is_file():
            raise NotFound(f"item {item_id!r} has no picture")
        return path

    # ------------------------------------------------------------------ health
    def health(self) -> HealthResponse:
        if self.follower is not None:
            self.follower.catch_up(wait=False)
        info = None
        if self.index is not None:
            info = IndexInfo(
                kind=self.index.kind,
                n_items=len(self.index),
                recall_at_10=self.index.last_recall.recall
                if self.index.last_recall
                else (1.0 if self.index.exact else None),
                search_param=self.index.search_param,
            )
        return HealthResponse(
            status="ok" if self.ready else "warming",
            ready=self.ready,
            warm_s=self.warm_s,
            model=self.model.name,
            n_users=self.model.n_history_users,
            n_items=self.model.n_items,
            events_logged=self.store.last_event_id(),
            events_replayed=self.events_replayed,
            index=info,
            policy=self.config.policy,
            uptime_s=round(time.time() - self.started, 3),
            pid=os.getpid(),
            workers=self.config.workers,
        )


def _with_picture(fields: dict[str, Any] | None, logged: dict[str, Any]) -> dict[str, Any]:
    """An added item's catalogue fields, with its stored picture as the ``image`` field."""
    return {**(fields or {}), **({"image": logged["image"]} if logged.get("image") else {})}


def _n_updates(bandit: LinearBandit) -> float:
    return float(bandit.n_updates)


__all__ = [
    "CHECKPOINT_FILE",
    "Conflict",
    "NotFound",
    "ServingConfig",
    "ServingError",
    "ServingState",
    "configure_process",
    "default_db_path",
    "read_checkpoint",
]

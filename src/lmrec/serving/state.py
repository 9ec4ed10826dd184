"""The server's in-memory state: the model, users' online histories, the index, the bandit.

:class:`ServingState` is everything the HTTP layer calls, usable without HTTP (tests, notebooks).
Its life cycle:

1. **load**: the model from its artifact (safetensors + JSON, never pickle), the catalogue, the
   event log;
2. **replay**: items added through ``POST /items`` are re-added, then every logged feedback event
   newer than the artifact's training checkpoint is applied again, so a restarted server (even
   after ``kill -9``) serves exactly what it served before;
3. **serve**: ``recommend`` (candidates → optional MMR → optional bandit → explanations → logged
   impression), ``feedback`` (durable log first, then memory), ``add_item``, ``similar``.

Candidates come from the model's own ``rank`` (:mod:`lmrec.ranking`): embedding models rank through
the server's faiss :class:`~lmrec.ranking.index.VectorIndex` (exact below the ANN threshold), set as
their ranker; other models (item-kNN, EASE, popularity) score every item and take the shared top-k.
Both paths exclude the query's history, the request's ``exclude`` list, items the user disliked, and
apply filters *before* taking the top k.

Item features for the bandit, MMR and explanations are the model's item vectors (L2-normalised) for
embedding models, and for other models a truncated SVD of the training interaction matrix (items
that co-occur get similar vectors), computed once at load.

Concurrency: one re-entrant lock guards the model's mutable history arrays and the bandit; the
work inside it is a few milliseconds of numpy. Writers (feedback, new items) are serialised by a
second lock, so the in-memory order of events equals their order in the log, and they do not hold
the model lock while the log ``fsync``s: reads go on during a durable write.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from lmrec.bandits import LinearBandit, create_policy, make_features, scale_scores
from lmrec.errors import LmrecError, UnknownIdError, UnsupportedQueryError
from lmrec.models.base import EmbeddingRecommender, Query, Recommender
from lmrec.ranking import IndexRanker, topk
from lmrec.ranking.index import IndexKind, VectorIndex, set_threads
from lmrec.rerank import cosine_matrix, explain, mmr
from lmrec.serving.catalogue import Catalogue, find_catalogue
from lmrec.serving.store import Event, EventStore, Impression, LoggedItem, event_reward, open_store

log = logging.getLogger("lmrec.serving")

#: sidecar in the artifact directory written by ``lmrec retrain``: which log entries the model has seen
CHECKPOINT_FILE = "serving.json"


class ServingConfig(BaseModel):
    """Server settings (one place; the CLI options and the env-var factory map onto it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str | None = Field(default=None, repr=False)
    #: refuse to start without an API key unless this is set (local development only)
    allow_no_api_key: bool = False
    index: IndexKind = "auto"
    ann_threshold: int = Field(default=100_000, ge=1)
    ann_target_recall: float = Field(default=0.95, gt=0, le=1)
    ef_search: int = Field(default=64, ge=1)
    nprobe: int = Field(default=16, ge=1)
    max_k: int = Field(default=100, ge=1)
    max_history: int = Field(default=1000, ge=1)
    #: candidates re-ranked by the bandit / MMR
    candidates: int = Field(default=50, ge=1, le=1000)
    policy: Literal["none", "linucb", "thompson"] = "linucb"
    #: exploration knob: LinUCB's α or Thompson's posterior scale
    explore: float = Field(default=0.5, ge=0)
    #: uniform mixing inside exploration (gives every candidate a non-zero propensity)
    epsilon: float = Field(default=0.05, ge=0, le=1)
    #: whether requests that do not say ``explore`` get exploration
    explore_by_default: bool = False
    #: default MMR diversity (0 = off)
    diversity: float = Field(default=0.0, ge=0, le=1)
    #: SVD dimensions for item features of non-embedding models
    feature_dim: int = Field(default=32, ge=2, le=256)
    faiss_threads: int = Field(default=1, ge=1)
    #: BLAS threads for the whole server process (None: leave as is), set by the server entry points
    #: (:func:`configure_process`), not by :class:`ServingState`. One is right for a server: each
    #: request is a small matrix product, and spinning BLAS threads on a busy machine cost far more
    #: than they save (a 610 x 450 SVD took 2 s with 2 OpenBLAS threads on a loaded 2-core box, 25 ms
    #: with 1).
    blas_threads: int | None = Field(default=1, ge=1)
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    seed: int = 0


class ServingError(LmrecError):
    """An error with an HTTP status; the API turns it into ``{"detail": message}``."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class NotFound(ServingError):
    status = 404


class Conflict(ServingError):
    status = 409


@dataclass
class Served:
    """One served list (what ``recommend`` returns to the HTTP layer)."""

    request_id: str
    user_id: Any
    policy: str
    explored: bool
    items: list[dict[str, Any]]


@dataclass
class _Recent:
    """What a user was recently shown: request id -> (policy, {item index: scaled base score})."""

    lists: OrderedDict[str, tuple[str, dict[int, float]]] = field(default_factory=OrderedDict)


def configure_process(config: ServingConfig) -> None:
    """Process-wide thread settings for a server: faiss OpenMP threads and BLAS threads.

    Called by ``lmrec serve`` and the uvicorn factory only: in a notebook or a test run these would
    silently slow down everything else in the process.
    """
    set_threads(config.faiss_threads)
    if config.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(config.blas_threads, user_api="blas")


def default_db_path(artifact_dir: str | os.PathLike[str]) -> Path:
    """``<artifact>.events.db`` beside the artifact directory, not inside it: ``lmrec retrain``
    swaps the artifact directory atomically and must not take the log with it."""
    p = Path(artifact_dir).resolve()
    return p.with_name(p.name + ".events.db")


def read_checkpoint(artifact_dir: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(artifact_dir) / CHECKPOINT_FILE
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LmrecError(f"{p}: cannot read serving checkpoint ({exc})") from exc
    return data if isinstance(data, dict) else {}


class ServingState:
    """Model + event log + index + bandit, with the operations the API exposes."""

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
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        assert model.item_vocab is not None
        self.catalogue = catalogue or Catalogue(model.item_vocab)
        self.embedding = isinstance(model, EmbeddingRecommender)
        self.index: VectorIndex | None = None
        self.blocked: dict[Any, set[int]] = {}
        self._recent: OrderedDict[Any, _Recent] = OrderedDict()
        self._recent_users_max = 100_000
        self.events_replayed = 0
        self.bandits: dict[str, LinearBandit] = {}
        from lmrec.serving.metrics import ServerMetrics

        self.metrics = ServerMetrics()
        self._replay_items()
        self._build_vectors()
        self._replay_events(int((checkpoint or {}).get("events_upto", 0)))
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

    def _item_ids(self, indices: np.ndarray) -> list[Any]:
        assert self.model.item_vocab is not None
        return self.model.item_vocab.external(indices)

    def known_user(self, key: Any) -> bool:
        vocab = self.model.user_vocab
        assert vocab is not None
        u = vocab.get(key)
        offsets = self.model._hist_offsets
        return u >= 0 and u + 1 < len(offsets) and offsets[u + 1] > offsets[u]

    # ------------------------------------------------------------------ vectors, index, bandits
    def _build_vectors(self) -> None:
        cfg = self.config
        if self.embedding:
            assert isinstance(self.model, EmbeddingRecommender)
            vecs = np.asarray(self.model.item_vectors(), dtype=np.float32)
            self.index = VectorIndex(
                vecs,
                kind=cfg.index,
                threshold=cfg.ann_threshold,
                ef_search=cfg.ef_search,
                nprobe=cfg.nprobe,
                seed=cfg.seed,
            )
            self.model.set_ranker(IndexRanker(self.index))
            if not self.index.exact:
                rng = np.random.default_rng(cfg.seed)
                sample = vecs[rng.choice(len(vecs), min(200, len(vecs)), replace=False)]
                rep = self.index.tune(sample, k=10, target=cfg.ann_target_recall)
                log.info(
                    "ANN %s recall@10 vs exact = %.3f (%s=%d)",
                    self.index.kind,
                    rep.recall,
                    "param",
                    rep.search_param,
                )
                if rep.recall < cfg.ann_target_recall:
                    log.warning("ANN recall %.3f below target %.2f", rep.recall, cfg.ann_target_recall)
            features = vecs
        else:
            features = _svd_item_features(self.model, cfg.feature_dim, cfg.seed)
        self.features = _normalise(features)
        dim = 1 + self.features.shape[1]
        if cfg.policy != "none":
            for name in ("linucb", "thompson"):
                self.bandits[name] = create_policy(
                    name, dim, explore=cfg.explore, epsilon=cfg.epsilon, seed=cfg.seed
                )

    def _append_item_vectors(self, old_n: int) -> None:
        n = self.model.n_items
        if n == old_n:
            return
        if self.embedding:
            assert isinstance(self.model, EmbeddingRecommender)
            new = np.asarray(self.model.item_vectors(), dtype=np.float32)[old_n:n]
            assert self.index is not None
            self.index.add(new)
        else:
            new = np.zeros((n - old_n, self.features.shape[1]), np.float32)
        self.features = np.concatenate([self.features, _normalise(new)])
        self.catalogue.grow_to(n)

    def _register_gauges(self) -> None:
        m = self.metrics
        m.gauge("lmrec_items", "Items the model can recommend.", lambda: self.model.n_items)
        m.gauge(
            "lmrec_users",
            "Users with a history (training or online).",
            lambda: len(self.model._hist_offsets) - 1,
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

    # ------------------------------------------------------------------ replay
    def _replay_items(self) -> None:
        assert self.model.item_vocab is not None
        pending = [it for it in self.store.items() if it.item_id not in self.model.item_vocab]
        if not pending:
            return
        if not hasattr(self.model, "add_items"):
            raise LmrecError(
                f"the event log {self.store} holds {len(pending)} added items but {self.model.name} cannot add items; "
                "retrain the model with them (lmrec retrain) or serve a model that can"
            )
        self.model.add_items(pl.DataFrame([_item_frame_row(it.item_id, it.fields) for it in pending]))  # type: ignore[attr-defined]
        for it in pending:
            i = self.model.item_vocab.get(it.item_id)
            self.catalogue.grow_to(i)
            self.catalogue.add(
                it.fields.get("title"),
                it.fields.get("tags") or [],
                it.fields.get("text"),
                it.fields.get("fields") or {},
            )

    def _replay_events(self, after: int) -> None:
        """Re-apply logged events: positives newer than the checkpoint extend histories (one bulk
        update per user), every negative hides its item, every event credited to a logged list
        updates the bandit."""
        t0 = time.perf_counter()
        per_user: dict[Any, tuple[list[Any], list[float]]] = {}
        n = 0
        assert self.model.item_vocab is not None
        for ev in self.store.events():
            if ev.item_id not in self.model.item_vocab:
                log.warning("event %s names unknown item %r; skipped", ev.id, ev.item_id)
                continue
            key = self.user_key(ev.user_id)
            item = self.model.item_vocab.index(ev.item_id)
            if not ev.positive:
                self.blocked.setdefault(key, set()).add(item)
            elif ev.id is not None and ev.id > after:
                items, weights = per_user.setdefault(key, ([], []))
                items.append(ev.item_id)
                weights.append(_history_weight(ev))
            if ev.request_id and self.bandits:
                imp = self.store.get_impression(ev.request_id)
                # only a list shown to this very user can be credited (a client may send any id)
                if imp is not None and imp.user_id == key:
                    self._bandit_update(
                        imp.policy,
                        imp.candidates,
                        imp.candidate_scores,
                        ev.item_id,
                        event_reward(ev.event, ev.weight),
                    )
            n += 1
        for key, (items, weights) in per_user.items():
            self.model.add_interactions(key, items, weights)
        self.events_replayed = n
        if n:
            log.info("replayed %d logged events in %.2fs", n, time.perf_counter() - t0)

    def _bandit_update(
        self, policy: str, candidates: list[Any], scaled: list[float], item_id: Any, reward: float
    ) -> bool:
        bandit = self.bandits.get(policy)
        targets = [bandit] if bandit is not None else list(self.bandits.values())
        try:
            pos = [repr(c) for c in candidates].index(repr(item_id))
        except ValueError:
            return False
        idx = self.model.item_vocab.get(item_id) if self.model.item_vocab is not None else -1
        if idx < 0 or idx >= len(self.features):
            return False
        x = np.concatenate([[float(scaled[pos])], self.features[idx].astype(np.float64)])
        for b in targets:
            b.update(x, reward)
            self.metrics.bandit_updates.inc(policy=b.name)
        return True

    # ------------------------------------------------------------------ recommend
    def recommend(
        self,
        *,
        user_id: Any = None,
        history: list[Any] | None = None,
        text: str | None = None,
        k: int = 10,
        exclude: list[Any] | None = None,
        exclude_seen: bool = True,
        filters: dict[str, Any] | None = None,
        explore: bool | None = None,
        policy: str | None = None,
        diversity: float | None = None,
        with_explanations: bool = True,
    ) -> Served:
        cfg = self.config
        if not 1 <= k <= cfg.max_k:
            raise ServingError(f"k must be between 1 and {cfg.max_k}, got {k}")
        if history is not None and len(history) > cfg.max_history:
            raise ServingError(f"history has {len(history)} items; the limit is {cfg.max_history}")
        if text and "text" not in self.model.supports:
            raise ServingError(
                f"model {self.model.name} cannot serve text queries (supports: {', '.join(sorted(self.model.supports))})"
            )
        explore = cfg.explore_by_default if explore is None else explore
        policy = policy or (cfg.policy if cfg.policy != "none" else None)
        if explore and policy is None:
            raise ServingError(
                "exploration was asked for but the server runs without a bandit policy (--policy none)"
            )
        diversity = cfg.diversity if diversity is None else diversity
        filters = filters or {}
        key = self.user_key(user_id) if user_id is not None else None
        pool_size = max(k, cfg.candidates) if (explore or diversity > 0) else k
        assert self.model.item_vocab is not None
        with self._lock:
            known = key is not None and self.known_user(key)
            if key is not None and not known and not history and not text:
                raise NotFound(
                    f"unknown user_id {user_id!r}: no history yet; send history or text, or feedback first"
                )
            query = Query(
                user_id=key if known else None, history=list(history) if history else None, text=text or None
            )
            try:
                batch = self.model.encode_queries([query])
            except UnknownIdError as exc:
                raise NotFound(str(exc)) from None
            except UnsupportedQueryError as exc:
                raise ServingError(str(exc)) from None
            seq = batch.sequences[0]
            banned = [np.zeros(0, np.int64)]
            if exclude:
                banned.append(self.model.item_vocab.indices(exclude, missing="drop"))
            if key is not None and key in self.blocked:
                banned.append(np.fromiter(self.blocked[key], dtype=np.int64))
            ban = np.unique(np.concatenate(banned))
            allowed = self._filter_mask(filters)
            # the query's history (``seq``) is excluded by the model through exclude_seen
            ids, scores = self.model.rank(
                batch, pool_size, exclude_seen=exclude_seen, exclude=ban, allowed=allowed
            )
        ok = np.isfinite(scores[0]) & (ids[0] >= 0)
        pool, pool_scores = ids[0][ok], scores[0][ok].astype(np.float64)
        return self._finish(
            key, user_id, pool, pool_scores, seq, text, k, explore, policy, diversity, with_explanations
        )

    def _filter_mask(self, filters: dict[str, Any]) -> np.ndarray | None:
        allowed = None
        if filters.get("item_ids") is not None:
            assert self.model.item_vocab is not None
            allowed = np.zeros(self.model.n_items, dtype=bool)
            allowed[self.model.item_vocab.indices(filters["item_ids"], missing="drop")] = True
        try:
            tag_mask = self.catalogue.mask(
                tags_any=filters.get("tags_any"),
                tags_all=filters.get("tags_all"),
                tags_none=filters.get("tags_none"),
                where=filters.get("where"),
            )
        except ValueError as exc:
            raise ServingError(str(exc)) from None
        if tag_mask is not None:
            n = self.model.n_items
            if len(tag_mask) != n:  # items the catalogue has no row for pass no catalogue filter
                padded = np.zeros(n, dtype=bool)
                padded[: min(n, len(tag_mask))] = tag_mask[:n]
                tag_mask = padded
            allowed = tag_mask if allowed is None else allowed & tag_mask
        return allowed

    def _finish(
        self,
        key: Any,
        user_id: Any,
        pool: np.ndarray,
        pool_scores: np.ndarray,
        history: np.ndarray,
        text: str | None,
        k: int,
        explore: bool,
        policy: str | None,
        diversity: float,
        with_explanations: bool,
    ) -> Served:
        request_id = uuid.uuid4().hex
        label = "model"
        order = np.arange(min(k, len(pool)))
        props = np.ones(len(order))
        candidates, cand_scaled = pool[:k], scale_scores(pool_scores)[:k] if len(pool) else np.zeros(0)
        if len(pool) and diversity > 0:
            n_keep = len(pool) if explore else k
            pos = mmr(
                pool_scores, n_keep, similarity=cosine_matrix(self.features[pool]), lambda_=1.0 - diversity
            )
            pool, pool_scores = pool[pos], pool_scores[pos]
            order = np.arange(min(k, len(pool)))
            label = "mmr"
            candidates, cand_scaled = pool[:k], scale_scores(pool_scores)[:k]
        if len(pool) and explore and policy is not None:
            bandit = self.bandits[policy]
            X = make_features(pool_scores, self.features[pool])
            with self._lock:
                ranking = bandit.rank(X, k, explore=True)
            order, props = ranking.order, ranking.propensities
            label = policy
            candidates, cand_scaled = pool, X[:, 0]
        chosen = pool[order]
        ids = self._item_ids(chosen)
        because = (
            explain(
                chosen,
                history,
                self.features,
                tags=self.catalogue.tags,
                tag_idf=self.catalogue.idf,
                item_terms=self.catalogue.terms,
                query_text=text,
            )
            if with_explanations
            else None
        )
        items = []
        for rank, (j, item_idx, item_id) in enumerate(zip(order, chosen, ids, strict=True), start=1):
            entry: dict[str, Any] = {
                "item_id": item_id,
                "score": float(pool_scores[j]),
                "rank": rank,
                "propensity": float(props[rank - 1]),
                "title": self.catalogue.title(int(item_idx)),
            }
            if because is not None:
                b = because[rank - 1]
                entry["because"] = {
                    "items": [
                        {
                            "item_id": self.item_id(h),
                            "similarity": round(s, 4),
                            "title": self.catalogue.title(h),
                        }
                        for h, s in b.items
                    ],
                    "keywords": b.keywords,
                }
            items.append(entry)
        scaled_map = {int(c): float(s) for c, s in zip(candidates, cand_scaled, strict=True)}
        self._remember(key, request_id, label, scaled_map)
        self.store.log_impression(
            _make_impression(
                request_id,
                key if key is not None else user_id,
                ids,
                props,
                self._item_ids(np.asarray(candidates)),
                cand_scaled,
                label,
            )
        )
        self.metrics.recommendations.inc(policy=label)
        return Served(
            request_id=request_id, user_id=user_id, policy=label, explored=label in self.bandits, items=items
        )

    def _remember(self, key: Any, request_id: str, policy: str, scaled: dict[int, float]) -> None:
        if key is None:
            return
        with self._lock:
            rec = self._recent.pop(key, None) or _Recent()
            rec.lists[request_id] = (policy, scaled)
            while len(rec.lists) > 20:
                rec.lists.popitem(last=False)
            self._recent[key] = rec
            while len(self._recent) > self._recent_users_max:
                self._recent.popitem(last=False)

    # ------------------------------------------------------------------ similar
    def similar(self, item_id: Any, k: int = 10) -> tuple[str, list[dict[str, Any]]]:
        if not 1 <= k <= self.config.max_k:
            raise ServingError(f"k must be between 1 and {self.config.max_k}, got {k}")
        i = self.item_index(item_id)
        with self._lock:
            if self.embedding:
                sims = self.features @ self.features[i]
                sims[i] = -np.inf
                idx, val = topk(sims[None, :].astype(np.float32), k)
                method = "item-vectors"
            else:
                batch = self.model.encode_queries([Query(history=[self.item_id(i)])])
                idx, val = self.model.rank(batch, k)  # the query item is its history: excluded
                method = "model"
        ok = np.isfinite(val[0])
        chosen, vals = idx[0][ok], val[0][ok]
        return method, [
            {"item_id": iid, "score": float(v), "rank": r, "title": self.catalogue.title(int(c))}
            for r, (c, iid, v) in enumerate(zip(chosen, self._item_ids(chosen), vals, strict=True), start=1)
        ]

    # ------------------------------------------------------------------ feedback
    def feedback(
        self,
        *,
        user_id: Any,
        item_id: Any,
        event: str = "click",
        weight: float = 1.0,
        timestamp: float | None = None,
        request_id: str | None = None,
    ) -> tuple[Event, bool]:
        """Log the event durably, then apply it: a positive event extends the user's history (so
        the next list excludes the item and reflects it), a negative one hides the item; if the
        item was in a list recently shown to the user, the bandit learns from it."""
        key = self.user_key(user_id)
        item_idx = self.item_index(item_id)
        canonical_item = self.item_id(item_idx)
        ts = time.time() if timestamp is None else float(timestamp)
        # writers are serialised so that the in-memory order equals the log order (replay then
        # rebuilds exactly this state); the model lock is not held during the fsync, so reads go on
        with self._write_lock:
            with self._lock:
                rid, scaled, served_by = self._credit(key, item_idx, request_id)
            ev = self.store.append(
                Event(
                    user_id=key,
                    item_id=canonical_item,
                    event=event,
                    weight=weight,
                    timestamp=ts,
                    request_id=rid,
                )
            )
            with self._lock:
                if ev.positive:
                    self.model.add_interactions(key, [canonical_item], [_history_weight(ev)])
                else:
                    self.blocked.setdefault(key, set()).add(item_idx)
                updated = False
                if scaled is not None and self.bandits:
                    targets = (
                        [self.bandits[served_by]]
                        if served_by in self.bandits
                        else list(self.bandits.values())
                    )
                    x = np.concatenate([[scaled], self.features[item_idx].astype(np.float64)])
                    for b in targets:
                        b.update(x, event_reward(event, weight))
                        self.metrics.bandit_updates.inc(policy=b.name)
                    updated = True
        self.metrics.feedback.inc(event=event)
        return ev, updated

    def _credit(
        self, key: Any, item_idx: int, request_id: str | None
    ) -> tuple[str | None, float | None, str]:
        """Which recent list of this user the event answers (the named one, else the newest list
        that showed the item), the item's scaled score in it and the policy that served it."""
        rec = self._recent.get(key)
        if rec is None:
            return request_id, None, ""
        if request_id is not None:
            served_by, scaled = rec.lists.get(request_id, ("", {}))
            return request_id, scaled.get(item_idx), served_by
        for rid in reversed(rec.lists):
            served_by, scaled = rec.lists[rid]
            if item_idx in scaled:
                return rid, scaled[item_idx], served_by
        return None, None, ""

    # ------------------------------------------------------------------ items
    def add_item(
        self,
        item_id: Any,
        *,
        title: str | None = None,
        text: str | None = None,
        tags: list[str] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> int:
        """Encode and add a new item (models with ``add_items``); durable before it returns."""
        if not hasattr(self.model, "add_items"):
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
        logged = {"title": title, "text": text, "tags": list(tags or []), "fields": dict(fields or {})}
        with self._write_lock, self._lock:
            old_n = self.model.n_items
            try:
                self.model.add_items(pl.DataFrame([_item_frame_row(canonical, logged)]))  # type: ignore[attr-defined]
            except LmrecError as exc:
                raise ServingError(f"cannot add item {item_id!r}: {exc}") from None
            self.store.add_item(LoggedItem(item_id=canonical, fields=logged))
            self.catalogue.grow_to(old_n)
            self.catalogue.add(title, list(tags or []), text, dict(fields or {}))
            self._append_item_vectors(old_n)
            index = self.model.item_vocab.get(canonical)
        self.metrics.items_added.inc()
        return index

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        assert self.model.user_vocab is not None
        info = None
        if self.index is not None:
            info = {
                "kind": self.index.kind,
                "n_items": len(self.index),
                "recall_at_10": self.index.last_recall.recall
                if self.index.last_recall
                else (1.0 if self.index.exact else None),
                "search_param": self.index.search_param,
            }
        return {
            "status": "ok",
            "model": self.model.name,
            "n_users": len(self.model._hist_offsets) - 1,
            "n_items": self.model.n_items,
            "events_logged": self.store.last_event_id(),
            "events_replayed": self.events_replayed,
            "index": info,
            "policy": self.config.policy,
            "uptime_s": round(time.time() - self.started, 3),
        }


# ---------------------------------------------------------------------- helpers
def _n_updates(bandit: LinearBandit) -> float:
    return float(bandit.n_updates)


def _history_weight(ev: Event) -> float:
    """What a positive event adds to the history: the rating for ratings, else its weight."""
    return float(ev.weight) if ev.weight > 0 else 1.0


def _item_frame_row(item_id: Any, logged: dict[str, Any]) -> dict[str, Any]:
    """The one-row frame handed to ``model.add_items``: catalogue-style columns."""
    row: dict[str, Any] = {"item_id": item_id}
    if logged.get("title"):
        row["title"] = logged["title"]
    if logged.get("text"):
        row["description"] = logged["text"]
    if logged.get("tags"):
        row["genres"] = "|".join(logged["tags"])
    for k, v in (logged.get("fields") or {}).items():
        row.setdefault(k, v)
    return row


def _make_impression(
    request_id: str,
    user_id: Any,
    items: list[Any],
    props: np.ndarray,
    candidates: list[Any],
    scaled: np.ndarray,
    policy: str,
) -> Impression:
    return Impression(
        request_id=request_id,
        user_id=user_id,
        items=items,
        propensities=[float(p) for p in props],
        candidates=candidates,
        candidate_scores=[float(s) for s in scaled],
        policy=policy,
        served_at=time.time(),
    )


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _svd_item_features(model: Recommender, dim: int, seed: int) -> np.ndarray:
    """Item factors from a truncated SVD of the (binarised) training matrix: co-occurring items end
    up close, which is what MMR, explanations and the bandit need from "item embeddings"."""
    from scipy.sparse.linalg import svds

    x = model.train_history.copy().astype(np.float32)
    n_users, n_items = x.shape
    if x.nnz == 0 or min(n_users, n_items) < 3:
        return np.zeros((n_items, 1), np.float32)
    x.data[:] = 1.0
    k = int(min(dim, min(n_users, n_items) - 1))
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(n_users, n_items)).astype(np.float32)
    _, s, vt = svds(x, k=k, v0=v0, random_state=seed)
    return (vt.T * np.sqrt(s)[None, :]).astype(np.float32)

"""The recommend path as a pipeline of stages: candidates → filters → model ranking → rerankers →
explanations.

Each stage is a plain function or a small class with explicit inputs, usable (and tested) on its own;
:class:`RecommendPipeline` wires them to a :class:`~lmrec.serving.state.ServingState`. Two small
values travel between the stages:

* :class:`RequestContext`: the request, validated and resolved (the user key, the encoded query,
  ``k``, how many candidates the rerankers need, exploration, diversity);
* :class:`Ranked`: a candidate pool in its current order, the base model's score of each candidate,
  the list taken from it (positions into the pool) with each slot's propensity, and which stage
  ordered it. Every reranker takes a :class:`Ranked` and returns a new one.

1. **candidates** (:func:`build_context`): checks limits, resolves the query (a known user, a history,
   text, a mix) into the model's :class:`~lmrec.models.base.QueryBatch`, and sizes the pool: ``k``,
   or ``ServingConfig.candidates`` when MMR or a bandit will choose from it;
2. **filters** (:func:`apply_filters`): the request's ``exclude`` list and items the user disliked become
   excluded indices, the business filters (allow-list, tags, catalogue fields) a boolean mask; both
   apply *before* the top-k is taken, so a filter never leaves the list short;
3. **model ranking** (:func:`model_ranking`): the model's own ``rank`` (:mod:`lmrec.ranking`), which
   also drops the query's history when ``exclude_seen``;
4. **rerankers**: :class:`MMRReranker` (diversity) then :class:`BanditReranker` (exploration; logs
   each slot's propensity);
5. **explanations** (:func:`~lmrec.serving.explanations.explanations`): the response items, with
   ``because`` evidence.

:meth:`RecommendPipeline.recommend` then logs the impression and remembers the list, so that
feedback on it can be credited (:mod:`lmrec.serving.feedback`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import numpy as np

from lmrec.bandits import LinearBandit, make_features, scale_scores
from lmrec.errors import FilterValueError, UnknownIdError, UnsupportedQueryError
from lmrec.events import Impression
from lmrec.models.base import Query, QueryBatch, Recommender
from lmrec.models.query import UnknownIds
from lmrec.rerank import cosine_matrix, mmr
from lmrec.serving.catalogue import Catalogue
from lmrec.serving.errors import InvalidField, NotFound, ServingError
from lmrec.serving.explanations import explanations
from lmrec.serving.schemas import IdWarning, RecommendResponse

if TYPE_CHECKING:
    from lmrec.serving.config import ServingConfig
    from lmrec.serving.state import ServingState


@dataclass(frozen=True)
class RequestContext:
    """One recommend request, validated and resolved: what every stage reads."""

    #: the user id as the client sent it (echoed in the response)
    user_id: Any
    #: the user id in the model vocabulary's type; None for anonymous (history/text) queries
    key: Any
    batch: QueryBatch
    k: int
    #: how many candidates the model ranks: ``k``, or more when a reranker chooses among them
    pool_size: int
    exclude_seen: bool = True
    exclude: Sequence[Any] = ()
    filters: dict[str, Any] = field(default_factory=dict)
    explore: bool = False
    #: the bandit that explores (None: no exploration)
    policy: str | None = None
    diversity: float = 0.0
    explain: bool = True
    text: str | None = None
    #: unknown ids are a 404 (True) or left out and reported (False)
    strict: bool = False
    #: None, or "popularity" when nothing in the query was known
    fallback: str | None = None
    #: ids of the query left out (lenient mode)
    warnings: tuple[IdWarning, ...] = ()

    @property
    def history(self) -> np.ndarray:
        """The query's history as item indices (the user's history plus the request's)."""
        return self.batch.sequences[0]


@dataclass(frozen=True)
class Exclusions:
    """What the filters stage hands the model ranking: items never to return, and an allow mask."""

    exclude: np.ndarray
    allowed: np.ndarray | None = None
    #: unknown ``exclude`` / ``filters.item_ids`` ids left out (lenient mode)
    warnings: tuple[IdWarning, ...] = ()


@dataclass(frozen=True)
class Ranked:
    """A candidate pool in its current order and the list taken from it."""

    #: candidate item indices, in the order of the stage that produced them
    pool: np.ndarray
    #: the base model's score of each candidate (float64; reranking never changes scores)
    scores: np.ndarray
    #: the served list: positions into ``pool``, slot by slot
    order: np.ndarray
    #: probability that the policy chose each slot's item (1 for deterministic stages)
    propensities: np.ndarray
    #: what ordered the list: model, mmr, or a bandit's name
    policy: str = "model"
    #: how many leading pool entries are logged as the list's candidates
    n_logged: int = 0

    @property
    def items(self) -> np.ndarray:
        """The served item indices, in slot order."""
        return self.pool[self.order]

    def logged_candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """(candidates, scaled base scores) to log with the impression: the first ``n_logged`` of
        the pool, with scores min-max scaled over the whole pool (the bandits' first feature)."""
        if not len(self.pool):
            return self.pool[:0], np.zeros(0)
        return self.pool[: self.n_logged], scale_scores(self.scores)[: self.n_logged]


class RecommendOptions(TypedDict, total=False):
    """The keywords of a recommend request other than ``with_explanations``
    (:meth:`RecommendPipeline.recommend`, :meth:`~lmrec.serving.state.ServingState.recommend`);
    each is optional: :func:`build_context` gives the defaults and checks the values."""

    user_id: Any
    history: list[Any] | None
    text: str | None
    k: int
    exclude: list[Any] | None
    exclude_seen: bool
    filters: dict[str, Any] | None
    explore: bool | None
    policy: str | None
    diversity: float | None
    strict: bool | None


def _top(pool: np.ndarray, scores: np.ndarray, k: int, policy: str) -> Ranked:
    """The first ``k`` of an ordered pool, each slot certain."""
    n = min(k, len(pool))
    return Ranked(pool, scores, np.arange(n), np.ones(n), policy=policy, n_logged=k)


# ---------------------------------------------------------------------- 1. candidates
def build_context(
    model: Recommender,
    config: ServingConfig,
    *,
    user_id: Any = None,
    user_key: Callable[[Any], Any] | None = None,
    history: Sequence[Any] | None = None,
    text: str | None = None,
    k: int = 10,
    exclude: Sequence[Any] | None = None,
    exclude_seen: bool = True,
    filters: dict[str, Any] | None = None,
    explore: bool | None = None,
    policy: str | None = None,
    diversity: float | None = None,
    explain: bool = True,
    strict: bool | None = None,
) -> RequestContext:
    """Validate a request against the server's limits and resolve its query.

    ``user_key`` turns the client's ``user_id`` into the vocabulary's type (default: as given; an id
    it refuses is an unknown user). Unknown ids follow the model's policy
    (:mod:`lmrec.models.query`): ``strict`` (default ``config.strict_ids``) makes them a
    :class:`NotFound` (404); otherwise they are left out, reported in ``warnings``, and a query with
    nothing known gets the popularity ``fallback``. Other errors are :class:`ServingError` (400).
    """
    if not 1 <= k <= config.max_k:
        raise ServingError(f"k must be between 1 and {config.max_k}, got {k}")
    if history is not None and len(history) > config.max_history:
        raise ServingError(f"history has {len(history)} items; the limit is {config.max_history}")
    if history is not None and not len(history):
        raise ServingError("history is empty: give item ids, oldest first, or leave history out")
    if text and "text" not in model.supports:
        why = getattr(model, "unsupported_reason", {}).get("text")
        raise ServingError(
            f"model {model.name} cannot serve text queries (supports: {', '.join(sorted(model.supports))})"
            + (f": {why}" if why else "")
        )
    strict = config.strict_ids if strict is None else strict
    if policy == "rl":
        if config.rl_policy is None:
            raise ServingError("policy rl was asked for but the server runs without one (--rl-policy)")
        explore = True if explore is None else explore  # the RL policy fills the list from the pool
    explore = config.explore_by_default if explore is None else explore
    policy = policy or (config.policy if config.policy != "none" else None)
    if explore and policy is None:
        raise ServingError(
            "exploration was asked for but the server runs without a bandit policy (--policy none)"
        )
    diversity = config.diversity if diversity is None else diversity
    key = None
    if user_id is not None:
        try:
            key = user_key(user_id) if user_key is not None else user_id
        except ServingError:  # cannot be in the vocabulary (text for integer ids): an unknown user
            key = None
    query = Query(
        user_id=None if user_id is None else (user_id if key is None else key),
        history=list(history) if history else None,
        text=text or None,
    )
    try:
        batch = model.encode_queries([query], strict=strict)
    except UnknownIdError as exc:
        hint = ": no history yet; send history or text, or feedback first" if exc.kind == "user_id" else ""
        raise NotFound(f"{exc}{hint}") from None
    except UnsupportedQueryError as exc:
        raise ServingError(str(exc)) from None
    return RequestContext(
        user_id=user_id,
        key=key,
        batch=batch,
        k=k,
        pool_size=max(k, config.candidates) if (explore or diversity > 0) else k,
        exclude_seen=exclude_seen,
        exclude=tuple(exclude or ()),
        filters=dict(filters or {}),
        explore=bool(explore),
        policy=policy if explore else None,
        diversity=float(diversity),
        explain=explain,
        text=text,
        strict=strict,
        fallback=batch.fallback[0] if batch.fallback else None,
        warnings=tuple(_id_warning(u) for u in batch.unknown),
    )


def _id_warning(unknown: UnknownIds, field: str | None = None) -> IdWarning:
    """The response's report of ids left out (the first 100 of them)."""
    msg = unknown.message().replace(" of query 0", "")
    return IdWarning(field=field or unknown.field, ids=list(unknown.ids[:100]), message=msg)


def _known_items(
    model: Recommender, ids: Sequence[Any], field: str, strict: bool, warnings: list[IdWarning]
) -> np.ndarray:
    """Indices of the known ``ids``; the unknown ones are a 404 (``strict``) or left out and
    reported in ``warnings``."""
    assert model.item_vocab is not None
    idx = model.item_vocab.indices(list(ids), missing="mark")
    if (idx < 0).any():
        bad = [i for i, j in zip(ids, idx, strict=True) if j < 0]
        if strict:
            raise NotFound(str(UnknownIdError(f"item_id in {field}", bad)))
        warnings.append(_id_warning(UnknownIds(-1, field, bad)))
    return idx[idx >= 0]


# ---------------------------------------------------------------------- 2. filters
def apply_filters(
    model: Recommender, catalogue: Catalogue, ctx: RequestContext, blocked: set[int] | None = None
) -> Exclusions:
    """Excluded item indices (the request's ``exclude`` list and the user's ``blocked`` items) and
    the allow mask of the request's filters (None: every item). Unknown ids in ``exclude`` and
    ``filters.item_ids`` follow ``ctx.strict``: a 404, or left out and reported."""
    banned = [np.zeros(0, np.int64)]
    warnings: list[IdWarning] = []
    if ctx.exclude:
        banned.append(_known_items(model, ctx.exclude, "exclude", ctx.strict, warnings))
    if blocked:
        banned.append(np.fromiter(blocked, dtype=np.int64))
    allowed = filter_mask(model, catalogue, ctx.filters, strict=ctx.strict, warnings=warnings)
    return Exclusions(np.unique(np.concatenate(banned)), allowed, tuple(warnings))


def filter_mask(
    model: Recommender,
    catalogue: Catalogue,
    spec: dict[str, Any],
    *,
    strict: bool = False,
    warnings: list[IdWarning] | None = None,
) -> np.ndarray | None:
    """Boolean mask over the model's items that pass an allow-list and catalogue filters. Unknown
    allow-listed ids are a 404 (``strict``) or left out and reported in ``warnings``; a ``where``
    value of the wrong type is an :class:`InvalidField` (422) naming the field."""
    n = model.n_items
    allowed = None
    if spec.get("item_ids") is not None:
        allowed = np.zeros(n, dtype=bool)
        found = [] if warnings is None else warnings
        allowed[_known_items(model, spec["item_ids"], "filters.item_ids", strict, found)] = True
    try:
        tag_mask = catalogue.mask(
            tags_any=spec.get("tags_any"),
            tags_all=spec.get("tags_all"),
            tags_none=spec.get("tags_none"),
            where=spec.get("where"),
        )
    except FilterValueError as exc:
        raise InvalidField(str(exc), loc=("body", "filters", "where", exc.field)) from None
    except ValueError as exc:
        raise ServingError(str(exc)) from None
    if tag_mask is not None:
        if len(tag_mask) != n:  # items the catalogue has no row for pass no catalogue filter
            padded = np.zeros(n, dtype=bool)
            padded[: min(n, len(tag_mask))] = tag_mask[:n]
            tag_mask = padded
        allowed = tag_mask if allowed is None else allowed & tag_mask
    return allowed


# ---------------------------------------------------------------------- 3. model ranking
def model_ranking(model: Recommender, ctx: RequestContext, ex: Exclusions) -> Ranked:
    """The model's top ``ctx.pool_size`` (history excluded when ``exclude_seen``), as a pool whose
    first ``k`` form the list."""
    ids, scores = model.rank(
        ctx.batch, ctx.pool_size, exclude_seen=ctx.exclude_seen, exclude=ex.exclude, allowed=ex.allowed
    )
    return ranked_pool(ctx, ids, scores)


def ranked_pool(ctx: RequestContext, ids: np.ndarray, scores: np.ndarray) -> Ranked:
    """A one-query ``rank`` result as the pool of :func:`model_ranking`."""
    ok = np.isfinite(scores[0]) & (ids[0] >= 0)
    return _top(ids[0][ok], scores[0][ok].astype(np.float64), ctx.k, "model")


# ---------------------------------------------------------------------- 4. rerankers
@dataclass(frozen=True)
class MMRReranker:
    """Maximal marginal relevance over item features: ``diversity`` 0 is off, 1 diversity only.

    ``keep_pool`` re-orders the whole pool (a bandit chooses from it next); otherwise only the first
    ``k`` are chosen."""

    diversity: float

    def rerank(self, ranked: Ranked, features: np.ndarray, k: int, *, keep_pool: bool = False) -> Ranked:
        if self.diversity <= 0 or not len(ranked.pool):
            return ranked
        pos = mmr(
            ranked.scores,
            len(ranked.pool) if keep_pool else k,
            similarity=cosine_matrix(features[ranked.pool]),
            lambda_=1.0 - self.diversity,
        )
        return _top(ranked.pool[pos], ranked.scores[pos], k, "mmr")


@dataclass(frozen=True)
class BanditReranker:
    """A contextual bandit fills the ``k`` slots from the whole pool, exploring; every candidate is
    logged with its scaled score, so that feedback and offline replay know its context."""

    bandit: LinearBandit
    name: str
    #: guards the bandit's state and random generator (shared with its updates)
    lock: AbstractContextManager[Any] | None = None

    def rerank(self, ranked: Ranked, features: np.ndarray, k: int) -> Ranked:
        if not len(ranked.pool):
            return ranked
        X = make_features(ranked.scores, features[ranked.pool])
        with self.lock if self.lock is not None else nullcontext():
            choice = self.bandit.rank(X, k, explore=True)
        return replace(
            ranked,
            order=choice.order,
            propensities=choice.propensities,
            policy=self.name,
            n_logged=len(ranked.pool),
        )


# ---------------------------------------------------------------------- wiring
class RecommendPipeline:
    """The stages over a serving state's model, catalogue, item features and bandits."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    def recommend(
        self,
        *,
        with_explanations: bool = True,
        request_id: str | None = None,
        **request: Unpack[RecommendOptions],
    ) -> RecommendResponse:
        """One request through the stages; ``request`` as :func:`build_context` takes it.
        ``request_id`` names the list (default: a fresh one)."""
        out = self.recommend_many(
            [{"with_explanations": with_explanations, "request_id": request_id, **request}]
        )
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]

    def recommend_many(self, requests: list[dict[str, Any]]) -> list[RecommendResponse | Exception]:
        """Each request's answer or error; the model scores all in one call (:mod:`.batching`)."""
        from lmrec.serving.batching import rank_many

        st = self.state
        if st.follower is not None:  # what the other workers logged (:mod:`lmrec.serving.sync`)
            st.follower.catch_up(wait=False)
        done: dict[int, RecommendResponse | Exception] = {}
        staged: list[tuple[int, RequestContext, Exclusions, str | None]] = []
        # the model's history arrays change under feedback: resolve and rank under the lock
        with st.lock:
            for i, req in enumerate(requests):
                opts = dict(req)
                explain, rid = opts.pop("with_explanations", True), opts.pop("request_id", None)
                try:
                    ctx = build_context(st.model, st.config, user_key=st.user_key, explain=explain, **opts)
                    ex = apply_filters(st.model, st.catalogue, ctx, st.blocked.get(ctx.key))
                except Exception as exc:
                    done[i] = exc
                    continue
                staged.append((i, ctx, ex, rid))
            lists = rank_many(
                st.model,
                [c.batch for _, c, _, _ in staged],
                [c.pool_size for _, c, _, _ in staged],
                [c.exclude_seen for _, c, _, _ in staged],
                [e.exclude for _, _, e, _ in staged],
                [e.allowed for _, _, e, _ in staged],
            )
        for (i, ctx, ex, rid), (ids, scores) in zip(staged, lists, strict=True):
            try:
                ranked = ranked_pool(ctx, ids, scores)
                if ex.warnings:
                    ctx = replace(ctx, warnings=ctx.warnings + ex.warnings)
                done[i] = self.respond(self.rerank(ranked, ctx), ctx, rid)
            except Exception as exc:
                done[i] = exc
        return [done[i] for i in range(len(requests))]

    def rerank(self, ranked: Ranked, ctx: RequestContext) -> Ranked:
        """MMR (when ``ctx.diversity``), then the bandit (when ``ctx.policy``)."""
        st = self.state
        ranked = MMRReranker(ctx.diversity).rerank(ranked, st.features, ctx.k, keep_pool=ctx.explore)
        if ctx.policy == "rl" and st.rl is not None:
            with st.lock:  # the model's histories and popularity change under feedback
                history, popularity = ctx.batch.sequences[0], st.model.popularity()
            ranked = st.rl.rerank(ranked, st.features, ctx.k, history=history, popularity=popularity)
        elif ctx.policy is not None:
            ranked = BanditReranker(st.bandits[ctx.policy], ctx.policy, st.lock).rerank(
                ranked, st.features, ctx.k
            )
        return ranked

    def respond(
        self, ranked: Ranked, ctx: RequestContext, request_id: str | None = None
    ) -> RecommendResponse:
        """Explanations, then the impression logged and the list remembered for feedback credit."""
        st = self.state
        request_id = request_id or uuid.uuid4().hex
        items = explanations(ranked, ctx, st.features, st.catalogue, st.item_ids)
        cands, scaled = ranked.logged_candidates()
        if ctx.key is not None:
            with st.lock:
                st.recent.remember(ctx.key, request_id, ranked.policy, cands, scaled)
        st.store.log_impression(
            Impression(
                request_id=request_id,
                user_id=ctx.key,
                items=[it.item_id for it in items],
                propensities=np.asarray(ranked.propensities, np.float64).tolist(),
                candidates=st.item_ids(cands),
                candidate_scores=np.asarray(scaled, np.float64).tolist(),
                policy=ranked.policy,
                served_at=time.time(),
            )
        )
        st.metrics.recommendations.labels(policy=ranked.policy).inc()
        return RecommendResponse(
            request_id=request_id,
            user_id=ctx.user_id,
            model=st.model.name,
            policy=ranked.policy,
            explored=ranked.policy in st.bandits or ranked.policy == "rl",
            fallback="popularity" if ctx.fallback else None,
            warnings=list(ctx.warnings),
            items=items,
        )


__all__ = [
    "BanditReranker",
    "Exclusions",
    "MMRReranker",
    "Ranked",
    "RecommendOptions",
    "RecommendPipeline",
    "RequestContext",
    "apply_filters",
    "build_context",
    "explanations",
    "filter_mask",
    "model_ranking",
]

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
   apply *before* the top-k is taken, so a filter never leaves the list short (stages 1 and 2 are
   in :mod:`lmrec.serving.request`);
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
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np

from lmrec.bandits import LinearBandit, make_features, scale_scores
from lmrec.events import Impression
from lmrec.models.base import Recommender
from lmrec.rerank import cosine_matrix, mmr
from lmrec.serving.explanations import explanations
from lmrec.serving.request import (
    Exclusions,
    RecommendOptions,
    RequestContext,
    apply_filters,
    build_context,
    filter_mask,
)
from lmrec.serving.schemas import RecommendResponse

if TYPE_CHECKING:
    from lmrec.serving.state import ServingState


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


def _top(pool: np.ndarray, scores: np.ndarray, k: int, policy: str) -> Ranked:
    """The first ``k`` of an ordered pool, each slot certain."""
    n = min(k, len(pool))
    return Ranked(pool, scores, np.arange(n), np.ones(n), policy=policy, n_logged=k)


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

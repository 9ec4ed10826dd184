"""The recommend pipeline stage by stage: candidates, filters, model ranking, rerankers, explanations,
and the one bandit update path."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import lmrec.serving.feedback as feedback_module
import lmrec.serving.sync as sync_module
from lmrec.bandits import LinUCB, make_features
from lmrec.models.ease import EASE
from lmrec.serving import pipeline as pl_module
from lmrec.serving.catalogue import Catalogue
from lmrec.serving.config import ServingConfig
from lmrec.serving.errors import NotFound, ServingError
from lmrec.serving.feedback import RecentLists, update_bandits
from lmrec.serving.pipeline import (
    BanditReranker,
    Exclusions,
    MMRReranker,
    Ranked,
    apply_filters,
    build_context,
    explanations,
    model_ranking,
)
from lmrec.serving.schemas import RecommendResponse
from lmrec.serving.state import ServingState
from lmrec.serving.store import open_store
from lmrec.testing import make_checkerboard

N_ITEMS = 20


@pytest.fixture(scope="module")
def model() -> EASE:
    return EASE(l2=10.0).fit(make_checkerboard(n_users=40, n_items=N_ITEMS))


@pytest.fixture(scope="module")
def catalogue(model: EASE) -> Catalogue:
    frame = pl.DataFrame(
        {
            "item_id": list(range(N_ITEMS)),
            "title": [f"item {i}" for i in range(N_ITEMS)],
            "genres": ["Low" if i < 10 else "High" for i in range(N_ITEMS)],
        }
    )
    assert model.item_vocab is not None
    return Catalogue(model.item_vocab, frame)


@pytest.fixture()
def state(model: EASE, tmp_path: Path) -> Iterator[ServingState]:
    st = ServingState(model, open_store(tmp_path / "events.db", impression_flush_s=0), ServingConfig())
    yield st
    st.close()


def _ctx(model: EASE, **kw: Any) -> pl_module.RequestContext:
    return build_context(model, ServingConfig(), **kw)


def _seen(model: EASE, user: int) -> set[int]:
    return set(model.train_history[model.user_vocab.index(user)].indices.tolist())  # type: ignore[union-attr]


# ---------------------------------------------------------------------- 1. candidates
def test_candidates_resolve_the_query_and_size_the_pool(model: EASE) -> None:
    ctx = _ctx(model, user_id=0, k=5)
    assert ctx.key == 0 and ctx.k == 5 and ctx.pool_size == 5 and ctx.policy is None
    assert set(ctx.history.tolist()) == _seen(model, 0)
    # a reranker needs more candidates than it shows
    assert _ctx(model, user_id=0, k=5, diversity=0.3).pool_size == ServingConfig().candidates
    explored = _ctx(model, user_id=0, k=5, explore=True)
    assert explored.pool_size == ServingConfig().candidates and explored.policy == "linucb"
    assert _ctx(model, history=[0, 2], k=3).key is None


@pytest.mark.parametrize(
    ("kw", "error", "needle"),
    [
        ({"user_id": 0, "k": 0}, ServingError, "k must be between"),
        ({"user_id": 0, "text": "odd"}, ServingError, "cannot serve text"),
        ({"user_id": 424242, "strict": True}, NotFound, "unknown user_id"),
        ({"history": [424242], "strict": True}, NotFound, "424242"),
        ({"history": []}, ServingError, "history is empty"),
    ],
)
def test_candidates_reject_what_cannot_be_served(model: EASE, kw: dict, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        _ctx(model, **kw)


def test_candidates_unknown_ids_are_lenient_by_default(model: EASE, catalogue: Catalogue) -> None:
    ctx = _ctx(model, user_id=424242, k=3)
    assert ctx.fallback == "popularity" and ctx.key == 424242
    assert [(w.field, w.ids) for w in ctx.warnings] == [("user_id", [424242])]
    top = model_ranking(model, ctx, apply_filters(model, catalogue, ctx)).items.tolist()
    assert top == np.argsort(-model.popularity(), kind="stable")[:3].tolist()
    mixed = _ctx(model, history=[0, 424242], k=3)
    assert mixed.fallback is None and mixed.history.tolist() == [0]
    assert [(w.field, w.ids) for w in mixed.warnings] == [("history", [424242])]
    assert _ctx(model, history=[424242], k=3).fallback == "popularity"
    # the server's setting decides when the request does not
    with pytest.raises(NotFound, match="424242"):
        build_context(model, ServingConfig(strict_ids=True), user_id=424242)
    assert build_context(model, ServingConfig(strict_ids=True), user_id=424242, strict=False).fallback


def test_exploration_needs_a_policy(model: EASE) -> None:
    with pytest.raises(ServingError, match="without a bandit policy"):
        build_context(model, ServingConfig(policy="none"), user_id=0, explore=True)


# ---------------------------------------------------------------------- 2. filters (+ ranking)
def test_filters_drop_excluded_blocked_and_seen_items(model: EASE, catalogue: Catalogue) -> None:
    plain = model_ranking(
        model, _ctx(model, user_id=0, k=5), apply_filters(model, catalogue, _ctx(model, user_id=0))
    )
    top = plain.items.tolist()
    assert not set(top) & _seen(model, 0), "the query's history is excluded by default"
    ctx = _ctx(model, user_id=0, k=5, exclude=[top[0], 999_999])  # unknown ids are dropped
    ex = apply_filters(model, catalogue, ctx, blocked={top[1]})
    assert set(ex.exclude.tolist()) == {top[0], top[1]} and ex.allowed is None
    assert [(w.field, w.ids) for w in ex.warnings] == [("exclude", [999_999])]
    with pytest.raises(NotFound, match="exclude: 999999"):
        apply_filters(model, catalogue, _ctx(model, user_id=0, exclude=[999_999], strict=True))
    got = model_ranking(model, ctx, ex).items.tolist()
    assert top[0] not in got and top[1] not in got and not set(got) & _seen(model, 0)
    # exclude_seen=False lets history items back in
    with_seen = _ctx(model, user_id=0, k=N_ITEMS, exclude_seen=False)
    assert _seen(model, 0) <= set(
        model_ranking(model, with_seen, Exclusions(np.zeros(0, np.int64))).items.tolist()
    )


def test_filters_allow_list_and_tags(model: EASE, catalogue: Catalogue) -> None:
    ctx = _ctx(model, user_id=1, k=10, filters={"tags_any": ["High"]})
    ex = apply_filters(model, catalogue, ctx)
    assert ex.allowed is not None and ex.allowed.tolist() == [i >= 10 for i in range(N_ITEMS)]
    assert all(i >= 10 for i in model_ranking(model, ctx, ex).items)
    ctx = _ctx(model, user_id=1, k=10, filters={"item_ids": [1, 3, 999]})
    ex = apply_filters(model, catalogue, ctx)
    assert set(model_ranking(model, ctx, ex).items.tolist()) <= {1, 3}
    assert [(w.field, w.ids) for w in ex.warnings] == [("filters.item_ids", [999])]
    strict = _ctx(model, user_id=1, filters={"item_ids": [1, 999]}, strict=True)
    with pytest.raises(NotFound, match="999"):
        apply_filters(model, catalogue, strict)
    with pytest.raises(ServingError, match="colour"):
        apply_filters(model, catalogue, _ctx(model, user_id=1, filters={"where": {"colour": "red"}}))


# ---------------------------------------------------------------------- 3. model ranking
def test_k_reaches_the_model_ranking(model: EASE, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = model.rank

    def spy(batch: Any, k: int, **kw: Any) -> Any:
        calls.append(k)
        return real(batch, k, **kw)

    monkeypatch.setattr(model, "rank", spy)
    none = Exclusions(np.zeros(0, np.int64))
    ranked = model_ranking(model, _ctx(model, user_id=2, k=3), none)
    assert calls == [3] and len(ranked.order) == 3 and ranked.policy == "model"
    assert ranked.items.tolist() == model.recommend(2, k=3)["item_id"].to_list()
    assert np.all(ranked.propensities == 1.0) and np.all(np.diff(ranked.scores) <= 0)
    pooled = model_ranking(model, _ctx(model, user_id=2, k=3, diversity=0.5), none)
    assert calls[-1] == ServingConfig().candidates
    assert len(pooled.order) == 3 and len(pooled.pool) > 3  # the pool is kept for the rerankers


# ---------------------------------------------------------------------- 4. rerankers
def _pool(n: int = 6) -> Ranked:
    return Ranked(
        pool=np.arange(n),
        scores=np.linspace(1.0, 0.5, n),
        order=np.arange(3),
        propensities=np.ones(3),
        n_logged=3,
    )


def test_mmr_reranker_spreads_near_duplicates() -> None:
    # items 0 and 1 are the same direction, 2.. are spread out
    features = np.eye(6, dtype=np.float32)
    features[1] = features[0]
    ranked = _pool()
    assert MMRReranker(0.0).rerank(ranked, features, 3) is ranked  # off
    div = MMRReranker(0.7).rerank(ranked, features, 3)
    assert div.policy == "mmr" and div.items[0] == 0 and 1 not in div.items.tolist()
    assert len(div.pool) == 3  # only k chosen when nothing reranks after it
    kept = MMRReranker(0.7).rerank(ranked, features, 3, keep_pool=True)
    assert len(kept.pool) == 6 and kept.items.tolist() == div.items.tolist()


def test_bandit_reranker_orders_by_what_it_learned() -> None:
    features = np.eye(6, dtype=np.float32)
    ranked = _pool()
    bandit = LinUCB(1 + 6, explore=0.0, epsilon=0.0)
    fresh = BanditReranker(bandit, "linucb").rerank(ranked, features, 3)
    assert fresh.items.tolist() == [0, 1, 2], "before any feedback the bandit keeps the model's order"
    X = make_features(ranked.scores, features)
    for _ in range(20):  # item 5 is always taken, item 0 never
        bandit.update(X[5], 1.0)
        bandit.update(X[0], 0.0)
    learned = BanditReranker(bandit, "linucb").rerank(ranked, features, 3)
    assert learned.items[0] == 5 and 0 not in learned.items.tolist()
    assert learned.policy == "linucb" and learned.n_logged == 6 and np.all(learned.propensities == 1.0)
    cands, scaled = learned.logged_candidates()
    assert cands.tolist() == list(range(6)) and np.allclose(scaled, X[:, 0])


def test_bandit_reranker_logs_propensities_when_exploring() -> None:
    ranked = _pool()
    bandit = LinUCB(1 + 6, explore=1.0, epsilon=0.5, seed=1)
    out = BanditReranker(bandit, "linucb").rerank(ranked, np.eye(6, dtype=np.float32), 3)
    assert len(out.order) == 3 and np.all((out.propensities > 0) & (out.propensities <= 1))
    assert out.propensities.min() < 1


# ---------------------------------------------------------------------- 5. explanations
def test_explanations_build_the_response_items(
    model: EASE, catalogue: Catalogue, state: ServingState
) -> None:
    ctx = _ctx(model, user_id=0, k=4)
    ranked = model_ranking(model, ctx, Exclusions(np.zeros(0, np.int64)))
    items = explanations(ranked, ctx, state.features, catalogue, state.item_ids)
    assert [it.rank for it in items] == [1, 2, 3, 4]
    assert [it.item_id for it in items] == ranked.items.tolist()
    assert all(it.title == f"item {it.item_id}" and it.propensity == 1.0 for it in items)
    assert all(it.because is not None for it in items)
    assert all(b.item_id in _seen(model, 0) for it in items for b in it.because.items)  # type: ignore[union-attr]
    assert all(type(it.item_id) is int and type(it.score) is float for it in items)
    quiet = _ctx(model, user_id=0, k=4, explain=False)
    assert all(
        it.because is None for it in explanations(ranked, quiet, state.features, catalogue, state.item_ids)
    )


# ---------------------------------------------------------------------- wired together
def test_pipeline_equals_the_models_own_list(model: EASE, state: ServingState) -> None:
    served = state.recommend(user_id=3, k=5)
    assert RecommendResponse.model_validate_json(served.model_dump_json()) == served
    assert [it.item_id for it in served.items] == model.recommend(3, k=5)["item_id"].to_list()
    assert served.policy == "model" and not served.explored and served.model == "ease"
    explored = state.recommend(user_id=3, k=5, explore=True, policy="thompson")
    assert explored.policy == "thompson" and explored.explored


# ---------------------------------------------------------------------- one bandit update path
def test_live_feedback_and_replay_share_one_bandit_update(
    model: EASE, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, float, float]] = []
    real = feedback_module.update_bandits

    def spy(
        bandits: Any, policy: str, scaled: float, vector: Any, reward: float, metrics: Any = None
    ) -> bool:
        calls.append((policy, scaled, reward))
        return real(bandits, policy, scaled, vector, reward, metrics)

    monkeypatch.setattr(feedback_module, "update_bandits", spy)
    artifact, db = model.save(tmp_path / "model"), tmp_path / "one.db"
    st = ServingState.from_artifact(artifact, db=db, config=ServingConfig(epsilon=0.1))
    served = st.recommend(user_id=4, k=3, explore=True)
    item = served.items[1].item_id
    _, updated = st.feedback(user_id=4, item_id=item, request_id=served.request_id)
    assert updated and calls and calls[-1][0] == "linucb"
    live = list(calls)
    theta = st.bandits["linucb"].theta.copy()
    st.close()
    calls.clear()
    restarted = ServingState.from_artifact(artifact, db=db, config=ServingConfig(epsilon=0.1))
    try:
        assert calls == [(p, pytest.approx(s, abs=1e-6), r) for p, s, r in live]  # same update, replayed
        assert np.allclose(restarted.bandits["linucb"].theta, theta, atol=1e-5)
    finally:
        restarted.close()


def test_update_bandits_targets_the_serving_policy() -> None:
    bandits = {"linucb": LinUCB(3), "thompson": LinUCB(3)}
    assert update_bandits(bandits, "linucb", 0.5, np.array([1.0, 0.0]), 1.0)
    assert bandits["linucb"].n_updates == 1 and bandits["thompson"].n_updates == 0
    # a list the model (or MMR) ordered teaches every bandit
    assert update_bandits(bandits, "model", 0.5, np.array([1.0, 0.0]), 1.0)
    assert bandits["linucb"].n_updates == 2 and bandits["thompson"].n_updates == 1
    assert not update_bandits({}, "linucb", 0.5, np.array([1.0, 0.0]), 1.0)


def test_no_other_bandit_update_in_serving() -> None:
    """Every ``bandit.update(x, reward)`` call in lmrec.serving is inside update_bandits."""
    import lmrec.serving as serving

    found = []
    for path in Path(serving.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("update", "update_many")
                    and len(node.args) == 2
                ):
                    found.append((path.name, fn.name))
    assert set(found) == {("feedback.py", "update_bandits")}, found
    assert "update_bandits" in inspect.getsource(feedback_module.credit_logged)
    assert "credit_logged" in inspect.getsource(feedback_module.replay_events)
    assert "update_bandits" in inspect.getsource(feedback_module.record_feedback)
    # other workers' events (lmrec.serving.sync) go through the replay's update
    assert "credit_logged" in inspect.getsource(sync_module.LogFollower._apply)


def test_recent_lists_credit_the_named_or_newest_list() -> None:
    recent = RecentLists(per_user=2)
    recent.remember("u", "r1", "linucb", np.array([1, 2]), np.array([1.0, 0.0]))
    recent.remember("u", "r2", "model", np.array([2, 3]), np.array([1.0, 0.5]))
    assert recent.credit("u", 2, None).request_id == "r2"  # the newest list holding the item
    named = recent.credit("u", 2, "r1")
    assert (named.request_id, named.scaled, named.policy) == ("r1", 0.0, "linucb")
    assert recent.credit("u", 9, None).scaled is None and recent.credit("v", 1, "r1").scaled is None
    recent.remember("u", "r3", "model", np.array([7]), np.array([1.0]))
    assert recent.credit("u", 1, "r1").scaled is None  # only the last two lists are kept

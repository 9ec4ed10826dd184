"""Hybrid: the shared contract, leak-free ranker training, persistence, feature groups, text routing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.models import registry
from lmrec.models.base import Query, Recommender
from lmrec.models.hybrid import Hybrid, holdout_last
from lmrec.models.popularity import Popularity
from lmrec.testing import RecommenderContract, make_checkerboard

CHEAP = [
    {"name": "popularity", "n_candidates": 20},
    {"name": "item_knn", "n_candidates": 20},
    {"name": "ease", "n_candidates": 20},
]


def cheap_hybrid(**params: Any) -> Hybrid:
    return Hybrid(generators=CHEAP, text_encoder="hashing", **params)


class TestHybridContract(RecommenderContract):
    model_factory = staticmethod(lambda: cheap_hybrid())


class Spy(Popularity):
    """A popularity generator that records the interactions it was fitted on and the queries it scored."""

    name = "spy"
    fitted: ClassVar[list[pl.DataFrame]] = []
    scored: ClassVar[list[list[Query]]] = []

    def _fit(self, data: Dataset) -> None:
        Spy.fitted.append(data.interactions.select("user_id", "item_id", "timestamp"))
        super()._fit(data)

    def score(self, queries: Any, items: Any = None) -> np.ndarray:
        Spy.scored.append(list(queries))
        return super().score(queries, items)


@pytest.fixture()
def spy(monkeypatch: pytest.MonkeyPatch) -> type[Spy]:
    monkeypatch.setitem(registry._MODELS, "spy", f"{__name__}:Spy")
    Spy.fitted, Spy.scored = [], []
    return Spy


def _rows(df: pl.DataFrame) -> set[tuple[Any, ...]]:
    return set(df.select("user_id", "item_id", "timestamp").iter_rows())


@pytest.mark.parametrize("n_targets", [1, 3])
def test_generators_never_see_the_ranker_targets(spy: type[Spy], n_targets: int) -> None:
    data = make_checkerboard()
    model = Hybrid(
        generators=[{"name": "spy"}, {"name": "ease"}],
        feature_groups=("scores", "history"),
        n_targets=n_targets,
    )
    model.fit(data)
    _, held = holdout_last(data, n_targets)
    # each user's last n_targets interactions (by time) are the held-out targets
    last = data.interactions.sort("timestamp").group_by("user_id").tail(n_targets)
    assert held.height == data.n_users * n_targets
    assert _rows(held) == _rows(last)
    # first fit: the inner data, which holds no target; second fit (serving): all of the data
    assert len(spy.fitted) == 2
    assert _rows(spy.fitted[0]) == _rows(data.interactions) - _rows(held)
    assert not _rows(spy.fitted[0]) & _rows(held)
    assert _rows(spy.fitted[1]) == _rows(data.interactions)
    # while training the ranker, queries were users known to the inner generator (no target in them)
    assert spy.scored and all(q.history is None for batch in spy.scored for q in batch)
    rep = model.fit_report_
    assert rep["holdout_users"] == data.n_users and rep["holdout_rows"] == held.height
    assert rep["candidate_recall"] > 0.5


def test_users_with_one_interaction_have_no_holdout() -> None:
    df = pl.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [1, 2, 3, 1], "timestamp": [3, 1, 2, 5]})
    data = Dataset.from_frames(df)
    inner, held = holdout_last(data)
    assert held.select("user_id", "item_id").rows() == [(1, 1)]  # user 1's latest, by timestamp
    assert inner.n_interactions == 3 and 2 in inner.interactions["user_id"].to_list()
    # more targets than a user can spare: everyone keeps one interaction
    inner, held = holdout_last(data, 3)
    assert sorted(held.select("user_id", "item_id").rows()) == [(1, 1), (1, 3)]
    assert sorted(inner.interactions.select("user_id", "item_id").rows()) == [(1, 2), (2, 1)]


def test_save_load_identical_recommendations(tmp_path: Path) -> None:
    data = make_checkerboard()
    model = cheap_hybrid().fit(data)
    loaded = Recommender.load(model.save(tmp_path / "hybrid"))
    assert isinstance(loaded, Hybrid) and loaded.feature_names_ == model.feature_names_
    users = list(range(40))
    a, b = model.recommend(users, k=10), loaded.recommend(users, k=10)
    assert a.equals(b)
    np.testing.assert_array_equal(model.score(users), loaded.score(users))
    # the generators came back too, each from its own sub-folder, and the artifact holds no pickle
    assert [g.name for g in loaded.generators_] == ["popularity", "item_knn", "ease"]
    root = tmp_path / "hybrid"
    assert sorted(p.name for p in root.iterdir()) == [
        "generators",
        "model.json",
        "ranker.txt",
        "state.safetensors",
        "vocab.json",
    ]
    assert sorted(p.name for p in (root / "generators").iterdir()) == ["ease", "item_knn", "popularity"]
    for gen, label in zip(loaded.generators_, loaded.labels, strict=True):
        assert type(Recommender.load(root / "generators" / label)) is type(gen)
    assert {p.suffix for p in root.rglob("*") if p.is_file()} <= {".json", ".safetensors", ".txt"}


def test_feature_groups_change_the_feature_count() -> None:
    data = make_checkerboard()
    full = cheap_hybrid().fit(data)
    assert {n.split("_")[0] for n in full.feature_names_} >= {"ease", "pop", "hist", "text"}
    counts = {}
    for group in ("scores", "popularity", "text", "history"):
        kept = tuple(g for g in ("scores", "popularity", "text", "metadata", "history") if g != group)
        counts[group] = len(cheap_hybrid(feature_groups=kept).fit(data).feature_names_)
    n = len(full.feature_names_)
    assert counts == {"scores": n - 6, "popularity": n - 5, "text": n - 3, "history": n - 2}
    only = cheap_hybrid(feature_groups=("scores",)).fit(data)
    assert only.feature_names_ == [
        f"{g}_{k}" for g in ("popularity", "item_knn", "ease") for k in ("score", "rank")
    ]


def test_metadata_features_from_item_categories() -> None:
    data = make_checkerboard()
    assert data.items is not None
    items = data.items.with_columns(
        pl.when(pl.col("item_id") % 2 == 0)
        .then(pl.lit("Drama|War"))
        .otherwise(pl.lit("Comedy"))
        .alias("genres"),
        pl.lit("acme").alias("brand"),
    )
    data = Dataset.from_frames(data.interactions.select("user_id", "item_id", "timestamp"), items=items)
    model = cheap_hybrid(feature_groups=("scores", "metadata")).fit(data)
    assert model.feature_names_[-4:] == [
        "meta_genres_profile",
        "meta_genres_share",
        "meta_brand_profile",
        "meta_brand_share",
    ]
    top = model.recommend(list(range(40)), k=1)
    assert all(i % 2 == u % 2 for u, i in top.select("user_id", "item_id").iter_rows())


def test_no_item_text_skips_the_text_group() -> None:
    board = make_checkerboard()
    data = Dataset.from_frames(board.interactions.select("user_id", "item_id", "timestamp"))
    model = cheap_hybrid().fit(data)
    assert not [n for n in model.feature_names_ if n.startswith(("text_", "meta_"))]


def test_text_query_is_routed_to_the_text_generator() -> None:
    """A text-only query goes to ``content`` (EASE and item-kNN cannot serve it), and reaches a cold
    item nobody interacted with."""
    df = pl.DataFrame(
        {
            "user_id": [u for u in range(12) for _ in range(3)],
            "item_id": [(u % 2) * 3 + j for u in range(12) for j in range(3)],
            "timestamp": list(range(36)),
        }
    )
    titles = ["space rocket", "space station", "space alien", "baking bread", "baking cake", "baking pie"]
    items = pl.DataFrame({"item_id": list(range(7)), "title": [*titles, "space telescope"]})
    data = Dataset.from_frames(df, items=items)
    model = Hybrid(
        generators=[
            {"name": "ease"},
            {"name": "item_knn"},
            {"name": "content", "params": {"encoder": "hashing"}},
        ],
        text_encoder="hashing",
    ).fit(data)
    assert model.supports == {"user", "history", "text"}
    recs = model.recommend(Query(text="space telescope"), k=3)
    assert recs["item_id"][0] == 6  # the cold item, only the content generator can propose it
    assert recs["user_id"].to_list() == [None] * 3
    # a mixed query works too, and a known user's query still excludes their history
    mixed = model.recommend(Query(user_id=0, text="space"), k=2)
    assert not set(mixed["item_id"].to_list()) & {0, 1, 2}


def test_supports_is_the_union_of_the_generators() -> None:
    assert Hybrid(generators=[{"name": "ease"}, {"name": "item_knn"}]).supports == {"user", "history"}
    with pytest.raises(ValueError, match="unique"):
        Hybrid(generators=[{"name": "ease"}, {"name": "ease", "label": "ease"}])
    assert Hybrid(generators=[{"name": "ease"}, {"name": "ease", "params": {"l2": 10}}]).labels == [
        "ease",
        "ease_2",
    ]


def test_online_feedback_reaches_the_generators() -> None:
    model = cheap_hybrid().fit(make_checkerboard())
    model.add_interactions(1000, [0, 2, 4])
    recs = model.recommend(1000, k=5)
    assert not set(recs["item_id"].to_list()) & {0, 2, 4}
    assert all(1000 in g.user_vocab for g in model.generators_)  # type: ignore[operator]


def test_serving_state_serves_a_saved_hybrid(tmp_path: Path) -> None:
    """What ``lmrec serve ARTIFACT`` builds: recommend, feedback (extends the history of the hybrid
    and its generators), similar items, and the served list equals the model's own."""
    pytest.importorskip("faiss")
    from lmrec.serving.state import ServingConfig, ServingState

    model = cheap_hybrid().fit(make_checkerboard())
    path = model.save(tmp_path / "hybrid")
    state = ServingState.from_artifact(path, db=tmp_path / "events.db", config=ServingConfig(policy="none"))
    try:
        first = [it.item_id for it in state.recommend(user_id=3, k=5).items]
        assert first == model.recommend(3, k=5)["item_id"].to_list()
        state.feedback(user_id=3, item_id=first[0], event="click")
        after = [it.item_id for it in state.recommend(user_id=3, k=5).items]
        assert first[0] not in after
        state.feedback(user_id=999, item_id=1, event="click")  # a new user, known from now on
        assert state.recommend(user_id=999, k=3).items
        similar = state.similar(0, k=3).items
        assert len(similar) == 3
        assert state.recommend(text="odd item", k=3).items  # text queries: the union supports them
    finally:
        state.close()


# ------------------------------------------------------------------ targets, shared fits, fast path
def _lengths_dataset(lengths: list[int]) -> Dataset:
    rows = [(u, i, t) for u, n in enumerate(lengths) for t, i in enumerate(range(n))]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(df)


def test_auto_targets_keeps_the_holdout_share_small() -> None:
    from lmrec.models.hybrid import auto_targets

    long = _lengths_dataset([40] * 10)  # 3 per user hold out 30 of 400 rows: 7.5%
    assert auto_targets(long, 0.1) == 3
    short = _lengths_dataset([5] * 10)  # 3 per user: 60%, 2: 40%, 1: 20% -> 1 (the floor)
    assert auto_targets(short, 0.1) == 1
    mid = _lengths_dataset([12] * 10)  # 3: 25%, 2: 16.7%, 1: 8.3%
    assert auto_targets(mid, 0.2) == 2
    # users with one interaction hold out nothing and do not count
    assert auto_targets(_lengths_dataset([1] * 50 + [40] * 2), 0.1) == 3
    model = Hybrid(generators=CHEAP, text_encoder="hashing").fit(short)
    assert model.fit_report_["n_targets"] == 1


def test_shared_fits_are_reused_across_hybrids(spy: type[Spy]) -> None:
    data = make_checkerboard()
    cache: dict[str, Recommender] = {}
    gens = [{"name": "spy", "n_candidates": 10}]
    Hybrid(generators=gens, n_targets=1, text_encoder="hashing").share_fits(cache).fit(data)
    assert len(spy.fitted) == 2  # the inner fit and the refit
    Hybrid(generators=gens, n_targets=2, text_encoder="hashing").share_fits(cache).fit(data)
    assert len(spy.fitted) == 3  # only the new inner fit: the refit on ``data`` is shared
    Hybrid(generators=gens, n_targets=2, text_encoder="hashing").fit(data)
    assert len(spy.fitted) == 5  # without the cache everything is fitted again


def _text_data() -> Dataset:
    rng = np.random.default_rng(0)
    words = ["space", "rocket", "baking", "bread", "jazz", "piano", "river", "stone"]
    n_items = 30
    items = pl.DataFrame(
        {"item_id": list(range(n_items)), "title": [" ".join(rng.choice(words, 3)) for _ in range(n_items)]}
    )
    rows = [(u, int(i), t) for u in range(25) for t, i in enumerate(rng.choice(n_items, 8, replace=False))]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(df, items=items)


def test_fast_path_scores_equal_the_generators_own() -> None:
    """Known-user queries read the hybrid's batch and cached query vectors; the scores must be the
    ones the generators' public ``score`` gives, before and after a user's history grows."""
    data = _text_data()
    model = Hybrid(
        generators=[
            {"name": "ease", "n_candidates": 10},
            {"name": "content", "params": {"encoder": "hashing"}, "n_candidates": 10},
            {"name": "als", "params": {"factors": 4, "iterations": 2}, "n_candidates": 10},
        ],
        text_encoder="hashing",
    ).fit(data)
    assert model._scorer is not None
    queries = [Query(user_id=u) for u in range(25)] + [
        Query(user_id=3, text="space"),  # text: the generators' own path
        Query(history=[1, 2]),  # an unseen user's history
        Query(user_id=4, history=[9, 11], weights=[2.0, 1.0]),  # extra history: not cached
        Query(text="baking"),
    ]

    def both() -> tuple[np.ndarray, np.ndarray]:
        batch = model.encode_queries(queries)
        fast = model.score_batch(batch)
        scorer, model._scorer = model._scorer, None
        try:
            slow = model.score_batch(batch)
        finally:
            model._scorer = scorer
        return fast, slow

    fast, slow = both()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
    assert model._scorer._filled  # the content generator's vectors were cached
    model.add_interactions(3, [0, 5, 7])  # user 3's cached vector is stale now
    fast, slow = both()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
    model.add_interactions(1000, [1, 2])  # a new user: the caches grow
    queries.append(Query(user_id=1000))
    fast, slow = both()
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_serving_warm_up_fills_the_vector_cache(tmp_path: Path) -> None:
    """Loading stays cheap (vectors are cached on first use); ``lmrec serve``'s warm-up fills the
    cache for every known user before the server reports ready."""
    from lmrec.serving.state import ServingConfig, ServingState

    data = _text_data()
    model = Hybrid(
        generators=[{"name": "content", "params": {"encoder": "hashing"}, "n_candidates": 10}],
        text_encoder="hashing",
    ).fit(data)
    path = model.save(tmp_path / "h")
    loaded = registry.load_model(path)
    assert isinstance(loaded, Hybrid) and loaded._scorer is not None and not loaded._scorer._filled
    state = ServingState.from_artifact(path, db=tmp_path / "events.db", config=ServingConfig(policy="none"))
    try:
        state.warm()
        served = state.model
        assert isinstance(served, Hybrid) and served._scorer is not None
        assert served._scorer._filled[0].all() and len(served._scorer._filled[0]) == data.n_users
        for u in (0, 7, 24):
            assert (
                served.recommend(u, k=5)["item_id"].to_list() == model.recommend(u, k=5)["item_id"].to_list()
            )
    finally:
        state.close()


def test_warmed_result_cache_serves_the_same_scores_and_forgets_on_new_interactions() -> None:
    """After ``warm`` a plain known-user query reads its kept candidates: the scores are the cold
    model's, for precomputed users and for users kept on first use, and a user's new
    interactions drop their entry so the next answer reflects them."""
    data = _text_data()
    spec = {
        "generators": [
            {"name": "ease", "n_candidates": 10},
            {"name": "content", "params": {"encoder": "hashing"}, "n_candidates": 10},
        ],
        "text_encoder": "hashing",
    }
    cold = Hybrid(**spec).fit(data)
    warm = Hybrid(**spec).fit(data)
    warm.warm(precompute_users=10)  # users 0-9 now, the rest on first use
    assert warm._results is not None and len(warm._results) == 10
    queries = [Query(user_id=u) for u in range(25)] + [Query(user_id=2, history=[3]), Query(history=[1, 2])]
    for _ in range(2):  # the second pass reads every known user's kept candidates
        np.testing.assert_array_equal(
            warm.score_batch(warm.encode_queries(queries)), cold.score_batch(cold.encode_queries(queries))
        )
    assert len(warm._results) == 25  # the two queries with a history are never kept
    q5 = [Query(user_id=5)]
    before = warm.score_batch(warm.encode_queries(q5))
    for model in (cold, warm):
        model.add_interactions(5, [0, 1, 2, 3])
    assert 5 not in warm._results._rows
    after = warm.score_batch(warm.encode_queries(q5))
    np.testing.assert_array_equal(after, cold.score_batch(cold.encode_queries(q5)))
    assert not np.array_equal(after, before)  # not the stale row


def test_unknown_history_items_never_reach_the_generators() -> None:
    """The lenient policy drops an unknown history item once, in the hybrid; the generators (on the
    fast path and on their own text path alike) only see what the hybrid kept."""
    from lmrec.errors import UnknownIdWarning

    data = _text_data()
    model = Hybrid(
        generators=[
            {"name": "ease", "n_candidates": 10},
            {"name": "content", "params": {"encoder": "hashing"}, "n_candidates": 10},
        ],
        text_encoder="hashing",
    ).fit(data)
    for query in (
        Query(user_id=2, history=[3, "nope"], text="space rocket"),
        Query(user_id=2, history=[3, "nope"], weights=[1.0, 2.0]),
        Query(history=["nope", 4, 5]),
    ):
        with pytest.warns(UnknownIdWarning, match="nope"):
            recs = model.recommend(query, k=5)
        assert len(recs) == 5
        known = Query(
            user_id=query.user_id, history=[h for h in query.history or [] if h != "nope"], text=query.text
        )
        assert recs["item_id"].to_list() == model.recommend(known, k=5)["item_id"].to_list()

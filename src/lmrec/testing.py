"""Contract tests every lmrec model passes (LensKit's ``ScorerTests``, implicit's test mixin).

A model's test module subclasses :class:`RecommenderContract` in a few lines::

    from lmrec.testing import RecommenderContract

    class TestItemKNNContract(RecommenderContract):
        model_factory = staticmethod(lambda: ItemKNN(k=20))

and inherits tests for the known answer on a checkerboard, save/load round trips, unseen users,
empty histories, unknown ids, ``k <= 0``, exclusions, the output schema, candidate restriction and
unfitted models. Class attributes state what is honest to expect of a model (``known_answer``,
``deterministic``); nothing else needs overriding. The model is fitted once per class on
:func:`make_checkerboard`, so even slow models stay cheap.

This module needs pytest, which is a test-time dependency only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.errors import NotFittedError, UnknownIdError, UnknownIdWarning, UnsupportedQueryError
from lmrec.models.base import Query, Recommender

__all__ = ["RecommenderContract", "make_checkerboard"]

#: the output schema of ``Recommender.recommend`` for integer ids
RECOMMEND_SCHEMA = {
    "query": pl.Int64,
    "user_id": pl.Int64,
    "item_id": pl.Int64,
    "score": pl.Float32,
    "rank": pl.Int64,
    "fallback": pl.Utf8,
}


def make_checkerboard(n_users: int = 40, n_items: int = 20, seed: int = 0) -> Dataset:
    """Two user groups that each like one half of the items (implicit's known-answer fixture).

    User ``u`` is in group ``u % 2`` and has seen every item ``i`` with ``i % 2 == u % 2`` except one,
    ``withheld(u)``; that item must come back first. Items carry a title (``"even item 4"``) so text
    models have something to read. ``seed`` is accepted for signature compatibility; the board is
    fully deterministic.
    """
    rows = []
    t = 0
    for u in range(n_users):
        group = u % 2
        half = [i for i in range(n_items) if i % 2 == group]
        withheld = half[u // 2 % len(half)]
        for i in half:
            if i != withheld:
                rows.append((u, i, t))
                t += 1
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    items = pl.DataFrame(
        {
            "item_id": list(range(n_items)),
            "title": [f"{'even' if i % 2 == 0 else 'odd'} item {i}" for i in range(n_items)],
        }
    )
    return Dataset.from_frames(df, items=items, name="checkerboard")


def _withheld(user: int, n_items: int) -> int:
    half = [i for i in range(n_items) if i % 2 == user % 2]
    return half[user // 2 % len(half)]


class RecommenderContract:
    """Mixin of contract tests; subclasses set ``model_factory`` (and maybe the expectations below)."""

    #: builds an unfitted model; wrap lambdas in ``staticmethod``
    model_factory: ClassVar[Callable[[], Recommender]]
    #: what the model must get right on the checkerboard:
    #: ``"first"``: each user's withheld item is ranked first among the items they have not seen;
    #: ``"half"``: the withheld item outranks at least ``known_answer_fraction`` of the other half's
    #: items on average (for models whose signal is real but coarse); ``"none"``: skip (non-personal models)
    known_answer: ClassVar[Literal["first", "half", "none"]] = "first"
    known_answer_fraction: ClassVar[float] = 0.9
    #: the same query gives the same scores every time (False only for deliberately random models)
    deterministic: ClassVar[bool] = True
    #: relative tolerance when comparing scores of equivalent queries (float32 maths)
    rtol: ClassVar[float] = 1e-5
    n_users: ClassVar[int] = 40
    n_items: ClassVar[int] = 20

    # ------------------------------------------------------------------ fixtures
    @classmethod
    def contract_data(cls) -> Dataset:
        """The training data; override to give a model what it needs beyond interactions."""
        return make_checkerboard(cls.n_users, cls.n_items)

    @pytest.fixture(scope="class")
    def data(self) -> Dataset:
        return type(self).contract_data()

    @pytest.fixture(scope="class")
    def fitted(self, data: Dataset) -> Recommender:
        model = type(self).model_factory()
        out = model.fit(data)
        assert out is model, "fit must return self"
        return model

    def _supports_history(self, model: Recommender) -> bool:
        return "history" in model.supports

    def _history(self, data: Dataset, user: int) -> list[Any]:
        seq = data.sequences()[data.user_vocab.index(user)]
        return data.item_vocab.external(seq)

    # ------------------------------------------------------------------ (a) known answer
    def test_checkerboard_known_answer(self, fitted: Recommender, data: Dataset) -> None:
        if self.known_answer == "none":
            pytest.skip(f"{type(fitted).__name__} is not personalised: no known answer to check")
        users = list(range(self.n_users))
        recs = fitted.recommend(users, k=self.n_items)
        by_user = recs.group_by("user_id", maintain_order=True).agg("item_id")
        ranked = dict(zip(by_user["user_id"].to_list(), by_user["item_id"].to_list(), strict=True))
        if self.known_answer == "first":
            wrong = {
                u: (ranked[u][0], _withheld(u, self.n_items))
                for u in users
                if ranked[u][0] != _withheld(u, self.n_items)
            }
            assert not wrong, f"withheld item not ranked first for users {{user: (got, want)}} = {wrong}"
        else:
            fractions = []
            for u in users:
                order = ranked[u]
                pos = order.index(_withheld(u, self.n_items))
                others = [i for i in order if i % 2 != u % 2]
                fractions.append(sum(order.index(i) > pos for i in others) / len(others))
            assert np.mean(fractions) >= self.known_answer_fraction, (
                f"withheld item beats only {np.mean(fractions):.2f} of the other half on average"
            )

    # ------------------------------------------------------------------ (b) persistence
    def test_save_load_round_trip(self, fitted: Recommender, data: Dataset, tmp_path: Path) -> None:
        path = fitted.save(tmp_path / "model")
        loaded = Recommender.load(path)
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config
        assert loaded.item_vocab == fitted.item_vocab and loaded.user_vocab == fitted.user_vocab
        users = list(range(self.n_users))
        got = loaded.recommend(users, k=5)
        assert got.schema == fitted.recommend(users, k=5).schema
        if not self.deterministic:
            assert got.height == 5 * self.n_users
            return
        want = fitted.recommend(users, k=5)
        assert got["item_id"].to_list() == want["item_id"].to_list()
        np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=self.rtol)
        np.testing.assert_allclose(loaded.score(users), fitted.score(users), rtol=self.rtol, atol=1e-6)
        if self._supports_history(fitted):
            q = Query(history=self._history(data, 3)[:4])
            np.testing.assert_allclose(loaded.score(q), fitted.score(q), rtol=self.rtol, atol=1e-6)

    # ------------------------------------------------------------------ (c) unseen users
    def test_unseen_user_matches_known_user(self, fitted: Recommender, data: Dataset) -> None:
        user = 5
        history = self._history(data, user)
        if not self._supports_history(fitted):
            with pytest.raises(UnsupportedQueryError):
                fitted.recommend(Query(history=history), k=5)
            return
        unseen = fitted.recommend(Query(history=history), k=5)
        known = fitted.recommend(Query(user_id=user), k=5)
        assert unseen.height == known.height == 5
        assert unseen["user_id"].to_list() == [None] * 5
        if not self.deterministic:
            return
        assert unseen["item_id"].to_list() == known["item_id"].to_list()
        np.testing.assert_allclose(
            unseen["score"].to_numpy(), known["score"].to_numpy(), rtol=self.rtol, atol=1e-6
        )
        # the history is excluded from an unseen user's recommendations too
        assert not set(unseen["item_id"].to_list()) & set(history)

    def test_extra_history_is_excluded(self, fitted: Recommender, data: Dataset) -> None:
        if not self._supports_history(fitted):
            pytest.skip("model serves no history queries")
        user = 4
        extra = [_withheld(user, self.n_items)]
        recs = fitted.recommend(Query(user_id=user, history=extra), k=self.n_items)
        seen = set(self._history(data, user)) | set(extra)
        assert not set(recs["item_id"].to_list()) & seen
        assert recs.height == self.n_items - len(seen)

    # ------------------------------------------------------------------ (d) empty history
    def test_empty_history(self, fitted: Recommender) -> None:
        if not self._supports_history(fitted):
            with pytest.raises(UnsupportedQueryError):
                fitted.recommend(Query(history=[]), k=5)
            return
        recs = fitted.recommend([Query(history=[]), Query(history=[])], k=5)
        assert recs.height == 10
        assert recs["rank"].to_list() == [1, 2, 3, 4, 5] * 2
        assert np.isfinite(recs["score"].to_numpy()).all()

    # ------------------------------------------------------------------ (e) unknown ids
    def test_unknown_user_raises(self, fitted: Recommender) -> None:
        ghost = 987_654_321
        with pytest.raises(UnknownIdError, match=str(ghost)) as info:
            fitted.recommend([0, ghost], k=3, strict=True)
        assert info.value.ids == [ghost]

    def test_unknown_user_falls_back_to_popularity(self, fitted: Recommender) -> None:
        ghost = 987_654_321
        with pytest.warns(UnknownIdWarning, match=str(ghost)):
            recs = fitted.recommend([0, ghost], k=3)
        mine = recs.filter(pl.col("query") == 1)
        assert mine["fallback"].to_list() == ["popularity"] * 3
        assert recs.filter(pl.col("query") == 0)["fallback"].null_count() == 3
        top = np.argsort(-fitted.popularity(), kind="stable")[:3]
        assert fitted.item_vocab is not None
        assert mine["item_id"].to_list() == fitted.item_vocab.external(top)

    def test_unknown_history_item_raises(self, fitted: Recommender) -> None:
        if not self._supports_history(fitted):
            pytest.skip("model serves no history queries")
        with pytest.raises(UnknownIdError, match="424242"):
            fitted.recommend(Query(history=[0, 424242]), k=3, strict=True)
        with pytest.warns(UnknownIdWarning, match="424242"):
            assert fitted.recommend(Query(history=[0, 424242]), k=3).height == 3

    # ------------------------------------------------------------------ (f) k
    @pytest.mark.parametrize("k", [0, -1])
    def test_nonpositive_k_raises(self, fitted: Recommender, k: int) -> None:
        with pytest.raises(ValueError, match="k must be a positive integer"):
            fitted.recommend([0], k=k)

    # ------------------------------------------------------------------ (g) schema and seen items
    def test_output_schema_and_seen_items(self, fitted: Recommender, data: Dataset) -> None:
        users = list(range(self.n_users))
        k = 5
        recs = fitted.recommend(users, k=k)
        assert dict(recs.schema) == RECOMMEND_SCHEMA
        assert recs.height == k * len(users)
        assert recs["query"].to_list() == [q for q in range(len(users)) for _ in range(k)]
        assert recs["user_id"].to_list() == [u for u in users for _ in range(k)]
        assert recs["rank"].to_list() == list(range(1, k + 1)) * len(users)
        scores = recs["score"].to_numpy().reshape(len(users), k)
        assert np.isfinite(scores).all()
        assert (np.diff(scores, axis=1) <= 0).all(), "scores must not increase down the ranking"
        for u in users:
            got = set(recs.filter(pl.col("user_id") == u)["item_id"].to_list())
            assert not got & set(self._history(data, u)), f"user {u} got items they have seen"

    def test_scores_match_recommend(self, fitted: Recommender) -> None:
        if not self.deterministic:
            pytest.skip("scores are random per call")
        recs = fitted.recommend([1, 2], k=4)
        for qi, user in enumerate([1, 2]):
            rows = recs.filter(pl.col("query") == qi)
            s = fitted.score(user, items=rows["item_id"].to_list())
            assert s.shape == (1, rows.height)
            np.testing.assert_allclose(s[0], rows["score"].to_numpy(), rtol=self.rtol, atol=1e-6)

    def test_exclude_seen_false(self, fitted: Recommender) -> None:
        recs = fitted.recommend([0], k=self.n_items, exclude_seen=False)
        assert recs.height == self.n_items
        assert sorted(recs["item_id"].to_list()) == list(range(self.n_items))

    # ------------------------------------------------------------------ (h) candidates
    def test_items_and_exclude(self, fitted: Recommender, data: Dataset) -> None:
        users = list(range(self.n_users))
        seen = {u: set(self._history(data, u)) for u in users}
        allowed = [1, 2, 3, 4, 5, 6]
        banned = [1, 3, 5, 7, 9]
        k = 4
        restricted = fitted.recommend(users, k=k, items=allowed)
        excluded = fitted.recommend(users, k=k, exclude=banned)
        both = fitted.recommend(users, k=k, items=allowed, exclude=[1, 2])
        full = fitted.recommend(users, k=self.n_items)
        for u in users:
            got = restricted.filter(pl.col("user_id") == u)["item_id"].to_list()
            cands = set(allowed) - seen[u]
            assert set(got) <= cands and len(got) == min(k, len(cands)), (u, got, cands)
            got = excluded.filter(pl.col("user_id") == u)["item_id"].to_list()
            assert not set(got) & (set(banned) | seen[u]) and len(got) == k, (u, got)
            got = both.filter(pl.col("user_id") == u)["item_id"].to_list()
            cands = set(allowed) - {1, 2} - seen[u]
            assert set(got) <= cands and len(got) == min(k, len(cands)), (u, got, cands)
            if self.deterministic:
                # a restriction filters the full ranking; it does not re-rank
                ranking = full.filter(pl.col("user_id") == u)["item_id"].to_list()
                want = [i for i in ranking if i in set(allowed)][:k]
                assert restricted.filter(pl.col("user_id") == u)["item_id"].to_list() == want

    # ------------------------------------------------------------------ (i) unfitted
    def test_not_fitted_raises(self, tmp_path: Path) -> None:
        model = type(self).model_factory()
        assert not model.is_fitted
        with pytest.raises(NotFittedError):
            model.recommend([0], k=3)
        with pytest.raises(NotFittedError):
            model.score([0])
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "never")
        assert not (tmp_path / "never").exists()

    # ------------------------------------------------------------------ reproducibility
    def test_refit_is_reproducible(self, fitted: Recommender, data: Dataset) -> None:
        if not self.deterministic:
            pytest.skip("model is random by design")
        again = type(self).model_factory().fit(data)
        np.testing.assert_allclose(
            again.score(list(range(6))), fitted.score(list(range(6))), rtol=self.rtol, atol=1e-6
        )

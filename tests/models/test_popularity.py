"""Popularity and random baselines: contract tests plus their own behaviour."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.models.base import Query
from lmrec.models.popularity import Popularity, RandomModel
from lmrec.testing import RecommenderContract


class TestPopularityContract(RecommenderContract):
    model_factory = staticmethod(lambda: Popularity())
    known_answer = "none"


class TestRandomContract(RecommenderContract):
    model_factory = staticmethod(lambda: RandomModel(seed=7))
    known_answer = "none"


def _toy() -> Dataset:
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3, 3, 3, 4],
            "item_id": [10, 20, 10, 30, 10, 20, 20, 40],
            "timestamp": [1, 2, 3, 4, 5, 6, 7, 8],
            "weight": [1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 1.0],
        }
    )
    return Dataset.from_frames(df)


def test_popularity_counts_distinct_users_by_default() -> None:
    model = Popularity().fit(_toy())
    recs = model.recommend(Query(history=[]), k=4)
    # item 10: 3 users; 20: 2 users (user 3 twice counts once); 30, 40: 1 user, tie -> lower id first
    assert recs["item_id"].to_list() == [10, 20, 30, 40]
    assert recs["score"].to_list() == [3.0, 2.0, 1.0, 1.0]


def test_popularity_count_modes() -> None:
    data = _toy()
    events = Popularity(count="interactions").fit(data).score(Query(history=[]), items=[10, 20])
    weights = Popularity(count="weight").fit(data).score(Query(history=[]), items=[10, 20])
    np.testing.assert_array_equal(events, [[3.0, 3.0]])
    np.testing.assert_array_equal(weights, [[3.0, 11.0]])


def test_popularity_excludes_each_users_history() -> None:
    model = Popularity().fit(_toy())
    recs = model.recommend([1, 4], k=2)
    assert recs.filter(pl.col("user_id") == 1)["item_id"].to_list() == [30, 40]
    assert recs.filter(pl.col("user_id") == 4)["item_id"].to_list() == [10, 20]


def test_random_is_seeded() -> None:
    data = _toy()
    a = RandomModel(seed=3).fit(data).score([1, 2])
    b = RandomModel(seed=3).fit(data).score([1, 2])
    c = RandomModel(seed=4).fit(data).score([1, 2])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a, RandomModel(seed=3).fit(data).score([1, 2]))  # same query, same list


def test_popularity_on_ml100k_matches_peer_numbers(ml100k: Dataset) -> None:
    """Most-popular on ml-100k leave-last-out: peers report Recall@10 .0859, NDCG@10 .0450."""
    from lmrec.data.split import leave_last_out
    from lmrec.evaluation import evaluate

    split = leave_last_out(ml100k)
    model = Popularity().fit(split.train)
    top = model.recommend(Query(history=[]), k=3)["item_id"].to_list()
    assert top == [50, 100, 181]  # Star Wars, Fargo, Return of the Jedi
    res = evaluate(model, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
    assert res.metrics["recall@10"] == pytest.approx(0.0859, abs=1e-4)
    assert res.metrics["ndcg@10"] == pytest.approx(0.0450, abs=2e-4)  # tie order differs slightly

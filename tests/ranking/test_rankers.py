"""Masking, rank_scores, the exact and faiss rankers, and ``Recommender.rank``."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.models.base import EmbeddingRecommender, QueryBatch, as_queries
from lmrec.models.ease import EASE
from lmrec.ranking import ExactRanker, IndexRanker, mask_scores, rank_scores


# ---------------------------------------------------------------------------------------- masking
def test_mask_scores_history_allowed_banned() -> None:
    scores = np.arange(12, dtype=np.float32).reshape(2, 6)
    history = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], dtype=np.float32))
    allowed = np.array([True, True, True, True, False, True])
    out = mask_scores(scores, history, allowed=allowed, banned=np.array([2]))
    assert out is scores  # in place
    inf = -np.inf
    np.testing.assert_array_equal(scores[0], [inf, 1, inf, 3, inf, 5])
    np.testing.assert_array_equal(scores[1], [6, 7, inf, 9, inf, inf])


def test_rank_scores_pads_with_minus_one() -> None:
    scores = np.array([[0.5, 0.9, 0.1], [0.2, 0.2, 0.2]], dtype=np.float32)
    seen = sp.csr_matrix(np.array([[0, 1, 0], [1, 1, 0]], dtype=np.float32))
    idx, val = rank_scores(scores, 4, seen=seen)
    assert idx.shape == val.shape == (2, 4)
    assert idx.tolist() == [[0, 2, -1, -1], [2, -1, -1, -1]]
    assert val[0, 0] == pytest.approx(0.5) and np.isneginf(val[0, 2:]).all() and np.isneginf(val[1, 1:]).all()


def test_rank_scores_ties_go_to_the_lower_index() -> None:
    scores = np.ones((1, 50), np.float32)
    idx, _ = rank_scores(scores, 5, exclude=np.array([0, 3]))
    assert idx.tolist() == [[1, 2, 4, 5, 6]]


# ---------------------------------------------------------------------------------------- rankers
@pytest.fixture()
def vectors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    items = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((8, 16)).astype(np.float32)
    return queries, items


def test_exact_and_faiss_rankers_agree(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    pytest.importorskip("faiss")
    from lmrec.ranking.index import VectorIndex

    queries, items = vectors
    seen = sp.random(8, 300, density=0.05, format="csr", random_state=0, dtype=np.float32)
    allowed = np.ones(300, bool)
    allowed[::7] = False
    banned = np.array([1, 2, 3])
    want = ExactRanker().rank(queries, items, 10, seen=seen, exclude=banned, allowed=allowed)
    for ranker in (IndexRanker(kind="exact"), IndexRanker(VectorIndex(items, kind="exact"))):
        got = ranker.rank(queries, items, 10, seen=seen, exclude=banned, allowed=allowed)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
    # HNSW on 300 items with a generous efSearch finds the exact lists
    got = IndexRanker(kind="hnsw", ef_search=300).rank(queries, items, 10, seen=seen, exclude=banned)
    want = ExactRanker().rank(queries, items, 10, seen=seen, exclude=banned)
    np.testing.assert_array_equal(got[0], want[0])


def test_faiss_ranker_pads_when_few_candidates(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    pytest.importorskip("faiss")
    queries, items = vectors
    allowed = np.zeros(300, bool)
    allowed[[5, 9]] = True
    idx, val = IndexRanker(kind="hnsw").rank(queries, items, 4, allowed=allowed)
    assert idx.shape == (8, 4) and (idx[:, 2:] == -1).all() and np.isneginf(val[:, 2:]).all()
    assert set(idx[:, :2].ravel()) == {5, 9}


# ---------------------------------------------------------------------------------------- Recommender.rank
class _Dot(EmbeddingRecommender):
    """Fixed random item vectors; a query is the sum of its history's vectors."""

    name = "dot_test"

    def _fit(self, data: Dataset) -> None:
        rng = np.random.default_rng(0)
        self.vecs_ = rng.standard_normal((data.n_items, 8)).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        return self.vecs_

    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        return np.asarray(batch.history @ self.vecs_, dtype=np.float32)


def _data() -> Dataset:
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(20), 6)
    items = rng.integers(0, 60, len(users))
    return Dataset.from_frames(pl.DataFrame({"user_id": users, "item_id": items}))


def test_rank_with_exclude_and_allowed() -> None:
    data = _data()
    model = EASE().fit(data)
    u0, u1 = data.user_vocab.ids[:2]
    batch = model.encode_queries(as_queries([u0, u1]))
    seen = [set(batch.history[r].indices) for r in range(2)]
    allowed = np.zeros(model.n_items, bool)
    allowed[:30] = True
    idx, val = model.rank(batch, 8, exclude=np.array([0, 1]), allowed=allowed)
    assert idx.shape == val.shape == (2, 8)
    for r in range(2):
        got = idx[r][idx[r] >= 0]
        assert not (set(got) & seen[r]) and not (set(got) & {0, 1}) and (got < 30).all()
        assert np.all(np.diff(val[r][np.isfinite(val[r])]) <= 0)
    # exclude_seen=False gives the history back
    idx_all, _ = model.rank(batch, model.n_items, exclude_seen=False)
    assert seen[0] <= set(idx_all[0])
    # recommend() is rank() in external ids
    rec = model.recommend(u0, k=8, exclude=[data.item_vocab.ids[0]])
    want, _ = model.rank(model.encode_queries(as_queries(u0)), 8, exclude=np.array([0]))
    assert rec["item_id"].to_list() == data.item_vocab.external(want[0][want[0] >= 0])


def test_embedding_model_ranks_through_a_faiss_ranker() -> None:
    pytest.importorskip("faiss")
    data = _data()
    model = _Dot().fit(data)
    users = list(data.user_vocab.ids[:10])
    want = model.recommend(users, k=5, exclude=[data.item_vocab.ids[3]])
    assert model.set_ranker(IndexRanker(kind="exact")) is model
    got = model.recommend(users, k=5, exclude=[data.item_vocab.ids[3]])
    assert got["item_id"].to_list() == want["item_id"].to_list()
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-5)
    model.set_ranker(ExactRanker())
    assert model.ranker is None

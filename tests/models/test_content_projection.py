"""ContentRecommender(cf_projection=True): content vectors mapped into an SVD space learned on warm items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from lmrec.data.dataset import Dataset
from lmrec.data.images import ItemImages
from lmrec.errors import LmrecError
from lmrec.models.base import Query, Recommender
from lmrec.models.cf_projection import CFProjection
from lmrec.models.content import ContentRecommender

N_ITEMS, N_COLD, N_USERS = 80, 12, 40


def _features(n: int, seed: int) -> np.ndarray:
    """Picture vectors whose taste signal (dim 0: +1 even / -1 odd) is small beside 3 large nuisance
    dims: the regression onto interaction factors has to find dim 0 among them."""
    rng = np.random.default_rng(seed)
    group = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return np.column_stack([0.4 * group, 3.0 * rng.standard_normal((n, 3))]).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> Dataset:
    """Two taste groups (user u likes items of parity u % 2); the last N_COLD items are never taken."""
    rows = [
        (u, i, t)
        for t, (u, i) in enumerate(
            (u, i) for u in range(N_USERS) for i in range(N_ITEMS - N_COLD) if i % 2 == u % 2
        )
    ]
    inter = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    items = pl.DataFrame({"item_id": list(range(N_ITEMS)), "title": [f"item {i}" for i in range(N_ITEMS)]})
    ds = Dataset.from_frames(inter, items=items, name="taste")
    return ds.with_images(ItemImages.from_features(list(range(N_ITEMS)), _features(N_ITEMS, 0), model_id="f"))


def _cold_accuracy(model: Recommender, data: Dataset) -> float:
    """Share of users whose best cold item has their parity."""
    allowed = np.zeros(data.n_items, bool)
    allowed[data.item_vocab.indices(list(range(N_ITEMS - N_COLD, N_ITEMS)))] = True
    batch = model.encode_queries([Query(user_id=u) for u in range(N_USERS)])
    idx, _ = model.rank(batch, 1, allowed=allowed)
    best = data.item_vocab.external(idx[:, 0])
    return float(np.mean([int(b) % 2 == u % 2 for u, b in zip(range(N_USERS), best, strict=True)]))


def _model(**kw: object) -> ContentRecommender:
    return ContentRecommender(modalities=("image",), recency_half_life=None, **kw)


def test_projection_maps_cold_items_to_their_taste_group(data: Dataset) -> None:
    proj = _model(cf_projection=True, projection_factors=4, projection_ridge=1.0).fit(data)
    assert _cold_accuracy(proj, data) == 1.0
    # the space is the SVD's (the board has rank 2: factors with a zero singular value are dropped);
    # cold items are mapped (non-zero) and add nothing to a query's fold-in
    assert proj.item_vectors().shape == (N_ITEMS, 2) and proj.projection_.query_table.shape == (N_ITEMS, 2)
    cold = data.item_vocab.indices(list(range(N_ITEMS - N_COLD, N_ITEMS)))
    assert np.abs(proj.item_vectors()[cold]).sum(axis=1).min() > 0
    np.testing.assert_array_equal(proj.projection_.query_table[cold], 0.0)
    # a huge ridge shrinks the mapping to nothing: every score collapses towards 0
    flat = _model(cf_projection=True, projection_factors=4, projection_ridge=1e9).fit(data)
    assert np.abs(flat.item_vectors()).max() < 1e-5


def test_unseen_history_folds_in_like_a_known_user(data: Dataset) -> None:
    proj = _model(cf_projection=True, projection_factors=4, projection_ridge=1.0).fit(data)
    hist = [i for i in range(N_ITEMS - N_COLD) if i % 2 == 0]
    known = proj.score_batch(proj.encode_queries([Query(user_id=0)]))
    unseen = proj.score_batch(proj.encode_queries([Query(history=hist)]))
    np.testing.assert_allclose(known, unseen, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["ridge", "knn"])
def test_save_load_add_items_and_text_refused(data: Dataset, tmp_path: Path, method: str) -> None:
    proj = ContentRecommender(
        encoder="hashing",
        modalities=("text", "image"),
        recency_half_life=None,
        cf_projection=True,
        projection_factors=4,
        projection_ridge=0.1,
        projection_method=method,
        projection_neighbours=5,
    ).fit(data)
    with pytest.raises(LmrecError, match="cf_projection"):
        proj.score_batch(proj.encode_queries([Query(text="something even")]))
    path = tmp_path / "m"
    proj.save(path)
    back = Recommender.load(path)
    assert isinstance(back, ContentRecommender)
    q = [Query(user_id=u) for u in range(4)]
    np.testing.assert_allclose(
        back.score_batch(back.encode_queries(q)), proj.score_batch(proj.encode_queries(q)), atol=1e-6
    )
    # a new text-only item goes through the same map: not zero, one more row everywhere
    proj.add_items(pl.DataFrame({"item_id": [100], "title": ["item 0"]}))
    assert proj.item_vectors().shape == (N_ITEMS + 1, 2) and proj.projection_.query_table.shape == (
        N_ITEMS + 1,
        2,
    )
    assert np.abs(proj.item_vectors()[-1]).sum() > 0
    np.testing.assert_array_equal(proj.projection_.query_table[-1], 0.0)


def test_knn_projection_gives_a_near_duplicate_its_neighbours_factors() -> None:
    """A cold item whose content nearly equals one warm item's takes that item's factors (sharp
    softmax), while the warm item itself is mapped from its other neighbours; an item without content
    maps to zero; the map is the same after a save round trip."""
    rng = np.random.default_rng(0)
    n_warm, n_users = 30, 50
    content = rng.standard_normal((n_warm + 2, 16)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    content[n_warm] = content[3] + 0.01 * rng.standard_normal(16).astype(np.float32)  # cold twin of item 3
    content[n_warm + 1] = 0.0  # cold, no content
    inter = (rng.random((n_users, n_warm + 2)) < 0.3).astype(np.float64)
    inter[:, n_warm:] = 0.0
    proj = CFProjection("knn", factors=8, neighbours=5, temperature=0.01)
    mapped = proj.fit(content, sp.csr_matrix(inter))
    assert proj.anchor_factors.shape[0] == n_warm  # every non-cold item took someone
    np.testing.assert_allclose(mapped[n_warm], proj.anchor_factors[3], rtol=0.05, atol=1e-3)
    # a warm item is placed by its neighbours, never by its own factors (the same rule as a cold one)
    assert not np.allclose(mapped[3], proj.anchor_factors[3], rtol=0.05, atol=1e-3)
    np.testing.assert_array_equal(mapped[n_warm + 1], 0.0)
    np.testing.assert_array_equal(proj.query_table[n_warm:], 0.0)  # cold items: no fold-in part
    back = CFProjection("knn", neighbours=5, temperature=0.01)
    back.load_state(proj.state())
    np.testing.assert_allclose(back.map(content[n_warm:]), mapped[n_warm:], atol=1e-6)
    with pytest.raises(LmrecError, match="maps 16-d content vectors, got 3-d"):
        proj.map(np.ones((1, 3), np.float32))

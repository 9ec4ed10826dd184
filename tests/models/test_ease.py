"""EASE."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.models.base import Query
from lmrec.models.ease import EASE
from lmrec.testing import RecommenderContract


class TestEASEContract(RecommenderContract):
    model_factory = staticmethod(lambda: EASE(l2=10.0))


class TestEASEWeightedContract(RecommenderContract):
    model_factory = staticmethod(lambda: EASE(l2=1.0, binary=False))


def _data(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.random((30, 12)) < 0.3
    users, items = np.nonzero(x)
    df = pl.DataFrame(
        {"user_id": users, "item_id": items, "weight": rng.integers(1, 6, len(users)).astype(float)}
    )
    return Dataset.from_frames(df)


def test_ease_closed_form() -> None:
    data = _data()
    model = EASE(l2=5.0).fit(data)
    x = data.csr("binary").toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.weights_, b, atol=1e-6)
    assert (np.diag(model.weights_) == 0).all()
    np.testing.assert_allclose(model.score(3)[0], x[3] @ b, atol=1e-5)


def test_ease_b_solves_the_constrained_ridge() -> None:
    """B minimises |X - XB|² + λ|B|² subject to diag(B) = 0: the KKT gradient is diagonal."""
    data = _data(1)
    lam = 3.0
    b = EASE(l2=lam).fit(data).weights_.astype(np.float64)
    x = data.csr("binary").toarray()
    grad = x.T @ (x @ b - x) + lam * b
    off = grad - np.diag(np.diag(grad))
    assert np.abs(off).max() < 1e-4


def test_ease_weighted_uses_weights() -> None:
    data = _data()
    binary = EASE(l2=5.0).fit(data)
    weighted = EASE(l2=5.0, binary=False).fit(data)
    assert not np.allclose(binary.weights_, weighted.weights_)
    hist = Query(history=[0, 1], weights=[5.0, 1.0])
    assert binary.score(hist)[0] == pytest.approx(binary.score(Query(history=[0, 1]))[0])


def test_ease_fit_peak_memory_is_what_the_guard_checks() -> None:
    """The fit's peak (numpy allocations, LAPACK's copies included) stays within ``memory_needed``:
    the Gram matrix and the inverse, n² float64 each, and no column-order copies of either."""
    import tracemalloc

    from lmrec.models.ease import memory_needed

    rng = np.random.default_rng(0)
    n = 1500
    users, items = np.nonzero(rng.random((400, n)) < 0.05)
    data = Dataset.from_frames(pl.DataFrame({"user_id": users, "item_id": items}))
    assert data.n_items == n
    tracemalloc.start()
    try:
        EASE(l2=10.0).fit(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= memory_needed(n) * 1.1, (peak / (8 * n * n), memory_needed(n) / (8 * n * n))
    assert peak >= 2 * 8 * n * n  # the two n x n float64 arrays really were made


def test_ease_refuses_huge_catalogues() -> None:
    with pytest.raises(LmrecError, match="max_items=5"):
        EASE(max_items=5).fit(_data())


def test_ease_rejects_bad_config() -> None:
    with pytest.raises(ValueError):
        EASE(l2=0.0)
    with pytest.raises(ValueError):
        EASE(lambda_=1.0)


def test_ease_reaches_target_on_ml100k(ml100k: Dataset) -> None:
    """Tuned on validation (benchmarks/tune_cf.py); RecBole EASE gets NDCG@10 .0706 on this split."""
    from lmrec.data.split import leave_last_out
    from lmrec.evaluation import evaluate

    split = leave_last_out(ml100k)
    model = EASE().fit(split.train)  # defaults are the tuned settings
    assert model.config.l2 == 100.0
    res = evaluate(model, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
    assert res.metrics["ndcg@10"] >= 0.0706
    assert res.metrics["recall@10"] >= 0.1347

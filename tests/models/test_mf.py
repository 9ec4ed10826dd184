"""ALS and BPR through implicit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lmrec.data.dataset import Dataset
from lmrec.models.base import Query
from lmrec.models.mf import ALS, BPR
from lmrec.testing import RecommenderContract, make_checkerboard


class TestALSContract(RecommenderContract):
    model_factory = staticmethod(lambda: ALS(factors=8, iterations=10, regularization=0.1, num_threads=1))


class TestBPRContract(RecommenderContract):
    model_factory = staticmethod(
        lambda: BPR(factors=8, iterations=200, learning_rate=0.05, regularization=0.01, num_threads=1)
    )


def test_als_fold_in_equals_the_als_user_step() -> None:
    data = make_checkerboard()
    model = ALS(factors=4, iterations=5, alpha=3.0, regularization=0.5, num_threads=1).fit(data)
    y = model.item_vectors().astype(np.float64)
    hist = [0, 2, 4]
    c = np.zeros(y.shape[0])
    c[hist] = 3.0  # alpha * 1
    a = y.T @ y + 0.5 * np.eye(4) + y[hist].T @ np.diag(c[hist] - 1.0) @ y[hist]
    want = np.linalg.solve(a, y[hist].T @ c[hist])
    got = model.query_vectors(model.encode_queries([Query(history=hist)]))[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_fit_raises_no_blas_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    import implicit.utils

    # implicit checks the BLAS thread pool once per process; make it check again here
    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ALS(factors=4, iterations=2).fit(make_checkerboard())
        BPR(factors=4, iterations=2).fit(make_checkerboard())


def test_bpr_fold_in_is_batch_independent() -> None:
    model = BPR(factors=8, iterations=50, learning_rate=0.05).fit(make_checkerboard())
    q = Query(history=[1, 3, 5])
    alone = model.score(q)
    batched = model.score([Query(history=[0, 2]), q, Query(user_id=7)])[1]
    np.testing.assert_allclose(alone[0], batched, rtol=1e-6)


def test_bpr_keeps_implicit_bias_column() -> None:
    model = BPR(factors=6, iterations=5).fit(make_checkerboard())
    assert model.item_vectors().shape == (20, 7)
    u = model.query_vectors(model.encode_queries([Query(user_id=0), Query(history=[])]))
    np.testing.assert_array_equal(u[:, -1], [1.0, 1.0])


def test_mf_seed_changes_the_fit() -> None:
    data: Dataset = make_checkerboard()
    a = ALS(factors=4, iterations=3, seed=1).fit(data).item_vectors()
    b = ALS(factors=4, iterations=3, seed=2).fit(data).item_vectors()
    assert not np.allclose(a, b)


@pytest.mark.parametrize("cls", [ALS, BPR])
def test_mf_config_validation(cls: type) -> None:
    with pytest.raises(ValueError):
        cls(factors=0)


def test_als_reaches_target_on_ml100k(ml100k: Dataset) -> None:
    """Tuned on validation (benchmarks/tune_cf.py); implicit ALS (64 factors) gets NDCG@10 .0717 here."""
    from lmrec.data.split import leave_last_out
    from lmrec.evaluation import evaluate

    split = leave_last_out(ml100k)
    model = ALS(num_threads=2).fit(split.train)  # defaults are the tuned settings
    assert (model.config.factors, model.config.regularization, model.config.alpha) == (32, 0.01, 1.0)
    res = evaluate(model, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
    assert res.metrics["ndcg@10"] >= 0.0700


@pytest.mark.slow
def test_bpr_beats_peer_on_ml100k(ml100k: Dataset) -> None:
    """RecBole BPR gets NDCG@10 .0673 on this split; ours is tuned on validation (~20 s, hence slow)."""
    from lmrec.data.split import leave_last_out
    from lmrec.evaluation import evaluate

    split = leave_last_out(ml100k)
    model = BPR().fit(split.train)
    res = evaluate(model, split, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
    assert res.metrics["ndcg@10"] >= 0.0673


def _has_gpu_als() -> bool:
    from lmrec.models.mf import _gpu_als_unavailable

    return _gpu_als_unavailable() is None


def test_als_use_gpu_false_and_auto_without_cuda_train_on_the_cpu() -> None:
    assert not ALS(use_gpu=False).on_gpu()
    if not _has_gpu_als():
        assert not ALS().on_gpu()  # None = only when implicit reports a usable GPU


@pytest.mark.skipif(_has_gpu_als(), reason="this machine has implicit's CUDA ALS")
def test_als_use_gpu_true_without_cuda_names_what_is_missing() -> None:
    with pytest.raises(RuntimeError, match=r"use_gpu=True, but .*; set use_gpu to None or False"):
        ALS(use_gpu=True, factors=4, iterations=2).fit(make_checkerboard())


@pytest.mark.skipif(not _has_gpu_als(), reason="needs a GPU and implicit's CUDA extension with rmm-cu13")
def test_als_on_gpu_ranks_like_the_cpu_fit(ml100k: Dataset) -> None:
    """GPU and CPU solvers differ in float detail; their fold-in rankings must agree closely."""
    from lmrec.data.split import leave_last_out
    from lmrec.evaluation import evaluate

    split = leave_last_out(ml100k)
    gpu = ALS(use_gpu=True).fit(split.train)
    cpu = ALS(use_gpu=False, num_threads=1).fit(split.train)
    assert gpu.on_gpu() and gpu.item_vectors().shape == cpu.item_vectors().shape
    n_gpu = evaluate(gpu, split, ks=(10,), phase="valid")["ndcg@10"]
    n_cpu = evaluate(cpu, split, ks=(10,), phase="valid")["ndcg@10"]
    assert abs(n_gpu - n_cpu) < 0.01, (n_gpu, n_cpu)

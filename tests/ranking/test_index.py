"""faiss index: exact matches brute force; HNSW/IVF reach recall@10 >= 0.95 vs exact; selectors."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.ranking import topk
from lmrec.ranking.index import VectorIndex, clustered_vectors


@pytest.fixture(scope="module")
def catalogue() -> np.ndarray:
    return clustered_vectors(20_000, 32, n_clusters=200, seed=1)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered_vectors(300, 32, n_clusters=200, seed=1)  # same centres, fresh points


def test_auto_picks_exact_below_threshold(rng: np.random.Generator) -> None:
    x = rng.standard_normal((500, 8)).astype(np.float32)
    assert VectorIndex(x).kind == "exact"
    assert VectorIndex(x, threshold=100).kind == "hnsw"


def test_exact_equals_brute_force(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    index = VectorIndex(x, kind="exact")
    ids, scores = index.search(q, 10)
    ref_ids, ref_scores = topk(q @ x.T, 10)
    assert np.array_equal(ids, ref_ids)
    assert np.allclose(scores, ref_scores, atol=1e-4)
    assert index.recall(q).recall == 1.0


def test_exclude_and_allow(rng: np.random.Generator) -> None:
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    q = rng.standard_normal((1, 16)).astype(np.float32)
    for kind in ("exact", "hnsw", "ivf"):
        index = VectorIndex(x, kind=kind, nlist=16, nprobe=16)
        top, _ = index.search(q, 5)
        ids, _ = index.search(q, 5, exclude=top[0, :3])
        assert not set(top[0, :3]) & set(ids[0])
        assert ids[0, 0] == top[0, 3]
        allowed = np.zeros(3000, dtype=bool)
        allowed[::7] = True
        ids, scores = index.search(q, 5, allowed=allowed, exclude=np.array([0]))
        assert np.all(ids[0] % 7 == 0) and 0 not in ids[0]
        # few allowed items: answered by an exact scan of exactly those
        few = np.zeros(3000, dtype=bool)
        few[[5, 9]] = True
        ids, scores = index.search(q, 5, allowed=few)
        assert sorted(ids[0, :2]) == [5, 9] and np.all(ids[0, 2:] == -1) and np.all(np.isinf(scores[0, 2:]))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_recall_at_10_vs_exact(kind: str, catalogue: np.ndarray, queries: np.ndarray) -> None:
    index = VectorIndex(catalogue, kind=kind, hnsw_m=16, ef_construction=40, ef_search=16, nprobe=2)
    report = index.tune(queries, k=10, target=0.95)
    assert report.recall >= 0.95, report
    assert report.n_queries == len(queries) and report.k == 10
    # tuning raised the search parameter from its deliberately low start
    assert index.search_param > (16 if kind == "hnsw" else 2)


def test_add_vectors_become_searchable(catalogue: np.ndarray) -> None:
    index = VectorIndex(catalogue[:5000], kind="hnsw")
    new = catalogue[-3:] * 1.0
    ids = index.add(new)
    assert list(ids) == [5000, 5001, 5002] and len(index) == 5003
    found, _ = index.search(new, 1)
    assert list(found[:, 0]) == [5000, 5001, 5002]

"""faiss index: exact matches brute force; HNSW/IVF reach recall@10 >= 0.95 vs exact; selectors."""

from __future__ import annotations

import os

import faiss
import numpy as np
import pytest

from lmrec.ranking import topk
from lmrec.ranking.index import DEFAULT_REFINE, VectorIndex, default_nlist, default_pq_m
from lmrec.ranking.index_recall import exact_truth
from lmrec.ranking.synthetic import clustered_vectors


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
    assert VectorIndex(x, threshold=100, ivfpq_threshold=400).kind == "ivfpq"


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
    for kind in ("exact", "hnsw", "ivf", "ivfpq"):
        index = VectorIndex(x, kind=kind, nlist=16, nprobe=16)
        top, _ = index.search(q, 5)
        ids, _ = index.search(q, 5, exclude=top[0, :3])
        assert not set(top[0, :3]) & set(ids[0])
        assert ids[0, 0] == top[0, 3], kind
        allowed = np.zeros(3000, dtype=bool)
        allowed[::7] = True
        ids, scores = index.search(q, 5, allowed=allowed, exclude=np.array([0]))
        assert np.all(ids[0] % 7 == 0) and 0 not in ids[0]
        # few allowed items: answered by an exact scan of exactly those
        few = np.zeros(3000, dtype=bool)
        few[[5, 9]] = True
        ids, scores = index.search(q, 5, allowed=few)
        assert sorted(ids[0, :2]) == [5, 9] and np.all(ids[0, 2:] == -1) and np.all(np.isinf(scores[0, 2:]))


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_ann_recall_at_10_vs_exact(kind: str, catalogue: np.ndarray, queries: np.ndarray) -> None:
    index = VectorIndex(catalogue, kind=kind, hnsw_m=16, ef_construction=40, ef_search=16, nprobe=2, refine=2)
    report = index.tune(queries, k=10, target=0.95)
    assert report.recall >= 0.95, report
    assert report.n_queries == len(queries) and report.k == 10
    # tuning raised the search parameter from its deliberately low start
    assert index.search_param > (16 if kind == "hnsw" else 2)


@pytest.fixture(scope="module")
def latent() -> tuple[np.ndarray, np.ndarray]:
    """Clustered vectors with a low intrinsic dimension (what MF and text embeddings look like)."""
    x = clustered_vectors(30_000, 64, n_clusters=300, intrinsic_dim=16, seed=2)
    return x, clustered_vectors(200, 64, n_clusters=300, intrinsic_dim=16, seed=2)


@pytest.fixture(scope="module")
def pq_index(latent: tuple[np.ndarray, np.ndarray]) -> VectorIndex:
    return VectorIndex(latent[0], kind="ivfpq", seed=0)


def test_ivfpq_defaults_reach_recall_on_clustered_data(
    latent: tuple[np.ndarray, np.ndarray], pq_index: VectorIndex
) -> None:
    x, q = latent
    index = pq_index
    # 64 dims -> 16 one-byte codes; 4·sqrt(30k) = 692 -> 512 lists
    assert (index.pq_m, index.nlist, index.refine) == (16, 512, DEFAULT_REFINE)
    assert index.recall(q).recall >= 0.9
    mem = index.memory_bytes()
    # the compressed structure is 16 code bytes + an 8-byte id per item (+ centroids)
    assert mem["search"] < 30 * len(x) + 512 * 64 * 4 and mem["vectors"] == len(x) * 64 * 4


def test_ivfpq_refine_is_what_lifts_recall(latent: tuple[np.ndarray, np.ndarray]) -> None:
    x, q = latent
    index = VectorIndex(x, kind="ivfpq", nprobe=64, refine=1, seed=1)
    coarse = index.recall(q).recall
    index.refine = 8
    refined = index.recall(q).recall
    assert coarse < 0.85 < 0.95 <= refined
    # tune() from compressed-only ranking: more lists stop helping, so it raises refine
    index.nprobe, index.refine = 4, 1
    report = index.tune(q, target=0.97)
    assert report.recall >= 0.97 and index.refine > 1


def test_ivfpq_rerank_matches_exact_scores_and_orders(
    latent: tuple[np.ndarray, np.ndarray], pq_index: VectorIndex
) -> None:
    x, q = latent
    index = pq_index
    ids, scores = index.search(q[:20], 10)
    assert np.allclose(scores, np.einsum("qkd,qd->qk", x[ids], q[:20]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # seen items (per-query exclusions) never come back, and the list stays full
    ex = ids[0, :5]
    again, _ = index.search(q[:1], 10, exclude=ex)
    assert not set(ex) & set(again[0]) and np.all(again[0] >= 0)


def test_ivfpq_errors(rng: np.random.Generator) -> None:
    x = rng.standard_normal((1000, 30)).astype(np.float32)
    with pytest.raises(ValueError, match="pq_m=4 must divide the vector dimension 30"):
        VectorIndex(x, kind="ivfpq", pq_m=4)
    with pytest.raises(ValueError, match="at least 256 vectors"):
        VectorIndex(x[:100], kind="ivfpq")
    with pytest.raises(ValueError, match="refine must be >= 1"):
        VectorIndex(x, kind="ivfpq", refine=0)
    with pytest.raises(ValueError, match="auto, exact, hnsw, ivf or ivfpq"):
        VectorIndex(x, kind="pq")  # type: ignore[arg-type]


def test_defaults_from_size_and_dim() -> None:
    assert default_nlist(1_000_000) == 2048 and default_nlist(10_000_000) == 8192
    assert default_nlist(100) == 2 and default_nlist(10) == 1
    assert default_pq_m(64) == 16 and default_pq_m(30) == 6 and default_pq_m(3) == 1


def test_ivfpq_add_and_vectors_copy(latent: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = latent
    index = VectorIndex(x[:20_000], kind="ivfpq", nlist=128, nprobe=128)
    ids = index.add(x[-3:])
    assert list(ids) == [20_000, 20_001, 20_002]
    found, _ = index.search(x[-3:], 1)
    assert list(found[:, 0]) == [20_000, 20_001, 20_002]
    v = index.vectors()
    assert v.shape == (20_003, 64) and np.array_equal(v[-3:], x[-3:])


def test_add_vectors_become_searchable(catalogue: np.ndarray) -> None:
    index = VectorIndex(catalogue[:5000], kind="hnsw")
    new = catalogue[-3:] * 1.0
    ids = index.add(new)
    assert list(ids) == [5000, 5001, 5002] and len(index) == 5003
    found, _ = index.search(new, 1)
    assert list(found[:, 0]) == [5000, 5001, 5002]


def test_recall_with_exclusions_measures_what_is_served(rng: np.random.Generator) -> None:
    """Each query's excluded items leave both the exact and the approximate answer: an exact index
    has recall 1 with them; an index that ignored them would be scored against items it may not
    return."""
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    q = rng.standard_normal((30, 16)).astype(np.float32)
    index = VectorIndex(x, kind="exact")
    top, _ = index.search(q, 20)
    seen = [row[:5] for row in top]  # each query's five best items excluded
    assert index.recall(q, 10, exclude=seen).recall == 1.0
    truth = exact_truth(index, q, 10, seen)
    for t, e, row in zip(truth, seen, top, strict=True):
        assert not np.isin(t, e).any() and np.array_equal(t, row[5:15])
    hnsw = VectorIndex(x, kind="hnsw", ef_search=16)
    report = hnsw.tune(q, 10, target=0.99, exclude=seen)
    assert report.recall >= 0.99 and report.n_queries == 30
    with pytest.raises(ValueError, match="2 arrays for 30 queries"):
        index.recall(q, exclude=seen[:2])


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_all_zero_items_stay_out_of_the_lists_but_are_still_answers(
    kind: str, rng: np.random.Generator
) -> None:
    """Items without a vector score 0 for every query: approximate kinds keep them out of the HNSW
    graph or the inverted lists (one list of identical codes every query scanned) and fill them in,
    lowest index first, where fewer than k indexed items score above 0: the exact scan's answer
    either way."""
    x = np.abs(rng.standard_normal((4000, 16))).astype(np.float32)  # every inner product with q > 0 ...
    zero = np.sort(rng.choice(4000, 600, replace=False))
    x[zero] = 0
    index = VectorIndex(x, kind=kind, nlist=16, nprobe=16, refine=64, seed=0)  # type: ignore[arg-type]
    assert int(index._index.ntotal) == 3400 and len(index._zero) == 600
    if kind != "hnsw":
        assert index.memory_bytes()["search"] < 4000 * 200
    exact = VectorIndex(x, kind="exact")
    pos = np.abs(rng.standard_normal((5, 16))).astype(np.float32)
    ids, _ = index.search(pos, 10)
    assert not np.isin(ids, zero).any()  # ... for these queries: no zero item belongs in a top 10
    neg = -pos  # ... and below 0 for these: the zero items are the top
    ex = zero[:3]
    got, val = index.search(neg, 10, exclude=ex)
    want, want_val = exact.search(neg, 10, exclude=ex)
    # all tie at 0: the lowest eligible indices, in order (faiss's flat scan keeps the same ten,
    # in its heap's order)
    assert np.array_equal(got, np.tile(zero[3:13], (5, 1))) and (val == 0).all()
    assert np.array_equal(np.sort(want, axis=1), got) and (want_val == 0).all()
    # items added later: a zero vector joins the zero items, others the lists
    new = index.add(np.vstack([np.zeros(16, np.float32), np.full(16, 10, np.float32)]))
    assert index._zero[-1] == new[0]
    assert index.search(np.ones((1, 16), np.float32), 1)[0][0, 0] == new[1]


def test_the_build_uses_every_core_and_gives_the_serving_setting_back(rng: np.random.Generator) -> None:
    """A server searches on one faiss thread; its index build (HNSW inserts) runs on all of them."""
    seen: list[int] = []
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        x = rng.standard_normal((500, 8)).astype(np.float32)
        VectorIndex(x, kind="hnsw", progress=lambda done, total: seen.append(faiss.omp_get_max_threads()))
        assert seen and seen[0] == len(os.sched_getaffinity(0))
        assert faiss.omp_get_max_threads() == 1
    finally:
        faiss.omp_set_num_threads(before)

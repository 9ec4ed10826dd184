"""Fast metrics against naive reference implementations (Hypothesis) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrec.data.split import ValidationData
from lmrec.evaluation import metrics as M


def naive(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    top = [i for i in ranked[:k] if i >= 0]  # -1 pads a short list: no item there
    hits = [1 if i in relevant else 0 for i in top]
    n_rel = len(relevant)
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(n_rel, k)))
    first = next((r for r, h in enumerate(hits) if h), None)
    ap = 0.0
    found = 0
    for r, h in enumerate(hits):
        if h:
            found += 1
            ap += found / (r + 1)
    return {
        "recall": sum(hits) / n_rel if n_rel else 0.0,
        "precision": sum(hits) / k,
        "ndcg": dcg / idcg if idcg else 0.0,
        "mrr": 1 / (first + 1) if first is not None else 0.0,
        "map": ap / min(n_rel, k) if n_rel else 0.0,
        "hit_rate": float(any(hits)),
    }


def naive_auc(scores: np.ndarray, relevant: set[int]) -> float:
    pos = [scores[i] for i in relevant]
    neg = [scores[j] for j in range(len(scores)) if j not in relevant and np.isfinite(scores[j])]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


@st.composite
def ranking_case(draw):
    n_items = draw(st.integers(3, 30))
    n_users = draw(st.integers(1, 6))
    k = draw(st.integers(1, n_items))
    lists, rels = [], []
    for _ in range(n_users):
        perm = draw(st.permutations(list(range(n_items))))
        # a short list (fewer candidates than k: everything else seen or excluded) ends in -1 entries
        length = draw(st.integers(0, k))
        lists.append(list(perm)[:length] + [-1] * (k - length))
        rels.append(
            set(draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=n_items, unique=True)))
        )
    return n_items, k, lists, rels


@settings(max_examples=150, deadline=None)
@given(ranking_case())
def test_ranking_metrics_match_naive(case):
    n_items, k, lists, rels = case
    top = np.array(lists, dtype=np.int64)
    rows = [u for u, r in enumerate(rels) for _ in r]
    cols = [i for r in rels for i in sorted(r)]
    targets = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(rels), n_items))
    pop = np.arange(n_items, dtype=np.float64)
    for kk in sorted({1, k}):
        fast = M.ranking_metrics(top, targets, [kk])
        for u, (ranked, rel) in enumerate(zip(lists, rels, strict=True)):
            ref = naive(ranked, rel, kk)
            for name, value in ref.items():
                assert math.isclose(fast[f"{name}@{kk}"][u], value, abs_tol=1e-9), (name, kk, u)
        # beyond accuracy: only real items count, an empty list has no novelty (NaN, no warning)
        shown = [[i for i in ranked[:kk] if i >= 0] for ranked in lists]
        assert M.coverage(top, n_items, kk) == len({i for s in shown for i in s}) / n_items
        novelty = M.novelty(top, pop, 10, kk)
        for u, items in enumerate(shown):
            want = np.mean([-math.log2((pop[i] + 1) / 11) for i in items]) if items else math.nan
            assert math.isclose(novelty[u], want, abs_tol=1e-9) or (
                math.isnan(want) and math.isnan(novelty[u])
            )


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 25), st.data())
def test_auc_matches_naive(n_items, data):
    scores = np.array(
        data.draw(st.lists(st.integers(-3, 3), min_size=n_items, max_size=n_items)), dtype=np.float64
    )
    rel = set(data.draw(st.lists(st.integers(0, n_items - 1), min_size=1, max_size=n_items - 1, unique=True)))
    targets = sp.csr_matrix((np.ones(len(rel)), ([0] * len(rel), sorted(rel))), shape=(1, n_items))
    assert math.isclose(M.auc_per_user(scores[None, :], targets)[0], naive_auc(scores, rel), abs_tol=1e-12)


def test_auc_ignores_masked_negatives_and_ranks_masked_positive_last():
    scores = np.array([[3.0, -np.inf, 1.0, 2.0]])
    targets = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, 4))
    # negatives are items 0 and 2 (item 1 is masked): the positive beats one of two
    assert M.auc_per_user(scores, targets)[0] == 0.5


def test_hand_computed_ndcg_and_map():
    top = np.array([[5, 1, 7, 2]])
    targets = sp.csr_matrix(([1.0, 1.0], ([0, 0], [1, 2])), shape=(1, 8))
    out = M.ranking_metrics(top, targets, [4])
    assert math.isclose(out["ndcg@4"][0], (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert math.isclose(out["map@4"][0], (1 / 2 + 2 / 4) / 2)
    assert out["mrr@4"][0] == 0.5
    assert out["recall@4"][0] == 1.0


def test_beyond_accuracy():
    top = np.array([[0, 1], [0, 2]])
    assert M.coverage(top, 4, 2) == 0.75
    pop = np.array([9.0, 0.0, 4.0, 0.0])
    nov = M.novelty(top, pop, n_users=9, k=2)
    assert math.isclose(nov[0], (-math.log2(10 / 10) - math.log2(1 / 10)) / 2)
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    ild = M.intra_list_diversity(top, feats, 2)
    assert ild[0] == 1.0 and ild[1] == 0.0


def test_validation_metrics_known_answer() -> None:
    # 2 users, 5 items; user 0's target item 3 ranks 2nd once seen item 4 is masked; user 1 misses
    scores = np.array([[0.1, 0.9, 0.0, 0.5, 1.0], [0.9, 0.8, 0.7, 0.6, 0.0]], dtype=np.float32)
    valid = ValidationData(
        users=np.array([0, 1]), targets=sp.csr_matrix(np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]))
    )
    seen = sp.csr_matrix(np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=np.float32))
    m = M.validation_metrics(lambda u: scores[u], valid, seen, k=2)
    assert m["ndcg@2"] == pytest.approx((1 / np.log2(3)) / 2)
    assert m["recall@2"] == pytest.approx(0.5)

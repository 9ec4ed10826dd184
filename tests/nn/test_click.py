"""Click-probability head and its metrics (AUC, log-loss, precision, recall)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrec.nn.click import ClickHead, click_metrics, roc_auc

torch.set_num_threads(1)


def _naive_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=40).filter(
        lambda xs: 0 < sum(x[0] for x in xs) < len(xs)
    )
)
@settings(max_examples=100, deadline=None)
def test_auc_matches_pairwise_definition(pairs: list[tuple[bool, int]]) -> None:
    y = np.array([p[0] for p in pairs], dtype=np.int64)
    s = np.array([p[1] for p in pairs], dtype=np.float64) / 6  # coarse scores: many ties
    assert roc_auc(y, s) == pytest.approx(_naive_auc(y, s))


def test_auc_extremes_and_single_class() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5
    assert math.isnan(roc_auc([1, 1], [0.1, 0.9]))


def test_click_metrics_known_values() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.6, 0.4, 0.1])
    m = click_metrics(y, p)
    assert m["auc"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(0.5)  # predicted positive: 0.9 (hit), 0.6 (miss)
    assert m["recall"] == pytest.approx(0.5)
    want = -np.mean([np.log(0.9), np.log(0.4), np.log(0.4), np.log(0.9)])
    assert m["log_loss"] == pytest.approx(want)
    assert m["positive_rate"] == 0.5 and m["n"] == 4
    none = click_metrics([1, 0], [0.2, 0.1])
    assert math.isnan(none["precision"]) and none["recall"] == 0.0
    assert np.isfinite(click_metrics([1, 0], [0.0, 1.0])["log_loss"])  # clipped, not infinite


@pytest.mark.parametrize(
    ("y", "p", "match"),
    [
        ([1, 0], [0.5], "one length"),
        ([2, 0], [0.5, 0.5], "0 or 1"),
        ([1, 0], [1.5, 0.2], r"\[0, 1\]"),
        ([], [], "at least"),
    ],
)
def test_click_metrics_rejects_bad_input(y: list[int], p: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        click_metrics(y, p)


def test_click_head_learns_calibrated_probabilities() -> None:
    """Items near the query direction are clicked; the head learns it and its rate matches."""
    torch.manual_seed(0)
    dim = 8
    head = ClickHead(dim, hidden=16, dropout=0.0, detach=False)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    items = torch.randn(50, dim)
    for _ in range(300):
        h = torch.randn(64, dim)
        pos = items[(h @ items.T).argmax(1)]
        neg = items[torch.randint(0, 50, (64, 4))]
        loss = head.loss(h, pos, neg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        h = torch.randn(500, dim)
        pos = items[(h @ items.T).argmax(1)]
        neg = items[torch.randint(0, 50, (500, 4))]
        p = torch.cat([head.probability(h, pos), head.probability(h[:, None], neg).flatten()]).numpy()
    y = np.r_[np.ones(500), np.zeros(2000)]
    m = click_metrics(y, p)
    assert m["auc"] > 0.9
    assert m["log_loss"] < 0.35  # predicting the base rate 0.2 everywhere would give 0.50
    # trained at 1 positive : 4 negatives, the mean prediction sits near that base rate
    assert 0.12 < m["mean_probability"] < 0.3


def test_detached_head_sends_no_gradient_to_the_encoder() -> None:
    h = torch.randn(4, 8, requires_grad=True)
    e = torch.randn(4, 8, requires_grad=True)
    ClickHead(8, detach=True).loss(h, e, e[:, None]).backward()
    assert h.grad is None and e.grad is None
    ClickHead(8, detach=False).loss(h, e, e[:, None]).backward()
    assert h.grad is not None and e.grad is not None

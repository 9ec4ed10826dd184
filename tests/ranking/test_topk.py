"""The shared top-k kernel: ties go to the lower item index, whatever the code path."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lmrec.ranking import topk


def _reference_topk(scores: np.ndarray, k: int) -> np.ndarray:
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))  # score desc, then index asc
        out.append(order[:k])
    return np.array(out)


@settings(max_examples=150, deadline=None)
@given(
    scores=arrays(
        np.float32,
        st.tuples(st.integers(1, 5), st.integers(1, 300)),
        elements=st.sampled_from([0.0, 1.0, 2.0, 3.5, -np.inf]),
    ),
    k=st.integers(1, 320),
)
def test_topk_breaks_ties_by_lower_index(scores: np.ndarray, k: int) -> None:
    idx, val = topk(scores, k)
    want = _reference_topk(scores, min(k, scores.shape[1]))
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(val, np.take_along_axis(scores, want, axis=1))


def test_topk_large_tie_block_keeps_lowest_indices() -> None:
    scores = np.zeros((2, 2000), np.float32)
    scores[0, 1500] = 1.0
    scores[1, :] = 5.0
    idx, _ = topk(scores, 10)  # the partition path with a tie block far larger than k
    assert idx[0].tolist() == [1500, *range(9)]
    assert idx[1].tolist() == list(range(10))


def test_topk_edge_shapes() -> None:
    idx, val = topk(np.zeros((0, 5), np.float32), 3)
    assert idx.shape[0] == 0 and val.shape[0] == 0
    idx, _ = topk(np.array([[1.0, 2.0]], np.float32), 5)
    assert idx.tolist() == [[1, 0]]

"""Query resolution helpers: the history matrix every request builds."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lmrec.models.query import _history_matrix


def _coo_reference(seqs: list[np.ndarray], wts: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
    m = sp.csr_matrix(
        (np.concatenate(wts), (rows, np.concatenate(seqs))), shape=(len(seqs), n_items), dtype=np.float32
    )
    m.sum_duplicates()
    return m


def test_history_matrix_is_the_summed_sorted_csr_with_and_without_repeated_items() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        n_items = int(rng.integers(1, 30))
        seqs = [rng.integers(0, n_items, int(rng.integers(0, 8))) for _ in range(int(rng.integers(1, 5)))]
        if trial % 2:  # no repeats: the direct path
            seqs = [rng.permutation(np.unique(s)) for s in seqs]
        wts = [rng.random(len(s)).astype(np.float32) for s in seqs]
        got, want = _history_matrix(seqs, wts, n_items), _coo_reference(seqs, wts, n_items)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.data, want.data)
    empty = _history_matrix([], [], 5)
    assert empty.shape == (0, 5) and empty.nnz == 0

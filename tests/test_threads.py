"""single_blas_thread: one BLAS thread inside the block, the previous counts restored after."""

from __future__ import annotations

import scipy.linalg  # noqa: F401  (loads scipy's BLAS before the first call)
from threadpoolctl import threadpool_info, threadpool_limits

from lmrec._threads import single_blas_thread


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_limits_inside_and_restores_after() -> None:
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        with single_blas_thread():
            assert set(_blas_threads()) == {1}
        assert _blas_threads() == before


def test_nothing_to_do_when_already_single_threaded() -> None:
    with threadpool_limits(1, user_api="blas"), single_blas_thread():
        assert set(_blas_threads()) == {1}

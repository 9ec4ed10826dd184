"""Ranking fixtures: one faiss and one BLAS thread per test (tiny searches on a shared machine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    try:
        import faiss
    except ModuleNotFoundError:  # the exact path needs no faiss
        with threadpool_limits(1, user_api="blas"):
            yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        yield
    faiss.omp_set_num_threads(before)

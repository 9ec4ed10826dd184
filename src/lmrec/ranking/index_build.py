"""Building the faiss structures behind :class:`~lmrec.ranking.index.VectorIndex`.

The sizes an IVF or IVF-PQ index gets by default (:func:`default_nlist`, :func:`default_pq_m`), the
HNSW graph (:func:`build_hnsw`) and the trained IVF / IVF-PQ lists (:func:`build_ivf`), the chunked
adds every build uses, and the thread setting a build runs under (:class:`build_threads`).
:class:`~lmrec.ranking.index.VectorIndex` decides which items go in (it keeps all-zero vectors out
of the approximate structures) and searches what these functions build.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import faiss
import numpy as np

#: HNSW inserts in batches of this many: each batch is inserted level by level on every core. Over
#: the 1M ALS vectors, batches of 100k gave recall@10 0.974 at efSearch 64 (runs/exp/hnsw.txt) where
#: one batch of all of them fell below 0.95 and was tuned up to efSearch 128 (twice the search);
#: progress is reported per batch
HNSW_ADD_CHUNK = 100_000


def default_nlist(n: int) -> int:
    """IVF-PQ lists for ``n`` vectors: the power of two at or below ``4·√n`` (faiss's guideline is
    4–16·√n), so lists hold ~250 items at 1M and ~800 at 10M; at least 1, at most ``n // 39``
    (k-means wants ~39 points a centroid)."""
    target = max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
    return 1 << (target.bit_length() - 1)


def default_pq_m(dim: int) -> int:
    """Sub-quantizers for ``dim``: one byte per 4 dimensions (16 bytes for 64-dim vectors), the
    largest divisor of ``dim`` not above ``dim / 4``; 1 for tiny dims."""
    for m in range(max(1, dim // 4), 0, -1):
        if dim % m == 0:
            return m
    return 1


def ivf_shape(kind: str, n: int, d: int, nlist: int | None, pq_m: int | None) -> tuple[int, int | None]:
    """``(nlist, pq_m)`` of an ``"ivf"`` or ``"ivfpq"`` index over ``n`` vectors of dimension ``d``:
    the given values or the defaults; ``pq_m`` is ``None`` for plain IVF."""
    if kind == "ivfpq":
        nlist = nlist or default_nlist(n)
        pq_m = pq_m or default_pq_m(d)
        if d % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the vector dimension {d}")
        if n < 256:  # 8-bit codes: every sub-quantizer trains 256 centroids
            raise ValueError(f"IVF-PQ needs at least 256 vectors to train, got {n}")
        return nlist, pq_m
    return nlist or max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39 if n >= 39 else 1)), None


def add_chunked(
    index: faiss.Index,
    x: np.ndarray,
    chunk: int,
    progress: Callable[[int, int], None] | None,
    ids: np.ndarray | None = None,
) -> None:
    """Add in chunks: IVF assignment allocates (chunk × nlist) distances, and a long add reports.
    ``ids``: add only these rows of ``x``, under their row numbers."""
    total = len(x) if ids is None else len(ids)
    for start in range(0, total, max(1, chunk)):
        if ids is None:
            index.add(x[start : start + chunk])
        else:
            part = np.ascontiguousarray(ids[start : start + chunk])
            index.add_with_ids(x[part], part)
        if progress is not None:
            progress(min(start + chunk, total), total)


def build_hnsw(
    x: np.ndarray,
    ids: np.ndarray | None,
    hnsw_m: int,
    ef_construction: int,
    ef_search: int,
    chunk: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[faiss.Index, faiss.IndexHNSWFlat]:
    """An HNSW graph over the rows ``ids`` of ``x`` (``None``: every row), searched by inner product.

    Returns the index to search and the graph itself, which the caller keeps alive: with ``ids``
    the index is an ``IndexIDMap`` around the graph, which does not own it."""
    hnsw = faiss.IndexHNSWFlat(x.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    hnsw.hnsw.efSearch = ef_search
    if ids is None:
        add_chunked(hnsw, x, chunk, progress)
        return hnsw, hnsw
    # HNSW numbers its nodes 0..n-1 itself; the id map puts item indices on them (and translates ID
    # selectors back), 8 bytes an item
    index = faiss.IndexIDMap(hnsw)
    add_chunked(index, x, chunk, progress, ids=ids)
    return index, hnsw


def build_ivf(
    x: np.ndarray,
    ids: np.ndarray | None,
    nlist: int,
    pq_m: int | None,
    nprobe: int,
    train_size: int | None,
    add_chunk: int,
    progress: Callable[[int, int], None] | None,
    seed: int,
) -> tuple[faiss.IndexIVF, faiss.IndexFlatIP]:
    """A trained IVF index over the rows ``ids`` of ``x`` (``None``: every row) under their row
    numbers: IVF-PQ with ``pq_m`` 8-bit sub-quantizers, or IVF-Flat when ``pq_m`` is ``None``.

    Returns the index (``nprobe`` set, at most ``nlist``) and its coarse quantizer, which the caller
    keeps alive: the IVF index does not own it."""
    n, d = x.shape
    quantizer = faiss.IndexFlatIP(d)
    index: faiss.IndexIVF
    if pq_m is not None:
        index = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        # 256 centroids per sub-quantizer on 64 points each, 15 iterations: PQ k-means in 4-dim
        # subspaces is BLAS-unfriendly (faiss's 256 points x 25 iterations took 27 s for 16
        # sub-quantizers on a loaded 2-core box), and re-ranking absorbs the rest
        index.pq.cp.seed = seed
        index.pq.cp.max_points_per_centroid = 64
        index.pq.cp.niter = 15
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    # k-means needs ~39 points per centroid and gains little past ~64: a sample is enough and keeps
    # training to minutes at 10M (faiss would otherwise sample 256 per centroid)
    live = np.arange(n, dtype=np.int64) if ids is None else ids
    size = min(len(live), train_size or 64 * nlist)
    rng = np.random.default_rng(seed)
    pick = live if size >= len(live) else live[np.sort(rng.choice(len(live), size, replace=False))]
    sample = x[pick]
    index.cp.seed = seed
    index.cp.max_points_per_centroid = max(64, -(-size // nlist))
    index.train(sample)
    del sample
    add_chunked(index, x, add_chunk, progress, ids=ids)
    index.nprobe = min(nprobe, nlist)
    return index, quantizer


class build_threads:
    """Every core for an index build (HNSW inserts, k-means, IVF assignment run on OpenMP), then
    back to the process's setting: a server keeps one faiss thread for its single-query searches
    (:func:`~lmrec.ranking.index.set_threads`), which left the 1M-item HNSW graph building on one
    core for 5 minutes."""

    def __enter__(self) -> None:
        self._old = faiss.omp_get_max_threads()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        faiss.omp_set_num_threads(max(1, cores or 1))

    def __exit__(self, *exc: object) -> None:
        faiss.omp_set_num_threads(self._old)


__all__ = [
    "HNSW_ADD_CHUNK",
    "add_chunked",
    "build_hnsw",
    "build_ivf",
    "build_threads",
    "default_nlist",
    "default_pq_m",
    "ivf_shape",
]

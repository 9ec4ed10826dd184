"""Nearest-neighbour search over item vectors for embedding models (faiss; the ``serve`` extra).

Scores are inner products, the same ``query_vector · item_vector`` an
:class:`~lmrec.models.base.EmbeddingRecommender` ranks by, so an exact index returns exactly the
model's own ranking. Below ``threshold`` items the index is exact (``IndexFlatIP``: a brute-force
scan is a few milliseconds for 100k × 64 and has perfect recall). From there to ``ivfpq_threshold``
the default is HNSW (no training, good recall at low latency, items can be added later); IVF
(``IndexIVFFlat``) is the alternative when memory for the HNSW graph is short. From
``ivfpq_threshold`` (2M) up the default is IVF-PQ (``IndexIVFPQ``): vectors compressed to ``pq_m``
bytes, so the searched structure is ~24 bytes an item instead of HNSW's ~520 (its own float copy
plus the graph), and it trains in minutes where an HNSW graph of 10M items takes the better part of
an hour on two cores (``benchmarks/ann_scale.py`` measures both at 1M).

PQ codes alone rank coarsely (recall@10 well below 0.9 for 64-dim vectors in 16 bytes), so IVF-PQ
*refines*: it takes ``refine × k`` candidates from the compressed index and re-ranks them with the
exact inner product over the stored float vectors. Every kind keeps those vectors once (the exact
index below is also the ground truth of the recall check), 4 · dim bytes an item: 2.4 GiB for
10M × 64. That is the price of exact re-ranking and of the recall check; a catalogue whose float
vectors do not fit in memory needs a sharded index (see docs/retrieval.md), not a smaller one here.

Approximate indexes come with a *recall check*: :meth:`VectorIndex.recall` compares the approximate
top-k with an exact scan on a sample of queries, and :meth:`VectorIndex.tune` raises ``efSearch``
(HNSW) or ``nprobe`` (IVF, IVF-PQ; and IVF-PQ's ``refine`` once more lists stop helping) until the
measured recall@k reaches the target (both in :mod:`lmrec.ranking.index_recall`). The server runs
the check when it builds an index and reports the measured recall on ``/health`` and ``/metrics``.
:class:`~lmrec.ranking.rankers.IndexRanker` puts an index behind ``EmbeddingRecommender.rank``.
The faiss structures themselves, and their default sizes, are built in
:mod:`lmrec.ranking.index_build`.

Exclusions (a user's seen items, an ``exclude`` list) and allow-lists (filters) are applied inside
faiss with ID selectors (:mod:`lmrec.ranking.index_params`), so the k results are k *eligible*
items rather than k items of which some are then thrown away. When an allow-list is small, HNSW
graph search can run out of eligible neighbours; those queries are answered by an exact scan of the
allowed items instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

import faiss
import numpy as np

from lmrec.ranking.index_build import (
    HNSW_ADD_CHUNK,
    add_chunked,
    build_hnsw,
    build_ivf,
    build_threads,
    default_nlist,
    default_pq_m,
    ivf_shape,
)
from lmrec.ranking.index_params import flat_params, id_selector, search_params
from lmrec.ranking.index_recall import RecallReport, measure_recall, tune_index

IndexKind = Literal["auto", "exact", "hnsw", "ivf", "ivfpq"]

#: exact scans are used for allow-lists at most this large, whatever the index kind
SMALL_ALLOWED = 4096
#: from this many items ``auto`` builds IVF-PQ rather than HNSW (memory and build time; see above)
IVFPQ_THRESHOLD = 2_000_000
#: IVF-PQ's default re-ranking depth: ``refine × k`` compressed candidates re-scored exactly
DEFAULT_REFINE = 8


def set_threads(n: int | None) -> None:
    """faiss's OpenMP thread count. One is right for a server answering one query per request:
    OpenMP's fork/join costs more than it saves on a single 64-dim query, and requests already run
    concurrently."""
    if n is not None and n > 0:
        faiss.omp_set_num_threads(int(n))


class VectorIndex:
    """Inner-product top-k over a growing set of item vectors (ids are internal item indices)."""

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        kind: IndexKind = "auto",
        threshold: int = 100_000,
        ivfpq_threshold: int = IVFPQ_THRESHOLD,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int = 16,
        pq_m: int | None = None,
        refine: int = DEFAULT_REFINE,
        train_size: int | None = None,
        add_chunk: int = 1_000_000,
        progress: Callable[[int, int], None] | None = None,
        seed: int = 0,
    ) -> None:
        x = _as_matrix(vectors)
        n, d = x.shape
        if kind == "auto":
            kind = "exact" if n < threshold else "hnsw" if n < ivfpq_threshold else "ivfpq"
        if kind not in ("exact", "hnsw", "ivf", "ivfpq"):
            raise ValueError(f"index kind must be auto, exact, hnsw, ivf or ivfpq, got {kind!r}")
        if refine < 1:
            raise ValueError(f"refine must be >= 1 (1: no re-ranking), got {refine}")
        self.kind: str = kind
        self.dim = d
        self._lock = threading.Lock()  # faiss indexes are not safe to add to while searching
        # the exact index is the one float copy of the vectors: ground truth for recall checks,
        # scans of small allow-lists and IVF-PQ's re-ranking all read it (see _stored)
        self._flat = faiss.IndexFlatIP(d)
        add_chunked(self._flat, x, add_chunk, None)
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.refine = refine if kind == "ivfpq" else 1
        self.last_recall: RecallReport | None = None
        #: approximate kinds: items whose vector is all zeros, kept out of the graph or the inverted
        #: lists (see _with_zero)
        self._zero = np.zeros(0, np.int64)
        self._index: faiss.Index
        t0 = time.perf_counter()
        with build_threads():
            self._build(
                x,
                kind,
                hnsw_m,
                ef_construction,
                ef_search,
                nlist,
                nprobe,
                pq_m,
                train_size,
                add_chunk,
                progress,
                seed,
            )
        self.build_seconds = time.perf_counter() - t0

    def _build(
        self,
        x: np.ndarray,
        kind: str,
        hnsw_m: int,
        ef_construction: int,
        ef_search: int,
        nlist: int | None,
        nprobe: int,
        pq_m: int | None,
        train_size: int | None,
        add_chunk: int,
        progress: Callable[[int, int], None] | None,
        seed: int,
    ) -> None:
        n, d = x.shape
        if kind == "exact":
            self._index = self._flat
            return
        live = np.flatnonzero(np.any(x != 0, axis=1))
        self._zero = np.setdiff1d(np.arange(n, dtype=np.int64), live)
        if kind == "hnsw":
            if len(live) == 0:  # nothing but zeros: a graph of them all rather than an empty one
                live, self._zero = np.arange(n, dtype=np.int64), np.zeros(0, np.int64)
            # self._hnsw keeps the graph alive: an IndexIDMap around it does not own it
            self._index, self._hnsw = build_hnsw(
                x,
                live if len(self._zero) else None,
                hnsw_m,
                ef_construction,
                ef_search,
                min(add_chunk, HNSW_ADD_CHUNK),
                progress,
            )
            return
        nlist, pq = ivf_shape(kind, n, d, nlist, pq_m)
        if pq is not None:
            self.pq_m = pq
        if len(live) < max(nlist, 256 if kind == "ivfpq" else 1):
            live, self._zero = np.arange(n, dtype=np.int64), np.zeros(0, np.int64)
        # self._quantizer keeps the coarse quantizer alive: the IVF index does not own it
        self._index, self._quantizer = build_ivf(
            x,
            live if len(self._zero) else None,
            nlist,
            pq,
            nprobe,
            train_size,
            add_chunk,
            progress,
            seed,
        )
        self.nprobe = self._index.nprobe

    # ------------------------------------------------------------------ facts
    def __len__(self) -> int:
        return int(self._flat.ntotal)

    def __repr__(self) -> str:
        extra = f", refine={self.refine}" if self.kind == "ivfpq" else ""
        return (
            f"VectorIndex(kind={self.kind!r}, n={len(self)}, dim={self.dim}, "
            f"{self._param_name}={self.search_param}{extra})"
        )

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    @property
    def _param_name(self) -> str:
        return {"hnsw": "efSearch", "ivf": "nprobe", "ivfpq": "nprobe"}.get(self.kind, "exact")

    @property
    def search_param(self) -> int:
        return {"hnsw": self.ef_search, "ivf": self.nprobe, "ivfpq": self.nprobe}.get(self.kind, 0)

    @property
    def nlist(self) -> int:
        """Inverted lists of an IVF / IVF-PQ index (0 for the others)."""
        return int(getattr(self._index, "nlist", 0))

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held: ``search`` (the structure an approximate query walks: HNSW's vectors and graph,
        IVF's lists, IVF-PQ's codes, ids and centroids), ``vectors`` (the one float copy) and ``total``."""
        vectors = len(self) * self.dim * 4
        if self._index is self._flat:
            search = 0
        elif self.kind == "hnsw":
            h = self._hnsw.hnsw
            links = faiss.vector_to_array(h.neighbors).nbytes + faiss.vector_to_array(h.offsets).nbytes  # type: ignore[attr-defined]
            id_map = int(self._index.ntotal) * 8 if self._index is not self._hnsw else 0
            search = (
                int(self._hnsw.ntotal) * self.dim * 4
                + links
                + faiss.vector_to_array(h.levels).nbytes
                + id_map
            )
        else:
            ivf = faiss.extract_index_ivf(self._index)
            search = int(ivf.ntotal) * (ivf.code_size + 8) + ivf.nlist * self.dim * 4
        return {"search": int(search), "vectors": int(vectors), "total": int(search + vectors)}

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
        exact: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (ids, scores) per query, best first; missing slots are ``-1`` / ``-inf``.

        ``exclude`` (item indices) and ``allowed`` (a boolean mask over items) apply to every query
        in the batch. ``exact=True`` forces a brute-force scan.
        """
        q = _as_matrix(queries)
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have dim {q.shape[1]}, index has {self.dim}")
        n_items = len(self)
        k = int(min(k, n_items))
        if k <= 0:
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        keep: np.ndarray | None = None
        if allowed is not None:
            keep = np.zeros(n_items, dtype=bool)
            keep[: len(allowed)] = allowed[:n_items]
            if exclude is not None and len(exclude):
                keep[np.asarray(exclude, dtype=np.int64)] = False
            n_keep = int(keep.sum())
            if n_keep <= SMALL_ALLOWED:
                return self._scan_subset(q, k, np.flatnonzero(keep))
        sel, _alive = id_selector(n_items, exclude, keep)
        index = self._flat if exact else self._index
        depth = k if index is self._flat else min(n_items, k * self.refine)
        with self._lock:
            params = (
                search_params(self.kind, self.ef_search, self.nprobe, sel, k)
                if index is self._index
                else flat_params(sel)
            )
            dist, ids = index.search(q, depth, params=params)
            if depth > k:
                ids, dist = self._rerank(q, ids, k)
        dist = np.where(ids < 0, -np.inf, dist).astype(np.float32)
        ids = ids.astype(np.int64)
        if index is self._index and len(self._zero):
            ids, dist = self._with_zero(ids, dist, k, exclude, keep)
        return ids, dist

    def _with_zero(
        self,
        ids: np.ndarray,
        dist: np.ndarray,
        k: int,
        exclude: np.ndarray | None,
        keep: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Merge in the all-zero items an approximate index leaves out of its graph or lists.

        Such items (an ALS item nobody interacted with has one; 47k of 1M in the benchmark
        catalogue) score exactly 0 for every query. In IVF lists they all fell into one list of
        identical vectors (47k codes, 100 times the mean list), scanned for nothing whenever its
        centroid, 0, ranked among the probed ones; in an HNSW graph they are 47k identical nodes
        inserted (the build's cost) for nothing. Kept out, they can only belong in a top-k where
        fewer than ``k`` listed items score above 0; there the eligible ones fill in, lowest index
        first, which is the exact scan's order for equal scores."""
        need = (ids[:, -1] < 0) | (dist[:, -1] <= 0)
        if not need.any():
            return ids, dist
        zero = self._zero
        if keep is not None:
            zero = zero[keep[zero]]
        elif exclude is not None and len(exclude):
            zero = zero[~np.isin(zero, exclude)]
        zero = zero[:k]
        for r in np.flatnonzero(need):
            cand = np.concatenate([ids[r][ids[r] >= 0], zero])
            score = np.concatenate([dist[r][ids[r] >= 0], np.zeros(len(zero), np.float32)])
            order = np.lexsort((cand, -score))[:k]
            ids[r] = -1
            dist[r] = -np.inf
            ids[r, : len(order)] = cand[order]
            dist[r, : len(order)] = score[order]
        return ids, dist

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of each query's candidates (``-1``: none), the top ``k`` kept; ties
        go to the lower item index. Reads the stored vectors: the caller holds the lock."""
        stored = self._stored()
        ok = cand >= 0
        vecs = stored[np.where(ok, cand, 0)]  # (n_q, depth, dim): depth × dim floats per query
        scores = np.einsum("qcd,qd->qc", vecs, q)
        scores[~ok] = -np.inf
        # sort by (-score, id): equal scores keep the exact scan's lower-index-first order
        order = np.lexsort((np.where(ok, cand, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
        return np.take_along_axis(cand, order, axis=1), np.take_along_axis(scores, order, axis=1)

    def _scan_subset(self, q: np.ndarray, k: int, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(q), k), -1, np.int64)
        val = np.full((len(q), k), -np.inf, np.float32)
        if len(subset) == 0:
            return ids, val
        with self._lock:
            scores = q @ self._stored()[subset].T
        kk = min(k, len(subset))
        order = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        ids[:, :kk] = subset[order]
        val[:, :kk] = np.take_along_axis(scores, order, axis=1)
        return ids, val

    def exact_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.search(queries, k, exact=True)

    # ------------------------------------------------------------------ updates
    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append item vectors; returns their ids (the next internal indices)."""
        x = _as_matrix(vectors)
        if x.shape[1] != self.dim:
            raise ValueError(f"new item vectors have dim {x.shape[1]}, index has {self.dim}")
        with self._lock:
            start = len(self)
            self._flat.add(x)
            if self._index is not self._flat:
                new = np.arange(start, start + len(x), dtype=np.int64)
                if len(self._zero):  # keep all-zero vectors out of the lists, as at build
                    nz = np.any(x != 0, axis=1)
                    self._zero = np.concatenate([self._zero, new[~nz]])
                    if nz.any():
                        self._index.add_with_ids(np.ascontiguousarray(x[nz]), np.ascontiguousarray(new[nz]))
                else:
                    self._index.add(x)
        return np.arange(start, start + len(x), dtype=np.int64)

    def vectors(self) -> np.ndarray:
        """A copy of the stored item vectors (n_items, dim)."""
        with self._lock:
            return self._stored().copy()

    def _stored(self) -> np.ndarray:
        """The exact index's vectors as an array *view*: valid only until the next :meth:`add`
        (which may move them), hence only read under the lock."""
        n = int(self._flat.ntotal)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(self._flat.get_xb(), n * self.dim).reshape(n, self.dim)

    # ------------------------------------------------------------------ recall check
    def recall(
        self, queries: np.ndarray, k: int = 10, *, exclude: list[np.ndarray] | None = None
    ) -> RecallReport:
        """recall@k of this index against an exact scan: |approx ∩ exact| / |exact|, averaged.

        ``exclude`` (one array of item indices per query) measures what a server answers when it
        leaves each user's seen items out; without it every item counts."""
        rep = measure_recall(self, _as_matrix(queries), k, exclude)
        self.last_recall = rep
        return rep

    def tune(
        self,
        queries: np.ndarray,
        k: int = 10,
        target: float = 0.95,
        max_param: int = 1024,
        max_refine: int = 64,
        *,
        exclude: list[np.ndarray] | None = None,
    ) -> RecallReport:
        """Raise the search effort until recall@k ≥ ``target`` (:func:`~lmrec.ranking.index_recall.tune_index`:
        ``efSearch`` for HNSW, ``nprobe`` for IVF, ``nprobe`` or ``refine`` for IVF-PQ). ``exclude``
        as in :meth:`recall`; the index keeps the tuned setting."""
        rep = tune_index(self, _as_matrix(queries), k, target, max_param, max_refine, exclude=exclude)
        self.last_recall = rep
        return rep


def _as_matrix(x: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected a (n, dim) matrix of vectors, got shape {arr.shape}")
    return arr


__all__ = [
    "DEFAULT_REFINE",
    "IVFPQ_THRESHOLD",
    "RecallReport",
    "VectorIndex",
    "default_nlist",
    "default_pq_m",
    "set_threads",
]

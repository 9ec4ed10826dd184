"""Nearest-neighbour search over item vectors for embedding models (faiss; the ``serve`` extra).

Scores are inner products, the same ``query_vector · item_vector`` an
:class:`~lmrec.models.base.EmbeddingRecommender` ranks by, so an exact index returns exactly the
model's own ranking. Below ``threshold`` items the index is exact (``IndexFlatIP``: a brute-force
scan is a few milliseconds for 100k × 64 and has perfect recall). Above it the default is HNSW
(no training, good recall at low latency, items can be added later); IVF (``IndexIVFFlat``) is the
alternative when memory for the HNSW graph is short.

Approximate indexes come with a *recall check*: :meth:`VectorIndex.recall` compares the approximate
top-k with an exact scan on a sample of queries, and :meth:`VectorIndex.tune` raises ``efSearch``
(HNSW) or ``nprobe`` (IVF) until the measured recall@k reaches the target. The server runs the
check when it builds an index and reports the measured recall on ``/health`` and ``/metrics``.
:class:`~lmrec.ranking.rankers.IndexRanker` puts an index behind ``EmbeddingRecommender.rank``.

Exclusions (a user's seen items, an ``exclude`` list) and allow-lists (filters) are applied inside
faiss with ID selectors, so the k results are k *eligible* items rather than k items of which some
are then thrown away. When an allow-list is small, HNSW graph search can run out of eligible
neighbours; those queries are answered by an exact scan of the allowed items instead.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

IndexKind = Literal["auto", "exact", "hnsw", "ivf"]

#: exact scans are used for allow-lists at most this large, whatever the index kind
SMALL_ALLOWED = 4096


@dataclass(frozen=True)
class RecallReport:
    """Measured recall@k of the approximate index against an exact scan."""

    k: int
    recall: float
    n_queries: int
    #: efSearch (HNSW) or nprobe (IVF) in effect when measured; 0 for exact
    search_param: int
    exact_ms: float
    approx_ms: float


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
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        nlist: int | None = None,
        nprobe: int = 16,
        seed: int = 0,
    ) -> None:
        x = _as_matrix(vectors)
        n, d = x.shape
        if kind == "auto":
            kind = "exact" if n < threshold else "hnsw"
        if kind not in ("exact", "hnsw", "ivf"):
            raise ValueError(f"index kind must be auto, exact, hnsw or ivf, got {kind!r}")
        self.kind: str = kind
        self.dim = d
        self._lock = threading.Lock()  # faiss indexes are not safe to add to while searching
        # the exact scan doubles as the ground truth for recall checks and small allow-lists
        self._vectors = x.copy()
        self._flat = faiss.IndexFlatIP(d)
        self._flat.add(x)
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.last_recall: RecallReport | None = None
        self._index: faiss.Index
        t0 = time.perf_counter()
        if kind == "exact":
            self._index = self._flat
        elif kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = ef_construction
            hnsw.hnsw.efSearch = ef_search
            hnsw.add(x)
            self._index = hnsw
        else:
            nlist = nlist or max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39 if n >= 39 else 1))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            # k-means needs ~39 points per centroid; a sample is enough and keeps training fast
            rng = np.random.default_rng(seed)
            sample = x if n <= 64 * nlist else x[rng.choice(n, 64 * nlist, replace=False)]
            index.cp.seed = seed
            index.train(sample)
            index.add(x)
            index.nprobe = min(nprobe, nlist)
            self.nprobe = index.nprobe
            self._quantizer = quantizer  # keep it alive: the IVF index does not own it
            self._index = index
        self.build_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ facts
    def __len__(self) -> int:
        return int(self._flat.ntotal)

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, n={len(self)}, dim={self.dim}, {self._param_name}={self.search_param})"

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    @property
    def _param_name(self) -> str:
        return {"hnsw": "efSearch", "ivf": "nprobe"}.get(self.kind, "exact")

    @property
    def search_param(self) -> int:
        return {"hnsw": self.ef_search, "ivf": self.nprobe}.get(self.kind, 0)

    def _params(self, sel: faiss.IDSelector | None, k: int) -> faiss.SearchParameters | None:
        if self.kind == "hnsw":
            p = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            p.efSearch = max(self.ef_search, k)
        elif self.kind == "ivf":
            p = faiss.SearchParametersIVF()
            p.nprobe = self.nprobe
        else:
            if sel is None:
                return None
            p = faiss.SearchParameters()
        if sel is not None:
            p.sel = sel
        return p

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
        sel, _alive = _selector(n_items, exclude, keep)
        index = self._flat if exact else self._index
        with self._lock:
            dist, ids = index.search(
                q, k, params=self._params(sel, k) if index is self._index else _flat_params(sel)
            )
        dist = np.where(ids < 0, -np.inf, dist).astype(np.float32)
        return ids.astype(np.int64), dist

    def _scan_subset(self, q: np.ndarray, k: int, subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(q), k), -1, np.int64)
        val = np.full((len(q), k), -np.inf, np.float32)
        if len(subset) == 0:
            return ids, val
        scores = q @ self._vectors[subset].T
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
            self._vectors = np.concatenate([self._vectors, x])
            self._flat.add(x)
            if self._index is not self._flat:
                self._index.add(x)
        return np.arange(start, start + len(x), dtype=np.int64)

    def vectors(self) -> np.ndarray:
        return self._vectors

    # ------------------------------------------------------------------ recall check
    def recall(self, queries: np.ndarray, k: int = 10) -> RecallReport:
        """recall@k of this index against an exact scan: |approx ∩ exact| / |exact|, averaged."""
        q = _as_matrix(queries)
        t0 = time.perf_counter()
        exact_ids, _ = self.search(q, k, exact=True)
        t1 = time.perf_counter()
        approx_ids, _ = self.search(q, k)
        t2 = time.perf_counter()
        hits = 0
        total = 0
        for a, e in zip(approx_ids, exact_ids, strict=True):
            e = e[e >= 0]
            hits += len(np.intersect1d(a[a >= 0], e))
            total += len(e)
        rep = RecallReport(
            k=k,
            recall=hits / total if total else 1.0,
            n_queries=len(q),
            search_param=self.search_param,
            exact_ms=1000 * (t1 - t0) / max(len(q), 1),
            approx_ms=1000 * (t2 - t1) / max(len(q), 1),
        )
        self.last_recall = rep
        return rep

    def tune(
        self, queries: np.ndarray, k: int = 10, target: float = 0.95, max_param: int = 1024
    ) -> RecallReport:
        """Raise efSearch / nprobe (doubling) until recall@k ≥ ``target`` or ``max_param``."""
        rep = self.recall(queries, k)
        if self.exact:
            return rep
        while rep.recall < target:
            if self.kind == "hnsw":
                if self.ef_search >= max_param:
                    break
                self.ef_search = min(2 * self.ef_search, max_param)
            else:
                nlist = int(self._index.nlist)  # type: ignore[attr-defined]
                if self.nprobe >= min(max_param, nlist):
                    break
                self.nprobe = min(2 * self.nprobe, nlist, max_param)
            rep = self.recall(queries, k)
        return rep


def _flat_params(sel: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    if sel is None:
        return None
    p = faiss.SearchParameters()
    p.sel = sel
    return p


def _selector(
    n_items: int, exclude: np.ndarray | None, keep: np.ndarray | None
) -> tuple[faiss.IDSelector | None, list[object]]:
    """An ID selector and the Python objects it points into (kept alive by the caller)."""
    if keep is not None:
        bits = np.packbits(keep, bitorder="little")
        return faiss.IDSelectorBitmap(n_items, faiss.swig_ptr(bits)), [bits]
    if exclude is not None and len(exclude):
        ids = np.ascontiguousarray(np.unique(np.asarray(exclude, dtype=np.int64)))
        inner = faiss.IDSelectorBatch(ids)
        return faiss.IDSelectorNot(inner), [ids, inner]
    return None, []


def _as_matrix(x: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected a (n, dim) matrix of vectors, got shape {arr.shape}")
    return arr


def clustered_vectors(
    n: int,
    dim: int = 64,
    *,
    n_clusters: int = 1000,
    spread: float = 0.35,
    intrinsic_dim: int | None = None,
    seed: int = 0,
    normalize: bool = True,
) -> np.ndarray:
    """A synthetic catalogue with cluster structure, for index benchmarks and tests.

    Real item embeddings are clustered and have a low intrinsic dimension; i.i.d. noise is the
    worst case for graph and IVF indexes and not what a server sees. Without ``intrinsic_dim``,
    points are cluster centres on the unit sphere plus isotropic noise of norm ≈ ``4 · spread``
    (a hard setting: the noise dominates). With ``intrinsic_dim = r``, clusters live in an
    r-dimensional latent space (centres ~ N(0, I), noise ``spread``) mapped linearly into ``dim``
    dimensions plus a little full-rank noise, as sentence and MF embeddings roughly do. The same
    ``seed`` gives the same centres, so queries drawn with it come from the catalogue's clusters.
    """
    rng = np.random.default_rng(seed)
    if intrinsic_dim:
        centres = rng.standard_normal((n_clusters, intrinsic_dim)).astype(np.float32)
        proj = (rng.standard_normal((intrinsic_dim, dim)) / math.sqrt(intrinsic_dim)).astype(np.float32)
    else:
        centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        proj = None
    out = np.empty((n, dim), np.float32)
    step = 200_000
    # a second stream for the points, so that n does not change the centres
    prng = np.random.default_rng([seed, n])
    for start in range(0, n, step):
        m = min(step, n - start)
        assign = prng.integers(0, n_clusters, m)
        if proj is not None:
            latent = centres[assign] + spread * prng.standard_normal((m, centres.shape[1])).astype(np.float32)
            block = latent @ proj + 0.05 * prng.standard_normal((m, dim)).astype(np.float32)
        else:
            noise = prng.standard_normal((m, dim)).astype(np.float32)
            block = centres[assign] + spread * noise / math.sqrt(dim) * 4
        if normalize:
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


__all__ = ["RecallReport", "VectorIndex", "clustered_vectors", "set_threads"]

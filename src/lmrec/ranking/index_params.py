"""The faiss search parameters of one :class:`~lmrec.ranking.index.VectorIndex` query.

Exclusions (a user's seen items, an ``exclude`` list) and allow-lists (filters) become an ID
selector (:func:`id_selector`) that faiss applies while it searches, so the k results it returns are
k *eligible* items; the selector rides on the search parameters of the structure searched, with the
index's search effort (:func:`search_params`: ``efSearch`` for HNSW, ``nprobe`` for IVF and IVF-PQ)
or on its own for the exact scan (:func:`flat_params`).
"""

from __future__ import annotations

import faiss
import numpy as np


def search_params(
    kind: str, ef_search: int, nprobe: int, sel: faiss.IDSelector | None, k: int
) -> faiss.SearchParameters | None:
    """Parameters for a top-``k`` search of an index of ``kind`` (``None``: faiss's defaults)."""
    if kind == "hnsw":
        p = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        p.efSearch = max(ef_search, k)
    elif kind in ("ivf", "ivfpq"):
        p = faiss.SearchParametersIVF()
        p.nprobe = nprobe
    else:
        if sel is None:
            return None
        p = faiss.SearchParameters()
    if sel is not None:
        p.sel = sel
    return p


def flat_params(sel: faiss.IDSelector | None) -> faiss.SearchParameters | None:
    """Parameters for an exact scan: the selector alone (``None`` without one)."""
    if sel is None:
        return None
    p = faiss.SearchParameters()
    p.sel = sel
    return p


def id_selector(
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


__all__ = ["flat_params", "id_selector", "search_params"]

"""Content -> collaborative projection (CB2CF) for the content model's ``cf_projection``.

Content vectors say which items *look* or *read* alike; a truncated SVD of the binarised training
interactions says which items the same people take. The projection learns, on the warm items only
(training interactions and content), where an item's content puts it in that collaborative space,
so a cold item, which has content but no interactions, lands near the warm items it resembles.

Two maps, both fitted in closed form:

* ``"ridge"``: a ridge regression from the content vector to the item's SVD factors ``V sqrt(s)``.
  One global linear map: it generalises smoothly but blurs local structure (a 1280-d picture vector
  regressed on ~1.5k items is mostly ridge).
* ``"knn"``: a cold item's factors are the softmax-weighted mean (``temperature`` on the content
  dot product) of its ``neighbours`` most similar warm items' factors. It keeps local structure:
  sequels, re-releases and shared posters carry their neighbours' audience directly. A warm item
  is mapped from its neighbours *other than itself*, so warm and cold items are placed by the same
  rule (its own factors would place a warm item exactly and rank it above every cold item that
  looks the same). On ml-100k-posters' cold-item split it beat the ridge map clearly for pictures
  (docs/multimodal.md).

A query is the SVD fold-in of its distinct history items (``query_table``: ``V / sqrt(s)`` per
item), so a score is the SVD's predicted affinity with the mapped item.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import scipy.sparse as sp

from lmrec.errors import LmrecError

Method = Literal["ridge", "knn"]


class CFProjection:
    """A fitted content -> SVD-factor map plus the fold-in table (see the module docstring)."""

    def __init__(
        self,
        method: Method = "ridge",
        *,
        factors: int = 64,
        ridge: float = 100.0,
        neighbours: int = 30,
        temperature: float = 0.1,
    ) -> None:
        self.method: Method = method
        self.factors = factors
        self.ridge = ridge
        self.neighbours = neighbours
        self.temperature = temperature
        #: ridge: content dim x factors; knn: empty
        self.weights = np.zeros((0, 0), np.float32)
        #: knn: the warm items' content vectors and their factors; ridge: empty
        self.anchors = np.zeros((0, 0), np.float32)
        self.anchor_factors = np.zeros((0, 0), np.float32)
        #: n_items x factors: an item's contribution to a history's fold-in (zero for cold items)
        self.query_table = np.zeros((0, 0), np.float32)

    @property
    def fitted(self) -> bool:
        return self.query_table.size > 0

    @property
    def content_dim(self) -> int:
        return int(self.weights.shape[0] if self.method == "ridge" else self.anchors.shape[1])

    def fit(self, content: np.ndarray, interactions: sp.csr_matrix, *, dataset: str = "") -> np.ndarray:
        """Fit on ``content`` (n_items x d) and binary ``interactions`` (users x items); the mapped
        item vectors (n_items x factors)."""
        from scipy.sparse.linalg import svds

        r = sp.csr_matrix(interactions, dtype=np.float64, copy=True)
        r.data[:] = 1.0  # binarised: a repeated pair counts once
        x = np.asarray(content, np.float64)
        warm = (np.asarray(r.sum(axis=0)).ravel() > 0) & (np.abs(x).sum(axis=1) > 0)
        k = min(self.factors, min(r.shape) - 1)
        if k < 1 or warm.sum() < 2:
            raise LmrecError(
                f"cf_projection needs at least 2 users and 2 warm items with content; dataset {dataset!r} "
                f"has {r.shape[0]} users and {int(warm.sum())} such items"
            )
        v0 = np.full(min(r.shape), 1.0 / math.sqrt(min(r.shape)))  # a fixed start: same data, same factors
        _, s, vt = svds(r, k=k, v0=v0)
        keep = s > 1e-8 * max(float(s.max()), 1e-30)
        s, vt = s[keep], vt[keep]
        item_factors = vt.T * np.sqrt(s)[None, :]
        self.query_table = (vt.T / np.sqrt(s)[None, :]).astype(np.float32)
        if self.method == "ridge":
            xw = x[warm]
            gram = xw.T @ xw + self.ridge * np.eye(x.shape[1])
            self.weights = np.linalg.solve(gram, xw.T @ item_factors[warm]).astype(np.float32)
        else:
            self.anchors = x[warm].astype(np.float32)
            self.anchor_factors = item_factors[warm].astype(np.float32)
            own = np.full(len(x), -1, np.int64)
            own[warm] = np.arange(int(warm.sum()))
            return self.map(x, own_anchor=own)
        return self.map(x)

    def map(self, content: np.ndarray, *, own_anchor: np.ndarray | None = None) -> np.ndarray:
        """Collaborative-space vectors of content vectors (rows without content map to zero).

        ``own_anchor`` (knn): per row, the anchor that is the row's own item (-1: none), left out of
        its neighbours."""
        x = np.asarray(content, np.float32)
        if x.shape[1] != self.content_dim:
            raise LmrecError(f"cf_projection maps {self.content_dim}-d content vectors, got {x.shape[1]}-d")
        if self.method == "ridge":
            return (x @ self.weights).astype(np.float32)
        out = np.zeros((len(x), self.anchor_factors.shape[1]), np.float32)
        has = np.abs(x).sum(axis=1) > 0
        n = min(self.neighbours, len(self.anchors) - (own_anchor is not None))
        for start in range(0, len(x), 1024):  # bounded memory: a block of rows against every anchor
            rows = np.flatnonzero(has[start : start + 1024]) + start
            if not len(rows):
                continue
            sim = x[rows] @ self.anchors.T
            if own_anchor is not None:
                mine = own_anchor[rows]
                sim[np.flatnonzero(mine >= 0), mine[mine >= 0]] = -np.inf
            top = (
                np.argpartition(-sim, n - 1, axis=1)[:, :n] if n < sim.shape[1] else np.argsort(-sim, axis=1)
            )
            sv = np.take_along_axis(sim, top, axis=1)
            w = np.exp((sv - sv.max(axis=1, keepdims=True)) / self.temperature)
            w /= w.sum(axis=1, keepdims=True)
            out[rows] = np.einsum("rn,rnk->rk", w, self.anchor_factors[top])
        return out

    def fold_in(self, items: np.ndarray) -> np.ndarray:
        """A history's query vector: the sum of its distinct items' fold-in rows."""
        if len(items) == 0:
            return np.zeros(self.query_table.shape[1], np.float32)
        return self.query_table[np.unique(np.asarray(items))].sum(axis=0).astype(np.float32)

    def extend(self, n_items: int) -> None:
        """Grow the fold-in table to ``n_items`` rows; new items (no interactions) contribute nothing."""
        qt = np.zeros((n_items, self.query_table.shape[1]), np.float32)
        qt[: len(self.query_table)] = self.query_table
        self.query_table = qt

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, np.ndarray]:
        return {
            "projection": self.weights,
            "projection_anchors": self.anchors,
            "projection_anchor_factors": self.anchor_factors,
            "query_table": self.query_table,
        }

    def load_state(self, tensors: dict[str, np.ndarray]) -> None:
        def get(name: str) -> np.ndarray:
            return tensors.get(name, np.zeros((0, 0), np.float32)).astype(np.float32, copy=False)

        self.weights = get("projection")
        self.anchors = get("projection_anchors")
        self.anchor_factors = get("projection_anchor_factors")
        self.query_table = get("query_table")

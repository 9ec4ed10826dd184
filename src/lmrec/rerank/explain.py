"""Why an item was recommended: the history items and the tags/keywords that drove it.

Two kinds of evidence, both cheap enough to compute on every request:

* **history items**: the items in the query's history most similar to the recommended item
  (cosine between item vectors: the model's own embeddings for embedding models, co-occurrence
  factors otherwise). For an item-to-item model this is literally "because you watched X".
* **keywords**: catalogue tags/genres the recommended item shares with those history items
  (weighted by how similar each history item is), and words of a free-text query that occur in the
  item's text. Rarer tags count for more (idf), so "Animation" beats "Drama".

Evidence is a summary for people, not an exact attribution of the model's score.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "with",
        "you",
        "your",
        "about",
        "like",
        "want",
        "some",
        "something",
        "movie",
        "movies",
        "film",
        "films",
        "song",
        "songs",
        "book",
        "books",
    ]
)


def keywords_of(text: str | None) -> set[str]:
    """Lower-cased content words of a text (stopwords and 1–2 letter tokens dropped)."""
    if not text:
        return set()
    return {
        w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if len(w) > 2 and w not in STOPWORDS
    }


@dataclass(frozen=True)
class Because:
    """Evidence for one recommended item: (history item index, similarity) pairs and keywords."""

    items: list[tuple[int, float]] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)


def explain(
    recommended: np.ndarray,
    history: np.ndarray,
    unit_vectors: np.ndarray | None,
    *,
    tags: Sequence[frozenset[str]] | None = None,
    tag_idf: dict[str, float] | None = None,
    item_terms: Sequence[frozenset[str]] | None = None,
    query_text: str | None = None,
    max_items: int = 3,
    max_keywords: int = 5,
    min_similarity: float = 0.0,
) -> list[Because]:
    """Evidence for each recommended item (internal indices); see the module docstring.

    ``unit_vectors`` are L2-normalised item vectors indexed by internal index (rows may be zero for
    items without a vector). ``tags``/``item_terms`` give each item's catalogue tags and text words.
    """
    rec = np.asarray(recommended, dtype=np.int64)
    hist = np.unique(np.asarray(history, dtype=np.int64))
    query_terms = keywords_of(query_text)
    sims = None
    if unit_vectors is not None and len(hist) and len(rec):
        n = len(unit_vectors)
        hv = unit_vectors[hist[hist < n]]
        hist = hist[hist < n]
        rv = np.zeros((len(rec), unit_vectors.shape[1]), unit_vectors.dtype)
        ok = rec < n
        rv[ok] = unit_vectors[rec[ok]]
        sims = rv @ hv.T
    top_idx = top_sim = None
    if sims is not None and sims.shape[1]:
        m = min(max_items, sims.shape[1])
        # the m most similar history items per row without sorting whole rows (histories run to
        # thousands of items), then a stable sort of those m
        part = (
            np.argpartition(-sims, m - 1, axis=1)[:, :m]
            if sims.shape[1] > m
            else np.tile(np.arange(m), (len(rec), 1))
        )
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -part_sims), axis=1)
        top_idx = np.take_along_axis(part, order, axis=1)
        top_sim = np.take_along_axis(part_sims, order, axis=1)
    # Python ints and floats once for the whole list (the same values: float32 -> float is exact);
    # converting numpy scalars one by one was most of this function's own time on a 10-item list
    driver_ids = hist[top_idx].tolist() if top_idx is not None else None
    driver_sims = top_sim.tolist() if top_sim is not None else None
    n_tags = len(tags) if tags is not None else 0
    out: list[Because] = []
    for r_pos, item in enumerate(rec.tolist()):
        drivers: list[tuple[int, float]] = []
        if driver_ids is not None and driver_sims is not None:
            drivers = [
                (h, v)
                for h, v in zip(driver_ids[r_pos], driver_sims[r_pos], strict=True)
                if v > min_similarity
            ]
        weights: dict[str, float] = {}
        if tags is not None and item < n_tags:
            own = tags[item]
            if own:
                for h, s in drivers:
                    if h < n_tags:
                        for t in own & tags[h]:
                            weights[t] = weights.get(t, 0.0) + s
        if query_terms:
            own_terms = set(item_terms[item]) if item_terms is not None and item < len(item_terms) else set()
            own_tags = {t.lower(): t for t in tags[item]} if tags is not None and item < len(tags) else {}
            for term in query_terms:
                if term in own_tags:
                    weights[own_tags[term]] = weights.get(own_tags[term], 0.0) + 1.0
                elif term in own_terms:
                    weights[term] = weights.get(term, 0.0) + 1.0
        if weights:
            idf = tag_idf or {}
            ranked = sorted(weights, key=lambda t: (-weights[t] * idf.get(t, 1.0), t))[:max_keywords]
        else:
            ranked = []
        out.append(Because(items=drivers, keywords=ranked))
    return out


def tag_idf(tags: Sequence[frozenset[str]]) -> dict[str, float]:
    """Smoothed inverse document frequency of each tag over the catalogue."""
    df: dict[str, int] = {}
    for ts in tags:
        for t in ts:
            df[t] = df.get(t, 0) + 1
    n = max(len(tags), 1)
    return {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}


__all__ = ["STOPWORDS", "Because", "explain", "keywords_of", "tag_idf"]

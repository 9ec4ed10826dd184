"""Stage 5 of the recommend pipeline (:mod:`lmrec.serving.pipeline`): the response items, with
``because`` evidence (the history items and keywords behind each recommendation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter

from lmrec.rerank import explain
from lmrec.serving.catalogue import Catalogue
from lmrec.serving.pictures import picture_url
from lmrec.serving.schemas import RecommendedItem

#: the response items are validated in one call from plain dicts: some fifty small objects per
#: response, which one by one cost a good share of a cached known-user request
_ITEMS = TypeAdapter(list[RecommendedItem])

if TYPE_CHECKING:
    from lmrec.serving.pipeline import Ranked, RequestContext


def explanations(
    ranked: Ranked,
    ctx: RequestContext,
    features: np.ndarray,
    catalogue: Catalogue,
    item_ids: Callable[[np.ndarray], list[Any]],
) -> list[RecommendedItem]:
    """The response items: id, base score, rank, propensity, title and (``ctx.explain``) the history
    items and keywords behind each."""
    chosen = ranked.items
    ids = item_ids(chosen)
    because = (
        explain(
            chosen,
            ctx.history,
            features,
            tags=catalogue.tags,
            tag_idf=catalogue.idf,
            item_terms=catalogue.terms,
            query_text=ctx.text,
        )
        if ctx.explain
        else None
    )
    # every evidence item's external id in one lookup
    evidence_idx = np.array([h for b in because or [] for h, _ in b.items], np.int64)
    evidence_ids = (
        dict(zip(evidence_idx.tolist(), item_ids(evidence_idx), strict=True)) if len(evidence_idx) else {}
    )
    title = catalogue.title
    # Python numbers for the whole list at once (the same values as float() / int() of each element)
    scores = ranked.scores[ranked.order].tolist()
    propensities = ranked.propensities.tolist()
    items: list[dict[str, Any]] = []
    for slot, (item_idx, item_id) in enumerate(zip(chosen.tolist(), ids, strict=True)):
        evidence = None
        if because is not None:
            b = because[slot]
            evidence = {
                "items": [
                    {"item_id": evidence_ids[h], "similarity": round(s, 4), "title": title(h)}
                    for h, s in b.items
                ],
                "keywords": b.keywords,
            }
        items.append(
            {
                "item_id": item_id,
                "score": float(scores[slot]),
                "rank": slot + 1,
                "propensity": float(propensities[slot]),
                "title": title(item_idx),
                "image_url": picture_url(item_id) if catalogue.picture(item_idx) else None,
                "because": evidence,
            }
        )
    return _ITEMS.validate_python(items)


__all__ = ["explanations"]

"""The one path from scores to ranked lists: top-k, masking, and the exact and faiss rankers.

* :func:`topk` (:mod:`lmrec.ranking.topk`): the shared kernel, ties broken by the lower item index;
* :func:`mask_scores` (:mod:`lmrec.ranking.masking`): seen, banned and filtered items set to -inf;
* :func:`rank_scores`, :class:`ExactRanker`, :class:`IndexRanker` (:mod:`lmrec.ranking.rankers`):
  masked top-k with the ``-1`` / ``-inf`` padding every caller relies on;
* :class:`VectorIndex` (:mod:`lmrec.ranking.index`, faiss: the ``serve`` extra), imported lazily.

Models rank through ``Recommender.rank``; evaluation, validation and the server use the same
functions, so ties and exclusions agree everywhere.
"""

from __future__ import annotations

import importlib
from typing import Any

from lmrec.ranking.masking import mask_scores
from lmrec.ranking.rankers import ExactRanker, IndexRanker, Ranker, rank_scores
from lmrec.ranking.topk import topk

_LAZY = {"VectorIndex": "lmrec.ranking.index", "clustered_vectors": "lmrec.ranking.synthetic"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lmrec.ranking' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ExactRanker",
    "IndexRanker",
    "Ranker",
    "VectorIndex",
    "clustered_vectors",
    "mask_scores",
    "rank_scores",
    "topk",
]

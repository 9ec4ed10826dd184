"""Optional model capabilities as small runtime-checkable protocols.

Every model implements :class:`~lmrec.models.base.Recommender`; some can do more. Code that uses an
optional capability asks ``isinstance(model, SupportsAddItems)`` rather than ``hasattr(model,
"add_items")``: the protocol names the capability once, with its signature, and a type checker then
knows the call is valid. (``isinstance`` on a runtime-checkable protocol checks that the methods
exist, not their signatures; the signatures are for readers and type checkers.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl


@runtime_checkable
class SupportsAddItems(Protocol):
    """Models that take new catalogue items without a refit (text models encode their text)."""

    def add_items(self, items: pl.DataFrame) -> None:
        """Add items given as a frame with ``item_id`` plus catalogue columns (``title``,
        ``description``, ``genres``, ...); new ids are appended to the item vocabulary."""
        ...


@runtime_checkable
class SupportsAddInteractions(Protocol):
    """Models whose known users' histories grow online (every :class:`Recommender` does)."""

    def add_interactions(
        self, user_id: Any, item_ids: Sequence[Any], weights: Sequence[float] | None = None
    ) -> None: ...


@runtime_checkable
class SupportsItemVectors(Protocol):
    """Embedding models: one vector per item, scores are dot products with query vectors."""

    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) float32, row ``i`` for internal item index ``i``."""
        ...


@runtime_checkable
class SupportsWarm(Protocol):
    """Models with per-user state worth precomputing before serving (the hybrid's query vectors)."""

    def warm(self) -> None:
        """Precompute it now; requests would otherwise compute it on first use."""
        ...


__all__ = ["SupportsAddInteractions", "SupportsAddItems", "SupportsItemVectors", "SupportsWarm"]

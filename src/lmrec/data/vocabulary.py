"""External-id <-> internal-index vocabularies.

External ids are what users see (MovieLens user 196, Amazon ASIN "B0002E1G5C"); internal indices are
contiguous integers used by the maths. The public API only ever takes and returns external ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from lmrec.errors import UnknownIdError


class Vocabulary:
    """An ordered, immutable set of external ids (all ints or all strings).

    The order is the internal index. Ids are kept in their own dtype (integers stay integers) and
    strings that look like integers are accepted for integer vocabularies, because a CLI or an HTTP
    path delivers everything as text.
    """

    __slots__ = ("_ids", "_index", "kind", "name")

    def __init__(self, ids: Sequence[Any] | np.ndarray | pl.Series, name: str = "id") -> None:
        series = (
            ids
            if isinstance(ids, pl.Series)
            else pl.Series(name, list(ids) if not isinstance(ids, np.ndarray) else ids)
        )
        if series.dtype.is_integer():
            self.kind = "int"
            arr: list[Any] = [int(x) for x in series.to_list()]
        else:
            self.kind = "str"
            arr = [str(x) for x in series.to_list()]
        self.name = name
        self._ids = arr
        self._index: dict[Any, int] = {v: i for i, v in enumerate(arr)}
        if len(self._index) != len(arr):
            seen: set[Any] = set()
            dup = next(v for v in arr if v in seen or seen.add(v))  # type: ignore[func-returns-value]
            raise ValueError(f"duplicate {name} {dup!r} in vocabulary")

    # -- basic protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, value: object) -> bool:
        try:
            return self._coerce(value) in self._index
        except (TypeError, ValueError):
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.kind == other.kind and self._ids == other._ids

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not used as dict keys
        return hash((self.kind, len(self._ids)))

    def __repr__(self) -> str:
        return f"Vocabulary({self.name}, n={len(self)}, kind={self.kind})"

    @property
    def ids(self) -> list[Any]:
        return list(self._ids)

    def to_series(self) -> pl.Series:
        return pl.Series(self.name, self._ids, dtype=pl.Int64 if self.kind == "int" else pl.Utf8)

    # -- lookups -----------------------------------------------------------------------------
    def _coerce(self, value: object) -> Any:
        if self.kind == "int":
            if isinstance(value, (bool, np.bool_)):
                raise TypeError(value)
            if isinstance(value, (int, np.integer)):
                return int(value)
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                return int(value)
            if isinstance(value, (float, np.floating)) and float(value).is_integer():
                return int(value)
            raise ValueError(value)
        return str(value)

    def index(self, value: object) -> int:
        """Internal index of one external id; raises :class:`UnknownIdError` naming the id."""
        try:
            key = self._coerce(value)
        except (TypeError, ValueError):
            raise UnknownIdError(self.name, [value]) from None
        try:
            return self._index[key]
        except KeyError:
            raise UnknownIdError(self.name, [value]) from None

    def get(self, value: object, default: int = -1) -> int:
        try:
            return self._index.get(self._coerce(value), default)
        except (TypeError, ValueError):
            return default

    def indices(self, values: Iterable[object], *, missing: str = "raise") -> np.ndarray:
        """Internal indices of many external ids.

        ``missing="raise"`` raises one error listing every unknown id; ``missing="drop"`` skips them;
        ``missing="mark"`` returns -1 for them.
        """
        out = np.fromiter((self.get(v) for v in values), dtype=np.int64)
        if missing == "mark":
            return out
        bad = out < 0
        if bad.any():
            if missing == "drop":
                return out[~bad]
            values = list(values) if not isinstance(values, list) else values
            unknown = [v for v, b in zip(values, bad, strict=True) if b]
            raise UnknownIdError(self.name, unknown)
        return out

    def external(self, indices: Iterable[int] | np.ndarray) -> list[Any]:
        ids = self._ids
        if isinstance(indices, np.ndarray) and indices.dtype.kind in "iu":
            return [ids[i] for i in indices.tolist()]  # Python ints at once, not numpy scalars one by one
        return [ids[int(i)] for i in indices]

    def extend(self, new_ids: Iterable[Any]) -> Vocabulary:
        """A new vocabulary with ``new_ids`` appended (existing indices unchanged)."""
        extra = [v for v in (self._coerce(x) for x in new_ids) if v not in self._index]
        extra = list(dict.fromkeys(extra))
        return Vocabulary(pl.Series(self.name, self._ids + extra), name=self.name) if extra else self

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "ids": self._ids}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Vocabulary:
        dtype = pl.Int64 if obj["kind"] == "int" else pl.Utf8
        return cls(pl.Series(obj["name"], obj["ids"], dtype=dtype), name=obj["name"])

"""Exceptions raised by lmrec. Every message names the file, column or id at fault."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LmrecError(Exception):
    """Base class for lmrec errors."""


class DataError(LmrecError, ValueError):
    """Input data is malformed: a missing column, a null id, a non-numeric timestamp, ..."""

    def __init__(self, message: str, *, source: str | None = None, column: str | None = None) -> None:
        where = []
        if source:
            where.append(f"file {source!s}")
        if column:
            where.append(f"column {column!r}")
        prefix = f"[{', '.join(where)}] " if where else ""
        super().__init__(prefix + message)
        self.source = source
        self.column = column


class MemoryBudgetError(LmrecError, MemoryError):
    """A step would need more memory than is available; raised before it starts (see ``lmrec._memory``)."""


class ChecksumError(DataError):
    """A downloaded or local file does not match its pinned checksum."""


class UnknownIdError(LmrecError, KeyError):
    """A query names ids the model or dataset has never seen."""

    def __init__(self, kind: str, ids: Sequence[Any]) -> None:
        shown = ", ".join(repr(i) for i in list(ids)[:10])
        more = f" (and {len(ids) - 10} more)" if len(ids) > 10 else ""
        super().__init__(f"unknown {kind}: {shown}{more}")
        self.kind = kind
        self.ids = list(ids)

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0])


class UnsupportedQueryError(LmrecError, ValueError):
    """The model cannot serve this kind of query (e.g. free text for a pure CF model)."""


class NotFittedError(LmrecError, RuntimeError):
    """``recommend``/``score``/``save`` called before ``fit``."""


class FilterValueError(LmrecError, ValueError):
    """A filter value whose type does not match the catalogue column it filters (``where``)."""

    def __init__(self, field: str, expected: str, value: Any) -> None:
        super().__init__(f"filter field {field!r} holds {expected} values; got {value!r}")
        self.field = field
        self.expected = expected
        self.value = value


class UnknownIdWarning(UserWarning):
    """Unknown ids were left out of a query, or a query was served by the popularity fallback.

    Raised as an error instead (:class:`UnknownIdError`) in strict mode (``strict=True``).
    """

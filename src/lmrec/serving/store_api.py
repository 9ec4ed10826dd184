"""The storage interface behind the server's event log: what a back end implements.

:class:`EventStore` is the dozen methods the server calls (feedback events, added items, served
lists, checkpoints); :class:`~lmrec.serving.store.SQLiteEventStore` is the embedded default, and a
server database is a new subclass. :class:`LoggedItem` is an item added while serving and
:class:`DuplicateItemError` what adding an id twice raises. All three are re-exported by
:mod:`lmrec.serving.store`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lmrec.errors import LmrecError
from lmrec.events import Event, Impression


class DuplicateItemError(LmrecError):
    """An added item's id is already in the event log (another worker, or an earlier run, added it)."""


@dataclass(frozen=True)
class LoggedItem:
    """An item added while serving (``POST /items``); replayed into the model on restart."""

    item_id: Any
    fields: dict[str, Any]
    seq: int | None = None
    added_at: float | None = None


class EventStore(ABC):
    """Storage interface for the serving log. Implementations must make :meth:`append` durable."""

    # -- feedback events -------------------------------------------------------------------
    @abstractmethod
    def append(self, event: Event) -> Event:
        """Persist one event; return it with ``id``/``received_at`` set. Durable when it returns."""

    @abstractmethod
    def events(self, after: int = 0, *, limit: int | None = None) -> Iterator[Event]:
        """Events with ``id > after`` in log order."""

    @abstractmethod
    def last_event_id(self) -> int:
        """The id of the newest event (0 for an empty log)."""

    @abstractmethod
    def count_events(self) -> int: ...

    # -- catalogue additions ---------------------------------------------------------------
    @abstractmethod
    def add_item(self, item: LoggedItem, then: Callable[[], None] | None = None) -> LoggedItem:
        """Persist an added item (durable when it returns); :class:`DuplicateItemError` if the id
        was added before.

        ``then`` is the caller's own work on the item (a server adds it to its model): it runs once
        the id is reserved in the log, so that of two workers adding one id at once exactly one gets
        that far, and if it raises the item is not logged. Both happen, or neither.
        """

    @abstractmethod
    def items(self) -> Iterator[LoggedItem]:
        """Added items in the order they were added."""

    def watermark(self) -> tuple[int, int]:
        """``(newest event id, newest added item's seq)``, read together: what a server worker
        compares with what it has applied (:mod:`lmrec.serving.sync`). Called on every request of a
        multi-worker server, so back ends should answer it from an index, without waiting on writers."""
        return self.last_event_id(), max((it.seq or 0 for it in self.items()), default=0)

    # -- served lists ----------------------------------------------------------------------
    @abstractmethod
    def log_impression(self, impression: Impression) -> None:
        """Record a served list (may be buffered; see the module docstring)."""

    @abstractmethod
    def impressions(self, *, since: float | None = None) -> Iterator[Impression]:
        """Logged impressions in the order they were served."""

    @abstractmethod
    def get_impression(self, request_id: str) -> Impression | None: ...

    # -- checkpoints and lifecycle ---------------------------------------------------------
    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    def flush(self) -> None:
        """Commit anything buffered (impressions)."""
        return None

    def close(self) -> None:
        """Flush and release resources."""
        return None

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DuplicateItemError", "EventStore", "LoggedItem"]

"""The durable event log behind the server: feedback events, added items and served lists.

The server acknowledges a feedback event only after :meth:`EventStore.append` has returned, and
``append`` returns only after the event is committed to disk. On restart the server rebuilds every
user's in-memory state by replaying the log, so an acknowledged event is never lost, even when the
process is killed with ``SIGKILL``. ``lmrec retrain`` later folds the logged events into a freshly
trained model and records how far it got (a checkpoint), so the next server start replays only the
events that the new model has not seen.

:class:`EventStore` is the storage interface (:mod:`lmrec.serving.store_api`, re-exported here);
:class:`SQLiteEventStore` is the embedded default (SQLite in WAL mode with ``synchronous=FULL``: one
``fsync`` of the write-ahead log per commit, no server to run). A server database (PostgreSQL, ...)
is a new subclass implementing the same dozen methods.

Served lists (*impressions*: the candidates, what was shown, with propensities) are the exception to
"durable before acknowledged": writing one per ``/recommend`` call with an ``fsync`` each would put
disk latency on the read path. They are buffered and committed in small batches by a background
thread (every ``impression_flush_s`` seconds); a crash can lose the last fraction of a second of
impressions, never a feedback event. Bandit updates and offline replay treat a missing impression as
"no context known" and skip it.

The record types (:class:`~lmrec.events.Event`, :class:`~lmrec.events.Impression`) and the reward of
an event live in :mod:`lmrec.events`, below serving, so that the bandits can read a log without
importing the server; they are re-exported here.

Ids are stored JSON-encoded so that integer ids stay integers and the string ``"42"`` stays a
string: the log does not need to know the model's vocabulary.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lmrec import events as _events
from lmrec.errors import LmrecError
from lmrec.events import (  # noqa: F401 (all of lmrec.events is re-exported, in __all__ below)
    EVENT_TYPES,
    NEGATIVE_EVENTS,
    POSITIVE_EVENTS,
    RATING_REWARD_THRESHOLD,
    Event,
    EventLog,
    Impression,
    event_reward,
)
from lmrec.serving.store_api import DuplicateItemError, EventStore, LoggedItem

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    event       TEXT NOT NULL,
    weight      REAL NOT NULL,
    timestamp   REAL NOT NULL,
    request_id  TEXT,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id  TEXT NOT NULL UNIQUE,
    fields   TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS impressions (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id       TEXT NOT NULL UNIQUE,
    user_id          TEXT,
    items            TEXT NOT NULL,
    propensities     TEXT NOT NULL,
    candidates       TEXT NOT NULL,
    candidate_scores TEXT NOT NULL,
    policy           TEXT NOT NULL,
    served_at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS impressions_served_at ON impressions (served_at);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _enc(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _rounded(values: Any) -> list[float]:
    """Floats to 6 decimals for the log (Python's ``round``: the same digits ``json`` writes back)."""
    return [round(float(v), 6) for v in values]


def _dec(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SQLiteEventStore(EventStore):
    """The embedded default: one SQLite file in WAL mode, ``synchronous=FULL``.

    WAL lets readers (``lmrec retrain``, a replay notebook) open the file while the server writes.
    ``synchronous=FULL`` makes every commit ``fsync`` the write-ahead log, so an event survives a
    killed process *and* a power cut; ``synchronous="NORMAL"`` survives a killed process only and is
    faster on slow disks. One connection is shared by the server's threads behind a lock: SQLite
    allows one writer at a time anyway, and short transactions keep the lock cheap.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        impression_flush_s: float = 0.2,
        read_only: bool = False,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.read_only = read_only
        if read_only:
            if not self.path.exists():
                raise LmrecError(f"event log {self.path} does not exist")
            uri = f"file:{self.path}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        try:
            self._conn.execute("PRAGMA busy_timeout = 10000")
            if not read_only:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LmrecError(f"{self.path}: cannot switch SQLite to WAL mode (got {mode!r})")
                self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
                self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise LmrecError(f"{self.path} is not a usable SQLite event log: {exc}") from exc
        #: a second connection for :meth:`watermark` alone: a WAL reader never waits for a writer,
        #: and this one never waits for the main connection's lock, which a commit holds through
        #: its fsync (opened on first use: only multi-worker servers ask)
        self._mark_conn: sqlite3.Connection | None = None
        self._mark_lock = threading.Lock()
        self._pending: list[Impression] = []
        # the buffer has its own lock: a request appending an impression must never wait for the
        # connection lock, which a commit holds through its fsync (seconds on a busy disk)
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._flushing: list[Impression] = []
        self._flush_s = impression_flush_s
        self._stop = threading.Event()
        self._closed = False
        self._flusher: threading.Thread | None = None
        if not read_only and impression_flush_s > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name="lmrec-impressions", daemon=True)
            self._flusher.start()

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"

    # -- helpers ---------------------------------------------------------------------------
    def _write(
        self, sql: str, params: Sequence[Any], then: Callable[[], None] | None = None
    ) -> sqlite3.Cursor:
        """Run one statement in its own transaction; ``then`` (if given) runs after the statement and
        before the commit, and the statement is rolled back if it raises."""
        if self.read_only:
            raise LmrecError(f"event log {self.path} is open read-only")
        with self._lock:
            if self._closed:
                raise LmrecError(f"event log {self.path} is closed")
            # an explicit transaction: the commit is where SQLite fsyncs the WAL
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(sql, params)
                if then is not None:
                    then()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return cur

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._closed:
                raise LmrecError(f"event log {self.path} is closed")
            return self._conn.execute(sql, params).fetchall()

    # -- events ----------------------------------------------------------------------------
    def append(self, event: Event) -> Event:
        now = time.time()
        cur = self._write(
            "INSERT INTO events (user_id, item_id, event, weight, timestamp, request_id, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                _enc(event.user_id),
                _enc(event.item_id),
                event.event,
                float(event.weight),
                float(event.timestamp),
                event.request_id,
                now,
            ),
        )
        return replace(event, id=int(cur.lastrowid or 0), received_at=now)

    def events(self, after: int = 0, *, limit: int | None = None) -> Iterator[Event]:
        page = 10_000 if limit is None else min(limit, 10_000)
        last, served = after, 0
        while limit is None or served < limit:
            rows = self._read(
                "SELECT id, user_id, item_id, event, weight, timestamp, request_id, received_at "
                "FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (last, page if limit is None else min(page, limit - served)),
            )
            if not rows:
                return
            for r in rows:
                yield Event(
                    id=r[0],
                    user_id=_dec(r[1]),
                    item_id=_dec(r[2]),
                    event=r[3],
                    weight=r[4],
                    timestamp=r[5],
                    request_id=r[6],
                    received_at=r[7],
                )
            last = rows[-1][0]
            served += len(rows)

    def last_event_id(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM events")[0][0])

    def count_events(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM events")[0][0])

    # -- items -----------------------------------------------------------------------------
    def add_item(self, item: LoggedItem, then: Callable[[], None] | None = None) -> LoggedItem:
        # the row is inserted (its id reserved: another worker's insert of the same id now fails)
        # before ``then`` runs, and committed only after it returns
        now = time.time()
        try:
            cur = self._write(
                "INSERT INTO items (item_id, fields, added_at) VALUES (?, ?, ?)",
                (_enc(item.item_id), _enc(item.fields), now),
                then,
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateItemError(f"item_id {item.item_id!r} is already in the event log") from exc
        return replace(item, seq=int(cur.lastrowid or 0), added_at=now)

    def items(self) -> Iterator[LoggedItem]:
        for seq, item_id, fields, added_at in self._read(
            "SELECT seq, item_id, fields, added_at FROM items ORDER BY seq"
        ):
            yield LoggedItem(item_id=_dec(item_id), fields=_dec(fields), seq=seq, added_at=added_at)

    def watermark(self) -> tuple[int, int]:
        with self._mark_lock:
            if self._closed:
                raise LmrecError(f"event log {self.path} is closed")
            if self._mark_conn is None:
                self._mark_conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
                )
                self._mark_conn.execute("PRAGMA busy_timeout = 10000")
            row = self._mark_conn.execute(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(MAX(seq), 0) FROM items)"
            ).fetchone()
        return int(row[0]), int(row[1])

    # -- impressions -----------------------------------------------------------------------
    def log_impression(self, impression: Impression) -> None:
        if self._flusher is None:
            self._write_impressions([impression])
            return
        with self._pending_lock:
            self._pending.append(impression)

    def _write_impressions(self, batch: list[Impression]) -> None:
        rows = [
            (
                imp.request_id,
                _enc(imp.user_id),
                _enc(imp.items),
                _enc(_rounded(imp.propensities)),
                _enc(imp.candidates),
                _enc(_rounded(imp.candidate_scores)),
                imp.policy,
                imp.served_at,
            )
            for imp in batch
        ]
        with self._lock:
            if self._closed:
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO impressions (request_id, user_id, items, propensities, candidates, "
                    "candidate_scores, policy, served_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def flush(self) -> None:
        with self._flush_lock:  # one flush at a time: keeps impressions in serving order
            with self._pending_lock:
                batch, self._pending = self._pending, []
                self._flushing = batch  # still visible to get_impression while it is written
            try:
                if batch:
                    self._write_impressions(batch)
            finally:
                with self._pending_lock:
                    self._flushing = []

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_s):
            try:
                self.flush()
            except (sqlite3.Error, LmrecError):  # pragma: no cover - disk full etc.: retry next tick
                continue

    def _row_to_impression(self, r: tuple[Any, ...]) -> Impression:
        return Impression(
            request_id=r[0],
            user_id=_dec(r[1]),
            items=_dec(r[2]),
            propensities=_dec(r[3]),
            candidates=_dec(r[4]),
            candidate_scores=_dec(r[5]),
            policy=r[6],
            served_at=r[7],
        )

    _IMP_COLS = "request_id, user_id, items, propensities, candidates, candidate_scores, policy, served_at"

    def impressions(self, *, since: float | None = None) -> Iterator[Impression]:
        if not self.read_only:
            self.flush()
        last = 0
        while True:
            rows = self._read(
                f"SELECT seq, {self._IMP_COLS} FROM impressions WHERE seq > ? AND served_at >= ? ORDER BY seq LIMIT 5000",
                (last, -1.0 if since is None else since),
            )
            if not rows:
                return
            for r in rows:
                yield self._row_to_impression(r[1:])
            last = rows[-1][0]

    def get_impression(self, request_id: str) -> Impression | None:
        with self._pending_lock:
            for imp in reversed(self._pending + self._flushing):
                if imp.request_id == request_id:
                    return imp
        rows = self._read(f"SELECT {self._IMP_COLS} FROM impressions WHERE request_id = ?", (request_id,))
        return self._row_to_impression(rows[0]) if rows else None

    # -- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- introspection (used by tests and /health) -----------------------------------------
    def pragma(self, name: str) -> Any:
        return self._read(f"PRAGMA {name}")[0][0]

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        if not self.read_only:
            try:
                self.flush()
            except (sqlite3.Error, LmrecError):  # pragma: no cover
                pass
        with self._lock, self._mark_lock:
            self._closed = True
            self._conn.close()
            if self._mark_conn is not None:
                self._mark_conn.close()


def open_store(url: str | os.PathLike[str], **options: Any) -> EventStore:
    """Open an event store from a path or URL (``sqlite:///path/events.db`` or a plain path).

    New back ends register here by URL scheme; SQLite is the only one shipped.
    """
    text = str(url)
    if text.startswith("sqlite:///"):
        return SQLiteEventStore(text.removeprefix("sqlite:///"), **options)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise LmrecError(f"no event store for scheme {scheme!r} (supported: sqlite:///path or a file path)")
    return SQLiteEventStore(text, **options)


__all__ = [
    *_events.__all__,
    "DuplicateItemError",
    "EventStore",
    "LoggedItem",
    "SQLiteEventStore",
    "open_store",
]

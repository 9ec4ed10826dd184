"""The durable event log: WAL + FULL sync, ordering, typed ids, items, buffered impressions."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from lmrec.errors import LmrecError
from lmrec.serving.store import (
    DuplicateItemError,
    Event,
    Impression,
    LoggedItem,
    SQLiteEventStore,
    event_reward,
    open_store,
)


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        assert store.pragma("journal_mode") == "wal"
        assert store.pragma("synchronous") == 2  # FULL: fsync the WAL on every commit
    with SQLiteEventStore(tmp_path / "n.db", synchronous="NORMAL") as store:
        assert store.pragma("synchronous") == 1
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteEventStore(tmp_path / "x.db", synchronous="OFF")


def test_append_is_visible_to_another_connection_at_once(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "e.db")
    ev = store.append(
        Event(user_id=1, item_id="B00X", event="like", weight=4.5, timestamp=123.0, request_id="r1")
    )
    assert ev.id == 1 and ev.received_at is not None
    # a second, independent connection (as after a crash) sees the committed row
    other = sqlite3.connect(tmp_path / "e.db")
    assert other.execute("SELECT user_id, item_id, event, weight FROM events").fetchall() == [
        ("1", '"B00X"', "like", 4.5)
    ]
    other.close()
    store.close()


def test_ids_keep_their_type_and_order(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        store.append(Event(user_id=42, item_id=7))
        store.append(Event(user_id="42", item_id="7"))
        for i in range(25):
            store.append(Event(user_id=1, item_id=i))
        events = list(store.events())
        assert [type(e.user_id) for e in events[:2]] == [int, str]
        assert [e.id for e in events] == list(range(1, 28))
        assert [e.id for e in store.events(after=20)] == list(range(21, 28))
        assert [e.id for e in store.events(after=5, limit=3)] == [6, 7, 8]
        assert store.last_event_id() == 27 and store.count_events() == 27


def test_concurrent_appends_get_unique_ids(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "e.db", synchronous="NORMAL") as store:
        ids: list[int] = []

        def work(u: int) -> None:
            for i in range(20):
                ev = store.append(Event(user_id=u, item_id=i))
                ids.append(int(ev.id or 0))

        threads = [threading.Thread(target=work, args=(u,)) for u in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(ids) == list(range(1, 81))


def test_items_are_unique_and_ordered(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store:
        store.add_item(LoggedItem(item_id=10, fields={"title": "a"}))
        store.add_item(LoggedItem(item_id="x", fields={"tags": ["t"]}))
        with pytest.raises(LmrecError, match="already in the event log"):
            store.add_item(LoggedItem(item_id=10, fields={}))
        assert [(i.item_id, i.fields) for i in store.items()] == [
            (10, {"title": "a"}),
            ("x", {"tags": ["t"]}),
        ]


def test_an_item_is_logged_only_if_the_work_on_it_succeeds(tmp_path: Path) -> None:
    with SQLiteEventStore(tmp_path / "e.db") as store, SQLiteEventStore(tmp_path / "e.db") as other:
        seen: list[int] = []

        def fails() -> None:
            # the id is reserved while this runs: another writer's insert of it waits, then fails
            seen.append(other._read("SELECT COUNT(*) FROM items")[0][0])
            raise ValueError("model refused the item")

        with pytest.raises(ValueError, match="refused"):
            store.add_item(LoggedItem(item_id=7, fields={"title": "a"}), then=fails)
        assert seen == [0]  # not visible to other connections before the commit
        assert list(store.items()) == []
        done: list[int] = []
        logged = store.add_item(LoggedItem(item_id=7, fields={"title": "b"}), then=lambda: done.append(1))
        assert done == [1] and logged.seq is not None
        with pytest.raises(DuplicateItemError, match="already in the event log"):
            other.add_item(LoggedItem(item_id=7, fields={}), then=lambda: done.append(2))
        assert done == [1]  # the duplicate's work never ran
        assert [(i.item_id, i.fields) for i in other.items()] == [(7, {"title": "b"})]


def test_impressions_are_buffered_then_flushed(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "e.db", impression_flush_s=60)
    imp = Impression("r1", 5, [1, 2], [0.9, 0.5], [1, 2, 3], [1.0, 0.5, 0.0], "linucb", 10.0)
    store.log_impression(imp)
    assert store.get_impression("r1") == imp  # served from the buffer before it is written
    other = sqlite3.connect(tmp_path / "e.db")
    assert other.execute("SELECT COUNT(*) FROM impressions").fetchone()[0] == 0
    store.flush()
    assert other.execute("SELECT COUNT(*) FROM impressions").fetchone()[0] == 1
    other.close()
    assert list(store.impressions()) == [imp]
    assert list(store.impressions(since=11.0)) == []
    store.close()
    with SQLiteEventStore(tmp_path / "e.db", read_only=True) as ro:
        assert ro.get_impression("r1") == imp
        with pytest.raises(LmrecError, match="read-only"):
            ro.append(Event(1, 2))


def test_close_flushes_and_meta_round_trips(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "e.db", impression_flush_s=60)
    store.log_impression(Impression("r9", None, [1], [1.0]))
    store.set_meta("k", "v1")
    store.set_meta("k", "v2")
    store.close()
    with open_store(f"sqlite:///{tmp_path / 'e.db'}") as again:
        assert again.get_impression("r9") is not None
        assert again.get_meta("k") == "v2" and again.get_meta("nope") is None
    with pytest.raises(LmrecError, match="no event store for scheme 'postgres'"):
        open_store("postgres://db/x")


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LmrecError, match="not a usable SQLite event log"):
        SQLiteEventStore(bad)


def test_event_reward() -> None:
    assert event_reward("click", 1.0) == 1.0
    assert event_reward("dislike", 1.0) == 0.0
    assert event_reward("rating", 4.0) == 1.0 and event_reward("rating", 2.0) == 0.0

"""lmrec.events: the feedback vocabulary shared by serving, bandits and rl."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lmrec.events as events
from lmrec.events import (
    EVENT_TYPES,
    NEGATIVE_EVENTS,
    POSITIVE_EVENTS,
    Event,
    EventLog,
    Impression,
    event_reward,
)


@pytest.mark.parametrize(
    ("event", "weight", "reward"),
    [
        ("click", 1.0, 1.0),
        ("purchase", 0.0, 1.0),
        ("rating", 4.0, 1.0),
        ("rating", 3.5, 1.0),
        ("rating", 2.0, 0.0),
        ("dislike", 1.0, 0.0),
        ("skip", 5.0, 0.0),
        ("hide", 1.0, 0.0),
    ],
)
def test_event_reward(event: str, weight: float, reward: float) -> None:
    assert event_reward(event, weight) == reward
    assert Event(user_id=1, item_id=2, event=event, weight=weight).reward == reward


def test_event_kinds_partition_the_types() -> None:
    assert POSITIVE_EVENTS.isdisjoint(NEGATIVE_EVENTS)
    assert EVENT_TYPES == POSITIVE_EVENTS | NEGATIVE_EVENTS
    assert Event(1, 2, "like").positive and not Event(1, 2, "hide").positive


def test_history_weight_of_a_positive_event() -> None:
    assert Event(1, 2, "rating", weight=4.5).history_weight == 4.5
    assert Event(1, 2, "click", weight=0.0).history_weight == 1.0
    assert Event(1, 2, "click", weight=-3.0).history_weight == 1.0


def test_records_are_frozen_with_defaults() -> None:
    ev = Event(user_id="u", item_id=7)
    assert (ev.event, ev.weight, ev.request_id, ev.id) == ("click", 1.0, None, None)
    with pytest.raises(AttributeError):
        ev.weight = 2.0  # type: ignore[misc]
    imp = Impression(request_id="r", user_id="u", items=[1], propensities=[1.0])
    assert imp.candidates == [] and imp.policy == "model"


def test_store_re_exports_the_same_objects(tmp_path: Path) -> None:
    from lmrec.serving import store

    assert store.Event is Event and store.Impression is Impression and store.event_reward is event_reward
    assert store.EVENT_TYPES is EVENT_TYPES
    with store.SQLiteEventStore(tmp_path / "e.db", impression_flush_s=0) as log:
        log.append(Event(user_id=1, item_id=2, event="like", timestamp=5.0))
        log.log_impression(Impression(request_id="r", user_id=1, items=[2], propensities=[1.0]))
        reader: EventLog = log  # an event store is an event log
        assert [e.item_id for e in reader.events()] == [2]
        assert [i.request_id for i in reader.impressions()] == ["r"]


def test_events_imports_nothing_from_lmrec() -> None:
    """The bottom floor: serving, bandits and rl import it, so it imports none of them."""
    tree = ast.parse(Path(events.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.split(".")[0] == "lmrec"], names

"""Feedback events, served lists and their rewards: the vocabulary serving, bandits and rl share.

This module sits below every layer that uses it (it imports nothing from lmrec), so the bandits and
their offline evaluation read the serving log without importing the server: the server writes
:class:`Event` and :class:`Impression` records (:mod:`lmrec.serving.store`), and anything that reads
them back needs only the small :class:`EventLog` protocol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: events that mean "the user wanted this": they extend the user's history and count as reward 1
POSITIVE_EVENTS = frozenset({"view", "click", "play", "like", "add_to_cart", "purchase", "rating"})
#: events that mean "not this": the item is hidden from the user's next lists and counts as reward 0
NEGATIVE_EVENTS = frozenset({"dislike", "skip", "hide"})
EVENT_TYPES = POSITIVE_EVENTS | NEGATIVE_EVENTS
#: a rating below this is a reward of 0 for the bandit (it still extends the history, as in training)
RATING_REWARD_THRESHOLD = 3.5


def event_reward(event: str, weight: float) -> float:
    """The bandit reward of a feedback event: 1 for a positive signal, 0 for a negative one."""
    if event in NEGATIVE_EVENTS:
        return 0.0
    if event == "rating":
        return 1.0 if weight >= RATING_REWARD_THRESHOLD else 0.0
    return 1.0


@dataclass(frozen=True)
class Event:
    """One feedback event. ``id`` and ``received_at`` are set by the store."""

    user_id: Any
    item_id: Any
    event: str = "click"
    weight: float = 1.0
    #: when it happened (Unix seconds; the server uses the time it was received if the client sends none)
    timestamp: float = 0.0
    #: the served list this event answers, if known (used for bandit updates and replay)
    request_id: str | None = None
    id: int | None = None
    received_at: float | None = None

    @property
    def positive(self) -> bool:
        return self.event in POSITIVE_EVENTS

    @property
    def reward(self) -> float:
        """:func:`event_reward` of this event."""
        return event_reward(self.event, self.weight)

    @property
    def history_weight(self) -> float:
        """What a positive event adds to the user's history: the rating for ratings, else its weight
        (non-positive weights count as 1, as an unweighted interaction does in training)."""
        return float(self.weight) if self.weight > 0 else 1.0


@dataclass(frozen=True)
class Impression:
    """One served list: what the policy could choose from, what it showed, and with what probability.

    ``propensities[j]`` is the probability that the serving policy put ``items[j]`` in slot ``j``
    given the candidates still free at that slot; with those, offline replay can evaluate another
    policy on this log without bias (see :mod:`lmrec.bandits.replay`).
    """

    request_id: str
    user_id: Any
    items: list[Any]
    propensities: list[float]
    #: the candidate pool the list was drawn from and the base model's normalised scores for it
    candidates: list[Any] = field(default_factory=list)
    candidate_scores: list[float] = field(default_factory=list)
    policy: str = "model"
    served_at: float = 0.0


class EventLog(Protocol):
    """The read side of an event log: what offline evaluation needs (every ``EventStore`` has it)."""

    def events(self, after: int = 0) -> Iterable[Event]:
        """Feedback events with ``id > after``, in log order."""
        ...

    def impressions(self, *, since: float | None = None) -> Iterable[Impression]:
        """Served lists, in the order they were served."""
        ...


__all__ = [
    "EVENT_TYPES",
    "NEGATIVE_EVENTS",
    "POSITIVE_EVENTS",
    "RATING_REWARD_THRESHOLD",
    "Event",
    "EventLog",
    "Impression",
    "event_reward",
]

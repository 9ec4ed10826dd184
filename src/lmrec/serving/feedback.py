"""Feedback: events logged durably, applied to the model, and credited to the list they answer.

A positive event extends the user's history (the next list excludes the item and reflects it), a
negative one hides the item from the user's lists. If the event answers a list recently shown to the
user, the bandit that served it learns from it; there is one update path (:func:`update_bandits`),
used both live (:func:`record_feedback`) and when a restarted server replays its log
(:func:`replay_events`), so a restart rebuilds exactly the bandit state it had.

Which list an event answers: the one its ``request_id`` names, else the newest list recently shown
to the user that held the item (:class:`RecentLists`). During replay only a logged impression shown
to that very user can be credited (a client may send any request id).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lmrec.bandits import LinearBandit
from lmrec.events import Event

if TYPE_CHECKING:
    from lmrec.serving.metrics import ServerMetrics
    from lmrec.serving.state import ServingState

log = logging.getLogger("lmrec.serving")


@dataclass(frozen=True)
class Credit:
    """The list an event answers: its request id, the item's scaled base score in it (None: the
    item was not among its candidates, or no list is known) and the policy that served it."""

    request_id: str | None
    scaled: float | None = None
    policy: str = ""


class RecentLists:
    """What each user was recently shown: request id -> (policy, {item index: scaled base score}).

    Bounded: ``per_user`` lists per user, ``max_users`` users (least recently served dropped).
    Not thread-safe on its own: the serving state calls it under its lock.
    """

    def __init__(self, *, max_users: int = 100_000, per_user: int = 20) -> None:
        self.max_users = max_users
        self.per_user = per_user
        self._users: OrderedDict[Any, OrderedDict[str, tuple[str, dict[int, float]]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._users)

    def remember(
        self, key: Any, request_id: str, policy: str, candidates: np.ndarray, scaled: np.ndarray
    ) -> None:
        lists = self._users.pop(key, None) or OrderedDict()
        lists[request_id] = (policy, {int(c): float(s) for c, s in zip(candidates, scaled, strict=True)})
        while len(lists) > self.per_user:
            lists.popitem(last=False)
        self._users[key] = lists
        while len(self._users) > self.max_users:
            self._users.popitem(last=False)

    def credit(self, key: Any, item_idx: int, request_id: str | None) -> Credit:
        """The list of this user that an event on ``item_idx`` answers (see the module doc)."""
        lists = self._users.get(key)
        if lists is None:
            return Credit(request_id)
        if request_id is not None:
            policy, scaled = lists.get(request_id, ("", {}))
            return Credit(request_id, scaled.get(item_idx), policy)
        for rid in reversed(lists):
            policy, scaled = lists[rid]
            if item_idx in scaled:
                return Credit(rid, scaled[item_idx], policy)
        return Credit(None)


def update_bandits(
    bandits: Mapping[str, LinearBandit],
    policy: str,
    scaled: float,
    item_vector: np.ndarray,
    reward: float,
    metrics: ServerMetrics | None = None,
) -> bool:
    """The one bandit update: the bandit that served the list (every bandit when the list was not
    served by one: the model or MMR ordered it) learns ``reward`` for ``[scaled score, item vector]``.
    Returns whether any bandit learned."""
    if not bandits:
        return False
    targets = [bandits[policy]] if policy in bandits else list(bandits.values())
    x = np.concatenate([[float(scaled)], np.asarray(item_vector, dtype=np.float64)])
    for b in targets:
        b.update(x, reward)
        if metrics is not None:
            metrics.bandit_updates.labels(policy=b.name).inc()
    return True


def record_feedback(
    state: ServingState,
    *,
    user_id: Any,
    item_id: Any,
    event: str = "click",
    weight: float = 1.0,
    timestamp: float | None = None,
    request_id: str | None = None,
) -> tuple[Event, bool]:
    """Log the event durably, then apply it (see the module doc). Returns the logged event and
    whether a bandit learned from it."""
    follower = state.follower
    if follower is not None:  # an item another worker added must resolve below
        follower.catch_up()
    key = state.user_key(user_id)
    item_idx = state.item_index(item_id)
    canonical_item = state.item_id(item_idx)
    ts = time.time() if timestamp is None else float(timestamp)
    # writers are serialised so that the in-memory order equals the log order (replay then rebuilds
    # exactly this state); the model lock is not held during the fsync, so reads go on
    with state.write_lock:
        if follower is not None:  # other workers' earlier events come first here too
            follower.catch_up_locked()
        with state.lock:
            credit = state.recent.credit(key, item_idx, request_id)
        if follower is not None:
            credit = follower.shared_credit(credit, key, canonical_item)
        ev = state.store.append(
            Event(
                user_id=key,
                item_id=canonical_item,
                event=event,
                weight=weight,
                timestamp=ts,
                request_id=credit.request_id,
            )
        )
        if follower is not None:
            follower.mark_own(ev)
        with state.lock:
            apply_event(state, key, item_idx, ev)
            updated = credit.scaled is not None and update_bandits(
                state.bandits,
                credit.policy,
                credit.scaled,
                state.features[item_idx],
                ev.reward,
                state.metrics,
            )
    state.metrics.feedback.labels(event=event).inc()
    return ev, updated


def apply_event(state: ServingState, key: Any, item_idx: int, ev: Event) -> None:
    """A positive event extends the user's history; a negative one hides the item from the user."""
    if ev.positive:
        state.model.add_interactions(key, [ev.item_id], [ev.history_weight])
    else:
        state.blocked.setdefault(key, set()).add(item_idx)


def replay_events(state: ServingState, after: int, upto: int | None = None) -> int:
    """Re-apply logged events at start-up: positives newer than the checkpoint ``after`` extend
    histories (one bulk update per user), every negative hides its item, every event credited to a
    logged list shown to its user updates the bandit. Returns the number of events replayed; the
    newest id read is left in ``state.events_applied``. ``upto``: stop after this id (a worker of a
    multi-worker server replays up to the mark it read before loading the added items, and catches
    up from there, so that no event naming an item added meanwhile is read before its item)."""
    t0 = time.perf_counter()
    per_user: dict[Any, tuple[list[Any], list[float]]] = {}
    n = 0
    for ev in state.store.events():
        if upto is not None and (ev.id or 0) > upto:
            break
        state.events_applied = max(state.events_applied, ev.id or 0)
        resolved = resolve_logged(state, ev)
        if resolved is None:
            continue
        key, item = resolved
        if not ev.positive:
            state.blocked.setdefault(key, set()).add(item)
        elif ev.id is not None and ev.id > after:
            items, weights = per_user.setdefault(key, ([], []))
            items.append(ev.item_id)
            weights.append(ev.history_weight)
        credit_logged(state, ev, key, item)
        n += 1
    for key, (items, weights) in per_user.items():
        state.model.add_interactions(key, items, weights)
    if n:
        log.info("replayed %d logged events in %.2fs", n, time.perf_counter() - t0)
    return n


def resolve_logged(state: ServingState, ev: Event) -> tuple[Any, int] | None:
    """A logged event's (user key, item index); None (logged as skipped) when the model does not
    know its item."""
    vocab = state.model.item_vocab
    assert vocab is not None
    if ev.item_id not in vocab:
        log.warning("event %s names unknown item %r; skipped", ev.id, ev.item_id)
        return None
    return state.user_key(ev.user_id), vocab.index(ev.item_id)


def credit_logged(state: ServingState, ev: Event, key: Any, item: int) -> None:
    """The bandit update of a logged event whose ``request_id`` names a logged list shown to this
    very user (a client may send any id): at replay, and for events another worker logged."""
    if not (ev.request_id and state.bandits):
        return
    imp = state.store.get_impression(ev.request_id)
    if imp is None or imp.user_id != key:
        return
    scaled = logged_score(imp.candidates, imp.candidate_scores, ev.item_id)
    if scaled is not None and item < len(state.features):
        update_bandits(state.bandits, imp.policy, scaled, state.features[item], ev.reward, state.metrics)


def logged_score(candidates: list[Any], scores: list[float], item_id: Any) -> float | None:
    """The item's scaled score among a logged list's candidates (ids compared by ``repr``: the log
    keeps 42 and "42" apart)."""
    try:
        return float(scores[[repr(c) for c in candidates].index(repr(item_id))])
    except ValueError:
        return None


__all__ = [
    "Credit",
    "RecentLists",
    "apply_event",
    "credit_logged",
    "logged_score",
    "record_feedback",
    "replay_events",
    "resolve_logged",
    "update_bandits",
]

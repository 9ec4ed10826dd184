"""Several server processes over one event log: each worker keeps up with what the others wrote.

``lmrec serve --workers N`` runs N uvicorn worker processes on one port; the kernel hands each new
connection to one of them. Python runs one request's pipeline at a time per process, so on a
machine with more than one core a second worker is what lets the server use it. Each worker costs a
copy of the model and of the index (``docs/retrieval.md`` has the measured latency and memory at 1M
items).

Each worker loads the model and holds its own online state: users' histories, hidden items, the
bandits and the items added through ``POST /items``. The event log is the one shared truth, and a
:class:`LogFollower` brings its worker up to date with it:

* **when**: before every ``/recommend`` batch, ``/items/{id}/similar``, ``/health``, feedback event and
  added item. The check is one indexed SQLite read on its own connection
  (:meth:`~lmrec.serving.store.EventStore.watermark`, tens of microseconds); only a change is read.
* **what**: items first (a new event may name one), then events, each applied exactly as a restarted
  server replays it (:func:`~lmrec.serving.feedback.replay_events`): a positive event extends the
  user's history, a negative one hides the item, and a credited event updates the bandit from the
  logged list it answers. A worker skips the events it logged and applied itself.
* **consistency**: an acknowledged event or item is in the log before the answer leaves, so any
  request that starts after the acknowledgement, on any worker, sees it (read-your-writes across
  workers). A list is credited across workers through its logged impression: the worker that logs a
  credited event first commits the impressions it holds, so that the list is in the log before the
  event that names it. Impressions are committed in batches (every 0.2 s); feedback naming a list
  another worker served less than that before falls back to the list's ``request_id`` alone, and
  the bandit does not learn from that one event.
* **new items**: a worker reserves an added item's id in the log (an uncommitted insert, which
  makes another worker's insert of the same id wait and then fail) before its model takes the item,
  and commits only once the model has it. Of two workers adding one id at the same moment, one
  answers 201 and the other 409, and the second serves the first one's item after catching up,
  as a restart would; a model that refuses an item leaves nothing in the log.
* **order**: events of one user sent at the same moment to two workers are applied in log order by
  the others and by a restart, and in arrival order by the worker that logged the later one.

The hot path never waits for this worker's own writer: if a feedback event is being logged when a
request arrives, the request is served without catching up (the writer catches up itself); the next
request catches up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmrec.events import Event
from lmrec.serving.feedback import Credit, apply_event, credit_logged, logged_score, resolve_logged

if TYPE_CHECKING:
    from lmrec.serving.state import ServingState

__all__ = ["LogFollower"]


class LogFollower:
    """Applies to one worker's state the events and items that other workers logged."""

    def __init__(self, state: ServingState, *, events_upto: int) -> None:
        self.state = state
        #: newest event id this worker has applied (added items: ``state.items_applied``)
        self.events_upto = int(events_upto)
        #: ids of events this worker logged and applied itself, newer than ``events_upto``
        self._own: set[int] = set()
        #: events and items applied from other workers (for tests and /metrics)
        self.applied = 0

    def __repr__(self) -> str:
        return f"LogFollower(events_upto={self.events_upto}, items_applied={self.state.items_applied})"

    def catch_up(self, *, wait: bool = True) -> int:
        """Apply whatever the other workers logged since the last call; returns how many events
        and items that was. ``wait=False`` (the request path) skips the catch-up while this worker's
        own writer holds the write lock."""
        events, items = self.state.store.watermark()
        if events <= self.events_upto and items <= self.state.items_applied:
            return 0
        lock = self.state.write_lock
        if not lock.acquire(blocking=wait):
            return 0
        try:
            return self.catch_up_locked()
        finally:
            lock.release()

    def catch_up_locked(self) -> int:
        """:meth:`catch_up` for a caller that holds the state's write lock."""
        st = self.state
        events_mark, items_mark = st.store.watermark()
        n = 0
        if items_mark > st.items_applied:
            new = [it for it in st.store.items() if (it.seq or 0) > st.items_applied]
            with st.lock:
                old_n = st.model.n_items
                st.add_logged_items(new)  # advances st.items_applied
                st.append_item_vectors(old_n)
            n += len(new)
        if events_mark > self.events_upto:
            # events up to the mark read above only: a later one may name an item not applied yet
            for ev in st.store.events(self.events_upto):
                if ev.id is None or ev.id > events_mark:
                    break
                if ev.id in self._own:
                    self._own.discard(ev.id)
                else:
                    self._apply(ev)
                    n += 1
                self.events_upto = ev.id
        self.applied += n
        return n

    def _apply(self, ev: Event) -> None:
        st = self.state
        resolved = resolve_logged(st, ev)
        if resolved is None:
            return
        key, item = resolved
        with st.lock:
            apply_event(st, key, item, ev)
            credit_logged(st, ev, key, item)

    def mark_own(self, ev: Event) -> None:
        """This worker logged ``ev`` and applies it itself: skip it when catching up."""
        if ev.id is not None and ev.id > self.events_upto:
            self._own.add(ev.id)

    def shared_credit(self, credit: Credit, key: Any, item_id: Any) -> Credit:
        """The credit of an event across workers (see the module doc): a list this worker served
        is committed to the log first; a ``request_id`` it does not know is looked up there."""
        store = self.state.store
        if credit.scaled is not None:
            store.flush()  # the list before the event that names it: other workers credit it too
            return credit
        if credit.request_id is None:
            return credit
        imp = store.get_impression(credit.request_id)
        if imp is None or imp.user_id != key:
            return credit
        scaled = logged_score(imp.candidates, imp.candidate_scores, item_id)
        return Credit(credit.request_id, scaled, imp.policy) if scaled is not None else credit

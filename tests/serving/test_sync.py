"""Several workers over one event log (lmrec.serving.sync): what one worker logs, the others serve.

In process: two :class:`ServingState` objects on one SQLite log, as two uvicorn workers hold them.
Then the real thing: ``lmrec serve --workers 2`` with requests spread over both processes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lmrec.serving.state import ServingState
from tests.serving.conftest import API_KEY, AUTH, item_ids
from tests.serving.procs import ServerProcess


def two_workers(serve, artifact: Path, db: Path, **config: Any) -> tuple[Any, Any]:
    """Two in-process states on one log, as two workers of one server hold them."""
    return serve(artifact, db=db, workers=2, **config), serve(artifact, db=db, workers=2, **config)


def history_length(served: Any, user: int) -> int:
    model = served.state.model
    return int(model.history_length(model.user_vocab.get(user)))


def test_feedback_logged_by_one_worker_changes_the_others_next_list(
    serve, ease_artifact: Path, tmp_path: Path
) -> None:
    a, b = two_workers(serve, ease_artifact, tmp_path / "shared.db")
    before = item_ids(b.client.post("/recommend", json={"user_id": 1, "k": 10}))
    top, hidden = before[0], before[1]
    length = history_length(b, 1)
    assert a.client.post("/feedback", json={"user_id": 1, "item_id": top}, headers=AUTH).status_code == 200
    fb = {"user_id": 1, "item_id": hidden, "event": "dislike"}
    assert a.client.post("/feedback", json=fb, headers=AUTH).status_code == 200
    after = item_ids(b.client.post("/recommend", json={"user_id": 1, "k": 10}))
    # the clicked item is now seen, the disliked one hidden, on the worker that did not log them
    assert top not in after and hidden not in after
    assert history_length(b, 1) == length + 1
    assert b.state.follower is not None and b.state.follower.applied == 2
    # the logging worker applied its own events once, not again when it catches up
    assert history_length(a, 1) == length + 1
    assert a.state.follower is not None and a.state.follower.catch_up() == 0
    assert history_length(a, 1) == length + 1


def test_a_one_worker_server_does_not_follow_the_log(serve, ease_artifact: Path, tmp_path: Path) -> None:
    s = serve(ease_artifact, db=tmp_path / "one.db")
    assert s.state.follower is None


def test_an_item_added_on_one_worker_is_served_by_the_other(
    serve, text_artifact: Path, tmp_path: Path
) -> None:
    a, b = two_workers(serve, text_artifact, tmp_path / "items.db")
    new = {"item_id": 990001, "title": "Quokka Odyssey", "text": "marsupial odyssey quokka island"}
    assert a.client.post("/items", json=new, headers=AUTH).status_code == 201
    assert b.client.get("/items/990001/similar").status_code == 200
    r = b.client.post("/recommend", json={"text": "quokka island odyssey", "k": 3})
    assert item_ids(r)[0] == 990001
    assert b.client.post("/items", json=new, headers=AUTH).status_code == 409
    # feedback naming it on the other worker resolves it, and the first worker learns of it
    assert b.client.post("/feedback", json={"user_id": 3, "item_id": 990001}, headers=AUTH).status_code == 200
    r = a.client.post("/recommend", json={"user_id": 3, "k": 50})
    assert 990001 not in item_ids(r)  # seen now, on the worker that did not log the click
    assert len(a.state.features) == len(b.state.features) == a.state.model.n_items


def test_two_workers_adding_one_id_at_once_agree_on_the_first(
    serve, text_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_workers(serve, text_artifact, tmp_path / "race.db")
    first = {"item_id": 990002, "title": "Wombat Almanac", "text": "wombat burrow almanac"}
    second = {"item_id": 990002, "title": "Quokka Odyssey", "text": "marsupial odyssey quokka island"}
    follower = a.state.follower
    assert follower is not None
    n_items = a.state.model.n_items
    caught_up = follower.catch_up_locked

    def b_adds_it_meanwhile() -> int:
        # a has caught up and found no such id; b logs the same id before a gets to the log
        applied = caught_up()
        if a.state.model.n_items == n_items:
            assert b.client.post("/items", json=first, headers=AUTH).status_code == 201
        return applied

    monkeypatch.setattr(follower, "catch_up_locked", b_adds_it_meanwhile)
    assert a.client.post("/items", json=second, headers=AUTH).status_code == 409
    # a never took its own version in: after catching up it serves b's, like a restart would
    assert a.state.model.n_items == n_items
    monkeypatch.undo()
    assert a.client.get("/items/990002/similar").status_code == 200
    i = a.state.model.item_vocab.get(990002)
    assert a.state.model.n_items == n_items + 1
    assert a.state.catalogue.title(i) == b.state.catalogue.title(i) == "Wombat Almanac"
    assert [it.item_id for it in a.state.store.items()] == [990002]


def test_bandit_credit_crosses_workers(serve, ease_artifact: Path, tmp_path: Path) -> None:
    a, b = two_workers(serve, ease_artifact, tmp_path / "bandit.db", epsilon=0.1)
    # a list served by b, answered through a (after b committed its impressions: every 0.2 s)
    shown = b.client.post("/recommend", json={"user_id": 3, "k": 5, "explore": True}).json()
    b.state.store.flush()
    fb = {"user_id": 3, "item_id": shown["items"][1]["item_id"], "request_id": shown["request_id"]}
    assert a.client.post("/feedback", json=fb, headers=AUTH).json()["bandit_updated"]
    # a list served by a and answered through a: a commits the list before the event naming it
    mine = a.client.post("/recommend", json={"user_id": 4, "k": 5, "explore": True}).json()
    fb = {"user_id": 4, "item_id": mine["items"][0]["item_id"], "request_id": mine["request_id"]}
    assert a.client.post("/feedback", json=fb, headers=AUTH).json()["bandit_updated"]
    assert b.client.get("/health").status_code == 200  # catches up
    for name in ("linucb", "thompson"):
        assert a.state.bandits[name].n_updates == b.state.bandits[name].n_updates
    assert a.state.bandits["linucb"].n_updates == 2
    assert np.allclose(a.state.bandits["linucb"].theta, b.state.bandits["linucb"].theta)


def _metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, flags=re.M))


def test_serve_with_two_worker_processes(ease_artifact: Path, tmp_path: Path) -> None:
    """``lmrec serve --workers 2``: both processes answer; whichever takes a request sees every
    acknowledged event; /metrics counts all workers' requests."""
    with ServerProcess(
        ease_artifact,
        tmp_path / "w.db",
        api_key=API_KEY,
        use_cli=True,
        cli_args=["--workers", "2"],
        log_path=tmp_path / "log",
    ) as srv:
        workers = subprocess.run(
            ["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(workers) >= 2, workers  # uvicorn's worker processes (and its resource tracker)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            top = item_ids(c.post("/recommend", json={"user_id": 1, "k": 10}))[:5]
        for item in top:  # one connection a request: the kernel spreads them over the workers
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                assert (
                    c.post("/feedback", json={"user_id": 1, "item_id": item}, headers=AUTH).status_code == 200
                )
        for _ in range(12):
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                assert not set(top) & set(item_ids(c.post("/recommend", json={"user_id": 1, "k": 10})))
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            text = c.get("/metrics").text
        assert _metric(text, "lmrec_feedback_events_total") == 5
        assert _metric(text, "lmrec_recommendations_total") == 13


def test_a_worker_starting_while_another_writes_misses_nothing(
    serve, text_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker still loading (its index build takes minutes at 1M items) while another one takes
    an item and a click on it: the click must not be read before the item is."""
    db = tmp_path / "race.db"
    a = serve(text_artifact, db=db, workers=2)
    length = history_length(a, 3)
    new = {"item_id": 990001, "title": "Quokka Odyssey", "text": "marsupial odyssey quokka island"}
    build = ServingState._build_vectors

    def build_while_the_other_writes(self: ServingState) -> None:
        assert a.client.post("/items", json=new, headers=AUTH).status_code == 201
        fb = {"user_id": 3, "item_id": 990001}
        assert a.client.post("/feedback", json=fb, headers=AUTH).status_code == 200
        build(self)

    monkeypatch.setattr(ServingState, "_build_vectors", build_while_the_other_writes)
    b = serve(text_artifact, db=db, workers=2)
    monkeypatch.undo()
    assert b.client.get("/items/990001/similar").status_code == 200
    assert history_length(b, 3) == history_length(a, 3) == length + 1

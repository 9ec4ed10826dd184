"""The server as a real uvicorn process on 127.0.0.1: basic traffic, and the kill -9 crash test."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import API_KEY, AUTH
from tests.serving.procs import ServerProcess


def test_cli_serve_process_answers_on_loopback(ease_artifact: Path, tmp_path: Path) -> None:
    with (
        ServerProcess(
            ease_artifact, tmp_path / "e.db", api_key=API_KEY, use_cli=True, log_path=tmp_path / "log"
        ) as srv,
        httpx.Client(base_url=srv.url, timeout=10) as c,
    ):
        assert c.get("/health").json()["model"] == "ease"
        r = c.post("/recommend", json={"user_id": 1, "k": 5})
        assert r.status_code == 200 and len(r.json()["items"]) == 5
        assert c.post("/feedback", json={"user_id": 1, "item_id": 2}).status_code == 401
        assert c.post("/feedback", json={"user_id": 1, "item_id": 2}, headers=AUTH).status_code == 200
        assert c.get("/docs").status_code == 200  # OpenAPI docs page
        assert "lmrec_feedback_events_total" in c.get("/metrics").text


def test_kill_9_during_a_feedback_burst_loses_no_acknowledged_event(
    ease_artifact: Path, tmp_path: Path
) -> None:
    db = tmp_path / "events.db"
    data_items = [1, 2, 3, 6, 10, 32, 47, 50, 110, 150, 260, 296, 318, 356, 480, 527, 589, 593, 1196, 2571]
    acked: list[tuple[int, int, int]] = []  # (user, item, event id)
    lock = threading.Lock()
    stop = threading.Event()
    srv = ServerProcess(ease_artifact, db, api_key=API_KEY, log_path=tmp_path / "server1.log")
    srv.wait_ready()

    def burst(worker: int) -> None:
        user = 900_000 + worker  # new users: their whole history comes from this burst
        with httpx.Client(base_url=srv.url, timeout=5, headers=AUTH) as c:
            for item in data_items:
                if stop.is_set():
                    return
                try:
                    r = c.post("/feedback", json={"user_id": user, "item_id": item, "event": "click"})
                except httpx.HTTPError:
                    return  # the server died mid-request: not acknowledged
                if r.status_code == 200:
                    with lock:
                        acked.append((user, item, r.json()["id"]))

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.005)
    srv.kill()  # SIGKILL while the other workers still have requests in flight
    stop.set()
    for t in threads:
        t.join(timeout=10)
    srv.stop()
    assert len(acked) >= 40, "the burst did not get going"
    assert len(acked) < 6 * len(data_items), "the kill came after the burst ended; nothing was in flight"

    # 1) every acknowledged event is in the log, exactly as sent
    conn = sqlite3.connect(db)
    rows = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, user_id, item_id FROM events")}
    conn.close()
    for user, item, ev_id in acked:
        assert rows.get(ev_id) == (str(user), str(item)), (user, item, ev_id)
    print(f"crash test: {len(acked)} events acknowledged before SIGKILL, {len(rows)} in the log after it")

    # 2) after a restart every acknowledged event is back in the user's state: the item counts as seen
    with (
        ServerProcess(ease_artifact, db, api_key=API_KEY, log_path=tmp_path / "server2.log") as srv2,
        httpx.Client(base_url=srv2.url, timeout=10) as c,
    ):
        assert c.get("/health").json()["events_replayed"] == len(rows)
        users = sorted({u for u, _, _ in acked})
        for user in users:
            assert c.post("/recommend", json={"user_id": user, "k": 5}).status_code == 200  # known again
        for user, item, _ in acked:
            r = c.post("/recommend", json={"user_id": user, "k": 5, "filters": {"item_ids": [item]}})
            assert r.status_code == 200 and r.json()["items"] == [], (user, item)
        # control: an item the user never touched does come back through the same filter
        fed = {(u, i) for u, i, _ in acked}
        user = users[0]
        fresh = next(i for i in (7, 11, 25, 34, 39) if (user, i) not in fed)
        r = c.post("/recommend", json={"user_id": user, "k": 5, "filters": {"item_ids": [fresh]}})
        assert [it["item_id"] for it in r.json()["items"]] == [fresh]


@pytest.mark.parametrize("n", [3])
def test_restart_keeps_added_users_in_process(serve, ease_artifact: Path, tmp_path: Path, n: int) -> None:
    """The in-process equivalent: close the state, reopen on the same log, same answers."""
    db = tmp_path / "same.db"
    s = serve(ease_artifact, db=db)
    for item in (1, 260, 1196)[:n]:
        s.client.post("/feedback", json={"user_id": 123456, "item_id": item}, headers=AUTH)
    first = s.client.post("/recommend", json={"user_id": 123456, "k": 10}).json()["items"]
    s.close()
    s2 = serve(ease_artifact, db=db)
    again = s2.client.post("/recommend", json={"user_id": 123456, "k": 10}).json()["items"]
    assert [i["item_id"] for i in again] == [i["item_id"] for i in first]
    assert s2.state.events_replayed == n

"""``lmrec retrain``: logged events folded into a refit model, with a checkpoint against double counting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from lmrec.models.base import Recommender
from lmrec.serving.state import CHECKPOINT_FILE, default_db_path
from tests.serving.conftest import AUTH


def _history(model: Recommender, user: int) -> list[int]:
    u = model.user_vocab.index(user)
    lo, hi = model._hist_offsets[u], model._hist_offsets[u + 1]
    return model.item_vocab.external(model._hist_items[lo:hi])


def test_retrain_folds_logged_events_once(serve, ease_artifact: Path, tmp_path: Path) -> None:
    artifact = tmp_path / "served"
    shutil.copytree(ease_artifact, artifact)
    db = default_db_path(artifact)
    s = serve(artifact, db=db)
    for item in (1, 260, 1196):
        assert (
            s.client.post("/feedback", json={"user_id": 555555, "item_id": item}, headers=AUTH).status_code
            == 200
        )
    s.client.post(
        "/feedback", json={"user_id": 1, "item_id": 2, "event": "rating", "weight": 4.0}, headers=AUTH
    )
    s.client.post("/feedback", json={"user_id": 1, "item_id": 3, "event": "dislike"}, headers=AUTH)
    before_n_items = s.state.n_items
    old_hist_1 = len(_history(Recommender.load(artifact), 1))
    s.close()

    from lmrec.cli import app

    result = CliRunner().invoke(app, ["retrain", str(artifact)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (
        summary["events_folded"] == 4 and summary["events_upto"] == 5
    )  # the dislike is not a training event

    fresh = Recommender.load(artifact)
    assert type(fresh).__name__ == "EASE" and fresh.n_items == before_n_items
    assert _history(fresh, 555555) == [1, 260, 1196]
    assert len(_history(fresh, 1)) == old_hist_1 + 1
    assert json.loads((artifact / CHECKPOINT_FILE).read_text())["events_upto"] == 5
    assert (artifact / "catalog.parquet").exists()

    # a server on the new artifact replays the log but does not add events the model already has
    s2 = serve(artifact, db=db)
    assert _history(s2.state.model, 555555) == [1, 260, 1196]
    assert len(_history(s2.state.model, 1)) == old_hist_1 + 1
    assert s2.state.item_index(3) in s2.state.blocked[1]  # negatives still hide their items
    r = s2.client.post("/recommend", json={"user_id": 1, "k": 20, "filters": {"item_ids": [2, 3, 4]}})
    assert not {2, 3} & {it["item_id"] for it in r.json()["items"]}
    # the refit model knows the new user without any online state
    assert not {1, 260, 1196} & set(fresh.recommend(555555, k=10)["item_id"].to_list())
    s2.client.post("/feedback", json={"user_id": 555555, "item_id": 318}, headers=AUTH)
    s2.close()

    # a second retrain folds only the newer event
    out = tmp_path / "second"
    result = CliRunner().invoke(app, ["retrain", str(artifact), "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["events_folded"] == 1
    assert _history(Recommender.load(out), 555555) == [1, 260, 1196, 318]


def test_retrain_without_a_log_is_a_clear_error(ease_artifact: Path, tmp_path: Path) -> None:
    from lmrec.cli import app

    result = CliRunner().invoke(app, ["retrain", str(ease_artifact), "--db", str(tmp_path / "none.db")])
    assert result.exit_code != 0
    assert "no event log" in str(result.exception)


def test_retrain_orders_events_by_their_logged_time(serve, ease_artifact: Path, tmp_path: Path) -> None:
    """Logged timestamps, not log order, order the refit history; the stored history comes first."""
    artifact = tmp_path / "timed"
    shutil.copytree(ease_artifact, artifact)
    db = default_db_path(artifact)
    s = serve(artifact, db=db)
    for item, ts in ((1, 1_700_000_300.0), (260, 1_700_000_100.0), (1196, 1_700_000_200.0)):
        body = {"user_id": 444444, "item_id": item, "timestamp": ts}
        assert s.client.post("/feedback", json=body, headers=AUTH).status_code == 200
    body = {"user_id": 1, "item_id": 2, "timestamp": 5.0}  # claims to predate user 1's training history
    assert s.client.post("/feedback", json=body, headers=AUTH).status_code == 200
    old_hist_1 = _history(Recommender.load(artifact), 1)
    s.close()

    from lmrec.cli import app

    result = CliRunner().invoke(app, ["retrain", str(artifact)])
    assert result.exit_code == 0, result.output
    fresh = Recommender.load(artifact)
    assert _history(fresh, 444444) == [260, 1196, 1]
    # stand-in times of the stored history are squeezed below the earliest logged event
    assert _history(fresh, 1) == [*old_hist_1, 2]

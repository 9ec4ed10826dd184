"""End-to-end evaluation protocol on real data and known-answer fixtures."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.split import cold_item, cold_user, leave_last_out
from lmrec.errors import LmrecError
from lmrec.evaluation import evaluate
from lmrec.evaluation.report import write_report
from lmrec.models import Popularity, RandomModel
from lmrec.models.base import Recommender
from lmrec.models.query import QueryBatch


def test_popularity_reproduces_peer_numbers_on_ml100k(ml100k):
    """Correct-count popularity on leave-last-out: Recall@10 .0859 / NDCG@10 .0450 (±.002).

    Tie rule: equal counts are ordered by ascending item id (our shared top-k tie-break).
    """
    split = leave_last_out(ml100k)
    res = evaluate(Popularity().fit(split.train), split, ks=(10,))
    assert res["recall@10"] == pytest.approx(0.0859, abs=0.002)
    assert res["ndcg@10"] == pytest.approx(0.0450, abs=0.002)
    assert res.metrics["n_users"] == 943
    assert res.info["history_at_query_time"].startswith("train + valid")


def test_pessimistic_tie_rule_is_lower(ml100k):
    """Ranking a target behind every item with the same count gives the lower published .0838."""
    split = leave_last_out(ml100k)
    model = Popularity().fit(split.train)
    pop = model.popularity_
    full = split.full
    seen = full.csr("binary")
    hits = []
    for row in split.test.iter_rows(named=True):
        u, t = row["user_idx"], row["item_idx"]
        mask = np.ones(len(pop), bool)
        mask[seen[u].indices] = False
        mask[t] = False
        rank = 1 + int(((pop > pop[t]) & mask).sum()) + int(((pop == pop[t]) & mask).sum())
        hits.append(rank <= 10)
    assert np.mean(hits) == pytest.approx(0.0838, abs=0.002)


def test_valid_phase_uses_train_history_only(ml100k):
    split = leave_last_out(ml100k)
    res = evaluate(Popularity().fit(split.train), split, ks=(10,), phase="valid")
    assert res.info["history_at_query_time"] == "train"
    assert 0.05 < res["recall@10"] < 0.12


def test_random_is_a_floor_and_popularity_cannot_rank_cold_items(ml100k):
    split = cold_item(ml100k, item_fraction=0.1, seed=3)
    pop = evaluate(Popularity().fit(split.train), split, ks=(10,))
    rnd = evaluate(RandomModel(seed=0).fit(split.train), split, ks=(10,))
    assert pop.segments["cold_items"]["ndcg@10"] == 0.0  # every cold item has count 0 and ranks last
    assert rnd.metrics["coverage@10"] > pop.metrics["coverage@10"]
    assert split.cold_items().size == split.protocol["n_cold_items"]


def test_cold_user_protocol_serves_from_revealed_history(ml100k):
    split = cold_user(ml100k, user_fraction=0.1, seed=1)
    res = evaluate(Popularity().fit(split.train), split, ks=(10,))
    assert res.metrics["n_users"] == split.protocol["n_cold_users"]
    assert "revealed" in res.info["history_at_query_time"]


class HistoryFirst(Recommender):
    """Scores every item in the query's history highest, then the held-out targets, then the rest.

    Only evaluate's own masking of the query history (train + valid) puts the targets first: without
    it, every list would be the user's seen items and every metric 0.
    """

    name = "history_first_test"

    def __init__(self, targets: dict[int, set[int]]) -> None:
        super().__init__()
        self.targets = targets

    def _fit(self, data: Dataset) -> None:
        return None

    def _score(self, batch: QueryBatch) -> np.ndarray:
        scores = np.zeros((len(batch.user_idx), self.n_items), np.float32)
        scores += np.arange(self.n_items, dtype=np.float32)[::-1] * 1e-3  # a strict order
        for q, u in enumerate(batch.user_idx):
            scores[q, list(self.targets.get(int(u), ()))] = 5.0
        scores[batch.history.nonzero()] = 10.0
        return scores


def test_seen_items_never_recommended_and_segments(checkerboard):
    split = leave_last_out(checkerboard, n_valid=1)
    targets = {u: {i} for u, i in zip(split.test["user_idx"], split.test["item_idx"], strict=True)}
    model = HistoryFirst(targets).fit(split.train)
    res = evaluate(model, split, ks=(1, 5))
    # the seen items (train + the validation item) outscore the target; masked, the
    # target is first for every user
    assert res["recall@1"] == res["ndcg@5"] == res["mrr@5"] == res["auc"] == 1.0
    assert res.info["targets_in_history"] == {"left_out": 0, "users_without_targets": 0}
    # the same lists unmasked put seen items first: what the check above guards against
    raw = model.score(list(range(checkerboard.n_users)))
    assert all(
        int(np.argmax(raw[u])) in set(model.train_history[u].indices) for u in range(checkerboard.n_users)
    )
    assert set(res.segments) >= {"warm_users"}
    assert res.per_user is not None and res.per_user.height == res.metrics["n_users"]


def test_targets_already_in_the_history_are_left_out_not_scored_zero(caplog):
    # user 1 repeats item 10 as their last event (the test target is in their training history);
    # user 2 does not repeat anything
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 2, 2],
            "item_id": [10, 11, 12, 10, 20, 21, 22, 23],
            "timestamp": [1, 2, 3, 4, 1, 2, 3, 4],
        }
    )
    data = Dataset.from_frames(df)
    split = leave_last_out(data, n_valid=0)
    assert split.protocol["targets_in_history"] == {"test": 1}
    with caplog.at_level("WARNING", logger="lmrec.evaluation"):
        res = evaluate(Popularity().fit(split.train), split, ks=(2,))
    assert res.metrics["n_users"] == 1 and res.per_user is not None
    assert res.per_user["user_id"].to_list() == [2]
    assert res.info["targets_in_history"] == {"left_out": 1, "users_without_targets": 1}
    assert all(np.isfinite(v) for k, v in res.metrics.items() if not k.startswith("ild"))
    assert "already in their user's history left out" in caplog.text
    # every target already seen: an error saying so, not zeros and NaN
    only = leave_last_out(Dataset.from_frames(df.filter(pl.col("user_id") == 1)), n_valid=0)
    with pytest.raises(LmrecError, match=r"every test target .* already in its user's history"):
        evaluate(Popularity().fit(only.train), only, ks=(2,))


def test_bad_arguments(checkerboard):
    split = leave_last_out(checkerboard, n_valid=0)
    model = Popularity().fit(split.train)
    with pytest.raises(ValueError, match="phase"):
        evaluate(model, split, phase="train")
    with pytest.raises(ValueError, match="no valid"):
        evaluate(model, split, phase="valid")
    with pytest.raises(ValueError, match="ks"):
        evaluate(model, split, ks=(0,))


def test_report_files(tmp_path, ml100k):
    split = leave_last_out(ml100k)
    results = [evaluate(m.fit(split.train), split, ks=(5, 10)) for m in (Popularity(), RandomModel())]
    paths = write_report(results, tmp_path / "rep")
    payload = json.loads(paths["json"].read_text())
    info = payload["results"][0]["info"]
    assert info["dataset_checksum"] == ml100k.checksum()
    assert info["split"]["name"] == "leave_last_out" and "versions" in info and "config" in info
    md = paths["markdown"].read_text()
    assert "| popularity |" in md and "ndcg@10" in md
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.startswith(".")]


def test_external_string_ids_round_trip():
    df = pl.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b", "b"],
            "item_id": ["x", "y", "z", "y", "z", "w"],
            "timestamp": [1, 2, 3, 1, 2, 3],
        }
    )
    data = Dataset.from_frames(df)
    split = leave_last_out(data, n_valid=0)
    res = evaluate(Popularity().fit(split.train), split, ks=(2,))
    assert res.per_user is not None and set(res.per_user["user_id"].to_list()) == {"a", "b"}

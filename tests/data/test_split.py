"""Splits: deterministic, leak-free, protocol recorded."""

from __future__ import annotations

import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.split import (
    ValidationData,
    cold_item,
    cold_user,
    holdout_last,
    leave_last_out,
    random_split,
    split,
    split_validation,
    temporal,
)
from lmrec.errors import DataError


def test_leave_last_out_takes_last_by_time_ties_by_file_order():
    df = pl.DataFrame({"user_id": [1, 1, 1, 1], "item_id": [1, 2, 3, 4], "timestamp": [1, 5, 5, 2]})
    s = leave_last_out(Dataset.from_frames(df))
    # by time: 1(t1), 4(t2), 2(t5), 3(t5, later in file) -> test 3, valid 2
    assert s.test["item_id"].to_list() == [3]
    assert s.valid is not None and s.valid["item_id"].to_list() == [2]
    assert sorted(s.train.interactions["item_id"].to_list()) == [1, 4]
    assert s.protocol["name"] == "leave_last_out"


def test_leave_last_out_on_ml100k(ml100k):
    s = leave_last_out(ml100k)
    assert s.test.height == 943 and s.valid is not None and s.valid.height == 943
    assert s.train.n_interactions == 100_000 - 2 * 943
    # no leakage: every test event is at or after all of that user's training events
    last_train = s.train.interactions.group_by("user_idx").agg(pl.col("timestamp").max().alias("t"))
    joined = s.test.join(last_train, on="user_idx")
    assert (joined["timestamp"] >= joined["t"]).all()
    assert s.full.n_interactions == 100_000 - 943


def test_short_users_stay_in_training():
    df = pl.DataFrame({"user_id": [1, 1, 2, 2, 2], "item_id": [1, 2, 1, 2, 3], "timestamp": [1, 2, 1, 2, 3]})
    s = leave_last_out(Dataset.from_frames(df))
    assert s.test["user_id"].to_list() == [2]
    assert s.train.interactions.filter(pl.col("user_id") == 1).height == 2


def test_random_split_is_seeded(ml100k):
    a = random_split(ml100k, test_fraction=0.2, seed=7)
    b = random_split(ml100k, test_fraction=0.2, seed=7)
    c = random_split(ml100k, test_fraction=0.2, seed=8)
    assert a.test.equals(b.test) and not a.test.equals(c.test)
    assert abs(a.test.height / 100_000 - 0.2) < 0.02


def test_temporal_cut(ml100k):
    s = temporal(ml100k, test_fraction=0.1, valid_fraction=0.1)
    assert s.train.interactions["timestamp"].max() <= s.valid["timestamp"].min()
    assert s.valid["timestamp"].max() <= s.test["timestamp"].min()


def test_cold_item_items_absent_from_training(ml100k):
    s = cold_item(ml100k, item_fraction=0.1, seed=0)
    test_items = set(s.test["item_idx"].to_list())
    assert not test_items & set(s.train.interactions["item_idx"].to_list())
    assert test_items <= set(s.cold_items().tolist())
    assert s.protocol["seed"] == 0


def test_cold_user_reveals_history_prefix(ml100k):
    s = cold_user(ml100k, user_fraction=0.05, history_fraction=0.5, seed=0)
    cold = set(s.test["user_idx"].to_list())
    assert not cold & set(s.train.interactions["user_idx"].to_list())
    assert s.test_history is not None and set(s.test_history["user_idx"].to_list()) == cold
    h = s.test_history.group_by("user_idx").agg(pl.col("timestamp").max().alias("h"))
    t = s.test.group_by("user_idx").agg(pl.col("timestamp").min().alias("t"))
    j = h.join(t, on="user_idx")
    assert (j["h"] <= j["t"]).all()


def test_dispatch_and_unknown_protocol(ml100k):
    assert split(ml100k, "leave_last_out").protocol["name"] == "leave_last_out"
    with pytest.raises(DataError, match="unknown split protocol 'nope'"):
        split(ml100k, "nope")


# ---------------------------------------------------------------------------- validation for early stopping
def _toy() -> Dataset:
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2, 2, 3, 3],
            "item_id": [10, 11, 12, 10, 13, 11, 12, 12, 13],
            "timestamp": [1, 2, 3, 5, 1, 2, 9, 1, 2],
        }
    )
    return Dataset.from_frames(df)


def test_holdout_last_and_split_validation() -> None:
    data = _toy()
    train, held = holdout_last(data, 1.0, seed=0)
    # users 1 and 2 have >= 3 events: their latest (12 at t=3; 12 at t=9) is held out; user 3 is not eligible
    assert sorted(zip(held["user_id"].to_list(), held["item_id"].to_list(), strict=True)) == [
        (1, 12),
        (2, 12),
    ]
    assert train.n_interactions == data.n_interactions - 2
    same, vd = split_validation(data, held, 0.5)
    assert same is data and vd is not None and list(vd.users) == [0, 1]
    _, none = split_validation(data, None, 0.0)
    assert none is None
    by_ids = ValidationData.from_frame(held.select("user_id", "item_id"), data)
    assert (by_ids.targets != vd.targets).nnz == 0


# ---------------------------------------------------------------------------- targets already in the history
_PROTOCOLS = {
    "leave_last_out": {},
    "temporal": {"test_fraction": 0.2, "valid_fraction": 0.1},
    "random": {"test_fraction": 0.2, "valid_fraction": 0.1, "seed": 3},
    "cold_item": {"item_fraction": 0.1, "valid_fraction": 0.1, "seed": 3},
    "cold_user": {"user_fraction": 0.1, "seed": 3},
}


def _pairs(frame: pl.DataFrame | None) -> set[tuple[int, int]]:
    if frame is None:
        return set()
    return set(zip(frame["user_idx"].to_list(), frame["item_idx"].to_list(), strict=True))


@pytest.mark.parametrize("protocol", list(_PROTOCOLS))
def test_splits_keep_user_item_pairs_disjoint(ml100k, protocol, caplog):
    """ml-100k has no repeated (user, item) pair, so no split may put one pair on two sides."""
    assert ml100k.repeated_pairs() == 0
    s = split(ml100k, protocol, **_PROTOCOLS[protocol])
    sides = {
        "train": _pairs(s.train.interactions),
        "valid": _pairs(s.valid),
        "test": _pairs(s.test),
        "revealed": _pairs(s.test_history),
    }
    names = list(sides)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not sides[a] & sides[b], f"{protocol}: {a} and {b} share pairs"
    total = sum(len(v) for v in sides.values())
    assert total == ml100k.n_interactions  # nothing lost, nothing doubled
    assert "targets_in_history" not in s.protocol and "already in" not in caplog.text


def _repeats() -> Dataset:
    # user 1 plays item 10 first and last: leave-last-out's test target is in the training history;
    # user 2 has no repeat
    df = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 2],
            "item_id": [10, 11, 12, 10, 20, 21, 22],
            "timestamp": [1, 2, 3, 4, 1, 2, 3],
        }
    )
    return Dataset.from_frames(df)


def test_split_warns_or_refuses_when_a_target_is_in_the_history(caplog):
    data = _repeats()
    with caplog.at_level("WARNING", logger="lmrec.data"):
        s = leave_last_out(data)
    assert s.protocol["targets_in_history"] == {"test": 1}
    assert "1 test target(s) are already in their user's history" in caplog.text
    with pytest.raises(DataError, match=r"1 test target\(s\) are already in.*duplicates='last'"):
        leave_last_out(data, seen_targets="error")
    with pytest.raises(DataError, match="seen_targets='maybe'"):
        leave_last_out(data, seen_targets="maybe")
    # one row per pair: nothing to warn about
    clean = Dataset.from_frames(
        data.interactions.select("user_id", "item_id", "timestamp"), duplicates="last"
    )
    assert "targets_in_history" not in leave_last_out(clean).protocol
    # the validation phase is checked against training, the test phase against train + valid
    df = pl.DataFrame({"user_id": [1] * 4, "item_id": [10, 11, 10, 12], "timestamp": [1, 2, 3, 4]})
    s = leave_last_out(Dataset.from_frames(df))
    assert s.protocol["targets_in_history"] == {"valid": 1}


def test_split_parameters_are_checked_by_name(ml100k):
    with pytest.raises(DataError, match="unexpected keyword argument 'n_tset'"):
        split(ml100k, "leave_last_out", n_tset=2)

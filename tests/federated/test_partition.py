"""Partitions of users over clients (no Flower needed)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError
from lmrec.federated.partition import partition_users


def _data() -> Dataset:
    users = list(range(1, 31))
    jobs = ["nurse", "clerk", "artist", "clerk", "nurse", "coder"] * 5
    zips = [f"{u % 4}{u:04d}" for u in users]
    inter = pl.DataFrame({"user_id": users, "item_id": [u % 7 for u in users], "timestamp": users})
    table = pl.DataFrame({"user_id": users, "occupation": jobs, "zip_code": zips})
    return Dataset.from_frames(inter, users=table, name="people")


def _attribute(data: Dataset, column: str) -> np.ndarray:
    assert data.users is not None
    idx = data.user_vocab.indices(data.users["user_id"].to_list())
    out = np.empty(data.n_users, dtype=object)
    out[idx] = data.users[column].to_list()
    return out


def test_hash_is_seeded_and_covers_the_clients() -> None:
    data = _data()
    a = partition_users(data, "hash", 3, seed=1)
    assert a.shape == (30,) and set(a) == {0, 1, 2}
    np.testing.assert_array_equal(a, partition_users(data, "hash", 3, seed=1))
    assert not np.array_equal(a, partition_users(data, "hash", 3, seed=2))


def test_user_is_one_client_per_user() -> None:
    np.testing.assert_array_equal(partition_users(_data(), "user"), np.arange(30))


@pytest.mark.parametrize("by", ["occupation", "zip"])
def test_attribute_groups_stay_whole_and_silos_are_balanced(by: str) -> None:
    data = _data()
    owner = partition_users(data, by, 2)
    values = _attribute(data, "occupation" if by == "occupation" else "zip_code")
    if by == "zip":
        values = np.array([v[0] for v in values], dtype=object)
    for v in set(values):
        assert len(set(owner[values == v])) == 1, f"group {v} split over silos"
    counts = np.bincount(owner)
    assert len(counts) == 2 and abs(counts[0] - counts[1]) <= 10


def test_a_named_column_and_the_errors() -> None:
    data = _data()
    assert set(partition_users(data, "zip_code", 3)) == {0, 1, 2}
    with pytest.raises(DataError, match="no column 'shoe_size'"):
        partition_users(data, "shoe_size", 2)
    with pytest.raises(DataError, match="4 distinct values, fewer than the 5 clients"):
        partition_users(data, "occupation", 5)
    no_users = Dataset.from_frames(pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [0]}))
    with pytest.raises(DataError, match="has no user table"):
        partition_users(no_users, "occupation", 2)

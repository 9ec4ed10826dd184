"""Dataset construction, validation errors and derived views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.errors import DataError


def frame(**cols):
    base = {"user_id": [1, 1, 2, 3], "item_id": [10, 20, 10, 30], "timestamp": [5, 6, 7, 8]}
    base.update(cols)
    return pl.DataFrame(base)


def test_from_frames_builds_sorted_vocabularies_and_indices():
    items = pl.DataFrame({"item_id": [40, 10, 20, 30], "title": ["cold", "a", "b", "c"]})
    ds = Dataset.from_frames(frame(), items=items, name="t")
    assert ds.n_users == 3 and ds.n_items == 4  # item 40 only in the catalogue: a cold item
    assert ds.item_vocab.ids == [10, 20, 30, 40]
    assert ds.interactions["item_idx"].to_list() == [0, 1, 0, 2]
    m = ds.csr()
    assert m.shape == (3, 4) and m.sum() == 4
    assert ds.item_titles() == ["a", "b", "c", "cold"]
    assert "source_checksum" in ds.meta


def test_pandas_input_and_column_mapping():
    pdf = pd.DataFrame({"u": ["x", "y"], "i": ["p", "q"], "ts": [1.5, 2.5], "stars": [4, 5]})
    ds = Dataset.from_frames(
        pdf, columns={"user_id": "u", "item_id": "i", "timestamp": "ts", "rating": "stars"}
    )
    assert ds.user_vocab.kind == "str" and ds.interactions["rating"].dtype == pl.Float32


def test_duplicates_summed_in_matrix_and_sequences_time_ordered():
    df = pl.DataFrame({"user_id": [1, 1, 1], "item_id": [3, 2, 3], "timestamp": [9, 1, 5]})
    ds = Dataset.from_frames(df)
    assert ds.csr()[0, ds.item_vocab.index(3)] == 2.0
    assert ds.csr("binary")[0, ds.item_vocab.index(3)] == 1.0
    assert ds.item_vocab.external(ds.sequences()[0]) == [2, 3, 3]


@pytest.mark.parametrize(
    ("df", "match"),
    [
        (pl.DataFrame({"user_id": [1], "timestamp": [1]}), "no 'item_id' column"),
        (pl.DataFrame({"user_id": [1, None], "item_id": [1, 2]}), "null value"),
        (
            pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": ["yesterday"]}),
            "non-numeric timestamp 'yesterday'",
        ),
        (pl.DataFrame({"user_id": [1.5], "item_id": [1]}), "non-integer"),
        (pl.DataFrame({"user_id": [1], "item_id": [1], "rating": ["five"]}), "non-numeric value 'five'"),
        (
            pl.DataFrame({"user_id": [], "item_id": []}, schema={"user_id": pl.Int64, "item_id": pl.Int64}),
            "empty",
        ),
    ],
)
def test_bad_input_names_the_column(df, match):
    with pytest.raises(DataError, match=match):
        Dataset.from_frames(df, source="ratings.csv")


def test_error_message_names_file_and_column():
    with pytest.raises(DataError) as info:
        Dataset.from_frames(
            pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": ["x"]}), source="u.data"
        )
    assert "u.data" in str(info.value) and "'timestamp'" in str(info.value)


def test_duplicate_item_rows_rejected():
    items = pl.DataFrame({"item_id": [10, 10], "title": ["a", "b"]})
    with pytest.raises(DataError, match="duplicate item_id 10"):
        Dataset.from_frames(frame(), items=items)


def test_item_id_dtype_mismatch_rejected():
    items = pl.DataFrame({"item_id": ["10"], "title": ["a"]})
    with pytest.raises(DataError, match="dtype"):
        Dataset.from_frames(frame(), items=items)


def test_datetime_timestamps_become_epoch_seconds():
    df = pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [pd.Timestamp("2020-01-01")]})
    ds = Dataset.from_frames(df)
    assert ds.interactions["timestamp"][0] == 1577836800


def test_extend_items_keeps_indices():
    ds = Dataset.from_frames(frame())
    ext = ds.extend_items(pl.DataFrame({"item_id": [99, 10], "title": ["new", "old"]}))
    assert ext.item_vocab.index(10) == ds.item_vocab.index(10)
    assert ext.item_vocab.index(99) == ds.n_items


def test_popularity_counts_distinct_users():
    df = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 5, 5], "timestamp": [1, 2, 3]})
    assert Dataset.from_frames(df).item_popularity().tolist() == [2.0]
    assert np.asarray(Dataset.from_frames(df).csr().sum()) == 3

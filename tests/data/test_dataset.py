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


# ------------------------------------------------------------------ validation: issue #12
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("cols", "column", "match"),
    [
        (
            {"rating": [4.0, NAN, 3.0, 5.0]},
            "rating",
            r"NaN or infinite rating.*row 1 \(user_id=1, item_id=20\)",
        ),
        ({"rating": [4.0, 3.0, INF, 5.0]}, "rating", r"NaN or infinite rating.*inf at row 2"),
        ({"rating": [4.0, 3.0, 2.0, -1.0]}, "rating", r"1 negative rating\(s\), e\.g\. -1\.0 at row 3"),
        ({"weight": [1.0, 0.0, 1.0, 2.0]}, "weight", r"zero or negative weight.*> 0.*row 1"),
        ({"weight": [1.0, 1.0, -2.0, 2.0]}, "weight", r"zero or negative weight.*-2\.0 at row 2"),
        ({"weight": [1.0, None, 1.0, 2.0]}, "weight", r"missing weight.*row 1"),
        ({"weight": [1.0, 1.0, NAN, 2.0]}, "weight", r"NaN or infinite weight"),
        ({"user_id": ["a", "NA", "b", "c"]}, "user_id", r"missing-value marker 'NA' used as an id at row 1"),
        ({"item_id": ["x", "y", "null", "z"]}, "item_id", r"missing-value marker 'null'.*row 2"),
        ({"user_id": ["a", "", "b", "c"]}, "user_id", r"empty id at row 1"),
        ({"user_id": ["a", "   ", "b", "c"]}, "user_id", r"empty id at row 1"),
        (
            {"user_id": [" 1 ", "1", "2", "3"]},
            "user_id",
            r"ids ' 1 ' and '1' differ only in surrounding whitespace",
        ),
        (
            {"timestamp": [5, -6, 7, 8]},
            "timestamp",
            r"negative timestamp.*-6 at row 1 \(user_id=1, item_id=20\)",
        ),
        ({"timestamp": [5.0, 6.0, NAN, 8.0]}, "timestamp", r"NaN or infinite timestamp at row 2"),
        ({"user_id": [1.0, NAN, 2.0, 3.0]}, "user_id", r"NaN or infinite id at row 1"),
        ({"user_id": [1.0, 2.0**60, 2.0, 3.0]}, "user_id", r"too large to be exact"),
    ],
)
def test_bad_values_fail_in_one_line_naming_column_and_rows(cols, column, match):
    with pytest.raises(DataError, match=match) as err:
        Dataset.from_frames(frame(**cols), source="events.csv")
    msg = str(err.value)
    assert err.value.column == column and f"'{column}'" in msg and "events.csv" in msg
    assert "\n" not in msg


def test_null_rating_is_allowed_but_null_id_names_the_row():
    ds = Dataset.from_frames(frame(rating=[4.0, None, 3.0, 5.0]))
    assert ds.interactions["rating"].null_count() == 1
    with pytest.raises(DataError, match=r"null value\(s\) in id column, first at row 2 \(user_id=2"):
        Dataset.from_frames(frame(item_id=[10, 20, None, 30]))


def test_whitespace_around_ids_is_stripped_and_numbers_stay_numbers():
    ds = Dataset.from_frames(frame(user_id=[" 1", " 1", "2 ", " 3 "], item_id=["a ", "b", "a ", "c"]))
    assert ds.user_vocab.kind == "int" and ds.user_vocab.ids == [1, 2, 3]
    assert ds.item_vocab.ids == ["a", "b", "c"]
    # zero-padded codes stay text: "007" is not the number 7
    codes = Dataset.from_frames(frame(item_id=[" 007", " 007", "010", "7"]))
    assert codes.item_vocab.ids == ["007", "010", "7"]


def test_ids_beyond_int64_are_kept_exactly_as_text():
    big = 2**64 + 7
    ds = Dataset.from_frames(
        pl.DataFrame({"user_id": [1, 2], "item_id": pl.Series([big, 3], dtype=pl.Int128)})
    )
    assert ds.item_vocab.kind == "str" and ds.item_vocab.ids == ["18446744073709551623", "3"]
    unsigned = pl.Series([2**63, 1], dtype=pl.UInt64)
    assert (
        Dataset.from_frames(pl.DataFrame({"user_id": unsigned, "item_id": [1, 2]})).user_vocab.kind == "str"
    )
    fits = pl.Series([2**63 - 1, 1], dtype=pl.UInt64)
    assert Dataset.from_frames(pl.DataFrame({"user_id": fits, "item_id": [1, 2]})).user_vocab.kind == "int"


def _dups() -> pl.DataFrame:
    # user 1 played item 10 at t=1 and t=3; the row at t=3 is logged twice; user 2 is clean
    return pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2],
            "item_id": [10, 10, 20, 10, 10],
            "timestamp": [3, 1, 2, 3, 4],
            "rating": [5.0, 2.0, 3.0, 5.0, 1.0],
        }
    )


def test_default_drops_exact_repeats_and_keeps_repeat_plays(caplog):
    with caplog.at_level("WARNING", logger="lmrec.data"):
        ds = Dataset.from_frames(_dups(), source="plays.csv")
    assert ds.interactions.select("user_id", "item_id", "timestamp").rows() == [
        (1, 10, 1),
        (1, 20, 2),
        (1, 10, 3),
        (2, 10, 4),
    ]
    assert ds.meta["duplicates"] == {"policy": "auto", "exact_dropped": 1, "repeated_pairs": 1}
    assert ds.repeated_pairs() == 1
    text = caplog.text
    assert "plays.csv" in text and "dropped 1 row(s)" in text and "1 (user_id, item_id) pair(s)" in text
    assert "leave-last-out" in text


def test_without_timestamps_repeats_are_not_mistaken_for_double_logging():
    df = _dups().drop("timestamp")
    ds = Dataset.from_frames(df)
    assert ds.n_interactions == 5 and ds.meta["duplicates"] == {"policy": "auto", "repeated_pairs": 1}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("keep", [(1, 10, 3), (1, 10, 1), (1, 20, 2), (1, 10, 3), (2, 10, 4)]),
        ("first", [(1, 10, 1), (1, 20, 2), (2, 10, 4)]),
        ("last", [(1, 20, 2), (1, 10, 3), (2, 10, 4)]),  # the later of the two t=3 rows
    ],
)
def test_duplicate_policies(policy, expected):
    ds = Dataset.from_frames(_dups(), duplicates=policy)
    assert ds.interactions.select("user_id", "item_id", "timestamp").rows() == expected
    if policy != "keep":
        assert ds.repeated_pairs() == 0 and ds.csr()[0, ds.item_vocab.index(10)] == 1.0


def test_duplicates_error_names_the_pair_and_rows():
    with pytest.raises(
        DataError, match=r"plays\.csv.*1 \(user_id, item_id\) pair\(s\) occur more than once.*row 0"
    ):
        Dataset.from_frames(_dups(), duplicates="error", source="plays.csv")
    with pytest.raises(DataError, match="duplicates='sometimes'"):
        Dataset.from_frames(_dups(), duplicates="sometimes")  # type: ignore[arg-type]


def test_dedupe_is_the_older_name_for_first_and_last():
    ds = Dataset.from_frames(_dups(), dedupe="first")
    assert ds.interactions["timestamp"].to_list() == [1, 2, 4]


def test_negative_tag_dates_do_not_stop_a_dataset_from_loading():
    tags = pl.DataFrame({"user_id": [1], "item_id": [10], "tag": ["x"], "timestamp": [-428716800]})
    assert Dataset.from_frames(frame(), tags=tags).tags is not None

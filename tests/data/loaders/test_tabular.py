"""``load_table``: every format, the column mapping, timestamps and the errors that name file + column."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from lmrec.data.loaders import load_table, read_table
from lmrec.errors import DataError

EVENTS = pl.DataFrame(
    {
        "customer": ["a", "a", "b", "c"],
        "sku": [10, 11, 10, 12],
        "ts": [100, 200, 150, 300],
        "qty": [1.0, 2.0, 1.0, 5.0],
    }
)
MAPPING = {"user_id": "customer", "item_id": "sku", "timestamp": "ts", "weight": "qty"}


def _check(ds) -> None:
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (4, 3, 3)
    assert ds.interactions["weight"].to_list() == [1.0, 2.0, 1.0, 5.0]
    assert ds.interactions["timestamp"].to_list() == [100, 200, 150, 300]
    assert ds.user_vocab.kind == "str" and ds.item_vocab.kind == "int"


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl", "json-array", "csv.gz"])
def test_formats_with_mapping(tmp_path: Path, fmt: str) -> None:
    if fmt == "csv":
        path = tmp_path / "events.csv"
        EVENTS.write_csv(path)
    elif fmt == "tsv":
        path = tmp_path / "events.tsv"
        EVENTS.write_csv(path, separator="\t")
    elif fmt == "parquet":
        path = tmp_path / "events.parquet"
        EVENTS.write_parquet(path)
    elif fmt == "jsonl":
        path = tmp_path / "events.jsonl"
        EVENTS.write_ndjson(path)
    elif fmt == "json-array":
        path = tmp_path / "events.json"
        path.write_text(json.dumps(EVENTS.to_dicts()))
    else:
        path = tmp_path / "events.csv.gz"
        path.write_bytes(gzip.compress(EVENTS.write_csv().encode()))
    ds = load_table(path, MAPPING)
    _check(ds)
    assert ds.name == "events"
    assert ds.meta["source"] == str(path)
    assert list(ds.meta["checksums"]) == [path.name]


def test_items_table_with_its_own_mapping(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    EVENTS.write_csv(path)
    items = tmp_path / "catalogue.parquet"
    pl.DataFrame({"product": [10, 11, 12, 13], "name": ["x", "y", "z", "new"]}).write_parquet(items)
    ds = load_table(path, MAPPING, items=items, item_columns={"item_id": "product", "title": "name"})
    assert ds.n_items == 4  # catalogue-only item 13 is a cold item
    assert ds.item_titles() == ["x", "y", "z", "new"]
    assert set(ds.meta["checksums"]) == {"events.csv", "catalogue.parquet"}


def test_iso_dates_become_epoch_seconds(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,2020-01-01T00:00:00\n1,3,2020-01-02 12:00:00\n")
    ds = load_table(path)
    assert ds.interactions["timestamp"].to_list() == [1577836800, 1577966400]
    custom = tmp_path / "f.csv"
    custom.write_text("user_id,item_id,timestamp\n1,2,01/02/2020\n")
    assert load_table(custom, timestamp_format="%d/%m/%Y").interactions["timestamp"].to_list() == [1580515200]


def test_errors_name_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    EVENTS.write_csv(path)
    with pytest.raises(DataError, match=r"events\.csv.*'client'.*\(mapped to 'user_id'\) not found") as err:
        load_table(path, {**MAPPING, "user_id": "client"})
    assert err.value.column == "client"
    with pytest.raises(DataError, match=r"events\.csv.*no 'user_id' column; map it"):
        load_table(path)

    bad = tmp_path / "bad.csv"
    bad.write_text("u,i,t\n1,2,100\n3,4,not-a-time\n")
    with pytest.raises(DataError) as err:
        load_table(bad, {"user_id": "u", "item_id": "i", "timestamp": "t"})
    msg = str(err.value)
    assert (
        "bad.csv" in msg
        and "'timestamp'" in msg
        and "'not-a-time'" in msg
        and "user_id=3" in msg
        and "item_id=4" in msg
    )

    mixed = tmp_path / "mixed.csv"
    mixed.write_text("user_id,item_id,timestamp\n1,2,2020-01-01\n3,4,1577836800\n")
    with pytest.raises(
        DataError, match=r"mixed\.csv.*'1577836800' at row 1 \(user_id=3, item_id=4\) is a number"
    ):
        load_table(mixed)

    with pytest.raises(DataError, match=r"missing file nope\.csv"):
        load_table(tmp_path / "nope.csv", MAPPING)
    odd = tmp_path / "events.xyz"
    odd.write_text("a")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_table(odd, MAPPING)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"broken\.parquet.*cannot read as parquet"):
        load_table(broken, MAPPING)
    gz = tmp_path / "cut.csv.gz"
    gz.write_bytes(gzip.compress(EVENTS.write_csv().encode())[:-8])
    with pytest.raises(DataError, match=r"cut\.csv\.gz.*(corrupt|truncated)"):
        load_table(gz, MAPPING)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv.*empty"):
        load_table(empty, MAPPING)


def test_read_table_headerless_tsv(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_text("1\t2\n3\t4\n")
    frame = read_table(path, has_header=False, columns={"user_id": "column_0", "item_id": "column_1"})
    assert frame.columns == ["user_id", "item_id"]
    assert frame["item_id"].to_list() == [2, 4]


def test_tsv_has_no_quoting_but_csv_does(tmp_path: Path) -> None:
    """Plain TSV: a '"' is a character (2" diameter); CSV keeps RFC 4180 quoting."""
    tsv = tmp_path / "items.tsv"
    tsv.write_text('item_id\ttitle\n1\t"TWIN DRAFT GUARD" 2" tube\n2\tBinder, 2", Blue\n')
    frame = read_table(tsv)
    assert frame["title"].to_list() == ['"TWIN DRAFT GUARD" 2" tube', 'Binder, 2", Blue']
    gz = tmp_path / "items.tsv.gz"
    gz.write_bytes(gzip.compress(tsv.read_bytes()))
    assert read_table(gz)["title"].to_list() == frame["title"].to_list()
    headless = tmp_path / "plain.tsv"
    headless.write_text('1\t2" wide\n')
    assert read_table(headless, has_header=False).row(0) == (1, '2" wide')
    csv = tmp_path / "items.csv"
    csv.write_text('item_id,title\n1,"Binder, 2"", Blue"\n')
    assert read_table(csv)["title"].to_list() == ['Binder, 2", Blue']
    # a TSV written with CSV-style quoting can still be read by asking for it
    quoted = tmp_path / "quoted.tsv"
    quoted.write_text('item_id\ttitle\n1\t"a ""b"""\n')
    assert read_table(quoted, quote_char='"')["title"].to_list() == ['a "b"']


def test_tsv_items_table_with_quotes_through_load_table(tmp_path: Path) -> None:
    events = tmp_path / "events.tsv"
    events.write_text("user_id\titem_id\n1\t1\n1\t2\n")
    items = tmp_path / "items.tsv"
    items.write_text('item_id\ttitle\n1\t"Quoted" start\n2\t14" x 14"\n')
    ds = load_table(events, items=items)
    assert ds.item_titles() == ['"Quoted" start', '14" x 14"']
    bad = tmp_path / "bad.tsv"
    bad.write_text('user_id\titem_id\ttimestamp\n1\t"2"\tsoon\n')
    with pytest.raises(DataError) as err:
        load_table(bad)
    assert err.value.column == "timestamp" and err.value.source == str(bad)


# ------------------------------------------------------------------ validation: issue #12
@pytest.mark.parametrize(
    ("body", "column", "match"),
    [
        ("u,i,t\nNA,2,100\n3,4,200\n", "u", r"missing-value marker 'NA' used as an id at row 0"),
        ("u,i,t\n1,null,100\n3,4,200\n", "i", r"missing-value marker 'null'"),
        (
            "u,i,t\n1,2,100\n,4,200\n",
            "u",
            r"null value\(s\) in id column, first at row 1 \(user_id=None, item_id=4\)",
        ),
        ("u,i,t\n 1 ,2,100\n1,4,200\n", "u", r"ids ' 1 ' and '1' differ only in surrounding whitespace"),
        ("u,i,t\n1,2,-100\n3,4,200\n", "t", r"negative timestamp.*-100 at row 0 \(user_id=1, item_id=2\)"),
        ("u,i,t,r\n1,2,100,nan\n3,4,200,4\n", "r", r"NaN or infinite rating.*row 0"),
        ("u,i,t,r\n1,2,100,4\n3,4,200,-1\n", "r", r"negative rating.*row 1 \(user_id=3, item_id=4\)"),
        ("u,i,t,w\n1,2,100,0\n3,4,200,1\n", "w", r"zero or negative weight.*row 0"),
        ("u,i,t,w\n1,2,100,inf\n3,4,200,1\n", "w", r"NaN or infinite weight"),
    ],
)
def test_bad_rows_in_a_file_name_file_column_and_row(
    tmp_path: Path, body: str, column: str, match: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(body)
    mapping = {"user_id": "u", "item_id": "i", "timestamp": "t", "rating": "r", "weight": "w"}
    mapping = {k: v for k, v in mapping.items() if v in body.splitlines()[0].split(",")}
    with pytest.raises(DataError, match=match) as err:
        load_table(path, mapping)
    msg = str(err.value)
    assert err.value.column == column and f"column {column!r}" in msg and str(path) in msg
    assert "\n" not in msg


def test_ids_beyond_int64_load_as_text(tmp_path: Path) -> None:
    path = tmp_path / "hashes.csv"
    path.write_text("user_id,item_id\n1,18446744073709551615\n2,9223372036854775808\n2,3\n")
    ds = load_table(path)
    assert ds.item_vocab.kind == "str"
    assert sorted(ds.item_vocab.ids) == ["18446744073709551615", "3", "9223372036854775808"]


def test_whitespace_after_separators_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "spaced.csv"
    path.write_text("user_id,item_id,rating\n1, 10, 4\n2, 10, 5\n2, 11 , 3\n")
    ds = load_table(path)
    assert ds.item_vocab.kind == "int" and ds.item_vocab.ids == [10, 11]
    assert ds.interactions["rating"].to_list() == [4.0, 5.0, 3.0]


def test_duplicates_policy_through_load_table(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "plays.csv"
    path.write_text("user_id,item_id,timestamp\n1,10,5\n1,10,5\n1,10,9\n2,10,1\n")
    with caplog.at_level("WARNING", logger="lmrec.data"):
        ds = load_table(path)
    assert ds.interactions["timestamp"].to_list() == [5, 9, 1]
    assert "plays.csv" in caplog.text and "dropped 1 row(s)" in caplog.text
    assert load_table(path, duplicates="last").interactions["timestamp"].to_list() == [9, 1]
    assert load_table(path, duplicates="keep").n_interactions == 4
    with pytest.raises(DataError, match=r"plays\.csv.*occur more than once"):
        load_table(path, duplicates="error")

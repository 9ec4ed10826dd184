"""Each file format on small files written here, and every bad-input case with its error message."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from lmrec.data.loaders import (
    dataset_info,
    load_amazon,
    load_dataset,
    load_lastfm,
    load_movielens,
    local_status,
    verify,
    verify_dataset,
)
from lmrec.errors import ChecksumError, DataError

from .conftest import TINY_FILES


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


# ---------------------------------------------------------------------------------------- MovieLens
def test_ml1m_dat_layout(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "ml-1m",
        {
            "ratings.dat": b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n",
            "movies.dat": "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
            "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
            "3::Misérables, Les (1935)::Drama\n".encode("latin-1"),
            "users.dat": b"1::F::1::10::48067\n2::M::56::16::70072\n",
        },
    )
    ds = load_movielens(folder)
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (3, 2, 3)
    items = ds.item_table()
    assert items["title"].to_list() == [
        "Misérables, Les (1935)",
        "James and the Giant Peach (1996)",
        "One Flew Over the Cuckoo's Nest (1975)",
    ]
    assert items["year"].to_list() == [1935, 1996, 1975]
    users = ds.users
    assert users is not None
    assert users["profile"].to_list() == [
        "Age under 18, female, K-12 student.",
        "Age 56+, male, self-employed.",
    ]
    assert ds.interactions["timestamp"].to_list() == [978300760, 978302109, 978298413]


def test_ml10m_tags_dat(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "ml-10m",
        {
            "ratings.dat": b"15::4973::4.5::1215184630\n20::1747::3.5::1154465405\n",
            "movies.dat": b"4973::Amelie (Fabuleux destin d'Amelie Poulain, Le) (2001)::Comedy|Romance\n1747::Wag the Dog (1997)::Comedy\n",
            "tags.dat": b"15::4973::excellent!::1215184630\n20::1747::politics::1188263867\n20::4973::a::b::1188263868\n",
        },
    )
    ds = load_movielens(folder)
    assert ds.tags is not None
    assert ds.tags["tag"].to_list() == ["excellent!", "politics", "a::b"]
    assert ds.item_table()["tags"].to_list() == ["politics", "a::b, excellent!"]
    assert ds.interactions["rating"].to_list() == [4.5, 3.5]


def test_ml_csv_layout_without_optional_files(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "ml-x",
        {
            "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,2,0.5,964982704\n",
            "movies.csv": b'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n2,Heat (1995),(no genres listed)\n3,Never rated (2001),Drama\n',
        },
    )
    ds = load_movielens(folder)
    assert ds.n_items == 3 and ds.tags is None
    assert ds.item_table()["title"].to_list()[0] == "American President, The (1995)"
    assert ds.item_table()["genres"].to_list() == ["Comedy|Drama|Romance", "", "Drama"]


def test_missing_file_is_named(tmp_path: Path) -> None:
    folder = _write(tmp_path / "ml", {"u.data": TINY_FILES["u.data"]})
    with pytest.raises(DataError, match=r"missing file u\.item") as err:
        load_movielens(folder)
    assert err.value.source == str(folder / "u.item")
    with pytest.raises(DataError, match="no MovieLens ratings file"):
        load_movielens(_write(tmp_path / "empty", {"README": b"x"}))


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "ml",
        {
            "ratings.csv": b"userId,movieId,rating\n1,1,4.0\n",
            "movies.csv": b"movieId,title,genres\n1,A (1990),Drama\n",
        },
    )
    with pytest.raises(DataError, match="missing column 'timestamp'") as err:
        load_movielens(folder)
    assert err.value.column == "timestamp"
    assert "ratings.csv" in str(err.value)


def test_non_numeric_timestamp_names_file_column_line_and_ids(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "ml",
        {
            "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n7,42,3.0,yesterday\n",
            "movies.csv": b"movieId,title,genres\n1,A (1990),Drama\n42,B (1991),Drama\n",
        },
    )
    with pytest.raises(DataError) as err:
        load_movielens(folder)
    msg = str(err.value)
    assert "ratings.csv" in msg and "'timestamp'" in msg and "'yesterday'" in msg and "line 3" in msg
    assert "userId=7" in msg and "movieId=42" in msg
    # headerless u.data too
    bad = _write(tmp_path / "ml100", {**TINY_FILES, "u.data": b"1\t10\t5\t881250949\n2\t20\t4\tnope\n"})
    with pytest.raises(DataError, match=r"u\.data.*'timestamp'.*'nope' at line 2 \(user_id=2, item_id=20\)"):
        load_movielens(bad)


def test_ragged_line_is_a_clear_error(tmp_path: Path) -> None:
    bad = _write(tmp_path / "ml", {**TINY_FILES, "u.item": b"10|only three|fields\n"})
    with pytest.raises(DataError, match=r"u\.item.*line 1 has 3 fields, expected 24"):
        load_movielens(bad)


def test_wrong_local_file_is_a_checksum_error_naming_it(tmp_path: Path, data_home: Path) -> None:
    """A copy of the reference ml-100k with one altered byte in u.item."""
    home = tmp_path / "home"
    folder = home / "ml-100k"
    folder.mkdir(parents=True)
    for name in ("u.data", "u.user", "u.genre"):
        (folder / name).write_bytes((data_home / "ml-100k" / name).read_bytes())
    item = bytearray((data_home / "ml-100k" / "u.item").read_bytes())
    item[10] ^= 0x20
    (folder / "u.item").write_bytes(bytes(item))
    with pytest.raises(ChecksumError) as err:
        load_dataset("ml-100k", home)
    msg = str(err.value)
    assert "u.item" in msg and "md5:c9e7f390115d79079537301d5204f3f7" in msg
    assert err.value.source == str(folder / "u.item")
    report = verify_dataset("ml-100k", home, raise_on_error=False)
    assert not report.ok
    assert [c.name for c in report.checks if c.status == "mismatch"] == ["u.item"]
    # the unaltered files still verify, and a missing dataset with download=False names the file
    with pytest.raises(DataError, match=r"missing ratings\.csv"):
        load_dataset("ml-latest-small", home, download=False)


# ------------------------------------------------------------------------------------------- Amazon
def _reviews(rows: list[dict], gz: bool = True) -> bytes:
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return gzip.compress(text) if gz else text


_ROWS = [
    {
        "reviewerID": "U1",
        "asin": "0001",
        "overall": 5.0,
        "unixReviewTime": 1393545600,
        "reviewText": "Loud.",
        "summary": "Great!",
    },
    {
        "reviewerID": "U2",
        "asin": "0001",
        "overall": 3.0,
        "unixReviewTime": 1393545601,
        "reviewText": "",
        "summary": "meh",
    },
    {
        "reviewerID": "U2",
        "asin": "B002",
        "overall": 4.0,
        "unixReviewTime": 1393545602,
        "reviewText": "ok",
        "summary": "",
    },
]


def test_amazon_2014_with_python_literal_metadata(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews_X_5.json.gz"
    reviews.write_bytes(_reviews(_ROWS))
    meta = tmp_path / "meta_X.json.gz"
    meta.write_bytes(
        gzip.compress(
            b"{'asin': '0001', 'title': 'Mic &amp; Stand', 'categories': [['Musical Instruments', 'Mics'], ['Sale']], "
            b"'brand': 'Shure', 'price': 12.5, 'description': 'A mic.'}\n"
            b"{'asin': 'ZZZZ', 'title': 'never reviewed'}\n"
            b"{'asin': 'B002', 'title': \"Player's Strap\", 'related': {'also_bought': ['0001']}}\n"
        )
    )
    ds = load_amazon(reviews, meta, name="x")
    assert ds.n_items == 2  # the never-reviewed item is dropped by default
    items = ds.item_table().to_dicts()
    assert items[0] == {
        "item_id": "0001", "title": "Mic & Stand", "description": "A mic.",
        "categories": "Musical Instruments > Mics | Sale", "brand": "Shure", "price": 12.5,
    }  # fmt: skip
    assert items[1]["title"] == "Player's Strap" and items[1]["categories"] is None
    assert ds.reviews is not None
    assert ds.reviews["text"].to_list() == ["Great! Loud.", "meh", "ok"]
    assert load_amazon(reviews, meta, meta_items="all").n_items == 3


def test_amazon_2018_plain_json_with_list_fields(tmp_path: Path) -> None:
    reviews = tmp_path / "X_5.json"
    rows = [dict(r, vote="1,234", style={"Size:": " L"}) for r in _ROWS]
    reviews.write_bytes(_reviews(rows, gz=False))
    meta = tmp_path / "meta_X.json"
    meta.write_text(
        json.dumps({"asin": "0001", "title": "Mic", "description": ["Line one.", "Line two."], "category": ["A", "B &amp; C"], "price": "$1,299.00"}) + "\n"
        + json.dumps({"asin": "0001", "title": "duplicate asin, ignored"}) + "\n"
    )  # fmt: skip
    ds = load_amazon(reviews, meta)
    row = ds.item_table().row(0, named=True)
    assert (row["title"], row["description"], row["categories"], row["price"]) == (
        "Mic",
        "Line one. Line two.",
        "A > B & C",
        1299.0,
    )
    assert ds.name == "X_5"


def test_amazon_bad_inputs(tmp_path: Path) -> None:
    truncated = tmp_path / "t.json.gz"
    truncated.write_bytes(_reviews(_ROWS)[:-12])
    with pytest.raises(DataError, match=r"t\.json\.gz.*(corrupt|truncated)"):
        load_amazon(truncated)

    bad_ts = tmp_path / "ts.json"
    bad_ts.write_bytes(_reviews([*_ROWS[:2], dict(_ROWS[2], unixReviewTime="soon")], gz=False))
    with pytest.raises(DataError) as err:
        load_amazon(bad_ts)
    msg = str(err.value)
    assert (
        "ts.json" in msg
        and "'unixReviewTime'" in msg
        and "'soon'" in msg
        and "line 3" in msg
        and "reviewerID=U2" in msg
    )

    broken = tmp_path / "broken.json"
    broken.write_bytes(_reviews(_ROWS[:1], gz=False) + b'{"reviewerID": "U9", "asin": \n')
    with pytest.raises(DataError, match=r"broken\.json.*line 2 is neither JSON nor a Python literal"):
        load_amazon(broken)

    no_asin = tmp_path / "noasin.json"
    no_asin.write_bytes(_reviews([_ROWS[0], {k: v for k, v in _ROWS[1].items() if k != "asin"}], gz=False))
    with pytest.raises(DataError, match=r"noasin\.json.*'asin'.*line 2 has no 'asin'"):
        load_amazon(no_asin)

    with pytest.raises(DataError, match=r"missing file nothere\.json\.gz"):
        load_amazon(tmp_path / "nothere.json.gz")


def test_amazon_registry_accepts_plain_json_for_gz_pin(tmp_path: Path, data_home: Path) -> None:
    """The pinned MD5 covers the decompressed content, so an uncompressed copy verifies too."""
    spec = dataset_info("amazon-2014-musical-instruments")
    folder = tmp_path / spec.name
    folder.mkdir()
    raw = gzip.decompress((data_home / spec.name / "reviews_Musical_Instruments_5.json.gz").read_bytes())
    (folder / "reviews_Musical_Instruments_5.json").write_bytes(raw)
    ds = load_dataset(spec.name, tmp_path, download=False)
    assert ds.n_interactions == 10_261
    assert ds.meta["checksums"] == {
        "reviews_Musical_Instruments_5.json": "md5:078862e68091de3d02e245b1c4e688bd"
    }
    (folder / "reviews_Musical_Instruments_5.json").write_bytes(
        raw.replace(b'"overall": 5.0', b'"overall": 4.0', 1)
    )
    with pytest.raises(ChecksumError, match=r"reviews_Musical_Instruments_5\.json"):
        load_dataset(spec.name, tmp_path, download=False)


# ------------------------------------------------------------------------------------------ Last.fm
def test_lastfm_small_and_bad_weight(tmp_path: Path) -> None:
    files = {
        "user_artists.dat": b"userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n3\t51\t5\r\n",
        "artists.dat": 'id\tname\turl\tpictureURL\n51\tRöyksopp\thttp://a\thttp://p\n52\tDuran "Duran"\thttp://b\t\n'.encode(),
        "tags.dat": "tagID\ttagValue\r\n1\ttropicália\r\n2\tpop\r\n".encode("latin-1"),
        "user_taggedartists.dat": b"userID\tartistID\ttagID\tday\tmonth\tyear\r\n2\t52\t2\t1\t4\t2009\r\n3\t52\t2\t1\t5\t2009\r\n2\t51\t1\t1\t1\t2010\r\n2\t99\t2\t1\t1\t2010\r\n",
    }
    folder = _write(tmp_path / "lfm", files)
    ds = load_lastfm(folder)
    assert ds.interactions["weight"].to_list() == [13883.0, 11690.0, 5.0]
    assert ds.item_table()["title"].to_list() == ["Röyksopp", 'Duran "Duran"']
    assert ds.item_table()["tags"].to_list() == ["tropicália", "pop"]
    assert ds.tags is not None and ds.tags.height == 4  # artist 99 is not in artists.dat but kept
    assert ds.tags["timestamp"].to_list()[:2] == [1238544000, 1241136000]

    bad = _write(
        tmp_path / "bad", {**files, "user_artists.dat": b"userID\tartistID\tweight\r\n2\t51\tlots\r\n"}
    )
    with pytest.raises(
        DataError, match=r"user_artists\.dat.*'weight'.*'lots' at line 2 \(userID=2, artistID=51\)"
    ):
        load_lastfm(bad)


def test_local_copy_without_pins_is_hashed_and_reported_unpinned(tmp_path: Path) -> None:
    """A user's own ml-1m folder: no per-file MD5 is pinned, so the hashes are recorded, not compared."""
    _write(
        tmp_path / "ml-1m",
        {
            "ratings.dat": b"1::1193::5::978300760\n2::1193::4::978298413\n",
            "movies.dat": b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n",
        },
    )
    assert local_status("ml-1m", tmp_path) == "present"
    ds = load_dataset("ml-1m", tmp_path, download=False)
    assert ds.n_interactions == 2
    assert ds.meta["verification"] == {"ratings.dat": "unpinned", "movies.dat": "unpinned"}
    assert set(ds.meta["checksums"]) == {"ratings.dat", "movies.dat"}
    assert local_status("ml-1m", tmp_path) == "unpinned"
    # the stamp lives in the user cache, even for a writable dataset folder
    assert verify.stamp_path(tmp_path / "ml-1m", "ml-1m").exists()
    assert not (tmp_path / "ml-1m" / verify.STAMP_NAME).exists()

"""Exact counts and content checks against the real reference copies (the ``data_home`` fixture)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lmrec.data.loaders import dataset_info, load_dataset, local_status, verify_dataset


@pytest.fixture(scope="module")
def ml100k_loaded(data_home: Path):
    return load_dataset("ml-100k", data_home, download=False)


def test_ml100k_counts_titles_genres_users(ml100k_loaded) -> None:
    ds = ml100k_loaded
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (100_000, 943, 1_682)
    assert ds.interactions["rating"].sum() == 1 * 6110 + 2 * 11370 + 3 * 27145 + 4 * 34174 + 5 * 21201
    items = ds.item_table()
    toy = items.filter(pl.col("item_id") == 1).row(0, named=True)
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == "Animation|Children's|Comedy"
    assert toy["year"] == 1995
    # Latin-1 titles decode correctly (u.item is ISO-8859-1)
    mis = items.filter(pl.col("title").str.contains("Misérables"))
    assert mis["title"].to_list() == ["Misérables, Les (1995)"]
    assert not items["title"].str.contains("\ufffd").any()
    # the "unknown" genre flag becomes no genre text at all
    assert items.filter(pl.col("item_id") == 267)["genres"].to_list() == [""]
    users = ds.users
    assert users is not None and users.height == 943
    first = users.filter(pl.col("user_id") == 1).row(0, named=True)
    assert (first["age"], first["gender"], first["occupation"]) == (24, "M", "technician")
    assert first["profile"] == "Age 24, male, technician."


def test_ml100k_meta_records_source_and_checksums(ml100k_loaded, data_home: Path) -> None:
    meta = ml100k_loaded.meta
    assert meta["name"] == "ml-100k"
    assert meta["source"] == str(data_home / "ml-100k")
    assert meta["checksums"]["u.data"] == "md5:6e47046882bad158b0efbb84cd5cb987"
    assert meta["checksums"]["u.item"] == "md5:c9e7f390115d79079537301d5204f3f7"
    assert meta["verification"]["u.data"] == "pinned"
    assert meta["urls"] == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert local_status("ml-100k", data_home) == "verified"


def test_ml_latest_small_counts_and_tags(data_home: Path) -> None:
    ds = load_dataset("ml-latest-small", data_home, download=False)
    assert ds.n_interactions == 100_836
    assert ds.n_users == 610
    assert ds.n_items == 9_742  # the catalogue, including 18 movies nobody rated
    assert ds.interactions["item_id"].n_unique() == 9_724
    assert ds.tags is not None and ds.tags.height == 3_683
    assert ds.tags.columns == ["user_id", "item_id", "tag", "timestamp"]
    assert ds.tags["user_id"].n_unique() == 58
    items = ds.item_table()
    toy = items.filter(pl.col("item_id") == 1).row(0, named=True)
    assert toy["genres"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert toy["imdb_id"] == "0114709" and toy["tmdb_id"] == "862"
    assert "pixar" in toy["tags"]
    assert items.filter(pl.col("genres") == "").height == 34  # "(no genres listed)"
    assert sorted(ds.interactions["rating"].unique().to_list()) == [x / 2 for x in range(1, 11)]


def test_amazon_musical_instruments_reviews(data_home: Path) -> None:
    ds = load_dataset("amazon-2014-musical-instruments", data_home, download=False)
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (10_261, 1_429, 900)
    assert ds.interactions["item_id"].dtype == pl.String  # ASINs stay strings even when numeric-looking
    assert "1384719342" in ds.item_vocab
    reviews = ds.reviews
    assert reviews is not None and reviews.height == 10_261
    assert reviews.columns == ["user_id", "item_id", "text", "rating", "timestamp"]
    first = reviews.row(0, named=True)
    assert first["user_id"] == "A2IBPI20UZIR0U"
    assert first["text"].startswith("good. Not much to write about here")
    assert (reviews["text"].str.len_chars() > 0).all()
    hist = dict(ds.interactions.group_by("rating").len().iter_rows())
    assert hist == {5.0: 6938, 4.0: 2084, 3.0: 772, 2.0: 250, 1.0: 217}
    assert ds.interactions["timestamp"].min() == 1095465600  # 2004-09-18
    assert ds.meta["checksums"] == {
        "reviews_Musical_Instruments_5.json.gz": "md5:078862e68091de3d02e245b1c4e688bd"
    }
    assert any("metadata" in n for n in ds.meta["notes"])


def test_lastfm_counts_tags_and_encodings(data_home: Path) -> None:
    ds = load_dataset("hetrec2011-lastfm-2k", data_home, download=False)
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (92_834, 1_892, 17_632)
    assert (ds.interactions["timestamp"] == 0).all()
    assert any("no timestamps" in n for n in ds.meta["notes"])
    # play counts are the weights
    first = ds.interactions.row(0, named=True)
    assert (first["user_id"], first["item_id"], first["weight"]) == (2, 51, 13883.0)
    tags = ds.tags
    assert tags is not None and tags.height == 186_479
    assert tags["user_id"].n_unique() == 1_892
    assert tags["tag"].n_unique() == 9_749
    assert tags.filter(pl.col("tag") == "tropicália").height > 0  # tags.dat is ISO-8859-1
    row = tags.row(0, named=True)
    assert (row["user_id"], row["item_id"], row["tag"], row["timestamp"]) == (
        2,
        52,
        "chillout",
        1238544000,
    )  # 2009-04-01
    items = ds.item_table()
    assert items.filter(pl.col("item_id") == 64)["title"].to_list() == ["Röyksopp"]  # artists.dat is UTF-8
    malice = items.filter(pl.col("item_id") == 1)["tags"].to_list()[0]
    assert malice.split(", ")[0] == "j-rock"


def test_full_verify_of_reference_copies(data_home: Path) -> None:
    for name in ("ml-100k", "ml-latest-small", "hetrec2011-lastfm-2k", "amazon-2014-musical-instruments"):
        report = verify_dataset(name, data_home, full=True)
        assert report.ok, name
        pinned = [f for f in dataset_info(name).files if f.md5]
        assert sum(c.status == "ok" for c in report.checks) == len(pinned), name

"""Your own data as a named dataset (``lmrec.data.loaders.own``): add, find, load, verify, errors."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import polars as pl
import pytest

from lmrec.data.loaders import dataset_info, list_datasets, load_dataset, local_status
from lmrec.data.loaders.own import MANIFEST, PROFILE_FIELDS, add_dataset, find_own, remove_dataset
from lmrec.errors import ChecksumError, DataError, LmrecError
from lmrec.text.profiles import DERIVED_FIELDS, ProfileConfig, build_item_texts

EVENTS = """customer,sku,ts,rating
alice,B1,2024-01-03,5
alice,B2,2024-01-05,4
alice,B3,2024-01-09,5
bob,B1,2024-01-02,3
bob,B4,2024-01-04,5
bob,B2,2024-01-08,4
carol,B3,2024-01-01,4
carol,B5,2024-01-06,5
carol,B1,2024-01-07,2
"""
ITEMS = """sku,title,description,blurb
B1,Trail running shoes,Light shoes with a grippy sole,for mud
B2,Rain jacket,Packable waterproof shell,with a hood
B3,Headlamp,Rechargeable lamp,400 lumen
B4,Hydration vest,Running vest,two soft flasks
B5,Wool socks,Merino socks,warm when wet
B6,Gaiters,Keep stones out,never bought
"""
MAP = {"user_id": "customer", "item_id": "sku", "timestamp": "ts"}


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "src").mkdir()
    events, items = tmp_path / "src" / "events.csv", tmp_path / "src" / "items.csv"
    events.write_text(EVENTS)
    items.write_text(ITEMS)
    return events, items


@pytest.fixture()
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A data home and a user data home, both empty."""
    data, user = tmp_path / "data-home", tmp_path / "user-home"
    data.mkdir()
    monkeypatch.setenv("LMREC_DATA_HOME", str(data))
    monkeypatch.setenv("LMREC_USER_DATA_HOME", str(user))
    monkeypatch.setenv("LMREC_CACHE_HOME", str(tmp_path / "cache"))
    return data, user


def test_add_copies_checksums_and_loads_like_a_builtin(files, homes) -> None:
    events, items = files
    folder = add_dataset("shop", events, items=items, columns=MAP, text_columns=["title", "blurb"])
    assert folder == homes[1] / "shop"  # no --data-dir: the user data home
    manifest = tomllib.loads((folder / MANIFEST).read_text())
    assert [f["role"] for f in manifest["files"]] == ["interactions", "items"]
    assert all(len(f["md5"]) == 32 and (folder / f["name"]).is_file() for f in manifest["files"])
    assert manifest["stats"] == {"interactions": 9, "users": 3, "items": 6}

    assert "shop" in list_datasets() and dataset_info("shop").family == "own"
    ds = load_dataset("shop", download=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 6, 9)  # B6: a catalogue-only item
    assert ds.meta["checksums"]["interactions.csv"].startswith("md5:")
    assert local_status("shop") == "verified"
    table = ds.item_table()
    # a listed text column that is not a profile field is read as more description
    assert (
        table.filter(pl.col("item_id") == "B2")["description"][0] == "Packable waterproof shell. with a hood"
    )
    assert any("Rain jacket" in t and "with a hood" in t for t in build_item_texts(ds))
    # timestamps: the dates became epoch seconds, in order
    alice = ds.interactions.filter(pl.col("user_idx") == 0).sort("timestamp")
    assert alice["timestamp"].to_list() == sorted(alice["timestamp"].to_list())


def test_a_damaged_copy_fails_its_checksum(files, homes) -> None:
    folder = add_dataset("shop", files[0], columns=MAP)
    with (folder / "interactions.csv").open("a") as fh:
        fh.write("dave,B1,2024-01-01,3\n")
    with pytest.raises(ChecksumError, match=r"interactions\.csv.*add it again"):
        load_dataset("shop", download=False)


def test_readonly_data_home_and_precedence(files, homes) -> None:
    data, user = homes
    os.chmod(data, stat.S_IRUSR | stat.S_IXUSR)  # a shared, read-only data home
    try:
        add_dataset("shop", files[0], columns=MAP)  # lands in the user data home
        assert find_own("shop").folder == str(user / "shop")
        assert "shop" in list_datasets()
    finally:
        os.chmod(data, stat.S_IRWXU)
    # a copy under an explicit --data-dir is found first there; the user home stays the fallback
    other = data.parent / "other"
    add_dataset("shop", files[0], columns={**MAP, "rating": "rating"}, data_dir=other)
    assert dataset_info("shop", other).folder == str(other / "shop")
    assert dataset_info("shop").folder == str(user / "shop")
    remove_dataset("shop", other)
    assert dataset_info("shop", other).folder == str(user / "shop")


def test_add_refuses_builtin_names_and_silent_replacement(files, homes) -> None:
    with pytest.raises(LmrecError, match="built-in"):
        add_dataset("ml-100k", files[0], columns=MAP)
    with pytest.raises(LmrecError, match="dataset name"):
        add_dataset("../evil", files[0], columns=MAP)
    add_dataset("shop", files[0], columns=MAP)
    with pytest.raises(LmrecError, match="--force"):
        add_dataset("shop", files[0], columns=MAP)
    add_dataset("shop", files[0], items=files[1], columns=MAP, overwrite=True)
    assert load_dataset("shop", download=False).n_items == 6


@pytest.mark.parametrize(
    ("events", "items", "columns", "text", "pattern"),
    [
        (EVENTS, None, {"user_id": "who", "item_id": "sku"}, (), r"events\.csv.*column 'who'"),
        (EVENTS, None, {"item_id": "sku"}, (), r"events\.csv.*no 'user_id' column; map one"),
        (
            EVENTS.replace("2024-01-05", "soon"),
            None,
            MAP,
            (),
            r"events\.csv.*'timestamp'.*'soon'.*user_id=alice",
        ),
        (EVENTS.replace("alice,B2", ",B2"), None, MAP, (), r"events\.csv.*'user_id'.*row 1"),
        (EVENTS.replace(",4\n", ",-4\n", 1), None, MAP, (), r"events\.csv.*'rating'"),
        (EVENTS, ITEMS + "B1,Again,dup,x\n", MAP, (), r"items\.csv.*'item_id'.*'B1' is listed twice"),
        (EVENTS, ITEMS, {**MAP, "title": "name"}, (), r"--map title=name: no file has a column 'name'"),
        (EVENTS, ITEMS, MAP, ("title", "summary"), r"items\.csv.*text column 'summary'"),
        (EVENTS, None, MAP, ("title",), r"--text-columns.*--items"),
    ],
)
def test_bad_input_is_one_line_naming_file_and_column(
    tmp_path, homes, events, items, columns, text, pattern
) -> None:
    (tmp_path / "events.csv").write_text(events)
    if items is not None:
        (tmp_path / "items.csv").write_text(items)
    with pytest.raises(LmrecError, match=pattern) as info:
        add_dataset(
            "bad",
            tmp_path / "events.csv",
            items=tmp_path / "items.csv" if items is not None else None,
            columns=columns,
            text_columns=text,
        )
    assert "\n" not in str(info.value)
    assert not (homes[1] / "bad").exists()  # nothing written for invalid input
    assert isinstance(info.value, DataError) or "--" in str(info.value)


def test_profile_fields_match_the_profile_builder() -> None:
    defaults = [f for f in ProfileConfig().fields if f not in DERIVED_FIELDS]
    assert list(PROFILE_FIELDS) == defaults

"""Item pictures in a Dataset (``lmrec.data.images``): folders, features, problems by item id,
the ``ml-100k-posters`` built-in and ``lmrec datasets add --images``."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from lmrec.data import Dataset
from lmrec.data.images import ItemImages, read_md5_list
from lmrec.data.loaders import dataset_info, load_dataset, verify_dataset
from lmrec.data.loaders.own import add_dataset
from lmrec.errors import DataError


def _jpeg(path: Path, colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", (12, 18), colour).save(path, "JPEG")
    return path


@pytest.fixture()
def data() -> Dataset:
    inter = pl.DataFrame(
        {"user_id": [1, 1, 2, 2, 3], "item_id": [10, 20, 10, 30, 40], "timestamp": [1, 2, 3, 4, 5]}
    )
    return Dataset.from_frames(inter, name="tiny")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Pictures for items 10, 20 and 30: 30's is truncated; 40 has none; 99 is not in the catalogue."""
    d = tmp_path / "pics"
    d.mkdir()
    _jpeg(d / "10.jpg", (200, 10, 10))
    Image.new("RGB", (8, 8), (0, 0, 255)).save(d / "20.png")
    good = _jpeg(d / "30.jpg", (10, 200, 10)).read_bytes()
    (d / "30.jpg").write_bytes(good[: len(good) // 2])
    _jpeg(d / "99.jpg", (1, 2, 3))
    (d / "notes.txt").write_text("not a picture")
    return d


def test_folder_reports_missing_and_unreadable_by_item_id(data, folder, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="lmrec.data"):
        ds = data.with_images(folder)
    imgs = ds.images
    assert imgs is not None and imgs.kind == "files"
    assert sorted(imgs.item_ids) == [10, 20]
    assert imgs.path(20) == folder / "20.png"
    assert imgs.problems[40] == "missing" and imgs.problems[30].startswith("unreadable")
    assert imgs.unmatched == ("99.jpg",)
    report = ds.meta["images"]
    assert report["problems"] == {"missing": ["40"], "unreadable": ["30"]} and report["items_with_image"] == 2
    # one warning naming the ids; loading went on
    [rec] = [r for r in caplog.records if "item images" in r.getMessage()]
    assert "item ids 40" in rec.getMessage() and "item ids 30" in rec.getMessage()
    assert "images=2" in repr(ds)
    # splits keep the pictures
    assert ds.filter(pl.col("user_id") == 1).images is imgs


def test_pinned_md5_mismatch_is_corrupt(data, folder) -> None:
    good = hashlib.md5((folder / "10.jpg").read_bytes(), usedforsecurity=False).hexdigest()
    imgs = ItemImages.from_folder(folder, [10, 20], md5s={"10.jpg": "0" * 32, "20.png": "0" * 32})
    assert imgs.item_ids == [] and imgs.problems[10].startswith("corrupt") and good in imgs.problems[10]
    assert ItemImages.from_folder(folder, [10], md5s={"10.jpg": good}).item_ids == [10]


def test_missing_folder_is_an_error(data, tmp_path) -> None:
    with pytest.raises(DataError, match="image folder not found"):
        data.with_images(tmp_path / "nope")


def test_feature_matrix_with_its_id_order(data) -> None:
    feats = np.array([[1.0, 0.0], [np.nan, 1.0], [0.5, 0.5], [0.0, 2.0]], np.float32)
    ds = data.with_images(ItemImages.from_features([30, 10, 20, 77], feats, model_id="m"))
    imgs = ds.images
    assert imgs is not None and imgs.kind == "features"
    assert imgs.item_ids == [30, 20]  # 10 dropped (NaN), 77 not in the catalogue
    assert imgs.problems == {10: "corrupt (non-finite features)"}
    np.testing.assert_array_equal(imgs.features, feats[[0, 2]])
    with pytest.raises(DataError, match="one row per id"):
        ItemImages.from_features([1, 2], feats)
    with pytest.raises(DataError, match="item id 1 has two rows"):
        ItemImages.from_features([1, 1], feats[:2])


def test_md5_list_format(tmp_path) -> None:
    p = tmp_path / "m.txt"
    p.write_text(f"{'a' * 32}  1.jpg\n\n{'b' * 32} *2.jpg\n")
    assert read_md5_list(p) == {"1.jpg": "a" * 32, "2.jpg": "b" * 32}
    p.write_text("xyz 1.jpg\n")
    with pytest.raises(DataError, match="line 1"):
        read_md5_list(p)


def test_datasets_add_images_copies_pins_and_reports(tmp_path, folder) -> None:
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id\nu1,10\nu1,20\nu2,30\nu2,40\n")
    home = tmp_path / "home"
    target = add_dataset("pics", events, images=folder, data_dir=home)
    assert sorted(p.name for p in (target / "images").iterdir()) == ["10.jpg", "20.png"]
    ds = load_dataset("pics", home, download=False)
    assert ds.images is not None and sorted(ds.images.item_ids) == [10, 20]
    assert ds.images.problems == {30: "missing", 40: "missing"}  # 30 was unreadable, so not copied
    assert dataset_info("pics", home).images == "images"
    # a picture changed after the add is reported as corrupt, and loading goes on
    _jpeg(target / "images" / "10.jpg", (0, 0, 0))
    ds = load_dataset("pics", home, download=False)
    assert (
        ds.images is not None and ds.images.item_ids == [20] and ds.images.problems[10].startswith("corrupt")
    )


def test_cli_datasets_add_images(tmp_path, folder) -> None:
    from typer.testing import CliRunner

    from lmrec.cli import app

    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id\nu1,10\nu1,20\nu2,30\n")
    res = CliRunner().invoke(
        app,
        ["datasets", "add", "clipics", "--interactions", str(events), "--images", str(folder),
         "--data-dir", str(tmp_path / "h")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2 item pictures" in res.output
    res = CliRunner().invoke(
        app, ["datasets", "info", "clipics", "--data-dir", str(tmp_path / "h")], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    assert "item pictures" in res.output and "2 (files); 1 missing" in res.output


def test_ml100k_posters_builtin(data_home: Path) -> None:
    spec = dataset_info("ml-100k-posters")
    assert spec.images == "images" and spec.local_only and not spec.archives
    ds = load_dataset("ml-100k-posters", data_home, download=False)
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (99_815, 943, 1_663)
    assert ds.images is not None and len(ds.images) == 1_663 and not ds.images.problems
    assert ds.images.path("172") == data_home / "ml-100k-posters" / "images" / "172.jpg"
    assert "overview" in ds.items.columns
    assert verify_dataset("ml-100k-posters", data_home, full=True).ok

"""``amazon-2014-office`` (a converted, local-only copy) and the plain-TSV reader behind it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.loaders import (
    dataset_info,
    download_dataset,
    list_datasets,
    load_dataset,
    local_status,
    verify_dataset,
)
from lmrec.data.loaders.converted import load_converted
from lmrec.data.split import leave_last_out
from lmrec.errors import ChecksumError, DataError
from lmrec.text.profiles import build_item_texts

NAME = "amazon-2014-office"


@pytest.fixture(scope="module")
def office(data_home: Path) -> Dataset:
    return load_dataset(NAME, data_home, download=False)


def _copy(data_home: Path, dest: Path, *names: str) -> Path:
    folder = dest / NAME
    folder.mkdir(parents=True)
    for n in names:
        (folder / n).write_bytes((data_home / NAME / n).read_bytes())
    return folder


def test_registered_with_pinned_checksums_and_no_download() -> None:
    spec = dataset_info(NAME)
    assert NAME in list_datasets() and NAME in list_datasets("converted")
    assert spec.archives == () and "APAO" in spec.local_only and "LRD" in spec.local_only
    pins = {f.name: f.md5 for f in spec.files if f.md5}
    assert pins == {
        "interactions.tsv": "ba54a62635211baf6c955c45cbb1bec0",
        "items.tsv": "4818c2d41a421dfa7cdd301524141fc6",
        "interactions_unixtime.tsv": "2375e1cd5447023b60e6a450f7be49fd",
    }
    assert dict(spec.stats) == {"interactions": 53_258, "users": 4_905, "items": 2_420}
    # the raw-review category of the same name is a different dataset
    assert dataset_info("amazon-2014-office-products").family == "amazon-2014"


def test_counts_ids_and_meta(office: Dataset, data_home: Path) -> None:
    ds = office
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (4_905, 2_420, 53_258)
    assert ds.interactions["user_id"].dtype == pl.Int64  # APAO user index 0..4904
    assert ds.interactions["user_id"].min() == 0 and ds.interactions["user_id"].max() == 4_904
    assert ds.interactions["item_id"].dtype == pl.String  # ASINs
    assert ds.interactions.group_by("user_id").len()["len"].min() == 5  # 5-core
    first = ds.interactions.filter(pl.col("user_id") == 0).sort("timestamp").head(2)
    assert first["item_id"].to_list() == ["B004OA758C", "B0006IEV60"]
    assert ds.meta["checksums"] == {
        "interactions.tsv": "md5:ba54a62635211baf6c955c45cbb1bec0",
        "items.tsv": "md5:4818c2d41a421dfa7cdd301524141fc6",
    }
    assert ds.meta["verification"] == {"interactions.tsv": "pinned", "items.tsv": "pinned"}
    assert ds.meta["urls"] == [] and "APAO" in ds.meta["provenance"]
    assert local_status(NAME, data_home) == "verified"


def test_item_text_titles_and_quotes_survive(office: Dataset) -> None:
    items = office.item_table()
    assert items.columns == ["item_id", "title", "brand", "categories", "description"]
    assert items.height == 2_420
    assert (items["title"].str.strip_chars().str.len_chars() > 0).all()  # 3 source gaps were filled
    assert items["brand"].null_count() == 485 and items["description"].null_count() == 639
    assert items["categories"].null_count() == 0
    # double quotes are plain characters in plain TSV: not field delimiters
    chalk = items.filter(pl.col("item_id") == "B00D7NYKRQ").row(0, named=True)
    assert chalk["title"] == 'Quartet® Chalkboard, 14" x 14", Wood Finish Frame (90006)'
    # every line of items.tsv with a '"' somewhere (awk -F'\t' '$2 ~ /"/' etc.): 83 titles, 368 items
    assert items.filter(pl.col("title").str.contains('"')).height == 83
    has_quote = pl.any_horizontal(pl.col(c).fill_null("").str.contains('"') for c in items.columns[1:])
    assert items.filter(has_quote).height == 368
    opens_quoted = items.filter(pl.col("description").str.starts_with('"TWIN DRAFT GUARD"'))
    assert opens_quoted.height == 1
    assert 'blocks extra large gaps. Fits doors up to 36" wide.' in opens_quoted["description"][0]
    # no field swallowed a tab or a line of its neighbour
    for col in ("title", "brand", "categories", "description"):
        assert not items[col].drop_nulls().str.contains("[\t\n]").any(), col
    fallback = items.filter(pl.col("item_id") == "B000UEZ36W")["title"].to_list()
    assert fallback == ["Digital Pens"]


def test_profiles_read_title_brand_categories_description(office: Dataset) -> None:
    texts = build_item_texts(office)
    assert len(texts) == 2_420
    phone = texts[office.item_vocab.index("B004OA758C")]
    assert phone.startswith("VTECH CS6114 DECT 6.0 Cordless Phone, White/Grey, 1 Handset. Brand: VTech.")
    assert "Categories: Office Electronics, Telephones & Accessories, Cordless Telephones." in phone


def test_leave_last_out_reproduces_the_source_split(office: Dataset) -> None:
    split = leave_last_out(office)
    assert split.test is not None and split.valid is not None
    assert split.test.height == 4_905 and split.valid.height == 4_905
    assert split.train.n_interactions == 53_258 - 2 * 4_905
    # the test item is each user's last position (PROVENANCE: = the LRD test item)
    last = office.interactions.sort("timestamp").group_by("user_id").last().select("user_id", "item_id")
    got = split.test.select("user_id", "item_id")
    assert got.join(last, on=["user_id", "item_id"], how="inner").height == 4_905


def test_full_verify_checks_every_pinned_file(data_home: Path) -> None:
    report = verify_dataset(NAME, data_home, full=True)
    assert report.ok
    assert {c.name: c.status for c in report.checks if c.status == "ok"} == {
        "interactions.tsv": "ok",
        "items.tsv": "ok",
        "interactions_unixtime.tsv": "ok",
    }


def test_checksum_mismatch_is_reported(data_home: Path, tmp_path: Path) -> None:
    folder = _copy(data_home, tmp_path, "interactions.tsv", "items.tsv")
    items = folder / "items.tsv"
    items.write_bytes(items.read_bytes().replace(b"Quartet", b"Quartel", 1))
    with pytest.raises(ChecksumError) as err:
        load_dataset(NAME, tmp_path, download=False)
    msg = str(err.value)
    assert "items.tsv" in msg and "expected md5:4818c2d41a421dfa7cdd301524141fc6" in msg
    assert "cannot be downloaded" in msg and "--force" not in msg
    assert err.value.source == str(items)
    report = verify_dataset(NAME, tmp_path, raise_on_error=False)
    assert {c.name: c.status for c in report.checks if c.required} == {
        "interactions.tsv": "ok",
        "items.tsv": "mismatch",
    }


def test_download_fails_with_one_line_naming_the_source(tmp_path: Path) -> None:
    for call in (
        lambda: download_dataset(NAME, tmp_path),
        lambda: load_dataset(NAME, tmp_path),
        lambda: load_dataset(NAME, tmp_path, download=True),
        lambda: load_dataset(NAME, tmp_path, download=False),
    ):
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg
        assert "cannot be downloaded" in msg and "no official URL" in msg
        assert "yuyq18/APAO" in msg and "ysh-1998/LRD" in msg and "PROVENANCE.md" in msg
        assert str(tmp_path / NAME) in msg
    assert not (tmp_path / NAME).exists()  # nothing half-made
    # a folder the user started filling is left alone, and the message is the same
    (tmp_path / NAME).mkdir()
    with pytest.raises(DataError, match="cannot be downloaded") as err:
        download_dataset(NAME, tmp_path, force=True)
    assert err.value.source == str(tmp_path / NAME / "interactions.tsv")
    with pytest.raises(DataError, match="cannot be downloaded"):
        download_dataset(NAME, tmp_path)
    assert (tmp_path / NAME).is_dir()


def test_download_of_a_present_copy_verifies_it(data_home: Path, tmp_path: Path) -> None:
    folder = _copy(data_home, tmp_path, "interactions.tsv", "items.tsv")
    assert download_dataset(NAME, tmp_path) == folder
    assert local_status(NAME, tmp_path) == "verified"


def test_missing_items_file_is_named(data_home: Path, tmp_path: Path) -> None:
    _copy(data_home, tmp_path, "interactions.tsv")
    with pytest.raises(DataError, match=r"items\.tsv") as err:
        load_dataset(NAME, tmp_path, download=False)
    assert err.value.source == str(tmp_path / NAME / "items.tsv")


# ---------------------------------------------------------------------------- the reader itself
def test_plain_tsv_reader_on_a_small_folder(tmp_path: Path) -> None:
    (tmp_path / "interactions.tsv").write_text(
        "user_id\titem_id\ttimestamp\nu1\t0001\t1\nu1\tB2\t2\nu2\t0001\t1\n"
    )
    (tmp_path / "items.tsv").write_text(
        'item_id\ttitle\tbrand\n0001\t"Quoted" start, 2" end\t\nB2\tplain\tAcme "Pro"\n'
    )
    ds = load_converted(tmp_path, name="tiny")
    assert ds.interactions["user_id"].dtype == pl.String  # not all integers: stays text
    assert ds.interactions["item_id"].to_list() == ["0001", "B2", "0001"]  # leading zeros kept
    items = ds.item_table()
    assert items["title"].to_list() == ['"Quoted" start, 2" end', "plain"]
    assert items["brand"].to_list() == [None, 'Acme "Pro"']


def test_plain_tsv_errors_name_file_and_column(tmp_path: Path) -> None:
    (tmp_path / "interactions.tsv").write_text("user_id\titem_id\ttimestamp\n1\tA\t1\n1\tB\tyesterday\n")
    with pytest.raises(DataError) as err:
        load_converted(tmp_path)
    assert err.value.column == "timestamp" and "interactions.tsv" in str(err.value)
    assert "'yesterday'" in str(err.value) and "line 3" in str(err.value)
    (tmp_path / "interactions.tsv").write_text("user\titem_id\n1\tA\n")
    with pytest.raises(DataError, match="missing column 'user_id'") as err:
        load_converted(tmp_path)
    assert err.value.column == "user_id"
    (tmp_path / "interactions.tsv").write_text("user_id\titem_id\ttimestamp\n1\tA\t1\n")
    (tmp_path / "items.tsv").write_text("item_id\ttitle\nA\tx\nA\ty\n")
    with pytest.raises(DataError, match="listed twice") as err:
        load_converted(tmp_path)
    assert err.value.column == "item_id" and err.value.source == str(tmp_path / "items.tsv")

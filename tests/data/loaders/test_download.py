"""The download path, offline: ``file://`` URLs and a monkeypatched opener serving archives built here."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lmrec.data.loaders import (
    Archive,
    DatasetSpec,
    FileSpec,
    dataset_info,
    download_dataset,
    load_dataset,
    local_status,
    register_dataset,
    unregister_dataset,
    verify,
    verify_dataset,
)
from lmrec.data.loaders import download as dl
from lmrec.errors import ChecksumError, DataError

from .conftest import TINY_FILES, make_zip, md5

NAME = "test-tiny-ml"


def _spec(url: str, checksum: str | None, pins: bool = True, **kw: Any) -> DatasetSpec:
    files = tuple(
        FileSpec(n, md5(d) if pins else None, len(d), required=n != "u.user") for n, d in TINY_FILES.items()
    )
    return DatasetSpec(
        name=NAME,
        family="movielens",
        description="tiny",
        size="1 KB",
        archives=(Archive(url, "tiny.zip", checksum, "zip"),),
        files=files,
        **kw,
    )


@pytest.fixture()
def registered() -> Iterator[Any]:
    def _register(spec: DatasetSpec) -> DatasetSpec:
        register_dataset(spec, overwrite=True)
        return spec

    yield _register
    unregister_dataset(NAME)


def _stamp(folder: Path, name: str = NAME) -> dict[str, Any]:
    """The verification stamp of a dataset folder: in the user cache, never in the folder."""
    path = verify.stamp_path(folder, name)
    assert path.parent.parent == verify.cache_home() and not (folder / verify.STAMP_NAME).exists()
    return json.loads(path.read_text())


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.exists() else []


class _Response(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}


def test_download_from_file_url_verifies_extracts_and_loads(tmp_path: Path, tiny_zip, registered) -> None:
    archive, digest = tiny_zip
    registered(_spec(archive.as_uri(), f"md5:{digest}"))
    home = tmp_path / "home"
    ds = load_dataset(NAME, home)  # download=None: fetches the missing copy
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (4, 3, 3)
    assert ds.item_table()["title"].to_list() == ["Misérables, Les (1995)", "Toy Story (1995)", "unknown"]
    assert ds.item_table()["genres"].to_list() == ["Drama|Musical", "Animation|Children's|Comedy", ""]
    # the zip's top-level folder was dropped and nothing temporary is left
    assert _leftovers(home) == [NAME]
    assert sorted(p.name for p in (home / NAME).iterdir()) == ["u.data", "u.item", "u.user"]
    stamp = _stamp(home / NAME)
    assert stamp["sources"]["tiny.zip"]["md5"] == digest
    assert stamp["sources"]["tiny.zip"]["verified"] is True
    assert ds.meta["archives"]["tiny.zip"]["url"] == archive.as_uri()
    assert ds.meta["checksums"]["u.data"] == f"md5:{md5(TINY_FILES['u.data'])}"
    assert local_status(NAME, home) == "verified"


def test_verified_copy_is_never_downloaded_again(tmp_path: Path, tiny_zip, registered, monkeypatch) -> None:
    archive, digest = tiny_zip
    registered(_spec(archive.as_uri(), f"md5:{digest}"))
    home = tmp_path / "home"
    download_dataset(NAME, home)
    calls: list[str] = []

    def no_network(url: str, timeout: float) -> Any:
        calls.append(url)
        raise AssertionError("must not download")

    monkeypatch.setattr(dl, "urlopen", no_network)
    # neither the downloader nor the loader touch the network, and nothing is re-hashed
    monkeypatch.setattr("lmrec.data.loaders.verify.file_digest", lambda *a, **k: pytest.fail("re-hashed"))
    download_dataset(NAME, home)
    load_dataset(NAME, home, download=True)
    assert calls == []


def test_checksum_mismatch_names_file_and_both_hashes_and_leaves_nothing(
    tmp_path: Path, tiny_zip, registered
) -> None:
    archive, digest = tiny_zip
    wrong = "0" * 32
    registered(_spec(archive.as_uri(), f"md5:{wrong}"))
    home = tmp_path / "home"
    with pytest.raises(ChecksumError) as err:
        download_dataset(NAME, home)
    msg = str(err.value)
    assert "tiny.zip" in msg and f"md5:{wrong}" in msg and f"md5:{digest}" in msg
    assert _leftovers(home) == []


def test_official_ml100k_checksum_is_enforced(tmp_path: Path, monkeypatch) -> None:
    """The real registry entry with a fake archive served by a monkeypatched opener."""
    fake = make_zip(TINY_FILES, "ml-100k")
    seen: list[str] = []

    def opener(url: str, timeout: float) -> _Response:
        seen.append(url)
        return _Response(fake)

    monkeypatch.setattr(dl, "urlopen", opener)
    home = tmp_path / "home"
    with pytest.raises(ChecksumError) as err:
        load_dataset("ml-100k", home)
    msg = str(err.value)
    assert "ml-100k.zip" in msg
    assert "md5:0e33842e24a9c977be4e0107933c0723" in msg and f"md5:{md5(fake)}" in msg
    assert seen == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert _leftovers(home) == []


def test_truncated_archive_is_a_data_error_naming_it(tmp_path: Path, tiny_zip, registered) -> None:
    archive, _ = tiny_zip
    cut = tmp_path / "cut.zip"
    cut.write_bytes(archive.read_bytes()[:-40])  # the central directory is gone
    registered(_spec(cut.as_uri(), None))
    home = tmp_path / "home"
    with pytest.raises(DataError, match=r"tiny\.zip.*(corrupt|truncated)"):
        download_dataset(NAME, home, allow_unverified=True)
    assert _leftovers(home) == []
    # with a pinned checksum the same truncation is caught before extraction
    registered(_spec(cut.as_uri(), f"md5:{md5(archive.read_bytes())}"))
    with pytest.raises(ChecksumError, match=r"tiny\.zip"):
        download_dataset(NAME, home)
    assert _leftovers(home) == []


def test_short_read_against_content_length(tmp_path: Path, tiny_zip, registered, monkeypatch) -> None:
    archive, digest = tiny_zip
    data = archive.read_bytes()
    monkeypatch.setattr(dl, "urlopen", lambda url, timeout: _Response(data[:100], length=len(data)))
    registered(_spec("https://example.invalid/tiny.zip", f"md5:{digest}"))
    home = tmp_path / "home"
    with pytest.raises(DataError, match=rf"truncated download of tiny\.zip: got 100 of {len(data)} bytes"):
        download_dataset(NAME, home)
    assert _leftovers(home) == []


def test_unconfirmed_checksum_refused_unless_allowed(tmp_path: Path, tiny_zip, registered) -> None:
    archive, _ = tiny_zip
    registered(_spec(archive.as_uri(), None))
    home = tmp_path / "home"
    with pytest.raises(DataError, match=r"no confirmed checksum for tiny\.zip"):
        download_dataset(NAME, home)
    assert _leftovers(home) == []
    download_dataset(NAME, home, allow_unverified=True)
    stamp = _stamp(home / NAME)
    assert stamp["sources"]["tiny.zip"]["verified"] is False
    assert verify_dataset(NAME, home).ok


def test_extracted_file_not_matching_its_pin_installs_nothing(tmp_path: Path, registered) -> None:
    files = dict(TINY_FILES)
    files["u.data"] = files["u.data"] + b"4\t10\t2\t881250999\n"
    data = make_zip(files)
    archive = tmp_path / "tiny.zip"
    archive.write_bytes(data)
    registered(_spec(archive.as_uri(), f"md5:{md5(data)}"))  # archive ok, but u.data differs from its pin
    home = tmp_path / "home"
    with pytest.raises(ChecksumError, match=r"u\.data.*expected md5:" + md5(TINY_FILES["u.data"])):
        download_dataset(NAME, home)
    assert _leftovers(home) == []


def test_connection_errors_try_mirrors_then_fail_clearly(tmp_path: Path, tiny_zip, registered) -> None:
    archive, digest = tiny_zip
    spec = _spec("file:///nonexistent/tiny.zip", f"md5:{digest}")
    spec = replace(spec, archives=(replace(spec.archives[0], mirrors=(archive.as_uri(),)),))
    registered(spec)
    home = tmp_path / "home"
    assert download_dataset(NAME, home) == home / NAME
    unregister_dataset(NAME)
    registered(_spec("file:///nonexistent/tiny.zip", f"md5:{digest}"))
    with pytest.raises(DataError, match=r"could not download tiny\.zip"):
        download_dataset(NAME, tmp_path / "other")
    assert _leftovers(tmp_path / "other") == []


def test_force_replaces_a_damaged_copy(tmp_path: Path, tiny_zip, registered) -> None:
    archive, digest = tiny_zip
    registered(_spec(archive.as_uri(), f"md5:{digest}"))
    home = tmp_path / "home"
    download_dataset(NAME, home)
    (home / NAME / "u.item").write_bytes(b"damaged")
    with pytest.raises(ChecksumError, match=r"u\.item"):
        load_dataset(NAME, home)
    with pytest.raises(ChecksumError, match="--force"):
        download_dataset(NAME, home)  # a present copy is verified, not silently replaced
    download_dataset(NAME, home, force=True)
    assert load_dataset(NAME, home).n_items == 3
    assert _leftovers(home) == [NAME]


def test_unpinned_files_from_a_verified_archive_are_tracked(tmp_path: Path, tiny_zip, registered) -> None:
    archive, digest = tiny_zip
    registered(_spec(archive.as_uri(), f"md5:{digest}", pins=False))
    home = tmp_path / "home"
    ds = load_dataset(NAME, home)
    assert ds.meta["verification"]["u.data"] == "archive"
    (home / NAME / "u.data").write_bytes(TINY_FILES["u.data"] + b"9\t9\t9\t9\n")
    with pytest.raises(ChecksumError, match="recorded when it was downloaded"):
        load_dataset(NAME, home)


def test_gzip_file_archives_and_optional_metadata(tmp_path: Path, monkeypatch) -> None:
    """An Amazon-style dataset: a .json.gz kept as is, an optional metadata file that 404s."""
    reviews = b"".join(
        json.dumps({"reviewerID": f"U{u}", "asin": f"B{i}", "overall": 4.0, "unixReviewTime": 1_400_000_000 + u,
                    "reviewText": "fine", "summary": "ok"}).encode() + b"\n"
        for u in range(3) for i in range(2)
    )  # fmt: skip
    blob = gzip.compress(reviews)
    base = dataset_info("amazon-2018-software")
    spec = replace(
        base,
        name="test-amazon",
        archives=(
            replace(base.archives[0], url="https://example.invalid/r.json.gz", mirrors=()),
            replace(base.archives[1], url="https://example.invalid/meta.json.gz", mirrors=()),
        ),
    )

    def opener(url: str, timeout: float) -> _Response:
        if "meta" in url:
            import urllib.error

            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)  # type: ignore[arg-type]
        return _Response(blob)

    monkeypatch.setattr(dl, "urlopen", opener)
    register_dataset(spec)
    try:
        home = tmp_path / "home"
        with pytest.raises(DataError, match="no confirmed checksum"):
            load_dataset("test-amazon", home)
        ds = load_dataset("test-amazon", home, allow_unverified=True)
        assert (ds.n_interactions, ds.n_users, ds.n_items) == (6, 3, 2)
        assert ds.reviews is not None and ds.reviews["text"].to_list()[0] == "ok. fine"
        assert sorted(p.name for p in (home / "test-amazon").iterdir()) == ["Software_5.json.gz"]
        stamp = _stamp(home / "test-amazon", "test-amazon")
        assert "skipped" in stamp["sources"]["meta_Software.json.gz"]
        # a truncated gzip download is refused before installation
        monkeypatch.setattr(dl, "urlopen", lambda url, timeout: _Response(blob[:-10]))
        with pytest.raises(DataError, match=r"Software_5\.json\.gz.*(corrupt|truncated)"):
            download_dataset("test-amazon", tmp_path / "h2", allow_unverified=True)
        assert _leftovers(tmp_path / "h2") == []
    finally:
        unregister_dataset("test-amazon")


def test_zip_member_outside_folder_is_refused(tmp_path: Path) -> None:
    data = make_zip({"../evil.txt": b"x", "ok.txt": b"y"}, folder=None)
    archive = tmp_path / "evil.zip"
    archive.write_bytes(data)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DataError, match="outside the dataset folder"):
        dl.extract_zip(archive, dest)
    assert not (tmp_path / "evil.txt").exists()


def test_checksum_parsing() -> None:
    assert verify.parse_checksum("md5:ABC") == ("md5", "abc")
    assert verify.parse_checksum("0" * 64) == ("sha256", "0" * 64)
    with pytest.raises(ValueError, match="unsupported algorithm"):
        verify.parse_checksum("crc32:1234")


def test_incomplete_folder_is_not_overwritten_and_empty_one_is_used(
    tmp_path: Path, tiny_zip, registered
) -> None:
    archive, digest = tiny_zip
    registered(_spec(archive.as_uri(), f"md5:{digest}"))
    home = tmp_path / "home"
    (home / NAME).mkdir(parents=True)
    (home / NAME / "u.data").write_bytes(TINY_FILES["u.data"])
    with pytest.raises(DataError, match=r"exists but is incomplete \(missing u\.item\)"):
        load_dataset(NAME, home)
    assert sorted(p.name for p in (home / NAME).iterdir()) == ["u.data"]
    (home / NAME / "u.data").unlink()  # an empty folder counts as absent
    assert load_dataset(NAME, home).n_interactions == 4


def test_stamp_is_not_rewritten_by_every_load(tmp_path: Path, tiny_zip, registered) -> None:
    archive, digest = tiny_zip
    registered(_spec(archive.as_uri(), f"md5:{digest}"))
    home = tmp_path / "home"
    load_dataset(NAME, home)
    stamp = verify.stamp_path(home / NAME, NAME)
    before = stamp.stat().st_mtime_ns
    load_dataset(NAME, home)
    assert stamp.stat().st_mtime_ns == before

"""``lmrec datasets list|info|download|verify`` through typer's CliRunner (in process)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.loaders import Archive, DatasetSpec, FileSpec, register_dataset, unregister_dataset

runner = CliRunner()
ENV = {"COLUMNS": "250"}
LOCAL = [
    "amazon-2014-musical-instruments",
    "amazon-2014-office",
    "hetrec2011-lastfm-2k",
    "ml-100k",
    "ml-100k-posters",
    "ml-latest-small",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMREC_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cli-cache"))
    monkeypatch.delenv("LMREC_DATA_HOME", raising=False)


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["datasets", *args], env=ENV)
    return result.exit_code, result.output


def test_list_shows_all_and_local(data_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run("list", "--data-dir", str(data_home))
    assert code == 0, out
    for name in ("ml-1m", "ml-32m", "amazon-2018-video-games", *LOCAL):
        assert name in out
    code, out = _run("list", "--local", "--data-dir", str(data_home))
    assert code == 0
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert sorted(rows) == LOCAL
    assert "6 dataset(s)" in out
    # LMREC_DATA_HOME is used when --data-dir is absent, and --data-dir overrides it
    monkeypatch.setenv("LMREC_DATA_HOME", str(tmp_path))
    code, out = _run("list", "--local")
    assert code == 0 and "0 dataset(s)" in out and str(tmp_path) in out
    code, out = _run("list", "--local", "--data-dir", str(data_home))
    assert "6 dataset(s)" in out


def test_info_counts_and_checksums(data_home: Path) -> None:
    code, out = _run("info", "ml-100k", "--data-dir", str(data_home))
    assert code == 0, out
    for expected in (
        "943",
        "1,682",
        "100,000",
        "6.3047%",
        "title, genres",
        "md5:6e47046882bad158b0efbb84cd5cb987",
    ):
        assert expected in out
    code, out = _run("info", "amazon-2014-musical-instruments", "--data-dir", str(data_home), "--json")
    assert code == 0, out
    info = json.loads(out)
    assert (info["users"], info["items"], info["interactions"], info["reviews"]) == (1429, 900, 10261, 10261)
    assert info["density"] == pytest.approx(10261 / (1429 * 900))
    assert info["archives"][0]["checksum"] is None
    code, out = _run("info", "ml-25m", "--data-dir", str(data_home))
    assert code == 0 and "not downloaded" in out and "md5:6b51fb2759a8657d3bfcbfc42b592ada" in out


def test_info_and_download_of_a_local_only_dataset(data_home: Path, tmp_path: Path) -> None:
    code, out = _run("info", "amazon-2014-office", "--data-dir", str(data_home), "--json")
    assert code == 0, out
    info = json.loads(out)
    assert (info["users"], info["items"], info["interactions"]) == (4_905, 2_420, 53_258)
    assert info["item_text_columns"] == ["title", "description", "categories", "brand"]
    assert info["checksums"]["items.tsv"] == "md5:4818c2d41a421dfa7cdd301524141fc6"
    assert info["archives"] == [] and "APAO" in info["local_only"]
    code, out = _run("info", "amazon-2014-office", "--data-dir", str(data_home))
    assert code == 0 and "4,905" in out and "local copy only" in out
    code, out = _run("download", "amazon-2014-office", "--data-dir", str(tmp_path))
    assert code == 2
    assert "cannot be downloaded" in out and "yuyq18/APAO" in out
    assert not (tmp_path / "amazon-2014-office").exists()


def test_verify_ok_and_mismatch(data_home: Path, tmp_path: Path) -> None:
    code, out = _run("verify", "ml-latest-small", "--data-dir", str(data_home))
    assert code == 0, out
    assert "OK (5 file(s) match" in out
    copy = tmp_path / "ml-latest-small"
    copy.mkdir()
    for name in ("ratings.csv", "movies.csv"):
        (copy / name).write_bytes((data_home / "ml-latest-small" / name).read_bytes())
    (copy / "tags.csv").write_bytes(b"userId,movieId,tag,timestamp\n")
    code, out = _run("verify", "ml-latest-small", "--data-dir", str(tmp_path))
    assert code == 2
    assert "mismatch" in out and "tags.csv" in out and "md5:1b2d21a7be1cc23d327b11155a4a6aea" in out


def test_download_existing_custom_and_unverified(data_home: Path, tmp_path: Path) -> None:
    code, out = _run("download", "ml-100k", "--data-dir", str(data_home))
    assert code == 0 and "nothing downloaded" in out
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n")
        zf.writestr("movies.csv", "movieId,title,genres\n1,A (1999),Drama\n")
    archive = tmp_path / "cli.zip"
    archive.write_bytes(buf.getvalue())
    spec = DatasetSpec(
        name="test-cli-ml", family="movielens", description="cli test", size="1 KB",
        archives=(Archive(archive.as_uri(), "cli.zip", None, "zip"),),
        files=(FileSpec("ratings.csv"), FileSpec("movies.csv")),
    )  # fmt: skip
    register_dataset(spec, overwrite=True)
    try:
        home = tmp_path / "home"
        code, out = _run("download", "test-cli-ml", "--data-dir", str(home))
        assert code == 2 and "no confirmed checksum for cli.zip" in out and "--no-verify" in out
        assert not (home / "test-cli-ml").exists()
        code, out = _run("download", "test-cli-ml", "--data-dir", str(home), "--no-verify")
        assert code == 0, out
        assert (home / "test-cli-ml" / "ratings.csv").exists()
        code, out = _run("info", "test-cli-ml", "--data-dir", str(home), "--json")
        assert json.loads(out)["interactions"] == 1
    finally:
        unregister_dataset("test-cli-ml")


def test_unknown_dataset_exits_2_with_suggestion() -> None:
    code, out = _run("info", "ml-100")
    assert code == 2
    assert "unknown dataset 'ml-100'" in out and "ml-100k" in out


@pytest.fixture()
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from lmrec.data.loaders import download as dl

    def refuse(url: str, timeout: float) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(dl, "urlopen", refuse)
    yield


@pytest.mark.usefixtures("_no_network")
def test_download_failure_is_reported(tmp_path: Path) -> None:
    code, out = _run("download", "ml-1m", "--data-dir", str(tmp_path))
    assert code == 2
    assert "could not download ml-1m.zip" in out and "network disabled" in out
    assert list(tmp_path.iterdir()) == []

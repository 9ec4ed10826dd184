"""The verification stamp lives in the user cache: loading never writes into a dataset folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmrec.data.loaders import load_dataset, local_status, verify

#: a user's own ml-1m copy: no pinned MD5s, so the hashes are recorded in the stamp
ML1M = {
    "ratings.dat": b"1::1193::5::978300760\n2::1193::4::978298413\n",
    "movies.dat": b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n",
}


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture()
def read_only_copy(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "home" / "ml-1m"
    folder.mkdir(parents=True)
    for name, data in ML1M.items():
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o444)
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.fixture()
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files hashed (a trusted stamp means none)."""
    seen: list[str] = []
    real = verify.file_digest

    def counting(path: Path, *args, **kwargs) -> str:
        seen.append(path.name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(verify, "file_digest", counting)
    return seen


def test_read_only_folder_loads_and_is_not_written(read_only_copy: Path, hashes: list[str]) -> None:
    assert not os.access(read_only_copy, os.W_OK) or os.geteuid() == 0  # root ignores the mode bits
    before = _listing(read_only_copy)
    ds = load_dataset("ml-1m", read_only_copy.parent, download=False)
    assert ds.n_interactions == 2
    assert _listing(read_only_copy) == before
    assert stat.S_IMODE(read_only_copy.stat().st_mode) == 0o555
    stamp = verify.stamp_path(read_only_copy, "ml-1m")
    assert stamp.is_file() and stamp.parent == verify.cache_home() / "verified"
    assert sorted(hashes) == ["movies.dat", "ratings.dat"]
    # the second load trusts the cached stamp (same size and mtime): nothing is hashed again
    hashes.clear()
    load_dataset("ml-1m", read_only_copy.parent, download=False)
    assert hashes == [] and local_status("ml-1m", read_only_copy.parent) == "unpinned"
    assert _listing(read_only_copy) == before


def test_unwritable_cache_is_harmless(
    read_only_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: list[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("LMREC_CACHE_HOME", str(blocker / "cache"))  # mkdir fails, even for root
    before = _listing(read_only_copy)
    for _ in range(2):
        assert load_dataset("ml-1m", read_only_copy.parent, download=False).n_interactions == 2
    assert _listing(read_only_copy) == before
    assert len(hashes) == 4  # nothing could be cached, so each load hashes again: slower, not broken


def test_stamp_left_in_the_folder_by_an_older_lmrec_is_still_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashes: list[str]
) -> None:
    folder = tmp_path / "home" / "ml-1m"
    folder.mkdir(parents=True)
    for name, data in ML1M.items():
        (folder / name).write_bytes(data)
    legacy = verify.Stamp(folder / verify.STAMP_NAME, sources={"ml-1m.zip": {"url": "https://example.org"}})
    for name in ML1M:
        legacy.record(name, folder / name, verify.file_digest(folder / name), "archive")
    legacy.save()
    hashes.clear()  # writing the old stamp hashed the files; loading must not
    monkeypatch.setenv("LMREC_CACHE_HOME", str(tmp_path / "fresh-cache"))
    before = _listing(folder)
    ds = load_dataset("ml-1m", folder.parent, download=False)
    assert hashes == []
    assert ds.meta["verification"] == {"ratings.dat": "archive", "movies.dat": "archive"}
    assert ds.meta["archives"] == {"ml-1m.zip": {"url": "https://example.org"}}
    assert _listing(folder) == before  # read, never rewritten


def test_cache_home_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMREC_CACHE_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert verify.cache_home() == tmp_path / "xdg" / "lmrec"
    a, b = verify.stamp_path(tmp_path / "a", "x"), verify.stamp_path(tmp_path / "b", "x")
    assert a != b and a.parent == b.parent == tmp_path / "xdg" / "lmrec" / "verified"

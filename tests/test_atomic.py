"""``lmrec._atomic``: a save never deletes what it did not write, and never leaves half a copy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lmrec import _atomic
from lmrec._atomic import (
    ARTIFACT_MARKER,
    atomic_directory,
    atomic_write_text,
    check_replaceable,
    is_artifact,
    replace_dir,
)
from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.models.popularity import Popularity


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def _write(tmp: Path, text: str = "new") -> None:
    (tmp / "data.txt").write_text(text)


@pytest.fixture()
def thesis(tmp_path: Path) -> Path:
    folder = tmp_path / "thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "thesis.tex").write_text("\\chapter{Results}")
    (folder / "chapters" / "one.tex").write_text("months of work")
    return folder


def test_folder_that_is_not_an_artifact_is_refused_and_left_untouched(tmp_path: Path, thesis: Path) -> None:
    before = _snapshot(thesis)
    with pytest.raises(LmrecError) as err, atomic_directory(thesis) as tmp:
        _write(tmp)
    msg = str(err.value)
    assert "\n" not in msg and str(thesis) in msg and "not an lmrec artifact" in msg
    assert "would be overwritten" in msg and "thesis.tex" in msg
    assert _snapshot(thesis) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"], "staging folder left behind"


def test_model_save_into_a_thesis_folder_refuses(tmp_path: Path, thesis: Path, checkerboard: Dataset) -> None:
    model = Popularity().fit(checkerboard)
    before = _snapshot(thesis)
    with pytest.raises(LmrecError, match="not an lmrec artifact"):
        model.save(thesis)
    assert _snapshot(thesis) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    # a previous model save may be overwritten, with nothing left beside it
    first = model.save(tmp_path / "model")
    assert is_artifact(first) and not (first / ARTIFACT_MARKER).exists()  # model.json is its manifest
    model.save(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "thesis"]
    assert Popularity.load(first).recommend([1], k=2).height == 2


def test_overwriting_a_previous_artifact_replaces_it(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        _write(tmp, "v1")
        (tmp / "only-in-v1.txt").write_text("x")
    assert (target / ARTIFACT_MARKER).is_file() and is_artifact(target)
    with atomic_directory(target) as tmp:
        _write(tmp, "v2")
    assert sorted(p.name for p in target.iterdir()) == [ARTIFACT_MARKER, "data.txt"]
    assert (target / "data.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "backup or staging folder left behind"


def test_empty_folder_and_missing_folder_are_fine(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for name in ("empty", "new"):
        with atomic_directory(tmp_path / name) as tmp:
            _write(tmp)
        assert (tmp_path / name / "data.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "new"]


def test_existing_file_is_refused_not_renamed_aside(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.write_text("my notes")
    with (
        pytest.raises(LmrecError, match=r"is a file, not a folder, and would be overwritten"),
        atomic_directory(target) as tmp,
    ):
        _write(tmp)
    assert target.read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no .old-<pid> copy may be left"


@pytest.mark.parametrize("where", [".", "..", ""])
def test_current_directory_and_its_parents_are_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    work = tmp_path / "project" / "run"
    work.mkdir(parents=True)
    # even an lmrec artifact is refused when the process stands inside it
    (tmp_path / "project" / ARTIFACT_MARKER).write_text("{}")
    (work / ARTIFACT_MARKER).write_text("{}")
    monkeypatch.chdir(work)
    with pytest.raises(LmrecError, match="current directory"):
        check_replaceable(where)
    assert (work / ARTIFACT_MARKER).exists()


def test_failure_while_writing_keeps_the_old_artifact(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        _write(tmp, "v1")
    before = _snapshot(target)
    with pytest.raises(OSError, match="disk full"), atomic_directory(target) as tmp:
        _write(tmp, "half")
        raise OSError("disk full")
    assert _snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_during_the_swap_restores_the_old_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        _write(tmp, "v1")
    before = _snapshot(target)
    real = os.replace
    calls: list[tuple[str, str]] = []

    def flaky(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append((os.fspath(src), os.fspath(dst)))
        if len(calls) == 2:  # old copy moved aside, new copy about to move in
            raise OSError("interrupted")
        real(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", flaky)
    with pytest.raises(OSError, match="interrupted"), atomic_directory(target) as tmp:
        _write(tmp, "v2")
    assert ".old-" in calls[0][1]
    assert _snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "backup or staging folder left behind"


def test_replace_dir_checks_its_target_too(tmp_path: Path, thesis: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / ARTIFACT_MARKER).write_text("{}")
    before = _snapshot(thesis)
    with pytest.raises(LmrecError, match="not an lmrec artifact"):
        replace_dir(src, thesis)
    assert _snapshot(thesis) == before and src.exists()


def test_manifest_from_an_older_lmrec_counts_but_a_foreign_one_does_not(tmp_path: Path) -> None:
    old = tmp_path / "old-model"
    old.mkdir()
    (old / "model.json").write_text(json.dumps({"format_version": 1, "lmrec_version": "0.1.0"}))
    assert is_artifact(old)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.json").write_text(json.dumps({"architectures": ["Bert"]}))
    assert not is_artifact(foreign)
    with pytest.raises(LmrecError, match="not an lmrec artifact"):
        check_replaceable(foreign)


def test_atomic_write_refuses_to_replace_a_folder(tmp_path: Path) -> None:
    (tmp_path / "report.json").mkdir()
    with pytest.raises(LmrecError, match="a folder of that name exists"):
        atomic_write_text(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_artifact_file_gets_one_mode(tmp_path: Path, checkerboard: Dataset, umask: int) -> None:
    """Files from mkstemp (0600) and files from open() (0644) used to sit side by side."""
    from lmrec.experiment import save_catalog

    old = os.umask(umask)
    try:
        assert _atomic.file_mode() == 0o666 & ~umask and _atomic.dir_mode() == 0o777 & ~umask
        folder = Popularity().fit(checkerboard).save(tmp_path / "pop")
        save_catalog(checkerboard, folder)  # atomic_write: a mkstemp file moved into place
        atomic_write_text(tmp_path / "report" / "notes.md", "x")
        with atomic_directory(tmp_path / "nested") as staging:
            (staging / "sub").mkdir()
            (staging / "sub" / "a.txt").write_text("a")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    folders = [
        folder,
        tmp_path / "nested",
        *(p for p in tmp_path.rglob("*") if p.is_dir() and p != tmp_path / "report"),
    ]
    assert {p.name for p in files} >= {
        "model.json",
        "state.safetensors",
        "vocab.json",
        "catalog.parquet",
        "notes.md",
        "a.txt",
    }
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
    dir_modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in folders}
    assert set(dir_modes.values()) == {oct(0o777 & ~umask)}, dir_modes

"""Fixtures for the loader tests: an isolated verification cache and tiny MovieLens-style archives."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: a MovieLens-100K-shaped dataset small enough to build inside a test
TINY_FILES: dict[str, bytes] = {
    "u.data": b"1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t891717742\n3\t30\t1\t878887116\n",
    "u.item": (
        "10|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|0|0|0\n"
        "20|Toy Story (1995)|01-Jan-1995||http://y|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
        "30|unknown|||http://z|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    ).encode("latin-1"),
    "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n",
}


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def make_zip(files: dict[str, bytes], folder: str | None = "tiny") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{folder}/{name}" if folder else name, data)
    return buf.getvalue()


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Verification stamps for read-only folders go to a per-session cache, never to ~/.cache.

    Session-scoped (not ``monkeypatch``) so that it is in place before module-scoped fixtures load data.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMREC_CACHE_HOME", str(tmp_path_factory.mktemp("lmrec-cache")))
        mp.delenv("LMREC_OFFLINE", raising=False)
        yield


@pytest.fixture()
def tiny_zip(tmp_path: Path) -> tuple[Path, str]:
    """A zip of TINY_FILES under a top-level folder (as GroupLens zips are), and its md5."""
    data = make_zip(TINY_FILES)
    path = tmp_path / "archives" / "tiny.zip"
    path.parent.mkdir()
    path.write_bytes(data)
    return path, md5(data)

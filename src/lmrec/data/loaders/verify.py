"""Checksums: are the files of a local copy the ones the registry (or the download) vouched for?

Two levels of checksums:

* **archive** checksums (``Archive.checksum``) are the values the publishers give (GroupLens
  ``.md5`` files) or that independent public code agrees on; an archive whose checksum could not be
  confirmed has ``checksum=None`` and is only downloaded with ``allow_unverified=True``
  (``--no-verify``). ``Archive.checksum_note`` says where each value was confirmed. They are checked
  when an archive is downloaded (:mod:`.download`);
* **per-file** MD5s (``FileSpec.md5``) pin the extracted files, so a local copy that was never
  downloaded by lmrec (e.g. a shared folder) can be verified too. They come from the PROVENANCE.md
  of the reference copies. Files without a pinned MD5 are hashed once and the hash is recorded in
  the dataset's ``meta["checksums"]`` so evaluation reports can cite exactly what was used.

Checksums are written ``"md5:<hex>"`` or ``"sha256:<hex>"`` (the algorithm travels with the value,
as in pooch), because GroupLens publishes MD5s while other sources publish SHA-256.

A file whose checksum was already verified is not hashed again: a small JSON stamp records
``size``, ``mtime_ns`` and MD5 per file, and a file whose size and mtime still match is trusted.
The stamp lives in the user's cache (:func:`stamp_path`), never in the dataset folder, which may be
read-only or shared; failing to write it is harmless.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lmrec._atomic import atomic_write_text
from lmrec.data.loaders._read import open_maybe_gzip
from lmrec.data.loaders.locate import dataset_dir, missing_files
from lmrec.data.loaders.own import MANIFEST as OWN_MANIFEST
from lmrec.data.loaders.registry import dataset_info
from lmrec.errors import ChecksumError, DataError, LmrecError

log = logging.getLogger("lmrec.data")

#: name of the verification stamp older versions wrote inside a dataset folder (now only read:
#: stamps live under :func:`cache_home`)
STAMP_NAME = ".lmrec-verified.json"
_STAMP_VERSION = 1
_CHUNK = 1 << 20
#: files larger than this show a progress bar while they are hashed
_PROGRESS_MIN_BYTES = 64 << 20
_ALGORITHMS = ("md5", "sha256", "sha1")


# --------------------------------------------------------------------------------------- checksums
def parse_checksum(value: str) -> tuple[str, str]:
    """Split ``"md5:<hex>"`` into ``("md5", "<hex>")``; a bare 32-hex string is taken as MD5."""
    if ":" in value:
        algo, digest = value.split(":", 1)
    elif len(value) == 32:
        algo, digest = "md5", value
    elif len(value) == 64:
        algo, digest = "sha256", value
    else:
        raise ValueError(f"checksum {value!r}: write it as 'md5:<hex>' or 'sha256:<hex>'")
    algo = algo.lower()
    if algo not in _ALGORITHMS:
        raise ValueError(f"checksum {value!r}: unsupported algorithm {algo!r} (use one of {_ALGORITHMS})")
    return algo, digest.lower()


def new_hash(algo: str) -> Any:
    # usedforsecurity=False: these are integrity checks against published values, and FIPS builds
    # of OpenSSL refuse MD5 otherwise.
    return hashlib.new(algo, usedforsecurity=False)


def progress_bar(total: int | None, desc: str, enabled: bool | None) -> Any:
    """A tqdm bar on stderr; ``enabled=None`` shows it only on a terminal."""
    from tqdm import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=disable, leave=False
    )


def file_digest(path: Path, algo: str = "md5", *, content: bool = False, progress: bool | None = None) -> str:
    """Hex digest of a file; with ``content=True`` the digest of its gzip-decompressed content.

    Hashing the decompressed content lets one pinned checksum cover both ``x.json.gz`` and ``x.json``
    (and any re-compression of the same bytes). A truncated or corrupt gzip stream raises
    :class:`DataError` naming the file.
    """
    h = new_hash(algo)
    size = path.stat().st_size
    show = progress if progress is not None else (None if size >= _PROGRESS_MIN_BYTES else False)
    try:
        opener = open_maybe_gzip(path) if content else path.open("rb")
        with opener as fh, progress_bar(size if not content else None, f"hashing {path.name}", show) as bar:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                bar.update(len(chunk))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"corrupt or truncated gzip data ({exc})", source=str(path)) from exc
    return h.hexdigest()


# ------------------------------------------------------------------------------- verification stamp
def cache_home() -> Path:
    """Where lmrec keeps small caches: ``$LMREC_CACHE_HOME``, else ``$XDG_CACHE_HOME/lmrec``, else
    ``~/.cache/lmrec``."""
    env = os.environ.get("LMREC_CACHE_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lmrec"


def stamp_path(folder: Path, name: str) -> Path:
    """The verification stamp of a dataset folder, in the user's cache: never inside the folder.

    A dataset folder may be read-only or shared by several users, so loading it writes nothing
    there. The stamp is keyed by the folder's absolute path (``verified/<name>-<hash>.json``); its
    entries are keyed by file size and mtime, so a stale stamp only costs a re-hash.
    """
    folder = folder.resolve()
    key = hashlib.sha1(str(folder).encode(), usedforsecurity=False).hexdigest()[:16]
    return cache_home() / "verified" / f"{name}-{key}.json"


def load_stamp(folder: Path, name: str) -> Stamp:
    """The folder's stamp from the cache, merged over a stamp an older lmrec left in the folder.

    The older in-folder stamp (:data:`STAMP_NAME`) is read, never written: it still vouches for
    files extracted from a verified archive and records where they were downloaded from.
    """
    stamp = Stamp.load(stamp_path(folder, name))
    legacy = folder / STAMP_NAME
    if legacy.is_file():
        old = Stamp.load(legacy)
        stamp.entries = {**old.entries, **stamp.entries}
        stamp.sources = stamp.sources or old.sources
    return stamp


@dataclass
class StampEntry:
    size: int
    mtime_ns: int
    md5: str
    #: "pinned" (matched a checksum in the registry), "archive" (extracted from a verified archive)
    #: or "observed" (no reference value; recorded so reports can still cite it)
    origin: str


class Stamp:
    """Per-file ``size``/``mtime_ns``/md5 records for one dataset folder, persisted as JSON."""

    def __init__(
        self, path: Path, entries: dict[str, StampEntry] | None = None, sources: dict[str, Any] | None = None
    ):
        self.path = path
        self.entries = entries or {}
        self.sources = sources or {}
        #: whether anything changed since loading (an unchanged stamp is not rewritten on every load)
        self.dirty = False

    @classmethod
    def load(cls, path: Path) -> Stamp:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != _STAMP_VERSION:
                return cls(path)
            entries = {k: StampEntry(**v) for k, v in raw.get("files", {}).items()}
            return cls(path, entries, raw.get("sources", {}))
        except (OSError, ValueError, TypeError):
            # A missing or damaged stamp only costs a re-hash.
            return cls(path)

    def lookup(self, rel: str, file: Path) -> StampEntry | None:
        entry = self.entries.get(rel)
        if entry is None:
            return None
        st = file.stat()
        if st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns:
            return entry
        return None

    def record(self, rel: str, file: Path, md5: str, origin: str) -> None:
        st = file.stat()
        entry = StampEntry(size=st.st_size, mtime_ns=st.st_mtime_ns, md5=md5, origin=origin)
        if self.entries.get(rel) != entry:
            self.entries[rel] = entry
            self.dirty = True

    def save(self, *, only_if_dirty: bool = False) -> None:
        """Write atomically; a stamp that cannot be written is skipped (it is only a cache)."""
        if only_if_dirty and not self.dirty:
            return
        payload = {
            "version": _STAMP_VERSION,
            "files": {k: vars(v) for k, v in sorted(self.entries.items())},
            "sources": self.sources,
        }
        try:
            atomic_write_text(self.path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
        except (OSError, LmrecError) as exc:  # read-only home, full disk: the next load re-hashes
            log.debug("verification stamp %s not written: %s", self.path, exc)
            return
        self.dirty = False


# ---------------------------------------------------------------------------------------- verifying
def local_status(name: str, data_dir: str | Path | None = None) -> str:
    """The local copy's state, from the verification stamp and file metadata only (never hashes):

    * ``"missing"``: a required file is absent;
    * ``"present"``: not verified yet, or changed since the last check;
    * ``"verified"``: every file the loader reads matched its pinned or download-time checksum;
    * ``"unpinned"``: checked, but some file has no reference checksum to compare with (its hash is
      recorded in ``meta["checksums"]`` all the same).
    """
    spec = dataset_info(name, data_dir)
    folder = dataset_dir(name, data_dir)
    if missing_files(name, data_dir):
        return "missing"
    stamp = load_stamp(folder, name)
    status = "verified"
    for f in spec.files:
        path = f.find(folder)
        if path is None or not f.used:
            continue
        entry = stamp.lookup(path.name, path)
        if entry is None or (f.md5 is not None and entry.md5 != f.md5):
            return "present"
        if entry.origin == "observed":
            status = "unpinned"
    return status


@dataclass(frozen=True)
class FileCheck:
    name: str
    #: ok (matches its reference), unpinned (no reference; hash recorded), mismatch, missing
    status: Literal["ok", "unpinned", "mismatch", "missing"]
    expected: str | None
    actual: str | None
    #: what the reference is: "pinned" (registry), "archive" (recorded when extracted from a verified
    #: archive), "observed" (none) or "" for missing files
    origin: str
    required: bool = True


def _is_local_only(name: str) -> bool:
    try:
        return bool(dataset_info(name).local_only)
    except DataError:  # unregistered since the check ran
        return False


@dataclass(frozen=True)
class VerifyReport:
    name: str
    folder: Path
    checks: tuple[FileCheck, ...]

    @property
    def ok(self) -> bool:
        return all(
            c.status in ("ok", "unpinned") or (c.status == "missing" and not c.required) for c in self.checks
        )

    def checksums(self) -> dict[str, str]:
        """``{file: "md5:<hex>"}`` for every file checked and present."""
        return {c.name: f"md5:{c.actual}" for c in self.checks if c.actual}

    def raise_for_problems(self) -> None:
        for c in self.checks:
            if c.status == "missing" and c.required:
                raise DataError(
                    f"missing file {c.name} in the local copy of {self.name} at {self.folder}",
                    source=str(self.folder / c.name),
                )
            if c.status == "mismatch":
                what = "pinned" if c.origin == "pinned" else "recorded when it was downloaded"
                if (self.folder / OWN_MANIFEST).is_file():
                    fix = f"add it again: `lmrec datasets add {self.name} ... --force`"
                elif _is_local_only(self.name):
                    fix = "replace it with the copy PROVENANCE.md describes; it cannot be downloaded"
                else:
                    fix = f"replace it with `lmrec datasets download {self.name} --force`"
                raise ChecksumError(
                    f"checksum mismatch for {c.name} in {self.name}: expected md5:{c.expected} ({what}), "
                    f"got md5:{c.actual}; the local copy at {self.folder} is damaged or a different version "
                    f"({fix})",
                    source=str(self.folder / c.name),
                )


def verify_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    full: bool = True,
    scope: Literal["all", "used"] = "all",
    raise_on_error: bool = True,
    progress: bool | None = None,
) -> VerifyReport:
    """Check the local copy's files against their pinned (or download-time) MD5s.

    ``full=True`` re-hashes every file; ``full=False`` trusts files whose size and mtime match the
    stamp from an earlier verification, so loads stay fast. ``scope="used"`` limits the check to
    files the loader reads. A mismatch raises :class:`ChecksumError` naming the file and both
    hashes (unless ``raise_on_error=False``: then the report says so).
    """
    spec = dataset_info(name, data_dir)
    folder = dataset_dir(name, data_dir)
    stamp = load_stamp(folder, name)
    checks: list[FileCheck] = []
    covered: set[str] = set()
    for f in spec.files:
        if scope == "used" and not f.used:
            continue
        path = f.find(folder)
        covered.update(f.candidates())
        if path is None:
            checks.append(FileCheck(f.name, "missing", f.md5, None, "", f.required))
            continue
        checks.append(_check_file(path, path.name, f.md5, f.content, stamp, full, progress, f.required))
    if scope == "all":
        # files recorded when extracted from a verified archive but not listed in the spec
        for rel, entry in sorted(stamp.entries.items()):
            path = folder / rel
            if rel in covered or entry.origin != "archive":
                continue
            if not path.is_file():
                checks.append(FileCheck(rel, "missing", entry.md5, None, "archive", False))
                continue
            checks.append(_check_file(path, rel, None, False, stamp, full, progress, False))
    stamp.save(only_if_dirty=True)
    report = VerifyReport(name=name, folder=folder, checks=tuple(checks))
    if raise_on_error:
        report.raise_for_problems()
    return report


def _check_file(
    path: Path,
    rel: str,
    pinned: str | None,
    content: bool,
    stamp: Stamp,
    full: bool,
    progress: bool | None,
    required: bool,
) -> FileCheck:
    previous = stamp.entries.get(rel)
    fresh = None if full else stamp.lookup(rel, path)
    actual = fresh.md5 if fresh is not None else file_digest(path, "md5", content=content, progress=progress)
    if pinned is not None:
        expected, origin = pinned, "pinned"
    elif previous is not None and previous.origin == "archive":
        expected, origin = previous.md5, "archive"
    else:
        expected, origin = None, "observed"
    if expected is None:
        status: Literal["ok", "unpinned", "mismatch"] = "unpinned"
    else:
        status = "ok" if actual == expected else "mismatch"
    if status != "mismatch":
        stamp.record(rel, path, actual, origin)
    return FileCheck(rel, status, expected, actual, origin, required)


__all__ = [
    "STAMP_NAME",
    "FileCheck",
    "Stamp",
    "StampEntry",
    "VerifyReport",
    "cache_home",
    "file_digest",
    "load_stamp",
    "local_status",
    "new_hash",
    "parse_checksum",
    "progress_bar",
    "stamp_path",
    "verify_dataset",
]

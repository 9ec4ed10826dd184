"""Fetching, checksumming and installing dataset files, with nothing half-written left behind.

The rules every function here follows:

* a download goes to a temporary file inside a temporary folder next to its final place (same file
  system, so the final ``rename`` is atomic); it is hashed while it streams in, compared with the
  pinned checksum, and only then extracted, again inside the temporary folder;
* the temporary folder becomes the dataset folder with one ``rename``; any error on the way removes
  the temporary folder, so a crash or a bad archive never leaves a dataset folder that looks complete;
* a file whose checksum was already verified is not hashed again: a small JSON stamp records
  ``size``, ``mtime_ns`` and digest per file, and a file whose size and mtime still match is trusted.
  The stamp lives in the user's cache (:func:`stamp_path`), never in the dataset folder, which may
  be read-only or shared; failing to write it is harmless.

Checksums are written ``"md5:<hex>"`` or ``"sha256:<hex>"`` (the algorithm travels with the value,
as in pooch), because GroupLens publishes MD5s while other sources publish SHA-256.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lmrec._atomic import atomic_write_text
from lmrec.errors import ChecksumError, DataError, LmrecError

log = logging.getLogger("lmrec.data")

#: name of the verification stamp older versions wrote inside a dataset folder (now only read:
#: stamps live under :func:`cache_home`)
STAMP_NAME = ".lmrec-verified.json"
_STAMP_VERSION = 1
_CHUNK = 1 << 20
#: files larger than this show a progress bar while they are hashed
_PROGRESS_MIN_BYTES = 64 << 20
_USER_AGENT = "lmrec-dataset-loader/0.1 (+https://github.com/lmrec)"
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


def _new_hash(algo: str) -> Any:
    # usedforsecurity=False: these are integrity checks against published values, and FIPS builds
    # of OpenSSL refuse MD5 otherwise.
    return hashlib.new(algo, usedforsecurity=False)


def _progress(total: int | None, desc: str, enabled: bool | None) -> Any:
    """A tqdm bar on stderr; ``enabled=None`` shows it only on a terminal."""
    from tqdm import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=disable, leave=False
    )


@contextlib.contextmanager
def open_maybe_gzip(path: Path) -> Iterator[IO[bytes] | gzip.GzipFile]:
    """Open ``path`` for binary reading, transparently decompressing gzip (detected by magic bytes)."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            yield fh
    else:
        with path.open("rb") as fh:
            yield fh


def file_digest(path: Path, algo: str = "md5", *, content: bool = False, progress: bool | None = None) -> str:
    """Hex digest of a file; with ``content=True`` the digest of its gzip-decompressed content.

    Hashing the decompressed content lets one pinned checksum cover both ``x.json.gz`` and ``x.json``
    (and any re-compression of the same bytes). A truncated or corrupt gzip stream raises
    :class:`DataError` naming the file.
    """
    h = _new_hash(algo)
    size = path.stat().st_size
    show = progress if progress is not None else (None if size >= _PROGRESS_MIN_BYTES else False)
    try:
        opener = open_maybe_gzip(path) if content else path.open("rb")
        with opener as fh, _progress(size if not content else None, f"hashing {path.name}", show) as bar:
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


# ------------------------------------------------------------------------------------------ fetching
def urlopen(url: str, timeout: float) -> Any:
    """Open ``url`` (http, https or file); a seam that tests replace with a local opener."""
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(req, timeout=timeout)


@dataclass(frozen=True)
class Fetched:
    path: Path
    url: str
    #: digests computed while streaming: {"md5": ..., "sha256": ...}
    digests: dict[str, str]
    verified: bool


def fetch(
    urls: Sequence[str],
    dest: Path,
    *,
    checksum: str | None,
    allow_unverified: bool = False,
    progress: bool | None = None,
    timeout: float = 60.0,
    opener: Callable[[str, float], Any] | None = None,
) -> Fetched:
    """Download the first reachable of ``urls`` to ``dest`` and verify it against ``checksum``.

    ``dest`` should sit in a temporary folder (see :func:`staging`): on any failure it is deleted.
    A response shorter than its ``Content-Length`` raises :class:`DataError` (truncated download);
    a checksum mismatch raises :class:`ChecksumError` naming the file and both digests. Mirrors are
    tried in order only for connection errors, never after a mismatch.
    """
    if checksum is None and not allow_unverified:
        raise DataError(
            f"no pinned checksum for {dest.name}: refusing an unverified download "
            "(pass allow_unverified=True, or --no-verify on the command line, to accept it)",
            source=urls[0] if urls else None,
        )
    algo, expected = parse_checksum(checksum) if checksum else (None, None)
    open_url = opener or urlopen
    errors: list[str] = []
    for url in urls:
        try:
            response = open_url(url, timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        try:
            digests = _stream_to(response, dest, url, progress)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise
        finally:
            with contextlib.suppress(Exception):
                response.close()
        if algo is not None and digests[algo] != expected:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise ChecksumError(
                f"checksum mismatch for {dest.name} downloaded from {url}: expected {algo}:{expected}, "
                f"got {algo}:{digests[algo]} (the download was deleted)",
                source=dest.name,
            )
        return Fetched(path=dest, url=url, digests=digests, verified=algo is not None)
    raise DataError(
        f"could not download {dest.name}: "
        + "; ".join(errors)
        + " (no network? put the files in the dataset folder by hand, then run `lmrec datasets verify`)",
        source=urls[0] if urls else None,
    )


def _stream_to(response: Any, dest: Path, url: str, progress: bool | None) -> dict[str, str]:
    hashes = {"md5": _new_hash("md5"), "sha256": _new_hash("sha256")}
    length_header = None
    with contextlib.suppress(Exception):
        length_header = response.headers.get("Content-Length")
    total = int(length_header) if length_header and str(length_header).isdigit() else None
    got = 0
    with dest.open("wb") as out, _progress(total, dest.name, progress) as bar:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, urllib.error.URLError) as exc:  # connection reset mid-way
                raise DataError(
                    f"download of {dest.name} failed after {got} bytes: {exc}", source=url
                ) from exc
            if not chunk:
                break
            out.write(chunk)
            for h in hashes.values():
                h.update(chunk)
            got += len(chunk)
            bar.update(len(chunk))
    if total is not None and got != total:
        raise DataError(f"truncated download of {dest.name}: got {got} of {total} bytes", source=url)
    return {k: h.hexdigest() for k, h in hashes.items()}


# ----------------------------------------------------------------------------------------- staging
@contextlib.contextmanager
def staging(home: Path, name: str) -> Iterator[Path]:
    """A temporary folder inside ``home`` that is removed on exit unless it was renamed away."""
    home.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=home))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def install(staged: Path, final: Path, *, replace: bool = False) -> Path:
    """Move a complete staged folder into place with one rename.

    With ``replace`` an existing folder is first renamed aside and deleted afterwards, so readers
    never see a mix of old and new files. Without it an existing folder wins (another process may
    have finished the same download first) and the staged copy is discarded by :func:`staging`.
    """
    if final.exists():
        if not replace:
            return final
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, old)
        try:
            os.rename(staged, final)
        except BaseException:
            os.rename(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return final
    try:
        os.rename(staged, final)
    except OSError:
        if not final.exists():
            raise
    return final


def extract_zip(archive: Path, dest: Path, *, source: str | None = None) -> list[str]:
    """Extract ``archive`` into ``dest``, dropping a single top-level folder (``ml-100k/u.data`` ->
    ``u.data``) and macOS resource forks. Returns the relative paths written.

    Every member's CRC is checked while extracting; a truncated or corrupt archive raises
    :class:`DataError` naming it. Members that would land outside ``dest`` are refused.
    """
    label = source or archive.name
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
            if not infos:
                raise DataError("zip archive is empty", source=label)
            tops = {i.filename.split("/", 1)[0] for i in infos}
            strip = len(tops) == 1 and all("/" in i.filename for i in infos)
            written: list[str] = []
            root = dest.resolve()
            for info in infos:
                rel = info.filename.split("/", 1)[1] if strip else info.filename
                target = (dest / rel).resolve()
                if root not in target.parents:
                    raise DataError(
                        f"zip member {info.filename!r} would be written outside the dataset folder",
                        source=label,
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                written.append(rel)
            return written
    except zipfile.BadZipFile as exc:
        raise DataError(f"corrupt or truncated zip archive ({exc})", source=label) from exc
    except (EOFError, zlib.error) as exc:
        raise DataError(f"corrupt or truncated zip archive ({exc})", source=label) from exc


def check_gzip(path: Path, *, source: str | None = None) -> None:
    """Read a gzip file to its end so that a truncated download fails now, not mid-load."""
    with path.open("rb") as probe:
        if probe.read(2) != b"\x1f\x8b":
            return
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(_CHUNK):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"corrupt or truncated gzip file ({exc})", source=source or path.name) from exc

"""Downloading a missing dataset: fetch (through pooch), verify, extract, then swap in atomically.

The rules ``download_dataset`` follows:

* each archive is fetched by :func:`pooch.retrieve` into a temporary folder next to the dataset's
  final place (same file system, so the final ``rename`` is atomic); pooch checks it against the
  pinned checksum (``"md5:<hex>"``/``"sha256:<hex>"``) and deletes it on a mismatch, which becomes
  a :class:`ChecksumError` naming the file and both digests. Only then is it extracted, again
  inside the temporary folder, and every extracted file checked against its per-file pin;
* the temporary folder becomes the dataset folder with one ``rename``; any error on the way removes
  the temporary folder, so a crash or a bad archive never leaves a dataset folder that looks
  complete. A present copy is never replaced unless asked (``force``).

The network is reached only through :func:`urlopen` (http, https and ``file://``), which pooch calls
through :class:`_Downloader`; tests replace it with a local opener.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmrec._atomic import normalise_modes, swap_dir
from lmrec.data.loaders.catalogue import DatasetSpec
from lmrec.data.loaders.locate import data_home, is_present, missing_files
from lmrec.data.loaders.registry import dataset_info
from lmrec.data.loaders.verify import (
    STAMP_NAME,
    Stamp,
    file_digest,
    new_hash,
    parse_checksum,
    progress_bar,
    stamp_path,
    verify_dataset,
)
from lmrec.errors import ChecksumError, DataError

_CHUNK = 1 << 20
_USER_AGENT = "lmrec-dataset-loader/0.1 (+https://github.com/lmrec)"


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


class _Unreachable(Exception):
    """The URL could not be opened: the next mirror is tried."""


class _Downloader:
    """A pooch downloader over :func:`urlopen`: streams to pooch's temporary file, hashing as it goes.

    pooch's own HTTP downloader handles neither ``file://`` URLs nor a short read against
    ``Content-Length``; the MD5 and SHA-256 recorded here go into the dataset's ``meta["archives"]``.
    """

    def __init__(
        self, opener: Callable[[str, float], Any], timeout: float, progress: bool | None, label: str
    ):
        self.opener, self.timeout, self.progress, self.label = opener, timeout, progress, label
        self.digests: dict[str, str] = {}

    def __call__(self, url: str, output_file: str, pooch: Any) -> None:
        try:
            response = self.opener(url, self.timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _Unreachable(f"{url}: {exc}") from exc
        try:
            self.digests = _stream_to(response, Path(output_file), url, self.label, self.progress)
        finally:
            with contextlib.suppress(Exception):
                response.close()


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs every download at INFO to stderr, naming our temporary folder: keep that to debug."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


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

    ``dest`` should sit in a temporary folder (see :func:`staging`): on any failure nothing is left
    there. A response shorter than its ``Content-Length`` raises :class:`DataError` (truncated
    download); a checksum mismatch raises :class:`ChecksumError` naming the file and both digests.
    Mirrors are tried in order only for connection errors, never after a mismatch.
    """
    import pooch  # imported here: it costs ~0.1 s and only downloads need it

    if checksum is None and not allow_unverified:
        raise DataError(
            f"no pinned checksum for {dest.name}: refusing an unverified download "
            "(pass allow_unverified=True, or --no-verify on the command line, to accept it)",
            source=urls[0] if urls else None,
        )
    algo, expected = parse_checksum(checksum) if checksum else (None, None)
    errors: list[str] = []
    for url in urls:
        downloader = _Downloader(opener or urlopen, timeout, progress, dest.name)
        try:
            with _quiet_pooch():
                pooch.retrieve(
                    url, known_hash=f"{algo}:{expected}" if algo else None, fname=dest.name,
                    path=dest.parent, downloader=downloader,
                )  # fmt: skip
        except _Unreachable as exc:
            errors.append(str(exc))
            continue
        except DataError:
            raise
        except ValueError as exc:  # pooch's hash mismatch; it has deleted the download
            got = downloader.digests.get(str(algo), "?")
            raise ChecksumError(
                f"checksum mismatch for {dest.name} downloaded from {url}: expected {algo}:{expected}, "
                f"got {algo}:{got} (the download was deleted)",
                source=dest.name,
            ) from exc
        return Fetched(path=dest, url=url, digests=downloader.digests, verified=algo is not None)
    raise DataError(
        f"could not download {dest.name}: "
        + "; ".join(errors)
        + " (no network? put the files in the dataset folder by hand, then run `lmrec datasets verify`)",
        source=urls[0] if urls else None,
    )


def _stream_to(response: Any, dest: Path, url: str, label: str, progress: bool | None) -> dict[str, str]:
    hashes = {"md5": new_hash("md5"), "sha256": new_hash("sha256")}
    length_header = None
    with contextlib.suppress(Exception):
        length_header = response.headers.get("Content-Length")
    total = int(length_header) if length_header and str(length_header).isdigit() else None
    got = 0
    with dest.open("wb") as out, progress_bar(total, label, progress) as bar:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, urllib.error.URLError) as exc:  # connection reset mid-way
                raise DataError(f"download of {label} failed after {got} bytes: {exc}", source=url) from exc
            if not chunk:
                break
            out.write(chunk)
            for h in hashes.values():
                h.update(chunk)
            got += len(chunk)
            bar.update(len(chunk))
    if total is not None and got != total:
        raise DataError(f"truncated download of {label}: got {got} of {total} bytes", source=url)
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
    normalise_modes(staged)  # mkdtemp made it 0700: a dataset folder gets the usual modes
    if final.exists():
        if not replace:
            return final
        swap_dir(staged, final)
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


# --------------------------------------------------------------------------------------- download
def download_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    allow_unverified: bool = False,
    force: bool = False,
    progress: bool | None = None,
    opener: Callable[[str, float], Any] | None = None,
) -> Path:
    """Make sure a verified copy of ``name`` is in its folder, downloading it only if missing.

    A present copy is verified (cheaply) and kept: never re-downloaded unless ``force=True``, which
    replaces it atomically. Archives without a confirmed checksum are refused unless
    ``allow_unverified=True``. Returns the dataset folder.
    """
    spec = dataset_info(name, data_dir)
    home = data_home(data_dir)
    final = Path(spec.folder) if spec.folder else home / name
    if not force and final.exists():
        if is_present(name, data_dir):
            verify_dataset(name, data_dir, full=False, progress=progress)
            return final
        if spec.local_only:
            raise not_downloadable(spec, final)
        if any(final.iterdir()):
            # Never mix downloaded files into a folder someone else filled: say what is wrong instead.
            missing = missing_files(name, data_dir)
            raise DataError(
                f"{final} exists but is incomplete (missing {', '.join(missing)}); add the missing files, "
                f"or replace the folder with `lmrec datasets download {name} --force`",
                source=str(final / missing[0]),
            )
        final.rmdir()
    if spec.local_only:
        raise not_downloadable(spec, final)
    if not allow_unverified:
        for a in spec.archives:
            if a.required and a.checksum is None:
                raise DataError(
                    f"{name}: no confirmed checksum for {a.filename} ({a.checksum_note or 'none pinned'}); "
                    "pass allow_unverified=True (`lmrec datasets download --no-verify`) to download it anyway",
                    source=a.url,
                )
    with staging(home, name) as tmp:
        incoming = tmp / ".incoming"
        incoming.mkdir()
        sources: dict[str, Any] = {}
        verified_all = True
        for a in spec.archives:
            try:
                got = fetch(
                    [a.url, *a.mirrors], incoming / a.filename, checksum=a.checksum,
                    allow_unverified=allow_unverified, progress=progress, opener=opener,
                )  # fmt: skip
            except ChecksumError:
                raise
            except DataError as exc:
                if a.required:
                    raise
                sources[a.filename] = {"url": a.url, "skipped": str(exc)}
                continue
            if a.kind == "zip":
                extract_zip(got.path, tmp, source=a.filename)
                got.path.unlink()
            else:
                check_gzip(got.path, source=a.filename)
                os.replace(got.path, tmp / a.filename)
            verified_all &= got.verified
            sources[a.filename] = {
                "url": got.url,
                "checksum": a.checksum,
                "verified": got.verified,
                **got.digests,
            }
        incoming.rmdir()
        stamp = _seal(spec, tmp, sources, archive_verified=verified_all, progress=progress)
        install(tmp, final, replace=force)
        if not tmp.exists():  # ours was installed (not another process's copy that finished first)
            stamp.path = stamp_path(final, name)
            stamp.save()
    return final


def not_downloadable(spec: DatasetSpec, folder: Path) -> DataError:
    missing = next((f.name for f in spec.files if f.required and f.find(folder) is None), "")
    if spec.folder:  # added with `lmrec datasets add`
        return DataError(
            f"{spec.name} was added with `lmrec datasets add` and cannot be downloaded; its file "
            f"{missing} is missing from {folder}: add it again with --force",
            source=str(folder / missing) if missing else str(folder),
        )
    return DataError(
        f"{spec.name} cannot be downloaded: there is no official URL for this converted copy; put its files "
        f"in {folder} (source: {spec.local_only})",
        source=str(folder / missing) if missing else str(folder),
    )


def _seal(
    spec: DatasetSpec, folder: Path, sources: dict[str, Any], *, archive_verified: bool, progress: bool | None
) -> Stamp:
    """Check the staged files against per-file pins; the stamp is saved once the folder is installed."""
    by_name = {c: f for f in spec.files for c in f.candidates()}
    stamp = Stamp(folder / STAMP_NAME, sources=sources)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != STAMP_NAME):
        rel = path.relative_to(folder).as_posix()
        f = by_name.get(rel)
        md5 = file_digest(path, "md5", content=bool(f and f.content), progress=progress)
        if f is not None and f.md5 is not None:
            if md5 != f.md5:
                raise ChecksumError(
                    f"checksum mismatch for {rel} extracted from the {spec.name} download: expected md5:{f.md5}, "
                    f"got md5:{md5} (nothing was installed)",
                    source=rel,
                )
            origin = "pinned"
        else:
            origin = "archive" if archive_verified else "observed"
        stamp.record(rel, path, md5, origin)
    for f in spec.files:
        if f.required and f.find(folder) is None:
            raise DataError(
                f"the {spec.name} download has no {f.name} (nothing was installed)", source=f.name
            )
    return stamp


__all__ = [
    "Fetched",
    "check_gzip",
    "download_dataset",
    "extract_zip",
    "fetch",
    "install",
    "not_downloadable",
    "staging",
    "urlopen",
]

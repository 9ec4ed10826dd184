"""Atomic file and directory writes: readers see the old artifact or the complete new one, never half.

Every artifact lmrec writes (models, reports, caches, catalogues, downloads) goes through here,
and every file and folder it leaves has one mode: :func:`file_mode` / :func:`dir_mode` (what
``open()``/``mkdir`` give under the umask), never the 0600/0700 of temporary files.

Replacing a directory deletes what it held, so :func:`replace_dir` (and :func:`atomic_directory`)
only replace a folder that is empty or is itself an lmrec artifact: one that holds the
:data:`ARTIFACT_MARKER` file or a manifest an lmrec writer put there (``model.json`` /
``tagger.json`` naming an ``lmrec_version``). ``model.save("~/thesis")`` or ``model.save(".")``
must fail in one line, not delete a thesis. Every directory written through
:func:`atomic_directory` is recognisable afterwards: when the writer left no manifest of its own,
the marker file is added, so the next save may overwrite it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from lmrec.errors import LmrecError

log = logging.getLogger("lmrec")

#: written into a directory by :func:`atomic_directory` when the writer left no manifest of its own
ARTIFACT_MARKER = ".lmrec-artifact"
#: manifests lmrec's writers put in their folders; a folder holding one (with an ``lmrec_version``)
#: was written by lmrec, also before the marker existed
ARTIFACT_MANIFESTS = ("model.json", "tagger.json")


def _umask() -> int:
    """The process umask, read without changing it where the platform allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic swap (not thread-safe, but brief)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of every file lmrec writes: what ``open()`` gives under the umask (0644 usually).

    Temporary files come from :func:`tempfile.mkstemp` with 0600, other files from ``open()`` with
    0644; without this an artifact folder held both, and a file moved into place kept 0600.
    """
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode of every folder lmrec writes (0755 usually; :func:`tempfile.mkdtemp` gives 0700)."""
    return 0o777 & ~_umask()


def normalise_modes(root: Path) -> None:
    """One file mode and one folder mode throughout ``root`` (links are left alone)."""
    fmode, dmode = file_mode(), dir_mode()
    os.chmod(root, dmode)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), dmode)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), fmode)


def _refuse(message: str) -> LmrecError:
    return LmrecError(" ".join(message.split()))  # one line, whatever the path holds


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then move it into place.

    An existing folder at ``path`` is never replaced by a file: :class:`LmrecError` says so.
    """
    path = Path(path)
    if path.is_dir():
        raise _refuse(f"cannot write file {path}: a folder of that name exists; choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # mkstemp made it 0600; every artifact file gets one mode
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------ artifact folders
def _has_manifest(folder: Path) -> bool:
    for name in ARTIFACT_MANIFESTS:
        try:
            meta = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and "lmrec_version" in meta:
            return True
    return False


def is_artifact(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` is a directory lmrec wrote (its marker or an lmrec manifest is in it)."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / ARTIFACT_MARKER).is_file() or _has_manifest(folder))


def _absolute(path: str | os.PathLike[str]) -> Path:
    # abspath, not resolve: "." and ".." are normalised but a symlinked target stays a link
    return Path(os.path.abspath(os.fspath(path)))


def check_replaceable(target: str | os.PathLike[str]) -> Path:
    """``target`` as an absolute path if a directory may be put there, else :class:`LmrecError`.

    Allowed: nothing there, an empty folder, or an lmrec artifact. Refused: a file, a folder with
    other contents, and the current directory or any folder above it.
    """
    dst = _absolute(target)
    if not dst.exists() and not dst.is_symlink():
        return dst
    if not dst.is_dir():
        raise _refuse(
            f"cannot save to {dst}: it is a file, not a folder, and would be overwritten; "
            "choose a folder name or remove the file first"
        )
    cwd, real = Path.cwd().resolve(), dst.resolve()
    if real == cwd or real in cwd.parents:
        raise _refuse(
            f"cannot save to {dst}: it is the current directory or contains it and would be overwritten; "
            "save into a new subfolder instead"
        )
    try:
        empty = not any(dst.iterdir())
    except OSError as exc:
        raise _refuse(f"cannot save to {dst}: cannot list the folder ({exc})") from exc
    if not empty and not is_artifact(dst):
        raise _refuse(
            f"cannot save to {dst}: the folder is not an lmrec artifact and would be overwritten "
            f"(it holds {_sample(dst)}); choose a new or empty folder"
        )
    return dst


def _sample(folder: Path, n: int = 3) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _remove(path: Path) -> None:
    """Delete a backup folder; a leftover is reported, never silent."""
    try:
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path)
    except OSError as exc:
        log.warning("could not remove the old copy %s after replacing it (%s); delete it by hand", path, exc)


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished directory ``src`` to ``dst``; an existing ``dst`` is swapped out, not merged.

    ``dst`` must be absent, an empty folder or an lmrec artifact (:func:`check_replaceable`). The old
    folder is renamed to a hidden backup beside it, removed once ``src`` is in place and renamed back
    if the swap fails, so ``dst`` always holds one complete copy.
    """
    swap_dir(src, check_replaceable(dst))


def swap_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` with one rename, an existing ``dst`` swapped out through a hidden
    backup (restored if the rename fails, removed after it). No ownership check: callers that
    replace user folders use :func:`replace_dir`."""
    if not dst.exists() and not dst.is_symlink():
        os.replace(src, dst)
        return
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old, dst)
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str], tag: str = "tmp") -> Iterator[Path]:
    """Yield an empty staging directory beside ``target``; on success it replaces ``target``.

    ``target`` is checked first (:func:`check_replaceable`), so a save into a folder that is not
    an lmrec artifact fails before any work is done. On any error the staging directory is removed
    and ``target`` is left as it was. The finished directory carries :data:`ARTIFACT_MARKER` unless
    the writer left an lmrec manifest (``model.json``/``tagger.json``) in it.
    """
    target = check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-", dir=target.parent))
    try:
        yield staging
        if not _has_manifest(staging):
            (staging / ARTIFACT_MARKER).write_text(
                '{"written_by": "lmrec", "note": "lmrec may replace this folder when saving again"}\n',
                encoding="utf-8",
            )
        normalise_modes(staging)
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

"""Item pictures: a folder of image files keyed by item id, or a feature matrix with its id order.

A catalogue's pictures (posters, product photos) are a second item modality beside the text
columns. They come in one of two forms:

* **a folder** of files named ``<item_id><suffix>`` (``images/172.jpg``; suffixes in
  :data:`IMAGE_SUFFIXES`). :meth:`ItemImages.from_folder` matches the names against the catalogue's
  item ids and checks every file: a catalogue item with no file is *missing*, a file that does not
  decode is *unreadable*, one whose MD5 differs from a pinned list (``images_md5.txt`` of a
  built-in dataset) is *corrupt*. Real image folders are noisy (a download that failed, a truncated
  JPEG), so none of these stops loading: the item simply has no picture, :attr:`ItemImages.problems`
  records why by item id, and one warning on the ``lmrec.data`` logger lists the ids;
* **a feature matrix** (``(n, d)`` float32, one row per id in ``ids``) computed elsewhere, e.g. by
  an image model that lmrec does not run (:meth:`ItemImages.from_features`).

Image *files* are turned into vectors by :mod:`lmrec.image` (an offline CNN behind the same
protocol and on-disk cache as the text encoders).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.errors import DataError

log = logging.getLogger("lmrec.data")

#: file suffixes read as item pictures (lower case; the first match per item wins, in this order)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
#: how many problem ids a warning lists before "and N more"
_SHOWN = 20


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def read_md5_list(path: str | Path) -> dict[str, str]:
    """``md5sum``-style lines (``<hex>  <file name>``) as ``{file name: hex}``; errors name the line."""
    path = Path(path)
    out: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the image checksum list ({exc})", source=str(path)) from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise DataError(f"line {lineno} is not '<md5>  <file>': {line[:60]!r}", source=str(path))
        out[parts[1].strip().lstrip("*")] = parts[0].lower()
    return out


def check_image(path: Path) -> str | None:
    """None when ``path`` decodes as an image, else why not (one short phrase).

    The whole image is decoded (``load()``), not only its header: a truncated JPEG has a valid header.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "empty image"
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        return f"unreadable ({type(exc).__name__}: {str(exc)[:80]})"
    return None


def _describe(problems: Mapping[Any, str]) -> str:
    kinds: dict[str, list[Any]] = {}
    for item, why in problems.items():
        kinds.setdefault(why.split(" ", 1)[0], []).append(item)
    parts = []
    for kind, ids in kinds.items():
        shown = ", ".join(map(str, ids[:_SHOWN]))
        more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
        parts.append(f"{len(ids)} {kind} (item ids {shown}{more})")
    return "; ".join(parts)


@dataclass(frozen=True)
class ItemImages:
    """The pictures of a catalogue: files by item id, or features by item id, plus what went wrong.

    Exactly one of ``paths`` (item id -> image file) and ``features`` (with ``feature_ids``) is
    used. ``problems`` maps item ids to why they have no usable picture (``"missing"``,
    ``"unreadable (...)"``, ``"corrupt (md5 ...)"``).
    """

    paths: Mapping[Any, Path] = field(default_factory=dict)
    features: np.ndarray | None = None
    feature_ids: tuple[Any, ...] = ()
    problems: Mapping[Any, str] = field(default_factory=dict)
    #: the folder or the name of the feature source, for messages and ``Dataset.meta``
    source: str = ""
    #: what produced ``features`` (an image model id), when known
    model_id: str = ""
    #: files whose name matched no catalogue item (not an error: a folder may hold more)
    unmatched: tuple[str, ...] = ()

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        item_ids: Iterable[Any],
        *,
        md5s: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> ItemImages:
        """The files ``<item_id><suffix>`` in ``folder`` for each id in ``item_ids``.

        ``md5s`` (file name -> MD5, e.g. from :func:`read_md5_list`) pins the files: a mismatch makes
        the item's picture *corrupt*. ``check`` decodes every file once (about 1 ms for a poster
        thumbnail), so an unreadable file is reported here rather than when an encoder meets it.
        A folder that does not exist is an error; problems with single files are not.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError("image folder not found", source=str(folder))
        ids = list(item_ids)
        by_name = {str(i): i for i in ids}
        found: dict[Any, Path] = {}
        unmatched: list[str] = []
        for f in sorted(folder.iterdir()):
            suffix = f.suffix.lower()
            if suffix not in IMAGE_SUFFIXES or not f.is_file():
                continue
            item = by_name.get(f.name[: -len(f.suffix)])
            if item is None:
                unmatched.append(f.name)
            elif item not in found or IMAGE_SUFFIXES.index(suffix) < IMAGE_SUFFIXES.index(
                found[item].suffix.lower()
            ):
                found[item] = f
        problems: dict[Any, str] = {}
        paths: dict[Any, Path] = {}
        for item in ids:
            pic = found.get(item)
            if pic is None:
                problems[item] = "missing"
                continue
            if md5s is not None:
                want = md5s.get(pic.name)
                got = _md5(pic)
                if want is not None and got != want:
                    problems[item] = f"corrupt (md5 {got}, pinned {want})"
                    continue
            why = check_image(pic) if check else None
            if why is not None:
                problems[item] = why
                continue
            paths[item] = pic
        out = cls(paths=paths, problems=problems, source=str(folder), unmatched=tuple(unmatched))
        out.warn()
        return out

    @classmethod
    def from_features(
        cls, ids: Sequence[Any], features: Any, *, source: str = "features", model_id: str = ""
    ) -> ItemImages:
        """Precomputed picture vectors: row ``k`` of ``features`` belongs to ``ids[k]``.

        Rows that are not finite are reported as *corrupt* and dropped; duplicate ids are an error.
        """
        matrix = np.asarray(features, dtype=np.float32)
        ids = tuple(ids)
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise DataError(
                f"image features of shape {matrix.shape} for {len(ids)} ids: need one row per id",
                source=source,
            )
        if len(set(ids)) != len(ids):
            seen: set[Any] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise DataError(f"image features: item id {dup!r} has two rows", source=source)
        ok = np.isfinite(matrix).all(axis=1)
        problems = {ids[k]: "corrupt (non-finite features)" for k in np.flatnonzero(~ok)}
        out = cls(
            features=matrix[ok],
            feature_ids=tuple(ids[k] for k in np.flatnonzero(ok)),
            problems=problems,
            source=source,
            model_id=model_id,
        )
        out.warn()
        return out

    # ------------------------------------------------------------------------------ facts
    @property
    def kind(self) -> str:
        """``"files"`` or ``"features"``."""
        return "features" if self.features is not None else "files"

    @property
    def item_ids(self) -> list[Any]:
        """The ids that have a usable picture."""
        return list(self.feature_ids) if self.features is not None else list(self.paths)

    def __len__(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        return (
            f"ItemImages({self.kind}: {len(self)} items from {self.source!r}, {len(self.problems)} problems)"
        )

    def path(self, item_id: Any) -> Path | None:
        return self.paths.get(item_id)

    def report(self) -> dict[str, Any]:
        """A JSON-able summary: counts, and the problem ids by kind (recorded in ``Dataset.meta``)."""
        kinds: dict[str, list[Any]] = {}
        for item, why in self.problems.items():
            kinds.setdefault(why.split(" ", 1)[0], []).append(item)
        return {
            "kind": self.kind,
            "source": self.source,
            "items_with_image": len(self),
            "problems": {k: [str(i) for i in v] for k, v in kinds.items()},
            "unmatched_files": len(self.unmatched),
        }

    def warn(self) -> None:
        """Log one warning listing the problem ids (nothing when there are none)."""
        if self.problems:
            log.warning(
                "item images in %s: %s; those items have no picture", self.source, _describe(self.problems)
            )

    def restrict(self, item_ids: Iterable[Any]) -> ItemImages:
        """Only the given items (e.g. a dataset's catalogue after filtering)."""
        keep = set(item_ids)
        if self.features is not None:
            rows = [k for k, i in enumerate(self.feature_ids) if i in keep]
            return ItemImages(
                features=self.features[rows],
                feature_ids=tuple(self.feature_ids[k] for k in rows),
                problems={i: w for i, w in self.problems.items() if i in keep},
                source=self.source,
                model_id=self.model_id,
            )
        return ItemImages(
            paths={i: p for i, p in self.paths.items() if i in keep},
            problems={i: w for i, w in self.problems.items() if i in keep},
            source=self.source,
            unmatched=self.unmatched,
        )


__all__ = ["IMAGE_SUFFIXES", "ItemImages", "check_image", "read_md5_list"]

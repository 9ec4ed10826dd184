"""The dataset specs, and the built-in catalogue read into them from ``catalogue.toml``.

The catalogue is data (URLs, pinned checksums, file lists, licences), so it lives in package data
rather than in code; it is read once, on first use. :mod:`.registry` looks names up in it.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset folder."""

    name: str
    #: pinned MD5 (hex) of the file, or of its decompressed content when ``content`` is set
    md5: str | None = None
    size: int | None = None
    #: the dataset counts as present only when every required file is there
    required: bool = True
    #: read by the loader, hence verified on every load (others only by ``verify``)
    used: bool = True
    #: ``md5`` covers the gzip-decompressed content, and the uncompressed file (``name`` without
    #: ``.gz``) is accepted in its place
    content: bool = False

    def candidates(self) -> tuple[str, ...]:
        if self.content and self.name.endswith(".gz"):
            return (self.name, self.name[:-3])
        return (self.name,)

    def find(self, folder: Path) -> Path | None:
        """This file in ``folder`` (the ``.gz`` or, for ``content`` pins, its uncompressed form)."""
        return next((folder / c for c in self.candidates() if (folder / c).is_file()), None)


@dataclass(frozen=True)
class Archive:
    """A downloadable file: a zip that is extracted, or a single file that is kept as is."""

    url: str
    filename: str
    #: ``"md5:<hex>"``/``"sha256:<hex>"``, or None when no value could be confirmed
    checksum: str | None
    kind: Literal["zip", "file"] = "zip"
    mirrors: tuple[str, ...] = ()
    #: an optional archive (Amazon metadata) that fails to download is skipped, not fatal
    required: bool = True
    #: where the checksum was confirmed, or why there is none
    checksum_note: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    #: selects the loader: movielens, amazon-2014, amazon-2018, lastfm, converted-tsv (interactions.tsv +
    #: items.tsv, see :mod:`.converted`), own (``lmrec datasets add``, see :mod:`.own`), or a
    #: registered custom family
    family: str
    description: str
    size: str
    archives: tuple[Archive, ...]
    files: tuple[FileSpec, ...]
    homepage: str = ""
    license: str = ""
    citation: str = ""
    #: official counts, for ``lmrec datasets info`` and tests
    stats: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    #: set (with no ``archives``) when there is nothing lmrec may download: the copy must be put in
    #: the dataset folder by hand; says where it comes from (a converted form with no official URL)
    local_only: str = ""
    #: where the copy lives, for datasets found by their manifest (``lmrec datasets add``); empty for
    #: the catalogue's, which live in ``<data home>/<name>``
    folder: str = ""
    #: a sub-folder of item pictures named ``<item_id>.<ext>`` (see :mod:`lmrec.data.images`), or ""
    images: str = ""
    #: a file of the copy listing every picture's MD5 (``md5sum`` format); pinned itself in ``files``
    images_md5: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stats"] = dict(self.stats)
        return out


@dataclass(frozen=True)
class Catalogue:
    #: MovieLens, Last.fm and the converted copies, in catalogue order
    datasets: dict[str, DatasetSpec]
    #: one per Amazon (edition, category); listed after everything else
    amazon: dict[str, DatasetSpec]
    #: edition -> category names, in the publishers' order
    amazon_categories: dict[str, tuple[str, ...]]


@functools.cache
def catalogue() -> Catalogue:
    """The built-in catalogue, read from ``catalogue.toml`` on first use."""
    raw = tomllib.loads(resources.files(__package__).joinpath("catalogue.toml").read_text(encoding="utf-8"))
    defaults = raw.get("family", {})
    datasets = {}
    for entry in raw["dataset"]:
        spec = _dataset({**defaults.get(entry["family"], {}), **entry})
        datasets[spec.name] = spec
    amazon_raw = raw["amazon"]
    categories = {ed: tuple(t["categories"]) for ed, t in amazon_raw["edition"].items()}
    amazon = {}
    for edition, names in categories.items():
        for category in names:
            spec = _amazon(amazon_raw, edition, category)
            amazon[spec.name] = spec
    return Catalogue(datasets, amazon, categories)


def _dataset(entry: dict[str, Any]) -> DatasetSpec:
    files = [FileSpec(**f) for f in entry.pop("files")]
    files += [FileSpec(name, required=False, used=False) for name in entry.pop("extra", [])]
    archives = tuple(
        Archive(**{**a, "checksum": a.get("checksum"), "mirrors": tuple(a.get("mirrors", ()))})
        for a in entry.pop("archives")
    )
    notes = tuple(entry.pop("notes", ()))
    return DatasetSpec(**entry, archives=archives, files=tuple(files), notes=notes)


def _slug(category: str) -> str:
    return category.lower().replace("_", "-")


def _amazon(raw: dict[str, Any], edition: str, category: str) -> DatasetSpec:
    """``amazon-<edition>-<slug>`` from the edition's templates: reviews (required) + metadata (optional)."""
    t = raw["edition"][edition]

    def fill(s: str) -> str:
        return s.replace("{category}", category)

    def archive(kind: str, required: bool) -> Archive:
        url, *mirrors = (fill(u) for u in t[f"{kind}_urls"])
        return Archive(
            url, fill(t[kind]), None, "file", mirrors=tuple(mirrors), required=required,
            checksum_note=raw["no_checksum_note"],
        )  # fmt: skip

    pin: dict[str, Any] = next(
        (p for p in raw.get("pinned", ()) if (p["edition"], p["category"]) == (edition, category)), {}
    )
    pretty = category.replace("_", " ").replace(" and ", " & ")
    return DatasetSpec(
        name=f"amazon-{edition}-{_slug(category)}",
        family=f"amazon-{edition}",
        description=f"Amazon {edition} 5-core reviews: {pretty} (review text; item metadata when present)",
        size="varies",
        archives=(archive("reviews", True), archive("meta", False)),
        files=(
            FileSpec(fill(t["reviews"]), pin.get("md5"), pin.get("size"), content=True),
            FileSpec(fill(t["meta"]), required=False, content=True),
        ),
        homepage=t["homepage"],
        license=raw["license"],
        citation=t["citation"],
        stats=dict(pin.get("stats", {})),
        notes=tuple(raw["notes"]),
    )


__all__ = ["Archive", "Catalogue", "DatasetSpec", "FileSpec", "catalogue"]

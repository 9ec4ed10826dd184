"""The dataset registry: look a name up, register your own datasets, and pick the loader for one.

The built-in entries (MovieLens, Last.fm, the Amazon review categories, converted local-only
copies) come from ``catalogue.toml`` (see :mod:`.catalogue`); :func:`register_dataset` adds more
at run time. The rest of the loaders package works from names through :func:`dataset_info`:
:mod:`.locate` (where a copy lives), :mod:`.verify` (pinned checksums), :mod:`.download` (fetching
a missing copy) and :mod:`.load` (``load_dataset``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmrec.data.dataset import Dataset
from lmrec.data.loaders.amazon import load_amazon
from lmrec.data.loaders.catalogue import DatasetSpec, catalogue
from lmrec.data.loaders.converted import load_converted
from lmrec.data.loaders.lastfm import load_lastfm
from lmrec.data.loaders.movielens import load_movielens
from lmrec.errors import DataError

#: ``loader(folder, spec, meta) -> Dataset``: reads a verified local copy
Loader = Callable[[Path, DatasetSpec, dict[str, Any]], Dataset]

AMAZON_2014_CATEGORIES: tuple[str, ...] = catalogue().amazon_categories["2014"]
AMAZON_2018_CATEGORIES: tuple[str, ...] = catalogue().amazon_categories["2018"]

_CUSTOM: dict[str, DatasetSpec] = {}
_CUSTOM_LOADERS: dict[str, Loader] = {}


# ------------------------------------------------------------------------------------------ lookup
def list_datasets(family: str | None = None) -> list[str]:
    """Every registered dataset name (MovieLens and Last.fm first, then the Amazon categories)."""
    cat = catalogue()
    names = [*cat.datasets, *_CUSTOM, *cat.amazon]
    if family is None:
        return names
    return [
        n
        for n in names
        if dataset_info(n).family == family or dataset_info(n).family.startswith(family + "-")
    ]


def dataset_info(name: str) -> DatasetSpec:
    """The registry entry for ``name``; an unknown name raises :class:`DataError` with suggestions."""
    cat = catalogue()
    spec = _CUSTOM.get(name) or cat.datasets.get(name) or cat.amazon.get(name)
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name, list_datasets(), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise DataError(f"unknown dataset {name!r}{hint}; `lmrec datasets list` shows them all")


# ------------------------------------------------------------------------------------ registration
def register_dataset(spec: DatasetSpec, loader: Loader | None = None, *, overwrite: bool = False) -> None:
    """Add a dataset (e.g. an internal log with a pinned archive) to the registry.

    ``loader(folder, spec, meta) -> Dataset`` is needed when ``spec.family`` is not a built-in one.
    """
    cat = catalogue()
    if not overwrite and (spec.name in _CUSTOM or spec.name in cat.datasets or spec.name in cat.amazon):
        raise ValueError(f"dataset {spec.name!r} is already registered (pass overwrite=True to replace it)")
    if loader is None and spec.family not in _BUILTIN_LOADERS:
        raise ValueError(f"family {spec.family!r} has no built-in loader: pass loader=")
    _CUSTOM[spec.name] = spec
    if loader is not None:
        _CUSTOM_LOADERS[spec.name] = loader


def unregister_dataset(name: str) -> None:
    _CUSTOM.pop(name, None)
    _CUSTOM_LOADERS.pop(name, None)


# ---------------------------------------------------------------------------------- load dispatch
def _load_movielens(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    return load_movielens(folder, name=spec.name, meta=meta)


def _load_amazon(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    # the spec lists the reviews first and the optional metadata second (see catalogue.toml)
    reviews = spec.files[0].find(folder)
    if reviews is None:
        raise DataError(f"missing file {spec.files[0].name}", source=str(folder / spec.files[0].name))
    meta_file = spec.files[1].find(folder) if len(spec.files) > 1 else None
    if meta_file is None:
        meta = {**meta, "notes": [*meta.get("notes", []), "no item metadata file: items carry ids only"]}
    return load_amazon(reviews, meta_file, name=spec.name, dataset_meta=meta)


def _load_lastfm(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    return load_lastfm(folder, name=spec.name, meta=meta)


def _load_converted(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    return load_converted(folder, name=spec.name, meta=meta)


_BUILTIN_LOADERS: dict[str, Loader] = {
    "movielens": _load_movielens,
    "amazon-2014": _load_amazon,
    "amazon-2018": _load_amazon,
    "lastfm": _load_lastfm,
    "converted-tsv": _load_converted,
}


def loader_for(name: str) -> Loader:
    """The function that reads ``name``'s local copy: its registered loader, else its family's."""
    return _CUSTOM_LOADERS.get(name) or _BUILTIN_LOADERS[dataset_info(name).family]


__all__ = [
    "AMAZON_2014_CATEGORIES",
    "AMAZON_2018_CATEGORIES",
    "Loader",
    "dataset_info",
    "list_datasets",
    "loader_for",
    "register_dataset",
    "unregister_dataset",
]

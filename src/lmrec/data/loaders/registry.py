"""The dataset registry: look a name up, register your own datasets, and pick the loader for one.

The built-in entries (MovieLens, Last.fm, the Amazon review categories, converted local-only
copies) come from ``catalogue.toml`` (see :mod:`.catalogue`); :func:`register_dataset` adds more
at run time, and datasets added with ``lmrec datasets add`` are found by their manifest in the data
home or the user data home (:mod:`.own`), so each lookup takes the ``data_dir`` it searches. The rest of the loaders package works from names through :func:`dataset_info`:
:mod:`.locate` (where a copy lives), :mod:`.verify` (pinned checksums), :mod:`.download` (fetching
a missing copy) and :mod:`.load` (``load_dataset``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmrec.data.dataset import Dataset
from lmrec.data.images import read_md5_list
from lmrec.data.loaders.amazon import load_amazon
from lmrec.data.loaders.catalogue import DatasetSpec, catalogue
from lmrec.data.loaders.converted import load_converted
from lmrec.data.loaders.lastfm import load_lastfm
from lmrec.data.loaders.movielens import load_movielens
from lmrec.data.loaders.own import find_own, load_own, own_names
from lmrec.errors import DataError

#: ``loader(folder, spec, meta) -> Dataset``: reads a verified local copy
Loader = Callable[[Path, DatasetSpec, dict[str, Any]], Dataset]

AMAZON_2014_CATEGORIES: tuple[str, ...] = catalogue().amazon_categories["2014"]
AMAZON_2018_CATEGORIES: tuple[str, ...] = catalogue().amazon_categories["2018"]

_CUSTOM: dict[str, DatasetSpec] = {}
_CUSTOM_LOADERS: dict[str, Loader] = {}


# ------------------------------------------------------------------------------------------ lookup
def builtin_names() -> set[str]:
    """Names taken by the catalogue and by :func:`register_dataset` (an added dataset cannot use one)."""
    cat = catalogue()
    return {*cat.datasets, *_CUSTOM, *cat.amazon}


def list_datasets(family: str | None = None, data_dir: str | Path | None = None) -> list[str]:
    """Every dataset name: MovieLens and Last.fm first, then registered ones, datasets added with
    ``lmrec datasets add`` (found in ``data_dir``'s home or the user data home), then Amazon."""
    cat = catalogue()
    taken = builtin_names()
    own = [n for n in own_names(data_dir) if n not in taken]
    names = [*cat.datasets, *_CUSTOM, *own, *cat.amazon]
    if family is None:
        return names
    families = {n: dataset_info(n, data_dir).family for n in names}
    return [n for n in names if families[n] == family or families[n].startswith(family + "-")]


def dataset_info(name: str, data_dir: str | Path | None = None) -> DatasetSpec:
    """The registry entry for ``name``; an unknown name raises :class:`DataError` with suggestions.

    ``data_dir``: the data home to search for a dataset added with ``lmrec datasets add`` (the
    user data home is searched after it).
    """
    cat = catalogue()
    spec = _CUSTOM.get(name) or cat.datasets.get(name) or cat.amazon.get(name) or find_own(name, data_dir)
    if spec is not None:
        return spec
    close = difflib.get_close_matches(name, list_datasets(data_dir=data_dir), n=3, cutoff=0.6)
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
    data = load_converted(folder, name=spec.name, meta=meta)
    if spec.images:
        # the list is pinned in spec.files (verified before this runs); each picture is checked
        # against it, and a bad one is reported by item id without stopping the load
        md5s = read_md5_list(folder / spec.images_md5) if spec.images_md5 else None
        data = data.with_images(folder / spec.images, md5s=md5s)
    return data


_BUILTIN_LOADERS: dict[str, Loader] = {
    "movielens": _load_movielens,
    "amazon-2014": _load_amazon,
    "amazon-2018": _load_amazon,
    "lastfm": _load_lastfm,
    "converted-tsv": _load_converted,
    "own": load_own,
}


def loader_for(name: str, data_dir: str | Path | None = None) -> Loader:
    """The function that reads ``name``'s local copy: its registered loader, else its family's."""
    return _CUSTOM_LOADERS.get(name) or _BUILTIN_LOADERS[dataset_info(name, data_dir).family]


__all__ = [
    "AMAZON_2014_CATEGORIES",
    "AMAZON_2018_CATEGORIES",
    "Loader",
    "builtin_names",
    "dataset_info",
    "list_datasets",
    "loader_for",
    "register_dataset",
    "unregister_dataset",
]

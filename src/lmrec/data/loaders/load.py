"""``load_dataset``: a registered dataset as a :class:`Dataset`, verified, downloaded if missing.

A local copy that is present and verified is always used; only a missing one is downloaded, from
the official source, checked against its pinned checksum and installed atomically (see
:mod:`.download`). Where the copy lives: :mod:`.locate`; what is checked: :mod:`.verify`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmrec.data.dataset import Dataset
from lmrec.data.loaders.download import download_dataset, not_downloadable
from lmrec.data.loaders.locate import dataset_dir, missing_files
from lmrec.data.loaders.registry import dataset_info, loader_for
from lmrec.data.loaders.verify import load_stamp, verify_dataset
from lmrec.errors import DataError


def _offline() -> bool:
    return os.environ.get("LMREC_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool | None = None,
    *,
    allow_unverified: bool = False,
    progress: bool | None = None,
) -> Dataset:
    """Load a registered dataset, downloading it first if it is missing.

    ``download=None`` downloads a missing dataset unless ``$LMREC_OFFLINE`` is set; ``False`` never
    downloads (a missing copy raises :class:`DataError` naming the missing file); ``True`` always
    may. A present copy is verified against its pinned checksums (cached, see
    :func:`verify_dataset`) and never re-downloaded. ``meta`` records the name, the local folder,
    the official URLs and the MD5 of every file read.
    """
    spec = dataset_info(name, data_dir)
    folder = dataset_dir(name, data_dir)
    missing = missing_files(name, data_dir)
    if missing:
        if spec.local_only:
            raise not_downloadable(spec, folder)
        if download is False or (download is None and _offline()):
            raise DataError(
                f"dataset {name!r} is not in {folder} (missing {missing[0]}); run `lmrec datasets download {name}` "
                "or call load_dataset(..., download=True)",
                source=str(folder / missing[0]),
            )
        download_dataset(name, data_dir, allow_unverified=allow_unverified, progress=progress)
    report = verify_dataset(name, data_dir, full=False, scope="used", progress=progress)
    stamp = load_stamp(folder, name)
    meta: dict[str, Any] = {
        "name": spec.name,
        "family": spec.family,
        "source": str(folder),
        "urls": [a.url for a in spec.archives],
        "checksums": report.checksums(),
        "verification": {
            c.name: c.origin if c.status == "ok" else c.status for c in report.checks if c.actual
        },
        "license": spec.license,
        "citation": spec.citation,
        "notes": list(spec.notes),
    }
    if spec.local_only:
        meta["provenance"] = spec.local_only
    if stamp.sources:
        meta["archives"] = stamp.sources
    return loader_for(name, data_dir)(folder, spec, meta)


__all__ = ["load_dataset"]

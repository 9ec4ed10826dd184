"""Where a dataset's local copy lives, and whether its files are there.

``data_dir`` if given, else ``$LMREC_DATA_HOME``, else ``~/.cache/lmrec/data``; each dataset in a
folder named after it (``<home>/ml-100k/u.data``). A dataset added with ``lmrec datasets add`` lives
where its manifest was found (the data home first, then the user data home; see :mod:`._home`).
"""

from __future__ import annotations

from pathlib import Path

from lmrec.data.loaders._home import data_home, user_data_home
from lmrec.data.loaders.registry import dataset_info


def dataset_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder of ``name``'s local copy: ``<home>/<name>``, or where an added dataset was found."""
    spec = dataset_info(name, data_dir)
    if spec.folder:
        return Path(spec.folder)
    return data_home(data_dir) / name


def missing_files(name: str, data_dir: str | Path | None = None) -> list[str]:
    """Required files absent from the local copy (empty when the copy is present)."""
    spec = dataset_info(name, data_dir)
    folder = dataset_dir(name, data_dir)
    return [f.name for f in spec.files if f.required and f.find(folder) is None]


def is_present(name: str, data_dir: str | Path | None = None) -> bool:
    return not missing_files(name, data_dir)


__all__ = ["data_home", "dataset_dir", "is_present", "missing_files", "user_data_home"]

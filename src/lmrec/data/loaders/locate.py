"""Where a dataset's local copy lives, and whether its files are there.

``data_dir`` if given, else ``$LMREC_DATA_HOME``, else ``~/.cache/lmrec/data``; each dataset in a
folder named after it (``<home>/ml-100k/u.data``).
"""

from __future__ import annotations

import os
from pathlib import Path

from lmrec.data.loaders.registry import dataset_info


def data_home(data_dir: str | Path | None = None) -> Path:
    """``data_dir``, else ``$LMREC_DATA_HOME``, else ``~/.cache/lmrec/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("LMREC_DATA_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lmrec" / "data"


def dataset_dir(name: str, data_dir: str | Path | None = None) -> Path:
    dataset_info(name)
    return data_home(data_dir) / name


def missing_files(name: str, data_dir: str | Path | None = None) -> list[str]:
    """Required files absent from the local copy (empty when the copy is present)."""
    spec = dataset_info(name)
    folder = dataset_dir(name, data_dir)
    return [f.name for f in spec.files if f.required and f.find(folder) is None]


def is_present(name: str, data_dir: str | Path | None = None) -> bool:
    return not missing_files(name, data_dir)


__all__ = ["data_home", "dataset_dir", "is_present", "missing_files"]

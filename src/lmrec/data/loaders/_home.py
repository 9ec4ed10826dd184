"""Where datasets live: the data home, and the user data home that ``lmrec datasets add`` writes to.

* the **data home**: ``data_dir`` if given, else ``$LMREC_DATA_HOME``, else ``~/.cache/lmrec/data``.
  It may be shared and read-only (a team's copy of the public datasets), so lmrec never writes
  there unless told to (``--data-dir``, or a download into it);
* the **user data home**: ``$LMREC_USER_DATA_HOME``, else ``$XDG_DATA_HOME/lmrec/datasets``, else
  ``~/.local/share/lmrec/datasets``. Your own datasets (``lmrec datasets add``) go here by default,
  and it is searched *after* the data home, so they coexist with a read-only shared one.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_home(data_dir: str | Path | None = None) -> Path:
    """``data_dir``, else ``$LMREC_DATA_HOME``, else ``~/.cache/lmrec/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("LMREC_DATA_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lmrec" / "data"


def user_data_home() -> Path:
    """``$LMREC_USER_DATA_HOME``, else ``$XDG_DATA_HOME/lmrec/datasets``, else
    ``~/.local/share/lmrec/datasets``: where ``lmrec datasets add`` writes without ``--data-dir``."""
    env = os.environ.get("LMREC_USER_DATA_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "lmrec" / "datasets"


def search_homes(data_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for a dataset added with ``lmrec datasets add``, first match wins."""
    homes = [data_home(data_dir), user_data_home()]
    return [h for i, h in enumerate(homes) if h not in homes[:i]]


__all__ = ["data_home", "search_homes", "user_data_home"]

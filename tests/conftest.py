"""Shared fixtures: where the real datasets live, a seeded rng, small synthetic datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.testing import make_checkerboard

REPO = Path(__file__).resolve().parents[1]


def _data_home() -> Path:
    env = os.environ.get("LMREC_DATA_HOME")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_home() -> Path:
    home = _data_home()
    if not (home / "ml-100k" / "u.data").exists():
        pytest.fail(
            f"real datasets not found at {home}: set LMREC_DATA_HOME or put ../shared/data beside the repo"
        )
    return home


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_data_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Datasets added by tests (``lmrec datasets add`` without ``--data-dir``) go to a temporary
    user data home, never to the real ``~/.local/share/lmrec/datasets``."""
    os.environ["LMREC_USER_DATA_HOME"] = str(tmp_path_factory.mktemp("user-data-home"))


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def ml100k(data_home: Path) -> Dataset:
    df = pl.read_csv(
        data_home / "ml-100k" / "u.data",
        separator="\t",
        has_header=False,
        new_columns=["user_id", "item_id", "rating", "timestamp"],
    )
    return Dataset.from_frames(df, name="ml-100k")


@pytest.fixture()
def checkerboard() -> Dataset:
    return make_checkerboard()

"""Shared fixtures: where the real datasets live, a seeded rng, small synthetic datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset

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


def make_checkerboard(n_users: int = 40, n_items: int = 20, seed: int = 0) -> Dataset:
    """Two user groups that each like one half of the items (implicit's known-answer fixture).

    Every user has seen all items of their half but one; that withheld item must come back first.
    """
    rows = []
    t = 0
    for u in range(n_users):
        group = u % 2
        half = [i for i in range(n_items) if i % 2 == group]
        withheld = half[u // 2 % len(half)]
        for i in half:
            if i != withheld:
                rows.append((u, i, t))
                t += 1
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    items = pl.DataFrame(
        {
            "item_id": list(range(n_items)),
            "title": [f"{'even' if i % 2 == 0 else 'odd'} item {i}" for i in range(n_items)],
        }
    )
    return Dataset.from_frames(df, items=items, name="checkerboard")


@pytest.fixture()
def checkerboard() -> Dataset:
    return make_checkerboard()

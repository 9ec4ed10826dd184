"""Fixtures for the text layer: the real offline MiniLM encoder (loaded once) and small datasets."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.text.encoder import SentenceTransformerEncoder, shared_encoder


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEncoder:
    """The bundled all-MiniLM-L6-v2 on the CPU, loaded once per test session (a few seconds).

    It is the process-wide shared instance for ``(None, "cpu")``, so models configured with
    ``device="cpu"`` that build their encoder from the config (e.g. after ``load``) reuse these
    weights instead of loading them again.
    """
    enc = shared_encoder(None, "cpu")
    assert isinstance(enc, SentenceTransformerEncoder)
    return enc.load()


@pytest.fixture(scope="session")
def ml_small(data_home: Path) -> Dataset:
    from lmrec.data.loaders import load_dataset

    return load_dataset("ml-latest-small", data_home, download=False)


def tiny_catalogue() -> Dataset:
    """Six items in two clear topics, four users, tags and reviews: enough to see every code path."""
    items = pl.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 5, 6],
            "title": [
                "Space Battle (1990)",
                "Galaxy Wars (1995)",
                "Starship Down (2001)",
                "Love in Paris (1992)",
                "Wedding Season (1999)",
                "Kiss Me Again (2004)",
            ],
            "genres": [
                "Sci-Fi|Action",
                "Sci-Fi",
                "Sci-Fi|Thriller",
                "Romance|Comedy",
                "Romance",
                "Romance|Drama",
            ],
            "tags": ["precomputed, leaky", None, None, None, None, None],
        }
    )
    inter = pl.DataFrame(
        {
            "user_id": [10, 10, 11, 11, 12, 12, 13],
            "item_id": [1, 2, 4, 5, 1, 4, 2],
            "timestamp": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    tags = pl.DataFrame(
        {
            "user_id": [10, 11, 12, 13, 13],
            "item_id": [1, 4, 1, 2, 2],
            "tag": ["Aliens", "paris", "aliens", "lasers", "space"],
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    reviews = pl.DataFrame(
        {
            "user_id": [10, 11, 12],
            "item_id": [1, 4, 1],
            "text": [
                "Great lasers. The alien fleet attacks Earth and the pilots fight back in orbit.",
                "A sweet story of two strangers who fall in love by the Seine.",
                "Short review.",
            ],
            "rating": [5.0, 4.0, 3.0],
            "timestamp": [1, 3, 5],
        }
    )
    return Dataset.from_frames(inter, items=items, tags=tags, reviews=reviews, name="tiny")


@pytest.fixture()
def tiny() -> Dataset:
    return tiny_catalogue()

"""Serving fixtures: small trained artifacts on ml-latest-small and an in-process ASGI client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.models import registry
from lmrec.models.ease import EASE
from lmrec.models.popularity import Popularity
from lmrec.serving.app import create_app
from lmrec.serving.state import ServingConfig, ServingState
from tests.serving.doubles import REGISTRY_TARGET, TinyText

API_KEY = "test-key-123"


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """What ``lmrec serve`` does process-wide (configure_process), scoped to each test so that other
    test areas in the same run keep their thread settings. On a busy 2-core machine multithreaded
    BLAS on tiny matrices is 100x slower than one thread."""
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1, user_api="blas"):
        yield
    faiss.omp_set_num_threads(before)


AUTH = {"X-API-Key": API_KEY}


def item_ids(resp: Any) -> list:
    """The item ids of a /recommend-style response, in rank order."""
    return [it["item_id"] for it in resp.json()["items"]]


def _read_mls(data_home: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    root = data_home / "ml-latest-small"
    ratings = pl.read_csv(root / "ratings.csv").rename({"userId": "user_id", "movieId": "item_id"})
    movies = pl.read_csv(root / "movies.csv").rename({"movieId": "item_id"})
    return ratings, movies


@pytest.fixture(scope="session")
def mls_small(data_home: Path) -> tuple[Dataset, pl.DataFrame]:
    """ml-latest-small restricted to movies with >= 40 ratings (~450 items): real data, fast fits."""
    ratings, movies = _read_mls(data_home)
    popular = ratings.group_by("item_id").len().filter(pl.col("len") >= 40)["item_id"]
    ratings = ratings.filter(pl.col("item_id").is_in(popular.implode()))
    movies = movies.filter(pl.col("item_id").is_in(popular.implode()))
    return Dataset.from_frames(ratings, items=movies, name="mls-small"), movies


def _save(model: Any, path: Path, movies: pl.DataFrame) -> Path:
    model.save(path)
    movies.write_parquet(path / "catalog.parquet")
    return path


@pytest.fixture(scope="session")
def ease_artifact(tmp_path_factory: pytest.TempPathFactory, mls_small: tuple[Dataset, pl.DataFrame]) -> Path:
    data, movies = mls_small
    return _save(EASE(l2=100.0).fit(data), tmp_path_factory.mktemp("ease") / "model", movies)


@pytest.fixture(scope="session")
def pop_artifact(tmp_path_factory: pytest.TempPathFactory, mls_small: tuple[Dataset, pl.DataFrame]) -> Path:
    data, movies = mls_small
    return _save(Popularity().fit(data), tmp_path_factory.mktemp("pop") / "model", movies)


@pytest.fixture(scope="session")
def _tiny_text_registered() -> Iterator[None]:
    """The test double is registered (so artifacts load by name) only while serving tests run,
    never at import time: the registry-wide contract check must not see it."""
    registry.register_model(TinyText.name, REGISTRY_TARGET)
    yield
    registry._MODELS.pop(TinyText.name, None)


@pytest.fixture(scope="session")
def text_artifact(
    tmp_path_factory: pytest.TempPathFactory,
    mls_small: tuple[Dataset, pl.DataFrame],
    _tiny_text_registered: None,
) -> Path:
    data, movies = mls_small
    return _save(TinyText().fit(data), tmp_path_factory.mktemp("text") / "model", movies)


class ASGIClient:
    """A synchronous face on ``httpx.AsyncClient(transport=ASGITransport(app))``: the app runs in
    process, on a private event loop, with FastAPI's thread pool as in production."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.aclose())
            self._loop.close()


class Served:
    """A state + in-process client over one artifact and a private event log."""

    def __init__(self, artifact: Path, db: Path, *, warm: bool = True, **config: Any) -> None:
        config.setdefault("api_key", API_KEY)
        self.artifact = artifact
        self.db = db
        self.state = ServingState.from_artifact(artifact, db=db, config=ServingConfig(**config))
        if warm:  # what the lifespan does at start (an in-process ASGI client runs no lifespan)
            self.state.warm()
        self.client = ASGIClient(create_app(self.state))

    def close(self) -> None:
        self.client.close()
        self.state.close()


@pytest.fixture()
def serve(tmp_path: Path) -> Iterator[Any]:
    """``serve(artifact, **config)`` -> :class:`Served`; everything is closed after the test."""
    opened: list[Served] = []

    def _open(artifact: Path, db: Path | None = None, *, warm: bool = True, **config: Any) -> Served:
        s = Served(artifact, db or tmp_path / f"events-{len(opened)}.db", warm=warm, **config)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()

"""Non-personalised baselines: most popular and uniform random."""

from __future__ import annotations

import zlib
from typing import Any, Literal

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.models.base import ModelConfig, QueryBatch, Recommender


class PopularityConfig(ModelConfig):
    #: "users" counts distinct users per item; "interactions" counts events; "weight" sums weights
    count: Literal["users", "interactions", "weight"] = "users"


class Popularity(Recommender):
    """Ranks items by how many training users interacted with them.

    Counts come from the training interactions only (never validation/test). Ties are broken by
    internal item index, i.e. ascending external item id, by the shared top-k.
    """

    name = "popularity"
    Config = PopularityConfig
    config: PopularityConfig
    supports = frozenset(
        {"user", "history", "text"}
    )  # ignores who is asking; text queries get the popular list

    def _fit(self, data: Dataset) -> None:
        if self.config.count == "users":
            pop = data.item_popularity()
        elif self.config.count == "interactions":
            pop = np.bincount(data.interactions["item_idx"].to_numpy(), minlength=data.n_items)
        else:
            pop = np.asarray(data.csr("weight").sum(axis=0)).ravel()
        self.popularity_ = np.asarray(pop, dtype=np.float32)

    def _score(self, batch: QueryBatch) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(batch), batch.n_items))

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.popularity_ = tensors["popularity"]


class RandomConfig(ModelConfig):
    seed: int = 42


class RandomModel(Recommender):
    """Uniform random scores (a floor for every metric).

    Each query's scores come from a generator seeded by the config seed and the query's history
    and text, so the same query always gets the same list (and a saved model the same answers).
    """

    name = "random"
    Config = RandomConfig
    config: RandomConfig
    supports = frozenset({"user", "history", "text"})

    def _fit(self, data: Dataset) -> None:
        return None

    def _score(self, batch: QueryBatch) -> np.ndarray:
        out = np.empty((len(batch), batch.n_items), dtype=np.float32)
        for i in range(len(batch)):
            key = zlib.crc32(batch.sequences[i].astype(np.int64).tobytes() + (batch.texts[i] or "").encode())
            rng = np.random.default_rng([self.config.seed, key])
            out[i] = rng.random(batch.n_items, dtype=np.float32)
        return out

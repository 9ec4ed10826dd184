"""A tiny text-embedding model for serving tests (the real content model lives in lmrec.models).

Item vectors are hashed bag-of-words of the item's text, so they are deterministic, need no
download, and a new item can be encoded from its text at once (``add_items``): everything the
server does with an embedding model, at test speed.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.models.base import EmbeddingRecommender, ModelConfig, QueryBatch
from lmrec.rerank.explain import keywords_of

TEXT_COLUMNS = ("title", "genres", "description")


class TinyTextConfig(ModelConfig):
    dim: int = 32


def _hash_vec(text: str, dim: int) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    for w in keywords_of(text):
        h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        v[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def _row_text(row: dict[str, Any]) -> str:
    return " ".join(str(row[c]).replace("|", " ") for c in TEXT_COLUMNS if row.get(c) is not None)


class TinyText(EmbeddingRecommender):
    name = "tiny_text"
    Config = TinyTextConfig
    config: TinyTextConfig
    supports = frozenset({"user", "history", "text"})

    def _fit(self, data: Dataset) -> None:
        table = data.item_table()
        texts = [_row_text(r) for r in table.to_dicts()]
        self.vectors_ = np.stack([_hash_vec(t, self.config.dim) for t in texts]).astype(np.float32)

    def query_vectors(self, batch: QueryBatch) -> np.ndarray:
        out = np.zeros((len(batch), self.config.dim), np.float32)
        for i, (seq, text) in enumerate(zip(batch.sequences, batch.texts, strict=True)):
            if len(seq):
                out[i] += self.vectors_[seq].mean(axis=0)
            if text:
                out[i] += _hash_vec(text, self.config.dim)
        return out

    def item_vectors(self) -> np.ndarray:
        return self.vectors_

    def add_items(self, items: pl.DataFrame) -> None:
        assert self.item_vocab is not None
        self.item_vocab = self.item_vocab.extend(items["item_id"].to_list())
        new = np.stack([_hash_vec(_row_text(r), self.config.dim) for r in items.to_dicts()])
        self.vectors_ = np.concatenate([self.vectors_, new.astype(np.float32)])

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"vectors": self.vectors_}

    def _set_state(self, tensors: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.vectors_ = tensors["vectors"]


#: what the serving fixtures register while they need it (see tests/serving/conftest.py)
REGISTRY_TARGET = "tests.serving.doubles:TinyText"

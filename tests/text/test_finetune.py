"""LoRA fine-tuning of the text encoder on co-occurrence pairs: pairs, recall, the saved model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from lmrec.data.dataset import Dataset
from lmrec.errors import LmrecError
from lmrec.models.content import ContentRecommender
from lmrec.text.cache import EmbeddingCache
from lmrec.text.encoder import SentenceTransformerEncoder, get_encoder
from lmrec.text.finetune import MANIFEST, cooccurrence_pairs, finetune_encoder, pair_recall

torch.set_num_threads(1)


def _seqs(rows: list[tuple[int, list[int]]], n_items: int = 6) -> Dataset:
    inter = [(u, i, t) for u, seq in rows for t, i in enumerate(seq)]
    items = pl.DataFrame({"item_id": list(range(n_items)), "title": [f"item {i}" for i in range(n_items)]})
    df = pl.DataFrame(inter, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(df, items=items, name="seqs")


def _ext(data: Dataset, pairs: np.ndarray) -> set[tuple[int, int]]:
    ids = data.item_vocab.external(pairs.ravel()) if len(pairs) else []
    return {tuple(sorted(p)) for p in np.asarray(ids).reshape(-1, 2).tolist()}


def test_pairs_come_from_nearby_positions_once_each() -> None:
    data = _seqs([(0, [0, 1, 2, 3]), (1, [1, 0, 0, 5])])
    assert _ext(data, cooccurrence_pairs(data, window=1, max_pairs_per_item=99)) == {
        (0, 1),
        (1, 2),
        (2, 3),
        (0, 5),
    }  # (0, 1) twice -> once; (0, 0) is no pair
    assert (0, 2) in _ext(data, cooccurrence_pairs(data, window=2, max_pairs_per_item=99))


def test_pairs_cap_per_item_keeps_strongest_first() -> None:
    # item 0 co-occurs with everyone; (0, 1) is seen by three users, the rest once
    data = _seqs([(u, [0, 1]) for u in range(3)] + [(10 + j, [0, j]) for j in range(2, 6)])
    pairs = cooccurrence_pairs(data, window=1, max_pairs_per_item=2)
    counts = np.bincount(pairs.ravel(), minlength=data.n_items)
    assert counts.max() <= 2
    assert (0, 1) in _ext(data, pairs)


def test_pair_recall_known_answer() -> None:
    v = np.eye(4, dtype=np.float32)
    v[1] = v[0] * 0.8 + v[1] * 0.6  # items 0 and 1 are each other's nearest neighbours
    v[3] = -v[2]  # items 2 and 3 are each other's farthest
    assert pair_recall(v, np.array([[0, 1]]), k=1) == 1.0
    assert pair_recall(v, np.array([[2, 3]]), k=1) == 0.0
    assert pair_recall(v, np.array([[2, 3]]), k=3) == 1.0
    assert pair_recall(v, np.array([[0, 1], [2, 3]]), k=1) == 0.5


def test_finetune_saves_a_plain_encoder_with_its_own_vectors(tmp_path: Path, minilm, tiny) -> None:
    out = tmp_path / "ft"
    report = finetune_encoder(
        tiny,
        out,
        max_steps=3,
        batch_size=2,
        max_seq_length=16,
        lr=5e-3,
        valid_fraction=0.0,
        top_layers=1,
        show_progress=False,
    )
    assert report.steps == 3 and report.n_train_pairs == 3 and report.stopped_by == "max_steps"
    assert report.data_checksum == tiny.checksum() and report.base_model == minilm.model_id
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["weights_sha256"] == report.weights_sha256 and manifest["config"]["rank"] == 8
    assert (out / "model.safetensors").exists()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))

    tuned = get_encoder(str(out), device="cpu")
    assert isinstance(tuned, SentenceTransformerEncoder) and tuned.dim == 384
    assert tuned.model_id != minilm.model_id
    state = tuned.model.state_dict()
    assert "lora" not in json.dumps(list(state))  # merged: a plain model
    base_state = minilm.model.state_dict()
    changed = {k.split("layer.")[1].split(".")[0] for k in state if not torch.equal(state[k], base_state[k])}
    assert changed == {"5"}  # top_layers=1: only the last of MiniLM's six layers moved
    texts = ["Space Battle (1990). Genres: Sci-Fi, Action.", "Love in Paris (1992)."]
    a, b = minilm.encode(texts), tuned.encode(texts)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(a, b, atol=1e-4)  # the adapters changed the vectors

    # content model with the tuned encoder; the cache keeps its vectors apart from the base model's
    cache = tmp_path / "cache"
    base_model = ContentRecommender(device="cpu", cache_dir=str(cache)).fit(tiny)
    ft_model = ContentRecommender(encoder=str(out), device="cpu", cache_dir=str(cache)).fit(tiny)
    assert not np.allclose(base_model.item_vectors(), ft_model.item_vectors(), atol=1e-4)
    ec = EmbeddingCache(cache)
    assert ec.size(minilm.model_id) == tiny.n_items and ec.size(tuned.model_id) == tiny.n_items

    with pytest.raises(LmrecError, match="not empty"):
        finetune_encoder(tiny, out, max_steps=1)


def test_finetune_refuses_data_without_pairs(tmp_path: Path) -> None:
    data = _seqs([(0, [1]), (1, [2])])
    with pytest.raises(LmrecError, match="0 co-occurrence pairs"):
        finetune_encoder(data, tmp_path / "ft", max_steps=1)

"""TwoTower: learns (checkerboard, ml-100k subset), serves cold items by text, round-trips, configures."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from lmrec.data.dataset import Dataset
from lmrec.data.split import leave_last_out
from lmrec.errors import LmrecError, UnsupportedQueryError
from lmrec.models.base import Query, Recommender
from lmrec.models.popularity import Popularity
from lmrec.models.two_tower import TwoTower, TwoTowerConfig
from lmrec.testing import RecommenderContract
from tests.conftest import make_checkerboard

torch.set_num_threads(1)  # tiny models: extra threads only spin on a shared machine

#: fast settings: the model-free hashing text encoder, a small network, few epochs, no progress bar
FAST = {
    "dim": 16,
    "n_heads": 2,
    "n_layers": 1,
    "max_len": 12,
    "dropout": 0.0,
    "encoder": "hashing",
    # the checkerboard is a set, not a sequence (every history is in item order): half the windows
    # are shuffled so the user tower learns taste rather than "next id"
    "shuffle_prob": 0.5,
    "val_fraction": 0.0,
    "train": {"max_epochs": 15, "batch_size": 16, "lr": 1e-2, "progress_bar": False, "accelerator": "cpu"},
}


def _withheld_first(model: Recommender, data: Dataset) -> float:
    """Share of checkerboard users whose withheld item comes back first."""
    n_users, n_items = data.n_users, data.n_items
    recs = model.recommend(list(range(n_users)), k=1)
    hits = 0
    for u, item in zip(recs["user_id"].to_list(), recs["item_id"].to_list(), strict=True):
        half = [i for i in range(n_items) if i % 2 == u % 2]
        hits += item == half[u // 2 % len(half)]
    return hits / n_users


@pytest.mark.parametrize(
    "params",
    [
        {"fusion": "id_only", "user_encoder": "pool"},
        {"fusion": "sum", "user_encoder": "transformer"},
        {
            "fusion": "gate",
            "loss": "sampled_softmax",
            "n_negatives": 8,
            "hard_negatives": 2,
            "hard_negative_pool": 4,
        },
    ],
    ids=["id_only-pool", "sum-transformer", "gate-sampled-hard"],
)
def test_checkerboard_known_answer(checkerboard: Dataset, params: dict[str, object]) -> None:
    model = TwoTower(**{**FAST, **params}).fit(checkerboard)
    assert _withheld_first(model, checkerboard) >= 0.9
    assert model.report_ is not None and model.report_.epochs[-1].loss < model.report_.epochs[0].loss


def test_beats_popularity_on_ml100k_subset(ml100k: Dataset) -> None:
    """A real-data learning check: the first 200 users of ml-100k, leave-last-out, full ranking."""
    from lmrec.evaluation import evaluate

    inter = ml100k.interactions.filter(pl.col("user_id") <= 200).select("user_id", "item_id", "timestamp")
    split = leave_last_out(Dataset.from_frames(inter))
    pop = evaluate(Popularity().fit(split.train), split, ks=(10,)).metrics["ndcg@10"]
    model = TwoTower(
        dim=32,
        fusion="id_only",
        user_encoder="pool",
        max_len=20,
        dropout=0.1,
        train={"max_epochs": 8, "batch_size": 64, "lr": 5e-3, "progress_bar": False, "accelerator": "cpu"},
    )
    model.fit(split.train, valid=split.valid)
    ndcg = evaluate(model, split, ks=(10,)).metrics["ndcg@10"]
    assert model.report_ is not None and model.report_.best_metric is not None
    # measured: 0.056 vs popularity 0.029
    assert ndcg > pop * 1.3, f"two_tower {ndcg:.4f} vs popularity {pop:.4f}"


def _cold_catalogue() -> tuple[Dataset, list[int], list[int]]:
    """Checkerboard plus 6 catalogue items nobody interacted with; their titles say even/odd."""
    base = make_checkerboard()
    cold_even, cold_odd = [100, 102, 104], [101, 103, 105]
    items = pl.DataFrame(
        {
            "item_id": list(range(20)) + cold_even + cold_odd,
            "title": [f"{'even' if i % 2 == 0 else 'odd'} item" for i in range(20)]
            + ["even item"] * 3
            + ["odd item"] * 3,
        }
    )
    inter = base.interactions.select("user_id", "item_id", "timestamp")
    return Dataset.from_frames(inter, items=items), cold_even, cold_odd


def _cold_preference(model: TwoTower, data: Dataset, cold_even: list[int], cold_odd: list[int]) -> float:
    """Share of users who score their own group's cold items above the other group's."""
    scores = model.score(list(range(data.n_users)), items=cold_even + cold_odd)
    even_pref = scores[:, :3].mean(1) > scores[:, 3:].mean(1)
    is_even_user = np.arange(data.n_users) % 2 == 0
    return float((even_pref == is_even_user).mean())


def test_cold_items_served_by_text(tmp_path: Path) -> None:
    data, cold_even, cold_odd = _cold_catalogue()
    text_model = TwoTower(**{**FAST, "fusion": "sum", "id_dropout": 0.5}).fit(data)
    id_model = TwoTower(**{**FAST, "fusion": "id_only"}).fit(data)
    text_acc = _cold_preference(text_model, data, cold_even, cold_odd)
    id_acc = _cold_preference(id_model, data, cold_even, cold_odd)
    assert text_acc >= 0.9, text_acc
    assert text_acc > id_acc + 0.2, (text_acc, id_acc)
    # cold items have no ID part: their vector is the text path alone
    net = text_model.net
    assert net is not None and not bool(net.items.id_known[data.item_vocab.index(100) + 1])
    # without a text path the model does not list text queries, and refuses one in one line
    assert "text" in text_model.supports and "text" not in id_model.supports
    assert "text" not in Recommender.load(id_model.save(tmp_path / "m")).supports
    with pytest.raises(UnsupportedQueryError, match="no text path"):
        id_model.encode_queries([Query(text="an even item")])


def test_unseen_user_history_and_text_query(checkerboard: Dataset) -> None:
    model = TwoTower(**{**FAST, "fusion": "sum"}).fit(checkerboard)
    # an unseen user who watched odd items 1..15: the remaining odd items must lead
    recs = model.recommend(Query(history=[1, 3, 5, 7, 9, 11, 13, 15]), k=2)["item_id"].to_list()
    assert all(i % 2 == 1 for i in recs) and not set(recs) & {1, 3, 5, 7, 9, 11, 13, 15}
    # a text query travels through the item text path: "even" prefers even items
    text_recs = model.recommend({"text": "even item"}, k=5)["item_id"].to_list()
    assert sum(i % 2 == 0 for i in text_recs) >= 4
    # a known user's new events count at once, no retraining
    before = model.score(0)
    model.add_interactions(0, [1, 3, 5])
    assert not np.allclose(before, model.score(0))


def test_save_load_round_trip(tmp_path: Path, checkerboard: Dataset) -> None:
    model = TwoTower(**{**FAST, "fusion": "gate", "train": {**FAST["train"], "max_epochs": 3}}).fit(
        checkerboard
    )  # type: ignore[dict-item]
    path = model.save(tmp_path / "tt")
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "state.safetensors", "vocab.json"]
    loaded = Recommender.load(path)
    assert isinstance(loaded, TwoTower) and loaded.config == model.config
    queries = [0, 5, Query(history=[2, 4]), {"text": "odd item"}]
    np.testing.assert_allclose(loaded.score(queries), model.score(queries), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
    assert loaded.recommend(3, k=5).equals(model.recommend(3, k=5))


def test_config_from_toml_merges_train_defaults() -> None:
    cfg_path = Path(__file__).resolve().parents[2] / "configs" / "two_tower_ml100k.toml"
    doc = tomllib.loads(cfg_path.read_text())
    cfg = TwoTowerConfig(**doc["models"][0]["params"])
    assert cfg.train.max_epochs >= 10
    partial = TwoTowerConfig(train={"max_epochs": 3})  # type: ignore[arg-type]
    assert partial.train.max_epochs == 3 and partial.train.lr == TwoTowerConfig().train.lr
    with pytest.raises(ValueError):
        TwoTowerConfig(dim=30, n_heads=4)
    with pytest.raises(ValueError):
        TwoTowerConfig(fusion="id_only", hard_negatives=2)
    with pytest.raises(ValueError):
        TwoTowerConfig(unknown=1)  # type: ignore[call-arg]


def test_id_only_model_refuses_text_queries(checkerboard: Dataset) -> None:
    model = TwoTower(**{**FAST, "fusion": "id_only", "train": {**FAST["train"], "max_epochs": 1}}).fit(
        checkerboard
    )  # type: ignore[dict-item]
    with pytest.raises(LmrecError, match="no text path"):
        model.recommend({"text": "even"})


def test_faiss_ranker_gives_the_exact_answers(checkerboard: Dataset) -> None:
    """With an HNSW ranker recommend() goes through faiss: same answers as the exact path."""
    pytest.importorskip("faiss")
    from lmrec.ranking import IndexRanker

    model = TwoTower(**{**FAST, "fusion": "sum"}).fit(checkerboard)
    users = list(range(10))
    want = model.recommend(users, k=5, exclude=[0, 1])
    ranker = IndexRanker(kind="hnsw", seed=model.config.train.seed)
    got = model.set_ranker(ranker).recommend(users, k=5, exclude=[0, 1])
    assert ranker.index is not None and ranker.index.kind == "hnsw"
    assert got["item_id"].to_list() == want["item_id"].to_list()
    np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-4, atol=1e-5)
    assert got.columns == want.columns and got["rank"].to_list() == want["rank"].to_list()


def test_lora_fine_tunes_the_text_encoder(tmp_path: Path, checkerboard: Dataset) -> None:
    """LoRA on the real MiniLM (CPU, tiny): adapters learn, item text vectors move, text queries survive save/load."""
    pytest.importorskip("peft")
    params = {**FAST, "encoder": None, "fusion": "sum", "lora_rank": 2, "lora_batch": 4, "lora_lr": 1e-3}
    params["train"] = {**FAST["train"], "max_epochs": 2, "batch_size": 20}  # type: ignore[dict-item]
    model = TwoTower(**params).fit(checkerboard)
    net = model.net
    assert net is not None and net.text_encoder is None, "the encoder copy is dropped after training"
    assert model._lora_state and any("lora_B" in k for k in model._lora_state)
    assert any(np.abs(v).sum() > 0 for k, v in model._lora_state.items() if "lora_B" in k), (
        "adapters never moved"
    )
    frozen = model._encode(model._item_profile_texts(checkerboard))
    tuned = net.items.text_table[1:].numpy()
    assert np.abs(tuned - frozen).max() > 1e-4, "item text vectors must come from the adapted encoder"
    loaded = Recommender.load(model.save(tmp_path / "lora"))
    q = [{"text": "odd item"}, 3]
    np.testing.assert_allclose(loaded.score(q), model.score(q), rtol=1e-4, atol=1e-5)


def test_mixed_precision_path_on_cpu(checkerboard: Dataset) -> None:
    """The autocast path GPUs take (bf16 here, since CPUs have no fp16 autocast) trains and serves float32."""
    params = {**FAST, "fusion": "sum", "train": {**FAST["train"], "precision": "bf16-mixed"}}  # type: ignore[dict-item]
    model = TwoTower(**params).fit(checkerboard)
    assert model.report_ is not None and model.report_.precision == "bf16-mixed"
    assert _withheld_first(model, checkerboard) >= 0.9
    assert model.item_vectors().dtype == np.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_mixed_precision(checkerboard: Dataset) -> None:
    params = {**FAST, "fusion": "sum", "train": {**FAST["train"], "accelerator": "gpu"}}  # type: ignore[dict-item]
    model = TwoTower(**params).fit(checkerboard)
    assert model.report_ is not None and model.report_.precision in ("bf16-mixed", "16-mixed")
    assert _withheld_first(model, checkerboard) >= 0.9


def test_registry_name() -> None:
    from lmrec.models.registry import get_model_class

    assert get_model_class("two_tower") is TwoTower


class TestTwoTowerContract(RecommenderContract):
    """The shared contract (known answer, persistence, unseen users, exclusions, ...)."""

    model_factory = staticmethod(lambda: TwoTower(**{**FAST, "fusion": "sum"}))


class TestTwoTowerIdOnlyContract(RecommenderContract):
    model_factory = staticmethod(
        lambda: TwoTower(**{**FAST, "fusion": "id_only", "user_encoder": "pool", "shuffle_prob": 1.0})
    )

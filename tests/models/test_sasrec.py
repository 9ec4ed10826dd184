"""SASRec: learns sequential patterns, every loss variant, CL4SRec, text-only cold items, click head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lmrec.data.dataset import Dataset
from lmrec.data.split import cold_item, leave_last_out
from lmrec.evaluation import evaluate
from lmrec.models.base import Query, Recommender
from lmrec.models.popularity import Popularity
from lmrec.models.registry import create_model
from lmrec.models.sasrec import SASRec, SASRecConfig
from lmrec.nn.click import click_metrics, evaluate_click
from lmrec.testing import RecommenderContract, make_checkerboard

torch.set_num_threads(1)  # tiny models: extra threads only spin on a shared machine

N_CHAIN_ITEMS = 30


def chain_data(n_users: int = 120, length: int = 10, n_items: int = N_CHAIN_ITEMS, seed: int = 0) -> Dataset:
    """Every user walks the item cycle: item i is always followed by item i + 1 (mod n_items)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        rows += [(u, (start + j) % n_items, u * 100 + j) for j in range(length)]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(df, name="chain")


def small(**kw: Any) -> dict[str, Any]:
    """A tiny, fast configuration (the model defaults are sized for real data)."""
    train = {"max_epochs": 20, "batch_size": 32, "lr": 5e-3, "progress_bar": False, "accelerator": "cpu"}
    train.update(kw.pop("train", {}))
    base: dict[str, Any] = {"dim": 32, "max_len": 12, "n_blocks": 1, "dropout": 0.1, "train": train}
    return {**base, **kw}


def next_item_accuracy(model: Recommender, n: int = 60, length: int = 4, k: int = 1) -> float:
    """Share of chain histories (of ``length`` items) with the true next item in the top ``k``."""
    queries = [Query(history=[(s + j) % N_CHAIN_ITEMS for j in range(length)]) for s in range(n)]
    top = model.recommend(queries, k=k)["item_id"].to_numpy().reshape(n, k)
    want = np.array([(s + length) % N_CHAIN_ITEMS for s in range(n)])
    return float((top == want[:, None]).any(axis=1).mean())


@pytest.fixture(scope="module")
def chain() -> Dataset:
    return chain_data()


@pytest.fixture(scope="module")
def chain_model(chain: Dataset) -> SASRec:
    return SASRec(**small(click_head=True)).fit(chain)


# ---------------------------------------------------------------------------------------- learning
def test_learns_the_next_item_pattern(chain_model: SASRec) -> None:
    assert next_item_accuracy(chain_model) >= 0.9
    rep = chain_model.report_
    assert rep is not None and rep.n_epochs == 20
    assert rep.epochs[-1].loss < rep.epochs[0].loss - 1.0


def test_beats_popularity_under_the_evaluation_protocol() -> None:
    split = leave_last_out(chain_data(seed=1))
    model = SASRec(**small(click_head=True, train={"max_epochs": 40, "patience": 10}))
    model.fit(split.train, valid=split.valid)
    pop = Popularity().fit(split.train)
    ours = evaluate(model, split, ks=(10,), phase="test").metrics["ndcg@10"]
    base = evaluate(pop, split, ks=(10,), phase="test").metrics["ndcg@10"]
    assert ours > 0.8 > 0.3 > base
    rep = model.report_
    assert rep is not None and rep.best_epoch is not None and rep.best_metric is not None
    assert all(e.val_metric is not None for e in rep.epochs)
    # the click head on the same held-out next items, against 4 sampled unseen items each
    clicks = evaluate_click(model, split, n_negatives=4, seed=0)
    assert clicks["n_users"] == 120 and clicks["positive_rate"] == pytest.approx(0.2)
    assert clicks["auc"] > 0.9 and clicks["log_loss"] < 0.35 and clicks["recall"] > 0.5
    assert evaluate_click(model, split, n_negatives=4, seed=0) == clicks  # seeded


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "sampled_softmax", "n_negatives": 8},
        {"loss": "bce", "train": {"max_epochs": 30}},
        {"contrastive": True, "cl_weight": 0.1},
        {"n_heads": 2, "attn_dropout": 0.1, "label_smoothing": 0.05},
    ],
    ids=["sampled_softmax", "bce", "cl4srec", "two_heads"],
)
def test_variants_learn_the_pattern(chain: Dataset, params: dict[str, Any]) -> None:
    model = SASRec(**small(**params)).fit(chain)
    assert next_item_accuracy(model) >= 0.8


def test_validation_callback_and_early_stopping(chain: Dataset) -> None:
    split = leave_last_out(chain)
    seen: list[float] = []
    model = SASRec(**small(train={"max_epochs": 30, "patience": 2, "min_delta": 0.5}))

    class Trace(Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            # the callback sees the model mid-training and may call the public API
            assert model.recommend([0], k=3).height == 3
            seen.append(float(trainer.callback_metrics["val_ndcg@10"]))

    model.fit(split.train, valid=split.valid, callbacks=[Trace()])
    rep = model.report_
    assert rep is not None and rep.stopped_early and rep.n_epochs == 3
    # min_delta 0.5 makes every later improvement too small: the first epoch stays the best
    assert len(seen) == 3 and rep.best_metric == pytest.approx(seen[0]) and rep.best_epoch == 1


# ---------------------------------------------------------------------------------------- serving
def test_unseen_user_from_history_equals_known_user(chain: Dataset, chain_model: SASRec) -> None:
    user = 7
    history = chain.item_vocab.external(chain.sequences()[chain.user_vocab.index(user)])
    known = chain_model.recommend(Query(user_id=user), k=5)
    unseen = chain_model.recommend(Query(history=history), k=5)
    assert known["item_id"].to_list() == unseen["item_id"].to_list()
    np.testing.assert_allclose(known["score"].to_numpy(), unseen["score"].to_numpy(), rtol=1e-5)
    # a known user's new events count at once, without retraining
    nxt = (history[-1] + 1) % N_CHAIN_ITEMS
    later = chain_model.recommend(Query(user_id=user, history=[nxt]), k=1)
    assert later["item_id"].to_list() == [(nxt + 1) % N_CHAIN_ITEMS]


def test_long_histories_are_truncated_to_max_len(chain_model: SASRec) -> None:
    long = [i % N_CHAIN_ITEMS for i in range(3, 3 + 50)]
    a = chain_model.score(Query(history=long))
    b = chain_model.score(Query(history=long[-12:]))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_save_load_keeps_scores_and_click_head(chain_model: SASRec, tmp_path: Path) -> None:
    path = chain_model.save(tmp_path / "sasrec")
    loaded = Recommender.load(path)
    assert isinstance(loaded, SASRec) and loaded.config == chain_model.config
    queries = [0, 5, Query(history=[1, 2, 3])]
    np.testing.assert_allclose(loaded.score(queries), chain_model.score(queries), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        loaded.click_probability(queries, [4, 9]), chain_model.click_probability(queries, [4, 9]), rtol=1e-5
    )
    import json

    meta = json.loads((path / "model.json").read_text())
    assert meta["extra"]["training"]["n_epochs"] == 20


def test_click_head_separates_next_items_from_negatives(chain_model: SASRec) -> None:
    rng = np.random.default_rng(0)
    queries, cands, labels = [], [], []
    for s in range(N_CHAIN_ITEMS):
        hist = [(s + j) % N_CHAIN_ITEMS for j in range(4)]
        nxt = (s + 4) % N_CHAIN_ITEMS
        negs = [
            int(i)
            for i in rng.choice([i for i in range(N_CHAIN_ITEMS) if i not in [*hist, nxt]], 4, replace=False)
        ]
        queries.append(Query(history=hist))
        cands.append([nxt, *negs])
        labels.append([1, 0, 0, 0, 0])
    p = chain_model.click_probability(queries, cands)
    assert p.shape == (N_CHAIN_ITEMS, 5) and ((p >= 0) & (p <= 1)).all()
    m = click_metrics(np.ravel(labels), p.ravel())
    assert m["auc"] > 0.95 and m["log_loss"] < 0.4 and m["recall"] > 0.5


def test_click_probability_needs_the_head(chain: Dataset) -> None:
    model = SASRec(**small(train={"max_epochs": 1})).fit(chain)
    with pytest.raises(Exception, match="click_head=True"):
        model.click_probability([0], [1])


# ---------------------------------------------------------------------------------------- text
def _grouped_catalogue() -> tuple[Dataset, list[int]]:
    """Three groups of items with telling titles; users stay in one group; 3 items are never seen."""
    groups = ["crimson volcano", "azure glacier", "golden desert"]
    items = pl.DataFrame(
        {
            "item_id": list(range(30)),
            "title": [f"{groups[i // 10]} {groups[i // 10]} story {i}" for i in range(30)],
        }
    )
    cold = [9, 19, 29]
    rng = np.random.default_rng(0)
    rows = []
    for u in range(90):
        g = u % 3
        pool = [i for i in range(g * 10, g * 10 + 10) if i not in cold]
        rows += [(u, int(i), u * 100 + t) for t, i in enumerate(rng.choice(pool, 6, replace=False))]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(df, items=items, name="groups"), cold


@pytest.mark.parametrize("fusion", ["text_only", "sum"])
def test_text_path_ranks_items_never_seen_in_training(fusion: str) -> None:
    data, cold = _grouped_catalogue()
    extra = {"id_dropout": 0.3} if fusion == "sum" else {}
    model = SASRec(**small(fusion=fusion, encoder="hashing", **extra)).fit(data)
    assert model.encoder_id_ is not None and "hashing" in model.encoder_id_
    hits = 0
    for g in range(3):
        for start in range(3):
            hist = [g * 10 + start + j for j in range(3)]
            top = model.recommend(Query(history=hist), k=1, items=cold)["item_id"].item()
            hits += top == cold[g]
    assert hits >= 8  # of 9; chance is 3


def test_id_embeddings_initialised_from_text() -> None:
    data, _ = _grouped_catalogue()
    model = SASRec(**small(init_from_text=True, encoder="hashing", train={"max_epochs": 1}))
    model.fit(data)
    assert model.net is not None and model.net.items.fusion == "id_only"
    assert model.encoder_id_ is not None  # text was read, for the initialisation only
    # before training: same-group items start as neighbours
    torch.manual_seed(0)
    net = type(model.net)(model.config, 30, None, torch.ones(30, dtype=torch.bool), causal=True)
    from lmrec.text.encoder import shared_encoder
    from lmrec.text.profiles import build_item_texts

    text = shared_encoder("hashing", None).encode(build_item_texts(data))
    std = float(net.items.id_embedding.weight.detach().std())
    net.init_ids_from_text(text)
    w = torch.nn.functional.normalize(net.items.id_embedding.weight.detach()[1:31], dim=1)
    sim = (w @ w.T).numpy()
    group = np.arange(30) // 10
    same = sim[(group[:, None] == group[None]) & ~np.eye(30, dtype=bool)].mean()
    assert same > sim[group[:, None] != group[None]].mean() + 0.3
    assert float(net.items.id_embedding.weight.detach()[1:31].std()) == pytest.approx(std, rel=0.2)
    with pytest.raises(ValueError, match="text_only"):
        SASRecConfig(fusion="text_only", init_from_text=True)


def test_cold_item_split_with_text_only_beats_chance() -> None:
    data, _ = _grouped_catalogue()
    split = cold_item(data, item_fraction=0.2, seed=3)
    model = SASRec(**small(fusion="text_only", encoder="hashing")).fit(split.train)
    users = split.test["user_id"].unique().to_list()
    cold_ids = split.train.item_vocab.external(split.cold_items())
    recs = model.recommend(users, k=1, items=cold_ids)
    truth = set(zip(split.test["user_id"].to_list(), split.test["item_id"].to_list(), strict=True))
    hit_rate = np.mean([(u, i) in truth for u, i in zip(recs["user_id"], recs["item_id"], strict=True)])
    assert hit_rate > 2.0 * split.test.height / len(users) / len(cold_ids)


# ---------------------------------------------------------------------------------------- config
def test_config_validation_and_registry() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(dim=30, n_heads=4)
    with pytest.raises(ValueError, match="id_dropout"):
        SASRecConfig(fusion="id_only", id_dropout=0.2)
    with pytest.raises(ValueError, match="extra"):
        SASRecConfig(hidden=3)  # type: ignore[call-arg]
    # a partial train table keeps this model's defaults for the rest
    cfg = SASRecConfig(train={"max_epochs": 3})  # type: ignore[arg-type]
    assert cfg.train.max_epochs == 3 and cfg.train.batch_size == SASRecConfig().train.batch_size
    assert isinstance(create_model("sasrec", dim=16), SASRec)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_mixed_precision_training(chain: Dataset) -> None:
    model = SASRec(**small(train={"accelerator": "gpu", "precision": "bf16-mixed", "max_epochs": 20})).fit(
        chain
    )
    assert model.report_ is not None and model.report_.accelerator == "gpu"
    assert next_item_accuracy(model) >= 0.9


# ---------------------------------------------------------------------------------------- contract
def shuffled_checkerboard(n_users: int, n_items: int) -> Dataset:
    """The contract checkerboard with each user's events in a random order.

    The stock board lists every user's items in ascending id order, so a sequence model learns
    "item i is followed by item i + 2" and has nothing to say after a user's last item; in a random
    order the only signal is the one the known answer tests: items of one half follow each other.
    """
    board = make_checkerboard(n_users, n_items)
    rng = np.random.default_rng(0)
    inter = board.interactions.with_columns(pl.Series("timestamp", rng.permutation(board.n_interactions)))
    return Dataset.from_frames(
        inter.select("user_id", "item_id", "timestamp"), items=board.items, name="checkerboard"
    )


class TestSASRecContract(RecommenderContract):
    model_factory = staticmethod(lambda: SASRec(**small(train={"max_epochs": 30})))
    rtol = 1e-4

    @classmethod
    def contract_data(cls) -> Dataset:
        return shuffled_checkerboard(cls.n_users, cls.n_items)

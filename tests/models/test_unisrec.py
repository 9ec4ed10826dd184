"""UniSRec: adaptor shapes, inductive cold items, both modes, persistence, pre-train then fine-tune."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from lmrec.data.dataset import Dataset
from lmrec.models.base import Query, Recommender
from lmrec.models.registry import create_model
from lmrec.models.unisrec import UniSRec, UniSRecConfig
from lmrec.nn.adaptor import MoEAdaptor, ParametricWhitening
from lmrec.testing import RecommenderContract, make_checkerboard

torch.set_num_threads(1)


def small(**kw: Any) -> dict[str, Any]:
    """A tiny, fast configuration with the model-free hashing text encoder."""
    train = {"max_epochs": 20, "batch_size": 32, "lr": 5e-3, "progress_bar": False, "accelerator": "cpu"}
    train.update(kw.pop("train", {}))
    base: dict[str, Any] = {
        "dim": 32,
        "max_len": 12,
        "n_blocks": 1,
        "dropout": 0.1,
        "n_experts": 2,
        "adaptor_dropout": 0.0,
        "encoder": "hashing",
        "train": train,
    }
    return {**base, **kw}


def grouped_catalogue(seed: int = 0, shift: int = 0) -> tuple[Dataset, list[int]]:
    """Three groups of items with telling titles; users stay in one group; 3 items are never seen."""
    groups = ["crimson volcano", "azure glacier", "golden desert"]
    items = pl.DataFrame(
        {
            "item_id": [shift + i for i in range(30)],
            "title": [f"{groups[i // 10]} {groups[i // 10]} story {i}" for i in range(30)],
        }
    )
    cold = [9, 19, 29]
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(90):
        g = u % 3
        pool = [i for i in range(g * 10, g * 10 + 10) if i not in cold]
        rows += [(u, shift + int(i), u * 100 + t) for t, i in enumerate(rng.choice(pool, 6, replace=False))]
    df = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    return Dataset.from_frames(df, items=items, name=f"groups{shift}"), [shift + c for c in cold]


# ---------------------------------------------------------------------------------------- blocks
def test_whitening_and_moe_shapes() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 7, 48)
    pw = ParametricWhitening(48, 16)
    assert pw(x).shape == (5, 7, 16)
    moe = MoEAdaptor(48, 16, n_experts=3, dropout=0.1)
    assert moe(x).shape == (5, 7, 16)
    g = moe.gates(x)
    assert g.shape == (5, 7, 3) and torch.allclose(g.sum(-1), torch.ones(5, 7))
    # the gate starts even: the adaptor is then the mean of its experts
    moe.eval()
    mean = torch.stack([e(x) for e in moe.experts]).mean(0)
    assert torch.allclose(moe(x), mean, atol=1e-6)
    moe.init_bias(x.reshape(-1, 48).mean(0))
    assert torch.allclose(moe.whitening_experts[1].bias, x.reshape(-1, 48).mean(0))
    with pytest.raises(ValueError, match="n_experts"):
        MoEAdaptor(48, 16, n_experts=0)


def test_whitening_init_decorrelates_text() -> None:
    torch.manual_seed(0)
    text = torch.randn(200, 48) @ torch.randn(48, 48) + 3.0  # correlated, off-centre
    moe = MoEAdaptor(48, 16, n_experts=2, dropout=0.0)
    moe.init_whitening(text, noise=0.0, eps=0.0)
    y = moe(text).double()
    cov = torch.cov(y.T) / 0.01  # the projection is scaled by 0.1
    assert torch.allclose(y.mean(0), torch.zeros(16, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(cov, torch.eye(16, dtype=torch.float64), atol=1e-3)
    moe.init_whitening(text, noise=0.0)  # regularised: decorrelated, variances shrunk below 1
    cov = torch.cov(moe(text).double().T) / 0.01
    assert torch.allclose(cov, torch.diag(torch.diagonal(cov)), atol=1e-3)
    assert bool((torch.diagonal(cov) < 1.0).all())


def test_config_mode_sets_fusion() -> None:
    assert UniSRecConfig().fusion == "text_only"
    assert UniSRecConfig(mode="transductive").fusion == "sum"
    with pytest.raises(ValueError, match="implies fusion"):
        UniSRecConfig(mode="inductive", fusion="sum")
    with pytest.raises(ValueError, match="'full_ce' or 'sampled_softmax'"):  # UniSRec trains contrastively
        UniSRecConfig(loss="bce")
    cfg = UniSRecConfig(mode="transductive", train={"max_epochs": 3})  # type: ignore[arg-type]
    assert UniSRecConfig(**cfg.model_dump()) == cfg
    assert isinstance(create_model("unisrec", dim=16), UniSRec)


# ---------------------------------------------------------------------------------------- modes
@pytest.mark.parametrize(
    ("mode", "extra"),
    [("inductive", {}), ("transductive", {}), ("inductive", {"pop_debias": 1.0, "whitening_init": False})],
)
def test_recommends_items_never_seen_in_training(mode: str, extra: dict[str, Any]) -> None:
    data, cold = grouped_catalogue()
    model = UniSRec(**small(mode=mode, **extra)).fit(data)
    net = model.net
    assert net is not None and (net.items.id_embedding is None) == (mode == "inductive")
    hits = 0
    for g in range(3):
        for start in range(3):
            hist = [g * 10 + start + j for j in range(3)]
            top = model.recommend(Query(history=hist), k=1, items=cold)["item_id"].item()
            hits += top == cold[g]
    assert hits >= 8  # of 9; chance is 3
    if mode == "inductive":
        # over the whole catalogue, a cold item is ranked like any other (not pushed to the bottom)
        recs = model.recommend(Query(history=[0, 1, 2]), k=10)["item_id"].to_list()
        assert cold[0] in recs


def test_save_load_round_trip_identical(tmp_path: Path) -> None:
    data, _ = grouped_catalogue()
    model = UniSRec(**small(mode="transductive", train={"max_epochs": 2})).fit(data)
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, UniSRec) and loaded.config == model.config
    queries: list[Any] = [0, 5, Query(history=[20, 21, 25])]
    np.testing.assert_array_equal(loaded.score(queries), model.score(queries))
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())


def test_pretrain_then_finetune(tmp_path: Path) -> None:
    source, _ = grouped_catalogue(seed=1, shift=100)  # other item ids, the same kind of texts
    target, cold = grouped_catalogue(seed=2)
    model = UniSRec(**small(pretrain_epochs=2, freeze_encoder=True, train={"max_epochs": 2}))
    model.pretrain([source])
    assert model.pretrained_on_ == ["groups100"] and model.pretrain_report_.n_epochs == 2
    pre = {k: v.clone() for k, v in model._pretrained.items()}  # type: ignore[union-attr]
    assert any(k.startswith("items.text_proj.") for k in pre) and any(k.startswith("encoder.") for k in pre)
    model.fit(target)
    net = model.net
    assert net is not None
    state = net.state_dict()
    # the frozen transformer is the pre-trained one; the adaptor moved during fine-tuning
    for k in pre:
        if k.startswith("encoder."):
            torch.testing.assert_close(state[k], pre[k])
    assert any(not torch.equal(state[k], pre[k]) for k in pre if k.startswith("items.text_proj."))
    assert all(p.requires_grad for p in net.parameters())  # frozen for training only
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert loaded._get_extra()["pretrained_on"] == ["groups100"]  # type: ignore[attr-defined]
    assert loaded.recommend(Query(history=[0, 1]), k=3, items=cold).height == 3


def test_pretrain_on_names(monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = grouped_catalogue(seed=1, shift=100)
    seen: list[str] = []

    def fake_load(name: str) -> Dataset:
        seen.append(name)
        return source

    import lmrec.data.loaders

    monkeypatch.setattr(lmrec.data.loaders, "load_dataset", fake_load)
    target, _ = grouped_catalogue(seed=2)
    model = UniSRec(**small(pretrain_on=("other",), pretrain_epochs=1, train={"max_epochs": 1})).fit(target)
    assert seen == ["other"] and model.pretrained_on_ == ["groups100"]


def test_early_stopping_on_validation() -> None:
    from lmrec.data.split import cold_item

    data, _ = grouped_catalogue()
    split = cold_item(data, item_fraction=0.2, valid_fraction=0.2, seed=3)
    model = UniSRec(**small(train={"max_epochs": 6, "patience": 2}))
    model.fit(split.train, valid=split.valid)
    rep = model.report_
    assert rep is not None and rep.best_metric is not None and rep.best_metric > 0


# ---------------------------------------------------------------------------------------- contract
def shuffled_checkerboard(n_users: int, n_items: int) -> Dataset:
    board = make_checkerboard(n_users, n_items)
    rng = np.random.default_rng(0)
    inter = board.interactions.with_columns(pl.Series("timestamp", rng.permutation(board.n_interactions)))
    return Dataset.from_frames(
        inter.select("user_id", "item_id", "timestamp"), items=board.items, name="checkerboard"
    )


class TestUniSRecContract(RecommenderContract):
    model_factory = staticmethod(lambda: UniSRec(**small(mode="transductive", train={"max_epochs": 30})))
    rtol = 1e-4

    @classmethod
    def contract_data(cls) -> Dataset:
        return shuffled_checkerboard(cls.n_users, cls.n_items)


class TestUniSRecInductiveContract(RecommenderContract):
    model_factory = staticmethod(lambda: UniSRec(**small(mode="inductive", train={"max_epochs": 30})))
    known_answer = "half"
    rtol = 1e-4

    @classmethod
    def contract_data(cls) -> Dataset:
        return shuffled_checkerboard(cls.n_users, cls.n_items)


# ---------------------------------------------------------------------------------------- text residual
def test_text_residual_adds_the_content_similarity(tmp_path: Path) -> None:
    data, cold = grouped_catalogue()
    w = 0.7
    model = UniSRec(**small(train={"max_epochs": 2}, text_residual=w, text_residual_half_life=2.0)).fit(data)
    hist = [0, 1, 2, 15]
    with_residual = model.score([Query(history=hist)], cold)[0]
    saved = model.save(tmp_path / "m")
    plain = Recommender.load(saved)
    assert isinstance(plain, UniSRec)
    np.testing.assert_allclose(plain.score([Query(history=hist)], cold)[0], with_residual, rtol=1e-5)
    plain.config = plain.config.model_copy(update={"text_residual": 0.0})  # the same net, no residual
    base = plain.score([Query(history=hist)], cold)[0]
    # the residual, computed independently: centred raw text vectors, recency-weighted history mean
    from lmrec.text.encoder import get_encoder, l2_normalize
    from lmrec.text.profiles import build_item_texts

    raw = get_encoder("hashing").encode(build_item_texts(data, model.config.profile))
    c = l2_normalize(raw - raw.mean(axis=0))
    idx = data.item_vocab.indices(hist)
    h = l2_normalize((np.power(0.5, np.arange(len(idx) - 1, -1, -1) / 2.0)[:, None] * c[idx]).sum(0)[None])[0]
    expected = base + w * c[data.item_vocab.indices(cold)] @ h
    np.testing.assert_allclose(with_residual, expected, rtol=1e-4, atol=1e-5)
    assert model.item_vectors().shape[1] == plain.item_vectors().shape[1] + raw.shape[1]

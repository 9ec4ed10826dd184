"""The synthetic generator: exact sizes, streaming, determinism, realistic shape, learnable signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.loaders import load_dataset
from lmrec.data.loaders.own import add_dataset
from lmrec.data.split import leave_last_out
from lmrec.data.synthetic import SyntheticConfig, generate, load_synthetic
from lmrec.errors import LmrecError
from lmrec.evaluation import evaluate
from lmrec.models.registry import create_model


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out=out, n_interactions=40_000, n_items=3_000, chunk_rows=10_000, seed=3)
    return out


def test_writes_exact_counts_in_chunks(synth: Path) -> None:
    inter = pl.read_parquet(synth / "interactions.parquet")
    items = pl.read_parquet(synth / "items.parquet")
    cfg = SyntheticConfig(n_interactions=40_000, n_items=3_000)
    assert inter.columns == ["user_id", "item_id", "timestamp"]
    assert inter.height == 40_000
    assert inter["user_id"].n_unique() == cfg.users
    assert items.height == cfg.items and items["item_id"].is_unique().all()
    assert set(inter["item_id"].unique().to_list()) <= set(items["item_id"].to_list())
    # streamed: one row group per chunk of about chunk_rows events
    assert pq.ParquetFile(synth / "interactions.parquet").metadata.num_row_groups >= 4
    # one row per (user, item) pair; users in order, each user's events in time order
    assert not inter.select("user_id", "item_id").is_duplicated().any()
    assert inter["user_id"].is_sorted()
    assert inter.group_by("user_id").agg(pl.col("timestamp").is_sorted().alias("s"))["s"].all()
    assert inter["timestamp"].min() >= cfg.start


def test_long_tails(synth: Path) -> None:
    inter = pl.read_parquet(synth / "interactions.parquet")
    per_user = inter.group_by("user_id").len()["len"].to_numpy()
    per_item = np.sort(inter.group_by("item_id").len()["len"].to_numpy())[::-1]
    assert per_user.min() >= 5
    assert per_user.max() > 4 * np.median(per_user)  # heavy users
    top = per_item[: len(per_item) // 10].sum() / per_item.sum()
    assert top > 0.25  # the top 10% of items hold well over 10% of the events


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    a = generate(out=tmp_path / "a", n_interactions=5_000, seed=1)
    b = generate(out=tmp_path / "b", n_interactions=5_000, seed=1)
    c = generate(out=tmp_path / "c", n_interactions=5_000, seed=2)
    frames = [pl.read_parquet(s.folder / "interactions.parquet") for s in (a, b, c)]
    assert frames[0].equals(frames[1])
    assert not frames[0].equals(frames[2])
    items = [pl.read_parquet(s.folder / "items.parquet") for s in (a, b)]
    assert items[0].equals(items[1])


def test_default_shape_follows_ml20m() -> None:
    cfg = SyntheticConfig(n_interactions=20_000_263)
    assert (cfg.users, cfg.items) == (138_493, 27_278)
    small = SyntheticConfig(n_interactions=100_000)
    assert 600 < small.users < 1_000 and 1_500 < small.items < 2_500  # near ml-100k's 943 x 1,682


def test_impossible_sizes_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exceeds n_interactions"):
        SyntheticConfig(n_interactions=100, n_users=50)
    with pytest.raises(ValidationError, match="cannot hold"):
        SyntheticConfig(n_interactions=10_000, n_users=10, n_items=100)
    with pytest.raises(LmrecError, match="not both"):
        generate(SyntheticConfig(), tmp_path, seed=1)


def test_loadable_like_own_data(synth: Path, tmp_path: Path) -> None:
    data = load_synthetic(synth)
    assert data.n_interactions == 40_000
    assert data.items is not None and {"title", "description", "tags"} <= set(data.items.columns)
    assert data.repeated_pairs() == 0
    assert data.meta["synthetic"]["config"]["seed"] == 3
    add_dataset(
        "synth-test", synth / "interactions.parquet", items=synth / "items.parquet", data_dir=tmp_path
    )
    again = load_dataset("synth-test", tmp_path, download=False)
    assert again.n_interactions == data.n_interactions and again.n_items == data.n_items


def test_text_follows_topics(synth: Path) -> None:
    items = pl.read_parquet(synth / "items.parquet")
    # the first tag is the topic name; items of a topic share its words
    topic = items["tags"].str.split(", ").list.first()
    assert 10 <= topic.n_unique() <= 24
    space = items.filter(topic == "space")["description"].to_list()
    assert space and all(" space " in d for d in space)


def test_models_learn_and_text_carries_signal(synth: Path) -> None:
    """Validation NDCG@10: CF clearly beats popularity, content (model-free hashing encoder) beats random."""
    split = leave_last_out(load_synthetic(synth))

    def ndcg(name: str, **params: object) -> float:
        model = create_model(name, **params).fit(split.train)
        result = evaluate(model, split, ks=(10,), phase="valid", beyond_accuracy=False, auc=False)
        return result["ndcg@10"]

    pop, ease, rand = ndcg("popularity"), ndcg("ease"), ndcg("random")
    content = ndcg("content", encoder="hashing", show_progress=False)
    assert ease > 1.3 * pop
    assert content > 5 * rand


def test_cli_synth(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app, ["datasets", "synth", "--out", str(out), "--interactions", "3000", "--seed", "4"]
    )
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out / "interactions.parquet").height == 3000
    assert "3,000 interactions" in result.output
    bad = CliRunner().invoke(
        app, ["datasets", "synth", "--out", str(out), "--interactions", "10", "--users", "9"]
    )
    assert bad.exit_code == 2 and "exceeds n_interactions" in bad.output

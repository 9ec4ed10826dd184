"""DDP on two CPU processes (gloo): torchrun + ``lmrec train``, and Lightning's own launcher.

Each test starts two real processes (about 15-35 s, most of it importing torch twice); both run in
the default suite and can be picked alone with ``-m distributed``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lmrec._distributed import is_global_zero
from lmrec.data.loaders.own import add_dataset
from lmrec.data.split import split_validation
from lmrec.models.base import Recommender
from lmrec.nn.training import NeuralTrainConfig, _check_replicas, _strategy
from lmrec.nn.two_tower import next_item_windows
from lmrec.testing import _withheld, make_checkerboard

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONPATH": str(ROOT / "src")}
#: the two-tower settings of tests/nn/ddp_fit.py, as `lmrec train --set` overrides
TRAIN_SETS = {
    "encoder": "hashing",
    "dim": "16",
    "n_layers": "1",
    "max_len": "12",
    "dropout": "0.0",
    "shuffle_prob": "0.5",
    "val_fraction": "0.2",
    "train.max_epochs": "4",
    "train.batch_size": "16",
    "train.lr": "0.01",
    "train.progress_bar": "false",
    "train.accelerator": "cpu",
    "train.strategy": "ddp",
    "train.devices": "2",
    "train.process_group_backend": "gloo",
}


def _per_rank_batches(n_users: int, seed: int = 42) -> int:
    """Batches one of two ranks runs per epoch: half the training windows (DistributedSampler)."""
    data = make_checkerboard(n_users=n_users, n_items=20)
    train, _ = split_validation(data, None, 0.2, seed=seed)
    n_windows = next_item_windows(train.sequences(), 12)[0].shape[0]
    return math.ceil(math.ceil(n_windows / 2) / 16)


def _withheld_share(model: Recommender, n_users: int) -> float:
    recs = model.recommend(list(range(n_users)), k=1)
    hits = [item == _withheld(u, 20) for u, item in zip(recs["user_id"], recs["item_id"], strict=True)]
    return sum(hits) / n_users


@pytest.mark.distributed
def test_torchrun_lmrec_train_two_processes(tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m lmrec.cli train ... --set two_tower.train.strategy=ddp`."""
    data = make_checkerboard(n_users=100, n_items=20)
    data.interactions.select("user_id", "item_id", "timestamp").write_parquet(tmp_path / "inter.parquet")
    assert data.items is not None
    data.items.write_parquet(tmp_path / "items.parquet")
    home = tmp_path / "home"
    add_dataset("board", tmp_path / "inter.parquet", items=tmp_path / "items.parquet", data_dir=home)
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "lmrec.cli", "train", "-m", "two_tower", "-d", "board", "--data-dir", str(home)]
    cmd += ["-o", str(out)]
    for key, value in TRAIN_SETS.items():
        cmd += ["--set", f"two_tower.{key}={value}"]
    run = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    saved = [line for line in run.stdout.splitlines() if line.startswith("saved")]
    assert len(saved) == 1 and "2 processes" in saved[0], run.stdout  # rank 1 neither saves nor prints
    report = json.loads((out / "model.json").read_text())["extra"]["report"]
    assert report["strategy"] == "ddp" and report["world_size"] == 2 and report["global_rank"] == 0
    epochs = report["epochs"]
    assert len(epochs) == 4 and epochs[-1]["loss"] < epochs[0]["loss"]
    assert all(e["batches"] == _per_rank_batches(100) for e in epochs)  # each rank ran half
    assert all(e["val_metric"] is not None for e in epochs)  # validated on rank 0, broadcast
    assert _withheld_share(Recommender.load(out), 100) >= 0.9


@pytest.mark.distributed
def test_lightning_launcher_ranks_agree(tmp_path: Path) -> None:
    """`strategy="ddp", devices=2` from a script: Lightning re-runs it for rank 1; same weights."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "nn" / "ddp_fit.py"), str(tmp_path)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["report"]["global_rank"] for r in ranks] == [0, 1]
    assert {r["report"]["world_size"] for r in ranks} == {2}
    assert ranks[0]["digest"] == ranks[1]["digest"]  # identical weights on both ranks
    assert ranks[0]["top1"] == ranks[1]["top1"]
    # the metric is broadcast and the loss averaged: both ranks report the same training
    assert ranks[0]["report"]["epochs"] == [
        {**e, "seconds": ranks[0]["report"]["epochs"][i]["seconds"],
         "val_seconds": ranks[0]["report"]["epochs"][i]["val_seconds"]}
        for i, e in enumerate(ranks[1]["report"]["epochs"])
    ]  # fmt: skip
    assert ranks[0]["report"]["best_epoch"] == ranks[1]["report"]["best_epoch"]
    hits = [item == _withheld(u, 20) for u, item in enumerate(ranks[0]["top1"])]
    assert sum(hits) / len(hits) >= 0.9


# ---------------------------------------------------------------------- configuration, in process
@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_notebook", "ddp_fork"])
def test_spawning_strategies_are_refused(strategy: str) -> None:
    with pytest.raises(ValueError, match="returns only the weights"):
        NeuralTrainConfig(strategy=strategy)


def test_backend_needs_ddp_and_nccl_needs_gpu() -> None:
    with pytest.raises(ValueError, match="applies to strategy 'ddp'"):
        NeuralTrainConfig(process_group_backend="gloo")
    with pytest.raises(ValueError, match="needs GPUs"):
        NeuralTrainConfig(strategy="ddp", accelerator="cpu", process_group_backend="nccl")
    strategy = _strategy(NeuralTrainConfig(strategy="ddp", process_group_backend="gloo"))
    assert strategy.process_group_backend == "gloo"
    assert _strategy(NeuralTrainConfig(strategy="ddp")) == "ddp"  # Lightning picks gloo/nccl


def test_diverged_replicas_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-of-fit check, with a fake all-gather in which rank 1's weights differ from rank 0's."""
    import torch.distributed as dist

    def gather(out: list[torch.Tensor], local: torch.Tensor) -> None:
        out[0].copy_(local)
        out[1].copy_(local + offset)

    monkeypatch.setattr(dist, "all_gather", gather)
    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    offset = 0.0
    _check_replicas(torch.nn.Linear(3, 2), trainer)  # type: ignore[arg-type]
    offset = 1e-6
    with pytest.raises(RuntimeError, match=r"DDP ranks \[1\] ended training with weights different"):
        _check_replicas(torch.nn.Linear(3, 2), trainer)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"RANK": "3", "LOCAL_RANK": "1"}, False),
        ({"LOCAL_RANK": "1"}, False),  # a child of Lightning's launcher
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
    ],
)
def test_is_global_zero_from_the_launchers_environment(
    env: dict[str, str], zero: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_global_zero() is zero

"""The shared Lightning path: seeding, early stopping, best-weight restore, validation helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lmrec.nn.training import NeuralTrainConfig, RecLightningModule, fit_module, resolve_precision, seed_all

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine


class _Regression(RecLightningModule):
    def __init__(self, cfg: NeuralTrainConfig) -> None:
        super().__init__(cfg)
        self.lin = torch.nn.Linear(3, 1)

    def compute_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return ((self.lin(x).squeeze(-1) - y) ** 2).mean()


def _loader() -> tuple[DataLoader, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True), x, y


def _cfg(**kw: object) -> NeuralTrainConfig:
    base: dict[str, object] = {
        "max_epochs": 15,
        "lr": 0.05,
        "patience": 3,
        "progress_bar": False,
        "accelerator": "cpu",
    }
    return NeuralTrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_learns_and_reports() -> None:
    loader, x, y = _loader()
    cfg = _cfg()
    module = _Regression(cfg)
    report = fit_module(module, loader, lambda m: -float(((m.lin(x).squeeze(-1) - y) ** 2).mean()), cfg)
    assert report.n_epochs == 15 and not report.stopped_early
    assert report.epochs[-1].loss < report.epochs[0].loss / 10
    assert report.best_metric is not None and report.best_metric > -0.01
    assert all(e.seconds > 0 and e.val_metric is not None for e in report.epochs)
    assert report.precision == "32-true" and report.accelerator == "cpu"
    assert not module.training, "fit_module hands back an eval-mode module"


def test_early_stopping_restores_best_weights() -> None:
    loader, _, _ = _loader()
    cfg = _cfg(max_epochs=30, patience=2)
    module = _Regression(cfg)
    snapshots: list[torch.Tensor] = []
    # a metric that peaks at epoch 3 and then falls: training must stop 2 validations later
    curve = [0.1, 0.2, 0.3, 0.5, 0.4, 0.3, 0.2, 0.1]

    def val(m: _Regression) -> float:
        snapshots.append(m.lin.weight.detach().clone())
        return curve[len(snapshots) - 1]

    report = fit_module(module, loader, val, cfg)
    assert report.stopped_early and report.n_epochs == 6
    assert report.best_epoch == 4 and report.best_metric == 0.5  # 1-based: after the 4th epoch
    torch.testing.assert_close(module.lin.weight, snapshots[3])


def test_seeded_runs_repeat_and_val_every() -> None:
    weights = []
    calls = []
    for _ in range(2):
        loader, _, _ = _loader()
        cfg = _cfg(max_epochs=5, val_every=2, seed=7)
        seed_all(cfg.seed)  # the documented order: seed, build the module, fit
        module = _Regression(cfg)
        report = fit_module(module, loader, lambda m: calls.append(1) or 0.0, cfg)
        weights.append(module.lin.weight.detach().clone())
        assert [e.val_metric is not None for e in report.epochs] == [False, True, False, True, True]
    torch.testing.assert_close(weights[0], weights[1])


def test_checkpoint_dir_writes_resume_point(tmp_path: Path) -> None:
    loader, _, _ = _loader()
    cfg = _cfg(max_epochs=2, checkpoint_dir=str(tmp_path / "ckpt"))
    fit_module(_Regression(cfg), loader, None, cfg)
    assert (tmp_path / "ckpt" / "last.ckpt").exists()
    resumed = _cfg(max_epochs=3, checkpoint_dir=str(tmp_path / "ckpt"), resume=True)
    report = fit_module(_Regression(resumed), loader, None, resumed)
    assert [e.epoch for e in report.epochs] == [2], "resumes after the 2 finished epochs"


def test_precision_resolution() -> None:
    assert resolve_precision(NeuralTrainConfig(), "cpu") == "32-true"
    assert resolve_precision(NeuralTrainConfig(precision="bf16-mixed"), "cpu") == "bf16-mixed"
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_precision(NeuralTrainConfig(precision="16-mixed"), "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            fit_module(_Regression(_cfg()), _loader()[0], None, _cfg(accelerator="gpu"))
    with pytest.raises(ValueError):
        NeuralTrainConfig(unknown_key=1)  # type: ignore[call-arg]

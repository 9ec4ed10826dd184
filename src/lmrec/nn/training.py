"""The one Lightning training path for every neural lmrec model (two-tower, SASRec, BERT4Rec).

API
---
``NeuralTrainConfig`` (pydantic, frozen, unknown keys rejected)
    The training fragment a model config embeds as ``train: NeuralTrainConfig = NeuralTrainConfig()``
    (TOML: a ``[model.train]`` table). Fields: ``max_epochs, batch_size, lr, weight_decay,
    patience, min_delta, val_every, grad_clip, accelerator ("auto"|"cpu"|"gpu"), devices,
    num_nodes, strategy ("auto"|"ddp"|...), process_group_backend ("auto"|"gloo"|"nccl"),
    precision ("auto"|"32"|"16-mixed"|"bf16-mixed"), seed, num_workers, checkpoint_dir, resume,
    progress_bar``. ``precision="auto"`` is 32-bit on CPU and mixed (bf16 where the GPU supports
    it, else fp16) on GPU.

Distributed data parallel (``strategy="ddp"``)
    Every process runs the whole program (load, split, encode, build) and Lightning wraps the
    network in DDP: a ``DistributedSampler`` (or, for SASRec's bucketed batches, a
    ``BucketBatchSampler`` around one) gives each rank its own shard of the training windows,
    gradients are averaged, so the weights stay identical on every rank. Validation runs on
    global rank 0 and its metric is broadcast, so every rank keeps the same best epoch and stops
    at the same time; the epoch loss in the report is the mean over ranks. The processes come from
    ``torchrun`` (its environment variables are read by Lightning) or from Lightning's own
    launcher, which re-runs the command line once per extra device. Spawn-style strategies
    (``ddp_spawn``, ``ddp_notebook``, ``ddp_fork``) are refused: they return only the weights to
    the calling process, not the early-stopping state and report. Only global rank 0 should write
    artifacts (:func:`lmrec._distributed.is_global_zero`; ``lmrec train`` does so).

``RecLightningModule(train_cfg)``
    Base ``LightningModule``. Subclasses implement ``compute_loss(batch) -> Tensor`` and nothing
    else for training; ``training_step`` and ``configure_optimizers`` (AdamW; no weight decay on
    biases/norms, i.e. parameters with fewer than 2 dimensions, or on names listed in
    ``no_decay_names``) are shared; ``optimizer_groups(exclude_prefixes)`` lets a subclass add a
    parameter group of its own (e.g. LoRA adapters) without rewriting the rest.

``fit_module(module, train_dataloader, val_callback=None, cfg=None, callbacks=()) -> TrainingReport``
    Seeds everything (``lightning.seed_everything``), builds a quiet ``Trainer`` (no logger, no
    model summary, no sanity check, checkpointing only when ``checkpoint_dir`` is set), trains,
    calls ``val_callback(module) -> float`` (a higher-is-better metric, NDCG@10 by convention;
    run in eval mode under ``no_grad`` on global rank 0 and broadcast, so DDP ranks agree) every
    ``val_every`` epochs, early-stops after ``patience`` validations without improvement, restores
    the best weights (kept in memory, never pickled) and returns per-epoch loss, metric and wall
    time. After each validation the metric is ``trainer.callback_metrics["val_ndcg@10"]`` (a
    tensor), so extra Lightning ``callbacks`` (run after the early-stopping one, e.g. an Optuna
    pruner) can read it in ``on_train_epoch_end``; an exception they raise ends ``fit_module``.
    ``TrainingReport.best_epoch`` counts epochs from 1: the weights kept are those after that many
    epochs (without validation: the last epoch), so a refit can train exactly that long. Lightning's own ``.ckpt`` files (with ``checkpoint_dir``) are transient resume points only;
    a fitted model is saved with ``Recommender.save`` (safetensors + JSON).

Validation data
    Models get it through ``NeuralRecommender.fit(data, *, valid=None, callbacks=())``
    (:mod:`lmrec.models.neural`); the split rule lives in :func:`lmrec.data.split.split_validation` and
    the validation metric in :func:`lmrec.evaluation.metrics.validation_metrics`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "EpochRecord",
    "NeuralTrainConfig",
    "RecLightningModule",
    "TrainingReport",
    "fit_module",
    "resolve_accelerator",
    "resolve_precision",
    "seed_all",
]


class NeuralTrainConfig(BaseModel):
    """How to train (not what to train): shared by every neural model's config as ``train``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    #: validations without improvement before stopping (counted in validations, not epochs)
    patience: int = Field(default=5, ge=1)
    #: improvement smaller than this does not reset patience
    min_delta: float = Field(default=0.0, ge=0)
    #: validate every this many epochs
    val_every: int = Field(default=1, ge=1)
    #: clip the gradient norm (None: no clipping)
    grad_clip: float | None = Field(default=None, gt=0)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    #: devices per node: "auto", a count, or a list of GPU ids
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(default=1, ge=1)
    #: Lightning strategy: "auto" (one process) or "ddp" (one process per device, on every node;
    #: launched by torchrun or by Lightning itself); spawn-style strategies are refused (module doc)
    strategy: str = "auto"
    #: DDP process-group backend: "auto" is gloo on CPU and nccl on GPU
    process_group_backend: Literal["auto", "gloo", "nccl"] = "auto"
    #: "auto": 32-bit on CPU, bf16-mixed (or 16-mixed if bf16 is unsupported) on GPU
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = "auto"
    seed: int = 42
    num_workers: int = Field(default=0, ge=0)
    #: where Lightning writes its transient resume checkpoint (last.ckpt); None: no checkpoints
    checkpoint_dir: str | None = None
    #: resume from checkpoint_dir/last.ckpt when it exists
    resume: bool = False
    progress_bar: bool = True

    @field_validator("strategy")
    @classmethod
    def _known_launch(cls, v: str) -> str:
        if any(word in v for word in _SPAWNING):
            raise ValueError(
                f"strategy {v!r} starts its processes from inside fit and returns only the weights "
                "(not the early-stopping state); use 'ddp', launched by torchrun or Lightning"
            )
        return v

    @model_validator(mode="after")
    def _backend_fits(self) -> Self:
        if self.process_group_backend == "nccl" and self.accelerator == "cpu":
            raise ValueError("process_group_backend 'nccl' needs GPUs; on CPU use 'gloo' or 'auto'")
        if self.process_group_backend != "auto" and self.strategy != "ddp":
            raise ValueError(
                f"process_group_backend applies to strategy 'ddp', not {self.strategy!r}; set both or neither"
            )
        return self


#: strategy names whose launcher forks or spawns inside ``Trainer.fit``
_SPAWNING = ("spawn", "fork", "notebook")


# ---------------------------------------------------------------------- device / precision
def resolve_accelerator(cfg: NeuralTrainConfig) -> str:
    """ "auto" means CUDA when present, else CPU (never MPS by surprise)."""
    if cfg.accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if cfg.accelerator == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("train.accelerator = 'gpu' but no CUDA device is available; use 'auto' or 'cpu'")
    return cfg.accelerator


def resolve_precision(cfg: NeuralTrainConfig, accelerator: str) -> str:
    """Lightning precision string for the config on this accelerator."""
    if cfg.precision == "auto":
        if accelerator == "gpu":
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"
    if cfg.precision == "32":
        return "32-true"
    if cfg.precision == "16-mixed" and accelerator == "cpu":
        raise ValueError("precision '16-mixed' needs a GPU; on CPU use '32' or 'bf16-mixed'")
    return cfg.precision


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (call before building a module so initial weights repeat)."""
    L.seed_everything(seed, workers=True, verbose=False)


# ---------------------------------------------------------------------- the module base
class RecLightningModule(L.LightningModule):
    """Base for every neural model's network: subclasses write ``compute_loss(batch)``."""

    #: parameter-name substrings excluded from weight decay (besides every <2-d parameter)
    no_decay_names: tuple[str, ...] = ()

    def __init__(self, train_cfg: NeuralTrainConfig | None = None) -> None:
        super().__init__()
        self.train_cfg = train_cfg or NeuralTrainConfig()

    def compute_loss(self, batch: Any) -> torch.Tensor:
        """Scalar training loss for one batch (the only method a subclass must write)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss(batch)")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{type(self).__name__}: non-finite training loss at epoch {self.current_epoch}, "
                f"batch {batch_idx}; lower train.lr or use precision '32'"
            )
        return loss

    def optimizer_groups(self, exclude_prefixes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """AdamW parameter groups: decayed weights, and undecayed biases/norms/``no_decay_names``.

        Parameters whose names start with one of ``exclude_prefixes`` are left out, so an override
        can put them in a group of its own (e.g. LoRA adapters with their own learning rate).
        """
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad or (exclude_prefixes and name.startswith(exclude_prefixes)):
                continue
            if p.ndim < 2 or any(s in name for s in self.no_decay_names):
                no_decay.append(p)
            else:
                decay.append(p)
        groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": self.train_cfg.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.optimizer_groups(), lr=self.train_cfg.lr)


# ---------------------------------------------------------------------- report
@dataclass
class EpochRecord:
    epoch: int
    loss: float
    seconds: float
    val_metric: float | None = None
    val_seconds: float | None = None
    #: training batches this process ran (under DDP: its shard, about 1/world_size of them)
    batches: int = 0


@dataclass
class TrainingReport:
    """What happened during ``fit_module``: per-epoch loss/metric/time and the epoch kept."""

    epochs: list[EpochRecord] = field(default_factory=list)
    metric_name: str = "val_ndcg@10"
    #: epochs (counted from 1) behind the weights kept: the best validation round, or the last epoch
    best_epoch: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    fit_seconds: float = 0.0
    accelerator: str = "cpu"
    precision: str = "32-true"
    strategy: str = "auto"
    #: processes that trained together (DDP ranks over all nodes; 1 without DDP)
    world_size: int = 1
    #: this process's rank among them (0 writes artifacts)
    global_rank: int = 0

    @property
    def n_epochs(self) -> int:
        return len(self.epochs)

    @property
    def mean_epoch_seconds(self) -> float:
        """Mean training wall time per epoch (validation excluded)."""
        return float(np.mean([e.seconds for e in self.epochs])) if self.epochs else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["n_epochs"] = self.n_epochs
        out["mean_epoch_seconds"] = self.mean_epoch_seconds
        return out


class _EarlyStopBest(Callback):
    """Validate, track the best weights in memory, stop after ``patience`` bad validations.

    Lightning's EarlyStopping + ModelCheckpoint would do the same through pickled files; the best
    state here is a plain tensor dict (and is part of the transient resume checkpoint).
    """

    def __init__(
        self, val_callback: Callable[[Any], float] | None, cfg: NeuralTrainConfig, report: TrainingReport
    ) -> None:
        self.val_callback = val_callback
        self.cfg = cfg
        self.report = report
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_rounds = 0
        self._t0 = 0.0
        self._loss_sum = 0.0
        self._loss_n = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self._loss_sum, self._loss_n = 0.0, 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss_sum += float(loss.detach())
            self._loss_n += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._t0
        epoch = trainer.current_epoch
        loss = self._loss_sum / max(self._loss_n, 1)
        if trainer.world_size > 1:  # each rank saw its own shard: report the mean over ranks
            mean = trainer.strategy.reduce(torch.tensor(loss, device=pl_module.device), reduce_op="mean")
            loss = float(mean)
        rec = EpochRecord(epoch=epoch, loss=loss, seconds=seconds, batches=self._loss_n)
        self.report.epochs.append(rec)
        if self.val_callback is None:
            return
        if (epoch + 1) % self.cfg.val_every and epoch + 1 < (trainer.max_epochs or 0):
            return
        t0 = time.perf_counter()
        metric = float("nan")
        if trainer.is_global_zero:
            was_training = pl_module.training
            pl_module.eval()
            try:
                with torch.no_grad():
                    metric = float(self.val_callback(pl_module))
            finally:
                pl_module.train(was_training)
        metric = float(trainer.strategy.broadcast(metric, src=0))
        rec.val_metric = metric
        rec.val_seconds = time.perf_counter() - t0
        pl_module.log(self.report.metric_name, metric, prog_bar=True, logger=False, sync_dist=True)
        # set directly so that the callbacks running after this one in the same hook (a pruner)
        # read this round's value, whenever Lightning itself folds logged values in
        trainer.callback_metrics[self.report.metric_name] = torch.tensor(metric)
        best = self.report.best_metric
        if (
            best is None
            or metric > best + self.cfg.min_delta
            or (math.isnan(best) and not math.isnan(metric))
        ):
            self.report.best_metric = metric
            self.report.best_epoch = epoch + 1
            self.bad_rounds = 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}
        else:
            self.bad_rounds += 1
            if self.bad_rounds >= self.cfg.patience:
                self.report.stopped_early = True
                trainer.should_stop = True

    # transient resume checkpoints carry the early-stopping state too
    def state_dict(self) -> dict[str, Any]:
        return {
            "best_metric": self.report.best_metric,
            "best_epoch": self.report.best_epoch,
            "bad_rounds": self.bad_rounds,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.report.best_metric = state_dict.get("best_metric")
        self.report.best_epoch = state_dict.get("best_epoch")
        self.bad_rounds = int(state_dict.get("bad_rounds", 0))
        self.best_state = state_dict.get("best_state")


def _quiet_lightning() -> None:
    # "GPU available: False, used: False" and friends: not useful inside a library call
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "lightning.fabric.utilities.seed",
        "lightning.fabric.utilities.distributed",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


def fit_module(
    module: RecLightningModule,
    train_dataloader: Any,
    val_callback: Callable[[Any], float] | None = None,
    cfg: NeuralTrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainingReport:
    """Train ``module`` with the shared recipe; returns what happened (see the module docstring)."""
    cfg = cfg or module.train_cfg
    module.train_cfg = cfg
    seed_all(cfg.seed)
    _quiet_lightning()
    accelerator = resolve_accelerator(cfg)
    precision = resolve_precision(cfg, accelerator)
    report = TrainingReport(accelerator=accelerator, precision=precision, strategy=cfg.strategy)
    stopper = _EarlyStopBest(val_callback, cfg, report)
    all_callbacks: list[Callback] = [stopper, *callbacks]
    if cfg.progress_bar:
        all_callbacks.append(TQDMProgressBar(refresh_rate=max(1, _n_batches(train_dataloader) // 20)))
    ckpt_path = None
    if cfg.checkpoint_dir:
        Path(cfg.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        all_callbacks.append(
            ModelCheckpoint(
                dirpath=cfg.checkpoint_dir,
                filename="last",
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
            )
        )
        last = Path(cfg.checkpoint_dir) / "last.ckpt"
        if cfg.resume and last.exists():
            ckpt_path = str(last)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg),
        precision=precision,  # type: ignore[arg-type]
        max_epochs=cfg.max_epochs,
        logger=False,
        callbacks=all_callbacks,
        enable_checkpointing=bool(cfg.checkpoint_dir),
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        gradient_clip_val=cfg.grad_clip,
        default_root_dir=cfg.checkpoint_dir,
        deterministic=False,
    )
    module.train()  # pretrained submodules (e.g. a text encoder) may arrive in eval mode
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=train_dataloader, ckpt_path=ckpt_path)
    report.fit_seconds = time.perf_counter() - t0
    report.world_size, report.global_rank = trainer.world_size, trainer.global_rank
    if stopper.best_state is not None:
        module.load_state_dict(stopper.best_state)
    elif report.best_epoch is None:
        report.best_epoch = report.n_epochs  # nothing validated: the final weights are kept
    if trainer.world_size > 1:
        _check_replicas(module, trainer)
    module.eval()
    return report


def _check_replicas(module: L.LightningModule, trainer: L.Trainer) -> None:
    """Every DDP rank must end with the same weights (rank 0 saves them; the others may serve).

    DDP keeps them equal by construction (one initial broadcast, averaged gradients, the same
    optimizer steps, and one best epoch, since the validation metric is broadcast); a fingerprint
    per rank (two float64 sums over every tensor) costs one small all-gather and turns a silent
    divergence (a rank-dependent branch in a model, say) into an error.
    """
    sums = torch.zeros(2, dtype=torch.float64)
    for i, tensor in enumerate(module.state_dict().values()):
        if tensor.is_floating_point():
            values = tensor.detach().to("cpu", torch.float64).flatten()
            sums[0] += values.sum()
            sums[1] += (values * (1 + (i % 7))).square().sum()  # weights tensors differently
    # root_device: after fit the module is back on the CPU, but nccl gathers CUDA tensors
    import torch.distributed as dist

    local = sums.to(trainer.strategy.root_device)
    gathered = [torch.zeros_like(local) for _ in range(trainer.world_size)]
    dist.all_gather(gathered, local)
    differing = [r for r, g in enumerate(gathered) if not torch.equal(g, gathered[0])]
    if differing:
        raise RuntimeError(
            f"DDP ranks {differing} ended training with weights different from rank 0's; "
            "a model whose forward pass depends on the rank cannot be trained with strategy 'ddp'"
        )


def _strategy(cfg: NeuralTrainConfig) -> Any:
    """The Lightning strategy: the configured name, or a ``DDPStrategy`` with the chosen backend."""
    if cfg.process_group_backend == "auto":
        return cfg.strategy
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(process_group_backend=cfg.process_group_backend)


def _n_batches(loader: Any) -> int:
    try:
        return len(loader)
    except TypeError:
        return 1

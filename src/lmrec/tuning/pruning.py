"""Stop hopeless neural trials early: a Lightning callback that reports validation NDCG to Optuna.

Neural models take ``fit(data, *, valid=split.valid, callbacks=[...])``; the callbacks run after
the shared early-stopping callback (:func:`lmrec.nn.training.fit_module`), which validates at the
end of a training epoch and logs the metric as ``trainer.callback_metrics["val_ndcg@10"]``. This
callback reads it in the same hook, reports it to the trial at that epoch and raises
:class:`optuna.TrialPruned` when the study's pruner (a ``MedianPruner`` in :func:`~lmrec.tuning.tune`)
says the trial is behind the others at the same epoch. The exception leaves ``trainer.fit`` and
``model.fit``, and Optuna records the trial as pruned.

Kept apart from :mod:`lmrec.tuning.search` because it imports Lightning (the ``torch`` extra); the
collaborative-filtering models tune without it.
"""

from __future__ import annotations

from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback

__all__ = ["OptunaPruning"]


class OptunaPruning(Callback):
    """Report ``monitor`` to ``trial`` after every validation round; prune when the pruner says so.

    ``trial`` only needs ``report(value, step)`` and ``should_prune()`` (a test double will do).
    Epochs without a validation round (``train.val_every > 1``) and runs without validation data
    log no metric and are skipped.
    """

    def __init__(self, trial: Any, monitor: str = "val_ndcg@10") -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        #: (epoch counted from 1, value) of every report made, for the record
        self.reported: list[tuple[int, float]] = []

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = int(trainer.current_epoch)
        cfg = getattr(pl_module, "train_cfg", None)
        every = int(getattr(cfg, "val_every", 1) or 1)
        last = epoch + 1 >= (trainer.max_epochs or 0)
        if (epoch + 1) % every and not last:
            return  # a metric left over from an earlier round: this epoch did not validate
        value = float(value)
        step = epoch + 1  # epochs counted from 1, as TrainingReport.best_epoch counts them
        self.reported.append((step, value))
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {step}: {self.monitor}={value:.4f}")

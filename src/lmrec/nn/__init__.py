"""Shared torch building blocks for lmrec's neural models (needs the ``torch`` extra).

Every neural model (two-tower, SASRec, BERT4Rec) builds on the same three pieces, so a fix or a
speed-up lands everywhere at once:

* :mod:`lmrec.nn.item_repr`: :class:`ItemRepresentation`, an item-ID embedding fused with a frozen,
  projected language-model text embedding (``"sum"``, ``"gate"``, ``"text_only"``, ``"id_only"``),
  with ID dropout so the text path carries cold items; a padding row and special tokens for
  sequence models. With ``modalities`` (ID, text, picture) the masked tower: each part an item has,
  fused by a sum or a per-dimension softmax gate, missing parts masked, modality dropout.
* :mod:`lmrec.nn.losses`: :func:`info_nce` (in-batch + sampled negatives, logQ correction, accidental
  hit masking), :func:`sampled_softmax`, :func:`full_softmax_ce`, :func:`bce_with_negatives`.
* :mod:`lmrec.nn.training`: :class:`NeuralTrainConfig` (the ``train`` fragment of a model config),
  :class:`RecLightningModule` (subclasses write ``compute_loss``), :func:`fit_module` (seeded
  Lightning training with early stopping on validation NDCG@10, best-weight restore and extra
  Lightning callbacks). The validation split is :func:`lmrec.data.split.split_validation`, the
  metric :func:`lmrec.evaluation.metrics.validation_metrics`.
* :mod:`lmrec.nn.lora`: :class:`~lmrec.nn.lora.LoraTextEncoder`, LoRA fine-tuning of the text
  encoder (needs ``peft``; imported on its own, not from here).
* :mod:`lmrec.nn.towers`: user-side encoders over a history of item representations
  (:class:`HistoryEncoder`: recency-weighted attention pooling or a small causal transformer).

See each module's docstring for the exact API.
"""

from lmrec.nn.item_repr import ItemRepresentation
from lmrec.nn.item_repr_config import FUSIONS
from lmrec.nn.losses import bce_with_negatives, full_softmax_ce, info_nce, sampled_softmax
from lmrec.nn.towers import CausalTransformerBlock, HistoryEncoder
from lmrec.nn.training import (
    EpochRecord,
    NeuralTrainConfig,
    RecLightningModule,
    TrainingReport,
    fit_module,
    resolve_accelerator,
    resolve_precision,
    seed_all,
)

__all__ = [
    "FUSIONS",
    "CausalTransformerBlock",
    "EpochRecord",
    "HistoryEncoder",
    "ItemRepresentation",
    "NeuralTrainConfig",
    "RecLightningModule",
    "TrainingReport",
    "bce_with_negatives",
    "fit_module",
    "full_softmax_ce",
    "info_nce",
    "resolve_accelerator",
    "resolve_precision",
    "sampled_softmax",
    "seed_all",
]

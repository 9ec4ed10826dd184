"""BERT4Rec: a bidirectional transformer trained to fill in masked items (Sun et al., 2019).

"BERT fine-tuned on user behaviour sequences": a random ``mask_prob`` of the items of each training
sequence is replaced by a learned ``[MASK]`` token and the model predicts them from both sides
(full softmax over the catalogue, or sampled softmax for large catalogues). To recommend, ``[MASK]``
is appended after the newest item and its output state is the query vector. With
``last_mask_prob`` a training sequence has only its newest item masked instead, which rehearses
exactly that serving situation (the BERT4Rec reference code does the same).

Everything else (item representation with optional language-model text fusion, CL4SRec
augmentations, click head, Lightning training, early stopping, serving unseen users from their
history, persistence) is shared with SASRec: see :class:`lmrec.models.sasrec.SequentialRecommender`.
Klenitskiy & Vasilev (2023) found that BERT4Rec's reported edge over SASRec came from the softmax
loss, not from bidirectionality; :mod:`benchmarks.sequence` measures both under one protocol.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from lmrec.models.sasrec import SequentialConfig, SequentialRecommender
from lmrec.nn.sequence import MASK, AugmentationConfig, SequenceCollator, windows
from lmrec.nn.training import NeuralTrainConfig

__all__ = ["BERT4Rec", "BERT4RecConfig"]

_BERT4REC_TRAIN = NeuralTrainConfig(max_epochs=200, batch_size=64, lr=1e-3, patience=8)


class BERT4RecConfig(SequentialConfig):
    """BERT4Rec hyperparameters: :class:`~lmrec.models.sasrec.SequentialConfig` plus masking."""

    n_heads: int = Field(default=2, ge=1)
    ffn_mult: int = Field(default=4, ge=1)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    #: probability that an item of a training sequence is masked (and predicted)
    mask_prob: float = Field(default=0.2, gt=0.0, lt=1.0)
    #: probability that a training sequence instead has only its newest item masked
    last_mask_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    train: NeuralTrainConfig = _BERT4REC_TRAIN

    _train_defaults_: ClassVar[NeuralTrainConfig] = _BERT4REC_TRAIN


class BERT4Rec(SequentialRecommender):
    """Bidirectional masked-item sequence model (see the module docstring)."""

    name = "bert4rec"
    Config = BERT4RecConfig
    config: BERT4RecConfig
    causal = False
    objective = "masked"

    def _collator(self) -> SequenceCollator:
        cfg = self.config
        aug = None
        if cfg.contrastive:
            aug = AugmentationConfig(
                kinds=tuple(cfg.augmentations),
                crop_ratio=cfg.crop_ratio,
                mask_ratio=cfg.mask_ratio,
                reorder_ratio=cfg.reorder_ratio,
            )
        return SequenceCollator(
            width=cfg.max_len,
            objective="masked",
            mask_prob=cfg.mask_prob,
            last_mask_prob=cfg.last_mask_prob,
            augment=aug,
        )

    def _training_windows(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        return windows(seqs, self.config.max_len, min_len=2)

    def _prepare(self, seq: np.ndarray) -> np.ndarray:
        """The newest ``max_len - 1`` items followed by ``[MASK]``, whose state is the query."""
        seq = np.asarray(seq, dtype=np.int64)[-(self.config.max_len - 1) :]
        return np.append(seq, MASK)

    def _get_extra(self) -> dict[str, Any]:
        return super()._get_extra()

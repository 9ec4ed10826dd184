"""Hyperparameters of the two-tower model (:class:`~lmrec.models.two_tower.TwoTower`).

:class:`TwoTowerConfig` is the one place its settings are named (the CLI and TOML configs use these
names) and checked: the towers, the item tower's parts (:mod:`lmrec.nn.item_repr_config`), the
loss and its negatives, the text encoder and its LoRA fine-tuning, and the training defaults a
partial ``[model.train]`` table overrides.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from lmrec.models.base import ModelConfig
from lmrec.nn.item_repr_config import FUSION_MODALITIES, check_modalities
from lmrec.nn.training import NeuralTrainConfig
from lmrec.text.profiles import ProfileConfig

_DEFAULT_TRAIN = NeuralTrainConfig(max_epochs=60, batch_size=128, lr=2e-3, weight_decay=0.0, patience=5)


class TwoTowerConfig(ModelConfig):
    """Hyperparameters of :class:`~lmrec.models.two_tower.TwoTower` (one place; the CLI and TOML configs
    use these names)."""

    #: width of both towers
    dim: int = Field(default=64, ge=4)
    #: item tower: "sum" | "gate" of ID and projected text; "text_only"; "id_only" (no text at all).
    #: With ``modalities``: how the parts are fused, "sum" or "gate" (masked; see :mod:`lmrec.models.two_tower`)
    fusion: Literal["sum", "gate", "text_only", "id_only"] = "sum"
    #: what an item vector is made of: any of "id", "text", "image" (the dataset's item pictures),
    #: fused over the parts each item has. None: the ID + text tower ``fusion`` names
    modalities: tuple[Literal["id", "text", "image"], ...] | None = None
    #: probability of zeroing an item's ID part during training (so text alone can carry cold items)
    id_dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    #: with ``modalities``: probability of dropping an item's text or picture part during training,
    #: each on its own (an item keeps at least one part it has), so items lacking one are placed well
    modality_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    #: picture model: None = the offline ImageNet MobileNetV2 (:mod:`lmrec.image`; any
    #: ``get_image_encoder`` name, e.g. "mobilenetv2+efficientnet-lite2"); "histogram" for the
    #: model-free one. Ignored when the dataset's pictures come as a feature matrix
    image_encoder: str | None = None
    #: hidden width of a 2-layer text projection (None: one linear layer)
    text_hidden: int | None = Field(default=None, ge=1)
    #: user tower: "pool" (recency-weighted pooling + MLP) or "transformer" (small causal transformer)
    user_encoder: Literal["pool", "transformer"] = "pool"
    n_layers: int = Field(default=2, ge=1)
    n_heads: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    #: most recent history items the user tower reads
    max_len: int = Field(default=50, ge=2)
    #: add the projected profile text of the user's attributes (data.users) to the user tower
    user_text: bool = False
    #: each position predicts a random one of the next ``future_window`` items (1: the next item
    #: only). Wider windows teach the user tower the user's taste rather than the exact next step.
    future_window: int = Field(default=1, ge=1)
    #: probability that a training window's items are randomly reordered: a set-style objective
    #: ("which other items does this user take?") that trains every history item as an input
    shuffle_prob: float = Field(default=0.2, ge=0.0, le=1.0)
    #: "full_softmax": every training item is a negative; "sampled_softmax": InfoNCE (see
    #: :mod:`lmrec.models.two_tower`);
    #: "auto": full up to ``lmrec.nn.losses.FULL_SOFTMAX_MAX_ITEMS`` training items, sampled above
    loss: Literal["auto", "full_softmax", "sampled_softmax"] = "auto"
    #: sampled_softmax: the positives of at most this many sampled positions per step are the
    #: in-batch negatives (0: every position's), which bounds a step's cost on large catalogues.
    #: 1024 was chosen on ml-latest-small validation NDCG@10 (3 seeds; benchmarks/softmax_quality.py):
    #: 512 .0496, 1024 .0581, 2048 .0554, the full softmax .0575
    in_batch_negatives: int = Field(default=1024, ge=0)
    #: uniformly sampled extra negatives per batch (sampled_softmax)
    n_negatives: int = Field(default=512, ge=0)
    #: subtract log(sampling probability) from sampled logits (sampled_softmax)
    logq_correction: bool = True
    #: hard negatives per positive, drawn from its most text-similar items (sampled_softmax; needs text)
    hard_negatives: int = Field(default=0, ge=0)
    #: how many text neighbours per item the hard negatives are drawn from
    hard_negative_pool: int = Field(default=50, ge=1)
    #: softmax temperature (initial value when learned)
    temperature: float = Field(default=0.05, gt=0.0)
    learn_temperature: bool = True
    #: fraction of users whose last interaction is held out for early stopping when fit() gets no valid
    val_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    #: text model: None = the bundled offline all-MiniLM-L6-v2, a sentence-transformers name or local dir,
    #: "hashing" for the model-free test encoder
    encoder: str | None = None
    #: device for the text encoder (None: CUDA when present)
    encoder_device: str | None = None
    #: how item profile texts are built
    profile: ProfileConfig = ProfileConfig()
    #: on-disk embedding cache directory (None: encode every time)
    cache_dir: str | None = None
    #: LoRA rank for fine-tuning the text encoder itself (0: frozen encoder); needs peft, meant for GPU
    lora_rank: int = Field(default=0, ge=0)
    lora_alpha: float = Field(default=16.0, gt=0.0)
    #: learning rate of the LoRA adapters
    lora_lr: float = Field(default=1e-4, gt=0.0)
    #: items per LoRA training step (sampled from the batch's positives)
    lora_batch: int = Field(default=64, ge=2)
    #: how training runs (epochs, batch, lr, device, precision, DDP, early stopping, seed, ...)
    train: NeuralTrainConfig = _DEFAULT_TRAIN

    @field_validator("train", mode="before")
    @classmethod
    def _train_defaults(cls, v: Any) -> Any:
        # a partial [model.train] table overrides this model's defaults, not NeuralTrainConfig's
        if isinstance(v, dict):
            return {**_DEFAULT_TRAIN.model_dump(), **v}
        return v

    @property
    def parts(self) -> tuple[str, ...]:
        """The modalities an item vector is made of (``modalities``, else what ``fusion`` implies)."""
        return self.modalities if self.modalities is not None else FUSION_MODALITIES[self.fusion]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        check_modalities(self.modalities, self.fusion, self.modality_dropout)
        if self.hard_negatives and "text" not in self.parts:
            raise ValueError(
                "hard_negatives are mined by text similarity and need a text fusion, not 'id_only'"
            )
        if self.lora_rank and "text" not in self.parts:
            raise ValueError("lora_rank fine-tunes the text encoder; fusion='id_only' uses no text")
        return self


__all__ = ["TwoTowerConfig"]

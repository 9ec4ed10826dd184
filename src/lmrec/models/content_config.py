"""Hyperparameters of the content model (:class:`~lmrec.models.content.ContentRecommender`).

:class:`ContentConfig` names and bounds its settings: the text encoder and how item profiles are
built, the query vector (recency half-life, interaction weights, the free text's share, centring),
review keywords, the picture modality and its weight, and the collaborative projection
(``cf_projection``). What each setting does is told in :mod:`lmrec.models.content`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmrec.models.base import ModelConfig
from lmrec.text.profiles import ProfileConfig


class ContentConfig(ModelConfig):
    """Hyperparameters of :class:`~lmrec.models.content.ContentRecommender`."""

    #: text model: None = the bundled offline all-MiniLM-L6-v2; any sentence-transformers name or
    #: local directory; "hashing" for the model-free test encoder
    encoder: str | None = None
    #: "cuda", "cpu", ...; None picks CUDA when present (fp16 there)
    device: str | None = None
    batch_size: int = Field(64, ge=1)
    #: how item profile texts are built
    profile: ProfileConfig = ProfileConfig()
    #: half-life of a history item's weight, in interactions (None: every item weighs the same)
    recency_half_life: float | None = Field(50.0, gt=0)
    #: subtract the catalogue's mean vector before normalising (see :mod:`lmrec.models.content`)
    center: bool = True
    #: weigh history items by log(1 + interaction weight) (plays, dwell time); off by default
    use_weights: bool = False
    #: share of the free text in a query that has both a history and a text
    text_weight: float = Field(0.5, ge=0.0, le=1.0)
    #: on-disk embedding cache directory (None: no cache)
    cache_dir: str | None = None
    #: review keyphrases per item added to the profile's "keywords" field (0: off)
    keywords_per_item: int = Field(0, ge=0)
    keyword_diversity: float = Field(0.5, ge=0.0, le=1.0)
    #: progress bar while encoding (None: only for long jobs)
    show_progress: bool | None = None
    #: what an item vector is made of: its profile text, its picture (the dataset's item images), or both
    modalities: tuple[Literal["text", "image"], ...] = ("text",)
    #: picture model: None = the offline ImageNet MobileNetV2; "efficientnet-lite2"; names joined by
    #: "+" side by side ("mobilenetv2+efficientnet-lite2"); "histogram" for the model-free one
    image_encoder: str | None = None
    #: the picture's share of an item's score when both modalities are used (see :mod:`lmrec.models.content`)
    image_weight: float = Field(0.5, ge=0.0, le=1.0)
    #: map content vectors into a collaborative space learned on warm items (see :mod:`lmrec.models.content`)
    cf_projection: bool = False
    #: SVD factors of the collaborative space (capped by the training matrix's shape)
    projection_factors: int = Field(64, ge=1)
    #: ridge strength of the content -> factor regression (content vectors are unit length)
    projection_ridge: float = Field(100.0, gt=0.0)
    #: how content reaches the collaborative space: one ridge regression, or the nearest warm items
    projection_method: Literal["ridge", "knn"] = "ridge"
    #: "knn": warm items whose factors a mapped item averages
    projection_neighbours: int = Field(30, ge=1)
    #: "knn": softmax temperature on the content dot products of those neighbours
    projection_temperature: float = Field(0.1, gt=0.0)


__all__ = ["ContentConfig"]

"""Configuration of the two-stage hybrid (:class:`~lmrec.models.hybrid.Hybrid`): its generators and
ranker settings, and the identity of a generator fit (:func:`fit_key`) that lets a caller share fits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmrec.data.dataset import Dataset
from lmrec.models.base import ModelConfig
from lmrec.models.hybrid_features import DEFAULT_FEATURE_GROUPS, FEATURE_GROUPS, META_COLUMNS, FeatureGroup
from lmrec.models.hybrid_ranker import RankerConfig
from lmrec.text.profiles import ProfileConfig

__all__ = ["GeneratorSpec", "HybridConfig", "fit_key", "generator_labels"]


class GeneratorSpec(BaseModel):
    """One candidate generator: a registered model name, its params and how many candidates it gives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: registry name (``ease``, ``item_knn``, ``sasrec``, ...)
    name: str
    #: the model's config as keyword arguments
    params: dict[str, Any] = Field(default_factory=dict)
    #: candidates per query taken from this generator (its top N unseen items)
    n_candidates: int = Field(default=50, ge=1)
    #: feature-name prefix (default: the name; repeated names get ``_2``, ``_3``)
    label: str | None = None


_DEFAULT_GENERATORS = (
    GeneratorSpec(name="ease"),
    GeneratorSpec(name="item_knn"),
    GeneratorSpec(name="sasrec"),
    GeneratorSpec(name="two_tower"),
    GeneratorSpec(name="content"),
)


class HybridConfig(ModelConfig):
    """Hyperparameters of :class:`Hybrid` (the generators' own configs live in their ``params``)."""

    #: candidate generators (stage 1)
    generators: tuple[GeneratorSpec, ...] = _DEFAULT_GENERATORS
    #: feature groups the ranker uses (drop one for an ablation; add "image" for picture similarity
    #: features on a dataset with item pictures)
    feature_groups: tuple[FeatureGroup, ...] = DEFAULT_FEATURE_GROUPS
    #: every generator scores every candidate (False: NaN outside its own top N, as RecTools does)
    score_all_candidates: bool = True
    #: the ranker's targets: each user's last ``n_targets`` interactions in ``data``, each one a
    #: positive candidate (every user keeps at least one interaction). ``"auto"``: the largest
    #: ``n <= 3`` that holds out at most ``max_holdout_share`` of the interactions (at least 1).
    #: Validation set the rule: 3 beat 1 on ml-100k (NDCG@10 ~0.100 vs ~0.091; 3 targets hold out
    #: 2.8% of it), 1 beat 3 on Musical Instruments (.0814 vs .0693; 3 would hold out 42% of a
    #: 5-core set, and inner generators that lose that much score unlike the refitted ones)
    n_targets: int | Literal["auto"] = "auto"
    max_holdout_share: float = Field(default=0.1, gt=0, lt=1)
    ranker: RankerConfig = RankerConfig()
    #: the latest share of interactions counted by the "recent popularity" feature
    recent_fraction: float = Field(default=0.1, gt=0, le=1)
    #: text features: encoder name (None: the bundled all-MiniLM-L6-v2; "hashing" for tests)
    text_encoder: str | None = None
    text_device: str | None = None
    #: on-disk embedding cache for item profile vectors (None: no cache)
    text_cache_dir: str | None = None
    #: how many of the query's latest items the text (and picture) similarity looks at
    text_history: int = Field(default=5, ge=1)
    #: picture features ("image" group): image encoder name (None: the offline ImageNet
    #: MobileNetV2; any :func:`lmrec.image.get_image_encoder` name; "histogram" for tests); vectors
    #: go through ``text_cache_dir`` too
    image_encoder: str | None = None
    profile: ProfileConfig = ProfileConfig()
    #: item-table columns used as categories, when present
    metadata_columns: tuple[str, ...] = META_COLUMNS
    #: how many of the query's latest items the category overlap looks at
    metadata_history: int = Field(default=50, ge=1)
    seed: int = 42

    @field_validator("generators")
    @classmethod
    def _check_generators(cls, v: tuple[GeneratorSpec, ...]) -> tuple[GeneratorSpec, ...]:
        if not v:
            raise ValueError("a hybrid needs at least one generator")
        if any(g.name == "hybrid" for g in v):
            raise ValueError("a hybrid cannot generate candidates with another hybrid")
        labels = generator_labels(v)
        if len(set(labels)) != len(labels):
            raise ValueError(f"generator labels must be unique, got {labels}")
        return v

    @field_validator("feature_groups")
    @classmethod
    def _check_groups(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"feature_groups repeats a group: {v}")
        return tuple(g for g in FEATURE_GROUPS if g in v)  # canonical order: stable feature layout


def generator_labels(specs: Sequence[GeneratorSpec]) -> list[str]:
    """Each generator's feature-name prefix: its label, else its name (``_2``, ``_3`` on repeats)."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for s in specs:
        if s.label:
            out.append(s.label)
            continue
        seen[s.name] = seen.get(s.name, 0) + 1
        out.append(s.name if seen[s.name] == 1 else f"{s.name}_{seen[s.name]}")
    return [re.sub(r"[^A-Za-z0-9_]+", "_", lab) for lab in out]


def fit_key(spec: GeneratorSpec, data: Dataset) -> str:
    """What a generator fit depends on: its spec and the exact data (interactions, reviews, tags)."""
    parts = [spec.model_dump_json(), data.checksum(), str(data.n_users), str(data.n_items)]
    for frame in (data.reviews, data.tags):
        parts.append("-" if frame is None else f"{frame.height}:{int(frame.hash_rows(seed=0).sum())}")
    return "|".join(parts)

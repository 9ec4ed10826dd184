"""Model registry: name -> class, imported lazily so CF users never import torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmrec.errors import LmrecError

if TYPE_CHECKING:
    from lmrec.models.base import Recommender

#: registry name -> "module:Class"
_MODELS: dict[str, str] = {
    "popularity": "lmrec.models.popularity:Popularity",
    "random": "lmrec.models.popularity:RandomModel",
    "item_knn": "lmrec.models.knn:ItemKNN",
    "user_knn": "lmrec.models.knn:UserKNN",
    "ease": "lmrec.models.ease:EASE",
    "als": "lmrec.models.mf:ALS",
    "bpr": "lmrec.models.mf:BPR",
    "content": "lmrec.models.content:ContentRecommender",
    "two_tower": "lmrec.models.two_tower:TwoTower",
    "sasrec": "lmrec.models.sasrec:SASRec",
    "bert4rec": "lmrec.models.bert4rec:BERT4Rec",
}

#: which optional extra provides the modules a model needs
_EXTRAS = {"content": "text", "two_tower": "torch", "sasrec": "torch", "bert4rec": "torch"}


def registered_models() -> dict[str, str]:
    """Every registered name with its ``"module:Class"`` target (installed or not)."""
    return dict(_MODELS)


def available_models() -> list[str]:
    """Names of every registered model whose module exists in this install."""
    out = []
    for name, target in _MODELS.items():
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            out.append(name)
    return out


def register_model(name: str, target: str) -> None:
    """Register a third-party model as ``"package.module:Class"``."""
    _MODELS[name] = target


def get_model_class(name: str) -> type[Recommender]:
    if name not in _MODELS:
        raise LmrecError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}")
    module, _, cls = _MODELS[name].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get(name)
        hint = f": pip install 'lmrec[{extra}]'" if extra else ""
        raise LmrecError(f"model {name!r} needs {exc.name}, which is not installed{hint}") from exc
    return getattr(mod, cls)  # type: ignore[no-any-return]


def create_model(name: str, **params: Any) -> Recommender:
    return get_model_class(name)(**params)

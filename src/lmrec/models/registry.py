"""Model registry: name -> class, imported lazily so CF users never import torch."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.numpy import load_file

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
    "hybrid": "lmrec.models.hybrid:Hybrid",
    "unisrec": "lmrec.models.unisrec:UniSRec",
}

#: which optional extra provides the modules a model needs
_EXTRAS = {
    "content": "text",
    "two_tower": "torch",
    "sasrec": "torch",
    "bert4rec": "torch",
    "unisrec": "torch",
}


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


def load_model(path: str | os.PathLike[str], *, expected: type[Recommender] | None = None) -> Recommender:
    """Load any saved lmrec model: ``model.json`` names its registered class.

    ``expected`` (a :class:`Recommender` subclass) refuses a model of another class. The artifact
    is read without pickle: JSON for the config and vocabularies, safetensors for arrays; a model
    that saved files of its own (``_save_files``) reads them back in ``_load_files``.
    """
    path = Path(path)
    try:
        meta = json.loads((path / "model.json").read_text())
        vocab = json.loads((path / "vocab.json").read_text())
        tensors = load_file(str(path / "state.safetensors"))
    except FileNotFoundError as exc:
        # safetensors' FileNotFoundError carries no filename, so name the missing file ourselves
        files = ("model.json", "vocab.json", "state.safetensors")
        missing = next((f for f in files if not (path / f).exists()), exc.filename)
        raise LmrecError(f"{path} is not a saved lmrec model: missing {missing}") from exc
    except (json.JSONDecodeError, OSError, Exception) as exc:
        raise LmrecError(f"{path}: cannot read saved model ({exc})") from exc
    klass = get_model_class(meta["model"])
    if expected is not None and not issubclass(klass, expected):
        raise LmrecError(f"{path} holds a {meta['model']} model, not {expected.__name__}")
    model = klass(klass.Config(**meta["config"]))
    model._restore(vocab, tensors, meta.get("extra", {}))
    model._load_files(path)
    return model

"""Model registry: name -> class, imported lazily so CF users never import torch."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError
from safetensors.numpy import load_file

from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import LmrecError

if TYPE_CHECKING:
    from lmrec.models.base import ModelConfig, Recommender

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
    "fed_mf": "lmrec.federated.model:FedMF",
    "fed_two_tower": "lmrec.federated.model:FedTwoTower",
}

#: which optional extra provides the modules a model needs
_EXTRAS = {
    "content": "text",
    "two_tower": "torch",
    "sasrec": "torch",
    "bert4rec": "torch",
    "unisrec": "torch",
    "fed_mf": "federated",
    "fed_two_tower": "federated",
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


def describe_validation_error(exc: ValidationError, where: str = "") -> str:
    """A pydantic error as one line: ``key: reason (got value)`` per problem, ``; ``-separated."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (where, *err["loc"]) if p != "")
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        piece = f"{loc}: {msg}" if loc else msg
        if err["type"] not in ("missing", "extra_forbidden", "value_error") and "input" in err:
            got = repr(err["input"])
            piece += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
        parts.append(" ".join(piece.split()))
    return "; ".join(parts)


def check_params(name: str, params: Mapping[str, Any], *, where: str = "params") -> ModelConfig:
    """Validate ``params`` for the registered model ``name`` without building it.

    An unknown name, a missing extra, an unknown key or a bad value is one :class:`LmrecError` line
    naming the key (``models.1 (ease).params.l2: Input should be greater than 0 (got -5)``).
    """
    if not isinstance(params, Mapping):
        raise LmrecError(f"{where}: expected a table of parameters, got {params!r}")
    klass = get_model_class(name)
    try:
        return klass.Config(**params)
    except ValidationError as exc:
        message = describe_validation_error(exc, where)
        if any(e["type"] == "extra_forbidden" for e in exc.errors()):
            message += f" ({name} takes: {', '.join(klass.Config.model_fields) or 'no parameters'})"
        raise LmrecError(message) from None
    except (TypeError, ValueError) as exc:  # a Config with a hand-written __init__ or validator
        raise LmrecError(f"{where}: {' '.join(str(exc).split())}") from None


def load_model(path: str | os.PathLike[str], *, expected: type[Recommender] | None = None) -> Recommender:
    """Load any saved lmrec model: ``model.json`` names its registered class.

    ``expected`` (a :class:`Recommender` subclass) refuses a model of another class. The artifact
    is read without pickle: JSON for the config and vocabularies, safetensors for arrays; a model
    that saved files of its own (``_save_files``) reads them back in ``_load_files``.

    Nothing damaged loads quietly: the ``format_version`` must be one this lmrec reads, the JSON
    files must hold their keys, every tensor must have the name, shape and dtype ``model.json``
    recorded, and the histories must fit the vocabularies. Each failure is a one-line
    :class:`LmrecError` naming the damaged file.
    """
    from lmrec.models.base import READABLE_FORMATS

    path = Path(path)
    meta = _read_json(path, "model.json")
    meta_file = path / "model.json"
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in READABLE_FORMATS:
        from lmrec._version import __version__

        written = meta.get("lmrec_version")
        what = "has no format_version" if version is None else f"has format_version {version!r}"
        raise LmrecError(
            f"{meta_file}: cannot read saved model: it {what}, and lmrec {__version__} reads "
            f"{', '.join(map(str, READABLE_FORMATS))}" + (f" (written by lmrec {written})" if written else "")
        )
    for key, kind in (("model", str), ("config", dict)):
        if not isinstance(meta.get(key), kind):
            what = "missing" if key not in meta else f"not a {'string' if kind is str else 'table'}"
            raise LmrecError(f"{meta_file}: cannot read saved model: key {key!r} is {what}")
    if not isinstance(meta.get("extra", {}), dict):
        raise LmrecError(f"{meta_file}: cannot read saved model: key 'extra' is not a table")
    try:
        klass = get_model_class(meta["model"])
    except LmrecError as exc:
        raise LmrecError(f"{meta_file}: cannot read saved model: {exc}") from None
    if expected is not None and not issubclass(klass, expected):
        raise LmrecError(f"{path} holds a {meta['model']} model, not {expected.__name__}")
    try:
        config = klass.Config(**meta["config"])
    except ValidationError as exc:
        raise LmrecError(
            f"{meta_file}: cannot read saved model: bad config: {describe_validation_error(exc, 'config')}"
        ) from None
    user_vocab, item_vocab = _vocabularies(_read_json(path, "vocab.json"), path / "vocab.json")
    state_file = path / "state.safetensors"
    if not state_file.is_file():
        raise LmrecError(f"{path} is not a saved lmrec model: missing state.safetensors")
    try:
        tensors = load_file(str(state_file))
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise LmrecError(
            f"{state_file}: cannot read saved model: not a readable safetensors file ({_first_line(exc)})"
        ) from None
    _check_state(meta, tensors, user_vocab, item_vocab, path)
    model = klass(config)
    try:
        model._restore((user_vocab, item_vocab), tensors, meta.get("extra", {}))
    except LmrecError as exc:
        raise LmrecError(f"{state_file}: {_first_line(exc)}") from None
    except Exception as exc:  # a model's _set_state met tensors or extra state it cannot use
        raise LmrecError(
            f"{state_file}: cannot read saved model: the {meta['model']} model cannot use the saved state ({_first_line(exc)})"
        ) from None
    try:
        model._load_files(path)
    except LmrecError:
        raise  # already names its file (a sub-model's own load, for instance)
    except Exception as exc:
        where = getattr(exc, "filename", None) or path
        raise LmrecError(
            f"{where}: cannot read saved model: the model's own files are damaged ({_first_line(exc)})"
        ) from None
    return model


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    """``folder/name`` as a JSON object, or a one-line :class:`LmrecError` naming the file."""
    file = folder / name
    try:
        raw = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LmrecError(f"{folder} is not a saved lmrec model: missing {name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LmrecError(f"{file}: cannot read saved model: {_first_line(exc)}") from None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LmrecError(f"{file}: cannot read saved model: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise LmrecError(f"{file}: cannot read saved model: expected a JSON object, got {type(obj).__name__}")
    return obj


def _vocabularies(obj: dict[str, Any], file: Path) -> tuple[Vocabulary, Vocabulary]:
    """The user and item vocabularies of ``vocab.json``; damage is an error naming the file."""
    out = []
    for key in ("user", "item"):
        entry = obj.get(key)
        if not isinstance(entry, dict):
            raise LmrecError(
                f"{file}: cannot read saved model: key {key!r} is {'missing' if entry is None else 'not a table'}"
            )
        for field, kind in (("name", str), ("kind", str), ("ids", list)):
            if not isinstance(entry.get(field), kind):
                raise LmrecError(
                    f"{file}: cannot read saved model: {key}.{field} is missing or of the wrong type"
                )
        if entry["kind"] not in ("int", "str"):
            raise LmrecError(
                f"{file}: cannot read saved model: {key}.kind is {entry['kind']!r}, not 'int' or 'str'"
            )
        try:
            vocab = Vocabulary.from_json(entry)
        except Exception as exc:  # duplicate ids, ids that do not match the kind
            raise LmrecError(
                f"{file}: cannot read saved model: bad {key} vocabulary ({_first_line(exc)})"
            ) from None
        out.append(vocab)
    return out[0], out[1]


def _check_state(
    meta: dict[str, Any], tensors: dict[str, np.ndarray], users: Vocabulary, items: Vocabulary, path: Path
) -> None:
    """Tensors against the manifest of ``model.json``, vocabularies against its counts, and the
    stored histories against the vocabularies."""
    state_file, vocab_file, meta_file = path / "state.safetensors", path / "vocab.json", path / "model.json"
    if meta["format_version"] >= 2:
        manifest = meta.get("tensors")
        if not isinstance(manifest, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("shape"), list) for v in manifest.values()
        ):
            raise LmrecError(f"{meta_file}: cannot read saved model: key 'tensors' is missing or malformed")
        for key, n in (("n_users", len(users)), ("n_items", len(items))):
            if meta.get(key) != n:
                raise LmrecError(
                    f"{vocab_file}: cannot read saved model: it holds {n} {key[2:]} but model.json records {meta.get(key)!r}"
                )
        missing, unexpected = sorted(set(manifest) - set(tensors)), sorted(set(tensors) - set(manifest))
        if missing or unexpected:
            what = "; ".join(
                f"{label} {', '.join(names)}"
                for label, names in (("missing", missing), ("unexpected", unexpected))
                if names
            )
            raise LmrecError(
                f"{state_file}: cannot read saved model: tensors do not match model.json ({what})"
            )
        for name, want in manifest.items():
            got = tensors[name]
            if list(got.shape) != want["shape"] or str(got.dtype) != want.get("dtype", str(got.dtype)):
                raise LmrecError(
                    f"{state_file}: cannot read saved model: tensor {name!r} is {got.dtype}{list(got.shape)} "
                    f"but model.json records {want.get('dtype')}{want['shape']}"
                )
    hist = {k: tensors.get(f"history.{k}") for k in ("items", "weights", "offsets")}
    absent = [k for k, v in hist.items() if v is None]
    if absent:
        raise LmrecError(f"{state_file}: cannot read saved model: no history.{absent[0]} tensor")
    h_items, weights, offsets = (np.asarray(hist[k]) for k in ("items", "weights", "offsets"))
    problem = None
    if h_items.ndim != 1 or weights.ndim != 1 or offsets.ndim != 1:
        problem = "history tensors must be one-dimensional"
    elif len(offsets) != len(users) + 1:
        problem = f"history.offsets has {len(offsets)} entries for {len(users)} users (needs users + 1)"
    elif len(weights) != len(h_items) or offsets[0] != 0 or offsets[-1] != len(h_items):
        problem = "history.items, history.weights and history.offsets do not agree"
    elif len(offsets) > 1 and (np.diff(offsets) < 0).any():
        problem = "history.offsets decrease"
    elif len(h_items) and (h_items.min() < 0 or h_items.max() >= len(items)):
        problem = f"history.items holds indices outside the {len(items)} items of vocab.json"
    if problem:
        raise LmrecError(f"{state_file}: cannot read saved model: {problem}")

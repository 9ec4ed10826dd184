"""Every registered model must be covered by a :class:`lmrec.testing.RecommenderContract` subclass.

The check is automatic (RecTools style): add a model to the registry and this test fails until a
contract test for it exists somewhere under ``tests/``. A registered model whose module does not
exist or fails to import fails here; only a model whose optional extra (a third-party package) is
not installed is skipped, with the reason.

Every registered model's saved artifact is also damaged in each way a disk, an editor or another
lmrec version can damage it; loading must fail with one line naming the damaged file.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lmrec.errors import LmrecError
from lmrec.experiment import load_catalog, save_catalog
from lmrec.models import registry
from lmrec.models.base import ModelConfig, Recommender
from lmrec.testing import RecommenderContract

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub)
        out |= _all_subclasses(sub)
    return out


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def _static_factories(path: Path) -> dict[str, set[str]]:
    """Contract classes in ``path`` -> identifiers their ``model_factory`` mentions (no import needed).

    Importing every test module would pull in torch and friends just to read one attribute, so the
    source is read instead; helper functions of the same module that the factory calls are followed
    one level.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    contract = {"RecommenderContract"}
    changed = True
    while changed:  # classes deriving from contract classes of this file, transitively
        changed = False
        for name, cls in classes.items():
            if name not in contract and any(b in contract for base in cls.bases for b in _names_in(base)):
                contract.add(name)
                changed = True

    def factory(name: str) -> ast.AST | None:
        cls = classes.get(name)
        if cls is None:
            return None
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign):
                targets, value = [stmt.target], stmt.value
            else:
                continue
            if value is not None and any(
                isinstance(t, ast.Name) and t.id == "model_factory" for t in targets
            ):
                return value
        for base in cls.bases:
            for b in _names_in(base):
                found = factory(b)
                if found is not None:
                    return found
        return None

    out = {}
    for name in contract - {"RecommenderContract"}:
        if not name.startswith("Test"):
            continue
        expr = factory(name)
        if expr is None:
            continue
        names = _names_in(expr)
        for fn in names & set(funcs):
            names |= _names_in(funcs[fn])
        out[name] = names
    return out


@pytest.fixture(scope="module")
def covered() -> dict[str, list[str]]:
    """Registry name -> the contract test classes that exercise it."""
    by_class = {target.split(":")[1]: name for name, target in registry.registered_models().items()}
    out: dict[str, list[str]] = {}
    unresolved = []
    for path in sorted(TESTS.rglob("test_*.py")):
        if "RecommenderContract" not in path.read_text(encoding="utf-8"):
            continue
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for cls_name, names in _static_factories(path).items():
            hits = [by_class[n] for n in names if n in by_class]
            for hit in hits:
                out.setdefault(hit, []).append(f"{module}.{cls_name}")
            if not hits:
                unresolved.append(module)
    # factories the source does not reveal (built elsewhere): import the module and ask the class
    for module in sorted(set(unresolved)):
        importlib.import_module(module)
    for cls in _all_subclasses(RecommenderContract):
        if cls.__module__ in unresolved and cls.__name__.startswith("Test") and hasattr(cls, "model_factory"):
            model = cls.model_factory()
            assert isinstance(model, Recommender), f"{cls.__qualname__}.model_factory() returned {model!r}"
            out.setdefault(model.name, []).append(f"{cls.__module__}.{cls.__qualname__}")
    return out


def _require_module(name: str) -> str:
    """A registered model's module must exist: a registration without code is a failure."""
    target = registry.registered_models()[name]
    module = target.split(":")[0]
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"registered model {name!r} ({target}): module {module} does not exist")
    return module


def _model_class(name: str) -> type[Recommender]:
    """The model's class; only a missing third-party package of its optional extra skips (and says
    so). A module that fails to import for any other reason fails the test, never skips it."""
    _require_module(name)
    try:
        return registry.get_model_class(name)
    except LmrecError as exc:
        missing = getattr(exc.__cause__, "name", None) or ""
        if name in registry._EXTRAS and missing and missing.split(".")[0] != "lmrec":
            pytest.skip(f"optional extra not installed: {exc}")
        pytest.fail(f"registered model {name!r} cannot be imported: {exc}")


@pytest.mark.parametrize("name", sorted(registry.registered_models()))
def test_registered_model_has_contract_tests(name: str, covered: dict[str, list[str]]) -> None:
    target = registry.registered_models()[name]
    _require_module(name)  # no import: some models pull in torch, and the source is enough here
    assert covered.get(name), (
        f"registered model {name!r} ({target}) has no RecommenderContract "
        f"subclass under tests/ (add `class Test...Contract(RecommenderContract): model_factory = ...`)"
    )


@pytest.mark.parametrize("name", sorted(registry.registered_models()))
def test_registered_model_is_consistent(name: str) -> None:
    cls = _model_class(name)
    assert cls.name == name, f"{cls.__qualname__}.name is {cls.name!r} but it is registered as {name!r}"
    assert issubclass(cls.Config, ModelConfig) and cls.Config is not ModelConfig
    assert cls.supports <= {"user", "history", "text"}
    cls()  # every model is constructible from its defaults


def test_contract_detection_sees_this_package(covered: dict[str, list[str]]) -> None:
    # guards the discovery itself: the CF models of this package are certainly covered
    for name in ("popularity", "item_knn", "user_knn", "ease", "als", "bpr"):
        assert covered.get(name), name


# ------------------------------------------------------------------------------ damaged artifacts
def _edit_json(file: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    obj = json.loads(file.read_text())
    edit(obj)
    file.write_text(json.dumps(obj))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _reshape_a_tensor(file: Path) -> None:
    """One tensor (a model tensor when there is one) one row longer, the rest untouched."""
    tensors = load_file(str(file))
    name = next((k for k in sorted(tensors) if k.startswith("model.") and tensors[k].ndim), "history.weights")
    arr = tensors[name]
    tensors[name] = np.zeros((arr.shape[0] + 1, *arr.shape[1:]), dtype=arr.dtype)
    save_file(tensors, str(file))


def _duplicate_item(vocab: dict[str, Any]) -> None:
    vocab["item"]["ids"][1] = vocab["item"]["ids"][0]


#: damage -> (file it is done to, what is done); loading must name that file
DAMAGES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "model.json: format_version 99": (
        "model.json",
        lambda f: _edit_json(f, lambda m: m.update(format_version=99)),
    ),
    "model.json: format_version missing": (
        "model.json",
        lambda f: _edit_json(f, lambda m: m.pop("format_version")),
    ),
    "model.json: model key missing": ("model.json", lambda f: _edit_json(f, lambda m: m.pop("model"))),
    "model.json: config key missing": ("model.json", lambda f: _edit_json(f, lambda m: m.pop("config"))),
    "model.json: tensor manifest missing": (
        "model.json",
        lambda f: _edit_json(f, lambda m: m.pop("tensors")),
    ),
    "model.json: config value invalid": (
        "model.json",
        lambda f: _edit_json(f, lambda m: m["config"].update(no_such_parameter=1)),
    ),
    "model.json: truncated": ("model.json", _truncate),
    "vocab.json: truncated": ("vocab.json", _truncate),
    "vocab.json: item key missing": ("vocab.json", lambda f: _edit_json(f, lambda v: v.pop("item"))),
    "vocab.json: duplicate item id": ("vocab.json", lambda f: _edit_json(f, _duplicate_item)),
    "vocab.json: an item removed": ("vocab.json", lambda f: _edit_json(f, lambda v: v["item"]["ids"].pop())),
    "state.safetensors: truncated": ("state.safetensors", _truncate),
    "state.safetensors: tensor of the wrong shape": ("state.safetensors", _reshape_a_tensor),
    "catalog.parquet: truncated": ("catalog.parquet", _truncate),
}


def _contract_class(name: str, covered: dict[str, list[str]]) -> type[RecommenderContract]:
    module, _, cls_name = covered[name][0].rpartition(".")
    return getattr(importlib.import_module(module), cls_name)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def saved_models(
    covered: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """Registry name -> a folder holding that model, fitted on its contract data, saved with its
    item catalogue (fitted once per module and copied for every damage)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            _model_class(name)
            if not covered.get(name):
                pytest.fail(f"registered model {name!r} has no contract test to build it from")
            contract = _contract_class(name, covered)
            data = contract.contract_data()
            folder = contract.model_factory().fit(data).save(tmp_path_factory.mktemp(name) / "model")
            save_catalog(data, folder)
            cache[name] = folder
        return cache[name]

    return get


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("name", sorted(registry.registered_models()))
def test_damaged_artifact_is_one_line_naming_the_file(
    name: str, damage: str, saved_models: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(saved_models(name), folder)
    assert Recommender.load(folder).name == name and load_catalog(folder) is not None  # intact first
    file, harm = DAMAGES[damage]
    harm(folder / file)
    with pytest.raises(LmrecError) as info:
        if file == "catalog.parquet":
            load_catalog(folder)
        else:
            Recommender.load(folder)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(folder / file) in message, f"{damage}: the message does not name {file}: {message}"

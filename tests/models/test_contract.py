"""Every registered model must be covered by a :class:`lmrec.testing.RecommenderContract` subclass.

The check is automatic (RecTools style): add a model to the registry and this test fails until a
contract test for it exists somewhere under ``tests/``. Models whose module does not exist yet (other
parts of the roadmap) or whose optional dependency is missing are skipped with the reason.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

from lmrec.errors import LmrecError
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
    module = registry.registered_models()[name].split(":")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"model {name!r}: module {module} does not exist yet")
    return module


def _model_class(name: str) -> type[Recommender]:
    _require_module(name)
    try:
        return registry.get_model_class(name)
    except LmrecError as exc:  # an optional dependency is missing
        pytest.skip(str(exc))


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

"""The import graph: lower floors never import higher ones (checked on the source, with ``ast``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lmrec

SRC = Path(lmrec.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` imports, at any depth (inside functions and ``TYPE_CHECKING`` too),
    with relative imports resolved (``source``: parse this text as if it were ``path``)."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    text = path.read_text() if source is None else source
    out: set[str] = set()
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.add(node.args[0].value)
    return out


def _offenders(package: str, forbidden: str) -> dict[str, list[str]]:
    bad = {}
    for path in sorted((SRC / package).rglob("*.py")):
        hits = sorted(m for m in imported_modules(path) if m == forbidden or m.startswith(forbidden + "."))
        if hits:
            bad[str(path.relative_to(SRC))] = hits
    return bad


@pytest.mark.parametrize("package", ["bandits", "models"])
def test_lower_floors_do_not_import_serving(package: str) -> None:
    assert _offenders(package, "lmrec.serving") == {}


def test_events_is_the_bottom_floor() -> None:
    assert not [m for m in imported_modules(SRC / "events.py") if m.startswith("lmrec")]


def test_the_checker_sees_every_kind_of_import() -> None:
    """The parser itself: plain, from, relative, nested, TYPE_CHECKING and importlib imports count."""
    source = """
import lmrec.serving.app
from typing import TYPE_CHECKING
from ..serving import store
from .base import make_features
if TYPE_CHECKING:
    from lmrec.serving.state import ServingState
def f():
    from lmrec.serving.store import Event
    importlib.import_module("lmrec.serving.metrics")
"""
    found = imported_modules(SRC / "bandits" / "probe.py", source)
    assert {
        "lmrec.serving.app",
        "lmrec.serving",
        "lmrec.serving.store",
        "lmrec.bandits.base",
        "lmrec.serving.state",
        "lmrec.serving.metrics",
    } <= found

"""The packages read bottom-up: ``triggers/`` (the core) imports neither the service nor the
command line, ``stream/`` (the service) not the command line, and no module of the core
imports, even lazily inside a function, a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def imported(path: Path) -> set[str]:
    """Every module an import statement names, anywhere in the file (lazy ones too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def modules(package: str) -> dict[str, set[str]]:
    return {
        f"{package}.{path.stem}" if path.stem != "__init__" else package: imported(path)
        for path in sorted((ROOT / package).glob("*.py"))
    }


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("triggers", ("stream", "cli", "simulation", "bench")), ("stream", ("cli",))],
)
def test_a_layer_never_imports_the_layers_above(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = {
        (module, name)
        for module, names in modules(package).items()
        for name in names
        if name.split(".")[0] in forbidden
    }
    assert offenders == set()


def test_the_core_has_no_import_cycle() -> None:
    graph = modules("triggers")
    edges = {m: {n for n in names if n in graph and n != m} for m, names in graph.items()}
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join([*path, module])
        state[module] = "open"
        for dependency in sorted(edges[module]):
            visit(dependency, [*path, module])
        state[module] = "done"
        order.append(module)

    for module in sorted(edges):
        visit(module, [])
    assert len(order) == len(edges)

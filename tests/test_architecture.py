"""The package layout holds: imports go one way (docs/design.md), no module imports another in a
circle, and every public module opens with a one-line purpose."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kg", "gnn", "text_encoder", "fusion")
# fusion's layers, bottom up, and the layers each may import besides its own.
FUSION_LAYERS = {
    "config": set(),
    "data": {"config"},
    "evaluation": {"config", "data"},
    "model": {"config", "data", "evaluation"},
    "training": {"config", "data", "evaluation", "model"},
    "serving": {"config", "data", "evaluation", "model"},  # never training
    "pipeline": {"config", "data", "evaluation", "model", "training", "serving"},
    "cli": {"config", "data", "evaluation", "model", "training", "serving", "pipeline"},
}
# Top-level packages each package may import.
PACKAGE_DEPS = {
    "kg": set(),
    "gnn": set(),
    "text_encoder": set(),
    "fusion": {"kg", "gnn", "text_encoder"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(path): path for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))
}


def _imports(module: str) -> set[str]:
    """Project modules `module` imports anywhere (top level, functions, TYPE_CHECKING), each
    resolved to the most specific module that exists (`from a import b` → `a.b` if a module)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = nx.DiGraph([(m, target) for m in MODULES for target in _imports(m)])
GRAPH.add_nodes_from(MODULES)


def _layer(module: str) -> str | None:
    """The fusion layer of a fusion module (None for the `fusion` package itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "fusion" and len(parts) > 1 else None


def test_the_graph_is_read():
    assert len(MODULES) > 40
    assert "fusion.model.fused" in GRAPH["fusion.training.loop"]
    assert "kg.schema" in GRAPH["kg.stores.base"]


def test_packages_import_one_way():
    wrong = sorted(
        (m, t)
        for m, t in GRAPH.edges
        if (src := m.split(".")[0]) != (dst := t.split(".")[0]) and dst not in PACKAGE_DEPS[src]
    )
    assert not wrong, f"imports against kg/gnn/text_encoder → fusion: {wrong}"


def test_fusion_layers_import_downward_only():
    assert {_layer(m) for m in MODULES if m.startswith("fusion.")} == set(FUSION_LAYERS)
    wrong = sorted(
        (m, t)
        for m, t in GRAPH.edges
        if _layer(m) and _layer(t) and _layer(t) != _layer(m)
        if _layer(t) not in FUSION_LAYERS[_layer(m)]
    )
    assert not wrong, f"fusion imports against config → … → cli: {wrong}"


def test_serving_never_imports_training():
    serving = [m for m in MODULES if _layer(m) == "serving"]
    reachable = set().union(*(nx.descendants(GRAPH, m) for m in serving))
    assert not {m for m in reachable if _layer(m) == "training"}


def test_no_import_cycles():
    # A package importing its own submodules (`__init__` re-exports) is not a circle.
    graph = GRAPH.copy()
    graph.remove_edges_from(
        [(m, t) for m, t in GRAPH.edges if MODULES[m].name == "__init__.py" and t.startswith(m)]
    )
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", [m for m in MODULES if not m.rpartition(".")[2].startswith("_")])
def test_public_module_has_a_purpose_line(module):
    doc = ast.get_docstring(ast.parse(MODULES[module].read_text()))
    assert doc and doc.splitlines()[0].strip(), f"{MODULES[module]} has no module docstring"

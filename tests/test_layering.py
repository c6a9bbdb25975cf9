"""The packages are floors: a module imports only its own floor and the ones below it, checked on the
source with `ast` (imports inside functions count too).

    common < ingest < graph < evaluate < train          dashboard: common, ingest, graph, evaluate

The dashboard may not import train/ (it reads the models' files and evaluate's metrics); train/ holds
the models and may import everything below it, never the dashboard. cli.py sits above all of them.
Also: no import circles between modules, and heavy dependencies (torch, transformers, matplotlib, ...)
only inside functions, so importing a package never pulls them in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "common": {"common"},
    "ingest": {"common", "ingest"},
    "graph": {"common", "ingest", "graph"},
    "evaluate": {"common", "ingest", "graph", "evaluate"},
    "train": {"common", "ingest", "graph", "evaluate", "train"},
    "dashboard": {"common", "ingest", "graph", "evaluate", "dashboard"},
}
HEAVY = {"torch", "transformers", "peft", "accelerate", "matplotlib", "sentence_transformers", "sklearn"}
# Issue 9's store track removes this circle (graph.console <-> graph.store <-> the two stores);
# delete the entry then.
KNOWN_CYCLES: list[set[str]] = []  # none left: keep it that way


def _modules() -> dict[str, Path]:
    out = {}
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path, runtime_only: bool = False) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every absolute import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` / try blocks at module level still run at import
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node)}
    # `if TYPE_CHECKING:` imports never run: they count for floors, not for circles
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if runtime_only and id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno, id(node) in top))
            # `from package import module` imports that module too
            found += [(f"{node.module}.{alias.name}", node.lineno, id(node) in top) for alias in node.names
                      if f"{node.module}.{alias.name}" in MODULES]
    return found


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_every_package_is_walked():
    assert {name.split(".")[0] for name in MODULES} == set(ALLOWED)
    assert "evaluate.record" in MODULES and "train.baselines.sasrec" in MODULES


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_floor(module):
    floor = module.split(".")[0]
    wrong = [f"line {line}: {name}" for name, line, _ in _imports(MODULES[module])
             if name.split(".")[0] in ALLOWED and name.split(".")[0] not in ALLOWED[floor]]
    assert not wrong, f"{module} ({floor}) may import only {sorted(ALLOWED[floor])}: {wrong}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("dashboard")))
def test_heavy_dependencies_are_imported_inside_functions(module):
    wrong = [f"line {line}: {name}" for name, line, top in _imports(MODULES[module])
             if top and name.split(".")[0] in HEAVY]
    assert not wrong, f"{module} imports heavy dependencies at module level: {wrong}"


def _cycles() -> list[set[str]]:
    """Strongly connected components (more than one module) of the module import graph."""
    edges = {m: {t for name, _, _ in _imports(p, runtime_only=True) if (t := _resolve(name)) and t != m}
             for m, p in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    unexpected = [sorted(c) for c in _cycles() if c not in KNOWN_CYCLES]
    assert not unexpected, f"modules importing each other: {unexpected}"


def test_backends_do_not_import_the_store_module_or_the_console():
    """The store module picks a backend; a backend importing it back (or the console) was the circle
    console -> store -> backends -> console that made the store interface hard to change."""
    for backend in ("graph.embedded_store", "graph.neo4j_store"):
        imported = {_resolve(name) for name, _, _ in _imports(MODULES[backend], runtime_only=True)}
        assert not imported & {"graph.store", "graph.console"}, (backend, imported)

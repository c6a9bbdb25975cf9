"""graph/ imports run one way: no module of graph/ imports, even lazily inside a function, a module
that imports it back. (The circle console -> store -> backends -> console / store made the store
interface hard to change.)"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def graph_imports() -> dict[str, set[str]]:
    """module -> graph modules it imports anywhere in its text (top level, functions, TYPE_CHECKING
    blocks excluded: they never run)."""
    edges: dict[str, set[str]] = {}
    for path in sorted((REPO / "graph").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text())
        skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "graph":
                    found.update(f"graph.{alias.name}" for alias in node.names)
                elif node.module.startswith("graph."):
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("graph."))
        edges[name] = {m for m in found if m != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt in edges and not state.get(nxt):
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if not state.get(node):
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_graph_modules_import_each_other_without_a_circle():
    edges = graph_imports()
    assert "graph.store" in edges and "graph.console" in edges
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_backends_do_not_import_the_store_module_or_the_console():
    edges = graph_imports()
    for backend in ("graph.embedded_store", "graph.neo4j_store"):
        assert not edges[backend] & {"graph.store", "graph.console"}, (backend, edges[backend])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None

"""Every Neo4j statement iirg can send passes Neo4j's own Cypher linter (tests/lint/lint.mjs).

Collected from `graph/*queries*.py`, the relation modules `graph/relations/*.py`,
`graph/neo4j_store.py` and `graph/console.py`:
- module-level str constants named `*_QUERY` (shared by both dialects) or `*_QUERY_NEO4J`
  (`*_QUERY_LADYBUG` is LadybugDB-only and not linted),
- the Neo4j text of module-level `graph.dialect.PerDialect` constants named `*_QUERY` or `*_QUERIES`
  (one statement, or a tuple of them),
- every item of a module-level list `LINT_EXAMPLES_NEO4J` (statements made by builder functions).
All statements are linted in one node call. Error diagnostics fail the test; warnings (deprecations,
labels or properties missing from the graph schema) are reported as pytest warnings.

Needs node and the linter: `npm ci --prefix tests/lint` (scripts/install.sh does it); skips otherwise.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import types
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_DIR = REPO / "tests" / "lint"
LINTER_PACKAGE = LINT_DIR / "node_modules" / "@neo4j-cypher" / "language-support"
EXTRA_MODULES = ["graph.neo4j_store", "graph.console"]
QUERY_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_QUERY(_NEO4J)?$")
PER_DIALECT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*_(QUERY|QUERIES)$")


# -- collecting ----------------------------------------------------------------------------------

def statement_modules() -> list[str]:
    names = sorted(f"graph.{p.stem}" for p in (REPO / "graph").glob("*queries*.py"))
    relations = sorted(f"graph.relations.{p.stem}" for p in (REPO / "graph" / "relations").glob("*.py")
                       if p.stem not in ("__init__", "spec"))
    return names + relations + [m for m in EXTRA_MODULES if (REPO / (m.replace(".", "/") + ".py")).exists()]


def collect_statements(module: types.ModuleType) -> dict[str, str]:
    """{"module.NAME": statement} for the Neo4j statements one module defines."""
    from graph.dialect import PerDialect

    found: dict[str, str] = {}
    for name, value in vars(module).items():
        if QUERY_NAME.match(name) and isinstance(value, str):
            found[f"{module.__name__}.{name}"] = value
        elif PER_DIALECT_NAME.match(name) and isinstance(value, PerDialect):
            if isinstance(value.neo4j, str):
                found[f"{module.__name__}.{name}.neo4j"] = value.neo4j
            else:
                for i, statement in enumerate(value.neo4j):
                    found[f"{module.__name__}.{name}.neo4j[{i}]"] = statement
    examples = getattr(module, "LINT_EXAMPLES_NEO4J", None)
    if examples is not None:
        if isinstance(examples, str) or not all(isinstance(s, str) for s in examples):
            raise TypeError(f"{module.__name__}.LINT_EXAMPLES_NEO4J must be a list of statement strings")
        for i, statement in enumerate(examples):
            found[f"{module.__name__}.LINT_EXAMPLES_NEO4J[{i}]"] = statement
    return found


def all_statements() -> dict[str, str]:
    statements: dict[str, str] = {}
    for name in statement_modules():
        statements.update(collect_statements(importlib.import_module(name)))
    return statements


def graph_schema() -> dict | None:
    """Labels, relationship types and their endpoints, read from the LadybugDB DDL
    (`graph.queries.SCHEMA_QUERIES_LADYBUG`: the strict schema both backends follow), plus the labels
    only Neo4j has (`graph.queries.NEO4J_ONLY_LABELS`: the build marker).

    Property keys are left out on purpose: this linter version takes `row.item_id` in
    `UNWIND $rows AS row MATCH (i:Item {id: row.item_id})` for a node property and would warn on
    every batched write."""
    try:
        queries = importlib.import_module("graph.queries")
        ddl = queries.SCHEMA_QUERIES_LADYBUG
    except (ImportError, AttributeError):
        return None
    labels, types_, paths = list(getattr(queries, "NEO4J_ONLY_LABELS", ())), [], []
    for statement in ddl:
        match = re.search(r"CREATE\s+(NODE|REL)\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\((.*)\)\s*$",
                          statement, re.S | re.I)
        if not match:
            continue
        kind, name, body = match.group(1).upper(), match.group(2), match.group(3)
        for part in (p.strip() for p in body.split(",")):
            ends = re.fullmatch(r"FROM\s+(\w+)\s+TO\s+(\w+)", part, re.I)
            if ends:
                paths.append({"from": ends.group(1), "to": ends.group(2), "relType": name})
        (labels if kind == "NODE" else types_).append(name)
    return {"labels": labels, "relationshipTypes": types_, "graphSchema": paths}


# -- linting -------------------------------------------------------------------------------------

def linter_missing_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed; the Cypher linter runs on node (>= 20)"
    if not LINTER_PACKAGE.is_dir():
        return f"the Cypher linter is not installed in {LINT_DIR}: run `npm ci --prefix tests/lint`"
    return None


def lint(statements: list[str], schema: dict | None = None) -> list[list[dict]]:
    """Diagnostics per statement, from ONE node process."""
    reason = linter_missing_reason()
    if reason:
        pytest.skip(reason)
    payload = {"statements": statements, "schema": schema} if schema else statements
    done = subprocess.run(["node", str(LINT_DIR / "lint.mjs")], input=json.dumps(payload), text=True,
                          capture_output=True, timeout=300, cwd=LINT_DIR)
    assert done.returncode == 0, f"lint.mjs failed ({done.returncode}):\n{done.stderr}"
    results = json.loads(done.stdout)
    assert len(results) == len(statements)
    return results


def describe(name: str, statement: str, diagnostics: list[dict]) -> str:
    lines = [f"{name}:"]
    for d in diagnostics:
        snippet = statement[d["start"]:d["end"]] or statement[d["start"]:d["start"] + 20]
        lines.append(f"  {d['severity']} at line {d['line']}, column {d['column']} ({snippet!r}): {d['message']}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def linted() -> dict[str, tuple[str, list[dict]]]:
    statements = all_statements()
    names = list(statements)
    results = lint([statements[n] for n in names], graph_schema())
    return {name: (statements[name], diagnostics) for name, diagnostics in zip(names, results)}


# -- tests ---------------------------------------------------------------------------------------

def test_every_neo4j_statement_passes_the_linter(linted):
    assert linted, "no Neo4j statements were collected: is the collector looking at the right modules?"
    errors = [describe(n, s, [d for d in diags if d["severity"] == "error"])
              for n, (s, diags) in linted.items() if any(d["severity"] == "error" for d in diags)]
    notes = [describe(n, s, [d for d in diags if d["severity"] != "error"])
             for n, (s, diags) in linted.items() if any(d["severity"] != "error" for d in diags)]
    if notes:
        warnings.warn("Cypher linter warnings:\n" + "\n".join(notes), UserWarning, stacklevel=1)
    assert not errors, f"{len(errors)} of {len(linted)} Neo4j statements fail the linter:\n" + "\n".join(errors)


def test_the_linter_catches_broken_statements():
    broken = {
        "syntax error": "MATCH (i:Item RETURN i.id AS id",
        "unknown function": "MATCH (i:Item) RETURN toIntegr(i.popularity) AS p",
        "unknown procedure": "CALL db.labelz() YIELD label RETURN label",
        "undefined variable": "MATCH (i:Item) RETURN j.id AS id",
        "plugin not in neo4j:5-community": "RETURN apoc.text.join(['a', 'b'], ',') AS s",
    }
    valid = "UNWIND $rows AS row MATCH (i:Item {id: row.item_id}) SET i.popularity = row.popularity"
    results = lint([*broken.values(), valid])
    for (what, statement), diagnostics in zip(broken.items(), results):
        assert any(d["severity"] == "error" for d in diagnostics), f"{what} not caught: {statement}"
    assert results[-1] == [], f"a valid statement (with $rows) was flagged: {results[-1]}"


def test_project_schema_is_read_from_the_ddl():
    schema = graph_schema()
    if schema is None:
        pytest.skip("graph.queries.SCHEMA_QUERIES_LADYBUG is not defined")
    assert {"Item", "User"} <= set(schema["labels"])
    assert {"INTERACTED", "NEXT", "COLLAB", "SIMILAR"} <= set(schema["relationshipTypes"])
    assert {"from": "User", "to": "Item", "relType": "INTERACTED"} in schema["graphSchema"]


def test_schema_warnings_name_misspelt_labels_and_properties():
    schema = {"labels": ["Item"], "relationshipTypes": ["NEXT"], "propertyKeys": ["id", "title"]}
    [diagnostics] = lint(["MATCH (i:Itme)-[:NEXT]->(j:Item) RETURN i.titel AS t, j.id AS id"], schema)
    messages = " | ".join(d["message"] for d in diagnostics if d["severity"] == "warning")
    assert "Itme" in messages and "titel" in messages, diagnostics


def test_collector_picks_query_constants_and_lint_examples():
    from graph.dialect import PerDialect

    module = types.ModuleType("fake_queries")
    module.READ_ITEMS_QUERY = "MATCH (i:Item) RETURN i.id AS item_id"
    module.MERGE_ITEMS_QUERY_NEO4J = "UNWIND $rows AS row MERGE (:Item {id: row.id})"
    module.COPY_ITEMS_QUERY_LADYBUG = "COPY Item FROM $data"           # LadybugDB only: skipped
    module.QUERY_TIMEOUT_S = 10                                       # not a statement
    module._PRIVATE_QUERY = "MATCH (n) RETURN n"                      # private: skipped
    module.LINT_EXAMPLES_NEO4J = ["CREATE INDEX item_title IF NOT EXISTS FOR (i:Item) ON (i.title)"]
    module.PATH_QUERY = PerDialect(ladybug="MATCH p = (a)-[:NEXT* SHORTEST 1..2]->(b) RETURN p",
                                   neo4j="MATCH p = shortestPath((a)-[:NEXT*1..2]->(b)) RETURN p")
    module.SCHEMA_QUERIES = PerDialect(ladybug=("CREATE NODE TABLE T(id STRING PRIMARY KEY)",),
                                       neo4j=("CREATE INDEX a IF NOT EXISTS FOR (i:Item) ON (i.id)",
                                              "CREATE INDEX b IF NOT EXISTS FOR (i:Item) ON (i.title)"))
    assert collect_statements(module) == {
        "fake_queries.READ_ITEMS_QUERY": module.READ_ITEMS_QUERY,
        "fake_queries.MERGE_ITEMS_QUERY_NEO4J": module.MERGE_ITEMS_QUERY_NEO4J,
        "fake_queries.LINT_EXAMPLES_NEO4J[0]": module.LINT_EXAMPLES_NEO4J[0],
        "fake_queries.PATH_QUERY.neo4j": module.PATH_QUERY.neo4j,
        "fake_queries.SCHEMA_QUERIES.neo4j[0]": module.SCHEMA_QUERIES.neo4j[0],
        "fake_queries.SCHEMA_QUERIES.neo4j[1]": module.SCHEMA_QUERIES.neo4j[1],
    }
    module.LINT_EXAMPLES_NEO4J = "MATCH (n) RETURN n"
    with pytest.raises(TypeError):
        collect_statements(module)


def test_collector_finds_the_project_statements():
    statements = all_statements()
    assert "graph.neo4j_store.DATABASE_CHECK_QUERY_NEO4J" in statements
    if (REPO / "graph" / "queries.py").exists():
        assert any(name.startswith("graph.queries.") for name in statements)
    assert any(name.startswith("graph.relations.collab.") for name in statements)
    assert not any(name.endswith("_QUERY_LADYBUG") for name in statements)

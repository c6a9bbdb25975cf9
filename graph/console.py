"""Ad-hoc read-only Cypher on a run's graph: `iirg cypher` and the dashboard's query box.

    iirg cypher --run runs/ml-100k "MATCH (i:Item) WHERE i.title CONTAINS \\$w RETURN i.title AS title" \\
        --param w=Star --format table --limit 20 --timeout 10

    from graph.console import run_read_query, format_result
    result = run_read_query(config, "MATCH (a:Item)-[r:NEXT]->(b:Item) RETURN a, r, b", row_limit=50)
    print(format_result(result.frame, "table"), result.truncated, len(result.nodes))

Three independent checks keep this read-only:
1. `graph.readonly.check_read_only`, a tokenizer that splits the text where the database does, refuses
   writing, administrative and file-touching statements before anything is opened;
2. `graph.readonly.check_plan` asks the database what it would run (EXPLAIN) and refuses any plan that
   is not a plain read (LadybugDB: an allow-list of operators and table functions; Neo4j: query type
   'r' and no LoadCSV). It runs second because LadybugDB's EXPLAIN is not free of effects: binding
   `EXPORT DATABASE 'dir'` already creates `dir`, binding `LOAD FROM` opens the file;
3. the store is opened in the database's own read-only mode (Neo4j READ access mode, LadybugDB
   `read_only=True`), so a write that slipped past both is still refused by the database.

Row limit: the query text is never rewritten (LadybugDB has no `CALL { }` subqueries, and a user's
own LIMIT/UNION/ORDER BY must keep its meaning). At most `row_limit + 1` rows are fetched from the
result (Neo4j pulls no more than that over the wire), `row_limit` are kept and `truncated` says whether
there were more. Timeout: Neo4j stops the transaction server-side (`unit_of_work(timeout=...)`);
LadybugDB interrupts the query (`Connection.set_query_timeout`).

Values: nodes, relationships and paths look the same on both backends (see graph/neo4j_store.py):
node `{"_ID", "_LABEL", **properties}`, relationship `{"_ID", "_LABEL", "_SRC", "_DST", **properties}`,
path `{"_NODES", "_RELS"}`; LadybugDB's internal ids become "table:offset" strings and unset properties
are dropped. Every node and relationship found in the result is also listed in `ConsoleResult.nodes` /
`.relationships` for drawing the subgraph.
"""

from __future__ import annotations

import decimal
import io
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from graph.errors import GraphError
from graph.readonly import check_plan, check_read_only
from graph.store import StoreConfig, open_store
from common.errors import IirgError

OutputFormat = Literal["table", "csv", "json"]


@dataclass(frozen=True)
class GraphNode:
    id: str
    label: str | None
    properties: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GraphRel:
    id: str
    type: str | None
    src: str
    dst: str
    properties: dict = field(default_factory=dict)


@dataclass
class ConsoleResult:
    """One console query's answer: the rows plus every node/relationship they contain."""

    frame: pd.DataFrame
    truncated: bool                     # the query had more than row_limit rows
    row_limit: int
    nodes: list[GraphNode]
    relationships: list[GraphRel]
    elapsed_s: float
    dialect: Literal["ladybug", "neo4j"]


def run_read_query(config: StoreConfig, query: str, params: dict | None = None, *, row_limit: int = 1000,
                   timeout_s: float | None = 10.0) -> ConsoleResult:
    """Check `query` is read-only, run it on a read-only store with a row limit and a timeout.

    Raises ReadOnlyViolation (refused by the guard or by the database), StoreUnavailable (no graph /
    no server) or GraphError (the query failed or timed out).
    """
    if row_limit < 1:
        raise ValueError("row_limit must be >= 1")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError("timeout_s must be > 0 (or None for no limit)")
    dialect = config.dialect
    check_read_only(query, dialect)
    started = time.perf_counter()
    with open_store(config, read_only=True) as store:
        if not store.read_only:
            # Never run ad-hoc text on a writable store, whatever open_store returned.
            raise GraphError(f"{type(store).__name__} did not open read-only; refusing to run the query")
        # Second layer: the database's own plan, independent of the token guard above.
        check_plan(store.explain(query, params or {}))
        columns, rows, truncated = store.run_limited(query, params or {}, limit=row_limit, timeout_s=timeout_s)
    rows = [tuple(_normalize(value) for value in row) for row in rows]
    nodes, relationships = collect_graph(rows)
    return ConsoleResult(frame=pd.DataFrame(rows, columns=columns), truncated=truncated, row_limit=row_limit,
                         nodes=nodes, relationships=relationships,
                         elapsed_s=time.perf_counter() - started, dialect=dialect)


# -- values ----------------------------------------------------------------------------------------

def _null_to_none(value: Any) -> Any:
    """pandas' missing-value markers (NaN, NA, NaT) -> None."""
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _ladybug_id(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"offset", "table"}:
        return f"{value['table']}:{value['offset']}"
    return value


def _is_node(value: Any) -> bool:
    return isinstance(value, dict) and "_ID" in value and "_LABEL" in value and "_SRC" not in value


def _is_rel(value: Any) -> bool:
    return isinstance(value, dict) and "_ID" in value and "_SRC" in value and "_DST" in value


def _is_path(value: Any) -> bool:
    return isinstance(value, dict) and "_NODES" in value and "_RELS" in value


def _normalize(value: Any) -> Any:
    """One result value -> the backend-independent shape described in the module docstring."""
    value = _null_to_none(value)
    if _is_path(value):
        nodes = [n for n in (_normalize(n) for n in value["_NODES"]) if n is not None]
        rels = [r for r in (_normalize(r) for r in value["_RELS"]) if r is not None]
        return {"_NODES": nodes, "_RELS": rels}
    if _is_node(value) or _is_rel(value):
        if value["_ID"] is None:            # LadybugDB's null node/rel inside an OPTIONAL MATCH path
            return None
        out = {}
        for key, item in value.items():
            if key in ("_ID", "_SRC", "_DST"):
                out[key] = _ladybug_id(item)
            elif key.startswith("_"):
                out[key] = item
            elif item is not None:
                out[key] = _normalize(item)
        return out
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    return value


def collect_graph(rows: list[tuple]) -> tuple[list[GraphNode], list[GraphRel]]:
    """Every distinct node and relationship inside normalized result rows, in order of appearance."""
    nodes: dict[str, GraphNode] = {}
    rels: dict[str, GraphRel] = {}

    def visit(value: Any) -> None:
        if _is_path(value):
            for item in [*value["_NODES"], *value["_RELS"]]:
                visit(item)
        elif _is_rel(value):
            rels.setdefault(str(value["_ID"]), GraphRel(
                id=str(value["_ID"]), type=value.get("_LABEL"), src=str(value["_SRC"]), dst=str(value["_DST"]),
                properties={k: v for k, v in value.items() if not k.startswith("_")}))
        elif _is_node(value):
            nodes.setdefault(str(value["_ID"]), GraphNode(
                id=str(value["_ID"]), label=value.get("_LABEL"),
                properties={k: v for k, v in value.items() if not k.startswith("_")}))
        elif isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for row in rows:
        for value in row:
            visit(value)
    return list(nodes.values()), list(rels.values())


# -- parameters ------------------------------------------------------------------------------------

_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_params(items: list[str] | None) -> dict:
    """["k=v", "n=5", "xs=[1,2]"] -> {"k": "v", "n": 5, "xs": [1, 2]}.

    A value is parsed as JSON when it is valid JSON (numbers, true/false/null, lists, objects, "quoted
    strings"), else kept as the literal string: `--param id=42` is the integer 42, `--param 'id="42"'`
    the string "42".
    """
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _PARAM_NAME.fullmatch(key):
            raise IirgError(f"bad parameter {item!r}: expected KEY=VALUE with KEY a Cypher parameter name")
        if key in params:
            raise IirgError(f"parameter {key!r} given twice")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


# -- output ----------------------------------------------------------------------------------------

def format_result(frame: pd.DataFrame, fmt: OutputFormat = "table", *, width: int | None = None) -> str:
    """Render a console result as a rich table, CSV, or a JSON array of row objects."""
    if fmt == "json":
        records = [dict(zip(frame.columns, row)) for row in frame.itertuples(index=False, name=None)]
        return json.dumps(_jsonable(records), ensure_ascii=False, indent=2)
    if fmt == "csv":
        out = frame.map(_csv_cell) if len(frame) else frame
        return out.to_csv(index=False).rstrip("\n")
    if fmt == "table":
        return _table(frame, width or shutil.get_terminal_size((120, 24)).columns)
    raise ValueError(f"unknown format {fmt!r} (expected table, csv or json)")


def _table(frame: pd.DataFrame, width: int) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=True, header_style="bold", show_lines=False)
    for column in frame.columns:
        table.add_column(Text(str(column)), overflow="fold")
    for row in frame.itertuples(index=False, name=None):
        table.add_row(*(Text(_display(v)) for v in row))   # Text: values are never parsed as markup
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(table)
    rows = len(frame)
    return buffer.getvalue().rstrip("\n") + f"\n{rows} row{'s' if rows != 1 else ''}"


_MAX_LIST = 8
_MAX_TEXT = 120


def _display(value: Any, depth: int = 0) -> str:
    """A compact, readable cell: (:Item {id: '1', title: 'Heat'}), [:NEXT {count: 3}], long lists cut."""
    value = _null_to_none(value)
    if value is None:
        return "null"
    if _is_path(value):
        nodes, rels = value["_NODES"], value["_RELS"]
        if len(nodes) != len(rels) + 1:     # e.g. LadybugDB's variable-length rel without its nodes
            return "[" + ", ".join(_display(r) for r in rels) + "]"
        parts = [f"(:{nodes[0].get('_LABEL')} {{id: {_display(nodes[0].get('id'), 1)}}})"]
        for node, rel in zip(nodes[1:], rels):
            forward = rel.get("_DST") == node.get("_ID")
            parts.append(f"-[:{rel.get('_LABEL')}]->" if forward else f"<-[:{rel.get('_LABEL')}]-")
            parts.append(f"(:{node.get('_LABEL')} {{id: {_display(node.get('id'), 1)}}})")
        return "".join(parts)
    if _is_node(value):
        return f"(:{value.get('_LABEL')} {_display_props(value)})"
    if _is_rel(value):
        return f"[:{value.get('_LABEL')} {_display_props(value)}]"
    if isinstance(value, str):
        text = value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT - 1] + "…"
        return repr(text) if depth else text
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_display(v, depth + 1) for v in value[:_MAX_LIST])
        more = f", … ({len(value)} items)" if len(value) > _MAX_LIST else ""
        return f"[{shown}{more}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_display(v, depth + 1)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _display_props(value: dict) -> str:
    props = {k: v for k, v in value.items() if not k.startswith("_")}
    return _display(props, 1)


def _csv_cell(value: Any) -> Any:
    value = _null_to_none(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and type(value).__module__ == "numpy":   # numpy scalars
        value = value.item()
    value = _null_to_none(value)
    if isinstance(value, float) and math.isinf(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, decimal.Decimal):
        # LadybugDB hands INT128 (e.g. sum() of INT64) and DECIMAL values over as Decimal. JSON numbers
        # stay numbers: integers exactly (Python's json writes big ints), fractions as floats.
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return str(value)


__all__ = ["ConsoleResult", "GraphNode", "GraphRel", "collect_graph", "format_result", "parse_params",
           "run_read_query"]

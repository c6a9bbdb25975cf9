"""The read-only console: the guard (graph.readonly) and, on real databases, the database's own
read-only mode behind it. Both backends: embedded LadybugDB in tmp_path, and Neo4j 5 in Docker
(tests/neo4j_support.py; skipped, saying why, where no Docker daemon answers)."""

from __future__ import annotations

import ladybug
import pytest

from graph.console import run_read_query
from graph.embedded_store import fetch_ladybug
from graph.errors import GraphError, ReadOnlyViolation, StoreUnavailable
from graph.readonly import check_read_only, tokenize
from graph.store import StoreConfig, open_store

pytest_plugins = ["neo4j_support"]

# -- the guard alone -------------------------------------------------------------------------------

BOTH = ("ladybug", "neo4j")

REFUSED = [
    # (query, dialects, words the message must name)
    ("CREATE (:Item {id: 'x'})", BOTH, "CREATE"),
    ("MERGE (i:Item {id: 'x'}) RETURN i", BOTH, "MERGE"),
    ("MATCH (i:Item) DELETE i", BOTH, "DELETE"),
    ("MATCH (i:Item) DETACH DELETE i", BOTH, "DETACH DELETE"),
    ("MATCH (i:Item) SET i.title = 'x' RETURN i", BOTH, "SET"),
    ("MATCH (i:Item) REMOVE i.title RETURN i", BOTH, "REMOVE"),
    ("MATCH (i:Item {id: '1'}) set i:Hidden", BOTH, "SET"),            # lower case
    ("DROP TABLE Item", ("ladybug",), "DROP TABLE"),
    ("DROP INDEX item_title", ("neo4j",), "DROP INDEX"),
    ("ALTER TABLE Item ADD extra STRING", ("ladybug",), "ALTER"),
    ("MATCH (i:Item) WITH collect(i) AS xs FOREACH (x IN xs | SET x.seen = true)", BOTH, "FOREACH"),
    ("COPY (MATCH (i:Item) RETURN i.id) TO '/tmp/items.csv'", ("ladybug",), "COPY"),
    ("COPY Item FROM '/tmp/items.csv'", ("ladybug",), "COPY"),
    ("LOAD FROM '/etc/passwd' RETURN *", ("ladybug",), "LOAD FROM"),
    ("EXPORT DATABASE '/tmp/dump'", ("ladybug",), "EXPORT DATABASE"),
    ("IMPORT DATABASE '/tmp/dump'", ("ladybug",), "IMPORT DATABASE"),
    ("INSTALL httpfs", ("ladybug",), "INSTALL"),
    ("LOAD EXTENSION httpfs", ("ladybug",), "LOAD EXTENSION"),
    ("LOAD httpfs", ("ladybug",), "LOAD"),
    ("ATTACH '/tmp/other.lbdb' AS other (dbtype lbug)", ("ladybug",), "ATTACH"),
    ("DETACH other", ("ladybug",), "DETACH"),
    ("USE other MATCH (n) RETURN n", BOTH, "USE"),
    ("CHECKPOINT", ("ladybug",), "CHECKPOINT"),
    ("BEGIN TRANSACTION", ("ladybug",), "BEGIN TRANSACTION"),
    ("COMMIT", ("ladybug",), "COMMIT"),
    ("ROLLBACK", ("ladybug",), "ROLLBACK"),
    ("CALL threads=1", ("ladybug",), "CALL threads"),
    ("CALL project_graph('g', ['Item'], ['NEXT'])", ("ladybug",), "CALL project_graph"),
    ("LOAD FROM read_csv('/etc/hosts') RETURN *", ("ladybug",), "LOAD FROM"),
    ("CALL clear_warnings() RETURN *", ("ladybug",), "CALL clear_warnings"),
    ("COMMENT ON TABLE Item IS 'x'", ("ladybug",), "COMMENT ON"),
    ("CREATE MACRO plus1(x) AS x + 1", ("ladybug",), "CREATE MACRO"),
    ("LOAD CSV FROM 'file:///etc/passwd' AS row RETURN row", ("neo4j",), "LOAD CSV"),
    ("LOAD CSV WITH HEADERS FROM 'https://example.com/x.csv' AS row RETURN row", ("neo4j",), "LOAD CSV"),
    ("MATCH (i:Item) CALL (i) { SET i.x = 1 } IN TRANSACTIONS OF 10 ROWS", ("neo4j",), "SET"),
    ("UNWIND range(1, 10) AS x CALL { WITH x RETURN x AS y } IN TRANSACTIONS RETURN y", ("neo4j",),
     "IN TRANSACTIONS"),
    ("CALL dbms.security.createUser('eve', 'pw', false)", ("neo4j",), "dbms.security.createUser"),
    ("CALL dbms.killQueries(['q-1'])", ("neo4j",), "dbms.killQueries"),
    ("CALL db.createLabel('X')", ("neo4j",), "db.createLabel"),
    ("CALL db.index.vector.createNodeIndex('v', 'Item', 'embedding', 384, 'cosine')", ("neo4j",),
     "db.index.vector.createNodeIndex"),
    ("CALL db.clearQueryCaches()", ("neo4j",), "db.clearQueryCaches"),
    ("CALL db.checkpoint()", ("neo4j",), "db.checkpoint"),
    ("CALL apoc.periodic.iterate('MATCH (n) RETURN n', 'DELETE n', {})", ("neo4j",), "apoc.periodic.iterate"),
    ("CALL apoc.load.json('file:///etc/x.json') YIELD value RETURN value", ("neo4j",), "apoc.load.json"),
    ("CALL apoc.export.csv.all('/tmp/all.csv', {})", ("neo4j",), "apoc.export.csv.all"),
    ("CALL apoc.cypher.runWrite('CREATE (n)', {})", ("neo4j",), "apoc.cypher.runWrite"),
    ("CALL gds.pageRank.write('g', {writeProperty: 'pr'})", ("neo4j",), "gds.pageRank.write"),
    ("CALL tx.setMetaData({a: 1})", ("neo4j",), "tx.setMetaData"),
    ("RETURN apoc.cypher.runFirstColumnSingle('CREATE (n) RETURN n', {}) AS n", ("neo4j",),
     "apoc.cypher.runFirstColumnSingle"),
    ("RETURN {n: apoc.cypher.runFirstColumnSingle('MATCH (n) DETACH DELETE n', {})} AS m", ("neo4j",),
     "apoc.cypher.runFirstColumnSingle"),
    ("RETURN `apoc`.cypher.runFirstColumnSingle('CREATE (n)', {}) AS n", ("neo4j",), "apoc.cypher"),
    ("CALL `dbms`.`security`.createUser('eve', 'pw', false)", ("neo4j",), "dbms.security.createUser"),
    ("CREATE DATABASE other", ("neo4j",), "CREATE DATABASE"),
    ("STOP DATABASE neo4j", ("neo4j",), "STOP DATABASE"),
    ("GRANT ROLE admin TO eve", ("neo4j",), "GRANT"),
    ("SHOW USERS", ("neo4j",), "SHOW USERS"),
    ("SHOW TRANSACTIONS", ("neo4j",), "TRANSACTIONS"),
    ("TERMINATE TRANSACTIONS 'neo4j-transaction-1'", ("neo4j",), "TERMINATE TRANSACTIONS"),
    ("MATCH (i:Item) RETURN i; MATCH (n) DETACH DELETE n", BOTH, "second statement"),
    ("MATCH (i:Item) RETURN i /* ; */ ; CREATE (:X)", BOTH, "second statement"),
    ("MATCH (n) RETURN 'open string", BOTH, "unterminated string"),
    ("MATCH (n) /* never closed RETURN n", BOTH, "unterminated block comment"),
    ("MATCH (`odd name) RETURN 1", BOTH, "unterminated backtick"),
    ("WITH 1 AS x RETURN set", BOTH, "SET"),                           # a keyword as a variable
    ("   // only a comment", BOTH, "empty"),
]


@pytest.mark.parametrize("query,dialects,named", REFUSED, ids=[q[:48] for q, *_ in REFUSED])
def test_guard_refuses(query, dialects, named):
    for dialect in dialects:
        with pytest.raises(ReadOnlyViolation) as refused:
            check_read_only(query, dialect)
        assert named.lower() in str(refused.value).lower(), str(refused.value)


def test_refusal_says_where():
    with pytest.raises(ReadOnlyViolation, match=r"refused MERGE at line 2, column 1"):
        check_read_only("MATCH (i:Item)\nMERGE (j:Item {id: 'x'})", "neo4j")


ACCEPTED = [
    ("MATCH (i:Item) WHERE i.title CONTAINS 'set' RETURN i.title AS title", BOTH),
    ("MATCH (i:Item) WHERE i.title = \"DELETE ME\" OR i.title = 'it\\'s CREATE' RETURN i.id AS id", BOTH),
    ("MATCH (i:Item) RETURN i.created AS created, i.settings AS s, i.`set` AS `delete`", BOTH),
    ("MATCH (i:Item) // DETACH DELETE i\nRETURN count(i) AS n", BOTH),
    ("/* CREATE (:X); DROP TABLE Item */ MATCH (i:Item) RETURN i.id AS id;", BOTH),
    ("MATCH (u:User)-[r:INTERACTED]->(i:Item) WHERE r.split = $split RETURN u.id AS user_id, "
     "count(*) AS n ORDER BY n DESC LIMIT 10", BOTH),
    ("MATCH (a:Item)-[:NEXT]->(b:Item) RETURN {create: a.id, merge: b.id} AS pair", BOTH),
    ("MATCH (n) RETURN n.x AS start, 1 AS stop, 'a' AS comment", BOTH),
    ("MATCH p = (a:Item)-[:COLLAB*1..2]->(b:Item) RETURN p LIMIT 5", BOTH),
    ("MATCH (i:Item) WHERE i.title STARTS WITH 'Star' RETURN i.title AS t UNION "
     "MATCH (i:Item) WHERE i.title ENDS WITH 'Wars' RETURN i.title AS t", BOTH),
    ("CALL show_tables() RETURN *", ("ladybug",)),
    ("CALL table_info('Item') RETURN *", ("ladybug",)),
    ("CALL SHOW_CONNECTION('NEXT') RETURN *", ("ladybug",)),
    ("CALL db.labels() YIELD label RETURN label", ("neo4j",)),
    ("CALL db.schema.visualization()", ("neo4j",)),
    ("CALL db.relationshipTypes", ("neo4j",)),
    ("SHOW INDEXES YIELD name, type RETURN name, type", ("neo4j",)),
    ("SHOW CONSTRAINTS", ("neo4j",)),
    ("MATCH (i:Item) CALL (i) { MATCH (i)-[:NEXT]->(j) RETURN count(j) AS out } RETURN i.id AS id, out",
     ("neo4j",)),
    ("MATCH (i:Item) CALL { WITH i MATCH (i)-[:NEXT]->(j) RETURN j } RETURN j.id AS id", ("neo4j",)),
    ("MATCH (i:Item) RETURN COUNT { (i)-[:NEXT]->() } AS out, date.truncate('month', date()) AS d",
     ("neo4j",)),
    ("EXPLAIN MATCH (i:Item) RETURN i", ("neo4j",)),
    ("MATCH (i:Item:`Set`) RETURN i.id AS id", BOTH),
]


@pytest.mark.parametrize("query,dialects", ACCEPTED, ids=[q[:48] for q, _ in ACCEPTED])
def test_guard_accepts_reads(query, dialects):
    for dialect in dialects:
        check_read_only(query, dialect)


def test_tokenizer_keeps_strings_comments_and_names_whole():
    tokens = tokenize("MATCH (i) // c\nWHERE i.t = 'a ''b' /* x */ RETURN `x y` AS $p")
    kinds = [(t.kind, t.text) for t in tokens]
    assert ("string", "'a '") in kinds and ("string", "'b'") in kinds
    assert ("name", "`x y`") in kinds and ("param", "$p") in kinds
    assert not any("c" == t.text or "x" == t.text for t in tokens)


def test_unknown_dialect_is_an_error():
    with pytest.raises(ValueError):
        check_read_only("MATCH (n) RETURN n", "sqlite")


# -- real databases --------------------------------------------------------------------------------

SEED_STATEMENTS = [
    "CREATE (:Item {id: '1', title: 'Heat'}), (:Item {id: '2', title: 'Casino'}), "
    "(:Item {id: '3', title: 'Ronin'}), (:User {id: 'u1'}), (:User {id: 'u2'})",
    "MATCH (a:Item {id: '1'}), (b:Item {id: '2'}) CREATE (a)-[:NEXT {count: 2}]->(b)",
    "MATCH (a:Item {id: '2'}), (b:Item {id: '3'}) CREATE (a)-[:NEXT {count: 1}]->(b)",
    "MATCH (u:User {id: 'u1'}), (i:Item) WHERE i.id IN ['1', '2'] CREATE (u)-[:INTERACTED {pos: 0}]->(i)",
]
LADYBUG_DDL = [
    "CREATE NODE TABLE Item(id STRING PRIMARY KEY, title STRING)",
    "CREATE NODE TABLE User(id STRING PRIMARY KEY)",
    "CREATE REL TABLE NEXT(FROM Item TO Item, count INT64)",
    "CREATE REL TABLE INTERACTED(FROM User TO Item, pos INT64)",
]
COUNT_QUERY = """
MATCH (n) WITH count(n) AS nodes
OPTIONAL MATCH ()-[r]->() RETURN nodes, count(r) AS rels
"""
TITLES_QUERY = "MATCH (i:Item) RETURN i.id AS id, i.title AS title ORDER BY id"

WRITES = [
    "CREATE (:Item {id: '9', title: 'Thief'})",
    "MATCH (i:Item {id: '1'}) SET i.title = 'changed' RETURN i.id AS id",
    "MATCH (i:Item {id: '1'}) DETACH DELETE i",
    "MATCH (a:Item {id: '3'}), (b:Item {id: '1'}) MERGE (a)-[:NEXT {count: 9}]->(b)",
    "MATCH ()-[r:NEXT]->() DELETE r",
]


def seed(config: StoreConfig) -> None:
    """The tiny graph every test below reads: 3 items, 2 users, 2 NEXT, 2 INTERACTED."""
    if config.backend == "embedded":
        db = ladybug.Database(str(config.path))
        conn = ladybug.Connection(db)
        try:
            for statement in [*LADYBUG_DDL, *SEED_STATEMENTS]:
                conn.execute(statement)
        finally:
            conn.close()
            db.close()
        return
    from graph.neo4j_store import Neo4jStore
    with Neo4jStore.connect(config) as store:
        for statement in SEED_STATEMENTS:
            store.run(statement)


def snapshot(config: StoreConfig) -> tuple:
    """(node count, relationship count, every item's id and title), read through a read-only store."""
    with open_store(config, read_only=True) as store:
        counts = store.run(COUNT_QUERY)[0]
        titles = [tuple(r.values()) for r in store.run(TITLES_QUERY)]
    return counts["nodes"], counts["rels"], titles


@pytest.fixture
def seeded(store_config) -> StoreConfig:
    seed(store_config)
    return store_config


def test_seeded_graph_is_what_the_tests_expect(seeded):
    assert snapshot(seeded) == (5, 4, [("1", "Heat"), ("2", "Casino"), ("3", "Ronin")])


@pytest.mark.parametrize("query", WRITES)
def test_console_refuses_writes_and_the_graph_is_unchanged(seeded, query):
    before = snapshot(seeded)
    with pytest.raises(ReadOnlyViolation):
        run_read_query(seeded, query)
    assert snapshot(seeded) == before


@pytest.mark.parametrize("query", WRITES)
def test_database_read_only_mode_refuses_writes_without_the_guard(seeded, query):
    """Bypass check_read_only: the read-only store itself must refuse."""
    before = snapshot(seeded)
    with open_store(seeded, read_only=True) as store:
        assert store.read_only
        with pytest.raises(GraphError) as refused:
            store.run(query)
    assert "read-only" in str(refused.value) or "READ" in str(refused.value), str(refused.value)
    assert snapshot(seeded) == before


def test_console_reads_rows_nodes_and_relationships(seeded):
    result = run_read_query(seeded, "MATCH (a:Item)-[r:NEXT]->(b:Item) RETURN a, r, b, r.count AS n "
                                    "ORDER BY n DESC")
    assert list(result.frame.columns) == ["a", "r", "b", "n"]
    assert result.frame["n"].tolist() == [2, 1]
    assert not result.truncated
    assert sorted(n.properties["id"] for n in result.nodes) == ["1", "2", "3"]
    assert {n.label for n in result.nodes} == {"Item"}
    by_id = {n.id: n.properties["id"] for n in result.nodes}
    edges = sorted((by_id[r.src], by_id[r.dst], r.type, r.properties["count"]) for r in result.relationships)
    assert edges == [("1", "2", "NEXT", 2), ("2", "3", "NEXT", 1)]
    first = result.frame["a"].iloc[0]
    assert first["_LABEL"] == "Item" and first["id"] == "1" and first["title"] == "Heat"


def test_console_reads_paths(seeded):
    result = run_read_query(seeded, "MATCH p = (a:Item {id: '1'})-[:NEXT*2..2]->(c:Item) RETURN p")
    assert len(result.frame) == 1
    assert sorted(n.properties["id"] for n in result.nodes) == ["1", "2", "3"]
    assert len(result.relationships) == 2


def test_console_row_limit(seeded):
    cut = run_read_query(seeded, TITLES_QUERY, row_limit=2)
    assert cut.frame["id"].tolist() == ["1", "2"] and cut.truncated
    whole = run_read_query(seeded, TITLES_QUERY, row_limit=3)
    assert whole.frame["id"].tolist() == ["1", "2", "3"] and not whole.truncated


def test_console_parameters(seeded):
    result = run_read_query(seeded, "MATCH (i:Item) WHERE i.id IN $ids RETURN i.title AS title ORDER BY title",
                            {"ids": ["1", "3"]})
    assert result.frame["title"].tolist() == ["Heat", "Ronin"]


def test_console_empty_result_keeps_columns(seeded):
    result = run_read_query(seeded, "MATCH (i:Item {id: 'none'}) RETURN i.id AS id, i.title AS title")
    assert list(result.frame.columns) == ["id", "title"] and len(result.frame) == 0 and not result.truncated


def test_console_reports_query_errors(seeded):
    with pytest.raises(GraphError) as failed:
        run_read_query(seeded, "MATCH (i:Item) RETURN nosuchvariable AS x")
    assert not isinstance(failed.value, ReadOnlyViolation)


# -- LadybugDB only --------------------------------------------------------------------------------

@pytest.fixture
def ladybug_config(tmp_path) -> StoreConfig:
    config = StoreConfig(backend="embedded", path=tmp_path / "graph.lbdb")
    seed(config)
    return config


@pytest.mark.parametrize("query,target", [
    ("COPY (MATCH (i:Item) RETURN i.id) TO '{dir}/items.csv'", "items.csv"),
    ("EXPORT DATABASE '{dir}/dump'", "dump"),
])
def test_guard_stops_file_writes_that_ladybug_read_only_mode_allows(ladybug_config, tmp_path, query, target):
    """LadybugDB 0.22 in read-only mode still runs COPY ... TO and EXPORT DATABASE: only the guard
    stands between the console and the file system here."""
    with pytest.raises(ReadOnlyViolation):
        run_read_query(ladybug_config, query.format(dir=tmp_path))
    assert not (tmp_path / target).exists()


def test_fetch_ladybug_maps_the_read_only_refusal(ladybug_config):
    db = ladybug.Database(str(ladybug_config.path), read_only=True)
    conn = ladybug.Connection(db)
    try:
        with pytest.raises(ReadOnlyViolation, match="read-only"):
            fetch_ladybug(conn, "CREATE (:Item {id: '9'})", limit=10)
        columns, rows, truncated = fetch_ladybug(conn, TITLES_QUERY, limit=2)
        assert columns == ["id", "title"] and rows == [("1", "Heat"), ("2", "Casino")] and truncated
    finally:
        conn.close()
        db.close()


def test_console_timeout_interrupts_a_slow_ladybug_query(tmp_path):
    config = StoreConfig(backend="embedded", path=tmp_path / "big.lbdb")
    db = ladybug.Database(str(config.path))
    conn = ladybug.Connection(db)
    conn.execute("CREATE NODE TABLE Item(id STRING PRIMARY KEY)")
    conn.execute("UNWIND range(1, 2000) AS x CREATE (:Item {id: string(x)})")
    conn.close()
    db.close()
    # 8e9 string concatenations: minutes of work without the timeout.
    slow = "MATCH (a:Item), (b:Item), (c:Item) WHERE a.id + b.id = c.id RETURN count(*) AS n"
    with pytest.raises(GraphError, match="timed out"):
        run_read_query(config, slow, timeout_s=0.3)
    assert run_read_query(config, "MATCH (i:Item) RETURN count(i) AS n").frame["n"].tolist() == [2000]


def test_console_on_a_missing_graph_says_so(tmp_path):
    with pytest.raises(StoreUnavailable, match="iirg build"):
        run_read_query(StoreConfig(backend="embedded", path=tmp_path / "none.lbdb"), "MATCH (n) RETURN n")
    assert not (tmp_path / "none.lbdb").exists()


# -- parameters and output formats -----------------------------------------------------------------

def test_parse_params_reads_json_values_else_strings():
    from graph.console import parse_params
    assert parse_params(["k=v", "n=5", "xs=[1,2]", "flag=true", 's="5"', "eq=a=b", "none=null", "empty="]) == {
        "k": "v", "n": 5, "xs": [1, 2], "flag": True, "s": "5", "eq": "a=b", "none": None, "empty": ""}
    assert parse_params(None) == {}


@pytest.mark.parametrize("bad", [["novalue"], ["1x=3"], ["a b=1"], ["k=1", "k=2"]])
def test_parse_params_rejects_bad_items(bad):
    from graph.console import parse_params
    from common.errors import IirgError
    with pytest.raises(IirgError):
        parse_params(bad)


def test_format_result_table_csv_json(ladybug_config):
    import csv
    import io
    import json

    from graph.console import format_result
    result = run_read_query(ladybug_config, "MATCH (a:Item)-[r:NEXT]->(b:Item) RETURN a, r, b.title AS title, "
                                            "[1, 2] AS xs ORDER BY title")
    table = format_result(result.frame, "table", width=200)
    assert "(:Item {id: '1', title: 'Heat'})" in table and "[:NEXT {count: 2}]" in table
    assert table.endswith("2 rows")

    rows = list(csv.DictReader(io.StringIO(format_result(result.frame, "csv"))))
    assert [r["title"] for r in rows] == ["Casino", "Ronin"]
    assert json.loads(rows[0]["a"])["title"] == "Heat" and json.loads(rows[0]["xs"]) == [1, 2]

    records = json.loads(format_result(result.frame, "json"))
    assert [r["title"] for r in records] == ["Casino", "Ronin"]
    assert records[1]["r"]["count"] == 1 and records[1]["a"]["id"] == "2"


def test_format_table_prints_values_literally_and_cuts_long_lists():
    import pandas as pd

    from graph.console import format_result
    frame = pd.DataFrame({"title": ["[bold]not markup[/bold]", None], "embedding": [[0.5] * 384, []]})
    table = format_result(frame, "table", width=200)
    assert "[bold]not markup[/bold]" in table and "null" in table
    assert "(384 items)" in table
    with pytest.raises(ValueError):
        format_result(frame, "xml")


def test_iirg_cypher_command(tmp_path, capsys):
    """End to end through the CLI: the run folder's graph, read-only, with a parameter."""
    import cli
    from graph.rundir import RunPaths
    run = tmp_path / "run"
    config = StoreConfig(backend="embedded", path=RunPaths.of(run).store)
    config.path.parent.mkdir(parents=True, exist_ok=True)
    seed(config)
    code = cli.main(["cypher", "--run", str(run), "--format", "json", "--param", 'ids=["1","3"]',
                     "MATCH (i:Item) WHERE i.id IN $ids RETURN i.title AS title ORDER BY title"])
    assert code == 0
    out = capsys.readouterr().out
    assert '"title": "Heat"' in out and '"title": "Ronin"' in out and "Casino" not in out
    assert cli.main(["cypher", "--run", str(run), "MATCH (i:Item) DETACH DELETE i"]) == 2
    assert "refused DETACH DELETE" in capsys.readouterr().err
    assert snapshot(config)[:2] == (5, 4)


# -- token boundaries: split where the database splits ---------------------------------------------

GLUED = [
    # (query, dialects): each hides a refused keyword from a tokenizer that splits differently
    ("UNWIND [1] AS x WITH x LIMIT 1LOAD FROM '/etc/passwd' (file_format='csv', header=false, delim=':') "
     "RETURN *", BOTH),
    ("MATCH (i:Item) WITH i LIMIT 1SET i.title = 'x'", BOTH),
    ("UNWIND [1] AS x WITH x LIMIT 1CREATE (:Item {id: 'x'})", BOTH),
    ("MATCH (i:Item) WITH i LIMIT $1SET i.title = 'x'", BOTH),
    ("MATCH (i:Item) WITH i LIMIT 1.5e3SET i.title = 'x'", BOTH),
    ("RETURN 1 AS x // comment\rCOPY (MATCH (i:Item) RETURN i.id) TO '/tmp/x.csv'", ("ladybug",)),
    ("RETURN 1 /***/ AS x", ("ladybug",)),                        # not closed in LadybugDB
    ("MATCH (i:Item) WITH i LIMIT 1\u3000SET i.title = 'x'", BOTH),
    ("MATCH (i:Item) WITH i LIMIT 1\u180eSET i.title = 'x'", BOTH),
    ("L\\u004FAD CSV FROM 'file:///etc/passwd' AS row RETURN row", ("neo4j",)),
    ("RETURN '\\u0027' LOAD CSV FROM 'file:///etc/passwd' AS r RETURN r //'", ("neo4j",)),
]


@pytest.mark.parametrize("query,dialects", GLUED, ids=[q[:48] for q, _ in GLUED])
def test_guard_splits_tokens_like_the_database(query, dialects):
    for dialect in dialects:
        with pytest.raises(ReadOnlyViolation):
            check_read_only(query, dialect)


def test_tokenizer_follows_ladybug_number_and_parameter_rules():
    assert [t.text for t in tokenize("1LOAD $1SET 01.5e-3x 1..5 $`a b` a$b")] == [
        "1", "LOAD", "$1", "SET", "01.5e-3", "x", "1", "..", "5", "$`a b`", "a", "$b"]


# -- the second layer: the database's plan, without the guard --------------------------------------

@pytest.mark.parametrize("query", [
    "LOAD FROM '{dir}/c.csv' (header=false) RETURN *",
    "COPY (MATCH (i:Item) RETURN i.id) TO '{dir}/out.csv'",
    "CALL threads=1",
    "CHECKPOINT",
    "CALL project_graph('g', ['Item'], ['NEXT'])",
    "BEGIN TRANSACTION",
])
def test_plan_check_refuses_without_the_guard(ladybug_config, tmp_path, query):
    """One bug in the token guard must not be enough: EXPLAIN's plan alone refuses these."""
    from graph.readonly import check_plan
    (tmp_path / "c.csv").write_text("secret\n")
    with open_store(ladybug_config, read_only=True) as store:
        with pytest.raises(GraphError):
            check_plan(store.explain(query.format(dir=tmp_path)))
    assert not (tmp_path / "out.csv").exists()


PLANNED_READS = [
    TITLES_QUERY, COUNT_QUERY,
    "MATCH (i:Item) WHERE i.title CONTAINS 'set' RETURN i.title AS title",
    "MATCH (i:Item) // DETACH DELETE i\nRETURN count(i) AS n",
    "MATCH (u:User)-[r:INTERACTED]->(i:Item) WHERE r.pos = $pos RETURN u.id AS user_id, count(*) AS n "
    "ORDER BY n DESC LIMIT 10",
    "MATCH p = (a:Item {id: '1'})-[:NEXT*1..2]->(b:Item) RETURN p LIMIT 5",
    "MATCH p = (a:Item {id: '1'})-[:NEXT* SHORTEST 1..4]->(b:Item {id: '3'}) RETURN p",
    "MATCH (i:Item) WHERE i.title STARTS WITH 'H' RETURN i.title AS t UNION "
    "MATCH (i:Item) WHERE i.title ENDS WITH 'o' RETURN i.title AS t",
    "MATCH (i:Item) RETURN i.id AS id ORDER BY id SKIP 1 LIMIT 1",
    "MATCH (i:Item) WHERE EXISTS { MATCH (i)-[:NEXT]->() } RETURN count(*) AS n",
    "UNWIND [1, 2] AS x RETURN DISTINCT x",
    "CALL show_tables() RETURN *", "CALL table_info('Item') RETURN *", "PROFILE MATCH (i:Item) RETURN count(*) AS n",
]


@pytest.mark.parametrize("query", PLANNED_READS, ids=[q[:48] for q in PLANNED_READS])
def test_plan_check_accepts_reads(ladybug_config, query):
    from graph.readonly import check_plan
    with open_store(ladybug_config, read_only=True) as store:
        check_plan(store.explain(query, {"pos": 0} if "$pos" in query else {}))
    run_read_query(ladybug_config, query, {"pos": 0} if "$pos" in query else {})


def test_neo4j_plan_check_wants_a_read_query_without_load_csv():
    from graph.readonly import QueryPlan, check_plan
    check_plan(QueryPlan("neo4j", operators=("ProduceResults@neo4j", "AllNodesScan@neo4j"), query_type="r"))
    for plan in (QueryPlan("neo4j", operators=("ProduceResults@neo4j",), query_type="rw"),
                 QueryPlan("neo4j", operators=("ProduceResults@neo4j",), query_type="s"),
                 QueryPlan("neo4j", operators=("ProduceResults@neo4j", "LoadCSV@neo4j"), query_type="r")):
        with pytest.raises(ReadOnlyViolation, match="plan"):
            check_plan(plan)


def test_explain_statement_does_not_double_explain():
    from graph.readonly import explain_statement
    assert explain_statement("MATCH (n) RETURN n", "neo4j") == "EXPLAIN MATCH (n) RETURN n"
    assert explain_statement("/* c */ profile MATCH (n) RETURN n", "ladybug") == "/* c */ EXPLAIN MATCH (n) RETURN n"


# -- JSON numbers and URI passwords ----------------------------------------------------------------

def test_json_output_keeps_128_bit_integers_as_numbers(ladybug_config):
    import json

    from graph.console import format_result
    result = run_read_query(ladybug_config, "MATCH ()-[r:NEXT]->() RETURN sum(r.count) AS total, "
                                            "CAST(170141183460469231731687303715884105727 AS INT128) AS big, "
                                            "CAST(1.25 AS DECIMAL(5, 2)) AS d")
    assert json.loads(format_result(result.frame, "json")) == [
        {"total": 3, "big": 170141183460469231731687303715884105727, "d": 1.25}]


def test_uri_passwords_are_redacted_everywhere(tmp_path, capsys):
    import cli
    from graph.neo4j_store import Neo4jStore, redact_uri
    assert redact_uri("bolt://eve:s3cret@db:7687") == "bolt://eve:***@db:7687"
    assert redact_uri("at 'neo4j+s://eve:p@ss@db' and bolt://db:7687") == "at 'neo4j+s://eve:***@db' and bolt://db:7687"
    with pytest.raises(StoreUnavailable) as refused:
        Neo4jStore.connect(StoreConfig(backend="neo4j", uri="bolt://eve:s3cret@127.0.0.1:1", password="x"))
    assert "s3cret" not in str(refused.value) and "eve:***@" in str(refused.value)
    # The CLI moves URI credentials into user/password: nothing it prints holds the password.
    code = cli.main(["cypher", "--run", str(tmp_path / "run"), "--neo4j", "bolt://eve:s3cret@127.0.0.1:1",
                     "RETURN 1 AS x"])
    err = capsys.readouterr().err
    assert code == 2 and "s3cret" not in err and "127.0.0.1:1" in err, err

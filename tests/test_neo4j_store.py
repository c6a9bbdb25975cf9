"""Neo4jStore against a real Neo4j 5 server (testcontainers; skipped, saying why, without Docker),
plus what needs no server: unreachable servers and bad URIs fail fast with StoreUnavailable, and
docker-compose.yml describes the server the README tells users to start."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import neo4j
import pytest
import yaml

from graph.errors import GraphError, ReadOnlyViolation, StoreUnavailable
from graph.neo4j_store import Neo4jStore
from graph.store import StoreConfig, open_store

pytest_plugins = ["neo4j_support"]

REPO = Path(__file__).resolve().parents[1]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- no server needed ------------------------------------------------------------------------------

@pytest.mark.parametrize("read_only", [False, True])
def test_closed_port_gives_store_unavailable_quickly(read_only):
    uri = f"bolt://127.0.0.1:{unused_port()}"
    config = StoreConfig(backend="neo4j", uri=uri, user="neo4j", password="whatever")
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable) as failed:
        open_store(config, read_only=read_only)
    assert time.perf_counter() - started < 5
    message = str(failed.value)
    assert uri in message and "docker compose up" in message and "NEO4J_PASSWORD" in message
    assert isinstance(failed.value.__cause__, neo4j.exceptions.ServiceUnavailable)


def test_console_on_a_closed_port_gives_store_unavailable():
    from graph.console import run_read_query
    config = StoreConfig(backend="neo4j", uri=f"bolt://127.0.0.1:{unused_port()}", user="neo4j", password="x")
    with pytest.raises(StoreUnavailable):
        run_read_query(config, "MATCH (n) RETURN count(n) AS n")


@pytest.mark.parametrize("uri", ["http://localhost:7474", "localhost:7687"])
def test_unsupported_uri_is_store_unavailable(uri):
    with pytest.raises(StoreUnavailable, match="bolt://"):
        Neo4jStore.connect(StoreConfig(backend="neo4j", uri=uri, user="neo4j", password="x"))


def test_connect_needs_a_neo4j_config(tmp_path):
    with pytest.raises(ValueError):
        Neo4jStore.connect(StoreConfig(backend="embedded", path=tmp_path / "g.lbdb"))


def test_docker_compose_runs_neo4j_5_community_with_auth_from_the_environment():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    neo = compose["services"]["neo4j"]
    assert neo["image"] == "neo4j:5-community"
    assert neo["environment"]["NEO4J_AUTH"] == "${NEO4J_USER:-neo4j}/${NEO4J_PASSWORD:-iirg-dev-password}"
    assert {"7474:7474", "7687:7687"} <= set(neo["ports"])
    volume = neo["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    assert "RETURN 1" in " ".join(neo["healthcheck"]["test"])


# -- a real server ---------------------------------------------------------------------------------

@pytest.fixture
def neo4j_empty(neo4j_config) -> StoreConfig:
    from neo4j_support import wipe_neo4j
    wipe_neo4j(neo4j_config)
    return neo4j_config


@pytest.fixture
def store(neo4j_empty):
    with Neo4jStore.connect(neo4j_empty) as opened:
        yield opened


ITEMS = [{"id": str(i), "title": f"item {i}", "categories": ["a", "b"][: i % 3]} for i in range(7)]
MERGE_ITEMS = "UNWIND $rows AS row MERGE (i:Item {id: row.id}) SET i.title = row.title, i.categories = row.categories"
COUNT_ITEMS = "MATCH (i:Item) RETURN count(i) AS n"


def count_items(store) -> int:
    return store.run(COUNT_ITEMS)[0]["n"]


@pytest.mark.neo4j
def test_run_returns_named_columns(store):
    assert store.dialect == "neo4j" and not store.read_only
    assert store.run("RETURN 1 AS one, 'x' AS letter, [1, 2] AS xs") == [{"one": 1, "letter": "x", "xs": [1, 2]}]


@pytest.mark.neo4j
def test_run_df_keeps_columns_for_empty_results(store):
    frame = store.run_df("MATCH (i:Item {id: 'nope'}) RETURN i.id AS item_id, i.title AS title")
    assert list(frame.columns) == ["item_id", "title"] and frame.empty


@pytest.mark.neo4j
def test_write_batch_writes_every_row_in_batches(store):
    assert store.write_batch(MERGE_ITEMS, iter(ITEMS), batch_size=3) == len(ITEMS)
    frame = store.run_df("MATCH (i:Item) RETURN i.id AS id, i.title AS title, i.categories AS categories ORDER BY toInteger(id)")
    assert frame["id"].tolist() == [r["id"] for r in ITEMS]
    assert frame["title"].tolist() == [r["title"] for r in ITEMS]
    assert frame["categories"].tolist() == [r["categories"] for r in ITEMS]


@pytest.mark.neo4j
def test_nodes_and_relationships_come_back_like_ladybug(store):
    store.run("CREATE (:Item {id: '1', title: 'Heat'})-[:NEXT {count: 2}]->(:Item {id: '2', title: 'Ronin'})")
    [row] = store.run("MATCH (a:Item)-[r:NEXT]->(b:Item) RETURN a, r, b, [p = (a)-[:NEXT]->(b) | p] AS paths")
    a, r, b = row["a"], row["r"], row["b"]
    assert a["_LABEL"] == "Item" and a["id"] == "1" and a["title"] == "Heat"
    assert r["_LABEL"] == "NEXT" and r["count"] == 2 and r["_SRC"] == a["_ID"] and r["_DST"] == b["_ID"]
    [path] = row["paths"]
    assert [n["id"] for n in path["_NODES"]] == ["1", "2"] and path["_RELS"][0]["count"] == 2


@pytest.mark.neo4j
def test_write_many_is_all_or_nothing(store):
    store.run("CREATE CONSTRAINT item_id IF NOT EXISTS FOR (i:Item) REQUIRE i.id IS UNIQUE")
    statements = [("CREATE (:Item {id: 'x'})", None), ("CREATE (:Item {id: $id})", {"id": "x"})]
    with pytest.raises(GraphError, match="ConstraintValidationFailed|already exists"):
        store.write_many(statements)
    assert count_items(store) == 0
    results = store.write_many([("CREATE (i:Item {id: 'y'}) RETURN i.id AS id", None), (COUNT_ITEMS, None)])
    assert results == [[{"id": "y"}], [{"n": 1}]]


@pytest.mark.neo4j
def test_transaction_commits_or_rolls_back(store):
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.write_batch(MERGE_ITEMS, ITEMS, batch_size=2)
            assert tx.run(COUNT_ITEMS) == [{"n": len(ITEMS)}]     # visible inside the transaction
            raise RuntimeError("abort the rebuild")
    assert count_items(store) == 0
    with store.transaction() as tx:
        tx.write_batch(MERGE_ITEMS, ITEMS)
        assert list(tx.run_df("MATCH (i:Item) RETURN i.id AS id LIMIT 0").columns) == ["id"]
    assert count_items(store) == len(ITEMS)


@pytest.mark.neo4j
def test_read_only_store_is_refused_by_the_server(store, neo4j_empty):
    store.write_batch(MERGE_ITEMS, ITEMS)
    with Neo4jStore.connect(neo4j_empty, read_only=True) as reader:
        assert reader.read_only and count_items(reader) == len(ITEMS)
        for write in ["CREATE (:Item {id: 'z'})", "MATCH (i:Item) DETACH DELETE i",
                      "MATCH (i:Item) SET i.title = 'changed'"]:
            with pytest.raises(ReadOnlyViolation, match="read-only"):
                reader.run(write)
        with pytest.raises(ReadOnlyViolation):
            reader.write_batch(MERGE_ITEMS, ITEMS)
        with pytest.raises(ReadOnlyViolation):
            reader.write_many([("CREATE (:Item {id: 'z'})", None)])
    assert count_items(store) == len(ITEMS)
    assert {r["title"] for r in store.run("MATCH (i:Item) RETURN i.title AS title")} == {r["title"] for r in ITEMS}


@pytest.mark.neo4j
def test_run_limited_fetches_at_most_the_limit(store):
    store.write_batch(MERGE_ITEMS, ITEMS)
    columns, rows, truncated = store.run_limited("MATCH (i:Item) RETURN i.id AS id ORDER BY toInteger(id)", limit=3)
    assert columns == ["id"] and rows == [("0",), ("1",), ("2",)] and truncated
    _, rows, truncated = store.run_limited(COUNT_ITEMS, limit=3)
    assert rows == [(len(ITEMS),)] and not truncated


@pytest.mark.neo4j
def test_timeout_stops_a_slow_query(store):
    # Reads from the store, where Neo4j checks for termination (a pure UNWIND computation may not).
    store.run("UNWIND range(1, 1000) AS x CREATE (:Item {id: toString(x)})")
    slow = ("MATCH (a:Item), (b:Item), (c:Item), (d:Item) WHERE a.id + b.id + c.id = d.id "
            "RETURN count(*) AS n")
    started = time.perf_counter()
    with pytest.raises(GraphError, match="timed out"):
        store.run(slow, timeout_s=0.5)
    assert time.perf_counter() - started < 30
    assert store.run("RETURN 1 AS ok") == [{"ok": 1}]        # the store is still usable


@pytest.mark.neo4j
def test_server_errors_become_graph_errors_with_the_server_message(store):
    with pytest.raises(GraphError, match="SyntaxError") as failed:
        store.run("MATCH (i:Item RETURN i")
    assert isinstance(failed.value.__cause__, neo4j.exceptions.Neo4jError)
    assert not isinstance(failed.value, StoreUnavailable)


@pytest.mark.neo4j
def test_wrong_password_is_store_unavailable(neo4j_config):
    wrong = StoreConfig(backend="neo4j", uri=neo4j_config.uri, user="neo4j", password="not-the-password")
    with pytest.raises(StoreUnavailable, match="NEO4J_PASSWORD"):
        Neo4jStore.connect(wrong)


@pytest.mark.neo4j
def test_missing_database_is_store_unavailable(neo4j_config):
    missing = StoreConfig(backend="neo4j", uri=neo4j_config.uri, user=neo4j_config.user,
                          password=neo4j_config.password, database="nosuchdb")
    with pytest.raises(StoreUnavailable, match="nosuchdb"):
        Neo4jStore.connect(missing)


@pytest.mark.neo4j
def test_a_driver_passed_in_stays_open(neo4j_config):
    driver = neo4j.GraphDatabase.driver(neo4j_config.uri, auth=(neo4j_config.user, neo4j_config.password))
    try:
        with Neo4jStore(driver) as store:
            assert store.run("RETURN 2 AS two") == [{"two": 2}]
        driver.verify_connectivity()                          # close() left the caller's driver alone
        with pytest.raises(GraphError, match="closed"):
            store.run("RETURN 1 AS one")
    finally:
        driver.close()

"""Neo4j builds at scale: batched commits under a build stamp, and SIMILAR from a vector index.

Without a server: the cleanup statements and their parameters, which text each dialect gets, the
stamp check on build writes, the lazy row conversion, the vector index statement. With a real Neo4j 5
(testcontainers; skipped, saying why, without Docker): a build stamps everything, a failed build
(or a failed run commit) deletes its copy and keeps the previous one, a finished build deletes the
previous copy, leftovers of a killed build go at the next build, and the relations equal the
embedded store's (SIMILAR from the HNSW index equals the exact numpy top-k on a small catalogue).
"""

from __future__ import annotations

import socket
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tqdm.auto import tqdm

from graph import queries as Q
from graph.build import BuildReport, build_graph, build_relations, load_dataset
from graph.config import GraphConfig
from graph.dialect import text_for
from graph.errors import GraphError, ReadOnlyViolation, StoreUnavailable
from graph.neo4j_store import (DELETE_BUILD_NODES_QUERY_NEO4J, DELETE_BUILD_RELATIONSHIPS_QUERY_NEO4J,
                               DELETE_OTHER_BUILDS_NODES_QUERY_NEO4J,
                               DELETE_OTHER_BUILDS_RELATIONSHIPS_QUERY_NEO4J, Neo4jBuild, Neo4jStore,
                               iter_neo4j_rows, neo4j_rows, require_stamp, stamp_cleanup)
from graph.relations import RELATIONS, collab, shares_meta, similar, transitions
from graph.semantic import topk_cosine
from graph.store import StoreConfig, open_store
from ingest.schema import IngestReport, build_dataset

pytest_plugins = ["neo4j_support"]

# The statements a build sends with `$build` on Neo4j, and without it (no stamp) on LadybugDB.
BUILD_READS_AND_WRITES = {
    "POPULARITY": Q.POPULARITY_QUERY, "SET_POPULARITY": Q.SET_POPULARITY_QUERY,
    "TRANSITIONS": transitions.TRANSITIONS_QUERY, "COOCCURRENCE": collab.cooccurrence_query(5),
    "BACKFILL_CANDIDATES": collab.BACKFILL_CANDIDATES_QUERY,
    "SHARED_CATEGORY_PAIRS": shares_meta.SHARED_CATEGORY_PAIRS_QUERY,
    "SHARED_BRAND_PAIRS": shares_meta.SHARED_BRAND_PAIRS_QUERY,
}
NEO4J_BUILD_WRITES = [Q.CREATE_ITEMS_QUERY_NEO4J, Q.CREATE_USERS_QUERY_NEO4J, Q.CREATE_INTERACTIONS_QUERY_NEO4J,
                      Q.CREATE_EVENTS_QUERY_NEO4J, Q.CREATE_HAS_EVENT_QUERY_NEO4J, Q.CREATE_OF_ITEM_QUERY_NEO4J,
                      Q.CREATE_NEXT_EVENTS_QUERY_NEO4J,
                      similar.CREATE_SIMILAR_FROM_INDEX_QUERY_NEO4J,
                      *(spec.create_query for spec in RELATIONS.values())]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unreachable_store() -> Iterator[Neo4jStore]:
    """A real driver pointed at a closed port: anything that reaches the network fails with
    StoreUnavailable, so a different error proves the check ran before sending."""
    import neo4j
    driver = neo4j.GraphDatabase.driver(f"bolt://127.0.0.1:{unused_port()}", auth=("neo4j", "x"),
                                        connection_timeout=2)
    with Neo4jStore(driver, owns_driver=True, batch_rows=3) as store:
        yield store


# -- no server needed ------------------------------------------------------------------------------

def test_cleanup_deletes_relationships_first_in_batches_with_values_as_parameters():
    failed = stamp_cleanup("failed", 1733318400123456)
    assert failed == [(DELETE_BUILD_RELATIONSHIPS_QUERY_NEO4J, {"build": 1733318400123456}),
                      (DELETE_BUILD_NODES_QUERY_NEO4J, {"build": 1733318400123456})]
    others = stamp_cleanup("others", 42)
    assert others == [(DELETE_OTHER_BUILDS_RELATIONSHIPS_QUERY_NEO4J, {"keep_build": 42}),
                      (DELETE_OTHER_BUILDS_NODES_QUERY_NEO4J, {"keep_build": 42})]
    for (relationships, _), (nodes, _) in (failed, others):
        assert "DELETE r" in relationships and "DETACH DELETE n" in nodes
    for query, _ in failed + others:
        assert "IN TRANSACTIONS OF $batch_rows ROWS" in query       # batch size: a parameter too
        assert "MATCH (n:User|Item|Event)" in query                 # never another application's nodes
    assert "coalesce(n.build, -1) <> $keep_build" in DELETE_OTHER_BUILDS_NODES_QUERY_NEO4J  # unstamped: old
    with pytest.raises(ValueError, match="failed"):
        stamp_cleanup("everything", 1)


def test_each_dialect_gets_its_text_only_neo4j_is_stamped():
    for name, query in BUILD_READS_AND_WRITES.items():
        assert "$build" in text_for(query, "neo4j"), name
        assert "$build" not in text_for(query, "ladybug"), name
    for query in NEO4J_BUILD_WRITES:
        require_stamp(query)           # passes
        assert "build: $build" in query
    for spec in RELATIONS.values():    # endpoints of this build's copy, the edge stamped
        assert spec.create_query.count("build: $build") == 3, spec.name


def test_a_build_refuses_an_unstamped_write_before_sending_it(unreachable_store):
    build = Neo4jBuild(unreachable_store, build_id=7)
    unstamped = "UNWIND $rows AS row CREATE (:Item {id: row.id})"
    with pytest.raises(GraphError, match=r"\$build"):
        build.write_batch(unstamped, [{"id": "1"}])
    with pytest.raises(GraphError, match=r"\$build"):
        build.bulk_create("Item", pd.DataFrame({"id": ["1"]}), unstamped)
    with pytest.raises(GraphError, match=r"\$build"):   # `$builds` is not `$build`
        require_stamp("UNWIND $rows AS row CREATE (:Item {id: row.id, build: $builds})")
    with pytest.raises(StoreUnavailable):               # a stamped write does reach for the server
        build.write_batch("UNWIND $rows AS row CREATE (:Item {id: row.id, build: $build})", [{"id": "1"}])


def test_run_in_batches_is_only_for_batched_writable_statements(unreachable_store, tmp_path):
    with pytest.raises(ValueError, match="IN TRANSACTIONS"):
        unreachable_store.run_in_batches("MATCH (n:Item) DETACH DELETE n")
    reader = Neo4jStore(unreachable_store.driver, read_only=True)
    with pytest.raises(ReadOnlyViolation):
        reader.run_in_batches(DELETE_BUILD_NODES_QUERY_NEO4J, {"build": 1})
    with pytest.raises(ReadOnlyViolation):
        with reader.rebuild(Q.SCHEMA_QUERIES):
            pass
    with pytest.raises(ValueError, match="batch_rows"):
        Neo4jStore(unreachable_store.driver, batch_rows=0)


def test_rows_are_converted_chunk_by_chunk_as_batches_go():
    frame = pd.DataFrame({"id": [f"i{n}" for n in range(7)], "pos": pd.array([1, None, 3, 4, 5, 6, 7], "Int64"),
                          "embedding": [np.arange(2, dtype=np.float32) + n for n in range(7)]})
    rows = iter_neo4j_rows(frame, chunk_rows=3)
    assert not isinstance(rows, list)                     # a generator: nothing converted up front
    assert list(rows) == neo4j_rows(frame)
    assert list(iter_neo4j_rows(frame.iloc[0:0], chunk_rows=3)) == []
    table = pa.table({"user_id": ["u", "v", "w"], "ts": pa.array([1, None, 3], type=pa.int64())})
    assert list(iter_neo4j_rows(table, chunk_rows=2)) == [
        {"user_id": "u", "ts": 1}, {"user_id": "v", "ts": None}, {"user_id": "w", "ts": 3}]


def test_vector_index_statement_takes_an_integer_width_only():
    query = similar.vector_index_query(384)
    assert "`vector.dimensions`: 384," in query and "'cosine'" in query and "IF NOT EXISTS" in query
    assert query in similar.LINT_EXAMPLES_NEO4J
    for bad in (0, 5000, 3.5, True, "384}}) DETACH DELETE n //"):
        with pytest.raises((ValueError, TypeError)):
            similar.vector_index_query(bad)
    # k neighbours + the item itself, in each copy of the graph the index holds.
    assert similar.candidates(10, 1) == 11 and similar.candidates(10, 2) == 22 and similar.candidates(3, 0) == 4


# -- a real server ---------------------------------------------------------------------------------
SEQUENCES = {"u1": ["a", "b", "c", "d", "e"], "u2": ["b", "c", "a", "f", "g"], "u3": ["c", "b", "e", "a", "h"],
             "u4": ["d", "e", "f", "c", "a", "b", "g"], "u5": ["g", "h", "a", "b", "c"]}
ITEMS = ["a", "b", "c", "d", "e", "f", "g", "h", "q"]
CONFIG = GraphConfig(window=2, collab_k=3, semantic_k=3)


def toy_dataset(name: str = "toy"):
    rows = [(u, i, n) for u, seq in SEQUENCES.items() for n, i in enumerate(seq)]
    items = pd.DataFrame({"item_id": ITEMS, "raw_title": [f"Item {i}" for i in ITEMS],
                          "categories": [["x", "y"] if n % 2 else ["y"] for n in range(len(ITEMS))]})
    return build_dataset(name, items, pd.DataFrame(rows, columns=["user_id", "item_id", "order"]),
                         IngestReport(), source={"format": "test"})


def toy_embeddings(seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(len(ITEMS), 16)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_toy(store, embeddings: np.ndarray, *, fail_after_load: bool = False, on_built=None):
    """build_graph's stages with given embeddings (no model): load, then every relation."""
    dataset = toy_dataset()
    report = BuildReport()
    with tqdm(disable=True) as bar, store.rebuild(Q.SCHEMA_QUERIES) as session:
        load_dataset(session, dataset, embeddings)
        if fail_after_load:
            raise RuntimeError("the build fails after its load committed")
        relations = build_relations(session, dataset, CONFIG, report, bar, embeddings, progress=False)
        if on_built is not None:
            on_built(relations, report)
    return relations


def stamps(store) -> dict:
    nodes = store.run("MATCH (n:User|Item) RETURN n.build AS build, count(*) AS n ORDER BY build")
    rels = store.run("MATCH (:User|Item)-[r]->() RETURN r.build AS build, count(*) AS n ORDER BY build")
    current = store.run("MATCH (b:GraphBuild) RETURN b.build AS build")
    return {"nodes": {r["build"]: r["n"] for r in nodes}, "relationships": {r["build"]: r["n"] for r in rels},
            "current": [r["build"] for r in current]}


@pytest.fixture
def neo4j_store(neo4j_config):
    from neo4j_support import wipe_neo4j
    wipe_neo4j(neo4j_config)
    with Neo4jStore.connect(neo4j_config, batch_rows=4) as store:   # several inner transactions each
        yield store


@pytest.mark.neo4j
def test_a_build_stamps_every_node_and_relationship_and_marks_itself_current(neo4j_store):
    build_toy(neo4j_store, toy_embeddings())
    found = stamps(neo4j_store)
    [build] = found["nodes"]
    assert build is not None and list(found["relationships"]) == [build] and found["current"] == [build]
    assert found["nodes"][build] == len(ITEMS) + len(SEQUENCES)
    dims = neo4j_store.run(similar.VECTOR_INDEX_DIMENSIONS_QUERY_NEO4J)
    assert dims == [{"dimensions": 16}]


@pytest.mark.neo4j
def test_neo4j_relations_equal_the_embedded_store_s(neo4j_store, tmp_path):
    embeddings = toy_embeddings()
    got = build_toy(neo4j_store, embeddings)
    with open_store(StoreConfig(path=tmp_path / "store" / "graph.lbdb")) as embedded:
        expected = build_toy(embedded, embeddings)
    assert got.popularity.sort_index().equals(expected.popularity.sort_index())
    for name in ("NEXT", "COLLAB"):
        keys = list(RELATIONS[name].sort_by)
        pd.testing.assert_frame_equal(got.edges[name].sort_values(keys, ignore_index=True),
                                      expected.edges[name].sort_values(keys, ignore_index=True),
                                      check_dtype=False)
    # Nine items: the HNSW index finds the exact neighbours; scores are cos, not Neo4j's (1 + cos) / 2.
    neighbours, scores = topk_cosine(embeddings, CONFIG.semantic_k, progress=False)
    assert got.similar["neighbor_id"].tolist() == [ITEMS[j] for j in neighbours.ravel()]
    assert got.similar["rank"].tolist() == list(range(1, CONFIG.semantic_k + 1)) * len(ITEMS)
    np.testing.assert_allclose(got.similar["score"].to_numpy(), scores.ravel(), atol=1e-5)


@pytest.mark.neo4j
def test_a_finished_build_deletes_the_previous_copy(neo4j_store):
    build_toy(neo4j_store, toy_embeddings())
    first = stamps(neo4j_store)
    relations = build_toy(neo4j_store, toy_embeddings())   # the first copy is in the index meanwhile
    second = stamps(neo4j_store)
    assert list(second["nodes"]) != list(first["nodes"]) and len(second["nodes"]) == 1
    assert list(second["nodes"].values()) == list(first["nodes"].values())
    assert list(second["relationships"].values()) == list(first["relationships"].values())
    assert second["current"] == list(second["nodes"])
    # Every item still has k neighbours of its own copy, though the index held both copies.
    assert relations.similar.groupby("item_id").size().eq(CONFIG.semantic_k).all()
    assert len(relations.similar) == CONFIG.semantic_k * len(ITEMS)


@pytest.mark.neo4j
@pytest.mark.parametrize("where", ["after the load", "in the run commit"])
def test_a_failed_build_deletes_its_copy_and_keeps_the_previous_one(neo4j_store, where):
    before = build_toy(neo4j_store, toy_embeddings())
    kept = stamps(neo4j_store)

    def failing_commit(relations, report):
        raise OSError("disk full while writing the export")

    with pytest.raises((RuntimeError, OSError)):
        build_toy(neo4j_store, toy_embeddings(seed=1), fail_after_load=where == "after the load",
                  on_built=failing_commit)
    assert stamps(neo4j_store) == kept
    read = neo4j_store.run_df(similar.READ_SIMILAR_QUERY).sort_values(["item_id", "rank"], ignore_index=True)
    assert read["neighbor_id"].tolist() == before.similar.sort_values(["item_id", "rank"])["neighbor_id"].tolist()


@pytest.mark.neo4j
def test_leftovers_of_a_killed_build_go_when_the_next_build_starts(neo4j_store):
    build_toy(neo4j_store, toy_embeddings())
    current = stamps(neo4j_store)["current"]
    # What a build killed before its cleanup leaves: stamped nodes and edges no marker names.
    neo4j_store.run("CREATE (:Item {id: 'a', build: $build})-[:NEXT {count: 1, build: $build}]->"
                    "(:Item {id: 'b', build: $build})", {"build": 12345})
    assert 12345 in stamps(neo4j_store)["nodes"]
    with pytest.raises(RuntimeError):
        with neo4j_store.rebuild(Q.SCHEMA_QUERIES):
            assert 12345 not in stamps(neo4j_store)["nodes"]    # gone before the new build writes
            raise RuntimeError("stop here")
    assert stamps(neo4j_store)["current"] == current and list(stamps(neo4j_store)["nodes"]) == current


@pytest.mark.neo4j
def test_graph_from_before_the_stamp_is_replaced_by_the_first_stamped_build(neo4j_store):
    neo4j_store.run("CREATE CONSTRAINT item_id IF NOT EXISTS FOR (i:Item) REQUIRE i.id IS UNIQUE")
    neo4j_store.run("UNWIND range(1, 10) AS n CREATE (:Item {id: toString(n)})")   # unstamped, old schema
    build_toy(neo4j_store, toy_embeddings())
    found = stamps(neo4j_store)
    assert None not in found["nodes"] and len(found["nodes"]) == 1
    names = {r["name"] for r in neo4j_store.run("SHOW CONSTRAINTS YIELD name RETURN name")}
    assert "item_id" not in names and {"item_id_build", "user_id_build"} <= names


@pytest.mark.neo4j
def test_run_in_batches_commits_inner_transactions_and_counts_them(neo4j_store):
    neo4j_store.run("UNWIND range(1, 10) AS n CREATE (:Item {id: toString(n), build: 5})")
    deleted = neo4j_store.delete_builds("failed", 5)               # batch_rows=4: three inner transactions
    assert deleted == {"nodes_deleted": 10, "relationships_deleted": 0}
    assert neo4j_store.run("MATCH (i:Item) RETURN count(i) AS n") == [{"n": 0}]


@pytest.mark.neo4j
def test_build_graph_on_neo4j_without_semantic(neo4j_store):
    config = GraphConfig(window=2, collab_k=3, semantic=False)
    relations, report = build_graph(toy_dataset(), neo4j_store, config, progress=False)
    assert relations.similar.empty and not relations.collab.empty
    assert report.counts["items"] == len(ITEMS) and len(stamps(neo4j_store)["nodes"]) == 1

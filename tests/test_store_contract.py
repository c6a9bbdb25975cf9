"""Backend contract: the same build on the embedded store and on Neo4j gives the same graph, equal to
the plain-Python reference; loading twice changes nothing. Neo4j runs where a Docker daemon exists
(testcontainers) and skips, saying why, elsewhere."""

from __future__ import annotations

import pandas as pd
import pytest

from graph import reference
from graph.build import build_run, read_relations
from graph.config import GraphConfig
from graph.dialect import PerDialect
from graph.errors import GraphError
from graph.rundir import RunPaths
from graph.store import open_store
from ingest.schema import IngestReport, build_dataset
from neo4j_support import BOTH_BACKENDS

# Hand-made sequences with the awkward cases: an immediate repeat (a a), a revisit, ties in
# co-occurrence counts, items with fewer than k neighbours, and a cold item ("z") seen only in test.
SEQUENCES = {
    "u1": ["a", "a", "b", "c", "d", "e", "z"],
    "u2": ["b", "c", "a", "d", "f", "g"],
    "u3": ["c", "b", "e", "a", "f", "h"],
    "u4": ["d", "e", "f", "c", "a", "b", "g", "h"],
    "u5": ["g", "h", "a", "b", "z", "c"],
}
TITLES = {"a": "Alpha", "b": "Beta", "c": "Gamma", "d": "Delta", "e": "Epsilon", "f": "Zeta",
          "g": "Eta", "h": "Theta", "z": "Zulu", "q": "Never seen"}


def small_dataset():
    rows = [(u, i, n) for u, seq in SEQUENCES.items() for n, i in enumerate(seq)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "order"])
    items = pd.DataFrame({"item_id": list(TITLES), "raw_title": list(TITLES.values()),
                          "description": ["a thing called " + t for t in TITLES.values()]})
    return build_dataset("contract", items, inter, IngestReport(), source={"format": "test"})


def _build(config, graph_config, run_dir):
    """build_run as `iirg build` does it: the embedded store is rebuilt in a fresh folder and swapped
    in, Neo4j gets a new stamped copy that replaces the old one (so building twice exercises the
    build stamp's replace path, and SIMILAR comes from the vector index while the old copy is in it)."""
    dataset = small_dataset()
    build_run(RunPaths.of(run_dir), dataset, config, graph_config, progress=False)
    with open_store(config, read_only=True) as store:
        relations = read_relations(store)
        counts = store.run("MATCH (u:User)-[r:INTERACTED]->(i:Item) RETURN count(r) AS n")[0]["n"]
        nodes = store.run("MATCH (i:Item) RETURN count(i) AS n")[0]["n"]
    return dataset, relations, counts, nodes


@pytest.mark.parametrize("store_config", BOTH_BACKENDS, indirect=True)
def test_build_matches_reference_and_is_idempotent(store_config, tmp_path):
    graph_config = GraphConfig(window=2, collab_k=3, semantic_k=2, cache_dir=tmp_path / "cache")
    dataset, relations, n_interactions, n_items = _build(store_config, graph_config, tmp_path / "run")

    sequences = list(dataset.sequences(("train",)).values())
    assert {(a, b): int(c) for a, b, c in relations.next.itertuples(index=False)} == \
        dict(reference.transitions(sequences))
    assert ("a", "a") not in set(zip(relations.next["src_item_id"], relations.next["dst_item_id"]))
    similar = {i: g.sort_values("rank")["neighbor_id"].tolist() for i, g in relations.similar.groupby("item_id")}
    expected = reference.collaborative_neighbours(sequences, dataset.items["item_id"].tolist(), 2, 3, similar)
    got: dict[str, list] = {}
    for r in relations.collab.itertuples(index=False):
        got.setdefault(r.item_id, []).append((int(r.rank), r.neighbor_id, r.source,
                                              None if pd.isna(r.via_item_id) else r.via_item_id))
    assert {i: sorted(v) for i, v in got.items()} == {
        i: [(n["rank"], n["neighbor_id"], n["source"], n["via_item_id"]) for n in ns] for i, ns in expected.items()}
    assert "semantic_backfill" in set(relations.collab["source"])
    assert "q" in got  # an item with no interactions at all gets neighbours through the back-fill
    assert n_interactions == len(dataset.interactions) and n_items == len(TITLES)

    again = _build(store_config, graph_config, tmp_path / "run")
    assert again[1].next.equals(relations.next)
    assert again[1].collab.reset_index(drop=True).equals(relations.collab.reset_index(drop=True))
    assert again[2:] == (n_interactions, n_items)


@pytest.mark.parametrize("store_config", BOTH_BACKENDS, indirect=True)
def test_every_edge_records_its_parameters(store_config, tmp_path):
    graph_config = GraphConfig(window=3, collab_k=2, semantic_k=2, include_valid=True,
                               cache_dir=tmp_path / "cache")
    _build(store_config, graph_config, tmp_path / "run")
    with open_store(store_config, read_only=True) as store:
        collab = store.run("MATCH ()-[r:COLLAB]->() RETURN DISTINCT r.window AS w, r.k AS k, "
                           "r.split_scope AS scope")
        similar = store.run("MATCH ()-[r:SIMILAR]->() RETURN DISTINCT r.model AS model, r.k AS k")
        nxt = store.run("MATCH ()-[r:NEXT]->() RETURN DISTINCT r.split_scope AS scope")
    assert collab == [{"w": 3, "k": 2, "scope": "train+valid"}]
    assert similar == [{"model": graph_config.embed_model, "k": 2}]
    assert nxt == [{"scope": "train+valid"}]


# -- the GraphStore protocol: every capability on both backends ------------------------------------
# A node table and a relationship table to write into (the Neo4j schema is the constraint; LadybugDB
# needs its tables). Neo4j writes inside a rebuild stamp what they create with `$build`: a rebuild
# there writes a new copy beside the old one (graph/neo4j_store.py), so ids are unique per build.
TINY_SCHEMA = PerDialect(
    ladybug=("CREATE NODE TABLE IF NOT EXISTS Item(id STRING PRIMARY KEY, title STRING, categories STRING[], "
             "popularity INT64)",
             "CREATE REL TABLE IF NOT EXISTS NEXT(FROM Item TO Item, count INT64, split_scope STRING)"),
    neo4j=("CREATE CONSTRAINT item_id_build IF NOT EXISTS FOR (i:Item) REQUIRE (i.id, i.build) IS UNIQUE",))
CREATE_ITEMS = PerDialect(
    ladybug="UNWIND $rows AS row CREATE (:Item {id: row.id, title: row.title, categories: row.categories, "
            "popularity: row.popularity})",
    neo4j="UNWIND $rows AS row CREATE (:Item {id: row.id, title: row.title, categories: row.categories, "
          "popularity: row.popularity, build: $build})")
CREATE_NEXT = PerDialect(
    ladybug="UNWIND $rows AS row MATCH (a:Item {id: row.src}), (b:Item {id: row.dst}) "
            "CREATE (a)-[:NEXT {count: row.count, split_scope: row.split_scope}]->(b)",
    neo4j="UNWIND $rows AS row MATCH (a:Item {id: row.src, build: $build}) MATCH (b:Item {id: row.dst, build: $build}) "
          "CREATE (a)-[:NEXT {count: row.count, split_scope: row.split_scope, build: $build}]->(b)")
READ_NEXT = ("MATCH (a:Item)-[r:NEXT]->(b:Item) RETURN a.id AS src, b.id AS dst, r.count AS count, "
             "r.split_scope AS split_scope ORDER BY src, dst")


def _tiny_graph(store) -> None:
    with store.rebuild(TINY_SCHEMA) as session:
        items = pd.DataFrame({"id": ["1", "2", "3"], "title": ["One", "Two", None],
                              "categories": [["a", "b"], [], ["b"]],
                              "popularity": pd.array([3, None, 1], dtype="Int64")})
        assert session.bulk_create("Item", items, CREATE_ITEMS) == 3
        edges = pd.DataFrame({"src": ["1", "2"], "dst": ["2", "3"], "count": [4, 1],
                              "split_scope": ["train", None]})
        assert session.bulk_create("NEXT", edges, CREATE_NEXT) == 2


def test_store_config_knows_its_dialect(store_config):
    with open_store(store_config) as store:
        assert store.dialect == store_config.dialect


def test_per_dialect_statements_are_resolved_by_the_store(store_config):
    query = PerDialect(ladybug="RETURN 'ladybug' AS dialect", neo4j="RETURN 'neo4j' AS dialect")
    with open_store(store_config) as store:
        assert store.run(query) == [{"dialect": store.dialect}]
        assert store.run_df(query)["dialect"].tolist() == [store.dialect]
        assert store.run_columns(query)["dialect"].tolist() == [store.dialect]
        assert store.run_limited(query, limit=5) == (["dialect"], [(store.dialect,)], False)


def test_bulk_create_writes_nodes_and_relationships_with_missing_values(store_config):
    with open_store(store_config) as store:
        _tiny_graph(store)
        items = store.run_df("MATCH (i:Item) RETURN i.id AS id, i.title AS title, i.categories AS categories, "
                             "i.popularity AS popularity ORDER BY id")
        assert items["id"].tolist() == ["1", "2", "3"]
        assert [None if pd.isna(t) else t for t in items["title"]] == ["One", "Two", None]
        assert [list(c) if c is not None else [] for c in items["categories"]] == [["a", "b"], [], ["b"]]
        assert [None if pd.isna(p) else int(p) for p in items["popularity"]] == [3, None, 1]
        edges = store.run_columns(READ_NEXT)
        assert edges[["src", "dst"]].values.tolist() == [["1", "2"], ["2", "3"]]
        assert edges["count"].tolist() == [4, 1]
        assert [None if pd.isna(s) else s for s in edges["split_scope"]] == ["train", None]
        assert store.run_columns(READ_NEXT).equals(store.run_df(READ_NEXT).astype(edges.dtypes.to_dict()))


def test_run_limited_truncates_and_explain_plans_without_running(store_config):
    with open_store(store_config) as store:
        _tiny_graph(store)
        columns, rows, truncated = store.run_limited("MATCH (i:Item) RETURN i.id AS id ORDER BY id", limit=2)
        assert columns == ["id"] and rows == [("1",), ("2",)] and truncated
        assert store.run_limited("MATCH (i:Item) RETURN i.id AS id", limit=3)[2] is False
        plan = store.explain("MATCH (i:Item) WHERE i.id = $id RETURN i.title AS title", {"id": "1"})
        assert plan.operators
        assert store.run("MATCH (i:Item) RETURN count(i) AS n") == [{"n": 3}]


def test_transaction_commits_or_rolls_back_on_both_backends(store_config):
    with open_store(store_config) as store:
        _tiny_graph(store)
        with pytest.raises(RuntimeError):
            with store.transaction() as tx:
                tx.run("MATCH (i:Item {id: '3'}) SET i.title = 'Three'")
                raise RuntimeError("abort")
        assert pd.isna(store.run("MATCH (i:Item {id: '3'}) RETURN i.title AS title")[0]["title"])
        with store.transaction() as tx:
            tx.write_batch("UNWIND $rows AS row MATCH (i:Item {id: row.id}) SET i.title = row.title",
                           [{"id": "3", "title": "Three"}])
        assert store.run("MATCH (i:Item {id: '3'}) RETURN i.title AS title") == [{"title": "Three"}]


def test_rebuild_refuses_or_replaces_an_existing_graph(store_config):
    """The embedded store is rebuilt only when empty (build_run builds in a fresh folder); Neo4j
    writes a new copy beside the old one, and a failed rebuild deletes it (batches already
    committed included)."""
    with open_store(store_config) as store:
        _tiny_graph(store)
        if store.dialect == "ladybug":
            with pytest.raises(GraphError, match="empty embedded store"):
                with store.rebuild(TINY_SCHEMA):
                    pass
        else:
            with pytest.raises(RuntimeError):
                with store.rebuild(TINY_SCHEMA) as session:
                    session.bulk_create("Item", pd.DataFrame({"id": ["1", "4"], "title": ["New", "Four"],
                                                              "categories": [[], []], "popularity": [0, 0]}),
                                        CREATE_ITEMS, batch_size=1)
                    assert session.run("MATCH (i:Item) RETURN count(i) AS n") == [{"n": 5}]  # committed
                    raise RuntimeError("a failed rebuild")
        assert store.run("MATCH (i:Item) RETURN count(i) AS n") == [{"n": 3}]
        assert store.run("MATCH (i:Item {id: '1'}) RETURN i.title AS title") == [{"title": "One"}]

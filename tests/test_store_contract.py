"""Backend contract: the same build on the embedded store and on Neo4j gives the same graph, equal to
the plain-Python reference; loading twice changes nothing. Neo4j runs where a Docker daemon exists
(testcontainers) and skips, saying why, elsewhere."""

from __future__ import annotations

import pandas as pd
import pytest

from graph import reference
from graph.build import build_run, read_relations
from graph.config import GraphConfig
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
    in, Neo4j is loaded in place (so loading twice exercises its MERGE/replace path)."""
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

"""Sequences as paths: every interaction is an `Event`, each user's events are chained by
`NEXT_EVENT`, and NEXT and COLLAB are computed along those paths. On long histories (hundreds of
positions per user, where the window is a small part of the sequence) the co-occurrence of every
pair, NEXT and the top-k COLLAB edges equal the plain-Python reference, and the co-occurrence equals
the old O(n^2) join, on a real on-disk store (and Neo4j where a Docker daemon exists)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.errors import ConfigError
from graph import reference
from graph.build import build_run, read_relations
from graph.config import MAX_WINDOW, GraphConfig
from graph.relations.collab import (COOCCURRENCE_JOIN_QUERY, both_directions, cooccurrence_query, event_chunks,
                                   read_cooccurrence, reduce_packed, select_top_collab, to_unordered)
from graph.rundir import RunPaths
from graph.store import StoreConfig, open_store
from ingest.schema import IngestReport, build_dataset
from neo4j_support import BOTH_BACKENDS

# Lengths: two long histories, one medium, one at the minimum that still has training positions.
LENGTHS = {"long1": 700, "long2": 450, "mid": 60, "short": 4}
N_ITEMS = 40   # a small catalogue, so items recur within a window, immediate repeats included


def long_dataset():
    rng = np.random.default_rng(7)
    rows = []
    for user, length in LENGTHS.items():
        # Zipf-like popularity: a few items recur often, so counts and ties are not all 1.
        items = np.minimum(rng.zipf(1.5, length), N_ITEMS) - 1
        rows += [(user, f"i{item}", n) for n, item in enumerate(items)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "order"])
    ids = [f"i{k}" for k in range(N_ITEMS)]
    items = pd.DataFrame({"item_id": ids, "raw_title": [f"Item {k}" for k in range(N_ITEMS)]})
    return build_dataset("long", items, inter, IngestReport(), source={"format": "test"})


@pytest.mark.parametrize("store_config", BOTH_BACKENDS, indirect=True)
@pytest.mark.parametrize("window,include_valid", [(5, False), (12, True)])
def test_long_histories_equal_the_reference(store_config, tmp_path, window, include_valid):
    dataset = long_dataset()
    config = GraphConfig(window=window, collab_k=6, semantic=False, include_valid=include_valid)
    build_run(RunPaths.of(tmp_path / "run"), dataset, store_config, config, progress=False)
    sequences = list(dataset.sequences(tuple(config.splits)).values())
    assert max(len(s) for s in sequences) > 40 * window   # the window is a small part of a history

    with open_store(store_config, read_only=True) as store:
        folded = read_cooccurrence(store, dataset.items["item_id"].to_numpy(), window, config.splits)
        joined = store.run_columns(COOCCURRENCE_JOIN_QUERY, {"splits": config.splits, "window": window})
        relations = read_relations(store, config)
        n_events = store.run("MATCH (e:Event) RETURN count(e) AS n")[0]["n"]
        n_links = store.run("MATCH (:Event)-[r:NEXT_EVENT]->(:Event) RETURN count(r) AS n")[0]["n"]
        bad_links = store.run("MATCH (u:User)-[:HAS_EVENT]->(a:Event)-[:NEXT_EVENT]->(b:Event)<-[:HAS_EVENT]-(v:User) "
                              "WHERE b.pos <> a.pos + 1 OR u <> v RETURN count(*) AS n")[0]["n"]
        path = store.run_df("MATCH (:User {id: $user_id})-[:HAS_EVENT]->(e:Event)-[:OF_ITEM]->(i:Item) "
                            "RETURN e.pos AS pos, e.split AS split, i.id AS item_id, e.item_idx AS item_idx, "
                            "i.idx AS idx ORDER BY pos", {"user_id": "long1"})

    # The path is the sequence: one event per interaction, each linked to the next position only.
    assert n_events == len(dataset.interactions)
    assert n_links == len(dataset.interactions) - len(LENGTHS) and bad_links == 0
    inter = dataset.interactions[dataset.interactions["user_id"] == "long1"].sort_values("pos")
    assert path["item_id"].tolist() == inter["item_id"].tolist() and path["item_idx"].equals(path["idx"])
    assert path["split"].tolist() == inter["split"].tolist() and path["pos"].tolist() == list(range(len(inter)))

    # Every co-occurring pair (not only the top k): path pattern == old join == plain Python.
    expected = {key: tuple(value) for key, value in reference.cooccurrence(sequences, window).items()}
    got = {(a, b): (int(c), int(h)) for a, b, c, h in folded.itertuples(index=False)}
    old = {(a, b): (int(c), int(h)) for a, b, c, h in joined[["item_id", "neighbor_id", "count", "hop"]]
           .itertuples(index=False)}
    assert got == expected == old
    assert any(hop > 1 for _, hop in got.values()) and any(count > 10 for count, _ in got.values())

    assert {(a, b): int(c) for a, b, c in relations.next.itertuples(index=False)} == \
        dict(reference.transitions(sequences))
    want = reference.collaborative_neighbours(sequences, dataset.items["item_id"].tolist(), window, config.collab_k)
    collab = {}
    for r in relations.collab.sort_values(["item_id", "rank"]).itertuples(index=False):
        collab.setdefault(r.item_id, []).append((int(r.rank), r.neighbor_id, int(r.count), int(r.hop)))
    assert collab == {i: [(n["rank"], n["neighbor_id"], n["count"], n["hop"]) for n in ns] for i, ns in want.items()}


def test_paths_fold_into_unordered_pairs_then_both_directions_with_the_smallest_hop():
    # One row per forward path, packed as the query returns it: (a * stride + b) * 32 + hop.
    paths = [(0, 1, 2)] * 3 + [(1, 0, 1)] * 2 + [(0, 2, 5)] + [(2, 3, 3)] * 4
    n = 4   # the stride, 2 bits
    packed = np.array([(a * n + b) * 32 + hop for a, b, hop in paths], dtype=np.int64)
    keys, count, hop = reduce_packed(to_unordered(packed, 2), None)
    pairs = pd.DataFrame({"item_idx": keys // n, "neighbor_idx": keys % n, "count": count, "hop": hop})
    got = both_directions(pairs).sort_values(["item_idx", "neighbor_idx"], ignore_index=True)
    assert got.to_dict("list") == {"item_idx": [0, 0, 1, 2, 2, 3], "neighbor_idx": [1, 2, 0, 0, 3, 2],
                                   "count": [5, 1, 5, 1, 4, 4], "hop": [1, 5, 1, 5, 3, 3]}
    # Pre-counted rows (Neo4j returns a count per distinct pair and hop) add up the same way.
    keys2, count2, hop2 = reduce_packed(to_unordered(np.unique(packed), 2),
                                        np.unique(packed, return_counts=True)[1].astype(np.int32))
    assert (keys2 == keys).all() and (count2 == count).all() and (hop2 == hop).all()
    empty = both_directions(pairs.iloc[0:0])
    assert list(empty.columns) == ["item_idx", "neighbor_idx", "count", "hop"] and len(empty) == 0


def test_window_is_checked_before_it_reaches_the_query_text():
    assert all("*1..7]" in text for text in (cooccurrence_query(7).ladybug, cooccurrence_query(7).neo4j))
    for bad in (0, MAX_WINDOW + 1, "5", 2.0, True):
        with pytest.raises(ValueError):
            cooccurrence_query(bad)
    with pytest.raises(ConfigError, match="window"):
        GraphConfig(window=MAX_WINDOW + 1)


def test_event_chunks_give_the_same_relations_as_one_query(tmp_path):
    """The build reads NEXT and the co-occurrence in ranges of consecutive events (a range may cut a
    sequence, so a pair can be counted in two ranges and is merged): tiny ranges give the same edges
    as one range covering everything."""
    dataset = long_dataset()
    built = {}
    for name, chunk in (("one", 10**9), ("chunked", 97)):
        config = GraphConfig(window=7, collab_k=6, semantic=False, cooccur_chunk_events=chunk)
        run = RunPaths.of(tmp_path / name)
        build_run(run, dataset, StoreConfig(path=run.store), config, progress=False)
        with open_store(StoreConfig(path=run.store), read_only=True) as store:
            built[name] = read_relations(store, config)
    assert event_chunks(1214, 97)[-1] == (1164, 1214) and len(event_chunks(1214, 97)) == 13
    for relation in ("NEXT", "COLLAB"):
        pd.testing.assert_frame_equal(built["one"].edges[relation], built["chunked"].edges[relation])


def test_top_collab_ranked_in_blocks_equals_ranked_at_once():
    rng = np.random.default_rng(0)
    n, rows = 300, 60_000
    pairs = pd.DataFrame({"item_idx": rng.integers(0, n, rows).astype(np.int32),
                          "neighbor_idx": rng.integers(0, n, rows).astype(np.int32),
                          "count": rng.integers(1, 20, rows).astype(np.int32),     # many ties: popularity decides
                          "hop": rng.integers(1, 6, rows).astype(np.int8)})
    pairs = pairs.drop_duplicates(["item_idx", "neighbor_idx"], ignore_index=True)
    popularity, ids = rng.integers(0, 5, n), np.array([f"i{k}" for k in range(n)], dtype=object)
    at_once = select_top_collab(pairs, popularity, ids, 10, block_rows=10**9)
    assert len(at_once) == 10 * n and at_once.groupby("item_id")["rank"].max().eq(10).all()
    for block_rows in (1, 777, 20_000):   # one anchor per block, uneven blocks, a few blocks
        assert select_top_collab(pairs, popularity, ids, 10, block_rows=block_rows).equals(at_once)

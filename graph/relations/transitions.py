"""NEXT: one-hop training transitions, item i directly followed by item j in some user's sequence.

Built by Cypher from consecutive positions of the training part of every sequence (plus the
validation item with --include-valid); an item followed by itself is no transition. `count` is how
many times the pair occurs. These are the edges a fine-tuned LLM memorizes (the paper's one hop).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from graph.dialect import PerDialect
from graph.relations.collab import event_chunks, read_chunked
from graph.relations.spec import BuildContext, Legend, Relation

# Consecutive positions of one user, an item followed by itself excluded: one NEXT_EVENT step of the
# sequence's path (graph/queries.py), O(n) per user of n interactions where joining the user's
# INTERACTED edges with each other on `b.pos = a.pos + 1` is O(n^2). Items come back as `Item.idx`
# (copied on the event), mapped to ids by the build: no OF_ITEM hop per position. On Neo4j only this
# build's copy of the graph (graph/queries.py: build stamp); a user's events never leave its copy.
TRANSITIONS_QUERY = PerDialect(
    ladybug="""
MATCH (a:Event)-[:NEXT_EVENT]->(b:Event)
WHERE a.split IN $splits AND b.split IN $splits AND a.item_idx <> b.item_idx
  AND a.id >= $lo AND a.id < $hi
RETURN a.item_idx AS src_item_idx, b.item_idx AS dst_item_idx, count(*) AS count
""",
    neo4j="""
MATCH (a:Event {build: $build})-[:NEXT_EVENT]->(b:Event)
WHERE a.split IN $splits AND b.split IN $splits AND a.item_idx <> b.item_idx
  AND a.id >= $lo AND a.id < $hi
RETURN a.item_idx AS src_item_idx, b.item_idx AS dst_item_idx, count(*) AS count
""")

CREATE_NEXT_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (a:Item {id: row.src_item_id, build: $build})
MATCH (b:Item {id: row.dst_item_id, build: $build})
CREATE (a)-[:NEXT {count: row.count, split_scope: row.split_scope, build: $build}]->(b)
"""

READ_NEXT_QUERY = """
MATCH (a:Item)-[r:NEXT]->(b:Item)
RETURN a.id AS src_item_id, b.id AS dst_item_id, r.count AS count, r.split_scope AS split_scope
"""

COLUMNS = ("src_item_id", "dst_item_id", "count")


def build(ctx: BuildContext) -> pd.DataFrame:
    with ctx.stage("next"):
        # In ranges of events, like COLLAB's co-occurrence (graph/relations/collab.py): one query over
        # 20M events would hold a large part of LadybugDB's buffer pool. A pair seen in two ranges is
        # summed.
        n = np.int64(max(len(ctx.item_ids), 1))

        def merge(acc, frame):
            keys = frame["src_item_idx"].to_numpy(dtype=np.int64) * n + frame["dst_item_idx"].to_numpy(dtype=np.int64)
            count = frame["count"].to_numpy(dtype=np.int64)
            if acc is not None:
                keys, count = np.concatenate([acc[0], keys]), np.concatenate([acc[1], count])
            keys, inverse = np.unique(keys, return_inverse=True)
            return keys, np.bincount(inverse, weights=count, minlength=len(keys)).astype(np.int64)

        keys, count = read_chunked(ctx.session, TRANSITIONS_QUERY, {"splits": ctx.config.splits},
                                   event_chunks(len(ctx.dataset.interactions), ctx.config.cooccur_chunk_events),
                                   ["src_item_idx", "dst_item_idx", "count"], merge, "transitions", ctx.progress)
        pairs = pd.DataFrame({"src_item_idx": keys // n, "dst_item_idx": keys % n, "count": count})
        src = pairs["src_item_idx"].to_numpy(dtype=np.int64)
        dst = pairs["dst_item_idx"].to_numpy(dtype=np.int64)
        # Sorted by (src id, dst id) as strings through each item's rank in string order: one
        # integer argsort, where sorting 14M rows of string ids (20M interactions) takes a minute.
        item_ids = ctx.item_ids
        id_rank = np.empty(len(item_ids), dtype=np.int64)
        id_rank[np.argsort(item_ids, kind="stable")] = np.arange(len(item_ids))
        order = np.argsort(id_rank[src] * len(item_ids) + id_rank[dst], kind="stable")
        edges = pd.DataFrame({"src_item_id": item_ids[src[order]], "dst_item_id": item_ids[dst[order]],
                              "count": pairs["count"].to_numpy(dtype=np.int64)[order]})
        edges["split_scope"] = ctx.config.split_scope
        ctx.write(RELATION, edges)
    return edges[list(COLUMNS)]


RELATION = Relation(
    name="NEXT",
    summary="item i directly followed by item j in a training sequence (count = occurrences)",
    ladybug_table="CREATE REL TABLE IF NOT EXISTS NEXT(FROM Item TO Item, count INT64, split_scope STRING)",
    create_query=CREATE_NEXT_QUERY_NEO4J,
    read_query=READ_NEXT_QUERY,
    build=build,
    export_name="next",
    export_columns=COLUMNS,
    endpoints=("src_item_id", "dst_item_id"),
    sort_by=("src_item_id", "dst_item_id"),
    stages=lambda config: ("next",),
    tidy=lambda frame: frame[list(COLUMNS)],
    legend=Legend("NEXT from another history item → target (×count)", "VERMILLION", "solid"),
)

"""NEXT: one-hop training transitions, item i directly followed by item j in some user's sequence.

Built by Cypher from consecutive positions of the training part of every sequence (plus the
validation item with --include-valid); an item followed by itself is no transition. `count` is how
many times the pair occurs. These are the edges a fine-tuned LLM memorizes (the paper's one hop).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from graph.dialect import PerDialect
from graph.relations.spec import BuildContext, Legend, Relation

# Consecutive positions of one user, an item followed by itself excluded. On Neo4j only this build's
# copy of the graph (graph/queries.py: build stamp); a user's edges never leave its copy.
TRANSITIONS_QUERY = PerDialect(
    ladybug="""
MATCH (u:User)-[a:INTERACTED]->(i:Item), (u)-[b:INTERACTED]->(j:Item)
WHERE b.pos = a.pos + 1 AND a.split IN $splits AND b.split IN $splits AND i.id <> j.id
RETURN i.id AS src_item_id, j.id AS dst_item_id, count(*) AS count
""",
    neo4j="""
MATCH (u:User {build: $build})-[a:INTERACTED]->(i:Item), (u)-[b:INTERACTED]->(j:Item)
WHERE b.pos = a.pos + 1 AND a.split IN $splits AND b.split IN $splits AND i.id <> j.id
RETURN i.id AS src_item_id, j.id AS dst_item_id, count(*) AS count
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
        edges = ctx.read(TRANSITIONS_QUERY, ctx.params, list(COLUMNS))
        edges = edges.sort_values(["src_item_id", "dst_item_id"], ignore_index=True)
        edges["count"] = edges["count"].astype(np.int64)
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

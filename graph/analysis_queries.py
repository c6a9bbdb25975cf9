"""Cypher of the memorization analysis: segments on User nodes, RECOMMENDED edges, semantic IDs.

Written by `evaluate.segments.write_segments` (iirg analyze), `evaluate.record.write_recommendations`
(iirg baseline / ensemble / LLM evaluation) and `train.sid.write_sids_to_graph` (iirg sid); read by
the dashboard and `iirg cypher`. Values are always $params, writes are `UNWIND $rows AS row`. A
`*_QUERY` is either one text for both dialects or a `graph.dialect.PerDialect` that the store
resolves itself (`store.write_batch(SET_USER_SEGMENTS_QUERY, rows)`); `*_QUERY_LADYBUG` statements
are LadybugDB-only.

Dialect difference: LadybugDB types a parameter list from its values, so a batch in which every
`hop` is null arrives as STRING and cannot be stored in the INT64 property; it is cast explicitly.
Neo4j stores nulls as "no property" and needs no cast.
"""

from __future__ import annotations

from graph.dialect import PerDialect

# Reset every user first: users that are no longer evaluated must not keep stale labels.
CLEAR_USER_SEGMENTS_QUERY = """
MATCH (u:User)
SET u.segment = NULL, u.hop = NULL, u.one_hop = NULL, u.any_hop = NULL, u.semantic_only = NULL,
    u.target_item_id = NULL, u.last_item_id = NULL
"""

_SET_USER_SEGMENTS = """
UNWIND $rows AS row
MATCH (u:User {{id: row.user_id}})
SET u.segment = row.segment, u.hop = {hop}, u.one_hop = row.one_hop, u.any_hop = row.any_hop,
    u.semantic_only = row.semantic_only, u.target_item_id = row.target_item_id,
    u.last_item_id = row.last_item_id
"""
SET_USER_SEGMENTS_QUERY = PerDialect(ladybug=_SET_USER_SEGMENTS.format(hop="CAST(row.hop AS INT64)"),
                                     neo4j=_SET_USER_SEGMENTS.format(hop="row.hop"))

DELETE_RECOMMENDED_QUERY = """
MATCH (:User)-[r:RECOMMENDED]->(:Item)
WHERE r.model = $model AND r.split = $split
DELETE r
"""

CREATE_RECOMMENDED_QUERY = """
UNWIND $rows AS row
MATCH (u:User {id: row.user_id})
MATCH (i:Item {id: row.item_id})
CREATE (u)-[:RECOMMENDED {model: row.model, rank: row.rank, split: row.split}]->(i)
"""

COUNT_RECOMMENDED_QUERY = """
MATCH (:User)-[r:RECOMMENDED]->(:Item)
WHERE r.model = $model AND r.split = $split
RETURN count(r) AS edges
"""

# LadybugDB deletes relationships one by one (~1 ms per edge: 8 minutes for one Yelp model), so
# there a replacement keeps the other models' edges, drops and re-creates the table (DDL from
# graph.queries) and COPYs everything back, which takes seconds.
READ_OTHER_RECOMMENDED_QUERY_LADYBUG = """
MATCH (u:User)-[r:RECOMMENDED]->(i:Item)
WHERE NOT (r.model = $model AND r.split = $split)
RETURN u.id AS user_id, i.id AS item_id, r.model AS model, r.rank AS rank, r.split AS split
"""
DROP_RECOMMENDED_TABLE_QUERY_LADYBUG = "DROP TABLE RECOMMENDED"

SEGMENT_COUNTS_QUERY = """
MATCH (u:User)
WHERE u.segment IS NOT NULL
RETURN u.segment AS segment, count(*) AS n_users
ORDER BY segment
"""

# Hits@k per segment straight from the graph: a cross-check of the evaluator and what the
# dashboard filters on (test split; the user's target is stored on the User node).
HITS_BY_SEGMENT_QUERY = """
MATCH (u:User)-[r:RECOMMENDED]->(i:Item)
WHERE r.model = $model AND r.split = 'test' AND r.rank <= $k AND i.id = u.target_item_id
RETURN u.segment AS segment, count(*) AS hits
ORDER BY segment
"""

RECOMMENDED_MODELS_QUERY = """
MATCH (:User)-[r:RECOMMENDED]->(:Item)
RETURN r.model AS model, r.split AS split, count(*) AS edges
ORDER BY model, split
"""


# -- semantic IDs (iirg sid) ------------------------------------------------------------------------
ITEM_EMBEDDINGS_QUERY = """
MATCH (i:Item)
RETURN i.id AS item_id, i.embedding AS embedding
"""

# LadybugDB has a fixed schema: the SID properties are added to a graph built before `iirg sid`.
# Neo4j needs no DDL for a new property; an index makes prefix look-ups (STARTS WITH) fast.
ITEM_SID_INDEX_QUERY_NEO4J = "CREATE INDEX item_sid IF NOT EXISTS FOR (i:Item) ON (i.sid)"
ADD_ITEM_SID_PROPERTIES_QUERIES = PerDialect(
    ladybug=("ALTER TABLE Item ADD IF NOT EXISTS sid STRING",
             "ALTER TABLE Item ADD IF NOT EXISTS sid_codes INT64[]"),
    neo4j=(ITEM_SID_INDEX_QUERY_NEO4J,))

SET_ITEM_SIDS_QUERY = """
UNWIND $rows AS row
MATCH (i:Item {id: row.item_id})
SET i.sid = row.sid, i.sid_codes = row.sid_codes
"""


"""The Cypher of the graph build that is not a relation's: schema, load, popularity, read-back.

Each relation's own statements (aggregation, create, delete, read) live in its module,
graph/relations/<name>.py; its LadybugDB table joins the schema below from there.

Naming: `*_QUERY` text is sent unchanged to both backends (LadybugDB and Neo4j agree on it);
`*_QUERY_NEO4J` is what Neo4j runs where the embedded store bulk-loads with COPY instead
(`GraphSession.bulk_create`); the schema DDL is a `graph.dialect.PerDialect`. Values are always
`$parameters`; writes go through `UNWIND $rows AS row`. Every Neo4j statement here is checked by
Neo4j's own linter in tests/test_cypher_lint.py.

Schema
    (:User {id, segment, hop, one_hop, any_hop, semantic_only, target_item_id, last_item_id})
    (:Item {id, idx, title, raw_title, description, categories, brand, attributes, popularity,
            embedding})
    (:User)-[:INTERACTED {pos, ts, split}]->(:Item)
    (:User)-[:HAS_EVENT]->(:Event {id, item_idx, pos, split})-[:OF_ITEM]->(:Item)
    (:Event)-[:NEXT_EVENT]->(:Event)
    (:Item)-[:NEXT {count, split_scope}]->(:Item)
    (:Item)-[:COLLAB {rank, count, hop, source, via_item_id, window, k, split_scope}]->(:Item)
    (:Item)-[:SIMILAR {rank, score, model, k}]->(:Item)
    (:Item)-[:SHARES_META {rank, score, shared, k}]->(:Item)      (optional: --extra-relations)
    (:User)-[:RECOMMENDED {model, rank, split}]->(:Item)
`idx` is the item's position in the source (numeric order for numeric ids): the last tie-break of
the collaborative ranking, as in the IIRG reference implementation.

Sequences as paths: every interaction is also an `Event` node (one per INTERACTED edge, same pos and
split), and each user's events are chained in order by `NEXT_EVENT`, so positions p and p + d of one
user are the ends of a path of length d. The relations that look at neighbouring positions (NEXT,
COLLAB) follow these paths, `(a:Event)-[:NEXT_EVENT*1..W]->(b:Event)`: O(n * W) per user of n
interactions, where joining a user's INTERACTED edges with each other is O(n^2). `Event.id` is the
row number in (user, pos) order, a key for the bulk load only. `Event.item_idx` copies the `idx` of
the OF_ITEM item because the co-occurrence query reads it for every pair of positions: going through
OF_ITEM instead made that query 2.7x slower on LadybugDB (ml-100k), and integers group and travel
faster than the string ids (which the build maps back from `idx`).
"""

from __future__ import annotations

from graph.dialect import PerDialect
from graph.relations import RELATIONS

# -- schema ----------------------------------------------------------------------------------------
# LadybugDB's fixed tables by name (the relations' tables come from their specs, graph/relations).
TABLES_LADYBUG = {
    "Item": "CREATE NODE TABLE IF NOT EXISTS Item(id STRING PRIMARY KEY, idx INT64, title STRING, "
            "raw_title STRING, description STRING, categories STRING[], brand STRING, attributes STRING, "
            "popularity INT64, embedding FLOAT[])",
    "User": "CREATE NODE TABLE IF NOT EXISTS User(id STRING PRIMARY KEY, segment STRING, hop INT64, "
            "one_hop BOOLEAN, any_hop BOOLEAN, semantic_only BOOLEAN, target_item_id STRING, "
            "last_item_id STRING)",
    "INTERACTED": "CREATE REL TABLE IF NOT EXISTS INTERACTED(FROM User TO Item, pos INT64, ts INT64, split STRING)",
    "Event": "CREATE NODE TABLE IF NOT EXISTS Event(id INT64 PRIMARY KEY, item_idx INT64, pos INT64, split STRING)",
    "HAS_EVENT": "CREATE REL TABLE IF NOT EXISTS HAS_EVENT(FROM User TO Event)",
    "OF_ITEM": "CREATE REL TABLE IF NOT EXISTS OF_ITEM(FROM Event TO Item)",
    "NEXT_EVENT": "CREATE REL TABLE IF NOT EXISTS NEXT_EVENT(FROM Event TO Event)",
    **{name: spec.ladybug_table for name, spec in RELATIONS.items()},
    "RECOMMENDED": "CREATE REL TABLE IF NOT EXISTS RECOMMENDED(FROM User TO Item, model STRING, rank INT64, "
                   "split STRING)",
}
SCHEMA_QUERIES_LADYBUG = list(TABLES_LADYBUG.values())

SCHEMA_QUERIES_NEO4J = [
    "CREATE CONSTRAINT item_id IF NOT EXISTS FOR (i:Item) REQUIRE i.id IS UNIQUE",
    "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE",
    "CREATE CONSTRAINT event_id IF NOT EXISTS FOR (e:Event) REQUIRE e.id IS UNIQUE",
    "CREATE INDEX user_segment IF NOT EXISTS FOR (u:User) ON (u.segment)",
    "CREATE INDEX item_title IF NOT EXISTS FOR (i:Item) ON (i.title)",
]

# What `GraphStore.rebuild` creates before a build: LadybugDB's fixed tables, Neo4j's constraints.
SCHEMA_QUERIES = PerDialect(ladybug=tuple(SCHEMA_QUERIES_LADYBUG), neo4j=tuple(SCHEMA_QUERIES_NEO4J))

# -- load (`GraphSession.bulk_create`: the embedded store COPYs into a fresh database, Neo4j runs
#    these MERGE / CREATE statements) ------------------------------------------------------------------
MERGE_ITEMS_QUERY_NEO4J = """
UNWIND $rows AS row
MERGE (i:Item {id: row.id})
SET i.idx = row.idx, i.title = row.title, i.raw_title = row.raw_title,
    i.description = row.description, i.categories = row.categories, i.brand = row.brand,
    i.attributes = row.attributes, i.popularity = row.popularity, i.embedding = row.embedding
"""

MERGE_USERS_QUERY_NEO4J = """
UNWIND $rows AS row
MERGE (:User {id: row.id})
"""

CREATE_INTERACTIONS_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (u:User {id: row.user_id}), (i:Item {id: row.item_id})
CREATE (u)-[:INTERACTED {pos: row.pos, ts: row.ts, split: row.split}]->(i)
"""

# One event per interaction (rows in (user, pos) order, ids = row numbers), then its two links.
CREATE_EVENTS_QUERY_NEO4J = """
UNWIND $rows AS row
CREATE (:Event {id: row.id, item_idx: row.item_idx, pos: row.pos, split: row.split})
"""

CREATE_HAS_EVENT_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (u:User {id: row.user_id}), (e:Event {id: row.event_id})
CREATE (u)-[:HAS_EVENT]->(e)
"""

CREATE_OF_ITEM_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (e:Event {id: row.event_id}), (i:Item {id: row.item_id})
CREATE (e)-[:OF_ITEM]->(i)
"""

# Each event to the user's next one (rows: the event ids of consecutive positions of one user).
CREATE_NEXT_EVENTS_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (a:Event {id: row.src_event_id}), (b:Event {id: row.dst_event_id})
CREATE (a)-[:NEXT_EVENT]->(b)
"""

# A (re)load replaces what the graph held: users and items the dataset no longer has go, and the
# interactions are written anew, so loading the same dataset twice gives the same graph (on a fresh
# embedded database these find nothing).
DELETE_STALE_USERS_QUERY = """
MATCH (u:User) WHERE NOT u.id IN $ids
DETACH DELETE u
"""

DELETE_STALE_ITEMS_QUERY = """
MATCH (i:Item) WHERE NOT i.id IN $ids
DETACH DELETE i
"""

DELETE_INTERACTIONS_QUERY = """
MATCH (:User)-[r:INTERACTED]->(:Item)
DELETE r
"""

# Events are rewritten with the interactions (their ids restart at 0 on every load).
DELETE_EVENTS_QUERY = """
MATCH (e:Event)
DETACH DELETE e
"""

# -- popularity: computed by Cypher from the training part of every sequence ----------------------
# `$splits` is ["train"] (default) or ["train", "valid"] (--include-valid, the IIRG reference setup).
# The test item never has a split in $splits, so it never feeds a relation (graph/relations: same).
POPULARITY_QUERY = """
MATCH (:User)-[r:INTERACTED]->(i:Item)
WHERE r.split IN $splits
RETURN i.id AS item_id, count(*) AS popularity
"""

SET_POPULARITY_QUERY = """
UNWIND $rows AS row
MATCH (i:Item {id: row.item_id})
SET i.popularity = row.popularity
"""

# -- read-back (export) ----------------------------------------------------------------------------
READ_ITEMS_QUERY = """
MATCH (i:Item)
RETURN i.id AS item_id, i.idx AS idx, i.title AS title, i.popularity AS popularity
"""

# Statements built from the lists above, for the Neo4j linter (tests/test_cypher_lint.py).
LINT_EXAMPLES_NEO4J = [*SCHEMA_QUERIES_NEO4J]

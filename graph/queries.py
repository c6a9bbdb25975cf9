"""The Cypher of the graph build that is not a relation's: schema, load, popularity, read-back.

Each relation's own statements (aggregation, create, read) live in its module,
graph/relations/<name>.py; its LadybugDB table joins the schema below from there.

Naming: `*_QUERY` text is sent unchanged to both backends (LadybugDB and Neo4j agree on it), or is
a `graph.dialect.PerDialect` where they differ (the schema DDL, and the build's statements that Neo4j
scopes to its build stamp); `*_QUERY_NEO4J` is what Neo4j runs where the embedded store bulk-loads
with COPY instead (`GraphSession.bulk_create`). Values are always
`$parameters`; writes go through `UNWIND $rows AS row`. Every Neo4j statement here is checked by
Neo4j's own linter in tests/test_cypher_lint.py.

Build stamp (Neo4j): a build writes a complete new copy of the graph beside the previous one, every
node and relationship carrying `build` (an integer id, `$build`, filled in by the store's build
session), and every statement of a build reads and writes only its own copy (`{..., build: $build}`).
A failed build deletes its stamp; a finished one marks itself current (`(:GraphBuild)`) and deletes
every other copy (graph/neo4j_store.py holds those statements). Users and items are therefore unique
per (id, build), not per id. The embedded store needs none of this: a build there is a fresh
database swapped in whole, and its texts below have no stamp.

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
the collaborative ranking, as in the IIRG reference implementation. On Neo4j, users, items, events
and every relationship a build writes also carry `build` (the stamp above).

Sequences as paths: every interaction is also an `Event` node (one per INTERACTED edge, same pos and
split), and each user's events are chained in order by `NEXT_EVENT`, so positions p and p + d of one
user are the ends of a path of length d. The relations that look at neighbouring positions (NEXT,
COLLAB) follow these paths, `(a:Event)-[:NEXT_EVENT*1..W]->(b:Event)`: O(n * W) per user of n
interactions, where joining a user's INTERACTED edges with each other is O(n^2). `Event.id` is the
row number in (user, pos) order: a key for the bulk load, and the ranges NEXT and COLLAB read
in chunks (graph/relations/collab.py). `Event.item_idx` copies the `idx` of
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
    # Graphs built before the build stamp had ids unique on their own; two builds' copies share ids.
    "DROP CONSTRAINT item_id IF EXISTS",
    "DROP CONSTRAINT user_id IF EXISTS",
    "CREATE CONSTRAINT item_id_build IF NOT EXISTS FOR (i:Item) REQUIRE (i.id, i.build) IS UNIQUE",
    "CREATE CONSTRAINT user_id_build IF NOT EXISTS FOR (u:User) REQUIRE (u.id, u.build) IS UNIQUE",
    "CREATE CONSTRAINT event_id_build IF NOT EXISTS FOR (e:Event) REQUIRE (e.id, e.build) IS UNIQUE",
    # Readers (dashboard, console) look items and users up by id alone: the composite index above
    # cannot serve `{id: $item_id}` without a predicate on `build`.
    "CREATE INDEX item_id_lookup IF NOT EXISTS FOR (i:Item) ON (i.id)",
    "CREATE INDEX user_id_lookup IF NOT EXISTS FOR (u:User) ON (u.id)",
    # A build's own nodes (SIMILAR's outer MATCH, the paths of NEXT and COLLAB) and the stamp cleanup.
    "CREATE INDEX item_build IF NOT EXISTS FOR (i:Item) ON (i.build)",
    "CREATE INDEX user_build IF NOT EXISTS FOR (u:User) ON (u.build)",
    "CREATE INDEX event_build IF NOT EXISTS FOR (e:Event) ON (e.build)",
    "CREATE INDEX user_segment IF NOT EXISTS FOR (u:User) ON (u.segment)",
    "CREATE INDEX item_title IF NOT EXISTS FOR (i:Item) ON (i.title)",
]

# Labels only Neo4j has: the marker of the current build copy (graph/neo4j_store.py), for the linter.
NEO4J_ONLY_LABELS = ("GraphBuild",)

# What `GraphStore.rebuild` creates before a build: LadybugDB's fixed tables, Neo4j's constraints.
SCHEMA_QUERIES = PerDialect(ladybug=tuple(SCHEMA_QUERIES_LADYBUG), neo4j=tuple(SCHEMA_QUERIES_NEO4J))

# -- load (`GraphSession.bulk_create`: the embedded store COPYs into a fresh database, Neo4j runs
#    these statements batch by batch, stamped with the build) -------------------------------------
# MERGE on (id, build), the composite uniqueness constraint: a batch the driver retries after a lost
# commit acknowledgement finds its nodes instead of failing the build. The embedding goes in as a
# float32 vector property (db.create.setNodeVectorProperty: half the size of a list of floats).
CREATE_ITEMS_QUERY_NEO4J = """
UNWIND $rows AS row
MERGE (i:Item {id: row.id, build: $build})
SET i.idx = row.idx, i.title = row.title, i.raw_title = row.raw_title,
    i.description = row.description, i.categories = row.categories, i.brand = row.brand,
    i.attributes = row.attributes, i.popularity = row.popularity
WITH i, row
WHERE row.embedding IS NOT NULL
CALL db.create.setNodeVectorProperty(i, 'embedding', row.embedding)
"""

CREATE_USERS_QUERY_NEO4J = """
UNWIND $rows AS row
MERGE (:User {id: row.id, build: $build})
"""

CREATE_INTERACTIONS_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (u:User {id: row.user_id, build: $build})
MATCH (i:Item {id: row.item_id, build: $build})
CREATE (u)-[:INTERACTED {pos: row.pos, ts: row.ts, split: row.split, build: $build}]->(i)
"""

# One event per interaction (rows in (user, pos) order, ids = row numbers), then its two links.
# MERGE on (id, build) as for items and users: a retried batch finds its events.
CREATE_EVENTS_QUERY_NEO4J = """
UNWIND $rows AS row
MERGE (e:Event {id: row.id, build: $build})
SET e.item_idx = row.item_idx, e.pos = row.pos, e.split = row.split
"""

CREATE_HAS_EVENT_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (u:User {id: row.user_id, build: $build})
MATCH (e:Event {id: row.event_id, build: $build})
CREATE (u)-[:HAS_EVENT {build: $build}]->(e)
"""

CREATE_OF_ITEM_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (e:Event {id: row.event_id, build: $build})
MATCH (i:Item {id: row.item_id, build: $build})
CREATE (e)-[:OF_ITEM {build: $build}]->(i)
"""

# Each event to the user's next one (rows: the event ids of consecutive positions of one user).
CREATE_NEXT_EVENTS_QUERY_NEO4J = """
UNWIND $rows AS row
MATCH (a:Event {id: row.src_event_id, build: $build})
MATCH (b:Event {id: row.dst_event_id, build: $build})
CREATE (a)-[:NEXT_EVENT {build: $build}]->(b)
"""

# -- popularity: computed by Cypher from the training part of every sequence ----------------------
# `$splits` is ["train"] (default) or ["train", "valid"] (--include-valid, the IIRG reference setup).
# The test item never has a split in $splits, so it never feeds a relation (graph/relations: same).
# On Neo4j only this build's copy counts and changes (see the build stamp above).
POPULARITY_QUERY = PerDialect(
    ladybug="""
MATCH (:User)-[r:INTERACTED]->(i:Item)
WHERE r.split IN $splits
RETURN i.id AS item_id, count(*) AS popularity
""",
    neo4j="""
MATCH (:User {build: $build})-[r:INTERACTED]->(i:Item)
WHERE r.split IN $splits
RETURN i.id AS item_id, count(*) AS popularity
""")

SET_POPULARITY_QUERY = PerDialect(
    ladybug="""
UNWIND $rows AS row
MATCH (i:Item {id: row.item_id})
SET i.popularity = row.popularity
""",
    neo4j="""
UNWIND $rows AS row
MATCH (i:Item {id: row.item_id, build: $build})
SET i.popularity = row.popularity
""")

# -- read-back (export) ----------------------------------------------------------------------------
READ_ITEMS_QUERY = """
MATCH (i:Item)
RETURN i.id AS item_id, i.idx AS idx, i.title AS title, i.popularity AS popularity
"""

# Statements built from the lists above, for the Neo4j linter (tests/test_cypher_lint.py).
LINT_EXAMPLES_NEO4J = [*SCHEMA_QUERIES_NEO4J]

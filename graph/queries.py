"""Every Cypher statement of the graph build, in one place.

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
    (:Item)-[:NEXT {count, split_scope}]->(:Item)
    (:Item)-[:COLLAB {rank, count, hop, source, via_item_id, window, k, split_scope}]->(:Item)
    (:Item)-[:SIMILAR {rank, score, model, k}]->(:Item)
    (:User)-[:RECOMMENDED {model, rank, split}]->(:Item)
`idx` is the item's position in the source (numeric order for numeric ids): the last tie-break of
the collaborative ranking, as in the IIRG reference implementation.
"""

from __future__ import annotations

from graph.dialect import PerDialect

# -- schema ----------------------------------------------------------------------------------------
SCHEMA_QUERIES_LADYBUG = [
    "CREATE NODE TABLE IF NOT EXISTS Item(id STRING PRIMARY KEY, idx INT64, title STRING, "
    "raw_title STRING, description STRING, categories STRING[], brand STRING, attributes STRING, "
    "popularity INT64, embedding FLOAT[])",
    "CREATE NODE TABLE IF NOT EXISTS User(id STRING PRIMARY KEY, segment STRING, hop INT64, "
    "one_hop BOOLEAN, any_hop BOOLEAN, semantic_only BOOLEAN, target_item_id STRING, "
    "last_item_id STRING)",
    "CREATE REL TABLE IF NOT EXISTS INTERACTED(FROM User TO Item, pos INT64, ts INT64, split STRING)",
    "CREATE REL TABLE IF NOT EXISTS NEXT(FROM Item TO Item, count INT64, split_scope STRING)",
    "CREATE REL TABLE IF NOT EXISTS COLLAB(FROM Item TO Item, rank INT64, count INT64, hop INT64, "
    "source STRING, via_item_id STRING, window INT64, k INT64, split_scope STRING)",
    "CREATE REL TABLE IF NOT EXISTS SIMILAR(FROM Item TO Item, rank INT64, score DOUBLE, "
    "model STRING, k INT64)",
    "CREATE REL TABLE IF NOT EXISTS RECOMMENDED(FROM User TO Item, model STRING, rank INT64, "
    "split STRING)",
]

SCHEMA_QUERIES_NEO4J = [
    "CREATE CONSTRAINT item_id IF NOT EXISTS FOR (i:Item) REQUIRE i.id IS UNIQUE",
    "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE",
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

# -- relations: computed by Cypher from the training part of every sequence ------------------------
# `$splits` is ["train"] (default) or ["train", "valid"] (--include-valid, the IIRG reference setup).
# The test item never has a split in $splits, so it never feeds a relation.
POPULARITY_QUERY = """
MATCH (:User)-[r:INTERACTED]->(i:Item)
WHERE r.split IN $splits
RETURN i.id AS item_id, count(*) AS popularity
"""

# One-hop transitions: consecutive positions of one user, an item followed by itself excluded.
TRANSITIONS_QUERY = """
MATCH (u:User)-[a:INTERACTED]->(i:Item), (u)-[b:INTERACTED]->(j:Item)
WHERE b.pos = a.pos + 1 AND a.split IN $splits AND b.split IN $splits AND i.id <> j.id
RETURN i.id AS src_item_id, j.id AS dst_item_id, count(*) AS count
"""

# Co-occurrence within a window of W positions, both directions; count = number of position pairs
# (u, p, q) with 1 <= |p - q| <= W, hop = the smallest |p - q| seen.
COOCCURRENCE_QUERY = """
MATCH (u:User)-[a:INTERACTED]->(i:Item), (u)-[b:INTERACTED]->(j:Item)
WHERE a.split IN $splits AND b.split IN $splits
  AND b.pos <> a.pos AND b.pos >= a.pos - $window AND b.pos <= a.pos + $window
  AND i <> j
RETURN i.id AS item_id, j.id AS neighbor_id, count(*) AS count, min(abs(b.pos - a.pos)) AS hop
"""

# Back-fill candidates for items with fewer than k collaborative neighbours: the co-occurrence
# neighbours of their semantic neighbours, in (semantic rank, collaborative rank) order.
BACKFILL_CANDIDATES_QUERY = """
UNWIND $item_ids AS anchor_id
MATCH (i:Item {id: anchor_id})-[s:SIMILAR]->(m:Item)-[c:COLLAB]->(j:Item)
WHERE c.source = 'cooccur' AND j.id <> i.id
RETURN i.id AS item_id, j.id AS neighbor_id, m.id AS via_item_id, s.rank AS similar_rank,
       c.rank AS collab_rank
"""

# -- relation write-back ---------------------------------------------------------------------------
DELETE_RELATION_QUERIES = {
    "NEXT": "MATCH (:Item)-[r:NEXT]->(:Item) DELETE r",
    "COLLAB": "MATCH (:Item)-[r:COLLAB]->(:Item) DELETE r",
    "SIMILAR": "MATCH (:Item)-[r:SIMILAR]->(:Item) DELETE r",
}

SET_POPULARITY_QUERY = """
UNWIND $rows AS row
MATCH (i:Item {id: row.item_id})
SET i.popularity = row.popularity
"""

CREATE_NEXT_QUERY = """
UNWIND $rows AS row
MATCH (a:Item {id: row.src_item_id}), (b:Item {id: row.dst_item_id})
CREATE (a)-[:NEXT {count: row.count, split_scope: row.split_scope}]->(b)
"""

CREATE_COLLAB_QUERY = """
UNWIND $rows AS row
MATCH (a:Item {id: row.item_id}), (b:Item {id: row.neighbor_id})
CREATE (a)-[:COLLAB {rank: row.rank, count: row.count, hop: row.hop, source: row.source,
                     via_item_id: row.via_item_id, window: row.window, k: row.k,
                     split_scope: row.split_scope}]->(b)
"""

CREATE_SIMILAR_QUERY = """
UNWIND $rows AS row
MATCH (a:Item {id: row.item_id}), (b:Item {id: row.neighbor_id})
CREATE (a)-[:SIMILAR {rank: row.rank, score: row.score, model: row.model, k: row.k}]->(b)
"""

# -- read-back (export, stats, tests) --------------------------------------------------------------
READ_NEXT_QUERY = """
MATCH (a:Item)-[r:NEXT]->(b:Item)
RETURN a.id AS src_item_id, b.id AS dst_item_id, r.count AS count, r.split_scope AS split_scope
"""

READ_COLLAB_QUERY = """
MATCH (a:Item)-[r:COLLAB]->(b:Item)
RETURN a.id AS item_id, b.id AS neighbor_id, r.rank AS rank, r.count AS count, r.hop AS hop,
       r.source AS source, r.via_item_id AS via_item_id, r.window AS window, r.k AS k,
       r.split_scope AS split_scope
"""

READ_SIMILAR_QUERY = """
MATCH (a:Item)-[r:SIMILAR]->(b:Item)
RETURN a.id AS item_id, b.id AS neighbor_id, r.rank AS rank, r.score AS score, r.model AS model,
       r.k AS k
"""

READ_ITEMS_QUERY = """
MATCH (i:Item)
RETURN i.id AS item_id, i.idx AS idx, i.title AS title, i.popularity AS popularity
"""

# Statements built from the dicts/lists above, for the Neo4j linter (tests/test_cypher_lint.py).
LINT_EXAMPLES_NEO4J = [*SCHEMA_QUERIES_NEO4J, *DELETE_RELATION_QUERIES.values()]

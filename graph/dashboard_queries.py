"""Every Cypher statement of the dashboard (`iirg dashboard`), in one place.

    from graph import dashboard_queries as q
    store.run_df(q.HISTORY_QUERY, {"user_id": "42"})

Most statements are the same text on both backends. Where the dialects differ a `*_QUERY` is a
`graph.dialect.PerDialect`, and the store sends its own dialect's text:
- SID presence: LadybugDB asks its catalogue (`table_info`), Neo4j looks for one item with a `sid`.
- shortest path: LadybugDB writes `(a)-[:NEXT* SHORTEST 1..4]->(b)` and reads path members with
  `properties(nodes(p), 'id')`; Neo4j writes `shortestPath((a)-[:NEXT*1..4]->(b))` and uses list
  comprehensions (LadybugDB has none).

Every per-user statement starts from `(:User {id: $user_id})` or `(:Item {id: $item_id})`, i.e. a
primary-key lookup (LadybugDB) or a unique-constraint index seek (Neo4j), then follows at most a
user's history and each history item's top-k neighbours: the work per user view is bounded by the
history length, not by the graph size. Values are always `$parameters`; the hop bound of the path
query is part of the text because neither dialect takes a parameter there (it is a constant, never
user input). Every Neo4j statement is checked by Neo4j's linter (tests/test_cypher_lint.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from graph.dialect import Dialect, PerDialect, Query, text_for
from graph.relations import RELATIONS

MAX_PATH_HOPS = 4  # longest NEXT path the user explorer looks for (segments label > 3 hops "beyond")

# -- per user --------------------------------------------------------------------------------------
USER_QUERY = """
MATCH (u:User {id: $user_id})
RETURN u.id AS user_id, u.segment AS segment, u.hop AS hop, u.one_hop AS one_hop,
       u.any_hop AS any_hop, u.semantic_only AS semantic_only,
       u.target_item_id AS target_item_id, u.last_item_id AS last_item_id
"""

# The whole sequence with splits: the test target is the `test` position, its history the rest.
HISTORY_QUERY = """
MATCH (u:User {id: $user_id})-[r:INTERACTED]->(i:Item)
RETURN r.pos AS pos, r.split AS split, r.ts AS ts, i.id AS item_id, i.title AS title,
       i.popularity AS popularity
ORDER BY pos
"""

NEXT_EDGE_QUERY = """
MATCH (a:Item {id: $source_item_id})-[r:NEXT]->(b:Item {id: $target_item_id})
RETURN r.count AS count
"""

SHORTEST_NEXT_PATH_QUERY = PerDialect(ladybug=f"""
MATCH p = (a:Item {{id: $source_item_id}})-[:NEXT* SHORTEST 1..{MAX_PATH_HOPS}]->(b:Item {{id: $target_item_id}})
RETURN properties(nodes(p), 'id') AS item_ids, properties(nodes(p), 'title') AS titles,
       properties(rels(p), 'count') AS counts, length(p) AS hops
LIMIT 1
""", neo4j=f"""
MATCH p = shortestPath((a:Item {{id: $source_item_id}})-[:NEXT*1..{MAX_PATH_HOPS}]->(b:Item {{id: $target_item_id}}))
RETURN [n IN nodes(p) | n.id] AS item_ids, [n IN nodes(p) | n.title] AS titles,
       [r IN relationships(p) | r.count] AS counts, length(p) AS hops
LIMIT 1
""")

# History items with an edge of one relation type into the target: why the target is reachable.
HISTORY_NEXT_TO_TARGET_QUERY = """
MATCH (u:User {id: $user_id})-[h:INTERACTED]->(i:Item)-[r:NEXT]->(t:Item {id: $target_item_id})
WHERE h.split IN $history_splits
RETURN i.id AS item_id, i.title AS title, h.pos AS pos, r.count AS count
ORDER BY pos
"""

HISTORY_COLLAB_TO_TARGET_QUERY = """
MATCH (u:User {id: $user_id})-[h:INTERACTED]->(i:Item)-[r:COLLAB]->(t:Item {id: $target_item_id})
WHERE h.split IN $history_splits
RETURN i.id AS item_id, i.title AS title, h.pos AS pos, r.rank AS rank, r.count AS count,
       r.source AS source
ORDER BY pos
"""

HISTORY_SIMILAR_TO_TARGET_QUERY = """
MATCH (u:User {id: $user_id})-[h:INTERACTED]->(i:Item)-[r:SIMILAR]->(t:Item {id: $target_item_id})
WHERE h.split IN $history_splits
RETURN i.id AS item_id, i.title AS title, h.pos AS pos, r.rank AS rank, r.score AS score
ORDER BY pos
"""

# Each model's top-k for the user (RECOMMENDED edges keep ranks <= 20, see evaluate.record).
RECOMMENDATIONS_QUERY = """
MATCH (u:User {id: $user_id})-[r:RECOMMENDED]->(i:Item)
WHERE r.split = $split AND r.rank <= $k
RETURN r.model AS model, r.rank AS rank, i.id AS item_id, i.title AS title
ORDER BY model, rank
"""

# Badges of recommended items: training successors of the last item (memorized) ...
SUCCESSORS_AMONG_QUERY = """
MATCH (a:Item {id: $source_item_id})-[r:NEXT]->(b:Item)
WHERE b.id IN $item_ids
RETURN b.id AS item_id, r.count AS count
"""

# ... and collaborative / semantic neighbours of the last item (the relations IIRG trains on).
COLLAB_AMONG_QUERY = """
MATCH (a:Item {id: $source_item_id})-[r:COLLAB]->(b:Item)
WHERE b.id IN $item_ids
RETURN b.id AS item_id, r.rank AS rank
"""

SIMILAR_AMONG_QUERY = """
MATCH (a:Item {id: $source_item_id})-[r:SIMILAR]->(b:Item)
WHERE b.id IN $item_ids
RETURN b.id AS item_id, r.score AS score
"""

# -- user picking ----------------------------------------------------------------------------------
# A random user: the caller draws `skip` uniformly below the count (no full scan shipped to Python).
USER_AT_QUERY = """
MATCH (u:User)
RETURN u.id AS user_id
ORDER BY user_id
SKIP $skip LIMIT 1
"""

SEGMENT_USER_AT_QUERY = """
MATCH (u:User)
WHERE u.segment = $segment
RETURN u.id AS user_id
ORDER BY user_id
SKIP $skip LIMIT 1
"""

# -- per item --------------------------------------------------------------------------------------
ITEM_QUERY = """
MATCH (i:Item {id: $item_id})
RETURN i.id AS item_id, i.title AS title, i.raw_title AS raw_title, i.description AS description,
       i.categories AS categories, i.brand AS brand, i.popularity AS popularity
"""

ITEM_SUCCESSORS_QUERY = """
MATCH (a:Item {id: $item_id})-[r:NEXT]->(b:Item)
RETURN b.id AS item_id, b.title AS title, r.count AS count, b.popularity AS popularity
ORDER BY count DESC, popularity DESC, item_id
LIMIT $limit
"""

ITEM_PREDECESSORS_QUERY = """
MATCH (a:Item)-[r:NEXT]->(b:Item {id: $item_id})
RETURN a.id AS item_id, a.title AS title, r.count AS count, a.popularity AS popularity
ORDER BY count DESC, popularity DESC, item_id
LIMIT $limit
"""

ITEM_DEGREE_QUERY = """
MATCH (i:Item {id: $item_id})
OPTIONAL MATCH (i)-[o:NEXT]->(:Item)
WITH i, count(o) AS successors, sum(o.count) AS out_transitions
OPTIONAL MATCH (:Item)-[n:NEXT]->(i)
RETURN successors, out_transitions, count(n) AS predecessors, sum(n.count) AS in_transitions
"""

# An item's neighbours by COLLAB, SIMILAR and every other relation: each relation's
# `item_view.query` (graph/relations).

# Case-insensitive substring search (toLower exists in both dialects); popular items first.
TITLE_SEARCH_QUERY = """
MATCH (i:Item)
WHERE toLower(i.title) CONTAINS toLower($text)
RETURN i.id AS item_id, i.title AS title, i.popularity AS popularity
ORDER BY popularity DESC, title
LIMIT $limit
"""

# Titles of items named by the run folder (a model's lists read from models/<m>/recommendations_*.parquet
# when the model wrote no RECOMMENDED edges, e.g. evaluated with --no-graph).
ITEM_TITLES_QUERY = """
MATCH (i:Item)
WHERE i.id IN $item_ids
RETURN i.id AS item_id, i.title AS title
"""

# -- semantic IDs (`iirg sid` sets Item.sid "<a_12><b_3><c_20><d_0>" and Item.sid_codes) -----------
# Whether the graph has SIDs at all. LadybugDB has a fixed schema: `i.sid` on a graph built before
# `iirg sid` is a binder error, so the page asks the catalogue first. Neo4j returns null for a missing
# property, so one item with a sid (an index seek on item_sid) is the answer there.
SID_PROPERTY_QUERY = PerDialect(ladybug="""
CALL table_info('Item') RETURN name
""", neo4j="""
MATCH (i:Item)
WHERE i.sid IS NOT NULL
RETURN 'sid' AS name
LIMIT 1
""")

ITEM_SID_QUERY = """
MATCH (i:Item {id: $item_id})
RETURN i.sid AS sid, i.sid_codes AS sid_codes
"""

# How many other items share each prefix of an item's SID. A prefix is whole tokens ("<a_12>",
# "<a_12><b_3>"), and every token ends in ">", so "<a_1>" never matches "<a_12>".
SID_PREFIX_COUNTS_QUERY = """
UNWIND $prefixes AS prefix
MATCH (i:Item)
WHERE i.sid STARTS WITH prefix AND i.id <> $item_id
RETURN prefix, count(*) AS n_items
"""

# A short list of the items sharing one prefix, popular first.
SID_PREFIX_ITEMS_QUERY = """
MATCH (i:Item)
WHERE i.sid STARTS WITH $prefix AND i.id <> $item_id
RETURN i.id AS item_id, i.title AS title, i.sid AS sid, i.popularity AS popularity
ORDER BY popularity DESC, item_id
LIMIT $limit
"""

# -- overview (segment counts and the models' RECOMMENDED edges: graph.analysis_queries) ------------
NODE_COUNTS_QUERY = """
MATCH (i:Item) WITH count(i) AS items
MATCH (u:User) WITH items, count(u) AS users
RETURN users, items
"""

# One statement per relation type: a counted scan of one type is what both databases do fastest.
# The item-item types are the registry's (graph/relations); their names are fixed identifiers.
RELATION_COUNT_QUERIES = {
    "INTERACTED": "MATCH (:User)-[r:INTERACTED]->(:Item) RETURN count(r) AS n",
    **{name: f"MATCH (:Item)-[r:`{name}`]->(:Item) RETURN count(r) AS n" for name in RELATIONS},
    "RECOMMENDED": "MATCH (:User)-[r:RECOMMENDED]->(:Item) RETURN count(r) AS n",
}

# The relationship types the graph has: a graph built before a relation existed has no LadybugDB
# table for it (a query naming it is a binder error there; Neo4j only warns).
RELATIONSHIP_TYPES_QUERY = PerDialect(
    ladybug="CALL show_tables() WHERE type = 'REL' RETURN name",
    neo4j="CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType AS name")


# -- console examples: one per dashboard concept ---------------------------------------------------
@dataclass(frozen=True)
class ConsoleExample:
    title: str
    query: Query
    params: dict

    def text(self, dialect: Dialect) -> str:
        return text_for(self.query, dialect)


def _same(title: str, query: str, params: dict) -> ConsoleExample:
    return ConsoleExample(title, query.strip(), params)


CONSOLE_EXAMPLES: list[ConsoleExample] = [
    _same("Overview: test users per memorization segment",
          "MATCH (u:User) WHERE u.segment IS NOT NULL\n"
          "RETURN u.segment AS segment, count(*) AS users\nORDER BY users DESC", {}),
    _same("User explorer: a user's history in order",
          "MATCH (u:User {id: $user_id})-[r:INTERACTED]->(i:Item)\n"
          "RETURN r.pos AS pos, r.split AS split, i.id AS item_id, i.title AS title\nORDER BY pos",
          {"user_id": "1"}),
    ConsoleExample(
        "User explorer: shortest NEXT path from the last history item to the target (drawn)",
        PerDialect(
            ladybug="MATCH p = (a:Item {id: $last_item_id})-[:NEXT* SHORTEST 1..4]->(b:Item {id: $target_item_id})\n"
                    "RETURN p",
            neo4j="MATCH p = shortestPath((a:Item {id: $last_item_id})-[:NEXT*1..4]->(b:Item {id: $target_item_id}))\n"
                  "RETURN p"),
        {"last_item_id": "1", "target_item_id": "1000"}),
    # The target comes from the user's own test interaction, so the default parameters find rows on
    # any dataset (a fixed target id matched nothing for user 1).
    _same("User explorer: history items with an edge (NEXT, COLLAB, SIMILAR) into the test target (drawn)",
          "MATCH (u:User {id: $user_id})-[:INTERACTED {split: 'test'}]->(t:Item)\n"
          "MATCH (u)-[h:INTERACTED]->(i:Item)-[r]->(t)\n"
          "WHERE h.split <> 'test'\nRETURN i, r, t",
          {"user_id": "1"}),
    _same("User explorer: each model's top-10 for a user, with hits",
          "MATCH (u:User {id: $user_id})-[r:RECOMMENDED]->(i:Item)\n"
          "WHERE r.split = 'test' AND r.rank <= 10\n"
          "OPTIONAL MATCH (u)-[t:INTERACTED {split: 'test'}]->(i)\n"
          "RETURN r.model AS model, r.rank AS rank, i.title AS title, t IS NOT NULL AS hit\n"
          "ORDER BY model, rank", {"user_id": "1"}),
    _same("Item explorer: training successors of an item (drawn)",
          "MATCH (a:Item {id: $item_id})-[n:NEXT]->(b:Item)\n"
          "RETURN a, n, b\nORDER BY n.count DESC\nLIMIT 15", {"item_id": "1"}),
    _same("Item explorer: collaborative and semantic neighbours side by side",
          "MATCH (a:Item {id: $item_id})-[c:COLLAB]->(b:Item)\n"
          "OPTIONAL MATCH (a)-[s:SIMILAR]->(b)\n"
          "RETURN c.rank AS collab_rank, b.title AS title, c.count AS count, c.source AS source, "
          "s.score AS semantic_score\nORDER BY collab_rank", {"item_id": "1"}),
    _same("Item explorer: search items by title",
          "MATCH (i:Item) WHERE toLower(i.title) CONTAINS toLower($text)\n"
          "RETURN i.id AS item_id, i.title AS title, i.popularity AS popularity\n"
          "ORDER BY popularity DESC LIMIT 20", {"text": "star"}),
]

# Statements not held in `*_QUERY` constants, for Neo4j's linter (tests/test_cypher_lint.py collects
# the constants of this module and this list).
LINT_EXAMPLES_NEO4J = [
    *RELATION_COUNT_QUERIES.values(),
    *(example.text("neo4j") for example in CONSOLE_EXAMPLES),
]
